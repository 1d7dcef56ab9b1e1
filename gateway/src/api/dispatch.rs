//! API handlers of the road conditions dispatch plans with: an operator declares a snow day
//! (travel on ordinary roads takes [`dispatch::SNOW_FACTOR_ORDINARY`] times as long, on
//! mountain roads [`dispatch::SNOW_FACTOR_MOUNTAIN`] times), kept in the store across restarts;
//! every role may read it.

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::orders::body;
use super::{require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::dispatch;

/// The road conditions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// A snow day: travel times are multiplied by the snow factors.
    pub snow: bool,
}

/// What the conditions mean for travel times.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConditionsView {
    pub snow: bool,
    /// Factor on ordinary roads today (1 without snow).
    pub ordinary_factor: f64,
    /// Factor on mountain roads today (1 without snow).
    pub mountain_factor: f64,
}

fn view(snow: bool) -> ConditionsView {
    ConditionsView {
        snow,
        ordinary_factor: if snow {
            dispatch::SNOW_FACTOR_ORDINARY
        } else {
            1.0
        },
        mountain_factor: if snow {
            dispatch::SNOW_FACTOR_MOUNTAIN
        } else {
            1.0
        },
    }
}

/// Today's road conditions.
#[utoipa::path(get, path = "/api/v1/dispatch/conditions", tag = "dispatch",
    responses((status = 200, body = ConditionsView), (status = 401, body = ErrorBody)))]
pub async fn conditions(
    _principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<ConditionsView>, ApiError> {
    let snow = state.orders.with_store(|s| s.snow()).await?;
    Ok(Json(view(snow)))
}

/// Sets the road conditions (operators).
#[utoipa::path(post, path = "/api/v1/dispatch/conditions", tag = "dispatch", request_body = Conditions,
    responses((status = 200, body = ConditionsView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_conditions(
    principal: Principal,
    State(state): State<ApiState>,
    payload: Result<Json<Conditions>, JsonRejection>,
) -> Result<Json<ConditionsView>, ApiError> {
    let conditions = body(payload)?;
    require(&principal, &[Role::Operator], "set the road conditions")?;
    let snow = conditions.snow;
    state.orders.with_store(move |s| s.set_snow(snow)).await?;
    tracing::info!(snow, actor = %principal.name, "road conditions set");
    Ok(Json(view(snow)))
}
