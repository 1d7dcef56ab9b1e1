//! `gateway`: the central service binary. `run` serves a district from a config file; `demo`
//! runs broker, simulator, edge agents, rules, orders and API together in one process.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gateway::config::GatewayConfig;
use gateway::demo::DemoOptions;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// Everything in one process: broker, simulated households, edge agents, rules, orders, API.
    Demo(DemoOptions),
}

/// How long shutdown may take before the process exits anyway.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
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
            Command::Demo(options) => gateway::demo::run(options, shutdown_on_signal()).await,
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

fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            if let Ok(mut term) = signal(SignalKind::terminate()) {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                cancel.cancel();
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
        cancel.cancel();
    });
    token
}

async fn run(config: Option<PathBuf>) -> anyhow::Result<()> {
    let config = GatewayConfig::load(config.as_deref())?;
    let shutdown = shutdown_on_signal();
    let tracker = TaskTracker::new();
    let started = gateway::app::start(config, shutdown.clone(), &tracker).await?;
    tracker.close();
    // One machine-readable line on stdout so that supervisors and tests know where we listen.
    let ready = serde_json::json!({
        "event": "ready",
        "mqtt": started.mqtt,
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
