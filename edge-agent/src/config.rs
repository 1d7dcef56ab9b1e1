//! The agent's configuration: a TOML file with environment overrides (`EDGE_AGENT__MQTT__HOST`),
//! parsed once at start-up into a validated [`AgentConfig`] whose errors name file, line and field.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use wire::{DeviceId, TownshipId};

use crate::diagnostics;
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
}

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
}

impl Default for PollingConfig {
    fn default() -> Self {
        Self {
            interval: default_interval(),
            timeout: default_timeout(),
            max_gap: default_max_gap(),
        }
    }
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
    #[error("{0}")]
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
        // Parse the file alone first: toml's errors carry the line and column.
        toml::from_str::<RawConfig>(&text).map_err(|e| {
            let (line, column) = diagnostics::line_col(&text, e.span().map_or(0, |s| s.start));
            ConfigError::Invalid {
                place: format!("{origin}:{line}:{column}"),
                message: e.message().to_owned(),
            }
        })?;
        let raw: RawConfig = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__"),
            )
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Environment(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::validate(raw, &text, &origin, base)
    }

    /// Validates a parsed configuration; `text` and `origin` are used to place errors.
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
        let profiles_dir = base.join(&raw.profiles_dir);
        let profiles = load_profiles(&profiles_dir).map_err(|e| match e {
            LoadError::Profile(p) => ConfigError::Profile(p),
            LoadError::Io(message) => invalid("profiles_dir", message),
        })?;
        let mut seen = HashSet::new();
        let mut devices = Vec::with_capacity(raw.devices.len());
        for (index, device) in raw.devices.into_iter().enumerate() {
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
            let profile = profiles.get(&device.profile).cloned().ok_or_else(|| {
                let mut known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                known.sort_unstable();
                invalid(
                    &field("profile"),
                    format!(
                        "no profile {:?} in {} (known: {})",
                        device.profile,
                        profiles_dir.display(),
                        known.join(", ")
                    ),
                )
            })?;
            let interval = device.interval.unwrap_or(raw.polling.interval);
            if interval < Duration::from_millis(100) {
                return Err(invalid(&field("interval"), "must be at least 100ms".into()));
            }
            devices.push(Device {
                township: device.township.unwrap_or_else(|| raw.township.clone()),
                id: device.id,
                profile,
                unit_id: device.unit_id,
                transport: device.transport,
                interval,
            });
        }
        Ok(AgentConfig {
            agent_id: raw.agent_id,
            township: raw.township,
            mqtt: raw.mqtt,
            polling: raw.polling,
            devices,
        })
    }
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
    fn a_type_error_names_line_and_column() {
        let dir = temp_dir("type");
        let text = config_text(1, "huanre-boiler").replace("host = \"127.0.0.1\"", "host = 5");
        let err = AgentConfig::load(&write(&dir, &text))
            .expect_err("wrong type is refused")
            .to_string();
        assert!(err.contains("agent.toml:6:8"), "{err}");
    }

    #[test]
    fn the_example_config_in_deploy_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge-agent.toml");
        let config = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.devices[0].profile.id, "aurora-ashp");
    }
}
