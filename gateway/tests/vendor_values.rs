//! The bound on a device's vendor value names, through the path ingest takes for an accepted
//! reading (`ingest::decode`, then `ingest::record_reading`): one device sends 40 distinct
//! `x_...` names over several readings; its first 32 distinct names reach the fleet picture,
//! the device API and the history sink (a stand-in InfluxDB that keeps the lines it is sent),
//! the other 8 are dropped from every reading that carries them and counted in
//! `gateway_vendor_values_dropped_total`, and every reading's canonical values are kept.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use gateway::fleet::Fleet;
use gateway::ingest::vendor::VendorNames;
use gateway::ingest::{decode, record_reading, Decoded};
use gateway::metrics::Metrics;
use gateway::sinks::influxdb::{InfluxConfig, SinkHandle};
use support::{serve_on_a_free_port, start_sink, Running, Served};

const DEVICE: &str = "yanqing-dongguan-0001";
const OTHER: &str = "yanqing-dongguan-0002";
const TOKEN: &str = support::VIEWER;

fn name(i: usize) -> String {
    format!("x_v{i:02}")
}

fn names(range: std::ops::Range<usize>) -> BTreeSet<String> {
    range.map(name).collect()
}

/// A stand-in InfluxDB: keeps every line it is sent and answers 204.
#[derive(Clone, Default)]
struct Recorder {
    lines: Arc<Mutex<Vec<String>>>,
}

async fn record_write(
    axum::extract::State(recorder): axum::extract::State<Recorder>,
    body: String,
) -> axum::http::StatusCode {
    if let Ok(mut lines) = recorder.lines.lock() {
        lines.extend(
            body.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    axum::http::StatusCode::NO_CONTENT
}

/// What ingest does with one message, minus the broker, the registry check and the rules.
struct Pipeline {
    vendor_names: VendorNames,
    metrics: Arc<Metrics>,
    fleet: Arc<Fleet>,
    sink: SinkHandle,
}

impl Pipeline {
    fn ingest(&mut self, device: &str, seq: u64, values: &[(String, f64)]) {
        let object: serde_json::Map<String, serde_json::Value> = values
            .iter()
            .map(|(name, value)| (name.clone(), serde_json::json!(value)))
            .collect();
        let now = gateway::ingest::now_ms();
        let payload = serde_json::json!({
            "v": 1,
            "device_id": device,
            // Ten minutes ago, a second a reading: within any clock's skew.
            "ts_ms": now - 600_000 + i64::try_from(seq).expect("small") * 1_000,
            "seq": seq,
            "profile": "aurora-ashp",
            "kind": "heat_pump",
            "values": object,
        });
        let topic = format!("heating/v1/yanqing/{device}/telemetry");
        let bytes = serde_json::to_vec(&payload).expect("json");
        match decode(topic.as_bytes(), &bytes, now, 60_000).expect("a valid reading") {
            Decoded::Reading(mut reading, township) => {
                self.metrics.reading_accepted();
                record_reading(
                    &mut reading,
                    &township,
                    &mut self.vendor_names,
                    &self.metrics,
                    &self.fleet,
                    Some(&self.sink),
                );
            }
            other => panic!("not a reading: {other:?}"),
        }
    }

    /// The vendor names in the device's latest values in the picture.
    fn vendor_names_in_picture(&self, device: &str) -> BTreeSet<String> {
        self.fleet
            .get(device)
            .map(|state| {
                state
                    .values
                    .keys()
                    .filter(|n| n.starts_with("x_"))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A reading's values: two canonical ones that change with `seq`, and `vendor` names.
fn values(seq: u64, vendor: &BTreeSet<String>) -> Vec<(String, f64)> {
    let indoor = 18.0 + seq as f64 / 10.0;
    let mut values = vec![
        ("indoor_temp_c".to_owned(), indoor),
        ("flow_temp_c".to_owned(), 40.0 + seq as f64),
    ];
    values.extend(vendor.iter().map(|n| (n.clone(), seq as f64)));
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_keeps_its_first_32_vendor_names_and_the_rest_are_dropped_and_counted() {
    // The history sink, writing to the stand-in.
    let recorder = Recorder::default();
    let app = axum::Router::new()
        .route("/api/v2/write", axum::routing::post(record_write))
        .with_state(recorder.clone());
    let (influx_port, influx_serving) = serve_on_a_free_port(app).await;
    let Running {
        sink,
        stats,
        shutdown: stop_sink,
        task: sink_running,
    } = start_sink(
        &InfluxConfig {
            url: Some(format!("http://127.0.0.1:{influx_port}")),
            batch_size: 100,
            flush_every: Duration::from_millis(50),
            timeout: Duration::from_secs(10),
            ..InfluxConfig::default()
        },
        Duration::from_secs(10),
    );

    let mut path = Pipeline {
        vendor_names: VendorNames::default(),
        metrics: Arc::new(Metrics::default()),
        fleet: Arc::new(Fleet::default()),
        sink,
    };

    // 40 distinct names over five readings: 12 new ones in each of the first three (the third
    // brings the 25th to the 36th: only up to the 32nd are learned), the 4th repeats known
    // names with the last 8, the 5th carries all 32 known names.
    let readings: [BTreeSet<String>; 5] = [
        names(0..12),
        names(12..24),
        names(24..36),
        &names(20..24) | &names(32..40),
        names(0..32),
    ];
    let mut expected_dropped = 0u64;
    for (seq, vendor) in readings.iter().enumerate() {
        let seq = seq as u64;
        path.ingest(DEVICE, seq, &values(seq, vendor));
        let kept: BTreeSet<String> = vendor.intersection(&names(0..32)).cloned().collect();
        expected_dropped += (vendor.len() - kept.len()) as u64;
        assert_eq!(path.vendor_names_in_picture(DEVICE), kept, "reading {seq}");
        let state = path.fleet.get(DEVICE).expect("in the picture");
        assert_eq!(state.readings, seq + 1, "every reading is accepted");
        assert_eq!(
            state.values.get("indoor_temp_c"),
            Some(18.0 + seq as f64 / 10.0)
        );
        assert_eq!(state.values.get("flow_temp_c"), Some(40.0 + seq as f64));
        assert_eq!(
            path.metrics.vendor_values_dropped_total(),
            expected_dropped,
            "reading {seq}"
        );
    }
    assert_eq!(expected_dropped, 4 + 8, "x_v32..x_v35, then x_v32..x_v39");
    assert_eq!(
        path.vendor_names.names_of(DEVICE),
        names(0..32).into_iter().collect::<Vec<_>>()
    );

    // A last reading with only new names keeps its canonical values and no vendor value.
    path.ingest(DEVICE, 5, &values(5, &names(36..40)));
    assert!(path.vendor_names_in_picture(DEVICE).is_empty());
    expected_dropped += 4;
    // Another device has a set of its own: the names this one may not use, it may.
    path.ingest(OTHER, 0, &values(0, &names(32..40)));
    assert_eq!(path.vendor_names_in_picture(OTHER), names(32..40));
    assert_eq!(path.metrics.vendor_values_dropped_total(), expected_dropped);
    assert_eq!(path.metrics.readings_accepted_total(), 7);

    // The device API shows the picture: canonical values and the kept vendor values.
    let Served {
        base: api,
        stop: stop_api,
        task: api_serving,
    } = support::viewer_api(Arc::clone(&path.fleet), Arc::clone(&path.metrics), 0).await;
    let client = reqwest::Client::new();
    // All 32 known names again (a later reading), so the device's latest values have them.
    path.ingest(DEVICE, 6, &values(6, &names(0..32)));
    let answer: serde_json::Value = client
        .get(format!("{api}/api/v1/devices/{DEVICE}"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request")
        .error_for_status()
        .expect("200")
        .json()
        .await
        .expect("json");
    let values = answer["values"].as_object().expect("values");
    let vendor: BTreeSet<String> = values
        .keys()
        .filter(|n| n.starts_with("x_"))
        .cloned()
        .collect();
    assert_eq!(vendor, names(0..32), "{answer}");
    assert_eq!(
        values["indoor_temp_c"].as_f64(),
        Some(18.0 + 6.0 / 10.0),
        "{answer}"
    );
    assert_eq!(values["flow_temp_c"].as_f64(), Some(46.0), "{answer}");
    assert_eq!(values.len(), 2 + 32, "{answer}");
    // The counter, as Prometheus reads it.
    let metrics = client
        .get(format!("{api}/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request")
        .error_for_status()
        .expect("200")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains(&format!(
            "# TYPE gateway_vendor_values_dropped_total counter\ngateway_vendor_values_dropped_total {expected_dropped}\n"
        )),
        "{metrics}"
    );
    stop_api.cancel();
    let _ = api_serving.await;

    // History: the sink flushes what it has when stopped; one point per reading, with its
    // canonical fields, and only the kept vendor names as fields.
    stop_sink.cancel();
    sink_running.await.expect("join").expect("sink ran");
    influx_serving.abort();
    assert_eq!(
        stats
            .points_written
            .load(std::sync::atomic::Ordering::Relaxed),
        8
    );
    let lines = recorder.lines.lock().expect("lines").clone();
    assert_eq!(lines.len(), 8, "{lines:#?}");
    let mut fields_of_device: BTreeSet<String> = BTreeSet::new();
    for line in &lines {
        // `telemetry,<tags> <fields> <ts>`: no value of these has a space.
        let fields = line.split(' ').nth(1).expect("fields");
        let names: BTreeSet<String> = fields
            .split(',')
            .filter_map(|field| field.split_once('=').map(|(n, _)| n.to_owned()))
            .collect();
        assert!(names.contains("indoor_temp_c"), "{line}");
        assert!(names.contains("flow_temp_c"), "{line}");
        if line.contains(&format!("device_id={DEVICE},")) {
            fields_of_device.extend(names.into_iter().filter(|n| n.starts_with("x_")));
        }
    }
    assert_eq!(fields_of_device, names(0..32));
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains(&format!("device_id={OTHER},")))
            .count(),
        1
    );
}
