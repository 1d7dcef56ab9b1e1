//! Injectable clocks for SLA checks and order actions: the wall clock in live operation, the
//! rule watermark when readings carry simulated time, and a manual clock that tests move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// "Now" in Unix milliseconds, for the order component.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The machine's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct WallClock;

impl Clock for WallClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0)
    }
}

/// A clock somebody else sets: the ingest watermark in event-time mode, or a test.
#[derive(Debug, Default, Clone)]
pub struct SharedClock(Arc<AtomicI64>);

impl SharedClock {
    pub fn new(start_ms: i64) -> Self {
        Self(Arc::new(AtomicI64::new(start_ms)))
    }

    /// Sets the time; it never moves backwards.
    pub fn advance_to(&self, ms: i64) {
        self.0.fetch_max(ms, Ordering::Relaxed);
    }

    /// Moves the time forward by `ms`.
    pub fn advance_by(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for SharedClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_clock_never_goes_back() {
        let clock = SharedClock::new(1_000);
        clock.advance_to(500);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance_by(250);
        assert_eq!(clock.now_ms(), 1_250);
        assert!(WallClock.now_ms() > 1_577_836_800_000);
    }
}
