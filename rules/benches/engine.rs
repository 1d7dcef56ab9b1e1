//! Criterion benchmarks of the rule engine: readings per second through the whole default pack
//! for 50k devices on one core, memory per device × rule (counting allocator, printed), and
//! snapshot / restore of 100k devices' state. Run with `cargo bench -p rules`; with
//! `RULES_PACK=path/to/rules.toml` the memory line is measured for that pack instead of the
//! default one (to weigh what a set of rules costs on today's engine: two runs, two packs).

use std::alloc::System;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use rules::{DeviceInfo, Engine, RuleSet, Snapshot};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use wire::{DeviceId, DeviceKind, Telemetry};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// 2025-12-01T00:00:00Z.
const T0: i64 = 1_764_547_200_000;
/// Poll interval of the edge agents.
const EVERY_MS: i64 = 10_000;

const TOWNSHIPS: [&str; 15] = [
    "yanqing",
    "kangzhuang",
    "badaling",
    "yongning",
    "jiuxian",
    "zhangshanying",
    "sihai",
    "qianjiadian",
    "shenjiaying",
    "dayushu",
    "jingzhuang",
    "dazhuangke",
    "liubinpu",
    "xiangying",
    "zhenzhuquan",
];

fn device_id(i: usize) -> DeviceId {
    let suffix = if i % 3 == 0 { "gb" } else { "hp" };
    DeviceId::parse(&format!("yq-{i:06}-{suffix}")).expect("valid id")
}

fn kind(i: usize) -> DeviceKind {
    if i % 3 == 0 {
        DeviceKind::GasBoiler
    } else {
        DeviceKind::HeatPump
    }
}

/// A healthy reading of device `i` with the values its kind reports.
fn reading(i: usize) -> Telemetry {
    let mut values: wire::Values = [
        ("indoor_temp_c", 20.0 + (i % 7) as f64 * 0.1),
        ("outdoor_temp_c", -8.0),
        ("setpoint_c", 20.0),
        ("flow_temp_c", 42.0),
        ("return_temp_c", 37.0),
        ("running", 1.0),
        ("electric_power_w", 2400.0),
        ("heat_output_w", 6500.0),
        ("runtime_h", 1200.0),
        ("fault_code", 0.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let extra: &[(&str, f64)] = match kind(i) {
        DeviceKind::HeatPump => &[
            ("defrost_active", 0.0),
            ("compressor_freq_hz", 60.0),
            ("compressor_current_a", 9.0),
            ("discharge_temp_c", 70.0),
            ("coil_temp_c", -12.0),
            ("energy_kwh", 5000.0),
        ],
        DeviceKind::GasBoiler => &[
            ("water_pressure_bar", 1.5),
            ("flame_on", 1.0),
            ("fan_speed_rpm", 3000.0),
            ("modulation_pct", 50.0),
            ("ignition_attempts", 4000.0),
            ("flue_temp_c", 60.0),
            ("gas_pressure_mbar", 20.0),
            ("dhw_temp_c", 48.0),
        ],
    };
    for (k, v) in extra {
        values.insert(*k, *v);
    }
    Telemetry {
        v: wire::SCHEMA_VERSION,
        device_id: device_id(i),
        ts_ms: T0 + (i as i64 % 1000) * 10,
        seq: 1,
        profile: "bench".into(),
        kind: kind(i),
        values,
        fault: None,
        extra: BTreeMap::new(),
    }
}

fn info(i: usize) -> DeviceInfo {
    DeviceInfo {
        kind: Some(kind(i)),
        township: Some(TOWNSHIPS[i % TOWNSHIPS.len()].to_owned()),
        village: Some(format!("v{:03}", (i / TOWNSHIPS.len()) % 40)),
        vulnerable: i % 10 == 0,
        tags: Vec::new(),
        household: None,
    }
}

/// An engine with `devices` registered devices that have each sent `rounds` readings, and the
/// readings ready for the next round.
fn fleet(devices: usize, rounds: usize) -> (Engine, Vec<Telemetry>) {
    let rules = RuleSet::default_pack().expect("default pack parses");
    let mut engine = Engine::new(rules);
    for i in 0..devices {
        engine.register_device(device_id(i), info(i));
    }
    let mut readings: Vec<Telemetry> = (0..devices).map(reading).collect();
    for _ in 0..rounds {
        round(&mut engine, &mut readings);
    }
    (engine, readings)
}

/// Every device sends one reading 10 s after its last; the watermark follows.
fn round(engine: &mut Engine, readings: &mut [Telemetry]) -> usize {
    let mut transitions = 0;
    for reading in readings.iter_mut() {
        transitions += engine.process(reading).transitions.len();
        reading.ts_ms += EVERY_MS;
        reading.seq += 1;
    }
    let watermark = readings.iter().map(|r| r.ts_ms).min().unwrap_or(T0) - EVERY_MS;
    transitions += engine.advance_watermark(watermark).transitions.len();
    transitions
}

fn throughput(c: &mut Criterion) {
    const DEVICES: usize = 50_000;
    let (mut engine, mut readings) = fleet(DEVICES, 3);
    let mut group = c.benchmark_group("throughput");
    group.throughput(Throughput::Elements(DEVICES as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("default_pack_50k_devices_one_round", |b| {
        b.iter(|| black_box(round(&mut engine, &mut readings)))
    });
    group.finish();
}

fn snapshot_and_restore(c: &mut Criterion) {
    const DEVICES: usize = 100_000;
    let (engine, _) = fleet(DEVICES, 3);
    let rules = engine.rules().clone();
    let mut group = c.benchmark_group("state_100k_devices");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("snapshot", |b| b.iter(|| black_box(engine.snapshot())));
    let snapshot = engine.snapshot();
    group.bench_function("restore", |b| {
        b.iter_batched(
            || snapshot.clone(),
            |snapshot| black_box(Engine::restore(rules.clone(), snapshot)),
            BatchSize::LargeInput,
        )
    });
    group.finish();
    let json = serde_json::to_vec(&snapshot).expect("serialises");
    let back: Snapshot = serde_json::from_slice(&json).expect("parses");
    assert_eq!(back.devices.len(), DEVICES);
    println!(
        "snapshot of {DEVICES} devices: {} MB as JSON ({} bytes per device)",
        json.len() / 1_000_000,
        json.len() / DEVICES
    );
}

/// Measures the heap and inline bytes the engine holds per device × rule, with a counting
/// allocator, and prints them next to the engine's own size_of estimate.
fn memory() {
    const DEVICES: usize = 20_000;
    let rules = match std::env::var("RULES_PACK") {
        Ok(path) => {
            let text = std::fs::read_to_string(&path).expect("RULES_PACK is readable");
            let rules = RuleSet::parse(&text, &path).unwrap_or_else(|e| panic!("{e}"));
            println!("memory of the rule pack {path}:");
            rules
        }
        Err(_) => RuleSet::default_pack().expect("default pack parses"),
    };
    let rule_count = rules.len();
    let mut readings: Vec<Telemetry> = (0..DEVICES).map(reading).collect();
    let region = Region::new(GLOBAL);
    let mut engine = Engine::new(rules);
    for i in 0..DEVICES {
        engine.register_device(device_id(i), info(i));
    }
    let registered = region.change();
    for _ in 0..3 {
        round(&mut engine, &mut readings);
    }
    let total = region.change();
    let net = |s: stats_alloc::Stats| {
        (s.bytes_allocated as i64 - s.bytes_deallocated as i64 + s.bytes_reallocated as i64).max(0)
            as usize
    };
    let per_device = net(total) / DEVICES;
    let registry_per_device = net(registered) / DEVICES;
    let state_per_device = per_device.saturating_sub(registry_per_device);
    println!(
        "memory: {per_device} bytes per device in all ({registry_per_device} of them the registry), \
         {} bytes per device × rule of rule state ({rule_count} rules, target <= 512); \
         size_of estimate {} bytes per device, {} per device × rule",
        state_per_device / rule_count,
        engine.state_bytes_per_device(),
        engine.state_bytes_per_device() / rule_count,
    );
    black_box(&engine);
}

/// CPU time this thread has run and waited for a core, in ns (Linux `/proc/thread-self/schedstat`).
fn schedstat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    Some((fields.next()??, fields.next()??))
}

/// Readings per second of CPU time (and of wall time), so the figure does not depend on how
/// busy the machine is: the other sessions' builds share its two cores.
fn cpu_throughput() {
    const DEVICES: usize = 50_000;
    const ROUNDS: usize = 20;
    let (mut engine, mut readings) = fleet(DEVICES, 3);
    let (Some(before), wall) = (schedstat(), std::time::Instant::now()) else {
        return;
    };
    for _ in 0..ROUNDS {
        black_box(round(&mut engine, &mut readings));
    }
    let elapsed = wall.elapsed().as_secs_f64();
    let Some(after) = schedstat() else { return };
    let cpu = (after.0 - before.0) as f64 / 1e9;
    let waited = (after.1 - before.1) as f64 / 1e9;
    let total = (DEVICES * ROUNDS) as f64;
    println!(
        "cpu throughput: {:.0} readings/s per CPU second ({:.0} per wall second; {:.0} % of the \
         wall time spent waiting for a core)",
        total / cpu,
        total / elapsed,
        100.0 * waited / elapsed
    );
}

fn main() {
    memory();
    cpu_throughput();
    let mut criterion = Criterion::default().configure_from_args();
    throughput(&mut criterion);
    snapshot_and_restore(&mut criterion);
    criterion.final_summary();
}
