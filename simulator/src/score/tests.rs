//! Tests of the score card: hand-counted runs, lead-time percentiles, supply incidents and
//! call tasks, each against numbers counted by hand.

use super::attribution::group_level;
use super::*;
use crate::mix::{FaultClass, FaultKind, TrapKind};

const H: i64 = 3_600_000;
const M: i64 = 60_000;

fn household(device: &str, village: &str) -> HouseholdTruth {
    HouseholdTruth {
        device_id: device.to_owned(),
        township: "yanqing".to_owned(),
        village: village.to_owned(),
        night_setback_k: 0.0,
    }
}

fn fault(id: usize, kind: FaultKind, households: Vec<usize>, start: i64) -> FaultTruth {
    FaultTruth {
        id,
        kind,
        households,
        village: kind
            .is_supply()
            .then(|| ("yanqing".to_owned(), "dongguan".to_owned())),
        start_ms: start,
        ended_ms: Some(start + 3 * H),
        window_end_ms: start + 5 * H,
        noticed_ms: None,
        would_notice_ms: None,
    }
}

fn order(id: i64, device: &str, category: &str, source: &str, at: i64) -> OrderView {
    OrderView {
        id,
        episode_id: None,
        device_id: device.to_owned(),
        township: "yanqing".to_owned(),
        category: category.to_owned(),
        source: source.to_owned(),
        created_at_ms: at,
        state: "created".to_owned(),
        pre_emptive: None,
    }
}

/// A hand-made run, counted by hand:
/// - fault 0 (lockout, household 0) at 0: rule order at 1 min; would notice at 3 h;
///   nobody called -> uncomplained, detected, lead 179 min (not in the rate).
/// - fault 1 (refrigerant leak, household 1) at 0: complaint at 2 h, rule order at 2 h 30
///   -> late (a miss).
/// - fault 2 (water leak, household 2) at 0: complaint at 1 h, no rule order -> missed.
///   (The complaint order, source hotline_12345, is intake, not a detection.)
/// - fault 3 (sensor short, household 3) at 0: no order, nobody would notice ->
///   uncomplained, undetected (not noticeable).
/// - fault 4 (power outage, households 4 and 5, village dongguan) at 0: incident on
///   `yanqing-dongguan` at 20 min, first complaint at 2 h -> pre-emptive, lead 100 min,
///   one incident and no per-device order.
/// - fault 5 (box offline, household 6): an offline alert at 15 min -> alerted, no order.
/// - household 7, resident away (trap) from 0 to 10 h: rule order at 6 h -> false
///   (resident_away). Household 8: rule order at 2 h, no fault -> false (no_fault).
/// - fault 0 gets a second rule order at 2 h -> duplicate.
///
/// So: complained 3 (faults 1, 2, 4): pre-emptive 1, late 1, missed 1 -> rate 1/3 =
/// 33.3 %, lead 100; uncomplained 2: detected 1 (lead 179), undetected 1; rule orders 6
/// (detections: fault 0, fault 1, the incident = 3; duplicates 1; false 2) -> false share
/// 2/6 = 33.3 %. No order has an episode id: the incident's detector is `incident`, the
/// others `unknown`.
// Long on purpose: one hand-counted run, its inputs and every expected figure side by side,
// so a reader can check each count against the doc comment above.
#[test]
fn a_hand_counted_run_gives_the_hand_counted_card() {
    let households = vec![
        household("yanqing-xiguan-0001", "xiguan"),
        household("yanqing-xiguan-0002", "xiguan"),
        household("yanqing-xiguan-0003", "xiguan"),
        household("yanqing-xiguan-0004", "xiguan"),
        household("yanqing-dongguan-0001", "dongguan"),
        household("yanqing-dongguan-0002", "dongguan"),
        household("yanqing-beiguan-0001", "beiguan"),
        household("yanqing-beiguan-0002", "beiguan"),
        household("yanqing-beiguan-0003", "beiguan"),
    ];
    let mut faults = vec![
        fault(0, FaultKind::Lockout, vec![0], 0),
        fault(1, FaultKind::RefrigerantLeak, vec![1], 0),
        fault(2, FaultKind::WaterLeak, vec![2], 0),
        fault(3, FaultKind::SensorShort, vec![3], 0),
        fault(4, FaultKind::PowerOutage, vec![4, 5], 0),
        fault(5, FaultKind::BoxOffline, vec![6], 0),
    ];
    faults[0].would_notice_ms = Some(3 * H);
    faults[1].would_notice_ms = Some(H);
    faults[2].would_notice_ms = Some(30 * M);
    faults[4].would_notice_ms = Some(90 * M);
    let traps = vec![TrapTruth {
        id: 0,
        kind: TrapKind::ResidentAway,
        household: 7,
        start_ms: 0,
        window_end_ms: 10 * H,
    }];
    let complaint = |household: usize, fault: usize, at: i64| ComplaintRecord {
        household,
        device_id: households[household].device_id.clone(),
        fault: Some(fault),
        received_at_ms: at,
        channel: "hotline_12345".to_owned(),
        reply: Ok(ComplaintReply {
            complaint_id: Some(1),
            order_id: Some(1),
            linked: Some(fault == 4),
            pre_emptive: None,
        }),
    };
    let complaints = vec![
        complaint(1, 1, 2 * H),
        complaint(2, 2, H),
        complaint(4, 4, 2 * H),
        complaint(5, 4, 3 * H),
    ];
    let orders = vec![
        order(1, "yanqing-xiguan-0001", "repair", "rule", M),
        order(
            2,
            "yanqing-xiguan-0001",
            "low_indoor_temperature",
            "rule",
            2 * H,
        ),
        order(
            3,
            "yanqing-xiguan-0002",
            "low_indoor_temperature",
            "rule",
            2 * H + 30 * M,
        ),
        order(4, "yanqing-xiguan-0003", "repair", "hotline_12345", H),
        order(5, "yanqing-dongguan", "power_supply", "rule", 20 * M),
        order(
            6,
            "yanqing-beiguan-0002",
            "low_indoor_temperature",
            "rule",
            6 * H,
        ),
        order(7, "yanqing-beiguan-0003", "repair", "rule", 2 * H),
    ];
    let alerts = vec![AlertView {
        episode_id: "offline:yanqing-beiguan-0001:900000".to_owned(),
        device_id: "yanqing-beiguan-0001".to_owned(),
        rule_id: "offline".to_owned(),
        fired_at_ms: 15 * M,
        resolved_at_ms: None,
    }];
    let visits = vec![VisitRecord {
        household: 0,
        fault: Some(0),
        source: "rule".to_owned(),
        request_ms: M,
        dispatched_ms: M + 5 * M,
        on_site_ms: M + 2 * H + M,
        done_ms: M + 3 * H,
    }];
    let card = score(&Inputs {
        households,
        faults,
        traps,
        complaints,
        orders,
        alerts,
        visits,
        defrost_cycles: 12,
    });
    let c = &card.heating.complained;
    assert_eq!((c.faults, c.pre_emptive, c.late, c.missed), (3, 1, 1, 1));
    assert_eq!(card.heating_faults, 5);
    assert_eq!(c.pre_emptive_rate, Some(0.333));
    assert_eq!(c.lead_times.count, 1);
    assert_eq!(c.lead_times.median_min, Some(100.0));
    assert_eq!(c.lead_times.p10_min, Some(100.0));
    let u = &card.heating.uncomplained;
    assert_eq!(
        (u.faults, u.detected, u.undetected, u.undetected_noticeable),
        (2, 1, 1, 0)
    );
    assert_eq!(u.lead_times.median_min, Some(179.0));
    let detectors: Vec<(&str, u64, u64, u64)> = card
        .detectors
        .iter()
        .map(|d| {
            (
                d.rule_id.as_str(),
                d.opened,
                d.attributed,
                d.first_detections,
            )
        })
        .collect();
    assert_eq!(detectors, vec![("incident", 1, 1, 1), ("unknown", 5, 3, 2)]);
    assert_eq!(card.orders.total, 7);
    assert_eq!(card.orders.rule, 6);
    assert_eq!(card.orders.intake.get("hotline_12345"), Some(&1));
    assert_eq!(card.orders.detections, 3);
    assert_eq!(card.orders.duplicates, 1);
    assert_eq!(card.orders.supply_incidents, 1);
    assert_eq!(card.orders.per_device_supply_orders, 0);
    assert_eq!(card.orders.false_orders, 2);
    assert_eq!(card.orders.false_by_cause.get("resident_away"), Some(&1));
    assert_eq!(card.orders.false_by_cause.get("no_fault"), Some(&1));
    assert_eq!(card.orders.false_order_share, Some(0.333));
    assert_eq!((card.supply.faults, card.supply.one_incident), (1, 1));
    assert_eq!(
        card.communication,
        CommunicationSummary {
            injected: 1,
            alerted: 1,
            ordered: 0
        }
    );
    assert_eq!(card.complaints.total, 4);
    assert_eq!(card.complaints.gateway_linked, 2);
    let misses: Vec<FaultKind> = card
        .complaints_not_pre_empted
        .iter()
        .map(|f| f.kind)
        .collect();
    assert_eq!(
        misses,
        vec![FaultKind::RefrigerantLeak, FaultKind::WaterLeak]
    );
    // The visit: dispatched after 5 min, on site after 2 h 1 min, done after 2 h 59 min.
    assert_eq!(card.sla.dispatched_within_10_min, 1);
    assert_eq!(card.sla.on_site_within_2_h, 0);
    assert_eq!(card.sla.repaired_within_4_h, 1);
    assert_eq!(card.traps.get("resident_away"), Some(&1));
    assert_eq!(card.traps.get("defrost_cycles"), Some(&12));
    let table = card.table();
    assert!(table.contains("33.3 %"), "{table}");
    assert!(table.contains("lockout"), "{table}");
}

/// injected, pre-emptive, late, missed, detected, undetected.
type Split = (u64, u64, u64, u64, u64, u64);
/// rule id, opened, attributed, precision, first detections, false orders, call tasks.
type DetectorLine<'a> = (&'a str, u64, u64, Option<f64>, u64, u64, u64);

fn rule_order(id: i64, rule: &str, device: &str, category: &str, at: i64) -> OrderView {
    OrderView {
        episode_id: Some(format!("{rule}:{device}:{at}")),
        ..order(id, device, category, "rule", at)
    }
}

/// The complained / uncomplained split, detectors and call tasks, counted by hand:
/// - fault 0 (lockout, h0): `device_fault` order at 1 min, complaint at 2 h -> pre-emptive,
///   lead 119 min. A second `device_fault` order at 2 h 30 is a duplicate.
/// - fault 1 (refrigerant leak, h1): complaint at 1 h, `indoor_cold` order at 1 h 30 ->
///   late (a miss).
/// - fault 2 (water leak, h2): complaint at 1 h, no rule order (the hotline's order is
///   intake) -> missed.
/// - fault 3 (flow switch, h3): nobody called, would notice at 4 h, `protection_trips`
///   order at 1 h -> uncomplained detected, lead 180 min.
/// - fault 4 (sensor short, h4): nobody called, would notice at 2 h, no order ->
///   uncomplained undetected, noticeable.
/// - fault 5 (box offline, h5): call task (`contact_household`) of `offline_contact` at
///   20 min -> attributed, not false.
/// - fault 6 (gas pressure drop, h8 and h9 in dongguan): `village_gas_supply` incident at
///   1 h, nobody called, no would-notice time -> uncomplained detected, no lead; code-less.
/// - h6: an `offline_contact` call task at 1 h with no fault -> false. h7: an
///   `indoor_cold` order at 3 h with no fault -> false.
///
/// Heating faults 6 (0-4, 6): complained 3 = 1 pre-emptive + 1 late + 1 missed -> rate
/// 33.3 %, lead 119; uncomplained 3 = 2 detected (one lead: 180) + 1 undetected
/// (noticeable). Coded (0-4): 5 = complained 1/1/1, uncomplained 1 detected + 1
/// undetected; code-less (6): 1 uncomplained detected. Rule orders 8, false 2 -> 25 %;
/// call tasks 2, 1 on a communication fault. Detectors: device_fault 2/2 (precision 100 %,
/// first 1), indoor_cold 1 of 2 (50 %, first 1, false 1), offline_contact 1 of 2 (50 %,
/// first 1, false 1, call tasks 2), protection_trips 1/1 (first 1), village_gas_supply 1/1
/// (first 1).
// Long on purpose: one hand-counted run, its inputs and every expected figure side by side,
// so a reader can check each count against the doc comment above.
#[test]
fn complained_and_uncomplained_faults_detectors_and_call_tasks_are_counted_apart() {
    let households = vec![
        household("yanqing-xiguan-0001", "xiguan"),
        household("yanqing-xiguan-0002", "xiguan"),
        household("yanqing-xiguan-0003", "xiguan"),
        household("yanqing-xiguan-0004", "xiguan"),
        household("yanqing-xiguan-0005", "xiguan"),
        household("yanqing-beiguan-0001", "beiguan"),
        household("yanqing-beiguan-0002", "beiguan"),
        household("yanqing-beiguan-0003", "beiguan"),
        household("yanqing-dongguan-0001", "dongguan"),
        household("yanqing-dongguan-0002", "dongguan"),
    ];
    let mut faults = vec![
        fault(0, FaultKind::Lockout, vec![0], 0),
        fault(1, FaultKind::RefrigerantLeak, vec![1], 0),
        fault(2, FaultKind::WaterLeak, vec![2], 0),
        fault(3, FaultKind::FlowSwitch, vec![3], 0),
        fault(4, FaultKind::SensorShort, vec![4], 0),
        fault(5, FaultKind::BoxOffline, vec![5], 0),
        fault(6, FaultKind::GasPressureDrop, vec![8, 9], 0),
    ];
    faults[3].would_notice_ms = Some(4 * H);
    faults[4].would_notice_ms = Some(2 * H);
    let complaint = |household: usize, fault: usize, at: i64| ComplaintRecord {
        household,
        device_id: households[household].device_id.clone(),
        fault: Some(fault),
        received_at_ms: at,
        channel: "hotline_12345".to_owned(),
        reply: Ok(ComplaintReply {
            complaint_id: Some(1),
            order_id: Some(1),
            linked: Some(false),
            pre_emptive: None,
        }),
    };
    let complaints = vec![
        complaint(0, 0, 2 * H),
        complaint(1, 1, H),
        complaint(2, 2, H),
    ];
    let d = |h: usize| households[h].device_id.clone();
    let orders = vec![
        rule_order(1, "device_fault", &d(0), "repair", M),
        rule_order(2, "device_fault", &d(0), "repair", 2 * H + 30 * M),
        rule_order(
            3,
            "indoor_cold",
            &d(1),
            "low_indoor_temperature",
            H + 30 * M,
        ),
        rule_order(4, "protection_trips", &d(3), "repeated_protection_trips", H),
        rule_order(5, "offline_contact", &d(5), CALL_TASK_CATEGORY, 20 * M),
        rule_order(6, "offline_contact", &d(6), CALL_TASK_CATEGORY, H),
        rule_order(7, "indoor_cold", &d(7), "low_indoor_temperature", 3 * H),
        OrderView {
            episode_id: Some(
                "village_gas_supply:village:yanqing/yanqing-dongguan:3600000".to_owned(),
            ),
            ..order(
                8,
                "village:yanqing/yanqing-dongguan",
                "gas_supply",
                "rule",
                H,
            )
        },
        order(9, &d(2), "repair", "hotline_12345", H),
    ];
    let card = score(&Inputs {
        households,
        faults,
        complaints,
        orders,
        ..Inputs::default()
    });
    let c = &card.heating.complained;
    assert_eq!((c.faults, c.pre_emptive, c.late, c.missed), (3, 1, 1, 1));
    assert_eq!(c.pre_emptive_rate, Some(0.333));
    assert_eq!(
        (c.lead_times.count, c.lead_times.median_min),
        (1, Some(119.0))
    );
    let u = &card.heating.uncomplained;
    assert_eq!(
        (u.faults, u.detected, u.undetected, u.undetected_noticeable),
        (3, 2, 1, 1)
    );
    assert_eq!(
        (u.lead_times.count, u.lead_times.median_min),
        (1, Some(180.0))
    );
    assert_eq!(card.heating_faults, 6);
    assert_eq!(card.heating.injected, 6);
    let split = |t: &FaultTally| {
        (
            t.injected,
            t.complained.pre_emptive,
            t.complained.late,
            t.complained.missed,
            t.uncomplained.detected,
            t.uncomplained.undetected,
        )
    };
    assert_eq!(split(&card.coded), (5, 1, 1, 1, 1, 1));
    // The supply fault is neither coded nor code-less: a village, not a unit.
    assert_eq!(split(&card.code_less), (0, 0, 0, 0, 0, 0));
    let classes: Vec<(FaultClass, Split)> = card
        .by_class
        .iter()
        .map(|r| (r.class, split(&r.tally)))
        .collect();
    assert_eq!(
        classes,
        vec![
            (FaultClass::Sudden, (3, 1, 0, 0, 1, 1)),
            (FaultClass::Gradual, (2, 0, 1, 1, 0, 0)),
            (FaultClass::Supply, (1, 0, 0, 0, 1, 0)),
            (FaultClass::Communication, (1, 0, 0, 0, 1, 0)),
        ]
    );
    let lockout = card
        .by_kind
        .iter()
        .find(|r| r.kind == FaultKind::Lockout)
        .expect("lockout row");
    assert!(lockout.raises_code);
    assert_eq!(lockout.tally.complained.pre_emptive_rate, Some(1.0));
    let gas = card
        .by_kind
        .iter()
        .find(|r| r.kind == FaultKind::GasPressureDrop)
        .expect("gas row");
    assert!(!gas.raises_code);
    assert_eq!(card.orders.rule, 8);
    assert_eq!(card.orders.intake.get("hotline_12345"), Some(&1));
    assert_eq!(card.orders.false_orders, 2);
    assert_eq!(card.orders.false_by_cause.get("no_fault"), Some(&2));
    assert_eq!(card.orders.false_order_share, Some(0.25));
    assert_eq!(card.orders.call_tasks, 2);
    assert_eq!(card.orders.call_tasks_on_communication_faults, 1);
    assert_eq!(card.orders.detections, 5);
    assert_eq!(card.orders.duplicates, 1);
    assert_eq!(card.communication.ordered, 1);
    let detectors: Vec<DetectorLine> = card
        .detectors
        .iter()
        .map(|d| {
            (
                d.rule_id.as_str(),
                d.opened,
                d.attributed,
                d.precision,
                d.first_detections,
                d.false_orders,
                d.call_tasks,
            )
        })
        .collect();
    assert_eq!(
        detectors,
        vec![
            ("device_fault", 2, 2, Some(1.0), 1, 0, 0),
            ("indoor_cold", 2, 1, Some(0.5), 1, 1, 0),
            ("offline_contact", 2, 1, Some(0.5), 1, 1, 2),
            ("protection_trips", 1, 1, Some(1.0), 1, 0, 0),
            ("village_gas_supply", 1, 1, Some(1.0), 1, 0, 0),
        ]
    );
    let verdicts: Vec<(usize, Verdict, Option<f64>)> = card
        .faults
        .iter()
        .map(|f| (f.id, f.verdict, f.lead_min))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (0, Verdict::PreEmptive, Some(119.0)),
            (1, Verdict::Late, None),
            (2, Verdict::Missed, None),
            (3, Verdict::Detected, Some(180.0)),
            (4, Verdict::Undetected, None),
            (5, Verdict::Detected, None),
            (6, Verdict::Detected, None),
        ]
    );
    assert_eq!(card.faults[0].detected_by.as_deref(), Some("device_fault"));
    let json = serde_json::to_value(&card).expect("json");
    assert_eq!(
        json["by_kind"][0]["complained"]["pre_emptive"],
        serde_json::json!(1)
    );
    let table = card.table();
    for text in ["[code-less]", "offline_contact", "33.3 %", "call tasks"] {
        assert!(table.contains(text), "{text}\n{table}");
    }
}

#[test]
fn per_device_orders_during_an_outage_are_counted_against_it() {
    let households = vec![
        household("yanqing-dongguan-0001", "dongguan"),
        household("yanqing-dongguan-0002", "dongguan"),
    ];
    let mut outage = fault(0, FaultKind::PowerOutage, vec![0, 1], 0);
    outage.would_notice_ms = Some(2 * H);
    let orders = vec![
        order(1, "yanqing-dongguan-0001", "repair", "rule", 30 * M),
        order(2, "yanqing-dongguan-0002", "repair", "rule", 40 * M),
    ];
    let card = score(&Inputs {
        households,
        faults: vec![outage],
        orders,
        ..Inputs::default()
    });
    assert_eq!(card.orders.per_device_supply_orders, 2);
    assert_eq!(card.supply.one_incident, 0);
    assert_eq!(card.supply.rows[0].incidents, 0);
    assert_eq!(
        card.heating.uncomplained.detected, 1,
        "the first per-device order still detects it"
    );
    assert_eq!(card.orders.false_orders, 0);
}

#[test]
fn lead_time_percentiles_use_the_nearest_rank() {
    let leads = LeadTimes::of((1..=20).map(f64::from).collect());
    assert_eq!(leads.median_min, Some(10.5));
    assert_eq!(leads.p10_min, Some(2.0));
    assert_eq!(LeadTimes::of(Vec::new()).median_min, None);
}

#[test]
fn supply_incidents_name_their_village_whole() {
    // The gateway's form, with the village id that carries its township.
    assert_eq!(
        group_level("village:jiuxian/jiuxian-gucheng", "jiuxian", "gucheng"),
        2
    );
    // A village named like its township is not every village of that township.
    assert_eq!(
        group_level("village:jiuxian/jiuxian-gucheng", "jiuxian", "jiuxian"),
        0
    );
    assert_eq!(
        group_level("village:jiuxian/jiuxian-jiuxian", "jiuxian", "jiuxian"),
        2
    );
    assert_eq!(group_level("yanqing/dongguan", "yanqing", "dongguan"), 2);
    assert_eq!(group_level("yanqing-dongguan", "yanqing", "dongguan"), 2);
    assert_eq!(group_level("dongguan", "yanqing", "dongguan"), 2);
    assert_eq!(group_level("township:yanqing", "yanqing", "dongguan"), 1);
    assert_eq!(
        group_level("village:kangzhuang/dongguan", "yanqing", "dongguan"),
        0
    );
    assert_eq!(
        group_level("village:yanqing/xiguan", "yanqing", "dongguan"),
        0
    );
}
