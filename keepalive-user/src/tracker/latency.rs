//! The distributions a fleet alerts and dashboards on, accumulated as the tracker sees them
//! (so they are monotonic, as a Prometheus histogram must be, and survive pairs expiring):
//! the server's answer latency per keepalive (KeepAlive → KeepAliveAck, REGISTER → 2xx), and
//! the delay of each TCP retransmission after the first copy, by protocol and by the pair's role
//! when it was seen.

use std::collections::BTreeMap;

/// Upper bounds (seconds) of the ack-latency buckets: a CUCM answers in milliseconds; seconds
/// mean the server, or the path, is in trouble.
pub const ACK_BOUNDS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// Upper bounds (seconds) of the retransmission-delay buckets: Linux's minimum RTO (200 ms)
/// doubling, so each step of a backoff lands in a bucket of its own.
pub const RETRANSMISSION_BOUNDS: [f64; 11] =
    [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2];

/// One histogram: per-bucket counts (the last is above every bound), their sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket, `bounds.len() + 1` of them (not cumulative).
    pub buckets: Vec<u64>,
    /// Sum of the observations, seconds.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], v: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; bounds.len() + 1];
        }
        let i = bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len());
        self.buckets[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

/// The histograms, keyed by (protocol, role) as the reports spell them.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    /// Answer latency of keepalives.
    pub ack: BTreeMap<(&'static str, &'static str), Histogram>,
    /// Delay of retransmissions after the first copy.
    pub retransmission: BTreeMap<(&'static str, &'static str), Histogram>,
}

impl Latencies {
    /// A keepalive answered `secs` after it was sent.
    pub fn ack(&mut self, protocol: &'static str, role: &'static str, secs: f64) {
        self.ack.entry((protocol, role)).or_default().observe(&ACK_BOUNDS, secs);
    }

    /// A retransmission `secs` after the first copy.
    pub fn retransmission(&mut self, protocol: &'static str, role: &'static str, secs: f64) {
        self.retransmission
            .entry((protocol, role))
            .or_default()
            .observe(&RETRANSMISSION_BOUNDS, secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_bucket_of_their_upper_bound() {
        let mut l = Latencies::default();
        for v in [0.0005, 0.001, 0.003, 7.0] {
            l.ack("sccp", "primary", v);
        }
        let h = &l.ack[&("sccp", "primary")];
        assert_eq!(h.count, 4);
        assert_eq!(h.buckets.len(), ACK_BOUNDS.len() + 1);
        assert_eq!((h.buckets[0], h.buckets[2], h.buckets[ACK_BOUNDS.len()]), (2, 1, 1));
        assert!((h.sum - 7.0045).abs() < 1e-9);
        // A backoff: 0.2, 0.4, 0.8, 1.6 s, one per bucket.
        for v in [0.2, 0.4, 0.8, 1.6] {
            l.retransmission("sip", "primary", v);
        }
        let r = &l.retransmission[&("sip", "primary")];
        assert_eq!(&r.buckets[2..6], &[1, 1, 1, 1]);
    }
}
