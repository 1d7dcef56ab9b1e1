//! Daily, weekly and monthly reports (日报/周报/月报) over the orders created in a period (CST),
//! per township, team and vendor: requests by channel, response and resolution rates,
//! satisfaction, SLA compliance per stage with median and p90 times, the pre-emptive share,
//! parts and charges. Rendered as JSON, CSV and a printable HTML page.
//!
//! Definitions (the denominators exclude cancelled and merged orders):
//! - response rate: orders dispatched / requests;
//! - resolution rate: orders resolved (or further: callback done, closed) / requests;
//! - satisfaction: mean of callback scores 1-5; satisfied rate: share of callbacks scoring 4 or 5;
//! - SLA compliance of a stage: stages reached within their deadline / stages reached or overdue
//!   at the report's time (orders still within their deadline are not counted yet); each order
//!   is judged against the deadlines of its own SLA class (`repair`, `maintenance`, `utility`,
//!   `call`: [`super::sla::class_of`]), and `sla_by_class` gives the counts of each class
//!   against its own target;
//! - stage times (median, p90): from the start of the order's clocks (its creation, or the
//!   change of its SLA class);
//! - pre-emptive share: orders opened from telemetry before any complaint / requests.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::calendar::{civil_from_days, cst_midnight_ms, days_from_civil, weekday, DAY_MS};
use super::sla::{clock_start, ClassTally, SlaClass, SlaConfig, Stage};
use super::store::OrderRow;
use super::OrderState;
use crate::registry::SiteType;

/// The three report periods of the scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
}

impl Period {
    pub fn parse(value: &str) -> Option<Period> {
        match value {
            "daily" => Some(Period::Daily),
            "weekly" => Some(Period::Weekly),
            "monthly" => Some(Period::Monthly),
            _ => None,
        }
    }

    /// `[from, to)` in Unix ms of the period containing `date` (CST): the day, the ISO week
    /// (Monday to Sunday) or the calendar month.
    pub fn bounds(self, (year, month, day): (i32, u32, u32)) -> (i64, i64) {
        match self {
            Period::Daily => {
                let from = cst_midnight_ms(year, month, day);
                (from, from + DAY_MS)
            }
            Period::Weekly => {
                let monday = days_from_civil(year, month, day) - weekday(year, month, day);
                let (y, m, d) = civil_from_days(monday);
                let from = cst_midnight_ms(y, m, d);
                (from, from + 7 * DAY_MS)
            }
            Period::Monthly => {
                let from = cst_midnight_ms(year, month, 1);
                let (ny, nm) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                (from, cst_midnight_ms(ny, nm, 1))
            }
        }
    }
}

/// Median and 90th percentile of a stage's duration in minutes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, ToSchema)]
pub struct Durations {
    pub median_minutes: Option<f64>,
    pub p90_minutes: Option<f64>,
}

/// The figures of one group (the whole district, a township, a team or a vendor).
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ReportRow {
    /// Group key: `all`, a township id, a team id or a vendor id.
    pub key: String,
    pub requests: u64,
    /// Requests by source: `rule` (pre-emptive, from telemetry) or the intake channel.
    pub by_channel: BTreeMap<String, u64>,
    pub cancelled_or_merged: u64,
    pub responded: u64,
    pub response_rate: Option<f64>,
    pub resolved: u64,
    pub resolution_rate: Option<f64>,
    pub callbacks: u64,
    pub satisfaction_mean: Option<f64>,
    pub satisfied_rate: Option<f64>,
    pub dispatch_sla_rate: Option<f64>,
    pub on_site_sla_rate: Option<f64>,
    pub repaired_sla_rate: Option<f64>,
    pub dispatch_time: Durations,
    pub on_site_time: Durations,
    pub repaired_time: Durations,
    pub pre_emptive: u64,
    pub pre_emptive_rate: Option<f64>,
    /// Value of parts used, in fen.
    pub parts_cents: i64,
    /// What residents paid, in fen.
    pub resident_pays_cents: i64,
    /// Per SLA class (`repair`, `maintenance`, `utility`, `call`; every class present): its
    /// orders (not cancelled or merged) and, per stage, how many met the class's own deadline,
    /// were late, or are still running.
    pub sla_by_class: BTreeMap<String, ClassTally>,
}

/// A report.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Report {
    pub period: Period,
    /// First day of the period, `YYYY-MM-DD` (CST).
    pub from_date: String,
    pub from_ms: i64,
    pub to_ms: i64,
    /// The time SLA stages still running were judged at.
    pub generated_at_ms: i64,
    pub total: ReportRow,
    pub by_township: Vec<ReportRow>,
    pub by_team: Vec<ReportRow>,
    pub by_vendor: Vec<ReportRow>,
    /// By the site type of the order's household (`home`, `activity_room`, `clinic`, `school`,
    /// `greenhouse`; `none`: an order of no household, a village supply incident), the types
    /// with orders in the period only. Filled by the API ([`by_site_type`]); empty from
    /// [`build`] alone.
    pub by_site_type: Vec<ReportRow>,
    /// Pre-season inspection coverage (取暖季前巡检) of the campaigns whose window overlaps the
    /// period, as of `generated_at_ms`; empty when no campaign does.
    pub inspection_coverage: InspectionCoverage,
    /// The scheme's management figures ([`super::scheme`]): backlog, first-time fix, reopen and
    /// repeat-fault rates, requests by type, out-of-warranty funding, staffing, vendor
    /// assessment. Filled by the API; `None` from [`build`] alone.
    pub scheme: Option<super::scheme::SchemeFigures>,
    /// Parts and backup units ([`super::stock_report`]): the period's orders that met a
    /// stock-out and how long their repairs took against the others, low lines and loans now.
    /// Filled by the API; `None` from [`build`] alone.
    pub stock: Option<super::stock_report::StockFigures>,
}

/// Inspection coverage of one group (the district, a township or a vendor): units in scope of
/// the campaigns, how many were inspected (done or with a defect), the defects found, the
/// visits that ended without an inspection, and those still to come.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct CoverageRow {
    /// `all`, a township id or a vendor id.
    pub key: String,
    pub in_scope: u64,
    /// Done or defect.
    pub inspected: u64,
    pub defects: u64,
    /// Nobody at home on the last allowed visit.
    pub not_home: u64,
    pub refused: u64,
    /// Still to visit (planned or unscheduled).
    pub pending: u64,
    /// Of the pending, those without a day.
    pub unscheduled: u64,
    /// Of the pending, those visited before with nobody at home.
    pub retrying: u64,
    /// inspected / in scope.
    pub coverage_rate: Option<f64>,
}

impl CoverageRow {
    fn add(&mut self, status: super::campaigns::InspectionStatus, tries: u32) {
        use super::campaigns::InspectionStatus as S;
        self.in_scope += 1;
        match status {
            S::Done => self.inspected += 1,
            S::Defect => {
                self.inspected += 1;
                self.defects += 1;
            }
            S::NotHome => self.not_home += 1,
            S::Refused => self.refused += 1,
            S::Planned | S::Unscheduled => {
                self.pending += 1;
                if status == S::Unscheduled {
                    self.unscheduled += 1;
                }
                if tries > 0 {
                    self.retrying += 1;
                }
            }
        }
        self.coverage_rate = Some(self.inspected as f64 / self.in_scope as f64);
    }
}

/// Inspection coverage: the district, by township and by the units' vendor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct InspectionCoverage {
    pub total: CoverageRow,
    pub by_township: Vec<CoverageRow>,
    pub by_vendor: Vec<CoverageRow>,
}

/// The coverage of inspections given as (township, vendor, status, visits made).
pub fn coverage<'a>(
    inspections: impl IntoIterator<Item = (&'a str, &'a str, super::campaigns::InspectionStatus, u32)>,
) -> InspectionCoverage {
    let mut total = CoverageRow {
        key: "all".into(),
        ..CoverageRow::default()
    };
    let mut townships: BTreeMap<&str, CoverageRow> = BTreeMap::new();
    let mut vendors: BTreeMap<&str, CoverageRow> = BTreeMap::new();
    for (township, vendor, status, tries) in inspections {
        total.add(status, tries);
        townships.entry(township).or_default().add(status, tries);
        vendors.entry(vendor).or_default().add(status, tries);
    }
    let keyed = |map: BTreeMap<&str, CoverageRow>| {
        map.into_iter()
            .map(|(key, row)| CoverageRow {
                key: key.to_owned(),
                ..row
            })
            .collect()
    };
    InspectionCoverage {
        total,
        by_township: keyed(townships),
        by_vendor: keyed(vendors),
    }
}

#[derive(Default)]
struct Accumulator {
    row: ReportRow,
    satisfaction_sum: i64,
    satisfied: u64,
    sla: [(u64, u64); 3],
    times: [Vec<f64>; 3],
}

impl Accumulator {
    fn add(&mut self, order: &OrderRow, sla: &SlaConfig, now_ms: i64) {
        let row = &mut self.row;
        row.requests += 1;
        *row.by_channel.entry(order.source.clone()).or_default() += 1;
        if matches!(order.state, OrderState::Cancelled | OrderState::Merged) {
            row.cancelled_or_merged += 1;
            return;
        }
        if order.dispatched_at_ms.is_some() {
            row.responded += 1;
        }
        if matches!(
            order.state,
            OrderState::Resolved | OrderState::CallbackDone | OrderState::Closed
        ) {
            row.resolved += 1;
        }
        if let Some(score) = order.satisfaction {
            row.callbacks += 1;
            self.satisfaction_sum += score;
            if score >= 4 {
                self.satisfied += 1;
            }
        }
        if order.pre_emptive {
            row.pre_emptive += 1;
        }
        row.parts_cents += order.parts_cents;
        row.resident_pays_cents += order.resident_pays_cents;
        row.sla_by_class
            .entry(SlaClass::of(order).as_str().to_owned())
            .or_default()
            .add(sla, order, now_ms);
        let start = clock_start(order);
        for (index, stage) in Stage::ALL.into_iter().enumerate() {
            match sla.met(order, stage, now_ms) {
                Some(true) => {
                    self.sla[index].0 += 1;
                    self.sla[index].1 += 1;
                }
                Some(false) => self.sla[index].1 += 1,
                None => {}
            }
            if let Some(at) = stage.reached_at(order) {
                self.times[index].push(at.saturating_sub(start) as f64 / 60_000.0);
            }
        }
    }

    fn finish(mut self, key: String) -> ReportRow {
        let counted = self.row.requests - self.row.cancelled_or_merged;
        let rate = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        self.row.key = key;
        for class in SlaClass::ALL {
            self.row
                .sla_by_class
                .entry(class.as_str().to_owned())
                .or_default();
        }
        self.row.response_rate = rate(self.row.responded, counted);
        self.row.resolution_rate = rate(self.row.resolved, counted);
        self.row.pre_emptive_rate = rate(self.row.pre_emptive, counted);
        self.row.satisfaction_mean = (self.row.callbacks > 0)
            .then(|| self.satisfaction_sum as f64 / self.row.callbacks as f64);
        self.row.satisfied_rate = rate(self.satisfied, self.row.callbacks);
        self.row.dispatch_sla_rate = rate(self.sla[0].0, self.sla[0].1);
        self.row.on_site_sla_rate = rate(self.sla[1].0, self.sla[1].1);
        self.row.repaired_sla_rate = rate(self.sla[2].0, self.sla[2].1);
        let [dispatch, on_site, repaired] = self.times;
        self.row.dispatch_time = durations(dispatch);
        self.row.on_site_time = durations(on_site);
        self.row.repaired_time = durations(repaired);
        self.row
    }
}

fn durations(mut minutes: Vec<f64>) -> Durations {
    if minutes.is_empty() {
        return Durations::default();
    }
    minutes.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let index = ((minutes.len() as f64 - 1.0) * q).round() as usize;
        minutes.get(index).copied()
    };
    Durations {
        median_minutes: at(0.5),
        p90_minutes: at(0.9),
    }
}

/// Computes a report over `orders` (those created in the period) at time `now_ms`.
pub fn build(
    period: Period,
    date: (i32, u32, u32),
    orders: &[OrderRow],
    sla: &SlaConfig,
    now_ms: i64,
) -> Report {
    let (from_ms, to_ms) = period.bounds(date);
    let mut total = Accumulator::default();
    let mut townships: BTreeMap<String, Accumulator> = BTreeMap::new();
    let mut teams: BTreeMap<String, Accumulator> = BTreeMap::new();
    let mut vendors: BTreeMap<String, Accumulator> = BTreeMap::new();
    for order in orders
        .iter()
        .filter(|o| o.created_at_ms >= from_ms && o.created_at_ms < to_ms)
    {
        total.add(order, sla, now_ms);
        townships
            .entry(order.township.clone())
            .or_default()
            .add(order, sla, now_ms);
        teams
            .entry(order.team_id.clone().unwrap_or_else(|| "unassigned".into()))
            .or_default()
            .add(order, sla, now_ms);
        if let Some(vendor) = order
            .vendor_id
            .clone()
            .filter(|_| order.in_warranty == Some(true))
        {
            vendors.entry(vendor).or_default().add(order, sla, now_ms);
        }
    }
    let (fy, fm, fd) = super::calendar::cst_date(from_ms);
    Report {
        period,
        from_date: format!("{fy:04}-{fm:02}-{fd:02}"),
        from_ms,
        to_ms,
        generated_at_ms: now_ms,
        total: total.finish("all".into()),
        by_township: townships.into_iter().map(|(k, a)| a.finish(k)).collect(),
        by_team: teams.into_iter().map(|(k, a)| a.finish(k)).collect(),
        by_vendor: vendors.into_iter().map(|(k, a)| a.finish(k)).collect(),
        by_site_type: Vec::new(),
        inspection_coverage: InspectionCoverage::default(),
        scheme: None,
        stock: None,
    }
}

/// The rows of [`Report::by_site_type`]: the orders of `report`'s period (the same `orders`
/// [`build`] was given) grouped by their household's site type, judged at the report's time.
/// `sites` maps a household id to its site type; a household it does not name is a home.
pub fn by_site_type(
    report: &Report,
    orders: &[OrderRow],
    sites: &HashMap<String, SiteType>,
    sla: &SlaConfig,
) -> Vec<ReportRow> {
    let mut groups: BTreeMap<&'static str, Accumulator> = BTreeMap::new();
    for order in orders
        .iter()
        .filter(|o| o.created_at_ms >= report.from_ms && o.created_at_ms < report.to_ms)
    {
        let key = match &order.household_id {
            Some(household) => sites.get(household).copied().unwrap_or_default().as_str(),
            None => "none",
        };
        groups
            .entry(key)
            .or_default()
            .add(order, sla, report.generated_at_ms);
    }
    groups
        .into_iter()
        .map(|(key, a)| a.finish(key.to_owned()))
        .collect()
}

const CSV_HEADER: &str = "group,key,requests,rule,hotline_12345,centre_hotline,app,sms_wechat,walk_in,technician,responded,response_rate,resolved,resolution_rate,callbacks,satisfaction_mean,satisfied_rate,dispatch_sla_rate,on_site_sla_rate,repaired_sla_rate,dispatch_median_min,dispatch_p90_min,on_site_median_min,on_site_p90_min,repaired_median_min,repaired_p90_min,pre_emptive,pre_emptive_rate,parts_cny,resident_pays_cny";

/// The per-class columns appended to [`CSV_HEADER`]: for each class, its orders and the
/// compliance of each stage with the class's own deadline.
fn class_header() -> String {
    let mut header = String::new();
    for class in SlaClass::ALL {
        let class = class.as_str();
        let _ = write!(
            header,
            ",{class}_orders,{class}_dispatch_sla_rate,{class}_on_site_sla_rate,{class}_repaired_sla_rate"
        );
    }
    header
}

fn opt(value: Option<f64>) -> String {
    value.map(|v| format!("{v:.3}")).unwrap_or_default()
}

fn rows(report: &Report) -> impl Iterator<Item = (&'static str, &ReportRow)> {
    std::iter::once(("total", &report.total))
        .chain(report.by_township.iter().map(|r| ("township", r)))
        .chain(report.by_team.iter().map(|r| ("team", r)))
        .chain(report.by_vendor.iter().map(|r| ("vendor", r)))
        .chain(report.by_site_type.iter().map(|r| ("site_type", r)))
}

/// The report as CSV, one line per group.
pub fn to_csv(report: &Report) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push_str(&class_header());
    out.push('\n');
    for (group, r) in rows(report) {
        let channel = |c: &str| r.by_channel.get(c).copied().unwrap_or(0);
        let _ = writeln!(
            out,
            "{group},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{:.2},{:.2}",
            r.key,
            r.requests,
            channel("rule"),
            channel("hotline_12345"),
            channel("centre_hotline"),
            channel("app"),
            channel("sms_wechat"),
            channel("walk_in"),
            channel("technician"),
            r.responded,
            opt(r.response_rate),
            r.resolved,
            opt(r.resolution_rate),
            r.callbacks,
            opt(r.satisfaction_mean),
            opt(r.satisfied_rate),
            opt(r.dispatch_sla_rate),
            opt(r.on_site_sla_rate),
            opt(r.repaired_sla_rate),
            opt(r.dispatch_time.median_minutes),
            opt(r.dispatch_time.p90_minutes),
            opt(r.on_site_time.median_minutes),
            opt(r.on_site_time.p90_minutes),
            opt(r.repaired_time.median_minutes),
            opt(r.repaired_time.p90_minutes),
            r.pre_emptive,
            opt(r.pre_emptive_rate),
            r.parts_cents as f64 / 100.0,
            r.resident_pays_cents as f64 / 100.0,
        );
        // Replace the line end with the class columns and a new line end.
        out.pop();
        for class in SlaClass::ALL {
            let tally = r
                .sla_by_class
                .get(class.as_str())
                .copied()
                .unwrap_or_default();
            let _ = write!(
                out,
                ",{},{},{},{}",
                tally.orders,
                opt(tally.dispatch.rate),
                opt(tally.on_site.rate),
                opt(tally.repaired.rate)
            );
        }
        out.push('\n');
    }
    out
}

/// `text` safe inside HTML text and attribute values.
pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn percent(value: Option<f64>) -> String {
    value
        .map(|v| format!("{:.1} %", v * 100.0))
        .unwrap_or_else(|| "–".into())
}

/// The report as a printable HTML page (A4 landscape, no external assets).
pub fn to_html(report: &Report) -> String {
    let title = match report.period {
        Period::Daily => "日报 Daily report",
        Period::Weekly => "周报 Weekly report",
        Period::Monthly => "月报 Monthly report",
    };
    let mut html = format!(
        "<!doctype html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\"><title>{title} {}</title><style>\
         body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin-bottom:1.5em;font-size:12px}}\
         th,td{{border:1px solid #999;padding:3px 6px;text-align:right}}th:first-child,td:first-child{{text-align:left}}\
         thead{{background:#eee}}@media print{{@page{{size:A4 landscape}}}}</style></head><body>\
         <h1>延庆区农村清洁取暖运维 {title}</h1><p>Period from {} (CST); orders created in the period; generated at {} (Unix ms).</p>",
        escape(&report.from_date),
        escape(&report.from_date),
        report.generated_at_ms
    );
    html_groups(report, &mut html);
    html_sla_by_class(report, &mut html);
    html_inspection(report, &mut html);
    if let Some(scheme) = &report.scheme {
        super::scheme::to_html(scheme, &mut html);
    }
    if let Some(stock) = &report.stock {
        super::stock_report::to_html(stock, &mut html);
    }
    html.push_str("</body></html>\n");
    html
}

/// One table per grouping: the district, townships, teams, vendors and site types.
fn html_groups(report: &Report, html: &mut String) {
    for (heading, rows) in [
        ("全区 District", std::slice::from_ref(&report.total)),
        ("乡镇 By township", report.by_township.as_slice()),
        ("维修队 By team", report.by_team.as_slice()),
        ("厂家 By vendor (in warranty)", report.by_vendor.as_slice()),
        ("场所类型 By site type", report.by_site_type.as_slice()),
    ] {
        let _ = write!(
            html,
            "<h2>{heading}</h2><table><thead><tr><th>Group</th><th>Requests</th><th>Pre-emptive</th><th>Response</th>\
             <th>Resolution</th><th>Satisfied</th><th>Dispatch in time</th><th>On site in time</th><th>Repaired in time</th>\
             <th>Median dispatch (min)</th><th>p90 repaired (min)</th><th>Parts (CNY)</th><th>Residents paid (CNY)</th></tr></thead><tbody>"
        );
        for r in rows {
            let _ = write!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td></tr>",
                escape(&r.key),
                r.requests,
                percent(r.pre_emptive_rate),
                percent(r.response_rate),
                percent(r.resolution_rate),
                percent(r.satisfied_rate),
                percent(r.dispatch_sla_rate),
                percent(r.on_site_sla_rate),
                percent(r.repaired_sla_rate),
                opt(r.dispatch_time.median_minutes),
                opt(r.repaired_time.p90_minutes),
                r.parts_cents as f64 / 100.0,
                r.resident_pays_cents as f64 / 100.0,
            );
        }
        html.push_str("</tbody></table>");
    }
}

/// The district's SLA compliance per class, each against its own deadlines.
fn html_sla_by_class(report: &Report, html: &mut String) {
    let _ = write!(
        html,
        "<h2>按类别 SLA by class (district; each class against its own deadlines)</h2><table><thead><tr><th>Class</th>\
         <th>Orders</th><th>Dispatch met / late</th><th>Dispatch in time</th><th>On site met / late</th><th>On site in time</th>\
         <th>Repaired met / late</th><th>Repaired in time</th></tr></thead><tbody>"
    );
    for (class, tally) in &report.total.sla_by_class {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{} / {}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
            escape(class),
            tally.orders,
            tally.dispatch.met,
            tally.dispatch.late,
            percent(tally.dispatch.rate),
            tally.on_site.met,
            tally.on_site.late,
            percent(tally.on_site.rate),
            tally.repaired.met,
            tally.repaired.late,
            percent(tally.repaired.rate),
        );
    }
    html.push_str("</tbody></table>");
}

/// The pre-season inspection coverage (district, townships, vendors), when any unit is in its
/// scope.
fn html_inspection(report: &Report, html: &mut String) {
    let coverage = &report.inspection_coverage;
    if coverage.total.in_scope == 0 {
        return;
    }
    let _ = write!(
        html,
        "<h2>取暖季前巡检 Pre-season inspection coverage</h2><table><thead><tr><th>Group</th><th>In scope</th>\
         <th>Inspected</th><th>Coverage</th><th>Defects</th><th>Not at home</th><th>Refused</th><th>Pending</th></tr></thead><tbody>"
    );
    for row in std::iter::once(&coverage.total)
        .chain(&coverage.by_township)
        .chain(&coverage.by_vendor)
    {
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&row.key),
            row.in_scope,
            row.inspected,
            percent(row.coverage_rate),
            row.defects,
            row.not_home,
            row.refused,
            row.pending,
        );
    }
    html.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::calendar::cst_midnight_ms;

    const MIN: i64 = 60_000;

    fn order(id: i64, source: &str, created: i64) -> OrderRow {
        OrderRow {
            id,
            episode_id: None,
            device_id: format!("d{id}"),
            household_id: None,
            village_id: None,
            vendor_id: Some("aurora".into()),
            township: "yanqing".into(),
            category: "repair".into(),
            priority: "high".into(),
            source: source.into(),
            summary: String::new(),
            created_at_ms: created,
            state: OrderState::Created,
            pre_emptive: source == "rule",
            in_warranty: Some(true),
            team_id: Some("t1".into()),
            technician_id: None,
            dispatched_at_ms: None,
            accepted_at_ms: None,
            on_site_at_ms: None,
            resolved_at_ms: None,
            closed_at_ms: None,
            satisfaction: None,
            parts_cents: 0,
            resident_pays_cents: 0,
            misuse: false,
            sla_flags: 0,
            sla_from_ms: None,
            sla_class: crate::orders::sla::class_of("repair", "high", source),
        }
    }

    /// Four orders on 2026-12-01, checked by hand:
    /// 1 rule, dispatched at +2 min, on site +60, resolved +150, callback 5, closed;
    /// 2 rule, dispatched +12 (late), on site +130 (late), resolved +200, callback 3;
    /// 3 hotline, dispatched +5, still on the way at report time (+3 h): on-site overdue;
    /// 4 app, cancelled.
    #[test]
    fn a_daily_report_matches_the_hand_count() {
        let day = cst_midnight_ms(2026, 12, 1);
        let t0 = day + 8 * 60 * MIN;
        let mut o1 = order(1, "rule", t0);
        o1.state = OrderState::Closed;
        (o1.dispatched_at_ms, o1.on_site_at_ms, o1.resolved_at_ms) = (
            Some(t0 + 2 * MIN),
            Some(t0 + 60 * MIN),
            Some(t0 + 150 * MIN),
        );
        o1.satisfaction = Some(5);
        o1.parts_cents = 8_500;
        let mut o2 = order(2, "rule", t0);
        o2.state = OrderState::CallbackDone;
        (o2.dispatched_at_ms, o2.on_site_at_ms, o2.resolved_at_ms) = (
            Some(t0 + 12 * MIN),
            Some(t0 + 130 * MIN),
            Some(t0 + 200 * MIN),
        );
        o2.satisfaction = Some(3);
        o2.in_warranty = Some(false);
        o2.parts_cents = 4_500;
        o2.resident_pays_cents = 4_500;
        let mut o3 = order(3, "hotline_12345", t0);
        o3.state = OrderState::Accepted;
        o3.dispatched_at_ms = Some(t0 + 5 * MIN);
        let mut o4 = order(4, "app", t0);
        o4.state = OrderState::Cancelled;
        let outside = order(5, "rule", day + DAY_MS);
        let report = build(
            Period::Daily,
            (2026, 12, 1),
            &[o1, o2, o3, o4, outside],
            &SlaConfig::default(),
            t0 + 180 * MIN,
        );
        let r = &report.total;
        assert_eq!(r.requests, 4);
        assert_eq!(r.by_channel.get("rule"), Some(&2));
        assert_eq!(r.cancelled_or_merged, 1);
        assert_eq!((r.responded, r.response_rate), (3, Some(1.0)));
        assert_eq!((r.resolved, r.resolution_rate), (2, Some(2.0 / 3.0)));
        assert_eq!(
            (r.callbacks, r.satisfaction_mean, r.satisfied_rate),
            (2, Some(4.0), Some(0.5))
        );
        assert_eq!(
            r.dispatch_sla_rate,
            Some(2.0 / 3.0),
            "orders 1 and 3 in time, 2 late"
        );
        assert_eq!(
            r.on_site_sla_rate,
            Some(1.0 / 3.0),
            "1 in time; 2 late; 3 overdue at +3 h"
        );
        assert_eq!(
            r.repaired_sla_rate,
            Some(1.0),
            "1 and 2 within 4 h; 3 not due yet"
        );
        assert_eq!(r.dispatch_time.median_minutes, Some(5.0));
        assert_eq!((r.pre_emptive, r.pre_emptive_rate), (2, Some(2.0 / 3.0)));
        assert_eq!((r.parts_cents, r.resident_pays_cents), (13_000, 4_500));
        assert_eq!(
            report.by_vendor.len(),
            1,
            "only in-warranty orders count for the vendor"
        );
        assert_eq!(report.by_vendor[0].requests, 3);
        let csv = to_csv(&report);
        assert!(
            csv.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("total,all,4,2,1,0,1,0,0,0,3,1.000,")),
            "{csv}"
        );
        assert!(to_html(&report).contains("<td>yanqing</td><td>4</td>"));
    }

    #[test]
    fn orders_are_broken_down_by_their_households_site_type() {
        let day = cst_midnight_ms(2026, 12, 1);
        let t0 = day + 8 * 60 * MIN;
        let in_household = |id: i64, household: &str| {
            let mut o = order(id, "rule", t0);
            o.household_id = Some(household.into());
            o.dispatched_at_ms = Some(t0 + 3 * MIN);
            o
        };
        let clinic = in_household(1, "h-clinic");
        let greenhouse_a = in_household(2, "h-greenhouse");
        let mut greenhouse_b = in_household(3, "h-greenhouse");
        greenhouse_b.state = OrderState::Cancelled;
        let home = in_household(4, "h-home");
        let unknown = in_household(5, "h-not-in-the-map");
        // A village supply incident belongs to no household (not dispatched yet).
        let incident = order(6, "rule", t0);
        let outside = in_household(7, "h-clinic");
        let outside = OrderRow {
            created_at_ms: day + DAY_MS,
            ..outside
        };
        let orders = [
            clinic,
            greenhouse_a,
            greenhouse_b,
            home,
            unknown,
            incident,
            outside,
        ];
        let sla = SlaConfig::default();
        let mut report = build(Period::Daily, (2026, 12, 1), &orders, &sla, t0 + 60 * MIN);
        assert!(report.by_site_type.is_empty(), "filled by the caller");
        let sites = HashMap::from([
            ("h-clinic".to_owned(), SiteType::Clinic),
            ("h-greenhouse".to_owned(), SiteType::Greenhouse),
            ("h-home".to_owned(), SiteType::Home),
        ]);
        report.by_site_type = by_site_type(&report, &orders, &sites, &sla);
        let rows: Vec<(&str, u64, u64, u64)> = report
            .by_site_type
            .iter()
            .map(|r| {
                (
                    r.key.as_str(),
                    r.requests,
                    r.cancelled_or_merged,
                    r.responded,
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("clinic", 1, 0, 1),
                ("greenhouse", 2, 1, 1),
                ("home", 2, 0, 2),
                ("none", 1, 0, 0),
            ]
        );
        let total: u64 = report.by_site_type.iter().map(|r| r.requests).sum();
        assert_eq!(total, report.total.requests, "every order in one site type");
        assert_eq!(report.by_site_type[1].dispatch_sla_rate, Some(1.0));
        let csv = to_csv(&report);
        assert!(csv.contains("\nsite_type,greenhouse,2,2,"), "{csv}");
        assert!(to_html(&report).contains("<td>clinic</td><td>1</td>"));
    }

    #[test]
    fn inspection_coverage_counts_each_unit_once_by_township_and_vendor() {
        use crate::orders::campaigns::InspectionStatus as S;
        let figures = coverage([
            ("yongning", "aurora", S::Done, 1),
            ("yongning", "aurora", S::Defect, 1),
            ("yongning", "beifeng", S::Planned, 1),
            ("yongning", "aurora", S::NotHome, 3),
            ("sihai", "aurora", S::Refused, 1),
            ("sihai", "aurora", S::Unscheduled, 0),
        ]);
        let t = &figures.total;
        assert_eq!(
            (
                t.in_scope,
                t.inspected,
                t.defects,
                t.not_home,
                t.refused,
                t.pending
            ),
            (6, 2, 1, 1, 1, 2)
        );
        assert_eq!((t.unscheduled, t.retrying), (1, 1));
        assert_eq!(t.coverage_rate, Some(2.0 / 6.0));
        let keys: Vec<(&str, u64, u64)> = figures
            .by_township
            .iter()
            .map(|r| (r.key.as_str(), r.in_scope, r.inspected))
            .collect();
        assert_eq!(keys, vec![("sihai", 2, 0), ("yongning", 4, 2)]);
        assert_eq!(figures.by_vendor[1].key, "beifeng");
        assert_eq!(coverage([]).total.coverage_rate, None);
    }

    #[test]
    fn periods_cut_at_cst_midnight_weeks_on_monday_months_on_the_first() {
        let (from, to) = Period::Weekly.bounds((2026, 12, 3));
        assert_eq!(from, cst_midnight_ms(2026, 11, 30));
        assert_eq!(to - from, 7 * DAY_MS);
        let (from, to) = Period::Monthly.bounds((2026, 12, 15));
        assert_eq!(
            (from, to),
            (cst_midnight_ms(2026, 12, 1), cst_midnight_ms(2027, 1, 1))
        );
    }
}
