//! Benchmark: remote command round trip broker -> agent -> Modbus TCP write -> read-back -> ack,
//! p50/p99 over sequential commands (pymodbus is the device, rumqttd the broker). Target
//! p99 <= 100 ms. Run: `cargo bench -p edge-agent --bench command` (BENCH_COMMANDS=200).

#[path = "../tests/agent/support.rs"]
mod support;

use std::time::{Duration, Instant};

use edge_agent::agent::{now_ms, Agent};
use edge_agent::config::AgentConfig;
use rumqttc::{Event, Packet, QoS};
use support::*;
use tokio_util::sync::CancellationToken;

fn main() {
    let commands: usize = std::env::var("BENCH_COMMANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(commands));
}

async fn run(commands: usize) {
    let dir = scratch("bench-command");
    let broker = rumqttd();
    let port = free_port();
    let _device = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    let devices = format!(
        "[[devices]]\nid = \"yq-bench-cmd\"\nprofile = \"peer-all-types\"\ninterval = \"10s\"\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:{port}\" }}\n"
    );
    let config = AgentConfig::load(&agent_config(&dir, broker, &devices, ""))
        .unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Agent::new(config).run(shutdown.clone()));

    let mut operator = Operator::connect(broker);
    // The agent is polling (and so subscribed to its commands) once its first reading arrives.
    tokio::time::timeout(Duration::from_secs(30), operator.ready.recv())
        .await
        .expect("first reading");

    let mut latencies = Vec::with_capacity(commands);
    for i in 0..commands {
        latencies.push(operator.round_trip(i).await);
    }
    shutdown.cancel();
    let _ = task.await;
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q).ceil() as usize)
            .saturating_sub(1)
            .min(latencies.len() - 1)]
    };
    println!("command round trip (MQTT -> agent -> Modbus TCP write -> read-back -> ack), {commands} commands");
    println!(
        "  p50 {:.2} ms   p99 {:.2} ms   max {:.2} ms   target p99 <= 100 ms",
        at(0.50).as_secs_f64() * 1000.0,
        at(0.99).as_secs_f64() * 1000.0,
        at(1.0).as_secs_f64() * 1000.0
    );
}

/// The operator's client: acks arrive on a channel the moment they are received.
struct Operator {
    client: rumqttc::AsyncClient,
    /// Each ack with the instant it arrived.
    acks: tokio::sync::mpsc::UnboundedReceiver<(Instant, serde_json::Value)>,
    /// One message per telemetry reading seen.
    ready: tokio::sync::mpsc::UnboundedReceiver<()>,
}

impl Operator {
    /// Connects to `broker` and subscribes to the acks and the telemetry on every CONNACK.
    fn connect(broker: std::net::SocketAddr) -> Operator {
        let mut options =
            rumqttc::MqttOptions::new("bench-operator", broker.ip().to_string(), broker.port());
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (acks_tx, acks) = tokio::sync::mpsc::unbounded_channel();
        let (ready_tx, ready) = tokio::sync::mpsc::unbounded_channel();
        let subscriber = client.clone();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                match event {
                    Event::Incoming(Packet::ConnAck(_)) => {
                        let _ = subscriber
                            .subscribe("heating/v1/+/+/cmd/ack", QoS::AtLeastOnce)
                            .await;
                        let _ = subscriber
                            .subscribe("heating/v1/+/+/telemetry", QoS::AtMostOnce)
                            .await;
                    }
                    Event::Incoming(Packet::Publish(p)) if p.topic.ends_with("/cmd/ack") => {
                        let ack: serde_json::Value =
                            serde_json::from_slice(&p.payload).unwrap_or_default();
                        let _ = acks_tx.send((Instant::now(), ack));
                    }
                    Event::Incoming(Packet::Publish(_)) => {
                        let _ = ready_tx.send(());
                    }
                    _ => {}
                }
            }
        });
        Operator {
            client,
            acks,
            ready,
        }
    }

    /// Sends the `i`th write command and waits for its `done` ack; returns the round trip.
    async fn round_trip(&mut self, i: usize) -> Duration {
        let value = 15.0 + (i % 20) as f64 * 0.5;
        let id = format!("bench-{i}");
        let body = serde_json::json!({"v":1,"id":id,"expires_ms":now_ms() + 60_000,"action":"write","name":"setpoint_c","value":value});
        let sent = Instant::now();
        self.client
            .publish(
                "heating/v1/yanqing/yq-bench-cmd/cmd",
                QoS::AtLeastOnce,
                false,
                serde_json::to_vec(&body).expect("json"),
            )
            .await
            .expect("publish");
        loop {
            let (at, ack) = tokio::time::timeout(Duration::from_secs(10), self.acks.recv())
                .await
                .expect("ack in time")
                .expect("ack channel");
            if ack["id"] == id.as_str() {
                assert_eq!(ack["status"], "done", "{ack}");
                return at.duration_since(sent);
            }
        }
    }
}
