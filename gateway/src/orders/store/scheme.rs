//! Queries behind the scheme's own report figures ([`crate::orders::reports::SchemeFigures`]):
//! the backlog carried into a period, each order's visits and reopenings, repeat faults,
//! requests by type, out-of-warranty households and the staffing of each township.

use std::collections::BTreeMap;

use rusqlite::params;

use super::{Store, StoreError};

/// Repeat faults look this far back on the same device.
pub const REPEAT_WINDOW_MS: i64 = 30 * 86_400_000;

/// Order categories that are not a fault of the unit (visits, calls, utility incidents, backup
/// heaters' loans): they neither count as a repeat fault nor make a later fault one.
pub const NOT_A_FAULT: [&str; 7] = [
    "backup_loan",
    "inspection",
    "preventive_visit",
    "contact_household",
    "power_supply",
    "gas_supply",
    "village_heat_pump_trips",
];

/// Whether orders of `category` are a fault of the unit.
pub fn is_not_a_fault(category: &str) -> bool {
    NOT_A_FAULT.contains(&category)
}

/// [`NOT_A_FAULT`] as an SQL list.
fn not_a_fault_sql() -> String {
    NOT_A_FAULT
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// An order created before a period: its township and when it ended (closed, cancelled or
/// merged), if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EarlierOrder {
    pub township: String,
    pub team_id: Option<String>,
    pub ended_at_ms: Option<i64>,
}

/// What an order's history says about its repair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OrderVisits {
    /// Technician arrivals on site.
    pub arrivals: u32,
    /// Callbacks that found the heating still not working (the order reopened).
    pub reopened: u32,
    /// Another fault order on the same device in the 30 days before this one.
    pub repeat: bool,
}

/// One township's households and the technicians who serve it (a team covering several
/// townships counts a share of each technician in each).
#[derive(Debug, Clone, PartialEq)]
pub struct TownshipStaff {
    pub township: String,
    pub households: u64,
    pub technicians: f64,
}

impl Store {
    /// The orders created before `before_ms` that had not ended by `before_ms`.
    pub fn orders_open_at(&self, before_ms: i64) -> Result<Vec<EarlierOrder>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT township, team_id, ended FROM (
                 SELECT o.township, o.team_id,
                        (SELECT MIN(e.at_ms) FROM order_events e
                         WHERE e.order_id = o.id AND e.kind IN ('closed', 'cancelled', 'merged')) AS ended
                 FROM orders o WHERE o.created_at_ms < ?1)
             WHERE ended IS NULL OR ended >= ?1",
        )?;
        let rows = statement.query_map([before_ms], |r| {
            Ok(EarlierOrder {
                township: r.get(0)?,
                team_id: r.get(1)?,
                ended_at_ms: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Visits, reopenings and repeat faults of the orders created in `[from_ms, to_ms)`, by
    /// order id.
    pub fn order_visits(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<BTreeMap<i64, OrderVisits>, StoreError> {
        let not_a_fault = not_a_fault_sql();
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT o.id,
                    (SELECT COUNT(*) FROM order_events e WHERE e.order_id = o.id AND e.kind = 'arrived'),
                    (SELECT COUNT(*) FROM order_events e WHERE e.order_id = o.id AND e.kind = 'reopened'),
                    o.category NOT IN ({not_a_fault}) AND EXISTS (
                        SELECT 1 FROM orders p WHERE p.device_id = o.device_id AND p.id <> o.id
                          AND p.created_at_ms < o.created_at_ms AND p.created_at_ms >= o.created_at_ms - ?3
                          AND p.category NOT IN ({not_a_fault})
                          AND p.state NOT IN ('cancelled', 'merged'))
             FROM orders o WHERE o.created_at_ms >= ?1 AND o.created_at_ms < ?2"
        ))?;
        let rows = statement.query_map(params![from_ms, to_ms, REPEAT_WINDOW_MS], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                OrderVisits {
                    arrivals: r.get(1)?,
                    reopened: r.get(2)?,
                    repeat: r.get(3)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Requests received in `[from_ms, to_ms)` by township and kind: how many, and how many
    /// were responded to (answered, or an order opened or joined).
    pub fn requests_by_kind(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(String, String, u64, u64)>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT township, kind, COUNT(*),
                    SUM(CASE WHEN answered_at_ms IS NOT NULL OR order_id IS NOT NULL THEN 1 ELSE 0 END)
             FROM requests WHERE received_at_ms >= ?1 AND received_at_ms < ?2
             GROUP BY township, kind ORDER BY township, kind",
        )?;
        let rows = statement.query_map(params![from_ms, to_ms], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Households with at least one device whose warranty ended before `date`
    /// (`YYYY-MM-DD`), by township.
    pub fn out_of_warranty_households(
        &self,
        date: &str,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT v.township_id, COUNT(DISTINCT h.id)
             FROM households h JOIN villages v ON v.id = h.village_id
             JOIN devices d ON d.household_id = h.id
             WHERE d.warranty_until < ?1 GROUP BY v.township_id",
        )?;
        let rows = statement.query_map([date], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Households and technicians of every township of the registry.
    pub fn township_staff(&self) -> Result<Vec<TownshipStaff>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT t.id,
                    (SELECT COUNT(*) FROM households h JOIN villages v ON v.id = h.village_id
                     WHERE v.township_id = t.id),
                    COALESCE((SELECT SUM(CAST(n.technicians AS REAL) / n.zones)
                              FROM team_zones z JOIN (
                                  SELECT tm.id AS team,
                                         (SELECT COUNT(*) FROM technicians x WHERE x.team_id = tm.id) AS technicians,
                                         (SELECT COUNT(*) FROM team_zones y WHERE y.team_id = tm.id) AS zones
                                  FROM teams tm WHERE tm.kind IN ('vendor', 'third_party')) n
                              ON n.team = z.team_id
                              WHERE z.township_id = t.id AND n.zones > 0), 0.0)
             FROM townships t ORDER BY t.id",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(TownshipStaff {
                township: r.get(0)?,
                households: r.get(1)?,
                technicians: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
