//! Households with people over HTTP: who sees a resident's name and numbers on an order and
//! who sees them masked, the household search (scope by role, ranking, `老王, 西关村`), the
//! registry import with contacts and its errors by file:line:column, and the export.

mod support;

use gateway::orders::store::Store;
use gateway::registry::demo::generate;
use gateway::registry::RegistryData;
use serde_json::{json, Value};
use support::{OPERATOR, SIHAI, TEAM_AURORA, TEAM_THIRD, VIEWER, YANQING};

/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;

/// Three households in each of 东关村 and 西关村 (延庆镇) and 四海村 (四海镇).
fn registry() -> RegistryData {
    let fleet = support::aurora_heat_pumps(
        &[
            ("yanqing", "延庆镇", "dongguan", "东关村"),
            ("yanqing", "延庆镇", "xiguan", "西关村"),
            ("sihai", "四海镇", "sihai", "四海村"),
        ],
        3,
        |n| n == 1,
    );
    let mut data = generate(&fleet, 3);
    // Known names for the search: two Wangs in 西关村, one in 东关村, a Li in 西关村.
    for (id, name) in [
        ("hh-yanqing-xiguan-0000", "王秀英"),
        ("hh-yanqing-xiguan-0001", "王建国"),
        ("hh-yanqing-xiguan-0002", "李桂英"),
        ("hh-yanqing-dongguan-0000", "王德胜"),
        ("hh-yanqing-dongguan-0001", "张淑珍"),
        ("hh-yanqing-dongguan-0002", "刘长青"),
        ("hh-sihai-sihai-0000", "王金凤"),
        ("hh-sihai-sihai-0001", "赵宝山"),
        ("hh-sihai-sihai-0002", "孙红梅"),
    ] {
        let household = data
            .households
            .iter_mut()
            .find(|h| h.id == id)
            .expect("household");
        household.resident = name.into();
    }
    for device in &mut data.devices {
        device.installed_on = "2024-10-01".into();
        device.warranty_until = "2029-09-30".into();
    }
    data
}

/// The order API with a token for each role ([`support::api`]) and the registry it serves.
struct Api {
    http: support::Api,
    data: RegistryData,
}

async fn api() -> Api {
    let data = registry();
    let mut store = Store::in_memory().expect("store");
    store.import_registry(&data).expect("import");
    Api {
        http: support::api(store, T0).await,
        data,
    }
}

impl Api {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.http.call(method, path, Some(token), body).await
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call("GET", path, token, None).await
    }

    /// A complaint about `device` opens an order (routed at once); its id.
    async fn order_for(&self, device: &str) -> i64 {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/complaints",
                OPERATOR,
                Some(json!({"channel": "hotline_12345", "device_id": device, "text": "家里不热"})),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["order_id"].as_i64().expect("order id")
    }

    fn household(&self, id: &str) -> &gateway::registry::Household {
        self.data
            .households
            .iter()
            .find(|h| h.id == id)
            .expect("household")
    }
}

/// The household ids of a search answer, in order.
fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|h| h["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn search_path(q: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/api/v1/households").expect("url");
    url.query_pairs_mut().append_pair("q", q);
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

#[tokio::test]
async fn every_role_sees_the_people_of_an_order_in_full_or_masked_as_its_role_allows() {
    let api = api().await;
    let order = api.order_for("yanqing-dongguan-0000").await;
    let household = api.household("hh-yanqing-dongguan-0000");
    let phone = household.phones[0].clone();

    // The operator (dispatch, the callback post), the township officer of yanqing and the team
    // the order is routed to see the resident in full.
    for token in [OPERATOR, YANQING, TEAM_AURORA] {
        let (status, detail) = api.get(&format!("/api/v1/orders/{order}"), token).await;
        assert_eq!(status, 200, "{token}: {detail}");
        assert_eq!(detail["team_id"], "aurora-yanqing");
        let people = &detail["household"];
        assert_eq!(people["resident"], "王德胜", "{token}");
        assert_eq!(people["phones"][0], phone.as_str(), "{token}");
        assert_eq!(people["address"], household.address.as_str());
        assert_eq!(people["village_name"], "东关村");
        assert_eq!(people["masked"], false);
        assert!(people["caretaker"]["phone"]
            .as_str()
            .is_some_and(|p| !p.contains('*')));
    }
    // The read-only role sees the order with its people masked, by the server.
    let (status, detail) = api.get(&format!("/api/v1/orders/{order}"), VIEWER).await;
    assert_eq!(status, 200);
    let people = &detail["household"];
    assert_eq!(people["masked"], true);
    assert_eq!(people["resident"], "王*");
    assert_eq!(
        people["phones"][0].as_str(),
        Some(format!("{}****{}", &phone[..3], &phone[7..]).as_str())
    );
    assert!(!detail.to_string().contains(&phone), "{detail}");
    assert!(!detail.to_string().contains("王德胜"));
    assert!(people["caretaker"]["name"]
        .as_str()
        .is_some_and(|n| n.ends_with('*')));
    // Another team and another township do not see the order at all.
    for token in [TEAM_THIRD, SIHAI] {
        assert_eq!(
            api.get(&format!("/api/v1/orders/{order}"), token).await.0,
            404,
            "{token}"
        );
    }
}

#[tokio::test]
async fn the_household_search_is_scoped_and_masked_by_role() {
    let api = api().await;
    // 老王 in 西关村: the two Wangs of that village, not the Wang of 东关村 or of 四海村.
    let (status, page) = api.get(&search_path("老王, 西关村"), OPERATOR).await;
    assert_eq!(status, 200, "{page}");
    let mut found = ids(&page);
    found.sort();
    assert_eq!(found, ["hh-yanqing-xiguan-0000", "hh-yanqing-xiguan-0001"]);
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["resident"], "王秀英");

    // A township officer: only its own township, in full; another township's is refused.
    let (status, page) = api.get(&search_path("老王"), SIHAI).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&page), ["hh-sihai-sihai-0000"]);
    assert_eq!(page["items"][0]["resident"], "王金凤");
    assert_eq!(
        api.get("/api/v1/households?township=yanqing", SIHAI)
            .await
            .0,
        403
    );
    assert_eq!(
        api.get("/api/v1/households/hh-yanqing-xiguan-0000", SIHAI)
            .await
            .0,
        403
    );
    let (status, one) = api
        .get("/api/v1/households/hh-sihai-sihai-0001", SIHAI)
        .await;
    assert_eq!((status, one["resident"].as_str()), (200, Some("赵宝山")));

    // Teams look no households up (they see the people on their own orders).
    assert_eq!(api.get(&search_path("老王"), TEAM_AURORA).await.0, 403);
    assert_eq!(
        api.get("/api/v1/households/hh-yanqing-xiguan-0000", TEAM_AURORA)
            .await
            .0,
        403
    );

    // The read-only role: every township, masked, and no lookup by number.
    let (status, page) = api.get(&search_path("老王"), VIEWER).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 4);
    for item in page["items"].as_array().expect("items") {
        assert_eq!(item["resident"], "王*");
        assert_eq!(item["masked"], true);
        assert!(item["phones"][0]
            .as_str()
            .is_some_and(|p| p.contains("****")));
    }
    let phone = api.household("hh-yanqing-xiguan-0002").phones[0].clone();
    assert_eq!(api.get(&search_path(&phone), VIEWER).await.1["total"], 0);

    // Ranking: the exact number first; its last four digits find it as well.
    let (_, page) = api.get(&search_path(&phone), OPERATOR).await;
    assert_eq!(ids(&page)[0], "hh-yanqing-xiguan-0002");
    let (_, page) = api.get(&search_path(&phone[7..]), OPERATOR).await;
    assert!(ids(&page).contains(&"hh-yanqing-xiguan-0002".to_owned()));
    // A device id finds its household first.
    let (_, page) = api.get(&search_path("sihai-sihai-0002"), OPERATOR).await;
    assert_eq!(ids(&page)[0], "hh-sihai-sihai-0002");
    // An address and a village.
    let address = api.household("hh-sihai-sihai-0001").address.clone();
    let (_, page) = api.get(&search_path(&address), OPERATOR).await;
    assert!(ids(&page).contains(&"hh-sihai-sihai-0001".to_owned()));

    // Pages are bounded; bad queries are 400 with a message.
    let (status, page) = api.get("/api/v1/households?limit=5000", OPERATOR).await;
    assert_eq!((status, page["limit"].as_u64()), (200, Some(100)));
    assert_eq!(page["total"], 9);
    let (status, page) = api
        .get("/api/v1/households?limit=2&offset=8", OPERATOR)
        .await;
    assert_eq!((status, ids(&page).len()), (200, 1));
    for bad in [
        "/api/v1/households?offset=1000000".to_owned(),
        "/api/v1/households?colour=red".to_owned(),
        search_path(&"王".repeat(201)),
    ] {
        let (status, body) = api.get(&bad, OPERATOR).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
    assert_eq!(api.get("/api/v1/households/nobody", OPERATOR).await.0, 404);
}

#[tokio::test]
async fn an_import_with_contacts_is_checked_by_line_and_column_and_the_export_reads_back() {
    let api = api().await;
    let before = api
        .get("/api/v1/households/hh-yanqing-xiguan-0000", OPERATOR)
        .await
        .1;
    let header = "id,village_id,address,resident,phone,vulnerable,caretaker_id\n";
    // A bad number on line 3, column 5: refused, and nothing of the batch is stored.
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/registry/import",
            OPERATOR,
            Some(json!({"files": {"households.csv": format!(
                "{header}hh-yanqing-xiguan-0000,yanqing-xiguan,西关村 9 组 9 号,王秀英,13800138000,true,\n\
                 hh-new,yanqing-xiguan,西关村 1 组 1 号,新住户,138-0013,false,\n"
            )}})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        "households.csv:3:5: phone: \"138-0013\" is not a mobile (11 digits from 1) or landline number (0 + area code, or 7-8 digits)"
    );
    // A caretaker that is not one, on line 2, column 7.
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/registry/import",
            OPERATOR,
            Some(json!({"files": {"households.csv": format!(
                "{header}hh-new,yanqing-xiguan,西关村 1 组 1 号,新住户,13800138000,false,yanqing-xiguan-electrician\n"
            )}})),
        )
        .await;
    assert_eq!(status, 400);
    assert!(body["error"]
        .as_str()
        .is_some_and(|e| e.starts_with("households.csv:2:7: caretaker_id: unknown caretaker")));
    assert_eq!(
        api.get("/api/v1/households/hh-yanqing-xiguan-0000", OPERATOR)
            .await
            .1,
        before
    );
    assert_eq!(api.get("/api/v1/households/hh-new", OPERATOR).await.0, 404);

    // A good import: two numbers, the household's own caretaker from the same batch.
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/registry/import",
            OPERATOR,
            Some(json!({"files": {
                "households.csv": format!(
                    "{header}hh-new,yanqing-xiguan,西关村 1 组 1 号,新住户,\"+86 138 0013 8000; 010-6918-1234\",true,xiguan-second-caretaker\n"
                ),
                "contacts.csv": "id,village_id,role,name,phone\nxiguan-second-caretaker,yanqing-xiguan,caretaker,周立新,10080999999\n",
            }})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, household) = api.get("/api/v1/households/hh-new", OPERATOR).await;
    assert_eq!(status, 200);
    assert_eq!(household["phones"], json!(["13800138000", "01069181234"]));
    assert_eq!(household["caretaker"]["name"], "周立新");
    assert_eq!(household["vulnerable"], true);

    // The export is for operators only and imports back to the same registry.
    for token in [VIEWER, YANQING, TEAM_AURORA] {
        assert_eq!(api.get("/api/v1/registry/export", token).await.0, 403);
    }
    let (status, export) = api.get("/api/v1/registry/export", OPERATOR).await;
    assert_eq!(status, 200);
    let households_csv = export["files"]["households.csv"].as_str().expect("csv");
    assert!(households_csv.starts_with(
        "id,village_id,address,resident,phone,vulnerable,edge_box,caretaker_id,site_type\n"
    ));
    assert!(households_csv.contains("13800138000;01069181234"));
    let (status, body) = api
        .call(
            "POST",
            "/api/v1/registry/import",
            OPERATOR,
            Some(export.clone()),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["households"], 10);
    assert_eq!(api.get("/api/v1/registry/export", OPERATOR).await.1, export);
}

#[tokio::test]
async fn the_openapi_document_lists_the_household_routes() {
    let api = api().await;
    let (status, doc) = api.get("/api/v1/openapi.json", OPERATOR).await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/households",
        "/api/v1/households/{id}",
        "/api/v1/registry/export",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing");
    }
    assert!(doc["components"]["schemas"]["HouseholdView"].is_object());
}
