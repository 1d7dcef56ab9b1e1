//! A pure, deterministic, event-time rule engine for heating telemetry.
//!
//! Rules are data: operators write them in TOML ([`RuleSet::parse`]; the default pack is
//! [`DEFAULT_RULES`]). The [`Engine`] takes validated [`wire::Telemetry`] readings and an
//! event-time watermark and returns an [`Outcome`]: alert [`Transition`]s (firing, resolved),
//! [`Escalation`]s within an episode and fleet [`IncidentTransition`]s. It does no IO and never
//! reads a clock, so the same code runs live in the gateway, in a backtest over recorded
//! telemetry ([`backtest`], the `rules backtest` command) and at the edge, and the same input
//! always gives the same output.
//!
//! Main types:
//! - [`RuleSet`] and [`Rule`]: a validated rule file with its escalation levels, per-group
//!   [`Override`]s and [`FleetRule`]s. Errors are [`RuleError`], which names the file, line,
//!   column, rule and field at fault (inside expressions too).
//! - [`Condition`]: what a rule watches: a fault, a threshold, the absence of readings, or an
//!   [`Expr`] (module [`expr`]: a winnow parser, a type checker against the canonical values,
//!   three-valued evaluation).
//! - [`window`]: derived values (rates, windowed min/max/avg, starts, counter increases, time
//!   shares, protection trips, COP and its baseline) in fixed memory per device.
//! - [`Engine`]: a per-device reorder buffer ([`EngineConfig::lateness`]), per device × rule
//!   state machines (idle, pending, firing, with escalation levels), absence deadlines driven by
//!   the watermark, device registration ([`DeviceInfo`]) and the [`fleet`] layer that turns many
//!   device alerts into one incident and suppresses the orders it explains.
//! - [`Snapshot`]: the whole engine state, serialisable, so timers, active alerts, windows,
//!   buffers and incidents survive a restart and a rule reload.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! let rules = rules::RuleSet::default_pack()?;
//! let mut engine = rules::Engine::new(rules);
//! let reading = wire::Telemetry {
//!     v: wire::SCHEMA_VERSION,
//!     device_id: wire::DeviceId::parse("yq-0001-hp")?,
//!     ts_ms: 1_764_547_200_000,
//!     seq: 1,
//!     profile: "aurora-ashp".into(),
//!     kind: wire::DeviceKind::HeatPump,
//!     values: wire::Values::from([("indoor_temp_c", 19.5)]),
//!     fault: None,
//!     extra: BTreeMap::new(),
//! };
//! assert!(engine.ingest(&reading).is_empty());
//! // Fifteen minutes of silence in event time: the device is offline.
//! let offline = engine.advance(reading.ts_ms + 15 * 60_000);
//! assert_eq!(offline.len(), 1);
//! assert_eq!(offline[0].summary, "no reading for 15m");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod area;
pub mod backtest;
pub mod condition;
mod dense;
pub mod derive;
pub mod engine;
pub mod error;
pub mod expr;
pub mod fleet;
pub mod rule;
pub mod snapshot;
pub mod window;

mod parse;

pub use condition::{Condition, Direction, Threshold};
pub use engine::{
    DeviceInfo, Engine, EngineConfig, EngineStats, Escalation, Outcome, Transition, TransitionKind,
};
pub use error::{Location, Problem, RuleError};
pub use expr::Expr;
pub use fleet::{FleetRule, GroupKey, GroupLevel, IncidentTransition};
pub use rule::{Action, EscalationLevel, Override, Priority, Rule, RuleSet, Selector, Severity};
pub use snapshot::{AlertState, DeviceSnapshot, Registered, Snapshot, SNAPSHOT_FORMAT};

/// The default rule pack: device fault → repair order, room below 14 °C for 30 minutes →
/// low-temperature order, no reading for 15 minutes → offline alert. See `rules/README.md`.
pub const DEFAULT_RULES: &str = include_str!("../default.toml");

/// The origin name used for [`DEFAULT_RULES`] in error messages.
pub const DEFAULT_RULES_ORIGIN: &str = "rules/default.toml";
