//! The `[faults]` table: one spec per fault kind (its rate, repair time and how it
//! progresses), with the documented defaults.

use serde::{Deserialize, Serialize};

use super::kinds::FaultKind;
use super::overrides::RawFaultRates;
use super::ranges::{DurationRange, ValueRange};

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

fn default_box_repair() -> DurationRange {
    DurationRange::minutes(15, 30)
}
fn default_precursor() -> DurationRange {
    DurationRange::hours(0, 48)
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
