//! Alerts an edge box raised on its own while its uplink was down, carried to the gateway on
//! the reading that raised (or cleared) them.
//!
//! A box whose mobile link is down runs a small rule pack itself (the same `rules` crate, the
//! gateway's rule ids). When one of those rules fires after the uplink has been down for the
//! configured time, the box switches on its local channels (a buzzer or a light on a Modbus
//! coil, a command hook that sends an SMS through the box's modem) and records an
//! [`EdgeAlert`] on the reading that raised it; when the alert ends, a `cleared` one on the
//! reading that ended it. The readings wait in the box's disk queue like every other, so the
//! gateway learns of the local alarm when the backlog arrives, in order and exactly where it
//! happened, and reconciles it with its own alert of the same episode (it runs the same rules
//! on the same readings: one order per episode, never one from the box).
//!
//! On the wire the list is the optional field `edge_alerts` of a telemetry message (at most
//! [`MAX_EDGE_ALERTS`] entries); in [`Telemetry`] it lives in `extra` under that name, as the
//! clock fields do ([`crate::clock`]), so every constructor of a reading keeps compiling and a
//! reader that does not know it keeps it as an unknown field. [`Telemetry::edge_alerts`] reads
//! and checks it, [`Telemetry::set_edge_alerts`] writes it. A malformed list is an error of its
//! own ([`PayloadError::BadEdgeAlerts`]), never part of [`Telemetry::validate`]: a receiver
//! drops the list and keeps the reading.

use serde::{Deserialize, Serialize};

use crate::message::{PayloadError, Telemetry};

/// Field name of the list in a telemetry message.
pub const EDGE_ALERTS: &str = "edge_alerts";

/// Most alerts one reading carries.
pub const MAX_EDGE_ALERTS: usize = 8;

/// Longest rule id an alert names.
pub const MAX_RULE_ID_LEN: usize = 64;

/// Longest episode id an alert carries (`{rule}:{device}:{ms}`).
pub const MAX_EPISODE_ID_LEN: usize = 160;

/// Longest summary an alert carries.
pub const MAX_SUMMARY_LEN: usize = 240;

/// Most local channels one alert names.
pub const MAX_CHANNELS: usize = 4;

/// Raised or cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeAlertKind {
    /// The box switched its local channels on for this episode.
    Raised,
    /// The episode ended on the box (its rule resolved).
    Cleared,
}

impl EdgeAlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeAlertKind::Raised => "raised",
            EdgeAlertKind::Cleared => "cleared",
        }
    }
}

/// A local channel of the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeChannel {
    /// A Modbus coil (a buzzer, a light, a relay) switched on.
    Coil,
    /// A command hook run (e.g. an SMS through the box's modem).
    Hook,
}

/// One local alarm of the box, raised or cleared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeAlert {
    /// The box's episode id, `{rule_id}:{device_id}:{fired_at_ms}` in the box's event time:
    /// the gateway's engine gives the same id to the same episode on the same readings.
    pub episode_id: String,
    /// The rule (an id of the gateway's pack).
    pub rule_id: String,
    pub kind: EdgeAlertKind,
    /// Event time of the transition on the box (the reading's time), Unix ms.
    pub at_ms: i64,
    /// How long the uplink had been down when the box raised (or cleared) it, ms.
    pub uplink_down_ms: u64,
    /// The local channels the box used (empty when none is configured: the alert still
    /// travels to the gateway).
    #[serde(default)]
    pub channels: Vec<EdgeChannel>,
    /// The rule's sentence, e.g. `indoor_temp_c 11.2 below 14 for 30m`.
    pub summary: String,
}

impl EdgeAlert {
    /// Checks the bounds of one alert.
    fn check(&self) -> Result<(), &'static str> {
        if !(1..=MAX_EPISODE_ID_LEN).contains(&self.episode_id.len()) {
            return Err("an episode_id is empty or longer than 160 bytes");
        }
        let id_ok = (1..=MAX_RULE_ID_LEN).contains(&self.rule_id.len())
            && self
                .rule_id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !id_ok {
            return Err("a rule_id is not 1 to 64 of a-z, 0-9, _");
        }
        if self.channels.len() > MAX_CHANNELS {
            return Err("an alert names more than 4 channels");
        }
        if self.summary.len() > MAX_SUMMARY_LEN {
            return Err("a summary is longer than 240 bytes");
        }
        Ok(())
    }
}

fn bad(reason: &'static str) -> PayloadError {
    PayloadError::BadEdgeAlerts { reason }
}

impl Telemetry {
    /// The local alarms this reading carries (empty when it has none), or an error saying
    /// what is wrong with the list.
    pub fn edge_alerts(&self) -> Result<Vec<EdgeAlert>, PayloadError> {
        let Some(value) = self.extra.get(EDGE_ALERTS) else {
            return Ok(Vec::new());
        };
        let Some(list) = value.as_array() else {
            return Err(bad("is not a list"));
        };
        if list.len() > MAX_EDGE_ALERTS {
            return Err(bad("has more than 8 alerts"));
        }
        let mut alerts = Vec::with_capacity(list.len());
        for item in list {
            let alert: EdgeAlert = serde_json::from_value(item.clone())
                .map_err(|_| bad("an alert is not an object with the fields of an edge alert"))?;
            alert.check().map_err(bad)?;
            alerts.push(alert);
        }
        Ok(alerts)
    }

    /// Writes `alerts` into the reading (removes the field when empty). At most
    /// [`MAX_EDGE_ALERTS`] are written: the first ones, in the order given.
    pub fn set_edge_alerts(&mut self, alerts: &[EdgeAlert]) {
        if alerts.is_empty() {
            self.extra.remove(EDGE_ALERTS);
            return;
        }
        let list: Vec<serde_json::Value> = alerts
            .iter()
            .take(MAX_EDGE_ALERTS)
            .filter_map(|a| serde_json::to_value(a).ok())
            .collect();
        self.extra
            .insert(EDGE_ALERTS.to_owned(), serde_json::Value::Array(list));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceId, DeviceKind, Values, SCHEMA_VERSION};
    use std::collections::BTreeMap;

    fn reading() -> Telemetry {
        Telemetry {
            v: SCHEMA_VERSION,
            device_id: DeviceId::parse("yq-0001-hp").expect("id"),
            ts_ms: 1_767_225_600_000,
            seq: 7,
            profile: "aurora-ashp".into(),
            kind: DeviceKind::HeatPump,
            values: Values::from([("indoor_temp_c", 11.0)]),
            fault: None,
            extra: BTreeMap::new(),
        }
    }

    fn alert() -> EdgeAlert {
        EdgeAlert {
            episode_id: "heating_stopped:yq-0001-hp:1767225000000".into(),
            rule_id: "heating_stopped".into(),
            kind: EdgeAlertKind::Raised,
            at_ms: 1_767_225_600_000,
            uplink_down_ms: 45 * 60_000,
            channels: vec![EdgeChannel::Coil, EdgeChannel::Hook],
            summary: "indoor_temp_c 11.0 below set point".into(),
        }
    }

    #[test]
    fn alerts_survive_the_wire_and_an_empty_list_leaves_no_field() {
        let mut t = reading();
        assert_eq!(t.edge_alerts(), Ok(Vec::new()));
        t.set_edge_alerts(&[alert()]);
        let back = Telemetry::from_json(&t.to_json()).expect("parses");
        assert_eq!(back.edge_alerts(), Ok(vec![alert()]));
        assert!(String::from_utf8(t.to_json())
            .expect("utf8")
            .contains(r#""edge_alerts":[{"#));
        t.set_edge_alerts(&[]);
        assert!(!t.extra.contains_key(EDGE_ALERTS));
        // At most eight are written.
        t.set_edge_alerts(&vec![alert(); 12]);
        assert_eq!(t.edge_alerts().map(|a| a.len()), Ok(MAX_EDGE_ALERTS));
    }

    #[test]
    fn a_bad_list_is_named_and_does_not_fail_validation() {
        let cases: [(serde_json::Value, &str); 5] = [
            (serde_json::json!("x"), "is not a list"),
            (
                serde_json::json!(vec![serde_json::to_value(alert()).expect("v"); 9]),
                "more than 8",
            ),
            (
                serde_json::json!([{"rule_id": "x"}]),
                "not an object with the fields",
            ),
            (
                serde_json::json!([{"episode_id": "e", "rule_id": "Bad Id", "kind": "raised", "at_ms": 1, "uplink_down_ms": 0, "summary": ""}]),
                "rule_id",
            ),
            (
                serde_json::json!([{"episode_id": "e", "rule_id": "r", "kind": "raised", "at_ms": 1, "uplink_down_ms": 0, "summary": "x".repeat(300)}]),
                "summary",
            ),
        ];
        for (value, expected) in cases {
            let mut t = reading();
            t.extra.insert(EDGE_ALERTS.to_owned(), value);
            let error = t.edge_alerts().expect_err("refused");
            assert_eq!(error.reason(), "bad_edge_alerts");
            assert!(error.to_string().contains(expected), "{error}");
            assert_eq!(t.validate(1_767_225_600_000, 60_000), Ok(()));
        }
    }
}
