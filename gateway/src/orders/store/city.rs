//! Queries of the 12345 round trip (`notify::city`): what happened to the requests that came
//! with a city ticket, in the order it happened, after a cursor the sender keeps in `kv`; and
//! the line-by-line export township 12345 staff match against the city's own list.

use rusqlite::params;
use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// Where the 12345 sender has got to in each of its three streams (stored as JSON in `kv`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CityCursor {
    /// Last request (id) whose intake was sent.
    pub received_id: i64,
    /// Last order event (id) sent, and the request (id) it was sent for.
    pub event_id: i64,
    pub event_request_id: i64,
    /// Last answer sent: its time and request id.
    pub answered_at_ms: i64,
    pub answered_id: i64,
}

/// One thing to tell the city about a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct CityItem {
    /// `received`, `answered`, or an order event's kind (`dispatched`, `resolved`, ...).
    pub event: String,
    /// When it happened, Unix ms.
    pub at_ms: i64,
    pub request_id: i64,
    pub ticket: String,
    pub township: String,
    pub request_kind: String,
    /// The order the request opened or joined, if any.
    pub order_id: Option<i64>,
    /// The order event's id (order events only).
    pub event_id: Option<i64>,
    /// The order event's note, or the answer given.
    pub text: String,
}

/// One line of the 12345 export.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CityLine {
    pub ticket: String,
    pub request_id: i64,
    pub received_at_ms: i64,
    pub kind: String,
    pub township: String,
    pub village_id: Option<String>,
    pub order_id: Option<i64>,
    pub order_state: Option<String>,
    pub dispatched_at_ms: Option<i64>,
    pub on_site_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub satisfaction: Option<i64>,
    /// The answer given (policy, charge ... questions), or the order's resolution note.
    pub outcome: String,
}

/// The order events the city hears about.
const CITY_EVENTS: &str = "'dispatched', 'reassigned', 'accepted', 'arrived', 'resolved', 'callback', 'reopened', 'closed', 'cancelled', 'merged', 'escalated'";

impl Store {
    /// At most `limit` items of each stream after `cursor`, for tickets of `channel`, merged
    /// in time order (ties: intake, then order events, then answers).
    pub fn city_items(
        &self,
        channel: &str,
        cursor: &CityCursor,
        limit: usize,
    ) -> Result<Vec<CityItem>, StoreError> {
        let limit = limit.clamp(1, 1000) as i64;
        let mut items = Vec::new();
        let mut received = self.connection.prepare_cached(
            "SELECT id, received_at_ms, ticket, township, kind, order_id, text FROM requests
             WHERE channel = ?1 AND ticket IS NOT NULL AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = received.query_map(params![channel, cursor.received_id, limit], |r| {
            Ok(CityItem {
                event: "received".into(),
                request_id: r.get(0)?,
                at_ms: r.get(1)?,
                ticket: r.get(2)?,
                township: r.get(3)?,
                request_kind: r.get(4)?,
                order_id: r.get(5)?,
                event_id: None,
                text: r.get(6)?,
            })
        })?;
        for row in rows {
            items.push(row?);
        }
        let mut events = self.connection.prepare_cached(&format!(
            "SELECT e.id, e.kind, e.at_ms, e.note, r.id, r.ticket, r.township, r.kind, r.order_id
             FROM order_events e JOIN requests r ON r.order_id = e.order_id
             WHERE r.channel = ?1 AND r.ticket IS NOT NULL AND e.kind IN ({CITY_EVENTS})
               AND (e.id > ?2 OR (e.id = ?2 AND r.id > ?3))
             ORDER BY e.id, r.id LIMIT ?4"
        ))?;
        let rows = events.query_map(
            params![channel, cursor.event_id, cursor.event_request_id, limit],
            |r| {
                Ok(CityItem {
                    event_id: Some(r.get(0)?),
                    event: r.get(1)?,
                    at_ms: r.get(2)?,
                    text: r.get(3)?,
                    request_id: r.get(4)?,
                    ticket: r.get(5)?,
                    township: r.get(6)?,
                    request_kind: r.get(7)?,
                    order_id: r.get(8)?,
                })
            },
        )?;
        for row in rows {
            items.push(row?);
        }
        let mut answers = self.connection.prepare_cached(
            "SELECT id, answered_at_ms, ticket, township, kind, order_id, answer FROM requests
             WHERE channel = ?1 AND ticket IS NOT NULL AND answered_at_ms IS NOT NULL
               AND (answered_at_ms > ?2 OR (answered_at_ms = ?2 AND id > ?3))
             ORDER BY answered_at_ms, id LIMIT ?4",
        )?;
        let rows = answers.query_map(
            params![channel, cursor.answered_at_ms, cursor.answered_id, limit],
            |r| {
                Ok(CityItem {
                    event: "answered".into(),
                    request_id: r.get(0)?,
                    at_ms: r.get(1)?,
                    ticket: r.get(2)?,
                    township: r.get(3)?,
                    request_kind: r.get(4)?,
                    order_id: r.get(5)?,
                    event_id: None,
                    text: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                })
            },
        )?;
        for row in rows {
            items.push(row?);
        }
        let rank = |item: &CityItem| match item.event.as_str() {
            "received" => 0,
            "answered" => 2,
            _ => 1,
        };
        items.sort_by_key(|item| (item.at_ms, rank(item), item.event_id, item.request_id));
        Ok(items)
    }

    /// The requests of `channel` with a ticket received in `[from_ms, to_ms)`, in township
    /// `township` when given, oldest first, with their order's progress: at most `limit`.
    pub fn city_lines(
        &self,
        channel: &str,
        township: Option<&str>,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<CityLine>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT r.ticket, r.id, r.received_at_ms, r.kind, r.township, r.village_id, r.order_id,
                    o.state, o.dispatched_at_ms, o.on_site_at_ms, o.resolved_at_ms, o.closed_at_ms,
                    o.satisfaction, r.answer,
                    (SELECT note FROM order_events WHERE order_id = r.order_id AND kind = 'resolved'
                     ORDER BY id DESC LIMIT 1)
             FROM requests r LEFT JOIN orders o ON o.id = r.order_id
             WHERE r.channel = ?1 AND r.ticket IS NOT NULL AND (?2 IS NULL OR r.township = ?2)
               AND r.received_at_ms >= ?3 AND r.received_at_ms < ?4
             ORDER BY r.received_at_ms, r.id LIMIT ?5",
        )?;
        let rows = statement.query_map(
            params![
                channel,
                township,
                from_ms,
                to_ms,
                limit.clamp(1, 100_000) as i64
            ],
            |r| {
                let answer: Option<String> = r.get(13)?;
                let resolution: Option<String> = r.get(14)?;
                Ok(CityLine {
                    ticket: r.get(0)?,
                    request_id: r.get(1)?,
                    received_at_ms: r.get(2)?,
                    kind: r.get(3)?,
                    township: r.get(4)?,
                    village_id: r.get(5)?,
                    order_id: r.get(6)?,
                    order_state: r.get(7)?,
                    dispatched_at_ms: r.get(8)?,
                    on_site_at_ms: r.get(9)?,
                    resolved_at_ms: r.get(10)?,
                    closed_at_ms: r.get(11)?,
                    satisfaction: r.get(12)?,
                    outcome: answer.or(resolution).unwrap_or_default(),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
