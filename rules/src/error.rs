//! Rule file errors: where in which file something is wrong, in which rule and field, and why.

use std::fmt;

/// A position in a rule file, shown as `origin:line:column` (both 1-based; the column counts
/// characters, not bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The name the caller gave the text, usually its file path.
    pub origin: String,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Location {
    /// The location of byte `offset` in `text`. An offset past the end (or inside a character)
    /// is clamped to the last position before it.
    pub fn at(text: &str, origin: &str, offset: usize) -> Self {
        let mut line = 1;
        let mut column = 1;
        for (index, character) in text.char_indices() {
            if index >= offset {
                break;
            }
            if character == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Self {
            origin: origin.to_owned(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.origin, self.line, self.column)
    }
}

/// Why a rule file was refused. Every variant's message starts with `origin:line:column:` and
/// names the rule and field when they are known, e.g.
/// ``rules/default.toml:14:9: rule "indoor_cold" field `value`: "room_temp" is not a canonical value name``.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    /// The text is not TOML, or not the shape of a rule file: a syntax error, an unknown or
    /// missing field, a value of the wrong type, an unknown enum name or a bad duration.
    #[error("{location}: {}{message}", context(.rule.as_deref(), .field.as_deref()))]
    Toml {
        location: Location,
        /// The id of the rule the error is in, when it can be told.
        rule: Option<String>,
        /// The field (dotted path inside the rule, e.g. `action.order.priority`), when known.
        field: Option<String>,
        /// The TOML parser's own description.
        message: String,
    },
    /// The rule file is well-formed but a rule means something impossible or ambiguous.
    #[error("{location}: {}{problem}", context(.rule.as_deref(), Some(.field)))]
    Invalid {
        location: Location,
        /// The id of the rule, as written (it may itself be the problem).
        rule: Option<String>,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: Problem,
    },
}

impl RuleError {
    /// Where the error is.
    pub fn location(&self) -> &Location {
        match self {
            RuleError::Toml { location, .. } | RuleError::Invalid { location, .. } => location,
        }
    }

    /// The field at fault, when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            RuleError::Toml { field, .. } => field.as_deref(),
            RuleError::Invalid { field, .. } => Some(field),
        }
    }
}

/// `rule "id" field `f`: ` with the parts that are known.
fn context(rule: Option<&str>, field: Option<&str>) -> String {
    match (rule, field) {
        (Some(rule), Some(field)) => format!("rule {rule:?} field `{field}`: "),
        (Some(rule), None) => format!("rule {rule:?}: "),
        (None, Some(field)) => format!("field `{field}`: "),
        (None, None) => String::new(),
    }
}

/// What is wrong with a well-formed rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The id is empty, too long or has characters outside `a-z`, `0-9`, `-`, `_`.
    #[error("{id:?} is not a valid rule id: use 1 to 64 of a-z, 0-9, '-' and '_'")]
    BadId { id: String },
    /// Two rules share an id.
    #[error("rule id {id:?} is already used by the rule at line {first_line}")]
    DuplicateId { id: String, first_line: usize },
    /// A threshold names a value that `wire::values` does not know.
    #[error("{name:?} is not a canonical value name")]
    UnknownValueName { name: String },
    /// A rule names a vendor value (`x_...`): rules read canonical values only.
    #[error("{name:?} is a vendor value: rules read canonical values only (map the brand's register onto a canonical value name in its profile to use it in a rule)")]
    VendorValueName { name: String },
    /// A fault category that `wire::FaultCategory` does not know.
    #[error(
        "{name:?} is not a fault category (known: {})",
        known_fault_categories()
    )]
    UnknownFaultCategory { name: String },
    /// A field that this kind of rule requires is missing.
    #[error("{kind} rules need this field")]
    Missing { kind: &'static str },
    /// A field that this kind of rule does not use is present.
    #[error("{kind} rules do not use this field")]
    NotUsed { kind: &'static str },
    /// A threshold rule has neither `below` nor `above`.
    #[error("a threshold rule needs exactly one of `below` or `above`; it has neither")]
    MissingThreshold,
    /// A threshold rule has both `below` and `above`.
    #[error("a threshold rule needs exactly one of `below` or `above`; it has both")]
    BothThresholds,
    /// A clear threshold on the trigger's side of it (the alert could clear while it triggers).
    #[error("{clear} must be {relation} {trigger}, the trigger threshold (hysteresis)")]
    Hysteresis {
        clear: f64,
        relation: &'static str,
        trigger: f64,
    },
    /// The clear field of the other direction (`clear_below` with `below`, `clear_above` with
    /// `above`).
    #[error("this clear threshold goes with `{goes_with}`, not with `{used_with}`")]
    WrongClearDirection {
        goes_with: &'static str,
        used_with: &'static str,
    },
    /// NaN or infinity.
    #[error("{value} is not a finite number")]
    NotFinite { value: f64 },
    /// `members` of a fleet rule that is neither a rule id nor a list of them.
    #[error("members must be a rule id or a list of rule ids, e.g. [\"gas_fault\", \"gas_pressure_low\"]")]
    MembersType,
    /// A list that would match nothing.
    #[error("an empty list matches nothing; leave the field out to match everything")]
    EmptyList,
    /// A duration that must be above zero (an absence rule's `for`, which would otherwise fire
    /// after every reading; a fleet rule's `within` or `hold`).
    #[error("needs a duration longer than 0s")]
    ZeroDuration,
    /// A fleet rule's `clear_members` entry that is not one of its `members`.
    #[error("{id:?} is not one of the rule's members")]
    NotAMember { id: String },
    /// A fleet rule's `hold` longer than its correlation window.
    #[error("hold ({}) must not be longer than within ({})", crate::condition::format_duration(*hold), crate::condition::format_duration(*within))]
    HoldLongerThanWindow {
        hold: std::time::Duration,
        within: std::time::Duration,
    },
    /// A work order category that is empty or has characters outside `a-z`, `0-9`, `_`.
    #[error("{category:?} is not a valid order category: use 1 to 64 of a-z, 0-9 and '_'")]
    BadOrderCategory { category: String },
    /// An expression that does not parse or does not type-check; the location is inside it.
    #[error("{message}")]
    Expression { message: String },
    /// More escalation levels than the engine keeps timers for.
    #[error("a rule has at most {max} escalation levels")]
    TooManyEscalations { max: usize },
    /// More overrides than a device's variant index holds.
    #[error("a rule has at most 250 overrides")]
    TooManyOverrides,
    /// A fleet rule names a rule that the file does not define.
    #[error("no rule has the id {id:?}")]
    UnknownRule { id: String },
    /// A share outside (0, 1].
    #[error("{value} is not a share: use a number above 0 and at most 1")]
    Share { value: f64 },
    /// A fleet rule for groups of fewer than two devices.
    #[error("a fleet rule needs groups of at least 2 devices")]
    MinDevices,
}

/// The fault category names, comma separated.
fn known_fault_categories() -> String {
    wire::FaultCategory::ALL
        .iter()
        .map(|category| category.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_characters_from_one() {
        let text = "ab\nc°d\nef";
        assert_eq!(Location::at(text, "f", 0).to_string(), "f:1:1");
        assert_eq!(Location::at(text, "f", 3).to_string(), "f:2:1");
        // '°' is two bytes: byte 6 is 'd', the third character of line 2.
        assert_eq!(Location::at(text, "f", 6).to_string(), "f:2:3");
        assert_eq!(Location::at(text, "f", 1_000).to_string(), "f:3:3");
    }

    #[test]
    fn messages_name_what_is_known() {
        let location = Location {
            origin: "x.toml".into(),
            line: 2,
            column: 5,
        };
        let error = RuleError::Toml {
            location: location.clone(),
            rule: None,
            field: None,
            message: "bad".into(),
        };
        assert_eq!(error.to_string(), "x.toml:2:5: bad");
        let error = RuleError::Invalid {
            location,
            rule: Some("r".into()),
            field: "below",
            problem: Problem::MissingThreshold,
        };
        assert_eq!(
            error.to_string(),
            "x.toml:2:5: rule \"r\" field `below`: a threshold rule needs exactly one of \
             `below` or `above`; it has neither"
        );
        assert_eq!(error.field(), Some("below"));
    }
}
