//! The `[faults]` and `[traps]` tables as written: every field optional, each one given laid
//! over the default spec (so a mix only names what it changes; unknown fields are errors).

use serde::Deserialize;

use super::faults::{
    BoxOfflineSpec, FaultRates, GasDropSpec, GradualSpec, IgnitionSpec, OutageSpec,
    PartialLossSpec, SuddenSpec,
};
use super::ranges::{DurationRange, ValueRange};
use super::traps::{
    AiringSpec, AwaySpec, CommissioningSpec, HeatingOffSpec, TrapRates, WifiDropSpec,
};

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
pub(super) struct RawFaultRates {
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
pub(super) struct RawTrapRates {
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
