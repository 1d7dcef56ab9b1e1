//! End-to-end tests of `simulator bench winter` against the real `gateway` process: a scripted
//! day whose score card is counted by hand, and the same seed scored at two speeds. The
//! gateway executable is taken from `HEATING_BIN_DIR` or the target folder these tests were
//! built into, and built with cargo if it is missing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use edge_agent::profile::Profile;
use simulator::bench::{run_winter, shipped_profiles, BenchOptions, BenchReport, Speed};
use simulator::fleet::{self, HouseholdSpec};
use simulator::mix::{FaultKind, Mix};

use crate::common::gateway_bin;
use wire::DeviceKind;

fn data(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bench")
        .join(file)
}

fn options(households: usize, days: f64, seed: u64, mix: Mix, speed: Speed) -> BenchOptions {
    let mut options =
        BenchOptions::new(households, days, seed, gateway_bin()).expect("bench options");
    options.mix = mix;
    options.speed = speed;
    options.progress_every = Duration::from_secs(5);
    options.gateway_log = "warn".into();
    options
}

fn profiles() -> Vec<Arc<Profile>> {
    shipped_profiles().expect("shipped profiles")
}

/// Runs `future` on a fresh multi-threaded runtime, failing the test after `deadline`.
fn run(deadline: Duration, options: BenchOptions) -> BenchReport {
    crate::common::run_bench("the bench", deadline, run_winter(options))
}

const HAND_SEED: u64 = 7;

/// Picks households for the scripted day: every repairable fault and the false order in a
/// township of its own (so no technician queue), the other events elsewhere, and the outage in
/// a village no other event touches.
struct Picks {
    lockout: usize,
    sensor: usize,
    leak: usize,
    away: usize,
    wifi: usize,
    offline: usize,
    outage: usize,
    outage_village: Vec<usize>,
}

fn pick(fleet: &[HouseholdSpec]) -> Picks {
    let mut townships: Vec<&str> = Vec::new();
    let mut used: Vec<usize> = Vec::new();
    let mut take = |kind: Option<DeviceKind>, own_township: bool, used: &mut Vec<usize>| {
        let found = fleet
            .iter()
            .find(|h| {
                kind.is_none_or(|k| h.kind == k)
                    && !used.contains(&h.index)
                    && (!own_township || !townships.contains(&h.township.id))
            })
            .expect("a household to pick");
        townships.push(found.township.id);
        used.push(found.index);
        found.index
    };
    let lockout = take(Some(DeviceKind::HeatPump), true, &mut used);
    let sensor = take(Some(DeviceKind::GasBoiler), true, &mut used);
    let leak = take(Some(DeviceKind::GasBoiler), true, &mut used);
    let away = take(None, true, &mut used);
    let wifi = take(None, false, &mut used);
    let offline = take(None, false, &mut used);
    let village_of = |h: &HouseholdSpec| -> Vec<usize> {
        fleet
            .iter()
            .filter(|o| o.township.id == h.township.id && o.village.id == h.village.id)
            .map(|o| o.index)
            .collect()
    };
    let outage_home = fleet
        .iter()
        .find(|h| village_of(h).iter().all(|m| !used.contains(m)))
        .expect("a village without other events");
    Picks {
        lockout,
        sensor,
        leak,
        away,
        wifi,
        offline,
        outage: outage_home.index,
        outage_village: village_of(outage_home),
    }
}

/// A day with only scripted events; residents feel the cold below 16 °C and always call after
/// an hour; technicians take exactly 5 min to dispatch, 30 min to drive and 60 min to repair.
fn hand_mix(p: &Picks) -> Mix {
    let mut text = String::from(
        "name = \"hand\"\nstart = \"2026-01-05\"\n\
         [fleet]\nnight_setback_share = 0.0\n\
         [residents]\ncomfort_c = 16.0\nvulnerable_comfort_c = 16.0\nnever_calls = 0.0\nvulnerable_never_calls = 0.0\n\
         patience = [\"1h\", \"1h\"]\nvulnerable_patience = [\"1h\", \"1h\"]\n\
         [technicians]\noperator_delay = [\"5m\", \"5m\"]\ntravel = [\"30m\", \"30m\"]\nmountain_extra_travel = [\"0s\", \"0s\"]\n",
    );
    for kind in FaultKind::ALL {
        let repair = if kind.is_supply() {
            ""
        } else {
            "repair = [\"1h\", \"1h\"]\n"
        };
        text.push_str(&format!("[faults.{}]\nrate = 0.0\n{repair}", kind.as_str()));
    }
    text.push_str("[traps.resident_away]\nrate = 0.0\n[traps.wifi_drop]\nrate = 0.0\n");
    for (kind, household, at, extra) in [
        ("lockout", p.lockout, "10h", ""),
        ("sensor_short", p.sensor, "9h", ""),
        ("water_leak", p.leak, "0s", "speed = 2.0\n"),
        ("resident_away", p.away, "0s", "duration = \"20h\"\n"),
        ("wifi_drop", p.wifi, "12h", "duration = \"8m\"\n"),
        ("box_offline", p.offline, "6h", "duration = \"5h\"\n"),
        ("power_outage", p.outage, "13h", "duration = \"2h\"\n"),
    ] {
        text.push_str(&format!(
            "[[event]]\nkind = \"{kind}\"\nhousehold = {household}\nat = \"{at}\"\n{extra}"
        ));
    }
    Mix::parse(&text, "hand.toml").expect("hand mix")
}

/// The scripted day (20 households, seed 7, 2026-01-05, pinned rules), counted by hand:
///
/// - lockout (heat pump) at 10:00: the code is in the 10:01 reading -> `device_fault` order.
///   The technician is there at 10:36 and done at 11:36; an hour and a half of cooling from
///   19-21 °C with -5 °C outside costs about 2 K, so nobody gets below 16 °C and nobody calls.
///   Without the repair the room would reach 16 °C hours later: uncomplained, detected, lead
///   (against that moment) > 1 h.
/// - sensor short (boiler) at 09:00: the code at 09:01 -> order; the same reasoning.
/// - water leak (boiler) from 00:00 at 2 bar/day: the pressure falls from ~1.35 bar and the
///   boiler locks out below 0.6 bar around noon -> order at the lockout reading, before anyone
///   is cold: uncomplained, detected.
/// - resident away 00:00-20:00 with 7 °C frost protection: the room falls below 14 °C after a
///   few hours and `indoor_cold` opens an order 30 min later: 1 false order (resident_away).
///   It clears only above 16 °C after the return, so it fires once.
/// - Wi-Fi drop 12:00-12:08: shorter than the 15 min offline rule, readings are kept and sent
///   on reconnect: no alert, no order.
/// - box offline 06:00-11:00: an `offline` alert at 06:15 (alert only): alerted, no order.
/// - power outage 13:00-15:00 in a village with no other event: its boxes go dark (offline
///   alerts, no order); two afternoon hours cool a house by about 2 K, nobody notices:
///   uncomplained, undetected, not noticeable. The pinned rules have no fleet rule, so no
///   incident: 0 of 1 outages.
///
/// So: 5 faults, 4 heating faults; nobody complains, so no pre-emptive rate (no complained
/// fault); uncomplained: 3 detected (each lead > 1 h), 1 undetected (the outage); 4 rule orders
/// of which 1 false (25 %); 0 complaints; 4 technician visits (3 repairs
/// and the check of the false order), each dispatched after 5 min, on site after 35 min and
/// done after 95 min: 100 % on every SLA stage.
#[test]
fn a_scripted_day_gives_the_hand_counted_score_card() {
    let fleet = fleet::generate(20, HAND_SEED, &profiles()).expect("fleet");
    let picks = pick(&fleet);
    let mut options = options(20, 1.0, HAND_SEED, hand_mix(&picks), Speed::Max);
    options.rules = Some(data("rules.toml"));
    let report = run(Duration::from_secs(120), options);
    let card = &report.score;
    let table = card.table();
    eprintln!("{table}");
    assert_eq!(
        report.run.readings_rejected.values().sum::<u64>(),
        0,
        "{table}"
    );
    let injected = |kind: &str| card.faults_injected.get(kind).copied().unwrap_or(0);
    for kind in [
        "lockout",
        "sensor_short",
        "water_leak",
        "box_offline",
        "power_outage",
    ] {
        assert_eq!(injected(kind), 1, "{kind}\n{table}");
    }
    assert_eq!(card.faults_injected.values().sum::<u64>(), 5, "{table}");
    assert_eq!(card.traps.get("resident_away"), Some(&1), "{table}");
    assert_eq!(card.traps.get("wifi_drop"), Some(&1), "{table}");
    let (complained, uncomplained) = (&card.heating.complained, &card.heating.uncomplained);
    assert_eq!(complained.faults, 0, "{table}");
    assert_eq!(complained.pre_emptive_rate, None, "{table}");
    assert_eq!(
        (
            uncomplained.faults,
            uncomplained.detected,
            uncomplained.undetected,
            uncomplained.undetected_noticeable
        ),
        (4, 3, 1, 0),
        "{table}"
    );
    assert_eq!(uncomplained.lead_times.count, 3, "{table}");
    assert!(
        uncomplained.lead_times.p10_min.is_some_and(|m| m >= 60.0),
        "{table}"
    );
    assert!(report.run.valid, "{:?}", report.run.invalid_reasons);
    assert_eq!(report.run.sync, "watermark");
    assert_eq!(card.orders.rule, 4, "{table}");
    assert_eq!(card.orders.detections, 3, "{table}");
    assert_eq!(card.orders.duplicates, 0, "{table}");
    assert_eq!(card.orders.false_orders, 1, "{table}");
    assert_eq!(
        card.orders.false_by_cause.get("resident_away"),
        Some(&1),
        "{table}"
    );
    assert_eq!(card.orders.false_order_share, Some(0.25), "{table}");
    assert_eq!(card.complaints.total, 0, "{table}");
    assert_eq!(
        (card.supply.faults, card.supply.one_incident),
        (1, 0),
        "{table}"
    );
    assert_eq!(card.supply.rows[0].households, picks.outage_village.len());
    assert_eq!(card.supply.rows[0].per_device_orders, 0, "{table}");
    assert_eq!(card.communication.injected, 1, "{table}");
    assert_eq!(card.communication.alerted, 1, "{table}");
    assert_eq!(card.communication.ordered, 0, "{table}");
    assert_eq!(card.sla.visits, 4, "{table}");
    assert_eq!(card.sla.dispatch_share, Some(1.0), "{table}");
    assert_eq!(card.sla.on_site_share, Some(1.0), "{table}");
    assert_eq!(card.sla.repaired_share, Some(1.0), "{table}");
    assert_eq!(report.run.world.late_actions, 0);
}

/// The same seed and mix at full speed and at 3600x: the same score card (the run facts such
/// as wall time differ; the card must not).
#[test]
fn the_same_seed_gives_the_same_score_card_at_two_speeds() {
    let mix = Mix::load(&data("dense.toml")).expect("dense mix");
    let fast = run(
        Duration::from_secs(120),
        options(20, 0.5, 3, mix.clone(), Speed::Max),
    );
    let paced = run(
        Duration::from_secs(120),
        options(20, 0.5, 3, mix, Speed::Factor(3600.0)),
    );
    eprintln!("{}", fast.score.table());
    let fast_json = serde_json::to_value(&fast.score).expect("json");
    let paced_json = serde_json::to_value(&paced.score).expect("json");
    assert!(
        fast.score.faults_injected.values().sum::<u64>() >= 6,
        "the dense mix injects faults:\n{}",
        fast.score.table()
    );
    assert!(fast.score.orders.rule > 0, "{}", fast.score.table());
    assert_eq!(
        fast_json,
        paced_json,
        "max speed:\n{}\n3600x:\n{}",
        fast.score.table(),
        paced.score.table()
    );
    assert!(
        paced.run.wall_seconds >= 12.0,
        "3600x paces half a day over at least 12 s, took {}",
        paced.run.wall_seconds
    );
}
