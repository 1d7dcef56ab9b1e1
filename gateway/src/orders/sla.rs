//! SLA clocks per request class: which stage of an order (dispatch, on site, repaired) is due,
//! warned or breached at a given time, against the deadlines of the order's class.
//!
//! Classes ([`SlaClass`], derived from what the order stores by [`class_of`]): `repair` (a
//! resident's repair request, an urgent or high-priority rule order: the scheme's 10 min / 2 h /
//! 4 h, `[sla]`), `maintenance` (a low or normal priority finding such as efficiency, short
//! cycling or a stuck sensor: days, `[sla.maintenance]`), `utility` (a supply incident routed
//! to the power or gas utility, `[sla.utility]`) and `call` (a call task: ring the household
//! first, `[sla.call]`). Clocks run from creation, or from the time the class changed
//! (`orders.sla_from_ms`: a finding that became urgent gets the repair clocks from then).
//!
//! A warning comes before a breach. The breach of a class that escalates (`escalate = true`:
//! repair, utility, call by default) raises 督办 to the township and the centre (`escalated`);
//! the breach of one that does not (maintenance by default) is recorded on the order and counted
//! (`sla_breached`, warning `sla_team_warning`): the team sees it on its order stream, nobody is
//! paged. Pure: the caller gives the time, so tests move it at will.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::store::OrderRow;
use crate::registry::SiteType;

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

/// What kind of request an order answers, which decides its clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlaClass {
    /// A resident's repair request, or an urgent or high-priority rule order: the scheme's
    /// 10 min / 2 h / 4 h, 督办 on breach.
    Repair,
    /// A low or normal priority finding (efficiency, short cycling, a sensor, a slow pressure
    /// loss): its own clocks in days; a breach is recorded for the team, no 督办 by default.
    Maintenance,
    /// A supply incident routed to the power or gas utility.
    Utility,
    /// A call task (`contact_household`): ring the household or the caretaker first.
    Call,
}

impl SlaClass {
    pub const ALL: [SlaClass; 4] = [
        SlaClass::Repair,
        SlaClass::Maintenance,
        SlaClass::Utility,
        SlaClass::Call,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SlaClass::Repair => "repair",
            SlaClass::Maintenance => "maintenance",
            SlaClass::Utility => "utility",
            SlaClass::Call => "call",
        }
    }

    /// The class of a stored order ([`class_of`] of its category, priority and source).
    pub fn of(order: &OrderRow) -> SlaClass {
        class_of(&order.category, &order.priority, &order.source)
    }
}

/// Sources of orders the system opens on its own, before anyone asks: the rules (`rule`), the
/// cold-wave sweep (`prevention`) and inspection campaigns with the repairs their findings open
/// (`inspection`). Every other source is an intake channel: a resident.
pub const SYSTEM_SOURCES: [&str; 3] = ["rule", "prevention", "inspection"];

/// The SLA class of an order from what it stores, in this order:
/// 1. category `contact_household` (a call task) -> `call`;
/// 2. a category routing sends to a utility (`power_supply`, `gas_supply`,
///    `village_heat_pump_trips`: [`super::dispatch::route`]) -> `utility`;
/// 3. any source but the system's own ([`SYSTEM_SOURCES`]: `rule`, `prevention`, `inspection`), i.e. a
///    resident's request from an intake channel, or a source nobody knows -> `repair`;
/// 4. an order the system opened (a rule, the cold-wave sweep, an inspection campaign) of priority `low` or
///    `normal` -> `maintenance`;
/// 5. everything else (`high`, `urgent`, or a label nobody knows) -> `repair`: an unknown
///    priority gets the fastest clocks, never slower ones.
pub fn class_of(category: &str, priority: &str, source: &str) -> SlaClass {
    use super::dispatch::{GAS_SUPPLY, POWER_SUPPLY, VILLAGE_HEAT_PUMP_TRIPS};
    if category == super::CALL_TASK_CATEGORY {
        return SlaClass::Call;
    }
    if matches!(
        category,
        POWER_SUPPLY | GAS_SUPPLY | VILLAGE_HEAT_PUMP_TRIPS
    ) {
        return SlaClass::Utility;
    }
    if !SYSTEM_SOURCES.contains(&source) {
        return SlaClass::Repair;
    }
    match priority {
        "low" | "normal" => SlaClass::Maintenance,
        _ => SlaClass::Repair,
    }
}

/// The priority an order of `site` is stored with: a clinic's or school's order
/// ([`SiteType::is_public_service`]: patients and children cannot go elsewhere for warmth) is
/// at least `high`, so [`class_of`] gives it the `repair` clocks (a call task stays `call`,
/// a utility incident `utility`); every other site keeps its priority. Applied once, when the
/// order is stored (`Store::create_order`); priorities only ever rise after that.
pub fn site_priority(site: SiteType, priority: &str) -> &str {
    match priority {
        "low" | "normal" if site.is_public_service() => "high",
        _ => priority,
    }
}

/// When an order's clocks started: its creation, or the time its class last changed.
pub fn clock_start(order: &OrderRow) -> i64 {
    order.sla_from_ms.unwrap_or(order.created_at_ms)
}

/// The deadlines of one class and whether its breaches escalate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clocks {
    pub dispatch: Duration,
    pub on_site: Duration,
    pub repaired: Duration,
    /// A breach raises 督办 to the township and the centre (else it is recorded for the team).
    pub escalate: bool,
}

impl Clocks {
    /// The deadline of a stage in milliseconds after the clocks started.
    pub fn deadline_ms(&self, stage: Stage) -> i64 {
        let duration = match stage {
            Stage::Dispatch => self.dispatch,
            Stage::OnSite => self.on_site,
            Stage::Repaired => self.repaired,
        };
        i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
    }
}

/// The SLA deadlines: the top-level keys are the `repair` class (the scheme's), the sub-tables
/// the other classes.
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
    /// Clocks of maintenance findings (low or normal priority rule orders).
    #[serde(default)]
    pub maintenance: MaintenanceSla,
    /// Clocks of supply incidents routed to the power or gas utility.
    #[serde(default)]
    pub utility: UtilitySla,
    /// Clocks of call tasks (ring the household or the caretaker first).
    #[serde(default)]
    pub call: CallSla,
}

impl Default for SlaConfig {
    fn default() -> Self {
        Self {
            dispatch: default_dispatch(),
            on_site: default_on_site(),
            repaired: default_repaired(),
            warn_at: default_warn_at(),
            check_every: default_check_every(),
            maintenance: MaintenanceSla::default(),
            utility: UtilitySla::default(),
            call: CallSla::default(),
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

/// `[sla.maintenance]`: a finding that leaves the house warm today (a COP a quarter down, short
/// cycling, a stuck or implausible sensor, a slow pressure loss): a visit within days, planned
/// with the team's round, not a 督办 at two hours.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSla {
    /// Dispatch within this.
    #[serde(default = "default_maintenance_dispatch", with = "humantime_serde")]
    pub dispatch: Duration,
    /// Technician on site within this.
    #[serde(default = "default_maintenance_on_site", with = "humantime_serde")]
    pub on_site: Duration,
    /// Fixed within this.
    #[serde(default = "default_maintenance_repaired", with = "humantime_serde")]
    pub repaired: Duration,
    /// A breach raises 督办 to the township and the centre; `false`: it is recorded on the order
    /// and counted, and the team sees it on its stream.
    #[serde(default = "default_maintenance_escalate")]
    pub escalate: bool,
}

impl Default for MaintenanceSla {
    fn default() -> Self {
        Self {
            dispatch: default_maintenance_dispatch(),
            on_site: default_maintenance_on_site(),
            repaired: default_maintenance_repaired(),
            escalate: default_maintenance_escalate(),
        }
    }
}

fn default_maintenance_dispatch() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_maintenance_on_site() -> Duration {
    Duration::from_secs(3 * 24 * 3600)
}
fn default_maintenance_repaired() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_maintenance_escalate() -> bool {
    false
}

/// `[sla.utility]`: a village or a house without power or gas, handed to the utility and the
/// village electrician.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UtilitySla {
    /// Handed to the utility within this.
    #[serde(default = "default_utility_dispatch", with = "humantime_serde")]
    pub dispatch: Duration,
    /// The utility's crew or the village electrician on site within this.
    #[serde(default = "default_utility_on_site", with = "humantime_serde")]
    pub on_site: Duration,
    /// Supply restored within this.
    #[serde(default = "default_utility_repaired", with = "humantime_serde")]
    pub repaired: Duration,
    /// A breach raises 督办 to the township and the centre.
    #[serde(default = "default_utility_escalate")]
    pub escalate: bool,
}

impl Default for UtilitySla {
    fn default() -> Self {
        Self {
            dispatch: default_utility_dispatch(),
            on_site: default_utility_on_site(),
            repaired: default_utility_repaired(),
            escalate: default_utility_escalate(),
        }
    }
}

fn default_utility_dispatch() -> Duration {
    Duration::from_secs(10 * 60)
}
fn default_utility_on_site() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_utility_repaired() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_utility_escalate() -> bool {
    true
}

/// `[sla.call]`: a call task. Its dispatch stage is the call and its outcome: a technician
/// dispatched, or the task cancelled because the household is fine (a cancelled task is done).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallSla {
    /// Called, and a technician dispatched or the task cancelled, within this.
    #[serde(default = "default_call_dispatch", with = "humantime_serde")]
    pub dispatch: Duration,
    /// Technician on site within this (the call's time and the scheme's 2 hours).
    #[serde(default = "default_call_on_site", with = "humantime_serde")]
    pub on_site: Duration,
    /// Repair finished within this (the call's time and the scheme's 4 hours).
    #[serde(default = "default_call_repaired", with = "humantime_serde")]
    pub repaired: Duration,
    /// A breach raises 督办 to the township and the centre.
    #[serde(default = "default_call_escalate")]
    pub escalate: bool,
}

impl Default for CallSla {
    fn default() -> Self {
        Self {
            dispatch: default_call_dispatch(),
            on_site: default_call_on_site(),
            repaired: default_call_repaired(),
            escalate: default_call_escalate(),
        }
    }
}

fn default_call_dispatch() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_call_on_site() -> Duration {
    Duration::from_secs(150 * 60)
}
fn default_call_repaired() -> Duration {
    Duration::from_secs(270 * 60)
}
fn default_call_escalate() -> bool {
    true
}

/// The longest deadline accepted: a clock of more than a year is no SLA.
const MAX_DEADLINE: Duration = Duration::from_secs(366 * 24 * 3600);

impl SlaConfig {
    /// The clocks of `class`.
    pub fn clocks(&self, class: SlaClass) -> Clocks {
        match class {
            SlaClass::Repair => Clocks {
                dispatch: self.dispatch,
                on_site: self.on_site,
                repaired: self.repaired,
                escalate: true,
            },
            SlaClass::Maintenance => Clocks {
                dispatch: self.maintenance.dispatch,
                on_site: self.maintenance.on_site,
                repaired: self.maintenance.repaired,
                escalate: self.maintenance.escalate,
            },
            SlaClass::Utility => Clocks {
                dispatch: self.utility.dispatch,
                on_site: self.utility.on_site,
                repaired: self.utility.repaired,
                escalate: self.utility.escalate,
            },
            SlaClass::Call => Clocks {
                dispatch: self.call.dispatch,
                on_site: self.call.on_site,
                repaired: self.call.repaired,
                escalate: self.call.escalate,
            },
        }
    }

    /// The deadline of a stage of `class` in milliseconds after the clocks started.
    pub fn deadline_ms(&self, class: SlaClass, stage: Stage) -> i64 {
        self.clocks(class).deadline_ms(stage)
    }

    /// Checks the deadlines: `Err((key, message))` naming the first bad key.
    pub fn check(&self) -> Result<(), (String, String)> {
        if !(0.5..1.0).contains(&self.warn_at) {
            return Err((
                "sla.warn_at".into(),
                "must be at least 0.5 and below 1.0".into(),
            ));
        }
        if self.dispatch.is_zero() || self.on_site < self.dispatch || self.repaired < self.on_site {
            return Err((
                "sla".into(),
                "deadlines must be positive and ordered: dispatch <= on_site <= repaired".into(),
            ));
        }
        for class in SlaClass::ALL {
            let clocks = self.clocks(class);
            let key = |name: &str| match class {
                SlaClass::Repair => format!("sla.{name}"),
                other => format!("sla.{}.{name}", other.as_str()),
            };
            for (name, value) in [
                ("dispatch", clocks.dispatch),
                ("on_site", clocks.on_site),
                ("repaired", clocks.repaired),
            ] {
                if value > MAX_DEADLINE {
                    return Err((key(name), "must be at most 366 days".into()));
                }
            }
            if clocks.dispatch.is_zero() {
                return Err((key("dispatch"), "must be greater than 0".into()));
            }
            if clocks.on_site < clocks.dispatch {
                return Err((
                    key("on_site"),
                    format!("must not be shorter than {}", key("dispatch")),
                ));
            }
            if clocks.repaired < clocks.on_site {
                return Err((
                    key("repaired"),
                    format!("must not be shorter than {}", key("on_site")),
                ));
            }
        }
        if self.check_every.is_zero() {
            return Err(("sla.check_every".into(), "must be greater than 0".into()));
        }
        Ok(())
    }

    /// Whether a stage was met against the order's class: `Some(true)` reached in time,
    /// `Some(false)` late or overdue at `now_ms`, `None` still running.
    pub fn met(&self, order: &OrderRow, stage: Stage, now_ms: i64) -> Option<bool> {
        let deadline =
            clock_start(order).saturating_add(self.deadline_ms(SlaClass::of(order), stage));
        match stage.reached_at(order) {
            Some(at) => Some(at <= deadline),
            None if now_ms > deadline => Some(false),
            None => None,
        }
    }
}

/// Stages of one kind judged against their deadlines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct StageTally {
    /// Reached within the deadline.
    pub met: u64,
    /// Reached after the deadline, or not reached and overdue.
    pub late: u64,
    /// Not reached and still within the deadline (not judged yet).
    pub running: u64,
    /// met / (met + late); `None` before any is judged.
    pub rate: Option<f64>,
}

impl StageTally {
    fn add(&mut self, met: Option<bool>) {
        match met {
            Some(true) => self.met += 1,
            Some(false) => self.late += 1,
            None => self.running += 1,
        }
        let judged = self.met + self.late;
        self.rate = (judged > 0).then(|| self.met as f64 / judged as f64);
    }
}

/// The orders of one class and their stages against the class's own deadlines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct ClassTally {
    pub orders: u64,
    pub dispatch: StageTally,
    pub on_site: StageTally,
    pub repaired: StageTally,
}

impl ClassTally {
    /// Counts `order` (of this tally's class) at `now_ms`.
    pub fn add(&mut self, config: &SlaConfig, order: &OrderRow, now_ms: i64) {
        self.orders += 1;
        self.dispatch
            .add(config.met(order, Stage::Dispatch, now_ms));
        self.on_site.add(config.met(order, Stage::OnSite, now_ms));
        self.repaired
            .add(config.met(order, Stage::Repaired, now_ms));
    }
}

/// One [`ClassTally`] per class (every class present, zero when it has no order).
pub fn tally<'a>(
    config: &SlaConfig,
    orders: impl IntoIterator<Item = &'a OrderRow>,
    now_ms: i64,
) -> std::collections::BTreeMap<SlaClass, ClassTally> {
    let mut tallies: std::collections::BTreeMap<SlaClass, ClassTally> = SlaClass::ALL
        .into_iter()
        .map(|class| (class, ClassTally::default()))
        .collect();
    for order in orders {
        tallies
            .entry(SlaClass::of(order))
            .or_default()
            .add(config, order, now_ms);
    }
    tallies
}

/// A warning or breach to record on an order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SlaNotice {
    pub order_id: i64,
    pub township: String,
    pub class: SlaClass,
    pub stage: Stage,
    /// `sla_warning` or `escalated` (督办) for a class whose breaches escalate;
    /// `sla_team_warning` or `sla_breached` (recorded for the team) for one whose do not.
    pub kind: &'static str,
    /// When the threshold was crossed (warning time or deadline), Unix ms.
    pub at_ms: i64,
    pub note: String,
}

impl SlaNotice {
    /// A breach (escalated or not), as opposed to a warning.
    pub fn is_breach(&self) -> bool {
        matches!(self.kind, "escalated" | "sla_breached")
    }
}

/// A deadline in words: `10 min`, `2 h`, `3 d`.
fn span(ms: i64) -> String {
    const MIN: i64 = 60_000;
    if ms >= 24 * 60 * MIN && ms % (24 * 60 * MIN) == 0 {
        format!("{} d", ms / (24 * 60 * MIN))
    } else if ms >= 60 * MIN && ms % (60 * MIN) == 0 {
        format!("{} h", ms / (60 * MIN))
    } else {
        format!("{} min", ms / MIN)
    }
}

/// Warnings and breaches due on `order` at `now_ms` that were not raised yet, against the
/// clocks of the order's class from [`clock_start`].
pub fn due(config: &SlaConfig, order: &OrderRow, now_ms: i64) -> Vec<SlaNotice> {
    let mut notices = Vec::new();
    if !order.state.is_open() {
        return notices;
    }
    let class = SlaClass::of(order);
    let clocks = config.clocks(class);
    let start = clock_start(order);
    let (warning, breach) = if clocks.escalate {
        ("sla_warning", "escalated")
    } else {
        ("sla_team_warning", "sla_breached")
    };
    for stage in Stage::ALL {
        if stage.reached_at(order).is_some() {
            continue;
        }
        let deadline_ms = clocks.deadline_ms(stage);
        let deadline = start.saturating_add(deadline_ms);
        let warn_at = start.saturating_add((deadline_ms as f64 * config.warn_at) as i64);
        let limit = span(deadline_ms);
        if now_ms >= deadline && order.sla_flags & stage.breached_bit() == 0 {
            let note = if clocks.escalate {
                format!(
                    "督办: {} {} deadline of {limit} passed; escalated to township {} and the centre",
                    class.as_str(),
                    stage.as_str(),
                    order.township
                )
            } else {
                format!(
                    "{} {} deadline of {limit} passed; recorded for the team (this class does not escalate)",
                    class.as_str(),
                    stage.as_str()
                )
            };
            notices.push(SlaNotice {
                order_id: order.id,
                township: order.township.clone(),
                class,
                stage,
                kind: breach,
                at_ms: deadline,
                note,
            });
        } else if now_ms >= warn_at
            && now_ms < deadline
            && order.sla_flags & (stage.warned_bit() | stage.breached_bit()) == 0
        {
            notices.push(SlaNotice {
                order_id: order.id,
                township: order.township.clone(),
                class,
                stage,
                kind: warning,
                at_ms: warn_at,
                note: format!(
                    "{} {} deadline of {limit} is {} min away",
                    class.as_str(),
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
            sla_from_ms: None,
            sla_class: SlaClass::Repair,
        }
    }

    fn rule_order(category: &str, priority: &str, created_at_ms: i64) -> OrderRow {
        let mut o = order(created_at_ms);
        o.category = category.into();
        o.priority = priority.into();
        o
    }

    const MIN: i64 = 60_000;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;

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
        assert_eq!(breach[0].class, SlaClass::Repair);
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

    /// Every category the rules pack (`rules/default.toml`), the fleet rules and the intake
    /// open, with the priorities they come with, and the intake channels.
    #[test]
    fn every_category_maps_to_its_class_deliberately() {
        use SlaClass::*;
        let cases: &[(&str, &str, &str, SlaClass)] = &[
            // Residents' requests: every intake channel opens `repair` / `high`.
            ("repair", "high", "hotline_12345", Repair),
            ("repair", "high", "centre_hotline", Repair),
            ("repair", "high", "app", Repair),
            ("repair", "high", "sms_wechat", Repair),
            ("repair", "high", "walk_in", Repair),
            ("repair", "high", "technician", Repair),
            // A resident's request stays a repair whatever its priority label says.
            ("repair", "low", "app", Repair),
            // Urgent and high rule orders: a house losing heat now.
            ("repair", "high", "rule", Repair),
            ("repeated_protection_trips", "high", "rule", Repair),
            ("heating_stopped", "high", "rule", Repair),
            ("heating_stopped", "urgent", "rule", Repair),
            ("no_circulation", "high", "rule", Repair),
            ("controller", "high", "rule", Repair),
            ("low_indoor_temperature", "high", "rule", Repair),
            ("capacity_shortfall", "high", "rule", Repair),
            ("freeze_risk", "urgent", "rule", Repair),
            ("offline_in_frost", "urgent", "rule", Repair),
            ("low_water_pressure", "high", "rule", Repair),
            ("gas_check", "high", "rule", Repair),
            // Low and normal findings: the house is warm today.
            ("efficiency_check", "low", "rule", Maintenance),
            ("short_cycling", "low", "rule", Maintenance),
            ("sensor", "low", "rule", Maintenance),
            ("sensor", "normal", "rule", Maintenance),
            ("defrost_fault", "normal", "rule", Maintenance),
            ("refrigerant_check", "normal", "rule", Maintenance),
            ("gas_check", "normal", "rule", Maintenance),
            ("low_water_pressure", "normal", "rule", Maintenance),
            // The same finding escalated (or on a vulnerable household's device): a repair.
            ("short_cycling", "urgent", "rule", Repair),
            // What routing sends to a utility, whatever its priority or source.
            ("power_supply", "high", "rule", Utility),
            ("power_supply", "urgent", "rule", Utility),
            ("gas_supply", "urgent", "rule", Utility),
            ("village_heat_pump_trips", "high", "rule", Utility),
            ("power_supply", "low", "rule", Utility),
            // Call tasks.
            ("contact_household", "high", "rule", Call),
            ("contact_household", "urgent", "rule", Call),
            ("contact_household", "low", "rule", Call),
            // A priority label nobody knows gets the fastest clocks, never slower ones.
            ("sensor", "unknown", "rule", Repair),
            ("sensor", "", "rule", Repair),
            // The cold-wave sweep's preventive visit (nothing failed yet) and its calls.
            ("preventive_visit", "low", "prevention", Maintenance),
            ("preventive_visit", "high", "prevention", Repair),
            ("contact_household", "low", "prevention", Call),
            // A source nobody knows is treated as a resident's request.
            ("sensor", "low", "somewhere_else", Repair),
            // A category of a custom rule pack follows its priority.
            ("some_new_check", "low", "rule", Maintenance),
            ("some_new_check", "high", "rule", Repair),
        ];
        for (category, priority, source, class) in cases {
            assert_eq!(
                class_of(category, priority, source),
                *class,
                "{category} / {priority} / {source}"
            );
        }
    }

    #[test]
    fn a_clinic_or_school_order_is_at_least_high_and_a_repair() {
        use crate::registry::SiteType::{ActivityRoom, Clinic, Greenhouse, Home, School};
        use SlaClass::*;
        // (site, category, priority asked, source, priority stored, class)
        let cases = [
            (Clinic, "short_cycling", "low", "rule", "high", Repair),
            (School, "efficiency_check", "normal", "rule", "high", Repair),
            (
                School,
                "preventive_visit",
                "low",
                "prevention",
                "high",
                Repair,
            ),
            (
                Clinic,
                "low_indoor_temperature",
                "urgent",
                "rule",
                "urgent",
                Repair,
            ),
            (Clinic, "repair", "high", "hotline_12345", "high", Repair),
            // A call task stays a call; a public building gets it sooner by its priority.
            (School, "contact_household", "normal", "rule", "high", Call),
            // Other sites keep what the rule asked for.
            (Home, "short_cycling", "low", "rule", "low", Maintenance),
            (
                ActivityRoom,
                "short_cycling",
                "low",
                "rule",
                "low",
                Maintenance,
            ),
            (
                Greenhouse,
                "efficiency_check",
                "normal",
                "rule",
                "normal",
                Maintenance,
            ),
            (
                Greenhouse,
                "heating_stopped",
                "high",
                "rule",
                "high",
                Repair,
            ),
            // A label nobody knows is kept (it has the fastest clocks already).
            (Clinic, "sensor", "unknown", "rule", "unknown", Repair),
        ];
        for (site, category, asked, source, stored, class) in cases {
            let priority = site_priority(site, asked);
            assert_eq!(priority, stored, "{site:?} / {asked}");
            assert_eq!(
                class_of(category, priority, source),
                class,
                "{site:?} / {category} / {asked} / {source}"
            );
        }
    }

    #[test]
    fn a_maintenance_order_past_two_hours_is_not_escalated_and_its_breach_stays_with_the_team() {
        let config = SlaConfig::default();
        let mut o = rule_order("short_cycling", "low", 0);
        o.dispatched_at_ms = Some(MIN);
        assert!(
            due(&config, &o, 5 * HOUR).is_empty(),
            "no clock near its end"
        );
        // 75 % of the 3-day on-site clock.
        let warning = due(&config, &o, 54 * HOUR);
        assert_eq!(warning.len(), 1);
        assert_eq!(
            (warning[0].class, warning[0].stage, warning[0].kind),
            (SlaClass::Maintenance, Stage::OnSite, "sla_team_warning")
        );
        o.sla_flags |= Stage::OnSite.warned_bit();
        let breach = due(&config, &o, 3 * DAY);
        assert_eq!(breach.len(), 1);
        assert_eq!((breach[0].kind, breach[0].at_ms), ("sla_breached", 3 * DAY));
        assert!(breach[0].is_breach());
        assert!(!breach[0].note.contains("督办"), "{}", breach[0].note);
        assert!(breach[0].note.contains("3 d"), "{}", breach[0].note);
        // Configured to escalate, the same breach is 督办.
        let mut escalating = config;
        escalating.maintenance.escalate = true;
        let breach = due(&escalating, &o, 3 * DAY);
        assert_eq!(breach[0].kind, "escalated");
        assert!(breach[0].note.contains("督办"));
    }

    #[test]
    fn each_class_runs_its_own_clocks() {
        let config = SlaConfig::default();
        let call = rule_order("contact_household", "high", 0);
        assert!(due(&config, &call, 20 * MIN).is_empty());
        let late = due(&config, &call, 30 * MIN);
        assert_eq!(
            (late[0].class, late[0].stage, late[0].kind),
            (SlaClass::Call, Stage::Dispatch, "escalated")
        );
        let mut utility = rule_order("power_supply", "urgent", 0);
        utility.dispatched_at_ms = Some(MIN);
        utility.on_site_at_ms = Some(HOUR);
        assert_eq!(config.met(&utility, Stage::Repaired, 7 * HOUR), None);
        assert_eq!(
            config.met(&utility, Stage::Repaired, 8 * HOUR + 1),
            Some(false)
        );
        let repair = rule_order("heating_stopped", "high", 0);
        assert_eq!(
            config.met(&repair, Stage::Repaired, 4 * HOUR + 1),
            Some(false)
        );
    }

    #[test]
    fn a_restarted_clock_runs_from_the_class_change() {
        let config = SlaConfig::default();
        // A short-cycling finding from Monday became urgent on Wednesday.
        let mut o = rule_order("short_cycling", "urgent", 0);
        o.dispatched_at_ms = Some(MIN);
        o.sla_from_ms = Some(2 * DAY);
        assert!(due(&config, &o, 2 * DAY + HOUR).is_empty());
        let breach = due(&config, &o, 2 * DAY + 2 * HOUR);
        assert_eq!(
            (breach[0].class, breach[0].stage, breach[0].kind),
            (SlaClass::Repair, Stage::OnSite, "escalated")
        );
        assert_eq!(breach[0].at_ms, 2 * DAY + 2 * HOUR);
        assert_eq!(config.met(&o, Stage::Dispatch, 3 * DAY), Some(true));
    }

    #[test]
    fn tallies_count_each_class_against_its_own_target() {
        let config = SlaConfig::default();
        let mut maintenance = rule_order("sensor", "low", 0);
        maintenance.dispatched_at_ms = Some(HOUR);
        let mut repair = rule_order("heating_stopped", "high", 0);
        repair.dispatched_at_ms = Some(HOUR);
        let tallies = tally(&config, [&maintenance, &repair], 3 * HOUR);
        assert_eq!(tallies.len(), 4, "every class, with zeros");
        let m = tallies[&SlaClass::Maintenance];
        assert_eq!((m.orders, m.dispatch.met, m.dispatch.late), (1, 1, 0));
        assert_eq!((m.on_site.running, m.on_site.rate), (1, None));
        let r = tallies[&SlaClass::Repair];
        assert_eq!(
            (r.dispatch.met, r.dispatch.late, r.dispatch.rate),
            (0, 1, Some(0.0))
        );
        assert_eq!((r.on_site.late, r.repaired.running), (1, 1));
        assert_eq!(tallies[&SlaClass::Call].orders, 0);
    }

    #[test]
    fn bad_class_clocks_are_refused_with_their_key() {
        assert_eq!(SlaConfig::default().check(), Ok(()));
        let mut config = SlaConfig::default();
        config.maintenance.on_site = Duration::from_secs(3600);
        let (key, message) = config.check().expect_err("on site before dispatch");
        assert_eq!(key, "sla.maintenance.on_site");
        assert!(message.contains("sla.maintenance.dispatch"), "{message}");
        let mut config = SlaConfig::default();
        config.call.dispatch = Duration::ZERO;
        assert_eq!(
            config.check().expect_err("zero").0,
            "sla.call.dispatch".to_owned()
        );
        let mut config = SlaConfig::default();
        config.utility.repaired = Duration::from_secs(400 * 24 * 3600);
        assert_eq!(
            config.check().expect_err("too long").0,
            "sla.utility.repaired".to_owned()
        );
        let config = SlaConfig {
            warn_at: 1.0,
            ..SlaConfig::default()
        };
        assert_eq!(config.check().expect_err("warn_at").0, "sla.warn_at");
    }
}
