//! `demo`: the whole system in one process with no external service: the embedded
//! broker, simulated Yanqing households served over real Modbus TCP, one edge agent per
//! household, the rules, the work orders and the HTTP API. A fault is injected every so often
//! so that a person watching sees orders appear, and a simulated field crew and centre desk
//! ([`crate::crew`]) work every order through the API to `closed`, on the demo's compressed
//! clock; a fault no order reached ends by itself after `--repair-after`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use edge_agent::agent::Agent;
use edge_agent::config::{AgentConfig, Device, MqttConfig, PollingConfig, TransportConfig};
use edge_agent::profile::Profile;
use gateway::config::GatewayConfig;
use gateway::registry::{self, demo::FleetHousehold, RegistryData, TeamKind, Technician};
use simulator::{HouseholdInfo, SimConfig, Simulation};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{DeviceKind, FaultCategory};

use crate::crew::{self, CrewMode, DemoClock, Faults, Member};

/// The shipped register-map profiles, built into the binary so the demo runs from anywhere.
const PROFILES: &[(&str, &str)] = &[
    (
        "aurora-ashp.toml",
        include_str!("../../profiles/aurora-ashp.toml"),
    ),
    (
        "beifeng-ashp.toml",
        include_str!("../../profiles/beifeng-ashp.toml"),
    ),
    (
        "huanre-boiler.toml",
        include_str!("../../profiles/huanre-boiler.toml"),
    ),
    (
        "lingyun-boiler.toml",
        include_str!("../../profiles/lingyun-boiler.toml"),
    ),
];

/// Options of `demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// Simulated households, spread over Yanqing's 15 townships.
    #[arg(long, default_value_t = 300)]
    pub households: usize,
    /// Seed of the simulated fleet and of the fault schedule.
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// Time between two injected faults.
    #[arg(long, default_value = "20s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub fault_every: Duration,
    /// How long an injected fault lasts when no order reaches it (a controller that restarts,
    /// a resident who resets it); with the crew on, a fault with an order lasts until its
    /// technician resolves the order.
    #[arg(long, default_value = "3m", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub repair_after: Duration,
    /// The simulated technicians and desk: `on` works every order to `closed` through the API,
    /// `off` leaves the orders to a person in the console.
    #[arg(long, value_enum, default_value_t = CrewMode::On)]
    pub crew: CrewMode,
    /// Technicians in each township's vendor and third-party teams (at least the registry's
    /// one per 500 households); each works one order at a time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub technicians_per_team: u32,
    /// How many times faster than real time the people and the SLA clocks run (with the crew
    /// on; off, the SLA clocks are the scheme's): at 60, a minute of travel or repair takes a
    /// second, and the SLA clocks are 10 s to dispatch, 2 min on site, 4 min repaired. The
    /// heaters, edge agents and rules run in real time.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub time_scale: u32,
    /// How often each edge agent polls its heater.
    #[arg(long, default_value = "5s", value_parser = humantime_serde::re::humantime::parse_duration)]
    pub poll_every: Duration,
    /// HTTP API address; use port 0 for any free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// MQTT broker address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub mqtt: SocketAddr,
    /// Folder for the demo's database and profiles (default: a new folder under the temp dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Runs the demo until `shutdown`.
pub async fn run(options: DemoOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let data_dir = options.data_dir.clone().map_or_else(private_temp_dir, Ok)?;
    let (profiles_dir, profiles) = write_profiles(&data_dir)?;

    let tracker = TaskTracker::new();
    let simulation = Simulation::start(
        SimConfig::new(options.households, options.seed, profiles_dir.clone()),
        shutdown.clone(),
    )
    .await?;
    let households = simulation.households();
    // Without the crew, nobody works the orders: the SLA clocks keep the scheme's real time.
    let clock = DemoClock::new(match options.crew {
        CrewMode::On => options.time_scale,
        CrewMode::Off => 1,
    });
    let (config_path, members) =
        write_gateway_config(&options, clock, &data_dir, &households, &profiles)?;
    // On Ctrl-C the edge agents stop first and disconnect from a running broker, as boxes do,
    // then the gateway; stopped together, the broker was torn down under 300 live connections.
    let gateway_stop = CancellationToken::new();
    let (started, mqtt_addr) = start_gateway(&config_path, &gateway_stop, &tracker).await?;

    let agents = CancellationToken::new();
    let agent_tasks = spawn_agents(
        &options,
        &data_dir,
        mqtt_addr,
        &households,
        &profiles,
        &agents,
    )?;
    tracker.close();

    let simulation = Arc::new(simulation);
    let faults = Arc::new(Faults::default());
    let crew_stop = CancellationToken::new();
    let crew_tasks = TaskTracker::new();
    let crew_api = match options.crew {
        CrewMode::On => Some(crew::start(
            crew_config(&options, clock, members, started.http)?,
            Arc::clone(&faults),
            Arc::clone(&simulation),
            &crew_tasks,
            crew_stop.clone(),
        )?),
        CrewMode::Off => None,
    };
    crew_tasks.close();

    print_banner(
        &options,
        clock,
        started.http,
        mqtt_addr,
        &households,
        &data_dir,
    );
    let world = FaultWorld {
        simulation: &simulation,
        faults: &faults,
        crew_api: crew_api.as_ref(),
        repair_after: options.repair_after,
    };
    let schedule = FaultSchedule::new(options.seed, &households, &profiles);
    world.run(schedule, options.fault_every, &shutdown).await;
    // The crew first, then the boxes, then the gateway they talk to.
    crew_stop.cancel();
    wait_stopped(&crew_tasks, "the demo's crew").await;
    agents.cancel();
    wait_stopped(&agent_tasks, "demo edge agents").await;
    gateway_stop.cancel();
    wait_stopped(&tracker, "the demo's gateway").await;
    Ok(())
}

/// The crew's settings: the gateway's API at `http`, the demo's seed and clock, the registry's
/// technicians, and a random run id (its steps' idempotency keys differ from an earlier run's).
fn crew_config(
    options: &DemoOptions,
    clock: DemoClock,
    members: Vec<Member>,
    http: SocketAddr,
) -> anyhow::Result<crew::CrewConfig> {
    Ok(crew::CrewConfig {
        api: format!("http://{http}"),
        seed: options.seed,
        clock,
        members,
        run_id: gateway::broker::random_suffix().map_err(|e| anyhow::anyhow!("{e}"))?,
    })
}

/// Starts the embedded gateway on the config at `config_path`, its tasks on `tracker` until
/// `stop`; returns it (kept by the caller for the demo's life) and its broker's address.
async fn start_gateway(
    config_path: &std::path::Path,
    stop: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<(gateway::app::Started, SocketAddr)> {
    let config = GatewayConfig::load(Some(config_path))?;
    let started = gateway::app::start(config, stop.clone(), tracker)
        .await
        .map_err(|e| anyhow::anyhow!("{e:#} (is another demo running? try --http 127.0.0.1:0)"))?;
    let mqtt_addr: SocketAddr = started
        .mqtt
        .parse()
        .map_err(|e| anyhow::anyhow!("the embedded broker address {:?}: {e}", started.mqtt))?;
    Ok((started, mqtt_addr))
}

/// Waits up to 10 s for `tasks` to end, and says so when they do not.
async fn wait_stopped(tasks: &TaskTracker, what: &str) {
    if tokio::time::timeout(Duration::from_secs(10), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("{what} did not stop within 10s");
    }
}

/// Writes the shipped profiles into `data_dir/profiles` (the simulation reads them there) and
/// returns that folder and the profiles by id.
fn write_profiles(
    data_dir: &std::path::Path,
) -> anyhow::Result<(PathBuf, HashMap<String, Arc<Profile>>)> {
    let profiles_dir = data_dir.join("profiles");
    std::fs::create_dir_all(&profiles_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", profiles_dir.display()))?;
    let mut profiles = HashMap::new();
    for (file, text) in PROFILES {
        let path = profiles_dir.join(file);
        std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        let profile = Profile::parse(text, file)?;
        profiles.insert(profile.id.clone(), Arc::new(profile));
    }
    Ok((profiles_dir, profiles))
}

/// Spawns one edge agent per household (box `box-{device}`), each stopping on `agents`;
/// returns their tasks, closed.
fn spawn_agents(
    options: &DemoOptions,
    data_dir: &std::path::Path,
    mqtt_addr: SocketAddr,
    households: &[HouseholdInfo],
    profiles: &HashMap<String, Arc<Profile>>,
    agents: &CancellationToken,
) -> anyhow::Result<TaskTracker> {
    let agent_tasks = TaskTracker::new();
    // Every box watches on its own as a field box does (its uplink never drops here, so it
    // only watches); the pack is derived and parsed once for all of them.
    let guard = edge_agent::guard::GuardConfig::default();
    let guard_rules = edge_agent::guard::default_rule_set()
        .map_err(|e| anyhow::anyhow!("the boxes' rules: {e}"))?;
    for household in households {
        let Some(profile) = profiles.get(&household.profile_id) else {
            anyhow::bail!(
                "household {} uses unknown profile {}",
                household.device_id,
                household.profile_id
            );
        };
        let mut config = agent_config(options, data_dir, mqtt_addr, household, profile);
        config.guard = guard.clone();
        config.guard_rules = Some(guard_rules.clone());
        let token = agents.clone();
        agent_tasks.spawn(async move {
            if let Err(error) = Agent::new(config).run(token).await {
                tracing::error!(error = %format!("{error:#}"), "demo edge agent stopped");
            }
        });
    }
    agent_tasks.close();
    Ok(agent_tasks)
}

/// The config of a household's edge box: its one device over Modbus TCP, the embedded
/// broker, the defaults elsewhere (the guard's pack is set by the caller).
fn agent_config(
    options: &DemoOptions,
    data_dir: &std::path::Path,
    mqtt_addr: SocketAddr,
    household: &HouseholdInfo,
    profile: &Arc<Profile>,
) -> AgentConfig {
    let township = household.township.clone();
    let agent_id = format!("box-{}", household.device_id);
    AgentConfig {
        data_dir: data_dir.join("agents").join(&agent_id),
        agent_id,
        township: township.clone(),
        mqtt: MqttConfig {
            host: mqtt_addr.ip().to_string(),
            port: mqtt_addr.port(),
            client_id: None,
            username: None,
            password: None,
            keep_alive: Duration::from_secs(15),
            max_reconnect_backoff: Duration::from_secs(10),
            tls: None,
            tenant: None,
            max_inflight: 100,
        },
        polling: PollingConfig {
            interval: options.poll_every,
            ..PollingConfig::default()
        },
        devices: vec![Device {
            id: household.device_id.clone(),
            township,
            profile: Arc::clone(profile),
            unit_id: household.unit_id,
            transport: TransportConfig::Tcp {
                address: household.modbus_addr,
            },
            interval: options.poll_every,
        }],
        buses: Vec::new(),
        queue: edge_agent::config::QueueConfig::default(),
        health: edge_agent::config::HealthConfig::default(),
        commands: edge_agent::config::CommandsConfig::default(),
        // The demo's simulated boxes run on this machine's clock.
        clock: edge_agent::clock::ClockConfig::default(),
        guard: edge_agent::guard::GuardConfig::default(),
        guard_rules: None,
    }
}

/// What the fault loop touches: the simulated houses, the injected faults, the crew's view
/// of the orders (with the crew on) and how long a fault no order reached lasts.
struct FaultWorld<'a> {
    simulation: &'a Simulation,
    faults: &'a Faults,
    crew_api: Option<&'a crew::Api>,
    repair_after: Duration,
}

impl FaultWorld<'_> {
    /// Injects a fault every `fault_every` and ends the due ones, until `shutdown`.
    async fn run(
        &self,
        mut schedule: FaultSchedule<'_>,
        fault_every: Duration,
        shutdown: &CancellationToken,
    ) {
        let mut next_fault = tokio::time::interval(fault_every);
        next_fault.tick().await;
        let mut repair_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = next_fault.tick() => self.inject_next(&mut schedule),
                _ = repair_check.tick() => self.end_due_faults().await,
            }
        }
    }

    /// Injects the schedule's next fault, if a household is free of one.
    fn inject_next(&self, schedule: &mut FaultSchedule<'_>) {
        let Some((household, category)) = schedule.next(&self.faults.devices()) else {
            return;
        };
        match self.simulation.inject_fault(&household.device_id, category) {
            Ok(()) => {
                println!(
                    "demo: injected fault {} into {} ({} {}, {} / {})",
                    category.as_str(),
                    household.device_id,
                    household.profile_id,
                    household.kind.as_str(),
                    household.township_name,
                    household.village_name,
                );
                self.faults.injected(
                    household.device_id.clone(),
                    category,
                    tokio::time::Instant::now() + self.repair_after,
                );
            }
            Err(error) => tracing::warn!(%error, "fault injection failed"),
        }
    }

    /// Ends the faults that are due; with the crew on, a fault that has an order waits for its
    /// technician.
    async fn end_due_faults(&self) {
        for device in self.faults.due(tokio::time::Instant::now()) {
            if let Some(api) = self.crew_api {
                match api.has_open_order(&device).await {
                    Ok(false) => {}
                    Ok(true) => {
                        self.faults
                            .postpone(&device, tokio::time::Instant::now() + self.repair_after);
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(device = %device, %error, "cannot tell whether the fault has an order; asking again later");
                        self.faults
                            .postpone(&device, tokio::time::Instant::now() + self.repair_after);
                        continue;
                    }
                }
            }
            self.faults.remove(&device);
            match self.simulation.clear_fault(&device) {
                Ok(()) if self.crew_api.is_some() => {
                    println!("demo: the fault of {device} ended by itself (no order reached it)")
                }
                Ok(()) => println!("demo: technician repaired {device}"),
                Err(error) => tracing::warn!(%error, "fault clearing failed"),
            }
        }
    }
}

/// Writes the demo's registry (generated from the simulated fleet, with
/// `--technicians-per-team`) and its gateway config (SLA clocks compressed by the demo's time
/// scale); returns the config's path and the technicians of the registry.
fn write_gateway_config(
    options: &DemoOptions,
    clock: DemoClock,
    data_dir: &std::path::Path,
    households: &[HouseholdInfo],
    profiles: &HashMap<String, Arc<Profile>>,
) -> anyhow::Result<(PathBuf, Vec<Member>)> {
    let fleet: Vec<FleetHousehold> = households
        .iter()
        .map(|h| {
            let profile = profiles.get(&h.profile_id);
            FleetHousehold {
                device_id: h.device_id.to_string(),
                township: h.township.to_string(),
                township_name: h.township_name.clone(),
                village: h.village.clone(),
                village_name: h.village_name.clone(),
                kind: h.kind.as_str().to_owned(),
                brand: profile.map_or_else(|| "unknown".to_owned(), |p| p.brand.clone()),
                model: profile.map_or_else(|| "unknown".to_owned(), |p| p.model.clone()),
                vulnerable: h.vulnerable,
            }
        })
        .collect();
    let mut data = registry::demo::generate(&fleet, options.seed);
    staff_teams(&mut data, options.technicians_per_team as usize);
    let members = data
        .technicians
        .iter()
        .map(|t| Member {
            id: t.id.clone(),
            team_id: t.team_id.clone(),
            name: t.name.clone(),
        })
        .collect();
    let registry_dir = data_dir.join("registry");
    std::fs::create_dir_all(&registry_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", registry_dir.display()))?;
    for (name, text) in registry::demo::to_csv_files(&data) {
        let path = registry_dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    write_forecast(data_dir, households)?;
    let sla = gateway::orders::sla::SlaConfig::default();
    let ms = |d: Duration| clock.compress(d).as_millis().max(1);
    let path = data_dir.join("gateway.toml");
    let text = format!(
        "# Written by `demo`: everything on this machine, API without tokens.\n\
         [broker]\nlisten = \"{}\"\n\n[http]\nlisten = \"{}\"\n\n[store]\npath = \"gateway.sqlite\"\n\n\
         [api]\nauth = \"disabled\"\n\n[registry]\nimport = \"registry\"\n\n\
         # The scheme's SLA clocks on the demo's clock ({}x real time).\n\
         [sla]\ndispatch = \"{}ms\"\non_site = \"{}ms\"\nrepaired = \"{}ms\"\ncheck_every = \"{}ms\"\n",
        options.mqtt,
        options.http,
        clock.scale(),
        ms(sla.dispatch),
        ms(sla.on_site),
        ms(sla.repaired),
        ms(sla.check_every).clamp(100, 1_000),
    );
    let text = format!(
        "{text}\n# The 防寒 page: a forecast written at start (a cold wave ahead for half the\n\
         # townships); the operator opens the sweep from the console.\n\
         [prevention]\nforecast_file = \"forecast.csv\"\npoll_every = \"1m\"\nauto_open = false\n"
    );
    std::fs::write(&path, text)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    Ok((path, members))
}

/// Writes the demo's forecast (`forecast.csv`, the format of `gateway::prevention::weather`):
/// 3-hourly minimum temperatures for the next 72 hours of every township of the fleet, from
/// the start of the current hour. Every other township (by id) gets a cold wave: down to
/// -19 °C about 36 hours ahead; the others a mild -3 to -8 °C.
fn write_forecast(data_dir: &std::path::Path, households: &[HouseholdInfo]) -> anyhow::Result<()> {
    let townships: std::collections::BTreeSet<&str> =
        households.iter().map(|h| h.township.as_str()).collect();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let hour_ms = 3_600_000;
    let start = now_ms - now_ms.rem_euclid(hour_ms);
    let mut text = String::from(
        "# Written by `demo` at start: 3-hourly forecast minimum per township.\ntime,township_or_village,min_temp_c\n",
    );
    for (index, township) in townships.iter().enumerate() {
        let cold = index % 2 == 0;
        for step in 0..=24_i64 {
            let at = start + step * 3 * hour_ms;
            let hours = (step * 3) as f64;
            let temperature = if cold {
                // A trough 36 h ahead: -6 °C falling to -19 °C and back.
                -6.0 - 13.0 * (-((hours - 36.0) / 14.0).powi(2)).exp()
            } else {
                -3.0 - 5.0 * (hours / 72.0)
            };
            let seconds = at / 1000;
            let (y, m, d) = wire::calendar::civil_from_days(seconds.div_euclid(86_400));
            let in_day = seconds.rem_euclid(86_400);
            text.push_str(&format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}Z,{township},{temperature:.1}\n",
                in_day / 3600,
                in_day / 60 % 60
            ));
        }
    }
    let path = data_dir.join("forecast.csv");
    std::fs::write(&path, text).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Gives each township's vendor and third-party team at least `per_team` technicians (the
/// utilities keep their own crews), named and numbered like the registry's own.
fn staff_teams(data: &mut RegistryData, per_team: usize) {
    const NAMES: &[&str] = &[
        "赵永强",
        "钱建军",
        "孙立华",
        "李春生",
        "周国平",
        "吴德明",
        "郑海涛",
        "王卫国",
        "冯志刚",
        "陈宝林",
    ];
    let teams: Vec<(String, Option<String>)> = data
        .teams
        .iter()
        .filter(|t| matches!(t.kind, TeamKind::Vendor | TeamKind::ThirdParty))
        .map(|t| {
            let home = data
                .technicians
                .iter()
                .find(|tech| tech.team_id == t.id)
                .and_then(|tech| tech.home_village_id.clone());
            (t.id.clone(), home)
        })
        .collect();
    for (team, home) in teams {
        let mut staffed = data
            .technicians
            .iter()
            .filter(|t| t.team_id == team)
            .count();
        while staffed < per_team {
            staffed += 1;
            let index = data.technicians.len();
            data.technicians.push(Technician {
                id: format!("{team}-tech-{staffed:02}"),
                team_id: team.clone(),
                name: NAMES[index % NAMES.len()].to_owned(),
                phone: format!("10091{:06}", index % 1_000_000),
                home_village_id: home.clone(),
            });
        }
    }
}

fn print_banner(
    options: &DemoOptions,
    clock: DemoClock,
    http: SocketAddr,
    mqtt: SocketAddr,
    households: &[HouseholdInfo],
    data_dir: &std::path::Path,
) {
    let heat_pumps = households
        .iter()
        .filter(|h| h.kind == DeviceKind::HeatPump)
        .count();
    let townships: std::collections::BTreeSet<&str> =
        households.iter().map(|h| h.township.as_str()).collect();
    println!();
    println!("Yanqing rural clean-heating demo (延庆农村清洁取暖运维演示)");
    println!(
        "  {} households in {} townships: {} heat pumps, {} gas boilers, each polled over Modbus TCP by its own edge agent every {:?}",
        households.len(),
        townships.len(),
        heat_pumps,
        households.len() - heat_pumps,
        options.poll_every
    );
    match options.crew {
        CrewMode::On => {
            println!(
                "  a fault is injected every {:?}; simulated technicians ({} per team) accept, drive out, repair and resolve, the desk rings back (回访) and closes",
                options.fault_every, options.technicians_per_team
            );
            println!(
                "  the people and the SLA clocks run {}x real time: a minute of travel or repair takes {:?}; dispatch 10 min = {:?}, on site 2 h = {:?}, repaired 4 h = {:?} (the heaters and rules run in real time)",
                clock.scale(),
                clock.minutes(1.0),
                clock.compress(Duration::from_secs(600)),
                clock.compress(Duration::from_secs(7200)),
                clock.compress(Duration::from_secs(14400)),
            );
        }
        CrewMode::Off => println!(
            "  a fault is injected every {:?} and repaired {:?} later; nobody works the orders (--crew off): act on them in the console",
            options.fault_every, options.repair_after
        ),
    }
    println!();
    println!("  console         http://{http}/  (operator console, 中文 / English)");
    println!("  HTTP API        http://{http}/api/v1/summary");
    println!("  work orders     http://{http}/api/v1/orders");
    println!("  active alerts   http://{http}/api/v1/alerts?active=true");
    println!("  devices         http://{http}/api/v1/devices?township=yanqing");
    println!("  metrics         http://{http}/metrics");
    println!(
        "  MQTT broker     mqtt://{mqtt}  (try: mosquitto_sub -h {} -p {} -t 'heating/v1/#' -v)",
        mqtt.ip(),
        mqtt.port()
    );
    println!("  data            {}", data_dir.display());
    println!();
    println!("  curl -s http://{http}/api/v1/orders | python3 -m json.tool");
    println!();
    println!("Press Ctrl-C to stop.");
}

/// Picks which household gets which fault next, deterministically from the seed.
struct FaultSchedule<'a> {
    state: u64,
    households: &'a [HouseholdInfo],
    categories: HashMap<String, Vec<FaultCategory>>,
}

impl<'a> FaultSchedule<'a> {
    fn new(
        seed: u64,
        households: &'a [HouseholdInfo],
        profiles: &HashMap<String, Arc<Profile>>,
    ) -> Self {
        let categories = profiles
            .iter()
            .map(|(id, p)| {
                let mut categories: Vec<FaultCategory> = p.faults().map(|(_, c, _)| c).collect();
                categories.sort();
                categories.dedup();
                (id.clone(), categories)
            })
            .collect();
        Self {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
            households,
            categories,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: small, deterministic, good enough to pick demo victims.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next(
        &mut self,
        busy: &std::collections::HashSet<wire::DeviceId>,
    ) -> Option<(&'a HouseholdInfo, FaultCategory)> {
        if self.households.is_empty() {
            return None;
        }
        for _ in 0..16 {
            let household =
                &self.households[(self.random() % self.households.len() as u64) as usize];
            if busy.contains(&household.device_id) {
                continue;
            }
            let count = self.categories.get(&household.profile_id)?.len() as u64;
            if count == 0 {
                return None;
            }
            let pick = (self.random() % count) as usize;
            let category = *self.categories.get(&household.profile_id)?.get(pick)?;
            return Some((household, category));
        }
        None
    }
}

/// A new folder under the temp dir that only this user can enter, with a random name: a
/// predictable one (`…-{pid}`) could be made in advance by another local user, or be a symlink
/// to somewhere else.
fn private_temp_dir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let suffix = gateway::broker::random_suffix().map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = std::env::temp_dir().join(format!("yanqing-heating-demo-{suffix}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}
