//! Routing: device -> household -> village -> township -> responsibility zone -> team ->
//! technician. In warranty to the vendor's team (free of charge); a vendor without staff in the
//! township delegates to the district's third-party team at the vendor's cost; out of warranty
//! to the third-party team (resident pays parts only); power and gas supply incidents to the
//! utility (a village's heat pumps tripping together to the power utility: the supply voltage
//! first).
//!
//! Within the team, [`pick_technician`]: those with the skill the order needs (a heat pump:
//! `heat_pump`; a gas boiler: `boiler`, and `gas` for a gas-side problem; nobody recorded: all),
//! then the earliest predicted arrival (now + their queue × [`MINUTES_PER_QUEUED_ORDER`] + the
//! travel from their base by `travel.csv`, slower on a snow day), ties to the one with the
//! order's suggested parts on their van, then the fewest open orders, then id. Where the registry
//! has no travel time to the order's village, the fewest open orders first, preferring one based
//! in the same village, then the same township (the ordering before travel times were known).
//! [`Assignment::arrival_minutes`] lets the caller check the on-site clock at dispatch.

use super::stock;
use super::store::{OrderRow, Store, StoreError};
use crate::registry::{Skill, Team, TeamKind, Technician};

/// Planning assumption: the minutes each order already in a technician's queue (dispatched or
/// accepted, not yet on site) holds them before they can set off for a new one.
pub const MINUTES_PER_QUEUED_ORDER: i64 = 60;
/// Planning assumption: the minutes to a household in the technician's own village.
pub const LOCAL_MINUTES: i64 = 10;
/// Planning assumption: a snow day makes an ordinary road this much slower. An operator who
/// knows a road better edits its minutes in `travel.csv` (the registry import).
pub const SNOW_FACTOR_ORDINARY: f64 = 1.5;
/// Planning assumption: a snow day makes a mountain road this much slower (see
/// [`SNOW_FACTOR_ORDINARY`]).
pub const SNOW_FACTOR_MOUNTAIN: f64 = 2.0;

/// Order categories that are supply incidents, not repairs.
pub const POWER_SUPPLY: &str = "power_supply";
pub const GAS_SUPPLY: &str = "gas_supply";
/// A village's heat pumps tripping together (rules' `village_heat_pump_trips`): the supply
/// voltage sagging under the village's peak load is the first suspect, so the power utility
/// and the village electrician look first.
pub const VILLAGE_HEAT_PUMP_TRIPS: &str = "village_heat_pump_trips";

/// Who gets an order, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub team: Team,
    pub technician: Option<Technician>,
    /// A sentence for the order's history.
    pub note: String,
    /// When the technician is predicted on site, in minutes after dispatch; `None` when the
    /// registry has no travel time to tell.
    pub arrival_minutes: Option<i64>,
}

impl Assignment {
    fn of(team: Team, picked: Option<Picked>, note: String) -> Assignment {
        match picked {
            Some(picked) => Assignment {
                note: join_note(note, &picked.note),
                team,
                technician: Some(picked.technician),
                arrival_minutes: picked.arrival_minutes,
            },
            None => Assignment {
                team,
                technician: None,
                note,
                arrival_minutes: None,
            },
        }
    }
}

/// `note`, then `more` after a semicolon when there is more to say.
fn join_note(note: String, more: &str) -> String {
    if more.is_empty() {
        note
    } else {
        format!("{note}; {more}")
    }
}

/// Picks the team and technician for `order`, or `None` when no team covers it.
pub fn route(store: &Store, order: &OrderRow) -> Result<Option<Assignment>, StoreError> {
    let township = order.township.as_str();
    let utility = match order.category.as_str() {
        POWER_SUPPLY | VILLAGE_HEAT_PUMP_TRIPS => Some(TeamKind::PowerUtility),
        GAS_SUPPLY => Some(TeamKind::GasUtility),
        _ => None,
    };
    if let Some(kind) = utility {
        return Ok(
            first_staffed(store, store.teams_covering(township, kind, None)?, order)?.map(
                |(team, picked)| {
                    let note = format!(
                        "supply incident: to {} ({}) and the village electrician",
                        team.name, team.id
                    );
                    Assignment::of(team, picked, note)
                },
            ),
        );
    }
    let third_party = || -> Result<Option<(Team, Option<Picked>)>, StoreError> {
        first_staffed(
            store,
            store.teams_covering(township, TeamKind::ThirdParty, None)?,
            order,
        )
    };
    match (order.in_warranty, order.vendor_id.as_deref()) {
        (Some(true), Some(vendor)) => {
            let vendor_teams = store.teams_covering(township, TeamKind::Vendor, Some(vendor))?;
            if let Some((team, picked)) = first_staffed(store, vendor_teams, order)? {
                let note = format!("in warranty: vendor team {} ({}), free of charge", team.name, team.id);
                return Ok(Some(Assignment::of(team, picked, note)));
            }
            Ok(third_party()?.map(|(team, picked)| {
                let note = format!(
                    "in warranty, but vendor {vendor} has no staff in {township}: delegated to {} ({}) at the vendor's cost",
                    team.name, team.id
                );
                Assignment::of(team, picked, note)
            }))
        }
        (Some(false), _) => Ok(third_party()?.map(|(team, picked)| {
            let note = format!(
                "out of warranty: third-party team {} ({}); resident pays parts at the unified price list",
                team.name, team.id
            );
            Assignment::of(team, picked, note)
        })),
        // Not in the registry: the district's third party looks at it.
        _ => Ok(third_party()?.map(|(team, picked)| {
            let note = format!(
                "device not in the registry: third-party team {} ({}) to inspect",
                team.name, team.id
            );
            Assignment::of(team, picked, note)
        })),
    }
}

/// Whether `township` is in `team`'s responsibility zone.
pub fn covers(team: &Team, township: &str) -> bool {
    team.townships.iter().any(|t| t == township)
}

/// Assigns `order` to a named team (and technician, if given): manual dispatch. `None` when
/// the team does not exist or the technician is not in it. A team outside the order's
/// township is assigned (an operator may send a neighbouring team) with that said in the note;
/// whether the caller may do so is [`covers`] and the caller's to check.
pub fn assign_to(
    store: &Store,
    order: &OrderRow,
    team_id: &str,
    technician_id: Option<&str>,
) -> Result<Option<Assignment>, StoreError> {
    let Some(team) = store.team(team_id)? else {
        return Ok(None);
    };
    let picked = match technician_id {
        Some(id) => match store
            .technician_loads(team_id)?
            .into_iter()
            .find(|(t, _)| t.id == id)
        {
            Some((technician, _)) => Some(named(store, technician, order)?),
            None => return Ok(None),
        },
        None => pick_technician(store, &team, order)?,
    };
    let zone = if covers(&team, &order.township) {
        String::new()
    } else {
        format!(
            ", outside its zone ({}) for township {}",
            team.townships.join(", "),
            order.township
        )
    };
    let note = format!("assigned to {} ({}){zone}", team.name, team.id);
    Ok(Some(Assignment::of(team, picked, note)))
}

/// The technician picked within a team, with what dispatch predicted and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Picked {
    pub technician: Technician,
    /// Minutes after dispatch the technician is predicted on site, when travel times tell.
    pub arrival_minutes: Option<i64>,
    /// Why this one (empty when nothing beyond the team's routing was known).
    pub note: String,
}

/// The first team (in id order) that has at least one technician, with its pick.
fn first_staffed(
    store: &Store,
    teams: Vec<Team>,
    order: &OrderRow,
) -> Result<Option<(Team, Option<Picked>)>, StoreError> {
    for team in teams {
        if let Some(picked) = pick_technician(store, &team, order)? {
            return Ok(Some((team, Some(picked))));
        }
    }
    Ok(None)
}

/// The skills an order needs: a heat pump's `heat_pump`; a gas boiler's `boiler`, and `gas` for
/// a gas-side problem ([`GAS_SIDE_PROBLEMS`], by [`stock::problem_of`]). Supply incidents and
/// unregistered devices need none.
pub fn skills_needed(store: &Store, order: &OrderRow) -> Result<Vec<Skill>, StoreError> {
    if matches!(
        order.category.as_str(),
        POWER_SUPPLY | GAS_SUPPLY | VILLAGE_HEAT_PUMP_TRIPS
    ) {
        return Ok(Vec::new());
    }
    let kind = store
        .registered_device(&order.device_id)?
        .map(|device| device.kind)
        .unwrap_or_default();
    Ok(match kind.as_str() {
        "heat_pump" => vec![Skill::HeatPump],
        "gas_boiler" => {
            let problem = stock::problem_of(&order.category, &order.summary);
            if GAS_SIDE_PROBLEMS.contains(&problem.as_str()) {
                vec![Skill::Boiler, Skill::Gas]
            } else {
                vec![Skill::Boiler]
            }
        }
        _ => Vec::new(),
    })
}

/// A boiler's problems on the gas side, which need a gas-certified technician.
pub const GAS_SIDE_PROBLEMS: [&str; 4] =
    ["ignition_failure", "flame_loss", "gas_supply", "gas_check"];

/// How a technician gets from their base to a village.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leg {
    /// Minutes, snow included.
    pub minutes: i64,
    pub mountain: bool,
    /// Within the technician's own village ([`LOCAL_MINUTES`]).
    pub local: bool,
}

/// `minutes` of a normal day on a road, on a snow day if `snow`.
pub fn with_snow(minutes: i64, mountain: bool, snow: bool) -> i64 {
    if !snow {
        return minutes;
    }
    let factor = if mountain {
        SNOW_FACTOR_MOUNTAIN
    } else {
        SNOW_FACTOR_ORDINARY
    };
    (minutes as f64 * factor).ceil() as i64
}

/// The way from `technician`'s base (their home village's township service point; their own
/// village: [`LOCAL_MINUTES`]) to `village`, when the registry knows it.
pub fn leg(
    store: &Store,
    technician: &Technician,
    village: &str,
    snow: bool,
) -> Result<Option<Leg>, StoreError> {
    let Some(home) = &technician.home_village_id else {
        return Ok(None);
    };
    if home == village {
        return Ok(Some(Leg {
            minutes: LOCAL_MINUTES,
            mountain: false,
            local: true,
        }));
    }
    let Some(township) = store.township_of_village(home)? else {
        return Ok(None);
    };
    Ok(store.travel_time(&township, village)?.map(|t| Leg {
        minutes: with_snow(t.minutes, t.mountain, snow),
        mountain: t.mountain,
        local: false,
    }))
}

/// One technician of the team weighed for an order.
struct Candidate {
    technician: Technician,
    load: i64,
    queue: i64,
    proximity: u8,
    leg: Option<Leg>,
    /// Every suggested part is available on the van (`false` when none is suggested).
    parts_on_van: bool,
}

impl Candidate {
    fn arrival(&self) -> Option<i64> {
        self.leg
            .map(|leg| self.queue * MINUTES_PER_QUEUED_ORDER + leg.minutes)
    }

    /// Why, in words: the predicted arrival and its parts, and the parts on the van.
    fn explain(&self, parts: &[(&str, i64)], snow: bool) -> String {
        let mut note = format!("technician {}", self.technician.id);
        match (self.arrival(), self.leg) {
            (Some(arrival), Some(leg)) => {
                let road = match (leg.local, leg.mountain, snow) {
                    (true, _, _) => " in their own village".to_owned(),
                    (false, true, true) => " on a mountain road in snow".to_owned(),
                    (false, true, false) => " on a mountain road".to_owned(),
                    (false, false, true) => " in snow".to_owned(),
                    (false, false, false) => String::new(),
                };
                note.push_str(&format!(
                    " predicted on site in {arrival} min (queue {} x {MINUTES_PER_QUEUED_ORDER} min + {} min travel{road})",
                    self.queue, leg.minutes
                ));
            }
            _ => note.push_str(" (no travel time from their base: by open orders and proximity)"),
        }
        if !parts.is_empty() {
            let list = parts
                .iter()
                .map(|(code, q)| format!("{code} x{q}"))
                .collect::<Vec<_>>()
                .join(", ");
            if self.parts_on_van {
                note.push_str(&format!("; parts on the van: {list}"));
            } else {
                note.push_str(&format!("; parts not all on the van: {list}"));
            }
        }
        note
    }
}

/// The technician of `team` for `order` (see the module's doc), `None` for a team without one.
pub fn pick_technician(
    store: &Store,
    team: &Team,
    order: &OrderRow,
) -> Result<Option<Picked>, StoreError> {
    let loads = store.technician_loads(&team.id)?;
    if loads.is_empty() {
        return Ok(None);
    }
    let needed = skills_needed(store, order)?;
    let mut skilled = Vec::new();
    let mut recorded = false;
    for (technician, load) in &loads {
        let skills = store.technician_skills(&technician.id)?;
        recorded |= skills.is_some();
        if skills.is_none_or(|has| needed.iter().all(|s| has.contains(s))) {
            skilled.push((technician.clone(), *load));
        }
    }
    let skill_note = skill_note(&needed, recorded, skilled.len(), loads.len());
    let pool = if skilled.is_empty() { loads } else { skilled };
    let roads = match &order.village_id {
        Some(village) => store.village_has_travel(village)?,
        None => false,
    };
    let snow = roads && store.snow()?;
    let parts = suggested(store, order)?;
    let mut candidates = Vec::with_capacity(pool.len());
    for (technician, load) in pool {
        candidates.push(candidate(
            store, technician, load, order, roads, snow, &parts,
        )?);
    }
    // Known arrivals first, earliest first, ties to the parts on the van; then (and without
    // travel data, only) the fewest open orders, the same village, the same township, the id.
    let best = candidates.into_iter().min_by(|a, b| {
        let key = |c: &Candidate| {
            (
                c.arrival().is_none(),
                c.arrival().unwrap_or(0),
                roads && !c.parts_on_van,
                c.load,
                c.proximity,
                c.technician.id.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    Ok(best.map(|best| {
        let mut note = skill_note;
        if roads {
            note = join_note(note, &best.explain(&parts, snow));
            if note.starts_with("; ") {
                note.drain(..2);
            }
        }
        Picked {
            arrival_minutes: best.arrival(),
            technician: best.technician,
            note,
        }
    }))
}

/// The skill part of a dispatch note: empty when none is needed or none is recorded in the team.
fn skill_note(needed: &[Skill], recorded: bool, skilled: usize, all: usize) -> String {
    if needed.is_empty() || !recorded {
        return String::new();
    }
    let names = needed
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" + ");
    if skilled == 0 {
        format!("nobody in the team has the skill {names}: any technician")
    } else {
        format!("skill {names}: {skilled} of {all}")
    }
}

/// The parts suggested for `order`'s problem on its device, as the stock reserves them.
fn suggested(store: &Store, order: &OrderRow) -> Result<Vec<(&'static str, i64)>, StoreError> {
    let kind = store
        .registered_device(&order.device_id)?
        .map(|device| device.kind)
        .unwrap_or_default();
    let problem = stock::problem_of(&order.category, &order.summary);
    Ok(stock::suggested_parts(&problem, &kind).to_vec())
}

/// A technician weighed for `order`: their load, queue, proximity and, where the road model
/// applies, their way there and whether their van holds the parts.
fn candidate(
    store: &Store,
    technician: Technician,
    load: i64,
    order: &OrderRow,
    roads: bool,
    snow: bool,
    parts: &[(&str, i64)],
) -> Result<Candidate, StoreError> {
    let proximity = match (&technician.home_village_id, &order.village_id) {
        (Some(home), Some(village)) if home == village => 0,
        (Some(home), _) => {
            if store.township_of_village(home)?.as_deref() == Some(order.township.as_str()) {
                1
            } else {
                2
            }
        }
        (None, _) => 2,
    };
    let (leg, queue, parts_on_van) = match (&order.village_id, roads) {
        (Some(village), true) => {
            let leg = leg(store, &technician, village, snow)?;
            let queue = store.technician_queue(&technician.id)?;
            let mut on_van = !parts.is_empty();
            for (code, quantity) in parts {
                on_van &= store.van_available(&technician.id, code)? >= *quantity;
            }
            (leg, queue, on_van)
        }
        _ => (None, 0, false),
    };
    Ok(Candidate {
        technician,
        load,
        queue,
        proximity,
        leg,
        parts_on_van,
    })
}

/// A technician an operator named: what dispatch predicts for them.
fn named(store: &Store, technician: Technician, order: &OrderRow) -> Result<Picked, StoreError> {
    let arrival_minutes = match &order.village_id {
        Some(village) if store.village_has_travel(village)? => {
            let snow = store.snow()?;
            let queue = store.technician_queue(&technician.id)?;
            leg(store, &technician, village, snow)?
                .map(|leg| queue * MINUTES_PER_QUEUED_ORDER + leg.minutes)
        }
        _ => None,
    };
    Ok(Picked {
        note: arrival_minutes
            .map(|m| format!("technician {} predicted on site in {m} min", technician.id))
            .unwrap_or_default(),
        arrival_minutes,
        technician,
    })
}

/// The 督办 to raise at dispatch when the predicted arrival (`at_ms` + the assignment's
/// minutes) is after the order's on-site deadline and its class escalates: the note, naming
/// both. `None` when the technician is predicted in time, nothing is predicted, the class does
/// not escalate, or the on-site stage is reached or escalated already.
pub fn late_arrival(
    config: &super::sla::SlaConfig,
    order: &OrderRow,
    assignment: &Assignment,
    at_ms: i64,
) -> Option<String> {
    use super::sla::{clock_start, SlaClass, Stage};
    let minutes = assignment.arrival_minutes?;
    let class = SlaClass::of(order);
    let clocks = config.clocks(class);
    if !clocks.escalate
        || Stage::OnSite.reached_at(order).is_some()
        || order.sla_flags & Stage::OnSite.breached_bit() != 0
    {
        return None;
    }
    let deadline = clock_start(order).saturating_add(clocks.deadline_ms(Stage::OnSite));
    let arrival = at_ms.saturating_add(minutes.saturating_mul(60_000));
    (arrival > deadline).then(|| {
        format!(
            "督办: nobody can be on site in time: predicted arrival {} ({}) is after the {} on_site deadline {}; escalated at dispatch to township {} and the centre",
            cst_time(arrival),
            assignment
                .technician
                .as_ref()
                .map_or("no technician", |t| t.id.as_str()),
            class.as_str(),
            cst_time(deadline),
            order.township
        )
    })
}

/// `YYYY-MM-DD HH:MM` in China Standard Time.
pub fn cst_time(ms: i64) -> String {
    const DAY_MS: i64 = 24 * 3_600_000;
    let minute = (ms + 8 * 3_600_000).rem_euclid(DAY_MS) / 60_000;
    format!(
        "{} {:02}:{:02}",
        super::calendar::cst_date_string(ms),
        minute / 60,
        minute % 60
    )
}

/// One visit of a technician's day ([`day_route`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct RouteStop {
    pub order_id: i64,
    pub state: String,
    pub village_id: Option<String>,
    pub household_id: Option<String>,
    pub summary: String,
    /// Minutes from the previous stop (or the base), snow included; `None`: no travel data.
    pub travel_minutes: Option<i64>,
    /// Predicted arrival, Unix ms: the previous stops' travel and work
    /// ([`MINUTES_PER_QUEUED_ORDER`] each) from now; an order on site: when it was reached.
    pub arrival_ms: Option<i64>,
}

/// Where the technician is while the day is planned.
#[derive(Clone, PartialEq)]
enum Position {
    Base,
    Village(String),
    Unknown,
}

/// The travel data a route is planned with: the technician's township point and the snow.
struct RouteTravel<'a> {
    store: &'a Store,
    technician: &'a Technician,
    township: Option<String>,
    snow: bool,
}

impl<'a> RouteTravel<'a> {
    fn of(store: &'a Store, technician: &'a Technician) -> Result<Self, StoreError> {
        let township = match &technician.home_village_id {
            Some(home) => store.township_of_village(home)?,
            None => None,
        };
        Ok(Self {
            store,
            technician,
            township,
            snow: store.snow()?,
        })
    }

    /// Snow-adjusted minutes from the technician's township point to a village.
    fn point_to(&self, village: &str) -> Result<Option<i64>, StoreError> {
        let Some(township) = &self.township else {
            return Ok(None);
        };
        Ok(self
            .store
            .travel_time(township, village)?
            .map(|t| with_snow(t.minutes, t.mountain, self.snow)))
    }

    /// Minutes from `position` to an order's village, when the data tells.
    fn minutes(
        &self,
        position: &Position,
        village: Option<&str>,
    ) -> Result<Option<i64>, StoreError> {
        Ok(match (village, position) {
            (Some(v), Position::Village(a)) if a == v => Some(LOCAL_MINUTES),
            (Some(v), Position::Base) => {
                leg(self.store, self.technician, v, self.snow)?.map(|l| l.minutes)
            }
            (Some(v), Position::Village(a)) => match (self.point_to(a)?, self.point_to(v)?) {
                (Some(a), Some(b)) => Some((a - b).abs().max(LOCAL_MINUTES)),
                _ => None,
            },
            _ => None,
        })
    }

    /// The next stop from `position`: an order on site at once, else the nearest one with
    /// travel data, else the first (oldest) one: its index and minutes.
    fn nearest(
        &self,
        open: &[OrderRow],
        position: &Position,
    ) -> Result<Option<(usize, Option<i64>)>, StoreError> {
        use super::model::OrderState;
        let mut best: Option<(usize, Option<i64>)> = None;
        for (index, order) in open.iter().enumerate() {
            if order.state == OrderState::OnSite {
                return Ok(Some((index, Some(0))));
            }
            let minutes = self.minutes(position, order.village_id.as_deref())?;
            let better = match (&best, minutes) {
                (None, _) => true,
                (Some((_, None)), Some(_)) => true,
                (Some((_, Some(b))), Some(m)) => m < *b,
                _ => false,
            };
            if better {
                best = Some((index, minutes));
            }
        }
        Ok(best)
    }
}

/// A technician's open orders (dispatched, accepted, on site) in visiting order: those on site
/// first, then greedily the nearest next by the travel data, with the cumulative predicted
/// arrival of each from `now_ms`; orders with no travel data last, oldest first, unpredicted.
///
/// Between two villages the travel data (service point to village) tells only so much: the way
/// from village `a` to village `b` is taken as the difference of their minutes from the
/// technician's township point, at least [`LOCAL_MINUTES`] (villages along the roads out of the
/// point: a planning assumption).
pub fn day_route(
    store: &Store,
    technician: &Technician,
    now_ms: i64,
) -> Result<Vec<RouteStop>, StoreError> {
    use super::model::OrderState;
    let mut open: Vec<OrderRow> = store
        .open_orders_of_technician(&technician.id, 500)?
        .into_iter()
        .filter(|o| {
            matches!(
                o.state,
                OrderState::Dispatched | OrderState::Accepted | OrderState::OnSite
            )
        })
        .collect();
    open.sort_by_key(|o| (o.state != OrderState::OnSite, o.created_at_ms, o.id));
    let travel = RouteTravel::of(store, technician)?;
    let mut stops = Vec::with_capacity(open.len());
    let mut clock = now_ms;
    let mut position = Position::Base;
    while !open.is_empty() {
        let best = travel.nearest(&open, &position)?;
        let Some((index, minutes)) = best else {
            break;
        };
        let order = open.remove(index);
        let arrival_ms = if order.state == OrderState::OnSite {
            order.on_site_at_ms
        } else {
            match (minutes, &position) {
                (Some(m), p) if *p != Position::Unknown => Some(clock + m * 60_000),
                _ => None,
            }
        };
        match arrival_ms {
            Some(at) => {
                clock = clock.max(at) + MINUTES_PER_QUEUED_ORDER * 60_000;
                position = order
                    .village_id
                    .clone()
                    .map_or(Position::Unknown, Position::Village);
            }
            None => position = Position::Unknown,
        }
        stops.push(RouteStop {
            order_id: order.id,
            state: order.state.as_str().to_owned(),
            village_id: order.village_id,
            household_id: order.household_id,
            summary: order.summary,
            travel_minutes: if order.state == OrderState::OnSite {
                None
            } else {
                minutes
            },
            arrival_ms,
        });
    }
    Ok(stops)
}
