//! Notices that reach people: escalations (督办, an SLA breach or an operator's), SLA warnings,
//! supply incidents and the orders of vulnerable households, pushed out of the gateway to the
//! township, the centre, the village electricians and the caretakers (管护员).
//!
//! [`Notifier`] listens to the order service's notice stream (the same one the console's live
//! stream reads; it never waits on order processing: the stream is a broadcast channel, and a
//! notifier that falls behind loses notices and counts them), turns each relevant order event
//! into a [`Notice`] with its [`Recipient`]s from the registry and `[notify]`'s people, and
//! offers it to each [`NoticeSink`]: the webhook ([`webhook`]: every notice as signed JSON) and
//! the SMS/WeChat gateway adapter ([`sms`]: a short text and the recipients' phone numbers,
//! through the same signed, retried, bounded delivery). Team order messages on MQTT stay with
//! the order service's `TeamNotifier` (the broker component).

pub mod city;
pub mod mqtt;
pub mod sms;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::orders::dispatch::{POWER_SUPPLY, VILLAGE_HEAT_PUMP_TRIPS};
use crate::orders::store::{OrderRow, Store, StoreError};
use crate::orders::{OrderNotice, OrderService};
use crate::registry::people::{normalise_phone, HouseholdView};

pub use city::{CityConfig, CitySender};
pub use sms::SmsConfig;
pub use webhook::{Delivery, DeliverySettings, DeliveryWorker, WebhookConfig};

/// Most order events routed in one store call.
const BATCH: usize = 256;
/// Longest delivery deadline and wait between attempts a sink may be given.
const MAX_DEADLINE: Duration = Duration::from_secs(24 * 3600);
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// Most township officers and centre duty numbers `[notify]` may list.
pub const MAX_PEOPLE: usize = 500;

/// `[notify]`: who is told, and through which sinks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Township officers (the person each township assigns to orders): they receive the
    /// escalations, SLA warnings and supply incidents of their township.
    #[serde(default)]
    pub township_officers: Vec<OfficerConfig>,
    /// The district centre's duty numbers: every escalation, SLA warning and supply incident.
    #[serde(default)]
    pub centre_duty: Vec<DutyConfig>,
    /// Every notice as signed JSON to one URL.
    #[serde(default)]
    pub webhook: WebhookConfig,
    /// An SMS/WeChat gateway: a short text and the recipients' phone numbers.
    #[serde(default)]
    pub sms: SmsConfig,
    /// The 12345 round trip: replies on the city's tickets to its platform ([`city`]).
    #[serde(default)]
    pub city: CityConfig,
    /// Every notice, without phone numbers or names, on `heating/v1/{township}/{kind}/notices`
    /// through the gateway's broker ([`mqtt`]).
    #[serde(default = "default_true")]
    pub mqtt: bool,
}

fn default_true() -> bool {
    true
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            township_officers: Vec::new(),
            centre_duty: Vec::new(),
            webhook: WebhookConfig::default(),
            sms: SmsConfig::default(),
            city: CityConfig::default(),
            mqtt: true,
        }
    }
}

// Delivery defaults of the webhook and the SMS adapter.
fn default_notify_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_notify_deadline() -> Duration {
    Duration::from_secs(600)
}
fn default_notify_max_attempts() -> u32 {
    6
}
fn default_notify_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_notify_max_backoff() -> Duration {
    Duration::from_secs(60)
}
fn default_notify_queue() -> usize {
    1000
}
fn default_notify_max_body_bytes() -> usize {
    65536
}

/// A township officer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficerConfig {
    /// The township id (as in the registry, e.g. `yanqing`).
    pub township: String,
    /// Who it is.
    pub name: String,
    /// Mobile or landline number (spaces, dashes and `+86` allowed).
    pub phone: String,
}

/// A number of the centre's duty desk.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DutyConfig {
    /// Who or which desk it is.
    pub name: String,
    /// Mobile or landline number (spaces, dashes and `+86` allowed).
    pub phone: String,
}

/// Why `[notify]` was refused or a sink could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("the HTTP client for notices cannot be built: {0}")]
    Client(String),
}

impl NotifyError {
    /// The config field the error is about, when it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            NotifyError::Invalid { field, .. } => Some(field),
            NotifyError::Client(_) => None,
        }
    }
}

impl NotifyConfig {
    /// Reads `env:VARIABLE` secrets from the environment. Errors name the field.
    pub fn resolve_secrets(&mut self) -> Result<(), NotifyError> {
        for (field, secret) in [
            ("notify.webhook.secret", &mut self.webhook.secret),
            ("notify.sms.secret", &mut self.sms.secret),
            ("notify.city.secret", &mut self.city.secret),
        ] {
            if let Some(variable) = secret.strip_prefix("env:") {
                *secret = std::env::var(variable).map_err(|_| NotifyError::Invalid {
                    field: field.to_owned(),
                    message: format!("environment variable {variable} is not set"),
                })?;
            }
        }
        Ok(())
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let invalid = |field: String, message: String| NotifyError::Invalid { field, message };
        if self.township_officers.len() + self.centre_duty.len() > MAX_PEOPLE {
            return Err(invalid(
                "notify.township_officers".into(),
                format!("township_officers and centre_duty list at most {MAX_PEOPLE} people"),
            ));
        }
        for (index, officer) in self.township_officers.iter().enumerate() {
            if officer.township.trim().is_empty() {
                return Err(invalid(
                    format!("notify.township_officers[{index}].township"),
                    "is empty".into(),
                ));
            }
            normalise_phone(&officer.phone)
                .map_err(|e| invalid(format!("notify.township_officers[{index}].phone"), e))?;
        }
        for (index, duty) in self.centre_duty.iter().enumerate() {
            normalise_phone(&duty.phone)
                .map_err(|e| invalid(format!("notify.centre_duty[{index}].phone"), e))?;
        }
        check_delivery(
            "notify.webhook",
            self.webhook.url.as_deref(),
            &self.webhook.secret,
            &Limits {
                timeout: self.webhook.timeout,
                deadline: self.webhook.deadline,
                max_attempts: self.webhook.max_attempts,
                backoff: self.webhook.backoff,
                max_backoff: self.webhook.max_backoff,
                queue: self.webhook.queue,
                max_body_bytes: self.webhook.max_body_bytes,
            },
        )?;
        self.sms.validate()?;
        self.city.validate()
    }
}

/// A sink's numeric limits, checked the same way for every sink.
pub(crate) struct Limits {
    pub timeout: Duration,
    pub deadline: Duration,
    pub max_attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    pub queue: usize,
    pub max_body_bytes: usize,
}

/// Checks a sink's URL, secret and limits under `section`.
pub(crate) fn check_delivery(
    section: &str,
    url: Option<&str>,
    secret: &str,
    limits: &Limits,
) -> Result<(), NotifyError> {
    let invalid = |key: &str, message: &str| NotifyError::Invalid {
        field: format!("{section}.{key}"),
        message: message.to_owned(),
    };
    if !secret.is_empty() && secret.chars().count() < 16 {
        return Err(invalid("secret", "must be at least 16 characters"));
    }
    if limits.timeout.is_zero() {
        return Err(invalid("timeout", "must be greater than 0"));
    }
    if limits.deadline < limits.timeout || limits.deadline > MAX_DEADLINE {
        return Err(invalid(
            "deadline",
            "must be at least timeout and at most 1d",
        ));
    }
    if !(1..=webhook::MAX_ATTEMPTS).contains(&limits.max_attempts) {
        return Err(invalid(
            "max_attempts",
            &format!("must be 1 to {}", webhook::MAX_ATTEMPTS),
        ));
    }
    if limits.backoff.is_zero() {
        return Err(invalid("backoff", "must be greater than 0"));
    }
    if limits.max_backoff < limits.backoff || limits.max_backoff > MAX_BACKOFF {
        return Err(invalid(
            "max_backoff",
            "must be at least backoff and at most 1h",
        ));
    }
    if !(1..=webhook::MAX_QUEUE).contains(&limits.queue) {
        return Err(invalid(
            "queue",
            &format!("must be 1 to {}", webhook::MAX_QUEUE),
        ));
    }
    if !(1024..=webhook::MAX_BODY_BYTES).contains(&limits.max_body_bytes) {
        return Err(invalid(
            "max_body_bytes",
            &format!("must be 1024 to {}", webhook::MAX_BODY_BYTES),
        ));
    }
    if let Some(url) = url {
        let field: &'static str = if section == "notify.sms" {
            "notify.sms.url"
        } else {
            "notify.webhook.url"
        };
        webhook::check_url(field, url, secret)?;
    }
    Ok(())
}

/// What a notice is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// 督办: an SLA deadline passed, or an operator or township escalated the order.
    Escalated,
    /// An SLA deadline is near (`sla.warn_at` of it has passed).
    SlaWarning,
    /// A power-supply order was opened (a village without power, heat pumps tripping together,
    /// a device's supply fault): for the village electrician.
    SupplyIncident,
    /// An order was opened for a vulnerable household: for its caretaker.
    VulnerableOrder,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Escalated => "escalated",
            NoticeKind::SlaWarning => "sla_warning",
            NoticeKind::SupplyIncident => "supply_incident",
            NoticeKind::VulnerableOrder => "vulnerable_order",
        }
    }
}

/// Why someone receives a notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecipientRole {
    /// `[[notify.township_officers]]` of the order's township.
    TownshipOfficer,
    /// `[[notify.centre_duty]]`.
    CentreDuty,
    /// The registry's electricians of the order's village (power-supply orders).
    VillageElectrician,
    /// The vulnerable household's caretaker (its own, else the village's first).
    Caretaker,
}

impl RecipientRole {
    pub const ALL: [RecipientRole; 4] = [
        RecipientRole::TownshipOfficer,
        RecipientRole::CentreDuty,
        RecipientRole::VillageElectrician,
        RecipientRole::Caretaker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecipientRole::TownshipOfficer => "township_officer",
            RecipientRole::CentreDuty => "centre_duty",
            RecipientRole::VillageElectrician => "village_electrician",
            RecipientRole::Caretaker => "caretaker",
        }
    }

    pub fn parse(text: &str) -> Option<RecipientRole> {
        RecipientRole::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// A person a notice is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub role: RecipientRole,
    pub name: String,
    /// In normal form (digits only).
    pub phone: String,
}

/// One notice, as the webhook sends it (JSON) and the SMS adapter words it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// Schema version of this body.
    pub v: u32,
    /// `{kind}:{order_id}:{at_ms}:{hash of the note}`: the same on every attempt and for
    /// every sink, different for two escalations of one order in the same millisecond.
    pub id: String,
    pub kind: NoticeKind,
    pub order_id: i64,
    pub township: String,
    pub village_id: Option<String>,
    pub village_name: Option<String>,
    pub household_id: Option<String>,
    /// The household's address, for a vulnerable household's caretaker.
    pub address: Option<String>,
    pub device_id: String,
    pub category: String,
    pub priority: String,
    /// The order's state when the notice was made.
    pub state: String,
    pub team_id: Option<String>,
    pub technician_id: Option<String>,
    /// The order event's note (the SLA stage and deadline, the escalation's reason...).
    pub note: String,
    /// When the event happened, Unix ms.
    pub at_ms: i64,
    pub recipients: Vec<Recipient>,
}

/// Somewhere notices go. `offer` never blocks: a sink queues and delivers on its own task.
pub trait NoticeSink: Send + Sync {
    /// The sink's name in metrics and logs.
    fn name(&self) -> &'static str;
    fn offer(&self, notice: &Notice);
}

/// The webhook: every notice as JSON.
pub struct WebhookSink {
    delivery: Delivery,
}

impl NoticeSink for WebhookSink {
    fn name(&self) -> &'static str {
        self.delivery.sink()
    }

    fn offer(&self, notice: &Notice) {
        match serde_json::to_vec(notice) {
            Ok(body) => self.delivery.offer(notice.id.clone(), body),
            Err(error) => {
                tracing::error!(notice = %notice.id, %error, "notice could not be serialised")
            }
        }
    }
}

/// The people `[notify]` names, phones in normal form.
#[derive(Debug, Clone, Default)]
struct People {
    officers: Vec<(String, Recipient)>,
    centre: Vec<Recipient>,
}

impl People {
    fn of(config: &NotifyConfig) -> People {
        let person = |role, name: &str, phone: &str| {
            normalise_phone(phone).ok().map(|phone| Recipient {
                role,
                name: name.to_owned(),
                phone,
            })
        };
        People {
            officers: config
                .township_officers
                .iter()
                .filter_map(|o| {
                    person(RecipientRole::TownshipOfficer, &o.name, &o.phone)
                        .map(|r| (o.township.clone(), r))
                })
                .collect(),
            centre: config
                .centre_duty
                .iter()
                .filter_map(|d| person(RecipientRole::CentreDuty, &d.name, &d.phone))
                .collect(),
        }
    }
}

/// Turns order events into notices and hands them to the sinks.
pub struct Notifier {
    orders: OrderService,
    events: broadcast::Receiver<OrderNotice>,
    people: Arc<People>,
    sinks: Vec<Box<dyn NoticeSink>>,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// The notifier and the delivery tasks of the configured sinks (run each with
    /// [`DeliveryWorker::run`] and the notifier with [`Notifier::run`]); `None` when no sink
    /// is configured. Subscribes to `orders`' notices at once, so nothing after this call is
    /// missed.
    pub fn new(
        config: &NotifyConfig,
        orders: &OrderService,
        metrics: Arc<Metrics>,
    ) -> Result<Option<(Notifier, Vec<DeliveryWorker>)>, NotifyError> {
        Self::with_sinks(config, orders, metrics, Vec::new())
    }

    /// [`Notifier::new`] with `extra` sinks beside the configured ones (the MQTT sink, which
    /// needs the gateway's broker link: [`mqtt::MqttSink`]).
    pub fn with_sinks(
        config: &NotifyConfig,
        orders: &OrderService,
        metrics: Arc<Metrics>,
        extra: Vec<Box<dyn NoticeSink>>,
    ) -> Result<Option<(Notifier, Vec<DeliveryWorker>)>, NotifyError> {
        let mut sinks: Vec<Box<dyn NoticeSink>> = extra;
        let mut workers = Vec::new();
        if let Some(settings) = DeliverySettings::of_webhook(&config.webhook)? {
            let (delivery, worker) = Delivery::new(settings, Arc::clone(&metrics))?;
            sinks.push(Box::new(WebhookSink { delivery }));
            workers.push(worker);
        }
        if let Some((sink, worker)) = sms::SmsSink::new(&config.sms, Arc::clone(&metrics))? {
            sinks.push(Box::new(sink));
            workers.push(worker);
        }
        if sinks.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            Notifier {
                orders: orders.clone(),
                events: orders.subscribe(),
                people: Arc::new(People::of(config)),
                sinks,
                metrics,
            },
            workers,
        )))
    }

    /// Routes order events to the sinks until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let names: Vec<&str> = self.sinks.iter().map(|s| s.name()).collect();
        tracing::info!(sinks = ?names, officers = self.people.officers.len(), centre_duty = self.people.centre.len(), "notifier started");
        // A township id the registry does not know (a typo) would silently reach nobody.
        if let Ok(townships) = self.orders.with_store(|store| store.townships()).await {
            for (township, officer) in &self.people.officers {
                if !townships.is_empty() && !townships.iter().any(|t| t.id == *township) {
                    tracing::warn!(township = %township, officer = %officer.name, "a township officer's township is not in the registry: its notices will reach nobody there");
                }
            }
        }
        loop {
            let first = tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                event = self.events.recv() => event,
            };
            let mut batch = Vec::new();
            match first {
                Ok(event) => batch.push(event),
                Err(RecvError::Lagged(missed)) => self.lagged(missed),
                Err(RecvError::Closed) => return Ok(()),
            }
            while batch.len() < BATCH {
                match self.events.try_recv() {
                    Ok(event) => batch.push(event),
                    Err(TryRecvError::Lagged(missed)) => self.lagged(missed),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
            batch.retain(|event| {
                matches!(event.kind.as_str(), "created" | "sla_warning" | "escalated")
            });
            if batch.is_empty() {
                continue;
            }
            let people = Arc::clone(&self.people);
            let notices = match self
                .orders
                .with_store(move |store| notices_for(store, &batch, &people))
                .await
            {
                Ok(notices) => notices,
                Err(error) => {
                    self.metrics.store_error();
                    tracing::error!(%error, "order events could not be turned into notices");
                    continue;
                }
            };
            for notice in &notices {
                tracing::info!(notice = %notice.id, kind = notice.kind.as_str(), order = notice.order_id, township = %notice.township, recipients = notice.recipients.len(), "notice sent to the sinks");
                for sink in &self.sinks {
                    sink.offer(notice);
                }
            }
        }
    }

    /// Order events lost because the notifier fell behind the broadcast: counted as
    /// `dropped` under sink `notifier` (every lost event, whether it would have made a notice
    /// or not).
    fn lagged(&self, missed: u64) {
        self.metrics.notice_outcomes("notifier", "dropped", missed);
        tracing::warn!(
            missed,
            "order events were not turned into notices: the notifier fell behind"
        );
    }
}

/// The notices of order events, with their recipients from the store and `people`.
fn notices_for(
    store: &mut Store,
    events: &[OrderNotice],
    people: &People,
) -> Result<Vec<Notice>, StoreError> {
    let mut notices = Vec::new();
    for event in events {
        if let Some(notice) = notice_for(store, event, people)? {
            notices.push(notice);
        }
    }
    Ok(notices)
}

/// The notice of one order event, when it makes one: an escalation, an SLA warning, a supply
/// incident's order or a vulnerable household's new order.
fn notice_for(
    store: &Store,
    event: &OrderNotice,
    people: &People,
) -> Result<Option<Notice>, StoreError> {
    let Some(order) = store.order_row(event.order_id)? else {
        return Ok(None);
    };
    let household = match &order.household_id {
        Some(id) => store.household_view(id)?,
        None => None,
    };
    let vulnerable = household.as_ref().is_some_and(|h| h.vulnerable);
    let power = matches!(
        order.category.as_str(),
        POWER_SUPPLY | VILLAGE_HEAT_PUMP_TRIPS
    );
    let kind = match (event.kind.as_str(), power, vulnerable) {
        ("escalated", ..) => NoticeKind::Escalated,
        ("sla_warning", ..) => NoticeKind::SlaWarning,
        ("created", true, _) => NoticeKind::SupplyIncident,
        ("created", false, true) => NoticeKind::VulnerableOrder,
        _ => return Ok(None),
    };
    let recipients = recipients(store, &order, household.as_ref(), kind, people)?;
    let village_name = match (&household, &order.village_id) {
        (Some(h), _) => Some(h.village_name.clone()),
        (None, Some(village)) => store
            .villages(Some(&order.township))?
            .into_iter()
            .find(|v| v.id == *village)
            .map(|v| v.name),
        (None, None) => None,
    };
    Ok(Some(Notice {
        v: 1,
        id: format!(
            "{}:{}:{}:{:08x}",
            kind.as_str(),
            order.id,
            event.at_ms,
            fnv1a(&event.note)
        ),
        kind,
        order_id: order.id,
        township: order.township.clone(),
        village_id: order.village_id.clone(),
        village_name,
        household_id: order.household_id.clone(),
        address: household.filter(|h| h.vulnerable).map(|h| h.address),
        device_id: order.device_id.clone(),
        category: order.category.clone(),
        priority: order.priority.clone(),
        state: order.state.as_str().to_owned(),
        team_id: order.team_id.clone(),
        technician_id: order.technician_id.clone(),
        note: event.note.clone(),
        at_ms: event.at_ms,
        recipients,
    }))
}

/// Who is told of a notice of `kind` about `order`, each phone number once: the township's
/// officers and the centre's duty (not for a vulnerable household's order), the village's
/// electricians (power supply), and a vulnerable household's caretaker.
fn recipients(
    store: &Store,
    order: &OrderRow,
    household: Option<&HouseholdView>,
    kind: NoticeKind,
    people: &People,
) -> Result<Vec<Recipient>, StoreError> {
    let power = matches!(
        order.category.as_str(),
        POWER_SUPPLY | VILLAGE_HEAT_PUMP_TRIPS
    );
    let mut recipients: Vec<Recipient> = Vec::new();
    let mut add = |recipient: Recipient| {
        if !recipients.iter().any(|r| r.phone == recipient.phone) {
            recipients.push(recipient);
        }
    };
    if kind != NoticeKind::VulnerableOrder {
        for (township, officer) in &people.officers {
            if *township == order.township {
                add(officer.clone());
            }
        }
        for duty in &people.centre {
            add(duty.clone());
        }
    }
    if let (true, Some(village)) = (power, &order.village_id) {
        for contact in store.village_contacts(village, "electrician")? {
            if let Ok(phone) = normalise_phone(&contact.phone) {
                add(Recipient {
                    role: RecipientRole::VillageElectrician,
                    name: contact.name,
                    phone,
                });
            }
        }
    }
    if let Some(caretaker) = household
        .filter(|h| h.vulnerable)
        .and_then(|h| h.caretaker.as_ref())
    {
        if let Ok(phone) = normalise_phone(&caretaker.phone) {
            add(Recipient {
                role: RecipientRole::Caretaker,
                name: caretaker.name.clone(),
                phone,
            });
        }
    }
    Ok(recipients)
}

/// FNV-1a (32 bits) of `text`: a short, stable tag for a notice id.
fn fnv1a(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> NotifyConfig {
        toml::from_str(text).expect("notify config")
    }

    #[test]
    fn bad_people_and_limits_are_refused_with_the_field() {
        let err = config(
            "[[township_officers]]\ntownship = \"yanqing\"\nname = \"王\"\nphone = \"12\"\n",
        )
        .validate()
        .expect_err("bad phone");
        assert_eq!(err.field(), Some("notify.township_officers[0].phone"));
        let err = config("[[centre_duty]]\nname = \"desk\"\nphone = \"abc\"\n")
            .validate()
            .expect_err("bad phone");
        assert_eq!(err.field(), Some("notify.centre_duty[0].phone"));
        let err = config("[webhook]\nurl = \"http://127.0.0.1:1/\"\nmax_attempts = 0\n")
            .validate()
            .expect_err("no attempt");
        assert_eq!(err.field(), Some("notify.webhook.max_attempts"));
        let err = config("[webhook]\nurl = \"https://hooks.example.net/\"\n")
            .validate()
            .expect_err("unsigned off this machine");
        assert_eq!(err.field(), Some("notify.webhook.url"));
        let err = config("[sms]\nurl = \"http://127.0.0.1:1/\"\nroles = [\"mayor\"]\n")
            .validate()
            .expect_err("unknown role");
        assert_eq!(err.field(), Some("notify.sms.roles"));
        let err = config("[sms]\ndeadline = \"400d\"\n")
            .validate()
            .expect_err("a deadline past any use");
        assert_eq!(err.field(), Some("notify.sms.deadline"));
        let err = config("[webhook]\nsecret = \"short\"\n")
            .validate()
            .expect_err("short secret");
        assert_eq!(err.field(), Some("notify.webhook.secret"));
        config("[[centre_duty]]\nname = \"desk\"\nphone = \"010-6918 1234\"\n[webhook]\nurl = \"https://hooks.example.net/\"\nsecret = \"q8Zr2LwV9cT4nJx7PbK1\"\n")
            .validate()
            .expect("valid");
    }

    #[test]
    fn secrets_come_from_the_environment_and_a_missing_variable_names_the_field() {
        let mut missing =
            config("[sms]\nsecret = \"env:GATEWAY_NOTIFY_TEST_SURELY_UNSET_VARIABLE\"\n");
        let err = missing.resolve_secrets().expect_err("unset");
        assert_eq!(err.field(), Some("notify.sms.secret"));
        assert!(err
            .to_string()
            .contains("GATEWAY_NOTIFY_TEST_SURELY_UNSET_VARIABLE"));
        let mut path = config("[webhook]\nsecret = \"env:PATH\"\n");
        path.resolve_secrets().expect("PATH is set");
        assert_eq!(
            path.webhook.secret,
            std::env::var("PATH").unwrap_or_default()
        );
    }

    #[test]
    fn recipient_roles_have_one_name() {
        for role in RecipientRole::ALL {
            assert_eq!(RecipientRole::parse(role.as_str()), Some(role));
            assert_eq!(
                serde_json::to_value(role).expect("json"),
                serde_json::json!(role.as_str())
            );
        }
    }
}
