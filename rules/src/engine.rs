//! The event-time engine: per device × rule state machines driven by readings and a watermark.
//!
//! State per device is its last sequence number and timestamp and one small [`AlertState`] per
//! rule, indexed by the rule's position (no string keys per pair). Everything is ordered
//! (`BTreeMap`), so the same input always gives the same output.
//!
//! Ordering: a reading whose `seq` is not above the device's last accepted `seq` is a duplicate;
//! a reading older than the device's last accepted reading is late. Both are dropped and
//! counted. Reordering of late readings is not done yet.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::{DeviceId, DeviceKind, Telemetry};

use crate::condition::{absence_firing_summary, absence_resolved_summary, Evaluation};
use crate::rule::{Action, Rule, RuleSet, Severity};
use crate::snapshot::{AlertState, DeviceSnapshot, Snapshot, SNAPSHOT_FORMAT};

/// Whether an alert became active or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// The rule's condition held for its `for`: the alert is active.
    Firing,
    /// The clear condition held for `clear_for` (or a reading arrived, for absence rules).
    Resolved,
}

/// One alert transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Stable id of the episode, shared by its firing and its resolution:
    /// `{rule_id}:{device_id}:{fired_at_ms}`.
    pub episode_id: String,
    /// The rule.
    pub rule_id: String,
    /// The device.
    pub device_id: DeviceId,
    /// Firing or resolved.
    pub kind: TransitionKind,
    /// Event time of the transition, Unix milliseconds.
    pub at_ms: i64,
    /// The rule's severity.
    pub severity: Severity,
    /// The rule's action.
    pub action: Action,
    /// A sentence for operators, e.g. `indoor_temp_c 11.2 below 14 for 30m`.
    pub summary: String,
}

/// Counters since the engine (or the snapshot it was restored from) started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Readings passed to [`Engine::ingest`], dropped ones included.
    pub readings_total: u64,
    /// Readings dropped because their `seq` was already seen.
    pub duplicates_dropped_total: u64,
    /// Readings dropped because they were older than the device's last accepted reading.
    pub late_dropped_total: u64,
    /// Transitions returned.
    pub transitions_total: u64,
}

/// What the engine keeps per device.
#[derive(Debug, Clone)]
struct DeviceState {
    kind: DeviceKind,
    last_seq: u64,
    last_ts_ms: i64,
    /// One per rule, in rule set order.
    alerts: Vec<AlertState>,
}

/// The rule engine. Pure: no IO, no clock; time is the readings' event time and the watermark.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: RuleSet,
    devices: BTreeMap<DeviceId, DeviceState>,
    watermark_ms: Option<i64>,
    stats: EngineStats,
}

impl Engine {
    /// An engine with no devices and no watermark.
    pub fn new(rules: RuleSet) -> Self {
        Self {
            rules,
            devices: BTreeMap::new(),
            watermark_ms: None,
            stats: EngineStats::default(),
        }
    }

    /// Feeds one validated reading. Returns the transitions it caused, sorted by
    /// (`at_ms`, device, rule, kind).
    ///
    /// Duplicates (`seq` not above the device's last) and late readings (`ts_ms` below the
    /// device's last) are dropped and counted. A reading that arrives after a gap at least as
    /// long as an absence rule's `for` reports that gap itself (firing at `last + for`,
    /// resolved at the reading), so the output does not depend on how often the watermark
    /// was advanced in between.
    pub fn ingest(&mut self, reading: &Telemetry) -> Vec<Transition> {
        self.stats.readings_total = self.stats.readings_total.saturating_add(1);
        let previous_ts_ms = match self.devices.get_mut(&reading.device_id) {
            Some(device) => {
                if reading.seq <= device.last_seq {
                    self.stats.duplicates_dropped_total =
                        self.stats.duplicates_dropped_total.saturating_add(1);
                    return Vec::new();
                }
                if reading.ts_ms < device.last_ts_ms {
                    self.stats.late_dropped_total = self.stats.late_dropped_total.saturating_add(1);
                    return Vec::new();
                }
                Some(device.last_ts_ms)
            }
            None => {
                let fresh = DeviceState {
                    kind: reading.kind,
                    last_seq: reading.seq,
                    last_ts_ms: reading.ts_ms,
                    alerts: vec![AlertState::Idle; self.rules.len()],
                };
                self.devices.insert(reading.device_id.clone(), fresh);
                None
            }
        };
        let Some(device) = self.devices.get_mut(&reading.device_id) else {
            return Vec::new();
        };
        device.last_seq = reading.seq;
        device.last_ts_ms = reading.ts_ms;
        device.kind = reading.kind;

        let mut out = Vec::new();
        for (rule, state) in self.rules.rules().iter().zip(device.alerts.iter_mut()) {
            let mut emit = |kind, at_ms, fired_at_ms, summary| {
                out.push(transition(
                    rule,
                    &reading.device_id,
                    kind,
                    at_ms,
                    fired_at_ms,
                    summary,
                ));
            };
            if !rule.applies_to(reading.kind) {
                // Only reachable after a rule reload or a device changing kind.
                if let AlertState::Firing { fired_at_ms, .. } = *state {
                    let summary = format!("rule no longer applies to {}", reading.kind.as_str());
                    emit(
                        TransitionKind::Resolved,
                        reading.ts_ms.max(fired_at_ms),
                        fired_at_ms,
                        summary,
                    );
                }
                *state = AlertState::Idle;
                continue;
            }
            if rule.condition.is_absence() {
                step_absence(rule, state, reading, previous_ts_ms, &mut emit);
            } else {
                step_condition(rule, state, reading, &mut emit);
            }
        }
        self.finish(out)
    }

    /// Moves event-time "now" forward to `watermark_ms` and fires absence rules whose deadline
    /// (last reading + `for`) is at or before it. A watermark not above the current one is
    /// ignored. Only devices seen at least once are tracked.
    pub fn advance(&mut self, watermark_ms: i64) -> Vec<Transition> {
        if self
            .watermark_ms
            .is_some_and(|current| watermark_ms <= current)
        {
            return Vec::new();
        }
        self.watermark_ms = Some(watermark_ms);
        let mut out = Vec::new();
        let absence: Vec<(usize, &Rule)> = self
            .rules
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.condition.is_absence())
            .collect();
        if absence.is_empty() {
            return out;
        }
        for (device_id, device) in &mut self.devices {
            for (index, rule) in &absence {
                if !rule.applies_to(device.kind) {
                    continue;
                }
                let Some(state) = device.alerts.get_mut(*index) else {
                    continue;
                };
                if matches!(state, AlertState::Firing { .. }) {
                    continue;
                }
                let deadline_ms = device.last_ts_ms.saturating_add(rule.hold_for_ms());
                if watermark_ms >= deadline_ms {
                    *state = AlertState::Firing {
                        fired_at_ms: deadline_ms,
                        clear_since_ms: None,
                    };
                    out.push(transition(
                        rule,
                        device_id,
                        TransitionKind::Firing,
                        deadline_ms,
                        deadline_ms,
                        absence_firing_summary(rule.hold_for),
                    ));
                }
            }
        }
        self.finish(out)
    }

    /// The event-time watermark, if one was ever given.
    pub fn watermark_ms(&self) -> Option<i64> {
        self.watermark_ms
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The number of devices seen.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// The state of one rule for one device (idle when unknown).
    pub fn alert_state(&self, device_id: &DeviceId, rule_id: &str) -> AlertState {
        self.rules
            .index_of(rule_id)
            .and_then(|index| self.devices.get(device_id)?.alerts.get(index).copied())
            .unwrap_or_default()
    }

    /// The whole state as plain data.
    pub fn snapshot(&self) -> Snapshot {
        let devices = self
            .devices
            .iter()
            .map(|(device_id, device)| DeviceSnapshot {
                device_id: device_id.clone(),
                kind: device.kind,
                last_seq: device.last_seq,
                last_ts_ms: device.last_ts_ms,
                alerts: self
                    .rules
                    .rules()
                    .iter()
                    .zip(&device.alerts)
                    .filter(|(_, state)| **state != AlertState::Idle)
                    .map(|(rule, state)| (rule.id.clone(), *state))
                    .collect(),
            })
            .collect();
        Snapshot {
            format: SNAPSHOT_FORMAT,
            watermark_ms: self.watermark_ms,
            stats: self.stats,
            devices,
        }
    }

    /// An engine with `rules` and the state in `snapshot`. State of rules no longer in `rules`
    /// is dropped; rules not in the snapshot start idle. When the snapshot lists a device twice,
    /// the last entry wins.
    pub fn restore(rules: RuleSet, snapshot: Snapshot) -> Self {
        let index_of: BTreeMap<&str, usize> = rules
            .rules()
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.id.as_str(), index))
            .collect();
        let mut devices = BTreeMap::new();
        for device in snapshot.devices {
            let mut alerts = vec![AlertState::Idle; rules.len()];
            for (rule_id, state) in device.alerts {
                if let Some(slot) = index_of
                    .get(rule_id.as_str())
                    .and_then(|index| alerts.get_mut(*index))
                {
                    *slot = state;
                }
            }
            devices.insert(
                device.device_id,
                DeviceState {
                    kind: device.kind,
                    last_seq: device.last_seq,
                    last_ts_ms: device.last_ts_ms,
                    alerts,
                },
            );
        }
        Self {
            rules,
            devices,
            watermark_ms: snapshot.watermark_ms,
            stats: snapshot.stats,
        }
    }

    /// Hot reload: switches to `rules`, keeping the state of every rule whose id stays.
    pub fn replace_rules(&mut self, rules: RuleSet) {
        let snapshot = self.snapshot();
        *self = Engine::restore(rules, snapshot);
    }

    /// The counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Sorts one call's output and counts it.
    fn finish(&mut self, mut out: Vec<Transition>) -> Vec<Transition> {
        out.sort_by(|a, b| {
            (a.at_ms, &a.device_id, &a.rule_id, a.kind).cmp(&(
                b.at_ms,
                &b.device_id,
                &b.rule_id,
                b.kind,
            ))
        });
        let count = u64::try_from(out.len()).unwrap_or(u64::MAX);
        self.stats.transitions_total = self.stats.transitions_total.saturating_add(count);
        out
    }
}

/// Steps a fault or threshold rule with one reading.
fn step_condition(
    rule: &Rule,
    state: &mut AlertState,
    reading: &Telemetry,
    emit: &mut impl FnMut(TransitionKind, i64, i64, String),
) {
    let now = reading.ts_ms;
    let evaluation = rule.condition.evaluate(reading);
    let held = |since: i64, needed: i64| now.saturating_sub(since) >= needed;
    match (*state, evaluation) {
        (_, Evaluation::Unknown) => {}
        (AlertState::Idle, Evaluation::Triggered) => {
            if held(now, rule.hold_for_ms()) {
                fire(rule, state, reading, emit);
            } else {
                *state = AlertState::Pending { since_ms: now };
            }
        }
        (AlertState::Idle, _) => {}
        (AlertState::Pending { since_ms }, Evaluation::Triggered) => {
            if held(since_ms, rule.hold_for_ms()) {
                fire(rule, state, reading, emit);
            }
        }
        (AlertState::Pending { .. }, _) => *state = AlertState::Idle,
        (
            AlertState::Firing {
                fired_at_ms,
                clear_since_ms,
            },
            Evaluation::Cleared,
        ) => {
            let since = clear_since_ms.unwrap_or(now);
            if held(since, rule.clear_for_ms()) {
                *state = AlertState::Idle;
                let summary = rule.condition.resolved_summary(reading, rule.clear_for);
                // `max`: after a reload that changed the rule's kind, the firing may have come
                // from a watermark ahead of this reading; an episode never ends before it began.
                emit(
                    TransitionKind::Resolved,
                    now.max(fired_at_ms),
                    fired_at_ms,
                    summary,
                );
            } else {
                *state = AlertState::Firing {
                    fired_at_ms,
                    clear_since_ms: Some(since),
                };
            }
        }
        (AlertState::Firing { fired_at_ms, .. }, _) => {
            // Triggered or between the thresholds: stays active, the clear run is broken.
            *state = AlertState::Firing {
                fired_at_ms,
                clear_since_ms: None,
            };
        }
    }
}

/// Fires `rule` at the reading's time.
fn fire(
    rule: &Rule,
    state: &mut AlertState,
    reading: &Telemetry,
    emit: &mut impl FnMut(TransitionKind, i64, i64, String),
) {
    let now = reading.ts_ms;
    *state = AlertState::Firing {
        fired_at_ms: now,
        clear_since_ms: None,
    };
    let summary = rule.condition.firing_summary(reading, rule.hold_for);
    emit(TransitionKind::Firing, now, now, summary);
}

/// Steps an absence rule with one accepted reading from its device.
fn step_absence(
    rule: &Rule,
    state: &mut AlertState,
    reading: &Telemetry,
    previous_ts_ms: Option<i64>,
    emit: &mut impl FnMut(TransitionKind, i64, i64, String),
) {
    let now = reading.ts_ms;
    let silence = previous_ts_ms.map(|previous| now.saturating_sub(previous));
    let back_summary =
        |silence: Option<i64>| absence_resolved_summary(silence.map(duration_from_ms));
    match *state {
        AlertState::Firing { fired_at_ms, .. } => {
            // A reading older than the firing (it was judged from a watermark ahead of the
            // data) still ends the episode, never before it began.
            emit(
                TransitionKind::Resolved,
                now.max(fired_at_ms),
                fired_at_ms,
                back_summary(silence),
            );
        }
        AlertState::Idle | AlertState::Pending { .. } => {
            if let (Some(previous), Some(gap)) = (previous_ts_ms, silence) {
                if gap >= rule.hold_for_ms() {
                    // The watermark never crossed the deadline while the device was silent:
                    // report the gap now, in event time.
                    let fired_at_ms = previous.saturating_add(rule.hold_for_ms());
                    emit(
                        TransitionKind::Firing,
                        fired_at_ms,
                        fired_at_ms,
                        absence_firing_summary(rule.hold_for),
                    );
                    emit(
                        TransitionKind::Resolved,
                        now,
                        fired_at_ms,
                        back_summary(silence),
                    );
                }
            }
        }
    }
    *state = AlertState::Idle;
}

/// A non-negative millisecond count as a duration (negative counts as zero).
fn duration_from_ms(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Builds a transition of `rule` for `device_id`.
fn transition(
    rule: &Rule,
    device_id: &DeviceId,
    kind: TransitionKind,
    at_ms: i64,
    fired_at_ms: i64,
    summary: String,
) -> Transition {
    Transition {
        episode_id: format!("{}:{}:{}", rule.id, device_id, fired_at_ms),
        rule_id: rule.id.clone(),
        device_id: device_id.clone(),
        kind,
        at_ms,
        severity: rule.severity,
        action: rule.action.clone(),
        summary,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use wire::{Fault, FaultCategory};

    use super::*;

    const T0: i64 = 1_764_547_200_000;
    const MINUTE: i64 = 60_000;

    fn device(id: &str) -> DeviceId {
        DeviceId::parse(id).expect("valid id")
    }

    fn reading(id: &str, minute: i64, seq: u64, indoor: Option<f64>) -> Telemetry {
        Telemetry {
            v: wire::SCHEMA_VERSION,
            device_id: device(id),
            ts_ms: T0 + minute * MINUTE,
            seq,
            profile: "test".into(),
            kind: DeviceKind::HeatPump,
            values: indoor
                .map(|v| BTreeMap::from([("indoor_temp_c".to_owned(), v)]))
                .unwrap_or_default(),
            fault: None,
            extra: BTreeMap::new(),
        }
    }

    fn engine() -> Engine {
        Engine::new(RuleSet::default_pack().expect("default pack parses"))
    }

    fn kinds(out: &[Transition]) -> Vec<(&str, TransitionKind, i64)> {
        out.iter()
            .map(|t| (t.rule_id.as_str(), t.kind, (t.at_ms - T0) / MINUTE))
            .collect()
    }

    fn kinds_at(out: &[Transition]) -> Vec<(&str, TransitionKind, i64)> {
        out.iter()
            .map(|t| (t.rule_id.as_str(), t.kind, t.at_ms))
            .collect()
    }

    #[test]
    fn pending_returns_to_idle_silently_and_missing_values_change_nothing() {
        let mut engine = engine();
        let id = device("d-1");
        assert!(engine.ingest(&reading("d-1", 0, 1, Some(13.0))).is_empty());
        assert_eq!(
            engine.alert_state(&id, "indoor_cold"),
            AlertState::Pending { since_ms: T0 }
        );
        assert!(engine.ingest(&reading("d-1", 5, 2, None)).is_empty());
        assert_eq!(
            engine.alert_state(&id, "indoor_cold"),
            AlertState::Pending { since_ms: T0 }
        );
        assert!(engine.ingest(&reading("d-1", 10, 3, Some(15.0))).is_empty());
        assert_eq!(engine.alert_state(&id, "indoor_cold"), AlertState::Idle);
    }

    #[test]
    fn firing_and_resolution_share_the_episode_id() {
        let mut engine = engine();
        let mut out = Vec::new();
        for (minute, seq, value) in [(0, 1, 12.0), (10, 2, 12.0), (20, 3, 12.0), (30, 4, 11.0)] {
            out.extend(engine.ingest(&reading("d-1", minute, seq, Some(value))));
        }
        out.extend(engine.ingest(&reading("d-1", 40, 5, Some(17.0))));
        assert_eq!(
            kinds(&out),
            [
                ("indoor_cold", TransitionKind::Firing, 30),
                ("indoor_cold", TransitionKind::Resolved, 40)
            ]
        );
        let episode = format!("indoor_cold:d-1:{}", T0 + 30 * MINUTE);
        assert!(out.iter().all(|t| t.episode_id == episode));
        assert_eq!(out[0].severity, Severity::Major);
        assert_eq!(engine.stats().transitions_total, 2);
    }

    #[test]
    fn advance_never_moves_backwards() {
        let mut engine = engine();
        engine.ingest(&reading("d-1", 0, 1, Some(20.0)));
        assert!(engine.advance(T0 + 10 * MINUTE).is_empty());
        assert!(engine.advance(T0 + 5 * MINUTE).is_empty());
        assert_eq!(engine.watermark_ms(), Some(T0 + 10 * MINUTE));
        let out = engine.advance(T0 + 15 * MINUTE);
        assert_eq!(kinds(&out), [("offline", TransitionKind::Firing, 15)]);
        // Already firing: a later watermark does not fire again.
        assert!(engine.advance(T0 + 60 * MINUTE).is_empty());
    }

    #[test]
    fn output_of_one_call_is_sorted_by_time_device_and_rule() {
        let mut engine = engine();
        for (id, minute) in [("c", 3), ("a", 3), ("b", 1)] {
            engine.ingest(&reading(id, minute, 1, Some(20.0)));
        }
        let out = engine.advance(T0 + 30 * MINUTE);
        let order: Vec<(String, i64)> = out
            .iter()
            .map(|t| (t.device_id.to_string(), (t.at_ms - T0) / MINUTE))
            .collect();
        assert_eq!(
            order,
            [("b".into(), 16), ("a".into(), 18), ("c".into(), 18)]
        );
    }

    #[test]
    fn hot_reload_keeps_state_of_kept_rules_and_drops_the_rest() {
        let mut engine = engine();
        let mut fault = reading("d-1", 0, 1, Some(12.0));
        fault.fault = Some(Fault {
            code: 3,
            category: FaultCategory::WaterFlow,
            text: String::new(),
        });
        assert_eq!(
            kinds(&engine.ingest(&fault)),
            [("device_fault", TransitionKind::Firing, 0)]
        );
        let only_cold = RuleSet::parse(
            r#"
[[rule]]
id = "indoor_cold"
kind = "threshold"
value = "indoor_temp_c"
below = 14
for = "30m"
severity = "major"
action = "alert"
"#,
            "reload.toml",
        )
        .expect("parses");
        engine.replace_rules(only_cold);
        let id = device("d-1");
        assert_eq!(
            engine.alert_state(&id, "indoor_cold"),
            AlertState::Pending { since_ms: T0 }
        );
        assert_eq!(engine.alert_state(&id, "device_fault"), AlertState::Idle);
        let out = engine.ingest(&reading("d-1", 30, 2, Some(12.0)));
        assert_eq!(kinds(&out), [("indoor_cold", TransitionKind::Firing, 30)]);
        // Back to the default pack: the fault rule starts idle, the cold alert stays firing.
        engine.replace_rules(RuleSet::default_pack().expect("parses"));
        assert!(matches!(
            engine.alert_state(&id, "indoor_cold"),
            AlertState::Firing { .. }
        ));
        assert_eq!(engine.alert_state(&id, "device_fault"), AlertState::Idle);
    }

    #[test]
    fn a_rule_that_stops_applying_resolves_its_alert() {
        let mut engine = engine();
        let mut out = Vec::new();
        for (minute, seq) in [(0, 1), (10, 2), (20, 3), (30, 4)] {
            out.extend(engine.ingest(&reading("d-1", minute, seq, Some(10.0))));
        }
        assert_eq!(kinds(&out), [("indoor_cold", TransitionKind::Firing, 30)]);
        let boilers_only = crate::DEFAULT_RULES.replace(
            "value = \"indoor_temp_c\"",
            "value = \"indoor_temp_c\"\napplies_to = [\"gas_boiler\"]",
        );
        engine.replace_rules(RuleSet::parse(&boilers_only, "edited.toml").expect("parses"));
        let out = engine.ingest(&reading("d-1", 40, 5, Some(10.0)));
        assert_eq!(kinds(&out), [("indoor_cold", TransitionKind::Resolved, 40)]);
        assert_eq!(out[0].summary, "rule no longer applies to heat_pump");
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let mut engine = engine();
        let mut early = reading("d-1", 0, 1, Some(10.0));
        early.ts_ms = i64::MIN;
        engine.ingest(&early);
        let mut late = reading("d-1", 0, 2, Some(10.0));
        late.ts_ms = i64::MAX;
        let out = engine.ingest(&late);
        assert!(out.iter().any(|t| t.rule_id == "indoor_cold"));
        // The deadline saturates at i64::MAX instead of wrapping into the past.
        let out = engine.advance(i64::MAX);
        assert_eq!(
            kinds_at(&out),
            [("offline", TransitionKind::Firing, i64::MAX)]
        );
        assert!(engine.advance(i64::MIN).is_empty());
    }

    #[test]
    fn snapshot_round_trips_through_json() {
        let mut engine = engine();
        engine.ingest(&reading("d-1", 0, 1, Some(12.0)));
        engine.ingest(&reading("d-2", 0, 7, Some(20.0)));
        engine.advance(T0 + 20 * MINUTE);
        let snapshot = engine.snapshot();
        let json = serde_json::to_string(&snapshot).expect("serialises");
        let back: Snapshot = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, snapshot);
        let restored = Engine::restore(RuleSet::default_pack().expect("parses"), back);
        assert_eq!(restored.snapshot(), snapshot);
        assert_eq!(restored.stats(), engine.stats());
        assert_eq!(restored.device_count(), 2);
    }
}
