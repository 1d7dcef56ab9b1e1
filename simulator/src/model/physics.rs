//! The physics every house shares: thermostat, gains and losses, protection limits, the
//! catalogue curves of heat pumps and boilers (capacity, COP, defrost, circuit pressure,
//! refrigerant), the water circuits' constants and the first-order lag they all follow.

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
/// Lowest refrigerant charge a leak reaches (the rest stays in the oil), share.
pub(super) const MIN_CHARGE: f64 = 0.2;
/// Lowest share of nominal water flow a fouled filter leaves.
pub(super) const MIN_FILTER_FLOW: f64 = 0.15;

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
/// [`PRESSURE_COEFFICIENT_RANGE_BAR_PER_K`](super::PRESSURE_COEFFICIENT_RANGE_BAR_PER_K)).
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
pub(super) fn refrigerant_pressure_bar(saturation_c: f64) -> f64 {
    if saturation_c < 0.0 {
        8.1 * (0.035 * saturation_c).exp()
    } else {
        8.1 * (0.0275 * saturation_c).exp()
    }
}

/// Water flow through the heat-pump circuit times the specific heat of water, W/K (0.33 kg/s).
pub(super) const HEAT_PUMP_FLOW_W_PER_K: f64 = 1400.0;
/// Water flow through the boiler circuit times the specific heat of water, W/K (0.35 kg/s).
pub(super) const BOILER_FLOW_W_PER_K: f64 = 1465.0;
/// Largest burner output of a wall-hung boiler, W.
pub const BOILER_MAX_OUTPUT_W: f64 = 24_000.0;
/// Smallest burner modulation; below it the burner cycles on and off.
pub const BOILER_MIN_MODULATION: f64 = 0.2;
/// Proportional gain of the boiler's room-temperature controller, W/K.
pub(super) const BOILER_ROOM_GAIN_W_PER_K: f64 = 1500.0;
/// Most of its running time a healthy heat pump spends defrosting, even on the worst day.
pub(super) const MAX_HEALTHY_DEFROST_SHARE: f64 = 0.2;
/// With its outdoor fan dead (or its coil iced over) a heat pump defrosts this share of its
/// running time, back to back, whenever it is below this outdoor temperature...
pub(super) const FAN_FAILED_DEFROST_SHARE: f64 = 0.45;
/// ...which is this, °C.
pub(super) const FAN_FAILED_ICING_BELOW_C: f64 = 6.0;
/// Share of capacity a heat pump keeps with its outdoor fan dead (natural convection only).
pub(super) const FAN_FAILED_CAPACITY: f64 = 0.4;
/// Share of COP it keeps.
pub(super) const FAN_FAILED_COP: f64 = 0.65;
/// The installer sizes a heat pump for this indoor-outdoor difference, K...
pub(super) const HEAT_PUMP_DESIGN_DIFFERENCE_K: f64 = 42.0;
/// ...with this margin: 15 % for windy nights and 13 % for the capacity defrosting takes on
/// humid days (cold-climate installers derate the nameplate for both).
pub(super) const HEAT_PUMP_SIZING_MARGIN: f64 = 1.3;
/// Supply voltage times power factor, for the compressor current, V.
pub(super) const SUPPLY_VOLT_AMPERE_PER_W: f64 = 220.0 * 0.92;

/// First-order lag: moves `value` toward `target` with time constant `tau_s` over `dt_s`.
pub(super) fn approach(value: f64, target: f64, tau_s: f64, dt_s: f64) -> f64 {
    value + (target - value) * (1.0 - (-dt_s / tau_s).exp())
}

/// Weather-compensated leaving-water temperature of a heat pump: 35 °C at 7 °C outside, 45 °C
/// at -20 °C.
pub(super) fn heat_pump_flow_target_c(outdoor_c: f64) -> f64 {
    35.0 + (7.0 - outdoor_c).clamp(0.0, 27.0) * 10.0 / 27.0
}
