//! Parts stock and backup units through the HTTP API with each role's token: receipts,
//! transfers and reorder levels in each caller's scope, a low line logged and listed, parts
//! reserved at dispatch (the van first, then the point; a stock-out for what nobody has),
//! consumed at resolution (the charge unchanged) and given back on cancel, all still there
//! after the store is opened again; and a backup heater lent through a loan order of its own,
//! overdue after its date and returned.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

mod support;

use gateway::orders::store::Store;
use gateway::registry::demo::{generate, FleetHousehold};
use rules::{Engine, RuleSet, Transition};
use serde_json::{json, Value};
use support::{Api, OPERATOR, SIHAI, TEAM_AURORA, VIEWER, YANQING};
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

const T0: i64 = 1_796_083_200_000;
const MIN: i64 = 60_000;
const POINT: &str = "point:yanqing";
const VAN: &str = "van:aurora-yanqing-tech-01";

fn fleet() -> Vec<FleetHousehold> {
    let mut fleet = support::aurora_heat_pumps(
        &[
            ("yanqing", "延庆镇", "yanqing-dongguan", "东关村"),
            ("sihai", "四海镇", "sihai-sihai", "四海村"),
        ],
        3,
        |n| n == 1,
    );
    for household in &mut fleet {
        household.model = "X".into();
    }
    fleet
}

fn store_at(path: &Path) -> Store {
    let mut store = Store::open(path).expect("store");
    let mut data = generate(&fleet(), 3);
    for device in &mut data.devices {
        device.installed_on = "2024-10-01".into();
        device.warranty_until = "2029-09-30".into();
    }
    store.import_registry(&data).expect("registry");
    store
}

fn reading(device: &str, ts_ms: i64, category: FaultCategory) -> Telemetry {
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
            category,
            text: "test fault".into(),
        }),
        extra: BTreeMap::new(),
    }
}

/// Opens (and dispatches, by routing) the order of a coded fault of `category` on `device`.
async fn fault_order(api: &Api, device: &str, category: FaultCategory) -> i64 {
    let mut engine = Engine::new(RuleSet::parse(rules::DEFAULT_RULES, "default").expect("rules"));
    let transitions: Vec<(Transition, String)> = engine
        .ingest(&reading(device, T0, category))
        .into_iter()
        .map(|t| (t, "yanqing".to_owned()))
        .collect();
    api.service.apply(transitions).await.expect("apply")[0]
}

async fn ok(api: &Api, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (status, answer) = api.call(method, path, Some(token), body).await;
    assert_eq!(status, 200, "{method} {path}: {answer}");
    answer
}

async fn line(api: &Api, location: &str, part: &str) -> Value {
    let lines = ok(
        api,
        "GET",
        &format!("/api/v1/stock?location={location}&part_code={part}"),
        OPERATOR,
        None,
    )
    .await;
    lines[0].clone()
}

fn scratch(name: &str) -> PathBuf {
    support::scratch(name).join("orders.sqlite")
}

#[tokio::test]
async fn receipts_transfers_and_levels_stay_in_each_callers_scope() {
    let api = support::api(store_at(&scratch("stock-scope")), T0).await;
    let receipt = json!({"location": POINT, "part_code": "ntc-sensor", "quantity": 5});
    let line = ok(
        &api,
        "POST",
        "/api/v1/stock/receipts",
        YANQING,
        Some(receipt.clone()),
    )
    .await;
    assert_eq!(
        (line["on_hand"].as_i64(), line["available"].as_i64()),
        (Some(5), Some(5))
    );

    // Another township's officer, a bureau and a team may not receive at 延庆镇's point.
    for (token, status) in [(SIHAI, 403), (VIEWER, 403), (TEAM_AURORA, 403)] {
        let (got, answer) = api
            .call(
                "POST",
                "/api/v1/stock/receipts",
                Some(token),
                Some(receipt.clone()),
            )
            .await;
        assert_eq!(got, status, "{answer}");
    }
    // Unknown part, unknown location, nonsense location, a quantity out of range.
    for (body, status) in [
        (
            json!({"location": POINT, "part_code": "flux-capacitor", "quantity": 1}),
            404,
        ),
        (
            json!({"location": "point:atlantis", "part_code": "ntc-sensor", "quantity": 1}),
            404,
        ),
        (
            json!({"location": "shelf-3", "part_code": "ntc-sensor", "quantity": 1}),
            404,
        ),
        (
            json!({"location": POINT, "part_code": "ntc-sensor", "quantity": 0}),
            422,
        ),
        (
            json!({"location": POINT, "part_code": "ntc-sensor", "quantity": 10_001}),
            422,
        ),
    ] {
        let (got, answer) = api
            .call("POST", "/api/v1/stock/receipts", Some(OPERATOR), Some(body))
            .await;
        assert_eq!(got, status, "{answer}");
    }

    // The team takes two to its technician's van; more than the point has is refused.
    let transfer = json!({"from": POINT, "to": VAN, "part_code": "ntc-sensor", "quantity": 2});
    let van = ok(
        &api,
        "POST",
        "/api/v1/stock/transfers",
        TEAM_AURORA,
        Some(transfer),
    )
    .await;
    assert_eq!(van["on_hand"], 2);
    let too_many = json!({"from": POINT, "to": VAN, "part_code": "ntc-sensor", "quantity": 4});
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/stock/transfers",
            Some(TEAM_AURORA),
            Some(too_many),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("has 3"),
        "{answer}"
    );
    // 四海镇's officer sees neither the point nor the van of 延庆镇.
    let (status, _) = api
        .call(
            "GET",
            &format!("/api/v1/stock?location={POINT}"),
            Some(SIHAI),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let sihai = ok(&api, "GET", "/api/v1/stock", SIHAI, None).await;
    assert_eq!(sihai, json!([]));
    let team_view = ok(&api, "GET", "/api/v1/stock", TEAM_AURORA, None).await;
    assert_eq!(team_view.as_array().map(Vec::len), Some(2), "{team_view}");

    // A reorder level of 3: the point (3 available) is low, listed and counted.
    let level = json!({"location": POINT, "part_code": "ntc-sensor", "reorder_level": 3});
    let point = ok(&api, "POST", "/api/v1/stock/levels", YANQING, Some(level)).await;
    assert_eq!(point["low_since_ms"], T0, "{point}");
    let low = ok(&api, "GET", "/api/v1/stock?low=true", OPERATOR, None).await;
    assert_eq!(low.as_array().map(Vec::len), Some(1), "{low}");
    let restock = json!({"location": POINT, "part_code": "ntc-sensor", "quantity": 10});
    let point = ok(
        &api,
        "POST",
        "/api/v1/stock/receipts",
        OPERATOR,
        Some(restock),
    )
    .await;
    assert_eq!(point["low_since_ms"], Value::Null, "{point}");
    let moves = ok(
        &api,
        "GET",
        &format!("/api/v1/stock/moves?location={POINT}"),
        OPERATOR,
        None,
    )
    .await;
    let kinds: Vec<&str> = moves
        .as_array()
        .expect("moves")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["received", "transferred_out", "received"]);
}

#[tokio::test]
async fn a_dispatch_reserves_a_resolve_consumes_and_nothing_is_lost_on_reopening() {
    let path = scratch("stock-order");
    let api = support::api(store_at(&path), T0).await;
    // The van has one sensor, the point one; nobody has a relief valve or a vessel.
    for (location, quantity) in [(VAN, 1), (POINT, 1)] {
        let receipt =
            json!({"location": location, "part_code": "ntc-sensor", "quantity": quantity});
        ok(
            &api,
            "POST",
            "/api/v1/stock/receipts",
            OPERATOR,
            Some(receipt),
        )
        .await;
    }
    let level = json!({"location": VAN, "part_code": "ntc-sensor", "reorder_level": 1});
    ok(&api, "POST", "/api/v1/stock/levels", OPERATOR, Some(level)).await;

    // A sensor fault on an Aurora unit: its team is dispatched and the van's sensor is held.
    let sensor = fault_order(
        &api,
        "yanqing-yanqing-dongguan-0000",
        FaultCategory::SensorFault,
    )
    .await;
    let held = ok(
        &api,
        "GET",
        &format!("/api/v1/orders/{sensor}/parts"),
        TEAM_AURORA,
        None,
    )
    .await;
    assert_eq!(
        held,
        json!([{"order_id": sensor, "location": VAN, "part_code": "ntc-sensor", "quantity": 1}])
    );
    assert_eq!(line(&api, VAN, "ntc-sensor").await["available"], 0);

    // A low water pressure fault: no relief valve or expansion vessel anywhere, a stock-out of
    // both.
    let flow = fault_order(
        &api,
        "yanqing-yanqing-dongguan-0002",
        FaultCategory::LowWaterPressure,
    )
    .await;
    let outs = ok(&api, "GET", "/api/v1/stock/outs", OPERATOR, None).await;
    let short: Vec<(i64, &str)> = outs
        .as_array()
        .expect("outs")
        .iter()
        .map(|o| {
            (
                o["order_id"].as_i64().unwrap_or(0),
                o["part_code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        short,
        [(flow, "expansion-vessel"), (flow, "pressure-relief-valve")]
    );

    // The sensor repair uses two sensors: the held one, then the point's; the charge is the
    // price list's as before (in warranty: the resident pays nothing).
    for step in ["accept", "arrive"] {
        ok(
            &api,
            "POST",
            &format!("/api/v1/orders/{sensor}/{step}"),
            TEAM_AURORA,
            Some(json!({})),
        )
        .await;
    }
    api.clock.advance_by(30 * MIN);
    let resolved = ok(
        &api,
        "POST",
        &format!("/api/v1/orders/{sensor}/resolve"),
        TEAM_AURORA,
        Some(json!({"parts": [{"code": "ntc-sensor", "quantity": 2}]})),
    )
    .await;
    assert_eq!(
        (
            resolved["parts_cents"].as_i64(),
            resolved["resident_pays_cents"].as_i64()
        ),
        (Some(9_000), Some(0))
    );
    assert_eq!(line(&api, VAN, "ntc-sensor").await["on_hand"], 0);
    assert_eq!(line(&api, POINT, "ntc-sensor").await["on_hand"], 0);
    let held = ok(
        &api,
        "GET",
        &format!("/api/v1/orders/{sensor}/parts"),
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(held, json!([]));

    // Cancelling the flow order ends its stock-out; a receipt then does not go to it.
    ok(
        &api,
        "POST",
        &format!("/api/v1/orders/{flow}/cancel"),
        OPERATOR,
        Some(json!({"reason": "duplicate"})),
    )
    .await;
    // The day's report: one order met a stock-out of two parts; the other took half an hour.
    let report = ok(
        &api,
        "GET",
        "/api/v1/reports/daily?date=2026-12-01",
        OPERATOR,
        None,
    )
    .await;
    let stock = &report["stock"];
    assert_eq!(
        (
            stock["orders_with_stock_out"].as_u64(),
            stock["parts_short"].as_u64(),
            stock["median_hours_to_repair_without"].as_f64(),
            stock["low_lines_now"].as_u64(),
        ),
        (Some(1), Some(2), Some(0.5), Some(1)),
        "{stock}"
    );
    drop(api);

    // Reopened: every count, hold and stock-out is where it was.
    let reopened = support::api(Store::open(&path).expect("reopen"), T0 + 60 * MIN).await;
    assert_eq!(line(&reopened, VAN, "ntc-sensor").await["on_hand"], 0);
    let moves = ok(
        &reopened,
        "GET",
        &format!("/api/v1/stock/moves?order_id={sensor}"),
        OPERATOR,
        None,
    )
    .await;
    let kinds: Vec<(&str, &str)> = moves
        .as_array()
        .expect("moves")
        .iter()
        .map(|m| {
            (
                m["kind"].as_str().unwrap_or(""),
                m["location"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("consumed", POINT), ("consumed", VAN), ("reserved", VAN)]
    );
    let outs = ok(&reopened, "GET", "/api/v1/stock/outs", OPERATOR, None).await;
    assert!(
        outs.as_array()
            .expect("outs")
            .iter()
            .all(|o| o["resolved_at_ms"].is_i64()),
        "{outs}"
    );
}

#[tokio::test]
async fn a_backup_unit_is_lent_through_its_own_order_and_comes_back() {
    let api = support::api(store_at(&scratch("stock-backup")), T0).await;
    let unit = json!({"id": "bk-yq-01", "kind": "heat_pump", "township": "yanqing"});
    let (status, _) = api
        .call(
            "POST",
            "/api/v1/backup-units",
            Some(SIHAI),
            Some(unit.clone()),
        )
        .await;
    assert_eq!(status, 403);
    ok(&api, "POST", "/api/v1/backup-units", YANQING, Some(unit)).await;
    let repair = fault_order(
        &api,
        "yanqing-yanqing-dongguan-0001",
        FaultCategory::SensorFault,
    )
    .await;

    let lend = json!({"order_id": repair, "return_by_ms": T0 + 3 * 86_400_000});
    let loan = ok(
        &api,
        "POST",
        "/api/v1/backup-units/bk-yq-01/lend",
        YANQING,
        Some(lend.clone()),
    )
    .await;
    assert_eq!(loan["unit"]["state"], "lent");
    assert_eq!(loan["loan_order"]["category"], "backup_loan");
    let loan_id = loan["loan_order"]["id"].as_i64().expect("loan id");
    assert_eq!(
        loan["loan_order"]["household_id"],
        loan["unit"]["household_id"]
    );
    // Lent twice: refused.
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/backup-units/bk-yq-01/lend",
            Some(OPERATOR),
            Some(lend),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    // A complaint from the household joins the repair, not the loan.
    let complaint = json!({"channel": "hotline_12345", "device_id": "yanqing-yanqing-dongguan-0001", "text": "还是不热"});
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/complaints",
            Some(OPERATOR),
            Some(complaint),
        )
        .await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["order_id"], repair, "{answer}");

    // Past its date the loan is overdue; returned, the unit is available again.
    api.clock.advance_by(4 * 86_400_000);
    let units = ok(&api, "GET", "/api/v1/backup-units", YANQING, None).await;
    assert_eq!(units[0]["overdue"], true, "{units}");
    ok(
        &api,
        "POST",
        "/api/v1/backup-units/bk-yq-01/return",
        YANQING,
        None,
    )
    .await;
    let units = ok(&api, "GET", "/api/v1/backup-units", OPERATOR, None).await;
    assert_eq!(
        (units[0]["state"].as_str(), units[0]["overdue"].as_bool()),
        (Some("available"), Some(false))
    );
    let order = ok(
        &api,
        "GET",
        &format!("/api/v1/orders/{loan_id}"),
        OPERATOR,
        None,
    )
    .await;
    let kinds: Vec<&str> = order["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"backup_returned"), "{kinds:?}");
}
