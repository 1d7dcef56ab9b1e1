//! The uplink: everything the box sends over its MQTT session. It appends every reading to the
//! disk queue, hands fsynced readings to rumqttc with QoS 1 while the in-flight window has room
//! and removes them on PUBACK ([`super::packets`] maps packet ids to queue records), replays
//! the backlog after a reconnect while new readings go first, and publishes the retained status
//! (`online` with the unreachable devices; `offline` at a clean shutdown), the health report
//! and the acks of the commands it passes to [`super::commands`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use wire::{AgentState, DeviceId, Topic, TopicKind};

use super::commands::{Answered, Commands, Reply};
use super::mqtt::{publish_packet_bytes, status_message, MqttEvent};
use super::packets::{Packets, Sent};
use super::polling::Reading;
use super::{health_topic, now_ms};
use crate::clock::{BootClock, Prepared, SystemClocks};
use crate::config::AgentConfig;
use crate::health::{
    BusMeter, DeviceHealth, GuardFigures, HealthReport, MqttCounters, QueueFigures,
};
use crate::queue::DiskQueue;

/// How often the uplink re-reads the clock's trust source.
const CLOCK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a clean shutdown waits for the broker to take the last messages.
const GOODBYE_DEADLINE: Duration = Duration::from_secs(2);

/// The uplink: queue, MQTT session, commands, status and health.
pub(super) struct Uplink {
    config: AgentConfig,
    client: AsyncClient,
    queue: DiskQueue,
    commands: Commands,
    /// Which publish each packet id in flight carries.
    packets: Packets,
    connected: bool,
    devices: Vec<Arc<DeviceHealth>>,
    mqtt: Arc<MqttCounters>,
    /// The telemetry topic (with the tenant prefix) of each configured device, by device id.
    telemetry_topics: HashMap<String, String>,
    started: Instant,
    write_errors: u64,
    /// Boot id, clock trust, stamping and re-stamping of readings.
    clock: BootClock<SystemClocks>,
    /// Utilisation of each RS-485 bus between two health reports.
    buses: BusMeter,
    /// The box's own watch, fed every reading as it is queued.
    watch: Option<Watch>,
    /// Since when the uplink has been down (`None` while connected); the box starts down.
    down_since: Option<Instant>,
}

/// The guard and its alarm ([`crate::guard`], [`super::alarm`]).
pub(super) struct Watch {
    pub(super) guard: crate::guard::Guard,
    pub(super) alarm: super::alarm::Alarm,
    pub(super) counters: Arc<super::alarm::AlarmCounters>,
}

/// What the uplink works with; see [`Uplink::new`].
pub(super) struct Parts {
    pub(super) config: AgentConfig,
    pub(super) client: AsyncClient,
    pub(super) queue: DiskQueue,
    pub(super) commands: Commands,
    pub(super) devices: Vec<Arc<DeviceHealth>>,
    pub(super) mqtt: Arc<MqttCounters>,
    pub(super) clock: BootClock<SystemClocks>,
    pub(super) buses: BusMeter,
    pub(super) watch: Option<Watch>,
}

/// The channels the uplink takes its work from.
pub(super) struct Inputs {
    pub(super) readings: mpsc::Receiver<Reading>,
    pub(super) events: mpsc::Receiver<MqttEvent>,
    pub(super) answered: mpsc::Receiver<Box<Answered>>,
    /// A device became unreachable or answers again: the status is published again.
    pub(super) changed: Arc<Notify>,
}

impl Uplink {
    pub(super) fn new(parts: Parts) -> Uplink {
        let Parts {
            config,
            client,
            queue,
            commands,
            devices,
            mqtt,
            clock,
            buses,
            watch,
        } = parts;
        let telemetry_topics = config
            .devices
            .iter()
            .map(|device| {
                let topic = format!(
                    "{}/{}/{}/telemetry",
                    wire::TOPIC_ROOT,
                    device.township,
                    device.id
                );
                (device.id.to_string(), config.mqtt.tenant_topic(topic))
            })
            .collect();
        Uplink {
            config,
            client,
            queue,
            commands,
            packets: Packets::default(),
            connected: false,
            devices,
            mqtt,
            telemetry_topics,
            started: Instant::now(),
            write_errors: 0,
            clock,
            buses,
            watch,
            down_since: Some(Instant::now()),
        }
    }

    /// Runs until `shutdown` is cancelled or the readings or events end; then queues what the
    /// pollers already produced, syncs the queue and publishes `offline`.
    pub(super) async fn run(
        &mut self,
        shutdown: CancellationToken,
        inputs: Inputs,
    ) -> anyhow::Result<()> {
        let Inputs {
            mut readings,
            mut events,
            mut answered,
            changed,
        } = inputs;
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
                Some(outcome) = answered.recv() => {
                    if let Some(reply) = self.commands.finish(*outcome) {
                        self.send_reply(reply);
                    }
                }
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
            self.goodbye(&mut events).await;
        }
        self.sync();
        Ok(())
    }

    /// Publishes `offline`, disconnects, and takes acknowledgements until the broker has our
    /// last messages or a short deadline passes.
    async fn goodbye(&mut self, events: &mut mpsc::Receiver<MqttEvent>) {
        let (topic, offline) = status_message(&self.config, AgentState::Offline, &[]);
        self.publish(topic, offline, true);
        let _ = self.client.try_disconnect();
        let deadline = tokio::time::sleep(GOODBYE_DEADLINE);
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

    /// After the other tasks have stopped: the queue made durable one last time.
    pub(super) fn stop(mut self) {
        if let Err(error) = self.queue.sync() {
            tracing::error!(%error, "queue could not be synced at shutdown");
        }
        tracing::info!(
            depth = self.queue.depth(),
            "edge agent stopped; unacknowledged readings stay queued on disk"
        );
    }

    fn sync(&mut self) {
        if let Err(error) = self.queue.sync() {
            tracing::error!(%error, "queue fsync failed; readings stay unsent until it succeeds");
        }
    }

    /// Appends a reading to the disk queue as its telemetry message (with its `seq`), after
    /// the guard has seen it (and written into it the local alarms it raised or cleared).
    fn append(&mut self, reading: Reading) {
        let stamp = self.clock.stamp(reading.ts_ms, reading.mono_ms);
        let (device, ts_ms, fault) = (reading.device.clone(), reading.ts_ms, reading.has_fault());
        let mono_ms = reading.mono_ms;
        let down_ms = self
            .down_since
            .map(|since| u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX));
        let watch = &mut self.watch;
        let mut raised = Vec::new();
        let result = self
            .queue
            .append(device.as_str(), ts_ms, fault, now_ms(), |seq| {
                let mut telemetry = reading.into_telemetry(seq, &stamp);
                if let Some(watch) = watch.as_mut() {
                    raised = watch.guard.observe(&mut telemetry, mono_ms, down_ms);
                }
                telemetry.to_json()
            });
        if let Some(watch) = &self.watch {
            for alert in &raised {
                tracing::warn!(device = %device, rule = %alert.rule_id, episode = %alert.episode_id, uplink_down_min = alert.uplink_down_ms / 60_000, summary = %alert.summary, "local alarm raised: the uplink is down and the box's rule fired");
                watch.alarm.run_hook(&device, alert);
            }
            watch.alarm.follow(watch.guard.alarm_on());
        }
        if let Err(error) = result {
            self.write_errors += 1;
            tracing::error!(device = %device, ts_ms, %error, write_errors = self.write_errors, "reading could not be queued on disk and is lost");
        }
    }

    /// The telemetry topic of a queued reading's device (a device no longer configured
    /// publishes under the box's township).
    fn telemetry_topic(&self, device: &str) -> String {
        match self.telemetry_topics.get(device) {
            Some(topic) => topic.clone(),
            None => self.config.mqtt.tenant_topic(format!(
                "{}/{}/{device}/telemetry",
                wire::TOPIC_ROOT,
                self.config.township
            )),
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
            let topic = self.telemetry_topic(&record.device);
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
            let packet_bytes = publish_packet_bytes(topic.len(), payload.len());
            match self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, payload)
            {
                Ok(()) => {
                    self.packets.handed(Sent::Record(record.id));
                    self.mqtt.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
                    self.mqtt.count_reading(packet_bytes);
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
                self.packets.handed(Sent::Other);
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
                    self.down_since = Some(Instant::now());
                }
                self.connected = false;
                self.mqtt.connected.store(false, Ordering::Relaxed);
                self.queue.end_session();
                self.packets.clear();
                tracing::warn!(%error, ?retry_in, depth = self.queue.depth(), "MQTT connection failed; readings stay queued");
                let _ = quiet.send(());
            }
            MqttEvent::Event(Event::Incoming(Packet::ConnAck(_))) => self.on_connack(),
            MqttEvent::Event(Event::Outgoing(Outgoing::Publish(pkid))) => {
                self.packets.written(pkid);
            }
            MqttEvent::Event(Event::Outgoing(Outgoing::AwaitAck(pkid))) => {
                self.packets.held(pkid);
            }
            MqttEvent::Event(Event::Incoming(Packet::PubAck(ack))) => {
                if let Some(sent) = self.packets.acked(ack.pkid) {
                    self.mqtt.published.fetch_add(1, Ordering::Relaxed);
                    if let Sent::Record(id) = sent {
                        self.queue.ack(id);
                    }
                }
            }
            MqttEvent::Event(Event::Incoming(Packet::Publish(publish))) => {
                if let Some(reply) = self.commands.receive(&publish.topic, &publish.payload) {
                    self.send_reply(reply);
                }
            }
            MqttEvent::Event(_) => {}
        }
    }

    /// A new session: the backlog is sent from the oldest unacknowledged reading, the status
    /// published, the command topics subscribed.
    fn on_connack(&mut self) {
        self.connected = true;
        self.down_since = None;
        self.mqtt.connected.store(true, Ordering::Relaxed);
        self.packets.clear();
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
        let mut report = HealthReport::new(
            &self.config.agent_id,
            now_ms(),
            self.started.elapsed().as_secs(),
            &self.devices,
            buses,
            queue,
            &self.mqtt,
        );
        report.guard = self.watch.as_ref().map(|watch| {
            let stats = watch.guard.stats();
            let c = &watch.counters;
            GuardFigures {
                firing: stats.firing,
                alarm_on: watch.guard.alarm_on(),
                raised: stats.raised,
                cleared: stats.cleared,
                coil_writes: c.coil_writes.load(Ordering::Relaxed),
                coil_failures: c.coil_failures.load(Ordering::Relaxed),
                hooks_run: c.hooks_run.load(Ordering::Relaxed),
                hook_failures: c.hook_failures.load(Ordering::Relaxed),
                hooks_skipped: c.hooks_skipped.load(Ordering::Relaxed),
            }
        });
        tracing::info!(
            depth = report.queue.depth,
            polls_ok = report.polls.ok,
            polls_failed = report.polls.failed,
            connected = report.mqtt.connected,
            readings_sent = report.mqtt.readings_sent,
            bytes_per_reading = report.mqtt.bytes_per_reading,
            "health"
        );
        if self.connected {
            let topic = health_topic(&self.config.township, &self.config.agent_id);
            self.publish(topic, report.to_json(), false);
        }
    }

    fn send_reply(&mut self, reply: Reply) {
        let Reply { topic, ack } = reply;
        tracing::info!(id = %ack.id, device = %ack.device_id, status = ?ack.status, reason = ack.error.as_ref().map(|e| e.reason.as_str()), "command answered");
        self.publish(topic, ack.to_json(), false);
    }
}
