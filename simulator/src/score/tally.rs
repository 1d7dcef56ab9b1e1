//! Tallies of faults by verdict: the verdict itself, complained and uncomplained counts with
//! their lead times (median and 10th percentile), and the rounding the card uses.

use serde::Serialize;

/// Median and 10th percentile (nearest rank) of a list of minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LeadTimes {
    pub count: usize,
    pub median_min: Option<f64>,
    pub p10_min: Option<f64>,
}

impl LeadTimes {
    pub(super) fn of(mut minutes: Vec<f64>) -> LeadTimes {
        minutes.sort_by(f64::total_cmp);
        let rank = |q: f64| {
            let n = minutes.len();
            if n == 0 {
                return None;
            }
            let index = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            Some(round1(minutes[index]))
        };
        let median = match minutes.len() {
            0 => None,
            n if n % 2 == 1 => Some(round1(minutes[n / 2])),
            n => Some(round1((minutes[n / 2 - 1] + minutes[n / 2]) / 2.0)),
        };
        LeadTimes {
            count: minutes.len(),
            median_min: median,
            p10_min: rank(0.1),
        }
    }
}

pub(super) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(super) fn share(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| (part as f64 / whole as f64 * 1000.0).round() / 1000.0)
}

/// How one fault came out (see the `score` module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Complained; a rule order before the first complaint.
    PreEmptive,
    /// Complained; the first rule order at or after the first complaint (a miss).
    Late,
    /// Complained; no rule order (a miss).
    Missed,
    /// Nobody complained; a rule order.
    Detected,
    /// Nobody complained; no rule order.
    Undetected,
}

/// Faults a resident complained about, by verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ComplainedTally {
    pub faults: u64,
    pub pre_emptive: u64,
    pub late: u64,
    pub missed: u64,
    /// pre-emptive / faults.
    pub pre_emptive_rate: Option<f64>,
    /// First complaint - detection, over the pre-emptive faults.
    pub lead_times: LeadTimes,
}

/// Faults nobody complained about, by verdict (never part of the pre-emptive rate).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UncomplainedTally {
    pub faults: u64,
    pub detected: u64,
    pub undetected: u64,
    /// Of the undetected, those a resident would have noticed (a would-notice time).
    pub undetected_noticeable: u64,
    /// Would-notice time - detection, over the detected faults that have one (negative:
    /// detected after the resident would have noticed).
    pub lead_times: LeadTimes,
}

/// A group of faults, split by complaint and verdict.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FaultTally {
    pub injected: u64,
    pub complained: ComplainedTally,
    pub uncomplained: UncomplainedTally,
}

/// Builds a [`FaultTally`], keeping the lead times until the end.
#[derive(Default)]
pub(super) struct TallyBuilder {
    tally: FaultTally,
    complained_leads: Vec<f64>,
    uncomplained_leads: Vec<f64>,
}

impl TallyBuilder {
    pub(super) fn add(&mut self, verdict: Verdict, lead_min: Option<f64>, noticeable: bool) {
        let t = &mut self.tally;
        t.injected += 1;
        match verdict {
            Verdict::PreEmptive | Verdict::Late | Verdict::Missed => {
                t.complained.faults += 1;
                match verdict {
                    Verdict::PreEmptive => {
                        t.complained.pre_emptive += 1;
                        self.complained_leads.extend(lead_min);
                    }
                    Verdict::Late => t.complained.late += 1,
                    _ => t.complained.missed += 1,
                }
            }
            Verdict::Detected => {
                t.uncomplained.faults += 1;
                t.uncomplained.detected += 1;
                self.uncomplained_leads.extend(lead_min);
            }
            Verdict::Undetected => {
                t.uncomplained.faults += 1;
                t.uncomplained.undetected += 1;
                t.uncomplained.undetected_noticeable += u64::from(noticeable);
            }
        }
    }

    pub(super) fn finish(self) -> FaultTally {
        let mut tally = self.tally;
        tally.complained.pre_emptive_rate =
            share(tally.complained.pre_emptive, tally.complained.faults);
        tally.complained.lead_times = LeadTimes::of(self.complained_leads);
        tally.uncomplained.lead_times = LeadTimes::of(self.uncomplained_leads);
        tally
    }
}
