//! The MQTT side of the gateway. By default the embedded rumqttd broker, started on its own
//! threads (rumqttd has no shutdown API, so it lives as long as the process), with an in-process
//! link the gateway subscribes through; in scale-out mode a client of an external broker
//! ([`external`]). [`MessageSource`] hides which.

pub mod config;
pub mod external;
#[cfg(test)]
mod footprint;
pub mod passwords;
pub mod tenants;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};

use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::{Broker, ConnectionSettings, RouterConfig, ServerSettings};

use config::BrokerConfig;

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
    #[error("broker.passwords.file: {0}")]
    Passwords(String),
}

/// A started broker: its listen addresses and the gateway's in-process links.
pub struct EmbeddedBroker {
    /// The plain MQTT 3.1.1 listener (loopback unless `broker.insecure_plain_listener`).
    pub listen: SocketAddr,
    /// The mutual-TLS listeners (MQTT 3.1.1, MQTT 5), when `broker.tls.enabled`.
    pub tls: Option<TlsListeners>,
    /// The password listener, when `broker.passwords.enabled`.
    pub passwords: Option<SocketAddr>,
    /// Opens in-process links; ingest and the publisher open a new one when theirs is dropped.
    pub links: InternalLinks,
    /// What the broker's admission and memory limits refused.
    pub guards: rumqttd::guards::GuardCounters,
    /// Logins refused on the password listener.
    pub password_failures: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Where the mutual-TLS listeners of a started broker listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsListeners {
    pub v4: SocketAddr,
    pub v5: Option<SocketAddr>,
}

/// Opens the gateway's own links to the embedded router. Each gets a client id no client can
/// guess (`{role}-{128 random bits}`): rumqttd lets a new connection with a known client id
/// take over the old one, so a fixed id (`gateway-ingest`) let one CONNECT from anywhere cut
/// ingest off. Client ids on the TLS listeners are `{tenant}.{id}` and cannot collide either.
#[derive(Clone)]
pub struct InternalLinks {
    factory: rumqttd::LinkFactory,
}

impl InternalLinks {
    /// A new link for `role` (`ingest`, `publisher`) under a fresh random client id.
    pub fn open(&self, role: &str) -> Result<(LinkTx, LinkRx), BrokerError> {
        self.open_named(role).map(|(_, tx, rx)| (tx, rx))
    }

    /// As [`InternalLinks::open`], with the client id it was given.
    fn open_named(&self, role: &str) -> Result<(String, LinkTx, LinkRx), BrokerError> {
        let id = format!("gateway-{role}-{}", random_suffix()?);
        let (tx, rx) = self.open_as(&id)?;
        Ok((id, tx, rx))
    }

    /// A link under `client_id` exactly (a link already under that id is dropped by the router).
    fn open_as(&self, client_id: &str) -> Result<(LinkTx, LinkRx), BrokerError> {
        self.factory
            .link(client_id)
            .map_err(|e| BrokerError::Link(e.to_string()))
    }
}

/// 128 bits from the kernel's random source, as hex (the links' client ids; the demo's data
/// folder).
pub fn random_suffix() -> Result<String, BrokerError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| BrokerError::Link(format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
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

/// The topics a retained message may be kept on: edge boxes' status, directly and under a
/// tenant prefix. Anything else retained is delivered but not kept (counted).
fn retain_filters() -> Vec<String> {
    let status = wire::Topic::all_filter(wire::TopicKind::Status);
    vec![tenants::any_tenant_filter(&status), status]
}

/// Starts the broker threads; the gateway's links are opened with [`InternalLinks::open`].
pub fn start(config: &BrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
    let listen = resolve_listen(config.listen)?;
    check_free(listen)?;
    let guards = rumqttd::guards::GuardCounters::default();
    let servers = Servers {
        connections: connection_settings(config, &guards),
        next_connection_delay_ms: u64::try_from(config.next_connection_delay.as_millis())
            .unwrap_or(u64::MAX),
        max_pending_per_address: config.max_pending_handshakes_per_address,
    };
    let mut v4 = HashMap::from([("1".to_owned(), servers.settings("v4-1", listen, None))]);
    let (v5, tls_listeners) = if config.tls.enabled {
        let tls = tls_servers(config, &servers)?;
        v4.insert("2".to_owned(), tls.v4);
        (tls.v5, Some(tls.listeners))
    } else {
        (None, None)
    };
    let password_failures = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut passwords = None;
    if config.passwords.enabled {
        let (address, settings) = password_server(config, &servers, &password_failures)?;
        v4.insert("3".to_owned(), settings);
        passwords = Some(address);
    }
    let rumqttd_config = rumqttd::Config {
        id: 0,
        router: router_config(config, &guards),
        v4: Some(v4),
        v5,
        ..Default::default()
    };
    let mut broker = Broker::new(rumqttd_config);
    let links = InternalLinks {
        factory: broker.link_factory(),
    };
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
        passwords,
        links,
        guards,
        password_failures,
    })
}

/// The connection limits every listener starts from, counting refusals in `guards`.
fn connection_settings(
    config: &BrokerConfig,
    guards: &rumqttd::guards::GuardCounters,
) -> ConnectionSettings {
    ConnectionSettings {
        connection_timeout_ms: u16::try_from(config.connection_timeout.as_millis())
            .unwrap_or(u16::MAX),
        max_payload_size: config.max_payload_size,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        // rumqttd 0.20 never creates a dynamic filter (its topic match always answers), but
        // the flag must not open that door if it ever does: a topic nobody subscribed to is
        // dropped.
        dynamic_filters: false,
        max_packet_rate: Some(rumqttd::guards::PacketRate {
            per_second: config.max_packets_per_second,
            burst: config.packet_burst,
        }),
        tenant_from_username: false,
        counters: guards.clone(),
    }
}

/// What every listener of the broker shares.
struct Servers {
    connections: ConnectionSettings,
    next_connection_delay_ms: u64,
    max_pending_per_address: usize,
}

impl Servers {
    /// One listener's settings. The packet rate binds the boxes on the TLS listeners; the
    /// plain listener is loopback (local tools, a bridge, a replay) unless explicitly insecure.
    fn settings(
        &self,
        name: &str,
        listen: SocketAddr,
        tls: Option<rumqttd::TlsConfig>,
    ) -> ServerSettings {
        ServerSettings {
            name: name.into(),
            listen,
            next_connection_delay_ms: self.next_connection_delay_ms,
            connections: ConnectionSettings {
                max_packet_rate: if tls.is_some() {
                    self.connections.max_packet_rate
                } else {
                    None
                },
                ..self.connections.clone()
            },
            tls,
            max_pending_per_address: Some(self.max_pending_per_address),
        }
    }
}

/// The mutual-TLS listeners as configured.
struct TlsServers {
    /// The MQTT 3.1.1 listener's settings.
    v4: ServerSettings,
    /// The MQTT 5 listener, when configured, as rumqttd's server map.
    v5: Option<HashMap<String, ServerSettings>>,
    /// The addresses they got.
    listeners: TlsListeners,
}

/// The mutual-TLS listeners: MQTT 3.1.1 and, when configured, MQTT 5.
fn tls_servers(config: &BrokerConfig, servers: &Servers) -> Result<TlsServers, BrokerError> {
    let files = rumqttd::TlsConfig::Rustls {
        capath: Some(config.tls.ca_file.display().to_string()),
        certpath: config.tls.cert_file.display().to_string(),
        keypath: config.tls.key_file.display().to_string(),
    };
    let tls_v4 = resolve_listen(config.tls.listen)?;
    check_free(tls_v4)?;
    let v4 = servers.settings("v4-tls", tls_v4, Some(files.clone()));
    let mut v5 = None;
    let tls_v5 = match config.tls.listen_v5 {
        Some(address) => {
            let address = resolve_listen(address)?;
            check_free(address)?;
            v5 = Some(HashMap::from([(
                "1".to_owned(),
                servers.settings("v5-tls", address, Some(files)),
            )]));
            Some(address)
        }
        None => None,
    };
    Ok(TlsServers {
        v4,
        v5,
        listeners: TlsListeners {
            v4: tls_v4,
            v5: tls_v5,
        },
    })
}

/// The password listener (TLS with the broker's certificate, the tenant from the user name):
/// its address and settings; each refused login is counted in `failures`.
fn password_server(
    config: &BrokerConfig,
    servers: &Servers,
    failures: &std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<(SocketAddr, ServerSettings), BrokerError> {
    let file = std::sync::Arc::new(
        passwords::PasswordFile::load(&config.passwords.file)
            .map_err(|e| BrokerError::Passwords(e.to_string()))?,
    );
    let address = resolve_listen(config.passwords.listen)?;
    check_free(address)?;
    let files = rumqttd::TlsConfig::Rustls {
        capath: None,
        certpath: config.tls.cert_file.display().to_string(),
        keypath: config.tls.key_file.display().to_string(),
    };
    let mut settings = servers.settings("v4-password", address, Some(files));
    settings.connections.tenant_from_username = true;
    let failures = std::sync::Arc::clone(failures);
    let boxes = file.len();
    settings.set_auth_handler(move |_client_id, username: String, password: String| {
        let file = std::sync::Arc::clone(&file);
        let failures = std::sync::Arc::clone(&failures);
        async move {
            let accepted = file.check(&username, &password);
            if !accepted {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(%username, "box password refused");
            }
            accepted
        }
    });
    tracing::info!(%address, boxes, file = %config.passwords.file.display(), "embedded MQTT broker listening for boxes with passwords (TLS, tenant per box)");
    Ok((address, settings))
}

/// The router's limits: connections, the commit log, retained messages, subscriptions and
/// topics, counting refusals in `guards`.
fn router_config(config: &BrokerConfig, guards: &rumqttd::guards::GuardCounters) -> RouterConfig {
    RouterConfig {
        max_connections: config.max_connections,
        max_outgoing_packet_count: 200,
        max_segment_size: config.log_segment_size,
        max_segment_count: config.log_segments,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
        retain_filters: Some(retain_filters()),
        max_retained_publishes: Some(config.max_retained),
        max_subscriptions_per_connection: Some(config.max_subscriptions_per_connection),
        max_filters: Some(config.max_filters),
        max_cached_topics: Some(config.max_cached_topics),
        counters: guards.clone(),
    }
}

/// Publishes each dispatched order on `heating/v1/{township}/{team}/orders` for the team's
/// technicians' clients, and alerts and incidents on their topics, through its own in-process
/// link; a link the router dropped is replaced at the next publish.
pub struct TeamOrderPublisher {
    links: InternalLinks,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// The link's client id, its sending half, and its receiving half, kept so the router never
    /// sees the link as gone.
    link: std::sync::Mutex<(String, LinkTx, LinkRx)>,
}

impl TeamOrderPublisher {
    pub fn new(
        links: InternalLinks,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<Self, BrokerError> {
        let link = links.open_named("publisher")?;
        Ok(Self {
            links,
            metrics,
            link: std::sync::Mutex::new(link),
        })
    }

    fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), String> {
        let mut link = self.link.lock().unwrap_or_else(|p| p.into_inner());
        // A link the router dropped still accepts publishes and loses them: its receiving half
        // is what tells (the router closed its end).
        if let Some(error) = link_closed(&mut link.2) {
            tracing::error!(%error, "the embedded broker dropped the gateway's publishing link; opening a new one");
            self.metrics.broker_link_reopened("publisher");
            *link = self
                .links
                .open_named("publisher")
                .map_err(|e| e.to_string())?;
        }
        link.1
            .try_publish(topic, payload)
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// Why the router closed `link_rx`, or `None` while it is open (notifications waiting on it
/// are taken and dropped: the publisher subscribes to nothing).
fn link_closed(link_rx: &mut LinkRx) -> Option<rumqttd::local::LinkError> {
    loop {
        match link_rx.recv_deadline(std::time::Instant::now()) {
            Ok(_) => continue,
            Err(rumqttd::local::LinkError::RecvTimeout(flume::RecvTimeoutError::Timeout)) => {
                return None
            }
            Err(error) => return Some(error),
        }
    }
}

/// The MQTT message of a dispatched order for its team: `heating/v1/{township}/{team}/orders`,
/// the order as JSON. `None` for an order without a team or with a malformed township. One
/// shape for the embedded broker and an external one.
fn order_notice(order: &crate::orders::store::OrderRow) -> Option<(String, Vec<u8>)> {
    let (Some(team), Ok(township)) = (&order.team_id, wire::TownshipId::parse(&order.township))
    else {
        return None;
    };
    let topic = wire::Topic::new(township, team.clone(), wire::TopicKind::Orders).to_string();
    Some((topic, serde_json::to_vec(order).unwrap_or_default()))
}

/// The MQTT message of a live event (alerts, incidents): its topic, the event as JSON.
fn live_notice(event: &crate::orders::LiveEvent) -> Option<(String, Vec<u8>)> {
    let topic = event.topic()?;
    Some((topic, serde_json::to_vec(event).unwrap_or_default()))
}

impl crate::orders::TeamNotifier for TeamOrderPublisher {
    fn order_dispatched(&self, order: &crate::orders::store::OrderRow) {
        let Some((topic, payload)) = order_notice(order) else {
            return;
        };
        if let Err(error) = self.publish(topic, payload) {
            tracing::warn!(order = order.id, %error, "team order notice could not be published");
        }
    }

    fn live_event(&self, event: &crate::orders::LiveEvent) {
        let Some((topic, payload)) = live_notice(event) else {
            return;
        };
        if let Err(error) = self.publish(topic.clone(), payload) {
            tracing::warn!(%topic, %error, "live event could not be published");
        }
    }

    fn notice(&self, topic: String, payload: Vec<u8>) {
        if let Err(error) = self.publish(topic.clone(), payload) {
            tracing::warn!(%topic, %error, "notice could not be published");
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
    /// The embedded broker's in-process link.
    Embedded(Box<EmbeddedSource>),
    /// A client of an external broker, subscribed to the owned townships.
    External(Box<external::ExternalSource>),
}

/// Ingest's link to the embedded broker, where ingest is in each of the broker's logs, and how
/// to open a new link when the router drops this one.
pub struct EmbeddedSource {
    links: InternalLinks,
    /// The link's client id (random, see [`InternalLinks`]).
    client_id: String,
    link_tx: LinkTx,
    link_rx: LinkRx,
    logs: LogPositions,
    /// The router unscheduled the link and has not been told it is ready again.
    wake_pending: bool,
    /// Links opened to replace a dropped one, not yet taken by [`MessageSource::take_reopened`].
    reopened: u64,
}

impl EmbeddedSource {
    /// Opens ingest's link (not yet subscribed: [`MessageSource::subscribe`]).
    pub fn open(links: InternalLinks) -> Result<Self, BrokerError> {
        let (client_id, link_tx, link_rx) = links.open_named("ingest")?;
        Ok(Self {
            links,
            client_id,
            link_tx,
            link_rx,
            logs: LogPositions::default(),
            wake_pending: false,
            reopened: 0,
        })
    }

    /// Subscribes to telemetry and status of every township, directly and under every tenant
    /// prefix (boxes on the TLS listeners publish under `/tenants/{tenant}/`).
    fn subscribe(&mut self) -> Result<(), BrokerError> {
        for kind in [wire::TopicKind::Telemetry, wire::TopicKind::Status] {
            let filter = wire::Topic::all_filter(kind);
            for filter in [tenants::any_tenant_filter(&filter), filter] {
                self.link_tx
                    .subscribe(filter)
                    .map_err(|e| BrokerError::Link(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Replaces a link the router dropped with a new, subscribed one. What was published
    /// between the two is not seen by ingest (the new subscription starts at the logs' ends).
    fn reopen(&mut self, error: &dyn std::fmt::Display) -> Result<(), BrokerError> {
        tracing::error!(%error, "the embedded broker dropped ingest's link; opening a new one");
        let (client_id, link_tx, link_rx) = self.links.open_named("ingest")?;
        self.client_id = client_id;
        self.link_tx = link_tx;
        self.link_rx = link_rx;
        self.logs = LogPositions::default();
        self.wake_pending = false;
        self.reopened += 1;
        self.subscribe()
    }

    async fn next(&mut self) -> Result<(bytes::Bytes, bytes::Bytes), BrokerError> {
        loop {
            // The router stops forwarding to a link whose buffer filled up and waits for it to
            // say it is ready again (as rumqttd's own network links do once they have written
            // out what they had); without this the link stalls for good after the first burst.
            // The flag is cleared only once the router took the message: this future is dropped
            // whenever ingest's select! picks another branch, and the router's queue (1,000
            // events) may be full, so the send can be interrupted.
            if self.wake_pending {
                if let Err(error) = self.link_rx.wake().await {
                    self.reopen(&error)?;
                    continue;
                }
                self.wake_pending = false;
            }
            match self.link_rx.next().await {
                Ok(Some(rumqttd::Notification::Forward(forward))) => {
                    if let Some((_, offset)) = forward.cursor {
                        self.logs.read(&forward.publish.topic, offset);
                    }
                    return Ok((forward.publish.topic, forward.publish.payload));
                }
                Ok(Some(rumqttd::Notification::Unschedule)) => self.wake_pending = true,
                Ok(_) => {}
                Err(error) => self.reopen(&error)?,
            }
        }
    }
}

impl MessageSource {
    /// Subscribes the embedded link to telemetry and status; the external client subscribes on
    /// every connect by itself.
    pub fn subscribe(&mut self) -> Result<(), BrokerError> {
        match self {
            MessageSource::Embedded(source) => source.subscribe(),
            MessageSource::External(_) => Ok(()),
        }
    }

    /// Messages the embedded broker dropped from its logs before ingest read them, since the
    /// last call (always 0 for an external broker, whose losses it counts itself).
    pub fn take_lost(&mut self) -> u64 {
        match self {
            MessageSource::Embedded(source) => source.logs.take_lost(),
            MessageSource::External(_) => 0,
        }
    }

    /// Links opened to replace one the embedded router dropped, since the last call.
    pub fn take_reopened(&mut self) -> u64 {
        match self {
            MessageSource::Embedded(source) => std::mem::take(&mut source.reopened),
            MessageSource::External(_) => 0,
        }
    }

    /// The next message's topic and payload; `Err` only when no new link can be opened (the
    /// embedded router itself is gone) or the external client's task has stopped.
    pub async fn next(&mut self) -> Result<(bytes::Bytes, bytes::Bytes), BrokerError> {
        match self {
            MessageSource::Embedded(source) => source.next().await,
            MessageSource::External(source) => source.next().await.ok_or_else(|| {
                BrokerError::Link("the external broker client's task stopped".into())
            }),
        }
    }
}

/// Publishes dispatched orders through the external broker.
pub struct ExternalOrderPublisher {
    pub client: rumqttc::AsyncClient,
}

impl crate::orders::TeamNotifier for ExternalOrderPublisher {
    fn order_dispatched(&self, order: &crate::orders::store::OrderRow) {
        let Some((topic, payload)) = order_notice(order) else {
            return;
        };
        if let Err(error) =
            self.client
                .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
        {
            tracing::warn!(order = order.id, %error, "team order notice could not be queued");
        }
    }

    fn live_event(&self, event: &crate::orders::LiveEvent) {
        let Some((topic, payload)) = live_notice(event) else {
            return;
        };
        if let Err(error) =
            self.client
                .try_publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, payload)
        {
            tracing::warn!(%topic, %error, "live event could not be queued");
        }
    }

    fn notice(&self, topic: String, payload: Vec<u8>) {
        if let Err(error) =
            self.client
                .try_publish(topic.clone(), rumqttc::QoS::AtLeastOnce, false, payload)
        {
            tracing::warn!(%topic, %error, "notice could not be queued");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn ingest_opens_a_new_link_when_the_router_drops_its_own() {
        let config = BrokerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            ..BrokerConfig::default()
        };
        let broker = start(&config).expect("broker");
        let mut source = EmbeddedSource::open(broker.links.clone()).expect("link");
        source.subscribe().expect("subscribe");
        // Whoever takes a link's client id makes the router drop that link; the ids are random,
        // so only the gateway itself could, but a dropped link must not end ingest.
        let _usurper = broker.links.open_as(&source.client_id).expect("usurper");
        let (mut publisher, _publisher_rx) = broker.links.open("test").expect("publisher");
        let topic = "heating/v1/yanqing/dev-1/telemetry";
        let received = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                publisher.try_publish(topic, "{}").expect("publish");
                tokio::select! {
                    message = source.next() => return message,
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
        .await
        .expect("a message after the link was replaced")
        .expect("a new link");
        assert_eq!(&received.0[..], topic.as_bytes());
        assert_eq!(source.reopened, 1, "replaced once");
    }

    #[tokio::test]
    async fn the_publisher_opens_a_new_link_when_the_router_drops_its_own() {
        let config = BrokerConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            ..BrokerConfig::default()
        };
        let broker = start(&config).expect("broker");
        let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
        let publisher =
            TeamOrderPublisher::new(broker.links.clone(), std::sync::Arc::clone(&metrics))
                .expect("publisher");
        let (mut listener_tx, mut listener_rx) = broker.links.open("listener").expect("link");
        listener_tx
            .subscribe("heating/v1/+/+/orders")
            .expect("subscribe");
        let id = publisher.link.lock().expect("lock").0.clone();
        let _usurper = broker.links.open_as(&id).expect("usurper");
        let topic = "heating/v1/yanqing/team-1/orders";
        let received = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                publisher
                    .publish(topic.to_owned(), b"{}".to_vec())
                    .expect("publish");
                tokio::select! {
                    notification = listener_rx.next() => {
                        if let Ok(Some(rumqttd::Notification::Forward(forward))) = notification {
                            return forward.publish.topic;
                        }
                    }
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                }
            }
        })
        .await
        .expect("an order notice after the link was replaced");
        assert_eq!(&received[..], topic.as_bytes());
        assert_eq!(metrics.broker_links_reopened().get("publisher"), Some(&1));
    }

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
