//! `gateway`: the central service binary. `run` serves a district from a config file,
//! `check-config` validates one, `certs` issues the broker's and the boxes' certificates. (The
//! whole system in one process with simulated households is the `demo` crate's binary.)

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gateway::config::GatewayConfig;
use tokio_util::task::TaskTracker;

/// mimalloc instead of glibc's malloc: ingest, the broker and the sink allocate and free small
/// objects for every message on several threads, and glibc keeps freed memory in per-thread
/// arenas after a burst. With mimalloc the CPU per reading stayed the same and the RSS after a
/// burst fell by a sixth to a quarter (BENCHMARKS.md, "Gateway ingest"). Built with `no_thp`: mimalloc would
/// otherwise ask for transparent huge pages on its arenas, and on a kernel in THP `madvise` mode
/// 5,000 connected boxes then held 1.4 GiB instead of 0.25 GiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Rural clean-heating gateway: MQTT broker, rules, work orders, HTTP API"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "GATEWAY_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a district until SIGTERM or Ctrl-C.
    Run {
        /// Configuration file (TOML); `GATEWAY__...` environment variables override it.
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate a configuration file and its rule file, then exit.
    CheckConfig {
        #[arg(long, short, env = "GATEWAY_CONFIG")]
        config: PathBuf,
    },
    /// Issue the district's TLS certificates (CA, broker, one per edge box) as PEM files.
    #[command(subcommand)]
    Certs(CertsCommand),
}

#[derive(Subcommand)]
enum CertsCommand {
    /// A new district CA: `ca.pem` (give it to the broker and the boxes) and `ca.key` (keep it
    /// offline; whoever has it can issue box certificates).
    InitCa {
        /// Folder to write to; existing files are never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 7300)]
        days: u32,
    },
    /// The broker's certificate `server.pem` and key `server.key`, signed by the CA.
    Server {
        /// Folder of `ca.pem` and `ca.key`.
        #[arg(long)]
        ca: PathBuf,
        /// Name or IP address the boxes connect to (`mqtt.host`); repeat for several.
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Folder to write to; existing files are never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 1825)]
        days: u32,
    },
    /// An edge box's client certificate `box.pem`, key `box.key` and a copy of `ca.pem`.
    Box {
        /// Folder of `ca.pem` and `ca.key`.
        #[arg(long)]
        ca: PathBuf,
        /// The box's id: its `agent_id`, the household's `edge_box` in the registry (or the
        /// household id when that column is empty).
        #[arg(long = "box")]
        box_id: String,
        /// Folder to write to; existing files are never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// A password for an edge box without a client certificate (the password listener,
    /// `[broker.passwords]`): adds its line to the password file and prints the box's user name
    /// (its tenant id) and password once. Revoke a box by deleting its line.
    Password {
        /// The box's id, as for `certs box`.
        #[arg(long = "box")]
        box_id: String,
        /// The password file (`broker.passwords.file`); created with mode 0600 if missing.
        #[arg(long)]
        file: PathBuf,
    },
}

/// `certs password`: adds the box to the password file and prints its login once.
fn box_password(box_id: &str, file: &std::path::Path) -> anyhow::Result<()> {
    let tenant = gateway::broker::tenants::tenant_of_box(box_id);
    let password = gateway::broker::passwords::add_box(file, &tenant)?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "added edge box {box_id} to {}:", file.display())?;
    writeln!(
        stdout,
        "  [mqtt] on the box: username = \"{tenant}\", password = \"{password}\", tenant = \"{tenant}\""
    )?;
    writeln!(
        stdout,
        "  [mqtt.tls] on the box: ca_file = the district CA (ca.pem), no client certificate"
    )?;
    writeln!(
        stdout,
        "the password is shown only now; the file keeps its salted hash"
    )?;
    Ok(())
}

/// Runs a `certs` subcommand and says what it wrote.
fn certs(command: CertsCommand) -> anyhow::Result<()> {
    use gateway::certs;
    let (what, issued) = match command {
        CertsCommand::Password { box_id, file } => return box_password(&box_id, &file),
        CertsCommand::InitCa { out, days } => ("district CA", certs::init_ca(&out, days)?),
        CertsCommand::Server {
            ca,
            hosts,
            out,
            days,
        } => (
            "broker server certificate",
            certs::server(&ca, &hosts, &out, days)?,
        ),
        CertsCommand::Box {
            ca,
            box_id,
            out,
            days,
        } => (
            "edge box certificate",
            certs::edge_box(&ca, &box_id, &out, days)?,
        ),
    };
    let mut stdout = std::io::stdout();
    writeln!(stdout, "issued the {what}:")?;
    for file in &issued.files {
        writeln!(stdout, "  {}", file.display())?;
    }
    if let Some(tenant) = &issued.tenant {
        let path = |name: &str| {
            issued
                .files
                .iter()
                .find(|f| f.ends_with(name))
                .map(|f| f.display().to_string())
                .unwrap_or_default()
        };
        writeln!(
            stdout,
            "tenant id {tenant}: the box publishes under /tenants/{tenant}/ \
             (edge-agent.toml: mqtt.tenant = \"{tenant}\")\n\
             [mqtt.tls]\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
            path(gateway::certs::CA_CERT),
            path(gateway::certs::BOX_CERT),
            path(gateway::certs::BOX_KEY),
        )?;
    }
    Ok(())
}

/// How long shutdown may take before the process exits anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match gateway::logging::start_process(cli.log_json) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run { config } => run(config).await,
            Command::CheckConfig { config } => {
                let config = GatewayConfig::load(Some(&config))?;
                gateway::app::load_rules(&config)?;
                println!("configuration is valid");
                Ok(())
            }
            Command::Certs(command) => certs(command),
        }
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = GatewayConfig::load(config.as_deref())?;
    let shutdown = gateway::app::shutdown_on_signal();
    let tracker = TaskTracker::new();
    let started = gateway::app::start(config, shutdown.clone(), &tracker).await?;
    tracker.close();
    // One machine-readable line on stdout so that supervisors and tests know where we listen.
    let ready = serde_json::json!({
        "event": "ready",
        "mqtt": started.mqtt,
        "mqtt_tls": started.mqtt_tls.map(|tls| tls.v4.to_string()),
        "mqtt_tls_v5": started.mqtt_tls.and_then(|tls| tls.v5).map(|v5| v5.to_string()),
        "mqtt_passwords": started.mqtt_passwords.map(|a| a.to_string()),
        "http": started.http.to_string(),
    });
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{ready}")?;
    stdout.flush()?;
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    if tokio::time::timeout(SHUTDOWN_DEADLINE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(deadline = ?SHUTDOWN_DEADLINE, "tasks did not stop in time");
    }
    Ok(())
}
