//! What inspection campaigns (取暖季前巡检, `crate::orders::campaigns`) keep in the store: each
//! campaign (its window, scope, daily limit, tries and checklists) and each unit's inspection in
//! it (its inspection order, risk score and reasons, team, technician, planned day, tries,
//! outcome, checklist answers and the repair order a finding opened). Everything a campaign
//! knows is here, so it survives a restart.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{params, OptionalExtension};

use super::{Store, StoreError};
use crate::orders::campaigns::{Answer, CampaignScope, InspectionStatus};
use crate::prevention::risk::Reason;

/// A campaign as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CampaignRow {
    pub id: i64,
    pub name: String,
    /// First day, `YYYY-MM-DD` (CST).
    pub start_date: String,
    /// Last day, `YYYY-MM-DD` (CST), inclusive.
    pub end_date: String,
    pub scope: CampaignScope,
    pub per_technician_per_day: u32,
    pub max_tries: u32,
    /// Checklist item codes per device kind, as they were when the campaign was planned.
    pub checklists: BTreeMap<String, Vec<String>>,
    pub created_at_ms: i64,
    pub created_by: String,
}

/// One unit's inspection in a campaign, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct InspectionRow {
    pub id: i64,
    pub campaign_id: i64,
    /// The inspection order.
    pub order_id: i64,
    pub device_id: String,
    pub household_id: String,
    pub village_id: String,
    pub township: String,
    pub vendor_id: String,
    /// `heat_pump` or `gas_boiler`.
    pub kind: String,
    pub in_warranty: bool,
    /// The risk score when the campaign was planned.
    pub score: u32,
    pub reasons: Vec<Reason>,
    /// 1 = the riskiest unit of the campaign.
    pub rank: u32,
    pub team_id: Option<String>,
    pub technician_id: Option<String>,
    /// The day of the next (or last) visit, `YYYY-MM-DD`; `None`: no day (no team, or no room).
    pub planned_date: Option<String>,
    /// Visits made so far.
    pub tries: u32,
    pub status: InspectionStatus,
    pub answers: Vec<Answer>,
    pub note: String,
    /// The repair order a finding opened.
    pub repair_order_id: Option<i64>,
    pub completed_at_ms: Option<i64>,
    pub updated_at_ms: i64,
}

/// One inspection for the coverage figures of the reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverageUnit {
    pub township: String,
    pub vendor: String,
    pub team: Option<String>,
    pub status: InspectionStatus,
    /// Visits made.
    pub tries: u32,
}

const CAMPAIGN_COLUMNS: &str = "id, name, start_date, end_date, scope, per_technician_per_day, max_tries, checklists, created_at_ms, created_by";
const INSPECTION_COLUMNS: &str = "id, campaign_id, order_id, device_id, household_id, village_id, township, vendor_id, kind, in_warranty, score, reasons, rank, team_id, technician_id, planned_date, tries, status, answers, note, repair_order_id, completed_at_ms, updated_at_ms";

fn json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode: {e}")))
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn campaign_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<CampaignRow, StoreError>> {
    let scope: String = r.get(4)?;
    let checklists: String = r.get(7)?;
    let id: i64 = r.get(0)?;
    let built = (|| {
        Ok(CampaignRow {
            id,
            name: r.get(1)?,
            start_date: r.get(2)?,
            end_date: r.get(3)?,
            scope: parse(&format!("campaign {id} scope"), &scope)?,
            per_technician_per_day: r.get(5)?,
            max_tries: r.get(6)?,
            checklists: parse(&format!("campaign {id} checklists"), &checklists)?,
            created_at_ms: r.get(8)?,
            created_by: r.get(9)?,
        })
    })();
    Ok(built)
}

fn inspection_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<InspectionRow, StoreError>> {
    let id: i64 = r.get(0)?;
    let reasons: String = r.get(11)?;
    let status: String = r.get(17)?;
    let answers: String = r.get(18)?;
    let Some(status) = InspectionStatus::parse(&status) else {
        return Ok(Err(StoreError::Corrupt(format!(
            "inspection {id} has unknown status {status:?}"
        ))));
    };
    let reasons = match parse(&format!("inspection {id} reasons"), &reasons) {
        Ok(reasons) => reasons,
        Err(error) => return Ok(Err(error)),
    };
    let answers = match parse(&format!("inspection {id} answers"), &answers) {
        Ok(answers) => answers,
        Err(error) => return Ok(Err(error)),
    };
    Ok(Ok(InspectionRow {
        id,
        campaign_id: r.get(1)?,
        order_id: r.get(2)?,
        device_id: r.get(3)?,
        household_id: r.get(4)?,
        village_id: r.get(5)?,
        township: r.get(6)?,
        vendor_id: r.get(7)?,
        kind: r.get(8)?,
        in_warranty: r.get(9)?,
        score: r.get(10)?,
        reasons,
        rank: r.get(12)?,
        team_id: r.get(13)?,
        technician_id: r.get(14)?,
        planned_date: r.get(15)?,
        tries: r.get(16)?,
        status,
        answers,
        note: r.get(19)?,
        repair_order_id: r.get(20)?,
        completed_at_ms: r.get(21)?,
        updated_at_ms: r.get(22)?,
    }))
}

impl Store {
    /// Stores a new campaign (its `id` is ignored); returns its id.
    pub fn insert_campaign(&mut self, campaign: &CampaignRow) -> Result<i64, StoreError> {
        self.connection.execute(
            "INSERT INTO campaigns (name, start_date, end_date, scope, per_technician_per_day, max_tries, checklists, created_at_ms, created_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                campaign.name,
                campaign.start_date,
                campaign.end_date,
                json(&campaign.scope)?,
                campaign.per_technician_per_day,
                campaign.max_tries,
                json(&campaign.checklists)?,
                campaign.created_at_ms,
                campaign.created_by,
            ],
        )?;
        Ok(self.connection.last_insert_rowid())
    }

    /// Stores a unit's inspection (its `id` is ignored); returns its id.
    pub fn insert_inspection(&mut self, row: &InspectionRow) -> Result<i64, StoreError> {
        self.connection.execute(
            "INSERT INTO inspections (campaign_id, order_id, device_id, household_id, village_id, township, vendor_id, kind,
                in_warranty, score, reasons, rank, team_id, technician_id, planned_date, tries, status, answers, note,
                repair_order_id, completed_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
            params![
                row.campaign_id,
                row.order_id,
                row.device_id,
                row.household_id,
                row.village_id,
                row.township,
                row.vendor_id,
                row.kind,
                row.in_warranty,
                row.score,
                json(&row.reasons)?,
                row.rank,
                row.team_id,
                row.technician_id,
                row.planned_date,
                row.tries,
                row.status.as_str(),
                json(&row.answers)?,
                row.note,
                row.repair_order_id,
                row.completed_at_ms,
                row.updated_at_ms,
            ],
        )?;
        Ok(self.connection.last_insert_rowid())
    }

    /// Writes back what a visit changed: technician, day, tries, status, answers, note, the
    /// repair order, the completion and update times.
    pub fn update_inspection(&mut self, row: &InspectionRow) -> Result<(), StoreError> {
        self.connection.execute(
            "UPDATE inspections SET technician_id = ?2, planned_date = ?3, tries = ?4, status = ?5, answers = ?6,
                note = ?7, repair_order_id = ?8, completed_at_ms = ?9, updated_at_ms = ?10
             WHERE id = ?1",
            params![
                row.id,
                row.technician_id,
                row.planned_date,
                row.tries,
                row.status.as_str(),
                json(&row.answers)?,
                row.note,
                row.repair_order_id,
                row.completed_at_ms,
                row.updated_at_ms,
            ],
        )?;
        Ok(())
    }

    /// Every campaign, newest first.
    pub fn campaigns(&self) -> Result<Vec<CampaignRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY id DESC"
        ))?;
        let rows = statement.query_map([], campaign_row)?;
        let mut campaigns = Vec::new();
        for row in rows {
            campaigns.push(row??);
        }
        Ok(campaigns)
    }

    /// One campaign.
    pub fn campaign(&self, id: i64) -> Result<Option<CampaignRow>, StoreError> {
        self.connection
            .query_row(
                &format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?1"),
                [id],
                campaign_row,
            )
            .optional()?
            .transpose()
    }

    /// A campaign's inspections in rank order (riskiest first).
    pub fn inspections_of(&self, campaign_id: i64) -> Result<Vec<InspectionRow>, StoreError> {
        self.inspections_where("campaign_id = ?1 ORDER BY rank, id", campaign_id)
    }

    fn inspections_where(&self, clause: &str, key: i64) -> Result<Vec<InspectionRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {INSPECTION_COLUMNS} FROM inspections WHERE {clause}"
        ))?;
        let rows = statement.query_map([key], inspection_row)?;
        let mut inspections = Vec::new();
        for row in rows {
            inspections.push(row??);
        }
        Ok(inspections)
    }

    /// One inspection.
    pub fn inspection(&self, id: i64) -> Result<Option<InspectionRow>, StoreError> {
        Ok(self.inspections_where("id = ?1", id)?.into_iter().next())
    }

    /// The inspection whose order is `order_id`, if any.
    pub fn inspection_of_order(&self, order_id: i64) -> Result<Option<InspectionRow>, StoreError> {
        Ok(self
            .inspections_where("order_id = ?1", order_id)?
            .into_iter()
            .next())
    }

    /// Inspections still to visit (planned or unscheduled) of a team or a technician, by day
    /// and rank; at most `limit`.
    pub fn open_inspections(
        &self,
        team_id: Option<&str>,
        technician_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<InspectionRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(&format!(
            "SELECT {INSPECTION_COLUMNS} FROM inspections
             WHERE status IN ('planned', 'unscheduled')
               AND ((?1 IS NOT NULL AND team_id = ?1) OR (?2 IS NOT NULL AND technician_id = ?2) OR (?1 IS NULL AND ?2 IS NULL))
             ORDER BY planned_date IS NULL, planned_date, rank, id LIMIT ?3"
        ))?;
        let rows = statement.query_map(
            params![team_id, technician_id, limit as i64],
            inspection_row,
        )?;
        let mut inspections = Vec::new();
        for row in rows {
            inspections.push(row??);
        }
        Ok(inspections)
    }

    /// Visits already planned per (technician, day `YYYY-MM-DD`) from `from_date` on, over
    /// every campaign: what a technician's day already holds.
    pub fn booked_visits(
        &self,
        from_date: &str,
    ) -> Result<HashMap<(String, String), u32>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT technician_id, planned_date, COUNT(*) FROM inspections
             WHERE status = 'planned' AND technician_id IS NOT NULL AND planned_date >= ?1
             GROUP BY technician_id, planned_date",
        )?;
        let rows = statement.query_map([from_date], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Devices with an inspection still to visit in some campaign.
    pub fn devices_awaiting_inspection(&self) -> Result<HashSet<String>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT DISTINCT device_id FROM inspections WHERE status IN ('planned', 'unscheduled')",
        )?;
        let rows = statement.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The registry's vendor ids.
    pub fn vendor_ids(&self) -> Result<HashSet<String>, StoreError> {
        let mut statement = self.connection.prepare_cached("SELECT id FROM vendors")?;
        let rows = statement.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The inspections of the campaigns whose window overlaps `[from_date, to_date]` (both
    /// `YYYY-MM-DD`, inclusive), for the reports' coverage figures.
    pub fn coverage_units(
        &self,
        from_date: &str,
        to_date: &str,
    ) -> Result<Vec<CoverageUnit>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT i.township, i.vendor_id, i.team_id, i.status, i.tries FROM inspections i
             JOIN campaigns c ON c.id = i.campaign_id
             WHERE c.start_date <= ?2 AND c.end_date >= ?1 ORDER BY i.id",
        )?;
        let rows = statement.query_map(params![from_date, to_date], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
            ))
        })?;
        let mut units = Vec::new();
        for row in rows {
            let (township, vendor, team, status, tries) = row?;
            let status = InspectionStatus::parse(&status).ok_or_else(|| {
                StoreError::Corrupt(format!("an inspection has unknown status {status:?}"))
            })?;
            units.push(CoverageUnit {
                township,
                vendor,
                team,
                status,
                tries,
            });
        }
        Ok(units)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::campaigns::ItemResult;

    #[test]
    fn campaigns_and_inspections_round_trip() {
        let mut store = Store::in_memory().expect("store");
        let campaign = CampaignRow {
            id: 0,
            name: "2026 取暖季前巡检".into(),
            start_date: "2026-10-15".into(),
            end_date: "2026-11-10".into(),
            scope: CampaignScope {
                townships: vec!["yongning".into()],
                ..CampaignScope::default()
            },
            per_technician_per_day: 6,
            max_tries: 3,
            checklists: BTreeMap::from([("heat_pump".into(), vec!["filter".into()])]),
            created_at_ms: 5,
            created_by: "operator:centre".into(),
        };
        let id = store.insert_campaign(&campaign).expect("insert");
        assert_eq!(
            store.campaign(id).expect("read"),
            Some(CampaignRow { id, ..campaign })
        );
        let order = super::super::NewOrder {
            device_id: "d1".into(),
            township: "yongning".into(),
            category: "inspection".into(),
            priority: "low".into(),
            source: "inspection".into(),
            actor: "operator:centre".into(),
            ..Default::default()
        };
        let order_id = store.create_order(&order).expect("order").expect("new");
        let mut row = InspectionRow {
            id: 0,
            campaign_id: id,
            order_id,
            device_id: "d1".into(),
            household_id: "h1".into(),
            village_id: "v1".into(),
            township: "yongning".into(),
            vendor_id: "aurora".into(),
            kind: "heat_pump".into(),
            in_warranty: true,
            score: 40,
            reasons: vec![Reason {
                code: "aged".into(),
                weight: 5,
                text: "installed 6 years ago".into(),
            }],
            rank: 1,
            team_id: Some("t1".into()),
            technician_id: Some("tech-1".into()),
            planned_date: Some("2026-10-15".into()),
            tries: 0,
            status: InspectionStatus::Planned,
            answers: Vec::new(),
            note: String::new(),
            repair_order_id: None,
            completed_at_ms: None,
            updated_at_ms: 5,
        };
        row.id = store.insert_inspection(&row).expect("insert");
        assert_eq!(store.inspection(row.id).expect("read").as_ref(), Some(&row));
        assert_eq!(
            store.booked_visits("2026-10-01").expect("booked"),
            HashMap::from([(("tech-1".into(), "2026-10-15".into()), 1)])
        );
        assert!(store
            .devices_awaiting_inspection()
            .expect("open")
            .contains("d1"));
        row.status = InspectionStatus::Done;
        row.tries = 1;
        row.answers = vec![Answer {
            item: "filter".into(),
            result: ItemResult::Ok,
            value: None,
            note: None,
        }];
        store.update_inspection(&row).expect("update");
        assert_eq!(
            store.inspection_of_order(order_id).expect("read"),
            Some(row)
        );
        assert!(store
            .booked_visits("2026-10-01")
            .expect("booked")
            .is_empty());
        assert_eq!(
            store
                .coverage_units("2026-11-01", "2026-11-30")
                .expect("coverage")
                .len(),
            1
        );
        assert!(store
            .coverage_units("2026-12-01", "2026-12-31")
            .expect("coverage")
            .is_empty());
    }
}
