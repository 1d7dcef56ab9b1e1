//! The scheme's management figures in every report ([`SchemeFigures`], `scheme` in the JSON,
//! a section of the HTML): what the district centre answers for before, during and after the
//! heating season beside the per-group rates of [`super::reports`].
//!
//! Definitions:
//! - season phase of the period's first day: `before` (1 October to 14 November: pre-season
//!   inspection), `during` (15 November to 15 March, the heating season), `after` (16 March to
//!   30 April: post-season assessment), `off` otherwise;
//! - backlog carried over: orders created before the period that had not ended (closed,
//!   cancelled or merged) at its start; of those, still open at its end (or now, for a period
//!   not over);
//! - first-time fix: a resolved order (resolved, callback done or closed) with at most one
//!   technician arrival and never reopened, over resolved orders; reopen rate: resolved orders
//!   reopened at least once (the callback found the heating still not working) over resolved;
//! - repeat fault: a fault order on a device that had another fault order in the 30 days
//!   before it (visits, calls and utility incidents are not faults);
//! - requests by type: every request received (repair, policy, charge, conversion, complaint
//!   about the service, other) and how many were responded to (answered, or an order opened
//!   or joined): the scheme asks 100 % for each type;
//! - out-of-warranty households (a device past its 5-year warranty on the period's last day)
//!   and the city's funding of 100 CNY per such household per year, prorated to the period,
//!   beside the parts value of the period's out-of-warranty repairs;
//! - staffing: households against technicians per township (a team covering several townships
//!   counts an equal share of each technician in each), the scheme's at least 1 per 500;
//! - vendor assessment: each warranty vendor's score, 0 to 100, from the figures the scheme
//!   names: response (share of on-site deadlines met, 25 %), resolution (share of repair
//!   deadlines met, 25 %), satisfaction (callback mean over 5, 30 %) and repeat faults (one
//!   minus the repeat-fault share, 20 %); a component without data leaves its weight to the
//!   others; ranked by score (ties by vendor id). The weights are the centre's judgement,
//!   stated here so a vendor can check its score.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use utoipa::ToSchema;

use super::calendar::cst_date;
use super::reports::{escape, ReportRow};
use super::store::{EarlierOrder, OrderRow, OrderVisits, TownshipStaff};
use super::OrderState;

/// The city's funding per out-of-warranty household per year, in fen.
pub const OUT_OF_WARRANTY_FUNDING_CENTS_PER_YEAR: i64 = 10_000;

/// Households one technician may answer for at most (the scheme: at least 1 per 500); the
/// demo registry is staffed by it too.
pub const HOUSEHOLDS_PER_TECHNICIAN: usize = 500;

const YEAR_MS: f64 = 365.0 * 86_400_000.0;

/// Requests of one type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct KindTally {
    pub received: u64,
    pub responded: u64,
    pub response_rate: Option<f64>,
}

/// Out-of-warranty households and their funding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct OutOfWarranty {
    pub households: u64,
    /// 100 CNY per household per year, in fen.
    pub funding_cents_per_year: i64,
    /// The same prorated to the period's length.
    pub funding_cents_in_period: i64,
    /// Parts value of the period's out-of-warranty repairs, in fen.
    pub parts_cents_in_period: i64,
    /// Of that, paid by residents (they pay the parts), in fen.
    pub resident_pays_cents_in_period: i64,
}

/// One township's staffing.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Staffing {
    pub township: String,
    pub households: u64,
    pub technicians: f64,
    pub households_per_technician: Option<f64>,
    /// At least one technician per 500 households (a township without households meets it).
    pub meets: bool,
}

/// One vendor's assessment.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct VendorScore {
    pub vendor: String,
    pub orders: u64,
    pub on_site_sla_rate: Option<f64>,
    pub repaired_sla_rate: Option<f64>,
    pub satisfaction_mean: Option<f64>,
    pub repeat_fault_rate: Option<f64>,
    /// 0 to 100; `None` without any figure.
    pub score: Option<f64>,
    /// 1 is best; vendors without a score come last, unranked.
    pub rank: Option<u32>,
}

/// The scheme's figures of a report. See the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct SchemeFigures {
    pub season_phase: String,
    pub backlog_carried_over: u64,
    pub backlog_still_open: u64,
    pub resolved: u64,
    pub first_time_fixes: u64,
    pub first_time_fix_rate: Option<f64>,
    pub reopened: u64,
    pub reopen_rate: Option<f64>,
    pub fault_orders: u64,
    pub repeat_faults: u64,
    pub repeat_fault_rate: Option<f64>,
    pub requests_by_kind: BTreeMap<String, KindTally>,
    /// `None` for a team's report (the registry's figures are the centre's).
    pub out_of_warranty: Option<OutOfWarranty>,
    pub staffing: Vec<Staffing>,
    pub vendor_assessment: Vec<VendorScore>,
}

/// What the figures are built from (already limited to the caller's scope).
pub struct SchemeInputs<'a> {
    pub from_ms: i64,
    pub to_ms: i64,
    pub now_ms: i64,
    /// The period's orders.
    pub orders: &'a [OrderRow],
    pub visits: &'a BTreeMap<i64, OrderVisits>,
    /// Orders created before the period and open at its start.
    pub earlier_open: &'a [EarlierOrder],
    /// (township, kind, received, responded).
    pub requests: &'a [(String, String, u64, u64)],
    /// Out-of-warranty households by township; `None`: not in this caller's scope.
    pub out_of_warranty: Option<&'a BTreeMap<String, u64>>,
    pub staff: &'a [TownshipStaff],
    /// The report's vendor rows.
    pub vendors: &'a [ReportRow],
}

fn rate(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The season phase of a day.
pub fn season_phase(ms: i64) -> &'static str {
    let (_, month, day) = cst_date(ms);
    match (month, day) {
        (10, _) | (11, 1..=14) => "before",
        (11, _) | (12, _) | (1, _) | (2, _) | (3, 1..=15) => "during",
        (3, _) | (4, _) => "after",
        _ => "off",
    }
}

fn resolved(order: &OrderRow) -> bool {
    matches!(
        order.state,
        OrderState::Resolved | OrderState::CallbackDone | OrderState::Closed
    )
}

/// The figures. See the module documentation.
pub fn build(inputs: &SchemeInputs<'_>) -> SchemeFigures {
    let end = inputs.to_ms.min(inputs.now_ms);
    let backlog_still_open = inputs
        .earlier_open
        .iter()
        .filter(|o| o.ended_at_ms.is_none_or(|ended| ended >= end))
        .count() as u64;
    let repairs = RepairCounts::of(inputs.orders, inputs.visits);
    SchemeFigures {
        season_phase: season_phase(inputs.from_ms).to_owned(),
        backlog_carried_over: inputs.earlier_open.len() as u64,
        backlog_still_open,
        resolved: repairs.resolved,
        first_time_fixes: repairs.first,
        first_time_fix_rate: rate(repairs.first, repairs.resolved),
        reopened: repairs.reopened,
        reopen_rate: rate(repairs.reopened, repairs.resolved),
        fault_orders: repairs.faults,
        repeat_faults: repairs.repeats,
        repeat_fault_rate: rate(repairs.repeats, repairs.faults),
        requests_by_kind: requests_by_kind(inputs.requests),
        out_of_warranty: out_of_warranty(inputs),
        staffing: staffing(inputs.staff),
        vendor_assessment: assess(inputs.vendors, inputs.orders, inputs.visits),
    }
}

/// The period's orders (cancelled and merged ones aside) counted for the repair figures.
#[derive(Debug, Default)]
struct RepairCounts {
    resolved: u64,
    /// Resolved at the first visit, never reopened.
    first: u64,
    reopened: u64,
    faults: u64,
    /// Faults with another fault order on the same device in the 30 days before.
    repeats: u64,
}

impl RepairCounts {
    fn of(orders: &[OrderRow], visits: &BTreeMap<i64, OrderVisits>) -> RepairCounts {
        let mut counts = RepairCounts::default();
        for order in orders {
            if matches!(order.state, OrderState::Cancelled | OrderState::Merged) {
                continue;
            }
            let visits = visits.get(&order.id).copied().unwrap_or_default();
            if resolved(order) {
                counts.resolved += 1;
                if visits.arrivals <= 1 && visits.reopened == 0 {
                    counts.first += 1;
                }
                if visits.reopened > 0 {
                    counts.reopened += 1;
                }
            }
            if !super::store::is_not_a_fault(&order.category) {
                counts.faults += 1;
                if visits.repeat {
                    counts.repeats += 1;
                }
            }
        }
        counts
    }
}

/// Requests received and responded to per kind, with the response rate.
fn requests_by_kind(requests: &[(String, String, u64, u64)]) -> BTreeMap<String, KindTally> {
    let mut by_kind: BTreeMap<String, KindTally> = BTreeMap::new();
    for (_, kind, received, responded) in requests {
        let tally = by_kind.entry(kind.clone()).or_default();
        tally.received += received;
        tally.responded += responded;
    }
    for tally in by_kind.values_mut() {
        tally.response_rate = rate(tally.responded, tally.received);
    }
    by_kind
}

/// The out-of-warranty funding for the period against what its repairs cost, when the caller
/// may see it.
fn out_of_warranty(inputs: &SchemeInputs<'_>) -> Option<OutOfWarranty> {
    inputs.out_of_warranty.map(|by_township| {
        let households: u64 = by_township.values().sum();
        let per_year = households as i64 * OUT_OF_WARRANTY_FUNDING_CENTS_PER_YEAR;
        let share = (inputs.to_ms - inputs.from_ms) as f64 / YEAR_MS;
        let oow = inputs
            .orders
            .iter()
            .filter(|o| o.in_warranty == Some(false))
            .filter(|o| !matches!(o.state, OrderState::Cancelled | OrderState::Merged));
        let (parts, pays) = oow.fold((0, 0), |(p, r), o| {
            (p + o.parts_cents, r + o.resident_pays_cents)
        });
        OutOfWarranty {
            households,
            funding_cents_per_year: per_year,
            funding_cents_in_period: (per_year as f64 * share).round() as i64,
            parts_cents_in_period: parts,
            resident_pays_cents_in_period: pays,
        }
    })
}

/// Households per technician in each township, against the scheme's ratio.
fn staffing(staff: &[TownshipStaff]) -> Vec<Staffing> {
    staff
        .iter()
        .map(|s| {
            let per = (s.technicians > 0.0).then(|| s.households as f64 / s.technicians);
            Staffing {
                township: s.township.clone(),
                households: s.households,
                technicians: (s.technicians * 100.0).round() / 100.0,
                households_per_technician: per.map(|p| p.round()),
                meets: s.households == 0
                    || per.is_some_and(|p| p <= HOUSEHOLDS_PER_TECHNICIAN as f64),
            }
        })
        .collect()
}

/// The vendors' scores and ranks.
fn assess(
    vendors: &[ReportRow],
    orders: &[OrderRow],
    visits: &BTreeMap<i64, OrderVisits>,
) -> Vec<VendorScore> {
    let mut scores: Vec<VendorScore> = vendors
        .iter()
        .map(|row| {
            let theirs = orders.iter().filter(|o| {
                o.in_warranty == Some(true)
                    && o.vendor_id.as_deref() == Some(row.key.as_str())
                    && !matches!(o.state, OrderState::Cancelled | OrderState::Merged)
                    && !super::store::is_not_a_fault(&o.category)
            });
            let (faults, repeats) = theirs.fold((0u64, 0u64), |(f, r), o| {
                let repeat = visits.get(&o.id).is_some_and(|v| v.repeat);
                (f + 1, r + u64::from(repeat))
            });
            let repeat_fault_rate = rate(repeats, faults);
            let parts = [
                (row.on_site_sla_rate, 0.25),
                (row.repaired_sla_rate, 0.25),
                (row.satisfaction_mean.map(|m| m / 5.0), 0.30),
                (repeat_fault_rate.map(|r| 1.0 - r), 0.20),
            ];
            let weight: f64 = parts
                .iter()
                .filter(|(v, _)| v.is_some())
                .map(|(_, w)| w)
                .sum();
            let score = (weight > 0.0).then(|| {
                let sum: f64 = parts.iter().filter_map(|(v, w)| v.map(|v| v * w)).sum();
                (sum / weight * 1000.0).round() / 10.0
            });
            VendorScore {
                vendor: row.key.clone(),
                orders: row.requests - row.cancelled_or_merged,
                on_site_sla_rate: row.on_site_sla_rate,
                repaired_sla_rate: row.repaired_sla_rate,
                satisfaction_mean: row.satisfaction_mean,
                repeat_fault_rate,
                score,
                rank: None,
            }
        })
        .collect();
    scores.sort_by(|a, b| {
        b.score
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.score.unwrap_or(f64::NEG_INFINITY))
            .then_with(|| a.vendor.cmp(&b.vendor))
    });
    let mut rank = 0;
    for score in &mut scores {
        if score.score.is_some() {
            rank += 1;
            score.rank = Some(rank);
        }
    }
    scores
}

fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{:.1} %", v * 100.0))
}

fn cny(cents: i64) -> String {
    format!("{:.2}", cents as f64 / 100.0)
}

/// The figures as a section of the printable HTML report.
pub fn to_html(figures: &SchemeFigures, html: &mut String) {
    let _ = write!(
        html,
        "<h2>考核 The scheme's figures</h2><table><tbody>\
         <tr><th>Season phase</th><td>{}</td></tr>\
         <tr><th>Backlog carried over / still open</th><td>{} / {}</td></tr>\
         <tr><th>First-time fix</th><td>{} of {} ({})</td></tr>\
         <tr><th>Reopened</th><td>{} ({})</td></tr>\
         <tr><th>Repeat faults (30 days)</th><td>{} of {} ({})</td></tr>",
        escape(&figures.season_phase),
        figures.backlog_carried_over,
        figures.backlog_still_open,
        figures.first_time_fixes,
        figures.resolved,
        percent(figures.first_time_fix_rate),
        figures.reopened,
        percent(figures.reopen_rate),
        figures.repeat_faults,
        figures.fault_orders,
        percent(figures.repeat_fault_rate),
    );
    if let Some(oow) = &figures.out_of_warranty {
        let _ = write!(
            html,
            "<tr><th>Out-of-warranty households</th><td>{} (funding {} CNY a year, {} CNY in the period; parts {} CNY, paid by residents {} CNY)</td></tr>",
            oow.households,
            cny(oow.funding_cents_per_year),
            cny(oow.funding_cents_in_period),
            cny(oow.parts_cents_in_period),
            cny(oow.resident_pays_cents_in_period),
        );
    }
    html.push_str("</tbody></table><h3>Requests by type</h3><table><thead><tr><th>Type</th><th>Received</th><th>Responded</th><th>Rate</th></tr></thead><tbody>");
    for (kind, tally) in &figures.requests_by_kind {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(kind),
            tally.received,
            tally.responded,
            percent(tally.response_rate)
        );
    }
    html.push_str("</tbody></table><h3>Staffing (at least 1 technician per 500 households)</h3><table><thead><tr><th>Township</th><th>Households</th><th>Technicians</th><th>Households per technician</th><th>Meets</th></tr></thead><tbody>");
    for s in &figures.staffing {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.township),
            s.households,
            s.technicians,
            s.households_per_technician
                .map_or_else(|| "–".to_owned(), |p| format!("{p:.0}")),
            if s.meets { "yes" } else { "NO" }
        );
    }
    html.push_str("</tbody></table><h3>Vendor assessment</h3><table><thead><tr><th>Rank</th><th>Vendor</th><th>Orders</th><th>On site in time</th><th>Repaired in time</th><th>Satisfaction</th><th>Repeat faults</th><th>Score</th></tr></thead><tbody>");
    for v in &figures.vendor_assessment {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            v.rank.map_or_else(|| "–".to_owned(), |r| r.to_string()),
            escape(&v.vendor),
            v.orders,
            percent(v.on_site_sla_rate),
            percent(v.repaired_sla_rate),
            v.satisfaction_mean
                .map_or_else(|| "–".to_owned(), |m| format!("{m:.2}")),
            percent(v.repeat_fault_rate),
            v.score.map_or_else(|| "–".to_owned(), |s| format!("{s:.1}")),
        );
    }
    html.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::calendar::cst_midnight_ms;

    #[test]
    fn season_phases_follow_the_heating_season() {
        for ((m, d), phase) in [
            ((10, 1), "before"),
            ((11, 14), "before"),
            ((11, 15), "during"),
            ((1, 20), "during"),
            ((3, 15), "during"),
            ((3, 16), "after"),
            ((4, 30), "after"),
            ((5, 1), "off"),
            ((9, 30), "off"),
        ] {
            assert_eq!(season_phase(cst_midnight_ms(2026, m, d)), phase, "{m}-{d}");
        }
    }

    fn vendor_row(
        key: &str,
        on_site: Option<f64>,
        repaired: Option<f64>,
        satisfaction: Option<f64>,
    ) -> ReportRow {
        ReportRow {
            key: key.into(),
            requests: 4,
            on_site_sla_rate: on_site,
            repaired_sla_rate: repaired,
            satisfaction_mean: satisfaction,
            ..ReportRow::default()
        }
    }

    #[test]
    fn vendors_are_scored_from_their_figures_and_ranked() {
        let vendors = [
            vendor_row("a", Some(1.0), Some(1.0), Some(5.0)),
            vendor_row("b", Some(0.5), Some(0.5), Some(4.0)),
            vendor_row("c", None, None, None),
            // Only satisfaction known: its weight carries the score alone.
            vendor_row("d", None, None, Some(2.5)),
        ];
        let scores = assess(&vendors, &[], &BTreeMap::new());
        let by: BTreeMap<&str, &VendorScore> =
            scores.iter().map(|s| (s.vendor.as_str(), s)).collect();
        assert_eq!(by["a"].score, Some(100.0));
        // 0.25·0.5 + 0.25·0.5 + 0.3·0.8 = 0.49 over 0.8 of weight: 61.25, to one decimal.
        assert!(
            by["b"].score.is_some_and(|s| (s - 61.25).abs() <= 0.05),
            "{:?}",
            by["b"].score
        );
        assert_eq!(by["d"].score, Some(50.0));
        assert_eq!(by["c"].score, None);
        let ranks: Vec<(&str, Option<u32>)> =
            scores.iter().map(|s| (s.vendor.as_str(), s.rank)).collect();
        assert_eq!(
            ranks,
            [("a", Some(1)), ("b", Some(2)), ("d", Some(3)), ("c", None)]
        );
    }

    #[test]
    fn staffing_and_funding_follow_the_scheme() {
        let staff = [
            TownshipStaff {
                township: "a".into(),
                households: 1000,
                technicians: 2.0,
            },
            TownshipStaff {
                township: "b".into(),
                households: 1001,
                technicians: 2.0,
            },
            TownshipStaff {
                township: "c".into(),
                households: 10,
                technicians: 0.0,
            },
            TownshipStaff {
                township: "d".into(),
                households: 0,
                technicians: 0.0,
            },
        ];
        let oow = BTreeMap::from([("a".to_owned(), 30u64), ("b".to_owned(), 6)]);
        let from = cst_midnight_ms(2026, 12, 1);
        let figures = build(&SchemeInputs {
            from_ms: from,
            to_ms: from + 73 * 86_400_000,
            now_ms: from,
            orders: &[],
            visits: &BTreeMap::new(),
            earlier_open: &[],
            requests: &[],
            out_of_warranty: Some(&oow),
            staff: &staff,
            vendors: &[],
        });
        let meets: Vec<(&str, bool)> = figures
            .staffing
            .iter()
            .map(|s| (s.township.as_str(), s.meets))
            .collect();
        assert_eq!(
            meets,
            [("a", true), ("b", false), ("c", false), ("d", true)]
        );
        let oow = figures.out_of_warranty.expect("in scope");
        assert_eq!(oow.households, 36);
        assert_eq!(oow.funding_cents_per_year, 360_000);
        // 73 days are a fifth of the year.
        assert_eq!(oow.funding_cents_in_period, 72_000);
        assert_eq!(figures.season_phase, "during");
    }
}
