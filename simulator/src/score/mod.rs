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

mod attribution;
mod card;
mod inputs;
mod summaries;
mod table;
mod tally;
mod verdicts;

use attribution::Attribution;
use verdicts::Judged;

use crate::mix::FaultClass;

pub use card::{
    ClassRow, CommunicationSummary, ComplaintSummary, DetectorRow, FaultResult, KindRow,
    OrderCounts, ScoreCard, SlaSummary, SupplyRow, SupplySummary,
};
pub use inputs::{
    AlertView, ComplaintRecord, ComplaintReply, FaultTruth, HouseholdTruth, Inputs, OrderView,
    TrapTruth, VisitRecord,
};
pub use tally::{ComplainedTally, FaultTally, LeadTimes, UncomplainedTally, Verdict};

/// The order category of a call task.
pub const CALL_TASK_CATEGORY: &str = "contact_household";

/// Computes the card: attributes the orders, judges each fault, counts the rest.
pub fn score(inputs: &Inputs) -> ScoreCard {
    let attribution = attribution::attribute(inputs);
    let first_complaint = verdicts::first_complaints(inputs);
    let judged = verdicts::judge_all(inputs, &attribution, &first_complaint);
    let complaints = summaries::complaints(inputs);
    let sla = summaries::sla(inputs);
    let faults_injected = summaries::faults_injected(inputs);
    let traps = summaries::traps(inputs);
    let Attribution {
        orders,
        detectors,
        false_orders,
        ..
    } = attribution;
    let Judged {
        kinds,
        classes,
        heating,
        coded,
        code_less,
        results,
        communication,
        supply,
    } = judged;
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

#[cfg(test)]
mod tests;
