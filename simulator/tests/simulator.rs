//! Integration tests of the simulator: a started [`Simulation`] read over real Modbus TCP
//! through every shipped profile, fault injection over Modbus and HTTP, and the binary's ready
//! line, manifest and SIGTERM shutdown; and (in `bench/`) `simulator bench winter` end to end
//! against the real gateway. Every wait polls a condition up to a deadline.

mod bench;
mod common;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use edge_agent::profile::{decode, Profile, Register, RegisterKind, ValueType};
use simulator::model::brand_code;
use simulator::{load_profiles, HouseholdInfo, HouseholdSnapshot, SimConfig, Simulation};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_modbus::client::Context;
use tokio_modbus::prelude::*;
use tokio_util::sync::CancellationToken;
use wire::{DeviceId, DeviceKind, FaultCategory};

const DEADLINE: Duration = Duration::from_secs(20);

fn profiles_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../profiles")
}

/// A started simulation that stops when dropped.
struct Running {
    sim: Simulation,
    shutdown: CancellationToken,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(households: usize, seed: u64, speed: f64) -> Running {
    let shutdown = CancellationToken::new();
    let mut config = SimConfig::new(households, seed, profiles_dir());
    config.speed = speed;
    let sim = Simulation::start(config, shutdown.clone())
        .await
        .expect("simulation starts");
    Running { sim, shutdown }
}

/// Runs `future` to completion or fails the test at the deadline.
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

/// Polls `condition` until it holds, failing the test at the deadline.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    within(what, async {
        let mut ticks = tokio::time::interval(Duration::from_millis(10));
        while !condition() {
            ticks.tick().await;
        }
    })
    .await;
}

/// One household per shipped profile.
fn one_per_profile(sim: &Simulation) -> Vec<(HouseholdInfo, Profile)> {
    let profiles = load_profiles(&profiles_dir()).expect("shipped profiles");
    profiles
        .iter()
        .map(|profile| {
            let household = sim
                .households()
                .into_iter()
                .find(|h| h.profile_id == profile.id)
                .unwrap_or_else(|| panic!("no household uses profile {}", profile.id));
            (household, Profile::clone(profile))
        })
        .collect()
}

async fn connect(household: &HouseholdInfo) -> Context {
    within(
        "connect to the household's Modbus listener",
        tcp::connect_slave(household.modbus_addr, Slave(household.unit_id)),
    )
    .await
    .expect("Modbus connection")
}

/// Reads one register over Modbus and decodes it with the profile.
async fn read_register(ctx: &mut Context, register: &Register) -> f64 {
    let width = register.value_type.width();
    let words = match register.kind {
        RegisterKind::Input => ctx.read_input_registers(register.address, width).await,
        RegisterKind::Holding => ctx.read_holding_registers(register.address, width).await,
        RegisterKind::Coil => ctx
            .read_coils(register.address, 1)
            .await
            .map(|r| r.map(|bits| vec![u16::from(bits[0])])),
        RegisterKind::Discrete => ctx
            .read_discrete_inputs(register.address, 1)
            .await
            .map(|r| r.map(|bits| vec![u16::from(bits[0])])),
    }
    .expect("transport works")
    .unwrap_or_else(|e| panic!("{} answered with exception {e:?}", register.name));
    decode(register, &words).unwrap_or_else(|| panic!("{} does not decode", register.name))
}

fn resolution(register: &Register, value: f64) -> f64 {
    match register.value_type {
        ValueType::F32 => value.abs() * 1e-6 + 1e-6,
        ValueType::Bit | ValueType::Bool => 1e-9,
        _ => register.scale.abs() / 2.0 * (1.0 + 1e-9) + 1e-9,
    }
}

fn snapshot(sim: &Simulation, device: &DeviceId) -> HouseholdSnapshot {
    sim.snapshot(device).expect("known device")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoded_registers_match_the_model_through_every_shipped_profile() {
    // Frozen time (speed 0): the model cannot move between the read and the comparison.
    let running = start(20, 4, 0.0).await;
    let sim = &running.sim;
    let pairs = one_per_profile(sim);
    assert_eq!(
        pairs.len(),
        5,
        "two heat-pump and three boiler profiles ship"
    );
    for (household, profile) in &pairs {
        let mut ctx = connect(household).await;
        let before = snapshot(sim, &household.device_id);
        for register in &profile.registers {
            let model_value = before.values.get(&register.name).unwrap_or_else(|| {
                panic!(
                    "{} maps {} which the model does not produce",
                    profile.id, register.name
                )
            });
            let decoded = within("read a register", read_register(&mut ctx, register)).await;
            assert!(
                (decoded - model_value).abs() <= resolution(register, model_value),
                "{} {}: Modbus {decoded} vs model {model_value}",
                profile.id,
                register.name
            );
        }
        assert_eq!(before.values, snapshot(sim, &household.device_id).values);
        let counts = sim
            .request_counts(&household.device_id)
            .expect("known device");
        assert_eq!(counts.reads(), profile.registers.len() as u64);
        assert_eq!(counts.exceptions, 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_fault_shows_up_as_the_brands_code_and_stops_the_heater() {
    let running = start(20, 4, 0.0).await;
    let sim = &running.sim;
    for (household, profile) in one_per_profile(sim) {
        let category = match household.kind {
            DeviceKind::HeatPump => FaultCategory::WaterFlow,
            DeviceKind::GasBoiler => FaultCategory::LowWaterPressure,
        };
        let fault_register = profile.register("fault_code").expect("fault register");
        let running_register = profile.register("running").expect("running register");
        let mut ctx = connect(&household).await;
        assert_eq!(read_register(&mut ctx, fault_register).await, 0.0);

        sim.inject_fault(&household.device_id, category)
            .expect("known device");
        let expected = profile
            .code_for(category)
            .expect("every shipped profile maps it");
        assert_eq!(brand_code(&profile, category), expected);
        assert_eq!(
            read_register(&mut ctx, fault_register).await,
            f64::from(expected),
            "{}",
            profile.id
        );
        assert_eq!(read_register(&mut ctx, running_register).await, 0.0);
        let snap = snapshot(sim, &household.device_id);
        assert_eq!(snap.fault.map(|f| f.category), Some(category));
        assert_eq!(snap.injected, Some(category));

        sim.clear_fault(&household.device_id).expect("known device");
        assert_eq!(read_register(&mut ctx, fault_register).await, 0.0);
        assert_eq!(snapshot(sim, &household.device_id).fault, None);
    }
    let stranger = DeviceId::parse("yanqing-nowhere-9999").expect("valid id");
    assert!(sim.inject_fault(&stranger, FaultCategory::Other).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_modbus_exceptions_and_the_connection_survives() {
    let running = start(20, 4, 0.0).await;
    let sim = &running.sim;
    let (household, profile) = one_per_profile(sim)
        .into_iter()
        .find(|(_, p)| p.id == "beifeng-ashp")
        .expect("a Beifeng household");
    let mut ctx = connect(&household).await;
    let exception = |result: tokio_modbus::Result<Vec<u16>>| result.expect("transport works").err();

    assert_eq!(
        exception(ctx.read_input_registers(60_000, 1).await),
        Some(ExceptionCode::IllegalDataAddress),
        "unmapped table"
    );
    assert_eq!(
        exception(ctx.read_holding_registers(2005, 2).await),
        Some(ExceptionCode::IllegalDataAddress),
        "a gap between registers"
    );
    assert_eq!(
        exception(ctx.read_holding_registers(2040, 10).await),
        Some(ExceptionCode::IllegalDataAddress),
        "past the last register"
    );
    let merged = ctx
        .read_holding_registers(2000, 44)
        .await
        .expect("transport works");
    assert_eq!(
        merged.map(|w| w.len()),
        Ok(44),
        "a merged block across gaps is legal"
    );

    let masked = ctx
        .masked_write_register(2002, 0xFFFF, 0)
        .await
        .expect("transport works");
    assert_eq!(masked, Err(ExceptionCode::IllegalFunction));
    let custom = ctx
        .call(Request::Custom(0x41, Cow::Borrowed(&[1, 2, 3])))
        .await
        .expect("transport works");
    assert_eq!(custom, Err(ExceptionCode::IllegalFunction));

    // The set point is writable within 10..=28 °C; the fault code is not writable.
    let setpoint = profile.register("setpoint_c").expect("set point register");
    let raw = |celsius: f64| ((celsius - setpoint.offset) / setpoint.scale).round() as u16;
    let write = ctx
        .write_single_register(2002, raw(22.5))
        .await
        .expect("transport works");
    assert_eq!(write, Ok(()));
    assert_eq!(
        snapshot(sim, &household.device_id)
            .values
            .get("setpoint_c")
            .expect("setpoint_c"),
        22.5
    );
    assert_eq!(
        ctx.write_single_register(2002, raw(35.0))
            .await
            .expect("transport works"),
        Err(ExceptionCode::IllegalDataValue)
    );
    assert_eq!(
        ctx.write_single_register(2000, 0)
            .await
            .expect("transport works"),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        ctx.write_single_coil(0, true)
            .await
            .expect("transport works"),
        Err(ExceptionCode::IllegalDataAddress)
    );
    assert_eq!(
        snapshot(sim, &household.device_id)
            .values
            .get("setpoint_c")
            .expect("setpoint_c"),
        22.5
    );

    assert!((read_register(&mut ctx, setpoint).await - 22.5).abs() < 1e-9);
    let counts = sim
        .request_counts(&household.device_id)
        .expect("known device");
    assert_eq!(counts.read_input_registers, 1);
    assert_eq!(counts.read_holding_registers, 4);
    assert_eq!(counts.write_single_register, 3);
    assert_eq!(counts.write_single_coil, 1);
    assert_eq!(counts.other, 2);
    assert_eq!(counts.exceptions, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulated_time_runs_at_the_configured_speed_and_a_faulted_house_cools() {
    // Ten simulated hours per wall second.
    let running = start(3, 9, 36_000.0).await;
    let sim = &running.sim;
    let household = &sim.households()[0];
    let device = &household.device_id;
    let start = snapshot(sim, device);
    sim.inject_fault(device, FaultCategory::PowerSupply)
        .expect("known device");
    wait_until("two simulated hours pass", || {
        snapshot(sim, device).sim_time_ms >= start.sim_time_ms + 2 * 3_600_000
    })
    .await;
    let later = snapshot(sim, device);
    assert_eq!(later.values.get("running").expect("running"), 0.0);
    assert!(
        later.values.get("indoor_temp_c").expect("indoor_temp_c")
            < start.values.get("indoor_temp_c").expect("indoor_temp_c") - 0.5,
        "indoor went from {} to {} °C in two unheated winter hours",
        start.values.get("indoor_temp_c").expect("indoor_temp_c"),
        later.values.get("indoor_temp_c").expect("indoor_temp_c")
    );
}

/// A minimal HTTP/1.1 client: one request per connection, returns status and body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    within("an HTTP exchange", async {
        let mut stream = TcpStream::connect(addr).await.expect("connect to the API");
        let body = body.unwrap_or("");
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("send request");
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .expect("read response");
        let text = String::from_utf8(response).expect("UTF-8 response");
        let (head, body) = text.split_once("\r\n\r\n").expect("HTTP response");
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        (status, body.to_owned())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_api_injects_and_clears_faults_and_refuses_unknown_devices() {
    let running = start(16, 2, 0.0).await;
    let sim = running.sim.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let api = tokio::spawn(simulator::api::serve(
        listener,
        sim.clone(),
        running.shutdown.clone(),
    ));

    let (status, body) = http(addr, "GET", "/healthz", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(addr, "GET", "/households", None).await;
    assert_eq!(status, 200);
    let manifest: Vec<HouseholdInfo> = serde_json::from_str(&body).expect("manifest JSON");
    assert_eq!(manifest, sim.households());
    let townships: BTreeSet<_> = manifest.iter().map(|h| h.township.clone()).collect();
    assert_eq!(townships.len(), 15);

    let device = &manifest[0].device_id;
    let path = format!("/households/{device}/fault");
    let (status, body) = http(addr, "POST", &path, Some(r#"{"category":"sensor_fault"}"#)).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = http(addr, "GET", &format!("/households/{device}"), None).await;
    assert_eq!(status, 200);
    let snap: HouseholdSnapshot = serde_json::from_str(&body).expect("snapshot JSON");
    assert_eq!(
        snap.fault.map(|f| f.category),
        Some(FaultCategory::SensorFault)
    );
    assert_eq!(snap.values.get("running").expect("running"), 0.0);

    let (status, _) = http(addr, "DELETE", &path, None).await;
    assert_eq!(status, 204);
    assert_eq!(sim.snapshot(device).expect("known").fault, None);

    for (method, path, body) in [
        ("GET", "/households/yanqing-nowhere-0001", None),
        ("GET", "/households/NOT%20AN%20ID", None),
        (
            "POST",
            "/households/yanqing-nowhere-0001/fault",
            Some(r#"{"category":"other"}"#),
        ),
        ("DELETE", "/households/yanqing-nowhere-0001/fault", None),
        ("GET", "/no/such/path", None),
    ] {
        let (status, body) = http(addr, method, path, body).await;
        assert_eq!(status, 404, "{method} {path}: {body}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
        assert!(error["error"].is_string(), "{body}");
    }
    for bad in [
        r#"{"category":"melted"}"#,
        "not json",
        r#"{"categ":"other"}"#,
        "",
    ] {
        let (status, body) = http(addr, "POST", &path, Some(bad)).await;
        assert!((400..500).contains(&status), "{bad:?} gave {status}");
        let error: serde_json::Value = serde_json::from_str(&body).expect("JSON error");
        assert!(error["error"].is_string(), "{body}");
    }
    assert_eq!(sim.snapshot(device).expect("known").fault, None);

    running.shutdown.cancel();
    within("the API stops", api)
        .await
        .expect("API task")
        .expect("API served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_a_ready_line_writes_the_manifest_and_stops_on_sigterm() {
    let manifest_path = std::env::temp_dir().join(format!(
        "simulator-manifest-{}-{}.json",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    ));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args([
            "serve",
            "--households",
            "18",
            "--seed",
            "5",
            "--speed",
            "60",
        ])
        .arg("--profiles")
        .arg(profiles_dir())
        .args(["--http", "127.0.0.1:0", "--manifest"])
        .arg(&manifest_path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("simulator binary starts");
    let stdout = child.stdout.take().expect("stdout");
    let line = within("the ready line", async {
        BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .expect("read stdout")
            .expect("a line before EOF")
    })
    .await;
    assert!(
        line.starts_with(r#"{"event":"ready","http":"127.0.0.1:"#),
        "{line}"
    );
    assert!(line.ends_with(r#","households":18}"#), "{line}");
    let ready: serde_json::Value = serde_json::from_str(&line).expect("ready JSON");
    let http_addr: SocketAddr = ready["http"]
        .as_str()
        .expect("http")
        .parse()
        .expect("address");

    let manifest: Vec<HouseholdInfo> =
        serde_json::from_slice(&std::fs::read(&manifest_path).expect("manifest written"))
            .expect("manifest JSON");
    assert_eq!(manifest.len(), 18);
    assert!(manifest
        .iter()
        .all(|h| h.unit_id == 1 && h.modbus_addr.port() != 0));
    let (status, body) = http(http_addr, "GET", "/healthz", None).await;
    assert_eq!((status, body.contains("\"ok\"")), (200, true), "{body}");
    let mut ctx = connect(&manifest[0]).await;
    let reply = ctx
        .read_holding_registers(60_000, 1)
        .await
        .expect("transport works");
    assert_eq!(reply, Err(ExceptionCode::IllegalDataAddress));

    let pid = child.id().expect("running child").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let status = within("the simulator exits after SIGTERM", child.wait())
        .await
        .expect("wait for the child");
    assert!(status.success(), "exit status {status}");
    let _ = std::fs::remove_file(&manifest_path);
}
