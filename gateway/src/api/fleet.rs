//! API handlers for the live fleet: the summary, devices with their latest reading and status,
//! and alert episodes.

use std::collections::BTreeMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiError, ApiState, ErrorBody};
use crate::auth::Principal;
use crate::fleet::DeviceState;
use crate::orders::sla::{tally, ClassTally, SlaClass};
use crate::orders::store::{AlertRow, OrderFilter};

/// Today's picture of the district.
#[derive(Debug, Serialize, ToSchema)]
pub struct Summary {
    pub devices: usize,
    pub online: usize,
    pub offline: usize,
    pub faulty: usize,
    pub active_alerts: usize,
    pub orders_by_state: BTreeMap<String, i64>,
    pub messages_in: u64,
    pub readings_accepted: u64,
    /// Messages dropped at ingest, by reason.
    pub rejected: BTreeMap<String, u64>,
    /// The watermark (Unix ms) the rules were last advanced to, published by ingest at the end
    /// of a rules tick, after the alerts, orders and incidents of that advance were stored.
    /// In event-clock mode it is the newest reading's timestamp minus `rules.lateness`, and
    /// `null` until the first reading; in wall-clock mode, now minus the lateness.
    pub rules_watermark_ms: Option<i64>,
    /// MQTT messages (telemetry and status) ingest had fully processed when it published
    /// `rules_watermark_ms` (from the same tick). A client that sent N messages and reads
    /// `messages_done_at_watermark >= N` knows every one of them was applied (rules run, orders
    /// written) before that watermark advance. Ticks run every `rules.tick` even when nothing
    /// arrives.
    pub messages_done_at_watermark: u64,
}

#[utoipa::path(get, path = "/api/v1/summary", tag = "fleet",
    responses((status = 200, body = Summary), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn summary(
    principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<Summary>, ApiError> {
    if !principal.sees_district() {
        return Err(ApiError::forbidden("the summary covers the whole district"));
    }
    let tick = state.metrics.last_rules_tick();
    let (devices, online, offline, faulty) = state.fleet.counts();
    let (counts, active) = state
        .orders
        .with_store(|s| Ok((s.order_counts()?, s.alerts(true, 1_000_000)?.len())))
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
        rejected: state
            .metrics
            .rejects()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        rules_watermark_ms: tick.watermark_ms,
        messages_done_at_watermark: tick.messages_done,
    }))
}

/// The SLA deadlines this gateway runs, from the start of an order's clocks (`[sla]` in its
/// config), so the console's clocks count what the gateway counts. The top-level deadlines are
/// the `repair` class (the scheme's); `classes` gives every class's own.
#[derive(Debug, Serialize, ToSchema)]
pub struct SlaDeadlines {
    /// Dispatch within this, ms (scheme: 10 minutes). The `repair` class.
    pub dispatch_ms: u64,
    /// Technician on site within this, ms (scheme: 2 hours). The `repair` class.
    pub on_site_ms: u64,
    /// Repair finished within this, ms (scheme: 4 hours). The `repair` class.
    pub repaired_ms: u64,
    /// A warning is raised when this share of a deadline has passed.
    pub warn_at: f64,
    /// Every SLA class (`repair`, `maintenance`, `utility`, `call`) with its deadlines and the
    /// open orders the caller may see, judged against them.
    pub classes: Vec<ClassDeadlines>,
    /// The time the open orders were judged at, Unix ms.
    pub judged_at_ms: i64,
}

/// One SLA class: its deadlines and its open orders' stages against them.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClassDeadlines {
    pub class: SlaClass,
    pub dispatch_ms: u64,
    pub on_site_ms: u64,
    pub repaired_ms: u64,
    /// A breach raises 督办 (`escalated`) to the township and the centre; `false`: it is
    /// recorded on the order for its team (`sla_breached`).
    pub escalates: bool,
    /// The open orders of the class the caller may see: per stage met (reached in time), late
    /// (reached late or overdue) and running.
    pub open: ClassTally,
}

#[utoipa::path(get, path = "/api/v1/sla", tag = "fleet",
    responses((status = 200, body = SlaDeadlines), (status = 401, body = ErrorBody)))]
pub async fn sla(
    principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<SlaDeadlines>, ApiError> {
    let sla = *state.orders.sla();
    let now = state.orders.now_ms();
    let open = state
        .orders
        .with_store(|store| {
            store.orders(&OrderFilter {
                open_only: true,
                limit: 1_000_000,
                ..OrderFilter::default()
            })
        })
        .await?;
    let tallies = tally(&sla, open.iter().filter(|o| principal.can_read(o)), now);
    let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let classes = SlaClass::ALL
        .into_iter()
        .map(|class| {
            let clocks = sla.clocks(class);
            ClassDeadlines {
                class,
                dispatch_ms: ms(clocks.dispatch),
                on_site_ms: ms(clocks.on_site),
                repaired_ms: ms(clocks.repaired),
                escalates: clocks.escalate,
                open: tallies.get(&class).copied().unwrap_or_default(),
            }
        })
        .collect();
    Ok(Json(SlaDeadlines {
        dispatch_ms: ms(sla.dispatch),
        on_site_ms: ms(sla.on_site),
        repaired_ms: ms(sla.repaired),
        warn_at: sla.warn_at,
        classes,
        judged_at_ms: now,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// Only devices of this township.
    township: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/devices", tag = "fleet", params(DeviceQuery),
    responses((status = 200, body = [DeviceState]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn devices(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<DeviceQuery>, QueryRejection>,
) -> Result<Json<Vec<DeviceState>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let township = match (&query.township, principal.sees_district()) {
        (_, true) => query.township.clone(),
        (Some(t), false) if principal.can_read_township(t) => Some(t.clone()),
        (None, false) if principal.township.is_some() => principal.township.clone(),
        _ => return Err(ApiError::forbidden("this token may not list these devices")),
    };
    Ok(Json(state.fleet.list(township.as_deref())))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "fleet", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = DeviceState), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn device(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<DeviceState>, ApiError> {
    let device = state
        .fleet
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no device {id:?}")))?;
    if !principal.can_read_township(&device.township) {
        return Err(ApiError::forbidden(
            "this device is outside the token's township",
        ));
    }
    Ok(Json(device))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// Only alerts that have not resolved.
    #[serde(default)]
    active: bool,
    /// Most alerts to return (default 500, at most 10000).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/alerts", tag = "fleet", params(AlertQuery),
    responses((status = 200, body = [AlertRow]), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn alerts(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<AlertQuery>, QueryRejection>,
) -> Result<Json<Vec<AlertRow>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if principal.role == crate::auth::Role::Team {
        return Err(ApiError::forbidden(
            "team tokens see their orders, not the alert stream",
        ));
    }
    let limit = query.limit.unwrap_or(500).min(10_000);
    let alerts = state
        .orders
        .with_store(move |s| s.alerts(query.active, limit))
        .await?;
    Ok(Json(
        alerts
            .into_iter()
            .filter(|a| principal.can_read_township(&a.township))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/devices/{id}/history", tag = "fleet", params(("id" = String, Path, description = "device id")),
    responses((status = 200, body = crate::fleet::History), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn history(
    principal: Principal,
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<crate::fleet::History>, ApiError> {
    let device = state
        .fleet
        .get(&id)
        .ok_or_else(|| ApiError::not_found(format!("no device {id:?}")))?;
    if !principal.can_read_township(&device.township) {
        return Err(ApiError::forbidden(
            "this device is outside the token's township",
        ));
    }
    Ok(Json(state.fleet.history(&id).unwrap_or(
        crate::fleet::History {
            device_id: id,
            points: Vec::new(),
        },
    )))
}

#[utoipa::path(get, path = "/api/v1/rejects", tag = "fleet",
    responses((status = 200, body = [crate::metrics::RejectSample], description = "the newest rejected messages (at most 100), newest first"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn rejects(
    principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<Vec<crate::metrics::RejectSample>>, ApiError> {
    if !principal.sees_district() {
        return Err(ApiError::forbidden("rejects cover the whole district"));
    }
    Ok(Json(state.metrics.reject_samples()))
}

#[utoipa::path(get, path = "/api/v1/registry/unregistered", tag = "registry",
    responses((status = 200, body = [crate::fleet::UnregisteredDevice], description = "devices whose readings were refused because they are not in the registry (at most 1,000, the most recently seen first), with the township they claimed, their edge box when known, first and last seen; a township token sees those that claimed its township"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn unregistered(
    principal: Principal,
    State(state): State<ApiState>,
) -> Result<Json<Vec<crate::fleet::UnregisteredDevice>>, ApiError> {
    let mut list = state.fleet.unregistered();
    if !principal.sees_district() {
        if principal.role != crate::auth::Role::Township {
            return Err(ApiError::forbidden(
                "the unregistered devices are for operators and townships",
            ));
        }
        list.retain(|d| principal.can_read_township(&d.township));
    }
    Ok(Json(list))
}
