//! What a rule watches, and how one reading is judged against it.
//!
//! This module is the only place that knows the shape of a condition. The engine asks it two
//! things: how a reading stands against the trigger and the clear condition
//! ([`Condition::evaluate`], [`Condition::evaluate_in`]), and for the sentence that explains a
//! transition. [`Condition::Expr`] is the expression form; the others are the simple forms.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::{Fault, FaultCategory, Telemetry};

use crate::expr::{Context, Expr, Truth};

/// What a condition can read from a reading: a canonical value by name and the fault.
/// Implemented for [`Telemetry`] and for the engine's internal samples.
pub trait Observed {
    /// The value of a canonical name, if present.
    fn value_of(&self, name: &str) -> Option<f64>;
    /// The active fault, if any.
    fn fault_of(&self) -> Option<&Fault>;
}

impl Observed for Telemetry {
    fn value_of(&self, name: &str) -> Option<f64> {
        self.value(name)
    }

    fn fault_of(&self) -> Option<&Fault> {
        self.fault.as_ref()
    }
}

/// The condition of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// True while the reading carries a fault whose category is in `categories` (any category
    /// when the list is empty). Clears when a reading has no such fault.
    Fault {
        /// Categories that count; empty means all.
        categories: Vec<FaultCategory>,
    },
    /// A canonical value below (or above) a threshold, with a separate clear threshold.
    Threshold(Threshold),
    /// No reading from the device: judged by the engine from reading timestamps and the
    /// watermark, never from a reading's content.
    Absence,
    /// An expression (`when`) with an optional separate clear expression (`clear`; without
    /// one the alert clears when `when` is false).
    Expr {
        /// The trigger.
        when: Expr,
        /// The clear condition (hysteresis).
        clear: Option<Expr>,
    },
}

/// Which side of the threshold triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Triggers when the value is strictly below the trigger; clears strictly above `clear`.
    Below,
    /// Triggers when the value is strictly above the trigger; clears strictly below `clear`.
    Above,
}

impl Direction {
    /// `below` or `above`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Below => "below",
            Direction::Above => "above",
        }
    }

    /// The opposite word, used for the clear side.
    fn opposite(self) -> &'static str {
        match self {
            Direction::Below => "above",
            Direction::Above => "below",
        }
    }
}

/// A threshold on one canonical value, with hysteresis: for [`Direction::Below`],
/// `clear >= trigger`; for [`Direction::Above`], `clear <= trigger`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// Canonical value name (known to `wire::values::lookup`).
    pub value: String,
    /// Which side triggers.
    pub direction: Direction,
    /// The trigger threshold.
    pub trigger: f64,
    /// The clear threshold (equal to `trigger` when the rule file gives none).
    pub clear: f64,
}

/// How one reading stands against a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evaluation {
    /// The reading says nothing about the condition (value missing or not a finite number, or
    /// an absence condition): state does not change.
    Unknown,
    /// The trigger condition holds.
    Triggered,
    /// Neither the trigger nor the clear condition holds (between the two thresholds).
    Between,
    /// The clear condition holds.
    Cleared,
}

impl Condition {
    /// Whether this is an absence condition (judged from timestamps, not from readings).
    pub fn is_absence(&self) -> bool {
        matches!(self, Condition::Absence)
    }

    /// The rule kind as written in rule files: `fault`, `threshold` or `absence`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Condition::Fault { .. } => "fault",
            Condition::Threshold(_) => "threshold",
            Condition::Absence => "absence",
            Condition::Expr { .. } => "expr",
        }
    }

    /// Judges one reading.
    pub fn evaluate(&self, reading: &impl Observed) -> Evaluation {
        match self {
            Condition::Fault { categories } => match reading.fault_of() {
                Some(fault) if categories.is_empty() || categories.contains(&fault.category) => {
                    Evaluation::Triggered
                }
                _ => Evaluation::Cleared,
            },
            Condition::Threshold(threshold) => match reading.value_of(&threshold.value) {
                Some(value) if value.is_finite() => threshold.judge(value),
                _ => Evaluation::Unknown,
            },
            Condition::Absence | Condition::Expr { .. } => Evaluation::Unknown,
        }
    }

    /// Judges one reading, with the context expressions need (derived values, attributes).
    pub fn evaluate_in(&self, reading: &impl Observed, context: &Context<'_>) -> Evaluation {
        self.evaluate_for(reading, context, true)
    }

    /// [`Condition::evaluate_in`] for an alert that is (`firing`) or is not active. When it is
    /// not, a false trigger is all that matters (the clear condition is not evaluated: between
    /// and cleared mean the same to an idle or pending alert).
    pub fn evaluate_for(
        &self,
        reading: &impl Observed,
        context: &Context<'_>,
        firing: bool,
    ) -> Evaluation {
        match self {
            Condition::Expr { when, clear } => {
                let trigger = when.eval(context);
                if !firing && trigger == Truth::False {
                    return Evaluation::Between;
                }
                let cleared = match clear {
                    Some(clear) => clear.eval(context),
                    None => match trigger {
                        Truth::True => Truth::False,
                        Truth::False => Truth::True,
                        Truth::Unknown => Truth::Unknown,
                    },
                };
                match (trigger, cleared) {
                    (Truth::True, _) => Evaluation::Triggered,
                    (_, Truth::True) => Evaluation::Cleared,
                    (Truth::Unknown, Truth::Unknown) => Evaluation::Unknown,
                    _ => Evaluation::Between,
                }
            }
            other => other.evaluate(reading),
        }
    }

    /// The sentence for a firing caused by `reading`, e.g.
    /// `indoor_temp_c 11.2 below 14 for 30m` or `fault 3 (water_flow): flow switch open`.
    pub fn firing_summary(&self, reading: &impl Observed, hold_for: Duration) -> String {
        match self {
            Condition::Fault { .. } => match reading.fault_of() {
                Some(fault) if fault.text.is_empty() => {
                    format!("fault {} ({})", fault.code, fault.category.as_str())
                }
                Some(fault) => format!(
                    "fault {} ({}): {}",
                    fault.code,
                    fault.category.as_str(),
                    fault.text
                ),
                None => "fault".to_owned(),
            },
            Condition::Threshold(threshold) => {
                let value = reading
                    .value_of(&threshold.value)
                    .map_or_else(|| "?".to_owned(), |v| v.to_string());
                format!(
                    "{} {value} {} {}{}",
                    threshold.value,
                    threshold.direction.as_str(),
                    threshold.trigger,
                    for_clause(hold_for)
                )
            }
            Condition::Absence => absence_firing_summary(hold_for),
            Condition::Expr { when, .. } => format!("{}{}", when.text(), for_clause(hold_for)),
        }
    }

    /// The sentence for a resolution caused by `reading`, e.g. `indoor_temp_c 16.5 back above 16`.
    pub fn resolved_summary(&self, reading: &impl Observed, clear_for: Duration) -> String {
        match self {
            Condition::Fault { .. } => match reading.fault_of() {
                Some(fault) => format!(
                    "fault cleared (now fault {} ({}), which this rule does not watch)",
                    fault.code,
                    fault.category.as_str()
                ),
                None => format!("fault cleared{}", for_clause(clear_for)),
            },
            Condition::Threshold(threshold) => {
                let value = reading
                    .value_of(&threshold.value)
                    .map_or_else(|| "?".to_owned(), |v| v.to_string());
                format!(
                    "{} {value} back {} {}{}",
                    threshold.value,
                    threshold.direction.opposite(),
                    threshold.clear,
                    for_clause(clear_for)
                )
            }
            Condition::Absence => absence_resolved_summary(None),
            Condition::Expr { when, clear } => match clear {
                Some(clear) => format!("cleared: {}{}", clear.text(), for_clause(clear_for)),
                None => format!("cleared: not ({}){}", when.text(), for_clause(clear_for)),
            },
        }
    }
}

impl Threshold {
    /// Judges a finite value.
    pub(crate) fn judge(&self, value: f64) -> Evaluation {
        let (triggered, cleared) = match self.direction {
            Direction::Below => (value < self.trigger, value > self.clear),
            Direction::Above => (value > self.trigger, value < self.clear),
        };
        if triggered {
            Evaluation::Triggered
        } else if cleared {
            Evaluation::Cleared
        } else {
            Evaluation::Between
        }
    }
}

/// The sentence for an absence rule firing: `no reading for 15m`.
pub fn absence_firing_summary(hold_for: Duration) -> String {
    format!("no reading for {}", format_duration(hold_for))
}

/// The sentence for an absence rule resolving: `reading received after 47m without one`.
pub fn absence_resolved_summary(silence: Option<Duration>) -> String {
    match silence {
        Some(silence) => format!(
            "reading received after {} without one",
            format_duration(silence)
        ),
        None => "reading received".to_owned(),
    }
}

/// ` for 30m`, or nothing for a zero duration.
pub(crate) fn for_clause(duration: Duration) -> String {
    if duration.is_zero() {
        String::new()
    } else {
        format!(" for {}", format_duration(duration))
    }
}

/// A duration as operators write it (`30m`, `1h 30m`).
pub(crate) fn format_duration(duration: Duration) -> String {
    humantime_serde::re::humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use wire::{DeviceId, DeviceKind, Fault};

    use super::*;

    fn reading(values: &[(&str, f64)], fault: Option<Fault>) -> Telemetry {
        Telemetry {
            v: wire::SCHEMA_VERSION,
            device_id: DeviceId::parse("d-1").expect("valid id"),
            ts_ms: 0,
            seq: 1,
            profile: "test".into(),
            kind: DeviceKind::HeatPump,
            values: values.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            fault,
            extra: BTreeMap::new(),
        }
    }

    fn cold() -> Condition {
        Condition::Threshold(Threshold {
            value: "indoor_temp_c".into(),
            direction: Direction::Below,
            trigger: 14.0,
            clear: 16.0,
        })
    }

    #[test]
    fn threshold_has_three_bands_and_ignores_missing_or_non_finite_values() {
        let judge = |v: f64| cold().evaluate(&reading(&[("indoor_temp_c", v)], None));
        assert_eq!(judge(13.9), Evaluation::Triggered);
        assert_eq!(judge(14.0), Evaluation::Between);
        assert_eq!(judge(16.0), Evaluation::Between);
        assert_eq!(judge(16.1), Evaluation::Cleared);
        assert_eq!(judge(f64::NAN), Evaluation::Unknown);
        assert_eq!(cold().evaluate(&reading(&[], None)), Evaluation::Unknown);
    }

    #[test]
    fn above_thresholds_mirror_below() {
        let hot = Condition::Threshold(Threshold {
            value: "flow_temp_c".into(),
            direction: Direction::Above,
            trigger: 85.0,
            clear: 80.0,
        });
        let judge = |v: f64| hot.evaluate(&reading(&[("flow_temp_c", v)], None));
        assert_eq!(judge(86.0), Evaluation::Triggered);
        assert_eq!(judge(82.0), Evaluation::Between);
        assert_eq!(judge(79.0), Evaluation::Cleared);
    }

    #[test]
    fn fault_condition_filters_by_category() {
        let flow = Fault {
            code: 3,
            category: FaultCategory::WaterFlow,
            text: "flow switch open".into(),
        };
        let only_ignition = Condition::Fault {
            categories: vec![FaultCategory::IgnitionFailure],
        };
        let any = Condition::Fault { categories: vec![] };
        let with_fault = reading(&[], Some(flow));
        assert_eq!(any.evaluate(&with_fault), Evaluation::Triggered);
        assert_eq!(only_ignition.evaluate(&with_fault), Evaluation::Cleared);
        assert_eq!(any.evaluate(&reading(&[], None)), Evaluation::Cleared);
        assert_eq!(
            any.firing_summary(&with_fault, Duration::ZERO),
            "fault 3 (water_flow): flow switch open"
        );
    }

    #[test]
    fn summaries_are_sentences_operators_can_read() {
        let r = reading(&[("indoor_temp_c", 11.2)], None);
        assert_eq!(
            cold().firing_summary(&r, Duration::from_secs(1800)),
            "indoor_temp_c 11.2 below 14 for 30m"
        );
        let r = reading(&[("indoor_temp_c", 16.5)], None);
        assert_eq!(
            cold().resolved_summary(&r, Duration::ZERO),
            "indoor_temp_c 16.5 back above 16"
        );
        assert_eq!(
            Condition::Absence.firing_summary(&r, Duration::from_secs(900)),
            "no reading for 15m"
        );
    }
}
