//! Load mode: many virtual edge boxes publishing straight to the gateway's MQTT broker, one
//! connection per box, each with its `offline` status as the retained last will and its
//! `online` status published on every connect, as the real edge agent does.
//!
//! - [`mqtt::Connection`]: one box's MQTT 3.1.1 connection (QoS 1, last will, abrupt close).
//! - [`telemetry::ProfileCodec`] and [`telemetry::reading_json`]: readings quantised through
//!   the brand's register map, written as `wire::Telemetry` JSON.
//! - [`BoxPool`]: the connections of a whole fleet, opened concurrently, spread over several
//!   127.0.0.x source addresses when the broker is on loopback (one address has about 28k
//!   ephemeral ports).
//! - [`subscriber::Subscriber`]: a counting subscriber (the ingest bench's relay and alert
//!   listeners).

pub mod mqtt;
pub mod subscriber;
pub mod telemetry;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::task::JoinSet;
use wire::{AgentState, AgentStatus, DeviceId, Topic, TopicKind, TownshipId};

use mqtt::{Connection, MqttError, Will};

/// Boxes per source address when the broker is on loopback.
pub const BOXES_PER_SOURCE_ADDRESS: usize = 20_000;
/// Connections opened at the same time.
const PARALLEL_CONNECTS: usize = 256;

/// Why the load generator failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("box {box_id}: {source}")]
    Box { box_id: String, source: MqttError },
    #[error("a connect task failed: {0}")]
    Task(String),
}

/// One virtual edge box.
#[derive(Debug, Clone)]
pub struct BoxIdentity {
    pub box_id: String,
    pub township: TownshipId,
    pub devices: Vec<DeviceId>,
}

impl BoxIdentity {
    /// The box of a simulated household: `box-{device}`, with the household's one device.
    pub fn of_household(household: &crate::fleet::HouseholdSpec) -> BoxIdentity {
        BoxIdentity {
            box_id: format!("box-{}", household.device_id),
            township: household.township_id.clone(),
            devices: vec![household.device_id.clone()],
        }
    }

    fn status(&self, state: AgentState) -> (String, Vec<u8>) {
        let topic = Topic::new(
            self.township.clone(),
            self.box_id.clone(),
            TopicKind::Status,
        );
        let body = AgentStatus::new(self.box_id.clone(), state, self.devices.clone());
        (topic.to_string(), body.to_json())
    }
}

/// Counters of the pool's connection events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    /// Successful connects (first connects and reconnects).
    pub connects: u64,
    /// Abrupt closes (power cuts, network drops, and connections the broker had closed): each
    /// makes the broker publish a will.
    pub abrupt_drops: u64,
    /// Connections the broker closed unexpectedly (each reconnected).
    pub unexpected_closes: u64,
    /// QoS 1 publishes sent.
    pub publishes: u64,
}

/// The connections of a fleet of boxes.
pub struct BoxPool {
    broker: SocketAddr,
    keep_alive: Duration,
    timeout: Duration,
    boxes: Vec<BoxIdentity>,
    connections: Vec<Option<Connection>>,
    stats: PoolStats,
}

impl BoxPool {
    pub fn new(broker: SocketAddr, boxes: Vec<BoxIdentity>) -> BoxPool {
        let connections = boxes.iter().map(|_| None).collect();
        BoxPool {
            broker,
            keep_alive: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            boxes,
            connections,
            stats: PoolStats::default(),
        }
    }

    /// Sets the keep-alive the connections announce (default 60 s, as the edge agent).
    pub fn with_keep_alive(mut self, keep_alive: Duration) -> BoxPool {
        self.keep_alive = keep_alive;
        self
    }

    pub fn stats(&self) -> PoolStats {
        self.stats
    }

    /// Takes the open connections out of the pool (for callers that drive them from several
    /// tasks); a box's slot is `None` if it is not connected.
    pub fn take_connections(&mut self) -> Vec<Option<Connection>> {
        let empty = self.connections.iter().map(|_| None).collect();
        std::mem::replace(&mut self.connections, empty)
    }

    /// The source address box `index` connects from.
    pub fn source_address(broker: SocketAddr, index: usize) -> Option<IpAddr> {
        match broker.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => {
                let host = 1 + index / BOXES_PER_SOURCE_ADDRESS;
                u8::try_from(host)
                    .ok()
                    .map(|host| IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)))
            }
            _ => None,
        }
    }

    pub fn is_connected(&self, index: usize) -> bool {
        self.connections
            .get(index)
            .is_some_and(|c| c.as_ref().is_some_and(|c| !c.is_closed()))
    }

    /// Connects the given boxes concurrently; each publishes its retained `online` status.
    pub async fn connect(&mut self, indexes: &[usize]) -> Result<(), LoadError> {
        let mut pending = indexes
            .iter()
            .copied()
            .filter(|&i| i < self.boxes.len())
            .collect::<Vec<_>>()
            .into_iter();
        let mut running = JoinSet::new();
        loop {
            while running.len() < PARALLEL_CONNECTS {
                let Some(index) = pending.next() else { break };
                if let Some(Some(old)) = self.connections.get_mut(index).map(Option::take) {
                    // The broker closed it already and published its will.
                    old.drop_abruptly();
                    self.stats.abrupt_drops += 1;
                }
                let identity = self.boxes[index].clone();
                let (broker, keep_alive, timeout) = (self.broker, self.keep_alive, self.timeout);
                let source = BoxPool::source_address(broker, index);
                running.spawn(async move {
                    let (will_topic, will_payload) = identity.status(AgentState::Offline);
                    let will = Will {
                        topic: will_topic,
                        payload: will_payload,
                    };
                    let opened = async {
                        let mut connection = Connection::open(
                            broker,
                            source,
                            &identity.box_id,
                            keep_alive,
                            Some(&will),
                            timeout,
                        )
                        .await?;
                        let (topic, payload) = identity.status(AgentState::Online);
                        connection.publish(&topic, &payload, true, timeout).await?;
                        Ok::<Connection, MqttError>(connection)
                    };
                    (index, identity.box_id.clone(), opened.await)
                });
            }
            let Some(joined) = running.join_next().await else {
                break;
            };
            let (index, box_id, opened) = joined.map_err(|e| LoadError::Task(e.to_string()))?;
            let connection = opened.map_err(|source| LoadError::Box { box_id, source })?;
            self.stats.connects += 1;
            self.stats.publishes += 1;
            self.connections[index] = Some(connection);
        }
        Ok(())
    }

    /// Closes a box's connection without DISCONNECT: the broker publishes its will.
    pub fn drop_abruptly(&mut self, index: usize) {
        if let Some(Some(connection)) = self.connections.get_mut(index).map(Option::take) {
            connection.drop_abruptly();
            self.stats.abrupt_drops += 1;
        }
    }

    /// Publishes at QoS 1 on box `index`'s connection, reconnecting once if the broker closed
    /// it unexpectedly.
    pub async fn publish(
        &mut self,
        index: usize,
        topic: &str,
        payload: &[u8],
    ) -> Result<(), LoadError> {
        let box_id = self
            .boxes
            .get(index)
            .map_or_else(|| format!("#{index}"), |b| b.box_id.clone());
        let closed = self
            .connections
            .get(index)
            .and_then(Option::as_ref)
            .is_none_or(Connection::is_closed);
        if closed {
            if self.connections.get(index).is_some_and(Option::is_some) {
                self.stats.unexpected_closes += 1;
                tracing::warn!(%box_id, "the broker closed a box's connection; reconnecting");
            }
            self.connect(&[index]).await?;
        }
        let timeout = self.timeout;
        let Some(Some(connection)) = self.connections.get_mut(index) else {
            return Err(LoadError::Box {
                box_id,
                source: MqttError::Closed,
            });
        };
        connection
            .publish(topic, payload, false, timeout)
            .await
            .map_err(|source| LoadError::Box { box_id, source })?;
        self.stats.publishes += 1;
        Ok(())
    }

    /// Pings every connection idle for `idle`, so keep-alive holds while the bench waits.
    pub async fn keep_alive(&mut self, idle: Duration) -> Result<(), LoadError> {
        for (index, slot) in self.connections.iter_mut().enumerate() {
            if let Some(connection) = slot.as_mut() {
                connection
                    .ping_if_idle(idle)
                    .await
                    .map_err(|source| LoadError::Box {
                        box_id: self.boxes[index].box_id.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    }

    /// Disconnects every box cleanly (no wills).
    pub async fn close(&mut self) {
        for slot in &mut self.connections {
            if let Some(connection) = slot.take() {
                connection.disconnect().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxes_spread_over_loopback_source_addresses() {
        let local: SocketAddr = "127.0.0.1:1883".parse().expect("addr");
        assert_eq!(
            BoxPool::source_address(local, 0),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)))
        );
        assert_eq!(
            BoxPool::source_address(local, BOXES_PER_SOURCE_ADDRESS),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );
        let remote: SocketAddr = "10.1.2.3:1883".parse().expect("addr");
        assert_eq!(BoxPool::source_address(remote, 5), None);
    }
}
