//! `demo`: the whole system in one process with no external service (the embedded broker,
//! simulated Yanqing households over Modbus TCP, one edge agent each, the rules, the work orders
//! and the HTTP API). This file is the command line, logging and runtime; [`demo`] runs it.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

mod crew;
mod demo;

/// mimalloc, as in the gateway binary (gateway/src/main.rs says why): the demo runs the same
/// gateway and should use memory as it does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Everything in one process: broker, simulated households, edge agents, rules, orders, API"
)]
struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, env = "GATEWAY_LOG_JSON")]
    log_json: bool,
    #[command(flatten)]
    options: demo::DemoOptions,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match gateway::logging::start_process(cli.log_json) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime
        .block_on(async move { demo::run(cli.options, gateway::app::shutdown_on_signal()).await });
    runtime.shutdown_timeout(Duration::from_secs(1));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
