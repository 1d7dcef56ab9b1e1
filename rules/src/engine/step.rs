//! One released reading through the engine: its device's cache lines warmed, the reorder
//! buffer released up to a frontier, the reading's series updated (and the fleet's baselines
//! and its village's outdoor readings), then every rule stepped and its transitions emitted.

use super::*;

/// Bytes of a cache line.
const CACHE_LINE: usize = 64;

/// Reads one word of every cache line of a device's rule and series state, so the loads are in
/// flight while the reading's values are converted, rather than one after the other later: at
/// tens of thousands of devices this state is rarely cached. Touches, changes nothing.
pub(super) fn warm(series: &crate::window::SeriesTable, device: &DeviceState) {
    fn every_line<T>(items: &[T], word: impl Fn(&T) -> u64) -> u64 {
        let step = (CACHE_LINE / std::mem::size_of::<T>().max(1)).max(1);
        items
            .iter()
            .step_by(step)
            .fold(0, |acc, item| acc ^ word(item))
    }
    let pairs = every_line(&device.pairs, |p| p.escalation_since[0] as u64);
    let series = series.touch(&device.series);
    let variants = every_line(&device.variants, |v| u64::from(*v));
    std::hint::black_box(pairs ^ series ^ variants);
}

/// Releases buffered readings at or before `frontier` (and the oldest beyond `max_buffered`),
/// in event-time order.
pub(super) fn release(
    rules: &RuleSet,
    threshold_index: &[Option<u8>],
    peers: &mut Peers,
    device: &mut DeviceState,
    frontier: i64,
    max_buffered: usize,
    out: &mut Outcome,
) {
    let due = device.buffer.partition_point(|s| s.ts_ms <= frontier);
    let over = device.buffer.len().saturating_sub(max_buffered.max(1));
    let count = due.max(over);
    if count == 0 {
        return;
    }
    let released: Vec<Sample> = device.buffer.drain(..count).collect();
    for sample in released {
        evaluate(rules, threshold_index, peers, device, &sample, out);
    }
}

/// Evaluates one released sample: series first, then every rule.
pub(super) fn evaluate(
    rules: &RuleSet,
    threshold_index: &[Option<u8>],
    peers: &mut Peers,
    device: &mut DeviceState,
    sample: &Sample,
    out: &mut Outcome,
) {
    if device.kind != sample.kind {
        device.series = rules.series().new_state_for(sample.kind);
        device.kind = sample.kind;
    }
    device.released = true;
    device.last_seq = sample.seq;
    device.last_ts_ms = sample.ts_ms;
    let fault = sample.fault.as_ref().map(|f| (f.code, f.category));
    if !rules.series().is_empty() {
        let fleet = device.group.map(|group| {
            let slot = peers.baselines.slot(group);
            (&mut peers.baselines, slot)
        });
        rules.series().update_with(
            &mut device.series,
            Some(crate::parse::kind_slot(sample.kind)),
            sample.ts_ms,
            &sample.values,
            fault,
            fleet,
        );
    }
    // The village's outdoor estimate is kept only when a rule reads it, and worked out only
    // for a reading without its own outdoor value.
    let mut village_outdoor = f64::NAN;
    if let (Some(at), Some(outdoor)) = (device.area, rules.series().village_outdoor_source()) {
        let own = sample
            .values
            .get(usize::from(outdoor))
            .copied()
            .unwrap_or(f64::NAN);
        peers.weather.record(at, own, sample.ts_ms);
        if own.is_nan() {
            village_outdoor = peers.weather.estimate(at, sample.ts_ms);
        }
    }
    let context = Context {
        values: &sample.values,
        fault: sample.fault.as_ref().map(|f| f.category),
        vulnerable: device.vulnerable,
        series: rules.series(),
        state: &device.series,
        village_outdoor,
    };
    let now = sample.ts_ms;
    for (index, rule) in rules.rules().iter().enumerate() {
        let variant = device.variants.get(index).copied().unwrap_or(0);
        let Some(pair) = device.pairs.get_mut(index) else {
            continue;
        };
        let effective = rule.effective(variant);
        if rule.condition.is_absence() {
            continue;
        }
        if !rule.applies_to(sample.kind) {
            // Only reachable after a rule reload or a device changing kind.
            if let AlertState::Firing {
                fired_at_ms, level, ..
            } = pair.alert()
            {
                out.transitions.push(no_longer_applies(
                    rule,
                    &effective,
                    &device.id,
                    sample.kind,
                    now,
                    fired_at_ms,
                    level,
                ));
            }
            // Written only when it changes: most pairs of rules for another kind stay idle,
            // and an unneeded store would dirty their cache line at every reading.
            if *pair != PairState::IDLE {
                *pair = PairState::IDLE;
            }
            continue;
        }
        let base = match (
            effective.condition,
            threshold_index.get(index).copied().flatten(),
        ) {
            (Condition::Threshold(threshold), Some(value_index)) => {
                match sample.values.get(usize::from(value_index)) {
                    Some(value) if value.is_finite() => threshold.judge(*value),
                    _ => Evaluation::Unknown,
                }
            }
            (Condition::Expr { .. }, _) => {
                effective
                    .condition
                    .evaluate_for(sample, &context, pair.is_firing())
            }
            (condition, _) => condition.evaluate(sample),
        };
        let mut escalation = [Truth::Unknown; MAX_ESCALATIONS];
        for (slot, level) in escalation.iter_mut().zip(effective.escalations) {
            *slot = level.when.eval(&context);
        }
        step(
            rule,
            &effective,
            pair,
            &device.id,
            sample,
            &context,
            base,
            &escalation,
            out,
        );
    }
}

/// Steps a fault, threshold or expression rule with one sample.
#[allow(clippy::too_many_arguments)]
fn step(
    rule: &Rule,
    effective: &Effective<'_>,
    pair: &mut PairState,
    device_id: &DeviceId,
    sample: &Sample,
    context: &Context<'_>,
    base: Evaluation,
    escalation: &[Truth; MAX_ESCALATIONS],
    out: &mut Outcome,
) {
    let now = sample.ts_ms;
    let held = |since: i64, needed: i64| now.saturating_sub(since) >= needed;
    // Escalation timers use `NONE` (i64::MIN) for "not pending".
    let timer_held = |since: i64, needed: i64| since != NONE && held(since, needed);
    let levels = effective.escalations.len().min(MAX_ESCALATIONS);
    for (i, truth) in escalation.iter().enumerate().take(levels) {
        match truth {
            Truth::True => {
                if pair.escalation_since[i] == NONE {
                    pair.escalation_since[i] = now;
                }
            }
            Truth::False => pair.escalation_since[i] = NONE,
            Truth::Unknown => {}
        }
    }
    // The highest escalation level whose condition has held for its `for`.
    let top_escalation = (0..levels).rev().find(|i| {
        timer_held(
            pair.escalation_since[*i],
            effective.escalations[*i].hold_for_ms(),
        )
    });
    match pair.alert() {
        AlertState::Idle | AlertState::Pending { .. } => {
            let since = match (pair.alert(), base) {
                (_, Evaluation::Unknown) => match pair.alert() {
                    AlertState::Pending { since_ms } => Some(since_ms),
                    _ => None,
                },
                (AlertState::Pending { since_ms }, Evaluation::Triggered) => Some(since_ms),
                (_, Evaluation::Triggered) => Some(now),
                _ => None,
            };
            pair.set_alert(
                since.map_or(AlertState::Idle, |since_ms| AlertState::Pending {
                    since_ms,
                }),
            );
            // Only a condition seen true fires: a pending rule whose condition is unknown at
            // its deadline (no fleet judgement this hour, a value missing) waits for the next
            // reading that shows it still holds.
            let base_held = base == Evaluation::Triggered
                && since.is_some_and(|s| held(s, effective.hold_for_ms()));
            let level = match top_escalation {
                Some(i) => Some(i as u8 + 1),
                None if base_held => Some(0),
                None => None,
            };
            if let Some(level) = level {
                pair.set_alert(AlertState::Firing {
                    fired_at_ms: now,
                    clear_since_ms: None,
                    level,
                });
                let summary = firing_summary(effective, level, sample, context);
                out.transitions.push(make_transition(
                    rule,
                    effective,
                    device_id,
                    TransitionKind::Firing,
                    now,
                    now,
                    level,
                    summary,
                ));
            }
        }
        AlertState::Firing {
            fired_at_ms,
            clear_since_ms,
            level,
        } => {
            match base {
                Evaluation::Unknown => {}
                Evaluation::Cleared => {
                    let since = clear_since_ms.unwrap_or(now);
                    if held(since, effective.clear_for_ms()) {
                        let summary = match effective.condition {
                            Condition::Expr { .. } => format!(
                                "{}; {}",
                                effective
                                    .condition
                                    .resolved_summary(sample, effective.clear_for),
                                describe_condition(effective.condition, context)
                            ),
                            condition => condition.resolved_summary(sample, effective.clear_for),
                        };
                        out.transitions.push(make_transition(
                            rule,
                            effective,
                            device_id,
                            TransitionKind::Resolved,
                            now.max(fired_at_ms),
                            fired_at_ms,
                            level,
                            summary,
                        ));
                        *pair = PairState {
                            guard: pair.guard,
                            ..PairState::IDLE
                        };
                        return;
                    }
                    pair.set_alert(AlertState::Firing {
                        fired_at_ms,
                        clear_since_ms: Some(since),
                        level,
                    });
                }
                Evaluation::Triggered | Evaluation::Between => {
                    pair.set_alert(AlertState::Firing {
                        fired_at_ms,
                        clear_since_ms: None,
                        level,
                    });
                }
            }
            if let Some(i) = top_escalation {
                let new_level = i as u8 + 1;
                if new_level > level {
                    if let AlertState::Firing { clear_since_ms, .. } = pair.alert() {
                        pair.set_alert(AlertState::Firing {
                            fired_at_ms,
                            clear_since_ms,
                            level: new_level,
                        });
                    }
                    let (from, _) = effective.at_level(level);
                    let (severity, action) = effective.at_level(new_level);
                    out.escalations.push(Escalation {
                        episode_id: episode_id(rule, device_id, fired_at_ms),
                        rule_id: rule.id.clone(),
                        device_id: device_id.clone(),
                        at_ms: now.max(fired_at_ms),
                        from,
                        severity,
                        action,
                        summary: firing_summary(effective, new_level, sample, context),
                        suppressed_by: None,
                    });
                }
            }
        }
    }
}
