//! One unit's own constants, drawn per unit or per brand from realistic ranges (so no rule
//! constant equals them by construction), and what its profile says about it (brand codes, a
//! pressure sensor).

use edge_agent::profile::Profile;
use wire::values as v;
use wire::{DeviceKind, FaultCategory};

use crate::rng::Rng;

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

/// The brand code a profile uses for a fault category: the category's first code, else the
/// code of `Other`, else 1.
pub fn brand_code(profile: &Profile, category: FaultCategory) -> u32 {
    profile
        .code_for(category)
        .or_else(|| profile.code_for(FaultCategory::Other))
        .unwrap_or(1)
}
