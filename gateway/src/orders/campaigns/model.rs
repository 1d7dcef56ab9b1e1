//! The data of inspection campaigns: the `[campaigns]` config, a campaign's scope, the
//! inspection statuses and visit outcomes, the checklists of each device kind, the requests
//! (a new campaign, a visit's report) and the views the API answers with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::orders::reports::CoverageRow;
use crate::orders::store::InspectionRow;
use crate::prevention::risk::Reason;
use crate::prevention::UnitRisk;

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

#[cfg(test)]
mod tests {
    use super::super::check::{date_of, day_of};
    use super::*;

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
