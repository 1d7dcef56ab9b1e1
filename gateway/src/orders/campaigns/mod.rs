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
//!
//! The module is split along its seams: `model`'s data (config, scope, statuses, outcomes,
//! checklists, requests and views), `figures`'s counters, `check`'s input checks and views,
//! `service`'s steps of the order service, and [`plan`]'s day plan. Every item is re-exported
//! here, so paths outside the module read `orders::campaigns::…`.

mod check;
mod figures;
mod model;
pub mod plan;
mod service;

pub use check::{check, check_visit, view, visible, Checked};
pub use figures::CampaignFigures;
pub use model::{
    checklist, Answer, CampaignConfig, CampaignCreated, CampaignScope, CampaignView, ChecklistItem,
    InspectionStatus, InspectionView, ItemResult, NewCampaign, Outcome, Progress, VisitReport,
    FINDING_CATEGORY, INSPECTION_CATEGORY, INSPECTION_SOURCE, KINDS, MAX_ANSWER_NOTE_CHARS,
    MAX_ANSWER_VALUE, MAX_ID_CHARS, MAX_NAME_CHARS, MAX_NOTE_CHARS, MAX_PER_DAY, MAX_SCOPE_ENTRIES,
    MAX_TRIES,
};
