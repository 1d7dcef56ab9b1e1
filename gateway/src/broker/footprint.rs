//! What an idle edge box costs the embedded broker, measured: the test runs the broker in a
//! child process (this test binary again, so no other test's allocations land in it), connects
//! boxes to it as edge agents do (CONNECT with a last will, a retained QoS 1 `online` status,
//! a QoS 1 subscription to their command topic), and reads the child's resident memory before
//! and after. The child's glibc fills every block it hands out (`MALLOC_PERTURB_`), so what the
//! broker reserves counts whether or not it writes to it: a fixed buffer re-added per
//! connection fails it (rumqttd 0.20 reserved over 400 KB for such a box, see
//! vendor/rumqttd/PATCHES.md).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::config::BrokerConfig;

/// Set in the child's environment: run the broker instead of measuring it.
const CHILD: &str = "GATEWAY_BROKER_FOOTPRINT_CHILD";
/// The child's line announcing its listener.
const LISTENING: &str = "footprint-broker-listening ";
/// Boxes connected before the first reading (the broker's one-off allocations come first).
const WARM_UP_BOXES: usize = 50;
/// Boxes measured.
const BOXES: usize = 400;
/// Most resident memory one idle box may add to the broker: measured 9.4–9.6 KB in a debug
/// build, so a 10 KiB buffer kept per connection fails it; upstream rumqttd reserved over
/// 400 KB for a box like these (its queues and the command filter's log:
/// vendor/rumqttd/PATCHES.md).
const MAX_BYTES_PER_BOX: u64 = 14 * 1024;
/// A box's socket reads give up after this: a broker that stopped answering fails the test.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// This test's name as the test harness knows it (without the crate's name).
fn test_name() -> String {
    let module = module_path!()
        .split_once("::")
        .map_or(module_path!(), |(_, rest)| rest);
    format!("{module}::an_idle_box_costs_the_embedded_broker_a_few_kib")
}

#[test]
fn an_idle_box_costs_the_embedded_broker_a_few_kib() {
    if std::env::var_os(CHILD).is_some() {
        serve_until_stdin_closes();
        return;
    }
    let mut child = Command::new(std::env::current_exe().expect("this test binary"))
        .args([
            test_name().as_str(),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("MALLOC_PERTURB_", "165")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the broker's child process");
    let measured = measure(&mut child);
    let _ = child.kill();
    let _ = child.wait();
    let (before, after) = measured;
    let per_box = after.saturating_sub(before) / BOXES as u64;
    eprintln!("the embedded broker: {per_box} bytes resident per idle box ({BOXES} boxes)");
    assert!(
        per_box <= MAX_BYTES_PER_BOX,
        "{per_box} bytes resident per idle box (VmRSS {before} -> {after} bytes for {BOXES} boxes); at most {MAX_BYTES_PER_BOX}"
    );
}

/// Connects the boxes to the child's broker: its VmRSS (bytes) after the warm-up boxes and
/// after the measured ones, every box still connected.
fn measure(child: &mut Child) -> (u64, u64) {
    let stdout = child.stdout.take().expect("the child's stdout");
    let address = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        // The harness prints `test {name} ... ` before the test's own output, on the same line.
        .find_map(|line| {
            line.split_once(LISTENING)?
                .1
                .trim()
                .parse::<SocketAddr>()
                .ok()
        })
        .expect("the child announces its listener");
    let pid = child.id().to_string();
    let mut boxes = Vec::with_capacity(WARM_UP_BOXES + BOXES);
    for index in 0..WARM_UP_BOXES {
        boxes.push(connect_box(address, index));
    }
    let before = resident_bytes(&pid);
    for index in WARM_UP_BOXES..WARM_UP_BOXES + BOXES {
        boxes.push(connect_box(address, index));
    }
    let after = resident_bytes(&pid);
    drop(boxes);
    (before, after)
}

fn resident_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// The child: the broker as the gateway starts it, with ingest's link subscribed and drained,
/// until the parent closes stdin.
fn serve_until_stdin_closes() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        ..BrokerConfig::default()
    };
    let broker = super::start(&config).expect("broker");
    let mut source = super::EmbeddedSource::open(broker.links.clone()).expect("ingest link");
    source.subscribe().expect("subscribe");
    runtime.spawn(async move { while source.next().await.is_ok() {} });
    // rumqttd binds on its own thread: announce the listener once it accepts.
    let deadline = std::time::Instant::now() + READ_TIMEOUT;
    while TcpStream::connect(broker.listen).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the broker never listened on {}",
            broker.listen
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("{LISTENING}{}", broker.listen);
    let _ = std::io::stdout().flush();
    let mut rest = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut rest);
}

/// An MQTT 3.1.1 packet: its type byte, the remaining length, the body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut length = body.len();
    loop {
        let mut byte = (length % 128) as u8;
        length /= 128;
        if length > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if length == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// Reads one packet of `length` bytes and checks its type byte.
fn expect(stream: &mut TcpStream, first: u8, length: usize, what: &str) {
    let mut buffer = vec![0u8; length];
    stream
        .read_exact(&mut buffer)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(buffer[0], first, "{what}: {buffer:?}");
}

/// One edge box, connected as the agent connects: CONNECT with its offline status as last
/// will, the retained `online` status (QoS 1, acknowledged), and its command subscription
/// (QoS 1, acknowledged). Returns once the broker has acknowledged all three.
fn connect_box(address: SocketAddr, index: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .expect("read timeout");
    let id = format!("box-{index:05}");
    let status = format!("heating/v1/yanqing/{id}/status");
    let mut connect = Vec::new();
    string(&mut connect, "MQTT");
    // Protocol level 4; clean session, will QoS 1, will retained; keep-alive 600 s.
    connect.extend_from_slice(&[4, 0b0010_1110, 0x02, 0x58]);
    string(&mut connect, &id);
    string(&mut connect, &status);
    string(&mut connect, r#"{"v":1,"status":"offline"}"#);
    stream.write_all(&packet(0x10, &connect)).expect("CONNECT");
    expect(&mut stream, 0x20, 4, "CONNACK");
    let mut publish = Vec::new();
    string(&mut publish, &status);
    publish.extend_from_slice(&1u16.to_be_bytes());
    publish.extend_from_slice(
        format!(r#"{{"v":1,"status":"online","agent_id":"{id}","devices":["{id}-hp"]}}"#)
            .as_bytes(),
    );
    // PUBLISH, QoS 1, retained.
    stream.write_all(&packet(0x33, &publish)).expect("PUBLISH");
    expect(&mut stream, 0x40, 4, "PUBACK");
    let mut subscribe = 2u16.to_be_bytes().to_vec();
    string(&mut subscribe, &format!("heating/v1/yanqing/{id}-hp/cmd"));
    subscribe.push(1);
    stream
        .write_all(&packet(0x82, &subscribe))
        .expect("SUBSCRIBE");
    expect(&mut stream, 0x90, 5, "SUBACK");
    stream
}
