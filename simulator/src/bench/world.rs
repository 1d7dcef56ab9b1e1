//! The simulated world of a bench run: every household's house and heater stepped in lockstep
//! through simulated time, the scheduled faults and traps applied at their moments (several
//! may overlap in one household; each fault keeps its own ground truth), residents who notice
//! the cold and complain (fast callers within the hour, some in the night when the house is
//! really cold, none about a cold they caused themselves: airing, heating switched off, away,
//! commissioning), technicians' repairs applied when they finish, and the edge boxes' readings
//! (with their store-and-forward backlogs) produced for each poll round. A unit whose breaker
//! tripped answers no Modbus request: its box stays connected but publishes nothing for it.
//!
//! The world is deterministic: it reads no clock and draws every random number from the seed,
//! keyed by what it is for, so the same run gives the same telemetry at any speed. It does no
//! IO: the bench moves its readings to the broker and its complaints to the gateway.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use edge_agent::profile::Profile;
use wire::{DeviceKind, Topic, TopicKind};

use crate::fleet::HouseholdSpec;
use crate::load::telemetry::{reading_json, ProfileCodec};
use crate::mix::{DurationRange, FaultKind, Mix, ResidentMix, TrapKind};
use crate::model::{Climate, Degradation, House, HouseParams, SensorFailure, Weather};
use crate::rng::Rng;
use crate::scenario::{PlannedFault, PlannedTrap, Scenario, GRID_MS};
use crate::score::{FaultTruth, HouseholdTruth, TrapTruth};

/// The model step, ms (the scenario grid).
pub const STEP_MS: i64 = GRID_MS;
/// After a fault ends, orders stay attributed to it until the house has recovered plus this.
pub const ATTRIBUTION_GRACE_MS: i64 = 3_600_000;
/// A supply fault's would-notice search stops this long after the supply is back.
const SUPPLY_SHADOW_AFTER_MS: i64 = 12 * 3_600_000;
/// A resident notices the cold once the room has stayed below their comfort this long.
pub const NOTICE_AFTER_MS: i64 = 10 * 60_000;
/// Most readings a box keeps while its network is down (3 days at one a minute).
const MAX_BACKLOG: usize = 3 * 24 * 60;
/// The village's normal gas supply pressure, mbar (a sinking drop starts from it).
const NORMAL_GAS_MBAR: f64 = 20.0;
/// A sinking gas drop updates the supply pressure this often, ms.
const GAS_SINK_STEP_MS: i64 = 60_000;

/// Scheduled changes to the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    FaultStart(usize),
    IgnitionLockout(usize),
    SupplyEnd(usize),
    BoxBack(usize),
    TrapStart(usize),
    TrapEnd(usize),
    Repair(usize),
    /// A sinking gas drop lowers the supply pressure a step further.
    GasSink(usize),
}

/// Why a box's network is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum NetworkDown {
    Fault(usize),
    Trap(usize),
}

/// The supply pressure of a gas drop at `at_ms` (sinking from normal, or at once), mbar.
fn gas_at(planned: &PlannedFault, at_ms: i64) -> Option<f64> {
    let target = planned.gas_mbar?;
    Some(match planned.gas_sinking_ms.filter(|&ms| ms > 0) {
        Some(sinking) => {
            let progress = ((at_ms - planned.start_ms) as f64 / sinking as f64).clamp(0.0, 1.0);
            NORMAL_GAS_MBAR - (NORMAL_GAS_MBAR - target) * progress
        }
        None => target,
    })
}

/// One household in the world.
#[derive(Debug)]
struct Home {
    spec: HouseholdSpec,
    house: House,
    codec: Arc<ProfileCodec>,
    topic: String,
    comfort_c: f64,
    night_setback_k: f64,
    powered: bool,
    /// Why the box's network is down (empty: up).
    network_down: BTreeSet<NetworkDown>,
    seq: u64,
    backlog: VecDeque<Vec<u8>>,
    /// The faults the household suffers now or is recovering from, oldest first.
    faults: Vec<usize>,
    /// Traps going on that the resident knows about (away, airing, heating off,
    /// commissioning): the cold is no reason to call.
    knowing: BTreeSet<usize>,
    /// Traps that ended, until the room is warm again or this moment passes (trap id, Unix ms).
    reheating: Vec<(usize, i64)>,
    /// The resident calls fast (elderly at home all day, family present).
    fast_caller: bool,
    /// The resident calls in the night once the room is below this, °C.
    night_call_below_c: Option<f64>,
    discomfort_since_ms: Option<i64>,
    complaint_due_ms: Option<i64>,
    /// Causes already complained about (a fault id, or `None` for cold without a fault).
    complained: BTreeSet<Option<usize>>,
}

#[derive(Debug)]
struct FaultState {
    planned: PlannedFault,
    started: bool,
    ended_ms: Option<i64>,
    noticed_ms: Option<i64>,
    would_notice_ms: Option<i64>,
    /// A technician visit is scheduled (or a repair applied).
    visited: bool,
    /// Households not yet warm again after the end.
    recovering: BTreeSet<usize>,
    window_end_ms: i64,
}

#[derive(Debug)]
struct TrapState {
    planned: PlannedTrap,
    window_end_ms: i64,
}

impl Home {
    /// A household at the scenario's start: its house with its night set-back, its
    /// resident's comfort and calling habits (drawn from the seed), everything up and quiet.
    fn new(
        spec: &HouseholdSpec,
        codec: Arc<ProfileCodec>,
        mix: &Mix,
        scenario: &Scenario,
        seed: u64,
        climate: &Climate,
    ) -> Home {
        let mut house = House::new(
            HouseParams::from(spec),
            Arc::<Profile>::clone(&spec.profile),
            climate,
            scenario.start_ms as f64 / 1000.0,
        );
        let night_setback_k = scenario
            .night_setback_k
            .get(spec.index)
            .copied()
            .unwrap_or(0.0);
        house.set_night_setback(night_setback_k);
        house.set_free_gains(true);
        let comfort_c = if spec.vulnerable {
            mix.residents.vulnerable_comfort_c
        } else {
            mix.residents.comfort_c
        };
        let mut habits = household_rng(seed, HABIT_STREAM, spec.index, 0);
        let fast_caller = habits.chance(mix.residents.fast_caller_share);
        let night_caller = habits.chance(mix.residents.night_call_share);
        let below = mix.residents.night_call_below_c.pick(habits.unit());
        let night_call_below_c = night_caller.then_some(below);
        Home {
            topic: Topic::new(
                spec.township_id.clone(),
                spec.device_id.to_string(),
                TopicKind::Telemetry,
            )
            .to_string(),
            spec: spec.clone(),
            house,
            codec,
            comfort_c,
            night_setback_k,
            powered: true,
            network_down: BTreeSet::new(),
            seq: (scenario.start_ms.max(0) as u64).saturating_mul(1000),
            backlog: VecDeque::new(),
            faults: Vec::new(),
            knowing: BTreeSet::new(),
            reheating: Vec::new(),
            fast_caller,
            night_call_below_c,
            discomfort_since_ms: None,
            complaint_due_ms: None,
            complained: BTreeSet::new(),
        }
    }

    /// Fault `id` begins in this household: the house degrades, or loses power, gas or
    /// network.
    fn start_fault(&mut self, id: usize, planned: &PlannedFault) {
        self.faults.push(id);
        match planned.kind {
            FaultKind::Lockout => {
                if let Some(category) = planned.category {
                    self.house.start(Degradation::Lockout(category));
                }
            }
            FaultKind::IgnitionFailure => {
                if planned.lockout_ms.is_some_and(|at| at > planned.start_ms) {
                    self.house.start(Degradation::IgnitionWear);
                } else {
                    self.house.start(Degradation::IgnitionFailure);
                }
            }
            FaultKind::FlowSwitch => self.house.start(Degradation::FlowSwitch),
            FaultKind::SensorOpen => {
                self.house.start(Degradation::Sensor(SensorFailure::Open));
            }
            FaultKind::SensorShort => {
                self.house.start(Degradation::Sensor(SensorFailure::Short));
            }
            FaultKind::RefrigerantLeak => self.house.start(Degradation::RefrigerantLeak {
                charge_per_day: planned.speed.unwrap_or(0.0),
            }),
            FaultKind::WaterLeak => self.house.start(Degradation::WaterLeak {
                bar_per_day: planned.speed.unwrap_or(0.0),
            }),
            FaultKind::FouledFilter => self.house.start(Degradation::FouledFilter {
                flow_per_day: planned.speed.unwrap_or(0.0),
            }),
            FaultKind::PowerOutage => {
                self.house.set_power(false);
                self.powered = false;
                // Readings a box had queued are lost with its power.
                self.backlog.clear();
            }
            FaultKind::GasPressureDrop => {
                self.house.set_gas_supply(gas_at(planned, planned.start_ms));
            }
            FaultKind::BoxOffline => {
                self.network_down.insert(NetworkDown::Fault(id));
            }
            FaultKind::PumpSeized | FaultKind::ValveClosed => {
                self.house.start(Degradation::CirculationBlocked);
            }
            FaultKind::ControllerOff => self.house.start(Degradation::ControllerOff),
            FaultKind::ControllerHang => self.house.start(Degradation::ControllerHang),
            FaultKind::BreakerTrip => self.house.start(Degradation::BreakerTrip),
            FaultKind::FanFailure => self.house.start(Degradation::FanFailure),
            FaultKind::RefrigerantLossPartial => {
                self.house.start(Degradation::PartialRefrigerantLeak {
                    charge_per_day: planned.speed.unwrap_or(0.0),
                    settles_at: planned.settles_at.unwrap_or(1.0),
                });
            }
            FaultKind::SlowWaterLeakNoGauge => {
                self.house.start(Degradation::SilentWaterLeak {
                    bar_per_day: planned.speed.unwrap_or(0.0),
                });
            }
            FaultKind::CondensateFrozen => self.house.start(Degradation::CondensateFrozen),
        }
    }
}

/// A cold the resident has felt long enough to notice.
#[derive(Debug, Clone, Copy)]
struct Cold {
    /// Since when the room has been below the resident's comfort, Unix ms.
    since_ms: i64,
    /// The room now, °C.
    indoor_c: f64,
}

impl Home {
    /// The cold the resident has noticed by `now_ms`, if any. A cold they know the reason
    /// for (a trap going on or just over) does not count, and a room back above comfort
    /// plus half a kelvin ends the discomfort.
    fn noticed_cold(&mut self, now_ms: i64) -> Option<Cold> {
        if !self.knowing.is_empty() || !self.reheating.is_empty() {
            self.discomfort_since_ms = None;
            self.complaint_due_ms = None;
            return None;
        }
        let indoor_c = self.house.indoor_temp_c();
        if indoor_c >= self.comfort_c + 0.5 {
            self.discomfort_since_ms = None;
            self.complaint_due_ms = None;
            return None;
        }
        if indoor_c >= self.comfort_c {
            return None;
        }
        let since_ms = *self.discomfort_since_ms.get_or_insert(now_ms);
        if now_ms - since_ms < NOTICE_AFTER_MS {
            return None;
        }
        Some(Cold { since_ms, indoor_c })
    }

    /// The complaint about `cause` the resident makes at `now` (Unix ms), once their patience is
    /// over (in the morning if they are asleep, unless they call at night); `None` while they
    /// wait or if they never call.
    fn complaint(
        &mut self,
        index: usize,
        cause: Option<usize>,
        cold: Cold,
        now: i64,
        residents: &ResidentMix,
        rng: &mut Rng,
    ) -> Option<NewComplaint> {
        let (never, patience) = if self.spec.vulnerable {
            (
                residents.vulnerable_never_calls,
                residents.vulnerable_patience,
            )
        } else {
            (residents.never_calls, residents.patience)
        };
        let patience = if self.fast_caller {
            residents.fast_patience
        } else {
            patience
        };
        if rng.chance(never) {
            return None;
        }
        let patience_ms = (patience.pick_s(rng.unit()) * 1000.0) as i64;
        let wake_delay_ms = (residents.wake_up_delay.pick_s(rng.unit()) * 1000.0) as i64;
        // Some call in the night: the room is really cold, or a vulnerable person's family
        // will not wait for the morning.
        let calls_at_night = self
            .night_call_below_c
            .is_some_and(|below| cold.indoor_c < below)
            || (self.spec.vulnerable && residents.vulnerable_night_calls);
        let patient_enough = now - cold.since_ms >= NOTICE_AFTER_MS + patience_ms;
        if self.complaint_due_ms.is_none() && patient_enough {
            let due = match asleep_until(now, residents.sleep_from.0, residents.sleep_to.0) {
                Some(_) if calls_at_night => now,
                Some(wake) => wake + wake_delay_ms,
                None => now,
            };
            self.complaint_due_ms = Some(due);
        } else if patient_enough && calls_at_night {
            // Waiting for the morning, the house got too cold to wait.
            self.complaint_due_ms = self.complaint_due_ms.map(|due| due.min(now));
        }
        if self.complaint_due_ms.is_none_or(|due| now < due) {
            return None;
        }
        self.complaint_due_ms = None;
        self.complained.insert(cause);
        let channel = pick_channel(rng, &residents.channels.entries());
        let text = format!(
            "{}{}: 家里暖气不热，屋里只有{:.0}度{}",
            self.spec.village.name,
            self.spec.device_id,
            cold.indoor_c,
            if self.spec.vulnerable {
                "，老人独居，请尽快来修"
            } else {
                "，请派人来看看"
            }
        );
        Some(NewComplaint {
            household: index,
            device_id: self.spec.device_id.to_string(),
            fault: cause,
            received_at_ms: now,
            channel: channel.to_owned(),
            text,
        })
    }
}

impl FaultState {
    fn new(planned: &PlannedFault) -> FaultState {
        FaultState {
            planned: planned.clone(),
            started: false,
            ended_ms: None,
            noticed_ms: None,
            would_notice_ms: None,
            visited: false,
            recovering: BTreeSet::new(),
            window_end_ms: i64::MAX,
        }
    }
}

impl TrapState {
    fn new(planned: &PlannedTrap) -> TrapState {
        TrapState {
            planned: planned.clone(),
            window_end_ms: i64::MAX,
        }
    }
}

/// A complaint a resident made.
#[derive(Debug, Clone, PartialEq)]
pub struct NewComplaint {
    pub household: usize,
    pub device_id: String,
    pub fault: Option<usize>,
    pub received_at_ms: i64,
    pub channel: String,
    pub text: String,
}

/// What a technician request is for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Purpose {
    /// Repair the fault (its repair time range).
    Repair { fault: usize, time: DurationRange },
    /// Look and find nothing to repair (a false order, a supply fault).
    Check { fault: Option<usize> },
}

/// One box in one poll round.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxRound {
    pub household: usize,
    /// The box has power and network: it should be connected.
    pub online: bool,
    /// The box lost power since its last round (it must disconnect abruptly, without DISCONNECT).
    pub readings: Vec<Vec<u8>>,
}

/// Counters of the world.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorldStats {
    /// Readings produced (published or buffered).
    pub readings: u64,
    /// Readings a box dropped because its backlog was full.
    pub backlog_dropped: u64,
    /// Repairs scheduled for a moment already simulated (applied at once; should stay 0).
    pub late_actions: u64,
}

/// The world of a bench run.
pub struct World {
    mix: Mix,
    seed: u64,
    start_ms: i64,
    now_ms: i64,
    end_ms: i64,
    /// The district weather at every step from the start to the end (one extra).
    weather: Vec<Weather>,
    climate: Climate,
    homes: Vec<Home>,
    faults: Vec<FaultState>,
    traps: Vec<TrapState>,
    actions: BTreeMap<(i64, u64), Action>,
    next_action: u64,
    complaints: Vec<NewComplaint>,
    /// Check visits already made per (household, fault).
    checks: BTreeSet<(usize, Option<usize>)>,
    stats: WorldStats,
}

/// Stable per-purpose random stream of a household.
fn household_rng(seed: u64, purpose: u64, household: usize, key: u64) -> Rng {
    Rng::derive(
        seed ^ purpose,
        (household as u64)
            .wrapping_mul(0x9E37_79B9)
            .wrapping_add(key),
    )
}

const RESIDENT_STREAM: u64 = 0x2E51_DE47;
const HABIT_STREAM: u64 = 0x4AB1_7500;

/// How long after a trap the resident knows the heating ended its cause: the room warms again
/// within this, or it is no longer the trap's cold, ms.
fn reheat_allowance_ms(kind: TrapKind) -> i64 {
    match kind {
        TrapKind::ResidentAway | TrapKind::HeatingOff => 8 * 3_600_000,
        TrapKind::Commissioning => 3 * 3_600_000,
        _ => 3_600_000,
    }
}

impl World {
    /// Builds the world at the scenario's start.
    pub fn new(fleet: &[HouseholdSpec], mix: &Mix, scenario: &Scenario, seed: u64) -> World {
        let climate = Climate::yanqing_winter(seed);
        let steps = ((scenario.end_ms - scenario.start_ms) / STEP_MS).max(0) as usize + 2;
        let weather = (0..steps)
            .map(|k| climate.weather((scenario.start_ms + k as i64 * STEP_MS) as f64 / 1000.0))
            .collect();
        let mut codecs: BTreeMap<String, Arc<ProfileCodec>> = BTreeMap::new();
        let homes = fleet
            .iter()
            .map(|spec| {
                let codec = codecs
                    .entry(spec.profile.id.clone())
                    .or_insert_with(|| Arc::new(ProfileCodec::new(Arc::clone(&spec.profile))))
                    .clone();
                Home::new(spec, codec, mix, scenario, seed, &climate)
            })
            .collect();
        let mut world = World {
            mix: mix.clone(),
            seed,
            start_ms: scenario.start_ms,
            now_ms: scenario.start_ms,
            end_ms: scenario.end_ms,
            weather,
            climate,
            homes,
            faults: scenario.faults.iter().map(FaultState::new).collect(),
            traps: scenario.traps.iter().map(TrapState::new).collect(),
            actions: BTreeMap::new(),
            next_action: 0,
            complaints: Vec::new(),
            checks: BTreeSet::new(),
            stats: WorldStats::default(),
        };
        for (id, fault) in scenario.faults.iter().enumerate() {
            world.schedule(fault.start_ms, Action::FaultStart(id));
        }
        for (id, trap) in scenario.traps.iter().enumerate() {
            world.schedule(trap.start_ms, Action::TrapStart(id));
            world.schedule(trap.end_ms, Action::TrapEnd(id));
        }
        world
    }

    fn schedule(&mut self, at_ms: i64, action: Action) {
        self.next_action += 1;
        self.actions.insert((at_ms, self.next_action), action);
    }

    /// Simulated now, Unix ms.
    pub fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub fn households(&self) -> usize {
        self.homes.len()
    }

    /// A household's device id.
    pub fn device_id(&self, household: usize) -> Option<&str> {
        self.homes.get(household).map(|h| h.spec.device_id.as_str())
    }

    /// A household's township id.
    pub fn township(&self, household: usize) -> Option<&str> {
        self.homes.get(household).map(|h| h.spec.township.id)
    }

    pub fn stats(&self) -> WorldStats {
        self.stats
    }

    /// Heat-pump defrost cycles so far, fleet-wide.
    pub fn defrost_cycles(&self) -> u64 {
        self.homes.iter().map(|h| h.house.defrost_cycles()).sum()
    }

    /// Faults started so far.
    pub fn faults_started(&self) -> usize {
        self.faults.iter().filter(|f| f.started).count()
    }

    fn weather_at(&self, at_ms: i64) -> Weather {
        let index = ((at_ms - self.start_ms) / STEP_MS).max(0) as usize;
        self.weather
            .get(index)
            .copied()
            .unwrap_or_else(|| self.climate.weather(at_ms as f64 / 1000.0))
    }

    /// Steps the world to `target_ms` (a multiple of the step after the start).
    pub fn advance_to(&mut self, target_ms: i64) {
        while self.now_ms < target_ms {
            self.apply_due_actions();
            let next = self.now_ms + STEP_MS;
            let weather = self.weather_at(next);
            let dt_s = STEP_MS as f64 / 1000.0;
            for home in &mut self.homes {
                home.house.step_in(dt_s, weather);
            }
            self.now_ms = next;
            self.residents();
            self.recoveries();
        }
        self.apply_due_actions();
    }

    fn apply_due_actions(&mut self) {
        while let Some((&(at, seq), &action)) = self.actions.first_key_value() {
            if at > self.now_ms {
                break;
            }
            self.actions.remove(&(at, seq));
            self.apply(action);
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            Action::FaultStart(id) => self.start_fault(id),
            Action::IgnitionLockout(id) => self.ignition_lockout(id),
            Action::SupplyEnd(id) => self.supply_end(id),
            Action::BoxBack(id) => self.box_back(id),
            Action::Repair(id) => self.repair(id),
            Action::GasSink(id) => self.gas_sink(id),
            Action::TrapStart(id) => self.start_trap(id),
            Action::TrapEnd(id) => self.end_trap(id),
        }
    }

    /// A worn ignition gives up: the burner locks out (unless the fault already ended).
    fn ignition_lockout(&mut self, id: usize) {
        if self.faults[id].ended_ms.is_none() {
            for &h in &self.faults[id].planned.households {
                self.homes[h].house.start(Degradation::IgnitionFailure);
            }
        }
    }

    /// Power or gas is back in the village.
    fn supply_end(&mut self, id: usize) {
        let now = self.now_ms;
        let kind = self.faults[id].planned.kind;
        for h in self.faults[id].planned.households.clone() {
            let home = &mut self.homes[h];
            match kind {
                FaultKind::PowerOutage => {
                    home.house.set_power(true);
                    home.powered = true;
                    // The box boots: a new run of sequence numbers.
                    home.seq = (now.max(0) as u64).saturating_mul(1000);
                }
                _ => home.house.set_gas_supply(None),
            }
        }
        self.end_fault(id);
    }

    /// An offline box is back on the network.
    fn box_back(&mut self, id: usize) {
        if self.faults[id].ended_ms.is_none() {
            for &h in &self.faults[id].planned.households {
                self.homes[h].network_down.remove(&NetworkDown::Fault(id));
            }
            self.end_fault(id);
        }
    }

    /// A technician repairs fault `id`.
    fn repair(&mut self, id: usize) {
        if self.faults[id].ended_ms.is_some() {
            return;
        }
        // The technician puts the whole unit right: every household fault of these
        // households that is still going on ends with this repair.
        let households = self.faults[id].planned.households.clone();
        let ended: Vec<usize> = self
            .faults
            .iter()
            .filter(|f| f.started && f.ended_ms.is_none() && !f.planned.kind.is_supply())
            .filter(|f| f.planned.households.iter().any(|h| households.contains(h)))
            .map(|f| f.planned.id)
            .collect();
        for &h in &households {
            let home = &mut self.homes[h];
            home.house.clear();
            home.network_down
                .retain(|d| !matches!(d, NetworkDown::Fault(f) if ended.contains(f)));
        }
        for fault in ended {
            self.end_fault(fault);
        }
    }

    /// A sinking gas drop lowers the supply pressure a step further.
    fn gas_sink(&mut self, id: usize) {
        if self.faults[id].ended_ms.is_some() {
            return;
        }
        let now = self.now_ms;
        let planned = &self.faults[id].planned;
        let mbar = gas_at(planned, now);
        let sinking_end = planned.start_ms + planned.gas_sinking_ms.unwrap_or(0);
        for &h in &planned.households {
            self.homes[h].house.set_gas_supply(mbar);
        }
        if now < sinking_end {
            self.schedule(now + GAS_SINK_STEP_MS, Action::GasSink(id));
        }
    }

    /// Trap `id` begins: the resident leaves, switches off, airs, or the network drops.
    fn start_trap(&mut self, id: usize) {
        let trap = self.traps[id].planned.clone();
        let home = &mut self.homes[trap.household];
        if trap.kind.resident_knows() {
            home.knowing.insert(id);
            home.discomfort_since_ms = None;
            home.complaint_due_ms = None;
        }
        match trap.kind {
            TrapKind::ResidentAway | TrapKind::HeatingOff => {
                home.house.set_away(trap.setpoint_c);
            }
            TrapKind::WifiDrop => {
                home.network_down.insert(NetworkDown::Trap(id));
            }
            TrapKind::WindowAiring => {
                let over_s = (trap.end_ms - trap.start_ms) as f64 / 1000.0;
                home.house.open_window(trap.drop_k.unwrap_or(3.0), over_s);
            }
            TrapKind::Commissioning => home.house.set_commissioning(true),
            TrapKind::NightSetback | TrapKind::Defrost => {}
        }
    }

    /// Trap `id` ends; a cold the resident knew of stays theirs while the room warms again.
    fn end_trap(&mut self, id: usize) {
        let now = self.now_ms;
        let trap = self.traps[id].planned.clone();
        let home = &mut self.homes[trap.household];
        if home.knowing.remove(&id) {
            home.reheating
                .push((id, now + reheat_allowance_ms(trap.kind)));
        }
        match trap.kind {
            TrapKind::ResidentAway | TrapKind::HeatingOff => home.house.set_away(None),
            TrapKind::WifiDrop => {
                home.network_down.remove(&NetworkDown::Trap(id));
                self.traps[id].window_end_ms = now + ATTRIBUTION_GRACE_MS;
            }
            TrapKind::WindowAiring => home.house.close_window(),
            TrapKind::Commissioning => home.house.set_commissioning(false),
            TrapKind::NightSetback | TrapKind::Defrost => {}
        }
    }

    /// Fault `id` begins in its households; its later steps (lockout, supply back, box back,
    /// sinking pressure) are scheduled.
    fn start_fault(&mut self, id: usize) {
        let planned = self.faults[id].planned.clone();
        self.faults[id].started = true;
        for &h in &planned.households {
            self.homes[h].start_fault(id, &planned);
        }
        self.schedule_fault_steps(id, &planned);
        self.faults[id].would_notice_ms = self.would_notice(&planned);
    }

    /// Schedules what happens later in fault `id` by itself.
    fn schedule_fault_steps(&mut self, id: usize, planned: &PlannedFault) {
        match planned.kind {
            FaultKind::IgnitionFailure => {
                if let Some(at) = planned.lockout_ms.filter(|&at| at > planned.start_ms) {
                    self.schedule(at, Action::IgnitionLockout(id));
                }
            }
            FaultKind::PowerOutage | FaultKind::GasPressureDrop => {
                if let Some(at) = planned.scheduled_end_ms {
                    self.schedule(at, Action::SupplyEnd(id));
                }
                if planned.gas_sinking_ms.is_some_and(|ms| ms > 0) {
                    self.schedule(planned.start_ms + GAS_SINK_STEP_MS, Action::GasSink(id));
                }
            }
            FaultKind::BoxOffline => {
                if let Some(at) = planned.scheduled_end_ms {
                    self.schedule(at, Action::BoxBack(id));
                }
            }
            _ => {}
        }
    }

    /// When the first affected resident would feel the cold if nobody repaired anything.
    fn would_notice(&self, planned: &PlannedFault) -> Option<i64> {
        if planned.kind == FaultKind::BoxOffline {
            return None;
        }
        let limit = match planned.scheduled_end_ms {
            Some(end) if planned.kind.is_supply() => {
                (end + SUPPLY_SHADOW_AFTER_MS).min(self.end_ms)
            }
            _ => self.end_ms,
        };
        planned
            .households
            .iter()
            .filter_map(|&h| {
                let home = &self.homes[h];
                let mut house = home.house.clone();
                let mut t = self.now_ms;
                let lockout = planned.lockout_ms.filter(|&at| at > t);
                let restore = planned
                    .scheduled_end_ms
                    .filter(|_| planned.kind.is_supply());
                let mut cold_since = None;
                while t < limit {
                    if house.indoor_temp_c() < home.comfort_c {
                        let since = *cold_since.get_or_insert(t);
                        if t - since >= NOTICE_AFTER_MS {
                            return Some(t);
                        }
                    } else if house.indoor_temp_c() >= home.comfort_c + 0.5 {
                        cold_since = None;
                    }
                    if lockout == Some(t) {
                        house.start(Degradation::IgnitionFailure);
                    }
                    if restore == Some(t) {
                        house.set_power(true);
                        house.set_gas_supply(None);
                    } else if planned
                        .gas_sinking_ms
                        .is_some_and(|ms| t < planned.start_ms + ms)
                        && (t - planned.start_ms) % GAS_SINK_STEP_MS == 0
                    {
                        house.set_gas_supply(gas_at(planned, t));
                    }
                    t += STEP_MS;
                    house.step_in(STEP_MS as f64 / 1000.0, self.weather_at(t));
                }
                None
            })
            .min()
    }

    fn end_fault(&mut self, id: usize) {
        let now = self.now_ms;
        let fault = &mut self.faults[id];
        if fault.ended_ms.is_some() {
            return;
        }
        fault.ended_ms = Some(now);
        if fault.planned.kind == FaultKind::BoxOffline {
            fault.window_end_ms = now + ATTRIBUTION_GRACE_MS;
            return;
        }
        fault.recovering = fault.planned.households.iter().copied().collect();
        self.recoveries();
    }

    /// Marks households warm again after their fault (or their time away) ended.
    fn recoveries(&mut self) {
        let now = self.now_ms;
        for fault in self.faults.iter_mut().filter(|f| !f.recovering.is_empty()) {
            let homes = &mut self.homes;
            fault.recovering.retain(|&h| {
                let home = &mut homes[h];
                let warm = home.house.indoor_temp_c()
                    >= (home.comfort_c + 1.0).min(home.house.setpoint_c() - 0.5);
                if warm {
                    home.faults.retain(|&f| f != fault.planned.id);
                }
                !warm
            });
            if fault.recovering.is_empty() {
                fault.window_end_ms = now + ATTRIBUTION_GRACE_MS;
            }
        }
        for home in &mut self.homes {
            if home.reheating.is_empty() {
                continue;
            }
            let warm = home.house.indoor_temp_c()
                >= (home.comfort_c + 1.0).min(home.house.setpoint_c() - 0.5);
            let traps = &mut self.traps;
            home.reheating.retain(|&(trap, until_ms)| {
                // Warm again, or cold for another reason by now.
                let over = warm || now >= until_ms;
                if over {
                    if let Some(state) = traps.get_mut(trap) {
                        state.window_end_ms = now + ATTRIBUTION_GRACE_MS;
                    }
                }
                !over
            });
        }
    }

    /// Residents feel the cold, notice and complain.
    fn residents(&mut self) {
        let now = self.now_ms;
        let residents = self.mix.residents;
        for (index, home) in self.homes.iter_mut().enumerate() {
            let Some(cold) = home.noticed_cold(now) else {
                continue;
            };
            let cause = home.faults.first().copied();
            if let Some(fault) = cause.and_then(|f| self.faults.get_mut(f)) {
                fault.noticed_ms.get_or_insert(now);
            }
            if home.complained.contains(&cause) {
                continue;
            }
            let key = cause.map_or(u64::MAX, |f| f as u64);
            let mut rng = household_rng(self.seed, RESIDENT_STREAM, index, key);
            if let Some(complaint) = home.complaint(index, cause, cold, now, &residents, &mut rng) {
                self.complaints.push(complaint);
            }
        }
    }

    /// Complaints made since the last call, in time order.
    pub fn take_complaints(&mut self) -> Vec<NewComplaint> {
        std::mem::take(&mut self.complaints)
    }

    /// The readings of a poll round at the world's current time, box by box.
    pub fn poll_round(&mut self) -> Vec<BoxRound> {
        let ts_ms = self.now_ms;
        let store_and_forward = self.mix.telemetry.store_and_forward;
        let mut rounds = Vec::with_capacity(self.homes.len());
        for (index, home) in self.homes.iter_mut().enumerate() {
            let online = home.powered && home.network_down.is_empty();
            let mut readings = Vec::new();
            // A unit whose breaker tripped does not answer: the box reads nothing.
            if home.powered && home.house.responds() {
                home.seq += 1;
                home.house.refresh_noise();
                let values = home.house.values();
                let (quantised, fault) = home.codec.quantise(&values);
                let json = reading_json(
                    home.spec.device_id.as_str(),
                    ts_ms,
                    home.seq,
                    &home.spec.profile.id,
                    home.spec.kind,
                    &quantised,
                    fault.as_ref(),
                );
                self.stats.readings += 1;
                if online {
                    readings.extend(home.backlog.drain(..));
                    readings.push(json);
                } else if store_and_forward {
                    if home.backlog.len() >= MAX_BACKLOG {
                        home.backlog.pop_front();
                        self.stats.backlog_dropped += 1;
                    }
                    home.backlog.push_back(json);
                }
            }
            rounds.push(BoxRound {
                household: index,
                online,
                readings,
            });
        }
        rounds
    }

    /// The telemetry topic of a household's device.
    pub fn telemetry_topic(&self, household: usize) -> Option<&str> {
        self.homes.get(household).map(|h| h.topic.as_str())
    }

    /// What a request (a rule order or a complaint) about `household` at `at_ms` sends a
    /// technician to do; `None` when a technician is already on the fault.
    /// The kind of the fault the household suffers at `at_ms`, if any (what a call to the
    /// household would find out).
    pub fn active_fault_kind(&self, household: usize, at_ms: i64) -> Option<FaultKind> {
        self.faults
            .iter()
            .filter(|f| f.planned.households.contains(&household))
            .find(|f| {
                f.started && f.planned.start_ms <= at_ms && f.ended_ms.is_none_or(|end| end > at_ms)
            })
            .map(|f| f.planned.kind)
    }

    pub fn classify_request(&mut self, household: usize, at_ms: i64) -> Option<Purpose> {
        let fault = self
            .faults
            .iter()
            .filter(|f| f.planned.households.contains(&household))
            .find(|f| {
                f.started && f.planned.start_ms <= at_ms && f.ended_ms.is_none_or(|end| end > at_ms)
            })
            .map(|f| f.planned.id);
        match fault {
            Some(id) if !self.faults[id].planned.kind.is_supply() => {
                if self.faults[id].visited {
                    return None;
                }
                self.faults[id].visited = true;
                let time = self.mix.faults.repair(self.faults[id].planned.kind)?;
                Some(Purpose::Repair { fault: id, time })
            }
            // A supply fault: one wasted check per household and fault.
            Some(id) => self
                .checks
                .insert((household, Some(id)))
                .then_some(Purpose::Check { fault: Some(id) }),
            // Nothing wrong: every false order or cold-without-fault complaint costs a check.
            None => Some(Purpose::Check { fault: None }),
        }
    }

    /// The technician finishes repairing `fault` at `at_ms`.
    pub fn schedule_repair(&mut self, fault: usize, at_ms: i64) {
        let at = if at_ms <= self.now_ms {
            self.stats.late_actions += 1;
            self.now_ms
        } else {
            at_ms.div_euclid(STEP_MS) * STEP_MS
        };
        self.schedule(at, Action::Repair(fault));
    }

    /// The ground truth for the score card.
    pub fn truth(&self) -> (Vec<HouseholdTruth>, Vec<FaultTruth>, Vec<TrapTruth>) {
        let households = self
            .homes
            .iter()
            .map(|h| HouseholdTruth {
                device_id: h.spec.device_id.to_string(),
                township: h.spec.township.id.to_owned(),
                village: h.spec.village.id.to_owned(),
                night_setback_k: h.night_setback_k,
            })
            .collect();
        let faults = self
            .faults
            .iter()
            .filter(|f| f.started)
            .map(|f| FaultTruth {
                id: f.planned.id,
                kind: f.planned.kind,
                households: f.planned.households.clone(),
                village: f.planned.village.clone(),
                start_ms: f.planned.start_ms,
                ended_ms: f.ended_ms,
                window_end_ms: f.window_end_ms,
                noticed_ms: f.noticed_ms,
                would_notice_ms: f.would_notice_ms,
            })
            .collect();
        let traps = self
            .traps
            .iter()
            .filter(|t| t.planned.start_ms <= self.now_ms)
            .map(|t| TrapTruth {
                id: t.planned.id,
                kind: t.planned.kind,
                household: t.planned.household,
                start_ms: t.planned.start_ms,
                window_end_ms: t.window_end_ms,
            })
            .collect();
        (households, faults, traps)
    }

    /// The kind of a household's device.
    pub fn device_kind(&self, household: usize) -> Option<DeviceKind> {
        self.homes.get(household).map(|h| h.spec.kind)
    }

    /// A household's true indoor temperature (for tests and progress).
    pub fn indoor_temp_c(&self, household: usize) -> Option<f64> {
        self.homes.get(household).map(|h| h.house.indoor_temp_c())
    }
}

/// If `now_ms` falls in the sleeping hours, the moment the resident wakes (Unix ms).
fn asleep_until(now_ms: i64, sleep_from_h: f64, sleep_to_h: f64) -> Option<i64> {
    let hour = crate::model::local_hour(now_ms as f64 / 1000.0);
    let asleep = if sleep_from_h <= sleep_to_h {
        (sleep_from_h..sleep_to_h).contains(&hour)
    } else {
        hour >= sleep_from_h || hour < sleep_to_h
    };
    if !asleep {
        return None;
    }
    let hours_to_wake = (sleep_to_h - hour).rem_euclid(24.0);
    Some(now_ms + (hours_to_wake * 3_600_000.0).round() as i64)
}

fn pick_channel<'a>(rng: &mut Rng, weights: &[(&'a str, f64)]) -> &'a str {
    let total: f64 = weights.iter().map(|(_, w)| w.max(0.0)).sum();
    let mut target = rng.unit() * total;
    for (name, weight) in weights {
        if target < weight.max(0.0) {
            return name;
        }
        target -= weight.max(0.0);
    }
    weights.last().map_or("hotline_12345", |(name, _)| name)
}

#[cfg(test)]
mod tests;
