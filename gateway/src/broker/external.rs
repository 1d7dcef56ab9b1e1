//! Scale-out mode: instead of the embedded broker, the gateway is a client (rumqttc) of an
//! external broker or cluster (Mosquitto, EMQX) and subscribes only to the townships it owns,
//! so several gateway instances can split a district between them.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde::Deserialize;
use wire::{Topic, TopicKind, TownshipId};

/// How to reach the external broker, and which townships this instance owns.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalBrokerConfig {
    /// Broker host.
    #[serde(default = "default_host")]
    pub host: String,
    /// Broker port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// MQTT client id; keep it stable so the broker keeps this instance's session (and the
    /// messages of a restart) between connections.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// User name, if the broker asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password, or `env:VARIABLE`; never logged.
    #[serde(default)]
    pub password: Option<String>,
    /// MQTT keep-alive.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Townships this instance owns; empty means every township.
    #[serde(default)]
    pub townships: Vec<TownshipId>,
    /// TLS to the broker: `ca_file` (the CAs that sign the broker's certificate, verified
    /// against `host`), and `client_cert` with `client_key` when the broker wants a client
    /// certificate; paths relative to the config file. Required unless `host` is a loopback
    /// name or address, or `insecure_plain_connection = true`.
    #[serde(default)]
    pub tls: Option<mqtt_tls::TlsConfig>,
    /// Allow a broker that is not on this machine without TLS: readings, commands and orders
    /// then cross the network in clear text. Only for an isolated test network.
    #[serde(default)]
    pub insecure_plain_connection: bool,
}

impl ExternalBrokerConfig {
    /// Whether `host` names this machine.
    pub fn host_is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    1883
}
fn default_client_id() -> String {
    "heating-gateway".into()
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}

impl ExternalBrokerConfig {
    /// The topic filters this instance subscribes to.
    pub fn filters(&self) -> Vec<String> {
        let kinds = [TopicKind::Telemetry, TopicKind::Status];
        if self.townships.is_empty() {
            return kinds.iter().map(|k| Topic::all_filter(*k)).collect();
        }
        self.townships
            .iter()
            .flat_map(|t| kinds.iter().map(move |k| Topic::township_filter(t, *k)))
            .collect()
    }
}

/// A connected (or connecting) client of the external broker. Its event loop runs in a task of
/// its own and hands publishes over a bounded channel: polled from ingest's `select!`, the
/// connection attempt (and its backoff) was dropped every time another branch fired, so a
/// broker slower to answer than `rules.tick` was never reached.
pub struct ExternalSource {
    pub client: AsyncClient,
    messages: tokio::sync::mpsc::Receiver<(bytes::Bytes, bytes::Bytes)>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ExternalSource {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes handed from the client's task to ingest; the task waits (and the broker holds the
/// messages) while ingest is behind by this many.
const CHANNEL: usize = 1024;

impl ExternalSource {
    /// Starts the client's task (on the current tokio runtime), which connects, subscribes on
    /// every connection and reconnects with backoff by itself.
    pub fn new(config: &ExternalBrokerConfig) -> Result<Self, String> {
        let mut options =
            MqttOptions::new(config.client_id.clone(), config.host.clone(), config.port);
        options.set_keep_alive(config.keep_alive.max(Duration::from_secs(5)));
        options.set_clean_session(false);
        options.set_max_packet_size(256 * 1024, 256 * 1024);
        if let Some(user) = &config.username {
            let password = match config
                .password
                .as_deref()
                .map(|p| (p, p.strip_prefix("env:")))
            {
                Some((_, Some(variable))) => std::env::var(variable).map_err(|_| {
                    format!("environment variable {variable} (broker.external.password) is not set")
                })?,
                Some((plain, None)) => plain.to_owned(),
                None => String::new(),
            };
            options.set_credentials(user.clone(), password);
        }
        if let Some(tls) = &config.tls {
            // The MQTT client TLS set-up the edge agent uses too (rustls with ring, PEM files).
            let transport =
                mqtt_tls::transport(tls).map_err(|e| format!("broker.external.tls: {e:#}"))?;
            options.set_transport(transport);
        }
        let (client, eventloop) = AsyncClient::new(options, 1024);
        let (sender, messages) = tokio::sync::mpsc::channel(CHANNEL);
        let task = tokio::spawn(drive(eventloop, client.clone(), config.filters(), sender));
        Ok(Self {
            client,
            messages,
            task,
        })
    }

    /// The next publish (topic, payload); `None` once the client's task has stopped.
    pub async fn next(&mut self) -> Option<(bytes::Bytes, bytes::Bytes)> {
        self.messages.recv().await
    }
}

/// Polls the client's event loop for as long as ingest takes its messages: subscribes on every
/// CONNACK, and after a failed connection waits 0.5 s, doubling up to 30 s.
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    filters: Vec<String>,
    messages: tokio::sync::mpsc::Sender<(bytes::Bytes, bytes::Bytes)>,
) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let message = (bytes::Bytes::from(publish.topic), publish.payload);
                if messages.send(message).await.is_err() {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                backoff = Duration::from_millis(500);
                tracing::info!(session_present = ack.session_present, filters = ?filters, "connected to the external MQTT broker");
                for filter in &filters {
                    if let Err(error) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(%error, filter, "subscription could not be queued");
                    }
                }
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "external MQTT broker connection failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_cover_only_the_owned_townships() {
        let config = ExternalBrokerConfig {
            host: "127.0.0.1".into(),
            port: 1883,
            client_id: "g1".into(),
            username: None,
            password: None,
            keep_alive: Duration::from_secs(30),
            townships: vec![TownshipId::parse("sihai").expect("id")],
            tls: None,
            insecure_plain_connection: false,
        };
        assert_eq!(
            config.filters(),
            ["heating/v1/sihai/+/telemetry", "heating/v1/sihai/+/status"]
        );
        let all = ExternalBrokerConfig {
            townships: Vec::new(),
            ..config
        };
        assert_eq!(
            all.filters(),
            ["heating/v1/+/+/telemetry", "heating/v1/+/+/status"]
        );
    }
}
