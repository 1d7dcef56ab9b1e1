//! Validated rules and rule sets (with escalation levels and per-group overrides), and the
//! vocabulary they share with transitions (severity, action, priority).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::DeviceKind;

use crate::condition::Condition;
use crate::error::RuleError;
use crate::expr::Expr;
use crate::fleet::FleetRule;
use crate::window::SeriesTable;
use crate::DeviceInfo;

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
    /// For an absence rule: a condition on the device's last reading that must hold for the
    /// silence to count (e.g. `outdoor_temp_c < 0` for "offline in frost"). `when` in the file.
    pub guard: Option<Expr>,
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
    /// Higher severities within the same episode (`[[rule.escalate]]`), in file order.
    pub escalations: Vec<EscalationLevel>,
    /// Per-device-group variants (`[[rule.override]]`); the first that matches a device wins.
    pub overrides: Vec<Override>,
}

/// A higher severity the episode escalates to when its own condition holds for its `for`.
/// It can also open the episode directly (a dangerous condition need not wait for the base
/// rule's `for`).
#[derive(Debug, Clone, PartialEq)]
pub struct EscalationLevel {
    /// The condition of this level.
    pub when: Expr,
    /// How long it must hold.
    pub hold_for: Duration,
    /// The severity of the episode once at this level.
    pub severity: Severity,
    /// A new work-order priority at this level (orders only).
    pub priority: Option<Priority>,
}

impl EscalationLevel {
    /// [`EscalationLevel::hold_for`] in milliseconds.
    pub fn hold_for_ms(&self) -> i64 {
        duration_ms(self.hold_for)
    }
}

/// Which devices an override is for. Every criterion given must match; a device that is not
/// registered matches no override.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Township ids; empty: any.
    pub townships: Vec<String>,
    /// Village names; empty: any.
    pub villages: Vec<String>,
    /// Vulnerable households only (`true`) or the others (`false`).
    pub vulnerable: Option<bool>,
    /// Device tags (groups); the device must carry one of them; empty: any.
    pub tags: Vec<String>,
}

impl Selector {
    /// Whether a registered device matches.
    pub fn matches(&self, device: &DeviceInfo) -> bool {
        let township_ok = self.townships.is_empty()
            || device
                .township
                .as_ref()
                .is_some_and(|t| self.townships.contains(t));
        let village_ok = self.villages.is_empty()
            || device
                .village
                .as_ref()
                .is_some_and(|v| self.villages.contains(v));
        let vulnerable_ok = self.vulnerable.is_none_or(|v| v == device.vulnerable);
        let tags_ok = self.tags.is_empty() || device.tags.iter().any(|t| self.tags.contains(t));
        township_ok && village_ok && vulnerable_ok && tags_ok
    }
}

/// A variant of a rule for some devices. Fields left `None` are the rule's own.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub selector: Selector,
    /// Replaces the condition (expression rules: `when` / `clear`).
    pub condition: Option<Condition>,
    /// Replaces the guard of an absence rule (`when`).
    pub guard: Option<Expr>,
    pub hold_for: Option<Duration>,
    pub clear_for: Option<Duration>,
    pub severity: Option<Severity>,
    pub action: Option<Action>,
    pub escalations: Option<Vec<EscalationLevel>>,
}

/// The fields of a rule as they apply to one device (the rule itself or one of its overrides).
#[derive(Debug, Clone, Copy)]
pub struct Effective<'a> {
    pub condition: &'a Condition,
    pub guard: Option<&'a Expr>,
    pub hold_for: Duration,
    pub clear_for: Duration,
    pub severity: Severity,
    pub action: &'a Action,
    pub escalations: &'a [EscalationLevel],
}

impl Effective<'_> {
    pub fn hold_for_ms(&self) -> i64 {
        duration_ms(self.hold_for)
    }

    pub fn clear_for_ms(&self) -> i64 {
        duration_ms(self.clear_for)
    }

    /// Severity and action at escalation level `level` (0: the rule's own).
    pub fn at_level(&self, level: u8) -> (Severity, Action) {
        match level
            .checked_sub(1)
            .and_then(|i| self.escalations.get(usize::from(i)))
        {
            None => (self.severity, self.action.clone()),
            Some(escalation) => {
                let action = match (self.action, escalation.priority) {
                    (Action::Order { category, .. }, Some(priority)) => Action::Order {
                        category: category.clone(),
                        priority,
                    },
                    (action, _) => action.clone(),
                };
                (escalation.severity, action)
            }
        }
    }
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

    /// The variant for a device: 0 for the rule itself, `i + 1` for override `i`.
    pub fn variant_for(&self, device: Option<&DeviceInfo>) -> u8 {
        let Some(device) = device else { return 0 };
        self.overrides
            .iter()
            .position(|o| o.selector.matches(device))
            .map_or(0, |i| u8::try_from(i + 1).unwrap_or(0))
    }

    /// The fields in force for variant `variant` (see [`Rule::variant_for`]).
    pub fn effective(&self, variant: u8) -> Effective<'_> {
        let base = Effective {
            condition: &self.condition,
            guard: self.guard.as_ref(),
            hold_for: self.hold_for,
            clear_for: self.clear_for,
            severity: self.severity,
            action: &self.action,
            escalations: &self.escalations,
        };
        let Some(o) = variant
            .checked_sub(1)
            .and_then(|i| self.overrides.get(usize::from(i)))
        else {
            return base;
        };
        Effective {
            condition: o.condition.as_ref().unwrap_or(base.condition),
            guard: o.guard.as_ref().or(base.guard),
            hold_for: o.hold_for.unwrap_or(base.hold_for),
            clear_for: o.clear_for.unwrap_or(base.clear_for),
            severity: o.severity.unwrap_or(base.severity),
            action: o.action.as_ref().unwrap_or(base.action),
            escalations: o.escalations.as_deref().unwrap_or(base.escalations),
        }
    }
}

pub(crate) fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A validated set of rules with unique ids, in file order, with its fleet rules and the
/// windowed series its expressions use.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    fleet: Vec<FleetRule>,
    series: SeriesTable,
}

impl RuleSet {
    /// Parses and validates a rule file. `origin` names the text in error messages (usually
    /// the file path).
    pub fn parse(text: &str, origin: &str) -> Result<RuleSet, RuleError> {
        crate::parse::parse_rules(text, origin).map(|(rules, fleet, series)| RuleSet {
            rules,
            fleet,
            series,
        })
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

    /// The fleet rules in file order.
    pub fn fleet(&self) -> &[FleetRule] {
        &self.fleet
    }

    /// The windowed series the rules' expressions use.
    pub fn series(&self) -> &SeriesTable {
        &self.series
    }

    /// The longest hold of the fleet rules that explain `rule_id` (`hold`, else the correlation
    /// window): device transitions of that rule are held this long in event time before they
    /// are emitted.
    pub fn correlation_ms(&self, rule_id: &str) -> Option<i64> {
        self.fleet
            .iter()
            .filter(|f| f.explains.iter().any(|e| e == rule_id))
            .map(FleetRule::hold_ms)
            .max()
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

    #[test]
    fn default_pack_parses_with_the_documented_rules() {
        let set = RuleSet::default_pack().expect("default pack parses");
        let ids: Vec<&str> = set.rules().iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "device_fault",
                "protection_lockout",
                "gas_fault",
                "protection_trips",
                "heating_stopped",
                "heating_stopped_no_room_sensor",
                "standing_water_cold",
                "unit_unpowered",
                "no_circulation",
                "no_circulation_boiler",
                "readings_frozen",
                "indoor_cold",
                "capacity_shortfall",
                "capacity_limit",
                "freeze_risk",
                "offline_in_frost",
                "offline_in_frost_long",
                "boiler_pressure_low",
                "boiler_pressure_falling",
                "ignition_retries",
                "gas_pressure_low",
                "cop_degraded",
                "discharge_hot_vs_fleet",
                "short_cycling",
                "defrost_excessive",
                "sensor_implausible",
                "sensor_stuck",
                "offline"
            ]
        );
        let fleet: Vec<&str> = set.fleet().iter().map(|f| f.id.as_str()).collect();
        assert_eq!(
            fleet,
            [
                "village_power_outage",
                "village_gas_supply",
                "village_heat_pump_trips"
            ]
        );
        let trips = &set.fleet()[2];
        assert_eq!(trips.hold_ms(), 3_600_000);
        assert_eq!(trips.explains, ["protection_trips"]);
        let gas = &set.fleet()[1];
        assert_eq!(gas.within_ms(), 2 * 3_600_000);
        assert_eq!(gas.hold_ms(), 10 * 60_000);
        assert_eq!(set.fleet()[0].hold_ms(), set.fleet()[0].within_ms());
        assert_eq!(
            set.series().village_outdoor_source(),
            crate::expr::canonical_index(wire::values::OUTDOOR_TEMP_C)
        );

        let fault = set.get("device_fault").expect("present");
        assert_eq!(fault.hold_for, Duration::ZERO);
        assert_eq!(
            fault.action,
            Action::Order {
                category: "repair".into(),
                priority: Priority::High
            }
        );
        assert_eq!(fault.escalations.len(), 1);

        let cold = set.get("indoor_cold").expect("present");
        assert_eq!(cold.condition.kind_name(), "expr");
        assert_eq!(cold.hold_for, Duration::from_secs(30 * 60));
        assert_eq!(cold.escalations[0].severity, Severity::Critical);
        let vulnerable = DeviceInfo {
            vulnerable: true,
            ..DeviceInfo::default()
        };
        let variant = cold.variant_for(Some(&vulnerable));
        assert_eq!(variant, 3);
        assert_eq!(
            cold.effective(variant).hold_for,
            Duration::from_secs(15 * 60)
        );
        assert_eq!(cold.variant_for(Some(&DeviceInfo::default())), 0);
        // Site types by the gateway's tag `site:{type}`; a site's own override comes before
        // the vulnerable one (a vulnerable greenhouse keeps the plants' thresholds).
        let site = |tag: &str| DeviceInfo {
            tags: vec![tag.to_owned()],
            vulnerable: true,
            ..DeviceInfo::default()
        };
        assert_eq!(cold.variant_for(Some(&site("site:greenhouse"))), 1);
        assert_eq!(cold.variant_for(Some(&site("site:clinic"))), 2);
        assert_eq!(cold.variant_for(Some(&site("site:school"))), 2);
        assert_eq!(cold.variant_for(Some(&site("site:home"))), 3);
        assert_eq!(
            cold.effective(2).action,
            &Action::Order {
                category: "low_indoor_temperature".into(),
                priority: Priority::Urgent
            }
        );
        let stopped = set.get("heating_stopped").expect("present");
        assert_eq!(stopped.variant_for(Some(&site("site:greenhouse"))), 1);
        assert_eq!(stopped.variant_for(Some(&site("site:school"))), 2);
        assert_eq!(stopped.variant_for(Some(&site("site:activity_room"))), 3);
        assert_eq!(
            cold.applies_to,
            [DeviceKind::HeatPump, DeviceKind::GasBoiler]
        );

        let offline = set.get("offline").expect("present");
        assert!(offline.condition.is_absence());
        assert_eq!(offline.hold_for_ms(), 15 * 60 * 1000);
        assert_eq!(offline.action, Action::AlertOnly);
        assert_eq!(offline.severity, Severity::Major);
        assert_eq!(set.correlation_ms("indoor_cold"), Some(10 * 60 * 1000));
        assert_eq!(set.correlation_ms("device_fault"), None);
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
