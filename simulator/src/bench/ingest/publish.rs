//! Sending the load: the boxes' connections, dealt in slices to publisher tasks that send
//! round by round within a few rounds of each other ([`RoundGate`]); the untimed warm-up; and
//! closing the connections once their QoS 1 publishes are acknowledged.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::options::{IngestError, IngestOptions, Qos};
use super::prepare::Load;
use crate::load::mqtt::{Connection, MqttError};
use crate::load::{BoxIdentity, BoxPool};

/// Keep-alive the load's connections announce: long, so that boxes stay connected through the
/// untimed set-up of a large fleet (they publish nothing while the others connect).
const KEEP_ALIVE: Duration = Duration::from_secs(1800);
/// Longest wait for one QoS 1 publish window, CONNACK or SUBACK.
pub(super) const MQTT_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens the first `count` boxes' connections (each announces `online`, with its last will).
pub(super) async fn connect_boxes(
    broker: SocketAddr,
    boxes: &[BoxIdentity],
    count: usize,
) -> Result<Vec<Connection>, IngestError> {
    let mut pool = BoxPool::new(broker, boxes.to_vec()).with_keep_alive(KEEP_ALIVE);
    let indexes: Vec<usize> = (0..count.min(boxes.len())).collect();
    pool.connect(&indexes)
        .await
        .map_err(|e| IngestError::Load(format!("connecting the boxes to {broker}: {e}")))?;
    pool.take_connections()
        .into_iter()
        .take(indexes.len())
        .enumerate()
        .map(|(index, connection)| {
            connection.ok_or_else(|| IngestError::Load(format!("box #{index} is not connected")))
        })
        .collect()
}

/// One publisher's boxes: connections of the boxes `first..first + connections.len()`.
pub(super) struct Slice {
    first: usize,
    pub(super) connections: Vec<Connection>,
}

/// Deals `items` into at most `parts` contiguous chunks of nearly equal size, each with the
/// index of its first item.
fn deal<T>(items: Vec<T>, parts: usize) -> Vec<(usize, Vec<T>)> {
    let per = items.len().div_ceil(parts.max(1)).max(1);
    let mut out = Vec::new();
    let mut rest = items.into_iter();
    let mut first = 0;
    loop {
        let chunk: Vec<T> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        let len = chunk.len();
        out.push((first, chunk));
        first += len;
    }
    out
}

fn slices(connections: Vec<Connection>, publishers: usize) -> Vec<Slice> {
    deal(connections, publishers)
        .into_iter()
        .map(|(first, connections)| Slice { first, connections })
        .collect()
}

/// One publish at the load's QoS.
pub(super) async fn publish(
    connection: &mut Connection,
    qos: Qos,
    topic: &str,
    payload: &[u8],
) -> Result<(), MqttError> {
    match qos {
        Qos::AtLeastOnce => {
            connection
                .publish(topic, payload, false, MQTT_TIMEOUT)
                .await
        }
        Qos::AtMostOnce => connection.publish_qos0(topic, payload, false).await,
    }
}

/// Keeps the publishers within `lead` rounds of each other, as edge agents polling on one
/// clock are. Unpaced, one slice could run many telemetry intervals ahead of another in event
/// time, and a gateway in event time would then find the slowest slice's devices silent for
/// longer than the `offline` rule's duration: a flood of offline alerts (and orders) that no
/// real fleet produces, measured as if it were ingest.
pub(super) struct RoundGate {
    lead: usize,
    /// Rounds finished, per publisher (`usize::MAX` once it stopped, for whatever reason).
    finished: Vec<AtomicUsize>,
    /// The least of `finished`.
    slowest: tokio::sync::watch::Sender<usize>,
}

impl RoundGate {
    fn new(publishers: usize, lead: usize) -> RoundGate {
        RoundGate {
            lead,
            finished: (0..publishers).map(|_| AtomicUsize::new(0)).collect(),
            slowest: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Waits until every publisher is at most `lead` rounds behind `round` (0-based).
    async fn wait_to_start(&self, round: usize) {
        let mut slowest = self.slowest.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = slowest
            .wait_for(|&done| done.saturating_add(self.lead) >= round)
            .await;
    }

    fn finished(&self, publisher: usize, rounds: usize) {
        if let Some(slot) = self.finished.get(publisher) {
            slot.store(rounds, Ordering::Release);
        }
        let least = self
            .finished
            .iter()
            .map(|slot| slot.load(Ordering::Acquire))
            .min()
            .unwrap_or(usize::MAX);
        self.slowest.send_if_modified(|done| {
            let moved = least > *done;
            if moved {
                *done = least;
            }
            moved
        });
    }
}

/// What one publisher task is given.
struct Publisher {
    load: Arc<Load>,
    qos: Qos,
    /// The fleet's event time: the newest round any publisher started.
    clock: Arc<AtomicI64>,
    gate: Arc<RoundGate>,
    index: usize,
    rounds: Range<usize>,
}

impl Publisher {
    /// Sends the slice's readings round by round, at most the gate's lead ahead of the slowest
    /// slice; moves the shared event-time clock to each round.
    async fn run(self, mut slice: Slice) -> Result<(Slice, u64), IngestError> {
        let sent = self.send_rounds(&mut slice).await;
        // Stopped, finished or failed: nobody waits for this slice any more.
        self.gate.finished(self.index, usize::MAX);
        sent.map(|count| (slice, count))
    }

    async fn send_rounds(&self, slice: &mut Slice) -> Result<u64, IngestError> {
        let load = &self.load;
        let mut sent = 0u64;
        for (step, round) in self.rounds.clone().enumerate() {
            let (Some(ts), Some(readings)) = (load.round_ts.get(round), load.rounds.get(round))
            else {
                break;
            };
            self.gate.wait_to_start(step).await;
            self.clock.fetch_max(*ts, Ordering::Relaxed);
            for (offset, connection) in slice.connections.iter_mut().enumerate() {
                for &household in &load.boxes[slice.first + offset] {
                    let topic = &load.topics[household];
                    for payload in &readings[household] {
                        publish(connection, self.qos, topic, payload)
                            .await
                            .map_err(|e| {
                                IngestError::Load(format!("publishing on {topic}: {e}"))
                            })?;
                        sent += 1;
                    }
                }
            }
            self.gate.finished(self.index, step + 1);
        }
        Ok(sent)
    }
}

/// What the publishers did.
pub(super) struct Published {
    pub(super) slices: Vec<Slice>,
    pub(super) sent: u64,
    pub(super) finished_at: Instant,
}

impl Published {
    /// Every connection, in box order.
    pub(super) fn into_connections(self) -> impl Iterator<Item = Connection> {
        self.slices.into_iter().flat_map(|slice| slice.connections)
    }
}

/// Starts one publisher task per slice over `rounds` of the load; the handle gives the slices
/// back in box order with the number of readings sent, or the first failure.
pub(super) fn spawn_publishers(
    load: &Arc<Load>,
    slices: Vec<Slice>,
    qos: Qos,
    clock: &Arc<AtomicI64>,
    lead: usize,
    rounds: Range<usize>,
) -> JoinHandle<Result<Published, IngestError>> {
    let gate = Arc::new(RoundGate::new(slices.len(), lead));
    let mut tasks = JoinSet::new();
    for (index, slice) in slices.into_iter().enumerate() {
        let publisher = Publisher {
            load: Arc::clone(load),
            qos,
            clock: Arc::clone(clock),
            gate: Arc::clone(&gate),
            index,
            rounds: rounds.clone(),
        };
        tasks.spawn(publisher.run(slice));
    }
    tokio::spawn(async move {
        let mut done = Vec::new();
        let mut sent = 0;
        let mut failure = None;
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok((slice, count))) => {
                    sent += count;
                    done.push(slice);
                }
                Ok(Err(error)) => {
                    failure.get_or_insert(error);
                }
                Err(error) => {
                    failure.get_or_insert(IngestError::Load(format!(
                        "a publisher task failed: {error}"
                    )));
                }
            }
        }
        let finished_at = Instant::now();
        // Back in box order, for whoever sends next over the same connections.
        done.sort_by_key(|slice| slice.first);
        match failure {
            Some(error) => Err(error),
            None => Ok(Published {
                slices: done,
                sent,
                finished_at,
            }),
        }
    })
}

/// The publishers' outcome, once their task has finished: `None` while it runs.
pub(super) async fn collect_if_finished(
    publishers: &mut JoinHandle<Result<Published, IngestError>>,
) -> Result<Option<Published>, IngestError> {
    if !publishers.is_finished() {
        return Ok(None);
    }
    publishers
        .await
        .map_err(|e| IngestError::Load(format!("the publishers failed: {e}")))?
        .map(Some)
}

/// Deals the connections to the publishers, sends the load's warm-up rounds over them, untimed,
/// and gives the publishers' slices back with the number of readings sent. The first reading
/// of every device is what a target pays once (a new series in the database, a device's first
/// rule state); a district's gateway has long paid it, so the timed phase starts after it.
pub(super) async fn send_warmup(
    options: &IngestOptions,
    load: &Arc<Load>,
    connections: Vec<Connection>,
    clock: &Arc<AtomicI64>,
) -> Result<(Vec<Slice>, u64), IngestError> {
    let slices = slices(connections, options.publishers);
    if load.warmup == 0 {
        return Ok((slices, 0));
    }
    let (qos, lead) = (options.qos, options.round_lead);
    let published = spawn_publishers(load, slices, qos, clock, lead, 0..load.warmup)
        .await
        .map_err(|e| IngestError::Load(format!("the warm-up publishers failed: {e}")))??;
    Ok((published.slices, published.sent))
}

/// Waits (up to `MQTT_TIMEOUT` each) for the QoS 1 acknowledgements, then disconnects cleanly;
/// returns the publishes never acknowledged.
pub(super) async fn close_connections(connections: impl IntoIterator<Item = Connection>) -> u64 {
    let mut unacknowledged = 0;
    for connection in connections {
        if connection.in_flight() > 0
            && connection
                .wait_in_flight_below(1, MQTT_TIMEOUT)
                .await
                .is_err()
        {
            unacknowledged += connection.in_flight();
        }
        connection.disconnect().await;
    }
    unacknowledged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_publisher_waits_for_the_slowest_within_the_lead() {
        let gate = Arc::new(RoundGate::new(3, 1));
        // Rounds 0 and 1 may start at once: the slowest has finished 0 rounds, lead 1.
        gate.wait_to_start(0).await;
        gate.wait_to_start(1).await;
        gate.finished(0, 2);
        gate.finished(1, 1);
        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.wait_to_start(2).await }
        });
        // On this one-thread runtime the task runs to its first wait when we yield.
        tokio::task::yield_now().await;
        assert!(
            !waiting.is_finished(),
            "publisher 2 has finished no round yet"
        );
        gate.finished(2, 1);
        waiting
            .await
            .expect("released once every publisher finished round 1");

        // A publisher that stopped (finished or failed) holds nobody back.
        let waiting = tokio::spawn({
            let gate = Arc::clone(&gate);
            async move { gate.wait_to_start(5).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        for publisher in 0..3 {
            gate.finished(publisher, usize::MAX);
        }
        waiting
            .await
            .expect("released when every publisher stopped");
    }

    #[test]
    fn connections_are_dealt_in_contiguous_slices() {
        let dealt = deal((0..10).collect(), 8);
        assert_eq!(dealt.len(), 5, "two each");
        assert_eq!(dealt[4], (8, vec![8, 9]));
        let dealt = deal((0..3).collect::<Vec<i32>>(), 8);
        assert_eq!(dealt, vec![(0, vec![0]), (1, vec![1]), (2, vec![2])]);
        assert!(deal(Vec::<i32>::new(), 8).is_empty());
        let dealt = deal((0..5000).collect::<Vec<i32>>(), 8);
        assert_eq!(dealt.iter().map(|(_, c)| c.len()).sum::<usize>(), 5000);
        assert_eq!(dealt[7].0, 4375);
    }
}
