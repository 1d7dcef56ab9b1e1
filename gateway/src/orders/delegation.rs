//! Vendor delegation (委托同期企业代为维修): a warranty vendor that cannot send staff to an
//! order hands it to another vendor of the same contract period whose team serves the order's
//! township, and pays for it.
//!
//! The seed (section 四(一)): "个别因不具备委派维修人员进行设备维修的企业，可委托其他同期企业代为
//! 维修……并提供配件及相关费用" — the delegating vendor provides the parts and the related costs;
//! the resident pays nothing in warranty. So each delegation is a ledger entry of what the
//! delegating vendor owes the vendor that took the order over:
//! - the **call-out fee** (`[delegation] call_out_fee_cents`, the "related costs"; the seed names
//!   no figure, so it is configured, 0 by default, and fixed on the entry when it is made), and
//! - the **parts** of the repair at the unified price list, as the resolve records them today
//!   (`parts_cents`), less what the resident pays (nothing in warranty unless an operator
//!   confirmed misuse). They are read from the order, so they are 0 while the order awaits its
//!   repair (`pending`) and follow a reopening or a confirmed misuse (`due`).
//!
//! Rules, checked in the transaction that writes (a refusal writes nothing):
//! - only the team the order is assigned to (its team token; not a technician's own token) or an
//!   operator on its behalf delegates, and only an order in `dispatched` or `accepted`;
//! - the order is in warranty and its team is a vendor team whose vendor warrants the device or
//!   received the order by a delegation that still counts;
//! - the other team is a vendor team of another vendor, serves the order's township (403
//!   otherwise) and its vendor has the same contract period (403 otherwise; a vendor without a
//!   period in the registry delegates to nobody);
//! - no loop: a vendor that already held the order (the warranty vendor, or any vendor of its
//!   earlier delegations) cannot receive it again (409).
//!
//! A chain A→B→C is two entries (A owes B, B owes C, the same amounts): B passes the cost on.
//! The entries are voided, never deleted, when the order leaves the delegation before its repair:
//! an operator or township reassigns it to a team of another vendor, or cancels or merges it.

use serde::Deserialize;

use super::actions::RequestError;
use super::dispatch::{self, Assignment};
use super::store::{DelegationRow, DelegationStatus, NewDelegation, OrderRow, Store};
use crate::auth::{Principal, Role};
use crate::registry::{Team, TeamKind};

/// The most a call-out fee may be, in fen (1,000 CNY).
pub const MAX_CALL_OUT_FEE_CENTS: i64 = 100_000;

/// `[delegation]`: what a vendor owes for an order it delegated, beside the parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelegationConfig {
    /// The call-out fee ("相关费用") a delegating vendor owes the vendor that takes the order
    /// over, in fen, fixed on the ledger entry when the order is delegated; 0 to 100000.
    #[serde(default)]
    pub call_out_fee_cents: i64,
}

impl DelegationConfig {
    /// The field and the reason when a value is out of range.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(0..=MAX_CALL_OUT_FEE_CENTS).contains(&self.call_out_fee_cents) {
            return Err((
                "delegation.call_out_fee_cents".into(),
                format!(
                    "must be 0 to {MAX_CALL_OUT_FEE_CENTS} fen (1000 CNY), got {}",
                    self.call_out_fee_cents
                ),
            ));
        }
        Ok(())
    }
}

/// A delegation checked against the registry and the order's history, ready to record.
pub(super) struct Planned {
    pub assignment: Assignment,
    pub entry: NewDelegation,
}

/// Checks a delegation of `order` to `team_id` by `principal` (see the module's rules), in
/// their order: the reason, who delegates, the warranty, the delegating vendor, the receiving
/// team and vendor, the contract period, no loop, and the technician who takes it over.
#[allow(clippy::too_many_arguments)]
pub(super) fn plan(
    store: &Store,
    order: &OrderRow,
    principal: &Principal,
    team_id: &str,
    technician_id: Option<&str>,
    reason: &str,
    fee_cents: i64,
    at_ms: i64,
) -> Result<Planned, RequestError> {
    let id = order.id;
    if reason.trim().is_empty() {
        return Err(RequestError::invalid(
            "reason: a delegation needs a reason (why the vendor cannot send its own staff)",
        ));
    }
    let current = delegator_team(order, principal)?;
    if order.in_warranty != Some(true) {
        return Err(RequestError::Conflict(format!(
            "order {id} is not a warranty repair: the third party repairs it, and delegation is between warranty vendors"
        )));
    }
    let (from_team, from_vendor, earlier) = delegating_vendor(store, order, &current)?;
    let (to_team, to_vendor) = receiving_vendor(store, order, team_id, &from_vendor)?;
    let period = same_period(store, &from_vendor, &to_vendor)?;
    let held = order.vendor_id.as_deref() == Some(to_vendor.as_str())
        || earlier
            .iter()
            .any(|d| d.from_vendor == to_vendor || d.to_vendor == to_vendor);
    if held {
        return Err(RequestError::Conflict(format!(
            "vendor {to_vendor:?} already held order {id}: delegating it back would make a loop; ask the centre to reassign it"
        )));
    }
    let assignment =
        dispatch::assign_to(store, order, team_id, technician_id)?.ok_or_else(|| {
            RequestError::invalid(format!(
                "technician_id {:?} is not in team {team_id:?}",
                technician_id.unwrap_or_default()
            ))
        })?;
    if assignment.technician.is_none() {
        return Err(RequestError::Conflict(format!(
            "team {team_id:?} has no technician in the registry: it cannot take the order over"
        )));
    }
    Ok(Planned {
        entry: NewDelegation {
            order_id: id,
            at_ms,
            actor: principal.actor(),
            township: order.township.clone(),
            period,
            from_vendor,
            from_team: from_team.id,
            to_vendor,
            to_team: to_team.id,
            reason: reason.to_owned(),
            fee_cents,
        },
        assignment,
    })
}

/// The team `order` is assigned to, when `principal` may delegate for it: that team's own
/// token (not a technician's) or an operator.
fn delegator_team(order: &OrderRow, principal: &Principal) -> Result<String, RequestError> {
    let id = order.id;
    let current = order.team_id.clone().unwrap_or_default();
    match principal.role {
        Role::Operator => {}
        Role::Team if principal.technician.is_some() => {
            return Err(RequestError::Forbidden(
                "a technician's own token may not delegate an order; the team's token (or an operator) does".into(),
            ))
        }
        Role::Team if principal.team.as_deref() == Some(current.as_str()) => {}
        Role::Team => {
            return Err(RequestError::Forbidden(format!(
                "order {id} is not assigned to team {:?}: only the team an order is assigned to may delegate it",
                principal.team.as_deref().unwrap_or_default()
            )))
        }
        Role::Township | Role::ReadOnly => {
            return Err(RequestError::Forbidden(format!(
                "a {:?} token may not delegate orders; the vendor's team does",
                principal.role
            )))
        }
    }
    Ok(current)
}

/// The vendor team the order is assigned to (`current`), its vendor, and the order's earlier
/// delegations; that vendor warrants the device or received the order by a delegation that
/// still counts.
fn delegating_vendor(
    store: &Store,
    order: &OrderRow,
    current: &str,
) -> Result<(Team, String, Vec<DelegationRow>), RequestError> {
    let id = order.id;
    let from_team = store
        .team(current)?
        .filter(|team| team.kind == TeamKind::Vendor)
        .ok_or_else(|| {
            RequestError::Conflict(format!(
                "order {id} is assigned to {current:?}, not to a vendor team: only a vendor delegates"
            ))
        })?;
    let from_vendor = from_team.vendor_id.clone().unwrap_or_default();
    let earlier = store.delegations_of(id)?;
    let received = earlier
        .iter()
        .rev()
        .find(|d| d.status != DelegationStatus::Void)
        .is_some_and(|d| d.to_vendor == from_vendor);
    if order.vendor_id.as_deref() != Some(from_vendor.as_str()) && !received {
        return Err(RequestError::Forbidden(format!(
            "vendor {from_vendor:?} neither warrants device {:?} nor received order {id} by delegation: ask the centre to reassign it",
            order.device_id
        )));
    }
    Ok((from_team, from_vendor, earlier))
}

/// The team `team_id` and its vendor: a vendor team of another vendor than `from_vendor`,
/// serving the order's township.
fn receiving_vendor(
    store: &Store,
    order: &OrderRow,
    team_id: &str,
    from_vendor: &str,
) -> Result<(Team, String), RequestError> {
    let to_team = store
        .team(team_id)?
        .ok_or_else(|| RequestError::invalid(format!("team_id {team_id:?} is not a team")))?;
    let to_vendor = match (to_team.kind, to_team.vendor_id.clone()) {
        (TeamKind::Vendor, Some(vendor)) => vendor,
        (kind, _) => {
            return Err(RequestError::invalid(format!(
                "team_id {team_id:?} is a {} team: a vendor delegates to another vendor's team (the centre reassigns to the third party)",
                kind.as_str()
            )))
        }
    };
    if to_vendor == from_vendor {
        return Err(RequestError::invalid(format!(
            "team_id {team_id:?} is vendor {from_vendor:?}'s own team: that is a reassignment within the vendor, not a delegation"
        )));
    }
    if !dispatch::covers(&to_team, &order.township) {
        return Err(RequestError::Forbidden(format!(
            "team_id {team_id:?} serves {}, not township {:?}, the order's: a vendor delegates only to a vendor serving the same township",
            to_team.townships.join(", "),
            order.township
        )));
    }
    Ok((to_team, to_vendor))
}

/// The contract period both vendors share (同期企业); a vendor without one delegates to nobody.
fn same_period(store: &Store, from_vendor: &str, to_vendor: &str) -> Result<String, RequestError> {
    let period_of = |vendor: &str| -> Result<String, RequestError> {
        store.vendor_period(vendor)?.ok_or_else(|| {
            RequestError::Forbidden(format!(
                "vendor {vendor:?} has no contract period in the registry (vendors.csv column period): delegation is only between vendors of the same period"
            ))
        })
    };
    let (period, to_period) = (period_of(from_vendor)?, period_of(to_vendor)?);
    if period != to_period {
        return Err(RequestError::Forbidden(format!(
            "vendor {to_vendor:?} is of contract period {to_period:?}, vendor {from_vendor:?} of {period:?}: a vendor delegates only to a vendor of the same period (同期企业)"
        )));
    }
    Ok(period)
}

/// After an operator's or township's reassignment, cancellation or merge of `order` (as it was
/// before): voids its delegations that still count unless the order stays with the vendor the
/// last one handed it to (a reassignment within that vendor's teams). Returns the note of a
/// `delegation_voided` event when it voided any.
pub(super) fn void_after(
    store: &mut Store,
    order: &OrderRow,
    kind: &str,
    new_team: Option<&str>,
    at_ms: i64,
) -> Result<Option<String>, RequestError> {
    let live: Vec<_> = store
        .delegations_of(order.id)?
        .into_iter()
        .filter(|d| d.status != DelegationStatus::Void)
        .collect();
    let Some(last) = live.last() else {
        return Ok(None);
    };
    if kind == "reassigned" {
        let vendor = match new_team {
            Some(team) => store.team(team)?.and_then(|t| t.vendor_id),
            None => None,
        };
        if vendor.as_deref() == Some(last.to_vendor.as_str()) {
            return Ok(None);
        }
    }
    let why = match (kind, new_team) {
        ("reassigned", Some(team)) => format!("order reassigned to team {team}"),
        _ => format!("order {kind}"),
    };
    let voided = store.void_delegations(order.id, at_ms, &why)?;
    tracing::info!(
        order = order.id,
        voided,
        reason = %why,
        "vendor delegations voided: the order left the delegation before its repair"
    );
    Ok(Some(format!(
        "{voided} delegation(s) voided ({why}): the delegating vendors owe nothing for them"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_out_fee_is_bounded() {
        for fee in [0, 5_000, MAX_CALL_OUT_FEE_CENTS] {
            let config = DelegationConfig {
                call_out_fee_cents: fee,
            };
            assert!(config.validate().is_ok(), "{fee}");
        }
        for fee in [-1, MAX_CALL_OUT_FEE_CENTS + 1, i64::MAX, i64::MIN] {
            let config = DelegationConfig {
                call_out_fee_cents: fee,
            };
            let (field, _) = config.validate().expect_err("out of range");
            assert_eq!(field, "delegation.call_out_fee_cents");
        }
    }
}
