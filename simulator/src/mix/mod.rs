//! The scenario mix of `simulator bench winter`: a TOML file with the fault and trap rates, the
//! residents', technicians' and telemetry parameters, and optional scripted events. The mix and
//! the seed are the benchmark's inputs, so anyone can rerun a score card.
//!
//! Rates of household faults and traps are per 1000 devices of the kinds a fault applies to,
//! per day; supply faults are per village per day. Many household faults raise no code at all
//! ([`FaultKind::raises_code`]); `simulator/mixes/codeless.toml` is a mix where most do not. Every field has a documented default, so a
//! mix only names what it changes; unknown fields are errors that name file, line and column.
//! See `simulator/mixes/default.toml` for the default mix with the reasons behind its numbers.

mod events;
mod faults;
mod fleet;
mod kinds;
mod overrides;
mod ranges;
mod residents;
mod technicians;
mod traps;
mod validate;

use std::path::Path;

use serde::{Deserialize, Serialize};
use wire::diagnostics;

pub use events::{EventKind, ScriptedEvent};
pub use faults::{
    BoxOfflineSpec, FaultRates, GasDropSpec, GradualSpec, IgnitionSpec, OutageSpec,
    PartialLossSpec, SuddenSpec,
};
pub use fleet::{FleetMix, TelemetryMix};
pub use kinds::{lockout_categories, FaultClass, FaultKind, TrapKind};
pub use ranges::{DurationRange, StartDate, TimeOfDay, ValueRange};
pub use residents::{ChannelWeights, ResidentMix};
pub use technicians::TechnicianMix;
pub use traps::{AiringSpec, AwaySpec, CommissioningSpec, HeatingOffSpec, TrapRates, WifiDropSpec};

/// Why a mix file was refused.
#[derive(Debug, thiserror::Error)]
pub enum MixError {
    #[error("{path}: cannot be read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{place}: {message}")]
    Invalid { place: String, message: String },
}

/// A whole scenario mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// A name for the score card.
    #[serde(default = "Mix::default_name")]
    pub name: String,
    /// First simulated day; the run starts at 00:00 Beijing time.
    #[serde(default = "Mix::default_start")]
    pub start: StartDate,
    #[serde(default)]
    pub telemetry: TelemetryMix,
    #[serde(default)]
    pub fleet: FleetMix,
    #[serde(default)]
    pub residents: ResidentMix,
    #[serde(default)]
    pub technicians: TechnicianMix,
    #[serde(default)]
    pub faults: FaultRates,
    #[serde(default)]
    pub traps: TrapRates,
    /// Share of random household faults and traps placed on a household that already has an
    /// event, overlapping it in time (a trap during a fault, two faults at once).
    #[serde(default = "Mix::default_overlap_share")]
    pub overlap_share: f64,
    /// Scripted events.
    #[serde(default, rename = "event")]
    pub events: Vec<ScriptedEvent>,
}

impl Mix {
    fn default_name() -> String {
        "unnamed".to_owned()
    }
    fn default_overlap_share() -> f64 {
        0.1
    }
    fn default_start() -> StartDate {
        StartDate {
            year: 2026,
            month: 1,
            day: 5,
        }
    }

    /// The shipped default mix (`simulator/mixes/default.toml`).
    pub fn default_mix() -> Result<Mix, MixError> {
        Mix::parse(
            include_str!("../../mixes/default.toml"),
            "simulator/mixes/default.toml",
        )
    }

    /// Reads and validates a mix file.
    pub fn load(path: &Path) -> Result<Mix, MixError> {
        let text = std::fs::read_to_string(path).map_err(|source| MixError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Mix::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a mix from TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Mix, MixError> {
        let mix: Mix = toml::from_str(text).map_err(|e| {
            let (line, column) = diagnostics::line_col(text, e.span().map_or(0, |s| s.start));
            MixError::Invalid {
                place: format!("{origin}:{line}:{column}"),
                message: e.message().to_owned(),
            }
        })?;
        mix.validate(text, origin)?;
        Ok(mix)
    }
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            name: Mix::default_name(),
            start: Mix::default_start(),
            telemetry: TelemetryMix::default(),
            fleet: FleetMix::default(),
            residents: ResidentMix::default(),
            technicians: TechnicianMix::default(),
            faults: FaultRates::default(),
            traps: TrapRates::default(),
            overlap_share: Mix::default_overlap_share(),
            events: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
