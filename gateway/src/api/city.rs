//! API handler for the 12345 export: every request that came with a city ticket in a range of
//! days, one line per ticket with what became of it, as CSV (for township 12345 staff to match
//! line by line against the city's own list) or JSON.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiError, ApiState, ErrorBody};
use crate::auth::{Principal, Role};
use crate::orders::calendar::{civil_from_days, cst_date, cst_midnight_ms, DAY_MS};
use crate::orders::store::CityLine;

/// Longest range of one export, in days.
const MAX_DAYS: i64 = 366;
/// Most lines of one export.
const MAX_LINES: usize = 100_000;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CityQuery {
    /// First day, `YYYY-MM-DD` (CST); default: 30 days before `to`.
    from: Option<String>,
    /// Last day, included, `YYYY-MM-DD` (CST); default today.
    to: Option<String>,
    /// One township (a township token always gets its own).
    township: Option<String>,
    /// `csv` (default) or `json`.
    format: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/requests/city", tag = "requests",
    params(CityQuery),
    responses(
        (status = 200, description = "CSV (text/csv, default) or JSON with `format=json`: one line per city ticket",
            content((String = "text/csv"), (Vec<CityLineDoc> = "application/json"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn export(
    principal: Principal,
    State(state): State<ApiState>,
    query: Result<Query<CityQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if principal.role == Role::Team {
        return Err(ApiError::forbidden(
            "team tokens see their orders, not the city's tickets",
        ));
    }
    // Each day as the Unix ms of its CST midnight.
    let day = |name: &str, text: &Option<String>| -> Result<Option<i64>, ApiError> {
        text.as_deref()
            .map(|t| {
                crate::registry::parse_date(t)
                    .map(|(y, m, d)| cst_midnight_ms(y, m, d))
                    .ok_or_else(|| ApiError::bad_request(format!("{name} {t:?} is not YYYY-MM-DD")))
            })
            .transpose()
    };
    let now = state.orders.now_ms();
    let to_day = match day("to", &query.to)? {
        Some(ms) => ms,
        None => {
            let (y, m, d) = cst_date(now);
            cst_midnight_ms(y, m, d)
        }
    };
    let from_day = day("from", &query.from)?.unwrap_or(to_day - 30 * DAY_MS);
    if from_day > to_day {
        return Err(ApiError::bad_request("from is after to"));
    }
    if to_day - from_day >= MAX_DAYS * DAY_MS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_DAYS} days in one export"
        )));
    }
    let township = match principal.role {
        Role::Township => {
            let own = principal.township.clone();
            if query.township.is_some() && query.township != own {
                return Err(ApiError::forbidden(
                    "a township token exports its own township's tickets",
                ));
            }
            own
        }
        _ => query.township.clone(),
    };
    if let Some(t) = &township {
        if !principal.can_read_township(t) {
            return Err(ApiError::forbidden("not your township"));
        }
    }
    let channel = crate::notify::city::CITY_CHANNEL.as_str();
    let (from_ms, to_ms) = (from_day, to_day + DAY_MS);
    let lines = state
        .orders
        .with_store(move |s| s.city_lines(channel, township.as_deref(), from_ms, to_ms, MAX_LINES))
        .await?;
    Ok(match query.format.as_deref().unwrap_or("csv") {
        "csv" => (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            to_csv(&lines),
        )
            .into_response(),
        "json" => Json(lines).into_response(),
        other => {
            return Err(ApiError::bad_request(format!(
                "format {other:?} is not csv or json"
            )))
        }
    })
}

/// The documented shape of one line (the store's [`CityLine`]).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CityLineDoc {
    ticket: String,
    request_id: i64,
    received_at_ms: i64,
    kind: String,
    township: String,
    village_id: Option<String>,
    order_id: Option<i64>,
    order_state: Option<String>,
    dispatched_at_ms: Option<i64>,
    on_site_at_ms: Option<i64>,
    resolved_at_ms: Option<i64>,
    closed_at_ms: Option<i64>,
    satisfaction: Option<i64>,
    outcome: String,
}

/// Beijing time as `YYYY-MM-DD HH:MM:SS` (how the city's list writes it).
fn beijing(ms: i64) -> String {
    let local = ms.saturating_add(8 * 3_600_000);
    let (y, m, d) = civil_from_days(local.div_euclid(DAY_MS));
    let s = local.rem_euclid(DAY_MS) / 1000;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The CSV: a header, then one line per ticket, times in Beijing time.
pub fn to_csv(lines: &[CityLine]) -> String {
    let mut out = String::from(
        "ticket,request_id,received,kind,township,village,order_id,order_state,dispatched,on_site,resolved,closed,satisfaction,outcome\n",
    );
    let time = |ms: Option<i64>| ms.map(beijing).unwrap_or_default();
    for l in lines {
        let fields = [
            l.ticket.clone(),
            l.request_id.to_string(),
            beijing(l.received_at_ms),
            l.kind.clone(),
            l.township.clone(),
            l.village_id.clone().unwrap_or_default(),
            l.order_id.map(|id| id.to_string()).unwrap_or_default(),
            l.order_state.clone().unwrap_or_default(),
            time(l.dispatched_at_ms),
            time(l.on_site_at_ms),
            time(l.resolved_at_ms),
            time(l.closed_at_ms),
            l.satisfaction.map(|s| s.to_string()).unwrap_or_default(),
            l.outcome.clone(),
        ];
        let quoted: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    }
    out
}

/// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@` is prefixed with `'`
/// so a spreadsheet does not run it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csv_quotes_and_defuses_fields() {
        let line = CityLine {
            ticket: "2026120700123".into(),
            request_id: 4,
            received_at_ms: 1_767_225_600_000,
            kind: "repair".into(),
            township: "yanqing".into(),
            village_id: Some("yanqing-xiguan".into()),
            order_id: Some(9),
            order_state: Some("closed".into()),
            dispatched_at_ms: Some(1_767_226_200_000),
            on_site_at_ms: None,
            resolved_at_ms: None,
            closed_at_ms: None,
            satisfaction: Some(5),
            outcome: "=换了水泵, \"好\"".into(),
        };
        let csv = to_csv(&[line]);
        let mut rows = csv.lines();
        assert!(rows
            .next()
            .is_some_and(|h| h.starts_with("ticket,request_id,received")));
        let row = rows.next().expect("one line");
        assert!(
            row.starts_with("2026120700123,4,2026-01-01 08:00:00,repair,"),
            "{row}"
        );
        assert!(row.contains(",9,closed,"), "{row}");
        assert!(row.ends_with(",5,\"'=换了水泵, \"\"好\"\"\""), "{row}");
    }
}
