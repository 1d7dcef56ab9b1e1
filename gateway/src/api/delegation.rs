//! API of vendor delegation (`orders::delegation`): a warranty vendor's team hands an order to
//! another vendor of the same contract period serving the order's township
//! (`POST /api/v1/orders/{id}/delegate`), the delegations with what each costs
//! (`GET /api/v1/delegations`) and the ledger of what each vendor owes to whom
//! (`GET /api/v1/delegations/ledger`).
//!
//! Scopes: operators and read-only tokens (bureaus, auditors) see every delegation; a township
//! officer its township's (another township is a 403 naming it); a vendor team its vendor's, as
//! debtor or creditor (another vendor is a 403); other teams none.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::steps::StepRequest;
use super::{ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::store::{DelegationFilter, DelegationRow, LedgerLine};
use crate::orders::OrderAction;
use crate::registry::TeamKind;

/// Most delegations one listing returns.
pub const MAX_LIMIT: usize = 10_000;
/// Longest id (vendor, period, township) a query takes.
const MAX_ID_CHARS: usize = 64;

/// A vendor's delegation of an order assigned to its team.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegateBody {
    /// The other vendor's team: a vendor team of the same contract period serving the order's
    /// township.
    pub team_id: String,
    /// A technician of that team; omitted: the one with the fewest open orders, nearest first.
    #[serde(default)]
    pub technician_id: Option<String>,
    /// Why the vendor cannot send its own staff (required, at most 2000 characters).
    pub reason: String,
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

/// Delegates an order assigned to the caller's vendor team to another vendor of the same
/// contract period serving the order's township, at the caller's cost: a `delegated` event,
/// the order back to `dispatched` with the other team, and a ledger entry of what the
/// delegating vendor owes (the call-out fee `delegation.call_out_fee_cents` and the repair's
/// parts). The team the order is assigned to (its team token), or an operator on its behalf.
/// 403: not assigned to the caller, a team of another township or period; 409: out of
/// warranty, not `dispatched`/`accepted`, or back to a vendor that already held it (a loop).
#[utoipa::path(post, path = "/api/v1/orders/{id}/delegate", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = DelegateBody,
    responses((status = 200, body = crate::orders::store::OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn delegate(step: StepRequest<DelegateBody>) -> Result<Response, ApiError> {
    step.take("delegate", |b| OrderAction::Delegate {
        team_id: b.team_id,
        technician_id: b.technician_id,
        reason: b.reason,
    })
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DelegationQuery {
    /// Only the delegations of this order.
    order_id: Option<i64>,
    /// Only those of this vendor, as debtor or creditor.
    vendor: Option<String>,
    /// Only those of this contract period.
    period: Option<String>,
    /// Only those of this township.
    township: Option<String>,
    /// Made at or after this time (Unix ms).
    from_ms: Option<i64>,
    /// Made before this time (Unix ms).
    to_ms: Option<i64>,
    /// Most delegations to return (default 500, at most 10000; the ledger sums them all).
    limit: Option<usize>,
}

fn bounded_id(field: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > MAX_ID_CHARS => Err(ApiError::bad_request(
            format!("{field}: 1 to {MAX_ID_CHARS} characters"),
        )),
        _ => Ok(()),
    }
}

/// The filter a caller may use: the query checked and narrowed to the token's scope.
async fn scoped_filter(
    state: &ApiState,
    principal: &Principal,
    query: Result<Query<DelegationQuery>, QueryRejection>,
) -> Result<DelegationFilter, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    bounded_id("vendor", &q.vendor)?;
    bounded_id("period", &q.period)?;
    bounded_id("township", &q.township)?;
    if let (Some(from), Some(to)) = (q.from_ms, q.to_ms) {
        if from >= to {
            return Err(ApiError::bad_request(format!(
                "from_ms {from} must be before to_ms {to}"
            )));
        }
    }
    if q.order_id.is_some_and(|id| id <= 0) {
        return Err(ApiError::bad_request("order_id: a positive number"));
    }
    let limit = q.limit.unwrap_or(500);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit: 1 to {MAX_LIMIT}, got {limit}"
        )));
    }
    let mut filter = DelegationFilter {
        order_id: q.order_id,
        vendor: q.vendor,
        period: q.period,
        township: q.township,
        from_ms: q.from_ms,
        to_ms: q.to_ms,
        limit,
    };
    match principal.role {
        Role::Operator | Role::ReadOnly => {}
        Role::Township => {
            let own = principal.township.clone().unwrap_or_default();
            if let Some(asked) = filter.township.as_deref().filter(|t| *t != own) {
                return Err(ApiError::forbidden(format!(
                    "township {asked:?} is outside this token's township {own:?}"
                )));
            }
            filter.township = Some(own);
        }
        Role::Team => {
            let team_id = principal.team.clone().unwrap_or_default();
            let team = state
                .orders
                .with_store(move |s| s.team(&team_id))
                .await?
                .ok_or_else(|| ApiError::forbidden("the token's team is not in the registry"))?;
            let vendor = match (team.kind, team.vendor_id) {
                (TeamKind::Vendor, Some(vendor)) => vendor,
                _ => {
                    return Err(ApiError::forbidden(
                        "only a vendor team sees delegations (its vendor's)",
                    ))
                }
            };
            if let Some(asked) = filter.vendor.as_deref().filter(|v| *v != vendor) {
                return Err(ApiError::forbidden(format!(
                    "vendor {asked:?} is not this team's vendor {vendor:?}"
                )));
            }
            filter.vendor = Some(vendor);
        }
    }
    Ok(filter)
}

/// The delegations in the caller's scope, oldest first, each with its status (`pending`:
/// the order awaits its repair, the fee is owed; `due`: repaired, fee and parts owed; `void`:
/// the order left the delegation, nothing owed) and what the delegating vendor owes for it.
#[utoipa::path(get, path = "/api/v1/delegations", tag = "orders", params(DelegationQuery),
    responses((status = 200, body = [DelegationRow]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<DelegationQuery>, QueryRejection>,
) -> Result<Json<Vec<DelegationRow>>, ApiError> {
    let filter = scoped_filter(&state, &principal, query).await?;
    let rows = state
        .orders
        .with_store(move |s| s.delegations(&filter))
        .await?;
    Ok(Json(rows))
}

/// One vendor's position over the ledger.
#[derive(Debug, Serialize, ToSchema)]
pub struct VendorBalance {
    pub vendor: String,
    /// What it owes other vendors, in fen.
    pub owes_cents: i64,
    /// What other vendors owe it, in fen.
    pub owed_cents: i64,
    /// owed - owes: positive, it is to be paid.
    pub net_cents: i64,
}

/// What each vendor owes to whom.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ledger {
    /// By contract period, debtor and creditor.
    pub lines: Vec<LedgerLine>,
    /// By vendor (of the lines above).
    pub balances: Vec<VendorBalance>,
    /// The sum of every line, in fen.
    pub total_owed_cents: i64,
}

/// The ledger of vendor delegations in the caller's scope: what each vendor owes each other
/// vendor (call-out fees, and the parts of repaired orders the resident does not pay), with
/// the orders still awaiting repair counted as `pending`, and each vendor's balance.
#[utoipa::path(get, path = "/api/v1/delegations/ledger", tag = "reports", params(DelegationQuery),
    responses((status = 200, body = Ledger), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn ledger(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<DelegationQuery>, QueryRejection>,
) -> Result<Json<Ledger>, ApiError> {
    let filter = scoped_filter(&state, &principal, query).await?;
    let lines = state
        .orders
        .with_store(move |s| s.delegation_ledger(&filter))
        .await?;
    let mut balances: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut total_owed_cents: i64 = 0;
    for line in &lines {
        let debtor = balances.entry(line.from_vendor.clone()).or_default();
        debtor.0 = debtor.0.saturating_add(line.owed_cents);
        let creditor = balances.entry(line.to_vendor.clone()).or_default();
        creditor.1 = creditor.1.saturating_add(line.owed_cents);
        total_owed_cents = total_owed_cents.saturating_add(line.owed_cents);
    }
    Ok(Json(Ledger {
        lines,
        balances: balances
            .into_iter()
            .map(|(vendor, (owes_cents, owed_cents))| VendorBalance {
                vendor,
                owes_cents,
                owed_cents,
                net_cents: owed_cents.saturating_sub(owes_cents),
            })
            .collect(),
        total_owed_cents,
    }))
}
