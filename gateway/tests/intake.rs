//! The intake desk and the technicians' field view over HTTP: requests of every kind with their
//! channel and 12345 ticket number, callers without a registered device, the caller's context,
//! answers; the field view for a team and for one technician's own token; steps sent twice
//! with one `Idempotency-Key` applied once; and every new route's answer to each role's token.

mod support;

use gateway::orders::store::{OrderUpdate, Store};
use gateway::registry::demo::generate;
use gateway::registry::RegistryData;
use serde_json::{json, Value};
use support::{OPERATOR, SIHAI, TEAM_AURORA, TEAM_THIRD, VIEWER, YANQING};

/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;
/// A technician of Aurora's 延庆镇 team, with their own token.
const TECH_AURORA: &str = "technician-aurora-yanqing-01234";
/// A technician of the third party's 延庆镇 team, with their own token.
const TECH_THIRD: &str = "technician-third-yanqing-012345";

/// Two households in 西关村 (延庆镇) and two in 四海村 (四海镇), heat pumps in warranty.
fn registry() -> RegistryData {
    let fleet = support::aurora_heat_pumps(
        &[
            ("yanqing", "延庆镇", "xiguan", "西关村"),
            ("sihai", "四海镇", "sihai", "四海村"),
        ],
        2,
        |_| false,
    );
    let mut data = generate(&fleet, 3);
    for device in &mut data.devices {
        device.installed_on = "2024-10-01".into();
        device.warranty_until = "2029-09-30".into();
    }
    data
}

struct Api {
    http: support::Api,
    data: RegistryData,
}

/// The first technician of `team` in the registry.
fn technician_of(data: &RegistryData, team: &str) -> String {
    data.technicians
        .iter()
        .find(|t| t.team_id == team)
        .map(|t| t.id.clone())
        .unwrap_or_else(|| panic!("the registry has no technician in {team}"))
}

async fn api() -> Api {
    let data = registry();
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&data).expect("import");
    let tokens = vec![
        support::technician_token(
            "li",
            TECH_AURORA,
            "aurora-yanqing",
            &technician_of(&data, "aurora-yanqing"),
        ),
        support::technician_token(
            "zhao",
            TECH_THIRD,
            "third-party-yanqing",
            &technician_of(&data, "third-party-yanqing"),
        ),
    ];
    Api {
        http: support::api_with_tokens(store, T0, tokens).await,
        data,
    }
}

impl Api {
    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.http.call("GET", path, Some(token), None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.http.call("POST", path, Some(token), Some(body)).await
    }

    /// A repair request from 12345 about `household`: its outcome.
    async fn repair(&self, household: &str, ticket: &str) -> Value {
        let (status, body) = self
            .post(
                "/api/v1/requests",
                OPERATOR,
                json!({"kind": "repair", "channel": "hotline_12345", "ticket": ticket,
                       "household_id": household, "text": "家里暖气不热"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body
    }

    fn household_phone(&self, id: &str) -> String {
        let household = self
            .data
            .households
            .iter()
            .find(|h| h.id == id)
            .expect("household");
        household.phones[0].clone()
    }

    async fn order(&self, id: i64) -> Value {
        let (status, body) = self.get(&format!("/api/v1/orders/{id}"), OPERATOR).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}

fn event_count(order: &Value, kind: &str) -> usize {
    order["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == kind)
        .count()
}

#[tokio::test]
async fn a_12345_call_keeps_its_ticket_number_and_a_second_request_joins_the_open_order() {
    let api = api().await;
    let household = "hh-yanqing-xiguan-0000";
    let outcome = api.repair(household, "2026120700123").await;
    assert_eq!(outcome["ticket"], "2026120700123");
    assert_eq!(outcome["linked"], false);
    let order_id = outcome["order_id"]
        .as_i64()
        .expect("a repair opens an order");
    let order = api.order(order_id).await;
    assert_eq!(order["source"], "hotline_12345");
    assert_eq!(order["state"], "dispatched", "routed at once: {order}");
    assert!(
        order["summary"]
            .as_str()
            .unwrap_or("")
            .contains("2026120700123"),
        "the ticket is on the order: {order}"
    );

    // The request keeps the ticket and the caller (the resident, by default).
    let (status, list) = api
        .get(
            &format!("/api/v1/requests?household_id={household}"),
            OPERATOR,
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list[0]["ticket"], "2026120700123");
    assert_eq!(list[0]["channel"], "hotline_12345");
    assert_eq!(list[0]["order_id"], order_id);
    assert_eq!(list[0]["caller_phone"], api.household_phone(household));

    // A charge question from the same house joins the open order, answered on the call.
    let (status, charge) = api
        .post(
            "/api/v1/requests",
            OPERATOR,
            json!({"kind": "charge", "channel": "centre_hotline", "household_id": household,
                   "text": "换件要收费吗", "answer": "质保期内免费"}),
        )
        .await;
    assert_eq!(status, 201, "{charge}");
    assert_eq!(charge["order_id"], order_id);
    assert_eq!(charge["linked"], true);
    assert_eq!(charge["answered"], true);
    assert_eq!(event_count(&api.order(order_id).await, "request_linked"), 1);

    // One request per channel and ticket.
    let (status, again) = api
        .post(
            "/api/v1/requests",
            OPERATOR,
            json!({"kind": "repair", "channel": "hotline_12345", "ticket": "2026120700123",
                   "household_id": household}),
        )
        .await;
    assert_eq!(status, 409, "{again}");
    assert!(
        again["error"].as_str().unwrap_or("").contains("ticket"),
        "{again}"
    );

    // The caller's context shows the open order and both requests.
    let (status, context) = api
        .get(&format!("/api/v1/households/{household}/context"), OPERATOR)
        .await;
    assert_eq!(status, 200, "{context}");
    assert_eq!(context["open_orders"][0]["id"], order_id);
    assert_eq!(context["recent_requests"].as_array().map(Vec::len), Some(2));
    assert_eq!(context["devices"][0]["device_id"], "yanqing-xiguan-0000");
}

#[tokio::test]
async fn a_caller_without_a_registered_device_is_accepted_with_name_phone_and_village() {
    let api = api().await;
    // A policy question: recorded and answered, no order.
    let (status, policy) = api
        .post(
            "/api/v1/requests",
            OPERATOR,
            json!({"kind": "conversion", "channel": "walk_in", "caller_name": "周大爷",
                   "caller_phone": "138 0013 8000", "village_id": "yanqing-xiguan",
                   "text": "我们村什么时候煤改电"}),
        )
        .await;
    assert_eq!(status, 201, "{policy}");
    assert_eq!(policy["order_id"], Value::Null);
    assert_eq!(policy["answered"], false);
    let request_id = policy["request_id"].as_i64().expect("id");
    let (status, unanswered) = api.get("/api/v1/requests?unanswered=true", OPERATOR).await;
    assert_eq!(status, 200);
    assert_eq!(unanswered[0]["id"], request_id);
    assert_eq!(unanswered[0]["caller_phone"], "13800138000");
    assert_eq!(unanswered[0]["township"], "yanqing");
    let (status, answered) = api
        .post(
            &format!("/api/v1/requests/{request_id}/answer"),
            OPERATOR,
            json!({"answer": "已转镇政府，明年计划内"}),
        )
        .await;
    assert_eq!(status, 200, "{answered}");
    assert_eq!(answered["answer"], "已转镇政府，明年计划内");
    let (status, twice) = api
        .post(
            &format!("/api/v1/requests/{request_id}/answer"),
            OPERATOR,
            json!({"answer": "again"}),
        )
        .await;
    assert_eq!(status, 409, "{twice}");

    // A repair from a caller without a registered device: an order for the caller, routed in
    // the village's township, with the caller's number for the technician.
    let (status, repair) = api
        .post(
            "/api/v1/requests",
            OPERATOR,
            json!({"kind": "repair", "channel": "sms_wechat", "caller_name": "周大爷",
                   "caller_phone": "13800138000", "village_id": "yanqing-xiguan",
                   "text": "自己装的炉子不热"}),
        )
        .await;
    assert_eq!(status, 201, "{repair}");
    let order_id = repair["order_id"].as_i64().expect("order");
    let order = api.order(order_id).await;
    assert_eq!(order["township"], "yanqing");
    assert_eq!(order["village_id"], "yanqing-xiguan");
    assert_eq!(order["team_id"], "third-party-yanqing", "{order}");
    let (status, field) = api
        .get("/api/v1/field/orders?team_id=third-party-yanqing", OPERATOR)
        .await;
    assert_eq!(status, 200, "{field}");
    let item = field["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == order_id)
        .expect("the order is in the team's field view");
    assert_eq!(item["callers"][0]["phone"], "13800138000");

    // Each missing or bad field is named.
    for (body, field) in [
        (
            json!({"kind": "policy", "channel": "walk_in", "caller_name": "周", "caller_phone": "13800138000"}),
            "village_id",
        ),
        (
            json!({"kind": "policy", "channel": "walk_in", "caller_phone": "13800138000", "village_id": "yanqing-xiguan"}),
            "caller_name",
        ),
        (
            json!({"kind": "policy", "channel": "walk_in", "caller_name": "周", "caller_phone": "12", "village_id": "yanqing-xiguan"}),
            "caller_phone",
        ),
        (
            json!({"kind": "policy", "channel": "walk_in", "caller_name": "周", "caller_phone": "13800138000", "village_id": "nowhere"}),
            "village_id",
        ),
        (
            json!({"kind": "policy", "channel": "hotline_12345", "ticket": "12 34", "household_id": "hh-yanqing-xiguan-0001"}),
            "ticket",
        ),
        (
            json!({"kind": "policy", "channel": "walk_in", "household_id": "hh-yanqing-xiguan-0001", "text": "字".repeat(2001)}),
            "text",
        ),
    ] {
        let (status, error) = api.post("/api/v1/requests", OPERATOR, body).await;
        assert_eq!(status, 400, "{error}");
        assert!(
            error["error"].as_str().unwrap_or("").contains(field),
            "the error names {field}: {error}"
        );
    }
}

#[tokio::test]
async fn a_step_sent_twice_with_one_idempotency_key_is_applied_once() {
    let api = api().await;
    let outcome = api.repair("hh-yanqing-xiguan-0001", "T-0001").await;
    let order_id = outcome["order_id"].as_i64().expect("order");
    let accept = format!("/api/v1/orders/{order_id}/accept");
    let (status, first, replayed) = api
        .http
        .post_once(&accept, TECH_AURORA, "key-accept-0001", json!({}))
        .await;
    assert_eq!((status, replayed), (200, false), "{first}");
    // The answer was lost on the way; the phone sends the same step again.
    let (status, second, replayed) = api
        .http
        .post_once(&accept, TECH_AURORA, "key-accept-0001", json!({}))
        .await;
    assert_eq!((status, replayed), (200, true), "{second}");
    assert_eq!(first, second);
    assert_eq!(event_count(&api.order(order_id).await, "accepted"), 1);
    // Without the key the same step is refused by the lifecycle (it was applied).
    let (status, _) = api.post(&accept, TECH_AURORA, json!({})).await;
    assert_eq!(status, 409);
    // The key of one step cannot carry another.
    let (status, error, _) = api
        .http
        .post_once(
            &format!("/api/v1/orders/{order_id}/arrive"),
            TECH_AURORA,
            "key-accept-0001",
            json!({}),
        )
        .await;
    assert_eq!(status, 422, "{error}");
    assert!(error["error"]
        .as_str()
        .unwrap_or("")
        .contains("Idempotency-Key"));
    // A malformed key is named.
    let (status, error, _) = api
        .http
        .post_once(
            &format!("/api/v1/orders/{order_id}/arrive"),
            TECH_AURORA,
            "bad",
            json!({}),
        )
        .await;
    assert_eq!(status, 400, "{error}");
    assert!(error["error"]
        .as_str()
        .unwrap_or("")
        .contains("Idempotency-Key"));

    // Another caller's key is another key: the same text from the operator is applied.
    let arrive = format!("/api/v1/orders/{order_id}/arrive");
    let (status, _, replayed) = api
        .http
        .post_once(&arrive, OPERATOR, "key-accept-0001", json!({}))
        .await;
    assert_eq!((status, replayed), (200, false));

    // A request logged twice with one key is one request.
    let body = json!({"kind": "policy", "channel": "hotline_12345", "ticket": "T-0002",
                      "household_id": "hh-yanqing-xiguan-0000", "answer": "按政策补贴"});
    let (status, first, _) = api
        .http
        .post_once(
            "/api/v1/requests",
            OPERATOR,
            "key-request-0002",
            body.clone(),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let (status, second, replayed) = api
        .http
        .post_once("/api/v1/requests", OPERATOR, "key-request-0002", body)
        .await;
    assert_eq!((status, replayed), (201, true), "{second}");
    assert_eq!(first["request_id"], second["request_id"]);
    let (_, list) = api.get("/api/v1/requests?kind=policy", OPERATOR).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

#[tokio::test]
async fn a_technician_accepts_arrives_and_resolves_with_parts_from_the_phone() {
    let api = api().await;
    let technician = technician_of(&api.data, "aurora-yanqing");
    let outcome = api.repair("hh-yanqing-xiguan-0000", "T-0100").await;
    let order_id = outcome["order_id"].as_i64().expect("order");
    assert_eq!(api.order(order_id).await["team_id"], "aurora-yanqing");

    let (status, view) = api.get("/api/v1/field/orders", TECH_AURORA).await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["technician_id"], technician);
    let item = view["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == order_id)
        .expect("the team's order is in the technician's view")
        .clone();
    assert_eq!(
        item["household"]["phones"][0],
        api.household_phone("hh-yanqing-xiguan-0000"),
        "the resident's number, in full, for the tel: link"
    );
    assert_eq!(item["callers"][0]["ticket"], "T-0100");

    for (step, key) in [
        ("accept", "phone-step-accept"),
        ("arrive", "phone-step-arrive"),
    ] {
        let (status, body, _) = api
            .http
            .post_once(
                &format!("/api/v1/orders/{order_id}/{step}"),
                TECH_AURORA,
                key,
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{step}: {body}");
    }
    let order = api.order(order_id).await;
    assert_eq!(order["state"], "on_site");
    assert_eq!(
        order["technician_id"], technician,
        "accepting takes the order"
    );
    let part = &api.data.parts[0];
    let (status, refused) = api
        .post(
            &format!("/api/v1/orders/{order_id}/resolve"),
            TECH_AURORA,
            json!({"parts": [{"code": part.code}], "misuse": true}),
        )
        .await;
    assert_eq!(status, 400, "a misuse claim without a note: {refused}");
    assert!(refused["error"].as_str().unwrap_or("").contains("note"));
    let (status, refused) = api
        .post(
            &format!("/api/v1/orders/{order_id}/resolve"),
            TECH_AURORA,
            json!({"note": "长".repeat(2001)}),
        )
        .await;
    assert_eq!(status, 400, "a note beyond its bound: {refused}");
    let (status, resolved, _) = api
        .http
        .post_once(
            &format!("/api/v1/orders/{order_id}/resolve"),
            TECH_AURORA,
            "phone-step-resolve",
            json!({"parts": [{"code": part.code, "quantity": 2}], "misuse": true,
                   "note": "过滤器被住户拆掉"}),
        )
        .await;
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["parts_cents"], part.price_cents * 2);
    // In warranty; misuse is a claim until an operator confirms it.
    assert_eq!(resolved["resident_pays_cents"], 0);
    let (_, view) = api.get("/api/v1/field/orders", TECH_AURORA).await;
    let item = view["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == order_id)
        .expect("still open until the callback")
        .clone();
    assert_eq!(item["misuse_claim_pending"], true);
    assert_eq!(item["mine"], true);
    let (status, confirmed) = api
        .post(
            &format!("/api/v1/orders/{order_id}/confirm_misuse"),
            OPERATOR,
            json!({"note": "照片确认"}),
        )
        .await;
    assert_eq!(status, 200, "{confirmed}");
    assert_eq!(confirmed["resident_pays_cents"], part.price_cents * 2);
}

#[tokio::test]
async fn every_new_route_answers_each_role_as_its_scope_allows() {
    let api = api().await;
    let yanqing = "hh-yanqing-xiguan-0000";
    let sihai = "hh-sihai-sihai-0000";
    let order_id = api.repair(yanqing, "T-0200").await["order_id"]
        .as_i64()
        .expect("order");
    let sihai_order = api.repair(sihai, "T-0201").await["order_id"]
        .as_i64()
        .expect("order");

    // POST /requests: operators and township officers in their township.
    let ask = |household: &str| json!({"kind": "policy", "channel": "centre_hotline", "household_id": household, "text": "补贴"});
    for (token, household, expected) in [
        (OPERATOR, yanqing, 201),
        (YANQING, yanqing, 201),
        (SIHAI, yanqing, 403),
        (SIHAI, sihai, 201),
        (TEAM_AURORA, yanqing, 403),
        (TECH_AURORA, yanqing, 403),
        (VIEWER, yanqing, 403),
    ] {
        let (status, body) = api.post("/api/v1/requests", token, ask(household)).await;
        assert_eq!(status, expected, "{token} on {household}: {body}");
    }
    let (status, _) = api
        .post(
            "/api/v1/requests",
            SIHAI,
            json!({"kind": "other", "channel": "walk_in", "caller_name": "周", "caller_phone": "13800138000", "village_id": "yanqing-xiguan"}),
        )
        .await;
    assert_eq!(
        status, 403,
        "a township officer may not log a caller of another township"
    );

    // GET /requests: the desk and read-only roles (masked); a township officer its own.
    for (token, expected) in [
        (OPERATOR, 200),
        (YANQING, 200),
        (VIEWER, 200),
        (TEAM_AURORA, 403),
        (TECH_AURORA, 403),
    ] {
        let (status, body) = api.get("/api/v1/requests", token).await;
        assert_eq!(status, expected, "{token}: {body}");
    }
    let (_, sihai_list) = api.get("/api/v1/requests", SIHAI).await;
    assert!(sihai_list
        .as_array()
        .expect("list")
        .iter()
        .all(|r| r["township"] == "sihai"));
    let (_, masked) = api.get("/api/v1/requests", VIEWER).await;
    assert!(masked.as_array().expect("list").iter().all(|r| {
        r["masked"] == true && r["caller_phone"].as_str().unwrap_or("").contains('*')
    }));

    // POST /requests/{id}/answer: the desk in its scope; another township's is not found.
    let (_, list) = api
        .get(
            &format!("/api/v1/requests?household_id={yanqing}"),
            OPERATOR,
        )
        .await;
    let request_id = list[0]["id"].as_i64().expect("id");
    for (token, expected) in [
        (TEAM_AURORA, 403),
        (TECH_AURORA, 403),
        (VIEWER, 403),
        (SIHAI, 404),
        (YANQING, 200),
        (OPERATOR, 409),
    ] {
        let (status, body) = api
            .post(
                &format!("/api/v1/requests/{request_id}/answer"),
                token,
                json!({"answer": "已答复"}),
            )
            .await;
        assert_eq!(status, expected, "{token}: {body}");
    }

    // GET /households/{id}/context: readers in their scope, masked for read-only.
    for (token, household, expected) in [
        (OPERATOR, yanqing, 200),
        (YANQING, yanqing, 200),
        (SIHAI, yanqing, 403),
        (VIEWER, yanqing, 200),
        (TEAM_AURORA, yanqing, 403),
        (TECH_AURORA, yanqing, 403),
    ] {
        let (status, body) = api
            .get(&format!("/api/v1/households/{household}/context"), token)
            .await;
        assert_eq!(status, expected, "{token}: {body}");
    }
    let (_, masked) = api
        .get(&format!("/api/v1/households/{yanqing}/context"), VIEWER)
        .await;
    assert_eq!(masked["household"]["masked"], true);

    // GET /field/orders: operators name a team, teams get their own; others are refused.
    for (path, token, expected) in [
        ("/api/v1/field/orders", OPERATOR, 400),
        ("/api/v1/field/orders?team_id=aurora-yanqing", OPERATOR, 200),
        ("/api/v1/field/orders", TEAM_AURORA, 200),
        (
            "/api/v1/field/orders?team_id=aurora-yanqing",
            TEAM_THIRD,
            403,
        ),
        ("/api/v1/field/orders", TECH_AURORA, 200),
        (
            "/api/v1/field/orders?technician_id=nobody",
            TECH_AURORA,
            403,
        ),
        (
            "/api/v1/field/orders?team_id=aurora-sihai",
            TECH_AURORA,
            403,
        ),
        ("/api/v1/field/orders?technician_id=nobody", OPERATOR, 400),
        ("/api/v1/field/orders", YANQING, 403),
        ("/api/v1/field/orders", VIEWER, 403),
    ] {
        let (status, body) = api.get(path, token).await;
        assert_eq!(status, expected, "{path} with {token}: {body}");
    }
    let (_, third) = api.get("/api/v1/field/orders", TECH_THIRD).await;
    assert!(
        third["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|i| i["team_id"] == "third-party-yanqing"),
        "{third}"
    );

    // A technician is refused another team's orders: not found, and no step applies.
    let sihai_team = api.order(sihai_order).await["team_id"].clone();
    assert_ne!(sihai_team, "aurora-yanqing");
    let (status, _) = api
        .get(&format!("/api/v1/orders/{sihai_order}"), TECH_AURORA)
        .await;
    assert_eq!(status, 404);
    for step in ["accept", "arrive", "resolve"] {
        let (status, _, _) = api
            .http
            .post_once(
                &format!("/api/v1/orders/{sihai_order}/{step}"),
                TECH_AURORA,
                &format!("other-team-{step}"),
                json!({}),
            )
            .await;
        assert_eq!(status, 404, "{step} on another team's order");
    }
    let (status, _) = api
        .get(&format!("/api/v1/orders/{order_id}"), TECH_THIRD)
        .await;
    assert_eq!(
        status, 404,
        "the third party's technician does not see Aurora's order"
    );
    assert_eq!(event_count(&api.order(sihai_order).await, "accepted"), 0);

    // An order of another team that names the technician (moved between teams) is their own:
    // their token sees it, the team's token does not.
    let technician = technician_of(&api.data, "aurora-yanqing");
    api.http
        .service
        .with_store(move |s| {
            s.append_event(
                sihai_order,
                T0,
                "operator:test",
                "reassigned",
                "the technician moved",
                &OrderUpdate {
                    technician_id: Some(technician),
                    ..OrderUpdate::default()
                },
            )
        })
        .await
        .expect("assign the technician");
    let (status, _) = api
        .get(&format!("/api/v1/orders/{sihai_order}"), TECH_AURORA)
        .await;
    assert_eq!(status, 200);
    let (status, _) = api
        .get(&format!("/api/v1/orders/{sihai_order}"), TEAM_AURORA)
        .await;
    assert_eq!(status, 404);
    let (_, list) = api.get("/api/v1/orders", TECH_AURORA).await;
    assert!(list
        .as_array()
        .expect("orders")
        .iter()
        .any(|o| o["id"] == sihai_order));
    let (_, field) = api.get("/api/v1/field/orders", TECH_AURORA).await;
    assert!(field["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|i| i["id"] == sihai_order && i["mine"] == true));
}

#[tokio::test]
async fn every_role_reads_the_sla_deadlines_the_gateway_runs() {
    let api = api().await;
    for token in [
        OPERATOR,
        YANQING,
        TEAM_AURORA,
        TEAM_THIRD,
        VIEWER,
        TECH_AURORA,
    ] {
        let (status, sla) = api.get("/api/v1/sla", token).await;
        assert_eq!(status, 200, "{token}: {sla}");
        // The repair class's deadlines at the top level, as before; `classes` and
        // `judged_at_ms` were added beside them.
        let top: serde_json::Map<String, Value> =
            ["dispatch_ms", "on_site_ms", "repaired_ms", "warn_at"]
                .into_iter()
                .map(|key| (key.to_owned(), sla[key].clone()))
                .collect();
        assert_eq!(
            Value::Object(top),
            json!({"dispatch_ms": 600_000, "on_site_ms": 7_200_000, "repaired_ms": 14_400_000, "warn_at": 0.75}),
            "{token}"
        );
        assert_eq!(sla["classes"].as_array().map(Vec::len), Some(4), "{token}");
    }
    let (status, _) = api.http.call("GET", "/api/v1/sla", None, None).await;
    assert_eq!(status, 401);
}
