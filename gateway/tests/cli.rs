//! Tests of the `gateway` binary's start-up: precise config and rule-file errors, the ready
//! line, graceful shutdown on SIGTERM (which leaves a complete rule snapshot), and start-up
//! beside an unreadable snapshot.

use std::process::Command;
use std::time::{Duration, Instant};

mod support;

fn check_config(dir: &std::path::Path, config: &str) -> (bool, String) {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, config).expect("write config");
    let output = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run gateway");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_config_field_stops_start_up_with_file_line_and_field() {
    let dir = support::scratch("cli-unknown-field");
    let (ok, stderr) = check_config(&dir, "[http]\nlisten = \"127.0.0.1:0\"\nlisen = 3\n");
    assert!(!ok);
    assert!(stderr.contains("gateway.toml:3:1"), "{stderr}");
    assert!(stderr.contains("lisen"), "{stderr}");
}

#[test]
fn a_wrong_type_names_the_line_and_column() {
    let dir = support::scratch("cli-wrong-type");
    let (ok, stderr) = check_config(&dir, "[broker]\nmax_payload_size = \"big\"\n");
    assert!(!ok);
    assert!(stderr.contains("gateway.toml:2:20"), "{stderr}");
}

#[test]
fn a_bad_rule_file_is_refused_with_its_own_position() {
    let dir = support::scratch("cli-bad-rules");
    std::fs::write(
        dir.join("rules.toml"),
        "[[rule]]\nid = \"cold\"\nkind = \"threshold\"\nvalue = \"room_temp\"\nbelow = 14.0\nfor = \"30m\"\nseverity = \"major\"\naction = \"alert\"\n",
    )
    .expect("write rules");
    let (ok, stderr) = check_config(
        &dir,
        "[api]\nauth = \"disabled\"\n[rules]\npath = \"rules.toml\"\n",
    );
    assert!(!ok);
    assert!(stderr.contains("rules.toml:4:9"), "{stderr}");
    assert!(stderr.contains("room_temp"), "{stderr}");
}

#[test]
fn a_good_config_is_accepted() {
    let dir = support::scratch("cli-good");
    let (ok, stderr) = check_config(
        &dir,
        "[http]\nlisten = \"127.0.0.1:0\"\n[api]\nauth = \"disabled\"\n",
    );
    assert!(ok, "{stderr}");
    let (ok, stderr) = check_config(&dir, "[http]\nlisten = \"127.0.0.1:0\"\n");
    assert!(!ok, "a gateway without tokens must say so");
    assert!(stderr.contains("api.tokens"), "{stderr}");
}

/// Starts `gateway run` in `dir` (its `gateway.toml`), waits for the ready line, sends SIGTERM
/// and returns how it exited.
fn run_until_sigterm(dir: &std::path::Path) -> std::process::ExitStatus {
    let (mut child, ready) = support::run_gateway(dir);
    assert_eq!(ready["event"], "ready");
    assert!(
        ready["http"].as_str().is_some_and(|a| !a.ends_with(":0")),
        "{ready}"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let start = Instant::now();
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            return exit;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "gateway did not stop on SIGTERM"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_stops_the_gateway_cleanly_after_it_reported_ready() {
    let dir = support::scratch("cli-sigterm");
    std::fs::write(dir.join("gateway.toml"), support::minimal_config("")).expect("write config");
    let exit = run_until_sigterm(&dir);
    assert!(exit.success(), "{exit:?}");
    assert!(dir.join("g.sqlite").exists());
    // The rule state was saved on the way out, beside the store, complete.
    let json = std::fs::read(dir.join("rules-snapshot.json")).expect("snapshot beside the store");
    let snapshot: rules::Snapshot = serde_json::from_slice(&json).expect("a complete snapshot");
    assert_eq!(snapshot.format, rules::SNAPSHOT_FORMAT);
    assert!(!dir.join("rules-snapshot.json.tmp").exists());
}

#[test]
fn an_unreadable_snapshot_is_kept_aside_and_the_gateway_starts_with_empty_state() {
    let dir = support::scratch("cli-unreadable-snapshot");
    std::fs::write(
        dir.join("gateway.toml"),
        support::minimal_config("snapshot_path = \"state/rules.json\"\n"),
    )
    .expect("write config");
    std::fs::create_dir_all(dir.join("state")).expect("state folder");
    std::fs::write(
        dir.join("state/rules.json"),
        "{\"format\":2,\"watermark_ms\":",
    )
    .expect("truncated snapshot");
    let exit = run_until_sigterm(&dir);
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        std::fs::read_to_string(dir.join("state/rules.json.unreadable")).expect("kept aside"),
        "{\"format\":2,\"watermark_ms\":"
    );
    // Started empty, and saved its (empty) state in a new file at shutdown.
    let json = std::fs::read(dir.join("state/rules.json")).expect("new snapshot");
    let snapshot: rules::Snapshot = serde_json::from_slice(&json).expect("a complete snapshot");
    assert!(snapshot.devices.is_empty(), "{snapshot:?}");
    assert!(
        !dir.join("rules-snapshot.json").exists(),
        "the configured path is used"
    );
}

#[test]
fn the_example_config_in_deploy_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gateway.toml");
    let run = |token: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_gateway"));
        command.args(["check-config", "--config"]).arg(&path);
        match token {
            Some(token) => command.env("HEATING_API_TOKEN_CENTRE", token),
            None => command.env_remove("HEATING_API_TOKEN_CENTRE"),
        };
        command.output().expect("run gateway")
    };
    let output = run(Some("a-long-enough-secret-token"));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The example reads its token from the environment: without it, start-up names the field.
    let output = run(None);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("api.tokens[0].token") && stderr.contains("HEATING_API_TOKEN_CENTRE"),
        "{stderr}"
    );
}

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

/// Replaces `path` atomically, as a deploy does: written beside it, then renamed over it, so the
/// gateway's reload poll never reads an empty or half-written file.
fn replace_file(path: &std::path::Path, contents: &str) {
    let temporary = path.with_extension("toml.new");
    std::fs::write(&temporary, contents).expect("write the new file");
    std::fs::rename(&temporary, path).expect("rename it over the old one");
}

#[test]
fn a_changed_rule_file_is_applied_and_a_broken_one_is_refused_without_a_restart() {
    let dir = support::scratch("cli-hot-reload");
    std::fs::write(dir.join("rules.toml"), rules::DEFAULT_RULES).expect("write rules");
    std::fs::write(
        dir.join("gateway.toml"),
        support::minimal_config("path = \"rules.toml\"\nreload_every = \"100ms\"\n"),
    )
    .expect("write config");
    let (mut child, ready) = support::run_gateway(&dir);
    let http = ready["http"].as_str().unwrap_or_default().to_owned();
    let metrics = || -> String {
        let mut stream = std::net::TcpStream::connect(&http).expect("connect");
        use std::io::{Read, Write};
        let _ = write!(stream, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n");
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text);
        text
    };
    let wait_for = |name: &str, value: u64| {
        let start = Instant::now();
        loop {
            if metric(&metrics(), name) == Some(value) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{name} never reached {value}"
            );
            std::thread::park_timeout(Duration::from_millis(50));
        }
    };
    // A broken rule (unknown value name) is refused; the running rules stay.
    let broken = format!(
        "{}\n[[rule]]\nid = \"broken\"\nkind = \"threshold\"\nvalue = \"room_temp_c\"\nbelow = 14.0\nseverity = \"major\"\naction = \"alert\"\n",
        rules::DEFAULT_RULES
    );
    replace_file(&dir.join("rules.toml"), &broken);
    wait_for("gateway_rule_reload_failures_total", 1);
    assert_eq!(metric(&metrics(), "gateway_rule_reloads_total"), Some(0));
    // A valid change is applied.
    replace_file(
        &dir.join("rules.toml"),
        &format!("{}\n# changed\n", rules::DEFAULT_RULES),
    );
    wait_for("gateway_rule_reloads_total", 1);
    let _ = child.kill();
    let _ = child.wait();
}
