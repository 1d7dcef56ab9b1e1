//! The box alone: an edge agent whose gateway is not there runs its own rules on a simulated
//! household's Modbus readings, raises a local alarm through its hook (a script written by the
//! test, standing in for an SMS modem) once the uplink has been down for `guard.after`, and
//! when the gateway comes up on the agent's broker address the alarm arrives with the backlog:
//! recorded once, as an alert beside the gateway's own, never as an order of its own.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use serde_json::Value;
use tests::{
    agent_devices, binary, eventually, free_port, get_json, repo_root, scratch_dir, write_registry,
    GatewayConfig, Proc, RegistryHousehold,
};

/// A pack for the box with one rule that holds in any heated house (a room below 40 °C), so the
/// test does not wait for a house to cool: the unit tests of `edge_agent::guard` run the real
/// rules on a cooling house; this test runs the plumbing between the processes.
const EDGE_RULES: &str = r#"
[[rule]]
id = "edge_test_room"
description = "Test rule: the room is below 40 °C"
kind = "threshold"
value = "indoor_temp_c"
below = 40
for = "0s"
severity = "major"
action = { order = { category = "low_indoor_temperature", priority = "high" } }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_without_its_uplink_alarms_locally_and_the_gateway_records_it_once_it_arrives(
) -> anyhow::Result<()> {
    let dir = scratch_dir("edge-guard")?;
    let profiles = repo_root().join("profiles").display().to_string();
    let (simulator, ready) = Proc::start(
        "simulator",
        &binary("simulator")?,
        &[
            "serve",
            "--households",
            "1",
            "--seed",
            "7",
            "--profiles",
            &profiles,
            "--http",
            "127.0.0.1:0",
            "--manifest",
            "manifest.json",
        ],
        &dir,
        true,
    )?;
    ready.ok_or_else(|| anyhow!("the simulator did not start\n{}", simulator.log()))?;
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
    let households = manifest
        .as_array()
        .cloned()
        .ok_or_else(|| anyhow!("manifest is not a list"))?;
    let device = households[0]["device_id"]
        .as_str()
        .ok_or_else(|| anyhow!("no device id in {manifest}"))?
        .to_owned();

    // The hook: writes its environment's alert fields into a file.
    let hook = dir.join("alarm-hook.sh");
    let hook_out = dir.join("alarm.txt");
    std::fs::write(
        &hook,
        "#!/bin/sh\nenv | grep '^HEATING_' | sort > \"$1.part\" && mv \"$1.part\" \"$1\"\n",
    )?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    std::fs::write(dir.join("edge-rules.toml"), EDGE_RULES)?;

    // The gateway's broker address is reserved but nobody listens there yet: the uplink is down.
    let mqtt_port = free_port()?;
    let mut agent_config = format!(
        "agent_id = \"box-guard\"\ntownship = \"yanqing\"\nprofiles_dir = \"{profiles}\"\n\n\
         [mqtt]\nhost = \"127.0.0.1\"\nport = {mqtt_port}\nkeep_alive = \"5s\"\nmax_reconnect_backoff = \"1s\"\n\n\
         [polling]\ninterval = \"500ms\"\n\n\
         [guard]\nafter = \"3s\"\nrules_file = \"edge-rules.toml\"\nrules = [\"edge_test_room\"]\n\
         hook = {{ program = \"{}\", args = [\"{}\"], timeout = \"10s\" }}\n",
        hook.display(),
        hook_out.display()
    );
    agent_config.push_str(&agent_devices(&households));
    std::fs::write(dir.join("agent.toml"), agent_config)?;
    let (agent, _) = Proc::start(
        "edge-agent",
        &binary("edge-agent")?,
        &["run", "--config", "agent.toml"],
        &dir,
        false,
    )?;

    let alarm = eventually("the box's hook to run", Duration::from_secs(30), || async {
        Ok(std::fs::read_to_string(&hook_out)
            .ok()
            .filter(|t| !t.is_empty()))
    })
    .await
    .with_context(|| agent.log())?;
    assert!(
        alarm.contains("HEATING_ALERT_RULE=edge_test_room"),
        "{alarm}"
    );
    assert!(
        alarm.contains(&format!("HEATING_ALERT_DEVICE={device}")),
        "{alarm}"
    );
    assert!(alarm.contains("HEATING_AGENT_ID=box-guard"), "{alarm}");
    assert!(
        alarm.contains(&format!("HEATING_ALERT_EPISODE=edge_test_room:{device}:")),
        "{alarm}"
    );

    // The gateway comes up where the box looks for it; the backlog brings the alarm.
    let registered = households
        .iter()
        .map(RegistryHousehold::from_manifest)
        .collect::<anyhow::Result<Vec<_>>>()?;
    write_registry(&dir.join("registry"), &registered)?;
    let (gateway, ready) = GatewayConfig {
        broker: format!("[broker]\nlisten = \"127.0.0.1:{mqtt_port}\"\n"),
        rules: "tick = \"200ms\"\n".into(),
        registry: true,
        ..GatewayConfig::with_operator("guard")
    }
    .start("gateway", &dir)?;
    let http = ready["http"].as_str().unwrap_or_default().to_owned();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let alerts_url = format!("http://{http}/api/v1/alerts");
    let edge = eventually(
        "the gateway to record the box's alarm",
        Duration::from_secs(30),
        || async {
            let alerts = get_json(&client, &alerts_url).await?;
            let edge: Vec<Value> = alerts
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter(|a| {
                            a["episode_id"]
                                .as_str()
                                .is_some_and(|e| e.starts_with("edge:"))
                        })
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            Ok((!edge.is_empty()).then_some(edge))
        },
    )
    .await
    .with_context(|| format!("{}\n{}", gateway.log(), agent.log()))?;
    assert_eq!(edge.len(), 1, "one alarm, recorded once: {edge:?}");
    assert_eq!(edge[0]["device_id"], device.as_str());
    assert_eq!(edge[0]["rule_id"], "edge_test_room");
    let summary = edge[0]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("SMS/hook"), "{summary}");
    let metrics = client
        .get(format!("http://{http}/metrics"))
        .bearer_auth(tests::OPERATOR_TOKEN)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics
            .lines()
            .any(|l| l == "gateway_edge_alarms_raised_total 1"),
        "{metrics}"
    );
    // The gateway's pack has no such rule: no order came of the box's alarm.
    let orders = get_json(&client, &format!("http://{http}/api/v1/orders")).await?;
    let of_device = orders
        .as_array()
        .map(|o| {
            o.iter()
                .filter(|o| o["device_id"] == device.as_str())
                .count()
        })
        .unwrap_or(0);
    assert_eq!(of_device, 0, "{orders}");
    drop(simulator);
    Ok(())
}
