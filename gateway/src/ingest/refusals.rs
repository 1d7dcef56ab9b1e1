//! Log lines for refused messages, at most one per reason per interval, carrying how many like
//! it were refused since the last line: a box (or an attacker) repeating a bad message cannot
//! flood the log, and the count still shows in it (every refusal is also counted in
//! `gateway_messages_rejected_total` and sampled at `/api/v1/rejects`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often one refusal reason may be logged.
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// When each reason was last logged and how many refusals were not logged since.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    by_reason: HashMap<&'static str, (Instant, u64)>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new(REFUSAL_LOG_INTERVAL)
    }
}

impl RefusalLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            by_reason: HashMap::new(),
        }
    }

    /// `Some(n)` when a refusal for `reason` at `now` is to be logged, `n` being the refusals
    /// for it not logged since its last line; `None` when it is only counted.
    pub fn admit(&mut self, reason: &'static str, now: Instant) -> Option<u64> {
        match self.by_reason.get_mut(reason) {
            Some((last, suppressed)) if now.saturating_duration_since(*last) < self.interval => {
                *suppressed = suppressed.saturating_add(1);
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                self.by_reason.insert(reason, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_interval_with_the_count_in_between() {
        let mut log = RefusalLog::new(Duration::from_secs(60));
        let start = Instant::now();
        assert_eq!(log.admit("tenant_mismatch", start), Some(0));
        for second in 1..=10 {
            assert_eq!(
                log.admit("tenant_mismatch", start + Duration::from_secs(second)),
                None
            );
        }
        // Another reason has its own line.
        assert_eq!(log.admit("unregistered_device", start), Some(0));
        assert_eq!(
            log.admit("tenant_mismatch", start + Duration::from_secs(61)),
            Some(10)
        );
        assert_eq!(
            log.admit("tenant_mismatch", start + Duration::from_secs(62)),
            None
        );
    }
}
