//! What residents, installers and the village do to a house from outside: set points and
//! remote writes, night set-back, away mode, free gains, airing, commissioning, mains power
//! and gas supply.

use wire::values as v;

use super::house::House;
use super::physics::{
    COOKING_GAIN_W, NIGHT_FROM_LOCAL_HOUR, NIGHT_TO_LOCAL_HOUR, OCCUPANT_GAIN_W, SOLAR_GAIN_W,
};
use crate::climate::LOCAL_UTC_OFFSET_S;

/// Why a write to the model was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WriteRefused {
    #[error("{0} cannot be written on this device")]
    NotWritable(String),
    #[error("{name} = {value} is outside {min}..={max}")]
    OutOfRange {
        name: String,
        value: f64,
        min: f64,
        max: f64,
    },
}

/// The set points the model itself accepts (a profile may narrow this), °C.
pub const SETPOINT_RANGE_C: (f64, f64) = (5.0, 30.0);

/// A window opened for airing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Airing {
    /// How far the room air falls while it is open, K.
    pub(super) drop_k: f64,
    /// Time constant of the fall, s.
    pub(super) tau_s: f64,
}

/// A unit being commissioned: the installer starts and stops it by hand, air is still in the
/// circuit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Commissioning {
    pub(super) forced_on: bool,
    pub(super) phase_left_s: f64,
    /// Flow sensor offset from air around it, K.
    pub(super) flow_skew_k: f64,
    /// Return minus flow while air is in the circuit, K (sometimes above the flow).
    pub(super) return_skew_k: f64,
}

/// Local (Beijing) hour of the day at a Unix time.
pub fn local_hour(unix_s: f64) -> f64 {
    ((unix_s + LOCAL_UTC_OFFSET_S) / 3600.0).rem_euclid(24.0)
}

/// True between [`NIGHT_FROM_LOCAL_HOUR`] and [`NIGHT_TO_LOCAL_HOUR`].
pub fn is_night(unix_s: f64) -> bool {
    let hour = local_hour(unix_s);
    !(NIGHT_TO_LOCAL_HOUR..NIGHT_FROM_LOCAL_HOUR).contains(&hour)
}

impl House {
    /// Opens a window for airing: the room air falls by about `drop_k` over `over_s` while the
    /// heater works against it. [`House::close_window`] ends it.
    pub fn open_window(&mut self, drop_k: f64, over_s: f64) {
        if drop_k.is_finite() && over_s.is_finite() && over_s > 0.0 {
            self.airing = Some(Airing {
                drop_k: drop_k.max(0.0),
                tau_s: over_s / 3.0,
            });
        }
    }

    /// Closes the window: the room air is back to the house's temperature within minutes.
    pub fn close_window(&mut self) {
        self.airing = None;
    }

    /// A unit being commissioned (`true`): the installer starts and stops it every few minutes
    /// and air in the circuit makes flow and return odd; `false` hands it to its thermostat.
    pub fn set_commissioning(&mut self, on: bool) {
        self.commissioning = on.then(|| Commissioning {
            forced_on: true,
            phase_left_s: self.rng.uniform(180.0, 600.0),
            flow_skew_k: self.rng.uniform(-4.0, 4.0),
            return_skew_k: self.rng.uniform(-3.0, 4.0),
        });
        self.control(0.0);
    }

    /// True while the unit is being commissioned.
    pub fn commissioning(&self) -> bool {
        self.commissioning.is_some()
    }

    /// The thermostat's current target: the away set point while the resident is away, else
    /// the comfort set point lowered by the night set-back at night, °C.
    pub fn setpoint_c(&self) -> f64 {
        match self.away_setpoint_c {
            Some(away) => away,
            None if self.night_setback_k > 0.0 && is_night(self.now_unix_s) => {
                self.comfort_setpoint_c - self.night_setback_k
            }
            None => self.comfort_setpoint_c,
        }
    }

    /// The resident's comfort set point, °C.
    pub fn comfort_setpoint_c(&self) -> f64 {
        self.comfort_setpoint_c
    }

    /// Sun through the windows, occupants and cooking warm the house (off by default, so
    /// that bare physics experiments see only the heater and the losses).
    pub fn set_free_gains(&mut self, on: bool) {
        self.free_gains = on;
    }

    /// Heat from sun, occupants and cooking now, W.
    pub(super) fn free_gains_w(&self, sun: f64) -> f64 {
        if !self.free_gains {
            return 0.0;
        }
        let mut gains = SOLAR_GAIN_W * sun.clamp(0.0, 1.0);
        if self.away_setpoint_c.is_none() {
            gains += OCCUPANT_GAIN_W;
            let hour = local_hour(self.now_unix_s);
            let cooking = [(6.5, 7.5), (11.5, 12.5), (17.5, 19.0)]
                .iter()
                .any(|&(from, to)| (from..to).contains(&hour));
            if cooking {
                gains += COOKING_GAIN_W;
            }
        }
        gains
    }

    /// Night set-back depth in K (0 switches it off).
    pub fn set_night_setback(&mut self, depth_k: f64) {
        self.night_setback_k = if depth_k.is_finite() {
            depth_k.max(0.0)
        } else {
            0.0
        };
    }

    /// The resident leaves with the thermostat on frost protection (`Some(set point)`), or
    /// comes back (`None`).
    pub fn set_away(&mut self, setpoint_c: Option<f64>) {
        self.away_setpoint_c = setpoint_c
            .filter(|s| s.is_finite())
            .map(|s| s.clamp(SETPOINT_RANGE_C.0, SETPOINT_RANGE_C.1));
    }

    /// Mains power on or off. Without power the heater stops at once.
    pub fn set_power(&mut self, on: bool) {
        self.power_on = on;
        self.control(0.0);
    }

    /// The village gas supply pressure (`None`: normal).
    pub fn set_gas_supply(&mut self, mbar: Option<f64>) {
        self.gas_supply_mbar = mbar.filter(|m| m.is_finite()).map(|m| m.max(0.0));
        self.control(0.0);
    }

    /// Applies a remote write of a canonical value (only `setpoint_c` is writable); it sets
    /// the comfort set point.
    pub fn write(&mut self, name: &str, value: f64) -> Result<(), WriteRefused> {
        Self::check_write(name, value)?;
        self.comfort_setpoint_c = value;
        Ok(())
    }

    /// Checks a write without applying it.
    pub fn check_write(name: &str, value: f64) -> Result<(), WriteRefused> {
        if name != v::SETPOINT_C {
            return Err(WriteRefused::NotWritable(name.to_owned()));
        }
        let (min, max) = SETPOINT_RANGE_C;
        if !(min..=max).contains(&value) {
            return Err(WriteRefused::OutOfRange {
                name: name.to_owned(),
                value,
                min,
                max,
            });
        }
        Ok(())
    }
}
