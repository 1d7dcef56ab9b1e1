//! Tests of the bench world: determinism, faults reaching the readings, residents' complaints,
//! supply faults taking boxes off line, and repairs.

use super::*;
use crate::mix::{FaultKind, Mix};

fn profiles() -> Vec<Arc<Profile>> {
    crate::bench::shipped_profiles().expect("profiles")
}

/// A quiet mix (no random events, no overlaps, residents always call after exactly one hour,
/// nobody sleeps, no fast or night callers) plus the given scripted events.
fn quiet_mix(events: &str) -> Mix {
    let mut text = String::from(
        "overlap_share = 0.0\n\
         [fleet]\nnight_setback_share = 0.0\n\
         [residents]\nnever_calls = 0.0\nvulnerable_never_calls = 0.0\n\
         patience = [\"1h\", \"1h\"]\nvulnerable_patience = [\"1h\", \"1h\"]\n\
         sleep_from = \"00:00\"\nsleep_to = \"00:00\"\n\
         fast_caller_share = 0.0\nnight_call_share = 0.0\nvulnerable_night_calls = false\n",
    );
    for kind in FaultKind::ALL {
        let extra = match kind {
            FaultKind::RefrigerantLeak
            | FaultKind::WaterLeak
            | FaultKind::FouledFilter
            | FaultKind::SlowWaterLeakNoGauge
            | FaultKind::RefrigerantLossPartial => "speed = [0.1, 0.1]\n",
            FaultKind::PowerOutage => "duration = [\"1h\", \"1h\"]\n",
            FaultKind::GasPressureDrop => {
                "duration = [\"1h\", \"1h\"]\npressure_mbar = [8.0, 8.0]\nsinking_share = 0.0\n"
            }
            _ => "",
        };
        text.push_str(&format!("[faults.{}]\nrate = 0.0\n{extra}", kind.as_str()));
    }
    text.push_str("[traps.resident_away]\nrate = 0.0\nduration = [\"1d\", \"1d\"]\n");
    text.push_str("[traps.wifi_drop]\nrate = 0.0\nduration = [\"5m\", \"5m\"]\n");
    for kind in ["window_airing", "heating_off", "commissioning"] {
        text.push_str(&format!("[traps.{kind}]\nrate = 0.0\n"));
    }
    text.push_str(events);
    Mix::parse(&text, "quiet.toml").expect("quiet mix")
}

fn world(households: usize, days: f64, events: &str) -> (World, Vec<HouseholdSpec>) {
    let fleet = crate::fleet::generate(households, 11, &profiles()).expect("fleet");
    let mix = quiet_mix(events);
    let scenario = crate::scenario::build(&fleet, &mix, days, 11).expect("scenario");
    (World::new(&fleet, &mix, &scenario, 11), fleet)
}

fn first(fleet: &[HouseholdSpec], kind: DeviceKind) -> usize {
    fleet
        .iter()
        .position(|h| h.kind == kind)
        .expect("a household of that kind")
}

fn parse(reading: &[u8]) -> wire::Telemetry {
    wire::Telemetry::from_json(reading).expect("telemetry")
}

#[test]
fn the_same_seed_gives_the_same_readings_and_every_reading_is_valid() {
    let run = || {
        let (mut world, _) = world(12, 1.0, "");
        let mut all = Vec::new();
        for minute in 1..=180 {
            world.advance_to(world.start_ms + minute * 60_000);
            for round in world.poll_round() {
                all.extend(round.readings);
            }
        }
        all
    };
    let (a, b) = (run(), run());
    assert_eq!(a.len(), 12 * 180);
    assert_eq!(a, b);
    for reading in &a {
        let reading = parse(reading);
        reading
            .validate(reading.ts_ms, 0)
            .unwrap_or_else(|e| panic!("{}: {e}", reading.device_id));
    }
}

#[test]
fn a_lockout_shows_at_the_next_poll_and_the_resident_notices_then_calls_an_hour_later() {
    let (probe, fleet) = world(12, 1.0, "");
    drop(probe);
    let heat_pump = first(&fleet, DeviceKind::HeatPump);
    let (mut world, _) = world(
        12,
        1.0,
        &format!("[[event]]\nkind = \"lockout\"\nhousehold = {heat_pump}\nat = \"1h\"\n"),
    );
    let start = world.start_ms;
    world.advance_to(start + 61 * 60_000);
    let round = world.poll_round();
    let reading = parse(&round[heat_pump].readings[0]);
    let fault = reading.fault.expect("the lockout code");
    assert_eq!(fault.category, wire::FaultCategory::CompressorOvercurrent);
    // Nobody repairs: the room cools, the resident notices and calls an hour later.
    let mut complaints = Vec::new();
    for minute in 62..=(24 * 60) {
        world.advance_to(start + minute * 60_000);
        complaints.extend(world.take_complaints());
    }
    let (_, faults, _) = world.truth();
    let noticed = faults[0].noticed_ms.expect("noticed");
    assert!(
        noticed > start + 2 * 3_600_000,
        "a warm house takes hours to cool"
    );
    assert_eq!(
        faults[0].would_notice_ms,
        Some(noticed),
        "without a repair, the counterfactual is what happened"
    );
    assert_eq!(complaints.len(), 1);
    assert_eq!(complaints[0].fault, Some(0));
    assert_eq!(complaints[0].received_at_ms, noticed + 3_600_000);
    assert!(complaints[0]
        .text
        .contains(fleet[heat_pump].device_id.as_str()));
}

#[test]
fn a_repair_ends_the_fault_and_the_window_closes_after_the_house_recovers() {
    let (probe, fleet) = world(12, 1.0, "");
    drop(probe);
    let boiler = first(&fleet, DeviceKind::GasBoiler);
    let (mut world, _) = world(
        12,
        1.0,
        &format!("[[event]]\nkind = \"sensor_open\"\nhousehold = {boiler}\nat = \"30m\"\n"),
    );
    let start = world.start_ms;
    world.advance_to(start + 40 * 60_000);
    assert_eq!(
        world.classify_request(boiler, start + 31 * 60_000),
        Some(Purpose::Repair {
            fault: 0,
            time: world.mix.faults.sensor_open.repair
        })
    );
    assert_eq!(
        world.classify_request(boiler, start + 32 * 60_000),
        None,
        "a technician is already on it"
    );
    world.schedule_repair(0, start + 2 * 3_600_000);
    world.advance_to(start + 6 * 3_600_000);
    let (_, faults, _) = world.truth();
    assert_eq!(faults[0].ended_ms, Some(start + 2 * 3_600_000));
    assert!(faults[0].window_end_ms < start + 6 * 3_600_000);
    assert!(faults[0].window_end_ms >= start + 3 * 3_600_000);
    assert!(
        faults[0].noticed_ms.is_none(),
        "repaired before the room got cold"
    );
    assert!(faults[0].would_notice_ms.is_some(), "but it would have");
    let round = world.poll_round();
    assert!(parse(&round[boiler].readings[0]).fault.is_none());
    // A request on a healthy house is a check visit.
    assert_eq!(
        world.classify_request(boiler, start + 5 * 3_600_000),
        Some(Purpose::Check { fault: None })
    );
}

#[test]
fn a_power_outage_silences_the_village_and_its_boxes_boot_with_new_sequence_numbers() {
    let (probe, fleet) = world(40, 1.0, "");
    drop(probe);
    let (mut world, _) = world(
        40,
        1.0,
        "[[event]]\nkind = \"power_outage\"\nhousehold = 0\nat = \"1h\"\nduration = \"2h\"\n",
    );
    let village: Vec<usize> = fleet
        .iter()
        .filter(|h| h.township.id == fleet[0].township.id && h.village.id == fleet[0].village.id)
        .map(|h| h.index)
        .collect();
    let start = world.start_ms;
    world.advance_to(start + 59 * 60_000);
    let before = parse(&world.poll_round()[0].readings[0]).seq;
    world.advance_to(start + 90 * 60_000);
    let dark = world.poll_round();
    for &h in &village {
        assert!(
            !dark[h].online && dark[h].readings.is_empty(),
            "household {h}"
        );
    }
    assert!(dark.iter().filter(|r| r.online).count() == 40 - village.len());
    world.advance_to(start + 3 * 3_600_000 + 60_000);
    let back = world.poll_round();
    assert!(back[0].online);
    let after = parse(&back[0].readings[0]).seq;
    assert!(
        after > before,
        "a boot starts a later run of sequence numbers"
    );
    let (_, faults, _) = world.truth();
    assert_eq!(faults[0].households, village);
    assert_eq!(faults[0].ended_ms, Some(start + 3 * 3_600_000));
}

#[test]
fn a_box_offline_keeps_its_readings_and_sends_them_when_it_is_back() {
    let (mut world, _) = world(
        5,
        1.0,
        "[[event]]\nkind = \"box_offline\"\nhousehold = 2\nat = \"1h\"\nduration = \"30m\"\n",
    );
    let start = world.start_ms;
    let mut sent = Vec::new();
    for minute in 1..=120 {
        world.advance_to(start + minute * 60_000);
        let round = world.poll_round();
        if (61..90).contains(&minute) {
            assert!(!round[2].online, "minute {minute}");
        }
        sent.extend(round[2].readings.iter().map(|r| parse(r)));
    }
    assert_eq!(sent.len(), 120, "nothing lost with store and forward");
    assert!(sent
        .windows(2)
        .all(|w| w[1].seq == w[0].seq + 1 && w[1].ts_ms > w[0].ts_ms));
}

#[test]
fn residents_asleep_call_after_waking_if_it_is_still_cold() {
    let (probe, fleet) = world(12, 1.0, "");
    drop(probe);
    let heat_pump = first(&fleet, DeviceKind::HeatPump);
    let mut mix = quiet_mix(&format!(
        "[[event]]\nkind = \"lockout\"\nhousehold = {heat_pump}\nat = \"20h\"\n"
    ));
    mix.residents.sleep_from = crate::mix::TimeOfDay(23.0);
    mix.residents.sleep_to = crate::mix::TimeOfDay(6.5);
    mix.residents.wake_up_delay = DurationRange::new(
        std::time::Duration::from_secs(600),
        std::time::Duration::from_secs(600),
    );
    let scenario = crate::scenario::build(&fleet, &mix, 2.0, 11).expect("scenario");
    let mut world = World::new(&fleet, &mix, &scenario, 11);
    world.advance_to(scenario.start_ms + 36 * 3_600_000);
    let complaints = world.take_complaints();
    assert_eq!(complaints.len(), 1);
    let local_hour = crate::model::local_hour(complaints[0].received_at_ms as f64 / 1000.0);
    let (_, faults, _) = world.truth();
    let noticed = faults[0].noticed_ms.expect("noticed");
    let noticed_hour = crate::model::local_hour(noticed as f64 / 1000.0);
    if !(6.5..22.0).contains(&noticed_hour) {
        assert!(
            (6.6..7.0).contains(&local_hour),
            "noticed at {noticed_hour:.2} h, called at {local_hour:.2} h"
        );
    } else {
        assert!(complaints[0].received_at_ms >= noticed + 3_600_000);
    }
}

#[test]
fn a_resident_away_neither_notices_nor_complains() {
    let (mut world, _) = world(
        5,
        2.0,
        "[[event]]\nkind = \"resident_away\"\nhousehold = 1\nat = \"0s\"\nduration = \"30h\"\n",
    );
    let start = world.start_ms;
    world.advance_to(start + 24 * 3_600_000);
    assert!(world.indoor_temp_c(1).expect("house") < 12.0);
    world.advance_to(start + 44 * 3_600_000);
    assert!(world.take_complaints().is_empty());
    let (_, _, traps) = world.truth();
    assert_eq!(traps.len(), 1);
    assert!(
        traps[0].window_end_ms < start + 44 * 3_600_000,
        "the house warmed up after the return"
    );
}

#[test]
fn a_tripped_breaker_leaves_the_box_online_without_readings_for_its_device() {
    let (mut world, _) = world(
        5,
        1.0,
        "[[event]]\nkind = \"breaker_trip\"\nhousehold = 2\nat = \"1h\"\n",
    );
    let start = world.start_ms;
    world.advance_to(start + 59 * 60_000);
    let before = world.poll_round();
    assert!(before[2].online && before[2].readings.len() == 1);
    let warm = world.indoor_temp_c(2).expect("house");
    for minute in 61..=(6 * 60) {
        world.advance_to(start + minute * 60_000);
        let round = world.poll_round();
        assert!(round[2].online, "minute {minute}: the box stays connected");
        assert!(
            round[2].readings.is_empty(),
            "minute {minute}: nothing to read"
        );
        assert_eq!(round[1].readings.len(), 1, "the neighbours publish");
    }
    assert!(
        world.indoor_temp_c(2).expect("house") < warm - 1.0,
        "the house cools"
    );
    let (_, faults, _) = world.truth();
    assert_eq!(faults[0].kind, FaultKind::BreakerTrip);
    assert!(!faults[0].kind.raises_code());
}

#[test]
fn a_hung_controller_publishes_the_same_values_for_hours_while_the_house_cools() {
    let (mut world, _) = world(
        5,
        1.0,
        "[[event]]\nkind = \"controller_hang\"\nhousehold = 3\nat = \"30m\"\n",
    );
    let start = world.start_ms;
    world.advance_to(start + 31 * 60_000);
    let first = parse(&world.poll_round()[3].readings[0]);
    let warm = world.indoor_temp_c(3).expect("house");
    for hour in 1..=5 {
        world.advance_to(start + 31 * 60_000 + hour * 3_600_000);
        let reading = parse(&world.poll_round()[3].readings[0]);
        assert_eq!(reading.values, first.values, "hour {hour}: frozen image");
        assert!(reading.fault.is_none());
        assert!(reading.seq > first.seq, "the box keeps publishing");
    }
    assert!(world.indoor_temp_c(3).expect("house") < warm - 1.5);
}

#[test]
fn a_seized_pump_shows_no_code_in_the_readings_and_the_resident_calls() {
    let (probe, fleet) = world(12, 1.0, "");
    drop(probe);
    let boiler = first(&fleet, DeviceKind::GasBoiler);
    let (mut world, _) = world(
        12,
        1.0,
        &format!("[[event]]\nkind = \"pump_seized\"\nhousehold = {boiler}\nat = \"1h\"\n"),
    );
    let start = world.start_ms;
    let mut hottest = f64::MIN;
    let mut complaints = Vec::new();
    for minute in 1..=(24 * 60) {
        world.advance_to(start + minute * 60_000);
        let round = world.poll_round();
        let reading = parse(&round[boiler].readings[0]);
        assert!(reading.fault.is_none(), "minute {minute}: no code");
        if minute > 61 {
            hottest = hottest.max(reading.values.get("flow_temp_c").expect("flow"));
        }
        complaints.extend(world.take_complaints());
    }
    assert!(
        hottest >= 79.0,
        "the flow sensor climbs to the high limit: {hottest}"
    );
    assert_eq!(complaints.len(), 1);
    assert_eq!(complaints[0].fault, Some(0));
}

#[test]
fn overlapping_faults_and_a_trap_keep_their_own_truth_and_one_repair_ends_both_faults() {
    let (probe, fleet) = world(12, 1.0, "");
    drop(probe);
    let heat_pump = first(&fleet, DeviceKind::HeatPump);
    let (mut world, _) = world(
        12,
        1.0,
        &format!(
            "[[event]]\nkind = \"fan_failure\"\nhousehold = {heat_pump}\nat = \"1h\"\n\
             [[event]]\nkind = \"controller_off\"\nhousehold = {heat_pump}\nat = \"2h\"\n"
        ),
    );
    let start = world.start_ms;
    world.advance_to(start + 3 * 3_600_000);
    let (_, faults, _) = world.truth();
    assert_eq!(faults.len(), 2);
    assert_eq!(faults[0].households, faults[1].households);
    assert!(faults.iter().all(|f| f.ended_ms.is_none()));
    let Some(Purpose::Repair { fault, .. }) =
        world.classify_request(heat_pump, start + 3 * 3_600_000)
    else {
        panic!("a repair");
    };
    assert_eq!(fault, 0, "the older fault is the one found");
    world.schedule_repair(fault, start + 4 * 3_600_000);
    world.advance_to(start + 10 * 3_600_000);
    let (_, faults, _) = world.truth();
    assert!(faults
        .iter()
        .all(|f| f.ended_ms == Some(start + 4 * 3_600_000)));
    assert!(faults
        .iter()
        .all(|f| f.window_end_ms < start + 10 * 3_600_000));
    // A trap during a fault, and two traps refused.
    let mix = quiet_mix(&format!(
        "[[event]]\nkind = \"window_airing\"\nhousehold = {heat_pump}\nat = \"1h\"\nduration = \"20m\"\n\
         [[event]]\nkind = \"pump_seized\"\nhousehold = {heat_pump}\nat = \"70m\"\n"
    ));
    let scenario = crate::scenario::build(&fleet, &mix, 1.0, 11).expect("a trap and a fault");
    assert_eq!((scenario.faults.len(), scenario.traps.len()), (1, 1));
    let two_traps = quiet_mix(&format!(
        "[[event]]\nkind = \"window_airing\"\nhousehold = {heat_pump}\nat = \"1h\"\n\
         [[event]]\nkind = \"heating_off\"\nhousehold = {heat_pump}\nat = \"70m\"\n"
    ));
    assert!(crate::scenario::build(&fleet, &two_traps, 1.0, 11).is_err());
}

#[test]
fn residents_airing_or_switching_off_do_not_call_and_the_traps_close() {
    let (mut world, _) = world(
        6,
        1.0,
        "[[event]]\nkind = \"window_airing\"\nhousehold = 1\nat = \"10h\"\nduration = \"30m\"\n\
         [[event]]\nkind = \"heating_off\"\nhousehold = 2\nat = \"12h\"\nduration = \"5h\"\n",
    );
    let start = world.start_ms;
    let warm = world.indoor_temp_c(1).expect("house");
    world.advance_to(start + 10 * 3_600_000 + 25 * 60_000);
    assert!(
        world.indoor_temp_c(1).expect("house") < warm - 1.5,
        "the air fell"
    );
    world.advance_to(start + 24 * 3_600_000);
    assert!(world.take_complaints().is_empty());
    let (_, _, traps) = world.truth();
    assert_eq!(traps.len(), 2);
    assert!(traps
        .iter()
        .all(|t| t.window_end_ms < start + 24 * 3_600_000));
}

#[test]
fn fast_callers_call_within_forty_minutes_and_night_callers_do_not_wait_for_morning() {
    let (probe, fleet) = world(12, 1.0, "");
    drop(probe);
    let heat_pump = first(&fleet, DeviceKind::HeatPump);
    let run = |residents: &str| {
        let mut mix = quiet_mix(&format!(
            "[[event]]\nkind = \"controller_off\"\nhousehold = {heat_pump}\nat = \"1h\"\n"
        ));
        let patch = Mix::parse(&format!("[residents]\n{residents}"), "p.toml").expect("patch");
        mix.residents.fast_caller_share = patch.residents.fast_caller_share;
        mix.residents.fast_patience = patch.residents.fast_patience;
        mix.residents.night_call_share = patch.residents.night_call_share;
        mix.residents.night_call_below_c = patch.residents.night_call_below_c;
        mix.residents.sleep_from = patch.residents.sleep_from;
        mix.residents.sleep_to = patch.residents.sleep_to;
        let scenario = crate::scenario::build(&fleet, &mix, 2.0, 11).expect("scenario");
        let mut world = World::new(&fleet, &mix, &scenario, 11);
        world.advance_to(scenario.start_ms + 40 * 3_600_000);
        let complaints = world.take_complaints();
        let (_, faults, _) = world.truth();
        (complaints, faults[0].noticed_ms.expect("noticed"))
    };
    let (fast, noticed) = run(
        "fast_caller_share = 1.0\nfast_patience = [\"10m\", \"40m\"]\nnight_call_share = 0.0\n\
         sleep_from = \"00:00\"\nsleep_to = \"00:00\"\n",
    );
    assert_eq!(fast.len(), 1);
    let waited = fast[0].received_at_ms - noticed;
    assert!((10 * 60_000..=40 * 60_000).contains(&waited), "{waited} ms");
    // Always asleep: without night calls nobody calls; a night caller calls once it is cold.
    let always_asleep = "sleep_from = \"00:00\"\nsleep_to = \"23:59\"\nfast_caller_share = 0.0\n";
    let (sleepers, _) = run(&format!("{always_asleep}night_call_share = 0.0\n"));
    assert_eq!(sleepers.len(), 1, "{sleepers:?}");
    let woke = crate::model::local_hour(sleepers[0].received_at_ms as f64 / 1000.0);
    assert!(
        !(1.0..23.9).contains(&woke),
        "a sleeper calls after waking at 23:59: {woke:.2} h"
    );
    let (night, noticed) = run(&format!(
        "{always_asleep}night_call_share = 1.0\nnight_call_below_c = [15.0, 15.0]\n"
    ));
    assert_eq!(night.len(), 1);
    assert!(night[0].received_at_ms >= noticed + 3_600_000);
    assert!(
        night[0].received_at_ms < sleepers[0].received_at_ms,
        "the night caller does not wait for waking"
    );
}
