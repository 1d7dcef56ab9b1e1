//! Discipline of a shared Modbus line (an RS-485 bus above all): the RTU inter-frame gap from
//! the line settings, a circuit breaker per slave with a deterministic backoff, the adaptive
//! poll period of a device, and the line's utilisation (share of time it carries a transaction).
//!
//! Everything here but [`BusLine`]'s counters is a pure state machine over the times it is
//! given, so the schedules are unit-tested without a clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The Modbus serial line specification's fixed inter-frame gap above 19200 baud.
pub const FAST_LINE_GAP: Duration = Duration::from_micros(1750);

/// The silence of 3.5 character times that separates two Modbus RTU frames, for a line at
/// `baud` whose characters have `bits_per_char` bits (start, data, parity and stop bits: 11 for
/// every format the Modbus serial specification allows, 8E1, 8O1 and 8N2). Above 19200 baud the
/// specification fixes it at 1.75 ms.
pub fn inter_frame_gap(baud: u32, bits_per_char: u32) -> Duration {
    if baud > 19_200 {
        return FAST_LINE_GAP;
    }
    // 3.5 characters = 7 half characters, in whole microseconds rounded up.
    let micros = (7 * u64::from(bits_per_char) * 1_000_000).div_ceil(2 * u64::from(baud.max(1)));
    Duration::from_micros(micros)
}

/// A circuit breaker's state, as reported in health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Polled on its schedule.
    Closed,
    /// Skipped until its open period has passed.
    Open,
    /// The open period has passed: the next cycle is a probe (it ends at its first unanswered
    /// request, so a still-dead slave costs the bus one timeout).
    HalfOpen,
}

impl BreakerState {
    /// As stored in an atomic for health.
    pub fn as_u8(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    pub fn from_u8(value: u8) -> BreakerState {
        match value {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// A circuit breaker for one slave. It opens after `open_after` failed cycles in a row; the
/// `n`-th consecutive opening lasts `base × 2ⁿ`, at most `max` (no jitter: the schedule of a
/// dead slave is predictable, and other slaves' periods do not depend on it). When the period
/// has passed the next cycle is a half-open probe: success closes the breaker, failure opens it
/// again for twice as long.
#[derive(Debug, Clone)]
pub struct Breaker {
    open_after: u32,
    base: Duration,
    max: Duration,
    failures: u32,
    trips: u32,
    state: BreakerState,
}

/// What a failed cycle did to the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tripped {
    /// Still closed: the device keeps its schedule.
    No,
    /// Opened (again): skip the device for this long.
    Open { wait: Duration, trips: u32 },
}

impl Breaker {
    pub fn new(open_after: u32, base: Duration, max: Duration) -> Breaker {
        Breaker {
            open_after: open_after.max(1),
            base,
            max: max.max(base),
            failures: 0,
            trips: 0,
            state: BreakerState::Closed,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// How long the `trips`-th consecutive opening lasts.
    pub fn open_period(&self, trips: u32) -> Duration {
        let factor = 1u32.checked_shl(trips.min(31)).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .map_or(self.max, |wait| wait.min(self.max))
    }

    /// A cycle is about to run: an open breaker whose period has passed turns half-open.
    pub fn attempt(&mut self) -> BreakerState {
        if self.state == BreakerState::Open {
            self.state = BreakerState::HalfOpen;
        }
        self.state
    }

    /// A cycle succeeded. Returns true when this closed an open or half-open breaker.
    pub fn succeeded(&mut self) -> bool {
        let was_open = self.state != BreakerState::Closed;
        self.failures = 0;
        self.trips = 0;
        self.state = BreakerState::Closed;
        was_open
    }

    /// A cycle failed.
    pub fn failed(&mut self) -> Tripped {
        self.failures = self.failures.saturating_add(1);
        if self.state == BreakerState::HalfOpen || self.failures >= self.open_after {
            self.trips = self.trips.saturating_add(1);
            self.state = BreakerState::Open;
            Tripped::Open {
                wait: self.open_period(self.trips),
                trips: self.trips,
            }
        } else {
            Tripped::No
        }
    }
}

/// Settings of the adaptive poll period ([`crate::config::AdaptiveConfig`], validated).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveSettings {
    pub min: Duration,
    pub max: Duration,
    pub quiet_cycles: u32,
    pub fast_change: f64,
}

/// Why a device's poll period is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// The device reports an active fault code.
    Fault,
    /// A value moved faster than `fast_change` of its plausible range per minute.
    FastChange,
    /// Nothing of note.
    Quiet,
}

impl Activity {
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::Fault => "fault",
            Activity::FastChange => "fast_change",
            Activity::Quiet => "quiet",
        }
    }
}

/// A device's poll period. Without adaptive settings it is the configured interval. With them
/// it starts at the interval (clamped to `[min, max]`), drops to `min` at once while the device
/// reports a fault or a value changes fast, and doubles (up to `max`) after every
/// `quiet_cycles` quiet cycles in a row.
#[derive(Debug, Clone)]
pub struct Cadence {
    adaptive: Option<AdaptiveSettings>,
    period: Duration,
    calm: u32,
    last: Option<(Instant, wire::Values)>,
}

impl Cadence {
    pub fn new(interval: Duration, adaptive: Option<AdaptiveSettings>) -> Cadence {
        let period = match adaptive {
            Some(settings) => interval.clamp(settings.min, settings.max.max(settings.min)),
            None => interval,
        };
        Cadence {
            adaptive,
            period,
            calm: 0,
            last: None,
        }
    }

    /// The current period.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// Takes a successful cycle's values (read at `at`); returns what it showed and the period
    /// until the next cycle.
    pub fn observe(
        &mut self,
        at: Instant,
        values: &wire::Values,
        fault: bool,
    ) -> (Activity, Duration) {
        let Some(settings) = self.adaptive else {
            return (Activity::Quiet, self.period);
        };
        let activity = if fault {
            Activity::Fault
        } else {
            match &self.last {
                Some((before, previous))
                    if fastest_change(previous, values, at.saturating_duration_since(*before))
                        > settings.fast_change =>
                {
                    Activity::FastChange
                }
                _ => Activity::Quiet,
            }
        };
        self.last = Some((at, values.clone()));
        (activity, self.step(activity, settings))
    }

    fn step(&mut self, activity: Activity, settings: AdaptiveSettings) -> Duration {
        if activity == Activity::Quiet {
            self.calm = self.calm.saturating_add(1);
            if self.calm >= settings.quiet_cycles.max(1) {
                self.calm = 0;
                self.period = self
                    .period
                    .checked_mul(2)
                    .unwrap_or(settings.max)
                    .min(settings.max);
            }
        } else {
            self.calm = 0;
            self.period = settings.min;
        }
        self.period
    }
}

/// The fastest change between two readings `elapsed` apart, as a share of the value's
/// plausible range (its canonical range) per minute. Only canonical values with a range wider
/// than 1 count (not the fault code, not on/off flags); vendor values never do.
pub fn fastest_change(before: &wire::Values, after: &wire::Values, elapsed: Duration) -> f64 {
    let minutes = elapsed.as_secs_f64() / 60.0;
    if minutes <= 0.0 {
        return 0.0;
    }
    let mut fastest = 0.0_f64;
    for (name, value) in after.iter() {
        if name == wire::values::FAULT_CODE {
            continue;
        }
        let Some(canonical) = wire::values::lookup(name) else {
            continue;
        };
        let span = canonical.max - canonical.min;
        let Some(previous) = before.get(name) else {
            continue;
        };
        if span <= 1.0 || !value.is_finite() || !previous.is_finite() {
            continue;
        }
        fastest = fastest.max((value - previous).abs() / span / minutes);
    }
    fastest
}

/// One Modbus line's timing and counters: the inter-frame gap and warm-up it enforces, the time
/// it was last quiet, and how long it has been busy. Shared by the devices on one RS-485 bus
/// (and by the health report); the bus task is its only writer.
#[derive(Debug)]
pub struct BusLine {
    pub name: String,
    /// Silence kept between the end of one frame and the start of the next.
    pub gap: Duration,
    /// Pause after opening the port before the first request.
    pub warm_up: Duration,
    epoch: Instant,
    /// Nanoseconds after `epoch` at which the line last went quiet (0: never used).
    quiet_at_ns: AtomicU64,
    busy_ns: AtomicU64,
    requests: AtomicU64,
    timeouts: AtomicU64,
    opens: AtomicU64,
}

impl BusLine {
    pub fn new(name: &str, gap: Duration, warm_up: Duration) -> BusLine {
        BusLine {
            name: name.to_owned(),
            gap,
            warm_up,
            epoch: Instant::now(),
            quiet_at_ns: AtomicU64::new(0),
            busy_ns: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            opens: AtomicU64::new(0),
        }
    }

    fn since_epoch(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The earliest time the next frame may start: the inter-frame gap after the line last
    /// went quiet.
    pub fn clear_at(&self) -> Instant {
        match self.quiet_at_ns.load(Ordering::Relaxed) {
            0 => self.epoch,
            ns => self.epoch + Duration::from_nanos(ns) + self.gap,
        }
    }

    /// Waits until the line has been quiet for the inter-frame gap.
    pub async fn wait_clear(&self) {
        tokio::time::sleep_until(self.clear_at()).await;
    }

    /// The port was (re)opened.
    pub fn opened(&self) {
        self.opens.fetch_add(1, Ordering::Relaxed);
    }

    /// One transaction (request, then response or timeout) ran from `started` to `ended`.
    pub fn transaction(&self, started: Instant, ended: Instant, timed_out: bool) {
        let busy =
            u64::try_from(ended.saturating_duration_since(started).as_nanos()).unwrap_or(u64::MAX);
        self.busy_ns.fetch_add(busy, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        if timed_out {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
        self.quiet_at_ns
            .store(self.since_epoch(ended).max(1), Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counters(&self) -> LineCounters {
        LineCounters {
            busy: Duration::from_nanos(self.busy_ns.load(Ordering::Relaxed)),
            requests: self.requests.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            opens: self.opens.load(Ordering::Relaxed),
        }
    }
}

/// A line's cumulative counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LineCounters {
    /// Total time the line carried a transaction.
    pub busy: Duration,
    pub requests: u64,
    pub timeouts: u64,
    /// Times the port was opened.
    pub opens: u64,
}

/// Share of `elapsed` the line was busy, given its busy time at the start and end of it,
/// within 0..=1.
pub fn utilisation(busy_before: Duration, busy_after: Duration, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        return 0.0;
    }
    let busy = busy_after.saturating_sub(busy_before);
    (busy.as_secs_f64() / elapsed.as_secs_f64()).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_gap_is_three_and_a_half_characters_and_fixed_above_19200_baud() {
        // 9600 baud 8E1: 11 bits, 3.5 × 11 / 9600 s = 4.0104 ms (rounded up to the microsecond).
        assert_eq!(inter_frame_gap(9600, 11), Duration::from_micros(4011));
        // 8N1 has 10 bits a character: a shorter gap.
        assert_eq!(inter_frame_gap(9600, 10), Duration::from_micros(3646));
        assert_eq!(inter_frame_gap(19_200, 11), Duration::from_micros(2006));
        assert_eq!(inter_frame_gap(1200, 11), Duration::from_micros(32_084));
        for baud in [19_201, 38_400, 57_600, 115_200] {
            assert_eq!(inter_frame_gap(baud, 11), FAST_LINE_GAP, "{baud}");
        }
        // Halving the speed doubles the gap.
        assert!(
            inter_frame_gap(4800, 11) > inter_frame_gap(9600, 11) * 2 - Duration::from_micros(2)
        );
    }

    #[test]
    fn the_breaker_opens_after_n_failures_and_doubles_its_period_up_to_the_cap() {
        let mut breaker = Breaker::new(3, 100 * MS, 1000 * MS);
        assert_eq!(breaker.failed(), Tripped::No);
        assert_eq!(breaker.failed(), Tripped::No);
        assert_eq!(breaker.state(), BreakerState::Closed);
        let mut waits = Vec::new();
        for _ in 0..6 {
            match breaker.failed() {
                Tripped::Open { wait, trips } => waits.push((trips, wait.as_millis())),
                Tripped::No => panic!("a failure past the threshold opens the breaker"),
            }
            assert_eq!(breaker.state(), BreakerState::Open);
            assert_eq!(breaker.attempt(), BreakerState::HalfOpen);
        }
        assert_eq!(
            waits,
            vec![
                (1, 200),
                (2, 400),
                (3, 800),
                (4, 1000),
                (5, 1000),
                (6, 1000)
            ]
        );
        // A successful probe closes it and forgets the history.
        assert!(breaker.succeeded());
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(!breaker.succeeded(), "closing a closed breaker is not news");
        assert_eq!(breaker.failed(), Tripped::No);
        assert_eq!(breaker.failed(), Tripped::No);
        assert_eq!(
            breaker.failed(),
            Tripped::Open {
                wait: 200 * MS,
                trips: 1
            }
        );
    }

    #[test]
    fn a_closed_breaker_is_not_half_opened_by_an_attempt_and_a_huge_trip_count_stays_capped() {
        let mut breaker = Breaker::new(1, Duration::from_secs(10), Duration::from_secs(300));
        assert_eq!(breaker.attempt(), BreakerState::Closed);
        assert_eq!(breaker.open_period(40), Duration::from_secs(300));
        assert_eq!(breaker.open_period(u32::MAX), Duration::from_secs(300));
        let tiny = Breaker::new(0, Duration::ZERO, Duration::ZERO);
        assert_eq!(tiny.open_period(3), Duration::ZERO);
    }

    fn values(pairs: &[(&str, f64)]) -> wire::Values {
        let mut values = wire::Values::new();
        for (name, value) in pairs {
            values.insert(name, *value);
        }
        values
    }

    fn settings() -> AdaptiveSettings {
        AdaptiveSettings {
            min: Duration::from_secs(2),
            max: Duration::from_secs(60),
            quiet_cycles: 3,
            fast_change: 0.02,
        }
    }

    #[test]
    fn without_adaptive_settings_the_period_is_the_interval() {
        let mut cadence = Cadence::new(Duration::from_secs(10), None);
        let t = Instant::now();
        let (activity, period) = cadence.observe(t, &values(&[]), true);
        assert_eq!(
            (activity, period),
            (Activity::Quiet, Duration::from_secs(10))
        );
    }

    #[test]
    fn the_period_drops_to_min_on_a_fault_or_a_fast_change_and_doubles_when_quiet() {
        let mut cadence = Cadence::new(Duration::from_secs(10), Some(settings()));
        assert_eq!(cadence.period(), Duration::from_secs(10));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let calm = values(&[("indoor_temp_c", 20.0), ("energy_kwh", 1000.0)]);
        let mut periods = Vec::new();
        let mut t = 0;
        for _ in 0..6 {
            let (activity, period) = cadence.observe(at(t), &calm, false);
            assert_eq!(activity, Activity::Quiet);
            periods.push(period.as_secs());
            t += period.as_secs();
        }
        // Three quiet cycles per doubling: 10, 10, 20, 20, 20, 40.
        assert_eq!(periods, vec![10, 10, 20, 20, 20, 40]);
        // A fault: down to the minimum at once, and it stays there while the fault lasts.
        let (activity, period) = cadence.observe(at(t), &calm, true);
        assert_eq!(
            (activity, period),
            (Activity::Fault, Duration::from_secs(2))
        );
        t += 2;
        assert_eq!(
            cadence.observe(at(t), &calm, true).1,
            Duration::from_secs(2)
        );
        t += 2;
        // The indoor temperature falling 13 °C a minute (10 % of its range a minute).
        let falling = values(&[("indoor_temp_c", 19.566), ("energy_kwh", 1000.0)]);
        let (activity, period) = cadence.observe(at(t), &falling, false);
        assert_eq!(
            (activity, period),
            (Activity::FastChange, Duration::from_secs(2))
        );
        // Quiet again: back up by doubling, never above max.
        let mut periods = Vec::new();
        for _ in 0..30 {
            t += cadence.period().as_secs();
            periods.push(cadence.observe(at(t), &falling, false).1.as_secs());
        }
        assert_eq!(&periods[..7], &[2, 2, 4, 4, 4, 8, 8]);
        assert_eq!(periods.last(), Some(&60));
        assert!(periods.iter().all(|p| *p <= 60));
    }

    #[test]
    fn a_slow_drift_counters_flags_and_vendor_values_are_not_fast_changes() {
        let before = values(&[
            ("indoor_temp_c", 20.0),
            ("energy_kwh", 1000.0),
            ("running", 0.0),
            ("fault_code", 0.0),
            ("x_cop", 1.0),
        ]);
        let after = values(&[
            ("indoor_temp_c", 20.2),
            ("energy_kwh", 1001.0),
            ("running", 1.0),
            ("fault_code", 12.0),
            ("x_cop", 4.0),
        ]);
        // 0.2 °C in a minute is 0.15 % of the indoor range.
        let rate = fastest_change(&before, &after, Duration::from_secs(60));
        assert!(rate < 0.002, "{rate}");
        // The same step in one second is fast.
        let rate = fastest_change(&before, &after, Duration::from_secs(1));
        assert!(rate > 0.05, "{rate}");
        assert_eq!(fastest_change(&before, &after, Duration::ZERO), 0.0);
        let odd = values(&[("indoor_temp_c", f64::NAN)]);
        assert_eq!(fastest_change(&before, &odd, Duration::from_secs(1)), 0.0);
    }

    #[test]
    fn utilisation_is_the_busy_share_of_the_window() {
        assert_eq!(utilisation(MS * 100, MS * 350, MS * 1000), 0.25);
        assert_eq!(utilisation(MS * 100, MS * 100, MS * 1000), 0.0);
        assert_eq!(utilisation(Duration::ZERO, MS * 2000, MS * 1000), 1.0);
        assert_eq!(utilisation(Duration::ZERO, MS * 10, Duration::ZERO), 0.0);
    }

    #[tokio::test]
    async fn the_line_records_busy_time_and_clears_a_gap_after_the_last_frame() {
        let line = BusLine::new("rs485-1", 4 * MS, 200 * MS);
        let start = Instant::now();
        assert!(line.clear_at() <= start, "an unused line is clear");
        line.transaction(start, start + 30 * MS, false);
        line.transaction(start + 40 * MS, start + 50 * MS, true);
        assert_eq!(line.clear_at(), start + 54 * MS);
        let counters = line.counters();
        assert_eq!(counters.busy, 40 * MS);
        assert_eq!((counters.requests, counters.timeouts), (2, 1));
    }
}
