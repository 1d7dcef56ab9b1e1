//! What the card is computed from: the ground truth of a run (households, faults, traps,
//! complaints, visits) and the gateway's orders and alerts as it listed them.

use serde::{Deserialize, Serialize};

use crate::mix::{FaultKind, TrapKind};

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
    /// End of the attribution window (see the `score` module docs).
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
