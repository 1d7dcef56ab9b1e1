//! The gas boiler: its state (modulation, ignitions, flue, hot water, fill and gas pressure),
//! how it starts, its control (thermostat, ignition against the gas supply, modulation), its
//! water circuit and the registers only it has.

use std::collections::BTreeMap;

use wire::values as v;
use wire::FaultCategory;

use super::control::Call;
use super::faults::ActiveFault;
use super::house::{Heater, HeaterStart, House};
use super::physics::{
    approach, boiler_water_pressure_bar, BOILER_FLOW_W_PER_K, BOILER_MAX_OUTPUT_W,
    BOILER_MIN_MODULATION, BOILER_ROOM_GAIN_W_PER_K,
};
use super::unit::brand_code;
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub(super) struct BoilerState {
    pub(super) modulation: f64,
    pub(super) ignition_attempts: f64,
    pub(super) flue_c: f64,
    pub(super) dhw_c: f64,
    /// Cold fill pressure now (a leak lowers it), bar.
    pub(super) cold_fill_bar: f64,
    /// Cold fill pressure the installer set (a repair refills to it), bar.
    pub(super) healthy_fill_bar: f64,
    pub(super) supply_gas_mbar: f64,
}

impl BoilerState {
    /// A boiler in its heated steady state, with the counters of a unit some winters old.
    pub(super) fn start(rng: &mut Rng) -> HeaterStart {
        let fill = rng.uniform(1.25, 1.45);
        let state = BoilerState {
            modulation: BOILER_MIN_MODULATION,
            ignition_attempts: rng.uniform(500.0, 15_000.0).round(),
            flue_c: 55.0,
            dhw_c: 48.0,
            cold_fill_bar: fill,
            healthy_fill_bar: fill,
            supply_gas_mbar: 20.0 + rng.uniform(-0.4, 0.4),
        };
        HeaterStart {
            heater: Heater::GasBoiler(state),
            water_c: 57.0,
            energy_kwh: 0.0,
            runtime_h: rng.uniform(200.0, 6000.0),
        }
    }
}

impl House {
    /// The gas pressure at the boiler now: the village's when it is not normal, mbar.
    pub(super) fn gas_supply_now(&self, boiler: &BoilerState) -> f64 {
        self.gas_supply_mbar.unwrap_or(boiler.supply_gas_mbar)
    }

    /// The boiler's control: on and off by the thermostat, the burner lit only above the gas
    /// valve's minimum (else a gas-supply fault), modulation and ignitions.
    pub(super) fn control_boiler(&mut self, call: &Call) {
        let Heater::GasBoiler(boiler) = &mut self.heater else {
            return;
        };
        if call.blocked {
            self.heater_on = false;
        } else if call.too_cold {
            self.heater_on = true;
        } else if call.too_warm {
            self.heater_on = false;
        }
        if self.heater_on && call.gas_now < self.constants.gas_min_ignition_mbar {
            // The burner cannot light (or loses its flame): three tries, then the
            // boiler shows a gas-supply fault until the pressure is back.
            boiler.ignition_attempts += 3.0;
            self.heater_on = false;
            let code = brand_code(&self.profile, FaultCategory::GasSupply);
            self.supply_fault = Some(ActiveFault {
                category: FaultCategory::GasSupply,
                code,
            });
        }
        if self.heater_on {
            // Weather-compensated feed-forward plus a proportional room correction.
            let demand_w = self.params.heat_loss_w_per_k * (call.setpoint - self.outdoor_c)
                + BOILER_ROOM_GAIN_W_PER_K * (call.setpoint - call.room_c);
            boiler.modulation = (demand_w / BOILER_MAX_OUTPUT_W).clamp(BOILER_MIN_MODULATION, 1.0);
            self.heat_output_w = boiler.modulation * BOILER_MAX_OUTPUT_W;
            self.electric_power_w = 85.0 + 60.0 * boiler.modulation;
            if !call.was_on {
                // Each burner start is one ignition; now and then it takes a retry,
                // and a worn electrode needs retries most of the time.
                boiler.ignition_attempts += 1.0;
                let retry_chance = if self.health.ignition_wear { 0.7 } else { 0.03 };
                if self.rng.chance(retry_chance) {
                    boiler.ignition_attempts += 1.0;
                }
                if self.health.ignition_wear && self.rng.chance(0.3) {
                    boiler.ignition_attempts += 1.0;
                }
            }
        } else {
            boiler.modulation = 0.0;
            self.heat_output_w = 0.0;
            self.electric_power_w = call.standby_w(6.0);
        }
    }

    /// The boiler's circuit: a leak lowers the fill pressure, the flow water, flue and hot
    /// water move toward their targets.
    pub(super) fn boiler_circuit(&mut self, dt_s: f64, stagnant: bool, locked_out: bool) {
        let limit = self.constants.high_limit_c;
        let Heater::GasBoiler(boiler) = &mut self.heater else {
            return;
        };
        boiler.cold_fill_bar =
            (boiler.cold_fill_bar - self.health.fill_loss_bar_per_s * dt_s).max(0.0);
        let (water_target, water_tau) = match (self.heater_on, stagnant) {
            // A low-content heat exchanger without flow heats within a minute.
            (true, true) => (limit + 10.0, 40.0),
            (false, true) => (self.indoor_c, 600.0),
            (true, false) => (55.0 + 10.0 * boiler.modulation, 180.0),
            (false, false) => (self.indoor_c, 1800.0),
        };
        self.water_c = approach(self.water_c, water_target, water_tau, dt_s);
        let return_c = if stagnant {
            self.stagnant_return_c
        } else {
            self.water_c - self.heat_output_w / BOILER_FLOW_W_PER_K
        };
        let (flue_target, flue_tau) = if self.heater_on {
            (return_c + 8.0 + 25.0 * boiler.modulation, 60.0)
        } else {
            (self.indoor_c, 600.0)
        };
        boiler.flue_c = approach(boiler.flue_c, flue_target, flue_tau, dt_s);
        let dhw_target = if locked_out || !self.power_on {
            self.indoor_c
        } else {
            48.0
        };
        boiler.dhw_c = approach(boiler.dhw_c, dhw_target, 4.0 * 3600.0, dt_s);
    }

    /// The registers only a boiler has: hot water, flame, modulation, fan, ignitions, flue,
    /// circuit and gas pressure (an injected pressure or gas fault shows as a real one would).
    pub(super) fn boiler_values(
        &self,
        boiler: &BoilerState,
        running: f64,
        latched: Option<FaultCategory>,
        values: &mut BTreeMap<&'static str, f64>,
    ) {
        values.insert(v::DHW_TEMP_C, boiler.dhw_c);
        values.insert(v::FLAME_ON, running);
        values.insert(v::MODULATION_PCT, (boiler.modulation * 100.0).round());
        let fan = if self.heater_on {
            1800.0 + 3700.0 * boiler.modulation
        } else {
            0.0
        };
        values.insert(v::FAN_SPEED_RPM, fan);
        values.insert(v::IGNITION_ATTEMPTS, boiler.ignition_attempts);
        values.insert(v::FLUE_TEMP_C, boiler.flue_c);
        // An injected low-pressure lockout shows a low pressure as a real one would.
        let fill_bar = if latched == Some(FaultCategory::LowWaterPressure) {
            boiler
                .cold_fill_bar
                .min(self.constants.low_pressure_cutout_bar - 0.15)
        } else {
            boiler.cold_fill_bar
        };
        let coefficient = self.constants.pressure_coefficient_bar_per_k;
        values.insert(
            v::WATER_PRESSURE_BAR,
            boiler_water_pressure_bar(fill_bar, self.water_c, coefficient).max(0.0),
        );
        let supply = self.gas_supply_now(boiler);
        let gas = if latched == Some(FaultCategory::GasSupply) {
            supply.min(8.0)
        } else {
            supply - 1.0 * boiler.modulation
        };
        values.insert(v::GAS_PRESSURE_MBAR, gas.max(0.0));
    }
}
