//! The wire format shared by edge agents, the gateway, the rules and the simulator.
//!
//! Main types:
//! - [`topic::Topic`]: the MQTT topic scheme `heating/v1/{township}/{id}/{kind}` and its parser.
//! - [`Telemetry`]: one poll of one device, stamped with event time and a per-device sequence.
//! - [`AgentStatus`]: the retained `online` / last-will `offline` message of an edge box.
//! - [`Values`]: a reading's values by name, canonical names stored as an index.
//! - [`edge_alert`]: the local alarms an edge box raised while its uplink was down ([`EdgeAlert`]).
//! - [`clock`]: a reading's boot id, monotonic time and `synced` flag ([`ClockStamp`]).
//! - [`values`]: the canonical value names (with units and plausible ranges) shared by every brand.
//! - [`FaultCategory`]: the brand-independent fault categories that profiles map fault codes onto.
//! - [`DeviceId`], [`TownshipId`]: validated identifiers that are safe to use as topic levels.
//! - [`diagnostics`]: positions in TOML files for the config, profile and rule errors of every
//!   crate (file:line:column and the dotted field path).

pub mod bytes;
pub mod calendar;
pub mod clock;
pub mod diagnostics;
pub mod edge_alert;
pub mod ids;
pub mod message;
pub mod topic;
pub mod value_map;
pub mod values;

pub use clock::ClockStamp;
pub use edge_alert::{EdgeAlert, EdgeAlertKind, EdgeChannel};
pub use ids::{DeviceId, IdError, TownshipId};
pub use message::{
    AgentState, AgentStatus, DeviceKind, Fault, FaultCategory, PayloadError, Telemetry,
    SCHEMA_VERSION,
};
pub use topic::{Topic, TopicError, TopicKind, TOPIC_ROOT};
pub use value_map::Values;
