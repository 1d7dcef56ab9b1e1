//! The scheme's figures in the reports over HTTP, counted by hand on a small case: a repair
//! carried over from the day before, a first-time fix, a repair reopened at its callback and
//! fixed at the second visit, a repeat fault on the same unit, requests of three types (one
//! unanswered), out-of-warranty funding, staffing, and the vendor assessment; a township token
//! sees its own township and a team token no registry figures.

mod support;

use gateway::orders::store::Store;
use gateway::registry::demo::generate;
use gateway::registry::RegistryData;
use serde_json::{json, Value};
use support::{OPERATOR, SIHAI, TEAM_AURORA};

/// 2026-12-01T00:00:00+08:00 (the report's day is 2026-12-01 in CST).
const DAY: i64 = 1_796_054_400_000;
const MIN: i64 = 60_000;

/// Four households in 西关村 (延庆镇), heat pumps; the last one out of warranty.
fn registry() -> RegistryData {
    let fleet =
        support::aurora_heat_pumps(&[("yanqing", "延庆镇", "xiguan", "西关村")], 4, |_| false);
    let mut data = generate(&fleet, 3);
    let last = data.devices.len() - 1;
    for (index, device) in data.devices.iter_mut().enumerate() {
        if index == last {
            device.installed_on = "2019-10-01".into();
            device.warranty_until = "2024-09-30".into();
        } else {
            device.installed_on = "2024-10-01".into();
            device.warranty_until = "2029-09-30".into();
        }
    }
    data
}

async fn post(api: &support::Api, path: &str, token: &str, body: Value) -> Value {
    let (status, answer) = api.call("POST", path, Some(token), Some(body)).await;
    assert!(status == 200 || status == 201, "{path}: {status} {answer}");
    answer
}

/// A repair request about `household` now: its order id.
async fn repair(api: &support::Api, household: &str) -> i64 {
    let outcome = post(
        api,
        "/api/v1/requests",
        OPERATOR,
        json!({"kind": "repair", "channel": "centre_hotline", "household_id": household, "text": "不热"}),
    )
    .await;
    outcome["order_id"].as_i64().expect("an order")
}

async fn visit(api: &support::Api, order: i64) {
    for step in ["accept", "arrive"] {
        post(
            api,
            &format!("/api/v1/orders/{order}/{step}"),
            TEAM_AURORA,
            json!({}),
        )
        .await;
        api.clock.advance_by(10 * MIN);
    }
    post(
        api,
        &format!("/api/v1/orders/{order}/resolve"),
        TEAM_AURORA,
        json!({"parts": [], "note": "fixed"}),
    )
    .await;
    api.clock.advance_by(10 * MIN);
}

async fn callback(api: &support::Api, order: i64, solved: bool, satisfaction: i64) {
    post(
        api,
        &format!("/api/v1/orders/{order}/callback"),
        OPERATOR,
        json!({"solved": solved, "satisfaction": satisfaction}),
    )
    .await;
    api.clock.advance_by(10 * MIN);
}

#[tokio::test]
async fn the_scheme_figures_are_counted_as_by_hand() {
    let data = registry();
    let households: Vec<String> = data.households.iter().map(|h| h.id.clone()).collect();
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&data).expect("import");
    let api = support::api(store, DAY - 2 * 60 * MIN).await;

    // The day before: a repair that stays open (carried over, still open).
    repair(&api, &households[0]).await;
    api.clock.advance_to(DAY + 8 * 60 * MIN);

    // A first-time fix on household 1, then a repeat fault on the same unit.
    let first = repair(&api, &households[1]).await;
    visit(&api, first).await;
    callback(&api, first, true, 5).await;
    let repeat = repair(&api, &households[1]).await;
    // Reopened at the callback, fixed at the second visit.
    let reopened = repair(&api, &households[2]).await;
    visit(&api, reopened).await;
    callback(&api, reopened, false, 2).await;
    visit(&api, reopened).await;
    callback(&api, reopened, true, 4).await;
    // Requests of other types: a policy question answered, a charge question not.
    post(
        &api,
        "/api/v1/requests",
        OPERATOR,
        json!({"kind": "policy", "channel": "centre_hotline", "household_id": households[3],
               "text": "补贴", "answer": "已答复"}),
    )
    .await;
    post(
        &api,
        "/api/v1/requests",
        OPERATOR,
        json!({"kind": "charge", "channel": "walk_in", "caller_name": "周", "caller_phone": "13800138000",
               "village_id": "yanqing-xiguan", "text": "收费?"}),
    )
    .await;

    let (status, report) = api
        .call(
            "GET",
            "/api/v1/reports/daily?date=2026-12-01",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    let scheme = &report["scheme"];
    assert_eq!(scheme["season_phase"], "during");
    assert_eq!(
        (
            scheme["backlog_carried_over"].as_u64(),
            scheme["backlog_still_open"].as_u64()
        ),
        (Some(1), Some(1))
    );
    // Resolved: first (callback done) and reopened (callback done after its second visit).
    assert_eq!(scheme["resolved"], 2, "{scheme}");
    assert_eq!(scheme["first_time_fixes"], 1);
    assert_eq!(scheme["first_time_fix_rate"], 0.5);
    assert_eq!(scheme["reopened"], 1);
    // Fault orders of the day: first, repeat, reopened; one repeat.
    assert_eq!(
        (
            scheme["fault_orders"].as_u64(),
            scheme["repeat_faults"].as_u64()
        ),
        (Some(3), Some(1))
    );
    let kinds = &scheme["requests_by_kind"];
    assert_eq!(
        (
            kinds["repair"]["received"].as_u64(),
            kinds["repair"]["responded"].as_u64()
        ),
        (Some(3), Some(3))
    );
    assert_eq!(kinds["policy"]["response_rate"], 1.0);
    assert_eq!(
        (
            kinds["charge"]["received"].as_u64(),
            kinds["charge"]["responded"].as_u64()
        ),
        (Some(1), Some(0))
    );
    let oow = &scheme["out_of_warranty"];
    assert_eq!(oow["households"], 1);
    assert_eq!(oow["funding_cents_per_year"], 10_000);
    assert_eq!(
        oow["funding_cents_in_period"], 27,
        "100 CNY / 365 for one day"
    );
    let staffing = scheme["staffing"].as_array().expect("staffing");
    assert_eq!(staffing.len(), 1);
    assert_eq!(staffing[0]["township"], "yanqing");
    assert_eq!(staffing[0]["households"], 4);
    assert_eq!(staffing[0]["meets"], true);
    let vendors = scheme["vendor_assessment"].as_array().expect("vendors");
    assert_eq!(vendors.len(), 1, "{vendors:?}");
    assert_eq!(vendors[0]["rank"], 1);
    // One repeat among the vendor's three fault orders; satisfaction (5 + 4) / 2.
    let repeat_rate = vendors[0]["repeat_fault_rate"].as_f64().expect("rate");
    assert!((repeat_rate - 1.0 / 3.0).abs() < 1e-9, "{repeat_rate}");
    assert_eq!(vendors[0]["satisfaction_mean"], 4.5);
    assert!(vendors[0]["score"]
        .as_f64()
        .is_some_and(|s| s > 0.0 && s <= 100.0));
    // The printable report has the section.
    let html = api
        .client
        .get(format!(
            "{}/api/v1/reports/daily?date=2026-12-01&format=html",
            api.base
        ))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("html")
        .text()
        .await
        .expect("text");
    assert!(
        html.contains("Vendor assessment") && html.contains("First-time fix"),
        "{html}"
    );
    let _ = repeat;

    // Another township's officer sees none of it; a team no registry figures.
    let (status, theirs) = api
        .call(
            "GET",
            "/api/v1/reports/daily?date=2026-12-01",
            Some(SIHAI),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(theirs["scheme"]["backlog_carried_over"], 0);
    assert_eq!(theirs["scheme"]["requests_by_kind"], json!({}));
    assert_eq!(theirs["scheme"]["staffing"], json!([]));
    let (status, team) = api
        .call(
            "GET",
            "/api/v1/reports/daily?date=2026-12-01",
            Some(TEAM_AURORA),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(team["scheme"]["out_of_warranty"], Value::Null);
    assert_eq!(team["scheme"]["staffing"], json!([]));
}
