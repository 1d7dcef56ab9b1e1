//! The physical model of one household, stepped in simulated time: a Yanqing winter outside,
//! a single-zone house (`C dT/dt = Q_heat - UA (T_in - T_out)`), and a heat pump or a gas boiler
//! with its thermostat, water circuit, counters and sensors, plus injectable faults.
//!
//! The model does no IO and reads no clock: time is whatever the caller steps it to, so tests
//! run a simulated week in milliseconds. It outputs canonical values (see [`wire::values`]);
//! the Modbus layer quantises them through the household's register-map profile.

use std::collections::BTreeMap;
use std::sync::Arc;

use edge_agent::profile::Profile;
use wire::values as v;
use wire::{DeviceKind, Fault, FaultCategory};

use crate::fleet::HouseholdSpec;
use crate::rng::Rng;

/// Mean outdoor temperature of a Yanqing winter day, °C (January mean -8.8 °C).
pub const WINTER_MEAN_C: f64 = -8.0;
/// Half the day-night swing, K.
pub const WINTER_AMPLITUDE_C: f64 = 6.0;
/// Largest day-to-day deviation of the daily mean, K (cold waves and mild spells).
pub const WINTER_DAY_SPREAD_C: f64 = 4.0;
/// Local hour of the coldest moment of the day.
pub const COLDEST_LOCAL_HOUR: f64 = 5.0;
/// Beijing time is UTC+8.
pub const LOCAL_UTC_OFFSET_S: f64 = 8.0 * 3600.0;
/// Thermostat hysteresis band (on below set point - half, off above set point + half), K.
pub const THERMOSTAT_BAND_K: f64 = 0.5;

/// Outdoor air temperature over time, shared by the whole district.
#[derive(Debug, Clone, PartialEq)]
pub struct Climate {
    mode: ClimateMode,
}

#[derive(Debug, Clone, PartialEq)]
enum ClimateMode {
    Constant(f64),
    YanqingWinter { seed: u64 },
}

impl Climate {
    /// A Yanqing winter: a daily sinusoid around [`WINTER_MEAN_C`] with amplitude
    /// [`WINTER_AMPLITUDE_C`], coldest at 05:00 Beijing time, and a seeded daily-mean deviation
    /// of up to [`WINTER_DAY_SPREAD_C`] that changes smoothly from day to day.
    pub fn yanqing_winter(seed: u64) -> Climate {
        Climate {
            mode: ClimateMode::YanqingWinter { seed },
        }
    }

    /// The same outdoor temperature at every moment (for experiments and tests).
    pub fn constant(outdoor_c: f64) -> Climate {
        Climate {
            mode: ClimateMode::Constant(outdoor_c),
        }
    }

    /// The district outdoor temperature at `unix_s` (seconds since 1970, UTC).
    pub fn outdoor_temp_c(&self, unix_s: f64) -> f64 {
        match self.mode {
            ClimateMode::Constant(c) => c,
            ClimateMode::YanqingWinter { seed } => {
                let local_s = unix_s + LOCAL_UTC_OFFSET_S;
                let hour = (local_s / 3600.0).rem_euclid(24.0);
                let diurnal = -WINTER_AMPLITUDE_C
                    * (std::f64::consts::TAU * (hour - COLDEST_LOCAL_HOUR) / 24.0).cos();
                // Day deviations are anchored at local noon and blended smoothly in between.
                let days = local_s / 86_400.0 - 0.5;
                let day = days.floor();
                let fraction = days - day;
                let blend = fraction * fraction * (3.0 - 2.0 * fraction);
                let deviation = |day: f64| {
                    Rng::derive(seed, day as i64 as u64)
                        .uniform(-WINTER_DAY_SPREAD_C, WINTER_DAY_SPREAD_C)
                };
                let offset = deviation(day) * (1.0 - blend) + deviation(day + 1.0) * blend;
                WINTER_MEAN_C + diurnal + offset
            }
        }
    }
}

/// Heating capacity of the nominal heat pump at an outdoor temperature, W: about 9 kW at 7 °C
/// falling linearly to about 5.5 kW at -20 °C (clamped outside -25..15 °C).
pub fn heat_pump_capacity_w(outdoor_c: f64) -> f64 {
    let t = outdoor_c.clamp(-25.0, 15.0);
    9000.0 + (t - 7.0) * (9000.0 - 5500.0) / 27.0
}

/// Coefficient of performance at an outdoor temperature: about 3.5 at 7 °C falling linearly to
/// about 1.6 at -20 °C (clamped outside -25..15 °C).
pub fn heat_pump_cop(outdoor_c: f64) -> f64 {
    let t = outdoor_c.clamp(-25.0, 15.0);
    3.5 + (t - 7.0) * (3.5 - 1.6) / 27.0
}

/// Sealed heating-circuit pressure, bar: the cold fill pressure plus the expansion of the water
/// against the expansion vessel as it warms (about 0.008 bar/K above 20 °C).
pub fn boiler_water_pressure_bar(cold_fill_bar: f64, water_c: f64) -> f64 {
    cold_fill_bar + 0.008 * (water_c - 20.0)
}

/// Saturation pressure of R32-like refrigerant at a temperature, bar (a fit good to ~5 %
/// between -25 and 50 °C; enough for plausible suction and discharge pressures).
fn refrigerant_pressure_bar(saturation_c: f64) -> f64 {
    if saturation_c < 0.0 {
        8.1 * (0.035 * saturation_c).exp()
    } else {
        8.1 * (0.0275 * saturation_c).exp()
    }
}

/// Water flow through the heat-pump circuit times the specific heat of water, W/K (0.33 kg/s).
const HEAT_PUMP_FLOW_W_PER_K: f64 = 1400.0;
/// Water flow through the boiler circuit times the specific heat of water, W/K (0.35 kg/s).
const BOILER_FLOW_W_PER_K: f64 = 1465.0;
/// Largest burner output of a wall-hung boiler, W.
pub const BOILER_MAX_OUTPUT_W: f64 = 24_000.0;
/// Smallest burner modulation; below it the burner cycles on and off.
pub const BOILER_MIN_MODULATION: f64 = 0.2;
/// Proportional gain of the boiler's room-temperature controller, W/K.
const BOILER_ROOM_GAIN_W_PER_K: f64 = 1500.0;
/// Outdoor range in which a heat pump's coil frosts and defrosts, °C.
const DEFROST_RANGE_C: std::ops::RangeInclusive<f64> = -7.0..=5.0;
/// Length of one defrost cycle, s.
const DEFROST_DURATION_S: f64 = 300.0;
/// The installer sizes a heat pump for this indoor-outdoor difference, K.
const HEAT_PUMP_DESIGN_DIFFERENCE_K: f64 = 42.0;
/// Supply voltage times power factor, for the compressor current, V.
const SUPPLY_VOLT_AMPERE_PER_W: f64 = 220.0 * 0.92;

/// The fixed parameters of one house.
#[derive(Debug, Clone, PartialEq)]
pub struct HouseParams {
    pub kind: DeviceKind,
    /// Heat-loss coefficient UA, W/K.
    pub heat_loss_w_per_k: f64,
    /// Thermal capacity C, J/K.
    pub thermal_capacity_j_per_k: f64,
    /// Initial thermostat set point, °C.
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

/// The brand code a profile uses for a fault category: the category's first code, else the
/// code of `Other`, else 1.
pub fn brand_code(profile: &Profile, category: FaultCategory) -> u32 {
    profile
        .code_for(category)
        .or_else(|| profile.code_for(FaultCategory::Other))
        .unwrap_or(1)
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ActiveFault {
    category: FaultCategory,
    code: u32,
}

#[derive(Debug, Clone)]
struct HeatPumpState {
    /// Unit size relative to the nominal 9 kW unit.
    size_factor: f64,
    defrost_left_s: f64,
    run_since_defrost_s: f64,
    next_defrost_after_s: f64,
    discharge_c: f64,
    coil_c: f64,
}

#[derive(Debug, Clone)]
struct BoilerState {
    modulation: f64,
    ignition_attempts: f64,
    flue_c: f64,
    dhw_c: f64,
    cold_fill_bar: f64,
    supply_gas_mbar: f64,
}

#[derive(Debug, Clone)]
enum Heater {
    HeatPump(HeatPumpState),
    GasBoiler(BoilerState),
}

/// How much noise a sensor adds: absolute (in its unit) or relative to the reading.
#[derive(Debug, Clone, Copy)]
enum Sigma {
    Absolute(f64),
    Relative(f64),
}

/// Sensor noise per canonical value (one standard deviation).
const NOISE: &[(&str, Sigma)] = &[
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

/// One household's house and heater, stepped in simulated time.
#[derive(Debug, Clone)]
pub struct House {
    params: HouseParams,
    profile: Arc<Profile>,
    now_unix_s: f64,
    outdoor_c: f64,
    indoor_c: f64,
    /// Flow-side water temperature of the heating circuit.
    water_c: f64,
    setpoint_c: f64,
    /// The heater is producing heat (thermostat call, burner lit, compressor running).
    heater_on: bool,
    heat_output_w: f64,
    electric_power_w: f64,
    energy_kwh: f64,
    runtime_h: f64,
    fault: Option<ActiveFault>,
    heater: Heater,
    rng: Rng,
    noise: Vec<f64>,
}

/// First-order lag: moves `value` toward `target` with time constant `tau_s` over `dt_s`.
fn approach(value: f64, target: f64, tau_s: f64, dt_s: f64) -> f64 {
    value + (target - value) * (1.0 - (-dt_s / tau_s).exp())
}

/// Weather-compensated leaving-water temperature of a heat pump: 35 °C at 7 °C outside, 45 °C
/// at -20 °C.
fn heat_pump_flow_target_c(outdoor_c: f64) -> f64 {
    35.0 + (7.0 - outdoor_c).clamp(0.0, 27.0) * 10.0 / 27.0
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
        let outdoor_c = climate.outdoor_temp_c(start_unix_s) + params.outdoor_offset_c;
        let indoor_c = params.setpoint_c + rng.uniform(-0.2, 0.2);
        let (heater, water_c, energy_kwh, runtime_h) = match params.kind {
            DeviceKind::HeatPump => {
                let size_factor = (params.heat_loss_w_per_k * HEAT_PUMP_DESIGN_DIFFERENCE_K
                    / heat_pump_capacity_w(-20.0))
                .max(1.0);
                let water_c = heat_pump_flow_target_c(outdoor_c);
                let state = HeatPumpState {
                    size_factor,
                    defrost_left_s: 0.0,
                    run_since_defrost_s: rng.uniform(0.0, 2400.0),
                    next_defrost_after_s: rng.uniform(2400.0, 3600.0),
                    discharge_c: water_c + 22.0 + 0.8 * (7.0 - outdoor_c).max(0.0),
                    coil_c: outdoor_c - 6.0,
                };
                (
                    Heater::HeatPump(state),
                    water_c,
                    rng.uniform(500.0, 4000.0),
                    rng.uniform(200.0, 6000.0),
                )
            }
            DeviceKind::GasBoiler => {
                let state = BoilerState {
                    modulation: BOILER_MIN_MODULATION,
                    ignition_attempts: rng.uniform(500.0, 15_000.0).round(),
                    flue_c: 55.0,
                    dhw_c: 48.0,
                    cold_fill_bar: rng.uniform(1.25, 1.45),
                    supply_gas_mbar: 20.0 + rng.uniform(-0.4, 0.4),
                };
                (
                    Heater::GasBoiler(state),
                    57.0,
                    0.0,
                    rng.uniform(200.0, 6000.0),
                )
            }
        };
        let mut house = House {
            setpoint_c: params.setpoint_c,
            params,
            profile,
            now_unix_s: start_unix_s,
            outdoor_c,
            indoor_c,
            water_c,
            heater_on: true,
            heat_output_w: 0.0,
            electric_power_w: 0.0,
            energy_kwh,
            runtime_h,
            fault: None,
            heater,
            rng,
            noise: vec![0.0; NOISE.len()],
        };
        house.control(0.0);
        house.draw_noise();
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

    /// True (noise-free) indoor temperature, °C.
    pub fn indoor_temp_c(&self) -> f64 {
        self.indoor_c
    }

    /// True (noise-free) local outdoor temperature, °C.
    pub fn outdoor_temp_c(&self) -> f64 {
        self.outdoor_c
    }

    /// Current thermostat set point, °C.
    pub fn setpoint_c(&self) -> f64 {
        self.setpoint_c
    }

    /// True while the heater produces heat.
    pub fn heating(&self) -> bool {
        self.heater_on
    }

    /// Thermal time constant C/UA of the house, s.
    pub fn time_constant_s(&self) -> f64 {
        self.params.thermal_capacity_j_per_k / self.params.heat_loss_w_per_k
    }

    /// Steps the model by `dt_s` simulated seconds under `climate`.
    pub fn step(&mut self, dt_s: f64, climate: &Climate) {
        if !dt_s.is_finite() || dt_s <= 0.0 {
            return;
        }
        self.now_unix_s += dt_s;
        self.outdoor_c = climate.outdoor_temp_c(self.now_unix_s) + self.params.outdoor_offset_c;
        self.control(dt_s);
        let loss_w = self.params.heat_loss_w_per_k * (self.indoor_c - self.outdoor_c);
        self.indoor_c +=
            dt_s * (self.heat_output_w - loss_w) / self.params.thermal_capacity_j_per_k;
        self.update_circuit(dt_s);
        self.energy_kwh += self.electric_power_w * dt_s / 3.6e6;
        if self.heater_on {
            self.runtime_h += dt_s / 3600.0;
        }
        self.draw_noise();
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

    /// Decides whether the heater runs and how much heat and power it produces.
    fn control(&mut self, dt_s: f64) {
        let faulted = self.fault.is_some();
        let half_band = THERMOSTAT_BAND_K / 2.0;
        let too_cold = self.indoor_c < self.setpoint_c - half_band;
        let too_warm = self.indoor_c > self.setpoint_c + half_band;
        let was_on = self.heater_on;
        match &mut self.heater {
            Heater::HeatPump(hp) => {
                if faulted {
                    self.heater_on = false;
                    hp.defrost_left_s = 0.0;
                } else if hp.defrost_left_s <= 0.0 {
                    // A defrost cycle always finishes; otherwise the thermostat decides.
                    if too_cold {
                        self.heater_on = true;
                    } else if too_warm {
                        self.heater_on = false;
                    }
                }
                let capacity_w = heat_pump_capacity_w(self.outdoor_c) * hp.size_factor;
                let cop = heat_pump_cop(self.outdoor_c);
                if !self.heater_on {
                    self.heat_output_w = 0.0;
                    self.electric_power_w = 12.0;
                } else if hp.defrost_left_s > 0.0 {
                    hp.defrost_left_s -= dt_s;
                    self.heat_output_w = 0.0;
                    self.electric_power_w = 0.5 * capacity_w / cop;
                    if hp.defrost_left_s <= 0.0 {
                        hp.defrost_left_s = 0.0;
                        hp.run_since_defrost_s = 0.0;
                        hp.next_defrost_after_s = self.rng.uniform(2400.0, 3600.0);
                    }
                } else {
                    self.heat_output_w = capacity_w;
                    self.electric_power_w = capacity_w / cop;
                    if DEFROST_RANGE_C.contains(&self.outdoor_c) {
                        hp.run_since_defrost_s += dt_s;
                        if hp.run_since_defrost_s >= hp.next_defrost_after_s {
                            hp.defrost_left_s = DEFROST_DURATION_S;
                        }
                    }
                }
            }
            Heater::GasBoiler(boiler) => {
                if faulted {
                    self.heater_on = false;
                } else if too_cold {
                    self.heater_on = true;
                } else if too_warm {
                    self.heater_on = false;
                }
                if self.heater_on {
                    // Weather-compensated feed-forward plus a proportional room correction.
                    let demand_w = self.params.heat_loss_w_per_k
                        * (self.setpoint_c - self.outdoor_c)
                        + BOILER_ROOM_GAIN_W_PER_K * (self.setpoint_c - self.indoor_c);
                    boiler.modulation =
                        (demand_w / BOILER_MAX_OUTPUT_W).clamp(BOILER_MIN_MODULATION, 1.0);
                    self.heat_output_w = boiler.modulation * BOILER_MAX_OUTPUT_W;
                    self.electric_power_w = 85.0 + 60.0 * boiler.modulation;
                    if !was_on {
                        // Each burner start is one ignition; now and then it takes a retry.
                        boiler.ignition_attempts += 1.0;
                        if self.rng.chance(0.03) {
                            boiler.ignition_attempts += 1.0;
                        }
                    }
                } else {
                    boiler.modulation = 0.0;
                    self.heat_output_w = 0.0;
                    self.electric_power_w = 6.0;
                }
            }
        }
    }

    /// Moves the water circuit and the unit's internal temperatures toward their targets.
    fn update_circuit(&mut self, dt_s: f64) {
        let fault = self.fault.map(|f| f.category);
        match &mut self.heater {
            Heater::HeatPump(hp) => {
                let defrosting = hp.defrost_left_s > 0.0;
                let (water_target, water_tau) = match (self.heater_on, defrosting) {
                    (true, false) => (heat_pump_flow_target_c(self.outdoor_c), 240.0),
                    (true, true) => (self.indoor_c + 10.0, 600.0),
                    (false, _) => (self.indoor_c, 1800.0),
                };
                self.water_c = approach(self.water_c, water_target, water_tau, dt_s);
                let (discharge_target, discharge_tau) = match (self.heater_on, defrosting) {
                    (true, false) => (
                        self.water_c + 22.0 + 0.8 * (7.0 - self.outdoor_c).max(0.0),
                        180.0,
                    ),
                    (true, true) => (self.water_c + 10.0, 120.0),
                    (false, _) => (self.outdoor_c + 3.0, 900.0),
                };
                hp.discharge_c = approach(hp.discharge_c, discharge_target, discharge_tau, dt_s);
                let (coil_target, coil_tau) = match (self.heater_on, defrosting) {
                    (true, false) => (self.outdoor_c - 6.0 - self.heat_output_w / 10_000.0, 60.0),
                    (true, true) => (8.0, 60.0),
                    (false, _) => (self.outdoor_c, 300.0),
                };
                hp.coil_c = approach(hp.coil_c, coil_target, coil_tau, dt_s);
            }
            Heater::GasBoiler(boiler) => {
                let (water_target, water_tau) = if self.heater_on {
                    (55.0 + 10.0 * boiler.modulation, 180.0)
                } else {
                    (self.indoor_c, 1800.0)
                };
                self.water_c = approach(self.water_c, water_target, water_tau, dt_s);
                let return_c = self.water_c - self.heat_output_w / BOILER_FLOW_W_PER_K;
                let (flue_target, flue_tau) = if self.heater_on {
                    (return_c + 8.0 + 25.0 * boiler.modulation, 60.0)
                } else {
                    (self.indoor_c, 600.0)
                };
                boiler.flue_c = approach(boiler.flue_c, flue_target, flue_tau, dt_s);
                let dhw_target = if fault.is_some() { self.indoor_c } else { 48.0 };
                boiler.dhw_c = approach(boiler.dhw_c, dhw_target, 4.0 * 3600.0, dt_s);
            }
        }
    }

    fn draw_noise(&mut self) {
        for slot in &mut self.noise {
            *slot = self.rng.gaussian(1.0);
        }
    }

    /// Injects a fault: the brand's code for `category` (see [`brand_code`]) appears in the
    /// fault register and the heater stops, so the house cools. Returns the code.
    pub fn inject(&mut self, category: FaultCategory) -> u32 {
        let code = brand_code(&self.profile, category);
        self.fault = Some(ActiveFault { category, code });
        // The protection trips at once: no heat from this moment on.
        self.control(0.0);
        code
    }

    /// Clears the active fault (the technician's repair); returns whether one was active.
    pub fn clear(&mut self) -> bool {
        let was_active = self.fault.take().is_some();
        self.control(0.0);
        was_active
    }

    /// The injected fault category, if any.
    pub fn injected(&self) -> Option<FaultCategory> {
        self.fault.map(|f| f.category)
    }

    /// The active fault as an agent decodes it through the profile.
    pub fn fault(&self) -> Option<Fault> {
        self.fault.and_then(|f| self.profile.fault(f.code))
    }

    /// Applies a remote write of a canonical value (only `setpoint_c` is writable).
    pub fn write(&mut self, name: &str, value: f64) -> Result<(), WriteRefused> {
        Self::check_write(name, value)?;
        self.setpoint_c = value;
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

    /// The canonical values the device's sensors and counters show now (with sensor noise,
    /// not yet quantised).
    pub fn values(&self) -> BTreeMap<&'static str, f64> {
        let mut values = BTreeMap::new();
        let running = f64::from(u8::from(self.heater_on));
        values.insert(v::INDOOR_TEMP_C, self.indoor_c);
        values.insert(v::OUTDOOR_TEMP_C, self.outdoor_c);
        values.insert(v::SETPOINT_C, self.setpoint_c);
        values.insert(v::FAULT_CODE, f64::from(self.fault.map_or(0, |f| f.code)));
        values.insert(v::RUNNING, running);
        values.insert(v::ELECTRIC_POWER_W, self.electric_power_w);
        values.insert(v::HEAT_OUTPUT_W, self.heat_output_w);
        values.insert(v::FLOW_TEMP_C, self.water_c);
        values.insert(v::RUNTIME_H, self.runtime_h);
        let fault = self.fault.map(|f| f.category);
        match &self.heater {
            Heater::HeatPump(hp) => {
                let defrosting = self.heater_on && hp.defrost_left_s > 0.0;
                let pumping = self.heater_on && !defrosting;
                let return_c = if pumping {
                    self.water_c - self.heat_output_w / HEAT_PUMP_FLOW_W_PER_K
                } else {
                    self.water_c - 0.3
                };
                values.insert(v::RETURN_TEMP_C, return_c);
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
                values.insert(v::DISCHARGE_TEMP_C, hp.discharge_c);
                values.insert(v::COIL_TEMP_C, hp.coil_c);
                let (suction, discharge) = if self.heater_on {
                    (
                        refrigerant_pressure_bar(hp.coil_c - 2.0),
                        refrigerant_pressure_bar(self.water_c + 5.0),
                    )
                } else {
                    let equalised = refrigerant_pressure_bar(hp.coil_c);
                    (equalised, equalised)
                };
                values.insert(v::SUCTION_PRESSURE_BAR, suction);
                values.insert(v::DISCHARGE_PRESSURE_BAR, discharge);
                values.insert(v::ENERGY_KWH, self.energy_kwh);
            }
            Heater::GasBoiler(boiler) => {
                let return_c = if self.heater_on {
                    self.water_c - self.heat_output_w / BOILER_FLOW_W_PER_K
                } else {
                    self.water_c - 0.3
                };
                values.insert(v::RETURN_TEMP_C, return_c);
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
                let fill_bar = if fault == Some(FaultCategory::LowWaterPressure) {
                    0.45
                } else {
                    boiler.cold_fill_bar
                };
                values.insert(
                    v::WATER_PRESSURE_BAR,
                    boiler_water_pressure_bar(fill_bar, self.water_c),
                );
                let gas = if fault == Some(FaultCategory::GasSupply) {
                    8.0
                } else {
                    boiler.supply_gas_mbar - 1.0 * boiler.modulation
                };
                values.insert(v::GAS_PRESSURE_MBAR, gas);
            }
        }
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
        values
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Building;

    fn profile(kind: DeviceKind) -> Arc<Profile> {
        let file = match kind {
            DeviceKind::HeatPump => "aurora-ashp.toml",
            DeviceKind::GasBoiler => "huanre-boiler.toml",
        };
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../profiles")
            .join(file);
        Arc::new(Profile::load(&path).expect("shipped profile"))
    }

    fn house(kind: DeviceKind, building: Building, climate: &Climate) -> House {
        let params = HouseParams {
            kind,
            heat_loss_w_per_k: building.heat_loss_w_per_k(),
            thermal_capacity_j_per_k: building.thermal_capacity_j_per_k(),
            setpoint_c: 20.0,
            outdoor_offset_c: 0.0,
            seed: 99,
        };
        // 2026-01-15 00:00 Beijing time.
        House::new(params, profile(kind), climate, 1_768_406_400.0)
    }

    #[test]
    fn an_unheated_house_cools_toward_outdoor_with_time_constant_c_over_ua() {
        let climate = Climate::constant(-10.0);
        for kind in [DeviceKind::HeatPump, DeviceKind::GasBoiler] {
            let mut house = house(kind, Building::OldBrick, &climate);
            house.inject(FaultCategory::SensorFault);
            assert!(!house.heating());
            let start_c = house.indoor_temp_c();
            let tau = house.time_constant_s();
            house.advance_to(house.now_unix_s() + tau, 1.0, &climate);
            let covered = (start_c - house.indoor_temp_c()) / (start_c - (-10.0));
            let expected = 1.0 - (-1.0f64).exp();
            assert!(
                (covered - expected).abs() < 0.01,
                "{kind:?}: covered {covered:.4} of the gap after one time constant, expected {expected:.4}"
            );
        }
    }

    #[test]
    fn a_heated_house_holds_its_set_point_within_one_kelvin_through_winter_days() {
        let climate = Climate::yanqing_winter(2026);
        for kind in [DeviceKind::HeatPump, DeviceKind::GasBoiler] {
            for building in [
                Building::OldBrick,
                Building::Renovated,
                Building::LargeCourtyard,
            ] {
                let mut house = house(kind, building, &climate);
                let (mut coldest, mut warmest) = (f64::MAX, f64::MIN);
                for _ in 0..(3 * 24 * 360) {
                    house.step(10.0, &climate);
                    coldest = coldest.min(house.indoor_temp_c());
                    warmest = warmest.max(house.indoor_temp_c());
                }
                assert!(
                    coldest >= 19.0 && warmest <= 21.0,
                    "{kind:?} {building:?}: indoor ranged {coldest:.2}..{warmest:.2} °C"
                );
            }
        }
    }

    #[test]
    fn heat_pump_cop_and_capacity_fall_as_outdoor_temperature_falls() {
        assert!((heat_pump_cop(7.0) - 3.5).abs() < 1e-9);
        assert!((heat_pump_cop(-20.0) - 1.6).abs() < 1e-9);
        assert!((heat_pump_capacity_w(-20.0) - 5500.0).abs() < 1e-9);
        let mut last = f64::MAX;
        for t in (-25..=15).rev() {
            let cop = heat_pump_cop(f64::from(t));
            assert!(cop < last || t > 14, "COP must fall: {t} °C gives {cop}");
            last = cop;
        }
        // And the running model shows it: heat over electric power at mild and cold weather.
        let cop_at = |outdoor: f64| {
            let climate = Climate::constant(outdoor);
            let mut house = house(DeviceKind::HeatPump, Building::OldBrick, &climate);
            house.indoor_c = 18.0; // cold enough that the thermostat calls for heat
            house.step(1.0, &climate);
            let values = house.values();
            values[v::HEAT_OUTPUT_W] / values[v::ELECTRIC_POWER_W]
        };
        let (mild, cold) = (cop_at(6.0), cop_at(-15.0));
        assert!(
            mild > cold + 1.0,
            "COP {mild:.2} at 6 °C vs {cold:.2} at -15 °C"
        );
    }

    #[test]
    fn boiler_water_pressure_rises_with_water_temperature() {
        assert!(boiler_water_pressure_bar(1.3, 60.0) > boiler_water_pressure_bar(1.3, 20.0));
        let climate = Climate::constant(-8.0);
        let mut house = house(DeviceKind::GasBoiler, Building::OldBrick, &climate);
        house.advance_to(house.now_unix_s() + 3600.0, 1.0, &climate);
        let hot = house.values();
        house.inject(FaultCategory::IgnitionFailure);
        house.advance_to(house.now_unix_s() + 6.0 * 3600.0, 1.0, &climate);
        let cold = house.values();
        assert!(
            hot[v::FLOW_TEMP_C] > cold[v::FLOW_TEMP_C] + 20.0,
            "the circuit cools without the burner"
        );
        assert!(
            hot[v::WATER_PRESSURE_BAR] > cold[v::WATER_PRESSURE_BAR] + 0.15,
            "{} bar hot vs {} bar cold",
            hot[v::WATER_PRESSURE_BAR],
            cold[v::WATER_PRESSURE_BAR]
        );
        assert!((1.2..=1.9).contains(&hot[v::WATER_PRESSURE_BAR]));
    }

    #[test]
    fn an_injected_fault_shows_the_brand_code_and_clearing_resumes_heating() {
        let climate = Climate::constant(-12.0);
        let mut house = house(DeviceKind::HeatPump, Building::Renovated, &climate);
        let code = house.inject(FaultCategory::WaterFlow);
        assert_eq!(code, 1, "Aurora's water-flow code is E1");
        let values = house.values();
        assert_eq!(values[v::FAULT_CODE], 1.0);
        assert_eq!(values[v::RUNNING], 0.0);
        assert_eq!(values[v::HEAT_OUTPUT_W], 0.0);
        assert_eq!(
            house.fault().map(|f| f.category),
            Some(FaultCategory::WaterFlow)
        );
        // Aurora has no ignition-failure code and no `other` code: fall back to 1.
        assert_eq!(
            brand_code(house.profile(), FaultCategory::IgnitionFailure),
            1
        );

        house.advance_to(house.now_unix_s() + 3.0 * 3600.0, 1.0, &climate);
        assert!(house.indoor_temp_c() < 19.0, "the house cooled");
        assert!(house.clear());
        house.step(1.0, &climate);
        assert!(
            house.heating(),
            "the thermostat calls for heat after the repair"
        );
        assert_eq!(house.values()[v::FAULT_CODE], 0.0);
    }

    #[test]
    fn heat_pumps_defrost_in_frosting_weather_only_and_briefly() {
        for (outdoor, expect_defrost) in [(-2.0, true), (-15.0, false)] {
            let climate = Climate::constant(outdoor);
            let mut house = house(DeviceKind::HeatPump, Building::LargeCourtyard, &climate);
            let (mut running_s, mut defrost_s) = (0.0, 0.0);
            for _ in 0..(24 * 3600) {
                house.step(1.0, &climate);
                let values = house.values();
                running_s += values[v::RUNNING];
                defrost_s += values[v::DEFROST_ACTIVE];
            }
            if expect_defrost {
                let share = defrost_s / running_s;
                assert!((0.03..0.15).contains(&share), "defrost share {share:.3}");
            } else {
                assert_eq!(defrost_s, 0.0);
            }
        }
    }

    #[test]
    fn boilers_count_an_ignition_per_burner_start() {
        let climate = Climate::constant(0.0);
        let mut house = house(DeviceKind::GasBoiler, Building::Renovated, &climate);
        let before = house.values()[v::IGNITION_ATTEMPTS];
        let mut starts = 0.0;
        let mut was_on = house.heating();
        for _ in 0..(12 * 3600) {
            house.step(1.0, &climate);
            if house.heating() && !was_on {
                starts += 1.0;
            }
            was_on = house.heating();
        }
        let after = house.values()[v::IGNITION_ATTEMPTS];
        assert!(
            starts >= 3.0,
            "a small load makes the burner cycle: {starts} starts"
        );
        assert!(after - before >= starts && after - before <= starts * 1.5 + 1.0);
    }

    #[test]
    fn winter_climate_is_coldest_before_dawn_and_averages_about_minus_eight() {
        let climate = Climate::yanqing_winter(5);
        let midnight_local = 1_768_406_400.0; // 2026-01-15 00:00 UTC+8
        let mut total = 0.0;
        let samples = 30 * 24;
        for hour in 0..samples {
            total += climate.outdoor_temp_c(midnight_local + f64::from(hour) * 3600.0);
        }
        let mean = total / f64::from(samples);
        assert!((mean - WINTER_MEAN_C).abs() < 2.0, "mean {mean:.2}");
        let at = |h: f64| Climate::yanqing_winter(0).outdoor_temp_c(midnight_local + h * 3600.0);
        assert!(at(5.0) < at(11.0) && at(5.0) < at(17.0) && at(5.0) < at(23.0));
        assert_eq!(
            climate.outdoor_temp_c(midnight_local),
            climate.outdoor_temp_c(midnight_local)
        );
    }

    #[test]
    fn set_point_writes_are_bounded() {
        let climate = Climate::constant(-5.0);
        let mut house = house(DeviceKind::GasBoiler, Building::OldBrick, &climate);
        assert!(house.write(v::SETPOINT_C, 22.5).is_ok());
        assert_eq!(house.setpoint_c(), 22.5);
        assert!(matches!(
            house.write(v::SETPOINT_C, 80.0),
            Err(WriteRefused::OutOfRange { .. })
        ));
        assert!(matches!(
            house.write(v::FAULT_CODE, 0.0),
            Err(WriteRefused::NotWritable(_))
        ));
    }
}
