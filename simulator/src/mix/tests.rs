//! Tests of the mix: the shipped mixes parse, defaults fill every field, errors name line and
//! field, scripted events and civil dates.

use std::time::Duration;

use wire::DeviceKind;

use super::*;
use wire::calendar::days_from_civil;

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
        include_str!("../../mixes/codeless.toml"),
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
        include_str!("../../mixes/codeless.toml"),
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
        (include_str!("../../mixes/traps.toml"), "traps.toml"),
        (
            include_str!("../../mixes/village_outages.toml"),
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
