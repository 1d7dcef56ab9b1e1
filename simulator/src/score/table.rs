//! The card as a readable table: the headline figures, the fault table by kind, class and
//! group, the detector table, and the order, trap, complaint and supply lines.

use std::fmt::Write as _;

use super::card::ScoreCard;
use super::tally::FaultTally;
use crate::mix::FaultClass;

fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| "-".to_owned(), |s| format!("{:.1} %", s * 100.0))
}

fn minutes(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |m| format!("{m:.0} min"))
}

fn class_name(class: FaultClass) -> String {
    serde_json::to_value(class)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// One line of the fault table.
fn tally_line(out: &mut String, name: &str, class: &str, code: &str, t: &FaultTally) {
    let (c, u) = (&t.complained, &t.uncomplained);
    let _ = writeln!(
        out,
        "  {:<18} {:<13} {:>4} {:>8} | {:>10} {:>11} {:>5} {:>6} {:>8} {:>7} | {:>12} {:>8} {:>10}",
        name,
        class,
        code,
        t.injected,
        c.faults,
        c.pre_emptive,
        c.late,
        c.missed,
        percent(c.pre_emptive_rate),
        minutes(c.lead_times.median_min),
        u.faults,
        u.detected,
        u.undetected
    );
}

impl ScoreCard {
    /// The card as a readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        self.headline(&mut out);
        let _ = writeln!(out);
        self.fault_table(&mut out);
        let _ = writeln!(out);
        self.detector_table(&mut out);
        let _ = writeln!(out);
        self.counts(&mut out);
        out
    }

    /// The pre-emptive rate, lead times, uncomplained faults, false orders, supply incidents
    /// and SLA.
    fn headline(&self, out: &mut String) {
        let h = &self.heating;
        let (c, u) = (&h.complained, &h.uncomplained);
        let _ = writeln!(out, "未诉先办 score card");
        let _ = writeln!(
            out,
            "  pre-emptive rate   {:>8}   ({} of {} heating faults that led to a complaint had a rule order before the first call; misses: {} late, {} missed)",
            percent(c.pre_emptive_rate),
            c.pre_emptive,
            c.faults,
            c.late,
            c.missed
        );
        let _ = writeln!(
            out,
            "  lead time          median {}, p10 {} (first complaint - rule order, over {} pre-emptive faults)",
            minutes(c.lead_times.median_min),
            minutes(c.lead_times.p10_min),
            c.lead_times.count
        );
        let _ = writeln!(
            out,
            "  nobody called      {} heating faults, not in the rate: {} detected (median lead {} against when the resident would have noticed, over {}), {} undetected ({} of them would have been noticed)",
            u.faults,
            u.detected,
            minutes(u.lead_times.median_min),
            u.lead_times.count,
            u.undetected,
            u.undetected_noticeable
        );
        let _ = writeln!(
            out,
            "  false orders       {:>8}   ({} of {} rule orders)",
            percent(self.orders.false_order_share),
            self.orders.false_orders,
            self.orders.rule
        );
        let _ = writeln!(
            out,
            "  supply incidents   {} of {} supply faults raised as exactly one incident",
            self.supply.one_incident, self.supply.faults
        );
        let _ = writeln!(
            out,
            "  SLA (technician model, {} visits): dispatch <=10 min {}, on site <=2 h {}, repaired <=4 h {}",
            self.sla.visits,
            percent(self.sla.dispatch_share),
            percent(self.sla.on_site_share),
            percent(self.sla.repaired_share)
        );
    }

    /// One line per fault kind, per class and per group, and the communication faults.
    fn fault_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:<18} {:<13} {:>4} {:>8} | {:>10} {:>11} {:>5} {:>6} {:>8} {:>7} | {:>12} {:>8} {:>10}",
            "fault",
            "class",
            "code",
            "injected",
            "complained",
            "pre-emptive",
            "late",
            "missed",
            "rate",
            "lead",
            "uncomplained",
            "detected",
            "undetected"
        );
        for row in &self.by_kind {
            let code = if row.raises_code { "yes" } else { "no" };
            tally_line(
                out,
                row.kind.as_str(),
                &class_name(row.class),
                code,
                &row.tally,
            );
        }
        for row in &self.by_class {
            tally_line(
                out,
                &format!("[{}]", class_name(row.class)),
                "",
                "",
                &row.tally,
            );
        }
        tally_line(out, "[coded]", "heating", "yes", &self.coded);
        tally_line(out, "[code-less]", "heating", "no", &self.code_less);
        tally_line(out, "[heating]", "", "", &self.heating);
        let _ = writeln!(
            out,
            "  communication: {} boxes offline, {} alerted, {} with an order; {} call tasks on them",
            self.communication.injected,
            self.communication.alerted,
            self.communication.ordered,
            self.orders.call_tasks_on_communication_faults
        );
    }

    /// One line per detector.
    fn detector_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:<24} {:>6} {:>10} {:>9} {:>10} {:>6} {:>10}",
            "detector", "opened", "attributed", "precision", "first det.", "false", "call tasks"
        );
        for row in &self.detectors {
            let _ = writeln!(
                out,
                "  {:<24} {:>6} {:>10} {:>9} {:>10} {:>6} {:>10}",
                row.rule_id,
                row.opened,
                row.attributed,
                percent(row.precision),
                row.first_detections,
                row.false_orders,
                row.call_tasks
            );
        }
    }

    /// Orders, false orders by cause, traps, complaints and supply incidents.
    fn counts(&self, out: &mut String) {
        let intake: u64 = self.orders.intake.values().sum();
        let _ = writeln!(
            out,
            "  orders: {} total = {} by rules + {} from complaints; rule orders: {} detections, {} duplicates, {} supply incidents, {} per-device orders during supply faults, {} call tasks, {} false",
            self.orders.total,
            self.orders.rule,
            intake,
            self.orders.detections,
            self.orders.duplicates,
            self.orders.supply_incidents,
            self.orders.per_device_supply_orders,
            self.orders.call_tasks,
            self.orders.false_orders
        );
        if !self.orders.false_by_cause.is_empty() {
            let causes: Vec<String> = self
                .orders
                .false_by_cause
                .iter()
                .map(|(cause, n)| format!("{cause} {n}"))
                .collect();
            let _ = writeln!(out, "  false orders by cause: {}", causes.join(", "));
        }
        let traps: Vec<String> = self.traps.iter().map(|(k, n)| format!("{k} {n}")).collect();
        let _ = writeln!(out, "  traps sprung: {}", traps.join(", "));
        let _ = writeln!(
            out,
            "  complaints: {} ({} without an injected fault); posted {}, failed {}; gateway linked {} to an open order, marked {} pre-emptive",
            self.complaints.total,
            self.complaints.without_fault,
            self.complaints.posted,
            self.complaints.failed,
            self.complaints.gateway_linked,
            self.complaints.gateway_pre_emptive
        );
        if let Some(error) = &self.complaints.first_error {
            let _ = writeln!(out, "  first complaint error: {error}");
        }
        for row in &self.supply.rows {
            let _ = writeln!(
                out,
                "  {} {} ({} households): {} incidents, {} per-device orders",
                row.kind.as_str(),
                row.village,
                row.households,
                row.incidents,
                row.per_device_orders
            );
        }
    }
}
