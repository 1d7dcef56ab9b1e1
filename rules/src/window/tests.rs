//! Tests of the windowed series: buckets, derived functions, the COP baseline, the ring-less
//! series (unchanged values, the cooling model) and their bounds on hostile input.

use super::ringless::COOLING_RATE_RANGE;
use super::*;

const MIN: i64 = 60_000;
const T0: i64 = 1_764_547_200_000;

fn table(kind: SeriesKind, window_ms: i64) -> SeriesTable {
    let mut table = SeriesTable::default();
    table.intern(SeriesSpec {
        kind,
        source: 0,
        minus: NO_VALUE,
        window_ms,
    });
    table
}

fn feed(table: &SeriesTable, state: &mut SeriesState, points: &[(i64, f64)]) {
    for (minute, value) in points {
        table.update(state, T0 + minute * MIN, &[*value], None);
    }
}

#[test]
fn stats_cover_the_window_and_forget_older_buckets() {
    let t = table(SeriesKind::Stats, 60 * MIN);
    let mut s = t.new_state();
    feed(&t, &mut s, &[(0, 10.0), (10, 20.0), (20, 30.0)]);
    assert_eq!(t.query(&s, 0, Derived::Count), 3.0);
    assert_eq!(t.query(&s, 0, Derived::Avg), 20.0);
    assert_eq!(t.query(&s, 0, Derived::Min), 10.0);
    assert_eq!(t.query(&s, 0, Derived::Max), 30.0);
    // 70 minutes later the first two readings are out of the window.
    feed(&t, &mut s, &[(70, 40.0)]);
    assert_eq!(t.query(&s, 0, Derived::Min), 30.0);
    // After a long silence everything is gone but the new reading.
    feed(&t, &mut s, &[(500, 1.0)]);
    assert_eq!(t.query(&s, 0, Derived::Count), 1.0);
}

#[test]
fn rate_is_per_hour_and_needs_enough_buckets() {
    let t = table(SeriesKind::Stats, 120 * MIN);
    let mut s = t.new_state();
    feed(&t, &mut s, &[(0, 20.0), (10, 19.0)]);
    assert!(t.query(&s, 0, Derived::Rate).is_nan());
    let mut s = t.new_state();
    let points: Vec<(i64, f64)> = (0..=12).map(|i| (i * 10, 20.0 - i as f64)).collect();
    feed(&t, &mut s, &points);
    let rate = t.query(&s, 0, Derived::Rate);
    assert!((rate + 6.0).abs() < 1e-3, "{rate}");
    assert!((t.query(&s, 0, Derived::SlopePerDay) + 144.0).abs() < 0.1);
    // Falling 6 per hour from 8: 2 reached in one hour.
    let hours = t.query(&s, 0, Derived::HoursTo(2.0));
    assert!((hours - 1.0).abs() < 1e-3, "{hours}");
    // A falling value moves away from a target above it.
    assert_eq!(t.query(&s, 0, Derived::HoursTo(9.0)), f64::INFINITY);
    assert_eq!(t.query(&s, 0, Derived::HoursTo(8.0)), 0.0);
    // A rising value never reaches a target below it.
    let mut rising = t.new_state();
    let points: Vec<(i64, f64)> = (0..=12).map(|i| (i * 10, i as f64)).collect();
    feed(&t, &mut rising, &points);
    assert_eq!(t.query(&rising, 0, Derived::HoursTo(-5.0)), f64::INFINITY);
}

#[test]
fn unchanged_counts_from_the_last_change_and_keeps_no_ring() {
    let t = table(SeriesKind::Unchanged, 1);
    assert_eq!(t.cell_count(), 0);
    assert_eq!(t.keys(), ["unchanged:0:1"]);
    assert_eq!(width_of_key("unchanged:0:1"), 0);
    let mut s = t.new_state();
    assert!(t.query(&s, 0, Derived::UnchangedHours).is_nan());
    feed(&t, &mut s, &[(0, 20.0), (60, 20.0)]);
    assert_eq!(t.query(&s, 0, Derived::UnchangedHours), 1.0);
    // Missing and absurd values change nothing; a new value restarts the count.
    feed(&t, &mut s, &[(90, f64::NAN), (100, 1e300), (120, 20.0)]);
    assert_eq!(t.query(&s, 0, Derived::UnchangedHours), 2.0);
    feed(&t, &mut s, &[(150, 20.1), (180, 20.1)]);
    assert_eq!(t.query(&s, 0, Derived::UnchangedHours), 0.5);
    // An older reading (out of order) does not move the newest time back.
    feed(&t, &mut s, &[(170, 20.1)]);
    assert_eq!(t.query(&s, 0, Derived::UnchangedHours), 0.5);
}

/// A cooling series over values 0 (indoor), 1 (outdoor), 2 (running).
fn cooling_table() -> SeriesTable {
    let mut t = table(SeriesKind::Cooling, 1);
    t.set_cooling_sources(CoolingSources {
        indoor: 0,
        outdoor: 1,
        running: 2,
    });
    t
}

/// Heater cycles: `off_min` minutes off (the room cools at `rate` per hour toward
/// `outdoor`), then 20 minutes on (back to 20 °C), for `cycles` cycles, one reading a minute;
/// indoor readings on a `step` °C grid, as a sensor shows them.
fn cycles(rate: f64, outdoor: f64, off_min: i64, cycles: i64, step: f64) -> Vec<(i64, [f64; 3])> {
    let mut points = Vec::new();
    let mut minute = 0;
    for _ in 0..cycles {
        for m in 0..off_min {
            let t = outdoor + (20.0 - outdoor) * (-rate * m as f64 / 60.0).exp();
            points.push((minute, [(t / step).round() * step, outdoor, 0.0]));
            minute += 1;
        }
        for _ in 0..20 {
            points.push((minute, [20.0, outdoor, 1.0]));
            minute += 1;
        }
    }
    points
}

#[test]
fn cooling_learns_the_house_rate_and_forecasts_time_to_cold() {
    let t = cooling_table();
    let mut s = t.new_state();
    // A house with a 30-hour time constant, -10 °C outside, heater off 90 minutes at a
    // time; a 0.1 °C sensor.
    let rate = 1.0 / 30.0;
    let points = cycles(rate, -10.0, 90, 6, 0.1);
    for (i, (minute, values)) in points.iter().enumerate() {
        t.update(&mut s, T0 + minute * MIN, values, None);
        if i == 90 {
            // One segment is not a model yet.
            assert!(t.query(&s, 0, Derived::CoolingHours(16.0)).is_nan());
        }
    }
    let learned = f64::from(s.cells[0].a);
    assert!(s.cells[0].n >= COOLING_MIN_SAMPLES, "{:?}", s.cells[0]);
    assert!(
        (learned - rate).abs() < 0.2 * rate,
        "learned {learned}, true {rate}"
    );
    // The last reading is on (20 °C): from there to 16 °C at the true rate, within 20 %.
    let hours = t.query(&s, 0, Derived::CoolingHours(16.0));
    assert_eq!(s.cells[2].a, 20.0);
    let truth = (30.0f64 / 26.0).ln() / rate;
    assert!(
        (hours - truth).abs() < 0.2 * truth,
        "forecast {hours} h, truth {truth} h"
    );
    assert_eq!(t.query(&s, 0, Derived::CoolingHours(25.0)), 0.0);
    assert_eq!(t.query(&s, 0, Derived::CoolingHours(-12.0)), f64::INFINITY);
}

#[test]
fn cooling_on_a_coarse_sensor_stays_close_and_ignores_implausible_segments() {
    // A 0.5 °C sensor: each sample is off, their average is not far.
    let t = cooling_table();
    let mut s = t.new_state();
    let rate = 1.0 / 20.0;
    for (minute, values) in cycles(rate, -5.0, 120, 10, 0.5) {
        t.update(&mut s, T0 + minute * MIN, &values, None);
    }
    let learned = f64::from(s.cells[0].a);
    assert!(
        (learned - rate).abs() < 0.3 * rate,
        "learned {learned}, true {rate}"
    );
    // A window opened: the room falls 5 K in 30 minutes and stays (a rate of ~0.33/h):
    // implausibly fast for a house, not learned.
    let before = s.cells[0];
    let start = 10_000;
    for m in 0..40 {
        let indoor = 20.0 - (m.min(30) as f64) / 6.0;
        t.update(&mut s, T0 + (start + m) * MIN, &[indoor, -5.0, 0.0], None);
    }
    t.update(&mut s, T0 + (start + 41) * MIN, &[15.0, -5.0, 1.0], None);
    assert_eq!(s.cells[0], before);
    // A smaller airing (2 K in 20 minutes, ~0.12/h) is within the plausible range but
    // more than twice the house's rate: not learned either.
    let start = 20_000;
    for m in 0..40 {
        let indoor = 20.0 - (m.min(20) as f64) / 10.0;
        t.update(&mut s, T0 + (start + m) * MIN, &[indoor, -5.0, 0.0], None);
    }
    t.update(&mut s, T0 + (start + 41) * MIN, &[18.0, -5.0, 1.0], None);
    assert_eq!(s.cells[0], before);
}

#[test]
fn cooling_without_running_or_with_hostile_values_learns_nothing_and_stays_finite() {
    let t = cooling_table();
    let mut s = t.new_state();
    let hostile = [f64::NAN, f64::INFINITY, -1e300, 1e300, 0.0, -0.0, 5e11];
    let mut minute = 0;
    for indoor in hostile {
        for outdoor in hostile {
            for running in [f64::NAN, 0.0, 1.0] {
                t.update(&mut s, T0 + minute * MIN, &[indoor, outdoor, running], None);
                minute += 7;
            }
        }
    }
    for cell in &s.cells {
        assert!(
            cell.a.is_finite() && cell.b.is_finite() && cell.c.is_finite(),
            "{cell:?}"
        );
    }
    let model = s.cells[0];
    assert!(model.n == 0 || COOLING_RATE_RANGE.contains(&f64::from(model.a)));
    let hours = t.query(&s, 0, Derived::CoolingHours(16.0));
    assert!(hours.is_nan() || hours >= 0.0);
    // Without a running value there is no segment at all.
    let mut s = t.new_state();
    for m in 0..600 {
        let indoor = 20.0 - m as f64 / 60.0;
        t.update(&mut s, T0 + m * MIN, &[indoor, -10.0, f64::NAN], None);
    }
    assert_eq!(s.cells[0].n, 0);
    assert!(t.query(&s, 0, Derived::CoolingHours(16.0)).is_nan());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Whatever arrives (any numbers, any order of heater states, any gaps), the learned
    /// cooling rate stays within the plausible range and the forecast is a number of
    /// hours, infinity or unknown: never negative, never NaN once the model is known.
    #[test]
    fn the_cooling_model_stays_bounded_on_any_input(
        points in proptest::collection::vec(
            (
                0i64..600,
                proptest::prop_oneof![-40.0..40.0f64, proptest::num::f64::ANY],
                proptest::prop_oneof![-40.0..20.0f64, proptest::num::f64::ANY],
                proptest::prop_oneof![proptest::strategy::Just(0.0), proptest::strategy::Just(1.0), proptest::num::f64::ANY],
            ),
            0..400,
        ),
        target in -50.0..50.0f64,
    ) {
        let t = cooling_table();
        let mut s = t.new_state();
        let mut minute = 0;
        for (gap, indoor, outdoor, running) in points {
            minute += gap;
            t.update(&mut s, T0 + minute * MIN, &[indoor, outdoor, running], None);
            let model = s.cells[0];
            proptest::prop_assert!(
                model.n == 0 || COOLING_RATE_RANGE.contains(&f64::from(model.a)),
                "learned {:?}", model
            );
            for cell in &s.cells {
                proptest::prop_assert!(cell.a.is_finite() && cell.b.is_finite() && cell.c.is_finite());
            }
            let hours = t.query(&s, 0, Derived::CoolingHours(target));
            proptest::prop_assert!(hours.is_nan() || hours >= 0.0, "{}", hours);
            if model.n >= COOLING_MIN_SAMPLES && s.cells[2].n > 0 {
                proptest::prop_assert!(!hours.is_nan());
            }
        }
    }
}

#[test]
fn starts_increase_and_share() {
    let t = table(SeriesKind::Starts, 60 * MIN);
    let mut s = t.new_state();
    feed(
        &t,
        &mut s,
        &[(0, 1.0), (5, 0.0), (10, 1.0), (15, 0.0), (20, 1.0)],
    );
    assert_eq!(t.query(&s, 0, Derived::Starts), 2.0);

    let t = table(SeriesKind::Increase, 60 * MIN);
    let mut s = t.new_state();
    feed(
        &t,
        &mut s,
        &[(0, 100.0), (10, 103.0), (20, 104.0), (30, 2.0)],
    );
    assert_eq!(t.query(&s, 0, Derived::Increase), 6.0);

    let t = table(SeriesKind::Share, 60 * MIN);
    let mut s = t.new_state();
    let points: Vec<(i64, f64)> = (0..=40)
        .map(|m| (m, if m % 4 == 0 { 1.0 } else { 0.0 }))
        .collect();
    feed(&t, &mut s, &points);
    assert!((t.query(&s, 0, Derived::Share) - 0.25).abs() < 1e-9);
}

#[test]
fn trips_count_fault_appearances_of_the_masked_categories() {
    let mut t = SeriesTable::default();
    t.intern(SeriesSpec {
        kind: SeriesKind::Trips(category_bit(FaultCategory::WaterFlow)),
        source: 0,
        minus: NO_VALUE,
        window_ms: 60 * MIN,
    });
    let mut s = t.new_state();
    let flow = Some((3, FaultCategory::WaterFlow));
    let other = Some((9, FaultCategory::SensorFault));
    for (minute, fault) in [
        (0, flow),
        (1, flow),
        (2, None),
        (3, flow),
        (4, other),
        (5, flow),
    ] {
        t.update(&mut s, T0 + minute * MIN, &[], fault);
    }
    assert_eq!(t.query(&s, 0, Derived::Trips), 3.0);
}

#[test]
fn cop_ratio_compares_with_the_learned_band() {
    let mut t = SeriesTable::default();
    t.set_cop_sources(CopSources {
        heat: 0,
        electric: 1,
        running: 2,
        outdoor: 3,
        defrost: 4,
    });
    let index = t.intern(SeriesSpec {
        kind: SeriesKind::Cop,
        source: 0,
        minus: NO_VALUE,
        window_ms: 120 * MIN,
    });
    t.keep_baseline(index);
    let mut s = t.new_state();
    let mut minute = 0;
    // Ten hours at COP 3 teach the band around -5 °C (10-minute buckets).
    while minute < 600 {
        t.update(
            &mut s,
            T0 + minute * MIN,
            &[6000.0, 2000.0, 1.0, -5.0],
            None,
        );
        minute += 1;
    }
    assert!((t.query(&s, index, Derived::Cop) - 3.0).abs() < 1e-6);
    assert!((t.query(&s, index, Derived::CopRatio) - 1.0).abs() < 1e-6);
    // Then the unit degrades to COP 2 for two hours.
    while minute < 720 {
        t.update(
            &mut s,
            T0 + minute * MIN,
            &[4000.0, 2000.0, 1.0, -5.0],
            None,
        );
        minute += 1;
    }
    let ratio = t.query(&s, index, Derived::CopRatio);
    assert!((ratio - 2.0 / 3.0).abs() < 1e-3, "{ratio}");
    // Standby samples (not running) do not count, nor samples while defrosting (no heat,
    // full power: how often depends on the day's humidity, not on the unit).
    t.update(&mut s, T0 + minute * MIN, &[0.0, 12.0, 0.0, -5.0], None);
    t.update(
        &mut s,
        T0 + (minute + 1) * MIN,
        &[0.0, 2500.0, 1.0, -5.0, 1.0],
        None,
    );
    assert!((t.query(&s, index, Derived::Cop) - 2.0).abs() < 1e-6);
}

#[test]
fn a_corrupted_ring_position_restarts_the_series_instead_of_panicking() {
    let t = table(SeriesKind::Stats, 60 * MIN);
    let mut s = t.new_state();
    feed(&t, &mut s, &[(0, 10.0)]);
    s.heads[0].pos = 200;
    feed(&t, &mut s, &[(1, 12.0)]);
    assert_eq!(t.query(&s, 0, Derived::Count), 1.0);
    assert_eq!(t.query(&s, 0, Derived::Max), 12.0);
}

#[test]
fn series_state_round_trips_through_json_with_nan() {
    let t = table(SeriesKind::Starts, 60 * MIN);
    let s = t.new_state();
    let json = serde_json::to_string(&s).expect("serialises");
    let back: SeriesState = serde_json::from_str(&json).expect("parses");
    assert!(back.heads[0].last.is_nan());
    assert_eq!(back.cells, s.cells);
}

/// A paired series: y = pressure over three days of 6-hour buckets, x = water temperature
/// swinging between heating (60 °C) and idle (20 °C) buckets.
fn paired_state(coefficient: f64, leak_per_day: f64) -> (SeriesTable, SeriesState) {
    let mut table = SeriesTable::default();
    table.intern(SeriesSpec {
        kind: SeriesKind::Paired,
        source: 0,
        minus: 1,
        window_ms: 72 * 60 * MIN,
    });
    let mut state = table.new_state();
    for step in 0..(72 * 4) {
        let minutes = step * 15;
        let hours = minutes as f64 / 60.0;
        // Heating for 9 of every 24 hours, in two blocks that fall in different buckets.
        let hour_of_day = (minutes / 60) % 24;
        let water = if (6..10).contains(&hour_of_day) || (17..22).contains(&hour_of_day) {
            60.0
        } else {
            20.0
        };
        let pressure = 1.4 + coefficient * (water - 40.0) + leak_per_day * hours / 24.0;
        table.update(&mut state, T0 + minutes * MIN, &[pressure, water], None);
    }
    (table, state)
}

#[test]
fn partial_slope_takes_out_the_dependence_on_the_second_value() {
    for coefficient in [0.006, 0.015, 0.03] {
        // No leak: the pressure follows the water temperature alone.
        let (table, state) = paired_state(coefficient, 0.0);
        let trend = table.query(&state, 0, Derived::PartialSlopePerDay);
        assert!(
            trend.abs() < 0.005,
            "coefficient {coefficient}: {trend} bar/day"
        );
        // A leak of 0.1 bar a day is found whatever the coefficient.
        let (table, state) = paired_state(coefficient, -0.1);
        let trend = table.query(&state, 0, Derived::PartialSlopePerDay);
        assert!(
            (trend + 0.1).abs() < 0.01,
            "coefficient {coefficient}: {trend} bar/day"
        );
    }
}

#[test]
fn partial_slope_is_the_plain_slope_when_the_second_value_stands_still() {
    let mut table = SeriesTable::default();
    table.intern(SeriesSpec {
        kind: SeriesKind::Paired,
        source: 0,
        minus: 1,
        window_ms: 120 * MIN,
    });
    let mut state = table.new_state();
    for i in 0..=12 {
        table.update(
            &mut state,
            T0 + i * 10 * MIN,
            &[20.0 - i as f64, 35.0],
            None,
        );
    }
    let per_day = table.query(&state, 0, Derived::PartialSlopePerDay);
    assert!((per_day + 144.0).abs() < 0.1, "{per_day}");
    // Readings without the second value do not count.
    let mut state = table.new_state();
    for i in 0..=12 {
        table.update(
            &mut state,
            T0 + i * 10 * MIN,
            &[20.0 - i as f64, f64::NAN],
            None,
        );
    }
    assert!(table.query(&state, 0, Derived::PartialSlopePerDay).is_nan());
}

#[test]
fn a_state_for_one_kind_holds_only_its_series() {
    let mut t = table(SeriesKind::Stats, 60 * MIN);
    let spec = |window_ms| SeriesSpec {
        kind: SeriesKind::Stats,
        source: 0,
        minus: NO_VALUE,
        window_ms,
    };
    t.intern(spec(120 * MIN));
    // Series 0 for heat pumps, series 1 for gas boilers.
    t.set_needed(vec![[true, false], [false, true]]);
    let mut pump = t.new_state_for(DeviceKind::HeatPump);
    assert_eq!((pump.heads.len(), pump.cells.len()), (1, BUCKETS));
    assert_eq!(t.state_size(None), (2, 2 * BUCKETS));
    feed(&t, &mut pump, &[(0, 10.0), (1, 30.0)]);
    assert_eq!(t.query(&pump, 0, Derived::Avg), 20.0);
    assert!(t.query(&pump, 1, Derived::Avg).is_nan());
    let mut boiler = t.new_state_for(DeviceKind::GasBoiler);
    feed(&t, &mut boiler, &[(0, 4.0)]);
    assert!(t.query(&boiler, 0, Derived::Count).is_nan());
    assert_eq!(t.query(&boiler, 1, Derived::Count), 1.0);
    assert_eq!(
        t.slot_of(Some(DeviceKind::GasBoiler), 1),
        Some((0, 0, BUCKETS))
    );
    assert_eq!(t.slot_of(Some(DeviceKind::GasBoiler), 0), None);
}

#[test]
fn a_short_window_read_only_through_aggregates_shares_a_longer_ring() {
    let spec = |window_ms| SeriesSpec {
        kind: SeriesKind::Stats,
        source: 0,
        minus: NO_VALUE,
        window_ms,
    };
    let mut t = SeriesTable::default();
    let short = t.intern(spec(45 * MIN));
    let long = t.intern(spec(120 * MIN));
    t.share_windows(&[true, false]);
    t.set_needed(vec![[true, false], [true, false]]);
    // A heat pump holds the 2-hour ring only.
    assert_eq!(t.state_size(Some(DeviceKind::HeatPump)), (1, BUCKETS));
    assert_eq!(t.held(Some(DeviceKind::HeatPump)), [long]);
    let mut s = t.new_state_for(DeviceKind::HeatPump);
    // 10-minute buckets; at minute 95 the newest 5 buckets span minutes 50..100.
    feed(&t, &mut s, &[(0, 30.0), (35, 25.0), (55, 12.0), (95, 11.0)]);
    assert_eq!(t.query(&s, long, Derived::Max), 30.0);
    assert_eq!(t.query(&s, long, Derived::Count), 4.0);
    assert_eq!(t.query(&s, short, Derived::Max), 12.0);
    assert_eq!(t.query(&s, short, Derived::Min), 11.0);
    assert_eq!(t.query(&s, short, Derived::Count), 2.0);
    assert_eq!(t.query(&s, short, Derived::Avg), 11.5);
}

#[test]
fn a_window_read_through_a_slope_or_too_short_for_the_long_buckets_keeps_its_ring() {
    let spec = |window_ms| SeriesSpec {
        kind: SeriesKind::Stats,
        source: 0,
        minus: NO_VALUE,
        window_ms,
    };
    let mut t = SeriesTable::default();
    t.intern(spec(45 * MIN));
    t.intern(spec(120 * MIN));
    // Read through `rate` somewhere: not only aggregates.
    t.share_windows(&[false, false]);
    t.set_needed(vec![[true, true], [true, true]]);
    assert_eq!(t.state_size(Some(DeviceKind::GasBoiler)), (2, 2 * BUCKETS));

    let mut t = SeriesTable::default();
    t.intern(spec(30 * MIN));
    t.intern(spec(6 * 60 * MIN));
    // 30-minute buckets of the 6-hour series: one bucket is no 30-minute window.
    t.share_windows(&[true, false]);
    t.set_needed(vec![[true, true], [true, true]]);
    assert_eq!(t.state_size(Some(DeviceKind::GasBoiler)), (2, 2 * BUCKETS));
}
