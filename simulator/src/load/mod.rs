//! Load mode: many virtual edge boxes publishing straight to the gateway's MQTT broker, one
//! connection per box, each with its `offline` status as the retained last will and its
//! `online` status published on every connect, as the real edge agent does. A box serves one
//! household's device, or (the ingest bench's `--devices-per-box`) several devices of one
//! village, grouped by [`group_households`].
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

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::task::JoinSet;
use wire::{AgentState, AgentStatus, DeviceId, Topic, TopicKind, TownshipId, TOPIC_ROOT};

use mqtt::{Connection, MqttError, Will};

/// Boxes per source address when the broker is on loopback.
pub const BOXES_PER_SOURCE_ADDRESS: usize = 20_000;
/// Connections opened at the same time. A connection the broker has not accepted yet waits in
/// its listen backlog, which is 128 for the gateway's rumqttd (std and mio's `listen(128)`)
/// and 100 for mosquitto: more connects in flight overflow it, the kernel drops the handshake's
/// last ACK, and a handshake starved that way for the whole burst is reset after its SYN-ACK
/// retries (seen at about 14 s into connecting 10,000 boxes to the gateway). Staying under
/// both backlogs keeps every connect in the queue.
const PARALLEL_CONNECTS: usize = 64;

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

    /// The box serving several households' devices: `box-{first device}` in the first
    /// household's township, listing every household's device; `None` for no household. (The
    /// caller keeps the households of one box in one township: see [`group_households`].)
    pub fn of_households(households: &[&crate::fleet::HouseholdSpec]) -> Option<BoxIdentity> {
        let first = households.first()?;
        Some(BoxIdentity {
            devices: households.iter().map(|h| h.device_id.clone()).collect(),
            ..BoxIdentity::of_household(first)
        })
    }

    /// The prefix of every topic of the box and its devices, `heating/v1/{township}/`: the box
    /// publishes its status and its devices' telemetry under it.
    pub fn topic_prefix(&self) -> String {
        format!("{TOPIC_ROOT}/{}/", self.township)
    }

    /// The telemetry topic of one of the box's devices; `None` if the box does not serve it.
    pub fn telemetry_topic(&self, device: &str) -> Option<String> {
        self.devices
            .iter()
            .any(|d| d.as_str() == device)
            .then(|| Topic::new(self.township.clone(), device, TopicKind::Telemetry).to_string())
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

/// An edge box of a load and the positions (in the fleet it was grouped from) of the households
/// whose devices it serves.
#[derive(Debug, Clone)]
pub struct BoxGroup {
    pub identity: BoxIdentity,
    pub households: Vec<usize>,
}

/// Groups a fleet's devices into edge boxes of up to `per_box` devices (at least 1): the
/// households of one village share boxes in fleet order, so every box serves one village's
/// devices, all under its township's topic prefix; only a village's last box may hold fewer.
/// Boxes come in the order of their first household, so with `per_box` 1 box `i` is
/// household `i`'s own box ([`BoxIdentity::of_household`]).
pub fn group_households(fleet: &[crate::fleet::HouseholdSpec], per_box: usize) -> Vec<BoxGroup> {
    let per_box = per_box.max(1);
    let mut members: Vec<Vec<usize>> = Vec::new();
    // The box of each village still taking devices.
    let mut open: HashMap<(&str, &str), usize> = HashMap::new();
    for (position, household) in fleet.iter().enumerate() {
        let village = (household.township.id, household.village.id);
        let index = match open.get(&village) {
            Some(&index) => index,
            None => {
                members.push(Vec::with_capacity(per_box));
                open.insert(village, members.len() - 1);
                members.len() - 1
            }
        };
        members[index].push(position);
        if members[index].len() >= per_box {
            open.remove(&village);
        }
    }
    members
        .into_iter()
        .filter_map(|households| {
            let specs: Vec<&crate::fleet::HouseholdSpec> =
                households.iter().filter_map(|&h| fleet.get(h)).collect();
            BoxIdentity::of_households(&specs).map(|identity| BoxGroup {
                identity,
                households,
            })
        })
        .collect()
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

    /// The source address box `index` connects from (`None`: the kernel's choice).
    ///
    /// The first block of boxes leaves it to the kernel: a socket bound before `connect` gets a
    /// port that is free for every destination, so the TIME_WAIT sockets of a previous run
    /// (60 s, to the previous run's broker port) would use up the address; an unbound socket
    /// gets its port at `connect`, where only the same destination conflicts.
    pub fn source_address(broker: SocketAddr, index: usize) -> Option<IpAddr> {
        match broker.ip() {
            IpAddr::V4(ip) if ip.is_loopback() && index >= BOXES_PER_SOURCE_ADDRESS => {
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

    fn fleet(households: usize) -> Vec<crate::fleet::HouseholdSpec> {
        let profiles = crate::bench::shipped_profiles().expect("profiles");
        crate::fleet::generate(households, 7, &profiles).expect("fleet")
    }

    #[test]
    fn devices_are_dealt_into_boxes_of_one_village_each_under_the_box_prefix() {
        let fleet = fleet(1000);
        let villages: std::collections::HashSet<(&str, &str)> = fleet
            .iter()
            .map(|h| (h.township.id, h.village.id))
            .collect();
        let groups = group_households(&fleet, 10);
        let mut boxes_of = vec![0usize; fleet.len()];
        let mut box_ids = std::collections::HashSet::new();
        let mut partial = 0;
        for group in &groups {
            let identity = &group.identity;
            assert!(
                box_ids.insert(identity.box_id.clone()),
                "{}",
                identity.box_id
            );
            assert!(
                (1..=10).contains(&group.households.len()),
                "{} serves {} devices",
                identity.box_id,
                group.households.len()
            );
            if group.households.len() < 10 {
                partial += 1;
            }
            let prefix = identity.topic_prefix();
            let (status, body) = identity.status(AgentState::Online);
            assert!(status.starts_with(&prefix), "{status} under {prefix}");
            let status = AgentStatus::from_json(&body).expect("status");
            assert_eq!(
                status.devices, identity.devices,
                "the status lists the devices"
            );
            assert_eq!(identity.devices.len(), group.households.len());
            let first = &fleet[group.households[0]];
            for (&position, device) in group.households.iter().zip(&identity.devices) {
                let household = &fleet[position];
                boxes_of[position] += 1;
                assert_eq!(&household.device_id, device);
                assert_eq!(
                    (household.township.id, household.village.id),
                    (first.township.id, first.village.id),
                    "one village per box"
                );
                let topic = Topic::new(
                    household.township_id.clone(),
                    household.device_id.as_str(),
                    TopicKind::Telemetry,
                )
                .to_string();
                assert!(topic.starts_with(&prefix), "{topic} under {prefix}");
                let parsed = Topic::parse(&topic).expect("topic");
                assert_eq!(parsed.township, identity.township);
                assert_eq!(
                    identity.telemetry_topic(device.as_str()),
                    Some(topic),
                    "the box publishes on the device's own topic"
                );
            }
        }
        assert!(
            boxes_of.iter().all(|&n| n == 1),
            "every device in exactly one box"
        );
        assert!(partial <= villages.len(), "{partial} boxes not full");
        assert!(groups.len() >= 100 && groups.len() <= 100 + villages.len());
        assert_eq!(groups[0].households[0], 0, "boxes in fleet order");
        assert_eq!(
            groups[0].identity.telemetry_topic("no-such-device"),
            None,
            "a box publishes only for its own devices"
        );
    }

    #[test]
    fn one_device_per_box_is_each_household_its_own_box() {
        let fleet = fleet(40);
        for per_box in [0, 1] {
            let groups = group_households(&fleet, per_box);
            assert_eq!(groups.len(), fleet.len());
            for (index, (group, household)) in groups.iter().zip(&fleet).enumerate() {
                assert_eq!(group.households, vec![index]);
                let own = BoxIdentity::of_household(household);
                assert_eq!(group.identity.box_id, own.box_id);
                assert_eq!(group.identity.devices, own.devices);
                assert_eq!(group.identity.township, own.township);
            }
        }
        assert!(group_households(&[], 10).is_empty());
        assert!(BoxIdentity::of_households(&[]).is_none());
    }

    #[test]
    fn boxes_spread_over_loopback_source_addresses() {
        let local: SocketAddr = "127.0.0.1:1883".parse().expect("addr");
        assert_eq!(BoxPool::source_address(local, 0), None);
        assert_eq!(
            BoxPool::source_address(local, BOXES_PER_SOURCE_ADDRESS - 1),
            None
        );
        assert_eq!(
            BoxPool::source_address(local, BOXES_PER_SOURCE_ADDRESS),
            Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        );
        let remote: SocketAddr = "10.1.2.3:1883".parse().expect("addr");
        assert_eq!(BoxPool::source_address(remote, 5), None);
    }
}
