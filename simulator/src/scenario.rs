//! The ground-truth schedule of a bench run: which fault or trap hits which household or
//! village, when, and with what parameters, drawn from a [`Mix`], the fleet and a seed.
//!
//! Counts are Poisson draws from the mix's rates; times are uniform over the run on the 10 s
//! model grid (a frozen condensate drain on a night, a valve left closed by day, an afternoon
//! with the heating off in the afternoon, airing by day); targets are uniform among the
//! households (or villages) still free. A share of household faults and traps
//! ([`Mix::overlap_share`]) lands instead on a household that already has one event,
//! overlapping it in time: a trap during a fault, or two faults at once (never two traps, never
//! the same kind twice, never more than two events, and supply faults keep their village to
//! themselves). Every fault keeps its own ground truth. Scripted events are placed first, and
//! may overlap in the same way.

use std::collections::BTreeMap;

use serde::Serialize;
use wire::{DeviceKind, FaultCategory};

use crate::fleet::HouseholdSpec;
use crate::mix::{
    lockout_categories, DurationRange, EventKind, FaultKind, FaultRates, Mix, ScriptedEvent,
    TrapKind, ValueRange,
};
use crate::rng::Rng;

/// Every scheduled time is a multiple of this (the model step), ms.
pub const GRID_MS: i64 = 10_000;

/// A fault the run will inject.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedFault {
    pub id: usize,
    pub kind: FaultKind,
    /// Indexes of the households it affects (one, or a village's).
    pub households: Vec<usize>,
    /// `(township id, village id)` of a supply fault.
    pub village: Option<(String, String)>,
    /// When it starts, Unix ms (simulated).
    pub start_ms: i64,
    /// When it ends by itself (supply restored, box restarted); household faults end when a
    /// technician repairs them.
    pub scheduled_end_ms: Option<i64>,
    /// Ignition failure: the lockout after the wear period, Unix ms.
    pub lockout_ms: Option<i64>,
    /// Lockout: the category of the code.
    pub category: Option<FaultCategory>,
    /// Gradual faults: progress per day.
    pub speed: Option<f64>,
    /// Gas pressure drop: the supply pressure, mbar.
    pub gas_mbar: Option<f64>,
    /// Gas pressure drop: it sinks to `gas_mbar` gradually over this long, ms (`None`: at once).
    pub gas_sinking_ms: Option<i64>,
    /// Partial refrigerant loss: the share of charge it settles at.
    pub settles_at: Option<f64>,
    /// Placed by a scripted event rather than drawn.
    pub scripted: bool,
}

/// A trap the run will spring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedTrap {
    pub id: usize,
    pub kind: TrapKind,
    pub household: usize,
    pub start_ms: i64,
    pub end_ms: i64,
    /// Resident away, heating off: the frost-protection set point.
    pub setpoint_c: Option<f64>,
    /// Window airing: how far the room air falls, K.
    pub drop_k: Option<f64>,
    pub scripted: bool,
}

/// The whole schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    pub start_ms: i64,
    pub end_ms: i64,
    pub faults: Vec<PlannedFault>,
    pub traps: Vec<PlannedTrap>,
    /// Night set-back depth per household, K (0: none).
    pub night_setback_k: Vec<f64>,
    /// Events drawn but not placed because no free household (or village) was left, by kind.
    pub not_placed: BTreeMap<String, u64>,
}

/// Why a scenario cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScenarioError {
    #[error(
        "scripted event {index}: household {household} does not exist (the fleet has {households})"
    )]
    NoSuchHousehold {
        index: usize,
        household: usize,
        households: usize,
    },
    #[error(
        "scripted event {index}: {kind} does not apply to household {household} ({device_kind})"
    )]
    NotApplicable {
        index: usize,
        kind: &'static str,
        household: usize,
        device_kind: &'static str,
    },
    #[error("scripted event {index}: household {household} already takes part in another event")]
    Busy { index: usize, household: usize },
}

/// Whether a household fault of `kind` can happen to the household's device (its kind, and
/// for leaks whether its profile reports the circuit's pressure).
pub fn applicable(kind: FaultKind, spec: &HouseholdSpec) -> bool {
    kind.applies_to(spec.kind)
        && kind
            .needs_pressure_sensor()
            .is_none_or(|needs| needs == crate::model::has_pressure_sensor(&spec.profile))
}

/// One event a household takes part in, for the overlap rules.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Slot {
    start_ms: i64,
    /// When it ends by itself; a household fault lasts until repaired (`None`).
    end_ms: Option<i64>,
    fault: Option<FaultKind>,
    trap: Option<TrapKind>,
}

impl Slot {
    /// A new event of this fault or trap kind may overlap this one.
    fn admits(&self, fault: Option<FaultKind>, trap: Option<TrapKind>) -> bool {
        let supply = self.fault.is_some_and(FaultKind::is_supply);
        let two_traps = self.trap.is_some() && trap.is_some();
        let same =
            (fault.is_some() && self.fault == fault) || (trap.is_some() && self.trap == trap);
        !supply && !two_traps && !same
    }
}

/// Longest a second event starts after the first one it overlaps, ms.
const OVERLAP_WITHIN_MS: i64 = 12 * 3_600_000;

/// Poisson-distributed count with mean `lambda`.
fn poisson(rng: &mut Rng, lambda: f64) -> u64 {
    if !(lambda.is_finite() && lambda > 0.0) {
        return 0;
    }
    if lambda > 50.0 {
        return (lambda + lambda.sqrt() * rng.gaussian(1.0))
            .round()
            .max(0.0) as u64;
    }
    // Knuth: multiply uniforms until the product drops below e^-lambda.
    let limit = (-lambda).exp();
    let mut product = rng.unit();
    let mut count = 0;
    while product > limit {
        count += 1;
        product *= rng.unit();
    }
    count
}

fn on_grid(ms: i64) -> i64 {
    ms.div_euclid(GRID_MS) * GRID_MS
}

struct Builder<'a> {
    fleet: &'a [HouseholdSpec],
    mix: &'a Mix,
    start_ms: i64,
    end_ms: i64,
    slots: Vec<Vec<Slot>>,
    faults: Vec<PlannedFault>,
    traps: Vec<PlannedTrap>,
    not_placed: BTreeMap<String, u64>,
}

impl Builder<'_> {
    fn village_of(&self, household: usize) -> Vec<usize> {
        let Some(spec) = self.fleet.get(household) else {
            return Vec::new();
        };
        self.fleet
            .iter()
            .filter(|h| h.township.id == spec.township.id && h.village.id == spec.village.id)
            .map(|h| h.index)
            .collect()
    }

    fn middle(range: crate::mix::DurationRange) -> i64 {
        (range.pick_s(0.5) * 1000.0) as i64
    }

    fn busy(&self, household: usize) -> bool {
        self.slots.get(household).is_some_and(|s| !s.is_empty())
    }

    /// Whether an event of this kind may join `household` now (free, or one event it may
    /// overlap).
    fn may_join(&self, household: usize, fault: Option<FaultKind>, trap: Option<TrapKind>) -> bool {
        match self.slots.get(household).map(Vec::as_slice) {
            Some([]) => true,
            Some([only]) => only.admits(fault, trap) && fault.is_none_or(|k| !k.is_supply()),
            _ => false,
        }
    }

    fn occupy(&mut self, household: usize, slot: Slot) {
        if let Some(slots) = self.slots.get_mut(household) {
            slots.push(slot);
        }
    }

    /// A start inside the one event of `household`, for an overlapping event.
    fn start_within(&self, household: usize, rng: &mut Rng) -> i64 {
        let Some(first) = self.slots.get(household).and_then(|s| s.first()) else {
            return self.random_start(rng);
        };
        let span = first
            .end_ms
            .map_or(OVERLAP_WITHIN_MS, |end| {
                (end - first.start_ms).min(OVERLAP_WITHIN_MS)
            })
            .max(GRID_MS);
        let start = on_grid(first.start_ms + (rng.unit() * span as f64) as i64);
        start.clamp(self.start_ms, (self.end_ms - GRID_MS).max(self.start_ms))
    }

    /// A start at a local (Beijing) hour in `[from_h, to_h)` of a random day of the run (the run
    /// starts at local midnight); any time if the run is shorter than that.
    fn start_at_local_hours(&self, rng: &mut Rng, from_h: f64, to_h: f64) -> i64 {
        let days = ((self.end_ms - self.start_ms) / 86_400_000).max(0);
        let day = if days > 0 {
            rng.index(days as usize) as i64
        } else {
            0
        };
        let hour = rng.uniform(from_h, to_h);
        let start = on_grid(self.start_ms + day * 86_400_000 + (hour * 3_600_000.0) as i64);
        if start < self.end_ms {
            start
        } else {
            self.random_start(rng)
        }
    }

    /// Where in the day an event of this kind starts.
    fn typical_start(
        &self,
        fault: Option<FaultKind>,
        trap: Option<TrapKind>,
        rng: &mut Rng,
    ) -> i64 {
        match (fault, trap) {
            // The drain freezes in the cold before dawn.
            (Some(FaultKind::CondensateFrozen), _) => self.start_at_local_hours(rng, 0.0, 6.0),
            // Technicians service by day.
            (Some(FaultKind::ValveClosed), _) => self.start_at_local_hours(rng, 9.0, 17.0),
            (_, Some(TrapKind::HeatingOff)) => self.start_at_local_hours(rng, 12.0, 14.5),
            (_, Some(TrapKind::WindowAiring)) => self.start_at_local_hours(rng, 7.0, 20.0),
            (_, Some(TrapKind::Commissioning)) => self.start_at_local_hours(rng, 8.0, 15.0),
            _ => self.random_start(rng),
        }
    }

    /// A fault of `kind` on `household` (or its village), with parameters drawn by `rng` or
    /// taken from a scripted event.
    fn fault(
        &mut self,
        kind: FaultKind,
        household: usize,
        start_ms: i64,
        rng: &mut Rng,
        scripted: Option<&ScriptedEvent>,
    ) {
        let households = self.claim(kind, household, start_ms);
        let spec = &self.fleet[household];
        let mut planned = PlannedFault {
            id: self.faults.len(),
            kind,
            households,
            village: kind
                .is_supply()
                .then(|| (spec.township.id.to_owned(), spec.village.id.to_owned())),
            start_ms,
            scheduled_end_ms: None,
            lockout_ms: None,
            category: None,
            speed: None,
            gas_mbar: None,
            gas_sinking_ms: None,
            settles_at: None,
            scripted: scripted.is_some(),
        };
        let mut draw = Draw { rng, scripted };
        draw_fault_parameters(&mut planned, &self.mix.faults, spec.kind, &mut draw);
        self.faults.push(planned);
    }

    /// Occupies the households a fault of `kind` on `household` takes from `start_ms` (a
    /// supply fault's whole village) and returns those it reaches.
    fn claim(&mut self, kind: FaultKind, household: usize, start_ms: i64) -> Vec<usize> {
        let members = if kind.is_supply() {
            self.village_of(household)
        } else {
            vec![household]
        };
        for &h in &members {
            self.occupy(
                h,
                Slot {
                    start_ms,
                    end_ms: None,
                    fault: Some(kind),
                    trap: None,
                },
            );
        }
        // A gas pressure drop reaches the boilers only; the whole village is kept free of
        // other events all the same, so its heat pumps cannot confuse the attribution.
        if kind == FaultKind::GasPressureDrop {
            members
                .into_iter()
                .filter(|&h| self.fleet[h].kind == DeviceKind::GasBoiler)
                .collect()
        } else {
            members
        }
    }

    fn trap(
        &mut self,
        kind: TrapKind,
        household: usize,
        start_ms: i64,
        rng: &mut Rng,
        scripted: Option<&ScriptedEvent>,
    ) {
        let traps = &self.mix.traps;
        let range = traps.duration(kind);
        let duration = match scripted {
            Some(event) => event
                .duration
                .map_or(Builder::middle(range), |d| d.as_millis() as i64),
            None => (range.pick_s(rng.unit()) * 1000.0) as i64,
        };
        let draw = |range: crate::mix::ValueRange, rng: &mut Rng| match scripted {
            Some(_) => range.pick(0.5),
            None => range.pick(rng.unit()),
        };
        let setpoint_c = match kind {
            TrapKind::ResidentAway => Some(traps.resident_away.setpoint_c),
            TrapKind::HeatingOff => Some(draw(traps.heating_off.setpoint_c, rng)),
            _ => None,
        };
        let drop_k =
            (kind == TrapKind::WindowAiring).then(|| draw(traps.window_airing.drop_k, rng));
        let end_ms = on_grid(start_ms + duration.max(GRID_MS));
        self.occupy(
            household,
            Slot {
                start_ms,
                end_ms: Some(end_ms),
                fault: None,
                trap: Some(kind),
            },
        );
        self.traps.push(PlannedTrap {
            id: self.traps.len(),
            kind,
            household,
            start_ms,
            end_ms,
            setpoint_c,
            drop_k,
            scripted: scripted.is_some(),
        });
    }

    /// Picks a household for a random household fault or trap: with the mix's overlap share one
    /// that already has an event this one may overlap (and a start inside it), else a free one.
    fn pick_household(
        &self,
        fault: Option<FaultKind>,
        trap: Option<TrapKind>,
        rng: &mut Rng,
    ) -> Option<(usize, i64)> {
        let fits = |h: &HouseholdSpec| fault.is_none_or(|k| applicable(k, h));
        if rng.chance(self.mix.overlap_share) {
            let joinable: Vec<usize> = self
                .fleet
                .iter()
                .filter(|h| fits(h) && self.busy(h.index) && self.may_join(h.index, fault, trap))
                .map(|h| h.index)
                .collect();
            if !joinable.is_empty() {
                let household = joinable[rng.index(joinable.len())];
                return Some((household, self.start_within(household, rng)));
            }
        }
        let start = self.typical_start(fault, trap, rng);
        let free: Vec<usize> = self
            .fleet
            .iter()
            .filter(|h| fits(h) && !self.busy(h.index))
            .map(|h| h.index)
            .collect();
        (!free.is_empty()).then(|| (free[rng.index(free.len())], start))
    }

    fn random_start(&self, rng: &mut Rng) -> i64 {
        let span = (self.end_ms - self.start_ms).max(GRID_MS);
        on_grid(self.start_ms + (rng.unit() * span as f64) as i64)
    }

    fn place_random_faults(&mut self, seed: u64) {
        let days = (self.end_ms - self.start_ms) as f64 / 86_400_000.0;
        // Supply faults first: they need a whole free village.
        let mut order: Vec<FaultKind> = FaultKind::ALL
            .into_iter()
            .filter(|k| k.is_supply())
            .collect();
        order.extend(FaultKind::ALL.into_iter().filter(|k| !k.is_supply()));
        for kind in order {
            let mut rng = Rng::derive(seed ^ 0x5CE7_A210, kind as u64);
            let rate = self.mix.faults.rate(kind);
            if kind.is_supply() {
                let villages = self.villages(kind);
                let count = poisson(&mut rng, rate * villages.len() as f64 * days);
                for _ in 0..count {
                    let start = self.random_start(&mut rng);
                    let free: Vec<usize> = self
                        .villages(kind)
                        .into_iter()
                        .filter(|members| members.iter().all(|&h| !self.busy(h)))
                        .filter_map(|members| members.first().copied())
                        .collect();
                    if free.is_empty() {
                        *self.not_placed.entry(kind.as_str().to_owned()).or_default() += 1;
                        continue;
                    }
                    let household = free[rng.index(free.len())];
                    self.fault(kind, household, start, &mut rng, None);
                }
            } else {
                let devices = self.fleet.iter().filter(|h| applicable(kind, h)).count();
                let count = poisson(&mut rng, rate / 1000.0 * devices as f64 * days);
                for _ in 0..count {
                    match self.pick_household(Some(kind), None, &mut rng) {
                        Some((household, start)) => {
                            self.fault(kind, household, start, &mut rng, None);
                        }
                        None => {
                            *self.not_placed.entry(kind.as_str().to_owned()).or_default() += 1;
                        }
                    }
                }
            }
        }
    }

    fn place_random_traps(&mut self, seed: u64) {
        let days = (self.end_ms - self.start_ms) as f64 / 86_400_000.0;
        for kind in TrapKind::EVENTS {
            let rate = self.mix.traps.rate(kind);
            let mut rng = Rng::derive(seed ^ 0x7EA9_5000, kind as u64);
            let count = poisson(&mut rng, rate / 1000.0 * self.fleet.len() as f64 * days);
            for _ in 0..count {
                match self.pick_household(None, Some(kind), &mut rng) {
                    Some((household, start)) => {
                        self.trap(kind, household, start, &mut rng, None);
                    }
                    None => {
                        *self.not_placed.entry(kind.as_str().to_owned()).or_default() += 1;
                    }
                }
            }
        }
    }

    /// The households of every village a supply fault of `kind` can hit, grouped, in a fixed
    /// order (a gas drop needs at least one boiler in the village).
    fn villages(&self, kind: FaultKind) -> Vec<Vec<usize>> {
        let mut villages: BTreeMap<(&str, &str), Vec<usize>> = BTreeMap::new();
        for h in self.fleet {
            villages
                .entry((h.township.id, h.village.id))
                .or_default()
                .push(h.index);
        }
        villages
            .into_values()
            .filter(|members| {
                kind != FaultKind::GasPressureDrop
                    || members
                        .iter()
                        .any(|&h| self.fleet[h].kind == DeviceKind::GasBoiler)
            })
            .collect()
    }
}

/// Where a fault's parameters come from: `rng`, or a scripted event (which takes the middle
/// of a range it does not set).
struct Draw<'a> {
    rng: &'a mut Rng,
    scripted: Option<&'a ScriptedEvent>,
}

impl Draw<'_> {
    /// A duration in `range`, ms.
    fn duration_ms(&mut self, range: DurationRange) -> i64 {
        match self.scripted {
            Some(event) => event
                .duration
                .map_or(Builder::middle(range), |d| d.as_millis() as i64),
            None => (range.pick_s(self.rng.unit()) * 1000.0) as i64,
        }
    }

    /// A speed (or pressure) in `range`.
    fn speed(&mut self, range: ValueRange) -> f64 {
        match self.scripted {
            Some(event) => event.speed.unwrap_or(range.pick(0.5)),
            None => range.pick(self.rng.unit()),
        }
    }
}

/// Fills in the parameters a fault of `planned.kind` on a device of `device_kind` needs:
/// lockout code, wear period, speed, duration, gas pressure.
fn draw_fault_parameters(
    planned: &mut PlannedFault,
    rates: &FaultRates,
    device_kind: DeviceKind,
    draw: &mut Draw<'_>,
) {
    let start_ms = planned.start_ms;
    match planned.kind {
        FaultKind::Lockout => {
            let categories = lockout_categories(device_kind);
            planned.category = Some(match draw.scripted.and_then(|e| e.category) {
                Some(category) => category,
                None if draw.scripted.is_some() => categories[0],
                None => categories[draw.rng.index(categories.len())],
            });
        }
        FaultKind::IgnitionFailure => {
            let wear = draw.duration_ms(rates.ignition_failure.precursor);
            planned.lockout_ms = Some(on_grid(start_ms + wear));
        }
        FaultKind::RefrigerantLeak => {
            planned.speed = Some(draw.speed(rates.refrigerant_leak.speed));
        }
        FaultKind::WaterLeak => planned.speed = Some(draw.speed(rates.water_leak.speed)),
        FaultKind::RefrigerantLossPartial => {
            let spec = rates.refrigerant_loss_partial;
            planned.speed = Some(draw.speed(spec.speed));
            planned.settles_at = Some(match draw.scripted {
                Some(_) => spec.settles_at.pick(0.5),
                None => spec.settles_at.pick(draw.rng.unit()),
            });
        }
        FaultKind::SlowWaterLeakNoGauge => {
            planned.speed = Some(draw.speed(rates.slow_water_leak_no_gauge.speed));
        }
        FaultKind::FouledFilter => {
            planned.speed = Some(draw.speed(rates.fouled_filter.speed));
        }
        FaultKind::PowerOutage => {
            let duration = draw.duration_ms(rates.power_outage.duration);
            planned.scheduled_end_ms = Some(on_grid(start_ms + duration.max(GRID_MS)));
        }
        FaultKind::GasPressureDrop => {
            let duration = draw.duration_ms(rates.gas_pressure_drop.duration);
            planned.scheduled_end_ms = Some(on_grid(start_ms + duration.max(GRID_MS)));
            planned.gas_mbar = Some(draw.speed(rates.gas_pressure_drop.pressure_mbar));
            // Some regulators freeze slowly: the pressure sinks over most of an hour.
            let spec = rates.gas_pressure_drop;
            if draw.scripted.is_none() && draw.rng.chance(spec.sinking_share) {
                let sinking = (spec.sinking_over.pick_s(draw.rng.unit()) * 1000.0) as i64;
                planned.gas_sinking_ms = Some(on_grid(sinking.min(duration)).max(GRID_MS));
            }
        }
        FaultKind::BoxOffline => {
            let duration = draw.duration_ms(rates.box_offline.duration);
            planned.scheduled_end_ms = Some(on_grid(start_ms + duration.max(GRID_MS)));
        }
        FaultKind::FlowSwitch
        | FaultKind::SensorOpen
        | FaultKind::SensorShort
        | FaultKind::PumpSeized
        | FaultKind::ControllerOff
        | FaultKind::ControllerHang
        | FaultKind::BreakerTrip
        | FaultKind::FanFailure
        | FaultKind::CondensateFrozen
        | FaultKind::ValveClosed => {}
    }
}

/// Builds the schedule of a run of `days` days from `mix` over `fleet` with `seed`.
pub fn build(
    fleet: &[HouseholdSpec],
    mix: &Mix,
    days: f64,
    seed: u64,
) -> Result<Scenario, ScenarioError> {
    let start_ms = mix.start.unix_s() * 1000;
    let end_ms = start_ms + on_grid((days.max(0.0) * 86_400_000.0) as i64);
    let mut builder = Builder {
        fleet,
        mix,
        start_ms,
        end_ms,
        slots: vec![Vec::new(); fleet.len()],
        faults: Vec::new(),
        traps: Vec::new(),
        not_placed: BTreeMap::new(),
    };
    builder.place_scripted(seed)?;
    builder.place_random_faults(seed);
    builder.place_random_traps(seed);
    let night_setback_k = night_setbacks(fleet, mix, seed);
    let Builder {
        mut faults,
        mut traps,
        not_placed,
        ..
    } = builder;
    faults.sort_by_key(|f| (f.start_ms, f.id));
    for (id, fault) in faults.iter_mut().enumerate() {
        fault.id = id;
    }
    traps.sort_by_key(|t| (t.start_ms, t.id));
    for (id, trap) in traps.iter_mut().enumerate() {
        trap.id = id;
    }
    Ok(Scenario {
        start_ms,
        end_ms,
        faults,
        traps,
        night_setback_k,
        not_placed,
    })
}

impl Builder<'_> {
    /// Places the mix's scripted events exactly where they say, before anything is drawn.
    fn place_scripted(&mut self, seed: u64) -> Result<(), ScenarioError> {
        let mut scripted_rng = Rng::derive(seed ^ 0x5C21_9735, 0);
        let mix = self.mix;
        for (index, event) in mix.events.iter().enumerate() {
            self.place_scripted_event(index, event, &mut scripted_rng)?;
        }
        Ok(())
    }

    /// Places scripted event `index`: its household must exist, suit a fault, and be free (or
    /// take it as its one overlap).
    fn place_scripted_event(
        &mut self,
        index: usize,
        event: &ScriptedEvent,
        rng: &mut Rng,
    ) -> Result<(), ScenarioError> {
        let Some(spec) = self.fleet.get(event.household) else {
            return Err(ScenarioError::NoSuchHousehold {
                index,
                household: event.household,
                households: self.fleet.len(),
            });
        };
        let start = on_grid(self.start_ms + event.at.as_millis() as i64);
        let busy = ScenarioError::Busy {
            index,
            household: event.household,
        };
        match event.kind {
            EventKind::Fault(kind) => {
                if !applicable(kind, spec) {
                    return Err(ScenarioError::NotApplicable {
                        index,
                        kind: kind.as_str(),
                        household: event.household,
                        device_kind: spec.kind.as_str(),
                    });
                }
                let taken = if kind.is_supply() {
                    let members = self.village_of(event.household);
                    members.iter().any(|&h| self.busy(h))
                } else {
                    !self.may_join(event.household, Some(kind), None)
                };
                if taken {
                    return Err(busy);
                }
                self.fault(kind, event.household, start, rng, Some(event));
            }
            EventKind::Trap(kind) => {
                if !self.may_join(event.household, None, Some(kind)) {
                    return Err(busy);
                }
                self.trap(kind, event.household, start, rng, Some(event));
            }
        }
        Ok(())
    }
}

/// Each household's night set-back depth, K (0: none): drawn for a share of the fleet, never
/// so deep that the room swings into the resident's discomfort.
fn night_setbacks(fleet: &[HouseholdSpec], mix: &Mix, seed: u64) -> Vec<f64> {
    let mut setback_rng = Rng::derive(seed ^ 0x5E7B_AC00, 1);
    fleet
        .iter()
        .map(|h| {
            let wants = setback_rng.chance(mix.fleet.night_setback_share);
            let depth = mix.fleet.night_setback_k.pick(setback_rng.unit());
            // Nobody sets back so far that the room swings into their own discomfort: the
            // thermostat's lower edge stays half a kelvin above the resident's comfort.
            let comfort = if h.vulnerable {
                mix.residents.vulnerable_comfort_c
            } else {
                mix.residents.comfort_c
            };
            let floor = mix
                .fleet
                .min_setback_setpoint_c
                .max(comfort + crate::model::THERMOSTAT_BAND_K);
            let room = (h.setpoint_c - floor).max(0.0);
            if wants {
                depth.min(room)
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;

    fn fleet(households: usize, seed: u64) -> Vec<HouseholdSpec> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let mut profiles = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("profiles folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                profiles.push(Arc::new(
                    edge_agent::profile::Profile::load(&path).expect("profile"),
                ));
            }
        }
        crate::fleet::generate(households, seed, &profiles).expect("fleet")
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_another_seed_another() {
        let fleet = fleet(300, 4);
        let mix = Mix::default();
        let a = build(&fleet, &mix, 14.0, 9).expect("scenario");
        let b = build(&fleet, &mix, 14.0, 9).expect("scenario");
        assert_eq!(a, b);
        let c = build(&fleet, &mix, 14.0, 10).expect("scenario");
        assert_ne!(a.faults, c.faults);
    }

    #[test]
    fn counts_follow_the_rates() {
        let fleet = fleet(1000, 1);
        let mix = Mix::default();
        let scenario = build(&fleet, &mix, 14.0, 3).expect("scenario");
        let count = |kind: FaultKind| scenario.faults.iter().filter(|f| f.kind == kind).count();
        // Lockouts: 1.0 per 1000 devices per day over 1000 devices and 14 days: mean 14.
        let lockouts = count(FaultKind::Lockout);
        assert!((5..=26).contains(&lockouts), "{lockouts} lockouts");
        let all: usize = scenario.faults.len();
        assert!((70..=170).contains(&all), "{all} faults");
        let codeless = scenario
            .faults
            .iter()
            .filter(|f| !f.kind.is_supply() && !f.kind.raises_code())
            .filter(|f| f.kind != FaultKind::BoxOffline)
            .count();
        // The default mix keeps the code-less kinds at 0 (the codeless mix has them).
        assert_eq!(
            codeless, 0,
            "{codeless} code-less faults in the default mix"
        );
        assert!(count(FaultKind::PowerOutage) >= 1);
        assert!(scenario.not_placed.is_empty(), "{:?}", scenario.not_placed);
        let setback = scenario
            .night_setback_k
            .iter()
            .filter(|k| **k > 0.0)
            .count();
        assert!(
            (280..=420).contains(&setback),
            "{setback} set-back households"
        );
    }

    #[test]
    fn faults_hit_applicable_free_households_on_the_grid_inside_the_run() {
        let fleet = fleet(500, 2);
        let mix = Mix {
            overlap_share: 0.0,
            ..Mix::default()
        };
        let scenario = build(&fleet, &mix, 14.0, 5).expect("scenario");
        let mut seen = BTreeSet::new();
        for fault in &scenario.faults {
            assert_eq!(fault.start_ms % GRID_MS, 0);
            assert!(fault.start_ms >= scenario.start_ms && fault.start_ms < scenario.end_ms);
            for &h in &fault.households {
                assert!(seen.insert(h), "household {h} in two events");
                if !fault.kind.is_supply() {
                    assert!(applicable(fault.kind, &fleet[h]));
                }
            }
            if fault.kind.is_supply() {
                let village = fault.village.clone().expect("village");
                let members = fleet
                    .iter()
                    .filter(|h| (h.township.id, h.village.id) == (&village.0[..], &village.1[..]))
                    .filter(|h| {
                        fault.kind == FaultKind::PowerOutage || h.kind == DeviceKind::GasBoiler
                    })
                    .count();
                assert_eq!(fault.households.len(), members);
            }
        }
        for trap in &scenario.traps {
            assert!(
                seen.insert(trap.household),
                "household {} in two events",
                trap.household
            );
            assert!(trap.end_ms > trap.start_ms);
        }
    }

    #[test]
    fn overlapping_events_share_a_household_in_time_and_keep_the_rules() {
        let fleet = fleet(400, 2);
        let mix = Mix {
            overlap_share: 0.4,
            ..Mix::default()
        };
        let scenario = build(&fleet, &mix, 14.0, 8).expect("scenario");
        // household -> (start, end or None, fault kind, trap kind)
        type Event = (i64, Option<i64>, Option<FaultKind>, Option<TrapKind>);
        let mut events: BTreeMap<usize, Vec<Event>> = BTreeMap::new();
        for fault in &scenario.faults {
            for &h in &fault.households {
                let end = fault.scheduled_end_ms;
                events
                    .entry(h)
                    .or_default()
                    .push((fault.start_ms, end, Some(fault.kind), None));
            }
        }
        for trap in &scenario.traps {
            events.entry(trap.household).or_default().push((
                trap.start_ms,
                Some(trap.end_ms),
                None,
                Some(trap.kind),
            ));
        }
        let mut overlaps = 0;
        let mut fault_pairs = 0;
        for (h, list) in &events {
            assert!(list.len() <= 2, "household {h}: {list:?}");
            if let [a, b] = &list[..] {
                overlaps += 1;
                assert!(a.2.is_some() || b.2.is_some(), "two traps in {h}");
                assert!(a.2.is_none_or(|k| !k.is_supply()) && b.2.is_none_or(|k| !k.is_supply()));
                assert!(a.2 != b.2 || a.2.is_none(), "the same fault twice in {h}");
                let (first, second) = if a.0 <= b.0 { (a, b) } else { (b, a) };
                assert!(
                    first.1.is_none_or(|end| second.0 <= end),
                    "household {h}: {first:?} then {second:?} do not overlap"
                );
                assert!(second.0 - first.0 <= OVERLAP_WITHIN_MS);
                if a.2.is_some() && b.2.is_some() {
                    fault_pairs += 1;
                }
            }
        }
        assert!(overlaps >= 10, "{overlaps} overlapping households");
        assert!(fault_pairs >= 1, "two faults at once somewhere");
        for fault in &scenario.faults {
            if fault.kind.is_supply() {
                for h in &fault.households {
                    assert_eq!(events[h].len(), 1, "supply faults keep their village");
                }
            }
        }
    }

    #[test]
    fn the_codeless_mix_plans_mostly_code_less_faults_and_the_leak_only_on_basic_boilers() {
        let fleet = fleet(1000, 1);
        let mix = Mix::parse(include_str!("../mixes/codeless.toml"), "codeless.toml")
            .expect("codeless mix");
        let scenario = build(&fleet, &mix, 14.0, 3).expect("scenario");
        let household: Vec<&PlannedFault> = scenario
            .faults
            .iter()
            .filter(|f| {
                matches!(
                    f.kind.class(),
                    crate::mix::FaultClass::Sudden | crate::mix::FaultClass::Gradual
                )
            })
            .collect();
        let codeless = household.iter().filter(|f| !f.kind.raises_code()).count();
        let share = codeless as f64 / household.len() as f64;
        assert!(household.len() >= 60, "{} faults", household.len());
        assert!(
            share >= 0.6,
            "{codeless} of {} raise no code",
            household.len()
        );
        for fault in &household {
            let spec = &fleet[fault.households[0]];
            assert!(
                applicable(fault.kind, spec),
                "{:?} on {}",
                fault.kind,
                spec.profile.id
            );
            if fault.kind == FaultKind::SlowWaterLeakNoGauge {
                assert!(!crate::model::has_pressure_sensor(&spec.profile));
            }
            if fault.kind == FaultKind::CondensateFrozen {
                let hour = crate::model::local_hour(fault.start_ms as f64 / 1000.0);
                assert!(hour < 6.0, "frozen at {hour:.1} h");
            }
        }
        assert!(household
            .iter()
            .any(|f| f.kind == FaultKind::SlowWaterLeakNoGauge));
        assert!(household
            .iter()
            .any(|f| f.kind == FaultKind::RefrigerantLossPartial
                && f.settles_at.is_some_and(|s| (0.6..=0.75).contains(&s))));
    }

    #[test]
    fn new_traps_land_at_their_hours_with_their_parameters() {
        let fleet = fleet(500, 3);
        // Without overlaps: an overlapping trap starts inside the event it joins instead.
        let mix = Mix {
            overlap_share: 0.0,
            ..Mix::default()
        };
        let scenario = build(&fleet, &mix, 14.0, 4).expect("scenario");
        let of = |kind: TrapKind| scenario.traps.iter().filter(move |t| t.kind == kind);
        assert!(of(TrapKind::WindowAiring).count() >= 30);
        for trap in of(TrapKind::WindowAiring) {
            assert!(trap.drop_k.is_some_and(|k| (2.0..=5.0).contains(&k)));
            let minutes = (trap.end_ms - trap.start_ms) / 60_000;
            assert!((10..=30).contains(&minutes), "{minutes} min");
        }
        assert!(of(TrapKind::HeatingOff).count() >= 5);
        for trap in of(TrapKind::HeatingOff) {
            assert!(trap.setpoint_c.is_some_and(|s| (5.0..=7.0).contains(&s)));
            let hour = crate::model::local_hour(trap.start_ms as f64 / 1000.0);
            assert!((12.0..14.5).contains(&hour), "off at {hour:.2} h");
        }
        let wifi: Vec<i64> = of(TrapKind::WifiDrop)
            .map(|t| (t.end_ms - t.start_ms) / 60_000)
            .collect();
        assert!(wifi.iter().all(|m| (5..=25).contains(m)));
        assert!(
            wifi.iter().any(|&m| m > 15),
            "some drops outlast 15 minutes"
        );
        let sinking = build(&fleet, &Mix::default(), 60.0, 4)
            .expect("scenario")
            .faults
            .into_iter()
            .filter(|f| f.kind == FaultKind::GasPressureDrop)
            .filter_map(|f| f.gas_sinking_ms)
            .count();
        assert!(sinking >= 1, "some villages' gas sinks gradually");
    }

    #[test]
    fn scripted_events_are_placed_exactly_and_checked() {
        let fleet = fleet(20, 7);
        let boiler = fleet
            .iter()
            .position(|h| h.kind == DeviceKind::GasBoiler)
            .expect("a boiler");
        let heat_pump = fleet
            .iter()
            .position(|h| h.kind == DeviceKind::HeatPump)
            .expect("a heat pump");
        let mix = Mix::parse(
            &format!(
                "[[event]]\nkind = \"water_leak\"\nhousehold = {boiler}\nat = \"1h\"\nspeed = 0.5\n"
            ),
            "m.toml",
        )
        .expect("mix");
        let scenario = build(&fleet, &mix, 1.0, 1).expect("scenario");
        let leak = scenario
            .faults
            .iter()
            .find(|f| f.scripted)
            .expect("the scripted leak");
        assert_eq!(leak.kind, FaultKind::WaterLeak);
        assert_eq!(leak.households, vec![boiler]);
        assert_eq!(leak.start_ms, scenario.start_ms + 3_600_000);
        assert_eq!(leak.speed, Some(0.5));

        let wrong = Mix::parse(
            &format!("[[event]]\nkind = \"water_leak\"\nhousehold = {heat_pump}\nat = \"1h\"\n"),
            "m.toml",
        )
        .expect("mix");
        assert!(matches!(
            build(&fleet, &wrong, 1.0, 1),
            Err(ScenarioError::NotApplicable { .. })
        ));
        let missing = Mix::parse(
            "[[event]]\nkind = \"lockout\"\nhousehold = 99\nat = \"1h\"\n",
            "m.toml",
        )
        .expect("mix");
        assert!(matches!(
            build(&fleet, &missing, 1.0, 1),
            Err(ScenarioError::NoSuchHousehold { .. })
        ));
    }

    #[test]
    fn poisson_draws_have_the_right_mean() {
        let mut rng = Rng::new(11);
        for lambda in [0.5, 3.0, 20.0, 200.0] {
            let n = 4000;
            let mean = (0..n)
                .map(|_| poisson(&mut rng, lambda) as f64)
                .sum::<f64>()
                / n as f64;
            assert!(
                (mean - lambda).abs() < 0.1 * lambda.max(1.0),
                "λ {lambda}: {mean}"
            );
        }
        assert_eq!(poisson(&mut rng, 0.0), 0);
        assert_eq!(poisson(&mut rng, f64::NAN), 0);
    }
}
