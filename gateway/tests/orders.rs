//! Work-order tests through the gateway library: the full lifecycle, routing by township and
//! warranty, exactly one order under duplicate and concurrent alerts, complaint linking, SLA
//! clocks moved by a test clock, reports, role isolation over HTTP, and a restart.

use std::collections::BTreeMap;
use std::sync::Arc;

mod support;

use gateway::auth::{Principal, Role};
use gateway::metrics::Metrics;
use gateway::orders::clock::SharedClock;
use gateway::orders::store::{OrderFilter, OrderRow, Store};
use gateway::orders::{
    Channel, ComplaintRequest, OrderAction, OrderService, OrderState, PartUse, RequestError,
};
use gateway::registry::demo::{generate, FleetHousehold};
use gateway::registry::RegistryData;
use rules::{Engine, RuleSet, Transition};
use serde_json::{json, Value};
use support::{Api, OPERATOR, SIHAI, TEAM_AURORA, TEAM_THIRD, VIEWER};
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

const MIN: i64 = 60_000;
/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;

fn fleet() -> Vec<FleetHousehold> {
    let mut households = Vec::new();
    for (index, (township, village)) in [
        ("yanqing", "dongguan"),
        ("yanqing", "xiguan"),
        ("sihai", "sihai"),
        ("yongning", "beiguan"),
    ]
    .iter()
    .enumerate()
    {
        for n in 0..3 {
            households.push(FleetHousehold {
                device_id: format!("{township}-{village}-{:04}", index * 10 + n),
                township: (*township).into(),
                township_name: format!("{township}镇"),
                village: (*village).into(),
                village_name: format!("{village}村"),
                kind: "heat_pump".into(),
                brand: if n == 2 {
                    "Beifeng".into()
                } else {
                    "Aurora".into()
                },
                model: "X".into(),
                vulnerable: n == 1,
            });
        }
    }
    households
}

/// The demo registry with fixed installation dates: `…0000`-style devices in warranty,
/// `…0001` out of warranty.
fn registry() -> RegistryData {
    let mut data = generate(&fleet(), 3);
    for device in &mut data.devices {
        let in_warranty = !device.id.ends_with('1');
        device.installed_on = if in_warranty {
            "2024-10-01".into()
        } else {
            "2018-10-01".into()
        };
        device.warranty_until = if in_warranty {
            "2029-09-30".into()
        } else {
            "2023-09-30".into()
        };
    }
    data
}

fn service(store: Store) -> (OrderService, SharedClock) {
    support::order_service(store, Arc::new(Metrics::default()), T0)
}

/// An in-memory store with [`registry`] imported.
fn store() -> Store {
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&registry()).expect("import");
    store
}

fn fixture() -> (OrderService, SharedClock) {
    service(store())
}

/// The caller the service acts for, as the API would hand it over.
fn principal(role: Role, name: &str, township: Option<&str>, team: Option<&str>) -> Principal {
    Principal {
        name: name.into(),
        role,
        township: township.map(Into::into),
        team: team.map(Into::into),
        technician: None,
    }
}

fn operator() -> Principal {
    principal(Role::Operator, "centre", None, None)
}

fn team(team: &str) -> Principal {
    principal(Role::Team, team, None, Some(team))
}

fn reading(device: &str, ts_ms: i64, seq: u64, fault: Option<FaultCategory>) -> Telemetry {
    Telemetry {
        v: 1,
        device_id: DeviceId::parse(device).expect("id"),
        ts_ms,
        seq,
        profile: "aurora-ashp".into(),
        kind: DeviceKind::HeatPump,
        values: wire::Values::from([("indoor_temp_c", 19.0)]),
        fault: fault.map(|category| Fault {
            code: 1,
            category,
            text: "test fault".into(),
        }),
        extra: BTreeMap::new(),
    }
}

/// The firing transition of the default fault rule for `device` at `at_ms`.
fn fault_alert(device: &str, at_ms: i64) -> Vec<(Transition, String)> {
    let mut engine = Engine::new(RuleSet::parse(rules::DEFAULT_RULES, "default").expect("rules"));
    let transitions = engine.ingest(&reading(device, at_ms, 1, Some(FaultCategory::SensorFault)));
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    let township = device.split('-').next().unwrap_or_default().to_owned();
    transitions
        .into_iter()
        .map(|t| (t, township.clone()))
        .collect()
}

async fn orders(service: &OrderService) -> Vec<OrderRow> {
    service
        .with_store(|s| s.orders(&OrderFilter::default()))
        .await
        .expect("orders")
}

async fn event_kinds(service: &OrderService, id: i64) -> Vec<String> {
    let (_, events) = service
        .with_store(move |s| s.order(id))
        .await
        .expect("read")
        .expect("exists");
    events.into_iter().map(|e| e.kind).collect()
}

#[tokio::test]
async fn the_full_lifecycle_from_alert_to_closed_order() {
    let (service, clock) = fixture();
    let opened = service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply");
    assert_eq!(opened.len(), 1);
    let id = opened[0];
    let order = &orders(&service).await[0];
    assert_eq!(
        order.state,
        OrderState::Dispatched,
        "dispatched automatically at creation"
    );
    assert_eq!(order.team_id.as_deref(), Some("aurora-yanqing"));
    assert!(order
        .technician_id
        .as_deref()
        .is_some_and(|t| t.starts_with("aurora-yanqing-tech-")));
    assert_eq!((order.in_warranty, order.pre_emptive), (Some(true), true));

    clock.advance_by(5 * MIN);
    service
        .act(id, &team("aurora-yanqing"), OrderAction::Accept, None)
        .await
        .expect("accept");
    clock.advance_by(40 * MIN);
    service
        .act(id, &team("aurora-yanqing"), OrderAction::Arrive, None)
        .await
        .expect("arrive");
    clock.advance_by(30 * MIN);
    let resolved = service
        .act(
            id,
            &team("aurora-yanqing"),
            OrderAction::Resolve {
                parts: vec![PartUse {
                    code: "flow-switch".into(),
                    quantity: 1,
                }],
                misuse: false,
                note: "replaced the flow switch".into(),
            },
            None,
        )
        .await
        .expect("resolve");
    assert_eq!(
        (resolved.parts_cents, resolved.resident_pays_cents),
        (8_500, 0),
        "in warranty: free"
    );
    service
        .act(
            id,
            &operator(),
            OrderAction::Callback {
                satisfaction: 5,
                solved: true,
                note: String::new(),
            },
            None,
        )
        .await
        .expect("callback");
    let closed = service
        .act(id, &operator(), OrderAction::Close, None)
        .await
        .expect("close");
    assert_eq!(closed.state, OrderState::Closed);
    assert_eq!(
        event_kinds(&service, id).await,
        [
            "created",
            "dispatched",
            "accepted",
            "arrived",
            "resolved",
            "callback",
            "closed"
        ]
    );
    // Out of order steps are refused with the state.
    let error = service
        .act(id, &team("aurora-yanqing"), OrderAction::Accept, None)
        .await
        .expect_err("closed");
    assert!(error.to_string().contains("closed"), "{error}");
}

#[tokio::test]
async fn an_unsolved_callback_reopens_the_order_and_misuse_is_charged() {
    let (service, _) = fixture();
    let id = service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    for action in [OrderAction::Accept, OrderAction::Arrive] {
        service
            .act(id, &team("aurora-yanqing"), action, None)
            .await
            .expect("step");
    }
    // An operator's finding of misuse applies at once (a team's is a claim: see
    // `a_teams_misuse_claim_charges_nothing_until_an_operator_confirms_it`).
    let resolved = service
        .act(
            id,
            &operator(),
            OrderAction::Resolve {
                parts: vec![PartUse {
                    code: "fan-motor".into(),
                    quantity: 1,
                }],
                misuse: true,
                note: "fan blade broken by a stick".into(),
            },
            None,
        )
        .await
        .expect("resolve");
    assert_eq!(
        (resolved.resident_pays_cents, resolved.misuse),
        (45_000, true),
        "misuse is the resident's cost even in warranty"
    );
    let reopened = service
        .act(
            id,
            &operator(),
            OrderAction::Callback {
                satisfaction: 2,
                solved: false,
                note: "still cold".into(),
            },
            None,
        )
        .await
        .expect("callback");
    assert_eq!(reopened.state, OrderState::Dispatched);
    assert_eq!(
        (reopened.resolved_at_ms, reopened.on_site_at_ms),
        (None, None)
    );
    assert!(event_kinds(&service, id)
        .await
        .contains(&"reopened".to_owned()));
    for action in [OrderAction::Accept, OrderAction::Arrive] {
        service
            .act(id, &team("aurora-yanqing"), action, None)
            .await
            .expect("step after reopening");
    }
    let unknown_part = service
        .act(
            id,
            &team("aurora-yanqing"),
            OrderAction::Resolve {
                parts: vec![PartUse {
                    code: "gold".into(),
                    quantity: 1,
                }],
                misuse: false,
                note: String::new(),
            },
            None,
        )
        .await
        .expect_err("not in the price list");
    assert!(
        unknown_part.to_string().contains("unified price list"),
        "{unknown_part}"
    );
}

#[tokio::test]
async fn routing_follows_township_warranty_and_supply() {
    let (service, _) = fixture();
    // device, expected team, expected note fragment
    let cases = [
        ("yanqing-dongguan-0000", "aurora-yanqing", "in warranty"),
        (
            "yanqing-dongguan-0001",
            "third-party-yanqing",
            "out of warranty",
        ),
        ("yanqing-dongguan-0002", "beifeng-yanqing", "in warranty"),
        ("sihai-sihai-0020", "aurora-sihai", "in warranty"),
        ("sihai-sihai-0021", "third-party-sihai", "out of warranty"),
        ("yongning-beiguan-0030", "aurora-yongning", "in warranty"),
    ];
    for (index, (device, team, note)) in cases.iter().enumerate() {
        let id = service
            .apply(fault_alert(device, T0 + index as i64 * MIN))
            .await
            .expect("apply")[0];
        let (order, events) = service
            .with_store(move |s| s.order(id))
            .await
            .expect("read")
            .expect("exists");
        assert_eq!(order.team_id.as_deref(), Some(*team), "{device}");
        assert!(
            events[1].note.contains(note),
            "{device}: {}",
            events[1].note
        );
        if order.in_warranty == Some(false) {
            assert!(
                events[1].note.contains("resident pays parts"),
                "{}",
                events[1].note
            );
        }
    }
}

#[tokio::test]
async fn a_vendor_without_staff_delegates_and_supply_incidents_go_to_the_utility() {
    let mut data = registry();
    data.teams.retain(|t| t.id != "beifeng-sihai");
    data.technicians.retain(|t| t.team_id != "beifeng-sihai");
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&data).expect("import");
    let (service, _) = service(store);
    let id = service
        .apply(fault_alert("sihai-sihai-0022", T0))
        .await
        .expect("apply")[0];
    let (order, events) = service
        .with_store(move |s| s.order(id))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(order.team_id.as_deref(), Some("third-party-sihai"));
    assert!(
        events[1].note.contains("delegated") && events[1].note.contains("vendor's cost"),
        "{}",
        events[1].note
    );

    // A supply incident, and a village's heat pumps tripping together (the supply voltage
    // first): both to the power utility.
    for (device, fault, category) in [
        (
            "yongning-beiguan-0030",
            FaultCategory::PowerSupply,
            "power_supply",
        ),
        (
            "yongning-beiguan-0031",
            FaultCategory::LowPressure,
            "village_heat_pump_trips",
        ),
    ] {
        let order = fault_order(&service, device, fault, category).await;
        assert_eq!(
            order.team_id.as_deref(),
            Some("power-utility"),
            "{category}"
        );
    }
}

/// The order a one-rule engine opens for `fault` on `device`, with the order `category`.
async fn fault_order(
    service: &OrderService,
    device: &str,
    fault: FaultCategory,
    category: &str,
) -> gateway::orders::store::OrderRow {
    let rules = RuleSet::parse(
        &format!(
            "[[rule]]\nid = \"supply\"\nkind = \"fault\"\ncategories = [\"{}\"]\nseverity = \"critical\"\naction = {{ order = {{ category = \"{category}\", priority = \"urgent\" }} }}\n",
            fault.as_str()
        ),
        "supply.toml",
    )
    .expect("rules");
    let mut engine = Engine::new(rules);
    let transitions = engine.ingest(&reading(device, T0, 1, Some(fault)));
    let opened = service
        .apply(
            transitions
                .into_iter()
                .map(|t| (t, "yongning".into()))
                .collect(),
        )
        .await
        .expect("apply");
    service
        .with_store(move |s| s.order_row(opened[0]))
        .await
        .expect("read")
        .expect("exists")
}

#[tokio::test]
async fn the_same_alert_twice_or_concurrently_opens_exactly_one_order() {
    let (service, _) = fixture();
    let alert = fault_alert("yanqing-xiguan-0010", T0);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let service = service.clone();
        let alert = alert.clone();
        tasks.push(tokio::spawn(async move {
            service.apply(alert).await.expect("apply").len()
        }));
    }
    let mut opened = 0;
    for task in tasks {
        opened += task.await.expect("task");
    }
    opened += service.apply(alert).await.expect("again").len();
    assert_eq!(opened, 1);
    assert_eq!(orders(&service).await.len(), 1);
    // A second alert episode of the same device links to the open order instead.
    let later = fault_alert("yanqing-xiguan-0010", T0 + 30 * MIN);
    assert!(service.apply(later).await.expect("apply").is_empty());
    assert_eq!(orders(&service).await.len(), 1);
    let id = orders(&service).await[0].id;
    assert!(event_kinds(&service, id)
        .await
        .contains(&"alert_linked".to_owned()));
}

#[tokio::test]
async fn complaints_link_to_open_orders_and_prove_pre_emption() {
    let (service, clock) = fixture();
    let id = service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    clock.advance_by(50 * MIN);
    let linked = service
        .complaint(
            &operator(),
            ComplaintRequest {
                channel: Channel::Hotline12345,
                device_id: Some("yanqing-dongguan-0000".into()),
                household_id: None,
                received_at_ms: None,
                text: "家里不热".into(),
            },
        )
        .await
        .expect("complaint");
    assert_eq!(
        (linked.order_id, linked.linked, linked.pre_emptive),
        (id, true, true)
    );
    // A complaint about a healthy device opens an order that is not pre-emptive (an operator
    // logging a call 20 minutes late dates it) ...
    let new = service
        .complaint(
            &operator(),
            ComplaintRequest {
                channel: Channel::App,
                device_id: None,
                household_id: Some("hh-sihai-sihai-0020".into()),
                received_at_ms: Some(T0 + 30 * MIN),
                text: String::new(),
            },
        )
        .await
        .expect("complaint");
    assert!(!new.linked && !new.pre_emptive);
    let order = service
        .with_store(move |s| s.order_row(new.order_id))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (
            order.source.as_str(),
            order.created_at_ms,
            order.team_id.as_deref()
        ),
        ("app", T0 + 30 * MIN, Some("aurora-sihai"))
    );
    // ... and a second call about the same household links to it.
    let again = service
        .complaint(
            &operator(),
            ComplaintRequest {
                channel: Channel::SmsWechat,
                device_id: Some("sihai-sihai-0020".into()),
                household_id: None,
                received_at_ms: None,
                text: "还是不热".into(),
            },
        )
        .await
        .expect("complaint");
    assert_eq!(
        (again.order_id, again.linked, again.pre_emptive),
        (new.order_id, true, false)
    );
    let unknown = service
        .complaint(
            &operator(),
            ComplaintRequest {
                channel: Channel::WalkIn,
                device_id: Some("nowhere-0".into()),
                household_id: None,
                received_at_ms: None,
                text: String::new(),
            },
        )
        .await;
    assert!(unknown.is_err());
}

#[tokio::test]
async fn sla_clocks_warn_then_escalate_as_the_test_clock_moves() {
    let (service, clock) = fixture();
    // A device nobody covers stays undispatched.
    let mut engine = Engine::new(RuleSet::parse(rules::DEFAULT_RULES, "default").expect("rules"));
    let t = engine.ingest(&reading(
        "badaling-x-0001",
        T0,
        1,
        Some(FaultCategory::SensorFault),
    ));
    let id = service
        .apply(t.into_iter().map(|t| (t, "badaling".into())).collect())
        .await
        .expect("apply")[0];
    assert!(event_kinds(&service, id)
        .await
        .contains(&"dispatch_failed".to_owned()));
    assert!(service.check_sla().await.expect("check").is_empty());
    clock.advance_to(T0 + 8 * MIN);
    let warnings = service.check_sla().await.expect("check");
    assert_eq!(
        warnings
            .iter()
            .map(|n| (n.stage.as_str(), n.kind))
            .collect::<Vec<_>>(),
        [("dispatch", "sla_warning")]
    );
    assert!(
        service.check_sla().await.expect("check").is_empty(),
        "raised once"
    );
    clock.advance_to(T0 + 10 * MIN);
    let breach = service.check_sla().await.expect("check");
    assert_eq!(
        breach
            .iter()
            .map(|n| (n.stage.as_str(), n.kind))
            .collect::<Vec<_>>(),
        [("dispatch", "escalated")]
    );
    assert!(breach[0].note.contains("badaling"));
    // Skipping past every deadline escalates each remaining stage once, without warnings.
    clock.advance_to(T0 + 5 * 60 * MIN);
    let stages: Vec<_> = service
        .check_sla()
        .await
        .expect("check")
        .iter()
        .map(|n| (n.stage.as_str(), n.kind))
        .collect();
    assert_eq!(
        stages,
        [("on_site", "escalated"), ("repaired", "escalated")]
    );
    let kinds = event_kinds(&service, id).await;
    assert_eq!(kinds.iter().filter(|k| *k == "escalated").count(), 3);
}

#[tokio::test]
async fn orders_and_events_survive_a_restart() {
    let path = std::env::temp_dir().join(format!(
        "gateway-orders-restart-{}.sqlite",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let id = {
        let mut store = Store::open(&path).expect("open");
        store.import_registry(&registry()).expect("import");
        let (service, _) = service(store);
        let id = service
            .apply(fault_alert("yanqing-dongguan-0000", T0))
            .await
            .expect("apply")[0];
        service
            .act(id, &team("aurora-yanqing"), OrderAction::Accept, None)
            .await
            .expect("accept");
        id
    };
    let (service, _) = service(Store::open(&path).expect("reopen"));
    let all = orders(&service).await;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, OrderState::Accepted);
    assert_eq!(
        event_kinds(&service, id).await,
        ["created", "dispatched", "accepted"]
    );
    // The episode is still known: replaying the alert opens nothing.
    assert!(service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")
        .is_empty());
}

// ----- over HTTP: roles, malformed requests, reports, OpenAPI -----

async fn api() -> Api {
    support::api(store(), T0).await
}

/// An order's events as (kind, time).
async fn timed_events(service: &OrderService, id: i64) -> Vec<(String, i64)> {
    let (_, events) = service
        .with_store(move |s| s.order(id))
        .await
        .expect("read")
        .expect("exists");
    events.into_iter().map(|e| (e.kind, e.at_ms)).collect()
}

async fn order_row(service: &OrderService, id: i64) -> OrderRow {
    service
        .with_store(move |s| s.order_row(id))
        .await
        .expect("read")
        .expect("exists")
}

#[tokio::test]
async fn a_team_cannot_set_event_times_and_its_steps_take_the_servers_clock() {
    let api = api().await;
    let id = api
        .service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    api.clock.advance_by(5 * MIN);
    let accept = format!("/api/v1/orders/{id}/accept");
    let (status, answer) = api
        .call(
            "POST",
            &accept,
            Some(TEAM_AURORA),
            Some(json!({"at_ms": 1})),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.contains("at_ms")),
        "{answer}"
    );
    let refused = order_row(&api.service, id).await;
    assert_eq!(
        (refused.state, refused.accepted_at_ms),
        (OrderState::Dispatched, None),
        "a refused step writes nothing"
    );
    let (status, accepted) = api
        .call("POST", &accept, Some(TEAM_AURORA), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["accepted_at_ms"], T0 + 5 * MIN);

    api.clock.advance_by(10 * MIN);
    let arrive = format!("/api/v1/orders/{id}/arrive");
    let (status, answer) = api
        .call(
            "POST",
            &arrive,
            Some(TEAM_AURORA),
            Some(json!({"at_ms": i64::MAX})),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    let (status, arrived) = api
        .call("POST", &arrive, Some(TEAM_AURORA), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{arrived}");
    assert_eq!(arrived["on_site_at_ms"], T0 + 15 * MIN);
    // The history holds the server's times and nothing of the refused requests.
    assert_eq!(
        timed_events(&api.service, id).await,
        [
            ("created".to_owned(), T0),
            ("dispatched".to_owned(), T0),
            ("accepted".to_owned(), T0 + 5 * MIN),
            ("arrived".to_owned(), T0 + 15 * MIN),
        ]
    );
    // A township officer may escalate its own orders but not date the escalation either.
    let sihai = api
        .service
        .apply(fault_alert("sihai-sihai-0020", T0))
        .await
        .expect("apply")[0];
    let (status, answer) = api
        .call(
            "POST",
            &format!("/api/v1/orders/{sihai}/escalate"),
            Some(SIHAI),
            Some(json!({"note": "slow", "at_ms": T0})),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    assert!(!event_kinds(&api.service, sihai)
        .await
        .contains(&"escalated".to_owned()));
}

#[tokio::test]
async fn an_operators_event_time_is_accepted_inside_the_window_and_refused_outside() {
    let api = api().await;
    let id = api
        .service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    api.clock.advance_to(T0 + 30 * MIN);
    let now = T0 + 30 * MIN;
    let accept = format!("/api/v1/orders/{id}/accept");
    // Before the order's last event (dispatched at T0), after now + 60 s, and the extremes.
    for at_ms in [T0 - 1, now + MIN + 1, 1, i64::MAX, i64::MIN] {
        let (status, answer) = api
            .call(
                "POST",
                &accept,
                Some(OPERATOR),
                Some(json!({"at_ms": at_ms})),
            )
            .await;
        assert_eq!(status, 422, "at_ms {at_ms}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(
            message.starts_with(&format!("at_ms {at_ms}"))
                && message.contains(&format!("[{T0} ("))
                && message.contains(&format!(", {} (", now + MIN)),
            "at_ms {at_ms}: {message}"
        );
    }
    assert_eq!(
        order_row(&api.service, id).await.state,
        OrderState::Dispatched
    );
    // Inside the window, the operator's time is the event's.
    let (status, accepted) = api
        .call(
            "POST",
            &accept,
            Some(OPERATOR),
            Some(json!({"at_ms": T0 + 10 * MIN})),
        )
        .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["accepted_at_ms"], T0 + 10 * MIN);
    // The window now starts at that event; its end (now + 60 s) is inside.
    let arrive = format!("/api/v1/orders/{id}/arrive");
    let (status, answer) = api
        .call(
            "POST",
            &arrive,
            Some(OPERATOR),
            Some(json!({"at_ms": T0 + 5 * MIN})),
        )
        .await;
    assert_eq!(status, 422, "{answer}");
    let (status, arrived) = api
        .call(
            "POST",
            &arrive,
            Some(OPERATOR),
            Some(json!({"at_ms": now + MIN})),
        )
        .await;
    assert_eq!(status, 200, "{arrived}");
    assert_eq!(arrived["on_site_at_ms"], now + MIN);
    assert_eq!(
        timed_events(&api.service, id).await[2..],
        [
            ("accepted".to_owned(), T0 + 10 * MIN),
            ("arrived".to_owned(), now + MIN),
        ]
    );

    // A complaint's received_at_ms: at most 24 h back, at most 60 s ahead.
    for received in [now - 24 * 60 * MIN - 1, now + MIN + 1, i64::MIN] {
        let (status, answer) = api
            .call(
                "POST",
                "/api/v1/complaints",
                Some(OPERATOR),
                Some(json!({"channel": "hotline_12345", "household_id": "hh-sihai-sihai-0020", "received_at_ms": received})),
            )
            .await;
        assert_eq!(status, 422, "received_at_ms {received}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("received_at_ms") && e.contains("24 h")),
            "{answer}"
        );
    }
    let (status, taken) = api
        .call(
            "POST",
            "/api/v1/complaints",
            Some(OPERATOR),
            Some(json!({"channel": "hotline_12345", "household_id": "hh-sihai-sihai-0020", "received_at_ms": now - 20 * 60 * MIN})),
        )
        .await;
    assert_eq!(status, 201, "{taken}");
    let order = order_row(&api.service, taken["order_id"].as_i64().unwrap_or(0)).await;
    assert_eq!(order.created_at_ms, now - 20 * 60 * MIN);
    assert_eq!(
        api.service
            .with_store(|s| s.orders(&OrderFilter::default()))
            .await
            .expect("orders")
            .len(),
        2,
        "the refused complaints opened nothing"
    );
}

#[tokio::test]
async fn a_teams_misuse_claim_charges_nothing_until_an_operator_confirms_it() {
    let api = api().await;
    let id = api
        .service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    for step in ["accept", "arrive"] {
        let (status, answer) = api
            .call(
                "POST",
                &format!("/api/v1/orders/{id}/{step}"),
                Some(TEAM_AURORA),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "{step}: {answer}");
    }
    let (status, resolved) = api
        .call(
            "POST",
            &format!("/api/v1/orders/{id}/resolve"),
            Some(TEAM_AURORA),
            Some(json!({"parts": [{"code": "fan-motor"}], "misuse": true, "note": "blade broken by a stick"})),
        )
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(
        (
            &resolved["parts_cents"],
            &resolved["resident_pays_cents"],
            &resolved["misuse"]
        ),
        (&json!(45_000), &json!(0), &json!(false)),
        "in warranty, a team's claim charges nothing: {resolved}"
    );
    let kinds = event_kinds(&api.service, id).await;
    assert_eq!(kinds[kinds.len() - 2..], ["resolved", "misuse_claimed"]);

    // Nobody but an operator confirms: not the team that claimed it.
    let by_team = api
        .service
        .act(
            id,
            &team("aurora-yanqing"),
            OrderAction::ConfirmMisuse {
                note: String::new(),
            },
            None,
        )
        .await
        .expect_err("a team may not confirm");
    assert!(matches!(by_team, RequestError::Forbidden(_)), "{by_team}");
    assert_eq!(order_row(&api.service, id).await.resident_pays_cents, 0);

    let confirmed = api
        .service
        .act(
            id,
            &operator(),
            OrderAction::ConfirmMisuse {
                note: "photos checked".into(),
            },
            None,
        )
        .await
        .expect("an operator confirms");
    assert_eq!(
        (confirmed.resident_pays_cents, confirmed.misuse),
        (45_000, true)
    );
    assert_eq!(
        event_kinds(&api.service, id)
            .await
            .last()
            .map(String::as_str),
        Some("misuse_confirmed")
    );
    let again = api
        .service
        .act(
            id,
            &operator(),
            OrderAction::ConfirmMisuse {
                note: String::new(),
            },
            None,
        )
        .await
        .expect_err("nothing left to confirm");
    assert!(matches!(again, RequestError::Conflict(_)), "{again}");

    // An operator's own misuse finding applies at once.
    let other = api
        .service
        .apply(fault_alert("yanqing-xiguan-0010", T0))
        .await
        .expect("apply")[0];
    for step in ["accept", "arrive"] {
        api.call(
            "POST",
            &format!("/api/v1/orders/{other}/{step}"),
            Some(OPERATOR),
            Some(json!({})),
        )
        .await;
    }
    let (status, direct) = api
        .call(
            "POST",
            &format!("/api/v1/orders/{other}/resolve"),
            Some(OPERATOR),
            Some(json!({"parts": [{"code": "fan-motor"}], "misuse": true})),
        )
        .await;
    assert_eq!(status, 200, "{direct}");
    assert_eq!(direct["resident_pays_cents"], 45_000);
    assert!(!event_kinds(&api.service, other)
        .await
        .contains(&"misuse_claimed".to_owned()));
}

#[tokio::test]
async fn a_township_cannot_file_a_complaint_about_another_townships_household_or_order() {
    let api = api().await;
    let yanqing = api
        .service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    // An order for a device that is not in the registry carries its topic's township.
    let mut engine = Engine::new(RuleSet::parse(rules::DEFAULT_RULES, "default").expect("rules"));
    let transitions = engine.ingest(&reading(
        "badaling-x-0001",
        T0,
        1,
        Some(FaultCategory::SensorFault),
    ));
    let badaling = api
        .service
        .apply(
            transitions
                .into_iter()
                .map(|t| (t, "badaling".into()))
                .collect(),
        )
        .await
        .expect("apply")[0];
    let attempts = [
        (
            json!({"channel": "app", "household_id": "hh-yanqing-dongguan-0000"}),
            "household_id",
        ),
        (
            json!({"channel": "app", "device_id": "yanqing-dongguan-0000"}),
            "device_id",
        ),
        // Its own device with another township's household: the household would pick the order.
        (
            json!({"channel": "app", "device_id": "sihai-sihai-0020", "household_id": "hh-yanqing-dongguan-0000"}),
            "household_id",
        ),
        (
            json!({"channel": "app", "device_id": "badaling-x-0001"}),
            "device_id",
        ),
    ];
    for (request, field) in attempts {
        let (status, answer) = api
            .call(
                "POST",
                "/api/v1/complaints",
                Some(SIHAI),
                Some(request.clone()),
            )
            .await;
        assert_eq!(status, 403, "{request}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.starts_with(field) && e.contains("outside the token's township")),
            "{request}: {answer}"
        );
    }
    for order in [yanqing, badaling] {
        let complaints = api
            .service
            .with_store(move |s| s.complaints_of(order))
            .await
            .expect("complaints");
        assert!(complaints.is_empty(), "order {order}: {complaints:?}");
        assert!(!event_kinds(&api.service, order)
            .await
            .contains(&"complaint_linked".to_owned()));
    }
    // A device and a household that do not belong together are refused for everyone.
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/complaints",
            Some(OPERATOR),
            Some(json!({"channel": "app", "device_id": "sihai-sihai-0021", "household_id": "hh-sihai-sihai-0020"})),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    // Its own household is fine, at the server's time; dating it is an operator's right.
    let (status, answer) = api
        .call(
            "POST",
            "/api/v1/complaints",
            Some(SIHAI),
            Some(json!({"channel": "walk_in", "household_id": "hh-sihai-sihai-0020", "received_at_ms": T0})),
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    let (status, taken) = api
        .call(
            "POST",
            "/api/v1/complaints",
            Some(SIHAI),
            Some(json!({"channel": "walk_in", "household_id": "hh-sihai-sihai-0020"})),
        )
        .await;
    assert_eq!(status, 201, "{taken}");
    let order = order_row(&api.service, taken["order_id"].as_i64().unwrap_or(0)).await;
    assert_eq!(
        (order.township.as_str(), order.created_at_ms),
        ("sihai", T0)
    );
}

#[tokio::test]
async fn a_township_may_not_send_a_team_outside_its_zone_or_touch_another_townships_order() {
    let (service, _) = fixture();
    let sihai = service
        .apply(fault_alert("sihai-sihai-0020", T0))
        .await
        .expect("apply")[0];
    let officer = principal(Role::Township, "sihai", Some("sihai"), None);
    let reassign = |team: &str| OrderAction::Reassign {
        team_id: team.into(),
        technician_id: None,
        reason: "closer".into(),
    };
    let refused = service
        .act(sihai, &officer, reassign("aurora-yanqing"), None)
        .await
        .expect_err("outside the team's zone");
    assert!(
        matches!(&refused, RequestError::Forbidden(m) if m.starts_with("team_id")),
        "{refused}"
    );
    let moved = service
        .act(sihai, &officer, reassign("third-party-sihai"), None)
        .await
        .expect("inside the zone");
    assert_eq!(moved.team_id.as_deref(), Some("third-party-sihai"));
    let yanqing_officer = principal(Role::Township, "yanqing", Some("yanqing"), None);
    let hidden = service
        .act(sihai, &yanqing_officer, reassign("aurora-sihai"), None)
        .await
        .expect_err("another township's order");
    // Another township's officer is told whose order it is (403), not that it is missing.
    assert!(
        matches!(&hidden, RequestError::Forbidden(m) if m.contains("\"sihai\"") && m.contains("\"yanqing\"")),
        "{hidden}"
    );
    // An operator may send a neighbouring team; the history says so.
    let sent = service
        .act(sihai, &operator(), reassign("aurora-yanqing"), None)
        .await
        .expect("operator override");
    assert_eq!(sent.team_id.as_deref(), Some("aurora-yanqing"));
    let (_, events) = service
        .with_store(move |s| s.order(sihai))
        .await
        .expect("read")
        .expect("exists");
    assert!(
        events
            .last()
            .is_some_and(|e| e.note.contains("outside its zone")),
        "{events:?}"
    );
    // A team acts only on its own team's orders, also through the service.
    let other = service
        .act(sihai, &team("aurora-sihai"), OrderAction::Accept, None)
        .await
        .expect_err("no longer aurora-sihai's order");
    assert!(other.to_string().contains("no order"), "{other}");
}

#[tokio::test]
async fn a_team_token_cannot_read_or_change_another_teams_order() {
    let api = api().await;
    let aurora = api
        .service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    let third = api
        .service
        .apply(fault_alert("yanqing-dongguan-0001", T0))
        .await
        .expect("apply")[0];

    let (status, list) = api
        .call("GET", "/api/v1/orders", Some(TEAM_AURORA), None)
        .await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = list
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["id"].as_i64()).collect())
        .unwrap_or_default();
    assert_eq!(ids, [aurora]);
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/orders/{third}"),
            Some(TEAM_AURORA),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        api.call(
            "POST",
            &format!("/api/v1/orders/{third}/accept"),
            Some(TEAM_AURORA),
            Some(json!({}))
        )
        .await
        .0,
        404
    );
    let (status, accepted) = api
        .call(
            "POST",
            &format!("/api/v1/orders/{aurora}/accept"),
            Some(TEAM_AURORA),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (status, accepted["state"].as_str()),
        (200, Some("accepted"))
    );
    assert_eq!(
        api.call(
            "POST",
            &format!("/api/v1/orders/{third}/accept"),
            Some(TEAM_THIRD),
            Some(json!({}))
        )
        .await
        .0,
        200
    );
    // Teams may not dispatch or cancel; read-only tokens change nothing but may escalate (with a
    // note, `township_roles.rs`); townships see their own.
    assert_eq!(
        api.call(
            "POST",
            &format!("/api/v1/orders/{aurora}/cancel"),
            Some(TEAM_AURORA),
            Some(json!({"reason": "x"}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api.call(
            "POST",
            &format!("/api/v1/orders/{aurora}/dispatch"),
            Some(VIEWER),
            Some(json!({}))
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api.call(
            "GET",
            &format!("/api/v1/orders/{aurora}"),
            Some(SIHAI),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(api.call("GET", "/api/v1/orders", None, None).await.0, 401);
    assert_eq!(
        api.call("GET", "/api/v1/orders", Some("Bearer nonsense"), None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn malformed_requests_get_a_4xx_with_a_message_never_a_500() {
    let api = api().await;
    let id = api
        .service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    let cases: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("GET", "/api/v1/orders?state=done".into(), None, 400),
        ("GET", "/api/v1/orders?limit=-3".into(), None, 400),
        ("GET", "/api/v1/orders?colour=red".into(), None, 400),
        ("GET", "/api/v1/orders/abc".into(), None, 400),
        ("GET", "/api/v1/orders/999".into(), None, 404),
        (
            "POST",
            format!("/api/v1/orders/{id}/callback"),
            Some(json!({"satisfaction": 9, "solved": true})),
            400,
        ),
        (
            "POST",
            format!("/api/v1/orders/{id}/close"),
            Some(json!({})),
            409,
        ),
        (
            "POST",
            format!("/api/v1/orders/{id}/resolve"),
            Some(json!({"parts": "many"})),
            400,
        ),
        (
            "POST",
            format!("/api/v1/orders/{id}/cancel"),
            Some(json!({"reason": ""})),
            400,
        ),
        (
            "POST",
            format!("/api/v1/orders/{id}/merge"),
            Some(json!({"into": id})),
            400,
        ),
        (
            "POST",
            "/api/v1/complaints".into(),
            Some(json!({"channel": "carrier_pigeon", "device_id": "x"})),
            400,
        ),
        (
            "POST",
            "/api/v1/complaints".into(),
            Some(json!({"channel": "app"})),
            400,
        ),
        (
            "POST",
            "/api/v1/registry/import".into(),
            Some(json!({"files": {"evil.csv": "a"}})),
            400,
        ),
        (
            "POST",
            "/api/v1/registry/import".into(),
            Some(json!({"files": {"villages.csv": "id,township_id,name\nv1,nowhere,x\n"}})),
            400,
        ),
        (
            "POST",
            "/api/v1/registry/import".into(),
            Some(
                json!({"files": {"devices.csv": "id,household_id,kind,brand,model,vendor_id,installed_on\nsihai-sihai-0029,hh-sihai-sihai-0020,heat_pump,Aurora,KF,aurora,99999-01-01\n"}}),
            ),
            // Not a four-digit year: not a date at all (the parser names the cell).
            400,
        ),
        (
            "POST",
            "/api/v1/registry/import".into(),
            Some(
                json!({"files": {"parts.csv": "code,name,price_cny\ngold-valve,Gold valve,92233720368547758.07\n"}}),
            ),
            422,
        ),
        ("GET", "/api/v1/reports/yearly".into(), None, 400),
        (
            "GET",
            "/api/v1/reports/daily?date=2026-02-30".into(),
            None,
            400,
        ),
        ("GET", "/api/v1/nothing".into(), None, 404),
    ];
    for (method, path, body, expected) in cases {
        let (status, answer) = api.call(method, &path, Some(OPERATOR), body).await;
        assert_eq!(status, expected, "{method} {path}: {answer}");
        assert!(
            answer["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {answer}"
        );
    }
    let (_, answer) = api
        .call(
            "POST",
            "/api/v1/registry/import",
            Some(OPERATOR),
            Some(json!({"files": {"villages.csv": "id,township_id,name\nv1,nowhere,x\n"}})),
        )
        .await;
    assert_eq!(
        answer["error"],
        "villages.csv:2:2: township_id: unknown township \"nowhere\""
    );
}

#[tokio::test]
async fn reports_come_as_json_csv_and_printable_html() {
    let api = api().await;
    let id = api
        .service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    for step in ["accept", "arrive"] {
        api.call(
            "POST",
            &format!("/api/v1/orders/{id}/{step}"),
            Some(OPERATOR),
            Some(json!({})),
        )
        .await;
    }
    api.call(
        "POST",
        &format!("/api/v1/orders/{id}/resolve"),
        Some(OPERATOR),
        Some(json!({"parts": [{"code": "ntc-sensor"}]})),
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
    assert_eq!(report["total"]["requests"], 1);
    assert_eq!(report["total"]["pre_emptive_rate"], 1.0);
    assert_eq!(report["total"]["parts_cents"], 4_500);
    assert_eq!(report["by_team"][0]["key"], "aurora-yanqing");
    let (_, csv) = api
        .call(
            "GET",
            "/api/v1/reports/monthly?date=2026-12-15&format=csv",
            Some(OPERATOR),
            None,
        )
        .await;
    assert!(
        csv.as_str()
            .is_some_and(|c| c.lines().count() >= 4 && c.contains("\ntotal,all,1,1,")),
        "{csv}"
    );
    let (_, html) = api
        .call(
            "GET",
            "/api/v1/reports/weekly?date=2026-12-02&format=html",
            Some(VIEWER),
            None,
        )
        .await;
    assert!(html
        .as_str()
        .is_some_and(|h| h.contains("周报") && h.contains("aurora-yanqing")));
    let (_, sihai) = api
        .call(
            "GET",
            "/api/v1/reports/daily?date=2026-12-01",
            Some(SIHAI),
            None,
        )
        .await;
    assert_eq!(
        sihai["total"]["requests"], 0,
        "a township sees only its own orders"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_every_api_route() {
    let api = api().await;
    let (status, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for path in [
        "/api/v1/orders",
        "/api/v1/orders/{id}",
        "/api/v1/orders/{id}/resolve",
        "/api/v1/orders/{id}/confirm_misuse",
        "/api/v1/registry/unregistered",
        "/api/v1/complaints",
        "/api/v1/registry/import",
        "/api/v1/reports/{period}",
        "/api/v1/stream",
        "/api/v1/devices/{id}",
    ] {
        assert!(paths.contains(&path), "{path} missing from {paths:?}");
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn the_event_stream_takes_its_token_from_the_query_and_delivers_order_events() {
    let api = api().await;
    let unauthorised = api
        .client
        .get(format!("{}/api/v1/stream", api.base))
        .send()
        .await
        .expect("request");
    assert_eq!(unauthorised.status().as_u16(), 401);
    let mut stream = api
        .client
        .get(format!(
            "{}/api/v1/stream?access_token={TEAM_AURORA}",
            api.base
        ))
        .send()
        .await
        .expect("request");
    assert_eq!(stream.status().as_u16(), 200);
    assert!(stream
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream")));
    // Another team's order is not streamed to this team; its own is.
    api.service
        .apply(fault_alert("yanqing-dongguan-0001", T0))
        .await
        .expect("apply");
    let own = api
        .service
        .apply(fault_alert("yanqing-dongguan-0000", T0))
        .await
        .expect("apply")[0];
    let mut text = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !text.contains("\"kind\":\"dispatched\"") {
        assert!(
            std::time::Instant::now() < deadline,
            "no dispatched event in {text}"
        );
        match tokio::time::timeout(std::time::Duration::from_secs(5), stream.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            other => panic!("stream ended: {other:?}; got {text}"),
        }
    }
    assert!(text.contains(&format!("\"order_id\":{own},")), "{text}");
    assert!(!text.contains("third-party-yanqing"), "{text}");
    drop(stream);
    // Anywhere but the stream a token in the URL is refused (it would end up in logs), and
    // `whoami` tells the console the role.
    let (status, orders) = api
        .call(
            "GET",
            &format!("/api/v1/orders?open=true&access_token={TEAM_AURORA}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, 400, "{orders}");
    assert!(
        orders["error"]
            .as_str()
            .is_some_and(|e| e.contains("access_token")),
        "{orders}"
    );
    let (status, me) = api.call("GET", "/api/v1/whoami", Some(SIHAI), None).await;
    assert_eq!(
        (status, me["role"].as_str(), me["township"].as_str()),
        (200, Some("township"), Some("sihai"))
    );
    let steps: Vec<&str> = me["steps"]
        .as_array()
        .map(|s| s.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        steps,
        ["dispatch", "reassign", "callback", "close", "cancel", "escalate"],
        "{me}"
    );
}

#[tokio::test]
async fn a_village_supply_incident_is_one_order_for_the_utility() {
    let (service, _) = fixture();
    let devices: Vec<DeviceId> = (0..3)
        .map(|n| DeviceId::parse(&format!("yanqing-dongguan-000{n}")).expect("id"))
        .collect();
    let incident = |kind| rules::IncidentTransition {
        incident_id: format!("village_power_outage:yanqing/yanqing-dongguan:{T0}"),
        fleet_rule_id: "village_power_outage".into(),
        group: rules::GroupKey {
            township: "yanqing".into(),
            village: Some("yanqing-dongguan".into()),
        },
        level: rules::GroupLevel::Village,
        kind,
        at_ms: T0,
        severity: rules::Severity::Critical,
        action: rules::Action::Order {
            category: "power_supply".into(),
            priority: rules::Priority::Urgent,
        },
        summary: "3 of 3 devices silent within 5m".into(),
        devices: devices.clone(),
        group_size: 3,
    };
    let opened = service
        .apply_incidents(vec![incident(rules::TransitionKind::Firing)])
        .await
        .expect("apply");
    assert_eq!(opened.len(), 1);
    // The same incident again (a replay) opens nothing more.
    assert!(service
        .apply_incidents(vec![incident(rules::TransitionKind::Firing)])
        .await
        .expect("apply")
        .is_empty());
    let order = service
        .with_store(move |s| s.order_row(opened[0]))
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (order.category.as_str(), order.priority.as_str()),
        ("power_supply", "urgent")
    );
    assert_eq!(order.team_id.as_deref(), Some("power-utility"));
    assert_eq!(order.device_id, "village:yanqing/yanqing-dongguan");
    service
        .apply_incidents(vec![incident(rules::TransitionKind::Resolved)])
        .await
        .expect("resolve");
    assert!(event_kinds(&service, order.id)
        .await
        .contains(&"alert_cleared".to_owned()));
    assert_eq!(orders(&service).await.len(), 1, "no per-device orders");
}

/// The default pack's transitions for a heat pump last heard at `T0` at `outdoor` °C, with the
/// watermark advanced to `until_ms` (only the rules named are kept).
fn silent_in_frost(
    device: &str,
    outdoor: f64,
    until_ms: i64,
    keep: &[&str],
) -> Vec<(Transition, String)> {
    let mut engine = Engine::new(RuleSet::parse(rules::DEFAULT_RULES, "default").expect("rules"));
    let mut last = reading(device, T0, 1, None);
    last.values = wire::Values::from([("indoor_temp_c", 19.0), ("outdoor_temp_c", outdoor)]);
    assert!(engine.ingest(&last).is_empty());
    let township = device.split('-').next().unwrap_or_default().to_owned();
    engine
        .advance(until_ms)
        .into_iter()
        .filter(|t| keep.contains(&t.rule_id.as_str()))
        .map(|t| (t, township.clone()))
        .collect()
}

#[tokio::test]
async fn a_box_silent_in_frost_gets_a_call_first_and_a_technician_when_evidence_joins() {
    let (service, _) = fixture();
    let device = "yanqing-xiguan-0011";
    // 30 minutes of silence in frost: a call task, not dispatched.
    let call = silent_in_frost(device, -9.0, T0 + 35 * MIN, &["offline_in_frost"]);
    assert_eq!(call.len(), 1, "{call:?}");
    let opened = service.apply(call).await.expect("apply");
    assert_eq!(opened.len(), 1);
    let task = orders(&service).await.remove(0);
    assert_eq!(task.category, gateway::orders::CALL_TASK_CATEGORY);
    assert_eq!(
        task.state,
        OrderState::Created,
        "a call task waits for the call"
    );
    assert!(task.team_id.is_none());
    assert_eq!(
        event_kinds(&service, task.id).await,
        ["created", "call_first"]
    );

    // Two hours of silence: the call failed; the urgent repair order joins as evidence and the
    // task becomes it, dispatched at once. Still one order.
    let long = silent_in_frost(device, -9.0, T0 + 125 * MIN, &["offline_in_frost_long"]);
    assert_eq!(long.len(), 1, "{long:?}");
    assert!(service.apply(long).await.expect("apply").is_empty());
    let all = orders(&service).await;
    assert_eq!(all.len(), 1);
    let order = &all[0];
    assert_eq!(order.id, task.id);
    assert_eq!(order.category, "offline_in_frost");
    assert_eq!(order.priority, "urgent");
    assert_eq!(order.state, OrderState::Dispatched);
    assert!(order.team_id.is_some());
    let kinds = event_kinds(&service, order.id).await;
    assert_eq!(
        kinds,
        [
            "created",
            "call_first",
            "alert_linked",
            "evidence_joined",
            "sla_class_changed",
            "dispatched"
        ],
    );
    // From a call task to a repair: the repair clocks run from the evidence, so the dispatch
    // that follows at once is in time.
    assert!(order.sla_from_ms.is_some());
    assert_eq!(order.sla_from_ms, order.dispatched_at_ms);
}

#[tokio::test]
async fn a_repair_order_already_dispatched_is_not_touched_by_a_later_call_task() {
    let (service, _) = fixture();
    let device = "yanqing-xiguan-0012";
    let id = service.apply(fault_alert(device, T0)).await.expect("apply")[0];
    let before = orders(&service).await.remove(0);
    assert_eq!(before.state, OrderState::Dispatched);
    let call = silent_in_frost(device, -9.0, T0 + 35 * MIN, &["offline_in_frost"]);
    assert!(service.apply(call).await.expect("apply").is_empty());
    let after = orders(&service).await.remove(0);
    assert_eq!(after.id, id);
    assert_eq!(after.category, before.category);
    assert_eq!(after.priority, before.priority);
    assert!(!event_kinds(&service, id)
        .await
        .contains(&"evidence_joined".to_owned()));
}
