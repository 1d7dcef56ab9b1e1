//! The live picture of the fleet: each device's latest reading and connection status, as
//! ingest last saw them. Read by the API; written only by ingest.

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::Serialize;
use wire::{DeviceKind, Fault, Telemetry};

/// Whether a device's edge box is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Online,
    /// The box's last will arrived, or it said goodbye.
    Offline,
}

/// What the gateway knows of one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceState {
    pub device_id: String,
    pub township: String,
    pub status: DeviceStatus,
    /// The edge box the device is wired to, from the box's status message.
    pub agent_id: Option<String>,
    pub kind: Option<DeviceKind>,
    pub profile: Option<String>,
    /// Event time of the latest reading.
    pub last_ts_ms: Option<i64>,
    pub last_seq: Option<u64>,
    pub values: BTreeMap<String, f64>,
    pub fault: Option<Fault>,
    pub readings: u64,
}

impl DeviceState {
    fn new(device_id: &str, township: &str) -> Self {
        Self {
            device_id: device_id.to_owned(),
            township: township.to_owned(),
            status: DeviceStatus::Online,
            agent_id: None,
            kind: None,
            profile: None,
            last_ts_ms: None,
            last_seq: None,
            values: BTreeMap::new(),
            fault: None,
            readings: 0,
        }
    }
}

/// Every device's state, keyed by device id.
#[derive(Debug, Default)]
pub struct Fleet {
    devices: RwLock<BTreeMap<String, DeviceState>>,
}

impl Fleet {
    /// Records an accepted reading (the latest by event time wins).
    pub fn reading(&self, township: &str, reading: &Telemetry) {
        let Ok(mut devices) = self.devices.write() else {
            return;
        };
        let state = devices
            .entry(reading.device_id.to_string())
            .or_insert_with(|| DeviceState::new(reading.device_id.as_str(), township));
        state.readings += 1;
        state.status = DeviceStatus::Online;
        state.kind = Some(reading.kind);
        state.profile = Some(reading.profile.clone());
        if state.last_ts_ms.is_none_or(|last| reading.ts_ms >= last) {
            state.township = township.to_owned();
            state.last_ts_ms = Some(reading.ts_ms);
            state.last_seq = Some(reading.seq);
            state.values = reading.values.clone();
            state.fault = reading.fault.clone();
        }
    }

    /// Marks the devices of an edge box online or offline.
    pub fn agent_status(
        &self,
        township: &str,
        agent_id: &str,
        devices: &[wire::DeviceId],
        online: bool,
    ) {
        let Ok(mut states) = self.devices.write() else {
            return;
        };
        for device in devices {
            let state = states
                .entry(device.to_string())
                .or_insert_with(|| DeviceState::new(device.as_str(), township));
            state.agent_id = Some(agent_id.to_owned());
            state.status = if online {
                DeviceStatus::Online
            } else {
                DeviceStatus::Offline
            };
        }
    }

    /// The township a device was last seen in.
    pub fn township_of(&self, device_id: &str) -> Option<String> {
        self.devices
            .read()
            .ok()?
            .get(device_id)
            .map(|d| d.township.clone())
    }

    pub fn get(&self, device_id: &str) -> Option<DeviceState> {
        self.devices.read().ok()?.get(device_id).cloned()
    }

    /// All devices, optionally of one township, in id order.
    pub fn list(&self, township: Option<&str>) -> Vec<DeviceState> {
        self.devices
            .read()
            .map(|devices| {
                devices
                    .values()
                    .filter(|d| township.is_none_or(|t| d.township == t))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (devices, online, offline, with an active fault)
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        self.devices
            .read()
            .map(|devices| {
                let online = devices
                    .values()
                    .filter(|d| d.status == DeviceStatus::Online)
                    .count();
                let faulty = devices.values().filter(|d| d.fault.is_some()).count();
                (devices.len(), online, devices.len() - online, faulty)
            })
            .unwrap_or_default()
    }
}
