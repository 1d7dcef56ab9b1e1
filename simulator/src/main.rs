//! The `simulator` binary. `serve` starts a simulated fleet over Modbus TCP and its HTTP control
//! API, prints one JSON ready line on stdout, and runs until SIGINT or SIGTERM. `bench winter`
//! runs the whole system through a simulated winter and prints the 未诉先办 score card; `bench
//! ingest` measures the gateway's ingest rate against mosquitto's relay rate. Logs and progress
//! go to stderr.

use std::io::{IsTerminal as _, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde::Serialize;
use simulator::{api, HouseholdInfo, SimConfig, Simulation};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "simulator",
    version,
    about = "Virtual Yanqing heat pumps and boilers over Modbus TCP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a simulated fleet until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Benchmarks of the whole system.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// A Yanqing winter through a spawned gateway: does our order come before the resident's call?
    Winter(WinterArgs),
    /// The gateway's sustained ingest rate against mosquitto relaying the same load, publish ->
    /// alert latency under that load, and the gateway's memory.
    Ingest(IngestArgs),
}

#[derive(Debug, clap::Args)]
struct IngestArgs {
    /// Load devices.
    #[arg(long)]
    devices: usize,
    /// Load devices per edge box: each box (one MQTT connection) publishes its devices'
    /// readings on their own topics. A box serves devices of one village, so a village's last
    /// box may serve fewer.
    #[arg(long, default_value_t = 1)]
    devices_per_box: usize,
    /// Readings per device (poll rounds, one telemetry interval apart).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Untimed rounds sent first (each device's first reading creates its database series and
    /// rule state, which a running gateway paid long ago); 0 times them too.
    #[arg(long, default_value_t = 1)]
    warmup_rounds: usize,
    /// QoS of the load's publishes: 1 (as edge agents) or 0.
    #[arg(long, default_value = "1")]
    qos: simulator::bench::ingest::Qos,
    /// Latency probe boxes (extra devices; 0 measures no latency).
    #[arg(long, default_value_t = 50)]
    probes: usize,
    /// Pause between one probe's fault readings (the probes are staggered over it).
    #[arg(long, default_value = "1s", value_parser = simulator::parse_duration)]
    probe_interval: Duration,
    /// Publisher tasks sharing the boxes' connections.
    #[arg(long, default_value_t = 8)]
    publishers: usize,
    /// Rounds a publisher may run ahead of the slowest (keeps the fleet's event time together,
    /// as agents polling on one clock; a large value lets the flood drift apart).
    #[arg(long, default_value_t = 3)]
    round_lead: usize,
    /// Runs of both targets, in alternating order (run 1 mosquitto first, run 2 the gateway
    /// first, ...); the report lists each run and the median of their ratios.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seed of the fleet and its readings.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The gateway executable (default: `gateway` next to this executable).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    #[arg(long, default_value = "mosquitto")]
    mosquitto_bin: PathBuf,
    #[arg(long, default_value = "victoria-metrics")]
    victoria_metrics_bin: PathBuf,
    /// Run the gateway without its InfluxDB sink (no victoria-metrics): the comparison is then
    /// marked "without history".
    #[arg(long)]
    no_sink: bool,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Folder for configs, logs and databases (default: a temporary folder, removed after a
    /// successful run); must be empty.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work folder after a successful run.
    #[arg(long)]
    keep_work_dir: bool,
    /// RUST_LOG filter of the gateway process.
    #[arg(long, default_value = "warn")]
    gateway_log: String,
}

#[derive(Debug, clap::Args)]
struct WinterArgs {
    /// Number of households (one edge box and one MQTT connection each).
    #[arg(long)]
    households: usize,
    /// Simulated days.
    #[arg(long)]
    days: f64,
    /// Seed of the fleet, weather, faults, residents and technicians.
    #[arg(long)]
    seed: u64,
    /// Scenario mix file (TOML); default: the shipped default mix (simulator/mixes/default.toml).
    #[arg(long)]
    mix: Option<PathBuf>,
    /// Simulated seconds per wall-clock second (e.g. 60, 600), or `max`.
    #[arg(long, default_value = "max")]
    speed: simulator::bench::Speed,
    /// Write the report (run facts and score card) as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// The gateway executable (default: `gateway` next to this executable).
    #[arg(long)]
    gateway_bin: Option<PathBuf>,
    /// Rule file for the gateway (default: its built-in pack).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Switch these device rules off (comma-separated ids, e.g.
    /// `device_fault,gas_fault,protection_trips`): the gateway runs a rule file derived from
    /// --rules (or its built-in pack) without their `[[rule]]` tables and without their ids in
    /// the fleet rules' `members` and `explains` (a fleet rule left without members goes too).
    /// The file is written to the work folder as rules-derived.toml.
    #[arg(long, value_delimiter = ',')]
    drop_rules: Vec<String>,
    /// Folder of register-map profiles (default: the shipped ones, built in).
    #[arg(long)]
    profiles: Option<PathBuf>,
    /// Folder for the gateway's config, database, registry and log (default: a temporary
    /// folder, removed after a successful run).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work folder after a successful run.
    #[arg(long)]
    keep_work_dir: bool,
    /// How far the gateway's event-time watermark trails the newest reading.
    #[arg(long, default_value = "2m", value_parser = simulator::parse_duration)]
    lateness: Duration,
    /// How often the gateway advances its watermark (wall time).
    #[arg(long, default_value = "50ms", value_parser = simulator::parse_duration)]
    tick: Duration,
    /// RUST_LOG filter of the gateway process.
    #[arg(long, default_value = "warn")]
    gateway_log: String,
    /// How often progress is logged (wall time).
    #[arg(long, default_value = "5s", value_parser = simulator::parse_duration)]
    progress_every: Duration,
    /// Most messages (statuses, readings, last wills) sent and not yet taken in by the
    /// gateway's ingest: the load generator stays this close to what the gateway has seen.
    /// (The 1,000-household fortnight in BENCHMARKS.md ran with 128.)
    #[arg(long, default_value_t = 128)]
    max_in_flight: u64,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Number of households.
    #[arg(long)]
    households: usize,
    /// Seed of the fleet, weather and noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Folder of register-map profiles (*.toml).
    #[arg(long)]
    profiles: PathBuf,
    /// Simulated seconds per wall-clock second (0 freezes time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Model step in simulated time, e.g. 1s or 500ms.
    #[arg(long, default_value = "1s", value_parser = simulator::parse_duration)]
    step: Duration,
    /// Address of the HTTP control API (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    http: SocketAddr,
    /// IP address the households' Modbus listeners bind to.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// Write the manifest (JSON list of households) to this file.
    #[arg(long)]
    manifest: Option<PathBuf>,
}

/// The one line printed on stdout once everything listens.
#[derive(Serialize)]
struct ReadyLine {
    event: &'static str,
    http: SocketAddr,
    households: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Bench(BenchCommand::Winter(args)) => bench_winter(args).await,
        Command::Bench(BenchCommand::Ingest(args)) => bench_ingest(args).await,
    }
}

/// `gateway` next to this executable.
fn default_gateway_bin() -> anyhow::Result<PathBuf> {
    std::env::current_exe()
        .context("cannot find this executable's folder")?
        .parent()
        .map(|dir| dir.join("gateway"))
        .context("this executable has no folder")
}

async fn bench_ingest(args: IngestArgs) -> anyhow::Result<()> {
    let gateway_bin = match args.gateway_bin {
        Some(path) => path,
        None => default_gateway_bin()?,
    };
    let mut options = simulator::bench::ingest::IngestOptions::new(args.devices, gateway_bin)
        .context("cannot prepare the bench")?;
    options.devices_per_box = args.devices_per_box;
    options.rounds = args.rounds;
    options.warmup_rounds = args.warmup_rounds;
    options.qos = args.qos;
    options.probes = args.probes;
    options.probe_interval = args.probe_interval;
    options.publishers = args.publishers;
    options.round_lead = args.round_lead;
    options.repeat = args.repeat;
    options.seed = args.seed;
    options.mosquitto_bin = args.mosquitto_bin;
    options.victoria_metrics_bin = args.victoria_metrics_bin;
    options.sink = !args.no_sink;
    options.work_dir = args.work_dir;
    options.keep_work_dir = args.keep_work_dir;
    options.gateway_log = args.gateway_log;
    let report = simulator::bench::ingest::run_ingest(options)
        .await
        .context("the ingest bench failed")?;
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("cannot encode the report")?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        tracing::info!(path = %path.display(), "report written");
    }
    let mut stdout = std::io::stdout().lock();
    write!(stdout, "{}", report.table())?;
    stdout.flush()?;
    Ok(())
}

async fn bench_winter(args: WinterArgs) -> anyhow::Result<()> {
    let gateway_bin = match args.gateway_bin {
        Some(path) => path,
        None => default_gateway_bin()?,
    };
    let mut options =
        simulator::bench::BenchOptions::new(args.households, args.days, args.seed, gateway_bin)
            .context("cannot prepare the bench")?;
    if let Some(path) = &args.mix {
        options.mix = simulator::mix::Mix::load(path).context("cannot load the mix")?;
    }
    if let Some(dir) = &args.profiles {
        options.profiles = simulator::load_profiles(dir).context("cannot load the profiles")?;
    }
    options.speed = args.speed;
    options.rules = args.rules;
    options.drop_rules = args.drop_rules;
    options.work_dir = args.work_dir;
    options.keep_work_dir = args.keep_work_dir;
    options.lateness = args.lateness;
    options.tick = args.tick;
    options.gateway_log = args.gateway_log;
    options.progress_every = args.progress_every;
    options.max_in_flight = args.max_in_flight;
    let report = simulator::bench::run_winter(options)
        .await
        .context("the winter bench failed (no score card)")?;
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("cannot encode the report")?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the report to {}", path.display()))?;
        tracing::info!(path = %path.display(), "report written");
    }
    let run = &report.run;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "simulator bench winter: {} households x {} days, seed {}, mix {:?}, speed {}",
        run.households, run.days, run.seed, run.mix, run.speed
    )?;
    writeln!(
        stdout,
        "  {} readings published ({} accepted by the gateway) in {:.1} s wall: {:.0} readings/s, {:.0}x simulated time; {} barriers",
        run.readings_published,
        run.readings_accepted,
        run.wall_seconds,
        run.readings_per_second,
        run.achieved_speed,
        run.barriers
    )?;
    let dropped = if run.dropped_rules.is_empty() {
        String::new()
    } else {
        let mut text = format!(" without {}", run.dropped_rules.join(", "));
        if !run.dropped_fleet_rules.is_empty() {
            text.push_str(&format!(
                " (and fleet rules {})",
                run.dropped_fleet_rules.join(", ")
            ));
        }
        text
    };
    writeln!(
        stdout,
        "  sync: {} ({} of {} barriers with the watermark short of the last round); rules: {}{}",
        run.sync, run.barriers_watermark_short, run.barriers, run.rules, dropped
    )?;
    write!(stdout, "{}", report.score.table())?;
    if !run.valid {
        writeln!(stdout, "  RUN INVALID: {}", run.invalid_reasons.join("; "))?;
    }
    stdout.flush()?;
    if !run.valid {
        anyhow::bail!(
            "the run is INVALID, its score card cannot be trusted: {}",
            run.invalid_reasons.join("; ")
        );
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let config = SimConfig {
        households: args.households,
        seed: args.seed,
        profiles_dir: args.profiles,
        speed: args.speed,
        step: args.step,
        bind_ip: args.bind_ip,
    };
    let sim = Simulation::start(config, shutdown.clone())
        .await
        .context("cannot start the simulation")?;
    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot bind the control API on {}", args.http))?;
    let http = listener
        .local_addr()
        .context("control API has no local address")?;
    let households = sim.households();
    if let Some(path) = &args.manifest {
        write_manifest(path, &households).await?;
        tracing::info!(path = %path.display(), households = households.len(), "manifest written");
    }
    let api_task = tokio::spawn(api::serve(listener, sim.clone(), shutdown.clone()));

    let ready = ReadyLine {
        event: "ready",
        http,
        households: households.len(),
    };
    let line = serde_json::to_string(&ready).context("cannot encode the ready line")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{line}").context("cannot write the ready line")?;
        stdout.flush().context("cannot flush stdout")?;
    }
    tracing::info!(%http, households = households.len(), "simulator is ready");

    wait_for_signal().await?;
    tracing::info!("shutting down");
    shutdown.cancel();
    let stopped = async {
        sim.stopped().await;
        api_task.await
    };
    match tokio::time::timeout(Duration::from_secs(10), stopped).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "control API stopped with an error"),
        Ok(Err(error)) => tracing::warn!(%error, "control API task failed"),
        Err(_) => tracing::warn!("tasks did not stop within 10 s; exiting anyway"),
    }
    Ok(())
}

async fn write_manifest(path: &Path, households: &[HouseholdInfo]) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(households).context("cannot encode the manifest")?;
    // Write beside the target and rename, so a reader never sees half a manifest.
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    tokio::fs::write(&partial, json)
        .await
        .with_context(|| format!("cannot write the manifest to {}", partial.display()))?;
    tokio::fs::rename(&partial, path)
        .await
        .with_context(|| format!("cannot move the manifest to {}", path.display()))?;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}
