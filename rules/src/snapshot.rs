//! The engine's state as plain data, so pending timers and active alerts survive a restart and
//! a rule reload.
//!
//! Per-rule state is keyed by rule id (not by position), so a snapshot can be restored under a
//! changed rule set: state of rules that are gone is dropped, new rules start idle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wire::{DeviceId, DeviceKind, Telemetry};

use crate::engine::{DeviceInfo, EngineStats};
use crate::fleet::FleetSnapshot;
use crate::window::FleetBaselines;
use crate::window::SeriesState;

/// The snapshot format this build writes. It reads format 1 too (every later field has a
/// default).
pub const SNAPSHOT_FORMAT: u32 = 2;

/// The state of one rule for one device. Kept small: the engine holds one per device × rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AlertState {
    /// The condition does not hold.
    #[default]
    Idle,
    /// The condition has held since `since_ms` (event time) but not yet for the rule's `for`.
    Pending {
        /// Event time of the reading that first met the condition.
        since_ms: i64,
    },
    /// The alert is active. Its episode id is `{rule_id}:{device_id}:{fired_at_ms}`.
    Firing {
        /// Event time of the firing transition.
        fired_at_ms: i64,
        /// Event time of the first reading of an unbroken run meeting the clear condition.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        clear_since_ms: Option<i64>,
        /// Escalation level (0: the rule's own severity; `i` : its `i`-th escalation).
        #[serde(default, skip_serializing_if = "is_zero")]
        level: u8,
    },
}

fn is_zero(level: &u8) -> bool {
    *level == 0
}

/// Everything the engine knows about one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSnapshot {
    /// The device.
    pub device_id: DeviceId,
    /// Its kind, from its last accepted reading.
    pub kind: DeviceKind,
    /// Sequence number of its last accepted reading.
    pub last_seq: u64,
    /// Event time of its last accepted reading.
    pub last_ts_ms: i64,
    /// State of every rule that is not idle, by rule id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub alerts: BTreeMap<String, AlertState>,
    /// Pending timers of escalation levels, by rule id (index 0 is the first escalation).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub escalation_timers: BTreeMap<String, Vec<Option<i64>>>,
    /// Absence rules whose `when` held at the device's last reading.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guards: Vec<String>,
    /// Newest timestamp received (absence is judged from it); `last_ts_ms` when missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub newest_ts_ms: Option<i64>,
    /// No reading was evaluated yet (all are buffered): `last_seq` means nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub nothing_evaluated: bool,
    /// Readings waiting in the reorder buffer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buffered: Vec<Telemetry>,
    /// Windowed series state, in the layout named by [`Snapshot::series`] and
    /// [`Snapshot::series_held`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<SeriesState>,
    /// The register-map profile of its newest reading, when some rule compares the device
    /// with the units of its profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Its newest own outdoor reading (°C, event time), when some rule estimates a village's
    /// outdoor temperature from its units (`outdoor_estimate()`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outdoor: Option<(f64, i64)>,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub device_id: DeviceId,
    #[serde(flatten)]
    pub info: DeviceInfo,
}

/// The whole engine state. Serialise it with any serde format (the gateway uses JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// [`SNAPSHOT_FORMAT`] when written.
    pub format: u32,
    /// The event-time watermark, if one was ever given.
    pub watermark_ms: Option<i64>,
    /// The counters, so they survive a restart.
    pub stats: EngineStats,
    /// Every device seen, in device id order.
    pub devices: Vec<DeviceSnapshot>,
    /// Keys of the windowed series, in the order of each device's series state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub series: Vec<String>,
    /// Per device kind, the series (positions in `series`, in order) a device state for that
    /// kind holds: the state of a device lists only the series of its kind's rules. A series
    /// state that names no kind (all before this field) holds every series in `series`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub series_held: BTreeMap<DeviceKind, Vec<u16>>,
    /// Registered devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registry: Vec<Registered>,
    /// Fleet correlation state: queued items, groups, suppressed episodes.
    #[serde(default)]
    pub fleet: FleetSnapshot,
    /// The fleet's learned baselines per profile (`fleet_ratio` and friends); devices rejoin
    /// their profile's group with their next reading.
    #[serde(default)]
    pub baselines: FleetBaselines,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_state_stays_compact() {
        // The per device × rule budget is 512 bytes; this is what the engine keeps per pair.
        assert!(std::mem::size_of::<AlertState>() <= 32);
    }

    #[test]
    fn alert_states_serialise_readably() {
        let firing = AlertState::Firing {
            fired_at_ms: 5,
            clear_since_ms: None,
            level: 0,
        };
        let json = serde_json::to_string(&firing).expect("serialises");
        assert_eq!(json, r#"{"state":"firing","fired_at_ms":5}"#);
        assert_eq!(
            serde_json::from_str::<AlertState>(&json).expect("parses"),
            firing
        );
    }
}
