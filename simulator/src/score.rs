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
//! - *Heating faults* are the sudden, gradual and supply faults. Each is either *complained*
//!   (a resident called about it) or *uncomplained*.
//! - A complained fault is *pre-emptive* when a rule order came before the first complaint
//!   (lead = first complaint - detection). Otherwise it is a *miss*, whatever else happened:
//!   *late* when the first rule order came at or after the complaint, *missed* when none came.
//!   The headline *pre-emptive rate* = pre-emptive / complained heating faults.
//! - Uncomplained faults are reported apart and never raise or lower the headline: *detected*
//!   (lead = the moment the resident would have noticed - detection, when there is one: the
//!   room below their comfort temperature for 10 minutes in the same run without any repair;
//!   negative when detected after) or *undetected* (of those, how many would have been
//!   noticed).
//! - Rows per fault kind and per class, and subtotals for household faults whose unit raises a
//!   fault code and for those that raise none (`FaultKind::raises_code`; supply faults are in
//!   neither).
//! - *Detectors*: a rule order's detector is its rule id, the part of its `episode_id` before
//!   the first ':' (a supply incident's id starts with its fleet rule; one without an episode
//!   id is `incident`). Per detector: orders opened, orders attributed to a fault (precision =
//!   attributed / opened), first detections (faults it detected first), false orders and call
//!   tasks.
//! - A *call task* is a rule order of category `contact_household`: the operator rings the
//!   household or the village caretaker before dispatching. Attributed to a communication fault
//!   (a box offline) it is the right answer; with no fault behind it, a false order.
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

/// How one fault came out (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Complained; a rule order before the first complaint.
    PreEmptive,
    /// Complained; the first rule order at or after the first complaint (a miss).
    Late,
    /// Complained; no rule order (a miss).
    Missed,
    /// Nobody complained; a rule order.
    Detected,
    /// Nobody complained; no rule order.
    Undetected,
}

/// Faults a resident complained about, by verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ComplainedTally {
    pub faults: u64,
    pub pre_emptive: u64,
    pub late: u64,
    pub missed: u64,
    /// pre-emptive / faults.
    pub pre_emptive_rate: Option<f64>,
    /// First complaint - detection, over the pre-emptive faults.
    pub lead_times: LeadTimes,
}

/// Faults nobody complained about, by verdict (never part of the pre-emptive rate).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UncomplainedTally {
    pub faults: u64,
    pub detected: u64,
    pub undetected: u64,
    /// Of the undetected, those a resident would have noticed (a would-notice time).
    pub undetected_noticeable: u64,
    /// Would-notice time - detection, over the detected faults that have one (negative:
    /// detected after the resident would have noticed).
    pub lead_times: LeadTimes,
}

/// A group of faults, split by complaint and verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FaultTally {
    pub injected: u64,
    pub complained: ComplainedTally,
    pub uncomplained: UncomplainedTally,
}

/// Builds a [`FaultTally`], keeping the lead times until the end.
#[derive(Default)]
struct TallyBuilder {
    tally: FaultTally,
    complained_leads: Vec<f64>,
    uncomplained_leads: Vec<f64>,
}

impl TallyBuilder {
    fn add(&mut self, verdict: Verdict, lead_min: Option<f64>, noticeable: bool) {
        let t = &mut self.tally;
        t.injected += 1;
        match verdict {
            Verdict::PreEmptive | Verdict::Late | Verdict::Missed => {
                t.complained.faults += 1;
                match verdict {
                    Verdict::PreEmptive => {
                        t.complained.pre_emptive += 1;
                        self.complained_leads.extend(lead_min);
                    }
                    Verdict::Late => t.complained.late += 1,
                    _ => t.complained.missed += 1,
                }
            }
            Verdict::Detected => {
                t.uncomplained.faults += 1;
                t.uncomplained.detected += 1;
                self.uncomplained_leads.extend(lead_min);
            }
            Verdict::Undetected => {
                t.uncomplained.faults += 1;
                t.uncomplained.undetected += 1;
                t.uncomplained.undetected_noticeable += u64::from(noticeable);
            }
        }
    }

    fn finish(self) -> FaultTally {
        let mut tally = self.tally;
        tally.complained.pre_emptive_rate =
            share(tally.complained.pre_emptive, tally.complained.faults);
        tally.complained.lead_times = LeadTimes::of(self.complained_leads);
        tally.uncomplained.lead_times = LeadTimes::of(self.uncomplained_leads);
        tally
    }
}

/// One line per fault kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KindRow {
    pub kind: FaultKind,
    pub class: FaultClass,
    /// Whether the unit shows a fault code while it suffers this fault.
    pub raises_code: bool,
    #[serde(flatten)]
    pub tally: FaultTally,
}

/// One line per fault class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassRow {
    pub class: FaultClass,
    #[serde(flatten)]
    pub tally: FaultTally,
}

/// One line per detector (rule id).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DetectorRow {
    pub rule_id: String,
    /// Rule orders it opened.
    pub opened: u64,
    /// Of those, attributed to a real fault.
    pub attributed: u64,
    /// attributed / opened.
    pub precision: Option<f64>,
    /// Faults whose first rule order was one of its.
    pub first_detections: u64,
    /// Its orders with no fault behind them.
    pub false_orders: u64,
    /// Its orders of the call-task category (`contact_household`), attributed or not.
    pub call_tasks: u64,
}

/// One fault's result, for the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultResult {
    pub id: usize,
    pub kind: FaultKind,
    pub devices: Vec<String>,
    pub start_ms: i64,
    pub detected_ms: Option<i64>,
    /// The detector of the first rule order.
    pub detected_by: Option<String>,
    /// The first complaint, or when nobody called the moment the resident would have noticed.
    pub reference_ms: Option<i64>,
    pub complained_ms: Option<i64>,
    pub verdict: Verdict,
    /// Reference - detection, minutes (negative: detected after it).
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
    /// Rule orders of the call-task category (`contact_household`), attributed or not.
    pub call_tasks: u64,
    /// Of the call tasks, those attributed to a communication fault (a box offline).
    pub call_tasks_on_communication_faults: u64,
    /// Rule orders with no fault behind them (call tasks included).
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
    pub by_class: Vec<ClassRow>,
    /// Household heating faults (sudden and gradual) whose unit raises a fault code.
    pub coded: FaultTally,
    /// Household heating faults whose unit raises none (only detectors reading the physics
    /// can catch them). Supply faults are in neither (see `by_class`).
    pub code_less: FaultTally,
    /// Sudden, gradual and supply faults.
    pub heating_faults: u64,
    /// The heating faults: `heating.complained.pre_emptive_rate` is the headline.
    pub heating: FaultTally,
    pub detectors: Vec<DetectorRow>,
    pub orders: OrderCounts,
    pub supply: SupplySummary,
    pub communication: CommunicationSummary,
    pub complaints: ComplaintSummary,
    pub sla: SlaSummary,
    /// Complained heating faults without a rule order before the complaint (late or missed).
    pub complaints_not_pre_empted: Vec<FaultResult>,
    pub false_orders: Vec<OrderView>,
    pub faults: Vec<FaultResult>,
}

/// The order category of a call task.
pub const CALL_TASK_CATEGORY: &str = "contact_household";

/// The detector of a rule order: its rule id, the part of its episode id before the first ':'
/// (a supply incident's id starts with its fleet rule); `incident` for a supply incident
/// without one, `unknown` for another order without one.
fn detector_of(order: &OrderView, on_household: bool) -> String {
    match order
        .episode_id
        .as_deref()
        .and_then(|e| e.split(':').next())
        .filter(|id| !id.is_empty())
    {
        Some(id) => id.to_owned(),
        None if !on_household && is_supply_category(&order.category) => "incident".to_owned(),
        None => "unknown".to_owned(),
    }
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
    // Per fault: created times and detectors of attributed rule orders, in time order.
    let mut fault_orders: Vec<Vec<(i64, String)>> = vec![Vec::new(); inputs.faults.len()];
    let mut detectors: BTreeMap<String, DetectorRow> = BTreeMap::new();
    let mut incidents: Vec<u64> = vec![0; inputs.faults.len()];
    let mut per_device: Vec<u64> = vec![0; inputs.faults.len()];
    let mut false_orders = Vec::new();
    for order in sorted {
        if order.source != "rule" {
            *orders.intake.entry(order.source.clone()).or_default() += 1;
            continue;
        }
        orders.rule += 1;
        let detector = detector_of(order, device_index.contains_key(order.device_id.as_str()));
        let call_task = order.category == CALL_TASK_CATEGORY;
        orders.call_tasks += u64::from(call_task);
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
                        fault_orders[fault.id].push((at, detector.clone()));
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
                        fault_orders[fault.id].push((at, detector.clone()));
                        orders.per_device_supply_orders += 1;
                        None
                    }
                    Some(fault) => {
                        if call_task && fault.kind.class() == FaultClass::Communication {
                            orders.call_tasks_on_communication_faults += 1;
                        }
                        if fault_orders[fault.id].is_empty() {
                            orders.detections += 1;
                        } else {
                            orders.duplicates += 1;
                        }
                        fault_orders[fault.id].push((at, detector.clone()));
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
        let row = detectors
            .entry(detector.clone())
            .or_insert_with(|| DetectorRow {
                rule_id: detector,
                ..DetectorRow::default()
            });
        row.opened += 1;
        row.call_tasks += u64::from(call_task);
        if cause.is_some() {
            row.false_orders += 1;
        } else {
            row.attributed += 1;
        }
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
    for orders in &fault_orders {
        if let Some((_, detector)) = orders.first() {
            if let Some(row) = detectors.get_mut(detector) {
                row.first_detections += 1;
            }
        }
    }
    for row in detectors.values_mut() {
        row.precision = share(row.attributed, row.opened);
    }

    let mut first_complaint: BTreeMap<usize, i64> = BTreeMap::new();
    for complaint in &inputs.complaints {
        if let Some(fault) = complaint.fault {
            let entry = first_complaint
                .entry(fault)
                .or_insert(complaint.received_at_ms);
            *entry = (*entry).min(complaint.received_at_ms);
        }
    }

    let mut kinds: BTreeMap<FaultKind, TallyBuilder> = BTreeMap::new();
    let mut classes: BTreeMap<FaultClass, TallyBuilder> = BTreeMap::new();
    let (mut heating, mut coded, mut code_less) = (
        TallyBuilder::default(),
        TallyBuilder::default(),
        TallyBuilder::default(),
    );
    let mut results = Vec::new();
    let mut communication = CommunicationSummary::default();
    let mut supply = SupplySummary::default();
    for fault in &inputs.faults {
        let first = fault_orders[fault.id].first();
        let detected = first.map(|(at, _)| *at);
        let complained = first_complaint.get(&fault.id).copied();
        let reference = complained.or(fault.would_notice_ms);
        let verdict = match (complained, detected) {
            (Some(c), Some(d)) if d < c => Verdict::PreEmptive,
            (Some(_), Some(_)) => Verdict::Late,
            (Some(_), None) => Verdict::Missed,
            (None, Some(_)) => Verdict::Detected,
            (None, None) => Verdict::Undetected,
        };
        let lead_min = match (verdict, detected, reference) {
            (Verdict::PreEmptive | Verdict::Detected, Some(d), Some(r)) => {
                Some((r - d) as f64 / MINUTE_MS)
            }
            _ => None,
        };
        let noticeable = fault.would_notice_ms.is_some();
        let devices = fault
            .households
            .iter()
            .filter_map(|&h| inputs.households.get(h).map(|h| h.device_id.clone()))
            .collect();
        let result = FaultResult {
            id: fault.id,
            kind: fault.kind,
            devices,
            start_ms: fault.start_ms,
            detected_ms: detected,
            detected_by: first.map(|(_, detector)| detector.clone()),
            reference_ms: reference,
            complained_ms: complained,
            verdict,
            lead_min: lead_min.map(round1),
            rule_orders: fault_orders[fault.id].len(),
        };
        kinds
            .entry(fault.kind)
            .or_default()
            .add(verdict, lead_min, noticeable);
        classes
            .entry(fault.kind.class())
            .or_default()
            .add(verdict, lead_min, noticeable);
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
        heating.add(verdict, lead_min, noticeable);
        if fault.kind.is_supply() {
            // A village's supply is neither: its row is in `by_class`.
        } else if fault.kind.raises_code() {
            coded.add(verdict, lead_min, noticeable);
        } else {
            code_less.add(verdict, lead_min, noticeable);
        }
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

    let heating = heating.finish();
    ScoreCard {
        faults_injected,
        traps,
        by_kind: kinds
            .into_iter()
            .map(|(kind, builder)| KindRow {
                kind,
                class: kind.class(),
                raises_code: kind.raises_code(),
                tally: builder.finish(),
            })
            .collect(),
        by_class: classes
            .into_iter()
            .map(|(class, builder)| ClassRow {
                class,
                tally: builder.finish(),
            })
            .collect(),
        coded: coded.finish(),
        code_less: code_less.finish(),
        heating_faults: heating.injected,
        heating,
        detectors: detectors.into_values().collect(),
        orders,
        supply,
        communication,
        complaints,
        sla,
        complaints_not_pre_empted: results
            .iter()
            .filter(|r| {
                r.kind.class() != FaultClass::Communication
                    && matches!(r.verdict, Verdict::Late | Verdict::Missed)
            })
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

fn class_name(class: FaultClass) -> String {
    serde_json::to_value(class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One line of the fault table.
fn tally_line(out: &mut String, name: &str, class: &str, code: &str, t: &FaultTally) {
    let (c, u) = (&t.complained, &t.uncomplained);
    let _ = writeln!(
        out,
        "  {:<18} {:<13} {:>4} {:>8} | {:>10} {:>11} {:>5} {:>6} {:>8} {:>7} | {:>12} {:>8} {:>10}",
        name,
        class,
        code,
        t.injected,
        c.faults,
        c.pre_emptive,
        c.late,
        c.missed,
        percent(c.pre_emptive_rate),
        minutes(c.lead_times.median_min),
        u.faults,
        u.detected,
        u.undetected
    );
}

impl ScoreCard {
    /// The card as a readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let h = &self.heating;
        let (c, u) = (&h.complained, &h.uncomplained);
        let _ = writeln!(out, "未诉先办 score card");
        let _ = writeln!(
            out,
            "  pre-emptive rate   {:>8}   ({} of {} heating faults that led to a complaint had a rule order before the first call; misses: {} late, {} missed)",
            percent(c.pre_emptive_rate),
            c.pre_emptive,
            c.faults,
            c.late,
            c.missed
        );
        let _ = writeln!(
            out,
            "  lead time          median {}, p10 {} (first complaint - rule order, over {} pre-emptive faults)",
            minutes(c.lead_times.median_min),
            minutes(c.lead_times.p10_min),
            c.lead_times.count
        );
        let _ = writeln!(
            out,
            "  nobody called      {} heating faults, not in the rate: {} detected (median lead {} against when the resident would have noticed, over {}), {} undetected ({} of them would have been noticed)",
            u.faults,
            u.detected,
            minutes(u.lead_times.median_min),
            u.lead_times.count,
            u.undetected,
            u.undetected_noticeable
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
            "  {:<18} {:<13} {:>4} {:>8} | {:>10} {:>11} {:>5} {:>6} {:>8} {:>7} | {:>12} {:>8} {:>10}",
            "fault",
            "class",
            "code",
            "injected",
            "complained",
            "pre-emptive",
            "late",
            "missed",
            "rate",
            "lead",
            "uncomplained",
            "detected",
            "undetected"
        );
        for row in &self.by_kind {
            let code = if row.raises_code { "yes" } else { "no" };
            tally_line(
                &mut out,
                row.kind.as_str(),
                &class_name(row.class),
                code,
                &row.tally,
            );
        }
        for row in &self.by_class {
            tally_line(
                &mut out,
                &format!("[{}]", class_name(row.class)),
                "",
                "",
                &row.tally,
            );
        }
        tally_line(&mut out, "[coded]", "heating", "yes", &self.coded);
        tally_line(&mut out, "[code-less]", "heating", "no", &self.code_less);
        tally_line(&mut out, "[heating]", "", "", &self.heating);
        let _ = writeln!(
            out,
            "  communication: {} boxes offline, {} alerted, {} with an order; {} call tasks on them",
            self.communication.injected,
            self.communication.alerted,
            self.communication.ordered,
            self.orders.call_tasks_on_communication_faults
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<24} {:>6} {:>10} {:>9} {:>10} {:>6} {:>10}",
            "detector", "opened", "attributed", "precision", "first det.", "false", "call tasks"
        );
        for row in &self.detectors {
            let _ = writeln!(
                out,
                "  {:<24} {:>6} {:>10} {:>9} {:>10} {:>6} {:>10}",
                row.rule_id,
                row.opened,
                row.attributed,
                percent(row.precision),
                row.first_detections,
                row.false_orders,
                row.call_tasks
            );
        }
        let _ = writeln!(out);
        let intake: u64 = self.orders.intake.values().sum();
        let _ = writeln!(
            out,
            "  orders: {} total = {} by rules + {} from complaints; rule orders: {} detections, {} duplicates, {} supply incidents, {} per-device orders during supply faults, {} call tasks, {} false",
            self.orders.total,
            self.orders.rule,
            intake,
            self.orders.detections,
            self.orders.duplicates,
            self.orders.supply_incidents,
            self.orders.per_device_supply_orders,
            self.orders.call_tasks,
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
mod tests;
