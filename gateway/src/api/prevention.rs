//! API handlers of prevention before the cold (防寒): the units ranked by risk with their
//! reasons, the current forecast with the sweep's plan, and the operator's "open the sweep
//! now". Scoped like the fleet routes: operators and read-only tokens see the district, a
//! township its own units, a vendor team its vendor's units in its zone and the third-party
//! team the out-of-warranty units in its zone; utilities see none.
//!
//! The component ([`crate::prevention::Prevention`]) reaches the handlers as an axum
//! `Extension` that `app::start` layers over the router; a router without it answers 503.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::prevention::weather::{ColdWave, ForecastPoint};
use crate::prevention::{Capacity, Prevention, SweepOutcome, SweepPlan, UnitRisk, MAX_CAPACITY};
use crate::registry::TeamKind;

/// Most units one risk listing returns.
pub const MAX_LIMIT: usize = 1_000;
/// Most forecast rows the sweep view returns.
pub const MAX_FORECAST_POINTS: usize = 5_000;

type Component = Option<Extension<Arc<Prevention>>>;

fn component(prevention: Component) -> Result<Arc<Prevention>, ApiError> {
    prevention.map(|Extension(p)| p).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "prevention is not running in this gateway",
        )
    })
}

/// Which units a caller may see.
enum Scope {
    /// The district, or one township of it when asked.
    All(Option<String>),
    /// A vendor team: its vendor's units in its townships.
    Vendor {
        vendor: String,
        townships: Vec<String>,
    },
    /// The third-party team: out-of-warranty units in its townships.
    ThirdParty { townships: Vec<String> },
}

impl Scope {
    fn sees(&self, unit: &UnitRisk) -> bool {
        match self {
            Scope::All(township) => township.as_ref().is_none_or(|t| *t == unit.township),
            Scope::Vendor { vendor, townships } => {
                unit.vendor_id == *vendor && townships.contains(&unit.township)
            }
            Scope::ThirdParty { townships } => {
                !unit.in_warranty && townships.contains(&unit.township)
            }
        }
    }

    /// The townships whose forecast the caller sees; `None`: all.
    fn townships(&self) -> Option<Vec<String>> {
        match self {
            Scope::All(township) => township.clone().map(|t| vec![t]),
            Scope::Vendor { townships, .. } | Scope::ThirdParty { townships } => {
                Some(townships.clone())
            }
        }
    }
}

/// The caller's scope, narrowed to `township` when asked (another township is a 403).
async fn scope(
    state: &ApiState,
    principal: &Principal,
    township: Option<String>,
) -> Result<Scope, ApiError> {
    if let Some(t) = &township {
        if principal.role != Role::Team && !principal.can_read_township(t) {
            return Err(ApiError::forbidden(
                "this township is outside the token's scope",
            ));
        }
    }
    match principal.role {
        Role::Operator | Role::ReadOnly => Ok(Scope::All(township)),
        Role::Township => Ok(Scope::All(township.or_else(|| principal.township.clone()))),
        Role::Team => {
            let Some(team_id) = principal.team.clone() else {
                return Err(ApiError::forbidden("a team token needs its team"));
            };
            let team = state
                .orders
                .with_store(move |store| store.team(&team_id))
                .await?
                .ok_or_else(|| ApiError::forbidden("the token's team is not in the registry"))?;
            let mut townships = team.townships.clone();
            if let Some(t) = township {
                if !townships.contains(&t) {
                    return Err(ApiError::forbidden(
                        "this township is outside the team's zone",
                    ));
                }
                townships = vec![t];
            }
            match (team.kind, team.vendor_id) {
                (TeamKind::Vendor, Some(vendor)) => Ok(Scope::Vendor { vendor, townships }),
                (TeamKind::ThirdParty, _) => Ok(Scope::ThirdParty { townships }),
                _ => Err(ApiError::forbidden(
                    "utility teams handle supply incidents, not the units' risk",
                )),
            }
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RiskQuery {
    /// Only units of this township.
    township: Option<String>,
    /// Most units to return, highest risk first (default 100, at most 1000).
    limit: Option<usize>,
}

/// Units ranked by risk.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiskList {
    /// The time the scores were computed for, Unix ms.
    pub generated_at_ms: i64,
    /// Units in the caller's scope (before `limit`).
    pub total: usize,
    /// Highest score first, then device id.
    pub units: Vec<UnitRisk>,
}

#[utoipa::path(get, path = "/api/v1/prevention/risk", tag = "prevention", params(RiskQuery),
    responses((status = 200, body = RiskList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn risk(
    principal: Principal,
    State(state): State<ApiState>,
    prevention: Component,
    query: Result<Query<RiskQuery>, QueryRejection>,
) -> Result<Json<RiskList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let prevention = component(prevention)?;
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_LIMIT}"
        )));
    }
    let scope = scope(&state, &principal, query.township).await?;
    let generated_at_ms = state.orders.now_ms();
    let mut units: Vec<UnitRisk> = prevention
        .risk()
        .await?
        .into_iter()
        .filter(|u| scope.sees(u))
        .collect();
    let total = units.len();
    units.truncate(limit);
    Ok(Json(RiskList {
        generated_at_ms,
        total,
        units,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SweepQuery {
    /// Only this township's forecast and units.
    township: Option<String>,
}

/// The forecast the gateway holds and the sweep it would run now.
#[derive(Debug, Serialize, ToSchema)]
pub struct SweepView {
    /// The forecast's file or URL; `null` when none is configured.
    pub source: Option<String>,
    /// When the forecast was last read, Unix ms.
    pub loaded_at_ms: Option<i64>,
    /// Why the last read failed (the previous forecast is kept).
    pub error: Option<String>,
    /// Forecast rows of the caller's areas (at most 5000), by area and time.
    pub forecast: Vec<ForecastPoint>,
    /// More rows than returned.
    pub forecast_truncated: bool,
    /// The sweep opens what it plans at every forecast read (`prevention.auto_open`).
    pub auto_open: bool,
    /// The plan with the configured capacity: cold waves and units in the caller's scope.
    pub plan: SweepPlan,
}

/// The areas (townships and their villages) a scope's forecast rows may name; `None`: all.
async fn areas(state: &ApiState, scope: &Scope) -> Result<Option<BTreeSet<String>>, ApiError> {
    let Some(townships) = scope.townships() else {
        return Ok(None);
    };
    let villages = state
        .orders
        .with_store(|store| store.villages(None))
        .await?;
    let mut areas: BTreeSet<String> = townships.iter().cloned().collect();
    areas.extend(
        villages
            .into_iter()
            .filter(|v| townships.contains(&v.township_id))
            .map(|v| v.id),
    );
    Ok(Some(areas))
}

fn narrow(plan: &mut SweepPlan, scope: &Scope, areas: Option<&BTreeSet<String>>) {
    plan.units.retain(|p| scope.sees(&p.unit));
    if let Some(areas) = areas {
        plan.waves.retain(|w: &ColdWave| areas.contains(&w.area));
    }
}

#[utoipa::path(get, path = "/api/v1/prevention/sweep", tag = "prevention", params(SweepQuery),
    responses((status = 200, body = SweepView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sweep(
    principal: Principal,
    State(state): State<ApiState>,
    prevention: Component,
    query: Result<Query<SweepQuery>, QueryRejection>,
) -> Result<Json<SweepView>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let prevention = component(prevention)?;
    let scope = scope(&state, &principal, query.township).await?;
    let areas = areas(&state, &scope).await?;
    let forecast = prevention.forecast();
    let mut plan = prevention.plan(prevention.config().capacity()).await?;
    narrow(&mut plan, &scope, areas.as_ref());
    let mut points: Vec<ForecastPoint> = forecast
        .points
        .into_iter()
        .filter(|p| areas.as_ref().is_none_or(|a| a.contains(&p.area)))
        .collect();
    let forecast_truncated = points.len() > MAX_FORECAST_POINTS;
    points.truncate(MAX_FORECAST_POINTS);
    Ok(Json(SweepView {
        source: forecast.source,
        loaded_at_ms: forecast.loaded_at_ms,
        error: forecast.error,
        forecast: points,
        forecast_truncated,
        auto_open: prevention.config().auto_open,
        plan,
    }))
}

/// What an operator opens now; each capacity defaults to the configured one.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenSweep {
    /// Preventive visits per township for today, at most 1000 (counting those opened earlier
    /// today).
    pub visits_per_township: Option<u32>,
    /// Calls per township for today, at most 1000.
    pub calls_per_township: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/prevention/sweep", tag = "prevention", request_body = OpenSweep,
    responses((status = 200, body = SweepOutcome, description = "the orders opened, in rank order, and the plan with each unit's status; a unit already visited or called for the wave gets nothing more"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn open_sweep(
    principal: Principal,
    State(_state): State<ApiState>,
    prevention: Component,
    payload: Result<Json<OpenSweep>, JsonRejection>,
) -> Result<Json<SweepOutcome>, ApiError> {
    require(
        &principal,
        &[Role::Operator],
        "open the cold-wave sweep (operators only)",
    )?;
    let body = payload
        .map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let prevention = component(prevention)?;
    let configured = prevention.config().capacity();
    let capacity = Capacity {
        visits_per_township: body
            .visits_per_township
            .unwrap_or(configured.visits_per_township),
        calls_per_township: body
            .calls_per_township
            .unwrap_or(configured.calls_per_township),
    };
    for (field, value) in [
        ("visits_per_township", capacity.visits_per_township),
        ("calls_per_township", capacity.calls_per_township),
    ] {
        if value > MAX_CAPACITY {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{field}: at most {MAX_CAPACITY}, got {value}"),
            ));
        }
    }
    let outcome = prevention.open(capacity, &principal.actor()).await?;
    tracing::info!(actor = %principal.actor(), opened = outcome.opened.len(), visits_per_township = capacity.visits_per_township, calls_per_township = capacity.calls_per_township, "cold-wave sweep opened by an operator");
    Ok(Json(outcome))
}
