//! Data-driven rule engine scenarios: every `tests/scenarios/*.toml` file is a rule set, a list
//! of steps (readings, watermark advances, restarts) and the transitions they must produce.
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

use rules::{Engine, EngineStats, RuleSet, Snapshot, Transition, TransitionKind};
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
    #[serde(default)]
    step: Vec<Step>,
    #[serde(default)]
    expect: Vec<Expected>,
    /// Counters to check after the last step (only the ones given).
    expect_stats: Option<ExpectedStats>,
}

/// One step: exactly one of the fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    reading: Option<ReadingStep>,
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
    values: BTreeMap<String, f64>,
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
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedStats {
    readings_total: Option<u64>,
    duplicates_dropped_total: Option<u64>,
    late_dropped_total: Option<u64>,
    transitions_total: Option<u64>,
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
    let duration = humantime_serde::re::humantime::parse_duration(text)
        .map_err(|e| format!("bad time offset {text:?}: {e}"))?;
    let ms = i64::try_from(duration.as_millis()).map_err(|e| e.to_string())?;
    Ok(BASE_MS + ms)
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

fn line(at_ms: i64, kind: TransitionKind, rule: &str, device: &str) -> String {
    format!(
        "at {:<8} {:<8} {rule} {device}",
        show_time(at_ms),
        kind_name(kind)
    )
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

fn restart(engine: &Engine, rules: &RuleSet) -> Result<Engine, String> {
    let json = serde_json::to_string(&engine.snapshot()).map_err(|e| e.to_string())?;
    let snapshot: Snapshot = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(Engine::restore(rules.clone(), snapshot))
}

/// Runs the steps and returns every transition and the final counters.
fn run(
    scenario: &Scenario,
    rules: &RuleSet,
    mode: Mode,
) -> Result<(Vec<Transition>, EngineStats), String> {
    let mut engine = Engine::new(rules.clone());
    let mut out = Vec::new();
    for (index, step) in scenario.step.iter().enumerate() {
        let given = [
            step.reading.is_some(),
            step.advance.is_some(),
            step.restart.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(format!(
                "step {} must have exactly one of reading, advance, restart",
                index + 1
            ));
        }
        if let Some(step) = &step.reading {
            out.extend(engine.ingest(&reading(step)?));
        }
        if let Some(watermark) = &step.advance {
            out.extend(engine.advance(offset_ms(watermark)?));
        }
        if step.restart == Some(true) && mode != Mode::WithoutRestarts {
            engine = restart(&engine, rules)?;
        }
        match mode {
            Mode::RestartAfterEveryStep => engine = restart(&engine, rules)?,
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
        expected.push(line(offset_ms(&e.at)?, e.kind, &e.rule, &e.device));
    }
    let mut report = String::new();
    for mode in MODES {
        let (transitions, stats) = run(&scenario, &rules, mode)?;
        let actual: Vec<String> = transitions
            .iter()
            .map(|t| line(t.at_ms, t.kind, &t.rule_id, t.device_id.as_str()))
            .collect();
        if actual != expected {
            let _ = writeln!(
                report,
                "  {mode:?}: transitions differ (- expected, + actual):\n{}",
                diff(&expected, &actual)
            );
            continue;
        }
        for (want, got) in scenario.expect.iter().zip(&transitions) {
            if let Some(summary) = &want.summary {
                if *summary != got.summary {
                    let _ = writeln!(
                        report,
                        "  {mode:?}: summary of {}\n    - {summary}\n    + {}",
                        got.episode_id, got.summary
                    );
                }
            }
        }
        for problem in check_episodes(&transitions) {
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
fn every_scenario_produces_its_expected_transitions_in_every_mode() {
    let files = scenario_files();
    assert!(
        files.len() >= 10,
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
fn the_diff_marks_missing_and_extra_lines() {
    let expected = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
    let actual = ["a".to_owned(), "c".to_owned(), "d".to_owned()];
    assert_eq!(diff(&expected, &actual), "    a\n  - b\n    c\n  + d\n");
}
