//! Polling: one task per Modbus TCP device, one task per RS-485 bus (its devices polled one at
//! a time, earliest due first, staggered over the interval, with the bus's inter-frame gap
//! between frames and a warm-up after opening the port). Each task also runs the commands of
//! its devices ([`CommandJob`]) between polls, on the same link.
//!
//! Failures are counted per device and kind; a device failing `unreachable_after` cycles in a
//! row is reported `unreachable` and its circuit breaker opens: it is skipped for a doubling,
//! capped, jitter-free period, then probed once, so the bus's other devices keep their period.
//! With `[polling.adaptive]` a device's period shrinks while it shows a fault or a fast change
//! and grows while it is quiet. Every successful poll becomes one [`Reading`] for the uplink.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio_modbus::client::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{DeviceId, Fault, Telemetry, SCHEMA_VERSION};

use super::commands::{CommandJob, JobResult};
use super::now_ms;
use crate::bus::{Breaker, BreakerState, BusLine, Cadence, Tripped};
use crate::clock::MonoClock;
use crate::command::CommandPlan;
use crate::config::{AgentConfig, BusConfig, PollingConfig, TransportConfig};
use crate::health::DeviceHealth;
use crate::modbus::{DeviceError, DevicePoller, PollResult};
use crate::profile::Profile;

/// Commands that may wait for one device task.
const JOBS_PER_TASK: usize = 16;

/// One poll of one device, on its way to the queue.
#[derive(Debug)]
pub(super) struct Reading {
    pub(super) device: DeviceId,
    /// The profile that decoded the values.
    profile: Arc<Profile>,
    pub(super) ts_ms: i64,
    /// The boot's monotonic time at `ts_ms` ([`crate::clock::MonoClock`]).
    pub(super) mono_ms: u64,
    values: wire::Values,
    fault: Option<Fault>,
}

impl Reading {
    pub(super) fn has_fault(&self) -> bool {
        self.fault.is_some()
    }

    /// The telemetry message of this reading, with the `seq` the queue gave it and its clock
    /// stamp ([`crate::clock::BootClock::stamp`]).
    pub(super) fn into_telemetry(self, seq: u64, stamp: &wire::ClockStamp) -> Telemetry {
        let mut telemetry = Telemetry {
            v: SCHEMA_VERSION,
            device_id: self.device,
            ts_ms: self.ts_ms,
            seq,
            profile: self.profile.id.clone(),
            kind: self.profile.kind,
            values: self.values,
            fault: self.fault,
            extra: BTreeMap::new(),
        };
        telemetry.set_clock(stamp);
        telemetry
    }
}

/// What the polling tasks give the rest of the agent.
pub(super) struct Spawned {
    /// Where each device's commands go (its own task, or its bus's).
    pub(super) jobs: HashMap<DeviceId, mpsc::Sender<Box<CommandJob>>>,
    /// The RS-485 lines that have devices.
    pub(super) lines: Vec<Arc<BusLine>>,
}

/// Spawns a task per Modbus TCP device and one per RS-485 bus on `tracker`, all stopped by
/// `shutdown`. `health` holds the devices' counters in the order of `config.devices`.
pub(super) fn spawn(
    config: &AgentConfig,
    health: &[Arc<DeviceHealth>],
    readings: mpsc::Sender<Reading>,
    changed: &Arc<Notify>,
    mono: MonoClock,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<Spawned> {
    let mut jobs = HashMap::new();
    let count = config.devices.len().max(1) as u32;
    let mut buses: BTreeMap<String, Vec<DeviceRunner>> = BTreeMap::new();
    let lines = bus_lines(config);
    for (index, (device, device_health)) in config.devices.iter().zip(health).enumerate() {
        let poller = DevicePoller::new(
            device.clone(),
            config.polling.max_gap,
            config.polling.timeout,
        );
        let runner = |poller: DevicePoller| {
            DeviceRunner::new(
                poller,
                Arc::clone(device_health),
                &config.polling,
                Arc::clone(changed),
                mono,
            )
        };
        match &device.transport {
            TransportConfig::Tcp { .. } => {
                let (tx, rx) = mpsc::channel(JOBS_PER_TASK);
                jobs.insert(device.id.clone(), tx);
                let mut runner = runner(poller.with_warm_up(config.polling.warm_up));
                runner.next_due += runner.cadence.period() / count * index as u32;
                tracker.spawn(run_device(runner, rx, readings.clone(), shutdown.clone()));
            }
            TransportConfig::Rtu { bus } => {
                let (Some(bus_config), Some(line)) = (config.bus(bus), lines.get(bus)) else {
                    anyhow::bail!("device {} names unknown bus {bus:?}", device.id);
                };
                let poller = poller.on_bus(bus_config).on_line(Arc::clone(line));
                buses.entry(bus.clone()).or_default().push(runner(poller));
            }
        }
    }
    let used_lines = lines
        .iter()
        .filter(|(name, _)| buses.contains_key(*name))
        .map(|(_, line)| Arc::clone(line))
        .collect();
    for (name, runners) in buses {
        let Some(bus) = config.bus(&name).cloned() else {
            continue;
        };
        spawn_bus(bus, runners, &mut jobs, readings.clone(), tracker, shutdown);
    }
    Ok(Spawned {
        jobs,
        lines: used_lines,
    })
}

/// One line (inter-frame gap, warm-up, utilisation) per configured bus, shared by its devices.
fn bus_lines(config: &AgentConfig) -> BTreeMap<String, Arc<BusLine>> {
    config
        .buses
        .iter()
        .map(|bus| {
            let line = BusLine::new(&bus.name, bus.silence(), bus.warm_up);
            (bus.name.clone(), Arc::new(line))
        })
        .collect()
}

/// Spawns the task of one RS-485 bus with its devices' runners, staggered over the interval;
/// their commands go to the bus task (entered in `jobs`).
fn spawn_bus(
    bus: BusConfig,
    mut runners: Vec<DeviceRunner>,
    jobs: &mut HashMap<DeviceId, mpsc::Sender<Box<CommandJob>>>,
    readings: mpsc::Sender<Reading>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    // Stagger the bus's devices over the interval so they never queue up together.
    let start = tokio::time::Instant::now();
    let n = runners.len().max(1) as u32;
    for (i, runner) in runners.iter_mut().enumerate() {
        runner.next_due = start + runner.cadence.period() / n * i as u32;
    }
    let (tx, rx) = mpsc::channel(JOBS_PER_TASK);
    for runner in &runners {
        jobs.insert(runner.poller.device().id.clone(), tx.clone());
    }
    tracker.spawn(run_bus(bus, runners, rx, readings, shutdown.clone()));
}

/// One device's polling schedule and counters.
struct DeviceRunner {
    poller: DevicePoller,
    health: Arc<DeviceHealth>,
    next_due: tokio::time::Instant,
    unreachable_after: u32,
    /// Skips a failing device with a deterministic backoff ([`crate::bus::Breaker`]).
    breaker: Breaker,
    /// The poll period, adaptive when `[polling.adaptive]` is enabled.
    cadence: Cadence,
    changed: Arc<Notify>,
    mono: MonoClock,
}

impl DeviceRunner {
    fn new(
        poller: DevicePoller,
        health: Arc<DeviceHealth>,
        polling: &PollingConfig,
        changed: Arc<Notify>,
        mono: MonoClock,
    ) -> DeviceRunner {
        let interval = poller.device().interval;
        let cadence = Cadence::new(interval, polling.adaptive.settings());
        health.set_interval(cadence.period());
        DeviceRunner {
            poller,
            health,
            next_due: tokio::time::Instant::now(),
            unreachable_after: polling.unreachable_after,
            breaker: Breaker::new(
                polling.unreachable_after,
                interval,
                polling.max_retry_backoff.max(interval),
            ),
            cadence,
            changed,
            mono,
        }
    }

    /// Polls once; returns false when the uplink is gone.
    async fn cycle(
        &mut self,
        link: &mut Option<Context>,
        readings: &mpsc::Sender<Reading>,
    ) -> bool {
        let ts_ms = now_ms();
        let mono_ms = self.mono.now_ms();
        let now = tokio::time::Instant::now();
        let probe = self.breaker.attempt() == BreakerState::HalfOpen;
        self.health.set_breaker(self.breaker.state());
        if probe {
            tracing::info!(device = %self.poller.device().id, "circuit breaker half-open; probing the device");
        }
        match self.poller.poll_on(link).await {
            Ok(result) => {
                self.answered(now, probe, ts_ms, &result);
                let device = self.poller.device();
                let reading = Reading {
                    device: device.id.clone(),
                    profile: Arc::clone(&device.profile),
                    ts_ms,
                    mono_ms,
                    values: result.values,
                    fault: result.fault,
                };
                readings.send(reading).await.is_ok()
            }
            Err(error) => {
                self.failed(now, &error);
                true
            }
        }
    }

    /// A poll that was answered (perhaps with some blocks failed): health, breaker, period and
    /// the next due time.
    fn answered(
        &mut self,
        now: tokio::time::Instant,
        probe: bool,
        ts_ms: i64,
        result: &PollResult,
    ) {
        let id = &self.poller.device().id;
        if self.health.cycle_ok(ts_ms) {
            tracing::info!(device = %id, "device answers again");
            self.changed.notify_one();
        }
        if self.breaker.succeeded() {
            tracing::info!(device = %id, "circuit breaker closed; the device is polled on its schedule again");
        }
        self.health.set_breaker(self.breaker.state());
        let before = self.cadence.period();
        let (activity, period) = self
            .cadence
            .observe(now, &result.values, result.fault.is_some());
        if period != before {
            tracing::info!(device = %id, activity = activity.as_str(), interval_ms = period.as_millis() as u64, previous_ms = before.as_millis() as u64, "poll period adapted");
            self.health.set_interval(period);
        }
        self.next_due = if probe {
            now + period
        } else {
            self.next_due + period
        };
        if self.next_due < now {
            self.next_due = now + period;
        }
        for (block, error) in &result.errors {
            self.health.count_error(error);
            tracing::warn!(device = %id, kind = error.kind(), register_kind = ?block.kind, start = block.start, count = block.count, %error, "block read failed");
        }
    }

    /// A poll that failed as a whole: health, breaker and the next due time.
    fn failed(&mut self, now: tokio::time::Instant, error: &DeviceError) {
        let id = &self.poller.device().id;
        let (failures, became) = self.health.cycle_failed(error, self.unreachable_after);
        if became {
            tracing::error!(device = %id, kind = error.kind(), %error, failures, "device unreachable; its circuit breaker opens");
            self.changed.notify_one();
        } else {
            tracing::warn!(device = %id, kind = error.kind(), %error, failures, "poll failed");
        }
        match self.breaker.failed() {
            Tripped::Open { wait, trips } => {
                tracing::warn!(device = %id, kind = error.kind(), wait_ms = wait.as_millis() as u64, trips, "circuit breaker open; the device is skipped until its probe");
                self.next_due = now + wait;
            }
            Tripped::No => {
                let period = self.cadence.period();
                self.next_due += period;
                if self.next_due < now {
                    self.next_due = now + period;
                }
            }
        }
        self.health.set_breaker(self.breaker.state());
    }

    /// Runs a command on the device (unless it expired while waiting) and answers it.
    async fn execute(&mut self, link: &mut Option<Context>, job: Box<CommandJob>) {
        let result = if now_ms() > job.expires_ms {
            JobResult::Expired
        } else {
            match &job.plan {
                CommandPlan::Write { register, value } => {
                    match self.poller.write_on(link, register, *value).await {
                        Ok(read_back) => JobResult::Written(read_back),
                        Err(error) => JobResult::Device(error),
                    }
                }
                CommandPlan::FaultReset(reset) => {
                    match self.poller.reset_fault_on(link, reset).await {
                        Ok(code) => JobResult::Reset(code),
                        Err(error) => JobResult::Device(error),
                    }
                }
            }
        };
        if let JobResult::Device(error) = &result {
            self.health.count_error(error);
        }
        let _ = job.reply.send(result);
    }
}

/// A Modbus TCP device: its own connection and schedule.
async fn run_device(
    mut runner: DeviceRunner,
    mut jobs: mpsc::Receiver<Box<CommandJob>>,
    readings: mpsc::Sender<Reading>,
    shutdown: CancellationToken,
) {
    let mut link = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(runner.next_due) => {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    alive = runner.cycle(&mut link, &readings) => if !alive { return },
                }
            }
            Some(job) = jobs.recv() => runner.execute(&mut link, job).await,
        }
    }
}

/// An RS-485 bus: one serial connection lent to each device in turn, earliest due first.
async fn run_bus(
    bus: BusConfig,
    mut runners: Vec<DeviceRunner>,
    mut jobs: mpsc::Receiver<Box<CommandJob>>,
    readings: mpsc::Sender<Reading>,
    shutdown: CancellationToken,
) {
    tracing::info!(bus = %bus.name, port = %bus.port, devices = runners.len(), "polling RS-485 bus");
    let mut link = None;
    loop {
        let Some(index) = (0..runners.len()).min_by_key(|i| runners[*i].next_due) else {
            return;
        };
        let due = runners[index].next_due;
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep_until(due) => {
                let Some(runner) = runners.get_mut(index) else { return };
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    alive = runner.cycle(&mut link, &readings) => if !alive { return },
                }
            }
            Some(job) = jobs.recv() => {
                if let Some(runner) = runners.iter_mut().find(|r| r.poller.device().id == job.device) {
                    runner.execute(&mut link, job).await;
                }
            }
        }
    }
}
