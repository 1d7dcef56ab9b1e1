//! `simulator bench ingest` end to end: the same pre-built readings through Debian's mosquitto
//! (installed on the machine, `apt-get install mosquitto`) and through the real `gateway`
//! process with its InfluxDB sink writing to VictoriaMetrics (`apt-get install
//! victoria-metrics`), with latency probes. The gateway executable is taken from
//! `HEATING_BIN_DIR` or the target folder these tests were built into, and built with cargo if
//! it is missing.

mod common;

use std::time::Duration;

use simulator::bench::ingest::{run_ingest, IngestOptions, IngestReport, Qos};

use common::gateway_bin;

fn run(options: IngestOptions) -> IngestReport {
    common::run_bench(
        "the ingest bench",
        Duration::from_secs(300),
        run_ingest(options),
    )
}

#[test]
fn mosquitto_and_the_gateway_take_the_same_load_and_the_probes_time_alerts() {
    let mut options = IngestOptions::new(200, gateway_bin()).expect("options");
    options.rounds = 2;
    options.probes = 5;
    options.probe_interval = Duration::from_millis(200);
    options.qos = Qos::AtLeastOnce;
    let report = run(options);
    println!("{}", report.table());

    assert_eq!(report.devices, 200);
    assert!(
        report.messages >= 390,
        "about one reading per device and round: {}",
        report.messages
    );
    let relay = &report.mosquitto;
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

    let gateway = &report.gateway;
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
    assert!(gateway.rate_per_s > 0.0);
    assert!(report.ratio.is_some_and(|r| r > 0.0));
    assert_eq!(gateway.devices_held, 205);
    assert!(gateway.rss_kib.is_some_and(|kib| kib > 0), "{gateway:?}");
    assert!(gateway.hwm_kib >= gateway.rss_kib);
    let sink = gateway.sink.as_ref().expect("the sink ran");
    assert!(
        sink.points_written >= gateway.accepted,
        "a point per reading at least: {sink:?}"
    );
    assert!(sink.points_dropped.is_empty(), "{sink:?}");

    let latency = &report.latency;
    assert!(latency.samples > 0, "{latency:?}");
    assert_eq!(latency.timeouts, 0, "every fault reading fired an alert");
    assert!(latency.p50_ms.is_some_and(|ms| ms > 0.0));
    assert!(latency.p99_ms >= latency.p50_ms && latency.max_ms >= latency.p99_ms);
    assert!(
        gateway.alerts_fired >= latency.samples,
        "each sample is a fired alert"
    );
    assert!(report.load_generator_hwm_kib.is_some_and(|kib| kib > 0));
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
    let relay = &report.mosquitto;
    assert_eq!(relay.sent, report.messages);
    assert_eq!(
        relay.received, relay.sent,
        "mosquitto relayed every reading"
    );
    assert!(relay.complete);
    let gateway = &report.gateway;
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
    assert!(report.latency.samples > 0, "{:?}", report.latency);
    assert_eq!(report.latency.timeouts, 0);
    let table = report.table();
    assert!(
        table.contains(&format!(
            "120 devices in {} edge boxes (up to 8 devices per box)",
            report.boxes
        )),
        "{table}"
    );
}
