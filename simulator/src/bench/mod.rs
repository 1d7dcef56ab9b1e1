//! `simulator bench winter`: the whole system through a simulated Yanqing winter, scored on
//! 未诉先办. A real `gateway run` process (rules in event time) receives the telemetry of
//! many virtual edge boxes over MQTT; residents complain through its complaints API; a
//! technician model repairs what its orders (or complaints) point at; the score card compares
//! the gateway's real orders with the ground truth.
//!
//! Determinism: every household steps in lockstep in simulated time. One poll round is
//! published per telemetry interval, and the next round waits until the gateway has handled
//! the one before it (a round in flight is far less than the watermark's lateness). Wherever
//! the bench reads or writes the gateway's state (fetching orders, posting complaints), it
//! first synchronises on the gateway's published watermark (never on a sleep): ingest
//! publishes, at the end of every rules tick and after that tick's watermark advance is
//! stored, the watermark together with the number of messages it had fully processed
//! (`rules_watermark_ms`, `messages_done_at_watermark` in `GET /api/v1/summary`). The barrier
//! waits for a tick that had processed every message the bench sent, with the watermark at the
//! last round minus the lateness, so the gateway has seen exactly the rounds published so far
//! and its orders are written. (Once a tick has processed every message, its watermark cannot
//! move until more are sent; if it is still short, because no reading of the last round was
//! accepted, the barrier goes on and the run counts it in `barriers_watermark_short`.) Those
//! barriers fall on simulated moments fixed by the scenario. The speed only adds wall-clock
//! pacing, so the same seed gives the same score card at any speed.
//!
//! - [`world::World`]: households, faults, traps, residents (no IO).
//! - [`gateway::GatewayProcess`], [`gateway::GatewayApi`]: the gateway under test.
//! - [`registry_files`]: the fleet's registry for the gateway, made by the gateway's own
//!   generator (`gateway::registry::demo::generate_with`).
//! - [`run_winter`] with [`BenchOptions`] returns a [`BenchReport`] (run facts + score card).
//! - [`ingest::run_ingest`]: `simulator bench ingest`, the gateway's ingest throughput against
//!   mosquitto relaying the same load, publish → alert latency and the gateway's memory.

pub mod gateway;
pub mod ingest;
pub mod world;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edge_agent::profile::Profile;
use serde::Serialize;
use tokio::time::Instant;

use self::gateway::{GatewayApi, GatewayProcess, GatewaySettings, MAX_PAGE};
use crate::fleet::{self, HouseholdSpec, TOWNSHIPS};
use crate::load::{BoxGroup, BoxIdentity, BoxPool, LoadError, PoolStats};
use crate::mix::{FaultKind, Mix, MixError};
use crate::scenario::{self, ScenarioError};
use crate::score::{
    self, ComplaintRecord, Inputs, OrderView, ScoreCard, VisitRecord, CALL_TASK_CATEGORY,
};
use crate::technician::{Dispatcher, Request};
use world::{NewComplaint, Purpose, World, WorldStats};

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid bench options: {0}")]
    Config(String),
    #[error(transparent)]
    Mix(#[from] MixError),
    #[error("scenario: {0}")]
    Scenario(#[from] ScenarioError),
    #[error("fleet: {0}")]
    Fleet(#[from] fleet::FleetError),
    /// Transparent, so that an error chain prints the profile's error once.
    #[error(transparent)]
    Profile(#[from] edge_agent::profile::ProfileError),
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("the gateway executable {0} does not exist (build it with `cargo build -p gateway`, or pass --gateway-bin)")]
    GatewayMissing(PathBuf),
    #[error("gateway: {0}")]
    Gateway(String),
    #[error("gateway API: {0}")]
    Api(String),
    #[error("load: {0}")]
    Load(#[from] LoadError),
    #[error("the run stalled and is invalid (the gateway stopped handling readings): {0}")]
    Stalled(String),
    #[error("{0}")]
    DropRules(String),
}

/// How fast simulated time runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the gateway keeps up.
    Max,
    /// Simulated seconds per wall-clock second (at most; slower if the gateway cannot keep up).
    Factor(f64),
}

impl std::str::FromStr for Speed {
    type Err = String;

    fn from_str(text: &str) -> Result<Speed, String> {
        if text == "max" {
            return Ok(Speed::Max);
        }
        let factor: f64 = text
            .trim_end_matches('x')
            .parse()
            .map_err(|_| format!("{text:?} is not a speed like 60, 600 or max"))?;
        if factor.is_finite() && factor > 0.0 {
            Ok(Speed::Factor(factor))
        } else {
            Err(format!("the speed must be above 0, not {text:?}"))
        }
    }
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Speed::Max => write!(f, "max"),
            Speed::Factor(x) => write!(f, "{x}x"),
        }
    }
}

/// Everything a bench run needs.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub households: usize,
    pub days: f64,
    pub seed: u64,
    pub mix: Mix,
    pub speed: Speed,
    pub profiles: Vec<Arc<Profile>>,
    pub gateway_bin: PathBuf,
    /// Rule file for the gateway (`None`: its built-in pack).
    pub rules: Option<PathBuf>,
    /// Device rules switched off: the gateway runs a rule file derived from `rules` (or the
    /// built-in pack) without them (see [`rules::derive::drop_rules`]).
    pub drop_rules: Vec<String>,
    /// Folder for the gateway's files; a fresh temporary folder when `None`.
    pub work_dir: Option<PathBuf>,
    /// Keep the work folder after a successful run.
    pub keep_work_dir: bool,
    pub lateness: Duration,
    pub tick: Duration,
    /// `RUST_LOG` of the gateway.
    pub gateway_log: String,
    /// How often progress is logged (wall time).
    pub progress_every: Duration,
    /// Most messages sent to the gateway and not yet taken in by its ingest (see
    /// `Bench::make_room`).
    pub max_in_flight: u64,
}

impl BenchOptions {
    /// Defaults for everything but the size, the seed and the gateway.
    pub fn new(
        households: usize,
        days: f64,
        seed: u64,
        gateway_bin: PathBuf,
    ) -> Result<BenchOptions, BenchError> {
        Ok(BenchOptions {
            households,
            days,
            seed,
            mix: Mix::default_mix()?,
            speed: Speed::Max,
            profiles: shipped_profiles()?,
            gateway_bin,
            rules: None,
            drop_rules: Vec::new(),
            work_dir: None,
            keep_work_dir: false,
            lateness: Duration::from_secs(120),
            tick: Duration::from_millis(50),
            gateway_log: "warn".to_owned(),
            progress_every: Duration::from_secs(5),
            max_in_flight: 128,
        })
    }
}

/// The shipped register-map profiles, built into the binary.
pub fn shipped_profiles() -> Result<Vec<Arc<Profile>>, BenchError> {
    const PROFILES: &[(&str, &str)] = &[
        (
            "aurora-ashp.toml",
            include_str!("../../../profiles/aurora-ashp.toml"),
        ),
        (
            "beifeng-ashp.toml",
            include_str!("../../../profiles/beifeng-ashp.toml"),
        ),
        (
            "huanre-boiler.toml",
            include_str!("../../../profiles/huanre-boiler.toml"),
        ),
        (
            "lingyun-boiler.toml",
            include_str!("../../../profiles/lingyun-boiler.toml"),
        ),
        (
            "lingyun-boiler-basic.toml",
            include_str!("../../../profiles/lingyun-boiler-basic.toml"),
        ),
    ];
    PROFILES
        .iter()
        .map(|(file, text)| Ok(Arc::new(Profile::parse(text, file)?)))
        .collect()
}

/// How the bench synchronises with the gateway, as the report states it.
pub const SYNC: &str = "watermark";

/// Facts about the run (not part of the score: wall-clock figures differ between runs).
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// `false` when the card cannot be trusted: see `invalid_reasons`.
    pub valid: bool,
    /// Why the run is invalid (complaints that failed to post, ...); empty when valid.
    pub invalid_reasons: Vec<String>,
    /// How barriers synchronise with the gateway: `watermark` (a rules tick that had processed
    /// every message sent, with its watermark at the last round minus the lateness).
    pub sync: String,
    /// The rule file the gateway ran: `built-in`, the `--rules` file, or the derived file.
    pub rules: String,
    /// Device rules switched off with `--drop-rules`.
    pub dropped_rules: Vec<String>,
    /// Fleet rules removed with them (none of their members left).
    pub dropped_fleet_rules: Vec<String>,
    pub households: usize,
    pub days: f64,
    pub seed: u64,
    pub mix: String,
    pub speed: String,
    pub telemetry_interval_s: f64,
    pub lateness_s: f64,
    pub rounds: u64,
    pub barriers: u64,
    /// Barriers at which the gateway had processed every message but its watermark stayed
    /// below the last round minus the lateness (no reading of the last round was accepted).
    pub barriers_watermark_short: u64,
    /// Orders the technician model finished and the bench resolved in the gateway (so a later
    /// fault of the same household gets an order of its own, not a link to a stale one).
    pub orders_resolved: u64,
    /// Order actions the gateway refused while the bench resolved finished visits (the first
    /// error is logged).
    pub order_action_errors: u64,
    pub readings_published: u64,
    pub readings_accepted: u64,
    pub readings_rejected: BTreeMap<String, u64>,
    pub faults_not_placed: BTreeMap<String, u64>,
    pub technicians: BTreeMap<String, usize>,
    pub wall_seconds: f64,
    /// Simulated seconds per wall-clock second, over the whole run.
    pub achieved_speed: f64,
    pub readings_per_second: f64,
    pub alerts_truncated: bool,
    pub pool: PoolStats,
    pub world: WorldStats,
    pub work_dir: String,
}

/// The result of a bench run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub run: RunInfo,
    pub score: ScoreCard,
}

/// The run loop's state.
struct Bench {
    world: World,
    pool: BoxPool,
    api: GatewayApi,
    gateway: GatewayProcess,
    dispatcher: Dispatcher,
    mix: Mix,
    lateness_ms: i64,
    published: u64,
    handled: u64,
    /// Statuses and readings published (wills excluded).
    sent_messages: u64,
    /// The gateway's `messages_in` as last read.
    messages_in: u64,
    /// The last rules tick the gateway published: its watermark and the messages it had fully
    /// processed then.
    tick_watermark_ms: Option<i64>,
    tick_messages_done: u64,
    barriers_watermark_short: u64,
    /// Visits the technician model finished or will finish: (done, device); the device's open
    /// orders are resolved in the gateway once the watermark has passed `done`.
    finishing: Vec<(i64, String)>,
    /// Orders the bench resolved.
    resolved_orders: BTreeSet<i64>,
    orders_resolved: u64,
    order_action_errors: u64,
    max_in_flight: u64,
    last_progress: Instant,
    last_round_ms: i64,
    coverage_ms: i64,
    barriers: u64,
    unposted: VecDeque<NewComplaint>,
    complaints: Vec<ComplaintRecord>,
    complaint_requests: Vec<(i64, usize, String)>,
    orders: BTreeMap<i64, OrderView>,
    unprocessed_orders: Vec<OrderView>,
    visits: Vec<VisitRecord>,
    device_index: BTreeMap<String, usize>,
}

impl Bench {
    /// Reads the gateway's counters once; fails if the gateway died or stopped moving.
    async fn refresh(&mut self, waiting_since: Instant, what: &str) -> Result<(), BenchError> {
        let summary = self.api.summary().await?;
        let Some(tick_done) = summary.messages_done_at_watermark else {
            return Err(BenchError::Gateway(
                "the gateway's summary has no messages_done_at_watermark: it is older than this bench (rebuild it)".into(),
            ));
        };
        if summary.readings_handled() > self.handled
            || summary.messages_in > self.messages_in
            || tick_done > self.tick_messages_done
        {
            self.last_progress = Instant::now();
        }
        self.handled = self.handled.max(summary.readings_handled());
        self.messages_in = self.messages_in.max(summary.messages_in);
        if tick_done >= self.tick_messages_done {
            self.tick_messages_done = tick_done;
            self.tick_watermark_ms = summary.rules_watermark_ms;
        }
        if let Some(status) = self.gateway.exited() {
            return Err(BenchError::Stalled(format!(
                "the gateway exited ({status}) while the bench waited for {what}; its log ends:\n{}",
                self.gateway.log_tail(30)
            )));
        }
        let stalled_for = self.last_progress.max(waiting_since).elapsed();
        if stalled_for > Duration::from_secs(120) {
            return Err(BenchError::Stalled(format!(
                "no progress for 120 s waiting for {what} ({} of {} readings handled, {} of {} messages in, {} done at the last rules tick with watermark {:?}); the gateway log ends:\n{}",
                self.handled,
                self.published,
                self.messages_in,
                self.expected_messages(),
                self.tick_messages_done,
                self.tick_watermark_ms,
                self.gateway.log_tail(30)
            )));
        }
        Ok(())
    }

    /// Polls the gateway's counters until `done` holds.
    async fn wait_until(
        &mut self,
        what: &str,
        done: impl Fn(&Bench) -> bool,
    ) -> Result<(), BenchError> {
        if done(self) {
            return Ok(());
        }
        let since = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            self.refresh(since, what).await?;
            if done(self) {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
            self.pool.keep_alive(Duration::from_secs(20)).await?;
        }
    }

    /// Waits until the gateway has handled `count` readings (accepted or rejected).
    async fn wait_handled(&mut self, count: u64) -> Result<(), BenchError> {
        self.wait_until("readings to be handled", |b| b.handled >= count)
            .await
    }

    /// Messages the gateway's ingest should eventually take in: statuses and readings sent,
    /// plus one last will per connection closed abruptly (the broker publishes it).
    fn expected_messages(&self) -> u64 {
        self.sent_messages + self.pool.stats().abrupt_drops
    }

    /// Waits until sending `extra` more messages keeps at most `max_in_flight` of them
    /// waiting in the gateway, so that the load generator never runs far ahead of ingest (the
    /// broker would only buffer them) and event time stays close to what the gateway has
    /// seen. Both the messages (with the wills) and the readings are bounded, so that a lost
    /// or extra will cannot widen the window.
    async fn make_room(&mut self, extra: u64) -> Result<(), BenchError> {
        let limit = self.max_in_flight;
        let expected = self.expected_messages() + extra;
        let readings = self.published + extra;
        if expected <= self.messages_in + limit && readings <= self.handled + limit {
            return Ok(());
        }
        // Refill to half, so the counters are read once per half a window.
        let (message_target, reading_target) = (
            expected.saturating_sub(limit / 2),
            readings.saturating_sub(limit / 2),
        );
        self.wait_until("room in the gateway's queue", |b| {
            b.messages_in >= message_target && b.handled >= reading_target
        })
        .await
    }

    /// Connects boxes in groups small enough for the gateway's queue (each sends its status).
    async fn connect_boxes(&mut self, boxes: &[usize]) -> Result<(), BenchError> {
        let group = (self.max_in_flight / 2).max(1) as usize;
        for chunk in boxes.chunks(group) {
            self.make_room(chunk.len() as u64).await?;
            self.pool.connect(chunk).await?;
            self.sent_messages += chunk.len() as u64;
        }
        Ok(())
    }

    /// Brings the gateway up to date with everything published, then posts due complaints,
    /// collects new orders and hands requests up to the covered moment to the technicians.
    ///
    /// The final barrier (`last`) covers up to the last round itself, so that every
    /// complaint is posted.
    async fn barrier(&mut self, last: bool) -> Result<(), BenchError> {
        self.barriers += 1;
        self.sync_on_watermark().await?;
        self.coverage_ms = if last {
            self.last_round_ms
        } else {
            self.last_round_ms - self.lateness_ms
        };
        while let Some(complaint) = self.unposted.front() {
            if complaint.received_at_ms > self.coverage_ms {
                break;
            }
            let Some(complaint) = self.unposted.pop_front() else {
                break;
            };
            let reply = self
                .api
                .post_complaint(
                    &complaint.channel,
                    &complaint.device_id,
                    complaint.received_at_ms,
                    &complaint.text,
                )
                .await;
            if let Err(error) = &reply {
                tracing::warn!(device = %complaint.device_id, %error, "complaint not taken");
            }
            self.complaint_requests.push((
                complaint.received_at_ms,
                complaint.household,
                complaint.channel.clone(),
            ));
            self.complaints.push(ComplaintRecord {
                household: complaint.household,
                device_id: complaint.device_id,
                fault: complaint.fault,
                received_at_ms: complaint.received_at_ms,
                channel: complaint.channel,
                reply,
            });
        }
        self.fetch_new_orders().await?;
        self.dispatch_requests();
        self.resolve_finished_orders().await;
        Ok(())
    }

    /// Resolves in the gateway the open orders of devices whose visit the technician model has
    /// finished by the covered moment, as the technician's phone would: dispatch when it is
    /// still waiting (a call task), accept, arrive, resolve. The gateway stamps each step with
    /// its own clock (the watermark). Without this every order stays open, and a later fault of
    /// the same household would only be linked to it.
    async fn resolve_finished_orders(&mut self) {
        let coverage = self.coverage_ms;
        let (due, later): (Vec<_>, Vec<_>) = self
            .finishing
            .drain(..)
            .partition(|(done, _)| *done <= coverage);
        self.finishing = later;
        for (done, device) in due {
            let ids: Vec<i64> = self
                .orders
                .values()
                .filter(|o| o.device_id == device && o.created_at_ms <= done)
                .map(|o| o.id)
                .filter(|id| !self.resolved_orders.contains(id))
                .collect();
            for id in ids {
                self.resolved_orders.insert(id);
                match self.close_order(id).await {
                    Ok(()) => self.orders_resolved += 1,
                    Err(error) => {
                        self.order_action_errors += 1;
                        if self.order_action_errors == 1 {
                            tracing::warn!(order = id, %error, "the gateway refused an order action of the technician model");
                        }
                    }
                }
            }
        }
    }

    /// Takes one order from wherever it is to `resolved`.
    async fn close_order(&self, id: i64) -> Result<(), String> {
        let step = serde_json::json!({});
        match self.api.order_action(id, "accept", step.clone()).await {
            Ok(()) => {}
            // Not dispatched yet (a call task, or nobody fitted): dispatch first.
            Err((Some(409), _)) => {
                self.api
                    .order_action(id, "dispatch", step.clone())
                    .await
                    .map_err(|(_, e)| e)?;
                self.api
                    .order_action(id, "accept", step.clone())
                    .await
                    .map_err(|(_, e)| e)?;
            }
            Err((_, e)) => return Err(e),
        }
        self.api
            .order_action(id, "arrive", step)
            .await
            .map_err(|(_, e)| e)?;
        self.api
            .order_action(
                id,
                "resolve",
                serde_json::json!({ "parts": [], "misuse": false, "note": "technician model: repaired" }),
            )
            .await
            .map_err(|(_, e)| e)
    }

    /// Waits for a rules tick published after ingest had fully processed every message the
    /// bench sent, with the watermark at the last round minus the lateness: the gateway's
    /// rules, alerts and orders then cover exactly what was published. Ticks run every
    /// `rules.tick` even when nothing arrives, so this never waits on traffic. A tick that had
    /// processed every message has the final watermark for them (event time: the newest
    /// accepted reading minus the lateness); if that is short of the target (no reading of the
    /// last round accepted, e.g. every box dark), waiting longer cannot help: the barrier goes
    /// on and counts it.
    async fn sync_on_watermark(&mut self) -> Result<(), BenchError> {
        let expected = self.expected_messages();
        let target = self.last_round_ms - self.lateness_ms;
        self.wait_until("the gateway's watermark", |b| {
            let done = b.tick_messages_done >= expected;
            let at_target = b.tick_watermark_ms.is_some_and(|w| w >= target);
            // Nothing taken in since that tick: its watermark is final for now.
            let settled = b.messages_in == b.tick_messages_done;
            done && (at_target || settled)
        })
        .await?;
        if self.tick_watermark_ms.is_none_or(|w| w < target) {
            self.barriers_watermark_short += 1;
            tracing::debug!(
                watermark = self.tick_watermark_ms,
                target,
                "every message processed, watermark short of the last round minus the lateness"
            );
        }
        Ok(())
    }

    /// Adds the orders created since the last barrier.
    async fn fetch_new_orders(&mut self) -> Result<(), BenchError> {
        // Orders come newest first (by creation time). Everything created before the previous
        // coverage is known, so a page that reaches an hour before it holds every new order.
        let known_until = self.coverage_ms - 3_600_000;
        let mut limit = 256;
        let page = loop {
            let page = self.api.orders(limit, None).await?;
            let reaches_back = page.last().is_some_and(|o| o.created_at_ms < known_until);
            if page.len() < limit || reaches_back {
                break page;
            }
            if limit >= MAX_PAGE {
                // More than a page of new orders: read them township by township.
                let mut all = Vec::new();
                for township in TOWNSHIPS {
                    let orders = self.api.orders(MAX_PAGE, Some(township.id)).await?;
                    if orders.len() >= MAX_PAGE {
                        tracing::warn!(
                            township = township.id,
                            "more than {MAX_PAGE} orders in one township; older ones are not read"
                        );
                    }
                    all.extend(orders);
                }
                break all;
            }
            limit = (limit * 8).min(MAX_PAGE);
        };
        for order in page {
            if self.orders.contains_key(&order.id) {
                continue;
            }
            if order.source == "rule" {
                self.unprocessed_orders.push(order.clone());
            }
            self.orders.insert(order.id, order);
        }
        Ok(())
    }

    /// Hands every request (rule order or complaint) up to the coverage to the technicians,
    /// in time order.
    fn dispatch_requests(&mut self) {
        let mut requests = self.due_requests();
        requests.sort();
        for (at_ms, device_id, source, household) in requests {
            self.assign_visit(at_ms, device_id, source, household);
        }
    }

    /// Takes the requests up to the coverage out of the unprocessed rule orders, call tasks and
    /// complaints: `(at, device, source, household)`, unsorted.
    fn due_requests(&mut self) -> Vec<(i64, String, String, usize)> {
        let coverage = self.coverage_ms;
        let mut requests: Vec<(i64, String, String, usize)> = Vec::new();
        let mut calls: Vec<(i64, usize)> = Vec::new();
        self.unprocessed_orders.retain(|order| {
            if order.created_at_ms > coverage {
                return true;
            }
            if let Some(&household) = self.device_index.get(&order.device_id) {
                if order.category == CALL_TASK_CATEGORY {
                    calls.push((order.created_at_ms, household));
                } else {
                    requests.push((
                        order.created_at_ms,
                        order.device_id.clone(),
                        "rule".to_owned(),
                        household,
                    ));
                }
            }
            false
        });
        // A call task: the hotline desk rings the household or the caretaker. A heater that is
        // out (whatever the box says) sends a technician, as the rule order would; a box that
        // is only offline, with the heating fine, costs no visit.
        for (at_ms, household) in calls {
            let heating_out = self
                .world
                .active_fault_kind(household, at_ms)
                .is_some_and(|kind| !kind.is_supply() && kind != FaultKind::BoxOffline);
            if let (true, Some(device)) = (heating_out, self.world.device_id(household)) {
                requests.push((at_ms, device.to_owned(), "rule".to_owned(), household));
            }
        }
        let world = &self.world;
        self.complaint_requests.retain(|(at, household, channel)| {
            if *at > coverage {
                return true;
            }
            if let Some(device) = world.device_id(*household) {
                requests.push((*at, device.to_owned(), channel.clone(), *household));
            }
            false
        });
        requests
    }

    /// Sends a technician for one request (unless the world says there is nothing to visit)
    /// and records the visit, the repair it schedules and the order to resolve after it.
    fn assign_visit(&mut self, at_ms: i64, device_id: String, source: String, household: usize) {
        let Some(purpose) = self.world.classify_request(household, at_ms) else {
            return;
        };
        let (repair, fault) = match purpose {
            Purpose::Repair { fault, time } => (Some(time), Some(fault)),
            Purpose::Check { fault } => (None, fault),
        };
        let township = self
            .world
            .township(household)
            .unwrap_or_default()
            .to_owned();
        let schedule = self.dispatcher.assign(&Request {
            at_ms,
            device_id,
            township,
            source: source.clone(),
            repair,
        });
        if let (Some(fault), Some(_)) = (fault, repair) {
            self.world.schedule_repair(fault, schedule.done_ms);
        }
        if let Some(device) = self.world.device_id(household) {
            self.finishing.push((schedule.done_ms, device.to_owned()));
        }
        self.visits.push(VisitRecord {
            household,
            fault,
            source,
            request_ms: at_ms,
            dispatched_ms: schedule.dispatched_ms,
            on_site_ms: schedule.on_site_ms,
            done_ms: schedule.done_ms,
        });
    }

    /// Publishes one poll round: boxes that lost power or network drop their connection
    /// abruptly, boxes that got them back reconnect, and every online box publishes.
    async fn publish_round(&mut self) -> Result<(), BenchError> {
        let rounds = self.world.poll_round();
        let mut reconnect = Vec::new();
        for round in &rounds {
            let connected = self.pool.is_connected(round.household);
            if connected && !round.online {
                self.pool.drop_abruptly(round.household);
            } else if !connected && round.online {
                reconnect.push(round.household);
            }
        }
        if !reconnect.is_empty() {
            // The broker must be done with a box's old connection (its will is in) before the
            // box connects again with the same client id: at hundreds of times real speed a box
            // is back within milliseconds, and the will of the old connection must not race the
            // new connection's `online` status.
            self.wait_until("the wills of dropped boxes", |b| {
                b.messages_in >= b.expected_messages()
            })
            .await?;
            self.connect_boxes(&reconnect).await?;
        }
        for round in rounds {
            if round.readings.is_empty() {
                continue;
            }
            let Some(topic) = self
                .world
                .telemetry_topic(round.household)
                .map(str::to_owned)
            else {
                continue;
            };
            for payload in &round.readings {
                self.make_room(1).await?;
                self.pool.publish(round.household, &topic, payload).await?;
                self.published += 1;
                self.sent_messages += 1;
            }
        }
        self.pool.keep_alive(Duration::from_secs(20)).await?;
        Ok(())
    }
}

/// The shortest repair in the mix (or the check visit), for the request horizon.
fn shortest_repair(mix: &Mix) -> Duration {
    FaultKind::ALL
        .into_iter()
        .filter_map(|k| mix.faults.repair(k))
        .map(|r| r.min)
        .min()
        .unwrap_or(mix.technicians.check_visit)
}

/// The bench's work folder: the one given, or a fresh temporary one (`true`: remove it after a
/// successful run) named after the bench, this process and the seed.
pub(crate) fn work_dir_or_temporary(
    given: Option<&PathBuf>,
    bench: &str,
    seed: u64,
) -> (PathBuf, bool) {
    match given {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("yanqing-{bench}-{}-{seed}", std::process::id())),
            true,
        ),
    }
}

/// The fleet's registry as the CSV files the gateway imports (`[registry] import`), made by
/// the gateway's own generator (`gateway::registry::demo::generate_with`): one household per
/// device, or one per box of `boxes` (positions in `fleet`) holding every device of the box,
/// with the box's id in `households.csv`'s `edge_box` column; one technician per
/// `households_per_technician` devices of a team's area (at least one per team); installation
/// dates between 2018 and 2024 from each household's model seed (the older ones out of their
/// 5-year warranty).
pub fn registry_files(
    fleet: &[HouseholdSpec],
    boxes: &[BoxGroup],
    households_per_technician: usize,
    seed: u64,
) -> Vec<(&'static str, String)> {
    use ::gateway::registry::demo::{
        generate_with, to_csv_files, EdgeBox, FleetHousehold, GenerateOptions,
    };
    let households: Vec<FleetHousehold> = fleet
        .iter()
        .map(|h| FleetHousehold {
            device_id: h.device_id.to_string(),
            township: h.township.id.to_owned(),
            township_name: h.township.name.to_owned(),
            village: h.village.id.to_owned(),
            village_name: h.village.name.to_owned(),
            kind: h.kind.as_str().to_owned(),
            brand: h.profile.brand.clone(),
            model: h.profile.model.clone(),
            vulnerable: h.vulnerable,
        })
        .collect();
    let edge_boxes = boxes
        .iter()
        .map(|group| EdgeBox {
            id: group.identity.box_id.clone(),
            devices: group
                .households
                .iter()
                .filter_map(|&position| fleet.get(position))
                .map(|h| h.device_id.to_string())
                .collect(),
        })
        .collect();
    let installed_on = fleet
        .iter()
        .map(|h| {
            let seed = h.model_seed;
            let date = format!(
                "{:04}-{:02}-{:02}",
                2018 + seed % 7,
                1 + (seed >> 8) % 12,
                1 + (seed >> 16) % 28
            );
            (h.device_id.to_string(), date)
        })
        .collect();
    let options = GenerateOptions {
        households_per_technician,
        edge_boxes,
        installed_on,
    };
    to_csv_files(&generate_with(&households, &options, seed))
}

/// What a winter run is made of before the gateway starts.
struct Plan {
    fleet: Vec<HouseholdSpec>,
    scenario: scenario::Scenario,
    world: World,
    dispatcher: Dispatcher,
    lateness_ms: i64,
    /// How far the requests handed to the technicians may trail the simulated time.
    horizon_ms: i64,
}

/// Checks the options and builds the run's fleet, scenario, world and technician model.
fn plan(options: &BenchOptions) -> Result<Plan, BenchError> {
    if options.households == 0 {
        return Err(BenchError::Config("households must be at least 1".into()));
    }
    if !(options.days.is_finite() && options.days > 0.0 && options.days <= 120.0) {
        return Err(BenchError::Config(format!(
            "days must be above 0 and at most 120, not {}",
            options.days
        )));
    }
    let mix = &options.mix;
    let fleet = fleet::generate(options.households, options.seed, &options.profiles)?;
    let scenario = scenario::build(&fleet, mix, options.days, options.seed)?;
    let world = World::new(&fleet, mix, &scenario, options.seed);
    let interval_ms = mix.telemetry.interval.as_millis() as i64;
    let lateness_ms = options.lateness.as_millis() as i64;
    if lateness_ms < 2 * interval_ms {
        return Err(BenchError::Config(format!(
            "the lateness ({:?}) must be at least two telemetry intervals ({:?}): one round is in flight while the next is built",
            options.lateness, mix.telemetry.interval
        )));
    }
    let mut per_township: BTreeMap<String, usize> = BTreeMap::new();
    for h in &fleet {
        *per_township.entry(h.township.id.to_owned()).or_default() += 1;
    }
    let dispatcher = Dispatcher::new(mix.technicians, &per_township, options.seed);
    let min_response_ms = dispatcher.min_response_ms(shortest_repair(mix));
    // Requests must be known before their visit can end: the coverage may trail the
    // simulated time by at most the shortest response.
    let horizon_ms = min_response_ms - lateness_ms - 2 * interval_ms;
    if horizon_ms < interval_ms {
        return Err(BenchError::Config(format!(
            "the shortest technician response ({} min) must exceed the lateness plus three telemetry intervals",
            min_response_ms / 60_000
        )));
    }
    Ok(Plan {
        fleet,
        scenario,
        world,
        dispatcher,
        lateness_ms,
        horizon_ms,
    })
}

/// Writes the fleet's registry ([`registry_files`], one household and box per device) into
/// `work_dir/registry` and returns that folder.
fn write_registry(
    work_dir: &std::path::Path,
    fleet: &[HouseholdSpec],
    options: &BenchOptions,
) -> Result<PathBuf, BenchError> {
    let io = |what: String| move |source| BenchError::Io { what, source };
    let registry_dir = work_dir.join("registry");
    std::fs::create_dir_all(&registry_dir)
        .map_err(io(format!("create {}", registry_dir.display())))?;
    for (name, text) in registry_files(
        fleet,
        &[],
        options.mix.technicians.households_per_technician,
        options.seed,
    ) {
        let path = registry_dir.join(name);
        std::fs::write(&path, text).map_err(io(format!("write {}", path.display())))?;
    }
    Ok(registry_dir)
}

/// The gateway under test and the edge boxes' connections to it (none open yet).
struct Link {
    gateway: GatewayProcess,
    api: GatewayApi,
    pool: BoxPool,
}

/// Starts the gateway in `work_dir` with the fleet's registry and the rule file.
async fn start_gateway(
    options: &BenchOptions,
    work_dir: &std::path::Path,
    registry_dir: PathBuf,
    rules: &RuleFile,
    fleet: &[HouseholdSpec],
) -> Result<Link, BenchError> {
    let settings = GatewaySettings {
        binary: options.gateway_bin.clone(),
        dir: work_dir.to_path_buf(),
        rules: rules.path.clone(),
        registry: Some(registry_dir),
        lateness: options.lateness,
        tick: options.tick,
        max_connections: (options.households + 1000).max(20_000),
        log_filter: options.gateway_log.clone(),
        influx_url: None,
        broker_log: None,
        next_connection_delay: None,
    };
    let gateway = GatewayProcess::start(&settings).await?;
    tracing::info!(mqtt = %gateway.mqtt, http = %gateway.http, dir = %work_dir.display(), "gateway started");
    let api = GatewayApi::new(gateway.http)?;
    let boxes = fleet.iter().map(BoxIdentity::of_household).collect();
    let pool = BoxPool::new(gateway.mqtt, boxes);
    Ok(Link { gateway, api, pool })
}

impl Bench {
    /// The run loop's state before the first box connects.
    fn new(
        world: World,
        dispatcher: Dispatcher,
        link: Link,
        options: &BenchOptions,
        scenario: &scenario::Scenario,
        fleet: &[HouseholdSpec],
        lateness_ms: i64,
    ) -> Bench {
        Bench {
            world,
            pool: link.pool,
            api: link.api,
            gateway: link.gateway,
            dispatcher,
            mix: options.mix.clone(),
            lateness_ms,
            published: 0,
            handled: 0,
            sent_messages: 0,
            messages_in: 0,
            tick_watermark_ms: None,
            tick_messages_done: 0,
            barriers_watermark_short: 0,
            finishing: Vec::new(),
            resolved_orders: BTreeSet::new(),
            orders_resolved: 0,
            order_action_errors: 0,
            max_in_flight: options.max_in_flight.max(2),
            last_progress: Instant::now(),
            last_round_ms: scenario.start_ms,
            coverage_ms: scenario.start_ms - lateness_ms,
            barriers: 0,
            unposted: VecDeque::new(),
            complaints: Vec::new(),
            complaint_requests: Vec::new(),
            orders: BTreeMap::new(),
            unprocessed_orders: Vec::new(),
            visits: Vec::new(),
            device_index: fleet
                .iter()
                .map(|h| (h.device_id.to_string(), h.index))
                .collect(),
        }
    }
}

/// Runs a winter bench and scores it.
pub async fn run_winter(options: BenchOptions) -> Result<BenchReport, BenchError> {
    let wall_start = Instant::now();
    let Plan {
        fleet,
        scenario,
        world,
        dispatcher,
        lateness_ms,
        horizon_ms,
    } = plan(&options)?;
    let (work_dir, temporary) =
        work_dir_or_temporary(options.work_dir.as_ref(), "bench", options.seed);
    let registry_dir = write_registry(&work_dir, &fleet, &options)?;
    let rules = rule_file(&options, &work_dir)?;
    let link = start_gateway(&options, &work_dir, registry_dir, &rules, &fleet).await?;
    let mut bench = Bench::new(
        world,
        dispatcher,
        link,
        &options,
        &scenario,
        &fleet,
        lateness_ms,
    );
    let all: Vec<usize> = (0..fleet.len()).collect();
    let connected = bench.connect_boxes(&all).await;
    if connected.is_ok() {
        tracing::info!(boxes = fleet.len(), "edge boxes connected");
    }
    let result = match connected {
        Ok(()) => run_rounds(&mut bench, &scenario, &options, wall_start, horizon_ms).await,
        Err(error) => Err(error),
    };
    let outcome = match result {
        Ok(()) => {
            finish(
                bench, &scenario, &options, &rules, wall_start, &work_dir, &fleet,
            )
            .await
        }
        Err(error) => {
            bench.pool.close().await;
            bench.gateway.stop().await;
            Err(error)
        }
    };
    match &outcome {
        Ok(_) if temporary && !options.keep_work_dir => {
            let _ = std::fs::remove_dir_all(&work_dir);
        }
        _ => tracing::info!(dir = %work_dir.display(), "bench files kept"),
    }
    outcome
}

/// The rule file the gateway runs, as the report names it.
struct RuleFile {
    /// `None`: the gateway's built-in pack.
    path: Option<PathBuf>,
    dropped: Vec<String>,
    dropped_fleet: Vec<String>,
}

impl RuleFile {
    fn describe(&self) -> String {
        self.path
            .as_ref()
            .map_or_else(|| "built-in".to_owned(), |p| p.display().to_string())
    }
}

/// The `--rules` file, or with `--drop-rules` a file derived from it (or from the built-in
/// pack) and written into the work folder.
fn rule_file(options: &BenchOptions, work_dir: &std::path::Path) -> Result<RuleFile, BenchError> {
    if options.drop_rules.is_empty() {
        return Ok(RuleFile {
            path: options.rules.clone(),
            dropped: Vec::new(),
            dropped_fleet: Vec::new(),
        });
    }
    let (text, origin) = match &options.rules {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|source| BenchError::Io {
                what: format!("read {}", path.display()),
                source,
            })?,
            path.display().to_string(),
        ),
        None => (
            rules::DEFAULT_RULES.to_owned(),
            rules::DEFAULT_RULES_ORIGIN.to_owned(),
        ),
    };
    let derived = rules::derive::drop_rules(&text, &origin, &options.drop_rules)
        .map_err(|e| BenchError::DropRules(format!("--drop-rules: {e}")))?;
    let path = work_dir.join("rules-derived.toml");
    std::fs::write(&path, &derived.text).map_err(|source| BenchError::Io {
        what: format!("write {}", path.display()),
        source,
    })?;
    tracing::info!(file = %path.display(), dropped = ?derived.dropped, dropped_fleet = ?derived.dropped_fleet, "the gateway runs a derived rule file");
    Ok(RuleFile {
        path: Some(path),
        dropped: derived.dropped,
        dropped_fleet: derived.dropped_fleet,
    })
}

/// Why a finished run's card cannot be trusted (empty: it can).
fn invalid_reasons(card: &ScoreCard) -> Vec<String> {
    let mut reasons = Vec::new();
    if card.complaints.failed > 0 {
        reasons.push(format!(
            "{} of {} complaints failed to post (first error: {})",
            card.complaints.failed,
            card.complaints.total,
            card.complaints.first_error.as_deref().unwrap_or("-")
        ));
    }
    reasons
}

async fn run_rounds(
    bench: &mut Bench,
    scenario: &scenario::Scenario,
    options: &BenchOptions,
    wall_start: Instant,
    horizon_ms: i64,
) -> Result<(), BenchError> {
    let interval_ms = bench.mix.telemetry.interval.as_millis() as i64;
    let rounds = (scenario.end_ms - scenario.start_ms) / interval_ms;
    let mut previous_round_total = 0;
    let mut last_progress = Instant::now();
    let run_start = Instant::now();
    for round in 1..=rounds {
        let target = scenario.start_ms + round * interval_ms;
        let postable = bench
            .unposted
            .front()
            .is_some_and(|c| c.received_at_ms <= bench.last_round_ms - bench.lateness_ms);
        if target > bench.coverage_ms + horizon_ms || postable {
            bench.barrier(false).await?;
        }
        bench.world.advance_to(target);
        bench.unposted.extend(bench.world.take_complaints());
        bench.publish_round().await?;
        bench.last_round_ms = target;
        // One round in flight: the previous one must be handled before the next is built.
        bench.wait_handled(previous_round_total).await?;
        previous_round_total = bench.published;
        if let Speed::Factor(factor) = options.speed {
            let sim_s = (target - scenario.start_ms) as f64 / 1000.0;
            let due = run_start + Duration::from_secs_f64(sim_s / factor);
            tokio::time::sleep_until(due).await;
        }
        if last_progress.elapsed() >= options.progress_every {
            last_progress = Instant::now();
            let sim_days = (target - scenario.start_ms) as f64 / 86_400_000.0;
            let wall = wall_start.elapsed().as_secs_f64();
            tracing::info!(
                day = format!("{sim_days:.2}/{}", options.days),
                speed = format!(
                    "{:.0}x",
                    sim_days * 86_400.0 / run_start.elapsed().as_secs_f64().max(1e-3)
                ),
                readings = bench.published,
                faults = bench.world.faults_started(),
                orders = bench.orders.len(),
                complaints = bench.complaints.len() + bench.unposted.len(),
                wall_s = format!("{wall:.0}"),
                "bench progress"
            );
        }
    }
    // The end: every complaint posted, every order read.
    bench.barrier(true).await
}

async fn finish(
    mut bench: Bench,
    scenario: &scenario::Scenario,
    options: &BenchOptions,
    rules: &RuleFile,
    wall_start: Instant,
    work_dir: &std::path::Path,
    fleet: &[fleet::HouseholdSpec],
) -> Result<BenchReport, BenchError> {
    let alerts = bench.api.alerts(MAX_PAGE).await?;
    let summary = bench.api.summary().await?;
    let alerts_truncated = alerts.len() >= MAX_PAGE;
    if alerts_truncated {
        tracing::warn!("more than {MAX_PAGE} alerts: the oldest were not read");
    }
    let (households, faults, traps) = bench.world.truth();
    let inputs = Inputs {
        households,
        faults,
        traps,
        complaints: bench.complaints.clone(),
        orders: bench.orders.values().cloned().collect(),
        alerts,
        visits: bench.visits.clone(),
        defrost_cycles: bench.world.defrost_cycles(),
    };
    let card = score::score(&inputs);
    let wall_seconds = wall_start.elapsed().as_secs_f64();
    let sim_seconds = (scenario.end_ms - scenario.start_ms) as f64 / 1000.0;
    let invalid_reasons = invalid_reasons(&card);
    let run = RunInfo {
        valid: invalid_reasons.is_empty(),
        invalid_reasons,
        sync: SYNC.to_owned(),
        rules: rules.describe(),
        dropped_rules: rules.dropped.clone(),
        dropped_fleet_rules: rules.dropped_fleet.clone(),
        households: fleet.len(),
        days: options.days,
        seed: options.seed,
        mix: bench.mix.name.clone(),
        speed: options.speed.to_string(),
        telemetry_interval_s: bench.mix.telemetry.interval.as_secs_f64(),
        lateness_s: options.lateness.as_secs_f64(),
        rounds: ((scenario.end_ms - scenario.start_ms)
            / bench.mix.telemetry.interval.as_millis().max(1) as i64) as u64,
        barriers: bench.barriers,
        barriers_watermark_short: bench.barriers_watermark_short,
        orders_resolved: bench.orders_resolved,
        order_action_errors: bench.order_action_errors,
        readings_published: bench.published,
        readings_accepted: summary.readings_accepted,
        readings_rejected: summary.rejected.clone(),
        faults_not_placed: scenario.not_placed.clone(),
        technicians: bench.dispatcher.team_sizes(),
        wall_seconds: (wall_seconds * 10.0).round() / 10.0,
        achieved_speed: (sim_seconds / wall_seconds.max(1e-3)).round(),
        readings_per_second: (bench.published as f64 / wall_seconds.max(1e-3)).round(),
        alerts_truncated,
        pool: bench.pool.stats(),
        world: bench.world.stats(),
        work_dir: work_dir.display().to_string(),
    };
    bench.pool.close().await;
    bench.gateway.stop().await;
    let unique: BTreeSet<i64> = bench.orders.keys().copied().collect();
    tracing::info!(
        orders = unique.len(),
        wall_s = run.wall_seconds,
        "bench finished"
    );
    Ok(BenchReport { run, score: card })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_parse() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("600".parse::<Speed>(), Ok(Speed::Factor(600.0)));
        assert_eq!("60x".parse::<Speed>(), Ok(Speed::Factor(60.0)));
        assert!("0".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
    }

    #[test]
    fn the_shipped_profiles_are_built_in() {
        let profiles = shipped_profiles().expect("profiles");
        let on_disk = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../profiles"))
            .expect("profiles folder")
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
            .count();
        assert_eq!(profiles.len(), on_disk, "every shipped profile is built in");
    }

    /// The registry files read back through the gateway's own import.
    fn imported(files: Vec<(&'static str, String)>) -> ::gateway::registry::RegistryData {
        let files = files
            .into_iter()
            .map(|(name, text)| (name.to_owned(), text))
            .collect();
        ::gateway::registry::parse(&files, &::gateway::registry::KnownIds::default())
            .expect("the gateway imports the bench's registry")
    }

    #[test]
    fn every_device_has_a_household_of_its_own_in_its_village() {
        let profiles = shipped_profiles().expect("profiles");
        let fleet = fleet::generate(60, 3, &profiles).expect("fleet");
        let data = imported(registry_files(&fleet, &[], 20, 3));
        assert_eq!(data.devices.len(), 60);
        assert_eq!(data.households.len(), 60);
        for (h, device) in fleet.iter().zip(&data.devices) {
            assert_eq!(device.id, h.device_id.to_string());
            assert_eq!(device.household_id, format!("hh-{}", h.device_id));
            assert_eq!(device.brand, h.profile.brand);
            // Installed 2018-2024 from the household's model seed.
            let year: u64 = device.installed_on[..4].parse().expect("year");
            assert_eq!(year, 2018 + h.model_seed % 7, "{}", device.id);
            let household = data
                .households
                .iter()
                .find(|x| x.id == device.household_id)
                .expect("household");
            assert_eq!(
                household.village_id,
                format!("{}-{}", h.township.id, h.village.id)
            );
            assert_eq!(household.edge_box, None, "the box id is the household's");
            assert_eq!(household.vulnerable, h.vulnerable);
        }
        // A township's third-party team: one technician per 20 of its households.
        let third_party = ::gateway::registry::TeamKind::ThirdParty;
        for team in data.teams.iter().filter(|t| t.kind == third_party) {
            let devices = fleet
                .iter()
                .filter(|h| team.townships.iter().any(|t| t == h.township.id))
                .count();
            let technicians = data
                .technicians
                .iter()
                .filter(|t| t.team_id == team.id)
                .count();
            assert_eq!(technicians, devices.div_ceil(20), "{}", team.id);
        }
        assert!(data
            .teams
            .iter()
            .any(|t| t.kind == ::gateway::registry::TeamKind::PowerUtility));
    }

    #[test]
    fn devices_of_a_box_are_registered_to_the_household_of_that_box() {
        let profiles = shipped_profiles().expect("profiles");
        let fleet = fleet::generate(200, 3, &profiles).expect("fleet");
        let groups = crate::load::group_households(&fleet, 4);
        let data = imported(registry_files(&fleet, &groups, 500, 3));
        assert_eq!(data.households.len(), groups.len(), "one household per box");
        let boxes: BTreeSet<&str> = data.households.iter().map(|h| h.edge_box_id()).collect();
        assert_eq!(boxes.len(), groups.len(), "one box per household");
        assert_eq!(data.devices.len(), 200);
        for group in &groups {
            for &position in &group.households {
                let device = fleet[position].device_id.to_string();
                let household_id = &data
                    .devices
                    .iter()
                    .find(|d| d.id == device)
                    .expect("device")
                    .household_id;
                let household = data
                    .households
                    .iter()
                    .find(|h| &h.id == household_id)
                    .expect("household");
                assert_eq!(
                    household.edge_box.as_deref(),
                    Some(group.identity.box_id.as_str())
                );
                assert_eq!(
                    household.village_id,
                    format!(
                        "{}-{}",
                        fleet[position].township.id, fleet[position].village.id
                    )
                );
            }
        }
        // One device per box: the plain registry's rows, each household naming its box.
        let single = crate::load::group_households(&fleet, 1);
        let plain = imported(registry_files(&fleet, &[], 500, 3));
        let mut boxed = imported(registry_files(&fleet, &single, 500, 3));
        for (household, group) in boxed.households.iter_mut().zip(&single) {
            assert_eq!(
                household.edge_box.take(),
                Some(group.identity.box_id.clone())
            );
        }
        assert_eq!(boxed, plain);
    }
}
