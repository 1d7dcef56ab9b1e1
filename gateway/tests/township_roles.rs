//! Role scopes over HTTP of the township sub-centres (dispatch, reassign, close, cancel of their
//! own township's orders; 403 naming the township elsewhere), the read-only bureaus (escalate
//! with a note, nothing else) and vendor delegation (to a vendor of the same contract period
//! serving the township, the ledger of what the delegating vendor owes, and the refusals).

use std::sync::Arc;

mod support;

use gateway::auth::Role;
use gateway::fleet::Fleet;
use gateway::metrics::Metrics;
use gateway::orders::clock::Clock as _;
use gateway::orders::delegation::DelegationConfig;
use gateway::orders::store::{NewOrder, Store};
use gateway::registry::demo::{generate, FleetHousehold};
use gateway::registry::RegistryData;
use serde_json::{json, Value};
use support::{Api, OPERATOR, SIHAI, TEAM_AURORA, TEAM_THIRD, VIEWER, YANQING};

/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;
const MIN: i64 = 60_000;
const TEAM_BEIFENG: &str = "team-beifeng-yanqing-0123456789";
const TEAM_ELM: &str = "team-elm-yanqing-0123456789";
const TECH_AURORA: &str = "technician-aurora-yanqing-0123456789";
/// The call-out fee the tests configure: 50 CNY.
const FEE: i64 = 5_000;

/// Yanqing town: Aurora, Beifeng and Elm (period 2016) and Coldstar (period 2019); Sihai:
/// Aurora and Dawn (period 2016, no team in Yanqing). Every device in warranty.
fn registry() -> RegistryData {
    let mut fleet = Vec::new();
    for (township, village, brands) in [
        (
            "yanqing",
            "dongguan",
            &["Aurora", "Aurora", "Aurora", "Beifeng", "Coldstar", "Elm"][..],
        ),
        ("sihai", "sihai", &["Aurora", "Dawn"][..]),
    ] {
        for (n, brand) in brands.iter().enumerate() {
            fleet.push(FleetHousehold {
                device_id: format!("{township}-{village}-{n:04}"),
                township: township.into(),
                township_name: format!("{township}镇"),
                village: village.into(),
                village_name: format!("{village}村"),
                kind: "heat_pump".into(),
                brand: (*brand).into(),
                model: "X".into(),
                vulnerable: false,
            });
        }
    }
    let mut data = generate(&fleet, 7);
    for device in &mut data.devices {
        device.installed_on = "2024-10-01".into();
        device.warranty_until = "2029-09-30".into();
    }
    for vendor in &mut data.vendors {
        vendor.period = Some(
            if vendor.id == "coldstar" {
                "2019"
            } else {
                "2016"
            }
            .into(),
        );
    }
    data
}

/// The API over the registry with the role tokens, two more vendor teams' tokens, an Aurora
/// technician's own token, and a call-out fee of [`FEE`].
async fn api() -> Api {
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&registry()).expect("import");
    let metrics = Arc::new(Metrics::default());
    let (service, clock) = support::order_service(store, Arc::clone(&metrics), T0);
    let service = service.with_delegation(DelegationConfig {
        call_out_fee_cents: FEE,
    });
    let mut tokens = support::role_tokens();
    tokens.push(support::token(
        "beifeng-yq",
        TEAM_BEIFENG,
        Role::Team,
        None,
        Some("beifeng-yanqing"),
    ));
    tokens.push(support::token(
        "elm-yq",
        TEAM_ELM,
        Role::Team,
        None,
        Some("elm-yanqing"),
    ));
    tokens.push(support::technician_token(
        "wang",
        TECH_AURORA,
        "aurora-yanqing",
        "aurora-yanqing-tech-01",
    ));
    let served =
        support::serve_api(Arc::new(Fleet::default()), service.clone(), metrics, tokens).await;
    Api {
        base: served.base,
        client: reqwest::Client::new(),
        service,
        clock,
    }
}

/// A created (not yet dispatched) repair order of `device`.
async fn order(api: &Api, device: &str, vendor: &str, in_warranty: bool) -> i64 {
    let township = device.split('-').next().unwrap_or_default().to_owned();
    let village = device.split('-').take(2).collect::<Vec<_>>().join("-");
    let order = NewOrder {
        device_id: device.into(),
        household_id: Some(format!("hh-{device}")),
        village_id: Some(village),
        vendor_id: Some(vendor.into()),
        township,
        category: "repair".into(),
        priority: "high".into(),
        source: "hotline_12345".into(),
        summary: "no heat".into(),
        created_at_ms: api.clock.now_ms(),
        actor: "desk:test".into(),
        in_warranty: Some(in_warranty),
        ..NewOrder::default()
    };
    api.service
        .with_store(move |s| s.create_order(&order))
        .await
        .expect("store")
        .expect("created")
}

async fn post(api: &Api, token: &str, path: &str, body: Value) -> (u16, Value) {
    api.call("POST", path, Some(token), Some(body)).await
}

fn error(answer: &Value) -> &str {
    answer["error"].as_str().unwrap_or_default()
}

/// The order's events as (kind, actor).
async fn events(api: &Api, id: i64) -> Vec<(String, String)> {
    let (status, detail) = api
        .call("GET", &format!("/api/v1/orders/{id}"), Some(OPERATOR), None)
        .await;
    assert_eq!(status, 200, "{detail}");
    detail["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| {
                    (
                        e["kind"].as_str().unwrap_or_default().to_owned(),
                        e["actor"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Dispatches `id` (operator) to `team`.
async fn dispatched_to(api: &Api, id: i64, team: &str) {
    let (status, answer) = post(
        api,
        OPERATOR,
        &format!("/api/v1/orders/{id}/dispatch"),
        json!({"team_id": team}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
}

#[tokio::test]
async fn a_township_officer_runs_its_own_townships_orders_and_is_refused_anothers() {
    let api = api().await;
    let id = order(&api, "yanqing-dongguan-0000", "aurora", true).await;
    let dispatch = format!("/api/v1/orders/{id}/dispatch");
    // Another township's officer: 403 naming the order's township and its own.
    let (status, answer) = post(&api, SIHAI, &dispatch, json!({})).await;
    assert_eq!(status, 403, "{answer}");
    assert!(
        error(&answer).contains("\"yanqing\"") && error(&answer).contains("\"sihai\""),
        "{answer}"
    );
    // Its own officer, but a team that does not serve the township.
    let (status, answer) = post(&api, YANQING, &dispatch, json!({"team_id": "aurora-sihai"})).await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("zone"), "{answer}");
    // Teams still may not dispatch.
    assert_eq!(post(&api, TEAM_AURORA, &dispatch, json!({})).await.0, 403);
    // Routing picks the vendor's team.
    let (status, dispatched) = post(&api, YANQING, &dispatch, json!({})).await;
    assert_eq!(status, 200, "{dispatched}");
    assert_eq!(dispatched["team_id"], "aurora-yanqing");
    // Reassign within the township; another township's officer is refused.
    let reassign = format!("/api/v1/orders/{id}/reassign");
    let body = json!({"team_id": "third-party-yanqing", "reason": "vendor busy"});
    let (status, answer) = post(&api, SIHAI, &reassign, body.clone()).await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("yanqing"), "{answer}");
    let (status, answer) = post(
        &api,
        YANQING,
        &reassign,
        json!({"team_id": "aurora-sihai", "reason": "x"}),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (status, moved) = post(&api, YANQING, &reassign, body).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["team_id"], "third-party-yanqing");
    // The team repairs; the officer records the callback and closes.
    for step in ["accept", "arrive", "resolve"] {
        let (status, answer) = post(
            &api,
            TEAM_THIRD,
            &format!("/api/v1/orders/{id}/{step}"),
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{step}: {answer}");
    }
    let (status, answer) = post(
        &api,
        YANQING,
        &format!("/api/v1/orders/{id}/callback"),
        json!({"satisfaction": 5, "solved": true}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let close = format!("/api/v1/orders/{id}/close");
    let (status, answer) = post(&api, SIHAI, &close, json!({})).await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("yanqing"), "{answer}");
    let (status, closed) = post(&api, YANQING, &close, json!({})).await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["state"], "closed");
    // Every step is in the history with the officer as its actor.
    let history = events(&api, id).await;
    for kind in ["dispatched", "reassigned", "callback", "closed"] {
        assert!(
            history
                .iter()
                .any(|(k, actor)| k == kind && actor == "township:yanqing"),
            "{kind}: {history:?}"
        );
    }
    // Cancelling: its own order yes, another township's no.
    let other = order(&api, "sihai-sihai-0000", "aurora", true).await;
    let (status, answer) = post(
        &api,
        YANQING,
        &format!("/api/v1/orders/{other}/cancel"),
        json!({"reason": "duplicate"}),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("\"sihai\""), "{answer}");
    let own = order(&api, "yanqing-dongguan-0001", "aurora", true).await;
    let (status, cancelled) = post(
        &api,
        YANQING,
        &format!("/api/v1/orders/{own}/cancel"),
        json!({"reason": "duplicate of a walk-in"}),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert!(events(&api, own)
        .await
        .contains(&("cancelled".to_owned(), "township:yanqing".to_owned())));
    // Lists: its own township only; asking for another is a 403 naming it.
    let (status, answer) = api
        .call("GET", "/api/v1/orders?township=sihai", Some(YANQING), None)
        .await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("\"sihai\""), "{answer}");
    let (status, list) = api.call("GET", "/api/v1/orders", Some(YANQING), None).await;
    assert_eq!(status, 200, "{list}");
    let townships: Vec<&str> = list
        .as_array()
        .map(|l| l.iter().filter_map(|o| o["township"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(townships, ["yanqing", "yanqing"], "{list}");
    let (status, _) = api
        .call(
            "GET",
            "/api/v1/orders?township=yanqing",
            Some(YANQING),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, answer) = api
        .call(
            "GET",
            "/api/v1/delegations/ledger?township=sihai",
            Some(YANQING),
            None,
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    // Merging and confirming misuse stay the operator's.
    let (status, _) = post(
        &api,
        YANQING,
        &format!("/api/v1/orders/{own}/merge"),
        json!({"into": id}),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_bureau_escalates_with_a_note_and_changes_nothing_else() {
    let api = api().await;
    let id = order(&api, "sihai-sihai-0000", "aurora", true).await;
    let path = |step: &str| format!("/api/v1/orders/{id}/{step}");
    // Refused everything that changes an order, escalation aside.
    for (step, body) in [
        ("dispatch", json!({})),
        (
            "reassign",
            json!({"team_id": "third-party-sihai", "reason": "x"}),
        ),
        ("cancel", json!({"reason": "x"})),
        ("close", json!({})),
        ("callback", json!({"satisfaction": 3, "solved": true})),
        ("merge", json!({"into": id})),
        ("delegate", json!({"team_id": "dawn-sihai", "reason": "x"})),
    ] {
        let (status, answer) = post(&api, VIEWER, &path(step), body).await;
        assert_eq!(status, 403, "{step}: {answer}");
    }
    // 督办 needs a note from a bureau, and the bureau may not date it.
    let (status, answer) = post(&api, VIEWER, &path("escalate"), json!({})).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error(&answer).contains("note"), "{answer}");
    let (status, answer) = post(
        &api,
        VIEWER,
        &path("escalate"),
        json!({"note": "x", "at_ms": T0}),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (status, escalated) = post(
        &api,
        VIEWER,
        &path("escalate"),
        json!({"note": "区城市管理委: resident called twice, hurry"}),
    )
    .await;
    assert_eq!(status, 200, "{escalated}");
    assert_eq!(escalated["state"], "created", "escalation changes no state");
    let (_, detail) = api
        .call("GET", &format!("/api/v1/orders/{id}"), Some(OPERATOR), None)
        .await;
    let last = detail["events"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["kind"], "escalated");
    assert_eq!(last["actor"], "read_only:viewer");
    assert!(
        last["note"]
            .as_str()
            .is_some_and(|n| n.contains("resident called twice")),
        "{last}"
    );
    // Nothing else moved: the bureau's refusals wrote nothing.
    assert_eq!(
        events(&api, id).await,
        [
            ("created".to_owned(), "desk:test".to_owned()),
            ("escalated".to_owned(), "read_only:viewer".to_owned()),
        ]
    );
    let (_, metrics) = api.call("GET", "/metrics", Some(OPERATOR), None).await;
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("gateway_manual_escalations_total 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_vendor_delegates_to_a_vendor_of_its_period_and_owes_the_fee_and_the_parts() {
    let api = api().await;
    let id = order(&api, "yanqing-dongguan-0000", "aurora", true).await;
    dispatched_to(&api, id, "aurora-yanqing").await;
    let delegate = format!("/api/v1/orders/{id}/delegate");
    let to = |team: &str| json!({"team_id": team, "reason": "our technician is off sick"});
    // Not assigned to the caller: another team does not see the order at all.
    let (status, answer) = post(&api, TEAM_BEIFENG, &delegate, to("elm-yanqing")).await;
    assert_eq!(status, 404, "{answer}");
    // A technician's own token does not decide for the vendor.
    let (status, answer) = post(&api, TECH_AURORA, &delegate, to("beifeng-yanqing")).await;
    assert_eq!(status, 403, "{answer}");
    // Townships and bureaus do not delegate.
    assert_eq!(
        post(&api, YANQING, &delegate, to("beifeng-yanqing"))
            .await
            .0,
        403
    );
    // A vendor of another contract period.
    let (status, answer) = post(&api, TEAM_AURORA, &delegate, to("coldstar-yanqing")).await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("period"), "{answer}");
    // A vendor of the same period that does not serve the township.
    let (status, answer) = post(&api, TEAM_AURORA, &delegate, to("dawn-sihai")).await;
    assert_eq!(status, 403, "{answer}");
    assert!(error(&answer).contains("township"), "{answer}");
    // The third party is the centre's to assign; the vendor's own team is no delegation.
    assert_eq!(
        post(&api, TEAM_AURORA, &delegate, to("third-party-yanqing"))
            .await
            .0,
        400
    );
    assert_eq!(
        post(&api, TEAM_AURORA, &delegate, to("aurora-yanqing"))
            .await
            .0,
        400
    );
    // A reason is required; inputs are bounded.
    let (status, answer) = post(
        &api,
        TEAM_AURORA,
        &delegate,
        json!({"team_id": "beifeng-yanqing", "reason": " "}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = post(
        &api,
        TEAM_AURORA,
        &delegate,
        json!({"team_id": "beifeng-yanqing", "reason": "x".repeat(2001)}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post(
        &api,
        TEAM_AURORA,
        &delegate,
        json!({"team_id": "beifeng-yanqing", "reason": "x", "colour": "red"}),
    )
    .await;
    assert_eq!(status, 400);
    // Nothing of the refusals was written.
    assert!(!events(&api, id).await.iter().any(|(k, _)| k == "delegated"));

    // Delegated: the order moves to Beifeng's team, dispatched, with an event by Aurora's team.
    api.clock.advance_to(T0 + 5 * MIN);
    let (status, moved) = post(&api, TEAM_AURORA, &delegate, to("beifeng-yanqing")).await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["team_id"], "beifeng-yanqing");
    assert_eq!(moved["technician_id"], "beifeng-yanqing-tech-01");
    assert_eq!(moved["state"], "dispatched");
    assert!(events(&api, id)
        .await
        .contains(&("delegated".to_owned(), "team:aurora-yq".to_owned())));
    // Aurora no longer holds it: delegating again is "not yours".
    let (status, _) = post(&api, TEAM_AURORA, &delegate, to("elm-yanqing")).await;
    assert_eq!(status, 404);
    // Back to Aurora would be a loop.
    let (status, answer) = post(&api, TEAM_BEIFENG, &delegate, to("aurora-yanqing")).await;
    assert_eq!(status, 409, "{answer}");
    assert!(error(&answer).contains("loop"), "{answer}");

    // The ledger: Aurora owes Beifeng the fee now, the parts once repaired.
    let ledger = |token: &'static str| {
        let api = &api;
        async move {
            let (status, ledger) = api
                .call("GET", "/api/v1/delegations/ledger", Some(token), None)
                .await;
            assert_eq!(status, 200, "{ledger}");
            ledger
        }
    };
    let pending = ledger(OPERATOR).await;
    assert_eq!(pending["lines"][0]["from_vendor"], "aurora", "{pending}");
    assert_eq!(pending["lines"][0]["to_vendor"], "beifeng");
    assert_eq!(pending["lines"][0]["period"], "2016");
    assert_eq!(pending["lines"][0]["pending"], 1);
    assert_eq!(pending["lines"][0]["owed_cents"], FEE);
    for step in ["accept", "arrive"] {
        let (status, answer) = post(
            &api,
            TEAM_BEIFENG,
            &format!("/api/v1/orders/{id}/{step}"),
            json!({}),
        )
        .await;
        assert_eq!(status, 200, "{step}: {answer}");
    }
    let (status, resolved) = post(
        &api,
        TEAM_BEIFENG,
        &format!("/api/v1/orders/{id}/resolve"),
        json!({"parts": [{"code": "flow-switch", "quantity": 2}]}),
    )
    .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["resident_pays_cents"], 0, "in warranty: free");
    let due = ledger(VIEWER).await;
    assert_eq!(due["lines"][0]["pending"], 0, "{due}");
    assert_eq!(due["lines"][0]["fee_cents"], FEE);
    assert_eq!(due["lines"][0]["parts_cents"], 17_000);
    assert_eq!(due["lines"][0]["owed_cents"], FEE + 17_000);
    assert_eq!(due["total_owed_cents"], FEE + 17_000);
    let balances = due["balances"].as_array().cloned().unwrap_or_default();
    assert!(balances.contains(&json!({"vendor": "aurora", "owes_cents": FEE + 17_000, "owed_cents": 0, "net_cents": -(FEE + 17_000)})), "{due}");
    assert!(balances.contains(&json!({"vendor": "beifeng", "owes_cents": 0, "owed_cents": FEE + 17_000, "net_cents": FEE + 17_000})), "{due}");
    // The entries, each with its status, for the vendors on either side.
    let (status, rows) = api
        .call("GET", "/api/v1/delegations", Some(TEAM_BEIFENG), None)
        .await;
    assert_eq!(status, 200, "{rows}");
    assert_eq!(rows[0]["status"], "due");
    assert_eq!(rows[0]["order_id"], id);
    assert_eq!(rows[0]["at_ms"], T0 + 5 * MIN);
    assert_eq!(rows[0]["actor"], "team:aurora-yq");
    // Scopes of the lists: another vendor, a non-vendor team, another township.
    assert_eq!(
        api.call(
            "GET",
            "/api/v1/delegations?vendor=elm",
            Some(TEAM_AURORA),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        api.call("GET", "/api/v1/delegations", Some(TEAM_THIRD), None)
            .await
            .0,
        403
    );
    let (status, elm) = api
        .call("GET", "/api/v1/delegations/ledger", Some(TEAM_ELM), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        elm["lines"],
        json!([]),
        "Elm is neither debtor nor creditor"
    );
    let (status, sihai) = api
        .call("GET", "/api/v1/delegations/ledger", Some(SIHAI), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(sihai["lines"], json!([]), "no delegation in Sihai");
    for bad in [
        "/api/v1/delegations?limit=0",
        "/api/v1/delegations?limit=10001",
        "/api/v1/delegations?from_ms=5&to_ms=5",
        "/api/v1/delegations?order_id=-1",
        "/api/v1/delegations?colour=red",
    ] {
        assert_eq!(
            api.call("GET", bad, Some(OPERATOR), None).await.0,
            400,
            "{bad}"
        );
    }
    let long = format!("/api/v1/delegations?vendor={}", "v".repeat(65));
    assert_eq!(api.call("GET", &long, Some(OPERATOR), None).await.0, 400);
    let (_, metrics) = api.call("GET", "/metrics", Some(OPERATOR), None).await;
    assert!(
        metrics
            .as_str()
            .is_some_and(|m| m.contains("gateway_order_delegations_total 1")),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_delegation_chain_passes_the_cost_on_refuses_loops_and_is_voided_when_the_order_leaves_it(
) {
    let api = api().await;
    // Aurora -> Beifeng -> Elm: two entries of the same amount, so Beifeng passes it on.
    let id = order(&api, "yanqing-dongguan-0001", "aurora", true).await;
    dispatched_to(&api, id, "aurora-yanqing").await;
    let delegate = format!("/api/v1/orders/{id}/delegate");
    let to = |team: &str| json!({"team_id": team, "reason": "no staff today"});
    assert_eq!(
        post(&api, TEAM_AURORA, &delegate, to("beifeng-yanqing"))
            .await
            .0,
        200
    );
    // Accepted orders may be delegated too.
    assert_eq!(
        post(
            &api,
            TEAM_BEIFENG,
            &format!("/api/v1/orders/{id}/accept"),
            json!({})
        )
        .await
        .0,
        200
    );
    let (status, answer) = post(&api, TEAM_BEIFENG, &delegate, to("elm-yanqing")).await;
    assert_eq!(status, 200, "{answer}");
    for back in ["aurora-yanqing", "beifeng-yanqing"] {
        let (status, answer) = post(&api, TEAM_ELM, &delegate, to(back)).await;
        assert_eq!(status, 409, "{back}: {answer}");
    }
    let (_, ledger) = api
        .call("GET", "/api/v1/delegations/ledger", Some(OPERATOR), None)
        .await;
    let balances = ledger["balances"].as_array().cloned().unwrap_or_default();
    assert!(
        balances.contains(
            &json!({"vendor": "beifeng", "owes_cents": FEE, "owed_cents": FEE, "net_cents": 0})
        ),
        "{ledger}"
    );
    // An operator sends it to the third party: both entries are void, and the history says so.
    let (status, answer) = post(
        &api,
        OPERATOR,
        &format!("/api/v1/orders/{id}/reassign"),
        json!({"team_id": "third-party-yanqing", "reason": "nobody free"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let (_, rows) = api
        .call(
            "GET",
            &format!("/api/v1/delegations?order_id={id}"),
            Some(OPERATOR),
            None,
        )
        .await;
    let statuses: Vec<&str> = rows
        .as_array()
        .map(|r| r.iter().filter_map(|d| d["status"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(statuses, ["void", "void"], "{rows}");
    assert_eq!(rows[0]["owed_cents"], 0);
    assert!(events(&api, id)
        .await
        .iter()
        .any(|(kind, actor)| kind == "delegation_voided" && actor == "operator:centre"));
    let (_, ledger) = api
        .call("GET", "/api/v1/delegations/ledger", Some(OPERATOR), None)
        .await;
    assert_eq!(ledger["total_owed_cents"], 0, "{ledger}");
    assert_eq!(ledger["lines"][0]["voided"], 1);

    // A cancellation voids the entry too.
    let kept = order(&api, "yanqing-dongguan-0002", "aurora", true).await;
    dispatched_to(&api, kept, "aurora-yanqing").await;
    assert_eq!(
        post(
            &api,
            TEAM_AURORA,
            &format!("/api/v1/orders/{kept}/delegate"),
            to("beifeng-yanqing")
        )
        .await
        .0,
        200
    );
    let (status, _) = post(
        &api,
        YANQING,
        &format!("/api/v1/orders/{kept}/cancel"),
        json!({"reason": "the resident fixed the breaker"}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, rows) = api
        .call(
            "GET",
            &format!("/api/v1/delegations?order_id={kept}"),
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(rows[0]["status"], "void", "{rows}");
    assert_eq!(rows[0]["void_reason"], "order cancelled");

    // Out of warranty: the third party's, no delegation.
    let old = order(&api, "yanqing-dongguan-0000", "aurora", false).await;
    dispatched_to(&api, old, "aurora-yanqing").await;
    let (status, answer) = post(
        &api,
        TEAM_AURORA,
        &format!("/api/v1/orders/{old}/delegate"),
        to("beifeng-yanqing"),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert!(error(&answer).contains("warranty"), "{answer}");
    // A created order is not yet anyone's to delegate (an operator acting for the vendor).
    let fresh = order(&api, "yanqing-dongguan-0003", "beifeng", true).await;
    let (status, answer) = post(
        &api,
        OPERATOR,
        &format!("/api/v1/orders/{fresh}/delegate"),
        to("elm-yanqing"),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    // An operator may record a vendor's delegation on its behalf.
    dispatched_to(&api, fresh, "beifeng-yanqing").await;
    let (status, answer) = post(
        &api,
        OPERATOR,
        &format!("/api/v1/orders/{fresh}/delegate"),
        to("elm-yanqing"),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(events(&api, fresh)
        .await
        .contains(&("delegated".to_owned(), "operator:centre".to_owned())));
}

#[tokio::test]
async fn the_delegation_routes_are_in_the_openapi_document() {
    let api = api().await;
    let (status, doc) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/orders/{id}/delegate",
        "/api/v1/delegations",
        "/api/v1/delegations/ledger",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing");
    }
    assert!(doc["components"]["schemas"].get("DelegateBody").is_some());
    assert!(doc["components"]["schemas"].get("Ledger").is_some());
}
