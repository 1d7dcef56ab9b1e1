//! The mosquitto side: Debian's mosquitto as a plain relay (no limits, no persistence) with one
//! subscriber on the telemetry topics, timed from the first publish to the last message the
//! subscriber received.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::options::{io, IngestError, IngestOptions};
use super::poll::{poll_until, Patience};
use super::prepare::Prepared;
use super::proc::{cpu_between, free_port, proc_cpu_seconds, wait_listening, Service};
use super::publish::{
    close_connections, collect_if_finished, connect_boxes, send_warmup, spawn_publishers,
    Published, MQTT_TIMEOUT,
};
use super::report::RelayResult;
use crate::load::subscriber::{Publish, Subscriber};
use crate::load::BoxIdentity;

/// The telemetry topics the relay subscriber listens to.
pub const TELEMETRY_FILTER: &str = "heating/v1/+/+/telemetry";
/// How often the relay subscriber's count is read (in-process, cheap).
const RELAY_POLL: Duration = Duration::from_millis(5);

/// Counts the relayed telemetry messages and notes when the last one arrived.
#[derive(Debug)]
struct RelayCounter {
    count: AtomicU64,
    base: Instant,
    /// Nanoseconds after `base`.
    last_ns: AtomicU64,
}

impl RelayCounter {
    fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn last(&self) -> Instant {
        self.base + Duration::from_nanos(self.last_ns.load(Ordering::Relaxed))
    }

    /// Counts from zero again.
    fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.last_ns.store(0, Ordering::Relaxed);
    }
}

/// Runs mosquitto in `dir` and times the load through it.
pub(super) async fn phase_mosquitto(
    options: &IngestOptions,
    prepared: &Prepared,
    boxes: &[BoxIdentity],
    dir: &Path,
) -> Result<RelayResult, IngestError> {
    std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = write_config(dir, port)?;
    let mut mosquitto = Service::spawn(
        "mosquitto",
        &options.mosquitto_bin,
        &["-c".to_owned(), config],
        dir,
        "install it with `apt-get install mosquitto`, or pass --mosquitto-bin",
    )?;
    let outcome = async {
        wait_listening(&mut mosquitto, addr).await?;
        tracing::info!(%addr, "mosquitto listening");
        let mut relay = Relay::start(addr, &mut mosquitto).await?;
        let outcome = relay.time_load(options, prepared, boxes).await;
        relay.stop_subscriber().await;
        outcome
    }
    .await;
    mosquitto.stop().await;
    outcome
}

/// Writes mosquitto's configuration: a plain relay on loopback, no limits; returns its path.
fn write_config(dir: &Path, port: u16) -> Result<String, IngestError> {
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "# Written by `simulator bench ingest`: a plain relay, no limits.\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence false\n\
             max_connections -1\n\
             max_queued_messages 10000000\n\
             max_inflight_messages 0\n\
             set_tcp_nodelay true\n\
             log_dest stderr\n\
             log_type error\n\
             log_type warning\n"
        ),
    )
    .map_err(io(format!("write {}", config.display())))?;
    Ok(config.display().to_string())
}

/// A running mosquitto with its counting subscriber.
struct Relay<'a> {
    addr: SocketAddr,
    mosquitto: &'a mut Service,
    /// `None` once stopped.
    subscriber: Option<Subscriber>,
    counter: Arc<RelayCounter>,
}

impl<'a> Relay<'a> {
    async fn start(addr: SocketAddr, mosquitto: &'a mut Service) -> Result<Relay<'a>, IngestError> {
        let counter = Arc::new(RelayCounter {
            count: AtomicU64::new(0),
            base: Instant::now(),
            last_ns: AtomicU64::new(0),
        });
        let on_publish = {
            let counter = Arc::clone(&counter);
            move |publish: &Publish<'_>, at: Instant| {
                if publish.topic.ends_with(b"/telemetry") {
                    counter.count.fetch_add(1, Ordering::Relaxed);
                    let ns = at.saturating_duration_since(counter.base).as_nanos() as u64;
                    counter.last_ns.fetch_max(ns, Ordering::Relaxed);
                }
            }
        };
        let subscriber = Subscriber::start(
            addr,
            "bench-relay-counter",
            TELEMETRY_FILTER,
            0,
            MQTT_TIMEOUT,
            on_publish,
        )
        .await
        .map_err(|e| IngestError::Load(format!("the relay subscriber on mosquitto {addr}: {e}")))?;
        Ok(Relay {
            addr,
            mosquitto,
            subscriber: Some(subscriber),
            counter,
        })
    }

    /// Fails if mosquitto exited or the subscriber lost it.
    async fn check_alive(&mut self, during: &str) -> Result<(), IngestError> {
        if let Some(error) = self.mosquitto.died(during) {
            return Err(error);
        }
        if !self
            .subscriber
            .as_ref()
            .is_some_and(Subscriber::is_finished)
        {
            return Ok(());
        }
        let why = match self.subscriber.take() {
            Some(subscriber) => subscriber
                .stop()
                .await
                .err()
                .map_or_else(|| "it stopped".to_owned(), |e| e.to_string()),
            None => "it was stopped".to_owned(),
        };
        Err(IngestError::Load(format!(
            "the relay subscriber lost mosquitto {} {during}: {why}; mosquitto's log ends:\n{}",
            self.addr,
            self.mosquitto.tail()
        )))
    }

    async fn stop_subscriber(&mut self) {
        if let Some(subscriber) = self.subscriber.take() {
            if let Err(error) = subscriber.stop().await {
                tracing::warn!(%error, "the relay subscriber ended with an error");
            }
        }
    }

    /// Waits until the subscriber received `count` messages (the warm-up's).
    async fn wait_received(&mut self, count: u64, stall: Duration) -> Result<(), IngestError> {
        let what = format!("mosquitto to relay the {count} warm-up readings");
        poll_until(&what, RELAY_POLL, Patience::Stall(stall), async |wait| {
            let received = self.counter.count();
            wait.progress(&[received]);
            wait.seen(format!("{received} relayed"));
            self.check_alive("during the warm-up").await?;
            Ok((received >= count).then_some(()))
        })
        .await
    }

    /// Connects the boxes, sends the warm-up untimed, then times the load.
    async fn time_load(
        &mut self,
        options: &IngestOptions,
        prepared: &Prepared,
        boxes: &[BoxIdentity],
    ) -> Result<RelayResult, IngestError> {
        let connections = connect_boxes(self.addr, boxes, prepared.load.boxes.len()).await?;
        tracing::info!(
            boxes = connections.len(),
            "boxes connected to mosquitto; sending the load"
        );
        let clock = Arc::new(AtomicI64::new(prepared.start_ms));
        let (slices, warmup_sent) =
            send_warmup(options, &prepared.load, connections, &clock).await?;
        self.wait_received(warmup_sent, options.stall_timeout)
            .await?;
        // Every warm-up reading arrived and nothing else is in flight: count from zero.
        self.counter.reset();
        let broker_pid = self.mosquitto.pid();
        let broker_cpu = || broker_pid.as_deref().and_then(proc_cpu_seconds);
        let (broker_cpu_start, load_cpu_start) = (broker_cpu(), proc_cpu_seconds("self"));
        let started = Instant::now();
        let publishers = spawn_publishers(
            &prepared.load,
            slices,
            options.qos,
            &clock,
            options.round_lead,
            prepared.load.timed_rounds(),
        );
        let (published, complete) = self
            .await_relayed(publishers, options.stall_timeout)
            .await?;
        let received = self.counter.count();
        let broker_cpu_seconds = cpu_between(broker_cpu_start, broker_cpu());
        let load_cpu_seconds = cpu_between(load_cpu_start, proc_cpu_seconds("self"));
        let seconds = self
            .counter
            .last()
            .saturating_duration_since(started)
            .as_secs_f64();
        let send_seconds = published
            .finished_at
            .saturating_duration_since(started)
            .as_secs_f64();
        let sent = published.sent;
        let unacknowledged = close_connections(published.into_connections()).await;
        let result = RelayResult {
            sent,
            received,
            lost: sent.saturating_sub(received),
            send_seconds,
            seconds,
            rate_per_s: if seconds > 0.0 {
                received as f64 / seconds
            } else {
                0.0
            },
            complete,
            unacknowledged,
            broker_cpu_seconds,
            load_cpu_seconds,
        };
        tracing::info!(
            sent = result.sent,
            received = result.received,
            seconds = format!("{:.3}", result.seconds),
            rate = format!("{:.0}/s", result.rate_per_s),
            "mosquitto phase done"
        );
        Ok(result)
    }

    /// The timed phase: until the subscriber received everything the publishers sent
    /// (`complete`), or nothing moved for `stall` (not complete).
    async fn await_relayed(
        &mut self,
        mut publishers: tokio::task::JoinHandle<Result<Published, IngestError>>,
        stall: Duration,
    ) -> Result<(Published, bool), IngestError> {
        let mut published: Option<Published> = None;
        let relayed = poll_until(
            "mosquitto to relay the load to its subscriber",
            RELAY_POLL,
            Patience::Stall(stall),
            async |wait| {
                if published.is_none() {
                    published = collect_if_finished(&mut publishers)
                        .await
                        .map_err(|error| match error {
                            IngestError::Load(text) => IngestError::Load(format!(
                                "{text}; mosquitto's log ends:\n{}",
                                self.mosquitto.tail()
                            )),
                            other => other,
                        })?;
                }
                let received = self.counter.count();
                let sent = published.as_ref().map(|p| p.sent);
                wait.progress(&[received, u64::from(sent.is_some())]);
                wait.seen(format!("{received} relayed, sent {sent:?}"));
                self.check_alive("during the load").await?;
                Ok(sent.filter(|&sent| received >= sent).map(|_| ()))
            },
        )
        .await;
        let complete = match relayed {
            Ok(()) => true,
            Err(IngestError::TimedOut(text)) => {
                tracing::warn!("{text}");
                false
            }
            Err(error) => {
                publishers.abort();
                return Err(error);
            }
        };
        match published {
            Some(published) => Ok((published, complete)),
            None => {
                publishers.abort();
                Err(IngestError::Load(format!(
                    "the publishers made no progress for {stall:?} against mosquitto; its log ends:\n{}",
                    self.mosquitto.tail()
                )))
            }
        }
    }
}
