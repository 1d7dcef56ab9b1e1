//! The lifecycle steps of a work order as the API offers them (`POST /api/v1/orders/{id}/{step}`):
//! one table, [`STEPS`], of each step's route, the roles that may take it and how a refusal
//! names it, and one way to take a step ([`StepRequest::take`]): the caller's token (401), the
//! JSON body (400), the order id (400), the role from the table (403), then the order service,
//! which checks the order's scope (another team's or township's order is a 404), the event
//! time, the lifecycle and the data, and writes once per `Idempotency-Key`.
//!
//! Each route keeps its own handler only for its OpenAPI description and body type; what the
//! handler does is one line: which [`OrderAction`] its body becomes.

use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::ToSchema;

use super::{answered, idempotency_key, require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::store::OrderRow;
use crate::orders::{OrderAction, PartUse};

/// One step: the last segment of its route, the roles that may take it, and what a 403 says
/// the caller may not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub route: &'static str,
    pub roles: &'static [Role],
    pub what: &'static str,
}

const fn step(route: &'static str, roles: &'static [Role], what: &'static str) -> Step {
    Step { route, roles, what }
}

use Role::{Operator, ReadOnly, Team, Township};

/// Every step an order's API offers. Township officers act on their own township's orders only
/// and bureau (read-only) tokens may only escalate: the order service checks the scope.
pub const STEPS: &[Step] = &[
    step("dispatch", &[Operator, Township], "dispatch orders"),
    step("reassign", &[Operator, Township], "reassign orders"),
    step("accept", &[Operator, Team], "accept orders"),
    step("arrive", &[Operator, Team], "report arrival"),
    step("resolve", &[Operator, Team], "resolve orders"),
    step("confirm_misuse", &[Operator], "confirm misuse"),
    step("callback", &[Operator, Township], "record callbacks"),
    step("close", &[Operator, Township], "close orders"),
    step("cancel", &[Operator, Township], "cancel orders"),
    step("merge", &[Operator], "merge orders"),
    step(
        "escalate",
        &[Operator, Township, ReadOnly],
        "escalate orders",
    ),
    step("delegate", &[Operator, Team], "delegate orders"),
];

/// The step of a route.
pub fn find(route: &str) -> Option<&'static Step> {
    STEPS.iter().find(|s| s.route == route)
}

/// The routes of the steps a role may take, in table order.
pub fn allowed(role: Role) -> Vec<&'static str> {
    STEPS
        .iter()
        .filter(|s| s.roles.contains(&role))
        .map(|s| s.route)
        .collect()
}

/// An order id from the path: a positive number.
pub(super) fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .ok()
        .filter(|id: &i64| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("order id {id:?} is not a positive number")))
}

/// What every step request carries: the authenticated caller, the order id from the path, the
/// headers (for `Idempotency-Key`) and the JSON body, whose error waits until the step is taken
/// so that a missing token is a 401 whatever the body.
pub struct StepRequest<B> {
    state: ApiState,
    principal: Principal,
    id: String,
    headers: HeaderMap,
    body: Result<B, ApiError>,
}

impl<B: DeserializeOwned + Send> FromRequest<ApiState> for StepRequest<B> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &ApiState) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let principal = Principal::from_request_parts(&mut parts, state).await?;
        let Path(id) = Path::<String>::from_request_parts(&mut parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let headers = parts.headers.clone();
        let body = Json::<B>::from_request(Request::from_parts(parts, body), state)
            .await
            .map(|Json(b)| b)
            .map_err(|e| ApiError::bad_request(e.body_text()));
        Ok(Self {
            state: state.clone(),
            principal,
            id,
            headers,
            body,
        })
    }
}

/// A step's body: every step may carry the event time an operator records.
pub trait StepBody {
    fn at_ms(&self) -> Option<i64>;
}

impl<B: StepBody> StepRequest<B> {
    /// Takes the step `route` of [`STEPS`] with the action its body becomes: the body, the id
    /// and the role checked, then the order service applies it (once per `Idempotency-Key`: sent
    /// again with the same key it returns the first answer, `Idempotent-Replayed: true`).
    pub async fn take(
        self,
        route: &str,
        action: impl FnOnce(B) -> OrderAction,
    ) -> Result<Response, ApiError> {
        let body = self.body?;
        let id = parse_id(&self.id)?;
        let step = find(route).ok_or_else(|| ApiError::not_found("no such step"))?;
        require(&self.principal, step.roles, step.what)?;
        let key = idempotency_key(&self.headers)?;
        let at_ms = body.at_ms();
        let answer = self
            .state
            .orders
            .act_once(id, &self.principal, action(body), at_ms, key)
            .await?;
        Ok(answered(answer))
    }
}

macro_rules! step_bodies {
    ($($body:ty),* $(,)?) => {
        $(impl StepBody for $body {
            fn at_ms(&self) -> Option<i64> {
                self.at_ms
            }
        })*
    };
}

step_bodies!(
    PlainStep,
    DispatchBody,
    ReassignBody,
    ResolveBody,
    ConfirmMisuseBody,
    CallbackBody,
    CancelBody,
    MergeBody,
    EscalateBody,
    super::delegation::DelegateBody,
);

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
pub async fn dispatch(step: StepRequest<DispatchBody>) -> Result<Response, ApiError> {
    step.take("dispatch", |b| OrderAction::Dispatch {
        team_id: b.team_id,
        technician_id: b.technician_id,
    })
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
pub async fn reassign(step: StepRequest<ReassignBody>) -> Result<Response, ApiError> {
    step.take("reassign", |b| OrderAction::Reassign {
        team_id: b.team_id,
        technician_id: b.technician_id,
        reason: b.reason,
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/accept", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = PlainStep,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn accept(step: StepRequest<PlainStep>) -> Result<Response, ApiError> {
    step.take("accept", |_| OrderAction::Accept).await
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/arrive", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = PlainStep,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn arrive(step: StepRequest<PlainStep>) -> Result<Response, ApiError> {
    step.take("arrive", |_| OrderAction::Arrive).await
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
pub async fn resolve(step: StepRequest<ResolveBody>) -> Result<Response, ApiError> {
    step.take("resolve", |b| OrderAction::Resolve {
        parts: b.parts,
        misuse: b.misuse,
        note: b.note,
    })
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
pub async fn confirm_misuse(step: StepRequest<ConfirmMisuseBody>) -> Result<Response, ApiError> {
    step.take("confirm_misuse", |b| OrderAction::ConfirmMisuse {
        note: b.note,
    })
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
pub async fn callback(step: StepRequest<CallbackBody>) -> Result<Response, ApiError> {
    step.take("callback", |b| OrderAction::Callback {
        satisfaction: b.satisfaction,
        solved: b.solved,
        note: b.note,
    })
    .await
}

/// Closes an order after its callback (operators; township officers their own township's).
#[utoipa::path(post, path = "/api/v1/orders/{id}/close", tag = "orders", params(("id" = i64, Path), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")), request_body = PlainStep,
    responses((status = 200, body = OrderRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn close(step: StepRequest<PlainStep>) -> Result<Response, ApiError> {
    step.take("close", |_| OrderAction::Close).await
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
pub async fn cancel(step: StepRequest<CancelBody>) -> Result<Response, ApiError> {
    step.take("cancel", |b| OrderAction::Cancel { reason: b.reason })
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
pub async fn merge(step: StepRequest<MergeBody>) -> Result<Response, ApiError> {
    step.take("merge", |b| OrderAction::Merge { into: b.into })
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
pub async fn escalate(step: StepRequest<EscalateBody>) -> Result<Response, ApiError> {
    step.take("escalate", |b| OrderAction::Escalate { note: b.note })
        .await
}
