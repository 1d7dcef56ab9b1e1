//! The edge agent: runs on a field box next to a heat pump or boiler, polls it over Modbus with
//! a register-map profile, and publishes telemetry over MQTT.
//!
//! Main types:
//! - [`profile::Profile`]: a brand's register map as data, with decode/encode of every type.
//! - [`plan::PollPlan`]: a device's registers merged into the fewest Modbus read requests.
//! - [`config::AgentConfig`]: the validated TOML configuration (gateway, devices, profiles).
//! - [`modbus::DevicePoller`]: reads one device's blocks and decodes them.
//! - [`bus`]: a shared RS-485 line's discipline: [`bus::inter_frame_gap`], the per-slave
//!   [`bus::Breaker`], the adaptive poll period [`bus::Cadence`], and [`bus::BusLine`] (gap,
//!   warm-up and utilisation of one bus).
//! - [`queue::DiskQueue`]: the crash-safe, bounded store-and-forward queue between polling and
//!   MQTT (readings leave it only on PUBACK).
//! - [`clock::BootClock`]: boot id, monotonic time and clock trust of every reading; readings
//!   taken before the wall clock was trusted are re-stamped on their way out.
//! - [`command`]: remote commands and their acks, checks and the durable log of executed ids.
//! - [`guard::Guard`]: the gateway's rules run on the box, raising a local alarm (a coil, a
//!   hook) when the house loses its heat while the uplink is down.
//! - [`health`]: per-device counters, the `unreachable` state and the health report.
//! - [`agent::Agent`]: the running agent, wiring its parts: the poller and RS-485 bus tasks
//!   (`agent::polling`), the MQTT connection (`agent::mqtt`), the uplink that drains the queue
//!   (`agent::uplink`) and the command lifecycle (`agent::commands`).

pub mod agent;
pub mod bus;
pub mod clock;
pub mod command;
pub mod config;
pub mod guard;
pub mod health;
pub mod modbus;
pub mod plan;
pub mod profile;
pub mod queue;
