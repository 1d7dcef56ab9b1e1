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

mod boiler;
mod circuit;
mod control;
mod faults;
mod heat_pump;
mod house;
mod occupants;
mod physics;
mod protections;
mod sensors;
mod unit;

pub use crate::climate::{
    Climate, ColdWave, Weather, COLDEST_LOCAL_HOUR, LOCAL_UTC_OFFSET_S, WINTER_AMPLITUDE_C,
    WINTER_DAY_SPREAD_C, WINTER_MEAN_C,
};
pub use faults::{Degradation, SensorFailure};
pub use house::{House, HouseParams};
pub use occupants::{is_night, local_hour, WriteRefused, SETPOINT_RANGE_C};
pub use physics::{
    boiler_water_pressure_bar, charge_capacity_factor, charge_cop_factor, defrost_share,
    heat_pump_capacity_w, heat_pump_cop, BOILER_MAX_OUTPUT_W, BOILER_MIN_MODULATION,
    COOKING_GAIN_W, DISCHARGE_THROTTLE_C, DISCHARGE_TRIP_C, HEAT_PUMP_TRIP_DELTA_T_K,
    NIGHT_FROM_LOCAL_HOUR, NIGHT_TO_LOCAL_HOUR, OCCUPANT_GAIN_W, PROTECTION_TRIP_S, SOLAR_GAIN_W,
    STAGNANT_HEAT_SHARE, THERMOSTAT_BAND_K, WIND_LOSS_PER_M_S,
};
pub use unit::{
    brand_code, has_pressure_sensor, UnitConstants, BOILER_HIGH_LIMIT_RANGE_C, COP_FACTOR_RANGE,
    DISCHARGE_OFFSET_RANGE_K, GAS_MIN_IGNITION_RANGE_MBAR, HEAT_PUMP_HIGH_LIMIT_RANGE_C,
    HIGH_LIMIT_DIFFERENTIAL_RANGE_K, LOCKOUT_TRIPS_RANGE, LOCKOUT_WINDOW_EXTRA_RANGE_S,
    LOW_CHARGE_LOCKOUT_RANGE, LOW_PRESSURE_CUTOUT_RANGE_BAR, PRESSURE_COEFFICIENT_RANGE_BAR_PER_K,
    SENSOR_OPEN_RANGE_C, SENSOR_SHORT_RANGE_C,
};

#[cfg(test)]
mod tests;
