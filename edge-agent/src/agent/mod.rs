//! The running agent: [`Agent::run`] builds the tasks from the config and wires them together.
//!
//! Tasks (one `CancellationToken`, one `TaskTracker`):
//! - `polling`: one poller task per Modbus TCP device and one task per RS-485 bus; each turns
//!   polls into readings and runs its devices' commands on the same link;
//! - `mqtt`: the task that owns rumqttc's `EventLoop`, reconnects with jittered exponential
//!   backoff and forwards every event;
//! - `uplink` (awaited by [`Agent::run`] itself): queues every reading on disk, sends it with
//!   QoS 1 and removes it on PUBACK (`packets`), publishes status, health and command acks;
//!   it passes command messages to `commands`, the command lifecycle, whose waiters report
//!   each outcome back to it.
//!
//! - `alarm`: the local alarm's coil write and hook, for the uplink's [`crate::guard::Guard`]
//!   (fed every reading as it is queued, so it watches whether the uplink is up or not).
//!
//! Data flows one way: polling → readings channel → uplink → rumqttc; commands come in as MQTT
//! events, go to the device tasks as jobs and come back as answers on their own channel.

mod alarm;
mod commands;
mod mqtt;
mod packets;
mod polling;
mod uplink;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::TownshipId;

use crate::clock::{self, BootClock, MonoClock, SystemClocks};
use crate::command::CommandLog;
use crate::config::AgentConfig;
use crate::health::{BusMeter, DeviceHealth, MqttCounters};
use crate::queue::DiskQueue;

/// Readings that may wait between the pollers and the uplink.
const READINGS_WAITING: usize = 1024;

/// MQTT events that may wait for the uplink.
const EVENTS_WAITING: usize = 1024;

/// Command outcomes that may wait for the uplink.
const ANSWERS_WAITING: usize = 64;

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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
        let queue = open_queue(&config)?;
        let log = CommandLog::open(&config.data_dir.join("commands.jsonl"), now_ms())
            .context("cannot open the command log")?;
        let (client, eventloop) = mqtt::client(&config)?;
        let (clock, mono) = boot_clock(&config);

        let tracker = TaskTracker::new();
        let pollers = shutdown.child_token();
        let (readings_tx, readings) = mpsc::channel(READINGS_WAITING);
        let changed = Arc::new(Notify::new());
        let spawned = polling::spawn(
            &config,
            &self.devices,
            readings_tx,
            &changed,
            mono,
            &tracker,
            &pollers,
        );
        let spawned = match spawned {
            Ok(spawned) => spawned,
            Err(error) => {
                pollers.cancel();
                return Err(error);
            }
        };

        let events_shutdown = CancellationToken::new();
        let (events_tx, events) = mpsc::channel(EVENTS_WAITING);
        let events_task = tokio::spawn(mqtt::run_event_loop(
            eventloop,
            events_tx,
            config.mqtt.max_reconnect_backoff,
            events_shutdown.clone(),
        ));

        let watch = watch(&config, &spawned.jobs);
        let (answered_tx, answered) = mpsc::channel(ANSWERS_WAITING);
        let commands = commands::Commands::new(&config, log, spawned.jobs, answered_tx);
        let mut uplink = uplink::Uplink::new(uplink::Parts {
            config,
            client,
            queue,
            commands,
            devices: self.devices,
            mqtt: self.mqtt,
            clock,
            buses: BusMeter::new(spawned.lines, tokio::time::Instant::now()),
            watch,
        });
        let inputs = uplink::Inputs {
            readings,
            events,
            answered,
            changed,
        };
        let result = uplink.run(shutdown, inputs).await;

        pollers.cancel();
        tracker.close();
        tracker.wait().await;
        events_shutdown.cancel();
        let _ = events_task.await;
        uplink.stop();
        result
    }
}

/// The box's own watch and its alarm, when `[guard]` is on.
fn watch(
    config: &AgentConfig,
    jobs: &std::collections::HashMap<wire::DeviceId, mpsc::Sender<Box<commands::CommandJob>>>,
) -> Option<uplink::Watch> {
    let rules = config.guard_rules.clone()?;
    let devices: Vec<_> = config
        .devices
        .iter()
        .map(|d| (d.id.clone(), d.profile.kind, d.township.to_string()))
        .collect();
    let guard = crate::guard::Guard::new(rules, &devices, &config.guard);
    let coil_jobs = config.guard.coil.as_ref().and_then(|coil| {
        jobs.iter()
            .find(|(id, _)| id.as_str() == coil.device)
            .map(|(_, sender)| sender.clone())
    });
    let counters = Arc::new(alarm::AlarmCounters::default());
    let alarm = alarm::Alarm::new(
        config.guard.coil.as_ref(),
        coil_jobs,
        config.guard.hook.clone(),
        &config.agent_id,
        Arc::clone(&counters),
    );
    tracing::info!(rules = guard_rule_ids(config).as_str(), after = ?config.guard.after, coil = config.guard.coil.is_some(), hook = config.guard.hook.is_some(), "the box watches on its own while its uplink is down");
    Some(uplink::Watch {
        guard,
        alarm,
        counters,
    })
}

fn guard_rule_ids(config: &AgentConfig) -> String {
    config.guard.rules.join(",")
}

/// Opens the store-and-forward queue (cutting a torn last record) and logs what it holds.
fn open_queue(config: &AgentConfig) -> anyhow::Result<DiskQueue> {
    let (queue, recovery) = DiskQueue::open(config.queue_settings())
        .context("cannot open the store-and-forward queue")?;
    tracing::info!(
        dir = %config.queue_settings().dir.display(),
        segments = recovery.segments,
        unacked = recovery.unacked,
        torn = recovery.torn,
        "store-and-forward queue opened"
    );
    Ok(queue)
}

/// This boot's clock: its id, the monotonic clock and the trust of the wall clock.
fn boot_clock(config: &AgentConfig) -> (BootClock<SystemClocks>, MonoClock) {
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
    (clock, mono)
}
