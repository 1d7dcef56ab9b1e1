//! The agent's self-health: per-device poll counters by error kind and the `unreachable` state,
//! and the report published on `heating/v1/{township}/{agent_id}/health`.
//!
//! A report (JSON, `v: 1`, every `health.interval`):
//! ```json
//! {"v":1,"agent_id":"box-1","ts_ms":1796000000000,"uptime_s":3600,
//!  "polls":{"ok":360,"failed":2,"errors":{"timeout":2}},
//!  "devices":{"yq-0001":{"state":"ok","polls_ok":360,"polls_failed":2,"errors":{"timeout":2},
//!             "consecutive_failures":0,"last_ok_ms":1796000000000}},
//!  "queue":{"depth":0,"bytes":1200,"segments":1,"oldest_age_s":null,"appended":360,
//!           "acked":360,"thinned":0,"dropped":0,"torn":0,"write_errors":0},
//!  "mqtt":{"connected":true,"published":371,"bytes_sent":190000,"reconnects":0,"restamped":0,"unsynced":0}}
//! ```
//! A device is `unreachable` after `polling.unreachable_after` failed cycles in a row (the
//! agent itself is online: that is `status`), `ok` after a successful cycle, `unknown` before
//! its first cycle.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use serde::Serialize;
use wire::DeviceId;

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
        }
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
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceFigures {
    pub state: DeviceState,
    pub polls_ok: u64,
    pub polls_failed: u64,
    pub errors: BTreeMap<&'static str, u64>,
    pub consecutive_failures: u32,
    pub last_ok_ms: Option<i64>,
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
    pub queue: QueueFigures,
    pub mqtt: MqttFigures,
}

impl HealthReport {
    /// Sums the devices' figures into the report.
    pub fn new(
        agent_id: &str,
        ts_ms: i64,
        uptime_s: u64,
        devices: &[std::sync::Arc<DeviceHealth>],
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
            queue,
            mqtt: MqttFigures {
                connected: mqtt.connected.load(Ordering::Relaxed),
                published: mqtt.published.load(Ordering::Relaxed),
                bytes_sent: mqtt.bytes_sent.load(Ordering::Relaxed),
                reconnects: mqtt.reconnects.load(Ordering::Relaxed),
                restamped: mqtt.restamped.load(Ordering::Relaxed),
                unsynced: mqtt.unsynced.load(Ordering::Relaxed),
            },
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
}
