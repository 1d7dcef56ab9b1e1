//! Property tests of the engine: it never panics, its episodes are well formed, and its output
//! does not depend on how readings and watermarks are batched or on restarts in between.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use rules::{Engine, RuleSet, Snapshot, Transition, TransitionKind};
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

/// 2025-12-01T00:00:00Z.
const T0: i64 = 1_764_547_200_000;
const MINUTE: i64 = 60_000;

/// The default pack plus rules that exercise every option, including extreme durations.
fn pack_a() -> RuleSet {
    let extra = r#"
[[rule]]
id = "flow_hot"
kind = "threshold"
value = "flow_temp_c"
above = 85
clear_below = 75
for = "1m"
clear_for = "2m"
severity = "critical"
action = { order = { category = "overheat", priority = "urgent" } }

[[rule]]
id = "low_pressure"
kind = "threshold"
value = "water_pressure_bar"
below = 0.8
applies_to = ["gas_boiler"]
severity = "minor"
action = "alert"

[[rule]]
id = "flow_fault_slow"
kind = "fault"
categories = ["water_flow", "low_pressure"]
for = "3m"
clear_for = "1000000years"
severity = "info"
action = "alert"

[[rule]]
id = "boiler_silent"
kind = "absence"
applies_to = ["gas_boiler"]
for = "1ms"
severity = "minor"
action = "alert"

[[rule]]
id = "forever"
kind = "absence"
for = "1000000years"
severity = "info"
action = "alert"
"#;
    let text = format!("{}\n{extra}", rules::DEFAULT_RULES);
    RuleSet::parse(&text, "pack_a.toml").expect("pack a parses")
}

/// A different pack sharing some ids with pack A, with changed definitions.
fn pack_b() -> RuleSet {
    let text = r#"
[[rule]]
id = "indoor_cold"
kind = "threshold"
value = "indoor_temp_c"
below = 12
clear_above = 18
for = "5m"
severity = "major"
action = "alert"

[[rule]]
id = "offline"
kind = "absence"
for = "5m"
severity = "major"
action = "alert"

[[rule]]
id = "flow_hot"
kind = "fault"
severity = "minor"
action = "alert"
"#;
    RuleSet::parse(text, "pack_b.toml").expect("pack b parses")
}

#[derive(Debug, Clone)]
enum Op {
    Ingest(Telemetry),
    Advance(i64),
    Restart,
    Reload(bool),
}

fn device_ids() -> impl Strategy<Value = DeviceId> {
    prop::sample::select(vec!["a", "b", "c"]).prop_map(|id| DeviceId::parse(id).expect("valid"))
}

fn kinds() -> impl Strategy<Value = DeviceKind> {
    prop::sample::select(vec![DeviceKind::HeatPump, DeviceKind::GasBoiler])
}

fn faults() -> impl Strategy<Value = Option<Fault>> {
    prop::option::of(
        (
            any::<u32>(),
            prop::sample::select(FaultCategory::ALL.to_vec()),
            ".{0,8}",
        )
            .prop_map(|(code, category, text)| Fault {
                code,
                category,
                text,
            }),
    )
}

fn values() -> impl Strategy<Value = wire::Values> {
    let names = prop::sample::select(vec![
        "indoor_temp_c",
        "outdoor_temp_c",
        "running",
        "flow_temp_c",
        "water_pressure_bar",
        "not_canonical",
    ]);
    let numbers = prop_oneof![
        -30.0..120.0f64,
        prop::num::f64::ANY,
        Just(14.0),
        Just(16.0),
        Just(f64::NAN),
    ];
    prop::collection::vec((names, numbers), 0..4)
        .prop_map(|pairs| pairs.into_iter().collect::<wire::Values>())
}

fn timestamps() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => T0..T0 + 300 * MINUTE,
        1 => any::<i64>(),
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
    ]
}

fn readings() -> impl Strategy<Value = Telemetry> {
    (
        device_ids(),
        timestamps(),
        prop_oneof![4 => 0..40u64, 1 => any::<u64>()],
        kinds(),
        values(),
        faults(),
    )
        .prop_map(|(device_id, ts_ms, seq, kind, values, fault)| Telemetry {
            v: wire::SCHEMA_VERSION,
            device_id,
            ts_ms,
            seq,
            profile: "prop".into(),
            kind,
            values,
            fault,
            extra: BTreeMap::new(),
        })
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        8 => readings().prop_map(Op::Ingest),
        3 => timestamps().prop_map(Op::Advance),
        1 => Just(Op::Restart),
        1 => any::<bool>().prop_map(Op::Reload),
    ];
    prop::collection::vec(op, 0..80)
}

fn restart(engine: &Engine) -> Engine {
    let json = serde_json::to_string(&engine.snapshot()).expect("snapshot serialises");
    let snapshot: Snapshot = serde_json::from_str(&json).expect("snapshot parses");
    Engine::restore(engine.rules().clone(), snapshot)
}

/// Checks episodes: per device × rule, firing and resolution alternate, share the episode id,
/// and a resolution is never before its firing. `open` carries over between calls.
fn check_episodes(
    open: &mut BTreeMap<(String, String), (String, i64)>,
    transitions: &[Transition],
) -> Result<(), TestCaseError> {
    for t in transitions {
        let key = (t.rule_id.clone(), t.device_id.to_string());
        match t.kind {
            TransitionKind::Firing => {
                prop_assert_eq!(
                    &t.episode_id,
                    &format!("{}:{}:{}", t.rule_id, t.device_id, t.at_ms)
                );
                let previous = open.insert(key, (t.episode_id.clone(), t.at_ms));
                prop_assert!(previous.is_none(), "fired twice: {:?}", t);
            }
            TransitionKind::Resolved => {
                let fired = open.remove(&key);
                prop_assert!(fired.is_some(), "resolved without firing: {:?}", t);
                if let Some((episode, fired_at)) = fired {
                    prop_assert_eq!(&episode, &t.episode_id);
                    prop_assert!(t.at_ms >= fired_at, "resolved before firing: {:?}", t);
                }
            }
        }
    }
    Ok(())
}

/// Sorts transitions into one canonical order, to compare runs whose calls were split
/// differently.
fn canonical(mut transitions: Vec<Transition>) -> Vec<Transition> {
    transitions.sort_by(|a, b| {
        (a.at_ms, &a.device_id, &a.rule_id, a.kind, &a.episode_id).cmp(&(
            b.at_ms,
            &b.device_id,
            &b.rule_id,
            b.kind,
            &b.episode_id,
        ))
    });
    transitions
}

/// Readings in event-time order (with redeliveries mixed in) and, before each reading, an
/// optional watermark no later than that reading.
#[derive(Debug, Clone)]
struct Timeline {
    /// (watermark before the reading, the reading)
    events: Vec<(Option<i64>, Telemetry)>,
    final_watermark: i64,
}

fn timelines() -> impl Strategy<Value = Timeline> {
    let event = (
        0usize..3,
        0..20 * MINUTE,
        prop::option::of(5.0..25.0f64),
        prop::option::of(prop::sample::select(FaultCategory::ALL.to_vec())),
        prop::option::of(0.0..1.0f64),
        0u8..10,
    );
    (prop::collection::vec(event, 0..60), 0..60 * MINUTE).prop_map(|(events, tail)| {
        let mut now = T0;
        let mut seqs = [0u64; 3];
        let mut sent: Vec<Telemetry> = Vec::new();
        let mut out = Vec::new();
        for (device, gap, indoor, fault, watermark_at, redeliver) in events {
            let watermark = watermark_at.map(|f| now + ((gap as f64) * f) as i64);
            now += gap;
            // Roughly one event in ten is a redelivery of an earlier reading.
            if redeliver == 0 {
                if let Some(old) = sent.get(device * 7 % sent.len().max(1)).cloned() {
                    out.push((watermark, old));
                    continue;
                }
            }
            let Some(seq) = seqs.get_mut(device) else {
                continue;
            };
            *seq += 1;
            let kind = if device == 2 {
                DeviceKind::GasBoiler
            } else {
                DeviceKind::HeatPump
            };
            let reading = Telemetry {
                v: wire::SCHEMA_VERSION,
                device_id: DeviceId::parse(&format!("dev-{device}")).expect("valid"),
                ts_ms: now,
                seq: *seq,
                profile: "prop".into(),
                kind,
                values: indoor
                    .map(|v| wire::Values::from([("indoor_temp_c", v)]))
                    .unwrap_or_default(),
                fault: fault.map(|category| Fault {
                    code: 1,
                    category,
                    text: String::new(),
                }),
                extra: BTreeMap::new(),
            };
            sent.push(reading.clone());
            out.push((watermark, reading));
        }
        Timeline {
            events: out,
            final_watermark: now + tail,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_engine_never_panics_and_keeps_episodes_well_formed(ops in ops()) {
        let a = pack_a();
        let b = pack_b();
        let mut engine = Engine::new(a.clone());
        let mut open = BTreeMap::new();
        let mut total = 0u64;
        for op in ops {
            let out = match op {
                Op::Ingest(reading) => engine.ingest(&reading),
                Op::Advance(watermark) => engine.advance(watermark),
                Op::Restart => {
                    engine = restart(&engine);
                    Vec::new()
                }
                Op::Reload(to_a) => {
                    let rules = if to_a { a.clone() } else { b.clone() };
                    let kept: BTreeSet<String> =
                        rules.rules().iter().map(|r| r.id.clone()).collect();
                    open.retain(|(rule, _), _| kept.contains(rule));
                    engine.replace_rules(rules);
                    Vec::new()
                }
            };
            for pair in out.windows(2) {
                let (x, y) = (&pair[0], &pair[1]);
                prop_assert!(
                    (x.at_ms, &x.device_id, &x.rule_id, x.kind)
                        <= (y.at_ms, &y.device_id, &y.rule_id, y.kind),
                    "one call's output is not sorted: {:?}", out
                );
            }
            total += out.len() as u64;
            check_episodes(&mut open, &out)?;
        }
        prop_assert_eq!(engine.stats().transitions_total, total);
    }

    #[test]
    fn batching_of_readings_and_watermarks_does_not_change_the_output(timeline in timelines()) {
        let rules = RuleSet::default_pack().expect("default pack parses");

        // Live: each watermark is advanced just before the reading it precedes.
        let mut live = Engine::new(rules.clone());
        let mut live_out = Vec::new();
        for (watermark, reading) in &timeline.events {
            if let Some(watermark) = watermark {
                live_out.extend(live.advance(*watermark));
            }
            live_out.extend(live.ingest(reading));
        }
        live_out.extend(live.advance(timeline.final_watermark));

        // Batch: every reading first, then the same watermarks in the same order.
        let mut batch = Engine::new(rules);
        let mut batch_out = Vec::new();
        for (_, reading) in &timeline.events {
            batch_out.extend(batch.ingest(reading));
        }
        for (watermark, _) in &timeline.events {
            if let Some(watermark) = watermark {
                batch_out.extend(batch.advance(*watermark));
            }
        }
        batch_out.extend(batch.advance(timeline.final_watermark));

        prop_assert_eq!(canonical(live_out), canonical(batch_out));
        prop_assert_eq!(live.snapshot(), batch.snapshot());
    }

    #[test]
    fn a_restart_anywhere_gives_the_same_output_as_an_uninterrupted_run(
        ops in ops(),
        cut in any::<prop::sample::Index>(),
    ) {
        let rules = pack_a();
        let apply = |engine: &mut Engine, op: &Op| match op {
            Op::Ingest(reading) => engine.ingest(reading),
            Op::Advance(watermark) => engine.advance(*watermark),
            Op::Restart | Op::Reload(_) => Vec::new(),
        };
        let mut straight = Engine::new(rules.clone());
        let straight_out: Vec<Transition> =
            ops.iter().flat_map(|op| apply(&mut straight, op)).collect();

        let cut = cut.index(ops.len() + 1);
        let mut first = Engine::new(rules);
        let mut interrupted_out: Vec<Transition> =
            ops.iter().take(cut).flat_map(|op| apply(&mut first, op)).collect();
        let mut second = restart(&first);
        interrupted_out.extend(ops.iter().skip(cut).flat_map(|op| apply(&mut second, op)));

        prop_assert_eq!(straight_out, interrupted_out);
        prop_assert_eq!(straight.snapshot(), second.snapshot());
    }
}

/// Tokens that expressions are made of, plus noise.
fn expression_texts() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        prop::sample::select(vec![
            "indoor_temp_c",
            "flow_temp_c",
            "water_pressure_bar",
            "running",
            "defrost_active",
            "setpoint_c",
            "fault",
            "vulnerable",
            "room_temp",
            "true",
            "false",
        ])
        .prop_map(str::to_owned),
        prop::sample::select(vec![
            "min(",
            "max(",
            "avg(",
            "count(",
            "rate(",
            "slope_per_day(",
            "hours_to(",
            "starts(",
            "increase(",
            "share(",
            "trips(",
            "cop(",
            "cop_ratio(",
            "fault_in(",
            "present(",
            "abs(",
            "nope(",
        ])
        .prop_map(str::to_owned),
        prop::sample::select(vec![
            "<",
            "<=",
            ">",
            ">=",
            "==",
            "!=",
            "+",
            "-",
            "*",
            "/",
            "and",
            "or",
            "not",
            "(",
            ")",
            ",",
            " ",
            "\"water_flow\"",
            "\"x\"",
            "1h",
            "30m",
            "0s",
            "3d",
            "1h30m",
            "5mi",
            "1e400",
            "-0",
            "\"",
        ])
        .prop_map(str::to_owned),
        (-1.0e6..1.0e6f64).prop_map(|n| n.to_string()),
        ".{0,3}",
    ];
    prop::collection::vec(token, 0..24).prop_map(|tokens| tokens.join(" "))
}

/// A well-formed expression over derived values, so evaluation (not only parsing) is covered.
fn valid_expressions() -> impl Strategy<Value = String> {
    let value = prop::sample::select(vec![
        "indoor_temp_c",
        "flow_temp_c",
        "water_pressure_bar",
        "running",
        "outdoor_temp_c",
    ]);
    let window = prop::sample::select(vec!["1ms", "10s", "5m", "1h", "3d", "31d"]);
    let term = (value, window, 0usize..12, -100.0..100.0f64).prop_map(|(v, w, f, n)| match f {
        0 => format!("min({v}, {w}) < {n}"),
        1 => format!("max({v}, {w}) >= {n}"),
        2 => format!("avg({v}, {w}) / {n} > 1"),
        3 => format!("rate({v}, {w}) < {n}"),
        4 => format!("hours_to({v}, {n}, {w}) < 72"),
        5 => format!("starts({v}, {w}) - increase({v}, {w}) >= {n}"),
        6 => format!("share({v}, {w}) > 0.25 * share(running, {w})"),
        7 => format!("trips({w}) + trips({w}, \"water_flow\") >= {n}"),
        8 => format!("cop({w}) < {n} or cop_ratio({w}) < 0.75"),
        9 => format!("slope_per_day({v}, {w}) < -{n}"),
        10 => format!("count({v}, {w}) == 0 and present({v})"),
        _ => format!("not fault_in(\"overheat\") and abs({v}) != {n}"),
    });
    prop::collection::vec(term, 1..4).prop_map(|terms| terms.join(" and "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn expressions_never_panic_on_any_text_or_reading(
        text in prop_oneof![expression_texts(), valid_expressions()],
        readings in prop::collection::vec((timestamps(), values(), faults()), 0..30),
    ) {
        let mut table = rules::window::SeriesTable::default();
        let Ok(expr) = rules::Expr::compile(&text, &mut table) else {
            return Ok(());
        };
        let mut state = table.new_state();
        let mut dense = vec![f64::NAN; wire::values::CANONICAL.len()];
        for (ts, values, fault) in readings {
            dense.iter_mut().for_each(|v| *v = f64::NAN);
            for (name, value) in &values {
                if let Some(index) = rules::expr::canonical_index(name) {
                    dense[usize::from(index)] = value;
                }
            }
            let fault = fault.map(|f| (f.code, f.category));
            table.update(&mut state, ts, &dense, fault);
            let context = rules::expr::Context {
                values: &dense,
                fault: fault.map(|(_, c)| c),
                vulnerable: ts % 2 == 0,
                series: &table,
                state: &state,
                village_outdoor: f64::NAN,
            };
            let _ = expr.eval(&context);
            let _ = expr.describe(&context);
        }
    }

    #[test]
    fn rule_files_never_panic_and_errors_have_a_position(
        edits in prop::collection::vec((any::<prop::sample::Index>(), ".{0,4}"), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut text = rules::DEFAULT_RULES.to_owned();
        for (at, insert) in edits {
            let mut position = at.index(text.len() + 1);
            while !text.is_char_boundary(position) {
                position -= 1;
            }
            text.insert_str(position, &insert);
        }
        let mut end = cut.index(text.len() + 1);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if let Err(error) = RuleSet::parse(&text[..end], "edited.toml") {
            let message = error.to_string();
            prop_assert!(message.starts_with("edited.toml:"), "{}", message);
            prop_assert!(error.location().line >= 1 && error.location().column >= 1);
        }
    }
}

/// Six registered devices in one village (enough for the village fleet rules), readings with
/// the values the default pack reads.
fn village_timelines() -> impl Strategy<Value = Timeline> {
    let event = (
        0usize..6,
        0..12 * MINUTE,
        prop::option::of(5.0..25.0f64),
        prop::option::of(prop::sample::select(vec![
            FaultCategory::WaterFlow,
            FaultCategory::IgnitionFailure,
            FaultCategory::GasSupply,
        ])),
        prop::option::of(0.0..1.0f64),
        0u8..12,
    );
    (prop::collection::vec(event, 0..120), 0..90 * MINUTE).prop_map(|(events, tail)| {
        let mut now = T0;
        let mut seqs = [0u64; 6];
        let mut out = Vec::new();
        for (device, gap, indoor, fault, watermark_at, flags) in events {
            let watermark = watermark_at.map(|f| now + ((gap as f64) * f) as i64);
            now += gap / 4;
            let Some(seq) = seqs.get_mut(device) else {
                continue;
            };
            *seq += 1;
            let kind = if device >= 3 {
                DeviceKind::GasBoiler
            } else {
                DeviceKind::HeatPump
            };
            let mut values = wire::Values::from([
                ("setpoint_c", if flags == 0 { 5.0 } else { 20.0 }),
                ("outdoor_temp_c", -5.0),
                ("running", f64::from(flags % 2)),
            ]);
            if let Some(indoor) = indoor {
                values.insert("indoor_temp_c", indoor);
            }
            out.push((
                watermark.map(|w| w.min(now)),
                Telemetry {
                    v: wire::SCHEMA_VERSION,
                    device_id: DeviceId::parse(&format!("v-{device}")).expect("valid"),
                    ts_ms: now,
                    seq: *seq,
                    profile: "prop".into(),
                    kind,
                    values,
                    fault: fault.filter(|_| flags < 8).map(|category| Fault {
                        code: 1,
                        category,
                        text: String::new(),
                    }),
                    extra: BTreeMap::new(),
                },
            ));
        }
        Timeline {
            events: out,
            final_watermark: now + tail,
        }
    })
}

fn village_engine(lateness_ms: u64) -> Engine {
    let config = rules::EngineConfig {
        lateness: std::time::Duration::from_millis(lateness_ms),
        ..rules::EngineConfig::default()
    };
    let mut engine = Engine::with_config(RuleSet::default_pack().expect("parses"), config);
    for device in 0..6 {
        engine.register_device(
            DeviceId::parse(&format!("v-{device}")).expect("valid"),
            rules::DeviceInfo {
                kind: Some(if device >= 3 {
                    DeviceKind::GasBoiler
                } else {
                    DeviceKind::HeatPump
                }),
                township: Some("yanqing".into()),
                village: Some("dongguan".into()),
                vulnerable: device == 0,
                tags: Vec::new(),
                household: None,
            },
        );
    }
    engine
}

/// Everything an engine emitted, in one canonical order, as JSON lines.
fn canonical_outcome(outcome: &rules::Outcome) -> Vec<String> {
    let mut lines: Vec<String> = outcome
        .transitions
        .iter()
        .map(|t| serde_json::to_string(t).unwrap_or_default())
        .chain(
            outcome
                .escalations
                .iter()
                .map(|e| serde_json::to_string(e).unwrap_or_default()),
        )
        .chain(
            outcome
                .incidents
                .iter()
                .map(|i| serde_json::to_string(i).unwrap_or_default()),
        )
        .collect();
    lines.sort();
    lines
}

fn take(into: &mut rules::Outcome, more: rules::Outcome) {
    into.transitions.extend(more.transitions);
    into.escalations.extend(more.escalations);
    into.incidents.extend(more.incidents);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn fleet_correlation_and_reordering_do_not_depend_on_batching_or_restarts(
        timeline in village_timelines(),
        lateness in prop::sample::select(vec![0u64, 60_000, 180_000]),
        cut in any::<prop::sample::Index>(),
    ) {
        // Live: each watermark is advanced just before the reading it precedes, with a restart
        // (snapshot, JSON, restore) at a random point.
        let cut = cut.index(timeline.events.len() + 1);
        let mut live = village_engine(lateness);
        let mut live_out = rules::Outcome::default();
        for (index, (watermark, reading)) in timeline.events.iter().enumerate() {
            if index == cut {
                let json = serde_json::to_string(&live.snapshot()).expect("serialises");
                let snapshot: Snapshot = serde_json::from_str(&json).expect("parses");
                live = Engine::restore_with_config(live.rules().clone(), live.config(), snapshot);
            }
            if let Some(watermark) = watermark {
                take(&mut live_out, live.advance_watermark(*watermark));
            }
            take(&mut live_out, live.process(reading));
        }
        take(&mut live_out, live.advance_watermark(timeline.final_watermark));

        // Batch: every reading first, then the same watermarks.
        let mut batch = village_engine(lateness);
        let mut batch_out = rules::Outcome::default();
        for (_, reading) in &timeline.events {
            take(&mut batch_out, batch.process(reading));
        }
        for (watermark, _) in &timeline.events {
            if let Some(watermark) = watermark {
                take(&mut batch_out, batch.advance_watermark(*watermark));
            }
        }
        take(&mut batch_out, batch.advance_watermark(timeline.final_watermark));

        let (live_lines, batch_lines) = (canonical_outcome(&live_out), canonical_outcome(&batch_out));
        let only_live: Vec<&String> = live_lines.iter().filter(|l| !batch_lines.contains(l)).collect();
        let only_batch: Vec<&String> = batch_lines.iter().filter(|l| !live_lines.contains(l)).collect();
        prop_assert!(
            live_lines == batch_lines,
            "live only: {:#?}\nbatch only: {:#?}",
            only_live,
            only_batch
        );
        let mut open = BTreeMap::new();
        let mut ordered = live_out.transitions.clone();
        ordered.sort_by(|a, b| rules::engine::transition_key(a).cmp(&rules::engine::transition_key(b)));
        check_episodes(&mut open, &ordered)?;
    }
}
