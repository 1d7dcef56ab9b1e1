//! SLA per request class through the order service and the HTTP API, time moved by the test
//! clock: a maintenance finding past 2 h is not escalated (its breach days later is recorded for
//! the team, not 督办) while a repair order is; a more urgent alert or a resident's request
//! turns a maintenance order into a repair whose clocks run from then; `GET /api/v1/sla` and
//! the daily report count each class against its own deadlines.

use std::collections::BTreeMap;
use std::sync::Arc;

mod support;

use gateway::auth::{Principal, Role};
use gateway::metrics::Metrics;
use gateway::orders::clock::SharedClock;
use gateway::orders::sla::{SlaClass, SlaConfig};
use gateway::orders::store::{OrderRow, Store};
use gateway::orders::{Channel, ComplaintRequest, OrderService};
use gateway::registry::demo::generate;
use gateway::registry::RegistryData;
use rules::{Engine, RuleSet, Transition};
use serde_json::Value;
use support::{OPERATOR, YANQING};
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
/// 2026-12-01T00:00:00Z (08:00 in Beijing).
const T0: i64 = 1_796_083_200_000;

/// Four households in 西关村 (延庆镇), Aurora heat pumps in warranty.
fn store() -> Store {
    let fleet =
        support::aurora_heat_pumps(&[("yanqing", "延庆镇", "xiguan", "西关村")], 4, |_| false);
    let mut data: RegistryData = generate(&fleet, 3);
    for device in &mut data.devices {
        device.installed_on = "2024-10-01".into();
        device.warranty_until = "2029-09-30".into();
    }
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&data).expect("import");
    store
}

const MAINTENANCE_DEVICE: &str = "yanqing-xiguan-0000";
const REPAIR_DEVICE: &str = "yanqing-xiguan-0001";

fn reading(device: &str, ts_ms: i64, fault: FaultCategory) -> Telemetry {
    Telemetry {
        v: 1,
        device_id: DeviceId::parse(device).expect("id"),
        ts_ms,
        seq: 1,
        profile: "aurora-ashp".into(),
        kind: DeviceKind::HeatPump,
        values: wire::Values::from([("indoor_temp_c", 19.0)]),
        fault: Some(Fault {
            code: 1,
            category: fault,
            text: "test fault".into(),
        }),
        extra: BTreeMap::new(),
    }
}

/// The firing transition of a one-rule engine whose rule orders `category` / `priority` when
/// `device` reports `fault` at `at_ms`.
fn alert(
    device: &str,
    at_ms: i64,
    fault: FaultCategory,
    category: &str,
    priority: &str,
) -> Vec<(Transition, String)> {
    let rules = RuleSet::parse(
        &format!(
            "[[rule]]\nid = \"{category}_{priority}\"\nkind = \"fault\"\ncategories = [\"{}\"]\nseverity = \"major\"\naction = {{ order = {{ category = \"{category}\", priority = \"{priority}\" }} }}\n",
            fault.as_str()
        ),
        "sla_classes.toml",
    )
    .expect("rules");
    let mut engine = Engine::new(rules);
    let transitions = engine.ingest(&reading(device, at_ms, fault));
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    transitions
        .into_iter()
        .map(|t| (t, "yanqing".to_owned()))
        .collect()
}

async fn open_one(service: &OrderService, transitions: Vec<(Transition, String)>) -> i64 {
    let opened = service.apply(transitions).await.expect("apply");
    assert_eq!(opened.len(), 1, "one order");
    opened[0]
}

async fn order_row(service: &OrderService, id: i64) -> OrderRow {
    service
        .with_store(move |s| s.order_row(id))
        .await
        .expect("read")
        .expect("exists")
}

async fn event_kinds(service: &OrderService, id: i64) -> Vec<String> {
    let (_, events) = service
        .with_store(move |s| s.order(id))
        .await
        .expect("read")
        .expect("exists");
    events.into_iter().map(|e| e.kind).collect()
}

/// The order service with the default SLA, the clock at `T0`, and its metrics.
fn service() -> (OrderService, SharedClock, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    let clock = SharedClock::new(T0);
    let service = OrderService::new(
        store(),
        Arc::clone(&metrics),
        Arc::new(clock.clone()),
        SlaConfig::default(),
    );
    (service, clock, metrics)
}

/// `class.stage` of a `classes` entry of `GET /api/v1/sla`.
fn open_stage<'a>(sla: &'a Value, class: &str, stage: &str) -> &'a Value {
    sla["classes"]
        .as_array()
        .and_then(|classes| classes.iter().find(|c| c["class"] == class))
        .map(|c| &c["open"][stage])
        .unwrap_or(&Value::Null)
}

#[tokio::test]
async fn a_maintenance_order_past_two_hours_is_not_escalated_while_a_repair_order_is() {
    let (service, clock, metrics) = service();
    let maintenance = open_one(
        &service,
        alert(
            MAINTENANCE_DEVICE,
            T0,
            FaultCategory::SensorFault,
            "short_cycling",
            "low",
        ),
    )
    .await;
    let repair = open_one(
        &service,
        alert(
            REPAIR_DEVICE,
            T0,
            FaultCategory::SensorFault,
            "heating_stopped",
            "high",
        ),
    )
    .await;
    for id in [maintenance, repair] {
        assert!(
            order_row(&service, id).await.dispatched_at_ms.is_some(),
            "both dispatched at creation"
        );
    }
    assert_eq!(
        SlaClass::of(&order_row(&service, maintenance).await),
        SlaClass::Maintenance
    );

    clock.advance_to(T0 + 2 * HOUR + MIN);
    let raised = service.check_sla().await.expect("check");
    let about = |id: i64| {
        raised
            .iter()
            .filter(|n| n.order_id == id)
            .map(|n| (n.class, n.stage.as_str(), n.kind))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        about(repair),
        [(SlaClass::Repair, "on_site", "escalated")],
        "the repair order: 督办 at 2 h"
    );
    assert!(about(maintenance).is_empty(), "{raised:?}");
    assert!(!event_kinds(&service, maintenance)
        .await
        .iter()
        .any(|k| k == "escalated" || k == "sla_breached"));

    // Three days on, the maintenance order's on-site clock has run out: recorded for the team.
    clock.advance_to(T0 + 3 * DAY);
    let raised = service.check_sla().await.expect("check");
    let maintenance_notices: Vec<_> = raised
        .iter()
        .filter(|n| n.order_id == maintenance)
        .map(|n| (n.class, n.stage.as_str(), n.kind))
        .collect();
    assert_eq!(
        maintenance_notices,
        [(SlaClass::Maintenance, "on_site", "sla_breached")]
    );
    let kinds = event_kinds(&service, maintenance).await;
    assert!(kinds.contains(&"sla_breached".to_owned()), "{kinds:?}");
    assert!(
        !kinds.contains(&"escalated".to_owned()),
        "no 督办: {kinds:?}"
    );
    let text = metrics.render(&[]);
    assert!(
        text.contains(
            "gateway_sla_breaches_recorded_total{class=\"maintenance\",stage=\"on_site\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("gateway_sla_breaches_total{class=\"repair\",stage=\"on_site\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("gateway_sla_breaches_total{class=\"maintenance\""),
        "{text}"
    );
}

#[tokio::test]
async fn a_more_urgent_alert_or_a_residents_request_makes_a_maintenance_order_a_repair_from_then() {
    let (service, clock, _) = service();
    let id = open_one(
        &service,
        alert(
            MAINTENANCE_DEVICE,
            T0,
            FaultCategory::SensorFault,
            "sensor",
            "low",
        ),
    )
    .await;
    // A day later the heating stops on the same device: the alert joins the open order.
    let joined = T0 + DAY;
    clock.advance_to(joined);
    let opened = service
        .apply(alert(
            MAINTENANCE_DEVICE,
            joined,
            FaultCategory::WaterFlow,
            "heating_stopped",
            "high",
        ))
        .await
        .expect("apply");
    assert!(opened.is_empty(), "one open order per device");
    let order = order_row(&service, id).await;
    assert_eq!(
        (order.priority.as_str(), SlaClass::of(&order)),
        ("high", SlaClass::Repair)
    );
    assert_eq!(
        order.sla_from_ms,
        Some(joined),
        "the repair clocks run from the join"
    );
    let kinds = event_kinds(&service, id).await;
    assert!(kinds.contains(&"priority_raised".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"sla_class_changed".to_owned()), "{kinds:?}");
    // Not escalated at once for the day it waited as maintenance; at 2 h after the join, 督办.
    clock.advance_to(joined + HOUR);
    assert!(service
        .check_sla()
        .await
        .expect("check")
        .iter()
        .all(|n| n.kind != "escalated"));
    clock.advance_to(joined + 2 * HOUR);
    let raised = service.check_sla().await.expect("check");
    assert!(
        raised
            .iter()
            .any(|n| n.order_id == id && n.stage.as_str() == "on_site" && n.kind == "escalated"),
        "{raised:?}"
    );

    // A resident's complaint about another device's maintenance order does the same.
    let other = open_one(
        &service,
        alert(
            REPAIR_DEVICE,
            joined + 2 * HOUR,
            FaultCategory::SensorFault,
            "efficiency_check",
            "low",
        ),
    )
    .await;
    let operator = Principal {
        name: "centre".into(),
        role: Role::Operator,
        township: None,
        team: None,
        technician: None,
    };
    let outcome = service
        .complaint(
            &operator,
            ComplaintRequest {
                channel: Channel::Hotline12345,
                device_id: Some(REPAIR_DEVICE.into()),
                household_id: None,
                received_at_ms: None,
                text: "the house is cold".into(),
            },
        )
        .await
        .expect("complaint");
    assert_eq!((outcome.order_id, outcome.linked), (other, true));
    let order = order_row(&service, other).await;
    assert_eq!(SlaClass::of(&order), SlaClass::Repair);
    assert_eq!(order.sla_from_ms, Some(joined + 2 * HOUR));
}

#[tokio::test]
async fn the_sla_endpoint_and_the_daily_report_count_each_class_against_its_own_target() {
    let api = support::api(store(), T0).await;
    let service = &api.service;
    open_one(
        service,
        alert(
            MAINTENANCE_DEVICE,
            T0,
            FaultCategory::SensorFault,
            "short_cycling",
            "low",
        ),
    )
    .await;
    open_one(
        service,
        alert(
            REPAIR_DEVICE,
            T0,
            FaultCategory::SensorFault,
            "heating_stopped",
            "high",
        ),
    )
    .await;
    open_one(
        service,
        alert(
            "yanqing-xiguan-0002",
            T0,
            FaultCategory::SensorFault,
            "contact_household",
            "high",
        ),
    )
    .await;
    api.clock.advance_to(T0 + 3 * HOUR);

    let (status, sla) = api.call("GET", "/api/v1/sla", Some(OPERATOR), None).await;
    assert_eq!(status, 200, "{sla}");
    // The top-level deadlines stay the repair class's, as before.
    assert_eq!(
        (
            sla["dispatch_ms"].as_u64(),
            sla["on_site_ms"].as_u64(),
            sla["repaired_ms"].as_u64()
        ),
        (Some(600_000), Some(7_200_000), Some(14_400_000))
    );
    let classes: Vec<_> = sla["classes"]
        .as_array()
        .expect("classes")
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap_or_default().to_owned(),
                c["on_site_ms"].as_u64().unwrap_or_default(),
                c["escalates"].as_bool().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        classes,
        [
            ("repair".to_owned(), 2 * 3_600_000, true),
            ("maintenance".to_owned(), 3 * 24 * 3_600_000, false),
            ("utility".to_owned(), 2 * 3_600_000, true),
            ("call".to_owned(), 150 * 60_000, true),
        ]
    );
    // At +3 h: the repair order is late on site, the maintenance order's clock still runs, and
    // the call task was never called (its 30-minute clock ran out).
    assert_eq!(open_stage(&sla, "repair", "on_site")["late"], 1);
    assert_eq!(open_stage(&sla, "repair", "dispatch")["met"], 1);
    assert_eq!(open_stage(&sla, "maintenance", "on_site")["running"], 1);
    assert_eq!(open_stage(&sla, "maintenance", "dispatch")["met"], 1);
    assert_eq!(open_stage(&sla, "call", "dispatch")["late"], 1);
    assert_eq!(open_stage(&sla, "utility", "dispatch")["met"], 0);
    // A township token sees only its township's orders: all three are in 延庆镇.
    let (status, township) = api.call("GET", "/api/v1/sla", Some(YANQING), None).await;
    assert_eq!(status, 200);
    assert_eq!(open_stage(&township, "repair", "on_site")["late"], 1);
    let (_, sihai) = api
        .call("GET", "/api/v1/sla", Some(support::SIHAI), None)
        .await;
    assert_eq!(open_stage(&sihai, "repair", "on_site")["late"], 0);

    let (status, report) = api
        .call(
            "GET",
            "/api/v1/reports/daily?date=2026-12-01",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let by_class = &report["total"]["sla_by_class"];
    assert_eq!(by_class["repair"]["orders"], 1);
    assert_eq!(by_class["repair"]["on_site"]["late"], 1);
    assert_eq!(by_class["repair"]["on_site"]["rate"], 0.0);
    assert_eq!(by_class["maintenance"]["orders"], 1);
    assert_eq!(by_class["maintenance"]["dispatch"]["rate"], 1.0);
    assert_eq!(by_class["maintenance"]["on_site"]["running"], 1);
    assert_eq!(by_class["call"]["dispatch"]["late"], 1);
    assert_eq!(by_class["utility"]["orders"], 0);
    // The stage rates of the whole district judge each order against its own class: dispatch
    // met by the repair and the maintenance order, missed by the call task.
    let rate = report["total"]["dispatch_sla_rate"].as_f64().expect("rate");
    assert!((rate - 2.0 / 3.0).abs() < 1e-9, "{rate}");

    let response = api
        .client
        .get(format!(
            "{}/api/v1/reports/daily?date=2026-12-01&format=csv",
            api.base
        ))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("csv");
    let csv = response.text().await.expect("body");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let total: Vec<&str> = lines.next().expect("total").split(',').collect();
    assert_eq!(header.len(), total.len(), "{csv}");
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .map(|i| total[i])
            .unwrap_or_else(|| panic!("no column {name}: {csv}"))
    };
    assert_eq!(column("maintenance_orders"), "1");
    assert_eq!(column("maintenance_dispatch_sla_rate"), "1.000");
    assert_eq!(column("repair_on_site_sla_rate"), "0.000");
    assert_eq!(column("call_dispatch_sla_rate"), "0.000");
}
