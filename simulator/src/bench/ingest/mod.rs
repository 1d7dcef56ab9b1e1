//! `simulator bench ingest`: the gateway's sustained ingest throughput (MQTT in → validate →
//! rules → history written) against Debian's mosquitto relaying the same readings from the
//! same load generator, publish → alert latency under that load, and the gateway's memory
//! while it holds the fleet's latest state and rule state.
//!
//! Method:
//! - Before anything is timed, a realistic fleet is generated (`fleet::generate`, the shipped
//!   profiles) and `World` builds `rounds` poll rounds of reading payloads (one telemetry
//!   interval apart, so `ts_ms` and `seq` grow; `prepare`). The devices are served by edge
//!   boxes, `devices_per_box` each (default 1; the devices of a box are of one village, see
//!   `load::group_households`); a box publishes each of its devices' readings on that device's
//!   telemetry topic. Both targets get exactly these payloads over the same boxes, sent by the
//!   same code (`publish`): `publishers` tasks, each owning a contiguous slice of the boxes'
//!   MQTT connections (one per box, opened and announced `online` before the clock starts),
//!   sending round by round, box by box and device by device, as fast as the target takes
//!   them, at QoS 1 (as edge agents) or QoS 0. Each target first gets `warmup_rounds` untimed
//!   rounds (default 1: every device's first reading, which creates its series in the database
//!   and its first rule state, a cost a running district's gateway paid long ago); the clock
//!   starts once the target has handled them (and, for the gateway, its sink written them).
//!   A publisher may run at most `round_lead` rounds ahead of the slowest (default 3, three
//!   simulated minutes), as edge agents polling on one clock do: unpaced, the slices drift
//!   apart in event time, and after enough rounds the gateway's watermark finds the slowest
//!   slice's devices silent past the `offline` rule (15 min) and fires thousands of offline
//!   alerts and orders no real fleet would cause.
//! - `repeat` runs (default 3), each of both targets, in alternating order: run 1 mosquitto
//!   then the gateway, run 2 the gateway then mosquitto, and so on, each with fresh processes.
//!   The report lists every run and the median of the ratios.
//! - Mosquitto (`mosquitto`: `persistence false`, no connection, queue or in-flight limits)
//!   with one subscriber on the telemetry topics (subscribed at QoS 0, so mosquitto relays at
//!   QoS 0 whatever QoS the load uses). Relay rate = load readings received / (last receipt −
//!   first publish): its clock includes delivery to the subscriber.
//! - The gateway (`gateway`: the real `gateway run` process, rules in event time, lateness
//!   0 so a reading is evaluated on arrival, the fleet's registry imported with each device
//!   registered to the household of its box, the InfluxDB sink writing to VictoriaMetrics
//!   unless `--no-sink`). Rate = load readings / (first publish → the end of the timed phase).
//!   The timed phase ends at the first poll of `/metrics` (every 50 ms, so the figure errs
//!   against the gateway by up to one interval) after the publishers finished that finds every
//!   reading sent so far handled (accepted or rejected), and then, with the sink, at the first
//!   poll that finds the sink has written (or dropped) every point handed to it by then: the
//!   history write is inside the gateway's clock as delivery is inside mosquitto's. The sink
//!   writes a full batch at once and a partial one at its flush period (`influxdb.flush_every`,
//!   the gateway's default of 1 s here), so the run's last points may wait up to that long.
//! - Latency (gateway only; `probe`): probe boxes (extra registered devices, one per box,
//!   their own connections) publish, every `probe_interval`, a reading with a sensor fault (the
//!   default pack's `device_fault` fires on it at once) and time it to the `firing` alert the
//!   gateway publishes on `heating/v1/{township}/{device}/alerts`; then a clean reading
//!   resolves it. Probe timestamps follow the load's simulated clock (the gateway runs in event
//!   time, so a past winter is neither future nor ancient for it). Probes run until the timed
//!   phase ends; their readings are handled but not counted in the rate.
//! - Memory: `VmRSS` and `VmHWM` of the gateway once everything is handled and the sink has
//!   settled, with the load generator's own `VmHWM`.
//! - Verdict (`verdict`): a run is valid only when nothing was dropped on either side (lost,
//!   unacknowledged, rejected, broker or sink drops), the sink settled, every round was sent
//!   and handled, and every probe was answered; otherwise it is `invalid: <reasons>` and its
//!   ratio is not judged. Without the sink the comparison is marked "without history".
//!
//! Every wait polls a condition (`poll::poll_until`); process and `/proc` helpers are in
//! `proc`, the `/metrics` reader and the sink's accounting in `metrics`, the report in
//! `report`.

mod gateway;
mod metrics;
mod mosquitto;
mod options;
mod poll;
mod prepare;
mod probe;
mod proc;
mod publish;
mod report;
mod verdict;

use std::path::Path;

use tokio::time::Instant;

pub use mosquitto::TELEMETRY_FILTER;
pub use options::{IngestError, IngestOptions, Qos};
pub use probe::{ALERTS_FILTER, FAULT_RULE};
pub use report::{
    GatewayResult, IngestReport, LatencyResult, RelayResult, RunReport, SinkResult, Target,
};
pub use verdict::{judge, median, Verdict};

use crate::load::BoxIdentity;
use options::io;
use prepare::{prepare, Prepared};
use proc::{load_average, proc_status_kib, raise_open_files};

/// Runs the ingest bench: `repeat` runs of both targets in alternating order.
pub async fn run_ingest(options: IngestOptions) -> Result<IngestReport, IngestError> {
    options.validate()?;
    let load_average_start = load_average();
    let prepare_start = Instant::now();
    let prepared = prepare(&options)?;
    tracing::info!(
        devices = options.devices,
        boxes = prepared.load.boxes.len(),
        probes = options.probes,
        rounds = options.rounds,
        readings = prepared.load.messages,
        seconds = format!("{:.1}", prepare_start.elapsed().as_secs_f64()),
        "load built"
    );
    // One socket per box's connection (load and probes), in this process and in the broker,
    // which inherits the limit.
    raise_open_files(prepared.boxes.len() as u64 + 512)?;
    let boxes = prepared.identities();
    let (work_dir, temporary) =
        super::work_dir_or_temporary(options.work_dir.as_ref(), "ingest", options.seed);
    if work_dir
        .read_dir()
        .is_ok_and(|mut entries| entries.next().is_some())
    {
        return Err(IngestError::Config(format!(
            "the work folder {} is not empty (a gateway database there would carry old state)",
            work_dir.display()
        )));
    }
    std::fs::create_dir_all(&work_dir).map_err(io(format!("create {}", work_dir.display())))?;
    let mut runs = Vec::with_capacity(options.repeat);
    for run in 1..=options.repeat {
        let dir = work_dir.join(format!("run-{run}"));
        match run_once(&options, &prepared, &boxes, &dir, run).await {
            Ok(report) => runs.push(report),
            Err(error) => {
                tracing::info!(dir = %work_dir.display(), "bench files kept");
                return Err(error);
            }
        }
    }
    let report = assemble(&options, &prepared, runs, load_average_start, &work_dir);
    if temporary && !options.keep_work_dir {
        let _ = std::fs::remove_dir_all(&work_dir);
    } else {
        tracing::info!(dir = %work_dir.display(), "bench files kept");
    }
    Ok(report)
}

/// One run: both targets in the run's order, each in its own folder under `dir`.
async fn run_once(
    options: &IngestOptions,
    prepared: &Prepared,
    boxes: &[BoxIdentity],
    dir: &Path,
    run: usize,
) -> Result<RunReport, IngestError> {
    let order = Target::order_of_run(run);
    tracing::info!(
        run,
        of = options.repeat,
        first = order[0].as_str(),
        "run started"
    );
    let (mut relay, mut gateway) = (None, None);
    for target in order {
        match target {
            Target::Mosquitto => {
                let dir = dir.join("mosquitto");
                relay = Some(mosquitto::phase_mosquitto(options, prepared, boxes, &dir).await?);
            }
            Target::Gateway => {
                let dir = dir.join("gateway");
                gateway = Some(gateway::phase_gateway(options, prepared, boxes, &dir).await?);
            }
        }
    }
    let (Some(mosquitto), Some((gateway, latency))) = (relay, gateway) else {
        return Err(IngestError::Config(format!(
            "run {run} did not run both targets"
        )));
    };
    let ratio = (mosquitto.rate_per_s > 0.0 && gateway.rate_per_s > 0.0)
        .then(|| gateway.rate_per_s / mosquitto.rate_per_s);
    let verdict = judge(prepared.load.messages, &mosquitto, &gateway, &latency);
    tracing::info!(run, ratio = ?ratio, %verdict, "run done");
    Ok(RunReport {
        run,
        order,
        mosquitto,
        gateway,
        ratio,
        target_met: verdict::target_met(ratio, &verdict),
        verdict,
        latency,
    })
}

/// The bench's report from its runs.
fn assemble(
    options: &IngestOptions,
    prepared: &Prepared,
    runs: Vec<RunReport>,
    load_average_start: String,
    work_dir: &Path,
) -> IngestReport {
    let load = &prepared.load;
    let ratios: Vec<f64> = runs.iter().filter_map(|run| run.ratio).collect();
    // A run without a ratio measured nothing: the median is of every run or of none.
    let median_ratio = (ratios.len() == runs.len())
        .then(|| median(&ratios))
        .flatten();
    let verdict = verdict::overall(&runs);
    IngestReport {
        devices: options.devices,
        devices_per_box: options.devices_per_box,
        boxes: load.boxes.len(),
        rounds: options.rounds,
        warmup_rounds: options.warmup_rounds,
        qos: options.qos.level(),
        publishers: options.publishers,
        round_lead: options.round_lead,
        seed: options.seed,
        telemetry_interval_s: prepared.interval_ms as f64 / 1000.0,
        messages: load.messages,
        payload_bytes_mean: load.payload_bytes as f64 / load.messages.max(1) as f64,
        repeat: options.repeat,
        with_history: options.sink,
        median_ratio,
        target_met: verdict::target_met(median_ratio, &verdict),
        verdict,
        runs,
        load_generator_hwm_kib: proc_status_kib("self", "VmHWM"),
        load_average_start,
        load_average_end: load_average(),
        work_dir: work_dir.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[tokio::test]
    async fn zero_devices_per_box_is_refused() {
        let mut options = IngestOptions::new(10, PathBuf::from("gateway")).expect("options");
        options.devices_per_box = 0;
        let error = run_ingest(options).await.expect_err("refused");
        assert!(
            matches!(error, IngestError::Config(ref text) if text.contains("per box")),
            "{error}"
        );
    }
}
