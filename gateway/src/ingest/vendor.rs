//! The bound on each device's vendor value names ([`VendorNames`]): a reading carries at most
//! [`MAX_VENDOR_VALUES`] vendor values (`x_...`, checked by `wire`), but a box could send 32
//! *new* names in every reading, and each distinct name becomes a field of the history sink (a
//! series in VictoriaMetrics) and an entry of the fleet picture. So each device may use at most
//! [`MAX_VENDOR_VALUES`] distinct vendor names over the life of the gateway process, learned
//! first-come (within one reading, in name order). A vendor value under a name beyond the
//! device's set is dropped from the reading before the fleet picture and the sink see it (the
//! reading, its canonical values and its known vendor values are kept), counted in
//! `gateway_vendor_values_dropped_total` and logged at WARN at most once a minute (the device,
//! the name, and the readings not logged in between).
//!
//! The sets are never reset while the gateway runs: a registry import (re-registering a
//! device) does not reset them, a restart does. A profile whose vendor registers change names
//! therefore takes effect for a device that already uses 32 names after the next restart.
//!
//! Memory: a set exists only for a device with at least one accepted vendor value (accepted
//! readings come only from registered devices), and holds at most [`MAX_VENDOR_VALUES`] shared
//! names; each distinct name is stored once for the whole fleet and only while a set holds it,
//! so the gateway keeps at most 32 short names (of at most 42 bytes) per registered device.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use wire::values::MAX_VENDOR_VALUES;
use wire::Telemetry;

use super::refusals::RefusalLog;

/// The key of the drop log line (one line per minute at most).
const LOG_KEY: &str = "vendor_values_dropped";

/// Each device's vendor value names, at most [`MAX_VENDOR_VALUES`] per device.
#[derive(Debug, Default)]
pub struct VendorNames {
    /// Each device's names, sorted, at most [`MAX_VENDOR_VALUES`].
    devices: HashMap<Box<str>, Vec<Arc<str>>>,
    /// Every name some device's set holds, once: a fleet whose profile maps `x_cop` keeps the
    /// text once. Names are added only when a set takes them, so this is never larger than the
    /// sets together.
    names: HashSet<Arc<str>>,
    /// At most one WARN line a minute for dropped values.
    log: RefusalLog,
}

impl VendorNames {
    /// Holds `reading`'s vendor values to its device's set: a name the set has is kept; a new
    /// name joins the set while it has fewer than [`MAX_VENDOR_VALUES`]; any other is removed
    /// from the reading. Canonical values are never touched. Returns how many values were
    /// removed (logged here, at most one WARN line a minute; counting is the caller's).
    pub fn bound(&mut self, reading: &mut Telemetry) -> usize {
        // Most readings carry no vendor value: nothing to look up, nothing kept.
        if reading.values.canonical().count() == reading.values.len() {
            return 0;
        }
        let device = reading.device_id.as_str();
        let known = match self.devices.get_mut(device) {
            Some(known) => known,
            None => self.devices.entry(device.into()).or_default(),
        };
        let names = &mut self.names;
        let mut dropped = 0usize;
        let mut first_dropped: Option<String> = None;
        reading.values.retain(|name, _| {
            // Canonical names are read by the rules and never bounded here; every other name
            // that passed validation is a vendor name.
            if wire::values::position(name).is_some() {
                return true;
            }
            match known.binary_search_by(|k| (**k).cmp(name)) {
                Ok(_) => true,
                Err(at) if known.len() < MAX_VENDOR_VALUES => {
                    let shared = match names.get(name) {
                        Some(shared) => Arc::clone(shared),
                        None => {
                            let shared: Arc<str> = Arc::from(name);
                            names.insert(Arc::clone(&shared));
                            shared
                        }
                    };
                    known.insert(at, shared);
                    true
                }
                Err(_) => {
                    dropped += 1;
                    if first_dropped.is_none() {
                        first_dropped = Some(name.to_owned());
                    }
                    false
                }
            }
        });
        if let Some(name) = first_dropped {
            match self.log.admit(LOG_KEY, Instant::now()) {
                Some(not_logged) => tracing::warn!(
                    device,
                    name = %name,
                    dropped,
                    known = MAX_VENDOR_VALUES,
                    readings_since_last_line = not_logged,
                    "vendor values dropped: the device already uses as many vendor value names as it may"
                ),
                None => tracing::debug!(device, name = %name, dropped, "vendor values dropped"),
            }
        }
        dropped
    }

    /// The vendor value names `device` may use, sorted (empty if it has sent none).
    pub fn names_of(&self, device: &str) -> Vec<String> {
        self.devices
            .get(device)
            .map(|known| known.iter().map(|name| name.to_string()).collect())
            .unwrap_or_default()
    }

    /// Devices with a set.
    pub fn devices(&self) -> usize {
        self.devices.len()
    }

    /// Distinct names held for the whole fleet (each stored once).
    pub fn distinct_names(&self) -> usize {
        self.names.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    fn reading(device: &str, seq: u64, vendor: &[String]) -> Telemetry {
        let mut values = wire::Values::from([("indoor_temp_c", 19.5), ("flow_temp_c", 40.0)]);
        for (i, name) in vendor.iter().enumerate() {
            values.insert(name, i as f64);
        }
        let reading = Telemetry {
            v: 1,
            device_id: wire::DeviceId::parse(device).expect("id"),
            ts_ms: NOW + seq as i64 * 60_000,
            seq,
            profile: "aurora-ashp".into(),
            kind: wire::DeviceKind::HeatPump,
            values,
            fault: None,
            extra: Default::default(),
        };
        assert_eq!(reading.validate(i64::MAX, i64::MAX), Ok(()));
        reading
    }

    fn names(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("x_v{i:02}")).collect()
    }

    fn vendor_names_of(reading: &Telemetry) -> Vec<String> {
        reading
            .values
            .keys()
            .filter(|name| wire::values::is_vendor_name(name))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_device_keeps_its_first_32_names_and_drops_the_rest() {
        let mut bound = VendorNames::default();
        // 12 names a reading, 40 in all: the 4th reading brings the 33rd to 40th.
        let mut dropped = 0;
        for (seq, range) in [0..12, 12..24, 24..36, 28..40].into_iter().enumerate() {
            let mut r = reading("d-1", seq as u64, &names(range.clone()));
            dropped += bound.bound(&mut r);
            let kept: Vec<String> = names(range.start..range.end.min(32));
            assert_eq!(vendor_names_of(&r), kept, "reading {seq}");
            assert_eq!(r.values.get("indoor_temp_c"), Some(19.5));
            assert_eq!(r.values.get("flow_temp_c"), Some(40.0));
        }
        assert_eq!(dropped, 4 + 8);
        assert_eq!(bound.names_of("d-1"), names(0..32));
        // Known names are still kept; a full set drops every new one.
        let mut r = reading("d-1", 9, &[names(0..2), names(38..40)].concat());
        assert_eq!(bound.bound(&mut r), 2);
        assert_eq!(vendor_names_of(&r), names(0..2));
    }

    #[test]
    fn within_one_reading_the_names_are_taken_in_name_order() {
        let mut bound = VendorNames::default();
        let mut r = reading("d-1", 0, &names(0..30));
        assert_eq!(bound.bound(&mut r), 0);
        // 5 new names, room for 2: the first two by name.
        let mut r = reading(
            "d-1",
            1,
            &["x_e", "x_a", "x_d", "x_b", "x_c"].map(String::from),
        );
        assert_eq!(bound.bound(&mut r), 3);
        assert_eq!(vendor_names_of(&r), ["x_a", "x_b"]);
    }

    #[test]
    fn each_device_has_its_own_set_and_the_fleet_stores_a_name_once() {
        let mut bound = VendorNames::default();
        for device in ["d-1", "d-2", "d-3"] {
            let mut r = reading(device, 0, &names(0..32));
            assert_eq!(bound.bound(&mut r), 0, "{device}");
        }
        let mut r = reading("d-2", 1, &names(32..40));
        assert_eq!(bound.bound(&mut r), 8);
        assert_eq!(
            bound.distinct_names(),
            32,
            "x_v00..x_v31, once for 3 devices"
        );
        // Another device learns names the others could not.
        let mut r = reading("d-4", 0, &names(32..40));
        assert_eq!(bound.bound(&mut r), 0);
        assert_eq!(bound.names_of("d-4"), names(32..40));
        assert_eq!(bound.distinct_names(), 40);
        assert_eq!(bound.devices(), 4);
    }

    #[test]
    fn a_reading_without_vendor_values_costs_no_set() {
        let mut bound = VendorNames::default();
        let mut r = reading("d-1", 0, &[]);
        let before = r.values.clone();
        assert_eq!(bound.bound(&mut r), 0);
        assert_eq!(r.values, before);
        assert_eq!(bound.devices(), 0);
        assert!(bound.names_of("d-1").is_empty());
    }

    #[test]
    fn a_flood_of_new_names_keeps_memory_at_32_names_per_device() {
        let mut bound = VendorNames::default();
        let mut dropped = 0;
        for seq in 0..200u64 {
            let fresh: Vec<String> = (0..32).map(|i| format!("x_s{seq}_{i}")).collect();
            let mut r = reading("d-1", seq, &fresh);
            dropped += bound.bound(&mut r);
            assert_eq!(r.values.get("indoor_temp_c"), Some(19.5));
        }
        assert_eq!(dropped, 199 * 32);
        assert_eq!(bound.names_of("d-1").len(), MAX_VENDOR_VALUES);
        assert_eq!(bound.distinct_names(), MAX_VENDOR_VALUES);
    }
}
