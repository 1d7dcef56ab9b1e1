//! The running simulation: loads the profiles, generates the fleet, binds one Modbus listener
//! per household, and steps every household's model in simulated time until shutdown.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_agent::profile::Profile;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_modbus::prelude::ExceptionCode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, TownshipId};

use crate::fleet::{self, Building};
use crate::modbus::{self, RegisterMap, RequestCounters, RequestCounts, Write};
use crate::model::{Climate, House, HouseParams, WriteRefused};
use crate::SimError;

/// How to run a simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of households in the fleet.
    pub households: usize,
    /// Seed of the fleet, the weather and every household's noise.
    pub seed: u64,
    /// Folder whose `*.toml` files are the register-map profiles.
    pub profiles_dir: PathBuf,
    /// Simulated seconds per wall-clock second; 0 freezes simulated time.
    pub speed: f64,
    /// Model step in simulated time.
    pub step: Duration,
    /// Address the Modbus listeners bind to (each on a port of its own).
    pub bind_ip: IpAddr,
}

impl SimConfig {
    /// A configuration with the defaults: real-time speed, 1 s steps, listeners on 127.0.0.1.
    pub fn new(households: usize, seed: u64, profiles_dir: impl Into<PathBuf>) -> SimConfig {
        SimConfig {
            households,
            seed,
            profiles_dir: profiles_dir.into(),
            speed: 1.0,
            step: Duration::from_secs(1),
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        if self.households == 0 {
            return Err(SimError::Config("households must be at least 1".into()));
        }
        if !self.speed.is_finite() || self.speed < 0.0 {
            return Err(SimError::Config(format!(
                "speed must be a finite number >= 0, not {}",
                self.speed
            )));
        }
        if self.step.is_zero() {
            return Err(SimError::Config("step must be longer than zero".into()));
        }
        Ok(())
    }
}

/// One household as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdInfo {
    pub device_id: DeviceId,
    /// Township id in pinyin, e.g. `yanqing`.
    pub township: TownshipId,
    /// Township name in Chinese, e.g. 延庆镇.
    pub township_name: String,
    /// Village id in pinyin, unique within the township, e.g. `dongguan`.
    pub village: String,
    /// Village name in Chinese, e.g. 东关村.
    pub village_name: String,
    pub kind: DeviceKind,
    /// Id of the register-map profile the device speaks.
    pub profile_id: String,
    /// Where the device's Modbus TCP server listens.
    pub modbus_addr: SocketAddr,
    /// Unit id to address it with (every unit id is answered).
    pub unit_id: u8,
    /// An elderly resident lives alone.
    pub vulnerable: bool,
    pub building: Building,
}

/// A household's state at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HouseholdSnapshot {
    pub device_id: DeviceId,
    pub profile_id: String,
    pub kind: DeviceKind,
    /// Simulated time of the values, Unix milliseconds UTC.
    pub sim_time_ms: i64,
    /// Canonical values as the device shows them (with sensor noise, before quantisation).
    pub values: wire::Values,
    /// The active fault as the profile decodes its code.
    pub fault: Option<Fault>,
    /// The category that was injected (the decoded one differs when the brand has no code for
    /// it and the fallback code is shown).
    pub injected: Option<FaultCategory>,
    /// Modbus requests received so far.
    pub requests: RequestCounts,
}

/// One simulated household: its manifest entry, register map, model and request counters.
#[derive(Debug)]
pub(crate) struct Household {
    pub(crate) info: HouseholdInfo,
    pub(crate) registers: RegisterMap,
    pub(crate) model: Mutex<House>,
    pub(crate) requests: RequestCounters,
}

impl Household {
    /// A household of the fleet served at `modbus_addr`: its manifest entry, its register map
    /// (shared by profile in `maps`) and its model at `start_unix_s`.
    fn new(
        spec: &fleet::HouseholdSpec,
        modbus_addr: SocketAddr,
        maps: &HashMap<String, RegisterMap>,
        climate: &Climate,
        start_unix_s: f64,
    ) -> Household {
        let info = HouseholdInfo {
            device_id: spec.device_id.clone(),
            township: spec.township_id.clone(),
            township_name: spec.township.name.to_owned(),
            village: spec.village.id.to_owned(),
            village_name: spec.village.name.to_owned(),
            kind: spec.kind,
            profile_id: spec.profile.id.clone(),
            modbus_addr,
            unit_id: modbus::UNIT_ID,
            vulnerable: spec.vulnerable,
            building: spec.building,
        };
        let registers = maps
            .get(&spec.profile.id)
            .cloned()
            .unwrap_or_else(|| RegisterMap::new(Arc::clone(&spec.profile)));
        let model = House::new(
            HouseParams::from(spec),
            Arc::clone(&spec.profile),
            climate,
            start_unix_s,
        );
        Household {
            info,
            registers,
            model: Mutex::new(model),
            requests: RequestCounters::default(),
        }
    }

    fn model(&self) -> MutexGuard<'_, House> {
        // A panic while holding the lock cannot leave the model half-updated in a way that
        // matters for a simulation; keep serving.
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn values(&self) -> BTreeMap<&'static str, f64> {
        self.model().values()
    }

    /// Applies checked writes to the model, all or nothing.
    pub(crate) fn apply_writes(&self, writes: &[Write]) -> Result<(), ExceptionCode> {
        let refused = |error: WriteRefused| match error {
            WriteRefused::NotWritable(_) => ExceptionCode::IllegalDataAddress,
            WriteRefused::OutOfRange { .. } => ExceptionCode::IllegalDataValue,
        };
        for (name, value) in writes {
            House::check_write(name, *value).map_err(refused)?;
        }
        let mut model = self.model();
        for (name, value) in writes {
            model.write(name, *value).map_err(refused)?;
            tracing::info!(
                device_id = %self.info.device_id,
                name = %name,
                value = *value,
                "Modbus write applied"
            );
        }
        Ok(())
    }

    fn snapshot(&self) -> HouseholdSnapshot {
        let model = self.model();
        HouseholdSnapshot {
            device_id: self.info.device_id.clone(),
            profile_id: self.info.profile_id.clone(),
            kind: self.info.kind,
            sim_time_ms: (model.now_unix_s() * 1000.0).round() as i64,
            values: model
                .values()
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            fault: model.fault(),
            injected: model.injected(),
            requests: self.requests.snapshot(),
        }
    }
}

struct Shared {
    households: Vec<Arc<Household>>,
    by_id: HashMap<DeviceId, usize>,
}

/// A running simulation. Cheap to clone; every clone is a handle to the same households.
#[derive(Clone)]
pub struct Simulation {
    shared: Arc<Shared>,
    tasks: TaskTracker,
}

impl std::fmt::Debug for Simulation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulation")
            .field("households", &self.shared.households.len())
            .finish_non_exhaustive()
    }
}

/// Loads every `*.toml` file of a folder as a profile, in file-name order.
pub fn load_profiles(dir: &Path) -> Result<Vec<Arc<Profile>>, SimError> {
    let unreadable = |source| SimError::ProfilesDir {
        path: dir.to_owned(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut profiles: Vec<Arc<Profile>> = Vec::with_capacity(paths.len());
    for path in paths {
        let profile = Profile::load(&path)?;
        if profiles.iter().any(|p| p.id == profile.id) {
            return Err(SimError::DuplicateProfile {
                id: profile.id,
                path,
            });
        }
        tracing::debug!(profile = %profile.id, path = %path.display(), "profile loaded");
        profiles.push(Arc::new(profile));
    }
    if profiles.is_empty() {
        return Err(SimError::NoProfiles(dir.to_owned()));
    }
    Ok(profiles)
}

/// Binds a household's Modbus listener on a port of its own; returns it with its address.
async fn bind(
    spec: &fleet::HouseholdSpec,
    bind_ip: IpAddr,
) -> Result<(TcpListener, SocketAddr), SimError> {
    let bind_addr = SocketAddr::new(bind_ip, 0);
    let bind_error = |source| SimError::Bind {
        device: spec.device_id.to_string(),
        addr: bind_addr,
        source,
    };
    let listener = TcpListener::bind(bind_addr).await.map_err(bind_error)?;
    let modbus_addr = listener.local_addr().map_err(bind_error)?;
    Ok((listener, modbus_addr))
}

impl Simulation {
    /// Loads the profiles, generates the fleet, binds one Modbus listener per household and
    /// spawns the servers and the model clock. Everything stops when `shutdown` is cancelled.
    pub async fn start(
        config: SimConfig,
        shutdown: CancellationToken,
    ) -> Result<Simulation, SimError> {
        config.validate()?;
        let profiles = load_profiles(&config.profiles_dir)?;
        let specs = fleet::generate(config.households, config.seed, &profiles)?;
        let climate = Climate::yanqing_winter(config.seed);
        let start_unix_s = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();

        let maps: HashMap<String, RegisterMap> = profiles
            .iter()
            .map(|p| (p.id.clone(), RegisterMap::new(Arc::clone(p))))
            .collect();
        let tasks = TaskTracker::new();
        let mut households = Vec::with_capacity(specs.len());
        let mut listeners = Vec::with_capacity(specs.len());
        for spec in &specs {
            let (listener, modbus_addr) = bind(spec, config.bind_ip).await?;
            let household = Household::new(spec, modbus_addr, &maps, &climate, start_unix_s);
            households.push(Arc::new(household));
            listeners.push(listener);
        }
        for (household, listener) in households.iter().zip(listeners) {
            tasks.spawn(modbus::serve(
                listener,
                Arc::clone(household),
                shutdown.clone(),
            ));
        }
        let by_id = households
            .iter()
            .enumerate()
            .map(|(index, h)| (h.info.device_id.clone(), index))
            .collect();
        let shared = Arc::new(Shared { households, by_id });
        let clock = Clock {
            shared: Arc::clone(&shared),
            climate,
            start_unix_s,
            speed: config.speed,
            step_s: config.step.as_secs_f64(),
        };
        tasks.spawn(clock.run(shutdown));
        tracing::info!(
            households = config.households,
            seed = config.seed,
            profiles = profiles.len(),
            speed = config.speed,
            step_s = config.step.as_secs_f64(),
            bind_ip = %config.bind_ip,
            "simulation started"
        );
        Ok(Simulation { shared, tasks })
    }

    fn household(&self, device: &DeviceId) -> Option<&Arc<Household>> {
        self.shared
            .by_id
            .get(device)
            .and_then(|&index| self.shared.households.get(index))
    }

    fn known(&self, device: &DeviceId) -> Result<&Arc<Household>, SimError> {
        self.household(device)
            .ok_or_else(|| SimError::UnknownDevice(device.to_string()))
    }

    /// The manifest: every household in fleet order.
    pub fn households(&self) -> Vec<HouseholdInfo> {
        self.shared
            .households
            .iter()
            .map(|h| h.info.clone())
            .collect()
    }

    /// One household's manifest entry.
    pub fn household_info(&self, device: &DeviceId) -> Option<HouseholdInfo> {
        self.household(device).map(|h| h.info.clone())
    }

    /// Injects a fault: the brand's code for `category` shows in the fault register and the
    /// heater stops until [`Simulation::clear_fault`]. Injecting again replaces the fault.
    pub fn inject_fault(&self, device: &DeviceId, category: FaultCategory) -> Result<(), SimError> {
        let household = self.known(device)?;
        let code = household.model().inject(category);
        tracing::info!(
            device_id = %device,
            category = category.as_str(),
            code,
            "fault injected"
        );
        Ok(())
    }

    /// Clears a household's fault (a no-op if none is active).
    pub fn clear_fault(&self, device: &DeviceId) -> Result<(), SimError> {
        let household = self.known(device)?;
        let was_active = household.model().clear();
        tracing::info!(device_id = %device, was_active, "fault cleared");
        Ok(())
    }

    /// A household's current values, fault and request counts.
    pub fn snapshot(&self, device: &DeviceId) -> Option<HouseholdSnapshot> {
        self.household(device).map(|h| h.snapshot())
    }

    /// Modbus requests a household has received, by function.
    pub fn request_counts(&self, device: &DeviceId) -> Option<RequestCounts> {
        self.household(device).map(|h| h.requests.snapshot())
    }

    /// Waits until every task of the simulation has stopped (after shutdown was cancelled).
    pub async fn stopped(&self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// Advances every household's model to the simulated "now" of the wall clock.
struct Clock {
    shared: Arc<Shared>,
    climate: Climate,
    start_unix_s: f64,
    speed: f64,
    step_s: f64,
}

impl Clock {
    async fn run(self, shutdown: CancellationToken) {
        if self.speed == 0.0 {
            tracing::info!("simulated time is frozen (speed 0)");
            shutdown.cancelled().await;
            return;
        }
        // Tick about once per model step, but at least every second and at most 100 times a
        // second; each tick catches every model up to the simulated "now".
        let tick = Duration::from_secs_f64((self.step_s / self.speed).clamp(0.01, 1.0));
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let wall_start = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            let target = self.start_unix_s + self.speed * wall_start.elapsed().as_secs_f64();
            for (index, household) in self.shared.households.iter().enumerate() {
                {
                    let mut model = household.model();
                    if model.advance_to(target, self.step_s, &self.climate) > 0 {
                        model.refresh_noise();
                    }
                }
                if index % 256 == 255 {
                    // Let Modbus and HTTP requests in between big batches.
                    tokio::task::yield_now().await;
                }
            }
        }
        tracing::debug!("model clock stopped");
    }
}
