//! What dispatch knows about the roads and the technicians: the skills of each technician
//! (`technicians.csv` column `skills`, optional) and the travel times from each township's
//! service point to its villages (`travel.csv`, optional). Both are checked like the other
//! registry files, with errors naming file, line and field; a registry without them imports and
//! dispatches as before.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{parse_bool, ImportError, KnownIds, Table};

/// What a technician is qualified for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Skill {
    /// Air-source heat pumps.
    HeatPump,
    /// Gas boilers (the water side, controls, fan and flue).
    Boiler,
    /// Gas certification: the gas side of a boiler (ignition, flame, gas valve).
    Gas,
}

impl Skill {
    pub const ALL: [Skill; 3] = [Skill::HeatPump, Skill::Boiler, Skill::Gas];

    pub fn as_str(self) -> &'static str {
        match self {
            Skill::HeatPump => "heat_pump",
            Skill::Boiler => "boiler",
            Skill::Gas => "gas",
        }
    }

    pub fn parse(text: &str) -> Option<Skill> {
        Skill::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// Skills as `technicians.csv` writes them: space-separated.
pub fn join_skills(skills: &[Skill]) -> String {
    skills
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a space-separated skill list; `Err` names the first word that is not a skill.
pub fn parse_skills(text: &str) -> Result<Vec<Skill>, String> {
    let mut skills = Vec::new();
    for word in text.split_whitespace() {
        let skill = Skill::parse(word).ok_or_else(|| {
            format!(
                "{word:?} is not one of {}",
                Skill::ALL.map(Skill::as_str).join(", ")
            )
        })?;
        if !skills.contains(&skill) {
            skills.push(skill);
        }
    }
    skills.sort();
    Ok(skills)
}

/// Minutes from a township's service point to one of the villages on a normal day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TravelTime {
    pub township_id: String,
    pub village_id: String,
    /// 1..=[`MAX_TRAVEL_MINUTES`].
    pub minutes: i64,
    /// A mountain road: slower than an ordinary one on snow days.
    pub mountain: bool,
}

/// The longest travel time `travel.csv` accepts, in minutes.
pub const MAX_TRAVEL_MINUTES: i64 = 600;

/// The skills and travel times of an import.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RoadData {
    /// Technician id -> skills, for the technicians whose `skills` are recorded. A technician of
    /// the import missing here has none recorded (able for everything).
    pub skills: BTreeMap<String, Vec<Skill>>,
    pub travel: Vec<TravelTime>,
}

/// Reads the `skills` column of `technicians.csv` and `travel.csv` from `files`, checking
/// `travel.csv`'s townships and villages against `known` (the batch's and the database's).
pub fn parse(files: &HashMap<String, String>, known: &KnownIds) -> Result<RoadData, ImportError> {
    let mut roads = RoadData::default();
    if let Some(text) = files.get("technicians.csv") {
        let t = Table::parse("technicians.csv", text, &["id"])?;
        for (line, r) in &t.rows {
            if let Some(text) = t.optional(r, "skills") {
                let skills =
                    parse_skills(&text).map_err(|message| t.error(*line, "skills", message))?;
                if !skills.is_empty() {
                    roads.skills.insert(t.text(*line, r, "id")?, skills);
                }
            }
        }
    }
    if let Some(text) = files.get("travel.csv") {
        roads.travel = parse_travel(text, known)?;
    }
    Ok(roads)
}

/// `travel.csv`: `township_id,village_id,minutes,mountain`.
fn parse_travel(text: &str, known: &KnownIds) -> Result<Vec<TravelTime>, ImportError> {
    let t = Table::parse(
        "travel.csv",
        text,
        &["township_id", "village_id", "minutes", "mountain"],
    )?;
    let mut seen = HashSet::new();
    let mut rows = Vec::with_capacity(t.rows.len());
    for (line, r) in &t.rows {
        let township_id = t.text(*line, r, "township_id")?;
        if !known.townships.contains(&township_id) {
            return Err(t.error(
                *line,
                "township_id",
                format!("unknown township {township_id:?}"),
            ));
        }
        let village_id = t.text(*line, r, "village_id")?;
        if !known.villages.contains(&village_id) {
            return Err(t.error(
                *line,
                "village_id",
                format!("unknown village {village_id:?}"),
            ));
        }
        let minutes_text = t.text(*line, r, "minutes")?;
        let minutes = minutes_text
            .parse::<i64>()
            .ok()
            .filter(|m| (1..=MAX_TRAVEL_MINUTES).contains(m))
            .ok_or_else(|| {
                t.error(
                    *line,
                    "minutes",
                    format!("{minutes_text:?} is not a number of minutes 1..={MAX_TRAVEL_MINUTES}"),
                )
            })?;
        let mountain_text = t.optional(r, "mountain").unwrap_or_default();
        let mountain = parse_bool(&mountain_text).ok_or_else(|| {
            t.error(
                *line,
                "mountain",
                format!("{mountain_text:?} is not true/false"),
            )
        })?;
        if !seen.insert((township_id.clone(), village_id.clone())) {
            return Err(t.error(
                *line,
                "village_id",
                format!("township {township_id:?} to village {village_id:?} appears twice"),
            ));
        }
        rows.push(TravelTime {
            township_id,
            village_id,
            minutes,
            mountain,
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> KnownIds {
        let mut known = KnownIds::default();
        known.townships.insert("t1".into());
        known.villages.insert("v1".into());
        known.villages.insert("v2".into());
        known
    }

    fn travel(text: &str) -> Result<RoadData, ImportError> {
        parse(
            &HashMap::from([("travel.csv".to_owned(), text.to_owned())]),
            &known(),
        )
    }

    fn where_(e: ImportError) -> (String, u64, String) {
        (e.file, e.line, e.field)
    }

    #[test]
    fn travel_rows_parse_with_their_mountain_flag() {
        let roads =
            travel("township_id,village_id,minutes,mountain\nt1,v1,25,false\nt1,v2,60,true\n")
                .expect("parses");
        assert_eq!(roads.travel.len(), 2);
        assert!(roads.travel[1].mountain);
        assert_eq!(roads.travel[0].minutes, 25);
    }

    #[test]
    fn bad_travel_rows_are_named_by_file_line_and_field() {
        let header = "township_id,village_id,minutes,mountain\n";
        for (rows, line, field) in [
            ("t9,v1,20,false\n", 2, "township_id"),
            ("t1,v1,20,false\nt1,v9,20,false\n", 3, "village_id"),
            ("t1,v1,0,false\n", 2, "minutes"),
            ("t1,v1,601,false\n", 2, "minutes"),
            ("t1,v1,soon,false\n", 2, "minutes"),
            ("t1,v1,20,maybe\n", 2, "mountain"),
            ("t1,v1,20,false\nt1,v1,30,true\n", 3, "village_id"),
        ] {
            let error = travel(&format!("{header}{rows}")).expect_err(rows);
            assert_eq!(
                where_(error),
                ("travel.csv".to_owned(), line, field.to_owned()),
                "{rows}"
            );
        }
        let error = travel("township_id,village_id,minutes\nt1,v1,20\n").expect_err("no column");
        assert_eq!(
            where_(error),
            ("travel.csv".to_owned(), 1, "mountain".to_owned())
        );
    }

    #[test]
    fn skills_are_optional_and_a_bad_one_is_named() {
        let files = HashMap::from([(
            "technicians.csv".to_owned(),
            "id,team_id,name,phone,skills\na,t,A,1,heat_pump boiler\nb,t,B,2,\n".to_owned(),
        )]);
        let roads = parse(&files, &known()).expect("parses");
        assert_eq!(
            roads.skills.get("a"),
            Some(&vec![Skill::HeatPump, Skill::Boiler])
        );
        assert!(!roads.skills.contains_key("b"));
        let files = HashMap::from([(
            "technicians.csv".to_owned(),
            "id,team_id,name,phone,skills\na,t,A,1,heat_pump\nb,t,B,2,plumbing gas\n".to_owned(),
        )]);
        let error = parse(&files, &known()).expect_err("bad skill");
        assert_eq!(
            where_(error.clone()),
            ("technicians.csv".to_owned(), 3, "skills".to_owned())
        );
        assert!(error.message.contains("plumbing"), "{}", error.message);
        let old = HashMap::from([(
            "technicians.csv".to_owned(),
            "id,team_id,name,phone\na,t,A,1\n".to_owned(),
        )]);
        assert_eq!(parse(&old, &known()).expect("parses"), RoadData::default());
    }
}
