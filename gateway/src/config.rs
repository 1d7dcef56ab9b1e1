//! The gateway's configuration: one TOML file with environment overrides (`GATEWAY__HTTP__LISTEN`),
//! parsed once at start-up into a validated [`GatewayConfig`]; errors name file, line and field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use layered_config::LayeredError;
use serde::Deserialize;
use wire::diagnostics;

pub use crate::broker::config::{BrokerConfig, BrokerMode, BrokerPasswordsConfig, BrokerTlsConfig};

/// Prefix of environment overrides: `GATEWAY__BROKER__LISTEN=127.0.0.1:1884` sets `broker.listen`.
pub const ENV_PREFIX: &str = "GATEWAY";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The embedded MQTT broker.
    #[serde(default)]
    pub broker: BrokerConfig,
    /// The HTTP API.
    #[serde(default)]
    pub http: HttpConfig,
    /// The work-order database.
    #[serde(default)]
    pub store: StoreConfig,
    /// Validation of incoming telemetry.
    #[serde(default)]
    pub ingest: IngestConfig,
    /// The rule engine.
    #[serde(default)]
    pub rules: RulesConfig,
    /// Access to the HTTP API.
    #[serde(default)]
    pub api: ApiConfig,
    /// SLA deadlines of work orders.
    #[serde(default)]
    pub sla: crate::orders::sla::SlaConfig,
    /// The registry of households, devices and teams.
    #[serde(default)]
    pub registry: RegistryConfig,
    /// History in InfluxDB v2 (off unless `url` is set).
    #[serde(default)]
    pub influxdb: crate::sinks::influxdb::InfluxConfig,
    /// Escalations, SLA warnings and supply incidents pushed to people (webhook, SMS gateway).
    #[serde(default)]
    pub notify: crate::notify::NotifyConfig,
    /// Risk scores and the cold-wave sweep (防寒): the forecast source, the cold-wave rule and
    /// the daily capacity of preventive visits and calls per township.
    #[serde(default)]
    pub prevention: crate::prevention::PreventionConfig,
    /// Vendor delegation: the call-out fee a warranty vendor owes the vendor of its period that
    /// takes an order over, beside the parts.
    #[serde(default)]
    pub delegation: crate::orders::delegation::DelegationConfig,
    /// Inspection campaigns (取暖季前巡检): the defaults of a campaign's day plan (inspections
    /// per technician per day, visits per unit) and the bounds of a campaign.
    #[serde(default)]
    pub campaigns: crate::orders::campaigns::CampaignConfig,
}

/// Who may use the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `tokens`: every `/api/v1` request needs `Authorization: Bearer <token>` of a configured
    /// token; `disabled`: no check at all (the embedded demo on 127.0.0.1 only).
    #[serde(default = "default_auth")]
    pub auth: AuthMode,
    /// The bearer tokens and their roles.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            auth: default_auth(),
            tokens: Vec::new(),
        }
    }
}

fn default_auth() -> AuthMode {
    AuthMode::Tokens
}

/// Whether the API checks bearer tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    Tokens,
    Disabled,
}

/// One bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shown as the actor of the order events it causes).
    pub name: String,
    /// The secret, at least 16 characters, or `env:VARIABLE` to read it from the environment
    /// (keep secrets in the service's environment file, not in git).
    pub token: String,
    /// `operator` (everything), `township` (own township: dispatch, reassign, close, cancel,
    /// callback, escalate), `team` (own team's orders), `read_only` (read everything; may only
    /// escalate (督办), with a note: the 区/市 bureaus).
    pub role: crate::auth::Role,
    /// The township of a `township` token.
    #[serde(default)]
    pub township: Option<String>,
    /// The team of a `team` token.
    #[serde(default)]
    pub team: Option<String>,
    /// A technician's own token (role `team`, with the technician's team): the registry id of
    /// the technician. It sees the team's orders and the technician's own, and an accept
    /// through it assigns the order to the technician.
    #[serde(default)]
    pub technician: Option<String>,
}

/// The registry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// A folder of registry CSV files imported at start-up (townships.csv, villages.csv...);
    /// relative to the config file. Unset: use what the database holds.
    #[serde(default)]
    pub import: Option<PathBuf>,
}

/// HTTP API settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address of the API. Port 0 picks a free port (printed at start-up).
    #[serde(default = "default_http_listen")]
    pub listen: SocketAddr,
    /// How long a client may take to send a request's headers; a slower one is disconnected.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long one request may take, body read and answer (the event stream only to open).
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most simultaneous HTTP connections (each open event stream holds one); further ones
    /// are closed at once and counted.
    #[serde(default = "default_http_max_connections")]
    pub max_connections: usize,
    /// A second listener that serves only `/metrics`, without a token, for a Prometheus agent
    /// on the same machine; loopback only. Unset: `/metrics` is served on `listen` and needs a
    /// bearer token like the API.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_http_listen(),
            header_read_timeout: default_header_read_timeout(),
            request_timeout: default_request_timeout(),
            max_connections: default_http_max_connections(),
            metrics_listen: None,
        }
    }
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_http_max_connections() -> usize {
    1024
}

fn default_http_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

/// Work-order database settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// SQLite file (created with its folder if missing); relative paths are relative to the config file.
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: default_store_path(),
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("var/gateway.sqlite")
}

/// Ingest validation settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestConfig {
    /// Readings stamped further than this ahead of the gateway's clock are rejected.
    #[serde(default = "default_max_clock_skew", with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_clock_skew: default_max_clock_skew(),
        }
    }
}

fn default_max_clock_skew() -> Duration {
    Duration::from_secs(300)
}

/// Where event-time "now" (the watermark) comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Clock {
    /// The gateway's clock minus `lateness`: live operation; offline is judged even when the
    /// whole fleet is silent. Readings stamped too far in the future are rejected.
    Wall,
    /// The newest accepted reading's timestamp minus `lateness`: replays and accelerated
    /// simulations, where readings carry simulated time. The future-timestamp check is off.
    Event,
}

/// Rule engine settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Rule file (TOML). Unset: the built-in default heating pack.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Source of the watermark: `wall` (live) or `event` (replay, accelerated simulation).
    #[serde(default = "default_clock")]
    pub clock: Clock,
    /// How far event-time "now" (the watermark) trails the gateway's clock, to let late readings in.
    #[serde(default = "default_lateness", with = "humantime_serde")]
    pub lateness: Duration,
    /// How often the watermark advances (fires offline rules without new readings).
    #[serde(default = "default_tick", with = "humantime_serde")]
    pub tick: Duration,
    /// How often the rule file is checked for changes (hot reload; only with `path`).
    #[serde(default = "default_reload_every", with = "humantime_serde")]
    pub reload_every: Duration,
    /// How often the rule state is saved to its snapshot file (it is also saved at shutdown).
    #[serde(default = "default_snapshot_every", with = "humantime_serde")]
    pub snapshot_every: Duration,
    /// File of the saved rule state (JSON, replaced atomically at each save); relative to the
    /// config file. Unset: `rules-snapshot.json` in the folder of `store.path`.
    #[serde(default)]
    pub snapshot_path: Option<PathBuf>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            path: None,
            clock: default_clock(),
            reload_every: default_reload_every(),
            lateness: default_lateness(),
            tick: default_tick(),
            snapshot_every: default_snapshot_every(),
            snapshot_path: None,
        }
    }
}

fn default_reload_every() -> Duration {
    Duration::from_secs(5)
}
fn default_clock() -> Clock {
    Clock::Wall
}
fn default_lateness() -> Duration {
    Duration::from_secs(5)
}
fn default_tick() -> Duration {
    Duration::from_secs(1)
}
fn default_snapshot_every() -> Duration {
    Duration::from_secs(60)
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot be read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{place}: {message}")]
    Invalid { place: String, message: String },
    #[error("environment override: {0}")]
    Environment(String),
}

impl GatewayConfig {
    /// Loads `path` (or only defaults and environment when `None`) and validates it.
    /// Relative paths inside the file are resolved against the file's folder.
    pub fn load(path: Option<&Path>) -> Result<GatewayConfig, ConfigError> {
        let (text, origin) = match path {
            Some(path) => (
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
                path.display().to_string(),
            ),
            None => (String::new(), "<defaults>".to_owned()),
        };
        let mut config = Self::parse(&text, &origin)?;
        config.resolve_paths(path.and_then(Path::parent).unwrap_or(Path::new(".")));
        config.resolve_secrets(&text, &origin)?;
        config.validate(&text, &origin)?;
        Ok(config)
    }

    /// Parses the file's text (first on its own, so that an error names its line and column),
    /// then with the environment's overrides on top.
    fn parse(text: &str, origin: &str) -> Result<GatewayConfig, ConfigError> {
        layered_config::load(text, origin, ENV_PREFIX).map_err(|error| match error {
            LayeredError::Invalid { place, message } => ConfigError::Invalid { place, message },
            LayeredError::Environment(message) => ConfigError::Environment(message),
        })
    }

    /// Resolves every relative path the config names against `base`, the file's folder.
    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        resolve(&mut self.store.path);
        let external_tls = self
            .broker
            .external
            .as_mut()
            .and_then(|external| external.tls.as_mut());
        let (external_ca, external_cert, external_key) = match external_tls {
            Some(tls) => (
                Some(&mut tls.ca_file),
                tls.client_cert.as_mut(),
                tls.client_key.as_mut(),
            ),
            None => (None, None, None),
        };
        for path in [
            self.rules.path.as_mut(),
            self.rules.snapshot_path.as_mut(),
            Some(&mut self.broker.tls.ca_file),
            Some(&mut self.broker.tls.cert_file),
            Some(&mut self.broker.tls.key_file),
            Some(&mut self.broker.passwords.file),
            external_ca,
            external_cert,
            external_key,
            self.registry.import.as_mut(),
            self.prevention.forecast_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            resolve(path);
        }
    }

    /// Replaces each `env:VARIABLE` secret (API tokens, notify secrets) with the variable's
    /// value; a variable that is not set is an error naming the field.
    fn resolve_secrets(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        for (index, token) in self.api.tokens.iter_mut().enumerate() {
            if let Some(variable) = token.token.strip_prefix("env:") {
                token.token = std::env::var(variable).map_err(|_| ConfigError::Invalid {
                    place: format!(
                        "{} field `api.tokens[{index}].token`",
                        diagnostics::place(origin, text, &format!("api.tokens[{index}].token"))
                    ),
                    message: format!("environment variable {variable} is not set"),
                })?;
            }
        }
        if let Err(crate::notify::NotifyError::Invalid { field, message }) =
            self.notify.resolve_secrets()
        {
            return Err(ConfigError::Invalid {
                place: format!(
                    "{} field `{field}`",
                    diagnostics::place(origin, text, &field)
                ),
                message,
            });
        }
        Ok(())
    }

    /// Checks every section, in the order of the sections below; the error names the first
    /// bad field and where it is written.
    fn validate(&self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: &str| ConfigError::Invalid {
            place: format!(
                "{} field `{field}`",
                diagnostics::place(origin, text, field)
            ),
            message: message.to_owned(),
        };
        self.validate_broker(&invalid)?;
        self.validate_rules(&invalid)?;
        self.validate_sections(&invalid)?;
        self.validate_influxdb(&invalid)?;
        self.validate_tokens(&invalid)?;
        self.validate_http(&invalid)
    }

    /// `[broker]`: the payload size, the external broker, the log, timing and admission
    /// limits, the plain listener, and the TLS and password listeners when enabled.
    fn validate_broker(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.broker.max_payload_size < 512 {
            return Err(invalid(
                "broker.max_payload_size",
                "must be at least 512 bytes (one telemetry message)",
            ));
        }
        if self.broker.mode == BrokerMode::External && self.broker.external.is_none() {
            return Err(invalid(
                "broker.external",
                "mode = \"external\" needs a [broker.external] table with host and townships",
            ));
        }
        if let (BrokerMode::External, Some(external)) = (self.broker.mode, &self.broker.external) {
            validate_external(external, invalid)?;
        }
        self.validate_broker_timing(invalid)?;
        if self.broker.mode == BrokerMode::Embedded
            && !self.broker.listen.ip().is_loopback()
            && !self.broker.insecure_plain_listener
        {
            return Err(invalid(
                "broker.listen",
                &format!(
                    "{} is not a loopback address: the plain listener has no TLS and no authentication, so anyone who reaches it could publish faults for any device and read every command; bind it to 127.0.0.1, let boxes use the mutual-TLS listeners ([broker.tls]), or set broker.insecure_plain_listener = true on an isolated test network",
                    self.broker.listen
                ),
            ));
        }
        self.validate_broker_limits(invalid)?;
        if self.broker.tls.enabled {
            self.validate_tls(invalid)?;
        }
        if self.broker.passwords.enabled {
            self.validate_passwords(invalid)?;
        }
        Ok(())
    }

    /// The broker's log segments, connection count and the timings rumqttd can hold.
    fn validate_broker_timing(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.broker.log_segment_size < 64 * 1024 {
            return Err(invalid(
                "broker.log_segment_size",
                "must be at least 65536 bytes",
            ));
        }
        if self.broker.log_segments == 0 {
            return Err(invalid("broker.log_segments", "must be at least 1"));
        }
        if self.broker.max_connections == 0 {
            return Err(invalid("broker.max_connections", "must be at least 1"));
        }
        if self.broker.connection_timeout.as_millis() > u128::from(u16::MAX) {
            return Err(invalid(
                "broker.connection_timeout",
                "must be at most 65s (rumqttd counts it in u16 milliseconds)",
            ));
        }
        if self.broker.next_connection_delay > Duration::from_secs(10) {
            return Err(invalid(
                "broker.next_connection_delay",
                "must be at most 10s (each listener admits one connection per this pause)",
            ));
        }
        Ok(())
    }

    /// The broker's admission and memory limits are each at least 1.
    fn validate_broker_limits(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        for (field, value) in [
            (
                "broker.max_pending_handshakes_per_address",
                self.broker.max_pending_handshakes_per_address,
            ),
            ("broker.max_retained", self.broker.max_retained),
            (
                "broker.max_subscriptions_per_connection",
                self.broker.max_subscriptions_per_connection,
            ),
            ("broker.max_filters", self.broker.max_filters),
            ("broker.max_cached_topics", self.broker.max_cached_topics),
            (
                "broker.max_packets_per_second",
                self.broker.max_packets_per_second as usize,
            ),
            ("broker.packet_burst", self.broker.packet_burst as usize),
        ] {
            if value == 0 {
                return Err(invalid(field, "must be at least 1"));
            }
        }
        Ok(())
    }

    /// `[rules]`: the periods are greater than 0 and the snapshot path can be written.
    fn validate_rules(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.rules.reload_every.is_zero() {
            return Err(invalid("rules.reload_every", "must be greater than 0"));
        }
        if self.rules.tick.is_zero() {
            return Err(invalid("rules.tick", "must be greater than 0"));
        }
        if self.rules.snapshot_every.is_zero() {
            return Err(invalid("rules.snapshot_every", "must be greater than 0"));
        }
        self.validate_snapshot_path(invalid)
    }

    /// The sections that check themselves: `[prevention]`, `[campaigns]`, `[delegation]`,
    /// `[notify]` and `[sla]`.
    fn validate_sections(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if let Err((field, message)) = self.prevention.validate() {
            return Err(invalid(&field, &message));
        }
        if let Err((field, message)) = self.campaigns.validate() {
            return Err(invalid(&field, &message));
        }
        if let Err((field, message)) = self.delegation.validate() {
            return Err(invalid(&field, &message));
        }
        match self.notify.validate() {
            Ok(()) => {}
            Err(crate::notify::NotifyError::Invalid { field, message }) => {
                return Err(invalid(&field, &message))
            }
            Err(other) => return Err(invalid("notify", &other.to_string())),
        }
        if let Err((field, message)) = self.sla.check() {
            return Err(invalid(&field, &message));
        }
        Ok(())
    }

    /// `[influxdb]`, when a URL is set: the batch fits the buffer and the periods are set.
    fn validate_influxdb(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.influxdb.url.is_some() {
            if self.influxdb.batch_size == 0 || self.influxdb.batch_size > self.influxdb.max_buffer
            {
                return Err(invalid(
                    "influxdb.batch_size",
                    "must be at least 1 and at most max_buffer",
                ));
            }
            if self.influxdb.flush_every.is_zero() || self.influxdb.timeout.is_zero() {
                return Err(invalid(
                    "influxdb.flush_every",
                    "flush_every and timeout must be greater than 0",
                ));
            }
        }
        Ok(())
    }

    /// `[[api.tokens]]`: each a secret of its own (long, not a placeholder, not shared) with
    /// the scope its role needs.
    fn validate_tokens(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (index, token) in self.api.tokens.iter().enumerate() {
            let field = |name: &str| format!("api.tokens[{index}].{name}");
            if token.token.chars().count() < 16 {
                return Err(invalid(&field("token"), "must be at least 16 characters"));
            }
            if let Some(why) = placeholder(&token.token) {
                return Err(invalid(
                    &field("token"),
                    &format!("looks like a placeholder ({why}), not a secret; generate one, e.g. `head -c 24 /dev/urandom | base64`"),
                ));
            }
            if !seen.insert(token.token.as_str()) {
                return Err(invalid(&field("token"), "is used by another token"));
            }
            match token.role {
                crate::auth::Role::Township if token.township.is_none() => {
                    return Err(invalid(
                        &field("township"),
                        "a township token needs its township",
                    ))
                }
                crate::auth::Role::Team if token.team.is_none() => {
                    return Err(invalid(&field("team"), "a team token needs its team"))
                }
                role if role != crate::auth::Role::Team && token.technician.is_some() => {
                    return Err(invalid(
                        &field("technician"),
                        "only a team token may name a technician (role = \"team\", with the technician's team)",
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `[http]` and `api.auth`: timeouts and connections are set, `/metrics` without a token
    /// only on loopback, and authentication is off only on loopback and on only with tokens.
    fn validate_http(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        if self.http.header_read_timeout.is_zero() || self.http.request_timeout.is_zero() {
            return Err(invalid(
                "http.header_read_timeout",
                "header_read_timeout and request_timeout must be greater than 0",
            ));
        }
        if self.http.max_connections == 0 {
            return Err(invalid("http.max_connections", "must be at least 1"));
        }
        if let Some(address) = self.http.metrics_listen {
            if !address.ip().is_loopback() {
                return Err(invalid(
                    "http.metrics_listen",
                    &format!("{address} is not a loopback address: this listener serves /metrics without a token; leave it unset to serve /metrics behind a bearer token on http.listen"),
                ));
            }
        }
        if self.api.auth == AuthMode::Disabled && !self.http.listen.ip().is_loopback() {
            return Err(invalid(
                "api.auth",
                &format!(
                    "\"disabled\" makes everyone who reaches the HTTP port an operator; http.listen {} is not a loopback address: configure [[api.tokens]] or bind http.listen to 127.0.0.1",
                    self.http.listen
                ),
            ));
        }
        if self.api.auth == AuthMode::Tokens && self.api.tokens.is_empty() {
            return Err(invalid(
                "api.tokens",
                "no token is configured; add [[api.tokens]] or set api.auth = \"disabled\" (local demo only)",
            ));
        }
        Ok(())
    }
}

/// `[broker.external]` in external mode: its CA and client certificate files hold PEM blocks
/// (client certificate and key together), and a broker off this machine needs TLS unless the
/// plain connection is asked for.
fn validate_external(
    external: &crate::broker::external::ExternalBrokerConfig,
    invalid: &dyn Fn(&str, &str) -> ConfigError,
) -> Result<(), ConfigError> {
    match &external.tls {
        Some(tls) => {
            pem(invalid, "broker.external.tls.ca_file", &tls.ca_file, "CERTIFICATE")?;
            match (&tls.client_cert, &tls.client_key) {
                (Some(cert), Some(key)) => {
                    pem(invalid, "broker.external.tls.client_cert", cert, "CERTIFICATE")?;
                    pem(invalid, "broker.external.tls.client_key", key, "")?;
                }
                (None, None) => {}
                _ => {
                    return Err(invalid(
                        "broker.external.tls",
                        "client_cert and client_key go together",
                    ))
                }
            }
        }
        None if !external.host_is_loopback() && !external.insecure_plain_connection => {
            return Err(invalid(
                "broker.external.tls",
                &format!(
                    "the broker {:?} is not on this machine: add [broker.external.tls] with its CA (ca_file), or set broker.external.insecure_plain_connection = true on an isolated test network",
                    external.host
                ),
            ))
        }
        None => {}
    }
    Ok(())
}

/// `path` can be read and holds a PEM block of `label`.
fn pem(
    invalid: &dyn Fn(&str, &str) -> ConfigError,
    field: &str,
    path: &Path,
    label: &str,
) -> Result<(), ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| invalid(field, &format!("{} cannot be read: {e}", path.display())))?;
    if !text.contains(&format!("-----BEGIN {label}")) {
        return Err(invalid(
            field,
            &format!("{} holds no PEM {label}", path.display()),
        ));
    }
    Ok(())
}

/// Why a token reads as a placeholder left in a config file, if it does: a stock word, or
/// too few distinct characters to be random (`aaaaaaaaaaaaaaaa`, `1234123412341234`).
fn placeholder(token: &str) -> Option<&'static str> {
    let lower = token.to_ascii_lowercase();
    for word in [
        "changeme",
        "change-me",
        "change_me",
        "placeholder",
        "example",
        "xxxx",
    ] {
        if lower.contains(word) {
            return Some("it contains a stock word");
        }
    }
    let distinct: std::collections::HashSet<char> = token.chars().collect();
    (distinct.len() < 8).then_some("fewer than 8 distinct characters")
}

impl GatewayConfig {
    /// Where the rule state is saved: `rules.snapshot_path`, or `rules-snapshot.json` beside
    /// the store when it is unset.
    pub fn snapshot_path(&self) -> PathBuf {
        self.rules
            .snapshot_path
            .clone()
            .unwrap_or_else(|| crate::ingest::snapshot::default_path(&self.store.path))
    }

    /// The snapshot path names a file that is not the store, and its folder exists or can be
    /// created (its nearest existing ancestor is a folder). Start-up creates the folder.
    fn validate_snapshot_path(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        const FIELD: &str = "rules.snapshot_path";
        let path = self.snapshot_path();
        let unset = if self.rules.snapshot_path.is_none() {
            " (unset: beside store.path)"
        } else {
            ""
        };
        let fail = |message: String| Err(invalid(FIELD, &format!("{message}{unset}")));
        if path.file_name().is_none() {
            return fail(format!("{} does not name a file", path.display()));
        }
        if path == self.store.path {
            return fail(format!(
                "{} is the store's database (store.path); give the snapshot its own file",
                path.display()
            ));
        }
        if path.is_dir() {
            return fail(format!(
                "{} is a folder; name a file in it, e.g. {}",
                path.display(),
                path.join(crate::ingest::snapshot::DEFAULT_FILE_NAME)
                    .display()
            ));
        }
        let folder = path.parent().unwrap_or(Path::new(""));
        let existing = folder
            .ancestors()
            .find(|a| !a.as_os_str().is_empty() && std::fs::metadata(a).is_ok());
        if let Some(existing) = existing {
            if !existing.is_dir() {
                return fail(format!(
                    "its folder {} cannot be created: {} is not a folder",
                    folder.display(),
                    existing.display()
                ));
            }
        }
        Ok(())
    }

    /// The broker's certificate and key files exist and hold what they should.
    fn validate_server_certificate(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let tls = &self.broker.tls;
        pem(
            invalid,
            "broker.tls.cert_file",
            &tls.cert_file,
            "CERTIFICATE",
        )?;
        pem(invalid, "broker.tls.key_file", &tls.key_file, "")?;
        let key = std::fs::read_to_string(&tls.key_file).unwrap_or_default();
        if !key.contains("PRIVATE KEY-----") {
            return Err(invalid(
                "broker.tls.key_file",
                &format!("{} holds no PEM private key", tls.key_file.display()),
            ));
        }
        Ok(())
    }

    /// The password listener has the broker's certificate, a readable password file and an
    /// address of its own.
    fn validate_passwords(
        &self,
        invalid: &dyn Fn(&str, &str) -> ConfigError,
    ) -> Result<(), ConfigError> {
        self.validate_server_certificate(invalid)?;
        let passwords = &self.broker.passwords;
        crate::broker::passwords::PasswordFile::load(&passwords.file)
            .map_err(|e| invalid("broker.passwords.file", &e.to_string()))?;
        let taken = [
            Some(self.broker.listen),
            self.broker.tls.enabled.then_some(self.broker.tls.listen),
            self.broker
                .tls
                .listen_v5
                .filter(|_| self.broker.tls.enabled),
        ];
        if passwords.listen.port() != 0 && taken.contains(&Some(passwords.listen)) {
            return Err(invalid(
                "broker.passwords.listen",
                "must differ from broker.listen and the TLS listeners",
            ));
        }
        Ok(())
    }

    /// The TLS listeners' files exist and hold what they should; the listeners' addresses
    /// differ from each other and from the plain listener.
    fn validate_tls(&self, invalid: &dyn Fn(&str, &str) -> ConfigError) -> Result<(), ConfigError> {
        let tls = &self.broker.tls;
        pem(invalid, "broker.tls.ca_file", &tls.ca_file, "CERTIFICATE")?;
        self.validate_server_certificate(invalid)?;
        if tls.listen.port() != 0 && tls.listen == self.broker.listen {
            return Err(invalid(
                "broker.tls.listen",
                "must differ from broker.listen (the plain listener)",
            ));
        }
        if let Some(v5) = tls.listen_v5 {
            if v5.port() != 0 && (v5 == tls.listen || v5 == self.broker.listen) {
                return Err(invalid(
                    "broker.tls.listen_v5",
                    "must differ from broker.tls.listen and broker.listen",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<GatewayConfig, ConfigError> {
        // One folder per call: tests run in parallel.
        static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "gateway-config-{}-{}",
            std::process::id(),
            CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("gateway.toml");
        std::fs::write(&path, text).expect("write");
        GatewayConfig::load(Some(&path))
    }

    #[test]
    fn defaults_need_a_token_or_disabled_auth() {
        let error = GatewayConfig::load(None).expect_err("no token").to_string();
        assert!(error.contains("api.tokens"), "{error}");
        let config = load("[api]\nauth = \"disabled\"\n").expect("valid");
        assert_eq!(config.http.listen.port(), 8080);
        assert_eq!(config.rules.lateness, Duration::from_secs(5));
    }

    #[test]
    fn relative_store_paths_follow_the_config_file() {
        let config = load("[api]\nauth = \"disabled\"\n[store]\npath = \"data/orders.sqlite\"\n")
            .expect("valid");
        assert!(config.store.path.ends_with("data/orders.sqlite"));
        assert!(
            config.store.path.is_absolute() || config.store.path.starts_with(std::env::temp_dir())
        );
    }

    #[test]
    fn the_rule_snapshot_sits_beside_the_store_unless_configured() {
        let config = load("[api]\nauth = \"disabled\"\n[store]\npath = \"data/orders.sqlite\"\n")
            .expect("valid");
        assert_eq!(
            config.snapshot_path(),
            config.store.path.with_file_name("rules-snapshot.json")
        );
        let config =
            load("[api]\nauth = \"disabled\"\n[rules]\nsnapshot_path = \"state/rules.json\"\n")
                .expect("valid");
        let path = config.snapshot_path();
        assert!(path.ends_with("state/rules.json"), "{}", path.display());
        assert!(
            path.starts_with(std::env::temp_dir()),
            "relative to the config file: {}",
            path.display()
        );
    }

    #[test]
    fn a_snapshot_path_that_cannot_be_a_file_is_refused_with_the_field() {
        let err = load("[api]\nauth = \"disabled\"\n[store]\npath = \"g.sqlite\"\n[rules]\nsnapshot_path = \"g.sqlite\"\n")
            .expect_err("the store's own file")
            .to_string();
        assert!(err.contains("field `rules.snapshot_path`"), "{err}");
        assert!(err.contains("store.path"), "{err}");
        // Its folder would have to be created inside a file.
        let err = load(
            "[api]\nauth = \"disabled\"\n[rules]\nsnapshot_path = \"gateway.toml/rules.json\"\n",
        )
        .expect_err("folder inside a file")
        .to_string();
        assert!(
            err.contains("gateway.toml:4:17 field `rules.snapshot_path`"),
            "{err}"
        );
        assert!(err.contains("is not a folder"), "{err}");
        // A folder instead of a file.
        let err = load("[api]\nauth = \"disabled\"\n[rules]\nsnapshot_path = \".\"\n")
            .expect_err("a folder")
            .to_string();
        assert!(err.contains("rules.snapshot_path"), "{err}");
        // Unset, the derived path is checked too and the message says where it came from.
        let err = load("[api]\nauth = \"disabled\"\n[store]\npath = \"gateway.toml/g.sqlite\"\n")
            .expect_err("store folder inside a file")
            .to_string();
        assert!(err.contains("rules.snapshot_path"), "{err}");
        assert!(err.contains("unset: beside store.path"), "{err}");
        // A folder that does not exist yet is fine: start-up creates it.
        load("[api]\nauth = \"disabled\"\n[rules]\nsnapshot_path = \"new/folder/rules.json\"\n")
            .expect("creatable");
    }

    #[test]
    fn unknown_fields_name_line_and_column() {
        let err = load("[http]\nlisten = \"127.0.0.1:0\"\nport = 8\n")
            .expect_err("unknown field")
            .to_string();
        assert!(err.contains("gateway.toml:3:1"), "{err}");
        assert!(err.contains("port"), "{err}");
    }

    #[test]
    fn tls_files_are_checked_at_start_up_with_the_field() {
        let err = load(
            "[api]\nauth = \"disabled\"\n[broker.tls]\nenabled = true\nca_file = \"no/ca.pem\"\n",
        )
        .expect_err("missing CA file")
        .to_string();
        assert!(err.contains("field `broker.tls.ca_file`"), "{err}");
        assert!(err.contains("no/ca.pem cannot be read"), "{err}");
        // Disabled, the files are not needed.
        load("[api]\nauth = \"disabled\"\n[broker.tls]\nenabled = false\n").expect("valid");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let err = load("[api]\nauth = \"disabled\"\n[broker]\nmax_payload_size = 10\n")
            .expect_err("too small")
            .to_string();
        assert!(
            err.contains("gateway.toml:4:20 field `broker.max_payload_size`"),
            "{err}"
        );
    }

    #[test]
    fn sla_class_tables_are_read_and_checked_with_their_key() {
        let config = load("[api]\nauth = \"disabled\"\n").expect("defaults");
        assert_eq!(
            config.sla.maintenance.dispatch,
            Duration::from_secs(24 * 3600)
        );
        assert!(!config.sla.maintenance.escalate);
        assert!(config.sla.call.escalate);
        let config = load(
            "[api]\nauth = \"disabled\"\n[sla]\ndispatch = \"10m\"\n[sla.maintenance]\ndispatch = \"2d\"\non_site = \"4d\"\nescalate = true\n[sla.call]\ndispatch = \"20m\"\n",
        )
        .expect("valid");
        assert_eq!(
            config.sla.maintenance.on_site,
            Duration::from_secs(4 * 24 * 3600)
        );
        assert_eq!(
            config.sla.maintenance.repaired,
            Duration::from_secs(7 * 24 * 3600),
            "a key left out keeps the class's default"
        );
        assert!(config.sla.maintenance.escalate);
        assert_eq!(config.sla.call.dispatch, Duration::from_secs(20 * 60));
        assert_eq!(config.sla.dispatch, Duration::from_secs(10 * 60));
        let err = load(
            "[api]\nauth = \"disabled\"\n[sla.utility]\ndispatch = \"3h\"\non_site = \"2h\"\n",
        )
        .expect_err("on site before dispatch")
        .to_string();
        assert!(err.contains("field `sla.utility.on_site`"), "{err}");
        assert!(err.contains("sla.utility.dispatch"), "{err}");
        let err = load("[api]\nauth = \"disabled\"\n[sla.call]\nwithin = \"5m\"\n")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("within"), "{err}");
    }

    #[test]
    fn the_plain_listener_off_loopback_needs_the_insecure_key() {
        let err = load("[api]\nauth = \"disabled\"\n[broker]\nlisten = \"0.0.0.0:1883\"\n")
            .expect_err("anonymous listener on every interface")
            .to_string();
        assert!(err.contains("field `broker.listen`"), "{err}");
        assert!(err.contains("insecure_plain_listener"), "{err}");
        let config = load(
            "[api]\nauth = \"disabled\"\n[broker]\nlisten = \"0.0.0.0:1883\"\ninsecure_plain_listener = true\n",
        )
        .expect("explicitly insecure");
        assert!(config.broker.insecure_plain_listener);
        // An external broker has no plain listener of ours.
        load("[api]\nauth = \"disabled\"\n[broker]\nlisten = \"[::1]:1883\"\n")
            .expect("loopback v6");
    }

    #[test]
    fn disabled_api_auth_is_refused_off_loopback() {
        let err = load("[api]\nauth = \"disabled\"\n[http]\nlisten = \"0.0.0.0:8080\"\n")
            .expect_err("an open operator API")
            .to_string();
        assert!(err.contains("field `api.auth`"), "{err}");
        load("[api]\nauth = \"disabled\"\n[http]\nlisten = \"127.0.0.1:8080\"\n")
            .expect("loopback is the demo");
    }

    #[test]
    fn broker_limits_must_be_positive() {
        let err = load("[api]\nauth = \"disabled\"\n[broker]\nmax_retained = 0\n")
            .expect_err("zero")
            .to_string();
        assert!(err.contains("field `broker.max_retained`"), "{err}");
    }

    #[test]
    fn placeholder_tokens_are_refused() {
        for token in [
            "changeme-changeme-1",
            "xxxxxxxxxxxxxxxxxxxx",
            "aaaaaaaaaaaaaaaaaaaa",
            "1234123412341234",
            "Example-Token-For-Docs",
        ] {
            let err = load(&format!(
                "[[api.tokens]]\nname = \"centre\"\ntoken = \"{token}\"\nrole = \"operator\"\n"
            ))
            .expect_err(token)
            .to_string();
            assert!(err.contains("placeholder"), "{token}: {err}");
        }
        load("[[api.tokens]]\nname = \"centre\"\ntoken = \"q8Zr2LwV9cT4nJx7PbK1\"\nrole = \"operator\"\n")
            .expect("a random token");
    }

    #[test]
    fn only_a_team_token_names_a_technician() {
        let err = load("[[api.tokens]]\nname = \"li\"\ntoken = \"q8Zr2LwV9cT4nJx7PbK1\"\nrole = \"operator\"\ntechnician = \"tech-01\"\n")
            .expect_err("an operator token naming a technician")
            .to_string();
        assert!(err.contains("api.tokens[0].technician"), "{err}");
        let config = load("[[api.tokens]]\nname = \"li\"\ntoken = \"q8Zr2LwV9cT4nJx7PbK1\"\nrole = \"team\"\nteam = \"aurora-yanqing\"\ntechnician = \"tech-01\"\n")
            .expect("a technician's own token");
        assert_eq!(config.api.tokens[0].technician.as_deref(), Some("tech-01"));
    }

    #[test]
    fn notify_errors_name_the_field_and_its_line() {
        let err = load(
            "[api]\nauth = \"disabled\"\n[notify.sms]\nurl = \"http://sms.example.net/send\"\n",
        )
        .expect_err("plain http across the network")
        .to_string();
        assert!(
            err.contains("gateway.toml:4:7 field `notify.sms.url`"),
            "{err}"
        );
        assert!(err.contains("https"), "{err}");
        let err = load("[api]\nauth = \"disabled\"\n[notify.webhook]\nsecret = \"env:GATEWAY_TEST_NO_SUCH_SECRET_VARIABLE\"\n")
            .expect_err("unset variable")
            .to_string();
        assert!(err.contains("field `notify.webhook.secret`"), "{err}");
        assert!(
            err.contains("GATEWAY_TEST_NO_SUCH_SECRET_VARIABLE is not set"),
            "{err}"
        );
        let config = load("[api]\nauth = \"disabled\"\n[notify.webhook]\nurl = \"http://127.0.0.1:9000/notices\"\n")
            .expect("a receiver on this machine needs no secret");
        assert_eq!(config.notify.webhook.max_attempts, 6);
    }

    #[test]
    fn an_external_broker_off_this_machine_needs_tls() {
        let base = "[api]\nauth = \"disabled\"\n[broker]\nmode = \"external\"\n[broker.external]\n";
        let err = load(&format!("{base}host = \"mqtt.example.net\"\n"))
            .expect_err("clear text across the network")
            .to_string();
        assert!(err.contains("field `broker.external.tls`"), "{err}");
        load(&format!(
            "{base}host = \"mqtt.example.net\"\ninsecure_plain_connection = true\n"
        ))
        .expect("explicitly insecure");
        load(&format!("{base}host = \"127.0.0.1\"\n")).expect("loopback");
        let err = load(&format!(
            "{base}host = \"mqtt.example.net\"\n[broker.external.tls]\nca_file = \"no/ca.pem\"\n"
        ))
        .expect_err("missing CA")
        .to_string();
        assert!(err.contains("field `broker.external.tls.ca_file`"), "{err}");
    }
}
