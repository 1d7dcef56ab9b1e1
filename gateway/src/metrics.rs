//! Counters for everything that can go wrong or that operators watch, rendered in the
//! Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Most recent rejects kept for operators.
pub const REJECT_SAMPLES: usize = 100;

/// One rejected message, kept so an operator can see what a misbehaving box sends.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RejectSample {
    /// When it arrived (gateway clock), Unix ms.
    pub at_ms: i64,
    pub reason: String,
    /// The topic, lossily decoded.
    pub topic: String,
    /// What was wrong, as a sentence.
    pub error: String,
    /// The first 200 bytes of the payload, lossily decoded.
    pub payload_head: String,
}

/// What ingest published at the end of its last rules tick: the watermark it advanced the
/// rules to, and how many messages it had fully processed by then. Both come from one tick (a
/// reader never sees the watermark of one tick with the count of another).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RulesTick {
    /// The watermark the rules were advanced to, Unix ms; `None` before the first reading in
    /// event-clock mode (no watermark yet).
    pub watermark_ms: Option<i64>,
    /// Messages (telemetry and status) ingest had taken in and fully processed (rules run,
    /// alerts, orders and incidents stored) when the tick published.
    pub messages_done: u64,
}

/// One counter in the Prometheus text format.
fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

/// The gateway's counters. Cheap to update from any task.
#[derive(Debug, Default)]
pub struct Metrics {
    messages_in: AtomicU64,
    broker_messages_lost: AtomicU64,
    readings_accepted: AtomicU64,
    /// Vendor values removed from accepted readings: their device already uses 32 other names.
    vendor_values_dropped: AtomicU64,
    status_accepted: AtomicU64,
    rule_transitions: AtomicU64,
    orders_opened: AtomicU64,
    call_tasks_opened: AtomicU64,
    call_tasks_upgraded: AtomicU64,
    /// Local alarms of edge boxes recorded, raised and cleared.
    edge_alarms_raised: AtomicU64,
    edge_alarms_cleared: AtomicU64,
    /// Readings whose `edge_alerts` list was malformed (the list dropped, the reading kept).
    edge_alerts_rejected: AtomicU64,
    store_errors: AtomicU64,
    /// Stock lines that fell to their reorder level.
    stock_low: AtomicU64,
    orders_dispatched: AtomicU64,
    rule_reloads: AtomicU64,
    rule_reload_failures: AtomicU64,
    complaints: AtomicU64,
    complaints_pre_empted: AtomicU64,
    escalations: AtomicU64,
    /// Orders a warranty vendor delegated to another vendor of its period.
    delegations: AtomicU64,
    rule_snapshot_writes: AtomicU64,
    rule_snapshot_write_failures: AtomicU64,
    rule_snapshots_skipped: AtomicU64,
    /// Duration of the last successful snapshot write, in microseconds.
    rule_snapshot_last_write_micros: AtomicU64,
    /// Size of the last snapshot written, in bytes.
    rule_snapshot_bytes: AtomicU64,
    /// By (SLA class, stage).
    sla_warnings: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Breaches escalated (督办), by (SLA class, stage).
    sla_breaches: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// Breaches of classes that do not escalate, by (SLA class, stage).
    sla_breaches_recorded: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    rejects: Mutex<BTreeMap<&'static str, u64>>,
    reject_samples: Mutex<std::collections::VecDeque<RejectSample>>,
    ingest_ready: std::sync::atomic::AtomicBool,
    alerts_by_rule: Mutex<BTreeMap<String, u64>>,
    /// In-process broker links opened to replace one the router dropped, by link.
    broker_links_reopened: Mutex<BTreeMap<&'static str, u64>>,
    /// HTTP connections closed at once because `http.max_connections` were open.
    http_connections_refused: AtomicU64,
    /// The rules' last published tick: see [`Metrics::rules_tick`].
    rules_tick: Mutex<RulesTick>,
    /// What the embedded broker's admission and memory limits refused, and the logins its
    /// password listener refused (set at start-up).
    broker_guards: std::sync::OnceLock<(rumqttd::guards::GuardCounters, std::sync::Arc<AtomicU64>)>,
    /// Readings by clock outcome and the box clock skew ingest corrected.
    pub clock: crate::ingest::clock::ClockFigures,
    /// The cold-wave sweep's forecast reads, orders opened and failures
    /// (`gateway_prevention_forecast_loads_total`, `gateway_prevention_orders_opened_total`,
    /// `gateway_prevention_sweep_failures_total`, `gateway_prevention_dispatch_failures_total`,
    /// `gateway_prevention_units_over_capacity`, `gateway_prevention_cold_waves`).
    pub prevention: crate::prevention::PreventionFigures,
    /// Inspection campaigns: campaigns and inspections planned, visits by outcome, retries,
    /// findings and failures (`gateway_campaigns_created_total`,
    /// `gateway_campaign_inspections_planned_total`,
    /// `gateway_campaign_inspections_unscheduled_total`,
    /// `gateway_campaign_dispatch_failures_total`, `gateway_campaign_outcomes_total`,
    /// `gateway_campaign_retries_total`, `gateway_campaign_retries_unscheduled_total`,
    /// `gateway_campaign_findings_total`, `gateway_campaign_failures_total`).
    pub campaigns: crate::orders::campaigns::CampaignFigures,
    /// Outgoing notices (`notify`) by (outcome, sink): `delivered`, `failed`, `dropped`,
    /// `retried`.
    notices: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Metrics {
    /// Messages the embedded broker dropped from its log before ingest read them.
    pub fn broker_messages_lost(&self, count: u64) {
        self.broker_messages_lost
            .fetch_add(count, Ordering::Relaxed);
    }

    /// A link to the embedded broker (`ingest`, `publisher`) was replaced after the router
    /// dropped it.
    pub fn broker_link_reopened(&self, link: &'static str) {
        if let Ok(mut map) = self.broker_links_reopened.lock() {
            *map.entry(link).or_default() += 1;
        }
    }

    /// A notice's `outcome` at `sink` (`webhook`, `sms`): `delivered`, `failed` (refused for
    /// good, out of attempts or past its deadline), `dropped` (queue full, body too large, or
    /// the gateway stopped; under sink `notifier`, order events lost because the notifier fell
    /// behind) or `retried` (an attempt failed and another follows).
    pub fn notice_outcome(&self, sink: &'static str, outcome: &'static str) {
        self.notice_outcomes(sink, outcome, 1);
    }

    /// `count` notices with `outcome` at `sink` (see [`Metrics::notice_outcome`]).
    pub fn notice_outcomes(&self, sink: &'static str, outcome: &'static str, count: u64) {
        if let Ok(mut map) = self.notices.lock() {
            *map.entry((outcome, sink)).or_default() += count;
        }
    }

    /// Notices with `outcome` at `sink` so far.
    pub fn notices_total(&self, sink: &str, outcome: &str) -> u64 {
        self.notices
            .lock()
            .map(|m| m.get(&(outcome, sink)).copied().unwrap_or_default())
            .unwrap_or_default()
    }

    /// An HTTP connection was closed at once: `http.max_connections` were open.
    pub fn http_connection_refused(&self) {
        self.http_connections_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    /// The embedded broker's refusal counters, rendered with the others.
    pub fn set_broker_guards(
        &self,
        guards: rumqttd::guards::GuardCounters,
        password_failures: std::sync::Arc<AtomicU64>,
    ) {
        let _ = self.broker_guards.set((guards, password_failures));
    }

    /// Links to the embedded broker replaced after the router dropped them, by link.
    pub fn broker_links_reopened(&self) -> BTreeMap<&'static str, u64> {
        self.broker_links_reopened
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    pub fn message_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }
    pub fn reading_accepted(&self) {
        self.readings_accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub fn status_accepted(&self) {
        self.status_accepted.fetch_add(1, Ordering::Relaxed);
    }
    /// `count` vendor values were removed from an accepted reading: their names are beyond the
    /// device's 32 (`ingest::vendor`).
    pub fn vendor_values_dropped(&self, count: usize) {
        self.vendor_values_dropped
            .fetch_add(u64::try_from(count).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
    pub fn vendor_values_dropped_total(&self) -> u64 {
        self.vendor_values_dropped.load(Ordering::Relaxed)
    }
    pub fn transitions(&self, count: usize) {
        self.rule_transitions
            .fetch_add(count as u64, Ordering::Relaxed);
    }
    pub fn order_opened(&self) {
        self.orders_opened.fetch_add(1, Ordering::Relaxed);
    }
    /// A rule order opened as a call task (ring the household or the caretaker first).
    pub fn call_task_opened(&self) {
        self.call_tasks_opened.fetch_add(1, Ordering::Relaxed);
    }
    /// A call task became a repair order: other evidence joined.
    pub fn call_task_upgraded(&self) {
        self.call_tasks_upgraded.fetch_add(1, Ordering::Relaxed);
    }
    /// An edge box's local alarm (`raised` or `cleared`) arrived on a reading.
    pub fn edge_alert(&self, kind: &str) {
        match kind {
            "raised" => self.edge_alarms_raised.fetch_add(1, Ordering::Relaxed),
            _ => self.edge_alarms_cleared.fetch_add(1, Ordering::Relaxed),
        };
    }
    /// A reading's `edge_alerts` list was malformed and dropped.
    pub fn edge_alerts_rejected(&self) {
        self.edge_alerts_rejected.fetch_add(1, Ordering::Relaxed);
    }
    pub fn store_error(&self) {
        self.store_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A stock line fell to its reorder level.
    pub fn stock_low(&self) {
        self.stock_low.fetch_add(1, Ordering::Relaxed);
    }

    /// A changed rule file was applied (`true`) or refused (`false`).
    pub fn rules_reloaded(&self, applied: bool) {
        let counter = if applied {
            &self.rule_reloads
        } else {
            &self.rule_reload_failures
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
    pub fn order_dispatched(&self) {
        self.orders_dispatched.fetch_add(1, Ordering::Relaxed);
    }
    /// Counts a complaint; `pre_empted` when it found an order we had opened before it.
    pub fn complaint(&self, pre_empted: bool) {
        self.complaints.fetch_add(1, Ordering::Relaxed);
        if pre_empted {
            self.complaints_pre_empted.fetch_add(1, Ordering::Relaxed);
        }
    }
    /// A manual escalation (督办).
    pub fn escalation(&self) {
        self.escalations.fetch_add(1, Ordering::Relaxed);
    }
    /// An order delegated by a warranty vendor to another vendor of its period.
    pub fn order_delegated(&self) {
        self.delegations.fetch_add(1, Ordering::Relaxed);
    }
    /// A rule snapshot file was written in `took` (serialisation, sync and rename) with `bytes`.
    pub fn rule_snapshot_written(&self, took: Duration, bytes: u64) {
        self.rule_snapshot_writes.fetch_add(1, Ordering::Relaxed);
        self.rule_snapshot_last_write_micros.store(
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.rule_snapshot_bytes.store(bytes, Ordering::Relaxed);
    }
    /// A rule snapshot could not be written (the previous file stays).
    pub fn rule_snapshot_write_failed(&self) {
        self.rule_snapshot_write_failures
            .fetch_add(1, Ordering::Relaxed);
    }
    /// A snapshot tick was skipped because the previous write was still running.
    pub fn rule_snapshot_skipped(&self) {
        self.rule_snapshots_skipped.fetch_add(1, Ordering::Relaxed);
    }
    pub fn rule_snapshot_writes_total(&self) -> u64 {
        self.rule_snapshot_writes.load(Ordering::Relaxed)
    }
    pub fn rule_snapshot_write_failures_total(&self) -> u64 {
        self.rule_snapshot_write_failures.load(Ordering::Relaxed)
    }
    pub fn rule_snapshots_skipped_total(&self) -> u64 {
        self.rule_snapshots_skipped.load(Ordering::Relaxed)
    }
    /// Size in bytes of the last snapshot file written (0 before the first).
    pub fn rule_snapshot_bytes(&self) -> u64 {
        self.rule_snapshot_bytes.load(Ordering::Relaxed)
    }
    /// An SLA warning of an order of `class` at `stage`.
    pub fn sla_warning(&self, class: &'static str, stage: &'static str) {
        if let Ok(mut map) = self.sla_warnings.lock() {
            *map.entry((class, stage)).or_default() += 1;
        }
    }
    /// An SLA breach of an order of `class` at `stage`, escalated (督办) or only recorded.
    pub fn sla_breach(&self, class: &'static str, stage: &'static str, escalated: bool) {
        let map = if escalated {
            &self.sla_breaches
        } else {
            &self.sla_breaches_recorded
        };
        if let Ok(mut map) = map.lock() {
            *map.entry((class, stage)).or_default() += 1;
        }
    }

    /// Counts a rejected message by reason.
    pub fn reject(&self, reason: &'static str) {
        if let Ok(mut rejects) = self.rejects.lock() {
            *rejects.entry(reason).or_default() += 1;
        }
    }

    pub fn alert_fired(&self, rule: &str) {
        if let Ok(mut alerts) = self.alerts_by_rule.lock() {
            *alerts.entry(rule.to_owned()).or_default() += 1;
        }
    }

    /// Keeps a sample of a rejected message (the newest [`REJECT_SAMPLES`]).
    pub fn reject_sample(&self, sample: RejectSample) {
        if let Ok(mut samples) = self.reject_samples.lock() {
            if samples.len() == REJECT_SAMPLES {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }

    /// The kept reject samples, newest first.
    pub fn reject_samples(&self) -> Vec<RejectSample> {
        self.reject_samples
            .lock()
            .map(|s| s.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Ingest has subscribed and is taking messages.
    pub fn set_ingest_ready(&self, ready: bool) {
        self.ingest_ready.store(ready, Ordering::Relaxed);
    }

    pub fn ingest_ready(&self) -> bool {
        self.ingest_ready.load(Ordering::Relaxed)
    }

    /// Messages rejected, by reason.
    pub fn rejects(&self) -> BTreeMap<&'static str, u64> {
        self.rejects.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn messages_in_total(&self) -> u64 {
        self.messages_in.load(Ordering::Relaxed)
    }

    pub fn readings_accepted_total(&self) -> u64 {
        self.readings_accepted.load(Ordering::Relaxed)
    }

    /// Ingest finished a rules tick: the watermark advance to `watermark_ms` (if any) and
    /// everything it opened or closed are stored, and `messages_done` messages were fully
    /// processed before it (ingest is one sequential loop).
    pub fn rules_tick(&self, watermark_ms: Option<i64>, messages_done: u64) {
        if let Ok(mut tick) = self.rules_tick.lock() {
            *tick = RulesTick {
                watermark_ms,
                messages_done,
            };
        }
    }

    /// The last rules tick ingest published.
    pub fn last_rules_tick(&self) -> RulesTick {
        self.rules_tick.lock().map(|t| *t).unwrap_or_default()
    }

    /// Renders every counter, plus the gauges passed in, as Prometheus text.
    /// The Prometheus text of every counter and gauge, with `gauges` (name, help, value) that
    /// other parts of the gateway own appended.
    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        self.render_counters(&mut out);
        self.render_broker_guards(&mut out);
        self.render_labelled(&mut out);
        self.clock.render(&mut out);
        self.prevention.render(&mut out);
        self.campaigns.render(&mut out);
        self.render_gauges(&mut out, gauges);
        out
    }

    /// The counters that are one number each.
    fn render_counters(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 25] = [
            ("gateway_mqtt_messages_in_total", "MQTT messages received on heating topics", &self.messages_in),
            ("gateway_broker_messages_lost_total", "messages the embedded broker dropped from its in-memory log before ingest read them", &self.broker_messages_lost),
            ("gateway_readings_accepted_total", "telemetry readings that passed validation", &self.readings_accepted),
            ("gateway_vendor_values_dropped_total", "vendor values (x_...) removed from accepted readings because their device already uses 32 other vendor value names", &self.vendor_values_dropped),
            ("gateway_status_accepted_total", "edge box status messages accepted", &self.status_accepted),
            ("gateway_rule_transitions_total", "alert transitions produced by the rules", &self.rule_transitions),
            ("gateway_orders_opened_total", "work orders opened from alerts", &self.orders_opened),
            ("gateway_call_tasks_opened_total", "rule orders opened as call tasks (ring the household or the village caretaker before dispatching)", &self.call_tasks_opened),
            ("gateway_call_tasks_upgraded_total", "call tasks that became repair orders because other evidence joined", &self.call_tasks_upgraded),
            ("gateway_edge_alarms_raised_total", "local alarms edge boxes raised while their uplink was down (arrived with the backlog)", &self.edge_alarms_raised),
            ("gateway_edge_alarms_cleared_total", "local alarms of edge boxes that ended on the box", &self.edge_alarms_cleared),
            ("gateway_edge_alerts_rejected_total", "readings whose edge_alerts list was malformed (the list dropped, the reading kept)", &self.edge_alerts_rejected),
            ("gateway_store_errors_total", "failed database operations", &self.store_errors),
            ("gateway_stock_low_total", "stock lines (a part at a service point or a van) whose available count fell to their reorder level", &self.stock_low),
            ("gateway_rule_reloads_total", "changed rule files applied without a restart", &self.rule_reloads),
            ("gateway_rule_reload_failures_total", "changed rule files refused (the running rules stay)", &self.rule_reload_failures),
            ("gateway_orders_dispatched_total", "work orders dispatched to a team", &self.orders_dispatched),
            ("gateway_complaints_total", "complaints taken from every intake channel", &self.complaints),
            ("gateway_complaints_pre_empted_total", "complaints that found an order opened from telemetry before them", &self.complaints_pre_empted),
            ("gateway_manual_escalations_total", "escalations (督办) raised by operators, townships or read-only bureaus", &self.escalations),
            ("gateway_order_delegations_total", "orders a warranty vendor delegated to another vendor of its contract period (at its cost)", &self.delegations),
            ("gateway_rule_snapshot_writes_total", "rule snapshot files written", &self.rule_snapshot_writes),
            ("gateway_rule_snapshot_write_failures_total", "rule snapshots that could not be written (the previous file stays)", &self.rule_snapshot_write_failures),
            ("gateway_rule_snapshot_skipped_total", "rule snapshot saves skipped because the previous write was still running", &self.rule_snapshots_skipped),
            ("gateway_http_connections_refused_total", "HTTP connections closed at once because http.max_connections were open", &self.http_connections_refused),
        ];
        for (name, help, value) in counters {
            counter(out, name, help, value.load(Ordering::Relaxed));
        }
    }

    /// The embedded broker's guards, when it runs.
    fn render_broker_guards(&self, out: &mut String) {
        if let Some((guards, password_failures)) = self.broker_guards.get() {
            counter(
                out,
                "gateway_broker_password_failures_total",
                "logins refused on the password listener (unknown box or wrong password)",
                password_failures.load(Ordering::Relaxed),
            );
            let c = guards.counts();
            for (name, help, value) in [
                ("gateway_broker_handshake_timeouts_total", "TLS handshakes not finished within broker.connection_timeout (the socket is closed)", c.handshake_timeouts),
                ("gateway_broker_handshake_failures_total", "TLS handshakes that failed (no or a foreign client certificate, not TLS)", c.handshake_failures),
                ("gateway_broker_admissions_refused_total", "connections closed at once: their address had broker.max_pending_handshakes_per_address handshakes in progress", c.admissions_refused),
                ("gateway_broker_retained_refused_total", "retained messages delivered but not kept (not a status topic, or broker.max_retained reached)", c.retained_refused),
                ("gateway_broker_subscriptions_refused_total", "subscriptions refused by broker.max_subscriptions_per_connection or broker.max_filters (the client is disconnected)", c.subscriptions_refused),
                ("gateway_broker_clients_throttled_total", "times a client over broker.max_packets_per_second was made to wait before its next read", c.throttled),
                ("gateway_broker_topic_cache_resets_total", "times the broker's topic cache reached broker.max_cached_topics and was emptied", c.topic_cache_resets),
            ] {
                counter(out, name, help, value);
            }
        }
    }

    /// The counters with labels: SLA stages by class, notices by sink, broker links, rejects by
    /// reason, alerts by rule.
    fn render_labelled(&self, out: &mut String) {
        for (name, help, map) in [
            (
                "gateway_sla_warnings_total",
                "SLA warnings raised, by SLA class and stage",
                &self.sla_warnings,
            ),
            (
                "gateway_sla_breaches_total",
                "SLA deadlines breached and escalated (督办), by SLA class and stage",
                &self.sla_breaches,
            ),
            (
                "gateway_sla_breaches_recorded_total",
                "SLA deadlines breached in a class that does not escalate (sla.<class>.escalate = false): recorded on the order for its team, by SLA class and stage",
                &self.sla_breaches_recorded,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            if let Ok(map) = map.lock() {
                for ((class, stage), count) in map.iter() {
                    let _ = writeln!(
                        out,
                        "{name}{{class=\"{class}\",stage=\"{stage}\"}} {count}"
                    );
                }
            }
        }
        let notices = self.notices.lock().map(|m| m.clone()).unwrap_or_default();
        for (name, outcome, help) in [
            ("gateway_notices_delivered_total", "delivered", "notices (escalations, SLA warnings, supply incidents, vulnerable households' orders) delivered, by sink"),
            ("gateway_notices_failed_total", "failed", "notices given up: refused for good by the receiver, out of attempts or past their delivery deadline, by sink"),
            ("gateway_notices_dropped_total", "dropped", "notices dropped before delivery (queue full, body too large, the gateway stopped), by sink; sink notifier: order events lost because the notifier fell behind"),
            ("gateway_notices_retried_total", "retried", "notice delivery attempts that failed and were retried, by sink"),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for ((_, sink), count) in notices.iter().filter(|((o, _), _)| *o == outcome) {
                let _ = writeln!(out, "{name}{{sink=\"{sink}\"}} {count}");
            }
        }
        let _ = writeln!(out, "# HELP gateway_broker_links_reopened_total in-process links to the embedded broker opened again after the router dropped them, by link\n# TYPE gateway_broker_links_reopened_total counter");
        for (link, count) in self.broker_links_reopened() {
            let _ = writeln!(
                out,
                "gateway_broker_links_reopened_total{{link=\"{link}\"}} {count}"
            );
        }
        let _ = writeln!(out, "# HELP gateway_messages_rejected_total messages dropped at ingest, by reason\n# TYPE gateway_messages_rejected_total counter");
        for (reason, count) in self.rejects() {
            let _ = writeln!(
                out,
                "gateway_messages_rejected_total{{reason=\"{reason}\"}} {count}"
            );
        }
        let _ = writeln!(out, "# HELP gateway_alerts_fired_total alerts fired, by rule\n# TYPE gateway_alerts_fired_total counter");
        if let Ok(alerts) = self.alerts_by_rule.lock() {
            for (rule, count) in alerts.iter() {
                let _ = writeln!(out, "gateway_alerts_fired_total{{rule=\"{rule}\"}} {count}");
            }
        }
    }

    /// The gauges: the rules tick's and the rule snapshot's, then `gauges`.
    fn render_gauges(&self, out: &mut String, gauges: &[(&str, &str, f64)]) {
        let tick = self.last_rules_tick();
        let mut own = vec![
            (
                "gateway_rules_tick_messages_done",
                "messages ingest had fully processed when its last rules tick published gateway_rules_watermark_ms",
                tick.messages_done as f64,
            ),
            (
                "gateway_rule_snapshot_last_write_seconds",
                "duration of the last successful rule snapshot write (serialise, sync, rename)",
                self.rule_snapshot_last_write_micros.load(Ordering::Relaxed) as f64 / 1e6,
            ),
            (
                "gateway_rule_snapshot_bytes",
                "size of the last rule snapshot file written",
                self.rule_snapshot_bytes.load(Ordering::Relaxed) as f64,
            ),
        ];
        if let Some(watermark) = tick.watermark_ms {
            own.push((
                "gateway_rules_watermark_ms",
                "watermark (Unix ms) the rules were last advanced to, published after that advance's alerts and orders were stored",
                watermark as f64,
            ));
        }
        for (name, help, value) in own.iter().chain(gauges) {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_notice_outcomes_by_sink() {
        let metrics = Metrics::default();
        metrics.notice_outcome("webhook", "delivered");
        metrics.notice_outcomes("sms", "dropped", 3);
        let text = metrics.render(&[]);
        assert!(text.contains("# TYPE gateway_notices_delivered_total counter\ngateway_notices_delivered_total{sink=\"webhook\"} 1\n"), "{text}");
        assert!(
            text.contains("gateway_notices_dropped_total{sink=\"sms\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE gateway_notices_failed_total counter\n"),
            "{text}"
        );
        assert_eq!(metrics.notices_total("sms", "dropped"), 3);
    }

    #[test]
    fn renders_rejects_by_reason() {
        let metrics = Metrics::default();
        metrics.reject("malformed");
        metrics.reject("malformed");
        metrics.message_in();
        let text = metrics.render(&[("gateway_devices", "devices known", 3.0)]);
        assert!(text.contains("gateway_messages_rejected_total{reason=\"malformed\"} 2"));
        assert!(text.contains("gateway_mqtt_messages_in_total 1"));
        assert!(text.contains("gateway_devices 3"));
    }

    #[test]
    fn renders_the_vendor_values_dropped() {
        let metrics = Metrics::default();
        let text = metrics.render(&[]);
        assert!(
            text.contains("# TYPE gateway_vendor_values_dropped_total counter\ngateway_vendor_values_dropped_total 0\n"),
            "{text}"
        );
        metrics.vendor_values_dropped(8);
        metrics.vendor_values_dropped(4);
        assert_eq!(metrics.vendor_values_dropped_total(), 12);
        let text = metrics.render(&[]);
        assert!(
            text.contains("gateway_vendor_values_dropped_total 12\n"),
            "{text}"
        );
    }

    #[test]
    fn renders_the_last_rules_tick() {
        let metrics = Metrics::default();
        let text = metrics.render(&[]);
        assert!(
            text.contains("gateway_rules_tick_messages_done 0\n"),
            "{text}"
        );
        // No watermark yet (event clock, no reading): no gauge.
        assert!(
            !text.contains("# TYPE gateway_rules_watermark_ms"),
            "{text}"
        );
        metrics.rules_tick(Some(1_767_571_200_000), 42);
        assert_eq!(
            metrics.last_rules_tick(),
            RulesTick {
                watermark_ms: Some(1_767_571_200_000),
                messages_done: 42
            }
        );
        let text = metrics.render(&[]);
        assert!(
            text.contains("# TYPE gateway_rules_watermark_ms gauge\ngateway_rules_watermark_ms 1767571200000\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_rules_tick_messages_done 42\n"),
            "{text}"
        );
    }

    #[test]
    fn renders_the_rule_snapshot_figures() {
        let metrics = Metrics::default();
        metrics.rule_snapshot_written(Duration::from_millis(1500), 4096);
        metrics.rule_snapshot_written(Duration::from_millis(250), 2048);
        metrics.rule_snapshot_write_failed();
        metrics.rule_snapshot_skipped();
        metrics.rule_snapshot_skipped();
        let text = metrics.render(&[]);
        assert!(
            text.contains("gateway_rule_snapshot_writes_total 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_rule_snapshot_write_failures_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_rule_snapshot_skipped_total 2\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE gateway_rule_snapshot_last_write_seconds gauge\ngateway_rule_snapshot_last_write_seconds 0.25\n"), "{text}");
        assert!(
            text.contains("gateway_rule_snapshot_bytes 2048\n"),
            "{text}"
        );
    }
}
