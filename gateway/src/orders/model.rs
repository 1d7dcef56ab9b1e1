//! The work-order lifecycle as a state machine over events: created -> dispatched -> accepted
//! -> on site -> resolved -> callback done -> closed, plus cancelled and merged, with reopening
//! when the resident says the problem is not solved. Also the charge rule of the scheme.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Kind of the first event of every order.
pub const ORDER_EVENT_CREATED: &str = "created";

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
        (Step::Reassign, S::Dispatched | S::Accepted) => S::Dispatched,
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
}
