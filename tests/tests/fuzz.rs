//! Runs the `fuzz` binary (tests/src/bin/fuzz) for a short budget over all four parsers at the
//! trust boundary (ingest payloads, rule files, registry CSV, register-map profiles): it must
//! find no panic, and every target must really have run thousands of inputs, so a target that
//! is silently skipped or stuck on its seeds fails the test. `FUZZ_SEED` picks another seed.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The fuzzing budget, split across the four targets.
const SECONDS: u64 = 20;
/// Fewest executions each target must reach in its quarter of the budget (a debug build runs
/// about 2,300 (rules) to 13,000 (ingest) inputs a second on one core).
const MIN_EXECS: u64 = 2_000;

#[test]
fn every_parser_at_the_trust_boundary_survives_twenty_seconds_of_fuzzing() -> anyhow::Result<()> {
    let binary = tests::binary("fuzz")?;
    let dir = tests::scratch_dir("fuzz")?;
    let summary_path = dir.join("summary.json");
    let seed = std::env::var("FUZZ_SEED").unwrap_or_else(|_| "20260601".to_owned());
    let mut child = Command::new(&binary)
        .args(["--seconds", &SECONDS.to_string(), "--seed", &seed])
        .args(["--target", "all", "--hang-seconds", "20"])
        .arg("--out")
        .arg(dir.join("crashes"))
        .arg("--summary")
        .arg(&summary_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("stderr.log"))?)
        .spawn()?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    // The budget, seed loading, minimising a panicking input: well within two minutes. The
    // stdout reader finishes when the fuzzer (and its workers) exit.
    let output = match rx.recv_timeout(Duration::from_secs(SECONDS + 100)) {
        Ok(output) => output,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("the fuzzer did not finish within {} s", SECONDS + 100);
        }
    };
    let status = child.wait()?;
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    assert!(
        status.success(),
        "the fuzzer failed ({status}) with seed {seed}:\n{output}\n{stderr}"
    );

    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary_path)?)?;
    let targets = summary
        .as_array()
        .ok_or_else(|| anyhow::anyhow!("summary is not a list: {summary}"))?;
    let names: Vec<&str> = targets
        .iter()
        .filter_map(|t| t["target"].as_str())
        .collect();
    assert_eq!(
        names,
        ["ingest", "rules", "registry", "profile"],
        "{output}"
    );
    for target in targets {
        let execs = target["execs"].as_u64().unwrap_or(0);
        assert!(
            execs >= MIN_EXECS,
            "{} ran only {execs} inputs (fewer than {MIN_EXECS}):\n{output}",
            target["target"]
        );
        assert_eq!(target["panics"].as_u64(), Some(0), "{output}");
        // The seeds were found and parsed: the corpus grew beyond them.
        assert!(
            target["corpus"].as_u64() > target["seeds"].as_u64(),
            "{}: the corpus did not grow beyond the seeds:\n{output}",
            target["target"]
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
