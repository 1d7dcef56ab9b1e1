//! Internal events: what happens inside the gateway that an operator must see twice, as a
//! structured log line and as a counter on `/metrics`. Each is a type whose [`emit`] writes both,
//! so a call site cannot log without counting or count without logging (the shape of Vector's
//! `internal_events`). Events that only count, or only log, stay plain calls where they are.
//!
//! [`emit`]: InternalEvent::emit

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use crate::metrics::Metrics;

/// Something that happened, logged and counted together.
pub trait InternalEvent {
    fn emit(self, metrics: &Metrics);
}

/// The order store refused a read or a write; `what` says what was not done and what follows
/// (e.g. "the 12345 cursor could not be saved; a reply may be sent again after a restart").
/// Counted in `gateway_store_errors_total`.
pub struct StoreFailed<'a> {
    pub what: &'static str,
    pub error: &'a dyn Display,
}

impl InternalEvent for StoreFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.store_error();
        tracing::error!(error = %self.error, "{}", self.what);
    }
}

// ----- notices (webhook, SMS, MQTT, 12345) -----

/// A notice over the sink's body limit, dropped before it was queued.
pub struct NoticeTooLarge<'a> {
    pub sink: &'static str,
    pub delivery: &'a str,
    pub bytes: usize,
    pub limit: usize,
}

impl InternalEvent for NoticeTooLarge<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.notice_outcome(self.sink, "dropped");
        tracing::warn!(
            sink = self.sink,
            delivery = %self.delivery,
            bytes = self.bytes,
            limit = self.limit,
            "notice dropped: its body is over max_body_bytes"
        );
    }
}

/// The oldest queued notice, dropped to make room: the receiver is slow or down.
pub struct NoticeQueueFull<'a> {
    pub sink: &'static str,
    pub delivery: &'a str,
    pub capacity: usize,
}

impl InternalEvent for NoticeQueueFull<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.notice_outcome(self.sink, "dropped");
        tracing::warn!(
            sink = self.sink,
            delivery = %self.delivery,
            capacity = self.capacity,
            "notice dropped: the queue is full (the receiver is slow or down)"
        );
    }
}

/// A queued notice the gateway stopped before delivering.
pub struct NoticeStopped<'a> {
    pub sink: &'static str,
    pub delivery: &'a str,
}

impl InternalEvent for NoticeStopped<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.notice_outcome(self.sink, "dropped");
        tracing::warn!(
            sink = self.sink,
            delivery = %self.delivery,
            "notice dropped: the gateway stopped before it was delivered"
        );
    }
}

/// A notice the receiver took.
pub struct NoticeDelivered<'a> {
    pub sink: &'static str,
    pub delivery: &'a str,
    pub attempts: u32,
}

impl InternalEvent for NoticeDelivered<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.notice_outcome(self.sink, "delivered");
        tracing::debug!(
            sink = self.sink,
            delivery = %self.delivery,
            attempts = self.attempts,
            "notice delivered"
        );
    }
}

/// A notice given up: refused for good, out of attempts or past its deadline.
pub struct NoticeGivenUp<'a> {
    pub sink: &'static str,
    pub delivery: &'a str,
    pub attempts: u32,
    pub error: &'a str,
}

impl InternalEvent for NoticeGivenUp<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.notice_outcome(self.sink, "failed");
        tracing::warn!(
            sink = self.sink,
            delivery = %self.delivery,
            attempts = self.attempts,
            error = %self.error,
            "notice given up"
        );
    }
}

/// A notice that cannot go out on MQTT: its township is not a topic level.
pub struct MqttNoticeUnroutable<'a> {
    pub order: i64,
    pub township: &'a str,
}

impl InternalEvent for MqttNoticeUnroutable<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.notice_outcome("mqtt", "dropped");
        tracing::warn!(
            order = self.order,
            township = %self.township,
            "notice not published on MQTT: its township is not a topic level"
        );
    }
}

/// What became of one attempt to hand a 12345 ticket's step to the city's system.
pub enum CityReplyOutcome<'a> {
    Delivered,
    /// Refused for good (a 4xx): given up.
    Refused {
        reason: &'a str,
    },
    /// Not taken (a 5xx, a timeout): tried again after `retry_in`.
    Retried {
        reason: &'a str,
        retry_in: Duration,
    },
}

/// A 12345 reply's attempt, with its ticket and the order event it reports.
pub struct CityReplyAttempt<'a> {
    pub ticket: &'a str,
    pub event: &'a str,
    pub attempts: u32,
    pub outcome: CityReplyOutcome<'a>,
}

impl InternalEvent for CityReplyAttempt<'_> {
    fn emit(self, metrics: &Metrics) {
        let (ticket, event, attempts) = (self.ticket, self.event, self.attempts);
        match self.outcome {
            CityReplyOutcome::Delivered => {
                metrics.notice_outcome("city", "delivered");
                tracing::info!(ticket, event, attempts, "12345 reply delivered");
            }
            CityReplyOutcome::Refused { reason } => {
                metrics.notice_outcome("city", "failed");
                tracing::error!(
                    ticket,
                    event,
                    attempts,
                    reason,
                    "12345 reply refused by the receiver; given up"
                );
            }
            CityReplyOutcome::Retried { reason, retry_in } => {
                metrics.notice_outcome("city", "retried");
                tracing::warn!(
                    ticket,
                    event,
                    attempts,
                    reason,
                    ?retry_in,
                    "12345 reply not taken; trying again"
                );
            }
        }
    }
}

// ----- the rule snapshot -----

/// A periodic rule snapshot skipped: the previous write is still running.
pub struct RuleSnapshotSkipped<'a> {
    pub path: &'a Path,
}

impl InternalEvent for RuleSnapshotSkipped<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.rule_snapshot_skipped();
        tracing::warn!(
            path = %self.path.display(),
            skipped_total = metrics.rule_snapshots_skipped_total(),
            "the previous rule snapshot is still being written: this one is skipped"
        );
    }
}

/// A rule snapshot written (its duration and size are gauges).
pub struct RuleSnapshotWritten<'a> {
    pub path: &'a Path,
    pub bytes: u64,
    pub devices: usize,
    pub took: Duration,
}

impl InternalEvent for RuleSnapshotWritten<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.rule_snapshot_written(self.took, self.bytes);
        tracing::debug!(
            path = %self.path.display(),
            bytes = self.bytes,
            devices = self.devices,
            took_ms = u64::try_from(self.took.as_millis()).unwrap_or(u64::MAX),
            "rule snapshot written"
        );
    }
}

/// A rule snapshot not written: the previous file stays.
pub struct RuleSnapshotFailed<'a> {
    pub path: &'a Path,
    /// The devices it held, when the write got as far as knowing them.
    pub devices: Option<usize>,
    pub error: &'a dyn Display,
}

impl InternalEvent for RuleSnapshotFailed<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.rule_snapshot_write_failed();
        tracing::error!(
            path = %self.path.display(),
            error = %self.error,
            devices = self.devices,
            "the rule snapshot could not be written; the previous one stays"
        );
    }
}

// ----- parts stock -----

/// A stock line whose available count fell to its reorder level: reorder.
pub struct StockLow<'a> {
    pub location: &'a str,
    pub part_code: &'a str,
    pub available: i64,
    pub reorder_level: i64,
}

impl InternalEvent for StockLow<'_> {
    fn emit(self, metrics: &Metrics) {
        metrics.stock_low();
        tracing::warn!(
            location = self.location,
            part = self.part_code,
            available = self.available,
            reorder_level = self.reorder_level,
            "stock low: reorder"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// The log lines `emit` writes, as text.
    fn logged(emit: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = buffer.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn each_event_logs_and_counts_together() {
        let metrics = Metrics::default();
        let error = "disk I/O error";
        let log = logged(|| {
            StoreFailed {
                what: "the 12345 cursor could not be saved",
                error: &error,
            }
            .emit(&metrics);
            NoticeQueueFull {
                sink: "webhook",
                delivery: "d-1",
                capacity: 4,
            }
            .emit(&metrics);
            NoticeGivenUp {
                sink: "sms",
                delivery: "d-2",
                attempts: 3,
                error: "HTTP 400",
            }
            .emit(&metrics);
            CityReplyAttempt {
                ticket: "T-9",
                event: "dispatched",
                attempts: 2,
                outcome: CityReplyOutcome::Retried {
                    reason: "HTTP 503",
                    retry_in: Duration::from_secs(4),
                },
            }
            .emit(&metrics);
            RuleSnapshotFailed {
                path: Path::new("/var/lib/x.json"),
                devices: Some(12),
                error: &error,
            }
            .emit(&metrics);
        });
        for expected in [
            "ERROR",
            "the 12345 cursor could not be saved",
            "error=disk I/O error",
            "WARN",
            "notice dropped: the queue is full",
            "delivery=d-1",
            "capacity=4",
            "notice given up",
            "attempts=3",
            "12345 reply not taken; trying again",
            "ticket=\"T-9\"",
            "retry_in=4s",
            "path=/var/lib/x.json",
            "devices=12",
        ] {
            assert!(log.contains(expected), "{expected:?} not in:\n{log}");
        }
        let text = metrics.render(&[]);
        for expected in [
            "gateway_store_errors_total 1\n",
            "gateway_notices_dropped_total{sink=\"webhook\"} 1\n",
            "gateway_notices_failed_total{sink=\"sms\"} 1\n",
            "gateway_notices_retried_total{sink=\"city\"} 1\n",
            "gateway_rule_snapshot_write_failures_total 1\n",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
    }
}
