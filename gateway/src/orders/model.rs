//! The work-order lifecycle as a state machine over events: created -> dispatched -> accepted
//! -> on site -> resolved -> callback done -> closed, plus cancelled and merged, with reopening
//! when the resident says the problem is not solved. Also the charge rule of the scheme, the
//! misuse claim a team records and an operator confirms, and the windows within which a
//! client-supplied time is accepted (the record's times are the server's).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Kind of the first event of every order.
pub const ORDER_EVENT_CREATED: &str = "created";
/// Kind of the event of a resolve.
pub const ORDER_EVENT_RESOLVED: &str = "resolved";
/// Kind of the event a team's `misuse: true` records: a claim, which does not charge the
/// resident until an operator confirms it.
pub const ORDER_EVENT_MISUSE_CLAIMED: &str = "misuse_claimed";
/// Kind of the event of an operator's confirmation of a misuse claim; the charge follows it.
pub const ORDER_EVENT_MISUSE_CONFIRMED: &str = "misuse_confirmed";

/// The order category of a preventive visit the cold-wave sweep (`crate::prevention`) opens
/// ahead of a forecast cold wave: a technician checks a unit most likely to fail (its reasons
/// are in the order's summary). Low priority: nothing has failed yet.
pub const PREVENTIVE_VISIT_CATEGORY: &str = "preventive_visit";

/// How far ahead of the server's clock a client-supplied time may be: the clock skew of an
/// operator's machine, no more.
pub const FUTURE_TOLERANCE_MS: i64 = 60_000;
/// How far back an operator may date a complaint's `received_at_ms`: a hotline clerk may log a
/// call at the end of a shift or the next morning, and the 12345 platform forwards some tickets
/// the next day. Older than that, the date would open an order whose SLA clocks had run out
/// before anyone saw it, and would rewrite yesterday's report, so such a complaint is taken
/// at the server's time with the real date in its text.
pub const COMPLAINT_BACKDATE_MS: i64 = 24 * 3_600_000;

/// Where an order stands, derived from its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    Created,
    Dispatched,
    Accepted,
    OnSite,
    Resolved,
    CallbackDone,
    Closed,
    Cancelled,
    Merged,
}

impl OrderState {
    pub const ALL: [OrderState; 9] = [
        OrderState::Created,
        OrderState::Dispatched,
        OrderState::Accepted,
        OrderState::OnSite,
        OrderState::Resolved,
        OrderState::CallbackDone,
        OrderState::Closed,
        OrderState::Cancelled,
        OrderState::Merged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Created => "created",
            OrderState::Dispatched => "dispatched",
            OrderState::Accepted => "accepted",
            OrderState::OnSite => "on_site",
            OrderState::Resolved => "resolved",
            OrderState::CallbackDone => "callback_done",
            OrderState::Closed => "closed",
            OrderState::Cancelled => "cancelled",
            OrderState::Merged => "merged",
        }
    }

    pub fn parse(value: &str) -> Option<OrderState> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// True while the order still needs work.
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            OrderState::Closed | OrderState::Cancelled | OrderState::Merged
        )
    }

    /// True before the technician has fixed it (the heater may still be down).
    pub fn awaits_repair(self) -> bool {
        matches!(
            self,
            OrderState::Created
                | OrderState::Dispatched
                | OrderState::Accepted
                | OrderState::OnSite
        )
    }
}

/// What happened to an order. Each is stored as one event with time, actor and note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Dispatch,
    Reassign,
    /// A warranty vendor hands the order to another vendor of the same period
    /// (`orders::delegation`); the order goes back to `dispatched` with the other team.
    Delegate,
    Accept,
    Arrive,
    Resolve,
    /// Callback (回访) with the resident; `solved = false` reopens the order.
    Callback {
        solved: bool,
    },
    Close,
    Cancel,
    Merge,
}

impl Step {
    /// The verb used in error messages.
    pub fn verb(&self) -> &'static str {
        match self {
            Step::Dispatch => "dispatch",
            Step::Reassign => "reassign",
            Step::Delegate => "delegate",
            Step::Accept => "accept",
            Step::Arrive => "arrive at",
            Step::Resolve => "resolve",
            Step::Callback { .. } => "record a callback for",
            Step::Close => "close",
            Step::Cancel => "cancel",
            Step::Merge => "merge",
        }
    }

    /// The event kind stored for this step.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Dispatch => "dispatched",
            Step::Reassign => "reassigned",
            Step::Delegate => "delegated",
            Step::Accept => "accepted",
            Step::Arrive => "arrived",
            Step::Resolve => "resolved",
            Step::Callback { solved: true } => "callback",
            Step::Callback { solved: false } => "reopened",
            Step::Close => "closed",
            Step::Cancel => "cancelled",
            Step::Merge => "merged",
        }
    }
}

/// A step that does not fit the order's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {step} an order that is {state}")]
pub struct TransitionError {
    pub step: &'static str,
    pub state: &'static str,
}

/// The state after `step`, or why it is not allowed now.
pub fn next_state(state: OrderState, step: &Step) -> Result<OrderState, TransitionError> {
    use OrderState as S;
    let next = match (step, state) {
        (Step::Dispatch, S::Created) => S::Dispatched,
        (Step::Reassign | Step::Delegate, S::Dispatched | S::Accepted) => S::Dispatched,
        (Step::Accept, S::Dispatched) => S::Accepted,
        (Step::Arrive, S::Accepted) => S::OnSite,
        (Step::Resolve, S::OnSite) => S::Resolved,
        (Step::Callback { solved: true }, S::Resolved) => S::CallbackDone,
        (Step::Callback { solved: false }, S::Resolved) => S::Dispatched,
        (Step::Close, S::CallbackDone) => S::Closed,
        (Step::Cancel | Step::Merge, s) if s.is_open() => {
            if matches!(step, Step::Cancel) {
                S::Cancelled
            } else {
                S::Merged
            }
        }
        _ => {
            return Err(TransitionError {
                step: step.verb(),
                state: state.as_str(),
            })
        }
    };
    Ok(next)
}

/// Who pays for a repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Charge {
    /// What the resident pays, in fen (0.01 CNY).
    pub resident_pays_cents: i64,
    /// Value of the parts used at the unified price list, in fen.
    pub parts_cents: i64,
}

/// The scheme's rule: in warranty the vendor repairs free of charge; out of warranty the
/// resident pays only for replaced parts at the unified price list; damage from misuse is the
/// resident's cost even in warranty.
pub fn charge(parts_cents: i64, in_warranty: bool, misuse: bool) -> Charge {
    let resident_pays_cents = if in_warranty && !misuse {
        0
    } else {
        parts_cents
    };
    Charge {
        resident_pays_cents,
        parts_cents,
    }
}

/// Whether a misuse claim awaits an operator's confirmation: of the order's event kinds
/// (oldest first), the latest `resolved`, `misuse_claimed` or `misuse_confirmed` is a claim.
/// A resolve after a reopening replaces an earlier claim.
pub fn misuse_claim_pending<'a>(kinds: impl IntoIterator<Item = &'a str>) -> bool {
    kinds
        .into_iter()
        .filter(|kind| {
            matches!(
                *kind,
                ORDER_EVENT_RESOLVED | ORDER_EVENT_MISUSE_CLAIMED | ORDER_EVENT_MISUSE_CONFIRMED
            )
        })
        .last()
        == Some(ORDER_EVENT_MISUSE_CLAIMED)
}

/// A misuse claim may be confirmed while the repair stands: resolved, or after the callback,
/// and before the order is closed.
pub fn can_confirm_misuse(state: OrderState) -> bool {
    matches!(state, OrderState::Resolved | OrderState::CallbackDone)
}

/// The times a client-supplied event time may take, inclusive, in Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    pub earliest_ms: i64,
    pub latest_ms: i64,
    /// Why these bounds, for the error message.
    pub why: &'static str,
}

impl TimeWindow {
    /// An operator's time for an order step: not before the order's last event (its history
    /// stays in order), not more than [`FUTURE_TOLERANCE_MS`] after the server's clock.
    pub fn order_step(last_event_ms: i64, now_ms: i64) -> Self {
        Self {
            earliest_ms: last_event_ms,
            latest_ms: now_ms.saturating_add(FUTURE_TOLERANCE_MS),
            why: "from the order's last event to server now + 60 s",
        }
    }

    /// An operator's `received_at_ms` for a complaint: at most [`COMPLAINT_BACKDATE_MS`]
    /// before the server's clock, at most [`FUTURE_TOLERANCE_MS`] after it.
    pub fn complaint(now_ms: i64) -> Self {
        Self {
            earliest_ms: now_ms.saturating_sub(COMPLAINT_BACKDATE_MS),
            latest_ms: now_ms.saturating_add(FUTURE_TOLERANCE_MS),
            why: "from server now - 24 h to server now + 60 s",
        }
    }

    /// `value` if it lies in the window, else a message that names `field`, the value and
    /// the window.
    pub fn check(&self, field: &str, value: i64) -> Result<i64, String> {
        if (self.earliest_ms..=self.latest_ms).contains(&value) {
            return Ok(value);
        }
        let window = if self.earliest_ms > self.latest_ms {
            " (empty: the server's clock is behind the order's last event; omit the field)"
        } else {
            ""
        };
        Err(format!(
            "{field} {} is outside the allowed window [{}, {}] ({}){window}",
            time_text(value),
            time_text(self.earliest_ms),
            time_text(self.latest_ms),
            self.why,
        ))
    }
}

/// A Unix time in ms with its China Standard Time reading when it has one in years 1..=9999,
/// e.g. `1796083200000 (2026-12-01T08:00:00+08:00)`.
pub fn time_text(ms: i64) -> String {
    // 0001-01-01 and 10000-01-01 in Unix ms.
    const FIRST_MS: i64 = -62_135_596_800_000;
    const END_MS: i64 = 253_402_300_800_000;
    let Some(local) = ms
        .checked_add(8 * 3_600_000)
        .filter(|l| (FIRST_MS..END_MS).contains(l))
    else {
        return ms.to_string();
    };
    let day_ms = super::calendar::DAY_MS;
    let (y, m, d) = super::calendar::civil_from_days(local.div_euclid(day_ms));
    let in_day = local.rem_euclid(day_ms) / 1000;
    format!(
        "{ms} ({y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+08:00)",
        in_day / 3600,
        in_day / 60 % 60,
        in_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_parse_their_names() {
        for state in OrderState::ALL {
            assert_eq!(OrderState::parse(state.as_str()), Some(state));
        }
        assert_eq!(OrderState::parse("done"), None);
        assert!(OrderState::OnSite.is_open());
        assert!(!OrderState::Merged.is_open());
    }

    #[test]
    fn the_full_lifecycle_is_allowed_in_order() {
        let mut state = OrderState::Created;
        for step in [
            Step::Dispatch,
            Step::Accept,
            Step::Arrive,
            Step::Resolve,
            Step::Callback { solved: true },
            Step::Close,
        ] {
            state = next_state(state, &step).expect("allowed");
        }
        assert_eq!(state, OrderState::Closed);
    }

    #[test]
    fn steps_out_of_order_are_refused_with_the_state() {
        let error = next_state(OrderState::Created, &Step::Arrive).expect_err("refused");
        assert_eq!(
            error.to_string(),
            "cannot arrive at an order that is created"
        );
        assert!(next_state(OrderState::Closed, &Step::Cancel).is_err());
        assert!(next_state(OrderState::Resolved, &Step::Close).is_err());
    }

    #[test]
    fn an_unsolved_callback_reopens_the_order() {
        assert_eq!(
            next_state(OrderState::Resolved, &Step::Callback { solved: false }),
            Ok(OrderState::Dispatched)
        );
    }

    #[test]
    fn charges_follow_the_scheme() {
        assert_eq!(charge(12_000, true, false).resident_pays_cents, 0);
        assert_eq!(charge(12_000, false, false).resident_pays_cents, 12_000);
        assert_eq!(charge(12_000, true, true).resident_pays_cents, 12_000);
        assert_eq!(charge(0, false, false).resident_pays_cents, 0);
    }

    #[test]
    fn a_misuse_claim_waits_for_confirmation_and_a_new_resolve_replaces_it() {
        let claimed = ["created", "dispatched", "resolved", "misuse_claimed"];
        assert!(misuse_claim_pending(claimed));
        assert!(misuse_claim_pending(
            claimed.into_iter().chain(["callback", "sla_warning"])
        ));
        assert!(!misuse_claim_pending(
            claimed.into_iter().chain(["misuse_confirmed"])
        ));
        assert!(!misuse_claim_pending(
            claimed.into_iter().chain(["reopened", "resolved"])
        ));
        assert!(!misuse_claim_pending(["created", "resolved"]));
        assert!(can_confirm_misuse(OrderState::CallbackDone));
        assert!(!can_confirm_misuse(OrderState::Closed));
        assert!(!can_confirm_misuse(OrderState::OnSite));
    }

    #[test]
    fn time_windows_are_inclusive_saturate_and_name_the_field() {
        let now = 1_796_083_200_000;
        let step = TimeWindow::order_step(now - 1_000, now);
        assert_eq!(step.check("at_ms", now - 1_000), Ok(now - 1_000));
        assert_eq!(step.check("at_ms", now + 60_000), Ok(now + 60_000));
        let early = step.check("at_ms", 1).expect_err("before the last event");
        assert!(
            early.starts_with("at_ms 1 (1970-01-01T08:00:00+08:00) is outside the allowed window [1796083199000 (2026-12-01T07:59:59+08:00), 1796083260000 (2026-12-01T08:01:00+08:00)]"),
            "{early}"
        );
        let late = step.check("at_ms", i64::MAX).expect_err("far future");
        assert!(
            late.starts_with(&format!("at_ms {} is outside", i64::MAX)),
            "{late}"
        );
        assert!(step.check("at_ms", i64::MIN).is_err());
        let saturated = TimeWindow::order_step(i64::MAX - 5, i64::MAX - 5);
        assert_eq!(saturated.latest_ms, i64::MAX);
        let behind = TimeWindow::order_step(now + 120_000, now);
        assert!(behind
            .check("at_ms", now)
            .expect_err("empty")
            .contains("empty"));
        let complaint = TimeWindow::complaint(now);
        assert!(complaint
            .check("received_at_ms", now - 24 * 3_600_000)
            .is_ok());
        assert!(complaint
            .check("received_at_ms", now - 24 * 3_600_000 - 1)
            .expect_err("too old")
            .contains("received_at_ms"));
        assert_eq!(TimeWindow::complaint(i64::MIN + 1).earliest_ms, i64::MIN);
    }
}
