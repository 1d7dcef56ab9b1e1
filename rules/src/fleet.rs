//! Fleet rules over groups of devices (a village, a township): one incident for many device
//! alerts with a common cause, and suppression of the device orders it explains.
//!
//! How it stays independent of arrival order: device transitions of the member rule (e.g.
//! `offline`) update a group's member set in event-time order, when the watermark passes them;
//! device transitions of the rules a fleet rule *explains* are held for the correlation window
//! (the fleet rule's `within`) in event time, and decided when the watermark passes
//! `at + within`, with every member transition up to that time already applied. Whichever
//! device alert happened to arrive first, the same incident fires at the same event time and the
//! same device alerts are suppressed.
//!
//! Suppressed firings are still emitted, with `suppressed_by` set to the incident id and the
//! action downgraded to alert only, so operators see them but no order opens. When the incident
//! resolves (supply returns), explained episodes that are still active `grace` later are handed
//! over: the suppressed episode resolves and a new episode of the same rule opens with the
//! rule's own action, so the device gets its own order.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::{DeviceId, DeviceKind};

use crate::condition::format_duration;
use crate::engine::{Escalation, Outcome, Transition, TransitionKind};
use crate::rule::{duration_ms, Action, RuleSet, Severity};
use crate::DeviceInfo;

/// The level of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupLevel {
    /// Devices registered with the same township and village.
    Village,
    /// Devices registered with the same township.
    Township,
}

/// A validated `[[fleet]]` rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetRule {
    /// Unique among rules and fleet rules; part of incident ids.
    pub id: String,
    pub description: String,
    /// Village or township.
    pub group: GroupLevel,
    /// The device rules whose active alerts count a device as affected (e.g. `offline`; for
    /// gas, `gas_fault` or `gas_pressure_low`): a device counts while any of them is active,
    /// from the first one's start.
    pub members: Vec<String>,
    /// Device kinds counted in the group (registered kind; devices registered without a kind
    /// count for every fleet rule).
    pub applies_to: Vec<DeviceKind>,
    /// The incident fires when at least this share of the group's households (devices of one
    /// household count once) had a member alert start within `within` and still active.
    pub share: f64,
    /// The incident resolves when fewer than this share still have a member alert.
    pub clear_share: f64,
    /// Members that measure the cause itself (e.g. `gas_pressure_low`, against the lockouts
    /// it leaves behind). Once one of them has been active during an incident, the incident
    /// resolves when fewer than `clear_share` of households still have one of these, whatever
    /// other members remain (those get their own orders after `grace`). Empty: every member.
    pub clear_members: Vec<String>,
    /// And at least this many households (0: no minimum beyond the share).
    pub min_affected: usize,
    /// Groups of fewer households than this never make an incident (a lone box going silent
    /// is not a village outage). The field keeps its name from when it counted devices.
    pub min_devices: usize,
    /// The correlation window.
    pub within: Duration,
    /// How long the device transitions it explains are held for a decision; at most `within`
    /// (default `within`). A supply that fails slowly locks boilers out one by one over an
    /// hour or more: the window must be long, but a device order must not wait that long.
    pub hold: Option<Duration>,
    /// After the incident resolves, explained alerts still active this long later get their
    /// own orders.
    pub grace: Duration,
    /// Device rules whose orders the incident suppresses.
    pub explains: Vec<String>,
    pub severity: Severity,
    pub action: Action,
}

impl FleetRule {
    pub fn within_ms(&self) -> i64 {
        duration_ms(self.within)
    }

    /// How long explained device transitions are held: `hold`, else `within`.
    pub fn hold_ms(&self) -> i64 {
        self.hold.map_or_else(|| self.within_ms(), duration_ms)
    }

    pub fn grace_ms(&self) -> i64 {
        duration_ms(self.grace)
    }

    /// The group a registered device belongs to for this rule.
    pub fn group_of(&self, device: &DeviceInfo) -> Option<GroupKey> {
        let township = device.township.clone()?;
        match self.group {
            GroupLevel::Township => Some(GroupKey {
                township,
                village: None,
            }),
            GroupLevel::Village => Some(GroupKey {
                township,
                village: Some(device.village.clone()?),
            }),
        }
    }

    fn counts(&self, kind: Option<DeviceKind>) -> bool {
        kind.is_none_or(|k| self.applies_to.contains(&k))
    }
}

/// A group: a township, or a village in a township.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupKey {
    pub township: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub village: Option<String>,
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.village {
            Some(village) => write!(f, "{}/{}", self.township, village),
            None => write!(f, "{}", self.township),
        }
    }
}

/// A fleet incident becoming active or ending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentTransition {
    /// `{fleet_rule_id}:{group}:{fired_at_ms}`, shared by the firing and the resolution.
    pub incident_id: String,
    pub fleet_rule_id: String,
    pub group: GroupKey,
    pub level: GroupLevel,
    pub kind: TransitionKind,
    /// Event time, Unix milliseconds.
    pub at_ms: i64,
    pub severity: Severity,
    /// What to do: typically an order for the utility or the village electrician.
    pub action: Action,
    pub summary: String,
    /// Devices affected: at firing, those that made it fire; at resolution, those still
    /// affected.
    pub devices: Vec<DeviceId>,
    /// Registered households in the group with a device counted by the rule.
    pub group_size: usize,
}

/// Position in the fleet queue: release time, then a deterministic order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct QueueKey {
    /// Event time at which the item is processed (when the watermark reaches it).
    pub release_ms: i64,
    /// 0 member updates, 1 held device output, 2 grace checks.
    pub class: u8,
    pub device: String,
    pub rule: String,
    pub at_ms: i64,
    /// Episode start, so a resolution sorts before a later firing.
    pub episode_ms: i64,
    /// 0 firing, 1 escalation, 2 resolved.
    pub order: u8,
    /// Insertion counter, for uniqueness only.
    pub seq: u64,
}

/// A queued item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "item", rename_all = "snake_case")]
pub enum Item {
    Member {
        fleet: String,
        /// The member rule whose alert this is (empty in older snapshots: the fleet rule's
        /// first member rule).
        #[serde(default)]
        member: String,
        device: DeviceId,
        firing: bool,
        at_ms: i64,
    },
    Transition(Transition),
    Escalation(Escalation),
    Grace {
        fleet: String,
        group: GroupKey,
        incident: String,
        /// End of the grace period.
        at_ms: i64,
    },
}

/// The state of one fleet rule for one group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupState {
    /// Devices with a member alert active, with the time the first of them fired.
    pub members: BTreeMap<DeviceId, i64>,
    /// Which member rules are active on each of those devices (absent in snapshots written
    /// before fleet rules took several member rules: there one rule per device).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub member_rules: BTreeMap<DeviceId, BTreeSet<String>>,
    pub open: Option<OpenIncident>,
    pub ended: Option<EndedIncident>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenIncident {
    pub id: String,
    pub fired_at_ms: i64,
    /// A member of the rule's `clear_members` has been active during the incident: those
    /// decide when it ends.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub measured: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndedIncident {
    pub id: String,
    pub resolved_at_ms: i64,
}

/// A device episode suppressed by an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppressed {
    pub device: DeviceId,
    pub rule: String,
    /// The episode id the device engine knows.
    pub episode_id: String,
    pub incident: String,
    pub fleet: String,
    pub group: GroupKey,
    /// The rule's own action, restored on hand-over.
    pub action: Action,
    pub severity: Severity,
    /// The episode id after hand-over, when it happened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over_as: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_over_at_ms: Option<i64>,
}

/// The fleet layer's state, as plain data for snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetSnapshot {
    #[serde(default)]
    pub queue: Vec<(QueueKey, Item)>,
    #[serde(default)]
    pub groups: Vec<(String, GroupKey, GroupState)>,
    #[serde(default)]
    pub suppressed: Vec<Suppressed>,
    #[serde(default)]
    pub next_seq: u64,
}

/// The fleet layer: registry, group sizes, queue, groups, suppressed episodes.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fleet {
    pub registry: BTreeMap<DeviceId, DeviceInfo>,
    /// Per group, its households with their registered devices by kind slot.
    sizes: BTreeMap<(GroupLevel, GroupKey), BTreeMap<String, [usize; 3]>>,
    queue: BTreeMap<QueueKey, Item>,
    groups: BTreeMap<(String, GroupKey), GroupState>,
    suppressed: BTreeMap<(DeviceId, String), Suppressed>,
    next_seq: u64,
}

fn kind_slot(kind: Option<DeviceKind>) -> usize {
    match kind {
        Some(DeviceKind::HeatPump) => 0,
        Some(DeviceKind::GasBoiler) => 1,
        None => 2,
    }
}

fn size_keys(info: &DeviceInfo) -> Vec<(GroupLevel, GroupKey)> {
    let Some(township) = &info.township else {
        return Vec::new();
    };
    let mut keys = vec![(
        GroupLevel::Township,
        GroupKey {
            township: township.clone(),
            village: None,
        },
    )];
    if let Some(village) = &info.village {
        keys.push((
            GroupLevel::Village,
            GroupKey {
                township: township.clone(),
                village: Some(village.clone()),
            },
        ));
    }
    keys
}

/// The household a device counts as in fleet rules: its registered household, else itself.
fn household_of(registry: &BTreeMap<DeviceId, DeviceInfo>, device: &DeviceId) -> String {
    registry
        .get(device)
        .and_then(|info| info.household.clone())
        .unwrap_or_else(|| device.to_string())
}

/// `3 of 5 households`, or `2 of 5 households (3 devices)` when some have several devices.
fn count_households(households: usize, devices: usize, size: usize) -> String {
    if households == devices {
        format!("{households} of {size} households")
    } else {
        format!("{households} of {size} households ({devices} devices)")
    }
}

/// Distinct households among `devices`.
fn households_among<'a>(
    registry: &BTreeMap<DeviceId, DeviceInfo>,
    devices: impl Iterator<Item = &'a DeviceId>,
) -> usize {
    devices
        .map(|device| household_of(registry, device))
        .collect::<BTreeSet<String>>()
        .len()
}

fn episode_start(episode_id: &str) -> i64 {
    episode_id
        .rsplit(':')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(i64::MIN)
}

/// The firing member updates queued for one release time, by fleet rule and group. Built once
/// per release time (not once per member, which made a district-wide outage quadratic); an
/// entry counts only while its key is still in the queue.
pub(crate) struct Simultaneous {
    release_ms: i64,
    by_group: HashMap<(String, GroupKey), Vec<QueuedMember>>,
}

/// A queued firing member update: its queue key, device and event time.
type QueuedMember = (QueueKey, DeviceId, i64);

impl Simultaneous {
    fn build(
        queue: &BTreeMap<QueueKey, Item>,
        release_ms: i64,
        group_of: impl Fn(&str, &DeviceId) -> Option<GroupKey>,
    ) -> Simultaneous {
        let mut by_group: HashMap<(String, GroupKey), Vec<QueuedMember>> = HashMap::new();
        for (key, item) in queue
            .iter()
            .take_while(|(key, _)| key.release_ms == release_ms && key.class == 0)
        {
            if let Item::Member {
                fleet,
                device,
                firing: true,
                at_ms,
                ..
            } = item
            {
                if let Some(group) = group_of(fleet, device) {
                    by_group.entry((fleet.clone(), group)).or_default().push((
                        key.clone(),
                        device.clone(),
                        *at_ms,
                    ));
                }
            }
        }
        Simultaneous {
            release_ms,
            by_group,
        }
    }

    fn members(&self, fleet: &str, group: &GroupKey) -> impl Iterator<Item = &QueuedMember> {
        self.by_group
            .get(&(fleet.to_owned(), group.clone()))
            .into_iter()
            .flatten()
    }
}

/// A member rule's alert starting or ending on a device, as it reaches a fleet rule's group.
struct MemberUpdate<'a> {
    rule: &'a FleetRule,
    group: GroupKey,
    /// The member rule.
    member: &'a str,
    device: DeviceId,
    /// When the member alert started or ended.
    at_ms: i64,
    /// Registered households in the group with a device the rule counts.
    size: usize,
}

impl MemberUpdate<'_> {
    /// An incident transition of the update's fleet rule in its group.
    fn incident(
        &self,
        incident_id: String,
        kind: TransitionKind,
        at_ms: i64,
        summary: String,
        devices: Vec<DeviceId>,
    ) -> IncidentTransition {
        IncidentTransition {
            incident_id,
            fleet_rule_id: self.rule.id.clone(),
            group: self.group.clone(),
            level: self.rule.group,
            kind,
            at_ms,
            severity: self.rule.severity,
            action: self.rule.action.clone(),
            summary,
            devices,
            group_size: self.size,
        }
    }
}

impl Fleet {
    /// Registers (or re-registers) a device.
    pub fn register(&mut self, id: DeviceId, info: DeviceInfo) {
        if let Some(old) = self.registry.remove(&id) {
            let household = old.household.clone().unwrap_or_else(|| id.to_string());
            for key in size_keys(&old) {
                if let Some(households) = self.sizes.get_mut(&key) {
                    if let Some(counts) = households.get_mut(&household) {
                        let slot = &mut counts[kind_slot(old.kind)];
                        *slot = slot.saturating_sub(1);
                        if counts.iter().all(|&n| n == 0) {
                            households.remove(&household);
                        }
                    }
                }
            }
        }
        let household = info.household.clone().unwrap_or_else(|| id.to_string());
        for key in size_keys(&info) {
            let counts = self
                .sizes
                .entry(key)
                .or_default()
                .entry(household.clone())
                .or_default();
            counts[kind_slot(info.kind)] += 1;
        }
        self.registry.insert(id, info);
    }

    /// Registered households in `group` with a device counted by `rule`.
    pub fn group_size(&self, rule: &FleetRule, group: &GroupKey) -> usize {
        let Some(households) = self.sizes.get(&(rule.group, group.clone())) else {
            return 0;
        };
        households
            .values()
            .filter(|counts| {
                counts[2] > 0
                    || rule
                        .applies_to
                        .iter()
                        .any(|kind| counts[kind_slot(Some(*kind))] > 0)
            })
            .count()
    }

    fn group_of(&self, rule: &FleetRule, device: &DeviceId) -> Option<GroupKey> {
        let info = self.registry.get(device)?;
        if !rule.counts(info.kind) {
            return None;
        }
        rule.group_of(info)
    }

    fn push(&mut self, mut key: QueueKey, item: Item) {
        key.seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.queue.insert(key, item);
    }

    /// Whether the fleet layer wants this device transition (it is held or feeds a group).
    /// Returns false when it goes straight to the output.
    pub fn route_transition(&mut self, rules: &RuleSet, t: &Transition) -> bool {
        let mut routed = false;
        for rule in rules.fleet() {
            if rule.members.contains(&t.rule_id) && self.group_of(rule, &t.device_id).is_some() {
                let key = QueueKey {
                    release_ms: t.at_ms,
                    class: 0,
                    device: t.device_id.to_string(),
                    rule: rule.id.clone(),
                    at_ms: t.at_ms,
                    episode_ms: episode_start(&t.episode_id),
                    order: if t.kind == TransitionKind::Firing {
                        0
                    } else {
                        2
                    },
                    seq: 0,
                };
                self.push(
                    key,
                    Item::Member {
                        fleet: rule.id.clone(),
                        member: t.rule_id.clone(),
                        device: t.device_id.clone(),
                        firing: t.kind == TransitionKind::Firing,
                        at_ms: t.at_ms,
                    },
                );
            }
        }
        if let Some(window) = self.hold_window(rules, &t.rule_id, &t.device_id) {
            let key = QueueKey {
                release_ms: t.at_ms.saturating_add(window),
                class: 1,
                device: t.device_id.to_string(),
                rule: t.rule_id.clone(),
                at_ms: t.at_ms,
                episode_ms: episode_start(&t.episode_id),
                order: if t.kind == TransitionKind::Firing {
                    0
                } else {
                    2
                },
                seq: 0,
            };
            self.push(key, Item::Transition(t.clone()));
            routed = true;
        }
        routed
    }

    /// Same for an escalation.
    pub fn route_escalation(&mut self, rules: &RuleSet, e: &Escalation) -> bool {
        let Some(window) = self.hold_window(rules, &e.rule_id, &e.device_id) else {
            return false;
        };
        let key = QueueKey {
            release_ms: e.at_ms.saturating_add(window),
            class: 1,
            device: e.device_id.to_string(),
            rule: e.rule_id.clone(),
            at_ms: e.at_ms,
            episode_ms: episode_start(&e.episode_id),
            order: 1,
            seq: 0,
        };
        self.push(key, Item::Escalation(e.clone()));
        true
    }

    /// How long a transition of `rule_id` on `device` is held: the longest hold of the
    /// fleet rules that explain the rule and have a group for the device that is big enough to
    /// make an incident. `None`: not held.
    fn hold_window(&self, rules: &RuleSet, rule_id: &str, device: &DeviceId) -> Option<i64> {
        rules
            .fleet()
            .iter()
            .filter(|f| f.explains.iter().any(|e| e == rule_id))
            .filter(|f| {
                self.group_of(f, device)
                    .is_some_and(|group| self.group_size(f, &group) >= f.min_devices)
            })
            .map(FleetRule::hold_ms)
            .max()
    }

    /// Processes every queued item whose release time is at or before `watermark_ms`.
    pub fn release(&mut self, rules: &RuleSet, watermark_ms: i64, out: &mut Outcome) {
        // Built at most once per release time, when an incident may open: which members of
        // which group fire at that time (see `Simultaneous`).
        let mut simultaneous: Option<Simultaneous> = None;
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().release_ms > watermark_ms {
                break;
            }
            let (_, item) = entry.remove_entry();
            match item {
                Item::Member {
                    fleet,
                    member,
                    device,
                    firing,
                    at_ms,
                } => self.member(
                    rules,
                    &fleet,
                    &member,
                    device,
                    firing,
                    at_ms,
                    &mut simultaneous,
                    out,
                ),
                Item::Transition(t) => self.held_transition(rules, t, out),
                Item::Escalation(e) => self.held_escalation(e, out),
                Item::Grace {
                    fleet,
                    group,
                    incident,
                    at_ms,
                } => self.grace(rules, &fleet, &group, &incident, at_ms, out),
            }
        }
    }

    /// A member rule's alert starting (`firing`) or ending on `device` at `at_ms`, as it
    /// reaches fleet rule `fleet_id`: the device's group counts it, and an incident may open or
    /// resolve.
    #[allow(clippy::too_many_arguments)]
    fn member(
        &mut self,
        rules: &RuleSet,
        fleet_id: &str,
        member: &str,
        device: DeviceId,
        firing: bool,
        at_ms: i64,
        simultaneous: &mut Option<Simultaneous>,
        out: &mut Outcome,
    ) {
        let Some(rule) = rules.fleet().iter().find(|f| f.id == fleet_id) else {
            return;
        };
        let Some(group) = self.group_of(rule, &device) else {
            return;
        };
        let member = if member.is_empty() {
            rule.members.first().map_or("", String::as_str)
        } else {
            member
        };
        let size = self.group_size(rule, &group);
        let update = MemberUpdate {
            rule,
            group,
            member,
            device,
            at_ms,
            size,
        };
        if firing {
            self.member_fires(rules, update, simultaneous, out);
        } else {
            self.member_ends(rules, update, out);
        }
    }

    /// A member alert starting: the device counts as affected in its group, and an incident
    /// opens when enough of the group's households were affected within the rule's window.
    fn member_fires(
        &mut self,
        rules: &RuleSet,
        update: MemberUpdate<'_>,
        simultaneous: &mut Option<Simultaneous>,
        out: &mut Outcome,
    ) {
        let (rule, group, member, device) =
            (update.rule, &update.group, update.member, &update.device);
        let (at_ms, size) = (update.at_ms, update.size);
        let key = (rule.id.clone(), group.clone());
        let state = self.groups.entry(key.clone()).or_default();
        state
            .member_rules
            .entry(device.clone())
            .or_default()
            .insert(member.to_owned());
        state.members.entry(device.clone()).or_insert(at_ms);
        if let Some(open) = state.open.as_mut() {
            open.measured |= rule.clear_members.iter().any(|m| m == member);
            return;
        }
        if size < rule.min_devices {
            return;
        }
        let also = self.simultaneous_members(rules, rule, group, at_ms, simultaneous);
        let Some(state) = self.groups.get_mut(&key) else {
            return;
        };
        for (other, other_at) in also {
            state.members.entry(other).or_insert(other_at);
        }
        let since = at_ms.saturating_sub(rule.within_ms());
        let recent: Vec<DeviceId> = state
            .members
            .iter()
            .filter(|(_, fired)| **fired >= since && **fired <= at_ms)
            .map(|(id, _)| id.clone())
            .collect();
        let need = ((rule.share * size as f64).ceil() as usize)
            .max(rule.min_affected)
            .max(1);
        let affected = households_among(&self.registry, recent.iter());
        if affected < need {
            return;
        }
        let id = format!("{}:{}:{}", rule.id, group, at_ms);
        let measured = state
            .member_rules
            .values()
            .any(|active| rule.clear_members.iter().any(|m| active.contains(m)));
        state.open = Some(OpenIncident {
            id: id.clone(),
            fired_at_ms: at_ms,
            measured,
        });
        let summary = format!(
            "{} in {} with {} within {}",
            count_households(affected, recent.len(), size),
            group,
            rule.members.join(" or "),
            format_duration(rule.within)
        );
        out.incidents
            .push(update.incident(id, TransitionKind::Firing, at_ms, summary, recent));
    }

    /// Members of `group` whose member alerts started at `at_ms` too and wait right behind
    /// this one in the queue, with their start: an incident that fires now lists them too, so
    /// what it says does not depend on which of them the queue happened to release first.
    fn simultaneous_members(
        &self,
        rules: &RuleSet,
        rule: &FleetRule,
        group: &GroupKey,
        at_ms: i64,
        simultaneous: &mut Option<Simultaneous>,
    ) -> Vec<(DeviceId, i64)> {
        let index = match simultaneous {
            Some(index) if index.release_ms == at_ms => index,
            _ => simultaneous.insert(Simultaneous::build(&self.queue, at_ms, |fleet, device| {
                let rule = rules.fleet().iter().find(|f| f.id == fleet)?;
                let info = self.registry.get(device)?;
                rule.counts(info.kind)
                    .then(|| rule.group_of(info))
                    .flatten()
            })),
        };
        index
            .members(&rule.id, group)
            .filter(|(key, _, _)| self.queue.contains_key(key))
            .map(|(_, other, other_at)| (other.clone(), *other_at))
            .collect()
    }

    /// A member alert ending: the device no longer counts as affected (once none of its member
    /// alerts is active), and an open incident resolves when too few households remain
    /// affected (or, once a measuring member was active, measure the cause).
    fn member_ends(&mut self, rules: &RuleSet, update: MemberUpdate<'_>, out: &mut Outcome) {
        let (rule, group, member, device) =
            (update.rule, &update.group, update.member, &update.device);
        let (at_ms, size) = (update.at_ms, update.size);
        let state = self
            .groups
            .entry((rule.id.clone(), group.clone()))
            .or_default();
        let measured = state.open.as_ref().is_some_and(|open| open.measured);
        if let Some(active) = state.member_rules.get_mut(device) {
            active.remove(member);
            if active.is_empty() {
                state.member_rules.remove(device);
                state.members.remove(device);
            } else if !measured {
                return;
            }
        } else {
            state.members.remove(device);
        }
        let clear_need = ((rule.clear_share * size as f64).ceil() as usize).max(1);
        let remaining = if measured {
            let measuring: Vec<&DeviceId> = state
                .member_rules
                .iter()
                .filter(|(_, active)| rule.clear_members.iter().any(|m| active.contains(m)))
                .map(|(device, _)| device)
                .collect();
            households_among(&self.registry, measuring.into_iter())
        } else {
            households_among(&self.registry, state.members.keys())
        };
        if remaining >= clear_need {
            return;
        }
        let Some(open) = state.open.take() else {
            return;
        };
        state.ended = Some(EndedIncident {
            id: open.id.clone(),
            resolved_at_ms: at_ms,
        });
        let still: Vec<DeviceId> = state.members.keys().cloned().collect();
        self.resolve_incident(rules, update, open, still, out);
    }

    /// Emits the resolution of incident `open` (with the devices `still` affected) and queues
    /// its grace check: explained alerts still active `grace` later get their own orders.
    fn resolve_incident(
        &mut self,
        rules: &RuleSet,
        update: MemberUpdate<'_>,
        open: OpenIncident,
        still: Vec<DeviceId>,
        out: &mut Outcome,
    ) {
        let summary = format!(
            "{} in {} still with {}",
            count_households(
                households_among(&self.registry, still.iter()),
                still.len(),
                update.size
            ),
            update.group,
            update.rule.members.join(" or ")
        );
        out.incidents.push(update.incident(
            open.id.clone(),
            TransitionKind::Resolved,
            update.at_ms.max(open.fired_at_ms),
            summary,
            still,
        ));
        let MemberUpdate {
            rule, group, at_ms, ..
        } = update;
        // The grace check waits for every held transition it may hand over: those of the rules
        // this fleet rule explains, each held as long as the longest hold of the fleet rules
        // explaining it (a fleet rule explaining other rules does not delay it).
        let max_window = rules
            .fleet()
            .iter()
            .filter(|other| other.explains.iter().any(|e| rule.explains.contains(e)))
            .map(FleetRule::hold_ms)
            .max()
            .unwrap_or(0);
        let grace_end = at_ms.saturating_add(rule.grace_ms());
        let key = QueueKey {
            release_ms: grace_end.saturating_add(max_window),
            class: 2,
            device: String::new(),
            rule: rule.id.clone(),
            at_ms: grace_end,
            episode_ms: 0,
            order: 0,
            seq: 0,
        };
        self.push(
            key,
            Item::Grace {
                fleet: rule.id.clone(),
                group,
                incident: open.id,
                at_ms: grace_end,
            },
        );
    }

    /// The incident (and its fleet rule and group) that explains `rule_id` on `device` at
    /// event time `at_ms`, given the groups' state now.
    fn explaining(
        &self,
        rules: &RuleSet,
        rule_id: &str,
        device: &DeviceId,
        at_ms: i64,
    ) -> Option<(String, String, GroupKey)> {
        for rule in rules.fleet() {
            if !rule.explains.iter().any(|e| e == rule_id) {
                continue;
            }
            let Some(group) = self.group_of(rule, device) else {
                continue;
            };
            let Some(state) = self.groups.get(&(rule.id.clone(), group.clone())) else {
                continue;
            };
            if let Some(open) = &state.open {
                return Some((open.id.clone(), rule.id.clone(), group));
            }
            if let Some(ended) = &state.ended {
                if at_ms < ended.resolved_at_ms.saturating_add(rule.grace_ms()) {
                    return Some((ended.id.clone(), rule.id.clone(), group));
                }
            }
        }
        None
    }

    /// The end of the grace period of the incident that suppressed `s`, once it ended.
    fn grace_end(&self, rules: &RuleSet, s: &Suppressed) -> Option<(i64, Duration)> {
        let rule = rules.fleet().iter().find(|f| f.id == s.fleet)?;
        let state = self.groups.get(&(s.fleet.clone(), s.group.clone()))?;
        let ended = state.ended.as_ref().filter(|e| e.id == s.incident)?;
        Some((
            ended.resolved_at_ms.saturating_add(rule.grace_ms()),
            rule.grace,
        ))
    }

    fn held_transition(&mut self, rules: &RuleSet, mut t: Transition, out: &mut Outcome) {
        let key = (t.device_id.clone(), t.rule_id.clone());
        match t.kind {
            TransitionKind::Firing => {
                self.suppressed.remove(&key);
                if let Some((incident, fleet, group)) =
                    self.explaining(rules, &t.rule_id, &t.device_id, t.at_ms)
                {
                    self.suppressed.insert(
                        key,
                        Suppressed {
                            device: t.device_id.clone(),
                            rule: t.rule_id.clone(),
                            episode_id: t.episode_id.clone(),
                            incident: incident.clone(),
                            fleet,
                            group,
                            action: t.action.clone(),
                            severity: t.severity,
                            handed_over_as: None,
                            handed_over_at_ms: None,
                        },
                    );
                    t.action = Action::AlertOnly;
                    t.suppressed_by = Some(incident);
                }
                out.transitions.push(t);
            }
            TransitionKind::Resolved => {
                let Some(mut s) = self.suppressed.remove(&key) else {
                    out.transitions.push(t);
                    return;
                };
                if s.episode_id != t.episode_id {
                    self.suppressed.insert(key, s);
                    out.transitions.push(t);
                    return;
                }
                if s.handed_over_as.is_none() {
                    if let Some((end, grace)) = self.grace_end(rules, &s) {
                        if t.at_ms > end {
                            hand_over(&mut s, end, grace, out);
                        }
                    }
                }
                match (&s.handed_over_as, s.handed_over_at_ms) {
                    (Some(new_id), Some(at)) => {
                        t.episode_id = new_id.clone();
                        t.action = s.action;
                        t.at_ms = t.at_ms.max(at);
                    }
                    _ => {
                        t.action = Action::AlertOnly;
                        t.suppressed_by = Some(s.incident);
                    }
                }
                out.transitions.push(t);
            }
        }
    }

    fn held_escalation(&mut self, mut e: Escalation, out: &mut Outcome) {
        let key = (e.device_id.clone(), e.rule_id.clone());
        if let Some(s) = self.suppressed.get_mut(&key) {
            if s.episode_id == e.episode_id {
                match &s.handed_over_as {
                    Some(new_id) => e.episode_id = new_id.clone(),
                    None => {
                        s.action = e.action.clone();
                        s.severity = e.severity;
                        e.action = Action::AlertOnly;
                        e.suppressed_by = Some(s.incident.clone());
                    }
                }
            }
        }
        out.escalations.push(e);
    }

    fn grace(
        &mut self,
        rules: &RuleSet,
        fleet: &str,
        group: &GroupKey,
        incident: &str,
        at_ms: i64,
        out: &mut Outcome,
    ) {
        let grace = rules
            .fleet()
            .iter()
            .find(|f| f.id == fleet)
            .map_or(Duration::ZERO, |f| f.grace);
        for s in self.suppressed.values_mut() {
            if s.incident == incident && s.group == *group && s.handed_over_as.is_none() {
                hand_over(s, at_ms, grace, out);
            }
        }
    }

    /// The state as plain data.
    pub fn snapshot(&self) -> FleetSnapshot {
        FleetSnapshot {
            queue: self
                .queue
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            groups: self
                .groups
                .iter()
                .map(|((fleet, group), state)| (fleet.clone(), group.clone(), state.clone()))
                .collect(),
            suppressed: self.suppressed.values().cloned().collect(),
            next_seq: self.next_seq,
        }
    }

    /// Restores the state (the registry is restored separately).
    pub fn restore(&mut self, snapshot: FleetSnapshot, rules: &RuleSet) {
        let known = |id: &str| rules.fleet().iter().any(|f| f.id == id);
        self.queue = snapshot.queue.into_iter().collect();
        self.groups = snapshot
            .groups
            .into_iter()
            .filter(|(fleet, _, _)| known(fleet))
            .map(|(fleet, group, state)| ((fleet, group), state))
            .collect();
        self.suppressed = snapshot
            .suppressed
            .into_iter()
            .map(|s| ((s.device.clone(), s.rule.clone()), s))
            .collect();
        self.next_seq = snapshot.next_seq;
    }

    /// Items waiting for the watermark.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

/// Ends a suppressed episode at `at_ms` and opens a new one with the rule's own action.
fn hand_over(s: &mut Suppressed, at_ms: i64, grace: Duration, out: &mut Outcome) {
    let at_ms = at_ms.max(episode_start(&s.episode_id));
    let new_id = format!("{}:{}:{}", s.rule, s.device, at_ms);
    out.transitions.push(Transition {
        episode_id: s.episode_id.clone(),
        rule_id: s.rule.clone(),
        device_id: s.device.clone(),
        kind: TransitionKind::Resolved,
        at_ms,
        severity: s.severity,
        action: Action::AlertOnly,
        summary: format!(
            "handed over to its own order: still active {} after incident {} ended",
            format_duration(grace),
            s.incident
        ),
        suppressed_by: Some(s.incident.clone()),
    });
    out.transitions.push(Transition {
        episode_id: new_id.clone(),
        rule_id: s.rule.clone(),
        device_id: s.device.clone(),
        kind: TransitionKind::Firing,
        at_ms,
        severity: s.severity,
        action: s.action.clone(),
        summary: format!(
            "not recovered {} after incident {} ended",
            format_duration(grace),
            s.incident
        ),
        suppressed_by: None,
    });
    s.handed_over_as = Some(new_id);
    s.handed_over_at_ms = Some(at_ms);
}
