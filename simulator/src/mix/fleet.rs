//! The `[telemetry]` and `[fleet]` tables: what the virtual edge boxes publish and the
//! fleet-wide habits (night set-back).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ranges::ValueRange;

/// What the virtual edge boxes publish.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMix {
    /// How often each box reads its heater and publishes, in simulated time.
    #[serde(default = "TelemetryMix::interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Boxes keep readings while their network is down and send them on reconnect (the
    /// designed edge agent's disk queue); a box without power keeps nothing.
    #[serde(default = "TelemetryMix::store_and_forward")]
    pub store_and_forward: bool,
}

impl TelemetryMix {
    fn interval() -> Duration {
        Duration::from_secs(60)
    }
    fn store_and_forward() -> bool {
        true
    }
}

impl Default for TelemetryMix {
    fn default() -> TelemetryMix {
        TelemetryMix {
            interval: TelemetryMix::interval(),
            store_and_forward: TelemetryMix::store_and_forward(),
        }
    }
}

/// Fleet-wide habits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetMix {
    /// Share of households that lower the set point at night (22:00-06:00).
    #[serde(default = "FleetMix::night_setback_share")]
    pub night_setback_share: f64,
    /// Depth of the set-back, K.
    #[serde(default = "FleetMix::night_setback_k")]
    pub night_setback_k: ValueRange,
    /// Nobody sets back below this, °C.
    #[serde(default = "FleetMix::min_setback_setpoint_c")]
    pub min_setback_setpoint_c: f64,
}

impl FleetMix {
    fn night_setback_share() -> f64 {
        0.35
    }
    fn night_setback_k() -> ValueRange {
        ValueRange::new(2.0, 3.0)
    }
    fn min_setback_setpoint_c() -> f64 {
        17.5
    }
}

impl Default for FleetMix {
    fn default() -> FleetMix {
        FleetMix {
            night_setback_share: FleetMix::night_setback_share(),
            night_setback_k: FleetMix::night_setback_k(),
            min_setback_setpoint_c: FleetMix::min_setback_setpoint_c(),
        }
    }
}
