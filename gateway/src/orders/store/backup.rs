//! Backup heaters in the store (`backup_units`): each unit kept at a township's service point,
//! available, lent (to a household, for the repair order it covers, through a loan order of its
//! own, with a return date) or out of service.

use rusqlite::{params, OptionalExtension};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Store, StoreError};

/// Where a backup unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackupState {
    Available,
    Lent,
    /// Out of service (broken, being serviced): not lent.
    OutOfService,
}

impl BackupState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Lent => "lent",
            Self::OutOfService => "out_of_service",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        match text {
            "available" => Ok(Self::Available),
            "lent" => Ok(Self::Lent),
            "out_of_service" => Ok(Self::OutOfService),
            other => Err(StoreError::Corrupt(format!("backup unit state {other:?}"))),
        }
    }
}

/// A backup unit as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BackupUnitRow {
    pub id: String,
    /// `heat_pump` or `gas_boiler`.
    pub kind: String,
    /// The township whose service point keeps it.
    pub township: String,
    pub state: BackupState,
    pub note: String,
    /// The loan's own order, while lent.
    pub loan_order_id: Option<i64>,
    /// The repair order the loan covers.
    pub for_order_id: Option<i64>,
    pub household_id: Option<String>,
    pub lent_at_ms: Option<i64>,
    /// When it is due back, Unix ms.
    pub return_by_ms: Option<i64>,
}

/// A loan about to be recorded.
#[derive(Debug, Clone)]
pub struct NewLoan<'a> {
    pub unit_id: &'a str,
    pub loan_order_id: i64,
    pub for_order_id: i64,
    pub household_id: Option<&'a str>,
    pub lent_at_ms: i64,
    pub return_by_ms: i64,
}

const COLUMNS: &str = "id, kind, township, state, note, loan_order_id, for_order_id, household_id, lent_at_ms, return_by_ms";

fn unit(r: &rusqlite::Row) -> rusqlite::Result<(BackupUnitRow, String)> {
    Ok((
        BackupUnitRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            township: r.get(2)?,
            state: BackupState::Available,
            note: r.get(4)?,
            loan_order_id: r.get(5)?,
            for_order_id: r.get(6)?,
            household_id: r.get(7)?,
            lent_at_ms: r.get(8)?,
            return_by_ms: r.get(9)?,
        },
        r.get(3)?,
    ))
}

fn with_state((mut row, state): (BackupUnitRow, String)) -> Result<BackupUnitRow, StoreError> {
    row.state = BackupState::parse(&state)?;
    Ok(row)
}

impl Store {
    /// Adds a backup unit, or changes the kind, township, note and service state of one that
    /// is not lent. Returns `false` when the unit is lent (nothing changed).
    pub fn put_backup_unit(
        &mut self,
        id: &str,
        kind: &str,
        township: &str,
        in_service: bool,
        note: &str,
    ) -> Result<bool, StoreError> {
        let state = if in_service {
            BackupState::Available
        } else {
            BackupState::OutOfService
        };
        let changed = self.connection.execute(
            "INSERT INTO backup_units (id, kind, township, state, note) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, township = excluded.township,
                state = excluded.state, note = excluded.note WHERE backup_units.state != 'lent'",
            params![id, kind, township, state.as_str(), note],
        )?;
        Ok(changed > 0)
    }

    /// One backup unit.
    pub fn backup_unit(&self, id: &str) -> Result<Option<BackupUnitRow>, StoreError> {
        self.connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM backup_units WHERE id = ?1"),
                [id],
                unit,
            )
            .optional()?
            .map(with_state)
            .transpose()
    }

    /// The backup unit lent through a loan order, if any.
    pub fn backup_unit_of_loan(
        &self,
        loan_order_id: i64,
    ) -> Result<Option<BackupUnitRow>, StoreError> {
        self.connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM backup_units WHERE loan_order_id = ?1"),
                [loan_order_id],
                unit,
            )
            .optional()?
            .map(with_state)
            .transpose()
    }

    /// The backup units of some townships (all when `None`), by township then id.
    pub fn backup_units(
        &self,
        townships: Option<&[String]>,
    ) -> Result<Vec<BackupUnitRow>, StoreError> {
        let mut statement = self.connection.prepare(&format!(
            "SELECT {COLUMNS} FROM backup_units ORDER BY township, id"
        ))?;
        let rows = statement.query_map([], unit)?;
        let mut units = Vec::new();
        for row in rows {
            let row = with_state(row?)?;
            if townships.is_none_or(|t| t.contains(&row.township)) {
                units.push(row);
            }
        }
        Ok(units)
    }

    /// Marks an available unit lent. Returns `false` when it was not available.
    pub fn lend_backup_unit(&mut self, loan: &NewLoan) -> Result<bool, StoreError> {
        let changed = self.connection.execute(
            "UPDATE backup_units SET state = 'lent', loan_order_id = ?2, for_order_id = ?3,
                household_id = ?4, lent_at_ms = ?5, return_by_ms = ?6
             WHERE id = ?1 AND state = 'available'",
            params![
                loan.unit_id,
                loan.loan_order_id,
                loan.for_order_id,
                loan.household_id,
                loan.lent_at_ms,
                loan.return_by_ms
            ],
        )?;
        Ok(changed > 0)
    }

    /// Marks a lent unit back at its point. Returns `false` when it was not lent.
    pub fn return_backup_unit(&mut self, id: &str) -> Result<bool, StoreError> {
        let changed = self.connection.execute(
            "UPDATE backup_units SET state = 'available', loan_order_id = NULL, for_order_id = NULL,
                household_id = NULL, lent_at_ms = NULL, return_by_ms = NULL
             WHERE id = ?1 AND state = 'lent'",
            [id],
        )?;
        Ok(changed > 0)
    }
}
