//! Scripted events (`[[event]]`): a fault or trap placed exactly, on top of the random ones.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::FaultCategory;

use super::kinds::{FaultKind, TrapKind};

/// What a scripted event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventKind {
    Fault(FaultKind),
    Trap(TrapKind),
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Fault(kind) => kind.as_str(),
            EventKind::Trap(kind) => kind.as_str(),
        }
    }
}

/// One scripted event: placed exactly, in addition to the random ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedEvent {
    /// A fault kind, or a trap (`resident_away`, `wifi_drop`, `window_airing`, `heating_off`,
    /// `commissioning`).
    pub kind: EventKind,
    /// Index of the household in the fleet (0-based); a supply fault hits its village.
    pub household: usize,
    /// When, after the start of the run.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// How long, for supply and communication faults and traps (default: the range's middle).
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// Progress per day of a gradual fault (default: the range's middle).
    #[serde(default)]
    pub speed: Option<f64>,
    /// The lockout's category (default: the kind's first lockout category).
    #[serde(default)]
    pub category: Option<FaultCategory>,
}
