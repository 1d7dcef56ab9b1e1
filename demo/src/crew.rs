//! The demo's people: simulated technicians who take their orders from the phone view, drive
//! out, arrive, repair with parts from the unified price list and resolve, and a simulated
//! centre desk that dispatches what automatic routing left, rings the resident back (回访) and
//! closes the order. They act only through the gateway's HTTP API, on the routes the console
//! and the technicians' phones use, and every step is stamped by the gateway's own clock.
//!
//! Field times come from a mountain district (travel 20-90 min, repair 30-120 min, the callback
//! 10-30 min after the repair) and are compressed by the demo's time scale ([`DemoClock`]), as
//! are the SLA clocks the demo writes into its gateway's config, so the loop closes within a
//! few minutes of wall time and an order that waits for a busy technician misses its clock for
//! real. Each technician works one order at a time. Every duration, part and satisfaction is
//! drawn from the demo's seed and the order's id ([`Draw`]), so a run is repeatable order by
//! order. What a technician finds on site and a resident says on the callback is the
//! simulation's truth ([`Faults`]): the fault the demo injected, repaired when the technician
//! resolves (one first repair in ten does not hold, and the callback reopens the order).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use simulator::Simulation;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{DeviceId, FaultCategory};

/// Whether the simulated crew and desk work the orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CrewMode {
    /// Technicians and the desk move every order to `closed`.
    On,
    /// Nobody works the orders: they stay where routing left them (for a person to act in the
    /// console).
    Off,
}

/// The demo's compressed working day: `scale` minutes of the scheme's time pass in one minute
/// of wall time, for the people and the SLA clocks (the heaters, edge agents and rules run in
/// real time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DemoClock {
    scale: u32,
}

impl DemoClock {
    pub fn new(scale: u32) -> Self {
        Self {
            scale: scale.max(1),
        }
    }

    /// How much faster than real time the people and the SLA clocks run.
    pub fn scale(&self) -> u32 {
        self.scale
    }

    /// The wall time that `minutes` of the scheme's time take in the demo.
    pub fn minutes(&self, minutes: f64) -> Duration {
        Duration::from_secs_f64((minutes.max(0.0) * 60.0) / f64::from(self.scale))
    }

    /// A real-time duration (an SLA deadline) compressed to the demo's time.
    pub fn compress(&self, real: Duration) -> Duration {
        real / self.scale
    }
}

/// A technician of the registry, as the crew knows them.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub id: String,
    pub team_id: String,
    pub name: String,
}

/// What the crew needs to start.
pub struct CrewConfig {
    /// The gateway's API, e.g. `http://127.0.0.1:8080`.
    pub api: String,
    pub seed: u64,
    pub clock: DemoClock,
    /// Every technician of the registry; each works one order at a time.
    pub members: Vec<Member>,
    /// New for each run, so the idempotency keys of one run never meet another's.
    pub run_id: String,
}

/// A fault the demo injected and nobody has repaired yet.
#[derive(Debug, Clone)]
struct Injected {
    category: FaultCategory,
    /// When the fault ends by itself if no order reached it (`--repair-after`).
    due: Instant,
    /// The order whose first repair did not hold.
    failed_repair_of: Option<i64>,
}

/// The faults the demo injected and nobody has repaired: the simulation's truth, which a
/// technician finds on site and a resident reports on the callback.
#[derive(Debug, Default)]
pub struct Faults {
    active: Mutex<HashMap<DeviceId, Injected>>,
}

impl Faults {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<DeviceId, Injected>) -> T) -> T {
        let mut active = self.active.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut active)
    }

    /// Records an injected fault that ends by itself at `due` unless an order holds it.
    pub fn injected(&self, device: DeviceId, category: FaultCategory, due: Instant) {
        self.with(|active| {
            active.insert(
                device,
                Injected {
                    category,
                    due,
                    failed_repair_of: None,
                },
            )
        });
    }

    /// The devices with a fault now.
    pub fn devices(&self) -> HashSet<DeviceId> {
        self.with(|active| active.keys().cloned().collect())
    }

    /// The devices whose fault has reached its `--repair-after` time.
    pub fn due(&self, now: Instant) -> Vec<DeviceId> {
        self.with(|active| {
            active
                .iter()
                .filter(|(_, fault)| fault.due <= now)
                .map(|(device, _)| device.clone())
                .collect()
        })
    }

    /// Leaves a fault to the technician of its order: asked again at `due`.
    pub fn postpone(&self, device: &DeviceId, due: Instant) {
        self.with(|active| {
            if let Some(fault) = active.get_mut(device) {
                fault.due = due;
            }
        });
    }

    /// Forgets a fault that was repaired; its category if there was one.
    pub fn remove(&self, device: &DeviceId) -> Option<FaultCategory> {
        self.with(|active| active.remove(device).map(|fault| fault.category))
    }

    fn category(&self, device: &DeviceId) -> Option<FaultCategory> {
        self.with(|active| active.get(device).map(|fault| fault.category))
    }

    fn repair_failed(&self, device: &DeviceId, order: i64) {
        self.with(|active| {
            if let Some(fault) = active.get_mut(device) {
                fault.failed_repair_of = Some(order);
            }
        });
    }

    /// The heating of `order`'s device still fails after the order's repair.
    fn unsolved(&self, device: &DeviceId, order: i64) -> bool {
        self.with(|active| {
            active
                .get(device)
                .is_some_and(|fault| fault.failed_repair_of == Some(order))
        })
    }
}

/// Repeatable draws for one order: the seed, the order's id and what is drawn give the value,
/// whatever order the crew happens to meet things in.
#[derive(Debug, Clone, Copy)]
pub struct Draw {
    state: u64,
}

impl Draw {
    pub fn new(seed: u64, order: i64, what: &str, visit: u32) -> Self {
        let mut state = seed ^ 0xA076_1D64_78BD_642F;
        for value in [order as u64, u64::from(visit)]
            .into_iter()
            .chain(what.bytes().map(u64::from))
        {
            state = splitmix(state ^ value);
        }
        Self { state }
    }

    fn next(&mut self) -> u64 {
        self.state = splitmix(self.state);
        self.state
    }

    /// Uniform in `[low, high]`.
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        let unit = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        low + (high - low) * unit
    }

    /// True once in `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next() % n.max(1) == 0
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            return None;
        }
        items.get((self.next() % items.len() as u64) as usize)
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Minutes of travel to a house in the mountain district.
const TRAVEL_MINUTES: (f64, f64) = (20.0, 90.0);
/// Minutes of work at the house.
const REPAIR_MINUTES: (f64, f64) = (30.0, 120.0);
/// Minutes between the repair and the callback post's call (the post rings within the half
/// hour after the technician reports the repair).
const CALLBACK_MINUTES: (f64, f64) = (10.0, 30.0);
/// Minutes the desk takes to dispatch an order routing left (a call task, an unrouted order).
const DESK_DISPATCH_MINUTES: (f64, f64) = (2.0, 15.0);
/// Minutes between the callback and the closing of the order.
const CLOSE_MINUTES: (f64, f64) = (1.0, 5.0);
/// How often an idle technician looks at the phone, in minutes.
const PHONE_REFRESH_MINUTES: f64 = 4.0;
/// How often the desk looks at the board, in minutes.
const DESK_REFRESH_MINUTES: f64 = 1.0;
/// One first repair in this many does not hold.
const FAILED_REPAIR_ONE_IN: u64 = 10;

/// What a technician replaces for a fault they find, from the unified price list (code,
/// quantity); an empty choice is a repair without parts (a filter cleaned, a valve opened, a
/// controller reset).
pub fn part_choices(category: FaultCategory) -> &'static [&'static [(&'static str, i64)]] {
    match category {
        FaultCategory::WaterFlow => &[&[("flow-switch", 1)], &[("y-filter", 1)], &[]],
        FaultCategory::HighPressure => &[&[("y-filter", 1)], &[("fan-motor", 1)], &[]],
        FaultCategory::LowPressure => &[
            &[("refrigerant-r32-kg", 2)],
            &[("expansion-valve", 1), ("refrigerant-r32-kg", 1)],
        ],
        FaultCategory::DischargeOverheat => {
            &[&[("expansion-valve", 1)], &[("refrigerant-r32-kg", 1)]]
        }
        FaultCategory::CompressorOvercurrent => &[&[("contactor", 1)], &[]],
        FaultCategory::DefrostFailure => &[&[("four-way-valve", 1)], &[("ntc-sensor", 1)]],
        FaultCategory::FreezeProtection => &[&[("ntc-sensor", 1)], &[("circulation-pump", 1)]],
        FaultCategory::SensorFault => &[&[("ntc-sensor", 1)]],
        FaultCategory::PowerSupply => &[&[("contactor", 1)], &[]],
        FaultCategory::Communication => &[&[("control-board", 1)], &[]],
        FaultCategory::IgnitionFailure => &[&[("ignition-electrode", 1)], &[]],
        FaultCategory::FlameLoss => &[&[("ignition-electrode", 1)], &[("gas-valve", 1)]],
        FaultCategory::FanFlue => &[&[("air-pressure-switch", 1)], &[("fan-motor", 1)]],
        FaultCategory::Overheat => &[&[("circulation-pump", 1)], &[("ntc-sensor", 1)]],
        FaultCategory::LowWaterPressure => &[
            &[("pressure-relief-valve", 1)],
            &[("expansion-vessel", 1)],
            &[],
        ],
        // The gas company restores the supply; nothing in the house is replaced.
        FaultCategory::GasSupply | FaultCategory::Other => &[&[]],
    }
}

/// An order as the crew reads it from the API (other fields ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Order {
    pub id: i64,
    pub device_id: String,
    pub state: String,
    pub category: String,
    #[serde(default)]
    pub priority: String,
    #[serde(default)]
    pub technician_id: Option<String>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub resolved_at_ms: Option<i64>,
    #[serde(default)]
    pub sla_flags: i64,
}

impl Order {
    /// An SLA stage breached (the `breached` bits of `sla_flags`: dispatch, on site, repaired).
    fn breached(&self) -> bool {
        self.sla_flags & (2 | 8 | 32) != 0
    }
}

/// One order of a technician's phone view.
#[derive(Debug, Deserialize)]
struct FieldOrder {
    #[serde(flatten)]
    order: Order,
    #[serde(default)]
    mine: bool,
}

#[derive(Debug, Deserialize)]
struct FieldOrders {
    items: Vec<FieldOrder>,
}

/// Why a call to the gateway did not give what was asked.
#[derive(Debug)]
pub enum ApiFailure {
    /// The gateway answered with an error status.
    Refused { status: u16, message: String },
    /// No answer (connection, timeout) or an answer that is not the expected JSON.
    Unreachable(String),
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiFailure::Refused { status, message } => {
                write!(f, "the gateway answered {status}: {message}")
            }
            ApiFailure::Unreachable(error) => {
                write!(f, "no usable answer from the gateway: {error}")
            }
        }
    }
}

/// The gateway's HTTP API as the crew and the desk use it.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: String,
    run_id: String,
}

/// Sends of one step over a connection that drops, with the same idempotency key.
const STEP_ATTEMPTS: u32 = 3;

impl Api {
    pub fn new(base: &str, run_id: &str) -> anyhow::Result<Api> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the crew's HTTP client: {e}"))?;
        Ok(Api {
            client,
            base: base.trim_end_matches('/').to_owned(),
            run_id: run_id.chars().take(16).collect(),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiFailure> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|e| ApiFailure::Unreachable(e.to_string()))?;
        Self::answer(response).await
    }

    async fn answer<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiFailure> {
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| ApiFailure::Unreachable(e.to_string()))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or(text);
            return Err(ApiFailure::Refused {
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_str(&text).map_err(|e| ApiFailure::Unreachable(format!("{e}")))
    }

    /// Orders in one state.
    async fn orders_in(&self, state: &str) -> Result<Vec<Order>, ApiFailure> {
        self.get(&format!("/api/v1/orders?state={state}&limit=10000"))
            .await
    }

    /// Whether `device` has an order that is not closed, cancelled or merged.
    pub async fn has_open_order(&self, device: &DeviceId) -> Result<bool, ApiFailure> {
        let orders: Vec<Order> = self
            .get(&format!(
                "/api/v1/orders?device_id={device}&open=true&limit=1"
            ))
            .await?;
        Ok(!orders.is_empty())
    }

    /// A technician's phone view.
    async fn field_orders(&self, technician: &str) -> Result<Vec<FieldOrder>, ApiFailure> {
        let view: FieldOrders = self
            .get(&format!("/api/v1/field/orders?technician_id={technician}"))
            .await?;
        Ok(view.items)
    }

    /// One step on an order, sent with an idempotency key and sent again (same key) when the
    /// connection fails, so it is applied once.
    async fn step(
        &self,
        order: i64,
        step: &str,
        visit: i64,
        body: serde_json::Value,
    ) -> Result<Order, ApiFailure> {
        let key = format!("demo-{}-{order}-{step}-{visit}", self.run_id);
        let url = format!("{}/api/v1/orders/{order}/{step}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .client
                .post(&url)
                .header("idempotency-key", &key)
                .json(&body)
                .send()
                .await;
            match sent {
                Ok(response) => return Self::answer(response).await,
                Err(error) if attempt < STEP_ATTEMPTS => {
                    tracing::debug!(order, step, attempt, %error, "step not answered; sending it again with the same key");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
                Err(error) => return Err(ApiFailure::Unreachable(error.to_string())),
            }
        }
    }
}

/// What the technicians and the desk share.
struct Shared {
    api: Api,
    seed: u64,
    clock: DemoClock,
    faults: Arc<Faults>,
    simulation: Arc<Simulation>,
    /// Visits per order (a reopened order is visited again).
    visits: Mutex<HashMap<i64, u32>>,
}

impl Shared {
    fn next_visit(&self, order: i64) -> u32 {
        let mut visits = self.visits.lock().unwrap_or_else(PoisonError::into_inner);
        let visit = visits.entry(order).or_insert(0);
        *visit += 1;
        *visit
    }

    fn visit(&self, order: i64) -> u32 {
        let visits = self.visits.lock().unwrap_or_else(PoisonError::into_inner);
        visits.get(&order).copied().unwrap_or(1)
    }
}

/// Waits `duration` of wall time; false when the demo stops first.
async fn pause(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => false,
        () = tokio::time::sleep(duration) => true,
    }
}

/// Starts one task per technician and one for the desk, on `tracker`, until `shutdown`.
pub fn start(
    config: CrewConfig,
    faults: Arc<Faults>,
    simulation: Arc<Simulation>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> anyhow::Result<Api> {
    let api = Api::new(&config.api, &config.run_id)?;
    let shared = Arc::new(Shared {
        api: api.clone(),
        seed: config.seed,
        clock: config.clock,
        faults,
        simulation,
        visits: Mutex::new(HashMap::new()),
    });
    let count = config.members.len().max(1) as f64;
    for (index, member) in config.members.into_iter().enumerate() {
        // Phones refreshed at staggered times, not all in the same instant.
        let offset = config
            .clock
            .minutes(PHONE_REFRESH_MINUTES * index as f64 / count);
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if pause(offset, &shutdown).await {
                work(member, shared, shutdown).await;
            }
        });
    }
    let shutdown = shutdown.clone();
    tracker.spawn(async move { desk(shared, shutdown).await });
    Ok(api)
}

fn priority_rank(priority: &str) -> u8 {
    match priority {
        "urgent" => 0,
        "high" => 1,
        "normal" => 2,
        _ => 3,
    }
}

fn state_rank(state: &str) -> u8 {
    match state {
        "on_site" => 0,
        "accepted" => 1,
        _ => 2,
    }
}

/// The order a technician works next: their own order already under way, then their own
/// dispatched orders by priority and age, then a team order nobody was named for.
fn next_order(items: Vec<FieldOrder>) -> Option<Order> {
    let workable = |state: &str| matches!(state, "dispatched" | "accepted" | "on_site");
    let mut mine: Vec<Order> = Vec::new();
    let mut unassigned: Vec<Order> = Vec::new();
    for item in items {
        if !workable(&item.order.state) {
            continue;
        }
        if item.mine {
            mine.push(item.order);
        } else if item.order.technician_id.is_none() && item.order.state == "dispatched" {
            unassigned.push(item.order);
        }
    }
    let key = |o: &Order| {
        (
            state_rank(&o.state),
            priority_rank(&o.priority),
            o.created_at_ms,
            o.id,
        )
    };
    mine.sort_by_key(key);
    unassigned.sort_by_key(key);
    mine.into_iter().chain(unassigned).next()
}

/// One technician: looks at the phone when idle, works one order at a time.
async fn work(member: Member, shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let next = match shared.api.field_orders(&member.id).await {
            Ok(items) => next_order(items),
            Err(error) => {
                tracing::warn!(technician = %member.id, %error, "the technician's phone view did not load");
                None
            }
        };
        let keep_going = match next {
            Some(order) => work_order(&member, order, &shared, &shutdown).await,
            None => pause(shared.clock.minutes(PHONE_REFRESH_MINUTES), &shutdown).await,
        };
        if !keep_going {
            return;
        }
    }
}

/// Takes `order` from its state to resolved; false when the demo stops. A step refused
/// (someone in the console moved the order first) ends the job and the technician looks at
/// the phone again.
async fn work_order(
    member: &Member,
    mut order: Order,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> bool {
    let device = DeviceId::parse(&order.device_id).ok();
    loop {
        let (step, result) = match order.state.as_str() {
            "dispatched" => ("accept", accept(member, &order, shared).await),
            "accepted" => match arrive(member, &order, shared, shutdown).await {
                Some(result) => ("arrive", result),
                None => return false,
            },
            "on_site" => match resolve(member, &order, device.as_ref(), shared, shutdown).await {
                Some(result) => ("resolve", result),
                None => return false,
            },
            _ => return true,
        };
        match result {
            Ok(next) if next.state == "resolved" => return true,
            Ok(next) => order = next,
            Err(error) => {
                tracing::info!(technician = %member.id, order = order.id, step, %error, "the step was not taken; the technician looks at the phone again");
                return pause(shared.clock.minutes(1.0), shutdown).await;
            }
        }
    }
}

/// A dispatched order: the technician accepts it (a new visit) and drives out.
async fn accept(member: &Member, order: &Order, shared: &Shared) -> Result<Order, ApiFailure> {
    let visit = shared.next_visit(order.id);
    let result = shared
        .api
        .step(order.id, "accept", i64::from(visit), serde_json::json!({}))
        .await;
    if let Ok(accepted) = &result {
        let travel = Draw::new(shared.seed, order.id, "travel", visit)
            .between(TRAVEL_MINUTES.0, TRAVEL_MINUTES.1);
        println!(
            "demo: technician {} ({}) accepted order {} ({}, {}) and drives out, about {travel:.0} min",
            member.name, member.id, accepted.id, accepted.category, accepted.device_id
        );
    }
    result
}

/// An accepted order: the drive (the travel time drawn at acceptance), then arrival; `None`
/// when the demo stops on the road.
async fn arrive(
    member: &Member,
    order: &Order,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Option<Result<Order, ApiFailure>> {
    let visit = shared.visit(order.id);
    let travel = Draw::new(shared.seed, order.id, "travel", visit)
        .between(TRAVEL_MINUTES.0, TRAVEL_MINUTES.1);
    if !pause(shared.clock.minutes(travel), shutdown).await {
        return None;
    }
    let result = shared
        .api
        .step(order.id, "arrive", i64::from(visit), serde_json::json!({}))
        .await;
    if result.is_ok() {
        println!(
            "demo: technician {} is at {} (order {}) after {travel:.0} min on the road",
            member.name, order.device_id, order.id
        );
    }
    Some(result)
}

/// An order on site: the repair (parts for the injected fault; one first repair in
/// [`FAILED_REPAIR_ONE_IN`] does not hold), then resolve; `None` when the demo stops mid-repair.
async fn resolve(
    member: &Member,
    order: &Order,
    device: Option<&DeviceId>,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Option<Result<Order, ApiFailure>> {
    let visit = shared.visit(order.id);
    let mut draw = Draw::new(shared.seed, order.id, "repair", visit);
    let minutes = draw.between(REPAIR_MINUTES.0, REPAIR_MINUTES.1);
    if !pause(shared.clock.minutes(minutes), shutdown).await {
        return None;
    }
    let found = device.and_then(|d| shared.faults.category(d));
    let parts: &[(&str, i64)] = found
        .and_then(|category| draw.pick(part_choices(category)).copied())
        .unwrap_or(&[]);
    let holds = visit > 1 || !draw.one_in(FAILED_REPAIR_ONE_IN);
    let note = match found {
        Some(category) => format!(
            "found {} on site; {} min of work",
            category.as_str(),
            minutes.round()
        ),
        None => format!(
            "inspected on site, nothing to replace; {} min",
            minutes.round()
        ),
    };
    let body = serde_json::json!({
        "parts": parts.iter().map(|(code, quantity)| serde_json::json!({"code": code, "quantity": quantity})).collect::<Vec<_>>(),
        "note": note,
    });
    let result = shared
        .api
        .step(order.id, "resolve", i64::from(visit), body)
        .await;
    if result.is_ok() {
        if let Some(device) = device {
            if holds {
                repair(shared, device);
            } else if found.is_some() {
                shared.faults.repair_failed(device, order.id);
            }
        }
        let used: Vec<String> = parts.iter().map(|(c, q)| format!("{c} x{q}")).collect();
        println!(
            "demo: technician {} resolved order {} after {minutes:.0} min, parts [{}]{}",
            member.name,
            order.id,
            used.join(", "),
            if holds || found.is_none() {
                ""
            } else {
                " (the repair will not hold)"
            }
        );
    }
    Some(result)
}

/// The technician's repair in the simulated house: the injected fault ends.
fn repair(shared: &Shared, device: &DeviceId) {
    if shared.faults.remove(device).is_some() {
        if let Err(error) = shared.simulation.clear_fault(device) {
            tracing::warn!(device = %device, %error, "the simulated repair did not clear the fault");
        }
    }
}

/// Something the desk has planned for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum DeskStep {
    Dispatch,
    /// The callback of the repair that ended at this time (a reopened order is rung again).
    Callback(i64),
    Close,
}

/// The centre's desk: dispatches what routing left (a call task: nobody answered, send a
/// technician), rings the resident back after a repair, and closes the order after the
/// callback.
async fn desk(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut planned: HashMap<(i64, DeskStep), Instant> = HashMap::new();
    let mut given_up: HashSet<i64> = HashSet::new();
    loop {
        if !pause(shared.clock.minutes(DESK_REFRESH_MINUTES), &shutdown).await {
            return;
        }
        let mut seen: HashSet<(i64, DeskStep)> = HashSet::new();
        for (state, step) in [
            ("created", None),
            ("resolved", Some("callback")),
            ("callback_done", Some("close")),
        ] {
            let orders = match shared.api.orders_in(state).await {
                Ok(orders) => orders,
                Err(error) => {
                    tracing::warn!(state, %error, "the desk could not load the orders");
                    continue;
                }
            };
            for order in orders {
                let (what, range) = match step {
                    None => (DeskStep::Dispatch, DESK_DISPATCH_MINUTES),
                    Some("callback") => (
                        DeskStep::Callback(order.resolved_at_ms.unwrap_or(0)),
                        CALLBACK_MINUTES,
                    ),
                    Some(_) => (DeskStep::Close, CLOSE_MINUTES),
                };
                if what == DeskStep::Dispatch && given_up.contains(&order.id) {
                    continue;
                }
                seen.insert((order.id, what));
                let visit = i64::from(shared.visit(order.id));
                let due = *planned.entry((order.id, what)).or_insert_with(|| {
                    let minutes = Draw::new(shared.seed, order.id, state, visit as u32)
                        .between(range.0, range.1);
                    Instant::now() + shared.clock.minutes(minutes)
                });
                if Instant::now() < due {
                    continue;
                }
                let done = desk_step(&shared, &order, what, visit).await;
                match done {
                    Ok(()) => {
                        planned.remove(&(order.id, what));
                    }
                    Err(ApiFailure::Refused { status, message })
                        if what == DeskStep::Dispatch && status == 400 =>
                    {
                        tracing::warn!(order = order.id, %message, "the desk cannot dispatch the order; it stays for a person");
                        given_up.insert(order.id);
                    }
                    Err(error) => {
                        tracing::info!(order = order.id, step = ?what, %error, "the desk's step was not taken; it tries again");
                    }
                }
            }
        }
        planned.retain(|key, _| seen.contains(key));
    }
}

async fn desk_step(
    shared: &Shared,
    order: &Order,
    what: DeskStep,
    visit: i64,
) -> Result<(), ApiFailure> {
    match what {
        DeskStep::Dispatch => {
            let row = shared
                .api
                .step(order.id, "dispatch", visit, serde_json::json!({}))
                .await?;
            println!(
                "demo: the desk dispatched order {} ({}, {}) to {}",
                row.id,
                row.category,
                row.device_id,
                row.technician_id.as_deref().unwrap_or("its team")
            );
        }
        DeskStep::Callback(_) => {
            let solved = DeviceId::parse(&order.device_id)
                .map(|device| !shared.faults.unsolved(&device, order.id))
                .unwrap_or(true);
            let mut draw = Draw::new(shared.seed, order.id, "satisfaction", visit as u32);
            let satisfaction: i64 = match (solved, order.breached()) {
                (false, _) => 1 + i64::from(draw.one_in(2)),
                (true, false) => {
                    if draw.one_in(5) {
                        4
                    } else {
                        5
                    }
                }
                (true, true) => *draw.pick(&[4, 4, 3, 3, 2]).unwrap_or(&3),
            };
            let note = if solved {
                "回访: the resident confirms the heating works"
            } else {
                "回访: the resident says the heating failed again"
            };
            shared
                .api
                .step(
                    order.id,
                    "callback",
                    visit,
                    serde_json::json!({"satisfaction": satisfaction, "solved": solved, "note": note}),
                )
                .await?;
            println!(
                "demo: callback (回访) on order {}: satisfaction {satisfaction}/5, {}",
                order.id,
                if solved {
                    "solved"
                } else {
                    "NOT solved, the order is reopened"
                }
            );
        }
        DeskStep::Close => {
            shared
                .api
                .step(order.id, "close", visit, serde_json::json!({}))
                .await?;
            println!("demo: order {} closed", order.id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_a_technician_uses_is_in_the_unified_price_list() {
        for category in FaultCategory::ALL {
            for choice in part_choices(category) {
                for (code, quantity) in *choice {
                    assert!(
                        gateway::registry::demo::PARTS
                            .iter()
                            .any(|(known, _, _)| known == code),
                        "{code} ({}) is not in the price list",
                        category.as_str()
                    );
                    assert!((1..=100).contains(quantity));
                }
            }
        }
    }

    #[test]
    fn draws_depend_on_the_seed_the_order_and_what_is_drawn_only() {
        let travel = |seed, order| Draw::new(seed, order, "travel", 1).between(20.0, 90.0);
        assert_eq!(travel(2026, 7), travel(2026, 7));
        assert_ne!(travel(2026, 7), travel(2026, 8));
        assert_ne!(travel(2026, 7), travel(2027, 7));
        for order in 1..500 {
            let minutes = travel(2026, order);
            assert!((20.0..=90.0).contains(&minutes), "{minutes}");
        }
    }

    #[test]
    fn the_demo_clock_compresses_field_minutes_and_sla_deadlines_alike() {
        let clock = DemoClock::new(60);
        assert_eq!(clock.minutes(90.0), Duration::from_secs(90));
        assert_eq!(
            clock.compress(Duration::from_secs(2 * 3600)),
            Duration::from_secs(120)
        );
        assert_eq!(DemoClock::new(0).scale(), 1);
    }

    fn field(
        id: i64,
        state: &str,
        priority: &str,
        mine: bool,
        technician: Option<&str>,
    ) -> FieldOrder {
        FieldOrder {
            order: Order {
                id,
                device_id: format!("d{id}"),
                state: state.into(),
                category: "repair".into(),
                priority: priority.into(),
                technician_id: technician.map(Into::into),
                created_at_ms: id,
                resolved_at_ms: None,
                sla_flags: 0,
            },
            mine,
        }
    }

    #[test]
    fn a_technician_finishes_the_job_under_way_before_the_most_urgent_new_one() {
        let items = vec![
            field(1, "dispatched", "high", true, Some("me")),
            field(2, "accepted", "normal", true, Some("me")),
            field(3, "dispatched", "urgent", true, Some("me")),
        ];
        assert_eq!(next_order(items).map(|o| o.id), Some(2));
        let items = vec![
            field(1, "dispatched", "high", true, Some("me")),
            field(3, "dispatched", "urgent", true, Some("me")),
            field(4, "dispatched", "urgent", false, None),
        ];
        assert_eq!(next_order(items).map(|o| o.id), Some(3));
    }

    #[test]
    fn a_technician_leaves_a_colleague_s_orders_and_takes_the_team_s_unnamed_ones() {
        let items = vec![
            field(1, "dispatched", "urgent", false, Some("colleague")),
            field(2, "resolved", "urgent", true, Some("me")),
            field(5, "dispatched", "low", false, None),
        ];
        assert_eq!(next_order(items).map(|o| o.id), Some(5));
        assert!(next_order(vec![field(1, "dispatched", "high", false, Some("x"))]).is_none());
    }
}
