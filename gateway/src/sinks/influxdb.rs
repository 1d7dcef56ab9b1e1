//! The InfluxDB v2 history sink (influxdb2 client): telemetry, alert transitions and order
//! events written as points, batched by size and time, retried with exponential backoff, held
//! in a bounded buffer with every dropped point counted by reason. A slow or down InfluxDB
//! never blocks ingest, rules or orders: producers only ever `try_send`.
//!
//! What is retried and what is not: a transport error, a timeout, a 5xx, 408 and 429 are
//! retried with backoff, the batch kept at the front of the buffer. Any other 4xx is an answer
//! about the request itself, which the same request cannot change, so it is not retried (one
//! refused batch would otherwise hold all history behind it). A 400, 413 or 422 (bad point, too
//! large, outside retention) is split in halves that go out alone, so the good points of the
//! batch are written and only the refused ones dropped, counted as `rejected`; the splitting is
//! bounded (twice ⌈log2 batch⌉ splits, see `split_budget`). Any other 4xx (401/403 token, 404 org or bucket, 405 path) is a
//! configuration fault that splitting cannot help: the batch is dropped, counted as
//! `misconfigured`. Drops are logged at ERROR with the status and the server's message,
//! truncated, at most one line per 10 s (the next line says how many drops went unlogged).
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

use super::line::{Line, PointError};
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
    /// Dropped because InfluxDB refused them as bad data (400, 413, 422), after splitting.
    pub dropped_rejected: AtomicU64,
    /// Dropped because InfluxDB refused the request itself (401, 403, 404, any other 4xx but
    /// 408 and 429): token, org, bucket or URL.
    pub dropped_misconfigured: AtomicU64,
    /// Write requests answered with a 4xx that is not retried (each split part counts).
    pub write_refusals: AtomicU64,
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
        out.push_str("# HELP gateway_influx_points_queued_total points handed to the sink (written, dropped after this, or still buffered)\n# TYPE gateway_influx_points_queued_total counter\n");
        out.push_str(&format!(
            "gateway_influx_points_queued_total {}\n",
            load(&self.points_queued)
        ));
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
            ("rejected", &self.dropped_rejected),
            ("misconfigured", &self.dropped_misconfigured),
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
        out.push_str("# HELP gateway_influx_write_refusals_total InfluxDB write requests answered with a 4xx other than 408 and 429 (not retried)\n# TYPE gateway_influx_write_refusals_total counter\n");
        out.push_str(&format!(
            "gateway_influx_write_refusals_total {}\n",
            load(&self.write_refusals)
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
    fn send(&self, point: Result<String, PointError>) {
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

    /// One point per accepted reading (measurement `telemetry`): a float field per value,
    /// canonical and vendor (`x_...`) alike. The names cannot clash with `seq` or
    /// `fault_category`, and `wire` holds vendor names to `a-z`, `0-9`, `_` (nothing to escape,
    /// no leading `_`, which InfluxDB reserves) and at most 32 per reading; ingest holds each
    /// device to 32 distinct vendor names (`ingest::vendor`), so a device adds at most 32 fields.
    pub fn telemetry(&self, reading: &Telemetry, township: &str, village: Option<&str>) {
        // Tags in key order.
        let capacity = reading.values.len().saturating_mul(24).saturating_add(128);
        let mut point = Line::new("telemetry", capacity)
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
        let elapsed_ms = notice.at_ms.saturating_sub(notice.created_at_ms);
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
            // Against the order's own class, from when its clocks started.
            let on_clock_ms = notice.at_ms.saturating_sub(notice.sla_from_ms);
            point = point.int(
                "sla_met",
                i64::from(on_clock_ms <= sla.deadline_ms(notice.sla_class, stage)),
            );
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

/// Most characters of a server's answer (or of a transport error) that are logged.
const MESSAGE_CHARS: usize = 300;

/// At most one ERROR line about dropped, refused points per this long; the next line says how
/// many drops went unlogged in between.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// First wait before a failed write is retried; it doubles up to `max_backoff`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// How a write request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// Worth sending again after a wait: no answer, a transport error, a 5xx, 408, 429, or a
    /// redirect the client did not follow.
    Transient(String),
    /// A 4xx other than 408 and 429: the server refused this request and would refuse it
    /// again. `message` is the start of its answer, one line.
    Refused { status: u16, message: String },
}

/// Sorts the client's answer into written, retry, or refused.
fn classify(result: Result<(), influxdb2::RequestError>) -> Result<(), Failure> {
    match result {
        Ok(()) => Ok(()),
        Err(influxdb2::RequestError::Http { status, text }) => {
            classify_status(status.as_u16(), &text)
        }
        Err(other) => Err(Failure::Transient(excerpt(&other.to_string()))),
    }
}

/// Sorts an HTTP answer other than 204 (the client's only success) by its status.
fn classify_status(status: u16, text: &str) -> Result<(), Failure> {
    match status {
        // Any other 2xx still means the points were taken: sending them again would only
        // write them twice.
        200..=299 => Ok(()),
        408 | 429 => Err(Failure::Transient(format!(
            "HTTP {status}: {}",
            excerpt(text)
        ))),
        400..=499 => Err(Failure::Refused {
            status,
            message: excerpt(text),
        }),
        _ => Err(Failure::Transient(format!(
            "HTTP {status}: {}",
            excerpt(text)
        ))),
    }
}

/// Statuses that are about the points of a request (a bad point: 400; too large: 413; outside
/// the retention: 422), so a part of the batch may still be taken.
fn about_the_points(status: u16) -> bool {
    matches!(status, 400 | 413 | 422)
}

/// How many times a refused batch of `points` may be split in halves: twice ⌈log2 points⌉,
/// enough to isolate one or two bad points exactly (a 5,000-point batch: 26 splits, at most
/// 53 requests). Past it a refused part is dropped whole.
fn split_budget(points: usize) -> u32 {
    let rounds = match points {
        0 | 1 => 0,
        n => usize::BITS.saturating_sub(n.saturating_sub(1).leading_zeros()),
    };
    rounds.saturating_mul(2)
}

/// The start of `text` on one line: at most [`MESSAGE_CHARS`] characters, control characters
/// (line breaks included) as spaces, `…` when cut.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(MESSAGE_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MESSAGE_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// `wait` from now on the tokio clock, without overflow (a day at most past the clock's end).
fn later(wait: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

/// `wait` from now on the standard clock, without overflow.
fn deadline_after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait)
        .or_else(|| now.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(now)
}

fn as_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A write request in progress: its points (kept for a retry), whether they are a part of a
/// refused batch, when it started, and the request itself.
struct Write {
    points: Vec<String>,
    part: bool,
    started: Instant,
    request: Pin<Box<dyn Future<Output = Result<(), Failure>> + Send>>,
}

/// What the task keeps between writes.
struct State {
    /// Points waiting, oldest first.
    buffer: VecDeque<String>,
    /// Parts of a batch the server refused as bad data, each written alone, in order, before
    /// anything from the buffer (history stays in order).
    parts: VecDeque<Vec<String>>,
    /// Splits the refused batch in `parts` may still take.
    splits_left: u32,
    backoff: Duration,
    /// No write before this (a failed write waits for its backoff).
    retry_at: Option<tokio::time::Instant>,
    /// When the last ERROR line about a drop was logged, and how many drops since went
    /// unlogged.
    refusal_logged_at: Option<Instant>,
    refusals_unlogged: u64,
}

impl State {
    fn new() -> State {
        State {
            buffer: VecDeque::new(),
            parts: VecDeque::new(),
            splits_left: 0,
            backoff: FIRST_BACKOFF,
            retry_at: None,
            refusal_logged_at: None,
            refusals_unlogged: 0,
        }
    }

    /// No backoff to wait for.
    fn may_write(&self) -> bool {
        self.retry_at
            .is_none_or(|at| at <= tokio::time::Instant::now())
    }

    fn has_points(&self) -> bool {
        !self.buffer.is_empty() || !self.parts.is_empty()
    }

    /// Points waiting, the parts of a refused batch included.
    fn points(&self) -> usize {
        self.parts
            .iter()
            .map(Vec::len)
            .fold(self.buffer.len(), usize::saturating_add)
    }
}

impl InfluxSink {
    /// Writes until `shutdown`, then flushes what is buffered for at most `drain` before exiting.
    ///
    /// One write request is in flight at a time, and the channel keeps draining into the
    /// buffer while it is: a write that takes long does not back producers up into
    /// `channel_full` drops; only `max_buffer` bounds what waits.
    pub async fn run(mut self, shutdown: CancellationToken, drain: Duration) -> anyhow::Result<()> {
        let mut state = State::new();
        // A zero period would panic in tokio; the configuration check refuses it anyway.
        let flush_every = self.config.flush_every.max(Duration::from_millis(1));
        let mut tick = tokio::time::interval(flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut writing: Option<Write> = None;
        // Taken from the channel in runs: one wake-up per run of points, not per point.
        let mut arrived: Vec<String> = Vec::with_capacity(RECEIVE_RUN);
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        loop {
            // A full batch, or the next part of a refused batch, goes out at once.
            if writing.is_none()
                && state.may_write()
                && (!state.parts.is_empty() || state.buffer.len() >= self.batch_size())
            {
                writing = Some(self.start_write(&mut state));
            }
            tokio::select! {
                () = &mut cancelled => break,
                taken = self.rx.recv_many(&mut arrived, RECEIVE_RUN) => {
                    if taken == 0 {
                        break;
                    }
                    state.buffer.extend(arrived.drain(..));
                    self.enforce_cap(&mut state, writing.as_ref());
                }
                result = async {
                    match writing.as_mut() {
                        Some(write) => write.request.as_mut().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(write) = writing.take() {
                        self.finish_write(write, result, &mut state);
                    }
                }
                _ = tick.tick() => {
                    if writing.is_none() && state.may_write() && state.has_points() {
                        writing = Some(self.start_write(&mut state));
                    }
                }
            }
        }
        self.drain_at_shutdown(&mut state, writing, drain).await;
        Ok(())
    }

    /// Shutdown: finishes the write in flight, takes what producers already queued, then
    /// flushes to a deadline `drain` away; what is left is counted as lost.
    async fn drain_at_shutdown(
        &mut self,
        state: &mut State,
        writing: Option<Write>,
        drain: Duration,
    ) {
        let deadline = deadline_after(drain);
        let past_deadline =
            || Failure::Transient("no answer before the shutdown deadline".to_owned());
        if let Some(mut write) = writing {
            let result = tokio::time::timeout(drain, write.request.as_mut())
                .await
                .unwrap_or_else(|_| Err(past_deadline()));
            self.finish_write(write, result, state);
        }
        self.rx.close();
        while let Ok(point) = self.rx.try_recv() {
            state.buffer.push_back(point);
        }
        self.enforce_cap(state, None);
        while state.has_points() && Instant::now() < deadline {
            if let Some(at) = state.retry_at {
                tokio::time::sleep_until(at.min(tokio::time::Instant::from_std(deadline))).await;
                if Instant::now() >= deadline {
                    break;
                }
            }
            let mut write = self.start_write(state);
            let left = deadline.saturating_duration_since(Instant::now());
            let result = tokio::time::timeout(left, write.request.as_mut())
                .await
                .unwrap_or_else(|_| Err(past_deadline()));
            self.finish_write(write, result, state);
        }
        let lost = state.points();
        if lost > 0 {
            tracing::error!(
                points = lost,
                "InfluxDB unreachable at shutdown: buffered points are lost"
            );
            self.stats
                .dropped_buffer_full
                .fetch_add(as_u64(lost), Ordering::Relaxed);
        }
    }

    /// Most points in one request (at least 1).
    fn batch_size(&self) -> usize {
        self.config.batch_size.max(1)
    }

    /// Starts writing the next part of a refused batch, or else one batch from the front of
    /// the buffer.
    fn start_write(&self, state: &mut State) -> Write {
        let (points, part) = match state.parts.pop_front() {
            Some(part) => (part, true),
            None => {
                let count = state.buffer.len().min(self.batch_size());
                (state.buffer.drain(..count).collect::<Vec<_>>(), false)
            }
        };
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
                Ok(result) => classify(result),
                Err(_) => Err(Failure::Transient(format!("no answer within {timeout:?}"))),
            }
        });
        Write {
            points,
            part,
            started: Instant::now(),
            request,
        }
    }

    /// Counts a finished write. A transient failure goes back to the front (of the buffer, or
    /// of the parts) and the next attempt waits for the backoff; a refusal about the points
    /// splits the batch in halves that go out at once; any other refusal, or a part that
    /// cannot be split further, is dropped and counted.
    fn finish_write(&self, write: Write, result: Result<(), Failure>, state: &mut State) {
        let count = write.points.len();
        match result {
            Ok(()) => {
                self.stats
                    .points_written
                    .fetch_add(as_u64(count), Ordering::Relaxed);
                self.stats.write_requests.fetch_add(1, Ordering::Relaxed);
                let micros = u64::try_from(write.started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.stats.write_micros.fetch_add(micros, Ordering::Relaxed);
                state.backoff = FIRST_BACKOFF;
                state.retry_at = None;
            }
            Err(Failure::Transient(error)) => {
                self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
                if write.part {
                    state.parts.push_front(write.points);
                } else {
                    for point in write.points.into_iter().rev() {
                        state.buffer.push_front(point);
                    }
                }
                tracing::warn!(%error, points = count, buffered = state.points(), retry_in = ?state.backoff, "InfluxDB write failed; will retry");
                state.retry_at = Some(later(state.backoff));
                state.backoff = state.backoff.saturating_mul(2).min(self.config.max_backoff);
            }
            Err(Failure::Refused { status, message }) => {
                self.stats.write_refusals.fetch_add(1, Ordering::Relaxed);
                // The server answered: nothing to wait for.
                state.backoff = FIRST_BACKOFF;
                state.retry_at = None;
                let mut points = write.points;
                if about_the_points(status) && points.len() > 1 {
                    if !write.part {
                        state.splits_left = split_budget(points.len());
                    }
                    if state.splits_left > 0 {
                        state.splits_left -= 1;
                        let second = points.split_off(points.len() / 2);
                        tracing::debug!(status, %message, points = count, "InfluxDB refused a batch; writing its halves alone");
                        state.parts.push_front(second);
                        state.parts.push_front(points);
                        self.enforce_cap(state, None);
                        return;
                    }
                }
                let (counter, reason) = if about_the_points(status) {
                    (&self.stats.dropped_rejected, "rejected")
                } else {
                    (&self.stats.dropped_misconfigured, "misconfigured")
                };
                counter.fetch_add(as_u64(count), Ordering::Relaxed);
                self.log_drop(state, status, &message, reason, &points);
            }
        }
        self.enforce_cap(state, None);
    }

    /// Logs refused points that are dropped: at ERROR, at most once per [`REFUSAL_LOG_EVERY`].
    fn log_drop(
        &self,
        state: &mut State,
        status: u16,
        message: &str,
        reason: &str,
        points: &[String],
    ) {
        let now = Instant::now();
        let recently = state
            .refusal_logged_at
            .is_some_and(|at| now.saturating_duration_since(at) < REFUSAL_LOG_EVERY);
        if recently {
            state.refusals_unlogged = state.refusals_unlogged.saturating_add(1);
            tracing::debug!(status, %message, reason, points = points.len(), "InfluxDB refused a write; its points are dropped");
            return;
        }
        let first_point = points.first().map(|p| excerpt(p)).unwrap_or_default();
        tracing::error!(
            status,
            %message,
            reason,
            points = points.len(),
            %first_point,
            unlogged_before = state.refusals_unlogged,
            "InfluxDB refused a write; its points are dropped, not retried"
        );
        state.refusal_logged_at = Some(now);
        state.refusals_unlogged = 0;
    }

    /// Drops the oldest points beyond `max_buffer` (counted), and publishes how many wait,
    /// the write in flight and the parts of a refused batch included.
    fn enforce_cap(&self, state: &mut State, writing: Option<&Write>) {
        let excess = state.buffer.len().saturating_sub(self.config.max_buffer);
        if excess > 0 {
            state.buffer.drain(..excess);
            self.stats
                .dropped_buffer_full
                .fetch_add(as_u64(excess), Ordering::Relaxed);
        }
        let in_flight = writing.map_or(0, |write| write.points.len());
        self.stats.buffered.store(
            as_u64(state.points().saturating_add(in_flight)),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_written_retried_and_refused() {
        assert_eq!(classify_status(200, ""), Ok(()));
        assert_eq!(classify_status(201, "ok"), Ok(()));
        for status in [400, 401, 403, 404, 405, 413, 422] {
            assert!(
                matches!(classify_status(status, "no"), Err(Failure::Refused { status: s, .. }) if s == status),
                "{status}"
            );
        }
        for status in [408, 429, 500, 502, 503, 504, 301] {
            assert!(
                matches!(classify_status(status, "later"), Err(Failure::Transient(ref m)) if m.starts_with(&format!("HTTP {status}"))),
                "{status}"
            );
        }
        assert!(about_the_points(400) && about_the_points(413) && about_the_points(422));
        assert!(!about_the_points(401) && !about_the_points(404) && !about_the_points(403));
    }

    #[test]
    fn the_split_budget_isolates_two_bad_points() {
        assert_eq!(split_budget(0), 0);
        assert_eq!(split_budget(1), 0);
        assert_eq!(split_budget(2), 2);
        assert_eq!(split_budget(16), 8);
        assert_eq!(split_budget(17), 10);
        assert_eq!(split_budget(5_000), 26);
        assert_eq!(split_budget(usize::MAX), 128);
    }

    #[test]
    fn a_server_message_is_cut_to_one_short_line() {
        assert_eq!(excerpt("  bad\r\nline\t2 \n"), "bad  line 2");
        let long = "延".repeat(MESSAGE_CHARS + 5);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(
            excerpt(&"x".repeat(MESSAGE_CHARS)),
            "x".repeat(MESSAGE_CHARS)
        );
    }

    #[test]
    fn far_waits_do_not_overflow_the_clocks() {
        let _ = later(Duration::MAX);
        let _ = deadline_after(Duration::MAX);
        assert!(deadline_after(Duration::from_secs(1)) > Instant::now());
    }

    #[test]
    fn a_readings_vendor_values_are_fields_of_its_point() {
        let (tx, mut rx) = mpsc::channel(4);
        let sink = SinkHandle {
            tx,
            stats: Arc::new(SinkStats::default()),
        };
        let payload = br#"{"v":1,"device_id":"yq-0001","ts_ms":1796000000000,"seq":9,"profile":"aurora-ashp","kind":"heat_pump","values":{"indoor_temp_c":19.5,"x_cop":3.25,"x_pump_on":1}}"#;
        let reading = Telemetry::from_json(payload).expect("parses");
        assert_eq!(reading.validate(1_796_000_000_000, 0), Ok(()));
        sink.telemetry(&reading, "yanqing", None);
        let line = rx.try_recv().expect("one point");
        assert_eq!(
            line,
            "telemetry,device_id=yq-0001,kind=heat_pump,profile=aurora-ashp,township=yanqing \
             seq=9i,indoor_temp_c=19.5,x_cop=3.25,x_pump_on=1.0 1796000000000\n"
        );
    }

    #[test]
    fn refused_points_are_counted_by_reason() {
        let stats = SinkStats::default();
        stats.dropped_rejected.store(3, Ordering::Relaxed);
        stats.dropped_misconfigured.store(5, Ordering::Relaxed);
        stats.write_refusals.store(7, Ordering::Relaxed);
        let text = stats.render();
        assert!(
            text.contains("gateway_influx_points_dropped_total{reason=\"rejected\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_influx_points_dropped_total{reason=\"misconfigured\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_influx_write_refusals_total 7\n"),
            "{text}"
        );
    }
}
