//! Target `ingest`: `gateway::ingest::decode` on a topic and a payload as an MQTT client sends
//! them (any bytes), checked against the clock the gateway would use.
//!
//! Besides not panicking, an accepted message must survive its own serialisation: a reading
//! or status that ingest accepted, written back as JSON (unknown fields included, as
//! `wire::message` documents), decodes on the same topic to the same message (floats to
//! within their last bits: serde_json's default float parsing is not correctly rounded).

use std::collections::BTreeMap;

use gateway::ingest::{decode, Decoded};
use serde_json::Value;
use wire::values::CANONICAL;
use wire::{AgentState, AgentStatus, DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

use super::{normalise, Target};
use crate::input::Input;
use crate::mutate::Dictionary;

/// The gateway's clock in the seeds: 2026-11-30.
const NOW_MS: i64 = 1_796_000_000_000;
const MAX_SKEW_MS: i64 = 60_000;

pub struct Ingest;

/// `now_ms max_skew_ms` from the `clock` part, the defaults where it does not parse.
fn clock(input: &Input) -> (i64, i64) {
    let text = input.text("clock");
    let mut words = text.split_whitespace();
    let now = words.next().and_then(|w| w.parse().ok()).unwrap_or(NOW_MS);
    let skew = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or(MAX_SKEW_MS);
    (now, skew)
}

fn seed(topic: &str, payload: impl Into<Vec<u8>>) -> Input {
    Input::new([
        ("topic", topic.as_bytes().to_vec()),
        ("payload", payload.into()),
        ("clock", format!("{NOW_MS} {MAX_SKEW_MS}").into_bytes()),
    ])
}

fn device(id: &str) -> DeviceId {
    DeviceId::parse(id).unwrap_or_else(|e| panic!("seed device id {id:?}: {e}"))
}

/// A reading with every canonical value at the middle of its range.
fn full_reading(id: &str, kind: DeviceKind, fault: Option<Fault>) -> Telemetry {
    let mut extra = BTreeMap::new();
    extra.insert("firmware".to_owned(), serde_json::json!("2.1.4"));
    extra.insert(
        "diag".to_owned(),
        serde_json::json!({"rssi": -71, "uptime_s": 86_400u64, "ratio": 0.25, "tags": ["a", null, true]}),
    );
    Telemetry {
        v: wire::SCHEMA_VERSION,
        device_id: device(id),
        ts_ms: NOW_MS - 10_000,
        seq: 1_764_000_000_000_000,
        profile: "aurora-ashp".into(),
        kind,
        values: CANONICAL
            .iter()
            .map(|c| (c.name, (c.min + c.max) / 2.0))
            .collect(),
        fault,
        extra,
    }
}

impl Target for Ingest {
    fn name(&self) -> &'static str {
        "ingest"
    }

    fn main_part(&self) -> &'static str {
        "payload"
    }

    fn seeds(&self) -> Vec<Input> {
        let township = "yanqing";
        let telemetry = |id: &str| format!("heating/v1/{township}/{id}/telemetry");
        let status = |id: &str| format!("heating/v1/{township}/{id}/status");
        let mut seeds = vec![
            // tests/tests/tls_fixture: `reading` and `status`.
            seed(
                &telemetry("dev-a"),
                format!(
                    r#"{{"v":1,"device_id":"dev-a","ts_ms":{},"seq":1,"profile":"aurora-ashp","kind":"heat_pump","values":{{"indoor_temp_c":19.5}}}}"#,
                    NOW_MS - 1_000
                ),
            ),
            seed(
                &status("box-a"),
                r#"{"v":1,"agent_id":"box-a","state":"offline","devices":["dev-a","dev-b"]}"#,
            ),
            // wire/src/message.rs tests: a null fault, an escaped key.
            seed(
                &telemetry("yq-1"),
                r#"{"v":1,"device_id":"yq-1","ts_ms":1796000000000,"seq":4,"profile":"p","kind":"heat_pump","values":{"indoor_temp_c":19.5},"fault":null}"#,
            ),
            seed(
                &telemetry("yq-1"),
                r#"{"\u0076":1,"device_id":"yq-1","ts_ms":1795999999000,"seq":4,"profile":"vendor_x.model-2","kind":"gas_boiler","values":{"water_pressure_bar":1.5,"flame_on":1}}"#,
            ),
            seed(
                "/tenants/box-7/heating/v1/sihai/sh-1/telemetry",
                format!(
                    r#"{{"v":1,"device_id":"sh-1","ts_ms":{},"seq":9,"profile":"lingyun-boiler","kind":"gas_boiler","values":{{"gas_pressure_mbar":19.5,"running":0}},"fault":{{"code":118,"category":"low_water_pressure","text":"水压过低"}}}}"#,
                    NOW_MS
                ),
            ),
            // A brand's vendor values (`x_...`) beside a canonical one.
            seed(
                &telemetry("yq-2"),
                format!(
                    r#"{{"v":1,"device_id":"yq-2","ts_ms":{NOW_MS},"seq":5,"profile":"aurora-ashp","kind":"heat_pump","values":{{"indoor_temp_c":19.5,"x_cop":3.25,"x_pump_on":1}}}}"#
                ),
            ),
            seed(
                "/tenants/box-7/heating/v1/sihai/box-7/status",
                AgentStatus::new(
                    "box-7",
                    AgentState::Online,
                    vec![device("sh-1"), device("sh-2_gb")],
                )
                .to_json(),
            ),
            seed(
                &status("box-empty"),
                r#"{"v":1,"agent_id":"box-empty","state":"online","devices":[],"agent_version":"1.4.0"}"#,
            ),
        ];
        for (id, kind, fault) in [
            ("yq-0001-hp", DeviceKind::HeatPump, None),
            (
                "yq-0002-gb",
                DeviceKind::GasBoiler,
                Some(Fault {
                    code: 3,
                    category: FaultCategory::WaterFlow,
                    text: "flow switch open".into(),
                }),
            ),
        ] {
            seeds.push(seed(
                &telemetry(id),
                full_reading(id, kind, fault).to_json(),
            ));
        }
        // Topics ingest ignores or refuses.
        for suffix in ["cmd", "cmd/ack", "orders", "alerts", "incidents", "health"] {
            seeds.push(seed(
                &format!("heating/v1/{township}/dev-a/{suffix}"),
                r#"{"v":1,"id":"c-1","op":"write","name":"setpoint_c","value":21.5}"#,
            ));
        }
        seeds
    }

    fn dictionary(&self, _seeds: &[Input]) -> Dictionary {
        let mut dictionary = Dictionary::new(
            &[
                "\"v\"",
                "\"device_id\"",
                "\"ts_ms\"",
                "\"seq\"",
                "\"profile\"",
                "\"kind\"",
                "\"values\"",
                "\"fault\"",
                "\"code\"",
                "\"category\"",
                "\"text\"",
                "\"agent_id\"",
                "\"state\"",
                "\"devices\"",
                "\"heat_pump\"",
                "\"gas_boiler\"",
                "\"online\"",
                "\"offline\"",
                "null",
                "true",
                "false",
                "{}",
                "[]",
                "\"\"",
                ":",
                ",",
                "\\u0000",
                "\\ud800",
                "\\\"",
                "heating",
                "v1",
                "/tenants/",
                "heating/v1/",
                "telemetry",
                "status",
                "cmd",
                "cmd/ack",
                "orders",
                "alerts",
                "incidents",
                "+",
                "#",
                "//",
                "/",
                "$SYS",
            ],
            &[
                ("[", "]"),
                ("{\"a\":", "}"),
                ("{\"values\":", "}"),
                ("[{\"x\":", "}]"),
                ("/", ""),
            ],
        );
        dictionary.extend(CANONICAL.iter().map(|c| c.name));
        dictionary.extend(FaultCategory::ALL.iter().map(|c| c.as_str()));
        dictionary
    }

    fn weight(&self, part: &str) -> usize {
        match part {
            "payload" => 6,
            "topic" => 2,
            _ => 1,
        }
    }

    fn binary(&self, part: &str) -> bool {
        part != "clock"
    }

    fn run(&self, input: &Input) -> String {
        let topic = input.get("topic").unwrap_or_default();
        let payload = input.get("payload").unwrap_or_default();
        let (now_ms, max_skew_ms) = clock(input);
        let decoded = decode(topic, payload, now_ms, max_skew_ms);
        let (json, township, kind) = match &decoded {
            Ok(Decoded::Reading(reading, township)) => (
                reading.to_json(),
                township,
                format!(
                    "ok:reading fault={} values={} extra={} tenant={}",
                    reading.fault.is_some(),
                    reading.values.len().min(3),
                    !reading.extra.is_empty(),
                    topic.starts_with(b"/tenants/")
                ),
            ),
            Ok(Decoded::Status(status, township)) => (
                status.to_json(),
                township,
                format!(
                    "ok:status {:?} devices={} extra={}",
                    status.state,
                    status.devices.len().min(2),
                    !status.extra.is_empty()
                ),
            ),
            Ok(Decoded::Ignored) => return "ok:ignored".to_owned(),
            Err(reject) => {
                return format!("err:{} {}", reject.reason(), normalise(&reject.to_string()))
            }
        };
        // Written back and read again on the same topic: the same message. Numbers may move
        // by an ulp: serde_json's default float parsing is not correctly rounded (its
        // `float_roundtrip` feature is off), so `1e-45` written back can read as the next float.
        let again = decode(topic, &json, now_ms, max_skew_ms);
        let (again_json, again_township) = match &again {
            Ok(Decoded::Reading(reading, township)) if kind.starts_with("ok:reading") => {
                (reading.to_json(), township)
            }
            Ok(Decoded::Status(status, township)) if kind.starts_with("ok:status") => {
                (status.to_json(), township)
            }
            _ => panic!(
                "check failed: an accepted message does not decode after to_json: {again:?}; first {decoded:?}"
            ),
        };
        let first: Value = serde_json::from_slice(&json).unwrap_or(Value::Null);
        let second: Value = serde_json::from_slice(&again_json).unwrap_or(Value::Null);
        assert!(
            township == again_township && first != Value::Null && nearly_equal(&first, &second),
            "check failed: an accepted message changes through to_json: {first} on {township:?} became {second} on {again_township:?}"
        );
        kind
    }
}

/// Equal JSON, except that floats may differ in their last bits.
fn nearly_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if x.is_f64() || y.is_f64() {
                let (x, y) = (
                    x.as_f64().unwrap_or(f64::NAN),
                    y.as_f64().unwrap_or(f64::NAN),
                );
                x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
            } else {
                x == y
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| nearly_equal(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, x)| y.get(key).is_some_and(|y| nearly_equal(x, y)))
        }
        _ => a == b,
    }
}
