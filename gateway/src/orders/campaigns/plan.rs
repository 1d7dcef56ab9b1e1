//! The day plan of an inspection campaign, pure: which technician inspects which unit on which
//! day, and the day of a retry when the resident was not at home.
//!
//! Rules ([`plan`]):
//! 1. Units come in rank order: risk score from `prevention::risk` (highest first), then
//!    device id. Each has the team routing gave it (vendor team in warranty, the third party
//!    out of warranty or when the vendor has no staff in the township); a unit without a team
//!    gets no day.
//! 2. Days are the campaign's window from its first day (or today, when later) to its last,
//!    every calendar day (the heating season does not wait for weekends). A technician does at
//!    most `per_day` visits a day, counting the visits other campaigns already planned for them
//!    (`booked`).
//! 3. Each unit goes to the technician of its team with the earliest day that has room; ties go
//!    to the technician with fewer visits in this campaign so far, then to one based in the
//!    unit's village, then in its township, then by id. So the riskiest units are inspected
//!    first, a team's technicians share the work evenly, and each day fills up before the next.
//! 4. A unit for which no technician of its team has room in the window gets no day
//!    (`unscheduled`): the window is too short or the team too small; the operator sees it.
//!
//! A retry ([`retry_day`]) is the technician's first day after the visit with room, up to
//! [`RETRY_GRACE_DAYS`] after the window (a campaign's last retries may run past its end).

use std::collections::{BTreeMap, HashMap};

/// How far past a campaign's last day a retry may be planned.
pub const RETRY_GRACE_DAYS: i64 = 14;

/// A technician a unit may be given to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crew {
    pub technician_id: String,
    /// Where the technician is based.
    pub home_village: Option<String>,
    /// The township of that village.
    pub home_township: Option<String>,
}

/// One unit to plan, in rank order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    /// The team routing gave the unit; `None`: no team covers it.
    pub team_id: Option<String>,
    pub village_id: String,
    pub township: String,
}

/// The planned visit of a unit: technician and day number (days since 1970-01-01, CST).
pub type Visit = (String, i64);

/// How a technician is ranked for a unit: earliest day with room, fewest visits in this
/// campaign, proximity (0 same village, 1 same township, 2 elsewhere), id.
type Preference<'a> = (i64, u32, u8, &'a str);

/// Visits per (technician, day number).
pub type Booked = HashMap<(String, i64), u32>;

/// The day plan: for each of `units` (in their order, which is the rank order), its
/// technician and day, or `None` (see the module's rules). `booked` is updated with the plan.
pub fn plan(
    units: &[Unit],
    crews: &BTreeMap<String, Vec<Crew>>,
    booked: &mut Booked,
    first_day: i64,
    last_day: i64,
    per_day: u32,
) -> Vec<Option<Visit>> {
    // Per technician, the first day that may still have room: days only fill up, so it never
    // moves back.
    let mut cursor: HashMap<String, i64> = HashMap::new();
    let mut assigned: HashMap<String, u32> = HashMap::new();
    let mut visits = Vec::with_capacity(units.len());
    for unit in units {
        let Some(crew) = unit.team_id.as_ref().and_then(|team| crews.get(team)) else {
            visits.push(None);
            continue;
        };
        let mut best: Option<(Preference<'_>, &Crew)> = None;
        for member in crew {
            let start = cursor
                .get(&member.technician_id)
                .copied()
                .unwrap_or(first_day)
                .max(first_day);
            let Some(day) = first_free(booked, &member.technician_id, start, last_day, per_day)
            else {
                cursor.insert(member.technician_id.clone(), last_day.saturating_add(1));
                continue;
            };
            cursor.insert(member.technician_id.clone(), day);
            let proximity = if member.home_village.as_deref() == Some(unit.village_id.as_str()) {
                0
            } else if member.home_township.as_deref() == Some(unit.township.as_str()) {
                1
            } else {
                2
            };
            let load = assigned.get(&member.technician_id).copied().unwrap_or(0);
            let key = (day, load, proximity, member.technician_id.as_str());
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                best = Some((key, member));
            }
        }
        match best {
            Some(((day, ..), member)) => {
                let id = member.technician_id.clone();
                *booked.entry((id.clone(), day)).or_default() += 1;
                *assigned.entry(id.clone()).or_default() += 1;
                visits.push(Some((id, day)));
            }
            None => visits.push(None),
        }
    }
    visits
}

/// The first day in `[from, to]` on which `technician` has fewer than `per_day` visits.
fn first_free(booked: &Booked, technician: &str, from: i64, to: i64, per_day: u32) -> Option<i64> {
    let mut day = from;
    while day <= to {
        let count = booked
            .get(&(technician.to_owned(), day))
            .copied()
            .unwrap_or(0);
        if count < per_day {
            return Some(day);
        }
        day += 1;
    }
    None
}

/// The day of a retry: the technician's first day after `visited_day` (and not before
/// `today`) with room, at most [`RETRY_GRACE_DAYS`] after `last_day`; `booked` is updated.
pub fn retry_day(
    booked: &mut Booked,
    technician: &str,
    visited_day: i64,
    today: i64,
    last_day: i64,
    per_day: u32,
) -> Option<i64> {
    let from = visited_day.saturating_add(1).max(today);
    let day = first_free(
        booked,
        technician,
        from,
        last_day.saturating_add(RETRY_GRACE_DAYS),
        per_day,
    )?;
    *booked.entry((technician.to_owned(), day)).or_default() += 1;
    Some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crew(id: &str, village: Option<&str>) -> Crew {
        Crew {
            technician_id: id.into(),
            home_village: village.map(Into::into),
            home_township: village.map(|_| "yongning".into()),
        }
    }

    fn unit(team: Option<&str>, village: &str) -> Unit {
        Unit {
            team_id: team.map(Into::into),
            village_id: village.into(),
            township: "yongning".into(),
        }
    }

    fn crews() -> BTreeMap<String, Vec<Crew>> {
        BTreeMap::from([
            (
                "aurora".to_owned(),
                vec![crew("a1", Some("beiguan")), crew("a2", Some("nanguan"))],
            ),
            ("third".to_owned(), vec![crew("t1", None)]),
        ])
    }

    const DAY: i64 = 20_740;

    #[test]
    fn units_fill_the_earliest_days_in_rank_order_balanced_over_the_team() {
        // Seven units of one team, two technicians, two visits a day each: four a day.
        let units: Vec<Unit> = (0..7).map(|_| unit(Some("aurora"), "beiguan")).collect();
        let mut booked = Booked::new();
        let visits = plan(&units, &crews(), &mut booked, DAY, DAY + 10, 2);
        let days: Vec<i64> = visits
            .iter()
            .map(|v| v.as_ref().expect("planned").1 - DAY)
            .collect();
        // Rank order: the riskiest get the earliest days; a day fills before the next.
        assert_eq!(days, vec![0, 0, 0, 0, 1, 1, 1]);
        let by = |tech: &str| visits.iter().flatten().filter(|(t, _)| t == tech).count();
        assert_eq!((by("a1"), by("a2")), (4, 3), "balanced over the team");
        // The first goes to the technician based in the unit's village.
        assert_eq!(visits[0].as_ref().map(|v| v.0.as_str()), Some("a1"));
        assert_eq!(visits[1].as_ref().map(|v| v.0.as_str()), Some("a2"));
        for ((tech, day), count) in &booked {
            assert!(*count <= 2, "{tech} on {day}: {count}");
        }
    }

    #[test]
    fn the_riskiest_never_waits_longer_than_a_lower_ranked_unit_of_its_team() {
        let units: Vec<Unit> = (0..23)
            .map(|n| unit(Some(if n % 3 == 0 { "third" } else { "aurora" }), "nanguan"))
            .collect();
        let mut booked = Booked::new();
        let visits = plan(&units, &crews(), &mut booked, DAY, DAY + 30, 3);
        for team in ["aurora", "third"] {
            let days: Vec<i64> = units
                .iter()
                .zip(&visits)
                .filter(|(u, _)| u.team_id.as_deref() == Some(team))
                .map(|(_, v)| v.as_ref().expect("planned").1)
                .collect();
            let mut sorted = days.clone();
            sorted.sort_unstable();
            assert_eq!(days, sorted, "{team}");
        }
    }

    #[test]
    fn other_campaigns_visits_count_and_a_full_window_leaves_units_unscheduled() {
        let mut booked = Booked::from([(("t1".to_owned(), DAY), 2)]);
        let units = vec![
            unit(Some("third"), "x"),
            unit(Some("third"), "x"),
            unit(Some("third"), "x"),
            unit(None, "x"),
            unit(Some("unknown-team"), "x"),
        ];
        let visits = plan(&units, &crews(), &mut booked, DAY, DAY + 1, 2);
        assert_eq!(
            visits,
            vec![
                Some(("t1".to_owned(), DAY + 1)),
                Some(("t1".to_owned(), DAY + 1)),
                None,
                None,
                None
            ]
        );
    }

    #[test]
    fn a_retry_takes_the_technicians_next_day_with_room_within_the_grace() {
        let mut booked = Booked::from([
            (("a1".to_owned(), DAY + 1), 2),
            (("a1".to_owned(), DAY + 2), 1),
        ]);
        assert_eq!(
            retry_day(&mut booked, "a1", DAY, DAY, DAY + 5, 2),
            Some(DAY + 2)
        );
        assert_eq!(booked[&("a1".to_owned(), DAY + 2)], 2);
        // Not before today, even when the visit was recorded late.
        assert_eq!(
            retry_day(&mut booked, "a1", DAY - 5, DAY + 3, DAY + 5, 2),
            Some(DAY + 3)
        );
        // Past the window, within the grace; beyond it, none.
        assert_eq!(
            retry_day(&mut booked, "a1", DAY + 5, DAY, DAY + 5, 2),
            Some(DAY + 6)
        );
        let mut full: Booked = (0..=RETRY_GRACE_DAYS + 6)
            .map(|d| (("a1".to_owned(), DAY + d), 2))
            .collect();
        assert_eq!(retry_day(&mut full, "a1", DAY, DAY, DAY + 5, 2), None);
    }
}
