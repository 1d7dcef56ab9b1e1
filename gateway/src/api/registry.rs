//! API handlers for the registry: import of CSV tables (all-or-nothing, errors with file, line
//! and column; installation years and part prices out of range are refused with 422), and
//! lists of townships, villages, teams and the parts price list.

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::registry::{ImportSummary, Part, RegistryData, Team, Township, Village};

/// Installation years an import accepts. The scheme's heaters were installed from 2016 on;
/// the bounds are wide, but keep every warranty end a four-digit year, which orders compare as
/// `YYYY-MM-DD` text.
const INSTALLATION_YEARS: std::ops::RangeInclusive<i32> = 1990..=2100;
/// The most one part of the unified price list may cost, in fen (100 000 CNY, more than a whole
/// heat pump).
const MAX_PART_PRICE_CENTS: i64 = 10_000_000;

/// Refuses installation years and prices outside their ranges, naming file, field and row.
fn check_ranges(data: &RegistryData) -> Result<(), String> {
    for device in &data.devices {
        let year = crate::registry::parse_date(&device.installed_on).map(|(year, _, _)| year);
        if !year.is_some_and(|year| INSTALLATION_YEARS.contains(&year)) {
            return Err(format!(
                "devices.csv: installed_on: device {:?}: {:?} is not in the years {}..={}",
                device.id,
                device.installed_on,
                INSTALLATION_YEARS.start(),
                INSTALLATION_YEARS.end()
            ));
        }
    }
    for part in &data.parts {
        if !(0..=MAX_PART_PRICE_CENTS).contains(&part.price_cents) {
            return Err(format!(
                "parts.csv: price_cny: part {:?}: {}.{:02} CNY is not in 0..={} CNY",
                part.code,
                part.price_cents / 100,
                (part.price_cents % 100).abs(),
                MAX_PART_PRICE_CENTS / 100
            ));
        }
    }
    Ok(())
}

/// Why an import was refused: unreadable (400) or out of range (422).
enum Refusal {
    Parse(crate::registry::ImportError),
    Range(String),
}

/// CSV texts by file name (`townships.csv`, `villages.csv`, `vendors.csv`, `households.csv`,
/// `devices.csv`, `teams.csv`, `technicians.csv`, `contacts.csv`, `parts.csv`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportBody {
    pub files: HashMap<String, String>,
}

#[utoipa::path(post, path = "/api/v1/registry/import", tag = "registry", request_body = ImportBody,
    responses((status = 200, body = ImportSummary), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn import(
    principal: Principal,
    State(state): State<ApiState>,
    payload: Result<Json<ImportBody>, JsonRejection>,
) -> Result<Json<ImportSummary>, ApiError> {
    require(&principal, &[Role::Operator], "import the registry")?;
    let Json(body) = payload.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(unknown) = body
        .files
        .keys()
        .find(|k| !crate::registry::FILES.contains(&k.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "{unknown:?} is not a registry file (expected some of {})",
            crate::registry::FILES.join(", ")
        )));
    }
    let result = state
        .orders
        .with_store(move |store| {
            let known = store.known_ids()?;
            Ok(match crate::registry::parse(&body.files, &known) {
                Ok(data) => match check_ranges(&data) {
                    Ok(()) => Ok(store.import_registry(&data)?),
                    Err(message) => Err(Refusal::Range(message)),
                },
                Err(error) => Err(Refusal::Parse(error)),
            })
        })
        .await?;
    let summary = result.map_err(|refusal| match refusal {
        Refusal::Parse(error) => ApiError::bad_request(error.to_string()),
        Refusal::Range(message) => {
            ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, message)
        }
    })?;
    tracing::info!(by = %principal.actor(), households = summary.households, devices = summary.devices, "registry imported");
    Ok(Json(summary))
}

#[utoipa::path(get, path = "/api/v1/registry/townships", tag = "registry",
    responses((status = 200, body = [Township]), (status = 401, body = ErrorBody)))]
pub async fn townships(
    _principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<Vec<Township>>, ApiError> {
    Ok(Json(state.orders.with_store(|s| s.townships()).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VillageQuery {
    /// Only villages of this township.
    township: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/registry/villages", tag = "registry", params(VillageQuery),
    responses((status = 200, body = [Village]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn villages(
    _principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<VillageQuery>, QueryRejection>,
) -> Result<Json<Vec<Village>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Ok(Json(
        state
            .orders
            .with_store(move |s| s.villages(query.township.as_deref()))
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/registry/teams", tag = "registry",
    responses((status = 200, body = [Team]), (status = 401, body = ErrorBody)))]
pub async fn teams(
    _principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<Vec<Team>>, ApiError> {
    Ok(Json(state.orders.with_store(|s| s.teams()).await?))
}

#[utoipa::path(get, path = "/api/v1/registry/parts", tag = "registry",
    responses((status = 200, body = [Part]), (status = 401, body = ErrorBody)))]
pub async fn parts(
    _principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<Vec<Part>>, ApiError> {
    Ok(Json(state.orders.with_store(|s| s.parts()).await?))
}
