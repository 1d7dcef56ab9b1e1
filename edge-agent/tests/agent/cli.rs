//! Tests of the `edge-agent` binary's start-up: a bad profile or config stops it with the
//! file, line and field; `check` fails on an unreachable device.

use std::path::{Path, PathBuf};
use std::process::Command;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-agent-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("profiles")).expect("scratch dir");
    dir
}

fn shipped(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../profiles")
        .join(file);
    std::fs::read_to_string(path).expect("shipped profile")
}

fn write_config(dir: &Path, address: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "agent_id = \"box-1\"\ntownship = \"yongning\"\n\n[mqtt]\nhost = \"127.0.0.1\"\n\n[polling]\ntimeout = \"300ms\"\n\n[[devices]]\nid = \"yongning-beiguan-0001\"\nprofile = \"aurora-ashp\"\ntransport = {{ type = \"tcp\", address = \"{address}\" }}\n"
        ),
    )
    .expect("write config");
    path
}

fn check(config: &Path) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["check", "--config"])
        .arg(config)
        .output()
        .expect("run edge-agent");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_profile_with_an_unknown_type_stops_start_up_with_file_line_and_field() {
    let dir = scratch("bad-type");
    let text = shipped("aurora-ashp.toml").replacen("type = \"u16\"", "type = \"u24\"", 1);
    std::fs::write(dir.join("profiles/aurora-ashp.toml"), text).expect("write profile");
    let (ok, _, stderr) = check(&write_config(&dir, "127.0.0.1:1"));
    assert!(!ok);
    assert!(stderr.contains("profiles/aurora-ashp.toml:"), "{stderr}");
    assert!(stderr.contains("u24"), "{stderr}");
}

#[test]
fn overlapping_registers_in_a_profile_are_refused() {
    let dir = scratch("overlap");
    let text = shipped("aurora-ashp.toml").replacen("address = 3\n", "address = 2\n", 1);
    std::fs::write(dir.join("profiles/aurora-ashp.toml"), text).expect("write profile");
    let (ok, _, stderr) = check(&write_config(&dir, "127.0.0.1:1"));
    assert!(!ok);
    assert!(stderr.contains("register[4].address"), "{stderr}");
    assert!(stderr.contains("overlaps register[3]"), "{stderr}");
}

#[test]
fn check_fails_with_the_error_kind_when_the_device_does_not_answer() {
    let dir = scratch("unreachable");
    std::fs::write(
        dir.join("profiles/aurora-ashp.toml"),
        shipped("aurora-ashp.toml"),
    )
    .expect("write profile");
    // Bind then drop: nothing listens on this port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("probe port")
        .port();
    let (ok, stdout, _) = check(&write_config(&dir, &format!("127.0.0.1:{port}")));
    assert!(!ok);
    assert!(stdout.contains("yongning-beiguan-0001"), "{stdout}");
    assert!(stdout.contains("(connect)"), "{stdout}");
}
