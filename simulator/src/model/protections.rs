//! The controller's protections: trips that restart by themselves, and the lockout a brand's
//! count of trips within its window (or a limit far out) latches.

use wire::FaultCategory;

use super::faults::{ActiveFault, Trip};
use super::house::{Heater, House};
use super::physics::{
    boiler_water_pressure_bar, DISCHARGE_TRIP_C, HEAT_PUMP_FLOW_W_PER_K, HEAT_PUMP_TRIP_DELTA_T_K,
    PROTECTION_TRIP_S,
};
use super::unit::brand_code;

impl House {
    /// The controller's protections: trips, and lockouts when the limits are far out.
    pub(super) fn protections(&mut self, dt_s: f64) {
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
    pub(super) fn latch(&mut self, category: FaultCategory) -> u32 {
        let code = brand_code(&self.profile, category);
        self.lockout = Some(ActiveFault { category, code });
        self.trip = None;
        // The protection acts at once: no heat from this moment on.
        self.control(0.0);
        code
    }
}
