//! The agent's configuration: a TOML file with environment overrides (`EDGE_AGENT__MQTT__HOST`),
//! parsed once at start-up into a validated [`AgentConfig`] whose errors name file, line and field.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use layered_config::LayeredError;
use mqtt_tls::TlsConfig;
use serde::Deserialize;
use wire::{diagnostics, DeviceId, TownshipId};

use crate::clock::{ClockConfig, Trust};
use crate::guard::GuardConfig;
use crate::profile::{Profile, ProfileError};

/// The configuration file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// This box's id, unique in the district; also the MQTT client id unless `mqtt.client_id` is set.
    pub agent_id: String,
    /// The township the box is installed in (topic level for its status).
    pub township: TownshipId,
    /// Folder of register-map profiles (`*.toml`), relative to the config file.
    #[serde(default = "default_profiles_dir")]
    pub profiles_dir: PathBuf,
    /// How to reach the MQTT broker.
    pub mqtt: MqttConfig,
    /// Defaults for polling.
    #[serde(default)]
    pub polling: PollingConfig,
    /// The heaters this box polls.
    #[serde(default)]
    pub devices: Vec<DeviceConfig>,
    /// RS-485 buses (Modbus RTU) that devices with `transport = { type = "rtu", bus = ... }` use.
    #[serde(default)]
    pub buses: Vec<BusConfig>,
    /// Folder for the agent's durable state, relative to the config file: the store-and-forward
    /// queue (`queue/`) and the ids of executed commands (`commands.jsonl`).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The store-and-forward queue.
    #[serde(default)]
    pub queue: QueueConfig,
    /// The agent's own health report.
    #[serde(default)]
    pub health: HealthConfig,
    /// Remote commands.
    #[serde(default)]
    pub commands: CommandsConfig,
    /// When the wall clock is trusted, and how long readings wait for it ([`crate::clock`]).
    #[serde(default)]
    pub clock: ClockConfig,
    /// The box's own watch while its uplink is down ([`crate::guard`]).
    #[serde(default)]
    pub guard: GuardConfig,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}

/// A size in bytes, written as a number or with a unit: `"64MiB"`, `"512KiB"`, `"1GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"64MiB"`, `"1.5 MB"`, `"4096"`.
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size (e.g. \"64MiB\")"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (B, KiB, MiB, GiB, KB, MB, GB)"
                ))
            }
        };
        Ok(ByteSize((number * factor as f64).round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(text) => ByteSize::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}

/// The store-and-forward queue on disk.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Largest size of the queue on disk. Past it, the oldest readings are thinned to one per
    /// device per `thin_interval`, then dropped; both are counted and reported.
    #[serde(default = "default_queue_max")]
    pub max_size: ByteSize,
    /// Size of one segment file; at most a quarter of `max_size`.
    #[serde(default = "default_segment_size")]
    pub segment_size: ByteSize,
    /// Longest time a reading waits for fsync (readings are sent only once fsynced; a power cut
    /// loses at most this much). `"0s"` fsyncs every reading.
    #[serde(default = "default_fsync_interval", with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// At the size cap, old readings are thinned to one per device per this interval.
    #[serde(default = "default_thin_interval", with = "humantime_serde")]
    pub thin_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_size: default_queue_max(),
            segment_size: default_segment_size(),
            fsync_interval: default_fsync_interval(),
            thin_interval: default_thin_interval(),
        }
    }
}

fn default_queue_max() -> ByteSize {
    ByteSize(64 << 20)
}
fn default_segment_size() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_fsync_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_thin_interval() -> Duration {
    Duration::from_secs(300)
}

/// The agent's health report on `heating/v1/{township}/{agent_id}/health`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between two health reports.
    #[serde(default = "default_health_interval", with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            interval: default_health_interval(),
        }
    }
}

fn default_health_interval() -> Duration {
    Duration::from_secs(60)
}

/// Remote commands on `heating/v1/{township}/{device}/cmd`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// Whether the agent subscribes to commands at all.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Commands whose expiry lies further ahead than this are refused (it bounds how long
    /// executed ids must be remembered).
    #[serde(default = "default_max_expiry", with = "humantime_serde")]
    pub max_expiry: Duration,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_expiry: default_max_expiry(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_max_expiry() -> Duration {
    Duration::from_secs(24 * 3600)
}

/// Parity of a serial line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parity {
    #[default]
    None,
    Even,
    Odd,
}

/// One RS-485 bus (a serial port) with Modbus RTU devices on it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// Name that devices refer to (`transport = { type = "rtu", bus = "rs485-1" }`).
    pub name: String,
    /// Serial device, e.g. `/dev/ttyUSB0` or `/dev/ttyAMA0`.
    pub port: String,
    /// Line speed in baud.
    #[serde(default = "default_baud")]
    pub baud: u32,
    /// Parity: `none`, `even` or `odd`.
    #[serde(default)]
    pub parity: Parity,
    /// Data bits per character (7 or 8).
    #[serde(default = "default_data_bits")]
    pub data_bits: u8,
    /// Stop bits (1 or 2).
    #[serde(default = "default_stop_bits")]
    pub stop_bits: u8,
    /// How long to wait for a device's response.
    #[serde(default = "default_rtu_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Silence kept on the bus between the end of one frame and the start of the next; unset:
    /// the Modbus inter-frame gap of 3.5 character times (1.75ms above 19200 baud). Set it
    /// longer for devices that need time to turn their line driver around.
    #[serde(default, with = "humantime_serde")]
    pub pause: Option<Duration>,
    /// Pause after opening the serial port before the first request (adapters and devices
    /// settle after the line is powered or reset).
    #[serde(default = "default_bus_warm_up", with = "humantime_serde")]
    pub warm_up: Duration,
}

impl BusConfig {
    /// Bits of one character on the line: start, data, parity and stop bits.
    pub fn bits_per_char(&self) -> u32 {
        1 + u32::from(self.data_bits)
            + u32::from(self.parity != Parity::None)
            + u32::from(self.stop_bits)
    }

    /// The Modbus RTU inter-frame gap of this line ([`crate::bus::inter_frame_gap`]).
    pub fn inter_frame_gap(&self) -> Duration {
        crate::bus::inter_frame_gap(self.baud, self.bits_per_char())
    }

    /// The silence kept between two frames: `pause`, else the inter-frame gap.
    pub fn silence(&self) -> Duration {
        self.pause.unwrap_or_else(|| self.inter_frame_gap())
    }
}

fn default_baud() -> u32 {
    9600
}
fn default_data_bits() -> u8 {
    8
}
fn default_stop_bits() -> u8 {
    1
}
fn default_rtu_timeout() -> Duration {
    Duration::from_millis(500)
}
fn default_bus_warm_up() -> Duration {
    Duration::from_millis(200)
}

/// Longest warm-up pause accepted after opening a port or connection.
const MAX_WARM_UP: Duration = Duration::from_secs(10);

fn default_profiles_dir() -> PathBuf {
    PathBuf::from("profiles")
}

/// MQTT connection settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker TCP port.
    #[serde(default = "default_mqtt_port")]
    pub port: u16,
    /// MQTT client id; defaults to `agent_id`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User name, if the broker asks for one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; never logged.
    #[serde(default)]
    pub password: Option<String>,
    /// MQTT keep-alive; the broker declares the box dead (last will) after 1.5 times this.
    #[serde(default = "default_keep_alive", with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Longest wait between reconnection attempts (the wait doubles from 1 s up to this, with jitter).
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_reconnect_backoff: Duration,
    /// TLS to the broker (rustls); plain TCP when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// This box's tenant id on a broker that confines each client certificate to its own
    /// topic prefix (the gateway's `[broker.tls]` listener; `gateway certs box` prints it):
    /// every topic is then published and subscribed under `/tenants/{tenant}/`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Readings sent and not yet acknowledged at most (QoS 1 window).
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
}

fn default_max_inflight() -> u16 {
    100
}

impl MqttConfig {
    /// `topic` under this box's tenant prefix, if it has one.
    pub fn tenant_topic(&self, topic: String) -> String {
        match &self.tenant {
            Some(tenant) => format!("/tenants/{tenant}/{topic}"),
            None => topic,
        }
    }
}

fn default_mqtt_port() -> u16 {
    1883
}
fn default_keep_alive() -> Duration {
    Duration::from_secs(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}

/// Polling defaults for every device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollingConfig {
    /// Time between two polls of a device.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How long to wait for one Modbus response.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Unused registers a read request may span to merge two neighbouring blocks.
    #[serde(default = "default_max_gap")]
    pub max_gap: u16,
    /// Failed poll cycles in a row after which a device is reported `unreachable`.
    #[serde(default = "default_unreachable_after")]
    pub unreachable_after: u32,
    /// Longest wait between two attempts at an unreachable device: its circuit breaker opens
    /// after `unreachable_after` failed cycles and the wait doubles from twice the poll
    /// interval up to this, without jitter.
    #[serde(default = "default_retry_backoff", with = "humantime_serde")]
    pub max_retry_backoff: Duration,
    /// Pause after opening a Modbus TCP connection before the first request.
    #[serde(default = "default_tcp_warm_up", with = "humantime_serde")]
    pub warm_up: Duration,
    /// Poll faster while a device shows a fault or a value changes fast, slower when quiet.
    #[serde(default)]
    pub adaptive: AdaptiveConfig,
}

/// The adaptive poll period (`[polling.adaptive]`, [`crate::bus::Cadence`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveConfig {
    /// Whether poll periods adapt; when off every device keeps its `interval`.
    #[serde(default)]
    pub enabled: bool,
    /// Shortest period: used at once while a device reports a fault code or a value changes fast.
    #[serde(default = "default_min_interval", with = "humantime_serde")]
    pub min_interval: Duration,
    /// Longest period, reached by doubling while a device stays quiet.
    #[serde(default = "default_max_interval", with = "humantime_serde")]
    pub max_interval: Duration,
    /// Quiet cycles in a row after which the period doubles.
    #[serde(default = "default_quiet_cycles")]
    pub quiet_cycles: u32,
    /// A value changes fast when it moves more than this share of its plausible range per
    /// minute (0.02: 2.6 °C a minute indoors, 0.2 bar a minute of water pressure).
    #[serde(default = "default_fast_change")]
    pub fast_change: f64,
}

impl Default for AdaptiveConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            min_interval: default_min_interval(),
            max_interval: default_max_interval(),
            quiet_cycles: default_quiet_cycles(),
            fast_change: default_fast_change(),
        }
    }
}

impl AdaptiveConfig {
    /// The settings when enabled.
    pub fn settings(&self) -> Option<crate::bus::AdaptiveSettings> {
        self.enabled.then_some(crate::bus::AdaptiveSettings {
            min: self.min_interval,
            max: self.max_interval,
            quiet_cycles: self.quiet_cycles,
            fast_change: self.fast_change,
        })
    }
}

fn default_min_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_max_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_quiet_cycles() -> u32 {
    6
}
fn default_fast_change() -> f64 {
    0.02
}
fn default_tcp_warm_up() -> Duration {
    Duration::from_millis(100)
}

impl Default for PollingConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_timeout(),
            max_gap: default_max_gap(),
            unreachable_after: default_unreachable_after(),
            max_retry_backoff: default_retry_backoff(),
            warm_up: default_tcp_warm_up(),
            adaptive: AdaptiveConfig::default(),
        }
    }
}

fn default_unreachable_after() -> u32 {
    3
}
fn default_retry_backoff() -> Duration {
    Duration::from_secs(300)
}

fn default_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_max_gap() -> u16 {
    8
}

/// One heater.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// District-wide device id (topic level).
    pub id: DeviceId,
    /// Township of the device, if it differs from the box's.
    #[serde(default)]
    pub township: Option<TownshipId>,
    /// Register-map profile id (the `id` inside a file of `profiles_dir`).
    pub profile: String,
    /// Modbus unit (slave) id, 1..=247.
    #[serde(default = "default_unit_id")]
    pub unit_id: u8,
    /// How the device is wired.
    pub transport: TransportConfig,
    /// Poll interval for this device; defaults to `polling.interval`.
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
}

fn default_unit_id() -> u8 {
    1
}

/// How a device is reached.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case", tag = "type")]
pub enum TransportConfig {
    /// Modbus TCP to `address` (`host:port`).
    Tcp {
        /// Socket address of the device or its Ethernet adapter.
        address: SocketAddr,
    },
    /// Modbus RTU on the RS-485 bus named `bus` (a `[[buses]]` entry), at the device's `unit_id`.
    Rtu {
        /// Name of the bus in `[[buses]]`.
        bus: String,
    },
}

/// A device with everything resolved.
#[derive(Debug, Clone)]
pub struct Device {
    pub id: DeviceId,
    pub township: TownshipId,
    pub profile: Arc<Profile>,
    pub unit_id: u8,
    pub transport: TransportConfig,
    pub interval: Duration,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub agent_id: String,
    pub township: TownshipId,
    pub mqtt: MqttConfig,
    pub polling: PollingConfig,
    pub devices: Vec<Device>,
    /// RS-485 buses by name (only those devices use).
    pub buses: Vec<BusConfig>,
    /// Durable state folder (absolute or relative to the working directory).
    pub data_dir: PathBuf,
    pub queue: QueueConfig,
    pub health: HealthConfig,
    pub commands: CommandsConfig,
    pub clock: ClockConfig,
    pub guard: GuardConfig,
    /// The rules the guard runs (`None` when it is off).
    pub guard_rules: Option<rules::RuleSet>,
}

impl AgentConfig {
    /// The bus named `name`.
    pub fn bus(&self, name: &str) -> Option<&BusConfig> {
        self.buses.iter().find(|b| b.name == name)
    }

    /// Settings of the store-and-forward queue.
    pub fn queue_settings(&self) -> crate::queue::QueueSettings {
        crate::queue::QueueSettings {
            dir: self.data_dir.join("queue"),
            max_bytes: self.queue.max_size.0,
            segment_bytes: self.queue.segment_size.0,
            thin_interval: self.queue.thin_interval,
        }
    }
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
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// Prefix of environment overrides: `EDGE_AGENT__MQTT__PASSWORD=...` sets `mqtt.password`.
pub const ENV_PREFIX: &str = "EDGE_AGENT";

impl AgentConfig {
    /// Loads `path`, applies environment overrides, loads the profiles and validates everything.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: origin.clone(),
            source,
        })?;
        // The file alone first (its errors keep their line and column), then the overrides.
        let raw: RawConfig =
            layered_config::load(&text, &origin, ENV_PREFIX).map_err(|error| match error {
                LayeredError::Invalid { place, message } => ConfigError::Invalid { place, message },
                LayeredError::Environment(message) => ConfigError::Environment(message),
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::validate(raw, &text, &origin, base)
    }

    /// Validates a parsed configuration; `text` and `origin` are used to place errors.
    /// Sections are checked in a fixed order, so a file with several errors always reports
    /// the same one first.
    pub fn validate(
        raw: RawConfig,
        text: &str,
        origin: &str,
        base: &Path,
    ) -> Result<AgentConfig, ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            place: format!(
                "{} field `{field}`",
                diagnostics::place(origin, text, field)
            ),
            message,
        };
        validate_basics(&raw, &invalid)?;
        let mqtt = validate_mqtt(raw.mqtt, base, &invalid)?;
        validate_queue(&raw.queue, &invalid)?;
        if raw.health.interval < Duration::from_secs(1) {
            return Err(invalid("health.interval", "must be at least 1s".into()));
        }
        validate_clock(&raw.clock, &invalid)?;
        let bus_names = validate_buses(&raw.buses, &invalid)?;
        let profiles_dir = base.join(&raw.profiles_dir);
        let profiles = load_profiles(&profiles_dir).map_err(|e| match e {
            LoadError::Profile(p) => ConfigError::Profile(p),
            LoadError::Io(message) => invalid("profiles_dir", message),
        })?;
        let context = DeviceContext {
            profiles: &profiles,
            profiles_dir: &profiles_dir,
            bus_names: &bus_names,
            interval: raw.polling.interval,
            township: &raw.township,
        };
        let devices = validate_devices(raw.devices, &context, &invalid)?;
        validate_polling(&raw.polling, &invalid)?;
        let ids: Vec<&str> = devices.iter().map(|d| d.id.as_str()).collect();
        let guard_rules = crate::guard::rule_set(&raw.guard, &ids, base, &invalid)?;
        Ok(AgentConfig {
            agent_id: raw.agent_id,
            township: raw.township,
            mqtt,
            polling: raw.polling,
            devices,
            buses: raw.buses,
            data_dir: base.join(&raw.data_dir),
            queue: raw.queue,
            health: raw.health,
            commands: raw.commands,
            clock: raw.clock,
            guard: raw.guard,
            guard_rules,
        })
    }
}

/// Places an error at a field of the config file (`invalid("queue.max_size", message)`).
type Invalid<'a> = &'a dyn Fn(&str, String) -> ConfigError;

/// The settings checked first: the box's id, the MQTT keep-alive, the polling interval and
/// that there are devices at all.
fn validate_basics(raw: &RawConfig, invalid: Invalid<'_>) -> Result<(), ConfigError> {
    if raw.agent_id.is_empty() {
        return Err(invalid("agent_id", "is empty".into()));
    }
    if raw.mqtt.keep_alive < Duration::from_secs(5) {
        return Err(invalid(
            "mqtt.keep_alive",
            "must be at least 5s (MQTT counts it in whole seconds)".into(),
        ));
    }
    if raw.polling.interval < Duration::from_millis(100) {
        return Err(invalid("polling.interval", "must be at least 100ms".into()));
    }
    if raw.devices.is_empty() {
        return Err(invalid("devices", "no [[devices]] configured".into()));
    }
    Ok(())
}

/// `[mqtt]`: the in-flight window, the tenant id and the TLS files (made relative to `base`).
fn validate_mqtt(
    mut mqtt: MqttConfig,
    base: &Path,
    invalid: Invalid<'_>,
) -> Result<MqttConfig, ConfigError> {
    if mqtt.max_inflight == 0 {
        return Err(invalid("mqtt.max_inflight", "must be at least 1".into()));
    }
    if let Some(tenant) = &mqtt.tenant {
        if tenant.is_empty() || !tenant.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(
                "mqtt.tenant",
                format!("{tenant:?} is not a tenant id (ASCII letters and digits only)"),
            ));
        }
    }
    if let Some(tls) = &mut mqtt.tls {
        validate_tls(tls, base, invalid)?;
    }
    Ok(mqtt)
}

/// `[mqtt.tls]`: resolves the files against `base`; each must be readable, and a client
/// certificate comes with its key.
fn validate_tls(tls: &mut TlsConfig, base: &Path, invalid: Invalid<'_>) -> Result<(), ConfigError> {
    tls.ca_file = base.join(&tls.ca_file);
    tls.client_cert = tls.client_cert.as_ref().map(|p| base.join(p));
    tls.client_key = tls.client_key.as_ref().map(|p| base.join(p));
    if tls.client_cert.is_some() != tls.client_key.is_some() {
        return Err(invalid(
            "mqtt.tls",
            "client_cert and client_key go together (mutual TLS needs both)".into(),
        ));
    }
    for (field, path) in [
        ("mqtt.tls.ca_file", Some(&tls.ca_file)),
        ("mqtt.tls.client_cert", tls.client_cert.as_ref()),
        ("mqtt.tls.client_key", tls.client_key.as_ref()),
    ] {
        if let Some(path) = path {
            if !path.is_file() {
                return Err(invalid(
                    field,
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
    }
    Ok(())
}

/// `[queue]`: the size cap, the segment size within it and the thinning interval.
fn validate_queue(queue: &QueueConfig, invalid: Invalid<'_>) -> Result<(), ConfigError> {
    if queue.max_size.0 < 64 * 1024 {
        return Err(invalid("queue.max_size", "must be at least 64KiB".into()));
    }
    if queue.segment_size.0 < 4096 || queue.segment_size.0 > queue.max_size.0 / 4 {
        return Err(invalid(
            "queue.segment_size",
            format!(
                "must be between 4KiB and a quarter of queue.max_size ({} bytes)",
                queue.max_size.0 / 4
            ),
        ));
    }
    if queue.thin_interval < Duration::from_secs(1) {
        return Err(invalid("queue.thin_interval", "must be at least 1s".into()));
    }
    Ok(())
}

/// `[clock]`: the longest hold, and an absolute marker file when NTP is trusted.
fn validate_clock(clock: &ClockConfig, invalid: Invalid<'_>) -> Result<(), ConfigError> {
    if clock.hold > crate::clock::MAX_HOLD {
        return Err(invalid("clock.hold", "must be at most 1day".into()));
    }
    if clock.trust == Trust::Ntp && !clock.synced_file.is_absolute() {
        return Err(invalid(
            "clock.synced_file",
            format!(
                "{} is not an absolute path (trust = \"ntp\" reads it)",
                clock.synced_file.display()
            ),
        ));
    }
    Ok(())
}

/// `[[buses]]`: each bus in turn; returns the bus names (each used once).
fn validate_buses(
    buses: &[BusConfig],
    invalid: Invalid<'_>,
) -> Result<HashSet<String>, ConfigError> {
    let mut bus_names = HashSet::new();
    for (index, bus) in buses.iter().enumerate() {
        let field = |name: &str| format!("buses[{index}].{name}");
        if bus.name.is_empty() || !bus_names.insert(bus.name.clone()) {
            return Err(invalid(
                &field("name"),
                format!("bus name {:?} is empty or used twice", bus.name),
            ));
        }
        validate_bus(bus, &field, invalid)?;
    }
    Ok(bus_names)
}

/// One `[[buses]]` entry's line settings; `field` names its fields (`buses[0].baud`).
fn validate_bus(
    bus: &BusConfig,
    field: &dyn Fn(&str) -> String,
    invalid: Invalid<'_>,
) -> Result<(), ConfigError> {
    if !(300..=1_000_000).contains(&bus.baud) {
        return Err(invalid(
            &field("baud"),
            format!("{} is not a usable baud rate (300..=1000000)", bus.baud),
        ));
    }
    if !(5..=8).contains(&bus.data_bits) {
        return Err(invalid(
            &field("data_bits"),
            format!("{} data bits: use 7 or 8", bus.data_bits),
        ));
    }
    if !(1..=2).contains(&bus.stop_bits) {
        return Err(invalid(
            &field("stop_bits"),
            format!("{} stop bits: use 1 or 2", bus.stop_bits),
        ));
    }
    let gap = bus.inter_frame_gap();
    if let Some(pause) = bus.pause.filter(|pause| *pause < gap) {
        return Err(invalid(
            &field("pause"),
            format!(
                "{pause:?} is shorter than the inter-frame gap of 3.5 characters at {} baud ({gap:?})",
                bus.baud
            ),
        ));
    }
    if bus.timeout < Duration::from_millis(10) {
        return Err(invalid(&field("timeout"), "must be at least 10ms".into()));
    }
    if bus.warm_up > MAX_WARM_UP {
        return Err(invalid(&field("warm_up"), "must be at most 10s".into()));
    }
    Ok(())
}

/// What the `[[devices]]` entries are resolved against.
struct DeviceContext<'a> {
    profiles: &'a HashMap<String, Arc<Profile>>,
    profiles_dir: &'a Path,
    bus_names: &'a HashSet<String>,
    /// `polling.interval`, for a device that sets none.
    interval: Duration,
    /// The box's township, for a device that names none.
    township: &'a TownshipId,
}

/// `[[devices]]`: each device once, resolved to its profile and interval.
fn validate_devices(
    raw: Vec<DeviceConfig>,
    context: &DeviceContext<'_>,
    invalid: Invalid<'_>,
) -> Result<Vec<Device>, ConfigError> {
    let mut seen = HashSet::new();
    let mut rtu_units = HashSet::new();
    let mut devices = Vec::with_capacity(raw.len());
    for (index, device) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("devices[{index}].{name}");
        if !seen.insert(device.id.clone()) {
            return Err(invalid(
                &field("id"),
                format!("device {} is configured twice", device.id),
            ));
        }
        if !(1..=247).contains(&device.unit_id) {
            return Err(invalid(
                &field("unit_id"),
                format!("{} is not a Modbus unit id (1..=247)", device.unit_id),
            ));
        }
        let profile = device_profile(&device, context, &field, invalid)?;
        if let TransportConfig::Rtu { bus } = &device.transport {
            if !context.bus_names.contains(bus) {
                return Err(invalid(
                    &field("transport"),
                    format!("no [[buses]] entry is named {bus:?}"),
                ));
            }
            if !rtu_units.insert((bus.clone(), device.unit_id)) {
                return Err(invalid(
                    &field("unit_id"),
                    format!("unit {} is already used on bus {bus:?}", device.unit_id),
                ));
            }
        }
        let interval = device.interval.unwrap_or(context.interval);
        if interval < Duration::from_millis(100) {
            return Err(invalid(&field("interval"), "must be at least 100ms".into()));
        }
        devices.push(Device {
            township: device.township.unwrap_or_else(|| context.township.clone()),
            id: device.id,
            profile,
            unit_id: device.unit_id,
            transport: device.transport,
            interval,
        });
    }
    Ok(devices)
}

/// The profile a device names, or an error listing the known ones.
fn device_profile(
    device: &DeviceConfig,
    context: &DeviceContext<'_>,
    field: &dyn Fn(&str) -> String,
    invalid: Invalid<'_>,
) -> Result<Arc<Profile>, ConfigError> {
    let profiles = context.profiles;
    profiles.get(&device.profile).cloned().ok_or_else(|| {
        let mut known: Vec<&str> = profiles.keys().map(String::as_str).collect();
        known.sort_unstable();
        invalid(
            &field("profile"),
            format!(
                "no profile {:?} in {} (known: {})",
                device.profile,
                context.profiles_dir.display(),
                known.join(", ")
            ),
        )
    })
}

/// `[polling]` beyond the interval: the warm-up, `[polling.adaptive]` and the failed cycles
/// before a device counts as unreachable.
fn validate_polling(polling: &PollingConfig, invalid: Invalid<'_>) -> Result<(), ConfigError> {
    if polling.warm_up > MAX_WARM_UP {
        return Err(invalid("polling.warm_up", "must be at most 10s".into()));
    }
    let adaptive = &polling.adaptive;
    if adaptive.min_interval < Duration::from_millis(100) {
        return Err(invalid(
            "polling.adaptive.min_interval",
            "must be at least 100ms".into(),
        ));
    }
    if adaptive.max_interval < adaptive.min_interval {
        return Err(invalid(
            "polling.adaptive.max_interval",
            format!(
                "{:?} is shorter than polling.adaptive.min_interval ({:?})",
                adaptive.max_interval, adaptive.min_interval
            ),
        ));
    }
    if adaptive.quiet_cycles == 0 {
        return Err(invalid(
            "polling.adaptive.quiet_cycles",
            "must be at least 1".into(),
        ));
    }
    if !(adaptive.fast_change.is_finite() && adaptive.fast_change > 0.0) {
        return Err(invalid(
            "polling.adaptive.fast_change",
            format!(
                "{} is not a positive share (e.g. 0.02)",
                adaptive.fast_change
            ),
        ));
    }
    if polling.unreachable_after == 0 {
        return Err(invalid(
            "polling.unreachable_after",
            "must be at least 1".into(),
        ));
    }
    Ok(())
}

enum LoadError {
    Io(String),
    Profile(ProfileError),
}

fn load_profiles(dir: &Path) -> Result<HashMap<String, Arc<Profile>>, LoadError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| LoadError::Io(format!("cannot read {}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let mut profiles = HashMap::new();
    for path in paths {
        let profile = Profile::load(&path).map_err(LoadError::Profile)?;
        if profiles.contains_key(&profile.id) {
            return Err(LoadError::Io(format!(
                "profile id {:?} is defined twice (again in {})",
                profile.id,
                path.display()
            )));
        }
        profiles.insert(profile.id.clone(), Arc::new(profile));
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("agent.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("edge-agent-config-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn profiles_dir() -> String {
        format!("{}/../profiles", env!("CARGO_MANIFEST_DIR"))
    }

    fn config_text(unit_id: u32, profile: &str) -> String {
        format!(
            r#"agent_id = "box-1"
township = "yanqing"
profiles_dir = "{}"

[mqtt]
host = "127.0.0.1"

[[devices]]
id = "yanqing-dongguan-0001"
profile = "aurora-ashp"
transport = {{ type = "tcp", address = "127.0.0.1:5020" }}

[[devices]]
id = "yanqing-dongguan-0002"
profile = "{profile}"
unit_id = {unit_id}
transport = {{ type = "tcp", address = "127.0.0.1:5021" }}
"#,
            profiles_dir()
        )
    }

    #[test]
    fn a_good_config_loads_with_its_profiles() {
        let dir = temp_dir("good");
        let config = AgentConfig::load(&write(&dir, &config_text(2, "huanre-boiler")))
            .expect("valid config");
        assert_eq!(config.devices.len(), 2);
        assert_eq!(config.devices[1].profile.id, "huanre-boiler");
        assert_eq!(config.devices[1].township.as_str(), "yanqing");
        assert_eq!(config.devices[0].interval, Duration::from_secs(10));
    }

    #[test]
    fn a_bad_unit_id_names_line_and_field() {
        let dir = temp_dir("unit");
        let err = AgentConfig::load(&write(&dir, &config_text(0, "huanre-boiler")))
            .expect_err("unit id 0 is refused")
            .to_string();
        assert!(
            err.contains("agent.toml:16:11 field `devices[1].unit_id`"),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_profile_lists_the_known_ones() {
        let dir = temp_dir("profile");
        let err = AgentConfig::load(&write(&dir, &config_text(1, "nope")))
            .expect_err("unknown profile is refused")
            .to_string();
        assert!(err.contains("devices[1].profile"), "{err}");
        assert!(err.contains("aurora-ashp"), "{err}");
    }

    #[test]
    fn a_bad_profile_file_is_named_once() {
        let dir = temp_dir("bad-profile");
        let profiles = dir.join("profiles");
        std::fs::create_dir_all(&profiles).expect("dir");
        std::fs::write(profiles.join("broken.toml"), "id = \"broken\"\nwho = 1\n").expect("write");
        let text = config_text(1, "huanre-boiler")
            .replace(&profiles_dir(), &profiles.display().to_string());
        let err = AgentConfig::load(&write(&dir, &text)).expect_err("a broken profile");
        // The whole chain, as the binaries print it (`{:#}`): the place appears once.
        let chain = format!("{:#}", anyhow::Error::from(err));
        assert_eq!(chain.matches("broken.toml").count(), 1, "{chain}");
    }

    #[test]
    fn a_type_error_names_line_and_column() {
        let dir = temp_dir("type");
        let text = config_text(1, "huanre-boiler").replace("host = \"127.0.0.1\"", "host = 5");
        let err = AgentConfig::load(&write(&dir, &text))
            .expect_err("wrong type is refused")
            .to_string();
        assert!(err.contains("agent.toml:6:8"), "{err}");
    }

    fn with_bus(bus: &str, polling: &str) -> String {
        let text = config_text(1, "huanre-boiler")
            .replace("[mqtt]", &format!("[polling]\n{polling}\n\n[mqtt]"));
        format!(
            "{text}\n[[devices]]\nid = \"yanqing-dongguan-0003\"\nprofile = \"huanre-boiler\"\nunit_id = 3\ntransport = {{ type = \"rtu\", bus = \"rs485-1\" }}\n\n[[buses]]\nname = \"rs485-1\"\nport = \"/dev/ttyUSB0\"\n{bus}\n"
        )
    }

    #[test]
    fn a_bus_keeps_the_inter_frame_gap_unless_a_longer_pause_is_set() {
        let dir = temp_dir("bus-gap");
        let config = AgentConfig::load(&write(
            &dir,
            &with_bus("baud = 9600\nparity = \"even\"", ""),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let bus = &config.buses[0];
        // 8E1 at 9600 baud: 11 bits a character, 3.5 characters.
        assert_eq!(bus.silence(), Duration::from_micros(4011));
        assert_eq!(bus.warm_up, Duration::from_millis(200));
        let config = AgentConfig::load(&write(
            &dir,
            &with_bus("baud = 115200\npause = \"5ms\"", ""),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.buses[0].inter_frame_gap(), crate::bus::FAST_LINE_GAP);
        assert_eq!(config.buses[0].silence(), Duration::from_millis(5));
        let err = AgentConfig::load(&write(&dir, &with_bus("baud = 1200\npause = \"5ms\"", "")))
            .expect_err("a pause shorter than 3.5 characters is refused")
            .to_string();
        assert!(err.contains("field `buses[0].pause`"), "{err}");
        // 8N1 at 1200 baud: 10 bits a character.
        assert!(err.contains("29.167ms"), "{err}");
    }

    #[test]
    fn adaptive_polling_bounds_are_checked_and_named() {
        let dir = temp_dir("adaptive");
        let adaptive =
            "[polling.adaptive]\nenabled = true\nmin_interval = \"5s\"\nmax_interval = \"2s\"";
        let err = AgentConfig::load(&write(&dir, &with_bus("", adaptive)))
            .expect_err("max below min is refused")
            .to_string();
        assert!(
            err.contains("field `polling.adaptive.max_interval`"),
            "{err}"
        );
        let good = adaptive.replace("\"2s\"", "\"2m\"");
        let config =
            AgentConfig::load(&write(&dir, &with_bus("", &good))).unwrap_or_else(|e| panic!("{e}"));
        let settings = config.polling.adaptive.settings().expect("enabled");
        assert_eq!(
            (settings.min, settings.max),
            (Duration::from_secs(5), Duration::from_secs(120))
        );
        let err = AgentConfig::load(&write(
            &dir,
            &with_bus("", "[polling.adaptive]\nfast_change = -1.0"),
        ))
        .expect_err("a negative share is refused")
        .to_string();
        assert!(err.contains("polling.adaptive.fast_change"), "{err}");
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge-agent.toml");
        let config = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.devices[0].profile.id, "aurora-ashp");
    }
}
