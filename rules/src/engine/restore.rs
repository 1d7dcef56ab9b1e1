//! The engine's state as plain data and back: one device's snapshot, its restore under a
//! possibly changed rule set, and the copy of windowed series between layouts.

use super::*;

pub(super) fn device_snapshot(
    rules: &RuleSet,
    peers: &Peers,
    device: &DeviceState,
) -> DeviceSnapshot {
    let mut alerts = BTreeMap::new();
    let mut escalation_timers = BTreeMap::new();
    let mut guards = Vec::new();
    for (rule, pair) in rules.rules().iter().zip(&device.pairs) {
        if pair.alert() != AlertState::Idle {
            alerts.insert(rule.id.clone(), pair.alert());
        }
        if pair.escalation_since.iter().any(|t| *t != NONE) {
            escalation_timers.insert(
                rule.id.clone(),
                pair.escalation_since
                    .iter()
                    .map(|t| (*t != NONE).then_some(*t))
                    .collect(),
            );
        }
        if pair.guard {
            guards.push(rule.id.clone());
        }
    }
    DeviceSnapshot {
        device_id: device.id.clone(),
        kind: device.kind,
        last_seq: device.last_seq,
        last_ts_ms: device.last_ts_ms,
        alerts,
        escalation_timers,
        guards,
        newest_ts_ms: Some(device.newest_ts_ms),
        nothing_evaluated: !device.released,
        buffered: device
            .buffer
            .iter()
            .map(|s| s.to_reading(&device.id))
            .collect(),
        series: if device.series.heads.is_empty() {
            None
        } else {
            Some(device.series.clone())
        },
        profile: device
            .group
            .and_then(|g| peers.baselines.profile_of(g))
            .map(str::to_owned),
        outdoor: device.area.and_then(|at| peers.weather.reading_of(at)),
    }
}

/// The series layout of a snapshot: its keys, the position of each in the engine's rule set,
/// and which a device state of each kind holds.
pub(super) struct OldSeries<'a> {
    /// Old series position -> new series position.
    pub map: &'a [Option<usize>],
    /// [`Snapshot::series`].
    pub keys: &'a [String],
    /// [`Snapshot::series_held`].
    pub held: &'a BTreeMap<DeviceKind, Vec<u16>>,
}

pub(super) fn restore_device(
    engine: &Engine,
    rule_index: &BTreeMap<String, usize>,
    old_series: &OldSeries<'_>,
    snapshot: DeviceSnapshot,
) -> DeviceState {
    let rules = &engine.rules;
    let mut pairs = vec![PairState::IDLE; rules.len()];
    for (rule_id, state) in snapshot.alerts {
        if let Some(pair) = rule_index
            .get(rule_id.as_str())
            .and_then(|index| pairs.get_mut(*index))
        {
            pair.set_alert(state);
        }
    }
    for (rule_id, timers) in snapshot.escalation_timers {
        if let Some(pair) = rule_index
            .get(rule_id.as_str())
            .and_then(|index| pairs.get_mut(*index))
        {
            for (slot, timer) in pair.escalation_since.iter_mut().zip(timers) {
                *slot = timer.unwrap_or(NONE);
            }
        }
    }
    for rule_id in snapshot.guards {
        if let Some(pair) = rule_index
            .get(rule_id.as_str())
            .and_then(|index| pairs.get_mut(*index))
        {
            pair.guard = true;
        }
    }
    let table = rules.series();
    let mut series = table.new_state_for(snapshot.kind);
    if let Some(old) = snapshot.series {
        restore_series(table, &mut series, &old, old_series);
    }
    let info = engine.fleet.registry.get(&snapshot.device_id);
    DeviceState {
        kind: snapshot.kind,
        released: !snapshot.nothing_evaluated,
        last_seq: snapshot.last_seq,
        last_ts_ms: snapshot.last_ts_ms,
        newest_ts_ms: snapshot.newest_ts_ms.unwrap_or(snapshot.last_ts_ms),
        buffer: snapshot.buffered.iter().map(Sample::from_reading).collect(),
        pairs,
        series,
        variants: variants_for(rules, info),
        vulnerable: info.is_some_and(|i| i.vulnerable),
        group: None,
        area: None,
        id: snapshot.device_id,
    }
}

/// Copies the series that exist in both layouts (matched by key) from `old` into `new`.
pub(super) fn restore_series(
    table: &crate::window::SeriesTable,
    new: &mut SeriesState,
    old: &SeriesState,
    old_series: &OldSeries<'_>,
) {
    // The old state holds the series its kind's list names, or every series when it names no
    // kind (snapshots before per-kind layouts); its offsets are recomputed from the keys.
    let all: Vec<u16>;
    let held: &[u16] = match old.kind {
        Some(kind) => old_series.held.get(&kind).map_or(&[], Vec::as_slice),
        None => {
            all = (0..old_series.keys.len())
                .filter_map(|i| u16::try_from(i).ok())
                .collect();
            &all
        }
    };
    let mut old_offset = 0usize;
    for (position, old_index) in held.iter().enumerate() {
        let old_index = usize::from(*old_index);
        let Some(key) = old_series.keys.get(old_index) else {
            // A list naming a series the snapshot does not have: the offsets after it are lost.
            break;
        };
        let width = crate::window::width_of_key(key);
        let target = old_series
            .map
            .get(old_index)
            .copied()
            .flatten()
            .and_then(|new_index| table.slot_of(new.kind, new_index));
        if let Some((new_position, new_offset, new_width)) = target {
            if let (Some(head), Some(slot), Some(cells), Some(target)) = (
                old.heads.get(position),
                new.heads.get_mut(new_position),
                old.cells.get(old_offset..old_offset + width),
                new.cells.get_mut(new_offset..new_offset + new_width),
            ) {
                *slot = *head;
                let n = cells.len().min(target.len());
                target[..n].copy_from_slice(&cells[..n]);
            }
        }
        old_offset += width;
    }
}
