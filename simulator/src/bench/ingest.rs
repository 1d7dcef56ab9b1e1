//! `simulator bench ingest`: the gateway's sustained ingest throughput (MQTT in → validate →
//! rules → sink batches) against Debian's mosquitto relaying the same readings from the same
//! load generator in the same run, publish → alert latency under that load, and the gateway's
//! memory while it holds the fleet's latest state and rule state.
//!
//! Method:
//! - Before anything is timed, a realistic fleet is generated (`fleet::generate`, the shipped
//!   profiles) and [`World`] builds `rounds` poll rounds of reading payloads (one telemetry
//!   interval apart, so `ts_ms` and `seq` grow). The devices are served by edge boxes,
//!   `devices_per_box` each (default 1; the devices of a box are of one village, see
//!   [`group_households`]); a box publishes each of its devices' readings on that device's
//!   telemetry topic. Both targets get exactly these payloads over the same boxes, sent by the
//!   same code: `publishers` tasks, each owning a contiguous slice of the boxes' MQTT
//!   connections (one per box, opened and announced `online` before the clock starts), sending
//!   round by round, box by box and device by device, as fast as the target takes them, at
//!   QoS 1 (as edge agents) or QoS 0. Each target first gets `warmup_rounds` untimed rounds
//!   (default 1: every device's first reading, which creates its series in the database and
//!   its first rule state, a cost a running district's gateway paid long ago); the clock
//!   starts once the target has handled them (and, for the gateway, its sink written them).
//!   A publisher may run at most `round_lead` rounds ahead of the slowest (default 3, three
//!   simulated minutes), as edge agents polling on one clock do: unpaced, the slices drift
//!   apart in event time, and after enough rounds the gateway's watermark finds the slowest
//!   slice's devices silent past the `offline` rule (15 min) and fires thousands of offline
//!   alerts and orders no real fleet would cause.
//! - Phase A: mosquitto (`persistence false`, no connection, queue or in-flight limits) with
//!   one subscriber on the telemetry topics (subscribed at QoS 0, so mosquitto relays at QoS 0
//!   whatever QoS the load uses). Relay rate = messages received / (last receipt − first
//!   publish).
//! - Phase B: the real `gateway run` process (rules in event time, lateness 0 so a reading is
//!   evaluated on arrival, the fleet's registry imported, the InfluxDB sink writing to
//!   VictoriaMetrics unless `--no-sink`). Rate = readings handled (accepted + rejected, from
//!   `/metrics`, polled every 50 ms) / (the poll that saw all of them − first publish), so the
//!   figure errs against the gateway by up to one poll interval. Its registry registers each
//!   device to the household of its box (`edge_box`), as for a real multi-device box.
//! - Latency (phase B only): probe boxes (extra registered devices, one per box, their own
//!   connections)
//!   publish, every `probe_interval`, a reading with a sensor fault (the default pack's
//!   `device_fault` fires on it at once) and time it to the `firing` alert the gateway
//!   publishes on `heating/v1/{township}/{device}/alerts`; then a clean reading resolves it.
//!   Probe timestamps follow the load's simulated clock (the gateway runs in event time, so a
//!   past winter is neither future nor ancient for it). Probes run until the gateway has handled
//!   the load.
//! - Memory: `VmRSS` and `VmHWM` of the gateway once everything is handled (and the sink has
//!   settled), with the load generator's own `VmHWM`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge_agent::profile::Profile;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use wire::{DeviceKind, Fault, FaultCategory, Topic, TopicKind};

use super::gateway::{tail_of, GatewayProcess, GatewaySettings};
use super::registry;
use super::world::World;
use super::{shipped_profiles, BenchError};
use crate::climate::Climate;
use crate::fleet::{self, HouseholdSpec};
use crate::load::mqtt::Connection;
use crate::load::subscriber::{Publish, Subscriber};
use crate::load::telemetry::{reading_json, ProfileCodec};
use crate::load::{group_households, BoxGroup, BoxIdentity, BoxPool};
use crate::mix::Mix;
use crate::model::{House, HouseParams};
use crate::scenario;

/// The telemetry topics the relay subscriber listens to.
pub const TELEMETRY_FILTER: &str = "heating/v1/+/+/telemetry";
/// The gateway's live alerts.
pub const ALERTS_FILTER: &str = "heating/v1/+/+/alerts";
/// The rule of the default pack the latency probes make fire (a fault code of any category but
/// the gas ones, `for = "0s"`).
pub const FAULT_RULE: &str = "device_fault";
/// Keep-alive the load's connections announce: long, so that boxes stay connected through the
/// untimed set-up of a large fleet (they publish nothing while the others connect).
const KEEP_ALIVE: Duration = Duration::from_secs(1800);
/// Longest wait for one QoS 1 publish window, CONNACK or SUBACK.
const MQTT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the gateway's `/metrics` are read while it works.
const GATEWAY_POLL: Duration = Duration::from_millis(50);
/// How often the relay subscriber's count is read (in-process, cheap).
const RELAY_POLL: Duration = Duration::from_millis(5);
/// Longest wait for a probe's `firing` alert.
const FIRE_DEADLINE: Duration = Duration::from_secs(60);
/// Longest wait for a probe's `resolved` alert.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(10);
/// The sink has settled once nothing is buffered and its written count stayed still this
/// long (3 × its flush period). The written count alone stands still during one slow write.
const SINK_SETTLE: Duration = Duration::from_secs(3);

/// MQTT quality of service of the load's publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

impl Qos {
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }
}

impl FromStr for Qos {
    type Err = String;

    fn from_str(text: &str) -> Result<Qos, String> {
        match text {
            "0" => Ok(Qos::AtMostOnce),
            "1" => Ok(Qos::AtLeastOnce),
            _ => Err(format!("the QoS must be 0 or 1, not {text:?}")),
        }
    }
}

/// Why an ingest bench failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid ingest bench options: {0}")]
    Config(String),
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Service(String),
    #[error("load generator: {0}")]
    Load(String),
    #[error("gateway: {0}")]
    Gateway(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IngestError {
    let what = what.into();
    move |source| IngestError::Io { what, source }
}

/// Everything an ingest bench needs.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Load devices.
    pub devices: usize,
    /// Load devices per edge box (one MQTT connection per box); at least 1.
    pub devices_per_box: usize,
    /// Poll rounds: readings per device, timed.
    pub rounds: usize,
    /// Rounds sent before the clock starts (each device's first reading, paid once).
    pub warmup_rounds: usize,
    pub qos: Qos,
    /// Latency probe boxes (phase B); 0 measures no latency.
    pub probes: usize,
    /// Pause between one probe's fault readings (the probes are staggered over it).
    pub probe_interval: Duration,
    /// Publisher tasks sharing the boxes.
    pub publishers: usize,
    /// How many rounds a publisher may run ahead of the slowest one (see [`RoundGate`]).
    pub round_lead: usize,
    pub seed: u64,
    pub profiles: Vec<Arc<Profile>>,
    pub gateway_bin: PathBuf,
    pub mosquitto_bin: PathBuf,
    pub victoria_metrics_bin: PathBuf,
    /// Run the gateway with its InfluxDB sink writing to VictoriaMetrics.
    pub sink: bool,
    /// Folder for configs, logs and databases; a fresh temporary folder when `None`.
    pub work_dir: Option<PathBuf>,
    /// Keep the work folder after a successful run.
    pub keep_work_dir: bool,
    /// `RUST_LOG` of the gateway.
    pub gateway_log: String,
    /// A target that takes in nothing for this long is given up on (what is missing is
    /// reported).
    pub stall_timeout: Duration,
}

impl IngestOptions {
    /// Defaults for everything but the size and the gateway.
    pub fn new(devices: usize, gateway_bin: PathBuf) -> Result<IngestOptions, IngestError> {
        Ok(IngestOptions {
            devices,
            devices_per_box: 1,
            rounds: 5,
            warmup_rounds: 1,
            qos: Qos::AtLeastOnce,
            probes: 50,
            probe_interval: Duration::from_secs(1),
            publishers: 8,
            round_lead: 3,
            seed: 1,
            profiles: shipped_profiles()?,
            gateway_bin,
            mosquitto_bin: PathBuf::from("mosquitto"),
            victoria_metrics_bin: PathBuf::from("victoria-metrics"),
            sink: true,
            work_dir: None,
            keep_work_dir: false,
            gateway_log: "warn".to_owned(),
            stall_timeout: Duration::from_secs(60),
        })
    }
}

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

/// The gateway's history sink, once it settled.
#[derive(Debug, Clone, Serialize)]
pub struct SinkResult {
    pub points_written: u64,
    pub points_dropped: BTreeMap<String, u64>,
    pub write_failures: u64,
    /// From the end of the load until nothing was buffered and the written count stopped
    /// rising (or until the stall timeout).
    pub settle_seconds: f64,
    /// Points still buffered when the bench stopped waiting (0 once settled).
    pub points_buffered: u64,
}

/// Phase B: the gateway.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayResult {
    /// Load readings sent.
    pub sent: u64,
    /// Probe readings sent during the load (handled as well, and counted in the rate).
    pub probe_readings: u64,
    /// Readings handled (accepted + rejected) by the end, probes' last readings included.
    pub handled: u64,
    /// Readings handled at the end of the timed phase (the rate's numerator).
    pub handled_in_time: u64,
    pub accepted: u64,
    pub rejected: BTreeMap<String, u64>,
    /// Readings sent and not handled when the bench gave up (0 when complete).
    pub missing: u64,
    pub complete: bool,
    pub send_seconds: f64,
    /// First publish → the first poll after the publishers finished that saw every reading
    /// sent so far handled.
    pub seconds: f64,
    pub rate_per_s: f64,
    pub poll_interval_ms: u64,
    /// `gateway_mqtt_messages_in_total` at the end (statuses included).
    pub messages_in: u64,
    pub broker_messages_lost: u64,
    /// `gateway_alerts_fired_total` during the timed phase, all rules.
    pub alerts_fired: u64,
    /// The same, by rule (rules that fired at least once).
    pub alerts_by_rule: BTreeMap<String, u64>,
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

/// The result of an ingest bench.
#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub devices: usize,
    /// Load devices per edge box (the option; a village's last box may hold fewer).
    pub devices_per_box: usize,
    /// Edge boxes of the load: its MQTT connections, the same in both phases (the probes'
    /// boxes come on top in phase B).
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
    /// Load readings (pre-built), the same for both targets.
    pub messages: u64,
    pub payload_bytes_mean: f64,
    pub mosquitto: RelayResult,
    pub gateway: GatewayResult,
    /// Gateway rate / mosquitto relay rate (target ≥ 1.0).
    pub ratio: Option<f64>,
    pub latency: LatencyResult,
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

fn ms(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"))
}

impl IngestReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let a = &self.mosquitto;
        let b = &self.gateway;
        let _ = writeln!(
            out,
            "simulator bench ingest: {} devices x {} rounds = {} readings ({:.0} B mean payload) after {} untimed warm-up round(s), QoS {}, {} publishers at most {} rounds apart, seed {}",
            self.devices, self.rounds, self.messages, self.payload_bytes_mean, self.warmup_rounds, self.qos, self.publishers, self.round_lead, self.seed
        );
        let per_box = match self.devices_per_box {
            1 => "one device per box".to_owned(),
            n => format!("up to {n} devices per box"),
        };
        let _ = writeln!(
            out,
            "  {} devices in {} edge boxes ({per_box}): {} MQTT connections to each target, plus {} probe boxes to the gateway",
            self.devices, self.boxes, self.boxes, self.latency.probes
        );
        let _ = writeln!(
            out,
            "  load average at start {}, at end {}",
            self.load_average_start, self.load_average_end
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
            "gateway (rules + influx sink)"
        } else {
            "gateway (rules, no sink)"
        };
        let _ = writeln!(
            out,
            "  {:<34} {:>9} {:>9} {:>8} {:>9.3} {:>9.3} {:>11.0}",
            label,
            b.sent + b.probe_readings,
            b.handled,
            b.missing,
            b.send_seconds,
            b.seconds,
            b.rate_per_s
        );
        let _ = writeln!(
            out,
            "  (gateway: {} load + {} probe readings; its rate counts the {} handled by the end of the timed phase)",
            b.sent, b.probe_readings, b.handled_in_time
        );
        let secs = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"));
        let per_reading = |cpu: Option<f64>, n: u64| {
            cpu.filter(|_| n > 0)
                .map_or_else(|| "?".to_owned(), |c| format!("{:.1}", c * 1e6 / n as f64))
        };
        let _ = writeln!(
            out,
            "  CPU in the timed phase (2 cores shared): mosquitto {} s ({} us/reading), load generator {} s; gateway {} s ({} us/reading), victoria-metrics {} s, load generator {} s",
            secs(a.broker_cpu_seconds),
            per_reading(a.broker_cpu_seconds, a.received),
            secs(a.load_cpu_seconds),
            secs(b.cpu_seconds),
            per_reading(b.cpu_seconds, b.handled_in_time),
            secs(b.sink_server_cpu_seconds),
            secs(b.load_cpu_seconds)
        );
        let verdict = match self.ratio {
            Some(r) if r >= 1.0 => "met",
            Some(_) => "NOT met",
            None => "unknown",
        };
        let _ = writeln!(
            out,
            "  ratio gateway / mosquitto: {} (target >= 1.0x: {verdict}); gateway polled every {} ms",
            self.ratio
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x")),
            b.poll_interval_ms
        );
        let l = &self.latency;
        let _ = writeln!(
            out,
            "  publish -> alert latency ({} probes, one fault every {} ms each): {} samples, {} timeouts; p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            l.probes,
            l.probe_interval_ms,
            l.samples,
            l.timeouts,
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
        match &b.sink {
            Some(sink) => {
                let dropped: u64 = sink.points_dropped.values().sum();
                let settled = if sink.points_buffered == 0 {
                    format!("settled {:.1} s after the load", sink.settle_seconds)
                } else {
                    format!(
                        "NOT settled: {} points still buffered when the bench stopped waiting",
                        sink.points_buffered
                    )
                };
                let _ = writeln!(
                    out,
                    "  sink: {} points written, {} dropped {:?}, {} write failures ({settled})",
                    sink.points_written, dropped, sink.points_dropped, sink.write_failures
                );
            }
            None => {
                let _ = writeln!(out, "  sink: off (--no-sink)");
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
        let _ = writeln!(
            out,
            "  load generator VmHWM {}",
            mib(self.load_generator_hwm_kib)
        );
        out
    }
}

/// The pre-built load: every device's readings of every round, and the boxes publishing them.
struct Load {
    /// `[household]`: the telemetry topic of the household's device.
    topics: Vec<String>,
    /// `[box]`: the households whose devices the box serves (with one device per box, box `i`
    /// serves household `i`).
    boxes: Vec<Vec<usize>>,
    /// `[round][household]`: the household's readings of that round (normally one); the
    /// first `warmup` rounds are sent before the clock starts.
    rounds: Vec<Vec<Vec<Vec<u8>>>>,
    round_ts: Vec<i64>,
    /// Untimed rounds at the start of `rounds`.
    warmup: usize,
    /// Readings and payload bytes of the timed rounds.
    messages: u64,
    payload_bytes: u64,
    /// ... of the warm-up rounds.
    warmup_messages: u64,
    warmup_payload_bytes: u64,
}

/// A latency probe's device and its two readings' values.
#[derive(Debug, Clone)]
struct ProbeSpec {
    device_id: String,
    topic: String,
    profile: String,
    kind: DeviceKind,
    faulty: Vec<(&'static str, f64)>,
    fault: Fault,
    clean: Vec<(&'static str, f64)>,
}

impl ProbeSpec {
    fn reading(&self, faulty: bool, ts_ms: i64, seq: u64) -> Vec<u8> {
        let (values, fault) = if faulty {
            (&self.faulty, Some(&self.fault))
        } else {
            (&self.clean, None)
        };
        reading_json(
            &self.device_id,
            ts_ms,
            seq,
            &self.profile,
            self.kind,
            values,
            fault,
        )
    }
}

/// A brand code of the profile whose category is `sensor_fault`.
fn sensor_fault_code(profile: &Profile) -> Option<u32> {
    (1..=u32::from(u16::MAX)).find(|&code| {
        profile
            .fault(code)
            .is_some_and(|f| f.category == FaultCategory::SensorFault)
    })
}

fn probe_spec(
    spec: &HouseholdSpec,
    climate: &Climate,
    start_ms: i64,
) -> Result<ProbeSpec, IngestError> {
    let profile = &spec.profile;
    let code = sensor_fault_code(profile).ok_or_else(|| {
        IngestError::Config(format!(
            "profile {} has no sensor_fault code for the latency probes",
            profile.id
        ))
    })?;
    let codec = ProfileCodec::new(Arc::clone(profile));
    let mut house = House::new(
        HouseParams::from(spec),
        Arc::clone(profile),
        climate,
        start_ms as f64 / 1000.0,
    );
    house.refresh_noise();
    let mut values = house.values();
    values.insert(wire::values::FAULT_CODE, 0.0);
    let (clean, _) = codec.quantise(&values);
    values.insert(wire::values::FAULT_CODE, f64::from(code));
    let (faulty, fault) = codec.quantise(&values);
    let fault = fault.ok_or_else(|| {
        IngestError::Config(format!(
            "profile {} has no fault_code register for the latency probes",
            profile.id
        ))
    })?;
    Ok(ProbeSpec {
        device_id: spec.device_id.to_string(),
        topic: Topic::new(
            spec.township_id.clone(),
            spec.device_id.to_string(),
            TopicKind::Telemetry,
        )
        .to_string(),
        profile: profile.id.clone(),
        kind: spec.kind,
        faulty,
        fault,
        clean,
    })
}

struct Prepared {
    /// Load households first, then the probes.
    fleet: Vec<HouseholdSpec>,
    /// The load's boxes first (as [`Load::boxes`]), then one box per probe; households are
    /// positions in `fleet`.
    boxes: Vec<BoxGroup>,
    load: Arc<Load>,
    probes: Vec<ProbeSpec>,
    start_ms: i64,
    interval_ms: i64,
    households_per_technician: usize,
}

/// Generates the fleet and builds every round's payloads (nothing is timed yet).
fn prepare(options: &IngestOptions) -> Result<Prepared, IngestError> {
    let total = options.devices + options.probes;
    let fleet =
        fleet::generate(total, options.seed, &options.profiles).map_err(BenchError::from)?;
    let mix = Mix::default_mix().map_err(BenchError::from)?;
    let interval_ms = mix.telemetry.interval.as_millis() as i64;
    // One spare interval, so the scenario's end (rounded down to its grid) covers every round.
    let all_rounds = options.warmup_rounds + options.rounds;
    let days = (all_rounds as f64 + 1.0) * interval_ms as f64 / 86_400_000.0;
    let load_fleet = &fleet[..options.devices];
    let plan = scenario::build(load_fleet, &mix, days, options.seed).map_err(BenchError::from)?;
    let mut world = World::new(load_fleet, &mix, &plan, options.seed);
    let mut rounds = Vec::with_capacity(all_rounds);
    let mut round_ts = Vec::with_capacity(all_rounds);
    let (mut messages, mut payload_bytes) = (0u64, 0u64);
    let (mut warmup_messages, mut warmup_payload_bytes) = (0u64, 0u64);
    for round in 1..=all_rounds {
        let ts = plan.start_ms + round as i64 * interval_ms;
        world.advance_to(ts);
        let mut per_household = vec![Vec::new(); options.devices];
        let (count, bytes) = if round <= options.warmup_rounds {
            (&mut warmup_messages, &mut warmup_payload_bytes)
        } else {
            (&mut messages, &mut payload_bytes)
        };
        for box_round in world.poll_round() {
            *count += box_round.readings.len() as u64;
            *bytes += box_round
                .readings
                .iter()
                .map(|r| r.len() as u64)
                .sum::<u64>();
            if let Some(slot) = per_household.get_mut(box_round.household) {
                *slot = box_round.readings;
            }
        }
        rounds.push(per_household);
        round_ts.push(ts);
    }
    let topics: Vec<String> = (0..options.devices)
        .map(|h| world.telemetry_topic(h).unwrap_or_default().to_owned())
        .collect();
    let mut boxes = group_households(load_fleet, options.devices_per_box);
    // Each box publishes on its devices' own topics, under its prefix.
    for group in &boxes {
        for (&household, device) in group.households.iter().zip(&group.identity.devices) {
            let topic = topics.get(household).map(String::as_str);
            if group.identity.telemetry_topic(device.as_str()).as_deref() != topic {
                return Err(IngestError::Config(format!(
                    "device {device} publishes on {topic:?}, not under its box {} ({})",
                    group.identity.box_id,
                    group.identity.topic_prefix()
                )));
            }
        }
    }
    let load_boxes = boxes.iter().map(|g| g.households.clone()).collect();
    boxes.extend(
        fleet[options.devices..]
            .iter()
            .enumerate()
            .map(|(offset, spec)| BoxGroup {
                identity: BoxIdentity::of_household(spec),
                households: vec![options.devices + offset],
            }),
    );
    let climate = Climate::yanqing_winter(options.seed);
    let probes = fleet[options.devices..]
        .iter()
        .map(|spec| probe_spec(spec, &climate, plan.start_ms))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        fleet,
        boxes,
        load: Arc::new(Load {
            topics,
            boxes: load_boxes,
            rounds,
            round_ts,
            warmup: options.warmup_rounds,
            messages,
            payload_bytes,
            warmup_messages,
            warmup_payload_bytes,
        }),
        probes,
        start_ms: plan.start_ms,
        interval_ms,
        households_per_technician: mix.technicians.households_per_technician,
    })
}

/// Raises this process's open-file limit to at least `needed` (children inherit it).
fn raise_open_files(needed: u64) -> Result<(), IngestError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| IngestError::Load(format!("cannot read the open-file limit: {e}")))?;
    if soft >= needed {
        return Ok(());
    }
    let new_hard = hard.max(needed);
    if setrlimit(Resource::RLIMIT_NOFILE, needed, new_hard).is_err() {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| {
            IngestError::Load(format!("cannot raise the open-file limit to {hard}: {e}"))
        })?;
        return Err(IngestError::Config(format!(
            "{needed} open files are needed (one per connection and a margin) but the limit is {hard} and cannot be raised (run as root or raise `ulimit -Hn`)"
        )));
    }
    tracing::info!(from = soft, to = needed, "open-file limit raised");
    Ok(())
}

/// A port free right now on loopback (bound, read, closed; handed to a child process).
fn free_port() -> Result<u16, IngestError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io("bind a free port on 127.0.0.1"))
}

/// `name` itself if it has a folder; else the first match on `PATH` or in the sbin folders
/// (Debian installs mosquitto in /usr/sbin, which a user's `PATH` may lack).
fn resolve_program(name: &Path) -> PathBuf {
    if name.components().count() > 1 {
        return name.to_path_buf();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| name.to_path_buf())
}

/// A helper process (mosquitto, victoria-metrics) with its output in a log file. Killed if
/// dropped without [`Service::stop`].
struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        dir: &Path,
        hint: &str,
    ) -> Result<Service, IngestError> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let stdout = file
            .try_clone()
            .map_err(io(format!("reopen {}", log.display())))?;
        let program = resolve_program(program);
        let child = Command::new(&program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                IngestError::Service(format!(
                    "cannot start {name} ({}): {e} ({hint})",
                    program.display()
                ))
            })?;
        Ok(Service { name, child, log })
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    fn tail(&self) -> String {
        tail_of(&self.log, 20)
    }

    fn died(&mut self, during: &str) -> Option<IngestError> {
        self.exited().map(|status| {
            IngestError::Service(format!(
                "{} exited ({status}) {during}; its log ({}) ends:\n{}",
                self.name,
                self.log.display(),
                self.tail()
            ))
        })
    }

    /// SIGTERM, up to 10 s for a clean exit, then SIGKILL.
    async fn stop(mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok()
                && tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                    .await
                    .is_ok()
            {
                return;
            }
        }
        tracing::warn!(service = self.name, "no clean exit on SIGTERM; killing it");
        let _ = self.child.kill().await;
    }
}

/// Waits until something accepts TCP connections on `addr`, or the process dies, or 20 s pass.
async fn wait_listening(service: &mut Service, addr: SocketAddr) -> Result<(), IngestError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        tick.tick().await;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if let Some(error) = service.died(&format!("before it listened on {addr}")) {
            return Err(error);
        }
        if Instant::now() >= deadline {
            return Err(IngestError::Service(format!(
                "{} does not accept connections on {addr} after 20 s; its log ends:\n{}",
                service.name,
                service.tail()
            )));
        }
    }
}

/// `VmRSS`, `VmHWM`... of a process, in KiB.
fn proc_status_kib(pid: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// CPU time (user + system) a process has used so far, from `/proc/{pid}/stat`.
fn proc_cpu_seconds(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: the command may hold spaces, so fields count from the last `)`;
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)?;
    Some((utime + stime) as f64 / ticks as f64)
}

/// CPU seconds a process used between two readings of [`proc_cpu_seconds`].
fn cpu_between(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some((after? - before?).max(0.0))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "?".to_owned())
}

/// Opens the first `count` boxes' connections (each announces `online`, with its last will).
async fn connect_boxes(
    broker: SocketAddr,
    boxes: &[BoxIdentity],
    count: usize,
) -> Result<Vec<Connection>, IngestError> {
    let mut pool = BoxPool::new(broker, boxes.to_vec()).with_keep_alive(KEEP_ALIVE);
    let indexes: Vec<usize> = (0..count.min(boxes.len())).collect();
    pool.connect(&indexes)
        .await
        .map_err(|e| IngestError::Load(format!("connecting the boxes to {broker}: {e}")))?;
    pool.take_connections()
        .into_iter()
        .take(indexes.len())
        .enumerate()
        .map(|(index, connection)| {
            connection.ok_or_else(|| IngestError::Load(format!("box #{index} is not connected")))
        })
        .collect()
}

/// One publisher's boxes: connections of the boxes `first..first + connections.len()`.
struct Slice {
    first: usize,
    connections: Vec<Connection>,
}

/// Deals `items` into at most `parts` contiguous chunks of nearly equal size, each with the
/// index of its first item.
fn deal<T>(items: Vec<T>, parts: usize) -> Vec<(usize, Vec<T>)> {
    let per = items.len().div_ceil(parts.max(1)).max(1);
    let mut out = Vec::new();
    let mut rest = items.into_iter();
    let mut first = 0;
    loop {
        let chunk: Vec<T> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        let len = chunk.len();
        out.push((first, chunk));
        first += len;
    }
    out
}

fn slices(connections: Vec<Connection>, publishers: usize) -> Vec<Slice> {
    deal(connections, publishers)
        .into_iter()
        .map(|(first, connections)| Slice { first, connections })
        .collect()
}

async fn publish(
    connection: &mut Connection,
    qos: Qos,
    topic: &str,
    payload: &[u8],
) -> Result<(), crate::load::mqtt::MqttError> {
    match qos {
        Qos::AtLeastOnce => {
            connection
                .publish(topic, payload, false, MQTT_TIMEOUT)
                .await
        }
        Qos::AtMostOnce => connection.publish_qos0(topic, payload, false).await,
    }
}

/// Keeps the publishers within `lead` rounds of each other, as edge agents polling on one
/// clock are. Unpaced, one slice could run many telemetry intervals ahead of another in event
/// time, and a gateway in event time would then find the slowest slice's devices silent for
/// longer than the `offline` rule's duration: a flood of offline alerts (and orders) that no
/// real fleet produces, measured as if it were ingest.
struct RoundGate {
    lead: usize,
    /// Rounds finished, per publisher (`usize::MAX` once it stopped, for whatever reason).
    finished: Vec<AtomicUsize>,
    /// The least of `finished`.
    slowest: tokio::sync::watch::Sender<usize>,
}

impl RoundGate {
    fn new(publishers: usize, lead: usize) -> RoundGate {
        RoundGate {
            lead,
            finished: (0..publishers).map(|_| AtomicUsize::new(0)).collect(),
            slowest: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Waits until every publisher is at most `lead` rounds behind `round` (0-based).
    async fn wait_to_start(&self, round: usize) {
        let mut slowest = self.slowest.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = slowest
            .wait_for(|&done| done.saturating_add(self.lead) >= round)
            .await;
    }

    fn finished(&self, publisher: usize, rounds: usize) {
        if let Some(slot) = self.finished.get(publisher) {
            slot.store(rounds, Ordering::Release);
        }
        let least = self
            .finished
            .iter()
            .map(|slot| slot.load(Ordering::Acquire))
            .min()
            .unwrap_or(usize::MAX);
        self.slowest.send_if_modified(|done| {
            let moved = least > *done;
            if moved {
                *done = least;
            }
            moved
        });
    }
}

/// Sends the slice's readings round by round, at most the gate's lead ahead of the slowest
/// slice; moves the shared event-time clock to each round.
async fn publish_slice(
    load: Arc<Load>,
    mut slice: Slice,
    qos: Qos,
    clock: Arc<AtomicI64>,
    gate: Arc<RoundGate>,
    publisher: usize,
    rounds: Range<usize>,
) -> Result<(Slice, u64), IngestError> {
    let sent = send_rounds(&load, &mut slice, qos, &clock, &gate, publisher, rounds).await;
    // Stopped, finished or failed: nobody waits for this slice any more.
    gate.finished(publisher, usize::MAX);
    sent.map(|count| (slice, count))
}

async fn send_rounds(
    load: &Load,
    slice: &mut Slice,
    qos: Qos,
    clock: &AtomicI64,
    gate: &RoundGate,
    publisher: usize,
    rounds: Range<usize>,
) -> Result<u64, IngestError> {
    let mut sent = 0u64;
    for (step, round) in rounds.enumerate() {
        let (Some(ts), Some(readings)) = (load.round_ts.get(round), load.rounds.get(round)) else {
            break;
        };
        gate.wait_to_start(step).await;
        clock.fetch_max(*ts, Ordering::Relaxed);
        for (offset, connection) in slice.connections.iter_mut().enumerate() {
            for &household in &load.boxes[slice.first + offset] {
                let topic = &load.topics[household];
                for payload in &readings[household] {
                    publish(connection, qos, topic, payload)
                        .await
                        .map_err(|e| IngestError::Load(format!("publishing on {topic}: {e}")))?;
                    sent += 1;
                }
            }
        }
        gate.finished(publisher, step + 1);
    }
    Ok(sent)
}

/// What the publishers did.
struct Published {
    slices: Vec<Slice>,
    sent: u64,
    finished_at: Instant,
}

fn spawn_publishers(
    load: &Arc<Load>,
    slices: Vec<Slice>,
    qos: Qos,
    clock: &Arc<AtomicI64>,
    lead: usize,
    rounds: Range<usize>,
) -> JoinHandle<Result<Published, IngestError>> {
    let gate = Arc::new(RoundGate::new(slices.len(), lead));
    let mut tasks = JoinSet::new();
    for (publisher, slice) in slices.into_iter().enumerate() {
        tasks.spawn(publish_slice(
            Arc::clone(load),
            slice,
            qos,
            Arc::clone(clock),
            Arc::clone(&gate),
            publisher,
            rounds.clone(),
        ));
    }
    tokio::spawn(async move {
        let mut done = Vec::new();
        let mut sent = 0;
        let mut failure = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok((slice, count))) => {
                    sent += count;
                    done.push(slice);
                }
                Ok(Err(error)) => {
                    failure.get_or_insert(error);
                }
                Err(error) => {
                    failure.get_or_insert(IngestError::Load(format!(
                        "a publisher task failed: {error}"
                    )));
                }
            }
        }
        let finished_at = Instant::now();
        // Back in box order, for whoever sends next over the same connections.
        done.sort_by_key(|slice| slice.first);
        match failure {
            Some(error) => Err(error),
            None => Ok(Published {
                slices: done,
                sent,
                finished_at,
            }),
        }
    })
}

/// Deals the connections to the publishers, sends the load's warm-up rounds over them, untimed,
/// and gives the publishers' slices back with the number of readings sent. The first reading
/// of every device is what a target pays once (a new series in the database, a device's first
/// rule state); a district's gateway has long paid it, so the timed phase starts after it.
async fn send_warmup(
    options: &IngestOptions,
    load: &Arc<Load>,
    connections: Vec<Connection>,
    clock: &Arc<AtomicI64>,
) -> Result<(Vec<Slice>, u64), IngestError> {
    let slices = slices(connections, options.publishers);
    if load.warmup == 0 {
        return Ok((slices, 0));
    }
    let (qos, lead) = (options.qos, options.round_lead);
    let published = spawn_publishers(load, slices, qos, clock, lead, 0..load.warmup)
        .await
        .map_err(|e| IngestError::Load(format!("the warm-up publishers failed: {e}")))??;
    Ok((published.slices, published.sent))
}

/// Waits (up to `MQTT_TIMEOUT` each) for the QoS 1 acknowledgements, then disconnects cleanly;
/// returns the publishes never acknowledged.
async fn close_connections(connections: impl IntoIterator<Item = Connection>) -> u64 {
    let mut unacknowledged = 0;
    for connection in connections {
        if connection.in_flight() > 0
            && connection
                .wait_in_flight_below(1, MQTT_TIMEOUT)
                .await
                .is_err()
        {
            unacknowledged += connection.in_flight();
        }
        connection.disconnect().await;
    }
    unacknowledged
}

fn seconds_between(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

fn rate(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// Counts the relayed telemetry messages and notes when the last one arrived.
#[derive(Debug, Default)]
struct RelayCounter {
    count: AtomicU64,
    /// Nanoseconds after the counter's base instant.
    last_ns: AtomicU64,
}

/// Phase A.
async fn phase_mosquitto(
    options: &IngestOptions,
    prepared: &Prepared,
    boxes: &[BoxIdentity],
    dir: &Path,
) -> Result<RelayResult, IngestError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "# Written by `simulator bench ingest`: a plain relay, no limits.\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence false\n\
             max_connections -1\n\
             max_queued_messages 10000000\n\
             max_inflight_messages 0\n\
             set_tcp_nodelay true\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n"
        ),
    )
    .map_err(io(format!("write {}", config.display())))?;
    let mut mosquitto = Service::spawn(
        "mosquitto",
        &options.mosquitto_bin,
        &["-c".to_owned(), config.display().to_string()],
        dir,
        "install it with `apt-get install mosquitto`, or pass --mosquitto-bin",
    )?;
    let outcome = async {
        wait_listening(&mut mosquitto, addr).await?;
        tracing::info!(%addr, "mosquitto listening");
        relay_load(options, prepared, boxes, addr, &mut mosquitto).await
    }
    .await;
    mosquitto.stop().await;
    outcome
}

async fn relay_load(
    options: &IngestOptions,
    prepared: &Prepared,
    boxes: &[BoxIdentity],
    addr: SocketAddr,
    mosquitto: &mut Service,
) -> Result<RelayResult, IngestError> {
    let counter = Arc::new(RelayCounter::default());
    let base = Instant::now();
    let on_publish = {
        let counter = Arc::clone(&counter);
        move |publish: &Publish<'_>, at: Instant| {
            if publish.topic.ends_with(b"/telemetry") {
                counter.count.fetch_add(1, Ordering::Relaxed);
                let ns = at.saturating_duration_since(base).as_nanos() as u64;
                counter.last_ns.fetch_max(ns, Ordering::Relaxed);
            }
        }
    };
    let subscriber = Subscriber::start(
        addr,
        "bench-relay-counter",
        TELEMETRY_FILTER,
        0,
        MQTT_TIMEOUT,
        on_publish,
    )
    .await
    .map_err(|e| IngestError::Load(format!("the relay subscriber on mosquitto {addr}: {e}")))?;
    let connections = connect_boxes(addr, boxes, prepared.load.boxes.len()).await?;
    tracing::info!(
        boxes = connections.len(),
        "boxes connected to mosquitto; sending the load"
    );
    let clock = Arc::new(AtomicI64::new(prepared.start_ms));
    let (slices, warmup_sent) = send_warmup(options, &prepared.load, connections, &clock).await?;
    let mut tick = tokio::time::interval(RELAY_POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut last_count, mut last_change) = (0, Instant::now());
    while counter.count.load(Ordering::Relaxed) < warmup_sent {
        tick.tick().await;
        let count = counter.count.load(Ordering::Relaxed);
        if count != last_count {
            (last_count, last_change) = (count, Instant::now());
        }
        if let Some(error) = mosquitto.died("during the warm-up") {
            let _ = subscriber.stop().await;
            return Err(error);
        }
        if last_change.elapsed() >= options.stall_timeout {
            let _ = subscriber.stop().await;
            return Err(IngestError::Load(format!(
                "mosquitto relayed {count} of the {warmup_sent} warm-up readings"
            )));
        }
    }
    // Every warm-up reading arrived and nothing else is in flight: count from zero.
    counter.count.store(0, Ordering::Relaxed);
    counter.last_ns.store(0, Ordering::Relaxed);
    let broker_pid = mosquitto.child.id().map(|p| p.to_string());
    let broker_cpu = || broker_pid.as_deref().and_then(proc_cpu_seconds);
    let (broker_cpu_start, load_cpu_start) = (broker_cpu(), proc_cpu_seconds("self"));
    let started = Instant::now();
    let mut publishers = spawn_publishers(
        &prepared.load,
        slices,
        options.qos,
        &clock,
        options.round_lead,
        prepared.load.warmup..prepared.load.rounds.len(),
    );
    let mut published: Option<Published> = None;
    let (mut last_count, mut last_change) = (0, Instant::now());
    let complete = loop {
        tick.tick().await;
        if published.is_none() && publishers.is_finished() {
            let outcome = (&mut publishers)
                .await
                .map_err(|e| IngestError::Load(format!("the publishers failed: {e}")))
                .and_then(|result| result);
            match outcome {
                Ok(done) => published = Some(done),
                Err(error) => {
                    let tail = mosquitto.tail();
                    let _ = subscriber.stop().await;
                    return Err(IngestError::Load(format!(
                        "{error}; mosquitto's log ends:\n{tail}"
                    )));
                }
            }
        }
        let count = counter.count.load(Ordering::Relaxed);
        if count != last_count {
            (last_count, last_change) = (count, Instant::now());
        }
        if published.as_ref().is_some_and(|p| count >= p.sent) {
            break true;
        }
        if let Some(error) = mosquitto.died("during the load") {
            publishers.abort();
            let _ = subscriber.stop().await;
            return Err(error);
        }
        if subscriber.is_finished() {
            publishers.abort();
            let why = subscriber
                .stop()
                .await
                .err()
                .map_or_else(|| "it stopped".to_owned(), |e| e.to_string());
            return Err(IngestError::Load(format!(
                "the relay subscriber lost mosquitto: {why}; mosquitto's log ends:\n{}",
                mosquitto.tail()
            )));
        }
        if last_change.elapsed() >= options.stall_timeout {
            tracing::warn!(
                received = count,
                sent = ?published.as_ref().map(|p| p.sent),
                "mosquitto relayed nothing for {:?}; giving up",
                options.stall_timeout
            );
            break false;
        }
    };
    let Some(published) = published else {
        publishers.abort();
        let _ = subscriber.stop().await;
        return Err(IngestError::Load(format!(
            "the publishers made no progress for {:?} against mosquitto; its log ends:\n{}",
            options.stall_timeout,
            mosquitto.tail()
        )));
    };
    let received = counter.count.load(Ordering::Relaxed);
    let broker_cpu_seconds = cpu_between(broker_cpu_start, broker_cpu());
    let load_cpu_seconds = cpu_between(load_cpu_start, proc_cpu_seconds("self"));
    let last = base + Duration::from_nanos(counter.last_ns.load(Ordering::Relaxed));
    let seconds = seconds_between(started, last);
    let unacknowledged =
        close_connections(published.slices.into_iter().flat_map(|s| s.connections)).await;
    if let Err(error) = subscriber.stop().await {
        tracing::warn!(%error, "the relay subscriber ended with an error");
    }
    let result = RelayResult {
        sent: published.sent,
        received,
        lost: published.sent.saturating_sub(received),
        send_seconds: seconds_between(started, published.finished_at),
        seconds,
        rate_per_s: rate(received, seconds),
        complete,
        unacknowledged,
        broker_cpu_seconds,
        load_cpu_seconds,
    };
    tracing::info!(
        sent = result.sent,
        received = result.received,
        seconds = format!("{:.3}", result.seconds),
        rate = format!("{:.0}/s", result.rate_per_s),
        "mosquitto phase done"
    );
    Ok(result)
}

/// The counters of one `/metrics` scrape.
#[derive(Debug, Clone, Default, PartialEq)]
struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut samples = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.rsplit_once(char::is_whitespace) else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let key = key.trim();
            let (name, labels) = match key.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (key, BTreeMap::new()),
            };
            samples.push((name.to_owned(), labels, value));
        }
        Scrape { samples }
    }

    /// The sum of a counter over all its label sets.
    fn total(&self, name: &str) -> u64 {
        self.samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, _, v)| *v as u64)
            .sum()
    }

    /// A counter by the value of one label (non-zero entries only).
    fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for (n, labels, value) in &self.samples {
            if n == name && *value > 0.0 {
                let key = labels.get(label).cloned().unwrap_or_default();
                *out.entry(key).or_insert(0) += *value as u64;
            }
        }
        out
    }

    /// Readings accepted or rejected.
    fn handled(&self) -> u64 {
        self.total("gateway_readings_accepted_total")
            + self.total("gateway_messages_rejected_total")
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let Some(end) = after.find('"') else { break };
        labels.insert(
            name.trim_start_matches(',').trim().to_owned(),
            after[..end].to_owned(),
        );
        rest = &after[end + 1..];
    }
    labels
}

/// Reads the gateway's `/metrics`.
struct MetricsClient {
    client: reqwest::Client,
    url: String,
}

impl MetricsClient {
    fn new(http: SocketAddr) -> Result<MetricsClient, IngestError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| IngestError::Gateway(format!("cannot build the HTTP client: {e}")))?;
        Ok(MetricsClient {
            client,
            url: format!("http://{http}/metrics"),
        })
    }

    async fn read(&self) -> Result<Scrape, IngestError> {
        self.scrape().await.map_err(IngestError::Gateway)
    }

    async fn scrape(&self) -> Result<Scrape, String> {
        let response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("GET {}: {e}", self.url))?;
        if !status.is_success() {
            return Err(format!("GET {}: {status}: {text}", self.url));
        }
        Ok(Scrape::parse(&text))
    }
}

/// One alert event on the gateway's alerts topic (`LiveEvent::Alert` as JSON).
#[derive(Debug, Deserialize)]
struct AlertEvent {
    #[serde(rename = "type")]
    event: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    rule_id: String,
    #[serde(default)]
    kind: String,
}

/// An alert of a probe's device, as the alerts subscriber saw it.
#[derive(Debug)]
struct AlertSeen {
    rule_id: String,
    firing: bool,
    at: Instant,
}

/// What the probes share.
#[derive(Clone)]
struct ProbeShared {
    qos: Qos,
    clock: Arc<AtomicI64>,
    sent: Arc<AtomicU64>,
    stop: CancellationToken,
    interval: Duration,
}

#[derive(Debug, Default)]
struct ProbeTotals {
    readings: u64,
    latencies: Vec<Duration>,
    timeouts: u64,
    resolve_timeouts: u64,
}

struct Probe {
    spec: ProbeSpec,
    connection: Connection,
    alerts: mpsc::UnboundedReceiver<AlertSeen>,
    seq: u64,
    last_ts: i64,
}

impl Probe {
    /// Publishes the next reading (faulty or clean) at the load's event time; returns when it
    /// was sent.
    async fn send(&mut self, faulty: bool, shared: &ProbeShared) -> Result<Instant, IngestError> {
        self.seq += 1;
        self.last_ts = shared.clock.load(Ordering::Relaxed).max(self.last_ts + 1);
        let payload = self.spec.reading(faulty, self.last_ts, self.seq);
        let sent_at = Instant::now();
        publish(&mut self.connection, shared.qos, &self.spec.topic, &payload)
            .await
            .map_err(|e| {
                IngestError::Load(format!("probe {} publishing: {e}", self.spec.device_id))
            })?;
        shared.sent.fetch_add(1, Ordering::Relaxed);
        Ok(sent_at)
    }

    /// Waits until `deadline` for the device's `device_fault` alert to fire (or resolve).
    async fn alert(&mut self, firing: bool, deadline: Instant) -> Option<Instant> {
        loop {
            match tokio::time::timeout_at(deadline, self.alerts.recv()).await {
                Ok(Some(seen)) if seen.rule_id == FAULT_RULE && seen.firing == firing => {
                    return Some(seen.at)
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

/// One probe's loop: fault → `firing` (timed) → clean → `resolved`, every `interval`, from
/// `offset` after the start until stopped.
async fn run_probe(
    mut probe: Probe,
    shared: ProbeShared,
    offset: Duration,
) -> Result<(ProbeTotals, Connection), IngestError> {
    let mut totals = ProbeTotals::default();
    let mut next = Instant::now() + offset;
    loop {
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            () = tokio::time::sleep_until(next) => {}
        }
        next = (next + shared.interval).max(Instant::now());
        // Alerts that came after an earlier deadline.
        while probe.alerts.try_recv().is_ok() {}
        let sent_at = probe.send(true, &shared).await?;
        totals.readings += 1;
        match probe.alert(true, sent_at + FIRE_DEADLINE).await {
            Some(at) => totals.latencies.push(at.saturating_duration_since(sent_at)),
            None => totals.timeouts += 1,
        }
        probe.send(false, &shared).await?;
        totals.readings += 1;
        if probe
            .alert(false, Instant::now() + RESOLVE_DEADLINE)
            .await
            .is_none()
        {
            totals.resolve_timeouts += 1;
        }
    }
    Ok((totals, probe.connection))
}

fn spawn_probes(
    probes: Vec<Probe>,
    shared: &ProbeShared,
) -> JoinHandle<Result<(ProbeTotals, Vec<Connection>), IngestError>> {
    let mut tasks = JoinSet::new();
    let count = probes.len().max(1) as u32;
    for (index, probe) in probes.into_iter().enumerate() {
        let offset = shared.interval / count * index as u32;
        tasks.spawn(run_probe(probe, shared.clone(), offset));
    }
    tokio::spawn(async move {
        let mut totals = ProbeTotals::default();
        let mut connections = Vec::new();
        let mut failure = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok((probe, connection))) => {
                    totals.readings += probe.readings;
                    totals.latencies.extend(probe.latencies);
                    totals.timeouts += probe.timeouts;
                    totals.resolve_timeouts += probe.resolve_timeouts;
                    connections.push(connection);
                }
                Ok(Err(error)) => {
                    failure.get_or_insert(error);
                }
                Err(error) => {
                    failure
                        .get_or_insert(IngestError::Load(format!("a probe task failed: {error}")));
                }
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok((totals, connections)),
        }
    })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

fn latency_result(totals: &ProbeTotals, options: &IngestOptions, other: u64) -> LatencyResult {
    let mut sorted: Vec<f64> = totals
        .latencies
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    sorted.sort_by(f64::total_cmp);
    LatencyResult {
        probes: options.probes,
        probe_interval_ms: options.probe_interval.as_millis() as u64,
        samples: sorted.len() as u64,
        timeouts: totals.timeouts,
        resolve_timeouts: totals.resolve_timeouts,
        p50_ms: percentile(&sorted, 50.0),
        p90_ms: percentile(&sorted, 90.0),
        p99_ms: percentile(&sorted, 99.0),
        max_ms: sorted.last().copied(),
        other_alerts: other,
    }
}

/// The broker log the gateway gets: its default (8 segments of 32 MiB) unless the whole load
/// needs more, so that no message is lost while ingest catches up.
fn broker_log(load: &Load, boxes: usize) -> (usize, usize) {
    const SEGMENT: usize = 32 << 20;
    const DEFAULT_SEGMENTS: usize = 8;
    // Topic, framing and rumqttd's own per-message overhead: about 200 bytes.
    let messages = (load.messages + load.warmup_messages) as usize;
    let bytes =
        (load.payload_bytes + load.warmup_payload_bytes) as usize + (messages + boxes) * 200;
    let needed = (bytes * 3 / 2).div_ceil(SEGMENT) + 1;
    (SEGMENT, needed.max(DEFAULT_SEGMENTS))
}

/// Phase B with its sink: starts VictoriaMetrics (unless `--no-sink`) and the gateway.
async fn phase_gateway(
    options: &IngestOptions,
    prepared: &Prepared,
    boxes: &[BoxIdentity],
    dir: &Path,
) -> Result<(GatewayResult, LatencyResult), IngestError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let mut sink = None;
    if options.sink {
        let port = free_port()?;
        let storage = dir.join("victoria-metrics-data");
        let mut vm = Service::spawn(
            "victoria-metrics",
            &options.victoria_metrics_bin,
            &[
                format!("-httpListenAddr=127.0.0.1:{port}"),
                format!("-storageDataPath={}", storage.display()),
                // The simulated winter lies in the past: keep it rather than drop it as too old.
                "-retentionPeriod=100y".to_owned(),
                "-loggerLevel=ERROR".to_owned(),
            ],
            dir,
            "install it with `apt-get install victoria-metrics`, pass --victoria-metrics-bin, or run with --no-sink",
        )?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if let Err(error) = wait_listening(&mut vm, addr).await {
            vm.stop().await;
            return Err(error);
        }
        tracing::info!(%addr, "victoria-metrics listening (the gateway's InfluxDB sink)");
        sink = Some((vm, format!("http://{addr}")));
    }
    let registry_dir = dir.join("registry");
    std::fs::create_dir_all(&registry_dir)
        .map_err(io(format!("create {}", registry_dir.display())))?;
    for (name, text) in registry::csv_files_with_boxes(
        &prepared.fleet,
        &prepared.boxes,
        prepared.households_per_technician,
        options.seed,
    ) {
        let path = registry_dir.join(name);
        std::fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
    }
    let total_boxes = prepared.boxes.len();
    let settings = GatewaySettings {
        binary: options.gateway_bin.clone(),
        dir: dir.to_path_buf(),
        rules: None,
        registry: Some(registry_dir),
        lateness: Duration::ZERO,
        tick: Duration::from_millis(50),
        max_connections: total_boxes + 100,
        log_filter: options.gateway_log.clone(),
        influx_url: sink.as_ref().map(|(_, url)| url.clone()),
        broker_log: Some(broker_log(&prepared.load, total_boxes)),
        // Connection set-up is not timed: no rate limit on it.
        next_connection_delay: Some(Duration::ZERO),
    };
    let outcome = match GatewayProcess::start(&settings).await {
        Ok(mut gateway) => {
            tracing::info!(mqtt = %gateway.mqtt, http = %gateway.http, "gateway started");
            let sink_pid = sink
                .as_ref()
                .and_then(|(vm, _)| vm.child.id())
                .map(|p| p.to_string());
            let outcome =
                measure_gateway(options, prepared, boxes, &settings, &mut gateway, sink_pid).await;
            let outcome = outcome.map_err(|error| match error {
                IngestError::Gateway(text) | IngestError::Load(text) => IngestError::Gateway(
                    format!("{text}; the gateway's log ends:\n{}", gateway.log_tail(20)),
                ),
                other => other,
            });
            gateway.stop().await;
            outcome
        }
        Err(error) => Err(IngestError::Bench(error)),
    };
    if let Some((mut vm, _)) = sink {
        if let Some(error) = vm.died("while the gateway wrote to it") {
            tracing::warn!(%error, "the sink's server died: its figures count write failures and drops");
        }
        vm.stop().await;
    }
    outcome
}

async fn measure_gateway(
    options: &IngestOptions,
    prepared: &Prepared,
    boxes: &[BoxIdentity],
    settings: &GatewaySettings,
    gateway: &mut GatewayProcess,
    sink_pid: Option<String>,
) -> Result<(GatewayResult, LatencyResult), IngestError> {
    let metrics = MetricsClient::new(gateway.http)?;
    let pid = gateway.pid().map(|p| p.to_string());
    let rss = || pid.as_deref().and_then(|p| proc_status_kib(p, "VmRSS"));
    // The registry is imported before the ready line: this is the gateway with the fleet's
    // registry and no connection.
    let rss_started_kib = rss();

    // The alerts subscriber routes each probe device's alerts to its probe.
    let mut routes = HashMap::new();
    let mut receivers = Vec::new();
    for probe in &prepared.probes {
        let (tx, rx) = mpsc::unbounded_channel();
        routes.insert(probe.device_id.clone(), tx);
        receivers.push(rx);
    }
    let other_alerts = Arc::new(AtomicU64::new(0));
    let on_alert = {
        let other_alerts = Arc::clone(&other_alerts);
        move |publish: &Publish<'_>, at: Instant| {
            let Ok(event) = serde_json::from_slice::<AlertEvent>(publish.payload) else {
                return;
            };
            if event.event != "alert" {
                return;
            }
            match routes.get(&event.device_id) {
                Some(tx) => {
                    let _ = tx.send(AlertSeen {
                        rule_id: event.rule_id,
                        firing: event.kind == "firing",
                        at,
                    });
                }
                None => {
                    other_alerts.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    };
    let alerts = Subscriber::start(
        gateway.mqtt,
        "bench-alerts",
        ALERTS_FILTER,
        0,
        MQTT_TIMEOUT,
        on_alert,
    )
    .await
    .map_err(|e| IngestError::Gateway(format!("the alerts subscriber: {e}")))?;

    let total_boxes = boxes.len();
    let mut connections = connect_boxes(gateway.mqtt, boxes, total_boxes).await?;
    let probe_connections = connections.split_off(prepared.load.boxes.len());
    // Every box announced itself: wait until ingest took in all those statuses, so the timed
    // phase starts with an idle gateway.
    let statuses = total_boxes as u64;
    let wait_start = Instant::now();
    let mut tick = tokio::time::interval(GATEWAY_POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let baseline = loop {
        tick.tick().await;
        let now = metrics.read().await?;
        if now.total("gateway_mqtt_messages_in_total") >= statuses {
            break now;
        }
        if let Some(status) = gateway.exited() {
            return Err(IngestError::Gateway(format!(
                "the gateway exited ({status}) while the boxes connected"
            )));
        }
        if wait_start.elapsed() >= options.stall_timeout {
            return Err(IngestError::Gateway(format!(
                "ingest took in {} of {statuses} box statuses within {:?}",
                now.total("gateway_mqtt_messages_in_total"),
                options.stall_timeout
            )));
        }
    };
    let rss_connected_kib = rss();
    tracing::info!(
        boxes = total_boxes,
        "boxes connected to the gateway and their statuses taken in; sending the load"
    );

    let clock = Arc::new(AtomicI64::new(prepared.start_ms));
    let (slices, warmup_sent) = send_warmup(options, &prepared.load, connections, &clock).await?;
    // The warm-up is over when ingest has handled it and the sink has written it (the
    // database has created every device's series).
    let baseline = if warmup_sent > 0 {
        let written_before = baseline.total("gateway_influx_points_written_total");
        let sink = settings.influx_url.is_some();
        let (mut last_progress, mut last_change) = ((0, 0), Instant::now());
        loop {
            tick.tick().await;
            let now = metrics.read().await?;
            let handled = now.handled().saturating_sub(baseline.handled());
            let written = now
                .total("gateway_influx_points_written_total")
                .saturating_sub(written_before);
            if handled >= warmup_sent
                && (!sink
                    || (written >= warmup_sent && now.total("gateway_influx_buffered_points") == 0))
            {
                break now;
            }
            if (handled, written) != last_progress {
                (last_progress, last_change) = ((handled, written), Instant::now());
            }
            if let Some(status) = gateway.exited() {
                return Err(IngestError::Gateway(format!(
                    "the gateway exited ({status}) during the warm-up"
                )));
            }
            if last_change.elapsed() >= options.stall_timeout {
                return Err(IngestError::Gateway(format!(
                    "of {warmup_sent} warm-up readings the gateway handled {handled} and its \
                     sink wrote {written} within {:?}",
                    options.stall_timeout
                )));
            }
        }
    } else {
        baseline
    };
    let shared = ProbeShared {
        qos: options.qos,
        clock: Arc::clone(&clock),
        sent: Arc::new(AtomicU64::new(0)),
        stop: CancellationToken::new(),
        interval: options.probe_interval,
    };
    let probes: Vec<Probe> = prepared
        .probes
        .iter()
        .cloned()
        .zip(probe_connections)
        .zip(receivers)
        .map(|((spec, connection), alerts)| Probe {
            spec,
            connection,
            alerts,
            // As the agent and the world: a run starts its sequence at its start time in µs.
            seq: (prepared.start_ms.max(0) as u64).saturating_mul(1000),
            last_ts: prepared.start_ms - prepared.interval_ms,
        })
        .collect();
    let base_handled = baseline.handled();
    let base_accepted = baseline.total("gateway_readings_accepted_total");
    let base_rejected = baseline.by_label("gateway_messages_rejected_total", "reason");
    let base_alerts = baseline.total("gateway_alerts_fired_total");
    let base_alerts_by_rule = baseline.by_label("gateway_alerts_fired_total", "rule");

    let cpu = || {
        (
            pid.as_deref().and_then(proc_cpu_seconds),
            sink_pid.as_deref().and_then(proc_cpu_seconds),
            proc_cpu_seconds("self"),
        )
    };
    let cpu_start = cpu();
    let started = Instant::now();
    let mut probe_task = spawn_probes(probes, &shared);
    let mut publishers = spawn_publishers(
        &prepared.load,
        slices,
        options.qos,
        &clock,
        options.round_lead,
        prepared.load.warmup..prepared.load.rounds.len(),
    );
    let mut published: Option<Published> = None;
    let (mut last_handled, mut last_change) = (0u64, Instant::now());
    let mut handled;
    // The end of the timed phase: the first poll after the publishers finished that finds
    // every reading sent so far (load, and probes up to the moment before the poll) handled.
    let done = loop {
        tick.tick().await;
        let probe_sent = shared.sent.load(Ordering::Relaxed);
        let now = metrics.read().await?;
        let at = Instant::now();
        handled = now.handled().saturating_sub(base_handled);
        if handled != last_handled {
            (last_handled, last_change) = (handled, at);
        }
        if let Some(status) = gateway.exited() {
            publishers.abort();
            probe_task.abort();
            return Err(IngestError::Gateway(format!(
                "the gateway exited ({status}) during the load"
            )));
        }
        if published.is_none() && publishers.is_finished() {
            let outcome = (&mut publishers)
                .await
                .map_err(|e| IngestError::Load(format!("the publishers failed: {e}")))
                .and_then(|result| result);
            match outcome {
                Ok(outcome) => published = Some(outcome),
                Err(error) => {
                    probe_task.abort();
                    return Err(error);
                }
            }
        }
        if !prepared.probes.is_empty() && probe_task.is_finished() {
            // The probes stop only when told: they failed. (With none, the task ends at once.)
            publishers.abort();
            let why = match (&mut probe_task).await {
                Ok(Err(error)) => error.to_string(),
                Ok(Ok(_)) => "they stopped early".to_owned(),
                Err(error) => error.to_string(),
            };
            return Err(IngestError::Load(format!(
                "the latency probes failed: {why}"
            )));
        }
        if published
            .as_ref()
            .is_some_and(|p| handled >= p.sent + probe_sent)
        {
            break Some((at, handled));
        }
        if at.saturating_duration_since(last_change) >= options.stall_timeout {
            tracing::warn!(
                handled,
                sent = ?published.as_ref().map(|p| p.sent),
                probe_readings = probe_sent,
                "the gateway handled nothing for {:?}; giving up",
                options.stall_timeout
            );
            break None;
        }
    };
    let cpu_end = cpu();
    // Stop the probes (each finishes its cycle) and collect what they measured.
    shared.stop.cancel();
    let probe_outcome =
        match tokio::time::timeout(FIRE_DEADLINE + RESOLVE_DEADLINE * 2, &mut probe_task).await {
            Ok(joined) => joined
                .map_err(|e| IngestError::Load(format!("the probes failed: {e}")))
                .and_then(|result| result)?,
            Err(_) => {
                probe_task.abort();
                return Err(IngestError::Load(
                    "the probes did not stop within 80 s".to_owned(),
                ));
            }
        };
    let Some(published) = published else {
        publishers.abort();
        return Err(IngestError::Gateway(format!(
            "the publishers made no progress for {:?} (the gateway handled {handled} readings)",
            options.stall_timeout
        )));
    };
    let (probe_totals, probe_connections) = probe_outcome;
    let expected = published.sent + probe_totals.readings;
    let (seconds, handled_in_time) = done.map_or((0.0, handled), |(at, count)| {
        (seconds_between(started, at), count)
    });
    tracing::info!(
        handled = handled_in_time,
        seconds = format!("{seconds:.3}"),
        complete = done.is_some(),
        "gateway phase: load handled"
    );
    // The probes' last readings, sent after the timed phase, must be handled too.
    if done.is_some() {
        let since = Instant::now();
        loop {
            let now = metrics.read().await?;
            if now.handled().saturating_sub(base_handled) >= expected
                || since.elapsed() >= options.stall_timeout
            {
                break;
            }
            tick.tick().await;
        }
    }
    let load_end = Instant::now();

    // The sink: wait until the written count stops rising.
    let mut last = metrics.read().await?;
    let sink = if settings.influx_url.is_some() {
        let mut written = last.total("gateway_influx_points_written_total");
        let mut still_since = Instant::now();
        let mut poll = tokio::time::interval(Duration::from_millis(100));
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            poll.tick().await;
            last = metrics.read().await?;
            let now = last.total("gateway_influx_points_written_total");
            if now != written {
                (written, still_since) = (now, Instant::now());
            }
            if still_since.elapsed() >= SINK_SETTLE
                && last.total("gateway_influx_buffered_points") == 0
            {
                break;
            }
            if load_end.elapsed() >= options.stall_timeout {
                tracing::warn!(
                    "the sink was still writing {:?} after the load",
                    options.stall_timeout
                );
                break;
            }
        }
        Some(SinkResult {
            points_written: written,
            points_dropped: last.by_label("gateway_influx_points_dropped_total", "reason"),
            write_failures: last.total("gateway_influx_write_failures_total"),
            settle_seconds: seconds_between(load_end, still_since),
            points_buffered: last.total("gateway_influx_buffered_points"),
        })
    } else {
        None
    };
    let rss_kib = rss();
    let hwm_kib = pid.as_deref().and_then(|p| proc_status_kib(p, "VmHWM"));

    let unacknowledged = close_connections(
        published
            .slices
            .into_iter()
            .flat_map(|s| s.connections)
            .chain(probe_connections),
    )
    .await;
    if let Err(error) = alerts.stop().await {
        tracing::warn!(%error, "the alerts subscriber ended with an error");
    }
    let mut rejected = last.by_label("gateway_messages_rejected_total", "reason");
    for (reason, before) in base_rejected {
        if let Some(count) = rejected.get_mut(&reason) {
            *count = count.saturating_sub(before);
        }
    }
    rejected.retain(|_, count| *count > 0);
    let handled_final = last.handled().saturating_sub(base_handled);
    let result = GatewayResult {
        sent: published.sent,
        probe_readings: probe_totals.readings,
        handled: handled_final,
        accepted: last
            .total("gateway_readings_accepted_total")
            .saturating_sub(base_accepted),
        rejected,
        handled_in_time,
        missing: expected.saturating_sub(handled_final),
        complete: done.is_some() && handled_final >= expected,
        send_seconds: seconds_between(started, published.finished_at),
        seconds,
        rate_per_s: if done.is_some() {
            rate(handled_in_time, seconds)
        } else {
            0.0
        },
        poll_interval_ms: GATEWAY_POLL.as_millis() as u64,
        messages_in: last.total("gateway_mqtt_messages_in_total"),
        broker_messages_lost: last.total("gateway_broker_messages_lost_total"),
        alerts_fired: last
            .total("gateway_alerts_fired_total")
            .saturating_sub(base_alerts),
        alerts_by_rule: last
            .by_label("gateway_alerts_fired_total", "rule")
            .into_iter()
            .map(|(rule, count)| {
                let before = base_alerts_by_rule.get(&rule).copied().unwrap_or(0);
                (rule, count.saturating_sub(before))
            })
            .filter(|(_, count)| *count > 0)
            .collect(),
        sink,
        devices_held: options.devices + options.probes,
        boxes_connected: total_boxes,
        rss_started_kib,
        rss_connected_kib,
        rss_kib,
        hwm_kib,
        broker_log_capacity_bytes: settings
            .broker_log
            .map_or(0, |(size, segments)| (size * (segments + 1)) as u64),
        unacknowledged,
        cpu_seconds: cpu_between(cpu_start.0, cpu_end.0),
        sink_server_cpu_seconds: cpu_between(cpu_start.1, cpu_end.1),
        load_cpu_seconds: cpu_between(cpu_start.2, cpu_end.2),
    };
    let latency = latency_result(&probe_totals, options, other_alerts.load(Ordering::Relaxed));
    Ok((result, latency))
}

/// Runs the ingest bench: phase A (mosquitto), then phase B (the gateway).
pub async fn run_ingest(options: IngestOptions) -> Result<IngestReport, IngestError> {
    if options.devices == 0 {
        return Err(IngestError::Config("devices must be at least 1".into()));
    }
    if options.rounds == 0 {
        return Err(IngestError::Config("rounds must be at least 1".into()));
    }
    if options.devices_per_box == 0 {
        return Err(IngestError::Config(
            "devices per box must be at least 1".into(),
        ));
    }
    if options.publishers == 0 {
        return Err(IngestError::Config("publishers must be at least 1".into()));
    }
    if options.probes > 0 && options.probe_interval.is_zero() {
        return Err(IngestError::Config(
            "the probe interval must be above 0".into(),
        ));
    }
    if !options.gateway_bin.is_file() {
        return Err(BenchError::GatewayMissing(options.gateway_bin.clone()).into());
    }
    let load_average_start = load_average();

    let prepare_start = Instant::now();
    let prepared = prepare(&options)?;
    tracing::info!(
        devices = options.devices,
        boxes = prepared.load.boxes.len(),
        probes = options.probes,
        rounds = options.rounds,
        readings = prepared.load.messages,
        seconds = format!("{:.1}", prepare_start.elapsed().as_secs_f64()),
        "load built"
    );
    // One socket per box's connection (load and probes), in this process and in the broker,
    // which inherits the limit.
    raise_open_files(prepared.boxes.len() as u64 + 512)?;
    let boxes: Vec<BoxIdentity> = prepared
        .boxes
        .iter()
        .map(|group| group.identity.clone())
        .collect();

    let (work_dir, temporary) =
        super::work_dir_or_temporary(options.work_dir.as_ref(), "ingest", options.seed);
    if work_dir
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        return Err(IngestError::Config(format!(
            "the work folder {} is not empty (a gateway database there would carry old state)",
            work_dir.display()
        )));
    }
    std::fs::create_dir_all(&work_dir).map_err(io(format!("create {}", work_dir.display())))?;

    let outcome = async {
        let mosquitto =
            phase_mosquitto(&options, &prepared, &boxes, &work_dir.join("mosquitto")).await?;
        let (gateway, latency) =
            phase_gateway(&options, &prepared, &boxes, &work_dir.join("gateway")).await?;
        Ok::<_, IngestError>((mosquitto, gateway, latency))
    }
    .await;
    let (mosquitto, gateway, latency) = match outcome {
        Ok(figures) => figures,
        Err(error) => {
            tracing::info!(dir = %work_dir.display(), "bench files kept");
            return Err(error);
        }
    };
    let ratio = (mosquitto.rate_per_s > 0.0 && gateway.rate_per_s > 0.0)
        .then(|| gateway.rate_per_s / mosquitto.rate_per_s);
    let load = &prepared.load;
    let report = IngestReport {
        devices: options.devices,
        devices_per_box: options.devices_per_box,
        boxes: load.boxes.len(),
        rounds: options.rounds,
        warmup_rounds: options.warmup_rounds,
        qos: options.qos.level(),
        publishers: options.publishers,
        round_lead: options.round_lead,
        seed: options.seed,
        telemetry_interval_s: prepared.interval_ms as f64 / 1000.0,
        messages: load.messages,
        payload_bytes_mean: load.payload_bytes as f64 / load.messages.max(1) as f64,
        mosquitto,
        gateway,
        ratio,
        latency,
        load_generator_hwm_kib: proc_status_kib("self", "VmHWM"),
        load_average_start,
        load_average_end: load_average(),
        work_dir: work_dir.display().to_string(),
    };
    if temporary && !options.keep_work_dir {
        let _ = std::fs::remove_dir_all(&work_dir);
    } else {
        tracing::info!(dir = %work_dir.display(), "bench files kept");
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_proc_and_only_grows() {
        let before = proc_cpu_seconds("self").expect("this process's CPU time");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = proc_cpu_seconds("self").expect("this process's CPU time");
        assert!(before >= 0.0 && after >= before, "{before} then {after}");
        assert_eq!(cpu_between(Some(2.0), Some(1.5)), Some(0.0));
        assert_eq!(cpu_between(None, Some(1.5)), None);
        assert_eq!(proc_cpu_seconds("no-such-process"), None);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_publisher_waits_for_the_slowest_within_the_lead() {
        let gate = Arc::new(RoundGate::new(3, 1));
        // Rounds 0 and 1 may start at once: the slowest has finished 0 rounds, lead 1.
        gate.wait_to_start(0).await;
        gate.wait_to_start(1).await;
        gate.finished(0, 2);
        gate.finished(1, 1);
        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.wait_to_start(2).await }
        });
        // On this one-thread runtime the task runs to its first wait when we yield.
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "publisher 2 has finished no round yet"
        );
        gate.finished(2, 1);
        waiting
            .await
            .expect("released once every publisher finished round 1");

        // A publisher that stopped (finished or failed) holds nobody back.
        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.wait_to_start(5).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        for publisher in 0..3 {
            gate.finished(publisher, usize::MAX);
        }
        waiting
            .await
            .expect("released when every publisher stopped");
    }

    #[tokio::test]
    async fn zero_devices_per_box_is_refused() {
        let mut options = IngestOptions::new(10, PathBuf::from("gateway")).expect("options");
        options.devices_per_box = 0;
        let error = run_ingest(options).await.expect_err("refused");
        assert!(
            matches!(error, IngestError::Config(ref text) if text.contains("per box")),
            "{error}"
        );
    }

    #[test]
    fn qos_parses() {
        assert_eq!("0".parse::<Qos>(), Ok(Qos::AtMostOnce));
        assert_eq!("1".parse::<Qos>(), Ok(Qos::AtLeastOnce));
        assert!("2".parse::<Qos>().is_err());
    }

    #[test]
    fn metrics_text_is_read_by_name_and_label() {
        let text = "# HELP gateway_readings_accepted_total x\n\
                    # TYPE gateway_readings_accepted_total counter\n\
                    gateway_readings_accepted_total 120\n\
                    gateway_messages_rejected_total{reason=\"malformed\"} 3\n\
                    gateway_messages_rejected_total{reason=\"out_of_range\"} 2\n\
                    gateway_messages_rejected_total{reason=\"bad_topic\"} 0\n\
                    gateway_alerts_fired_total{rule=\"device_fault\",severity=\"major\"} 7\n";
        let scrape = Scrape::parse(text);
        assert_eq!(scrape.total("gateway_readings_accepted_total"), 120);
        assert_eq!(scrape.handled(), 125);
        assert_eq!(
            scrape.by_label("gateway_messages_rejected_total", "reason"),
            BTreeMap::from([("malformed".to_owned(), 3), ("out_of_range".to_owned(), 2)])
        );
        assert_eq!(
            scrape.by_label("gateway_alerts_fired_total", "rule"),
            BTreeMap::from([("device_fault".to_owned(), 7)])
        );
        assert_eq!(scrape.total("missing_total"), 0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[4.0], 99.0), Some(4.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn connections_are_dealt_in_contiguous_slices() {
        let dealt = deal((0..10).collect(), 8);
        assert_eq!(dealt.len(), 5, "two each");
        assert_eq!(dealt[4], (8, vec![8, 9]));
        let dealt = deal((0..3).collect::<Vec<i32>>(), 8);
        assert_eq!(dealt, vec![(0, vec![0]), (1, vec![1]), (2, vec![2])]);
        assert!(deal(Vec::<i32>::new(), 8).is_empty());
        let dealt = deal((0..5000).collect::<Vec<i32>>(), 8);
        assert_eq!(dealt.iter().map(|(_, c)| c.len()).sum::<usize>(), 5000);
        assert_eq!(dealt[7].0, 4375);
    }

    #[test]
    fn grouping_devices_into_boxes_keeps_every_reading_and_topic() {
        let prepare_with = |per_box: usize| {
            let mut options = IngestOptions::new(90, PathBuf::from("gateway")).expect("options");
            options.devices_per_box = per_box;
            options.rounds = 3;
            options.probes = 4;
            prepare(&options).expect("prepared")
        };
        let single = prepare_with(1);
        let grouped = prepare_with(4);
        let (a, b) = (&single.load, &grouped.load);
        assert_eq!(a.boxes, (0..90).map(|h| vec![h]).collect::<Vec<_>>());
        assert_eq!(a.messages, b.messages, "the same readings");
        assert_eq!(a.rounds, b.rounds);
        assert_eq!(a.topics, b.topics, "each device on its own topic");
        assert!(
            b.boxes.len() < 90 && b.boxes.len() >= 23,
            "{}",
            b.boxes.len()
        );
        let mut served: Vec<usize> = b.boxes.iter().flatten().copied().collect();
        served.sort_unstable();
        assert_eq!(served, (0..90).collect::<Vec<_>>(), "every device once");
        // The load's boxes, then one box per probe device.
        assert_eq!(grouped.boxes.len(), b.boxes.len() + 4);
        for (group, households) in grouped.boxes.iter().zip(&b.boxes) {
            assert_eq!(&group.households, households);
            for &h in households {
                assert!(b.topics[h].starts_with(&group.identity.topic_prefix()));
            }
        }
        for (offset, group) in grouped.boxes[b.boxes.len()..].iter().enumerate() {
            assert_eq!(group.households, vec![90 + offset]);
            assert_eq!(group.identity.devices.len(), 1);
        }
        // What the publishers send: every reading of a round once, box by box.
        let sent: usize = b
            .boxes
            .iter()
            .flatten()
            .map(|&h| {
                b.rounds[b.warmup..]
                    .iter()
                    .map(|round| round[h].len())
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(sent as u64, b.messages, "timed readings");
        assert_eq!(b.rounds.len(), b.warmup + 3, "warm-up rounds come first");
        let warm: usize = b.rounds[..b.warmup].iter().flatten().map(Vec::len).sum();
        assert_eq!(warm as u64, b.warmup_messages);
        assert!(b.warmup_messages > 0);
    }

    #[test]
    fn the_broker_log_grows_only_for_loads_larger_than_its_default() {
        let small = Load {
            topics: Vec::new(),
            boxes: Vec::new(),
            rounds: Vec::new(),
            round_ts: Vec::new(),
            warmup: 0,
            messages: 20_000,
            payload_bytes: 20_000 * 600,
            warmup_messages: 0,
            warmup_payload_bytes: 0,
        };
        assert_eq!(broker_log(&small, 5_000), (32 << 20, 8));
        let large = Load {
            messages: 500_000,
            payload_bytes: 500_000 * 600,
            ..small
        };
        let (size, segments) = broker_log(&large, 100_000);
        assert!(size * segments >= 500_000 * 800, "{segments} segments");
    }

    #[test]
    fn probe_readings_carry_a_sensor_fault_that_the_default_pack_fires_on() {
        let profiles = shipped_profiles().expect("profiles");
        let fleet = fleet::generate(8, 3, &profiles).expect("fleet");
        let climate = Climate::yanqing_winter(3);
        let start_ms = 1_767_542_400_000;
        for spec in &fleet {
            let probe = probe_spec(spec, &climate, start_ms).expect("probe");
            assert_eq!(probe.fault.category, FaultCategory::SensorFault);
            let faulty =
                wire::Telemetry::from_json(&probe.reading(true, start_ms, 5)).expect("telemetry");
            faulty.validate(start_ms, 0).expect("valid");
            assert_eq!(
                faulty.fault.map(|f| f.category),
                Some(FaultCategory::SensorFault)
            );
            let clean = wire::Telemetry::from_json(&probe.reading(false, start_ms + 1, 6))
                .expect("telemetry");
            clean.validate(start_ms + 1, 0).expect("valid");
            assert_eq!(clean.fault, None);
            assert_eq!(clean.value(wire::values::FAULT_CODE), Some(0.0));
        }
    }
}
