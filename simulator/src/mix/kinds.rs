//! What can happen to a household, a village or a box: the fault kinds with their classes and
//! what each applies to, the traps, and the lockout categories a random lockout draws from.

use serde::{Deserialize, Serialize};
use wire::{DeviceKind, FaultCategory};

/// What a household fault or a supply or communication fault is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A protection locks the unit out with a brand code (compressor over-current, discharge
    /// overheat, defrost failure; fan/flue, overheat, flame loss).
    Lockout,
    /// A boiler's ignition electrode wears (more retries), then the burner fails to light.
    IgnitionFailure,
    /// A heat pump's water-flow switch opens: protection trips, the third in an hour locks out.
    FlowSwitch,
    /// The flow sensor's wire breaks: it reads very cold and the unit stops.
    SensorOpen,
    /// The flow sensor shorts: it reads very hot and the unit stops.
    SensorShort,
    /// A heat pump slowly loses refrigerant: capacity and COP fall, then a low-pressure lockout.
    RefrigerantLeak,
    /// A boiler's sealed circuit leaks: pressure falls day by day, then a low-pressure lockout.
    WaterLeak,
    /// A heat pump's Y-filter clogs: the flow-return difference rises, then high-pressure trips.
    FouledFilter,
    /// A whole village loses mains power: heaters and edge boxes go dark.
    PowerOutage,
    /// The gas pressure of a village drops (a frozen regulator): boilers cannot light.
    GasPressureDrop,
    /// One edge box loses its network (SIM, router); the heater keeps working.
    BoxOffline,
    /// The circulation pump seizes: the unit cycles on its high-limit thermostat, almost no heat
    /// reaches the house. No code.
    PumpSeized,
    /// The controller or room thermostat fails: the heater stops, the set point keeps its value.
    /// No code.
    ControllerOff,
    /// The controller hangs: every register freezes while the heater stops. No code.
    ControllerHang,
    /// The heater's circuit breaker trips: its controller does not answer, the box (on its own
    /// supply) publishes nothing for it but stays connected. No code.
    BreakerTrip,
    /// A heat pump's outdoor fan fails or its coil ices over: back-to-back defrosts, low
    /// capacity. No code.
    FanFailure,
    /// A heat pump loses part of its refrigerant and settles above the low-pressure switch: low
    /// capacity and COP for good, never a code.
    RefrigerantLossPartial,
    /// A boiler without a pressure sensor leaks from its sealed circuit: below its pressure
    /// switch it just stops. No code.
    SlowWaterLeakNoGauge,
    /// A boiler's condensate drain freezes on a cold night: the burner tries, fails and stays
    /// off. No code.
    CondensateFrozen,
    /// An isolation valve left closed after a service visit: no circulation, the unit cycles on
    /// its high limit. No code.
    ValveClosed,
}

/// The four families of faults the score card reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultClass {
    Sudden,
    Gradual,
    Supply,
    Communication,
}

impl FaultKind {
    pub const ALL: [FaultKind; 20] = [
        FaultKind::Lockout,
        FaultKind::IgnitionFailure,
        FaultKind::FlowSwitch,
        FaultKind::SensorOpen,
        FaultKind::SensorShort,
        FaultKind::RefrigerantLeak,
        FaultKind::WaterLeak,
        FaultKind::FouledFilter,
        FaultKind::PowerOutage,
        FaultKind::GasPressureDrop,
        FaultKind::BoxOffline,
        FaultKind::PumpSeized,
        FaultKind::ControllerOff,
        FaultKind::ControllerHang,
        FaultKind::BreakerTrip,
        FaultKind::FanFailure,
        FaultKind::RefrigerantLossPartial,
        FaultKind::SlowWaterLeakNoGauge,
        FaultKind::CondensateFrozen,
        FaultKind::ValveClosed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Lockout => "lockout",
            FaultKind::IgnitionFailure => "ignition_failure",
            FaultKind::FlowSwitch => "flow_switch",
            FaultKind::SensorOpen => "sensor_open",
            FaultKind::SensorShort => "sensor_short",
            FaultKind::RefrigerantLeak => "refrigerant_leak",
            FaultKind::WaterLeak => "water_leak",
            FaultKind::FouledFilter => "fouled_filter",
            FaultKind::PowerOutage => "power_outage",
            FaultKind::GasPressureDrop => "gas_pressure_drop",
            FaultKind::BoxOffline => "box_offline",
            FaultKind::PumpSeized => "pump_seized",
            FaultKind::ControllerOff => "controller_off",
            FaultKind::ControllerHang => "controller_hang",
            FaultKind::BreakerTrip => "breaker_trip",
            FaultKind::FanFailure => "fan_failure",
            FaultKind::RefrigerantLossPartial => "refrigerant_loss_partial",
            FaultKind::SlowWaterLeakNoGauge => "slow_water_leak_no_gauge",
            FaultKind::CondensateFrozen => "condensate_frozen",
            FaultKind::ValveClosed => "valve_closed",
        }
    }

    pub fn class(self) -> FaultClass {
        match self {
            FaultKind::Lockout
            | FaultKind::IgnitionFailure
            | FaultKind::FlowSwitch
            | FaultKind::SensorOpen
            | FaultKind::SensorShort
            | FaultKind::PumpSeized
            | FaultKind::ControllerOff
            | FaultKind::ControllerHang
            | FaultKind::BreakerTrip
            | FaultKind::FanFailure
            | FaultKind::CondensateFrozen
            | FaultKind::ValveClosed => FaultClass::Sudden,
            FaultKind::RefrigerantLeak
            | FaultKind::WaterLeak
            | FaultKind::FouledFilter
            | FaultKind::RefrigerantLossPartial
            | FaultKind::SlowWaterLeakNoGauge => FaultClass::Gradual,
            FaultKind::PowerOutage | FaultKind::GasPressureDrop => FaultClass::Supply,
            FaultKind::BoxOffline => FaultClass::Communication,
        }
    }

    /// Whether the fault can happen to a device of this kind (supply faults are per village).
    pub fn applies_to(self, kind: DeviceKind) -> bool {
        match self {
            FaultKind::IgnitionFailure
            | FaultKind::WaterLeak
            | FaultKind::SlowWaterLeakNoGauge
            | FaultKind::CondensateFrozen => kind == DeviceKind::GasBoiler,
            FaultKind::FlowSwitch
            | FaultKind::RefrigerantLeak
            | FaultKind::FouledFilter
            | FaultKind::FanFailure
            | FaultKind::RefrigerantLossPartial => kind == DeviceKind::HeatPump,
            _ => true,
        }
    }

    /// Whether the fault needs a unit that reports its circuit's water pressure (`Some(true)`:
    /// a leak that ends in a low-pressure code), one that does not (`Some(false)`: the leak
    /// nobody can see), or does not care (`None`).
    pub fn needs_pressure_sensor(self) -> Option<bool> {
        match self {
            FaultKind::WaterLeak => Some(true),
            FaultKind::SlowWaterLeakNoGauge => Some(false),
            _ => None,
        }
    }

    /// Whether the unit shows a fault code while it suffers this fault (at once or in the
    /// end): the score card reports faults that raise no code apart, because only detectors
    /// that read the physics can catch them. Supply and communication faults are about the
    /// village or the box, not the unit's controller: false.
    /// The code-less household faults (a seized pump, a dead or hung controller, a tripped
    /// breaker, a failed fan, a partial refrigerant loss, a leak without a gauge, a frozen
    /// condensate drain, a closed valve): false.
    pub fn raises_code(self) -> bool {
        matches!(self.class(), FaultClass::Sudden | FaultClass::Gradual)
            && !matches!(
                self,
                FaultKind::PumpSeized
                    | FaultKind::ControllerOff
                    | FaultKind::ControllerHang
                    | FaultKind::BreakerTrip
                    | FaultKind::FanFailure
                    | FaultKind::RefrigerantLossPartial
                    | FaultKind::SlowWaterLeakNoGauge
                    | FaultKind::CondensateFrozen
                    | FaultKind::ValveClosed
            )
    }

    /// True for faults that hit a village, not one household.
    pub fn is_supply(self) -> bool {
        self.class() == FaultClass::Supply
    }
}

/// Traps: situations that look like trouble and must not open orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrapKind {
    /// The resident leaves for days with the thermostat on frost protection.
    ResidentAway,
    /// The box's Wi-Fi drops for 5-25 minutes (some longer than an offline rule's patience).
    WifiDrop,
    /// Households with a night set-back (a fleet share; every night).
    NightSetback,
    /// Heat-pump defrost cycles (every heat pump, in frosting weather).
    Defrost,
    /// A window opened for airing: the room air falls 2-5 K in 10-30 minutes while the heater
    /// works against it.
    WindowAiring,
    /// The resident switches the heating off for an afternoon (set point to the 5-7 °C frost
    /// minimum), then back on.
    HeatingOff,
    /// A unit being commissioned: for its first hours the installer starts and stops it and air
    /// in the circuit makes flow and return read oddly.
    Commissioning,
}

impl TrapKind {
    /// The traps a mix places as events (night set-back and defrost are fleet habits).
    pub const EVENTS: [TrapKind; 5] = [
        TrapKind::ResidentAway,
        TrapKind::WifiDrop,
        TrapKind::WindowAiring,
        TrapKind::HeatingOff,
        TrapKind::Commissioning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrapKind::ResidentAway => "resident_away",
            TrapKind::WifiDrop => "wifi_drop",
            TrapKind::NightSetback => "night_setback",
            TrapKind::Defrost => "defrost",
            TrapKind::WindowAiring => "window_airing",
            TrapKind::HeatingOff => "heating_off",
            TrapKind::Commissioning => "commissioning",
        }
    }

    /// True for traps the resident causes or watches (away, airing, heating off,
    /// commissioning): the cold they bring is no reason to call.
    pub fn resident_knows(self) -> bool {
        matches!(
            self,
            TrapKind::ResidentAway
                | TrapKind::WindowAiring
                | TrapKind::HeatingOff
                | TrapKind::Commissioning
        )
    }
}

/// Lockout categories a random `lockout` fault draws from, by device kind.
pub fn lockout_categories(kind: DeviceKind) -> &'static [FaultCategory] {
    match kind {
        DeviceKind::HeatPump => &[
            FaultCategory::CompressorOvercurrent,
            FaultCategory::DischargeOverheat,
            FaultCategory::DefrostFailure,
        ],
        DeviceKind::GasBoiler => &[
            FaultCategory::FanFlue,
            FaultCategory::Overheat,
            FaultCategory::FlameLoss,
        ],
    }
}
