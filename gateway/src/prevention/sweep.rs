//! The cold-wave sweep: assess every registered unit ([`assess`]: its facts from the store,
//! the registry and the live fleet, scored by [`super::risk::score`]), plan which of the units
//! under a forecast cold wave get a preventive visit or a call within the capacity ([`plan`],
//! pure), and open them ([`open`]) in one store transaction that also records each one in
//! `prevention_sweeps`, so a unit gets one visit or call per cold wave, whoever runs the sweep
//! and however often, before or after a restart.
//!
//! Planning, in order:
//! 1. A unit is under a wave when its village's forecast has one, or (when the forecast has no
//!    rows for its village) its township's.
//! 2. A unit that already has a sweep record for the wave (the same wave id, or a wave whose
//!    coldest period is within [`SAME_WAVE_MS`] of this one's: a forecast that moved the cold
//!    night by a day is the same cold wave) is listed as `already_opened`; one with an order
//!    awaiting repair as `order_open` (a technician is going anyway).
//! 3. An offline box is called (`contact_household`): a silent box is most often the network,
//!    and the household or the caretaker can say in a minute whether the heating runs. Other
//!    units with a score of at least `visit_min_score` get a preventive visit, those of at least
//!    `call_min_score` a call; the rest are not listed.
//! 4. The units are ranked by score, then by the shorter time to a cold room at the wave's
//!    minimum (`risk::hours_to_cold`), then by device id, and take each township's remaining
//!    capacity of their kind for the day (China Standard Time) in that order; the rest are
//!    `over_capacity`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::risk::{self, CopSample, Reason, Signal, UnitFacts};
use super::weather::{self, ColdWave, ForecastPoint};
use super::PreventionConfig;
use crate::auth::{Principal, Role};
use crate::fleet::{DeviceStatus, Fleet};
use crate::metrics::Metrics;
use crate::orders::model::PREVENTIVE_VISIT_CATEGORY;
use crate::orders::store::{NewOrder, OrderUpdate, PreventionUnit, StoreError, SweepRecord};
use crate::orders::{OrderAction, OrderService, CALL_TASK_CATEGORY};

/// Two waves of one unit whose coldest periods are this close are one cold wave.
pub const SAME_WAVE_MS: i64 = 72 * 3_600_000;
/// How far back sweep records are read (beyond any wave a forecast can still name).
pub const RECORDS_KEPT_MS: i64 = 30 * 86_400_000;
/// Order categories that are not repairs, for the count of repairs this season.
const NOT_REPAIRS: [&str; 6] = [
    CALL_TASK_CATEGORY,
    PREVENTIVE_VISIT_CATEGORY,
    crate::orders::campaigns::INSPECTION_CATEGORY,
    crate::orders::dispatch::POWER_SUPPLY,
    crate::orders::dispatch::GAS_SUPPLY,
    crate::orders::dispatch::VILLAGE_HEAT_PUMP_TRIPS,
];
/// The actor of order events a sweep writes.
const ACTOR_PREFIX: &str = "prevention";

/// One unit with its risk, as the API lists it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct UnitRisk {
    pub device_id: String,
    /// `heat_pump` or `gas_boiler`.
    pub kind: String,
    pub household_id: String,
    pub village_id: String,
    pub township: String,
    pub vendor_id: String,
    /// Within the 5-year warranty today.
    pub in_warranty: bool,
    pub vulnerable: bool,
    /// Its box is offline or it has been silent longer than `prevention.offline_after`.
    pub offline: bool,
    /// The latest room temperature, °C, when reported.
    pub indoor_temp_c: Option<f64>,
    /// 0 to 100.
    pub score: u32,
    /// Why, largest first.
    pub reasons: Vec<Reason>,
    /// Its order awaiting repair, if any.
    pub open_order_id: Option<i64>,
}

/// Visits and calls a sweep may open per township per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Capacity {
    pub visits_per_township: u32,
    pub calls_per_township: u32,
}

/// Where a planned unit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within the capacity: the sweep opens it.
    Planned,
    /// Beyond the township's capacity for the day.
    OverCapacity,
    /// Opened by this sweep.
    Opened,
    /// A sweep opened it for this wave before.
    AlreadyOpened,
    /// The unit has an order awaiting repair; no visit is added.
    OrderOpen,
}

/// One unit under a cold wave, as the sweep plans it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct PlannedUnit {
    pub unit: UnitRisk,
    /// The wave's id (`area@date`).
    pub wave_id: String,
    /// The wave's minimum, °C.
    pub forecast_min_c: f64,
    /// Its coldest period, Unix ms.
    pub coldest_at_ms: i64,
    /// Hours until the room would be cold at that minimum if the heat stopped.
    pub hours_to_cold: Option<f64>,
    /// `preventive_visit` or `contact_household`.
    pub action: String,
    pub status: Status,
    /// The order opened for it (now or before), or its open order.
    pub order_id: Option<i64>,
}

/// What a sweep would do now.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SweepPlan {
    /// The time it was planned for (the order service's clock), Unix ms.
    pub now_ms: i64,
    pub capacity: Capacity,
    /// The cold waves ahead, by area.
    pub waves: Vec<ColdWave>,
    /// The units under them, in rank order.
    pub units: Vec<PlannedUnit>,
}

impl SweepPlan {
    /// Units left for want of capacity.
    pub fn over_capacity(&self) -> usize {
        self.units
            .iter()
            .filter(|u| u.status == Status::OverCapacity)
            .count()
    }
}

/// One order a sweep opened.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Opened {
    pub order_id: i64,
    pub device_id: String,
    pub township: String,
    /// `preventive_visit` or `contact_household`.
    pub category: String,
    pub score: u32,
    pub wave_id: String,
}

/// What a sweep did: the orders it opened (in rank order) and the plan with their statuses.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct SweepOutcome {
    pub opened: Vec<Opened>,
    pub plan: SweepPlan,
}

/// The start of the heating season `now_ms` is in or after: the latest 1 November (CST) at or
/// before it. The scheme's season runs 15 November to 15 March; the first two weeks before it
/// catch the start-up failures of the pre-season inspection. Between seasons, the last
/// season's repairs are the history a pre-season inspection wants.
pub fn season_start_ms(now_ms: i64) -> i64 {
    let (year, month, _) = wire::calendar::cst_date(now_ms);
    let year = if month >= 11 { year } else { year - 1 };
    wire::calendar::cst_midnight_ms(year, 11, 1)
}

/// Whole years between an installation date `YYYY-MM-DD` and `now_ms`.
fn age_years(installed_on: &str, now_ms: i64) -> Option<f64> {
    let (year, month, day) = crate::registry::parse_date(installed_on)?;
    let installed = wire::calendar::cst_midnight_ms(year, month, day);
    (installed <= now_ms).then(|| (now_ms - installed) as f64 / (365.25 * 86_400_000.0))
}

/// The latest COP of a running heat pump that delivers real heat (standby power dominates a
/// COP at very low load), not defrosting.
fn cop_sample(state: &crate::fleet::DeviceState) -> Option<CopSample> {
    let values = &state.values;
    let power = values.get("electric_power_w")?;
    let heat = values.get("heat_output_w")?;
    let outdoor = values.get("outdoor_temp_c")?;
    let running = values.get("running").unwrap_or(1.0) >= 0.5;
    let defrosting = values.get("defrost_active").unwrap_or(0.0) >= 0.5;
    (running && !defrosting && power >= 300.0 && heat > 0.0).then(|| CopSample {
        device_id: state.device_id.clone(),
        profile: state.profile.clone().unwrap_or_default(),
        outdoor_c: outdoor,
        cop: heat / power,
    })
}

/// Every registered unit with its facts scored, highest score first (then device id).
pub async fn assess(
    orders: &OrderService,
    fleet: &Arc<Fleet>,
    config: &PreventionConfig,
    now_ms: i64,
) -> Result<Vec<UnitRisk>, StoreError> {
    let lookback = i64::try_from(config.signal_lookback.as_millis()).unwrap_or(i64::MAX);
    let since = now_ms.saturating_sub(lookback);
    let season = season_start_ms(now_ms);
    let (units, signals, repairs, open) = orders
        .with_store(move |store| {
            Ok((
                store.prevention_units()?,
                store.alert_signals_since(since)?,
                store.repair_counts_since(season, &NOT_REPAIRS)?,
                store.open_orders_by_device()?,
            ))
        })
        .await?;
    let mut signals_of: HashMap<String, Vec<Signal>> = HashMap::new();
    for (device, rule_id, active) in signals {
        signals_of
            .entry(device)
            .or_default()
            .push(Signal { rule_id, active });
    }
    let states: HashMap<String, crate::fleet::DeviceState> = fleet
        .list(None)
        .into_iter()
        .map(|s| (s.device_id.clone(), s))
        .collect();
    let samples: Vec<CopSample> = states.values().filter_map(cop_sample).collect();
    let mut evidence = Evidence {
        cop_ratios: risk::fleet_cop_ratios(&samples),
        signals: signals_of,
        states,
        repairs,
        open,
        offline_after: i64::try_from(config.offline_after.as_millis()).unwrap_or(i64::MAX),
        today: wire::calendar::cst_date_string(now_ms),
        now_ms,
    };
    let mut assessed: Vec<UnitRisk> = units
        .into_iter()
        .map(|unit| evidence.unit_risk(unit))
        .collect();
    assessed.sort_by(|a, b| {
        b.score
            .cmp(&a.score)
            .then_with(|| a.device_id.cmp(&b.device_id))
    });
    Ok(assessed)
}

/// What the sweep knows of each device beside the registry.
struct Evidence {
    /// Its alert signals within the lookback.
    signals: HashMap<String, Vec<Signal>>,
    /// Its latest state in the live fleet.
    states: HashMap<String, crate::fleet::DeviceState>,
    /// Its repairs this season.
    repairs: HashMap<String, u32>,
    /// Its order awaiting repair.
    open: HashMap<String, i64>,
    /// Its COP against the fleet's at the same outdoor temperature.
    cop_ratios: BTreeMap<String, f64>,
    offline_after: i64,
    /// Today's date (CST), for the warranty.
    today: String,
    now_ms: i64,
}

impl Evidence {
    /// One unit's facts, scored.
    fn unit_risk(&mut self, unit: PreventionUnit) -> UnitRisk {
        let now_ms = self.now_ms;
        let state = self.states.get(&unit.device_id);
        // A unit the gateway has not heard from since it started is unknown, not offline:
        // right after a restart the whole fleet would be.
        let offline = state.is_some_and(|s| {
            s.status == DeviceStatus::Offline
                || s.last_ts_ms
                    .is_some_and(|ts| now_ms.saturating_sub(ts) > self.offline_after)
        });
        let facts = UnitFacts {
            vulnerable: unit.vulnerable,
            offline,
            active_fault: state.is_some_and(|s| s.fault.is_some()),
            signals: self.signals.remove(&unit.device_id).unwrap_or_default(),
            repairs_this_season: self.repairs.get(&unit.device_id).copied().unwrap_or(0),
            age_years: age_years(&unit.installed_on, now_ms),
            runtime_h: state.and_then(|s| s.values.get("runtime_h")),
            cop_vs_fleet: self.cop_ratios.get(&unit.device_id).copied(),
        };
        let scored = risk::score(&facts);
        UnitRisk {
            in_warranty: self.today <= unit.warranty_until,
            indoor_temp_c: state.and_then(|s| s.values.get("indoor_temp_c")),
            open_order_id: self.open.get(&unit.device_id).copied(),
            score: scored.score,
            reasons: scored.reasons,
            offline,
            device_id: unit.device_id,
            kind: unit.kind,
            household_id: unit.household_id,
            village_id: unit.village_id,
            township: unit.township,
            vendor_id: unit.vendor_id,
            vulnerable: unit.vulnerable,
        }
    }
}

/// What a sweep would open now: see the module's documentation. Pure.
pub fn plan(
    units: &[UnitRisk],
    forecast: &[ForecastPoint],
    records: &[SweepRecord],
    capacity: Capacity,
    now_ms: i64,
    config: &PreventionConfig,
) -> SweepPlan {
    let waves = weather::cold_waves(forecast, now_ms, &config.wave_rule());
    let mut listed = units_under_waves(units, forecast, &waves, records, config);
    listed.sort_by(|a, b| {
        b.unit
            .score
            .cmp(&a.unit.score)
            .then_with(|| {
                let hours = |p: &PlannedUnit| p.hours_to_cold.unwrap_or(f64::INFINITY);
                hours(a).total_cmp(&hours(b))
            })
            .then_with(|| a.unit.device_id.cmp(&b.unit.device_id))
    });
    apply_capacity(&mut listed, records, capacity, now_ms);
    SweepPlan {
        now_ms,
        capacity,
        waves,
        units: listed,
    }
}

/// The units under a cold wave (their village's, else their township's) that get a visit or a
/// call, each with its status: steps 1 to 3 of the module's documentation.
fn units_under_waves(
    units: &[UnitRisk],
    forecast: &[ForecastPoint],
    waves: &[ColdWave],
    records: &[SweepRecord],
    config: &PreventionConfig,
) -> Vec<PlannedUnit> {
    let by_area: BTreeMap<&str, &ColdWave> = waves.iter().map(|w| (w.area.as_str(), w)).collect();
    let areas: BTreeSet<&str> = forecast.iter().map(|p| p.area.as_str()).collect();
    let model = config.heat_loss();
    let mut listed: Vec<PlannedUnit> = Vec::new();
    for unit in units {
        let wave = if areas.contains(unit.village_id.as_str()) {
            by_area.get(unit.village_id.as_str())
        } else {
            by_area.get(unit.township.as_str())
        };
        let Some(wave) = wave else {
            continue;
        };
        let action = if unit.offline {
            CALL_TASK_CATEGORY
        } else if unit.score >= config.visit_min_score {
            PREVENTIVE_VISIT_CATEGORY
        } else if unit.score >= config.call_min_score {
            CALL_TASK_CATEGORY
        } else {
            continue;
        };
        let earlier = records.iter().find(|r| {
            r.device_id == unit.device_id
                && (r.wave_id == wave.id
                    || (r.wave_coldest_ms - wave.coldest_at_ms).abs() <= SAME_WAVE_MS)
        });
        let (status, order_id) = match (earlier, unit.open_order_id) {
            (Some(record), _) => (Status::AlreadyOpened, Some(record.order_id)),
            (None, Some(open)) => (Status::OrderOpen, Some(open)),
            (None, None) => (Status::Planned, None),
        };
        listed.push(PlannedUnit {
            hours_to_cold: risk::hours_to_cold(&model, unit.indoor_temp_c, wave.min_temp_c),
            unit: unit.clone(),
            wave_id: wave.id.clone(),
            forecast_min_c: wave.min_temp_c,
            coldest_at_ms: wave.coldest_at_ms,
            action: action.to_owned(),
            status,
            order_id,
        });
    }
    listed
}

/// Gives the planned units, in rank order, each township's capacity of their kind left today
/// (what sweeps opened since midnight, CST, counts); the rest are over capacity.
fn apply_capacity(
    listed: &mut [PlannedUnit],
    records: &[SweepRecord],
    capacity: Capacity,
    now_ms: i64,
) {
    let (year, month, day) = wire::calendar::cst_date(now_ms);
    let midnight = wire::calendar::cst_midnight_ms(year, month, day);
    let mut used: HashMap<(&str, &str), u32> = HashMap::new();
    for record in records.iter().filter(|r| r.opened_at_ms >= midnight) {
        *used
            .entry((record.township.as_str(), record.action.as_str()))
            .or_default() += 1;
    }
    let mut left: HashMap<(String, String), u32> = HashMap::new();
    for planned in listed {
        if planned.status != Status::Planned {
            continue;
        }
        let key = (planned.unit.township.clone(), planned.action.clone());
        let remaining = left.entry(key).or_insert_with(|| {
            let limit = if planned.action == PREVENTIVE_VISIT_CATEGORY {
                capacity.visits_per_township
            } else {
                capacity.calls_per_township
            };
            let already = used
                .get(&(planned.unit.township.as_str(), planned.action.as_str()))
                .copied()
                .unwrap_or(0);
            limit.saturating_sub(already)
        });
        if *remaining == 0 {
            planned.status = Status::OverCapacity;
        } else {
            *remaining -= 1;
        }
    }
}

/// The order's summary: the wave, the score and its reasons, the time to a cold room.
fn summary(planned: &PlannedUnit, waves: &[ColdWave]) -> String {
    let wave = waves.iter().find(|w| w.id == planned.wave_id);
    let what = if planned.action == PREVENTIVE_VISIT_CATEGORY {
        "防寒 preventive visit"
    } else {
        "防寒 call: ask the household or the caretaker whether the heating runs"
    };
    let reasons: Vec<String> = planned
        .unit
        .reasons
        .iter()
        .map(|r| format!("{} +{} ({})", r.code, r.weight, r.text))
        .collect();
    let cold = planned.hours_to_cold.map_or_else(String::new, |h| {
        format!("; without heat the home falls to a cold room in about {h:.1} h")
    });
    format!(
        "{what} before the cold wave {} ({}; coldest {:.1} °C on {}): risk {}: {}{cold}",
        planned.wave_id,
        wave.map_or("", |w| w.why.as_str()),
        planned.forecast_min_c,
        wire::calendar::cst_date_string(planned.coldest_at_ms),
        planned.unit.score,
        reasons.join("; "),
    )
}

/// Opens the planned units of `plan`: each order and its sweep record in one store
/// transaction (a unit recorded for the wave meanwhile is skipped), then dispatches the
/// visits through the order service (routing by township and warranty, the team told as for
/// any order). Calls are not dispatched: the hotline desk rings first.
pub async fn open(
    orders: &OrderService,
    metrics: &Arc<Metrics>,
    mut plan: SweepPlan,
    actor: &str,
) -> Result<SweepOutcome, StoreError> {
    let todo: Vec<(usize, NewOrder, SweepRecord)> = plan
        .units
        .iter()
        .enumerate()
        .filter(|(_, p)| p.status == Status::Planned)
        .map(|(index, planned)| {
            let (order, record) = sweep_order(planned, &plan.waves, plan.now_ms, actor);
            (index, order, record)
        })
        .collect();
    if todo.is_empty() {
        return Ok(SweepOutcome {
            opened: Vec::new(),
            plan,
        });
    }
    let created = create_recorded(orders, todo).await?;
    let dispatcher = Principal {
        name: ACTOR_PREFIX.to_owned(),
        role: Role::Operator,
        township: None,
        team: None,
        technician: None,
    };
    let mut opened = Vec::with_capacity(created.len());
    for (index, order_id) in created {
        let Some(planned) = plan.units.get_mut(index) else {
            continue;
        };
        planned.status = Status::Opened;
        planned.order_id = Some(order_id);
        metrics.prevention.order_opened(&planned.action);
        tracing::info!(order = order_id, device = %planned.unit.device_id, township = %planned.unit.township, category = %planned.action, score = planned.unit.score, wave = %planned.wave_id, "cold-wave sweep opened an order");
        if planned.action == PREVENTIVE_VISIT_CATEGORY {
            let dispatch = OrderAction::Dispatch {
                team_id: None,
                technician_id: None,
            };
            if let Err(error) = orders.act(order_id, &dispatcher, dispatch, None).await {
                metrics.prevention.dispatch_failed();
                tracing::warn!(order = order_id, device = %planned.unit.device_id, %error, "preventive visit not dispatched: an operator must dispatch it");
            }
        }
        opened.push(Opened {
            order_id,
            device_id: planned.unit.device_id.clone(),
            township: planned.unit.township.clone(),
            category: planned.action.clone(),
            score: planned.unit.score,
            wave_id: planned.wave_id.clone(),
        });
    }
    Ok(SweepOutcome { opened, plan })
}

/// The order a planned unit gets, and its sweep record (the order id filled in once created).
fn sweep_order(
    planned: &PlannedUnit,
    waves: &[ColdWave],
    now_ms: i64,
    actor: &str,
) -> (NewOrder, SweepRecord) {
    let order = NewOrder {
        episode_id: None,
        device_id: planned.unit.device_id.clone(),
        household_id: Some(planned.unit.household_id.clone()),
        village_id: Some(planned.unit.village_id.clone()),
        vendor_id: Some(planned.unit.vendor_id.clone()),
        township: planned.unit.township.clone(),
        category: planned.action.clone(),
        priority: "low".to_owned(),
        source: ACTOR_PREFIX.to_owned(),
        summary: summary(planned, waves),
        created_at_ms: now_ms,
        actor: actor.to_owned(),
        pre_emptive: true,
        in_warranty: Some(planned.unit.in_warranty),
    };
    let record = SweepRecord {
        device_id: planned.unit.device_id.clone(),
        wave_id: planned.wave_id.clone(),
        wave_coldest_ms: planned.coldest_at_ms,
        township: planned.unit.township.clone(),
        action: planned.action.clone(),
        order_id: 0,
        score: planned.unit.score,
        opened_at_ms: now_ms,
    };
    (order, record)
}

/// Creates each order with its sweep record in one store transaction; a call task waits for
/// its call. A unit recorded for the wave since the plan was made undoes the whole batch.
/// Returns (index in the plan, order id) of each order created.
async fn create_recorded(
    orders: &OrderService,
    todo: Vec<(usize, NewOrder, SweepRecord)>,
) -> Result<Vec<(usize, i64)>, StoreError> {
    orders
        .with_store(move |store| {
            store.batch(|store| {
                let mut created = Vec::new();
                for (index, order, mut record) in todo {
                    let Some(id) = store.create_order(&order)? else {
                        continue;
                    };
                    record.order_id = id;
                    if !store.record_sweep(&record)? {
                        return Err(StoreError::Corrupt(format!(
                            "device {} was swept for {} concurrently",
                            record.device_id, record.wave_id
                        )));
                    }
                    if order.category == CALL_TASK_CATEGORY {
                        store.append_event(
                            id,
                            order.created_at_ms,
                            "dispatcher:auto",
                            "call_first",
                            "call the household or the village caretaker first; dispatch a technician if nobody answers or the heating is out",
                            &OrderUpdate::default(),
                        )?;
                    }
                    created.push((index, id));
                }
                Ok(created)
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    /// 2026-12-10T00:00+08:00.
    const NOW: i64 = 1_796_832_000_000;

    fn unit(id: &str, township: &str, village: &str, score: u32) -> UnitRisk {
        UnitRisk {
            device_id: id.into(),
            kind: "heat_pump".into(),
            household_id: format!("h-{id}"),
            village_id: village.into(),
            township: township.into(),
            vendor_id: "aurora".into(),
            in_warranty: true,
            vulnerable: false,
            offline: false,
            indoor_temp_c: None,
            score,
            reasons: Vec::new(),
            open_order_id: None,
        }
    }

    fn cold(area: &str, min: f64) -> Vec<ForecastPoint> {
        vec![
            ForecastPoint {
                time_ms: NOW + 6 * H,
                area: area.into(),
                min_temp_c: -5.0,
            },
            ForecastPoint {
                time_ms: NOW + 30 * H,
                area: area.into(),
                min_temp_c: min,
            },
        ]
    }

    fn capacity(visits: u32, calls: u32) -> Capacity {
        Capacity {
            visits_per_township: visits,
            calls_per_township: calls,
        }
    }

    fn statuses(plan: &SweepPlan) -> Vec<(&str, &str, Status)> {
        plan.units
            .iter()
            .map(|p| (p.unit.device_id.as_str(), p.action.as_str(), p.status))
            .collect()
    }

    #[test]
    fn units_under_a_wave_are_ranked_and_take_the_capacity_in_order() {
        let config = PreventionConfig::default();
        let mut offline = unit("e", "yongning", "yongning-a", 25);
        offline.offline = true;
        let units = vec![
            unit("a", "yongning", "yongning-a", 40),
            unit("b", "yongning", "yongning-a", 70),
            unit("c", "yongning", "yongning-b", 35),
            unit("d", "yongning", "yongning-b", 20),
            offline,
            unit("low", "yongning", "yongning-b", 10),
            unit("mild", "sihai", "sihai-a", 90),
        ];
        let plan = plan(
            &units,
            &cold("yongning", -18.0),
            &[],
            capacity(2, 1),
            NOW,
            &config,
        );
        assert_eq!(plan.waves.len(), 1);
        assert_eq!(
            statuses(&plan),
            vec![
                ("b", PREVENTIVE_VISIT_CATEGORY, Status::Planned),
                ("a", PREVENTIVE_VISIT_CATEGORY, Status::Planned),
                ("c", PREVENTIVE_VISIT_CATEGORY, Status::OverCapacity),
                ("e", CALL_TASK_CATEGORY, Status::Planned),
                ("d", CALL_TASK_CATEGORY, Status::OverCapacity),
            ]
        );
        assert_eq!(plan.over_capacity(), 2);
        assert!(plan.units[0].hours_to_cold.is_some_and(|h| h > 0.0));
    }

    #[test]
    fn equal_scores_go_to_the_home_that_gets_cold_first() {
        let config = PreventionConfig::default();
        let mut warm = unit("a-warm", "yongning", "yongning-a", 40);
        warm.indoor_temp_c = Some(21.0);
        let mut cool = unit("b-cool", "yongning", "yongning-a", 40);
        cool.indoor_temp_c = Some(15.0);
        let plan = plan(
            &[warm, cool],
            &cold("yongning", -18.0),
            &[],
            capacity(1, 0),
            NOW,
            &config,
        );
        assert_eq!(
            statuses(&plan),
            vec![
                ("b-cool", PREVENTIVE_VISIT_CATEGORY, Status::Planned),
                ("a-warm", PREVENTIVE_VISIT_CATEGORY, Status::OverCapacity),
            ]
        );
    }

    #[test]
    fn a_village_forecast_overrides_its_township_s() {
        let config = PreventionConfig::default();
        let units = vec![
            unit("a", "yongning", "yongning-a", 50),
            unit("b", "yongning", "yongning-b", 50),
        ];
        let mut forecast = cold("yongning", -18.0);
        forecast.push(ForecastPoint {
            time_ms: NOW + 6 * H,
            area: "yongning-b".into(),
            min_temp_c: -3.0,
        });
        let plan = plan(&units, &forecast, &[], capacity(5, 5), NOW, &config);
        assert_eq!(
            statuses(&plan),
            vec![("a", PREVENTIVE_VISIT_CATEGORY, Status::Planned)]
        );
    }

    #[test]
    fn units_swept_for_the_wave_or_with_an_open_order_are_not_planned_again() {
        let config = PreventionConfig::default();
        let mut busy = unit("busy", "yongning", "yongning-a", 60);
        busy.open_order_id = Some(7);
        let units = vec![
            unit("a", "yongning", "yongning-a", 50),
            unit("b", "yongning", "yongning-a", 45),
            busy,
        ];
        let forecast = cold("yongning", -18.0);
        let wave = &weather::cold_waves(&forecast, NOW, &config.wave_rule())[0];
        let record = SweepRecord {
            device_id: "a".into(),
            // The forecast moved the cold night by a day: the same wave for the unit.
            wave_id: "yongning@2026-12-12".into(),
            wave_coldest_ms: wave.coldest_at_ms + 24 * H,
            township: "yongning".into(),
            action: PREVENTIVE_VISIT_CATEGORY.into(),
            order_id: 3,
            score: 50,
            // Opened yesterday: today's capacity is untouched.
            opened_at_ms: NOW - 12 * H,
        };
        let plan = plan(
            &units,
            &forecast,
            std::slice::from_ref(&record),
            capacity(1, 0),
            NOW,
            &config,
        );
        assert_eq!(
            statuses(&plan),
            vec![
                ("busy", PREVENTIVE_VISIT_CATEGORY, Status::OrderOpen),
                ("a", PREVENTIVE_VISIT_CATEGORY, Status::AlreadyOpened),
                ("b", PREVENTIVE_VISIT_CATEGORY, Status::Planned),
            ]
        );
        assert_eq!(plan.units[1].order_id, Some(3));
        // Opened today, the record uses up the township's one visit.
        let today = SweepRecord {
            opened_at_ms: NOW + H,
            ..record
        };
        let later = super::plan(
            &units,
            &forecast,
            &[today],
            capacity(1, 0),
            NOW + 2 * H,
            &config,
        );
        assert_eq!(later.units[2].status, Status::OverCapacity);
    }

    #[test]
    fn the_season_starts_on_the_first_of_november() {
        let start = season_start_ms(NOW);
        assert_eq!(wire::calendar::cst_date_string(start), "2026-11-01");
        // In March the season began the November before.
        let march = wire::calendar::cst_midnight_ms(2027, 3, 1);
        assert_eq!(
            wire::calendar::cst_date_string(season_start_ms(march)),
            "2026-11-01"
        );
        assert_eq!(season_start_ms(start), start);
        assert!(age_years("2018-12-10", NOW).is_some_and(|a| (a - 8.0).abs() < 0.01));
        assert_eq!(age_years("2030-01-01", NOW), None);
        assert_eq!(age_years("not a date", NOW), None);
    }
}
