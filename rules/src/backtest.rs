//! Backtest: replays recorded telemetry (JSON lines of `wire::Telemetry`) through a rule set and
//! tells what alerts, escalations, incidents and orders it would have created. Pure: the
//! `rules backtest` binary reads the files and prints; this module parses lines, drives the
//! engine in event time and counts.
//!
//! The watermark follows the data: the newest timestamp seen minus the lateness, advanced
//! whenever it has moved by at least a second, so offline rules fire from silence as they do
//! live. At the end the watermark goes to the newest timestamp, so alerts that were due by the
//! end of the recording are reported (nothing later is invented).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::{DeviceId, Telemetry};

use crate::engine::{DeviceInfo, Engine, EngineConfig, Outcome, TransitionKind};
use crate::rule::{Action, RuleSet};

/// The watermark advances in steps of at least this much event time.
const STEP_MS: i64 = 1_000;

/// A line that could not be replayed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or not a telemetry message.
    #[error("not a telemetry message: {0}")]
    Malformed(String),
    /// A schema version this build does not read.
    #[error("schema version {0} is not supported")]
    Version(u32),
}

/// A device registration file entry: the simulator's manifest works as it is (extra fields are
/// ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceEntry {
    pub device_id: DeviceId,
    #[serde(flatten)]
    pub info: DeviceInfo,
}

/// Per-rule counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuleCounts {
    pub firing: u64,
    pub resolved: u64,
    pub escalations: u64,
    /// Firings that would have opened a work order.
    pub orders: u64,
    /// Firings whose order an incident suppressed.
    pub suppressed: u64,
}

/// What a replay produced, in counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Lines read (blank lines included).
    pub lines_total: u64,
    /// Lines replayed.
    pub readings_total: u64,
    /// Lines skipped as bad.
    pub bad_lines_total: u64,
    /// Blank lines.
    pub blank_lines_total: u64,
    /// By rule id (fleet rules count their incidents as firings and resolutions).
    pub rules: BTreeMap<String, RuleCounts>,
    /// Work orders the replay would have opened (device orders and incident orders).
    pub orders_total: u64,
    pub first_ts_ms: Option<i64>,
    pub last_ts_ms: Option<i64>,
}

/// A replay in progress.
pub struct Backtest {
    engine: Engine,
    lateness_ms: i64,
    newest_ms: Option<i64>,
    advanced_to: Option<i64>,
    report: Report,
}

impl Backtest {
    /// A replay of `rules`, with readings up to `lateness` out of order put back in order.
    pub fn new(rules: RuleSet, lateness: Duration) -> Self {
        let config = EngineConfig {
            lateness,
            ..EngineConfig::default()
        };
        Self {
            engine: Engine::with_config(rules, config),
            lateness_ms: i64::try_from(lateness.as_millis()).unwrap_or(i64::MAX),
            newest_ms: None,
            advanced_to: None,
            report: Report::default(),
        }
    }

    /// Registers devices (township, village, vulnerable) for fleet rules and overrides.
    pub fn register(&mut self, devices: impl IntoIterator<Item = DeviceEntry>) {
        for entry in devices {
            self.engine.register_device(entry.device_id, entry.info);
        }
    }

    /// Parses a devices file: a JSON array of [`DeviceEntry`].
    pub fn parse_devices(text: &str) -> Result<Vec<DeviceEntry>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Replays one line. A bad line is counted and returned as an error; the replay goes on.
    pub fn feed_line(&mut self, line: &str) -> Result<Outcome, LineError> {
        self.report.lines_total += 1;
        if line.trim().is_empty() {
            self.report.blank_lines_total += 1;
            return Ok(Outcome::default());
        }
        let reading = match serde_json::from_str::<Telemetry>(line) {
            Ok(reading) if reading.v == wire::SCHEMA_VERSION => reading,
            Ok(reading) => {
                self.report.bad_lines_total += 1;
                return Err(LineError::Version(reading.v));
            }
            Err(error) => {
                self.report.bad_lines_total += 1;
                return Err(LineError::Malformed(error.to_string()));
            }
        };
        Ok(self.feed(&reading))
    }

    /// Replays one reading.
    pub fn feed(&mut self, reading: &Telemetry) -> Outcome {
        self.report.readings_total += 1;
        let ts = reading.ts_ms;
        self.report.first_ts_ms = Some(self.report.first_ts_ms.map_or(ts, |f| f.min(ts)));
        self.report.last_ts_ms = Some(self.report.last_ts_ms.map_or(ts, |l| l.max(ts)));
        self.newest_ms = Some(self.newest_ms.map_or(ts, |n| n.max(ts)));
        let mut out = self.engine.process(reading);
        if let Some(newest) = self.newest_ms {
            let watermark = newest.saturating_sub(self.lateness_ms);
            if self
                .advanced_to
                .is_none_or(|at| watermark >= at.saturating_add(STEP_MS))
            {
                self.advanced_to = Some(watermark);
                merge(&mut out, self.engine.advance_watermark(watermark));
            }
        }
        self.count(&out);
        out
    }

    /// Ends the replay: the watermark moves to the newest timestamp.
    pub fn finish(&mut self) -> Outcome {
        let Some(newest) = self.newest_ms else {
            return Outcome::default();
        };
        let out = self.engine.advance_watermark(newest);
        self.count(&out);
        out
    }

    /// The counts so far.
    pub fn report(&self) -> &Report {
        &self.report
    }

    /// The engine (for its counters).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn count(&mut self, out: &Outcome) {
        for t in &out.transitions {
            let counts = self.report.rules.entry(t.rule_id.clone()).or_default();
            match t.kind {
                TransitionKind::Firing => {
                    counts.firing += 1;
                    if t.suppressed_by.is_some() {
                        counts.suppressed += 1;
                    }
                    if matches!(t.action, Action::Order { .. }) {
                        counts.orders += 1;
                        self.report.orders_total += 1;
                    }
                }
                TransitionKind::Resolved => counts.resolved += 1,
            }
        }
        for e in &out.escalations {
            self.report
                .rules
                .entry(e.rule_id.clone())
                .or_default()
                .escalations += 1;
        }
        for i in &out.incidents {
            let counts = self
                .report
                .rules
                .entry(i.fleet_rule_id.clone())
                .or_default();
            match i.kind {
                TransitionKind::Firing => {
                    counts.firing += 1;
                    if matches!(i.action, Action::Order { .. }) {
                        counts.orders += 1;
                        self.report.orders_total += 1;
                    }
                }
                TransitionKind::Resolved => counts.resolved += 1,
            }
        }
    }
}

fn merge(into: &mut Outcome, more: Outcome) {
    into.transitions.extend(more.transitions);
    into.escalations.extend(more.escalations);
    into.incidents.extend(more.incidents);
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_547_200_000;

    fn line(device: &str, minute: i64, seq: u64, indoor: f64) -> String {
        format!(
            r#"{{"v":1,"device_id":"{device}","ts_ms":{},"seq":{seq},"profile":"p","kind":"heat_pump","values":{{"indoor_temp_c":{indoor}}}}}"#,
            T0 + minute * 60_000
        )
    }

    #[test]
    fn bad_lines_are_counted_and_the_replay_goes_on() {
        let mut backtest = Backtest::new(RuleSet::default_pack().expect("parses"), Duration::ZERO);
        assert!(backtest.feed_line(&line("a", 0, 1, 20.0)).is_ok());
        assert!(matches!(
            backtest.feed_line("{not json"),
            Err(LineError::Malformed(_))
        ));
        let v2 = line("a", 1, 2, 20.0).replace("\"v\":1", "\"v\":2");
        assert_eq!(backtest.feed_line(&v2), Err(LineError::Version(2)));
        assert!(backtest.feed_line("   ").is_ok());
        // 40 minutes of silence, then a reading: the watermark follows the data.
        assert!(backtest.feed_line(&line("b", 40, 1, 20.0)).is_ok());
        let report = backtest.report();
        assert_eq!(report.lines_total, 5);
        assert_eq!(report.bad_lines_total, 2);
        assert_eq!(report.blank_lines_total, 1);
        assert_eq!(report.readings_total, 2);
        assert_eq!(report.rules.get("offline").map(|c| c.firing), Some(1));
    }

    #[test]
    fn the_simulator_manifest_reads_as_a_devices_file() {
        let text = r#"[{"device_id":"yq-0001-hp","township":"yanqing","township_name":"延庆镇",
            "village":"dongguan","village_name":"东关村","kind":"heat_pump","profile_id":"x"}]"#;
        let devices = Backtest::parse_devices(text).expect("parses");
        assert_eq!(devices[0].info.village.as_deref(), Some("dongguan"));
        assert!(!devices[0].info.vulnerable);
    }
}
