//! API handler for the daily, weekly and monthly reports, as JSON, CSV or printable HTML.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::calendar::cst_date;
use crate::orders::reports::{self, Period, Report};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// A day in the period, `YYYY-MM-DD` (CST); default today.
    date: Option<String>,
    /// `json` (default), `csv` or `html`.
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/reports/{period}", tag = "reports",
    params(("period" = String, Path, description = "daily, weekly or monthly"), ReportQuery),
    responses(
        (status = 200, body = Report, description = "JSON; CSV (text/csv) or HTML (text/html) with `format`"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn report(
    principal: Principal,
    State(state): State<ApiState>,
    Path(period): Path<String>,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let period = Period::parse(&period).ok_or_else(|| {
        ApiError::bad_request(format!("period {period:?} is not daily, weekly or monthly"))
    })?;
    let now = state.orders.now_ms();
    let date = match &query.date {
        Some(text) => crate::registry::parse_date(text)
            .ok_or_else(|| ApiError::bad_request(format!("date {text:?} is not YYYY-MM-DD")))?,
        None => cst_date(now),
    };
    let (from, to) = period.bounds(date);
    let sla = *state.orders.sla();
    let mut orders = state
        .orders
        .with_store(move |s| s.orders_created_between(from, to))
        .await?;
    match principal.role {
        Role::Operator | Role::ReadOnly => {}
        Role::Township => {
            orders.retain(|o| principal.township.as_deref() == Some(o.township.as_str()))
        }
        Role::Team => orders.retain(|o| principal.team.is_some() && principal.team == o.team_id),
    }
    let mut report = reports::build(period, date, &orders, &sla, now);
    // Inspection coverage of the campaigns whose window overlaps the period, in the caller's
    // scope (a team: its team's inspections).
    let (first, last) = (
        crate::orders::calendar::cst_date_string(from),
        crate::orders::calendar::cst_date_string(to - 1),
    );
    let mut units = state
        .orders
        .with_store(move |s| s.coverage_units(&first, &last))
        .await?;
    units.retain(|(township, _, team, _, _)| match principal.role {
        Role::Operator | Role::ReadOnly => true,
        Role::Township => principal.can_read_township(township),
        Role::Team => principal.team.is_some() && principal.team == *team,
    });
    report.inspection_coverage =
        reports::coverage(units.iter().map(|(township, vendor, _, status, tries)| {
            (township.as_str(), vendor.as_str(), *status, *tries)
        }));
    Ok(match query.format.as_deref().unwrap_or("json") {
        "json" => Json(report).into_response(),
        "csv" => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            reports::to_csv(&report),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            reports::to_html(&report),
        )
            .into_response(),
        other => {
            return Err(ApiError::bad_request(format!(
                "format {other:?} is not json, csv or html"
            )))
        }
    })
}
