//! `edge-agent`: the field-box binary. `run` polls and publishes until stopped; `check` polls
//! every configured device once and prints what it decoded, for installers.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_agent::agent::Agent;
use edge_agent::config::{AgentConfig, Device, TransportConfig};
use edge_agent::modbus::{DevicePoller, PollResult};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

#[derive(Parser)]
#[command(
    version,
    about = "Polls heat pumps and boilers over Modbus and publishes telemetry over MQTT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Poll the configured devices and publish until SIGTERM or Ctrl-C.
    Run {
        /// Configuration file (TOML); `EDGE_AGENT__...` environment variables override it.
        #[arg(long, short, env = "EDGE_AGENT_CONFIG")]
        config: PathBuf,
    },
    /// Poll every configured device once, print the decoded values, exit non-zero on failure.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short, env = "EDGE_AGENT_CONFIG")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .finish()
        .with(log_filter(std::env::var("RUST_LOG").ok().as_deref()))
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run { config } => runtime.block_on(run(config)),
        Command::Check { config } => runtime.block_on(check(config)),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter from `RUST_LOG`: `target=level` directives such as `info,rumqttc=warn`
/// (`tracing_subscriber::filter::Targets`: no span or field filters, and so no regex engine in
/// the field box's binary); `info` when it is unset, empty or unreadable.
fn log_filter(rust_log: Option<&str>) -> Targets {
    rust_log
        .filter(|text| !text.trim().is_empty())
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

async fn run(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = AgentConfig::load(&path)?;
    tracing::info!(agent = %config.agent_id, devices = config.devices.len(), "edge agent starting");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    Agent::new(config).run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn check(path: PathBuf) -> anyhow::Result<ExitCode> {
    let config = AgentConfig::load(&path)?;
    let mut failed = 0;
    for device in config.devices.clone() {
        let poller = DevicePoller::new(device, config.polling.max_gap, config.polling.timeout)
            .with_warm_up(config.polling.warm_up);
        let (mut poller, link) = on_link(poller, &config);
        let device = poller.device().clone();
        println!(
            "{}  profile {} ({} {})  {link}  unit {}  {} read request(s)",
            device.id,
            device.profile.id,
            device.profile.brand,
            device.profile.model,
            device.unit_id,
            poller.plan().blocks.len()
        );
        match poller.poll().await {
            Ok(result) => failed += print_poll(&device, &result),
            Err(error) => {
                failed += 1;
                println!("  ERROR {error} ({})", error.kind());
            }
        }
    }
    if failed > 0 {
        println!("{failed} error(s)");
        return Ok(ExitCode::FAILURE);
    }
    println!("all {} device(s) answered", config.devices.len());
    Ok(ExitCode::SUCCESS)
}

/// The poller on its device's link (its bus, for RTU), and the link described for the
/// installer.
fn on_link(poller: DevicePoller, config: &AgentConfig) -> (DevicePoller, String) {
    match &poller.device().transport {
        TransportConfig::Tcp { address } => {
            let text = format!("tcp {address}");
            (poller, text)
        }
        TransportConfig::Rtu { bus } => match config.bus(bus) {
            Some(settings) => {
                let text = format!(
                    "rtu {} on {} {} baud {:?} {}{}",
                    bus,
                    settings.port,
                    settings.baud,
                    settings.parity,
                    settings.data_bits,
                    settings.stop_bits
                );
                (poller.on_bus(settings), text)
            }
            None => {
                let text = format!("rtu {bus} (not configured)");
                (poller, text)
            }
        },
    }
}

/// Prints a poll's decoded values, its fault and its failed blocks; returns how many failed.
fn print_poll(device: &Device, result: &PollResult) -> usize {
    for register in &device.profile.registers {
        match result.values.get(&register.name) {
            Some(value) => println!(
                "  {:<24} {:>12.3} {:<5} {:?} {}",
                register.name, value, register.unit, register.kind, register.address
            ),
            None => println!(
                "  {:<24} {:>12} {:<5} {:?} {}",
                register.name, "-", register.unit, register.kind, register.address
            ),
        }
    }
    if let Some(fault) = &result.fault {
        println!(
            "  FAULT {} ({}) {}",
            fault.code,
            fault.category.as_str(),
            fault.text
        );
    }
    for (block, error) in &result.errors {
        println!(
            "  ERROR {:?} {}+{}: {} ({})",
            block.kind,
            block.start,
            block.count,
            error,
            error.kind()
        );
    }
    result.errors.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_takes_target_directives_and_falls_back_to_info() {
        let info = log_filter(None);
        assert!(info.would_enable("edge_agent::agent", &tracing::Level::INFO));
        assert!(!info.would_enable("edge_agent::agent", &tracing::Level::DEBUG));
        for unreadable in [Some(""), Some("  "), Some("edge_agent=loud")] {
            let filter = log_filter(unreadable);
            assert!(filter.would_enable("rumqttc::state", &tracing::Level::INFO));
            assert!(!filter.would_enable("rumqttc::state", &tracing::Level::DEBUG));
        }
        let mixed = log_filter(Some("warn,edge_agent=debug"));
        assert!(mixed.would_enable("edge_agent::modbus", &tracing::Level::DEBUG));
        assert!(!mixed.would_enable("rumqttc::state", &tracing::Level::INFO));
        assert!(mixed.would_enable("rumqttc::state", &tracing::Level::WARN));
    }
}
