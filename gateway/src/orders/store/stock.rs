//! Parts stock and backup units in the store (`stock`, `stock_moves`, `stock_reservations`,
//! `stock_outs`, `backup_units`): every change of a line is a move written in the same
//! transaction as the line, so the moves are the audit trail of the counts; a line never goes
//! below zero on hand or reserved. Locations are `point:{township}` (a township's service point)
//! and `van:{technician}`; what they may be is checked by `orders::stock`.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Store, StoreError};

/// Most rows a listing returns.
pub const MAX_STOCK_ROWS: usize = 10_000;

/// One part at one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StockLine {
    /// `point:{township}` or `van:{technician}`.
    pub location: String,
    pub part_code: String,
    pub part_name: String,
    pub on_hand: i64,
    /// Held for dispatched orders (still on hand until used or released).
    pub reserved: i64,
    /// On hand and not reserved.
    pub available: i64,
    /// Available at or below it is low (0: no level set, never low).
    pub reorder_level: i64,
    /// Since when the line is low, Unix ms; `None`: not low.
    pub low_since_ms: Option<i64>,
}

/// What a move did to a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MoveKind {
    /// Goods received at the location (a delivery, a count correction upwards).
    Received,
    TransferredOut,
    TransferredIn,
    /// Held for an order at its dispatch.
    Reserved,
    /// A hold given back (the order was cancelled, merged, moved to another technician, or
    /// resolved without the part).
    Released,
    /// Used in a repair.
    Consumed,
    /// Used in a repair but not found in any stock the gateway knows of: counted, no line
    /// changed (a part bought locally or a count gone wrong: an operator checks it).
    ConsumedUnstocked,
}

impl MoveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::TransferredOut => "transferred_out",
            Self::TransferredIn => "transferred_in",
            Self::Reserved => "reserved",
            Self::Released => "released",
            Self::Consumed => "consumed",
            Self::ConsumedUnstocked => "consumed_unstocked",
        }
    }
}

/// A move as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StockMoveRow {
    pub id: i64,
    pub at_ms: i64,
    pub location: String,
    pub part_code: String,
    pub kind: String,
    /// Always positive: the kind says which way.
    pub quantity: i64,
    pub order_id: Option<i64>,
    pub actor: String,
    pub note: String,
}

/// A move about to be written: what changes on hand and reserved, and why.
#[derive(Debug, Clone)]
pub struct Move<'a> {
    pub at_ms: i64,
    pub location: &'a str,
    pub part_code: &'a str,
    pub kind: MoveKind,
    pub quantity: i64,
    pub order_id: Option<i64>,
    pub actor: &'a str,
    pub note: &'a str,
    /// For [`MoveKind::Consumed`]: the part was reserved for the order (its hold goes too).
    pub held: bool,
}

impl<'a> Move<'a> {
    /// A move made by hand (a receipt, a transfer's leg), of no order; complete it with
    /// [`Move::of`].
    pub fn by_hand(at_ms: i64, location: &'a str, part_code: &'a str, kind: MoveKind) -> Self {
        Self {
            at_ms,
            location,
            part_code,
            kind,
            quantity: 0,
            order_id: None,
            actor: "",
            note: "",
            held: false,
        }
    }

    /// The move with its quantity, actor and note.
    pub fn of(self, quantity: i64, actor: &'a str, note: &'a str) -> Self {
        Self {
            quantity,
            actor,
            note,
            ..self
        }
    }

    /// The change of (on hand, reserved) the move makes.
    fn deltas(&self) -> (i64, i64) {
        let q = self.quantity;
        match self.kind {
            MoveKind::Received | MoveKind::TransferredIn => (q, 0),
            MoveKind::TransferredOut => (-q, 0),
            MoveKind::Reserved => (0, q),
            MoveKind::Released => (0, -q),
            // A consumed part leaves the shelf, and its hold when it had one.
            MoveKind::Consumed if self.held => (-q, -q),
            MoveKind::Consumed => (-q, 0),
            MoveKind::ConsumedUnstocked => (0, 0),
        }
    }
}

/// A line that became low with a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WentLow {
    pub location: String,
    pub part_code: String,
    pub available: i64,
    pub reorder_level: i64,
}

/// Why a stock change was refused.
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Refused(String),
}

impl From<rusqlite::Error> for StockError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Store(error.into())
    }
}

/// Which lines to read.
#[derive(Debug, Clone, Default)]
pub struct StockFilter {
    /// Only these locations (the caller's scope); `None`: any.
    pub within: Option<Vec<String>>,
    pub location: Option<String>,
    pub part_code: Option<String>,
    pub low_only: bool,
    pub limit: usize,
}

/// A part an order holds at a location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Reservation {
    pub order_id: i64,
    pub location: String,
    pub part_code: String,
    pub quantity: i64,
}

/// A part an order needed at dispatch that neither the technician's van nor the township's
/// point had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct StockOut {
    pub order_id: i64,
    pub part_code: String,
    pub quantity: i64,
    pub township: String,
    pub at_ms: i64,
    /// When the order was repaired (or ended otherwise).
    pub resolved_at_ms: Option<i64>,
}

/// Applies one move in `tx`: the line changed (created at zero when new), never below zero,
/// the move logged, the low mark set or cleared. Returns the line when it became low.
pub(crate) fn apply_move(tx: &Connection, m: &Move) -> Result<Option<WentLow>, StockError> {
    if m.quantity <= 0 {
        return Err(StockError::Refused(format!(
            "quantity {} of part {:?}: must be at least 1",
            m.quantity, m.part_code
        )));
    }
    tx.execute(
        "INSERT OR IGNORE INTO stock (location, part_code) VALUES (?1, ?2)",
        params![m.location, m.part_code],
    )?;
    let (on_hand, reserved, level, low_since): (i64, i64, i64, Option<i64>) = tx.query_row(
        "SELECT on_hand, reserved, reorder_level, low_since_ms FROM stock WHERE location = ?1 AND part_code = ?2",
        params![m.location, m.part_code],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let was_low = low_since.is_some();
    let (d_on_hand, d_reserved) = m.deltas();
    let (on_hand, reserved) = (on_hand + d_on_hand, reserved + d_reserved);
    if on_hand < 0 || reserved < 0 || reserved > on_hand {
        return Err(StockError::Refused(format!(
            "{} has {} of part {:?} on hand ({} reserved): cannot take {}",
            m.location,
            on_hand - d_on_hand,
            m.part_code,
            reserved - d_reserved,
            m.quantity
        )));
    }
    let available = on_hand - reserved;
    let low = level > 0 && available <= level;
    let low_since = match (low, low_since) {
        (true, Some(since)) => Some(since),
        (true, None) => Some(m.at_ms),
        (false, _) => None,
    };
    tx.execute(
        "UPDATE stock SET on_hand = ?3, reserved = ?4, low_since_ms = ?5 WHERE location = ?1 AND part_code = ?2",
        params![m.location, m.part_code, on_hand, reserved, low_since],
    )?;
    tx.execute(
        "INSERT INTO stock_moves (at_ms, location, part_code, kind, quantity, order_id, actor, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            m.at_ms,
            m.location,
            m.part_code,
            m.kind.as_str(),
            m.quantity,
            m.order_id,
            m.actor,
            m.note
        ],
    )?;
    Ok((low && !was_low).then(|| WentLow {
        location: m.location.to_owned(),
        part_code: m.part_code.to_owned(),
        available,
        reorder_level: level,
    }))
}

/// What is available (on hand, not reserved) of a part at a location.
pub(crate) fn available(tx: &Connection, location: &str, part: &str) -> Result<i64, StoreError> {
    Ok(tx
        .query_row(
            "SELECT on_hand - reserved FROM stock WHERE location = ?1 AND part_code = ?2",
            params![location, part],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// The reservations of an order.
pub(crate) fn reservations_of(
    tx: &Connection,
    order_id: i64,
) -> Result<Vec<Reservation>, StoreError> {
    let mut statement = tx.prepare(
        "SELECT order_id, location, part_code, quantity FROM stock_reservations WHERE order_id = ?1 ORDER BY location, part_code",
    )?;
    let rows = statement.query_map([order_id], |r| {
        Ok(Reservation {
            order_id: r.get(0)?,
            location: r.get(1)?,
            part_code: r.get(2)?,
            quantity: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Adds `quantity` to an order's reservation at a location (negative takes it off; a row at
/// zero is deleted).
pub(crate) fn change_reservation(
    tx: &Connection,
    order_id: i64,
    location: &str,
    part: &str,
    quantity: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO stock_reservations (order_id, location, part_code, quantity) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (order_id, location, part_code) DO UPDATE SET quantity = quantity + excluded.quantity",
        params![order_id, location, part, quantity],
    )?;
    tx.execute(
        "DELETE FROM stock_reservations WHERE order_id = ?1 AND quantity <= 0",
        [order_id],
    )?;
    Ok(())
}

/// Records a part an order could not get at dispatch (one row per order and part: a second
/// stock-out of the same part keeps the first time and the larger quantity).
pub(crate) fn record_stock_out(
    tx: &Connection,
    order_id: i64,
    part: &str,
    quantity: i64,
    township: &str,
    at_ms: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO stock_outs (order_id, part_code, quantity, township, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (order_id, part_code) DO UPDATE SET quantity = max(quantity, excluded.quantity)",
        params![order_id, part, quantity, township, at_ms],
    )?;
    Ok(())
}

/// Marks an order's open stock-outs as ended at `at_ms`.
pub(crate) fn end_stock_outs(tx: &Connection, order_id: i64, at_ms: i64) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE stock_outs SET resolved_at_ms = ?2 WHERE order_id = ?1 AND resolved_at_ms IS NULL",
        params![order_id, at_ms],
    )?;
    Ok(())
}

fn stock_line(r: &rusqlite::Row) -> rusqlite::Result<StockLine> {
    let on_hand: i64 = r.get(2)?;
    let reserved: i64 = r.get(3)?;
    Ok(StockLine {
        location: r.get(0)?,
        part_code: r.get(1)?,
        on_hand,
        reserved,
        available: on_hand - reserved,
        reorder_level: r.get(4)?,
        low_since_ms: r.get(5)?,
        part_name: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
    })
}

fn stock_out(r: &rusqlite::Row) -> rusqlite::Result<StockOut> {
    Ok(StockOut {
        order_id: r.get(0)?,
        part_code: r.get(1)?,
        quantity: r.get(2)?,
        township: r.get(3)?,
        at_ms: r.get(4)?,
        resolved_at_ms: r.get(5)?,
    })
}

impl Store {
    /// Runs `f` in one savepoint: all its moves are written, or none.
    pub fn stock_transaction<T>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<T, StockError>,
    ) -> Result<T, StockError> {
        let tx = self.connection.savepoint().map_err(StoreError::from)?;
        let value = f(&tx)?;
        tx.commit().map_err(StoreError::from)?;
        Ok(value)
    }

    /// The stock lines the filter selects, by location then part.
    pub fn stock_lines(&self, filter: &StockFilter) -> Result<Vec<StockLine>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT s.location, s.part_code, s.on_hand, s.reserved, s.reorder_level, s.low_since_ms, p.name
             FROM stock s LEFT JOIN parts p ON p.code = s.part_code
             WHERE (?1 IS NULL OR s.location = ?1) AND (?2 IS NULL OR s.part_code = ?2)
               AND (?3 = 0 OR s.low_since_ms IS NOT NULL)
             ORDER BY s.location, s.part_code",
        )?;
        let rows = statement.query_map(
            params![filter.location, filter.part_code, filter.low_only],
            stock_line,
        )?;
        let mut lines = Vec::new();
        for line in rows {
            let line = line?;
            if let Some(within) = &filter.within {
                if !within.contains(&line.location) {
                    continue;
                }
            }
            lines.push(line);
            if lines.len() >= filter.limit.clamp(1, MAX_STOCK_ROWS) {
                break;
            }
        }
        Ok(lines)
    }

    /// The latest moves of a location or an order (newest first), at most `limit`.
    pub fn stock_moves(
        &self,
        location: Option<&str>,
        order_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StockMoveRow>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT id, at_ms, location, part_code, kind, quantity, order_id, actor, note FROM stock_moves
             WHERE (?1 IS NULL OR location = ?1) AND (?2 IS NULL OR order_id = ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let limit = i64::try_from(limit.clamp(1, MAX_STOCK_ROWS)).unwrap_or(1);
        let rows = statement.query_map(params![location, order_id, limit], |r| {
            Ok(StockMoveRow {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                location: r.get(2)?,
                part_code: r.get(3)?,
                kind: r.get(4)?,
                quantity: r.get(5)?,
                order_id: r.get(6)?,
                actor: r.get(7)?,
                note: r.get(8)?,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Sets a line's reorder level (the line created at zero when new); the low mark follows.
    pub fn set_reorder_level(
        &mut self,
        location: &str,
        part: &str,
        level: i64,
        at_ms: i64,
    ) -> Result<StockLine, StoreError> {
        let tx = self.connection.savepoint()?;
        tx.execute(
            "INSERT OR IGNORE INTO stock (location, part_code) VALUES (?1, ?2)",
            params![location, part],
        )?;
        tx.execute(
            "UPDATE stock SET reorder_level = ?3,
                low_since_ms = CASE WHEN ?3 > 0 AND on_hand - reserved <= ?3 THEN coalesce(low_since_ms, ?4) ELSE NULL END
             WHERE location = ?1 AND part_code = ?2",
            params![location, part, level, at_ms],
        )?;
        tx.commit()?;
        let filter = StockFilter {
            location: Some(location.to_owned()),
            part_code: Some(part.to_owned()),
            limit: 1,
            ..StockFilter::default()
        };
        self.stock_lines(&filter)?
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("stock line {location} {part} vanished")))
    }

    /// The parts an order holds.
    pub fn order_reservations(&self, order_id: i64) -> Result<Vec<Reservation>, StoreError> {
        reservations_of(&self.connection, order_id)
    }

    /// The stock-outs recorded between `from_ms` and `to_ms` (all when `None`), oldest first.
    pub fn stock_outs(
        &self,
        order_id: Option<i64>,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<StockOut>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT order_id, part_code, quantity, township, at_ms, resolved_at_ms FROM stock_outs
             WHERE (?1 IS NULL OR order_id = ?1) AND at_ms >= ?2 AND at_ms < ?3 ORDER BY at_ms, order_id, part_code",
        )?;
        let rows = statement.query_map(params![order_id, from_ms, to_ms], stock_out)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Whether a location keeps stock: it has a line of any part.
    pub fn keeps_stock(&self, location: &str) -> Result<bool, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT 1 FROM stock WHERE location = ?1 LIMIT 1",
                [location],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    /// Whether the registry has this township.
    pub fn township_known(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .connection
            .query_row("SELECT 1 FROM townships WHERE id = ?1", [id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// The technicians of the teams whose zone includes `township`.
    pub fn technicians_serving(&self, township: &str) -> Result<Vec<String>, StoreError> {
        let mut statement = self.connection.prepare(
            "SELECT t.id FROM technicians t JOIN team_zones z ON z.team_id = t.team_id
             WHERE z.township_id = ?1 ORDER BY t.id",
        )?;
        let rows = statement.query_map([township], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }

    /// The technicians of a team.
    pub fn technicians_of_team(&self, team: &str) -> Result<Vec<String>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT id FROM technicians WHERE team_id = ?1 ORDER BY id")?;
        let rows = statement.query_map([team], |r| r.get(0))?;
        Ok(rows.collect::<Result<Vec<String>, _>>()?)
    }
}
