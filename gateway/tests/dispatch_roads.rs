//! Dispatch that knows the roads (issue 21, item 5), through the registry import and the HTTP
//! API: the technician chosen by skill, predicted arrival (queue + travel from their base) and
//! the parts on their van; an order nobody can reach in time escalated at dispatch; a snow day
//! slowing travel and flipping the choice; a technician's day as a route; an old registry
//! without skills or travel times dispatching as before; the road conditions kept across a
//! reopened store.

use std::collections::{BTreeMap, HashMap};

mod support;

use gateway::orders::store::Store;
use rules::{Engine, RuleSet, Transition};
use serde_json::{json, Value};
use support::{Api, OPERATOR, TEAM_AURORA};
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

const T0: i64 = 1_796_083_200_000;
const MIN: i64 = 60_000;

/// Two townships; the team of 一镇 (t1) has technicians based in either.
const TOWNSHIPS: &str = "id,name\nt1,一镇\nt2,二镇\n";
const VILLAGES: &str = "id,township_id,name\n\
    t1-home,t1,家村\nt1-a,t1,甲村\nt1-b,t1,乙村\nt1-m,t1,山村\nt2-home,t2,二家村\n";
const VENDORS: &str = "id,name\naurora,Aurora\n";
const HOUSEHOLDS: &str = "id,village_id,address,resident,phone,vulnerable\n\
    h-a,t1-a,甲村1号,张三,13800138000,false\n\
    h-b,t1-b,乙村1号,李四,13800138001,false\n\
    h-m,t1-m,山村1号,王五,13800138002,false\n";
const DEVICES: &str = "id,household_id,kind,brand,model,vendor_id,installed_on\n\
    t1-a-hp,h-a,heat_pump,Aurora,X,aurora,2025-10-01\n\
    t1-a-gb,h-a,gas_boiler,Aurora,X,aurora,2025-10-01\n\
    t1-b-hp,h-b,heat_pump,Aurora,X,aurora,2025-10-01\n\
    t1-m-hp,h-m,heat_pump,Aurora,X,aurora,2025-10-01\n";
const TEAMS: &str = "id,name,kind,vendor_id,phone,townships\n\
    aurora-t1,Aurora 一镇,vendor,aurora,010-1,t1\n";

/// The registry files with `technicians` (rows after the header `id,team_id,name,phone,
/// home_village_id[,skills]`) and, if given, `travel.csv`'s rows.
fn files(technicians: &str, travel: Option<&str>) -> HashMap<String, String> {
    let mut files: HashMap<String, String> = [
        ("townships.csv", TOWNSHIPS),
        ("villages.csv", VILLAGES),
        ("vendors.csv", VENDORS),
        ("households.csv", HOUSEHOLDS),
        ("devices.csv", DEVICES),
        ("teams.csv", TEAMS),
        (
            "parts.csv",
            "code,name,price_cny\nntc-sensor,NTC 传感器,30\n",
        ),
    ]
    .into_iter()
    .map(|(name, text)| (name.to_owned(), text.to_owned()))
    .collect();
    files.insert("technicians.csv".into(), technicians.to_owned());
    if let Some(rows) = travel {
        files.insert(
            "travel.csv".into(),
            format!("township_id,village_id,minutes,mountain\n{rows}"),
        );
    }
    files
}

fn store_at(path: &std::path::Path, files: &HashMap<String, String>) -> Store {
    let mut store = Store::open(path).expect("store");
    let data = gateway::registry::parse(files, &store.known_ids().expect("ids")).expect("parses");
    store.import_registry(&data).expect("import");
    store
}

async fn api_for(name: &str, files: &HashMap<String, String>) -> Api {
    let path = support::scratch(name).join("orders.sqlite");
    support::api(store_at(&path, files), T0).await
}

fn reading(device: &str, kind: DeviceKind, category: FaultCategory) -> Telemetry {
    Telemetry {
        v: 1,
        device_id: DeviceId::parse(device).expect("id"),
        ts_ms: T0,
        seq: 1,
        profile: "aurora-ashp".into(),
        kind,
        values: wire::Values::from([("indoor_temp_c", 19.0)]),
        fault: Some(Fault {
            code: 1,
            category,
            text: "test fault".into(),
        }),
        extra: BTreeMap::new(),
    }
}

/// Opens (and dispatches automatically) the order of a coded fault on `device`.
async fn fault_order(api: &Api, device: &str, category: FaultCategory) -> i64 {
    let kind = if device.ends_with("-gb") {
        DeviceKind::GasBoiler
    } else {
        DeviceKind::HeatPump
    };
    let mut engine = Engine::new(RuleSet::parse(rules::DEFAULT_RULES, "default").expect("rules"));
    let transitions: Vec<(Transition, String)> = engine
        .ingest(&reading(device, kind, category))
        .into_iter()
        .map(|t| (t, "t1".to_owned()))
        .collect();
    api.service.apply(transitions).await.expect("apply")[0]
}

async fn ok(api: &Api, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let (status, answer) = api.call(method, path, Some(token), body).await;
    assert_eq!(status, 200, "{method} {path}: {answer}");
    answer
}

async fn order(api: &Api, id: i64) -> Value {
    ok(api, "GET", &format!("/api/v1/orders/{id}"), OPERATOR, None).await
}

/// The note of the order's event of `kind`, if there is one.
fn note_of(order: &Value, kind: &str) -> Option<String> {
    order["events"].as_array().and_then(|events| {
        events
            .iter()
            .find(|e| e["kind"] == kind)
            .map(|e| e["note"].as_str().unwrap_or_default().to_owned())
    })
}

const TECH_HEADER: &str = "id,team_id,name,phone,home_village_id,skills\n";

/// One choice: the team's technicians, the travel times, the order's device and fault, the
/// van stock given before, whether it snows, and who should go (with a phrase of the note).
struct Case {
    what: &'static str,
    technicians: &'static str,
    travel: &'static str,
    device: &'static str,
    fault: FaultCategory,
    van: Option<(&'static str, &'static str)>,
    snow: bool,
    chosen: &'static str,
    note_says: &'static str,
}

#[tokio::test]
async fn the_technician_who_can_be_there_soonest_with_the_skill_and_parts_goes() {
    let cases = [
        Case {
            what: "reachable beats far (the far one first by id)",
            technicians: "a-far,aurora-t1,A,1,t2-home,\nz-near,aurora-t1,Z,2,t1-home,\n",
            travel: "t1,t1-a,20,false\nt2,t1-a,90,false\n",
            device: "t1-a-hp",
            fault: FaultCategory::SensorFault,
            van: None,
            snow: false,
            chosen: "z-near",
            note_says:
                "technician z-near predicted on site in 20 min (queue 0 x 60 min + 20 min travel)",
        },
        Case {
            what: "the skilled one, though farther",
            technicians:
                "a-boiler,aurora-t1,A,1,t1-home,boiler gas\nz-hp,aurora-t1,Z,2,t2-home,heat_pump\n",
            travel: "t1,t1-a,20,false\nt2,t1-a,90,false\n",
            device: "t1-a-hp",
            fault: FaultCategory::SensorFault,
            van: None,
            snow: false,
            chosen: "z-hp",
            note_says: "skill heat_pump: 1 of 2",
        },
        Case {
            what: "a gas-side problem needs the gas certification",
            technicians:
                "a-boiler,aurora-t1,A,1,t1-home,boiler\nz-gas,aurora-t1,Z,2,t2-home,boiler gas\n",
            travel: "t1,t1-a,20,false\nt2,t1-a,90,false\n",
            device: "t1-a-gb",
            fault: FaultCategory::IgnitionFailure,
            van: None,
            snow: false,
            chosen: "z-gas",
            note_says: "skill boiler + gas: 1 of 2",
        },
        Case {
            what: "nobody skilled: everybody, nearest first, and the note says so",
            technicians:
                "a-far,aurora-t1,A,1,t2-home,heat_pump\nz-near,aurora-t1,Z,2,t1-home,heat_pump\n",
            travel: "t1,t1-a,20,false\nt2,t1-a,90,false\n",
            device: "t1-a-gb",
            fault: FaultCategory::FanFlue,
            van: None,
            snow: false,
            chosen: "z-near",
            note_says: "nobody in the team has the skill boiler: any technician",
        },
        Case {
            what: "a tie: the parts on the van decide",
            technicians: "a-empty,aurora-t1,A,1,t1-home,\nz-stocked,aurora-t1,Z,2,t1-home,\n",
            travel: "t1,t1-a,20,false\n",
            device: "t1-a-hp",
            fault: FaultCategory::SensorFault,
            van: Some(("van:z-stocked", "ntc-sensor")),
            snow: false,
            chosen: "z-stocked",
            note_says: "parts on the van: ntc-sensor x1",
        },
        Case {
            what: "a tie without stock: the id",
            technicians: "a-empty,aurora-t1,A,1,t1-home,\nz-stocked,aurora-t1,Z,2,t1-home,\n",
            travel: "t1,t1-a,20,false\n",
            device: "t1-a-hp",
            fault: FaultCategory::SensorFault,
            van: None,
            snow: false,
            chosen: "a-empty",
            note_says: "parts not all on the van: ntc-sensor x1",
        },
        Case {
            what: "a normal day: the mountain road is shorter",
            technicians: "a-mtn,aurora-t1,A,1,t1-home,\nb-road,aurora-t1,B,2,t2-home,\n",
            travel: "t1,t1-m,50,true\nt2,t1-m,60,false\n",
            device: "t1-m-hp",
            fault: FaultCategory::SensorFault,
            van: None,
            snow: false,
            chosen: "a-mtn",
            note_says: "50 min travel on a mountain road",
        },
        Case {
            what: "snow: the mountain road doubles, the ordinary one x1.5, and the choice flips",
            technicians: "a-mtn,aurora-t1,A,1,t1-home,\nb-road,aurora-t1,B,2,t2-home,\n",
            travel: "t1,t1-m,50,true\nt2,t1-m,60,false\n",
            device: "t1-m-hp",
            fault: FaultCategory::SensorFault,
            van: None,
            snow: true,
            chosen: "b-road",
            note_says: "predicted on site in 90 min (queue 0 x 60 min + 90 min travel in snow)",
        },
    ];
    for (n, case) in cases.iter().enumerate() {
        let technicians = format!("{TECH_HEADER}{}", case.technicians);
        let api = api_for(
            &format!("roads-choice-{n}"),
            &files(&technicians, Some(case.travel)),
        )
        .await;
        if let Some((location, part)) = case.van {
            ok(
                &api,
                "POST",
                "/api/v1/stock/receipts",
                OPERATOR,
                Some(json!({"location": location, "part_code": part, "quantity": 2})),
            )
            .await;
        }
        if case.snow {
            ok(
                &api,
                "POST",
                "/api/v1/dispatch/conditions",
                OPERATOR,
                Some(json!({"snow": true})),
            )
            .await;
        }
        let id = fault_order(&api, case.device, case.fault).await;
        let detail = order(&api, id).await;
        assert_eq!(
            detail["technician_id"], case.chosen,
            "{}: {detail}",
            case.what
        );
        let note = note_of(&detail, "dispatched").unwrap_or_default();
        assert!(note.contains(case.note_says), "{}: {note}", case.what);
        assert!(note_of(&detail, "escalated").is_none(), "{}", case.what);
    }
}

#[tokio::test]
async fn an_order_nobody_can_reach_in_time_is_escalated_at_dispatch_not_at_the_breach() {
    let technicians = format!("{TECH_HEADER}solo,aurora-t1,S,1,t1-home,heat_pump\n");
    let api = api_for(
        "roads-late",
        &files(&technicians, Some("t1,t1-a,150,true\n")),
    )
    .await;
    let id = fault_order(&api, "t1-a-hp", FaultCategory::SensorFault).await;
    let detail = order(&api, id).await;
    assert_eq!(detail["state"], "dispatched", "{detail}");
    let note = note_of(&detail, "escalated").expect("escalated at dispatch");
    // 08:00 CST at T0: on site predicted at 10:30, the 2 h deadline 10:00.
    assert!(
        note.contains("predicted arrival 2026-12-01 10:30 (solo)")
            && note.contains("on_site deadline 2026-12-01 10:00"),
        "{note}"
    );
    let escalated_at = detail["events"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["kind"] == "escalated"))
        .map(|e| e["at_ms"].as_i64())
        .expect("event");
    assert_eq!(escalated_at, Some(T0));
    // At the breach the SLA monitor does not escalate it a second time.
    api.clock.advance_to(T0 + 130 * MIN);
    api.service.check_sla().await.expect("sla");
    let detail = order(&api, id).await;
    let escalations = detail["events"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["kind"] == "escalated").count());
    assert_eq!(escalations, Some(1), "{detail}");

    // An operator's dispatch to the same far technician escalates too.
    let technicians = format!("{TECH_HEADER}solo,aurora-t1,S,1,t1-home,heat_pump\n");
    let mut files = files(&technicians, Some("t1,t1-a,150,true\n"));
    // No automatic dispatch: the team has no technician while the order opens.
    files.insert("technicians.csv".into(), TECH_HEADER.to_owned());
    files.insert(
        "teams.csv".into(),
        "id,name,kind,vendor_id,phone,townships\n".into(),
    );
    let path = support::scratch("roads-late-manual").join("orders.sqlite");
    let mut store = store_at(&path, &files);
    let api_files = self::files(&technicians, Some("t1,t1-a,150,true\n"));
    let id = {
        let api = support::api(store, T0).await;
        let id = fault_order(&api, "t1-a-hp", FaultCategory::SensorFault).await;
        assert_eq!(order(&api, id).await["state"], "created");
        id
    };
    store = Store::open(&path).expect("reopened");
    let data =
        gateway::registry::parse(&api_files, &store.known_ids().expect("ids")).expect("parses");
    store.import_registry(&data).expect("import");
    let api = support::api(store, T0 + MIN).await;
    ok(
        &api,
        "POST",
        &format!("/api/v1/orders/{id}/dispatch"),
        OPERATOR,
        Some(json!({"team_id": "aurora-t1", "technician_id": "solo"})),
    )
    .await;
    let detail = order(&api, id).await;
    let note = note_of(&detail, "escalated").expect("escalated at an operator's dispatch");
    assert!(
        note.contains("predicted arrival 2026-12-01 10:31 (solo)"),
        "{note}"
    );
}

#[tokio::test]
async fn a_technicians_day_is_a_route_nearest_next_with_cumulative_arrivals() {
    let technicians = format!("{TECH_HEADER}solo,aurora-t1,S,1,t1-home,heat_pump\n");
    let path = support::scratch("roads-route").join("orders.sqlite");
    let store = store_at(
        &path,
        &files(
            &technicians,
            Some("t1,t1-a,40,false\nt1,t1-b,10,false\nt1,t1-m,25,true\n"),
        ),
    );
    let own = support::technician_token("solo", "solo-token-0123456789", "aurora-t1", "solo");
    let other = support::technician_token("x", "other-token-0123456789", "aurora-t1", "x");
    let api = support::api_with_tokens(store, T0, vec![own, other]).await;
    // Opened far first, near last.
    for device in ["t1-a-hp", "t1-m-hp", "t1-b-hp"] {
        let id = fault_order(&api, device, FaultCategory::SensorFault).await;
        assert_eq!(order(&api, id).await["technician_id"], "solo");
    }
    let route = ok(
        &api,
        "GET",
        "/api/v1/field/route?technician_id=solo",
        "solo-token-0123456789",
        None,
    )
    .await;
    let stops: Vec<(String, Option<i64>, Option<i64>)> = route["stops"]
        .as_array()
        .expect("stops")
        .iter()
        .map(|s| {
            (
                s["village_id"].as_str().unwrap_or_default().to_owned(),
                s["travel_minutes"].as_i64(),
                s["arrival_ms"].as_i64(),
            )
        })
        .collect();
    // From the base: 乙村 (10 min), then 山村 (25 - 10 = 15), then 甲村 (40 - 25 = 15), an hour
    // at each.
    assert_eq!(
        stops,
        [
            ("t1-b".to_owned(), Some(10), Some(T0 + 10 * MIN)),
            ("t1-m".to_owned(), Some(15), Some(T0 + 85 * MIN)),
            ("t1-a".to_owned(), Some(15), Some(T0 + 160 * MIN)),
        ]
    );
    // The same for an operator; another technician's token, another team and a township may not.
    let by_operator = ok(
        &api,
        "GET",
        "/api/v1/field/route?technician_id=solo",
        OPERATOR,
        None,
    )
    .await;
    assert_eq!(by_operator["stops"], route["stops"]);
    for (token, status) in [
        ("other-token-0123456789", 403),
        (TEAM_AURORA, 403),
        (support::YANQING, 403),
    ] {
        let (got, answer) = api
            .call(
                "GET",
                "/api/v1/field/route?technician_id=solo",
                Some(token),
                None,
            )
            .await;
        assert_eq!(got, status, "{token}: {answer}");
    }
    let (got, _) = api
        .call(
            "GET",
            "/api/v1/field/route?technician_id=nobody",
            Some(OPERATOR),
            None,
        )
        .await;
    assert_eq!(got, 404);
}

#[tokio::test]
async fn an_old_registry_without_skills_or_travel_imports_and_dispatches_as_before() {
    // No skills column, no travel.csv: fewest open orders, then the same village, then id.
    let technicians = "id,team_id,name,phone,home_village_id\n\
        a-other,aurora-t1,A,1,t1-home\nz-same,aurora-t1,Z,2,t1-a\n";
    let path = support::scratch("roads-old").join("orders.sqlite");
    let store = store_at(&path, &files(technicians, None));
    let exported = store.registry_data().expect("export");
    assert!(exported.roads.skills.is_empty() && exported.roads.travel.is_empty());
    let api = support::api(store, T0).await;
    let id = fault_order(&api, "t1-a-hp", FaultCategory::SensorFault).await;
    let detail = order(&api, id).await;
    assert_eq!(detail["technician_id"], "z-same");
    assert_eq!(
        note_of(&detail, "dispatched").as_deref(),
        Some("in warranty: vendor team Aurora 一镇 (aurora-t1), free of charge")
    );
    // The next goes to the one with fewer open orders, as before.
    let id = fault_order(&api, "t1-b-hp", FaultCategory::SensorFault).await;
    assert_eq!(order(&api, id).await["technician_id"], "a-other");
}

#[tokio::test]
async fn road_conditions_are_set_by_an_operator_and_survive_a_reopened_store() {
    let technicians = format!("{TECH_HEADER}solo,aurora-t1,S,1,t1-home,heat_pump\n");
    let path = support::scratch("roads-conditions").join("orders.sqlite");
    let registry = files(&technicians, Some("t1,t1-a,20,false\n"));
    {
        let api = support::api(store_at(&path, &registry), T0).await;
        let today = ok(
            &api,
            "GET",
            "/api/v1/dispatch/conditions",
            TEAM_AURORA,
            None,
        )
        .await;
        assert_eq!(today["snow"], false);
        let (status, _) = api
            .call(
                "POST",
                "/api/v1/dispatch/conditions",
                Some(TEAM_AURORA),
                Some(json!({"snow": true})),
            )
            .await;
        assert_eq!(status, 403);
        let (status, _) = api
            .call(
                "POST",
                "/api/v1/dispatch/conditions",
                Some(OPERATOR),
                Some(json!({"snow": "lots"})),
            )
            .await;
        assert_eq!(status, 400);
        let set = ok(
            &api,
            "POST",
            "/api/v1/dispatch/conditions",
            OPERATOR,
            Some(json!({"snow": true})),
        )
        .await;
        assert_eq!(
            (set["snow"].as_bool(), set["mountain_factor"].as_f64()),
            (Some(true), Some(2.0))
        );
    }
    let store = Store::open(&path).expect("reopened");
    assert!(store.snow().expect("conditions"));
    let api = support::api(store, T0).await;
    let today = ok(&api, "GET", "/api/v1/dispatch/conditions", OPERATOR, None).await;
    assert_eq!(
        (today["snow"].as_bool(), today["ordinary_factor"].as_f64()),
        (Some(true), Some(1.5))
    );
    // Snow on an ordinary road: 20 min x 1.5.
    let id = fault_order(&api, "t1-a-hp", FaultCategory::SensorFault).await;
    let note = note_of(&order(&api, id).await, "dispatched").unwrap_or_default();
    assert!(note.contains("30 min travel in snow"), "{note}");
}
