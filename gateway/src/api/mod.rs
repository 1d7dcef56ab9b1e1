//! The HTTP API (axum) under `/api/v1`: devices with their latest reading and status, alerts,
//! work orders with their events; plus `/healthz` and Prometheus `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::orders::store::{OrderEventRow, OrderFilter, OrderRow};
use crate::orders::{OrderService, OrderState};

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub fleet: Arc<Fleet>,
    pub orders: OrderService,
    pub metrics: Arc<Metrics>,
}

/// An error answer: a status and a JSON `{"error": "..."}` body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl<E: std::error::Error> From<E> for ApiError {
    fn from(error: E) -> Self {
        tracing::error!(%error, "API request failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error; see the gateway log".into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// Builds the router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/api/v1/summary", get(summary))
        .route("/api/v1/devices", get(devices))
        .route("/api/v1/devices/{id}", get(device))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/orders", get(orders))
        .route("/api/v1/orders/{id}", get(order))
        .with_state(state)
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

async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let (devices, online, offline, faulty) = state.fleet.counts();
    let counts = state.orders.with_store(|s| s.order_counts()).await?;
    let open: i64 = counts
        .iter()
        .filter(|(s, _)| OrderState::parse(s).is_some_and(OrderState::is_open))
        .map(|(_, n)| n)
        .sum();
    let body = state.metrics.render(&[
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
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

#[derive(Serialize)]
struct Summary {
    devices: usize,
    online: usize,
    offline: usize,
    faulty: usize,
    active_alerts: usize,
    orders_by_state: std::collections::BTreeMap<String, i64>,
    messages_in: u64,
    readings_accepted: u64,
    rejected: std::collections::BTreeMap<&'static str, u64>,
}

async fn summary(State(state): State<ApiState>) -> Result<Json<Summary>, ApiError> {
    let (devices, online, offline, faulty) = state.fleet.counts();
    let (counts, active) = state
        .orders
        .with_store(|s| Ok((s.order_counts()?, s.alerts(true, 100_000)?.len())))
        .await?;
    Ok(Json(Summary {
        devices,
        online,
        offline,
        faulty,
        active_alerts: active,
        orders_by_state: counts.into_iter().collect(),
        messages_in: state.metrics.messages_in_total(),
        readings_accepted: state.metrics.readings_accepted_total(),
        rejected: state.metrics.rejects(),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    township: Option<String>,
}

async fn devices(
    State(state): State<ApiState>,
    Query(query): Query<DeviceQuery>,
) -> Json<Vec<crate::fleet::DeviceState>> {
    Json(state.fleet.list(query.township.as_deref()))
}

async fn device(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<crate::fleet::DeviceState>, ApiError> {
    state
        .fleet
        .get(&id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no device {id:?}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertQuery {
    #[serde(default)]
    active: bool,
    limit: Option<usize>,
}

async fn alerts(
    State(state): State<ApiState>,
    Query(query): Query<AlertQuery>,
) -> Result<Json<Vec<crate::orders::store::AlertRow>>, ApiError> {
    let limit = query.limit.unwrap_or(500).min(10_000);
    Ok(Json(
        state
            .orders
            .with_store(move |s| s.alerts(query.active, limit))
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderQuery {
    device_id: Option<String>,
    township: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

async fn orders(
    State(state): State<ApiState>,
    Query(query): Query<OrderQuery>,
) -> Result<Json<Vec<OrderRow>>, ApiError> {
    let order_state = match query.state.as_deref() {
        Some(s) => Some(OrderState::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "state {s:?} is not one of {}",
                OrderState::ALL.map(OrderState::as_str).join(", ")
            ))
        })?),
        None => None,
    };
    let filter = OrderFilter {
        device_id: query.device_id,
        township: query.township,
        state: order_state,
        limit: query.limit.unwrap_or(500).min(10_000),
    };
    Ok(Json(
        state.orders.with_store(move |s| s.orders(&filter)).await?,
    ))
}

#[derive(Serialize)]
struct OrderDetail {
    #[serde(flatten)]
    order: OrderRow,
    events: Vec<OrderEventRow>,
}

async fn order(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<OrderDetail>, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("order id {id:?} is not a number")))?;
    match state.orders.with_store(move |s| s.order(id)).await? {
        Some((order, events)) => Ok(Json(OrderDetail { order, events })),
        None => Err(ApiError::not_found(format!("no order {id}"))),
    }
}
