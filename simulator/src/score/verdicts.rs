//! Verdicts: each fault's first rule order against its first complaint (or when the resident
//! would have noticed), its lead time, and the tallies per kind, class and group; communication
//! and supply faults counted apart.

use std::collections::BTreeMap;

use super::attribution::Attribution;
use super::card::{CommunicationSummary, FaultResult, SupplyRow, SupplySummary};
use super::inputs::{FaultTruth, Inputs};
use super::tally::{round1, TallyBuilder, Verdict};
use crate::mix::{FaultClass, FaultKind};

const MINUTE_MS: f64 = 60_000.0;

/// The first complaint about each fault.
pub(super) fn first_complaints(inputs: &Inputs) -> BTreeMap<usize, i64> {
    let mut first_complaint: BTreeMap<usize, i64> = BTreeMap::new();
    for complaint in &inputs.complaints {
        if let Some(fault) = complaint.fault {
            let entry = first_complaint
                .entry(fault)
                .or_insert(complaint.received_at_ms);
            *entry = (*entry).min(complaint.received_at_ms);
        }
    }
    first_complaint
}

/// Every fault judged, with the tallies.
#[derive(Default)]
pub(super) struct Judged {
    pub(super) kinds: BTreeMap<FaultKind, TallyBuilder>,
    pub(super) classes: BTreeMap<FaultClass, TallyBuilder>,
    pub(super) heating: TallyBuilder,
    pub(super) coded: TallyBuilder,
    pub(super) code_less: TallyBuilder,
    pub(super) results: Vec<FaultResult>,
    pub(super) communication: CommunicationSummary,
    pub(super) supply: SupplySummary,
}

/// One fault judged: its result, its lead time unrounded, and whether a resident would have
/// noticed it.
struct Judgement {
    result: FaultResult,
    lead_min: Option<f64>,
    noticeable: bool,
}

/// Judges every fault in turn and tallies it.
pub(super) fn judge_all(
    inputs: &Inputs,
    attribution: &Attribution,
    first_complaint: &BTreeMap<usize, i64>,
) -> Judged {
    let mut judged = Judged::default();
    for fault in &inputs.faults {
        let judgement = judge(inputs, fault, attribution, first_complaint);
        judged.add(inputs, fault, attribution, judgement);
    }
    judged
}

/// A fault's verdict (see the module docs of `score`) and lead time.
fn judge(
    inputs: &Inputs,
    fault: &FaultTruth,
    attribution: &Attribution,
    first_complaint: &BTreeMap<usize, i64>,
) -> Judgement {
    let fault_orders = &attribution.fault_orders;
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
    Judgement {
        result,
        lead_min,
        noticeable,
    }
}

impl Judged {
    /// Tallies one judged fault by kind and class; a communication fault apart, a heating
    /// fault into the heating, coded or code-less groups and, for a supply fault, its row.
    fn add(
        &mut self,
        inputs: &Inputs,
        fault: &FaultTruth,
        attribution: &Attribution,
        judgement: Judgement,
    ) {
        let Judgement {
            result,
            lead_min,
            noticeable,
        } = judgement;
        let verdict = result.verdict;
        self.kinds
            .entry(fault.kind)
            .or_default()
            .add(verdict, lead_min, noticeable);
        self.classes
            .entry(fault.kind.class())
            .or_default()
            .add(verdict, lead_min, noticeable);
        if fault.kind.class() == FaultClass::Communication {
            self.add_communication(inputs, fault, result.detected_ms.is_some());
            self.results.push(result);
            return;
        }
        self.heating.add(verdict, lead_min, noticeable);
        if fault.kind.is_supply() {
            // A village's supply is neither: its row is in `by_class`.
        } else if fault.kind.raises_code() {
            self.coded.add(verdict, lead_min, noticeable);
        } else {
            self.code_less.add(verdict, lead_min, noticeable);
        }
        if fault.kind.is_supply() {
            self.add_supply(fault, attribution);
        }
        self.results.push(result);
    }

    /// A box offline: whether an alert on its device fired inside the window, and whether an
    /// order came.
    fn add_communication(&mut self, inputs: &Inputs, fault: &FaultTruth, ordered: bool) {
        let communication = &mut self.communication;
        communication.injected += 1;
        let alerted = inputs.alerts.iter().any(|a| {
            fault.households.iter().any(|&h| {
                inputs.households.get(h).map(|h| h.device_id.as_str()) == Some(a.device_id.as_str())
            }) && fault.start_ms <= a.fired_at_ms
                && a.fired_at_ms < fault.window_end_ms
        });
        communication.alerted += u64::from(alerted);
        communication.ordered += u64::from(ordered);
    }

    /// A supply fault's row: its incidents and per-device orders, one incident or not.
    fn add_supply(&mut self, fault: &FaultTruth, attribution: &Attribution) {
        let (incidents, per_device) = (&attribution.incidents, &attribution.per_device);
        let supply = &mut self.supply;
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
}
