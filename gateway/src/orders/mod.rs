//! Work orders: opened from rule alerts (exactly one per alert episode) and from complaints of
//! every intake channel, dispatched automatically by township and warranty, moved through their
//! lifecycle by technicians and operators, watched by SLA clocks, and reported on.
//!
//! [`OrderService`] is the component; [`store::Store`] the database; [`model`] the lifecycle;
//! [`dispatch`] the routing; [`sla`] the clocks; [`reports`] the daily/weekly/monthly figures.
//!
//! The record is the server's: event times come from the service's [`Clock`]; only an operator
//! may supply one, within a window ([`model::TimeWindow`]); every order, household, device and
//! team a request names is checked against the caller's scope in the same store transaction
//! that writes; a team's misuse finding is a claim until an operator confirms it.

pub mod calendar;
pub mod clock;
pub mod dispatch;
pub mod model;
pub mod reports;
pub mod sla;
pub mod store;

use std::sync::{Arc, Mutex};

use rules::{Action, Transition, TransitionKind};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

pub use model::OrderState;
use model::{
    can_confirm_misuse, charge, misuse_claim_pending, next_state, Step, TimeWindow,
    TransitionError, ORDER_EVENT_MISUSE_CLAIMED, ORDER_EVENT_MISUSE_CONFIRMED,
    ORDER_EVENT_RESOLVED,
};
use store::{AlertRow, ComplaintRow, NewOrder, OrderRow, OrderUpdate, Store, StoreError};

use crate::auth::{Principal, Role};
use crate::metrics::Metrics;
use clock::Clock;
use sla::SlaConfig;

/// The intake channels of the scheme (统一接待).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// The 12345 citizen hotline (`hotline_12345`, the name orders, reports and the console
    /// use; `hotline12345` is accepted too).
    #[serde(rename = "hotline_12345", alias = "hotline12345")]
    Hotline12345,
    /// The maintenance centre's own hotline.
    CentreHotline,
    /// One-tap report in the app / 和美乡村 platform.
    App,
    /// SMS or WeChat.
    SmsWechat,
    /// In person at a service point.
    WalkIn,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Hotline12345 => "hotline_12345",
            Channel::CentreHotline => "centre_hotline",
            Channel::App => "app",
            Channel::SmsWechat => "sms_wechat",
            Channel::WalkIn => "walk_in",
        }
    }
}

/// A complaint as it arrives through the API.
#[derive(Debug, Clone, PartialEq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComplaintRequest {
    pub channel: Channel,
    /// The device complained about; give this or `household_id`.
    #[serde(default)]
    pub device_id: Option<String>,
    /// The household complaining; give this or `device_id`.
    #[serde(default)]
    pub household_id: Option<String>,
    /// When the complaint was received (Unix ms); defaults to the server's clock. Only an
    /// operator may set it, within [server now - 24 h, server now + 60 s] (a call logged late).
    #[serde(default)]
    pub received_at_ms: Option<i64>,
    /// What the resident said.
    #[serde(default)]
    pub text: String,
}

/// What became of a complaint.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ComplaintOutcome {
    pub complaint_id: i64,
    pub order_id: i64,
    /// An order was already open for the device: the complaint was linked to it.
    pub linked: bool,
    /// The order was opened before any complaint (未诉先办).
    pub pre_emptive: bool,
}

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
    /// A manual escalation (督办) by an operator or township officer.
    Escalate {
        note: String,
    },
}

/// Why an action was refused.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("no order {0}")]
    NotFound(i64),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
    fn invalid(message: impl Into<String>) -> Self {
        Self::Order(OrderError::Invalid(message.into()))
    }

    fn out_of_range(field: &'static str, message: String) -> Self {
        Self::OutOfRange { field, message }
    }
}

/// A change operators and technicians may want to see live (SSE, MQTT).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderNotice {
    pub order_id: i64,
    pub township: String,
    pub team_id: Option<String>,
    pub category: String,
    pub priority: String,
    /// `rule` or the intake channel.
    pub source: String,
    /// When the order was created (SLA clocks run from here), Unix ms.
    pub created_at_ms: i64,
    /// The event kind (`created`, `dispatched`, `sla_warning`, `escalated`...).
    pub kind: String,
    pub at_ms: i64,
    pub note: String,
}

impl OrderNotice {
    /// A notice of `kind` about `order` at `at_ms`.
    pub fn of(order: &OrderRow, kind: &str, at_ms: i64, note: String) -> Self {
        Self {
            order_id: order.id,
            township: order.township.clone(),
            team_id: order.team_id.clone(),
            category: order.category.clone(),
            priority: order.priority.clone(),
            source: order.source.clone(),
            created_at_ms: order.created_at_ms,
            kind: kind.to_owned(),
            at_ms,
            note,
        }
    }
}

/// An alert or supply-incident change for the live streams (SSE `alert`, `escalation` and
/// `incident` events; MQTT `alerts` and `incidents` topics), sent once the change is stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A device alert fired or resolved (the rule engine's transition).
    Alert {
        township: String,
        #[serde(flatten)]
        transition: Transition,
    },
    /// An alert's severity rose within its episode.
    Escalation {
        township: Option<String>,
        #[serde(flatten)]
        escalation: rules::Escalation,
    },
    /// A village or township supply incident began or ended.
    Incident {
        #[serde(flatten)]
        incident: rules::IncidentTransition,
    },
}

impl LiveEvent {
    /// The township the event belongs to, for township-scoped viewers.
    pub fn township(&self) -> Option<&str> {
        match self {
            LiveEvent::Alert { township, .. } => Some(township),
            LiveEvent::Escalation { township, .. } => township.as_deref(),
            LiveEvent::Incident { incident } => Some(&incident.group.township),
        }
    }

    /// The MQTT topic the event is published on: `heating/v1/{township}/{device}/alerts` for
    /// alerts and escalations, `heating/v1/{township}/{village or township}/incidents` for
    /// incidents. `None` when the township is unknown or not a valid id.
    pub fn topic(&self) -> Option<String> {
        let (township, id, kind) = match self {
            LiveEvent::Alert {
                township,
                transition,
            } => (
                township.as_str(),
                transition.device_id.to_string(),
                wire::TopicKind::Alerts,
            ),
            LiveEvent::Escalation {
                township,
                escalation,
            } => (
                township.as_deref()?,
                escalation.device_id.to_string(),
                wire::TopicKind::Alerts,
            ),
            LiveEvent::Incident { incident } => (
                incident.group.township.as_str(),
                incident
                    .group
                    .village
                    .clone()
                    .unwrap_or_else(|| incident.group.township.clone()),
                wire::TopicKind::Incidents,
            ),
        };
        let township = wire::TownshipId::parse(township).ok()?;
        Some(wire::Topic::new(township, id, kind).to_string())
    }

    /// The SSE event name.
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::Alert { .. } => "alert",
            LiveEvent::Escalation { .. } => "escalation",
            LiveEvent::Incident { .. } => "incident",
        }
    }
}

/// What applying alerts did: opened order ids, notices for the live stream, dispatched orders.
pub type Applied = (Vec<i64>, Vec<OrderNotice>, Vec<OrderRow>);

/// Publishes a team's new orders for technicians' clients (MQTT in the gateway).
pub trait TeamNotifier: Send + Sync {
    fn order_dispatched(&self, order: &OrderRow);
    /// Publishes an alert, escalation or incident on its topic ([`LiveEvent::topic`]).
    fn live_event(&self, event: &LiveEvent);
}

/// The order component: shared by ingest (alerts), the API (actions) and the SLA monitor.
#[derive(Clone)]
pub struct OrderService {
    store: Arc<Mutex<Store>>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    sla: SlaConfig,
    notices: broadcast::Sender<OrderNotice>,
    live: broadcast::Sender<LiveEvent>,
    notifier: Option<Arc<dyn TeamNotifier>>,
    /// How far the newest data may be ahead of `clock`: 0 on the wall clock; in event-clock
    /// mode the clock is the watermark, which trails the newest reading by `rules.lateness`, so
    /// a client time up to that much ahead of it is not in the future of the data.
    clock_lead_ms: i64,
}

impl OrderService {
    pub fn new(store: Store, metrics: Arc<Metrics>, clock: Arc<dyn Clock>, sla: SlaConfig) -> Self {
        let (notices, _) = broadcast::channel(1024);
        let (live, _) = broadcast::channel(4096);
        Self {
            store: Arc::new(Mutex::new(store)),
            metrics,
            clock,
            sla,
            notices,
            live,
            notifier: None,
            clock_lead_ms: 0,
        }
    }

    /// In event-clock mode: the watermark (the clock) trails the newest reading by `lead`;
    /// client-supplied times are bounded against the newest reading instead.
    pub fn with_clock_lead(mut self, lead: std::time::Duration) -> Self {
        self.clock_lead_ms = i64::try_from(lead.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// Sends each dispatched order to its team's clients.
    pub fn with_notifier(mut self, notifier: Arc<dyn TeamNotifier>) -> Self {
        self.notifier = Some(notifier);
        self
    }

    pub fn sla(&self) -> &SlaConfig {
        &self.sla
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Live notices of order events.
    pub fn subscribe(&self) -> broadcast::Receiver<OrderNotice> {
        self.notices.subscribe()
    }

    /// Live alert, escalation and incident events.
    pub fn subscribe_live(&self) -> broadcast::Receiver<LiveEvent> {
        self.live.subscribe()
    }

    fn send_live(&self, events: Vec<LiveEvent>) {
        for event in events {
            if let Some(notifier) = &self.notifier {
                notifier.live_event(&event);
            }
            // No receiver is fine: nobody is watching.
            let _ = self.live.send(event);
        }
    }

    /// Runs `f` with the store on a blocking thread.
    pub async fn with_store<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || {
            let mut guard = store
                .lock()
                .map_err(|_| StoreError::Corrupt("store lock poisoned".into()))?;
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("store task failed: {e}")))?
    }

    /// Runs `f` with the store on the current thread (for synchronous callers and benches).
    pub fn with_store_blocking<T>(
        &self,
        f: impl FnOnce(&mut Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut guard = self
            .store
            .lock()
            .map_err(|_| StoreError::Corrupt("store lock poisoned".into()))?;
        f(&mut guard)
    }

    fn notify(&self, notice: OrderNotice) {
        // No receiver is fine: nobody is watching the stream.
        let _ = self.notices.send(notice);
    }

    /// Sends notices to the live stream and dispatched orders to their teams' clients.
    fn announce(&self, notices: Vec<OrderNotice>, dispatched: &[OrderRow]) {
        for notice in notices {
            self.notify(notice);
        }
        if let Some(notifier) = &self.notifier {
            for order in dispatched {
                notifier.order_dispatched(order);
            }
        }
    }

    /// Applies rule transitions: records alerts; for firing alerts whose action asks for an
    /// order, opens one (or links the episode to the device's open order) and dispatches it.
    /// Returns the ids of newly opened orders.
    pub async fn apply(
        &self,
        transitions: Vec<(Transition, String)>,
    ) -> Result<Vec<i64>, StoreError> {
        if transitions.is_empty() {
            return Ok(Vec::new());
        }
        let live = transitions
            .iter()
            .map(|(transition, township)| LiveEvent::Alert {
                township: township.clone(),
                transition: transition.clone(),
            })
            .collect();
        let service = self.clone();
        let (opened, notices, dispatched) = self
            .with_store(move |store| store.batch(|store| service.apply_in(store, transitions)))
            .await?;
        self.send_live(live);
        self.announce(notices, &dispatched);
        Ok(opened)
    }

    /// [`OrderService::apply`] on a store the caller holds: the opened order ids, the notices
    /// to send and the dispatched orders to announce to their teams.
    pub fn apply_in(
        &self,
        store: &mut Store,
        transitions: Vec<(Transition, String)>,
    ) -> Result<Applied, StoreError> {
        let mut opened = Vec::new();
        let mut notices = Vec::new();
        let mut dispatched = Vec::new();
        for (transition, township) in transitions {
            match transition.kind {
                TransitionKind::Firing => {
                    let alert = AlertRow {
                        episode_id: transition.episode_id.clone(),
                        device_id: transition.device_id.to_string(),
                        township: township.clone(),
                        rule_id: transition.rule_id.clone(),
                        severity: label(&transition.severity),
                        summary: transition.summary.clone(),
                        fired_at_ms: transition.at_ms,
                        resolved_at_ms: None,
                    };
                    if store.alert_fired(&alert)? {
                        self.metrics.alert_fired(&transition.rule_id);
                    }
                    let Action::Order { category, priority } = &transition.action else {
                        continue;
                    };
                    if store.episode_has_order(&transition.episode_id)? {
                        continue;
                    }
                    let device = transition.device_id.as_str();
                    if let Some(open) = store.open_order_for_device(device)? {
                        if store.link_episode(
                            &transition.episode_id,
                            open.id,
                            transition.at_ms,
                            &transition.summary,
                        )? {
                            tracing::info!(order = open.id, device, rule = %transition.rule_id, "alert linked to the device's open order");
                        }
                        continue;
                    }
                    let order = self.new_order(
                        store,
                        device,
                        &township,
                        category,
                        &label(priority),
                        "rule",
                        &transition.summary,
                        transition.at_ms,
                        &format!("rule:{}", transition.rule_id),
                        true,
                        Some(transition.episode_id.clone()),
                    )?;
                    let Some(id) = store.create_order(&order)? else {
                        continue;
                    };
                    self.metrics.order_opened();
                    tracing::info!(order = id, device, rule = %transition.rule_id, category = %category, "work order opened");
                    if let Some(row) = store.order_row(id)? {
                        notices.push(OrderNotice::of(
                            &row,
                            "created",
                            row.created_at_ms,
                            row.summary.clone(),
                        ));
                    }
                    opened.push(id);
                    if let Some((row, notice)) =
                        self.auto_dispatch(store, id, order.created_at_ms)?
                    {
                        notices.push(notice);
                        dispatched.push(row);
                    }
                }
                TransitionKind::Resolved => {
                    store.alert_resolved(&transition.episode_id, transition.at_ms)?;
                }
            }
        }
        Ok((opened, notices, dispatched))
    }

    /// Severity escalations within alert episodes: an event on the episode's order, and a
    /// higher priority when the new level asks for one.
    pub async fn apply_escalations(
        &self,
        escalations: Vec<rules::Escalation>,
    ) -> Result<(), StoreError> {
        if escalations.is_empty() {
            return Ok(());
        }
        let live = self
            .with_store(move |store| {
                let mut live = Vec::with_capacity(escalations.len());
                for escalation in escalations {
                    let Some(order) = store.order_of_episode(&escalation.episode_id)? else {
                        live.push(LiveEvent::Escalation {
                            township: None,
                            escalation,
                        });
                        continue;
                    };
                    let note = format!(
                        "severity {} -> {}: {}",
                        label(&escalation.from),
                        label(&escalation.severity),
                        escalation.summary
                    );
                    store.append_event(
                        order.id,
                        escalation.at_ms,
                        &format!("rule:{}", escalation.rule_id),
                        "severity_escalated",
                        &note,
                        &OrderUpdate::default(),
                    )?;
                    if let Action::Order { priority, .. } = &escalation.action {
                        let rank = |p: &str| {
                            ["low", "normal", "high", "urgent"]
                                .iter()
                                .position(|x| *x == p)
                        };
                        let new = label(priority);
                        if rank(&new) > rank(&order.priority) {
                            store.set_priority(order.id, &new)?;
                        }
                    }
                    live.push(LiveEvent::Escalation {
                        township: Some(order.township.clone()),
                        escalation,
                    });
                }
                Ok(live)
            })
            .await?;
        self.send_live(live);
        Ok(())
    }

    /// Fleet incidents (a village without power or gas): one order per incident, routed to the
    /// utility; its end is noted on the order.
    pub async fn apply_incidents(
        &self,
        incidents: Vec<rules::IncidentTransition>,
    ) -> Result<Vec<i64>, StoreError> {
        if incidents.is_empty() {
            return Ok(Vec::new());
        }
        let live = incidents
            .iter()
            .map(|incident| LiveEvent::Incident {
                incident: incident.clone(),
            })
            .collect();
        let service = self.clone();
        let (opened, notices, dispatched) = self
            .with_store(move |store| {
                store.batch(|store| {
                    let mut opened = Vec::new();
                    let mut notices = Vec::new();
                    let mut dispatched = Vec::new();
                    for incident in incidents {
                        let subject = format!("{}:{}", label(&incident.level), incident.group);
                        match incident.kind {
                            TransitionKind::Firing => {
                                let alert = AlertRow {
                                    episode_id: incident.incident_id.clone(),
                                    device_id: subject.clone(),
                                    township: incident.group.township.clone(),
                                    rule_id: incident.fleet_rule_id.clone(),
                                    severity: label(&incident.severity),
                                    summary: incident.summary.clone(),
                                    fired_at_ms: incident.at_ms,
                                    resolved_at_ms: None,
                                };
                                if store.alert_fired(&alert)? {
                                    service.metrics.alert_fired(&incident.fleet_rule_id);
                                }
                                let Action::Order { category, priority } = &incident.action else {
                                    continue;
                                };
                                let order = NewOrder {
                                    episode_id: Some(incident.incident_id.clone()),
                                    device_id: subject.clone(),
                                    village_id: incident.group.village.clone(),
                                    township: incident.group.township.clone(),
                                    category: category.clone(),
                                    priority: label(priority),
                                    source: "rule".into(),
                                    summary: format!(
                                        "{} ({} of {} devices)",
                                        incident.summary,
                                        incident.devices.len(),
                                        incident.group_size
                                    ),
                                    created_at_ms: incident.at_ms,
                                    actor: format!("fleet:{}", incident.fleet_rule_id),
                                    pre_emptive: true,
                                    ..NewOrder::default()
                                };
                                let Some(id) = store.create_order(&order)? else {
                                    continue;
                                };
                                service.metrics.order_opened();
                                tracing::warn!(order = id, group = %incident.group, rule = %incident.fleet_rule_id, devices = incident.devices.len(), "supply incident: one order for the whole group");
                                if let Some(row) = store.order_row(id)? {
                                    notices.push(OrderNotice::of(&row, "created", row.created_at_ms, row.summary.clone()));
                                }
                                opened.push(id);
                                if let Some((row, notice)) = service.auto_dispatch(store, id, incident.at_ms)? {
                                    notices.push(notice);
                                    dispatched.push(row);
                                }
                            }
                            TransitionKind::Resolved => {
                                store.alert_resolved(&incident.incident_id, incident.at_ms)?;
                            }
                        }
                    }
                    Ok((opened, notices, dispatched))
                })
            })
            .await?;
        self.send_live(live);
        self.announce(notices, &dispatched);
        Ok(opened)
    }

    /// Builds a new order with what the registry knows of the device.
    #[allow(clippy::too_many_arguments)]
    fn new_order(
        &self,
        store: &Store,
        device: &str,
        township: &str,
        category: &str,
        priority: &str,
        source: &str,
        summary: &str,
        at_ms: i64,
        actor: &str,
        pre_emptive: bool,
        episode_id: Option<String>,
    ) -> Result<NewOrder, StoreError> {
        let context = store.device_context(device)?;
        let mut order = NewOrder {
            episode_id,
            device_id: device.to_owned(),
            township: township.to_owned(),
            category: category.to_owned(),
            priority: priority.to_owned(),
            source: source.to_owned(),
            summary: summary.to_owned(),
            created_at_ms: at_ms,
            actor: actor.to_owned(),
            pre_emptive,
            ..NewOrder::default()
        };
        if let Some(context) = context {
            order.township = context.village.township_id.clone();
            order.household_id = Some(context.household.id.clone());
            order.village_id = Some(context.village.id.clone());
            order.vendor_id = Some(context.device.vendor_id.clone());
            order.in_warranty =
                Some(calendar::cst_date_string(at_ms) <= context.device.warranty_until);
            if context.household.vulnerable && priority != "urgent" {
                order.priority = "urgent".to_owned();
                order.summary = format!("{summary} (vulnerable resident: urgent)");
            }
        }
        Ok(order)
    }

    /// Routes and dispatches a new order; leaves it `created` with a note when nobody fits.
    fn auto_dispatch(
        &self,
        store: &mut Store,
        order_id: i64,
        at_ms: i64,
    ) -> Result<Option<(OrderRow, OrderNotice)>, StoreError> {
        let Some(order) = store.order_row(order_id)? else {
            return Ok(None);
        };
        match dispatch::route(store, &order)? {
            Some(assignment) => {
                let update = OrderUpdate {
                    state: Some(OrderState::Dispatched),
                    team_id: Some(assignment.team.id.clone()),
                    technician_id: assignment.technician.as_ref().map(|t| t.id.clone()),
                    dispatched_at_ms: Some(at_ms),
                    ..OrderUpdate::default()
                };
                store.append_event(
                    order_id,
                    at_ms,
                    "dispatcher:auto",
                    "dispatched",
                    &assignment.note,
                    &update,
                )?;
                self.metrics.order_dispatched();
                let row = store.order_row(order_id)?.unwrap_or(order);
                let notice = OrderNotice::of(&row, "dispatched", at_ms, assignment.note);
                Ok(Some((row, notice)))
            }
            None => {
                let note = format!(
                    "no team found for device {} in township {}: an operator must dispatch it",
                    order.device_id, order.township
                );
                tracing::warn!(order = order_id, device = %order.device_id, "automatic dispatch found no team");
                store.append_event(
                    order_id,
                    at_ms,
                    "dispatcher:auto",
                    "dispatch_failed",
                    &note,
                    &OrderUpdate::default(),
                )?;
                Ok(None)
            }
        }
    }

    /// Takes a complaint on behalf of `principal`: links it to the device's (or household's)
    /// open order, or opens a new order from it and dispatches it. The roles that may file
    /// complaints are the API's to check; this checks, in the transaction that writes, that the
    /// device, the household and the order it would link to are all in the caller's scope, and
    /// the time: the server's clock, unless an operator sets `received_at_ms` within
    /// [`TimeWindow::complaint`].
    pub async fn complaint(
        &self,
        principal: &Principal,
        request: ComplaintRequest,
    ) -> Result<ComplaintOutcome, RequestError> {
        let service = self.clone();
        let principal = principal.clone();
        let (outcome, notices, dispatched) = self
            .with_store(move |store| {
                Ok(store.batch(|store| service.complaint_in(store, &principal, request)))
            })
            .await??;
        self.announce(notices, &dispatched);
        Ok(outcome)
    }

    #[allow(clippy::type_complexity)]
    fn complaint_in(
        &self,
        store: &mut Store,
        principal: &Principal,
        request: ComplaintRequest,
    ) -> Result<(ComplaintOutcome, Vec<OrderNotice>, Vec<OrderRow>), RequestError> {
        let now = self.clock.now_ms();
        let at_ms = match request.received_at_ms {
            None => now,
            Some(_) if principal.role != Role::Operator => {
                return Err(RequestError::Forbidden(format!(
                    "received_at_ms: a {:?} token may not date a complaint; omit it and the \
                     server's clock is used (only an operator may set it, from server now - 24 h \
                     to server now + 60 s)",
                    principal.role
                )))
            }
            Some(t) => TimeWindow::complaint(now.saturating_add(self.clock_lead_ms))
                .check("received_at_ms", t)
                .map_err(|m| RequestError::out_of_range("received_at_ms", m))?,
        };
        let outside = |field: &str, value: &str| {
            RequestError::Forbidden(format!("{field} {value:?} is outside the token's township"))
        };
        // Scope first, for everything the request names, before anything else is said about it.
        if let Some(household) = &request.household_id {
            if let Some(township) = store.township_of_household(household)? {
                if !principal.can_read_township(&township) {
                    return Err(outside("household_id", household));
                }
            }
        }
        let (device_id, context) = match (&request.device_id, &request.household_id) {
            (Some(device), _) => (device.clone(), store.device_context(device)?),
            (None, Some(household)) => {
                let device = store.device_of_household(household)?.ok_or_else(|| {
                    RequestError::invalid(format!(
                        "household_id {household:?} is not in the registry or has no registered device"
                    ))
                })?;
                let context = store.device_context(&device)?;
                (device, context)
            }
            (None, None) => {
                return Err(RequestError::invalid(
                    "a complaint needs device_id or household_id",
                ))
            }
        };
        if let Some(context) = &context {
            if !principal.can_read_township(&context.village.township_id) {
                let (field, value) = match &request.device_id {
                    Some(device) => ("device_id", device.as_str()),
                    None => ("household_id", context.household.id.as_str()),
                };
                return Err(outside(field, value));
            }
        }
        // A device and a household named together must agree: the household decides which
        // open order the complaint joins, the device what a new order is about.
        if let (Some(device), Some(household)) = (&request.device_id, &request.household_id) {
            match &context {
                Some(context) if context.household.id == *household => {}
                Some(context) => {
                    return Err(RequestError::invalid(format!(
                        "device_id {device:?} belongs to household {:?}, not to household_id {household:?}",
                        context.household.id
                    )))
                }
                None => {
                    return Err(RequestError::invalid(format!(
                        "device_id {device:?} is not in the registry, so it cannot belong to household_id {household:?}; give one of them"
                    )))
                }
            }
        }
        let existing = match &context {
            Some(context) => store
                .open_order_for_household(&context.household.id)?
                .or(store.open_order_for_device(&device_id)?),
            None => store.open_order_for_device(&device_id)?,
        };
        if let Some(order) = &existing {
            // An unregistered device's order carries the township of its topic.
            if !principal.can_read_township(&order.township) {
                let (field, value) = match (&request.device_id, &request.household_id) {
                    (None, Some(household)) => ("household_id", household.as_str()),
                    _ => ("device_id", device_id.as_str()),
                };
                return Err(outside(field, value));
            }
        }
        let channel = request.channel.as_str();
        let mut notices = Vec::new();
        let mut dispatched = Vec::new();
        let (order_id, linked, pre_emptive) = match existing {
            Some(order) => (order.id, true, order.pre_emptive),
            None => {
                let Some(context) = context.as_ref() else {
                    return Err(RequestError::invalid(format!(
                        "device_id {device_id:?} is not in the registry; import it first"
                    )));
                };
                let summary = if request.text.is_empty() {
                    format!("complaint via {channel}")
                } else {
                    format!("complaint via {channel}: {}", request.text)
                };
                let order = self.new_order(
                    store,
                    &device_id,
                    &context.village.township_id,
                    "repair",
                    "high",
                    channel,
                    &summary,
                    at_ms,
                    &format!("complaint:{channel}"),
                    false,
                    None,
                )?;
                let id = store
                    .create_order(&order)?
                    .ok_or_else(|| RequestError::invalid("the order could not be created"))?;
                self.metrics.order_opened();
                if let Some(row) = store.order_row(id)? {
                    notices.push(OrderNotice::of(&row, "created", at_ms, row.summary.clone()));
                }
                if let Some((row, notice)) = self.auto_dispatch(store, id, at_ms)? {
                    notices.push(notice);
                    dispatched.push(row);
                }
                (id, false, false)
            }
        };
        let complaint_id = store.add_complaint(&ComplaintRow {
            id: 0,
            channel: channel.to_owned(),
            device_id: Some(device_id.clone()),
            household_id: request.household_id.clone(),
            received_at_ms: at_ms,
            text: request.text.clone(),
            order_id,
            linked,
        })?;
        self.metrics.complaint(linked && pre_emptive);
        tracing::info!(complaint = complaint_id, order = order_id, device = %device_id, channel, linked, pre_emptive, by = %principal.actor(), "complaint taken");
        Ok((
            ComplaintOutcome {
                complaint_id,
                order_id,
                linked,
                pre_emptive,
            },
            notices,
            dispatched,
        ))
    }

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
        for notice in notices {
            self.notify(notice);
        }
        if row.state == OrderState::Dispatched {
            if let Some(notifier) = &self.notifier {
                notifier.order_dispatched(&row);
            }
        }
        Ok(row)
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

    fn act_in(
        &self,
        store: &mut Store,
        order_id: i64,
        principal: &Principal,
        action: OrderAction,
        at_ms: Option<i64>,
    ) -> Result<(OrderRow, Vec<OrderNotice>), RequestError> {
        // Another team's or township's order does not exist for the caller.
        let order = store
            .order_row(order_id)?
            .filter(|order| principal.can_read(order))
            .ok_or(OrderError::NotFound(order_id))?;
        let actor = principal.actor();
        let actor = actor.as_str();
        let now = self.clock.now_ms();
        let last = store
            .last_event_ms(order_id)?
            .map_or(order.created_at_ms, |last| last.max(order.created_at_ms));
        let at = match at_ms {
            // The server's clock; never before the order's last event, so its history stays
            // in order when the clock is behind (event-time mode, a reading from the future).
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
        };
        let mut update = OrderUpdate::default();
        // Events recorded after the action's own, at the same time.
        let mut follow_ups: Vec<(&'static str, String)> = Vec::new();
        let (kind, note): (String, String) = match action {
            OrderAction::Dispatch {
                team_id,
                technician_id,
            } => {
                update.state = Some(next_state(order.state, &Step::Dispatch)?);
                let assignment = match team_id {
                    Some(team) => Self::named_assignment(
                        store,
                        &order,
                        principal,
                        &team,
                        technician_id.as_deref(),
                    )?,
                    None => dispatch::route(store, &order)?.ok_or_else(|| {
                        RequestError::invalid("no team covers this order; name one with team_id")
                    })?,
                };
                update.team_id = Some(assignment.team.id.clone());
                update.technician_id = assignment.technician.map(|t| t.id);
                update.dispatched_at_ms = Some(at);
                self.metrics.order_dispatched();
                ("dispatched".into(), assignment.note)
            }
            OrderAction::Reassign {
                team_id,
                technician_id,
                reason,
            } => {
                update.state = Some(next_state(order.state, &Step::Reassign)?);
                let assignment = Self::named_assignment(
                    store,
                    &order,
                    principal,
                    &team_id,
                    technician_id.as_deref(),
                )?;
                update.team_id = Some(assignment.team.id.clone());
                update.technician_id = assignment.technician.map(|t| t.id);
                (
                    "reassigned".into(),
                    format!("{}; reason: {reason}", assignment.note),
                )
            }
            OrderAction::Accept => {
                update.state = Some(next_state(order.state, &Step::Accept)?);
                update.accepted_at_ms = Some(at);
                ("accepted".into(), String::new())
            }
            OrderAction::Arrive => {
                update.state = Some(next_state(order.state, &Step::Arrive)?);
                update.on_site_at_ms = Some(at);
                ("arrived".into(), String::new())
            }
            OrderAction::Resolve {
                parts,
                misuse,
                note,
            } => {
                update.state = Some(next_state(order.state, &Step::Resolve)?);
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
                for part in &parts {
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
                // A team's finding of misuse is a claim: the resident is charged for it only
                // once an operator confirms it.
                let applied = misuse && principal.role == Role::Operator;
                let claimed = misuse && !applied;
                let charge = charge(parts_cents, order.in_warranty.unwrap_or(false), applied);
                store.add_parts(order_id, &used)?;
                update.resolved_at_ms = Some(at);
                update.parts_cents = Some(charge.parts_cents);
                update.resident_pays_cents = Some(charge.resident_pays_cents);
                update.misuse = Some(applied);
                if claimed {
                    follow_ups.push((
                        ORDER_EVENT_MISUSE_CLAIMED,
                        format!(
                            "misuse claimed by {actor}; the resident is not charged for it until an operator confirms it (confirm_misuse)"
                        ),
                    ));
                }
                let parts_text: Vec<String> = used
                    .iter()
                    .map(|(p, q)| format!("{} x{q}", p.code))
                    .collect();
                (
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
                        if note.is_empty() {
                            String::new()
                        } else {
                            format!("; {note}")
                        }
                    ),
                )
            }
            OrderAction::ConfirmMisuse { note } => {
                if principal.role != Role::Operator {
                    return Err(RequestError::Forbidden(format!(
                        "a {:?} token may not confirm misuse; only an operator may",
                        principal.role
                    )));
                }
                if !can_confirm_misuse(order.state) {
                    return Err(TransitionError {
                        step: "confirm misuse on",
                        state: order.state.as_str(),
                    }
                    .into());
                }
                let kinds = store.event_kinds(order_id)?;
                if !misuse_claim_pending(kinds.iter().map(String::as_str)) {
                    return Err(RequestError::Conflict(format!(
                        "order {order_id} has no misuse claim awaiting confirmation (a team's resolve with misuse: true records one)"
                    )));
                }
                let charge = charge(order.parts_cents, order.in_warranty.unwrap_or(false), true);
                update.misuse = Some(true);
                update.resident_pays_cents = Some(charge.resident_pays_cents);
                (
                    ORDER_EVENT_MISUSE_CONFIRMED.into(),
                    format!(
                        "misuse confirmed: parts value {:.2} CNY; resident pays {:.2} CNY{}",
                        charge.parts_cents as f64 / 100.0,
                        charge.resident_pays_cents as f64 / 100.0,
                        if note.is_empty() {
                            String::new()
                        } else {
                            format!("; {note}")
                        }
                    ),
                )
            }
            OrderAction::Callback {
                satisfaction,
                solved,
                note,
            } => {
                if !(1..=5).contains(&satisfaction) {
                    return Err(RequestError::invalid(format!(
                        "satisfaction {satisfaction} is not 1..=5"
                    )));
                }
                let step = Step::Callback { solved };
                update.state = Some(next_state(order.state, &step)?);
                update.satisfaction = Some(satisfaction);
                update.reopen = !solved;
                (
                    step.kind().into(),
                    format!(
                        "satisfaction {satisfaction}/5; {}{}",
                        if solved {
                            "solved"
                        } else {
                            "NOT solved: order reopened"
                        },
                        if note.is_empty() {
                            String::new()
                        } else {
                            format!("; {note}")
                        }
                    ),
                )
            }
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
            OrderAction::Merge { into } => {
                if into == order_id {
                    return Err(RequestError::invalid(
                        "an order cannot be merged into itself",
                    ));
                }
                let target = store
                    .order_row(into)?
                    .filter(|target| principal.can_read(target))
                    .ok_or(OrderError::NotFound(into))?;
                if !target.state.is_open() {
                    return Err(RequestError::invalid(format!(
                        "order {into} is {}",
                        target.state.as_str()
                    )));
                }
                update.state = Some(next_state(order.state, &Step::Merge)?);
                update.closed_at_ms = Some(at);
                store.append_event(
                    into,
                    at,
                    actor,
                    "merged_from",
                    &format!("order {order_id} merged into this one"),
                    &OrderUpdate::default(),
                )?;
                ("merged".into(), format!("merged into order {into}"))
            }
            OrderAction::Escalate { note } => {
                if !order.state.is_open() {
                    return Err(RequestError::invalid(format!(
                        "order is {}",
                        order.state.as_str()
                    )));
                }
                self.metrics.escalation();
                ("escalated".into(), format!("督办 by {actor}: {note}"))
            }
        };
        store.append_event(order_id, at, actor, &kind, &note, &update)?;
        for (kind, note) in &follow_ups {
            store.append_event(order_id, at, actor, kind, note, &OrderUpdate::default())?;
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

    /// Raises the SLA warnings and escalations due at the service's clock. Returns them.
    pub async fn check_sla(&self) -> Result<Vec<sla::SlaNotice>, StoreError> {
        let now = self.clock.now_ms();
        let config = self.sla;
        let notices = self
            .with_store(move |store| {
                let open = store.orders(&store::OrderFilter {
                    open_only: true,
                    limit: 1_000_000,
                    ..store::OrderFilter::default()
                })?;
                let mut raised = Vec::new();
                for order in open {
                    for notice in sla::due(&config, &order, now) {
                        let bit = if notice.kind == "escalated" {
                            notice.stage.breached_bit() | notice.stage.warned_bit()
                        } else {
                            notice.stage.warned_bit()
                        };
                        store.append_event(
                            notice.order_id,
                            notice.at_ms,
                            "sla",
                            notice.kind,
                            &notice.note,
                            &OrderUpdate {
                                sla_flags: bit,
                                ..OrderUpdate::default()
                            },
                        )?;
                        raised.push((notice, order.clone()));
                    }
                }
                Ok(raised)
            })
            .await?;
        let mut raised = Vec::with_capacity(notices.len());
        for (notice, order) in notices {
            if notice.kind == "escalated" {
                self.metrics.sla_breach(notice.stage.as_str());
                tracing::warn!(order = notice.order_id, township = %notice.township, stage = notice.stage.as_str(), "SLA breached: escalated");
            } else {
                self.metrics.sla_warning(notice.stage.as_str());
            }
            self.notify(OrderNotice::of(
                &order,
                notice.kind,
                notice.at_ms,
                notice.note.clone(),
            ));
            raised.push(notice);
        }
        Ok(raised)
    }

    /// Checks SLA clocks every `sla.check_every` until `shutdown`.
    pub async fn run_sla_monitor(
        self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<()> {
        let mut tick = tokio::time::interval(self.sla.check_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {
                    if let Err(error) = self.check_sla().await {
                        self.metrics.store_error();
                        tracing::error!(%error, "SLA check failed");
                    }
                }
            }
        }
    }
}

/// The snake_case name serde gives a unit enum variant (`Severity::Major` -> `major`).
fn label<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::Channel;

    #[test]
    fn a_channel_has_one_name_in_json_orders_and_reports() {
        for channel in [
            Channel::Hotline12345,
            Channel::CentreHotline,
            Channel::App,
            Channel::SmsWechat,
            Channel::WalkIn,
        ] {
            let json = serde_json::to_value(channel).expect("serializes");
            assert_eq!(json, channel.as_str());
            let back: Channel = serde_json::from_value(json).expect("deserializes");
            assert_eq!(back, channel);
        }
        let old: Channel = serde_json::from_str("\"hotline12345\"").expect("the old name");
        assert_eq!(old, Channel::Hotline12345);
    }
}
