//! API handlers for work orders: list and detail, the lifecycle actions (dispatch, reassign,
//! accept, arrive, resolve with parts, confirm a team's misuse claim, callback, close, cancel,
//! merge, escalate), complaint intake from every channel, and the live stream of order events
//! (Server-Sent Events).
//!
//! Township officers dispatch, reassign (to teams serving their township), close, cancel,
//! escalate and record callbacks of their own township's orders (another township's is a 403
//! naming it); read-only bureau tokens may only escalate. Vendor delegation is `api::delegation`.
//!
//! Each handler checks the role its route needs; the order service checks the rest in the
//! transaction that writes (scope of everything named, event times, lifecycle, data), and its
//! refusals map to 403 (role or scope), 404 (an order outside the caller's scope), 409
//! (lifecycle) and 422 (a time or amount out of range, naming the field and the range).

use std::convert::Infallible;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{answered, idempotency_key, require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::store::{ComplaintRow, OrderEventRow, OrderFilter, OrderRow, RequestRow};
use crate::orders::{
    ComplaintOutcome, ComplaintRequest, OrderAction, OrderState, PartUse, RequestError,
};
use crate::registry::people::HouseholdView;

impl From<RequestError> for ApiError {
    fn from(error: RequestError) -> Self {
        match error {
            RequestError::Forbidden(message) => Self::forbidden(message),
            RequestError::OutOfRange { message, .. } => {
                Self::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, message)
            }
            RequestError::Conflict(message) => Self::conflict(message),
            RequestError::Missing(message) => Self::not_found(message),
            RequestError::Order(error) => error.into(),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OrderQuery {
    /// Only orders of this device.
    device_id: Option<String>,
    /// Only orders of this township.
    township: Option<String>,
    /// Only orders of this team.
    team_id: Option<String>,
    /// Only orders in this state (created, dispatched, accepted, on_site, resolved, callback_done, closed, cancelled, merged).
    state: Option<String>,
    /// Only orders that are not closed, cancelled or merged.
    #[serde(default)]
    open: bool,
    /// Most orders to return (default 500, at most 10000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(OrderQuery),
    responses((status = 200, body = [OrderRow]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list_orders(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<OrderQuery>, QueryRejection>,
) -> Result<Json<Vec<OrderRow>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let order_state = match query.state.as_deref() {
        Some(s) => Some(OrderState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state {s:?} is not one of {}",
                OrderState::ALL.map(OrderState::as_str).join(", ")
            ))
        })?),
        None => None,
    };
    let mut filter = OrderFilter {
        device_id: query.device_id,
        township: query.township,
        team_id: query.team_id,
        or_technician_id: None,
        state: order_state,
        open_only: query.open,
        limit: query.limit.unwrap_or(500).clamp(1, 10_000),
    };
    // Narrow the query to what the token may see; a township officer asking for another
    // township's orders is told so.
    match principal.role {
        Role::Township => {
            if let Some(asked) = filter.township.as_deref() {
                if principal.township.as_deref() != Some(asked) {
                    return Err(ApiError::forbidden(format!(
                        "township {asked:?} is outside this token's township {:?}",
                        principal.township.as_deref().unwrap_or_default()
                    )));
                }
            }
            filter.township = principal.township.clone();
        }
        Role::Team => {
            filter.team_id = principal.team.clone();
            filter.or_technician_id = principal.technician.clone();
        }
        Role::Operator | Role::ReadOnly => {}
    }
    let orders = state.orders.with_store(move |s| s.orders(&filter)).await?;
    Ok(Json(
        orders
            .into_iter()
            .filter(|o| principal.can_read(o))
            .collect(),
    ))
}

/// An order with its history, parts and complaints.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: OrderRow,
    pub events: Vec<OrderEventRow>,
    /// (part code, quantity, unit price in fen)
    #[schema(value_type = Vec<Vec<Object>>)]
    pub parts: Vec<(String, i64, i64)>,
    pub complaints: Vec<ComplaintRow>,
    /// The household and its people (resident, phones, address, caretaker), masked for a
    /// read-only role; `None` when the order names no registered household.
    pub household: Option<HouseholdView>,
    /// The requests the intake desk logged about this order (kind, channel, 12345 ticket
    /// number, the caller and the number to ring back), callers masked for a read-only role.
    pub requests: Vec<RequestRow>,
}

async fn readable_order(
    state: &ApiState,
    principal: &Principal,
    id: i64,
) -> Result<OrderRow, ApiError> {
    let order = state
        .orders
        .with_store(move |s| s.order_row(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {id}")))?;
    if !principal.can_read(&order) {
        // Do not tell another team that the order exists.
        return Err(ApiError::not_found(format!("no order {id}")));
    }
    Ok(order)
}

#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", params(("id" = i64, Path, description = "order id")),
    responses((status = 200, body = OrderDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get_order(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<OrderDetail>, ApiError> {
    let id = parse_id(&id)?;
    readable_order(&state, &principal, id).await?;
    let detail = state
        .orders
        .with_store(move |s| {
            let Some((order, events)) = s.order(id)? else {
                return Ok(None);
            };
            let household = match &order.household_id {
                Some(household) => s.household_view(household)?,
                None => None,
            };
            Ok(Some(OrderDetail {
                parts: s.order_parts(id)?,
                complaints: s.complaints_of(id)?,
                requests: s.requests_of_order(id)?,
                order,
                events,
                household,
            }))
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no order {id}")))?;
    let mut detail = detail;
    detail.household = detail
        .household
        .take()
        .map(|view| super::households::for_role(&principal, view));
    if principal.masks_people() {
        detail.requests = std::mem::take(&mut detail.requests)
            .into_iter()
            .map(RequestRow::mask)
            .collect();
    }
    Ok(Json(detail))
}

pub(super) fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .ok()
        .filter(|id: &i64| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("order id {id:?} is not a positive number")))
}

pub(super) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(e.body_text()))
}

/// Checks the role, then lets the order service check the order's scope (another team's or
/// township's order is a 404), the time, the lifecycle and the data, and write.
/// With an `Idempotency-Key` header, the step is applied once: sent again with the same key it
/// returns the first answer (`Idempotent-Replayed: true`).
#[allow(clippy::too_many_arguments)]
pub(super) async fn act(
    state: ApiState,
    principal: Principal,
    id: &str,
    headers: &HeaderMap,
    allowed: &[Role],
    what: &str,
    action: OrderAction,
    at_ms: Option<i64>,
) -> Result<Response, ApiError> {
    let id = parse_id(id)?;
    require(&principal, allowed, what)?;
    let key = idempotency_key(headers)?;
    let answer = state
        .orders
        .act_once(id, &principal, action, at_ms, key)
        .await?;
    Ok(answered(answer))
}

/// `at_ms` (every step has it): when it happened, Unix ms. Omitted, the server's clock is the
/// event time. Only an operator may set it (recording a step reported by phone, or a replay),
/// within [the order's last event, server now + 60 s]; outside it the answer is 422, and from
/// any other role 403.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlainStep {
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DispatchBody {
    /// The team; omitted: routing picks it.
    #[serde(default)]
    pub team_id: Option<String>,
    #[serde(default)]
    pub technician_id: Option<String>,
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

/// Dispatches a created order (operators; township officers their own township's orders, to a
/// team serving it, else 403 naming the township). Without `team_id`, routing picks the team.
#[utoipa::path(post, path = "/api/v1/orders/{id}/dispatch", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = DispatchBody,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn dispatch(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<DispatchBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator, Role::Township],
        "dispatch orders",
        OrderAction::Dispatch {
            team_id: b.team_id,
            technician_id: b.technician_id,
        },
        b.at_ms,
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReassignBody {
    pub team_id: String,
    #[serde(default)]
    pub technician_id: Option<String>,
    pub reason: String,
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

/// Moves an order to another team (operators; township officers their own township's orders,
/// to a team serving it only).
#[utoipa::path(post, path = "/api/v1/orders/{id}/reassign", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = ReassignBody,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reassign(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<ReassignBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator, Role::Township],
        "reassign orders",
        OrderAction::Reassign {
            team_id: b.team_id,
            technician_id: b.technician_id,
            reason: b.reason,
        },
        b.at_ms,
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/accept", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = PlainStep,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn accept(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<PlainStep>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator, Role::Team],
        "accept orders",
        OrderAction::Accept,
        b.at_ms,
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/arrive", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = PlainStep,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn arrive(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<PlainStep>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator, Role::Team],
        "report arrival",
        OrderAction::Arrive,
        b.at_ms,
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// Parts used, from the unified price list (at most 50 lines, quantity 1..=100 each).
    #[serde(default)]
    pub parts: Vec<PartUse>,
    /// Damage from misuse: the resident pays for the parts even in warranty. From an operator
    /// the charge applies at once; from a team it is recorded as a claim (`misuse_claimed`) and
    /// the resident pays nothing for it until an operator confirms it (`confirm_misuse`).
    #[serde(default)]
    pub misuse: bool,
    #[serde(default)]
    pub note: String,
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/resolve", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = ResolveBody,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn resolve(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<ResolveBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator, Role::Team],
        "resolve orders",
        OrderAction::Resolve {
            parts: b.parts,
            misuse: b.misuse,
            note: b.note,
        },
        b.at_ms,
    )
    .await
}

/// An operator's confirmation of a team's misuse claim.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmMisuseBody {
    /// Why the claim holds (photos seen, the resident's account...).
    #[serde(default)]
    pub note: String,
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

/// Confirms a team's misuse claim on a resolved order (operators only): the charge rule then
/// applies with misuse, so the resident pays for the parts even in warranty. 409 when the
/// order is not resolved (or is closed) or has no claim awaiting confirmation.
#[utoipa::path(post, path = "/api/v1/orders/{id}/confirm_misuse", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = ConfirmMisuseBody,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn confirm_misuse(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<ConfirmMisuseBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator],
        "confirm misuse",
        OrderAction::ConfirmMisuse { note: b.note },
        b.at_ms,
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbackBody {
    /// The resident's satisfaction, 1 (very unhappy) to 5 (very happy).
    pub satisfaction: i64,
    /// The heating really works again; `false` reopens the order.
    pub solved: bool,
    #[serde(default)]
    pub note: String,
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/callback", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = CallbackBody,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn callback(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<CallbackBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator, Role::Township],
        "record callbacks",
        OrderAction::Callback {
            satisfaction: b.satisfaction,
            solved: b.solved,
            note: b.note,
        },
        b.at_ms,
    )
    .await
}

/// Closes an order after its callback (operators; township officers their own township's).
#[utoipa::path(post, path = "/api/v1/orders/{id}/close", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = PlainStep,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn close(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<PlainStep>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator, Role::Township],
        "close orders",
        OrderAction::Close,
        b.at_ms,
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBody {
    pub reason: String,
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

/// Cancels an open order with a reason (operators; township officers their own township's).
#[utoipa::path(post, path = "/api/v1/orders/{id}/cancel", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = CancelBody,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn cancel(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<CancelBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator, Role::Township],
        "cancel orders",
        OrderAction::Cancel { reason: b.reason },
        b.at_ms,
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeBody {
    /// The order this one duplicates.
    pub into: i64,
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/merge", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = MergeBody,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn merge(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<MergeBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator],
        "merge orders",
        OrderAction::Merge { into: b.into },
        b.at_ms,
    )
    .await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalateBody {
    #[serde(default)]
    pub note: String,
    /// Operators only: the event time (Unix ms), in [the order's last event, server now + 60 s].
    #[serde(default)]
    pub at_ms: Option<i64>,
}

/// Escalates (督办) an open order: operators, township officers (their own township's) and
/// read-only bureau tokens (区/市 bureaus: any order, with a note; the only change they may make).
#[utoipa::path(post, path = "/api/v1/orders/{id}/escalate", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = EscalateBody,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn escalate(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<EscalateBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let b = body(payload)?;
    act(
        state,
        principal,
        &id,
        &headers,
        &[Role::Operator, Role::Township, Role::ReadOnly],
        "escalate orders",
        OrderAction::Escalate { note: b.note },
        b.at_ms,
    )
    .await
}

#[utoipa::path(post, path = "/api/v1/complaints", tag = "orders", request_body = ComplaintRequest,
    responses((status = 201, body = ComplaintOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn complaint(
    principal: Principal,
    State(state): State<ApiState>,
    payload: Result<Json<ComplaintRequest>, JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<ComplaintOutcome>), ApiError> {
    let request = body(payload)?;
    require(
        &principal,
        &[Role::Operator, Role::Township],
        "take complaints",
    )?;
    // The service checks that the device, the household and the order it would join are in
    // the token's township, in the transaction that links.
    let outcome = state.orders.complaint(&principal, request).await?;
    Ok((axum::http::StatusCode::CREATED, Json(outcome)))
}

#[utoipa::path(get, path = "/api/v1/stream", tag = "orders",
    responses((status = 200, description = "Server-Sent Events, JSON data: `order` for every order event (created, dispatched, sla_warning, escalated...), `alert` for every alert that fires or resolves (the rule's transition with its township), `escalation` for a severity rise within an alert episode, `incident` for a village or township supply incident that begins or ends, and `lagged` with the number of events a slow client missed", content_type = "text/event-stream"), (status = 401, body = ErrorBody)))]
pub async fn stream(
    principal: Principal,
    State(state): State<ApiState>,
) -> Sse<impl tokio_stream::Stream<Item = Result<Event, Infallible>>> {
    use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
    use tokio_stream::StreamExt as _;
    // A slow client missed events: say so, so it can reload the lists.
    let lagged = |missed: u64| {
        Some(Ok(Event::default()
            .event("lagged")
            .data(format!("{{\"missed\":{missed}}}"))))
    };
    let order_viewer = principal.clone();
    let orders = tokio_stream::wrappers::BroadcastStream::new(state.orders.subscribe()).filter_map(
        move |item| match item {
            Ok(notice) => {
                let visible = match order_viewer.role {
                    Role::Operator | Role::ReadOnly => true,
                    Role::Township => {
                        order_viewer.township.as_deref() == Some(notice.township.as_str())
                    }
                    Role::Team => {
                        (order_viewer.team.is_some() && order_viewer.team == notice.team_id)
                            || (order_viewer.technician.is_some()
                                && order_viewer.technician == notice.technician_id)
                    }
                };
                visible.then(|| {
                    let data = serde_json::to_string(&notice).unwrap_or_default();
                    Ok(Event::default().event("order").data(data))
                })
            }
            Err(BroadcastStreamRecvError::Lagged(missed)) => lagged(missed),
        },
    );
    let live = tokio_stream::wrappers::BroadcastStream::new(state.orders.subscribe_live())
        .filter_map(move |item| match item {
            Ok(event) => {
                // Teams see their orders only; townships their own township's alerts.
                let visible = match principal.role {
                    Role::Operator | Role::ReadOnly => true,
                    Role::Township => {
                        principal.township.is_some()
                            && principal.township.as_deref() == event.township()
                    }
                    Role::Team => false,
                };
                visible.then(|| {
                    let data = serde_json::to_string(&event).unwrap_or_default();
                    Ok(Event::default().event(event.name()).data(data))
                })
            }
            Err(BroadcastStreamRecvError::Lagged(missed)) => lagged(missed),
        });
    Sse::new(orders.merge(live)).keep_alive(KeepAlive::default())
}
