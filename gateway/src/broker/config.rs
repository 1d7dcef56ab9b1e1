//! The broker's configuration (`[broker]`): the embedded rumqttd broker's listeners (plain
//! loopback, mutual TLS, passwords) and limits, or an external broker (`[broker.external]`).
//! Validated with the rest of the configuration in [`crate::config`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Which MQTT broker the gateway uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrokerMode {
    /// The embedded rumqttd broker: one process serves the district.
    Embedded,
    /// An external broker or cluster (`[broker.external]`): scale-out mode.
    External,
}

/// MQTT broker settings: the embedded rumqttd broker, or an external one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// `embedded` (default) or `external`.
    #[serde(default = "default_broker_mode")]
    pub mode: BrokerMode,
    /// The external broker and the townships this instance owns (mode `external`).
    #[serde(default)]
    pub external: Option<crate::broker::external::ExternalBrokerConfig>,
    /// Plain (no TLS, no authentication) MQTT 3.1.1 listener address, for local tools and the
    /// demo. Port 0 picks a free port (printed at start-up). Must be a loopback address unless
    /// `insecure_plain_listener = true`: a client on it may publish and subscribe anywhere.
    #[serde(default = "default_mqtt_listen")]
    pub listen: SocketAddr,
    /// Allow `listen` on an address other than loopback. Anyone who reaches it can publish
    /// faults for any device and read every command and order: only for an isolated test
    /// network. Production boxes use the mutual-TLS listeners.
    #[serde(default)]
    pub insecure_plain_listener: bool,
    /// Most TLS handshakes one remote address may have in progress (each is also bounded by
    /// `connection_timeout`); further connections from it are closed at once and counted.
    /// Boxes behind one carrier NAT share an address: keep it well above their reconnect burst.
    #[serde(default = "default_max_pending_handshakes")]
    pub max_pending_handshakes_per_address: usize,
    /// Most retained messages the broker keeps. Retained messages are kept only on edge boxes'
    /// status topics; others are delivered but not kept. Beyond the cap a new topic's retained
    /// status is delivered, not kept (counted).
    #[serde(default = "default_max_retained")]
    pub max_retained: usize,
    /// Most subscriptions one client may hold (an edge box subscribes once per device);
    /// a subscription beyond it disconnects the client (counted).
    #[serde(default = "default_max_subscriptions_per_connection")]
    pub max_subscriptions_per_connection: usize,
    /// Most distinct subscription filters in the broker (each has its own log); a subscription
    /// that would add one more disconnects its client (counted).
    #[serde(default = "default_max_filters")]
    pub max_filters: usize,
    /// Most distinct topics whose matching subscriptions the broker remembers; the cache is
    /// emptied when full (counted). Keep it above the fleet's topics (devices and boxes).
    #[serde(default = "default_max_cached_topics")]
    pub max_cached_topics: usize,
    /// Most MQTT packets per second one client of the TLS listeners may send on average (the
    /// plain listener is for local tools and is not limited; an edge box sends a few
    /// per minute, and its backlog after an outage at this rate); a faster client is not read
    /// from until it is back within the rate: TCP pushes back, nothing is dropped (counted).
    #[serde(default = "default_max_packets_per_second")]
    pub max_packets_per_second: u32,
    /// Packets a client may send at once above that rate (the first seconds of a backlog).
    #[serde(default = "default_packet_burst")]
    pub packet_burst: u32,
    /// Largest accepted MQTT payload in bytes; larger publishes close the connection.
    #[serde(default = "default_max_payload")]
    pub max_payload_size: usize,
    /// Most simultaneous client connections.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// How long a new connection may take to send CONNECT.
    #[serde(default = "default_connection_timeout", with = "humantime_serde")]
    pub connection_timeout: Duration,
    /// Pause of each listener after accepting a connection: caps the connection rate (a
    /// reconnect storm after an outage, or a client opening connections in a loop).
    #[serde(default = "default_next_connection_delay", with = "humantime_serde")]
    pub next_connection_delay: Duration,
    /// Size in bytes of one segment of the broker's in-memory log (one log per ingest
    /// subscription) that holds messages until ingest reads them.
    #[serde(default = "default_log_segment_size")]
    pub log_segment_size: usize,
    /// Segments each log keeps besides the one being written: with `log_segment_size` this is how
    /// far ingest may fall behind before the broker drops the oldest messages (counted in
    /// `gateway_broker_messages_lost_total`), and most of the broker's memory.
    #[serde(default = "default_log_segments")]
    pub log_segments: usize,
    /// The mutual-TLS listeners for edge boxes (`enabled = true` in production).
    #[serde(default)]
    pub tls: BrokerTlsConfig,
    /// A TLS listener for edge boxes without a client certificate, which log in with a per-box
    /// password instead (brownfield boxes); off unless `enabled`.
    #[serde(default)]
    pub passwords: BrokerPasswordsConfig,
}

/// The password listener: TLS with the broker's certificate (`broker.tls.cert_file` and
/// `key_file`), no client certificate; each box logs in with its tenant id as user name and the
/// password `gateway certs password` made for it, and is confined to `/tenants/{tenant}/` like a
/// box with a certificate.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerPasswordsConfig {
    /// Whether the password listener runs.
    #[serde(default)]
    pub enabled: bool,
    /// Its address (MQTT 3.1.1 over TLS).
    #[serde(default = "default_passwords_listen")]
    pub listen: SocketAddr,
    /// The password file (`tenant salt sha256` per line, written by `gateway certs password`);
    /// relative to the config file. Re-read when it changes: deleting a line revokes a box.
    #[serde(default = "default_passwords_file")]
    pub file: PathBuf,
}

impl Default for BrokerPasswordsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_passwords_listen(),
            file: default_passwords_file(),
        }
    }
}

fn default_passwords_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8885))
}
fn default_passwords_file() -> PathBuf {
    PathBuf::from("tls/box-passwords")
}

/// Mutual TLS of the embedded broker: every edge box presents a certificate issued by the
/// district CA (`gateway certs box`); the certificate's Organization is the box's tenant id and
/// the broker confines the box's publishes to `/tenants/{tenant}/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerTlsConfig {
    /// Whether the TLS listeners run.
    #[serde(default)]
    pub enabled: bool,
    /// MQTT 3.1.1 listener over TLS.
    #[serde(default = "default_tls_listen")]
    pub listen: SocketAddr,
    /// MQTT 5 listener over TLS; unset: none.
    #[serde(default)]
    pub listen_v5: Option<SocketAddr>,
    /// PEM certificate of the CA that signs the boxes' certificates (`ca.pem` of
    /// `gateway certs init-ca`); relative to the config file.
    #[serde(default = "default_tls_ca_file")]
    pub ca_file: PathBuf,
    /// PEM certificate (chain) of the broker (`server.pem` of `gateway certs server`).
    #[serde(default = "default_tls_cert_file")]
    pub cert_file: PathBuf,
    /// PEM private key of `cert_file`.
    #[serde(default = "default_tls_key_file")]
    pub key_file: PathBuf,
}

impl Default for BrokerTlsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_tls_listen(),
            listen_v5: None,
            ca_file: default_tls_ca_file(),
            cert_file: default_tls_cert_file(),
            key_file: default_tls_key_file(),
        }
    }
}

fn default_tls_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8883))
}
fn default_tls_ca_file() -> PathBuf {
    PathBuf::from("tls/ca.pem")
}
fn default_tls_cert_file() -> PathBuf {
    PathBuf::from("tls/server.pem")
}
fn default_tls_key_file() -> PathBuf {
    PathBuf::from("tls/server.key")
}
fn default_next_connection_delay() -> Duration {
    Duration::from_millis(2)
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            mode: default_broker_mode(),
            external: None,
            listen: default_mqtt_listen(),
            insecure_plain_listener: false,
            max_pending_handshakes_per_address: default_max_pending_handshakes(),
            max_retained: default_max_retained(),
            max_subscriptions_per_connection: default_max_subscriptions_per_connection(),
            max_filters: default_max_filters(),
            max_cached_topics: default_max_cached_topics(),
            max_packets_per_second: default_max_packets_per_second(),
            packet_burst: default_packet_burst(),
            max_payload_size: default_max_payload(),
            max_connections: default_max_connections(),
            connection_timeout: default_connection_timeout(),
            next_connection_delay: default_next_connection_delay(),
            log_segment_size: default_log_segment_size(),
            log_segments: default_log_segments(),
            tls: BrokerTlsConfig::default(),
            passwords: BrokerPasswordsConfig::default(),
        }
    }
}

fn default_max_pending_handshakes() -> usize {
    64
}
fn default_max_retained() -> usize {
    50_000
}
fn default_max_subscriptions_per_connection() -> usize {
    64
}
fn default_max_filters() -> usize {
    250_000
}
fn default_max_cached_topics() -> usize {
    500_000
}
fn default_max_packets_per_second() -> u32 {
    100
}
fn default_packet_burst() -> u32 {
    1_000
}
fn default_broker_mode() -> BrokerMode {
    BrokerMode::Embedded
}
fn default_mqtt_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}
fn default_max_payload() -> usize {
    16 * 1024
}
fn default_log_segment_size() -> usize {
    32 * 1024 * 1024
}
fn default_log_segments() -> usize {
    8
}
fn default_max_connections() -> usize {
    20_000
}
fn default_connection_timeout() -> Duration {
    Duration::from_secs(10)
}
