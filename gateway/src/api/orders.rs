//! API handlers for work orders: list and detail, complaint intake from every channel, and the
//! live stream of order events (Server-Sent Events). The lifecycle steps (dispatch ... escalate)
//! are `api::steps`; vendor delegation's listings are `api::delegation`.
//!
//! The order service's refusals map to 403 (role or scope), 404 (an order outside the caller's
//! scope), 409 (lifecycle) and 422 (a time or amount out of range, naming the field and the
//! range).

use std::convert::Infallible;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::steps::parse_id;
use super::{require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::store::{ComplaintRow, OrderEventRow, OrderFilter, OrderRow, RequestRow};
use crate::orders::{ComplaintOutcome, ComplaintRequest, OrderState, RequestError};
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

pub(super) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(e.body_text()))
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
