//! What the unit's sensors and counters show: the canonical values of the register image,
//! with per-sensor noise drawn before each read, a failed sensor's out-of-scale reading and a
//! hung controller's frozen image.

use std::collections::BTreeMap;

use wire::values as v;

use super::faults::SensorFailure;
use super::house::{Heater, House};

/// How much noise a sensor adds: absolute (in its unit) or relative to the reading.
#[derive(Debug, Clone, Copy)]
pub(super) enum Sigma {
    Absolute(f64),
    Relative(f64),
}

/// Sensor noise per canonical value (one standard deviation).
pub(super) const NOISE: &[(&str, Sigma)] = &[
    (v::INDOOR_TEMP_C, Sigma::Absolute(0.05)),
    (v::OUTDOOR_TEMP_C, Sigma::Absolute(0.1)),
    (v::FLOW_TEMP_C, Sigma::Absolute(0.1)),
    (v::RETURN_TEMP_C, Sigma::Absolute(0.1)),
    (v::DHW_TEMP_C, Sigma::Absolute(0.1)),
    (v::DISCHARGE_TEMP_C, Sigma::Absolute(0.2)),
    (v::COIL_TEMP_C, Sigma::Absolute(0.1)),
    (v::FLUE_TEMP_C, Sigma::Absolute(0.2)),
    (v::ELECTRIC_POWER_W, Sigma::Relative(0.01)),
    (v::HEAT_OUTPUT_W, Sigma::Relative(0.01)),
    (v::COMPRESSOR_CURRENT_A, Sigma::Relative(0.01)),
    (v::SUCTION_PRESSURE_BAR, Sigma::Relative(0.005)),
    (v::DISCHARGE_PRESSURE_BAR, Sigma::Relative(0.005)),
    (v::WATER_PRESSURE_BAR, Sigma::Absolute(0.004)),
    (v::GAS_PRESSURE_MBAR, Sigma::Absolute(0.05)),
    (v::FAN_SPEED_RPM, Sigma::Relative(0.005)),
];

impl House {
    /// Draws fresh sensor noise (call before each read; between reads the sensors hold).
    pub fn refresh_noise(&mut self) {
        for slot in &mut self.noise {
            *slot = self.rng.gaussian(1.0);
        }
    }

    /// The canonical values the device's sensors and counters show now (with the sensor
    /// noise of the last [`House::refresh_noise`], not yet quantised).
    pub fn values(&self) -> BTreeMap<&'static str, f64> {
        if let Some(frozen) = &self.health.hung {
            return frozen.clone();
        }
        let mut values = BTreeMap::new();
        let running = f64::from(u8::from(self.heater_on));
        let shown = self.shown_fault();
        let latched = self.lockout.map(|f| f.category);
        values.insert(v::INDOOR_TEMP_C, self.indoor_c + self.air_offset_k);
        values.insert(v::OUTDOOR_TEMP_C, self.outdoor_c);
        values.insert(v::SETPOINT_C, self.setpoint_c());
        values.insert(v::FAULT_CODE, f64::from(shown.map_or(0, |f| f.code)));
        values.insert(v::RUNNING, running);
        values.insert(v::ELECTRIC_POWER_W, self.electric_power_w);
        values.insert(v::HEAT_OUTPUT_W, self.delivered_heat_w());
        let (flow_c, return_c) = match self.commissioning {
            // Air in the circuit: the sensors read odd, the return sometimes above the flow.
            Some(c) => (
                self.water_c + c.flow_skew_k,
                self.water_c + c.flow_skew_k + c.return_skew_k,
            ),
            None => (self.water_c, self.return_now_c()),
        };
        values.insert(v::FLOW_TEMP_C, flow_c);
        values.insert(v::RETURN_TEMP_C, return_c);
        values.insert(v::RUNTIME_H, self.runtime_h);
        match &self.heater {
            Heater::HeatPump(hp) => self.heat_pump_values(hp, &mut values),
            Heater::GasBoiler(boiler) => self.boiler_values(boiler, running, latched, &mut values),
        }
        self.add_noise(&mut values);
        match self.health.sensor {
            Some(SensorFailure::Open) => {
                values.insert(v::FLOW_TEMP_C, self.constants.sensor_open_c);
            }
            Some(SensorFailure::Short) => {
                values.insert(v::FLOW_TEMP_C, self.constants.sensor_short_c);
            }
            None => {}
        }
        values
    }

    /// Adds each sensor's noise of the last [`House::refresh_noise`], within its canonical
    /// range.
    fn add_noise(&self, values: &mut BTreeMap<&'static str, f64>) {
        for ((name, sigma), unit_noise) in NOISE.iter().zip(&self.noise) {
            if let Some(value) = values.get_mut(name) {
                let noise = match sigma {
                    Sigma::Absolute(s) => s * unit_noise,
                    Sigma::Relative(s) => s * unit_noise * value.abs(),
                };
                *value += noise;
                if let Some(canonical) = v::lookup(name) {
                    *value = value.clamp(canonical.min, canonical.max);
                }
            }
        }
    }
}
