//! Absence rules: a reading ending or reporting a silence, and the watermark's scan for devices
//! silent past their deadline.

use super::*;

/// Handles a reading's receipt for absence rules: ends an active absence, or reports a gap no
/// watermark crossed, then evaluates the rules' guards on the reading (when it is the newest).
/// Returns whether an absence alert ended (its deadline restarts).
pub(super) fn receive_absence(
    rules: &RuleSet,
    absence_rules: &[usize],
    device: &mut DeviceState,
    reading: &Sample,
    previous_newest: Option<i64>,
    village_outdoor: f64,
    out: &mut Outcome,
) -> bool {
    let now = reading.ts_ms;
    let newest = previous_newest.is_none_or(|p| now >= p);
    let mut resumed = false;
    // Guards read only the reading's own values and its village's outdoor estimate (the parser
    // refuses windowed functions there), so they are judged against the rule set's series
    // table with an empty state.
    let no_state = SeriesState::default();
    let context = Context {
        values: &reading.values,
        fault: reading.fault.as_ref().map(|f| f.category),
        vulnerable: device.vulnerable,
        series: rules.series(),
        state: &no_state,
        village_outdoor,
    };
    for &index in absence_rules {
        let Some(rule) = rules.rules().get(index) else {
            continue;
        };
        let variant = variant_of(device, index);
        let Some(pair) = device.pairs.get_mut(index) else {
            continue;
        };
        let effective = rule.effective(variant);
        if !rule.applies_to(reading.kind) {
            if let AlertState::Firing { fired_at_ms, .. } = pair.alert() {
                out.transitions.push(no_longer_applies(
                    rule,
                    &effective,
                    &device.id,
                    reading.kind,
                    now,
                    fired_at_ms,
                    0,
                ));
            }
            pair.set_alert(AlertState::Idle);
            continue;
        }
        let receipt = Receipt {
            rule,
            effective: &effective,
            device_id: &device.id,
            now,
            previous_newest,
        };
        resumed |= receipt.end_silence(pair, out);
        pair.set_alert(AlertState::Idle);
        if let (Some(guard), true) = (effective.guard, newest) {
            match guard.eval(&context) {
                Truth::True => pair.guard = true,
                Truth::False => pair.guard = false,
                Truth::Unknown => {}
            }
        }
    }
    resumed
}

/// A reading received for one absence rule of its device.
struct Receipt<'a> {
    rule: &'a Rule,
    /// The rule as it applies to the device (its override variant).
    effective: &'a Effective<'a>,
    device_id: &'a DeviceId,
    /// The reading's time.
    now: i64,
    /// The device's newest timestamp before the reading (`None` for its first).
    previous_newest: Option<i64>,
}

impl Receipt<'_> {
    /// Ends the silence the reading breaks: an active absence alert resolves (returns true),
    /// and a gap at least as long as the rule's `for` that no watermark crossed is reported
    /// as a firing at the deadline and a resolution at the reading.
    fn end_silence(&self, pair: &PairState, out: &mut Outcome) -> bool {
        let silence = self
            .previous_newest
            .filter(|p| self.now > *p)
            .map(|previous| self.now.saturating_sub(previous));
        match pair.alert() {
            AlertState::Firing { fired_at_ms, .. } => {
                out.transitions.push(self.transition(
                    TransitionKind::Resolved,
                    self.now.max(fired_at_ms),
                    fired_at_ms,
                    back_summary(silence),
                ));
                true
            }
            AlertState::Idle | AlertState::Pending { .. } => {
                let guard_ok = self.effective.guard.is_none() || pair.guard;
                let hold_ms = self.effective.hold_for_ms();
                if let (Some(previous), Some(gap)) = (self.previous_newest, silence) {
                    if guard_ok && gap >= hold_ms {
                        let fired_at_ms = previous.saturating_add(hold_ms);
                        out.transitions.push(self.transition(
                            TransitionKind::Firing,
                            fired_at_ms,
                            fired_at_ms,
                            absence_summary(self.effective),
                        ));
                        out.transitions.push(self.transition(
                            TransitionKind::Resolved,
                            self.now,
                            fired_at_ms,
                            back_summary(silence),
                        ));
                    }
                }
                false
            }
        }
    }

    /// A transition of the rule's episode that fired at `fired_at_ms` (level 0: absence rules
    /// do not escalate).
    fn transition(
        &self,
        kind: TransitionKind,
        at_ms: i64,
        fired_at_ms: i64,
        summary: String,
    ) -> Transition {
        make_transition(
            self.rule,
            self.effective,
            self.device_id,
            kind,
            at_ms,
            fired_at_ms,
            0,
            summary,
        )
    }
}

/// The sentence of an absence's end, with the silence when known.
fn back_summary(silence: Option<i64>) -> String {
    absence_resolved_summary(silence.map(|ms| Duration::from_millis(ms.max(0) as u64)))
}

pub(super) fn absence_summary(effective: &Effective<'_>) -> String {
    match effective.guard {
        None => absence_firing_summary(effective.hold_for),
        Some(guard) => format!(
            "{} (last reading: {})",
            absence_firing_summary(effective.hold_for),
            guard.text()
        ),
    }
}

/// Fires absence rules whose deadline is at or before `watermark_ms`; returns the earliest
/// deadline still ahead (a lower bound for the next scan).
pub(super) fn scan_absence(
    rules: &RuleSet,
    devices: &mut [DeviceState],
    watermark_ms: i64,
    out: &mut Outcome,
) -> i64 {
    let absence: Vec<(usize, &Rule)> = rules
        .rules()
        .iter()
        .enumerate()
        .filter(|(_, rule)| rule.condition.is_absence())
        .collect();
    let mut next = i64::MAX;
    if absence.is_empty() {
        return next;
    }
    for device in devices.iter_mut() {
        for (index, rule) in &absence {
            if !rule.applies_to(device.kind) {
                continue;
            }
            let variant = variant_of(device, *index);
            let effective = rule.effective(variant);
            let Some(pair) = device.pairs.get_mut(*index) else {
                continue;
            };
            if pair.is_firing() {
                continue;
            }
            let deadline_ms = device.newest_ts_ms.saturating_add(effective.hold_for_ms());
            if watermark_ms < deadline_ms {
                next = next.min(deadline_ms);
                continue;
            }
            if effective.guard.is_some() && !pair.guard {
                continue;
            }
            pair.set_alert(AlertState::Firing {
                fired_at_ms: deadline_ms,
                clear_since_ms: None,
                level: 0,
            });
            out.transitions.push(make_transition(
                rule,
                &effective,
                &device.id,
                TransitionKind::Firing,
                deadline_ms,
                deadline_ms,
                0,
                absence_summary(&effective),
            ));
        }
    }
    next
}
