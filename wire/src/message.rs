//! Message bodies (JSON, schema version 1): telemetry and edge-box status.
//!
//! Unknown fields are kept in `extra` and re-serialised unchanged, so an older gateway passes
//! on what a newer agent sends. Parsing checks shape; [`Telemetry::validate`] checks meaning
//! (ids, plausible ranges, finite numbers) and names the field at fault.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::DeviceId;
use crate::value_map::Values;
use crate::values;

/// The schema version this crate writes. Readers accept any message whose `v` they know.
pub const SCHEMA_VERSION: u32 = 1;

/// The two kinds of heater in the programme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Air-source heat pump (coal to electricity, 煤改电).
    HeatPump,
    /// Gas wall-hung boiler (coal to gas, 煤改气).
    GasBoiler,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::HeatPump => "heat_pump",
            DeviceKind::GasBoiler => "gas_boiler",
        }
    }
}

/// Brand-independent fault categories. A profile maps each brand fault code onto one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FaultCategory {
    WaterFlow,
    HighPressure,
    LowPressure,
    DischargeOverheat,
    CompressorOvercurrent,
    DefrostFailure,
    FreezeProtection,
    SensorFault,
    PowerSupply,
    Communication,
    IgnitionFailure,
    FlameLoss,
    FanFlue,
    Overheat,
    LowWaterPressure,
    GasSupply,
    Other,
}

impl FaultCategory {
    pub const ALL: [FaultCategory; 17] = [
        FaultCategory::WaterFlow,
        FaultCategory::HighPressure,
        FaultCategory::LowPressure,
        FaultCategory::DischargeOverheat,
        FaultCategory::CompressorOvercurrent,
        FaultCategory::DefrostFailure,
        FaultCategory::FreezeProtection,
        FaultCategory::SensorFault,
        FaultCategory::PowerSupply,
        FaultCategory::Communication,
        FaultCategory::IgnitionFailure,
        FaultCategory::FlameLoss,
        FaultCategory::FanFlue,
        FaultCategory::Overheat,
        FaultCategory::LowWaterPressure,
        FaultCategory::GasSupply,
        FaultCategory::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultCategory::WaterFlow => "water_flow",
            FaultCategory::HighPressure => "high_pressure",
            FaultCategory::LowPressure => "low_pressure",
            FaultCategory::DischargeOverheat => "discharge_overheat",
            FaultCategory::CompressorOvercurrent => "compressor_overcurrent",
            FaultCategory::DefrostFailure => "defrost_failure",
            FaultCategory::FreezeProtection => "freeze_protection",
            FaultCategory::SensorFault => "sensor_fault",
            FaultCategory::PowerSupply => "power_supply",
            FaultCategory::Communication => "communication",
            FaultCategory::IgnitionFailure => "ignition_failure",
            FaultCategory::FlameLoss => "flame_loss",
            FaultCategory::FanFlue => "fan_flue",
            FaultCategory::Overheat => "overheat",
            FaultCategory::LowWaterPressure => "low_water_pressure",
            FaultCategory::GasSupply => "gas_supply",
            FaultCategory::Other => "other",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// An active fault as the agent decoded it with the device's profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fault {
    /// The brand's own code, as read from the fault register.
    pub code: u32,
    pub category: FaultCategory,
    /// The brand's text for the code, from the profile (for the technician).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// One poll of one device.
///
/// `Deserialize` is written out (below) instead of derived: with `#[serde(flatten)]` on
/// `extra` the derive first copies the whole message, every value name included, into
/// serde's buffered `Content` and then parses the fields again from that copy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Telemetry {
    /// Schema version.
    pub v: u32,
    pub device_id: DeviceId,
    /// Event time: when the registers were read, Unix milliseconds UTC.
    pub ts_ms: i64,
    /// Per-device sequence number, +1 per published reading, so loss and duplicates show.
    pub seq: u64,
    /// Register-map profile that decoded the values.
    pub profile: String,
    pub kind: DeviceKind,
    /// Canonical values by name (see [`crate::values`]), and at most
    /// [`values::MAX_VENDOR_VALUES`] vendor values (`x_...`, [`values::is_vendor_name`]).
    pub values: Values,
    /// The active fault, if the fault register is non-zero.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Fields this version does not know, kept as they came.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl<'de> Deserialize<'de> for Telemetry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TelemetryVisitor)
    }
}

/// Reads a [`Telemetry`] object in one pass: the known fields by name, anything else into
/// `extra`, as the derive with `flatten` did (same field names, same errors for a missing or
/// repeated field).
struct TelemetryVisitor;

impl<'de> serde::de::Visitor<'de> for TelemetryVisitor {
    type Value = Telemetry;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a telemetry object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Telemetry, A::Error> {
        use serde::de::Error as _;
        fn once<T, E: serde::de::Error>(
            slot: &mut Option<T>,
            name: &'static str,
            value: T,
        ) -> Result<(), E> {
            if slot.replace(value).is_some() {
                return Err(E::duplicate_field(name));
            }
            Ok(())
        }
        let mut v = None;
        let mut device_id = None;
        let mut ts_ms = None;
        let mut seq = None;
        let mut profile = None;
        let mut kind = None;
        let mut values = None;
        let mut fault: Option<Option<Fault>> = None;
        let mut extra = BTreeMap::new();
        while let Some(key) = map.next_key::<TelemetryField>()? {
            match key {
                TelemetryField::V => once(&mut v, "v", map.next_value()?)?,
                TelemetryField::DeviceId => once(&mut device_id, "device_id", map.next_value()?)?,
                TelemetryField::TsMs => once(&mut ts_ms, "ts_ms", map.next_value()?)?,
                TelemetryField::Seq => once(&mut seq, "seq", map.next_value()?)?,
                TelemetryField::Profile => once(&mut profile, "profile", map.next_value()?)?,
                TelemetryField::Kind => once(&mut kind, "kind", map.next_value()?)?,
                TelemetryField::Values => once(&mut values, "values", map.next_value()?)?,
                TelemetryField::Fault => once(&mut fault, "fault", map.next_value()?)?,
                TelemetryField::Other(name) => {
                    extra.insert(name, map.next_value()?);
                }
            }
        }
        Ok(Telemetry {
            v: v.ok_or_else(|| A::Error::missing_field("v"))?,
            device_id: device_id.ok_or_else(|| A::Error::missing_field("device_id"))?,
            ts_ms: ts_ms.ok_or_else(|| A::Error::missing_field("ts_ms"))?,
            seq: seq.ok_or_else(|| A::Error::missing_field("seq"))?,
            profile: profile.ok_or_else(|| A::Error::missing_field("profile"))?,
            kind: kind.ok_or_else(|| A::Error::missing_field("kind"))?,
            values: values.ok_or_else(|| A::Error::missing_field("values"))?,
            fault: fault.flatten(),
            extra,
        })
    }
}

/// A key of a telemetry object: a known field (read without allocating) or another name.
enum TelemetryField {
    V,
    DeviceId,
    TsMs,
    Seq,
    Profile,
    Kind,
    Values,
    Fault,
    Other(String),
}

impl<'de> Deserialize<'de> for TelemetryField {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(TelemetryFieldVisitor)
    }
}

struct TelemetryFieldVisitor;

impl serde::de::Visitor<'_> for TelemetryFieldVisitor {
    type Value = TelemetryField;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<TelemetryField, E> {
        Ok(match name {
            "v" => TelemetryField::V,
            "device_id" => TelemetryField::DeviceId,
            "ts_ms" => TelemetryField::TsMs,
            "seq" => TelemetryField::Seq,
            "profile" => TelemetryField::Profile,
            "kind" => TelemetryField::Kind,
            "values" => TelemetryField::Values,
            "fault" => TelemetryField::Fault,
            other => TelemetryField::Other(other.to_owned()),
        })
    }
}

/// Why a payload was refused. Each variant is a reject reason counted by ingest.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not valid JSON for this message: {0}")]
    Malformed(String),
    #[error("schema version {0} is not supported (this build reads version {SCHEMA_VERSION})")]
    UnsupportedVersion(u32),
    #[error("device_id {in_payload:?} does not match the topic's {in_topic:?}")]
    DeviceMismatch {
        in_payload: String,
        in_topic: String,
    },
    #[error("value {name:?} is neither a canonical value name nor a vendor value name (`x_` and 1 to {} of a-z, 0-9, _)", values::MAX_VENDOR_NAME_LEN)]
    UnknownValue {
        /// The first [`MAX_NAME_SHOWN`] characters of the name.
        name: String,
    },
    #[error(
        "value {name:?} is one vendor value too many: a reading carries at most {max} (`x_...`)"
    )]
    TooManyVendorValues {
        /// The first vendor value past the limit (its first [`MAX_NAME_SHOWN`] characters).
        name: String,
        max: usize,
    },
    #[error("value {name:?} = {value} is outside the plausible range {min}..={max}")]
    OutOfRange {
        name: String,
        value: f64,
        min: f64,
        max: f64,
    },
    #[error("timestamp {ts_ms} is more than {max_skew_ms} ms ahead of the receiver's clock")]
    FutureTimestamp { ts_ms: i64, max_skew_ms: i64 },
    #[error("timestamp {ts_ms} is before 2020-01-01")]
    AncientTimestamp { ts_ms: i64 },
    /// The profile id becomes a label of the device's history: it is held to a short id.
    /// A clock field (`boot_id`, `mono_ms`, `synced`, `restamped`, `sent_mono_ms`: see
    /// [`crate::clock`]) is missing beside the others, of the wrong type or out of bounds.
    #[error("clock field {field}: {reason}")]
    BadClock {
        field: &'static str,
        reason: &'static str,
    },
    /// The `edge_alerts` list (see [`crate::edge_alert`]) is malformed: the receiver drops the
    /// list and keeps the reading.
    #[error("edge_alerts {reason}")]
    BadEdgeAlerts { reason: &'static str },
    #[error("profile {profile:?} is not a profile id (1 to {MAX_PROFILE_LEN} ASCII letters, digits, '-', '_' or '.')")]
    BadProfile {
        /// The first [`MAX_PROFILE_LEN`] characters of what was sent.
        profile: String,
    },
}

/// Longest profile id a reading may carry.
pub const MAX_PROFILE_LEN: usize = 64;

/// Most characters of a refused value name an error repeats.
pub const MAX_NAME_SHOWN: usize = 64;

/// A value name as an error shows it: at most [`MAX_NAME_SHOWN`] characters.
fn shown(name: &str) -> String {
    name.chars().take(MAX_NAME_SHOWN).collect()
}

impl PayloadError {
    /// A short, stable label for metrics (`reason` label of the reject counter).
    pub fn reason(&self) -> &'static str {
        match self {
            PayloadError::Malformed(_) => "malformed",
            PayloadError::UnsupportedVersion(_) => "unsupported_version",
            PayloadError::DeviceMismatch { .. } => "device_mismatch",
            PayloadError::UnknownValue { .. } => "unknown_value",
            PayloadError::TooManyVendorValues { .. } => "too_many_vendor_values",
            PayloadError::OutOfRange { .. } => "out_of_range",
            PayloadError::FutureTimestamp { .. } => "future_timestamp",
            PayloadError::AncientTimestamp { .. } => "ancient_timestamp",
            PayloadError::BadProfile { .. } => "bad_profile",
            PayloadError::BadClock { .. } => "bad_clock",
            PayloadError::BadEdgeAlerts { .. } => "bad_edge_alerts",
        }
    }
}

/// 2020-01-01T00:00:00Z in Unix milliseconds: no reading in this programme is older.
const EPOCH_2020_MS: i64 = 1_577_836_800_000;

impl Telemetry {
    /// Parses a payload. Shape errors only; call [`Telemetry::validate`] for meaning.
    pub fn from_json(payload: &[u8]) -> Result<Self, PayloadError> {
        let message: Telemetry =
            serde_json::from_slice(payload).map_err(|e| PayloadError::Malformed(e.to_string()))?;
        if message.v != SCHEMA_VERSION {
            return Err(PayloadError::UnsupportedVersion(message.v));
        }
        Ok(message)
    }

    /// Checks that every value is a plausible canonical value or one of at most
    /// [`values::MAX_VENDOR_VALUES`] vendor values (`x_...`, finite, magnitude at most
    /// [`values::MAX_VENDOR_MAGNITUDE`]), that the clock fields, if any, are well formed
    /// ([`Telemetry::clock`]), and, unless they say the box did not trust its clock, that the
    /// timestamp is within [`Telemetry::check_ts`]. Any other name is refused.
    pub fn validate(&self, now_ms: i64, max_skew_ms: i64) -> Result<(), PayloadError> {
        let profile_ok = (1..=MAX_PROFILE_LEN).contains(&self.profile.len())
            && self
                .profile
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !profile_ok {
            return Err(PayloadError::BadProfile {
                profile: self.profile.chars().take(MAX_PROFILE_LEN).collect(),
            });
        }
        // A box that says it does not trust its wall clock (`synced: false`) may send any
        // `ts_ms`: the receiver places the reading from its boot id and monotonic time
        // ([`crate::clock`]) and checks the time it arrives at with [`Telemetry::check_ts`].
        let trusted = self.clock()?.is_none_or(|stamp| stamp.synced);
        if trusted {
            self.check_ts(now_ms, max_skew_ms)?;
        }
        let mut vendor_values = 0;
        for (name, value) in &self.values {
            let (min, max) = match values::lookup(name) {
                Some(canonical) => (canonical.min, canonical.max),
                None if values::is_vendor_name(name) => {
                    vendor_values += 1;
                    if vendor_values > values::MAX_VENDOR_VALUES {
                        return Err(PayloadError::TooManyVendorValues {
                            name: shown(name),
                            max: values::MAX_VENDOR_VALUES,
                        });
                    }
                    (-values::MAX_VENDOR_MAGNITUDE, values::MAX_VENDOR_MAGNITUDE)
                }
                None => return Err(PayloadError::UnknownValue { name: shown(name) }),
            };
            // `!(a <= v && v <= b)` also rejects NaN (JSON cannot carry one, but be explicit).
            if !(min <= value && value <= max) {
                return Err(PayloadError::OutOfRange {
                    name: name.to_owned(),
                    value,
                    min,
                    max,
                });
            }
        }
        Ok(())
    }

    /// Checks that `ts_ms` is neither before 2020 nor more than `max_skew_ms` ahead of
    /// `now_ms`.
    pub fn check_ts(&self, now_ms: i64, max_skew_ms: i64) -> Result<(), PayloadError> {
        if self.ts_ms < EPOCH_2020_MS {
            return Err(PayloadError::AncientTimestamp { ts_ms: self.ts_ms });
        }
        if self.ts_ms > now_ms.saturating_add(max_skew_ms) {
            return Err(PayloadError::FutureTimestamp {
                ts_ms: self.ts_ms,
                max_skew_ms,
            });
        }
        Ok(())
    }

    /// Serialises the message as JSON.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and JSON values cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The value of a canonical (or vendor) name, if present.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.values.get(name)
    }
}

/// Whether an edge box is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Online,
    Offline,
}

/// Retained status of an edge box on `heating/v1/{township}/{box_id}/status`. The `offline`
/// variant is the MQTT last will, so it lists the box's devices: the gateway marks exactly
/// those devices offline when the box's connection dies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentStatus {
    pub v: u32,
    pub agent_id: String,
    pub state: AgentState,
    pub devices: Vec<DeviceId>,
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl AgentStatus {
    pub fn new(agent_id: impl Into<String>, state: AgentState, devices: Vec<DeviceId>) -> Self {
        Self {
            v: SCHEMA_VERSION,
            agent_id: agent_id.into(),
            state,
            devices,
            extra: BTreeMap::new(),
        }
    }

    pub fn from_json(payload: &[u8]) -> Result<Self, PayloadError> {
        let message: AgentStatus =
            serde_json::from_slice(payload).map_err(|e| PayloadError::Malformed(e.to_string()))?;
        if message.v != SCHEMA_VERSION {
            return Err(PayloadError::UnsupportedVersion(message.v));
        }
        Ok(message)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    fn sample() -> Telemetry {
        Telemetry {
            v: SCHEMA_VERSION,
            device_id: DeviceId::parse("yq-0001-hp").expect("valid id"),
            ts_ms: NOW,
            seq: 7,
            profile: "aurora-ashp".into(),
            kind: DeviceKind::HeatPump,
            values: Values::from([(values::INDOOR_TEMP_C, 19.5)]),
            fault: Some(Fault {
                code: 3,
                category: FaultCategory::WaterFlow,
                text: "flow switch open".into(),
            }),
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn a_profile_id_is_a_short_plain_id() {
        let mut reading = sample();
        assert_eq!(reading.validate(NOW, 0), Ok(()));
        for bad in ["", "a b", "x\"y", "拼音", &"p".repeat(MAX_PROFILE_LEN + 1)] {
            reading.profile = bad.into();
            let error = reading.validate(NOW, 0).expect_err(bad);
            assert_eq!(error.reason(), "bad_profile");
            if let PayloadError::BadProfile { profile } = error {
                assert!(profile.chars().count() <= MAX_PROFILE_LEN);
            }
        }
        reading.profile = "vendor_x.model-2".into();
        assert_eq!(reading.validate(NOW, 0), Ok(()));
    }

    #[test]
    fn telemetry_round_trips_and_keeps_unknown_fields() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&sample().to_json()).expect("json");
        json["firmware"] = serde_json::json!("2.1.4");
        let bytes = serde_json::to_vec(&json).expect("json");
        let parsed = Telemetry::from_json(&bytes).expect("parses");
        assert_eq!(
            parsed.extra.get("firmware"),
            Some(&serde_json::json!("2.1.4"))
        );
        let again: serde_json::Value = serde_json::from_slice(&parsed.to_json()).expect("json");
        assert_eq!(again, json);
    }

    #[test]
    fn telemetry_parsing_names_a_missing_or_repeated_field_and_reads_escaped_keys() {
        let json = |text: &str| Telemetry::from_json(text.as_bytes());
        let base = r#""device_id":"yq-1","ts_ms":1796000000000,"seq":4,"profile":"p","kind":"heat_pump","values":{"indoor_temp_c":19.5}"#;
        let parsed = json(&format!(r#"{{"v":1,{base},"fault":null}}"#)).expect("parses");
        assert_eq!(parsed.fault, None);
        assert_eq!(parsed.seq, 4);
        assert!(parsed.extra.is_empty());
        // An escaped key is the same key.
        let parsed = json(&format!(r#"{{"v":1,{base}}}"#)).expect("parses");
        assert_eq!(parsed.v, 1);
        let without_seq = base.replace(r#""seq":4,"#, "");
        let missing = json(&format!(r#"{{"v":1,{without_seq}}}"#)).expect_err("no seq");
        assert!(
            missing.to_string().contains("missing field `seq`"),
            "{missing}"
        );
        let twice = json(&format!(r#"{{"v":1,{base},"seq":5}}"#)).expect_err("seq twice");
        assert!(
            twice.to_string().contains("duplicate field `seq`"),
            "{twice}"
        );
        let wrong = json(&format!(r#"{{"v":1,{base},"kind":"stove"}}"#)).expect_err("kind");
        assert!(wrong.to_string().contains("unknown variant"), "{wrong}");
        assert!(json("[1,2]").is_err());
        assert!(json(r#"{"v":1,"values":{"a":"x"}}"#).is_err());
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut t = sample();
        t.values.insert(values::INDOOR_TEMP_C, 500.0);
        assert_eq!(
            t.validate(NOW, 60_000).map_err(|e| e.reason()),
            Err("out_of_range")
        );
        let mut t = sample();
        t.values.insert("room_temp", 20.0);
        assert_eq!(
            t.validate(NOW, 60_000),
            Err(PayloadError::UnknownValue {
                name: "room_temp".into()
            })
        );
        let mut t = sample();
        t.ts_ms = NOW + 3_600_000;
        assert_eq!(
            t.validate(NOW, 60_000).map_err(|e| e.reason()),
            Err("future_timestamp")
        );
        assert!(sample().validate(NOW, 60_000).is_ok());
    }

    #[test]
    fn vendor_values_ride_beside_canonical_ones_within_their_bounds() {
        let mut t = sample();
        t.values.insert("x_cop", 3.2);
        t.values.insert("x_pump_on", 1.0);
        t.values.insert("x_", 0.0);
        assert_eq!(
            t.validate(NOW, 0),
            Err(PayloadError::UnknownValue { name: "x_".into() }),
            "`x_` alone is no vendor name"
        );
        t.values.remove("x_");
        assert_eq!(t.validate(NOW, 0), Ok(()));
        // Through JSON as an agent sends it.
        let parsed = Telemetry::from_json(&t.to_json()).expect("parses");
        assert_eq!(parsed.values.get("x_cop"), Some(3.2));
        assert_eq!(parsed.validate(NOW, 0), Ok(()));
        // The rules' view (canonical indexes) leaves them out.
        assert_eq!(parsed.values.canonical().count(), 1);

        // Magnitude: at most 1e9 either way; NaN and infinities are refused too.
        for (value, ok) in [
            (values::MAX_VENDOR_MAGNITUDE, true),
            (-values::MAX_VENDOR_MAGNITUDE, true),
            (2.0e9, false),
            (-2.0e9, false),
            (f64::NAN, false),
            (f64::INFINITY, false),
        ] {
            let mut t = sample();
            t.values.insert("x_flow_lpm", value);
            let result = t.validate(NOW, 0);
            if ok {
                assert_eq!(result, Ok(()), "{value}");
            } else {
                let error = result.expect_err("out of bounds");
                assert_eq!(error.reason(), "out_of_range", "{value}");
                assert!(error.to_string().contains("\"x_flow_lpm\""), "{error}");
            }
        }
        let json = br#"{"v":1,"device_id":"yq-1","ts_ms":1796000000000,"seq":4,"profile":"p","kind":"heat_pump","values":{"x_big":1e400}}"#;
        assert_eq!(
            Telemetry::from_json(json).map_err(|e| e.reason()),
            Err("malformed"),
            "JSON cannot carry an infinity"
        );

        // Count: 32 are carried, the 33rd (in name order) is named.
        let mut t = sample();
        for i in 0..values::MAX_VENDOR_VALUES {
            t.values.insert(format!("x_v{i:02}"), i as f64);
        }
        assert_eq!(t.validate(NOW, 0), Ok(()));
        t.values.insert("x_v99", 1.0);
        let error = t.validate(NOW, 0).expect_err("33 vendor values");
        assert_eq!(
            error,
            PayloadError::TooManyVendorValues {
                name: "x_v99".into(),
                max: values::MAX_VENDOR_VALUES
            }
        );
        assert_eq!(error.reason(), "too_many_vendor_values");
        assert!(error.to_string().contains("\"x_v99\""), "{error}");
    }

    #[test]
    fn names_outside_both_namespaces_are_refused_and_shown_short() {
        for bad in [
            "X_cop",
            "x-cop",
            "xcop",
            "vendor_cop",
            "x_Cop",
            "x_co p",
            "indoor_temp",
        ] {
            let mut t = sample();
            t.values.insert(bad, 1.0);
            assert_eq!(
                t.validate(NOW, 0),
                Err(PayloadError::UnknownValue { name: bad.into() }),
                "{bad:?}"
            );
        }
        let mut t = sample();
        let long = format!("x_{}", "a".repeat(values::MAX_VENDOR_NAME_LEN + 1));
        t.values.insert(&long, 1.0);
        assert_eq!(
            t.validate(NOW, 0).map_err(|e| e.reason()),
            Err("unknown_value")
        );
        let mut t = sample();
        t.values.insert("z".repeat(10_000), 1.0);
        let error = t.validate(NOW, 0).expect_err("unknown");
        assert!(
            matches!(&error, PayloadError::UnknownValue { name } if name.chars().count() == MAX_NAME_SHOWN),
            "{error}"
        );
        assert!(error.to_string().contains("vendor value name"), "{error}");
    }

    #[test]
    fn rejects_other_versions_and_garbage() {
        let mut json: serde_json::Value =
            serde_json::from_slice(&sample().to_json()).expect("json");
        json["v"] = serde_json::json!(2);
        let bytes = serde_json::to_vec(&json).expect("json");
        assert_eq!(
            Telemetry::from_json(&bytes),
            Err(PayloadError::UnsupportedVersion(2))
        );
        assert!(matches!(
            Telemetry::from_json(b"\xff\x00not json"),
            Err(PayloadError::Malformed(_))
        ));
    }

    #[test]
    fn status_lists_devices() {
        let status = AgentStatus::new(
            "box-1",
            AgentState::Offline,
            vec![DeviceId::parse("d-1").expect("valid")],
        );
        assert_eq!(AgentStatus::from_json(&status.to_json()), Ok(status));
    }

    #[test]
    fn fault_categories_parse_their_own_names() {
        for category in FaultCategory::ALL {
            assert_eq!(FaultCategory::parse(category.as_str()), Some(category));
        }
    }
}
