//! The counters of inspection campaigns ([`CampaignFigures`]), rendered on `/metrics` as
//! `gateway_campaign_*`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use super::model::Outcome;

/// The counters of campaigns, rendered on `/metrics` (`gateway_campaign_*`).
#[derive(Debug, Default)]
pub struct CampaignFigures {
    inner: Mutex<FiguresInner>,
}

#[derive(Debug, Default)]
struct FiguresInner {
    created: u64,
    planned: u64,
    unscheduled: u64,
    dispatch_failures: u64,
    outcomes: BTreeMap<&'static str, u64>,
    retries: u64,
    retries_unscheduled: u64,
    findings: u64,
    failures: u64,
}

impl CampaignFigures {
    fn with(&self, f: impl FnOnce(&mut FiguresInner)) {
        if let Ok(mut inner) = self.inner.lock() {
            f(&mut inner);
        }
    }

    /// A campaign was created with `planned` and `unscheduled` inspections, `no_team` of them
    /// without a team.
    pub fn created(&self, planned: usize, unscheduled: usize, no_team: usize) {
        self.with(|i| {
            i.created += 1;
            i.planned += planned as u64;
            i.unscheduled += unscheduled as u64;
            i.dispatch_failures += no_team as u64;
        });
    }

    /// A visit was recorded with `outcome`.
    pub fn outcome(&self, outcome: Outcome) {
        self.with(|i| *i.outcomes.entry(outcome.as_str()).or_default() += 1);
    }

    /// A not-at-home got a new visit (`planned`) or found no day for one.
    pub fn retry(&self, planned: bool) {
        self.with(|i| {
            if planned {
                i.retries += 1;
            } else {
                i.retries_unscheduled += 1;
            }
        });
    }

    /// A finding opened a repair order.
    pub fn finding(&self) {
        self.with(|i| i.findings += 1);
    }

    /// A campaign could not be created or a visit not recorded (the store failed).
    pub fn failed(&self) {
        self.with(|i| i.failures += 1);
    }

    /// Visits recorded with `outcome` so far.
    pub fn outcomes(&self, outcome: &str) -> u64 {
        self.inner
            .lock()
            .map(|i| i.outcomes.get(outcome).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Appends the figures in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let Ok(inner) = self.inner.lock() else {
            return;
        };
        let _ = writeln!(out, "# HELP gateway_campaign_outcomes_total inspection visits recorded, by outcome (done, defect, not_home, refused)\n# TYPE gateway_campaign_outcomes_total counter");
        for outcome in ["done", "defect", "not_home", "refused"] {
            let count = inner.outcomes.get(outcome).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "gateway_campaign_outcomes_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        for (name, help, value) in [
            ("gateway_campaigns_created_total", "inspection campaigns planned", inner.created),
            ("gateway_campaign_inspections_planned_total", "inspections given a technician and a day when their campaign was planned", inner.planned),
            ("gateway_campaign_inspections_unscheduled_total", "inspections left without a day when their campaign was planned (no team, or no room in the window)", inner.unscheduled),
            ("gateway_campaign_dispatch_failures_total", "inspection orders routing found no team for (they wait, created, for an operator)", inner.dispatch_failures),
            ("gateway_campaign_retries_total", "visits planned again on a later day because nobody was at home", inner.retries),
            ("gateway_campaign_retries_unscheduled_total", "not-at-home visits for which no later day had room (the inspection waits for an operator)", inner.retries_unscheduled),
            ("gateway_campaign_findings_total", "repair orders opened by an inspection's finding", inner.findings),
            ("gateway_campaign_failures_total", "campaigns or visits that could not be stored (the store failed); nothing was written", inner.failures),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::CampaignConfig;
    use super::*;

    #[test]
    fn the_config_is_checked_and_the_figures_render() {
        assert_eq!(CampaignConfig::default().validate(), Ok(()));
        let bad = CampaignConfig {
            max_tries: 0,
            ..CampaignConfig::default()
        };
        assert_eq!(
            bad.validate().expect_err("invalid").0,
            "campaigns.max_tries"
        );
        let figures = CampaignFigures::default();
        figures.created(3, 1, 1);
        figures.outcome(Outcome::NotHome);
        figures.retry(true);
        let mut text = String::new();
        figures.render(&mut text);
        assert!(text.contains("gateway_campaign_outcomes_total{outcome=\"not_home\"} 1\n"));
        assert!(text.contains("gateway_campaign_inspections_planned_total 3\n"));
        assert!(text.contains("gateway_campaign_retries_total 1\n"));
        assert_eq!(figures.outcomes("not_home"), 1);
    }
}
