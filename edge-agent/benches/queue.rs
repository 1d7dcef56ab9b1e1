//! Benchmark of the store-and-forward queue: bytes on disk per reading against its payload
//! (target <= 1.2x), append rate with the default fsync policy, and the replay rate of a backlog
//! through the whole agent to rumqttd after an outage (target >= 10,000 readings/s).
//! Run: `cargo bench -p edge-agent --bench queue` (BENCH_READINGS=50000 by default).

#[path = "../tests/agent/support.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use edge_agent::agent::{now_ms, Agent};
use edge_agent::config::AgentConfig;
use edge_agent::queue::DiskQueue;
use support::*;
use tokio_util::sync::CancellationToken;
use wire::{DeviceId, DeviceKind, Telemetry, SCHEMA_VERSION};

/// A reading as the shipped aurora-ashp profile produces it.
fn telemetry(device: &DeviceId, ts_ms: i64, seq: u64, i: u64) -> Vec<u8> {
    let x = (i % 100) as f64 / 10.0;
    let values = wire::Values::from([
        ("running", 1.0),
        ("defrost_active", 0.0),
        ("fault_code", 0.0),
        ("indoor_temp_c", 19.5 + x / 10.0),
        ("outdoor_temp_c", -12.3 + x),
        ("flow_temp_c", 41.2),
        ("return_temp_c", 36.8),
        ("discharge_temp_c", 78.4),
        ("coil_temp_c", -15.1),
        ("compressor_freq_hz", 62.0),
        ("compressor_current_a", 8.4),
        ("electric_power_w", 2140.0),
        ("heat_output_w", 5320.0),
        ("energy_kwh", 12345.6 + x),
        ("runtime_h", 4321.0),
        ("setpoint_c", 21.0),
    ]);
    Telemetry {
        v: SCHEMA_VERSION,
        device_id: device.clone(),
        ts_ms,
        seq,
        profile: "aurora-ashp".into(),
        kind: DeviceKind::HeatPump,
        values,
        fault: None,
        extra: BTreeMap::new(),
    }
    .to_json()
}

fn main() {
    let readings: u64 = std::env::var("BENCH_READINGS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(readings));
}

async fn run(readings: u64) {
    let dir = scratch("bench-queue");
    let broker = rumqttd();
    let config_path = agent_config(
        &dir,
        broker,
        // A device nobody answers: the agent only replays its backlog.
        &format!("[[devices]]\nid = \"bench-replay\"\nprofile = \"peer-all-types\"\ninterval = \"10s\"\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:{}\" }}\n", free_port()),
        "",
    );
    // The default fsync interval for the replay, and the default queue size limits.
    let text = std::fs::read_to_string(&config_path)
        .expect("config")
        .replace(
            "fsync_interval = \"100ms\"",
            "fsync_interval = \"1s\"\nmax_size = \"256MiB\"\nsegment_size = \"4MiB\"",
        );
    std::fs::write(&config_path, text).expect("config");
    let config = AgentConfig::load(&config_path).unwrap_or_else(|e| panic!("{e}"));

    // Fill the queue as an outage would: devices appending, fsync once a second of readings.
    let devices: Vec<DeviceId> = (0..8)
        .map(|i| DeviceId::parse(&format!("yq-bench-{i:04}")).expect("id"))
        .collect();
    let (mut queue, _) = DiskQueue::open(config.queue_settings()).expect("open queue");
    let start = Instant::now();
    let mut payload_bytes = 0u64;
    let base = now_ms() - readings as i64 * 1250;
    for i in 0..readings {
        let device = &devices[(i % 8) as usize];
        let ts = base + i as i64 * 1250;
        let (_, _) = queue
            .append(device.as_str(), ts, false, now_ms(), |seq| {
                let bytes = telemetry(device, ts, seq, i);
                payload_bytes += bytes.len() as u64;
                bytes
            })
            .expect("append");
        if i % 800 == 799 {
            queue.sync().expect("sync");
        }
    }
    queue.sync().expect("sync");
    let append_s = start.elapsed().as_secs_f64();
    let disk = queue.total_bytes();
    let stats = queue.stats();
    drop(queue);

    // Replay: the whole agent drains the backlog to rumqttd, readings removed on PUBACK.
    let agent = Agent::new(config.clone());
    let mqtt = agent.mqtt_counters();
    let shutdown = CancellationToken::new();
    let start = Instant::now();
    let task = tokio::spawn(agent.run(shutdown.clone()));
    eventually("the backlog acknowledged", Duration::from_secs(600), || {
        (mqtt.published.load(Ordering::Relaxed) >= readings).then_some(())
    })
    .await;
    let replay_s = start.elapsed().as_secs_f64();
    shutdown.cancel();
    let _ = task.await;
    let (reopened, recovery) = DiskQueue::open(config.queue_settings()).expect("reopen");

    println!("store-and-forward queue benchmark, {readings} readings of 8 devices");
    println!(
        "  payload (telemetry JSON)     {:.0} bytes per reading on average",
        payload_bytes as f64 / readings as f64
    );
    println!("  on disk                      {:.0} bytes per reading, {:.3}x the payload   target <= 1.2x", disk as f64 / readings as f64, disk as f64 / payload_bytes as f64);
    println!(
        "  append (fsync per 800)       {:.0} readings/s",
        readings as f64 / append_s
    );
    println!(
        "  replay to rumqttd (PUBACKed) {:.0} readings/s ({replay_s:.2} s)   target >= 10,000/s",
        readings as f64 / replay_s
    );
    println!("  after replay                 {} unacknowledged, {} segment(s) left, thinned {} dropped {}", recovery.unacked, reopened.segment_count(), stats.thinned, stats.dropped);
}
