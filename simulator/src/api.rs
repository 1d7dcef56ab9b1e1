//! The HTTP control API of the simulator: the manifest, a household's live values, and fault
//! injection and clearing, for tests, benchmarks and demos.
//!
//! | Method and path                     | Answer                                           |
//! |-------------------------------------|--------------------------------------------------|
//! | `GET /healthz`                      | 200 `{"status":"ok","households":N}`             |
//! | `GET /households`                   | 200 the manifest (`[HouseholdInfo]`)             |
//! | `GET /households/{device_id}`       | 200 a [`HouseholdSnapshot`]                      |
//! | `POST /households/{device_id}/fault`| body `{"category":"water_flow"}`, 204            |
//! | `DELETE /households/{device_id}/fault` | 204                                           |
//!
//! Errors are JSON `{"error": "..."}`: 404 for an unknown device or path, 400/415/422 for a
//! bad body. Input never causes a 500.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wire::{DeviceId, FaultCategory};

use crate::sim::{HouseholdInfo, HouseholdSnapshot, Simulation};

/// An error answer: a status and a JSON message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(skip)]
    status: u16,
    pub error: String,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status: status.as_u16(),
            error: error.into(),
        }
    }

    fn unknown_device(raw: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no household with device id {raw:?}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        (status, Json(self)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        ApiError::new(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text())
    }
}

/// The body of `POST /households/{device_id}/fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    /// The fault category to raise, e.g. `water_flow` (see [`FaultCategory`]).
    pub category: FaultCategory,
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    households: usize,
}

/// The control API over a simulation.
pub fn router(sim: Simulation) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/households", get(list_households))
        .route("/households/{device_id}", get(get_household))
        .route(
            "/households/{device_id}/fault",
            axum::routing::post(inject_fault).delete(clear_fault),
        )
        .fallback(not_found)
        .with_state(sim)
}

/// Serves the API on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    sim: Simulation,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "control API listening");
    axum::serve(listener, router(sim))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    tracing::info!(%addr, "control API stopped");
    Ok(())
}

fn device_id(path: Result<Path<String>, PathRejection>) -> Result<DeviceId, ApiError> {
    let Path(raw) = path?;
    DeviceId::parse(&raw).map_err(|_| ApiError::unknown_device(&raw))
}

async fn healthz(State(sim): State<Simulation>) -> Json<Health> {
    Json(Health {
        status: "ok",
        households: sim.households().len(),
    })
}

async fn list_households(State(sim): State<Simulation>) -> Json<Vec<HouseholdInfo>> {
    Json(sim.households())
}

async fn get_household(
    State(sim): State<Simulation>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<HouseholdSnapshot>, ApiError> {
    let device = device_id(path)?;
    sim.snapshot(&device)
        .map(Json)
        .ok_or_else(|| ApiError::unknown_device(device.as_str()))
}

async fn inject_fault(
    State(sim): State<Simulation>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Json<FaultRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let device = device_id(path)?;
    if sim.household_info(&device).is_none() {
        return Err(ApiError::unknown_device(device.as_str()));
    }
    let Json(request) = body?;
    sim.inject_fault(&device, request.category)
        .map_err(|_| ApiError::unknown_device(device.as_str()))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn clear_fault(
    State(sim): State<Simulation>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let device = device_id(path)?;
    sim.clear_fault(&device)
        .map_err(|_| ApiError::unknown_device(device.as_str()))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such path")
}
