//! Build script: records the build date (`SOURCE_DATE_EPOCH` when set, for reproducible
//! builds; else the build machine's clock) as the floor below which the agent never trusts its
//! wall clock (`clock::BUILD_FLOOR_MS`).

use std::time::{SystemTime, UNIX_EPOCH};

fn main() {
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    println!("cargo:rerun-if-changed=build.rs");
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        })
        // Never below 2026-01-01: a build machine's broken clock must not lower the floor.
        .max(1_767_225_600);
    println!("cargo:rustc-env=EDGE_AGENT_BUILD_UNIX_S={seconds}");
}
