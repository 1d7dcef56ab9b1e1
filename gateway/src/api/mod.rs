//! The HTTP API (axum) under `/api/v1`, described by an OpenAPI document at
//! `/api/v1/openapi.json` that is generated from the same handler declarations the router is
//! built from (utoipa-axum), so the two cannot disagree. Plus `/healthz` and `/metrics`.
//!
//! Every `/api/v1` route except the OpenAPI document needs a bearer token (unless auth is
//! disabled for the local demo); roles are checked per route and per order.

mod campaigns;
mod city;
mod console;
mod delegation;
mod dispatch;
mod field;
mod fleet;
mod households;
mod intake;
mod orders;
mod prevention;
mod registry;
mod reports;
mod steps;
mod stock;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authenticator, Principal, Role};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::orders::OrderService;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub fleet: Arc<Fleet>,
    pub orders: OrderService,
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Authenticator>,
    /// The history sink's counters, when it is enabled.
    pub sink: Option<Arc<crate::sinks::influxdb::SinkStats>>,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

/// An error answer: a status and a JSON `{"error": "..."}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn internal(error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the gateway log",
        )
    }
}

impl From<crate::orders::store::StoreError> for ApiError {
    fn from(error: crate::orders::store::StoreError) -> Self {
        Self::internal(&error)
    }
}

impl From<crate::orders::OrderError> for ApiError {
    fn from(error: crate::orders::OrderError) -> Self {
        use crate::orders::OrderError;
        match error {
            OrderError::NotFound(_) => Self::not_found(error.to_string()),
            OrderError::Invalid(message) => Self::bad_request(message),
            OrderError::Transition(e) => Self::conflict(e.to_string()),
            OrderError::Store(e) => Self::internal(&e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// The caller, from the `Authorization` header.
impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        state
            .auth
            .authenticate(header.as_deref())
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))
    }
}

/// The one route that takes its token in the URL.
pub const STREAM_PATH: &str = "/api/v1/stream";

/// Browsers' EventSource cannot send headers: a GET of the event stream may carry its token as
/// `?access_token=`. This moves it into the `Authorization` header and removes it from the
/// query before the handler sees it. Anywhere else a token in the URL is refused (URLs end up
/// in proxy logs and browser history): the console fetches downloads with the header.
async fn token_from_query(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let query = request.uri().query().map(str::to_owned);
    let token = query.as_deref().and_then(access_token);
    if token.is_some() && request.uri().path() != STREAM_PATH {
        return ApiError::bad_request(format!(
            "access_token in the URL is accepted only on {STREAM_PATH}; send the token as `Authorization: Bearer <token>`"
        ))
        .into_response();
    }
    if request.method() == axum::http::Method::GET
        && !request.headers().contains_key(header::AUTHORIZATION)
    {
        if let Some(query) = query {
            if let Some(token) = token {
                let rest: Vec<&str> = query
                    .split('&')
                    .filter(|pair| !pair.starts_with("access_token="))
                    .collect();
                let path = request.uri().path().to_owned();
                let uri = if rest.is_empty() {
                    path
                } else {
                    format!("{path}?{}", rest.join("&"))
                };
                if let (Ok(uri), Ok(value)) = (
                    uri.parse::<axum::http::Uri>(),
                    axum::http::HeaderValue::from_str(&format!("Bearer {token}")),
                ) {
                    *request.uri_mut() = uri;
                    request.headers_mut().insert(header::AUTHORIZATION, value);
                }
            }
        }
    }
    next.run(request).await
}

/// Who the caller is: the console adapts its pages to the role.
#[derive(Debug, Serialize, ToSchema)]
pub struct WhoAmI {
    pub name: String,
    /// `operator`, `township`, `team` or `read_only`.
    pub role: String,
    pub township: Option<String>,
    pub team: Option<String>,
    /// The technician of a technician's own token.
    pub technician: Option<String>,
    /// The order steps (`POST /api/v1/orders/{id}/{step}`) this role may take, from the one
    /// table the API checks (township officers on their own township's orders only).
    pub steps: Vec<&'static str>,
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "fleet",
    responses((status = 200, body = WhoAmI), (status = 401, body = ErrorBody)))]
async fn whoami(principal: Principal) -> Json<WhoAmI> {
    let role = match principal.role {
        Role::Operator => "operator",
        Role::Township => "township",
        Role::Team => "team",
        Role::ReadOnly => "read_only",
    };
    Json(WhoAmI {
        name: principal.name.clone(),
        role: role.to_owned(),
        township: principal.township.clone(),
        team: principal.team.clone(),
        technician: principal.technician.clone(),
        steps: steps::allowed(principal.role),
    })
}

/// The `access_token` query parameter, percent-decoded.
fn access_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix("access_token=")?;
        let mut bytes = Vec::with_capacity(value.len());
        let mut raw = value.bytes();
        while let Some(b) = raw.next() {
            match b {
                b'%' => {
                    let hex = [raw.next()?, raw.next()?];
                    bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
                }
                b'+' => bytes.push(b' '),
                other => bytes.push(other),
            }
        }
        String::from_utf8(bytes).ok()
    })
}

/// The header a client sends with a step it may retry ([`crate::orders::IdempotencyKey`]).
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The `Idempotency-Key` header of a request, checked; `None` without one.
pub fn idempotency_key(
    headers: &axum::http::HeaderMap,
) -> Result<Option<crate::orders::IdempotencyKey>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "Idempotency-Key header: send it once per request",
        ));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::bad_request("Idempotency-Key header: only visible ASCII (A-Z a-z 0-9 - _)")
    })?;
    crate::orders::IdempotencyKey::parse(text)
        .map(Some)
        .map_err(ApiError::bad_request)
}

/// The answer of a step that may have been sent before: its status and stored JSON body, with
/// `Idempotent-Replayed: true` when this is the first send's answer returned again.
pub fn answered(answer: crate::orders::Answered) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::OK);
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response();
    if answer.replayed {
        response.headers_mut().insert(
            "idempotent-replayed",
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// Refuses callers whose role is not in `allowed`.
pub fn require(principal: &Principal, allowed: &[Role], what: &str) -> Result<(), ApiError> {
    if allowed.contains(&principal.role) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "a {:?} token may not {what}",
            principal.role
        )))
    }
}

struct BearerSecurity;

impl Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Yanqing rural clean-heating gateway",
        description = "Devices, alerts, work orders with SLA clocks, complaints from every intake channel, registry import and reports.",
        version = "1"
    ),
    modifiers(&BearerSecurity),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Builds the router and its OpenAPI document from the same declarations, with the default
/// request timeout.
pub fn router(state: ApiState) -> Router {
    router_with(state, crate::config::HttpConfig::default().request_timeout)
}

/// Ends a request that takes longer than `limit` with 503 (the event stream's handler returns
/// as soon as the stream is open, so an open stream is not cut).
async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {limit:?} (http.request_timeout)"),
        )
        .into_response(),
    }
}

/// Only `/metrics`, without a token: the router of `http.metrics_listen` (loopback only).
pub fn metrics_router(state: ApiState) -> Router {
    Router::new()
        .route("/metrics", get(metrics_without_token).with_state(state))
        .fallback(|| async { ApiError::not_found("this listener serves only /metrics") })
}

// Long: one line per route, in the order of the API's table of contents.
/// Builds the router and its OpenAPI document from the same declarations.
pub fn router_with(state: ApiState, request_limit: std::time::Duration) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(whoami))
        .routes(routes!(fleet::summary))
        .routes(routes!(fleet::sla))
        .routes(routes!(fleet::devices))
        .routes(routes!(fleet::device))
        .routes(routes!(fleet::history))
        .routes(routes!(fleet::alerts))
        .routes(routes!(fleet::rejects))
        .routes(routes!(fleet::unregistered))
        .routes(routes!(orders::list_orders))
        .routes(routes!(orders::get_order))
        .routes(routes!(steps::dispatch))
        .routes(routes!(steps::reassign))
        .routes(routes!(steps::accept))
        .routes(routes!(steps::arrive))
        .routes(routes!(steps::resolve))
        .routes(routes!(steps::callback))
        .routes(routes!(steps::close))
        .routes(routes!(steps::cancel))
        .routes(routes!(steps::merge))
        .routes(routes!(steps::escalate))
        .routes(routes!(steps::confirm_misuse))
        .routes(routes!(delegation::delegate))
        .routes(routes!(delegation::list))
        .routes(routes!(delegation::ledger))
        .routes(routes!(stock::lines))
        .routes(routes!(stock::moves))
        .routes(routes!(stock::receive))
        .routes(routes!(stock::transfer))
        .routes(routes!(stock::level))
        .routes(routes!(stock::outs))
        .routes(routes!(stock::order_parts))
        .routes(routes!(stock::backup_units, stock::put_backup_unit))
        .routes(routes!(stock::lend))
        .routes(routes!(stock::give_back))
        .routes(routes!(orders::complaint))
        .routes(routes!(intake::take, intake::list))
        .routes(routes!(intake::answer))
        .routes(routes!(intake::context))
        .routes(routes!(city::export))
        .routes(routes!(field::orders))
        .routes(routes!(field::route))
        .routes(routes!(dispatch::conditions, dispatch::set_conditions))
        .routes(routes!(orders::stream))
        .routes(routes!(registry::import))
        .routes(routes!(registry::townships))
        .routes(routes!(registry::villages))
        .routes(routes!(registry::teams))
        .routes(routes!(registry::parts))
        .routes(routes!(households::export))
        .routes(routes!(households::search))
        .routes(routes!(households::household))
        .routes(routes!(reports::report))
        .routes(routes!(prevention::risk))
        .routes(routes!(prevention::sweep, prevention::open_sweep))
        .routes(routes!(campaigns::create, campaigns::list))
        .routes(routes!(campaigns::get))
        .routes(routes!(campaigns::inspections))
        .routes(routes!(campaigns::record))
        .with_state(state.clone())
        .split_for_parts();
    let openapi = Arc::new(openapi);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz).with_state(state.clone()))
        .route("/metrics", get(metrics).with_state(state))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let openapi = Arc::clone(&openapi);
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .merge(api)
        .merge(console::router())
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::from_fn(token_from_query))
        .layer(axum::middleware::from_fn_with_state(
            request_limit,
            request_timeout,
        ))
}

/// Serves the API on an already bound listener until `shutdown`, with the default limits.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let limits = crate::config::HttpConfig::default();
    let app = router_with(state.clone(), limits.request_timeout);
    serve_with(listener, app, state.metrics, &limits, shutdown).await
}

/// Serves `app` on `listener` until `shutdown`: each connection in its own task, at most
/// `http.max_connections` at once (further ones are closed and counted), headers read within
/// `http.header_read_timeout`. At shutdown, open connections get 5 s to finish.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    metrics: Arc<Metrics>,
    limits: &crate::config::HttpConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, mostly: wait a little instead of spinning.
                    tracing::warn!(%error, "the HTTP listener could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.http_connection_refused();
            tracing::debug!(%peer, "HTTP connection refused: http.max_connections reached");
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout);
        let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {
            tracing::warn!("HTTP connections still open 5 s after shutdown began; closing them");
        }
    }
    Ok(())
}

/// Binds the API's listener (port 0 picks a free port).
pub async fn bind(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind the HTTP API on {address}: {e}"))
}

/// Ready when ingest takes messages and the store answers; 503 otherwise.
async fn readyz(axum::extract::State(state): axum::extract::State<ApiState>) -> Response {
    let store_ok = state.orders.with_store(|s| s.order_counts()).await.is_ok();
    if state.metrics.ingest_ready() && store_ok {
        "ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: ingest {}, store {}\n",
                state.metrics.ingest_ready(),
                store_ok
            ),
        )
            .into_response()
    }
}

/// `/metrics` on the API's listener: any configured token (a Prometheus scrape job sends it as
/// `authorization: credentials`).
async fn metrics(
    _principal: Principal,
    state: axum::extract::State<ApiState>,
) -> Result<Response, ApiError> {
    metrics_without_token(state).await
}

async fn metrics_without_token(
    axum::extract::State(state): axum::extract::State<ApiState>,
) -> Result<Response, ApiError> {
    let (devices, online, offline, faulty) = state.fleet.counts();
    let counts = state.orders.with_store(|s| s.order_counts()).await?;
    let open: i64 = counts
        .iter()
        .filter(|(s, _)| {
            crate::orders::OrderState::parse(s).is_some_and(crate::orders::OrderState::is_open)
        })
        .map(|(_, n)| n)
        .sum();
    let mut body = state.metrics.render(&[
        (
            "gateway_devices",
            "devices known to the gateway",
            devices as f64,
        ),
        (
            "gateway_devices_online",
            "devices whose edge box is connected",
            online as f64,
        ),
        (
            "gateway_devices_offline",
            "devices whose edge box is gone",
            offline as f64,
        ),
        (
            "gateway_devices_faulty",
            "devices reporting a fault code",
            faulty as f64,
        ),
        (
            "gateway_orders_open",
            "work orders not closed, cancelled or merged",
            open as f64,
        ),
        (
            "process_resident_memory_bytes",
            "resident memory of the gateway process (a flood that swells it shows here)",
            resident_memory_bytes() as f64,
        ),
    ]);
    if let Some(sink) = &state.sink {
        body.push_str(&sink.render());
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// The process's resident memory from `/proc/self/statm` (pages × 4 KiB); 0 where there is no
/// such file.
fn resident_memory_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages.saturating_mul(4096))
}
