//! SQLite storage of alerts, work orders and their events, with numbered migrations.
//!
//! An order's history is its `order_events` rows; `orders.state` is a cache of the state those
//! events derive, written in the same transaction as the event. The SQL is plain enough to port
//! to PostgreSQL behind the same methods.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::model::{OrderState, ORDER_EVENT_CREATED};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the database folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// Migrations, applied in order once each; never edit a released one, add a new one.
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE alerts (
    episode_id      TEXT PRIMARY KEY,
    device_id       TEXT NOT NULL,
    township        TEXT NOT NULL,
    rule_id         TEXT NOT NULL,
    severity        TEXT NOT NULL,
    summary         TEXT NOT NULL,
    fired_at_ms     INTEGER NOT NULL,
    resolved_at_ms  INTEGER
);
CREATE INDEX alerts_active ON alerts (resolved_at_ms, fired_at_ms);
CREATE TABLE orders (
    id              INTEGER PRIMARY KEY,
    episode_id      TEXT UNIQUE REFERENCES alerts (episode_id),
    device_id       TEXT NOT NULL,
    township        TEXT NOT NULL,
    category        TEXT NOT NULL,
    priority        TEXT NOT NULL,
    source          TEXT NOT NULL,
    summary         TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    state           TEXT NOT NULL
);
CREATE INDEX orders_device ON orders (device_id, state);
CREATE TABLE order_events (
    id              INTEGER PRIMARY KEY,
    order_id        INTEGER NOT NULL REFERENCES orders (id),
    at_ms           INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    kind            TEXT NOT NULL,
    note            TEXT NOT NULL
);
CREATE INDEX order_events_order ON order_events (order_id, id);
CREATE TABLE kv (
    key             TEXT PRIMARY KEY,
    value           TEXT NOT NULL
);
"#];

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRow {
    pub episode_id: String,
    pub device_id: String,
    pub township: String,
    pub rule_id: String,
    pub severity: String,
    pub summary: String,
    pub fired_at_ms: i64,
    pub resolved_at_ms: Option<i64>,
}

/// A new order.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder {
    pub episode_id: Option<String>,
    pub device_id: String,
    pub township: String,
    pub category: String,
    pub priority: String,
    /// `rule` for pre-emptive orders, else the intake channel.
    pub source: String,
    pub summary: String,
    pub created_at_ms: i64,
    pub actor: String,
}

/// An order with its derived state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRow {
    pub id: i64,
    pub episode_id: Option<String>,
    pub device_id: String,
    pub township: String,
    pub category: String,
    pub priority: String,
    pub source: String,
    pub summary: String,
    pub created_at_ms: i64,
    pub state: OrderState,
}

/// One event in an order's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderEventRow {
    pub at_ms: i64,
    pub actor: String,
    pub kind: String,
    pub note: String,
}

/// Filter for listing orders.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub device_id: Option<String>,
    pub township: Option<String>,
    pub state: Option<OrderState>,
    pub limit: usize,
}

/// The database.
pub struct Store {
    connection: Connection,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: parent.display().to_string(),
                source,
            })?;
        }
        Self::from_connection(Connection::open(path)?)
    }

    /// An in-memory database (tests, benchmarks).
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut connection: Connection) -> Result<Store, StoreError> {
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        let current: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            let version = index as i64 + 1;
            if version > current {
                let tx = connection.transaction()?;
                tx.execute_batch(migration)?;
                tx.pragma_update(None, "user_version", version)?;
                tx.commit()?;
                tracing::info!(version, "database migrated");
            }
        }
        Ok(Store { connection })
    }

    /// Records a firing alert. Idempotent: the same episode twice is one alert.
    pub fn alert_fired(&mut self, alert: &AlertRow) -> Result<bool, StoreError> {
        let inserted = self.connection.execute(
            "INSERT OR IGNORE INTO alerts (episode_id, device_id, township, rule_id, severity, summary, fired_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                alert.episode_id,
                alert.device_id,
                alert.township,
                alert.rule_id,
                alert.severity,
                alert.summary,
                alert.fired_at_ms
            ],
        )?;
        Ok(inserted == 1)
    }

    /// Records that an alert episode ended; notes it on the episode's order, if any.
    /// Policy: the order stays open. The fault may recur, and the technician confirms the cause.
    pub fn alert_resolved(&mut self, episode_id: &str, at_ms: i64) -> Result<bool, StoreError> {
        let tx = self.connection.transaction()?;
        let updated = tx.execute(
            "UPDATE alerts SET resolved_at_ms = ?2 WHERE episode_id = ?1 AND resolved_at_ms IS NULL",
            params![episode_id, at_ms],
        )?;
        if updated == 1 {
            let order: Option<i64> = tx
                .query_row(
                    "SELECT id FROM orders WHERE episode_id = ?1",
                    [episode_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(order_id) = order {
                tx.execute(
                    "INSERT INTO order_events (order_id, at_ms, actor, kind, note) VALUES (?1, ?2, 'rules', 'alert_cleared', 'the alert behind this order cleared; the order stays open until a technician resolves it')",
                    params![order_id, at_ms],
                )?;
            }
        }
        tx.commit()?;
        Ok(updated == 1)
    }

    /// Creates an order unless one exists for the same alert episode. Returns the new order's
    /// id, or `None` when the episode already had one (exactly one order per episode).
    pub fn create_order(&mut self, order: &NewOrder) -> Result<Option<i64>, StoreError> {
        let tx = self.connection.transaction()?;
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO orders (episode_id, device_id, township, category, priority, source, summary, created_at_ms, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                order.episode_id,
                order.device_id,
                order.township,
                order.category,
                order.priority,
                order.source,
                order.summary,
                order.created_at_ms,
                OrderState::Created.as_str()
            ],
        )?;
        if inserted == 0 {
            return Ok(None);
        }
        let id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO order_events (order_id, at_ms, actor, kind, note) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id, order.created_at_ms, order.actor, ORDER_EVENT_CREATED, order.summary],
        )?;
        tx.commit()?;
        Ok(Some(id))
    }

    /// Orders matching `filter`, newest first.
    pub fn orders(&self, filter: &OrderFilter) -> Result<Vec<OrderRow>, StoreError> {
        let limit = if filter.limit == 0 { 500 } else { filter.limit } as i64;
        let mut statement = self.connection.prepare_cached(
            "SELECT id, episode_id, device_id, township, category, priority, source, summary, created_at_ms, state
             FROM orders
             WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR township = ?2) AND (?3 IS NULL OR state = ?3)
             ORDER BY created_at_ms DESC, id DESC LIMIT ?4",
        )?;
        let rows = statement.query_map(
            params![
                filter.device_id,
                filter.township,
                filter.state.map(OrderState::as_str),
                limit
            ],
            order_row,
        )?;
        let mut orders = Vec::new();
        for row in rows {
            orders.push(row??);
        }
        Ok(orders)
    }

    /// One order with its events in order.
    pub fn order(&self, id: i64) -> Result<Option<(OrderRow, Vec<OrderEventRow>)>, StoreError> {
        let order = self
            .connection
            .query_row(
                "SELECT id, episode_id, device_id, township, category, priority, source, summary, created_at_ms, state
                 FROM orders WHERE id = ?1",
                [id],
                order_row,
            )
            .optional()?;
        let Some(order) = order else {
            return Ok(None);
        };
        let order = order?;
        let mut statement = self.connection.prepare_cached(
            "SELECT at_ms, actor, kind, note FROM order_events WHERE order_id = ?1 ORDER BY id",
        )?;
        let events = statement
            .query_map([id], |r| {
                Ok(OrderEventRow {
                    at_ms: r.get(0)?,
                    actor: r.get(1)?,
                    kind: r.get(2)?,
                    note: r.get(3)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some((order, events)))
    }

    /// Alerts, newest first; only unresolved ones when `active_only`.
    pub fn alerts(&self, active_only: bool, limit: usize) -> Result<Vec<AlertRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT episode_id, device_id, township, rule_id, severity, summary, fired_at_ms, resolved_at_ms
             FROM alerts WHERE (?1 = 0 OR resolved_at_ms IS NULL)
             ORDER BY fired_at_ms DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(params![i64::from(active_only), limit as i64], |r| {
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
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Saves a value under `key` (rule-engine snapshot and similar).
    pub fn put(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.connection.execute(
            "INSERT INTO kv (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Reads the value saved under `key`.
    pub fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Number of orders per state.
    pub fn order_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT state, COUNT(*) FROM orders GROUP BY state ORDER BY state")?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }
}

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<OrderRow, StoreError>> {
    let state: String = r.get(9)?;
    let row = OrderRow {
        id: r.get(0)?,
        episode_id: r.get(1)?,
        device_id: r.get(2)?,
        township: r.get(3)?,
        category: r.get(4)?,
        priority: r.get(5)?,
        source: r.get(6)?,
        summary: r.get(7)?,
        created_at_ms: r.get(8)?,
        state: OrderState::Created,
    };
    Ok(match OrderState::parse(&state) {
        Some(state) => Ok(OrderRow { state, ..row }),
        None => Err(StoreError::Corrupt(format!(
            "order {} has unknown state {state:?}",
            row.id
        ))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(episode: &str) -> AlertRow {
        AlertRow {
            episode_id: episode.into(),
            device_id: "yanqing-dongguan-0001".into(),
            township: "yanqing".into(),
            rule_id: "device_fault".into(),
            severity: "major".into(),
            summary: "fault 1 (water_flow)".into(),
            fired_at_ms: 1_000,
            resolved_at_ms: None,
        }
    }

    fn order(episode: &str) -> NewOrder {
        NewOrder {
            episode_id: Some(episode.into()),
            device_id: "yanqing-dongguan-0001".into(),
            township: "yanqing".into(),
            category: "repair".into(),
            priority: "high".into(),
            source: "rule".into(),
            summary: "fault 1 (water_flow)".into(),
            created_at_ms: 1_000,
            actor: "rules".into(),
        }
    }

    #[test]
    fn one_order_per_episode() {
        let mut store = Store::in_memory().expect("store");
        assert!(store.alert_fired(&alert("e1")).expect("insert"));
        assert!(!store.alert_fired(&alert("e1")).expect("insert again"));
        let first = store.create_order(&order("e1")).expect("create");
        assert!(first.is_some());
        assert_eq!(
            store.create_order(&order("e1")).expect("create again"),
            None
        );
        let orders = store.orders(&OrderFilter::default()).expect("list");
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0].state, OrderState::Created);
    }

    #[test]
    fn resolving_an_alert_notes_it_on_the_order() {
        let mut store = Store::in_memory().expect("store");
        store.alert_fired(&alert("e1")).expect("insert");
        let id = store
            .create_order(&order("e1"))
            .expect("create")
            .expect("new");
        assert!(store.alert_resolved("e1", 2_000).expect("resolve"));
        assert!(!store.alert_resolved("e1", 3_000).expect("resolve twice"));
        let (row, events) = store.order(id).expect("read").expect("exists");
        assert_eq!(row.state, OrderState::Created);
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["created", "alert_cleared"]);
        assert!(store.alerts(true, 10).expect("active").is_empty());
        assert_eq!(
            store.alerts(false, 10).expect("all")[0].resolved_at_ms,
            Some(2_000)
        );
    }

    #[test]
    fn data_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("gateway-store-{}", std::process::id()));
        let path = dir.join("orders.sqlite");
        let _ = std::fs::remove_file(&path);
        {
            let mut store = Store::open(&path).expect("open");
            store.alert_fired(&alert("e1")).expect("insert");
            store.create_order(&order("e1")).expect("create");
            store.put("snapshot", "{}").expect("put");
        }
        let store = Store::open(&path).expect("reopen");
        assert_eq!(
            store.orders(&OrderFilter::default()).expect("list").len(),
            1
        );
        assert_eq!(store.get("snapshot").expect("get").as_deref(), Some("{}"));
    }
}
