//! Publish → alert latency: probe devices (extra registered devices, one box each) publish a
//! sensor-fault reading at the load's event time, and the time until the gateway's `firing`
//! alert arrives on its MQTT alert stream is one sample; a clean reading then resolves it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge_agent::profile::Profile;
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wire::{DeviceKind, Fault, FaultCategory, Topic, TopicKind};

use super::options::{IngestError, IngestOptions, Qos};
use super::publish::{publish, MQTT_TIMEOUT};
use super::report::LatencyResult;
use crate::climate::Climate;
use crate::fleet::HouseholdSpec;
use crate::load::mqtt::Connection;
use crate::load::subscriber::{Publish, Subscriber};
use crate::load::telemetry::{reading_json, ProfileCodec};
use crate::model::{House, HouseParams};

/// The gateway's live alerts.
pub const ALERTS_FILTER: &str = "heating/v1/+/+/alerts";
/// The rule of the default pack the latency probes make fire (a fault code of any category but
/// the gas ones, `for = "0s"`).
pub const FAULT_RULE: &str = "device_fault";
/// Longest wait for a probe's `firing` alert.
const FIRE_DEADLINE: Duration = Duration::from_secs(60);
/// Longest wait for a probe's `resolved` alert.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(10);

/// A latency probe's device and its two readings' values.
#[derive(Debug, Clone)]
pub(super) struct ProbeSpec {
    device_id: String,
    topic: String,
    profile: String,
    kind: DeviceKind,
    faulty: Vec<(&'static str, f64)>,
    fault: Fault,
    clean: Vec<(&'static str, f64)>,
}

impl ProbeSpec {
    fn reading(&self, faulty: bool, ts_ms: i64, seq: u64) -> Vec<u8> {
        let (values, fault) = if faulty {
            (&self.faulty, Some(&self.fault))
        } else {
            (&self.clean, None)
        };
        reading_json(
            &self.device_id,
            ts_ms,
            seq,
            &self.profile,
            self.kind,
            values,
            fault,
        )
    }
}

/// A brand code of the profile whose category is `sensor_fault`.
fn sensor_fault_code(profile: &Profile) -> Option<u32> {
    (1..=u32::from(u16::MAX)).find(|&code| {
        profile
            .fault(code)
            .is_some_and(|f| f.category == FaultCategory::SensorFault)
    })
}

/// The probe of a household's device: its house's values at `start_ms`, clean and with a
/// sensor fault code.
pub(super) fn probe_spec(
    spec: &HouseholdSpec,
    climate: &Climate,
    start_ms: i64,
) -> Result<ProbeSpec, IngestError> {
    let profile = &spec.profile;
    let code = sensor_fault_code(profile).ok_or_else(|| {
        IngestError::Config(format!(
            "profile {} has no sensor_fault code for the latency probes",
            profile.id
        ))
    })?;
    let codec = ProfileCodec::new(Arc::clone(profile));
    let mut house = House::new(
        HouseParams::from(spec),
        Arc::clone(profile),
        climate,
        start_ms as f64 / 1000.0,
    );
    house.refresh_noise();
    let mut values = house.values();
    values.insert(wire::values::FAULT_CODE, 0.0);
    let (clean, _) = codec.quantise(&values);
    values.insert(wire::values::FAULT_CODE, f64::from(code));
    let (faulty, fault) = codec.quantise(&values);
    let fault = fault.ok_or_else(|| {
        IngestError::Config(format!(
            "profile {} has no fault_code register for the latency probes",
            profile.id
        ))
    })?;
    Ok(ProbeSpec {
        device_id: spec.device_id.to_string(),
        topic: Topic::new(
            spec.township_id.clone(),
            spec.device_id.to_string(),
            TopicKind::Telemetry,
        )
        .to_string(),
        profile: profile.id.clone(),
        kind: spec.kind,
        faulty,
        fault,
        clean,
    })
}

/// One alert event on the gateway's alerts topic (`LiveEvent::Alert` as JSON).
#[derive(Debug, Deserialize)]
struct AlertEvent {
    #[serde(rename = "type")]
    event: String,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    rule_id: String,
    #[serde(default)]
    kind: String,
}

/// An alert of a probe's device, as the alerts subscriber saw it.
#[derive(Debug)]
struct AlertSeen {
    rule_id: String,
    firing: bool,
    at: Instant,
}

/// The subscriber to the gateway's alerts, routing each probe device's alerts to its probe.
pub(super) struct AlertListener {
    subscriber: Subscriber,
    /// One per probe, in the order of the probe specs; taken by [`Probes::new`].
    receivers: Vec<mpsc::UnboundedReceiver<AlertSeen>>,
    /// Alerts of the load's own devices.
    other: Arc<AtomicU64>,
}

impl AlertListener {
    pub(super) async fn start(
        mqtt: SocketAddr,
        probes: &[ProbeSpec],
    ) -> Result<AlertListener, IngestError> {
        let mut routes = HashMap::new();
        let mut receivers = Vec::new();
        for probe in probes {
            let (tx, rx) = mpsc::unbounded_channel();
            routes.insert(probe.device_id.clone(), tx);
            receivers.push(rx);
        }
        let other = Arc::new(AtomicU64::new(0));
        let on_alert = {
            let other = Arc::clone(&other);
            move |publish: &Publish<'_>, at: Instant| {
                let Ok(event) = serde_json::from_slice::<AlertEvent>(publish.payload) else {
                    return;
                };
                if event.event != "alert" {
                    return;
                }
                match routes.get(&event.device_id) {
                    Some(tx) => {
                        let firing = event.kind == "firing";
                        let rule_id = event.rule_id;
                        let _ = tx.send(AlertSeen {
                            rule_id,
                            firing,
                            at,
                        });
                    }
                    None => {
                        other.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        };
        let subscriber = Subscriber::start(
            mqtt,
            "bench-alerts",
            ALERTS_FILTER,
            0,
            MQTT_TIMEOUT,
            on_alert,
        )
        .await
        .map_err(|e| IngestError::Gateway(format!("the alerts subscriber: {e}")))?;
        Ok(AlertListener {
            subscriber,
            receivers,
            other,
        })
    }

    /// Alerts of devices that are not probes (the load's own).
    pub(super) fn other_alerts(&self) -> u64 {
        self.other.load(Ordering::Relaxed)
    }

    pub(super) async fn stop(self) {
        if let Err(error) = self.subscriber.stop().await {
            tracing::warn!(%error, "the alerts subscriber ended with an error");
        }
    }
}

/// What the probes share.
#[derive(Clone)]
pub(super) struct ProbeShared {
    qos: Qos,
    clock: Arc<AtomicI64>,
    sent: Arc<AtomicU64>,
    stop: CancellationToken,
    interval: Duration,
}

impl ProbeShared {
    pub(super) fn new(qos: Qos, clock: &Arc<AtomicI64>, interval: Duration) -> ProbeShared {
        ProbeShared {
            qos,
            clock: Arc::clone(clock),
            sent: Arc::new(AtomicU64::new(0)),
            stop: CancellationToken::new(),
            interval,
        }
    }

    /// Probe readings sent so far.
    pub(super) fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Tells every probe to stop after its cycle.
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }
}

/// What the probes measured.
#[derive(Debug, Default)]
pub(super) struct ProbeTotals {
    pub(super) readings: u64,
    latencies: Vec<Duration>,
    timeouts: u64,
    resolve_timeouts: u64,
}

struct Probe {
    spec: ProbeSpec,
    connection: Connection,
    alerts: mpsc::UnboundedReceiver<AlertSeen>,
    seq: u64,
    last_ts: i64,
}

impl Probe {
    /// Publishes the next reading (faulty or clean) at the load's event time; returns when it
    /// was sent.
    async fn send(&mut self, faulty: bool, shared: &ProbeShared) -> Result<Instant, IngestError> {
        self.seq += 1;
        self.last_ts = shared.clock.load(Ordering::Relaxed).max(self.last_ts + 1);
        let payload = self.spec.reading(faulty, self.last_ts, self.seq);
        let sent_at = Instant::now();
        publish(&mut self.connection, shared.qos, &self.spec.topic, &payload)
            .await
            .map_err(|e| {
                IngestError::Load(format!("probe {} publishing: {e}", self.spec.device_id))
            })?;
        shared.sent.fetch_add(1, Ordering::Relaxed);
        Ok(sent_at)
    }

    /// Waits until `deadline` for the device's `device_fault` alert to fire (or resolve).
    async fn alert(&mut self, firing: bool, deadline: Instant) -> Option<Instant> {
        loop {
            match tokio::time::timeout_at(deadline, self.alerts.recv()).await {
                Ok(Some(seen)) if seen.rule_id == FAULT_RULE && seen.firing == firing => {
                    return Some(seen.at)
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The probe's loop: fault → `firing` (timed) → clean → `resolved`, every `interval`, from
    /// `offset` after the start until stopped.
    async fn run(
        mut self,
        shared: ProbeShared,
        offset: Duration,
    ) -> Result<(ProbeTotals, Connection), IngestError> {
        let mut totals = ProbeTotals::default();
        let mut next = Instant::now() + offset;
        loop {
            tokio::select! {
                biased;
                () = shared.stop.cancelled() => break,
                () = tokio::time::sleep_until(next) => {}
            }
            next = (next + shared.interval).max(Instant::now());
            // Alerts that came after an earlier deadline.
            while self.alerts.try_recv().is_ok() {}
            let sent_at = self.send(true, &shared).await?;
            totals.readings += 1;
            match self.alert(true, sent_at + FIRE_DEADLINE).await {
                Some(at) => totals.latencies.push(at.saturating_duration_since(sent_at)),
                None => totals.timeouts += 1,
            }
            self.send(false, &shared).await?;
            totals.readings += 1;
            if self
                .alert(false, Instant::now() + RESOLVE_DEADLINE)
                .await
                .is_none()
            {
                totals.resolve_timeouts += 1;
            }
        }
        Ok((totals, self.connection))
    }
}

/// The probes' task: their totals and connections once stopped, or the first failure.
pub(super) type ProbeTask = JoinHandle<Result<(ProbeTotals, Vec<Connection>), IngestError>>;

/// Starts the probes, staggered over the probe interval, each over its box's connection and
/// with its device's alerts from `listener` (in the order of `specs`).
pub(super) fn spawn_probes(
    specs: &[ProbeSpec],
    connections: Vec<Connection>,
    listener: &mut AlertListener,
    shared: &ProbeShared,
    start_ms: i64,
    interval_ms: i64,
) -> ProbeTask {
    let receivers = std::mem::take(&mut listener.receivers);
    let mut tasks = JoinSet::new();
    let count = specs.len().max(1) as u32;
    for (index, ((spec, connection), alerts)) in specs
        .iter()
        .cloned()
        .zip(connections)
        .zip(receivers)
        .enumerate()
    {
        let probe = Probe {
            spec,
            connection,
            alerts,
            // As the agent and the world: a run starts its sequence at its start time in µs.
            seq: (start_ms.max(0) as u64).saturating_mul(1000),
            last_ts: start_ms - interval_ms,
        };
        let offset = shared.interval / count * index as u32;
        tasks.spawn(probe.run(shared.clone(), offset));
    }
    tokio::spawn(join_probes(tasks))
}

async fn join_probes(
    mut tasks: JoinSet<Result<(ProbeTotals, Connection), IngestError>>,
) -> Result<(ProbeTotals, Vec<Connection>), IngestError> {
    let mut totals = ProbeTotals::default();
    let mut connections = Vec::new();
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok((probe, connection))) => {
                totals.readings += probe.readings;
                totals.latencies.extend(probe.latencies);
                totals.timeouts += probe.timeouts;
                totals.resolve_timeouts += probe.resolve_timeouts;
                connections.push(connection);
            }
            Ok(Err(error)) => {
                failure.get_or_insert(error);
            }
            Err(error) => {
                failure.get_or_insert(IngestError::Load(format!("a probe task failed: {error}")));
            }
        }
    }
    match failure {
        Some(error) => Err(error),
        None => Ok((totals, connections)),
    }
}

/// Why the probes' task ended while the probes should still run (they stop only when told).
pub(super) async fn probes_failed(task: &mut ProbeTask) -> IngestError {
    let why = match task.await {
        Ok(Err(error)) => error.to_string(),
        Ok(Ok(_)) => "they stopped early".to_owned(),
        Err(error) => error.to_string(),
    };
    IngestError::Load(format!("the latency probes failed: {why}"))
}

/// Stops the probes (each finishes its cycle: at most a fire and a resolve deadline) and
/// collects what they measured.
pub(super) async fn stop_probes(
    shared: &ProbeShared,
    task: &mut ProbeTask,
) -> Result<(ProbeTotals, Vec<Connection>), IngestError> {
    shared.stop();
    match tokio::time::timeout(FIRE_DEADLINE + RESOLVE_DEADLINE * 2, &mut *task).await {
        Ok(joined) => joined.map_err(|e| IngestError::Load(format!("the probes failed: {e}")))?,
        Err(_) => {
            task.abort();
            Err(IngestError::Load(
                "the probes did not stop within 80 s".to_owned(),
            ))
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

pub(super) fn latency_result(
    totals: &ProbeTotals,
    options: &IngestOptions,
    other: u64,
) -> LatencyResult {
    let mut sorted: Vec<f64> = totals
        .latencies
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    sorted.sort_by(f64::total_cmp);
    LatencyResult {
        probes: options.probes,
        probe_interval_ms: options.probe_interval.as_millis() as u64,
        samples: sorted.len() as u64,
        timeouts: totals.timeouts,
        resolve_timeouts: totals.resolve_timeouts,
        p50_ms: percentile(&sorted, 50.0),
        p90_ms: percentile(&sorted, 90.0),
        p99_ms: percentile(&sorted, 99.0),
        max_ms: sorted.last().copied(),
        other_alerts: other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::shipped_profiles;
    use crate::fleet;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 50.0), Some(50.0));
        assert_eq!(percentile(&values, 99.0), Some(99.0));
        assert_eq!(percentile(&values, 100.0), Some(100.0));
        assert_eq!(percentile(&[4.0], 99.0), Some(4.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn probe_readings_carry_a_sensor_fault_that_the_default_pack_fires_on() {
        let profiles = shipped_profiles().expect("profiles");
        let fleet = fleet::generate(8, 3, &profiles).expect("fleet");
        let climate = Climate::yanqing_winter(3);
        let start_ms = 1_767_542_400_000;
        for spec in &fleet {
            let probe = probe_spec(spec, &climate, start_ms).expect("probe");
            assert_eq!(probe.fault.category, FaultCategory::SensorFault);
            let faulty =
                wire::Telemetry::from_json(&probe.reading(true, start_ms, 5)).expect("telemetry");
            faulty.validate(start_ms, 0).expect("valid");
            assert_eq!(
                faulty.fault.map(|f| f.category),
                Some(FaultCategory::SensorFault)
            );
            let clean = wire::Telemetry::from_json(&probe.reading(false, start_ms + 1, 6))
                .expect("telemetry");
            clean.validate(start_ms + 1, 0).expect("valid");
            assert_eq!(clean.fault, None);
            assert_eq!(clean.value(wire::values::FAULT_CODE), Some(0.0));
        }
    }
}
