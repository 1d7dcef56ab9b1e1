//! End-to-end tests across the real processes: simulator (Modbus TCP) -> edge-agent (MQTT) ->
//! gateway (broker, rules, orders, HTTP API).

use std::time::Duration;

use serde_json::{json, Value};
use tests::{eventually, get_json, System};

fn orders_of(orders: &Value) -> Vec<(String, String)> {
    orders
        .as_array()
        .map(|orders| {
            orders
                .iter()
                .map(|o| {
                    (
                        o["device_id"].as_str().unwrap_or_default().to_owned(),
                        o["category"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_fault_opens_one_order_for_exactly_that_device() -> anyhow::Result<()> {
    let system = System::start("fault-order", 6, 11).await?;
    let target = system.households[2]["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let kind = system.households[2]["kind"].as_str().unwrap_or_default();
    let category = if kind == "gas_boiler" {
        "ignition_failure"
    } else {
        "water_flow"
    };

    // No orders while every household is healthy.
    let before = get_json(&system.client, &system.gateway_url("/api/v1/orders")).await?;
    assert_eq!(
        orders_of(&before),
        vec![],
        "orders before any fault: {before}"
    );

    let response = system
        .client
        .post(system.simulator_url(&format!("/households/{target}/fault")))
        .json(&json!({ "category": category }))
        .send()
        .await?;
    assert!(
        response.status().is_success(),
        "fault injection: {}",
        response.status()
    );

    let orders_url = system.gateway_url("/api/v1/orders");
    let orders = eventually(
        "an order for the faulty device",
        Duration::from_secs(20),
        || async {
            let orders = get_json(&system.client, &orders_url).await?;
            Ok((!orders_of(&orders).is_empty()).then_some(orders))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", system.logs()))?;
    assert_eq!(
        orders_of(&orders),
        vec![(target.clone(), "repair".to_owned())]
    );

    // The order's history starts with its creation by the fault rule, and the alert names the
    // shared fault category the profile mapped the brand's code onto.
    let id = orders[0]["id"].as_i64().unwrap_or_default();
    let detail = get_json(
        &system.client,
        &system.gateway_url(&format!("/api/v1/orders/{id}")),
    )
    .await?;
    assert_eq!(detail["events"][0]["kind"], "created", "{detail}");
    assert_eq!(detail["source"], "rule");
    let alerts = get_json(
        &system.client,
        &system.gateway_url("/api/v1/alerts?active=true"),
    )
    .await?;
    let alert_summaries: Vec<&str> = alerts
        .as_array()
        .map(|a| a.iter().filter_map(|a| a["summary"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        alert_summaries.iter().any(|s| s.contains(category)),
        "active alerts should name {category}: {alerts}"
    );

    // More polls of the same faulty device do not open a second order.
    let device_url = system.gateway_url(&format!("/api/v1/devices/{target}"));
    let seen = get_json(&system.client, &device_url).await?["readings"]
        .as_u64()
        .unwrap_or(0);
    eventually(
        "three more readings from the faulty device",
        Duration::from_secs(10),
        || async {
            let readings = get_json(&system.client, &device_url).await?["readings"]
                .as_u64()
                .unwrap_or(0);
            Ok((readings >= seen + 3).then_some(()))
        },
    )
    .await?;
    let after = get_json(&system.client, &orders_url).await?;
    assert_eq!(
        orders_of(&after),
        vec![(target, "repair".to_owned())],
        "{after}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_edge_agent_marks_its_devices_offline_through_the_last_will(
) -> anyhow::Result<()> {
    let mut system = System::start("last-will", 4, 5).await?;
    let devices = get_json(&system.client, &system.gateway_url("/api/v1/devices")).await?;
    let statuses: Vec<&str> = devices
        .as_array()
        .map(|d| d.iter().filter_map(|d| d["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, vec!["online"; 4], "{devices}");

    system.agent.kill()?;

    let url = system.gateway_url("/api/v1/devices");
    eventually(
        "every device offline after the agent died",
        Duration::from_secs(20),
        || async {
            let devices = get_json(&system.client, &url).await?;
            let offline = devices
                .as_array()
                .map(|d| {
                    d.iter()
                        .all(|d| d["status"] == "offline" && d["agent_id"] == "box-e2e")
                })
                .unwrap_or(false);
            Ok(offline.then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", system.logs()))?;
    Ok(())
}

/// Publishes `lines` (one message each) to `topic` with Debian's mosquitto_pub, a client
/// nobody here wrote.
fn mosquitto_pub(mqtt: &str, topic: &str, lines: &str) -> anyhow::Result<std::process::ExitStatus> {
    use std::io::Write as _;
    let (host, port) = mqtt
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("bad address {mqtt}"))?;
    let mut child = std::process::Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "-q", "1", "-t", topic, "-l"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!("cannot run mosquitto_pub (apt-get install mosquitto-clients): {e}")
        })?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(lines.as_bytes())?;
    Ok(child.wait()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_malformed_payloads_is_counted_and_dropped_while_good_readings_flow(
) -> anyhow::Result<()> {
    let system = System::start("malformed", 2, 3).await?;
    let device = system.households[0]["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let township = system.households[0]["township"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let topic = format!("heating/v1/{township}/{device}/telemetry");

    let garbage: String = (0..500)
        .map(|i| match i % 5 {
            0 => "not json at all\n".to_owned(),
            1 => "{\"v\":1}\n".to_owned(),
            2 => format!("{{\"v\":1,\"device_id\":\"{device}\",\"ts_ms\":1796000000000,\"seq\":{i},\"profile\":\"x\",\"kind\":\"toaster\",\"values\":{{}}}}\n"),
            3 => "[1,2,3]\n".to_owned(),
            _ => "{\"v\":1,\"device_id\":\"\\u0000\"}\n".to_owned(),
        })
        .collect();
    let implausible: String = (0..100)
        .map(|i| format!(
            "{{\"v\":1,\"device_id\":\"{device}\",\"ts_ms\":{},\"seq\":{i},\"profile\":\"aurora-ashp\",\"kind\":\"heat_pump\",\"values\":{{\"indoor_temp_c\":900.0}}}}\n",
            edge_agent_now_ms()
        ))
        .collect();
    assert!(mosquitto_pub(&system.gateway_mqtt, &topic, &garbage)?.success());
    assert!(mosquitto_pub(&system.gateway_mqtt, &topic, &implausible)?.success());
    assert!(mosquitto_pub(
        &system.gateway_mqtt,
        "heating/v1/NOT-A-TOWNSHIP/x/telemetry",
        "{}\n{}\n"
    )?
    .success());

    let summary_url = system.gateway_url("/api/v1/summary");
    let summary = eventually(
        "every malformed message counted",
        Duration::from_secs(20),
        || async {
            let summary = get_json(&system.client, &summary_url).await?;
            let rejected = &summary["rejected"];
            let total = rejected["malformed"].as_u64().unwrap_or(0)
                + rejected["out_of_range"].as_u64().unwrap_or(0)
                + rejected["bad_topic"].as_u64().unwrap_or(0);
            Ok((total >= 602).then_some(summary))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", system.logs()))?;
    assert_eq!(summary["rejected"]["malformed"], 500, "{summary}");
    assert_eq!(summary["rejected"]["out_of_range"], 100, "{summary}");
    assert_eq!(summary["rejected"]["bad_topic"], 2, "{summary}");

    // The gateway is alive and good readings still flow after the flood.
    let accepted = summary["readings_accepted"].as_u64().unwrap_or(0);
    eventually(
        "good readings after the flood",
        Duration::from_secs(10),
        || async {
            let summary = get_json(&system.client, &summary_url).await?;
            Ok((summary["readings_accepted"].as_u64().unwrap_or(0) >= accepted + 4).then_some(()))
        },
    )
    .await?;
    let health = system
        .client
        .get(system.gateway_url("/healthz"))
        .send()
        .await?;
    assert!(health.status().is_success());
    // No order was opened by any of it.
    let orders = get_json(&system.client, &system.gateway_url("/api/v1/orders")).await?;
    assert_eq!(orders_of(&orders), vec![], "{orders}");
    Ok(())
}

fn edge_agent_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
