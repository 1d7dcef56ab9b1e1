//! PATCH (yanqing-heating, not upstream): admission and memory limits for a broker that faces
//! untrusted clients. rumqttd 0.20.0 performs the TLS handshake inside each listener's accept
//! loop without a timeout (one idle socket blocks every admission), keeps every retained
//! message and every distinct published topic forever, and lets a client create any number of
//! subscription logs. These types carry the limits (set through `RouterConfig` and
//! `ServerSettings`) and count what they refuse, so the embedding program can export the counts.
//! See PATCHES.md at the root of this crate.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the limits refused, shared between the router, the listeners and the embedding program.
#[derive(Debug, Default, Clone)]
pub struct GuardCounters {
    inner: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    handshake_timeouts: AtomicU64,
    handshake_failures: AtomicU64,
    admissions_refused: AtomicU64,
    retained_refused: AtomicU64,
    subscriptions_refused: AtomicU64,
    topic_cache_resets: AtomicU64,
    throttled: AtomicU64,
}

/// A snapshot of [`GuardCounters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct GuardCounts {
    /// TLS handshakes not finished within the connection timeout.
    pub handshake_timeouts: u64,
    /// TLS handshakes that failed (no or a wrong client certificate, not TLS at all).
    pub handshake_failures: u64,
    /// Connections closed at once because their address had too many handshakes pending.
    pub admissions_refused: u64,
    /// Retained publishes not kept (topic outside the retain filters, or the cap reached).
    pub retained_refused: u64,
    /// Subscriptions refused (per-connection or broker-wide filter cap); the client is
    /// disconnected.
    pub subscriptions_refused: u64,
    /// Times the router's topic -> filters cache reached its cap and was emptied.
    pub topic_cache_resets: u64,
    /// Times a connection over its packet rate was made to wait before its next read.
    pub throttled: u64,
}

impl GuardCounters {
    pub fn counts(&self) -> GuardCounts {
        let c = &self.inner;
        GuardCounts {
            handshake_timeouts: c.handshake_timeouts.load(Ordering::Relaxed),
            handshake_failures: c.handshake_failures.load(Ordering::Relaxed),
            admissions_refused: c.admissions_refused.load(Ordering::Relaxed),
            retained_refused: c.retained_refused.load(Ordering::Relaxed),
            subscriptions_refused: c.subscriptions_refused.load(Ordering::Relaxed),
            topic_cache_resets: c.topic_cache_resets.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn handshake_timeout(&self) {
        self.inner.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn handshake_failure(&self) {
        self.inner.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn admission_refused(&self) {
        self.inner.admissions_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn retained_refused(&self) {
        self.inner.retained_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn subscription_refused(&self) {
        self.inner.subscriptions_refused.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn topic_cache_reset(&self) {
        self.inner.topic_cache_resets.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn throttled(&self) {
        self.inner.throttled.fetch_add(1, Ordering::Relaxed);
    }
}

/// At most one log line per second for a kind of refusal, carrying how many were not logged
/// since the previous line: a flood of bad connections is counted in full, not logged in full.
#[derive(Debug, Default)]
pub(crate) struct LogGate {
    /// Second (since the gate was made) of the last line, plus one; 0: none yet.
    last: AtomicU64,
    skipped: AtomicU64,
    started: std::sync::OnceLock<Instant>,
}

impl LogGate {
    /// `Some(skipped)` when a line may be written now, `skipped` being the refusals not logged
    /// since the previous line; `None` when this one is only counted.
    pub(crate) fn admit(&self) -> Option<u64> {
        let second = self.started.get_or_init(Instant::now).elapsed().as_secs() + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != second
            && self
                .last
                .compare_exchange(last, second, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// A connection's packet rate: `per_second` on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PacketRate {
    pub per_second: u32,
    pub burst: u32,
}

/// A token bucket over [`PacketRate`]: how long to wait after taking some packets.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: PacketRate,
    /// Tokens left (negative: owed), as of `at`.
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub(crate) fn new(rate: PacketRate, now: Instant) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// Takes `packets` at `now`; the time to wait before reading again (zero while within the
    /// rate).
    pub(crate) fn take(&mut self, packets: usize, now: Instant) -> Duration {
        let per_second = f64::from(self.rate.per_second.max(1));
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * per_second).min(f64::from(self.rate.burst));
        self.tokens -= packets as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / per_second)
        }
    }
}


/// Handshakes in progress per remote address, capped: one address cannot hold more than
/// `limit` sockets in the handshake phase (each is also bounded in time).
#[derive(Debug)]
pub(crate) struct PendingAdmissions {
    limit: usize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// Releases its address's slot when dropped.
pub(crate) struct Admission {
    admissions: Arc<PendingAdmissions>,
    address: IpAddr,
}

impl PendingAdmissions {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            per_address: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for `address`, or `None` when it already holds `limit`.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Option<Admission> {
        let mut map = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let pending = map.entry(address).or_insert(0);
        if *pending >= self.limit {
            return None;
        }
        *pending += 1;
        Some(Admission {
            admissions: Arc::clone(self),
            address,
        })
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut map = self
            .admissions
            .per_address
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(pending) = map.get_mut(&self.address) {
            *pending = pending.saturating_sub(1);
            if *pending == 0 {
                map.remove(&self.address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limiter_lets_a_burst_through_then_paces() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(
            PacketRate {
                per_second: 10,
                burst: 20,
            },
            start,
        );
        assert_eq!(limiter.take(20, start), Duration::ZERO);
        let wait = limiter.take(5, start);
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-9, "{wait:?}");
        // After a second, 10 tokens came back and 5 were owed.
        assert_eq!(limiter.take(5, start + Duration::from_secs(1)), Duration::ZERO);
    }

    #[test]
    fn the_log_gate_lets_one_line_a_second_through_and_counts_the_rest() {
        let gate = LogGate::default();
        assert_eq!(gate.admit(), Some(0));
        for _ in 0..5 {
            assert_eq!(gate.admit(), None);
        }
    }

    #[test]
    fn an_address_holds_at_most_its_limit_and_slots_come_back() {
        let admissions = PendingAdmissions::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admissions.admit(a).unwrap();
        let _second = admissions.admit(a).unwrap();
        assert!(admissions.admit(a).is_none());
        assert!(admissions.admit(b).is_some(), "other addresses are not affected");
        drop(first);
        assert!(admissions.admit(a).is_some());
    }
}
