//! The HTTP API (axum) under `/api/v1`, described by an OpenAPI document at
//! `/api/v1/openapi.json` that is generated from the same handler declarations the router is
//! built from (utoipa-axum), so the two cannot disagree. Plus `/healthz` and `/metrics`.
//!
//! Every `/api/v1` route except the OpenAPI document needs a bearer token (unless auth is
//! disabled for the local demo); roles are checked per route and per order.

mod console;
mod fleet;
mod orders;
mod registry;
mod reports;

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

/// Browsers' EventSource and plain links cannot send headers: a GET may carry its token as
/// `?access_token=`. This moves it into the `Authorization` header and removes it from the
/// query before any handler (whose query structs refuse unknown fields) sees it.
async fn token_from_query(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if request.method() == axum::http::Method::GET
        && !request.headers().contains_key(header::AUTHORIZATION)
    {
        if let Some(query) = request.uri().query().map(str::to_owned) {
            if let Some(token) = access_token(&query) {
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

/// Builds the router and its OpenAPI document from the same declarations.
pub fn router(state: ApiState) -> Router {
    let (api, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(whoami))
        .routes(routes!(fleet::summary))
        .routes(routes!(fleet::devices))
        .routes(routes!(fleet::device))
        .routes(routes!(fleet::history))
        .routes(routes!(fleet::alerts))
        .routes(routes!(fleet::rejects))
        .routes(routes!(orders::list_orders))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::dispatch))
        .routes(routes!(orders::reassign))
        .routes(routes!(orders::accept))
        .routes(routes!(orders::arrive))
        .routes(routes!(orders::resolve))
        .routes(routes!(orders::callback))
        .routes(routes!(orders::close))
        .routes(routes!(orders::cancel))
        .routes(routes!(orders::merge))
        .routes(routes!(orders::escalate))
        .routes(routes!(orders::complaint))
        .routes(routes!(orders::stream))
        .routes(routes!(registry::import))
        .routes(routes!(registry::townships))
        .routes(routes!(registry::villages))
        .routes(routes!(registry::teams))
        .routes(routes!(registry::parts))
        .routes(routes!(reports::report))
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
}

/// Serves `router` on an already bound listener until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
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

async fn metrics(
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
    ]);
    if let Some(sink) = &state.sink {
        body.push_str(&sink.render());
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
