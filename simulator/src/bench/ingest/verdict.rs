//! Whether a comparison may be judged: a run's [`Verdict`] is "valid" only when nothing was
//! dropped on either side, the gateway's history sink settled, every round was sent and
//! handled, and every probe was answered ([`judge`]); the bench's verdict needs every run
//! valid ([`overall`]). A ratio is called "met" or "NOT met" only under a valid verdict.

use std::fmt;

use serde::Serialize;

use super::report::{GatewayResult, LatencyResult, RelayResult, RunReport};

/// A comparison's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub valid: bool,
    /// The gateway wrote history; `false`: the comparison is "without history" (`--no-sink`).
    pub with_history: bool,
    /// Why it is invalid (empty when valid).
    pub reasons: Vec<String>,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.valid, self.with_history) {
            (true, true) => write!(f, "valid"),
            (true, false) => write!(f, "valid (without history)"),
            (false, _) => write!(f, "invalid: {}", self.reasons.join("; ")),
        }
    }
}

/// The verdict of one run: `expected` load readings were to be sent to each target.
pub fn judge(
    expected: u64,
    relay: &RelayResult,
    gateway: &GatewayResult,
    latency: &LatencyResult,
) -> Verdict {
    let mut reasons = Vec::new();
    relay_reasons(expected, relay, &mut reasons);
    gateway_reasons(expected, gateway, &mut reasons);
    probe_reasons(latency, &mut reasons);
    if reasons.is_empty() && (relay.rate_per_s <= 0.0 || gateway.rate_per_s <= 0.0) {
        reasons.push("a target measured no rate".to_owned());
    }
    Verdict {
        valid: reasons.is_empty(),
        with_history: gateway.sink.is_some(),
        reasons,
    }
}

fn relay_reasons(expected: u64, relay: &RelayResult, reasons: &mut Vec<String>) {
    if relay.sent != expected {
        reasons.push(format!(
            "mosquitto was sent {} of the {expected} load readings",
            relay.sent
        ));
    }
    if relay.lost > 0 {
        reasons.push(format!(
            "mosquitto lost {} of {} readings",
            relay.lost, relay.sent
        ));
    } else if !relay.complete {
        reasons.push("mosquitto's run did not complete".to_owned());
    }
    if relay.unacknowledged > 0 {
        reasons.push(format!(
            "mosquitto never acknowledged {} QoS 1 publishes",
            relay.unacknowledged
        ));
    }
}

fn gateway_reasons(expected: u64, gateway: &GatewayResult, reasons: &mut Vec<String>) {
    if gateway.sent != expected {
        reasons.push(format!(
            "the gateway was sent {} of the {expected} load readings",
            gateway.sent
        ));
    }
    if gateway.missing > 0 {
        reasons.push(format!(
            "the gateway did not handle {} of {} readings",
            gateway.missing,
            gateway.sent + gateway.probe_readings
        ));
    } else if !gateway.complete {
        reasons.push(
            "the gateway's timed phase did not end (every reading handled and written) before it stalled"
                .to_owned(),
        );
    }
    let rejected: u64 = gateway.rejected.values().sum();
    if rejected > 0 {
        reasons.push(format!(
            "the gateway rejected {rejected} readings {:?}",
            gateway.rejected
        ));
    }
    if gateway.broker_messages_lost > 0 {
        reasons.push(format!(
            "the gateway's broker lost {} messages",
            gateway.broker_messages_lost
        ));
    }
    if gateway.unacknowledged > 0 {
        reasons.push(format!(
            "the gateway never acknowledged {} QoS 1 publishes",
            gateway.unacknowledged
        ));
    }
    if let Some(sink) = &gateway.sink {
        if sink.dropped() > 0 {
            reasons.push(format!(
                "the history sink dropped {} points {:?}",
                sink.dropped(),
                sink.points_dropped
            ));
        }
        if !sink.settled {
            reasons.push(format!(
                "the history sink did not settle ({} points buffered, {} of {} handed over written)",
                sink.points_buffered, sink.points_written, sink.points_handed_over
            ));
        }
    }
}

fn probe_reasons(latency: &LatencyResult, reasons: &mut Vec<String>) {
    if latency.probes == 0 {
        return;
    }
    if latency.timeouts > 0 {
        reasons.push(format!(
            "{} probe faults got no alert within 60 s",
            latency.timeouts
        ));
    }
    if latency.resolve_timeouts > 0 {
        reasons.push(format!(
            "{} probe clears got no resolved alert within 10 s",
            latency.resolve_timeouts
        ));
    }
    if latency.samples == 0 && latency.timeouts == 0 {
        reasons.push("no probe was answered".to_owned());
    }
}

/// The bench's verdict: valid when every run is (and there is one).
pub fn overall(runs: &[RunReport]) -> Verdict {
    let mut reasons: Vec<String> = runs
        .iter()
        .flat_map(|run| {
            run.verdict
                .reasons
                .iter()
                .map(move |reason| format!("run {}: {reason}", run.run))
        })
        .collect();
    if runs.is_empty() {
        reasons.push("no run".to_owned());
    }
    Verdict {
        valid: reasons.is_empty(),
        with_history: runs.iter().all(|run| run.verdict.with_history),
        reasons,
    }
}

/// The median (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => sorted.get(middle).copied(),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}

/// Whether the ratio reaches 1.0×: `None` when the verdict is invalid or there is no ratio.
pub fn target_met(ratio: Option<f64>, verdict: &Verdict) -> Option<bool> {
    ratio.filter(|_| verdict.valid).map(|r| r >= 1.0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bench::ingest::report::SinkResult;

    const LOAD: u64 = 400;

    fn relay() -> RelayResult {
        RelayResult {
            sent: LOAD,
            received: LOAD,
            lost: 0,
            send_seconds: 0.5,
            seconds: 0.6,
            rate_per_s: 666.0,
            complete: true,
            unacknowledged: 0,
            broker_cpu_seconds: None,
            load_cpu_seconds: None,
        }
    }

    fn sink() -> SinkResult {
        SinkResult {
            points_written: LOAD + 20,
            points_dropped: BTreeMap::new(),
            write_failures: 0,
            points_handed_over: LOAD + 20,
            points_counted_exactly: false,
            settle_seconds: 0.2,
            points_buffered: 0,
            settled: true,
        }
    }

    fn gateway() -> GatewayResult {
        GatewayResult {
            sent: LOAD,
            probe_readings: 20,
            handled: LOAD + 20,
            handled_in_time: LOAD + 18,
            accepted: LOAD + 20,
            rejected: BTreeMap::new(),
            missing: 0,
            complete: true,
            send_seconds: 0.5,
            handled_seconds: 0.6,
            seconds: 0.8,
            rate_per_s: 500.0,
            poll_interval_ms: 50,
            messages_in: LOAD + 30,
            broker_messages_lost: 0,
            alerts_fired: 10,
            alerts_by_rule: BTreeMap::new(),
            sink: Some(sink()),
            devices_held: 205,
            boxes_connected: 205,
            rss_started_kib: None,
            rss_connected_kib: None,
            rss_kib: None,
            hwm_kib: None,
            rss_per_idle_box_kib: None,
            rss_per_device_kib: None,
            rule_state_bytes_per_device: 0,
            snapshot_bytes_per_device: None,
            broker_log_capacity_bytes: 0,
            unacknowledged: 0,
            cpu_seconds: None,
            sink_server_cpu_seconds: None,
            load_cpu_seconds: None,
        }
    }

    fn latency() -> LatencyResult {
        LatencyResult {
            probes: 5,
            probe_interval_ms: 200,
            samples: 10,
            ..LatencyResult::default()
        }
    }

    /// The verdict with one fact changed, and the reason it must give.
    fn invalid_with(
        change: impl FnOnce(&mut RelayResult, &mut GatewayResult, &mut LatencyResult),
        reason: &str,
    ) {
        let (mut a, mut b, mut l) = (relay(), gateway(), latency());
        change(&mut a, &mut b, &mut l);
        let verdict = judge(LOAD, &a, &b, &l);
        assert!(!verdict.valid, "{reason}: {verdict}");
        assert!(
            verdict.reasons.iter().any(|r| r.contains(reason)),
            "{reason}: {verdict}"
        );
        assert!(verdict.to_string().starts_with("invalid: "), "{verdict}");
        assert_eq!(target_met(Some(1.5), &verdict), None, "not judged");
    }

    #[test]
    fn a_clean_run_is_valid_and_its_ratio_judged() {
        let verdict = judge(LOAD, &relay(), &gateway(), &latency());
        assert!(verdict.valid && verdict.with_history, "{verdict}");
        assert_eq!(verdict.to_string(), "valid");
        assert_eq!(target_met(Some(0.75), &verdict), Some(false));
        assert_eq!(target_met(Some(1.0), &verdict), Some(true));

        let mut without = gateway();
        without.sink = None;
        let verdict = judge(LOAD, &relay(), &without, &latency());
        assert!(verdict.valid && !verdict.with_history);
        assert_eq!(verdict.to_string(), "valid (without history)");
    }

    #[test]
    fn drops_on_either_side_make_the_run_invalid() {
        invalid_with(|a, _, _| a.lost = 3, "mosquitto lost 3");
        invalid_with(
            |a, _, _| a.unacknowledged = 2,
            "mosquitto never acknowledged 2",
        );
        invalid_with(
            |_, b, _| {
                if let Some(sink) = &mut b.sink {
                    sink.points_dropped.insert("channel_full".to_owned(), 3_565);
                }
            },
            "the history sink dropped 3565 points",
        );
        invalid_with(
            |_, b, _| {
                b.rejected.insert("out_of_range".to_owned(), 1);
            },
            "the gateway rejected 1 readings",
        );
        invalid_with(|_, b, _| b.broker_messages_lost = 7, "broker lost 7");
    }

    #[test]
    fn an_unsettled_sink_makes_the_run_invalid() {
        invalid_with(
            |_, b, _| {
                if let Some(sink) = &mut b.sink {
                    sink.settled = false;
                    sink.points_buffered = 214_000;
                }
            },
            "the history sink did not settle (214000 points buffered",
        );
    }

    #[test]
    fn an_incomplete_run_is_invalid() {
        invalid_with(
            |_, b, _| {
                b.missing = 12;
                b.complete = false;
            },
            "the gateway did not handle 12 of 420 readings",
        );
        invalid_with(|_, b, _| b.complete = false, "timed phase did not end");
        invalid_with(
            |a, _, _| {
                a.complete = false;
            },
            "mosquitto's run did not complete",
        );
        invalid_with(
            |_, b, _| b.sent = LOAD - 50,
            "the gateway was sent 350 of the 400",
        );
        invalid_with(
            |a, _, _| a.sent = LOAD - 1,
            "mosquitto was sent 399 of the 400",
        );
    }

    #[test]
    fn a_probe_left_unanswered_makes_the_run_invalid() {
        invalid_with(|_, _, l| l.timeouts = 2, "2 probe faults got no alert");
        invalid_with(
            |_, _, l| l.resolve_timeouts = 1,
            "1 probe clears got no resolved",
        );
        invalid_with(|_, _, l| l.samples = 0, "no probe was answered");
        // Without probes there is nothing to answer.
        let none = LatencyResult::default();
        assert!(judge(LOAD, &relay(), &gateway(), &none).valid);
    }

    #[test]
    fn the_bench_is_valid_only_when_every_run_is() {
        let run = |number: usize, verdict: Verdict| RunReport {
            run: number,
            order: crate::bench::ingest::report::Target::order_of_run(number),
            mosquitto: relay(),
            gateway: gateway(),
            ratio: Some(0.8),
            target_met: None,
            verdict,
            latency: latency(),
        };
        let valid = judge(LOAD, &relay(), &gateway(), &latency());
        let mut lossy = relay();
        lossy.lost = 1;
        let invalid = judge(LOAD, &lossy, &gateway(), &latency());
        assert!(overall(&[run(1, valid.clone()), run(2, valid.clone())]).valid);
        let both = overall(&[run(1, valid), run(2, invalid)]);
        assert!(!both.valid);
        assert_eq!(
            both.reasons,
            vec!["run 2: mosquitto lost 1 of 400 readings"]
        );
        assert!(!overall(&[]).valid);
    }

    #[test]
    fn the_median_takes_the_middle() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.2]), Some(1.2));
        assert_eq!(median(&[1.3, 0.9, 1.1]), Some(1.1));
        assert_eq!(median(&[1.0, 0.5, 2.0, 1.5]), Some(1.25));
    }
}
