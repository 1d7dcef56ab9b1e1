//! Fleet-relative baselines: how a unit compares with the other units of its profile in the
//! same conditions (`fleet_ratio`, `fleet_diff`, `fleet_z`, `fleet_shift`).
//!
//! A unit's own history cannot tell a slow fault from its normal when the fault began before
//! the history did (a refrigerant leak from the day it was installed), or when the weather
//! moves into conditions the unit has not met yet (the first cold night). Units of one profile
//! (one brand and model, one register map) in the same outdoor temperature and at the same
//! flow temperature behave alike within a spread the fleet itself shows. So the engine learns,
//! per profile and per series, the fleet's mean and spread in bins of outdoor temperature and
//! flow temperature, and each unit is compared with its bin.
//!
//! Per device a fleet series is ring-less: two accumulator cells for the open period (one
//! window long), one result cell (the newest closed period's value and its bin's mean and
//! spread at the time), and the unit's own usual difference from its fleet, learned over its
//! first [`OWN_LEARN_PERIODS`] judged periods and then frozen (`fleet_shift`: a sensor clamped
//! a little hot is the unit, not a fault). Only steady running counts (the heater on for [`STEADY_AFTER_MS`], not
//! defrosting): start-up transients and defrost are the same for a healthy and a faulty unit
//! and would only widen the spread. Each closed period is one sample for the fleet, so every
//! unit weighs about the same whatever its reading rate.
//!
//! The fleet's statistics are robust to the faults they must reveal: a sample is clipped to
//! the bin's mean ± [`CLIP_SIGMAS`] spreads before it is learned, a bin forgets slowly (each
//! sample weighs `1 / MEMORY_PERIODS` once it has seen that many), and a bin is judged only when it has learned
//! [`MIN_BIN_PERIODS`] samples from a profile with at least [`MIN_GROUP_DEVICES`] devices.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::{value_at, Cell, Head, NO_VALUE};

fn no_value() -> u8 {
    NO_VALUE
}

/// Cells of a fleet series per device: the open period's accumulators (`n`, value or heat
/// sum, sample count or electric power sum, outdoor sum; then flow sum), the result, and the
/// unit's own usual difference from its fleet (`n` judged periods learned, `a` the sum of
/// their differences).
pub const FLEET_CELLS: usize = 4;
/// Judged periods that teach a unit its own usual difference from the fleet (a sensor placed
/// a little hot, a unit a little better than its peers); after that it is frozen, so a slow
/// fault is measured against the unit as it was.
pub const OWN_LEARN_PERIODS: u32 = 24;
/// `source` of a fleet series over the COP (heat output over electric power) rather than one
/// canonical value.
pub const COP_SOURCE: u8 = u8::MAX;
/// The heater must have run this long before its readings count as steady, ms: a compressor
/// or burner settles its temperatures within 10-20 minutes of starting.
pub const STEADY_AFTER_MS: i64 = 20 * 60_000;
/// Steady readings a period needs to become a sample.
const MIN_PERIOD_READINGS: u32 = 3;
/// Samples a bin needs before a unit is judged against it.
pub const MIN_BIN_PERIODS: u32 = 30;
/// Devices a profile needs in the fleet before any of its units is judged against it: with
/// fewer, one unit's fault is a large part of its own baseline.
pub const MIN_GROUP_DEVICES: u32 = 8;
/// A bin's mean and spread are exponential averages over about this many samples once it has
/// seen more (the fleet's normal drifts with the season and with repairs).
const MEMORY_PERIODS: f64 = 500.0;
/// A sample is clipped to the bin's mean ± this many spreads before it is learned, so a few
/// faulty units cannot drag the fleet's normal towards themselves.
const CLIP_SIGMAS: f64 = 3.0;
/// Outdoor temperature bins: `OUTDOOR_BIN_C` wide from `OUTDOOR_LOW_C`.
const OUTDOOR_BINS: usize = 12;
const OUTDOOR_LOW_C: f64 = -30.0;
const OUTDOOR_BIN_C: f64 = 4.0;
/// Flow temperature bins: `FLOW_BIN_C` wide from `FLOW_LOW_C` (the first and last take
/// everything below and above).
const FLOW_BINS: usize = 10;
const FLOW_LOW_C: f64 = 20.0;
const FLOW_BIN_C: f64 = 5.0;
/// Bins per profile and series.
pub const BINS: usize = OUTDOOR_BINS * FLOW_BINS;
/// Profiles the engine keeps baselines for; devices of further profiles are not judged.
pub const MAX_GROUPS: usize = 256;

/// Indices into [`wire::values::CANONICAL`] of the values a fleet series reads besides its
/// source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSources {
    pub running: u8,
    pub outdoor: u8,
    pub flow: u8,
    pub defrost: u8,
    pub heat: u8,
    pub electric: u8,
}

/// One bin's learned mean and variance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub n: u32,
    pub mean: f64,
    pub var: f64,
}

impl Bin {
    fn spread(&self) -> f64 {
        self.var.max(0.0).sqrt()
    }

    /// Learns one sample (clipped once the bin is judged).
    fn learn(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        if self.n == 0 {
            *self = Bin {
                n: 1,
                mean: x,
                var: 0.0,
            };
            return;
        }
        let x = if self.n >= MIN_BIN_PERIODS {
            let reach = CLIP_SIGMAS * self.spread();
            x.clamp(self.mean - reach, self.mean + reach)
        } else {
            x
        };
        self.n = self.n.saturating_add(1);
        let weight = 1.0 / f64::from(self.n).min(MEMORY_PERIODS);
        let delta = x - self.mean;
        self.mean += weight * delta;
        self.var = (1.0 - weight) * (self.var + weight * delta * delta);
    }
}

/// The fleet's baselines: the profile groups, and per (group, series) a grid of [`BINS`] bins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "BaselinesData", into = "BaselinesData")]
pub struct FleetBaselines {
    /// Profile name of each group.
    groups: Vec<String>,
    /// Devices currently in each group (rebuilt from readings; not in snapshots).
    devices: Vec<u32>,
    /// Keyed by (group, series source, value subtracted, series window).
    grids: BTreeMap<(u16, u8, u8, i64), Vec<Bin>>,
}

/// [`FleetBaselines`] as plain data: group names instead of indices in the keys.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct BaselinesData {
    /// Profile of each group, in group order, and its device count (rebuilt on restore).
    #[serde(default)]
    groups: Vec<(String, u32)>,
    grids: Vec<GridData>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct GridData {
    profile: String,
    source: u8,
    #[serde(default = "no_value")]
    minus: u8,
    window_ms: i64,
    bins: Vec<Bin>,
}

impl From<BaselinesData> for FleetBaselines {
    fn from(data: BaselinesData) -> Self {
        let mut baselines = FleetBaselines::default();
        for (profile, devices) in data.groups {
            if let Some(group) = baselines.intern(&profile) {
                if let Some(count) = baselines.devices.get_mut(usize::from(group)) {
                    *count = devices;
                }
            }
        }
        for grid in data.grids {
            if grid.bins.len() != BINS {
                continue;
            }
            let Some(group) = baselines.intern(&grid.profile) else {
                continue;
            };
            let bins = grid
                .bins
                .into_iter()
                .map(|b| {
                    if b.mean.is_finite() && b.var.is_finite() {
                        b
                    } else {
                        Bin::default()
                    }
                })
                .collect();
            baselines
                .grids
                .insert((group, grid.source, grid.minus, grid.window_ms), bins);
        }
        baselines
    }
}

impl From<FleetBaselines> for BaselinesData {
    fn from(baselines: FleetBaselines) -> Self {
        let grids = baselines
            .grids
            .into_iter()
            .filter_map(|((group, source, minus, window_ms), bins)| {
                Some(GridData {
                    profile: baselines.groups.get(usize::from(group))?.clone(),
                    source,
                    minus,
                    window_ms,
                    bins,
                })
            })
            .collect();
        let groups = baselines
            .groups
            .into_iter()
            .zip(baselines.devices)
            .collect();
        BaselinesData { groups, grids }
    }
}

/// Where one device's fleet samples go: its profile group and how many devices that group has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FleetSlot {
    pub group: u16,
    pub group_devices: u32,
}

impl FleetBaselines {
    /// Bytes the grids hold (for the memory report).
    pub fn memory_bytes(&self) -> usize {
        self.grids.len() * BINS * std::mem::size_of::<Bin>()
    }

    /// The group of a profile, created if new; `None` beyond [`MAX_GROUPS`].
    fn intern(&mut self, profile: &str) -> Option<u16> {
        if let Some(index) = self.groups.iter().position(|g| g == profile) {
            return u16::try_from(index).ok();
        }
        if self.groups.len() >= MAX_GROUPS {
            return None;
        }
        self.groups.push(profile.to_owned());
        self.devices.push(0);
        u16::try_from(self.groups.len() - 1).ok()
    }

    /// The profile of a group.
    pub fn profile_of(&self, group: u16) -> Option<&str> {
        self.groups.get(usize::from(group)).map(String::as_str)
    }

    /// Whether `group` is the group of `profile` (the engine's cheap check per reading).
    pub fn is_group_of(&self, group: u16, profile: &str) -> bool {
        self.groups
            .get(usize::from(group))
            .is_some_and(|g| g == profile)
    }

    /// Moves a device from group `old` (if any) into the group of `profile`; returns the new
    /// group (`None`: too many profiles, the device is not judged).
    pub fn join(&mut self, old: Option<u16>, profile: &str) -> Option<u16> {
        if let Some(count) = old.and_then(|g| self.devices.get_mut(usize::from(g))) {
            *count = count.saturating_sub(1);
        }
        let group = self.intern(profile)?;
        if let Some(count) = self.devices.get_mut(usize::from(group)) {
            *count = count.saturating_add(1);
        }
        Some(group)
    }

    /// Recounts the devices of every group from their groups (after a restore).
    pub fn recount(&mut self, groups: impl Iterator<Item = u16>) {
        self.devices.iter_mut().for_each(|count| *count = 0);
        for group in groups {
            if let Some(count) = self.devices.get_mut(usize::from(group)) {
                *count = count.saturating_add(1);
            }
        }
    }

    /// The slot of a device in `group`.
    pub fn slot(&self, group: u16) -> FleetSlot {
        FleetSlot {
            group,
            group_devices: self.devices.get(usize::from(group)).copied().unwrap_or(0),
        }
    }

    /// Judges a closed period's sample against its bin and then learns it. Returns the result
    /// cell: `n` 1 with `a` the sample, `b` the bin's mean and `c` its spread when the bin
    /// could judge, else empty.
    fn judge_and_learn(
        &mut self,
        slot: FleetSlot,
        series: (u8, u8, i64),
        x: f64,
        outdoor: f64,
        flow: f64,
    ) -> Cell {
        let Some(bin_index) = bin_of(outdoor, flow) else {
            return Cell::EMPTY;
        };
        if usize::from(slot.group) >= self.groups.len() {
            return Cell::EMPTY;
        }
        let grid = self
            .grids
            .entry((slot.group, series.0, series.1, series.2))
            .or_insert_with(|| vec![Bin::default(); BINS]);
        let Some(bin) = grid.get_mut(bin_index) else {
            return Cell::EMPTY;
        };
        let result = if bin.n >= MIN_BIN_PERIODS && slot.group_devices >= MIN_GROUP_DEVICES {
            Cell {
                n: 1,
                a: x as f32,
                b: bin.mean as f32,
                c: bin.spread() as f32,
            }
        } else {
            Cell::EMPTY
        };
        bin.learn(x);
        result
    }
}

/// The bin of an outdoor and a flow temperature; `None` for non-finite input.
fn bin_of(outdoor: f64, flow: f64) -> Option<usize> {
    if !outdoor.is_finite() || !flow.is_finite() {
        return None;
    }
    let band = |x: f64, low: f64, width: f64, count: usize| {
        let b = ((x - low) / width).floor();
        if b < 0.0 {
            0
        } else {
            (b as usize).min(count - 1)
        }
    };
    let o = band(outdoor, OUTDOOR_LOW_C, OUTDOOR_BIN_C, OUTDOOR_BINS);
    let f = band(flow, FLOW_LOW_C, FLOW_BIN_C, FLOW_BINS);
    Some(o * FLOW_BINS + f)
}

/// Feeds one reading to a fleet series. `head.bucket` is the open period (`ts / window`),
/// `head.last_ts` when the heater was last seen switching on (`i64::MIN`: off or unknown);
/// `cells` are the two accumulators and the result.
#[allow(clippy::too_many_arguments)]
pub(super) fn learn_fleet(
    head: &mut Head,
    cells: &mut [Cell],
    sources: FleetSources,
    (source, minus): (u8, u8),
    window_ms: i64,
    ts_ms: i64,
    values: &[f64],
    fleet: Option<(&mut FleetBaselines, FleetSlot)>,
) {
    let [acc, flows, result, own] = cells else {
        return;
    };
    let value = |i: u8| value_at(values, i);
    let period = ts_ms.div_euclid(window_ms.max(1));
    if head.bucket == i64::MIN {
        head.bucket = period;
    } else if period > head.bucket {
        // The open period closes: it becomes a sample when it was the one just before and held
        // enough steady readings; any gap leaves no result (the device was silent).
        *result = Cell::EMPTY;
        if period == head.bucket.saturating_add(1) && acc.n >= MIN_PERIOD_READINGS && acc.b > 0.0 {
            let n = f64::from(acc.n);
            let x = f64::from(acc.a) / f64::from(acc.b);
            let outdoor = f64::from(acc.c) / n;
            let flow = f64::from(flows.a) / n;
            if let Some((baselines, slot)) = fleet {
                *result =
                    baselines.judge_and_learn(slot, (source, minus, window_ms), x, outdoor, flow);
                if result.n > 0 && own.n < OWN_LEARN_PERIODS {
                    own.n += 1;
                    own.a += result.a - result.b;
                }
            }
        }
        *acc = Cell::EMPTY;
        *flows = Cell::EMPTY;
        head.bucket = period;
    }
    let running = value(sources.running);
    if running.is_nan() || running <= 0.5 {
        head.last_ts = i64::MIN;
        return;
    }
    if head.last_ts == i64::MIN {
        head.last_ts = ts_ms;
    }
    if ts_ms.saturating_sub(head.last_ts) < STEADY_AFTER_MS || value(sources.defrost) > 0.5 {
        return;
    }
    let (outdoor, flow) = (value(sources.outdoor), value(sources.flow));
    if !outdoor.is_finite() || !flow.is_finite() {
        return;
    }
    let (numerator, denominator) = if source == COP_SOURCE {
        let (heat, electric) = (value(sources.heat), value(sources.electric));
        if !heat.is_finite() || electric.is_nan() || electric < 1.0 {
            return;
        }
        (heat, electric)
    } else {
        let x = if minus == NO_VALUE {
            value(source)
        } else {
            value(source) - value(minus)
        };
        if !x.is_finite() {
            return;
        }
        (x, 1.0)
    };
    acc.n = acc.n.saturating_add(1);
    acc.a += numerator as f32;
    acc.b += denominator as f32;
    acc.c += outdoor as f32;
    flows.n = flows.n.saturating_add(1);
    flows.a += flow as f32;
}

/// What a fleet query asks of the result cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetMeasure {
    /// The unit's value over the fleet's mean.
    Ratio,
    /// The unit's value minus the fleet's mean.
    Diff,
    /// The difference in fleet spreads.
    Z,
    /// The difference minus the unit's own usual difference (once learned).
    Shift,
}

/// A fleet query on the result cell; NaN when the newest period could not be judged.
pub(super) fn fleet_measure(result: &Cell, own: &Cell, measure: FleetMeasure) -> f64 {
    if result.n == 0 {
        return f64::NAN;
    }
    let (x, mean, spread) = (
        f64::from(result.a),
        f64::from(result.b),
        f64::from(result.c),
    );
    match measure {
        FleetMeasure::Ratio => {
            if mean.abs() < 1e-9 {
                f64::NAN
            } else {
                x / mean
            }
        }
        FleetMeasure::Diff => x - mean,
        FleetMeasure::Shift => {
            if own.n < OWN_LEARN_PERIODS {
                f64::NAN
            } else {
                (x - mean) - f64::from(own.a) / f64::from(own.n)
            }
        }
        FleetMeasure::Z => {
            // A spread of zero (units that never differ) would make any difference infinite:
            // a floor of 0.1 % of the mean keeps the figure finite; rules pair a z with a
            // ratio or a difference anyway.
            let floor = (mean.abs() * 1e-3).max(1e-6);
            (x - mean) / spread.max(floor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bin_learns_mean_and_spread_and_clips_outliers() {
        let mut bin = Bin::default();
        for i in 0..200 {
            bin.learn(if i % 2 == 0 { 3.0 } else { 3.2 });
        }
        assert!((bin.mean - 3.1).abs() < 0.02, "{bin:?}");
        assert!((bin.spread() - 0.1).abs() < 0.02, "{bin:?}");
        // A faulty unit's samples are clipped at 3 spreads: 50 of them move the mean little.
        for _ in 0..50 {
            bin.learn(1.0);
        }
        assert!(bin.mean > 2.8, "{bin:?}");
        for x in [f64::NAN, f64::INFINITY] {
            bin.learn(x);
        }
        assert!(bin.mean.is_finite() && bin.var.is_finite());
    }

    #[test]
    fn baselines_round_trip_through_json_with_their_groups() {
        let mut baselines = FleetBaselines::default();
        let a = baselines.join(None, "brand-a").expect("group");
        let _ = baselines.join(None, "brand-b");
        let _ = baselines.join(None, "brand-a");
        let slot = baselines.slot(a);
        assert_eq!(slot.group_devices, 2);
        let _ = baselines.judge_and_learn(slot, (COP_SOURCE, NO_VALUE, 3_600_000), 3.0, -5.0, 40.0);
        let json = serde_json::to_string(&baselines).expect("serialises");
        let back: FleetBaselines = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, baselines);
        assert_eq!(back.profile_of(a), Some("brand-a"));
    }

    #[test]
    fn bins_cover_every_finite_condition() {
        assert_eq!(bin_of(-100.0, -100.0), Some(0));
        assert_eq!(bin_of(100.0, 100.0), Some(BINS - 1));
        assert_eq!(bin_of(f64::NAN, 40.0), None);
        assert_ne!(bin_of(-10.0, 35.0), bin_of(-10.0, 45.0));
        assert_ne!(bin_of(-10.0, 35.0), bin_of(0.0, 35.0));
    }

    #[test]
    fn measures_are_nan_without_a_judged_period_and_finite_with_one() {
        assert!(fleet_measure(&Cell::EMPTY, &Cell::EMPTY, FleetMeasure::Ratio).is_nan());
        let cell = Cell {
            n: 1,
            a: 2.4,
            b: 3.0,
            c: 0.0,
        };
        assert!((fleet_measure(&cell, &Cell::EMPTY, FleetMeasure::Ratio) - 0.8).abs() < 1e-6);
        assert!((fleet_measure(&cell, &Cell::EMPTY, FleetMeasure::Diff) + 0.6).abs() < 1e-6);
        assert!(fleet_measure(&cell, &Cell::EMPTY, FleetMeasure::Z).is_finite());
    }

    fn sources() -> FleetSources {
        FleetSources {
            running: 0,
            outdoor: 1,
            flow: 2,
            defrost: 3,
            heat: 4,
            electric: 5,
        }
    }

    proptest::proptest! {
        /// Whatever the readings, every learned mean and spread and every measure stays finite
        /// (or unknown): ten devices of one profile, hostile numbers included.
        #[test]
        fn learned_baselines_stay_finite_on_hostile_input(
            readings in proptest::collection::vec(
                (0usize..10, 0i64..40, proptest::collection::vec(
                    proptest::prop_oneof![
                        -40.0..120.0f64,
                        proptest::num::f64::ANY,
                        proptest::strategy::Just(1.0),
                    ],
                    6,
                )),
                0..400,
            ),
        ) {
            let mut baselines = FleetBaselines::default();
            let mut devices = vec![(Head::EMPTY, [Cell::EMPTY; FLEET_CELLS], None); 10];
            let mut clock = [0i64; 10];
            for (device, step, values) in readings {
                let (head, cells, group) = &mut devices[device];
                let group = *group.get_or_insert_with(|| baselines.join(None, "p").unwrap_or(0));
                clock[device] += step * 5 * 60_000;
                let slot = baselines.slot(group);
                for source in [(COP_SOURCE, NO_VALUE), (2, NO_VALUE), (4, 1)] {
                    learn_fleet(
                        head,
                        cells,
                        sources(),
                        source,
                        3_600_000,
                        clock[device],
                        &values,
                        Some((&mut baselines, slot)),
                    );
                }
                for measure in [
                    FleetMeasure::Ratio,
                    FleetMeasure::Diff,
                    FleetMeasure::Z,
                    FleetMeasure::Shift,
                ] {
                    let x = fleet_measure(&cells[2], &cells[3], measure);
                    proptest::prop_assert!(x.is_nan() || x.is_finite(), "{x}");
                }
            }
            for bins in baselines.grids.values() {
                for bin in bins {
                    proptest::prop_assert!(bin.mean.is_finite() && bin.var.is_finite() && bin.var >= 0.0);
                }
            }
        }
    }
}
