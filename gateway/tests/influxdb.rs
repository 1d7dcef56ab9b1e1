//! The InfluxDB v2 sink against a real server: Debian's VictoriaMetrics accepts InfluxDB v2
//! writes on `/api/v2/write`. Readings are written, the server is killed in the middle of the
//! stream and started again on the same storage, and every reading must be there afterwards.
//! A stand-in server that holds its answers shows the buffer keeps filling while a write hangs.
//! A batch the server refuses (a 4xx other than 408 and 429) is not retried: a bad point is
//! split out and dropped while the rest of its batch is written (through a stand-in in front of
//! VictoriaMetrics that answers 400 for it, as InfluxDB does), VictoriaMetrics' own 401 drops
//! the batch, and 5xx, 408 and 429 are still retried. A reading with a brand's vendor values
//! (`x_...`) passes ingest's checks and reaches both the history (as fields) and the device API.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

mod support;

use gateway::sinks::influxdb::{InfluxConfig, SinkHandle, SinkStats};
use support::{serve_on_a_free_port, start_sink, started_vm, wait_for, Running, Vm};
use wire::{DeviceId, DeviceKind, Telemetry};

/// An hour ago: VictoriaMetrics refuses samples from the future and older than its retention.
fn t0() -> i64 {
    gateway::ingest::now_ms() - 3_600_000
}

fn reading(t0: i64, device: usize, n: i64) -> Telemetry {
    reading_of(&format!("yanqing-dongguan-{device:04}"), t0, n)
}

fn reading_of(device_id: &str, t0: i64, n: i64) -> Telemetry {
    Telemetry {
        v: 1,
        device_id: DeviceId::parse(device_id).expect("id"),
        ts_ms: t0 + n * 1_000,
        seq: n as u64,
        profile: "aurora-ashp".into(),
        kind: DeviceKind::HeatPump,
        values: wire::Values::from([
            ("indoor_temp_c", 18.0 + (n % 30) as f64 / 10.0),
            ("flow_temp_c", 40.0),
        ]),
        fault: None,
        extra: BTreeMap::new(),
    }
}

fn feed(sink: &SinkHandle, t0: i64, devices: usize, from: i64, to: i64) {
    for n in from..to {
        for device in 0..devices {
            sink.telemetry(&reading(t0, device, n), "yanqing", Some("yanqing-dongguan"));
        }
    }
}

/// Distinct (series, timestamp) samples of `metric` stored in VictoriaMetrics.
async fn stored_samples(client: &reqwest::Client, base: &str, metric: &str) -> usize {
    let _ = client
        .get(format!("{base}/internal/force_flush"))
        .send()
        .await;
    let Ok(response) = client
        .get(format!("{base}/api/v1/export"))
        .query(&[("match[]", metric)])
        .send()
        .await
    else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    let mut samples = HashSet::new();
    for line in text.lines() {
        let Ok(series) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let device = series["metric"]["device_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        for ts in series["timestamps"].as_array().into_iter().flatten() {
            samples.insert((device.clone(), ts.as_i64().unwrap_or_default()));
        }
    }
    samples.len()
}

/// The samples of `metric` stored in VictoriaMetrics: (device, timestamp, value).
async fn exported(client: &reqwest::Client, base: &str, metric: &str) -> Vec<(String, i64, f64)> {
    let _ = client
        .get(format!("{base}/internal/force_flush"))
        .send()
        .await;
    let Ok(response) = client
        .get(format!("{base}/api/v1/export"))
        .query(&[("match[]", metric)])
        .send()
        .await
    else {
        return Vec::new();
    };
    let text = response.text().await.unwrap_or_default();
    let mut samples = Vec::new();
    for line in text.lines() {
        let Ok(series) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let device = series["metric"]["device_id"].as_str().unwrap_or_default();
        let timestamps = series["timestamps"].as_array().cloned().unwrap_or_default();
        let values = series["values"].as_array().cloned().unwrap_or_default();
        for (ts, value) in timestamps.iter().zip(&values) {
            if let (Some(ts), Some(value)) = (ts.as_i64(), value.as_f64()) {
                samples.push((device.to_owned(), ts, value));
            }
        }
    }
    samples
}

fn written(stats: &SinkStats) -> u64 {
    stats.points_written.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_in_the_middle_of_a_write_stream_loses_nothing() {
    let (mut vm, storage, port, base, client) = started_vm("", &[]).await;

    let config = InfluxConfig {
        url: Some(base.clone()),
        batch_size: 500,
        flush_every: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        timeout: Duration::from_secs(2),
        ..InfluxConfig::default()
    };
    let Running {
        sink,
        stats,
        shutdown,
        task: running,
    } = start_sink(&config, Duration::from_secs(5));

    // 10 devices x 200 readings, then the server dies, 200 more each while it is down.
    let t0 = t0();
    feed(&sink, t0, 10, 0, 200);
    wait_for(
        "the first half to be written",
        Duration::from_secs(30),
        || async { written(&stats) >= 2_000 },
    )
    .await;
    vm.stop();
    feed(&sink, t0, 10, 200, 400);
    wait_for(
        "writes to fail while the server is down",
        Duration::from_secs(30),
        || async { stats.write_failures.load(Ordering::Relaxed) > 0 },
    )
    .await;
    assert!(
        written(&stats) < 4_000,
        "nothing can be written while the server is down"
    );
    let mut vm = Vm::start(port, &storage, &[]);
    wait_for(
        "VictoriaMetrics to restart",
        Duration::from_secs(30),
        || support::healthy(&client, &base),
    )
    .await;
    wait_for(
        "the buffered half to be written",
        Duration::from_secs(60),
        || async { written(&stats) >= 4_000 },
    )
    .await;
    wait_for("every reading stored", Duration::from_secs(30), || async {
        stored_samples(&client, &base, "telemetry_indoor_temp_c").await >= 4_000
    })
    .await;
    assert_eq!(
        stored_samples(&client, &base, "telemetry_indoor_temp_c").await,
        4_000
    );
    assert_eq!(stats.dropped_buffer_full.load(Ordering::Relaxed), 0);
    assert_eq!(stats.dropped_channel_full.load(Ordering::Relaxed), 0);
    let text = stats.render();
    assert!(
        text.contains("gateway_influx_points_written_total 4000"),
        "{text}"
    );

    shutdown.cancel();
    running.await.expect("join").expect("sink ran");
    vm.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_buffer_drops_the_oldest_points_and_counts_them() {
    // A listener that never answers (held for the whole test, so no other process can take
    // its port): every write times out, the buffer fills and must stay bounded.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    let config = InfluxConfig {
        url: Some(format!("http://127.0.0.1:{port}")),
        batch_size: 100,
        max_buffer: 1_000,
        flush_every: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        ..InfluxConfig::default()
    };
    let Running {
        sink,
        stats,
        shutdown,
        task: running,
    } = start_sink(&config, Duration::from_millis(200));
    // 300 points a chunk into a 400-slot channel: each chunk is pushed only once the task has
    // taken every earlier point in (buffered or dropped as buffer-full), so none is refused as
    // channel-full however the task is scheduled.
    for chunk in 0..5 {
        feed(&sink, t0(), 10, chunk * 30, chunk * 30 + 30);
        let taken = 300 * (chunk as u64 + 1);
        wait_for(
            "the task to take the chunk",
            Duration::from_secs(10),
            || async {
                stats.buffered.load(Ordering::Relaxed)
                    + stats.dropped_buffer_full.load(Ordering::Relaxed)
                    >= taken
            },
        )
        .await;
    }
    wait_for(
        "the cap to be enforced",
        Duration::from_secs(30),
        || async { stats.dropped_buffer_full.load(Ordering::Relaxed) >= 500 },
    )
    .await;
    assert!(stats.buffered.load(Ordering::Relaxed) <= 1_000);
    assert_eq!(written(&stats), 0);
    let queued = stats.points_queued.load(Ordering::Relaxed);
    assert_eq!(queued, 1_500);
    shutdown.cancel();
    running.await.expect("join").expect("sink ran");
    // After shutdown every point is accounted for: written + dropped = queued.
    let dropped = stats.dropped_buffer_full.load(Ordering::Relaxed)
        + stats.dropped_channel_full.load(Ordering::Relaxed);
    assert_eq!(written(&stats) + dropped, queued);
    drop(silent);
}

/// A stand-in for a slow InfluxDB: `/api/v2/write` counts the lines it gets, and holds every
/// request until the test opens the gate.
#[derive(Clone)]
struct SlowServer {
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    lines: std::sync::Arc<std::sync::atomic::AtomicU64>,
    gate: tokio::sync::watch::Receiver<bool>,
}

async fn slow_write(
    axum::extract::State(server): axum::extract::State<SlowServer>,
    body: String,
) -> axum::http::StatusCode {
    server.requests.fetch_add(1, Ordering::SeqCst);
    let mut gate = server.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    let lines = body.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    server.lines.fetch_add(lines, Ordering::SeqCst);
    axum::http::StatusCode::NO_CONTENT
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_keep_flowing_into_the_buffer_while_a_write_is_in_flight() {
    let (open, gate) = tokio::sync::watch::channel(false);
    let server = SlowServer {
        requests: Default::default(),
        lines: Default::default(),
        gate,
    };
    let app = axum::Router::new()
        .route("/api/v2/write", axum::routing::post(slow_write))
        .with_state(server.clone());
    let (port, serving) = serve_on_a_free_port(app).await;

    // A channel of 4 x 50 = 200 points between producers and the sink task.
    let config = InfluxConfig {
        url: Some(format!("http://127.0.0.1:{port}")),
        batch_size: 50,
        flush_every: Duration::from_millis(50),
        timeout: Duration::from_secs(30),
        ..InfluxConfig::default()
    };
    let Running {
        sink,
        stats,
        shutdown,
        task: running,
    } = start_sink(&config, Duration::from_secs(5));

    // The first batch goes out and the server holds it.
    let t0 = t0();
    feed(&sink, t0, 50, 0, 1);
    wait_for(
        "the first write to reach the server",
        Duration::from_secs(10),
        || async { server.requests.load(Ordering::SeqCst) >= 1 },
    )
    .await;
    // While it hangs, ten times the channel's capacity arrives, a channel-full at a time; the
    // task must keep taking it into its buffer (buffered counts the write in flight too).
    let mut fed = 50;
    for round in 1..=10 {
        feed(&sink, t0, 200, round, round + 1);
        fed += 200;
        wait_for(
            "the task to take the points while the write hangs",
            Duration::from_secs(10),
            || async { stats.buffered.load(Ordering::Relaxed) >= fed },
        )
        .await;
    }
    assert_eq!(written(&stats), 0, "the server has answered nothing yet");
    assert_eq!(stats.dropped_channel_full.load(Ordering::Relaxed), 0);

    // The server answers: everything is written, nothing was dropped.
    open.send(true).expect("gate");
    wait_for("every point written", Duration::from_secs(30), || async {
        written(&stats) >= fed
    })
    .await;
    assert_eq!(written(&stats), fed);
    assert_eq!(server.lines.load(Ordering::SeqCst), fed);
    assert_eq!(stats.dropped_channel_full.load(Ordering::Relaxed), 0);
    assert_eq!(stats.dropped_buffer_full.load(Ordering::Relaxed), 0);
    shutdown.cancel();
    running.await.expect("join").expect("sink ran");
    serving.abort();
}

/// A stand-in in front of VictoriaMetrics that refuses, as InfluxDB does for a line it cannot
/// take, any request with a line naming a `poison` device (400 and the line in its message);
/// every other request goes through to VictoriaMetrics and gets its answer.
#[derive(Clone)]
struct Gatekeeper {
    upstream: String,
    client: reqwest::Client,
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    refused: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

async fn gatekeeper_write(
    axum::extract::State(gate): axum::extract::State<Gatekeeper>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: String,
) -> (axum::http::StatusCode, String) {
    gate.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(line) = body.lines().find(|line| line.contains("poison")) {
        gate.refused.fetch_add(1, Ordering::SeqCst);
        let message = format!(
            "{{\"code\":\"invalid\",\"message\":\"unable to parse '{line}': invalid field format\"}}"
        );
        return (axum::http::StatusCode::BAD_REQUEST, message);
    }
    let url = format!(
        "{}/api/v2/write?{}",
        gate.upstream,
        query.unwrap_or_default()
    );
    match gate.client.post(url).body(body).send().await {
        Ok(response) => {
            let status = axum::http::StatusCode::from_u16(response.status().as_u16())
                .unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
            (status, response.text().await.unwrap_or_default())
        }
        Err(error) => (axum::http::StatusCode::BAD_GATEWAY, error.to_string()),
    }
}

fn dropped(stats: &SinkStats, reason: &str) -> u64 {
    match reason {
        "rejected" => stats.dropped_rejected.load(Ordering::Relaxed),
        "misconfigured" => stats.dropped_misconfigured.load(Ordering::Relaxed),
        _ => unreachable!("{reason}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_point_is_split_out_and_dropped_while_its_batch_and_the_next_are_stored() {
    let (mut vm, storage, _, base, client) = started_vm("reject-", &[]).await;
    let gate = Gatekeeper {
        upstream: base.clone(),
        client: client.clone(),
        requests: Default::default(),
        refused: Default::default(),
    };
    let app = axum::Router::new()
        .route("/api/v2/write", axum::routing::post(gatekeeper_write))
        .with_state(gate.clone());
    let (gate_port, serving) = serve_on_a_free_port(app).await;

    let config = InfluxConfig {
        url: Some(format!("http://127.0.0.1:{gate_port}")),
        batch_size: 20,
        flush_every: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        timeout: Duration::from_secs(5),
        ..InfluxConfig::default()
    };
    let Running {
        sink,
        stats,
        shutdown,
        task: running,
    } = start_sink(&config, Duration::from_secs(5));

    // One batch of 20 with a bad point in the middle.
    let t0 = t0();
    for device in 0..20 {
        let reading = if device == 7 {
            reading_of("yanqing-poison-0007", t0, 0)
        } else {
            reading(t0, device, 0)
        };
        sink.telemetry(&reading, "yanqing", Some("yanqing-dongguan"));
    }
    wait_for(
        "the batch to be written but for its bad point",
        Duration::from_secs(30),
        || async { written(&stats) + dropped(&stats, "rejected") >= 20 },
    )
    .await;
    assert_eq!(written(&stats), 19);
    assert_eq!(dropped(&stats, "rejected"), 1);
    assert_eq!(dropped(&stats, "misconfigured"), 0);
    assert_eq!(
        stats.write_failures.load(Ordering::Relaxed),
        0,
        "a refusal is not a failure to retry"
    );
    assert_eq!(
        stats.write_refusals.load(Ordering::Relaxed),
        gate.refused.load(Ordering::SeqCst)
    );
    assert_eq!(
        gate.requests.load(Ordering::SeqCst),
        gate.refused.load(Ordering::SeqCst) + stats.write_requests.load(Ordering::Relaxed)
    );

    // The next batch is written as if nothing had happened.
    feed(&sink, t0, 20, 1, 2);
    wait_for(
        "the next batch written",
        Duration::from_secs(30),
        || async { written(&stats) >= 39 },
    )
    .await;
    wait_for(
        "every good reading stored",
        Duration::from_secs(30),
        || async { stored_samples(&client, &base, "telemetry_indoor_temp_c").await >= 39 },
    )
    .await;
    assert_eq!(
        stored_samples(&client, &base, "telemetry_indoor_temp_c").await,
        39
    );
    // Splitting is bounded: the bad point lies in one half of each split, so at most
    // 1 + ⌈log2 20⌉ = 6 requests are refused, however the points were batched.
    let refusals = stats.write_refusals.load(Ordering::Relaxed);
    assert!((1..=6).contains(&refusals), "{refusals} refused requests");
    assert_eq!(
        gate.requests.load(Ordering::SeqCst),
        refusals + stats.write_requests.load(Ordering::Relaxed)
    );
    assert_eq!(stats.buffered.load(Ordering::Relaxed), 0);
    let text = stats.render();
    assert!(
        text.contains("gateway_influx_points_dropped_total{reason=\"rejected\"} 1\n"),
        "{text}"
    );

    shutdown.cancel();
    running.await.expect("join").expect("sink ran");
    serving.abort();
    vm.stop();
    let _ = std::fs::remove_dir_all(&storage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_victoria_metrics_refuses_as_unauthorised_is_dropped_not_retried() {
    // VictoriaMetrics with basic auth answers the client's token with 401: a configuration
    // fault that no retry can mend.
    let (mut vm, storage, _, base, _client) = started_vm(
        "401-",
        &[
            "-httpAuth.username=heating",
            "-httpAuth.password=not-the-token",
        ],
    )
    .await;
    let config = InfluxConfig {
        url: Some(base.clone()),
        token: "some-token".into(),
        batch_size: 100,
        flush_every: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        ..InfluxConfig::default()
    };
    let Running {
        sink,
        stats,
        shutdown,
        task: running,
    } = start_sink(&config, Duration::from_secs(2));
    let t0 = t0();
    feed(&sink, t0, 10, 0, 1);
    wait_for(
        "the batch to be dropped",
        Duration::from_secs(30),
        || async { dropped(&stats, "misconfigured") >= 10 },
    )
    .await;
    // The next batch is not stuck behind it: it is sent (and refused) in turn.
    feed(&sink, t0, 10, 1, 2);
    wait_for(
        "the next batch to be dropped",
        Duration::from_secs(30),
        || async { dropped(&stats, "misconfigured") >= 20 },
    )
    .await;
    assert_eq!(dropped(&stats, "misconfigured"), 20);
    assert_eq!(dropped(&stats, "rejected"), 0);
    assert_eq!(written(&stats), 0);
    assert_eq!(stats.write_failures.load(Ordering::Relaxed), 0);
    let refusals = stats.write_refusals.load(Ordering::Relaxed);
    assert!((2..=20).contains(&refusals), "{refusals}");
    assert_eq!(stats.buffered.load(Ordering::Relaxed), 0);
    shutdown.cancel();
    running.await.expect("join").expect("sink ran");
    // Nothing was left to lose at shutdown.
    assert_eq!(stats.dropped_buffer_full.load(Ordering::Relaxed), 0);
    vm.stop();
    let _ = std::fs::remove_dir_all(&storage);
}

/// A stand-in InfluxDB that answers each request with the next status of its script (counting
/// the lines it answered so), and with 204 (counting the lines) once the script is used up.
#[derive(Clone)]
struct Scripted {
    script: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<u16>>>,
    requests: std::sync::Arc<std::sync::atomic::AtomicU64>,
    lines: std::sync::Arc<std::sync::atomic::AtomicU64>,
    scripted_lines: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Scripted {
    fn then(&self, statuses: &[u16]) {
        self.script
            .lock()
            .expect("script")
            .extend(statuses.iter().copied());
    }
}

async fn scripted_write(
    axum::extract::State(server): axum::extract::State<Scripted>,
    body: String,
) -> (axum::http::StatusCode, &'static str) {
    server.requests.fetch_add(1, Ordering::SeqCst);
    let lines = body.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    let next = server.script.lock().expect("script").pop_front();
    match next {
        Some(status) => {
            server.scripted_lines.fetch_add(lines, Ordering::SeqCst);
            (
                axum::http::StatusCode::from_u16(status).expect("status"),
                "{\"code\":\"scripted\",\"message\":\"as the test says\"}",
            )
        }
        None => {
            server.lines.fetch_add(lines, Ordering::SeqCst);
            (axum::http::StatusCode::NO_CONTENT, "")
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_408_and_429_are_retried_and_a_404_is_not() {
    let server = Scripted {
        script: Default::default(),
        requests: Default::default(),
        lines: Default::default(),
        scripted_lines: Default::default(),
    };
    let app = axum::Router::new()
        .route("/api/v2/write", axum::routing::post(scripted_write))
        .with_state(server.clone());
    let (port, serving) = serve_on_a_free_port(app).await;
    let config = InfluxConfig {
        url: Some(format!("http://127.0.0.1:{port}")),
        batch_size: 10,
        flush_every: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        timeout: Duration::from_secs(5),
        ..InfluxConfig::default()
    };
    let Running {
        sink,
        stats,
        shutdown,
        task: running,
    } = start_sink(&config, Duration::from_secs(2));

    // Three transient answers, then the points are taken: each written once, none dropped.
    // (Every request is one of: failed, refused, written; however the points were batched.)
    let accounted = |stats: &SinkStats| {
        stats.write_failures.load(Ordering::Relaxed)
            + stats.write_refusals.load(Ordering::Relaxed)
            + stats.write_requests.load(Ordering::Relaxed)
    };
    server.then(&[503, 429, 408]);
    let t0 = t0();
    feed(&sink, t0, 10, 0, 1);
    wait_for(
        "the batch written after retries",
        Duration::from_secs(30),
        || async { written(&stats) >= 10 },
    )
    .await;
    assert_eq!(written(&stats), 10);
    assert_eq!(stats.write_failures.load(Ordering::Relaxed), 3);
    assert_eq!(server.lines.load(Ordering::SeqCst), 10);
    assert_eq!(server.requests.load(Ordering::SeqCst), accounted(&stats));
    let retried_lines = server.scripted_lines.load(Ordering::SeqCst);

    // A 404 (no such bucket): what it answered is dropped after one request, not retried nor
    // split, and what follows is written.
    server.then(&[404]);
    feed(&sink, t0, 10, 1, 2);
    feed(&sink, t0, 10, 2, 3);
    wait_for(
        "the refused points dropped and the rest written",
        Duration::from_secs(30),
        || async { written(&stats) + dropped(&stats, "misconfigured") >= 30 },
    )
    .await;
    let refused_lines = server.scripted_lines.load(Ordering::SeqCst) - retried_lines;
    assert!(refused_lines >= 1);
    assert_eq!(dropped(&stats, "misconfigured"), refused_lines);
    assert_eq!(written(&stats), 30 - refused_lines);
    assert_eq!(server.lines.load(Ordering::SeqCst), 30 - refused_lines);
    assert_eq!(dropped(&stats, "rejected"), 0);
    assert_eq!(stats.write_failures.load(Ordering::Relaxed), 3);
    assert_eq!(stats.write_refusals.load(Ordering::Relaxed), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), accounted(&stats));
    shutdown.cancel();
    running.await.expect("join").expect("sink ran");
    serving.abort();
}

/// What ingest does with an accepted reading, minus the broker and the rules: decode and
/// validate it as `Ingest` does, then hand it to the fleet picture and the history sink
/// (`ingest::record_reading`; a fresh vendor-name bound, which its few names are well within:
/// `tests/vendor_values.rs` tests the bound).
fn ingest_reading(
    topic: &str,
    payload: &[u8],
    fleet: &gateway::fleet::Fleet,
    sink: &SinkHandle,
) -> Result<(), gateway::ingest::Reject> {
    let now = gateway::ingest::now_ms();
    match gateway::ingest::decode(topic.as_bytes(), payload, now, 60_000)? {
        gateway::ingest::Decoded::Reading(mut reading, township) => {
            gateway::ingest::record_reading(
                &mut reading,
                &township,
                &mut gateway::ingest::vendor::VendorNames::default(),
                &gateway::metrics::Metrics::default(),
                fleet,
                Some(sink),
            );
        }
        other => panic!("not a reading: {other:?}"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_with_vendor_values_reaches_the_history_and_the_device_api() {
    let (mut vm, storage, _, base, client) = started_vm("vendor-", &[]).await;
    let config = InfluxConfig {
        url: Some(base.clone()),
        batch_size: 10,
        flush_every: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
        ..InfluxConfig::default()
    };
    let Running {
        sink,
        stats,
        shutdown,
        task: running,
    } = start_sink(&config, Duration::from_secs(5));
    let fleet = std::sync::Arc::new(gateway::fleet::Fleet::default());

    let device = "yanqing-dongguan-0001";
    let topic = format!("heating/v1/yanqing/{device}/telemetry");
    let ts_ms = t0();
    let payload = |values: &str| {
        format!(
            r#"{{"v":1,"device_id":"{device}","ts_ms":{ts_ms},"seq":1,"profile":"aurora-ashp","kind":"heat_pump","values":{{{values}}}}}"#
        )
        .into_bytes()
    };
    // Refused as before: a name in neither namespace, too many vendor values, one too large.
    let refused = |values: &str| {
        ingest_reading(&topic, &payload(values), &fleet, &sink)
            .expect_err("refused")
            .reason()
    };
    assert_eq!(refused(r#""indoor_temp_c":20,"cop":3.1"#), "unknown_value");
    assert_eq!(
        refused(r#""indoor_temp_c":20,"X_cop":3.1"#),
        "unknown_value"
    );
    let many: Vec<String> = (0..=wire::values::MAX_VENDOR_VALUES)
        .map(|i| format!(r#""x_v{i:02}":{i}"#))
        .collect();
    assert_eq!(refused(&many.join(",")), "too_many_vendor_values");
    assert_eq!(refused(r#""x_cop":2e9"#), "out_of_range");
    assert!(
        fleet.get(device).is_none(),
        "nothing refused reached the fleet"
    );

    // Accepted: canonical and vendor values together.
    ingest_reading(
        &topic,
        &payload(r#""indoor_temp_c":19.5,"x_cop":3.25,"x_pump_on":1"#),
        &fleet,
        &sink,
    )
    .expect("a reading with vendor values is accepted");

    // History: each vendor value is a field of the telemetry point.
    wait_for(
        "the vendor values stored",
        Duration::from_secs(30),
        || async {
            !exported(&client, &base, "telemetry_x_pump_on")
                .await
                .is_empty()
        },
    )
    .await;
    let device_id = device.to_owned();
    assert_eq!(
        exported(&client, &base, "telemetry_x_cop").await,
        [(device_id.clone(), ts_ms, 3.25)]
    );
    assert_eq!(
        exported(&client, &base, "telemetry_x_pump_on").await,
        [(device_id.clone(), ts_ms, 1.0)]
    );
    assert_eq!(
        exported(&client, &base, "telemetry_indoor_temp_c").await,
        [(device_id, ts_ms, 19.5)]
    );
    assert_eq!(written(&stats), 1);

    // The device API shows them beside the canonical values.
    let support::Served {
        base: api,
        stop: stop_api,
        task: serving,
    } = support::viewer_api(
        std::sync::Arc::clone(&fleet),
        std::sync::Arc::new(gateway::metrics::Metrics::default()),
        ts_ms,
    )
    .await;
    let answer: serde_json::Value = client
        .get(format!("{api}/api/v1/devices/{device}"))
        .bearer_auth(support::VIEWER)
        .send()
        .await
        .expect("request")
        .error_for_status()
        .expect("200")
        .json()
        .await
        .expect("json");
    assert_eq!(
        answer["values"],
        serde_json::json!({"indoor_temp_c": 19.5, "x_cop": 3.25, "x_pump_on": 1.0}),
        "{answer}"
    );

    stop_api.cancel();
    let _ = serving.await;
    shutdown.cancel();
    running.await.expect("join").expect("sink ran");
    vm.stop();
    let _ = std::fs::remove_dir_all(&storage);
}
