//! The scenario mix of `simulator bench winter`: a TOML file with the fault and trap rates, the
//! residents', technicians' and telemetry parameters, and optional scripted events. The mix and
//! the seed are the benchmark's inputs, so anyone can rerun a score card.
//!
//! Rates of household faults and traps are per 1000 devices of the kinds a fault applies to,
//! per day; supply faults are per village per day. Many household faults raise no code at all
//! ([`FaultKind::raises_code`]); `simulator/mixes/codeless.toml` is a mix where most do not. Every field has a documented default, so a
//! mix only names what it changes; unknown fields are errors that name file, line and column.
//! See `simulator/mixes/default.toml` for the default mix with the reasons behind its numbers.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::{diagnostics, DeviceKind, FaultCategory};

/// Why a mix file was refused.
#[derive(Debug, thiserror::Error)]
pub enum MixError {
    #[error("{path}: cannot be read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{place}: {message}")]
    Invalid { place: String, message: String },
}

/// A duration range `["10m", "2h"]`, drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl DurationRange {
    pub const fn new(min: Duration, max: Duration) -> DurationRange {
        DurationRange { min, max }
    }

    const fn minutes(min: u64, max: u64) -> DurationRange {
        DurationRange::new(Duration::from_secs(min * 60), Duration::from_secs(max * 60))
    }

    const fn hours(min: u64, max: u64) -> DurationRange {
        DurationRange::minutes(min * 60, max * 60)
    }

    /// Seconds drawn uniformly in the range with `unit` (a uniform number in `[0, 1)`).
    pub fn pick_s(&self, unit: f64) -> f64 {
        let (min, max) = (self.min.as_secs_f64(), self.max.as_secs_f64());
        min + (max - min) * unit.clamp(0.0, 1.0)
    }
}

impl<'de> Deserialize<'de> for DurationRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [min, max] = <[String; 2]>::deserialize(deserializer)?;
        let parse = |text: &str| {
            humantime_serde::re::humantime::parse_duration(text)
                .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
        };
        let (min, max) = (parse(&min)?, parse(&max)?);
        if min > max {
            return Err(serde::de::Error::custom(
                "the first duration must not be longer than the second",
            ));
        }
        Ok(DurationRange { min, max })
    }
}

impl Serialize for DurationRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let show = |d: Duration| humantime_serde::re::humantime::format_duration(d).to_string();
        [show(self.min), show(self.max)].serialize(serializer)
    }
}

/// A number range `[0.1, 0.3]`, drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ValueRange {
    pub min: f64,
    pub max: f64,
}

impl ValueRange {
    pub const fn new(min: f64, max: f64) -> ValueRange {
        ValueRange { min, max }
    }

    /// A value drawn uniformly in the range with `unit` (a uniform number in `[0, 1)`).
    pub fn pick(&self, unit: f64) -> f64 {
        self.min + (self.max - self.min) * unit.clamp(0.0, 1.0)
    }
}

impl<'de> Deserialize<'de> for ValueRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [min, max] = <[f64; 2]>::deserialize(deserializer)?;
        if !(min.is_finite() && max.is_finite()) || min > max {
            return Err(serde::de::Error::custom(
                "expected [low, high] with finite numbers and low <= high",
            ));
        }
        Ok(ValueRange { min, max })
    }
}

/// A local time of day `"06:30"` (Beijing time), in hours.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "String")]
pub struct TimeOfDay(pub f64);

impl From<TimeOfDay> for String {
    fn from(time: TimeOfDay) -> String {
        let minutes = (time.0 * 60.0).round() as u32;
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = text.split_once(':').and_then(|(h, m)| {
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then(|| f64::from(h) + f64::from(m) / 60.0)
        });
        parsed
            .map(TimeOfDay)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a time like 06:30")))
    }
}

/// A calendar date `"2026-01-05"`: the bench starts at 00:00 Beijing time that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct StartDate {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl StartDate {
    /// 00:00 Beijing time (UTC+8) of the date, in Unix seconds.
    pub fn unix_s(&self) -> i64 {
        days_from_civil(self.year, self.month, self.day) * 86_400 - 8 * 3600
    }
}

impl From<StartDate> for String {
    fn from(date: StartDate) -> String {
        format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
    }
}

impl<'de> Deserialize<'de> for StartDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut parts = text.splitn(3, '-');
        let parsed = (|| {
            let year: i32 = parts.next()?.parse().ok()?;
            let month: u32 = parts.next()?.parse().ok()?;
            let day: u32 = parts.next()?.parse().ok()?;
            let days_in_month = match month {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
                2 => 28,
                _ => return None,
            };
            ((2020..=2100).contains(&year) && (1..=days_in_month).contains(&day))
                .then_some(StartDate { year, month, day })
        })();
        parsed.ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a date like 2026-01-05 between 2020 and 2100"
            ))
        })
    }
}

/// Days from 1970-01-01 to a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let year = i64::from(year) - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

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

/// A sudden fault: its rate and the technician's repair time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SuddenSpec {
    /// Per 1000 applicable devices per day.
    pub rate: f64,
    /// Time on site to repair.
    pub repair: DurationRange,
}

/// The ignition failure: rate, wear period before the lockout, repair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IgnitionSpec {
    pub rate: f64,
    /// How long the electrode wears (more retries per start) before the lockout.
    pub precursor: DurationRange,
    pub repair: DurationRange,
}

/// A partial refrigerant loss: rate, how fast it leaks, where it settles, repair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PartialLossSpec {
    pub rate: f64,
    /// Share of the charge lost per day.
    pub speed: ValueRange,
    /// Share of the charge the unit keeps in the end (above its low-pressure switch).
    pub settles_at: ValueRange,
    pub repair: DurationRange,
}

/// A gradual fault: rate, how fast it progresses (per day) and the repair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GradualSpec {
    pub rate: f64,
    /// Progress per day: refrigerant charge share, bar of fill pressure, or filter flow share.
    pub speed: ValueRange,
    pub repair: DurationRange,
}

/// A village power outage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OutageSpec {
    /// Per village per day.
    pub rate: f64,
    pub duration: DurationRange,
}

/// A village gas pressure drop.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GasDropSpec {
    /// Per village with boilers per day.
    pub rate: f64,
    pub duration: DurationRange,
    /// Supply pressure during the drop, mbar (each boiler's gas valve has its own minimum,
    /// 11-15 mbar, so a shallow drop stops only some).
    pub pressure_mbar: ValueRange,
    /// Share of drops that sink gradually rather than at once.
    pub sinking_share: f64,
    /// How long a gradual drop takes to reach its pressure.
    pub sinking_over: DurationRange,
}

/// An edge box losing its network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BoxOfflineSpec {
    pub rate: f64,
    /// How long until someone restarts the box, if no technician comes first.
    pub duration: DurationRange,
    pub repair: DurationRange,
}

/// A resident away with the heating on frost protection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AwaySpec {
    pub rate: f64,
    pub duration: DurationRange,
    /// The frost-protection set point left on the thermostat, °C.
    pub setpoint_c: f64,
}

/// A brief Wi-Fi drop of an edge box.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct WifiDropSpec {
    pub rate: f64,
    pub duration: DurationRange,
}

/// A window opened for airing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AiringSpec {
    pub rate: f64,
    /// How long the window stays open.
    pub duration: DurationRange,
    /// How far the room air falls while it is open, K.
    pub drop_k: ValueRange,
}

/// The heating switched off for an afternoon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HeatingOffSpec {
    pub rate: f64,
    pub duration: DurationRange,
    /// The frost-minimum set point left on the thermostat, °C.
    pub setpoint_c: ValueRange,
}

/// A unit being commissioned.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CommissioningSpec {
    pub rate: f64,
    /// How long the installer works on it.
    pub duration: DurationRange,
}

fn default_box_repair() -> DurationRange {
    DurationRange::minutes(15, 30)
}
fn default_precursor() -> DurationRange {
    DurationRange::hours(0, 48)
}
fn default_away_setpoint() -> f64 {
    7.0
}

/// Household, supply and communication fault rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawFaultRates")]
pub struct FaultRates {
    pub lockout: SuddenSpec,
    pub ignition_failure: IgnitionSpec,
    pub flow_switch: SuddenSpec,
    pub sensor_open: SuddenSpec,
    pub sensor_short: SuddenSpec,
    pub refrigerant_leak: GradualSpec,
    pub water_leak: GradualSpec,
    pub fouled_filter: GradualSpec,
    pub power_outage: OutageSpec,
    pub gas_pressure_drop: GasDropSpec,
    pub box_offline: BoxOfflineSpec,
    pub pump_seized: SuddenSpec,
    pub controller_off: SuddenSpec,
    pub controller_hang: SuddenSpec,
    pub breaker_trip: SuddenSpec,
    pub fan_failure: SuddenSpec,
    pub refrigerant_loss_partial: PartialLossSpec,
    pub slow_water_leak_no_gauge: GradualSpec,
    pub condensate_frozen: SuddenSpec,
    pub valve_closed: SuddenSpec,
}

impl FaultRates {
    fn sudden(rate: f64, repair: DurationRange) -> SuddenSpec {
        SuddenSpec { rate, repair }
    }
    fn lockout() -> SuddenSpec {
        Self::sudden(1.0, DurationRange::minutes(30, 90))
    }
    fn ignition_failure() -> IgnitionSpec {
        IgnitionSpec {
            rate: 1.5,
            precursor: default_precursor(),
            repair: DurationRange::minutes(30, 60),
        }
    }
    fn flow_switch() -> SuddenSpec {
        Self::sudden(1.0, DurationRange::minutes(30, 90))
    }
    fn sensor_open() -> SuddenSpec {
        Self::sudden(0.4, DurationRange::minutes(20, 45))
    }
    fn sensor_short() -> SuddenSpec {
        Self::sudden(0.3, DurationRange::minutes(20, 45))
    }
    fn refrigerant_leak() -> GradualSpec {
        GradualSpec {
            rate: 0.8,
            speed: ValueRange::new(0.04, 0.10),
            repair: DurationRange::minutes(90, 180),
        }
    }
    fn water_leak() -> GradualSpec {
        GradualSpec {
            rate: 1.0,
            speed: ValueRange::new(0.10, 0.30),
            repair: DurationRange::minutes(45, 120),
        }
    }
    fn fouled_filter() -> GradualSpec {
        GradualSpec {
            rate: 0.8,
            speed: ValueRange::new(0.06, 0.15),
            repair: DurationRange::minutes(30, 60),
        }
    }
    fn power_outage() -> OutageSpec {
        OutageSpec {
            rate: 0.008,
            duration: DurationRange::hours(1, 6),
        }
    }
    fn gas_pressure_drop() -> GasDropSpec {
        GasDropSpec {
            rate: 0.005,
            duration: DurationRange::hours(2, 8),
            pressure_mbar: ValueRange::new(5.0, 14.0),
            sinking_share: 0.4,
            sinking_over: DurationRange::minutes(40, 80),
        }
    }
    fn box_offline() -> BoxOfflineSpec {
        BoxOfflineSpec {
            rate: 0.6,
            duration: DurationRange::hours(4, 36),
            repair: default_box_repair(),
        }
    }
    fn pump_seized() -> SuddenSpec {
        Self::sudden(0.0, DurationRange::minutes(45, 90))
    }
    fn controller_off() -> SuddenSpec {
        Self::sudden(0.0, DurationRange::minutes(30, 60))
    }
    fn controller_hang() -> SuddenSpec {
        Self::sudden(0.0, DurationRange::minutes(20, 45))
    }
    fn breaker_trip() -> SuddenSpec {
        Self::sudden(0.0, DurationRange::minutes(15, 45))
    }
    fn fan_failure() -> SuddenSpec {
        Self::sudden(0.0, DurationRange::minutes(60, 150))
    }
    fn refrigerant_loss_partial() -> PartialLossSpec {
        PartialLossSpec {
            rate: 0.0,
            speed: ValueRange::new(0.03, 0.08),
            settles_at: ValueRange::new(0.60, 0.75),
            repair: DurationRange::minutes(90, 180),
        }
    }
    fn slow_water_leak_no_gauge() -> GradualSpec {
        GradualSpec {
            rate: 0.0,
            speed: ValueRange::new(0.10, 0.30),
            repair: DurationRange::minutes(45, 120),
        }
    }
    fn condensate_frozen() -> SuddenSpec {
        Self::sudden(0.0, DurationRange::minutes(30, 60))
    }
    fn valve_closed() -> SuddenSpec {
        Self::sudden(0.0, DurationRange::minutes(15, 30))
    }

    /// The repair time of a household fault kind (supply faults are not repaired by
    /// technicians: `None`).
    pub fn repair(&self, kind: FaultKind) -> Option<DurationRange> {
        Some(match kind {
            FaultKind::Lockout => self.lockout.repair,
            FaultKind::IgnitionFailure => self.ignition_failure.repair,
            FaultKind::FlowSwitch => self.flow_switch.repair,
            FaultKind::SensorOpen => self.sensor_open.repair,
            FaultKind::SensorShort => self.sensor_short.repair,
            FaultKind::RefrigerantLeak => self.refrigerant_leak.repair,
            FaultKind::WaterLeak => self.water_leak.repair,
            FaultKind::FouledFilter => self.fouled_filter.repair,
            FaultKind::BoxOffline => self.box_offline.repair,
            FaultKind::PumpSeized => self.pump_seized.repair,
            FaultKind::ControllerOff => self.controller_off.repair,
            FaultKind::ControllerHang => self.controller_hang.repair,
            FaultKind::BreakerTrip => self.breaker_trip.repair,
            FaultKind::FanFailure => self.fan_failure.repair,
            FaultKind::RefrigerantLossPartial => self.refrigerant_loss_partial.repair,
            FaultKind::SlowWaterLeakNoGauge => self.slow_water_leak_no_gauge.repair,
            FaultKind::CondensateFrozen => self.condensate_frozen.repair,
            FaultKind::ValveClosed => self.valve_closed.repair,
            FaultKind::PowerOutage | FaultKind::GasPressureDrop => return None,
        })
    }

    /// The rate of a fault kind (per 1000 applicable devices per day, or per village per day).
    pub fn rate(&self, kind: FaultKind) -> f64 {
        match kind {
            FaultKind::Lockout => self.lockout.rate,
            FaultKind::IgnitionFailure => self.ignition_failure.rate,
            FaultKind::FlowSwitch => self.flow_switch.rate,
            FaultKind::SensorOpen => self.sensor_open.rate,
            FaultKind::SensorShort => self.sensor_short.rate,
            FaultKind::RefrigerantLeak => self.refrigerant_leak.rate,
            FaultKind::WaterLeak => self.water_leak.rate,
            FaultKind::FouledFilter => self.fouled_filter.rate,
            FaultKind::PowerOutage => self.power_outage.rate,
            FaultKind::GasPressureDrop => self.gas_pressure_drop.rate,
            FaultKind::BoxOffline => self.box_offline.rate,
            FaultKind::PumpSeized => self.pump_seized.rate,
            FaultKind::ControllerOff => self.controller_off.rate,
            FaultKind::ControllerHang => self.controller_hang.rate,
            FaultKind::BreakerTrip => self.breaker_trip.rate,
            FaultKind::FanFailure => self.fan_failure.rate,
            FaultKind::RefrigerantLossPartial => self.refrigerant_loss_partial.rate,
            FaultKind::SlowWaterLeakNoGauge => self.slow_water_leak_no_gauge.rate,
            FaultKind::CondensateFrozen => self.condensate_frozen.rate,
            FaultKind::ValveClosed => self.valve_closed.rate,
        }
    }
}

impl Default for FaultRates {
    fn default() -> FaultRates {
        FaultRates {
            lockout: FaultRates::lockout(),
            ignition_failure: FaultRates::ignition_failure(),
            flow_switch: FaultRates::flow_switch(),
            sensor_open: FaultRates::sensor_open(),
            sensor_short: FaultRates::sensor_short(),
            refrigerant_leak: FaultRates::refrigerant_leak(),
            water_leak: FaultRates::water_leak(),
            fouled_filter: FaultRates::fouled_filter(),
            power_outage: FaultRates::power_outage(),
            gas_pressure_drop: FaultRates::gas_pressure_drop(),
            box_offline: FaultRates::box_offline(),
            pump_seized: FaultRates::pump_seized(),
            controller_off: FaultRates::controller_off(),
            controller_hang: FaultRates::controller_hang(),
            breaker_trip: FaultRates::breaker_trip(),
            fan_failure: FaultRates::fan_failure(),
            refrigerant_loss_partial: FaultRates::refrigerant_loss_partial(),
            slow_water_leak_no_gauge: FaultRates::slow_water_leak_no_gauge(),
            condensate_frozen: FaultRates::condensate_frozen(),
            valve_closed: FaultRates::valve_closed(),
        }
    }
}

/// Trap rates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawTrapRates")]
pub struct TrapRates {
    pub resident_away: AwaySpec,
    pub wifi_drop: WifiDropSpec,
    pub window_airing: AiringSpec,
    pub heating_off: HeatingOffSpec,
    pub commissioning: CommissioningSpec,
}

impl TrapRates {
    fn resident_away() -> AwaySpec {
        AwaySpec {
            rate: 1.5,
            duration: DurationRange::hours(24, 96),
            setpoint_c: default_away_setpoint(),
        }
    }
    fn wifi_drop() -> WifiDropSpec {
        WifiDropSpec {
            rate: 10.0,
            duration: DurationRange::minutes(5, 25),
        }
    }
    fn window_airing() -> AiringSpec {
        AiringSpec {
            rate: 10.0,
            duration: DurationRange::minutes(10, 30),
            drop_k: ValueRange::new(2.0, 5.0),
        }
    }
    fn heating_off() -> HeatingOffSpec {
        HeatingOffSpec {
            rate: 3.0,
            duration: DurationRange::hours(3, 6),
            setpoint_c: ValueRange::new(5.0, 7.0),
        }
    }
    fn commissioning() -> CommissioningSpec {
        CommissioningSpec {
            rate: 0.5,
            duration: DurationRange::hours(2, 6),
        }
    }

    /// The rate of an event trap (0 for the fleet habits).
    pub fn rate(&self, kind: TrapKind) -> f64 {
        match kind {
            TrapKind::ResidentAway => self.resident_away.rate,
            TrapKind::WifiDrop => self.wifi_drop.rate,
            TrapKind::WindowAiring => self.window_airing.rate,
            TrapKind::HeatingOff => self.heating_off.rate,
            TrapKind::Commissioning => self.commissioning.rate,
            TrapKind::NightSetback | TrapKind::Defrost => 0.0,
        }
    }

    /// How long an event trap lasts (a fleet habit: the away range, unused).
    pub fn duration(&self, kind: TrapKind) -> DurationRange {
        match kind {
            TrapKind::WifiDrop => self.wifi_drop.duration,
            TrapKind::WindowAiring => self.window_airing.duration,
            TrapKind::HeatingOff => self.heating_off.duration,
            TrapKind::Commissioning => self.commissioning.duration,
            TrapKind::ResidentAway | TrapKind::NightSetback | TrapKind::Defrost => {
                self.resident_away.duration
            }
        }
    }
}

impl Default for TrapRates {
    fn default() -> TrapRates {
        TrapRates {
            resident_away: TrapRates::resident_away(),
            wifi_drop: TrapRates::wifi_drop(),
            window_airing: TrapRates::window_airing(),
            heating_off: TrapRates::heating_off(),
            commissioning: TrapRates::commissioning(),
        }
    }
}

/// A fault or trap table as written: every field optional, missing ones keep the default.
macro_rules! partial {
    ($partial:ident => $spec:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $partial {
            $(#[serde(default)] $field: Option<$ty>,)*
        }

        impl $partial {
            fn over(self, default: $spec) -> $spec {
                $spec { $($field: self.$field.unwrap_or(default.$field),)* }
            }
        }
    };
}

partial!(PartialSudden => SuddenSpec { rate: f64, repair: DurationRange });
partial!(PartialIgnition => IgnitionSpec { rate: f64, precursor: DurationRange, repair: DurationRange });
partial!(PartialGradual => GradualSpec { rate: f64, speed: ValueRange, repair: DurationRange });
partial!(PartialOutage => OutageSpec { rate: f64, duration: DurationRange });
partial!(PartialGasDrop => GasDropSpec { rate: f64, duration: DurationRange, pressure_mbar: ValueRange, sinking_share: f64, sinking_over: DurationRange });
partial!(PartialLoss => PartialLossSpec { rate: f64, speed: ValueRange, settles_at: ValueRange, repair: DurationRange });
partial!(PartialAiring => AiringSpec { rate: f64, duration: DurationRange, drop_k: ValueRange });
partial!(PartialHeatingOff => HeatingOffSpec { rate: f64, duration: DurationRange, setpoint_c: ValueRange });
partial!(PartialCommissioning => CommissioningSpec { rate: f64, duration: DurationRange });
partial!(PartialBoxOffline => BoxOfflineSpec { rate: f64, duration: DurationRange, repair: DurationRange });
partial!(PartialAway => AwaySpec { rate: f64, duration: DurationRange, setpoint_c: f64 });
partial!(PartialWifiDrop => WifiDropSpec { rate: f64, duration: DurationRange });

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaultRates {
    #[serde(default)]
    lockout: Option<PartialSudden>,
    #[serde(default)]
    ignition_failure: Option<PartialIgnition>,
    #[serde(default)]
    flow_switch: Option<PartialSudden>,
    #[serde(default)]
    sensor_open: Option<PartialSudden>,
    #[serde(default)]
    sensor_short: Option<PartialSudden>,
    #[serde(default)]
    refrigerant_leak: Option<PartialGradual>,
    #[serde(default)]
    water_leak: Option<PartialGradual>,
    #[serde(default)]
    fouled_filter: Option<PartialGradual>,
    #[serde(default)]
    power_outage: Option<PartialOutage>,
    #[serde(default)]
    gas_pressure_drop: Option<PartialGasDrop>,
    #[serde(default)]
    box_offline: Option<PartialBoxOffline>,
    #[serde(default)]
    pump_seized: Option<PartialSudden>,
    #[serde(default)]
    controller_off: Option<PartialSudden>,
    #[serde(default)]
    controller_hang: Option<PartialSudden>,
    #[serde(default)]
    breaker_trip: Option<PartialSudden>,
    #[serde(default)]
    fan_failure: Option<PartialSudden>,
    #[serde(default)]
    refrigerant_loss_partial: Option<PartialLoss>,
    #[serde(default)]
    slow_water_leak_no_gauge: Option<PartialGradual>,
    #[serde(default)]
    condensate_frozen: Option<PartialSudden>,
    #[serde(default)]
    valve_closed: Option<PartialSudden>,
}

impl From<RawFaultRates> for FaultRates {
    fn from(raw: RawFaultRates) -> FaultRates {
        let d = FaultRates::default();
        macro_rules! merge {
            ($($field:ident),*) => {
                FaultRates { $($field: match raw.$field { Some(p) => p.over(d.$field), None => d.$field },)* }
            };
        }
        merge!(
            lockout,
            ignition_failure,
            flow_switch,
            sensor_open,
            sensor_short,
            refrigerant_leak,
            water_leak,
            fouled_filter,
            power_outage,
            gas_pressure_drop,
            box_offline,
            pump_seized,
            controller_off,
            controller_hang,
            breaker_trip,
            fan_failure,
            refrigerant_loss_partial,
            slow_water_leak_no_gauge,
            condensate_frozen,
            valve_closed
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrapRates {
    #[serde(default)]
    resident_away: Option<PartialAway>,
    #[serde(default)]
    wifi_drop: Option<PartialWifiDrop>,
    #[serde(default)]
    window_airing: Option<PartialAiring>,
    #[serde(default)]
    heating_off: Option<PartialHeatingOff>,
    #[serde(default)]
    commissioning: Option<PartialCommissioning>,
}

impl From<RawTrapRates> for TrapRates {
    fn from(raw: RawTrapRates) -> TrapRates {
        let d = TrapRates::default();
        TrapRates {
            resident_away: raw
                .resident_away
                .map_or(d.resident_away, |p| p.over(d.resident_away)),
            wifi_drop: raw.wifi_drop.map_or(d.wifi_drop, |p| p.over(d.wifi_drop)),
            window_airing: raw
                .window_airing
                .map_or(d.window_airing, |p| p.over(d.window_airing)),
            heating_off: raw
                .heating_off
                .map_or(d.heating_off, |p| p.over(d.heating_off)),
            commissioning: raw
                .commissioning
                .map_or(d.commissioning, |p| p.over(d.commissioning)),
        }
    }
}

/// What the virtual edge boxes publish.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryMix {
    /// How often each box reads its heater and publishes, in simulated time.
    #[serde(default = "TelemetryMix::interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Boxes keep readings while their network is down and send them on reconnect (the
    /// designed edge agent's disk queue); a box without power keeps nothing.
    #[serde(default = "TelemetryMix::store_and_forward")]
    pub store_and_forward: bool,
}

impl TelemetryMix {
    fn interval() -> Duration {
        Duration::from_secs(60)
    }
    fn store_and_forward() -> bool {
        true
    }
}

impl Default for TelemetryMix {
    fn default() -> TelemetryMix {
        TelemetryMix {
            interval: TelemetryMix::interval(),
            store_and_forward: TelemetryMix::store_and_forward(),
        }
    }
}

/// Fleet-wide habits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetMix {
    /// Share of households that lower the set point at night (22:00-06:00).
    #[serde(default = "FleetMix::night_setback_share")]
    pub night_setback_share: f64,
    /// Depth of the set-back, K.
    #[serde(default = "FleetMix::night_setback_k")]
    pub night_setback_k: ValueRange,
    /// Nobody sets back below this, °C.
    #[serde(default = "FleetMix::min_setback_setpoint_c")]
    pub min_setback_setpoint_c: f64,
}

impl FleetMix {
    fn night_setback_share() -> f64 {
        0.35
    }
    fn night_setback_k() -> ValueRange {
        ValueRange::new(2.0, 3.0)
    }
    fn min_setback_setpoint_c() -> f64 {
        17.5
    }
}

impl Default for FleetMix {
    fn default() -> FleetMix {
        FleetMix {
            night_setback_share: FleetMix::night_setback_share(),
            night_setback_k: FleetMix::night_setback_k(),
            min_setback_setpoint_c: FleetMix::min_setback_setpoint_c(),
        }
    }
}

/// Weights of the intake channels a resident calls through.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelWeights {
    #[serde(default)]
    pub hotline_12345: f64,
    #[serde(default)]
    pub centre_hotline: f64,
    #[serde(default)]
    pub app: f64,
    #[serde(default)]
    pub sms_wechat: f64,
    #[serde(default)]
    pub walk_in: f64,
}

impl ChannelWeights {
    /// `(channel name, weight)` in a fixed order.
    pub fn entries(&self) -> [(&'static str, f64); 5] {
        [
            ("hotline_12345", self.hotline_12345),
            ("centre_hotline", self.centre_hotline),
            ("app", self.app),
            ("sms_wechat", self.sms_wechat),
            ("walk_in", self.walk_in),
        ]
    }
}

impl Default for ChannelWeights {
    fn default() -> ChannelWeights {
        ChannelWeights {
            hotline_12345: 0.45,
            centre_hotline: 0.25,
            app: 0.15,
            sms_wechat: 0.10,
            walk_in: 0.05,
        }
    }
}

/// How residents feel the cold and complain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidentMix {
    /// A resident notices discomfort when the room falls below this, °C.
    #[serde(default = "ResidentMix::comfort_c")]
    pub comfort_c: f64,
    /// The same for an elderly person living alone, °C.
    #[serde(default = "ResidentMix::vulnerable_comfort_c")]
    pub vulnerable_comfort_c: f64,
    /// How long discomfort lasts before the resident calls.
    #[serde(default = "ResidentMix::patience")]
    pub patience: DurationRange,
    /// The same for a vulnerable household (family and caretakers call sooner).
    #[serde(default = "ResidentMix::vulnerable_patience")]
    pub vulnerable_patience: DurationRange,
    /// Chance that a resident never calls about a fault.
    #[serde(default = "ResidentMix::never_calls")]
    pub never_calls: f64,
    /// The same for a vulnerable household.
    #[serde(default = "ResidentMix::vulnerable_never_calls")]
    pub vulnerable_never_calls: f64,
    /// Residents sleep from this local time...
    #[serde(default = "ResidentMix::sleep_from")]
    pub sleep_from: TimeOfDay,
    /// ...to this one, and call after waking if the cold persists.
    #[serde(default = "ResidentMix::sleep_to")]
    pub sleep_to: TimeOfDay,
    /// Delay after waking before the call.
    #[serde(default = "ResidentMix::wake_up_delay")]
    pub wake_up_delay: DurationRange,
    /// Share of homes that call fast (an elderly person at home all day, family present),
    /// whatever their other patience.
    #[serde(default = "ResidentMix::fast_caller_share")]
    pub fast_caller_share: f64,
    /// How long a fast caller waits before calling.
    #[serde(default = "ResidentMix::fast_patience")]
    pub fast_patience: DurationRange,
    /// Share of homes that call in the night once the room is really cold rather than wait for
    /// the morning.
    #[serde(default = "ResidentMix::night_call_share")]
    pub night_call_share: f64,
    /// The room temperature below which those homes call at night, °C (drawn per home).
    #[serde(default = "ResidentMix::night_call_below_c")]
    pub night_call_below_c: ValueRange,
    /// Family or caretakers of vulnerable households call at night too, once the room is below
    /// the resident's comfort and their patience is over.
    #[serde(default = "ResidentMix::vulnerable_night_calls")]
    pub vulnerable_night_calls: bool,
    #[serde(default)]
    pub channels: ChannelWeights,
}

impl ResidentMix {
    fn comfort_c() -> f64 {
        16.0
    }
    fn vulnerable_comfort_c() -> f64 {
        17.0
    }
    fn patience() -> DurationRange {
        DurationRange::minutes(60, 180)
    }
    fn vulnerable_patience() -> DurationRange {
        DurationRange::minutes(20, 60)
    }
    fn never_calls() -> f64 {
        0.10
    }
    fn vulnerable_never_calls() -> f64 {
        0.05
    }
    fn sleep_from() -> TimeOfDay {
        TimeOfDay(23.0)
    }
    fn sleep_to() -> TimeOfDay {
        TimeOfDay(6.5)
    }
    fn wake_up_delay() -> DurationRange {
        DurationRange::minutes(0, 60)
    }
    fn fast_caller_share() -> f64 {
        0.33
    }
    fn fast_patience() -> DurationRange {
        DurationRange::minutes(10, 40)
    }
    fn night_call_share() -> f64 {
        0.3
    }
    fn night_call_below_c() -> ValueRange {
        ValueRange::new(12.0, 13.0)
    }
    fn vulnerable_night_calls() -> bool {
        true
    }
}

impl Default for ResidentMix {
    fn default() -> ResidentMix {
        ResidentMix {
            comfort_c: ResidentMix::comfort_c(),
            vulnerable_comfort_c: ResidentMix::vulnerable_comfort_c(),
            patience: ResidentMix::patience(),
            vulnerable_patience: ResidentMix::vulnerable_patience(),
            never_calls: ResidentMix::never_calls(),
            vulnerable_never_calls: ResidentMix::vulnerable_never_calls(),
            sleep_from: ResidentMix::sleep_from(),
            sleep_to: ResidentMix::sleep_to(),
            wake_up_delay: ResidentMix::wake_up_delay(),
            fast_caller_share: ResidentMix::fast_caller_share(),
            fast_patience: ResidentMix::fast_patience(),
            night_call_share: ResidentMix::night_call_share(),
            night_call_below_c: ResidentMix::night_call_below_c(),
            vulnerable_night_calls: ResidentMix::vulnerable_night_calls(),
            channels: ChannelWeights::default(),
        }
    }
}

/// The technician model: teams per township, dispatch, travel and visit times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TechnicianMix {
    /// One technician per this many households of a township, at least one per township
    /// (the scheme asks for at least 1 per 500).
    #[serde(default = "TechnicianMix::households_per_technician")]
    pub households_per_technician: usize,
    /// From order to dispatch when a technician is free.
    #[serde(default = "TechnicianMix::operator_delay")]
    pub operator_delay: DurationRange,
    /// Drive to the house.
    #[serde(default = "TechnicianMix::travel")]
    pub travel: DurationRange,
    /// Extra drive in the mountain townships (colder ones, far from the service points).
    #[serde(default = "TechnicianMix::mountain_extra_travel")]
    pub mountain_extra_travel: DurationRange,
    /// A visit that finds nothing to repair (false order, supply fault) takes this long.
    #[serde(default = "TechnicianMix::check_visit", with = "humantime_serde")]
    pub check_visit: Duration,
}

impl TechnicianMix {
    fn households_per_technician() -> usize {
        500
    }
    fn operator_delay() -> DurationRange {
        DurationRange::minutes(2, 8)
    }
    fn travel() -> DurationRange {
        DurationRange::minutes(20, 70)
    }
    fn mountain_extra_travel() -> DurationRange {
        DurationRange::minutes(10, 50)
    }
    fn check_visit() -> Duration {
        Duration::from_secs(20 * 60)
    }
}

impl Default for TechnicianMix {
    fn default() -> TechnicianMix {
        TechnicianMix {
            households_per_technician: TechnicianMix::households_per_technician(),
            operator_delay: TechnicianMix::operator_delay(),
            travel: TechnicianMix::travel(),
            mountain_extra_travel: TechnicianMix::mountain_extra_travel(),
            check_visit: TechnicianMix::check_visit(),
        }
    }
}

/// What a scripted event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum EventKind {
    Fault(FaultKind),
    Trap(TrapKind),
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Fault(kind) => kind.as_str(),
            EventKind::Trap(kind) => kind.as_str(),
        }
    }
}

/// One scripted event: placed exactly, in addition to the random ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedEvent {
    /// A fault kind, or a trap (`resident_away`, `wifi_drop`, `window_airing`, `heating_off`,
    /// `commissioning`).
    pub kind: EventKind,
    /// Index of the household in the fleet (0-based); a supply fault hits its village.
    pub household: usize,
    /// When, after the start of the run.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// How long, for supply and communication faults and traps (default: the range's middle).
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// Progress per day of a gradual fault (default: the range's middle).
    #[serde(default)]
    pub speed: Option<f64>,
    /// The lockout's category (default: the kind's first lockout category).
    #[serde(default)]
    pub category: Option<FaultCategory>,
}

/// A whole scenario mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mix {
    /// A name for the score card.
    #[serde(default = "Mix::default_name")]
    pub name: String,
    /// First simulated day; the run starts at 00:00 Beijing time.
    #[serde(default = "Mix::default_start")]
    pub start: StartDate,
    #[serde(default)]
    pub telemetry: TelemetryMix,
    #[serde(default)]
    pub fleet: FleetMix,
    #[serde(default)]
    pub residents: ResidentMix,
    #[serde(default)]
    pub technicians: TechnicianMix,
    #[serde(default)]
    pub faults: FaultRates,
    #[serde(default)]
    pub traps: TrapRates,
    /// Share of random household faults and traps placed on a household that already has an
    /// event, overlapping it in time (a trap during a fault, two faults at once).
    #[serde(default = "Mix::default_overlap_share")]
    pub overlap_share: f64,
    /// Scripted events.
    #[serde(default, rename = "event")]
    pub events: Vec<ScriptedEvent>,
}

impl Mix {
    fn default_name() -> String {
        "unnamed".to_owned()
    }
    fn default_overlap_share() -> f64 {
        0.1
    }
    fn default_start() -> StartDate {
        StartDate {
            year: 2026,
            month: 1,
            day: 5,
        }
    }

    /// The shipped default mix (`simulator/mixes/default.toml`).
    pub fn default_mix() -> Result<Mix, MixError> {
        Mix::parse(
            include_str!("../mixes/default.toml"),
            "simulator/mixes/default.toml",
        )
    }

    /// Reads and validates a mix file.
    pub fn load(path: &Path) -> Result<Mix, MixError> {
        let text = std::fs::read_to_string(path).map_err(|source| MixError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Mix::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a mix from TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Mix, MixError> {
        let mix: Mix = toml::from_str(text).map_err(|e| {
            let (line, column) = diagnostics::line_col(text, e.span().map_or(0, |s| s.start));
            MixError::Invalid {
                place: format!("{origin}:{line}:{column}"),
                message: e.message().to_owned(),
            }
        })?;
        mix.validate(text, origin)?;
        Ok(mix)
    }

    fn validate(&self, text: &str, origin: &str) -> Result<(), MixError> {
        let invalid = |field: &str, message: String| MixError::Invalid {
            place: format!(
                "{} field `{field}`",
                diagnostics::place(origin, text, field)
            ),
            message,
        };
        let share = |field: &str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    format!("{value} is not a share between 0 and 1"),
                ))
            }
        };
        let interval = self.telemetry.interval;
        if interval < Duration::from_secs(10) || interval > Duration::from_secs(600) {
            return Err(invalid(
                "telemetry.interval",
                "must be between 10s and 10m".into(),
            ));
        }
        if interval.as_millis() % 10_000 != 0 {
            return Err(invalid(
                "telemetry.interval",
                "must be a whole multiple of the 10 s model step".into(),
            ));
        }
        share("fleet.night_setback_share", self.fleet.night_setback_share)?;
        share("residents.never_calls", self.residents.never_calls)?;
        share(
            "residents.vulnerable_never_calls",
            self.residents.vulnerable_never_calls,
        )?;
        share(
            "residents.fast_caller_share",
            self.residents.fast_caller_share,
        )?;
        share(
            "residents.night_call_share",
            self.residents.night_call_share,
        )?;
        share("overlap_share", self.overlap_share)?;
        share(
            "faults.gas_pressure_drop.sinking_share",
            self.faults.gas_pressure_drop.sinking_share,
        )?;
        let settles = self.faults.refrigerant_loss_partial.settles_at;
        if settles.min < 0.6 || settles.max > 1.0 {
            return Err(invalid(
                "faults.refrigerant_loss_partial.settles_at",
                "must lie within [0.6, 1.0]: a partial loss stays above the low-pressure switch"
                    .into(),
            ));
        }
        let weights = self.residents.channels.entries();
        if weights.iter().any(|(_, w)| !(w.is_finite() && *w >= 0.0))
            || weights.iter().map(|(_, w)| w).sum::<f64>() <= 0.0
        {
            return Err(invalid(
                "residents.channels",
                "weights must be >= 0 and at least one above 0".into(),
            ));
        }
        if self.technicians.households_per_technician == 0 {
            return Err(invalid(
                "technicians.households_per_technician",
                "must be at least 1".into(),
            ));
        }
        for kind in FaultKind::ALL {
            let rate = self.faults.rate(kind);
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(invalid(
                    &format!("faults.{}.rate", kind.as_str()),
                    format!("{rate} is not a rate >= 0"),
                ));
            }
        }
        for kind in TrapKind::EVENTS {
            let rate = self.traps.rate(kind);
            if !(rate.is_finite() && rate >= 0.0) {
                return Err(invalid(
                    &format!("traps.{}.rate", kind.as_str()),
                    format!("{rate} is not a rate >= 0"),
                ));
            }
        }
        for (index, event) in self.events.iter().enumerate() {
            if matches!(
                event.kind,
                EventKind::Trap(TrapKind::NightSetback | TrapKind::Defrost)
            ) {
                return Err(invalid(
                    &format!("event[{index}].kind"),
                    "night_setback and defrost are fleet habits, not events".into(),
                ));
            }
            if event.speed.is_some_and(|s| !(s.is_finite() && s >= 0.0)) {
                return Err(invalid(
                    &format!("event[{index}].speed"),
                    "must be a number >= 0".into(),
                ));
            }
        }
        Ok(())
    }
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            name: Mix::default_name(),
            start: Mix::default_start(),
            telemetry: TelemetryMix::default(),
            fleet: FleetMix::default(),
            residents: ResidentMix::default(),
            technicians: TechnicianMix::default(),
            faults: FaultRates::default(),
            traps: TrapRates::default(),
            overlap_share: Mix::default_overlap_share(),
            events: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_default_mix_parses_and_matches_the_built_in_defaults() {
        let mix = Mix::default_mix().expect("shipped default mix");
        assert_eq!(mix.name, "default");
        let built_in = Mix::default();
        assert_eq!(mix.faults, built_in.faults);
        assert_eq!(mix.traps, built_in.traps);
        assert_eq!(mix.residents, built_in.residents);
        assert_eq!(mix.technicians, built_in.technicians);
        assert_eq!(mix.telemetry, built_in.telemetry);
        assert_eq!(mix.fleet, built_in.fleet);
        assert_eq!(mix.overlap_share, built_in.overlap_share);
        assert!(mix.events.is_empty());
    }

    #[test]
    fn every_new_fault_kind_raises_no_code_and_has_a_class_rate_and_repair() {
        let codeless = [
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
        let rates = FaultRates::default();
        let codeless_mix = Mix::parse(
            include_str!("../mixes/codeless.toml"),
            "simulator/mixes/codeless.toml",
        )
        .expect("the codeless mix parses");
        for kind in FaultKind::ALL {
            let household = matches!(kind.class(), FaultClass::Sudden | FaultClass::Gradual);
            assert_eq!(
                kind.raises_code(),
                household && !codeless.contains(&kind),
                "{kind:?}"
            );
            if household {
                // The default mix keeps the code-less kinds at 0; the codeless mix has them all.
                assert_eq!(rates.rate(kind) > 0.0, kind.raises_code(), "{kind:?}");
                assert!(codeless_mix.faults.rate(kind) > 0.0, "{kind:?}");
                assert!(rates.repair(kind).is_some(), "{kind:?}");
            }
            let back: FaultKind =
                serde_json::from_value(serde_json::json!(kind.as_str())).expect("name");
            assert_eq!(back, kind);
        }
        assert_eq!(
            FaultKind::RefrigerantLossPartial.class(),
            FaultClass::Gradual
        );
        assert_eq!(FaultKind::SlowWaterLeakNoGauge.class(), FaultClass::Gradual);
        assert!(!FaultKind::FanFailure.applies_to(DeviceKind::GasBoiler));
        assert!(!FaultKind::CondensateFrozen.applies_to(DeviceKind::HeatPump));
        assert!(FaultKind::PumpSeized.applies_to(DeviceKind::GasBoiler));
        assert!(FaultKind::ValveClosed.applies_to(DeviceKind::HeatPump));
        assert_eq!(
            FaultKind::SlowWaterLeakNoGauge.needs_pressure_sensor(),
            Some(false)
        );
        assert_eq!(FaultKind::WaterLeak.needs_pressure_sensor(), Some(true));
    }

    #[test]
    fn the_codeless_mix_parses_and_most_of_its_expected_household_faults_raise_no_code() {
        let mix = Mix::parse(
            include_str!("../mixes/codeless.toml"),
            "simulator/mixes/codeless.toml",
        )
        .expect("codeless mix");
        assert_eq!(mix.name, "codeless");
        // Rate-weighted over a fleet of 700 heat pumps and 300 boilers, a third of the boilers
        // without a pressure sensor (the shipped profiles).
        let devices = |kind: FaultKind| {
            let boilers = match kind.needs_pressure_sensor() {
                Some(true) => 200.0,
                Some(false) => 100.0,
                None => 300.0,
            };
            f64::from(u8::from(kind.applies_to(DeviceKind::HeatPump))) * 700.0
                + f64::from(u8::from(kind.applies_to(DeviceKind::GasBoiler))) * boilers
        };
        let (mut coded, mut codeless) = (0.0, 0.0);
        for kind in FaultKind::ALL {
            if !matches!(kind.class(), FaultClass::Sudden | FaultClass::Gradual) {
                continue;
            }
            let expected = mix.faults.rate(kind) / 1000.0 * devices(kind);
            if kind.raises_code() {
                coded += expected;
            } else {
                codeless += expected;
            }
        }
        let share = codeless / (coded + codeless);
        assert!(share >= 0.6, "code-less share {share:.2}");
        assert!(
            coded > 0.0,
            "the codeless mix still has coded faults to compare"
        );
        // The other shipped mixes parse too.
        for (text, file) in [
            (include_str!("../mixes/traps.toml"), "traps.toml"),
            (
                include_str!("../mixes/village_outages.toml"),
                "village_outages.toml",
            ),
        ] {
            let mix = Mix::parse(text, file).expect(file);
            for kind in FaultKind::ALL.into_iter().filter(|k| !k.is_supply()) {
                assert_eq!(mix.faults.rate(kind), 0.0, "{file}: {kind:?}");
            }
        }
    }

    #[test]
    fn new_resident_trap_and_overlap_fields_parse_and_are_checked() {
        let mix = Mix::parse(
            "overlap_share = 0.3\n[residents]\nfast_caller_share = 0.5\nfast_patience = [\"5m\", \"15m\"]\nnight_call_below_c = [11.0, 12.0]\n[traps.window_airing]\nrate = 4.0\ndrop_k = [3.0, 4.0]\n[faults.gas_pressure_drop]\nsinking_share = 1.0\n",
            "m.toml",
        )
        .expect("mix");
        assert_eq!(mix.overlap_share, 0.3);
        assert_eq!(mix.residents.fast_caller_share, 0.5);
        assert_eq!(
            mix.residents.night_call_below_c,
            ValueRange::new(11.0, 12.0)
        );
        assert_eq!(mix.traps.window_airing.rate, 4.0);
        assert_eq!(
            mix.traps.window_airing.duration,
            TrapRates::default().window_airing.duration
        );
        assert_eq!(mix.faults.gas_pressure_drop.sinking_share, 1.0);
        let error = Mix::parse("[residents]\nfast_caller_share = 2.0\n", "m.toml")
            .expect_err("share")
            .to_string();
        assert!(error.contains("residents.fast_caller_share"), "{error}");
        let error = Mix::parse("overlap_share = -0.1\n", "m.toml")
            .expect_err("share")
            .to_string();
        assert!(error.contains("m.toml:1"), "{error}");
        let error = Mix::parse(
            "[faults.refrigerant_loss_partial]\nsettles_at = [0.3, 0.5]\n",
            "m.toml",
        )
        .expect_err("below the switch")
        .to_string();
        assert!(error.contains("m.toml:2"), "{error}");
        let error = Mix::parse("[traps.heating_off]\nsetpiont_c = [5.0, 6.0]\n", "m.toml")
            .expect_err("typo")
            .to_string();
        assert!(error.starts_with("m.toml:2:1"), "{error}");
    }

    #[test]
    fn an_empty_mix_gets_every_default() {
        let mix = Mix::parse("", "empty.toml").expect("defaults");
        assert_eq!(mix, Mix::default());
        assert_eq!(mix.start.unix_s(), 1_767_542_400, "2026-01-05 00:00 +08:00");
    }

    #[test]
    fn unknown_fields_and_bad_values_name_line_and_field() {
        let error = Mix::parse(
            "[faults.lockout]\nrate = 1.0\nrepiar = [\"1m\", \"2m\"]\n",
            "m.toml",
        )
        .expect_err("typo")
        .to_string();
        assert!(error.starts_with("m.toml:3:1"), "{error}");
        assert!(error.contains("repiar"), "{error}");
        let error = Mix::parse("[fleet]\nnight_setback_share = 1.5\n", "m.toml")
            .expect_err("share")
            .to_string();
        assert!(
            error.contains("m.toml:2:23 field `fleet.night_setback_share`"),
            "{error}"
        );
        let error = Mix::parse(
            "[faults.power_outage]\nduration = [\"6h\", \"1h\"]\n",
            "m.toml",
        )
        .expect_err("range")
        .to_string();
        assert!(error.contains("m.toml:2"), "{error}");
        assert!(Mix::parse("start = \"2026-02-30\"\n", "m.toml").is_err());
        assert!(Mix::parse("[telemetry]\ninterval = \"45s\"\n", "m.toml").is_err());
    }

    #[test]
    fn scripted_events_name_a_fault_or_a_trap() {
        let mix = Mix::parse(
            "[[event]]\nkind = \"power_outage\"\nhousehold = 3\nat = \"2h\"\nduration = \"3h\"\n\n[[event]]\nkind = \"resident_away\"\nhousehold = 1\nat = \"0s\"\n",
            "m.toml",
        )
        .expect("events");
        assert_eq!(mix.events.len(), 2);
        assert_eq!(mix.events[0].kind, EventKind::Fault(FaultKind::PowerOutage));
        assert_eq!(mix.events[0].duration, Some(Duration::from_secs(3 * 3600)));
        assert_eq!(mix.events[1].kind, EventKind::Trap(TrapKind::ResidentAway));
        assert!(Mix::parse(
            "[[event]]\nkind = \"defrost\"\nhousehold = 1\nat = \"0s\"\n",
            "m.toml"
        )
        .is_err());
    }

    #[test]
    fn civil_dates_convert_to_unix_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 1, 5), 20_458);
    }
}
