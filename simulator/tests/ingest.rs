//! `simulator bench ingest` end to end: the same pre-built readings through Debian's mosquitto
//! (installed on the machine, `apt-get install mosquitto`) and through the real `gateway`
//! process with its InfluxDB sink writing to VictoriaMetrics (`apt-get install
//! victoria-metrics`), with latency probes, in runs of alternating order. The gateway
//! executable is taken from `HEATING_BIN_DIR` or the target folder these tests were built into,
//! and built with cargo if it is missing.

mod common;

use std::time::Duration;

use simulator::bench::ingest::{run_ingest, IngestOptions, IngestReport, Qos, RunReport, Target};

use common::gateway_bin;

fn run(options: IngestOptions) -> IngestReport {
    common::run_bench(
        "the ingest bench",
        Duration::from_secs(300),
        run_ingest(options),
    )
}

/// What every run of the first test must show: the same load through both targets, nothing
/// lost, history written, every probe answered, a valid verdict.
fn check_run_with_history(report: &IngestReport, run: &RunReport) {
    let relay = &run.mosquitto;
    assert_eq!(
        relay.sent, report.messages,
        "every reading was sent to mosquitto"
    );
    assert_eq!(
        relay.received, relay.sent,
        "mosquitto relayed every reading"
    );
    assert_eq!(relay.lost, 0);
    assert!(relay.complete);
    assert!(relay.rate_per_s > 0.0);
    assert_eq!(relay.unacknowledged, 0);

    let gateway = &run.gateway;
    assert_eq!(
        gateway.sent, report.messages,
        "the same readings went to the gateway"
    );
    assert!(
        gateway.complete,
        "the gateway handled everything: {gateway:?}"
    );
    assert_eq!(gateway.handled, gateway.sent + gateway.probe_readings);
    assert_eq!(
        gateway.accepted, gateway.handled,
        "no rejects: {:?}",
        gateway.rejected
    );
    assert!(gateway.rejected.is_empty(), "{:?}", gateway.rejected);
    assert_eq!(gateway.missing, 0);
    assert_eq!(gateway.broker_messages_lost, 0);
    assert!(
        gateway.seconds >= gateway.handled_seconds && gateway.handled_seconds > 0.0,
        "the clock runs until the load is handled, then written: {gateway:?}"
    );
    let rate = gateway.sent as f64 / gateway.seconds;
    assert!(
        (gateway.rate_per_s - rate).abs() < 1e-6 * rate,
        "the rate counts load readings only: {gateway:?}"
    );
    assert_eq!(gateway.devices_held, 205);
    assert!(gateway.rss_kib.is_some_and(|kib| kib > 0), "{gateway:?}");
    assert!(gateway.hwm_kib >= gateway.rss_kib);
    let sink = gateway.sink.as_ref().expect("the sink ran");
    assert!(sink.settled, "{sink:?}");
    assert_eq!(sink.points_buffered, 0);
    assert!(
        sink.points_written >= gateway.accepted && sink.points_written >= sink.points_handed_over,
        "a point per reading at least: {sink:?}"
    );
    assert!(sink.points_dropped.is_empty(), "{sink:?}");

    let latency = &run.latency;
    assert!(latency.samples > 0, "{latency:?}");
    assert_eq!(latency.timeouts, 0, "every fault reading fired an alert");
    assert!(latency.p50_ms.is_some_and(|ms| ms > 0.0));
    assert!(latency.p99_ms >= latency.p50_ms && latency.max_ms >= latency.p99_ms);
    assert!(
        gateway.alerts_fired >= latency.samples,
        "each sample is a fired alert"
    );
    assert!(run.ratio.is_some_and(|r| r > 0.0));
    assert!(
        run.verdict.valid && run.verdict.with_history,
        "{}",
        run.verdict
    );
    assert_eq!(run.target_met, run.ratio.map(|r| r >= 1.0));
}

#[test]
fn runs_alternate_the_targets_and_a_clean_run_with_history_is_valid() {
    let mut options = IngestOptions::new(200, gateway_bin()).expect("options");
    options.rounds = 2;
    options.probes = 5;
    options.probe_interval = Duration::from_millis(200);
    options.qos = Qos::AtLeastOnce;
    options.repeat = 2;
    let report = run(options);
    println!("{}", report.table());

    assert_eq!(report.devices, 200);
    assert!(
        report.messages >= 390,
        "about one reading per device and round: {}",
        report.messages
    );
    assert_eq!(report.repeat, 2);
    assert!(report.with_history);
    let orders: Vec<[Target; 2]> = report.runs.iter().map(|run| run.order).collect();
    assert_eq!(
        orders,
        vec![
            [Target::Mosquitto, Target::Gateway],
            [Target::Gateway, Target::Mosquitto]
        ],
        "the order alternates"
    );
    let numbers: Vec<usize> = report.runs.iter().map(|run| run.run).collect();
    assert_eq!(numbers, vec![1, 2]);
    for run in &report.runs {
        check_run_with_history(&report, run);
    }
    let ratios: Vec<f64> = report.runs.iter().filter_map(|run| run.ratio).collect();
    assert_eq!(
        report.median_ratio,
        Some((ratios[0] + ratios[1]) / 2.0),
        "the median of two runs"
    );
    assert!(report.verdict.valid, "{}", report.verdict);
    assert_eq!(report.target_met, report.median_ratio.map(|r| r >= 1.0));
    assert!(report.load_generator_hwm_kib.is_some_and(|kib| kib > 0));

    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(
        json["runs"][0]["order"],
        serde_json::json!(["mosquitto", "gateway"])
    );
    assert_eq!(
        json["runs"][1]["order"],
        serde_json::json!(["gateway", "mosquitto"])
    );
    assert_eq!(json["verdict"]["valid"], serde_json::json!(true));
    assert!(json["median_ratio"].is_number(), "{json}");
    let table = report.table();
    assert!(
        table.contains("run 1 of 2: mosquitto, then gateway"),
        "{table}"
    );
    assert!(
        table.contains("run 2 of 2: gateway, then mosquitto"),
        "{table}"
    );
    assert!(table.contains("verdict: valid"), "{table}");
}

#[test]
fn boxes_serving_several_devices_publish_each_on_its_own_topic_to_both_targets() {
    let mut options = IngestOptions::new(120, gateway_bin()).expect("options");
    options.devices_per_box = 8;
    // Not the other test's seed: the temporary work folder is named by process and seed.
    options.seed = 2;
    options.rounds = 2;
    options.probes = 2;
    options.probe_interval = Duration::from_millis(200);
    options.sink = false;
    options.repeat = 1;
    let report = run(options);
    println!("{}", report.table());

    assert_eq!(report.devices, 120);
    assert_eq!(report.devices_per_box, 8);
    assert!(
        report.boxes >= 15 && report.boxes < 120,
        "devices grouped into boxes: {}",
        report.boxes
    );
    assert!(report.messages >= 235, "{}", report.messages);
    assert_eq!(report.runs.len(), 1);
    let run = &report.runs[0];
    let relay = &run.mosquitto;
    assert_eq!(relay.sent, report.messages);
    assert_eq!(
        relay.received, relay.sent,
        "mosquitto relayed every reading"
    );
    assert!(relay.complete);
    let gateway = &run.gateway;
    assert_eq!(gateway.sent, report.messages);
    assert!(gateway.complete, "{gateway:?}");
    assert_eq!(gateway.handled, gateway.sent + gateway.probe_readings);
    assert_eq!(
        gateway.accepted, gateway.handled,
        "no rejects: {:?}",
        gateway.rejected
    );
    assert_eq!(gateway.devices_held, 122);
    assert_eq!(gateway.boxes_connected, report.boxes + 2);
    assert!(
        gateway.messages_in >= (report.boxes + 2) as u64 + gateway.handled,
        "one status per box and every reading: {gateway:?}"
    );
    assert!(gateway.sink.is_none());
    assert_eq!(
        gateway.seconds, gateway.handled_seconds,
        "without the sink the clock stops when the load is handled"
    );
    assert!(run.latency.samples > 0, "{:?}", run.latency);
    assert_eq!(run.latency.timeouts, 0);

    // Without the sink: valid, but marked as a comparison without history.
    assert!(!report.with_history);
    assert!(run.verdict.valid, "{}", run.verdict);
    assert!(!run.verdict.with_history && !report.verdict.with_history);
    assert_eq!(report.verdict.to_string(), "valid (without history)");
    let table = report.table();
    assert!(
        table.contains(&format!(
            "120 devices in {} edge boxes (up to 8 devices per box)",
            report.boxes
        )),
        "{table}"
    );
    assert!(table.contains("WITHOUT HISTORY"), "{table}");
    assert!(table.contains("without history"), "{table}");
}
