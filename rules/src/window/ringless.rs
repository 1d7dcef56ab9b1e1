//! Series that keep no ring of buckets: how long a value has stayed exactly as it is
//! (`unchanged_for`), and the house's own cooling rate learned online from its heater's off
//! periods (`cooling_hours`). Each is a head and at most a few cells per device.

use super::{value_at, Cell, CoolingSources, Derived, Head, Reading, MAX_MAGNITUDE};

/// Cells of a cooling series (it has no ring): the learned model, the open heater-off segment
/// and the newest indoor and outdoor temperatures.
pub const COOLING_CELLS: usize = 3;
/// Learned samples a cooling model needs before `cooling_hours` is known.
pub const COOLING_MIN_SAMPLES: u32 = 3;
/// A heater-off segment must last this long to teach the cooling model, ms.
const COOLING_MIN_SEGMENT_MS: i64 = 30 * 60_000;
/// A long heater-off segment is closed and a new one started after this long, ms (so a house
/// left without heat for a day teaches the model more than once).
const COOLING_MAX_SEGMENT_MS: i64 = 2 * 3_600_000;
/// Readings a segment needs.
const COOLING_MIN_READINGS: u32 = 5;
/// Indoor-outdoor difference a segment needs at its start and its end, K: near the outdoor
/// temperature the logarithm amplifies sensor steps.
const COOLING_MIN_DIFFERENCE_K: f64 = 5.0;
/// Plausible cooling rates of a dwelling, per hour: a time constant from 4 h (an uninsulated
/// single-skin room) to 150 h (a heavy, well-insulated house). A sample outside (a window
/// opened, the sun on the sensor) is not learned.
pub(super) const COOLING_RATE_RANGE: std::ops::RangeInclusive<f64> = (1.0 / 150.0)..=(1.0 / 4.0);
/// Once the model has [`COOLING_MIN_SAMPLES`], a sample more than this factor away from the
/// learned rate is an event (airing, a door left open, the sun), not the house: not learned.
const COOLING_OUTLIER_FACTOR: f64 = 2.0;
/// Smallest weight of a new sample in the learned rate (an exponential average over about the
/// last ten segments once more than ten were seen).
const COOLING_MIN_WEIGHT: f64 = 0.1;

/// Notes one value in an `Unchanged` head: `last` the value, `last_ts` when it took that value
/// (or was first seen), `bucket` the newest reading's time. Values beyond any physical range
/// and NaN are missing (they change nothing).
pub(super) fn note_change(head: &mut Head, ts_ms: i64, x: f64) {
    if !(x.is_finite() && x.abs() <= MAX_MAGNITUDE) {
        return;
    }
    let x = x as f32;
    if head.last_ts == i64::MIN || head.last.is_nan() || head.last != x {
        head.last = x;
        head.last_ts = ts_ms;
    }
    if head.bucket == i64::MIN || ts_ms > head.bucket {
        head.bucket = ts_ms;
    }
}

/// Hours from the value's last change to the newest reading that had it; NaN before any.
pub(super) fn unchanged_hours(head: &Head) -> f64 {
    if head.last_ts == i64::MIN || head.bucket == i64::MIN || head.last.is_nan() {
        return f64::NAN;
    }
    (head.bucket.saturating_sub(head.last_ts)).max(0) as f64 / 3_600_000.0
}

/// Feeds a reading to a cooling series (`cells`: its model, segment and latest cells): the
/// newest indoor and outdoor temperatures, and the house's cooling rate learned from them.
#[inline]
pub(super) fn update_cooling(
    sources: CoolingSources,
    head: &mut Head,
    cells: &mut [Cell],
    reading: &Reading<'_>,
) {
    let [model, segment, latest] = cells else {
        return;
    };
    let value = |i: u8| value_at(reading.values, i);
    let (indoor, outdoor) = (value(sources.indoor), value(sources.outdoor));
    if indoor.is_finite() && outdoor.is_finite() {
        *latest = Cell {
            n: 1,
            a: indoor as f32,
            b: outdoor as f32,
            c: 0.0,
        };
        learn_cooling(
            head,
            model,
            segment,
            reading.ts_ms,
            indoor,
            outdoor,
            value(sources.running),
        );
    }
}

/// `cooling_hours` of a cooling series (`cells`: its model, segment and latest cells, `None`
/// when the state does not have them).
#[inline]
pub(super) fn query_cooling(cells: Option<&[Cell]>, function: Derived) -> f64 {
    let (Derived::CoolingHours(target), Some([model, _, latest])) = (function, cells) else {
        return f64::NAN;
    };
    if model.n < COOLING_MIN_SAMPLES || latest.n == 0 {
        return f64::NAN;
    }
    cooling_hours(
        f64::from(model.a),
        f64::from(latest.a),
        f64::from(latest.b),
        target,
    )
}

/// Teaches a cooling series from one reading. `head.last_ts` is the start of the open
/// heater-off segment (`i64::MIN`: none) and `head.last` the room temperature then; `segment`
/// holds `n` readings, `a` the newest room temperature and `b` the sum of outdoor temperatures
/// of the segment; `model` holds `n` samples learned and `a` the learned rate per hour.
///
/// A segment runs while the heater is off (`running` 0; a reading without `running` ends it, as
/// nobody knows whether the heater ran). When it ends (the heater starts, or it reaches
/// [`COOLING_MAX_SEGMENT_MS`]), a segment of at least [`COOLING_MIN_SEGMENT_MS`] and
/// [`COOLING_MIN_READINGS`] in which the room cooled gives one sample `k = ln((T0 - To) / (T1 -
/// To)) / hours`, To the segment's mean outdoor temperature, learned when plausible
/// ([`COOLING_RATE_RANGE`]). Heat still stored in the water circuit or the floor, the sun and
/// the occupants slow the cooling seen, so the learned rate errs on the slow side: the
/// forecast errs on the late side, never alarmist.
pub(super) fn learn_cooling(
    head: &mut Head,
    model: &mut Cell,
    segment: &mut Cell,
    ts_ms: i64,
    indoor: f64,
    outdoor: f64,
    running: f64,
) {
    let heater_off = running.is_finite() && running <= 0.5;
    let open = head.last_ts != i64::MIN && head.last.is_finite() && ts_ms >= head.last_ts;
    if open {
        let age = ts_ms - head.last_ts;
        if !heater_off || age >= COOLING_MAX_SEGMENT_MS {
            let end = if heater_off {
                indoor
            } else {
                f64::from(segment.a)
            };
            let hours = age as f64 / 3_600_000.0;
            if age >= COOLING_MIN_SEGMENT_MS && segment.n >= COOLING_MIN_READINGS {
                let outside = f64::from(segment.b) / f64::from(segment.n);
                learn_rate(model, f64::from(head.last), end, outside, hours);
            }
            head.last_ts = i64::MIN;
            head.last = f32::NAN;
            *segment = Cell::EMPTY;
        }
    }
    if !heater_off {
        return;
    }
    if head.last_ts == i64::MIN {
        head.last_ts = ts_ms;
        head.last = indoor as f32;
        *segment = Cell::EMPTY;
    }
    segment.n = segment.n.saturating_add(1);
    segment.a = indoor as f32;
    segment.b += outdoor as f32;
}

/// Adds one cooling sample (room from `start` to `end` °C in `hours`, outside `outdoor`).
fn learn_rate(model: &mut Cell, start: f64, end: f64, outdoor: f64, hours: f64) {
    let (first, last) = (start - outdoor, end - outdoor);
    if first < COOLING_MIN_DIFFERENCE_K || last < COOLING_MIN_DIFFERENCE_K || end >= start {
        return;
    }
    let rate = (first / last).ln() / hours;
    if !rate.is_finite() || !COOLING_RATE_RANGE.contains(&rate) {
        return;
    }
    let known = f64::from(model.a);
    if model.n >= COOLING_MIN_SAMPLES
        && (rate > known * COOLING_OUTLIER_FACTOR || rate * COOLING_OUTLIER_FACTOR < known)
    {
        return;
    }
    let seen = model.n.saturating_add(1);
    let weight = (1.0 / f64::from(seen)).max(COOLING_MIN_WEIGHT);
    let learned = if model.n == 0 {
        rate
    } else {
        f64::from(model.a) + (rate - f64::from(model.a)) * weight
    };
    model.n = seen;
    model.a = learned as f32;
}

/// Hours for a room at `indoor` to cool to `target` with `outdoor` outside at `rate` per hour.
pub fn cooling_hours(rate: f64, indoor: f64, outdoor: f64, target: f64) -> f64 {
    if !(rate.is_finite() && rate > 0.0 && indoor.is_finite() && outdoor.is_finite()) {
        f64::NAN
    } else if indoor <= target {
        0.0
    } else if target <= outdoor {
        f64::INFINITY
    } else {
        ((indoor - outdoor) / (target - outdoor)).ln() / rate
    }
}
