//! The box's own watch against real peers: with its link to the broker cut, the agent binary
//! runs its rules on a pymodbus unit's readings, switches the alarm coil on that unit once the
//! uplink has been down for `guard.after` (read back with Debian's mbpoll), and when the link
//! returns the raised alarm arrives on the reading that raised it, with the backlog; the health
//! report shows the guard's figures.

use std::time::Duration;

use crate::support::*;

const DEVICE: &str = "yq-guard-0001";
/// A coil of the unit that the profile does not map (an alarm output).
const ALARM_COIL: u16 = 700;

/// A rule that holds for the served values (the room reads -12.3 °C), so the test does not
/// wait for a house to cool; the real rules run on a cooling house in `guard`'s unit tests.
const RULES: &str = r#"
[[rule]]
id = "edge_test_cold"
description = "Test rule: the room is below 5 °C"
kind = "threshold"
value = "indoor_temp_c"
below = 5
for = "0s"
severity = "critical"
action = { order = { category = "low_indoor_temperature", priority = "urgent" } }
"#;

/// The alarm coil as mbpoll reads it; `None` when mbpoll fails.
fn coil(mbpoll: &std::path::Path, port: u16) -> Option<u16> {
    mbpoll_read(mbpoll, port, "0", ALARM_COIL, 1)
        .ok()?
        .get(&ALARM_COIL)
        .copied()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_uplink_down_the_box_switches_its_alarm_coil_and_reports_it_when_back() {
    let mbpoll = require("mbpoll", "mbpoll");
    let dir = scratch("guard");
    let port = free_port();
    let _unit = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    assert_eq!(coil(&mbpoll, port), Some(0), "the alarm coil starts off");
    let broker = rumqttd();
    let recorder = Recorder::start(broker, "operator", "heating/v1/#", false).await;
    let proxy = Proxy::start(broker).await;
    proxy.down();
    std::fs::write(dir.join("edge-rules.toml"), RULES).expect("rules");
    let config = agent_config(
        &dir,
        proxy.address,
        &format!(
            "[[devices]]\nid = \"{DEVICE}\"\nprofile = \"peer-all-types\"\nunit_id = 1\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:{port}\" }}\n"
        ),
        &format!(
            "\n[guard]\nafter = \"2s\"\nrules_file = \"edge-rules.toml\"\nrules = [\"edge_test_cold\"]\ncoil = {{ device = \"{DEVICE}\", address = {ALARM_COIL} }}\n"
        ),
    );
    let _agent = agent_process(&config);

    eventually(
        "the alarm coil to be switched on",
        Duration::from_secs(20),
        || (coil(&mbpoll, port) == Some(1)).then_some(()),
    )
    .await;
    assert!(
        recorder.telemetry(DEVICE).is_empty(),
        "nothing crossed the cut link"
    );

    proxy.up();
    let raised = eventually(
        "the raising reading to arrive with the backlog",
        Duration::from_secs(30),
        || {
            recorder.telemetry(DEVICE).into_iter().find_map(|reading| {
                reading["edge_alerts"]
                    .as_array()
                    .and_then(|alerts| alerts.first().cloned())
            })
        },
    )
    .await;
    assert_eq!(raised["kind"], "raised", "{raised}");
    assert_eq!(raised["rule_id"], "edge_test_cold");
    assert_eq!(raised["channels"], serde_json::json!(["coil"]));
    assert!(
        raised["uplink_down_ms"].as_u64().unwrap_or(0) >= 2_000,
        "{raised}"
    );
    assert!(raised["episode_id"]
        .as_str()
        .is_some_and(|e| e.starts_with(&format!("edge_test_cold:{DEVICE}:"))));
    // Raised once: no later reading raises it again (the rule still holds).
    eventually(
        "ten more readings after the raise",
        Duration::from_secs(20),
        || (recorder.telemetry(DEVICE).len() > 20).then_some(()),
    )
    .await;
    let raises: usize = recorder
        .telemetry(DEVICE)
        .iter()
        .filter_map(|r| r["edge_alerts"].as_array().map(Vec::len))
        .sum();
    assert_eq!(raises, 1);
    let health = eventually(
        "a health report with the guard",
        Duration::from_secs(10),
        || {
            recorder
                .on("/health")
                .into_iter()
                .rev()
                .find(|h| h["guard"]["raised"] == 1)
        },
    )
    .await;
    assert_eq!(health["guard"]["alarm_on"], true, "{health}");
    assert_eq!(health["guard"]["firing"], 1, "{health}");
    assert!(
        health["guard"]["coil_writes"].as_u64() >= Some(1),
        "{health}"
    );
    assert_eq!(health["guard"]["coil_failures"], 0, "{health}");
    // The coil stays on while the rule holds.
    assert_eq!(coil(&mbpoll, port), Some(1));
}
