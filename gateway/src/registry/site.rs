//! The site types of the registry: homes, village public buildings and seed-farming
//! greenhouses ([`SiteType`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a registry "household" is: most are homes; village public buildings (activity rooms
/// 活动室, clinics 卫生室, schools) and seed-farming greenhouses (育苗大棚) are registered the
/// same way, with their own thresholds in the rules (the device tag `site:{type}`) and their
/// own order priorities (a clinic's or school's order is at least `high`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SiteType {
    /// A home (the default).
    #[default]
    Home,
    /// A village activity room (活动室).
    ActivityRoom,
    /// A village clinic (卫生室).
    Clinic,
    /// A school or kindergarten.
    School,
    /// A seed-farming greenhouse (育苗大棚): the plants set the thresholds.
    Greenhouse,
}

impl SiteType {
    /// Every site type, in order.
    pub const ALL: [SiteType; 5] = [
        SiteType::Home,
        SiteType::ActivityRoom,
        SiteType::Clinic,
        SiteType::School,
        SiteType::Greenhouse,
    ];

    /// The name in `households.csv`, the store, the rules' tag `site:{name}` and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteType::Home => "home",
            SiteType::ActivityRoom => "activity_room",
            SiteType::Clinic => "clinic",
            SiteType::School => "school",
            SiteType::Greenhouse => "greenhouse",
        }
    }

    /// The site type of a name; `None` for anything else.
    pub fn parse(value: &str) -> Option<SiteType> {
        SiteType::ALL.into_iter().find(|t| t.as_str() == value)
    }

    /// The rules' device tag of the site type, e.g. `site:greenhouse`.
    pub fn tag(self) -> String {
        format!("site:{}", self.as_str())
    }

    /// A public service whose people cannot go elsewhere for warmth (patients, children): its
    /// orders are at least `high` priority, with the repair SLA.
    pub fn is_public_service(self) -> bool {
        matches!(self, SiteType::Clinic | SiteType::School)
    }
}
