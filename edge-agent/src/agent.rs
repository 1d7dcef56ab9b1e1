//! The running agent: one poller task per device feeding one MQTT publisher, a retained
//! `online` status on connect and an `offline` last will, reconnection with jittered backoff.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{AgentState, AgentStatus, Telemetry, Topic, TopicKind, SCHEMA_VERSION};

use crate::config::{AgentConfig, Device};
use crate::modbus::DevicePoller;

/// Counters of what the agent did; shared by its tasks.
#[derive(Debug, Default)]
pub struct AgentStats {
    pub polls_ok: AtomicU64,
    pub polls_failed: AtomicU64,
    pub blocks_failed: AtomicU64,
    pub published: AtomicU64,
    pub publish_failed: AtomicU64,
    pub reconnects: AtomicU64,
}

/// Consecutive failed polls after which a device is reported unreachable.
const UNREACHABLE_AFTER: u32 = 3;

/// A configured agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    stats: Arc<AgentStats>,
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Agent {
    pub fn new(config: AgentConfig) -> Self {
        Self {
            config,
            stats: Arc::new(AgentStats::default()),
        }
    }

    pub fn stats(&self) -> Arc<AgentStats> {
        Arc::clone(&self.stats)
    }

    fn status(&self, state: AgentState) -> (String, Vec<u8>) {
        let topic = Topic::new(
            self.config.township.clone(),
            self.config.agent_id.clone(),
            TopicKind::Status,
        );
        let devices = self.config.devices.iter().map(|d| d.id.clone()).collect();
        let body = AgentStatus::new(self.config.agent_id.clone(), state, devices);
        (topic.to_string(), body.to_json())
    }

    fn mqtt_options(&self) -> MqttOptions {
        let mqtt = &self.config.mqtt;
        let client_id = mqtt
            .client_id
            .clone()
            .unwrap_or_else(|| self.config.agent_id.clone());
        let mut options = MqttOptions::new(client_id, mqtt.host.clone(), mqtt.port);
        options.set_keep_alive(mqtt.keep_alive);
        let (topic, payload) = self.status(AgentState::Offline);
        options.set_last_will(LastWill::new(topic, payload, QoS::AtLeastOnce, true));
        if let (Some(user), Some(password)) = (&mqtt.username, &mqtt.password) {
            options.set_credentials(user.clone(), password.clone());
        }
        options
    }

    /// Runs until `shutdown` is cancelled; then publishes `offline` and disconnects.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (client, mut eventloop) = AsyncClient::new(self.mqtt_options(), 1024);
        let (readings_tx, mut readings_rx) = mpsc::channel::<Telemetry>(1024);
        let tracker = TaskTracker::new();
        let pollers = shutdown.child_token();

        for device in self.config.devices.clone() {
            let poller = DevicePoller::new(
                device,
                self.config.polling.max_gap,
                self.config.polling.timeout,
            );
            tracker.spawn(poll_device(
                poller,
                readings_tx.clone(),
                Arc::clone(&self.stats),
                pollers.clone(),
            ));
        }
        drop(readings_tx);
        tracker.close();

        let (online_topic, online) = self.status(AgentState::Online);
        let max_backoff = self.config.mqtt.max_reconnect_backoff;
        let mut backoff = Duration::from_secs(1);
        let mut connected = false;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                reading = readings_rx.recv() => {
                    let Some(reading) = reading else { break };
                    let topic = Topic::new(reading_township(&self.config, &reading), reading.device_id.to_string(), TopicKind::Telemetry);
                    match client.try_publish(topic.to_string(), QoS::AtLeastOnce, false, reading.to_json()) {
                        Ok(()) => { self.stats.published.fetch_add(1, Ordering::Relaxed); }
                        Err(error) => {
                            self.stats.publish_failed.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(device = %reading.device_id, seq = reading.seq, %error, "telemetry could not be queued for MQTT and was dropped");
                        }
                    }
                }
                event = eventloop.poll() => match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        backoff = Duration::from_secs(1);
                        tracing::info!(host = %self.config.mqtt.host, port = self.config.mqtt.port, "connected to the MQTT broker");
                        if let Err(error) = client.try_publish(online_topic.clone(), QoS::AtLeastOnce, true, online.clone()) {
                            tracing::warn!(%error, "online status could not be queued");
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        if connected {
                            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                        }
                        connected = false;
                        let wait = jitter(backoff);
                        tracing::warn!(%error, retry_in = ?wait, "MQTT connection failed");
                        tokio::select! {
                            () = shutdown.cancelled() => break,
                            () = tokio::time::sleep(wait) => {}
                        }
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
        }

        pollers.cancel();
        tracker.wait().await;
        if connected {
            let (topic, offline) = self.status(AgentState::Offline);
            let _ = client.try_publish(topic, QoS::AtLeastOnce, true, offline);
            let _ = client.try_disconnect();
            // Drive the event loop until the broker has our last messages or a short deadline.
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Ok(event) = eventloop.poll().await {
                    if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                        break;
                    }
                }
            })
            .await;
        }
        tracing::info!("edge agent stopped");
        Ok(())
    }
}

fn reading_township(config: &AgentConfig, reading: &Telemetry) -> wire::TownshipId {
    config
        .devices
        .iter()
        .find(|d| d.id == reading.device_id)
        .map(|d| d.township.clone())
        .unwrap_or_else(|| config.township.clone())
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

/// First sequence number of a run: the start time in microseconds, so that sequence numbers
/// keep growing across restarts (a box publishes far fewer than a million readings a second).
fn initial_seq() -> u64 {
    (now_ms().max(0) as u64).saturating_mul(1000)
}

async fn poll_device(
    mut poller: DevicePoller,
    readings: mpsc::Sender<Telemetry>,
    stats: Arc<AgentStats>,
    shutdown: CancellationToken,
) {
    let device: Device = poller.device().clone();
    let mut ticker = tokio::time::interval(device.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = initial_seq();
    let mut failures: u32 = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let ts_ms = now_ms();
        match poller.poll().await {
            Ok(result) => {
                if failures >= UNREACHABLE_AFTER {
                    tracing::info!(device = %device.id, "device answers again");
                }
                failures = 0;
                stats.polls_ok.fetch_add(1, Ordering::Relaxed);
                for (block, error) in &result.errors {
                    stats.blocks_failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(device = %device.id, kind = error.kind(), register_kind = ?block.kind, start = block.start, count = block.count, %error, "block read failed");
                }
                seq += 1;
                let reading = Telemetry {
                    v: SCHEMA_VERSION,
                    device_id: device.id.clone(),
                    ts_ms,
                    seq,
                    profile: device.profile.id.clone(),
                    kind: device.profile.kind,
                    values: result.values,
                    fault: result.fault,
                    extra: Default::default(),
                };
                if readings.send(reading).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                failures += 1;
                stats.polls_failed.fetch_add(1, Ordering::Relaxed);
                if failures == UNREACHABLE_AFTER {
                    tracing::error!(device = %device.id, kind = error.kind(), %error, failures, "device unreachable");
                } else {
                    tracing::warn!(device = %device.id, kind = error.kind(), %error, failures, "poll failed");
                }
            }
        }
    }
}
