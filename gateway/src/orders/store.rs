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
use serde::Serialize;
use utoipa::ToSchema;

use super::model::{OrderState, ORDER_EVENT_CREATED};
use crate::registry::{
    Device, Household, ImportSummary, KnownIds, Part, RegistryData, Team, TeamKind, Technician,
    Township, Village,
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

/// Migrations, applied in order once each; never edit a released one, add a new one.
const MIGRATIONS: &[&str] = &[
    r#"
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
"#,
    r#"
CREATE TABLE townships (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE villages (
    id TEXT PRIMARY KEY, township_id TEXT NOT NULL REFERENCES townships (id), name TEXT NOT NULL
);
CREATE TABLE vendors (id TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE TABLE households (
    id TEXT PRIMARY KEY, village_id TEXT NOT NULL REFERENCES villages (id), address TEXT NOT NULL,
    resident TEXT NOT NULL, phone TEXT NOT NULL, vulnerable INTEGER NOT NULL
);
CREATE TABLE devices (
    id TEXT PRIMARY KEY, household_id TEXT NOT NULL REFERENCES households (id), kind TEXT NOT NULL,
    brand TEXT NOT NULL, model TEXT NOT NULL, vendor_id TEXT NOT NULL REFERENCES vendors (id),
    installed_on TEXT NOT NULL, warranty_until TEXT NOT NULL
);
CREATE INDEX devices_household ON devices (household_id);
CREATE TABLE teams (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
    vendor_id TEXT REFERENCES vendors (id), phone TEXT NOT NULL
);
CREATE TABLE team_zones (
    team_id TEXT NOT NULL REFERENCES teams (id), township_id TEXT NOT NULL REFERENCES townships (id),
    PRIMARY KEY (team_id, township_id)
);
CREATE TABLE technicians (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL REFERENCES teams (id), name TEXT NOT NULL,
    phone TEXT NOT NULL, home_village_id TEXT REFERENCES villages (id)
);
CREATE TABLE village_contacts (
    id TEXT PRIMARY KEY, village_id TEXT NOT NULL REFERENCES villages (id), role TEXT NOT NULL,
    name TEXT NOT NULL, phone TEXT NOT NULL
);
CREATE TABLE parts (code TEXT PRIMARY KEY, name TEXT NOT NULL, price_cents INTEGER NOT NULL);

ALTER TABLE orders ADD COLUMN household_id TEXT;
ALTER TABLE orders ADD COLUMN village_id TEXT;
ALTER TABLE orders ADD COLUMN vendor_id TEXT;
ALTER TABLE orders ADD COLUMN pre_emptive INTEGER NOT NULL DEFAULT 1;
ALTER TABLE orders ADD COLUMN in_warranty INTEGER;
ALTER TABLE orders ADD COLUMN team_id TEXT;
ALTER TABLE orders ADD COLUMN technician_id TEXT;
ALTER TABLE orders ADD COLUMN dispatched_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN accepted_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN on_site_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN resolved_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN closed_at_ms INTEGER;
ALTER TABLE orders ADD COLUMN satisfaction INTEGER;
ALTER TABLE orders ADD COLUMN parts_cents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN resident_pays_cents INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN misuse INTEGER NOT NULL DEFAULT 0;
ALTER TABLE orders ADD COLUMN sla_flags INTEGER NOT NULL DEFAULT 0;
CREATE INDEX orders_created ON orders (created_at_ms);
CREATE INDEX orders_team ON orders (team_id, state);
CREATE INDEX orders_household ON orders (household_id, state);

CREATE TABLE alert_links (
    episode_id TEXT PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders (id)
);
CREATE TABLE order_parts (
    order_id INTEGER NOT NULL REFERENCES orders (id), part_code TEXT NOT NULL,
    quantity INTEGER NOT NULL, price_cents INTEGER NOT NULL
);
CREATE TABLE complaints (
    id INTEGER PRIMARY KEY, channel TEXT NOT NULL, device_id TEXT, household_id TEXT,
    received_at_ms INTEGER NOT NULL, text TEXT NOT NULL,
    order_id INTEGER NOT NULL REFERENCES orders (id), linked INTEGER NOT NULL
);
CREATE INDEX complaints_order ON complaints (order_id);
"#,
    r#"
CREATE INDEX orders_technician ON orders (technician_id, state);
CREATE INDEX orders_episode_links ON alert_links (order_id);
"#,
    r#"
ALTER TABLE households ADD COLUMN edge_box TEXT;
CREATE UNIQUE INDEX households_edge_box ON households (edge_box);
"#,
];

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

/// A registered device as the rules see it: (id, kind, township, village, vulnerable, household).
pub type RegisteredDevice = (String, String, String, String, bool, String);

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

const ORDER_COLUMNS: &str = "id, episode_id, device_id, household_id, village_id, vendor_id, township, category, priority, source, summary, created_at_ms, state, pre_emptive, in_warranty, team_id, technician_id, dispatched_at_ms, accepted_at_ms, on_site_at_ms, resolved_at_ms, closed_at_ms, satisfaction, parts_cents, resident_pays_cents, misuse, sla_flags";

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

    // ----- registry -----

    /// Ids already stored, for checking an import's references.
    pub fn known_ids(&self) -> Result<KnownIds, StoreError> {
        let ids = |table: &str| -> Result<HashSet<String>, StoreError> {
            let mut statement = self
                .connection
                .prepare(&format!("SELECT id FROM {table}"))?;
            let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        Ok(KnownIds {
            townships: ids("townships")?,
            villages: ids("villages")?,
            vendors: ids("vendors")?,
            households: ids("households")?,
            teams: ids("teams")?,
        })
    }

    /// Stores a parsed import in one transaction: every row or none. Rows with an id that
    /// exists already replace it.
    pub fn import_registry(&mut self, data: &RegistryData) -> Result<ImportSummary, StoreError> {
        let tx = self.connection.savepoint()?;
        for t in &data.townships {
            tx.execute(
                "INSERT INTO townships (id, name) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                params![t.id, t.name],
            )?;
        }
        for v in &data.villages {
            tx.execute(
                "INSERT INTO villages (id, township_id, name) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET township_id = excluded.township_id, name = excluded.name",
                params![v.id, v.township_id, v.name],
            )?;
        }
        for v in &data.vendors {
            tx.execute(
                "INSERT INTO vendors (id, name) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET name = excluded.name",
                params![v.id, v.name],
            )?;
        }
        for h in &data.households {
            tx.execute(
                "INSERT INTO households (id, village_id, address, resident, phone, vulnerable, edge_box)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (id) DO UPDATE SET village_id = excluded.village_id, address = excluded.address,
                 resident = excluded.resident, phone = excluded.phone, vulnerable = excluded.vulnerable,
                 edge_box = excluded.edge_box",
                params![h.id, h.village_id, h.address, h.resident, h.phone, h.vulnerable, h.edge_box],
            )?;
        }
        for d in &data.devices {
            tx.execute(
                "INSERT INTO devices (id, household_id, kind, brand, model, vendor_id, installed_on, warranty_until)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET household_id = excluded.household_id, kind = excluded.kind,
                 brand = excluded.brand, model = excluded.model, vendor_id = excluded.vendor_id,
                 installed_on = excluded.installed_on, warranty_until = excluded.warranty_until",
                params![d.id, d.household_id, d.kind, d.brand, d.model, d.vendor_id, d.installed_on, d.warranty_until],
            )?;
        }
        for t in &data.teams {
            tx.execute(
                "INSERT INTO teams (id, name, kind, vendor_id, phone) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind,
                 vendor_id = excluded.vendor_id, phone = excluded.phone",
                params![t.id, t.name, t.kind.as_str(), t.vendor_id, t.phone],
            )?;
            tx.execute("DELETE FROM team_zones WHERE team_id = ?1", [&t.id])?;
            for township in &t.townships {
                tx.execute(
                    "INSERT INTO team_zones (team_id, township_id) VALUES (?1, ?2)",
                    params![t.id, township],
                )?;
            }
        }
        for t in &data.technicians {
            tx.execute(
                "INSERT INTO technicians (id, team_id, name, phone, home_village_id) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET team_id = excluded.team_id, name = excluded.name,
                 phone = excluded.phone, home_village_id = excluded.home_village_id",
                params![t.id, t.team_id, t.name, t.phone, t.home_village_id],
            )?;
        }
        for c in &data.contacts {
            tx.execute(
                "INSERT INTO village_contacts (id, village_id, role, name, phone) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET village_id = excluded.village_id, role = excluded.role,
                 name = excluded.name, phone = excluded.phone",
                params![c.id, c.village_id, c.role, c.name, c.phone],
            )?;
        }
        for p in &data.parts {
            tx.execute(
                "INSERT INTO parts (code, name, price_cents) VALUES (?1, ?2, ?3)
                 ON CONFLICT (code) DO UPDATE SET name = excluded.name, price_cents = excluded.price_cents",
                params![p.code, p.name, p.price_cents],
            )?;
        }
        tx.commit()?;
        Ok(ImportSummary {
            townships: data.townships.len(),
            villages: data.villages.len(),
            vendors: data.vendors.len(),
            households: data.households.len(),
            devices: data.devices.len(),
            teams: data.teams.len(),
            technicians: data.technicians.len(),
            contacts: data.contacts.len(),
            parts: data.parts.len(),
        })
    }

    /// The registry entries around a device.
    pub fn device_context(&self, device_id: &str) -> Result<Option<DeviceContext>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT d.id, d.household_id, d.kind, d.brand, d.model, d.vendor_id, d.installed_on, d.warranty_until,
                        h.village_id, h.address, h.resident, h.phone, h.vulnerable, v.township_id, v.name,
                        h.edge_box
                 FROM devices d JOIN households h ON h.id = d.household_id JOIN villages v ON v.id = h.village_id
                 WHERE d.id = ?1",
                [device_id],
                |r| {
                    Ok(DeviceContext {
                        device: Device {
                            id: r.get(0)?,
                            household_id: r.get(1)?,
                            kind: r.get(2)?,
                            brand: r.get(3)?,
                            model: r.get(4)?,
                            vendor_id: r.get(5)?,
                            installed_on: r.get(6)?,
                            warranty_until: r.get(7)?,
                        },
                        household: Household {
                            id: r.get(1)?,
                            village_id: r.get(8)?,
                            address: r.get(9)?,
                            resident: r.get(10)?,
                            phone: r.get(11)?,
                            vulnerable: r.get(12)?,
                            edge_box: r.get(15)?,
                        },
                        village: Village {
                            id: r.get(8)?,
                            township_id: r.get(13)?,
                            name: r.get(14)?,
                        },
                    })
                },
            )
            .optional()?)
    }

    /// Every registered device with what the rules need: (id, kind, township, village, vulnerable).
    pub fn registered_devices(&self) -> Result<Vec<RegisteredDevice>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT d.id, d.kind, v.township_id, v.id, h.vulnerable, h.id
             FROM devices d JOIN households h ON h.id = d.household_id JOIN villages v ON v.id = h.village_id
             ORDER BY d.id",
        )?;
        let rows = statement.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What the tenant check of ingest needs: every household with its edge box (`None`: the
    /// box's id is the household's id), and every device with its household.
    pub fn tenant_directory(&self) -> Result<TenantRows, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT id, edge_box FROM households")?;
        let households = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut statement = self
            .connection
            .prepare("SELECT id, household_id FROM devices")?;
        let devices = statement
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        Ok((households, devices))
    }

    /// The order opened by, or linked to, an alert episode.
    pub fn order_of_episode(&self, episode_id: &str) -> Result<Option<OrderRow>, StoreError> {
        let id: Option<i64> = self
            .connection
            .query_row(
                "SELECT id FROM orders WHERE episode_id = ?1 UNION SELECT order_id FROM alert_links WHERE episode_id = ?1",
                [episode_id],
                |r| r.get(0),
            )
            .optional()?;
        match id {
            Some(id) => self.order_row(id),
            None => Ok(None),
        }
    }

    /// Raises an order's priority.
    pub fn set_priority(&mut self, order_id: i64, priority: &str) -> Result<(), StoreError> {
        self.connection.execute(
            "UPDATE orders SET priority = ?2 WHERE id = ?1",
            params![order_id, priority],
        )?;
        Ok(())
    }

    /// The township of a household (through its village).
    pub fn township_of_household(&self, household_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT v.township_id FROM households h JOIN villages v ON v.id = h.village_id WHERE h.id = ?1",
                [household_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// A household's first registered device (complaints name a household).
    pub fn device_of_household(&self, household_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT id FROM devices WHERE household_id = ?1 ORDER BY id LIMIT 1",
                [household_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Teams of `kind` whose zone includes `township` (and of `vendor`, when given).
    pub fn teams_covering(
        &self,
        township: &str,
        kind: TeamKind,
        vendor: Option<&str>,
    ) -> Result<Vec<Team>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT t.id FROM teams t JOIN team_zones z ON z.team_id = t.id
             WHERE z.township_id = ?1 AND t.kind = ?2 AND (?3 IS NULL OR t.vendor_id = ?3) ORDER BY t.id",
        )?;
        let ids: Vec<String> = statement
            .query_map(params![township, kind.as_str(), vendor], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut teams = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(team) = self.team(&id)? {
                teams.push(team);
            }
        }
        Ok(teams)
    }

    /// One team with its zone.
    pub fn team(&self, id: &str) -> Result<Option<Team>, StoreError> {
        let row = self
            .connection
            .query_row(
                "SELECT id, name, kind, vendor_id, phone FROM teams WHERE id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, name, kind, vendor_id, phone)) = row else {
            return Ok(None);
        };
        let kind = TeamKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("team {id} has kind {kind:?}")))?;
        let mut statement = self.connection.prepare_cached(
            "SELECT township_id FROM team_zones WHERE team_id = ?1 ORDER BY township_id",
        )?;
        let townships = statement
            .query_map([&id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        Ok(Some(Team {
            id,
            name,
            kind,
            vendor_id,
            phone,
            townships,
        }))
    }

    /// Every team.
    pub fn teams(&self) -> Result<Vec<Team>, StoreError> {
        let ids: Vec<String> = self
            .connection
            .prepare("SELECT id FROM teams ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut teams = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(team) = self.team(&id)? {
                teams.push(team);
            }
        }
        Ok(teams)
    }

    /// A team's technicians with their number of open orders.
    pub fn technician_loads(&self, team_id: &str) -> Result<Vec<(Technician, i64)>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT t.id, t.team_id, t.name, t.phone, t.home_village_id,
                    (SELECT COUNT(*) FROM orders o WHERE o.technician_id = t.id
                       AND o.state IN ('dispatched', 'accepted', 'on_site'))
             FROM technicians t WHERE t.team_id = ?1 ORDER BY t.id",
        )?;
        let rows = statement.query_map([team_id], |r| {
            Ok((
                Technician {
                    id: r.get(0)?,
                    team_id: r.get(1)?,
                    name: r.get(2)?,
                    phone: r.get(3)?,
                    home_village_id: r.get(4)?,
                },
                r.get(5)?,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The township of a village.
    pub fn township_of_village(&self, village_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT township_id FROM villages WHERE id = ?1",
                [village_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn townships(&self) -> Result<Vec<Township>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT id, name FROM townships ORDER BY id")?;
        let rows = statement.query_map([], |r| {
            Ok(Township {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn villages(&self, township: Option<&str>) -> Result<Vec<Village>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT id, township_id, name FROM villages WHERE (?1 IS NULL OR township_id = ?1) ORDER BY id",
        )?;
        let rows = statement.query_map([township], |r| {
            Ok(Village {
                id: r.get(0)?,
                township_id: r.get(1)?,
                name: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A part of the unified price list.
    pub fn part(&self, code: &str) -> Result<Option<Part>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT code, name, price_cents FROM parts WHERE code = ?1",
                [code],
                |r| {
                    Ok(Part {
                        code: r.get(0)?,
                        name: r.get(1)?,
                        price_cents: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn parts(&self) -> Result<Vec<Part>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT code, name, price_cents FROM parts ORDER BY code")?;
        let rows = statement.query_map([], |r| {
            Ok(Part {
                code: r.get(0)?,
                name: r.get(1)?,
                price_cents: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
    /// id, or `None` when the episode already had one (exactly one order per episode).
    pub fn create_order(&mut self, order: &NewOrder) -> Result<Option<i64>, StoreError> {
        let tx = self.connection.savepoint()?;
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
                order.priority,
                order.source,
                order.summary,
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
            &order.summary,
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

    /// The open order of a device that still awaits repair, if any.
    pub fn open_order_for_device(&self, device_id: &str) -> Result<Option<OrderRow>, StoreError> {
        self.one_order(
            "WHERE device_id = ?1 AND state IN ('created', 'dispatched', 'accepted', 'on_site') ORDER BY id LIMIT 1",
            device_id,
        )
    }

    /// The open order of any device of a household, if any.
    pub fn open_order_for_household(
        &self,
        household_id: &str,
    ) -> Result<Option<OrderRow>, StoreError> {
        self.one_order(
            "WHERE household_id = ?1 AND state IN ('created', 'dispatched', 'accepted', 'on_site') ORDER BY id LIMIT 1",
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
               AND (?4 IS NULL OR team_id = ?4)
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
    Ok(Ok(OrderRow {
        id: r.get(0)?,
        episode_id: r.get(1)?,
        device_id: r.get(2)?,
        household_id: r.get(3)?,
        village_id: r.get(4)?,
        vendor_id: r.get(5)?,
        township: r.get(6)?,
        category: r.get(7)?,
        priority: r.get(8)?,
        source: r.get(9)?,
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
    }))
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
            pre_emptive: true,
            ..NewOrder::default()
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
        assert!(orders[0].pre_emptive);
    }

    #[test]
    fn a_linked_episode_counts_as_having_its_order() {
        let mut store = Store::in_memory().expect("store");
        store.alert_fired(&alert("e1")).expect("insert");
        let id = store
            .create_order(&order("e1"))
            .expect("create")
            .expect("new");
        store.alert_fired(&alert("e2")).expect("insert");
        assert!(store.link_episode("e2", id, 2_000, "cold").expect("link"));
        assert!(!store
            .link_episode("e2", id, 2_000, "cold")
            .expect("link twice"));
        assert!(store.episode_has_order("e2").expect("query"));
        assert!(store.alert_resolved("e2", 3_000).expect("resolve"));
        let (_, events) = store.order(id).expect("read").expect("exists");
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["created", "alert_linked", "alert_cleared"]);
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
            let id = store
                .create_order(&order("e1"))
                .expect("create")
                .expect("new");
            store
                .append_event(
                    id,
                    2_000,
                    "op",
                    "dispatched",
                    "",
                    &OrderUpdate {
                        state: Some(OrderState::Dispatched),
                        team_id: Some("t1".into()),
                        dispatched_at_ms: Some(2_000),
                        ..OrderUpdate::default()
                    },
                )
                .expect("event");
            store.put("snapshot", "{}").expect("put");
        }
        let store = Store::open(&path).expect("reopen");
        let orders = store.orders(&OrderFilter::default()).expect("list");
        assert_eq!(orders.len(), 1);
        assert_eq!(orders[0].state, OrderState::Dispatched);
        assert_eq!(orders[0].team_id.as_deref(), Some("t1"));
        assert_eq!(
            store
                .order(orders[0].id)
                .expect("read")
                .expect("exists")
                .1
                .len(),
            2
        );
        assert_eq!(store.get("snapshot").expect("get").as_deref(), Some("{}"));
    }

    #[test]
    fn the_last_event_time_is_the_latest_by_time_not_by_insertion() {
        let mut store = Store::in_memory().expect("store");
        assert_eq!(store.last_event_ms(1).expect("query"), None);
        store.alert_fired(&alert("e1")).expect("insert");
        let id = store
            .create_order(&order("e1"))
            .expect("create")
            .expect("new");
        assert_eq!(store.last_event_ms(id).expect("query"), Some(1_000));
        for at_ms in [3_000, 2_000] {
            store
                .append_event(id, at_ms, "op", "note", "", &OrderUpdate::default())
                .expect("event");
        }
        assert_eq!(store.last_event_ms(id).expect("query"), Some(3_000));
        assert_eq!(
            store.event_kinds(id).expect("kinds"),
            ["created", "note", "note"]
        );
        assert_eq!(store.township_of_household("nobody").expect("query"), None);
    }

    #[test]
    fn kv_entries_are_found_and_deleted_by_key() {
        let mut store = Store::in_memory().expect("store");
        store.put("a", "1").expect("put");
        store.put("b", "2").expect("put");
        assert!(store.contains("a").expect("contains"));
        assert!(!store.contains("c").expect("contains"));
        assert!(store.delete("a").expect("delete"));
        assert!(!store.delete("a").expect("delete again"));
        assert!(!store.contains("a").expect("contains"));
        assert_eq!(store.get("b").expect("get").as_deref(), Some("2"));
    }
}
