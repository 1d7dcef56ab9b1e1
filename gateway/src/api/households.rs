//! API handlers for households with their people: the search a hotline desk uses (`老王, 西关村`,
//! a phone or its last digits, an address, a village, a device id), one household, and the
//! registry export. Masking is decided here, on the server, from the caller's role
//! ([`Principal::masks_people`]); the console shows what it is given.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{require, ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::registry::people::{search_terms, HouseholdView};

/// Households per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 20;
/// Most households per page.
const MAX_LIMIT: usize = 100;
/// The furthest a page may start.
const MAX_OFFSET: usize = 100_000;
/// Longest search text, in characters.
const MAX_QUERY_CHARS: usize = 200;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HouseholdQuery {
    /// Search terms separated by commas (`,` `，` `、`) or spaces, all of which must match:
    /// a phone number or its last 4+ digits, a resident's name or part of it (`老王` / `小王`:
    /// surname 王), part of an address, a village name, a household or device id. Empty: every
    /// household by id. Exact phone and id matches come first.
    q: Option<String>,
    /// Only households of this township (a township officer always gets only their own).
    township: Option<String>,
    /// Households to skip (0..=100000).
    offset: Option<usize>,
    /// Households to return (default 20, at most 100).
    limit: Option<usize>,
}

/// A page of households, best match first.
#[derive(Debug, Serialize, ToSchema)]
pub struct HouseholdPage {
    /// Households matching in all (in the caller's scope).
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub items: Vec<HouseholdView>,
}

/// The roles that may look households up: not a team (a team sees the people of its own
/// orders on the order).
const READERS: [Role; 3] = [Role::Operator, Role::Township, Role::ReadOnly];

/// `view` as `principal` may see it: masked for a read-only role.
pub fn for_role(principal: &Principal, view: HouseholdView) -> HouseholdView {
    if principal.masks_people() {
        view.mask()
    } else {
        view
    }
}

#[utoipa::path(get, path = "/api/v1/households", tag = "households", params(HouseholdQuery),
    responses((status = 200, body = HouseholdPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn search(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<HouseholdQuery>, QueryRejection>,
) -> Result<Json<HouseholdPage>, ApiError> {
    require(&principal, &READERS, "look households up")?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let text = query.q.unwrap_or_default();
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::bad_request(format!(
            "q is longer than {MAX_QUERY_CHARS} characters"
        )));
    }
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::bad_request(format!(
            "offset {offset} is beyond {MAX_OFFSET}"
        )));
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let township = match principal.role {
        Role::Township => {
            if let Some(asked) = &query.township {
                if !principal.can_read_township(asked) {
                    return Err(ApiError::forbidden(format!(
                        "a township token of {:?} may not look up households of {asked:?}",
                        principal.township.as_deref().unwrap_or_default()
                    )));
                }
            }
            Some(principal.township.clone().unwrap_or_default())
        }
        _ => query.township,
    };
    let terms = search_terms(&text);
    let phones = !principal.masks_people();
    let items = state
        .orders
        .with_store(move |s| {
            let hits = s.search_households(&terms, township.as_deref(), phones, offset, limit)?;
            let mut items = Vec::with_capacity(hits.ids.len());
            for id in &hits.ids {
                if let Some(view) = s.household_view(id)? {
                    items.push(view);
                }
            }
            Ok((hits.total, items))
        })
        .await?;
    let (total, items) = items;
    Ok(Json(HouseholdPage {
        total,
        offset,
        limit,
        items: items
            .into_iter()
            .map(|view| for_role(&principal, view))
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/households/{id}", tag = "households", params(("id" = String, Path, description = "household id")),
    responses((status = 200, body = HouseholdView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn household(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<HouseholdView>, ApiError> {
    require(&principal, &READERS, "look households up")?;
    let lookup = id.clone();
    let view = state
        .orders
        .with_store(move |s| s.household_view(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no household {id:?}")))?;
    if !principal.can_read_township(&view.township_id) {
        return Err(ApiError::forbidden(format!(
            "household {id:?} is not in the token's township"
        )));
    }
    Ok(Json(for_role(&principal, view)))
}

/// The registry as CSV texts by file name: the body `POST /api/v1/registry/import` takes.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportBody {
    pub files: HashMap<String, String>,
}

#[utoipa::path(get, path = "/api/v1/registry/export", tag = "registry",
    responses((status = 200, body = ExportBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn export(
    principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<ExportBody>, ApiError> {
    // Residents' names and numbers in full: operators only.
    require(&principal, &[Role::Operator], "export the registry")?;
    let data = state.orders.with_store(|s| s.registry_data()).await?;
    tracing::info!(by = %principal.actor(), households = data.households.len(), "registry exported");
    Ok(Json(ExportBody {
        files: crate::registry::to_csv_files(&data)
            .into_iter()
            .map(|(name, text)| (name.to_owned(), text))
            .collect(),
    }))
}
