//! Unit tests of the engine: episodes, escalations, absence, reordering, snapshots.

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
            .map(|v| wire::Values::from([("indoor_temp_c", v)]))
            .unwrap_or_default(),
        fault: None,
        extra: BTreeMap::new(),
    }
}

/// The first default pack: simple fault, threshold and absence rules.
const LEGACY: &str = include_str!("../legacy_test_rules.toml");

fn legacy() -> RuleSet {
    RuleSet::parse(LEGACY, "legacy.toml").expect("legacy pack parses")
}

fn engine() -> Engine {
    Engine::new(legacy())
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
    // Back to the first pack: the fault rule starts idle, the cold alert stays firing.
    engine.replace_rules(legacy());
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
    let boilers_only = LEGACY.replace(
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
    let restored = Engine::restore(legacy(), back);
    assert_eq!(restored.snapshot(), snapshot);
    assert_eq!(restored.stats(), engine.stats());
    assert_eq!(restored.device_count(), 2);
}

#[test]
fn a_format_1_snapshot_still_restores() {
    let json = format!(
        r#"{{"format":1,"watermark_ms":{w},"stats":{{"readings_total":3,"duplicates_dropped_total":0,"late_dropped_total":0,"transitions_total":1}},"devices":[{{"device_id":"d-1","kind":"heat_pump","last_seq":3,"last_ts_ms":{t},"alerts":{{"indoor_cold":{{"state":"firing","fired_at_ms":{t}}}}}}}]}}"#,
        w = T0 + 20 * MINUTE,
        t = T0 + 10 * MINUTE
    );
    let snapshot: Snapshot = serde_json::from_str(&json).expect("format 1 parses");
    let mut engine = Engine::restore(legacy(), snapshot);
    assert!(matches!(
        engine.alert_state(&device("d-1"), "indoor_cold"),
        AlertState::Firing { level: 0, .. }
    ));
    assert_eq!(engine.stats().readings_total, 3);
    // Duplicates are still recognised, and the alert resolves on a warm reading.
    assert!(engine.ingest(&reading("d-1", 11, 3, Some(17.0))).is_empty());
    let out = engine.ingest(&reading("d-1", 12, 4, Some(17.0)));
    assert_eq!(kinds(&out), [("indoor_cold", TransitionKind::Resolved, 12)]);
}

#[test]
fn registration_selects_overrides_before_or_after_the_first_reading() {
    let rules = RuleSet::parse(
        r#"
[[rule]]
id = "cold"
kind = "expr"
when = "indoor_temp_c < 14"
for = "30m"
severity = "major"
action = "alert"

[[rule.override]]
vulnerable = true
for = "10m"
"#,
        "o.toml",
    )
    .expect("parses");
    let mut engine = Engine::new(rules);
    let vulnerable = DeviceInfo {
        vulnerable: true,
        ..DeviceInfo::default()
    };
    engine.register_device(device("early"), vulnerable.clone());
    let mut out = Vec::new();
    for (minute, seq) in [(0, 1), (10, 2)] {
        for id in ["early", "late", "never"] {
            out.extend(engine.ingest(&reading(id, minute, seq, Some(12.0))));
        }
        if minute == 0 {
            // Registered after its first reading: the override applies from now on and the
            // pending timer started at minute 0 is kept.
            engine.register_device(device("late"), vulnerable.clone());
        }
    }
    let fired: Vec<(String, i64)> = out
        .iter()
        .map(|t| (t.device_id.to_string(), (t.at_ms - T0) / MINUTE))
        .collect();
    assert_eq!(fired, [("early".to_owned(), 10), ("late".to_owned(), 10)]);
    assert_eq!(engine.device_info(&device("late")), Some(&vulnerable));
    assert_eq!(engine.device_info(&device("never")), None);
}

#[test]
fn hot_reload_keeps_windowed_state_of_series_that_stay() {
    let text = r#"
[[rule]]
id = "starts"
kind = "expr"
when = "starts(running, 1h) >= 3"
severity = "minor"
action = "alert"
"#;
    let rules = RuleSet::parse(text, "s.toml").expect("parses");
    let mut engine = Engine::new(rules.clone());
    let run = |engine: &mut Engine, minute: i64, seq: u64, on: bool| {
        let mut r = reading("d-1", minute, seq, None);
        r.values.insert("running", f64::from(u8::from(on)));
        engine.ingest(&r)
    };
    let mut seq = 0;
    for minute in 0..5 {
        seq += 1;
        run(&mut engine, minute * 2, seq, minute % 2 == 1);
    }
    // Two starts so far; a reload (with another rule added) keeps them.
    let more = format!("{text}\n[[rule]]\nid = \"other\"\nkind = \"fault\"\nseverity = \"minor\"\naction = \"alert\"\n");
    engine.replace_rules(RuleSet::parse(&more, "m.toml").expect("parses"));
    seq += 1;
    assert!(run(&mut engine, 10, seq, false).is_empty());
    seq += 1;
    let out = run(&mut engine, 12, seq, true);
    assert_eq!(kinds(&out), [("starts", TransitionKind::Firing, 12)]);
}

/// Rules reading one series for heat pumps, one for gas boilers and one for both.
const PER_KIND: &str = r#"
[[rule]]
id = "hp_flow"
kind = "expr"
applies_to = ["heat_pump"]
when = "avg(flow_temp_c, 1h) > 60"
severity = "minor"
action = "alert"

[[rule]]
id = "gb_dhw"
kind = "expr"
applies_to = ["gas_boiler"]
when = "max(dhw_temp_c, 2h) > 70"
severity = "minor"
action = "alert"

[[rule]]
id = "starts"
kind = "expr"
when = "starts(running, 1h) >= 3"
severity = "minor"
action = "alert"
"#;

/// An engine with a heat pump and a gas boiler fed 90 minutes of readings.
fn per_kind_engine() -> Engine {
    let mut engine = Engine::new(RuleSet::parse(PER_KIND, "k.toml").expect("parses"));
    for minute in 0..90 {
        for (id, kind) in [
            ("hp-1", DeviceKind::HeatPump),
            ("gb-1", DeviceKind::GasBoiler),
        ] {
            let mut r = reading(id, minute, minute as u64 + 1, Some(20.0));
            r.kind = kind;
            r.values.insert("flow_temp_c", 40.0 + minute as f64);
            r.values.insert("dhw_temp_c", 50.0 + minute as f64 / 2.0);
            r.values
                .insert("running", f64::from(u8::from(minute % 7 < 3)));
            engine.ingest(&r);
        }
    }
    engine
}

#[test]
fn a_device_holds_only_the_series_of_its_kind() {
    let engine = per_kind_engine();
    let table = engine.rules.series();
    assert_eq!(table.len(), 3);
    let snapshot = engine.snapshot();
    for device in &snapshot.devices {
        let series = device.series.as_ref().expect("series kept");
        assert_eq!(series.kind, Some(device.kind));
        assert_eq!(series.heads.len(), 2, "{}", device.device_id);
        assert_eq!(series.cells.len(), 2 * crate::window::BUCKETS);
    }
    assert_eq!(snapshot.series_held[&DeviceKind::HeatPump], [0, 2]);
    assert_eq!(snapshot.series_held[&DeviceKind::GasBoiler], [1, 2]);
    let json = serde_json::to_string(&snapshot).expect("serialises");
    let back: Snapshot = serde_json::from_str(&json).expect("parses");
    assert_eq!(
        Engine::restore(engine.rules.clone(), back).snapshot(),
        snapshot
    );
}

#[test]
fn a_snapshot_holding_every_series_per_device_still_restores() {
    let engine = per_kind_engine();
    let table = engine.rules.series();
    let snapshot = engine.snapshot();
    // What the code before per-kind layouts wrote: every series for every device (those of
    // the other kind never updated), no kind on the state, no per-kind lists.
    let mut old = snapshot.clone();
    old.series_held.clear();
    for device in &mut old.devices {
        let held = device.series.take().expect("series kept");
        let mut full = table.new_state();
        full.cells
            .fill(crate::window::Cell::from((9, 1.0, 2.0, 3.0)));
        for index in 0..table.len() {
            let from = table.slot_of(Some(device.kind), index);
            let to = table.slot_of(None, index);
            if let (Some((hp, hc, w)), Some((fp, fc, _))) = (from, to) {
                full.heads[fp] = held.heads[hp];
                full.cells[fc..fc + w].copy_from_slice(&held.cells[hc..hc + w]);
            }
        }
        device.series = Some(full);
    }
    let json = serde_json::to_string(&old).expect("serialises");
    assert!(!json.contains("series_held") && !json.contains("heat_pump\"}"));
    let back: Snapshot = serde_json::from_str(&json).expect("parses");
    let restored = Engine::restore(engine.rules.clone(), back);
    assert_eq!(restored.snapshot(), snapshot);
}
