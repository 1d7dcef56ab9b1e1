//! What the cold-wave sweep (`crate::prevention`) reads from and writes to the store: the
//! registered units with their registry facts, their recent soft-fault alerts, their repair
//! orders this season and open orders, and the record of every visit or call a sweep opened
//! (`prevention_sweeps`, one row per unit and cold wave: what makes a sweep idempotent).

use std::collections::HashMap;

use rusqlite::params;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Store, StoreError};

/// A registered unit with what the risk score and the sweep read of the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct PreventionUnit {
    pub device_id: String,
    /// `heat_pump` or `gas_boiler`.
    pub kind: String,
    pub household_id: String,
    pub village_id: String,
    pub township: String,
    pub vulnerable: bool,
    pub vendor_id: String,
    /// `YYYY-MM-DD`.
    pub installed_on: String,
    /// `YYYY-MM-DD`.
    pub warranty_until: String,
}

/// A visit or call a sweep opened for a unit ahead of a cold wave.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SweepRecord {
    pub device_id: String,
    /// The cold wave (`area@date`).
    pub wave_id: String,
    /// The coldest forecast period of the wave when the order was opened, Unix ms.
    pub wave_coldest_ms: i64,
    pub township: String,
    /// The order's category: `preventive_visit` or `contact_household`.
    pub action: String,
    pub order_id: i64,
    pub score: u32,
    pub opened_at_ms: i64,
}

impl Store {
    /// Every registered device with its household, village, township, vendor and dates.
    pub fn prevention_units(&self) -> Result<Vec<PreventionUnit>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT d.id, d.kind, h.id, v.id, v.township_id, h.vulnerable, d.vendor_id, d.installed_on, d.warranty_until
             FROM devices d JOIN households h ON h.id = d.household_id JOIN villages v ON v.id = h.village_id
             ORDER BY d.id",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(PreventionUnit {
                device_id: r.get(0)?,
                kind: r.get(1)?,
                household_id: r.get(2)?,
                village_id: r.get(3)?,
                township: r.get(4)?,
                vulnerable: r.get(5)?,
                vendor_id: r.get(6)?,
                installed_on: r.get(7)?,
                warranty_until: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The alerts that fired since `since_ms` or are still active: (device, rule, active).
    pub fn alert_signals_since(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(String, String, bool)>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT device_id, rule_id, resolved_at_ms IS NULL FROM alerts
             WHERE fired_at_ms >= ?1 OR resolved_at_ms IS NULL ORDER BY device_id, rule_id, fired_at_ms",
        )?;
        let rows = statement.query_map([since_ms], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Per device, the orders created since `since_ms` that were repairs: not of the
    /// `excluded` categories (calls, preventive visits, supply incidents), not cancelled or
    /// merged into another.
    pub fn repair_counts_since(
        &self,
        since_ms: i64,
        excluded: &[&str],
    ) -> Result<HashMap<String, u32>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT device_id, category FROM orders
             WHERE created_at_ms >= ?1 AND state NOT IN ('cancelled', 'merged')",
        )?;
        let rows = statement.query_map([since_ms], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut counts = HashMap::new();
        for row in rows {
            let (device, category) = row?;
            if excluded.contains(&category.as_str()) {
                continue;
            }
            let count: &mut u32 = counts.entry(device).or_default();
            *count = count.saturating_add(1);
        }
        Ok(counts)
    }

    /// Per device, its oldest order that still awaits repair.
    pub fn open_orders_by_device(&self) -> Result<HashMap<String, i64>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT device_id, MIN(id) FROM orders
             WHERE state IN ('created', 'dispatched', 'accepted', 'on_site') GROUP BY device_id",
        )?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The sweep records opened since `since_ms`, oldest first.
    pub fn sweep_records_since(&self, since_ms: i64) -> Result<Vec<SweepRecord>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT device_id, wave_id, wave_coldest_ms, township, action, order_id, score, opened_at_ms
             FROM prevention_sweeps WHERE opened_at_ms >= ?1 ORDER BY opened_at_ms, order_id",
        )?;
        let rows = statement.query_map([since_ms], |r| {
            Ok(SweepRecord {
                device_id: r.get(0)?,
                wave_id: r.get(1)?,
                wave_coldest_ms: r.get(2)?,
                township: r.get(3)?,
                action: r.get(4)?,
                order_id: r.get(5)?,
                score: r.get(6)?,
                opened_at_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Records a visit or call a sweep opened; false when the unit already has one for the
    /// same wave (nothing is written).
    pub fn record_sweep(&mut self, record: &SweepRecord) -> Result<bool, StoreError> {
        let inserted = self.connection.execute(
            "INSERT OR IGNORE INTO prevention_sweeps
                (device_id, wave_id, wave_coldest_ms, township, action, order_id, score, opened_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                record.device_id,
                record.wave_id,
                record.wave_coldest_ms,
                record.township,
                record.action,
                record.order_id,
                record.score,
                record.opened_at_ms,
            ],
        )?;
        Ok(inserted == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(device: &str, wave: &str, order_id: i64) -> SweepRecord {
        SweepRecord {
            device_id: device.into(),
            wave_id: wave.into(),
            wave_coldest_ms: 5,
            township: "yongning".into(),
            action: "preventive_visit".into(),
            order_id,
            score: 40,
            opened_at_ms: 10,
        }
    }

    #[test]
    fn a_unit_is_recorded_once_per_wave() {
        let mut store = Store::in_memory().expect("store");
        let order = super::super::NewOrder {
            device_id: "d1".into(),
            township: "yongning".into(),
            category: "preventive_visit".into(),
            priority: "low".into(),
            source: "prevention".into(),
            actor: "prevention".into(),
            ..Default::default()
        };
        let id = store.create_order(&order).expect("create").expect("new");
        assert!(store
            .record_sweep(&record("d1", "yongning@2026-12-12", id))
            .expect("first"));
        assert!(!store
            .record_sweep(&record("d1", "yongning@2026-12-12", id))
            .expect("again"));
        assert!(store
            .record_sweep(&record("d1", "yongning@2027-01-20", id))
            .expect("next wave"));
        let records = store.sweep_records_since(0).expect("read");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], record("d1", "yongning@2026-12-12", id));
        assert!(store.sweep_records_since(11).expect("read").is_empty());
        assert_eq!(
            store
                .repair_counts_since(0, &["preventive_visit"])
                .expect("counts"),
            HashMap::new()
        );
        assert_eq!(store.open_orders_by_device().expect("open")["d1"], id);
    }
}
