//! API of parts stock and backup units (`orders::stock`, `orders::backup`): the stock lines of
//! the service points and vans in the caller's scope, their moves, receipts, transfers and
//! reorder levels, the parts an order holds, the stock-outs of a period, and the backup heaters
//! with their loans.
//!
//! Roles: operators everything; read-only tokens read; township officers their township's point
//! and the vans of the technicians serving it, and its backup units; teams read their vans and
//! their townships' points and move parts between them (a technician's own token: its own van).

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::orders::body;
use super::steps::parse_id;
use super::{require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::backup::{BackupUnitSpec, BackupUnitView, Loan, LoanRequest};
use crate::orders::stock::{Receipt, ReorderLevel, Transfer};
use crate::orders::store::{
    BackupUnitRow, Reservation, StockFilter, StockLine, StockMoveRow, StockOut, MAX_STOCK_ROWS,
};

/// Longest id or code a query takes.
const MAX_QUERY_CHARS: usize = 80;

fn bounded(field: &str, value: &Option<String>) -> Result<(), ApiError> {
    match value {
        Some(v) if v.is_empty() || v.chars().count() > MAX_QUERY_CHARS => Err(
            ApiError::bad_request(format!("{field}: 1 to {MAX_QUERY_CHARS} characters")),
        ),
        _ => Ok(()),
    }
}

fn limit(value: Option<usize>) -> Result<usize, ApiError> {
    match value.unwrap_or(500) {
        n @ 1..=MAX_STOCK_ROWS => Ok(n),
        n => Err(ApiError::bad_request(format!(
            "limit {n}: 1 to {MAX_STOCK_ROWS}"
        ))),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StockQuery {
    /// One location: `point:{township}` or `van:{technician}`.
    location: Option<String>,
    /// One part of the price list.
    part_code: Option<String>,
    /// Only lines at or below their reorder level.
    #[serde(default)]
    low: bool,
    /// Most lines (default 500, at most 10000).
    limit: Option<usize>,
}

/// The stock lines in the caller's scope.
#[utoipa::path(get, path = "/api/v1/stock", tag = "stock", params(StockQuery),
    responses((status = 200, body = [StockLine]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn lines(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<StockQuery>, QueryRejection>,
) -> Result<Json<Vec<StockLine>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    bounded("location", &q.location)?;
    bounded("part_code", &q.part_code)?;
    let filter = StockFilter {
        within: None,
        location: q.location,
        part_code: q.part_code,
        low_only: q.low,
        limit: limit(q.limit)?,
    };
    Ok(Json(state.orders.stock(&principal, filter).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct MovesQuery {
    location: Option<String>,
    order_id: Option<i64>,
    /// Most moves, newest first (default 500, at most 10000).
    limit: Option<usize>,
}

/// The latest stock moves in the caller's scope (the audit trail of every count).
#[utoipa::path(get, path = "/api/v1/stock/moves", tag = "stock", params(MovesQuery),
    responses((status = 200, body = [StockMoveRow]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn moves(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<MovesQuery>, QueryRejection>,
) -> Result<Json<Vec<StockMoveRow>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    bounded("location", &q.location)?;
    let limit = limit(q.limit)?;
    Ok(Json(
        state
            .orders
            .stock_moves(&principal, q.location, q.order_id, limit)
            .await?,
    ))
}

/// Records goods received at a point or a van (operators; township officers in their scope).
#[utoipa::path(post, path = "/api/v1/stock/receipts", tag = "stock", request_body = Receipt,
    responses((status = 200, body = StockLine), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn receive(
    principal: Principal,
    State(state): State<ApiState>,
    payload: Result<Json<Receipt>, JsonRejection>,
) -> Result<Json<StockLine>, ApiError> {
    let receipt = body(payload)?;
    require(
        &principal,
        &[Role::Operator, Role::Township],
        "receive stock",
    )?;
    Ok(Json(state.orders.receive_stock(&principal, receipt).await?))
}

/// Moves parts between two locations of the caller's scope (a point to a van and back, between
/// points). 409 when `from` has too few available.
#[utoipa::path(post, path = "/api/v1/stock/transfers", tag = "stock", request_body = Transfer,
    responses((status = 200, body = StockLine), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn transfer(
    principal: Principal,
    State(state): State<ApiState>,
    payload: Result<Json<Transfer>, JsonRejection>,
) -> Result<Json<StockLine>, ApiError> {
    let transfer = body(payload)?;
    require(
        &principal,
        &[Role::Operator, Role::Township, Role::Team],
        "move stock",
    )?;
    Ok(Json(
        state.orders.transfer_stock(&principal, transfer).await?,
    ))
}

/// Sets a line's reorder level (operators; township officers in their scope).
#[utoipa::path(post, path = "/api/v1/stock/levels", tag = "stock", request_body = ReorderLevel,
    responses((status = 200, body = StockLine), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn level(
    principal: Principal,
    State(state): State<ApiState>,
    payload: Result<Json<ReorderLevel>, JsonRejection>,
) -> Result<Json<StockLine>, ApiError> {
    let level = body(payload)?;
    require(
        &principal,
        &[Role::Operator, Role::Township],
        "set reorder levels",
    )?;
    Ok(Json(
        state.orders.set_reorder_level(&principal, level).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OutsQuery {
    /// From (Unix ms, included); default 0.
    from_ms: Option<i64>,
    /// To (Unix ms, excluded); default: no end.
    to_ms: Option<i64>,
}

/// The stock-outs of a period: parts orders needed at dispatch that neither the technician's van
/// nor the township's point had, and when the order was repaired (district, or the caller's
/// township).
#[utoipa::path(get, path = "/api/v1/stock/outs", tag = "stock", params(OutsQuery),
    responses((status = 200, body = [StockOut]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn outs(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<OutsQuery>, QueryRejection>,
) -> Result<Json<Vec<StockOut>>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    require(
        &principal,
        &[Role::Operator, Role::ReadOnly, Role::Township],
        "read stock-outs",
    )?;
    let (from, to) = (q.from_ms.unwrap_or(0), q.to_ms.unwrap_or(i64::MAX));
    let outs = state
        .orders
        .with_store(move |s| s.stock_outs(None, from, to))
        .await?;
    Ok(Json(
        outs.into_iter()
            .filter(|o| principal.can_read_township(&o.township))
            .collect(),
    ))
}

/// The parts an order holds at the points and vans (anyone who may read the order).
#[utoipa::path(get, path = "/api/v1/orders/{id}/parts", tag = "stock", params(("id" = i64, Path)),
    responses((status = 200, body = [Reservation]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn order_parts(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Reservation>>, ApiError> {
    let id = parse_id(&id)?;
    let held = state
        .orders
        .with_store(move |s| {
            Ok(match s.order_row(id)? {
                Some(order) if principal.can_read(&order) => Some(s.order_reservations(id)?),
                _ => None,
            })
        })
        .await?;
    held.map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no order {id}")))
}

/// The backup heaters in the caller's scope, each with its loan and whether it is overdue.
#[utoipa::path(get, path = "/api/v1/backup-units", tag = "stock",
    responses((status = 200, body = [BackupUnitView]), (status = 401, body = ErrorBody)))]
pub async fn backup_units(
    principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<Vec<BackupUnitView>>, ApiError> {
    Ok(Json(state.orders.backup_unit_views(&principal).await?))
}

/// Registers a backup unit at a township's point, or changes one that is not lent (operators;
/// township officers their own township's).
#[utoipa::path(post, path = "/api/v1/backup-units", tag = "stock", request_body = BackupUnitSpec,
    responses((status = 200, body = BackupUnitRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_backup_unit(
    principal: Principal,
    State(state): State<ApiState>,
    payload: Result<Json<BackupUnitSpec>, JsonRejection>,
) -> Result<Json<BackupUnitRow>, ApiError> {
    let spec = body(payload)?;
    Ok(Json(state.orders.put_backup_unit(&principal, spec).await?))
}

/// Lends a backup unit for an open repair order: a loan order of its own (category
/// `backup_loan`, dispatched like any order) and the unit marked lent until `return_by_ms`
/// (operators; township officers their own township's units).
#[utoipa::path(post, path = "/api/v1/backup-units/{id}/lend", tag = "stock", params(("id" = String, Path)), request_body = LoanRequest,
    responses((status = 200, body = Loan), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn lend(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
    payload: Result<Json<LoanRequest>, JsonRejection>,
) -> Result<Json<Loan>, ApiError> {
    let request = body(payload)?;
    bounded("id", &Some(id.clone()))?;
    Ok(Json(
        state
            .orders
            .lend_backup_unit(&principal, id, request)
            .await?,
    ))
}

/// Takes a lent unit back at its point (operators, its township's officers, the team that
/// delivered it): an event on the loan order.
#[utoipa::path(post, path = "/api/v1/backup-units/{id}/return", tag = "stock", params(("id" = String, Path)),
    responses((status = 200, body = BackupUnitRow), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn give_back(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<BackupUnitRow>, ApiError> {
    bounded("id", &Some(id.clone()))?;
    Ok(Json(state.orders.return_backup_unit(&principal, id).await?))
}
