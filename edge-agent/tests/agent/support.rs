//! Helpers for the integration tests: real peers started on free ports (pymodbus over TCP and
//! RTU, socat pty pairs, rumqttd in-process, Debian's mosquitto), a TCP proxy that can cut the
//! link to the broker, an MQTT subscriber that records everything, and condition polling with
//! deadlines (no sleeps).

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// A fresh scratch folder for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edge-agent-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A port nothing listens on right now (bind port 0, read it, release it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("probe a free port")
}

/// Polls `check` every 50 ms (tokio interval ticks) until it gives a value or `limit` passes.
pub async fn eventually<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
    }
}

/// The Python interpreter of the test venv (`HEATING_PYTHON`, else `<repo>/.venv/bin/python`).
pub fn python() -> PathBuf {
    let path = std::env::var_os("HEATING_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let ok = Command::new(&path)
        .args(["-c", "import pymodbus, paho.mqtt, serial"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "the Python test peers are missing at {}: run ./scripts/test, or \
         python3 -m venv .venv && .venv/bin/pip install 'pymodbus>=3.6,<4' 'paho-mqtt>=2,<3' 'pyserial>=3.5'",
        path.display()
    );
    path
}

/// Checks a Debian tool is installed; fails with how to install it.
pub fn require(tool: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"] {
        let path = Path::new(dir).join(tool);
        if path.is_file() {
            return path;
        }
    }
    panic!("{tool} is missing: run ./scripts/test, or apt-get install {package}");
}

/// A child process killed (SIGKILL) when dropped.
pub struct Peer {
    pub name: String,
    pub child: Child,
}

impl Peer {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM to this process (by its pid) and waits for it to exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let _ = self.child.wait();
    }

    /// SIGKILL, as a power cut would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts pymodbus (tests/peers/modbus_server.py) and waits for its `ready` line; for TCP also
/// until the port accepts.
pub fn pymodbus(args: &[String]) -> Peer {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/modbus_server.py");
    let mut child = Command::new(python())
        .arg(script)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pymodbus");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        ready.starts_with("ready"),
        "pymodbus did not start: {ready:?}"
    );
    // Keep draining stdout so the peer never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let peer = Peer {
        name: "pymodbus".into(),
        child,
    };
    if let Some(address) = args
        .iter()
        .position(|a| a == "--tcp")
        .and_then(|i| args.get(i + 1))
    {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(address).is_err() {
            assert!(
                Instant::now() < deadline,
                "pymodbus never listened on {address}"
            );
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
    peer
}

/// A pymodbus device argument `UNIT:PROFILE:VALUES` with `values` written to a JSON file.
pub fn device_arg(dir: &Path, unit: u8, profile: &Path, values: &BTreeMap<&str, f64>) -> String {
    let path = dir.join(format!("values-{unit}-{}.json", free_port()));
    std::fs::write(&path, serde_json::to_vec(values).expect("json")).expect("write values");
    format!("{unit}:{}:{}", profile.display(), path.display())
}

/// A socat pty pair standing in for an RS-485 link: returns (peer, agent end, device end).
pub fn pty_pair(dir: &Path) -> (Peer, PathBuf, PathBuf) {
    let socat = require("socat", "socat");
    let (a, b) = (dir.join("tty-agent"), dir.join("tty-device"));
    let child = Command::new(socat)
        .arg("-d")
        .arg(format!("pty,raw,echo=0,link={}", a.display()))
        .arg(format!("pty,raw,echo=0,link={}", b.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start socat");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(a.exists() && b.exists()) {
        assert!(Instant::now() < deadline, "socat made no pty pair");
        std::thread::park_timeout(Duration::from_millis(20));
    }
    (
        Peer {
            name: "socat".into(),
            child,
        },
        a,
        b,
    )
}

/// rumqttd on a free port, on its own threads (it has no shutdown API; it ends with the test
/// process).
pub fn rumqttd() -> SocketAddr {
    use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let connections = ConnectionSettings {
        connection_timeout_ms: 5000,
        max_payload_size: 1 << 20,
        max_inflight_count: 500,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
        max_packet_rate: None,
        tenant_from_username: false,
        counters: Default::default(),
    };
    let server = ServerSettings {
        name: "v4-1".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
        max_pending_per_address: None,
    };
    let config = rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 1000,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(config);
    std::thread::spawn(move || {
        let _ = broker.start();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(listen).is_err() {
        assert!(
            Instant::now() < deadline,
            "rumqttd never listened on {listen}"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
    listen
}

/// Debian's mosquitto on `port`, with persistence in `dir` (so a durable subscriber keeps its
/// queued messages across a restart).
pub fn mosquitto(dir: &Path, port: u16, extra: &str) -> Peer {
    let binary = require("mosquitto", "mosquitto");
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_queued_messages 100000\n{extra}",
            dir.display()
        ),
    )
    .expect("write mosquitto.conf");
    let child = Command::new(binary)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "mosquitto never listened on {port}"
        );
        std::thread::park_timeout(Duration::from_millis(20));
    }
    Peer {
        name: "mosquitto".into(),
        child,
    }
}

/// A TCP proxy in front of the broker whose link can be cut (open connections reset, new ones
/// refused) and restored, as a mobile-data outage would.
pub struct Proxy {
    pub address: SocketAddr,
    up: Arc<AtomicBool>,
    epoch: Arc<AtomicU64>,
    /// Modbus TCP requests seen (client to server frames), for request counting.
    pub frames: Arc<AtomicU64>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let up = Arc::new(AtomicBool::new(true));
        let epoch = Arc::new(AtomicU64::new(0));
        let frames = Arc::new(AtomicU64::new(0));
        let (up2, epoch2, frames2) = (Arc::clone(&up), Arc::clone(&epoch), Arc::clone(&frames));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let born = epoch2.load(Ordering::SeqCst);
                let (epoch3, frames3) = (Arc::clone(&epoch2), Arc::clone(&frames2));
                tokio::spawn(pipe(client, server, born, epoch3, frames3));
            }
        });
        Proxy {
            address,
            up,
            epoch,
            frames,
        }
    }

    /// Cuts the link: every open connection is dropped, new ones are refused.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn pipe(
    client: TcpStream,
    server: TcpStream,
    born: u64,
    epoch: Arc<AtomicU64>,
    frames: Arc<AtomicU64>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let alive = || async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tick.tick().await;
            if epoch.load(Ordering::SeqCst) != born {
                return;
            }
        }
    };
    let upstream = async {
        let mut buffer = vec![0u8; 64 * 1024];
        // Count Modbus TCP frames by their MBAP length field.
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buffer[..n]);
            while pending.len() >= 6 {
                let len = usize::from(u16::from_be_bytes([pending[4], pending[5]]));
                if pending.len() < 6 + len {
                    break;
                }
                frames.fetch_add(1, Ordering::SeqCst);
                pending.drain(..6 + len);
            }
            if pending.len() > 1 << 16 {
                pending.clear();
            }
            if tokio::io::AsyncWriteExt::write_all(&mut server_write, &buffer[..n])
                .await
                .is_err()
            {
                return;
            }
        }
    };
    let downstream = tokio::io::copy(&mut server_read, &mut client_write);
    tokio::select! {
        () = alive() => {}
        () = upstream => {}
        _ = downstream => {}
    }
}

/// One message seen by the recorder.
#[derive(Debug, Clone)]
pub struct Seen {
    pub topic: String,
    pub payload: Vec<u8>,
}

impl Seen {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

/// An MQTT client that records every message under `filter`. With `durable`, its session
/// survives disconnects (clean_session = false) so a broker that persists keeps its messages.
pub struct Recorder {
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub client: rumqttc::AsyncClient,
    pub subscribed: Arc<AtomicBool>,
}

impl Recorder {
    pub async fn start(broker: SocketAddr, id: &str, filter: &str, durable: bool) -> Recorder {
        let mut options = rumqttc::MqttOptions::new(id, broker.ip().to_string(), broker.port());
        options.set_keep_alive(Duration::from_secs(5));
        options.set_clean_session(!durable);
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 1000);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscribed = Arc::new(AtomicBool::new(false));
        let (seen2, subscribed2, client2) =
            (Arc::clone(&seen), Arc::clone(&subscribed), client.clone());
        let filter = filter.to_owned();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        let _ = client2
                            .subscribe(filter.clone(), rumqttc::QoS::AtLeastOnce)
                            .await;
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        subscribed2.store(true, Ordering::SeqCst);
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        if let Ok(mut seen) = seen2.lock() {
                            seen.push(Seen {
                                topic: p.topic.clone(),
                                payload: p.payload.to_vec(),
                            });
                        }
                    }
                    Ok(_) => {}
                    Err(_) => {
                        let mut tick = tokio::time::interval(Duration::from_millis(200));
                        tick.tick().await;
                        tick.tick().await;
                    }
                }
            }
        });
        let recorder = Recorder {
            seen,
            client,
            subscribed,
        };
        let flag = Arc::clone(&recorder.subscribed);
        eventually("the recorder to subscribe", Duration::from_secs(10), || {
            flag.load(Ordering::SeqCst).then_some(())
        })
        .await;
        recorder
    }

    pub fn messages(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Telemetry payloads (JSON) of `device`, in arrival order.
    pub fn telemetry(&self, device: &str) -> Vec<serde_json::Value> {
        self.messages()
            .iter()
            .filter(|m| m.topic.ends_with(&format!("/{device}/telemetry")))
            .map(Seen::json)
            .collect()
    }

    /// Messages whose topic ends with `suffix`.
    pub fn on(&self, suffix: &str) -> Vec<serde_json::Value> {
        self.messages()
            .iter()
            .filter(|m| m.topic.ends_with(suffix))
            .map(Seen::json)
            .collect()
    }
}

/// Checks one device's received telemetry: after dropping exact duplicates (same seq, same
/// payload), the seqs form one gap-free run, and no seq was reused for a different reading.
/// Returns (distinct readings, duplicates).
pub fn check_no_loss(device: &str, received: &[serde_json::Value]) -> (usize, usize) {
    let mut by_seq: BTreeMap<u64, serde_json::Value> = BTreeMap::new();
    let mut duplicates = 0;
    for message in received {
        let seq = message["seq"].as_u64().expect("seq");
        if let Some(first) = by_seq.get(&seq) {
            assert_eq!(
                first, message,
                "{device}: seq {seq} reused for a different reading"
            );
            duplicates += 1;
        } else {
            by_seq.insert(seq, message.clone());
        }
    }
    let seqs: Vec<u64> = by_seq.keys().copied().collect();
    let gaps: Vec<(u64, u64)> = seqs
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        gaps.is_empty(),
        "{device}: readings lost between seqs {gaps:?}"
    );
    // Event time grows with seq: a duplicate is never a new reading under a new number.
    let ts: Vec<i64> = by_seq
        .values()
        .map(|m| m["ts_ms"].as_i64().unwrap_or(0))
        .collect();
    assert!(
        ts.windows(2).all(|w| w[0] < w[1]),
        "{device}: ts_ms not increasing with seq"
    );
    (by_seq.len(), duplicates)
}

/// The all-types test profile shipped with the tests.
pub fn all_types_profile() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/profiles/peer-all-types.toml")
}

/// Values the all-types profile is served with (engineering units).
pub fn all_types_values() -> BTreeMap<&'static str, f64> {
    BTreeMap::from([
        ("flame_on", 1.0),
        ("defrost_active", 1.0),
        ("running", 1.0),
        ("indoor_temp_c", -12.3),
        ("outdoor_temp_c", -25.4),
        ("energy_kwh", 123456.7),
        ("runtime_h", 70000.0),
        ("return_temp_c", -5.25),
        ("dhw_temp_c", 48.5),
        ("electric_power_w", 1234.5),
        ("heat_output_w", 4321.25),
        ("flow_temp_c", 35.75),
        ("discharge_temp_c", 88.5),
        ("fault_code", 6.0),
        ("setpoint_c", 21.5),
        ("water_pressure_bar", 1.45),
        ("compressor_freq_hz", 55.0),
        ("x_pump_on", 1.0),
        ("x_cop", 3.25),
    ])
}

/// Asserts `values` holds every expected value within 1e-3.
pub fn assert_values(what: &str, values: &wire::Values, expected: &BTreeMap<&str, f64>) {
    for (name, want) in expected {
        let got = values.get(name);
        assert!(
            got.is_some_and(|g| (g - want).abs() < 1e-3),
            "{what}: {name} = {got:?}, expected {want}"
        );
    }
}

/// Writes an agent config; `devices` is TOML for `[[devices]]` (and `[[buses]]`) entries.
pub fn agent_config(dir: &Path, broker: SocketAddr, devices: &str, extra: &str) -> PathBuf {
    let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/profiles");
    let text = format!(
        "agent_id = \"box-it\"\ntownship = \"yanqing\"\nprofiles_dir = \"{}\"\ndata_dir = \"data\"\n{extra}\n[mqtt]\nhost = \"{}\"\nport = {}\nkeep_alive = \"5s\"\nmax_reconnect_backoff = \"2s\"\n\n[polling]\ninterval = \"100ms\"\ntimeout = \"500ms\"\n\n[queue]\nfsync_interval = \"100ms\"\n\n[health]\ninterval = \"1s\"\n\n{devices}",
        profiles.display(),
        broker.ip(),
        broker.port()
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).expect("write agent config");
    path
}

/// The edge-agent binary running `run --config`.
pub fn agent_process(config: &Path) -> Peer {
    agent_binary_process(Path::new(env!("CARGO_BIN_EXE_edge-agent")), config)
}

/// An edge-agent binary (another build of it) running `run --config`, its log next to the
/// config.
pub fn agent_binary_process(binary: &Path, config: &Path) -> Peer {
    let log = std::fs::File::create(config.with_extension("log")).expect("log file");
    let child = Command::new(binary)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start edge-agent");
    Peer {
        name: "edge-agent".into(),
        child,
    }
}

/// Reads `count` entries of a Modbus table (`0` coils, `1` discrete inputs, `3` input
/// registers, `4` holding registers) from `start` at unit 1 of the Modbus TCP peer on `port`
/// with Debian's mbpoll (PDU addressing, one shot): address to value, or mbpoll's error.
pub fn mbpoll_read(
    mbpoll: &Path,
    port: u16,
    table: &str,
    start: u16,
    count: u16,
) -> Result<BTreeMap<u16, u16>, String> {
    let output = Command::new(mbpoll)
        .args([
            "-m",
            "tcp",
            "-p",
            &port.to_string(),
            "-a",
            "1",
            "-0",
            "-r",
            &start.to_string(),
            "-c",
            &count.to_string(),
            "-t",
            table,
            "-1",
            "127.0.0.1",
        ])
        .output()
        .map_err(|e| format!("cannot run mbpoll: {e}"))?;
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (index, value) = line.trim().strip_prefix('[')?.split_once("]:")?;
            let value = value.split_whitespace().next()?;
            Some((index.parse().ok()?, value.parse().ok()?))
        })
        .collect())
}
