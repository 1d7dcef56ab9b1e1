//! `fuzz`: a mutational fuzzer, on stable Rust, of the parsers that take data from the network
//! or from files: ingest payloads on MQTT topics (`gateway::ingest::decode`), rule files
//! (`rules::RuleSet::parse`), the registry CSV import (`gateway::registry::parse`) and
//! register-map profiles with their register decoding (`edge_agent::profile`).
//!
//! ```text
//! fuzz --seconds 300 [--seed S] [--target all|ingest|rules|registry|profile] [--out DIR]
//! fuzz --replay DIR/rules-panic-0-seed7-exec123.input [--target rules]
//! ```
//!
//! Each target runs in its own worker process (this binary with `--worker`), so that an input
//! that aborts the process (a stack overflow, an allocation failure) or hangs is caught too:
//! the supervisor then runs the target again from the last progress it saw, saving every input
//! before running it, and keeps the one the worker dies on. A panic is caught in the worker,
//! its input saved to `--out` (with a minimised copy) and printed with the seed and execution
//! number; `--seed S --target T --max-execs N+1` replays the same run up to it. The exit status
//! is non-zero if any target panicked, died or hung.

mod input;
mod mutate;
mod rng;
mod run;
mod targets;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use serde_json::{json, Value};

use crate::input::Input;
use crate::targets::Target;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    All,
    Ingest,
    Rules,
    Registry,
    Profile,
}

/// Fuzzes the parsers at the trust boundary (network payloads, rule files, registry CSV,
/// register-map profiles) for a time budget and reports panics.
#[derive(Debug, Parser)]
#[command(name = "fuzz")]
struct Cli {
    /// Total fuzzing time in seconds, split evenly across the targets.
    #[arg(long, default_value_t = 60.0)]
    seconds: f64,
    /// Seed of the mutations (default: from the clock; printed, for replays).
    #[arg(long)]
    seed: Option<u64>,
    /// Which parser to fuzz.
    #[arg(long, value_enum, default_value_t = TargetArg::All)]
    target: TargetArg,
    /// Folder for the inputs that panicked (and their minimised copies).
    #[arg(long, default_value_os_t = ::tests::repo_root().join("target").join("fuzz"))]
    out: PathBuf,
    /// Runs one saved input (a file from --out, or a raw rule file, profile or payload with
    /// --target) and exits: 0 if it did not panic.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Stops each target after this many executions; with the same --seed a run is replayed
    /// exactly (inputs do not depend on time).
    #[arg(long)]
    max_execs: Option<u64>,
    /// Targets fuzzed at the same time (one process each).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// A worker that reports no progress for this long is killed and reported as hung.
    #[arg(long, default_value_t = 30.0)]
    hang_seconds: f64,
    /// Writes the per-target results as a JSON array to this file.
    #[arg(long)]
    summary: Option<PathBuf>,
    /// Internal: fuzz the one --target in this process.
    #[arg(long, hide = true)]
    worker: bool,
    /// Internal: save each input from this execution on before running it.
    #[arg(long, hide = true)]
    save_from: Option<u64>,
}

fn selected(target: TargetArg) -> Vec<&'static dyn Target> {
    let name = match target {
        TargetArg::All => return targets::all(),
        TargetArg::Ingest => "ingest",
        TargetArg::Rules => "rules",
        TargetArg::Registry => "registry",
        TargetArg::Profile => "profile",
    };
    targets::all()
        .into_iter()
        .filter(|t| t.name() == name)
        .collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(file) = &cli.replay {
        return replay(&cli, file);
    }
    if cli.worker {
        let [target] = selected(cli.target)[..] else {
            eprintln!("fuzz: --worker needs one --target");
            return ExitCode::from(2);
        };
        let options = run::Options {
            seed: cli.seed.unwrap_or(0),
            seconds: cli.seconds,
            max_execs: cli.max_execs,
            out: cli.out.clone(),
            save_from: cli.save_from,
        };
        let summary = run::fuzz(target, &options);
        return if summary["panics"].as_u64() == Some(0) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    supervise(&cli)
}

fn replay(cli: &Cli, file: &Path) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(error) => {
            eprintln!("fuzz: cannot read {}: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    let given = selected(cli.target);
    let main_part = match given[..] {
        [target] => target.main_part(),
        _ => "",
    };
    let (named, input) = match Input::from_file(&bytes, main_part) {
        Ok(read) => read,
        Err(error) => {
            eprintln!("fuzz: {}: {error}", file.display());
            return ExitCode::from(2);
        }
    };
    let target = match (&given[..], named) {
        ([target], _) => *target,
        (_, Some(name)) => match targets::all().into_iter().find(|t| t.name() == name) {
            Some(target) => target,
            None => {
                eprintln!("fuzz: {} names an unknown target {name:?}", file.display());
                return ExitCode::from(2);
            }
        },
        (_, None) => {
            eprintln!(
                "fuzz: {} is a raw input: say which --target",
                file.display()
            );
            return ExitCode::from(2);
        }
    };
    if run::replay(target, &input) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// How a worker process ended.
#[derive(Debug)]
enum End {
    /// It printed its summary.
    Finished(Value),
    /// It died without one (a signal, an abort).
    Died(String),
    /// It printed nothing for `--hang-seconds` and was killed.
    Hung,
}

/// One worker run: how it ended, the panics it reported, the last execution count it gave.
struct WorkerRun {
    end: End,
    panics: Vec<Value>,
    last_progress: u64,
}

fn run_worker(
    cli: &Cli,
    target: &str,
    seed: u64,
    seconds: f64,
    max_execs: Option<u64>,
    save_from: Option<u64>,
) -> Result<WorkerRun, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut command = Command::new(exe);
    command
        .args(["--worker", "--target", target])
        .args(["--seed", &seed.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .arg("--out")
        .arg(&cli.out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(max) = max_execs {
        command.args(["--max-execs", &max.to_string()]);
    }
    if let Some(from) = save_from {
        command.args(["--save-from", &from.to_string()]);
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the {target} worker: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| format!("no stdout from the {target} worker"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let hang = Duration::from_secs_f64(cli.hang_seconds.max(1.0));
    let mut run = WorkerRun {
        end: End::Died(String::new()),
        panics: Vec::new(),
        last_progress: 0,
    };
    let mut summary = None;
    loop {
        match rx.recv_timeout(hang) {
            Ok(line) => {
                let (kind, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                match kind {
                    "progress" => run.last_progress = rest.parse().unwrap_or(run.last_progress),
                    "panic" => {
                        let panic: Value = serde_json::from_str(rest).unwrap_or(json!(rest));
                        // A rerun meets the first run's panics again: printed once.
                        if save_from.is_none() {
                            print_panic(&panic);
                        }
                        run.panics.push(panic);
                    }
                    "slow" => println!("fuzz: {target}: slow input: {rest}"),
                    "summary" => summary = serde_json::from_str(rest).ok(),
                    _ => println!("{line}"),
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                run.end = End::Hung;
                break;
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the {target} worker: {e}"))?;
    if !matches!(run.end, End::Hung) {
        run.end = match summary {
            Some(summary) => End::Finished(summary),
            None => End::Died(status.to_string()),
        };
    }
    Ok(run)
}

fn print_panic(panic: &Value) {
    println!(
        "fuzz: PANIC in {} (seed {}, exec {}) at {}: {}\n      input: {}\n      minimised ({} bytes): {}\n      replay: fuzz --replay {} --target {}",
        panic["target"].as_str().unwrap_or("?"),
        panic["seed"],
        panic["exec"],
        panic["location"].as_str().unwrap_or("?"),
        panic["message"].as_str().unwrap_or("?"),
        panic["input"].as_str().unwrap_or("?"),
        panic["minimised_bytes"],
        panic["minimised"].as_str().unwrap_or("?"),
        panic["minimised"].as_str().unwrap_or("?"),
        panic["target"].as_str().unwrap_or("?"),
    );
}

/// Executions past the last progress line that a rerun of a dead worker goes on for.
const RERUN_MARGIN: u64 = 100_000;

/// One target's result for the summary.
struct Report {
    target: &'static str,
    summary: Option<Value>,
    panics: usize,
    /// Why the worker did not finish (died or hung), with the input it was on.
    failure: Option<String>,
}

/// Fuzzes one target in a worker; if the worker dies or hangs, runs it again from its last
/// progress, saving each input, to keep the one it dies on.
fn fuzz_target(cli: &Cli, target: &'static dyn Target, seed: u64, seconds: f64) -> Report {
    let name = target.name();
    let mut report = Report {
        target: name,
        summary: None,
        panics: 0,
        failure: None,
    };
    let first = match run_worker(cli, name, seed, seconds, cli.max_execs, None) {
        Ok(run) => run,
        Err(error) => {
            report.failure = Some(error);
            return report;
        }
    };
    report.panics = first.panics.len();
    let what = match first.end {
        End::Finished(summary) => {
            report.summary = Some(summary);
            return report;
        }
        End::Died(status) => format!("died ({status})"),
        End::Hung => format!("hung (no progress for {} s)", cli.hang_seconds),
    };
    println!(
        "fuzz: {name} worker {what} after about {} executions; running it again from there, saving each input",
        first.last_progress
    );
    // The inputs do not depend on time: the same seed reaches the same input again, a
    // heartbeat (a quarter second of executions) after the last progress line at most.
    let until = first.last_progress + RERUN_MARGIN;
    let again = run_worker(
        cli,
        name,
        seed,
        seconds * 2.0 + cli.hang_seconds + 10.0,
        Some(cli.max_execs.map_or(until, |max| max.min(until))),
        Some(first.last_progress),
    );
    let current = run::input_path(&cli.out, name, "current");
    report.failure = Some(match again {
        Ok(WorkerRun {
            end: End::Finished(_),
            ..
        }) => format!(
            "{name} worker {what}; a second run from the same seed did not, so no input was kept"
        ),
        Ok(run) => {
            let tag = if matches!(run.end, End::Hung) {
                "hang"
            } else {
                "died"
            };
            let kept = run::input_path(&cli.out, name, &format!("{tag}-seed{seed}"));
            match std::fs::rename(&current, &kept) {
                Ok(()) => format!(
                    "{name} worker {what}; the input it was on: {} (replay: fuzz --replay {} --target {name})",
                    kept.display(),
                    kept.display()
                ),
                Err(error) => format!("{name} worker {what}; its input was not saved: {error}"),
            }
        }
        Err(error) => format!("{name} worker {what}; {error}"),
    });
    report
}

fn supervise(cli: &Cli) -> ExitCode {
    let seed = cli.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        rng::fnv1a(&(nanos ^ u64::from(std::process::id())).to_le_bytes())
    });
    let targets = selected(cli.target);
    let per_target = cli.seconds / targets.len().max(1) as f64;
    println!(
        "fuzz: seed {seed}, {per_target:.1} s for each of {}; inputs that panic go to {}",
        targets
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", "),
        cli.out.display()
    );
    let started = Instant::now();
    let queue: Mutex<VecDeque<&'static dyn Target>> = Mutex::new(targets.iter().copied().collect());
    let reports: Mutex<Vec<Report>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..cli.jobs.clamp(1, targets.len().max(1)) {
            scope.spawn(|| loop {
                let next = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop_front();
                let Some(target) = next else { break };
                let report = fuzz_target(cli, target, seed, per_target);
                reports
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(report);
            });
        }
    });
    let mut reports = reports
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let order = |name: &str| targets.iter().position(|t| t.name() == name);
    reports.sort_by_key(|r| order(r.target));

    let mut clean = true;
    let mut results = Vec::new();
    for report in &reports {
        match &report.summary {
            Some(s) => {
                let panics = s["panics"].as_u64().unwrap_or(0);
                clean &= panics == 0;
                println!(
                    "fuzz: {:<8} {:>9} execs in {:>6.1} s {:>8.0}/s  {:>4} error kinds  corpus {:>4}  slowest {:>7.1} ms  {} panics",
                    report.target,
                    s["execs"].as_u64().unwrap_or(0),
                    s["seconds"].as_f64().unwrap_or(0.0),
                    s["execs_per_second"].as_f64().unwrap_or(0.0),
                    s["error_kinds"].as_u64().unwrap_or(0),
                    s["corpus"].as_u64().unwrap_or(0),
                    s["slowest_ms"].as_f64().unwrap_or(0.0),
                    panics,
                );
                results.push(s.clone());
            }
            None => {
                clean = false;
                println!(
                    "fuzz: {:<8} FAILED: {} ({} panics reported before)",
                    report.target,
                    report.failure.as_deref().unwrap_or("no summary"),
                    report.panics
                );
                results.push(json!({
                    "target": report.target,
                    "failure": report.failure,
                    "panics": report.panics,
                }));
            }
        }
    }
    if let Some(path) = &cli.summary {
        let folder = path.parent().filter(|f| !f.as_os_str().is_empty());
        let written = folder
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, Value::Array(results).to_string()));
        if let Err(error) = written {
            eprintln!("fuzz: cannot write {}: {error}", path.display());
            clean = false;
        }
    }
    println!(
        "fuzz: seed {seed}, {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        if clean {
            "no panics".to_owned()
        } else {
            format!("FAILED; inputs in {}", cli.out.display())
        }
    );
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
