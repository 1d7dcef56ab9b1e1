//! Helpers shared by the simulator's integration test crates: the gateway executable the
//! benches start, and running a bench on its own runtime with a deadline.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs a bench on a fresh two-worker runtime; the test fails if it does not finish within
/// `deadline` or returns an error.
pub fn run_bench<T, E: std::fmt::Display>(
    what: &str,
    deadline: Duration,
    bench: impl Future<Output = Result<T, E>>,
) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        tokio::time::timeout(deadline, bench)
            .await
            .unwrap_or_else(|_| panic!("{what} did not finish within {deadline:?}"))
            .unwrap_or_else(|e| panic!("{what} failed: {e}"))
    })
}

/// The gateway executable; built with cargo when the target folder has none yet.
pub fn gateway_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("HEATING_BIN_DIR") {
        return PathBuf::from(dir).join("gateway");
    }
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/gateway
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile folder")
        .to_path_buf();
    let binary = profile_dir.join("gateway");
    if !binary.is_file() {
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut build = std::process::Command::new(option_env!("CARGO").unwrap_or("cargo"));
        build.args(["build", "-p", "gateway", "--bin", "gateway"]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("cargo runs");
        assert!(status.success(), "building the gateway failed");
    }
    binary
}
