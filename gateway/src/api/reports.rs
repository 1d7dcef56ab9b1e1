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
use crate::orders::scheme::{self, SchemeFigures, SchemeInputs};

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
    let sites = state
        .orders
        .with_store(|s| s.household_site_types())
        .await?;
    report.by_site_type = reports::by_site_type(&report, &orders, &sites, &sla);
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
    units.retain(|unit| match principal.role {
        Role::Operator | Role::ReadOnly => true,
        Role::Township => principal.can_read_township(&unit.township),
        Role::Team => principal.team.is_some() && principal.team == unit.team,
    });
    report.inspection_coverage = reports::coverage(units.iter().map(|unit| {
        (
            unit.township.as_str(),
            unit.vendor.as_str(),
            unit.status,
            unit.tries,
        )
    }));
    report.scheme =
        Some(scheme_figures(&state, &principal, &report, &orders, from, to, now).await?);
    report.stock = Some(stock_figures(&state, &principal, &orders, now).await?);
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

/// The scheme's figures of `report` in the caller's scope: a township token's own township;
/// a team token its team's orders, without the registry's figures (funding, staffing).
async fn scheme_figures(
    state: &ApiState,
    principal: &Principal,
    report: &Report,
    orders: &[crate::orders::store::OrderRow],
    from: i64,
    to: i64,
    now: i64,
) -> Result<SchemeFigures, ApiError> {
    let last_day = crate::orders::calendar::cst_date_string(to - 1);
    let (visits, mut earlier, mut requests, mut out_of_warranty, mut staff) = state
        .orders
        .with_store(move |s| {
            Ok::<_, crate::orders::store::StoreError>((
                s.order_visits(from, to)?,
                s.orders_open_at(from)?,
                s.requests_by_kind(from, to)?,
                s.out_of_warranty_households(&last_day)?,
                s.township_staff()?,
            ))
        })
        .await?;
    let registry = match principal.role {
        Role::Operator | Role::ReadOnly => true,
        Role::Township => {
            let own = principal.township.clone().unwrap_or_default();
            earlier.retain(|o| o.township == own);
            requests.retain(|(township, ..)| *township == own);
            out_of_warranty.retain(|township, _| *township == own);
            staff.retain(|s| s.township == own);
            true
        }
        Role::Team => {
            earlier.retain(|o| principal.team.is_some() && o.team_id == principal.team);
            requests.clear();
            staff.clear();
            false
        }
    };
    Ok(scheme::build(&SchemeInputs {
        from_ms: from,
        to_ms: to,
        now_ms: now,
        orders,
        visits: &visits,
        earlier_open: &earlier,
        requests: &requests,
        out_of_warranty: registry.then_some(&out_of_warranty),
        staff: &staff,
        vendors: &report.by_vendor,
    }))
}

/// The stock figures of the report's orders, with the low lines and backup units in the
/// caller's scope now.
async fn stock_figures(
    state: &ApiState,
    principal: &Principal,
    orders: &[crate::orders::store::OrderRow],
    now: i64,
) -> Result<crate::orders::stock_report::StockFigures, ApiError> {
    let ids: std::collections::BTreeSet<i64> = orders.iter().map(|o| o.id).collect();
    let first = orders.iter().map(|o| o.created_at_ms).min().unwrap_or(now);
    let mut outs = state
        .orders
        .with_store(move |s| s.stock_outs(None, first, i64::MAX))
        .await?;
    outs.retain(|o| ids.contains(&o.order_id));
    let low = crate::orders::store::StockFilter {
        low_only: true,
        limit: crate::orders::store::MAX_STOCK_ROWS,
        ..Default::default()
    };
    let low_lines = state.orders.stock(principal, low).await?.len() as u64;
    let units = state.orders.backup_units(principal).await?;
    Ok(crate::orders::stock_report::figures(
        orders, &outs, low_lines, &units, now,
    ))
}
