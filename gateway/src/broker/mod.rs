//! The MQTT side of the gateway. By default the embedded rumqttd broker, started on its own
//! threads (rumqttd has no shutdown API, so it lives as long as the process), with an in-process
//! link the gateway subscribes through; in scale-out mode a client of an external broker
//! ([`external`]). [`MessageSource`] hides which.

pub mod external;
pub mod tenants;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, ConnectionSettings, RouterConfig, ServerSettings};

use crate::config::BrokerConfig;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot bind the MQTT listener on {address}: {source}")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the in-process broker link: {0}")]
    Link(String),
    #[error("cannot start the broker thread: {0}")]
    Thread(std::io::Error),
}

/// A started broker: its listen addresses and the gateway's in-process link.
pub struct EmbeddedBroker {
    /// The plain MQTT 3.1.1 listener (loopback in production).
    pub listen: SocketAddr,
    /// The mutual-TLS listeners (MQTT 3.1.1, MQTT 5), when `broker.tls.enabled`.
    pub tls: Option<TlsListeners>,
    pub link_tx: LinkTx,
    pub link_rx: LinkRx,
    /// A second link the gateway publishes through (team order topics). Its receiving half is
    /// kept so the router never sees the link as gone.
    pub publisher: (LinkTx, LinkRx),
}

/// Where the mutual-TLS listeners of a started broker listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsListeners {
    pub v4: SocketAddr,
    pub v5: Option<SocketAddr>,
}

/// Resolves port 0 to a free port: rumqttd binds inside its own thread and cannot report the
/// port it got, so the gateway probes one and hands it over.
fn resolve_listen(address: SocketAddr) -> Result<SocketAddr, BrokerError> {
    if address.port() != 0 {
        return Ok(address);
    }
    let probe =
        TcpListener::bind(address).map_err(|source| BrokerError::Bind { address, source })?;
    probe
        .local_addr()
        .map_err(|source| BrokerError::Bind { address, source })
}

/// Binds `address` once to fail early with a clear message if it is taken (rumqttd binds on
/// its own thread and would only log it).
fn check_free(address: SocketAddr) -> Result<(), BrokerError> {
    drop(TcpListener::bind(address).map_err(|source| BrokerError::Bind { address, source })?);
    Ok(())
}

/// Starts the broker threads and opens the link named `link_id`.
pub fn start(config: &BrokerConfig, link_id: &str) -> Result<EmbeddedBroker, BrokerError> {
    let listen = resolve_listen(config.listen)?;
    check_free(listen)?;
    let connections = ConnectionSettings {
        connection_timeout_ms: u16::try_from(config.connection_timeout.as_millis())
            .unwrap_or(u16::MAX),
        max_payload_size: config.max_payload_size,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let next_connection_delay_ms =
        u64::try_from(config.next_connection_delay.as_millis()).unwrap_or(u64::MAX);
    let server = |name: &str, listen: SocketAddr, tls: Option<rumqttd::TlsConfig>| ServerSettings {
        name: name.into(),
        listen,
        tls,
        next_connection_delay_ms,
        connections: connections.clone(),
    };
    let mut v4 = HashMap::from([("1".to_owned(), server("v4-1", listen, None))]);
    let mut v5 = None;
    let mut tls_listeners = None;
    if config.tls.enabled {
        let files = rumqttd::TlsConfig::Rustls {
            capath: Some(config.tls.ca_file.display().to_string()),
            certpath: config.tls.cert_file.display().to_string(),
            keypath: config.tls.key_file.display().to_string(),
        };
        let tls_v4 = resolve_listen(config.tls.listen)?;
        check_free(tls_v4)?;
        v4.insert(
            "2".to_owned(),
            server("v4-tls", tls_v4, Some(files.clone())),
        );
        let tls_v5 = match config.tls.listen_v5 {
            Some(address) => {
                let address = resolve_listen(address)?;
                check_free(address)?;
                v5 = Some(HashMap::from([(
                    "1".to_owned(),
                    server("v5-tls", address, Some(files)),
                )]));
                Some(address)
            }
            None => None,
        };
        tls_listeners = Some(TlsListeners {
            v4: tls_v4,
            v5: tls_v5,
        });
    }
    let rumqttd_config = rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: config.log_segment_size,
            max_segment_count: config.log_segments,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(v4),
        v5,
        ..Default::default()
    };
    let mut broker = Broker::new(rumqttd_config);
    let (link_tx, link_rx) = broker
        .link(link_id)
        .map_err(|e| BrokerError::Link(e.to_string()))?;
    let publisher = broker
        .link(&format!("{link_id}-publisher"))
        .map_err(|e| BrokerError::Link(e.to_string()))?;
    std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            if let Err(error) = broker.start() {
                tracing::error!(%error, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Thread)?;
    tracing::info!(%listen, "embedded MQTT broker listening");
    if let Some(tls) = &tls_listeners {
        tracing::info!(v4 = %tls.v4, v5 = ?tls.v5, ca = %config.tls.ca_file.display(), "embedded MQTT broker listening with mutual TLS (tenant per edge box)");
    }
    Ok(EmbeddedBroker {
        listen,
        tls: tls_listeners,
        link_tx,
        link_rx,
        publisher,
    })
}

/// Publishes each dispatched order on `heating/v1/{township}/{team}/orders` for the team's
/// technicians' clients.
pub struct TeamOrderPublisher {
    link: std::sync::Mutex<LinkTx>,
    _receiver: std::sync::Mutex<LinkRx>,
}

impl TeamOrderPublisher {
    pub fn new((link, receiver): (LinkTx, LinkRx)) -> Self {
        Self {
            link: std::sync::Mutex::new(link),
            _receiver: std::sync::Mutex::new(receiver),
        }
    }
}

impl TeamOrderPublisher {
    fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        match self.link.lock() {
            Ok(mut link) => link
                .try_publish(topic, payload)
                .map(drop)
                .map_err(|e| e.to_string()),
            Err(_) => Err("the publisher lock is poisoned".to_owned()),
        }
    }
}

impl crate::orders::TeamNotifier for TeamOrderPublisher {
    fn order_dispatched(&self, order: &crate::orders::store::OrderRow) {
        let (Some(team), Ok(township)) = (&order.team_id, wire::TownshipId::parse(&order.township))
        else {
            return;
        };
        let topic = wire::Topic::new(township, team.clone(), wire::TopicKind::Orders).to_string();
        let payload = serde_json::to_vec(order).unwrap_or_default();
        if let Err(error) = self.publish(topic, payload) {
            tracing::warn!(order = order.id, %error, "team order notice could not be published");
        }
    }

    fn live_event(&self, event: &crate::orders::LiveEvent) {
        let Some(topic) = event.topic() else { return };
        let payload = serde_json::to_vec(event).unwrap_or_default();
        if let Err(error) = self.publish(topic.clone(), payload) {
            tracing::warn!(%topic, %error, "live event could not be published");
        }
    }
}

/// The last offset ingest read from each of the embedded broker's in-memory logs (one per
/// subscription filter), so that messages the broker dropped before ingest read them (its log
/// keeps `broker.log_segments` segments; a reader further behind jumps to the oldest kept
/// message) are counted instead of vanishing: `broker.log_segments` × `broker.log_segment_size`.
#[derive(Debug, Default)]
pub struct LogPositions {
    /// Keyed by (under a tenant prefix, telemetry rather than status): one log per filter.
    last: HashMap<(bool, bool), u64>,
    lost: u64,
}

impl LogPositions {
    /// Notes that the message on `topic` at log offset `offset` was read.
    fn read(&mut self, topic: &[u8], offset: u64) {
        let key = (topic.starts_with(b"/"), topic.ends_with(b"/telemetry"));
        // Each log starts at offset 0 when the gateway subscribes, before any message.
        let expected = self
            .last
            .insert(key, offset)
            .map_or(0, |previous| previous.saturating_add(1));
        self.lost += offset.saturating_sub(expected);
    }

    /// Messages skipped since the last call.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }
}

/// Where ingest takes its messages from.
pub enum MessageSource {
    /// The embedded broker's in-process link, and where ingest is in each of the broker's logs.
    Embedded {
        link_tx: LinkTx,
        link_rx: LinkRx,
        logs: LogPositions,
        /// The router unscheduled the link and has not been told it is ready again.
        wake_pending: bool,
    },
    /// A client of an external broker, subscribed to the owned townships.
    External(Box<external::ExternalSource>),
}

impl MessageSource {
    /// Subscribes the embedded link to telemetry and status of every township, directly and
    /// under every tenant prefix (boxes on the TLS listeners publish under
    /// `/tenants/{tenant}/`); the external client subscribes on every connect by itself.
    pub fn subscribe(&mut self) -> Result<(), BrokerError> {
        if let MessageSource::Embedded { link_tx, .. } = self {
            for kind in [wire::TopicKind::Telemetry, wire::TopicKind::Status] {
                let filter = wire::Topic::all_filter(kind);
                for filter in [tenants::any_tenant_filter(&filter), filter] {
                    link_tx
                        .subscribe(filter)
                        .map_err(|e| BrokerError::Link(e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// Messages the embedded broker dropped from its logs before ingest read them, since the
    /// last call (always 0 for an external broker, whose losses it counts itself).
    pub fn take_lost(&mut self) -> u64 {
        match self {
            MessageSource::Embedded { logs, .. } => logs.take_lost(),
            MessageSource::External(_) => 0,
        }
    }

    /// The next message's topic and payload; `Err` when the embedded link is gone.
    pub async fn next(&mut self) -> Result<(bytes::Bytes, bytes::Bytes), BrokerError> {
        match self {
            MessageSource::Embedded {
                link_rx,
                logs,
                wake_pending,
                ..
            } => loop {
                // The router stops forwarding to a link whose buffer filled up and waits for it
                // to say it is ready again (as rumqttd's own network links do once they have
                // written out what they had); without this the link stalls for good after the
                // first burst. The flag is cleared only once the router took the message: this
                // future is dropped whenever ingest's select! picks another branch, and the
                // router's queue (1,000 events) may be full, so the send can be interrupted.
                if *wake_pending {
                    link_rx
                        .wake()
                        .await
                        .map_err(|e| BrokerError::Link(e.to_string()))?;
                    *wake_pending = false;
                }
                match link_rx.next().await {
                    Ok(Some(rumqttd::Notification::Forward(forward))) => {
                        if let Some((_, offset)) = forward.cursor {
                            logs.read(&forward.publish.topic, offset);
                        }
                        return Ok((forward.publish.topic, forward.publish.payload));
                    }
                    Ok(Some(rumqttd::Notification::Unschedule)) => *wake_pending = true,
                    Ok(_) => {}
                    Err(error) => return Err(BrokerError::Link(error.to_string())),
                }
            },
            MessageSource::External(source) => Ok(source.next().await),
        }
    }
}

/// Publishes dispatched orders through the external broker.
pub struct ExternalOrderPublisher {
    pub client: rumqttc::AsyncClient,
}

impl crate::orders::TeamNotifier for ExternalOrderPublisher {
    fn order_dispatched(&self, order: &crate::orders::store::OrderRow) {
        let (Some(team), Ok(township)) = (&order.team_id, wire::TownshipId::parse(&order.township))
        else {
            return;
        };
        let topic = wire::Topic::new(township, team.clone(), wire::TopicKind::Orders).to_string();
        let payload = serde_json::to_vec(order).unwrap_or_default();
        if let Err(error) =
            self.client
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
        {
            tracing::warn!(order = order.id, %error, "team order notice could not be queued");
        }
    }

    fn live_event(&self, event: &crate::orders::LiveEvent) {
        let Some(topic) = event.topic() else { return };
        let payload = serde_json::to_vec(event).unwrap_or_default();
        if let Err(error) =
            self.client
                .try_publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, payload)
        {
            tracing::warn!(%topic, %error, "live event could not be queued");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogPositions;

    #[test]
    fn gaps_in_each_log_are_counted_as_lost() {
        let mut logs = LogPositions::default();
        let telemetry = b"heating/v1/sihai/sh-1/telemetry".as_slice();
        let status = b"heating/v1/sihai/box-1/status".as_slice();
        let tenant = b"/tenants/boxX1/heating/v1/sihai/sh-1/telemetry".as_slice();
        logs.read(telemetry, 0);
        logs.read(telemetry, 1);
        assert_eq!(logs.take_lost(), 0);
        // The broker dropped offsets 2..=4 of the telemetry log.
        logs.read(telemetry, 5);
        // Each filter has its own log and offsets: the first status is offset 0.
        logs.read(status, 0);
        assert_eq!(logs.take_lost(), 3);
        assert_eq!(logs.take_lost(), 0, "taken once");
        // A log whose first message ingest sees is not offset 0 lost the ones before.
        logs.read(tenant, 7);
        assert_eq!(logs.take_lost(), 7);
    }
}
