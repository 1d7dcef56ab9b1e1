//! Faults: the physical degradations [`House::start`] begins, the unit's health they wear
//! down, the codes it shows (lockout, trip, supply) and the technician's repair.

use std::collections::BTreeMap;

use wire::values as v;
use wire::{Fault, FaultCategory};

use super::house::{Heater, House};
use super::physics::MIN_CHARGE;

/// How a temperature sensor fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorFailure {
    /// Broken wire: the NTC reads very cold (the brand's [`UnitConstants::sensor_open_c`](super::UnitConstants::sensor_open_c)).
    Open,
    /// Short circuit: the NTC reads very hot (the brand's [`UnitConstants::sensor_short_c`](super::UnitConstants::sensor_short_c)).
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
pub(super) struct ActiveFault {
    pub(super) category: FaultCategory,
    pub(super) code: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Trip {
    pub(super) fault: ActiveFault,
    pub(super) left_s: f64,
}

/// The unit's physical condition; healthy by default.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Health {
    pub(super) refrigerant_charge: f64,
    pub(super) charge_loss_per_s: f64,
    pub(super) filter_flow: f64,
    pub(super) fouling_per_s: f64,
    pub(super) fill_loss_bar_per_s: f64,
    pub(super) flow_switch_faulty: bool,
    /// Running seconds until the faulty flow switch trips next.
    pub(super) flow_trip_in_s: f64,
    pub(super) ignition_wear: bool,
    pub(super) sensor: Option<SensorFailure>,
    /// A leak stops at this share of charge.
    pub(super) charge_floor: f64,
    pub(super) circulation_blocked: bool,
    pub(super) controller_off: bool,
    /// The register image a hung controller keeps showing.
    pub(super) hung: Option<BTreeMap<&'static str, f64>>,
    pub(super) breaker_tripped: bool,
    pub(super) fan_failed: bool,
    /// Low water pressure stops the boiler without a code (no pressure sensor).
    pub(super) silent_low_pressure: bool,
    /// The boiler stopped without a code (its pressure switch opened).
    pub(super) silent_stop: bool,
    pub(super) condensate_frozen: bool,
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
    pub(super) fn silently_stopped(&self) -> bool {
        self.controller_off
            || self.hung.is_some()
            || self.breaker_tripped
            || self.silent_stop
            || self.condensate_frozen
    }
}

impl House {
    /// Injects a fault: the brand's code for `category` (see [`brand_code`](super::brand_code)) appears in the
    /// fault register and the heater stops, so the house cools. Returns the code.
    pub fn inject(&mut self, category: FaultCategory) -> u32 {
        self.latch(category)
    }

    /// Starts a physical fault (see [`Degradation`]). Faults that do not apply to the unit's
    /// kind (a refrigerant leak in a boiler) change nothing.
    pub fn start(&mut self, degradation: Degradation) {
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
            | Degradation::SilentWaterLeak { .. } => self.start_wear(degradation),
        }
    }

    /// The degradations of one kind of unit only, most of them progressing per day: a heat
    /// pump's leaks, filter and fan, a boiler's circuit leaks (on the other kind: nothing).
    fn start_wear(&mut self, degradation: Degradation) {
        let per_day = |x: f64| {
            if x.is_finite() {
                x.max(0.0) / 86_400.0
            } else {
                0.0
            }
        };
        let is_boiler = matches!(self.heater, Heater::GasBoiler(_));
        match degradation {
            Degradation::RefrigerantLeak { charge_per_day } if !is_boiler => {
                self.health.charge_loss_per_s = per_day(charge_per_day);
            }
            Degradation::WaterLeak { bar_per_day } if is_boiler => {
                self.health.fill_loss_bar_per_s = per_day(bar_per_day);
            }
            Degradation::FouledFilter { flow_per_day } if !is_boiler => {
                self.health.fouling_per_s = per_day(flow_per_day);
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
            _ => {}
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

    pub(super) fn shown_fault(&self) -> Option<ActiveFault> {
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
}
