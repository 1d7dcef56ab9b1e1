//! The edge agent: runs on a field box next to a heat pump or boiler, polls it over Modbus with
//! a register-map profile, and publishes telemetry over MQTT.
//!
//! Main types:
//! - [`profile::Profile`]: a brand's register map as data, with decode/encode of every type.
//! - [`plan::PollPlan`]: a device's registers merged into the fewest Modbus read requests.
//! - [`config::AgentConfig`]: the validated TOML configuration (gateway, devices, profiles).
//! - [`modbus::DevicePoller`]: reads one device's blocks and decodes them.
//! - [`agent::Agent`]: the running agent: one poller task per device, one MQTT publisher.

pub mod agent;
pub mod config;
pub mod diagnostics;
pub mod modbus;
pub mod plan;
pub mod profile;
