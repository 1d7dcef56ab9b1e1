//! The heat pump: its state (size, defrost cycle, discharge and coil), how it starts, its
//! control (thermostat, inverter throttle, capacity and COP with charge, filter and fan,
//! defrost cycles), its water and refrigerant circuit and the registers only it has.

use std::collections::BTreeMap;

use wire::values as v;

use super::control::Call;
use super::house::{Heater, HeaterStart, House, HouseParams};
use super::physics::{
    approach, charge_capacity_factor, charge_cop_factor, defrost_share, heat_pump_capacity_w,
    heat_pump_cop, heat_pump_flow_target_c, refrigerant_pressure_bar, DISCHARGE_THROTTLE_C,
    FAN_FAILED_CAPACITY, FAN_FAILED_COP, FAN_FAILED_DEFROST_SHARE, FAN_FAILED_ICING_BELOW_C,
    HEAT_PUMP_DESIGN_DIFFERENCE_K, HEAT_PUMP_FLOW_W_PER_K, HEAT_PUMP_SIZING_MARGIN,
    MAX_HEALTHY_DEFROST_SHARE, SUPPLY_VOLT_AMPERE_PER_W,
};
use crate::rng::Rng;

#[derive(Debug, Clone)]
pub(super) struct HeatPumpState {
    /// Unit size relative to the nominal 9 kW unit.
    pub(super) size_factor: f64,
    pub(super) defrost_left_s: f64,
    pub(super) run_since_defrost_s: f64,
    /// This cycle's frosting interval against the weather's mean one (jitter).
    pub(super) defrost_jitter: f64,
    pub(super) discharge_c: f64,
    pub(super) coil_c: f64,
}

impl HeatPumpState {
    /// A heat pump sized for the house, in its heated steady state at `outdoor_c`, with the
    /// counters of a unit some winters old.
    pub(super) fn start(params: &HouseParams, outdoor_c: f64, rng: &mut Rng) -> HeaterStart {
        let size_factor =
            (params.heat_loss_w_per_k * HEAT_PUMP_DESIGN_DIFFERENCE_K * HEAT_PUMP_SIZING_MARGIN
                / heat_pump_capacity_w(-20.0))
            .max(1.0);
        let water_c = heat_pump_flow_target_c(outdoor_c);
        let state = HeatPumpState {
            size_factor,
            defrost_left_s: 0.0,
            run_since_defrost_s: rng.uniform(0.0, 2400.0),
            defrost_jitter: rng.uniform(0.85, 1.15),
            discharge_c: water_c + 22.0 + 0.8 * (7.0 - outdoor_c).max(0.0),
            coil_c: outdoor_c - 6.0,
        };
        HeaterStart {
            heater: Heater::HeatPump(state),
            water_c,
            energy_kwh: rng.uniform(500.0, 4000.0),
            runtime_h: rng.uniform(200.0, 6000.0),
        }
    }
}

impl House {
    /// The heat pump's control: on and off by the thermostat (a defrost cycle always
    /// finishes), heat and power from capacity and COP, and the defrost cycles.
    pub(super) fn control_heat_pump(&mut self, dt_s: f64, call: &Call) {
        let Heater::HeatPump(hp) = &mut self.heater else {
            return;
        };
        if call.blocked {
            self.heater_on = false;
            hp.defrost_left_s = 0.0;
        } else if hp.defrost_left_s <= 0.0 {
            // A defrost cycle always finishes; otherwise the thermostat decides.
            if call.too_cold {
                self.heater_on = true;
            } else if call.too_warm {
                self.heater_on = false;
            }
        }
        let charge = self.health.refrigerant_charge;
        let (fan_capacity, fan_cop) = if self.health.fan_failed {
            (FAN_FAILED_CAPACITY, FAN_FAILED_COP)
        } else {
            (1.0, 1.0)
        };
        // An inverter slows its compressor when the discharge runs hot.
        let throttle =
            (1.0 - (hp.discharge_c - DISCHARGE_THROTTLE_C).max(0.0) / 30.0).clamp(0.5, 1.0);
        let capacity_w = heat_pump_capacity_w(self.outdoor_c)
            * hp.size_factor
            * charge_capacity_factor(charge)
            * (0.75 + 0.25 * self.health.filter_flow)
            * fan_capacity
            * throttle;
        let cop = heat_pump_cop(self.outdoor_c)
            * charge_cop_factor(charge)
            * fan_cop
            * self.constants.cop_factor;
        if !self.heater_on {
            self.heat_output_w = 0.0;
            self.electric_power_w = call.standby_w(12.0);
        } else if hp.defrost_left_s > 0.0 {
            hp.defrost_left_s -= dt_s;
            self.heat_output_w = 0.0;
            self.electric_power_w = 0.5 * capacity_w.max(1500.0) / cop;
            if hp.defrost_left_s <= 0.0 {
                hp.defrost_left_s = 0.0;
                hp.run_since_defrost_s = 0.0;
                hp.defrost_jitter = self.rng.uniform(0.85, 1.15);
            }
        } else {
            self.heat_output_w = capacity_w;
            // The compressor keeps drawing power when the charge is low.
            self.electric_power_w = capacity_w.max(1500.0 * charge) / cop;
            let mut share = (defrost_share(self.outdoor_c, self.humidity)
                * self.constants.frosting_factor)
                .min(MAX_HEALTHY_DEFROST_SHARE);
            if self.health.fan_failed && self.outdoor_c < FAN_FAILED_ICING_BELOW_C {
                share = share.max(FAN_FAILED_DEFROST_SHARE);
            }
            if share > 0.0 {
                // Running time between defrosts for this share of defrosting.
                let duration = self.constants.defrost_duration_s;
                let interval = duration * (1.0 / share - 1.0) * hp.defrost_jitter;
                hp.run_since_defrost_s += dt_s;
                if hp.run_since_defrost_s >= interval {
                    hp.defrost_left_s = duration;
                    self.defrost_cycles += 1;
                }
            }
        }
    }

    /// The heat pump's flow water, discharge and coil move toward their targets (with no
    /// circulation it heats only the water in its own exchanger).
    pub(super) fn heat_pump_circuit(&mut self, dt_s: f64, stagnant: bool, pipe_ambient_c: f64) {
        let limit = self.constants.high_limit_c;
        let Heater::HeatPump(hp) = &mut self.heater else {
            return;
        };
        let defrosting = hp.defrost_left_s > 0.0;
        let (water_target, water_tau) = match (self.heater_on, defrosting, stagnant) {
            // Without circulation the unit heats only the water in its own exchanger.
            (true, false, true) => (limit + 8.0, 90.0),
            (false, _, true) => (pipe_ambient_c, 900.0),
            (true, false, false) => (heat_pump_flow_target_c(self.outdoor_c), 240.0),
            (true, true, _) => (self.indoor_c + 10.0, 600.0),
            (false, _, false) => (self.indoor_c, 1800.0),
        };
        self.water_c = approach(self.water_c, water_target, water_tau, dt_s);
        let delta_t = if stagnant {
            0.0
        } else {
            self.heat_output_w / (HEAT_PUMP_FLOW_W_PER_K * self.health.filter_flow)
        };
        let (discharge_target, discharge_tau) = match (self.heater_on, defrosting) {
            (true, false) => {
                let raw = self.water_c
                    + 22.0
                    + 0.8 * (7.0 - self.outdoor_c).max(0.0)
                    + 60.0 * (1.0 - self.health.refrigerant_charge)
                    + (delta_t - 5.0).max(0.0);
                // The inverter slows down above its throttle temperature.
                let throttled = if raw > DISCHARGE_THROTTLE_C {
                    DISCHARGE_THROTTLE_C + 0.3 * (raw - DISCHARGE_THROTTLE_C)
                } else {
                    raw
                };
                (throttled, 180.0)
            }
            (true, true) => (self.water_c + 10.0, 120.0),
            (false, _) => (self.outdoor_c + 3.0, 900.0),
        };
        hp.discharge_c = approach(hp.discharge_c, discharge_target, discharge_tau, dt_s);
        let fan_dead = if self.health.fan_failed { 8.0 } else { 0.0 };
        let (coil_target, coil_tau) = match (self.heater_on, defrosting) {
            (true, false) => (
                self.outdoor_c
                    - 6.0
                    - fan_dead
                    - self.heat_output_w / 10_000.0
                    - 8.0 * (1.0 - self.health.refrigerant_charge),
                60.0,
            ),
            (true, true) => (8.0, 60.0),
            (false, _) => (self.outdoor_c, 300.0),
        };
        hp.coil_c = approach(hp.coil_c, coil_target, coil_tau, dt_s);
    }

    /// The registers only a heat pump has: defrost, compressor, discharge, coil, refrigerant
    /// pressures, energy.
    pub(super) fn heat_pump_values(
        &self,
        hp: &HeatPumpState,
        values: &mut BTreeMap<&'static str, f64>,
    ) {
        let defrosting = self.heater_on && hp.defrost_left_s > 0.0;
        values.insert(v::DEFROST_ACTIVE, f64::from(u8::from(defrosting)));
        let frequency = match (self.heater_on, defrosting) {
            (true, false) => 40.0 + 1.4 * (7.0 - self.outdoor_c).clamp(0.0, 27.0),
            (true, true) => 60.0,
            (false, _) => 0.0,
        };
        values.insert(v::COMPRESSOR_FREQ_HZ, frequency);
        let current = if self.heater_on {
            self.electric_power_w / SUPPLY_VOLT_AMPERE_PER_W
        } else {
            0.0
        };
        values.insert(v::COMPRESSOR_CURRENT_A, current);
        values.insert(
            v::DISCHARGE_TEMP_C,
            hp.discharge_c + self.constants.discharge_offset_k,
        );
        values.insert(v::COIL_TEMP_C, hp.coil_c);
        let starved = 8.0 * (1.0 - self.health.refrigerant_charge);
        let (suction, discharge) = if self.heater_on {
            (
                refrigerant_pressure_bar(hp.coil_c - 2.0 - starved),
                refrigerant_pressure_bar(self.water_c + 5.0),
            )
        } else {
            let equalised = refrigerant_pressure_bar(hp.coil_c - starved);
            (equalised, equalised)
        };
        values.insert(v::SUCTION_PRESSURE_BAR, suction);
        values.insert(v::DISCHARGE_PRESSURE_BAR, discharge);
        values.insert(v::ENERGY_KWH, self.energy_kwh);
    }
}
