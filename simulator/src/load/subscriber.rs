//! A minimal MQTT 3.1.1 subscriber for the benches: CONNECT, one SUBSCRIBE, then a read loop
//! that cuts packets out of a large read buffer without copying them and hands every PUBLISH
//! (topic, payload, the instant its bytes were read) to a callback. QoS 1 deliveries are
//! acknowledged (PUBACK), the keep-alive is held with PINGREQ, and `stop` sends DISCONNECT.
//!
//! The ingest bench counts the readings mosquitto relays with it, and listens for the gateway's
//! alerts with it. One `read` fills the buffer with as many packets as the kernel holds, so a
//! single subscriber keeps up with a broker relaying a hundred thousand messages a second.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::mqtt::{
    connect_packet, put_bytes, put_remaining_length, MqttError, DISCONNECT, PINGREQ,
};

/// Initial size of the read buffer.
pub const READ_BUFFER: usize = 1 << 20;
/// Largest packet accepted (the buffer grows up to this).
const MAX_PACKET: usize = 16 << 20;
/// The packet id of the one SUBSCRIBE.
const SUBSCRIBE_ID: u16 = 1;

/// A SUBSCRIBE packet for one topic filter at `qos` (0 or 1).
pub fn subscribe_packet(packet_id: u16, filter: &str, qos: u8) -> Result<Vec<u8>, MqttError> {
    let mut body = Vec::with_capacity(filter.len() + 5);
    body.extend_from_slice(&packet_id.to_be_bytes());
    put_bytes(filter.as_bytes(), &mut body)?;
    body.push(qos.min(1));
    let mut packet = Vec::with_capacity(body.len() + 5);
    packet.push(0x82);
    put_remaining_length(body.len(), &mut packet);
    packet.extend_from_slice(&body);
    Ok(packet)
}

/// One received PUBLISH, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    pub topic: &'a [u8],
    pub payload: &'a [u8],
    pub qos: u8,
    /// Present for QoS 1.
    pub packet_id: Option<u16>,
    pub retain: bool,
}

/// Parses a PUBLISH packet's body (`first` is its fixed-header byte).
pub fn parse_publish(first: u8, body: &[u8]) -> Result<Publish<'_>, MqttError> {
    if first >> 4 != 3 {
        return Err(MqttError::Malformed("not a PUBLISH packet"));
    }
    let qos = (first >> 1) & 0x03;
    if qos > 1 {
        // The subscription asks for QoS 0 or 1, so the broker never delivers at QoS 2.
        return Err(MqttError::Malformed(
            "a QoS 2 delivery on a QoS 0/1 subscription",
        ));
    }
    let (Some(&high), Some(&low)) = (body.first(), body.get(1)) else {
        return Err(MqttError::Malformed("PUBLISH without a topic length"));
    };
    let topic_end = 2 + usize::from(u16::from_be_bytes([high, low]));
    let topic = body
        .get(2..topic_end)
        .ok_or(MqttError::Malformed("PUBLISH topic longer than the packet"))?;
    let (packet_id, payload_start) = if qos == 1 {
        let id = body
            .get(topic_end..topic_end + 2)
            .ok_or(MqttError::Malformed("QoS 1 PUBLISH without a packet id"))?;
        (Some(u16::from_be_bytes([id[0], id[1]])), topic_end + 2)
    } else {
        (None, topic_end)
    };
    Ok(Publish {
        topic,
        payload: &body[payload_start..],
        qos,
        packet_id,
        retain: first & 0x01 == 1,
    })
}

/// Cuts MQTT packets out of a byte stream read into one growing buffer.
#[derive(Debug)]
pub struct Framer {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Framer {
    pub fn new(capacity: usize) -> Framer {
        Framer {
            buf: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
        }
    }

    /// Bytes received and not yet cut into packets.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }

    /// Free space to read into: unread bytes move to the front when the tail runs short, and
    /// the buffer doubles when one packet does not fit.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let free = self.buf.len() - self.end;
        if free < self.buf.len() / 4 && self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`Framer::spare`] as read.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Appends bytes (tests, and anything read elsewhere).
    pub fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            self.filled(n);
            bytes = &bytes[n..];
        }
    }

    /// The next complete packet (fixed-header byte and body), `None` until one has arrived.
    pub fn next_packet(&mut self) -> Result<Option<(u8, &[u8])>, MqttError> {
        let data = &self.buf[self.start..self.end];
        if data.len() < 2 {
            return Ok(None);
        }
        let mut length = 0usize;
        let mut header = 1;
        loop {
            if header > 4 {
                return Err(MqttError::Malformed("a remaining length over four bytes"));
            }
            let Some(&byte) = data.get(header) else {
                return Ok(None);
            };
            length |= usize::from(byte & 0x7F) << (7 * (header - 1));
            header += 1;
            if byte & 0x80 == 0 {
                break;
            }
        }
        if length > MAX_PACKET {
            return Err(MqttError::TooLong("an incoming packet"));
        }
        if data.len() < header + length {
            return Ok(None);
        }
        let first = data[0];
        let body_start = self.start + header;
        self.start = body_start + length;
        Ok(Some((first, &self.buf[body_start..body_start + length])))
    }
}

/// Reads until one whole packet is in `framer`, and returns it (copied).
async fn read_one(
    reader: &mut OwnedReadHalf,
    framer: &mut Framer,
) -> Result<(u8, Vec<u8>, Instant), MqttError> {
    loop {
        if let Some((first, body)) = framer.next_packet()? {
            return Ok((first, body.to_vec(), Instant::now()));
        }
        let n = reader.read(framer.spare()).await?;
        if n == 0 {
            return Err(MqttError::Closed);
        }
        framer.filled(n);
    }
}

/// A running subscription; its read loop runs in its own task until [`Subscriber::stop`].
pub struct Subscriber {
    stop: CancellationToken,
    task: JoinHandle<Result<u64, MqttError>>,
}

impl Subscriber {
    /// Connects (clean session), subscribes to `filter` at `qos` (0 or 1), waits for SUBACK and
    /// starts the read loop. `on_publish` gets every PUBLISH with the instant its bytes were
    /// read (one instant per `read` call).
    pub async fn start<F>(
        broker: SocketAddr,
        client_id: &str,
        filter: &str,
        qos: u8,
        timeout: Duration,
        mut on_publish: F,
    ) -> Result<Subscriber, MqttError>
    where
        F: FnMut(&Publish<'_>, Instant) + Send + 'static,
    {
        let keep_alive = Duration::from_secs(60);
        let connect = connect_packet(client_id, keep_alive.as_secs() as u16, None)?;
        let subscribe = subscribe_packet(SUBSCRIBE_ID, filter, qos)?;
        let handshake = async {
            let stream = TcpStream::connect(broker)
                .await
                .map_err(|source| MqttError::Connect {
                    addr: broker,
                    source,
                })?;
            stream.set_nodelay(true)?;
            let (mut reader, mut writer) = stream.into_split();
            let mut framer = Framer::new(READ_BUFFER);
            writer.write_all(&connect).await?;
            match read_one(&mut reader, &mut framer).await? {
                (0x20, body, _) if body.len() >= 2 => {
                    if body[1] != 0 {
                        return Err(MqttError::Refused(body[1]));
                    }
                }
                (other, _, _) => return Err(MqttError::NotConnAck(other)),
            }
            writer.write_all(&subscribe).await?;
            let mut acks = Vec::new();
            loop {
                let (first, body, at) = read_one(&mut reader, &mut framer).await?;
                match first >> 4 {
                    9 => {
                        if body.get(2).is_none_or(|&code| code & 0x80 != 0) {
                            return Err(MqttError::SubscribeRefused(filter.to_owned()));
                        }
                        break;
                    }
                    3 => {
                        let publish = parse_publish(first, &body)?;
                        queue_ack(&publish, &mut acks);
                        on_publish(&publish, at);
                    }
                    _ => {}
                }
            }
            if !acks.is_empty() {
                writer.write_all(&acks).await?;
            }
            Ok((reader, writer, framer))
        };
        let (reader, writer, framer) = tokio::time::timeout(timeout, handshake)
            .await
            .map_err(|_| MqttError::Timeout(timeout, "CONNACK and SUBACK"))??;
        let stop = CancellationToken::new();
        let task = tokio::spawn(read_loop(
            reader,
            writer,
            framer,
            on_publish,
            stop.clone(),
            keep_alive / 2,
        ));
        Ok(Subscriber { stop, task })
    }

    /// True once the read loop ended (the broker closed the connection, or it broke).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Sends DISCONNECT and ends the read loop; the PUBLISH packets it received, or why it
    /// ended before.
    pub async fn stop(self) -> Result<u64, MqttError> {
        self.stop.cancel();
        match self.task.await {
            Ok(result) => result,
            Err(error) => Err(MqttError::Io(std::io::Error::other(format!(
                "the subscriber task failed: {error}"
            )))),
        }
    }
}

fn queue_ack(publish: &Publish<'_>, acks: &mut Vec<u8>) {
    if let Some(id) = publish.packet_id {
        acks.extend_from_slice(&[0x40, 0x02]);
        acks.extend_from_slice(&id.to_be_bytes());
    }
}

async fn read_loop<F>(
    mut reader: OwnedReadHalf,
    mut writer: OwnedWriteHalf,
    mut framer: Framer,
    mut on_publish: F,
    stop: CancellationToken,
    ping_every: Duration,
) -> Result<u64, MqttError>
where
    F: FnMut(&Publish<'_>, Instant) + Send + 'static,
{
    let mut received = 0u64;
    let mut acks = Vec::new();
    let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
    // Packets that arrived with SUBACK.
    let mut at = Instant::now();
    loop {
        while let Some((first, body)) = framer.next_packet()? {
            if first >> 4 == 3 {
                let publish = parse_publish(first, body)?;
                queue_ack(&publish, &mut acks);
                on_publish(&publish, at);
                received += 1;
            }
        }
        if !acks.is_empty() {
            writer.write_all(&acks).await?;
            acks.clear();
        }
        tokio::select! {
            () = stop.cancelled() => {
                if writer.write_all(&DISCONNECT).await.is_ok() {
                    let _ = writer.shutdown().await;
                }
                return Ok(received);
            }
            _ = ping.tick() => writer.write_all(&PINGREQ).await?,
            read = reader.read(framer.spare()) => {
                let n = read?;
                if n == 0 {
                    return Err(MqttError::Closed);
                }
                at = Instant::now();
                framer.filled(n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::mqtt::{publish_packet, publish_packet_qos0};

    #[test]
    fn subscribe_packets_have_the_3_1_1_layout() {
        let packet = subscribe_packet(1, "a/+/b", 0).expect("packet");
        assert_eq!(packet, b"\x82\x0a\x00\x01\x00\x05a/+/b\x00".to_vec());
        let packet = subscribe_packet(9, "t", 2).expect("packet");
        assert_eq!(*packet.last().expect("qos"), 1, "QoS 2 is asked as 1");
    }

    #[test]
    fn publishes_are_parsed_at_qos_0_and_1() {
        let qos0 =
            publish_packet_qos0("heating/v1/x/d/telemetry", b"{\"v\":1}", false).expect("packet");
        let mut framer = Framer::new(64);
        framer.push(&qos0);
        let (first, body) = framer.next_packet().expect("valid").expect("complete");
        let publish = parse_publish(first, body).expect("publish");
        assert_eq!(publish.topic, b"heating/v1/x/d/telemetry");
        assert_eq!(publish.payload, b"{\"v\":1}");
        assert_eq!(
            (publish.qos, publish.packet_id, publish.retain),
            (0, None, false)
        );

        let qos1 = publish_packet("a/b", b"xyz", 513, true).expect("packet");
        framer.push(&qos1);
        let (first, body) = framer.next_packet().expect("valid").expect("complete");
        let publish = parse_publish(first, body).expect("publish");
        assert_eq!(
            (publish.topic, publish.payload, publish.qos),
            (&b"a/b"[..], &b"xyz"[..], 1)
        );
        assert_eq!((publish.packet_id, publish.retain), (Some(513), true));
        assert!(framer.next_packet().expect("valid").is_none());
        assert_eq!(framer.pending(), 0);
    }

    #[test]
    fn packets_split_across_reads_and_growing_the_buffer_come_out_whole() {
        let payload = vec![b'x'; 300];
        let mut stream = Vec::new();
        for i in 0..50u16 {
            let topic = format!("t/{i}");
            stream.extend(publish_packet_qos0(&topic, &payload, false).expect("packet"));
        }
        stream.extend_from_slice(&[0xD0, 0x00]); // PINGRESP
        let mut framer = Framer::new(64);
        let mut seen = Vec::new();
        let mut other = Vec::new();
        for chunk in stream.chunks(7) {
            framer.push(chunk);
            while let Some((first, body)) = framer.next_packet().expect("valid") {
                if first >> 4 == 3 {
                    let publish = parse_publish(first, body).expect("publish");
                    assert_eq!(publish.payload.len(), 300);
                    seen.push(String::from_utf8(publish.topic.to_vec()).expect("utf-8"));
                } else {
                    other.push(first);
                }
            }
        }
        assert_eq!(seen.len(), 50);
        assert_eq!(seen[49], "t/49");
        assert_eq!(other, [0xD0]);
    }

    #[test]
    fn malformed_packets_are_refused() {
        assert!(parse_publish(0x30, &[0x00]).is_err(), "no topic length");
        assert!(
            parse_publish(0x30, &[0x00, 0x09, b'a']).is_err(),
            "topic too long"
        );
        assert!(
            parse_publish(0x32, &[0x00, 0x01, b'a']).is_err(),
            "no packet id"
        );
        assert!(
            parse_publish(0x34, &[0x00, 0x01, b'a', 0, 1]).is_err(),
            "QoS 2"
        );
        assert!(parse_publish(0x20, &[0x00, 0x00]).is_err(), "not a PUBLISH");
        let mut framer = Framer::new(64);
        framer.push(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]);
        assert!(framer.next_packet().is_err(), "five-byte remaining length");
    }
}
