//! The `rules backtest` command on small files: what it prints on stdout (events with times,
//! per-rule counts, orders), what it reports on stderr (bad lines by number), and its exit code.

use std::path::PathBuf;
use std::process::Command;

/// 2025-12-01T00:00:00Z.
const T0: i64 = 1_764_547_200_000;
const MINUTE: i64 = 60_000;

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rules-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn line(device: &str, minute: i64, seq: u64, values: &str, fault: Option<&str>) -> String {
    let fault = fault
        .map(|f| {
            format!(r#","fault":{{"code":3,"category":"{f}","text":"room sensor open circuit"}}"#)
        })
        .unwrap_or_default();
    format!(
        r#"{{"v":1,"device_id":"{device}","ts_ms":{},"seq":{seq},"profile":"aurora-ashp","kind":"heat_pump","values":{{{values}}}{fault}}}"#,
        T0 + minute * MINUTE
    )
}

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_rules"))
        .args(args)
        .output()
        .expect("the rules binary runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn backtest_prints_alerts_orders_and_counts_and_skips_bad_lines() {
    let dir = scratch("backtest");
    let warm = r#""indoor_temp_c":20.5,"setpoint_c":20"#;
    let mut lines = vec![
        line("yq-dg-0001-hp", 0, 1, warm, None),
        line("yq-dg-0002-hp", 0, 1, warm, None),
        "this is not json".to_owned(),
        line("yq-dg-0001-hp", 5, 2, warm, Some("sensor_fault")),
        line("yq-dg-0001-hp", 10, 3, warm, None),
    ];
    // Device 2 stays silent; device 1 keeps reporting for 40 minutes.
    for (seq, minute) in (4..).zip((15..=40).step_by(5)) {
        lines.push(line("yq-dg-0001-hp", minute, seq, warm, None));
    }
    let input = dir.join("telemetry.jsonl");
    std::fs::write(&input, lines.join("\n") + "\n").expect("write input");
    let devices = dir.join("devices.json");
    std::fs::write(
        &devices,
        r#"[{"device_id":"yq-dg-0001-hp","township":"yanqing","village":"dongguan","kind":"heat_pump"},
            {"device_id":"yq-dg-0002-hp","township":"yanqing","village":"dongguan","kind":"heat_pump","vulnerable":true}]"#,
    )
    .expect("write devices");

    let (ok, stdout, stderr) = run(&[
        "backtest",
        "--input",
        input.to_str().expect("utf-8 path"),
        "--devices",
        devices.to_str().expect("utf-8 path"),
        "--progress-every",
        "4",
    ]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("2025-12-01T00:05:00.000Z  FIRING    device_fault yq-dg-0001-hp major order repair/high: fault 3 (sensor_fault): room sensor open circuit"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2025-12-01T00:10:00.000Z  RESOLVED  device_fault yq-dg-0001-hp"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2025-12-01T00:15:00.000Z  FIRING    offline yq-dg-0002-hp major alert"),
        "{stdout}"
    );
    assert!(
        stdout.contains("11 lines, 10 readings, 1 bad lines skipped"),
        "{stdout}"
    );
    let counts = stdout
        .lines()
        .find(|l| l.starts_with("device_fault "))
        .expect("a count line for device_fault");
    let numbers: Vec<&str> = counts.split_whitespace().skip(1).collect();
    assert_eq!(numbers, ["1", "1", "0", "1", "0"], "{counts}");
    assert!(
        stdout.contains("work orders that would have been opened: 1"),
        "{stdout}"
    );
    assert!(
        stderr.contains("telemetry.jsonl:3: skipped: not a telemetry message"),
        "{stderr}"
    );
    assert!(stderr.contains("progress: 8 lines ("), "{stderr}");

    // The same replay as JSON lines ends with the report.
    let (ok, stdout, _) = run(&[
        "backtest",
        "--input",
        input.to_str().expect("utf-8 path"),
        "--json",
    ]);
    assert!(ok);
    let last: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("output")).expect("json line");
    assert_eq!(last["event"], "report");
    assert_eq!(last["report"]["bad_lines_total"], 1);
    assert_eq!(last["report"]["rules"]["device_fault"]["orders"], 1);
}

#[test]
fn a_bad_rule_file_fails_with_its_position() {
    let dir = scratch("bad-rules");
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nid = \"cold\"\nkind = \"expr\"\nwhen = \"indoor_temp_c < \"\nseverity = \"major\"\naction = \"alert\"\n",
    )
    .expect("write rules");
    let input = dir.join("empty.jsonl");
    std::fs::write(&input, "").expect("write input");
    let (ok, stdout, stderr) = run(&[
        "backtest",
        "--rules",
        rules.to_str().expect("utf-8 path"),
        "--input",
        input.to_str().expect("utf-8 path"),
    ]);
    assert!(!ok, "{stdout}");
    let expected = format!(
        "{}:4:25: rule \"cold\" field `when`: expected ",
        rules.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}
