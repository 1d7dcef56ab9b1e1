//! The agent's self-health: per-device poll counters by error kind and the `unreachable` state,
//! and the report published on `heating/v1/{township}/{agent_id}/health`.
//!
//! A report (JSON, `v: 1`, every `health.interval`):
//! ```json
//! {"v":1,"agent_id":"box-1","ts_ms":1796000000000,"uptime_s":3600,
//!  "polls":{"ok":360,"failed":2,"errors":{"timeout":2}},
//!  "devices":{"yq-0001":{"state":"ok","polls_ok":360,"polls_failed":2,"errors":{"timeout":2},
//!             "consecutive_failures":0,"last_ok_ms":1796000000000,"breaker":"closed",
//!             "interval_ms":10000}},
//!  "buses":{"rs485-1":{"utilisation":0.04,"busy_s":144.0,"requests":7200,"timeouts":2,
//!           "port_opens":1,"gap_ms":4.011}},
//!  "queue":{"depth":0,"bytes":1200,"segments":1,"oldest_age_s":null,"appended":360,
//!           "acked":360,"thinned":0,"dropped":0,"torn":0,"write_errors":0},
//!  "mqtt":{"connected":true,"published":371,"bytes_sent":190000,"reconnects":0,"restamped":0,
//!         "unsynced":0,"readings_sent":360,"reading_bytes":188640,"bytes_per_reading":524.0}}
//! ```
//! A device is `unreachable` after `polling.unreachable_after` failed cycles in a row (the
//! agent itself is online: that is `status`), `ok` after a successful cycle, `unknown` before
//! its first cycle; its circuit `breaker` opens at the same count ([`crate::bus::Breaker`]) and
//! `interval_ms` is its current poll period (adaptive polling). A bus's `utilisation` is the
//! share of the time since the previous report that it carried a transaction (request sent
//! until response or timeout); `busy_s`, `requests` and `timeouts` count since start.
//! `bytes_per_reading` is what one reading costs the uplink at the MQTT level: the PUBLISH
//! packets of every reading handed to the broker (`reading_bytes`: fixed header, topic, packet
//! id and payload; a reading resent after a reconnect counts again) over their number
//! (`readings_sent`), `null` before the first; TCP/IP and TLS overhead come on top.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;
use wire::DeviceId;

use crate::bus::{utilisation, BreakerState, BusLine};
use crate::modbus::DeviceError;
use crate::queue::QueueStats;

/// Live counters of one device, shared by its poller and the health report.
#[derive(Debug)]
pub struct DeviceHealth {
    pub id: DeviceId,
    polls_ok: AtomicU64,
    polls_failed: AtomicU64,
    errors: [AtomicU64; DeviceError::KINDS.len()],
    consecutive_failures: AtomicU32,
    unreachable: AtomicBool,
    last_ok_ms: AtomicI64,
    breaker: AtomicU8,
    interval_ms: AtomicU64,
}

/// A device's state as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    Unknown,
    Ok,
    Unreachable,
}

impl DeviceHealth {
    pub fn new(id: DeviceId) -> DeviceHealth {
        DeviceHealth {
            id,
            polls_ok: AtomicU64::new(0),
            polls_failed: AtomicU64::new(0),
            errors: Default::default(),
            consecutive_failures: AtomicU32::new(0),
            unreachable: AtomicBool::new(false),
            last_ok_ms: AtomicI64::new(0),
            breaker: AtomicU8::new(BreakerState::Closed.as_u8()),
            interval_ms: AtomicU64::new(0),
        }
    }

    /// Records the device's circuit breaker state.
    pub fn set_breaker(&self, state: BreakerState) {
        self.breaker.store(state.as_u8(), Ordering::Relaxed);
    }

    pub fn breaker(&self) -> BreakerState {
        BreakerState::from_u8(self.breaker.load(Ordering::Relaxed))
    }

    /// Records the device's current poll period.
    pub fn set_interval(&self, period: Duration) {
        let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
        self.interval_ms.store(ms, Ordering::Relaxed);
    }

    /// Counts an error (of a failed cycle or of one block of a good cycle).
    pub fn count_error(&self, error: &DeviceError) {
        if let Some(index) = DeviceError::KINDS.iter().position(|k| *k == error.kind()) {
            self.errors[index].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A cycle succeeded. Returns true when the device was unreachable until now.
    pub fn cycle_ok(&self, now_ms: i64) -> bool {
        self.polls_ok.fetch_add(1, Ordering::Relaxed);
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.last_ok_ms.store(now_ms, Ordering::Relaxed);
        self.unreachable.swap(false, Ordering::Relaxed)
    }

    /// A cycle failed. Returns the failures in a row and whether the device just became
    /// unreachable (`unreachable_after` reached).
    pub fn cycle_failed(&self, error: &DeviceError, unreachable_after: u32) -> (u32, bool) {
        self.polls_failed.fetch_add(1, Ordering::Relaxed);
        self.count_error(error);
        let failures = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        let became =
            failures >= unreachable_after && !self.unreachable.swap(true, Ordering::Relaxed);
        (failures, became)
    }

    pub fn is_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> DeviceState {
        if self.is_unreachable() {
            DeviceState::Unreachable
        } else if self.polls_ok.load(Ordering::Relaxed) > 0 {
            DeviceState::Ok
        } else {
            DeviceState::Unknown
        }
    }

    pub fn figures(&self) -> DeviceFigures {
        DeviceFigures {
            state: self.state(),
            polls_ok: self.polls_ok.load(Ordering::Relaxed),
            polls_failed: self.polls_failed.load(Ordering::Relaxed),
            errors: self.errors_by_kind(),
            consecutive_failures: self.consecutive_failures.load(Ordering::Relaxed),
            last_ok_ms: Some(self.last_ok_ms.load(Ordering::Relaxed)).filter(|ms| *ms > 0),
            breaker: self.breaker(),
            interval_ms: self.interval_ms.load(Ordering::Relaxed),
        }
    }

    fn errors_by_kind(&self) -> BTreeMap<&'static str, u64> {
        DeviceError::KINDS
            .iter()
            .zip(&self.errors)
            .map(|(kind, count)| (*kind, count.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Agent-wide MQTT counters.
#[derive(Debug, Default)]
pub struct MqttCounters {
    pub published: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub reconnects: AtomicU64,
    pub connected: AtomicBool,
    /// Readings whose `ts_ms` was re-stamped on the way out (taken before the clock was
    /// trusted).
    pub restamped: AtomicU64,
    /// Readings sent `synced: false` (their boot's clock was never trusted).
    pub unsynced: AtomicU64,
    /// Readings handed to the broker (a reading resent after a reconnect counts again).
    pub readings_sent: AtomicU64,
    /// MQTT PUBLISH packet bytes of those readings.
    pub reading_bytes: AtomicU64,
}

impl MqttCounters {
    /// A reading was handed to the broker as a PUBLISH packet of `packet_bytes`.
    pub fn count_reading(&self, packet_bytes: u64) {
        self.readings_sent.fetch_add(1, Ordering::Relaxed);
        self.reading_bytes
            .fetch_add(packet_bytes, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceFigures {
    pub state: DeviceState,
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub consecutive_failures: u32,
    pub last_ok_ms: Option<i64>,
    /// The device's circuit breaker.
    pub breaker: BreakerState,
    /// The current poll period, milliseconds.
    pub interval_ms: u64,
}

/// One RS-485 bus in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BusFigures {
    /// Share of the time since the previous report the bus carried a transaction, 0..=1.
    pub utilisation: f64,
    /// Time the bus carried a transaction since start, seconds.
    pub busy_s: f64,
    pub requests: u64,
    /// Requests no slave answered in time.
    pub timeouts: u64,
    /// Times the serial port was opened.
    pub port_opens: u64,
    /// Silence kept between two frames, milliseconds.
    pub gap_ms: f64,
}

/// Measures each bus's utilisation over the window between two reports.
#[derive(Debug)]
pub struct BusMeter {
    lines: Vec<(Arc<BusLine>, Duration, Instant)>,
}

impl BusMeter {
    pub fn new(lines: Vec<Arc<BusLine>>, now: Instant) -> BusMeter {
        BusMeter {
            lines: lines
                .into_iter()
                .map(|line| {
                    let busy = line.counters().busy;
                    (line, busy, now)
                })
                .collect(),
        }
    }

    /// Every bus's figures, the utilisation over the time since the previous call.
    pub fn figures(&mut self, now: Instant) -> BTreeMap<String, BusFigures> {
        let mut figures = BTreeMap::new();
        for (line, busy_before, since) in &mut self.lines {
            let counters = line.counters();
            let share = utilisation(
                *busy_before,
                counters.busy,
                now.saturating_duration_since(*since),
            );
            *busy_before = counters.busy;
            *since = now;
            figures.insert(
                line.name.clone(),
                BusFigures {
                    utilisation: (share * 10_000.0).round() / 10_000.0,
                    busy_s: counters.busy.as_secs_f64(),
                    requests: counters.requests,
                    timeouts: counters.timeouts,
                    port_opens: counters.opens,
                    gap_ms: line.gap.as_micros() as f64 / 1000.0,
                },
            );
        }
        figures
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PollFigures {
    pub ok: u64,
    pub failed: u64,
    /// Errors by kind over every device (failed cycles and failed blocks of good cycles).
    pub errors: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueFigures {
    /// Readings waiting for the broker's acknowledgement.
    pub depth: u64,
    pub bytes: u64,
    pub segments: usize,
    /// Age of the oldest unacknowledged reading (event time), seconds.
    pub oldest_age_s: Option<f64>,
    #[serde(flatten)]
    pub stats: QueueStats,
    /// Readings that could not be written to disk (and were lost).
    pub write_errors: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MqttFigures {
    pub connected: bool,
    pub published: u64,
    /// Topic and payload bytes of every publish handed to the broker.
    pub bytes_sent: u64,
    pub reconnects: u64,
    /// Readings re-stamped from the monotonic offset on the way out ([`crate::clock`]).
    pub restamped: u64,
    /// Readings sent `synced: false`.
    pub unsynced: u64,
    /// Readings handed to the broker (resends count again).
    pub readings_sent: u64,
    /// MQTT PUBLISH packet bytes of those readings.
    pub reading_bytes: u64,
    /// `reading_bytes / readings_sent` to 0.1 byte; `None` before the first reading.
    pub bytes_per_reading: Option<f64>,
}

impl MqttFigures {
    fn new(mqtt: &MqttCounters) -> MqttFigures {
        let readings_sent = mqtt.readings_sent.load(Ordering::Relaxed);
        let reading_bytes = mqtt.reading_bytes.load(Ordering::Relaxed);
        let bytes_per_reading = (readings_sent > 0)
            .then(|| (reading_bytes as f64 / readings_sent as f64 * 10.0).round() / 10.0);
        MqttFigures {
            connected: mqtt.connected.load(Ordering::Relaxed),
            published: mqtt.published.load(Ordering::Relaxed),
            bytes_sent: mqtt.bytes_sent.load(Ordering::Relaxed),
            reconnects: mqtt.reconnects.load(Ordering::Relaxed),
            restamped: mqtt.restamped.load(Ordering::Relaxed),
            unsynced: mqtt.unsynced.load(Ordering::Relaxed),
            readings_sent,
            reading_bytes,
            bytes_per_reading,
        }
    }
}

/// The health report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthReport {
    pub v: u32,
    pub agent_id: String,
    pub ts_ms: i64,
    pub uptime_s: u64,
    pub polls: PollFigures,
    pub devices: BTreeMap<String, DeviceFigures>,
    /// RS-485 buses by name.
    pub buses: BTreeMap<String, BusFigures>,
    pub queue: QueueFigures,
    pub mqtt: MqttFigures,
    /// The box's own watch ([`crate::guard`]), when it is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guard: Option<GuardFigures>,
}

/// The guard's figures in the health report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuardFigures {
    /// Episodes of the box's rules firing now.
    pub firing: usize,
    /// Whether the local alarm is raised now.
    pub alarm_on: bool,
    /// Episodes raised locally (uplink down long enough) since start.
    pub raised: u64,
    pub cleared: u64,
    pub coil_writes: u64,
    pub coil_failures: u64,
    pub hooks_run: u64,
    pub hook_failures: u64,
    /// Hooks not run because too many were running.
    pub hooks_skipped: u64,
}

impl HealthReport {
    /// Sums the devices' figures into the report.
    pub fn new(
        agent_id: &str,
        ts_ms: i64,
        uptime_s: u64,
        devices: &[std::sync::Arc<DeviceHealth>],
        buses: BTreeMap<String, BusFigures>,
        queue: QueueFigures,
        mqtt: &MqttCounters,
    ) -> HealthReport {
        let mut polls = PollFigures {
            ok: 0,
            failed: 0,
            errors: BTreeMap::new(),
        };
        let mut figures = BTreeMap::new();
        for device in devices {
            let f = device.figures();
            polls.ok += f.polls_ok;
            polls.failed += f.polls_failed;
            for (kind, n) in &f.errors {
                *polls.errors.entry(kind).or_insert(0) += n;
            }
            figures.insert(device.id.to_string(), f);
        }
        HealthReport {
            v: 1,
            agent_id: agent_id.to_owned(),
            ts_ms,
            uptime_s,
            polls,
            devices: figures,
            buses,
            queue,
            mqtt: MqttFigures::new(mqtt),
            guard: None,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_device_becomes_unreachable_after_n_failed_cycles_and_recovers_on_success() {
        let health = DeviceHealth::new(DeviceId::parse("d-1").expect("id"));
        assert_eq!(health.state(), DeviceState::Unknown);
        let timeout = DeviceError::Timeout(Duration::from_millis(500));
        assert_eq!(health.cycle_failed(&timeout, 3), (1, false));
        assert_eq!(health.cycle_failed(&timeout, 3), (2, false));
        assert_eq!(health.cycle_failed(&timeout, 3), (3, true));
        assert_eq!(
            health.cycle_failed(&timeout, 3),
            (4, false),
            "reported once"
        );
        assert_eq!(health.state(), DeviceState::Unreachable);
        assert!(health.cycle_ok(1), "recovery is reported");
        assert_eq!(health.state(), DeviceState::Ok);
        let figures = health.figures();
        assert_eq!(figures.errors.get("timeout"), Some(&4));
        assert_eq!((figures.polls_ok, figures.polls_failed), (1, 4));
    }

    #[test]
    fn the_report_gives_the_mean_bytes_per_reading_on_the_uplink_once_one_was_sent() {
        let mqtt = MqttCounters::default();
        let report = |mqtt: &MqttCounters| {
            let queue = QueueFigures {
                depth: 0,
                bytes: 0,
                segments: 0,
                oldest_age_s: None,
                stats: QueueStats::default(),
                write_errors: 0,
            };
            HealthReport::new("box-1", 0, 0, &[], BTreeMap::new(), queue, mqtt)
        };
        let before = report(&mqtt);
        assert_eq!(before.mqtt.bytes_per_reading, None);
        let json: serde_json::Value = serde_json::from_slice(&before.to_json()).expect("json");
        assert!(json["mqtt"]["bytes_per_reading"].is_null(), "{json}");
        for bytes in [520, 521, 523] {
            mqtt.count_reading(bytes);
        }
        let after = report(&mqtt);
        assert_eq!(
            (after.mqtt.readings_sent, after.mqtt.reading_bytes),
            (3, 1564)
        );
        assert_eq!(after.mqtt.bytes_per_reading, Some(521.3));
        let json: serde_json::Value = serde_json::from_slice(&after.to_json()).expect("json");
        assert_eq!(json["mqtt"]["bytes_per_reading"], 521.3);
    }

    #[tokio::test]
    async fn a_bus_reports_its_utilisation_over_the_window_since_the_last_report() {
        let line = Arc::new(BusLine::new(
            "rs485-1",
            Duration::from_micros(4011),
            Duration::ZERO,
        ));
        let start = Instant::now();
        let mut meter = BusMeter::new(vec![Arc::clone(&line)], start);
        let ms = Duration::from_millis(1);
        line.transaction(start, start + 250 * ms, false);
        let first = meter.figures(start + 1000 * ms);
        let bus = &first["rs485-1"];
        assert_eq!(bus.utilisation, 0.25);
        assert_eq!((bus.requests, bus.timeouts), (1, 0));
        assert_eq!(bus.gap_ms, 4.011);
        // The next window saw one 500 ms timeout in two seconds; the totals keep growing.
        line.transaction(start + 1500 * ms, start + 2000 * ms, true);
        let second = meter.figures(start + 3000 * ms);
        let bus = &second["rs485-1"];
        assert_eq!(bus.utilisation, 0.25);
        assert_eq!((bus.requests, bus.timeouts), (2, 1));
        assert_eq!(bus.busy_s, 0.75);
        let quiet = meter.figures(start + 4000 * ms);
        assert_eq!(quiet["rs485-1"].utilisation, 0.0);
    }
}
