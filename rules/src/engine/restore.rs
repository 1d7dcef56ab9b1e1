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
        if pair.alert != AlertState::Idle {
            alerts.insert(rule.id.clone(), pair.alert);
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

pub(super) fn restore_device(
    engine: &Engine,
    rule_index: &BTreeMap<&str, usize>,
    series_map: &[Option<usize>],
    old_keys: &[String],
    snapshot: DeviceSnapshot,
) -> DeviceState {
    let rules = &engine.rules;
    let mut pairs = vec![PairState::IDLE; rules.len()];
    for (rule_id, state) in snapshot.alerts {
        if let Some(pair) = rule_index
            .get(rule_id.as_str())
            .and_then(|index| pairs.get_mut(*index))
        {
            pair.alert = state;
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
    let mut series = table.new_state();
    if let Some(old) = snapshot.series {
        restore_series(table, &mut series, &old, series_map, old_keys);
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
    series_map: &[Option<usize>],
    old_keys: &[String],
) {
    // Offsets of the old layout are recomputed from its keys.
    let mut old_offset = 0usize;
    for (old_index, key) in old_keys.iter().enumerate() {
        let width = crate::window::width_of_key(key);
        if let Some(Some(new_index)) = series_map.get(old_index) {
            let new_offset = table.offset_of(*new_index);
            let new_width = table.width_of(*new_index);
            if let (Some(head), Some(slot), Some(cells), Some(target)) = (
                old.heads.get(old_index),
                new.heads.get_mut(*new_index),
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
