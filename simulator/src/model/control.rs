//! The controller's decision each step: protection trips and supply faults running out, the
//! high-limit thermostat, the room thermostat (or the installer while commissioning), then the
//! heater's own control (see `heat_pump` and `boiler`).

use super::house::{Heater, House};
use super::physics::THERMOSTAT_BAND_K;

/// What the controller decided before the heater's own control runs.
pub(super) struct Call {
    /// Something stops the heater (no power, a fault, a silent stop, the high limit).
    pub(super) blocked: bool,
    /// The thermostat (or the installer) calls for heat...
    pub(super) too_cold: bool,
    /// ...or for the heater to stop.
    pub(super) too_warm: bool,
    /// The heater ran before this decision.
    pub(super) was_on: bool,
    /// The thermostat's target, °C.
    pub(super) setpoint: f64,
    /// The room air, °C.
    pub(super) room_c: f64,
    /// The gas supply pressure at the boiler, mbar (0 for a heat pump).
    pub(super) gas_now: f64,
    /// The unit's electronics are powered (its standby draw).
    pub(super) standby: bool,
}

impl Call {
    /// The electronics' idle draw while the heater is off, W.
    pub(super) fn standby_w(&self, idle_w: f64) -> f64 {
        if self.standby {
            idle_w
        } else {
            0.0
        }
    }
}

impl House {
    /// Decides whether the heater runs and how much heat and power it produces.
    pub(super) fn control(&mut self, dt_s: f64) {
        self.expire_faults(dt_s);
        self.high_limit_thermostat();
        let call = self.call_for_heat(dt_s);
        match self.heater {
            Heater::HeatPump(_) => self.control_heat_pump(dt_s, &call),
            Heater::GasBoiler(_) => self.control_boiler(&call),
        }
    }

    /// A protection trip runs out; a gas-supply fault clears once the supply is back.
    fn expire_faults(&mut self, dt_s: f64) {
        if let Some(trip) = self.trip.as_mut() {
            trip.left_s -= dt_s;
            if trip.left_s <= 0.0 {
                self.trip = None;
            }
        }
        if let (Some(_), Heater::GasBoiler(boiler)) = (self.supply_fault, &self.heater) {
            if self.gas_supply_now(boiler) >= self.constants.gas_recovered_mbar {
                self.supply_fault = None;
            }
        }
    }

    /// The high-limit thermostat on the unit's own flow sensor: off at the limit, on again
    /// once the sensor has cooled by the differential.
    fn high_limit_thermostat(&mut self) {
        let limit = self.constants.high_limit_c;
        if self.high_limit_hold {
            if self.water_c <= limit - self.constants.high_limit_differential_k {
                self.high_limit_hold = false;
            }
        } else if self.heater_on && self.water_c >= limit {
            self.high_limit_hold = true;
        }
    }

    /// What stops the heater and what the room thermostat asks for (while commissioning, the
    /// installer starts and stops the unit instead).
    fn call_for_heat(&mut self, dt_s: f64) -> Call {
        let setpoint = self.setpoint_c();
        let blocked = !self.power_on
            || self.lockout.is_some()
            || self.trip.is_some()
            || self.supply_fault.is_some()
            || self.health.silently_stopped()
            || self.high_limit_hold;
        let half_band = THERMOSTAT_BAND_K / 2.0;
        let room_c = self.indoor_c + self.air_offset_k;
        let mut too_cold = room_c < setpoint - half_band;
        let mut too_warm = room_c > setpoint + half_band;
        if let Some(commissioning) = self.commissioning.as_mut() {
            // The installer, not the thermostat, starts and stops the unit.
            commissioning.phase_left_s -= dt_s;
            if commissioning.phase_left_s <= 0.0 {
                commissioning.forced_on = !commissioning.forced_on;
                commissioning.phase_left_s = self.rng.uniform(180.0, 600.0);
                commissioning.flow_skew_k = self.rng.uniform(-4.0, 4.0);
                commissioning.return_skew_k = self.rng.uniform(-3.0, 4.0);
            }
            too_cold = commissioning.forced_on;
            too_warm = !commissioning.forced_on;
        }
        let was_on = self.heater_on;
        let gas_now = match &self.heater {
            Heater::GasBoiler(boiler) => self.gas_supply_now(boiler),
            Heater::HeatPump(_) => 0.0,
        };
        let standby = self.power_on && !self.health.breaker_tripped;
        Call {
            blocked,
            too_cold,
            too_warm,
            was_on,
            setpoint,
            room_c,
            gas_now,
            standby,
        }
    }
}
