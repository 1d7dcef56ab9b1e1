//! The gateway side: a real `gateway run` process (rules in event time, lateness 0, the fleet's
//! registry imported, its InfluxDB sink writing to VictoriaMetrics unless `--no-sink`), timed
//! from the first publish until every load reading is handled and, with the sink, written to
//! history; the latency probes run meanwhile, and the gateway's memory is read once the run has
//! settled.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::metrics::{MetricsClient, Scrape, SinkCounts};
use super::options::{io, IngestError, IngestOptions};
use super::poll::{poll_until, Patience};
use super::prepare::{Load, Prepared};
use super::probe::{
    latency_result, probes_failed, spawn_probes, stop_probes, AlertListener, ProbeShared, ProbeTask,
};
use super::proc::{
    cpu_between, free_port, proc_cpu_seconds, proc_status_kib, wait_listening, Service,
};
use super::publish::{
    close_connections, collect_if_finished, connect_boxes, send_warmup, spawn_publishers, Published,
};
use super::report::{per_unit, GatewayResult, LatencyResult, SinkResult};
use crate::bench::gateway::{GatewayProcess, GatewaySettings};
use crate::bench::registry_files;
use crate::load::BoxIdentity;

/// How often the gateway's `/metrics` are read while it works.
const GATEWAY_POLL: Duration = Duration::from_millis(50);

/// The broker log the gateway gets: its default (8 segments of 32 MiB) unless the whole load
/// needs more, so that no message is lost while ingest catches up.
fn broker_log(load: &Load, boxes: usize) -> (usize, usize) {
    const SEGMENT: usize = 32 << 20;
    const DEFAULT_SEGMENTS: usize = 8;
    // Topic, framing and rumqttd's own per-message overhead: about 200 bytes.
    let messages = (load.messages + load.warmup_messages) as usize;
    let bytes =
        (load.payload_bytes + load.warmup_payload_bytes) as usize + (messages + boxes) * 200;
    let needed = (bytes * 3 / 2).div_ceil(SEGMENT) + 1;
    (SEGMENT, needed.max(DEFAULT_SEGMENTS))
}

/// Starts VictoriaMetrics for the history sink: the service and its URL, or `None` without
/// the sink.
async fn start_history(
    options: &IngestOptions,
    dir: &Path,
) -> Result<Option<(Service, String)>, IngestError> {
    if !options.sink {
        return Ok(None);
    }
    let port = free_port()?;
    let storage = dir.join("victoria-metrics-data");
    let mut vm = Service::spawn(
        "victoria-metrics",
        &options.victoria_metrics_bin,
        &[
            format!("-httpListenAddr=127.0.0.1:{port}"),
            format!("-storageDataPath={}", storage.display()),
            // The simulated winter lies in the past: keep it rather than drop it as too old.
            "-retentionPeriod=100y".to_owned(),
            "-loggerLevel=ERROR".to_owned(),
        ],
        dir,
        "install it with `apt-get install victoria-metrics`, pass --victoria-metrics-bin, or run with --no-sink",
    )?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if let Err(error) = wait_listening(&mut vm, addr).await {
        vm.stop().await;
        return Err(error);
    }
    tracing::info!(%addr, "victoria-metrics listening (the gateway's InfluxDB sink)");
    Ok(Some((vm, format!("http://{addr}"))))
}

/// Writes the fleet's registry ([`registry_files`]: each device registered to its box) into
/// `dir/registry`.
fn write_registry(
    options: &IngestOptions,
    prepared: &Prepared,
    dir: &Path,
) -> Result<PathBuf, IngestError> {
    let registry_dir = dir.join("registry");
    std::fs::create_dir_all(&registry_dir)
        .map_err(io(format!("create {}", registry_dir.display())))?;
    for (name, text) in registry_files(
        &prepared.fleet,
        &prepared.boxes,
        prepared.households_per_technician,
        options.seed,
    ) {
        let path = registry_dir.join(name);
        std::fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
    }
    Ok(registry_dir)
}

/// Runs VictoriaMetrics (unless `--no-sink`) and the gateway in `dir`, and measures the gateway.
pub(super) async fn phase_gateway(
    options: &IngestOptions,
    prepared: &Prepared,
    boxes: &[BoxIdentity],
    dir: &Path,
) -> Result<(GatewayResult, LatencyResult), IngestError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let history = start_history(options, dir).await?;
    let total_boxes = prepared.boxes.len();
    let settings = GatewaySettings {
        binary: options.gateway_bin.clone(),
        dir: dir.to_path_buf(),
        rules: None,
        registry: Some(write_registry(options, prepared, dir)?),
        lateness: Duration::ZERO,
        tick: Duration::from_millis(50),
        max_connections: total_boxes + 100,
        log_filter: options.gateway_log.clone(),
        influx_url: history.as_ref().map(|(_, url)| url.clone()),
        broker_log: Some(broker_log(&prepared.load, total_boxes)),
        // Connection set-up is not timed: no rate limit on it.
        next_connection_delay: Some(Duration::ZERO),
    };
    let outcome = match GatewayProcess::start(&settings).await {
        Ok(mut gateway) => {
            tracing::info!(mqtt = %gateway.mqtt, http = %gateway.http, "gateway started");
            let sink_pid = history.as_ref().and_then(|(vm, _)| vm.pid());
            let outcome =
                measure_gateway(options, prepared, boxes, &settings, &mut gateway, sink_pid).await;
            let outcome = outcome.map_err(|error| match error {
                IngestError::Gateway(text)
                | IngestError::Load(text)
                | IngestError::TimedOut(text) => IngestError::Gateway(format!(
                    "{text}; the gateway's log ends:\n{}",
                    gateway.log_tail(20)
                )),
                other => other,
            });
            gateway.stop().await;
            outcome
        }
        Err(error) => Err(IngestError::Bench(error)),
    };
    if let Some((mut vm, _)) = history {
        if let Some(error) = vm.died("while the gateway wrote to it") {
            tracing::warn!(%error, "the sink's server died: its figures count write failures and drops");
        }
        vm.stop().await;
    }
    outcome
}

/// CPU seconds so far of the gateway, the sink's server and this process.
type Cpu = (Option<f64>, Option<f64>, Option<f64>);

/// The end of the timed phase.
#[derive(Debug, Clone, Copy)]
struct TimedEnd {
    /// The first poll after the publishers finished that found every reading sent so far
    /// handled.
    handled_at: Instant,
    /// The first poll from then on that found the sink done with every point handed to it by
    /// `handled_at` (the same poll without the sink).
    written_at: Instant,
    /// Readings handled (load and probes) at `written_at`.
    handled: u64,
}

/// The poll that saw every reading handled: when, and the points handed to the sink by then.
#[derive(Debug, Clone, Copy)]
struct Handled {
    at: Instant,
    points: u64,
}

/// The publishers and the probes while the timed phase runs.
struct InFlight {
    publishers: JoinHandle<Result<Published, IngestError>>,
    /// Set once the publishers finished.
    published: Option<Published>,
    probes: ProbeTask,
    /// Probes were started (with none, their task ends at once).
    has_probes: bool,
}

impl InFlight {
    /// Collects the publishers once they finished; fails if they or the probes failed.
    async fn check(&mut self) -> Result<(), IngestError> {
        if self.published.is_none() {
            self.published = collect_if_finished(&mut self.publishers).await?;
        }
        if self.has_probes && self.probes.is_finished() {
            // The probes stop only when told: they failed.
            return Err(probes_failed(&mut self.probes).await);
        }
        Ok(())
    }

    fn abort(&self) {
        self.publishers.abort();
        self.probes.abort();
    }
}

/// A started gateway under measurement.
struct Measured<'a> {
    options: &'a IngestOptions,
    gateway: &'a mut GatewayProcess,
    metrics: MetricsClient,
    /// The gateway writes history.
    sink_on: bool,
    pid: Option<String>,
    sink_pid: Option<String>,
}

impl Measured<'_> {
    fn rss(&self) -> Option<u64> {
        self.pid
            .as_deref()
            .and_then(|p| proc_status_kib(p, "VmRSS"))
    }

    fn cpu(&self) -> Cpu {
        (
            self.pid.as_deref().and_then(proc_cpu_seconds),
            self.sink_pid.as_deref().and_then(proc_cpu_seconds),
            proc_cpu_seconds("self"),
        )
    }

    /// Fails if the gateway process has exited.
    fn check_running(&mut self, during: &str) -> Result<(), IngestError> {
        match self.gateway.exited() {
            Some(status) => Err(IngestError::Gateway(format!(
                "the gateway exited ({status}) {during}"
            ))),
            None => Ok(()),
        }
    }

    /// Waits until ingest took in every box's `online` status: the timed phase starts with an
    /// idle gateway.
    async fn wait_statuses(&mut self, statuses: u64) -> Result<Scrape, IngestError> {
        let what = format!("ingest to take in the {statuses} box statuses");
        let patience = Patience::Total(self.options.stall_timeout);
        poll_until(&what, GATEWAY_POLL, patience, async |wait| {
            let now = self.metrics.read().await?;
            let taken = now.total("gateway_mqtt_messages_in_total");
            if taken >= statuses {
                return Ok(Some(now));
            }
            wait.seen(format!("{taken} taken in"));
            self.check_running("while the boxes connected")?;
            Ok(None)
        })
        .await
    }

    /// Waits until the warm-up is handled and, with the sink, written (the database has
    /// created every device's series).
    async fn wait_warmup(&mut self, baseline: &Scrape, sent: u64) -> Result<Scrape, IngestError> {
        let what = format!("the gateway to handle and write the {sent} warm-up readings");
        let patience = Patience::Stall(self.options.stall_timeout);
        poll_until(&what, GATEWAY_POLL, patience, async |wait| {
            let now = self.metrics.read().await?;
            let handled = now.handled().saturating_sub(baseline.handled());
            let sink = SinkCounts::of(&now);
            if handled >= sent && (!self.sink_on || sink.settled()) {
                return Ok(Some(now));
            }
            wait.progress(&[handled, sink.finished()]);
            wait.seen(format!("{handled} handled; {sink}"));
            self.check_running("during the warm-up")?;
            Ok(None)
        })
        .await
    }

    /// The timed phase: until every reading sent (load, and probes up to the poll) is handled
    /// and then the sink has written (or dropped) every point handed to it by that poll. `None`
    /// when the gateway stalled first: the run is incomplete.
    async fn time_load(
        &mut self,
        flight: &mut InFlight,
        shared: &ProbeShared,
        base_handled: u64,
    ) -> Result<Option<TimedEnd>, IngestError> {
        let what = if self.sink_on {
            "the gateway to handle every reading and write it to history"
        } else {
            "the gateway to handle every reading"
        };
        let patience = Patience::Stall(self.options.stall_timeout);
        let mut mark: Option<Handled> = None;
        let timed = poll_until(what, GATEWAY_POLL, patience, async |wait| {
            let probe_sent = shared.sent();
            let now = self.metrics.read().await?;
            let at = Instant::now();
            self.check_running("during the load")?;
            flight.check().await?;
            let handled = now.handled().saturating_sub(base_handled);
            let sink = SinkCounts::of(&now);
            let sent = flight.published.as_ref().map(|p| p.sent);
            if mark.is_none() && sent.is_some_and(|sent| handled >= sent + probe_sent) {
                mark = Some(Handled {
                    at,
                    points: sink.handed_over,
                });
            }
            wait.seen(format!(
                "{handled} readings handled ({sent:?} load and {probe_sent} probe readings sent); {sink}"
            ));
            let Some(mark) = mark else {
                wait.progress(&[0, handled]);
                return Ok(None);
            };
            // From here only the sink is awaited: the probes keep ingest moving.
            wait.progress(&[1, sink.finished()]);
            let written = !self.sink_on || sink.finished() >= mark.points;
            Ok(written.then_some(TimedEnd {
                handled_at: mark.at,
                written_at: at,
                handled,
            }))
        })
        .await;
        match timed {
            Ok(end) => Ok(Some(end)),
            Err(IngestError::TimedOut(text)) => {
                tracing::warn!("{text}: the run is incomplete");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// After the timed phase: waits until the probes' last readings are handled and, with the
    /// sink, every point handed over is written or dropped with nothing buffered. The last
    /// scrape, and whether that state was reached.
    async fn wait_settled(
        &mut self,
        ended: bool,
        expected: u64,
        base_handled: u64,
    ) -> Result<(Scrape, bool), IngestError> {
        if !ended {
            return Ok((self.metrics.read().await?, false));
        }
        let patience = Patience::Stall(self.options.stall_timeout);
        let what = "the probes' last readings to be handled and the sink to settle";
        let settled = poll_until(what, GATEWAY_POLL, patience, async |wait| {
            let now = self.metrics.read().await?;
            let handled = now.handled().saturating_sub(base_handled);
            let sink = SinkCounts::of(&now);
            if handled >= expected && (!self.sink_on || sink.settled()) {
                return Ok(Some(now));
            }
            wait.progress(&[handled, sink.finished(), sink.buffered]);
            wait.seen(format!("{handled} of {expected} readings handled; {sink}"));
            self.check_running("after the load")?;
            Ok(None)
        })
        .await;
        match settled {
            Ok(scrape) => Ok((scrape, true)),
            Err(IngestError::TimedOut(text)) => {
                tracing::warn!("{text}");
                Ok((self.metrics.read().await?, false))
            }
            Err(error) => Err(error),
        }
    }
}

/// Measures a started gateway: connects the alerts subscriber and every box (load and
/// probes), sends the warm-up (after which the gateway is idle with every device's first
/// reading handled and written), then times the load ([`finish_load`]) with the probes running.
async fn measure_gateway(
    options: &IngestOptions,
    prepared: &Prepared,
    boxes: &[BoxIdentity],
    settings: &GatewaySettings,
    gateway: &mut GatewayProcess,
    sink_pid: Option<String>,
) -> Result<(GatewayResult, LatencyResult), IngestError> {
    let mqtt = gateway.mqtt;
    let mut m = Measured {
        options,
        metrics: MetricsClient::new(gateway.http)?,
        pid: gateway.pid().map(|p| p.to_string()),
        gateway,
        sink_on: settings.influx_url.is_some(),
        sink_pid,
    };
    // The registry is imported before the ready line: the gateway with the fleet's registry
    // and no connection.
    let rss_started_kib = m.rss();
    let mut listener = AlertListener::start(mqtt, &prepared.probes).await?;
    let mut connections = connect_boxes(mqtt, boxes, boxes.len()).await?;
    let probe_connections = connections.split_off(prepared.load.boxes.len());
    let baseline = m.wait_statuses(boxes.len() as u64).await?;
    let rss_connected_kib = m.rss();
    tracing::info!(
        boxes = boxes.len(),
        "boxes connected to the gateway and their statuses taken in; sending the load"
    );
    let clock = Arc::new(AtomicI64::new(prepared.start_ms));
    let (slices, warmup_sent) = send_warmup(options, &prepared.load, connections, &clock).await?;
    let baseline = if warmup_sent > 0 {
        m.wait_warmup(&baseline, warmup_sent).await?
    } else {
        baseline
    };
    let shared = ProbeShared::new(options.qos, &clock, options.probe_interval);
    let cpu_start = m.cpu();
    let started = Instant::now();
    let mut flight = InFlight {
        probes: spawn_probes(
            &prepared.probes,
            probe_connections,
            &mut listener,
            &shared,
            prepared.start_ms,
            prepared.interval_ms,
        ),
        publishers: spawn_publishers(
            &prepared.load,
            slices,
            options.qos,
            &clock,
            options.round_lead,
            prepared.load.timed_rounds(),
        ),
        published: None,
        has_probes: !prepared.probes.is_empty(),
    };
    let run = Run {
        baseline,
        started,
        cpu_start,
        memory: [rss_started_kib, rss_connected_kib],
    };
    let outcome = finish_load(&mut m, &mut flight, &shared, run).await;
    if outcome.is_err() {
        flight.abort();
    }
    let (facts, probe_totals) = outcome?;
    let result = gateway_result(&facts, options, settings, boxes.len());
    let latency = latency_result(&probe_totals, options, listener.other_alerts());
    listener.stop().await;
    Ok((result, latency))
}

/// What the gateway phase knew when the timed phase started.
struct Run {
    baseline: Scrape,
    started: Instant,
    cpu_start: Cpu,
    /// `VmRSS` once started and with every box connected.
    memory: [Option<u64>; 2],
}

/// What the gateway phase measured, before it is put into a [`GatewayResult`].
struct Facts {
    run: Run,
    last: Scrape,
    sent: u64,
    probe_readings: u64,
    send_done: Instant,
    end: Option<TimedEnd>,
    settled: bool,
    cpu_end: Cpu,
    /// `VmRSS` and `VmHWM` after the run.
    rss_kib: Option<u64>,
    hwm_kib: Option<u64>,
    unacknowledged: u64,
}

/// Times the load, stops the probes, waits for the run to settle and closes the connections.
async fn finish_load(
    m: &mut Measured<'_>,
    flight: &mut InFlight,
    shared: &ProbeShared,
    run: Run,
) -> Result<(Facts, super::probe::ProbeTotals), IngestError> {
    let base_handled = run.baseline.handled();
    let end = m.time_load(flight, shared, base_handled).await?;
    let cpu_end = m.cpu();
    let (probe_totals, probe_connections) = stop_probes(shared, &mut flight.probes).await?;
    let Some(published) = flight.published.take() else {
        return Err(IngestError::Gateway(format!(
            "the publishers made no progress for {:?}",
            m.options.stall_timeout
        )));
    };
    let expected = published.sent + probe_totals.readings;
    if let Some(end) = &end {
        tracing::info!(
            handled = end.handled,
            seconds = format!("{:.3}", (end.written_at - run.started).as_secs_f64()),
            "gateway phase: load handled and written"
        );
    }
    let (last, settled) = m
        .wait_settled(end.is_some(), expected, base_handled)
        .await?;
    let rss_kib = m.rss();
    let hwm_kib = m.pid.as_deref().and_then(|p| proc_status_kib(p, "VmHWM"));
    let (sent, send_done) = (published.sent, published.finished_at);
    let unacknowledged =
        close_connections(published.into_connections().chain(probe_connections)).await;
    let facts = Facts {
        run,
        last,
        sent,
        probe_readings: probe_totals.readings,
        send_done,
        end,
        settled,
        cpu_end,
        rss_kib,
        hwm_kib,
        unacknowledged,
    };
    Ok((facts, probe_totals))
}

/// The rule engine's state per device with the pack the bench's gateway runs (its built-in
/// one: `GatewaySettings::rules` is `None`), by the engine's own estimate; 0 if the pack does
/// not parse (a bug the rules crate's tests catch).
fn rule_state_bytes_per_device() -> usize {
    rules::RuleSet::default_pack()
        .map(|pack| rules::Engine::new(pack).state_bytes_per_device())
        .unwrap_or(0)
}

/// A labelled counter's growth since the baseline (non-zero entries only).
fn by_label_since(facts: &Facts, name: &str, label: &str) -> BTreeMap<String, u64> {
    let before = facts.run.baseline.by_label(name, label);
    let mut grown = facts.last.by_label(name, label);
    for (key, count) in &mut grown {
        *count = count.saturating_sub(before.get(key).copied().unwrap_or(0));
    }
    grown.retain(|_, count| *count > 0);
    grown
}

/// The sink's figures at the end of the run.
fn sink_result(facts: &Facts) -> SinkResult {
    let counts = SinkCounts::of(&facts.last);
    SinkResult {
        points_written: counts.written,
        points_dropped: facts
            .last
            .by_label("gateway_influx_points_dropped_total", "reason"),
        write_failures: facts.last.total("gateway_influx_write_failures_total"),
        points_handed_over: counts.handed_over,
        points_counted_exactly: counts.exact,
        settle_seconds: facts.end.map_or(0.0, |end| {
            end.written_at
                .saturating_duration_since(end.handled_at)
                .as_secs_f64()
        }),
        points_buffered: counts.buffered,
        settled: facts.settled && counts.settled(),
    }
}

fn gateway_result(
    facts: &Facts,
    options: &IngestOptions,
    settings: &GatewaySettings,
    boxes_connected: usize,
) -> GatewayResult {
    let (baseline, last, started) = (&facts.run.baseline, &facts.last, facts.run.started);
    let since = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
    let expected = facts.sent + facts.probe_readings;
    let handled = last.handled().saturating_sub(baseline.handled());
    let seconds = facts.end.map_or(0.0, |end| since(end.written_at));
    let (start_cpu, end_cpu) = (facts.run.cpu_start, facts.cpu_end);
    GatewayResult {
        sent: facts.sent,
        probe_readings: facts.probe_readings,
        handled,
        handled_in_time: facts.end.map_or(handled, |end| end.handled),
        accepted: last
            .total("gateway_readings_accepted_total")
            .saturating_sub(baseline.total("gateway_readings_accepted_total")),
        rejected: by_label_since(facts, "gateway_messages_rejected_total", "reason"),
        missing: expected.saturating_sub(handled),
        complete: facts.end.is_some() && handled >= expected,
        send_seconds: since(facts.send_done),
        handled_seconds: facts.end.map_or(0.0, |end| since(end.handled_at)),
        seconds,
        rate_per_s: if facts.end.is_some() && seconds > 0.0 {
            facts.sent as f64 / seconds
        } else {
            0.0
        },
        poll_interval_ms: GATEWAY_POLL.as_millis() as u64,
        messages_in: last.total("gateway_mqtt_messages_in_total"),
        broker_messages_lost: last.total("gateway_broker_messages_lost_total"),
        alerts_fired: last
            .total("gateway_alerts_fired_total")
            .saturating_sub(baseline.total("gateway_alerts_fired_total")),
        alerts_by_rule: by_label_since(facts, "gateway_alerts_fired_total", "rule"),
        sink: settings.influx_url.as_ref().map(|_| sink_result(facts)),
        devices_held: options.devices + options.probes,
        boxes_connected,
        rss_started_kib: facts.run.memory[0],
        rss_connected_kib: facts.run.memory[1],
        rss_kib: facts.rss_kib,
        hwm_kib: facts.hwm_kib,
        rss_per_idle_box_kib: per_unit(facts.run.memory[0], facts.run.memory[1], boxes_connected),
        rss_per_device_kib: per_unit(Some(0), facts.rss_kib, options.devices + options.probes),
        rule_state_bytes_per_device: rule_state_bytes_per_device(),
        snapshot_bytes_per_device: Some(last.total("gateway_rule_snapshot_bytes"))
            .filter(|bytes| *bytes > 0)
            .map(|bytes| bytes as f64 / (options.devices + options.probes).max(1) as f64),
        broker_log_capacity_bytes: settings
            .broker_log
            .map_or(0, |(size, segments)| (size * (segments + 1)) as u64),
        unacknowledged: facts.unacknowledged,
        cpu_seconds: cpu_between(start_cpu.0, end_cpu.0),
        sink_server_cpu_seconds: cpu_between(start_cpu.1, end_cpu.1),
        load_cpu_seconds: cpu_between(start_cpu.2, end_cpu.2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broker_log_grows_only_for_loads_larger_than_its_default() {
        let small = Load {
            topics: Vec::new(),
            boxes: Vec::new(),
            rounds: Vec::new(),
            round_ts: Vec::new(),
            warmup: 0,
            messages: 20_000,
            payload_bytes: 20_000 * 600,
            warmup_messages: 0,
            warmup_payload_bytes: 0,
        };
        assert_eq!(broker_log(&small, 5_000), (32 << 20, 8));
        let large = Load {
            messages: 500_000,
            payload_bytes: 500_000 * 600,
            ..small
        };
        let (size, segments) = broker_log(&large, 100_000);
        assert!(size * segments >= 500_000 * 800, "{segments} segments");
    }
}
