//! Inspection campaigns (取暖季前巡检, issue 21): an operator plans a campaign for a season window
//! over townships, villages, vendors or device kinds; every unit in scope gets one inspection
//! order (category [`INSPECTION_CATEGORY`], low priority, SLA class `maintenance`), routed like
//! a repair (vendor team in warranty, third party out of it) and given a day and a technician by
//! the day plan ([`plan`]): at most `per_technician_per_day` visits a technician a day, the units
//! in the order of their risk score (`prevention::risk`, highest first; the score's reasons go
//! on the inspection and its order). A technician or an operator records each visit with the
//! checklist of the unit's kind ([`checklist`]): done, not at home (another visit is planned on
//! a later day, up to `max_tries` visits), refused, or a defect, which opens a repair order
//! (category [`FINDING_CATEGORY`], routed as usual, linked both ways). Coverage (inspected / in
//! scope by township and vendor, defects) is each campaign's progress and a section of the
//! reports (`reports::InspectionCoverage`).
//!
//! Everything is in the store (`campaigns`, `inspections` tables; `store::campaigns`), written
//! in one transaction with the orders it opens or moves, so a campaign survives a restart and a
//! step retried with an `Idempotency-Key` is applied once. An inspection order's SLA clocks run
//! from its planned day (`orders.sla_from_ms`), so a unit planned for the campaign's third week
//! is not late in its first.

pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::idempotency::{Answered, IdempotencyKey, Once};
use super::reports::{coverage, CoverageRow};
use super::store::{CampaignRow, InspectionRow, NewOrder, OrderUpdate, Store};
use super::{dispatch, OrderNotice, OrderRow, OrderService, OrderState, RequestError};
use crate::auth::{Principal, Role};
use crate::prevention::risk::Reason;
use crate::prevention::UnitRisk;
use plan::{Booked, Crew, Unit};

/// The order category of an inspection.
pub const INSPECTION_CATEGORY: &str = "inspection";
/// The order category of the repair an inspection's finding opens.
pub const FINDING_CATEGORY: &str = "inspection_finding";
/// The source of inspection orders and of the repairs their findings open: the system's own
/// (`sla::SYSTEM_SOURCES`), so a low or normal one runs the `maintenance` clocks.
pub const INSPECTION_SOURCE: &str = "inspection";

/// Longest campaign name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most entries in each scope list.
pub const MAX_SCOPE_ENTRIES: usize = 200;
/// Longest id in a scope list or an answer's item.
pub const MAX_ID_CHARS: usize = 100;
/// Longest note on a visit, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;
/// Longest note on one checklist answer.
pub const MAX_ANSWER_NOTE_CHARS: usize = 500;
/// Largest measured value an answer may carry (bar, °C, ppm...), in magnitude.
pub const MAX_ANSWER_VALUE: f64 = 1e6;
/// Highest daily limit per technician a campaign may set.
pub const MAX_PER_DAY: u32 = 50;
/// Most visits per unit a campaign may allow.
pub const MAX_TRIES: u32 = 10;

/// The `[campaigns]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignConfig {
    /// Inspections a technician does at most per day, when the campaign does not set its own.
    #[serde(default = "default_per_technician_per_day")]
    pub per_technician_per_day: u32,
    /// Visits per unit at most (the first and the retries when nobody was at home), when the
    /// campaign does not set its own.
    #[serde(default = "default_max_tries")]
    pub max_tries: u32,
    /// Most units one campaign may cover.
    #[serde(default = "default_max_units")]
    pub max_units: usize,
    /// Longest campaign window, in days.
    #[serde(default = "default_max_window_days")]
    pub max_window_days: u32,
}

fn default_per_technician_per_day() -> u32 {
    6
}
fn default_max_tries() -> u32 {
    3
}
fn default_max_units() -> usize {
    20_000
}
fn default_max_window_days() -> u32 {
    120
}

impl Default for CampaignConfig {
    fn default() -> Self {
        Self {
            per_technician_per_day: default_per_technician_per_day(),
            max_tries: default_max_tries(),
            max_units: default_max_units(),
            max_window_days: default_max_window_days(),
        }
    }
}

impl CampaignConfig {
    /// Checks every field; the error names the field (`campaigns.…`) and what is wrong.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((format!("campaigns.{field}"), message));
        if !(1..=MAX_PER_DAY).contains(&self.per_technician_per_day) {
            return fail(
                "per_technician_per_day",
                format!("must be between 1 and {MAX_PER_DAY}"),
            );
        }
        if !(1..=MAX_TRIES).contains(&self.max_tries) {
            return fail("max_tries", format!("must be between 1 and {MAX_TRIES}"));
        }
        if !(1..=200_000).contains(&self.max_units) {
            return fail("max_units", "must be between 1 and 200000".into());
        }
        if !(1..=366).contains(&self.max_window_days) {
            return fail("max_window_days", "must be between 1 and 366".into());
        }
        Ok(())
    }
}

/// Which units a campaign covers: each non-empty list narrows it (a unit must match one entry
/// of every non-empty list); all empty: the whole district.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignScope {
    #[serde(default)]
    pub townships: Vec<String>,
    #[serde(default)]
    pub villages: Vec<String>,
    #[serde(default)]
    pub vendors: Vec<String>,
    /// `heat_pump`, `gas_boiler`.
    #[serde(default)]
    pub kinds: Vec<String>,
}

impl CampaignScope {
    /// Whether `unit` is in scope.
    pub fn includes(&self, unit: &UnitRisk) -> bool {
        let fits =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        fits(&self.townships, &unit.township)
            && fits(&self.villages, &unit.village_id)
            && fits(&self.vendors, &unit.vendor_id)
            && fits(&self.kinds, &unit.kind)
    }
}

/// Where an inspection stands.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum InspectionStatus {
    /// A technician and a day are set (after a not-at-home too: the next visit's day).
    Planned,
    /// No day: no team covers the unit, no technician had room in the window, or a retry
    /// found no day; an operator records it or plans it by hand.
    Unscheduled,
    /// Inspected, nothing found.
    Done,
    /// Inspected, a defect found: a repair order was opened.
    Defect,
    /// Nobody at home on the last allowed visit.
    NotHome,
    /// The resident refused the inspection.
    Refused,
}

impl InspectionStatus {
    pub const ALL: [InspectionStatus; 6] = [
        InspectionStatus::Planned,
        InspectionStatus::Unscheduled,
        InspectionStatus::Done,
        InspectionStatus::Defect,
        InspectionStatus::NotHome,
        InspectionStatus::Refused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InspectionStatus::Planned => "planned",
            InspectionStatus::Unscheduled => "unscheduled",
            InspectionStatus::Done => "done",
            InspectionStatus::Defect => "defect",
            InspectionStatus::NotHome => "not_home",
            InspectionStatus::Refused => "refused",
        }
    }

    pub fn parse(value: &str) -> Option<InspectionStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Still to visit.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            InspectionStatus::Planned | InspectionStatus::Unscheduled
        )
    }
}

/// What a visit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Inspected; every checklist item answered, none a fault.
    Done,
    /// Nobody at home: another visit on a later day, up to the campaign's `max_tries`.
    NotHome,
    /// The resident refused.
    Refused,
    /// Inspected; at least one item is a fault: a repair order is opened.
    Defect,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::NotHome => "not_home",
            Outcome::Refused => "refused",
            Outcome::Defect => "defect",
        }
    }
}

/// One checklist item's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum ItemResult {
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "fault")]
    Fault,
    /// Not applicable to this unit (e.g. no external gas regulator).
    #[serde(rename = "n_a")]
    NotApplicable,
}

/// The answer to one checklist item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Answer {
    /// The item's code (`filter`, `water_pressure`...).
    pub item: String,
    pub result: ItemResult,
    /// A measured value (a pressure in bar, a CO reading...), within ±1e6.
    #[serde(default)]
    pub value: Option<f64>,
    /// What was seen, at most 500 characters.
    #[serde(default)]
    pub note: Option<String>,
}

/// One item of a kind's checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ChecklistItem {
    pub code: String,
    pub zh: String,
    pub en: String,
}

const HEAT_PUMP: [(&str, &str, &str); 4] = [
    (
        "refrigerant_pressures",
        "制冷剂高低压",
        "refrigerant high and low pressures",
    ),
    ("filter", "水路 Y 型过滤器", "water-circuit Y-filter"),
    ("defrost_drain", "化霜排水", "defrost condensate drain"),
    ("insulation", "管路保温", "pipe insulation"),
];
const GAS_BOILER: [(&str, &str, &str); 4] = [
    ("water_pressure", "系统水压", "system water pressure"),
    ("flue", "烟道", "flue"),
    ("gas_tightness", "燃气管路密封", "gas tightness"),
    ("co_alarm", "一氧化碳报警器", "CO alarm"),
];

/// The checklist of a device kind: heat pump (refrigerant pressures, filter, defrost drain,
/// insulation) or gas boiler (water pressure, flue, gas tightness, CO alarm); empty for a kind
/// the registry does not have.
pub fn checklist(kind: &str) -> Vec<ChecklistItem> {
    let items: &[(&str, &str, &str)] = match kind {
        "heat_pump" => &HEAT_PUMP,
        "gas_boiler" => &GAS_BOILER,
        _ => &[],
    };
    items
        .iter()
        .map(|(code, zh, en)| ChecklistItem {
            code: (*code).to_owned(),
            zh: (*zh).to_owned(),
            en: (*en).to_owned(),
        })
        .collect()
}

/// The device kinds a campaign may name.
pub const KINDS: [&str; 2] = ["heat_pump", "gas_boiler"];

/// An operator's plan of a campaign.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    /// 1 to 100 characters, e.g. `2026 取暖季前巡检`.
    pub name: String,
    /// First day, `YYYY-MM-DD` (CST).
    pub start_date: String,
    /// Last day, `YYYY-MM-DD`, inclusive; not before today, at most `campaigns.max_window_days`
    /// after `start_date`.
    pub end_date: String,
    /// Township ids (at most 200; empty: every township).
    #[serde(default)]
    pub townships: Vec<String>,
    /// Village ids.
    #[serde(default)]
    pub villages: Vec<String>,
    /// Vendor ids.
    #[serde(default)]
    pub vendors: Vec<String>,
    /// Device kinds: `heat_pump`, `gas_boiler`.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Inspections per technician per day, 1 to 50 (default `campaigns.per_technician_per_day`).
    #[serde(default)]
    pub per_technician_per_day: Option<u32>,
    /// Visits per unit at most, 1 to 10 (default `campaigns.max_tries`).
    #[serde(default)]
    pub max_tries: Option<u32>,
}

/// A technician's or operator's record of a visit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisitReport {
    pub outcome: Outcome,
    /// The checklist of the unit's kind: for `done` every item (none `fault`), for `defect`
    /// at least one `fault`; none for `not_home` and `refused`.
    #[serde(default)]
    pub answers: Vec<Answer>,
    /// At most 2000 characters; a `refused` or `defect` should say what happened.
    #[serde(default)]
    pub note: String,
    /// The priority of the repair a `defect` opens: `normal` (default), `high` or `urgent`
    /// (a gas leak, a CO alarm that does not sound).
    #[serde(default)]
    pub repair_priority: Option<String>,
}

/// Inspection coverage and progress of one group: see `reports::CoverageRow`.
pub type Progress = CoverageRow;

/// A campaign with its progress.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CampaignView {
    pub id: i64,
    pub name: String,
    pub start_date: String,
    pub end_date: String,
    pub scope: CampaignScope,
    pub per_technician_per_day: u32,
    pub max_tries: u32,
    pub created_at_ms: i64,
    pub created_by: String,
    /// Over the inspections the caller may see.
    pub progress: Progress,
    pub by_township: Vec<Progress>,
    /// In-warranty and out-of-warranty units alike, by the unit's vendor.
    pub by_vendor: Vec<Progress>,
    /// Per device kind, the checklist the campaign was planned with.
    pub checklists: BTreeMap<String, Vec<ChecklistItem>>,
}

/// One unit's inspection.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct InspectionView {
    pub id: i64,
    pub campaign_id: i64,
    /// The inspection order.
    pub order_id: i64,
    pub device_id: String,
    pub household_id: String,
    pub village_id: String,
    pub township: String,
    pub vendor_id: String,
    pub kind: String,
    pub in_warranty: bool,
    /// The risk score when planned, and its reasons, largest first.
    pub score: u32,
    pub reasons: Vec<Reason>,
    /// 1 = the campaign's riskiest unit.
    pub rank: u32,
    pub team_id: Option<String>,
    pub technician_id: Option<String>,
    /// The day of the next visit (or of the last one), `YYYY-MM-DD`.
    pub planned_date: Option<String>,
    /// Visits made.
    pub tries: u32,
    pub status: InspectionStatus,
    pub answers: Vec<Answer>,
    pub note: String,
    /// The repair order the finding opened.
    pub repair_order_id: Option<i64>,
    pub completed_at_ms: Option<i64>,
    /// The checklist to fill in for this unit's kind.
    pub checklist: Vec<ChecklistItem>,
}

impl From<InspectionRow> for InspectionView {
    fn from(row: InspectionRow) -> Self {
        Self {
            checklist: checklist(&row.kind),
            id: row.id,
            campaign_id: row.campaign_id,
            order_id: row.order_id,
            device_id: row.device_id,
            household_id: row.household_id,
            village_id: row.village_id,
            township: row.township,
            vendor_id: row.vendor_id,
            kind: row.kind,
            in_warranty: row.in_warranty,
            score: row.score,
            reasons: row.reasons,
            rank: row.rank,
            team_id: row.team_id,
            technician_id: row.technician_id,
            planned_date: row.planned_date,
            tries: row.tries,
            status: row.status,
            answers: row.answers,
            note: row.note,
            repair_order_id: row.repair_order_id,
            completed_at_ms: row.completed_at_ms,
        }
    }
}

/// What a new campaign opened.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CampaignCreated {
    pub campaign: CampaignView,
    /// Inspections given a technician and a day.
    pub planned: usize,
    /// Inspections without a day (no team, or no room in the window).
    pub unscheduled: usize,
    /// Units in scope left out because another campaign's inspection of them is still open
    /// (at most 100 listed; `skipped_total` counts them all).
    pub skipped: Vec<String>,
    pub skipped_total: usize,
}

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

/// The day number (days since 1970-01-01) of a `YYYY-MM-DD` date.
fn day_of(date: &str) -> Option<i64> {
    let (y, m, d) = crate::registry::parse_date(date)?;
    Some(super::calendar::days_from_civil(y, m, d))
}

/// The `YYYY-MM-DD` of a day number.
fn date_of(day: i64) -> String {
    let (y, m, d) = super::calendar::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// CST midnight of a day number, Unix ms.
fn midnight_of(day: i64) -> i64 {
    let (y, m, d) = super::calendar::civil_from_days(day);
    super::calendar::cst_midnight_ms(y, m, d)
}

fn today(now_ms: i64) -> i64 {
    let (y, m, d) = super::calendar::cst_date(now_ms);
    super::calendar::days_from_civil(y, m, d)
}

fn invalid(field: &'static str, message: String) -> RequestError {
    RequestError::OutOfRange { field, message }
}

/// A plan checked: name, window as day numbers, scope and limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub name: String,
    pub start_day: i64,
    pub end_day: i64,
    pub scope: CampaignScope,
    pub per_day: u32,
    pub max_tries: u32,
}

/// Checks an operator's plan against the bounds and `config` at `now_ms`; the error names the
/// field. Pure (ids are checked against the registry by [`OrderService::create_campaign`]).
pub fn check(
    request: &NewCampaign,
    config: &CampaignConfig,
    now_ms: i64,
) -> Result<Checked, RequestError> {
    let name = request.name.trim();
    let length = name.chars().count();
    if length == 0 || length > MAX_NAME_CHARS {
        return Err(invalid(
            "name",
            format!("name: 1 to {MAX_NAME_CHARS} characters, got {length}"),
        ));
    }
    let start_day = day_of(&request.start_date).ok_or_else(|| {
        invalid(
            "start_date",
            format!("start_date {:?} is not YYYY-MM-DD", request.start_date),
        )
    })?;
    let end_day = day_of(&request.end_date).ok_or_else(|| {
        invalid(
            "end_date",
            format!("end_date {:?} is not YYYY-MM-DD", request.end_date),
        )
    })?;
    if end_day < start_day {
        return Err(invalid(
            "end_date",
            "end_date is before start_date".to_owned(),
        ));
    }
    if end_day - start_day + 1 > i64::from(config.max_window_days) {
        return Err(invalid(
            "end_date",
            format!(
                "the window is {} days; at most {} (campaigns.max_window_days)",
                end_day - start_day + 1,
                config.max_window_days
            ),
        ));
    }
    if end_day < today(now_ms) {
        return Err(invalid(
            "end_date",
            format!("end_date {} is in the past", request.end_date),
        ));
    }
    for (field, list) in [
        ("townships", &request.townships),
        ("villages", &request.villages),
        ("vendors", &request.vendors),
        ("kinds", &request.kinds),
    ] {
        if list.len() > MAX_SCOPE_ENTRIES {
            return Err(invalid(
                "scope",
                format!(
                    "{field}: at most {MAX_SCOPE_ENTRIES} entries, got {}",
                    list.len()
                ),
            ));
        }
        if let Some(bad) = list
            .iter()
            .find(|id| id.is_empty() || id.chars().count() > MAX_ID_CHARS)
        {
            return Err(invalid(
                "scope",
                format!(
                    "{field}: each entry 1 to {MAX_ID_CHARS} characters, got {} characters",
                    bad.chars().count()
                ),
            ));
        }
    }
    if let Some(kind) = request.kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
        return Err(invalid(
            "scope",
            format!("kinds: {kind:?} is not one of {}", KINDS.join(", ")),
        ));
    }
    let per_day = request
        .per_technician_per_day
        .unwrap_or(config.per_technician_per_day);
    if !(1..=MAX_PER_DAY).contains(&per_day) {
        return Err(invalid(
            "per_technician_per_day",
            format!("per_technician_per_day: 1 to {MAX_PER_DAY}, got {per_day}"),
        ));
    }
    let max_tries = request.max_tries.unwrap_or(config.max_tries);
    if !(1..=MAX_TRIES).contains(&max_tries) {
        return Err(invalid(
            "max_tries",
            format!("max_tries: 1 to {MAX_TRIES}, got {max_tries}"),
        ));
    }
    let dedup = |list: &[String]| {
        let mut list = list.to_vec();
        list.sort();
        list.dedup();
        list
    };
    Ok(Checked {
        name: name.to_owned(),
        start_day,
        end_day,
        scope: CampaignScope {
            townships: dedup(&request.townships),
            villages: dedup(&request.villages),
            vendors: dedup(&request.vendors),
            kinds: dedup(&request.kinds),
        },
        per_day,
        max_tries,
    })
}

/// Checks a visit's answers against the unit's checklist and the outcome; the error names the
/// field. Pure.
pub fn check_visit(kind: &str, report: &VisitReport) -> Result<(), RequestError> {
    let length = report.note.chars().count();
    if length > MAX_NOTE_CHARS {
        return Err(invalid(
            "note",
            format!("note: at most {MAX_NOTE_CHARS} characters, got {length}"),
        ));
    }
    let items = checklist(kind);
    if report.answers.len() > items.len().max(1) {
        return Err(invalid(
            "answers",
            format!(
                "answers: at most one per checklist item ({}), got {}",
                items.len(),
                report.answers.len()
            ),
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for answer in &report.answers {
        if !items.iter().any(|i| i.code == answer.item) {
            let codes: Vec<&str> = items.iter().map(|i| i.code.as_str()).collect();
            let shown: String = answer.item.chars().take(MAX_ID_CHARS).collect();
            return Err(invalid(
                "answers",
                format!(
                    "answers: {shown:?} is not an item of the {kind} checklist ({})",
                    codes.join(", ")
                ),
            ));
        }
        if seen.contains(&answer.item.as_str()) {
            return Err(invalid(
                "answers",
                format!("answers: {:?} is answered twice", answer.item),
            ));
        }
        seen.push(&answer.item);
        if let Some(value) = answer.value {
            if !value.is_finite() || value.abs() > MAX_ANSWER_VALUE {
                return Err(invalid(
                    "answers",
                    format!(
                        "answers: the value of {:?} must be a finite number within ±{MAX_ANSWER_VALUE}",
                        answer.item
                    ),
                ));
            }
        }
        let note = answer.note.as_deref().unwrap_or_default().chars().count();
        if note > MAX_ANSWER_NOTE_CHARS {
            return Err(invalid(
                "answers",
                format!(
                    "answers: the note of {:?}: at most {MAX_ANSWER_NOTE_CHARS} characters, got {note}",
                    answer.item
                ),
            ));
        }
    }
    let faults = report
        .answers
        .iter()
        .filter(|a| a.result == ItemResult::Fault)
        .count();
    match report.outcome {
        Outcome::Done => {
            if faults > 0 {
                return Err(invalid(
                    "outcome",
                    "outcome done with an item at fault: record a defect (it opens the repair)"
                        .to_owned(),
                ));
            }
            if seen.len() < items.len() {
                let missing: Vec<&str> = items
                    .iter()
                    .map(|i| i.code.as_str())
                    .filter(|c| !seen.contains(c))
                    .collect();
                return Err(invalid(
                    "answers",
                    format!(
                        "answers: an inspection done answers every item; missing {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
        Outcome::Defect => {
            if faults == 0 {
                return Err(invalid(
                    "answers",
                    "answers: a defect needs at least one item with result fault".to_owned(),
                ));
            }
        }
        Outcome::NotHome | Outcome::Refused => {
            if !report.answers.is_empty() {
                return Err(invalid(
                    "answers",
                    format!(
                        "answers: none for outcome {} (nothing was inspected)",
                        report.outcome.as_str()
                    ),
                ));
            }
        }
    }
    match report.repair_priority.as_deref() {
        None | Some("normal" | "high" | "urgent") => Ok(()),
        Some(other) => Err(invalid(
            "repair_priority",
            format!(
                "repair_priority {:?} is not normal, high or urgent",
                other.chars().take(MAX_ID_CHARS).collect::<String>()
            ),
        )),
    }
}

/// Whether `principal` may see `inspection`: operators and read-only tokens every one, a
/// township its own, a team its team's and a technician's token its own.
pub fn visible(principal: &Principal, inspection: &InspectionRow) -> bool {
    match principal.role {
        Role::Operator | Role::ReadOnly => true,
        Role::Township => principal.can_read_township(&inspection.township),
        Role::Team => {
            (principal.team.is_some() && principal.team == inspection.team_id)
                || (principal.technician.is_some()
                    && principal.technician == inspection.technician_id)
        }
    }
}

/// A campaign's view over the inspections the caller sees.
pub fn view(campaign: CampaignRow, inspections: &[InspectionRow]) -> CampaignView {
    let figures = coverage(
        inspections
            .iter()
            .map(|i| (i.township.as_str(), i.vendor_id.as_str(), i.status, i.tries)),
    );
    let checklists = campaign
        .checklists
        .keys()
        .map(|kind| {
            let codes = &campaign.checklists[kind];
            let items = checklist(kind)
                .into_iter()
                .filter(|i| codes.contains(&i.code))
                .collect();
            (kind.clone(), items)
        })
        .collect();
    CampaignView {
        id: campaign.id,
        name: campaign.name,
        start_date: campaign.start_date,
        end_date: campaign.end_date,
        scope: campaign.scope,
        per_technician_per_day: campaign.per_technician_per_day,
        max_tries: campaign.max_tries,
        created_at_ms: campaign.created_at_ms,
        created_by: campaign.created_by,
        progress: figures.total,
        by_township: figures.by_township,
        by_vendor: figures.by_vendor,
        checklists,
    }
}

/// What the service announces once a step is stored: notices and dispatched orders.
type Announce = (Vec<OrderNotice>, Vec<OrderRow>);

impl OrderService {
    /// Plans a campaign over `units` (every registered unit with its risk, highest first, from
    /// `prevention::sweep::assess`): checks the plan, opens one inspection order per unit in
    /// scope (units with an open inspection of another campaign are skipped), routes each by
    /// township, vendor and warranty, gives each a technician and a day ([`plan::plan`]) and
    /// stores the campaign, in one transaction.
    pub async fn create_campaign(
        &self,
        request: NewCampaign,
        units: Vec<UnitRisk>,
        config: &CampaignConfig,
        principal: &Principal,
    ) -> Result<CampaignCreated, RequestError> {
        let now = self.clock.now_ms();
        let checked = check(&request, config, now)?;
        let max_units = config.max_units;
        let actor = principal.actor();
        let service = self.clone();
        let result = self
            .with_store(move |store| {
                Ok(store.batch(|store| {
                    service.create_in(store, checked, units, max_units, &actor, now)
                }))
            })
            .await;
        let (created, (notices, dispatched), no_team) = match result {
            Ok(Ok(done)) => done,
            Ok(Err(error)) => {
                if matches!(error, RequestError::Order(super::OrderError::Store(_))) {
                    self.metrics.campaigns.failed();
                }
                return Err(error);
            }
            Err(error) => {
                self.metrics.campaigns.failed();
                return Err(error.into());
            }
        };
        self.metrics
            .campaigns
            .created(created.planned, created.unscheduled, no_team);
        tracing::info!(campaign = created.campaign.id, name = %created.campaign.name, by = %principal.actor(), in_scope = created.campaign.progress.in_scope, planned = created.planned, unscheduled = created.unscheduled, skipped = created.skipped_total, "inspection campaign planned");
        if created.unscheduled > 0 {
            tracing::warn!(campaign = created.campaign.id, unscheduled = created.unscheduled, no_team, "inspections without a day: the window is too short, a team too small, or a township without a team");
        }
        self.announce(notices, &dispatched);
        Ok(created)
    }

    #[allow(clippy::too_many_arguments)]
    fn create_in(
        &self,
        store: &mut Store,
        checked: Checked,
        units: Vec<UnitRisk>,
        max_units: usize,
        actor: &str,
        now: i64,
    ) -> Result<(CampaignCreated, Announce, usize), RequestError> {
        let scope = &checked.scope;
        let townships: Vec<String> = store.townships()?.into_iter().map(|t| t.id).collect();
        if let Some(bad) = scope.townships.iter().find(|t| !townships.contains(t)) {
            return Err(invalid(
                "scope",
                format!("townships: {bad:?} is not a township of the registry"),
            ));
        }
        if !scope.villages.is_empty() {
            let villages: Vec<String> = store.villages(None)?.into_iter().map(|v| v.id).collect();
            if let Some(bad) = scope.villages.iter().find(|v| !villages.contains(v)) {
                return Err(invalid(
                    "scope",
                    format!("villages: {bad:?} is not a village of the registry"),
                ));
            }
        }
        if !scope.vendors.is_empty() {
            let vendors = store.vendor_ids()?;
            if let Some(bad) = scope.vendors.iter().find(|v| !vendors.contains(*v)) {
                return Err(invalid(
                    "scope",
                    format!("vendors: {bad:?} is not a vendor of the registry"),
                ));
            }
        }
        let awaiting = store.devices_awaiting_inspection()?;
        let mut in_scope: Vec<UnitRisk> = units.into_iter().filter(|u| scope.includes(u)).collect();
        in_scope.sort_by(|a, b| {
            b.score
                .cmp(&a.score)
                .then_with(|| a.device_id.cmp(&b.device_id))
        });
        let (skipped, in_scope): (Vec<UnitRisk>, Vec<UnitRisk>) = in_scope
            .into_iter()
            .partition(|u| awaiting.contains(&u.device_id));
        if in_scope.is_empty() {
            return Err(invalid(
                "scope",
                format!(
                    "no unit in scope to inspect ({} in scope already await another campaign's inspection)",
                    skipped.len()
                ),
            ));
        }
        if in_scope.len() > max_units {
            return Err(invalid(
                "scope",
                format!(
                    "{} units in scope; at most {max_units} (campaigns.max_units): narrow the scope",
                    in_scope.len()
                ),
            ));
        }
        let checklists: BTreeMap<String, Vec<String>> = KINDS
            .iter()
            .filter(|k| in_scope.iter().any(|u| u.kind == **k))
            .map(|k| {
                (
                    (*k).to_owned(),
                    checklist(k).into_iter().map(|i| i.code).collect(),
                )
            })
            .collect();
        let campaign = CampaignRow {
            id: 0,
            name: checked.name.clone(),
            start_date: date_of(checked.start_day),
            end_date: date_of(checked.end_day),
            scope: checked.scope.clone(),
            per_technician_per_day: checked.per_day,
            max_tries: checked.max_tries,
            checklists,
            created_at_ms: now,
            created_by: actor.to_owned(),
        };
        let campaign_id = store.insert_campaign(&campaign)?;
        // Open the orders and route them: one routing per (township, vendor, warranty).
        let mut routes: HashMap<(String, String, bool), Option<dispatch::Assignment>> =
            HashMap::new();
        let mut orders = Vec::with_capacity(in_scope.len());
        let mut notices = Vec::new();
        let total = in_scope.len();
        for (index, unit) in in_scope.iter().enumerate() {
            let reasons: Vec<String> = unit
                .reasons
                .iter()
                .map(|r| format!("{} +{} ({})", r.code, r.weight, r.text))
                .collect();
            let summary = format!(
                "取暖季前巡检 pre-season inspection, campaign {campaign_id} ({}): risk {} (rank {} of {total}){}{}",
                checked.name,
                unit.score,
                index + 1,
                if reasons.is_empty() { "" } else { ": " },
                reasons.join("; ")
            );
            let order = NewOrder {
                episode_id: None,
                device_id: unit.device_id.clone(),
                household_id: Some(unit.household_id.clone()),
                village_id: Some(unit.village_id.clone()),
                vendor_id: Some(unit.vendor_id.clone()),
                township: unit.township.clone(),
                category: INSPECTION_CATEGORY.to_owned(),
                priority: "low".to_owned(),
                source: INSPECTION_SOURCE.to_owned(),
                summary,
                created_at_ms: now,
                actor: actor.to_owned(),
                pre_emptive: true,
                in_warranty: Some(unit.in_warranty),
            };
            let id = store
                .create_order(&order)?
                .ok_or_else(|| RequestError::invalid("an inspection order could not be created"))?;
            let row = store
                .order_row(id)?
                .ok_or_else(|| RequestError::invalid("an inspection order vanished"))?;
            notices.push(OrderNotice::of(&row, "created", now, row.summary.clone()));
            let key = (
                unit.township.clone(),
                unit.vendor_id.clone(),
                unit.in_warranty,
            );
            if !routes.contains_key(&key) {
                let assignment = dispatch::route(store, &row)?;
                routes.insert(key.clone(), assignment);
            }
            orders.push((row, key));
        }
        // The crews of the teams routing chose.
        let mut crews: BTreeMap<String, Vec<Crew>> = BTreeMap::new();
        let mut township_of: HashMap<String, Option<String>> = HashMap::new();
        for assignment in routes.values().flatten() {
            if crews.contains_key(&assignment.team.id) {
                continue;
            }
            let mut members = Vec::new();
            for (technician, _) in store.technician_loads(&assignment.team.id)? {
                let home_township = match &technician.home_village_id {
                    Some(village) => {
                        if !township_of.contains_key(village) {
                            let township = store.township_of_village(village)?;
                            township_of.insert(village.clone(), township);
                        }
                        township_of.get(village).cloned().flatten()
                    }
                    None => None,
                };
                members.push(Crew {
                    technician_id: technician.id,
                    home_village: technician.home_village_id,
                    home_township,
                });
            }
            crews.insert(assignment.team.id.clone(), members);
        }
        let first_day = checked.start_day.max(today(now));
        let mut booked: Booked = store
            .booked_visits(&date_of(first_day))?
            .into_iter()
            .filter_map(|((technician, date), count)| Some(((technician, day_of(&date)?), count)))
            .collect();
        let plan_units: Vec<Unit> = in_scope
            .iter()
            .zip(&orders)
            .map(|(unit, (_, key))| Unit {
                team_id: routes
                    .get(key)
                    .and_then(|a| a.as_ref().map(|a| a.team.id.clone())),
                village_id: unit.village_id.clone(),
                township: unit.township.clone(),
            })
            .collect();
        let visits = plan::plan(
            &plan_units,
            &crews,
            &mut booked,
            first_day,
            checked.end_day,
            checked.per_day,
        );
        let (mut planned, mut unscheduled, mut no_team) = (0, 0, 0);
        let mut dispatched = Vec::new();
        for (rank, ((unit, (row, key)), visit)) in
            in_scope.iter().zip(&orders).zip(visits).enumerate()
        {
            let assignment = routes.get(key).and_then(Option::as_ref);
            match assignment {
                Some(assignment) => {
                    let day_note = match &visit {
                        Some((technician, day)) => format!(
                            "; inspection planned on {} for technician {technician} (rank {} of {total})",
                            date_of(*day),
                            rank + 1
                        ),
                        None => format!(
                            "; no technician of the team has room for it within the window {} to {}: an operator plans its day",
                            campaign.start_date, campaign.end_date
                        ),
                    };
                    let note = format!("{}{day_note}", assignment.note);
                    let update = OrderUpdate {
                        state: Some(OrderState::Dispatched),
                        team_id: Some(assignment.team.id.clone()),
                        technician_id: visit.as_ref().map(|(t, _)| t.clone()),
                        dispatched_at_ms: Some(now),
                        ..OrderUpdate::default()
                    };
                    store.append_event(
                        row.id,
                        now,
                        "dispatcher:campaign",
                        "dispatched",
                        &note,
                        &update,
                    )?;
                    if let Some((_, day)) = &visit {
                        // The clocks of an inspection run from its planned day.
                        store.restart_sla(row.id, midnight_of(*day).max(now), 0)?;
                    }
                    self.metrics.order_dispatched();
                    let stored = store.order_row(row.id)?.unwrap_or_else(|| row.clone());
                    notices.push(OrderNotice::of(&stored, "dispatched", now, note));
                    dispatched.push(stored);
                }
                None => {
                    no_team += 1;
                    let note = format!(
                        "no team found for device {} in township {}: an operator must dispatch it",
                        row.device_id, row.township
                    );
                    store.append_event(
                        row.id,
                        now,
                        "dispatcher:campaign",
                        "dispatch_failed",
                        &note,
                        &OrderUpdate::default(),
                    )?;
                }
            }
            let status = if visit.is_some() {
                planned += 1;
                InspectionStatus::Planned
            } else {
                unscheduled += 1;
                InspectionStatus::Unscheduled
            };
            let (technician_id, planned_date) = match visit {
                Some((technician, day)) => (Some(technician), Some(date_of(day))),
                None => (None, None),
            };
            store.insert_inspection(&InspectionRow {
                id: 0,
                campaign_id,
                order_id: row.id,
                device_id: unit.device_id.clone(),
                household_id: unit.household_id.clone(),
                village_id: unit.village_id.clone(),
                township: unit.township.clone(),
                vendor_id: unit.vendor_id.clone(),
                kind: unit.kind.clone(),
                in_warranty: unit.in_warranty,
                score: unit.score,
                reasons: unit.reasons.clone(),
                rank: u32::try_from(rank + 1).unwrap_or(u32::MAX),
                team_id: assignment.map(|a| a.team.id.clone()),
                technician_id,
                planned_date,
                tries: 0,
                status,
                answers: Vec::new(),
                note: String::new(),
                repair_order_id: None,
                completed_at_ms: None,
                updated_at_ms: now,
            })?;
        }
        let stored = store
            .campaign(campaign_id)?
            .ok_or_else(|| RequestError::invalid("the campaign vanished"))?;
        let inspections = store.inspections_of(campaign_id)?;
        let skipped_total = skipped.len();
        Ok((
            CampaignCreated {
                campaign: view(stored, &inspections),
                planned,
                unscheduled,
                skipped: skipped.into_iter().take(100).map(|u| u.device_id).collect(),
                skipped_total,
            },
            (notices, dispatched),
            no_team,
        ))
    }

    /// Records a visit of inspection `id` for `principal` (the team the inspection is assigned
    /// to, its technician, or an operator; the API checks the role): the checklist answers and
    /// the outcome, the inspection order moved on, a repair order opened for a defect, the next
    /// visit planned for a resident not at home. With a `key`, a retry gets the first answer.
    pub async fn record_inspection(
        &self,
        id: i64,
        principal: &Principal,
        report: VisitReport,
        key: Option<IdempotencyKey>,
    ) -> Result<Answered, RequestError> {
        let service = self.clone();
        let principal = principal.clone();
        let what = format!("inspection {id}: {report:?}");
        let outcome = report.outcome;
        let once = self
            .with_store(move |store| {
                Ok(store.batch(|store| {
                    service.once_in(store, &principal, key.as_ref(), &what, 200, |store| {
                        service.record_in(store, id, &principal, report)
                    })
                }))
            })
            .await;
        let once = match once {
            Ok(Ok(once)) => once,
            Ok(Err(error)) => {
                if matches!(error, RequestError::Order(super::OrderError::Store(_))) {
                    self.metrics.campaigns.failed();
                }
                return Err(error);
            }
            Err(error) => {
                self.metrics.campaigns.failed();
                return Err(error.into());
            }
        };
        match once {
            Once::Fresh {
                answered,
                extra: (notices, dispatched),
            } => {
                self.metrics.campaigns.outcome(outcome);
                self.announce(notices, &dispatched);
                Ok(answered)
            }
            Once::Replayed(answered) => Ok(answered),
        }
    }

    fn record_in(
        &self,
        store: &mut Store,
        id: i64,
        principal: &Principal,
        report: VisitReport,
    ) -> Result<(InspectionView, Announce), RequestError> {
        let missing = || RequestError::Missing(format!("no inspection {id}"));
        let mut inspection = store.inspection(id)?.ok_or_else(missing)?;
        let order = store.order_row(inspection.order_id)?.ok_or_else(missing)?;
        let allowed = principal.role == Role::Operator
            || (principal.role == Role::Team
                && (visible(principal, &inspection) || principal.can_read(&order)));
        if !allowed {
            // Another team's inspection does not exist for the caller.
            return Err(missing());
        }
        if !inspection.status.is_open() {
            return Err(RequestError::Conflict(format!(
                "inspection {id} is already recorded: {}",
                inspection.status.as_str()
            )));
        }
        if !order.state.is_open() {
            return Err(RequestError::Conflict(format!(
                "inspection {id}: its order {} is {} (moved by the order steps); record visits only on an open inspection order",
                order.id,
                order.state.as_str()
            )));
        }
        check_visit(&inspection.kind, &report)?;
        let campaign = store
            .campaign(inspection.campaign_id)?
            .ok_or_else(missing)?;
        let actor = principal.actor();
        let now = self.clock.now_ms();
        let at = store
            .last_event_ms(order.id)?
            .map_or(now, |last| now.max(last));
        let mut notices = Vec::new();
        let mut dispatched = Vec::new();
        let answers_text: Vec<String> = report
            .answers
            .iter()
            .map(|a| {
                let result = match a.result {
                    ItemResult::Ok => "ok",
                    ItemResult::Fault => "FAULT",
                    ItemResult::NotApplicable => "n/a",
                };
                let value = a.value.map_or_else(String::new, |v| format!(" {v}"));
                let note = a
                    .note
                    .as_deref()
                    .filter(|n| !n.is_empty())
                    .map_or_else(String::new, |n| format!(" ({n})"));
                format!("{} {result}{value}{note}", a.item)
            })
            .collect();
        let note_text = if report.note.trim().is_empty() {
            String::new()
        } else {
            format!("; {}", report.note.trim())
        };
        inspection.tries = inspection.tries.saturating_add(1);
        inspection.updated_at_ms = now;
        inspection.note = report.note.trim().to_owned();
        let visit_day = inspection
            .planned_date
            .as_deref()
            .and_then(day_of)
            .unwrap_or_else(|| today(now));
        match report.outcome {
            Outcome::Done | Outcome::Defect => {
                let mut update = OrderUpdate {
                    state: Some(OrderState::Closed),
                    resolved_at_ms: Some(at),
                    closed_at_ms: Some(at),
                    ..OrderUpdate::default()
                };
                if order.accepted_at_ms.is_none() {
                    update.accepted_at_ms = Some(at);
                }
                if order.on_site_at_ms.is_none() {
                    update.on_site_at_ms = Some(at);
                }
                if order.technician_id.is_none() {
                    update.technician_id = principal.technician.clone();
                }
                let note = format!(
                    "inspection {} (visit {}): {}{note_text}",
                    report.outcome.as_str(),
                    inspection.tries,
                    answers_text.join(", ")
                );
                store.append_event(order.id, at, &actor, "inspected", &note, &update)?;
                inspection.status = if report.outcome == Outcome::Done {
                    InspectionStatus::Done
                } else {
                    InspectionStatus::Defect
                };
                inspection.answers = report.answers.clone();
                inspection.completed_at_ms = Some(at);
                let row = store.order_row(order.id)?.unwrap_or_else(|| order.clone());
                notices.push(OrderNotice::of(&row, "inspected", at, note));
                if report.outcome == Outcome::Defect {
                    let faults: Vec<String> = report
                        .answers
                        .iter()
                        .filter(|a| a.result == ItemResult::Fault)
                        .map(|a| {
                            let label = checklist(&inspection.kind)
                                .into_iter()
                                .find(|i| i.code == a.item)
                                .map_or_else(|| a.item.clone(), |i| i.en);
                            match a.note.as_deref().filter(|n| !n.is_empty()) {
                                Some(n) => format!("{label}: {n}"),
                                None => label,
                            }
                        })
                        .collect();
                    let priority = report.repair_priority.as_deref().unwrap_or("normal");
                    let summary = format!(
                        "inspection finding (campaign {}, inspection order {}): {}{note_text}",
                        campaign.id,
                        order.id,
                        faults.join("; ")
                    );
                    let new = self.new_order(
                        store,
                        &inspection.device_id,
                        &inspection.township,
                        FINDING_CATEGORY,
                        priority,
                        INSPECTION_SOURCE,
                        &summary,
                        at,
                        &actor,
                        true,
                        None,
                    )?;
                    let repair = store.create_order(&new)?.ok_or_else(|| {
                        RequestError::invalid("the repair order could not be created")
                    })?;
                    store.append_event(
                        order.id,
                        at,
                        &actor,
                        "finding_opened",
                        &format!("repair order {repair} opened for the finding"),
                        &OrderUpdate::default(),
                    )?;
                    store.append_event(
                        repair,
                        at,
                        &actor,
                        "inspection_linked",
                        &format!(
                            "found by inspection order {} of campaign {} ({})",
                            order.id, campaign.id, campaign.name
                        ),
                        &OrderUpdate::default(),
                    )?;
                    inspection.repair_order_id = Some(repair);
                    if let Some(row) = store.order_row(repair)? {
                        notices.push(OrderNotice::of(&row, "created", at, row.summary.clone()));
                    }
                    if let Some((row, notice)) = self.auto_dispatch(store, repair, at)? {
                        notices.push(notice);
                        dispatched.push(row);
                    }
                    self.metrics.campaigns.finding();
                    tracing::info!(inspection = id, order = order.id, repair, device = %inspection.device_id, priority, "inspection finding: repair order opened");
                }
            }
            Outcome::Refused => {
                let note = format!("the resident refused the inspection{note_text}");
                let update = OrderUpdate {
                    state: Some(OrderState::Cancelled),
                    closed_at_ms: Some(at),
                    ..OrderUpdate::default()
                };
                store.append_event(order.id, at, &actor, "cancelled", &note, &update)?;
                inspection.status = InspectionStatus::Refused;
                inspection.completed_at_ms = Some(at);
                let row = store.order_row(order.id)?.unwrap_or_else(|| order.clone());
                notices.push(OrderNotice::of(&row, "cancelled", at, note));
            }
            Outcome::NotHome if inspection.tries >= campaign.max_tries => {
                let note = format!(
                    "nobody at home on visit {} of {}: the inspection ends without one{note_text}",
                    inspection.tries, campaign.max_tries
                );
                let update = OrderUpdate {
                    state: Some(OrderState::Cancelled),
                    closed_at_ms: Some(at),
                    ..OrderUpdate::default()
                };
                store.append_event(order.id, at, &actor, "cancelled", &note, &update)?;
                inspection.status = InspectionStatus::NotHome;
                inspection.completed_at_ms = Some(at);
                let row = store.order_row(order.id)?.unwrap_or_else(|| order.clone());
                notices.push(OrderNotice::of(&row, "cancelled", at, note));
            }
            Outcome::NotHome => {
                let end_day = day_of(&campaign.end_date).unwrap_or(visit_day);
                let next = match &inspection.technician_id {
                    Some(technician) => {
                        let mut booked: Booked = store
                            .booked_visits(&date_of(today(now)))?
                            .into_iter()
                            .filter_map(|((t, date), count)| Some(((t, day_of(&date)?), count)))
                            .collect();
                        plan::retry_day(
                            &mut booked,
                            technician,
                            visit_day,
                            today(now),
                            end_day,
                            campaign.per_technician_per_day,
                        )
                    }
                    None => None,
                };
                let note = match next {
                    Some(day) => format!(
                        "nobody at home (visit {} of {}): next visit planned on {}{note_text}",
                        inspection.tries,
                        campaign.max_tries,
                        date_of(day)
                    ),
                    None => format!(
                        "nobody at home (visit {} of {}): no later day has room for the technician; an operator plans the next visit{note_text}",
                        inspection.tries, campaign.max_tries
                    ),
                };
                // Back to dispatched for the next visit (the stage times of this one go).
                let back = matches!(order.state, OrderState::Accepted | OrderState::OnSite);
                let update = OrderUpdate {
                    state: back.then_some(OrderState::Dispatched),
                    reopen: back,
                    ..OrderUpdate::default()
                };
                store.append_event(order.id, at, &actor, "not_home", &note, &update)?;
                match next {
                    Some(day) => {
                        inspection.status = InspectionStatus::Planned;
                        inspection.planned_date = Some(date_of(day));
                        let clear = super::sla::Stage::ALL
                            .into_iter()
                            .filter(|s| *s != super::sla::Stage::Dispatch)
                            .fold(0, |bits, s| bits | s.warned_bit() | s.breached_bit());
                        store.restart_sla(order.id, midnight_of(day).max(at), clear)?;
                    }
                    None => inspection.status = InspectionStatus::Unscheduled,
                }
                self.metrics.campaigns.retry(next.is_some());
                let row = store.order_row(order.id)?.unwrap_or_else(|| order.clone());
                notices.push(OrderNotice::of(&row, "not_home", at, note));
            }
        }
        store.update_inspection(&inspection)?;
        tracing::info!(inspection = id, campaign = campaign.id, order = order.id, device = %inspection.device_id, outcome = report.outcome.as_str(), tries = inspection.tries, status = inspection.status.as_str(), by = %actor, "inspection visit recorded");
        Ok((InspectionView::from(inspection), (notices, dispatched)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-10-10T12:00+08:00.
    const NOW: i64 = 1_791_604_800_000;

    fn request() -> NewCampaign {
        NewCampaign {
            name: "2026 取暖季前巡检".into(),
            start_date: "2026-10-15".into(),
            end_date: "2026-11-10".into(),
            townships: vec!["yongning".into(), "yongning".into()],
            villages: Vec::new(),
            vendors: Vec::new(),
            kinds: Vec::new(),
            per_technician_per_day: None,
            max_tries: Some(2),
        }
    }

    #[test]
    fn a_plan_is_checked_field_by_field() {
        let config = CampaignConfig::default();
        let checked = check(&request(), &config, NOW).expect("valid");
        assert_eq!(checked.scope.townships, vec!["yongning".to_owned()]);
        assert_eq!((checked.per_day, checked.max_tries), (6, 2));
        assert_eq!(date_of(checked.start_day), "2026-10-15");
        let field = |r: NewCampaign| match check(&r, &config, NOW) {
            Err(RequestError::OutOfRange { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(NewCampaign {
                name: " ".into(),
                ..request()
            }),
            "name"
        );
        assert_eq!(
            field(NewCampaign {
                end_date: "2026-10-01".into(),
                ..request()
            }),
            "end_date"
        );
        assert_eq!(
            field(NewCampaign {
                start_date: "2026-01-01".into(),
                end_date: "2026-10-11".into(),
                ..request()
            }),
            "end_date",
            "longer than max_window_days"
        );
        assert_eq!(
            field(NewCampaign {
                start_date: "2026-09-01".into(),
                end_date: "2026-09-30".into(),
                ..request()
            }),
            "end_date",
            "in the past"
        );
        assert_eq!(
            field(NewCampaign {
                start_date: "15/10".into(),
                ..request()
            }),
            "start_date"
        );
        assert_eq!(
            field(NewCampaign {
                kinds: vec!["stove".into()],
                ..request()
            }),
            "scope"
        );
        assert_eq!(
            field(NewCampaign {
                villages: vec!["v".repeat(101)],
                ..request()
            }),
            "scope"
        );
        assert_eq!(
            field(NewCampaign {
                townships: vec!["t".into(); 201],
                ..request()
            }),
            "scope"
        );
        assert_eq!(
            field(NewCampaign {
                per_technician_per_day: Some(0),
                ..request()
            }),
            "per_technician_per_day"
        );
        assert_eq!(
            field(NewCampaign {
                max_tries: Some(11),
                ..request()
            }),
            "max_tries"
        );
    }

    fn answer(item: &str, result: ItemResult) -> Answer {
        Answer {
            item: item.into(),
            result,
            value: None,
            note: None,
        }
    }

    fn visit(outcome: Outcome, answers: Vec<Answer>) -> VisitReport {
        VisitReport {
            outcome,
            answers,
            note: String::new(),
            repair_priority: None,
        }
    }

    #[test]
    fn answers_follow_the_kinds_checklist_and_the_outcome() {
        let all_ok: Vec<Answer> = checklist("gas_boiler")
            .into_iter()
            .map(|i| answer(&i.code, ItemResult::Ok))
            .collect();
        assert!(check_visit("gas_boiler", &visit(Outcome::Done, all_ok.clone())).is_ok());
        // A heat pump's item on a boiler; an item twice; one missing for done.
        assert!(check_visit(
            "gas_boiler",
            &visit(Outcome::Done, vec![answer("filter", ItemResult::Ok)])
        )
        .is_err());
        let mut twice = all_ok.clone();
        twice[1] = twice[0].clone();
        assert!(check_visit("gas_boiler", &visit(Outcome::Done, twice)).is_err());
        assert!(check_visit("gas_boiler", &visit(Outcome::Done, all_ok[..3].to_vec())).is_err());
        // A fault is a defect, and a defect needs a fault.
        let mut fault = all_ok.clone();
        fault[2].result = ItemResult::Fault;
        assert!(check_visit("gas_boiler", &visit(Outcome::Done, fault.clone())).is_err());
        assert!(check_visit("gas_boiler", &visit(Outcome::Defect, fault)).is_ok());
        assert!(check_visit("gas_boiler", &visit(Outcome::Defect, all_ok.clone())).is_err());
        // Nothing inspected: no answers.
        assert!(check_visit("heat_pump", &visit(Outcome::NotHome, Vec::new())).is_ok());
        assert!(check_visit(
            "heat_pump",
            &visit(Outcome::Refused, vec![answer("filter", ItemResult::Ok)])
        )
        .is_err());
        // Values and notes are bounded.
        let mut bad = answer("filter", ItemResult::Fault);
        bad.value = Some(f64::NAN);
        assert!(check_visit("heat_pump", &visit(Outcome::Defect, vec![bad])).is_err());
        let mut long = answer("filter", ItemResult::Fault);
        long.note = Some("x".repeat(501));
        assert!(check_visit("heat_pump", &visit(Outcome::Defect, vec![long])).is_err());
        let mut report = visit(Outcome::Defect, vec![answer("filter", ItemResult::Fault)]);
        report.repair_priority = Some("asap".into());
        assert!(check_visit("heat_pump", &report).is_err());
        report.repair_priority = Some("urgent".into());
        assert!(check_visit("heat_pump", &report).is_ok());
    }

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

    #[test]
    fn statuses_parse_their_names_and_every_kind_has_four_items() {
        for status in InspectionStatus::ALL {
            assert_eq!(InspectionStatus::parse(status.as_str()), Some(status));
        }
        for kind in KINDS {
            assert_eq!(checklist(kind).len(), 4, "{kind}");
        }
        assert!(checklist("stove").is_empty());
        assert_eq!(day_of(&date_of(20_740)), Some(20_740));
    }
}
