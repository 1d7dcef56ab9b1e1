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

mod actions;
pub mod backup;
pub mod calendar;
pub mod campaigns;
pub mod clock;
pub mod delegation;
pub mod dispatch;
pub mod edge;
pub mod idempotency;
mod intake;
pub mod model;
pub mod reports;
mod requests;
pub mod scheme;
pub mod sla;
pub mod stock;
pub mod stock_report;
pub mod store;

use std::sync::{Arc, Mutex};

use rules::{Action, Transition, TransitionKind};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

pub use actions::{OrderAction, PartUse, RequestError, MAX_PARTS_CENTS, MAX_PART_LINES};
pub use idempotency::{Answered, IdempotencyKey};
pub use intake::{Channel, ComplaintOutcome, ComplaintRequest};
pub use model::OrderState;
use model::{
    can_confirm_misuse, charge, misuse_claim_pending, next_state, Step, TimeWindow,
    TransitionError, ORDER_EVENT_MISUSE_CLAIMED, ORDER_EVENT_MISUSE_CONFIRMED,
    ORDER_EVENT_RESOLVED,
};
pub use requests::{IntakeOutcome, IntakeRequest, RequestKind, MAX_TEXT_CHARS, MAX_TICKET_CHARS};
use store::{AlertRow, ComplaintRow, NewOrder, OrderRow, OrderUpdate, Store, StoreError};

use crate::auth::{Principal, Role};
use crate::metrics::Metrics;
use clock::Clock;
use sla::{SlaClass, SlaConfig, Stage};

/// Why an action was refused.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("no order {0}")]
    NotFound(i64),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A change operators and technicians may want to see live (SSE, MQTT).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OrderNotice {
    pub order_id: i64,
    pub township: String,
    pub team_id: Option<String>,
    /// The technician the order is assigned to, if any.
    pub technician_id: Option<String>,
    pub category: String,
    pub priority: String,
    /// `rule` or the intake channel.
    pub source: String,
    /// When the order was created, Unix ms.
    pub created_at_ms: i64,
    /// The order's SLA class (`repair`, `maintenance`, `utility`, `call`), whose deadlines
    /// its clocks run against.
    pub sla_class: SlaClass,
    /// When its SLA clocks started: `created_at_ms`, or the last change of class, Unix ms.
    pub sla_from_ms: i64,
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
            technician_id: order.technician_id.clone(),
            category: order.category.clone(),
            priority: order.priority.clone(),
            source: order.source.clone(),
            created_at_ms: order.created_at_ms,
            sla_class: SlaClass::of(order),
            sla_from_ms: sla::clock_start(order),
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

/// The order category of a call task: a rule asks the hotline desk to ring the household or the
/// village caretaker (管护员) before anyone drives out (a box silent in frost: most often the
/// network, not the heater). A call task is not dispatched automatically; an operator
/// dispatches it when the call fails or finds the heating out, and a repair order a rule opens
/// for the same device turns it into that order and dispatches it.
pub const CALL_TASK_CATEGORY: &str = "contact_household";

/// How urgent a priority label is (`low` < `normal` < `high` < `urgent`); `None` for others.
fn priority_rank(priority: &str) -> Option<usize> {
    ["low", "normal", "high", "urgent"]
        .iter()
        .position(|x| *x == priority)
}

/// The first event of a call task.
const CALL_TASK_NOTE: &str = "call the household or the village caretaker first; dispatch a technician if nobody answers or the heating is out";

/// What applying alerts did: opened order ids, notices for the live stream, dispatched orders.
pub type Applied = (Vec<i64>, Vec<OrderNotice>, Vec<OrderRow>);

/// Publishes a team's new orders for technicians' clients (MQTT in the gateway).
pub trait TeamNotifier: Send + Sync {
    fn order_dispatched(&self, order: &OrderRow);
    /// Publishes an alert, escalation or incident on its topic ([`LiveEvent::topic`]).
    fn live_event(&self, event: &LiveEvent);
    /// Publishes a notice to people (`notify::mqtt`) on `topic`.
    fn notice(&self, topic: String, payload: Vec<u8>);
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
    /// What a vendor owes for an order it delegates ([`delegation`]).
    delegation: delegation::DelegationConfig,
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
            delegation: delegation::DelegationConfig::default(),
            clock_lead_ms: 0,
        }
    }

    /// In event-clock mode: the watermark (the clock) trails the newest reading by `lead`;
    /// client-supplied times are bounded against the newest reading instead.
    pub fn with_clock_lead(mut self, lead: std::time::Duration) -> Self {
        self.clock_lead_ms = i64::try_from(lead.as_millis()).unwrap_or(i64::MAX);
        self
    }

    /// The call-out fee a vendor owes for an order it delegates (`[delegation]`).
    pub fn with_delegation(mut self, config: delegation::DelegationConfig) -> Self {
        self.delegation = config;
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
        let mut applied = Applied::default();
        for (transition, township) in transitions {
            match transition.kind {
                TransitionKind::Firing => {
                    self.apply_firing(store, &transition, &township, &mut applied)?
                }
                TransitionKind::Resolved => {
                    store.alert_resolved(&transition.episode_id, transition.at_ms)?;
                }
            }
        }
        Ok(applied)
    }

    /// A firing alert: recorded; when its action asks for an order and its episode has none
    /// yet, it joins the device's open order or opens one.
    fn apply_firing(
        &self,
        store: &mut Store,
        transition: &Transition,
        township: &str,
        applied: &mut Applied,
    ) -> Result<(), StoreError> {
        let alert = AlertRow {
            episode_id: transition.episode_id.clone(),
            device_id: transition.device_id.to_string(),
            township: township.to_owned(),
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
            return Ok(());
        };
        if store.episode_has_order(&transition.episode_id)? {
            return Ok(());
        }
        if let Some(open) = store.open_order_for_device(transition.device_id.as_str())? {
            return self.join_open_order_of_device(
                store,
                &open,
                category,
                &label(priority),
                transition,
                applied,
            );
        }
        self.open_alert_order(
            store,
            transition,
            township,
            category,
            &label(priority),
            applied,
        )
    }

    /// Links the alert's episode to the device's open order: a waiting call task becomes the
    /// order the rule asks for; otherwise a more urgent alert makes the order as urgent (a
    /// call-first alert does not: it asks for a call).
    fn join_open_order_of_device(
        &self,
        store: &mut Store,
        open: &OrderRow,
        category: &str,
        priority: &str,
        transition: &Transition,
        applied: &mut Applied,
    ) -> Result<(), StoreError> {
        let (_, notices, dispatched) = applied;
        if !store.link_episode(
            &transition.episode_id,
            open.id,
            transition.at_ms,
            &transition.summary,
        )? {
            return Ok(());
        }
        let device = transition.device_id.as_str();
        tracing::info!(order = open.id, device, rule = %transition.rule_id, "alert linked to the device's open order");
        if let Some((row, notice)) =
            self.upgrade_call_task(store, open, category, priority, transition, notices)?
        {
            notices.push(notice);
            dispatched.push(row);
        } else if category != CALL_TASK_CATEGORY {
            if let Some(current) = store.order_row(open.id)? {
                self.raise_priority(
                    store,
                    &current,
                    priority,
                    transition.at_ms,
                    &format!("rule:{}", transition.rule_id),
                    &transition.summary,
                    notices,
                )?;
            }
        }
        Ok(())
    }

    /// Opens the order an alert asks for; a call task waits for its call (proportionate to the
    /// evidence: ring the household or the village caretaker first; a technician goes when the
    /// call fails or other evidence joins, see `upgrade_call_task`), any other is dispatched.
    fn open_alert_order(
        &self,
        store: &mut Store,
        transition: &Transition,
        township: &str,
        category: &str,
        priority: &str,
        applied: &mut Applied,
    ) -> Result<(), StoreError> {
        let (opened, notices, dispatched) = applied;
        let device = transition.device_id.as_str();
        let order = self.new_order(
            store,
            device,
            township,
            category,
            priority,
            "rule",
            &transition.summary,
            transition.at_ms,
            &format!("rule:{}", transition.rule_id),
            true,
            Some(transition.episode_id.clone()),
        )?;
        let Some(id) = store.create_order(&order)? else {
            return Ok(());
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
        if category == CALL_TASK_CATEGORY {
            store.append_event(
                id,
                order.created_at_ms,
                "dispatcher:auto",
                "call_first",
                CALL_TASK_NOTE,
                &OrderUpdate::default(),
            )?;
            self.metrics.call_task_opened();
            return Ok(());
        }
        if let Some((row, notice)) = self.auto_dispatch(store, id, order.created_at_ms)? {
            notices.push(notice);
            dispatched.push(row);
        }
        Ok(())
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
        let service = self.clone();
        let (live, notices) = self
            .with_store(move |store| {
                let mut live = Vec::with_capacity(escalations.len());
                let mut notices = Vec::new();
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
                        let new = label(priority);
                        if priority_rank(&new) > priority_rank(&order.priority) {
                            store.set_priority(order.id, &new)?;
                            service.restart_clocks_on_class_change(
                                store,
                                &order,
                                escalation.at_ms,
                                &format!("rule:{}", escalation.rule_id),
                                &mut notices,
                            )?;
                        }
                    }
                    live.push(LiveEvent::Escalation {
                        township: Some(order.township.clone()),
                        escalation,
                    });
                }
                Ok((live, notices))
            })
            .await?;
        self.send_live(live);
        self.announce(notices, &[]);
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
                    let mut applied = Applied::default();
                    for incident in incidents {
                        match incident.kind {
                            TransitionKind::Firing => {
                                service.apply_incident_firing(store, &incident, &mut applied)?
                            }
                            TransitionKind::Resolved => {
                                store.alert_resolved(&incident.incident_id, incident.at_ms)?;
                            }
                        }
                    }
                    Ok(applied)
                })
            })
            .await?;
        self.send_live(live);
        self.announce(notices, &dispatched);
        Ok(opened)
    }

    /// A firing incident: recorded as an alert on its group; when its action asks for an
    /// order, one order for the whole group, dispatched.
    fn apply_incident_firing(
        &self,
        store: &mut Store,
        incident: &rules::IncidentTransition,
        applied: &mut Applied,
    ) -> Result<(), StoreError> {
        let (opened, notices, dispatched) = applied;
        let subject = format!("{}:{}", label(&incident.level), incident.group);
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
            self.metrics.alert_fired(&incident.fleet_rule_id);
        }
        let Action::Order { category, priority } = &incident.action else {
            return Ok(());
        };
        let order = NewOrder {
            episode_id: Some(incident.incident_id.clone()),
            device_id: subject,
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
            return Ok(());
        };
        self.metrics.order_opened();
        tracing::warn!(order = id, group = %incident.group, rule = %incident.fleet_rule_id, devices = incident.devices.len(), "supply incident: one order for the whole group");
        if let Some(row) = store.order_row(id)? {
            notices.push(OrderNotice::of(
                &row,
                "created",
                row.created_at_ms,
                row.summary.clone(),
            ));
        }
        opened.push(id);
        if let Some((row, notice)) = self.auto_dispatch(store, id, incident.at_ms)? {
            notices.push(notice);
            dispatched.push(row);
        }
        Ok(())
    }

    /// When `open` is a call task still waiting for its call and a rule now asks for a repair
    /// order on the same device, the evidence has joined: the task becomes that order (its
    /// category, the higher priority) and is dispatched at once.
    fn upgrade_call_task(
        &self,
        store: &mut Store,
        open: &OrderRow,
        category: &str,
        priority: &str,
        transition: &Transition,
        notices: &mut Vec<OrderNotice>,
    ) -> Result<Option<(OrderRow, OrderNotice)>, StoreError> {
        if open.category != CALL_TASK_CATEGORY
            || category == CALL_TASK_CATEGORY
            || open.state != OrderState::Created
        {
            return Ok(None);
        }
        let priority = if priority_rank(priority) > priority_rank(&open.priority) {
            priority
        } else {
            open.priority.as_str()
        };
        store.upgrade_call_task(open.id, category, priority)?;
        store.append_event(
            open.id,
            transition.at_ms,
            &format!("rule:{}", transition.rule_id),
            "evidence_joined",
            &format!(
                "{category} ({priority}) instead of a call: {}",
                transition.summary
            ),
            &OrderUpdate::default(),
        )?;
        self.metrics.call_task_upgraded();
        tracing::info!(order = open.id, device = %open.device_id, rule = %transition.rule_id, category, "call task became a repair order: evidence joined");
        self.restart_clocks_on_class_change(
            store,
            open,
            transition.at_ms,
            &format!("rule:{}", transition.rule_id),
            notices,
        )?;
        self.auto_dispatch(store, open.id, transition.at_ms)
    }

    /// Something more urgent joined `order` (a resident's repair request, an alert of a higher
    /// priority): its priority rises to `priority` when that is higher, with a
    /// `priority_raised` event, and when that moves it into another SLA class its clocks
    /// restart ([`OrderService::restart_clocks_on_class_change`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn raise_priority(
        &self,
        store: &mut Store,
        order: &OrderRow,
        priority: &str,
        at_ms: i64,
        actor: &str,
        why: &str,
        notices: &mut Vec<OrderNotice>,
    ) -> Result<(), StoreError> {
        if priority_rank(priority).is_none()
            || priority_rank(priority) <= priority_rank(&order.priority)
        {
            return Ok(());
        }
        store.set_priority(order.id, priority)?;
        let at_ms = at_ms.max(order.created_at_ms);
        store.append_event(
            order.id,
            at_ms,
            actor,
            "priority_raised",
            &format!("priority {} -> {priority}: {why}", order.priority),
            &OrderUpdate::default(),
        )?;
        tracing::info!(order = order.id, from = %order.priority, to = priority, actor, "order priority raised");
        self.restart_clocks_on_class_change(store, order, at_ms, actor, notices)
    }

    /// When `before` (the order as it was) and the order as stored now are of different SLA
    /// classes (a maintenance finding became urgent, a call task became a repair), the new
    /// class's clocks run from `at_ms`: `sla_from_ms` is set, the warnings and breaches of the
    /// stages not reached yet are forgotten, and an `sla_class_changed` event says so.
    pub(crate) fn restart_clocks_on_class_change(
        &self,
        store: &mut Store,
        before: &OrderRow,
        at_ms: i64,
        actor: &str,
        notices: &mut Vec<OrderNotice>,
    ) -> Result<(), StoreError> {
        let Some(after) = store.order_row(before.id)? else {
            return Ok(());
        };
        let (from, to) = (SlaClass::of(before), SlaClass::of(&after));
        if from == to {
            return Ok(());
        }
        let at_ms = at_ms.max(after.created_at_ms);
        let clear = Stage::ALL
            .into_iter()
            .filter(|stage| stage.reached_at(&after).is_none())
            .fold(0, |bits, stage| {
                bits | stage.warned_bit() | stage.breached_bit()
            });
        store.restart_sla(after.id, at_ms, clear)?;
        let clocks = self.sla.clocks(to);
        let minutes = |stage: Stage| clocks.deadline_ms(stage) / 60_000;
        let note = format!(
            "SLA class {} -> {}: its clocks run from here (dispatch {} min, on site {} min, repaired {} min)",
            from.as_str(),
            to.as_str(),
            minutes(Stage::Dispatch),
            minutes(Stage::OnSite),
            minutes(Stage::Repaired)
        );
        store.append_event(
            after.id,
            at_ms,
            actor,
            "sla_class_changed",
            &note,
            &OrderUpdate::default(),
        )?;
        tracing::info!(
            order = after.id,
            from = from.as_str(),
            to = to.as_str(),
            at_ms,
            "SLA class changed: clocks restarted"
        );
        let row = store.order_row(after.id)?.unwrap_or(after);
        notices.push(OrderNotice::of(&row, "sla_class_changed", at_ms, note));
        Ok(())
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
                let mut update = OrderUpdate {
                    state: Some(OrderState::Dispatched),
                    team_id: Some(assignment.team.id.clone()),
                    technician_id: assignment.technician.as_ref().map(|t| t.id.clone()),
                    dispatched_at_ms: Some(at_ms),
                    ..OrderUpdate::default()
                };
                let late = self.escalate_late(&order, &assignment, at_ms, &mut update);
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
                let effect = stock::StockEffect::Assigned;
                if let Some((kind, note)) =
                    self.stock_for_step(store, &row, effect, at_ms, "dispatcher:auto")?
                {
                    store.append_event(
                        order_id,
                        at_ms,
                        "dispatcher:auto",
                        kind,
                        &note,
                        &OrderUpdate::default(),
                    )?;
                }
                if let Some(note) = late {
                    store.append_event(
                        order_id,
                        at_ms,
                        "dispatcher:auto",
                        "escalated",
                        &note,
                        &OrderUpdate::default(),
                    )?;
                    let row = store.order_row(order_id)?.unwrap_or_else(|| row.clone());
                    self.notify(OrderNotice::of(&row, "escalated", at_ms, note));
                }
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
                        let bit = if notice.is_breach() {
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
            let (class, stage) = (notice.class.as_str(), notice.stage.as_str());
            match notice.kind {
                "escalated" => {
                    self.metrics.sla_breach(class, stage, true);
                    tracing::warn!(order = notice.order_id, township = %notice.township, class, stage, "SLA breached: escalated");
                }
                "sla_breached" => {
                    self.metrics.sla_breach(class, stage, false);
                    tracing::info!(order = notice.order_id, township = %notice.township, team = order.team_id.as_deref().unwrap_or(""), class, stage, "SLA breached: recorded for the team, not escalated");
                }
                _ => self.metrics.sla_warning(class, stage),
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
            Channel::Technician,
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
