//! Parts and backup units between visits (issue 21, item 3): each township's service point
//! (`point:{township}`) and each technician's van (`van:{technician}`) holds parts of the
//! unified price list. A dispatch reserves the parts the fault usually needs (the technician's
//! van first, then the township's point) and records a stock-out for what neither has; a
//! resolve consumes the parts used (the order's holds first, then the van, then the point; a
//! part from nowhere is counted as unstocked) and gives back the rest; a cancel, merge or move to
//! another technician gives the holds back. Receipts, transfers and reorder levels come from the
//! API in the caller's scope; a line whose available count falls to its reorder level is low
//! (logged, counted, listed). Backup heaters are lent through a loan order of their own with a
//! return date. The charge rule is untouched: it reads the parts the resolve names.

use std::collections::BTreeMap;

use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::store::{
    apply_move, available, change_reservation, end_stock_outs, record_stock_out, reservations_of,
    BackupUnitRow, Move, MoveKind, Reservation, StockError, StockFilter, StockLine, StockMoveRow,
    Store, StoreError, WentLow,
};
use super::{OrderRow, OrderService, RequestError};
use crate::auth::{Principal, Role};

/// The location prefix of a township's service point.
pub const POINT: &str = "point:";
/// The location prefix of a technician's van.
pub const VAN: &str = "van:";
/// Most of one part a single receipt or transfer moves.
pub const MAX_MOVE_QUANTITY: i64 = 10_000;
/// Longest note on a stock move.
pub const MAX_NOTE_CHARS: usize = 500;

/// Where parts are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Point(String),
    Van(String),
}

impl Location {
    /// Parses `point:{township}` or `van:{technician}`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "location {text:?}: expected `point:{{township}}` or `van:{{technician}}` (ids of 1 to 64 characters)"
            )
        };
        let id_ok = |id: &str| (1..=64).contains(&id.chars().count()) && !id.contains(':');
        if let Some(id) = text.strip_prefix(POINT) {
            return id_ok(id)
                .then(|| Self::Point(id.to_owned()))
                .ok_or_else(bad);
        }
        if let Some(id) = text.strip_prefix(VAN) {
            return id_ok(id).then(|| Self::Van(id.to_owned())).ok_or_else(bad);
        }
        Err(bad())
    }

    pub fn point(township: &str) -> String {
        format!("{POINT}{township}")
    }

    pub fn van(technician: &str) -> String {
        format!("{VAN}{technician}")
    }
}

/// The parts a repair of `problem` on a unit of `kind` (the registry's `heat_pump` or
/// `gas_boiler`) usually needs, suggested (and reserved)
/// at dispatch. `problem` is the fault category of a coded fault or the category of a code-free
/// rule's order ([`problem_of`]). Codes the price list does not have are reserved from nowhere:
/// they become stock-outs only if some location ever stocked them.
pub fn suggested_parts(problem: &str, kind: &str) -> &'static [(&'static str, i64)] {
    match (kind, problem) {
        (_, "water_flow") => &[("flow-switch", 1), ("y-filter", 1)],
        (_, "no_circulation") => &[("circulation-pump", 1), ("flow-switch", 1)],
        (_, "sensor_fault") | (_, "sensor") => &[("ntc-sensor", 1)],
        (_, "low_water_pressure") => &[("pressure-relief-valve", 1), ("expansion-vessel", 1)],
        (_, "freeze_protection") | (_, "overheat") => &[("circulation-pump", 1)],
        (_, "power_supply") | (_, "compressor_overcurrent") => &[("contactor", 1)],
        (_, "communication") | (_, "controller") => &[("control-board", 1)],
        ("heat_pump", "defrost_failure") | ("heat_pump", "defrost_fault") => {
            &[("four-way-valve", 1)]
        }
        ("heat_pump", "high_pressure") => &[("expansion-valve", 1)],
        ("heat_pump", "low_pressure")
        | ("heat_pump", "discharge_overheat")
        | ("heat_pump", "refrigerant_check") => &[("refrigerant-r32-kg", 2)],
        ("gas_boiler", "ignition_failure") | ("gas_boiler", "flame_loss") => {
            &[("ignition-electrode", 1)]
        }
        ("gas_boiler", "fan_flue") => &[("fan-motor", 1), ("air-pressure-switch", 1)],
        ("gas_boiler", "gas_supply") | ("gas_boiler", "gas_check") => &[("gas-valve", 1)],
        _ => &[],
    }
}

/// What an order is about, for the parts it needs: the fault category of a coded fault (the
/// rules write it in the summary as `fault {code} ({category})`), else the order's category.
pub fn problem_of(category: &str, summary: &str) -> String {
    summary
        .strip_prefix("fault ")
        .and_then(|rest| rest.split_once('(')?.1.split_once(')'))
        .map(|(inside, _)| inside)
        .filter(|inside| wire::FaultCategory::parse(inside).is_some())
        .unwrap_or(category)
        .to_owned()
}

/// Which locations a caller may read and change (`None`: all).
struct Scope {
    read: Option<Vec<String>>,
    write: Option<Vec<String>>,
}

impl Scope {
    fn may_read(&self, location: &str) -> bool {
        self.read
            .as_ref()
            .is_none_or(|r| r.iter().any(|l| l == location))
    }
    fn may_write(&self, location: &str) -> bool {
        self.write
            .as_ref()
            .is_none_or(|w| w.iter().any(|l| l == location))
    }
}

/// The caller's scope: operators everything; read-only tokens read everything; a township
/// officer its point and the vans of the technicians serving the township; a team the points of
/// its townships and its technicians' vans (a technician's own token: its own van), to take
/// parts from the point into a van and back.
fn scope(store: &Store, principal: &Principal) -> Result<Scope, StoreError> {
    Ok(match principal.role {
        Role::Operator => Scope {
            read: None,
            write: None,
        },
        Role::ReadOnly => Scope {
            read: None,
            write: Some(Vec::new()),
        },
        Role::Township => {
            let township = principal.township.clone().unwrap_or_default();
            let mut own = vec![Location::point(&township)];
            own.extend(
                store
                    .technicians_serving(&township)?
                    .iter()
                    .map(|t| Location::van(t)),
            );
            Scope {
                read: Some(own.clone()),
                write: Some(own),
            }
        }
        Role::Team => {
            let team = principal.team.clone().unwrap_or_default();
            let mut own: Vec<String> = match &principal.technician {
                Some(me) => vec![Location::van(me)],
                None => store
                    .technicians_of_team(&team)?
                    .iter()
                    .map(|t| Location::van(t))
                    .collect(),
            };
            if let Some(team) = store.team(&team)? {
                own.extend(team.townships.iter().map(|t| Location::point(t)));
            }
            Scope {
                read: Some(own.clone()),
                write: Some(own),
            }
        }
    })
}

/// A receipt of goods at a location (a delivery, a count found higher).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    pub location: String,
    pub part_code: String,
    /// 1 to 10 000.
    pub quantity: i64,
    #[serde(default)]
    pub note: String,
}

/// Parts moved from one location to another (a point to a van, a van back, between points).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub from: String,
    pub to: String,
    pub part_code: String,
    /// 1 to 10 000; at most what `from` has available.
    pub quantity: i64,
    #[serde(default)]
    pub note: String,
}

/// A line's reorder level.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReorderLevel {
    pub location: String,
    pub part_code: String,
    /// 0 (never low) to 10 000.
    pub reorder_level: i64,
}

/// What a dispatch reserved for an order, and what nobody had.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PartsPlan {
    pub reserved: Vec<Reservation>,
    /// Parts (code, quantity) neither the van nor the point had: a stock-out.
    pub short: Vec<(String, i64)>,
}

impl PartsPlan {
    /// The plan as the note of an order event.
    pub fn note(&self) -> String {
        let held: Vec<String> = self
            .reserved
            .iter()
            .map(|r| format!("{} x{} at {}", r.part_code, r.quantity, r.location))
            .collect();
        let short: Vec<String> = self
            .short
            .iter()
            .map(|(c, q)| format!("{c} x{q}"))
            .collect();
        match (held.is_empty(), short.is_empty()) {
            (_, true) => format!("parts reserved: {}", held.join(", ")),
            (true, false) => format!("stock-out: {} (nothing reserved)", short.join(", ")),
            (false, false) => format!(
                "parts reserved: {}; stock-out: {}",
                held.join(", "),
                short.join(", ")
            ),
        }
    }
}

/// Where an order's parts came from at its repair.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct PartsUsed {
    /// Taken from what the order held.
    pub from_reserved: i64,
    /// Taken from the van's or the point's free stock.
    pub from_stock: i64,
    /// Found in no stock the gateway knows of (code, quantity).
    pub unstocked: Vec<(String, i64)>,
    /// Holds given back unused.
    pub released: i64,
}

/// What a step's stock work shares.
pub struct StockStep<'a> {
    pub order_id: i64,
    pub township: &'a str,
    pub technician: Option<&'a str>,
    pub at_ms: i64,
    pub actor: &'a str,
}

impl StockStep<'_> {
    /// The locations to take parts from, nearest first: the van, then the point.
    fn sources(&self) -> Vec<String> {
        let mut sources: Vec<String> = self.technician.map(Location::van).into_iter().collect();
        sources.push(Location::point(self.township));
        sources
    }

    fn take(
        &self,
        tx: &Connection,
        location: &str,
        part: &str,
        quantity: i64,
        kind: MoveKind,
        held: bool,
    ) -> Result<Option<WentLow>, StockError> {
        apply_move(
            tx,
            &Move {
                at_ms: self.at_ms,
                location,
                part_code: part,
                kind,
                quantity,
                order_id: Some(self.order_id),
                actor: self.actor,
                note: "",
                held,
            },
        )
    }

    /// Reserves `parts` (the van first, then the point); what neither has is a stock-out.
    pub fn reserve(
        &self,
        tx: &Connection,
        parts: &[(&str, i64)],
        low: &mut Vec<WentLow>,
    ) -> Result<PartsPlan, StockError> {
        let mut plan = PartsPlan::default();
        for &(part, wanted) in parts {
            let mut missing = wanted;
            for location in self.sources() {
                let take = available(tx, &location, part)?.min(missing);
                if take <= 0 {
                    continue;
                }
                low.extend(self.take(tx, &location, part, take, MoveKind::Reserved, false)?);
                change_reservation(tx, self.order_id, &location, part, take)?;
                plan.reserved.push(Reservation {
                    order_id: self.order_id,
                    location,
                    part_code: part.to_owned(),
                    quantity: take,
                });
                missing -= take;
                if missing == 0 {
                    break;
                }
            }
            if missing > 0 {
                record_stock_out(tx, self.order_id, part, missing, self.township, self.at_ms)?;
                plan.short.push((part.to_owned(), missing));
            }
        }
        Ok(plan)
    }

    /// Gives back every hold of the order; returns how many parts.
    pub fn release(&self, tx: &Connection) -> Result<i64, StockError> {
        let mut released = 0;
        for held in reservations_of(tx, self.order_id)? {
            self.take(
                tx,
                &held.location,
                &held.part_code,
                held.quantity,
                MoveKind::Released,
                false,
            )?;
            change_reservation(
                tx,
                self.order_id,
                &held.location,
                &held.part_code,
                -held.quantity,
            )?;
            released += held.quantity;
        }
        Ok(released)
    }

    /// Consumes the parts a repair used: the order's holds first, then the van's and the
    /// point's free stock, the rest counted as unstocked; gives back the holds left and ends the
    /// order's stock-outs.
    pub fn consume(
        &self,
        tx: &Connection,
        used: &[(String, i64)],
        low: &mut Vec<WentLow>,
    ) -> Result<PartsUsed, StockError> {
        let mut outcome = PartsUsed::default();
        let mut held: BTreeMap<(String, String), i64> = reservations_of(tx, self.order_id)?
            .into_iter()
            .map(|r| ((r.part_code, r.location), r.quantity))
            .collect();
        for (part, quantity) in used {
            let mut missing = *quantity;
            for ((code, location), hold) in held.iter_mut() {
                if code != part || *hold == 0 || missing == 0 {
                    continue;
                }
                let take = (*hold).min(missing);
                low.extend(self.take(tx, location, part, take, MoveKind::Consumed, true)?);
                change_reservation(tx, self.order_id, location, part, -take)?;
                *hold -= take;
                missing -= take;
                outcome.from_reserved += take;
            }
            for location in self.sources() {
                let take = available(tx, &location, part)?.min(missing);
                if take > 0 {
                    low.extend(self.take(tx, &location, part, take, MoveKind::Consumed, false)?);
                    missing -= take;
                    outcome.from_stock += take;
                }
            }
            if missing > 0 {
                let location = self.sources().remove(0);
                self.take(
                    tx,
                    &location,
                    part,
                    missing,
                    MoveKind::ConsumedUnstocked,
                    false,
                )?;
                outcome.unstocked.push((part.clone(), missing));
            }
        }
        outcome.released = self.release(tx)?;
        end_stock_outs(tx, self.order_id, self.at_ms)?;
        Ok(outcome)
    }
}

fn refused(error: StockError) -> RequestError {
    match error {
        StockError::Store(error) => error.into(),
        StockError::Refused(message) => RequestError::Conflict(message),
    }
}

fn check_quantity(field: &'static str, quantity: i64, min: i64) -> Result<(), RequestError> {
    if (min..=MAX_MOVE_QUANTITY).contains(&quantity) {
        Ok(())
    } else {
        Err(RequestError::OutOfRange {
            field,
            message: format!("{field}: {quantity} is not {min}..={MAX_MOVE_QUANTITY}"),
        })
    }
}

fn check_note(note: &str) -> Result<(), RequestError> {
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(RequestError::OutOfRange {
            field: "note",
            message: format!("note: at most {MAX_NOTE_CHARS} characters"),
        });
    }
    Ok(())
}

/// Checks a location exists in the registry and the caller may change it.
fn writable(store: &Store, scope: &Scope, text: &str) -> Result<String, RequestError> {
    let known = match Location::parse(text).map_err(RequestError::Missing)? {
        Location::Point(township) => store.township_known(&township)?,
        Location::Van(technician) => store.technician(&technician)?.is_some(),
    };
    if !known {
        return Err(RequestError::Missing(format!(
            "location {text:?}: no such township or technician in the registry"
        )));
    }
    if !scope.may_write(text) {
        return Err(RequestError::Forbidden(format!(
            "location {text:?} is outside this token's scope"
        )));
    }
    Ok(text.to_owned())
}

fn known_part(store: &Store, code: &str) -> Result<(), RequestError> {
    match store.part(code)? {
        Some(_) => Ok(()),
        None => Err(RequestError::Missing(format!(
            "part {code:?} is not in the unified price list"
        ))),
    }
}

impl OrderService {
    /// The stock lines in the caller's scope that the filter selects.
    pub async fn stock(
        &self,
        principal: &Principal,
        mut filter: StockFilter,
    ) -> Result<Vec<StockLine>, RequestError> {
        let principal = principal.clone();
        self.with_store(move |store| {
            let scope = scope(store, &principal)?;
            if let Some(location) = &filter.location {
                if !scope.may_read(location) {
                    return Ok(Err(RequestError::Forbidden(format!(
                        "location {location:?} is outside this token's scope"
                    ))));
                }
            }
            filter.within = scope.read;
            Ok(Ok(store.stock_lines(&filter)?))
        })
        .await?
    }

    /// The latest moves of a location or an order in the caller's scope.
    pub async fn stock_moves(
        &self,
        principal: &Principal,
        location: Option<String>,
        order_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StockMoveRow>, RequestError> {
        let principal = principal.clone();
        Ok(self
            .with_store(move |store| {
                let scope = scope(store, &principal)?;
                let moves = store.stock_moves(location.as_deref(), order_id, limit)?;
                Ok(moves
                    .into_iter()
                    .filter(|m| scope.may_read(&m.location))
                    .collect())
            })
            .await?)
    }

    /// Records goods received at a location.
    pub async fn receive_stock(
        &self,
        principal: &Principal,
        receipt: Receipt,
    ) -> Result<StockLine, RequestError> {
        check_quantity("quantity", receipt.quantity, 1)?;
        check_note(&receipt.note)?;
        let actor = principal.actor();
        self.stock_change(principal, move |store, scope, at_ms, low| {
            let location = writable(store, scope, &receipt.location)?;
            known_part(store, &receipt.part_code)?;
            let part = receipt.part_code.clone();
            store
                .stock_transaction(|tx| {
                    let received = Move::by_hand(at_ms, &location, &part, MoveKind::Received).of(
                        receipt.quantity,
                        &actor,
                        &receipt.note,
                    );
                    low.extend(apply_move(tx, &received)?);
                    Ok(())
                })
                .map_err(refused)?;
            Ok((location, part))
        })
        .await
    }

    /// Moves parts between two locations of the caller's scope.
    pub async fn transfer_stock(
        &self,
        principal: &Principal,
        transfer: Transfer,
    ) -> Result<StockLine, RequestError> {
        check_quantity("quantity", transfer.quantity, 1)?;
        check_note(&transfer.note)?;
        if transfer.from == transfer.to {
            return Err(RequestError::invalid("from and to are the same location"));
        }
        let actor = principal.actor();
        self.stock_change(principal, move |store, scope, at_ms, low| {
            let from = writable(store, scope, &transfer.from)?;
            let to = writable(store, scope, &transfer.to)?;
            known_part(store, &transfer.part_code)?;
            let part = transfer.part_code.clone();
            let note = transfer.note.clone();
            store
                .stock_transaction(|tx| {
                    let have = available(tx, &from, &part)?;
                    if have < transfer.quantity {
                        return Err(StockError::Refused(format!(
                            "{from} has {have} of part {part:?} available: cannot move {}",
                            transfer.quantity
                        )));
                    }
                    for (location, kind) in [
                        (from.as_str(), MoveKind::TransferredOut),
                        (to.as_str(), MoveKind::TransferredIn),
                    ] {
                        let leg = Move::by_hand(at_ms, location, &part, kind).of(
                            transfer.quantity,
                            &actor,
                            &note,
                        );
                        low.extend(apply_move(tx, &leg)?);
                    }
                    Ok(())
                })
                .map_err(refused)?;
            Ok((to, part))
        })
        .await
    }

    /// Sets a line's reorder level.
    pub async fn set_reorder_level(
        &self,
        principal: &Principal,
        level: ReorderLevel,
    ) -> Result<StockLine, RequestError> {
        check_quantity("reorder_level", level.reorder_level, 0)?;
        let principal = principal.clone();
        let at_ms = self.clock.now_ms();
        let line = self
            .with_store(move |store| {
                let scope = scope(store, &principal)?;
                let checked = writable(store, &scope, &level.location)
                    .and_then(|location| known_part(store, &level.part_code).map(|()| location));
                Ok(match checked {
                    Ok(location) => Ok(store.set_reorder_level(
                        &location,
                        &level.part_code,
                        level.reorder_level,
                        at_ms,
                    )?),
                    Err(error) => Err(error),
                })
            })
            .await??;
        Ok(line)
    }

    /// Runs a stock change in the store with the caller's scope and the server's time, then
    /// reports the lines that became low; answers the line `change` names.
    async fn stock_change<F>(
        &self,
        principal: &Principal,
        change: F,
    ) -> Result<StockLine, RequestError>
    where
        F: FnOnce(
                &mut Store,
                &Scope,
                i64,
                &mut Vec<WentLow>,
            ) -> Result<(String, String), RequestError>
            + Send
            + 'static,
    {
        let principal = principal.clone();
        let at_ms = self.clock.now_ms();
        let (line, low) = self
            .with_store(move |store| {
                let scope = scope(store, &principal)?;
                let mut low = Vec::new();
                let (location, part) = match change(store, &scope, at_ms, &mut low) {
                    Ok(changed) => changed,
                    Err(error) => return Ok(Err(error)),
                };
                let filter = StockFilter {
                    location: Some(location),
                    part_code: Some(part),
                    limit: 1,
                    ..StockFilter::default()
                };
                Ok(Ok((store.stock_lines(&filter)?.pop(), low)))
            })
            .await??;
        self.stock_went_low(&low);
        line.ok_or_else(|| {
            RequestError::Missing("the stock line was not found after the change".into())
        })
    }

    /// Logs and counts the lines that became low.
    pub(crate) fn stock_went_low(&self, lines: &[WentLow]) {
        for line in lines {
            crate::events::InternalEvent::emit(
                crate::events::StockLow {
                    location: &line.location,
                    part_code: &line.part_code,
                    available: line.available,
                    reorder_level: line.reorder_level,
                },
                &self.metrics,
            );
        }
    }

    /// The backup units of the caller's townships (all for operators and read-only tokens).
    pub async fn backup_units(
        &self,
        principal: &Principal,
    ) -> Result<Vec<BackupUnitRow>, RequestError> {
        let principal = principal.clone();
        Ok(self
            .with_store(move |store| {
                let townships: Option<Vec<String>> = match principal.role {
                    Role::Operator | Role::ReadOnly => None,
                    Role::Township => Some(principal.township.clone().into_iter().collect()),
                    Role::Team => Some(
                        store
                            .team(principal.team.as_deref().unwrap_or_default())?
                            .map(|t| t.townships)
                            .unwrap_or_default(),
                    ),
                };
                store.backup_units(townships.as_deref())
            })
            .await?)
    }
}

/// What an order step does to the stock.
pub enum StockEffect<'a> {
    /// Dispatched, reassigned or delegated: the holds go back and the parts the problem needs
    /// are reserved for the (new) technician.
    Assigned,
    /// Repaired with these parts (code, quantity).
    Resolved(&'a [(String, i64)]),
    /// Cancelled or merged: the holds go back and the stock-outs end.
    Ended,
}

fn store_error(error: StockError) -> StoreError {
    match error {
        StockError::Store(error) => error,
        StockError::Refused(message) => StoreError::Corrupt(message),
    }
}

impl OrderService {
    /// The stock work of an order step, in the step's transaction, on the order as the step left
    /// it. Returns the event (kind, note) to record after the step's own, if there is one to say.
    pub(crate) fn stock_for_step(
        &self,
        store: &mut Store,
        order: &OrderRow,
        effect: StockEffect,
        at_ms: i64,
        actor: &str,
    ) -> Result<Option<(&'static str, String)>, StoreError> {
        let step = StockStep {
            order_id: order.id,
            township: &order.township,
            technician: order.technician_id.as_deref(),
            at_ms,
            actor,
        };
        let kind = store
            .registered_device(&order.device_id)?
            .map(|device| device.kind)
            .unwrap_or_default();
        let problem = problem_of(&order.category, &order.summary);
        // Where no stock is kept (neither the van nor the point has any line), nothing is held,
        // short or unstocked: stock is tracked township by township as points start keeping it.
        let tracked = step
            .sources()
            .iter()
            .map(|location| store.keeps_stock(location))
            .collect::<Result<Vec<bool>, _>>()?
            .contains(&true);
        if !tracked && store.order_reservations(order.id)?.is_empty() {
            return Ok(None);
        }
        let mut low = Vec::new();
        let event = store
            .stock_transaction(|tx| {
                Ok(match effect {
                    StockEffect::Assigned => {
                        step.release(tx)?;
                        let parts = suggested_parts(&problem, &kind);
                        let plan = step.reserve(tx, parts, &mut low)?;
                        (!parts.is_empty()).then(|| {
                            let kind = if plan.short.is_empty() { "parts_reserved" } else { "stock_out" };
                            (kind, plan.note())
                        })
                    }
                    StockEffect::Resolved(used) => {
                        let outcome = step.consume(tx, used, &mut low)?;
                        (!outcome.unstocked.is_empty()).then(|| {
                            let parts: Vec<String> = outcome
                                .unstocked
                                .iter()
                                .map(|(code, q)| format!("{code} x{q}"))
                                .collect();
                            (
                                "parts_unstocked",
                                format!(
                                    "used but in no stock the gateway knows of: {}; check the van's and the point's counts",
                                    parts.join(", ")
                                ),
                            )
                        })
                    }
                    StockEffect::Ended => {
                        step.release(tx)?;
                        end_stock_outs(tx, order.id, at_ms)?;
                        None
                    }
                })
            })
            .map_err(store_error)?;
        self.stock_went_low(&low);
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_follow_the_registrys_kinds_and_the_coded_fault() {
        assert_eq!(
            suggested_parts("ignition_failure", "gas_boiler"),
            &[("ignition-electrode", 1)]
        );
        assert_eq!(
            suggested_parts("defrost_failure", "heat_pump"),
            &[("four-way-valve", 1)]
        );
        assert!(suggested_parts("defrost_failure", "gas_boiler").is_empty());
        assert_eq!(
            problem_of("repair", "fault 7 (flame_loss): no flame"),
            "flame_loss"
        );
        assert_eq!(
            problem_of("low_water_pressure", "pressure 0.4 bar"),
            "low_water_pressure"
        );
        assert_eq!(problem_of("repair", "fault 7 (bogus): x"), "repair");
    }
}
