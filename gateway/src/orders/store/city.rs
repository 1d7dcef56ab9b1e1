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
        let mut full_batch_horizon = Vec::new();
        for batch in [
            self.city_received(channel, cursor, limit)?,
            self.city_events(channel, cursor, limit)?,
            self.city_answers(channel, cursor, limit)?,
        ] {
            if batch.len() as i64 == limit {
                if let Some(last) = batch.last() {
                    full_batch_horizon.push(last.at_ms);
                }
            }
            items.extend(batch);
        }
        // A stream that filled its batch may hold older items than another stream's newest:
        // only items up to the earliest such batch's last time go out now (the rest come with
        // the next read, the cursors moving only past what was sent), so the city hears a
        // ticket's steps in order even behind a long backlog.
        let horizon = full_batch_horizon.iter().copied().min();
        if let Some(horizon) = horizon {
            items.retain(|item| item.at_ms <= horizon);
        }
        let rank = |item: &CityItem| match item.event.as_str() {
            "received" => 0,
            "answered" => 2,
            _ => 1,
        };
        items.sort_by_key(|item| (item.at_ms, rank(item), item.event_id, item.request_id));
        Ok(items)
    }

    /// The intake stream: requests with a ticket after the cursor's, by id.
    fn city_received(
        &self,
        channel: &str,
        cursor: &CityCursor,
        limit: i64,
    ) -> Result<Vec<CityItem>, StoreError> {
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
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The order events stream: the city's events of the tickets' orders after the cursor's
    /// (event id, request id).
    fn city_events(
        &self,
        channel: &str,
        cursor: &CityCursor,
        limit: i64,
    ) -> Result<Vec<CityItem>, StoreError> {
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
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The answers stream: answers to requests with a ticket after the cursor's (time, id).
    fn city_answers(
        &self,
        channel: &str,
        cursor: &CityCursor,
        limit: i64,
    ) -> Result<Vec<CityItem>, StoreError> {
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
        Ok(rows.collect::<Result<_, _>>()?)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A 12345 request received at `at_ms` (straight into the table: the intake's checks are
    /// not what is tested here).
    fn request(store: &Store, ticket: &str, at_ms: i64) {
        store
            .connection
            .execute(
                "INSERT INTO requests (kind, channel, ticket, township, caller_name, caller_phone,
                                       text, received_at_ms, taken_by, linked)
                 VALUES ('policy', 'hotline_12345', ?1, 'yanqing', '周', '13800138000', '问', ?2, 'desk', 0)",
                params![ticket, at_ms],
            )
            .expect("insert");
    }

    #[test]
    fn a_full_batch_holds_back_what_is_newer_than_its_last_item() {
        let store = Store::in_memory().expect("store");
        for (ticket, at) in [("t1", 10), ("t2", 20), ("t3", 30)] {
            request(&store, ticket, at);
        }
        store
            .connection
            .execute(
                "UPDATE requests SET answer = 'ok', answered_at_ms = 15 WHERE ticket = 't1'",
                [],
            )
            .expect("answer");
        // Two per stream: the intake stream is full at t2 (20), so t3 (30) waits; the answer
        // (15) goes out between them.
        let items = store
            .city_items("hotline_12345", &CityCursor::default(), 2)
            .expect("items");
        let seen: Vec<(&str, &str)> = items
            .iter()
            .map(|i| (i.ticket.as_str(), i.event.as_str()))
            .collect();
        assert_eq!(
            seen,
            [("t1", "received"), ("t1", "answered"), ("t2", "received")]
        );
        // Nothing of another channel, and everything once the cursor has moved.
        let cursor = CityCursor {
            received_id: 2,
            answered_at_ms: 15,
            answered_id: 1,
            ..CityCursor::default()
        };
        let rest = store.city_items("hotline_12345", &cursor, 2).expect("rest");
        assert_eq!(rest.len(), 1);
        assert_eq!(rest[0].ticket, "t3");
        assert!(store
            .city_items("centre_hotline", &CityCursor::default(), 2)
            .expect("other channel")
            .is_empty());
    }
}
