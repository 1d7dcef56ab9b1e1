//! The house and its heater as one stepped model: its parameters and state, how it starts in
//! its heated steady state, the read-only view of it, and the step in simulated time (heat
//! balance of the room, then control, circuit and protections).

use std::sync::Arc;

use edge_agent::profile::Profile;
use wire::DeviceKind;

use super::boiler::BoilerState;
use super::faults::{ActiveFault, Health, Trip};
use super::heat_pump::HeatPumpState;
use super::occupants::{Airing, Commissioning};
use super::physics::{approach, WIND_LOSS_PER_M_S};
use super::sensors::NOISE;
use super::unit::UnitConstants;
use crate::climate::{Climate, Weather};
use crate::fleet::HouseholdSpec;
use crate::rng::Rng;

/// The fixed parameters of one house.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseParams {
    pub kind: DeviceKind,
    /// Heat-loss coefficient UA in still air, W/K.
    pub heat_loss_w_per_k: f64,
    /// Thermal capacity C, J/K.
    pub thermal_capacity_j_per_k: f64,
    /// Initial thermostat (comfort) set point, °C.
    pub setpoint_c: f64,
    /// Local outdoor temperature offset against the district climate, K.
    pub outdoor_offset_c: f64,
    /// Seed of the house's random stream (noise, initial counters, defrost timing).
    pub seed: u64,
}

impl From<&HouseholdSpec> for HouseParams {
    fn from(spec: &HouseholdSpec) -> HouseParams {
        HouseParams {
            kind: spec.kind,
            heat_loss_w_per_k: spec.heat_loss_w_per_k,
            thermal_capacity_j_per_k: spec.thermal_capacity_j_per_k,
            setpoint_c: spec.setpoint_c,
            outdoor_offset_c: spec.outdoor_offset_c,
            seed: spec.model_seed,
        }
    }
}

/// The heater of a house and its own state.
#[derive(Debug, Clone)]
pub(super) enum Heater {
    HeatPump(HeatPumpState),
    GasBoiler(BoilerState),
}

/// A heater as it starts: its state, the flow-water temperature and the counters of a unit
/// some winters old.
pub(super) struct HeaterStart {
    pub(super) heater: Heater,
    pub(super) water_c: f64,
    pub(super) energy_kwh: f64,
    pub(super) runtime_h: f64,
}

/// One household's house and heater, stepped in simulated time.
#[derive(Debug, Clone)]
pub struct House {
    pub(super) params: HouseParams,
    pub(super) profile: Arc<Profile>,
    pub(super) now_unix_s: f64,
    pub(super) outdoor_c: f64,
    pub(super) wind_m_s: f64,
    pub(super) indoor_c: f64,
    /// Flow-side water temperature of the heating circuit.
    pub(super) water_c: f64,
    /// The resident's comfort set point (what a write changes).
    pub(super) comfort_setpoint_c: f64,
    /// Night set-back depth, K (0: none).
    pub(super) night_setback_k: f64,
    /// While the resident is away, the frost-protection set point they left.
    pub(super) away_setpoint_c: Option<f64>,
    /// Sun, occupants and cooking warm the house (off for bare physics experiments).
    pub(super) free_gains: bool,
    /// The heater is producing heat (thermostat call, burner lit, compressor running).
    pub(super) heater_on: bool,
    pub(super) heat_output_w: f64,
    pub(super) electric_power_w: f64,
    pub(super) energy_kwh: f64,
    pub(super) runtime_h: f64,
    /// Mains power reaches the house.
    pub(super) power_on: bool,
    /// The village's gas supply pressure when it is not normal, mbar.
    pub(super) gas_supply_mbar: Option<f64>,
    /// A latched fault: the unit stays off until repaired.
    pub(super) lockout: Option<ActiveFault>,
    /// A protection trip: the unit restarts by itself when it ends.
    pub(super) trip: Option<Trip>,
    /// Simulated times of recent protection trips.
    pub(super) recent_trips_s: Vec<f64>,
    /// A supply fault the unit shows while the supply is out of range (gas pressure).
    pub(super) supply_fault: Option<ActiveFault>,
    pub(super) health: Health,
    pub(super) heater: Heater,
    pub(super) rng: Rng,
    pub(super) noise: Vec<f64>,
    pub(super) defrost_cycles: u64,
    pub(super) trips_total: u64,
    pub(super) constants: UnitConstants,
    /// Outdoor relative humidity now.
    pub(super) humidity: f64,
    /// The high-limit thermostat has cut the heater out until the flow sensor cools.
    pub(super) high_limit_hold: bool,
    /// The return sensor's temperature while no water circulates.
    pub(super) stagnant_return_c: f64,
    /// Room air against the house's mass temperature (an open window), K.
    pub(super) air_offset_k: f64,
    pub(super) airing: Option<Airing>,
    pub(super) commissioning: Option<Commissioning>,
}

impl House {
    /// A house in its heated steady state at `start_unix_s`.
    pub fn new(
        params: HouseParams,
        profile: Arc<Profile>,
        climate: &Climate,
        start_unix_s: f64,
    ) -> House {
        let mut rng = Rng::derive(params.seed, 0x40_05E);
        let constants = UnitConstants::draw(params.kind, &profile, params.seed);
        let weather = climate.weather(start_unix_s);
        let outdoor_c = weather.outdoor_c + params.outdoor_offset_c;
        let indoor_c = params.setpoint_c + rng.uniform(-0.2, 0.2);
        let HeaterStart {
            heater,
            water_c,
            energy_kwh,
            runtime_h,
        } = match params.kind {
            DeviceKind::HeatPump => HeatPumpState::start(&params, outdoor_c, &mut rng),
            DeviceKind::GasBoiler => BoilerState::start(&mut rng),
        };
        let mut house = House {
            comfort_setpoint_c: params.setpoint_c,
            params,
            profile,
            now_unix_s: start_unix_s,
            outdoor_c,
            wind_m_s: weather.wind_m_s,
            indoor_c,
            water_c,
            night_setback_k: 0.0,
            away_setpoint_c: None,
            free_gains: false,
            heater_on: true,
            heat_output_w: 0.0,
            electric_power_w: 0.0,
            energy_kwh,
            runtime_h,
            power_on: true,
            gas_supply_mbar: None,
            lockout: None,
            trip: None,
            recent_trips_s: Vec::new(),
            supply_fault: None,
            health: Health::default(),
            heater,
            rng,
            noise: vec![0.0; NOISE.len()],
            defrost_cycles: 0,
            trips_total: 0,
            constants,
            humidity: weather.humidity,
            high_limit_hold: false,
            stagnant_return_c: water_c - 5.0,
            air_offset_k: 0.0,
            airing: None,
            commissioning: None,
        };
        house.control(0.0);
        house.refresh_noise();
        house
    }

    /// The house's parameters.
    pub fn params(&self) -> &HouseParams {
        &self.params
    }

    /// The register-map profile of the household's device.
    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    /// Simulated time, seconds since 1970 UTC.
    pub fn now_unix_s(&self) -> f64 {
        self.now_unix_s
    }

    /// True (noise-free) indoor air temperature, °C: the house's temperature, lowered while a
    /// window is open for airing.
    pub fn indoor_temp_c(&self) -> f64 {
        self.indoor_c + self.air_offset_k
    }

    /// The unit's physical constants.
    pub fn constants(&self) -> &UnitConstants {
        &self.constants
    }

    /// False while the unit's controller is dead (its breaker tripped): it answers no Modbus
    /// request, so its box reads nothing.
    pub fn responds(&self) -> bool {
        !self.health.breaker_tripped
    }

    /// The unit's own flow sensor, °C (noise-free).
    pub fn flow_temp_c(&self) -> f64 {
        self.water_c
    }

    /// True (noise-free) local outdoor temperature, °C.
    pub fn outdoor_temp_c(&self) -> f64 {
        self.outdoor_c
    }

    /// True while the heater produces heat.
    pub fn heating(&self) -> bool {
        self.heater_on
    }

    /// Thermal time constant C/UA of the house in still air, s.
    pub fn time_constant_s(&self) -> f64 {
        self.params.thermal_capacity_j_per_k / self.params.heat_loss_w_per_k
    }

    /// True when mains power reaches the house.
    pub fn power_on(&self) -> bool {
        self.power_on
    }

    /// Share of the heat pump's refrigerant charge left (1 for a boiler).
    pub fn refrigerant_charge(&self) -> f64 {
        self.health.refrigerant_charge
    }

    /// Share of nominal water flow the filter lets through.
    pub fn filter_flow(&self) -> f64 {
        self.health.filter_flow
    }

    /// Heat-pump defrost cycles started so far.
    pub fn defrost_cycles(&self) -> u64 {
        self.defrost_cycles
    }

    /// Protection trips so far.
    pub fn trips_total(&self) -> u64 {
        self.trips_total
    }

    /// Steps the model by `dt_s` simulated seconds under `climate`.
    pub fn step(&mut self, dt_s: f64, climate: &Climate) {
        if !dt_s.is_finite() || dt_s <= 0.0 {
            return;
        }
        let weather = climate.weather(self.now_unix_s + dt_s);
        self.step_in(dt_s, weather);
    }

    /// Steps the model by `dt_s` simulated seconds, ending in `weather` (callers stepping many
    /// houses in lockstep compute the district weather once per step).
    pub fn step_in(&mut self, dt_s: f64, weather: Weather) {
        if !dt_s.is_finite() || dt_s <= 0.0 {
            return;
        }
        self.now_unix_s += dt_s;
        self.outdoor_c = weather.outdoor_c + self.params.outdoor_offset_c;
        self.wind_m_s = weather.wind_m_s.max(0.0);
        self.humidity = weather.humidity;
        self.control(dt_s);
        // An open window lets the room air fall fast and draws some heat from the mass.
        let (air_target, air_tau, airing_loss) = match self.airing {
            Some(airing) => (-airing.drop_k, airing.tau_s, 0.5),
            None => (0.0, 600.0, 0.0),
        };
        self.air_offset_k = approach(self.air_offset_k, air_target, air_tau, dt_s);
        let loss_w = self.params.heat_loss_w_per_k
            * (1.0 + WIND_LOSS_PER_M_S * self.wind_m_s + airing_loss)
            * (self.indoor_c - self.outdoor_c);
        let gains_w = self.free_gains_w(weather.sun);
        self.indoor_c += dt_s * (self.delivered_heat_w() + gains_w - loss_w)
            / self.params.thermal_capacity_j_per_k;
        self.update_circuit(dt_s);
        self.protections(dt_s);
        self.energy_kwh += self.electric_power_w * dt_s / 3.6e6;
        if self.heater_on {
            self.runtime_h += dt_s / 3600.0;
        }
    }

    /// Steps in increments of `step_s` while a whole step fits before `target_unix_s`, and
    /// returns the number of steps taken. The remainder carries over to the next call.
    pub fn advance_to(&mut self, target_unix_s: f64, step_s: f64, climate: &Climate) -> u64 {
        let mut steps = 0;
        if step_s.is_nan() || step_s <= 0.0 {
            return steps;
        }
        while self.now_unix_s + step_s <= target_unix_s + 1e-9 {
            self.step(step_s, climate);
            steps += 1;
        }
        steps
    }
}
