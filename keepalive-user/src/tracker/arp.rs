//! The ARP table: per IPv4 address, the MACs that answered for it and when, and the two
//! anomalies that move a phone's keepalives to the wrong box:
//! * several MACs answering for one address within a short window (a firewall doing proxy ARP
//!   next to the real owner: the requester takes whichever reply came first, RFC 826 has no
//!   notion of a better one);
//! * the answering MAC changing for good.
//!
//! Replies and gratuitous announcements (sender address = target address) count as answers;
//! probes (sender address 0.0.0.0, RFC 5227) do not.

use std::net::Ipv4Addr;

/// MACs remembered per address.
const MACS_KEPT: usize = 8;
/// Anomalies remembered in all. When full, the oldest `mac-change` (an info) goes first, so a
/// flood of spoofed senders reusing addresses cannot push a proxy-ARP warning out.
pub const ANOMALIES_KEPT: usize = 4096;

/// The kind of an ARP anomaly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnomalyKind {
    /// Two or more MACs answered within the window.
    MultipleResponders,
    /// The answering MAC changed.
    MacChange,
}

impl AnomalyKind {
    /// The JSON spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MultipleResponders => "multiple-responders",
            Self::MacChange => "mac-change",
        }
    }
}

/// One anomaly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    /// The address answered for.
    pub ip: Ipv4Addr,
    /// The MACs, in the order their answers arrived (first = the one a requester used).
    pub macs: Vec<[u8; 6]>,
    /// What happened.
    pub kind: AnomalyKind,
    /// Time of the first answer involved.
    pub time_ns: u64,
    /// Time of the last answer involved.
    pub last_ns: u64,
    /// Who asked (the target of the replies), when known.
    pub requester: Option<(Ipv4Addr, [u8; 6])>,
}

#[derive(Clone, Copy, Debug)]
struct Seen {
    mac: [u8; 6],
    last_ns: u64,
    answers: u64,
}

/// Per-address ARP knowledge.
#[derive(Debug, Default)]
pub struct ArpTable {
    /// In an order a cursor can walk a slice at a time ([`ArpTable::expire_some`]).
    by_ip: super::FastIndexMap<Ipv4Addr, Vec<Seen>>,
    /// Where the expiry continues.
    cursor: usize,
    /// Anomalies found, oldest first.
    pub anomalies: Vec<Anomaly>,
    /// ARP frames seen.
    pub frames: u64,
    /// Anomalies forgotten because [`ANOMALIES_KEPT`] were held.
    pub anomalies_dropped: u64,
}

impl ArpTable {
    /// Feeds one ARP frame. `window_ns` is how close two answers must be to count as
    /// simultaneous.
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        ts_ns: u64,
        op: u16,
        spa: Ipv4Addr,
        sha: [u8; 6],
        tpa: Ipv4Addr,
        tha: [u8; 6],
        window_ns: u64,
    ) {
        self.frames += 1;
        let answer = op == 2 || (op == 1 && spa == tpa);
        if !answer || spa.is_unspecified() {
            return;
        }
        let requester = (op == 2).then_some((tpa, tha));
        let seen = self.by_ip.entry(spa).or_default();
        let latest = seen.iter().max_by_key(|s| s.last_ns).copied();
        // Other MACs that answered for this address within the window.
        let rivals: Vec<Seen> = seen
            .iter()
            .filter(|s| s.mac != sha && ts_ns.saturating_sub(s.last_ns) <= window_ns)
            .copied()
            .collect();
        match seen.iter_mut().find(|s| s.mac == sha) {
            Some(s) => {
                s.last_ns = ts_ns;
                s.answers += 1;
            }
            None => {
                if seen.len() == MACS_KEPT {
                    seen.sort_by_key(|s| s.last_ns);
                    seen.remove(0);
                }
                seen.push(Seen { mac: sha, last_ns: ts_ns, answers: 1 });
            }
        }
        if !rivals.is_empty() {
            self.multiple(spa, sha, ts_ns, &rivals, requester, window_ns);
        } else if let Some(prev) = latest.filter(|p| p.mac != sha) {
            self.push(Anomaly {
                ip: spa,
                macs: vec![prev.mac, sha],
                kind: AnomalyKind::MacChange,
                time_ns: ts_ns,
                last_ns: ts_ns,
                requester,
            });
        }
    }

    fn multiple(
        &mut self,
        ip: Ipv4Addr,
        mac: [u8; 6],
        ts_ns: u64,
        rivals: &[Seen],
        requester: Option<(Ipv4Addr, [u8; 6])>,
        window_ns: u64,
    ) {
        // Extend the ongoing anomaly for this address, or open a new one.
        if let Some(a) = self.anomalies.iter_mut().rev().find(|a| {
            a.ip == ip
                && a.kind == AnomalyKind::MultipleResponders
                && ts_ns.saturating_sub(a.last_ns) <= window_ns
        }) {
            if !a.macs.contains(&mac) {
                a.macs.push(mac);
            }
            a.last_ns = ts_ns;
            return;
        }
        let mut first: Vec<Seen> = rivals.to_vec();
        first.sort_by_key(|s| s.last_ns);
        let mut macs: Vec<[u8; 6]> = first.iter().map(|s| s.mac).collect();
        macs.push(mac);
        let time_ns = first.first().map_or(ts_ns, |s| s.last_ns);
        self.push(Anomaly {
            ip,
            macs,
            kind: AnomalyKind::MultipleResponders,
            time_ns,
            last_ns: ts_ns,
            requester,
        });
    }

    fn push(&mut self, a: Anomaly) {
        if self.anomalies.len() >= ANOMALIES_KEPT {
            // The oldest MAC change if there is one (an info: an address reused, or spoofed),
            // else the oldest of all.
            let oldest_change =
                self.anomalies.iter().position(|a| a.kind == AnomalyKind::MacChange);
            self.anomalies.remove(oldest_change.unwrap_or(0));
            self.anomalies_dropped += 1;
        }
        self.anomalies.push(a);
    }

    /// The MACs that have answered for `ip`, most recent last.
    pub fn macs(&self, ip: Ipv4Addr) -> Vec<[u8; 6]> {
        let mut seen = self.by_ip.get(&ip).cloned().unwrap_or_default();
        seen.sort_by_key(|s| s.last_ns);
        seen.iter().map(|s| s.mac).collect()
    }

    /// Forgets up to `n` addresses, those answered longest ago first, keeping the addresses
    /// `keep` accepts while others are left; returns how many were forgotten.
    pub fn evict_oldest(&mut self, n: usize, keep: impl Fn(Ipv4Addr) -> bool) -> usize {
        let last = |seen: &[Seen]| seen.iter().map(|s| s.last_ns).max().unwrap_or(0);
        let mut order: Vec<(bool, u64, Ipv4Addr)> =
            self.by_ip.iter().map(|(ip, seen)| (keep(*ip), last(seen), *ip)).collect();
        let n = n.min(order.len());
        if n == 0 {
            return 0;
        }
        // Unkept addresses first, then the oldest.
        order.select_nth_unstable(n - 1);
        for (_, _, ip) in &order[..n] {
            self.by_ip.swap_remove(ip);
        }
        n
    }

    /// Forgets the addresses last answered for more than `idle_ns` before `now_ns`, except those
    /// `keep` accepts (a tracked phone's or server's: hosts refresh ARP rarely, and the answer
    /// a phone's keepalives follow matters for as long as the phone is tracked); `keep` is asked
    /// only about idle addresses. Looks at `budget` addresses at most, from where the last call
    /// stopped: an address removed is replaced in its place by the last one (`swap_remove`),
    /// which is then judged in its turn. Returns how many were forgotten.
    pub fn expire_some(
        &mut self,
        now_ns: u64,
        idle_ns: u64,
        budget: usize,
        keep: impl Fn(Ipv4Addr) -> bool,
    ) -> usize {
        let whole = budget >= self.by_ip.len();
        let budget = budget.min(self.by_ip.len());
        // A whole pass starts at the beginning, so that it judges every address once.
        let (mut i, mut forgotten) = (if whole { 0 } else { self.cursor }, 0);
        for _ in 0..budget {
            if i >= self.by_ip.len() {
                i = 0;
            }
            let Some((ip, seen)) = self.by_ip.get_index(i) else {
                break;
            };
            let last = seen.iter().map(|s| s.last_ns).max().unwrap_or(0);
            if now_ns.saturating_sub(last) <= idle_ns || keep(*ip) {
                i += 1;
            } else {
                self.by_ip.swap_remove_index(i);
                forgotten += 1;
            }
        }
        self.cursor = i;
        forgotten
    }

    /// Addresses known.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// No address known.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spoofed_senders_reusing_addresses_never_push_a_multiple_responders_out() {
        let mut t = ArpTable::default();
        t.observe(1000 * MS, 2, CUCM, ASA, PHONE, P, 1000 * MS);
        t.observe(1000 * MS + 17_000, 2, CUCM, VM, PHONE, P, 1000 * MS);
        // Each spoofed address answered by a new MAC an hour apart: one mac-change each, many
        // more than the table keeps.
        let spoofed = |k: u32| Ipv4Addr::from(0x0a40_0000 + k % 1_000);
        for k in 0..(ANOMALIES_KEPT as u32 + 2_000) {
            let mac = [2, 1, (k >> 16) as u8, (k >> 8) as u8, k as u8, 0];
            let ts = 2_000 * MS + u64::from(k) * 3_600_000 * MS;
            t.observe(ts, 2, spoofed(k), mac, CUCM, ASA, 1000 * MS);
        }
        assert_eq!(t.anomalies.len(), ANOMALIES_KEPT);
        assert_eq!(t.anomalies_dropped, 1_001);
        assert_eq!(t.anomalies[0].kind, AnomalyKind::MultipleResponders);
        assert!(t.anomalies[1..].iter().all(|a| a.kind == AnomalyKind::MacChange));
    }

    const CUCM: Ipv4Addr = Ipv4Addr::new(10, 10, 10, 202);
    const PHONE: Ipv4Addr = Ipv4Addr::new(10, 10, 10, 31);
    const ASA: [u8; 6] = [0xf4, 0x0f, 0x1b, 0x1e, 0x26, 0xa9];
    const VM: [u8; 6] = [0x00, 0x0c, 0x29, 0x90, 0x10, 0xcf];
    const P: [u8; 6] = [2, 0, 0, 0, 0, 31];
    const MS: u64 = 1_000_000;

    #[test]
    fn two_answers_17us_apart_are_multiple_responders() {
        let mut t = ArpTable::default();
        t.observe(1000 * MS, 2, CUCM, ASA, PHONE, P, 1000 * MS);
        t.observe(1000 * MS + 17_000, 2, CUCM, VM, PHONE, P, 1000 * MS);
        assert_eq!(t.anomalies.len(), 1);
        let a = &t.anomalies[0];
        assert_eq!((a.kind, a.macs.clone()), (AnomalyKind::MultipleResponders, vec![ASA, VM]));
        assert_eq!(a.requester, Some((PHONE, P)));
        // The same pair answering again a moment later extends it, never duplicates it.
        t.observe(1000 * MS + 40_000, 2, CUCM, ASA, PHONE, P, 1000 * MS);
        assert_eq!(t.anomalies.len(), 1);
    }

    #[test]
    fn a_lasting_change_is_a_mac_change_and_probes_are_ignored() {
        let mut t = ArpTable::default();
        t.observe(0, 2, CUCM, VM, PHONE, P, 1000 * MS);
        t.observe(60_000 * MS, 2, CUCM, VM, PHONE, P, 1000 * MS);
        assert!(t.anomalies.is_empty());
        t.observe(120_000 * MS, 2, CUCM, ASA, PHONE, P, 1000 * MS);
        assert_eq!(t.anomalies[0].kind, AnomalyKind::MacChange);
        t.observe(130_000 * MS, 1, Ipv4Addr::UNSPECIFIED, P, CUCM, [0; 6], 1000 * MS);
        assert_eq!(t.anomalies.len(), 1);
        assert_eq!(t.macs(CUCM), vec![VM, ASA]);
    }
}
