//! Reading rule files: TOML into raw, position-carrying structs, then validation into
//! [`Rule`]s with errors that point at the line, column, rule and field.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;
use wire::{DeviceKind, FaultCategory};

use crate::condition::{Condition, Direction, Threshold};
use crate::error::{Location, Problem, RuleError};
use crate::rule::{Action, Rule, Severity};

/// A rule file: a list of `[[rule]]` tables.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

/// The kinds of rule a file may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawKind {
    Fault,
    Threshold,
    Absence,
}

impl RawKind {
    fn name(self) -> &'static str {
        match self {
            RawKind::Fault => "fault",
            RawKind::Threshold => "threshold",
            RawKind::Absence => "absence",
        }
    }
}

/// A humantime duration (`"30m"`, `"1h 30m"`, `"0s"`).
#[derive(Deserialize)]
struct HumanDuration(#[serde(with = "humantime_serde")] Duration);

/// One `[[rule]]` table as written, every field with its position.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    #[serde(default)]
    description: String,
    kind: Spanned<RawKind>,
    categories: Option<Spanned<Vec<Spanned<String>>>>,
    applies_to: Option<Spanned<Vec<DeviceKind>>>,
    #[serde(rename = "for")]
    hold_for: Option<Spanned<HumanDuration>>,
    value: Option<Spanned<String>>,
    below: Option<Spanned<f64>>,
    above: Option<Spanned<f64>>,
    clear_above: Option<Spanned<f64>>,
    clear_below: Option<Spanned<f64>>,
    clear_for: Option<Spanned<HumanDuration>>,
    severity: Spanned<Severity>,
    action: Spanned<Action>,
}

/// Parses and validates a whole rule file.
pub(crate) fn parse_rules(text: &str, origin: &str) -> Result<Vec<Rule>, RuleError> {
    let file: RawFile = toml::from_str(text).map_err(|error| toml_error(text, origin, &error))?;
    let mut first_line_of: BTreeMap<String, usize> = BTreeMap::new();
    let mut rules = Vec::with_capacity(file.rule.len());
    for raw in file.rule {
        let raw_span = raw.span();
        let raw = raw.into_inner();
        let checker = Checker {
            text,
            origin,
            rule: raw.id.get_ref().clone(),
        };
        let rule = checker.rule(raw, raw_span.clone())?;
        let line = Location::at(text, origin, raw_span.start).line;
        if let Some(first_line) = first_line_of.get(&rule.id) {
            // The id's own position is not kept in `Rule`; point at the rule's header.
            return Err(checker.invalid(
                raw_span,
                "id",
                Problem::DuplicateId {
                    id: rule.id,
                    first_line: *first_line,
                },
            ));
        }
        first_line_of.insert(rule.id.clone(), line);
        rules.push(rule);
    }
    Ok(rules)
}

/// Validates one rule, knowing where it is.
struct Checker<'a> {
    text: &'a str,
    origin: &'a str,
    rule: String,
}

impl Checker<'_> {
    fn invalid(&self, span: Range<usize>, field: &'static str, problem: Problem) -> RuleError {
        RuleError::Invalid {
            location: Location::at(self.text, self.origin, span.start),
            rule: Some(self.rule.clone()),
            field,
            problem,
        }
    }

    fn rule(&self, raw: RawRule, raw_span: Range<usize>) -> Result<Rule, RuleError> {
        if !is_identifier(raw.id.get_ref(), true) {
            return Err(self.invalid(
                raw.id.span(),
                "id",
                Problem::BadId {
                    id: raw.id.get_ref().clone(),
                },
            ));
        }
        let kind = *raw.kind.get_ref();
        let kind_name = kind.name();

        let applies_to = match &raw.applies_to {
            None => vec![DeviceKind::HeatPump, DeviceKind::GasBoiler],
            Some(list) if list.get_ref().is_empty() => {
                return Err(self.invalid(list.span(), "applies_to", Problem::EmptyList))
            }
            Some(list) => {
                let mut kinds = list.get_ref().clone();
                kinds.sort();
                kinds.dedup();
                kinds
            }
        };

        let hold_for = raw.hold_for.as_ref().map(|d| d.get_ref().0);
        let clear_for = raw.clear_for.as_ref().map(|d| d.get_ref().0);

        // Fields that only some kinds use.
        let not_used = |present: bool, field: &'static str, span: Option<Range<usize>>| {
            if present {
                Err(self.invalid(
                    span.unwrap_or_else(|| raw_span.clone()),
                    field,
                    Problem::NotUsed { kind: kind_name },
                ))
            } else {
                Ok(())
            }
        };
        let span_of = |field: &Option<Spanned<f64>>| field.as_ref().map(Spanned::span);
        if kind != RawKind::Fault {
            not_used(
                raw.categories.is_some(),
                "categories",
                raw.categories.as_ref().map(Spanned::span),
            )?;
        }
        if kind != RawKind::Threshold {
            not_used(
                raw.value.is_some(),
                "value",
                raw.value.as_ref().map(Spanned::span),
            )?;
            for (field, name) in [
                (&raw.below, "below"),
                (&raw.above, "above"),
                (&raw.clear_above, "clear_above"),
                (&raw.clear_below, "clear_below"),
            ] {
                not_used(field.is_some(), name, span_of(field))?;
            }
        }
        if kind == RawKind::Absence {
            not_used(
                raw.clear_for.is_some(),
                "clear_for",
                raw.clear_for.as_ref().map(Spanned::span),
            )?;
        }

        let condition = match kind {
            RawKind::Fault => Condition::Fault {
                categories: self.categories(raw.categories.as_ref())?,
            },
            RawKind::Threshold => Condition::Threshold(self.threshold(&raw)?),
            RawKind::Absence => {
                match &raw.hold_for {
                    None => {
                        return Err(self.invalid(
                            raw.kind.span(),
                            "for",
                            Problem::Missing { kind: kind_name },
                        ))
                    }
                    Some(duration) if duration.get_ref().0.is_zero() => {
                        return Err(self.invalid(duration.span(), "for", Problem::ZeroDuration))
                    }
                    Some(_) => {}
                }
                Condition::Absence
            }
        };

        if let Action::Order { category, .. } = raw.action.get_ref() {
            if !is_identifier(category, false) {
                return Err(self.invalid(
                    raw.action.span(),
                    "action.order.category",
                    Problem::BadOrderCategory {
                        category: category.clone(),
                    },
                ));
            }
        }

        Ok(Rule {
            id: raw.id.into_inner(),
            description: raw.description,
            condition,
            applies_to,
            hold_for: hold_for.unwrap_or(Duration::ZERO),
            clear_for: clear_for.unwrap_or(Duration::ZERO),
            severity: raw.severity.into_inner(),
            action: raw.action.into_inner(),
        })
    }

    fn categories(
        &self,
        raw: Option<&Spanned<Vec<Spanned<String>>>>,
    ) -> Result<Vec<FaultCategory>, RuleError> {
        let mut categories = Vec::new();
        for name in raw
            .map(|list| list.get_ref().as_slice())
            .unwrap_or_default()
        {
            let category = FaultCategory::parse(name.get_ref()).ok_or_else(|| {
                self.invalid(
                    name.span(),
                    "categories",
                    Problem::UnknownFaultCategory {
                        name: name.get_ref().clone(),
                    },
                )
            })?;
            if !categories.contains(&category) {
                categories.push(category);
            }
        }
        categories.sort();
        Ok(categories)
    }

    fn threshold(&self, raw: &RawRule) -> Result<Threshold, RuleError> {
        let value = raw.value.as_ref().ok_or_else(|| {
            self.invalid(
                raw.kind.span(),
                "value",
                Problem::Missing { kind: "threshold" },
            )
        })?;
        if wire::values::lookup(value.get_ref()).is_none() {
            return Err(self.invalid(
                value.span(),
                "value",
                Problem::UnknownValueName {
                    name: value.get_ref().clone(),
                },
            ));
        }
        for (field, name) in [
            (&raw.below, "below"),
            (&raw.above, "above"),
            (&raw.clear_above, "clear_above"),
            (&raw.clear_below, "clear_below"),
        ] {
            if let Some(number) = field {
                if !number.get_ref().is_finite() {
                    return Err(self.invalid(
                        number.span(),
                        name,
                        Problem::NotFinite {
                            value: *number.get_ref(),
                        },
                    ));
                }
            }
        }
        let (direction, trigger, clear, wrong_clear) = match (&raw.below, &raw.above) {
            (Some(below), None) => (
                Direction::Below,
                below,
                raw.clear_above.as_ref(),
                raw.clear_below.as_ref().map(|c| (c, "clear_below")),
            ),
            (None, Some(above)) => (
                Direction::Above,
                above,
                raw.clear_below.as_ref(),
                raw.clear_above.as_ref().map(|c| (c, "clear_above")),
            ),
            (Some(_), Some(above)) => {
                return Err(self.invalid(above.span(), "above", Problem::BothThresholds))
            }
            (None, None) => {
                return Err(self.invalid(raw.kind.span(), "below", Problem::MissingThreshold))
            }
        };
        let trigger_name = direction.as_str();
        if let Some((wrong, name)) = wrong_clear {
            return Err(self.invalid(
                wrong.span(),
                name,
                Problem::WrongClearDirection {
                    goes_with: if trigger_name == "below" {
                        "above"
                    } else {
                        "below"
                    },
                    used_with: trigger_name,
                },
            ));
        }
        let trigger_value = *trigger.get_ref();
        let clear_value = match clear {
            None => trigger_value,
            Some(clear) => {
                let value = *clear.get_ref();
                let (ok, relation, name) = match direction {
                    Direction::Below => (value >= trigger_value, ">=", "clear_above"),
                    Direction::Above => (value <= trigger_value, "<=", "clear_below"),
                };
                if !ok {
                    return Err(self.invalid(
                        clear.span(),
                        name,
                        Problem::Hysteresis {
                            clear: value,
                            relation,
                            trigger: trigger_value,
                        },
                    ));
                }
                value
            }
        };
        Ok(Threshold {
            value: value.get_ref().clone(),
            direction,
            trigger: trigger_value,
            clear: clear_value,
        })
    }
}

/// 1 to 64 of `a-z`, `0-9`, `_` (and `-` when `allow_dash`).
fn is_identifier(value: &str, allow_dash: bool) -> bool {
    !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (allow_dash && c == '-')
        })
}

/// Turns a TOML or serde error into a [`RuleError::Toml`] that names the rule and field.
fn toml_error(text: &str, origin: &str, error: &toml::de::Error) -> RuleError {
    let offset = error.span().map_or(0, |span| span.start);
    let (rule, path) = locate(text, offset);
    let message = error.message().to_owned();
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_owned);
    let field = match (named, path) {
        // An unknown field inside a nested table: keep the path to it.
        (Some(name), Some(path)) if path.ends_with(&name) => Some(path),
        (Some(name), _) => Some(name),
        (None, path) => path,
    };
    RuleError::Toml {
        location: Location::at(text, origin, offset),
        rule,
        field,
        message,
    }
}

/// Finds which rule (by id) and which key path contain byte `offset`. Best effort: the text
/// may not even be TOML, then nothing is found.
fn locate(text: &str, offset: usize) -> (Option<String>, Option<String>) {
    let Ok(document) = DeTable::parse(text) else {
        return (None, None);
    };
    let top = document.get_ref();
    let rules = top
        .iter()
        .find(|(key, _)| key.get_ref() == "rule")
        .and_then(|(_, value)| value.get_ref().as_array());
    let rule_table = rules.and_then(|rules| {
        rules
            .iter()
            .filter(|rule| rule.span().start <= offset)
            .max_by_key(|rule| rule.span().start)
            .and_then(|rule| rule.get_ref().as_table())
    });
    match rule_table {
        Some(table) => {
            let id = table
                .iter()
                .find(|(key, _)| key.get_ref() == "id")
                .and_then(|(_, value)| value.get_ref().as_str())
                .map(str::to_owned);
            (id, key_path(table, offset))
        }
        None => (None, key_path(top, offset)),
    }
}

/// The dotted path of the deepest key whose key or value contains `offset`.
fn key_path(table: &DeTable<'_>, offset: usize) -> Option<String> {
    for (key, value) in table.iter() {
        let in_key = key.span().contains(&offset);
        let in_value = value.span().contains(&offset);
        if !(in_key || in_value) {
            continue;
        }
        let name = key.get_ref().to_string();
        let deeper = match value.get_ref() {
            DeValue::Table(inner) if in_value => key_path(inner, offset),
            _ => None,
        };
        return Some(match deeper {
            Some(rest) => format!("{name}.{rest}"),
            None => name,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::rule::RuleSet;

    /// Parses `text` and returns the error message, failing the test if it parses.
    fn error_of(text: &str) -> String {
        match RuleSet::parse(text, "rules/test.toml") {
            Ok(set) => panic!("expected an error, parsed {set:?}"),
            Err(error) => error.to_string(),
        }
    }

    const COLD: &str = r#"[[rule]]
id = "indoor_cold"
kind = "threshold"
value = "indoor_temp_c"
below = 14.0
for = "30m"
severity = "major"
action = "alert"
"#;

    #[test]
    fn integers_are_accepted_as_thresholds() {
        let set = RuleSet::parse(&COLD.replace("14.0", "14"), "t").expect("parses");
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn unknown_value_name_points_at_the_value() {
        let text = COLD.replace("\"indoor_temp_c\"", "\"room_temp\"");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:4:9: rule \"indoor_cold\" field `value`: \"room_temp\" is not a \
             canonical value name"
        );
    }

    #[test]
    fn unknown_field_is_named_with_its_position() {
        let text = format!("{COLD}colour = \"red\"\n");
        let message = error_of(&text);
        assert!(
            message.starts_with(
                "rules/test.toml:9:1: rule \"indoor_cold\" field `colour`: unknown field `colour`"
            ),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let text = COLD.replace("below = 14.0", "below = \"cold\"");
        let message = error_of(&text);
        assert!(
            message.starts_with("rules/test.toml:5:9: rule \"indoor_cold\" field `below`: "),
            "{message}"
        );
        assert!(message.contains("invalid type"), "{message}");
    }

    #[test]
    fn bad_duration_names_the_field() {
        let text = COLD.replace("\"30m\"", "\"half an hour\"");
        let message = error_of(&text);
        assert!(
            message.starts_with("rules/test.toml:6:7: rule \"indoor_cold\" field `for`: "),
            "{message}"
        );
    }

    #[test]
    fn missing_field_points_at_the_rule_header() {
        let text = COLD.replace("severity = \"major\"\n", "");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:1:1: rule \"indoor_cold\" field `severity`: missing field `severity`"
        );
    }

    #[test]
    fn nested_action_errors_give_the_dotted_path() {
        let text = COLD.replace(
            "action = \"alert\"",
            "action = { order = { category = \"repair\", priority = \"asap\" } }",
        );
        let message = error_of(&text);
        assert!(
            message.starts_with(
                "rules/test.toml:8:54: rule \"indoor_cold\" field `action.order.priority`: "
            ),
            "{message}"
        );
        assert!(message.contains("unknown variant `asap`"), "{message}");
    }

    #[test]
    fn unknown_fault_category_points_at_the_list_entry() {
        let text = r#"[[rule]]
id = "flow"
kind = "fault"
categories = ["water_flow", "leaky_roof"]
severity = "minor"
action = "alert"
"#;
        let message = error_of(text);
        assert!(
            message.starts_with(
                "rules/test.toml:4:29: rule \"flow\" field `categories`: \"leaky_roof\" is not a \
                 fault category"
            ),
            "{message}"
        );
    }

    #[test]
    fn duplicate_ids_are_refused_naming_the_first() {
        let text = format!("{COLD}\n{COLD}");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:10:1: rule \"indoor_cold\" field `id`: rule id \"indoor_cold\" is \
             already used by the rule at line 1"
        );
    }

    #[test]
    fn a_threshold_needs_exactly_one_side() {
        let none = COLD.replace("below = 14.0\n", "");
        assert_eq!(
            error_of(&none),
            "rules/test.toml:3:8: rule \"indoor_cold\" field `below`: a threshold rule needs \
             exactly one of `below` or `above`; it has neither"
        );
        let both = COLD.replace("below = 14.0\n", "below = 14.0\nabove = 30.0\n");
        assert_eq!(
            error_of(&both),
            "rules/test.toml:6:9: rule \"indoor_cold\" field `above`: a threshold rule needs \
             exactly one of `below` or `above`; it has both"
        );
    }

    #[test]
    fn hysteresis_must_not_cross_the_trigger() {
        let text = COLD.replace("below = 14.0\n", "below = 14.0\nclear_above = 12.0\n");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:6:15: rule \"indoor_cold\" field `clear_above`: 12 must be >= 14, \
             the trigger threshold (hysteresis)"
        );
        let text = COLD.replace("below = 14.0\n", "below = 14.0\nclear_below = 16.0\n");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:6:15: rule \"indoor_cold\" field `clear_below`: this clear \
             threshold goes with `above`, not with `below`"
        );
        let above = COLD
            .replace("below = 14.0\n", "above = 30.0\nclear_below = 31.0\n")
            .replace("indoor_cold", "indoor_hot");
        assert_eq!(
            error_of(&above),
            "rules/test.toml:6:15: rule \"indoor_hot\" field `clear_below`: 31 must be <= 30, \
             the trigger threshold (hysteresis)"
        );
    }

    #[test]
    fn non_finite_thresholds_are_refused() {
        let text = COLD.replace("14.0", "nan");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:5:9: rule \"indoor_cold\" field `below`: NaN is not a finite number"
        );
    }

    #[test]
    fn fields_of_other_kinds_are_refused() {
        let text = COLD.replace("kind = \"threshold\"", "kind = \"fault\"");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:4:9: rule \"indoor_cold\" field `value`: fault rules do not use \
             this field"
        );
        let text = r#"[[rule]]
id = "offline"
kind = "absence"
for = "15m"
clear_for = "1m"
severity = "major"
action = "alert"
"#;
        assert_eq!(
            error_of(text),
            "rules/test.toml:5:13: rule \"offline\" field `clear_for`: absence rules do not \
             use this field"
        );
    }

    #[test]
    fn absence_needs_a_positive_duration() {
        let text = r#"[[rule]]
id = "offline"
kind = "absence"
severity = "major"
action = "alert"
"#;
        assert_eq!(
            error_of(text),
            "rules/test.toml:3:8: rule \"offline\" field `for`: absence rules need this field"
        );
        let text = text.replace("kind = \"absence\"\n", "kind = \"absence\"\nfor = \"0s\"\n");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:4:7: rule \"offline\" field `for`: an absence rule needs a \
             duration longer than 0s"
        );
    }

    #[test]
    fn ids_and_order_categories_are_checked() {
        let text = COLD.replace("id = \"indoor_cold\"", "id = \"Indoor cold\"");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:2:6: rule \"Indoor cold\" field `id`: \"Indoor cold\" is not a \
             valid rule id: use 1 to 64 of a-z, 0-9, '-' and '_'"
        );
        let text = COLD.replace(
            "action = \"alert\"",
            "action = { order = { category = \"\" } }",
        );
        let message = error_of(&text);
        assert!(
            message.starts_with(
                "rules/test.toml:8:10: rule \"indoor_cold\" field `action.order.category`: "
            ),
            "{message}"
        );
    }

    #[test]
    fn empty_applies_to_is_refused_and_unknown_kinds_are_named() {
        let text = COLD.replace("for = \"30m\"", "applies_to = []");
        assert_eq!(
            error_of(&text),
            "rules/test.toml:6:14: rule \"indoor_cold\" field `applies_to`: an empty list \
             matches nothing; leave the field out to match everything"
        );
        let text = COLD.replace("for = \"30m\"", "applies_to = [\"stove\"]");
        let message = error_of(&text);
        assert!(
            message.starts_with("rules/test.toml:6:15: rule \"indoor_cold\" field `applies_to`: "),
            "{message}"
        );
        assert!(message.contains("unknown variant `stove`"), "{message}");
    }

    #[test]
    fn syntax_errors_have_a_position_and_top_level_fields_are_checked() {
        let message = error_of("[[rule]]\nid = = 3\n");
        assert!(message.starts_with("rules/test.toml:2:6: "), "{message}");
        assert_eq!(
            error_of("rulez = 1\n"),
            "rules/test.toml:1:1: field `rulez`: unknown field `rulez`, expected `rule`"
        );
    }

    #[test]
    fn an_empty_file_is_an_empty_rule_set() {
        assert_eq!(RuleSet::parse("", "empty.toml"), Ok(RuleSet::default()));
    }
}
