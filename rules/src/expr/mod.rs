//! Rule expressions: parsed ([`syntax`]), type-checked against the canonical value names and
//! the derived-value functions, compiled into a small tree that evaluates one reading in
//! three-valued logic (true, false, unknown).
//!
//! Names are canonical values of the current reading (`indoor_temp_c`), `fault` (the reading
//! carries a fault) and `vulnerable` (the device is registered as a vulnerable household).
//! Functions:
//!
//! | function | type | meaning |
//! |---|---|---|
//! | `min(v, w)`, `max(v, w)`, `avg(v, w)`, `count(v, w)` | number | over the window `w` |
//! | `rate(v, w)` | number | least-squares slope, units per hour |
//! | `slope_per_day(v, w)` | number | the same, units per day |
//! | `partial_slope_per_day(v, x, w)` | number | `v`'s trend per day with its linear dependence on `x` taken out (a least-squares fit of the bucket means on time and `x`) |
//! | `hours_to(v, target, w)` | number | hours until `v` reaches `target` at that slope (infinity moving away or flat) |
//! | `starts(v, w)` | number | rising edges 0 → 1 (compressor or burner starts) |
//! | `increase(v, w)` | number | increase of a counter (ignition attempts) |
//! | `share(v, w)` | number | time share of `v` on, 0 to 1 (defrost share) |
//! | `trips(w, "category"...)` | number | fault appearances, of the categories given or any |
//! | `cop(w)` | number | heat output / electric power while running |
//! | `cop_ratio(w)` | number | `cop(w)` / the device's own baseline at similar outdoor temperature |
//! | `unchanged_for(v)` | number | hours `v` has stayed exactly as it is (since it last changed or was first seen) |
//! | `cooling_hours(target)` | number | hours until the room, without heat, cools to `target` °C (the house's learned cooling rate) |
//! | `fleet_ratio(v, w)` | number | `v` (or `cop`) in steady running over the last full period `w`, over the mean of the units of the same profile in the same outdoor and flow temperatures |
//! | `fleet_diff(v, w)` | number | the same, minus that mean |
//! | `fleet_z(v, w)` | number | the same difference in the fleet's spreads (standard deviations) |
//! | `fleet_shift(v, w)` | number | `fleet_diff(v, w)` minus the unit's own usual difference from its fleet (learned over its first judged periods) |
//! | `outdoor_estimate()` | number | the reading's own outdoor temperature, else the median of its village's newest outdoor readings (`crate::area`) |
//! | `fault_in("category"...)` | bool | the reading's fault is of one of these categories |
//! | `present(v)` | bool | the reading has the value |
//! | `known(x)` | bool | the number `x` is known (the value present, enough data for the function) |
//! | `abs(x)` | number | absolute value |
//!
//! `v` of a fleet function is a canonical value, `cop`, or one value minus another
//! (`discharge_temp_c - flow_temp_c`).
//!
//! A missing value, a derived value without enough data, or a division by zero is *unknown*;
//! `and`/`or`/`not` follow Kleene's logic (`false and unknown` is false). A rule whose
//! condition is unknown keeps its state.

pub mod syntax;

use std::ops::Range;

use wire::FaultCategory;

use crate::window::{
    category_bit, CoolingSources, CopSources, Derived, FleetMeasure, FleetSources, SeriesKind,
    SeriesSpec, SeriesState, SeriesTable, COP_SOURCE, NO_VALUE,
};
use syntax::{BinOp, Node, NodeKind};

/// The longest window a function accepts.
pub const MAX_WINDOW_MS: i64 = 31 * 86_400_000;

/// Truth in three values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    False,
    True,
    Unknown,
}

impl Truth {
    fn from_bool(value: bool) -> Self {
        if value {
            Truth::True
        } else {
            Truth::False
        }
    }
}

/// A compiled boolean expression and its source text.
#[derive(Debug, Clone)]
pub struct Expr {
    text: String,
    root: Op,
    /// The names and calls in it, with their source text, for summaries.
    leaves: Vec<(String, Op)>,
}

impl PartialEq for Expr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

/// An error found while checking an expression: a byte range in its text and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub span: Range<usize>,
    pub message: String,
}

/// What an expression is evaluated against.
pub struct Context<'a> {
    /// Canonical values of the reading by index in `wire::values::CANONICAL`, NaN when missing.
    pub values: &'a [f64],
    /// The reading's fault.
    pub fault: Option<FaultCategory>,
    /// The device is registered as a vulnerable household.
    pub vulnerable: bool,
    pub series: &'a SeriesTable,
    pub state: &'a SeriesState,
    /// The median of the device's village's newest outdoor readings (see `crate::area`), NaN
    /// when not worked out (the reading has its own, or no rule asks for it).
    pub village_outdoor: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Type {
    Number,
    Bool,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Number => "a number",
            Type::Bool => "true or false",
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Number(f64),
    Bool(bool),
    Value(u8),
    Present(u8),
    /// The number is known (not missing, enough data).
    Known(Box<Op>),
    Fault,
    FaultIn(u32),
    /// The reading's own outdoor temperature (canonical index), else its village's estimate.
    OutdoorEstimate(u8),
    Vulnerable,
    Derived(u16, Derived),
    Neg(Box<Op>),
    Abs(Box<Op>),
    Not(Box<Op>),
    Arith(BinOp, Box<Op>, Box<Op>),
    Compare(BinOp, Box<Op>, Box<Op>),
    /// `Compare` of a number with a constant (the common case, evaluated without a call).
    CompareConst(BinOp, Box<Op>, f64),
    /// `Compare` of a canonical value with a constant.
    ValueConst(BinOp, u8, f64),
    And(Box<Op>, Box<Op>),
    Or(Box<Op>, Box<Op>),
}

/// Index of a canonical value name.
pub fn canonical_index(name: &str) -> Option<u8> {
    wire::values::position(name).and_then(|i| u8::try_from(i).ok())
}

/// The COP series' sources, by canonical index.
pub fn cop_sources() -> Option<CopSources> {
    Some(CopSources {
        heat: canonical_index(wire::values::HEAT_OUTPUT_W)?,
        electric: canonical_index(wire::values::ELECTRIC_POWER_W)?,
        running: canonical_index(wire::values::RUNNING)?,
        outdoor: canonical_index(wire::values::OUTDOOR_TEMP_C)?,
        defrost: canonical_index(wire::values::DEFROST_ACTIVE)?,
    })
}

/// The fleet series' sources, by canonical index.
pub fn fleet_sources() -> Option<FleetSources> {
    Some(FleetSources {
        running: canonical_index(wire::values::RUNNING)?,
        outdoor: canonical_index(wire::values::OUTDOOR_TEMP_C)?,
        flow: canonical_index(wire::values::FLOW_TEMP_C)?,
        defrost: canonical_index(wire::values::DEFROST_ACTIVE)?,
        heat: canonical_index(wire::values::HEAT_OUTPUT_W)?,
        electric: canonical_index(wire::values::ELECTRIC_POWER_W)?,
    })
}

/// The cooling series' sources, by canonical index.
pub fn cooling_sources() -> Option<CoolingSources> {
    Some(CoolingSources {
        indoor: canonical_index(wire::values::INDOOR_TEMP_C)?,
        outdoor: canonical_index(wire::values::OUTDOOR_TEMP_C)?,
        running: canonical_index(wire::values::RUNNING)?,
    })
}

impl Expr {
    /// Parses and checks `text`; windowed functions are added to `series`.
    pub fn compile(text: &str, series: &mut SeriesTable) -> Result<Expr, ExprError> {
        let node = syntax::parse(text).map_err(|e| ExprError {
            span: e.offset..e.offset,
            message: e.message,
        })?;
        let mut compiler = Compiler {
            series,
            text,
            leaves: Vec::new(),
        };
        let (root, ty) = compiler.node(&node)?;
        if ty != Type::Bool {
            return Err(ExprError {
                span: node.span.clone(),
                message: format!(
                    "a condition must be true or false, but this is {}",
                    ty.name()
                ),
            });
        }
        let leaves = compiler.leaves;
        Ok(Expr {
            text: text.trim().to_owned(),
            root,
            leaves,
        })
    }

    /// The windowed series the expression reads.
    pub fn series_used(&self) -> impl Iterator<Item = u16> + '_ {
        self.leaves.iter().filter_map(|(_, op)| match op {
            Op::Derived(series, _) => Some(*series),
            _ => None,
        })
    }

    /// The windowed series the expression reads, each with the function it reads it through.
    pub fn derived_used(&self) -> impl Iterator<Item = (u16, Derived)> + '_ {
        self.leaves.iter().filter_map(|(_, op)| match op {
            Op::Derived(series, function) => Some((*series, *function)),
            _ => None,
        })
    }

    /// Whether the expression uses a windowed (derived) function.
    pub fn is_windowed(&self) -> bool {
        self.leaves
            .iter()
            .any(|(_, op)| matches!(op, Op::Derived(..)))
    }

    /// The source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the expression.
    pub fn eval(&self, context: &Context<'_>) -> Truth {
        truth(&self.root, context)
    }

    /// `name = value` for every name and call in the expression, e.g.
    /// `indoor_temp_c = 11.2, avg(flow_temp_c, 1h) = 3.4` (unknown values show as `?`).
    pub fn describe(&self, context: &Context<'_>) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (label, op) in &self.leaves {
            let shown = match op {
                Op::Present(_) | Op::Known(_) | Op::Fault | Op::FaultIn(_) | Op::Vulnerable => {
                    match truth(op, context) {
                        Truth::True => "true".to_owned(),
                        Truth::False => "false".to_owned(),
                        Truth::Unknown => "?".to_owned(),
                    }
                }
                _ => show_number(number(op, context)),
            };
            let part = format!("{label} = {shown}");
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        parts.join(", ")
    }
}

/// A number as a summary shows it: up to 3 decimals, `?` when unknown.
pub fn show_number(value: f64) -> String {
    if value.is_nan() {
        "?".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        let rounded = (value * 1000.0).round() / 1000.0;
        rounded.to_string()
    }
}

fn number(op: &Op, context: &Context<'_>) -> f64 {
    match op {
        Op::Number(n) => *n,
        Op::Value(index) => context
            .values
            .get(usize::from(*index))
            .copied()
            .unwrap_or(f64::NAN),
        Op::Derived(series, function) => context.series.query(context.state, *series, *function),
        Op::OutdoorEstimate(index) => context
            .values
            .get(usize::from(*index))
            .copied()
            .filter(|v| !v.is_nan())
            .unwrap_or(context.village_outdoor),
        Op::Neg(inner) => -number(inner, context),
        Op::Abs(inner) => number(inner, context).abs(),
        Op::Arith(op, a, b) => {
            let (a, b) = (number(a, context), number(b, context));
            match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div if b == 0.0 => f64::NAN,
                BinOp::Div => a / b,
                _ => f64::NAN,
            }
        }
        _ => f64::NAN,
    }
}

fn truth(op: &Op, context: &Context<'_>) -> Truth {
    match op {
        Op::Bool(b) => Truth::from_bool(*b),
        Op::Present(index) => Truth::from_bool(
            context
                .values
                .get(usize::from(*index))
                .is_some_and(|v| v.is_finite()),
        ),
        Op::Known(inner) => Truth::from_bool(!number(inner, context).is_nan()),
        Op::Fault => Truth::from_bool(context.fault.is_some()),
        Op::FaultIn(mask) => {
            Truth::from_bool(context.fault.is_some_and(|c| category_bit(c) & mask != 0))
        }
        Op::Vulnerable => Truth::from_bool(context.vulnerable),
        Op::Not(inner) => match truth(inner, context) {
            Truth::True => Truth::False,
            Truth::False => Truth::True,
            Truth::Unknown => Truth::Unknown,
        },
        Op::And(a, b) => match truth(a, context) {
            Truth::False => Truth::False,
            left => match (left, truth(b, context)) {
                (_, Truth::False) => Truth::False,
                (Truth::True, Truth::True) => Truth::True,
                _ => Truth::Unknown,
            },
        },
        Op::Or(a, b) => match truth(a, context) {
            Truth::True => Truth::True,
            left => match (left, truth(b, context)) {
                (_, Truth::True) => Truth::True,
                (Truth::False, Truth::False) => Truth::False,
                _ => Truth::Unknown,
            },
        },
        Op::Compare(op, a, b) => compare(*op, number(a, context), number(b, context)),
        Op::CompareConst(op, a, b) => compare(*op, number(a, context), *b),
        Op::ValueConst(op, index, b) => compare(
            *op,
            context
                .values
                .get(usize::from(*index))
                .copied()
                .unwrap_or(f64::NAN),
            *b,
        ),
        _ => Truth::Unknown,
    }
}

/// A comparison in three values: unknown when either side is NaN.
fn compare(op: BinOp, a: f64, b: f64) -> Truth {
    if a.is_nan() || b.is_nan() {
        return Truth::Unknown;
    }
    Truth::from_bool(match op {
        BinOp::Lt => a < b,
        BinOp::Le => a <= b,
        BinOp::Gt => a > b,
        BinOp::Ge => a >= b,
        BinOp::Eq => a == b,
        _ => a != b,
    })
}

struct Compiler<'a> {
    series: &'a mut SeriesTable,
    text: &'a str,
    leaves: Vec<(String, Op)>,
}

fn error(span: &Range<usize>, message: impl Into<String>) -> ExprError {
    ExprError {
        span: span.clone(),
        message: message.into(),
    }
}

impl Compiler<'_> {
    fn source(&self, span: &Range<usize>) -> String {
        self.text.get(span.clone()).unwrap_or_default().to_owned()
    }

    fn expect(&mut self, node: &Node, want: Type) -> Result<Op, ExprError> {
        let (op, ty) = self.node(node)?;
        if ty != want {
            return Err(error(
                &node.span,
                format!("expected {}, but this is {}", want.name(), ty.name()),
            ));
        }
        Ok(op)
    }

    fn node(&mut self, node: &Node) -> Result<(Op, Type), ExprError> {
        Ok(match &node.kind {
            NodeKind::Number(n) => (Op::Number(*n), Type::Number),
            NodeKind::Bool(b) => (Op::Bool(*b), Type::Bool),
            NodeKind::Duration(_) => {
                return Err(error(
                    &node.span,
                    "a duration is only allowed as the window of a function, e.g. avg(flow_temp_c, 1h)",
                ))
            }
            NodeKind::Str(_) => {
                return Err(error(
                    &node.span,
                    "a string is only allowed as a fault category argument, e.g. trips(1h, \"water_flow\")",
                ))
            }
            NodeKind::Name(name) => {
                let op = match name.as_str() {
                    "fault" => (Op::Fault, Type::Bool),
                    "vulnerable" => (Op::Vulnerable, Type::Bool),
                    _ => (Op::Value(self.value_name(name, &node.span)?), Type::Number),
                };
                self.leaves.push((name.clone(), op.0.clone()));
                op
            }
            NodeKind::Neg(inner) => match self.expect(inner, Type::Number)? {
                // A negative literal is a constant (so `x < -10` compares with a constant).
                Op::Number(n) => (Op::Number(-n), Type::Number),
                inner => (Op::Neg(Box::new(inner)), Type::Number),
            },
            NodeKind::Not(inner) => (Op::Not(Box::new(self.expect(inner, Type::Bool)?)), Type::Bool),
            NodeKind::Binary(op, a, b) => match op {
                BinOp::And | BinOp::Or => {
                    let (a, b) = (self.expect(a, Type::Bool)?, self.expect(b, Type::Bool)?);
                    let op = if *op == BinOp::And {
                        Op::And(Box::new(a), Box::new(b))
                    } else {
                        Op::Or(Box::new(a), Box::new(b))
                    };
                    (op, Type::Bool)
                }
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                    let (a, b) = (self.expect(a, Type::Number)?, self.expect(b, Type::Number)?);
                    (Op::Arith(*op, Box::new(a), Box::new(b)), Type::Number)
                }
                _ => {
                    let (a, b) = (self.expect(a, Type::Number)?, self.expect(b, Type::Number)?);
                    let compiled = match (a, b) {
                        (Op::Value(index), Op::Number(n)) => Op::ValueConst(*op, index, n),
                        (a, Op::Number(n)) => Op::CompareConst(*op, Box::new(a), n),
                        (a, b) => Op::Compare(*op, Box::new(a), Box::new(b)),
                    };
                    (compiled, Type::Bool)
                }
            },
            NodeKind::Call { name, args } => {
                let op = self.call(name, args, &node.span)?;
                let label = self.source(&node.span);
                self.leaves.push((label, op.0.clone()));
                op
            }
        })
    }

    fn value_name(&self, name: &str, span: &Range<usize>) -> Result<u8, ExprError> {
        if wire::values::is_vendor_name(name) {
            let problem = crate::error::Problem::VendorValueName {
                name: name.to_owned(),
            };
            return Err(error(span, problem.to_string()));
        }
        canonical_index(name).ok_or_else(|| {
            let hint = closest_name(name)
                .map(|c| format!(" (did you mean {c}?)"))
                .unwrap_or_default();
            error(
                span,
                format!("{name:?} is not a canonical value name{hint}"),
            )
        })
    }

    fn value_arg(&self, node: &Node) -> Result<u8, ExprError> {
        match &node.kind {
            NodeKind::Name(name) => self.value_name(name, &node.span),
            _ => Err(error(
                &node.span,
                "expected a canonical value name, e.g. flow_temp_c",
            )),
        }
    }

    fn window_arg(&self, node: &Node) -> Result<i64, ExprError> {
        match &node.kind {
            NodeKind::Duration(ms) if *ms > 0 && *ms <= MAX_WINDOW_MS => Ok(*ms),
            NodeKind::Duration(_) => Err(error(
                &node.span,
                "a window must be longer than 0 and at most 31d",
            )),
            _ => Err(error(&node.span, "expected a window duration, e.g. 1h")),
        }
    }

    fn number_literal(&self, node: &Node) -> Result<f64, ExprError> {
        match &node.kind {
            NodeKind::Number(n) => Ok(*n),
            NodeKind::Neg(inner) => match inner.kind {
                NodeKind::Number(n) => Ok(-n),
                _ => Err(error(&node.span, "expected a number")),
            },
            _ => Err(error(&node.span, "expected a number")),
        }
    }

    fn categories(&self, nodes: &[Node]) -> Result<u32, ExprError> {
        let mut mask = 0;
        for node in nodes {
            let NodeKind::Str(name) = &node.kind else {
                return Err(error(
                    &node.span,
                    "expected a fault category in quotes, e.g. \"water_flow\"",
                ));
            };
            let category = FaultCategory::parse(name).ok_or_else(|| {
                let known: Vec<&str> = FaultCategory::ALL.iter().map(|c| c.as_str()).collect();
                error(
                    &node.span,
                    format!(
                        "{name:?} is not a fault category (known: {})",
                        known.join(", ")
                    ),
                )
            })?;
            mask |= category_bit(category);
        }
        Ok(mask)
    }

    fn arity(
        &self,
        name: &str,
        args: &[Node],
        span: &Range<usize>,
        want: usize,
    ) -> Result<(), ExprError> {
        if args.len() == want {
            Ok(())
        } else {
            Err(error(
                span,
                format!(
                    "{name} takes {want} argument{}, not {}",
                    if want == 1 { "" } else { "s" },
                    args.len()
                ),
            ))
        }
    }

    fn series(&mut self, kind: SeriesKind, source: u8, window_ms: i64) -> u16 {
        self.series.intern(SeriesSpec {
            kind,
            source,
            minus: NO_VALUE,
            window_ms,
        })
    }

    /// A function call, by family: windowed functions of one value, the other derived-value
    /// functions, and functions of the reading itself.
    fn call(
        &mut self,
        name: &str,
        args: &[Node],
        span: &Range<usize>,
    ) -> Result<(Op, Type), ExprError> {
        if let Some((kind, function)) = windowed(name) {
            return self.windowed_call(name, args, span, kind, function);
        }
        match name {
            "partial_slope_per_day" | "hours_to" => self.trend_call(name, args, span),
            "trips" => self.trips_call(args, span),
            "cop" | "cop_ratio" => self.cop_call(name, args, span),
            "fleet_ratio" | "fleet_diff" | "fleet_z" | "fleet_shift" => {
                self.fleet_call(name, args, span)
            }
            "unchanged_for" | "cooling_hours" => self.ringless_call(name, args, span),
            "fault_in" | "present" | "known" | "outdoor_estimate" | "abs" => {
                self.reading_call(name, args, span)
            }
            _ => Err(error(
                &(span.start..span.start + name.len()),
                format!(
                    "{name:?} is not a function (known: min, max, avg, count, rate, slope_per_day, partial_slope_per_day, hours_to, starts, increase, share, trips, cop, cop_ratio, cooling_hours, unchanged_for, fleet_ratio, fleet_diff, fleet_z, fleet_shift, outdoor_estimate, fault_in, present, known, abs)"
                ),
            )),
        }
    }

    /// `min`, `max`, `avg`, `count`, `rate`, `slope_per_day`, `starts`, `increase`, `share`:
    /// `function` of a series of `kind` over one value and a window.
    fn windowed_call(
        &mut self,
        name: &str,
        args: &[Node],
        span: &Range<usize>,
        kind: SeriesKind,
        function: Derived,
    ) -> Result<(Op, Type), ExprError> {
        self.arity(name, args, span, 2)?;
        let source = self.value_arg(&args[0])?;
        let window = self.window_arg(&args[1])?;
        let index = self.series(kind, source, window);
        Ok((Op::Derived(index, function), Type::Number))
    }

    /// `partial_slope_per_day(v, x, w)` and `hours_to(v, target, w)`: a value's trend.
    fn trend_call(
        &mut self,
        name: &str,
        args: &[Node],
        span: &Range<usize>,
    ) -> Result<(Op, Type), ExprError> {
        self.arity(name, args, span, 3)?;
        let source = self.value_arg(&args[0])?;
        if name == "hours_to" {
            let target = self.number_literal(&args[1])?;
            let window = self.window_arg(&args[2])?;
            let index = self.series(SeriesKind::Stats, source, window);
            return Ok((Op::Derived(index, Derived::HoursTo(target)), Type::Number));
        }
        let given = self.value_arg(&args[1])?;
        let window = self.window_arg(&args[2])?;
        let index = self.series.intern(SeriesSpec {
            kind: SeriesKind::Paired,
            source,
            minus: given,
            window_ms: window,
        });
        Ok((
            Op::Derived(index, Derived::PartialSlopePerDay),
            Type::Number,
        ))
    }

    /// `trips(w, "category"...)`: fault appearances, of the categories given or any.
    fn trips_call(&mut self, args: &[Node], span: &Range<usize>) -> Result<(Op, Type), ExprError> {
        let Some((window, categories)) = args.split_first() else {
            return Err(error(span, "trips takes a window and optional fault categories, e.g. trips(1h, \"water_flow\")"));
        };
        let window = self.window_arg(window)?;
        let mask = self.categories(categories)?;
        let index = self.series(SeriesKind::Trips(mask), 0, window);
        Ok((Op::Derived(index, Derived::Trips), Type::Number))
    }

    /// `cop(w)` and `cop_ratio(w)`.
    fn cop_call(
        &mut self,
        name: &str,
        args: &[Node],
        span: &Range<usize>,
    ) -> Result<(Op, Type), ExprError> {
        self.arity(name, args, span, 1)?;
        let window = self.window_arg(&args[0])?;
        if let Some(sources) = cop_sources() {
            self.series.set_cop_sources(sources);
        }
        let index = self.series(SeriesKind::Cop, 0, window);
        if name == "cop_ratio" {
            self.series.keep_baseline(index);
            Ok((Op::Derived(index, Derived::CopRatio), Type::Number))
        } else {
            Ok((Op::Derived(index, Derived::Cop), Type::Number))
        }
    }

    /// `fleet_ratio`, `fleet_diff`, `fleet_z`, `fleet_shift` of a value, `cop` or one value
    /// minus another, over a window.
    fn fleet_call(
        &mut self,
        name: &str,
        args: &[Node],
        span: &Range<usize>,
    ) -> Result<(Op, Type), ExprError> {
        self.arity(name, args, span, 2)?;
        let hint = |e: ExprError| ExprError {
            message: format!(
                "{} (or cop, or one value minus another: discharge_temp_c - flow_temp_c)",
                e.message
            ),
            ..e
        };
        let (source, minus) = match &args[0].kind {
            NodeKind::Name(value) if value == "cop" => (COP_SOURCE, NO_VALUE),
            NodeKind::Binary(BinOp::Sub, a, b) => (
                self.value_arg(a).map_err(hint)?,
                self.value_arg(b).map_err(hint)?,
            ),
            _ => (self.value_arg(&args[0]).map_err(hint)?, NO_VALUE),
        };
        let window = self.window_arg(&args[1])?;
        if let Some(sources) = fleet_sources() {
            self.series.set_fleet_sources(sources);
        }
        let measure = match name {
            "fleet_ratio" => FleetMeasure::Ratio,
            "fleet_diff" => FleetMeasure::Diff,
            "fleet_shift" => FleetMeasure::Shift,
            _ => FleetMeasure::Z,
        };
        let index = self.series.intern(SeriesSpec {
            kind: SeriesKind::Fleet,
            source,
            minus,
            window_ms: window,
        });
        Ok((Op::Derived(index, Derived::Fleet(measure)), Type::Number))
    }

    /// `unchanged_for(v)` and `cooling_hours(target)`: series without a window.
    fn ringless_call(
        &mut self,
        name: &str,
        args: &[Node],
        span: &Range<usize>,
    ) -> Result<(Op, Type), ExprError> {
        self.arity(name, args, span, 1)?;
        if name == "unchanged_for" {
            let source = self.value_arg(&args[0])?;
            let index = self.series(SeriesKind::Unchanged, source, 1);
            return Ok((Op::Derived(index, Derived::UnchangedHours), Type::Number));
        }
        let target = self.number_literal(&args[0])?;
        if let Some(sources) = cooling_sources() {
            self.series.set_cooling_sources(sources);
        }
        let index = self.series(SeriesKind::Cooling, 0, 1);
        Ok((
            Op::Derived(index, Derived::CoolingHours(target)),
            Type::Number,
        ))
    }

    /// `fault_in`, `present`, `known`, `outdoor_estimate` and `abs`: functions of the reading
    /// and of numbers, no series.
    fn reading_call(
        &mut self,
        name: &str,
        args: &[Node],
        span: &Range<usize>,
    ) -> Result<(Op, Type), ExprError> {
        match name {
            "fault_in" => {
                if args.is_empty() {
                    return Err(error(span, "fault_in takes one or more fault categories"));
                }
                Ok((Op::FaultIn(self.categories(args)?), Type::Bool))
            }
            "present" => {
                self.arity(name, args, span, 1)?;
                Ok((Op::Present(self.value_arg(&args[0])?), Type::Bool))
            }
            "known" => {
                self.arity(name, args, span, 1)?;
                let inner = self.expect(&args[0], Type::Number)?;
                Ok((Op::Known(Box::new(inner)), Type::Bool))
            }
            "outdoor_estimate" => {
                self.arity(name, args, span, 0)?;
                let Some(outdoor) = canonical_index(wire::values::OUTDOOR_TEMP_C) else {
                    return Err(error(span, "outdoor_temp_c is not a canonical value"));
                };
                self.series.set_village_outdoor_source(outdoor);
                Ok((Op::OutdoorEstimate(outdoor), Type::Number))
            }
            // `abs`
            _ => {
                self.arity(name, args, span, 1)?;
                Ok((
                    Op::Abs(Box::new(self.expect(&args[0], Type::Number)?)),
                    Type::Number,
                ))
            }
        }
    }
}

/// The windowed functions of one value: the series kind each reads and what it derives.
fn windowed(name: &str) -> Option<(SeriesKind, Derived)> {
    let stats = |f: Derived| (SeriesKind::Stats, f);
    Some(match name {
        "min" => stats(Derived::Min),
        "max" => stats(Derived::Max),
        "avg" => stats(Derived::Avg),
        "count" => stats(Derived::Count),
        "rate" => stats(Derived::Rate),
        "slope_per_day" => stats(Derived::SlopePerDay),
        "starts" => (SeriesKind::Starts, Derived::Starts),
        "increase" => (SeriesKind::Increase, Derived::Increase),
        "share" => (SeriesKind::Share, Derived::Share),
        _ => return None,
    })
}

/// The canonical name closest to `name` (edit distance at most 3), for hints.
fn closest_name(name: &str) -> Option<&'static str> {
    wire::values::CANONICAL
        .iter()
        .map(|c| (distance(name, c.name), c.name))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, n)| n)
}

fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(text: &str) -> Result<Expr, ExprError> {
        Expr::compile(text, &mut SeriesTable::default())
    }

    fn eval(text: &str, values: &[(&str, f64)], fault: Option<FaultCategory>) -> Truth {
        let mut table = SeriesTable::default();
        let expr = Expr::compile(text, &mut table).expect("compiles");
        let mut dense = vec![f64::NAN; wire::values::CANONICAL.len()];
        for (name, value) in values {
            dense[usize::from(canonical_index(name).expect("canonical"))] = *value;
        }
        let state = table.new_state();
        expr.eval(&Context {
            values: &dense,
            fault,
            vulnerable: false,
            series: &table,
            state: &state,
            village_outdoor: f64::NAN,
        })
    }

    #[test]
    fn three_valued_logic() {
        let cold = [("indoor_temp_c", 12.0)];
        assert_eq!(eval("indoor_temp_c < 14", &cold, None), Truth::True);
        assert_eq!(
            eval("indoor_temp_c < 14 and setpoint_c >= 16", &cold, None),
            Truth::Unknown
        );
        assert_eq!(
            eval("indoor_temp_c > 14 and setpoint_c >= 16", &cold, None),
            Truth::False
        );
        assert_eq!(
            eval("indoor_temp_c < 14 or setpoint_c >= 16", &cold, None),
            Truth::True
        );
        assert_eq!(eval("not (setpoint_c > 1)", &cold, None), Truth::Unknown);
        assert_eq!(eval("indoor_temp_c / 0 > 1", &cold, None), Truth::Unknown);
        assert_eq!(
            eval(
                "present(setpoint_c) or abs(-indoor_temp_c) == 12",
                &cold,
                None
            ),
            Truth::True
        );
    }

    #[test]
    fn faults_by_category() {
        let flow = Some(FaultCategory::WaterFlow);
        assert_eq!(eval("fault", &[], flow), Truth::True);
        assert_eq!(
            eval("fault_in(\"water_flow\", \"overheat\")", &[], flow),
            Truth::True
        );
        assert_eq!(eval("fault_in(\"overheat\")", &[], flow), Truth::False);
        assert_eq!(eval("not fault", &[], None), Truth::True);
    }

    #[test]
    fn type_errors_point_at_the_culprit() {
        let e = compile("indoor_temp_c + 1").expect_err("number");
        assert_eq!(e.span, 0..17);
        assert!(e.message.contains("must be true or false"), "{}", e.message);
        let e = compile("room_temp < 14").expect_err("unknown name");
        assert_eq!(e.span, 0..9);
        let e = compile("indor_temp_c < 14").expect_err("typo");
        assert!(
            e.message.contains("did you mean indoor_temp_c"),
            "{}",
            e.message
        );
        let e = compile("avg(flow_temp_c) > 3").expect_err("arity");
        assert!(
            e.message.contains("takes 2 arguments, not 1"),
            "{}",
            e.message
        );
        let e = compile("avg(flow_temp_c, 10) > 3").expect_err("window");
        assert_eq!(e.span, 17..19);
        let e = compile("trips(1h, \"leaky_roof\") > 1").expect_err("category");
        assert_eq!(e.span, 10..22);
        let e = compile("fault and 3").expect_err("bool");
        assert_eq!(e.span, 10..11);
        let e = compile("indoor_temp_c < 1h").expect_err("duration");
        assert_eq!(e.span, 16..18);
        let e = compile("wobble(1) > 3").expect_err("function");
        assert_eq!(e.span, 0..6);
    }

    #[test]
    fn equal_windows_share_one_series() {
        let mut table = SeriesTable::default();
        Expr::compile(
            "avg(flow_temp_c, 1h) > 1 and max(flow_temp_c, 1h) < 9",
            &mut table,
        )
        .expect("compiles");
        Expr::compile(
            "min(flow_temp_c, 1h) > 0 and min(flow_temp_c, 2h) > 0",
            &mut table,
        )
        .expect("compiles");
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn describe_lists_names_and_calls() {
        let mut table = SeriesTable::default();
        let expr = Expr::compile(
            "indoor_temp_c < 14 and avg(flow_temp_c, 1h) < 30 and not fault",
            &mut table,
        )
        .expect("compiles");
        let mut dense = vec![f64::NAN; wire::values::CANONICAL.len()];
        dense[usize::from(canonical_index("indoor_temp_c").expect("known"))] = 11.25;
        let state = table.new_state();
        let context = Context {
            values: &dense,
            fault: None,
            vulnerable: false,
            series: &table,
            state: &state,
            village_outdoor: f64::NAN,
        };
        assert_eq!(
            expr.describe(&context),
            "indoor_temp_c = 11.25, avg(flow_temp_c, 1h) = ?, fault = false"
        );
    }
}
