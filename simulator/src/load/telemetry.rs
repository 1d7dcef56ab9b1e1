//! Readings as an edge agent would publish them: the model's values quantised through the
//! household's register-map profile (encode to registers, decode back, exactly as the agent
//! decodes what it polls), the fault decoded from the fault-code register, and the
//! `wire::Telemetry` JSON written without building the intermediate map of owned strings.

use std::collections::BTreeMap;
use std::sync::Arc;

use edge_agent::profile::{decode, encode, Profile, Register};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use wire::values as v;
use wire::{DeviceKind, Fault, SCHEMA_VERSION};

/// A profile prepared for quantising many readings.
#[derive(Debug, Clone)]
pub struct ProfileCodec {
    profile: Arc<Profile>,
    /// Registers with their canonical (static) name, in profile order.
    registers: Vec<(&'static str, usize)>,
}

impl ProfileCodec {
    pub fn new(profile: Arc<Profile>) -> ProfileCodec {
        let registers = profile
            .registers
            .iter()
            .enumerate()
            .filter_map(|(index, r)| v::lookup(&r.name).map(|c| (c.name, index)))
            .collect();
        ProfileCodec { profile, registers }
    }

    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    fn register(&self, index: usize) -> Option<&Register> {
        self.profile.registers.get(index)
    }

    /// The values the profile has registers for, each through its register's resolution and
    /// range (what a poll would return), in profile order; and the decoded fault.
    pub fn quantise(
        &self,
        values: &BTreeMap<&'static str, f64>,
    ) -> (Vec<(&'static str, f64)>, Option<Fault>) {
        let mut out = Vec::with_capacity(self.registers.len());
        let mut fault = None;
        for &(name, index) in &self.registers {
            let (Some(register), Some(value)) = (self.register(index), values.get(name)) else {
                continue;
            };
            let Some(read) = decode(register, &encode(register, *value)) else {
                continue;
            };
            // Rounding can carry a value at the edge of its canonical range just past it;
            // a real register would show the edge.
            let read = v::lookup(name).map_or(read, |c| read.clamp(c.min, c.max));
            if name == v::FAULT_CODE && read >= 1.0 {
                fault = self.profile.fault(read as u32);
            }
            out.push((name, read));
        }
        (out, fault)
    }
}

struct Values<'a>(&'a [(&'static str, f64)]);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Reading<'a> {
    v: u32,
    device_id: &'a str,
    ts_ms: i64,
    seq: u64,
    profile: &'a str,
    kind: DeviceKind,
    values: Values<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fault: Option<&'a Fault>,
}

/// One reading as `wire::Telemetry` JSON.
pub fn reading_json(
    device_id: &str,
    ts_ms: i64,
    seq: u64,
    profile: &str,
    kind: DeviceKind,
    values: &[(&'static str, f64)],
    fault: Option<&Fault>,
) -> Vec<u8> {
    let reading = Reading {
        v: SCHEMA_VERSION,
        device_id,
        ts_ms,
        seq,
        profile,
        kind,
        values: Values(values),
        fault,
    };
    // Strings, integers and finite numbers always serialise.
    serde_json::to_vec(&reading).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Building;
    use crate::model::{Climate, Degradation, House, HouseParams, SensorFailure};
    use wire::Telemetry;

    fn profiles() -> Vec<Arc<Profile>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let mut profiles = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("profiles folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                profiles.push(Arc::new(Profile::load(&path).expect("profile")));
            }
        }
        profiles
    }

    fn house(profile: &Arc<Profile>) -> House {
        let params = HouseParams {
            kind: profile.kind,
            heat_loss_w_per_k: Building::OldBrick.heat_loss_w_per_k(),
            thermal_capacity_j_per_k: Building::OldBrick.thermal_capacity_j_per_k(),
            setpoint_c: 20.0,
            outdoor_offset_c: 0.0,
            seed: 5,
        };
        House::new(
            params,
            Arc::clone(profile),
            &Climate::constant(-9.0),
            1_768_406_400.0,
        )
    }

    #[test]
    fn readings_are_valid_telemetry_quantised_to_the_registers_of_every_profile() {
        for profile in profiles() {
            let codec = ProfileCodec::new(Arc::clone(&profile));
            let mut house = house(&profile);
            for failure in [None, Some(SensorFailure::Open), Some(SensorFailure::Short)] {
                if let Some(failure) = failure {
                    house.start(Degradation::Sensor(failure));
                }
                house.refresh_noise();
                let raw = house.values();
                let (values, fault) = codec.quantise(&raw);
                let json = reading_json(
                    "yanqing-dongguan-0001",
                    1_768_406_400_000,
                    7,
                    &profile.id,
                    profile.kind,
                    &values,
                    fault.as_ref(),
                );
                let reading = Telemetry::from_json(&json).expect("parses as telemetry");
                reading
                    .validate(1_768_406_400_000, 0)
                    .unwrap_or_else(|e| panic!("{}: {e}", profile.id));
                assert_eq!(reading.values.len(), values.len());
                for (name, value) in &values {
                    let register = profile.register(name).expect("register");
                    let resolution = match register.value_type {
                        edge_agent::profile::ValueType::F32 => raw[name].abs() * 1e-6 + 1e-6,
                        _ => register.scale.abs() / 2.0 + 1e-9,
                    };
                    assert!(
                        (value - raw[name]).abs() <= resolution,
                        "{} {name}: {value} vs {}",
                        profile.id,
                        raw[name]
                    );
                    // serde_json parses floats to within an ulp or so, not always exactly.
                    let parsed = reading.values.get(name).expect("value present");
                    assert!(
                        (parsed - value).abs() <= value.abs() * 1e-12,
                        "{parsed} vs {value}"
                    );
                }
                assert_eq!(reading.fault, fault);
                if failure.is_some() {
                    assert_eq!(
                        reading.fault.map(|f| f.category),
                        Some(wire::FaultCategory::SensorFault),
                        "{}",
                        profile.id
                    );
                }
            }
        }
    }
}
