//! The vendors' delegation ledger (`vendor_delegations`): one row per delegation of an order
//! from one warranty vendor to another of the same contract period, with the call-out fee fixed
//! when it was made; what the repair's parts add is read from the order itself, so a resolve,
//! a reopening or a confirmed misuse is reflected without writing the ledger again. A row is
//! voided (never deleted) when the order leaves the delegation: reassigned elsewhere, cancelled
//! or merged before the repair.

use rusqlite::params;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Store, StoreError};

/// A delegation about to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelegation {
    pub order_id: i64,
    pub at_ms: i64,
    pub actor: String,
    pub township: String,
    pub period: String,
    pub from_vendor: String,
    pub from_team: String,
    pub to_vendor: String,
    pub to_team: String,
    pub reason: String,
    pub fee_cents: i64,
}

/// Where a delegation's debt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DelegationStatus {
    /// The order is not repaired yet: the call-out fee is owed, the parts are still to come.
    Pending,
    /// The order is resolved: the fee and the parts (the part of their value the resident does
    /// not pay) are owed.
    Due,
    /// The order left the delegation before its repair (reassigned elsewhere, cancelled,
    /// merged): nothing is owed.
    Void,
}

/// One delegation with what it costs the delegating vendor now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct DelegationRow {
    pub id: i64,
    pub order_id: i64,
    /// When the order was delegated, Unix ms.
    pub at_ms: i64,
    /// Who recorded it (`team:...`, or `operator:...` on a vendor's behalf).
    pub actor: String,
    pub township: String,
    /// The vendors' common contract period (同期).
    pub period: String,
    /// The delegating vendor: it owes.
    pub from_vendor: String,
    pub from_team: String,
    /// The vendor that took the order over: it is owed.
    pub to_vendor: String,
    pub to_team: String,
    pub reason: String,
    pub status: DelegationStatus,
    /// The call-out fee (`delegation.call_out_fee_cents` when it was made), in fen.
    pub fee_cents: i64,
    /// The parts of the repair the resident does not pay (at the unified price list), in fen;
    /// 0 until the order is resolved.
    pub parts_cents: i64,
    /// What the delegating vendor owes for it: fee + parts, 0 when void.
    pub owed_cents: i64,
    pub voided_at_ms: Option<i64>,
    pub void_reason: Option<String>,
}

/// Which delegations to read.
#[derive(Debug, Clone, Default)]
pub struct DelegationFilter {
    pub order_id: Option<i64>,
    /// As debtor or creditor.
    pub vendor: Option<String>,
    pub period: Option<String>,
    pub township: Option<String>,
    /// Made at or after (Unix ms).
    pub from_ms: Option<i64>,
    /// Made before (Unix ms).
    pub to_ms: Option<i64>,
    pub limit: usize,
}

/// What one vendor owes another over a filter's delegations.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LedgerLine {
    pub period: String,
    /// The debtor.
    pub from_vendor: String,
    /// The creditor.
    pub to_vendor: String,
    /// Delegations that count (not void).
    pub delegations: i64,
    /// Of those, the ones whose order is not repaired yet (their parts are still to come).
    pub pending: i64,
    /// Delegations voided (not counted in the sums).
    pub voided: i64,
    pub fee_cents: i64,
    pub parts_cents: i64,
    /// fee + parts, in fen.
    pub owed_cents: i64,
}

const DELEGATION_COLUMNS: &str = "d.id, d.order_id, d.at_ms, d.actor, d.township, d.period, d.from_vendor, d.from_team, d.to_vendor, d.to_team, d.reason, d.fee_cents, d.voided_at_ms, d.void_reason, o.resolved_at_ms, o.parts_cents, o.resident_pays_cents";

const DELEGATION_WHERE: &str = "(?1 IS NULL OR d.order_id = ?1)
    AND (?2 IS NULL OR d.from_vendor = ?2 OR d.to_vendor = ?2)
    AND (?3 IS NULL OR d.period = ?3) AND (?4 IS NULL OR d.township = ?4)
    AND (?5 IS NULL OR d.at_ms >= ?5) AND (?6 IS NULL OR d.at_ms < ?6)";

fn delegation_at(r: &rusqlite::Row<'_>) -> rusqlite::Result<DelegationRow> {
    let fee_cents: i64 = r.get(11)?;
    let voided_at_ms: Option<i64> = r.get(12)?;
    let resolved_at_ms: Option<i64> = r.get(14)?;
    let parts: i64 = r.get(15)?;
    let resident_pays: i64 = r.get(16)?;
    let status = match (voided_at_ms, resolved_at_ms) {
        (Some(_), _) => DelegationStatus::Void,
        (None, Some(_)) => DelegationStatus::Due,
        (None, None) => DelegationStatus::Pending,
    };
    let parts_cents = if status == DelegationStatus::Due {
        parts.saturating_sub(resident_pays).max(0)
    } else {
        0
    };
    let owed_cents = if status == DelegationStatus::Void {
        0
    } else {
        fee_cents.saturating_add(parts_cents)
    };
    Ok(DelegationRow {
        id: r.get(0)?,
        order_id: r.get(1)?,
        at_ms: r.get(2)?,
        actor: r.get(3)?,
        township: r.get(4)?,
        period: r.get(5)?,
        from_vendor: r.get(6)?,
        from_team: r.get(7)?,
        to_vendor: r.get(8)?,
        to_team: r.get(9)?,
        reason: r.get(10)?,
        status,
        fee_cents,
        parts_cents,
        owed_cents,
        voided_at_ms,
        void_reason: r.get(13)?,
    })
}

impl Store {
    /// Records a delegation; returns its id.
    pub fn add_delegation(&mut self, d: &NewDelegation) -> Result<i64, StoreError> {
        self.connection.execute(
            "INSERT INTO vendor_delegations (order_id, at_ms, actor, township, period, from_vendor, from_team, to_vendor, to_team, reason, fee_cents)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                d.order_id,
                d.at_ms,
                d.actor,
                d.township,
                d.period,
                d.from_vendor,
                d.from_team,
                d.to_vendor,
                d.to_team,
                d.reason,
                d.fee_cents
            ],
        )?;
        Ok(self.connection.last_insert_rowid())
    }

    /// Every delegation of an order, oldest first, voided ones too.
    pub fn delegations_of(&self, order_id: i64) -> Result<Vec<DelegationRow>, StoreError> {
        self.delegations(&DelegationFilter {
            order_id: Some(order_id),
            limit: 10_000,
            ..DelegationFilter::default()
        })
    }

    /// The delegations a filter selects, oldest first, at most `filter.limit`.
    pub fn delegations(&self, filter: &DelegationFilter) -> Result<Vec<DelegationRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {DELEGATION_COLUMNS} FROM vendor_delegations d JOIN orders o ON o.id = d.order_id
             WHERE {DELEGATION_WHERE} ORDER BY d.id LIMIT ?7"
        ))?;
        let rows = statement.query_map(
            params![
                filter.order_id,
                filter.vendor,
                filter.period,
                filter.township,
                filter.from_ms,
                filter.to_ms,
                i64::try_from(filter.limit).unwrap_or(i64::MAX)
            ],
            delegation_at,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Voids the order's delegations that still count; returns how many.
    pub fn void_delegations(
        &mut self,
        order_id: i64,
        at_ms: i64,
        reason: &str,
    ) -> Result<usize, StoreError> {
        Ok(self.connection.execute(
            "UPDATE vendor_delegations SET voided_at_ms = ?2, void_reason = ?3
             WHERE order_id = ?1 AND voided_at_ms IS NULL",
            params![order_id, at_ms, reason],
        )?)
    }

    /// What each vendor owes each other vendor over the filter's delegations (`limit` unused),
    /// by period, debtor and creditor.
    pub fn delegation_ledger(
        &self,
        filter: &DelegationFilter,
    ) -> Result<Vec<LedgerLine>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT d.period, d.from_vendor, d.to_vendor,
                    SUM(d.voided_at_ms IS NULL),
                    SUM(d.voided_at_ms IS NULL AND o.resolved_at_ms IS NULL),
                    SUM(d.voided_at_ms IS NOT NULL),
                    SUM(CASE WHEN d.voided_at_ms IS NULL THEN d.fee_cents ELSE 0 END),
                    SUM(CASE WHEN d.voided_at_ms IS NULL AND o.resolved_at_ms IS NOT NULL
                             THEN MAX(0, o.parts_cents - o.resident_pays_cents) ELSE 0 END)
             FROM vendor_delegations d JOIN orders o ON o.id = d.order_id
             WHERE {DELEGATION_WHERE}
             GROUP BY d.period, d.from_vendor, d.to_vendor
             ORDER BY d.period, d.from_vendor, d.to_vendor"
        ))?;
        let rows = statement.query_map(
            params![
                filter.order_id,
                filter.vendor,
                filter.period,
                filter.township,
                filter.from_ms,
                filter.to_ms
            ],
            |r| {
                let fee_cents: i64 = r.get(6)?;
                let parts_cents: i64 = r.get(7)?;
                Ok(LedgerLine {
                    period: r.get(0)?,
                    from_vendor: r.get(1)?,
                    to_vendor: r.get(2)?,
                    delegations: r.get(3)?,
                    pending: r.get(4)?,
                    voided: r.get(5)?,
                    fee_cents,
                    parts_cents,
                    owed_cents: fee_cents.saturating_add(parts_cents),
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A vendor's contract period (同期: the bid round it won), `None` when the registry has
    /// none for it or no such vendor.
    pub fn vendor_period(&self, vendor_id: &str) -> Result<Option<String>, StoreError> {
        use rusqlite::OptionalExtension as _;
        Ok(self
            .connection
            .query_row(
                "SELECT period FROM vendors WHERE id = ?1",
                [vendor_id],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()?
            .flatten())
    }
}
