//! The live picture of the fleet: each device's latest reading and connection status, as
//! ingest last saw them, and the devices that published without being registered (refused,
//! listed for installers). Read by the API; written only by ingest.

use std::collections::{HashMap, VecDeque};
use std::sync::RwLock;

use serde::Serialize;
use utoipa::ToSchema;
use wire::{DeviceKind, Fault, Telemetry};

/// Whether a device's edge box is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Online,
    /// The box's last will arrived, or it said goodbye.
    Offline,
}

/// What the gateway knows of one device.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DeviceState {
    pub device_id: String,
    pub township: String,
    pub status: DeviceStatus,
    /// The edge box the device is wired to, from the box's status message.
    pub agent_id: Option<String>,
    /// `heat_pump` or `gas_boiler`.
    #[schema(value_type = Option<String>)]
    pub kind: Option<DeviceKind>,
    pub profile: Option<String>,
    /// Event time of the latest reading.
    pub last_ts_ms: Option<i64>,
    pub last_seq: Option<u64>,
    /// Latest values by name: the canonical values and the brand's vendor values (`x_...`, at
    /// most 32, which the rules never read), as ingest accepted them (a vendor value under a
    /// name beyond the device's first 32 is dropped first: `ingest::vendor`).
    #[schema(value_type = std::collections::BTreeMap<String, f64>)]
    pub values: wire::Values,
    /// The active fault: `code`, shared `category`, brand `text`.
    #[schema(value_type = Option<Object>)]
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
            values: wire::Values::new(),
            fault: None,
            readings: 0,
        }
    }
}

/// The values kept in a device's 24-hour history (what the console charts).
pub const HISTORY_VALUES: [&str; 5] = [
    "indoor_temp_c",
    "flow_temp_c",
    "return_temp_c",
    "outdoor_temp_c",
    "electric_power_w",
];
/// Width of one history bucket.
pub const HISTORY_BUCKET_MS: i64 = 5 * 60_000;
/// How much history is kept.
pub const HISTORY_SPAN_MS: i64 = 24 * 3_600_000;
/// Most buckets a device holds: a day's, and the next one while the oldest gives way.
const HISTORY_BUCKETS: usize = (HISTORY_SPAN_MS / HISTORY_BUCKET_MS) as usize + 1;
/// Most bytes of history one device holds (its buckets; the map entry and key come on top).
pub const HISTORY_BYTES_PER_DEVICE: usize = HISTORY_BUCKETS * std::mem::size_of::<Bucket>();

/// One 5-minute bucket: sums and counts of [`HISTORY_VALUES`], 32 bytes. A bucket's mean is of
/// its first 255 readings of a value (at one reading a minute it gets 5).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Bucket {
    /// Start, in [`HISTORY_BUCKET_MS`] since the Unix epoch.
    index: i32,
    sums: [f32; HISTORY_VALUES.len()],
    counts: [u8; HISTORY_VALUES.len()],
}

impl Bucket {
    fn at(index: i32) -> Bucket {
        Bucket {
            index,
            ..Bucket::default()
        }
    }

    fn start_ms(&self) -> i64 {
        i64::from(self.index) * HISTORY_BUCKET_MS
    }
}

/// The bucket number of an event time (saturating far outside the years the gateway serves).
fn bucket_index(ts_ms: i64) -> i32 {
    let index = ts_ms.div_euclid(HISTORY_BUCKET_MS);
    i32::try_from(index).unwrap_or(if index < 0 { i32::MIN } else { i32::MAX })
}

/// Room for one more bucket, growing the queue by doubling but never past
/// [`HISTORY_BUCKETS`] (a plain `VecDeque` would double 289 to 512).
fn room_for_one(buckets: &mut VecDeque<Bucket>) {
    if buckets.len() < buckets.capacity() {
        return;
    }
    let target = (buckets.capacity() * 2).clamp(4, HISTORY_BUCKETS.max(buckets.len() + 1));
    buckets.reserve_exact(target - buckets.len());
}

/// One point of a device's history: 5-minute means.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct HistoryPoint {
    /// Start of the 5-minute bucket, Unix ms.
    pub ts_ms: i64,
    pub indoor_temp_c: Option<f64>,
    pub flow_temp_c: Option<f64>,
    pub return_temp_c: Option<f64>,
    pub outdoor_temp_c: Option<f64>,
    pub electric_power_w: Option<f64>,
}

/// A device's last 24 hours.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct History {
    pub device_id: String,
    pub points: Vec<HistoryPoint>,
}

/// Most unregistered devices listed; beyond it the one seen least recently gives way.
pub const UNREGISTERED_KEPT: usize = 1_000;

/// A device that published but is not in the registry: refused, and listed so an installer
/// can see a box wired up before its household was imported (or a typo in a device id).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UnregisteredDevice {
    pub device_id: String,
    /// The township of the topic it published on (not trusted: the registry decides).
    pub township: String,
    /// The edge box, when known: the box of the tenant prefix it published under, or the box
    /// whose status listed it.
    pub edge_box: Option<String>,
    /// Gateway clock, Unix ms.
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Messages refused for it.
    pub messages: u64,
}

/// Every device's state, keyed by device id.
#[derive(Debug, Default)]
pub struct Fleet {
    // Hash maps: each reading looks its device up in both, and at 100,000 devices a tree walk
    // compared a score of ids per lookup. Listings sort by id instead.
    devices: RwLock<HashMap<String, DeviceState>>,
    /// At most [`HISTORY_BYTES_PER_DEVICE`] of buckets per device.
    history: RwLock<HashMap<String, VecDeque<Bucket>>>,
    /// Refused devices, at most [`UNREGISTERED_KEPT`].
    unregistered: std::sync::Mutex<HashMap<String, UnregisteredDevice>>,
}

impl Fleet {
    /// Notes a message refused because `device_id` is not registered.
    pub fn unregistered_seen(
        &self,
        device_id: &str,
        township: &str,
        edge_box: Option<&str>,
        now_ms: i64,
    ) {
        let Ok(mut seen) = self.unregistered.lock() else {
            return;
        };
        if let Some(entry) = seen.get_mut(device_id) {
            entry.last_seen_ms = entry.last_seen_ms.max(now_ms);
            entry.messages = entry.messages.saturating_add(1);
            entry.township = township.to_owned();
            if edge_box.is_some() {
                entry.edge_box = edge_box.map(str::to_owned);
            }
            return;
        }
        if seen.len() >= UNREGISTERED_KEPT {
            let stalest = seen
                .values()
                .min_by_key(|d| d.last_seen_ms)
                .map(|d| d.device_id.clone());
            if let Some(stalest) = stalest {
                seen.remove(&stalest);
            }
        }
        seen.insert(
            device_id.to_owned(),
            UnregisteredDevice {
                device_id: device_id.to_owned(),
                township: township.to_owned(),
                edge_box: edge_box.map(str::to_owned),
                first_seen_ms: now_ms,
                last_seen_ms: now_ms,
                messages: 1,
            },
        );
    }

    /// Forgets a device once it is registered.
    pub fn unregistered_resolved(&self, device_id: &str) {
        if let Ok(mut seen) = self.unregistered.lock() {
            seen.remove(device_id);
        }
    }

    /// The refused devices, most recently seen first.
    pub fn unregistered(&self) -> Vec<UnregisteredDevice> {
        let mut list: Vec<UnregisteredDevice> = self
            .unregistered
            .lock()
            .map(|seen| seen.values().cloned().collect())
            .unwrap_or_default();
        list.sort_by(|a, b| {
            b.last_seen_ms
                .cmp(&a.last_seen_ms)
                .then_with(|| a.device_id.cmp(&b.device_id))
        });
        list
    }

    /// Records an accepted reading (the latest by event time wins). Runs once per reading, so
    /// it allocates only for a device it has not seen or a value set that changed.
    pub fn reading(&self, township: &str, reading: &Telemetry) {
        self.remember(reading);
        let Ok(mut devices) = self.devices.write() else {
            return;
        };
        let id = reading.device_id.as_str();
        let state = match devices.get_mut(id) {
            Some(state) => state,
            None => devices
                .entry(id.to_owned())
                .or_insert_with(|| DeviceState::new(id, township)),
        };
        state.readings += 1;
        state.status = DeviceStatus::Online;
        state.kind = Some(reading.kind);
        if state.profile.as_deref() != Some(reading.profile.as_str()) {
            state.profile = Some(reading.profile.clone());
        }
        if state.last_ts_ms.is_none_or(|last| reading.ts_ms >= last) {
            if state.township != township {
                township.clone_into(&mut state.township);
            }
            state.last_ts_ms = Some(reading.ts_ms);
            state.last_seq = Some(reading.seq);
            state.values.clone_from(&reading.values);
            if state.fault != reading.fault {
                state.fault.clone_from(&reading.fault);
            }
        }
    }

    /// Adds a reading to its device's 5-minute history buckets (last 24 h; at most
    /// [`HISTORY_BYTES_PER_DEVICE`]).
    fn remember(&self, reading: &Telemetry) {
        let Ok(mut history) = self.history.write() else {
            return;
        };
        let id = reading.device_id.as_str();
        let buckets = match history.get_mut(id) {
            Some(buckets) => buckets,
            None => history.entry(id.to_owned()).or_default(),
        };
        let index = bucket_index(reading.ts_ms);
        let span = (HISTORY_SPAN_MS / HISTORY_BUCKET_MS) as i32;
        let newest = buckets.back().map_or(i32::MIN, |b| b.index);
        if index < newest.saturating_sub(span) {
            return;
        }
        let position = match buckets.iter().rposition(|b| b.index <= index) {
            Some(i) if buckets[i].index == index => i,
            Some(i) => {
                room_for_one(buckets);
                buckets.insert(i + 1, Bucket::at(index));
                i + 1
            }
            None => {
                room_for_one(buckets);
                buckets.push_front(Bucket::at(index));
                0
            }
        };
        if let Some(bucket) = buckets.get_mut(position) {
            for (slot, name) in HISTORY_VALUES.iter().enumerate() {
                if let Some(value) = reading.value(name) {
                    if bucket.counts[slot] < u8::MAX {
                        bucket.sums[slot] += value as f32;
                        bucket.counts[slot] += 1;
                    }
                }
            }
        }
        let newest = buckets.back().map_or(index, |b| b.index);
        while buckets
            .front()
            .is_some_and(|b| b.index <= newest.saturating_sub(span))
        {
            buckets.pop_front();
        }
    }

    /// A device's last 24 hours as 5-minute means, oldest first.
    pub fn history(&self, device_id: &str) -> Option<History> {
        let history = self.history.read().ok()?;
        let buckets = history.get(device_id)?;
        let mean = |b: &Bucket, slot: usize| {
            (b.counts[slot] > 0).then(|| f64::from(b.sums[slot] / f32::from(b.counts[slot])))
        };
        Some(History {
            device_id: device_id.to_owned(),
            points: buckets
                .iter()
                .map(|b| HistoryPoint {
                    ts_ms: b.start_ms(),
                    indoor_temp_c: mean(b, 0),
                    flow_temp_c: mean(b, 1),
                    return_temp_c: mean(b, 2),
                    outdoor_temp_c: mean(b, 3),
                    electric_power_w: mean(b, 4),
                })
                .collect(),
        })
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
                let mut listed: Vec<DeviceState> = devices
                    .values()
                    .filter(|d| township.is_none_or(|t| d.township == t))
                    .cloned()
                    .collect();
                listed.sort_unstable_by(|a, b| a.device_id.cmp(&b.device_id));
                listed
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ts_ms: i64, indoor: f64) -> Telemetry {
        Telemetry {
            v: 1,
            device_id: wire::DeviceId::parse("d-1").expect("id"),
            ts_ms,
            seq: ts_ms as u64,
            profile: "p".into(),
            kind: DeviceKind::HeatPump,
            values: wire::Values::from([("indoor_temp_c", indoor)]),
            fault: None,
            extra: Default::default(),
        }
    }

    #[test]
    fn history_keeps_five_minute_means_for_24_hours() {
        let fleet = Fleet::default();
        let t0 = 1_796_083_200_000;
        fleet.reading("yanqing", &reading(t0, 18.0));
        fleet.reading("yanqing", &reading(t0 + 60_000, 20.0));
        fleet.reading("yanqing", &reading(t0 + 6 * 60_000, 21.0));
        let history = fleet.history("d-1").expect("history");
        assert_eq!(history.points.len(), 2);
        assert_eq!(history.points[0].indoor_temp_c, Some(19.0));
        assert_eq!(history.points[0].flow_temp_c, None);
        // A day later the old buckets are gone, and late readings older than the span are ignored.
        fleet.reading("yanqing", &reading(t0 + HISTORY_SPAN_MS + 60_000, 17.0));
        fleet.reading("yanqing", &reading(t0 - HISTORY_SPAN_MS, 5.0));
        let history = fleet.history("d-1").expect("history");
        assert_eq!(
            history.points.first().map(|p| p.ts_ms),
            Some(t0 + 5 * 60_000)
        );
        assert_eq!(history.points.len(), 2);
        assert!(fleet.history("unknown").is_none());
    }

    #[test]
    fn a_device_holds_at_most_a_day_of_buckets_in_memory() {
        assert_eq!(std::mem::size_of::<Bucket>(), 32);
        assert_eq!(HISTORY_BYTES_PER_DEVICE, 289 * 32);
        let fleet = Fleet::default();
        let t0 = 1_796_083_200_000;
        // Two days of a reading every ten minutes (every other bucket), then late readings
        // into the gaps of the day kept (buckets 287 to 574 after t0's).
        for tenth in 0..2 * 24 * 6 {
            fleet.reading("yanqing", &reading(t0 + tenth * 600_000, 20.0));
        }
        for gap in 0..144 {
            let late = t0 + (287 + 2 * gap) * HISTORY_BUCKET_MS;
            fleet.reading("yanqing", &reading(late, 20.0));
        }
        let history = fleet.history.read().expect("history");
        let buckets = history.get("d-1").expect("buckets");
        assert_eq!(buckets.len(), 288);
        assert!(
            buckets.capacity() * std::mem::size_of::<Bucket>() <= HISTORY_BYTES_PER_DEVICE,
            "{} buckets of capacity",
            buckets.capacity()
        );
    }

    #[test]
    fn a_bucket_means_its_first_255_readings() {
        let fleet = Fleet::default();
        let t0 = 1_796_083_200_000;
        for n in 0..300 {
            let indoor = if n < 255 { 20.0 } else { 90.0 };
            fleet.reading("yanqing", &reading(t0 + n, indoor));
        }
        let history = fleet.history("d-1").expect("history");
        assert_eq!(history.points.len(), 1);
        assert_eq!(history.points[0].indoor_temp_c, Some(20.0));
    }

    #[test]
    fn the_latest_reading_replaces_values_faults_profile_and_township() {
        let fleet = Fleet::default();
        let t0 = 1_796_083_200_000;
        let mut first = reading(t0, 18.0);
        first.values.insert("flow_temp_c", 40.0);
        first.fault = Some(wire::Fault {
            code: 7,
            category: wire::FaultCategory::SensorFault,
            text: String::new(),
        });
        fleet.reading("yanqing", &first);
        // Same names: values overwritten in place; vendor values are kept beside them.
        let mut same = reading(t0 + 10_000, 19.5);
        same.values.insert("flow_temp_c", 41.0);
        same.values.insert("x_cop", 3.4);
        fleet.reading("yanqing", &same);
        let state = fleet.get("d-1").expect("state");
        assert_eq!(state.values, same.values);
        assert_eq!(state.values.get("x_cop"), Some(3.4));
        assert_eq!(state.fault, None);
        let json = serde_json::to_value(&state).expect("json");
        assert_eq!(json["values"]["x_cop"], 3.4, "{json}");
        // Other names and another profile and township: the old names are gone.
        let mut other = reading(t0 + 20_000, 20.0);
        other.values.insert("water_pressure_bar", 1.4);
        other.profile = "q".into();
        fleet.reading("badaling", &other);
        let state = fleet.get("d-1").expect("state");
        assert_eq!(state.values, other.values);
        assert_eq!(state.profile.as_deref(), Some("q"));
        assert_eq!(state.township, "badaling");
        assert_eq!(state.readings, 3);
        // An older reading counts but does not replace the latest values.
        fleet.reading("yanqing", &first);
        let state = fleet.get("d-1").expect("state");
        assert_eq!(state.values, other.values);
        assert_eq!(state.township, "badaling");
    }

    #[test]
    fn the_listing_is_in_id_order_and_filtered_by_township() {
        let fleet = Fleet::default();
        let t0 = 1_796_083_200_000;
        for (id, township) in [
            ("yq-c", "yanqing"),
            ("yq-a", "badaling"),
            ("yq-b", "yanqing"),
        ] {
            let mut one = reading(t0, 18.0);
            one.device_id = wire::DeviceId::parse(id).expect("id");
            fleet.reading(township, &one);
        }
        let ids =
            |list: Vec<DeviceState>| list.into_iter().map(|d| d.device_id).collect::<Vec<_>>();
        assert_eq!(ids(fleet.list(None)), ["yq-a", "yq-b", "yq-c"]);
        assert_eq!(ids(fleet.list(Some("yanqing"))), ["yq-b", "yq-c"]);
        assert_eq!(fleet.counts(), (3, 3, 0, 0));
    }

    #[test]
    fn the_unregistered_list_is_bounded_and_keeps_the_recent_ones() {
        let fleet = Fleet::default();
        for n in 0..(UNREGISTERED_KEPT as i64 + 500) {
            fleet.unregistered_seen(&format!("fake-{n}"), "yanqing", None, n);
        }
        fleet.unregistered_seen("fake-1499", "sihai", Some("box-x"), 10_000);
        let list = fleet.unregistered();
        assert_eq!(list.len(), UNREGISTERED_KEPT);
        assert_eq!(list[0].device_id, "fake-1499");
        assert_eq!(list[0].messages, 2);
        assert_eq!(list[0].township, "sihai");
        assert_eq!(list[0].edge_box.as_deref(), Some("box-x"));
        assert!(
            list.iter().all(|d| d.device_id != "fake-0"),
            "the stalest gave way"
        );
        fleet.unregistered_resolved("fake-1499");
        assert_eq!(fleet.unregistered().len(), UNREGISTERED_KEPT - 1);
        assert_eq!(fleet.counts().0, 0, "refused devices never enter the fleet");
    }
}
