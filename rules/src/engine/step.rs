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
    record_sample(rules, peers, device, sample);
    let village_outdoor = village_outdoor(rules, peers, device.area, sample);
    let context = Context {
        values: &sample.values,
        fault: sample.fault.as_ref().map(|f| f.category),
        vulnerable: device.vulnerable,
        series: rules.series(),
        state: &device.series,
        village_outdoor,
    };
    for (index, rule) in rules.rules().iter().enumerate() {
        let variant = device.variants.get(index).copied().unwrap_or(0);
        let Some(pair) = device.pairs.get_mut(index) else {
            continue;
        };
        let effective = rule.effective(variant);
        if rule.condition.is_absence() {
            continue;
        }
        let at = RuleStep {
            rule,
            effective: &effective,
            device_id: &device.id,
            sample,
            context: &context,
        };
        if !rule.applies_to(sample.kind) {
            // Only reachable after a rule reload or a device changing kind.
            at.retire(pair, out);
            continue;
        }
        let base = at.judge(
            threshold_index.get(index).copied().flatten(),
            pair.is_firing(),
        );
        let escalation = at.escalation_truths();
        at.step(pair, base, &escalation, out);
    }
}

/// Makes the sample the device's newest evaluated reading and feeds it to the device's series
/// (a device that changed kind starts the series of its new kind afresh) and, through them,
/// to the fleet's baselines of the device's profile group.
fn record_sample(rules: &RuleSet, peers: &mut Peers, device: &mut DeviceState, sample: &Sample) {
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
}

/// The village's outdoor estimate for the sample (NaN when not worked out). The village's
/// outdoor readings are kept only when a rule reads them, and the estimate is worked out only
/// for a reading without its own outdoor value.
fn village_outdoor(
    rules: &RuleSet,
    peers: &mut Peers,
    area: Option<AreaSlot>,
    sample: &Sample,
) -> f64 {
    let (Some(at), Some(outdoor)) = (area, rules.series().village_outdoor_source()) else {
        return f64::NAN;
    };
    let own = sample
        .values
        .get(usize::from(outdoor))
        .copied()
        .unwrap_or(f64::NAN);
    peers.weather.record(at, own, sample.ts_ms);
    if own.is_nan() {
        peers.weather.estimate(at, sample.ts_ms)
    } else {
        f64::NAN
    }
}

/// One fault, threshold or expression rule stepped with one sample of one device: what every
/// phase of the step reads.
struct RuleStep<'a> {
    rule: &'a Rule,
    /// The rule as it applies to the device (its override variant).
    effective: &'a Effective<'a>,
    device_id: &'a DeviceId,
    sample: &'a Sample,
    context: &'a Context<'a>,
}

impl RuleStep<'_> {
    /// Whether a condition true since `since` has held for `needed` at the sample's time.
    fn held(&self, since: i64, needed: i64) -> bool {
        self.sample.ts_ms.saturating_sub(since) >= needed
    }

    /// A rule that no longer applies to the device's kind: a firing alert resolves, and the
    /// pair goes idle.
    fn retire(&self, pair: &mut PairState, out: &mut Outcome) {
        if let AlertState::Firing {
            fired_at_ms, level, ..
        } = pair.alert()
        {
            out.transitions.push(no_longer_applies(
                self.rule,
                self.effective,
                self.device_id,
                self.sample.kind,
                self.sample.ts_ms,
                fired_at_ms,
                level,
            ));
        }
        // Written only when it changes: most pairs of rules for another kind stay idle,
        // and an unneeded store would dirty their cache line at every reading.
        if *pair != PairState::IDLE {
            *pair = PairState::IDLE;
        }
    }

    /// How the sample stands against the rule's condition: a simple threshold straight from
    /// its value index (`threshold_value`), an expression in the sample's context (`firing`:
    /// whether the alert is active, which picks its clear condition), any other form by the
    /// condition itself.
    fn judge(&self, threshold_value: Option<u8>, firing: bool) -> Evaluation {
        match (self.effective.condition, threshold_value) {
            (Condition::Threshold(threshold), Some(value_index)) => {
                match self.sample.values.get(usize::from(value_index)) {
                    Some(value) if value.is_finite() => threshold.judge(*value),
                    _ => Evaluation::Unknown,
                }
            }
            (Condition::Expr { .. }, _) => {
                self.effective
                    .condition
                    .evaluate_for(self.sample, self.context, firing)
            }
            (condition, _) => condition.evaluate(self.sample),
        }
    }

    /// The truth of each escalation level's condition for the sample.
    fn escalation_truths(&self) -> [Truth; MAX_ESCALATIONS] {
        let mut escalation = [Truth::Unknown; MAX_ESCALATIONS];
        for (slot, level) in escalation.iter_mut().zip(self.effective.escalations) {
            *slot = level.when.eval(self.context);
        }
        escalation
    }

    /// Steps the pair with the sample's evaluation `base` and escalation truths: the
    /// escalation timers first, then an idle or pending alert towards firing, or a firing one
    /// towards its resolution and higher levels.
    fn step(
        &self,
        pair: &mut PairState,
        base: Evaluation,
        escalation: &[Truth; MAX_ESCALATIONS],
        out: &mut Outcome,
    ) {
        let top_escalation = self.escalation_timers(pair, escalation);
        match pair.alert() {
            AlertState::Idle | AlertState::Pending { .. } => {
                self.pend_or_fire(pair, base, top_escalation, out);
            }
            AlertState::Firing {
                fired_at_ms,
                clear_since_ms,
                level,
            } => {
                let firing = (fired_at_ms, clear_since_ms, level);
                if self.hold_or_resolve(pair, base, firing, out) {
                    return;
                }
                if let Some(top) = top_escalation {
                    self.escalate(pair, fired_at_ms, level, top, out);
                }
            }
        }
    }

    /// Starts or stops each escalation level's timer with the truth of its condition; returns
    /// the highest level whose condition has held for its `for` (its index).
    fn escalation_timers(
        &self,
        pair: &mut PairState,
        escalation: &[Truth; MAX_ESCALATIONS],
    ) -> Option<usize> {
        let now = self.sample.ts_ms;
        let levels = self.effective.escalations.len().min(MAX_ESCALATIONS);
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
        // Escalation timers use `NONE` (i64::MIN) for "not pending".
        (0..levels).rev().find(|i| {
            let since = pair.escalation_since[*i];
            since != NONE && self.held(since, self.effective.escalations[*i].hold_for_ms())
        })
    }

    /// An idle or pending alert: pending from the first sample that triggers the condition,
    /// firing (at the highest escalation level that has held, else at level 0) once it has
    /// held for its `for`.
    fn pend_or_fire(
        &self,
        pair: &mut PairState,
        base: Evaluation,
        top_escalation: Option<usize>,
        out: &mut Outcome,
    ) {
        let now = self.sample.ts_ms;
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
            && since.is_some_and(|s| self.held(s, self.effective.hold_for_ms()));
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
            let summary = firing_summary(self.effective, level, self.sample, self.context);
            out.transitions.push(make_transition(
                self.rule,
                self.effective,
                self.device_id,
                TransitionKind::Firing,
                now,
                now,
                level,
                summary,
            ));
        }
    }

    /// A firing alert (`fired_at_ms`, `clear_since_ms`, `level`) with the sample's evaluation:
    /// the clear condition's run starts, goes on or breaks, and once it has held for
    /// `clear_for` the alert resolves and the pair goes idle. Returns whether it resolved.
    fn hold_or_resolve(
        &self,
        pair: &mut PairState,
        base: Evaluation,
        (fired_at_ms, clear_since_ms, level): (i64, Option<i64>, u8),
        out: &mut Outcome,
    ) -> bool {
        let now = self.sample.ts_ms;
        let clear_since_ms = match base {
            Evaluation::Unknown => return false,
            Evaluation::Triggered | Evaluation::Between => None,
            Evaluation::Cleared => {
                let since = clear_since_ms.unwrap_or(now);
                if self.held(since, self.effective.clear_for_ms()) {
                    out.transitions.push(make_transition(
                        self.rule,
                        self.effective,
                        self.device_id,
                        TransitionKind::Resolved,
                        now.max(fired_at_ms),
                        fired_at_ms,
                        level,
                        self.resolved_summary(),
                    ));
                    *pair = PairState {
                        guard: pair.guard,
                        ..PairState::IDLE
                    };
                    return true;
                }
                Some(since)
            }
        };
        pair.set_alert(AlertState::Firing {
            fired_at_ms,
            clear_since_ms,
            level,
        });
        false
    }

    /// The sentence of a resolution: an expression's also names its values.
    fn resolved_summary(&self) -> String {
        let condition = self.effective.condition;
        let summary = condition.resolved_summary(self.sample, self.effective.clear_for);
        match condition {
            Condition::Expr { .. } => {
                format!("{summary}; {}", describe_condition(condition, self.context))
            }
            _ => summary,
        }
    }

    /// A firing alert (episode of `fired_at_ms`, now at `level`) whose escalation condition
    /// `top` (level `top + 1`) has held: when that level is higher, the alert rises to it and
    /// the escalation is emitted.
    fn escalate(
        &self,
        pair: &mut PairState,
        fired_at_ms: i64,
        level: u8,
        top: usize,
        out: &mut Outcome,
    ) {
        let new_level = top as u8 + 1;
        if new_level <= level {
            return;
        }
        if let AlertState::Firing { clear_since_ms, .. } = pair.alert() {
            pair.set_alert(AlertState::Firing {
                fired_at_ms,
                clear_since_ms,
                level: new_level,
            });
        }
        let (from, _) = self.effective.at_level(level);
        let (severity, action) = self.effective.at_level(new_level);
        out.escalations.push(Escalation {
            episode_id: episode_id(self.rule, self.device_id, fired_at_ms),
            rule_id: self.rule.id.clone(),
            device_id: self.device_id.clone(),
            at_ms: self.sample.ts_ms.max(fired_at_ms),
            from,
            severity,
            action,
            summary: firing_summary(self.effective, new_level, self.sample, self.context),
            suppressed_by: None,
        });
    }
}
