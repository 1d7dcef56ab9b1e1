//! The InfluxDB v2 history sink (influxdb2 client): telemetry, alert transitions and order
//! events written as points, batched by size and time, retried with exponential backoff, held
//! in a bounded buffer with every dropped point counted by reason. A slow or down InfluxDB
//! never blocks ingest, rules or orders: producers only ever `try_send`.
//!
//! The schema is the contract in `deploy/grafana/README.md` (measurements `telemetry`, `alerts`,
//! `orders`; event times in milliseconds). Only this module knows how points are shaped.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use influxdb2::api::write::TimestampPrecision;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::Telemetry;

use super::line::{Line, NoField};
use crate::orders::OrderNotice;

/// Where and how history is written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxConfig {
    /// Base URL of the InfluxDB v2 API, e.g. `http://127.0.0.1:8086`. Unset: no history is written.
    #[serde(default)]
    pub url: Option<String>,
    /// Organisation.
    #[serde(default = "default_org")]
    pub org: String,
    /// Bucket.
    #[serde(default = "default_bucket")]
    pub bucket: String,
    /// API token, or `env:VARIABLE` to read it from the environment; never logged.
    #[serde(default)]
    pub token: String,
    /// Most points in one write request.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest a point waits before its batch is written.
    #[serde(default = "default_flush_every", with = "humantime_serde")]
    pub flush_every: Duration,
    /// Most points held while InfluxDB is slow or down; beyond it the oldest are dropped and counted.
    #[serde(default = "default_max_buffer")]
    pub max_buffer: usize,
    /// Longest wait between retries of a failed write (the wait doubles from 500 ms up to this).
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How long one write request may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        Self {
            url: None,
            org: default_org(),
            bucket: default_bucket(),
            token: String::new(),
            batch_size: default_batch_size(),
            flush_every: default_flush_every(),
            max_buffer: default_max_buffer(),
            max_backoff: default_max_backoff(),
            timeout: default_timeout(),
        }
    }
}

fn default_org() -> String {
    "yanqing".into()
}
fn default_bucket() -> String {
    "heating".into()
}
fn default_batch_size() -> usize {
    5_000
}
fn default_flush_every() -> Duration {
    Duration::from_secs(1)
}
fn default_max_buffer() -> usize {
    500_000
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The sink's counters (also rendered at `/metrics`).
#[derive(Debug, Default)]
pub struct SinkStats {
    pub points_queued: AtomicU64,
    pub points_written: AtomicU64,
    /// Dropped because the channel from the producers was full (the sink task fell behind).
    pub dropped_channel_full: AtomicU64,
    /// Dropped, oldest first, because the buffer passed `max_buffer` during an outage.
    pub dropped_buffer_full: AtomicU64,
    /// Dropped because a point could not be built (e.g. no field).
    pub dropped_invalid: AtomicU64,
    pub write_failures: AtomicU64,
    pub write_requests: AtomicU64,
    /// Sum of successful write durations in microseconds.
    pub write_micros: AtomicU64,
    pub buffered: AtomicU64,
}

impl SinkStats {
    /// Prometheus lines for these counters.
    pub fn render(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        out.push_str("# HELP gateway_influx_points_written_total points InfluxDB acknowledged\n# TYPE gateway_influx_points_written_total counter\n");
        out.push_str(&format!(
            "gateway_influx_points_written_total {}\n",
            load(&self.points_written)
        ));
        out.push_str("# HELP gateway_influx_points_dropped_total points dropped before InfluxDB acknowledged them, by reason\n# TYPE gateway_influx_points_dropped_total counter\n");
        for (reason, value) in [
            ("channel_full", &self.dropped_channel_full),
            ("buffer_full", &self.dropped_buffer_full),
            ("invalid", &self.dropped_invalid),
        ] {
            out.push_str(&format!(
                "gateway_influx_points_dropped_total{{reason=\"{reason}\"}} {}\n",
                load(value)
            ));
        }
        out.push_str("# HELP gateway_influx_write_failures_total failed InfluxDB write requests (retried)\n# TYPE gateway_influx_write_failures_total counter\n");
        out.push_str(&format!(
            "gateway_influx_write_failures_total {}\n",
            load(&self.write_failures)
        ));
        out.push_str("# HELP gateway_influx_write_seconds time spent in successful InfluxDB writes\n# TYPE gateway_influx_write_seconds summary\n");
        out.push_str(&format!(
            "gateway_influx_write_seconds_sum {}\n",
            load(&self.write_micros) as f64 / 1e6
        ));
        out.push_str(&format!(
            "gateway_influx_write_seconds_count {}\n",
            load(&self.write_requests)
        ));
        out.push_str("# HELP gateway_influx_buffered_points points waiting to be written\n# TYPE gateway_influx_buffered_points gauge\n");
        out.push_str(&format!(
            "gateway_influx_buffered_points {}\n",
            load(&self.buffered)
        ));
        out
    }
}

/// The producers' side: cheap to clone, never blocks.
#[derive(Clone)]
pub struct SinkHandle {
    tx: mpsc::Sender<String>,
    stats: Arc<SinkStats>,
}

impl SinkHandle {
    fn send(&self, point: Result<String, NoField>) {
        match point {
            Ok(point) => match self.tx.try_send(point) {
                Ok(()) => {
                    self.stats.points_queued.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    self.stats
                        .dropped_channel_full
                        .fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(_) => {
                self.stats.dropped_invalid.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One point per accepted reading (measurement `telemetry`).
    pub fn telemetry(&self, reading: &Telemetry, township: &str, village: Option<&str>) {
        // Tags in key order.
        let mut point = Line::new("telemetry", 128 + reading.values.len() * 24)
            .tag("device_id", reading.device_id.as_str())
            .tag("kind", reading.kind.as_str())
            .tag("profile", reading.profile.as_str())
            .tag("township", township);
        if let Some(village) = village {
            point = point.tag("village", village);
        }
        point = point.int("seq", i64::try_from(reading.seq).unwrap_or(i64::MAX));
        for (name, value) in &reading.values {
            point = point.float(name, value);
        }
        if let Some(fault) = &reading.fault {
            point = point.string("fault_category", fault.category.as_str());
        }
        self.send(point.finish(reading.ts_ms));
    }

    /// One point per alert transition (measurement `alerts`).
    pub fn alert(&self, transition: &rules::Transition, township: &str, severity: &str) {
        let fired = transition.kind == rules::TransitionKind::Firing;
        let point = Line::new("alerts", 192)
            .tag("device_id", transition.device_id.as_str())
            .tag("rule", transition.rule_id.as_str())
            .tag("severity", severity)
            .tag("township", township)
            .tag("transition", if fired { "fired" } else { "cleared" })
            .string("episode_id", transition.episode_id.as_str())
            .int("active", i64::from(fired));
        self.send(point.finish(transition.at_ms));
    }

    /// One point per supply incident transition (measurement `alerts`, rule = the fleet rule,
    /// `device_id` = the group).
    pub fn incident(&self, incident: &rules::IncidentTransition) {
        let fired = incident.kind == rules::TransitionKind::Firing;
        let severity = serde_json::to_value(incident.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let point = Line::new("alerts", 192)
            .tag("device_id", &incident.group.to_string())
            .tag("rule", incident.fleet_rule_id.as_str())
            .tag("severity", &severity)
            .tag("township", incident.group.township.as_str())
            .tag("transition", if fired { "fired" } else { "cleared" })
            .string("episode_id", incident.incident_id.as_str())
            .int("active", i64::from(fired));
        self.send(point.finish(incident.at_ms));
    }

    /// One point per order event (measurement `orders`).
    pub fn order(&self, notice: &OrderNotice, sla: &crate::orders::sla::SlaConfig) {
        let elapsed_ms = notice.at_ms - notice.created_at_ms;
        let mut point = Line::new("orders", 160)
            .tag("category", notice.category.as_str())
            .tag("event", notice.kind.as_str())
            .tag("priority", notice.priority.as_str())
            .tag("source", notice.source.as_str())
            .tag("township", notice.township.as_str())
            .int("order_id", notice.order_id)
            .float("elapsed_s", elapsed_ms as f64 / 1000.0);
        let stage = match notice.kind.as_str() {
            "dispatched" => Some(crate::orders::sla::Stage::Dispatch),
            "arrived" => Some(crate::orders::sla::Stage::OnSite),
            "resolved" => Some(crate::orders::sla::Stage::Repaired),
            _ => None,
        };
        if let Some(stage) = stage {
            point = point.int("sla_met", i64::from(elapsed_ms <= sla.deadline_ms(stage)));
        }
        self.send(point.finish(notice.at_ms));
    }

    pub fn stats(&self) -> Arc<SinkStats> {
        Arc::clone(&self.stats)
    }
}

/// The sink task.
pub struct InfluxSink {
    client: influxdb2::Client,
    config: InfluxConfig,
    rx: mpsc::Receiver<String>,
    stats: Arc<SinkStats>,
}

/// Why the sink could not be built.
#[derive(Debug, thiserror::Error)]
#[error("InfluxDB sink: {0}")]
pub struct SinkError(String);

/// Builds the sink and its producers' handle, or `None` when no `url` is configured.
pub fn build(config: &InfluxConfig) -> Result<Option<(InfluxSink, SinkHandle)>, SinkError> {
    let Some(url) = &config.url else {
        return Ok(None);
    };
    let token = match config.token.strip_prefix("env:") {
        Some(variable) => std::env::var(variable).map_err(|_| {
            SinkError(format!(
                "environment variable {variable} (influxdb.token) is not set"
            ))
        })?,
        None => config.token.clone(),
    };
    let client = influxdb2::ClientBuilder::new(url.as_str(), config.org.as_str(), token)
        .build()
        .map_err(|e| SinkError(format!("invalid url {url:?}: {e}")))?;
    let stats = Arc::new(SinkStats::default());
    // The channel is a shock absorber between producers and the task; the task's own buffer
    // (max_buffer) is what rides out an outage. It holds 20 batches (100,000 points by
    // default, about two seconds of the 100,000-device bench's peak), so a sink task that
    // waits a moment for a core on a busy machine does not drop points (at 4 batches one
    // bench run dropped 3,565); its slots are allocated as they fill.
    let (tx, rx) = mpsc::channel(channel_capacity(config));
    Ok(Some((
        InfluxSink {
            client,
            config: config.clone(),
            rx,
            stats: Arc::clone(&stats),
        },
        SinkHandle { tx, stats },
    )))
}

/// Points the channel between producers and the sink task holds: 20 batches, at most
/// `max_buffer`, at least 1.
fn channel_capacity(config: &InfluxConfig) -> usize {
    config
        .batch_size
        .saturating_mul(20)
        .min(config.max_buffer)
        .max(1)
}

/// Most points the task takes from the channel at one wake-up.
const RECEIVE_RUN: usize = 1024;

/// A write request in progress: its points (kept for a retry), when it started, and the
/// request itself.
struct Write {
    points: Vec<String>,
    started: Instant,
    request: Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
}

impl InfluxSink {
    /// Writes until `shutdown`, then flushes what is buffered for at most `drain` before exiting.
    ///
    /// One write request is in flight at a time, and the channel keeps draining into the
    /// buffer while it is: a write that takes long does not back producers up into
    /// `channel_full` drops; only `max_buffer` bounds what waits.
    pub async fn run(mut self, shutdown: CancellationToken, drain: Duration) -> anyhow::Result<()> {
        let mut buffer: VecDeque<String> = VecDeque::new();
        let mut tick = tokio::time::interval(self.config.flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backoff = Duration::from_millis(500);
        let mut retry_at: Option<tokio::time::Instant> = None;
        let mut writing: Option<Write> = None;
        // Taken from the channel in runs: one wake-up per run of points, not per point.
        let mut arrived: Vec<String> = Vec::with_capacity(RECEIVE_RUN);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            let may_write =
                writing.is_none() && retry_at.is_none_or(|at| at <= tokio::time::Instant::now());
            if may_write && buffer.len() >= self.config.batch_size {
                writing = Some(self.start_write(&mut buffer));
            }
            tokio::select! {
                () = &mut cancelled => break,
                taken = self.rx.recv_many(&mut arrived, RECEIVE_RUN) => {
                    if taken == 0 {
                        break;
                    }
                    buffer.extend(arrived.drain(..));
                    self.enforce_cap(&mut buffer, writing.as_ref());
                }
                result = async {
                    match writing.as_mut() {
                        Some(write) => write.request.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(write) = writing.take() {
                        self.finish_write(write, result, &mut buffer, &mut backoff, &mut retry_at);
                    }
                }
                _ = tick.tick() => {
                    let may_write = writing.is_none()
                        && retry_at.is_none_or(|at| at <= tokio::time::Instant::now());
                    if may_write && !buffer.is_empty() {
                        writing = Some(self.start_write(&mut buffer));
                    }
                }
            }
        }
        // Shutdown: finish the write in flight, take what producers already queued, then
        // flush to a deadline.
        let deadline = Instant::now() + drain;
        if let Some(mut write) = writing.take() {
            let result = tokio::time::timeout(drain, write.request.as_mut())
                .await
                .unwrap_or_else(|_| Err("no answer before the shutdown deadline".to_owned()));
            self.finish_write(write, result, &mut buffer, &mut backoff, &mut retry_at);
        }
        self.rx.close();
        while let Ok(point) = self.rx.try_recv() {
            buffer.push_back(point);
        }
        self.enforce_cap(&mut buffer, None);
        while !buffer.is_empty() && Instant::now() < deadline {
            let before = buffer.len();
            let mut write = self.start_write(&mut buffer);
            let result = write.request.as_mut().await;
            self.finish_write(write, result, &mut buffer, &mut backoff, &mut retry_at);
            if buffer.len() >= before {
                let wait = backoff.min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(wait).await;
            }
        }
        if !buffer.is_empty() {
            tracing::error!(
                points = buffer.len(),
                "InfluxDB unreachable at shutdown: buffered points are lost"
            );
            self.stats
                .dropped_buffer_full
                .fetch_add(buffer.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Takes one batch from the front of the buffer and starts writing it.
    fn start_write(&self, buffer: &mut VecDeque<String>) -> Write {
        let count = buffer.len().min(self.config.batch_size);
        let points: Vec<String> = buffer.drain(..count).collect();
        let client = self.client.clone();
        let org = self.config.org.clone();
        let bucket = self.config.bucket.clone();
        let timeout = self.config.timeout;
        // One request body; the lines stay in `points` for a retry.
        let body = points.concat();
        let request = Box::pin(async move {
            let write = client.write_line_protocol_with_precision(
                &org,
                &bucket,
                body,
                TimestampPrecision::Milliseconds,
            );
            match tokio::time::timeout(timeout, write).await {
                Ok(result) => result.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {timeout:?}")),
            }
        });
        Write {
            points,
            started: Instant::now(),
            request,
        }
    }

    /// Counts a finished write; a failed one goes back to the front of the buffer and the
    /// next attempt waits for the backoff.
    fn finish_write(
        &self,
        write: Write,
        result: Result<(), String>,
        buffer: &mut VecDeque<String>,
        backoff: &mut Duration,
        retry_at: &mut Option<tokio::time::Instant>,
    ) {
        let count = write.points.len();
        match result {
            Ok(()) => {
                self.stats
                    .points_written
                    .fetch_add(count as u64, Ordering::Relaxed);
                self.stats.write_requests.fetch_add(1, Ordering::Relaxed);
                self.stats.write_micros.fetch_add(
                    write.started.elapsed().as_micros() as u64,
                    Ordering::Relaxed,
                );
                *backoff = Duration::from_millis(500);
                *retry_at = None;
            }
            Err(error) => {
                self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                for point in write.points.into_iter().rev() {
                    buffer.push_front(point);
                }
                tracing::warn!(%error, points = count, buffered = buffer.len(), retry_in = ?backoff, "InfluxDB write failed; will retry");
                *retry_at = Some(tokio::time::Instant::now() + *backoff);
                *backoff = (*backoff * 2).min(self.config.max_backoff);
            }
        }
        self.enforce_cap(buffer, None);
    }

    /// Drops the oldest points beyond `max_buffer` (counted), and publishes how many wait,
    /// the write in flight included.
    fn enforce_cap(&self, buffer: &mut VecDeque<String>, writing: Option<&Write>) {
        let excess = buffer.len().saturating_sub(self.config.max_buffer);
        if excess > 0 {
            buffer.drain(..excess);
            self.stats
                .dropped_buffer_full
                .fetch_add(excess as u64, Ordering::Relaxed);
        }
        let in_flight = writing.map_or(0, |write| write.points.len());
        self.stats
            .buffered
            .store((buffer.len() + in_flight) as u64, Ordering::Relaxed);
    }
}
