//! Notices that reach people, end to end through the gateway library: order events from the
//! real order service (SLA clocks moved by a test clock, an operator's 督办, a village power
//! incident, a vulnerable household's fault) arrive at webhook and SMS-gateway receivers
//! written here (axum on 127.0.0.1:0), signed, retried after failures and delivered once, with
//! the phone numbers the registry gives each role.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod support;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use gateway::auth::{Principal, Role};
use gateway::metrics::Metrics;
use gateway::notify::{Notifier, NotifyConfig};
use gateway::orders::clock::SharedClock;
use gateway::orders::store::{OrderFilter, Store};
use gateway::orders::{OrderAction, OrderService};
use gateway::registry::demo::{generate, FleetHousehold};
use gateway::registry::RegistryData;
use rules::{Engine, RuleSet};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

const MIN: i64 = 60_000;
/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;
const SECRET: &str = "w3bh00k-Secret-for-tests-9f2c";
/// Longest wait for a request the test expects (a bound on failure, not a synchronisation).
const PATIENCE: Duration = Duration::from_secs(30);

/// Two villages of 延庆镇, two households each; the second of each is vulnerable.
fn registry() -> RegistryData {
    let mut households = Vec::new();
    for (index, village) in ["dongguan", "xiguan"].iter().enumerate() {
        for n in 0..2 {
            households.push(FleetHousehold {
                device_id: format!("yanqing-{village}-{:04}", index * 10 + n),
                township: "yanqing".into(),
                township_name: "延庆镇".into(),
                village: (*village).into(),
                village_name: format!("{village}村"),
                kind: "heat_pump".into(),
                brand: "Aurora".into(),
                model: "X".into(),
                vulnerable: n == 1,
            });
        }
    }
    generate(&households, 3)
}

/// The registry's contacts of `village` in `role`, phones as they are stored.
fn contact_phones(data: &RegistryData, village: &str, role: &str) -> Vec<String> {
    let mut contacts: Vec<_> = data
        .contacts
        .iter()
        .filter(|c| c.village_id == village && c.role == role)
        .collect();
    contacts.sort_by(|a, b| a.id.cmp(&b.id));
    contacts
        .iter()
        .map(|c| c.phone.replace(['-', ' '], ""))
        .collect()
}

/// One request a receiver got, and what it answered.
struct Received {
    headers: HeaderMap,
    body: Bytes,
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// An HTTP receiver on a free loopback port: answers each POST with the next status of its
/// script (then 200) and hands the request to the test.
struct Receiver {
    url: String,
    requests: mpsc::UnboundedReceiver<Received>,
    _stop: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start(script: &[u16]) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let (sent, requests) = mpsc::unbounded_channel();
        let script = Arc::new(Mutex::new(
            script.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let sent = sent.clone();
                let script = Arc::clone(&script);
                async move {
                    let status = script.lock().expect("script").pop_front().unwrap_or(200);
                    let _ = sent.send(Received {
                        headers,
                        body,
                        status,
                    });
                    StatusCode::from_u16(status).expect("status")
                }
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            url,
            requests,
            _stop: task,
        }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(PATIENCE, self.requests.recv())
            .await
            .expect("a request within the patience")
            .expect("the receiver is running")
    }
}

/// The order service over the registry, its clock, and the notifier with its delivery tasks
/// running until the returned token is cancelled.
struct Fixture {
    service: OrderService,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    data: RegistryData,
    stop: CancellationToken,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn fixture(notify_toml: &str) -> Fixture {
    let data = registry();
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&data).expect("import");
    let metrics = Arc::new(Metrics::default());
    let (service, clock) = support::order_service(store, Arc::clone(&metrics), T0);
    let mut config: NotifyConfig = toml::from_str(notify_toml).expect("[notify]");
    config.resolve_secrets().expect("secrets");
    config.validate().expect("valid [notify]");
    let (notifier, workers) = Notifier::new(&config, &service, Arc::clone(&metrics))
        .expect("builds")
        .expect("a sink is configured");
    let stop = CancellationToken::new();
    for worker in workers {
        tokio::spawn(worker.run(stop.clone()));
    }
    tokio::spawn(notifier.run(stop.clone()));
    Fixture {
        service,
        clock,
        metrics,
        data,
        stop,
    }
}

/// Fast retries, so a test with failures takes milliseconds of backoff.
const FAST: &str = "backoff = \"10ms\"\nmax_backoff = \"40ms\"\ntimeout = \"5s\"\n";

fn reading(device: &str, ts_ms: i64) -> Telemetry {
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
            category: FaultCategory::SensorFault,
            text: "test fault".into(),
        }),
        extra: Default::default(),
    }
}

/// Opens an order for `device` from the default fault rule at `at_ms`; returns its id.
async fn fault_order(service: &OrderService, device: &str, at_ms: i64) -> i64 {
    let mut engine = Engine::new(RuleSet::parse(rules::DEFAULT_RULES, "default").expect("rules"));
    let transitions = engine.ingest(&reading(device, at_ms));
    assert_eq!(transitions.len(), 1, "{transitions:?}");
    let opened = service
        .apply(
            transitions
                .into_iter()
                .map(|t| (t, "yanqing".to_owned()))
                .collect(),
        )
        .await
        .expect("apply");
    assert_eq!(opened.len(), 1);
    opened[0]
}

fn operator() -> Principal {
    Principal {
        name: "centre".into(),
        role: Role::Operator,
        township: None,
        team: None,
        technician: None,
    }
}

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Checks the request's signature as a receiver would: HMAC-SHA256 of `{timestamp}.{body}`.
fn assert_signed(request: &Received) {
    let timestamp = request.header("x-heating-timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let seconds: u64 = timestamp.parse().expect("a Unix time in seconds");
    assert!(
        seconds.abs_diff(now) < 300,
        "timestamp {seconds} vs now {now}"
    );
    let signature = request
        .header("x-heating-signature")
        .strip_prefix("sha256=")
        .expect("sha256= signature");
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    ring::hmac::verify(&key, &signed, &hex_decode(signature)).expect("a valid signature");
    // And a body changed in transit fails.
    signed.push(b' ');
    assert!(ring::hmac::verify(&key, &signed, &hex_decode(signature)).is_err());
}

#[tokio::test]
async fn an_sla_escalation_arrives_at_the_webhook_signed_for_the_township_and_the_centre() {
    let mut receiver = Receiver::start(&[]).await;
    let f = fixture(&format!(
        "[[township_officers]]\ntownship = \"yanqing\"\nname = \"延庆镇派单员\"\nphone = \"138-0000-0001\"\n\
         [[township_officers]]\ntownship = \"sihai\"\nname = \"四海镇派单员\"\nphone = \"13800000002\"\n\
         [[centre_duty]]\nname = \"中心值班\"\nphone = \"010-6918 1234\"\n\
         [webhook]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{FAST}",
        receiver.url
    ));
    // A household that is not vulnerable: its new order is nobody's notice; its breach is.
    let id = fault_order(&f.service, "yanqing-dongguan-0000", T0).await;
    f.clock.advance_to(T0 + 2 * 60 * MIN + MIN);
    let raised = f.service.check_sla().await.expect("check");
    assert_eq!(
        raised
            .iter()
            .map(|n| (n.stage.as_str(), n.kind))
            .collect::<Vec<_>>(),
        [("on_site", "escalated")]
    );

    let request = receiver.next().await;
    assert_eq!(request.status, 200);
    assert_eq!(request.header("content-type"), "application/json");
    assert_signed(&request);
    let notice = request.json();
    assert_eq!(notice["v"], 1);
    assert_eq!(notice["kind"], "escalated");
    assert_eq!(notice["order_id"], id);
    assert_eq!(notice["township"], "yanqing");
    assert_eq!(notice["village_id"], "yanqing-dongguan");
    assert!(
        notice["note"]
            .as_str()
            .is_some_and(|n| n.contains("on_site") || n.contains("on site")),
        "{notice}"
    );
    assert_eq!(
        request.header("x-heating-delivery"),
        notice["id"].as_str().unwrap_or("?")
    );
    let recipients: Vec<(String, String)> = notice["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap_or_default().to_owned(),
                r["phone"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        recipients,
        [
            ("township_officer".to_owned(), "13800000001".to_owned()),
            ("centre_duty".to_owned(), "01069181234".to_owned()),
        ],
        "the township's officer (not another township's) and the centre"
    );
    assert!(
        receiver.requests.try_recv().is_err(),
        "nothing else was sent"
    );
}

#[tokio::test]
async fn a_receiver_that_fails_twice_then_succeeds_gets_the_notice_once() {
    let mut receiver = Receiver::start(&[500, 503]).await;
    let f = fixture(&format!(
        "[[centre_duty]]\nname = \"中心值班\"\nphone = \"13800000009\"\n\
         [webhook]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{FAST}",
        receiver.url
    ));
    let first = fault_order(&f.service, "yanqing-dongguan-0000", T0).await;
    let second = fault_order(&f.service, "yanqing-xiguan-0010", T0).await;
    f.service
        .act(
            first,
            &operator(),
            OrderAction::Escalate {
                note: "resident called twice".into(),
            },
            None,
        )
        .await
        .expect("督办");
    let attempts = [
        receiver.next().await,
        receiver.next().await,
        receiver.next().await,
    ];
    assert_eq!(
        attempts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 503, 200]
    );
    for attempt in &attempts {
        assert_signed(attempt);
        assert_eq!(attempt.body, attempts[0].body, "the same notice each time");
        assert_eq!(
            attempt.header("x-heating-delivery"),
            attempts[0].header("x-heating-delivery")
        );
    }
    let notice = attempts[2].json();
    assert_eq!(
        (notice["kind"].as_str(), notice["order_id"].as_i64()),
        (Some("escalated"), Some(first))
    );
    assert!(notice["note"]
        .as_str()
        .is_some_and(|n| n.contains("resident called twice")));

    // A later notice comes after the first is settled (one queue, in order): if the first were
    // sent again, it would arrive before this one.
    f.clock.advance_to(T0 + MIN);
    f.service
        .act(
            second,
            &operator(),
            OrderAction::Escalate {
                note: "second".into(),
            },
            None,
        )
        .await
        .expect("督办");
    let next = receiver.next().await;
    assert_eq!(next.status, 200);
    assert_eq!(next.json()["order_id"], second);
    assert_eq!(f.metrics.notices_total("webhook", "retried"), 2);
    assert_eq!(
        f.metrics.notices_total("webhook", "delivered"),
        1,
        "the first, once"
    );
    assert_eq!(f.metrics.notices_total("webhook", "failed"), 0);
    let escalations = f
        .service
        .with_store(|s| s.orders(&OrderFilter::default()))
        .await
        .expect("orders");
    assert_eq!(escalations.len(), 2, "order processing went on meanwhile");
}

#[tokio::test]
async fn a_notice_the_receiver_refuses_for_good_is_given_up_without_retries() {
    let mut receiver = Receiver::start(&[401]).await;
    let f = fixture(&format!(
        "[webhook]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{FAST}",
        receiver.url
    ));
    let first = fault_order(&f.service, "yanqing-dongguan-0000", T0).await;
    for note in ["refused", "accepted"] {
        f.clock.advance_by(MIN);
        f.service
            .act(
                first,
                &operator(),
                OrderAction::Escalate { note: note.into() },
                None,
            )
            .await
            .expect("督办");
    }
    let refused = receiver.next().await;
    assert_eq!(refused.status, 401);
    assert!(refused.json()["note"]
        .as_str()
        .is_some_and(|n| n.contains("refused")));
    let accepted = receiver.next().await;
    assert!(
        accepted.json()["note"]
            .as_str()
            .is_some_and(|n| n.contains("accepted")),
        "the next notice, not the refused one again"
    );
    assert_eq!(f.metrics.notices_total("webhook", "failed"), 1);
    assert_eq!(f.metrics.notices_total("webhook", "retried"), 0);
}

/// Reads one SMS-shaped request: its phones and text.
fn sms(request: &Received) -> (Vec<String>, String) {
    let body = request.json();
    let phones = body["phones"]
        .as_array()
        .expect("phones")
        .iter()
        .map(|p| p.as_str().unwrap_or_default().to_owned())
        .collect();
    (phones, body["text"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn the_sms_gateway_gets_the_village_electrician_for_a_power_incident_and_the_caretaker_for_a_vulnerable_household(
) {
    let mut receiver = Receiver::start(&[]).await;
    let f = fixture(&format!(
        "[sms]\nurl = \"{}\"\nsecret = \"{SECRET}\"\n{FAST}",
        receiver.url
    ));
    let electricians = contact_phones(&f.data, "yanqing-dongguan", "electrician");
    assert!(
        !electricians.is_empty(),
        "the demo registry has an electrician in each village"
    );

    // 东关村 goes dark: one incident order for the power utility, and a text to its electrician.
    let incident = rules::IncidentTransition {
        incident_id: format!("village_power_outage:yanqing/yanqing-dongguan:{T0}"),
        fleet_rule_id: "village_power_outage".into(),
        group: rules::GroupKey {
            township: "yanqing".into(),
            village: Some("yanqing-dongguan".into()),
        },
        level: rules::GroupLevel::Village,
        kind: rules::TransitionKind::Firing,
        at_ms: T0,
        severity: rules::Severity::Critical,
        action: rules::Action::Order {
            category: "power_supply".into(),
            priority: rules::Priority::Urgent,
        },
        summary: "2 of 2 devices silent within 5m".into(),
        devices: vec![
            DeviceId::parse("yanqing-dongguan-0000").expect("id"),
            DeviceId::parse("yanqing-dongguan-0001").expect("id"),
        ],
        group_size: 2,
    };
    let opened = f
        .service
        .apply_incidents(vec![incident])
        .await
        .expect("incident");
    assert_eq!(opened.len(), 1);
    let request = receiver.next().await;
    assert_signed(&request);
    let (phones, text) = sms(&request);
    assert_eq!(
        phones, electricians,
        "the village electrician, nobody else configured"
    );
    assert!(text.starts_with("【供电故障】"), "{text}");
    assert!(text.contains(&format!("工单{}", opened[0])), "{text}");
    assert!(text.chars().count() <= 140, "{text}");

    // A fault at 西关村's vulnerable household: a text to the household's caretaker (the
    // village's, as the household names none), with the address to go to.
    let household = f
        .data
        .households
        .iter()
        .find(|h| h.village_id == "yanqing-xiguan" && h.vulnerable)
        .expect("a vulnerable household")
        .clone();
    let device = f
        .data
        .devices
        .iter()
        .find(|d| d.household_id == household.id)
        .expect("its device")
        .id
        .clone();
    let caretaker = contact_phones(&f.data, "yanqing-xiguan", "caretaker");
    let caretaker = caretaker.first().expect("the village's caretaker").clone();
    let order = fault_order(&f.service, &device, T0 + MIN).await;
    let request = receiver.next().await;
    let (phones, text) = sms(&request);
    assert_eq!(phones, [caretaker]);
    assert!(text.starts_with("【重点户报修】"), "{text}");
    assert!(text.contains(&format!("工单{order}")), "{text}");
    assert!(
        text.contains(
            household
                .address
                .chars()
                .take(6)
                .collect::<String>()
                .as_str()
        ),
        "{text} / {}",
        household.address
    );

    // A fault at a household that is not vulnerable texts nobody: the next text is the
    // vulnerable one's escalation.
    let plain = f
        .data
        .households
        .iter()
        .find(|h| h.village_id == "yanqing-xiguan" && !h.vulnerable)
        .expect("a household")
        .id
        .clone();
    let plain_device = f
        .data
        .devices
        .iter()
        .find(|d| d.household_id == plain)
        .expect("its device")
        .id
        .clone();
    fault_order(&f.service, &plain_device, T0 + 2 * MIN).await;
    f.service
        .act(
            order,
            &operator(),
            OrderAction::Escalate {
                note: "no answer at the door".into(),
            },
            None,
        )
        .await
        .expect("督办");
    let (phones, text) = sms(&receiver.next().await);
    assert_eq!(phones, [caretaker_of(&f, &household.village_id)]);
    assert!(text.starts_with("【督办】"), "{text}");
}

fn caretaker_of(f: &Fixture, village: &str) -> String {
    contact_phones(&f.data, village, "caretaker")
        .first()
        .cloned()
        .unwrap_or_default()
}
