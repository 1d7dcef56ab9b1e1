//! Validated rules and rule sets, and the vocabulary they share with transitions (severity,
//! action, priority).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::DeviceKind;

use crate::condition::Condition;
use crate::error::RuleError;

/// How bad an alert is, from least to most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing; nobody needs to act.
    Info,
    /// Act within the day.
    Minor,
    /// Act now: a household is, or soon will be, without heat.
    Major,
    /// Safety: act now and escalate.
    Critical,
}

/// Work order priority, from least to most urgent.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Next planned visit.
    Low,
    /// The default.
    #[default]
    Normal,
    /// Ahead of normal orders.
    High,
    /// Ahead of everything.
    Urgent,
}

/// What a firing rule asks for. In rule files: `action = "alert"` or
/// `action = { order = { category = "repair", priority = "high" } }` (priority defaults to
/// `normal`). The same shape is used in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Show an alert to operators; open no work order.
    #[serde(rename = "alert")]
    AlertOnly,
    /// Open a work order.
    Order {
        /// Work order category, e.g. `repair`, `low_indoor_temperature`.
        category: String,
        /// Work order priority.
        #[serde(default)]
        priority: Priority,
    },
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Unique id in its set: 1 to 64 of `a-z`, `0-9`, `-`, `_` (it appears in episode ids).
    pub id: String,
    /// Free text for operators.
    pub description: String,
    /// What the rule watches.
    pub condition: Condition,
    /// Device kinds the rule applies to; never empty (all kinds when the file says nothing).
    pub applies_to: Vec<DeviceKind>,
    /// How long the condition must hold before the rule fires (`for` in the file). For an
    /// absence rule: how long without a reading.
    pub hold_for: Duration,
    /// How long the clear condition must hold before the alert resolves.
    pub clear_for: Duration,
    /// How bad it is.
    pub severity: Severity,
    /// What to do when it fires.
    pub action: Action,
}

impl Rule {
    /// Whether the rule applies to a device of this kind.
    pub fn applies_to(&self, kind: DeviceKind) -> bool {
        self.applies_to.contains(&kind)
    }

    /// [`Rule::hold_for`] in milliseconds, saturating at `i64::MAX`.
    pub fn hold_for_ms(&self) -> i64 {
        duration_ms(self.hold_for)
    }

    /// [`Rule::clear_for`] in milliseconds, saturating at `i64::MAX`.
    pub fn clear_for_ms(&self) -> i64 {
        duration_ms(self.clear_for)
    }
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A validated set of rules with unique ids, in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Parses and validates a rule file. `origin` names the text in error messages (usually
    /// the file path).
    pub fn parse(text: &str, origin: &str) -> Result<RuleSet, RuleError> {
        crate::parse::parse_rules(text, origin).map(|rules| RuleSet { rules })
    }

    /// The default pack, [`crate::DEFAULT_RULES`]. An error here is a bug in this crate (a test
    /// checks that it parses).
    pub fn default_pack() -> Result<RuleSet, RuleError> {
        RuleSet::parse(crate::DEFAULT_RULES, crate::DEFAULT_RULES_ORIGIN)
    }

    /// The rules in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.id == id)
    }

    /// The position of the rule with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.rules.iter().position(|rule| rule.id == id)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::Direction;

    #[test]
    fn default_pack_parses_with_the_documented_rules() {
        let set = RuleSet::default_pack().expect("default pack parses");
        let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["device_fault", "indoor_cold", "offline"]);

        let fault = set.get("device_fault").expect("present");
        assert_eq!(fault.condition, Condition::Fault { categories: vec![] });
        assert_eq!(fault.hold_for, Duration::ZERO);
        assert_eq!(
            fault.action,
            Action::Order {
                category: "repair".into(),
                priority: Priority::High
            }
        );

        let cold = set.get("indoor_cold").expect("present");
        match &cold.condition {
            Condition::Threshold(t) => {
                assert_eq!(t.value, "indoor_temp_c");
                assert_eq!(t.direction, Direction::Below);
                assert_eq!((t.trigger, t.clear), (14.0, 16.0));
            }
            other => panic!("indoor_cold is {other:?}"),
        }
        assert_eq!(cold.hold_for, Duration::from_secs(30 * 60));
        assert_eq!(
            cold.applies_to,
            [DeviceKind::HeatPump, DeviceKind::GasBoiler]
        );

        let offline = set.get("offline").expect("present");
        assert!(offline.condition.is_absence());
        assert_eq!(offline.hold_for_ms(), 15 * 60 * 1000);
        assert_eq!(offline.action, Action::AlertOnly);
        assert_eq!(offline.severity, Severity::Major);
    }

    #[test]
    fn actions_have_the_same_shape_in_json() {
        let order = Action::Order {
            category: "repair".into(),
            priority: Priority::Urgent,
        };
        let json = serde_json::to_string(&order).expect("serialises");
        assert_eq!(
            json,
            r#"{"order":{"category":"repair","priority":"urgent"}}"#
        );
        assert_eq!(
            serde_json::to_string(&Action::AlertOnly).expect("serialises"),
            r#""alert""#
        );
    }

    #[test]
    fn severities_and_priorities_are_ordered() {
        assert!(Severity::Info < Severity::Minor && Severity::Major < Severity::Critical);
        assert!(Priority::Low < Priority::Normal && Priority::High < Priority::Urgent);
    }

    #[test]
    fn huge_durations_saturate() {
        let mut rule = RuleSet::default_pack()
            .expect("default pack parses")
            .rules()
            .first()
            .cloned()
            .expect("one rule");
        rule.hold_for = Duration::MAX;
        assert_eq!(rule.hold_for_ms(), i64::MAX);
    }
}
