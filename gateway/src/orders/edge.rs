//! Local alarms of edge boxes ([`wire::EdgeAlert`]), reconciled with the gateway's own alerts
//! and orders.
//!
//! A box whose uplink was down ran the gateway's rules itself and raised a local alarm (a
//! buzzer, an SMS through its modem); the alarm arrives with the backlog, on the reading that
//! raised it. The gateway runs the same rules on the same readings, so the order for that
//! episode is its own: an edge alarm never opens an order. It is kept as an alert of its own
//! (`edge:{episode}`, beside the gateway's alert of the same episode, so the alert list and the
//! hotline desk see that the household was alarmed and when) and, when the device has an open
//! order, written into that order's history (`edge_alarm`, `edge_alarm_cleared`): the
//! technician and the callback post know the household heard a buzzer or got an SMS.

use wire::{EdgeAlert, EdgeAlertKind, EdgeChannel};

use super::store::{AlertRow, OrderUpdate, Store, StoreError};
use super::OrderService;

/// Prefix of the alert episode id of an edge alarm.
pub const EDGE_EPISODE_PREFIX: &str = "edge:";

/// What the store did with a batch of edge alarms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdgeApplied {
    /// Alarms recorded as alerts (raised) or ended (cleared).
    pub recorded: usize,
    /// Alarms written into an open order's history.
    pub linked: usize,
}

impl OrderService {
    /// Records the edge alarms a reading of `device` carried (see the module documentation).
    pub async fn apply_edge_alerts(
        &self,
        device: String,
        township: String,
        alerts: Vec<EdgeAlert>,
    ) -> Result<EdgeApplied, StoreError> {
        if alerts.is_empty() {
            return Ok(EdgeApplied::default());
        }
        for alert in &alerts {
            self.metrics.edge_alert(alert.kind.as_str());
        }
        self.with_store(move |store| {
            store.batch(|store| apply_edge_alerts_in(store, &device, &township, &alerts))
        })
        .await
    }
}

/// [`OrderService::apply_edge_alerts`] on a store the caller holds.
pub fn apply_edge_alerts_in(
    store: &mut Store,
    device: &str,
    township: &str,
    alerts: &[EdgeAlert],
) -> Result<EdgeApplied, StoreError> {
    let mut applied = EdgeApplied::default();
    for alert in alerts {
        let episode = format!("{EDGE_EPISODE_PREFIX}{}", alert.episode_id);
        let channels = channels(&alert.channels);
        let minutes = alert.uplink_down_ms / 60_000;
        let (recorded, kind, note) = match alert.kind {
            EdgeAlertKind::Raised => {
                let summary = format!(
                    "box alarm ({channels}) after its uplink was down {minutes} min: {}",
                    alert.summary
                );
                let row = AlertRow {
                    episode_id: episode.clone(),
                    device_id: device.to_owned(),
                    township: township.to_owned(),
                    rule_id: alert.rule_id.clone(),
                    severity: "major".to_owned(),
                    summary: summary.clone(),
                    fired_at_ms: alert.at_ms,
                    resolved_at_ms: None,
                };
                (store.alert_fired(&row)?, "edge_alarm", summary)
            }
            EdgeAlertKind::Cleared => (
                store.alert_resolved(&episode, alert.at_ms)?,
                "edge_alarm_cleared",
                format!(
                    "the box's alarm for {} ended on the box ({})",
                    alert.rule_id, alert.summary
                ),
            ),
        };
        if !recorded {
            // A repeat (the backlog sent twice) or a clear of an alarm never seen.
            continue;
        }
        applied.recorded += 1;
        tracing::info!(device, rule = %alert.rule_id, episode = %alert.episode_id, kind = alert.kind.as_str(), uplink_down_min = minutes, "edge alarm recorded");
        if let Some(order) = store.open_order_for_device(device)? {
            store.append_event(
                order.id,
                alert.at_ms,
                &format!("edge:{device}"),
                kind,
                &note,
                &OrderUpdate::default(),
            )?;
            applied.linked += 1;
        }
    }
    Ok(applied)
}

fn channels(channels: &[EdgeChannel]) -> String {
    if channels.is_empty() {
        return "no local channel".to_owned();
    }
    channels
        .iter()
        .map(|c| match c {
            EdgeChannel::Coil => "buzzer/light",
            EdgeChannel::Hook => "SMS/hook",
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::store::NewOrder;

    const DEVICE: &str = "yanqing-dongguan-0001";

    fn alarm(kind: EdgeAlertKind, at_ms: i64) -> EdgeAlert {
        EdgeAlert {
            episode_id: format!("heating_stopped:{DEVICE}:1000"),
            rule_id: "heating_stopped".into(),
            kind,
            at_ms,
            uplink_down_ms: 45 * 60_000,
            channels: vec![EdgeChannel::Coil, EdgeChannel::Hook],
            summary: "room 15.2 below its set point".into(),
        }
    }

    fn alerts(store: &Store) -> Vec<AlertRow> {
        store
            .alerts(false, 100)
            .expect("alerts")
            .into_iter()
            .filter(|a| a.episode_id.starts_with(EDGE_EPISODE_PREFIX))
            .collect()
    }

    #[test]
    fn an_edge_alarm_is_an_alert_and_a_line_in_the_open_order_never_an_order() {
        let mut store = Store::in_memory().expect("store");
        // No open order: the alarm is an alert of its own and opens nothing.
        let applied = apply_edge_alerts_in(
            &mut store,
            DEVICE,
            "yanqing",
            &[alarm(EdgeAlertKind::Raised, 2_000)],
        )
        .expect("applied");
        assert_eq!(
            applied,
            EdgeApplied {
                recorded: 1,
                linked: 0
            }
        );
        let rows = alerts(&store);
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0].episode_id,
            format!("edge:heating_stopped:{DEVICE}:1000")
        );
        assert!(
            rows[0].summary.contains("buzzer/light, SMS/hook"),
            "{}",
            rows[0].summary
        );
        assert!(rows[0].summary.contains("45 min"));
        assert!(store.open_order_for_device(DEVICE).expect("q").is_none());
        // The same backlog sent twice records nothing twice.
        let again = apply_edge_alerts_in(
            &mut store,
            DEVICE,
            "yanqing",
            &[alarm(EdgeAlertKind::Raised, 2_000)],
        )
        .expect("applied");
        assert_eq!(again, EdgeApplied::default());
        // With the gateway's own alert and order open, the clear is written into its history.
        store
            .alert_fired(&AlertRow {
                episode_id: format!("heating_stopped:{DEVICE}:1000"),
                device_id: DEVICE.into(),
                township: "yanqing".into(),
                rule_id: "heating_stopped".into(),
                severity: "major".into(),
                summary: "heater stopped".into(),
                fired_at_ms: 1_000,
                resolved_at_ms: None,
            })
            .expect("the gateway's own alert");
        let id = store
            .create_order(&NewOrder {
                episode_id: Some(format!("heating_stopped:{DEVICE}:1000")),
                device_id: DEVICE.into(),
                township: "yanqing".into(),
                category: "heating_stopped".into(),
                priority: "high".into(),
                source: "rule".into(),
                summary: "heater stopped".into(),
                created_at_ms: 1_000,
                actor: "rules".into(),
                pre_emptive: true,
                ..NewOrder::default()
            })
            .expect("create")
            .expect("new");
        let cleared = apply_edge_alerts_in(
            &mut store,
            DEVICE,
            "yanqing",
            &[alarm(EdgeAlertKind::Cleared, 9_000)],
        )
        .expect("applied");
        assert_eq!(
            cleared,
            EdgeApplied {
                recorded: 1,
                linked: 1
            }
        );
        assert_eq!(alerts(&store)[0].resolved_at_ms, Some(9_000));
        let (_, events) = store.order(id).expect("order").expect("exists");
        let edge: Vec<_> = events
            .iter()
            .filter(|e| e.kind.starts_with("edge_alarm"))
            .collect();
        assert_eq!(edge.len(), 1, "{events:?}");
        assert_eq!(edge[0].kind, "edge_alarm_cleared");
        assert_eq!(edge[0].actor, format!("edge:{DEVICE}"));
        assert_eq!(
            store.orders(&Default::default()).expect("list").len(),
            1,
            "no order of its own"
        );
    }
}
