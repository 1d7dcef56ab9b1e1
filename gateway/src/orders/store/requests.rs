//! Storage of the intake desk's requests (诉求: kind, channel, external ticket number, caller,
//! the order they opened or joined, the answer), of what a caller's household has going on
//! (open orders, recent alerts of its devices), and of the first result of each idempotent
//! step (`Idempotency-Key`), kept for a day.

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use utoipa::ToSchema;

use super::{order_row, AlertRow, OrderRow, Store, StoreError, ORDER_COLUMNS};
use crate::registry::Technician;

/// How long the first result of an idempotent step is kept: a phone that comes back within a
/// day gets the same answer for the same key.
pub const IDEMPOTENCY_RETENTION_MS: i64 = 24 * 60 * 60 * 1000;

/// A request as the desk logged it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct RequestRow {
    pub id: i64,
    /// `repair`, `policy`, `charge`, `conversion`, `service_complaint` or `other`.
    pub kind: String,
    /// The intake channel (`hotline_12345`, `centre_hotline`, `app`, `sms_wechat`, `walk_in`,
    /// `technician`).
    pub channel: String,
    /// The external ticket number (the 12345 工单号), when the channel gave one.
    pub ticket: Option<String>,
    pub household_id: Option<String>,
    pub device_id: Option<String>,
    pub village_id: Option<String>,
    pub township: String,
    /// Who called (the resident's name for a registered household unless another was given).
    pub caller_name: String,
    /// The number to ring back, digits.
    pub caller_phone: String,
    pub text: String,
    pub received_at_ms: i64,
    /// The actor who logged it.
    pub taken_by: String,
    /// The order the request opened or joined.
    pub order_id: Option<i64>,
    /// The request joined an order that was already open.
    pub linked: bool,
    /// The answer given to the caller (the response the scheme counts).
    pub answer: Option<String>,
    pub answered_at_ms: Option<i64>,
    pub answered_by: Option<String>,
    /// Caller's name and number masked for the reader's role.
    pub masked: bool,
}

impl RequestRow {
    /// The row a read-only role gets.
    pub fn mask(mut self) -> RequestRow {
        self.caller_name = crate::registry::people::mask_name(&self.caller_name);
        self.caller_phone = crate::registry::people::mask_phone(&self.caller_phone);
        self.masked = true;
        self
    }
}

/// Filter for listing requests, newest first.
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub household_id: Option<String>,
    pub township: Option<String>,
    pub kind: Option<String>,
    /// Only requests still awaiting their response: not answered, and for a repair not
    /// on an order either (a repair's response is its dispatched order).
    pub unanswered: bool,
    pub limit: usize,
}

/// The stored first result of an idempotent step.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredStep {
    /// What the step asked (route and body), hashed: the same key with another step is refused.
    pub fingerprint: String,
    pub status: u16,
    pub body: String,
}

const REQUEST_COLUMNS: &str = "id, kind, channel, ticket, household_id, device_id, village_id, township, caller_name, caller_phone, text, received_at_ms, taken_by, order_id, linked, answer, answered_at_ms, answered_by";

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        channel: r.get(2)?,
        ticket: r.get(3)?,
        household_id: r.get(4)?,
        device_id: r.get(5)?,
        village_id: r.get(6)?,
        township: r.get(7)?,
        caller_name: r.get(8)?,
        caller_phone: r.get(9)?,
        text: r.get(10)?,
        received_at_ms: r.get(11)?,
        taken_by: r.get(12)?,
        order_id: r.get(13)?,
        linked: r.get(14)?,
        answer: r.get(15)?,
        answered_at_ms: r.get(16)?,
        answered_by: r.get(17)?,
        masked: false,
    })
}

impl Store {
    /// Stores a request (its `id` is ignored); returns the new id.
    pub fn add_request(&mut self, request: &RequestRow) -> Result<i64, StoreError> {
        self.connection.execute(
            "INSERT INTO requests (kind, channel, ticket, household_id, device_id, village_id, township,
                caller_name, caller_phone, text, received_at_ms, taken_by, order_id, linked, answer,
                answered_at_ms, answered_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
            params![
                request.kind,
                request.channel,
                request.ticket,
                request.household_id,
                request.device_id,
                request.village_id,
                request.township,
                request.caller_name,
                request.caller_phone,
                request.text,
                request.received_at_ms,
                request.taken_by,
                request.order_id,
                request.linked,
                request.answer,
                request.answered_at_ms,
                request.answered_by,
            ],
        )?;
        Ok(self.connection.last_insert_rowid())
    }

    /// Sets the order a request opened (after the order was created from it).
    pub fn set_request_order(&mut self, request_id: i64, order_id: i64) -> Result<(), StoreError> {
        self.connection.execute(
            "UPDATE requests SET order_id = ?2 WHERE id = ?1",
            params![request_id, order_id],
        )?;
        Ok(())
    }

    /// Records the answer to a request.
    pub fn answer_request(
        &mut self,
        request_id: i64,
        answer: &str,
        at_ms: i64,
        actor: &str,
    ) -> Result<(), StoreError> {
        self.connection.execute(
            "UPDATE requests SET answer = ?2, answered_at_ms = ?3, answered_by = ?4 WHERE id = ?1",
            params![request_id, answer, at_ms, actor],
        )?;
        Ok(())
    }

    /// One request.
    pub fn request(&self, id: i64) -> Result<Option<RequestRow>, StoreError> {
        Ok(self
            .connection
            .query_row(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE id = ?1"),
                [id],
                request_row,
            )
            .optional()?)
    }

    /// The request already logged with this channel's ticket number, if any.
    pub fn request_by_ticket(
        &self,
        channel: &str,
        ticket: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT id FROM requests WHERE channel = ?1 AND ticket = ?2",
                params![channel, ticket],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Requests matching `filter`, newest first.
    pub fn requests(&self, filter: &RequestFilter) -> Result<Vec<RequestRow>, StoreError> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit } as i64;
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests
             WHERE (?1 IS NULL OR household_id = ?1) AND (?2 IS NULL OR township = ?2)
               AND (?3 IS NULL OR kind = ?3)
               AND (?4 = 0 OR (answered_at_ms IS NULL AND (kind <> 'repair' OR order_id IS NULL)))
             ORDER BY received_at_ms DESC, id DESC LIMIT ?5"
        ))?;
        let rows = statement.query_map(
            params![
                filter.household_id,
                filter.township,
                filter.kind,
                i64::from(filter.unanswered),
                limit
            ],
            request_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Requests that joined or opened an order, oldest first (the order page's callers).
    pub fn requests_of_order(&self, order_id: i64) -> Result<Vec<RequestRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {REQUEST_COLUMNS} FROM requests WHERE order_id = ?1 ORDER BY id LIMIT 50"
        ))?;
        let rows = statement.query_map([order_id], request_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A household's orders that are not closed, cancelled or merged, newest first.
    pub fn open_orders_of_household(
        &self,
        household_id: &str,
        limit: usize,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE household_id = ?1 AND state NOT IN ('closed', 'cancelled', 'merged')
             ORDER BY created_at_ms DESC, id DESC LIMIT ?2"
        ))?;
        let rows = statement.query_map(params![household_id, limit as i64], order_row)?;
        let mut orders = Vec::new();
        for row in rows {
            orders.push(row??);
        }
        Ok(orders)
    }

    /// Orders assigned to a technician that are not closed, cancelled or merged, newest first.
    pub fn open_orders_of_technician(
        &self,
        technician_id: &str,
        limit: usize,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE technician_id = ?1 AND state NOT IN ('closed', 'cancelled', 'merged')
             ORDER BY created_at_ms DESC, id DESC LIMIT ?2"
        ))?;
        let rows = statement.query_map(params![technician_id, limit as i64], order_row)?;
        let mut orders = Vec::new();
        for row in rows {
            orders.push(row??);
        }
        Ok(orders)
    }

    /// One technician of the registry.
    pub fn technician(&self, id: &str) -> Result<Option<Technician>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT id, team_id, name, phone, home_village_id FROM technicians WHERE id = ?1",
                [id],
                |r| {
                    Ok(Technician {
                        id: r.get(0)?,
                        team_id: r.get(1)?,
                        name: r.get(2)?,
                        phone: r.get(3)?,
                        home_village_id: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Alerts of `devices` fired since `since_ms`, newest first.
    pub fn alerts_of_devices(
        &self,
        devices: &[String],
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<AlertRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT episode_id, device_id, township, rule_id, severity, summary, fired_at_ms, resolved_at_ms
             FROM alerts WHERE device_id = ?1 AND fired_at_ms >= ?2
             ORDER BY fired_at_ms DESC LIMIT ?3",
        )?;
        let mut alerts = Vec::new();
        for device in devices {
            let rows = statement.query_map(params![device, since_ms, limit as i64], |r| {
                Ok(AlertRow {
                    episode_id: r.get(0)?,
                    device_id: r.get(1)?,
                    township: r.get(2)?,
                    rule_id: r.get(3)?,
                    severity: r.get(4)?,
                    summary: r.get(5)?,
                    fired_at_ms: r.get(6)?,
                    resolved_at_ms: r.get(7)?,
                })
            })?;
            for row in rows {
                alerts.push(row?);
            }
        }
        alerts.sort_by_key(|alert| std::cmp::Reverse(alert.fired_at_ms));
        alerts.truncate(limit);
        Ok(alerts)
    }

    /// The first result stored for `principal`'s `key`, if it is younger than a day.
    pub fn stored_step(
        &self,
        principal: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<StoredStep>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT fingerprint, status, body FROM idempotent_steps
                 WHERE principal = ?1 AND key = ?2 AND at_ms >= ?3",
                params![principal, key, now_ms - IDEMPOTENCY_RETENTION_MS],
                |r| {
                    Ok(StoredStep {
                        fingerprint: r.get(0)?,
                        status: r.get(1)?,
                        body: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    /// Stores the first result of `principal`'s step sent with `key`, and forgets results
    /// older than a day.
    pub fn store_step(
        &mut self,
        principal: &str,
        key: &str,
        step: &StoredStep,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.connection.execute(
            "DELETE FROM idempotent_steps WHERE at_ms < ?1",
            [now_ms - IDEMPOTENCY_RETENTION_MS],
        )?;
        self.connection.execute(
            "INSERT INTO idempotent_steps (principal, key, fingerprint, status, body, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (principal, key) DO UPDATE SET fingerprint = excluded.fingerprint,
                status = excluded.status, body = excluded.body, at_ms = excluded.at_ms",
            params![
                principal,
                key,
                step.fingerprint,
                step.status,
                step.body,
                now_ms
            ],
        )?;
        Ok(())
    }
}
