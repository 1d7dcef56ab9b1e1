//! API handlers of inspection campaigns (取暖季前巡检): an operator plans a campaign (one
//! inspection order per unit in scope, routed and given a day by the day plan); everyone lists
//! and reads campaigns with their coverage over the inspections their token may see (operators
//! and read-only tokens the district, a township its own, a team its team's, a technician's
//! token its own and its team's); a team's technician or an operator records a visit with the
//! checklist answers (`Idempotency-Key` honoured like the order steps); the field view lists a
//! technician's inspections still to visit with the checklist to fill in.
//!
//! The risk scores come from the prevention component (`prevention::Prevention`, an axum
//! `Extension`; without it planning answers 503); the `[campaigns]` config is an `Extension`
//! too (without it, the defaults).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{answered, idempotency_key, require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::campaigns::{
    self, CampaignConfig, CampaignCreated, CampaignView, InspectionStatus, InspectionView,
    NewCampaign, VisitReport,
};
use crate::orders::store::InspectionRow;
use crate::prevention::Prevention;

/// Most campaigns one listing returns.
pub const MAX_CAMPAIGNS: usize = 200;
/// Most inspections one campaign answer lists.
pub const MAX_INSPECTIONS: usize = 5_000;
/// Most inspections the field view lists.
pub const MAX_FIELD_INSPECTIONS: usize = 1_000;
/// Longest id in a query.
const MAX_ID_CHARS: usize = 100;

fn parse_id(what: &str, id: &str) -> Result<i64, ApiError> {
    id.parse()
        .ok()
        .filter(|id: &i64| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("{what} id {id:?} is not a positive number")))
}

fn check_id(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        Some(id) if id.is_empty() || id.chars().count() > MAX_ID_CHARS => Err(
            ApiError::bad_request(format!("{field}: 1 to {MAX_ID_CHARS} characters")),
        ),
        _ => Ok(()),
    }
}

#[utoipa::path(post, path = "/api/v1/campaigns", tag = "campaigns", request_body = NewCampaign,
    responses((status = 201, body = CampaignCreated, description = "the campaign with its coverage; one inspection order per unit in scope, routed, with its technician and day"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    principal: Principal,
    State(state): State<ApiState>,
    prevention: Option<Extension<Arc<Prevention>>>,
    config: Option<Extension<CampaignConfig>>,
    payload: Result<Json<NewCampaign>, JsonRejection>,
) -> Result<Response, ApiError> {
    require(
        &principal,
        &[Role::Operator],
        "plan an inspection campaign (operators only)",
    )?;
    let request = payload
        .map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Some(Extension(prevention)) = prevention else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the risk scores (prevention) are not running in this gateway",
        ));
    };
    let config = config.map(|Extension(c)| c).unwrap_or_default();
    let units = prevention.risk().await.inspect_err(|_| {
        state.metrics.campaigns.failed();
    })?;
    let created = state
        .orders
        .create_campaign(request, units, &config, &principal)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Most campaigns, newest first (default 50, at most 200).
    limit: Option<usize>,
}

/// The inspections of `campaign` the caller may see.
async fn visible_inspections(
    state: &ApiState,
    principal: &Principal,
    campaign: i64,
) -> Result<Vec<InspectionRow>, ApiError> {
    let rows = state
        .orders
        .with_store(move |s| s.inspections_of(campaign))
        .await?;
    Ok(rows
        .into_iter()
        .filter(|i| campaigns::visible(principal, i))
        .collect())
}

#[utoipa::path(get, path = "/api/v1/campaigns", tag = "campaigns", params(ListQuery),
    responses((status = 200, body = [CampaignView], description = "newest first; a township, team or technician sees the campaigns with inspections in its scope, and the coverage over those"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<CampaignView>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_CAMPAIGNS {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_CAMPAIGNS}"
        )));
    }
    let all = state.orders.with_store(|s| s.campaigns()).await?;
    let mut views = Vec::new();
    for campaign in all {
        if views.len() >= limit {
            break;
        }
        let inspections = visible_inspections(&state, &principal, campaign.id).await?;
        if inspections.is_empty() && !principal.sees_district() {
            continue;
        }
        views.push(campaigns::view(campaign, &inspections));
    }
    Ok(Json(views))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CampaignQuery {
    /// Only inspections of this township.
    township: Option<String>,
    /// Only inspections of this technician.
    technician_id: Option<String>,
    /// Only inspections with this status (planned, unscheduled, done, defect, not_home, refused).
    status: Option<String>,
    /// Only inspections planned on this day, `YYYY-MM-DD`.
    date: Option<String>,
    /// Most inspections listed, in rank order (default 500, at most 5000).
    limit: Option<usize>,
}

/// One technician's visits of one day, in rank order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DayPlan {
    /// `YYYY-MM-DD`.
    pub date: String,
    pub team_id: Option<String>,
    pub technician_id: Option<String>,
    /// Inspection ids, riskiest first.
    pub inspections: Vec<i64>,
    pub devices: Vec<String>,
}

/// A campaign with its coverage, its inspections and the day plan of the visits to come.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignDetail {
    #[serde(flatten)]
    pub campaign: CampaignView,
    /// The inspections that match the query, before `limit`.
    pub inspections_total: usize,
    /// In rank order (riskiest first), at most `limit`.
    pub inspections: Vec<InspectionView>,
    /// The visits still to come, per day and technician (of the inspections that match).
    pub days: Vec<DayPlan>,
}

#[utoipa::path(get, path = "/api/v1/campaigns/{id}", tag = "campaigns", params(("id" = i64, Path, description = "campaign id"), CampaignQuery),
    responses((status = 200, body = CampaignDetail), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<CampaignQuery>, QueryRejection>,
) -> Result<Json<CampaignDetail>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let id = parse_id("campaign", &id)?;
    let (status, limit) = check_query(&query)?;
    let campaign = state
        .orders
        .with_store(move |s| s.campaign(id))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no campaign {id}")))?;
    let inspections = visible_inspections(&state, &principal, id).await?;
    if inspections.is_empty() && !principal.sees_district() {
        // A campaign without anything in the caller's scope does not exist for it.
        return Err(ApiError::not_found(format!("no campaign {id}")));
    }
    let view = campaigns::view(campaign, &inspections);
    let matching: Vec<InspectionRow> = inspections
        .into_iter()
        .filter(|i| query.township.as_ref().is_none_or(|t| *t == i.township))
        .filter(|i| {
            query
                .technician_id
                .as_ref()
                .is_none_or(|t| Some(t) == i.technician_id.as_ref())
        })
        .filter(|i| status.is_none_or(|s| s == i.status))
        .filter(|i| {
            query
                .date
                .as_ref()
                .is_none_or(|d| Some(d) == i.planned_date.as_ref())
        })
        .collect();
    let days = day_plans(&matching);
    let inspections_total = matching.len();
    Ok(Json(CampaignDetail {
        campaign: view,
        inspections_total,
        inspections: matching
            .into_iter()
            .take(limit)
            .map(InspectionView::from)
            .collect(),
        days,
    }))
}

/// The campaign query checked: its ids, its status (parsed), its date and its limit (500 when
/// not given).
fn check_query(query: &CampaignQuery) -> Result<(Option<InspectionStatus>, usize), ApiError> {
    check_id("township", query.township.as_deref())?;
    check_id("technician_id", query.technician_id.as_deref())?;
    let status = match query.status.as_deref() {
        Some(s) => Some(InspectionStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!(
                "status {:?} is not one of {}",
                s.chars().take(MAX_ID_CHARS).collect::<String>(),
                InspectionStatus::ALL
                    .map(InspectionStatus::as_str)
                    .join(", ")
            ))
        })?),
        None => None,
    };
    if let Some(date) = &query.date {
        if crate::registry::parse_date(date).is_none() {
            return Err(ApiError::bad_request("date must be YYYY-MM-DD"));
        }
    }
    let limit = query.limit.unwrap_or(500);
    if limit == 0 || limit > MAX_INSPECTIONS {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_INSPECTIONS}"
        )));
    }
    Ok((status, limit))
}

/// The planned visits per day, team and technician, in rank order.
fn day_plans(inspections: &[InspectionRow]) -> Vec<DayPlan> {
    let mut days: BTreeMap<(String, Option<String>, Option<String>), DayPlan> = BTreeMap::new();
    for inspection in inspections
        .iter()
        .filter(|i| i.status == InspectionStatus::Planned)
    {
        let Some(date) = inspection.planned_date.clone() else {
            continue;
        };
        let key = (
            date.clone(),
            inspection.team_id.clone(),
            inspection.technician_id.clone(),
        );
        let day = days.entry(key).or_insert_with(|| DayPlan {
            date,
            team_id: inspection.team_id.clone(),
            technician_id: inspection.technician_id.clone(),
            inspections: Vec::new(),
            devices: Vec::new(),
        });
        day.inspections.push(inspection.id);
        day.devices.push(inspection.device_id.clone());
    }
    days.into_values().collect()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FieldQuery {
    /// The team (an operator names it or the technician; a team token only its own).
    team_id: Option<String>,
    /// The technician (a technician's token only itself).
    technician_id: Option<String>,
    /// Most inspections (default 200, at most 1000), by day then rank.
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/inspections", tag = "campaigns", params(FieldQuery),
    responses((status = 200, body = [InspectionView], description = "the inspections still to visit, by planned day then rank, each with the checklist of its kind"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn inspections(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<FieldQuery>, QueryRejection>,
) -> Result<Json<Vec<InspectionView>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    require(
        &principal,
        &[Role::Operator, Role::Team],
        "use the field view of inspections (teams and operators)",
    )?;
    check_id("team_id", query.team_id.as_deref())?;
    check_id("technician_id", query.technician_id.as_deref())?;
    let limit = query.limit.unwrap_or(200);
    if limit == 0 || limit > MAX_FIELD_INSPECTIONS {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {MAX_FIELD_INSPECTIONS}"
        )));
    }
    let (team, technician) = match principal.role {
        Role::Team => {
            if query.team_id.is_some() && query.team_id != principal.team {
                return Err(ApiError::forbidden("a team token sees only its own team"));
            }
            if query.technician_id.is_some() && query.technician_id != principal.technician {
                return Err(ApiError::forbidden(
                    "a technician's token sees only the technician's own inspections",
                ));
            }
            if principal.team.is_none() && principal.technician.is_none() {
                return Err(ApiError::forbidden("a team token needs its team"));
            }
            (principal.team.clone(), principal.technician.clone())
        }
        _ => {
            if query.team_id.is_none() && query.technician_id.is_none() {
                return Err(ApiError::bad_request(
                    "name the team_id or the technician_id",
                ));
            }
            (query.team_id.clone(), query.technician_id.clone())
        }
    };
    let rows = state
        .orders
        .with_store(move |s| s.open_inspections(team.as_deref(), technician.as_deref(), limit))
        .await?;
    let mut rows: Vec<InspectionRow> = rows
        .into_iter()
        .filter(|i| campaigns::visible(&principal, i))
        .collect();
    // A technician's own first, then the team's, each by day and rank.
    if let Some(me) = principal
        .technician
        .as_ref()
        .or(query.technician_id.as_ref())
    {
        rows.sort_by_key(|i| i.technician_id.as_ref() != Some(me));
    }
    Ok(Json(rows.into_iter().map(InspectionView::from).collect()))
}

#[utoipa::path(post, path = "/api/v1/inspections/{id}/outcome", tag = "campaigns",
    params(("id" = i64, Path, description = "inspection id"), ("Idempotency-Key" = Option<String>, Header, description = "8 to 64 of A-Z a-z 0-9 - _, new for each step: the same step sent again with the same key returns the first answer and is not applied twice")),
    request_body = VisitReport,
    responses((status = 200, body = InspectionView, description = "the inspection after the visit: done, defect (with the repair order), refused, not_home, or planned again on a later day"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn record(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    payload: Result<Json<VisitReport>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = parse_id("inspection", &id)?;
    require(
        &principal,
        &[Role::Operator, Role::Team],
        "record an inspection (the assigned team's technician or an operator)",
    )?;
    let key = idempotency_key(&headers)?;
    let report = payload
        .map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(e.body_text()))?;
    let answer = state
        .orders
        .record_inspection(id, &principal, report, key)
        .await?;
    Ok(answered(answer))
}
