//! The gateway: the district's central service. One process runs an embedded MQTT broker
//! (rumqttd), ingest, the rule engine, the work-order store (SQLite) and the HTTP API.
//!
//! Main types, by component:
//! - [`config::GatewayConfig`]: the validated configuration (TOML + `GATEWAY__...` overrides).
//! - [`broker::EmbeddedBroker`]: the rumqttd broker and the gateway's in-process link.
//! - [`broker::tenants`]: which edge box may publish what (mutual TLS, tenant prefixes);
//!   [`certs`]: `gateway certs ...` issues the CA, broker and box certificates.
//! - [`ingest::Ingest`]: validates messages, keeps the [`fleet::Fleet`] picture, runs the rules;
//!   [`ingest::snapshot`] saves and restores the rule state's file.
//! - [`orders::OrderService`]: alerts and work orders, one order per alert episode.
//! - [`notify::Notifier`]: escalations (督办), SLA warnings, supply incidents and vulnerable
//!   households' orders pushed to people: a signed webhook and an SMS/WeChat gateway adapter.
//! - [`prevention::Prevention`]: risk scores per unit and the cold-wave sweep (防寒) that opens
//!   preventive visits and calls ahead of a forecast cold wave.
//! - [`api::router`]: the HTTP API under `/api/v1`.
//! - [`app::start`]: wires them together (the `demo` crate runs it beside simulated households
//!   and edge agents in one process).

pub mod api;
pub mod app;
pub mod auth;
pub mod broker;
pub mod certs;
pub mod config;
pub mod events;
pub mod fleet;
pub mod ingest;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod orders;
pub mod prevention;
pub mod registry;
pub mod sinks;
