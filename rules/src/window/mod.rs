//! Derived values over event-time windows, in bounded memory per device.
//!
//! Every windowed function a rule set uses (`avg(flow_temp_c, 1h)`, `starts(running, 1h)`,
//! `cop(6h)`...) becomes one [`SeriesSpec`]; equal specs are shared by all rules. Per device a
//! series is a ring of [`BUCKETS`] buckets, each covering `window / BUCKETS` of event time and
//! holding a few aggregates ([`Cell`]: count, sum, min, max or their equivalents), plus a small
//! head (newest bucket, last value). Memory per device is therefore fixed by the rule set, not
//! by the reading rate: a device reporting every second costs the same as one reporting every
//! minute. The price is resolution: a window is the current bucket plus the previous
//! `BUCKETS - 1`, so it reaches back between `window - window/BUCKETS` and `window`.
//!
//! Readings reach a series in event-time order (the engine's reorder buffer sees to it). A
//! reading older than the newest bucket is counted in the newest bucket.

use serde::{Deserialize, Serialize};
use wire::{DeviceKind, FaultCategory};

mod peers;
mod ringless;

use peers::{fleet_measure, learn_fleet};
pub use peers::{FleetBaselines, FleetMeasure, FleetSlot, FleetSources, COP_SOURCE, FLEET_CELLS};
use ringless::{note_change, query_cooling, unchanged_hours, update_cooling};
pub use ringless::{COOLING_CELLS, COOLING_MIN_SAMPLES};

/// Buckets per series.
pub const BUCKETS: usize = 12;

/// Outdoor temperature bands of the COP baseline: `BAND_WIDTH_C` wide from `BAND_LOW_C`.
pub const BASELINE_BANDS: usize = 12;
const BAND_LOW_C: f64 = -30.0;
const BAND_WIDTH_C: f64 = 4.0;
/// Periods (closed buckets) per band that make the baseline; after that it is frozen.
pub const BASELINE_LEARN_PERIODS: u32 = 24;
/// Periods per band needed before `cop_ratio` is known.
pub const BASELINE_MIN_PERIODS: u32 = 8;
/// Samples a closed bucket needs to count as a baseline period.
const BASELINE_MIN_SAMPLES: u32 = 3;

/// Largest magnitude a series accepts (larger values are treated as missing).
const MAX_MAGNITUDE: f64 = 1.0e12;

/// A gap between two readings longer than this is not counted as time in a state (the device
/// was silent; nobody knows what it did).
const SHARE_MAX_GAP_MS: i64 = 15 * 60_000;

/// Indices into [`wire::values::CANONICAL`] of the values a cooling series reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoolingSources {
    pub indoor: u8,
    pub outdoor: u8,
    pub running: u8,
}

/// Indices into [`wire::values::CANONICAL`] of the values the COP series reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopSources {
    pub heat: u8,
    pub electric: u8,
    pub running: u8,
    pub outdoor: u8,
    /// `defrost_active`: readings while defrosting are left out.
    pub defrost: u8,
}

/// What a series aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SeriesKind {
    /// Count, sum, min, max of a value: `min`, `max`, `avg`, `count`, `rate`, `slope_per_day`,
    /// `hours_to`.
    Stats,
    /// A value and a second one it depends on ([`SeriesSpec::minus`]), summed per bucket over
    /// the readings that have both: `partial_slope_per_day` (the first's trend with its linear
    /// dependence on the second taken out).
    Paired,
    /// Rising edges of a 0/1 value (above 0.5): `starts`.
    Starts,
    /// Increase of a counter (a decrease is a reset: the new value counts): `increase`.
    Increase,
    /// Time share of a 0/1 value being on: `share`.
    Share,
    /// Appearances of a fault whose category is in the mask (bit = category index; 0 = any):
    /// `trips`.
    Trips(u32),
    /// Heat output over electric power while running: `cop`, `cop_ratio`.
    Cop,
    /// The house's own cooling rate, learned from the times its heater was off (Newton's law
    /// of cooling, `dT/dt = -k (T_in - T_out)`), and the newest indoor and outdoor temperatures:
    /// `cooling_hours`. No ring: [`COOLING_CELLS`] cells and the head (72 bytes per device).
    Cooling,
    /// How long a value has stayed exactly as it is: `unchanged_for`. No ring: the head holds
    /// the value, when it last changed and the newest reading's time (24 bytes per device).
    Unchanged,
    /// A value (or the COP, source [`COP_SOURCE`]) in steady running, per period of one
    /// window, judged against the fleet of the device's profile in the same conditions:
    /// `fleet_ratio`, `fleet_diff`, `fleet_z`. No ring: [`FLEET_CELLS`] cells and the head.
    Fleet,
}

/// One windowed series: what, over which value, how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesSpec {
    pub kind: SeriesKind,
    /// Canonical value index (unused for `Trips` and `Cop`).
    pub source: u8,
    /// Fleet series: a canonical value subtracted from `source` (`discharge_temp_c -
    /// flow_temp_c`); a paired series: the value `source` depends on; [`NO_VALUE`] for none
    /// and for every other kind.
    pub minus: u8,
    pub window_ms: i64,
}

/// [`SeriesSpec::minus`] when nothing is subtracted.
pub const NO_VALUE: u8 = u8::MAX;

impl SeriesSpec {
    /// Length of one bucket, at least 1 ms.
    pub fn bucket_ms(&self) -> i64 {
        let buckets = BUCKETS as i64;
        (self.window_ms.saturating_add(buckets - 1) / buckets).max(1)
    }
}

/// The series of a rule set, deduplicated, with their layout in a device's cell array.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesTable {
    specs: Vec<SeriesSpec>,
    /// Whether the series keeps a COP baseline (some rule uses `cop_ratio` on it).
    baseline: Vec<bool>,
    /// Bucket length of each series ([`SeriesSpec::bucket_ms`]).
    bucket_ms: Vec<i64>,
    cop: Option<CopSources>,
    cooling: Option<CoolingSources>,
    fleet: Option<FleetSources>,
    /// Some series is a fleet series (kept by [`SeriesTable::layout`]).
    uses_fleet: bool,
    /// The outdoor temperature's canonical index when some rule reads `outdoor_estimate()`
    /// (the engine then keeps its villages' outdoor readings).
    village_outdoor: Option<u8>,
    /// Per series: whether heat pumps / gas boilers need it (some rule for that kind reads it).
    /// Empty: every kind needs every series.
    needed: Vec<[bool; 2]>,
    /// Per series: the longer series of the same value it is read from instead of holding its
    /// own ring, and how many of that series' newest buckets make its window
    /// ([`SeriesTable::share_windows`]). `None` (or empty): held on its own.
    shared: Vec<Option<(u16, u8)>>,
    /// The layouts of a device's state: every series (index 0: a state of no kind), the series
    /// heat-pump rules read (1), those gas-boiler rules read (2).
    layouts: [Layout; 3],
}

/// A window read from a longer series' ring covers at least this many of its buckets, so it
/// reaches back within a quarter of its own length of what it asks.
const MIN_SHARED_BUCKETS: i64 = 4;

/// Which series a device's [`SeriesState`] holds, and where.
#[derive(Debug, Clone, Default, PartialEq)]
struct Layout {
    /// The series held, in series order: position `p` is head `p` of the state.
    series: Vec<u16>,
    /// Per series of the table: its position in `series` ([`ABSENT`] when not held) and first
    /// cell, so a query finds both with one load.
    position: Vec<(u16, u32)>,
    /// First cell of each position.
    offsets: Vec<usize>,
    /// Cells of the state.
    cells: usize,
    /// One cell in each cache line of the rings ([`SeriesTable::touch`]).
    touch_cells: Vec<u32>,
}

/// [`Layout::position`] of a series the layout does not hold.
const ABSENT: u16 = u16::MAX;

impl Layout {
    /// The position of series `index`, if held.
    fn held_at(&self, index: usize) -> Option<usize> {
        let (position, _) = *self.position.get(index)?;
        (position != ABSENT).then_some(usize::from(position))
    }
}

impl SeriesTable {
    /// The index of `spec`, adding it if new.
    pub fn intern(&mut self, spec: SeriesSpec) -> u16 {
        if let Some(index) = self.specs.iter().position(|s| *s == spec) {
            return index as u16;
        }
        self.specs.push(spec);
        self.baseline.push(false);
        self.layout();
        (self.specs.len() - 1) as u16
    }

    /// Marks a COP series as keeping a baseline.
    pub fn keep_baseline(&mut self, index: u16) {
        if let Some(flag) = self.baseline.get_mut(usize::from(index)) {
            *flag = true;
        }
        self.layout();
    }

    /// Lets a statistics series that is read only through `min`, `max`, `avg` or `count`
    /// (`aggregates_only[i]`) be read from a longer statistics series of the same value
    /// instead of holding a ring of its own: its window is that series' newest
    /// `ceil(window / bucket)` buckets, at least [`MIN_SHARED_BUCKETS`] of them, so it reaches
    /// back between one of those buckets less and its window rounded up to a whole bucket
    /// (`max(indoor_temp_c, 45m)` beside a 2-hour series of 10-minute buckets: 40 to 50
    /// minutes, against 41¼ to 45 minutes on a ring of its own). Of several longer series the
    /// one with the shortest buckets serves. Call before [`SeriesTable::set_needed`].
    pub fn share_windows(&mut self, aggregates_only: &[bool]) {
        let mut shared: Vec<Option<(u16, u8)>> = vec![None; self.specs.len()];
        // Longest windows first, so a series that serves another is never itself shared.
        let mut order: Vec<usize> = (0..self.specs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(self.specs[i].window_ms));
        for &i in &order {
            let short = self.specs[i];
            if short.kind != SeriesKind::Stats
                || short.minus != NO_VALUE
                || !aggregates_only.get(i).copied().unwrap_or(false)
            {
                continue;
            }
            let serving = self
                .specs
                .iter()
                .enumerate()
                .filter(|&(j, long)| {
                    j != i
                        && shared[j].is_none()
                        && long.kind == SeriesKind::Stats
                        && long.minus == NO_VALUE
                        && long.source == short.source
                        && long.window_ms > short.window_ms
                        && long.bucket_ms().saturating_mul(MIN_SHARED_BUCKETS) <= short.window_ms
                })
                .min_by_key(|(_, long)| long.bucket_ms());
            if let Some((j, long)) = serving {
                let buckets = (short.window_ms + long.bucket_ms() - 1) / long.bucket_ms();
                if let (Ok(j), Ok(buckets)) = (u16::try_from(j), u8::try_from(buckets)) {
                    shared[i] = Some((j, buckets.min(BUCKETS as u8)));
                }
            }
        }
        self.shared = shared;
        self.layout();
    }

    /// The series `index` is read from and how many of its newest buckets (all of its own).
    fn source_of(&self, index: usize) -> (usize, usize) {
        match self.shared.get(index).copied().flatten() {
            Some((serving, buckets)) => (usize::from(serving), usize::from(buckets)),
            None => (index, BUCKETS),
        }
    }

    /// Records which device kinds need which series: a device of a kind holds (and updates)
    /// only the series its kind needs. A series read from a longer one is held by none: the
    /// kinds that read it need the longer one.
    pub fn set_needed(&mut self, mut needed: Vec<[bool; 2]>) {
        for (index, serving) in self.shared.iter().enumerate() {
            let Some((serving, _)) = serving else {
                continue;
            };
            let wants = needed.get(index).copied().unwrap_or([true; 2]);
            if let Some(slot) = needed.get_mut(usize::from(*serving)) {
                slot[0] |= wants[0];
                slot[1] |= wants[1];
            }
            if let Some(slot) = needed.get_mut(index) {
                *slot = [false; 2];
            }
        }
        self.needed = needed;
        self.layout();
    }

    /// Whether devices of kind slot `kind` (`0` heat pump, `1` gas boiler) need series `index`.
    fn is_needed(&self, index: usize, kind: usize) -> bool {
        if self.shared.get(index).is_some_and(Option::is_some) {
            return false;
        }
        self.needed
            .get(index)
            .and_then(|n| n.get(kind).copied())
            .unwrap_or(true)
    }

    pub fn set_cop_sources(&mut self, sources: CopSources) {
        self.cop = Some(sources);
    }

    pub fn set_cooling_sources(&mut self, sources: CoolingSources) {
        self.cooling = Some(sources);
    }

    pub fn set_fleet_sources(&mut self, sources: FleetSources) {
        self.fleet = Some(sources);
    }

    /// Whether some series compares devices with their fleet (the engine then keeps
    /// [`FleetBaselines`]).
    pub fn uses_fleet(&self) -> bool {
        self.uses_fleet
    }

    /// Marks the outdoor temperature (canonical index `source`) as estimated per village.
    pub fn set_village_outdoor_source(&mut self, source: u8) {
        self.village_outdoor = Some(source);
    }

    /// The outdoor temperature's canonical index when some rule estimates it per village.
    pub fn village_outdoor_source(&self) -> Option<u8> {
        self.village_outdoor
    }

    fn layout(&mut self) {
        self.bucket_ms = self.specs.iter().map(SeriesSpec::bucket_ms).collect();
        let mut layouts: [Layout; 3] = Default::default();
        for (slot, layout) in layouts.iter_mut().enumerate() {
            layout.position = vec![(ABSENT, 0); self.specs.len()];
            for index in 0..self.specs.len() {
                if slot > 0 && !self.is_needed(index, slot - 1) {
                    continue;
                }
                let (Ok(series), Ok(position), Ok(offset)) = (
                    u16::try_from(index),
                    u16::try_from(layout.series.len()),
                    u32::try_from(layout.cells),
                ) else {
                    continue;
                };
                layout.position[index] = (position, offset);
                layout.series.push(series);
                layout.offsets.push(layout.cells);
                let width = self.width_of(index);
                if width >= BUCKETS {
                    // A ring is 12 cells of 16 bytes: cells 0, 4, 8 and 11 cover its lines.
                    for cell in [0, 4, 8, BUCKETS - 1] {
                        layout
                            .touch_cells
                            .extend(u32::try_from(layout.cells + cell).ok());
                    }
                }
                layout.cells += width;
            }
        }
        self.layouts = layouts;
        self.uses_fleet = self.specs.iter().any(|s| s.kind == SeriesKind::Fleet);
    }

    /// The layout of a state holding the series of `kind` (every series for none).
    fn layout_for(&self, kind: Option<DeviceKind>) -> &Layout {
        &self.layouts[kind.map_or(0, |k| 1 + crate::parse::kind_slot(k))]
    }

    /// The series (indices) a state for `kind` holds, in the order of its heads.
    pub fn held(&self, kind: Option<DeviceKind>) -> &[u16] {
        &self.layout_for(kind).series
    }

    /// Where series `index` is in a state for `kind`: its head, first cell and cells; `None`
    /// when such a state does not hold it.
    pub fn slot_of(&self, kind: Option<DeviceKind>, index: usize) -> Option<(usize, usize, usize)> {
        let layout = self.layout_for(kind);
        let position = layout.held_at(index)?;
        let offset = *layout.offsets.get(position)?;
        Some((position, offset, self.width_of(index)))
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn specs(&self) -> &[SeriesSpec] {
        &self.specs
    }

    /// A stable name per series (kind, source, window, baseline), so snapshots can be restored
    /// under a changed rule set.
    pub fn keys(&self) -> Vec<String> {
        self.specs
            .iter()
            .zip(&self.baseline)
            .map(|(spec, baseline)| {
                let kind = match spec.kind {
                    SeriesKind::Stats => "stats".to_owned(),
                    SeriesKind::Paired => "paired".to_owned(),
                    SeriesKind::Starts => "starts".to_owned(),
                    SeriesKind::Increase => "increase".to_owned(),
                    SeriesKind::Share => "share".to_owned(),
                    SeriesKind::Trips(mask) => format!("trips{mask}"),
                    SeriesKind::Cop => "cop".to_owned(),
                    SeriesKind::Cooling => "cooling".to_owned(),
                    SeriesKind::Unchanged => "unchanged".to_owned(),
                    SeriesKind::Fleet => "fleet".to_owned(),
                };
                let baseline = if *baseline && spec.kind == SeriesKind::Cop {
                    ":baseline"
                } else {
                    ""
                };
                let source = if spec.minus == NO_VALUE {
                    spec.source.to_string()
                } else {
                    format!("{}-{}", spec.source, spec.minus)
                };
                format!("{kind}:{source}:{}{baseline}", spec.window_ms)
            })
            .collect()
    }

    /// First cell of series `index` in a state holding every series.
    pub fn offset_of(&self, index: usize) -> usize {
        let layout = self.layout_for(None);
        layout.offsets.get(index).copied().unwrap_or(layout.cells)
    }

    /// Cells of series `index`.
    pub fn width_of(&self, index: usize) -> usize {
        match (self.specs.get(index), self.baseline.get(index)) {
            (Some(spec), Some(true)) if spec.kind == SeriesKind::Cop => BUCKETS + BASELINE_BANDS,
            (Some(spec), _) if spec.kind == SeriesKind::Cooling => COOLING_CELLS,
            (Some(spec), _) if spec.kind == SeriesKind::Unchanged => 0,
            (Some(spec), _) if spec.kind == SeriesKind::Fleet => FLEET_CELLS,
            (Some(_), _) => BUCKETS,
            _ => 0,
        }
    }

    /// Cells a device needs for every series.
    pub fn cell_count(&self) -> usize {
        self.layout_for(None).cells
    }

    /// Heads and cells of a state for `kind` (every series for none).
    pub fn state_size(&self, kind: Option<DeviceKind>) -> (usize, usize) {
        let layout = self.layout_for(kind);
        (layout.series.len(), layout.cells)
    }

    /// A fresh state holding every series.
    pub fn new_state(&self) -> SeriesState {
        self.fresh_state(None)
    }

    /// A fresh state for a device of `kind`: only the series some rule for that kind reads.
    pub fn new_state_for(&self, kind: DeviceKind) -> SeriesState {
        self.fresh_state(Some(kind))
    }

    fn fresh_state(&self, kind: Option<DeviceKind>) -> SeriesState {
        let (heads, cells) = self.state_size(kind);
        SeriesState {
            heads: vec![Head::EMPTY; heads],
            cells: vec![Cell::EMPTY; cells],
            kind,
        }
    }

    /// Feeds one reading (dense canonical values, NaN when missing) to every series.
    pub fn update(
        &self,
        state: &mut SeriesState,
        ts_ms: i64,
        values: &[f64],
        fault: Option<(u32, FaultCategory)>,
    ) {
        self.update_for(state, None, ts_ms, values, fault);
    }

    /// [`SeriesTable::update`] for a device of `kind` (`0` heat pump, `1` gas boiler): series
    /// no rule of that kind reads are skipped (a state for one kind holds no others).
    pub fn update_for(
        &self,
        state: &mut SeriesState,
        kind: Option<usize>,
        ts_ms: i64,
        values: &[f64],
        fault: Option<(u32, FaultCategory)>,
    ) {
        self.update_with(state, kind, ts_ms, values, fault, None);
    }

    /// [`SeriesTable::update_for`] that also judges fleet series against (and teaches) the
    /// fleet's baselines for the device's profile group.
    pub fn update_with(
        &self,
        state: &mut SeriesState,
        kind: Option<usize>,
        ts_ms: i64,
        values: &[f64],
        fault: Option<(u32, FaultCategory)>,
        mut fleet: Option<(&mut FleetBaselines, FleetSlot)>,
    ) {
        let layout = self.layout_for(state.kind);
        if state.heads.len() != layout.series.len() || state.cells.len() != layout.cells {
            *state = self.fresh_state(state.kind);
        }
        let reading = Reading {
            ts_ms,
            values,
            fault,
        };
        let full = state.kind.is_none();
        for (position, index) in layout.series.iter().enumerate() {
            let index = usize::from(*index);
            let (Some(spec), Some(offset)) = (self.specs.get(index), layout.offsets.get(position))
            else {
                continue;
            };
            if let (true, Some(kind)) = (full, kind) {
                if !self.is_needed(index, kind) {
                    continue;
                }
            }
            let offset = *offset;
            if spec.kind == SeriesKind::Unchanged {
                if let (Some(head), Some(x)) = (
                    state.heads.get_mut(position),
                    values.get(usize::from(spec.source)).copied(),
                ) {
                    note_change(head, ts_ms, x);
                }
                continue;
            }
            if spec.kind == SeriesKind::Fleet {
                let (Some(sources), Some(head), Some(cells)) = (
                    self.fleet,
                    state.heads.get_mut(position),
                    state.cells.get_mut(offset..offset + FLEET_CELLS),
                ) else {
                    continue;
                };
                learn_fleet(
                    head,
                    cells,
                    sources,
                    (spec.source, spec.minus),
                    spec.window_ms,
                    ts_ms,
                    values,
                    fleet.as_mut().map(|(b, s)| (&mut **b, *s)),
                );
                continue;
            }
            if spec.kind == SeriesKind::Cooling {
                if let (Some(sources), Some(head), Some(cells)) = (
                    self.cooling,
                    state.heads.get_mut(position),
                    state.cells.get_mut(offset..offset + COOLING_CELLS),
                ) {
                    update_cooling(sources, head, cells, &reading);
                }
                continue;
            }
            let (head, cells) = (&mut state.heads[position], &mut state.cells[offset..]);
            self.update_ring(spec, index, head, cells, &reading);
        }
    }

    /// Feeds a reading to series `index` (`spec`), kept in a ring of buckets: the ring moves on
    /// to the reading's bucket (a closed COP bucket teaches the baseline), and the reading is
    /// added to that bucket. `cells`: the series' ring, then a COP series' baseline bands.
    fn update_ring(
        &self,
        spec: &SeriesSpec,
        index: usize,
        head: &mut Head,
        cells: &mut [Cell],
        reading: &Reading<'_>,
    ) {
        let baseline = self.baseline[index];
        let bucket_ms = self.bucket_ms[index];
        let (ring, bands) = cells.split_at_mut(BUCKETS);
        let bands = if baseline && spec.kind == SeriesKind::Cop {
            &mut bands[..BASELINE_BANDS]
        } else {
            &mut bands[..0]
        };
        let ts_ms = reading.ts_ms;
        let closed = advance(head, ring, bucket_ms, ts_ms);
        if let Some(closed) = closed {
            if spec.kind == SeriesKind::Cop && !bands.is_empty() {
                learn_baseline(bands, &closed);
            }
        }
        if usize::from(head.pos) >= BUCKETS {
            // Only a corrupted snapshot can get here: start the series afresh.
            *head = Head::EMPTY;
            advance(head, ring, bucket_ms, ts_ms);
        }
        let Some(cell) = ring.get_mut(usize::from(head.pos)) else {
            return;
        };
        // Values beyond any physical range are treated as missing, so every stored number
        // stays finite (snapshots are JSON, which has no infinity).
        let value = |i: u8| value_at(reading.values, i);
        match spec.kind {
            SeriesKind::Stats => add_stats(cell, head, value(spec.source)),
            SeriesKind::Paired => add_paired(cell, head, value(spec.source), value(spec.minus)),
            SeriesKind::Starts => add_start(cell, head, value(spec.source)),
            SeriesKind::Increase => add_increase(cell, head, value(spec.source)),
            SeriesKind::Share => add_share(cell, head, value(spec.source), ts_ms),
            SeriesKind::Trips(mask) => add_trip(cell, head, mask, reading.fault),
            SeriesKind::Cop => {
                if let Some(sources) = self.cop {
                    add_cop(cell, sources, reading.values);
                }
            }
            SeriesKind::Unchanged | SeriesKind::Cooling | SeriesKind::Fleet => {}
        }
    }

    /// Reads one word of every cache line of the series a state holds (for a device of a
    /// kind, those its rules update and read), and returns them mixed: touching them early
    /// lets the loads run in parallel. Changes nothing.
    pub fn touch(&self, state: &SeriesState) -> u64 {
        let heads = state
            .heads
            .iter()
            .step_by(2)
            .fold(0u64, |acc, head| acc ^ head.bucket as u64);
        let cells = &self.layout_for(state.kind).touch_cells;
        cells.iter().fold(heads, |acc, cell| {
            acc ^ state
                .cells
                .get(*cell as usize)
                .map_or(0, |cell| u64::from(cell.n))
        })
    }

    /// Evaluates a derived function on series `index` as of the device's newest reading.
    /// NaN when there is not enough data, and when the state does not hold the series (a
    /// state for a device of one kind holds only the series of rules for that kind).
    pub fn query(&self, state: &SeriesState, index: u16, function: Derived) -> f64 {
        let (index, buckets) = self.source_of(usize::from(index));
        let layout = self.layout_for(state.kind);
        let (position, offset) = layout.position.get(index).copied().unwrap_or((ABSENT, 0));
        let (Some(spec), Some(head), false) = (
            self.specs.get(index),
            state.heads.get(usize::from(position)),
            position == ABSENT,
        ) else {
            return f64::NAN;
        };
        let offset = offset as usize;
        if spec.kind == SeriesKind::Unchanged {
            return match function {
                Derived::UnchangedHours => unchanged_hours(head),
                _ => f64::NAN,
            };
        }
        if spec.kind == SeriesKind::Fleet {
            return match (function, state.cells.get(offset..offset + FLEET_CELLS)) {
                (Derived::Fleet(measure), Some([_, _, result, own])) => {
                    fleet_measure(result, own, measure)
                }
                _ => f64::NAN,
            };
        }
        if spec.kind == SeriesKind::Cooling {
            return query_cooling(state.cells.get(offset..offset + COOLING_CELLS), function);
        }
        query_ring(spec, head, &state.cells, offset, buckets, function)
    }
}

/// One reading as the series take it: its event time, its dense canonical values (NaN when
/// missing) and its fault's code and category.
struct Reading<'a> {
    ts_ms: i64,
    values: &'a [f64],
    fault: Option<(u32, FaultCategory)>,
}

/// Adds a value to a statistics bucket (count, sum, min, max).
fn add_stats(cell: &mut Cell, head: &mut Head, x: f64) {
    if x.is_finite() {
        let x = x as f32;
        if cell.n == 0 {
            cell.b = x;
            cell.c = x;
        } else {
            cell.b = cell.b.min(x);
            cell.c = cell.c.max(x);
        }
        cell.n = cell.n.saturating_add(1);
        cell.a += x;
        head.last = x;
    }
}

/// Adds a value `y` and the value `x` it depends on to a paired bucket (count and both sums),
/// when the reading has both.
fn add_paired(cell: &mut Cell, head: &mut Head, y: f64, x: f64) {
    if y.is_finite() && x.is_finite() {
        cell.n = cell.n.saturating_add(1);
        cell.a += y as f32;
        cell.b += x as f32;
        head.last = y as f32;
    }
}

/// Counts a rising edge (0 to 1) of a 0/1 value.
fn add_start(cell: &mut Cell, head: &mut Head, x: f64) {
    if x.is_finite() {
        if head.last.is_finite() && head.last <= 0.5 && x > 0.5 {
            cell.n = cell.n.saturating_add(1);
        }
        head.last = x as f32;
    }
}

/// Adds a counter's increase since the last value (a decrease is a reset: the new value counts).
fn add_increase(cell: &mut Cell, head: &mut Head, x: f64) {
    if x.is_finite() {
        if head.last.is_finite() {
            let delta = x - f64::from(head.last);
            cell.a += if delta >= 0.0 { delta as f32 } else { x as f32 };
        }
        head.last = x as f32;
    }
}

/// Adds the time since the last reading (at most [`SHARE_MAX_GAP_MS`]) to the time observed,
/// and to the time on when the value was on.
fn add_share(cell: &mut Cell, head: &mut Head, x: f64, ts_ms: i64) {
    if x.is_finite() {
        if head.last.is_finite() && head.last_ts != i64::MIN {
            let gap = ts_ms.saturating_sub(head.last_ts);
            if gap > 0 && gap <= SHARE_MAX_GAP_MS {
                cell.b += gap as f32;
                if head.last > 0.5 {
                    cell.a += gap as f32;
                }
            }
        }
        head.last = x as f32;
        head.last_ts = ts_ms;
    }
}

/// Counts the appearance of a fault code of a category in `mask` (0: any).
fn add_trip(cell: &mut Cell, head: &mut Head, mask: u32, fault: Option<(u32, FaultCategory)>) {
    let matching = fault.filter(|(_, category)| mask == 0 || mask & category_bit(*category) != 0);
    let code = matching.map_or(-1, |(code, _)| i64::from(code));
    // `last_ts` holds the previous matching code (-1: none) for this kind.
    if code >= 0 && code != head.last_ts {
        cell.n = cell.n.saturating_add(1);
    }
    head.last_ts = code;
}

/// Adds a reading's heat output, electric power and outdoor temperature to a COP bucket, when
/// the unit runs, is not defrosting and the reading has them all.
fn add_cop(cell: &mut Cell, cop: CopSources, values: &[f64]) {
    let value = |i: u8| value_at(values, i);
    let (heat, electric) = (value(cop.heat), value(cop.electric));
    let (running, outdoor) = (value(cop.running), value(cop.outdoor));
    let running = !running.is_finite() || running > 0.5;
    // Defrost is weather, not the unit: how often a coil frosts depends on the
    // day's humidity, so readings while defrosting stay out of the COP (its
    // baseline would otherwise be learned on dry days and judged on wet ones).
    let defrosting = value(cop.defrost) > 0.5;
    if heat.is_finite()
        && electric.is_finite()
        && electric >= 1.0
        && outdoor.is_finite()
        && running
        && !defrosting
    {
        cell.n = cell.n.saturating_add(1);
        cell.a += heat as f32;
        cell.b += electric as f32;
        cell.c += outdoor as f32;
    }
}

/// A derived function over the newest `buckets` buckets of a ring series whose ring starts at
/// cell `offset` of `cells` (a COP series' baseline bands follow its ring).
fn query_ring(
    spec: &SeriesSpec,
    head: &Head,
    cells: &[Cell],
    offset: usize,
    buckets: usize,
    function: Derived,
) -> f64 {
    let Some(ring) = cells.get(offset..offset + BUCKETS) else {
        return f64::NAN;
    };
    if head.bucket == i64::MIN {
        return f64::NAN;
    }
    // A window read from a longer series: its newest `buckets` buckets only.
    let mut newest = [Cell::EMPTY; BUCKETS];
    let ring = if buckets < BUCKETS {
        for (pos, cell) in ring.iter().enumerate() {
            if (usize::from(head.pos) + BUCKETS - pos) % BUCKETS < buckets {
                newest[pos] = *cell;
            }
        }
        &newest[..]
    } else {
        ring
    };
    let sum = |f: fn(&Cell) -> f64| ring.iter().map(f).sum::<f64>();
    let count = || sum(|c| f64::from(c.n));
    match function {
        Derived::Count | Derived::Starts | Derived::Trips => count(),
        Derived::Avg => ratio(sum(|c| f64::from(c.a)), count()),
        Derived::Min => ring
            .iter()
            .filter(|c| c.n > 0)
            .map(|c| f64::from(c.b))
            .fold(f64::NAN, f64::min),
        Derived::Max => ring
            .iter()
            .filter(|c| c.n > 0)
            .map(|c| f64::from(c.c))
            .fold(f64::NAN, f64::max),
        Derived::Rate => slope_per_hour(spec, head, ring),
        Derived::SlopePerDay => slope_per_hour(spec, head, ring) * 24.0,
        Derived::PartialSlopePerDay => partial_slope_per_hour(spec, head, ring) * 24.0,
        Derived::HoursTo(target) => hours_to(spec, head, ring, target),
        Derived::Increase => sum(|c| f64::from(c.a)),
        Derived::Share => {
            let observed = sum(|c| f64::from(c.b));
            if observed < spec.bucket_ms() as f64 {
                f64::NAN
            } else {
                sum(|c| f64::from(c.a)) / observed
            }
        }
        Derived::Cop => {
            if count() < 3.0 {
                f64::NAN
            } else {
                ratio(sum(|c| f64::from(c.a)), sum(|c| f64::from(c.b)))
            }
        }
        Derived::CopRatio => cop_ratio(
            ring,
            cells.get(offset + BUCKETS..offset + BUCKETS + BASELINE_BANDS),
        ),
        Derived::UnchangedHours | Derived::CoolingHours(_) | Derived::Fleet(_) => f64::NAN,
    }
}

/// Hours until the series' last value reaches `target` at the ring's slope: 0 at the target,
/// infinity when moving away or flat.
#[inline]
fn hours_to(spec: &SeriesSpec, head: &Head, ring: &[Cell], target: f64) -> f64 {
    let slope = slope_per_hour(spec, head, ring);
    let last = f64::from(head.last);
    if !slope.is_finite() || !last.is_finite() {
        f64::NAN
    } else if last == target {
        0.0
    } else {
        let hours = (target - last) / slope;
        if hours.is_finite() && hours >= 0.0 {
            hours
        } else {
            f64::INFINITY
        }
    }
}

/// The COP over a ring divided by the baseline (`bands`) at the ring's mean outdoor temperature.
#[inline]
fn cop_ratio(ring: &[Cell], bands: Option<&[Cell]>) -> f64 {
    let sum = |f: fn(&Cell) -> f64| ring.iter().map(f).sum::<f64>();
    let count = sum(|c| f64::from(c.n));
    if count < 3.0 {
        return f64::NAN;
    }
    let cop = ratio(sum(|c| f64::from(c.a)), sum(|c| f64::from(c.b)));
    let outdoor = sum(|c| f64::from(c.c)) / count;
    let Some(bands) = bands else {
        return f64::NAN;
    };
    let band = &bands[band_of(outdoor)];
    if band.n < BASELINE_MIN_PERIODS {
        f64::NAN
    } else {
        ratio(cop, f64::from(band.a) / f64::from(band.n))
    }
}

/// Canonical value `i` of a reading's dense values; NaN when missing or beyond any physical
/// range (so every stored number stays finite: snapshots are JSON, which has no infinity).
pub(super) fn value_at(values: &[f64], i: u8) -> f64 {
    values
        .get(usize::from(i))
        .copied()
        .filter(|v| v.abs() <= MAX_MAGNITUDE)
        .unwrap_or(f64::NAN)
}

/// Cells of a series from its key (see [`SeriesTable::keys`]).
pub fn width_of_key(key: &str) -> usize {
    if key.ends_with(":baseline") {
        BUCKETS + BASELINE_BANDS
    } else if key.starts_with("cooling:") {
        COOLING_CELLS
    } else if key.starts_with("unchanged:") {
        0
    } else if key.starts_with("fleet:") {
        FLEET_CELLS
    } else {
        BUCKETS
    }
}

/// A derived function over one series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Derived {
    Min,
    Max,
    Avg,
    Count,
    /// Least-squares slope of the bucket means, per hour.
    Rate,
    /// The same, per day.
    SlopePerDay,
    /// Per day, of a paired series: the time coefficient of a least-squares fit of the bucket
    /// means on time and the second value's bucket means.
    PartialSlopePerDay,
    /// Hours until the value, moving at its current slope, reaches the target from the side it
    /// is on: 0 at the target, infinity when moving away or flat.
    HoursTo(f64),
    Starts,
    Increase,
    Share,
    Trips,
    Cop,
    /// COP over the window divided by the device's baseline COP at the window's mean outdoor
    /// temperature.
    CopRatio,
    /// Hours until the room, without heat, cools to the target (°C) at the house's learned
    /// cooling rate, from the newest indoor and outdoor temperatures: 0 at or below the
    /// target, infinity when the outdoor temperature is not below it.
    CoolingHours(f64),
    /// Hours the value has stayed exactly as it is, up to the newest reading that had it.
    UnchangedHours,
    /// The newest closed period of a fleet series against the fleet's baseline.
    Fleet(FleetMeasure),
}

/// Per-device state of the series its kind needs (of every series when `kind` is `None`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeriesState {
    /// One head per series held, in series order.
    pub heads: Vec<Head>,
    /// The cells of the series held, one after the other.
    pub cells: Vec<Cell>,
    /// The device kind whose series the state holds ([`SeriesTable::held`]); `None`: every
    /// series of the rule set (as snapshots before per-kind layouts have it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<DeviceKind>,
}

/// The newest bucket and last value of one series.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Head {
    /// Absolute index of the newest bucket (`ts / bucket_ms`); `i64::MIN` before any reading.
    pub bucket: i64,
    /// Ring position of the newest bucket.
    pub pos: u16,
    /// Last value seen (NaN when none; JSON writes it as null).
    #[serde(with = "nan_as_null")]
    pub last: f32,
    /// Time of the last value (share) or the last fault code (trips); `i64::MIN` when none.
    pub last_ts: i64,
}

impl PartialEq for Head {
    /// Equal when every field is; two NaN `last` values (no value) are equal.
    fn eq(&self, other: &Self) -> bool {
        self.bucket == other.bucket
            && self.pos == other.pos
            && self.last_ts == other.last_ts
            && (self.last == other.last || (self.last.is_nan() && other.last.is_nan()))
    }
}

impl Head {
    const EMPTY: Head = Head {
        bucket: i64::MIN,
        pos: 0,
        last: f32::NAN,
        last_ts: i64::MIN,
    };
}

/// One bucket's aggregates. Stats: `n` samples, `a` sum, `b` min, `c` max. Starts, trips: `n`
/// events. Increase: `a` increase. Share: `a` ms on, `b` ms observed. COP: `n` samples, `a` heat,
/// `b` electric power, `c` outdoor temperature sums. Baseline bands: `n` periods, `a` COP sum.
/// In snapshots a cell is the array `[n, a, b, c]`, to keep them small.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "(u32, f32, f32, f32)", into = "(u32, f32, f32, f32)")]
pub struct Cell {
    pub n: u32,
    pub a: f32,
    pub b: f32,
    pub c: f32,
}

impl From<(u32, f32, f32, f32)> for Cell {
    fn from((n, a, b, c): (u32, f32, f32, f32)) -> Self {
        Cell { n, a, b, c }
    }
}

impl From<Cell> for (u32, f32, f32, f32) {
    fn from(cell: Cell) -> Self {
        (cell.n, cell.a, cell.b, cell.c)
    }
}

impl Cell {
    const EMPTY: Cell = Cell {
        n: 0,
        a: 0.0,
        b: 0.0,
        c: 0.0,
    };
}

/// Moves the ring forward to the bucket of `ts_ms`, clearing buckets that fall out of the
/// window. Returns the previous newest bucket when it was closed by this move.
fn advance(head: &mut Head, ring: &mut [Cell], bucket_ms: i64, ts_ms: i64) -> Option<Cell> {
    if head.bucket != i64::MIN {
        // Fast path without a division: `ts_ms` is before the end of the newest bucket, so its
        // bucket is not newer (nothing moves).
        let end = head
            .bucket
            .checked_add(1)
            .and_then(|b| b.checked_mul(bucket_ms));
        if end.is_some_and(|end| ts_ms < end) {
            return None;
        }
    }
    let bucket = ts_ms.div_euclid(bucket_ms);
    if head.bucket == i64::MIN {
        ring.fill(Cell::EMPTY);
        head.bucket = bucket;
        head.pos = 0;
        return None;
    }
    if bucket <= head.bucket {
        return None;
    }
    let closed = ring.get(usize::from(head.pos)).copied();
    let steps = bucket.saturating_sub(head.bucket);
    if steps >= BUCKETS as i64 {
        ring.fill(Cell::EMPTY);
        head.pos = 0;
    } else {
        for _ in 0..steps {
            head.pos = ((usize::from(head.pos) + 1) % BUCKETS) as u16;
            if let Some(cell) = ring.get_mut(usize::from(head.pos)) {
                *cell = Cell::EMPTY;
            }
        }
    }
    head.bucket = bucket;
    closed
}

/// Adds a closed COP bucket to the baseline band of its mean outdoor temperature, until the
/// band has learned [`BASELINE_LEARN_PERIODS`] periods.
fn learn_baseline(bands: &mut [Cell], closed: &Cell) {
    if closed.n < BASELINE_MIN_SAMPLES || closed.b <= 0.0 {
        return;
    }
    let cop = f64::from(closed.a) / f64::from(closed.b);
    let outdoor = f64::from(closed.c) / f64::from(closed.n);
    if !cop.is_finite() || !outdoor.is_finite() {
        return;
    }
    if let Some(band) = bands.get_mut(band_of(outdoor)) {
        if band.n < BASELINE_LEARN_PERIODS {
            band.n += 1;
            band.a += cop as f32;
        }
    }
}

fn band_of(outdoor_c: f64) -> usize {
    let band = ((outdoor_c - BAND_LOW_C) / BAND_WIDTH_C).floor();
    if band.is_nan() || band < 0.0 {
        0
    } else {
        (band as usize).min(BASELINE_BANDS - 1)
    }
}

fn ratio(numerator: f64, denominator: f64) -> f64 {
    if denominator == 0.0 || !denominator.is_finite() {
        f64::NAN
    } else {
        numerator / denominator
    }
}

/// Least-squares slope of bucket means against bucket time, per hour. Needs at least three
/// buckets with data spanning at least half the window.
fn slope_per_hour(spec: &SeriesSpec, head: &Head, ring: &[Cell]) -> f64 {
    let bucket_h = spec.bucket_ms() as f64 / 3_600_000.0;
    let mut points = 0.0;
    let (mut sum_x, mut sum_y, mut sum_xx, mut sum_xy) = (0.0, 0.0, 0.0, 0.0);
    let (mut oldest, mut newest) = (f64::INFINITY, f64::NEG_INFINITY);
    for (pos, cell) in ring.iter().enumerate() {
        if cell.n == 0 {
            continue;
        }
        // Age in buckets: 0 for the newest, BUCKETS - 1 for the oldest.
        let age = (usize::from(head.pos) + BUCKETS - pos) % BUCKETS;
        let x = -(age as f64) * bucket_h;
        let y = f64::from(cell.a) / f64::from(cell.n);
        points += 1.0;
        sum_x += x;
        sum_y += y;
        sum_xx += x * x;
        sum_xy += x * y;
        oldest = oldest.min(x);
        newest = newest.max(x);
    }
    let span_buckets = (newest - oldest) / bucket_h + 1.0;
    if points < 3.0 || span_buckets < (BUCKETS as f64) / 2.0 {
        return f64::NAN;
    }
    let denominator = points * sum_xx - sum_x * sum_x;
    if denominator == 0.0 {
        return f64::NAN;
    }
    (points * sum_xy - sum_x * sum_y) / denominator
}

/// The time coefficient (per hour) of a least-squares fit `y = b0 + b1 t + b2 x` over a paired
/// series' bucket means (`a / n` is y, `b / n` is x). When x does not vary over the window, the
/// plain slope of y. NaN with fewer than four buckets or less than half the window covered.
fn partial_slope_per_hour(spec: &SeriesSpec, head: &Head, ring: &[Cell]) -> f64 {
    let bucket_h = spec.bucket_ms() as f64 / 3_600_000.0;
    let mut points: Vec<(f64, f64, f64)> = Vec::with_capacity(BUCKETS);
    for (pos, cell) in ring.iter().enumerate() {
        if cell.n == 0 {
            continue;
        }
        let age = (usize::from(head.pos) + BUCKETS - pos) % BUCKETS;
        let n = f64::from(cell.n);
        points.push((
            -(age as f64) * bucket_h,
            f64::from(cell.a) / n,
            f64::from(cell.b) / n,
        ));
    }
    let (oldest, newest) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p.0), hi.max(p.0))
        });
    if points.len() < 4 || (newest - oldest) / bucket_h + 1.0 < (BUCKETS as f64) / 2.0 {
        return f64::NAN;
    }
    // Centred sums: the normal equations of y on (t, x) without the intercept.
    let count = points.len() as f64;
    let mean = |f: fn(&(f64, f64, f64)) -> f64| points.iter().map(f).sum::<f64>() / count;
    let (mt, my, mx) = (mean(|p| p.0), mean(|p| p.1), mean(|p| p.2));
    let (mut stt, mut sxx, mut stx, mut sty, mut sxy) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (t, y, x) in &points {
        let (t, y, x) = (t - mt, y - my, x - mx);
        stt += t * t;
        sxx += x * x;
        stx += t * x;
        sty += t * y;
        sxy += x * y;
    }
    if stt == 0.0 {
        return f64::NAN;
    }
    let det = stt * sxx - stx * stx;
    // x (nearly) constant, or moving in step with time: its effect cannot be told from the
    // trend's, and the plain slope is all there is.
    if sxx <= 1e-9 || det <= 1e-9 * stt * sxx {
        return sty / stt;
    }
    (sty * sxx - sxy * stx) / det
}

/// The bit of a fault category in a trips mask.
pub fn category_bit(category: FaultCategory) -> u32 {
    FaultCategory::ALL
        .iter()
        .position(|c| *c == category)
        .map_or(0, |i| 1u32 << i)
}

/// Serialises NaN as `null` so snapshots stay valid JSON.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f32, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            serializer.serialize_some(value)
        } else {
            serializer.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f32, D::Error> {
        Ok(Option::<f32>::deserialize(deserializer)?.unwrap_or(f32::NAN))
    }
}

#[cfg(test)]
mod tests;
