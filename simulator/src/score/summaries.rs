//! The card's plain counts: complaints and what the gateway answered, SLA compliance of the
//! technician model's visits, faults injected and traps sprung.

use std::collections::BTreeMap;

use super::card::{ComplaintSummary, SlaSummary};
use super::inputs::Inputs;
use super::tally::share;

/// Complaints by channel and what the gateway answered to them.
pub(super) fn complaints(inputs: &Inputs) -> ComplaintSummary {
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
    complaints
}

/// SLA compliance: dispatched within 10 minutes, on site within 2 hours, repaired within 4.
pub(super) fn sla(inputs: &Inputs) -> SlaSummary {
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
    sla
}

/// Faults injected per kind.
pub(super) fn faults_injected(inputs: &Inputs) -> BTreeMap<String, u64> {
    let mut faults_injected = BTreeMap::new();
    for fault in &inputs.faults {
        *faults_injected
            .entry(fault.kind.as_str().to_owned())
            .or_default() += 1;
    }
    faults_injected
}

/// Traps sprung per kind, the households with a night set-back and the defrost cycles.
pub(super) fn traps(inputs: &Inputs) -> BTreeMap<String, u64> {
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
    traps
}
