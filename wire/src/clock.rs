//! Clock trust fields of a reading: the box's boot id, its monotonic time and whether it
//! trusted its wall clock when it stamped `ts_ms`.
//!
//! An edge box often has no real-time clock: after a power cut it starts in 1970 (or at a
//! wrong but plausible time) until NTP answers. Its readings then carry, beside `ts_ms`:
//!
//! - `boot_id`: the box's boot (the kernel's `boot_id`, or random per agent start), 8 to
//!   [`MAX_BOOT_ID_LEN`] ASCII letters, digits or `-`;
//! - `mono_ms`: milliseconds on the box's monotonic clock of that boot when the registers were
//!   read, at most [`MAX_MONO_MS`];
//! - `synced`: whether the box trusted its wall clock for `ts_ms`;
//! - `restamped` (optional): the agent wrote `ts_ms` after the fact, from the monotonic offset
//!   once its clock became trusted (then `synced` is true);
//! - `sent_mono_ms` (optional, at least `mono_ms`): the same boot's monotonic time when the
//!   agent handed the reading to MQTT, so a receiver can place an unsynced reading against its
//!   own clock at arrival (`arrival - (sent_mono_ms - mono_ms)`).
//!
//! The fields are optional on the wire: a message without them is read as before (its clock
//! trusted), and a reader that does not know them keeps them as unknown fields. In
//! [`Telemetry`] they live in `extra` under these names (so every existing constructor of a
//! reading keeps compiling); [`Telemetry::clock`] reads and checks them,
//! [`Telemetry::set_clock`] writes them.

use serde_json::Value;

use crate::message::{PayloadError, Telemetry};

/// Field name of the boot id.
pub const BOOT_ID: &str = "boot_id";
/// Field name of the monotonic time of the read.
pub const MONO_MS: &str = "mono_ms";
/// Field name of the trust flag.
pub const SYNCED: &str = "synced";
/// Field name of the agent's re-stamp flag.
pub const RESTAMPED: &str = "restamped";
/// Field name of the monotonic time of the hand-over to MQTT.
pub const SENT_MONO_MS: &str = "sent_mono_ms";
/// Field a receiver adds when it estimated `ts_ms` itself (`"boot"`: from a synced reading of
/// the same boot; `"arrival"`: from its own clock at arrival). Not checked: informational.
pub const TS_ESTIMATE: &str = "ts_estimate";
/// Field a receiver adds with the box's own (untrusted) `ts_ms` when it replaced it.
pub const BOX_TS_MS: &str = "box_ts_ms";

/// Shortest boot id accepted (a random id must not collide across a box's boots).
pub const MIN_BOOT_ID_LEN: usize = 8;
/// Longest boot id accepted (a kernel boot id is a 36-character UUID).
pub const MAX_BOOT_ID_LEN: usize = 64;
/// Largest monotonic time accepted: twenty years of uptime, far below 2^53 (exact in JSON
/// readers that use doubles) and far from overflowing any sum with a Unix time in ms.
pub const MAX_MONO_MS: u64 = 20 * 366 * 86_400_000;

/// A reading's clock fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockStamp {
    pub boot_id: String,
    pub mono_ms: u64,
    pub synced: bool,
    pub restamped: bool,
    pub sent_mono_ms: Option<u64>,
}

impl ClockStamp {
    /// A stamp taken at read time (not re-stamped, not yet sent).
    pub fn new(boot_id: impl Into<String>, mono_ms: u64, synced: bool) -> Self {
        Self {
            boot_id: boot_id.into(),
            mono_ms,
            synced,
            restamped: false,
            sent_mono_ms: None,
        }
    }
}

/// Whether `boot_id` is a boot id this format accepts.
pub fn is_boot_id(boot_id: &str) -> bool {
    (MIN_BOOT_ID_LEN..=MAX_BOOT_ID_LEN).contains(&boot_id.len())
        && boot_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn bad(field: &'static str, reason: &'static str) -> PayloadError {
    PayloadError::BadClock { field, reason }
}

fn mono(value: &Value, field: &'static str) -> Result<u64, PayloadError> {
    match value.as_u64() {
        Some(ms) if ms <= MAX_MONO_MS => Ok(ms),
        Some(_) => Err(bad(field, "is larger than twenty years of uptime")),
        None => Err(bad(field, "is not a whole number of milliseconds >= 0")),
    }
}

impl Telemetry {
    /// The reading's clock fields: `None` when it has none (a box that predates them: its
    /// `ts_ms` is taken as trusted), an error naming the field when they are partial, of the
    /// wrong type or out of bounds.
    pub fn clock(&self) -> Result<Option<ClockStamp>, PayloadError> {
        let boot_id = self.extra.get(BOOT_ID);
        let mono_ms = self.extra.get(MONO_MS);
        let synced = self.extra.get(SYNCED);
        let restamped = self.extra.get(RESTAMPED);
        let sent = self.extra.get(SENT_MONO_MS);
        if boot_id.is_none()
            && mono_ms.is_none()
            && synced.is_none()
            && restamped.is_none()
            && sent.is_none()
        {
            return Ok(None);
        }
        let boot_id = match boot_id {
            Some(Value::String(id)) if is_boot_id(id) => id.clone(),
            Some(Value::String(_)) => {
                return Err(bad(BOOT_ID, "is not 8 to 64 ASCII letters, digits or '-'"))
            }
            Some(_) => return Err(bad(BOOT_ID, "is not a string")),
            None => return Err(bad(BOOT_ID, "is missing beside the other clock fields")),
        };
        let mono_ms = match mono_ms {
            Some(value) => mono(value, MONO_MS)?,
            None => return Err(bad(MONO_MS, "is missing beside the other clock fields")),
        };
        let synced = match synced {
            Some(Value::Bool(synced)) => *synced,
            Some(_) => return Err(bad(SYNCED, "is not true or false")),
            None => return Err(bad(SYNCED, "is missing beside the other clock fields")),
        };
        let restamped = match restamped {
            None => false,
            Some(Value::Bool(restamped)) => *restamped,
            Some(_) => return Err(bad(RESTAMPED, "is not true or false")),
        };
        if restamped && !synced {
            return Err(bad(RESTAMPED, "is true on a reading that is not synced"));
        }
        let sent_mono_ms = match sent {
            None => None,
            Some(value) => {
                let sent = mono(value, SENT_MONO_MS)?;
                if sent < mono_ms {
                    return Err(bad(SENT_MONO_MS, "is before mono_ms"));
                }
                Some(sent)
            }
        };
        Ok(Some(ClockStamp {
            boot_id,
            mono_ms,
            synced,
            restamped,
            sent_mono_ms,
        }))
    }

    /// Writes the clock fields (replacing any there were; `restamped` and `sent_mono_ms` only
    /// when set).
    pub fn set_clock(&mut self, stamp: &ClockStamp) {
        self.extra
            .insert(BOOT_ID.to_owned(), Value::from(stamp.boot_id.as_str()));
        self.extra
            .insert(MONO_MS.to_owned(), Value::from(stamp.mono_ms));
        self.extra
            .insert(SYNCED.to_owned(), Value::from(stamp.synced));
        if stamp.restamped {
            self.extra.insert(RESTAMPED.to_owned(), Value::from(true));
        } else {
            self.extra.remove(RESTAMPED);
        }
        match stamp.sent_mono_ms {
            Some(sent) => {
                self.extra
                    .insert(SENT_MONO_MS.to_owned(), Value::from(sent));
            }
            None => {
                self.extra.remove(SENT_MONO_MS);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::message::{DeviceKind, SCHEMA_VERSION};
    use crate::{values, DeviceId, Values};

    const NOW: i64 = 1_796_000_000_000;
    const BOOT: &str = "6f1c0e0a-2b7d-4c55-9a0e-3f3b1d2c4e5f";

    fn sample() -> Telemetry {
        Telemetry {
            v: SCHEMA_VERSION,
            device_id: DeviceId::parse("yq-0001-hp").expect("valid id"),
            ts_ms: NOW,
            seq: 7,
            profile: "aurora-ashp".into(),
            kind: DeviceKind::HeatPump,
            values: Values::from([(values::INDOOR_TEMP_C, 19.5)]),
            fault: None,
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn clock_fields_round_trip_through_json_and_old_readings_have_none() {
        assert_eq!(sample().clock(), Ok(None));
        let mut reading = sample();
        let stamp = ClockStamp {
            boot_id: BOOT.into(),
            mono_ms: 12_345,
            synced: true,
            restamped: true,
            sent_mono_ms: Some(20_000),
        };
        reading.set_clock(&stamp);
        let json: serde_json::Value = serde_json::from_slice(&reading.to_json()).expect("json");
        assert_eq!(json["boot_id"], BOOT);
        assert_eq!(json["mono_ms"], 12_345);
        assert_eq!(json["synced"], true);
        assert_eq!(json["restamped"], true);
        assert_eq!(json["sent_mono_ms"], 20_000);
        let parsed = Telemetry::from_json(&reading.to_json()).expect("parses");
        assert_eq!(parsed.clock(), Ok(Some(stamp.clone())));
        assert_eq!(parsed.validate(NOW, 0), Ok(()));
        assert_eq!(parsed, reading);

        // Set again without the optional fields: they go.
        let mut plain = parsed;
        plain.set_clock(&ClockStamp::new(BOOT, 5, false));
        let json: serde_json::Value = serde_json::from_slice(&plain.to_json()).expect("json");
        assert!(json.get("restamped").is_none() && json.get("sent_mono_ms").is_none());
    }

    #[test]
    fn an_unsynced_reading_may_carry_a_1970_wall_time_a_synced_one_may_not() {
        let mut reading = sample();
        reading.ts_ms = 3_000;
        reading.set_clock(&ClockStamp::new(BOOT, 3_000, false));
        assert_eq!(reading.validate(NOW, 60_000), Ok(()));
        reading.ts_ms = NOW + 86_400_000;
        assert_eq!(
            reading.validate(NOW, 60_000),
            Ok(()),
            "ahead, but untrusted"
        );
        reading.ts_ms = 3_000;
        reading.set_clock(&ClockStamp::new(BOOT, 3_000, true));
        assert_eq!(
            reading.validate(NOW, 60_000).map_err(|e| e.reason()),
            Err("ancient_timestamp")
        );
    }

    #[test]
    fn hostile_clock_fields_are_refused_by_name_without_panicking() {
        let cases: Vec<(&str, serde_json::Value, &str)> = vec![
            ("boot_id", serde_json::json!(""), "boot_id"),
            ("boot_id", serde_json::json!("short"), "boot_id"),
            ("boot_id", serde_json::json!("b".repeat(65)), "boot_id"),
            (
                "boot_id",
                serde_json::json!("b".repeat(1_000_000)),
                "boot_id",
            ),
            (
                "boot_id",
                serde_json::json!("boot id with spaces"),
                "boot_id",
            ),
            (
                "boot_id",
                serde_json::json!("引导标识引导标识引导标识"),
                "boot_id",
            ),
            ("boot_id", serde_json::json!(12345678), "boot_id"),
            ("mono_ms", serde_json::json!(u64::MAX), "mono_ms"),
            ("mono_ms", serde_json::json!(MAX_MONO_MS + 1), "mono_ms"),
            ("mono_ms", serde_json::json!(-1), "mono_ms"),
            ("mono_ms", serde_json::json!(1.5), "mono_ms"),
            ("mono_ms", serde_json::json!(1e300), "mono_ms"),
            ("mono_ms", serde_json::json!("12"), "mono_ms"),
            ("synced", serde_json::json!("yes"), "synced"),
            ("synced", serde_json::json!(null), "synced"),
            ("restamped", serde_json::json!(1), "restamped"),
            ("sent_mono_ms", serde_json::json!(10), "sent_mono_ms"),
            ("sent_mono_ms", serde_json::json!(u64::MAX), "sent_mono_ms"),
        ];
        for (field, value, named) in cases {
            let mut reading = sample();
            reading.set_clock(&ClockStamp::new(BOOT, 1_000, false));
            reading.extra.insert(field.to_owned(), value.clone());
            // Through JSON as it would arrive.
            let parsed = Telemetry::from_json(&reading.to_json()).expect("shape is fine");
            let error = parsed.validate(NOW, 60_000).expect_err(field);
            assert_eq!(error.reason(), "bad_clock", "{field} = {value}");
            assert!(
                matches!(&error, PayloadError::BadClock { field, .. } if *field == named),
                "{error}"
            );
            assert!(error.to_string().len() < 200, "{error}");
        }
        // A restamped reading must be synced.
        let mut reading = sample();
        reading.set_clock(&ClockStamp::new(BOOT, 1_000, false));
        reading.extra.insert(RESTAMPED.into(), Value::from(true));
        assert_eq!(
            reading.validate(NOW, 0).map_err(|e| e.reason()),
            Err("bad_clock")
        );
        // Partial: one field alone names a missing one.
        for alone in [BOOT_ID, MONO_MS, SYNCED, SENT_MONO_MS] {
            let mut reading = sample();
            let mut full = sample();
            full.set_clock(&ClockStamp {
                sent_mono_ms: Some(2_000),
                ..ClockStamp::new(BOOT, 1_000, false)
            });
            reading
                .extra
                .insert(alone.to_owned(), full.extra[alone].clone());
            assert_eq!(
                reading.validate(NOW, 0).map_err(|e| e.reason()),
                Err("bad_clock"),
                "{alone} alone"
            );
        }
        // The largest values accepted.
        let mut reading = sample();
        reading.set_clock(&ClockStamp {
            sent_mono_ms: Some(MAX_MONO_MS),
            ..ClockStamp::new("b".repeat(MAX_BOOT_ID_LEN), MAX_MONO_MS, false)
        });
        assert_eq!(reading.validate(NOW, 0), Ok(()));
    }
}
