//! Soak: a 10,000-device fleet (one MQTT connection per edge box) at 10 s intervals through the
//! gateway's real embedded broker with the whole default rule pack and the default winter mix
//! (faults, outages, Wi-Fi drops), driven by `simulator bench winter` in lockstep as fast as the
//! gateway takes it. Every reading published is accounted for: accepted, or rejected with a
//! reason. In CI (debug binaries) it covers 2 minutes of event time; the 10-minute soak with
//! release binaries is the command in BENCHMARKS.md (`SOAK_MINUTES=10`).

use std::time::Duration;

use serde_json::Value;
use tests::{binary, repo_root, scratch_dir, Proc};

/// Boxes (one device each) in the soak.
const HOUSEHOLDS: u64 = 10_000;
/// Minutes of event time covered unless `SOAK_MINUTES` says otherwise.
const MINUTES: u64 = 2;

#[test]
fn ten_thousand_devices_at_ten_second_intervals_lose_nothing() -> anyhow::Result<()> {
    let dir = scratch_dir("soak")?;
    let report = dir.join("soak.json");
    let minutes = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse::<u64>().ok())
        .unwrap_or(MINUTES);
    // The shipped default mix, with the edge agents' 10 s poll interval.
    let default_mix = std::fs::read_to_string(repo_root().join("simulator/mixes/default.toml"))?;
    anyhow::ensure!(
        default_mix.contains("interval = \"1m\""),
        "the default mix no longer sets `interval = \"1m\"`; update this test"
    );
    let mix = dir.join("mix.toml");
    std::fs::write(
        &mix,
        default_mix.replace("interval = \"1m\"", "interval = \"10s\""),
    )?;
    let mix = mix.display().to_string();
    let (simulator, gateway) = (binary("simulator")?, binary("gateway")?);
    let households = HOUSEHOLDS.to_string();
    // One step more than the minutes, as a fraction of a day.
    let days = ((minutes * 60 + 10) as f64 / 86_400.0).to_string();
    let gateway = gateway.display().to_string();
    let work = dir.join("work").display().to_string();
    let json = report.display().to_string();
    let (mut bench, _) = Proc::start(
        "soak-bench",
        &simulator,
        &[
            "bench",
            "winter",
            "--households",
            &households,
            "--days",
            &days,
            "--seed",
            "41",
            "--mix",
            &mix,
            "--gateway-bin",
            &gateway,
            "--work-dir",
            &work,
            "--json",
            &json,
        ],
        &dir,
        false,
    )?;
    let status = bench.wait_exit(Duration::from_secs(900))?;
    anyhow::ensure!(
        status.success(),
        "the soak failed ({status}):\n{}",
        bench.log()
    );

    let report: Value = serde_json::from_slice(&std::fs::read(&report)?)?;
    let run = &report["run"];
    let published = run["readings_published"].as_u64().unwrap_or(0);
    let accepted = run["readings_accepted"].as_u64().unwrap_or(0);
    let rejected: u64 = run["readings_rejected"]
        .as_object()
        .map(|reasons| reasons.values().filter_map(Value::as_u64).sum())
        .unwrap_or(0);
    println!(
        "soak: {HOUSEHOLDS} devices, {minutes} min of event time: {published} readings \
         published, {accepted} accepted, {rejected} rejected by reason; {} s wall, {} readings/s",
        run["wall_seconds"], run["readings_per_second"]
    );
    // One reading per 10 s from every device that had power and network.
    assert!(
        published >= HOUSEHOLDS * minutes * 6 * 9 / 10,
        "only {published} readings published: {run}"
    );
    assert_eq!(
        published,
        accepted + rejected,
        "readings in = accepted + rejected by reason: {run}"
    );
    Ok(())
}
