//! Clock trust at ingest: places readings an edge box stamped with a wall clock it did not
//! trust (`synced: false`, see [`wire::clock`]) on the gateway's time line before the fleet,
//! the history and the rules see them.
//!
//! [`BootClocks`] keeps, per device and boot id (bounded: [`MAX_BOOTS`], the least recently
//! seen evicted), the boot's offset (wall time at monotonic zero) from two sources:
//! - `boot`: a synced reading of the same boot: `ts_ms - mono_ms` (the box's trusted clock);
//! - `arrival`: an unsynced reading of the current boot that says when it was sent
//!   (`sent_mono_ms`): `arrival - sent_mono_ms` on the gateway's clock, the smallest seen
//!   (each is an upper bound: a reading cannot arrive before it is sent).
//!
//! An unsynced reading is stamped `offset + mono_ms` from `boot` if known, else `arrival`, and
//! flagged (`ts_estimate`, the box's own time kept as `box_ts_ms`; `synced` stays false). One
//! with neither (a boot that never synced, sent after a reboot) is held, at most
//! [`MAX_PENDING`] readings over all devices for at most [`HOLD_MS`], and released stamped
//! when its boot's offset becomes known (oldest first, before the reading that taught it);
//! a reading beyond the bound or past the hold is *unestimated*: counted, logged, and kept out
//! of the fleet, the history and the rules (their event time must be right).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use wire::clock::{BOX_TS_MS, TS_ESTIMATE};
use wire::Telemetry;

/// Device boots whose offsets are kept.
pub const MAX_BOOTS: usize = 20_000;
/// Unsynced readings held for an offset, over all devices.
pub const MAX_PENDING: usize = 10_000;
/// How long a held reading waits for its boot's offset, in ms of the gateway's clock.
pub const HOLD_MS: i64 = 10 * 60_000;

/// What became of one reading's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// No clock fields, or stamped by the box's trusted clock: as it came.
    Trusted,
    /// Re-stamped by the agent once its clock was trusted (`restamped: true`).
    RestampedByAgent,
    /// Stamped here from a synced reading of the same boot.
    FromBoot,
    /// Stamped here from the gateway's clock at the arrival of a reading of the same boot.
    FromArrival,
    /// Held for its boot's offset.
    Held,
    /// No offset within the hold, or no room to hold it: kept out of the rules.
    Unestimated,
}

impl Outcome {
    /// The `outcome` label of `gateway_clock_readings_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Trusted => "trusted",
            Outcome::RestampedByAgent => "restamped_by_agent",
            Outcome::FromBoot => "estimated_from_boot",
            Outcome::FromArrival => "estimated_from_arrival",
            Outcome::Held => "held",
            Outcome::Unestimated => "unestimated",
        }
    }
}

/// A reading whose time is settled, with its township.
#[derive(Debug, Clone, PartialEq)]
pub struct Placed {
    pub reading: Box<Telemetry>,
    pub township: String,
    pub outcome: Outcome,
    /// The box's wall clock minus the estimated time, for an estimated reading.
    pub skew_ms: Option<i64>,
}

/// What [`BootClocks::place`] made of a reading.
#[derive(Debug, Default)]
pub struct Placement {
    /// Readings for the fleet, the history and the rules, oldest first.
    pub ready: Vec<Placed>,
    /// The reading was held.
    pub held: bool,
    /// Readings given up on (no room to hold).
    pub unestimated: Vec<Placed>,
}

#[derive(Debug, Clone, Default)]
struct Boot {
    from_boot: Option<i64>,
    from_arrival: Option<i64>,
    last_seen_ms: i64,
}

impl Boot {
    fn offset(&self) -> Option<(i64, Outcome)> {
        self.from_boot
            .map(|o| (o, Outcome::FromBoot))
            .or(self.from_arrival.map(|o| (o, Outcome::FromArrival)))
    }
}

#[derive(Debug)]
struct Held {
    reading: Box<Telemetry>,
    township: String,
    mono_ms: u64,
    arrived_ms: i64,
}

type Key = (String, String);

/// The offsets of device boots and the readings waiting for one.
#[derive(Debug)]
pub struct BootClocks {
    boots: HashMap<Key, Boot>,
    pending: BTreeMap<Key, Vec<Held>>,
    pending_count: usize,
    max_boots: usize,
    max_pending: usize,
    hold_ms: i64,
}

impl Default for BootClocks {
    fn default() -> Self {
        Self::new(MAX_BOOTS, MAX_PENDING, HOLD_MS)
    }
}

fn mono(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

impl BootClocks {
    pub fn new(max_boots: usize, max_pending: usize, hold_ms: i64) -> Self {
        Self {
            boots: HashMap::new(),
            pending: BTreeMap::new(),
            pending_count: 0,
            max_boots: max_boots.max(1),
            max_pending,
            hold_ms,
        }
    }

    /// Readings held now.
    pub fn pending(&self) -> usize {
        self.pending_count
    }

    /// Boots whose offsets are known.
    pub fn boots(&self) -> usize {
        self.boots.len()
    }

    /// Places one validated, admitted reading that arrived at `arrival_ms` (gateway clock).
    pub fn place(
        &mut self,
        mut reading: Box<Telemetry>,
        township: String,
        arrival_ms: i64,
    ) -> Placement {
        // These are ours to write: a box does not get to claim them.
        reading.extra.remove(TS_ESTIMATE);
        reading.extra.remove(BOX_TS_MS);
        let mut placement = Placement::default();
        let stamp = match reading.clock() {
            Ok(Some(stamp)) => stamp,
            // Validation refused a bad stamp before; none means a box that predates them.
            Ok(None) | Err(_) => {
                placement.ready.push(Placed {
                    reading,
                    township,
                    outcome: Outcome::Trusted,
                    skew_ms: None,
                });
                return placement;
            }
        };
        let key = (reading.device_id.as_str().to_owned(), stamp.boot_id.clone());
        let boot = self.boot(&key, arrival_ms);
        if stamp.synced {
            boot.from_boot = Some(reading.ts_ms.saturating_sub(mono(stamp.mono_ms)));
        } else if let Some(sent) = stamp.sent_mono_ms {
            let offset = arrival_ms.saturating_sub(mono(sent));
            boot.from_arrival = Some(boot.from_arrival.map_or(offset, |o| o.min(offset)));
        }
        let offset = boot.offset();
        // The readings held for this boot go first: they are older.
        if let Some(offset) = offset {
            if let Some(held) = self.pending.remove(&key) {
                self.pending_count -= held.len();
                let mut held = held;
                held.sort_by_key(|h| h.mono_ms);
                for h in held {
                    placement
                        .ready
                        .push(estimate(h.reading, h.township, h.mono_ms, offset));
                }
            }
        }
        if stamp.synced {
            let outcome = if stamp.restamped {
                Outcome::RestampedByAgent
            } else {
                Outcome::Trusted
            };
            placement.ready.push(Placed {
                reading,
                township,
                outcome,
                skew_ms: None,
            });
        } else if let Some(offset) = offset {
            placement
                .ready
                .push(estimate(reading, township, stamp.mono_ms, offset));
        } else if self.pending_count < self.max_pending {
            self.pending.entry(key).or_default().push(Held {
                reading,
                township,
                mono_ms: stamp.mono_ms,
                arrived_ms: arrival_ms,
            });
            self.pending_count += 1;
            placement.held = true;
        } else {
            placement.unestimated.push(Placed {
                reading,
                township,
                outcome: Outcome::Unestimated,
                skew_ms: None,
            });
        }
        placement
    }

    /// Gives up on the readings held longer than the hold at `now_ms`: returns them
    /// (unestimated), to be counted and logged.
    pub fn expire(&mut self, now_ms: i64) -> Vec<Placed> {
        let hold_ms = self.hold_ms;
        let mut expired = Vec::new();
        self.pending.retain(|_, held| {
            let (old, young): (Vec<Held>, Vec<Held>) = std::mem::take(held)
                .into_iter()
                .partition(|h| now_ms.saturating_sub(h.arrived_ms) >= hold_ms);
            *held = young;
            expired.extend(old.into_iter().map(|h| Placed {
                reading: h.reading,
                township: h.township,
                outcome: Outcome::Unestimated,
                skew_ms: None,
            }));
            !held.is_empty()
        });
        self.pending_count -= expired.len();
        expired
    }

    /// The boot's entry, made (evicting the least recently seen tenth when full) if new.
    fn boot(&mut self, key: &Key, now_ms: i64) -> &mut Boot {
        if !self.boots.contains_key(key) && self.boots.len() >= self.max_boots {
            let mut seen: Vec<i64> = self.boots.values().map(|b| b.last_seen_ms).collect();
            let cut = (seen.len() / 10).max(1).min(seen.len() - 1);
            let (_, threshold, _) = seen.select_nth_unstable(cut);
            let threshold = *threshold;
            self.boots.retain(|_, b| b.last_seen_ms > threshold);
            // Equal times above the cut: make room regardless.
            while self.boots.len() >= self.max_boots {
                let Some(any) = self.boots.keys().next().cloned() else {
                    break;
                };
                self.boots.remove(&any);
            }
        }
        let boot = self.boots.entry(key.clone()).or_default();
        boot.last_seen_ms = boot.last_seen_ms.max(now_ms);
        boot
    }
}

/// `reading` stamped at `offset + mono_ms`, flagged with the source and the box's own time.
fn estimate(
    mut reading: Box<Telemetry>,
    township: String,
    mono_ms: u64,
    (offset, outcome): (i64, Outcome),
) -> Placed {
    let box_ts = reading.ts_ms;
    let ts = offset.saturating_add(mono(mono_ms));
    reading.ts_ms = ts;
    let source = if outcome == Outcome::FromBoot {
        "boot"
    } else {
        "arrival"
    };
    reading
        .extra
        .insert(TS_ESTIMATE.to_owned(), serde_json::Value::from(source));
    reading
        .extra
        .insert(BOX_TS_MS.to_owned(), serde_json::Value::from(box_ts));
    Placed {
        reading,
        township,
        outcome,
        skew_ms: Some(box_ts.saturating_sub(ts)),
    }
}

/// Upper bounds (seconds) of the skew histogram's buckets.
const SKEW_BUCKETS: [f64; 8] = [
    1.0,
    10.0,
    60.0,
    600.0,
    3_600.0,
    86_400.0,
    2_592_000.0,
    31_536_000.0,
];

/// The clock figures on `/metrics`: readings by outcome and the skew of the box clocks the
/// gateway corrected.
#[derive(Debug, Default)]
pub struct ClockFigures {
    inner: Mutex<FiguresInner>,
}

#[derive(Debug, Default)]
struct FiguresInner {
    outcomes: BTreeMap<&'static str, u64>,
    /// Cumulative counts per bucket of [`SKEW_BUCKETS`], then +Inf.
    buckets: [u64; SKEW_BUCKETS.len() + 1],
    sum_seconds: f64,
    largest_seconds: f64,
}

impl ClockFigures {
    /// Counts one reading's outcome, and its skew when it was estimated.
    pub fn record(&self, outcome: Outcome, skew_ms: Option<i64>) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        *inner.outcomes.entry(outcome.label()).or_default() += 1;
        if let Some(skew) = skew_ms {
            let seconds = skew.unsigned_abs() as f64 / 1_000.0;
            for (index, bound) in SKEW_BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    inner.buckets[index] += 1;
                }
            }
            inner.buckets[SKEW_BUCKETS.len()] += 1;
            inner.sum_seconds += seconds;
            inner.largest_seconds = inner.largest_seconds.max(seconds);
        }
    }

    /// Readings counted with `outcome`.
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.inner
            .lock()
            .map(|i| i.outcomes.get(outcome.label()).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Appends the figures in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let Ok(inner) = self.inner.lock() else {
            return;
        };
        let _ = writeln!(out, "# HELP gateway_clock_readings_total readings whose box clock was not trusted at read time (or that carry clock fields), by what ingest made of their time\n# TYPE gateway_clock_readings_total counter");
        for (outcome, count) in &inner.outcomes {
            let _ = writeln!(
                out,
                "gateway_clock_readings_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        let _ = writeln!(out, "# HELP gateway_clock_skew_seconds how far a box's untrusted wall clock was from the time ingest estimated for its reading\n# TYPE gateway_clock_skew_seconds histogram");
        for (bound, count) in SKEW_BUCKETS.iter().zip(inner.buckets) {
            let _ = writeln!(
                out,
                "gateway_clock_skew_seconds_bucket{{le=\"{bound}\"}} {count}"
            );
        }
        let total = inner.buckets[SKEW_BUCKETS.len()];
        let _ = writeln!(
            out,
            "gateway_clock_skew_seconds_bucket{{le=\"+Inf\"}} {total}\ngateway_clock_skew_seconds_sum {}\ngateway_clock_skew_seconds_count {total}",
            inner.sum_seconds
        );
        let _ = writeln!(out, "# HELP gateway_clock_skew_largest_seconds the largest box clock skew ingest corrected since start\n# TYPE gateway_clock_skew_largest_seconds gauge\ngateway_clock_skew_largest_seconds {}", inner.largest_seconds);
    }
}

#[cfg(test)]
mod tests {
    use wire::{ClockStamp, DeviceId, DeviceKind, Values, SCHEMA_VERSION};

    use super::*;

    /// 2026-12-01T00:00:00Z.
    const NOW: i64 = 1_796_083_200_000;
    const BOOT: &str = "boot-0000-0001";

    fn reading(device: &str, ts_ms: i64, stamp: Option<ClockStamp>) -> Box<Telemetry> {
        let mut reading = Telemetry {
            v: SCHEMA_VERSION,
            device_id: DeviceId::parse(device).expect("id"),
            ts_ms,
            seq: 1,
            profile: "aurora-ashp".into(),
            kind: DeviceKind::HeatPump,
            values: Values::from([(wire::values::INDOOR_TEMP_C, 19.5)]),
            fault: None,
            extra: Default::default(),
        };
        if let Some(stamp) = stamp {
            reading.set_clock(&stamp);
        }
        Box::new(reading)
    }

    fn unsynced(mono: u64, sent: Option<u64>) -> Option<ClockStamp> {
        Some(ClockStamp {
            sent_mono_ms: sent,
            ..ClockStamp::new(BOOT, mono, false)
        })
    }

    #[test]
    fn readings_without_clock_fields_pass_as_they_came() {
        let mut clocks = BootClocks::default();
        let placement = clocks.place(reading("d-1", NOW, None), "yanqing".into(), NOW);
        assert_eq!(placement.ready.len(), 1);
        assert_eq!(placement.ready[0].outcome, Outcome::Trusted);
        assert_eq!(placement.ready[0].reading.ts_ms, NOW);
        assert_eq!(clocks.boots(), 0);
    }

    #[test]
    fn an_unsynced_reading_with_its_send_time_is_placed_by_arrival_and_then_by_its_boot() {
        let mut clocks = BootClocks::default();
        // Read at mono 10 s, sent at mono 12 s, arrives at NOW (box clock: 1970).
        let placement = clocks.place(
            reading("d-1", 10_000, unsynced(10_000, Some(12_000))),
            "yanqing".into(),
            NOW,
        );
        let placed = &placement.ready[0];
        assert_eq!(placed.outcome, Outcome::FromArrival);
        assert_eq!(placed.reading.ts_ms, NOW - 2_000);
        assert_eq!(placed.skew_ms, Some(10_000 - (NOW - 2_000)));
        assert_eq!(placed.reading.extra[TS_ESTIMATE], "arrival");
        assert_eq!(placed.reading.extra[BOX_TS_MS], 10_000);
        // A synced reading of the boot: its own clock wins from then on.
        let synced = Some(ClockStamp::new(BOOT, 20_000, true));
        let placement = clocks.place(
            reading("d-1", NOW + 7_000, synced),
            "yanqing".into(),
            NOW + 7_100,
        );
        assert_eq!(placement.ready[0].outcome, Outcome::Trusted);
        let placement = clocks.place(
            reading("d-1", 15_000, unsynced(15_000, None)),
            "yanqing".into(),
            NOW + 8_000,
        );
        assert_eq!(placement.ready[0].outcome, Outcome::FromBoot);
        assert_eq!(placement.ready[0].reading.ts_ms, NOW + 7_000 - 5_000);
    }

    #[test]
    fn readings_without_an_offset_wait_for_one_and_are_released_oldest_first() {
        let mut clocks = BootClocks::new(100, 3, 60_000);
        for mono in [3_000, 1_000, 2_000] {
            let placement = clocks.place(
                reading("d-1", mono as i64, unsynced(mono, None)),
                "sihai".into(),
                NOW,
            );
            assert!(placement.held && placement.ready.is_empty());
        }
        // No room for a fourth: unestimated, not silently dropped.
        let placement = clocks.place(reading("d-2", 9, unsynced(9, None)), "sihai".into(), NOW);
        assert_eq!(placement.unestimated.len(), 1);
        assert_eq!(clocks.pending(), 3);
        // Another device's synced reading of a boot with the same id does not place them.
        let other = Some(ClockStamp::new(BOOT, 4_000, true));
        let placement = clocks.place(reading("d-9", NOW, other), "sihai".into(), NOW);
        assert_eq!(placement.ready.len(), 1);
        let synced = Some(ClockStamp::new(BOOT, 4_000, true));
        let placement = clocks.place(reading("d-1", NOW, synced), "sihai".into(), NOW);
        let times: Vec<(i64, Outcome)> = placement
            .ready
            .iter()
            .map(|p| (p.reading.ts_ms, p.outcome))
            .collect();
        assert_eq!(
            times,
            vec![
                (NOW - 3_000, Outcome::FromBoot),
                (NOW - 2_000, Outcome::FromBoot),
                (NOW - 1_000, Outcome::FromBoot),
                (NOW, Outcome::Trusted),
            ]
        );
        assert_eq!(clocks.pending(), 0);
    }

    #[test]
    fn held_readings_expire_unestimated_after_the_hold() {
        let mut clocks = BootClocks::new(100, 10, 60_000);
        clocks.place(reading("d-1", 1, unsynced(1, None)), "sihai".into(), NOW);
        clocks.place(
            reading("d-1", 2, unsynced(2, None)),
            "sihai".into(),
            NOW + 30_000,
        );
        assert!(clocks.expire(NOW + 59_999).is_empty());
        let expired = clocks.expire(NOW + 60_000);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].outcome, Outcome::Unestimated);
        assert_eq!(clocks.pending(), 1);
        assert_eq!(clocks.expire(NOW + 90_000).len(), 1);
        assert_eq!(clocks.pending(), 0);
    }

    #[test]
    fn the_boot_map_is_bounded_and_evicts_the_least_recently_seen() {
        let mut clocks = BootClocks::new(50, 10, 60_000);
        for i in 0..500_i64 {
            let stamp = ClockStamp::new(format!("boot-{i:08}"), 1_000, true);
            clocks.place(
                reading("d-1", NOW + i, Some(stamp)),
                "sihai".into(),
                NOW + i,
            );
            assert!(clocks.boots() <= 50);
        }
        // The newest boot is still known.
        let placement = clocks.place(
            reading(
                "d-1",
                5,
                Some(ClockStamp::new("boot-00000499", 2_000, false)),
            ),
            "sihai".into(),
            NOW + 600,
        );
        assert_eq!(placement.ready[0].outcome, Outcome::FromBoot);
    }

    #[test]
    fn a_box_cannot_claim_an_estimate_and_hostile_offsets_do_not_overflow() {
        let mut clocks = BootClocks::default();
        let mut claimed = reading("d-1", NOW, None);
        claimed.extra.insert(TS_ESTIMATE.into(), "boot".into());
        let placement = clocks.place(claimed, "sihai".into(), NOW);
        assert!(!placement.ready[0].reading.extra.contains_key(TS_ESTIMATE));
        let synced = Some(ClockStamp::new(BOOT, 0, true));
        clocks.place(reading("d-1", i64::MIN, synced), "sihai".into(), NOW);
        let placement = clocks.place(
            reading("d-1", i64::MAX, unsynced(wire::clock::MAX_MONO_MS, None)),
            "sihai".into(),
            i64::MAX,
        );
        assert_eq!(
            placement.ready.len(),
            1,
            "placed (and then refused by the time check)"
        );
    }

    #[test]
    fn the_figures_render_counts_by_outcome_and_a_skew_histogram() {
        let figures = ClockFigures::default();
        figures.record(Outcome::FromBoot, Some(-1_796_083_200_000));
        figures.record(Outcome::FromArrival, Some(500));
        figures.record(Outcome::Unestimated, None);
        let mut text = String::new();
        figures.render(&mut text);
        assert!(
            text.contains("gateway_clock_readings_total{outcome=\"estimated_from_boot\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_clock_readings_total{outcome=\"unestimated\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_clock_skew_seconds_bucket{le=\"1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_clock_skew_seconds_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_clock_skew_seconds_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("gateway_clock_skew_largest_seconds 1796083200\n"),
            "{text}"
        );
        assert_eq!(figures.count(Outcome::FromArrival), 1);
    }
}
