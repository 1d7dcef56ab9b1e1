//! API handlers of the intake desk (统一接待): log a request of any kind from any channel with
//! its ticket number (`POST /api/v1/requests`, retried safely with an `Idempotency-Key`), list
//! requests (unanswered ones first of all), answer one, and everything the desk needs on the
//! screen while the caller talks (`GET /api/v1/households/{id}/context`: the household's people,
//! devices, open orders, recent alerts and requests).
//!
//! Operators log and answer requests everywhere, township officers in their township; a
//! read-only role lists them with callers masked; teams are refused (they see the callers of
//! their own orders on the order).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::households::for_role;
use super::{answered, idempotency_key, require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::fleet::DeviceState;
use crate::orders::store::{AlertRow, OrderRow, RequestFilter, RequestRow};
use crate::orders::{IntakeOutcome, IntakeRequest, RequestKind};
use crate::registry::people::HouseholdView;

/// The roles that log and answer requests.
const DESK: [Role; 2] = [Role::Operator, Role::Township];
/// The roles that may read requests and a caller's context (read-only masked).
const READERS: [Role; 3] = [Role::Operator, Role::Township, Role::ReadOnly];
/// Most requests one list returns.
const MAX_LIST: usize = 500;
/// How far back a caller's context shows alerts.
const RECENT_ALERTS_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// Most alerts, orders and requests a caller's context shows of each.
const CONTEXT_ITEMS: usize = 20;
/// Longest id in a path or query.
const MAX_ID_CHARS: usize = 100;

fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
        return Err(ApiError::bad_request(format!(
            "{field}: 1 to {MAX_ID_CHARS} characters"
        )));
    }
    Ok(())
}

/// Logs a request and applies its kind's response rule: a repair joins the household's open
/// order or opens and dispatches one (the 10 min / 2 h / 4 h clocks); any other kind joins
/// the household's open order when there is one. A caller without a registered device gives
/// `caller_name`, `caller_phone` and `village_id`. One request per channel and ticket (409).
#[utoipa::path(post, path = "/api/v1/requests", tag = "intake", request_body = IntakeRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each request logged: the same key again returns the first answer and logs nothing")),
    responses((status = 201, body = IntakeOutcome), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn take(
    principal: Principal,
    State(state): State<ApiState>,
    headers: HeaderMap,
    payload: Result<Json<IntakeRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(&principal, &DESK, "log requests")?;
    let key = idempotency_key(&headers)?;
    let Json(request) = payload.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let answer = state.orders.take_request(&principal, request, key).await?;
    Ok(answered(answer))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RequestQuery {
    /// Only requests of this household.
    household_id: Option<String>,
    /// Only requests of this kind (repair, policy, charge, conversion, service_complaint, other).
    kind: Option<String>,
    /// Only requests still awaiting their response: not answered, and for a repair not on an
    /// order either (a repair's response is its dispatched order).
    #[serde(default)]
    unanswered: bool,
    /// Most requests to return (default 100, at most 500).
    limit: Option<usize>,
}

/// Requests, newest first, in the caller's scope (a township officer's township), callers
/// masked for a read-only role.
#[utoipa::path(get, path = "/api/v1/requests", tag = "intake", params(RequestQuery),
    responses((status = 200, body = [RequestRow]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<RequestQuery>, QueryRejection>,
) -> Result<Json<Vec<RequestRow>>, ApiError> {
    require(&principal, &READERS, "read requests")?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(household) = &query.household_id {
        check_id("household_id", household)?;
    }
    let kind = match query.kind.as_deref() {
        Some(kind) => Some(
            RequestKind::parse(kind)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "kind {kind:?} is not one of {}",
                        RequestKind::ALL.map(RequestKind::as_str).join(", ")
                    ))
                })?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    let filter = RequestFilter {
        household_id: query.household_id,
        township: match principal.role {
            Role::Township => Some(principal.township.clone().unwrap_or_default()),
            _ => None,
        },
        kind,
        unanswered: query.unanswered,
        limit: query.limit.unwrap_or(100).clamp(1, MAX_LIST),
    };
    let rows = state
        .orders
        .with_store(move |s| s.requests(&filter))
        .await?;
    Ok(Json(
        rows.into_iter()
            .filter(|r| principal.can_read_township(&r.township))
            .map(|r| {
                if principal.masks_people() {
                    r.mask()
                } else {
                    r
                }
            })
            .collect(),
    ))
}

/// What the caller was told.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnswerBody {
    /// The answer (1 to 2000 characters): the request's response.
    pub answer: String,
}

/// Records the answer to a request (its response, which the scheme counts: 100 % of policy,
/// charge and conversion requests). 409 when it was answered already.
#[utoipa::path(post, path = "/api/v1/requests/{id}/answer", tag = "intake", request_body = AnswerBody,
    params(("id" = i64, Path, description = "request id"), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _: the same key again returns the first answer")),
    responses((status = 200, body = RequestRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn answer(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<AnswerBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id: i64 = id.parse().ok().filter(|id: &i64| *id > 0).ok_or_else(|| {
        ApiError::bad_request(format!("request id {id:?} is not a positive number"))
    })?;
    require(&principal, &DESK, "answer requests")?;
    let key = idempotency_key(&headers)?;
    let Json(body) = payload.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let answer = state
        .orders
        .answer_request(&principal, id, body.answer, key)
        .await?;
    Ok(answered(answer))
}

/// One of the household's devices as the desk sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContextDevice {
    pub device_id: String,
    /// The latest the gateway knows (status, values, fault); `None` before its first reading.
    pub state: Option<DeviceState>,
}

/// Everything the desk shows while a caller of a registered household talks.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallerContext {
    /// The household and its people (masked for a read-only role).
    pub household: HouseholdView,
    pub devices: Vec<ContextDevice>,
    /// Orders not closed, cancelled or merged, newest first (at most 20).
    pub open_orders: Vec<OrderRow>,
    /// Alerts of its devices in the last 7 days, newest first (at most 20).
    pub recent_alerts: Vec<AlertRow>,
    /// Its latest requests (at most 20).
    pub recent_requests: Vec<RequestRow>,
}

#[utoipa::path(get, path = "/api/v1/households/{id}/context", tag = "intake", params(("id" = String, Path, description = "household id")),
    responses((status = 200, body = CallerContext), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn context(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<CallerContext>, ApiError> {
    require(&principal, &READERS, "look households up")?;
    check_id("household id", &id)?;
    let since = state.orders.now_ms().saturating_sub(RECENT_ALERTS_MS);
    let lookup = id.clone();
    let found = state
        .orders
        .with_store(move |s| {
            let Some(household) = s.household_view(&lookup)? else {
                return Ok(None);
            };
            let orders = s.open_orders_of_household(&lookup, CONTEXT_ITEMS)?;
            let alerts = s.alerts_of_devices(&household.device_ids, since, CONTEXT_ITEMS)?;
            let requests = s.requests(&RequestFilter {
                household_id: Some(lookup.clone()),
                limit: CONTEXT_ITEMS,
                ..RequestFilter::default()
            })?;
            Ok(Some((household, orders, alerts, requests)))
        })
        .await?;
    let (household, open_orders, recent_alerts, recent_requests) =
        found.ok_or_else(|| ApiError::not_found(format!("no household {id:?}")))?;
    if !principal.can_read_township(&household.township_id) {
        return Err(ApiError::forbidden(format!(
            "household {id:?} is not in the token's township"
        )));
    }
    let devices = household
        .device_ids
        .iter()
        .map(|device| ContextDevice {
            device_id: device.clone(),
            state: state.fleet.get(device),
        })
        .collect();
    Ok(Json(CallerContext {
        household: for_role(&principal, household),
        devices,
        open_orders,
        recent_alerts,
        recent_requests: recent_requests
            .into_iter()
            .map(|r| {
                if principal.masks_people() {
                    r.mask()
                } else {
                    r
                }
            })
            .collect(),
    }))
}
