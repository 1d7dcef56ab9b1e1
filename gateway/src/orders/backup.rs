//! Backup heaters lent while a resident's own is repaired (issue 21, item 3): a unit kept at a
//! township's service point is lent for an open repair order through a loan order of its own
//! (category `backup_loan`, on the household's own unit, dispatched and worked
//! like any order: delivered, installed, called back) with a return date; its return puts the
//! unit back at the point and is an event on the loan order. Overdue loans are listed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::store::{BackupUnitRow, NewLoan, NewOrder, OrderUpdate};
use super::{OrderRow, OrderService, RequestError};
use crate::auth::{Principal, Role};

/// The category of a backup unit's loan order.
pub const LOAN_CATEGORY: &str = "backup_loan";
/// The longest loan.
pub const MAX_LOAN_MS: i64 = 90 * 86_400_000;
/// Kinds of backup units.
pub const KINDS: [&str; 2] = ["heat_pump", "gas_boiler"];

/// A backup unit registered or changed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupUnitSpec {
    /// 1 to 64 of A-Z a-z 0-9 - _.
    pub id: String,
    /// `heat_pump` or `gas_boiler`, as the registry names devices.
    pub kind: String,
    /// The township whose service point keeps it.
    pub township: String,
    /// `false`: out of service (not lent).
    #[serde(default = "in_service")]
    pub in_service: bool,
    #[serde(default)]
    pub note: String,
}

fn in_service() -> bool {
    true
}

/// A loan of a backup unit for a repair order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoanRequest {
    /// The open repair order whose household gets the unit.
    pub order_id: i64,
    /// When the unit is due back, Unix ms: after now, at most 90 days ahead.
    pub return_by_ms: i64,
    #[serde(default)]
    pub note: String,
}

/// A backup unit with whether its loan is overdue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BackupUnitView {
    #[serde(flatten)]
    pub unit: BackupUnitRow,
    /// Lent and past its return date.
    pub overdue: bool,
}

/// The answer to a loan: the unit and its loan order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Loan {
    pub unit: BackupUnitRow,
    pub loan_order: OrderRow,
}

fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn may_manage(principal: &Principal, township: &str) -> Result<(), RequestError> {
    match principal.role {
        Role::Operator => Ok(()),
        Role::Township if principal.township.as_deref() == Some(township) => Ok(()),
        Role::Township => Err(RequestError::Forbidden(format!(
            "backup units of township {township:?}: this token acts for township {:?} only",
            principal.township.as_deref().unwrap_or_default()
        ))),
        _ => Err(RequestError::Forbidden(format!(
            "a {:?} token may not manage backup units",
            principal.role
        ))),
    }
}

impl OrderService {
    /// The backup units in the caller's scope, with overdue loans marked.
    pub async fn backup_unit_views(
        &self,
        principal: &Principal,
    ) -> Result<Vec<BackupUnitView>, RequestError> {
        let now = self.clock.now_ms();
        Ok(self
            .backup_units(principal)
            .await?
            .into_iter()
            .map(|unit| BackupUnitView {
                overdue: unit.return_by_ms.is_some_and(|by| by < now),
                unit,
            })
            .collect())
    }

    /// Registers a backup unit, or changes one that is not lent.
    pub async fn put_backup_unit(
        &self,
        principal: &Principal,
        spec: BackupUnitSpec,
    ) -> Result<BackupUnitRow, RequestError> {
        if !valid_id(&spec.id) {
            return Err(RequestError::invalid(format!(
                "id {:?}: 1 to 64 of A-Z a-z 0-9 - _",
                spec.id
            )));
        }
        if !KINDS.contains(&spec.kind.as_str()) {
            return Err(RequestError::invalid(format!(
                "kind {:?}: heat_pump or gas_boiler",
                spec.kind
            )));
        }
        if spec.note.chars().count() > super::stock::MAX_NOTE_CHARS {
            return Err(RequestError::invalid("note: at most 500 characters"));
        }
        may_manage(principal, &spec.township)?;
        let principal = principal.clone();
        self.with_store(move |store| {
            if !store.township_known(&spec.township)? {
                return Ok(Err(RequestError::Missing(format!(
                    "township {:?} is not in the registry",
                    spec.township
                ))));
            }
            // Moving a unit to another point needs the right to manage the point it is at.
            if let Some(unit) = store.backup_unit(&spec.id)? {
                if let Err(error) = may_manage(&principal, &unit.township) {
                    return Ok(Err(error));
                }
            }
            if !store.put_backup_unit(
                &spec.id,
                &spec.kind,
                &spec.township,
                spec.in_service,
                &spec.note,
            )? {
                return Ok(Err(RequestError::Conflict(format!(
                    "backup unit {} is lent: return it first",
                    spec.id
                ))));
            }
            Ok(store
                .backup_unit(&spec.id)?
                .ok_or_else(|| RequestError::Missing(format!("backup unit {} vanished", spec.id))))
        })
        .await?
    }

    /// Lends a backup unit for an open repair order: opens the loan order and marks the unit
    /// lent, in one transaction. The loan order is then dispatched like any other.
    pub async fn lend_backup_unit(
        &self,
        principal: &Principal,
        unit_id: String,
        request: LoanRequest,
    ) -> Result<Loan, RequestError> {
        let now = self.clock.now_ms();
        if !(now + 1..=now + MAX_LOAN_MS).contains(&request.return_by_ms) {
            return Err(RequestError::OutOfRange {
                field: "return_by_ms",
                message: format!(
                    "return_by_ms: {} is not after now ({now}) and within 90 days",
                    request.return_by_ms
                ),
            });
        }
        if request.note.chars().count() > super::stock::MAX_NOTE_CHARS {
            return Err(RequestError::invalid("note: at most 500 characters"));
        }
        let principal = principal.clone();
        let loan = self
            .with_store(move |store| {
                Ok(store.batch(|store| lend_in(store, &principal, &unit_id, &request, now)))
            })
            .await??;
        let order = &loan.loan_order;
        self.notify(super::OrderNotice::of(
            order,
            "created",
            order.created_at_ms,
            order.summary.clone(),
        ));
        Ok(loan)
    }

    /// Takes a lent unit back at its point: an event on its loan order.
    pub async fn return_backup_unit(
        &self,
        principal: &Principal,
        unit_id: String,
    ) -> Result<BackupUnitRow, RequestError> {
        let now = self.clock.now_ms();
        let principal = principal.clone();
        self.with_store(move |store| {
            Ok(store.batch(|store| return_in(store, &principal, &unit_id, now)))
        })
        .await?
    }
}

/// The return's checks and writes, in the store's transaction.
fn return_in(
    store: &mut super::store::Store,
    principal: &Principal,
    unit_id: &str,
    now: i64,
) -> Result<BackupUnitRow, RequestError> {
    let unit = store
        .backup_unit(unit_id)?
        .ok_or_else(|| RequestError::Missing(format!("no backup unit {unit_id}")))?;
    // The team that delivered the loan may take the unit back; else the point's township.
    let team_holds_loan = match (principal.role, unit.loan_order_id) {
        (Role::Team, Some(loan)) => store
            .order_row(loan)?
            .is_some_and(|order| principal.can_read(&order)),
        _ => false,
    };
    if !team_holds_loan {
        may_manage(principal, &unit.township)?;
    }
    let loan = unit
        .loan_order_id
        .ok_or_else(|| RequestError::Conflict(format!("backup unit {unit_id} is not lent")))?;
    store.return_backup_unit(unit_id)?;
    store.append_event(
        loan,
        now,
        &principal.actor(),
        "backup_returned",
        &format!("backup unit {unit_id} back at point:{}", unit.township),
        &OrderUpdate::default(),
    )?;
    store
        .backup_unit(unit_id)?
        .ok_or_else(|| RequestError::Missing(format!("backup unit {unit_id} vanished")))
}

/// The loan order of `unit` for `repair`: at the household, on its own unit (the loan is about
/// its heat; the backup unit is named in the summary and in the unit's row), of no vendor.
fn loan_order(
    unit: &BackupUnitRow,
    repair: &OrderRow,
    request: &LoanRequest,
    principal: &Principal,
    now: i64,
) -> NewOrder {
    let note = if request.note.is_empty() {
        String::new()
    } else {
        format!("; {}", request.note)
    };
    NewOrder {
        episode_id: None,
        device_id: repair.device_id.clone(),
        household_id: repair.household_id.clone(),
        village_id: repair.village_id.clone(),
        vendor_id: None,
        township: repair.township.clone(),
        category: LOAN_CATEGORY.into(),
        priority: repair.priority.clone(),
        source: repair.source.clone(),
        summary: format!(
            "backup {} {} lent for order {} until {}{note}",
            unit.kind,
            unit.id,
            repair.id,
            super::calendar::cst_date_string(request.return_by_ms),
        ),
        created_at_ms: now,
        actor: principal.actor(),
        pre_emptive: false,
        in_warranty: None,
    }
}

/// The loan's checks and writes, in the store's transaction.
fn lend_in(
    store: &mut super::store::Store,
    principal: &Principal,
    unit_id: &str,
    request: &LoanRequest,
    now: i64,
) -> Result<Loan, RequestError> {
    let unit = store
        .backup_unit(unit_id)?
        .ok_or_else(|| RequestError::Missing(format!("no backup unit {unit_id}")))?;
    may_manage(principal, &unit.township)?;
    let repair = store
        .order_row(request.order_id)?
        .filter(|o| principal.can_read(o))
        .ok_or_else(|| RequestError::Missing(format!("no order {}", request.order_id)))?;
    if !repair.state.is_open() || repair.category == LOAN_CATEGORY {
        return Err(RequestError::Conflict(format!(
            "order {} is {} ({}): a backup unit is lent for an open repair",
            repair.id,
            repair.state.as_str(),
            repair.category
        )));
    }
    if unit.state != super::store::BackupState::Available {
        return Err(RequestError::Conflict(format!(
            "backup unit {unit_id} is {}",
            unit.state.as_str()
        )));
    }
    let loan_id = store
        .create_order(&loan_order(&unit, &repair, request, principal, now))?
        .ok_or_else(|| RequestError::Conflict("the loan order was not opened".into()))?;
    store.lend_backup_unit(&NewLoan {
        unit_id,
        loan_order_id: loan_id,
        for_order_id: repair.id,
        household_id: repair.household_id.as_deref(),
        lent_at_ms: now,
        return_by_ms: request.return_by_ms,
    })?;
    store.append_event(
        repair.id,
        now,
        &principal.actor(),
        "backup_lent",
        &format!("backup unit {unit_id} lent (loan order {loan_id})"),
        &OrderUpdate::default(),
    )?;
    let loan_order = store
        .order_row(loan_id)?
        .ok_or(super::OrderError::NotFound(loan_id))?;
    let unit = store
        .backup_unit(unit_id)?
        .ok_or_else(|| RequestError::Missing(format!("backup unit {unit_id} vanished")))?;
    Ok(Loan { unit, loan_order })
}
