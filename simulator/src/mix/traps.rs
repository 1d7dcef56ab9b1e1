//! The `[traps]` table: one spec per event trap (its rate, duration and depth), with the
//! documented defaults.

use serde::{Deserialize, Serialize};

use super::kinds::TrapKind;
use super::overrides::RawTrapRates;
use super::ranges::{DurationRange, ValueRange};

/// A resident away with the heating on frost protection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AwaySpec {
    pub rate: f64,
    pub duration: DurationRange,
    /// The frost-protection set point left on the thermostat, °C.
    pub setpoint_c: f64,
}

/// A brief Wi-Fi drop of an edge box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WifiDropSpec {
    pub rate: f64,
    pub duration: DurationRange,
}

/// A window opened for airing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AiringSpec {
    pub rate: f64,
    /// How long the window stays open.
    pub duration: DurationRange,
    /// How far the room air falls while it is open, K.
    pub drop_k: ValueRange,
}

/// The heating switched off for an afternoon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeatingOffSpec {
    pub rate: f64,
    pub duration: DurationRange,
    /// The frost-minimum set point left on the thermostat, °C.
    pub setpoint_c: ValueRange,
}

/// A unit being commissioned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CommissioningSpec {
    pub rate: f64,
    /// How long the installer works on it.
    pub duration: DurationRange,
}

fn default_away_setpoint() -> f64 {
    7.0
}

/// Trap rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawTrapRates")]
pub struct TrapRates {
    pub resident_away: AwaySpec,
    pub wifi_drop: WifiDropSpec,
    pub window_airing: AiringSpec,
    pub heating_off: HeatingOffSpec,
    pub commissioning: CommissioningSpec,
}

impl TrapRates {
    fn resident_away() -> AwaySpec {
        AwaySpec {
            rate: 1.5,
            duration: DurationRange::hours(24, 96),
            setpoint_c: default_away_setpoint(),
        }
    }
    fn wifi_drop() -> WifiDropSpec {
        WifiDropSpec {
            rate: 10.0,
            duration: DurationRange::minutes(5, 25),
        }
    }
    fn window_airing() -> AiringSpec {
        AiringSpec {
            rate: 10.0,
            duration: DurationRange::minutes(10, 30),
            drop_k: ValueRange::new(2.0, 5.0),
        }
    }
    fn heating_off() -> HeatingOffSpec {
        HeatingOffSpec {
            rate: 3.0,
            duration: DurationRange::hours(3, 6),
            setpoint_c: ValueRange::new(5.0, 7.0),
        }
    }
    fn commissioning() -> CommissioningSpec {
        CommissioningSpec {
            rate: 0.5,
            duration: DurationRange::hours(2, 6),
        }
    }

    /// The rate of an event trap (0 for the fleet habits).
    pub fn rate(&self, kind: TrapKind) -> f64 {
        match kind {
            TrapKind::ResidentAway => self.resident_away.rate,
            TrapKind::WifiDrop => self.wifi_drop.rate,
            TrapKind::WindowAiring => self.window_airing.rate,
            TrapKind::HeatingOff => self.heating_off.rate,
            TrapKind::Commissioning => self.commissioning.rate,
            TrapKind::NightSetback | TrapKind::Defrost => 0.0,
        }
    }

    /// How long an event trap lasts (a fleet habit: the away range, unused).
    pub fn duration(&self, kind: TrapKind) -> DurationRange {
        match kind {
            TrapKind::WifiDrop => self.wifi_drop.duration,
            TrapKind::WindowAiring => self.window_airing.duration,
            TrapKind::HeatingOff => self.heating_off.duration,
            TrapKind::Commissioning => self.commissioning.duration,
            TrapKind::ResidentAway | TrapKind::NightSetback | TrapKind::Defrost => {
                self.resident_away.duration
            }
        }
    }
}

impl Default for TrapRates {
    fn default() -> TrapRates {
        TrapRates {
            resident_away: TrapRates::resident_away(),
            wifi_drop: TrapRates::wifi_drop(),
            window_airing: TrapRates::window_airing(),
            heating_off: TrapRates::heating_off(),
            commissioning: TrapRates::commissioning(),
        }
    }
}
