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
        "sensor_fault"
    };

    // No orders while every household is healthy.
    let before = get_json(&system.client, &system.gateway_url("/api/v1/orders")).await?;
    assert_eq!(
        orders_of(&before),
        vec![],
        "orders before any fault: {before}"
    );

    // Watch the live streams before the fault: Debian's mosquitto_sub on the alert and incident
    // topics, and the SSE stream.
    let mut alerts_topic = LiveTopics::subscribe(&system.gateway_mqtt).await?;
    // A client of its own: the system's client times requests out after 5 s.
    let mut sse = reqwest::Client::new()
        .get(system.gateway_url("/api/v1/stream"))
        .bearer_auth(tests::OPERATOR_TOKEN)
        .send()
        .await?;
    assert!(sse.status().is_success(), "SSE: {}", sse.status());

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

    // The alert went out live: on its MQTT topic and as an SSE `alert` event, and the order's
    // creation as an SSE `order` event.
    let township = system.households[2]["township"]
        .as_str()
        .unwrap_or_default();
    let published = alerts_topic
        .next_on(&format!("heating/v1/{township}/{target}/alerts"))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", system.logs()))?;
    assert_eq!(published["type"], "alert", "{published}");
    assert_eq!(published["kind"], "firing", "{published}");
    assert_eq!(published["device_id"], target.as_str(), "{published}");
    assert_eq!(published["township"], township, "{published}");
    let mut seen_events = String::new();
    let wanted = |text: &str| {
        text.contains("event: alert") && text.contains(&target) && text.contains("event: order")
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        while !wanted(&seen_events) {
            match sse.chunk().await? {
                Some(chunk) => seen_events.push_str(&String::from_utf8_lossy(&chunk)),
                None => anyhow::bail!("the SSE stream ended"),
            }
        }
        Ok(())
    })
    .await
    .map_err(|_| anyhow::anyhow!("no SSE alert and order events; got:\n{seen_events}"))??;
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

/// Debian's mosquitto_sub subscribed to every alert and incident topic of a gateway.
struct LiveTopics {
    _child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl LiveTopics {
    /// Starts mosquitto_sub and returns once the broker acknowledged the subscription.
    async fn subscribe(mqtt: &str) -> anyhow::Result<LiveTopics> {
        use tokio::io::AsyncBufReadExt as _;
        let (host, port) = mqtt
            .rsplit_once(':')
            .ok_or_else(|| anyhow::anyhow!("bad address {mqtt}"))?;
        // stdbuf: mosquitto_sub's stdout is a pipe here, and its debug lines are not flushed.
        let mut child = tokio::process::Command::new("stdbuf")
            .args([
                "-oL",
                "mosquitto_sub",
                "-h",
                host,
                "-p",
                port,
                "-d",
                "-v",
                "-q",
                "1",
            ])
            .args([
                "-t",
                "heating/v1/+/+/alerts",
                "-t",
                "heating/v1/+/+/incidents",
            ])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("cannot run mosquitto_sub (apt-get install mosquitto-clients): {e}")
            })?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(line) = lines.next_line().await? {
                if line.contains("SUBACK") {
                    return Ok(());
                }
            }
            anyhow::bail!("mosquitto_sub exited before its SUBACK")
        })
        .await
        .map_err(|_| anyhow::anyhow!("mosquitto_sub got no SUBACK within 10 s"))??;
        Ok(LiveTopics {
            _child: child,
            lines,
        })
    }

    /// The payload of the next message on `topic` (mosquitto_sub -v prints `topic payload`).
    async fn next_on(&mut self, topic: &str) -> anyhow::Result<Value> {
        let prefix = format!("{topic} ");
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = self.lines.next_line().await? {
                if let Some(payload) = line.strip_prefix(&prefix) {
                    return Ok(serde_json::from_str(payload)?);
                }
            }
            anyhow::bail!("mosquitto_sub exited")
        })
        .await
        .map_err(|_| anyhow::anyhow!("no message on {topic} within 20 s"))?
    }
}

/// Publishes `lines` (one message each) to `topic` with Debian's mosquitto_pub, a client
/// nobody here wrote.
fn mosquitto_pub(mqtt: &str, topic: &str, lines: &str) -> anyhow::Result<std::process::ExitStatus> {
    mosquitto_pub_qos(mqtt, topic, lines, 1)
}

/// [`mosquitto_pub`] at QoS `qos` (0 sends as fast as the socket takes it).
fn mosquitto_pub_qos(
    mqtt: &str,
    topic: &str,
    lines: &str,
    qos: u8,
) -> anyhow::Result<std::process::ExitStatus> {
    use std::io::Write as _;
    let (host, port) = mqtt
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("bad address {mqtt}"))?;
    let mut child = std::process::Command::new("mosquitto_pub")
        .args(["-h", host, "-p", port, "-t", topic, "-l"])
        .args(["-q", &qos.to_string()])
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
            tests::now_ms()
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

/// A burst far larger than the embedded broker's per-link buffer (200 notifications) must reach
/// ingest whole: rumqttd unschedules a link whose buffer fills and only forwards again once the
/// link says it is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_larger_than_the_broker_link_buffer_is_taken_in_whole() -> anyhow::Result<()> {
    let system = System::start("burst", 1, 5).await?;
    let device = system.households[0]["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let township = system.households[0]["township"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let topic = format!("heating/v1/{township}/{device}/telemetry");
    let summary_url = system.gateway_url("/api/v1/summary");
    let before = get_json(&system.client, &summary_url).await?["messages_in"]
        .as_u64()
        .unwrap_or(0);
    const BURST: u64 = 20_000;
    let now = tests::now_ms();
    let burst: String = (0..BURST)
        .map(|i| format!(
            "{{\"v\":1,\"device_id\":\"{device}\",\"ts_ms\":{},\"seq\":{},\"profile\":\"aurora-ashp\",\"kind\":\"heat_pump\",\"values\":{{\"indoor_temp_c\":20.5}}}}\n",
            now - 60_000 + i as i64,
            1_000_000 + i
        ))
        .collect();
    // QoS 0: no acknowledgement paces the publisher, so the broker's buffer for ingest fills.
    assert!(mosquitto_pub_qos(&system.gateway_mqtt, &topic, &burst, 0)?.success());
    eventually(
        "every message of the burst taken in",
        Duration::from_secs(60),
        || async {
            let summary = get_json(&system.client, &summary_url).await?;
            let taken = summary["messages_in"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(before);
            anyhow::ensure!(taken >= BURST, "{taken} of {BURST} taken in");
            Ok(Some(()))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", system.logs()))?;
    let metrics = system
        .client
        .get(system.gateway_url("/metrics"))
        .bearer_auth(tests::OPERATOR_TOKEN)
        .send()
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("\ngateway_broker_messages_lost_total 0\n"),
        "the broker's default log holds a burst: {metrics}"
    );
    Ok(())
}

/// With a broker log far smaller than a burst, ingest may fall behind what the broker keeps:
/// whatever the broker drops is counted, so every message sent is either taken in or counted
/// as lost (in a normal run the log is large enough for `lost` to stay 0, asserted above).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_the_broker_drops_before_ingest_reads_them_are_counted() -> anyhow::Result<()> {
    let dir = tests::scratch_dir("broker-log")?;
    let (gateway, ready) = tests::GatewayConfig {
        broker: "[broker]\nlisten = \"127.0.0.1:0\"\nlog_segment_size = 65536\nlog_segments = 1\n"
            .into(),
        ..tests::GatewayConfig::with_operator("e2e")
    }
    .start("gateway", &dir)?;
    let http = ready["http"].as_str().unwrap_or_default();
    let mqtt = ready["mqtt"].as_str().unwrap_or_default();
    let client = reqwest::Client::new();
    const BURST: u64 = 20_000;
    // Status messages of unknown boxes: each is taken in and handled, about 250 bytes each.
    let burst: String = (0..BURST)
        .map(|i| format!("{{\"v\":1,\"agent_id\":\"box-{i}\",\"state\":\"online\",\"devices\":[\"yq-000001-hp\",\"yq-000002-hp\",\"yq-000003-hp\",\"yq-000004-hp\",\"yq-000005-hp\",\"yq-000006-hp\"]}}\n"))
        .collect();
    assert!(mosquitto_pub_qos(mqtt, "heating/v1/yanqing/box-burst/status", &burst, 0)?.success());
    let metrics_url = format!("http://{http}/metrics");
    let counter = |text: &str, name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (taken, lost) = eventually(
        "every message taken in or counted as lost",
        Duration::from_secs(60),
        || async {
            let text = client
                .get(&metrics_url)
                .bearer_auth(tests::OPERATOR_TOKEN)
                .send()
                .await?
                .text()
                .await?;
            let taken = counter(&text, "gateway_mqtt_messages_in_total ");
            let lost = counter(&text, "gateway_broker_messages_lost_total ");
            anyhow::ensure!(taken + lost >= BURST, "{taken} taken in, {lost} lost");
            Ok(Some((taken, lost)))
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", gateway.log()))?;
    assert_eq!(taken + lost, BURST, "{taken} taken in, {lost} lost");
    Ok(())
}
