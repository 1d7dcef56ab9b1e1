//! The running agent.
//!
//! Tasks (one `CancellationToken`, one `TaskTracker`):
//! - one poller task per Modbus TCP device, one bus task per RS-485 bus (its devices are polled
//!   one at a time, earliest due first, staggered over the interval, with the bus's inter-frame
//!   gap between frames and a warm-up after opening the port); failures are counted per device
//!   and kind, and a device failing `unreachable_after` cycles in a row is reported
//!   `unreachable` and its circuit breaker opens: it is skipped for a doubling, capped,
//!   jitter-free period, then probed once, so the bus's other devices keep their period; with
//!   `[polling.adaptive]` a device's period shrinks while it shows a fault or a fast change and
//!   grows while it is quiet;
//! - one MQTT event-loop task that owns rumqttc's `EventLoop`, reconnects with jittered
//!   exponential backoff and forwards every event;
//! - the uplink (this module's [`Agent::run`]): appends every reading to the disk queue, sends
//!   fsynced readings with QoS 1 and removes them on PUBACK (packet ids mapped to queue ids),
//!   replays the backlog after a reconnect while new readings go first, publishes the retained
//!   status (`online` + unreachable devices; `offline` as last will), the health report, and
//!   executes remote commands through the device tasks.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_modbus::client::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{
    AgentState, AgentStatus, DeviceId, Fault, Telemetry, Topic, TopicKind, TownshipId,
    SCHEMA_VERSION,
};

use crate::bus::{Breaker, BreakerState, BusLine, Cadence, Tripped};
use crate::clock::{self, BootClock, MonoClock, Prepared, SystemClocks};
use crate::command::{self, AckStatus, CommandAck, CommandLog, CommandPlan, Seen};
use crate::config::{AgentConfig, BusConfig, Device, PollingConfig, TransportConfig};
use crate::health::{BusMeter, DeviceHealth, HealthReport, MqttCounters, QueueFigures};
use crate::modbus::{DeviceError, DevicePoller};
use crate::queue::DiskQueue;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How often the uplink re-reads the clock's trust source.
const CLOCK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Topic suffix of the health report (`heating/v1/{township}/{agent_id}/health`).
pub const HEALTH_SUFFIX: &str = "health";

/// The health topic of an agent.
pub fn health_topic(township: &TownshipId, agent_id: &str) -> String {
    format!("{}/{township}/{agent_id}/{HEALTH_SUFFIX}", wire::TOPIC_ROOT)
}

/// A configured agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    devices: Vec<Arc<DeviceHealth>>,
    mqtt: Arc<MqttCounters>,
}

impl Agent {
    pub fn new(config: AgentConfig) -> Self {
        let devices = config
            .devices
            .iter()
            .map(|d| Arc::new(DeviceHealth::new(d.id.clone())))
            .collect();
        Self {
            config,
            devices,
            mqtt: Arc::new(MqttCounters::default()),
        }
    }

    /// Live per-device counters (same order as the configured devices).
    pub fn device_health(&self) -> Vec<Arc<DeviceHealth>> {
        self.devices.clone()
    }

    /// Live MQTT counters.
    pub fn mqtt_counters(&self) -> Arc<MqttCounters> {
        Arc::clone(&self.mqtt)
    }

    /// Runs until `shutdown` is cancelled; then syncs the queue, publishes `offline` and
    /// disconnects.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let config = self.config;
        let (queue, recovery) = DiskQueue::open(config.queue_settings())
            .context("cannot open the store-and-forward queue")?;
        tracing::info!(
            dir = %config.queue_settings().dir.display(),
            segments = recovery.segments,
            unacked = recovery.unacked,
            torn = recovery.torn,
            "store-and-forward queue opened"
        );
        let commands = CommandLog::open(&config.data_dir.join("commands.jsonl"), now_ms())
            .context("cannot open the command log")?;
        let options = mqtt_options(&config)?;
        let cap = usize::from(config.mqtt.max_inflight) + 256;
        let (client, mut eventloop) = AsyncClient::new(options, cap);
        // Commands and their acks are small request/response messages: do not let Nagle's
        // algorithm hold them back behind a delayed ACK.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);

        let (boot_id, kernel_boot) = clock::boot_id();
        let mono = MonoClock::for_boot(kernel_boot);
        let clock = BootClock::new(
            SystemClocks {
                mono,
                synced_file: config.clock.synced_file.clone(),
            },
            &config.clock,
            clock::BUILD_FLOOR_MS,
            boot_id,
            Some(config.data_dir.join("clock.json")),
        );
        tracing::info!(boot_id = clock.boot_id(), kernel_boot, trust = ?config.clock.trust, trusted = clock.trusted(), "clock");

        let tracker = TaskTracker::new();
        let pollers = shutdown.child_token();
        let (readings_tx, readings_rx) = mpsc::channel::<Reading>(1024);
        let changed = Arc::new(Notify::new());
        let mut jobs: HashMap<DeviceId, mpsc::Sender<CommandJob>> = HashMap::new();
        let health: HashMap<DeviceId, Arc<DeviceHealth>> = self
            .devices
            .iter()
            .map(|h| (h.id.clone(), Arc::clone(h)))
            .collect();
        let count = config.devices.len().max(1) as u32;
        let mut buses: BTreeMap<String, Vec<DeviceRunner>> = BTreeMap::new();
        // One line (inter-frame gap, warm-up, utilisation) per bus, shared by its devices.
        let lines: BTreeMap<String, Arc<BusLine>> = config
            .buses
            .iter()
            .map(|bus| {
                let line = BusLine::new(&bus.name, bus.silence(), bus.warm_up);
                (bus.name.clone(), Arc::new(line))
            })
            .collect();
        for (index, device) in config.devices.iter().enumerate() {
            let Some(device_health) = health.get(&device.id).cloned() else {
                continue;
            };
            let poller = DevicePoller::new(
                device.clone(),
                config.polling.max_gap,
                config.polling.timeout,
            );
            let runner = |poller: DevicePoller| {
                DeviceRunner::new(
                    poller,
                    device_health,
                    &config.polling,
                    Arc::clone(&changed),
                    mono,
                )
            };
            match &device.transport {
                TransportConfig::Tcp { .. } => {
                    let (tx, rx) = mpsc::channel(16);
                    jobs.insert(device.id.clone(), tx);
                    let mut runner = runner(poller.with_warm_up(config.polling.warm_up));
                    runner.next_due += runner.cadence.period() / count * index as u32;
                    tracker.spawn(run_device(runner, rx, readings_tx.clone(), pollers.clone()));
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
        let used_lines: Vec<Arc<BusLine>> = lines
            .iter()
            .filter(|(name, _)| buses.contains_key(*name))
            .map(|(_, line)| Arc::clone(line))
            .collect();
        for (name, mut runners) in buses {
            let Some(bus) = config.bus(&name).cloned() else {
                continue;
            };
            // Stagger the bus's devices over the interval so they never queue up together.
            let start = tokio::time::Instant::now();
            let n = runners.len().max(1) as u32;
            for (i, runner) in runners.iter_mut().enumerate() {
                runner.next_due = start + runner.cadence.period() / n * i as u32;
            }
            let (tx, rx) = mpsc::channel(16);
            for runner in &runners {
                jobs.insert(runner.poller.device().id.clone(), tx.clone());
            }
            tracker.spawn(run_bus(
                bus,
                runners,
                rx,
                readings_tx.clone(),
                pollers.clone(),
            ));
        }
        drop(readings_tx);

        let events_shutdown = CancellationToken::new();
        let (events_tx, events_rx) = mpsc::channel::<MqttEvent>(1024);
        let events_task = tokio::spawn(run_event_loop(
            eventloop,
            events_tx,
            config.mqtt.max_reconnect_backoff,
            events_shutdown.clone(),
        ));

        let township_of = config
            .devices
            .iter()
            .map(|d| (d.id.clone(), d.township.clone()))
            .collect();
        let (acks_tx, acks_rx) = mpsc::channel(64);
        let mut uplink = Uplink {
            config,
            client,
            queue,
            commands,
            fifo: VecDeque::new(),
            pkids: HashMap::new(),
            collided: None,
            connected: false,
            devices: self.devices,
            mqtt: self.mqtt,
            township_of,
            jobs,
            acks_tx,
            started: Instant::now(),
            write_errors: 0,
            clock,
            buses: BusMeter::new(used_lines, tokio::time::Instant::now()),
        };
        let result = uplink
            .run(shutdown, readings_rx, events_rx, acks_rx, changed)
            .await;

        pollers.cancel();
        tracker.close();
        tracker.wait().await;
        events_shutdown.cancel();
        let _ = events_task.await;
        if let Err(error) = uplink.queue.sync() {
            tracing::error!(%error, "queue could not be synced at shutdown");
        }
        tracing::info!(
            depth = uplink.queue.depth(),
            "edge agent stopped; unacknowledged readings stay queued on disk"
        );
        result
    }
}

/// rumqttc options from the config: client id, keep-alive, last will, credentials, TLS.
fn mqtt_options(config: &AgentConfig) -> anyhow::Result<MqttOptions> {
    let mqtt = &config.mqtt;
    let client_id = mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| config.agent_id.clone());
    let mut options = MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
    options.set_keep_alive(mqtt.keep_alive);
    options.set_clean_session(true);
    options.set_inflight(mqtt.max_inflight);
    let (topic, payload) = status_message(config, AgentState::Offline, &[]);
    options.set_last_will(LastWill::new(
        mqtt.tenant_topic(topic),
        payload,
        QoS::AtLeastOnce,
        true,
    ));
    if let (Some(user), Some(password)) = (&mqtt.username, &mqtt.password) {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(tls) = &mqtt.tls {
        options.set_transport(mqtt_tls::transport(tls)?);
    }
    Ok(options)
}

/// The retained status message: `online` with the unreachable devices, or `offline`.
fn status_message(
    config: &AgentConfig,
    state: AgentState,
    unreachable: &[DeviceId],
) -> (String, Vec<u8>) {
    let topic = Topic::new(
        config.township.clone(),
        config.agent_id.clone(),
        TopicKind::Status,
    );
    let devices = config.devices.iter().map(|d| d.id.clone()).collect();
    let mut body = AgentStatus::new(config.agent_id.clone(), state, devices);
    if state == AgentState::Online {
        body.extra.insert(
            "unreachable".into(),
            serde_json::json!(unreachable.iter().map(|d| d.as_str()).collect::<Vec<_>>()),
        );
    }
    (topic.to_string(), body.to_json())
}

/// Adds up to ±25 % jitter so that a village of boxes does not reconnect in lockstep.
fn jitter(base: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    base.mul_f64(factor)
}

/// One poll of one device, on its way to the queue.
#[derive(Debug)]
struct Reading {
    device: DeviceId,
    ts_ms: i64,
    /// The boot's monotonic time at `ts_ms` ([`crate::clock::MonoClock`]).
    mono_ms: u64,
    values: wire::Values,
    fault: Option<Fault>,
}

/// A command for a device task.
struct CommandJob {
    device: DeviceId,
    plan: CommandPlan,
    expires_ms: i64,
    reply: oneshot::Sender<JobResult>,
}

enum JobResult {
    Written(f64),
    Reset(Option<f64>),
    Expired,
    Device(DeviceError),
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
        let id = self.poller.device().id.clone();
        let now = tokio::time::Instant::now();
        let probe = self.breaker.attempt() == BreakerState::HalfOpen;
        self.health.set_breaker(self.breaker.state());
        if probe {
            tracing::info!(device = %id, "circuit breaker half-open; probing the device");
        }
        match self.poller.poll_on(link).await {
            Ok(result) => {
                if self.health.cycle_ok(ts_ms) {
                    tracing::info!(device = %id, "device answers again");
                    self.changed.notify_one();
                }
                if self.breaker.succeeded() {
                    tracing::info!(device = %id, "circuit breaker closed; the device is polled on its schedule again");
                }
                self.health.set_breaker(self.breaker.state());
                let before = self.cadence.period();
                let (activity, period) =
                    self.cadence
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
                let reading = Reading {
                    device: id,
                    ts_ms,
                    mono_ms,
                    values: result.values,
                    fault: result.fault,
                };
                readings.send(reading).await.is_ok()
            }
            Err(error) => {
                let (failures, became) = self.health.cycle_failed(&error, self.unreachable_after);
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
                true
            }
        }
    }

    async fn execute(&mut self, link: &mut Option<Context>, job: CommandJob) {
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
    mut jobs: mpsc::Receiver<CommandJob>,
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
    mut jobs: mpsc::Receiver<CommandJob>,
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

/// What the event-loop task reports.
enum MqttEvent {
    Event(Event),
    /// The connection failed; the uplink stops publishing and answers on `quiet` before the
    /// event loop reconnects.
    Lost {
        error: String,
        retry_in: Duration,
        quiet: oneshot::Sender<()>,
    },
}

/// Owns rumqttc's event loop: polls it without ever cancelling a poll, reconnects with
/// jittered exponential backoff.
async fn run_event_loop(
    mut eventloop: rumqttc::EventLoop,
    events: mpsc::Sender<MqttEvent>,
    max_backoff: Duration,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let polled = tokio::select! {
            () = shutdown.cancelled() => return,
            polled = eventloop.poll() => polled,
        };
        match polled {
            Ok(event) => {
                if matches!(event, Event::Incoming(Packet::ConnAck(_))) {
                    backoff = Duration::from_secs(1);
                }
                let disconnect = matches!(event, Event::Outgoing(Outgoing::Disconnect));
                if events.send(MqttEvent::Event(event)).await.is_err() || disconnect {
                    return;
                }
            }
            Err(rumqttc::ConnectionError::RequestsDone) => return,
            Err(error) => {
                let wait = jitter(backoff);
                let (quiet, quieted) = oneshot::channel();
                let lost = MqttEvent::Lost {
                    error: error.to_string(),
                    retry_in: wait,
                    quiet,
                };
                if events.send(lost).await.is_err() {
                    return;
                }
                let _ = quieted.await;
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                // Requests queued after the connection died belong to no session: drop them
                // (the new session is clean and the uplink resends from its queue).
                eventloop.clean();
                eventloop.pending.clear();
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }
}

/// What a publish handed to rumqttc was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Record(u64),
    Other,
}

/// An answered command on its way to the ack topic.
struct Answered {
    ack: CommandAck,
    expires_ms: i64,
}

/// The uplink: queue, MQTT session, commands, status and health.
struct Uplink {
    config: AgentConfig,
    client: AsyncClient,
    queue: DiskQueue,
    commands: CommandLog,
    /// Publishes handed to rumqttc, in order, waiting for their packet id.
    fifo: VecDeque<Sent>,
    /// Packet ids in flight.
    pkids: HashMap<u16, Sent>,
    /// A publish rumqttc holds back because its packet id is still in use.
    collided: Option<(u16, Sent)>,
    connected: bool,
    devices: Vec<Arc<DeviceHealth>>,
    mqtt: Arc<MqttCounters>,
    township_of: HashMap<DeviceId, TownshipId>,
    jobs: HashMap<DeviceId, mpsc::Sender<CommandJob>>,
    acks_tx: mpsc::Sender<Answered>,
    started: Instant,
    write_errors: u64,
    /// Boot id, clock trust, stamping and re-stamping of readings.
    clock: BootClock<SystemClocks>,
    /// Utilisation of each RS-485 bus between two health reports.
    buses: BusMeter,
}

impl Uplink {
    async fn run(
        &mut self,
        shutdown: CancellationToken,
        mut readings: mpsc::Receiver<Reading>,
        mut events: mpsc::Receiver<MqttEvent>,
        mut acks: mpsc::Receiver<Answered>,
        changed: Arc<Notify>,
    ) -> anyhow::Result<()> {
        let fsync_every = self.config.queue.fsync_interval;
        let mut sync_tick = tokio::time::interval(fsync_every.max(Duration::from_millis(10)));
        sync_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut health_tick = tokio::time::interval(self.config.health.interval);
        health_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        health_tick.tick().await;
        let mut clock_tick = tokio::time::interval(CLOCK_CHECK_EVERY);
        clock_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.pump();
            tokio::select! {
                () = shutdown.cancelled() => break,
                reading = readings.recv() => {
                    let Some(reading) = reading else { break };
                    self.append(reading);
                    if fsync_every.is_zero() {
                        self.sync();
                    }
                }
                _ = sync_tick.tick() => {
                    if self.queue.is_dirty() {
                        self.sync();
                    }
                }
                _ = health_tick.tick() => self.publish_health(),
                _ = clock_tick.tick() => {
                    self.clock.refresh();
                }
                () = changed.notified() => self.publish_status(),
                Some(answered) = acks.recv() => self.answer(answered),
                event = events.recv() => match event {
                    Some(event) => self.handle(event),
                    None => break,
                },
            }
        }

        // Shutdown: take what the pollers already produced, make it durable, say goodbye.
        readings.close();
        while let Ok(reading) = readings.try_recv() {
            self.append(reading);
        }
        self.sync();
        if self.connected {
            let (topic, offline) = status_message(&self.config, AgentState::Offline, &[]);
            self.publish(topic, offline, true);
            let _ = self.client.try_disconnect();
            // Take acknowledgements until the broker has our last messages or a short deadline.
            let deadline = tokio::time::sleep(Duration::from_secs(2));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    event = events.recv() => match event {
                        Some(MqttEvent::Event(Event::Outgoing(Outgoing::Disconnect))) | None => break,
                        Some(MqttEvent::Lost { quiet, .. }) => { let _ = quiet.send(()); break }
                        Some(event) => self.handle(event),
                    },
                }
            }
        }
        self.sync();
        Ok(())
    }

    fn sync(&mut self) {
        if let Err(error) = self.queue.sync() {
            tracing::error!(%error, "queue fsync failed; readings stay unsent until it succeeds");
        }
    }

    fn append(&mut self, reading: Reading) {
        let mut telemetry = Telemetry {
            v: SCHEMA_VERSION,
            device_id: reading.device.clone(),
            ts_ms: reading.ts_ms,
            seq: 0,
            profile: String::new(),
            kind: wire::DeviceKind::HeatPump,
            values: reading.values,
            fault: reading.fault,
            extra: Default::default(),
        };
        telemetry.set_clock(&self.clock.stamp(reading.ts_ms, reading.mono_ms));
        if let Some(device) = self.config.devices.iter().find(|d| d.id == reading.device) {
            telemetry.profile = device.profile.id.clone();
            telemetry.kind = device.profile.kind;
        }
        let fault = telemetry.fault.is_some();
        let result = self.queue.append(
            reading.device.as_str(),
            reading.ts_ms,
            fault,
            now_ms(),
            |seq| {
                telemetry.seq = seq;
                telemetry.to_json()
            },
        );
        if let Err(error) = result {
            self.write_errors += 1;
            tracing::error!(device = %reading.device, ts_ms = reading.ts_ms, %error, write_errors = self.write_errors, "reading could not be queued on disk and is lost");
        }
    }

    /// Hands sendable readings to rumqttc while the window has room.
    fn pump(&mut self) {
        if !self.connected || !self.clock.may_send() {
            return;
        }
        let window = usize::from(self.config.mqtt.max_inflight);
        while self.queue.in_flight() < window {
            let record = match self.queue.next_to_send() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(error) => {
                    tracing::error!(%error, "queue could not be read");
                    break;
                }
            };
            let township = DeviceId::parse(&record.device)
                .ok()
                .and_then(|id| self.township_of.get(&id).cloned())
                .unwrap_or_else(|| self.config.township.clone());
            let topic = self.config.mqtt.tenant_topic(format!(
                "{}/{township}/{}/telemetry",
                wire::TOPIC_ROOT,
                record.device
            ));
            let (payload, prepared) = self.clock.prepare(record.payload);
            match prepared {
                Prepared::Restamped => {
                    self.mqtt.restamped.fetch_add(1, Ordering::Relaxed);
                }
                Prepared::Unsynced => {
                    self.mqtt.unsynced.fetch_add(1, Ordering::Relaxed);
                }
                Prepared::Unchanged => {}
            }
            let bytes = (topic.len() + payload.len()) as u64;
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
            {
                Ok(()) => {
                    self.fifo.push_back(Sent::Record(record.id));
                    self.mqtt.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                }
                Err(error) => {
                    tracing::warn!(%error, "MQTT request queue is full; replaying from the oldest unacknowledged reading");
                    self.queue.end_session();
                    self.queue.start_session();
                    break;
                }
            }
        }
    }

    /// Publishes a non-queued message (status, health, command ack) in the current session.
    /// Nothing is handed to rumqttc between sessions: a request queued then would be sent in
    /// the next session and break the packet-id bookkeeping.
    fn publish(&mut self, topic: String, payload: Vec<u8>, retain: bool) {
        if !self.connected {
            tracing::debug!(%topic, "not connected; message not sent");
            return;
        }
        let topic = self.config.mqtt.tenant_topic(topic);
        let bytes = (topic.len() + payload.len()) as u64;
        match self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload)
        {
            Ok(()) => {
                self.fifo.push_back(Sent::Other);
                self.mqtt.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "message could not be queued for MQTT"),
        }
    }

    fn handle(&mut self, event: MqttEvent) {
        match event {
            MqttEvent::Lost {
                error,
                retry_in,
                quiet,
            } => {
                if self.connected {
                    self.mqtt.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                self.connected = false;
                self.mqtt.connected.store(false, Ordering::Relaxed);
                self.queue.end_session();
                self.fifo.clear();
                self.pkids.clear();
                self.collided = None;
                tracing::warn!(%error, ?retry_in, depth = self.queue.depth(), "MQTT connection failed; readings stay queued");
                let _ = quiet.send(());
            }
            MqttEvent::Event(Event::Incoming(Packet::ConnAck(_))) => {
                self.connected = true;
                self.mqtt.connected.store(true, Ordering::Relaxed);
                self.fifo.clear();
                self.pkids.clear();
                self.collided = None;
                self.queue.start_session();
                tracing::info!(host = %self.config.mqtt.host, port = self.config.mqtt.port, backlog = self.queue.depth(), "connected to the MQTT broker");
                self.publish_status();
                if self.config.commands.enabled {
                    for device in &self.config.devices {
                        let topic = Topic::new(
                            device.township.clone(),
                            device.id.to_string(),
                            TopicKind::Command,
                        );
                        let topic = self.config.mqtt.tenant_topic(topic.to_string());
                        if let Err(error) = self.client.try_subscribe(topic, QoS::AtLeastOnce) {
                            tracing::warn!(%error, device = %device.id, "cannot subscribe to commands");
                        }
                    }
                }
            }
            MqttEvent::Event(Event::Outgoing(Outgoing::Publish(pkid))) => {
                let sent = match self.collided {
                    Some((held, sent)) if held == pkid && !self.pkids.contains_key(&pkid) => {
                        self.collided = None;
                        sent
                    }
                    _ => self.fifo.pop_front().unwrap_or(Sent::Other),
                };
                self.pkids.insert(pkid, sent);
            }
            MqttEvent::Event(Event::Outgoing(Outgoing::AwaitAck(pkid))) => {
                let sent = self.fifo.pop_front().unwrap_or(Sent::Other);
                self.collided = Some((pkid, sent));
            }
            MqttEvent::Event(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(sent) = self.pkids.remove(&ack.pkid) {
                    self.mqtt.published.fetch_add(1, Ordering::Relaxed);
                    if let Sent::Record(id) = sent {
                        self.queue.ack(id);
                    }
                }
            }
            MqttEvent::Event(Event::Incoming(Packet::Publish(publish))) => {
                self.on_command(&publish.topic, &publish.payload);
            }
            MqttEvent::Event(_) => {}
        }
    }

    fn publish_status(&mut self) {
        if !self.connected {
            return;
        }
        let unreachable: Vec<DeviceId> = self
            .devices
            .iter()
            .filter(|d| d.is_unreachable())
            .map(|d| d.id.clone())
            .collect();
        let (topic, payload) = status_message(&self.config, AgentState::Online, &unreachable);
        self.publish(topic, payload, true);
    }

    fn publish_health(&mut self) {
        let oldest_age_s = match self.queue.oldest_unacked_ts() {
            Ok(ts) => ts.map(|ts| (now_ms() - ts).max(0) as f64 / 1000.0),
            Err(error) => {
                tracing::warn!(%error, "cannot read the oldest queued reading");
                None
            }
        };
        let queue = QueueFigures {
            depth: self.queue.depth(),
            bytes: self.queue.total_bytes(),
            segments: self.queue.segment_count(),
            oldest_age_s,
            stats: self.queue.stats(),
            write_errors: self.write_errors,
        };
        let buses = self.buses.figures(tokio::time::Instant::now());
        for (bus, figures) in &buses {
            tracing::info!(
                bus = %bus,
                utilisation = figures.utilisation,
                busy_s = figures.busy_s,
                requests = figures.requests,
                timeouts = figures.timeouts,
                "bus utilisation"
            );
        }
        let report = HealthReport::new(
            &self.config.agent_id,
            now_ms(),
            self.started.elapsed().as_secs(),
            &self.devices,
            buses,
            queue,
            &self.mqtt,
        );
        tracing::info!(
            depth = report.queue.depth,
            polls_ok = report.polls.ok,
            polls_failed = report.polls.failed,
            connected = report.mqtt.connected,
            "health"
        );
        if self.connected {
            let topic = health_topic(&self.config.township, &self.config.agent_id);
            self.publish(topic, report.to_json(), false);
        }
    }

    fn ack_topic(&self, device: &Device) -> String {
        Topic::new(
            device.township.clone(),
            device.id.to_string(),
            TopicKind::CommandAck,
        )
        .to_string()
    }

    fn send_ack(&mut self, ack: &CommandAck) {
        let Some(device) = self
            .config
            .devices
            .iter()
            .find(|d| d.id.as_str() == ack.device_id)
        else {
            return;
        };
        let topic = self.ack_topic(device);
        tracing::info!(id = %ack.id, device = %ack.device_id, status = ?ack.status, reason = ack.error.as_ref().map(|e| e.reason.as_str()), "command answered");
        self.publish(topic, ack.to_json(), false);
    }

    fn on_command(&mut self, topic: &str, payload: &[u8]) {
        let now = now_ms();
        let Ok(parsed) = Topic::parse(topic) else {
            tracing::warn!(%topic, "message on an unexpected topic ignored");
            return;
        };
        let Some(device) = self
            .config
            .devices
            .iter()
            .find(|d| d.id.as_str() == parsed.id && parsed.kind == TopicKind::Command)
            .cloned()
        else {
            tracing::warn!(%topic, "command for a device this box does not poll ignored");
            return;
        };
        let command = match command::parse(payload, device.id.as_str(), now) {
            Ok(command) => command,
            Err(refusal) => return self.send_ack(&refusal),
        };
        match self.commands.seen(&command.id) {
            Some(Seen::Finished(first)) => {
                let mut ack = *first;
                ack.status = AckStatus::Duplicate;
                ack.ts_ms = now;
                return self.send_ack(&ack);
            }
            Some(Seen::Interrupted) => {
                let mut ack =
                    CommandAck::new(&command.id, device.id.as_str(), AckStatus::Duplicate, now);
                ack.error = Some(command::AckError {
                    reason: "interrupted".into(),
                    message: "the agent stopped while running this command; it is not run again"
                        .into(),
                });
                return self.send_ack(&ack);
            }
            None => {}
        }
        let plan = match command::check(
            &command,
            device.id.as_str(),
            &device.profile,
            now,
            self.config.commands.max_expiry,
        ) {
            Ok(plan) => plan,
            Err(refusal) => return self.send_ack(&refusal),
        };
        let Some(jobs) = self.jobs.get(&device.id).cloned() else {
            return;
        };
        if let Err(error) = self
            .commands
            .begin(&command.id, &device.id, command.expires_ms)
        {
            tracing::error!(%error, "command log unwritable; command refused");
            let ack = CommandAck::refused(
                &command.id,
                device.id.as_str(),
                now,
                "agent_busy",
                format!("the agent cannot record the command: {error}"),
            );
            return self.send_ack(&ack);
        }
        let (reply, answer) = oneshot::channel();
        let mut ack = CommandAck::new(&command.id, device.id.as_str(), AckStatus::Done, now);
        if let command::Action::Write { name, value } = &command.action {
            ack.name = Some(name.clone());
            ack.requested = Some(*value);
        }
        let job = CommandJob {
            device: device.id.clone(),
            plan: plan.clone(),
            expires_ms: command.expires_ms,
            reply,
        };
        let expires_ms = command.expires_ms;
        if jobs.try_send(job).is_err() {
            ack.status = AckStatus::Failed;
            ack.error = Some(command::AckError {
                reason: "agent_busy".into(),
                message: "the device has too many commands waiting".into(),
            });
            return self.answer(Answered { ack, expires_ms });
        }
        let acks = self.acks_tx.clone();
        tokio::spawn(async move {
            let result = answer.await;
            ack.ts_ms = now_ms();
            match result {
                Ok(JobResult::Written(read_back)) => {
                    ack.read_back = Some(read_back);
                    if let CommandPlan::Write { register, value } = &plan {
                        if !command::confirms(register, *value, read_back) {
                            ack.status = AckStatus::Failed;
                            ack.error = Some(command::AckError {
                                reason: "readback_mismatch".into(),
                                message: format!("wrote {value} but read back {read_back}"),
                            });
                        }
                    }
                }
                Ok(JobResult::Reset(code)) => ack.fault_code_after = code,
                Ok(JobResult::Expired) => {
                    ack.status = AckStatus::Refused;
                    ack.error = Some(command::AckError {
                        reason: "expired".into(),
                        message: "the command expired while waiting for the device".into(),
                    });
                }
                Ok(JobResult::Device(error)) => {
                    ack.status = AckStatus::Failed;
                    ack.error = Some(command::AckError {
                        reason: "device_error".into(),
                        message: format!("{} ({})", error, error.kind()),
                    });
                }
                Err(_) => {
                    ack.status = AckStatus::Failed;
                    ack.error = Some(command::AckError {
                        reason: "agent_busy".into(),
                        message: "the device task stopped before answering".into(),
                    });
                }
            }
            let _ = acks.send(Answered { ack, expires_ms }).await;
        });
    }

    fn answer(&mut self, answered: Answered) {
        if let Err(error) = self.commands.finish(&answered.ack, answered.expires_ms) {
            tracing::error!(%error, id = %answered.ack.id, "command outcome could not be recorded");
        }
        self.send_ack(&answered.ack);
    }
}
