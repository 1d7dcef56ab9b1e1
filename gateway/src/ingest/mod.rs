//! Ingest: takes every message from the broker's in-process link, checks topic and payload
//! against the wire schema (counting rejects by reason), places readings stamped by a box clock
//! it did not trust on the gateway's time line ([`clock`]), holds each device's vendor value
//! names to its first 32 ([`vendor`]), updates the fleet picture, feeds the rule engine in event time
//! and hands its transitions to the order service; saves the rule state to its snapshot file
//! ([`snapshot`]) in the background.

pub mod clock;
pub mod refusals;
pub mod registry;
pub mod snapshot;
pub mod vendor;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rules::{Engine, Transition};
use tokio_util::sync::CancellationToken;
use wire::{AgentState, AgentStatus, PayloadError, Telemetry, Topic, TopicKind};

use crate::broker::tenants;
use crate::config::{Clock, IngestConfig, RulesConfig};
use crate::fleet::Fleet;
use crate::metrics::Metrics;
use crate::orders::OrderService;

/// What ingest made of one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Reading(Box<Telemetry>, String),
    Status(AgentStatus, String),
    /// A topic in our tree that ingest does not consume (commands, acks).
    Ignored,
}

/// Why a message was dropped, with its metric label.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reject {
    #[error("topic is not UTF-8")]
    TopicNotUtf8,
    #[error("topic {topic:?}: {error}")]
    Topic {
        topic: String,
        error: wire::TopicError,
    },
    #[error("payload on {topic:?}: {error}")]
    Payload { topic: String, error: PayloadError },
    #[error("status on {topic:?} is for agent {in_payload:?}")]
    AgentMismatch { topic: String, in_payload: String },
    #[error("on {topic:?}: {error}")]
    Tenant {
        topic: String,
        error: crate::broker::tenants::TenantError,
    },
    #[error("device {device:?} (topic township {township:?}) is not in the registry")]
    Unregistered { device: String, township: String },
    #[error(
        "device {device:?} is registered in township {registered:?} but published on {topic:?}"
    )]
    TownshipMismatch {
        device: String,
        registered: String,
        topic: String,
    },
}

impl Reject {
    pub fn reason(&self) -> &'static str {
        match self {
            Reject::TopicNotUtf8 => "topic_not_utf8",
            Reject::Topic { .. } => "bad_topic",
            Reject::Payload { error, .. } => error.reason(),
            Reject::AgentMismatch { .. } => "agent_mismatch",
            Reject::Tenant { .. } => "tenant_mismatch",
            Reject::Unregistered { .. } => "unregistered_device",
            Reject::TownshipMismatch { .. } => "township_mismatch",
        }
    }
}

/// Decodes and validates one message. `now_ms` is the gateway's clock, for the future check.
pub fn decode(
    topic: &[u8],
    payload: &[u8],
    now_ms: i64,
    max_skew_ms: i64,
) -> Result<Decoded, Reject> {
    let topic = std::str::from_utf8(topic).map_err(|_| Reject::TopicNotUtf8)?;
    let parsed = Topic::parse(topic).map_err(|error| Reject::Topic {
        topic: topic.to_owned(),
        error,
    })?;
    let payload_error = |error| Reject::Payload {
        topic: topic.to_owned(),
        error,
    };
    match parsed.kind {
        TopicKind::Telemetry => {
            let reading = Telemetry::from_json(payload).map_err(payload_error)?;
            if reading.device_id.as_str() != parsed.id {
                return Err(payload_error(PayloadError::DeviceMismatch {
                    in_payload: reading.device_id.to_string(),
                    in_topic: parsed.id,
                }));
            }
            reading
                .validate(now_ms, max_skew_ms)
                .map_err(payload_error)?;
            Ok(Decoded::Reading(
                Box::new(reading),
                parsed.township.to_string(),
            ))
        }
        TopicKind::Status => {
            let status = AgentStatus::from_json(payload).map_err(payload_error)?;
            if status.agent_id != parsed.id {
                return Err(Reject::AgentMismatch {
                    topic: topic.to_owned(),
                    in_payload: status.agent_id,
                });
            }
            Ok(Decoded::Status(status, parsed.township.to_string()))
        }
        TopicKind::Command
        | TopicKind::CommandAck
        | TopicKind::Orders
        | TopicKind::Alerts
        | TopicKind::Incidents
        | TopicKind::Notices => Ok(Decoded::Ignored),
    }
}

/// Hands an accepted reading (decoded, validated and admitted by the registry check) to the
/// fleet picture and the history sink. Its vendor values are first held to its device's known
/// names ([`vendor::VendorNames::bound`]: the others are removed from `reading`, counted in
/// `gateway_vendor_values_dropped_total` and logged), so the picture, the device API, the
/// history and the rules after it all see the same values.
pub fn record_reading(
    reading: &mut Telemetry,
    township: &str,
    vendor_names: &mut vendor::VendorNames,
    metrics: &Metrics,
    fleet: &Fleet,
    sink: Option<&crate::sinks::influxdb::SinkHandle>,
) {
    let dropped = vendor_names.bound(reading);
    if dropped > 0 {
        metrics.vendor_values_dropped(dropped);
    }
    fleet.reading(township, reading);
    if let Some(sink) = sink {
        sink.telemetry(reading, township, None);
    }
}

/// Settles the time of an admitted reading that arrived at `now` ([`clock::BootClocks::place`]):
/// returns the readings ready for the fleet, the history and the rules (this one, and those
/// held for its boot's offset, oldest first), each counted by outcome in
/// `gateway_clock_readings_total` and its skew in `gateway_clock_skew_seconds`; an estimated
/// time still before 2020 or more than `max_skew_ms` ahead of `now` is a counted reject
/// (`ancient_timestamp`, `future_timestamp`). A reading held is counted `held`; one that
/// cannot be held is counted `unestimated` and logged.
pub fn settle(
    boot_clocks: &mut clock::BootClocks,
    metrics: &Metrics,
    reading: Box<Telemetry>,
    township: String,
    now: i64,
    max_skew_ms: i64,
) -> Vec<clock::Placed> {
    let mut placement = boot_clocks.place(reading, township, now);
    if placement.held {
        metrics.clock.record(clock::Outcome::Held, None);
    }
    for placed in std::mem::take(&mut placement.unestimated) {
        unestimated(metrics, &placed);
    }
    placement.ready.retain(|placed| {
        if placed.outcome == clock::Outcome::Trusted {
            return true;
        }
        metrics.clock.record(placed.outcome, placed.skew_ms);
        let Some(skew_ms) = placed.skew_ms else {
            return true;
        };
        let boot_id = boot_id_of(&placed.reading);
        tracing::debug!(device = %placed.reading.device_id, boot_id, outcome = placed.outcome.label(), ts_ms = placed.reading.ts_ms, skew_ms, "reading from an unsynced box clock placed on the gateway's time line");
        if let Err(error) = placed.reading.check_ts(now, max_skew_ms) {
            metrics.reject(error.reason());
            tracing::warn!(device = %placed.reading.device_id, boot_id, ts_ms = placed.reading.ts_ms, skew_ms, %error, "estimated time of an unsynced reading is implausible; reading refused");
            return false;
        }
        true
    });
    placement.ready
}

/// Counts and logs a reading whose time could not be estimated: it stays out of the fleet, the
/// history and the rules.
pub fn unestimated(metrics: &Metrics, placed: &clock::Placed) {
    metrics.clock.record(clock::Outcome::Unestimated, None);
    tracing::warn!(device = %placed.reading.device_id, township = %placed.township, boot_id = boot_id_of(&placed.reading), seq = placed.reading.seq, box_ts_ms = placed.reading.ts_ms, "reading from a box clock that was never trusted, and no offset for its boot: kept out of the fleet, the history and the rules");
}

fn boot_id_of(reading: &Telemetry) -> &str {
    reading
        .extra
        .get(wire::clock::BOOT_ID)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
}

/// The ingest component.
pub struct Ingest {
    /// The embedded broker's link or the external broker's client.
    pub source: crate::broker::MessageSource,
    pub engine: Engine,
    pub fleet: Arc<Fleet>,
    pub orders: OrderService,
    pub metrics: Arc<Metrics>,
    pub ingest: IngestConfig,
    pub rules: RulesConfig,
    /// Set to the watermark at every tick, in event-clock mode (SLA clocks follow it).
    pub watermark_clock: Option<crate::orders::clock::SharedClock>,
    /// History sink, if configured; fed without ever waiting.
    pub sink: Option<crate::sinks::influxdb::SinkHandle>,
    /// When the rule file was last read (hot reload compares it).
    pub rules_modified: Option<std::time::SystemTime>,
    /// The registry as ingest checks it (registered devices, their townships, tenants' boxes).
    pub registry: registry::RegistryCheck,
    /// Writes the rule snapshots every `rules.snapshot_every` and at shutdown.
    pub snapshots: snapshot::SnapshotWriter,
    /// Refusals are logged at most once per reason per minute, with the count in between.
    pub refusal_log: refusals::RefusalLog,
    /// Each device's vendor value names (at most 32, first-come, kept until a restart).
    pub vendor_names: vendor::VendorNames,
    /// Offsets of device boots; unsynced readings held for one ([`clock::BootClocks`]).
    pub boot_clocks: clock::BootClocks,
}

impl Ingest {
    /// Subscribes ingest's link to telemetry and status and marks ingest ready (`/readyz`).
    /// The gateway calls it before it announces itself ready, so a client (or a container's
    /// health check) that sees it ready finds ingest taking messages.
    pub fn subscribe(&mut self) -> anyhow::Result<()> {
        self.source
            .subscribe()
            .map_err(|e| anyhow::anyhow!("cannot subscribe: {e}"))?;
        self.metrics.set_ingest_ready(true);
        Ok(())
    }

    /// Processes messages until `shutdown` (after [`Ingest::subscribe`]); saves the rule state
    /// on the way out (after any save still running) and returns once it is written.
    pub async fn run(mut self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut reload = tokio::time::interval(self.rules.reload_every);
        reload.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reload.tick().await;
        let mut tick = tokio::time::interval(self.rules.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut snapshot = tokio::time::interval(self.rules.snapshot_every);
        snapshot.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        snapshot.tick().await;
        let max_skew_ms = match self.rules.clock {
            Clock::Wall => duration_ms(self.ingest.max_clock_skew),
            // Simulated or replayed time may run ahead of this machine's clock.
            Clock::Event => i64::MAX,
        };
        let lateness_ms = duration_ms(self.rules.lateness);
        let mut newest_event_ms: Option<i64> = None;
        // Messages taken from the source and fully processed (the loop is sequential: when a
        // tick runs, every message before it has been applied and its orders written).
        let mut messages_done: u64 = 0;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                message = self.source.next() => {
                    let (topic, payload) = message.map_err(|e| anyhow::anyhow!("the broker link closed: {e}"))?;
                    self.on_message(&topic, &payload, max_skew_ms, &mut newest_event_ms).await;
                    messages_done += 1;
                }
                _ = tick.tick() => self.on_tick(lateness_ms, newest_event_ms, messages_done).await,
                _ = snapshot.tick() => {
                    self.snapshots.save_in_background(|| self.engine.snapshot()).await;
                }
                _ = reload.tick() => self.reload_rules(),
            }
        }
        self.metrics.set_ingest_ready(false);
        self.snapshots.save_and_wait(self.engine.snapshot()).await;
        Ok(())
    }

    /// One message from the source: counted (with the link's reopenings and losses), decoded,
    /// checked against the registry, placed in event time and applied, or rejected.
    async fn on_message(
        &mut self,
        topic: &[u8],
        payload: &[u8],
        max_skew_ms: i64,
        newest_event_ms: &mut Option<i64>,
    ) {
        self.metrics.message_in();
        let reopened = self.source.take_reopened();
        for _ in 0..reopened {
            self.metrics.broker_link_reopened("ingest");
        }
        let lost = self.source.take_lost();
        if lost > 0 {
            self.metrics.broker_messages_lost(lost);
            tracing::error!(lost, "the embedded broker dropped messages before ingest read them: ingest fell behind by more than the broker's log holds");
        }
        let now = now_ms();
        let decoded = match decode(topic, payload, now, max_skew_ms) {
            Ok(decoded) => {
                let tenant = tenants::tenant_of_topic(topic);
                self.registry.check(topic, tenant, decoded, now).await
            }
            Err(reject) => Err(reject),
        };
        match decoded {
            Ok(Decoded::Reading(reading, township)) => {
                for placed in self.place(reading, township, now, max_skew_ms) {
                    *newest_event_ms = (*newest_event_ms).max(Some(placed.reading.ts_ms));
                    self.accept(Decoded::Reading(placed.reading, placed.township))
                        .await;
                }
            }
            Ok(decoded) => self.accept(decoded).await,
            Err(reject) => self.rejected(&reject, topic, payload),
        }
    }

    /// A rules tick: readings held for an unplaced boot that expired, then the watermark (the
    /// wall clock or the newest event time, less the lateness) advanced and its outcome
    /// applied.
    async fn on_tick(
        &mut self,
        lateness_ms: i64,
        newest_event_ms: Option<i64>,
        messages_done: u64,
    ) {
        for placed in self.boot_clocks.expire(now_ms()) {
            self.unestimated(&placed);
        }
        let watermark = match self.rules.clock {
            Clock::Wall => Some(now_ms() - lateness_ms),
            Clock::Event => newest_event_ms.map(|newest| newest - lateness_ms),
        };
        if let Some(watermark) = watermark {
            if let Some(clock) = &self.watermark_clock {
                clock.advance_to(watermark);
            }
            let outcome = self.engine.advance_watermark(watermark);
            self.apply_outcome(outcome).await;
        }
        // Published on every tick, with or without a watermark and whether or not anything
        // arrived, after the advance's outcome is stored: a client that sent N messages and
        // reads `messages_done >= N` knows the gateway's rules, alerts and orders cover them all
        // up to this watermark.
        self.metrics.rules_tick(watermark, messages_done);
    }

    /// Counts a refused message by reason and keeps a sample of it.
    fn rejected(&mut self, reject: &Reject, topic: &[u8], payload: &[u8]) {
        self.metrics.reject(reject.reason());
        if matches!(
            reject,
            Reject::Tenant { .. } | Reject::Unregistered { .. } | Reject::TownshipMismatch { .. }
        ) {
            // A box speaking for another household (a misconfigured box or a stolen
            // certificate), or for a device the registry does not have there: one line per
            // reason per minute, with the count of those not logged in between.
            if let Some(not_logged) = self.refusal_log.admit(reject.reason(), Instant::now()) {
                tracing::warn!(reason = reject.reason(), error = %reject, topic = %String::from_utf8_lossy(topic), refused_since_last_line = not_logged, "message refused by the registry check");
            }
        } else {
            tracing::debug!(reason = reject.reason(), error = %reject, "message rejected");
        }
        let head = &payload[..payload.len().min(200)];
        self.metrics.reject_sample(crate::metrics::RejectSample {
            at_ms: now_ms(),
            reason: reject.reason().to_owned(),
            topic: String::from_utf8_lossy(topic).into_owned(),
            error: reject.to_string(),
            payload_head: String::from_utf8_lossy(head).into_owned(),
        });
    }

    /// Settles the time of an admitted reading: [`settle`].
    fn place(
        &mut self,
        reading: Box<Telemetry>,
        township: String,
        now: i64,
        max_skew_ms: i64,
    ) -> Vec<clock::Placed> {
        settle(
            &mut self.boot_clocks,
            &self.metrics,
            reading,
            township,
            now,
            max_skew_ms,
        )
    }

    fn unestimated(&self, placed: &clock::Placed) {
        unestimated(&self.metrics, placed);
    }

    async fn accept(&mut self, decoded: Decoded) {
        match decoded {
            Decoded::Reading(mut reading, township) => {
                self.metrics.reading_accepted();
                record_reading(
                    &mut reading,
                    &township,
                    &mut self.vendor_names,
                    &self.metrics,
                    &self.fleet,
                    self.sink.as_ref(),
                );
                if self.engine.device_info(&reading.device_id).is_none() {
                    self.register_late(&reading, &township).await;
                }
                let outcome = self.engine.process(&reading);
                self.apply_outcome(outcome).await;
                self.edge_alerts(&reading, &township).await;
            }
            Decoded::Status(status, township) => {
                self.metrics.status_accepted();
                let online = status.state == AgentState::Online;
                tracing::info!(agent = %status.agent_id, online, devices = status.devices.len(), "edge box status");
                self.fleet
                    .agent_status(&township, &status.agent_id, &status.devices, online);
            }
            Decoded::Ignored => {}
        }
    }

    /// A device registered after start-up (a registry import through the API) is given to the
    /// rules with everything the registry says of it (village, household, vulnerability, site
    /// type), read once; if the store cannot say, its township and kind from the reading.
    async fn register_late(&mut self, reading: &Telemetry, township: &str) {
        let id = reading.device_id.to_string();
        let registered = match self
            .orders
            .with_store(move |s| s.registered_device(&id))
            .await
        {
            Ok(row) => row.as_ref().and_then(registry::rules_device),
            Err(error) => {
                self.metrics.store_error();
                tracing::error!(device = %reading.device_id, %error, "the registry could not be read for a new device; the rules get its township and kind");
                None
            }
        };
        let (id, info) = registered.unwrap_or_else(|| {
            (
                reading.device_id.clone(),
                rules::DeviceInfo {
                    kind: Some(reading.kind),
                    township: Some(township.to_owned()),
                    ..rules::DeviceInfo::default()
                },
            )
        });
        self.engine.register_device(id, info);
    }

    /// The local alarms a box raised or cleared while its uplink was down, carried by this
    /// reading ([`wire::edge_alert`]): recorded beside the gateway's own alerts after the
    /// reading's own transitions, never an order of their own
    /// ([`crate::orders::edge`]). A malformed list is dropped and counted; the reading stands.
    async fn edge_alerts(&self, reading: &Telemetry, township: &str) {
        match reading.edge_alerts() {
            Ok(alerts) if alerts.is_empty() => {}
            Ok(alerts) => {
                let applied = self
                    .orders
                    .apply_edge_alerts(reading.device_id.to_string(), township.to_owned(), alerts)
                    .await;
                if let Err(error) = applied {
                    self.metrics.store_error();
                    tracing::error!(device = %reading.device_id, %error, "edge alarms could not be stored");
                }
            }
            Err(error) => {
                self.metrics.edge_alerts_rejected();
                tracing::warn!(device = %reading.device_id, %error, "edge alarms dropped; the reading is kept");
            }
        }
    }

    async fn apply_outcome(&mut self, outcome: rules::Outcome) {
        self.apply(outcome.transitions).await;
        if !outcome.escalations.is_empty() {
            if let Err(error) = self.orders.apply_escalations(outcome.escalations).await {
                self.metrics.store_error();
                tracing::error!(%error, "escalations could not be stored");
            }
        }
        if !outcome.incidents.is_empty() {
            if let Some(sink) = &self.sink {
                for incident in &outcome.incidents {
                    sink.incident(incident);
                }
            }
            if let Err(error) = self.orders.apply_incidents(outcome.incidents).await {
                self.metrics.store_error();
                tracing::error!(%error, "supply incidents could not be stored");
            }
        }
    }

    /// Hot reload: applies a changed rule file; an invalid one is refused and the running rules
    /// stay.
    fn reload_rules(&mut self) {
        let Some(path) = self.rules.path.clone() else {
            return;
        };
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if modified.is_none() || modified == self.rules_modified {
            return;
        }
        self.rules_modified = modified;
        let origin = path.display().to_string();
        let parsed = std::fs::read_to_string(&path)
            .map_err(|e| format!("{origin}: cannot be read: {e}"))
            .and_then(|text| rules::RuleSet::parse(&text, &origin).map_err(|e| e.to_string()));
        match parsed {
            Ok(rules) => {
                let count = rules.len();
                self.engine.replace_rules(rules);
                self.metrics.rules_reloaded(true);
                tracing::info!(file = %origin, rules = count, "rule file reloaded");
            }
            Err(error) => {
                self.metrics.rules_reloaded(false);
                tracing::error!(%error, "changed rule file refused; the running rules stay");
            }
        }
    }

    async fn apply(&mut self, transitions: Vec<Transition>) {
        if transitions.is_empty() {
            return;
        }
        self.metrics.transitions(transitions.len());
        let with_township: Vec<(Transition, String)> = transitions
            .into_iter()
            .map(|t| {
                let township = self
                    .fleet
                    .township_of(t.device_id.as_str())
                    .unwrap_or_else(|| "unknown".to_owned());
                (t, township)
            })
            .collect();
        if let Some(sink) = &self.sink {
            for (transition, township) in &with_township {
                let severity = serde_json::to_value(transition.severity)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                sink.alert(transition, township, &severity);
            }
        }
        if let Err(error) = self.orders.apply(with_township).await {
            self.metrics.store_error();
            tracing::error!(%error, "alerts could not be stored");
        }
    }
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The gateway's clock in Unix milliseconds: the machine's ([`WallClock`]).
///
/// [`WallClock`]: crate::orders::clock::WallClock
pub fn now_ms() -> i64 {
    crate::orders::clock::Clock::now_ms(&crate::orders::clock::WallClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    fn reading_json(device: &str) -> Vec<u8> {
        format!(
            r#"{{"v":1,"device_id":"{device}","ts_ms":{NOW},"seq":1,"profile":"aurora-ashp","kind":"heat_pump","values":{{"indoor_temp_c":19.5}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn accepts_a_good_reading_with_its_township() {
        let decoded = decode(
            b"heating/v1/yanqing/yanqing-dongguan-0001/telemetry",
            &reading_json("yanqing-dongguan-0001"),
            NOW,
            60_000,
        )
        .expect("valid");
        assert!(matches!(decoded, Decoded::Reading(_, ref t) if t == "yanqing"));
    }

    #[test]
    fn rejects_are_counted_by_reason() {
        let cases: [(&[u8], &[u8], &str); 5] = [
            (b"heating/v1/yanqing/a/telemetry", b"{not json", "malformed"),
            (
                b"heating/v1/yanqing/a/telemetry",
                &reading_json("b"),
                "device_mismatch",
            ),
            (b"heating/v1/yanqing/a", b"{}", "bad_topic"),
            (b"\xff\xfe", b"{}", "topic_not_utf8"),
            (
                b"heating/v1/yanqing/box-1/status",
                br#"{"v":1,"agent_id":"box-2","state":"online","devices":[]}"#,
                "agent_mismatch",
            ),
        ];
        for (topic, payload, reason) in cases {
            let error = decode(topic, payload, NOW, 60_000).expect_err("must be rejected");
            assert_eq!(error.reason(), reason, "{error}");
        }
    }

    #[test]
    fn commands_are_ignored_not_rejected() {
        assert_eq!(
            decode(b"heating/v1/yanqing/a/cmd/ack", b"anything", NOW, 60_000),
            Ok(Decoded::Ignored)
        );
    }
}
