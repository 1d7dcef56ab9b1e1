//! SLA clocks (dispatch 10 min, on site 2 h, repaired 4 h, all from creation): which stage of
//! an order is due, warned or breached at a given time. A warning comes before a breach; a
//! breach raises an escalation (督办) to the township and the centre. Pure: the caller gives the
//! time, so tests move it at will.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::store::OrderRow;

/// The three clocks the scheme sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Dispatch,
    OnSite,
    Repaired,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::Dispatch, Stage::OnSite, Stage::Repaired];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Dispatch => "dispatch",
            Stage::OnSite => "on_site",
            Stage::Repaired => "repaired",
        }
    }

    /// Bit in `orders.sla_flags` recording that this stage's warning was raised.
    pub fn warned_bit(self) -> i64 {
        match self {
            Stage::Dispatch => 1,
            Stage::OnSite => 4,
            Stage::Repaired => 16,
        }
    }

    /// Bit recording that this stage breached and was escalated.
    pub fn breached_bit(self) -> i64 {
        self.warned_bit() << 1
    }

    /// When the stage was reached, if it was.
    pub fn reached_at(self, order: &OrderRow) -> Option<i64> {
        match self {
            Stage::Dispatch => order.dispatched_at_ms,
            Stage::OnSite => order.on_site_at_ms,
            Stage::Repaired => order.resolved_at_ms,
        }
    }
}

/// The SLA deadlines, measured from an order's creation.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlaConfig {
    /// Dispatch within this (scheme: 10 minutes).
    #[serde(default = "default_dispatch", with = "humantime_serde")]
    pub dispatch: Duration,
    /// Technician on site within this (scheme: 2 hours).
    #[serde(default = "default_on_site", with = "humantime_serde")]
    pub on_site: Duration,
    /// Repair finished within this (scheme: 4 hours).
    #[serde(default = "default_repaired", with = "humantime_serde")]
    pub repaired: Duration,
    /// A warning is raised when this share of a deadline has passed (0.5..1.0).
    #[serde(default = "default_warn_at")]
    pub warn_at: f64,
    /// How often open orders are checked against their deadlines.
    #[serde(default = "default_check_every", with = "humantime_serde")]
    pub check_every: Duration,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            dispatch: default_dispatch(),
            on_site: default_on_site(),
            repaired: default_repaired(),
            warn_at: default_warn_at(),
            check_every: default_check_every(),
        }
    }
}

fn default_dispatch() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_on_site() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_repaired() -> Duration {
    Duration::from_secs(4 * 3600)
}
fn default_warn_at() -> f64 {
    0.75
}
fn default_check_every() -> Duration {
    Duration::from_secs(10)
}

impl SlaConfig {
    /// The deadline of a stage in milliseconds after creation.
    pub fn deadline_ms(&self, stage: Stage) -> i64 {
        let duration = match stage {
            Stage::Dispatch => self.dispatch,
            Stage::OnSite => self.on_site,
            Stage::Repaired => self.repaired,
        };
        i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
    }

    /// Whether a stage was met: `Some(true)` reached in time, `Some(false)` late or overdue
    /// at `now_ms`, `None` still running.
    pub fn met(&self, order: &OrderRow, stage: Stage, now_ms: i64) -> Option<bool> {
        let deadline = order.created_at_ms.saturating_add(self.deadline_ms(stage));
        match stage.reached_at(order) {
            Some(at) => Some(at <= deadline),
            None if now_ms > deadline => Some(false),
            None => None,
        }
    }
}

/// A warning or breach to record on an order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SlaNotice {
    pub order_id: i64,
    pub township: String,
    pub stage: Stage,
    /// `sla_warning` or `escalated`.
    pub kind: &'static str,
    /// When the threshold was crossed (warning time or deadline), Unix ms.
    pub at_ms: i64,
    pub note: String,
}

/// Warnings and breaches due on `order` at `now_ms` that were not raised yet.
pub fn due(config: &SlaConfig, order: &OrderRow, now_ms: i64) -> Vec<SlaNotice> {
    let mut notices = Vec::new();
    if !order.state.is_open() {
        return notices;
    }
    for stage in Stage::ALL {
        if stage.reached_at(order).is_some() {
            continue;
        }
        let deadline_ms = config.deadline_ms(stage);
        let deadline = order.created_at_ms.saturating_add(deadline_ms);
        let warn_at = order.created_at_ms + (deadline_ms as f64 * config.warn_at) as i64;
        let minutes = deadline_ms / 60_000;
        if now_ms >= deadline && order.sla_flags & stage.breached_bit() == 0 {
            notices.push(SlaNotice {
                order_id: order.id,
                township: order.township.clone(),
                stage,
                kind: "escalated",
                at_ms: deadline,
                note: format!(
                    "督办: {} deadline of {minutes} min passed; escalated to township {} and the centre",
                    stage.as_str(),
                    order.township
                ),
            });
        } else if now_ms >= warn_at
            && now_ms < deadline
            && order.sla_flags & (stage.warned_bit() | stage.breached_bit()) == 0
        {
            notices.push(SlaNotice {
                order_id: order.id,
                township: order.township.clone(),
                stage,
                kind: "sla_warning",
                at_ms: warn_at,
                note: format!(
                    "{} deadline of {minutes} min is {} min away",
                    stage.as_str(),
                    (deadline - now_ms).max(0) / 60_000
                ),
            });
        }
    }
    notices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::OrderState;

    fn order(created_at_ms: i64) -> OrderRow {
        OrderRow {
            id: 1,
            episode_id: None,
            device_id: "d".into(),
            household_id: None,
            village_id: None,
            vendor_id: None,
            township: "yanqing".into(),
            category: "repair".into(),
            priority: "high".into(),
            source: "rule".into(),
            summary: String::new(),
            created_at_ms,
            state: OrderState::Created,
            pre_emptive: true,
            in_warranty: None,
            team_id: None,
            technician_id: None,
            dispatched_at_ms: None,
            accepted_at_ms: None,
            on_site_at_ms: None,
            resolved_at_ms: None,
            closed_at_ms: None,
            satisfaction: None,
            parts_cents: 0,
            resident_pays_cents: 0,
            misuse: false,
            sla_flags: 0,
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn a_warning_comes_before_the_escalation() {
        let config = SlaConfig::default();
        let o = order(0);
        assert!(due(&config, &o, 7 * MIN).is_empty());
        let warning = due(&config, &o, 8 * MIN);
        assert_eq!(warning.len(), 1);
        assert_eq!(
            (warning[0].stage, warning[0].kind),
            (Stage::Dispatch, "sla_warning")
        );
        let mut warned = o.clone();
        warned.sla_flags |= Stage::Dispatch.warned_bit();
        assert!(due(&config, &warned, 9 * MIN).is_empty());
        let breach = due(&config, &warned, 10 * MIN);
        assert_eq!((breach[0].kind, breach[0].at_ms), ("escalated", 10 * MIN));
        assert!(breach[0].note.contains("督办"));
    }

    #[test]
    fn reached_stages_raise_nothing_and_closed_orders_are_ignored() {
        let config = SlaConfig::default();
        let mut o = order(0);
        o.dispatched_at_ms = Some(5 * MIN);
        let notices = due(&config, &o, 100 * MIN);
        assert!(notices.iter().all(|n| n.stage != Stage::Dispatch));
        assert!(notices
            .iter()
            .any(|n| n.stage == Stage::OnSite && n.kind == "sla_warning"));
        o.state = OrderState::Cancelled;
        assert!(due(&config, &o, 1_000 * MIN).is_empty());
    }

    #[test]
    fn met_is_judged_against_the_deadline() {
        let config = SlaConfig::default();
        let mut o = order(0);
        assert_eq!(config.met(&o, Stage::Dispatch, 5 * MIN), None);
        assert_eq!(config.met(&o, Stage::Dispatch, 11 * MIN), Some(false));
        o.dispatched_at_ms = Some(10 * MIN);
        assert_eq!(config.met(&o, Stage::Dispatch, 11 * MIN), Some(true));
    }
}
