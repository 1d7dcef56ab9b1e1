//! A minimal MQTT 3.1.1 publisher for virtual edge boxes: CONNECT with a retained QoS 1 last
//! will, QoS 1 PUBLISH with in-flight flow control (and QoS 0 PUBLISH for the ingest bench),
//! PINGREQ, DISCONNECT, and an abrupt close (no DISCONNECT, so the broker publishes the will, as
//! when a box loses power).
//!
//! Why not `rumqttc`: the load generator opens one connection per box (10k and more) and must
//! choose each connection's source address (several 127.0.0.x when one address runs out of
//! ephemeral ports), which `rumqttc` cannot; and it only ever publishes, so the protocol subset
//! it needs is small.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpSocket;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Most unacknowledged QoS 1 publishes per connection before `publish` waits.
pub const MAX_IN_FLIGHT: u64 = 100;

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("cannot connect to the broker at {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind the source address {addr}: {source}")]
    Bind {
        addr: IpAddr,
        source: std::io::Error,
    },
    #[error("the broker refused the connection with return code {0}")]
    Refused(u8),
    #[error("the broker sent {0:#04x} instead of CONNACK")]
    NotConnAck(u8),
    #[error("timed out after {0:?} waiting for {1}")]
    Timeout(Duration, &'static str),
    #[error("the connection to the broker broke: {0}")]
    Io(#[from] std::io::Error),
    #[error("the broker closed the connection")]
    Closed,
    #[error("{0} is too long for an MQTT packet")]
    TooLong(&'static str),
    #[error("the broker sent a malformed packet: {0}")]
    Malformed(&'static str),
    #[error("the broker refused the subscription to {0:?}")]
    SubscribeRefused(String),
}

/// The last will of a box: its `offline` status, retained.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
}

pub(crate) fn put_remaining_length(mut length: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            break;
        }
    }
}

pub(crate) fn put_bytes(bytes: &[u8], out: &mut Vec<u8>) -> Result<(), MqttError> {
    let length = u16::try_from(bytes.len()).map_err(|_| MqttError::TooLong("a string"))?;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

/// The largest remaining length MQTT can express.
pub(crate) const MAX_REMAINING: usize = 268_435_455;

/// A CONNECT packet with a clean session and, optionally, a retained QoS 1 will.
pub fn connect_packet(
    client_id: &str,
    keep_alive_s: u16,
    will: Option<&Will>,
) -> Result<Vec<u8>, MqttError> {
    let mut body = Vec::with_capacity(64);
    put_bytes(b"MQTT", &mut body)?;
    body.push(4); // protocol level 3.1.1
    let mut flags = 0x02; // clean session
    if will.is_some() {
        flags |= 0x04 | 0x08 | 0x20; // will, will QoS 1, will retain
    }
    body.push(flags);
    body.extend_from_slice(&keep_alive_s.to_be_bytes());
    put_bytes(client_id.as_bytes(), &mut body)?;
    if let Some(will) = will {
        put_bytes(will.topic.as_bytes(), &mut body)?;
        put_bytes(&will.payload, &mut body)?;
    }
    let mut packet = Vec::with_capacity(body.len() + 5);
    packet.push(0x10);
    put_remaining_length(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    Ok(packet)
}

/// A QoS 1 PUBLISH packet.
pub fn publish_packet(
    topic: &str,
    payload: &[u8],
    packet_id: u16,
    retain: bool,
) -> Result<Vec<u8>, MqttError> {
    let remaining = 2 + topic.len() + 2 + payload.len();
    if remaining > MAX_REMAINING {
        return Err(MqttError::TooLong("the payload"));
    }
    let mut packet = Vec::with_capacity(remaining + 5);
    packet.push(0x32 | u8::from(retain));
    put_remaining_length(remaining, &mut packet);
    put_bytes(topic.as_bytes(), &mut packet)?;
    packet.extend_from_slice(&packet_id.to_be_bytes());
    packet.extend_from_slice(payload);
    Ok(packet)
}

/// A QoS 0 PUBLISH packet: no packet id, nothing to acknowledge.
pub fn publish_packet_qos0(
    topic: &str,
    payload: &[u8],
    retain: bool,
) -> Result<Vec<u8>, MqttError> {
    let remaining = 2 + topic.len() + payload.len();
    if remaining > MAX_REMAINING {
        return Err(MqttError::TooLong("the payload"));
    }
    let mut packet = Vec::with_capacity(remaining + 5);
    packet.push(0x30 | u8::from(retain));
    put_remaining_length(remaining, &mut packet);
    put_bytes(topic.as_bytes(), &mut packet)?;
    packet.extend_from_slice(payload);
    Ok(packet)
}

pub(crate) const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub(crate) const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Reads one packet's first byte and body; `None` at a clean end of stream.
async fn read_packet(reader: &mut OwnedReadHalf) -> Result<Option<(u8, Vec<u8>)>, MqttError> {
    let mut first = [0u8; 1];
    if reader.read(&mut first).await? == 0 {
        return Ok(None);
    }
    let mut length = 0usize;
    let mut shift = 0;
    loop {
        let byte = reader.read_u8().await?;
        length |= usize::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(MqttError::TooLong("an incoming packet"));
        }
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).await?;
    Ok(Some((first[0], body)))
}

#[derive(Debug, Default)]
struct Shared {
    acked: AtomicU64,
    closed: AtomicBool,
    notify: Notify,
}

/// One box's connection to the broker.
#[derive(Debug)]
pub struct Connection {
    writer: OwnedWriteHalf,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    sent: u64,
    next_packet_id: u16,
    last_write: Instant,
}

impl Connection {
    /// Connects from `source` (any address if `None`), sends CONNECT and waits for CONNACK.
    pub async fn open(
        broker: SocketAddr,
        source: Option<IpAddr>,
        client_id: &str,
        keep_alive: Duration,
        will: Option<&Will>,
        timeout: Duration,
    ) -> Result<Connection, MqttError> {
        let connect_error = |source| MqttError::Connect {
            addr: broker,
            source,
        };
        let socket = match broker {
            SocketAddr::V4(_) => TcpSocket::new_v4(),
            SocketAddr::V6(_) => TcpSocket::new_v6(),
        }
        .map_err(connect_error)?;
        if let Some(addr) = source {
            socket
                .bind(SocketAddr::new(addr, 0))
                .map_err(|source| MqttError::Bind { addr, source })?;
        }
        let keep_alive_s = u16::try_from(keep_alive.as_secs())
            .unwrap_or(u16::MAX)
            .max(1);
        let packet = connect_packet(client_id, keep_alive_s, will)?;
        let handshake = async {
            let mut stream = socket.connect(broker).await.map_err(connect_error)?;
            stream.set_nodelay(true)?;
            stream.write_all(&packet).await?;
            let (mut reader, writer) = stream.into_split();
            match read_packet(&mut reader).await? {
                Some((0x20, body)) if body.len() >= 2 => {
                    if body[1] != 0 {
                        return Err(MqttError::Refused(body[1]));
                    }
                }
                Some((other, _)) => return Err(MqttError::NotConnAck(other)),
                None => return Err(MqttError::Closed),
            }
            Ok((reader, writer))
        };
        let (reader, writer) = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| MqttError::Timeout(timeout, "CONNACK"))??;
        let shared = Arc::new(Shared::default());
        let reader = tokio::spawn(read_loop(reader, Arc::clone(&shared)));
        Ok(Connection {
            writer,
            shared,
            reader,
            sent: 0,
            next_packet_id: 1,
            last_write: Instant::now(),
        })
    }

    /// True once the broker closed the connection or it broke.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// QoS 1 publishes not yet acknowledged.
    pub fn in_flight(&self) -> u64 {
        self.sent
            .saturating_sub(self.shared.acked.load(Ordering::Acquire))
    }

    /// Publishes at QoS 1; waits (up to `timeout`) while [`MAX_IN_FLIGHT`] are unacknowledged.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        timeout: Duration,
    ) -> Result<(), MqttError> {
        if self.in_flight() >= MAX_IN_FLIGHT {
            self.wait_in_flight_below(MAX_IN_FLIGHT, timeout).await?;
        }
        if self.is_closed() {
            return Err(MqttError::Closed);
        }
        let packet_id = self.next_packet_id;
        self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
        let packet = publish_packet(topic, payload, packet_id, retain)?;
        self.writer.write_all(&packet).await?;
        self.sent += 1;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Publishes at QoS 0: written and forgotten (no packet id, no in-flight accounting).
    pub async fn publish_qos0(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
    ) -> Result<(), MqttError> {
        if self.is_closed() {
            return Err(MqttError::Closed);
        }
        let packet = publish_packet_qos0(topic, payload, retain)?;
        self.writer.write_all(&packet).await?;
        self.last_write = Instant::now();
        Ok(())
    }

    /// Waits until fewer than `limit` publishes are unacknowledged.
    pub async fn wait_in_flight_below(
        &self,
        limit: u64,
        timeout: Duration,
    ) -> Result<(), MqttError> {
        let wait = async {
            loop {
                let notified = self.shared.notify.notified();
                if self.in_flight() < limit.max(1) {
                    return Ok(());
                }
                if self.is_closed() {
                    return Err(MqttError::Closed);
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| MqttError::Timeout(timeout, "PUBACKs"))?
    }

    /// Sends PINGREQ if nothing was written for `idle`, so the broker's keep-alive holds.
    pub async fn ping_if_idle(&mut self, idle: Duration) -> Result<(), MqttError> {
        if self.last_write.elapsed() >= idle {
            self.writer.write_all(&PINGREQ).await?;
            self.last_write = Instant::now();
        }
        Ok(())
    }

    /// Closes without DISCONNECT, as a box that loses power: the broker publishes the will.
    pub fn drop_abruptly(self) {
        self.reader.abort();
        drop(self.writer);
    }

    /// Sends DISCONNECT (the broker discards the will) and closes.
    pub async fn disconnect(mut self) {
        if self.writer.write_all(&DISCONNECT).await.is_ok() {
            let _ = self.writer.shutdown().await;
        }
        self.reader.abort();
    }
}

async fn read_loop(mut reader: OwnedReadHalf, shared: Arc<Shared>) {
    loop {
        match read_packet(&mut reader).await {
            Ok(Some((first, _))) if first >> 4 == 4 => {
                shared.acked.fetch_add(1, Ordering::AcqRel);
                shared.notify.notify_waiters();
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    shared.closed.store(true, Ordering::Release);
    shared.notify.notify_waiters();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaining_lengths_use_the_variable_byte_encoding() {
        for (length, bytes) in [
            (0usize, vec![0x00]),
            (127, vec![0x7F]),
            (128, vec![0x80, 0x01]),
            (16_383, vec![0xFF, 0x7F]),
            (16_384, vec![0x80, 0x80, 0x01]),
        ] {
            let mut out = Vec::new();
            put_remaining_length(length, &mut out);
            assert_eq!(out, bytes, "{length}");
        }
    }

    #[test]
    fn connect_and_publish_packets_have_the_3_1_1_layout() {
        let will = Will {
            topic: "t/s".into(),
            payload: b"off".to_vec(),
        };
        let connect = connect_packet("box", 60, Some(&will)).expect("packet");
        assert_eq!(connect[0], 0x10);
        assert_eq!(&connect[2..8], b"\x00\x04MQTT");
        assert_eq!(connect[8], 4);
        assert_eq!(
            connect[9], 0x2E,
            "clean session, will, will QoS 1, will retain"
        );
        assert_eq!(&connect[10..12], &[0, 60]);
        assert_eq!(usize::from(connect[1]), connect.len() - 2);

        let publish = publish_packet("a/b", b"xyz", 7, true).expect("packet");
        assert_eq!(publish, b"\x33\x0a\x00\x03a/b\x00\x07xyz".to_vec());
        assert!(publish_packet(&"x".repeat(70_000), b"", 1, false).is_err());
    }

    #[test]
    fn qos0_publish_packets_carry_no_packet_id() {
        let publish = publish_packet_qos0("a/b", b"xyz", false).expect("packet");
        assert_eq!(publish, b"\x30\x08\x00\x03a/bxyz".to_vec());
        let retained = publish_packet_qos0("t", b"", true).expect("packet");
        assert_eq!(retained, b"\x31\x03\x00\x01t".to_vec());
        // A 200-byte payload needs a two-byte remaining length.
        let long = publish_packet_qos0("a/b", &[7u8; 200], false).expect("packet");
        assert_eq!(&long[..3], &[0x30, 0xCD, 0x01], "205 = 0x4D | 0x80, 0x01");
        assert_eq!(long.len(), 3 + 205);
        assert!(publish_packet_qos0(&"x".repeat(70_000), b"", false).is_err());
    }
}
