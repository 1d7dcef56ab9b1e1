//! Routing: device -> household -> village -> township -> responsibility zone -> team ->
//! technician. In warranty to the vendor's team (free of charge); a vendor without staff in the
//! township delegates to the district's third-party team at the vendor's cost; out of warranty
//! to the third-party team (resident pays parts only); power and gas supply incidents to the
//! utility (a village's heat pumps tripping together to the power utility: the supply voltage
//! first). Within a team, the technician with the fewest open orders, preferring one based in
//! the same village, then the same township.

use super::store::{OrderRow, Store, StoreError};
use crate::registry::{Team, TeamKind, Technician};

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
                |(team, technician)| Assignment {
                    note: format!(
                        "supply incident: to {} ({}) and the village electrician",
                        team.name, team.id
                    ),
                    team,
                    technician,
                },
            ),
        );
    }
    let third_party = || -> Result<Option<(Team, Option<Technician>)>, StoreError> {
        first_staffed(
            store,
            store.teams_covering(township, TeamKind::ThirdParty, None)?,
            order,
        )
    };
    match (order.in_warranty, order.vendor_id.as_deref()) {
        (Some(true), Some(vendor)) => {
            let vendor_teams = store.teams_covering(township, TeamKind::Vendor, Some(vendor))?;
            if let Some((team, technician)) = first_staffed(store, vendor_teams, order)? {
                return Ok(Some(Assignment {
                    note: format!("in warranty: vendor team {} ({}), free of charge", team.name, team.id),
                    team,
                    technician,
                }));
            }
            Ok(third_party()?.map(|(team, technician)| Assignment {
                note: format!(
                    "in warranty, but vendor {vendor} has no staff in {township}: delegated to {} ({}) at the vendor's cost",
                    team.name, team.id
                ),
                team,
                technician,
            }))
        }
        (Some(false), _) => Ok(third_party()?.map(|(team, technician)| Assignment {
            note: format!(
                "out of warranty: third-party team {} ({}); resident pays parts at the unified price list",
                team.name, team.id
            ),
            team,
            technician,
        })),
        // Not in the registry: the district's third party looks at it.
        _ => Ok(third_party()?.map(|(team, technician)| Assignment {
            note: format!(
                "device not in the registry: third-party team {} ({}) to inspect",
                team.name, team.id
            ),
            team,
            technician,
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
    let technician = match technician_id {
        Some(id) => match store
            .technician_loads(team_id)?
            .into_iter()
            .find(|(t, _)| t.id == id)
        {
            Some((technician, _)) => Some(technician),
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
    Ok(Some(Assignment {
        note: format!("assigned to {} ({}){zone}", team.name, team.id),
        team,
        technician,
    }))
}

/// The first team (in id order) that has at least one technician, with its pick.
fn first_staffed(
    store: &Store,
    teams: Vec<Team>,
    order: &OrderRow,
) -> Result<Option<(Team, Option<Technician>)>, StoreError> {
    for team in teams {
        if let Some(technician) = pick_technician(store, &team, order)? {
            return Ok(Some((team, Some(technician))));
        }
    }
    Ok(None)
}

/// Fewest open orders first; ties go to the same village, then the same township, then id.
fn pick_technician(
    store: &Store,
    team: &Team,
    order: &OrderRow,
) -> Result<Option<Technician>, StoreError> {
    let loads = store.technician_loads(&team.id)?;
    let mut best: Option<((i64, u8, String), Technician)> = None;
    for (technician, load) in loads {
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
        let key = (load, proximity, technician.id.clone());
        if best.as_ref().is_none_or(|(k, _)| key < *k) {
            best = Some((key, technician));
        }
    }
    Ok(best.map(|(_, t)| t))
}
