//! Which publish each MQTT packet id carries, so that a PUBACK removes the right reading from
//! the disk queue.
//!
//! rumqttc gives a publish its packet id when its event loop writes it, not when the uplink
//! hands it over: the uplink records every publish it hands over, in order
//! ([`Packets::handed`]), and each `Outgoing::Publish(pkid)` of the event loop takes the oldest
//! ([`Packets::written`]). A publish whose packet id is still in flight is held back by rumqttc
//! (`Outgoing::AwaitAck(pkid)`, [`Packets::held`]) and written later under that same id.

use std::collections::{HashMap, VecDeque};

/// What a publish handed to rumqttc was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Sent {
    /// A reading: its record id in the disk queue.
    Record(u64),
    /// Status, health or a command ack (not queued on disk).
    Other,
}

/// The publishes of one MQTT session between hand-over and PUBACK.
#[derive(Debug, Default)]
pub(super) struct Packets {
    /// Publishes handed to rumqttc, in order, waiting for their packet id.
    fifo: VecDeque<Sent>,
    /// Packet ids in flight.
    pkids: HashMap<u16, Sent>,
    /// A publish rumqttc holds back because its packet id is still in use.
    collided: Option<(u16, Sent)>,
}

impl Packets {
    /// Forgets everything: the session ended or a new one began.
    pub(super) fn clear(&mut self) {
        self.fifo.clear();
        self.pkids.clear();
        self.collided = None;
    }

    /// A publish was handed to rumqttc.
    pub(super) fn handed(&mut self, sent: Sent) {
        self.fifo.push_back(sent);
    }

    /// The event loop wrote a publish under `pkid`.
    pub(super) fn written(&mut self, pkid: u16) {
        let sent = match self.collided {
            Some((held, sent)) if held == pkid && !self.pkids.contains_key(&pkid) => {
                self.collided = None;
                sent
            }
            _ => self.fifo.pop_front().unwrap_or(Sent::Other),
        };
        self.pkids.insert(pkid, sent);
    }

    /// The event loop holds the next publish back until `pkid` is acknowledged.
    pub(super) fn held(&mut self, pkid: u16) {
        let sent = self.fifo.pop_front().unwrap_or(Sent::Other);
        self.collided = Some((pkid, sent));
    }

    /// The broker acknowledged `pkid`: what it carried, if it was ours.
    pub(super) fn acked(&mut self, pkid: u16) -> Option<Sent> {
        self.pkids.remove(&pkid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishes_take_their_packet_ids_in_the_order_they_were_handed_over() {
        let mut packets = Packets::default();
        packets.handed(Sent::Record(7));
        packets.handed(Sent::Other);
        packets.handed(Sent::Record(8));
        packets.written(1);
        packets.written(2);
        packets.written(3);
        assert_eq!(packets.acked(3), Some(Sent::Record(8)));
        assert_eq!(packets.acked(1), Some(Sent::Record(7)));
        assert_eq!(packets.acked(2), Some(Sent::Other));
        assert_eq!(packets.acked(1), None, "an id is acknowledged once");
    }

    #[test]
    fn a_publish_held_back_on_a_busy_packet_id_keeps_its_record_when_written() {
        let mut packets = Packets::default();
        packets.handed(Sent::Record(1));
        packets.handed(Sent::Record(2));
        packets.written(5);
        packets.held(5);
        assert_eq!(packets.acked(5), Some(Sent::Record(1)));
        packets.written(5);
        assert_eq!(packets.acked(5), Some(Sent::Record(2)));
    }

    #[test]
    fn a_new_session_forgets_every_publish_of_the_old_one() {
        let mut packets = Packets::default();
        packets.handed(Sent::Record(1));
        packets.written(1);
        packets.handed(Sent::Record(2));
        packets.clear();
        assert_eq!(packets.acked(1), None);
        packets.written(1);
        assert_eq!(packets.acked(1), Some(Sent::Other), "nothing left to take");
    }
}
