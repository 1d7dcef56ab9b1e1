//! The physical model of one household, stepped in simulated time: a single-zone house
//! (`C dT/dt = Q_heat - UA (1 + k·wind) (T_in - T_out)`) under a Yanqing winter (see
//! [`crate::climate`]), and a heat pump or a gas boiler with its thermostat (night set-back,
//! away mode), water circuit, counters, protections and sensors, plus faults.
//!
//! Faults come in two ways. [`House::inject`] latches a brand fault code at once (the control
//! API and the demo use it). [`House::start`] starts a physical [`Degradation`] whose
//! symptoms grow out of the model: a refrigerant leak lowers capacity and COP and raises the
//! discharge temperature until the low-pressure switch locks the unit out; a fouled filter
//! raises the flow-return difference until high-pressure trips lock it out; a sealed-circuit
//! leak lowers the water pressure until the boiler locks out; a failing flow switch trips
//! until the brand's count of trips within its window locks it out. Many faults show no code
//! at all: a seized circulation pump or a closed valve (the unit cycles on its high-limit
//! thermostat, the house gets almost nothing), a dead or hung controller, a tripped breaker (the
//! controller does not answer), a failed outdoor fan (back-to-back defrosts), a partial
//! refrigerant loss that settles above the low-pressure switch, a leak on a boiler without a
//! pressure sensor, a frozen condensate drain. Supply (mains power, gas pressure) is set from
//! outside.
//!
//! The world does not agree with any rule by construction: every physical constant of a unit
//! ([`UnitConstants`]: pressure/temperature coefficient of the sealed circuit, the brand's
//! open/short sensor readings and trips to lockout, the gas valve's minimum pressure, the
//! high-limit thermostat, the pressure switch, the coil's frosting) is drawn per unit or per
//! brand from a realistic range, seeded, so the same household always has the same unit.
//!
//! The model does no IO and reads no clock: time is whatever the caller steps it to, so tests
//! run a simulated week in milliseconds. It outputs canonical values (see [`wire::values`]);
//! the Modbus layer and the load publisher quantise them through the household's profile.

use std::collections::BTreeMap;
use std::sync::Arc;

use edge_agent::profile::Profile;
use wire::values as v;
use wire::{DeviceKind, Fault, FaultCategory};

pub use crate::climate::{
    Climate, ColdWave, Weather, COLDEST_LOCAL_HOUR, LOCAL_UTC_OFFSET_S, WINTER_AMPLITUDE_C,
    WINTER_DAY_SPREAD_C, WINTER_MEAN_C,
};
use crate::fleet::HouseholdSpec;
use crate::rng::Rng;

/// Thermostat hysteresis band (on below set point - half, off above set point + half), K:
/// a room thermostat's usual 1 K differential.
pub const THERMOSTAT_BAND_K: f64 = 1.0;
/// Sun through the south windows at a clear winter noon, W.
pub const SOLAR_GAIN_W: f64 = 700.0;
/// People, lights and appliances of an occupied home, W.
pub const OCCUPANT_GAIN_W: f64 = 150.0;
/// Cooking (a coal-free kitchen still warms the house) at meal times, W.
pub const COOKING_GAIN_W: f64 = 350.0;
/// Extra heat loss per m/s of wind (draughts through old windows and doors), per unit.
pub const WIND_LOSS_PER_M_S: f64 = 0.02;
/// Share of the heat a unit makes that still reaches the house when the water does not
/// circulate (conduction and a little thermosiphon through the pipes).
pub const STAGNANT_HEAT_SHARE: f64 = 0.04;
/// Night set-back runs from this local hour...
pub const NIGHT_FROM_LOCAL_HOUR: f64 = 22.0;
/// ...to this local hour.
pub const NIGHT_TO_LOCAL_HOUR: f64 = 6.0;
/// A protection trip stops the unit for this long before it restarts by itself, s.
pub const PROTECTION_TRIP_S: f64 = 180.0;
/// A heat pump trips on high pressure when its flow-return difference exceeds this, K.
pub const HEAT_PUMP_TRIP_DELTA_T_K: f64 = 14.0;
/// A heat pump trips on discharge overheat at this discharge temperature, °C.
pub const DISCHARGE_TRIP_C: f64 = 110.0;
/// Above this discharge temperature an inverter heat pump slows its compressor (less heat, a
/// cooler discharge) rather than trip, °C.
pub const DISCHARGE_THROTTLE_C: f64 = 100.0;
/// Range of a brand's trips to lockout (per brand, inclusive).
pub const LOCKOUT_TRIPS_RANGE: (usize, usize) = (2, 5);
/// Range of a brand's lockout window (trips counted within it): 15 minutes per trip to lockout
/// plus this, s.
pub const LOCKOUT_WINDOW_EXTRA_RANGE_S: (f64, f64) = (1800.0, 5400.0);
/// Range of a boiler's sealed-circuit pressure rise per kelvin of water temperature (the
/// expansion vessel's size and pre-charge against the circuit's volume), bar/K.
pub const PRESSURE_COEFFICIENT_RANGE_BAR_PER_K: (f64, f64) = (0.006, 0.015);
/// Range of what a brand's open (broken) NTC sensor reads, °C.
pub const SENSOR_OPEN_RANGE_C: (f64, f64) = (-50.0, -30.0);
/// Range of what a brand's short-circuited NTC sensor reads, °C (up to the top of the
/// canonical flow-temperature range, 130 °C, which every register map can carry).
pub const SENSOR_SHORT_RANGE_C: (f64, f64) = (100.0, 130.0);
/// Range of a boiler gas valve's minimum supply pressure to light, mbar.
pub const GAS_MIN_IGNITION_RANGE_MBAR: (f64, f64) = (11.0, 15.0);
/// Range of a boiler's low-water-pressure switch, bar.
pub const LOW_PRESSURE_CUTOUT_RANGE_BAR: (f64, f64) = (0.45, 0.8);
/// Range of the share of charge below which a heat pump's low-pressure switch locks it out.
pub const LOW_CHARGE_LOCKOUT_RANGE: (f64, f64) = (0.52, 0.58);
/// Range of a heat pump's high-limit (leaving water) thermostat, °C.
pub const HEAT_PUMP_HIGH_LIMIT_RANGE_C: (f64, f64) = (55.0, 62.0);
/// Range of a boiler's high-limit (flow) thermostat, °C.
pub const BOILER_HIGH_LIMIT_RANGE_C: (f64, f64) = (80.0, 90.0);
/// Range of the high-limit thermostat's differential (off until the sensor cools this much), K.
pub const HIGH_LIMIT_DIFFERENTIAL_RANGE_K: (f64, f64) = (5.0, 10.0);
/// A unit's COP against its catalogue curve: field measurements of one model in one district
/// spread by about ±8 % (siting, pipework, manufacturing).
pub const COP_FACTOR_RANGE: (f64, f64) = (0.9, 1.06);
/// A clamp-on discharge sensor's offset from the true discharge temperature, K.
pub const DISCHARGE_OFFSET_RANGE_K: (f64, f64) = (-4.0, 3.0);
/// Lowest refrigerant charge a leak reaches (the rest stays in the oil), share.
const MIN_CHARGE: f64 = 0.2;
/// Lowest share of nominal water flow a fouled filter leaves.
const MIN_FILTER_FLOW: f64 = 0.15;

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
/// against the expansion vessel as it warms (`coefficient` bar/K above 20 °C; per unit, see
/// [`PRESSURE_COEFFICIENT_RANGE_BAR_PER_K`]).
pub fn boiler_water_pressure_bar(cold_fill_bar: f64, water_c: f64, coefficient: f64) -> f64 {
    cold_fill_bar + coefficient * (water_c - 20.0)
}

/// Share of a heat pump's running time spent defrosting in this weather, for a coil of average
/// fin spacing: none above +6 °C (no frost) or below -15 °C (the air holds too little water),
/// most between -5 and 0 °C, and rising with the relative humidity from 3 % on dry days to
/// 20 % on humid ones.
pub fn defrost_share(outdoor_c: f64, humidity: f64) -> f64 {
    let temperature = if outdoor_c > 6.0 {
        0.0
    } else if outdoor_c >= 0.0 {
        (6.0 - outdoor_c) / 6.0
    } else if outdoor_c >= -5.0 {
        1.0
    } else {
        ((outdoor_c + 15.0) / 10.0).clamp(0.0, 1.0)
    };
    let wetness = ((humidity - 0.3) / 0.6).clamp(0.0, 1.0);
    temperature * (0.03 + 0.17 * wetness)
}

/// A stable hash of a brand name (FNV-1a), to seed the brand's constants.
fn brand_key(brand: &str) -> u64 {
    brand.bytes().fold(0xCBF2_9CE4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3)
    })
}

/// True when a profile maps the circuit's water pressure (many wall-hung boilers report none).
pub fn has_pressure_sensor(profile: &Profile) -> bool {
    profile.register(v::WATER_PRESSURE_BAR).is_some()
}

/// The physical constants of one unit: drawn per unit (or per brand, where a brand's firmware
/// or parts set them) from realistic ranges, so that no rule constant equals them by
/// construction.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitConstants {
    /// Sealed-circuit pressure rise per kelvin, bar/K (boilers).
    pub pressure_coefficient_bar_per_k: f64,
    /// What this brand's open flow sensor reads, °C.
    pub sensor_open_c: f64,
    /// What this brand's shorted flow sensor reads, °C.
    pub sensor_short_c: f64,
    /// This brand's trips within [`UnitConstants::lockout_window_s`] that lock the unit out.
    pub lockout_trips: usize,
    /// This brand's lockout window, s.
    pub lockout_window_s: f64,
    /// Lowest gas supply pressure the boiler lights at, mbar.
    pub gas_min_ignition_mbar: f64,
    /// The gas-supply fault clears once the supply is back above this, mbar.
    pub gas_recovered_mbar: f64,
    /// The boiler's low-water-pressure switch, bar.
    pub low_pressure_cutout_bar: f64,
    /// Share of charge at which the heat pump's low-pressure switch locks out.
    pub low_charge_lockout: f64,
    /// High-limit thermostat on the unit's own flow sensor, °C.
    pub high_limit_c: f64,
    /// Its differential, K.
    pub high_limit_differential_k: f64,
    /// The coil's frosting against the average coil (fin spacing, airflow).
    pub frosting_factor: f64,
    /// Length of one defrost cycle, s.
    pub defrost_duration_s: f64,
    /// This unit's COP against its model's catalogue curve (manufacturing spread, how the
    /// installer sited the outdoor unit, the water side's pipework).
    pub cop_factor: f64,
    /// Where this unit's discharge sensor sits on the pipe and how well it is clamped: its
    /// reading against the refrigerant's true discharge temperature, K.
    pub discharge_offset_k: f64,
}

impl UnitConstants {
    /// Draws the constants of a unit of `kind` from `profile`'s brand and the unit's `seed`.
    pub fn draw(kind: DeviceKind, profile: &Profile, seed: u64) -> UnitConstants {
        let mut brand = Rng::derive(brand_key(&profile.brand), 0x000B_2A4D);
        let mut unit = Rng::derive(seed, 0xC0_4575);
        let pick = |rng: &mut Rng, (low, high): (f64, f64)| rng.uniform(low, high);
        // The brand's firmware writes its out-of-scale value into its own flow register, so it
        // is one the register can carry (a register that stops at -40 °C reads -40 °C).
        let representable = |value: f64| match profile.register(v::FLOW_TEMP_C) {
            Some(register) => {
                edge_agent::profile::decode(register, &edge_agent::profile::encode(register, value))
                    .unwrap_or(value)
            }
            None => value,
        };
        let sensor_open_c = representable(pick(&mut brand, SENSOR_OPEN_RANGE_C).round());
        let sensor_short_c = representable(pick(&mut brand, SENSOR_SHORT_RANGE_C).round());
        let (low, high) = LOCKOUT_TRIPS_RANGE;
        let lockout_trips = low + brand.index(high - low + 1);
        let extra_s = pick(&mut brand, LOCKOUT_WINDOW_EXTRA_RANGE_S);
        let lockout_window_s = ((lockout_trips as f64 * 900.0 + extra_s) / 300.0).round() * 300.0;
        let gas_min_ignition_mbar = pick(&mut unit, GAS_MIN_IGNITION_RANGE_MBAR);
        let gas_recovered_mbar = gas_min_ignition_mbar + unit.uniform(1.5, 3.0);
        let high_limit_range = match kind {
            DeviceKind::HeatPump => HEAT_PUMP_HIGH_LIMIT_RANGE_C,
            DeviceKind::GasBoiler => BOILER_HIGH_LIMIT_RANGE_C,
        };
        UnitConstants {
            pressure_coefficient_bar_per_k: pick(&mut unit, PRESSURE_COEFFICIENT_RANGE_BAR_PER_K),
            sensor_open_c,
            sensor_short_c,
            lockout_trips,
            lockout_window_s,
            gas_min_ignition_mbar,
            gas_recovered_mbar,
            low_pressure_cutout_bar: pick(&mut unit, LOW_PRESSURE_CUTOUT_RANGE_BAR),
            low_charge_lockout: pick(&mut unit, LOW_CHARGE_LOCKOUT_RANGE),
            high_limit_c: pick(&mut unit, high_limit_range),
            high_limit_differential_k: pick(&mut unit, HIGH_LIMIT_DIFFERENTIAL_RANGE_K),
            frosting_factor: unit.uniform(0.85, 1.1),
            defrost_duration_s: unit.uniform(240.0, 360.0),
            cop_factor: unit.uniform(COP_FACTOR_RANGE.0, COP_FACTOR_RANGE.1),
            discharge_offset_k: unit
                .uniform(DISCHARGE_OFFSET_RANGE_K.0, DISCHARGE_OFFSET_RANGE_K.1),
        }
    }
}

/// Share of nominal capacity a heat pump keeps with this share of its refrigerant charge:
/// 1 at full charge, falling linearly to 0 at 30 % charge.
pub fn charge_capacity_factor(charge: f64) -> f64 {
    ((charge - 0.3) / 0.7).clamp(0.0, 1.0)
}

/// Share of nominal COP a heat pump keeps with this share of its refrigerant charge.
pub fn charge_cop_factor(charge: f64) -> f64 {
    0.5 + 0.5 * charge_capacity_factor(charge)
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
/// Most of its running time a healthy heat pump spends defrosting, even on the worst day.
const MAX_HEALTHY_DEFROST_SHARE: f64 = 0.2;
/// With its outdoor fan dead (or its coil iced over) a heat pump defrosts this share of its
/// running time, back to back, whenever it is below this outdoor temperature...
const FAN_FAILED_DEFROST_SHARE: f64 = 0.45;
/// ...which is this, °C.
const FAN_FAILED_ICING_BELOW_C: f64 = 6.0;
/// Share of capacity a heat pump keeps with its outdoor fan dead (natural convection only).
const FAN_FAILED_CAPACITY: f64 = 0.4;
/// Share of COP it keeps.
const FAN_FAILED_COP: f64 = 0.65;
/// The installer sizes a heat pump for this indoor-outdoor difference, K...
const HEAT_PUMP_DESIGN_DIFFERENCE_K: f64 = 42.0;
/// ...with this margin: 15 % for windy nights and 13 % for the capacity defrosting takes on
/// humid days (cold-climate installers derate the nameplate for both).
const HEAT_PUMP_SIZING_MARGIN: f64 = 1.3;
/// Supply voltage times power factor, for the compressor current, V.
const SUPPLY_VOLT_AMPERE_PER_W: f64 = 220.0 * 0.92;

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

/// How a temperature sensor fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorFailure {
    /// Broken wire: the NTC reads very cold (the brand's [`UnitConstants::sensor_open_c`]).
    Open,
    /// Short circuit: the NTC reads very hot (the brand's [`UnitConstants::sensor_short_c`]).
    Short,
}

/// A physical fault started with [`House::start`]; it lasts until [`House::clear`] (the
/// technician's repair).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Degradation {
    /// The unit locks out at once with the brand's code for the category.
    Lockout(FaultCategory),
    /// The water-flow switch opens while running: a protection trip every 5-15 minutes of
    /// running, until the brand's count of trips within its window locks the unit out (later on
    /// mild days, when the compressor runs less).
    FlowSwitch,
    /// Worn ignition electrode: each burner start needs retries (the counter climbs faster).
    IgnitionWear,
    /// The burner fails to light three times and locks out.
    IgnitionFailure,
    /// The flow-water sensor fails; the controller shows a sensor fault and stops.
    Sensor(SensorFailure),
    /// The heat pump loses this share of its refrigerant charge per day.
    RefrigerantLeak { charge_per_day: f64 },
    /// The sealed heating circuit loses this much cold fill pressure per day, bar.
    WaterLeak { bar_per_day: f64 },
    /// The Y-filter clogs: the water flow falls by this share of nominal per day.
    FouledFilter { flow_per_day: f64 },
    /// No water circulates through the house: the circulation pump seized, or an isolation
    /// valve was left closed after a service visit. The unit's own flow sensor climbs to its
    /// high limit and the compressor or burner cycles on that thermostat; the return sensor
    /// drifts to the pipe temperature; a few percent of the heat reaches the house. No code
    /// (these installations' flow switches are bridged, or sit on the unit's bypass).
    CirculationBlocked,
    /// The controller or room thermostat fails: the heater stops, the set point keeps its value,
    /// every other register stays live. No code.
    ControllerOff,
    /// The controller hangs: every register freezes at its last value while the heater stops.
    ControllerHang,
    /// The heater's circuit breaker trips: the unit's controller is dead and does not answer
    /// Modbus (see [`House::responds`]); the box's own supply stays on.
    BreakerTrip,
    /// A heat pump's outdoor fan fails (or its coil ices over): defrost cycles back to back,
    /// capacity and COP fall. No code.
    FanFailure,
    /// A heat pump loses this share of its charge per day until it settles at `settles_at`,
    /// above the low-pressure switch: low capacity and COP, never a code.
    PartialRefrigerantLeak {
        charge_per_day: f64,
        settles_at: f64,
    },
    /// A boiler's sealed circuit leaks this much fill pressure per day, on a unit without a
    /// pressure sensor: below its pressure switch the boiler just stops (its display shows a
    /// bare "E" that no register carries). No code.
    SilentWaterLeak { bar_per_day: f64 },
    /// A boiler's condensate drain freezes: the burner tries a few times, fails and stays off.
    /// No code.
    CondensateFrozen,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ActiveFault {
    category: FaultCategory,
    code: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Trip {
    fault: ActiveFault,
    left_s: f64,
}

/// The unit's physical condition; healthy by default.
#[derive(Debug, Clone, PartialEq)]
struct Health {
    refrigerant_charge: f64,
    charge_loss_per_s: f64,
    filter_flow: f64,
    fouling_per_s: f64,
    fill_loss_bar_per_s: f64,
    flow_switch_faulty: bool,
    /// Running seconds until the faulty flow switch trips next.
    flow_trip_in_s: f64,
    ignition_wear: bool,
    sensor: Option<SensorFailure>,
    /// A leak stops at this share of charge.
    charge_floor: f64,
    circulation_blocked: bool,
    controller_off: bool,
    /// The register image a hung controller keeps showing.
    hung: Option<BTreeMap<&'static str, f64>>,
    breaker_tripped: bool,
    fan_failed: bool,
    /// Low water pressure stops the boiler without a code (no pressure sensor).
    silent_low_pressure: bool,
    /// The boiler stopped without a code (its pressure switch opened).
    silent_stop: bool,
    condensate_frozen: bool,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            refrigerant_charge: 1.0,
            charge_loss_per_s: 0.0,
            filter_flow: 1.0,
            fouling_per_s: 0.0,
            fill_loss_bar_per_s: 0.0,
            flow_switch_faulty: false,
            flow_trip_in_s: 0.0,
            ignition_wear: false,
            sensor: None,
            charge_floor: MIN_CHARGE,
            circulation_blocked: false,
            controller_off: false,
            hung: None,
            breaker_tripped: false,
            fan_failed: false,
            silent_low_pressure: false,
            silent_stop: false,
            condensate_frozen: false,
        }
    }
}

impl Health {
    /// The heater cannot run though no code shows.
    fn silently_stopped(&self) -> bool {
        self.controller_off
            || self.hung.is_some()
            || self.breaker_tripped
            || self.silent_stop
            || self.condensate_frozen
    }
}

/// A window opened for airing.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Airing {
    /// How far the room air falls while it is open, K.
    drop_k: f64,
    /// Time constant of the fall, s.
    tau_s: f64,
}

/// A unit being commissioned: the installer starts and stops it by hand, air is still in the
/// circuit.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Commissioning {
    forced_on: bool,
    phase_left_s: f64,
    /// Flow sensor offset from air around it, K.
    flow_skew_k: f64,
    /// Return minus flow while air is in the circuit, K (sometimes above the flow).
    return_skew_k: f64,
}

#[derive(Debug, Clone)]
struct HeatPumpState {
    /// Unit size relative to the nominal 9 kW unit.
    size_factor: f64,
    defrost_left_s: f64,
    run_since_defrost_s: f64,
    /// This cycle's frosting interval against the weather's mean one (jitter).
    defrost_jitter: f64,
    discharge_c: f64,
    coil_c: f64,
}

#[derive(Debug, Clone)]
struct BoilerState {
    modulation: f64,
    ignition_attempts: f64,
    flue_c: f64,
    dhw_c: f64,
    /// Cold fill pressure now (a leak lowers it), bar.
    cold_fill_bar: f64,
    /// Cold fill pressure the installer set (a repair refills to it), bar.
    healthy_fill_bar: f64,
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
    wind_m_s: f64,
    indoor_c: f64,
    /// Flow-side water temperature of the heating circuit.
    water_c: f64,
    /// The resident's comfort set point (what a write changes).
    comfort_setpoint_c: f64,
    /// Night set-back depth, K (0: none).
    night_setback_k: f64,
    /// While the resident is away, the frost-protection set point they left.
    away_setpoint_c: Option<f64>,
    /// Sun, occupants and cooking warm the house (off for bare physics experiments).
    free_gains: bool,
    /// The heater is producing heat (thermostat call, burner lit, compressor running).
    heater_on: bool,
    heat_output_w: f64,
    electric_power_w: f64,
    energy_kwh: f64,
    runtime_h: f64,
    /// Mains power reaches the house.
    power_on: bool,
    /// The village's gas supply pressure when it is not normal, mbar.
    gas_supply_mbar: Option<f64>,
    /// A latched fault: the unit stays off until repaired.
    lockout: Option<ActiveFault>,
    /// A protection trip: the unit restarts by itself when it ends.
    trip: Option<Trip>,
    /// Simulated times of recent protection trips.
    recent_trips_s: Vec<f64>,
    /// A supply fault the unit shows while the supply is out of range (gas pressure).
    supply_fault: Option<ActiveFault>,
    health: Health,
    heater: Heater,
    rng: Rng,
    noise: Vec<f64>,
    defrost_cycles: u64,
    trips_total: u64,
    constants: UnitConstants,
    /// Outdoor relative humidity now.
    humidity: f64,
    /// The high-limit thermostat has cut the heater out until the flow sensor cools.
    high_limit_hold: bool,
    /// The return sensor's temperature while no water circulates.
    stagnant_return_c: f64,
    /// Room air against the house's mass temperature (an open window), K.
    air_offset_k: f64,
    airing: Option<Airing>,
    commissioning: Option<Commissioning>,
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
        let (heater, water_c, energy_kwh, runtime_h) = match params.kind {
            DeviceKind::HeatPump => {
                let size_factor = (params.heat_loss_w_per_k
                    * HEAT_PUMP_DESIGN_DIFFERENCE_K
                    * HEAT_PUMP_SIZING_MARGIN
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
                (
                    Heater::HeatPump(state),
                    water_c,
                    rng.uniform(500.0, 4000.0),
                    rng.uniform(200.0, 6000.0),
                )
            }
            DeviceKind::GasBoiler => {
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
                (
                    Heater::GasBoiler(state),
                    57.0,
                    0.0,
                    rng.uniform(200.0, 6000.0),
                )
            }
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

    /// The unit's own flow sensor, °C (noise-free).
    pub fn flow_temp_c(&self) -> f64 {
        self.water_c
    }

    /// True (noise-free) local outdoor temperature, °C.
    pub fn outdoor_temp_c(&self) -> f64 {
        self.outdoor_c
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

    /// Sun through the windows, occupants and cooking warm the house (off by default, so
    /// that bare physics experiments see only the heater and the losses).
    pub fn set_free_gains(&mut self, on: bool) {
        self.free_gains = on;
    }

    /// Heat from sun, occupants and cooking now, W.
    fn free_gains_w(&self, sun: f64) -> f64 {
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

    fn gas_supply_now(&self, boiler: &BoilerState) -> f64 {
        self.gas_supply_mbar.unwrap_or(boiler.supply_gas_mbar)
    }

    /// Heat reaching the house now, W: what the unit makes, or a few percent of it while no
    /// water circulates.
    fn delivered_heat_w(&self) -> f64 {
        if self.health.circulation_blocked {
            self.heat_output_w * STAGNANT_HEAT_SHARE
        } else {
            self.heat_output_w
        }
    }

    /// The temperature the pipes and a stagnant return sensor settle at, °C (a heat pump's
    /// pipes run partly outdoors).
    fn pipe_ambient_c(&self) -> f64 {
        match self.heater {
            Heater::HeatPump(_) => self.indoor_c - 0.3 * (self.indoor_c - self.outdoor_c),
            Heater::GasBoiler(_) => self.indoor_c,
        }
    }

    /// Decides whether the heater runs and how much heat and power it produces.
    fn control(&mut self, dt_s: f64) {
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
        // The high-limit thermostat on the unit's own flow sensor: off at the limit, on again
        // once the sensor has cooled by the differential.
        let limit = self.constants.high_limit_c;
        if self.high_limit_hold {
            if self.water_c <= limit - self.constants.high_limit_differential_k {
                self.high_limit_hold = false;
            }
        } else if self.heater_on && self.water_c >= limit {
            self.high_limit_hold = true;
        }
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
        let standby_w = |idle_w: f64| if standby { idle_w } else { 0.0 };
        let humidity = self.humidity;
        match &mut self.heater {
            Heater::HeatPump(hp) => {
                if blocked {
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
                    self.electric_power_w = standby_w(12.0);
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
                    let mut share = (defrost_share(self.outdoor_c, humidity)
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
            Heater::GasBoiler(boiler) => {
                if blocked {
                    self.heater_on = false;
                } else if too_cold {
                    self.heater_on = true;
                } else if too_warm {
                    self.heater_on = false;
                }
                if self.heater_on && gas_now < self.constants.gas_min_ignition_mbar {
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
                    let demand_w = self.params.heat_loss_w_per_k * (setpoint - self.outdoor_c)
                        + BOILER_ROOM_GAIN_W_PER_K * (setpoint - room_c);
                    boiler.modulation =
                        (demand_w / BOILER_MAX_OUTPUT_W).clamp(BOILER_MIN_MODULATION, 1.0);
                    self.heat_output_w = boiler.modulation * BOILER_MAX_OUTPUT_W;
                    self.electric_power_w = 85.0 + 60.0 * boiler.modulation;
                    if !was_on {
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
                    self.electric_power_w = standby_w(6.0);
                }
            }
        }
    }

    /// Moves the water circuit and the unit's internal temperatures toward their targets, and
    /// lets degradations progress.
    fn update_circuit(&mut self, dt_s: f64) {
        let lockout = self.lockout.map(|f| f.category);
        let pipe_ambient_c = self.pipe_ambient_c();
        let limit = self.constants.high_limit_c;
        let health = &mut self.health;
        health.refrigerant_charge = (health.refrigerant_charge - health.charge_loss_per_s * dt_s)
            .max(health.charge_floor.max(MIN_CHARGE));
        health.filter_flow =
            (health.filter_flow - health.fouling_per_s * dt_s).max(MIN_FILTER_FLOW);
        let stagnant = health.circulation_blocked;
        match &mut self.heater {
            Heater::HeatPump(hp) => {
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
                    self.heat_output_w / (HEAT_PUMP_FLOW_W_PER_K * health.filter_flow)
                };
                let (discharge_target, discharge_tau) = match (self.heater_on, defrosting) {
                    (true, false) => {
                        let raw = self.water_c
                            + 22.0
                            + 0.8 * (7.0 - self.outdoor_c).max(0.0)
                            + 60.0 * (1.0 - health.refrigerant_charge)
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
                let fan_dead = if health.fan_failed { 8.0 } else { 0.0 };
                let (coil_target, coil_tau) = match (self.heater_on, defrosting) {
                    (true, false) => (
                        self.outdoor_c
                            - 6.0
                            - fan_dead
                            - self.heat_output_w / 10_000.0
                            - 8.0 * (1.0 - health.refrigerant_charge),
                        60.0,
                    ),
                    (true, true) => (8.0, 60.0),
                    (false, _) => (self.outdoor_c, 300.0),
                };
                hp.coil_c = approach(hp.coil_c, coil_target, coil_tau, dt_s);
            }
            Heater::GasBoiler(boiler) => {
                boiler.cold_fill_bar =
                    (boiler.cold_fill_bar - health.fill_loss_bar_per_s * dt_s).max(0.0);
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
                let dhw_target = if lockout.is_some() || !self.power_on {
                    self.indoor_c
                } else {
                    48.0
                };
                boiler.dhw_c = approach(boiler.dhw_c, dhw_target, 4.0 * 3600.0, dt_s);
            }
        }
        // The return sensor: without circulation it drifts to the pipes' temperature.
        self.stagnant_return_c = if stagnant {
            approach(self.stagnant_return_c, pipe_ambient_c, 1800.0, dt_s)
        } else {
            self.return_now_c()
        };
    }

    /// The return water temperature the unit's sensor sees now, °C (noise-free).
    fn return_now_c(&self) -> f64 {
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

    /// The controller's protections: trips, and lockouts when the limits are far out.
    fn protections(&mut self, dt_s: f64) {
        if !self.power_on || self.lockout.is_some() || self.trip.is_some() {
            return;
        }
        let mut trip = None;
        match &self.heater {
            Heater::HeatPump(hp) => {
                if self.health.refrigerant_charge < self.constants.low_charge_lockout {
                    self.latch(FaultCategory::LowPressure);
                    return;
                }
                // Without circulation the high-limit thermostat acts first; nothing to trip.
                let pumping =
                    self.heater_on && hp.defrost_left_s <= 0.0 && !self.health.circulation_blocked;
                if pumping {
                    let delta_t =
                        self.heat_output_w / (HEAT_PUMP_FLOW_W_PER_K * self.health.filter_flow);
                    if self.health.flow_switch_faulty {
                        self.health.flow_trip_in_s -= dt_s;
                        if self.health.flow_trip_in_s <= 0.0 {
                            self.health.flow_trip_in_s = self.rng.uniform(300.0, 900.0);
                            trip = Some(FaultCategory::WaterFlow);
                        }
                    }
                    if trip.is_none() && delta_t > HEAT_PUMP_TRIP_DELTA_T_K {
                        trip = Some(FaultCategory::HighPressure);
                    }
                    if trip.is_none() && hp.discharge_c >= DISCHARGE_TRIP_C {
                        trip = Some(FaultCategory::DischargeOverheat);
                    }
                }
            }
            Heater::GasBoiler(boiler) => {
                let pressure = boiler_water_pressure_bar(
                    boiler.cold_fill_bar,
                    self.water_c,
                    self.constants.pressure_coefficient_bar_per_k,
                );
                if pressure < self.constants.low_pressure_cutout_bar {
                    if self.health.silent_low_pressure {
                        // The pressure switch opens; a basic model shows no code for it.
                        self.health.silent_stop = true;
                        self.control(0.0);
                    } else {
                        self.latch(FaultCategory::LowWaterPressure);
                    }
                    return;
                }
            }
        }
        if let Some(category) = trip {
            self.protection_trip(category);
        }
    }

    /// A protection trip: the unit stops for [`PROTECTION_TRIP_S`] showing the category's
    /// code; the brand's [`UnitConstants::lockout_trips`]th trip within its
    /// [`UnitConstants::lockout_window_s`] locks it out instead.
    fn protection_trip(&mut self, category: FaultCategory) {
        let now = self.now_unix_s;
        let window = self.constants.lockout_window_s;
        self.recent_trips_s.retain(|&at| now - at < window);
        self.recent_trips_s.push(now);
        self.trips_total += 1;
        if self.recent_trips_s.len() >= self.constants.lockout_trips {
            self.latch(category);
            return;
        }
        let code = brand_code(&self.profile, category);
        self.trip = Some(Trip {
            fault: ActiveFault { category, code },
            left_s: PROTECTION_TRIP_S,
        });
        self.control(0.0);
    }

    /// Latches a lockout with the brand's code for `category`.
    fn latch(&mut self, category: FaultCategory) -> u32 {
        let code = brand_code(&self.profile, category);
        self.lockout = Some(ActiveFault { category, code });
        self.trip = None;
        // The protection acts at once: no heat from this moment on.
        self.control(0.0);
        code
    }

    /// Draws fresh sensor noise (call before each read; between reads the sensors hold).
    pub fn refresh_noise(&mut self) {
        for slot in &mut self.noise {
            *slot = self.rng.gaussian(1.0);
        }
    }

    /// Injects a fault: the brand's code for `category` (see [`brand_code`]) appears in the
    /// fault register and the heater stops, so the house cools. Returns the code.
    pub fn inject(&mut self, category: FaultCategory) -> u32 {
        self.latch(category)
    }

    /// Starts a physical fault (see [`Degradation`]). Faults that do not apply to the unit's
    /// kind (a refrigerant leak in a boiler) change nothing.
    pub fn start(&mut self, degradation: Degradation) {
        let per_day = |x: f64| {
            if x.is_finite() {
                x.max(0.0) / 86_400.0
            } else {
                0.0
            }
        };
        let is_boiler = matches!(self.heater, Heater::GasBoiler(_));
        match degradation {
            Degradation::Lockout(category) => {
                self.latch(category);
            }
            Degradation::FlowSwitch => {
                self.health.flow_switch_faulty = true;
                self.health.flow_trip_in_s = self.rng.uniform(60.0, 600.0);
            }
            Degradation::IgnitionWear => self.health.ignition_wear = true,
            Degradation::IgnitionFailure => {
                if let Heater::GasBoiler(boiler) = &mut self.heater {
                    boiler.ignition_attempts += 3.0;
                }
                self.latch(FaultCategory::IgnitionFailure);
            }
            Degradation::Sensor(failure) => {
                self.health.sensor = Some(failure);
                self.latch(FaultCategory::SensorFault);
            }
            Degradation::RefrigerantLeak { charge_per_day } if !is_boiler => {
                self.health.charge_loss_per_s = per_day(charge_per_day);
            }
            Degradation::WaterLeak { bar_per_day } if is_boiler => {
                self.health.fill_loss_bar_per_s = per_day(bar_per_day);
            }
            Degradation::FouledFilter { flow_per_day } if !is_boiler => {
                self.health.fouling_per_s = per_day(flow_per_day);
            }
            Degradation::CirculationBlocked => {
                self.health.circulation_blocked = true;
                self.stagnant_return_c = self.return_now_c();
            }
            Degradation::ControllerOff => {
                self.health.controller_off = true;
                self.control(0.0);
            }
            Degradation::ControllerHang => {
                if self.health.hung.is_none() {
                    // The image the controller last wrote stays in its registers.
                    self.health.hung = Some(self.values());
                }
                self.control(0.0);
            }
            Degradation::BreakerTrip => {
                self.health.breaker_tripped = true;
                self.control(0.0);
            }
            Degradation::FanFailure if !is_boiler => self.health.fan_failed = true,
            Degradation::PartialRefrigerantLeak {
                charge_per_day,
                settles_at,
            } if !is_boiler => {
                self.health.charge_loss_per_s = per_day(charge_per_day);
                // It settles above the low-pressure switch: it never locks out.
                let above_switch = self.constants.low_charge_lockout + 0.02;
                self.health.charge_floor = if settles_at.is_finite() {
                    settles_at.clamp(above_switch, 1.0)
                } else {
                    1.0
                };
            }
            Degradation::SilentWaterLeak { bar_per_day } if is_boiler => {
                self.health.fill_loss_bar_per_s = per_day(bar_per_day);
                self.health.silent_low_pressure = true;
            }
            Degradation::CondensateFrozen => {
                if let Heater::GasBoiler(boiler) = &mut self.heater {
                    // The burner tries, the blocked siphon stops the fan's pressure switch, it
                    // gives up.
                    boiler.ignition_attempts += 2.0 + self.rng.index(3) as f64;
                    self.health.condensate_frozen = true;
                    self.control(0.0);
                }
            }
            Degradation::RefrigerantLeak { .. }
            | Degradation::WaterLeak { .. }
            | Degradation::FouledFilter { .. }
            | Degradation::FanFailure
            | Degradation::PartialRefrigerantLeak { .. }
            | Degradation::SilentWaterLeak { .. } => {}
        }
    }

    /// The technician's repair: clears the lockout and any protection trip, and restores the
    /// unit's health (refrigerant recharged, filter cleaned, circuit refilled, sensor and
    /// electrode replaced). Returns whether anything was wrong. Supply faults are not the
    /// technician's to clear.
    pub fn clear(&mut self) -> bool {
        let degraded = self.health != Health::default();
        let was_faulty = self.lockout.take().is_some() | self.trip.take().is_some() | degraded;
        self.recent_trips_s.clear();
        self.health = Health::default();
        self.high_limit_hold = false;
        if let Heater::GasBoiler(boiler) = &mut self.heater {
            boiler.cold_fill_bar = boiler.healthy_fill_bar;
        }
        self.control(0.0);
        was_faulty
    }

    /// The latched (lockout) fault category, if any: what was injected or what a degradation
    /// ended in.
    pub fn injected(&self) -> Option<FaultCategory> {
        self.lockout.map(|f| f.category)
    }

    fn shown_fault(&self) -> Option<ActiveFault> {
        self.lockout
            .or(self.trip.map(|t| t.fault))
            .or(self.supply_fault)
    }

    /// The fault the unit shows now (lockout, protection trip or supply fault) as an agent
    /// decodes it through the profile (a hung controller shows its frozen code).
    pub fn fault(&self) -> Option<Fault> {
        if let Some(frozen) = &self.health.hung {
            let code = frozen.get(v::FAULT_CODE).copied().unwrap_or(0.0);
            return (code > 0.0)
                .then(|| self.profile.fault(code as u32))
                .flatten();
        }
        self.shown_fault().and_then(|f| self.profile.fault(f.code))
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
            Heater::HeatPump(hp) => {
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
            Heater::GasBoiler(boiler) => {
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
}

#[cfg(test)]
mod tests;
