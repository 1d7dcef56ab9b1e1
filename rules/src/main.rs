//! `rules`: the rule engine's command line. `rules backtest` replays recorded telemetry through
//! a rule set and prints the alerts and work orders it would have created. A thin shell over
//! [`rules::backtest`]: it reads the files and prints; the library decides.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rules::backtest::Backtest;
use rules::{Action, Outcome, RuleSet, TransitionKind};

#[derive(Parser)]
#[command(name = "rules", version, about = "Heating rule engine tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay recorded telemetry (JSON lines of wire::Telemetry) through a rule set and print
    /// the alerts and orders it would have created, with times, and per-rule counts.
    Backtest(BacktestArgs),
}

#[derive(clap::Args)]
struct BacktestArgs {
    /// Rule file (TOML). Default: the built-in heating pack.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Telemetry, one JSON message per line.
    #[arg(long)]
    input: PathBuf,
    /// Device registry: a JSON array of {device_id, township, village, kind, vulnerable, tags}
    /// (the simulator's manifest works as it is). Needed for fleet rules and overrides.
    #[arg(long)]
    devices: Option<PathBuf>,
    /// Readings of one device up to this far out of order are put back in order.
    #[arg(long, default_value = "0s", value_parser = humantime_serde::re::humantime::parse_duration)]
    lateness: Duration,
    /// Print events as JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Lines between two progress reports on stderr.
    #[arg(long, default_value_t = 100_000)]
    progress_every: u64,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backtest(args) => backtest(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn backtest(args: &BacktestArgs) -> anyhow::Result<()> {
    let rules = match &args.rules {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            RuleSet::parse(&text, &path.display().to_string())?
        }
        None => RuleSet::default_pack()?,
    };
    let mut replay = Backtest::new(rules, args.lateness);
    if let Some(path) = &args.devices {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let devices = Backtest::parse_devices(&text)
            .with_context(|| format!("{}: not a devices file", path.display()))?;
        replay.register(devices);
    }
    let file =
        File::open(&args.input).with_context(|| format!("cannot open {}", args.input.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::new(file);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let input_name = args.input.display().to_string();
    let mut line = String::new();
    let (mut line_number, mut bytes) = (0u64, 0u64);
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("cannot read {input_name}"))?;
        if read == 0 {
            break;
        }
        line_number += 1;
        bytes += read as u64;
        match replay.feed_line(line.trim_end_matches(['\n', '\r'])) {
            Ok(outcome) => print_outcome(&mut out, &outcome, args.json)?,
            Err(error) => eprintln!("{input_name}:{line_number}: skipped: {error}"),
        }
        if args.progress_every > 0 && line_number % args.progress_every == 0 {
            let share = if size > 0 {
                format!(" ({:.0} %)", 100.0 * bytes as f64 / size as f64)
            } else {
                String::new()
            };
            eprintln!("progress: {line_number} lines{share}");
        }
    }
    let last = replay.finish();
    print_outcome(&mut out, &last, args.json)?;
    print_report(&mut out, &replay, args.json)?;
    out.flush()?;
    Ok(())
}

fn time(at_ms: i64) -> String {
    let base = SystemTime::UNIX_EPOCH;
    let when = if at_ms >= 0 {
        base.checked_add(Duration::from_millis(at_ms.unsigned_abs()))
    } else {
        base.checked_sub(Duration::from_millis(at_ms.unsigned_abs()))
    };
    when.map_or_else(
        || format!("{at_ms}ms"),
        |t| humantime_serde::re::humantime::format_rfc3339_millis(t).to_string(),
    )
}

fn action(action: &Action) -> String {
    match action {
        Action::AlertOnly => "alert".to_owned(),
        Action::Order { category, priority } => {
            let priority = serde_json::to_value(priority)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            format!("order {category}/{priority}")
        }
    }
}

fn severity(value: &impl serde::Serialize) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn print_outcome(out: &mut impl Write, outcome: &Outcome, json: bool) -> anyhow::Result<()> {
    if json {
        for t in &outcome.transitions {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "event": "alert", "alert": t })
            )?;
        }
        for e in &outcome.escalations {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "event": "escalation", "escalation": e })
            )?;
        }
        for i in &outcome.incidents {
            writeln!(
                out,
                "{}",
                serde_json::json!({ "event": "incident", "incident": i })
            )?;
        }
        return Ok(());
    }
    for t in &outcome.transitions {
        let kind = match t.kind {
            TransitionKind::Firing => "FIRING",
            TransitionKind::Resolved => "RESOLVED",
        };
        let suppressed = t
            .suppressed_by
            .as_ref()
            .map(|i| format!(" [suppressed by {i}]"))
            .unwrap_or_default();
        writeln!(
            out,
            "{}  {kind:<9} {} {} {} {}{suppressed}: {}",
            time(t.at_ms),
            t.rule_id,
            t.device_id,
            severity(&t.severity),
            action(&t.action),
            t.summary
        )?;
    }
    for e in &outcome.escalations {
        writeln!(
            out,
            "{}  ESCALATED {} {} {} -> {} {}: {}",
            time(e.at_ms),
            e.rule_id,
            e.device_id,
            severity(&e.from),
            severity(&e.severity),
            action(&e.action),
            e.summary
        )?;
    }
    for i in &outcome.incidents {
        let kind = match i.kind {
            TransitionKind::Firing => "INCIDENT",
            TransitionKind::Resolved => "ENDED",
        };
        writeln!(
            out,
            "{}  {kind:<9} {} {} {} {}: {}",
            time(i.at_ms),
            i.fleet_rule_id,
            i.group,
            severity(&i.severity),
            action(&i.action),
            i.summary
        )?;
    }
    Ok(())
}

fn print_report(out: &mut impl Write, replay: &Backtest, json: bool) -> anyhow::Result<()> {
    let report = replay.report();
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "event": "report", "report": report })
        )?;
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{} lines, {} readings, {} bad lines skipped, {} duplicates, {} late, {} reordered",
        report.lines_total,
        report.readings_total,
        report.bad_lines_total,
        replay.engine().stats().duplicates_dropped_total,
        replay.engine().stats().late_dropped_total,
        replay.engine().stats().reordered_total
    )?;
    if let (Some(first), Some(last)) = (report.first_ts_ms, report.last_ts_ms) {
        writeln!(out, "event time {} .. {}", time(first), time(last))?;
    }
    writeln!(
        out,
        "{:<28} {:>8} {:>8} {:>10} {:>8} {:>10}",
        "rule", "firing", "resolved", "escalated", "orders", "suppressed"
    )?;
    for (rule, counts) in &report.rules {
        writeln!(
            out,
            "{rule:<28} {:>8} {:>8} {:>10} {:>8} {:>10}",
            counts.firing, counts.resolved, counts.escalations, counts.orders, counts.suppressed
        )?;
    }
    writeln!(
        out,
        "work orders that would have been opened: {}",
        report.orders_total
    )?;
    Ok(())
}
