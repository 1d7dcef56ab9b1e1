//! Prevention before the cold through the gateway library and its HTTP API: a cold-wave sweep
//! on a forecast file opens exactly the planned visits and calls, in risk order, up to the
//! capacity, and never twice (again, or after a restart); each prevention route answers each
//! role as the scope allows. Time is the order service's test clock; nothing sleeps.

use std::sync::Arc;

mod support;

use gateway::auth::Authenticator;
use gateway::config::{ApiConfig, AuthMode, HttpConfig};
use gateway::fleet::Fleet;
use gateway::metrics::Metrics;
use gateway::orders::clock::SharedClock;
use gateway::orders::store::{OrderFilter, Store};
use gateway::orders::{OrderService, OrderState};
use gateway::prevention::{Capacity, Prevention, PreventionConfig};
use gateway::registry::RegistryData;
use rules::{Action, Severity, Transition, TransitionKind};
use serde_json::{json, Value};
use support::{Api, OPERATOR, SIHAI, TEAM_AURORA, TEAM_THIRD, VIEWER, YANQING};
use wire::DeviceId;

const H: i64 = 3_600_000;
/// 2026-12-10T00:00+08:00, in the heating season.
const T0: i64 = 1_796_832_000_000;

/// Aurora heat pumps: four in Yongning's Beiguan, three in its Nanguan, three in Yanqing town's
/// Dongguan, two in Sihai; each village's `…0001` is a vulnerable household. All installed
/// two years ago, so age adds nothing.
fn registry() -> RegistryData {
    let mut fleet = support::aurora_heat_pumps(
        &[
            ("yongning", "永宁镇", "beiguan", "北关村"),
            ("yanqing", "延庆镇", "dongguan", "东关村"),
            ("sihai", "四海镇", "sihai", "四海村"),
        ],
        3,
        |n| n == 1,
    );
    fleet.extend(support::aurora_heat_pumps(
        &[("yongning", "永宁镇", "nanguan", "南关村")],
        3,
        |n| n == 1,
    ));
    let mut extra =
        support::aurora_heat_pumps(&[("yongning", "永宁镇", "beiguan", "北关村")], 4, |_| false);
    fleet.push(extra.remove(3));
    let mut data = gateway::registry::demo::generate(&fleet, 7);
    for device in &mut data.devices {
        device.installed_on = "2024-10-01".into();
        device.warranty_until = "2029-09-30".into();
    }
    data
}

/// A forecast with a cold wave for Yongning (-18 °C a day ahead) and mild weather elsewhere.
const FORECAST: &str = "# test forecast\ntime,township_or_village,min_temp_c\n\
2026-12-10T06:00+08:00,yongning,-6\n2026-12-11T06:00+08:00,yongning,-18\n2026-12-12T00:00+08:00,yongning,-12\n\
2026-12-10T06:00+08:00,yanqing,-5\n2026-12-11T06:00+08:00,yanqing,-7\n\
2026-12-10T06:00+08:00,sihai,-4\n2026-12-11T06:00+08:00,sihai,-6\n";

fn alert(device: &str, rule: &str, at_ms: i64, kind: TransitionKind) -> (Transition, String) {
    let township = device.split('-').next().unwrap_or_default().to_owned();
    (
        Transition {
            episode_id: format!("{rule}:{device}:{T0}"),
            rule_id: rule.into(),
            device_id: DeviceId::parse(device).expect("id"),
            kind,
            at_ms,
            severity: Severity::Minor,
            action: Action::AlertOnly,
            summary: format!("{rule} on {device}"),
            suppressed_by: None,
        },
        township,
    )
}

/// Soft-fault alerts that give the Yongning units their scores:
/// beiguan-0000 45 (protection trips, defrost), nanguan-0000 40 (defrost, capacity limit),
/// beiguan-0001 35 (vulnerable, COP degraded), beiguan-0002 25 (capacity limit, short-cycling
/// cleared), nanguan-0001 45 (vulnerable, offline); the rest below the call score.
async fn signals(service: &OrderService) {
    let firing = TransitionKind::Firing;
    let mut transitions = vec![
        alert(
            "yongning-beiguan-0000",
            "protection_trips",
            T0 - 5 * H,
            firing,
        ),
        alert(
            "yongning-beiguan-0000",
            "defrost_excessive",
            T0 - 4 * H,
            firing,
        ),
        alert(
            "yongning-nanguan-0000",
            "defrost_excessive",
            T0 - 4 * H,
            firing,
        ),
        alert(
            "yongning-nanguan-0000",
            "capacity_limit",
            T0 - 3 * H,
            firing,
        ),
        alert("yongning-beiguan-0001", "cop_degraded", T0 - 3 * H, firing),
        alert(
            "yongning-beiguan-0002",
            "capacity_limit",
            T0 - 2 * H,
            firing,
        ),
        alert(
            "yongning-beiguan-0002",
            "short_cycling",
            T0 - 30 * H,
            firing,
        ),
        // Outside the wave: scored, never planned.
        alert("sihai-sihai-0000", "protection_trips", T0 - 2 * H, firing),
        alert(
            "yanqing-dongguan-0000",
            "defrost_excessive",
            T0 - 2 * H,
            firing,
        ),
    ];
    transitions.push(alert(
        "yongning-beiguan-0002",
        "short_cycling",
        T0 - 20 * H,
        TransitionKind::Resolved,
    ));
    service.apply(transitions).await.expect("alerts stored");
}

fn config(forecast_file: std::path::PathBuf) -> PreventionConfig {
    PreventionConfig {
        forecast_file: Some(forecast_file),
        visits_per_township_per_day: 2,
        calls_per_township_per_day: 1,
        auto_open: false,
        ..PreventionConfig::default()
    }
}

/// The system under test: the order service on a store file, the fleet with one Yongning box
/// offline, the prevention component with the forecast read, and the API serving it.
struct System {
    api: Api,
    prevention: Arc<Prevention>,
    metrics: Arc<Metrics>,
    stop: tokio_util::sync::CancellationToken,
}

async fn start(store: Store, clock_at: i64, forecast: std::path::PathBuf) -> System {
    let metrics = Arc::new(Metrics::default());
    let clock = SharedClock::new(clock_at);
    let service = OrderService::new(
        store,
        Arc::clone(&metrics),
        Arc::new(clock.clone()),
        gateway::orders::sla::SlaConfig::default(),
    );
    let fleet = Arc::new(Fleet::default());
    fleet.agent_status(
        "yongning",
        "yongning-nanguan-0001",
        &[DeviceId::parse("yongning-nanguan-0001").expect("id")],
        false,
    );
    let prevention = Prevention::new(
        config(forecast),
        service.clone(),
        Arc::clone(&fleet),
        Arc::clone(&metrics),
    )
    .expect("prevention");
    assert_eq!(
        prevention.refresh_forecast().await.expect("forecast read"),
        Some(7)
    );
    let state = gateway::api::ApiState {
        fleet,
        orders: service.clone(),
        metrics: Arc::clone(&metrics),
        auth: Arc::new(Authenticator::new(&ApiConfig {
            auth: AuthMode::Tokens,
            tokens: support::role_tokens(),
        })),
        sink: None,
    };
    let app = gateway::api::router(state).layer(axum::Extension(Arc::clone(&prevention)));
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
        prevention,
        metrics,
        stop,
    }
}

fn devices(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|u| {
            u.pointer(key)
                .and_then(Value::as_str)
                .expect("device id")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_sweep_opens_exactly_the_planned_visits_and_calls_in_risk_order_up_to_capacity_and_never_twice(
) {
    let dir = support::scratch("prevention-sweep");
    let forecast = dir.join("forecast.csv");
    std::fs::write(&forecast, FORECAST).expect("forecast");
    let path = dir.join("g.sqlite");
    let mut store = Store::open(&path).expect("store");
    store.import_registry(&registry()).expect("import");
    let system = start(store, T0, forecast.clone()).await;
    signals(&system.api.service).await;

    let (status, view) = system
        .api
        .call("GET", "/api/v1/prevention/sweep", Some(OPERATOR), None)
        .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["plan"]["waves"].as_array().map(Vec::len), Some(1));
    assert_eq!(view["plan"]["waves"][0]["id"], "yongning@2026-12-11");
    let units = &view["plan"]["units"];
    let ranked: Vec<(String, u64, String, String)> = units
        .as_array()
        .expect("units")
        .iter()
        .map(|p| {
            (
                p["unit"]["device_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                p["unit"]["score"].as_u64().unwrap_or_default(),
                p["action"].as_str().unwrap_or_default().to_owned(),
                p["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let expected = |device: &str, score: u64, action: &str, status: &str| {
        (
            device.to_owned(),
            score,
            action.to_owned(),
            status.to_owned(),
        )
    };
    assert_eq!(
        ranked,
        vec![
            expected("yongning-beiguan-0000", 45, "preventive_visit", "planned"),
            expected("yongning-nanguan-0001", 45, "contact_household", "planned"),
            expected("yongning-nanguan-0000", 40, "preventive_visit", "planned"),
            expected(
                "yongning-beiguan-0001",
                35,
                "preventive_visit",
                "over_capacity"
            ),
            expected(
                "yongning-beiguan-0002",
                25,
                "contact_household",
                "over_capacity"
            ),
        ]
    );
    let reasons = &units[0]["unit"]["reasons"];
    assert_eq!(reasons[0]["code"], "protection_trips");
    assert_eq!(reasons[0]["weight"], 25);
    assert!(units[0]["hours_to_cold"].as_f64().is_some_and(|h| h > 1.0));

    // Opening: exactly the planned three, in rank order.
    let (status, outcome) = system
        .api
        .call(
            "POST",
            "/api/v1/prevention/sweep",
            Some(OPERATOR),
            Some(json!({"visits_per_township": 2, "calls_per_township": 1})),
        )
        .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        devices(&outcome["opened"], "/device_id"),
        vec![
            "yongning-beiguan-0000",
            "yongning-nanguan-0001",
            "yongning-nanguan-0000"
        ]
    );
    let orders = system
        .api
        .service
        .with_store(|s| {
            s.orders(&OrderFilter {
                limit: 100,
                ..OrderFilter::default()
            })
        })
        .await
        .expect("orders");
    assert_eq!(orders.len(), 3, "only the sweep's orders exist");
    for order in &orders {
        assert_eq!(order.source, "prevention");
        assert_eq!(order.priority, "low");
        assert!(order.pre_emptive);
        assert!(
            order.summary.contains("yongning@2026-12-11"),
            "{}",
            order.summary
        );
        match order.category.as_str() {
            // Visits go to the vendor's team; calls wait for the desk.
            "preventive_visit" => assert_eq!(order.state, OrderState::Dispatched),
            "contact_household" => assert_eq!(order.state, OrderState::Created),
            other => panic!("unexpected category {other}"),
        }
    }
    let visit = orders
        .iter()
        .find(|o| o.device_id == "yongning-beiguan-0000")
        .expect("visit");
    assert!(
        visit.summary.contains("protection_trips +25"),
        "{}",
        visit.summary
    );
    assert_eq!(visit.team_id.as_deref(), Some("aurora-yongning"));

    // Again: nothing more; the opened ones are marked.
    let (status, again) = system
        .api
        .call(
            "POST",
            "/api/v1/prevention/sweep",
            Some(OPERATOR),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["opened"], json!([]));
    let statuses: Vec<&str> = again["plan"]["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|p| p["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        vec![
            "already_opened",
            "already_opened",
            "already_opened",
            "over_capacity",
            "over_capacity"
        ]
    );
    assert_eq!(
        system.metrics.prevention.forecast_loads("ok"),
        1,
        "one forecast read"
    );
    let metrics_text = system.metrics.render(&[]);
    assert!(metrics_text
        .contains("gateway_prevention_orders_opened_total{category=\"preventive_visit\"} 2\n"));
    system.stop.cancel();
    drop(system);

    // A restart on the same store, later the same day: nothing is opened twice.
    let store = Store::open(&path).expect("store again");
    let restarted = start(store, T0 + 2 * H, forecast).await;
    let outcome = restarted
        .prevention
        .open(
            Capacity {
                visits_per_township: 2,
                calls_per_township: 1,
            },
            "operator:test",
        )
        .await
        .expect("sweep");
    assert!(outcome.opened.is_empty(), "{:?}", outcome.opened);
    // The next day the capacity is new: the units left yesterday get theirs, the others none.
    restarted.api.clock.advance_to(T0 + 26 * H);
    let outcome = restarted
        .prevention
        .open(
            Capacity {
                visits_per_township: 2,
                calls_per_township: 1,
            },
            "operator:test",
        )
        .await
        .expect("sweep");
    let next: Vec<&str> = outcome
        .opened
        .iter()
        .map(|o| o.device_id.as_str())
        .collect();
    assert_eq!(next, vec!["yongning-beiguan-0001", "yongning-beiguan-0002"]);
    restarted.stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn each_prevention_route_answers_each_role_within_its_scope() {
    let dir = support::scratch("prevention-roles");
    let forecast = dir.join("forecast.csv");
    std::fs::write(&forecast, FORECAST).expect("forecast");
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&registry()).expect("import");
    let system = start(store, T0, forecast).await;
    signals(&system.api.service).await;
    let api = &system.api;
    let risk = "/api/v1/prevention/risk";

    let (status, all) = api.call("GET", risk, Some(OPERATOR), None).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["total"], 13);
    let scores: Vec<u64> = all["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| u["score"].as_u64().unwrap_or_default())
        .collect();
    let mut sorted = scores.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(scores, sorted);
    let (status, limited) = api
        .call("GET", &format!("{risk}?limit=2"), Some(VIEWER), None)
        .await;
    assert_eq!(
        (status, limited["units"].as_array().map(Vec::len)),
        (200, Some(2))
    );

    let (status, sihai) = api.call("GET", risk, Some(SIHAI), None).await;
    assert_eq!(status, 200, "{sihai}");
    assert!(devices(&sihai["units"], "/device_id")
        .iter()
        .all(|d| d.starts_with("sihai-")));
    assert_eq!(sihai["total"], 3);
    let (status, _) = api
        .call(
            "GET",
            &format!("{risk}?township=yongning"),
            Some(SIHAI),
            None,
        )
        .await;
    assert_eq!(status, 403);
    // The vendor team sees its vendor's units in its zone; the third party the out-of-warranty
    // ones (none here).
    let (status, aurora) = api.call("GET", risk, Some(TEAM_AURORA), None).await;
    assert_eq!(status, 200, "{aurora}");
    assert_eq!(aurora["total"], 3);
    assert!(devices(&aurora["units"], "/device_id")
        .iter()
        .all(|d| d.starts_with("yanqing-")));
    let (status, third) = api.call("GET", risk, Some(TEAM_THIRD), None).await;
    assert_eq!((status, third["total"].clone()), (200, json!(0)));
    for bad in ["?limit=0", "?limit=1001", "?colour=red"] {
        let (status, _) = api
            .call("GET", &format!("{risk}{bad}"), Some(OPERATOR), None)
            .await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, _) = api.call("GET", risk, None, None).await;
    assert_eq!(status, 401);

    let sweep = "/api/v1/prevention/sweep";
    let (status, view) = api.call("GET", sweep, Some(YANQING), None).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["plan"]["waves"], json!([]), "no wave in Yanqing town");
    assert!(view["forecast"]
        .as_array()
        .expect("forecast")
        .iter()
        .all(|p| p["area"] == "yanqing"));
    let (status, view) = api.call("GET", sweep, Some(VIEWER), None).await;
    assert_eq!(
        (status, view["plan"]["units"].as_array().map(Vec::len)),
        (200, Some(5))
    );
    let (status, _) = api
        .call(
            "GET",
            &format!("{sweep}?township=yongning"),
            Some(YANQING),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = api.call("GET", sweep, None, None).await;
    assert_eq!(status, 401);

    for token in [VIEWER, SIHAI, YANQING, TEAM_AURORA, TEAM_THIRD] {
        let (status, body) = api.call("POST", sweep, Some(token), Some(json!({}))).await;
        assert_eq!(status, 403, "{token}: {body}");
    }
    let (status, _) = api.call("POST", sweep, None, Some(json!({}))).await;
    assert_eq!(status, 401);
    let (status, body) = api
        .call(
            "POST",
            sweep,
            Some(OPERATOR),
            Some(json!({"visits_per_township": 5000})),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (status, _) = api
        .call("POST", sweep, Some(OPERATOR), Some(json!({"visits": 1})))
        .await;
    assert_eq!(status, 400);
    let nothing_opened = api
        .service
        .with_store(|s| s.order_counts())
        .await
        .expect("counts");
    assert!(nothing_opened.is_empty(), "{nothing_opened:?}");
    let (status, outcome) = api
        .call(
            "POST",
            sweep,
            Some(OPERATOR),
            Some(json!({"calls_per_township": 0})),
        )
        .await;
    assert_eq!(status, 200, "{outcome}");
    assert_eq!(
        devices(&outcome["opened"], "/device_id"),
        vec!["yongning-beiguan-0000", "yongning-nanguan-0000"]
    );
    system.stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_gateway_config_with_a_bad_forecast_file_is_refused_with_its_line_and_field() {
    let dir = support::scratch("prevention-config");
    std::fs::write(
        dir.join("forecast.csv"),
        "time,township_or_village,min_temp_c\n2026-12-10T00:00,yongning,-3\n2026-12-10T03:00,yongning,frost\n",
    )
    .expect("forecast");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "{}[prevention]\nforecast_file = \"forecast.csv\"\n",
            support::minimal_config("")
        ),
    )
    .expect("config");
    let error = gateway::config::GatewayConfig::load(Some(&config))
        .expect_err("refused")
        .to_string();
    assert!(error.contains("prevention.forecast_file"), "{error}");
    assert!(
        error.contains("forecast.csv:3: field `min_temp_c`: \"frost\" is not a number"),
        "{error}"
    );
    std::fs::write(
        dir.join("forecast.csv"),
        "time,township_or_village,min_temp_c\n2026-12-10T00:00,yongning,-3\n",
    )
    .expect("forecast");
    let loaded = gateway::config::GatewayConfig::load(Some(&config)).expect("valid");
    assert_eq!(
        loaded.prevention.forecast_file,
        Some(dir.join("forecast.csv"))
    );
    let _ = std::fs::remove_dir_all(&dir);
}
