//! The engine's state as plain data, so pending timers and active alerts survive a restart and
//! a rule reload.
//!
//! Per-rule state is keyed by rule id (not by position), so a snapshot can be restored under a
//! changed rule set: state of rules that are gone is dropped, new rules start idle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wire::{DeviceId, DeviceKind};

use crate::engine::EngineStats;

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_FORMAT: u32 = 1;

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
    },
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
        };
        let json = serde_json::to_string(&firing).expect("serialises");
        assert_eq!(json, r#"{"state":"firing","fired_at_ms":5}"#);
        assert_eq!(
            serde_json::from_str::<AlertState>(&json).expect("parses"),
            firing
        );
    }
}
