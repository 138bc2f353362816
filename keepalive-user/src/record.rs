//! Event-ring records: the fixed [`Event`] and, for SIP segments, the payload bytes copied after
//! it. Decoding checks sizes, so a short or corrupt record is an error, never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use keepalive_common::wire::{sccp_msg, App, Event, EventKind, SipKind, TlsContent};
use serde::Serialize;

/// One event with the payload that travelled with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The event.
    pub event: Event,
    /// The start of the TCP payload: `event.copy_len` bytes live (SIP, and SCCP segments with a
    /// Register); offline, the whole payload the capture holds.
    pub payload: Vec<u8>,
}

/// A record whose size does not match the wire contract.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("event-ring record of {len} bytes is shorter than its event ({need} bytes)")]
pub struct RecordError {
    len: usize,
    need: usize,
}

impl Record {
    /// Decodes one event-ring record (an event slot, or a payload slot).
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let need = std::mem::size_of::<Event>();
        if bytes.len() < need {
            return Err(RecordError { len: bytes.len(), need });
        }
        // SAFETY: Event is #[repr(C)] plain old data (aya::Pod) and `bytes` holds at least
        // size_of::<Event>() bytes; read_unaligned makes no alignment assumption.
        let event: Event = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let copy = usize::from(event.copy_len);
        if bytes.len() < need + copy {
            return Err(RecordError { len: bytes.len(), need: need + copy });
        }
        Ok(Self { event, payload: bytes[need..need + copy].to_vec() })
    }
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn mac(m: [u8; 6]) -> String {
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// An event address as an `IpAddr` (IPv4-mapped addresses of IPv4 events become IPv4).
pub fn addr(a: [u8; 16], ip_version: u8) -> IpAddr {
    let v6 = Ipv6Addr::from(a);
    match (ip_version, v6.to_ipv4_mapped()) {
        (4, Some(v4)) => IpAddr::V4(v4),
        (4, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(v6),
    }
}

/// Wireshark's name of an SCCP message id, for the ids the tracker follows.
pub fn sccp_name(id: u16) -> &'static str {
    match id {
        sccp_msg::KEEPALIVE => "KeepAlive",
        sccp_msg::REGISTER => "Register",
        sccp_msg::UNREGISTER => "Unregister",
        sccp_msg::REGISTER_ACK => "RegisterAck",
        sccp_msg::REGISTER_REJECT => "RegisterReject",
        sccp_msg::KEEPALIVE_ACK => "KeepAliveAck",
        sccp_msg::UNREGISTER_ACK => "UnregisterAck",
        _ => "other",
    }
}

/// Protocol name as the JSON contract spells it.
pub fn app_name(app: App) -> &'static str {
    match app {
        App::Sccp => "sccp",
        App::SccpTls => "sccp-tls",
        App::Sip => "sip",
        App::SipTls => "sip-tls",
        App::None => "none",
    }
}

/// The JSON line `keepalive run` prints for an event.
#[derive(Debug, Serialize)]
pub struct EventJson {
    /// "tcp" or "arp".
    pub kind: &'static str,
    /// Event time in seconds (monotonic live; epoch offline).
    pub ts: f64,
    /// Interface index.
    pub ifindex: u32,
    /// VLAN ids, outer first.
    pub vlan: Vec<u16>,
    /// Ethernet source.
    pub src_mac: String,
    /// Ethernet destination.
    pub dst_mac: String,
    /// Source address (ARP: sender protocol address).
    pub src: IpAddr,
    /// Destination address (ARP: target protocol address).
    pub dst: IpAddr,
    /// TCP fields, for TCP events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpJson>,
    /// ARP fields, for ARP events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp: Option<ArpJson>,
}

/// TCP part of [`EventJson`].
#[derive(Debug, Serialize)]
pub struct TcpJson {
    /// "sccp", "sip", ...
    pub protocol: &'static str,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgement number.
    pub ack: u32,
    /// Flags, e.g. "PA".
    pub flags: String,
    /// Payload length.
    pub len: u16,
    /// SCCP messages in the segment, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sccp: Vec<&'static str>,
    /// SIP start line kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sip: Option<&'static str>,
    /// SIP status code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// TLS records that start in the segment: content type and length.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRecordJson>,
}

/// One TLS record header of [`TcpJson`].
#[derive(Debug, Serialize)]
pub struct TlsRecordJson {
    /// "application-data", "handshake", "alert" or "change-cipher-spec".
    #[serde(rename = "type")]
    pub content: &'static str,
    /// The record's length field.
    pub len: u16,
}

/// The JSON spelling of a TLS content type.
pub fn tls_content_name(c: TlsContent) -> &'static str {
    match c {
        TlsContent::ApplicationData => "application-data",
        TlsContent::Handshake => "handshake",
        TlsContent::Alert => "alert",
        TlsContent::ChangeCipherSpec => "change-cipher-spec",
    }
}

/// ARP part of [`EventJson`].
#[derive(Debug, Serialize)]
pub struct ArpJson {
    /// "request" or "reply".
    pub op: &'static str,
    /// Sender hardware address.
    pub sha: String,
    /// Target hardware address.
    pub tha: String,
}

fn flags(f: u8) -> String {
    [(0x02, 'S'), (0x10, 'A'), (0x08, 'P'), (0x01, 'F'), (0x04, 'R')]
        .iter()
        .filter(|(bit, _)| f & bit != 0)
        .map(|(_, c)| *c)
        .collect()
}

impl EventJson {
    /// The JSON view of `ev`.
    pub fn new(ev: &Event) -> Self {
        let is_tcp = ev.kind == EventKind::Tcp as u8;
        let sip = match ev.sip_kind {
            k if k == SipKind::Register as u8 => Some("register"),
            k if k == SipKind::OtherRequest as u8 => Some("request"),
            k if k == SipKind::Response as u8 => Some("response"),
            k if k == SipKind::Continuation as u8 => Some("continuation"),
            _ => None,
        };
        Self {
            kind: if is_tcp { "tcp" } else { "arp" },
            ts: ev.ts_ns as f64 / 1e9,
            ifindex: ev.ifindex,
            vlan: ev.vlans[..usize::from(ev.vlan_count).min(2)].to_vec(),
            src_mac: mac(ev.src_mac),
            dst_mac: mac(ev.dst_mac),
            src: addr(ev.src_addr, ev.ip_version),
            dst: addr(ev.dst_addr, ev.ip_version),
            tcp: is_tcp.then(|| TcpJson {
                protocol: app_name(App::from_u8(ev.app)),
                sport: ev.src_port,
                dport: ev.dst_port,
                seq: ev.seq,
                ack: ev.ack,
                flags: flags(ev.tcp_flags),
                len: ev.payload_len,
                sccp: if ev.app == App::Sccp as u8 {
                    ev.sccp_ids().iter().map(|&id| sccp_name(id)).collect()
                } else {
                    Vec::new()
                },
                sip,
                status: (ev.sip_kind == SipKind::Response as u8).then_some(ev.sip_status),
                tls: ev
                    .tls_records()
                    .filter(|_| matches!(App::from_u8(ev.app), App::SccpTls | App::SipTls))
                    .map(|(c, len)| TlsRecordJson { content: tls_content_name(c), len })
                    .collect(),
            }),
            arp: (!is_tcp).then(|| ArpJson {
                op: if ev.arp_op == 2 { "reply" } else { "request" },
                sha: mac(ev.arp_sha),
                tha: mac(ev.arp_tha),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_records_are_errors() {
        assert!(Record::decode(&[0u8; 10]).is_err());
        let mut ev = Event::ZERO;
        ev.copy_len = 4;
        // SAFETY: Event is plain old data.
        let bytes: Vec<u8> = unsafe {
            std::slice::from_raw_parts(
                (&ev as *const Event).cast::<u8>(),
                std::mem::size_of::<Event>(),
            )
        }
        .to_vec();
        assert!(Record::decode(&bytes).is_err());
        let mut with = bytes.clone();
        with.extend_from_slice(b"SIP/");
        assert_eq!(Record::decode(&with).unwrap().payload, b"SIP/");
    }

    #[test]
    fn v4_mapped_addresses_print_as_v4() {
        let a = keepalive_common::classify::v4_mapped([10, 1, 2, 3]);
        assert_eq!(addr(a, 4).to_string(), "10.1.2.3");
        assert_eq!(flags(0x18), "AP");
    }
}
