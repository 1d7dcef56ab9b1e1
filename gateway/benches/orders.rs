//! Work-order benchmarks (a bench binary that prints its figures; run with
//! `cargo bench -p gateway --bench orders`): alert -> order dispatched latency in process,
//! burst throughput of a cold-snap morning, and the monthly report over a season of orders.
//! Everything runs against a file-backed SQLite store (WAL), as in production.

use std::sync::Arc;
use std::time::Instant;

use gateway::metrics::Metrics;
use gateway::orders::clock::SharedClock;
use gateway::orders::reports::{self, Period};
use gateway::orders::sla::SlaConfig;
use gateway::orders::store::{NewOrder, OrderUpdate, Store};
use gateway::orders::{OrderService, OrderState};
use gateway::registry::demo::{generate, FleetHousehold};
use rules::{Engine, RuleSet, Transition};
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

const T0: i64 = 1_796_083_200_000;
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

fn fleet(households: usize) -> Vec<FleetHousehold> {
    (0..households)
        .map(|i| {
            let township = TOWNSHIPS[i % TOWNSHIPS.len()];
            FleetHousehold {
                device_id: format!("{township}-v{}-{i:05}", i % 4),
                township: township.into(),
                township_name: township.into(),
                village: format!("v{}", i % 4),
                village_name: format!("村{}", i % 4),
                kind: "heat_pump".into(),
                brand: ["Aurora", "Beifeng"][i % 2].into(),
                model: "X".into(),
                vulnerable: i % 5 == 0,
            }
        })
        .collect()
}

fn store(name: &str, households: &[FleetHousehold]) -> Store {
    let path = std::env::temp_dir().join(format!(
        "gateway-bench-{name}-{}.sqlite",
        std::process::id()
    ));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let mut store = Store::open(&path).expect("store");
    store
        .import_registry(&generate(households, 1))
        .expect("import");
    store
}

fn alerts(households: &[FleetHousehold], at_ms: i64) -> Vec<(Transition, String)> {
    let mut engine = Engine::new(RuleSet::parse(rules::DEFAULT_RULES, "default").expect("rules"));
    households
        .iter()
        .flat_map(|h| {
            let reading = Telemetry {
                v: 1,
                device_id: DeviceId::parse(&h.device_id).expect("id"),
                ts_ms: at_ms,
                seq: 1,
                profile: "aurora-ashp".into(),
                kind: DeviceKind::HeatPump,
                values: Default::default(),
                fault: Some(Fault {
                    code: 1,
                    category: FaultCategory::SensorFault,
                    text: String::new(),
                }),
                extra: Default::default(),
            };
            engine
                .ingest(&reading)
                .into_iter()
                .map(|t| (t, h.township.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let households = fleet(3_000);
    latency(&runtime, &households);
    burst(&runtime, &households);
    monthly_report(&households);
}

/// An order service over a fresh store of `households`, on a clock at `T0`.
fn service(name: &str, households: &[FleetHousehold]) -> OrderService {
    OrderService::new(
        store(name, households),
        Arc::new(Metrics::default()),
        Arc::new(SharedClock::new(T0)),
        SlaConfig::default(),
    )
}

/// 1. Latency: one alert at a time -> order created and dispatched (store commit included).
fn latency(runtime: &tokio::runtime::Runtime, households: &[FleetHousehold]) {
    let service = service("latency", households);
    let sample = alerts(&households[..2_000], T0);
    let mut latencies = Vec::with_capacity(sample.len());
    runtime.block_on(async {
        for alert in sample {
            let started = Instant::now();
            let opened = service.apply(vec![alert]).await.expect("apply");
            latencies.push(started.elapsed().as_secs_f64() * 1e3);
            assert_eq!(opened.len(), 1);
        }
    });
    latencies.sort_by(f64::total_cmp);
    println!(
        "alert -> order dispatched (one at a time, {} alerts, 3,000-household registry): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(0.0)
    );
}

/// 2. Burst: a cold-snap morning, 3,000 alerts arriving together (batches of 100 per call, as
///    ingest hands over what one poll of the broker link brings).
fn burst(runtime: &tokio::runtime::Runtime, households: &[FleetHousehold]) {
    let service = service("burst", households);
    let burst = alerts(households, T0);
    let count = burst.len();
    let started = Instant::now();
    let opened: usize = runtime.block_on(async {
        let mut opened = 0;
        for chunk in burst.chunks(100) {
            opened += service.apply(chunk.to_vec()).await.expect("apply").len();
        }
        opened
    });
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(opened, count);
    println!(
        "burst: {count} alerts -> {opened} orders created and dispatched in {seconds:.2} s = {:.0} orders/s",
        opened as f64 / seconds
    );
}

/// 3. Monthly report over a season of 200,000 orders (Nov-Mar), the report for December.
fn monthly_report(households: &[FleetHousehold]) {
    let mut season = store("report", households);
    let started = Instant::now();
    seed_season(&mut season, households);
    println!(
        "(seeded 200,000 orders in {:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let (from, to) = Period::Monthly.bounds((2026, 12, 15));
    let orders = season.orders_created_between(from, to).expect("orders");
    let loaded = started.elapsed().as_secs_f64();
    let report = reports::build(
        Period::Monthly,
        (2026, 12, 15),
        &orders,
        &SlaConfig::default(),
        T0 + 100 * 86_400_000,
    );
    let csv = reports::to_csv(&report);
    let html = reports::to_html(&report);
    println!(
        "monthly report, December, over a season of 200,000 orders: {} orders in the month, {:.3} s (load {:.3} s), {} CSV lines, {} KB HTML",
        report.total.requests,
        started.elapsed().as_secs_f64(),
        loaded,
        csv.lines().count(),
        html.len() / 1024
    );
}

/// Fills `season` with 200,000 closed orders spread over 150 days from a month before `T0`.
fn seed_season(season: &mut Store, households: &[FleetHousehold]) {
    let months_ms = 150 * 86_400_000i64;
    for i in 0..200_000i64 {
        let h = &households[(i as usize) % households.len()];
        let created = T0 - 30 * 86_400_000 + (i * months_ms / 200_000);
        let id = season
            .create_order(&NewOrder {
                episode_id: None,
                device_id: h.device_id.clone(),
                household_id: Some(format!("hh-{}", h.device_id)),
                village_id: None,
                vendor_id: Some(["aurora", "beifeng"][(i % 2) as usize].into()),
                township: h.township.clone(),
                category: "repair".into(),
                priority: "high".into(),
                source: if i % 10 < 8 {
                    "rule".into()
                } else {
                    "hotline_12345".into()
                },
                summary: String::new(),
                created_at_ms: created,
                actor: "bench".into(),
                pre_emptive: i % 10 < 8,
                in_warranty: Some(i % 3 != 0),
            })
            .expect("create")
            .expect("new");
        season
            .append_event(
                id,
                created + 300_000,
                "bench",
                "closed",
                "",
                &OrderUpdate {
                    state: Some(OrderState::Closed),
                    team_id: Some(format!("third-party-{}", h.township)),
                    dispatched_at_ms: Some(created + 120_000 + (i % 900) * 1_000),
                    on_site_at_ms: Some(created + 3_600_000 + (i % 5_000) * 1_000),
                    resolved_at_ms: Some(created + 7_200_000 + (i % 9_000) * 1_000),
                    closed_at_ms: Some(created + 86_400_000),
                    satisfaction: Some(3 + i % 3),
                    parts_cents: Some((i % 7) * 1_500),
                    ..OrderUpdate::default()
                },
            )
            .expect("event");
    }
}
