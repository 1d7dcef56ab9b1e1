//! The input checks of inspection campaigns: an operator's plan ([`check`]) and a visit's
//! report ([`check_visit`]), the date helpers they share with the service, who sees which
//! inspection ([`visible`]) and a campaign's view over those ([`view`]).

use crate::auth::{Principal, Role};
use crate::orders::reports::coverage;
use crate::orders::store::{CampaignRow, InspectionRow};
use crate::orders::RequestError;

use super::model::{
    checklist, Answer, CampaignConfig, CampaignScope, CampaignView, ChecklistItem, ItemResult,
    NewCampaign, Outcome, VisitReport, KINDS, MAX_ANSWER_NOTE_CHARS, MAX_ANSWER_VALUE,
    MAX_ID_CHARS, MAX_NAME_CHARS, MAX_NOTE_CHARS, MAX_PER_DAY, MAX_SCOPE_ENTRIES, MAX_TRIES,
};

/// The day number (days since 1970-01-01) of a `YYYY-MM-DD` date.
pub(super) fn day_of(date: &str) -> Option<i64> {
    let (y, m, d) = crate::registry::parse_date(date)?;
    Some(crate::orders::calendar::days_from_civil(y, m, d))
}

/// The `YYYY-MM-DD` of a day number.
pub(super) fn date_of(day: i64) -> String {
    let (y, m, d) = crate::orders::calendar::civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// CST midnight of a day number, Unix ms.
pub(super) fn midnight_of(day: i64) -> i64 {
    let (y, m, d) = crate::orders::calendar::civil_from_days(day);
    crate::orders::calendar::cst_midnight_ms(y, m, d)
}

pub(super) fn today(now_ms: i64) -> i64 {
    let (y, m, d) = crate::orders::calendar::cst_date(now_ms);
    crate::orders::calendar::days_from_civil(y, m, d)
}

pub(super) fn invalid(field: &'static str, message: String) -> RequestError {
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
/// field. Pure (ids are checked against the registry by
/// [`OrderService::create_campaign`](crate::orders::OrderService::create_campaign)).
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
    let (start_day, end_day) = check_window(request, config, now_ms)?;
    check_scope_lists(request)?;
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

/// The plan's window as day numbers (first, last): both dates well-formed, in order, at most
/// `config.max_window_days` long and not ending before today.
fn check_window(
    request: &NewCampaign,
    config: &CampaignConfig,
    now_ms: i64,
) -> Result<(i64, i64), RequestError> {
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
    Ok((start_day, end_day))
}

/// The plan's scope lists: bounded in length and entry size, kinds known.
fn check_scope_lists(request: &NewCampaign) -> Result<(), RequestError> {
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
    Ok(())
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
    let seen = check_answers(kind, &items, &report.answers)?;
    check_outcome(&items, report, &seen)?;
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

/// Each answer names an item of `kind`'s checklist (`items`) once, with a bounded value and
/// note; at most one answer per item. Returns the items answered, in order.
fn check_answers<'a>(
    kind: &str,
    items: &[ChecklistItem],
    answers: &'a [Answer],
) -> Result<Vec<&'a str>, RequestError> {
    if answers.len() > items.len().max(1) {
        return Err(invalid(
            "answers",
            format!(
                "answers: at most one per checklist item ({}), got {}",
                items.len(),
                answers.len()
            ),
        ));
    }
    let mut seen: Vec<&str> = Vec::new();
    for answer in answers {
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
    Ok(seen)
}

/// The answers fit the outcome: `done` answers every item, none at fault; `defect` has a
/// fault; `not_home` and `refused` answer nothing.
fn check_outcome(
    items: &[ChecklistItem],
    report: &VisitReport,
    seen: &[&str],
) -> Result<(), RequestError> {
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
    Ok(())
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

    // Some 85 lines, over the ~80 of the house style: one flat table of a field per bad plan,
    // kept whole as it was before the split (read top to bottom, one case a block).
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
}
