//! The work-order lifecycle: created -> dispatched -> accepted -> on site -> resolved ->
//! callback done -> closed, plus cancelled and merged.

use serde::Serialize;

/// Kind of the first event of every order.
pub const ORDER_EVENT_CREATED: &str = "created";

/// Where an order stands, derived from its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
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
}
