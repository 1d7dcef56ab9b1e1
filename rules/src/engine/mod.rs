//! The event-time engine: per device × rule state machines driven by readings and a watermark,
//! a per-device reorder buffer, derived-value windows, escalation within an episode, and the
//! fleet layer (group incidents and suppression).
//!
//! Per device the engine keeps its last accepted sequence number and timestamp, a small reorder
//! buffer, the windowed series its rules use ([`crate::window`]), and one compact state per
//! rule, indexed by the rule's position. Devices sit in a `Vec` with a hash index; every output
//! is sorted, so iteration order never shows.
//!
//! Ordering: a reading whose `seq` is not above the device's last evaluated `seq` (or equals a
//! buffered one) is a duplicate. With `lateness` zero (the default) a reading is evaluated on
//! arrival and one older than the device's last evaluated reading is late (dropped, counted).
//! With `lateness` L, a reading waits in the device's reorder buffer until the watermark or the
//! device's newest timestamp minus L passes it, and readings within L are evaluated in
//! event-time order whatever order they arrived in.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::{DeviceId, DeviceKind, Fault, Telemetry};

use crate::area::{AreaSlot, AreaWeather};
use crate::condition::{
    absence_firing_summary, absence_resolved_summary, for_clause, Condition, Evaluation, Observed,
};
use crate::dense::IdIndex;
use crate::expr::{canonical_index, Context, Truth};
use crate::fleet::{Fleet, IncidentTransition};
use crate::rule::{duration_ms, Action, Effective, Rule, RuleSet, Severity};
use crate::snapshot::{AlertState, DeviceSnapshot, Snapshot, SNAPSHOT_FORMAT};
use crate::window::FleetBaselines;
use crate::window::SeriesState;

/// Number of canonical values (dense value arrays are this long).
pub const CANONICAL_LEN: usize = wire::values::CANONICAL.len();

/// Escalation timers kept per device × rule.
mod absence;
mod restore;
mod step;

use absence::{receive_absence, scan_absence};
use restore::{device_snapshot, restore_device, OldSeries};
use step::{evaluate, release, warm};

const MAX_ESCALATIONS: usize = crate::parse::MAX_ESCALATIONS;
/// "No time" in compact timers.
const NONE: i64 = i64::MIN;

/// Whether an alert became active or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransitionKind {
    /// The rule's condition held for its `for`: the alert is active.
    Firing,
    /// The clear condition held for `clear_for` (or a reading arrived, for absence rules).
    Resolved,
}

/// One alert transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Stable id of the episode, shared by its firing, escalations and resolution:
    /// `{rule_id}:{device_id}:{fired_at_ms}`.
    pub episode_id: String,
    /// The rule.
    pub rule_id: String,
    /// The device.
    pub device_id: DeviceId,
    /// Firing or resolved.
    pub kind: TransitionKind,
    /// Event time of the transition, Unix milliseconds.
    pub at_ms: i64,
    /// The episode's severity (at its current escalation level).
    pub severity: Severity,
    /// What to do. [`Action::AlertOnly`] when a fleet incident suppresses the rule's order.
    pub action: Action,
    /// A sentence for operators, e.g. `indoor_temp_c 11.2 below 14 for 30m`.
    pub summary: String,
    /// The id of the fleet incident that explains this alert (its order is suppressed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
}

/// A severity rise within an open episode: add it as an event to the episode's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    /// The episode (the same id as its firing).
    pub episode_id: String,
    pub rule_id: String,
    pub device_id: DeviceId,
    /// Event time, Unix milliseconds.
    pub at_ms: i64,
    /// Severity before.
    pub from: Severity,
    /// Severity now.
    pub severity: Severity,
    /// The action at the new level (an order's priority may rise).
    pub action: Action,
    pub summary: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
}

/// Everything one call produced, each list sorted by event time.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Device alerts firing and resolving.
    pub transitions: Vec<Transition>,
    /// Severity rises within open episodes.
    pub escalations: Vec<Escalation>,
    /// Fleet incidents firing and resolving.
    pub incidents: Vec<IncidentTransition>,
}

impl Outcome {
    /// Whether nothing happened.
    pub fn is_empty(&self) -> bool {
        self.transitions.is_empty() && self.escalations.is_empty() && self.incidents.is_empty()
    }

    fn sort(&mut self) {
        self.transitions
            .sort_by(|a, b| transition_key(a).cmp(&transition_key(b)));
        self.escalations.sort_by(|a, b| {
            (a.at_ms, &a.device_id, &a.rule_id).cmp(&(b.at_ms, &b.device_id, &b.rule_id))
        });
        self.incidents.sort_by(|a, b| {
            (a.at_ms, &a.fleet_rule_id, &a.group, a.kind).cmp(&(
                b.at_ms,
                &b.fleet_rule_id,
                &b.group,
                b.kind,
            ))
        });
    }

    fn append(&mut self, other: Outcome) {
        self.transitions.extend(other.transitions);
        self.escalations.extend(other.escalations);
        self.incidents.extend(other.incidents);
    }
}

/// The order of transitions in one call's output: time, device, rule, episode start, kind.
pub fn transition_key(t: &Transition) -> (i64, &DeviceId, &str, i64, TransitionKind) {
    let start = t
        .episode_id
        .rsplit(':')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MIN);
    (t.at_ms, &t.device_id, &t.rule_id, start, t.kind)
}

/// What the gateway knows about a device: where it is and who lives there. Unknown fields are
/// ignored when read, so a richer registry (the simulator's manifest) reads as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Heat pump or gas boiler; `None` counts the device for every fleet rule.
    #[serde(default)]
    pub kind: Option<DeviceKind>,
    /// Township id (e.g. `yongning`).
    #[serde(default)]
    pub township: Option<String>,
    /// Village name, unique within its township.
    #[serde(default)]
    pub village: Option<String>,
    /// An elderly, ill or otherwise vulnerable household: faster, stricter rules.
    #[serde(default)]
    pub vulnerable: bool,
    /// Free device groups for rule overrides (e.g. `pilot`, `old_building`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The household (one edge box) the device belongs to. Fleet rules count households, so a
    /// box that dies with its heat pump and boiler is one affected household, not two; a
    /// device without one counts as its own household.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<String>,
}

/// Engine settings that are not rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// How far out of order readings of one device may arrive and still be evaluated in order.
    /// Zero: evaluate on arrival, drop older readings as late.
    pub lateness: Duration,
    /// Readings a device's reorder buffer holds at most; beyond it the oldest is released.
    pub max_buffered: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            lateness: Duration::ZERO,
            max_buffered: 64,
        }
    }
}

/// Counters since the engine (or the snapshot it was restored from) started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineStats {
    /// Readings passed to [`Engine::ingest`] / [`Engine::process`], dropped ones included.
    pub readings_total: u64,
    /// Readings dropped because their `seq` was already seen.
    pub duplicates_dropped_total: u64,
    /// Readings dropped because they were older than the device's last evaluated reading.
    pub late_dropped_total: u64,
    /// Transitions returned.
    pub transitions_total: u64,
    /// Readings that arrived out of order and were evaluated in order.
    #[serde(default)]
    pub reordered_total: u64,
    /// Escalations returned.
    #[serde(default)]
    pub escalations_total: u64,
    /// Incident transitions returned.
    #[serde(default)]
    pub incidents_total: u64,
    /// Firings returned suppressed by an incident.
    #[serde(default)]
    pub suppressed_total: u64,
}

/// The compact state of one rule for one device: the [`AlertState`] packed into plain fields
/// (48 bytes, against 64 with the enum, whose `Option<i64>` takes 16), since every device holds
/// one per rule of the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PairState {
    /// Pending: when the condition first held; firing: the firing time; idle: `NONE`.
    at_ms: i64,
    /// Firing: the first reading of an unbroken run meeting the clear condition (`NONE` when
    /// none); otherwise `NONE`.
    clear_since_ms: i64,
    /// Pending timers of the escalation levels (`NONE` when not pending).
    escalation_since: [i64; MAX_ESCALATIONS],
    phase: Phase,
    /// Firing: the escalation level.
    level: u8,
    /// For an absence rule with a guard: whether the guard held at the last reading.
    guard: bool,
}

/// Which [`AlertState`] a [`PairState`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Pending,
    Firing,
}

impl PairState {
    const IDLE: PairState = PairState {
        at_ms: NONE,
        clear_since_ms: NONE,
        escalation_since: [NONE; MAX_ESCALATIONS],
        phase: Phase::Idle,
        level: 0,
        guard: false,
    };

    /// The alert state this pair holds.
    fn alert(&self) -> AlertState {
        match self.phase {
            Phase::Idle => AlertState::Idle,
            Phase::Pending => AlertState::Pending {
                since_ms: self.at_ms,
            },
            Phase::Firing => AlertState::Firing {
                fired_at_ms: self.at_ms,
                clear_since_ms: (self.clear_since_ms != NONE).then_some(self.clear_since_ms),
                level: self.level,
            },
        }
    }

    /// Stores an alert state (the escalation timers and the guard are kept).
    fn set_alert(&mut self, alert: AlertState) {
        (self.phase, self.at_ms, self.clear_since_ms, self.level) = match alert {
            AlertState::Idle => (Phase::Idle, NONE, NONE, 0),
            AlertState::Pending { since_ms } => (Phase::Pending, since_ms, NONE, 0),
            AlertState::Firing {
                fired_at_ms,
                clear_since_ms,
                level,
            } => (
                Phase::Firing,
                fired_at_ms,
                clear_since_ms.unwrap_or(NONE),
                level,
            ),
        };
    }

    fn is_firing(&self) -> bool {
        self.phase == Phase::Firing
    }
}

/// A reading reduced to what rules read: dense canonical values and the fault.
#[derive(Debug, Clone)]
struct Sample {
    ts_ms: i64,
    seq: u64,
    kind: DeviceKind,
    values: [f64; CANONICAL_LEN],
    fault: Option<Fault>,
}

impl Sample {
    fn from_reading(reading: &Telemetry) -> Self {
        let mut values = [f64::NAN; CANONICAL_LEN];
        crate::dense::dense_values(&reading.values, &mut values);
        Sample {
            ts_ms: reading.ts_ms,
            seq: reading.seq,
            kind: reading.kind,
            values,
            fault: reading.fault.clone(),
        }
    }

    fn to_reading(&self, device_id: &DeviceId) -> Telemetry {
        Telemetry {
            v: wire::SCHEMA_VERSION,
            device_id: device_id.clone(),
            ts_ms: self.ts_ms,
            seq: self.seq,
            profile: String::new(),
            kind: self.kind,
            values: wire::values::CANONICAL
                .iter()
                .zip(&self.values)
                .filter(|(_, v)| v.is_finite())
                .map(|(c, v)| (c.name.to_owned(), *v))
                .collect(),
            fault: self.fault.clone(),
            extra: BTreeMap::new(),
        }
    }
}

impl Observed for Sample {
    fn value_of(&self, name: &str) -> Option<f64> {
        canonical_index(name)
            .and_then(|i| self.values.get(usize::from(i)).copied())
            .filter(|v| !v.is_nan())
    }

    fn fault_of(&self) -> Option<&Fault> {
        self.fault.as_ref()
    }
}

/// What the engine keeps per device.
#[derive(Debug, Clone)]
struct DeviceState {
    id: DeviceId,
    kind: DeviceKind,
    /// Whether any reading was evaluated (`last_seq` / `last_ts_ms` are meaningful).
    released: bool,
    last_seq: u64,
    last_ts_ms: i64,
    /// Newest timestamp received (evaluated or buffered): absence is judged from it.
    newest_ts_ms: i64,
    buffer: Vec<Sample>,
    pairs: Vec<PairState>,
    series: SeriesState,
    /// Rule variant (override) per rule; empty when every rule uses its own fields.
    variants: Vec<u8>,
    vulnerable: bool,
    /// The device's profile group in the fleet's baselines (`None` until a reading names its
    /// profile, or when the rules compare nothing with the fleet).
    group: Option<u16>,
    /// The device's slot in its village's outdoor readings (`None` without a registered village).
    area: Option<AreaSlot>,
}

/// What evaluating one device's reading shares with the other devices: the fleet's baselines
/// and the villages' outdoor readings.
#[derive(Debug, Clone, Default)]
struct Peers {
    /// What the units of each profile do in each condition (`fleet_ratio` and friends).
    baselines: FleetBaselines,
    /// Villages' outdoor readings, for `outdoor_estimate()`.
    weather: AreaWeather,
}

/// The rule engine. Pure: no IO, no clock; time is the readings' event time and the watermark.
#[derive(Debug, Clone)]
pub struct Engine {
    rules: RuleSet,
    config: EngineConfig,
    devices: Vec<DeviceState>,
    index: IdIndex,
    /// Devices with a non-empty reorder buffer.
    buffered: BTreeSet<usize>,
    watermark_ms: Option<i64>,
    /// No absence deadline is before this (a lower bound): `advance` skips the scan until the
    /// watermark reaches it.
    next_absence_ms: i64,
    /// Per rule: index of the threshold value (simple threshold rules).
    threshold_index: Vec<Option<u8>>,
    /// Positions of the absence rules.
    absence_rules: Vec<usize>,
    fleet: Fleet,
    peers: Peers,
    stats: EngineStats,
}

impl Engine {
    /// An engine with no devices, no watermark and the default configuration (no reordering).
    pub fn new(rules: RuleSet) -> Self {
        Self::with_config(rules, EngineConfig::default())
    }

    /// An engine with a configuration.
    pub fn with_config(rules: RuleSet, config: EngineConfig) -> Self {
        let threshold_index = threshold_indices(&rules);
        let absence_rules = rules
            .rules()
            .iter()
            .enumerate()
            .filter(|(_, rule)| rule.condition.is_absence())
            .map(|(index, _)| index)
            .collect();
        Self {
            rules,
            config,
            devices: Vec::new(),
            index: IdIndex::default(),
            buffered: BTreeSet::new(),
            watermark_ms: None,
            next_absence_ms: i64::MIN,
            threshold_index,
            absence_rules,
            fleet: Fleet::default(),
            peers: Peers::default(),
            stats: EngineStats::default(),
        }
    }

    /// The position of a device in `devices`.
    fn device_position(&self, device_id: &DeviceId) -> Option<usize> {
        let devices = &self.devices;
        self.index.get(device_id, |i| devices.get(i).map(|d| &d.id))
    }

    /// The configuration.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// Registers a device with its place and household (or updates it). Fleet rules count
    /// registered devices per group; overrides select on these attributes. Registration may
    /// come before or after the device's first reading.
    pub fn register_device(&mut self, device_id: DeviceId, info: DeviceInfo) {
        if let Some(index) = self.device_position(&device_id) {
            if let Some(device) = self.devices.get_mut(index) {
                device.variants = variants_for(&self.rules, Some(&info));
                device.vulnerable = info.vulnerable;
                device.area = self.peers.weather.join(
                    device.area,
                    info.township.as_deref(),
                    info.village.as_deref(),
                );
            }
        }
        self.fleet.register(device_id, info);
    }

    /// The registration of a device.
    pub fn device_info(&self, device_id: &DeviceId) -> Option<&DeviceInfo> {
        self.fleet.registry.get(device_id)
    }

    /// Feeds one validated reading. Returns the alert transitions it caused, sorted by
    /// (`at_ms`, device, rule, episode start, kind). Escalations and incidents are only in
    /// [`Engine::process`]'s [`Outcome`].
    pub fn ingest(&mut self, reading: &Telemetry) -> Vec<Transition> {
        self.process(reading).transitions
    }

    /// Moves event-time "now" forward; returns the alert transitions. See
    /// [`Engine::advance_watermark`].
    pub fn advance(&mut self, watermark_ms: i64) -> Vec<Transition> {
        self.advance_watermark(watermark_ms).transitions
    }

    /// Feeds one validated reading; returns everything it caused.
    ///
    /// Duplicates (`seq` not above the device's last evaluated one, or equal to a buffered one)
    /// and late readings (older than the device's last evaluated reading) are dropped and
    /// counted. A reading that arrives after a gap at least as long as an absence rule's `for`
    /// reports that gap itself (firing at `last + for`, resolved at the reading), so the output
    /// does not depend on how often the watermark was advanced in between.
    pub fn process(&mut self, reading: &Telemetry) -> Outcome {
        self.stats.readings_total = self.stats.readings_total.saturating_add(1);
        let mut out = Outcome::default();
        let index = self.device_index(reading);
        if !self.admit(index, reading) {
            return out;
        }
        if let Some(device) = self.devices.get(index) {
            warm(self.rules.series(), device);
        }
        let sample = Sample::from_reading(reading);
        self.receive(index, &sample, &mut out);
        let lateness = duration_ms(self.config.lateness);
        // Without lateness, and with nothing buffered, the reading is evaluated at once;
        // otherwise it goes through the reorder buffer.
        match self.devices.get_mut(index) {
            Some(device) if lateness == 0 && device.buffer.is_empty() => evaluate(
                &self.rules,
                &self.threshold_index,
                &mut self.peers,
                device,
                &sample,
                &mut out,
            ),
            _ => self.buffer(index, sample, lateness, &mut out),
        }
        self.route(out)
    }

    /// The position of the reading's device, added (with its registration, if any) when new.
    fn device_index(&mut self, reading: &Telemetry) -> usize {
        if let Some(index) = self.device_position(&reading.device_id) {
            return index;
        }
        let info = self.fleet.registry.get(&reading.device_id);
        self.devices.push(DeviceState {
            id: reading.device_id.clone(),
            kind: reading.kind,
            released: false,
            last_seq: 0,
            last_ts_ms: reading.ts_ms,
            newest_ts_ms: reading.ts_ms,
            buffer: Vec::new(),
            pairs: vec![PairState::IDLE; self.rules.len()],
            series: self.rules.series().new_state_for(reading.kind),
            variants: variants_for(&self.rules, info),
            vulnerable: info.is_some_and(|i| i.vulnerable),
            group: None,
            area: info.and_then(|i| {
                self.peers
                    .weather
                    .join(None, i.township.as_deref(), i.village.as_deref())
            }),
        });
        let index = self.devices.len() - 1;
        let devices = &self.devices;
        self.index
            .insert(&reading.device_id, index, |i| devices.get(i).map(|d| &d.id));
        self.next_absence_ms = i64::MIN;
        index
    }

    /// Whether device `index` takes the reading: a duplicate or late one is counted and
    /// dropped. A reading taken puts the device in the fleet group of its profile.
    fn admit(&mut self, index: usize, reading: &Telemetry) -> bool {
        let Some(device) = self.devices.get_mut(index) else {
            return false;
        };
        let duplicate = (device.released && reading.seq <= device.last_seq)
            || device.buffer.iter().any(|s| s.seq == reading.seq);
        if duplicate {
            self.stats.duplicates_dropped_total =
                self.stats.duplicates_dropped_total.saturating_add(1);
            return false;
        }
        if device.released && reading.ts_ms < device.last_ts_ms {
            self.stats.late_dropped_total = self.stats.late_dropped_total.saturating_add(1);
            return false;
        }
        if self.rules.series().uses_fleet()
            && !device
                .group
                .is_some_and(|g| self.peers.baselines.is_group_of(g, &reading.profile))
        {
            device.group = self.peers.baselines.join(device.group, &reading.profile);
        }
        true
    }

    /// The receipt of an admitted reading (as `sample`), before any rule judges it: the device
    /// is alive, whatever the reading says (absence rules end or report the silence), and its
    /// newest timestamp moves.
    fn receive(&mut self, index: usize, sample: &Sample, out: &mut Outcome) {
        let Some(device) = self.devices.get_mut(index) else {
            return;
        };
        let first = !device.released && device.buffer.is_empty();
        let previous_newest = (!first).then_some(device.newest_ts_ms);
        let village_outdoor = match (device.area, self.rules.series().village_outdoor_source()) {
            (Some(at), Some(outdoor))
                if sample
                    .values
                    .get(usize::from(outdoor))
                    .is_none_or(|v| v.is_nan()) =>
            {
                self.peers.weather.estimate(at, sample.ts_ms)
            }
            _ => f64::NAN,
        };
        let resumed = receive_absence(
            &self.rules,
            &self.absence_rules,
            device,
            sample,
            previous_newest,
            village_outdoor,
            out,
        );
        if resumed {
            self.next_absence_ms = i64::MIN;
        }
        if sample.ts_ms < device.newest_ts_ms {
            self.stats.reordered_total = self.stats.reordered_total.saturating_add(1);
        }
        device.newest_ts_ms = if first {
            sample.ts_ms
        } else {
            device.newest_ts_ms.max(sample.ts_ms)
        };
    }

    /// Buffers the sample in event-time order and releases what the watermark and the device's
    /// newest timestamp minus `lateness` let through.
    fn buffer(&mut self, index: usize, sample: Sample, lateness: i64, out: &mut Outcome) {
        let Some(device) = self.devices.get_mut(index) else {
            return;
        };
        let position = device
            .buffer
            .partition_point(|s| (s.ts_ms, s.seq) <= (sample.ts_ms, sample.seq));
        device.buffer.insert(position, sample);
        let frontier = self
            .watermark_ms
            .unwrap_or(i64::MIN)
            .max(device.newest_ts_ms.saturating_sub(lateness));
        release(
            &self.rules,
            &self.threshold_index,
            &mut self.peers,
            device,
            frontier,
            self.config.max_buffered,
            out,
        );
        if device.buffer.is_empty() {
            self.buffered.remove(&index);
        } else {
            self.buffered.insert(index);
        }
    }

    /// Moves event-time "now" forward to `watermark_ms`: releases buffered readings it passes,
    /// fires absence rules whose deadline (newest reading + `for`) is at or before it, and
    /// processes fleet correlation up to it. A watermark not above the current one is ignored.
    /// Only devices seen at least once are tracked for absence.
    pub fn advance_watermark(&mut self, watermark_ms: i64) -> Outcome {
        if self
            .watermark_ms
            .is_some_and(|current| watermark_ms <= current)
        {
            return Outcome::default();
        }
        self.watermark_ms = Some(watermark_ms);
        let mut out = Outcome::default();
        let buffered: Vec<usize> = self.buffered.iter().copied().collect();
        for index in buffered {
            if let Some(device) = self.devices.get_mut(index) {
                release(
                    &self.rules,
                    &self.threshold_index,
                    &mut self.peers,
                    device,
                    watermark_ms,
                    self.config.max_buffered,
                    &mut out,
                );
                if device.buffer.is_empty() {
                    self.buffered.remove(&index);
                }
            }
        }
        if watermark_ms >= self.next_absence_ms {
            self.next_absence_ms =
                scan_absence(&self.rules, &mut self.devices, watermark_ms, &mut out);
        }
        self.route(out)
    }

    /// Sends device output through the fleet layer and releases what the watermark allows.
    fn route(&mut self, device_out: Outcome) -> Outcome {
        let mut out = Outcome::default();
        if self.rules.fleet().is_empty() {
            out = device_out;
        } else {
            for t in device_out.transitions {
                if !self.fleet.route_transition(&self.rules, &t) {
                    out.transitions.push(t);
                }
            }
            for e in device_out.escalations {
                if !self.fleet.route_escalation(&self.rules, &e) {
                    out.escalations.push(e);
                }
            }
            if let Some(watermark) = self.watermark_ms {
                let mut released = Outcome::default();
                self.fleet.release(&self.rules, watermark, &mut released);
                out.append(released);
            }
        }
        out.sort();
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let suppressed = out
            .transitions
            .iter()
            .filter(|t| t.kind == TransitionKind::Firing && t.suppressed_by.is_some())
            .count();
        self.stats.transitions_total = self
            .stats
            .transitions_total
            .saturating_add(count(out.transitions.len()));
        self.stats.escalations_total = self
            .stats
            .escalations_total
            .saturating_add(count(out.escalations.len()));
        self.stats.incidents_total = self
            .stats
            .incidents_total
            .saturating_add(count(out.incidents.len()));
        self.stats.suppressed_total = self
            .stats
            .suppressed_total
            .saturating_add(count(suppressed));
        out
    }

    /// The event-time watermark, if one was ever given.
    pub fn watermark_ms(&self) -> Option<i64> {
        self.watermark_ms
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The number of devices seen.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Readings waiting in reorder buffers, and fleet items waiting for the watermark.
    pub fn pending(&self) -> (usize, usize) {
        let buffered = self
            .buffered
            .iter()
            .filter_map(|i| self.devices.get(*i))
            .map(|d| d.buffer.len())
            .sum();
        (buffered, self.fleet.queued())
    }

    /// The state of one rule for one device (idle when unknown).
    pub fn alert_state(&self, device_id: &DeviceId, rule_id: &str) -> AlertState {
        self.rules
            .index_of(rule_id)
            .and_then(|rule| {
                let device = self.devices.get(self.device_position(device_id)?)?;
                device.pairs.get(rule).map(PairState::alert)
            })
            .unwrap_or_default()
    }

    /// Bytes of engine state per device, measured from the sizes of its parts (heap included):
    /// per-rule states, series buckets, buffer, variants and the device's own fields.
    pub fn state_bytes_per_device(&self) -> usize {
        let fixed =
            std::mem::size_of::<DeviceState>() + std::mem::size_of::<(DeviceId, usize)>() + 16;
        let pairs = self.rules.len() * std::mem::size_of::<PairState>();
        // The larger of the two kinds' series layouts.
        let series = [DeviceKind::HeatPump, DeviceKind::GasBoiler]
            .into_iter()
            .map(|kind| {
                let (heads, cells) = self.rules.series().state_size(Some(kind));
                heads * std::mem::size_of::<crate::window::Head>()
                    + cells * std::mem::size_of::<crate::window::Cell>()
            })
            .max()
            .unwrap_or(0);
        let variants = if self.rules.rules().iter().any(|r| !r.overrides.is_empty()) {
            self.rules.len()
        } else {
            0
        };
        fixed + pairs + series + variants
    }

    /// The whole state as plain data.
    pub fn snapshot(&self) -> Snapshot {
        let mut order: Vec<&DeviceState> = self.devices.iter().collect();
        order.sort_by(|a, b| a.id.cmp(&b.id));
        let devices = order
            .into_iter()
            .map(|device| device_snapshot(&self.rules, &self.peers, device))
            .collect();
        Snapshot {
            format: SNAPSHOT_FORMAT,
            watermark_ms: self.watermark_ms,
            stats: self.stats,
            devices,
            series: self.rules.series().keys(),
            series_held: [DeviceKind::HeatPump, DeviceKind::GasBoiler]
                .into_iter()
                .map(|kind| (kind, self.rules.series().held(Some(kind)).to_vec()))
                .collect(),
            registry: self
                .fleet
                .registry
                .iter()
                .map(|(id, info)| crate::snapshot::Registered {
                    device_id: id.clone(),
                    info: info.clone(),
                })
                .collect(),
            fleet: self.fleet.snapshot(),
            baselines: self.peers.baselines.clone(),
        }
    }

    /// An engine with `rules` and the state in `snapshot`. State of rules no longer in `rules`
    /// is dropped; rules not in the snapshot start idle. When the snapshot lists a device twice,
    /// the last entry wins.
    pub fn restore(rules: RuleSet, snapshot: Snapshot) -> Self {
        Self::restore_with_config(rules, EngineConfig::default(), snapshot)
    }

    /// [`Engine::restore`] with a configuration.
    pub fn restore_with_config(rules: RuleSet, config: EngineConfig, snapshot: Snapshot) -> Self {
        let mut engine = Engine::with_config(rules, config);
        for registered in snapshot.registry {
            engine.fleet.register(registered.device_id, registered.info);
        }
        let rule_index: BTreeMap<String, usize> = engine
            .rules
            .rules()
            .iter()
            .enumerate()
            .map(|(index, rule)| (rule.id.clone(), index))
            .collect();
        // Old series position -> new series position.
        let new_keys: Vec<String> = engine.rules.series().keys();
        let series_map: Vec<Option<usize>> = snapshot
            .series
            .iter()
            .map(|key| new_keys.iter().position(|k| k == key))
            .collect();
        engine.peers.baselines = snapshot.baselines;
        for device in snapshot.devices {
            let profile = device.profile.clone();
            let outdoor = device.outdoor;
            let old = OldSeries {
                map: &series_map,
                keys: &snapshot.series,
                held: &snapshot.series_held,
            };
            let state = restore_device(&engine, &rule_index, &old, device);
            engine.place_restored(state, profile, outdoor);
        }
        for (index, device) in engine.devices.iter().enumerate() {
            if !device.buffer.is_empty() {
                engine.buffered.insert(index);
            }
        }
        engine
            .peers
            .baselines
            .recount(engine.devices.iter().filter_map(|d| d.group));
        engine.watermark_ms = snapshot.watermark_ms;
        engine.stats = snapshot.stats;
        let fleet_snapshot = snapshot.fleet;
        let rules = engine.rules.clone();
        engine.fleet.restore(fleet_snapshot, &rules);
        engine
    }

    /// Puts a restored device in place (its profile's fleet group, its village slot with its
    /// outdoor reading), replacing an earlier entry of the same device.
    fn place_restored(
        &mut self,
        mut state: DeviceState,
        profile: Option<String>,
        outdoor: Option<(f64, i64)>,
    ) {
        if self.rules.series().uses_fleet() {
            state.group = profile.and_then(|p| self.peers.baselines.join(None, &p));
        }
        if let Some(info) = self.fleet.registry.get(&state.id) {
            // A device listed twice keeps one slot (the last entry wins).
            let listed = self
                .device_position(&state.id)
                .and_then(|i| self.devices.get(i))
                .and_then(|d| d.area);
            state.area =
                self.peers
                    .weather
                    .join(listed, info.township.as_deref(), info.village.as_deref());
        }
        if let (Some(at), Some((value, ts_ms))) = (state.area, outdoor) {
            self.peers.weather.record(at, value, ts_ms);
        }
        match self.device_position(&state.id) {
            Some(index) => {
                if let Some(slot) = self.devices.get_mut(index) {
                    *slot = state;
                }
            }
            None => {
                let index = self.devices.len();
                self.devices.push(state);
                let devices = &self.devices;
                if let Some(id) = devices.get(index).map(|d| &d.id) {
                    self.index
                        .insert(id, index, |i| devices.get(i).map(|d| &d.id));
                }
            }
        }
    }

    /// Hot reload: switches to `rules`, keeping the state of every rule whose id stays (and of
    /// every windowed series that stays).
    pub fn replace_rules(&mut self, rules: RuleSet) {
        let snapshot = self.snapshot();
        *self = Engine::restore_with_config(rules, self.config, snapshot);
    }

    /// The counters.
    pub fn stats(&self) -> EngineStats {
        self.stats
    }
}

fn threshold_indices(rules: &RuleSet) -> Vec<Option<u8>> {
    rules
        .rules()
        .iter()
        .map(|rule| match &rule.condition {
            Condition::Threshold(t) => canonical_index(&t.value),
            _ => None,
        })
        .collect()
}

fn variants_for(rules: &RuleSet, info: Option<&DeviceInfo>) -> Vec<u8> {
    if rules.rules().iter().all(|r| r.overrides.is_empty()) {
        return Vec::new();
    }
    rules.rules().iter().map(|r| r.variant_for(info)).collect()
}

fn variant_of(device: &DeviceState, rule: usize) -> u8 {
    device.variants.get(rule).copied().unwrap_or(0)
}

/// `name = value` of an expression condition's names and calls.
fn describe_condition(condition: &Condition, context: &Context<'_>) -> String {
    match condition {
        Condition::Expr { when, clear } => match clear {
            Some(clear) => clear.describe(context),
            None => when.describe(context),
        },
        _ => String::new(),
    }
}

/// The sentence of a firing (or escalation) at `level`.
#[cold]
fn firing_summary(
    effective: &Effective<'_>,
    level: u8,
    sample: &Sample,
    context: &Context<'_>,
) -> String {
    let escalation = level
        .checked_sub(1)
        .and_then(|i| effective.escalations.get(usize::from(i)));
    match (escalation, effective.condition) {
        (Some(level), _) => format!(
            "{}{}: {}",
            level.when.text(),
            for_clause(level.hold_for),
            level.when.describe(context)
        ),
        (None, Condition::Expr { when, .. }) => format!(
            "{}{}: {}",
            when.text(),
            for_clause(effective.hold_for),
            when.describe(context)
        ),
        (None, condition) => condition.firing_summary(sample, effective.hold_for),
    }
}

fn episode_id(rule: &Rule, device_id: &DeviceId, fired_at_ms: i64) -> String {
    format!("{}:{}:{}", rule.id, device_id, fired_at_ms)
}

/// The resolution of a firing alert whose rule no longer applies to the device's kind (after a
/// rule reload or a device changing kind).
#[allow(clippy::too_many_arguments)]
#[cold]
fn no_longer_applies(
    rule: &Rule,
    effective: &Effective<'_>,
    device_id: &DeviceId,
    kind: DeviceKind,
    now: i64,
    fired_at_ms: i64,
    level: u8,
) -> Transition {
    make_transition(
        rule,
        effective,
        device_id,
        TransitionKind::Resolved,
        now.max(fired_at_ms),
        fired_at_ms,
        level,
        format!("rule no longer applies to {}", kind.as_str()),
    )
}

/// Builds a transition of `rule` for `device_id` at escalation level `level`.
#[allow(clippy::too_many_arguments)]
#[cold]
fn make_transition(
    rule: &Rule,
    effective: &Effective<'_>,
    device_id: &DeviceId,
    kind: TransitionKind,
    at_ms: i64,
    fired_at_ms: i64,
    level: u8,
    summary: String,
) -> Transition {
    let (severity, action) = effective.at_level(level);
    Transition {
        episode_id: episode_id(rule, device_id, fired_at_ms),
        rule_id: rule.id.clone(),
        device_id: device_id.clone(),
        kind,
        at_ms,
        severity,
        action,
        summary,
        suppressed_by: None,
    }
}

#[cfg(test)]
mod tests;
