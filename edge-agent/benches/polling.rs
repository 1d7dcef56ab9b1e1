//! Benchmark: the `edge-agent` binary polling 8 devices x 40 registers every 10 s (pymodbus
//! serves them over Modbus TCP, rumqttd takes the telemetry): resident memory (targets: 4 MiB
//! with 8 devices at 10 s) and CPU share of one core, requests per poll cycle against the
//! minimum, the bytes per reading on the uplink (as the agent reports it, and as delivered), and
//! the stripped binary size (target: 5 MB).
//! Run: `cargo bench -p edge-agent --bench polling` (BENCH_SECONDS=60 by default). The binary
//! is the bench profile's build unless `EDGE_AGENT_BIN` names another, e.g. the field-box build
//! of `cargo build --profile edge -p edge-agent`.

#[path = "../tests/agent/support.rs"]
mod support;

use std::time::{Duration, Instant};

use edge_agent::plan::PollPlan;
use edge_agent::profile::Profile;
use support::*;

fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run(seconds));
}

async fn run(seconds: u64) {
    let dir = scratch("bench-polling");
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/profiles/bench-40.toml");
    let profile = Profile::load(&source).expect("bench profile");
    let words: u16 = profile.registers.iter().map(|r| r.value_type.width()).sum();

    let broker = rumqttd();
    let recorder = Recorder::start(broker, "bench-recorder", "heating/v1/#", false).await;
    let (_device, port) = serve_devices(&dir, &source, &profile);
    let config = write_config(&dir, &source, broker, port);
    let binary = std::env::var_os("EDGE_AGENT_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_BIN_EXE_edge-agent")));
    let agent = agent_binary_process(&binary, &config);
    let pid = agent.pid();
    eventually(
        "a reading from each of the 8 devices",
        Duration::from_secs(60),
        || {
            (1..=8)
                .all(|u| !recorder.telemetry(&format!("bench-{u}")).is_empty())
                .then_some(())
        },
    )
    .await;

    let usage = Usage::sample(pid, seconds, || telemetry(&recorder).len()).await;
    let memory = Memory::read(pid, &dir);
    let uplink = Uplink::measure(&recorder, usage.received_before);
    let binary_size = BinarySize::measure(&dir, &binary);
    let plan = PollPlan::new(&profile, 8);

    let wall = usage.wall;
    println!("edge-agent polling benchmark: 8 devices x {words} registers every 10 s, {wall:.0} s measured");
    println!(
        "  readings published          {} (expected about {})",
        uplink.received,
        (wall / 10.0 * 8.0) as u64
    );
    usage.print_rss();
    memory.print();
    uplink.print();
    println!(
        "  CPU                         {:.3} % of one core   target <= 1 %",
        usage.cpu_pct
    );
    println!("  requests per poll cycle     {} (minimum possible: 1, one table of {words} contiguous registers)", plan.blocks.len());
    binary_size.print(&binary);
}

/// Starts pymodbus serving 8 devices of the bench profile (units 1 to 8) on a free port.
fn serve_devices(
    dir: &std::path::Path,
    source: &std::path::Path,
    profile: &Profile,
) -> (Peer, u16) {
    let values: std::collections::BTreeMap<&str, f64> = profile
        .registers
        .iter()
        .map(|r| (r.name.as_str(), 1.0))
        .collect();
    let port = free_port();
    let mut args = vec!["--tcp".to_owned(), format!("127.0.0.1:{port}")];
    for unit in 1..=8u8 {
        args.push("--device".into());
        args.push(device_arg(dir, unit, source, &values));
    }
    (pymodbus(&args), port)
}

/// Writes the agent's config (the 8 devices every 10 s, the profile in its folder); returns
/// its path.
fn write_config(
    dir: &std::path::Path,
    source: &std::path::Path,
    broker: std::net::SocketAddr,
    port: u16,
) -> std::path::PathBuf {
    let profiles = dir.join("profiles");
    std::fs::create_dir_all(&profiles).expect("profiles dir");
    std::fs::copy(source, profiles.join("bench-40.toml")).expect("copy profile");
    let mut devices = String::new();
    for unit in 1..=8 {
        devices.push_str(&format!(
            "[[devices]]\nid = \"bench-{unit}\"\nprofile = \"bench-40\"\nunit_id = {unit}\ninterval = \"10s\"\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:{port}\" }}\n\n"
        ));
    }
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "agent_id = \"box-bench\"\ntownship = \"yanqing\"\nprofiles_dir = \"profiles\"\n\n[mqtt]\nhost = \"{}\"\nport = {}\n\n[health]\ninterval = \"10s\"\n\n{devices}",
            broker.ip(),
            broker.port()
        ),
    )
    .expect("write config");
    config
}

/// CPU and resident memory sampled once a second over the measured time.
struct Usage {
    /// Telemetry messages seen before the measured time.
    received_before: usize,
    wall: f64,
    cpu_pct: f64,
    rss_max: u64,
    rss_sum: u64,
    samples: u64,
}

impl Usage {
    /// Samples the agent `pid` for `seconds`; `received` counts the telemetry seen so far.
    async fn sample(pid: u32, seconds: u64, received: impl Fn() -> usize) -> Usage {
        let ticks_before = cpu_ticks(pid).expect("cpu ticks");
        let received_before = received();
        let start = Instant::now();
        let mut rss_max = 0;
        let mut rss_sum = 0;
        let mut samples = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        while start.elapsed() < Duration::from_secs(seconds) {
            tick.tick().await;
            if let Some(rss) = proc_field(pid, "status", "VmRSS:") {
                rss_max = rss_max.max(rss);
                rss_sum += rss;
                samples += 1;
            }
        }
        let wall = start.elapsed().as_secs_f64();
        let ticks = cpu_ticks(pid).expect("cpu ticks") - ticks_before;
        let cpu_pct = ticks as f64 / clock_ticks_per_second() / wall * 100.0;
        Usage {
            received_before,
            wall,
            cpu_pct,
            rss_max,
            rss_sum,
            samples,
        }
    }

    fn print_rss(&self) {
        println!(
            "  RSS average / max (sampled) {:.1} MiB / {:.1} MiB",
            self.rss_sum as f64 / self.samples.max(1) as f64 / 1024.0,
            self.rss_max as f64 / 1024.0
        );
    }
}

/// The agent's memory at the end of the measured time (KiB), by kind and by mapping.
struct Memory {
    peak: u64,
    anon: u64,
    file: u64,
    threads: u64,
    mappings: Vec<(String, u64)>,
    /// A copy of the process's `smaps`, for the whole picture.
    smaps: std::path::PathBuf,
}

impl Memory {
    fn read(pid: u32, dir: &std::path::Path) -> Memory {
        let peak = proc_field(pid, "status", "VmHWM:").unwrap_or(0);
        let anon = proc_field(pid, "status", "RssAnon:").unwrap_or(0);
        let file = proc_field(pid, "status", "RssFile:").unwrap_or(0);
        let threads = proc_field(pid, "status", "Threads:").unwrap_or(0);
        let mappings = rss_by_mapping(pid);
        let smaps = dir.join("smaps.txt");
        let _ = std::fs::copy(format!("/proc/{pid}/smaps"), &smaps);
        Memory {
            peak,
            anon,
            file,
            threads,
            mappings,
            smaps,
        }
    }

    fn print(&self) {
        println!(
            "  RSS peak (VmHWM)            {:.2} MiB   target <= 4 MiB",
            self.peak as f64 / 1024.0
        );
        println!(
            "  RSS at the end              {:.2} MiB anonymous + {:.2} MiB file-backed, {} thread(s)",
            self.anon as f64 / 1024.0,
            self.file as f64 / 1024.0,
            self.threads
        );
        for (mapping, kib) in &self.mappings {
            println!("    {kib:>6} KiB  {mapping}");
        }
        println!("    (every mapping: {})", self.smaps.display());
    }
}

/// The bytes per reading on the uplink: as the agent reports them, and as delivered.
struct Uplink {
    /// Readings received during the measured time.
    received: usize,
    /// Readings received in all.
    delivered: usize,
    delivered_mean: f64,
    payload_mean: f64,
    reported: serde_json::Value,
}

impl Uplink {
    fn measure(recorder: &Recorder, received_before: usize) -> Uplink {
        let delivered = telemetry(recorder);
        let received = delivered.len() - received_before;
        let packets: Vec<u64> = delivered
            .iter()
            .map(|m| {
                let mut publish = rumqttc::Publish::new(
                    m.topic.as_str(),
                    rumqttc::QoS::AtLeastOnce,
                    m.payload.clone(),
                );
                publish.pkid = 1;
                publish.size() as u64
            })
            .collect();
        let delivered_mean = packets.iter().sum::<u64>() as f64 / packets.len().max(1) as f64;
        let payload_mean = delivered.iter().map(|m| m.payload.len()).sum::<usize>() as f64
            / delivered.len().max(1) as f64;
        let reported = recorder
            .on("/box-bench/health")
            .last()
            .map(|h| h["mqtt"]["bytes_per_reading"].clone())
            .unwrap_or(serde_json::Value::Null);
        Uplink {
            received,
            delivered: delivered.len(),
            delivered_mean,
            payload_mean,
            reported,
        }
    }

    fn print(&self) {
        println!(
            "  bytes per reading           {} reported by the agent; {:.1} delivered (MQTT PUBLISH, payload {:.1}); {} readings",
            self.reported, self.delivered_mean, self.payload_mean, self.delivered
        );
    }
}

/// The agent binary's size, as built and stripped.
struct BinarySize {
    built: u64,
    stripped: u64,
    strip_ok: bool,
}

impl BinarySize {
    fn measure(dir: &std::path::Path, binary: &std::path::Path) -> BinarySize {
        let stripped = dir.join("edge-agent.stripped");
        std::fs::copy(binary, &stripped).expect("copy binary");
        let strip_ok = std::process::Command::new("strip")
            .arg(&stripped)
            .status()
            .is_ok_and(|s| s.success());
        let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        BinarySize {
            built: size(binary),
            stripped: size(&stripped),
            strip_ok,
        }
    }

    fn print(&self, binary: &std::path::Path) {
        println!(
            "  binary size                 {:.2} MiB, stripped {:.2} MiB ({} bytes){}   target <= 5 MB   {}",
            self.built as f64 / 1048576.0,
            self.stripped as f64 / 1048576.0,
            self.stripped,
            if self.strip_ok { "" } else { " (strip failed)" },
            binary.display()
        );
    }
}

/// Resident KiB of a process by mapping (file name, or `[heap]`, `[stack]`, `anonymous`),
/// largest first.
fn rss_by_mapping(pid: u32) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut sums: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut current = String::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            current = fields.nth(4).unwrap_or("anonymous").to_owned();
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *sums.entry(current.clone()).or_default() += kib;
        }
    }
    let mut sums: Vec<(String, u64)> = sums.into_iter().filter(|(_, kib)| *kib > 0).collect();
    sums.sort_by_key(|sum| std::cmp::Reverse(sum.1));
    sums
}

/// The telemetry messages the recorder has seen, in arrival order.
fn telemetry(recorder: &Recorder) -> Vec<Seen> {
    recorder
        .messages()
        .into_iter()
        .filter(|m| m.topic.ends_with("/telemetry"))
        .collect()
}
