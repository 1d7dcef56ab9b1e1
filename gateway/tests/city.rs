//! The 12345 round trip through the gateway library and its HTTP API: a repair call and a
//! policy question logged with their city tickets; the order's steps taken over the API; the
//! replies reach a receiver written here (axum on 127.0.0.1:0) signed, in order, one per step,
//! a refused one given up and a failed one retried; a sender started again on the same store
//! sends nothing twice; and the export lists each ticket with what became of it, scoped to a
//! township token's own township.

mod support;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use gateway::metrics::Metrics;
use gateway::notify::{CityConfig, CitySender};
use gateway::orders::store::Store;
use gateway::registry::demo::generate;
use gateway::registry::RegistryData;
use serde_json::{json, Value};
use support::{OPERATOR, SIHAI, TEAM_AURORA, YANQING};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;
const SECRET: &str = "city-adapter-Secret-for-tests-77";
/// Longest wait for a request the test expects (a bound on failure, not a synchronisation).
const PATIENCE: Duration = Duration::from_secs(30);

fn registry() -> RegistryData {
    let fleet =
        support::aurora_heat_pumps(&[("yanqing", "延庆镇", "xiguan", "西关村")], 2, |_| false);
    let mut data = generate(&fleet, 3);
    for device in &mut data.devices {
        device.installed_on = "2024-10-01".into();
        device.warranty_until = "2029-09-30".into();
    }
    data
}

/// A receiver answering each POST with the next status of its script (then 200).
struct Receiver {
    url: String,
    requests: mpsc::UnboundedReceiver<(HeaderMap, Bytes, u16)>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/12345", listener.local_addr().expect("address"));
        let (sent, requests) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let app = axum::Router::new().route(
            "/12345",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let (sent, script) = (sent.clone(), Arc::clone(&script));
                async move {
                    let status = script.lock().expect("script").pop_front().unwrap_or(200);
                    let _ = sent.send((headers, body, status));
                    StatusCode::from_u16(status).expect("status")
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, requests }
    }

    /// The next request the receiver got: the reply, its headers and raw body, and the status
    /// the receiver answered.
    async fn next_raw(&mut self) -> (Value, HeaderMap, Bytes, u16) {
        let (headers, body, status) = tokio::time::timeout(PATIENCE, self.requests.recv())
            .await
            .expect("a reply within the patience")
            .expect("the receiver runs");
        let reply = serde_json::from_slice(&body).expect("JSON");
        (reply, headers, body, status)
    }

    async fn next(&mut self) -> (Value, HeaderMap, u16) {
        let (reply, headers, _, status) = self.next_raw().await;
        (reply, headers, status)
    }
}

fn sender(receiver: &Receiver, api: &support::Api, metrics: &Arc<Metrics>) -> CitySender {
    let config: CityConfig = toml::from_str(&format!(
        "url = \"{}\"\nsecret = \"{SECRET}\"\npoll_every = \"100ms\"\nbackoff = \"10ms\"\nmax_backoff = \"40ms\"\n",
        receiver.url
    ))
    .expect("[notify.city]");
    config.validate().expect("valid");
    CitySender::new(&config, &api.service, Arc::clone(metrics))
        .expect("builds")
        .expect("a URL is set")
}

async fn post(api: &support::Api, path: &str, token: &str, body: Value) -> Value {
    let (status, answer) = api.call("POST", path, Some(token), Some(body)).await;
    assert!(status == 200 || status == 201, "{path}: {status} {answer}");
    answer
}

#[tokio::test]
async fn city_tickets_are_answered_in_order_once_and_exported_line_by_line() {
    let data = registry();
    let household = data.households[0].id.clone();
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&data).expect("import");
    let api = support::api(store, T0).await;

    // A repair call from 12345 (routed at once), a policy question from 12345 (answered
    // later), and a call on the centre's own hotline (not the city's: never sent).
    let repair = post(
        &api,
        "/api/v1/requests",
        OPERATOR,
        json!({"kind": "repair", "channel": "hotline_12345", "ticket": "2026120700123",
               "household_id": household, "text": "家里暖气不热"}),
    )
    .await;
    let order = repair["order_id"].as_i64().expect("an order");
    let policy = post(
        &api,
        "/api/v1/requests",
        OPERATOR,
        json!({"kind": "policy", "channel": "hotline_12345", "ticket": "2026120700124",
               "caller_name": "周大爷", "caller_phone": "13800138000",
               "village_id": "yanqing-xiguan", "text": "补贴什么时候发"}),
    )
    .await;
    post(
        &api,
        "/api/v1/requests",
        OPERATOR,
        json!({"kind": "policy", "channel": "centre_hotline", "caller_name": "李",
               "caller_phone": "13800138001", "village_id": "yanqing-xiguan", "text": "问问"}),
    )
    .await;

    // The receiver refuses the first reply for good and fails the second once.
    let mut receiver = Receiver::start(&[422, 503]).await;
    let metrics = Arc::new(Metrics::default());
    let stop = CancellationToken::new();
    tokio::spawn(sender(&receiver, &api, &metrics).run(stop.clone()));

    let (first, _, status) = receiver.next().await;
    assert_eq!(status, 422);
    assert_eq!(
        (first["ticket"].as_str(), first["event"].as_str()),
        (Some("2026120700123"), Some("received"))
    );
    let (failed, _, status) = receiver.next().await;
    assert_eq!(status, 503);
    let (again, headers, body, status) = receiver.next_raw().await;
    assert_eq!(status, 200);
    assert_eq!(again, failed, "the failed reply is sent again, unchanged");
    assert_eq!(again["ticket"], "2026120700124");
    assert_eq!(again["event"], "received");
    assert_eq!(
        headers
            .get("x-heating-delivery")
            .and_then(|v| v.to_str().ok()),
        again["id"].as_str()
    );
    let timestamp = headers["x-heating-timestamp"].to_str().expect("ts");
    let signature = headers["x-heating-signature"]
        .to_str()
        .expect("sig")
        .strip_prefix("sha256=")
        .expect("sha256=")
        .to_owned();
    let signature: Vec<u8> = (0..signature.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&signature[i..i + 2], 16).expect("hex"))
        .collect();
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    ring::hmac::verify(&key, &signed, &signature).expect("signed with the shared secret");

    // The order's steps, then the desk's answer to the policy question.
    for step in ["accept", "arrive"] {
        post(
            &api,
            &format!("/api/v1/orders/{order}/{step}"),
            TEAM_AURORA,
            json!({}),
        )
        .await;
    }
    post(
        &api,
        &format!("/api/v1/orders/{order}/resolve"),
        TEAM_AURORA,
        json!({"parts": [{"code": "flow-switch"}], "note": "水流开关坏，已更换"}),
    )
    .await;
    let policy_id = policy["request_id"].as_i64().expect("id");
    post(
        &api,
        &format!("/api/v1/requests/{policy_id}/answer"),
        OPERATOR,
        json!({"answer": "补贴于供暖季结束后发放"}),
    )
    .await;
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let (reply, _, status) = receiver.next().await;
        assert_eq!(status, 200);
        seen.push(reply);
    }
    let events: Vec<(&str, &str)> = seen
        .iter()
        .map(|r| {
            (
                r["ticket"].as_str().unwrap_or(""),
                r["event"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("2026120700123", "dispatched"),
            ("2026120700123", "accepted"),
            ("2026120700123", "arrived"),
            ("2026120700123", "resolved"),
            ("2026120700124", "answered"),
        ]
    );
    let seen = &seen[1..];
    let text = seen[2]["text"].as_str().unwrap_or("");
    assert!(
        text.ends_with("水流开关坏，已更换") && text.contains("resident pays 0.00 CNY"),
        "{text}"
    );
    assert_eq!(seen[2]["order_state"], "resolved");
    assert_eq!(seen[2]["order_id"], order);
    assert!(seen[2]["times"]["resolved_at_ms"].as_i64().is_some());
    assert_eq!(seen[3]["text"], "补贴于供暖季结束后发放");
    // The sender counts a reply once the receiver's answer is back: after the receiver saw it.
    support::wait_for("the sixth delivery counted", PATIENCE, || {
        let metrics = Arc::clone(&metrics);
        async move { metrics.notices_total("city", "delivered") == 6 }
    })
    .await;
    assert_eq!(metrics.notices_total("city", "failed"), 1);
    assert_eq!(metrics.notices_total("city", "retried"), 1);
    stop.cancel();

    // A sender started again on the same store sends what is new, and nothing twice.
    post(
        &api,
        &format!("/api/v1/orders/{order}/callback"),
        OPERATOR,
        json!({"solved": true, "satisfaction": 5}),
    )
    .await;
    post(
        &api,
        &format!("/api/v1/orders/{order}/close"),
        OPERATOR,
        json!({}),
    )
    .await;
    let stop = CancellationToken::new();
    tokio::spawn(sender(&receiver, &api, &metrics).run(stop.clone()));
    let (next, _, _) = receiver.next().await;
    assert_eq!(
        (next["event"].as_str(), next["satisfaction"].as_i64()),
        (Some("callback"), Some(5))
    );
    let (last, _, _) = receiver.next().await;
    assert_eq!(
        (last["event"].as_str(), last["order_state"].as_str()),
        (Some("closed"), Some("closed"))
    );
    support::wait_for("the eighth delivery counted", PATIENCE, || {
        let metrics = Arc::clone(&metrics);
        async move { metrics.notices_total("city", "delivered") >= 8 }
    })
    .await;
    stop.cancel();
    assert_eq!(
        metrics.notices_total("city", "delivered"),
        8,
        "nothing sent twice"
    );

    // The export: one line per city ticket, none of the centre's own line.
    let response = api
        .client
        .get(format!(
            "{}/api/v1/requests/city?from=2026-11-30&to=2026-12-01",
            api.base
        ))
        .bearer_auth(OPERATOR)
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), 200);
    let csv = response.text().await.expect("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].starts_with("2026120700123,1,2026-12-01 08:00:00,repair,yanqing,"),
        "{csv}"
    );
    assert!(lines[1].contains(&format!(",{order},closed,")), "{csv}");
    assert!(
        lines[1].contains(",5,parts: [flow-switch x1];")
            && lines[1].ends_with("水流开关坏，已更换"),
        "{csv}"
    );
    assert!(
        lines[2].starts_with("2026120700124,") && lines[2].ends_with(",补贴于供暖季结束后发放"),
        "{csv}"
    );
    // A township token gets its own township; another's is refused; a team token nothing.
    let (status, own) = api
        .call(
            "GET",
            "/api/v1/requests/city?format=json&from=2026-11-30&to=2026-12-01",
            Some(YANQING),
            None,
        )
        .await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own.as_array().map(Vec::len), Some(2));
    let (status, _) = api
        .call(
            "GET",
            "/api/v1/requests/city?township=yanqing",
            Some(SIHAI),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = api
        .call("GET", "/api/v1/requests/city", Some(TEAM_AURORA), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = api
        .call(
            "GET",
            "/api/v1/requests/city?from=2025-01-01&to=2026-12-01",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(status, 400, "more than a year");
}
