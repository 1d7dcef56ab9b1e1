//! The outdoor temperature of a village, from the units in it that measure one: what the rules
//! use for a unit without an outdoor sensor (most wall-hung boilers have none).
//!
//! Each registered device with a village has a slot in its village's table holding its newest
//! own outdoor reading. The estimate at a time is the median of the slots read within an hour
//! of it, before or after (at least [`MIN_SOURCES`] of them): a median, so one sensor in the sun
//! or an open circuit does not move it. After, too: each slot keeps only its newest reading, and
//! a neighbour whose reading of a few seconds later was handled first must still count (the
//! outdoor air does not change in an hour by more than the spread of a village's sensors).
//! Event time only, no clock; the slots are part of each device's snapshot, so a restored
//! engine estimates what the running one did.

use std::collections::HashMap;

/// Readings further than this from the asking reading, before or after, do not count.
pub const MAX_AGE_MS: i64 = 3_600_000;
/// Fewer fresh readings than this give no estimate.
pub const MIN_SOURCES: usize = 3;

/// One device's newest outdoor reading in its village's table.
#[derive(Debug, Clone, Copy)]
struct Slot {
    value: f32,
    ts_ms: i64,
}

impl Slot {
    const EMPTY: Slot = Slot {
        value: f32::NAN,
        ts_ms: i64::MIN,
    };
}

/// Villages' outdoor readings.
#[derive(Debug, Clone, Default)]
pub struct AreaWeather {
    /// (township, village) -> index in `areas`.
    keys: HashMap<(String, String), u32>,
    areas: Vec<Vec<Slot>>,
}

/// Where a device's readings go: its village and its slot there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AreaSlot {
    area: u32,
    slot: u32,
}

impl AreaWeather {
    /// The slot of a device in `township`/`village`: `current` when it is already there, else a
    /// new one (a device that moved leaves its old slot empty).
    pub fn join(
        &mut self,
        current: Option<AreaSlot>,
        township: Option<&str>,
        village: Option<&str>,
    ) -> Option<AreaSlot> {
        let (Some(township), Some(village)) = (township, village) else {
            self.leave(current);
            return None;
        };
        let key = (township.to_owned(), village.to_owned());
        if let (Some(current), Some(area)) = (current, self.keys.get(&key)) {
            if current.area == *area {
                return Some(current);
            }
        }
        self.leave(current);
        let next = u32::try_from(self.areas.len()).ok()?;
        let area = *self.keys.entry(key).or_insert(next);
        if area == next {
            self.areas.push(Vec::new());
        }
        let slots = self.areas.get_mut(area as usize)?;
        let slot = u32::try_from(slots.len()).ok()?;
        slots.push(Slot::EMPTY);
        Some(AreaSlot { area, slot })
    }

    fn leave(&mut self, slot: Option<AreaSlot>) {
        if let Some(s) = slot.and_then(|at| self.slot_mut(at)) {
            *s = Slot::EMPTY;
        }
    }

    fn slot_mut(&mut self, at: AreaSlot) -> Option<&mut Slot> {
        self.areas
            .get_mut(at.area as usize)
            .and_then(|slots| slots.get_mut(at.slot as usize))
    }

    /// Records a device's own outdoor reading (NaN and older readings are ignored).
    pub fn record(&mut self, at: AreaSlot, value: f64, ts_ms: i64) {
        if !value.is_finite() {
            return;
        }
        if let Some(slot) = self.slot_mut(at) {
            if ts_ms >= slot.ts_ms {
                *slot = Slot {
                    value: value as f32,
                    ts_ms,
                };
            }
        }
    }

    /// The newest reading recorded for a device's slot (for its snapshot).
    pub fn reading_of(&self, at: AreaSlot) -> Option<(f64, i64)> {
        self.areas
            .get(at.area as usize)
            .and_then(|slots| slots.get(at.slot as usize))
            .filter(|s| s.value.is_finite())
            .map(|s| (f64::from(s.value), s.ts_ms))
    }

    /// The median of the village's readings within [`MAX_AGE_MS`] of `now_ms`, NaN with fewer
    /// than [`MIN_SOURCES`].
    pub fn estimate(&self, at: AreaSlot, now_ms: i64) -> f64 {
        let Some(slots) = self.areas.get(at.area as usize) else {
            return f64::NAN;
        };
        let (since, until) = (
            now_ms.saturating_sub(MAX_AGE_MS),
            now_ms.saturating_add(MAX_AGE_MS),
        );
        let mut fresh: Vec<f32> = slots
            .iter()
            .filter(|s| s.value.is_finite() && s.ts_ms >= since && s.ts_ms <= until)
            .map(|s| s.value)
            .collect();
        if fresh.len() < MIN_SOURCES {
            return f64::NAN;
        }
        fresh.sort_by(f32::total_cmp);
        let mid = fresh.len() / 2;
        let median = if fresh.len() % 2 == 1 {
            fresh.get(mid).copied().map(f64::from)
        } else {
            match (fresh.get(mid - 1), fresh.get(mid)) {
                (Some(a), Some(b)) => Some((f64::from(*a) + f64::from(*b)) / 2.0),
                _ => None,
            }
        };
        median.unwrap_or(f64::NAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather_with(values: &[(f64, i64)]) -> (AreaWeather, Vec<AreaSlot>) {
        let mut weather = AreaWeather::default();
        let slots: Vec<AreaSlot> = values
            .iter()
            .map(|_| {
                weather
                    .join(None, Some("yongning"), Some("xiguan"))
                    .expect("slot")
            })
            .collect();
        for (slot, (value, ts)) in slots.iter().zip(values) {
            weather.record(*slot, *value, *ts);
        }
        (weather, slots)
    }

    #[test]
    fn median_of_fresh_readings_ignores_an_outlier() {
        let (weather, slots) = weather_with(&[
            (-12.0, 1_000),
            (-11.0, 2_000),
            (-40.0, 3_000),
            (-12.5, 4_000),
            (-11.5, 5_000),
        ]);
        assert_eq!(weather.estimate(slots[0], 10_000), -12.0);
    }

    #[test]
    fn readings_more_than_an_hour_away_do_not_count() {
        let hour = MAX_AGE_MS;
        let (weather, slots) =
            weather_with(&[(-5.0, 0), (-6.0, hour / 2), (-7.0, hour), (-8.0, 3 * hour)]);
        // At 1.6 h: the reading at 0 is too old and the one at 3 h too far ahead: two left.
        assert!(weather.estimate(slots[0], hour + 6 * hour / 10).is_nan());
        // At 1 h: 0, 0.5 h and 1 h count.
        assert_eq!(weather.estimate(slots[0], hour), -6.0);
        // A neighbour's reading a few seconds after the asking one counts.
        assert_eq!(weather.estimate(slots[0], hour - 10_000), -6.0);
    }

    #[test]
    fn villages_are_apart_and_a_move_empties_the_old_slot() {
        let mut weather = AreaWeather::default();
        let a: Vec<AreaSlot> = (0..3)
            .map(|_| weather.join(None, Some("t"), Some("a")).expect("slot"))
            .collect();
        let b = weather.join(None, Some("t"), Some("b")).expect("slot");
        for slot in &a {
            weather.record(*slot, -10.0, 0);
        }
        weather.record(b, 5.0, 0);
        assert_eq!(weather.estimate(a[0], 0), -10.0);
        assert!(weather.estimate(b, 0).is_nan());
        let moved = weather.join(Some(a[2]), Some("t"), Some("b"));
        assert_ne!(moved, Some(a[2]));
        assert!(weather.estimate(a[0], 0).is_nan(), "two readings left in a");
        assert_eq!(weather.join(Some(b), Some("t"), Some("b")), Some(b));
        assert_eq!(weather.join(Some(b), None, Some("b")), None);
        assert!(weather.reading_of(b).is_none());
    }
}
