//! SQLite storage of the registry, alerts, work orders, their events and complaints, with
//! numbered migrations.
//!
//! An order's history is its `order_events` rows. `orders.state` and the stage timestamps
//! (`dispatched_at_ms`...) are caches of what those events derive, written in the same
//! transaction as the event, so lists and reports need not replay histories. The SQL is plain
//! enough to port to PostgreSQL behind the same methods.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

mod backup;
mod campaigns;
mod city;
mod delegations;
mod households;
mod prevention;
mod registry;
mod requests;
mod roads;
mod schema;
mod scheme;
mod stock;
use serde::Serialize;
use utoipa::ToSchema;

use super::model::{OrderState, ORDER_EVENT_CREATED};
use crate::registry::{
    Device, Household, ImportSummary, KnownIds, Part, RegistryData, Team, TeamKind, Technician,
    Township, Village, VillageContact,
};
use schema::MIGRATIONS;

pub use backup::{BackupState, BackupUnitRow, NewLoan};
pub use campaigns::{CampaignRow, CoverageUnit, InspectionRow};
pub use city::{CityCursor, CityItem, CityLine};
pub use delegations::{
    DelegationFilter, DelegationRow, DelegationStatus, LedgerLine, NewDelegation,
};
pub use households::HouseholdHits;
pub use prevention::{PreventionUnit, SweepRecord};
pub use requests::{RequestFilter, RequestRow, StoredStep, IDEMPOTENCY_RETENTION_MS};
pub use scheme::{is_not_a_fault, EarlierOrder, OrderVisits, TownshipStaff};
pub(crate) use stock::{
    apply_move, available, change_reservation, end_stock_outs, record_stock_out, reservations_of,
};
pub use stock::{
    Move, MoveKind, Reservation, StockError, StockFilter, StockLine, StockMoveRow, StockOut,
    WentLow, MAX_STOCK_ROWS,
};

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

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NewOrder {
    pub episode_id: Option<String>,
    pub device_id: String,
    pub household_id: Option<String>,
    pub village_id: Option<String>,
    pub vendor_id: Option<String>,
    pub township: String,
    pub category: String,
    pub priority: String,
    /// `rule` for pre-emptive orders, else the intake channel.
    pub source: String,
    pub summary: String,
    pub created_at_ms: i64,
    pub actor: String,
    /// Opened before any complaint about it (未诉先办).
    pub pre_emptive: bool,
    pub in_warranty: Option<bool>,
}

/// An order with its derived state and stage times.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderRow {
    pub id: i64,
    pub episode_id: Option<String>,
    pub device_id: String,
    pub household_id: Option<String>,
    pub village_id: Option<String>,
    pub vendor_id: Option<String>,
    pub township: String,
    pub category: String,
    pub priority: String,
    /// `rule` (pre-emptive, from telemetry) or the intake channel of a complaint.
    pub source: String,
    pub summary: String,
    /// Event time of creation (the alert's time for rule orders), Unix ms.
    pub created_at_ms: i64,
    pub state: OrderState,
    /// Opened before any complaint about it: the proof of 未诉先办.
    pub pre_emptive: bool,
    /// Device within its 5-year warranty at creation; `None` when the device is not registered.
    pub in_warranty: Option<bool>,
    pub team_id: Option<String>,
    pub technician_id: Option<String>,
    pub dispatched_at_ms: Option<i64>,
    pub accepted_at_ms: Option<i64>,
    pub on_site_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    /// Resident's satisfaction at the callback, 1-5.
    pub satisfaction: Option<i64>,
    /// Parts used, at the unified price list, in fen.
    pub parts_cents: i64,
    /// What the resident pays, in fen.
    pub resident_pays_cents: i64,
    /// The technician found damage from misuse (resident pays even in warranty).
    pub misuse: bool,
    /// SLA warnings and escalations raised so far (bit set, see `orders::sla`).
    pub sla_flags: i64,
    /// When the clocks of the order's SLA class were restarted because the class changed after
    /// creation (a finding that became urgent, a call task that became a repair), Unix ms;
    /// `None`: they run from creation (`orders::sla`).
    pub sla_from_ms: Option<i64>,
    /// The order's SLA class, which sets its clocks (`orders::sla::class_of` of its category,
    /// priority and source).
    pub sla_class: crate::orders::sla::SlaClass,
}

/// One event in an order's history.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderEventRow {
    pub at_ms: i64,
    pub actor: String,
    pub kind: String,
    pub note: String,
}

/// Changes an event makes to the cached order columns; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrderUpdate {
    pub state: Option<OrderState>,
    pub team_id: Option<String>,
    pub technician_id: Option<String>,
    pub dispatched_at_ms: Option<i64>,
    pub accepted_at_ms: Option<i64>,
    pub on_site_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub closed_at_ms: Option<i64>,
    pub satisfaction: Option<i64>,
    pub parts_cents: Option<i64>,
    pub resident_pays_cents: Option<i64>,
    pub misuse: Option<bool>,
    /// Bits to add to `sla_flags`.
    pub sla_flags: i64,
    /// Reopening: forget the stage times after dispatch.
    pub reopen: bool,
}

/// Filter for listing orders.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub device_id: Option<String>,
    pub township: Option<String>,
    pub team_id: Option<String>,
    /// With `team_id`: the orders of the team or of this technician (a technician's own token).
    pub or_technician_id: Option<String>,
    pub state: Option<OrderState>,
    pub open_only: bool,
    pub limit: usize,
}

/// Where a device sits in the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceContext {
    pub device: Device,
    pub household: Household,
    pub village: Village,
}

/// A registered device as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredDevice {
    pub id: String,
    /// `heat_pump` or `gas_boiler`, as the registry writes it.
    pub kind: String,
    pub township: String,
    pub village: String,
    pub vulnerable: bool,
    pub household: String,
    pub site_type: crate::registry::SiteType,
}

/// Households with their edge box, and devices with their household
/// ([`Store::tenant_directory`]).
pub type TenantRows = (Vec<(String, Option<String>)>, Vec<(String, String)>);

/// A complaint as stored.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ComplaintRow {
    pub id: i64,
    pub channel: String,
    pub device_id: Option<String>,
    pub household_id: Option<String>,
    pub received_at_ms: i64,
    pub text: String,
    pub order_id: i64,
    /// The complaint found an order already open for it.
    pub linked: bool,
}

const ORDER_COLUMNS: &str = "id, episode_id, device_id, household_id, village_id, vendor_id, township, category, priority, source, summary, created_at_ms, state, pre_emptive, in_warranty, team_id, technician_id, dispatched_at_ms, accepted_at_ms, on_site_at_ms, resolved_at_ms, closed_at_ms, satisfaction, parts_cents, resident_pays_cents, misuse, sla_flags, sla_from_ms";

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

    /// Runs `f` as one transaction: every change it makes is committed together, or none
    /// (the methods it calls nest as savepoints). Used for bursts of alerts.
    /// `E` is any error a store error converts into, so a refusal in `f` (after some writes)
    /// undoes those writes too.
    pub fn batch<T, E: From<StoreError>>(
        &mut self,
        f: impl FnOnce(&mut Store) -> Result<T, E>,
    ) -> Result<T, E> {
        self.connection
            .execute_batch("SAVEPOINT batch")
            .map_err(StoreError::from)?;
        match f(self) {
            Ok(value) => {
                self.connection
                    .execute_batch("RELEASE batch")
                    .map_err(StoreError::from)?;
                Ok(value)
            }
            Err(error) => {
                let _ = self
                    .connection
                    .execute_batch("ROLLBACK TO batch; RELEASE batch");
                Err(error)
            }
        }
    }

    // ----- alerts -----

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

    /// Ends an alert episode the restored rule state does not know (stored after the last rule
    /// snapshot, then the process was killed): the rules re-evaluate the device and, if the
    /// fault is still there, fire a new episode, which joins the same order. Noted on the
    /// episode's order, if any.
    pub fn alert_lost_at_restart(
        &mut self,
        episode_id: &str,
        at_ms: i64,
    ) -> Result<bool, StoreError> {
        self.end_alert(
            episode_id,
            at_ms,
            "alert_state_lost",
            &format!("alert {episode_id} was stored after the rules' last saved state and the gateway stopped without saving; the episode is closed and the rules judge the device afresh (a fault still present fires again and joins this order)"),
        )
    }

    /// Records that an alert episode ended; notes it on the episode's order, if any.
    /// Policy: the order stays open. The fault may recur, and the technician confirms the cause.
    pub fn alert_resolved(&mut self, episode_id: &str, at_ms: i64) -> Result<bool, StoreError> {
        self.end_alert(
            episode_id,
            at_ms,
            "alert_cleared",
            &format!(
                "alert {episode_id} cleared; the order stays open until a technician resolves it"
            ),
        )
    }

    /// Ends an unresolved episode at `at_ms` and, when it did, adds the event `kind` with `note`
    /// to the episode's order, if any.
    fn end_alert(
        &mut self,
        episode_id: &str,
        at_ms: i64,
        kind: &str,
        note: &str,
    ) -> Result<bool, StoreError> {
        let tx = self.connection.savepoint()?;
        let updated = tx.execute(
            "UPDATE alerts SET resolved_at_ms = ?2 WHERE episode_id = ?1 AND resolved_at_ms IS NULL",
            params![episode_id, at_ms],
        )?;
        if updated == 1 {
            let order: Option<i64> = tx
                .query_row(
                    "SELECT id FROM orders WHERE episode_id = ?1
                     UNION SELECT order_id FROM alert_links WHERE episode_id = ?1",
                    [episode_id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(order_id) = order {
                insert_event(&tx, order_id, at_ms, "rules", kind, note)?;
            }
        }
        tx.commit()?;
        Ok(updated == 1)
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

    // ----- orders -----

    /// True when an episode already has its order (opened by it, or linked to another).
    pub fn episode_has_order(&self, episode_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT 1 FROM orders WHERE episode_id = ?1 UNION SELECT 1 FROM alert_links WHERE episode_id = ?1",
                [episode_id],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Creates an order unless one exists for the same alert episode. Returns the new order's
    /// id, or `None` when the episode already had one (exactly one order per episode). The
    /// order of a clinic or school is stored at least `high` (`sla::site_priority`), its summary
    /// then saying so.
    pub fn create_order(&mut self, order: &NewOrder) -> Result<Option<i64>, StoreError> {
        let tx = self.connection.savepoint()?;
        // A clinic's or school's order is at least `high` (`sla::site_priority`), whichever
        // path opened it (a rule, a complaint, the sweep, a campaign).
        let site: crate::registry::SiteType = match &order.household_id {
            Some(household) => tx
                .query_row(
                    "SELECT site_type FROM households WHERE id = ?1",
                    [household],
                    |r| r.get(0),
                )
                .optional()?
                .unwrap_or_default(),
            None => crate::registry::SiteType::Home,
        };
        let priority = crate::orders::sla::site_priority(site, &order.priority);
        let summary = if priority == order.priority {
            order.summary.clone()
        } else {
            format!("{} ({}: {priority})", order.summary, site.as_str())
        };
        let inserted = tx.execute(
            "INSERT OR IGNORE INTO orders (episode_id, device_id, household_id, village_id, vendor_id, township, category,
                priority, source, summary, created_at_ms, state, pre_emptive, in_warranty)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                order.episode_id,
                order.device_id,
                order.household_id,
                order.village_id,
                order.vendor_id,
                order.township,
                order.category,
                priority,
                order.source,
                summary,
                order.created_at_ms,
                OrderState::Created.as_str(),
                order.pre_emptive,
                order.in_warranty,
            ],
        )?;
        if inserted == 0 {
            return Ok(None);
        }
        let id = tx.last_insert_rowid();
        insert_event(
            &tx,
            id,
            order.created_at_ms,
            &order.actor,
            ORDER_EVENT_CREATED,
            &summary,
        )?;
        tx.commit()?;
        Ok(Some(id))
    }

    /// Links an alert episode to an order that is already open for the same device, instead of
    /// opening a second one. Returns false if the episode already had an order.
    pub fn link_episode(
        &mut self,
        episode_id: &str,
        order_id: i64,
        at_ms: i64,
        summary: &str,
    ) -> Result<bool, StoreError> {
        if self.episode_has_order(episode_id)? {
            return Ok(false);
        }
        let tx = self.connection.savepoint()?;
        tx.execute(
            "INSERT INTO alert_links (episode_id, order_id) VALUES (?1, ?2)",
            params![episode_id, order_id],
        )?;
        insert_event(&tx, order_id, at_ms, "rules", "alert_linked", summary)?;
        tx.commit()?;
        Ok(true)
    }

    /// The open order of a device that still awaits repair, if any (a backup unit's loan order
    /// is not one: an alert or a complaint joins the repair, never the loan).
    pub fn open_order_for_device(&self, device_id: &str) -> Result<Option<OrderRow>, StoreError> {
        self.one_order(
            "WHERE device_id = ?1 AND state IN ('created', 'dispatched', 'accepted', 'on_site') AND category != 'backup_loan' ORDER BY id LIMIT 1",
            device_id,
        )
    }

    /// The open order of any device of a household, if any (a backup unit's loan order is not
    /// one: a complaint or an alert joins the repair, never the loan).
    pub fn open_order_for_household(
        &self,
        household_id: &str,
    ) -> Result<Option<OrderRow>, StoreError> {
        self.one_order(
            "WHERE household_id = ?1 AND state IN ('created', 'dispatched', 'accepted', 'on_site') AND category != 'backup_loan' ORDER BY id LIMIT 1",
            household_id,
        )
    }

    fn one_order(&self, clause: &str, key: &str) -> Result<Option<OrderRow>, StoreError> {
        let row = self
            .connection
            .query_row(
                &format!("SELECT {ORDER_COLUMNS} FROM orders {clause}"),
                [key],
                order_row,
            )
            .optional()?;
        row.transpose()
    }

    /// Appends an event and updates the cached columns in one transaction.
    pub fn append_event(
        &mut self,
        order_id: i64,
        at_ms: i64,
        actor: &str,
        kind: &str,
        note: &str,
        update: &OrderUpdate,
    ) -> Result<(), StoreError> {
        let tx = self.connection.savepoint()?;
        insert_event(&tx, order_id, at_ms, actor, kind, note)?;
        if update.reopen {
            tx.execute(
                "UPDATE orders SET accepted_at_ms = NULL, on_site_at_ms = NULL, resolved_at_ms = NULL WHERE id = ?1",
                [order_id],
            )?;
        }
        tx.execute(
            "UPDATE orders SET
                state = COALESCE(?2, state), team_id = COALESCE(?3, team_id), technician_id = COALESCE(?4, technician_id),
                dispatched_at_ms = COALESCE(?5, dispatched_at_ms), accepted_at_ms = COALESCE(?6, accepted_at_ms),
                on_site_at_ms = COALESCE(?7, on_site_at_ms), resolved_at_ms = COALESCE(?8, resolved_at_ms),
                closed_at_ms = COALESCE(?9, closed_at_ms), satisfaction = COALESCE(?10, satisfaction),
                parts_cents = COALESCE(?11, parts_cents), resident_pays_cents = COALESCE(?12, resident_pays_cents),
                misuse = COALESCE(?13, misuse), sla_flags = sla_flags | ?14
             WHERE id = ?1",
            params![
                order_id,
                update.state.map(OrderState::as_str),
                update.team_id,
                update.technician_id,
                update.dispatched_at_ms,
                update.accepted_at_ms,
                update.on_site_at_ms,
                update.resolved_at_ms,
                update.closed_at_ms,
                update.satisfaction,
                update.parts_cents,
                update.resident_pays_cents,
                update.misuse,
                update.sla_flags,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Records the parts used on an order at their unified prices.
    pub fn add_parts(&mut self, order_id: i64, parts: &[(Part, i64)]) -> Result<(), StoreError> {
        let tx = self.connection.savepoint()?;
        for (part, quantity) in parts {
            tx.execute(
                "INSERT INTO order_parts (order_id, part_code, quantity, price_cents) VALUES (?1, ?2, ?3, ?4)",
                params![order_id, part.code, quantity, part.price_cents],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Parts used on an order: (code, quantity, unit price in fen).
    pub fn order_parts(&self, order_id: i64) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT part_code, quantity, price_cents FROM order_parts WHERE order_id = ?1 ORDER BY rowid")?;
        let rows = statement.query_map([order_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Stores a complaint.
    pub fn add_complaint(&mut self, complaint: &ComplaintRow) -> Result<i64, StoreError> {
        let tx = self.connection.savepoint()?;
        tx.execute(
            "INSERT INTO complaints (channel, device_id, household_id, received_at_ms, text, order_id, linked)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                complaint.channel,
                complaint.device_id,
                complaint.household_id,
                complaint.received_at_ms,
                complaint.text,
                complaint.order_id,
                complaint.linked
            ],
        )?;
        let id = tx.last_insert_rowid();
        if complaint.linked {
            insert_event(
                &tx,
                complaint.order_id,
                complaint.received_at_ms,
                &format!("complaint:{}", complaint.channel),
                "complaint_linked",
                &complaint.text,
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    /// Complaints about an order.
    pub fn complaints_of(&self, order_id: i64) -> Result<Vec<ComplaintRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id, channel, device_id, household_id, received_at_ms, text, order_id, linked
             FROM complaints WHERE order_id = ?1 ORDER BY id",
        )?;
        let rows = statement.query_map([order_id], |r| {
            Ok(ComplaintRow {
                id: r.get(0)?,
                channel: r.get(1)?,
                device_id: r.get(2)?,
                household_id: r.get(3)?,
                received_at_ms: r.get(4)?,
                text: r.get(5)?,
                order_id: r.get(6)?,
                linked: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Orders matching `filter`, newest first.
    pub fn orders(&self, filter: &OrderFilter) -> Result<Vec<OrderRow>, StoreError> {
        let limit = if filter.limit == 0 { 500 } else { filter.limit } as i64;
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders
             WHERE (?1 IS NULL OR device_id = ?1) AND (?2 IS NULL OR township = ?2) AND (?3 IS NULL OR state = ?3)
               AND (?4 IS NULL OR team_id = ?4 OR (?7 IS NOT NULL AND technician_id = ?7))
               AND (?5 = 0 OR state NOT IN ('closed', 'cancelled', 'merged'))
             ORDER BY created_at_ms DESC, id DESC LIMIT ?6"
        ))?;
        let rows = statement.query_map(
            params![
                filter.device_id,
                filter.township,
                filter.state.map(OrderState::as_str),
                filter.team_id,
                i64::from(filter.open_only),
                limit,
                filter.or_technician_id,
            ],
            order_row,
        )?;
        let mut orders = Vec::new();
        for row in rows {
            orders.push(row??);
        }
        Ok(orders)
    }

    /// Orders created in `[from_ms, to_ms)`, oldest first (reports).
    pub fn orders_created_between(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<OrderRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE created_at_ms >= ?1 AND created_at_ms < ?2 ORDER BY created_at_ms, id"
        ))?;
        let rows = statement.query_map(params![from_ms, to_ms], order_row)?;
        let mut orders = Vec::new();
        for row in rows {
            orders.push(row??);
        }
        Ok(orders)
    }

    /// One order, without its events.
    pub fn order_row(&self, id: i64) -> Result<Option<OrderRow>, StoreError> {
        let row = self
            .connection
            .query_row(
                &format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?1"),
                [id],
                order_row,
            )
            .optional()?;
        row.transpose()
    }

    /// One order with its events in order.
    pub fn order(&self, id: i64) -> Result<Option<(OrderRow, Vec<OrderEventRow>)>, StoreError> {
        let Some(order) = self.order_row(id)? else {
            return Ok(None);
        };
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

    /// The time of an order's latest event (by event time, not by insertion), if it has any.
    pub fn last_event_ms(&self, order_id: i64) -> Result<Option<i64>, StoreError> {
        Ok(self.connection.query_row(
            "SELECT MAX(at_ms) FROM order_events WHERE order_id = ?1",
            [order_id],
            |r| r.get(0),
        )?)
    }

    /// The kinds of an order's events, oldest first.
    pub fn event_kinds(&self, order_id: i64) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT kind FROM order_events WHERE order_id = ?1 ORDER BY id")?;
        let rows = statement.query_map([order_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
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

    /// Whether a value is saved under `key` (without reading it).
    pub fn contains(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM kv WHERE key = ?1)",
            [key],
            |r| r.get(0),
        )?)
    }

    /// Deletes the value saved under `key`; whether there was one.
    pub fn delete(&mut self, key: &str) -> Result<bool, StoreError> {
        Ok(self
            .connection
            .execute("DELETE FROM kv WHERE key = ?1", [key])?
            > 0)
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

fn insert_event(
    tx: &Connection,
    order_id: i64,
    at_ms: i64,
    actor: &str,
    kind: &str,
    note: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO order_events (order_id, at_ms, actor, kind, note) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![order_id, at_ms, actor, kind, note],
    )?;
    Ok(())
}

fn order_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<OrderRow, StoreError>> {
    let state: String = r.get(12)?;
    let Some(parsed) = OrderState::parse(&state) else {
        let id: i64 = r.get(0)?;
        return Ok(Err(StoreError::Corrupt(format!(
            "order {id} has unknown state {state:?}"
        ))));
    };
    let (category, priority, source): (String, String, String) = (r.get(7)?, r.get(8)?, r.get(9)?);
    let sla_class = crate::orders::sla::class_of(&category, &priority, &source);
    Ok(Ok(OrderRow {
        id: r.get(0)?,
        episode_id: r.get(1)?,
        device_id: r.get(2)?,
        household_id: r.get(3)?,
        village_id: r.get(4)?,
        vendor_id: r.get(5)?,
        township: r.get(6)?,
        category,
        priority,
        source,
        summary: r.get(10)?,
        created_at_ms: r.get(11)?,
        state: parsed,
        pre_emptive: r.get(13)?,
        in_warranty: r.get(14)?,
        team_id: r.get(15)?,
        technician_id: r.get(16)?,
        dispatched_at_ms: r.get(17)?,
        accepted_at_ms: r.get(18)?,
        on_site_at_ms: r.get(19)?,
        resolved_at_ms: r.get(20)?,
        closed_at_ms: r.get(21)?,
        satisfaction: r.get(22)?,
        parts_cents: r.get(23)?,
        resident_pays_cents: r.get(24)?,
        misuse: r.get(25)?,
        sla_flags: r.get(26)?,
        sla_from_ms: r.get(27)?,
        sla_class,
    }))
}

#[cfg(test)]
mod tests;
