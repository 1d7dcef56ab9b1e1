//! Store-and-forward against real brokers: rumqttd behind a link we cut, Debian's mosquitto
//! stopped and restarted, and the agent binary killed with SIGKILL mid-traffic. Every reading
//! polled must arrive, per device in a gap-free run of `seq`, with duplicates recognisable.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use edge_agent::agent::{now_ms, Agent};
use edge_agent::config::AgentConfig;
use tokio_util::sync::CancellationToken;

use crate::support::*;

const TCP_DEVICES: [&str; 2] = ["yq-tcp-0001", "yq-tcp-0002"];

/// pymodbus serving units 1 and 2 over TCP; returns the peer and its address.
fn tcp_devices(dir: &Path) -> (Peer, SocketAddr) {
    let port = free_port();
    let mut second = all_types_values();
    second.insert("indoor_temp_c", 18.0);
    let peer = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(dir, 1, &all_types_profile(), &all_types_values()),
        "--device".into(),
        device_arg(dir, 2, &all_types_profile(), &second),
    ]);
    (peer, format!("127.0.0.1:{port}").parse().expect("addr"))
}

fn tcp_device_toml(address: SocketAddr) -> String {
    TCP_DEVICES
        .iter()
        .enumerate()
        .map(|(i, id)| {
            format!(
                "[[devices]]\nid = \"{id}\"\nprofile = \"peer-all-types\"\nunit_id = {}\ntransport = {{ type = \"tcp\", address = \"{address}\" }}\n\n",
                i + 1
            )
        })
        .collect()
}

/// Readings of `device` whose event time lies in `[from, to)`, in arrival order (first
/// arrivals only).
fn arrivals_between(received: &[serde_json::Value], from: i64, to: i64) -> Vec<u64> {
    let mut seen = BTreeSet::new();
    received
        .iter()
        .filter(|m| (from..to).contains(&m["ts_ms"].as_i64().unwrap_or(0)))
        .filter_map(|m| m["seq"].as_u64())
        .filter(|seq| seen.insert(*seq))
        .collect()
}

fn count_at_least(recorder: &Recorder, devices: &[&str], n: usize) -> Option<()> {
    devices
        .iter()
        .all(|d| recorder.telemetry(d).len() >= n)
        .then_some(())
}

/// Waits until every device has delivered a reading polled after `after_ms`.
async fn caught_up(recorder: &Recorder, devices: &[&str], after_ms: i64, limit: Duration) {
    eventually("readings polled after the outage", limit, || {
        devices
            .iter()
            .all(|d| {
                recorder
                    .telemetry(d)
                    .iter()
                    .any(|m| m["ts_ms"].as_i64().unwrap_or(0) > after_ms)
            })
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtu_and_tcp_devices_lose_nothing_while_our_broker_is_unreachable() {
    let dir = scratch("outage-rumqttd");
    let broker = rumqttd();
    let proxy = Proxy::start(broker).await;
    let recorder = Recorder::start(broker, "recorder-outage", "heating/v1/#", false).await;
    let (_tcp, address) = tcp_devices(&dir);
    let (_socat, agent_end, device_end) = pty_pair(&dir);
    let mut rtu_values = all_types_values();
    rtu_values.insert("indoor_temp_c", 22.5);
    let _rtu = pymodbus(&[
        "--rtu".into(),
        device_end.display().to_string(),
        "--baud".into(),
        "38400".into(),
        "--device".into(),
        device_arg(&dir, 5, &all_types_profile(), &rtu_values),
    ]);
    let devices = format!(
        "{}[[buses]]\nname = \"rs485-1\"\nport = \"{}\"\nbaud = 38400\ntimeout = \"1s\"\npause = \"5ms\"\n\n[[devices]]\nid = \"yq-rtu-0005\"\nprofile = \"peer-all-types\"\nunit_id = 5\ntransport = {{ type = \"rtu\", bus = \"rs485-1\" }}\n",
        tcp_device_toml(address),
        agent_end.display()
    );
    let config = AgentConfig::load(&agent_config(&dir, proxy.address, &devices, ""))
        .unwrap_or_else(|e| panic!("{e}"));
    let agent = Agent::new(config);
    let health = agent.device_health();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run(shutdown.clone()));
    let all = ["yq-tcp-0001", "yq-tcp-0002", "yq-rtu-0005"];

    eventually(
        "five readings from every device",
        Duration::from_secs(30),
        || count_at_least(&recorder, &all, 5),
    )
    .await;
    let rtu = recorder.telemetry("yq-rtu-0005");
    assert_eq!(rtu[0]["values"]["indoor_temp_c"], 22.5, "{}", rtu[0]);
    // The profile's vendor values travel beside the canonical ones, in a reading the gateway's
    // validation accepts.
    let cop = rtu[0]["values"]["x_cop"].as_f64();
    assert!(cop.is_some_and(|v| (v - 3.25).abs() < 1e-9), "{}", rtu[0]);
    assert_eq!(rtu[0]["values"]["x_pump_on"], 1.0, "{}", rtu[0]);
    let published = serde_json::to_vec(&rtu[0]).expect("json");
    let reading = wire::Telemetry::from_json(&published).expect("telemetry");
    assert_eq!(reading.validate(now_ms(), 60_000), Ok(()));
    assert_eq!(
        recorder.telemetry("yq-tcp-0002")[0]["values"]["indoor_temp_c"],
        18.0
    );

    proxy.down();
    let down_ms = now_ms();
    // Count per device, from past `down_ms + 200` (where the outage window checked below
    // starts): five more good polls of each device, the slow RTU one included, leave at least
    // four readings of each polled inside the window (at most one poll was begun before).
    eventually("200 ms into the outage", Duration::from_secs(10), || {
        (now_ms() > down_ms + 200).then_some(())
    })
    .await;
    let polls = || {
        health
            .iter()
            .map(|h| h.figures().polls_ok)
            .collect::<Vec<u64>>()
    };
    let before = polls();
    eventually(
        "five polls of every device while the broker is unreachable",
        Duration::from_secs(30),
        || {
            polls()
                .iter()
                .zip(&before)
                .all(|(now, then)| *now >= then + 5)
                .then_some(())
        },
    )
    .await;
    let up_ms = now_ms();
    proxy.up();
    caught_up(&recorder, &all, up_ms + 500, Duration::from_secs(30)).await;

    for device in all {
        let received = recorder.telemetry(device);
        let (distinct, duplicates) = check_no_loss(device, &received);
        let during = arrivals_between(&received, down_ms + 200, up_ms);
        assert!(
            during.len() >= 3,
            "{device}: {} readings from the outage",
            during.len()
        );
        assert!(
            during.windows(2).all(|w| w[0] < w[1]),
            "{device}: outage replayed out of order: {during:?}"
        );
        assert!(distinct > during.len() + 5, "{device}");
        assert!(duplicates < distinct, "{device}");
    }
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_stopped_and_restarted_loses_no_reading() {
    let dir = scratch("outage-mosquitto");
    let port = free_port();
    let mut mosquitto_peer = mosquitto(&dir, port, "");
    let broker: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let recorder = Recorder::start(
        broker,
        "recorder-mosquitto",
        "heating/v1/+/+/telemetry",
        true,
    )
    .await;
    let (_tcp, address) = tcp_devices(&dir);
    let config = AgentConfig::load(&agent_config(&dir, broker, &tcp_device_toml(address), ""))
        .unwrap_or_else(|e| panic!("{e}"));
    let agent = Agent::new(config);
    let mqtt = agent.mqtt_counters();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(agent.run(shutdown.clone()));
    eventually(
        "readings through mosquitto",
        Duration::from_secs(20),
        || count_at_least(&recorder, &TCP_DEVICES, 5),
    )
    .await;

    mosquitto_peer.terminate();
    let down_ms = now_ms();
    eventually(
        "the agent notices the broker is gone",
        Duration::from_secs(20),
        || (!mqtt.connected.load(Ordering::SeqCst)).then_some(()),
    )
    .await;
    // Keep polling into the queue for a while with the broker down.
    eventually("two seconds of outage", Duration::from_secs(10), || {
        (now_ms() - down_ms > 2000).then_some(())
    })
    .await;
    let up_ms = now_ms();
    let _restarted = mosquitto(&dir, port, "");
    caught_up(
        &recorder,
        &TCP_DEVICES,
        up_ms + 500,
        Duration::from_secs(40),
    )
    .await;
    assert!(mqtt.reconnects.load(Ordering::SeqCst) >= 1);
    for device in TCP_DEVICES {
        let received = recorder.telemetry(device);
        check_no_loss(device, &received);
        let during = arrivals_between(&received, down_ms + 200, up_ms);
        assert!(
            during.len() >= 5,
            "{device}: {} readings from the outage",
            during.len()
        );
        assert!(
            during.windows(2).all(|w| w[0] < w[1]),
            "{device}: {during:?}"
        );
    }
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");
}

/// Bytes of the queue's segment files.
fn queue_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir.join("data/queue"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().to_string_lossy().ends_with(".seg"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_traffic_then_restart_keeps_the_queue_and_resends_nothing_as_new() {
    let dir = scratch("kill9");
    let broker = rumqttd();
    let proxy = Proxy::start(broker).await;
    let recorder =
        Recorder::start(broker, "recorder-kill9", "heating/v1/+/+/telemetry", false).await;
    let (_tcp, address) = tcp_devices(&dir);
    let config = agent_config(&dir, proxy.address, &tcp_device_toml(address), "");
    let mut agent = agent_process(&config);
    eventually(
        "readings from the agent binary",
        Duration::from_secs(30),
        || count_at_least(&recorder, &TCP_DEVICES, 10),
    )
    .await;

    // Build a backlog with the link cut, then kill -9 while it polls and writes.
    proxy.down();
    let backlog_from = queue_bytes(&dir);
    eventually("a backlog on disk", Duration::from_secs(20), || {
        (queue_bytes(&dir) > backlog_from + 8 * 1024).then_some(())
    })
    .await;
    agent.kill9();
    let killed_ms = now_ms();
    let last_before: BTreeMap<&str, u64> = TCP_DEVICES
        .iter()
        .map(|d| {
            (
                *d,
                recorder
                    .telemetry(d)
                    .iter()
                    .filter_map(|m| m["seq"].as_u64())
                    .max()
                    .unwrap_or(0),
            )
        })
        .collect();

    proxy.up();
    let _restarted = agent_process(&config);
    caught_up(
        &recorder,
        &TCP_DEVICES,
        killed_ms + 1000,
        Duration::from_secs(40),
    )
    .await;
    let max_seq = |device: &str| {
        recorder
            .telemetry(device)
            .iter()
            .filter_map(|m| m["seq"].as_u64())
            .max()
            .unwrap_or(0)
    };
    eventually(
        "seq to go on after the restart, past the backlog",
        Duration::from_secs(40),
        || {
            TCP_DEVICES
                .iter()
                .all(|d| max_seq(d) > last_before[d] + 10)
                .then_some(())
        },
    )
    .await;
    for device in TCP_DEVICES {
        let received = recorder.telemetry(device);
        let (distinct, duplicates) = check_no_loss(device, &received);
        // Readings acknowledged before the kill come back at most as recognisable duplicates
        // (same seq, same content: checked above), a few at most.
        assert!(
            duplicates <= distinct / 4,
            "{device}: {duplicates} duplicates of {distinct}"
        );
    }
    let log = std::fs::read_to_string(config.with_extension("log")).unwrap_or_default();
    assert!(log.contains("store-and-forward queue opened"), "{log}");
}
