//! The MQTT side of the gateway. By default the embedded rumqttd broker, started on its own
//! threads (rumqttd has no shutdown API, so it lives as long as the process), with an in-process
//! link the gateway subscribes through; in scale-out mode a client of an external broker
//! ([`external`]). [`MessageSource`] hides which.

pub mod external;

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

/// A started broker: its listen address and the gateway's in-process link.
pub struct EmbeddedBroker {
    pub listen: SocketAddr,
    pub link_tx: LinkTx,
    pub link_rx: LinkRx,
    /// A second link the gateway publishes through (team order topics). Its receiving half is
    /// kept so the router never sees the link as gone.
    pub publisher: (LinkTx, LinkRx),
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

/// Starts the broker threads and opens the link named `link_id`.
pub fn start(config: &BrokerConfig, link_id: &str) -> Result<EmbeddedBroker, BrokerError> {
    let listen = resolve_listen(config.listen)?;
    // Fail early with a clear message if the address is taken (rumqttd would only log it).
    drop(
        TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            address: listen,
            source,
        })?,
    );
    let connections = ConnectionSettings {
        connection_timeout_ms: u16::try_from(config.connection_timeout.as_millis())
            .unwrap_or(u16::MAX),
        max_payload_size: config.max_payload_size,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4-1".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let rumqttd_config = rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
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
    Ok(EmbeddedBroker {
        listen,
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

impl crate::orders::TeamNotifier for TeamOrderPublisher {
    fn order_dispatched(&self, order: &crate::orders::store::OrderRow) {
        let (Some(team), Ok(township)) = (&order.team_id, wire::TownshipId::parse(&order.township))
        else {
            return;
        };
        let topic = wire::Topic::new(township, team.clone(), wire::TopicKind::Orders).to_string();
        let payload = serde_json::to_vec(order).unwrap_or_default();
        match self.link.lock() {
            Ok(mut link) => {
                if let Err(error) = link.try_publish(topic, payload) {
                    tracing::warn!(order = order.id, %error, "team order notice could not be published");
                }
            }
            Err(_) => tracing::error!("team order publisher lock poisoned"),
        }
    }
}

/// Where ingest takes its messages from.
pub enum MessageSource {
    /// The embedded broker's in-process link.
    Embedded { link_tx: LinkTx, link_rx: LinkRx },
    /// A client of an external broker, subscribed to the owned townships.
    External(Box<external::ExternalSource>),
}

impl MessageSource {
    /// Subscribes the embedded link to telemetry and status of every township (the external
    /// client subscribes on every connect by itself).
    pub fn subscribe(&mut self) -> Result<(), BrokerError> {
        if let MessageSource::Embedded { link_tx, .. } = self {
            for kind in [wire::TopicKind::Telemetry, wire::TopicKind::Status] {
                link_tx
                    .subscribe(wire::Topic::all_filter(kind))
                    .map_err(|e| BrokerError::Link(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The next message's topic and payload; `Err` when the embedded link is gone.
    pub async fn next(&mut self) -> Result<(Vec<u8>, Vec<u8>), BrokerError> {
        match self {
            MessageSource::Embedded { link_rx, .. } => loop {
                match link_rx.next().await {
                    Ok(Some(rumqttd::Notification::Forward(forward))) => {
                        return Ok((
                            forward.publish.topic.to_vec(),
                            forward.publish.payload.to_vec(),
                        ))
                    }
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
}
