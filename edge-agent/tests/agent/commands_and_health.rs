//! Remote commands through a real broker to a pymodbus device (write, read back, refusals,
//! duplicates, fault reset), the command log forgetting expired ids while the agent runs, and
//! the health report with an unreachable device next to a good one, and the bytes per reading
//! it reports, checked against the messages the broker delivered.

use std::net::SocketAddr;
use std::time::Duration;

use edge_agent::agent::{now_ms, Agent};
use edge_agent::command::EXPIRY_MARGIN_MS;
use edge_agent::config::AgentConfig;
use rumqttc::QoS;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const DEVICE: &str = "yq-cmd-0001";

async fn send(recorder: &Recorder, body: serde_json::Value) {
    recorder
        .client
        .publish(
            format!("heating/v1/yanqing/{DEVICE}/cmd"),
            QoS::AtLeastOnce,
            false,
            serde_json::to_vec(&body).expect("json"),
        )
        .await
        .expect("publish command");
}

async fn ack_of(recorder: &Recorder, id: &str, nth: usize) -> serde_json::Value {
    eventually(
        &format!("ack {nth} of command {id}"),
        Duration::from_secs(15),
        || {
            recorder
                .on(&format!("/{DEVICE}/cmd/ack"))
                .into_iter()
                .filter(|a| a["id"] == id)
                .nth(nth)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_are_written_read_back_refused_with_reasons_and_never_run_twice() {
    let dir = scratch("commands");
    let broker = rumqttd();
    let recorder = Recorder::start(broker, "operator", "heating/v1/#", false).await;
    let port = free_port();
    let _device = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    let devices = format!(
        "[[devices]]\nid = \"{DEVICE}\"\nprofile = \"peer-all-types\"\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:{port}\" }}\n"
    );
    let config = AgentConfig::load(&agent_config(&dir, broker, &devices, ""))
        .unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Agent::new(config).run(shutdown.clone()));
    eventually("the agent online", Duration::from_secs(20), || {
        recorder
            .on("/box-it/status")
            .iter()
            .any(|s| s["state"] == "online")
            .then_some(())
    })
    .await;
    // The agent subscribes right after it is online; wait for its first reading to be sure.
    eventually("a reading", Duration::from_secs(20), || {
        (!recorder.telemetry(DEVICE).is_empty()).then_some(())
    })
    .await;
    // An hour ahead (the default `commands.max_expiry` is 24 h): the same id must still be
    // remembered, not expired, however long the restart below takes.
    let soon = now_ms() + 3_600_000;

    send(&recorder, serde_json::json!({"v":1,"id":"set-1","expires_ms":soon,"action":"write","name":"setpoint_c","value":23.5})).await;
    let ack = ack_of(&recorder, "set-1", 0).await;
    assert_eq!(ack["status"], "done", "{ack}");
    assert_eq!(ack["read_back"], 23.5, "{ack}");
    eventually(
        "telemetry with the new set point",
        Duration::from_secs(10),
        || {
            recorder
                .telemetry(DEVICE)
                .iter()
                .any(|t| t["values"]["setpoint_c"] == 23.5)
                .then_some(())
        },
    )
    .await;

    // Same id again, with another value: answered as a duplicate, not executed.
    send(&recorder, serde_json::json!({"v":1,"id":"set-1","expires_ms":soon,"action":"write","name":"setpoint_c","value":12.0})).await;
    let duplicate = ack_of(&recorder, "set-1", 1).await;
    assert_eq!(duplicate["status"], "duplicate", "{duplicate}");
    assert_eq!(
        duplicate["read_back"], 23.5,
        "the first outcome is repeated"
    );

    send(&recorder, serde_json::json!({"v":1,"id":"hot","expires_ms":soon,"action":"write","name":"setpoint_c","value":35.0})).await;
    let refused = ack_of(&recorder, "hot", 0).await;
    assert_eq!(refused["status"], "refused");
    assert_eq!(refused["error"]["reason"], "out_of_range", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("10..=28"),
        "{refused}"
    );

    send(&recorder, serde_json::json!({"v":1,"id":"late","expires_ms":now_ms() - 3_600_000,"action":"write","name":"setpoint_c","value":20.0})).await;
    let expired = ack_of(&recorder, "late", 0).await;
    assert_eq!(expired["error"]["reason"], "expired", "{expired}");

    send(&recorder, serde_json::json!({"v":1,"id":"ro","expires_ms":soon,"action":"write","name":"indoor_temp_c","value":20.0})).await;
    assert_eq!(
        ack_of(&recorder, "ro", 0).await["error"]["reason"],
        "not_writable"
    );

    send(
        &recorder,
        serde_json::json!({"v":1,"id":"reset-1","expires_ms":soon,"action":"fault_reset"}),
    )
    .await;
    let reset = ack_of(&recorder, "reset-1", 0).await;
    assert_eq!(reset["status"], "done", "{reset}");
    assert_eq!(
        reset["fault_code_after"], 6.0,
        "pymodbus keeps its fault code: {reset}"
    );

    // Nothing but the first write changed the device.
    let last = recorder
        .telemetry(DEVICE)
        .last()
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["values"]["setpoint_c"], 23.5, "{last}");
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");

    // After a restart the executed id is still known.
    let config = AgentConfig::load(&dir.join("agent.toml")).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Agent::new(config).run(shutdown.clone()));
    eventually("the agent online again", Duration::from_secs(20), || {
        (recorder
            .on("/box-it/status")
            .iter()
            .filter(|s| s["state"] == "online")
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    let readings = recorder.telemetry(DEVICE).len();
    eventually(
        "a reading after the restart",
        Duration::from_secs(20),
        || (recorder.telemetry(DEVICE).len() > readings).then_some(()),
    )
    .await;
    send(&recorder, serde_json::json!({"v":1,"id":"set-1","expires_ms":soon,"action":"write","name":"setpoint_c","value":12.0})).await;
    assert_eq!(ack_of(&recorder, "set-1", 2).await["status"], "duplicate");
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");
}

/// Starts the agent of `dir` and waits for it to be online (the `nth` time) and reading.
async fn start_agent(
    recorder: &Recorder,
    config: &std::path::Path,
    nth: usize,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let config = AgentConfig::load(config).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Agent::new(config).run(shutdown.clone()));
    eventually("the agent online", Duration::from_secs(20), || {
        (recorder
            .on("/box-it/status")
            .iter()
            .filter(|s| s["state"] == "online")
            .count()
            >= nth)
            .then_some(())
    })
    .await;
    let readings = recorder.telemetry(DEVICE).len();
    eventually("a reading", Duration::from_secs(20), || {
        (recorder.telemetry(DEVICE).len() > readings).then_some(())
    })
    .await;
    (shutdown, task)
}

fn logged_ids(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut ids: Vec<String> = text
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|line| line["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_log_forgets_expired_ids_while_running_and_keeps_unexpired_ones() {
    let dir = scratch("command-log");
    let broker = rumqttd();
    let recorder = Recorder::start(broker, "operator", "heating/v1/#", false).await;
    let port = free_port();
    let _device = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    let devices = format!(
        "[[devices]]\nid = \"{DEVICE}\"\nprofile = \"peer-all-types\"\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:{port}\" }}\n"
    );
    let config = agent_config(&dir, broker, &devices, "");
    // A log left by an earlier run: one id long past its expiry and margin, one whose margin
    // runs out a few seconds from now, one executed and valid for another hour.
    let now = now_ms();
    let stale = now - EXPIRY_MARGIN_MS - 60_000;
    let fading = now - EXPIRY_MARGIN_MS + 3_000;
    let kept = now + 3_600_000;
    let log = dir.join("data/commands.jsonl");
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    let lines = [
        serde_json::json!({"id":"stale","device":DEVICE,"expires_ms":stale}),
        serde_json::json!({"id":"fading","device":DEVICE,"expires_ms":fading}),
        serde_json::json!({"id":"kept","device":DEVICE,"expires_ms":kept}),
        serde_json::json!({"id":"kept","device":DEVICE,"expires_ms":kept,"outcome":{
            "v":1,"id":"kept","device_id":DEVICE,"status":"done","ts_ms":now - 1_000,
            "name":"setpoint_c","requested":22.0,"read_back":22.0}}),
    ];
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, text).expect("seed the command log");

    let (shutdown, task) = start_agent(&recorder, &config, 1).await;
    // At start-up the stale id is gone from the file; the fading one is still needed.
    assert_eq!(logged_ids(&log), ["fading", "kept"]);

    // Once the fading id's margin has run out, the next command prunes it while running.
    eventually(
        "the fading id's margin to run out",
        Duration::from_secs(20),
        || (now_ms() > fading + EXPIRY_MARGIN_MS).then_some(()),
    )
    .await;
    let soon = now_ms() + 600_000;
    send(&recorder, serde_json::json!({"v":1,"id":"fresh","expires_ms":soon,"action":"write","name":"setpoint_c","value":21.0})).await;
    assert_eq!(ack_of(&recorder, "fresh", 0).await["status"], "done");
    // Replayed, the forgotten command is refused as expired (still not run); the unexpired
    // one is refused as a duplicate with its first outcome.
    send(&recorder, serde_json::json!({"v":1,"id":"fading","expires_ms":fading,"action":"write","name":"setpoint_c","value":12.0})).await;
    let replay = ack_of(&recorder, "fading", 0).await;
    assert_eq!(replay["status"], "refused", "{replay}");
    assert_eq!(replay["error"]["reason"], "expired", "{replay}");
    send(&recorder, serde_json::json!({"v":1,"id":"kept","expires_ms":kept,"action":"write","name":"setpoint_c","value":12.0})).await;
    let duplicate = ack_of(&recorder, "kept", 0).await;
    assert_eq!(duplicate["status"], "duplicate", "{duplicate}");
    assert_eq!(duplicate["read_back"], 22.0, "{duplicate}");
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");

    // After a restart: the file holds only what is needed, and both executed ids stay refused.
    let (shutdown, task) = start_agent(&recorder, &config, 2).await;
    assert_eq!(logged_ids(&log), ["fresh", "kept"]);
    send(&recorder, serde_json::json!({"v":1,"id":"kept","expires_ms":kept,"action":"write","name":"setpoint_c","value":12.0})).await;
    assert_eq!(ack_of(&recorder, "kept", 1).await["status"], "duplicate");
    send(&recorder, serde_json::json!({"v":1,"id":"fresh","expires_ms":soon,"action":"write","name":"setpoint_c","value":12.0})).await;
    assert_eq!(ack_of(&recorder, "fresh", 1).await["status"], "duplicate");
    // Nothing but "fresh" ever wrote the device.
    eventually(
        "a reading after the replays",
        Duration::from_secs(10),
        || {
            recorder
                .telemetry(DEVICE)
                .last()
                .filter(|t| t["values"]["setpoint_c"] == 21.0)
                .map(|_| ())
        },
    )
    .await;
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_device_is_reported_while_the_other_keeps_publishing() {
    let dir = scratch("unreachable");
    let broker = rumqttd();
    let recorder = Recorder::start(broker, "watcher", "heating/v1/#", false).await;
    let port = free_port();
    let _device = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let devices = format!(
        "[[devices]]\nid = \"yq-good\"\nprofile = \"peer-all-types\"\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:{port}\" }}\n\n[[devices]]\nid = \"yq-dead\"\nprofile = \"peer-all-types\"\ntransport = {{ type = \"tcp\", address = \"{dead}\" }}\n"
    );
    let config = AgentConfig::load(&agent_config(&dir, broker, &devices, ""))
        .unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Agent::new(config).run(shutdown.clone()));

    // The good device may still be "unknown" in the first reports (not polled yet): wait for
    // one that shows both, the dead device unreachable and the good one ok.
    let health = eventually(
        "a health report naming the dead device unreachable and the good one ok",
        Duration::from_secs(20),
        || {
            recorder.on("/box-it/health").into_iter().find(|h| {
                h["devices"]["yq-dead"]["state"] == "unreachable"
                    && h["devices"]["yq-good"]["state"] == "ok"
            })
        },
    )
    .await;
    assert!(
        health["devices"]["yq-dead"]["errors"]["connect"].as_u64() >= Some(3),
        "{health}"
    );
    assert!(health["polls"]["failed"].as_u64() >= Some(3), "{health}");
    assert!(health["queue"]["depth"].is_u64(), "{health}");
    assert!(health["mqtt"]["bytes_sent"].as_u64() > Some(0), "{health}");
    let status = eventually(
        "the retained status listing it",
        Duration::from_secs(10),
        || {
            recorder
                .on("/box-it/status")
                .into_iter()
                .find(|s| s["unreachable"] == serde_json::json!(["yq-dead"]))
        },
    )
    .await;
    assert_eq!(status["state"], "online");
    // The good device is never held up by the dead one: it keeps publishing, each reading
    // newer than the last, while its neighbour stays unreachable and silent.
    let good = eventually(
        "ten readings from the good device",
        Duration::from_secs(20),
        || Some(recorder.telemetry("yq-good")).filter(|good| good.len() >= 10),
    )
    .await;
    let times: Vec<i64> = good
        .iter()
        .map(|t| t["ts_ms"].as_i64().expect("ts_ms"))
        .collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    assert!(recorder.telemetry("yq-dead").is_empty());
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");
}

/// Bytes of the MQTT PUBLISH packet (QoS 1) a message of `topic` and `payload` takes.
fn publish_size(topic: &str, payload: &[u8]) -> u64 {
    let mut publish = rumqttc::Publish::new(topic, QoS::AtLeastOnce, payload.to_vec());
    publish.pkid = 1;
    publish.size() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_report_gives_the_bytes_per_reading_the_broker_delivered() {
    let dir = scratch("bytes-per-reading");
    let broker = rumqttd();
    let recorder = Recorder::start(broker, "metering", "heating/v1/#", false).await;
    let port = free_port();
    let _device = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    let devices = format!(
        "[[devices]]\nid = \"{DEVICE}\"\nprofile = \"peer-all-types\"\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:{port}\" }}\n"
    );
    let config = AgentConfig::load(&agent_config(&dir, broker, &devices, ""))
        .unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Agent::new(config).run(shutdown.clone()));

    let health = eventually(
        "a health report counting at least three readings sent",
        Duration::from_secs(20),
        || {
            recorder
                .on("/box-it/health")
                .into_iter()
                .find(|h| h["mqtt"]["readings_sent"].as_u64() >= Some(3))
        },
    )
    .await;
    let mqtt = &health["mqtt"];
    let sent = mqtt["readings_sent"].as_u64().expect("readings_sent");
    let bytes = mqtt["reading_bytes"].as_u64().expect("reading_bytes");
    let per_reading = mqtt["bytes_per_reading"]
        .as_f64()
        .expect("bytes_per_reading");
    assert_eq!(
        per_reading,
        (bytes as f64 / sent as f64 * 10.0).round() / 10.0,
        "{health}"
    );
    // One session, one publisher: the broker delivers the readings in the order they were
    // handed over, so the first `sent` delivered are exactly those the report counted.
    let delivered = eventually(
        "the counted readings delivered",
        Duration::from_secs(20),
        || {
            let telemetry: Vec<_> = recorder
                .messages()
                .into_iter()
                .filter(|m| m.topic.ends_with("/telemetry"))
                .collect();
            (telemetry.len() as u64 >= sent).then_some(telemetry)
        },
    )
    .await;
    let measured: u64 = delivered
        .iter()
        .take(sent as usize)
        .map(|m| publish_size(&m.topic, &m.payload))
        .sum();
    assert_eq!(measured, bytes, "{health}");
    assert!(per_reading > 100.0, "{health}");
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");
}
