//! A shared RS-485 bus against pymodbus on a socat pty pair: one dead slave among three does not
//! hold up the other two (its circuit breaker opens, its timeouts keep the port open, a
//! half-open probe brings it back), adaptive polling gives a faulty unit a shorter period and a
//! quiet one a longer one, and the bus's utilisation is in the health report.

use std::time::Duration;

use edge_agent::agent::Agent;
use edge_agent::config::AgentConfig;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// The poll period of every device on the bus.
const PERIOD_MS: f64 = 300.0;

/// Mean period between a device's readings (event time), milliseconds.
fn mean_period_ms(readings: &[serde_json::Value]) -> f64 {
    let times: Vec<i64> = readings
        .iter()
        .map(|t| t["ts_ms"].as_i64().expect("ts_ms"))
        .collect();
    let (Some(first), Some(last)) = (times.first(), times.last()) else {
        return f64::NAN;
    };
    (last - first) as f64 / (times.len() - 1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_slave_among_three_on_one_bus_leaves_the_others_their_period_and_a_probe_brings_it_back(
) {
    let dir = scratch("rs485-dead-slave");
    let (_socat, agent_end, device_end) = pty_pair(&dir);
    // Unit 3 is a dead slave: it never answers while this file exists.
    let dead_flag = dir.join("unit-3-is-dead");
    std::fs::write(&dead_flag, "").expect("flag");
    let _server = pymodbus(&[
        "--rtu".into(),
        device_end.display().to_string(),
        "--baud".into(),
        "19200".into(),
        "--parity".into(),
        "N".into(),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
        "--device".into(),
        device_arg(&dir, 2, &all_types_profile(), &all_types_values()),
        "--device".into(),
        device_arg(&dir, 3, &all_types_profile(), &all_types_values()),
        "--dead-while".into(),
        format!("3:{}", dead_flag.display()),
    ]);
    let broker = rumqttd();
    let recorder = Recorder::start(broker, "watcher", "heating/v1/#", false).await;
    // A timeout longer than the period: without a breaker the dead slave alone would need more
    // bus time than there is, and every device on the bus would fall behind its period.
    let mut devices = format!(
        "[[buses]]\nname = \"rs485-1\"\nport = \"{}\"\nbaud = 19200\ntimeout = \"400ms\"\nwarm_up = \"100ms\"\n\n",
        agent_end.display()
    );
    for (unit, id) in [(1, "yq-bus-1"), (2, "yq-bus-2"), (3, "yq-bus-dead")] {
        devices.push_str(&format!(
            "[[devices]]\nid = \"{id}\"\nprofile = \"peer-all-types\"\nunit_id = {unit}\ninterval = \"{PERIOD_MS}ms\"\ntransport = {{ type = \"rtu\", bus = \"rs485-1\" }}\n\n"
        ));
    }
    let path = agent_config(&dir, broker, &devices, "");
    let text = std::fs::read_to_string(&path).expect("config").replace(
        "timeout = \"500ms\"\n",
        "timeout = \"500ms\"\nmax_retry_backoff = \"2s\"\n",
    );
    std::fs::write(&path, text).expect("config");
    let config = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Agent::new(config).run(shutdown.clone()));

    // The dead slave's breaker opens after three unanswered cycles; its neighbours are fine.
    let opened = eventually(
        "a health report with the dead slave's breaker open and both others ok",
        Duration::from_secs(30),
        || {
            recorder.on("/box-it/health").into_iter().find(|h| {
                let dead = &h["devices"]["yq-bus-dead"];
                dead["state"] == "unreachable"
                    && dead["breaker"] != "closed"
                    && h["devices"]["yq-bus-1"]["state"] == "ok"
                    && h["devices"]["yq-bus-2"]["state"] == "ok"
            })
        },
    )
    .await;
    let timeouts_at_open = opened["devices"]["yq-bus-dead"]["errors"]["timeout"]
        .as_u64()
        .expect("timeouts counted");
    assert!(timeouts_at_open >= 3, "{opened}");
    let opens_at_open = opened["buses"]["rs485-1"]["port_opens"]
        .as_u64()
        .expect("port opens");
    let reports_before = recorder.on("/box-it/health").len();

    // From now on the good devices keep their period: count twelve more readings of each.
    let start: Vec<usize> = ["yq-bus-1", "yq-bus-2"]
        .iter()
        .map(|d| recorder.telemetry(d).len())
        .collect();
    let windows = eventually(
        "twelve more readings of each good device",
        Duration::from_secs(30),
        || {
            let windows: Vec<Vec<serde_json::Value>> = ["yq-bus-1", "yq-bus-2"]
                .iter()
                .zip(&start)
                .map(|(d, from)| recorder.telemetry(d).split_off(*from))
                .collect();
            windows.iter().all(|w| w.len() >= 12).then_some(windows)
        },
    )
    .await;
    // Up to 30 % late on a loaded test machine; without the breaker they fall further behind
    // on a quiet one (measured 436 ms), and the count of timeouts below tells it regardless.
    for (device, window) in ["yq-bus-1", "yq-bus-2"].iter().zip(&windows) {
        let mean = mean_period_ms(window);
        assert!(
            (PERIOD_MS * 0.85..=PERIOD_MS * 1.3).contains(&mean),
            "{device}: mean period {mean:.0} ms over {} readings, configured {PERIOD_MS} ms",
            window.len()
        );
    }
    // The dead slave was tried only at its breaker's probes: a few times in those ~3.6 s,
    // where polling it on its period would have cost a timeout every cycle (9 or more).
    let report = eventually("a later health report", Duration::from_secs(10), || {
        let reports = recorder.on("/box-it/health");
        (reports.len() > reports_before).then(|| reports.last().cloned())?
    })
    .await;
    let timeouts = report["devices"]["yq-bus-dead"]["errors"]["timeout"]
        .as_u64()
        .expect("timeouts");
    let while_open = timeouts.saturating_sub(timeouts_at_open);
    assert!(
        while_open <= 5,
        "{while_open} timeouts while the breaker was open: {report}"
    );
    // A silent slave is not a broken port: no reopening (and no warm-up) for its timeouts.
    let bus = &report["buses"]["rs485-1"];
    assert_eq!(bus["port_opens"].as_u64(), Some(opens_at_open), "{report}");
    // 19200 baud 8N1: 10 bits a character, 3.5 characters = 1.823 ms.
    assert_eq!(bus["gap_ms"].as_f64(), Some(1.823), "{report}");
    let utilisation = bus["utilisation"].as_f64().expect("utilisation");
    assert!(
        utilisation > 0.0 && utilisation <= 1.0,
        "bus utilisation {utilisation}: {report}"
    );
    assert!(bus["requests"].as_u64() > Some(24), "{report}");
    assert!(bus["timeouts"].as_u64() >= Some(timeouts), "{report}");
    for device in ["yq-bus-1", "yq-bus-2"] {
        let figures = &report["devices"][device];
        assert_eq!(figures["breaker"], "closed", "{report}");
        assert_eq!(figures["interval_ms"].as_u64(), Some(300), "{report}");
        assert_eq!(
            figures["consecutive_failures"].as_u64(),
            Some(0),
            "{report}"
        );
    }
    assert!(recorder.telemetry("yq-bus-dead").is_empty());

    // The slave comes back: a half-open probe finds it and it is polled again.
    std::fs::remove_file(&dead_flag).expect("revive unit 3");
    eventually(
        "readings of the revived slave",
        Duration::from_secs(15),
        || (recorder.telemetry("yq-bus-dead").len() >= 3).then_some(()),
    )
    .await;
    let revived = eventually(
        "a health report with the revived slave ok and its breaker closed",
        Duration::from_secs(10),
        || {
            recorder.on("/box-it/health").into_iter().find(|h| {
                h["devices"]["yq-bus-dead"]["state"] == "ok"
                    && h["devices"]["yq-bus-dead"]["breaker"] == "closed"
            })
        },
    )
    .await;
    assert!(
        revived["devices"]["yq-bus-dead"]["polls_ok"].as_u64() >= Some(1),
        "{revived}"
    );
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_polling_speeds_up_a_faulty_unit_and_slows_down_a_quiet_one_on_the_same_bus() {
    let dir = scratch("rs485-adaptive");
    let (_socat, agent_end, device_end) = pty_pair(&dir);
    // Unit 1 reports fault code 6 (a sensor fault in the profile); unit 2 is healthy and steady.
    let mut quiet = all_types_values();
    quiet.insert("fault_code", 0.0);
    let _server = pymodbus(&[
        "--rtu".into(),
        device_end.display().to_string(),
        "--baud".into(),
        "38400".into(),
        "--parity".into(),
        "N".into(),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
        "--device".into(),
        device_arg(&dir, 2, &all_types_profile(), &quiet),
    ]);
    let broker = rumqttd();
    let recorder = Recorder::start(broker, "watcher", "heating/v1/#", false).await;
    let devices = format!(
        "[[buses]]\nname = \"rs485-1\"\nport = \"{}\"\nbaud = 38400\ntimeout = \"500ms\"\n\n\
         [[devices]]\nid = \"yq-faulty\"\nprofile = \"peer-all-types\"\nunit_id = 1\ninterval = \"400ms\"\ntransport = {{ type = \"rtu\", bus = \"rs485-1\" }}\n\n\
         [[devices]]\nid = \"yq-quiet\"\nprofile = \"peer-all-types\"\nunit_id = 2\ninterval = \"400ms\"\ntransport = {{ type = \"rtu\", bus = \"rs485-1\" }}\n",
        agent_end.display()
    );
    let path = agent_config(&dir, broker, &devices, "");
    let text = std::fs::read_to_string(&path).expect("config").replace(
        "\n[queue]",
        "\n[polling.adaptive]\nenabled = true\nmin_interval = \"200ms\"\nmax_interval = \"1600ms\"\nquiet_cycles = 2\n\n[queue]",
    );
    std::fs::write(&path, text).expect("config");
    let config = AgentConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Agent::new(config).run(shutdown.clone()));

    // The quiet unit doubles every two quiet cycles: 400, 800, then the 1600 ms cap.
    let report = eventually(
        "a health report with the faulty unit at the minimum and the quiet one at the maximum",
        Duration::from_secs(30),
        || {
            recorder.on("/box-it/health").into_iter().find(|h| {
                h["devices"]["yq-faulty"]["interval_ms"] == 200
                    && h["devices"]["yq-quiet"]["interval_ms"] == 1600
            })
        },
    )
    .await;
    assert!(
        report["buses"]["rs485-1"]["utilisation"].as_f64() > Some(0.0),
        "{report}"
    );
    // The readings follow: ten more of the faulty unit come at its 200 ms period, while the
    // quiet one sends at most two in the same time.
    let (faulty_from, quiet_from) = (
        recorder.telemetry("yq-faulty").len(),
        recorder.telemetry("yq-quiet").len(),
    );
    let faulty = eventually(
        "ten more readings of the faulty unit",
        Duration::from_secs(20),
        || Some(recorder.telemetry("yq-faulty").split_off(faulty_from)).filter(|r| r.len() >= 10),
    )
    .await;
    let quiet_since = recorder.telemetry("yq-quiet").len() - quiet_from;
    let mean = mean_period_ms(&faulty);
    assert!(
        (170.0..=280.0).contains(&mean),
        "faulty unit: mean period {mean:.0} ms"
    );
    assert!(
        quiet_since <= 2,
        "quiet unit: {quiet_since} readings in {:.0} ms",
        mean * 9.0
    );
    assert!(faulty.iter().all(|t| t["fault"].is_object()), "{faulty:?}");
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");
}
