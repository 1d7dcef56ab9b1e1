//! Tests of the household model: physical sanity (cooling time constant, COP against outdoor
//! temperature, boiler pressure against water temperature, defrost share, set-back) and that
//! every fault moves the telemetry it should.

use super::*;
use crate::fleet::Building;

fn profile(kind: DeviceKind) -> Arc<Profile> {
    let file = match kind {
        DeviceKind::HeatPump => "aurora-ashp.toml",
        DeviceKind::GasBoiler => "huanre-boiler.toml",
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../profiles")
        .join(file);
    Arc::new(Profile::load(&path).expect("shipped profile"))
}

/// 2026-01-15 00:00 Beijing time.
const START: f64 = 1_768_406_400.0;

fn house(kind: DeviceKind, building: Building, climate: &Climate) -> House {
    let params = HouseParams {
        kind,
        heat_loss_w_per_k: building.heat_loss_w_per_k(),
        thermal_capacity_j_per_k: building.thermal_capacity_j_per_k(),
        setpoint_c: 20.0,
        outdoor_offset_c: 0.0,
        seed: 99,
    };
    House::new(params, profile(kind), climate, START)
}

/// Steps `house` for `hours` in 10 s steps, calling `each` after every step.
fn run(house: &mut House, climate: &Climate, hours: f64, mut each: impl FnMut(&mut House)) {
    let steps = (hours * 360.0).round() as u64;
    for _ in 0..steps {
        house.step(10.0, climate);
        each(house);
    }
}

fn cop(values: &BTreeMap<&'static str, f64>) -> f64 {
    values[v::HEAT_OUTPUT_W] / values[v::ELECTRIC_POWER_W]
}

#[test]
fn an_unheated_house_cools_toward_outdoor_with_time_constant_c_over_ua() {
    let climate = Climate::constant(-10.0);
    for kind in [DeviceKind::HeatPump, DeviceKind::GasBoiler] {
        let mut house = house(kind, Building::OldBrick, &climate);
        house.inject(FaultCategory::SensorFault);
        assert!(!house.heating());
        let start_c = house.indoor_temp_c();
        let tau = house.time_constant_s();
        house.advance_to(house.now_unix_s() + tau, 1.0, &climate);
        let covered = (start_c - house.indoor_temp_c()) / (start_c - (-10.0));
        let expected = 1.0 - (-1.0f64).exp();
        assert!(
            (covered - expected).abs() < 0.01,
            "{kind:?}: covered {covered:.4} of the gap after one time constant, expected {expected:.4}"
        );
    }
}

#[test]
fn wind_makes_an_unheated_house_cool_faster() {
    let calm = Climate::constant(-10.0);
    let windy = Climate::constant_with_wind(-10.0, 8.0);
    let cooled = |climate: &Climate| {
        let mut house = house(DeviceKind::GasBoiler, Building::OldBrick, climate);
        house.inject(FaultCategory::IgnitionFailure);
        let start = house.indoor_temp_c();
        house.advance_to(house.now_unix_s() + 6.0 * 3600.0, 10.0, climate);
        start - house.indoor_temp_c()
    };
    let (calm_drop, windy_drop) = (cooled(&calm), cooled(&windy));
    // 8 m/s raises the loss by 16 %: the first hours' drop grows by about as much.
    assert!(
        windy_drop > calm_drop * 1.12 && windy_drop < calm_drop * 1.2,
        "calm {calm_drop:.2} K, windy {windy_drop:.2} K"
    );
}

#[test]
fn a_heated_house_holds_its_set_point_within_one_kelvin_through_winter_days() {
    let climate = Climate::yanqing_winter(2026);
    for kind in [DeviceKind::HeatPump, DeviceKind::GasBoiler] {
        for building in [
            Building::OldBrick,
            Building::Renovated,
            Building::LargeCourtyard,
        ] {
            let mut house = house(kind, building, &climate);
            let (mut coldest, mut warmest) = (f64::MAX, f64::MIN);
            run(&mut house, &climate, 72.0, |h| {
                coldest = coldest.min(h.indoor_temp_c());
                warmest = warmest.max(h.indoor_temp_c());
            });
            assert!(
                coldest >= 19.0 && warmest <= 21.0,
                "{kind:?} {building:?}: indoor ranged {coldest:.2}..{warmest:.2} °C"
            );
        }
    }
}

#[test]
fn a_healthy_heat_pump_keeps_an_old_house_warm_on_a_windy_minus_twenty_night() {
    let climate = Climate::constant_with_wind(-20.0, 6.0);
    for building in [Building::OldBrick, Building::LargeCourtyard] {
        let mut house = house(DeviceKind::HeatPump, building, &climate);
        let mut coldest = f64::MAX;
        run(&mut house, &climate, 12.0, |h| {
            coldest = coldest.min(h.indoor_temp_c())
        });
        assert!(coldest > 19.0, "{building:?}: {coldest:.2} °C");
        assert_eq!(house.trips_total(), 0, "a healthy unit never trips");
    }
}

#[test]
fn heat_pump_cop_and_capacity_fall_as_outdoor_temperature_falls() {
    assert!((heat_pump_cop(7.0) - 3.5).abs() < 1e-9);
    assert!((heat_pump_cop(-20.0) - 1.6).abs() < 1e-9);
    assert!((heat_pump_capacity_w(-20.0) - 5500.0).abs() < 1e-9);
    let mut last = f64::MAX;
    for t in (-25..=15).rev() {
        let cop = heat_pump_cop(f64::from(t));
        assert!(cop < last || t > 14, "COP must fall: {t} °C gives {cop}");
        last = cop;
    }
    // And the running model shows it: heat over electric power at mild and cold weather.
    let cop_at = |outdoor: f64| {
        let climate = Climate::constant(outdoor);
        let mut house = house(DeviceKind::HeatPump, Building::OldBrick, &climate);
        house.indoor_c = 18.0; // cold enough that the thermostat calls for heat
        house.step(1.0, &climate);
        cop(&house.values())
    };
    let (mild, cold) = (cop_at(6.0), cop_at(-15.0));
    assert!(
        mild > cold + 1.0,
        "COP {mild:.2} at 6 °C vs {cold:.2} at -15 °C"
    );
}

#[test]
fn boiler_water_pressure_rises_with_water_temperature() {
    assert!(boiler_water_pressure_bar(1.3, 60.0) > boiler_water_pressure_bar(1.3, 20.0));
    let climate = Climate::constant(-8.0);
    let mut house = house(DeviceKind::GasBoiler, Building::OldBrick, &climate);
    house.advance_to(house.now_unix_s() + 3600.0, 1.0, &climate);
    let hot = house.values();
    house.inject(FaultCategory::IgnitionFailure);
    house.advance_to(house.now_unix_s() + 6.0 * 3600.0, 1.0, &climate);
    let cold = house.values();
    assert!(
        hot[v::FLOW_TEMP_C] > cold[v::FLOW_TEMP_C] + 20.0,
        "the circuit cools without the burner"
    );
    assert!(
        hot[v::WATER_PRESSURE_BAR] > cold[v::WATER_PRESSURE_BAR] + 0.15,
        "{} bar hot vs {} bar cold",
        hot[v::WATER_PRESSURE_BAR],
        cold[v::WATER_PRESSURE_BAR]
    );
    assert!((1.2..=1.9).contains(&hot[v::WATER_PRESSURE_BAR]));
}

#[test]
fn an_injected_fault_shows_the_brand_code_and_clearing_resumes_heating() {
    let climate = Climate::constant(-12.0);
    let mut house = house(DeviceKind::HeatPump, Building::Renovated, &climate);
    let code = house.inject(FaultCategory::WaterFlow);
    assert_eq!(code, 1, "Aurora's water-flow code is E1");
    let values = house.values();
    assert_eq!(values[v::FAULT_CODE], 1.0);
    assert_eq!(values[v::RUNNING], 0.0);
    assert_eq!(values[v::HEAT_OUTPUT_W], 0.0);
    assert_eq!(
        house.fault().map(|f| f.category),
        Some(FaultCategory::WaterFlow)
    );
    // Aurora has no ignition-failure code and no `other` code: fall back to 1.
    assert_eq!(
        brand_code(house.profile(), FaultCategory::IgnitionFailure),
        1
    );

    house.advance_to(house.now_unix_s() + 3.0 * 3600.0, 1.0, &climate);
    assert!(house.indoor_temp_c() < 19.0, "the house cooled");
    assert!(house.clear());
    house.step(1.0, &climate);
    assert!(
        house.heating(),
        "the thermostat calls for heat after the repair"
    );
    assert_eq!(house.values()[v::FAULT_CODE], 0.0);
}

#[test]
fn heat_pumps_defrost_in_frosting_weather_only_and_briefly() {
    for (outdoor, expect_defrost) in [(-2.0, true), (-15.0, false)] {
        let climate = Climate::constant(outdoor);
        let mut house = house(DeviceKind::HeatPump, Building::LargeCourtyard, &climate);
        let (mut running_s, mut defrost_s) = (0.0, 0.0);
        for _ in 0..(24 * 3600) {
            house.step(1.0, &climate);
            let values = house.values();
            running_s += values[v::RUNNING];
            defrost_s += values[v::DEFROST_ACTIVE];
        }
        if expect_defrost {
            let share = defrost_s / running_s;
            assert!((0.03..0.15).contains(&share), "defrost share {share:.3}");
            assert!(house.defrost_cycles() > 5);
        } else {
            assert_eq!(defrost_s, 0.0);
        }
        assert!(house.fault().is_none(), "defrost is no fault");
    }
}

#[test]
fn boilers_count_an_ignition_per_burner_start() {
    let climate = Climate::constant(0.0);
    let mut house = house(DeviceKind::GasBoiler, Building::Renovated, &climate);
    let before = house.values()[v::IGNITION_ATTEMPTS];
    let mut starts = 0.0;
    let mut was_on = house.heating();
    for _ in 0..(12 * 3600) {
        house.step(1.0, &climate);
        if house.heating() && !was_on {
            starts += 1.0;
        }
        was_on = house.heating();
    }
    let after = house.values()[v::IGNITION_ATTEMPTS];
    assert!(
        starts >= 3.0,
        "a small load makes the burner cycle: {starts} starts"
    );
    assert!(after - before >= starts && after - before <= starts * 1.5 + 1.0);
}

#[test]
fn set_point_writes_are_bounded() {
    let climate = Climate::constant(-5.0);
    let mut house = house(DeviceKind::GasBoiler, Building::OldBrick, &climate);
    assert!(house.write(v::SETPOINT_C, 22.5).is_ok());
    assert_eq!(house.setpoint_c(), 22.5);
    assert!(matches!(
        house.write(v::SETPOINT_C, 80.0),
        Err(WriteRefused::OutOfRange { .. })
    ));
    assert!(matches!(
        house.write(v::FAULT_CODE, 0.0),
        Err(WriteRefused::NotWritable(_))
    ));
}

#[test]
fn night_set_back_lowers_the_set_point_at_night_only_and_the_room_follows() {
    let climate = Climate::constant(-8.0);
    let mut house = house(DeviceKind::HeatPump, Building::Renovated, &climate);
    house.set_night_setback(2.5);
    // START is midnight local: night.
    assert_eq!(house.setpoint_c(), 17.5);
    let mut coldest = f64::MAX;
    run(&mut house, &climate, 5.5, |h| {
        coldest = coldest.min(h.indoor_temp_c())
    });
    assert!(coldest > 16.9 && coldest < 18.5, "night low {coldest:.2}");
    // 08:00: day set point again, and the room is back near it by 10:00.
    run(&mut house, &climate, 4.5, |_| {});
    assert_eq!(house.setpoint_c(), 20.0);
    assert!(house.indoor_temp_c() > 19.0, "{:.2}", house.indoor_temp_c());
    assert!(house.fault().is_none(), "a set-back is no fault");
}

#[test]
fn a_resident_away_leaves_frost_protection_and_the_room_settles_near_it() {
    let climate = Climate::constant(-10.0);
    let mut house = house(DeviceKind::GasBoiler, Building::OldBrick, &climate);
    house.set_away(Some(7.0));
    run(&mut house, &climate, 72.0, |_| {});
    let values = house.values();
    assert_eq!(values[v::SETPOINT_C], 7.0);
    assert!((6.0..8.0).contains(&house.indoor_temp_c()));
    assert!(house.fault().is_none());
    house.set_away(None);
    assert_eq!(house.setpoint_c(), 20.0);
}

#[test]
fn a_refrigerant_leak_lowers_cop_raises_discharge_and_ends_in_a_low_pressure_lockout() {
    let climate = Climate::constant(-15.0);
    let mut house = house(DeviceKind::HeatPump, Building::OldBrick, &climate);
    // Compare the same operating point: the compressor has run for 10 minutes.
    let running_sample = |house: &mut House, climate: &Climate| {
        let mut running_for = 0;
        for _ in 0..(24 * 360) {
            house.step(10.0, climate);
            let values = house.values();
            if values[v::RUNNING] == 1.0 && values[v::DEFROST_ACTIVE] == 0.0 {
                running_for += 1;
                if running_for >= 60 {
                    return values;
                }
            } else {
                running_for = 0;
            }
        }
        panic!("the compressor never ran for 10 minutes in a day");
    };
    let healthy = running_sample(&mut house, &climate);
    house.start(Degradation::RefrigerantLeak {
        charge_per_day: 0.1,
    });
    run(&mut house, &climate, 72.0, |_| {});
    let charge = house.refrigerant_charge();
    assert!((0.68..0.72).contains(&charge), "charge {charge:.3}");
    let leaking = running_sample(&mut house, &climate);
    assert!(
        cop(&leaking) < cop(&healthy) * 0.85,
        "COP {:.2} -> {:.2}",
        cop(&healthy),
        cop(&leaking)
    );
    assert!(leaking[v::HEAT_OUTPUT_W] < healthy[v::HEAT_OUTPUT_W] * 0.7);
    assert!(leaking[v::DISCHARGE_TEMP_C] > healthy[v::DISCHARGE_TEMP_C] + 12.0);
    assert!(house.fault().is_none(), "no code yet");
    run(&mut house, &climate, 48.0, |_| {});
    assert_eq!(
        house.fault().map(|f| f.category),
        Some(FaultCategory::LowPressure)
    );
    assert!(house.clear());
    assert_eq!(house.refrigerant_charge(), 1.0);
}

#[test]
fn a_water_leak_lowers_the_boiler_pressure_day_by_day_until_it_locks_out() {
    let climate = Climate::constant(-5.0);
    let mut house = house(DeviceKind::GasBoiler, Building::Renovated, &climate);
    house.start(Degradation::WaterLeak { bar_per_day: 0.25 });
    // The day's mean of one-minute samples: the burner's on and off periods average out.
    let mut daily = Vec::new();
    let mut locked_after_h = None;
    let (mut sum, mut samples) = (0.0, 0);
    for hour in 0..(8 * 24) {
        for _ in 0..60 {
            run(&mut house, &climate, 1.0 / 60.0, |_| {});
            sum += house.values()[v::WATER_PRESSURE_BAR];
            samples += 1;
        }
        if hour % 24 == 23 {
            daily.push(sum / f64::from(samples));
            (sum, samples) = (0.0, 0);
        }
        if locked_after_h.is_none() && house.fault().is_some() {
            locked_after_h = Some(hour);
        }
    }
    assert!(daily.len() >= 3, "pressure dropped {daily:?}");
    // The first two days, before the lockout: the pressure falls by the leak rate.
    for pair in daily.windows(2).take(2) {
        let drop = pair[0] - pair[1];
        assert!(
            (0.2..0.3).contains(&drop),
            "daily drop {drop:.3} in {daily:?}"
        );
    }
    assert!(
        locked_after_h.is_some_and(|h| (48..150).contains(&h)),
        "{locked_after_h:?}"
    );
    assert_eq!(
        house.fault().map(|f| f.category),
        Some(FaultCategory::LowWaterPressure)
    );
    assert!(house.values()[v::WATER_PRESSURE_BAR] < BOILER_LOW_PRESSURE_LOCKOUT_BAR + 0.1);
    house.clear();
    assert!(house.values()[v::WATER_PRESSURE_BAR] > 1.0, "refilled");
}

#[test]
fn a_fouled_filter_raises_the_flow_return_difference_then_trips_and_locks_out() {
    let climate = Climate::constant(3.0);
    let mut house = house(DeviceKind::HeatPump, Building::LargeCourtyard, &climate);
    let delta_t =
        |values: &BTreeMap<&'static str, f64>| values[v::FLOW_TEMP_C] - values[v::RETURN_TEMP_C];
    let mut healthy_dt = 0.0f64;
    run(&mut house, &climate, 2.0, |h| {
        let values = h.values();
        if values[v::RUNNING] == 1.0 && values[v::DEFROST_ACTIVE] == 0.0 {
            healthy_dt = healthy_dt.max(delta_t(&values));
        }
    });
    house.start(Degradation::FouledFilter { flow_per_day: 0.15 });
    let mut codes = Vec::new();
    let mut fouled_dt = 0.0f64;
    run(&mut house, &climate, 6.0 * 24.0, |h| {
        let values = h.values();
        if values[v::RUNNING] == 1.0 && values[v::DEFROST_ACTIVE] == 0.0 {
            fouled_dt = fouled_dt.max(delta_t(&values));
        }
        let code = values[v::FAULT_CODE];
        if code != 0.0 && codes.last() != Some(&code) {
            codes.push(code);
        }
    });
    assert!(
        fouled_dt > healthy_dt + 5.0,
        "ΔT {healthy_dt:.1} -> {fouled_dt:.1}"
    );
    assert!(house.trips_total() >= LOCKOUT_TRIPS as u64);
    assert_eq!(
        house.fault().map(|f| f.category),
        Some(FaultCategory::HighPressure)
    );
    assert_eq!(
        codes.first(),
        Some(&2.0),
        "Aurora's high-pressure code is E2"
    );
}

#[test]
fn a_failing_flow_switch_trips_and_the_third_trip_in_an_hour_locks_out() {
    let climate = Climate::constant(-6.0);
    let mut house = house(DeviceKind::HeatPump, Building::OldBrick, &climate);
    house.start(Degradation::FlowSwitch);
    let mut first_code_at = None;
    let mut code_readings = 0;
    run(&mut house, &climate, 3.0, |h| {
        if h.fault().is_some() {
            code_readings += 1;
            first_code_at.get_or_insert(h.now_unix_s());
        }
    });
    let first = first_code_at.expect("the switch tripped");
    assert!(
        first - START <= 900.0,
        "first trip after {} s",
        first - START
    );
    assert_eq!(
        house.fault().map(|f| f.category),
        Some(FaultCategory::WaterFlow)
    );
    assert_eq!(
        house.injected(),
        Some(FaultCategory::WaterFlow),
        "locked out"
    );
    assert_eq!(house.trips_total(), LOCKOUT_TRIPS as u64);
    assert!(code_readings > 0);
}

#[test]
fn ignition_wear_speeds_up_the_counter_and_ignition_failure_locks_out() {
    let climate = Climate::constant(0.0);
    let count = |wear: bool| {
        let mut house = house(DeviceKind::GasBoiler, Building::Renovated, &climate);
        if wear {
            house.start(Degradation::IgnitionWear);
        }
        let before = house.values()[v::IGNITION_ATTEMPTS];
        run(&mut house, &climate, 12.0, |_| {});
        house.values()[v::IGNITION_ATTEMPTS] - before
    };
    let (healthy, worn) = (count(false), count(true));
    assert!(
        worn > healthy * 1.5,
        "attempts {healthy} healthy vs {worn} worn"
    );

    let mut house = house(DeviceKind::GasBoiler, Building::Renovated, &climate);
    let before = house.values()[v::IGNITION_ATTEMPTS];
    house.start(Degradation::IgnitionFailure);
    let values = house.values();
    assert_eq!(values[v::IGNITION_ATTEMPTS], before + 3.0);
    assert_eq!(values[v::FLAME_ON], 0.0);
    assert_eq!(
        house.fault().map(|f| f.category),
        Some(FaultCategory::IgnitionFailure)
    );
}

#[test]
fn an_open_or_shorted_sensor_reads_out_of_scale_and_shows_a_sensor_fault() {
    let climate = Climate::constant(-5.0);
    for (failure, reading) in [
        (SensorFailure::Open, SENSOR_OPEN_READING_C),
        (SensorFailure::Short, SENSOR_SHORT_READING_C),
    ] {
        for kind in [DeviceKind::HeatPump, DeviceKind::GasBoiler] {
            let mut house = house(kind, Building::OldBrick, &climate);
            house.start(Degradation::Sensor(failure));
            house.step(10.0, &climate);
            let values = house.values();
            assert_eq!(values[v::FLOW_TEMP_C], reading);
            assert_eq!(values[v::RUNNING], 0.0);
            assert_eq!(
                house.fault().map(|f| f.category),
                Some(FaultCategory::SensorFault)
            );
            house.clear();
            assert_ne!(house.values()[v::FLOW_TEMP_C], reading);
        }
    }
}

#[test]
fn a_power_cut_stops_the_heater_and_it_restarts_when_power_returns() {
    let climate = Climate::constant(-12.0);
    for kind in [DeviceKind::HeatPump, DeviceKind::GasBoiler] {
        let mut house = house(kind, Building::OldBrick, &climate);
        house.set_power(false);
        run(&mut house, &climate, 3.0, |h| assert!(!h.heating()));
        let values = house.values();
        assert_eq!(values[v::ELECTRIC_POWER_W], 0.0);
        assert!(house.indoor_temp_c() < 19.0);
        assert!(house.fault().is_none(), "a power cut shows no code");
        house.set_power(true);
        house.step(10.0, &climate);
        assert!(house.heating(), "{kind:?} restarts");
    }
}

#[test]
fn a_village_gas_pressure_drop_stops_boilers_with_a_gas_supply_code_until_it_recovers() {
    let climate = Climate::constant(-12.0);
    let mut house = house(DeviceKind::GasBoiler, Building::OldBrick, &climate);
    house.set_gas_supply(Some(8.0));
    run(&mut house, &climate, 1.0, |_| {});
    let values = house.values();
    assert!(values[v::GAS_PRESSURE_MBAR] < 9.0);
    assert_eq!(
        house.fault().map(|f| f.category),
        Some(FaultCategory::GasSupply)
    );
    assert!(!house.heating());
    house.set_gas_supply(None);
    house.step(10.0, &climate);
    assert!(house.fault().is_none(), "the code clears with the supply");
    assert!(house.heating());
}
