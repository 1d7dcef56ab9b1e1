//! What an ingest bench reports: each target's figures per run ([`RelayResult`],
//! [`GatewayResult`], [`SinkResult`], [`LatencyResult`]), the runs with their order and verdict
//! ([`RunReport`]), the whole bench ([`IngestReport`]) and its human-readable table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::verdict::Verdict;

/// Phase A: mosquitto relaying the load to one subscriber.
#[derive(Debug, Clone, Serialize)]
pub struct RelayResult {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    /// First publish → last publish written to the socket.
    pub send_seconds: f64,
    /// First publish → last message received by the subscriber.
    pub seconds: f64,
    pub rate_per_s: f64,
    /// Everything sent was received.
    pub complete: bool,
    /// QoS 1 publishes mosquitto had not acknowledged when the phase ended.
    pub unacknowledged: u64,
    /// CPU seconds mosquitto used in the timed phase.
    pub broker_cpu_seconds: Option<f64>,
    /// CPU seconds the load generator (this process) used in the timed phase.
    pub load_cpu_seconds: Option<f64>,
}

/// The gateway's history sink.
#[derive(Debug, Clone, Serialize)]
pub struct SinkResult {
    pub points_written: u64,
    pub points_dropped: BTreeMap<String, u64>,
    pub write_failures: u64,
    /// Points handed to the sink by the end of the run.
    pub points_handed_over: u64,
    /// `points_handed_over` is the sink's own count of queued points; else it is one point per
    /// accepted reading and per rule transition (the gateway exposes no queued count, and its
    /// order-event and incident points are then not in it).
    pub points_counted_exactly: bool,
    /// From the poll that saw every reading handled to the one that saw every point handed over
    /// by then written (or dropped): part of the timed phase.
    pub settle_seconds: f64,
    /// Points still buffered when the bench stopped waiting (0 once settled).
    pub points_buffered: u64,
    /// At the end of the run (the probes stopped and their readings handled) every point handed
    /// over was written or dropped and nothing was buffered.
    pub settled: bool,
}

impl SinkResult {
    pub fn dropped(&self) -> u64 {
        self.points_dropped.values().sum()
    }
}

/// Phase B: the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayResult {
    /// Load readings sent (the rate's numerator).
    pub sent: u64,
    /// Probe readings sent during the load (handled as well, not counted in the rate).
    pub probe_readings: u64,
    /// Readings handled (accepted + rejected) by the end, probes' last readings included.
    pub handled: u64,
    /// Readings handled (load and probes) at the end of the timed phase.
    pub handled_in_time: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<String, u64>,
    /// Readings sent and not handled when the bench gave up (0 when complete).
    pub missing: u64,
    /// The timed phase reached its end (every reading handled and, with the sink, written) and
    /// every reading was handled by the end.
    pub complete: bool,
    pub send_seconds: f64,
    /// First publish → the first poll after the publishers finished that saw every reading
    /// sent so far handled.
    pub handled_seconds: f64,
    /// First publish → the first poll after that which saw the sink done with every point
    /// handed over by then (the same as `handled_seconds` without the sink): the timed phase.
    pub seconds: f64,
    /// Load readings per second of the timed phase (probe readings not counted).
    pub rate_per_s: f64,
    pub poll_interval_ms: u64,
    /// `gateway_mqtt_messages_in_total` at the end (statuses included).
    pub messages_in: u64,
    pub broker_messages_lost: u64,
    /// `gateway_alerts_fired_total` during the timed phase, all rules.
    pub alerts_fired: u64,
    /// The same, by rule (rules that fired at least once).
    pub alerts_by_rule: BTreeMap<String, u64>,
    /// `None`: the gateway ran without a history sink (`--no-sink`).
    pub sink: Option<SinkResult>,
    /// Devices in the gateway's registry and fleet picture (load and probes).
    pub devices_held: usize,
    /// Boxes connected to the gateway, one MQTT connection each (load and probes).
    pub boxes_connected: usize,
    /// `VmRSS` once started (registry imported, no connection yet).
    pub rss_started_kib: Option<u64>,
    /// `VmRSS` with every box connected and announced, before any reading.
    pub rss_connected_kib: Option<u64>,
    /// `VmRSS` once the load is handled (and the sink settled): latest state and rule state
    /// of every device, the connections, and the broker log holding the messages.
    pub rss_kib: Option<u64>,
    pub hwm_kib: Option<u64>,
    /// (`rss_connected_kib` − `rss_started_kib`) / `boxes_connected`: what one idle connected
    /// box costs the gateway (its connection in the broker and its status in ingest), KiB.
    pub rss_per_idle_box_kib: Option<f64>,
    /// `rss_kib` / `devices_held`: the whole process after the load per device held, KiB
    /// (1 GiB for 100,000 devices is 10.5 KiB a device).
    pub rss_per_device_kib: Option<f64>,
    /// Rule-engine state per device with the gateway's pack (the engine's own size estimate,
    /// `rules::Engine::state_bytes_per_device`), bytes.
    pub rule_state_bytes_per_device: usize,
    /// The rule snapshot's size per device held (`gateway_rule_snapshot_bytes`), bytes; `None`
    /// when the gateway wrote none during the run.
    pub snapshot_bytes_per_device: Option<f64>,
    /// The broker's in-memory log capacity (segments × size, plus the one being written): it
    /// keeps messages ingest already read, up to this, so it is part of the RSS.
    pub broker_log_capacity_bytes: u64,
    pub unacknowledged: u64,
    /// CPU seconds the gateway used in the timed phase.
    pub cpu_seconds: Option<f64>,
    /// CPU seconds victoria-metrics used in the timed phase (it shares the machine).
    pub sink_server_cpu_seconds: Option<f64>,
    /// CPU seconds the load generator (this process) used in the timed phase.
    pub load_cpu_seconds: Option<f64>,
}

/// Publish → alert latency of the probes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencyResult {
    pub probes: usize,
    pub probe_interval_ms: u64,
    pub samples: u64,
    /// Fault readings whose `firing` alert did not come within 60 s.
    pub timeouts: u64,
    /// Clean readings whose `resolved` alert did not come within 10 s.
    pub resolve_timeouts: u64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    /// Alerts of the load's own devices seen on the alerts topic.
    pub other_alerts: u64,
}

/// One of the two targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Mosquitto,
    Gateway,
}

impl Target {
    /// The order of run `run` (1-based): odd runs start with mosquitto, even runs with the
    /// gateway, so neither target always gets the machine first.
    pub fn order_of_run(run: usize) -> [Target; 2] {
        if run % 2 == 1 {
            [Target::Mosquitto, Target::Gateway]
        } else {
            [Target::Gateway, Target::Mosquitto]
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Target::Mosquitto => "mosquitto",
            Target::Gateway => "gateway",
        }
    }
}

/// One run: both targets, one after the other.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// 1-based.
    pub run: usize,
    /// The targets in the order they ran.
    pub order: [Target; 2],
    pub mosquitto: RelayResult,
    pub gateway: GatewayResult,
    /// Gateway rate / mosquitto relay rate (target ≥ 1.0).
    pub ratio: Option<f64>,
    /// `Some(ratio >= 1)` only when the verdict is valid.
    pub target_met: Option<bool>,
    pub verdict: Verdict,
    pub latency: LatencyResult,
}

/// The result of an ingest bench.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub devices: usize,
    /// Load devices per edge box (the option; a village's last box may hold fewer).
    pub devices_per_box: usize,
    /// Edge boxes of the load: its MQTT connections, the same for both targets (the probes'
    /// boxes come on top for the gateway).
    pub boxes: usize,
    pub rounds: usize,
    /// Untimed rounds sent to each target before its timed phase.
    pub warmup_rounds: usize,
    pub qos: u8,
    pub publishers: usize,
    /// Rounds a publisher may run ahead of the slowest.
    pub round_lead: usize,
    pub seed: u64,
    pub telemetry_interval_s: f64,
    /// Load readings (pre-built), the same for both targets and every run.
    pub messages: u64,
    pub payload_bytes_mean: f64,
    /// Runs asked for (`--repeat`).
    pub repeat: usize,
    /// The gateway wrote history (its InfluxDB sink to VictoriaMetrics); without it every
    /// comparison is "without history".
    pub with_history: bool,
    pub runs: Vec<RunReport>,
    /// The median of the runs' ratios.
    pub median_ratio: Option<f64>,
    /// `Some(median >= 1)` only when every run is valid.
    pub target_met: Option<bool>,
    /// Valid only when every run is.
    pub verdict: Verdict,
    pub load_generator_hwm_kib: Option<u64>,
    /// `/proc/loadavg` when the bench started and ended (other work on the machine).
    pub load_average_start: String,
    pub load_average_end: String,
    pub work_dir: String,
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "?".to_owned(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

fn kib(value: Option<f64>) -> String {
    value.map_or_else(|| "?".to_owned(), |k| format!("{k:.1} KiB"))
}

/// `(after − before) / count`, in the unit of the readings.
pub(super) fn per_unit(before: Option<u64>, after: Option<u64>, count: usize) -> Option<f64> {
    (count > 0).then_some(())?;
    Some(after?.saturating_sub(before?) as f64 / count as f64)
}

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

fn secs(value: Option<f64>) -> String {
    value.map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"))
}

fn per_reading(cpu: Option<f64>, readings: u64) -> String {
    cpu.filter(|_| readings > 0).map_or_else(
        || "?".to_owned(),
        |c| format!("{:.1}", c * 1e6 / readings as f64),
    )
}

fn times(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"))
}

/// "met", "NOT met", or why it is not judged.
fn judged(met: Option<bool>, verdict: &Verdict) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "NOT met",
        None if verdict.valid => "unknown",
        None => "not judged",
    }
}

impl IngestReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        self.header(&mut out);
        for run in &self.runs {
            run.lines(self.runs.len(), &mut out);
        }
        self.summary(&mut out);
        out
    }

    fn header(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "simulator bench ingest: {} devices x {} rounds = {} readings ({:.0} B mean payload) after {} untimed warm-up round(s), QoS {}, {} publishers at most {} rounds apart, seed {}",
            self.devices, self.rounds, self.messages, self.payload_bytes_mean, self.warmup_rounds, self.qos, self.publishers, self.round_lead, self.seed
        );
        let per_box = match self.devices_per_box {
            1 => "one device per box".to_owned(),
            n => format!("up to {n} devices per box"),
        };
        let probes = self.runs.first().map_or(0, |run| run.latency.probes);
        let _ = writeln!(
            out,
            "  {} devices in {} edge boxes ({per_box}): {} MQTT connections to each target, plus {probes} probe boxes to the gateway",
            self.devices, self.boxes, self.boxes
        );
        let history = if self.with_history {
            "the gateway's clock runs until every load reading is handled and written to history (its InfluxDB sink to victoria-metrics)"
        } else {
            "WITHOUT HISTORY (--no-sink): the gateway's clock runs until every load reading is handled; nothing is written to history"
        };
        let _ = writeln!(
            out,
            "  {} run(s), the order alternating; {history}; rates count load readings only",
            self.repeat
        );
        let _ = writeln!(
            out,
            "  load average at start {}, at end {}",
            self.load_average_start, self.load_average_end
        );
    }

    fn summary(&self, out: &mut String) {
        let ratios: Vec<String> = self.runs.iter().map(|run| times(run.ratio)).collect();
        let history = if self.with_history {
            "with history"
        } else {
            "without history"
        };
        let _ = writeln!(
            out,
            "ratio gateway / mosquitto, median of {} run(s) ({}): {} {history} (target >= 1.0x: {}); verdict: {}",
            self.runs.len(),
            ratios.join(", "),
            times(self.median_ratio),
            judged(self.target_met, &self.verdict),
            self.verdict
        );
        let _ = writeln!(
            out,
            "load generator VmHWM {}",
            mib(self.load_generator_hwm_kib)
        );
    }
}

impl RunReport {
    /// This run's block of the table.
    fn lines(&self, runs: usize, out: &mut String) {
        let (a, b) = (&self.mosquitto, &self.gateway);
        let _ = writeln!(
            out,
            "run {} of {runs}: {}, then {}",
            self.run,
            self.order[0].as_str(),
            self.order[1].as_str()
        );
        let _ = writeln!(
            out,
            "  {:<34} {:>9} {:>9} {:>8} {:>9} {:>9} {:>11}",
            "target", "sent", "handled", "lost", "send s", "total s", "msgs/s"
        );
        let _ = writeln!(
            out,
            "  {:<34} {:>9} {:>9} {:>8} {:>9.3} {:>9.3} {:>11.0}",
            "mosquitto relay (to 1 subscriber)",
            a.sent,
            a.received,
            a.lost,
            a.send_seconds,
            a.seconds,
            a.rate_per_s
        );
        let label = if b.sink.is_some() {
            "gateway (rules + history written)"
        } else {
            "gateway (rules, WITHOUT history)"
        };
        let _ = writeln!(
            out,
            "  {:<34} {:>9} {:>9} {:>8} {:>9.3} {:>9.3} {:>11.0}",
            label, b.sent, b.handled, b.missing, b.send_seconds, b.seconds, b.rate_per_s
        );
        let _ = writeln!(
            out,
            "  (gateway: {} load + {} probe readings, {} handled in the timed phase; all handled after {:.3} s, written after {:.3} s; its rate counts the load only)",
            b.sent, b.probe_readings, b.handled_in_time, b.handled_seconds, b.seconds
        );
        let _ = writeln!(
            out,
            "  CPU in the timed phase (2 cores shared): mosquitto {} s ({} us/reading), load generator {} s; gateway {} s ({} us/reading), victoria-metrics {} s, load generator {} s",
            secs(a.broker_cpu_seconds),
            per_reading(a.broker_cpu_seconds, a.sent),
            secs(a.load_cpu_seconds),
            secs(b.cpu_seconds),
            per_reading(b.cpu_seconds, b.sent),
            secs(b.sink_server_cpu_seconds),
            secs(b.load_cpu_seconds)
        );
        let history = if b.sink.is_some() {
            "with history"
        } else {
            "without history"
        };
        let _ = writeln!(
            out,
            "  ratio gateway / mosquitto: {} {history} (target >= 1.0x: {}); verdict: {}; gateway polled every {} ms",
            times(self.ratio),
            judged(self.target_met, &self.verdict),
            self.verdict,
            b.poll_interval_ms
        );
        self.latency_and_memory(out);
        self.sink_and_losses(out);
    }

    fn latency_and_memory(&self, out: &mut String) {
        let (l, b) = (&self.latency, &self.gateway);
        let _ = writeln!(
            out,
            "  publish -> alert latency ({} probes, one fault every {} ms each): {} samples, {} timeouts, {} resolve timeouts; p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            l.probes,
            l.probe_interval_ms,
            l.samples,
            l.timeouts,
            l.resolve_timeouts,
            ms(l.p50_ms),
            ms(l.p90_ms),
            ms(l.p99_ms),
            ms(l.max_ms)
        );
        let _ = writeln!(
            out,
            "  gateway memory holding {} devices of {} connected boxes: VmRSS {}, VmHWM {} after the load (broker log capacity {:.0} MiB)",
            b.devices_held,
            b.boxes_connected,
            mib(b.rss_kib),
            mib(b.hwm_kib),
            b.broker_log_capacity_bytes as f64 / 1_048_576.0
        );
        let _ = writeln!(
            out,
            "    VmRSS started (registry imported) {}, with every box connected {}",
            mib(b.rss_started_kib),
            mib(b.rss_connected_kib)
        );
        let _ = writeln!(
            out,
            "    per idle connected box {} (target <= 10 KiB); after the load {} per device held (target <= 10.5 KiB: 1 GiB for 100,000 devices)",
            kib(b.rss_per_idle_box_kib),
            kib(b.rss_per_device_kib)
        );
        let _ = writeln!(
            out,
            "    per-device structures: rule state {} B (engine estimate, the gateway's pack), rule snapshot {}",
            b.rule_state_bytes_per_device,
            b.snapshot_bytes_per_device
                .map_or_else(|| "not written in the run".to_owned(), |bytes| format!("{bytes:.0} B"))
        );
    }

    fn sink_and_losses(&self, out: &mut String) {
        let (a, b) = (&self.mosquitto, &self.gateway);
        match &b.sink {
            Some(sink) => {
                let settled = if sink.settled {
                    format!(
                        "settled; the load's points written {:.3} s after its readings were handled",
                        sink.settle_seconds
                    )
                } else {
                    format!(
                        "NOT settled: {} points still buffered when the bench stopped waiting",
                        sink.points_buffered
                    )
                };
                let counted = if sink.points_counted_exactly {
                    "as the sink queued them"
                } else {
                    "a point per accepted reading and rule transition"
                };
                let _ = writeln!(
                    out,
                    "  sink: {} points written of {} handed over ({counted}), {} dropped {:?}, {} write failures ({settled})",
                    sink.points_written,
                    sink.points_handed_over,
                    sink.dropped(),
                    sink.points_dropped,
                    sink.write_failures
                );
            }
            None => {
                let _ = writeln!(out, "  sink: off (--no-sink): no history written");
            }
        }
        let rejected: u64 = b.rejected.values().sum();
        let _ = writeln!(
            out,
            "  losses: mosquitto {} of {}; gateway rejects {} {:?}, broker messages lost {}, not handled {}; alerts fired {} {:?}",
            a.lost, a.sent, rejected, b.rejected, b.broker_messages_lost, b.missing, b.alerts_fired, b.alerts_by_rule
        );
        if a.unacknowledged + b.unacknowledged > 0 {
            let _ = writeln!(
                out,
                "  QoS 1 publishes never acknowledged: mosquitto {}, gateway {}",
                a.unacknowledged, b.unacknowledged
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_per_unit_is_the_growth_over_the_count() {
        assert_eq!(per_unit(Some(1_000), Some(1_512), 64), Some(8.0));
        assert_eq!(per_unit(Some(1_000), Some(900), 10), Some(0.0));
        assert_eq!(per_unit(None, Some(900), 10), None);
        assert_eq!(per_unit(Some(1), Some(900), 0), None);
    }

    #[test]
    fn runs_alternate_which_target_goes_first() {
        assert_eq!(
            Target::order_of_run(1),
            [Target::Mosquitto, Target::Gateway]
        );
        assert_eq!(
            Target::order_of_run(2),
            [Target::Gateway, Target::Mosquitto]
        );
        assert_eq!(Target::order_of_run(3), Target::order_of_run(1));
        assert_eq!(
            serde_json::to_string(&Target::order_of_run(2)).expect("json"),
            r#"["gateway","mosquitto"]"#
        );
    }
}
