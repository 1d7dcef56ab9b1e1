//! Inspection campaigns (取暖季前巡检) through the gateway library and its HTTP API: a campaign
//! over a test fleet is planned (one inspection order per unit in scope, routed like a repair,
//! balanced over technicians and days, riskiest first), visited (done, a defect that opens a
//! linked repair order, a resident not at home retried on a later day and, at the last try,
//! given up, a refusal), and its coverage is exact on the campaign's page and in the daily
//! report, before and after a restart; every new route answers each role within its scope.
//! Time is the order service's test clock; nothing sleeps.

use std::collections::BTreeMap;
use std::sync::Arc;

mod support;

use gateway::auth::{Authenticator, Role};
use gateway::config::{ApiConfig, AuthMode, HttpConfig, TokenConfig};
use gateway::fleet::Fleet;
use gateway::metrics::Metrics;
use gateway::orders::campaigns::CampaignConfig;
use gateway::orders::clock::SharedClock;
use gateway::orders::sla::SlaClass;
use gateway::orders::store::Store;
use gateway::orders::OrderService;
use gateway::prevention::{Prevention, PreventionConfig};
use gateway::registry::{RegistryData, Technician};
use rules::{Action, Severity, Transition, TransitionKind};
use serde_json::{json, Value};
use support::{Api, OPERATOR, SIHAI, TEAM_AURORA, VIEWER};
use wire::DeviceId;

const H: i64 = 3_600_000;
/// 2026-10-12T08:00+08:00, a month before the heating season.
const T0: i64 = 1_791_763_200_000;

const TECH_A1: &str = "technician-aurora-yongning-01-token";
const TECH_A2: &str = "technician-aurora-yongning-02-token";
const THIRD_YN: &str = "team-third-party-yongning-token";
const YONGNING: &str = "township-yongning-token-0123";

/// Aurora heat pumps: six in Yongning's Beiguan, four in its Nanguan (two of them out of
/// warranty: the third party's), three in Sihai (one of them a Beifeng unit); each village's
/// `…0001` is a vulnerable household. Aurora's Yongning team has two technicians.
fn registry() -> RegistryData {
    let mut fleet = support::aurora_heat_pumps(
        &[("yongning", "永宁镇", "beiguan", "北关村")],
        6,
        |n| n == 1,
    );
    fleet.extend(support::aurora_heat_pumps(
        &[("yongning", "永宁镇", "nanguan", "南关村")],
        4,
        |n| n == 1,
    ));
    fleet.extend(support::aurora_heat_pumps(
        &[("sihai", "四海镇", "sihai", "四海村")],
        3,
        |n| n == 1,
    ));
    if let Some(unit) = fleet.iter_mut().find(|u| u.device_id == "sihai-sihai-0002") {
        unit.brand = "Beifeng".into();
    }
    let mut data = gateway::registry::demo::generate(&fleet, 7);
    for device in &mut data.devices {
        device.installed_on = "2024-10-01".into();
        device.warranty_until = "2029-09-30".into();
        if device.id == "yongning-nanguan-0002" || device.id == "yongning-nanguan-0003" {
            device.installed_on = "2018-10-01".into();
            device.warranty_until = "2023-09-30".into();
        }
    }
    data.technicians.push(Technician {
        id: "aurora-yongning-tech-02".into(),
        team_id: "aurora-yongning".into(),
        name: "李明".into(),
        phone: "10090000999".into(),
        home_village_id: Some("yongning-nanguan".into()),
    });
    data
}

fn alert(device: &str, rule: &str) -> (Transition, String) {
    let township = device.split('-').next().unwrap_or_default().to_owned();
    (
        Transition {
            episode_id: format!("{rule}:{device}:{T0}"),
            rule_id: rule.into(),
            device_id: DeviceId::parse(device).expect("id"),
            kind: TransitionKind::Firing,
            at_ms: T0 - 5 * H,
            severity: Severity::Minor,
            action: Action::AlertOnly,
            summary: format!("{rule} on {device}"),
            suppressed_by: None,
        },
        township,
    )
}

fn tokens() -> Vec<TokenConfig> {
    let mut tokens = support::role_tokens();
    tokens.push(support::technician_token(
        "a1",
        TECH_A1,
        "aurora-yongning",
        "aurora-yongning-tech-01",
    ));
    tokens.push(support::technician_token(
        "a2",
        TECH_A2,
        "aurora-yongning",
        "aurora-yongning-tech-02",
    ));
    tokens.push(support::token(
        "third-yn",
        THIRD_YN,
        Role::Team,
        None,
        Some("third-party-yongning"),
    ));
    tokens.push(support::token(
        "yongning",
        YONGNING,
        Role::Township,
        Some("yongning"),
        None,
    ));
    tokens
}

struct System {
    api: Api,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
}

async fn start(store: Store, clock_at: i64) -> System {
    let metrics = Arc::new(Metrics::default());
    let clock = SharedClock::new(clock_at);
    let service = OrderService::new(
        store,
        Arc::clone(&metrics),
        Arc::new(clock.clone()),
        gateway::orders::sla::SlaConfig::default(),
    );
    let fleet = Arc::new(Fleet::default());
    let prevention = Prevention::new(
        PreventionConfig {
            auto_open: false,
            ..PreventionConfig::default()
        },
        service.clone(),
        Arc::clone(&fleet),
        Arc::clone(&metrics),
    )
    .expect("prevention");
    let state = gateway::api::ApiState {
        fleet,
        orders: service.clone(),
        metrics: Arc::clone(&metrics),
        auth: Arc::new(Authenticator::new(&ApiConfig {
            auth: AuthMode::Tokens,
            tokens: tokens(),
        })),
        sink: None,
    };
    let app = gateway::api::router(state)
        .layer(axum::Extension(prevention))
        .layer(axum::Extension(CampaignConfig::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let stop = tokio_util::sync::CancellationToken::new();
    let limits = HttpConfig::default();
    let serve_metrics = Arc::clone(&metrics);
    let serve_stop = stop.clone();
    tokio::spawn(async move {
        gateway::api::serve_with(listener, app, serve_metrics, &limits, serve_stop).await
    });
    System {
        api: Api {
            base,
            client: reqwest::Client::new(),
            service,
            clock,
        },
        metrics,
        stop,
    }
}

fn plan_body() -> Value {
    json!({
        "name": "2026 取暖季前巡检 永宁 四海",
        "start_date": "2026-10-12",
        "end_date": "2026-10-25",
        "townships": ["yongning", "sihai"],
        "per_technician_per_day": 2,
        "max_tries": 2
    })
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}

fn all_ok(kind: &str) -> Value {
    let items = if kind == "heat_pump" {
        vec![
            "refrigerant_pressures",
            "filter",
            "defrost_drain",
            "insulation",
        ]
    } else {
        vec!["water_pressure", "flue", "gas_tightness", "co_alarm"]
    };
    Value::Array(
        items
            .into_iter()
            .map(|item| json!({"item": item, "result": "ok"}))
            .collect(),
    )
}

async fn record(api: &Api, token: &str, id: i64, body: Value) -> (u16, Value) {
    api.call(
        "POST",
        &format!("/api/v1/inspections/{id}/outcome"),
        Some(token),
        Some(body),
    )
    .await
}

/// (in scope, inspected, defects, not at home, refused, pending).
type Figures = (u64, u64, u64, u64, u64, u64);

fn progress(row: &Value) -> Figures {
    let n = |k: &str| row[k].as_u64().unwrap_or(u64::MAX);
    (
        n("in_scope"),
        n("inspected"),
        n("defects"),
        n("not_home"),
        n("refused"),
        n("pending"),
    )
}

#[tokio::test]
async fn a_campaign_is_planned_balanced_visited_and_covered_exactly_through_the_api() {
    let dir = support::scratch("campaigns");
    let path = dir.join("g.sqlite");
    let mut store = Store::open(&path).expect("store");
    store.import_registry(&registry()).expect("import");
    let system = start(store, T0).await;
    let api = &system.api;
    api.service
        .apply(vec![
            alert("yongning-beiguan-0004", "protection_trips"),
            alert("yongning-beiguan-0004", "defrost_excessive"),
            alert("yongning-nanguan-0000", "defrost_excessive"),
            alert("yongning-nanguan-0002", "capacity_limit"),
        ])
        .await
        .expect("alerts");

    let (status, created) = api
        .call(
            "POST",
            "/api/v1/campaigns",
            Some(OPERATOR),
            Some(plan_body()),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (created["planned"].as_u64(), created["unscheduled"].as_u64()),
        (Some(13), Some(0))
    );
    let id = created["campaign"]["id"].as_i64().expect("id");
    let (status, detail) = api
        .call(
            "GET",
            &format!("/api/v1/campaigns/{id}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, 200, "{detail}");
    let inspections = detail["inspections"]
        .as_array()
        .expect("inspections")
        .clone();
    assert_eq!(inspections.len(), 13);

    // Risk order: ranks 1.., scores never rising; the riskiest unit first, with its reasons.
    let scores: Vec<u64> = inspections
        .iter()
        .map(|i| i["score"].as_u64().unwrap_or(0))
        .collect();
    let mut sorted = scores.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(scores, sorted);
    assert_eq!(text(&inspections[0], "device_id"), "yongning-beiguan-0004");
    assert_eq!(inspections[0]["reasons"][0]["code"], "protection_trips");
    assert_eq!(
        inspections[0]["checklist"].as_array().map(Vec::len),
        Some(4)
    );
    // Routing as for repairs: the two out-of-warranty units to the third party, the Beifeng
    // unit to Beifeng's team, the rest to Aurora's.
    let team_of = |device: &str| {
        inspections
            .iter()
            .find(|i| i["device_id"] == device)
            .map(|i| text(i, "team_id"))
            .unwrap_or_default()
    };
    assert_eq!(team_of("yongning-nanguan-0002"), "third-party-yongning");
    assert_eq!(team_of("yongning-nanguan-0003"), "third-party-yongning");
    assert_eq!(team_of("sihai-sihai-0002"), "beifeng-sihai");
    assert_eq!(team_of("yongning-beiguan-0000"), "aurora-yongning");
    // The day plan: at most 2 a technician a day; Aurora's eight Yongning units over its two
    // technicians, four each, on the first two days; within each team the days follow rank.
    let mut per_day: BTreeMap<(String, String), u32> = BTreeMap::new();
    let mut per_tech: BTreeMap<String, u32> = BTreeMap::new();
    let mut last_day: BTreeMap<String, String> = BTreeMap::new();
    for inspection in &inspections {
        let (tech, date, team) = (
            text(inspection, "technician_id"),
            text(inspection, "planned_date"),
            text(inspection, "team_id"),
        );
        *per_day.entry((tech.clone(), date.clone())).or_default() += 1;
        *per_tech.entry(tech).or_default() += 1;
        let previous = last_day
            .insert(team.clone(), date.clone())
            .unwrap_or_default();
        assert!(previous <= date, "{team}: {previous} after {date}");
    }
    assert!(per_day.values().all(|n| *n <= 2), "{per_day:?}");
    assert_eq!(per_tech["aurora-yongning-tech-01"], 4);
    assert_eq!(per_tech["aurora-yongning-tech-02"], 4);
    assert_eq!(per_tech["third-party-yongning-tech-01"], 2);
    assert_eq!(
        per_day[&(
            "aurora-yongning-tech-01".to_owned(),
            "2026-10-13".to_owned()
        )],
        2
    );
    assert_eq!(inspections[0]["planned_date"], "2026-10-12");
    assert!(detail["days"].as_array().is_some_and(|d| !d.is_empty()));

    // The inspection orders: low priority, the maintenance clocks from the planned day,
    // dispatched to the planned technician, the risk in the summary.
    let first_order = inspections[0]["order_id"].as_i64().expect("order");
    let order = api
        .service
        .with_store(move |s| s.order_row(first_order))
        .await
        .expect("read")
        .expect("order");
    assert_eq!(
        (order.category.as_str(), order.priority.as_str()),
        ("inspection", "low")
    );
    assert_eq!(SlaClass::of(&order), SlaClass::Maintenance);
    assert_eq!(order.state, gateway::orders::OrderState::Dispatched);
    assert_eq!(
        order.technician_id.as_deref(),
        Some(text(&inspections[0], "technician_id").as_str())
    );
    assert!(
        order.summary.contains("protection_trips +25"),
        "{}",
        order.summary
    );
    assert_eq!(order.sla_from_ms, Some(T0));

    // The field view: the technician's own inspections first, each with its checklist.
    let (status, field) = api
        .call("GET", "/api/v1/inspections", Some(TECH_A1), None)
        .await;
    assert_eq!(status, 200, "{field}");
    let field = field.as_array().expect("list").clone();
    assert_eq!(field.len(), 8, "the team's eight");
    assert_eq!(field[0]["technician_id"], "aurora-yongning-tech-01");
    let mine: Vec<&Value> = field
        .iter()
        .filter(|i| i["technician_id"] == "aurora-yongning-tech-01")
        .collect();
    assert_eq!(mine.len(), 4);
    let id_of = |v: &Value| v["id"].as_i64().expect("id");
    let (a, b, c, d) = (
        id_of(mine[0]),
        id_of(mine[1]),
        id_of(mine[2]),
        id_of(mine[3]),
    );

    // A: done, sent twice with one key: applied once.
    let a_path = format!("/api/v1/inspections/{a}/outcome");
    let done = json!({"outcome": "done", "answers": all_ok("heat_pump")});
    let (status, first, replayed) = api
        .post_once(&a_path, TECH_A1, "visit-a-0001", done.clone())
        .await;
    assert_eq!((status, replayed), (200, false), "{first}");
    assert_eq!(first["status"], "done");
    let (status, again, replayed) = api
        .post_once(&a_path, TECH_A1, "visit-a-0001", done.clone())
        .await;
    assert_eq!((status, replayed, &again), (200, true, &first));
    let (status, _) = record(api, TECH_A1, a, done.clone()).await;
    assert_eq!(status, 409, "recorded already");

    // B: a defect opens a linked repair order, routed as usual.
    let (status, defect) = record(
        api,
        TECH_A1,
        b,
        json!({"outcome": "defect", "note": "滤网堵塞", "answers": [
            {"item": "filter", "result": "fault", "note": "Y-filter clogged"},
            {"item": "refrigerant_pressures", "result": "ok", "value": 2.4}
        ]}),
    )
    .await;
    assert_eq!(status, 200, "{defect}");
    assert_eq!(defect["status"], "defect");
    let repair = defect["repair_order_id"].as_i64().expect("repair order");
    let (status, repair_order) = api
        .call(
            "GET",
            &format!("/api/v1/orders/{repair}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, 200, "{repair_order}");
    assert_eq!(repair_order["category"], "inspection_finding");
    assert_eq!(repair_order["state"], "dispatched");
    assert_eq!(repair_order["team_id"], "aurora-yongning");
    assert!(repair_order["pre_emptive"].as_bool().unwrap_or(false));
    let inspection_order = defect["order_id"].as_i64().expect("order");
    let linked = |order: &Value, kind: &str, needle: String| {
        order["events"].as_array().is_some_and(|e| {
            e.iter().any(|e| {
                e["kind"] == kind && e["note"].as_str().is_some_and(|n| n.contains(&needle))
            })
        })
    };
    assert!(
        linked(
            &repair_order,
            "inspection_linked",
            format!("inspection order {inspection_order}")
        ),
        "{repair_order}"
    );
    let (_, inspected) = api
        .call(
            "GET",
            &format!("/api/v1/orders/{inspection_order}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert!(
        linked(
            &inspected,
            "finding_opened",
            format!("repair order {repair}")
        ),
        "{inspected}"
    );
    assert_eq!(inspected["state"], "closed");

    // C: not at home, planned again on the technician's next day with room (the 13th is
    // full), then done on that day.
    let (status, retried) = record(api, TECH_A1, c, json!({"outcome": "not_home"})).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(
        (retried["status"].clone(), retried["tries"].clone()),
        (json!("planned"), json!(1))
    );
    let retry_day = text(&retried, "planned_date");
    assert!(retry_day.as_str() > "2026-10-12", "{retry_day}");
    let visits_that_day = per_day
        .get(&("aurora-yongning-tech-01".to_owned(), retry_day.clone()))
        .copied()
        .unwrap_or(0);
    assert!(
        visits_that_day < 2,
        "the retry went to a day with room: {retry_day}"
    );
    api.clock.advance_to(T0 + 2 * 24 * H);
    let (status, done_c) = record(api, THIRD_YN, c, done.clone()).await;
    assert_eq!(status, 404, "another team's inspection: {done_c}");
    let (status, done_c) = record(api, TECH_A1, c, done.clone()).await;
    assert_eq!(
        (status, done_c["status"].clone(), done_c["tries"].clone()),
        (200, json!("done"), json!(2))
    );

    // D: not at home twice (max_tries 2): given up, its order cancelled.
    let (_, first_try) = record(api, TECH_A1, d, json!({"outcome": "not_home"})).await;
    assert_eq!(first_try["status"], "planned");
    let (status, given_up) = record(
        api,
        TECH_A1,
        d,
        json!({"outcome": "not_home", "note": "邻居说外出打工"}),
    )
    .await;
    assert_eq!(
        (status, given_up["status"].clone()),
        (200, json!("not_home")),
        "{given_up}"
    );

    // The third party's: refused by one, the other done by the team's token.
    let (status, theirs) = api
        .call("GET", "/api/v1/inspections", Some(THIRD_YN), None)
        .await;
    assert_eq!(status, 200, "{theirs}");
    let theirs: Vec<i64> = theirs.as_array().expect("list").iter().map(id_of).collect();
    assert_eq!(theirs.len(), 2);
    let (status, refused) = record(
        api,
        THIRD_YN,
        theirs[0],
        json!({"outcome": "refused", "note": "住户不同意"}),
    )
    .await;
    assert_eq!((status, refused["status"].clone()), (200, json!("refused")));
    let (status, _) = record(
        api,
        THIRD_YN,
        theirs[1],
        json!({"outcome": "done", "answers": all_ok("heat_pump")}),
    )
    .await;
    assert_eq!(status, 200);

    // The rest of Yongning by the operator; Sihai's three stay to do.
    let (_, open) = api
        .call(
            "GET",
            &format!("/api/v1/campaigns/{id}?township=yongning&status=planned"),
            Some(OPERATOR),
            None,
        )
        .await;
    let rest: Vec<i64> = open["inspections"]
        .as_array()
        .expect("list")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(rest.len(), 4);
    for inspection in rest {
        let (status, body) = record(api, OPERATOR, inspection, done.clone()).await;
        assert_eq!(status, 200, "{body}");
    }

    // Coverage: 13 in scope; Yongning's 10: 8 inspected (1 defect), 1 not at home, 1 refused;
    // Sihai's 3 pending.
    let expected_total = (13, 8, 1, 1, 1, 3);
    let check = |view: &Value| {
        assert_eq!(progress(&view["progress"]), expected_total, "{view}");
        let townships: Vec<(String, Figures)> = view["by_township"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| (text(r, "key"), progress(r)))
            .collect();
        assert_eq!(
            townships,
            vec![
                ("sihai".to_owned(), (3, 0, 0, 0, 0, 3)),
                ("yongning".to_owned(), (10, 8, 1, 1, 1, 0)),
            ]
        );
        let vendors: Vec<(String, u64, u64)> = view["by_vendor"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    text(r, "key"),
                    r["in_scope"].as_u64().unwrap_or(0),
                    r["inspected"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            vendors,
            vec![("aurora".to_owned(), 12, 8), ("beifeng".to_owned(), 1, 0)]
        );
        let rate = view["progress"]["coverage_rate"].as_f64().expect("rate");
        assert!((rate - 8.0 / 13.0).abs() < 1e-9, "{rate}");
    };
    let (status, list) = api
        .call("GET", "/api/v1/campaigns", Some(OPERATOR), None)
        .await;
    assert_eq!(status, 200, "{list}");
    check(&list[0]);
    let (status, report) = api
        .call(
            "GET",
            "/api/v1/reports/daily?date=2026-10-14",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        progress(&report["inspection_coverage"]["total"]),
        expected_total
    );
    let (_, report) = api
        .call(
            "GET",
            "/api/v1/reports/monthly?date=2026-10-14",
            Some(YONGNING),
            None,
        )
        .await;
    assert_eq!(
        progress(&report["inspection_coverage"]["total"]),
        (10, 8, 1, 1, 1, 0)
    );
    let (_, later) = api
        .call(
            "GET",
            "/api/v1/reports/daily?date=2026-12-01",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(later["inspection_coverage"]["total"]["in_scope"], 0);
    let metrics = system.metrics.render(&[]);
    assert!(
        metrics.contains("gateway_campaign_outcomes_total{outcome=\"done\"} 7\n"),
        "{metrics}"
    );
    assert!(metrics.contains("gateway_campaign_findings_total 1\n"));
    assert!(metrics.contains("gateway_campaign_retries_total 2\n"));
    system.stop.cancel();
    drop(system);

    // A restart on the same store: the campaign, its plan and its coverage are all there.
    let restarted = start(Store::open(&path).expect("store again"), T0 + 3 * 24 * H).await;
    let (status, list) = restarted
        .api
        .call("GET", "/api/v1/campaigns", Some(VIEWER), None)
        .await;
    assert_eq!(status, 200, "{list}");
    check(&list[0]);
    restarted.stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn each_campaign_route_answers_each_role_within_its_scope_and_bounds_its_input() {
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&registry()).expect("import");
    let system = start(store, T0).await;
    let api = &system.api;
    let campaigns = "/api/v1/campaigns";

    // Planning: operators only; bounded input.
    for token in [VIEWER, SIHAI, YONGNING, TEAM_AURORA, TECH_A1, THIRD_YN] {
        let (status, body) = api
            .call("POST", campaigns, Some(token), Some(plan_body()))
            .await;
        assert_eq!(status, 403, "{token}: {body}");
    }
    let (status, _) = api.call("POST", campaigns, None, Some(plan_body())).await;
    assert_eq!(status, 401);
    let (status, _) = api
        .call(
            "POST",
            campaigns,
            Some(OPERATOR),
            Some(json!({"name": "x", "colour": "red"})),
        )
        .await;
    assert_eq!(status, 400);
    let mut bad = plan_body();
    for (field, value) in [
        ("end_date", json!("2026-10-01")),
        ("start_date", json!("2026-02-30")),
        ("name", json!("x".repeat(101))),
        ("per_technician_per_day", json!(51)),
        ("max_tries", json!(0)),
        ("townships", json!(["atlantis"])),
        ("kinds", json!(["stove"])),
        ("villages", json!(["v".repeat(101)])),
    ] {
        let original = bad[field].clone();
        bad[field] = value;
        let (status, body) = api
            .call("POST", campaigns, Some(OPERATOR), Some(bad.clone()))
            .await;
        assert_eq!(status, 422, "{field}: {body}");
        match original {
            Value::Null => {
                bad.as_object_mut().map(|o| o.remove(field));
            }
            original => bad[field] = original,
        }
    }
    let (status, created) = api
        .call("POST", campaigns, Some(OPERATOR), Some(plan_body()))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["campaign"]["id"].as_i64().expect("id");
    // The same units again: all already await an inspection.
    let (status, body) = api
        .call("POST", campaigns, Some(OPERATOR), Some(plan_body()))
        .await;
    assert_eq!(status, 422, "{body}");

    // Reading: the district for operators and viewers; a township its own units; a team its
    // own; a team outside the scope nothing.
    let one = format!("{campaigns}/{id}");
    let in_scope = |body: &Value| body["progress"]["in_scope"].as_u64().unwrap_or(0);
    for (token, expected) in [
        (OPERATOR, 13),
        (VIEWER, 13),
        (SIHAI, 3),
        (YONGNING, 10),
        (TECH_A1, 8),
        (THIRD_YN, 2),
    ] {
        let (status, list) = api.call("GET", campaigns, Some(token), None).await;
        assert_eq!(status, 200, "{token}: {list}");
        assert_eq!(in_scope(&list[0]), expected, "{token}");
        let (status, detail) = api.call("GET", &one, Some(token), None).await;
        assert_eq!(status, 200, "{token}: {detail}");
        assert_eq!(
            detail["inspections"].as_array().map(Vec::len),
            Some(expected as usize),
            "{token}"
        );
    }
    let (status, list) = api.call("GET", campaigns, Some(TEAM_AURORA), None).await;
    assert_eq!(
        (status, list),
        (200, json!([])),
        "Aurora's Yanqing team has no unit in scope"
    );
    let (status, _) = api.call("GET", &one, Some(TEAM_AURORA), None).await;
    assert_eq!(status, 404);
    for (path, expected) in [
        (format!("{campaigns}/0"), 400),
        (format!("{campaigns}/abc"), 400),
        (format!("{campaigns}/999"), 404),
        (format!("{one}?limit=0"), 400),
        (format!("{one}?limit=5001"), 400),
        (format!("{one}?status=lost"), 400),
        (format!("{one}?date=tomorrow"), 400),
        (format!("{one}?colour=red"), 400),
        (format!("{campaigns}?limit=201"), 400),
    ] {
        let (status, body) = api.call("GET", &path, Some(OPERATOR), None).await;
        assert_eq!(status, expected, "{path}: {body}");
    }
    let (status, _) = api.call("GET", campaigns, None, None).await;
    assert_eq!(status, 401);

    // The field view: teams and operators; a team only its own.
    let field = "/api/v1/inspections";
    for token in [VIEWER, SIHAI, YONGNING] {
        let (status, _) = api.call("GET", field, Some(token), None).await;
        assert_eq!(status, 403, "{token}");
    }
    let (status, _) = api
        .call(
            "GET",
            &format!("{field}?team_id=third-party-yongning"),
            Some(TECH_A1),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = api.call("GET", field, Some(OPERATOR), None).await;
    assert_eq!(status, 400, "an operator names the team or the technician");
    let (status, list) = api
        .call(
            "GET",
            &format!("{field}?technician_id=aurora-yongning-tech-02"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!((status, list.as_array().map(Vec::len)), (200, Some(4)));

    // Recording: the assigned team's technician or an operator; bounded answers.
    let (_, mine) = api.call("GET", field, Some(TECH_A1), None).await;
    let target = mine[0]["id"].as_i64().expect("id");
    let outcome = format!("{field}/{target}/outcome");
    for token in [VIEWER, SIHAI, YONGNING] {
        let (status, _) = api
            .call(
                "POST",
                &outcome,
                Some(token),
                Some(json!({"outcome": "refused"})),
            )
            .await;
        assert_eq!(status, 403, "{token}");
    }
    let (status, _) = api
        .call(
            "POST",
            &outcome,
            Some(THIRD_YN),
            Some(json!({"outcome": "refused"})),
        )
        .await;
    assert_eq!(status, 404, "another team's inspection");
    let (status, _) = api
        .call("POST", &outcome, None, Some(json!({"outcome": "refused"})))
        .await;
    assert_eq!(status, 401);
    for body in [
        json!({"outcome": "done"}),
        json!({"outcome": "done", "answers": [{"item": "flue", "result": "ok"}]}),
        json!({"outcome": "defect", "answers": [{"item": "filter", "result": "ok"}]}),
        json!({"outcome": "refused", "note": "x".repeat(2001)}),
        json!({"outcome": "defect", "answers": [{"item": "filter", "result": "fault"}], "repair_priority": "asap"}),
    ] {
        let (status, answer) = api
            .call("POST", &outcome, Some(TECH_A1), Some(body.clone()))
            .await;
        assert_eq!(status, 422, "{body}: {answer}");
    }
    for body in [
        json!({"outcome": "lost"}),
        json!({"outcome": "done", "extra": 1}),
    ] {
        let (status, _) = api
            .call("POST", &outcome, Some(TECH_A1), Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}");
    }
    let (status, _) = api
        .call(
            "POST",
            &format!("{field}/999/outcome"),
            Some(OPERATOR),
            Some(json!({"outcome": "refused"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = api
        .call(
            "POST",
            &outcome,
            Some(OPERATOR),
            Some(json!({"outcome": "refused"})),
        )
        .await;
    assert_eq!((status, body["status"].clone()), (200, json!("refused")));
    system.stop.cancel();
}
