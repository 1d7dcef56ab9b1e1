//! The MQTT connection: rumqttc's client and options (client id, keep-alive, the retained
//! `offline` status as last will, credentials, TLS), the retained status message, and the task
//! that owns rumqttc's event loop and reconnects with jittered exponential backoff.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wire::{AgentState, AgentStatus, DeviceId, Topic, TopicKind};

use crate::config::AgentConfig;

/// The client and its event loop (which connects when the event-loop task first polls it).
pub(super) fn client(config: &AgentConfig) -> anyhow::Result<(AsyncClient, EventLoop)> {
    let options = options(config)?;
    let cap = usize::from(config.mqtt.max_inflight) + 256;
    let (client, mut eventloop) = AsyncClient::new(options, cap);
    // Commands and their acks are small request/response messages: do not let Nagle's
    // algorithm hold them back behind a delayed ACK.
    let mut network = eventloop.network_options();
    network.set_tcp_nodelay(true);
    eventloop.set_network_options(network);
    Ok((client, eventloop))
}

/// rumqttc options from the config: client id, keep-alive, last will, credentials, TLS.
fn options(config: &AgentConfig) -> anyhow::Result<MqttOptions> {
    let mqtt = &config.mqtt;
    let client_id = mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| config.agent_id.clone());
    let mut options = MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
    options.set_keep_alive(mqtt.keep_alive);
    options.set_clean_session(true);
    options.set_inflight(mqtt.max_inflight);
    let (topic, payload) = status_message(config, AgentState::Offline, &[]);
    options.set_last_will(LastWill::new(
        mqtt.tenant_topic(topic),
        payload,
        QoS::AtLeastOnce,
        true,
    ));
    if let (Some(user), Some(password)) = (&mqtt.username, &mqtt.password) {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(tls) = &mqtt.tls {
        options.set_transport(mqtt_tls::transport(tls)?);
    }
    Ok(options)
}

/// The retained status message: `online` with the unreachable devices, or `offline`.
pub(super) fn status_message(
    config: &AgentConfig,
    state: AgentState,
    unreachable: &[DeviceId],
) -> (String, Vec<u8>) {
    let topic = Topic::new(
        config.township.clone(),
        config.agent_id.clone(),
        TopicKind::Status,
    );
    let devices = config.devices.iter().map(|d| d.id.clone()).collect();
    let mut body = AgentStatus::new(config.agent_id.clone(), state, devices);
    if state == AgentState::Online {
        body.extra.insert(
            "unreachable".into(),
            serde_json::json!(unreachable.iter().map(|d| d.as_str()).collect::<Vec<_>>()),
        );
    }
    (topic.to_string(), body.to_json())
}

/// Bytes of the MQTT 3.1.1 PUBLISH packet (QoS 1) that carries `payload_bytes` on a topic of
/// `topic_bytes`: fixed header (1 byte and the remaining length, 1 to 4 bytes), topic length,
/// topic, packet id and payload.
pub(super) fn publish_packet_bytes(topic_bytes: usize, payload_bytes: usize) -> u64 {
    let remaining = 2 + topic_bytes + 2 + payload_bytes;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    (1 + length_bytes + remaining) as u64
}

/// Adds up to ±25 % jitter so that a village of boxes does not reconnect in lockstep.
fn jitter(base: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    base.mul_f64(factor)
}

/// What the event-loop task reports.
pub(super) enum MqttEvent {
    Event(Event),
    /// The connection failed; the uplink stops publishing and answers on `quiet` before the
    /// event loop reconnects.
    Lost {
        error: String,
        retry_in: Duration,
        quiet: oneshot::Sender<()>,
    },
}

/// Owns rumqttc's event loop: polls it without ever cancelling a poll, reconnects with
/// jittered exponential backoff.
pub(super) async fn run_event_loop(
    mut eventloop: EventLoop,
    events: mpsc::Sender<MqttEvent>,
    max_backoff: Duration,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let polled = tokio::select! {
            () = shutdown.cancelled() => return,
            polled = eventloop.poll() => polled,
        };
        match polled {
            Ok(event) => {
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    backoff = Duration::from_secs(1);
                }
                let disconnect = matches!(event, Event::Outgoing(Outgoing::Disconnect));
                if events.send(MqttEvent::Event(event)).await.is_err() || disconnect {
                    return;
                }
            }
            Err(rumqttc::ConnectionError::RequestsDone) => return,
            Err(error) => {
                let wait = jitter(backoff);
                let (quiet, quieted) = oneshot::channel();
                let lost = MqttEvent::Lost {
                    error: error.to_string(),
                    retry_in: wait,
                    quiet,
                };
                if events.send(lost).await.is_err() {
                    return;
                }
                let _ = quieted.await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                // Requests queued after the connection died belong to no session: drop them
                // (the new session is clean and the uplink resends from its queue).
                eventloop.clean();
                eventloop.pending.clear();
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_costs_what_rumqttc_writes_for_it() {
        let topic = "heating/v1/yanqing/yq-0001/telemetry";
        for payload in [0, 1, 90, 91, 92, 500, 16_300, 16_400, 2_097_100, 2_097_200] {
            let mut publish = rumqttc::Publish::new(topic, QoS::AtLeastOnce, vec![b'x'; payload]);
            publish.pkid = 1;
            assert_eq!(
                publish_packet_bytes(topic.len(), payload),
                publish.size() as u64,
                "payload of {payload} bytes"
            );
        }
    }
}
