//! The `demo` binary as a person runs it: `--help` lists its options, and a small demo (a few
//! households, any free port) serves the API, injects a fault that reaches the live event stream
//! as an alert, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const DEMO: &str = env!("CARGO_BIN_EXE_demo");

/// The options `demo --help` must list: those of the former `gateway demo`, kept exactly, and
/// the simulated crew's.
const OPTIONS: &[&str] = &[
    "--households",
    "--seed",
    "--fault-every",
    "--repair-after",
    "--poll-every",
    "--http",
    "--mqtt",
    "--data-dir",
    "--log-json",
    "--crew",
    "--technicians-per-team",
    "--time-scale",
];

#[test]
fn help_lists_every_option() {
    let output = Command::new(DEMO)
        .arg("--help")
        .output()
        .expect("run demo --help");
    assert!(output.status.success(), "demo --help failed: {output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for option in OPTIONS {
        assert!(
            help.contains(option),
            "demo --help does not list {option}:\n{help}"
        );
    }
}

/// The demo process, killed if the test ends before it stopped by itself. Its log (stderr) is
/// kept in `log` after a failed run.
struct Running {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

impl Running {
    fn start() -> Running {
        let scratch = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let data_dir = scratch.join(format!("demo-test-{}", std::process::id()));
        let log = scratch.join(format!("demo-test-{}.log", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut child = Command::new(DEMO)
            .args([
                "--households",
                "4",
                "--http",
                "127.0.0.1:0",
                "--fault-every",
                "1s",
                "--poll-every",
                "1s",
                "--data-dir",
            ])
            .arg(&data_dir)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create the demo's log file"))
            .spawn()
            .expect("start demo");
        let stdout = child.stdout.take().expect("demo stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Running {
            child: Some(child),
            lines,
            data_dir,
            log,
        }
    }

    /// The first stdout line for which `pick` returns something, within `limit`.
    fn wait_for_line<T>(&self, limit: Duration, pick: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(found) = pick(&line) {
                        return found;
                    }
                }
                Err(error) => panic!(
                    "the demo printed no such line within {limit:?} ({error}); log: {}",
                    self.log.display()
                ),
            }
        }
    }

    /// Sends SIGTERM and waits for the exit status, within `limit`.
    fn terminate(mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("the demo is running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("send SIGTERM");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| {
                panic!(
                    "the demo did not stop within {limit:?} of SIGTERM; log: {}",
                    self.log.display()
                )
            })
            .expect("wait for the demo")
    }
}

/// One GET over HTTP/1.1 with `Connection: close`: the status line and the body.
fn get(http: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(http).expect("connect to the demo's API");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Reads the live event stream until an `alert` event arrives, within `limit`.
fn wait_for_alert_event(http: SocketAddr, limit: Duration, log: &std::path::Path) {
    let deadline = Instant::now() + limit;
    let mut stream = TcpStream::connect(http).expect("connect to the event stream");
    write!(
        stream,
        "GET /api/v1/stream HTTP/1.1\r\nHost: {http}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("send request");
    let mut seen = Vec::new();
    let mut buffer = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("event: alert") {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no alert event on the stream within {limit:?} (log: {}); got:\n{}",
            log.display(),
            String::from_utf8_lossy(&seen)
        );
        stream.set_read_timeout(Some(left)).expect("read timeout");
        match stream.read(&mut buffer) {
            Ok(0) => panic!(
                "the event stream ended; got:\n{}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(error) if error.kind() == std::io::ErrorKind::TimedOut => continue,
            Err(error) => panic!("reading the event stream: {error}"),
        }
    }
}

#[test]
fn a_small_demo_serves_the_api_raises_an_alert_and_stops_on_sigterm() {
    let demo = Running::start();
    // The banner line: `  HTTP API        http://127.0.0.1:PORT/api/v1/summary`.
    let http: SocketAddr = demo.wait_for_line(Duration::from_secs(60), |line| {
        line.trim()
            .strip_prefix("HTTP API")
            .and_then(|rest| rest.trim().strip_prefix("http://"))
            .and_then(|rest| rest.strip_suffix("/api/v1/summary"))
            .and_then(|addr| addr.parse().ok())
    });
    let (status, body) = get(http, "/api/v1/summary");
    assert!(
        status.contains(" 200 "),
        "GET /api/v1/summary: {status}\n{body}"
    );
    let summary: serde_json::Value = serde_json::from_str(&body).expect("summary is JSON");
    assert!(summary.get("devices").is_some(), "summary: {summary}");

    // A fault injected into a simulated heater travels Modbus -> edge agent -> MQTT -> rules.
    wait_for_alert_event(http, Duration::from_secs(90), &demo.log);

    let status = demo.terminate(Duration::from_secs(30));
    assert!(status.success(), "the demo exited with {status} on SIGTERM");
}
