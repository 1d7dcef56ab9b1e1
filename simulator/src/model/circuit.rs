//! The water circuit shared by both heaters: health wearing down step by step (charge,
//! filter), the heat that reaches the house, the pipes' temperature and the return sensor
//! (which drifts to the pipes while no water circulates).

use super::house::{Heater, House};
use super::physics::{
    approach, BOILER_FLOW_W_PER_K, HEAT_PUMP_FLOW_W_PER_K, MIN_CHARGE, MIN_FILTER_FLOW,
    STAGNANT_HEAT_SHARE,
};

impl House {
    /// Moves the water circuit and the unit's internal temperatures toward their targets, and
    /// lets degradations progress.
    pub(super) fn update_circuit(&mut self, dt_s: f64) {
        let locked_out = self.lockout.is_some();
        let pipe_ambient_c = self.pipe_ambient_c();
        let health = &mut self.health;
        health.refrigerant_charge = (health.refrigerant_charge - health.charge_loss_per_s * dt_s)
            .max(health.charge_floor.max(MIN_CHARGE));
        health.filter_flow =
            (health.filter_flow - health.fouling_per_s * dt_s).max(MIN_FILTER_FLOW);
        let stagnant = health.circulation_blocked;
        match self.heater {
            Heater::HeatPump(_) => self.heat_pump_circuit(dt_s, stagnant, pipe_ambient_c),
            Heater::GasBoiler(_) => self.boiler_circuit(dt_s, stagnant, locked_out),
        }
        // The return sensor: without circulation it drifts to the pipes' temperature.
        self.stagnant_return_c = if stagnant {
            approach(self.stagnant_return_c, pipe_ambient_c, 1800.0, dt_s)
        } else {
            self.return_now_c()
        };
    }

    /// Heat reaching the house now, W: what the unit makes, or a few percent of it while no
    /// water circulates.
    pub(super) fn delivered_heat_w(&self) -> f64 {
        if self.health.circulation_blocked {
            self.heat_output_w * STAGNANT_HEAT_SHARE
        } else {
            self.heat_output_w
        }
    }

    /// The temperature the pipes and a stagnant return sensor settle at, °C (a heat pump's
    /// pipes run partly outdoors).
    pub(super) fn pipe_ambient_c(&self) -> f64 {
        match self.heater {
            Heater::HeatPump(_) => self.indoor_c - 0.3 * (self.indoor_c - self.outdoor_c),
            Heater::GasBoiler(_) => self.indoor_c,
        }
    }

    /// The return water temperature the unit's sensor sees now, °C (noise-free).
    pub(super) fn return_now_c(&self) -> f64 {
        if self.health.circulation_blocked {
            return self.stagnant_return_c;
        }
        match &self.heater {
            Heater::HeatPump(hp) => {
                let pumping = self.heater_on && hp.defrost_left_s <= 0.0;
                if pumping {
                    self.water_c
                        - self.heat_output_w / (HEAT_PUMP_FLOW_W_PER_K * self.health.filter_flow)
                } else {
                    self.water_c - 0.3
                }
            }
            Heater::GasBoiler(_) => {
                if self.heater_on {
                    self.water_c - self.heat_output_w / BOILER_FLOW_W_PER_K
                } else {
                    self.water_c - 0.3
                }
            }
        }
    }
}
