//! The 未诉先办 score card: ground truth of a run (what was injected, when each resident
//! noticed and called) against the work orders the gateway really opened. Pure: the same
//! inputs always give the same card, so a test can check it by hand.
//!
//! Definitions (also printed with the card):
//! - An order is *attributed* to a fault when its device is one the fault affects and it was
//!   created inside the fault's window: from the fault's start to one hour after the house
//!   recovered (room back above the resident's comfort + 1 K after the repair or the supply's
//!   return), or the end of the run if it did not. A supply incident (category `power_supply`
//!   or `gas_supply` on a device id that is no household, naming a village or township) is
//!   attributed to the supply fault of that village active then.
//! - A fault is *detected* by its first attributed order opened by a rule (source `rule`).
//! - Its *reference time* is the resident's first complaint, or, when nobody called, the moment
//!   the resident would have noticed (the room below their comfort temperature for 10 minutes
//!   in the same run without any repair). A fault with neither is *latent* (nothing to race
//!   against yet).
//! - *Pre-emptive*: detected before the reference time (or detected and latent). *Late*:
//!   detected at or after it. *Missed*: not detected, with a reference time. Pre-emptive rate =
//!   pre-emptive / (pre-emptive + late + missed), over sudden, gradual and supply faults.
//! - *Lead time* = reference time - detection, over pre-emptive faults with a reference time.
//! - A *false order* is a rule order attributed to no fault (traps and healthy houses).
//!   False-order share = false orders / rule orders.
//! - A supply fault is *one incident* when exactly one supply incident was attributed to it and
//!   no per-device rule order.
//! - Communication faults (a box offline, the heater fine) are reported apart: nobody notices
//!   them; *alerted* means an alert on the device fired inside the window.
//! - SLA: each technician visit from its request (rule order or complaint): dispatched within
//!   10 minutes, on site within 2 hours, repaired within 4 hours.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::mix::{FaultClass, FaultKind, TrapKind};

/// A household as the score card needs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HouseholdTruth {
    pub device_id: String,
    pub township: String,
    pub village: String,
    /// Night set-back depth, K (0: none).
    pub night_setback_k: f64,
}

/// One injected fault with what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultTruth {
    pub id: usize,
    pub kind: FaultKind,
    /// Indexes into the households.
    pub households: Vec<usize>,
    /// `(township, village)` of a supply fault.
    pub village: Option<(String, String)>,
    pub start_ms: i64,
    /// When it ended (repair, supply back, box back); `None` if still active at the end.
    pub ended_ms: Option<i64>,
    /// End of the attribution window (see the module docs).
    pub window_end_ms: i64,
    /// First moment a resident was uncomfortable.
    pub noticed_ms: Option<i64>,
    /// First moment a resident would have been uncomfortable without any repair.
    pub would_notice_ms: Option<i64>,
}

/// One sprung trap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrapTruth {
    pub id: usize,
    pub kind: TrapKind,
    pub household: usize,
    pub start_ms: i64,
    pub window_end_ms: i64,
}

/// What the gateway answered to a complaint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComplaintReply {
    #[serde(default)]
    pub complaint_id: Option<i64>,
    #[serde(default)]
    pub order_id: Option<i64>,
    #[serde(default)]
    pub linked: Option<bool>,
    #[serde(default)]
    pub pre_emptive: Option<bool>,
}

/// One resident's complaint.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComplaintRecord {
    pub household: usize,
    pub device_id: String,
    /// The fault it is about (`None`: the resident was cold without an injected fault).
    pub fault: Option<usize>,
    pub received_at_ms: i64,
    pub channel: String,
    /// The gateway's answer, or why posting failed.
    pub reply: Result<ComplaintReply, String>,
}

/// A work order as the gateway lists it (fields the card needs; others are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub id: i64,
    #[serde(default)]
    pub episode_id: Option<String>,
    pub device_id: String,
    #[serde(default)]
    pub township: String,
    pub category: String,
    #[serde(default)]
    pub source: String,
    pub created_at_ms: i64,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub pre_emptive: Option<bool>,
}

/// An alert as the gateway lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertView {
    pub episode_id: String,
    pub device_id: String,
    pub rule_id: String,
    pub fired_at_ms: i64,
    #[serde(default)]
    pub resolved_at_ms: Option<i64>,
}

/// One technician visit of the technician model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VisitRecord {
    pub household: usize,
    /// The fault repaired, if any.
    pub fault: Option<usize>,
    /// `rule` or the complaint's channel.
    pub source: String,
    pub request_ms: i64,
    pub dispatched_ms: i64,
    pub on_site_ms: i64,
    pub done_ms: i64,
}

/// Everything the card is computed from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub households: Vec<HouseholdTruth>,
    pub faults: Vec<FaultTruth>,
    pub traps: Vec<TrapTruth>,
    pub complaints: Vec<ComplaintRecord>,
    pub orders: Vec<OrderView>,
    pub alerts: Vec<AlertView>,
    pub visits: Vec<VisitRecord>,
    pub defrost_cycles: u64,
}

/// Median and 10th percentile (nearest rank) of a list of minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LeadTimes {
    pub count: usize,
    pub median_min: Option<f64>,
    pub p10_min: Option<f64>,
}

impl LeadTimes {
    fn of(mut minutes: Vec<f64>) -> LeadTimes {
        minutes.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let n = minutes.len();
            if n == 0 {
                return None;
            }
            let index = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            Some(round1(minutes[index]))
        };
        let median = match minutes.len() {
            0 => None,
            n if n % 2 == 1 => Some(round1(minutes[n / 2])),
            n => Some(round1((minutes[n / 2 - 1] + minutes[n / 2]) / 2.0)),
        };
        LeadTimes {
            count: minutes.len(),
            median_min: median,
            p10_min: rank(0.1),
        }
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 1000.0).round() / 1000.0)
}

/// How one heating fault came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    PreEmptive,
    Late,
    Missed,
    Latent,
}

/// One line per fault kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindRow {
    pub kind: FaultKind,
    pub class: FaultClass,
    pub injected: u64,
    pub pre_emptive: u64,
    pub late: u64,
    pub missed: u64,
    pub latent: u64,
    pub complained: u64,
    pub lead_times: LeadTimes,
}

/// One fault's result, for the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultResult {
    pub id: usize,
    pub kind: FaultKind,
    pub devices: Vec<String>,
    pub start_ms: i64,
    pub detected_ms: Option<i64>,
    pub reference_ms: Option<i64>,
    pub complained_ms: Option<i64>,
    pub outcome: Option<Outcome>,
    pub lead_min: Option<f64>,
    pub rule_orders: usize,
}

/// Orders by what they turned out to be.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OrderCounts {
    /// Every order the gateway listed.
    pub total: u64,
    /// Opened by rules.
    pub rule: u64,
    /// Opened from complaints, by channel.
    pub intake: BTreeMap<String, u64>,
    /// Rule orders that were a fault's first detection.
    pub detections: u64,
    /// Further rule orders for an already detected household fault.
    pub duplicates: u64,
    /// Supply incidents attributed to a supply fault.
    pub supply_incidents: u64,
    /// Rule orders on single devices during a supply fault (the incident should replace them).
    pub per_device_supply_orders: u64,
    /// Rule orders with no fault behind them.
    pub false_orders: u64,
    /// False orders by the situation the device was in: a trap kind, or `no_fault`.
    pub false_by_cause: BTreeMap<String, u64>,
    pub false_order_share: Option<f64>,
    /// Rule orders per category.
    pub by_category: BTreeMap<String, u64>,
}

/// One supply fault's incidents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SupplyRow {
    pub fault: usize,
    pub kind: FaultKind,
    pub village: String,
    pub households: usize,
    pub incidents: u64,
    pub per_device_orders: u64,
    pub one_incident: bool,
}

/// Supply faults raised as one incident each.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SupplySummary {
    pub faults: u64,
    pub one_incident: u64,
    pub rows: Vec<SupplyRow>,
}

/// Communication faults (box offline; the heater works).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CommunicationSummary {
    pub injected: u64,
    pub alerted: u64,
    pub ordered: u64,
}

/// Complaints and what the gateway answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ComplaintSummary {
    pub total: u64,
    pub by_channel: BTreeMap<String, u64>,
    /// About a resident cold without an injected fault.
    pub without_fault: u64,
    pub posted: u64,
    pub failed: u64,
    /// The first posting error, if any.
    pub first_error: Option<String>,
    /// The gateway said an order for the device was already open.
    pub gateway_linked: u64,
    /// The gateway marked the order pre-emptive.
    pub gateway_pre_emptive: u64,
}

/// SLA compliance of the technician model's visits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SlaSummary {
    pub visits: u64,
    pub dispatched_within_10_min: u64,
    pub on_site_within_2_h: u64,
    pub repaired_within_4_h: u64,
    pub dispatch_share: Option<f64>,
    pub on_site_share: Option<f64>,
    pub repaired_share: Option<f64>,
}

/// The score card.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreCard {
    pub faults_injected: BTreeMap<String, u64>,
    pub traps: BTreeMap<String, u64>,
    pub by_kind: Vec<KindRow>,
    /// Sudden, gradual and supply faults.
    pub heating_faults: u64,
    pub pre_emptive: u64,
    pub late: u64,
    pub missed: u64,
    pub latent: u64,
    pub pre_emptive_rate: Option<f64>,
    pub lead_times: LeadTimes,
    pub orders: OrderCounts,
    pub supply: SupplySummary,
    pub communication: CommunicationSummary,
    pub complaints: ComplaintSummary,
    pub sla: SlaSummary,
    pub missed_faults: Vec<FaultResult>,
    pub false_orders: Vec<OrderView>,
    pub faults: Vec<FaultResult>,
}

/// How a supply incident's group id names the village `village` of `township`: 2 for the
/// village (`village:yanqing/yanqing-dongguan`, `yanqing/dongguan`, `yanqing-dongguan`,
/// `dongguan`), 1 for its township alone (`township:yanqing`, `yanqing`), 0 for neither. Names
/// are compared whole: `jiuxian/jiuxian-gucheng` does not name the village `jiuxian` of
/// `jiuxian`.
fn group_level(group: &str, township: &str, village: &str) -> u8 {
    let name = group.rsplit_once(':').map_or(group, |(_, name)| name);
    let long = format!("{township}-{village}");
    let (in_township, village_part) = match name.split_once('/') {
        Some((t, v)) => (Some(t), v),
        None => (None, name),
    };
    if in_township.is_some_and(|t| t != township) {
        0
    } else if village_part == village || village_part == long {
        2
    } else if in_township.is_none() && village_part == township {
        1
    } else {
        0
    }
}

fn is_supply_category(category: &str) -> bool {
    category == "power_supply" || category == "gas_supply"
}

const MINUTE_MS: f64 = 60_000.0;

/// Computes the card.
pub fn score(inputs: &Inputs) -> ScoreCard {
    let device_index: BTreeMap<&str, usize> = inputs
        .households
        .iter()
        .enumerate()
        .map(|(i, h)| (h.device_id.as_str(), i))
        .collect();
    let mut orders = OrderCounts {
        total: inputs.orders.len() as u64,
        ..OrderCounts::default()
    };
    let mut sorted: Vec<&OrderView> = inputs.orders.iter().collect();
    sorted.sort_by(|a, b| {
        (a.created_at_ms, &a.device_id, &a.category, a.id).cmp(&(
            b.created_at_ms,
            &b.device_id,
            &b.category,
            b.id,
        ))
    });
    // Per fault: created times of attributed rule orders; supply incidents and per-device
    // orders separately.
    let mut fault_orders: Vec<Vec<i64>> = vec![Vec::new(); inputs.faults.len()];
    let mut incidents: Vec<u64> = vec![0; inputs.faults.len()];
    let mut per_device: Vec<u64> = vec![0; inputs.faults.len()];
    let mut false_orders = Vec::new();
    for order in sorted {
        if order.source != "rule" {
            *orders.intake.entry(order.source.clone()).or_default() += 1;
            continue;
        }
        orders.rule += 1;
        *orders
            .by_category
            .entry(order.category.clone())
            .or_default() += 1;
        let at = order.created_at_ms;
        let household = device_index.get(order.device_id.as_str()).copied();
        let in_window = |f: &&FaultTruth| f.start_ms <= at && at < f.window_end_ms;
        let cause = match household {
            None if is_supply_category(&order.category) => {
                // The supply fault whose village the incident's group names; a group naming
                // only the township matches when no fault names the village itself.
                let level = |f: &&FaultTruth| {
                    f.village.as_ref().map_or(0, |(township, village)| {
                        group_level(&order.device_id, township, village)
                    })
                };
                let candidates = || {
                    inputs
                        .faults
                        .iter()
                        .filter(in_window)
                        .filter(|f| f.kind.is_supply())
                };
                let matched = candidates()
                    .find(|f| level(f) == 2)
                    .or_else(|| candidates().find(|f| level(f) == 1));
                match matched {
                    Some(fault) => {
                        incidents[fault.id] += 1;
                        fault_orders[fault.id].push(at);
                        orders.supply_incidents += 1;
                        None
                    }
                    None => Some("supply_incident_without_supply_fault".to_owned()),
                }
            }
            None => Some("unknown_device".to_owned()),
            Some(h) => {
                let fault = inputs
                    .faults
                    .iter()
                    .filter(in_window)
                    .find(|f| f.households.contains(&h));
                match fault {
                    Some(fault) if fault.kind.is_supply() => {
                        per_device[fault.id] += 1;
                        fault_orders[fault.id].push(at);
                        orders.per_device_supply_orders += 1;
                        None
                    }
                    Some(fault) => {
                        if fault_orders[fault.id].is_empty() {
                            orders.detections += 1;
                        } else {
                            orders.duplicates += 1;
                        }
                        fault_orders[fault.id].push(at);
                        None
                    }
                    None => {
                        let trap = inputs
                            .traps
                            .iter()
                            .find(|t| t.household == h && t.start_ms <= at && at < t.window_end_ms);
                        Some(match trap {
                            Some(trap) => trap.kind.as_str().to_owned(),
                            None if inputs.households[h].night_setback_k > 0.0
                                && crate::model::is_night(at as f64 / 1000.0) =>
                            {
                                TrapKind::NightSetback.as_str().to_owned()
                            }
                            None => "no_fault".to_owned(),
                        })
                    }
                }
            }
        };
        if let Some(cause) = cause {
            orders.false_orders += 1;
            *orders.false_by_cause.entry(cause).or_default() += 1;
            false_orders.push(order.clone());
        }
    }
    // A supply fault's incidents count as its detection too.
    for fault in &inputs.faults {
        if fault.kind.is_supply() && incidents[fault.id] > 0 {
            orders.detections += 1;
        }
    }
    orders.false_order_share = share(orders.false_orders, orders.rule);

    let mut first_complaint: BTreeMap<usize, i64> = BTreeMap::new();
    for complaint in &inputs.complaints {
        if let Some(fault) = complaint.fault {
            let entry = first_complaint
                .entry(fault)
                .or_insert(complaint.received_at_ms);
            *entry = (*entry).min(complaint.received_at_ms);
        }
    }

    let mut rows: BTreeMap<FaultKind, KindRow> = BTreeMap::new();
    let mut results = Vec::new();
    let (mut pre_emptive, mut late, mut missed, mut latent) = (0, 0, 0, 0);
    let mut all_leads = Vec::new();
    let mut kind_leads: BTreeMap<FaultKind, Vec<f64>> = BTreeMap::new();
    let mut communication = CommunicationSummary::default();
    let mut supply = SupplySummary::default();
    for fault in &inputs.faults {
        let row = rows.entry(fault.kind).or_insert_with(|| KindRow {
            kind: fault.kind,
            class: fault.kind.class(),
            injected: 0,
            pre_emptive: 0,
            late: 0,
            missed: 0,
            latent: 0,
            complained: 0,
            lead_times: LeadTimes::default(),
        });
        row.injected += 1;
        let detected = fault_orders[fault.id].iter().copied().min();
        let complained = first_complaint.get(&fault.id).copied();
        if complained.is_some() {
            row.complained += 1;
        }
        let reference = complained.or(fault.would_notice_ms);
        let devices = fault
            .households
            .iter()
            .filter_map(|&h| inputs.households.get(h).map(|h| h.device_id.clone()))
            .collect();
        let mut result = FaultResult {
            id: fault.id,
            kind: fault.kind,
            devices,
            start_ms: fault.start_ms,
            detected_ms: detected,
            reference_ms: reference,
            complained_ms: complained,
            outcome: None,
            lead_min: None,
            rule_orders: fault_orders[fault.id].len(),
        };
        if fault.kind.class() == FaultClass::Communication {
            communication.injected += 1;
            let alerted = inputs.alerts.iter().any(|a| {
                fault.households.iter().any(|&h| {
                    inputs.households.get(h).map(|h| h.device_id.as_str())
                        == Some(a.device_id.as_str())
                }) && fault.start_ms <= a.fired_at_ms
                    && a.fired_at_ms < fault.window_end_ms
            });
            communication.alerted += u64::from(alerted);
            communication.ordered += u64::from(detected.is_some());
            results.push(result);
            continue;
        }
        let outcome = match (detected, reference) {
            (Some(d), Some(r)) if d < r => Outcome::PreEmptive,
            (Some(_), None) => Outcome::PreEmptive,
            (Some(_), Some(_)) => Outcome::Late,
            (None, Some(_)) => Outcome::Missed,
            (None, None) => Outcome::Latent,
        };
        match outcome {
            Outcome::PreEmptive => {
                pre_emptive += 1;
                row.pre_emptive += 1;
                if let (Some(d), Some(r)) = (detected, reference) {
                    let lead = (r - d) as f64 / MINUTE_MS;
                    result.lead_min = Some(round1(lead));
                    all_leads.push(lead);
                    kind_leads.entry(fault.kind).or_default().push(lead);
                }
            }
            Outcome::Late => {
                late += 1;
                row.late += 1;
            }
            Outcome::Missed => {
                missed += 1;
                row.missed += 1;
            }
            Outcome::Latent => {
                latent += 1;
                row.latent += 1;
            }
        }
        result.outcome = Some(outcome);
        if fault.kind.is_supply() {
            supply.faults += 1;
            let one = incidents[fault.id] == 1 && per_device[fault.id] == 0;
            supply.one_incident += u64::from(one);
            supply.rows.push(SupplyRow {
                fault: fault.id,
                kind: fault.kind,
                village: fault
                    .village
                    .as_ref()
                    .map(|(t, v)| format!("{t}/{v}"))
                    .unwrap_or_default(),
                households: fault.households.len(),
                incidents: incidents[fault.id],
                per_device_orders: per_device[fault.id],
                one_incident: one,
            });
        }
        results.push(result);
    }
    for (kind, leads) in kind_leads {
        if let Some(row) = rows.get_mut(&kind) {
            row.lead_times = LeadTimes::of(leads);
        }
    }

    let mut complaints = ComplaintSummary {
        total: inputs.complaints.len() as u64,
        ..ComplaintSummary::default()
    };
    for complaint in &inputs.complaints {
        *complaints
            .by_channel
            .entry(complaint.channel.clone())
            .or_default() += 1;
        complaints.without_fault += u64::from(complaint.fault.is_none());
        match &complaint.reply {
            Ok(reply) => {
                complaints.posted += 1;
                complaints.gateway_linked += u64::from(reply.linked == Some(true));
                complaints.gateway_pre_emptive += u64::from(reply.pre_emptive == Some(true));
            }
            Err(error) => {
                complaints.failed += 1;
                complaints.first_error.get_or_insert_with(|| error.clone());
            }
        }
    }

    let mut sla = SlaSummary {
        visits: inputs.visits.len() as u64,
        ..SlaSummary::default()
    };
    for visit in &inputs.visits {
        sla.dispatched_within_10_min +=
            u64::from(visit.dispatched_ms - visit.request_ms <= 10 * 60_000);
        sla.on_site_within_2_h += u64::from(visit.on_site_ms - visit.request_ms <= 2 * 3_600_000);
        sla.repaired_within_4_h += u64::from(visit.done_ms - visit.request_ms <= 4 * 3_600_000);
    }
    sla.dispatch_share = share(sla.dispatched_within_10_min, sla.visits);
    sla.on_site_share = share(sla.on_site_within_2_h, sla.visits);
    sla.repaired_share = share(sla.repaired_within_4_h, sla.visits);

    let mut faults_injected = BTreeMap::new();
    for fault in &inputs.faults {
        *faults_injected
            .entry(fault.kind.as_str().to_owned())
            .or_default() += 1;
    }
    let mut traps = BTreeMap::new();
    for trap in &inputs.traps {
        *traps.entry(trap.kind.as_str().to_owned()).or_default() += 1;
    }
    traps.insert(
        "night_setback_households".to_owned(),
        inputs
            .households
            .iter()
            .filter(|h| h.night_setback_k > 0.0)
            .count() as u64,
    );
    traps.insert("defrost_cycles".to_owned(), inputs.defrost_cycles);

    let heating_faults = pre_emptive + late + missed + latent;
    ScoreCard {
        faults_injected,
        traps,
        by_kind: rows.into_values().collect(),
        heating_faults,
        pre_emptive,
        late,
        missed,
        latent,
        pre_emptive_rate: share(pre_emptive, pre_emptive + late + missed),
        lead_times: LeadTimes::of(all_leads),
        orders,
        supply,
        communication,
        complaints,
        sla,
        missed_faults: results
            .iter()
            .filter(|r| r.outcome == Some(Outcome::Missed))
            .cloned()
            .collect(),
        false_orders,
        faults: results,
    }
}

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |s| format!("{:.1} %", s * 100.0))
}

fn minutes(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |m| format!("{m:.0} min"))
}

impl ScoreCard {
    /// The card as a readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "未诉先办 score card");
        let _ = writeln!(
            out,
            "  pre-emptive rate   {:>8}   ({} pre-emptive, {} late, {} missed of {} heating faults; {} latent)",
            percent(self.pre_emptive_rate),
            self.pre_emptive,
            self.late,
            self.missed,
            self.pre_emptive + self.late + self.missed,
            self.latent
        );
        let _ = writeln!(
            out,
            "  lead time          median {}, p10 {} (over {} faults)",
            minutes(self.lead_times.median_min),
            minutes(self.lead_times.p10_min),
            self.lead_times.count
        );
        let _ = writeln!(
            out,
            "  false orders       {:>8}   ({} of {} rule orders)",
            percent(self.orders.false_order_share),
            self.orders.false_orders,
            self.orders.rule
        );
        let _ = writeln!(
            out,
            "  supply incidents   {} of {} supply faults raised as exactly one incident",
            self.supply.one_incident, self.supply.faults
        );
        let _ = writeln!(
            out,
            "  SLA (technician model, {} visits): dispatch <=10 min {}, on site <=2 h {}, repaired <=4 h {}",
            self.sla.visits,
            percent(self.sla.dispatch_share),
            percent(self.sla.on_site_share),
            percent(self.sla.repaired_share)
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<18} {:<13} {:>8} {:>11} {:>5} {:>7} {:>7} {:>10} {:>12}",
            "fault",
            "class",
            "injected",
            "pre-emptive",
            "late",
            "missed",
            "latent",
            "complained",
            "median lead"
        );
        for row in &self.by_kind {
            let class = serde_json::to_value(row.class)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<18} {:<13} {:>8} {:>11} {:>5} {:>7} {:>7} {:>10} {:>12}",
                row.kind.as_str(),
                class,
                row.injected,
                row.pre_emptive,
                row.late,
                row.missed,
                row.latent,
                row.complained,
                minutes(row.lead_times.median_min)
            );
        }
        let _ = writeln!(
            out,
            "  communication: {} boxes offline, {} alerted, {} with an order",
            self.communication.injected, self.communication.alerted, self.communication.ordered
        );
        let _ = writeln!(out);
        let intake: u64 = self.orders.intake.values().sum();
        let _ = writeln!(
            out,
            "  orders: {} total = {} by rules + {} from complaints; rule orders: {} detections, {} duplicates, {} supply incidents, {} per-device orders during supply faults, {} false",
            self.orders.total,
            self.orders.rule,
            intake,
            self.orders.detections,
            self.orders.duplicates,
            self.orders.supply_incidents,
            self.orders.per_device_supply_orders,
            self.orders.false_orders
        );
        if !self.orders.false_by_cause.is_empty() {
            let causes: Vec<String> = self
                .orders
                .false_by_cause
                .iter()
                .map(|(cause, n)| format!("{cause} {n}"))
                .collect();
            let _ = writeln!(out, "  false orders by cause: {}", causes.join(", "));
        }
        let traps: Vec<String> = self.traps.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "  traps sprung: {}", traps.join(", "));
        let _ = writeln!(
            out,
            "  complaints: {} ({} without an injected fault); posted {}, failed {}; gateway linked {} to an open order, marked {} pre-emptive",
            self.complaints.total,
            self.complaints.without_fault,
            self.complaints.posted,
            self.complaints.failed,
            self.complaints.gateway_linked,
            self.complaints.gateway_pre_emptive
        );
        if let Some(error) = &self.complaints.first_error {
            let _ = writeln!(out, "  first complaint error: {error}");
        }
        for row in &self.supply.rows {
            let _ = writeln!(
                out,
                "  {} {} ({} households): {} incidents, {} per-device orders",
                row.kind.as_str(),
                row.village,
                row.households,
                row.incidents,
                row.per_device_orders
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    ///   nobody called -> pre-emptive, lead 179 min.
    /// - fault 1 (refrigerant leak, household 1) at 0: complaint at 2 h, rule order at 2 h 30
    ///   -> late.
    /// - fault 2 (water leak, household 2) at 0: complaint at 1 h, no rule order -> missed.
    ///   (The complaint order, source hotline_12345, is intake, not a detection.)
    /// - fault 3 (sensor short, household 3) at 0: no order, nobody would notice -> latent.
    /// - fault 4 (power outage, households 4 and 5, village dongguan) at 0: incident on
    ///   `yanqing-dongguan` at 20 min, first complaint at 2 h -> pre-emptive, lead 100 min,
    ///   one incident and no per-device order.
    /// - fault 5 (box offline, household 6): an offline alert at 15 min -> alerted, no order.
    /// - household 7, resident away (trap) from 0 to 10 h: rule order at 6 h -> false
    ///   (resident_away). Household 8: rule order at 2 h, no fault -> false (no_fault).
    /// - fault 0 gets a second rule order at 2 h -> duplicate.
    ///
    /// So: pre-emptive 2, late 1, missed 1, latent 1 -> rate 2/4 = 50 %; leads 100 and 179 ->
    /// median 139.5 (mean of the two middle values), p10 100; rule orders 6 (detections: fault
    /// 0, fault 1, the incident = 3; duplicates 1; false 2) -> false share 2/6 = 33.3 %.
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
        assert_eq!(
            (card.pre_emptive, card.late, card.missed, card.latent),
            (2, 1, 1, 1)
        );
        assert_eq!(card.heating_faults, 5);
        assert_eq!(card.pre_emptive_rate, Some(0.5));
        assert_eq!(card.lead_times.count, 2);
        assert_eq!(card.lead_times.median_min, Some(139.5));
        assert_eq!(card.lead_times.p10_min, Some(100.0));
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
        assert_eq!(card.missed_faults.len(), 1);
        assert_eq!(card.missed_faults[0].kind, FaultKind::WaterLeak);
        // The visit: dispatched after 5 min, on site after 2 h 1 min, done after 2 h 59 min.
        assert_eq!(card.sla.dispatched_within_10_min, 1);
        assert_eq!(card.sla.on_site_within_2_h, 0);
        assert_eq!(card.sla.repaired_within_4_h, 1);
        assert_eq!(card.traps.get("resident_away"), Some(&1));
        assert_eq!(card.traps.get("defrost_cycles"), Some(&12));
        let table = card.table();
        assert!(table.contains("50.0 %"), "{table}");
        assert!(table.contains("lockout"), "{table}");
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
            card.pre_emptive, 1,
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
}
