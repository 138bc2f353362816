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
pub fn segment(pair: &mut Pair, stream: &mut Stream, ev: &Event, payload: &[u8], from_phone: bool) {
    for &id in ev.sccp_ids() {
        match (from_phone, id) {
            (true, sccp_msg::KEEPALIVE) => {
                let ka = Keepalive::new(
                    ev.ts_ns,
                    ev.seq,
                    ev.seq.wrapping_add(u32::from(ev.payload_len)),
                    ev.src_port,
                    ev.dst_mac,
                );
                let id = pair.push_keepalive(ka);
                stream.tag(ev.seq, id);
            }
            (true, sccp_msg::REGISTER) => {
                pair.sccp_register_seen = true;
                pair.sccp_registered = false;
                pair.sccp_rejected = false;
                if let Some(name) = register_device(payload) {
                    super::pair::set_text(&mut pair.device, &name);
                }
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

/// The device name of the first Register PDU in `payload`: the body's first field,
/// `char DeviceName[16]`, NUL-terminated (Wireshark `packet-skinny.c`, RegisterMessage).
pub fn register_device(payload: &[u8]) -> Option<String> {
    let mut off = 0;
    while let Some(h) = payload.get(off..off + 12) {
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let id = sccp_msg::from_wire(u32::from_le_bytes([h[8], h[9], h[10], h[11]]));
        if id == sccp_msg::REGISTER {
            let body = payload.get(off + 12..off + 12 + 16)?;
            let name: Vec<u8> = body.iter().copied().take_while(|b| *b != 0).collect();
            let ok = !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic());
            return ok.then(|| String::from_utf8_lossy(&name).into_owned());
        }
        if len < 4 {
            return None;
        }
        off += 8 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_name_from_register() {
        let reg = keepalive_lab::fixtures::sccp_register("SEP0024142DDF24");
        let two = [keepalive_lab::fixtures::sccp_keepalive(), reg.clone()].concat();
        assert_eq!(register_device(&reg).as_deref(), Some("SEP0024142DDF24"));
        assert_eq!(register_device(&two).as_deref(), Some("SEP0024142DDF24"));
        assert_eq!(register_device(&reg[..20]), None);
        assert_eq!(register_device(&keepalive_lab::fixtures::sccp_keepalive()), None);
    }
}
