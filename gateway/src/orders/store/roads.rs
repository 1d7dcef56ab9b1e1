//! What dispatch reads about the roads in the store: the technicians' skills, the travel times
//! from the township service points to the villages (migration 0013, written by the registry
//! import), a technician's queue of open orders, what is on their van, and the road conditions
//! an operator sets (kv `dispatch.conditions`).

use std::collections::BTreeMap;

use super::*;
use crate::registry::roads::{join_skills, parse_skills};
use crate::registry::{RoadData, Skill, TravelTime};

/// The kv key of the road conditions.
const CONDITIONS_KEY: &str = "dispatch.conditions";

impl Store {
    /// The skills recorded for `technician_id`; `None`: not recorded (able for everything).
    pub fn technician_skills(&self, technician_id: &str) -> Result<Option<Vec<Skill>>, StoreError> {
        let text: Option<String> = self
            .connection
            .query_row(
                "SELECT skills FROM technician_skills WHERE technician_id = ?1",
                [technician_id],
                |r| r.get(0),
            )
            .optional()?;
        // Stored by the import from checked text; a word that does not parse is dropped rather
        // than failing dispatch.
        Ok(text.map(|t| {
            t.split_whitespace()
                .filter_map(Skill::parse)
                .collect::<Vec<_>>()
        }))
    }

    /// The travel time from `township`'s service point to `village`, if recorded.
    pub fn travel_time(
        &self,
        township: &str,
        village: &str,
    ) -> Result<Option<TravelTime>, StoreError> {
        Ok(self
            .connection
            .query_row(
                "SELECT township_id, village_id, minutes, mountain FROM travel_times
                 WHERE township_id = ?1 AND village_id = ?2",
                [township, village],
                travel_row,
            )
            .optional()?)
    }

    /// Whether any travel time to `village` is recorded (the road model applies to its orders).
    pub fn village_has_travel(&self, village: &str) -> Result<bool, StoreError> {
        Ok(self.connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM travel_times WHERE village_id = ?1)",
            [village],
            |r| r.get(0),
        )?)
    }

    /// A technician's queue: their orders dispatched or accepted, not yet on site.
    pub fn technician_queue(&self, technician_id: &str) -> Result<i64, StoreError> {
        Ok(self.connection.query_row(
            "SELECT COUNT(*) FROM orders WHERE technician_id = ?1
             AND state IN ('dispatched', 'accepted')",
            [technician_id],
            |r| r.get(0),
        )?)
    }

    /// What is available (on hand, not reserved) of `part` on `technician`'s van.
    pub fn van_available(&self, technician: &str, part: &str) -> Result<i64, StoreError> {
        super::stock::available(
            &self.connection,
            &crate::orders::stock::Location::van(technician),
            part,
        )
    }

    /// The skills and travel times as an export writes them back.
    pub fn road_data(&self) -> Result<RoadData, StoreError> {
        let skills: BTreeMap<String, Vec<Skill>> = self
            .connection
            .prepare("SELECT technician_id, skills FROM technician_skills ORDER BY technician_id")?
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|(id, text)| (id, parse_skills(&text).unwrap_or_default()))
            .collect();
        let travel = self
            .connection
            .prepare(
                "SELECT township_id, village_id, minutes, mountain FROM travel_times
                 ORDER BY township_id, village_id",
            )?
            .query_map([], travel_row)?
            .collect::<Result<_, _>>()?;
        Ok(RoadData { skills, travel })
    }

    /// Whether the operator has declared a snow day.
    pub fn snow(&self) -> Result<bool, StoreError> {
        Ok(self
            .get(CONDITIONS_KEY)?
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|value| value.get("snow").and_then(serde_json::Value::as_bool))
            .unwrap_or(false))
    }

    /// Sets the road conditions (kept across restarts).
    pub fn set_snow(&mut self, snow: bool) -> Result<(), StoreError> {
        self.put(
            CONDITIONS_KEY,
            &serde_json::json!({ "snow": snow }).to_string(),
        )
    }
}

fn travel_row(r: &rusqlite::Row) -> rusqlite::Result<TravelTime> {
    Ok(TravelTime {
        township_id: r.get(0)?,
        village_id: r.get(1)?,
        minutes: r.get(2)?,
        mountain: r.get(3)?,
    })
}

/// Writes an import's skills (every technician of the import: recorded or cleared) and travel
/// times (upserted by township and village).
pub(super) fn import_roads(connection: &Connection, data: &RegistryData) -> Result<(), StoreError> {
    for t in &data.technicians {
        connection.execute(
            "DELETE FROM technician_skills WHERE technician_id = ?1",
            [&t.id],
        )?;
        if let Some(skills) = data.roads.skills.get(&t.id) {
            connection.execute(
                "INSERT INTO technician_skills (technician_id, skills) VALUES (?1, ?2)",
                params![t.id, join_skills(skills)],
            )?;
        }
    }
    for t in &data.roads.travel {
        connection.execute(
            "INSERT INTO travel_times (township_id, village_id, minutes, mountain) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (township_id, village_id) DO UPDATE SET minutes = excluded.minutes,
             mountain = excluded.mountain",
            params![t.township_id, t.village_id, t.minutes, t.mountain],
        )?;
    }
    Ok(())
}
