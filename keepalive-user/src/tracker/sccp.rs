//! SCCP: KeepAlive from the phone opens a keepalive; a KeepAliveAck from the server answers the
//! most recent one still open (the phone has one outstanding at a time, so a KeepAlive left
//! unanswered before it stays unanswered).
//! RegisterAck marks the server as the one the phone is registered to.

use keepalive_common::wire::{sccp_msg, Event};

use super::{
    pair::{Answer, Keepalive, Pair},
    tcp::Stream,
};

/// A new segment on an SCCP connection.
pub fn segment(pair: &mut Pair, stream: &mut Stream, ev: &Event, from_phone: bool) {
    for &id in ev.sccp_ids() {
        match (from_phone, id) {
            (true, sccp_msg::KEEPALIVE) => {
                let ka = Keepalive {
                    id: 0,
                    first_ns: ev.ts_ns,
                    last_ns: ev.ts_ns,
                    copies: 1,
                    seq: ev.seq,
                    end: ev.seq.wrapping_add(u32::from(ev.payload_len)),
                    phone_port: ev.src_port,
                    answer: Answer::None,
                    tcp_ack_ns: None,
                    txn: 0,
                    due_ns: None,
                    expires: None,
                    dst_mac: ev.dst_mac,
                };
                let id = pair.push_keepalive(ka);
                stream.tag(ev.seq, id);
            }
            (true, sccp_msg::REGISTER) => {
                pair.sccp_registered = false;
                pair.sccp_rejected = false;
            }
            (false, sccp_msg::KEEPALIVE_ACK) => {
                let port = ev.dst_port;
                if let Some(i) = pair
                    .history
                    .iter()
                    .rposition(|k| k.phone_port == port && k.answer == Answer::None)
                {
                    pair.answer(i, ev.ts_ns);
                }
            }
            (false, sccp_msg::REGISTER_ACK) => pair.sccp_registered = true,
            (false, sccp_msg::REGISTER_REJECT) => pair.sccp_rejected = true,
            _ => {}
        }
    }
}
