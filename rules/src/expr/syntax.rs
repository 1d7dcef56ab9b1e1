//! The syntax of rule expressions: a winnow parser from text to an AST whose nodes carry byte
//! spans (offsets into the expression text), so later errors can point at the right column.
//!
//! Grammar (lowest precedence first):
//!
//! ```text
//! expr   := or
//! or     := and ("or" and)*
//! and    := not ("and" not)*
//! not    := "not" not | cmp
//! cmp    := sum (("<" | "<=" | ">" | ">=" | "==" | "!=") sum)?
//! sum    := prod (("+" | "-") prod)*
//! prod   := unary (("*" | "/") unary)*
//! unary  := "-" unary | atom
//! atom   := number | duration | string | "true" | "false" | name "(" args ")" | name | "(" expr ")"
//! ```
//!
//! A duration is a number glued to a unit (`ms`, `s`, `m`, `h`, `d`), possibly repeated
//! (`1h30m`). Strings are double-quoted without escapes (they name fault categories).

use std::ops::Range;

use winnow::ascii::multispace0;
use winnow::combinator::{alt, cut_err, delimited, opt, repeat, separated};
use winnow::error::{ContextError, ErrMode, StrContext, StrContextValue};
use winnow::prelude::*;
use winnow::stream::{LocatingSlice, Location};
use winnow::token::{one_of, take_while};

/// Parser input: the expression text with byte positions.
type In<'a> = LocatingSlice<&'a str>;

/// Longest expression text accepted, in bytes (bounds parser recursion and memory).
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Deepest nesting of parentheses, `not` and unary minus accepted.
pub const MAX_DEPTH: usize = 64;

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

impl BinOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }
}

/// One node of the syntax tree.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    /// Byte range in the expression text.
    pub span: Range<usize>,
}

/// What a node is.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Number(f64),
    /// A duration literal, in milliseconds.
    Duration(i64),
    Str(String),
    Bool(bool),
    Name(String),
    Call {
        name: String,
        args: Vec<Node>,
    },
    Neg(Box<Node>),
    Not(Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
}

/// A syntax error: where (byte offset in the expression) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub offset: usize,
    pub message: String,
}

/// Parses an expression.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.len() > MAX_EXPRESSION_LEN {
        return Err(SyntaxError {
            offset: MAX_EXPRESSION_LEN,
            message: format!("the expression is longer than {MAX_EXPRESSION_LEN} bytes"),
        });
    }
    if let Some(offset) = too_deep(text) {
        return Err(SyntaxError {
            offset,
            message: format!("the expression nests deeper than {MAX_DEPTH} levels"),
        });
    }
    let input = LocatingSlice::new(text);
    delimited(ws, expr, ws)
        .parse(input)
        .map_err(|error| SyntaxError {
            offset: error.offset(),
            message: describe(error.inner(), text, error.offset()),
        })
}

/// The offset at which nesting (parentheses, `not`, unary minus) gets deeper than
/// [`MAX_DEPTH`], counted conservatively from the text so the recursive parser cannot overflow.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut prefix = 0usize;
    for (offset, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            '-' | '!' => prefix += 1,
            c if c.is_ascii_digit() || c.is_alphanumeric() || c == '"' => prefix = 0,
            _ => {}
        }
        if text[offset..].starts_with("not") {
            prefix += 1;
        }
        if depth + prefix > MAX_DEPTH {
            return Some(offset);
        }
    }
    None
}

fn describe(error: &ContextError, text: &str, offset: usize) -> String {
    let mut expected: Vec<String> = Vec::new();
    for item in error.context().filter_map(|context| match context {
        StrContext::Expected(StrContextValue::Description(d)) => Some((*d).to_owned()),
        StrContext::Expected(StrContextValue::CharLiteral(c)) => Some(format!("'{c}'")),
        StrContext::Expected(StrContextValue::StringLiteral(s)) => Some(format!("'{s}'")),
        _ => None,
    }) {
        if !expected.contains(&item) {
            expected.push(item);
        }
    }
    let found = match text.get(offset..).and_then(|rest| rest.chars().next()) {
        None => "the end of the expression".to_owned(),
        Some(c) => format!("'{c}'"),
    };
    if expected.is_empty() {
        format!("syntax error at {found}")
    } else {
        format!("expected {}, found {found}", expected.join(" or "))
    }
}

fn ws(input: &mut In<'_>) -> ModalResult<()> {
    multispace0.void().parse_next(input)
}

fn expected(what: &'static str) -> StrContext {
    StrContext::Expected(StrContextValue::Description(what))
}

fn expr(input: &mut In<'_>) -> ModalResult<Node> {
    or_expr(input)
}

/// A keyword: the word, not followed by a name character.
fn keyword<'a>(word: &'static str) -> impl Parser<In<'a>, (), ErrMode<ContextError>> {
    move |input: &mut In<'a>| {
        let start = input.checkpoint();
        let name = name_text.parse_next(input)?;
        if name == word {
            Ok(())
        } else {
            winnow::stream::Stream::reset(input, &start);
            Err(ErrMode::Backtrack(ContextError::new()))
        }
    }
}

fn left_assoc(
    input: &mut In<'_>,
    operand: fn(&mut In<'_>) -> ModalResult<Node>,
    operator: fn(&mut In<'_>) -> ModalResult<BinOp>,
) -> ModalResult<Node> {
    let mut left = operand(input)?;
    loop {
        let start = input.checkpoint();
        ws(input)?;
        match operator(input) {
            Ok(op) => {
                ws(input)?;
                let right = cut_err(operand)
                    .context(expected("an operand"))
                    .parse_next(input)?;
                let span = left.span.start..right.span.end;
                left = Node {
                    kind: NodeKind::Binary(op, Box::new(left), Box::new(right)),
                    span,
                };
            }
            Err(ErrMode::Backtrack(_)) => {
                winnow::stream::Stream::reset(input, &start);
                return Ok(left);
            }
            Err(other) => return Err(other),
        }
    }
}

fn or_expr(input: &mut In<'_>) -> ModalResult<Node> {
    left_assoc(input, and_expr, |i| {
        keyword("or").value(BinOp::Or).parse_next(i)
    })
}

fn and_expr(input: &mut In<'_>) -> ModalResult<Node> {
    left_assoc(input, not_expr, |i| {
        keyword("and").value(BinOp::And).parse_next(i)
    })
}

fn not_expr(input: &mut In<'_>) -> ModalResult<Node> {
    let start = input.current_token_start();
    if opt(keyword("not")).parse_next(input)?.is_some() {
        ws(input)?;
        let inner = cut_err(not_expr)
            .context(expected("an operand"))
            .parse_next(input)?;
        let span = start..inner.span.end;
        return Ok(Node {
            kind: NodeKind::Not(Box::new(inner)),
            span,
        });
    }
    cmp_expr(input)
}

fn cmp_op(input: &mut In<'_>) -> ModalResult<BinOp> {
    alt((
        "<=".value(BinOp::Le),
        ">=".value(BinOp::Ge),
        "==".value(BinOp::Eq),
        "!=".value(BinOp::Ne),
        "<".value(BinOp::Lt),
        ">".value(BinOp::Gt),
    ))
    .parse_next(input)
}

fn cmp_expr(input: &mut In<'_>) -> ModalResult<Node> {
    let left = sum_expr(input)?;
    let start = input.checkpoint();
    ws(input)?;
    match cmp_op(input) {
        Ok(op) => {
            ws(input)?;
            let right = cut_err(sum_expr)
                .context(expected("an operand"))
                .parse_next(input)?;
            let span = left.span.start..right.span.end;
            Ok(Node {
                kind: NodeKind::Binary(op, Box::new(left), Box::new(right)),
                span,
            })
        }
        Err(ErrMode::Backtrack(_)) => {
            winnow::stream::Stream::reset(input, &start);
            Ok(left)
        }
        Err(other) => Err(other),
    }
}

fn sum_expr(input: &mut In<'_>) -> ModalResult<Node> {
    left_assoc(input, prod_expr, |i| {
        alt(('+'.value(BinOp::Add), '-'.value(BinOp::Sub))).parse_next(i)
    })
}

fn prod_expr(input: &mut In<'_>) -> ModalResult<Node> {
    left_assoc(input, unary_expr, |i| {
        alt(('*'.value(BinOp::Mul), '/'.value(BinOp::Div))).parse_next(i)
    })
}

fn unary_expr(input: &mut In<'_>) -> ModalResult<Node> {
    let start = input.current_token_start();
    if opt('-').parse_next(input)?.is_some() {
        ws(input)?;
        let inner = cut_err(unary_expr)
            .context(expected("an operand"))
            .parse_next(input)?;
        let span = start..inner.span.end;
        return Ok(Node {
            kind: NodeKind::Neg(Box::new(inner)),
            span,
        });
    }
    atom(input)
}

fn atom(input: &mut In<'_>) -> ModalResult<Node> {
    alt((number_or_duration, string, parenthesised, name_or_call))
        .context(expected("a number, a duration, a name, a string or '('"))
        .parse_next(input)
}

fn parenthesised(input: &mut In<'_>) -> ModalResult<Node> {
    let start = input.current_token_start();
    '('.parse_next(input)?;
    ws(input)?;
    let mut inner = cut_err(expr).parse_next(input)?;
    ws(input)?;
    cut_err(')')
        .context(StrContext::Expected(StrContextValue::CharLiteral(')')))
        .parse_next(input)?;
    inner.span = start..input.previous_token_end();
    Ok(inner)
}

fn string(input: &mut In<'_>) -> ModalResult<Node> {
    let ((), span) = '"'.void().with_span().parse_next(input)?;
    let text = take_while(0.., |c: char| c != '"').parse_next(input)?;
    cut_err('"')
        .context(StrContext::Expected(StrContextValue::CharLiteral('"')))
        .parse_next(input)?;
    Ok(Node {
        kind: NodeKind::Str(text.to_owned()),
        span: span.start..input.previous_token_end(),
    })
}

fn name_text<'a>(input: &mut In<'a>) -> ModalResult<&'a str> {
    (
        one_of(|c: char| c.is_ascii_alphabetic() || c == '_'),
        take_while(0.., |c: char| c.is_ascii_alphanumeric() || c == '_'),
    )
        .take()
        .parse_next(input)
}

fn name_or_call(input: &mut In<'_>) -> ModalResult<Node> {
    let (name, span) = name_text.with_span().parse_next(input)?;
    match name {
        "true" => {
            return Ok(Node {
                kind: NodeKind::Bool(true),
                span,
            })
        }
        "false" => {
            return Ok(Node {
                kind: NodeKind::Bool(false),
                span,
            })
        }
        "and" | "or" | "not" => return Err(ErrMode::Backtrack(ContextError::new())),
        _ => {}
    }
    let start = input.checkpoint();
    ws(input)?;
    if opt('(').parse_next(input)?.is_none() {
        winnow::stream::Stream::reset(input, &start);
        return Ok(Node {
            kind: NodeKind::Name(name.to_owned()),
            span,
        });
    }
    ws(input)?;
    let args: Vec<Node> = separated(0.., delimited(ws, expr, ws), ',').parse_next(input)?;
    ws(input)?;
    cut_err(')')
        .context(StrContext::Expected(StrContextValue::CharLiteral(')')))
        .context(StrContext::Expected(StrContextValue::CharLiteral(',')))
        .parse_next(input)?;
    Ok(Node {
        kind: NodeKind::Call {
            name: name.to_owned(),
            args,
        },
        span: span.start..input.previous_token_end(),
    })
}

/// Digits with an optional fraction and exponent.
fn number_text<'a>(input: &mut In<'a>) -> ModalResult<&'a str> {
    (
        take_while(1.., |c: char| c.is_ascii_digit()),
        opt(('.', take_while(1.., |c: char| c.is_ascii_digit()))),
        opt((
            one_of(['e', 'E']),
            opt(one_of(['+', '-'])),
            cut_err(take_while(1.., |c: char| c.is_ascii_digit())).context(expected("digits")),
        )),
    )
        .take()
        .parse_next(input)
}

fn unit(input: &mut In<'_>) -> ModalResult<i64> {
    let unit = alt((
        "ms".value(1i64),
        one_of(['s', 'm', 'h', 'd']).map(|c| match c {
            's' => 1_000,
            'm' => 60_000,
            'h' => 3_600_000,
            _ => 86_400_000,
        }),
    ))
    .parse_next(input)?;
    // A unit is not the start of a longer name (`5 min` is not a duration, `5mi` is an error).
    if opt(one_of(|c: char| c.is_ascii_alphabetic() || c == '_'))
        .parse_next(input)?
        .is_some()
    {
        let mut error = ContextError::new();
        error.push(expected("a duration unit: ms, s, m, h or d"));
        return Err(ErrMode::Cut(error));
    }
    Ok(unit)
}

fn number_or_duration(input: &mut In<'_>) -> ModalResult<Node> {
    let start = input.current_token_start();
    let first = number_text.parse_next(input)?;
    let Some(first_unit) = opt(unit).parse_next(input)? else {
        let value: f64 = first.parse().map_err(|_| {
            let mut error = ContextError::new();
            error.push(expected("a number"));
            ErrMode::Cut(error)
        })?;
        return Ok(Node {
            kind: NodeKind::Number(value),
            span: start..input.previous_token_end(),
        });
    };
    let mut total = duration_part(first, first_unit);
    let rest: Vec<(&str, i64)> = repeat(0.., (number_text, cut_err(unit))).parse_next(input)?;
    for (text, unit) in rest {
        total = total.saturating_add(duration_part(text, unit));
    }
    Ok(Node {
        kind: NodeKind::Duration(total),
        span: start..input.previous_token_end(),
    })
}

/// `number × unit` in milliseconds, saturating (huge values become `i64::MAX`).
fn duration_part(number: &str, unit_ms: i64) -> i64 {
    let value: f64 = number.parse().unwrap_or(f64::INFINITY);
    let ms = value * unit_ms as f64;
    if ms.is_finite() && ms < i64::MAX as f64 {
        ms.round() as i64
    } else {
        i64::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(node: &Node) -> String {
        match &node.kind {
            NodeKind::Number(n) => n.to_string(),
            NodeKind::Duration(ms) => format!("{ms}ms"),
            NodeKind::Str(s) => format!("{s:?}"),
            NodeKind::Bool(b) => b.to_string(),
            NodeKind::Name(n) => n.clone(),
            NodeKind::Call { name, args } => format!(
                "{name}({})",
                args.iter().map(shape).collect::<Vec<_>>().join(", ")
            ),
            NodeKind::Neg(inner) => format!("(-{})", shape(inner)),
            NodeKind::Not(inner) => format!("(not {})", shape(inner)),
            NodeKind::Binary(op, a, b) => format!("({} {} {})", shape(a), op.symbol(), shape(b)),
        }
    }

    fn parsed(text: &str) -> String {
        shape(&parse(text).expect("parses"))
    }

    #[test]
    fn precedence_follows_the_grammar() {
        assert_eq!(parsed("a + b * c < 3"), "((a + (b * c)) < 3)");
        assert_eq!(
            parsed("not a < 1 and b > 2 or c"),
            "(((not (a < 1)) and (b > 2)) or c)"
        );
        assert_eq!(parsed("-a - -2"), "((-a) - (-2))");
        assert_eq!(parsed("(a + b) * c"), "((a + b) * c)");
        assert_eq!(parsed("a - b - c"), "((a - b) - c)");
    }

    #[test]
    fn calls_durations_and_strings() {
        assert_eq!(
            parsed("trips(30m, \"water_flow\") >= 3"),
            "(trips(1800000ms, \"water_flow\") >= 3)"
        );
        assert_eq!(parsed("avg(x, 1h30m)"), "avg(x, 5400000ms)");
        assert_eq!(parsed("f()"), "f()");
        assert_eq!(parsed("1.5e2 + 250ms"), "(150 + 250ms)");
        assert_eq!(parsed("notice and order"), "(notice and order)");
    }

    #[test]
    fn spans_cover_the_source_text() {
        let text = "  indoor_temp_c < 14 ";
        let node = parse(text).expect("parses");
        assert_eq!(&text[node.span.clone()], "indoor_temp_c < 14");
        let text = "avg(x, 1h) > (2)";
        let NodeKind::Binary(_, left, right) = parse(text).expect("parses").kind else {
            panic!("not binary");
        };
        assert_eq!(&text[left.span.clone()], "avg(x, 1h)");
        assert_eq!(&text[right.span.clone()], "(2)");
    }

    #[test]
    fn errors_point_at_the_offending_character() {
        let error = parse("indoor_temp_c < ").expect_err("incomplete");
        assert_eq!(error.offset, 16);
        assert!(error.message.starts_with("expected "), "{}", error.message);
        let error = parse("a < 14 )").expect_err("trailing");
        assert_eq!(error.offset, 7);
        let error = parse("avg(x, 5 min)").expect_err("bad duration");
        assert_eq!(error.offset, 9);
        let error = parse("avg(x, 5mi)").expect_err("bad unit");
        assert!(error.message.contains("duration unit"), "{}", error.message);
        let error = parse("(a < 1").expect_err("unclosed");
        assert_eq!(error.offset, 6);
        assert!(error.message.contains("')'"), "{}", error.message);
    }

    #[test]
    fn nesting_and_length_are_bounded() {
        let deep = format!("{}1{}", "(".repeat(500), ")".repeat(500));
        assert!(parse(&deep)
            .expect_err("too deep")
            .message
            .contains("deeper"));
        let long = "a + ".repeat(2000) + "a";
        assert!(parse(&long)
            .expect_err("too long")
            .message
            .contains("longer"));
    }
}
