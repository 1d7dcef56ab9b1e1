//! The score card and its rows: per fault kind and class, per detector, per fault; order,
//! supply, communication, complaint and SLA summaries. What the JSON and the table show.

use std::collections::BTreeMap;

use serde::Serialize;

use super::inputs::OrderView;
use super::tally::{FaultTally, Verdict};
use crate::mix::{FaultClass, FaultKind};

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
