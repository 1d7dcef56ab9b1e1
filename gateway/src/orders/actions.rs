//! What operators, teams and townships do to an order ([`OrderAction`]): each step checked
//! against the caller's role and scope, the lifecycle, the time window and the data in the
//! transaction that writes it ([`OrderService::act`]); refusals are [`RequestError`]s.

use super::idempotency::{Answered, IdempotencyKey, Once};
use super::stock::StockEffect;
use super::*;

/// A part used in a repair.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartUse {
    /// Code in the unified price list.
    pub code: String,
    #[serde(default = "one")]
    pub quantity: i64,
}

fn one() -> i64 {
    1
}

/// Something an operator, team or township does to an order.
#[derive(Debug, Clone, PartialEq)]
pub enum OrderAction {
    /// Dispatch; without a team, routing picks one.
    Dispatch {
        team_id: Option<String>,
        technician_id: Option<String>,
    },
    Reassign {
        team_id: String,
        technician_id: Option<String>,
        reason: String,
    },
    Accept,
    Arrive,
    /// `misuse` from an operator charges the resident at once; from anyone else it is recorded
    /// as a claim (`misuse_claimed`) and charges nothing until [`OrderAction::ConfirmMisuse`].
    Resolve {
        parts: Vec<PartUse>,
        misuse: bool,
        note: String,
    },
    /// An operator confirms a team's misuse claim: the charge rule then applies with misuse.
    ConfirmMisuse {
        note: String,
    },
    Callback {
        satisfaction: i64,
        solved: bool,
        note: String,
    },
    Close,
    Cancel {
        reason: String,
    },
    Merge {
        into: i64,
    },
    /// A manual escalation (督办) by an operator, a township officer or a read-only bureau
    /// (a bureau's needs a note).
    Escalate {
        note: String,
    },
    /// A warranty vendor hands the order to another vendor of the same contract period that
    /// serves its township, at its own cost ([`super::delegation`]).
    Delegate {
        team_id: String,
        technician_id: Option<String>,
        reason: String,
    },
}

/// Longest note, reason or part code an action carries, in characters.
pub const MAX_ACTION_TEXT_CHARS: usize = 2000;

impl OrderAction {
    /// Refuses a note, reason or id longer than [`MAX_ACTION_TEXT_CHARS`], naming the field.
    fn check_text(&self) -> Result<(), RequestError> {
        let fields: Vec<(&str, &str)> = match self {
            OrderAction::Dispatch {
                team_id,
                technician_id,
            } => vec![
                ("team_id", team_id.as_deref().unwrap_or_default()),
                (
                    "technician_id",
                    technician_id.as_deref().unwrap_or_default(),
                ),
            ],
            OrderAction::Reassign {
                team_id,
                technician_id,
                reason,
            }
            | OrderAction::Delegate {
                team_id,
                technician_id,
                reason,
            } => vec![
                ("team_id", team_id.as_str()),
                (
                    "technician_id",
                    technician_id.as_deref().unwrap_or_default(),
                ),
                ("reason", reason.as_str()),
            ],
            OrderAction::Resolve { parts, note, .. } => {
                let mut fields = vec![("note", note.as_str())];
                fields.extend(parts.iter().map(|p| ("parts[].code", p.code.as_str())));
                fields
            }
            OrderAction::ConfirmMisuse { note }
            | OrderAction::Callback { note, .. }
            | OrderAction::Escalate { note } => vec![("note", note.as_str())],
            OrderAction::Cancel { reason } => vec![("reason", reason.as_str())],
            OrderAction::Accept
            | OrderAction::Arrive
            | OrderAction::Close
            | OrderAction::Merge { .. } => Vec::new(),
        };
        for (field, value) in fields {
            let length = value.chars().count();
            if length > MAX_ACTION_TEXT_CHARS {
                return Err(RequestError::invalid(format!(
                    "{field}: at most {MAX_ACTION_TEXT_CHARS} characters, got {length}"
                )));
            }
        }
        Ok(())
    }
}

/// Most part lines on one resolve.
pub const MAX_PART_LINES: usize = 50;
/// The most a repair's parts may be worth, in fen (1 000 000 CNY): far above any heater.
pub const MAX_PARTS_CENTS: i64 = 100_000_000;

/// Why a request to the order service was refused: an [`OrderError`], or a refusal that
/// concerns the caller or a value's range.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The caller's role or scope does not allow it (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
    /// A value outside its allowed range (HTTP 422); `message` names the field and the range.
    #[error("{message}")]
    OutOfRange {
        field: &'static str,
        message: String,
    },
    /// The order's state or history does not allow it (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// Nothing by that id in the caller's scope (HTTP 404).
    #[error("{0}")]
    Missing(String),
    #[error(transparent)]
    Order(#[from] OrderError),
}

impl From<StoreError> for RequestError {
    fn from(error: StoreError) -> Self {
        Self::Order(OrderError::Store(error))
    }
}

impl From<TransitionError> for RequestError {
    fn from(error: TransitionError) -> Self {
        Self::Order(OrderError::Transition(error))
    }
}

impl RequestError {
    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::Order(OrderError::Invalid(message.into()))
    }

    pub(super) fn out_of_range(field: &'static str, message: String) -> Self {
        Self::OutOfRange { field, message }
    }
}

impl OrderService {
    /// Applies an action to an order on behalf of `principal`. The role each route needs is
    /// the API's to check; this checks, in the transaction that writes: that the order (and
    /// any order or team the action names) is in the caller's scope, the event time (the
    /// server's clock; an operator may set one within [`TimeWindow::order_step`]), the
    /// lifecycle and the data. A refusal writes nothing.
    pub async fn act(
        &self,
        order_id: i64,
        principal: &Principal,
        action: OrderAction,
        at_ms: Option<i64>,
    ) -> Result<OrderRow, RequestError> {
        let service = self.clone();
        let principal = principal.clone();
        let (row, notices) = self
            .with_store(move |store| {
                Ok(store.batch(|store| service.act_in(store, order_id, &principal, action, at_ms)))
            })
            .await??;
        self.after_act(&row, notices);
        Ok(row)
    }

    /// [`OrderService::act`] for a step that may be sent twice: with a `key`, the first answer
    /// (the order as the step left it) is stored with the key in the step's transaction, and
    /// the same step sent again with the key gets that answer back without being applied
    /// again ([`IdempotencyKey`]).
    pub async fn act_once(
        &self,
        order_id: i64,
        principal: &Principal,
        action: OrderAction,
        at_ms: Option<i64>,
        key: Option<IdempotencyKey>,
    ) -> Result<Answered, RequestError> {
        let service = self.clone();
        let principal = principal.clone();
        let what = format!("order {order_id}: {action:?} at {at_ms:?}");
        let once = self
            .with_store(move |store| {
                Ok(store.batch(|store| {
                    service.once_in(store, &principal, key.as_ref(), &what, 200, |store| {
                        let (row, notices) =
                            service.act_in(store, order_id, &principal, action, at_ms)?;
                        Ok((row.clone(), (row, notices)))
                    })
                }))
            })
            .await??;
        match once {
            Once::Fresh {
                answered,
                extra: (row, notices),
            } => {
                self.after_act(&row, notices);
                Ok(answered)
            }
            Once::Replayed(answered) => Ok(answered),
        }
    }

    /// Sends an action's notices, and a dispatched order to its team's clients.
    fn after_act(&self, row: &OrderRow, notices: Vec<OrderNotice>) {
        for notice in notices {
            self.notify(notice);
        }
        if row.state == OrderState::Dispatched {
            if let Some(notifier) = &self.notifier {
                notifier.order_dispatched(row);
            }
        }
    }

    /// A team named by a dispatch or reassignment, with the technician if one is named. Only
    /// an operator may send a team outside its zone.
    fn named_assignment(
        store: &Store,
        order: &OrderRow,
        principal: &Principal,
        team_id: &str,
        technician_id: Option<&str>,
    ) -> Result<dispatch::Assignment, RequestError> {
        let assignment = dispatch::assign_to(store, order, team_id, technician_id)?
            .ok_or_else(|| {
                RequestError::invalid(match technician_id {
                    Some(technician) => format!(
                        "team_id {team_id:?} is not a team, or technician_id {technician:?} is not in it"
                    ),
                    None => format!("team_id {team_id:?} is not a team"),
                })
            })?;
        if principal.role != Role::Operator && !dispatch::covers(&assignment.team, &order.township)
        {
            return Err(RequestError::Forbidden(format!(
                "team_id {team_id:?}: the team's zone does not include township {:?}, the order's; only an operator may send a team outside its zone",
                order.township
            )));
        }
        Ok(assignment)
    }

    /// [`OrderService::act`] in `store`'s transaction: the order in the caller's scope, the
    /// event time, the step itself, then its events (the step's own and its follow-ups) and
    /// their notices.
    fn act_in(
        &self,
        store: &mut Store,
        order_id: i64,
        principal: &Principal,
        action: OrderAction,
        at_ms: Option<i64>,
    ) -> Result<(OrderRow, Vec<OrderNotice>), RequestError> {
        let order = order_in_scope(store, order_id, principal, &action)?;
        let actor = principal.actor();
        let at = self.step_time(store, &order, principal, at_ms)?;
        action.check_text()?;
        let on = StepOn {
            order: &order,
            principal,
            actor: &actor,
            at,
        };
        let mut out = StepOutcome::default();
        let (kind, note) = self.step(store, &on, action, &mut out)?;
        let StepOutcome {
            update,
            mut follow_ups,
            parts_used,
        } = out;
        if matches!(kind.as_str(), "reassigned" | "cancelled" | "merged") {
            if let Some(note) =
                delegation::void_after(store, &order, &kind, update.team_id.as_deref(), at)?
            {
                follow_ups.push(("delegation_voided", note));
            }
        }
        store.append_event(order_id, at, &actor, &kind, &note, &update)?;
        if let Some(effect) = stock_effect(&kind, &parts_used) {
            let stepped = store
                .order_row(order_id)?
                .ok_or(OrderError::NotFound(order_id))?;
            follow_ups.extend(self.stock_for_step(store, &stepped, effect, at, &actor)?);
        }
        for (kind, note) in &follow_ups {
            store.append_event(order_id, at, &actor, kind, note, &OrderUpdate::default())?;
        }
        let row = store
            .order_row(order_id)?
            .ok_or(OrderError::NotFound(order_id))?;
        let mut notices = vec![OrderNotice::of(&row, &kind, at, note)];
        for (kind, note) in follow_ups {
            notices.push(OrderNotice::of(&row, kind, at, note));
        }
        Ok((row, notices))
    }

    /// When a step happens: the server's clock, never before the order's last event (so its
    /// history stays in order when the clock is behind: event-time mode, a reading from the
    /// future); only an operator may set one, within [`TimeWindow::order_step`].
    fn step_time(
        &self,
        store: &Store,
        order: &OrderRow,
        principal: &Principal,
        at_ms: Option<i64>,
    ) -> Result<i64, RequestError> {
        let now = self.clock.now_ms();
        let last = store
            .last_event_ms(order.id)?
            .map_or(order.created_at_ms, |last| last.max(order.created_at_ms));
        Ok(match at_ms {
            None => now.max(last),
            Some(_) if principal.role != Role::Operator => {
                return Err(RequestError::Forbidden(format!(
                    "at_ms: a {:?} token may not set an event time; omit it and the server's \
                     clock is used (only an operator may set it, from the order's last event to \
                     server now + 60 s)",
                    principal.role
                )))
            }
            Some(t) => TimeWindow::order_step(last, now.saturating_add(self.clock_lead_ms))
                .check("at_ms", t)
                .map_err(|m| RequestError::out_of_range("at_ms", m))?,
        })
    }

    /// Checks and applies one action: what it changes goes into `out`; returns the kind and
    /// note of the step's event.
    fn step(
        &self,
        store: &mut Store,
        on: &StepOn,
        action: OrderAction,
        out: &mut StepOutcome,
    ) -> Result<(String, String), RequestError> {
        let (order, at) = (on.order, on.at);
        let update = &mut out.update;
        Ok(match action {
            OrderAction::Dispatch {
                team_id,
                technician_id,
            } => self.dispatch_step(store, on, team_id, technician_id, out)?,
            OrderAction::Reassign {
                team_id,
                technician_id,
                reason,
            } => Self::reassign_step(
                store,
                on,
                &team_id,
                technician_id.as_deref(),
                &reason,
                update,
            )?,
            OrderAction::Accept => accept_step(store, on, update)?,
            OrderAction::Arrive => {
                update.state = Some(next_state(order.state, &Step::Arrive)?);
                update.on_site_at_ms = Some(at);
                ("arrived".into(), String::new())
            }
            OrderAction::Resolve {
                parts,
                misuse,
                note,
            } => resolve_step(store, on, &parts, misuse, &note, out)?,
            OrderAction::ConfirmMisuse { note } => confirm_misuse_step(store, on, &note, update)?,
            OrderAction::Callback {
                satisfaction,
                solved,
                note,
            } => callback_step(order, satisfaction, solved, &note, update)?,
            OrderAction::Close => {
                update.state = Some(next_state(order.state, &Step::Close)?);
                update.closed_at_ms = Some(at);
                ("closed".into(), String::new())
            }
            OrderAction::Cancel { reason } => {
                if reason.trim().is_empty() {
                    return Err(RequestError::invalid("a cancellation needs a reason"));
                }
                update.state = Some(next_state(order.state, &Step::Cancel)?);
                update.closed_at_ms = Some(at);
                ("cancelled".into(), reason)
            }
            OrderAction::Merge { into } => merge_step(store, on, into, update)?,
            OrderAction::Escalate { note } => self.escalate_step(on, &note)?,
            OrderAction::Delegate {
                team_id,
                technician_id,
                reason,
            } => self.delegate_step(
                store,
                on,
                &team_id,
                technician_id.as_deref(),
                &reason,
                update,
            )?,
        })
    }

    /// Dispatch to the team named (with its technician, if one is), else to the one routing
    /// picks; escalated at once when nobody is predicted on site before the deadline.
    fn dispatch_step(
        &self,
        store: &Store,
        on: &StepOn,
        team_id: Option<String>,
        technician_id: Option<String>,
        out: &mut StepOutcome,
    ) -> Result<(String, String), RequestError> {
        let update = &mut out.update;
        update.state = Some(next_state(on.order.state, &Step::Dispatch)?);
        let assignment = match team_id {
            Some(team) => Self::named_assignment(
                store,
                on.order,
                on.principal,
                &team,
                technician_id.as_deref(),
            )?,
            None => dispatch::route(store, on.order)?.ok_or_else(|| {
                RequestError::invalid("no team covers this order; name one with team_id")
            })?,
        };
        update.team_id = Some(assignment.team.id.clone());
        update.dispatched_at_ms = Some(on.at);
        if let Some(note) = self.escalate_late(on.order, &assignment, on.at, update) {
            out.follow_ups.push(("escalated", note));
        }
        out.update.technician_id = assignment.technician.map(|t| t.id);
        self.metrics.order_dispatched();
        Ok(("dispatched".into(), assignment.note))
    }

    /// Reassignment to the team named (with its technician, if one is), with the reason.
    fn reassign_step(
        store: &Store,
        on: &StepOn,
        team_id: &str,
        technician_id: Option<&str>,
        reason: &str,
        update: &mut OrderUpdate,
    ) -> Result<(String, String), RequestError> {
        update.state = Some(next_state(on.order.state, &Step::Reassign)?);
        let assignment =
            Self::named_assignment(store, on.order, on.principal, team_id, technician_id)?;
        update.team_id = Some(assignment.team.id.clone());
        update.technician_id = assignment.technician.map(|t| t.id);
        Ok((
            "reassigned".into(),
            format!("{}; reason: {reason}", assignment.note),
        ))
    }

    /// The 督办 at dispatch when the predicted arrival misses the on-site deadline
    /// ([`dispatch::late_arrival`]): counted, logged, and the on-site stage marked warned and
    /// escalated in `update` so the SLA monitor does not raise it again at the breach. Returns
    /// the note of the `escalated` event to record after the dispatch.
    pub(super) fn escalate_late(
        &self,
        order: &OrderRow,
        assignment: &dispatch::Assignment,
        at: i64,
        update: &mut OrderUpdate,
    ) -> Option<String> {
        let note = dispatch::late_arrival(&self.sla, order, assignment, at)?;
        let stage = sla::Stage::OnSite;
        update.sla_flags |= stage.warned_bit() | stage.breached_bit();
        self.metrics.escalation();
        tracing::warn!(order = order.id, township = %order.township, "no technician predicted on site before the deadline: escalated at dispatch");
        Some(note)
    }

    /// A manual escalation (督办) of an open order; a bureau's needs a note.
    fn escalate_step(&self, on: &StepOn, note: &str) -> Result<(String, String), RequestError> {
        if on.principal.role == Role::ReadOnly && note.trim().is_empty() {
            return Err(RequestError::invalid(
                "note: a bureau's 督办 needs a note saying what to hurry and why",
            ));
        }
        if !on.order.state.is_open() {
            return Err(RequestError::invalid(format!(
                "order is {}",
                on.order.state.as_str()
            )));
        }
        self.metrics.escalation();
        Ok(("escalated".into(), format!("督办 by {}: {note}", on.actor)))
    }

    /// Delegation to another vendor's team ([`delegation::plan`]), with its ledger entry.
    fn delegate_step(
        &self,
        store: &mut Store,
        on: &StepOn,
        team_id: &str,
        technician_id: Option<&str>,
        reason: &str,
        update: &mut OrderUpdate,
    ) -> Result<(String, String), RequestError> {
        update.state = Some(next_state(on.order.state, &Step::Delegate)?);
        let planned = delegation::plan(
            store,
            on.order,
            on.principal,
            team_id,
            technician_id,
            reason,
            self.delegation.call_out_fee_cents,
            on.at,
        )?;
        let entry = planned.entry;
        update.team_id = Some(entry.to_team.clone());
        update.technician_id = planned.assignment.technician.map(|t| t.id);
        let ledger = store.add_delegation(&entry)?;
        self.metrics.order_delegated();
        tracing::info!(
            order = on.order.id,
            from_vendor = %entry.from_vendor,
            to_vendor = %entry.to_vendor,
            to_team = %entry.to_team,
            period = %entry.period,
            fee_cents = entry.fee_cents,
            ledger,
            actor = on.actor,
            "order delegated to another vendor of the same period"
        );
        Ok((
            Step::Delegate.kind().into(),
            format!(
                "delegated by vendor {} ({}) to vendor {}: {}; {} owes {} the call-out fee {:.2} CNY and the parts of the repair (ledger entry {ledger}); reason: {reason}",
                entry.from_vendor,
                entry.from_team,
                entry.to_vendor,
                planned.assignment.note,
                entry.from_vendor,
                entry.to_vendor,
                entry.fee_cents as f64 / 100.0,
            ),
        ))
    }
}

/// The order a step acts on, who acts and when.
struct StepOn<'a> {
    order: &'a OrderRow,
    principal: &'a Principal,
    actor: &'a str,
    at: i64,
}

/// What a step writes: its changes to the order, and the events recorded after the step's own,
/// at the same time.
#[derive(Default)]
struct StepOutcome {
    update: OrderUpdate,
    follow_ups: Vec<(&'static str, String)>,
    /// The parts a resolve names (code, quantity), for the stock.
    parts_used: Vec<(String, i64)>,
}

/// What a step of `kind` does to the stock: a (new) technician gets the parts reserved, a
/// repair consumes what it used, an order that ends gives its holds back.
fn stock_effect<'a>(kind: &str, parts_used: &'a [(String, i64)]) -> Option<StockEffect<'a>> {
    match kind {
        "dispatched" | "reassigned" | "delegated" => Some(StockEffect::Assigned),
        ORDER_EVENT_RESOLVED => Some(StockEffect::Resolved(parts_used)),
        "cancelled" | "merged" => Some(StockEffect::Ended),
        _ => None,
    }
}

/// The order, when `principal` may act on it with `action`. Another team's order does not exist
/// for the caller; a township officer is told whose township it is; a read-only token (a 区/市
/// bureau) changes nothing but may urge (督办).
fn order_in_scope(
    store: &Store,
    order_id: i64,
    principal: &Principal,
    action: &OrderAction,
) -> Result<OrderRow, RequestError> {
    let order = store
        .order_row(order_id)?
        .ok_or(OrderError::NotFound(order_id))?;
    if !principal.can_read(&order) {
        if principal.role == Role::Township {
            return Err(RequestError::Forbidden(format!(
                "order {order_id} is in township {:?}; this token acts for township {:?} only",
                order.township,
                principal.township.as_deref().unwrap_or_default()
            )));
        }
        return Err(OrderError::NotFound(order_id).into());
    }
    if principal.role == Role::ReadOnly && !matches!(action, OrderAction::Escalate { .. }) {
        return Err(RequestError::Forbidden(
            "a ReadOnly (bureau) token may only escalate (督办) an order".into(),
        ));
    }
    Ok(order)
}

/// Acceptance; a technician's own token takes the order over for the technician, when the
/// registry has them in the order's team.
fn accept_step(
    store: &Store,
    on: &StepOn,
    update: &mut OrderUpdate,
) -> Result<(String, String), RequestError> {
    let order = on.order;
    update.state = Some(next_state(order.state, &Step::Accept)?);
    update.accepted_at_ms = Some(on.at);
    let mut note = String::new();
    if let (Some(me), Some(team)) = (&on.principal.technician, &order.team_id) {
        if order.technician_id.as_deref() != Some(me.as_str())
            && store
                .technician_loads(team)?
                .iter()
                .any(|(technician, _)| &technician.id == me)
        {
            update.technician_id = Some(me.clone());
            note = format!("taken by technician {me}");
        }
    }
    Ok(("accepted".into(), note))
}

/// The parts of a repair, each in the unified price list with a quantity of 1 to 100, and
/// their total value, at most [`MAX_PARTS_CENTS`].
fn priced_parts(
    store: &Store,
    parts: &[PartUse],
) -> Result<(Vec<(crate::registry::Part, i64)>, i64), RequestError> {
    if parts.len() > MAX_PART_LINES {
        return Err(RequestError::out_of_range(
            "parts",
            format!(
                "parts: {} lines, at most {MAX_PART_LINES} (give a quantity instead)",
                parts.len()
            ),
        ));
    }
    let mut used = Vec::with_capacity(parts.len());
    for part in parts {
        if !(1..=100).contains(&part.quantity) {
            return Err(RequestError::invalid(format!(
                "part {:?}: quantity {} is not 1..=100",
                part.code, part.quantity
            )));
        }
        let known = store.part(&part.code)?.ok_or_else(|| {
            RequestError::invalid(format!(
                "part {:?} is not in the unified price list",
                part.code
            ))
        })?;
        used.push((known, part.quantity));
    }
    let mut parts_cents: i64 = 0;
    for (part, quantity) in &used {
        parts_cents = part
            .price_cents
            .checked_mul(*quantity)
            .and_then(|line| parts_cents.checked_add(line))
            .filter(|total| (0..=MAX_PARTS_CENTS).contains(total))
            .ok_or_else(|| {
                RequestError::out_of_range(
                    "parts",
                    format!(
                        "parts: the total value leaves 0..={} CNY at part {:?} ({} fen x{quantity}); check the price list",
                        MAX_PARTS_CENTS / 100,
                        part.code,
                        part.price_cents
                    ),
                )
            })?;
    }
    Ok((used, parts_cents))
}

/// `; {note}`, or nothing for an empty note.
fn note_suffix(note: &str) -> String {
    if note.is_empty() {
        String::new()
    } else {
        format!("; {note}")
    }
}

/// The repair: its parts and what the resident pays. A team's finding of misuse is a claim
/// (a follow-up event): the resident is charged for it only once an operator confirms it.
fn resolve_step(
    store: &mut Store,
    on: &StepOn,
    parts: &[PartUse],
    misuse: bool,
    note: &str,
    out: &mut StepOutcome,
) -> Result<(String, String), RequestError> {
    let order = on.order;
    let update = &mut out.update;
    update.state = Some(next_state(order.state, &Step::Resolve)?);
    let (used, parts_cents) = priced_parts(store, parts)?;
    let applied = misuse && on.principal.role == Role::Operator;
    let claimed = misuse && !applied;
    if claimed && note.trim().is_empty() {
        return Err(RequestError::invalid(
            "note: a misuse claim needs a note saying what was found, for the operator who confirms it",
        ));
    }
    let charge = charge(parts_cents, order.in_warranty.unwrap_or(false), applied);
    store.add_parts(order.id, &used)?;
    out.parts_used = used
        .iter()
        .map(|(part, quantity)| (part.code.clone(), *quantity))
        .collect();
    update.resolved_at_ms = Some(on.at);
    update.parts_cents = Some(charge.parts_cents);
    update.resident_pays_cents = Some(charge.resident_pays_cents);
    update.misuse = Some(applied);
    if claimed {
        out.follow_ups.push((
            ORDER_EVENT_MISUSE_CLAIMED,
            format!(
                "misuse claimed by {}; the resident is not charged for it until an operator confirms it (confirm_misuse)",
                on.actor
            ),
        ));
    }
    let parts_text: Vec<String> = used
        .iter()
        .map(|(p, q)| format!("{} x{q}", p.code))
        .collect();
    Ok((
        ORDER_EVENT_RESOLVED.into(),
        format!(
            "parts: [{}]; parts value {:.2} CNY; resident pays {:.2} CNY{}{}",
            parts_text.join(", "),
            charge.parts_cents as f64 / 100.0,
            charge.resident_pays_cents as f64 / 100.0,
            if applied {
                "; misuse"
            } else if claimed {
                "; misuse claimed, awaiting an operator's confirmation"
            } else {
                ""
            },
            note_suffix(note)
        ),
    ))
}

/// An operator confirms a team's pending misuse claim: the resident is charged for the parts.
fn confirm_misuse_step(
    store: &Store,
    on: &StepOn,
    note: &str,
    update: &mut OrderUpdate,
) -> Result<(String, String), RequestError> {
    let order = on.order;
    if on.principal.role != Role::Operator {
        return Err(RequestError::Forbidden(format!(
            "a {:?} token may not confirm misuse; only an operator may",
            on.principal.role
        )));
    }
    if !can_confirm_misuse(order.state) {
        return Err(TransitionError {
            step: "confirm misuse on",
            state: order.state.as_str(),
        }
        .into());
    }
    let kinds = store.event_kinds(order.id)?;
    if !misuse_claim_pending(kinds.iter().map(String::as_str)) {
        return Err(RequestError::Conflict(format!(
            "order {} has no misuse claim awaiting confirmation (a team's resolve with misuse: true records one)",
            order.id
        )));
    }
    let charge = charge(order.parts_cents, order.in_warranty.unwrap_or(false), true);
    update.misuse = Some(true);
    update.resident_pays_cents = Some(charge.resident_pays_cents);
    Ok((
        ORDER_EVENT_MISUSE_CONFIRMED.into(),
        format!(
            "misuse confirmed: parts value {:.2} CNY; resident pays {:.2} CNY{}",
            charge.parts_cents as f64 / 100.0,
            charge.resident_pays_cents as f64 / 100.0,
            note_suffix(note)
        ),
    ))
}

/// The resident's callback: satisfaction 1 to 5; not solved reopens the order.
fn callback_step(
    order: &OrderRow,
    satisfaction: i64,
    solved: bool,
    note: &str,
    update: &mut OrderUpdate,
) -> Result<(String, String), RequestError> {
    if !(1..=5).contains(&satisfaction) {
        return Err(RequestError::invalid(format!(
            "satisfaction {satisfaction} is not 1..=5"
        )));
    }
    let step = Step::Callback { solved };
    update.state = Some(next_state(order.state, &step)?);
    update.satisfaction = Some(satisfaction);
    update.reopen = !solved;
    Ok((
        step.kind().into(),
        format!(
            "satisfaction {satisfaction}/5; {}{}",
            if solved {
                "solved"
            } else {
                "NOT solved: order reopened"
            },
            note_suffix(note)
        ),
    ))
}

/// The order merged into another open order in the caller's scope, which notes it.
fn merge_step(
    store: &mut Store,
    on: &StepOn,
    into: i64,
    update: &mut OrderUpdate,
) -> Result<(String, String), RequestError> {
    let order_id = on.order.id;
    if into == order_id {
        return Err(RequestError::invalid(
            "an order cannot be merged into itself",
        ));
    }
    let target = store
        .order_row(into)?
        .filter(|target| on.principal.can_read(target))
        .ok_or(OrderError::NotFound(into))?;
    if !target.state.is_open() {
        return Err(RequestError::invalid(format!(
            "order {into} is {}",
            target.state.as_str()
        )));
    }
    update.state = Some(next_state(on.order.state, &Step::Merge)?);
    update.closed_at_ms = Some(on.at);
    store.append_event(
        into,
        on.at,
        on.actor,
        "merged_from",
        &format!("order {order_id} merged into this one"),
        &OrderUpdate::default(),
    )?;
    Ok(("merged".into(), format!("merged into order {into}")))
}
