//! API handler of the technicians' phone view: one technician's (or one team's) open orders,
//! each with what the field needs in one answer: the household's people with the numbers to
//! ring, the callers who asked about it, whether it is the technician's own and whether a
//! misuse claim awaits an operator. The steps themselves (accept, arrive, resolve with parts)
//! are the order routes, sent with an `Idempotency-Key` so a retry over a flaky connection is
//! applied once.
//!
//! A team token sees its team's orders (and a technician's own token the technician's own
//! too) and may not ask for another team or technician; an operator names the team or the
//! technician; township and read-only tokens are refused (they use the order pages).
//!
//! A technician's day as a route (`GET /api/v1/field/route`): their open orders in visiting
//! order with the predicted arrival of each ([`dispatch::day_route`]); a technician's own token
//! asks for itself, a team token for its technicians, an operator for anyone.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::dispatch::{self, RouteStop};
use crate::orders::model::misuse_claim_pending;
use crate::orders::store::{OrderFilter, OrderRow, Store, StoreError};
use crate::registry::people::HouseholdView;

/// Most orders the field view lists.
const MAX_ORDERS: usize = 200;
/// Longest id in the query.
const MAX_ID_CHARS: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FieldQuery {
    /// The team (an operator names it or the technician; a team token may only name its own).
    team_id: Option<String>,
    /// The technician whose own orders come first (a technician's token: only itself).
    technician_id: Option<String>,
}

/// Someone who asked about the order through the desk.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldCaller {
    pub name: String,
    /// Digits, to ring with a `tel:` link.
    pub phone: String,
    pub channel: String,
    /// The channel's ticket number (12345 工单号), if any.
    pub ticket: Option<String>,
    pub kind: String,
}

/// One order in the field view.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldOrder {
    #[serde(flatten)]
    pub order: OrderRow,
    /// The household and its people, in full (the team is at the house).
    pub household: Option<HouseholdView>,
    /// The callers who asked about this order (a caller without a registered device, too).
    pub callers: Vec<FieldCaller>,
    /// Assigned to the technician of the view.
    pub mine: bool,
    /// The team reported misuse and an operator has not confirmed it yet.
    pub misuse_claim_pending: bool,
}

/// The field view's orders: the technician's own first, then the team's, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldOrders {
    pub team_id: Option<String>,
    pub technician_id: Option<String>,
    pub items: Vec<FieldOrder>,
}

fn check_id(field: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(id) if id.is_empty() || id.chars().count() > MAX_ID_CHARS => Err(
            ApiError::bad_request(format!("{field}: 1 to {MAX_ID_CHARS} characters")),
        ),
        _ => Ok(()),
    }
}

#[utoipa::path(get, path = "/api/v1/field/orders", tag = "field", params(FieldQuery),
    responses((status = 200, body = FieldOrders), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn orders(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<FieldQuery>, QueryRejection>,
) -> Result<Json<FieldOrders>, ApiError> {
    require(
        &principal,
        &[Role::Operator, Role::Team],
        "open the field view",
    )?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    check_query(&principal, &query)?;
    let asked_team = match principal.role {
        Role::Team => principal.team.clone(),
        _ => query.team_id.clone(),
    };
    let asked_technician = principal.technician.clone().or(query.technician_id.clone());
    let (team, technician, items) = state
        .orders
        .with_store(move |s| field_view(s, asked_team, asked_technician))
        .await?
        .map_err(|id| {
            ApiError::bad_request(format!(
                "technician_id {id:?} is not a technician of the registry{}",
                if principal.role == Role::Team || query.team_id.is_some() {
                    " in the team"
                } else {
                    ""
                }
            ))
        })?;
    // A team token sees only what it may read (its team's orders and its technician's own).
    let mut items: Vec<FieldOrder> = items
        .into_iter()
        .filter(|item| principal.can_read(&item.order))
        .collect();
    items.sort_by(|a, b| {
        b.mine
            .cmp(&a.mine)
            .then(b.order.created_at_ms.cmp(&a.order.created_at_ms))
    });
    Ok(Json(FieldOrders {
        team_id: team,
        technician_id: technician,
        items,
    }))
}

/// The query's ids are well formed; a team token names only its own team and technician; an
/// operator names one of them.
fn check_query(principal: &Principal, query: &FieldQuery) -> Result<(), ApiError> {
    check_id("team_id", &query.team_id)?;
    check_id("technician_id", &query.technician_id)?;
    if principal.role == Role::Team {
        if query.team_id.is_some() && query.team_id != principal.team {
            return Err(ApiError::forbidden(format!(
                "team_id {:?} is not the token's team",
                query.team_id.as_deref().unwrap_or_default()
            )));
        }
        if principal.technician.is_some()
            && query.technician_id.is_some()
            && query.technician_id != principal.technician
        {
            return Err(ApiError::forbidden(format!(
                "technician_id {:?} is not the token's technician",
                query.technician_id.as_deref().unwrap_or_default()
            )));
        }
    } else if query.team_id.is_none() && query.technician_id.is_none() {
        return Err(ApiError::bad_request(
            "team_id or technician_id: name the team or the technician whose view to open",
        ));
    }
    Ok(())
}

/// The team, the technician and their open orders as the field sees them; the id of a
/// technician that does not exist (or is not in the team named) as the inner error.
#[allow(clippy::type_complexity)]
fn field_view(
    s: &Store,
    asked_team: Option<String>,
    asked_technician: Option<String>,
) -> Result<Result<(Option<String>, Option<String>, Vec<FieldOrder>), String>, StoreError> {
    // The technician must exist, in the team when both are named.
    let technician = match &asked_technician {
        Some(id) => match s.technician(id)? {
            Some(t) if asked_team.as_ref().is_none_or(|team| *team == t.team_id) => Some(t),
            _ => return Ok(Err(id.clone())),
        },
        None => None,
    };
    let team = asked_team.or_else(|| technician.as_ref().map(|t| t.team_id.clone()));
    let orders = match (&team, &technician) {
        (Some(team), technician) => s.orders(&OrderFilter {
            team_id: Some(team.clone()),
            or_technician_id: technician.as_ref().map(|t| t.id.clone()),
            open_only: true,
            limit: MAX_ORDERS,
            ..OrderFilter::default()
        })?,
        (None, Some(technician)) => s.open_orders_of_technician(&technician.id, MAX_ORDERS)?,
        (None, None) => Vec::new(),
    };
    let technician_id = technician.map(|t| t.id);
    let items = orders
        .into_iter()
        .map(|order| field_order(s, order, technician_id.as_deref()))
        .collect::<Result<_, _>>()?;
    Ok(Ok((team, technician_id, items)))
}

/// One order with its household, its callers and its claim, marked `mine` when assigned to
/// `technician_id`.
fn field_order(
    s: &Store,
    order: OrderRow,
    technician_id: Option<&str>,
) -> Result<FieldOrder, StoreError> {
    let household = match &order.household_id {
        Some(id) => s.household_view(id)?,
        None => None,
    };
    let callers = s
        .requests_of_order(order.id)?
        .into_iter()
        .map(|r| FieldCaller {
            name: r.caller_name,
            phone: r.caller_phone,
            channel: r.channel,
            ticket: r.ticket,
            kind: r.kind,
        })
        .collect();
    let kinds = s.event_kinds(order.id)?;
    Ok(FieldOrder {
        mine: technician_id.is_some() && order.technician_id.as_deref() == technician_id,
        misuse_claim_pending: misuse_claim_pending(kinds.iter().map(String::as_str)),
        household,
        callers,
        order,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RouteQuery {
    /// The technician (a technician's own token: only itself; a team token: its technicians).
    technician_id: String,
}

/// A technician's day: their open orders in visiting order.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldRoute {
    pub technician_id: String,
    pub team_id: String,
    /// The village the technician sets out from.
    pub base_village_id: Option<String>,
    /// A snow day was declared (`/api/v1/dispatch/conditions`).
    pub snow: bool,
    /// Planned at, Unix ms.
    pub at_ms: i64,
    pub stops: Vec<RouteStop>,
}

/// A technician's open orders in visiting order: on site first, then the nearest next from
/// their base by the registry's travel times (greedy), each with its predicted arrival.
#[utoipa::path(get, path = "/api/v1/field/route", tag = "field", params(RouteQuery),
    responses((status = 200, body = FieldRoute), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn route(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<RouteQuery>, QueryRejection>,
) -> Result<Json<FieldRoute>, ApiError> {
    require(&principal, &[Role::Operator, Role::Team], "plan a route")?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = query.technician_id;
    check_id("technician_id", &Some(id.clone()))?;
    if principal.technician.as_ref().is_some_and(|own| *own != id) {
        return Err(ApiError::forbidden(format!(
            "technician_id {id:?} is not the token's technician"
        )));
    }
    let now = state.orders.now_ms();
    let asked = id.clone();
    let planned = state
        .orders
        .with_store(move |s| {
            let Some(technician) = s.technician(&asked)? else {
                return Ok(None);
            };
            let stops = dispatch::day_route(s, &technician, now)?;
            Ok(Some((technician, s.snow()?, stops)))
        })
        .await?;
    let Some((technician, snow, stops)) = planned else {
        return Err(ApiError::not_found(format!(
            "technician_id {id:?} is not a technician of the registry"
        )));
    };
    if principal.role == Role::Team && principal.team.as_deref() != Some(&technician.team_id) {
        return Err(ApiError::forbidden(format!(
            "technician_id {id:?} is not a technician of the token's team"
        )));
    }
    Ok(Json(FieldRoute {
        technician_id: technician.id,
        team_id: technician.team_id,
        base_village_id: technician.home_village_id,
        snow,
        at_ms: now,
        stops,
    }))
}
