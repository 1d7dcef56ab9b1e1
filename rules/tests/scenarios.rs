//! Data-driven rule engine scenarios: every `tests/scenarios/*.toml` file is a rule set, device
//! registrations, a list of steps (readings, generated series of readings, watermark advances,
//! restarts) and the alert transitions, escalations and incidents they must produce.
//!
//! Each scenario runs four ways, which must all give the expected output: as written; with its
//! `restart` steps skipped (an uninterrupted run); with a snapshot → JSON → restore after every
//! step; and with a hot reload of the same rules after every step. A mismatch prints a diff.
//!
//! Times in scenario files are humantime offsets (`"0s"`, `"30m"`, `"1h 5m"`) from
//! 2025-12-01T00:00:00Z, so files read like a timeline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rules::{
    Action, DeviceInfo, Engine, EngineConfig, EngineStats, Outcome, RuleSet, Snapshot, Transition,
    TransitionKind,
};
use serde::Deserialize;
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

/// 2025-12-01T00:00:00Z, the origin of scenario times.
const BASE_MS: i64 = 1_764_547_200_000;

/// One scenario file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// What the scenario shows, in one sentence.
    description: String,
    /// `"default"` for the default pack, or the text of a rule file.
    rules: String,
    /// Reorder window (engine lateness), e.g. `"2m"`.
    lateness: Option<String>,
    /// Device registrations (township, village, vulnerable, tags).
    #[serde(default)]
    device: Vec<DeviceStep>,
    #[serde(default)]
    step: Vec<Step>,
    #[serde(default)]
    expect: Vec<Expected>,
    #[serde(default)]
    expect_escalation: Vec<ExpectedEscalation>,
    #[serde(default)]
    expect_incident: Vec<ExpectedIncident>,
    /// Counters to check after the last step (only the ones given).
    expect_stats: Option<ExpectedStats>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceStep {
    id: String,
    township: Option<String>,
    village: Option<String>,
    #[serde(default)]
    vulnerable: bool,
    kind: Option<DeviceKind>,
    /// The household (edge box); fleet rules count households.
    household: Option<String>,
    /// Device tags for `[[rule.override]] tags`, e.g. the gateway's `site:greenhouse`.
    #[serde(default)]
    tags: Vec<String>,
}

/// One step: exactly one of the fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    reading: Option<ReadingStep>,
    /// Many readings of one device at a fixed interval.
    series: Option<SeriesStep>,
    /// Watermark, as an offset.
    advance: Option<String>,
    /// Snapshot, serialise to JSON, restore (simulates a gateway restart).
    restart: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingStep {
    device: String,
    ts: String,
    seq: u64,
    #[serde(default = "heat_pump")]
    kind: DeviceKind,
    #[serde(default)]
    values: wire::Values,
    fault: Option<FaultStep>,
}

/// Readings from `from` to `to` (inclusive) every `every`, sequence numbers from `seq`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesStep {
    device: String,
    from: String,
    to: String,
    every: String,
    seq: u64,
    #[serde(default = "heat_pump")]
    kind: DeviceKind,
    /// Constant values.
    #[serde(default)]
    values: wire::Values,
    /// Values that move linearly from the first number (at `from`) to the second (at `to`).
    #[serde(default)]
    ramp: BTreeMap<String, [f64; 2]>,
    /// 0/1 values: `[period, on]`, on for the first `on` of every `period` from `from`.
    #[serde(default)]
    square: BTreeMap<String, [String; 2]>,
    /// Values that cycle through the listed numbers, one per reading.
    #[serde(default)]
    cycle: BTreeMap<String, Vec<f64>>,
    /// After each reading, advance the watermark to the reading's time minus this lag.
    watermark_lag: Option<String>,
    /// A fault every reading of the series carries.
    fault: Option<FaultStep>,
}

fn heat_pump() -> DeviceKind {
    DeviceKind::HeatPump
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultStep {
    code: u32,
    category: FaultCategory,
    #[serde(default)]
    text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    rule: String,
    device: String,
    kind: TransitionKind,
    at: String,
    /// Checked when given.
    summary: Option<String>,
    /// Checked when given: `info`, `minor`, `major`, `critical`.
    severity: Option<String>,
    /// Checked when given: `alert` or the order category.
    action: Option<String>,
    /// Checked when given: the order's priority (`low`, `normal`, `high`, `urgent`).
    priority: Option<String>,
    /// Checked when given: whether an incident suppressed it.
    suppressed: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedEscalation {
    rule: String,
    device: String,
    at: String,
    to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedIncident {
    rule: String,
    group: String,
    kind: TransitionKind,
    at: String,
    /// Checked when given: the number of devices listed.
    devices: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedStats {
    readings_total: Option<u64>,
    duplicates_dropped_total: Option<u64>,
    late_dropped_total: Option<u64>,
    transitions_total: Option<u64>,
    reordered_total: Option<u64>,
    suppressed_total: Option<u64>,
}

/// How a scenario is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AsWritten,
    WithoutRestarts,
    RestartAfterEveryStep,
    ReloadAfterEveryStep,
}

const MODES: [Mode; 4] = [
    Mode::AsWritten,
    Mode::WithoutRestarts,
    Mode::RestartAfterEveryStep,
    Mode::ReloadAfterEveryStep,
];

fn offset_ms(text: &str) -> Result<i64, String> {
    Ok(BASE_MS + duration_ms(text)?)
}

fn duration_ms(text: &str) -> Result<i64, String> {
    let duration = humantime_serde::re::humantime::parse_duration(text)
        .map_err(|e| format!("bad time offset {text:?}: {e}"))?;
    i64::try_from(duration.as_millis()).map_err(|e| e.to_string())
}

fn show_time(at_ms: i64) -> String {
    let offset = at_ms - BASE_MS;
    let magnitude = humantime_serde::re::humantime::format_duration(Duration::from_millis(
        offset.unsigned_abs(),
    ));
    if offset < 0 {
        format!("-{magnitude}")
    } else {
        magnitude.to_string()
    }
}

fn kind_name(kind: TransitionKind) -> &'static str {
    match kind {
        TransitionKind::Firing => "firing",
        TransitionKind::Resolved => "resolved",
    }
}

fn line(at_ms: i64, kind: &str, rule: &str, subject: &str) -> String {
    format!("at {:<10} {kind:<9} {rule} {subject}", show_time(at_ms))
}

fn reading(step: &ReadingStep) -> Result<Telemetry, String> {
    Ok(Telemetry {
        v: wire::SCHEMA_VERSION,
        device_id: DeviceId::parse(&step.device).map_err(|e| e.to_string())?,
        ts_ms: offset_ms(&step.ts)?,
        seq: step.seq,
        profile: "scenario".into(),
        kind: step.kind,
        values: step.values.clone(),
        fault: step.fault.as_ref().map(|f| Fault {
            code: f.code,
            category: f.category,
            text: f.text.clone(),
        }),
        extra: BTreeMap::new(),
    })
}

/// The readings of a series step, each with the watermark to advance to after it.
fn series(step: &SeriesStep) -> Result<Vec<(Telemetry, Option<i64>)>, String> {
    let (from, to, every) = (
        offset_ms(&step.from)?,
        offset_ms(&step.to)?,
        duration_ms(&step.every)?,
    );
    if every <= 0 || to < from {
        return Err(format!("series of {} has an empty range", step.device));
    }
    let lag = step.watermark_lag.as_deref().map(duration_ms).transpose()?;
    let mut squares = BTreeMap::new();
    for (name, [period, on]) in &step.square {
        squares.insert(name.clone(), (duration_ms(period)?, duration_ms(on)?));
    }
    let device_id = DeviceId::parse(&step.device).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let (mut ts, mut seq, mut index) = (from, step.seq, 0usize);
    while ts <= to {
        let mut values = step.values.clone();
        let progress = if to > from {
            (ts - from) as f64 / (to - from) as f64
        } else {
            0.0
        };
        for (name, [start, end]) in &step.ramp {
            let value = start + (end - start) * progress;
            values.insert(name, (value * 1000.0).round() / 1000.0);
        }
        for (name, (period, on)) in &squares {
            let phase = (ts - from).rem_euclid((*period).max(1));
            values.insert(name, if phase < *on { 1.0 } else { 0.0 });
        }
        for (name, cycle) in &step.cycle {
            if let Some(value) = cycle.get(index % cycle.len().max(1)) {
                values.insert(name, *value);
            }
        }
        out.push((
            Telemetry {
                v: wire::SCHEMA_VERSION,
                device_id: device_id.clone(),
                ts_ms: ts,
                seq,
                profile: "scenario".into(),
                kind: step.kind,
                values,
                fault: step.fault.as_ref().map(|f| Fault {
                    code: f.code,
                    category: f.category,
                    text: f.text.clone(),
                }),
                extra: BTreeMap::new(),
            },
            lag.map(|lag| ts - lag),
        ));
        ts += every;
        seq += 1;
        index += 1;
    }
    Ok(out)
}

fn restart(engine: &Engine, rules: &RuleSet, config: EngineConfig) -> Result<Engine, String> {
    let json = serde_json::to_string(&engine.snapshot()).map_err(|e| e.to_string())?;
    let snapshot: Snapshot = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(Engine::restore_with_config(rules.clone(), config, snapshot))
}

/// Runs the steps and returns everything emitted and the final counters.
fn run(scenario: &Scenario, rules: &RuleSet, mode: Mode) -> Result<(Outcome, EngineStats), String> {
    let config = EngineConfig {
        lateness: match &scenario.lateness {
            Some(text) => Duration::from_millis(duration_ms(text)?.unsigned_abs()),
            None => Duration::ZERO,
        },
        ..EngineConfig::default()
    };
    let mut engine = Engine::with_config(rules.clone(), config);
    for device in &scenario.device {
        engine.register_device(
            DeviceId::parse(&device.id).map_err(|e| e.to_string())?,
            DeviceInfo {
                kind: device.kind,
                township: device.township.clone(),
                village: device.village.clone(),
                vulnerable: device.vulnerable,
                tags: device.tags.clone(),
                household: device.household.clone(),
            },
        );
    }
    let mut out = Outcome::default();
    let mut take = |outcome: Outcome| {
        out.transitions.extend(outcome.transitions);
        out.escalations.extend(outcome.escalations);
        out.incidents.extend(outcome.incidents);
    };
    for (index, step) in scenario.step.iter().enumerate() {
        let given = [
            step.reading.is_some(),
            step.series.is_some(),
            step.advance.is_some(),
            step.restart.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(format!(
                "step {} must have exactly one of reading, series, advance, restart",
                index + 1
            ));
        }
        if let Some(step) = &step.reading {
            take(engine.process(&reading(step)?));
        }
        if let Some(step) = &step.series {
            for (reading, watermark) in series(step)? {
                take(engine.process(&reading));
                if let Some(watermark) = watermark {
                    take(engine.advance_watermark(watermark));
                }
            }
        }
        if let Some(watermark) = &step.advance {
            take(engine.advance_watermark(offset_ms(watermark)?));
        }
        if step.restart == Some(true) && mode != Mode::WithoutRestarts {
            engine = restart(&engine, rules, config)?;
        }
        match mode {
            Mode::RestartAfterEveryStep => engine = restart(&engine, rules, config)?,
            Mode::ReloadAfterEveryStep => engine.replace_rules(rules.clone()),
            Mode::AsWritten | Mode::WithoutRestarts => {}
        }
    }
    Ok((out, engine.stats()))
}

/// A line diff (longest common subsequence): ` ` kept, `-` expected only, `+` actual only.
fn diff(expected: &[String], actual: &[String]) -> String {
    let (n, m) = (expected.len(), actual.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if expected[i] == actual[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut text) = (0, 0, String::new());
    while i < n || j < m {
        if i < n && j < m && expected[i] == actual[j] {
            let _ = writeln!(text, "    {}", expected[i]);
            i += 1;
            j += 1;
        } else if j < m && (i == n || lcs[i][j + 1] >= lcs[i + 1][j]) {
            let _ = writeln!(text, "  + {}", actual[j]);
            j += 1;
        } else {
            let _ = writeln!(text, "  - {}", expected[i]);
            i += 1;
        }
    }
    text
}

/// Every resolution must end the episode its device × rule fired last, never before it.
fn check_episodes(transitions: &[Transition]) -> Vec<String> {
    let mut open: BTreeMap<(String, String), (String, i64)> = BTreeMap::new();
    let mut problems = Vec::new();
    for t in transitions {
        let key = (t.rule_id.clone(), t.device_id.to_string());
        match t.kind {
            TransitionKind::Firing => {
                let expected_id = format!("{}:{}:{}", t.rule_id, t.device_id, t.at_ms);
                if t.episode_id != expected_id {
                    problems.push(format!(
                        "firing episode id {} is not {expected_id}",
                        t.episode_id
                    ));
                }
                if let Some((id, _)) = open.insert(key, (t.episode_id.clone(), t.at_ms)) {
                    problems.push(format!("{} fired again while {id} was open", t.episode_id));
                }
            }
            TransitionKind::Resolved => match open.remove(&key) {
                Some((id, fired_at)) if id == t.episode_id && t.at_ms >= fired_at => {}
                other => problems.push(format!(
                    "resolution {} at {} does not end the open episode {other:?}",
                    t.episode_id, t.at_ms
                )),
            },
        }
    }
    problems
}

fn label(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Checks the optional fields of expected transitions against the actual ones.
fn check_details(expected: &[Expected], actual: &[Transition], mode: Mode, report: &mut String) {
    for (want, got) in expected.iter().zip(actual) {
        if let Some(summary) = &want.summary {
            if *summary != got.summary {
                let _ = writeln!(
                    report,
                    "  {mode:?}: summary of {}\n    - {summary}\n    + {}",
                    got.episode_id, got.summary
                );
            }
        }
        if let Some(severity) = &want.severity {
            if *severity != label(&got.severity) {
                let _ = writeln!(
                    report,
                    "  {mode:?}: severity of {} is {}, expected {severity}",
                    got.episode_id,
                    label(&got.severity)
                );
            }
        }
        if let Some(action) = &want.action {
            let actual = match &got.action {
                Action::AlertOnly => "alert".to_owned(),
                Action::Order { category, .. } => category.clone(),
            };
            if *action != actual {
                let _ = writeln!(
                    report,
                    "  {mode:?}: action of {} is {actual}, expected {action}",
                    got.episode_id
                );
            }
        }
        if let Some(priority) = &want.priority {
            let actual = match &got.action {
                Action::AlertOnly => "none".to_owned(),
                Action::Order { priority, .. } => label(priority),
            };
            if *priority != actual {
                let _ = writeln!(
                    report,
                    "  {mode:?}: priority of {} is {actual}, expected {priority}",
                    got.episode_id
                );
            }
        }
        if let Some(suppressed) = want.suppressed {
            if suppressed != got.suppressed_by.is_some() {
                let _ = writeln!(
                    report,
                    "  {mode:?}: {} {:?} suppressed_by is {:?}",
                    got.episode_id, got.kind, got.suppressed_by
                );
            }
        }
    }
}

/// Checks one scenario in every mode; returns a report of what went wrong, if anything.
fn check(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let scenario: Scenario = toml::from_str(&text).map_err(|e| e.to_string())?;
    let rules = if scenario.rules.trim() == "default" {
        RuleSet::default_pack()
    } else {
        RuleSet::parse(&scenario.rules, &format!("{} (rules)", path.display()))
    }
    .map_err(|e| e.to_string())?;

    let mut expected = Vec::new();
    for e in &scenario.expect {
        expected.push(line(
            offset_ms(&e.at)?,
            kind_name(e.kind),
            &e.rule,
            &e.device,
        ));
    }
    let mut expected_escalations = Vec::new();
    for e in &scenario.expect_escalation {
        expected_escalations.push(line(
            offset_ms(&e.at)?,
            "escalated",
            &e.rule,
            &format!("{} to {}", e.device, e.to),
        ));
    }
    let mut expected_incidents = Vec::new();
    for e in &scenario.expect_incident {
        expected_incidents.push(line(
            offset_ms(&e.at)?,
            kind_name(e.kind),
            &e.rule,
            &e.group,
        ));
    }
    let mut report = String::new();
    for mode in MODES {
        let (out, stats) = run(&scenario, &rules, mode)?;
        let actual: Vec<String> = out
            .transitions
            .iter()
            .map(|t| line(t.at_ms, kind_name(t.kind), &t.rule_id, t.device_id.as_str()))
            .collect();
        let actual_escalations: Vec<String> = out
            .escalations
            .iter()
            .map(|e| {
                line(
                    e.at_ms,
                    "escalated",
                    &e.rule_id,
                    &format!("{} to {}", e.device_id, label(&e.severity)),
                )
            })
            .collect();
        let actual_incidents: Vec<String> = out
            .incidents
            .iter()
            .map(|i| {
                line(
                    i.at_ms,
                    kind_name(i.kind),
                    &i.fleet_rule_id,
                    &i.group.to_string(),
                )
            })
            .collect();
        let mut same = true;
        for (what, want, got) in [
            ("transitions", &expected, &actual),
            ("escalations", &expected_escalations, &actual_escalations),
            ("incidents", &expected_incidents, &actual_incidents),
        ] {
            if want != got {
                same = false;
                let _ = writeln!(
                    report,
                    "  {mode:?}: {what} differ (- expected, + actual):\n{}",
                    diff(want, got)
                );
            }
        }
        if !same {
            continue;
        }
        check_details(&scenario.expect, &out.transitions, mode, &mut report);
        for (want, got) in scenario.expect_incident.iter().zip(&out.incidents) {
            if let Some(devices) = want.devices {
                if devices != got.devices.len() {
                    let _ = writeln!(
                        report,
                        "  {mode:?}: incident {} lists {} devices, expected {devices}",
                        got.incident_id,
                        got.devices.len()
                    );
                }
            }
        }
        for problem in check_episodes(&out.transitions) {
            let _ = writeln!(report, "  {mode:?}: {problem}");
        }
        if let Some(want) = &scenario.expect_stats {
            let pairs = [
                ("readings_total", want.readings_total, stats.readings_total),
                (
                    "duplicates_dropped_total",
                    want.duplicates_dropped_total,
                    stats.duplicates_dropped_total,
                ),
                (
                    "late_dropped_total",
                    want.late_dropped_total,
                    stats.late_dropped_total,
                ),
                (
                    "transitions_total",
                    want.transitions_total,
                    stats.transitions_total,
                ),
                (
                    "reordered_total",
                    want.reordered_total,
                    stats.reordered_total,
                ),
                (
                    "suppressed_total",
                    want.suppressed_total,
                    stats.suppressed_total,
                ),
            ];
            for (name, want, got) in pairs {
                if let Some(want) = want {
                    if want != got {
                        let _ = writeln!(report, "  {mode:?}: {name} is {got}, expected {want}");
                    }
                }
            }
        }
    }
    if report.is_empty() {
        Ok(())
    } else {
        Err(format!("{}\n{report}", scenario.description))
    }
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_scenario_produces_its_expected_output_in_every_mode() {
    let files = scenario_files();
    assert!(
        files.len() >= 30,
        "expected the scenario files, found {files:?}"
    );
    let mut failures = String::new();
    for path in &files {
        if let Err(report) = check(path) {
            let _ = writeln!(failures, "\n=== {}: {report}", path.display());
        }
    }
    assert!(failures.is_empty(), "scenarios failed:{failures}");
}

#[test]
fn every_default_rule_has_a_scenario_that_fires_it() {
    let rules = RuleSet::default_pack().expect("default pack parses");
    let mut fired = std::collections::BTreeSet::new();
    for path in scenario_files() {
        let text = std::fs::read_to_string(&path).expect("readable");
        let scenario: Scenario = toml::from_str(&text).expect("a scenario");
        if scenario.rules.trim() != "default" {
            continue;
        }
        for e in &scenario.expect {
            if e.kind == TransitionKind::Firing {
                fired.insert(e.rule.clone());
            }
        }
        for e in &scenario.expect_incident {
            fired.insert(e.rule.clone());
        }
    }
    let missing: Vec<&str> = rules
        .rules()
        .iter()
        .map(|r| r.id.as_str())
        .chain(rules.fleet().iter().map(|f| f.id.as_str()))
        .filter(|id| !fired.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "default rules without a firing scenario: {missing:?}"
    );
}

#[test]
fn the_diff_marks_missing_and_extra_lines() {
    let expected = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
    let actual = ["a".to_owned(), "c".to_owned(), "d".to_owned()];
    assert_eq!(diff(&expected, &actual), "    a\n  - b\n    c\n  + d\n");
}
