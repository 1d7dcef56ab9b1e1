//! The order steps' one table, tried over HTTP with every role's token: each step route the
//! OpenAPI document offers is in the table, each role is refused (403 naming what it may not do)
//! exactly the steps the table does not give it, and `whoami` lists the same steps.

use std::collections::{BTreeMap, BTreeSet};

mod support;

use gateway::orders::store::Store;
use serde_json::{json, Value};
use support::{OPERATOR, SIHAI, TEAM_AURORA, VIEWER};

const T0: i64 = 1_796_083_200_000;

/// The policy, written out: each step and the roles that may take it.
const POLICY: &[(&str, &[&str])] = &[
    ("dispatch", &["operator", "township"]),
    ("reassign", &["operator", "township"]),
    ("accept", &["operator", "team"]),
    ("arrive", &["operator", "team"]),
    ("resolve", &["operator", "team"]),
    ("confirm_misuse", &["operator"]),
    ("callback", &["operator", "township"]),
    ("close", &["operator", "township"]),
    ("cancel", &["operator", "township"]),
    ("merge", &["operator"]),
    ("escalate", &["operator", "township", "read_only"]),
    ("delegate", &["operator", "team"]),
];

/// A body each step accepts, so that what decides the answer is the role.
fn body(step: &str) -> Value {
    match step {
        "reassign" | "delegate" => json!({"team_id": "third-party-yanqing", "reason": "r"}),
        "callback" => json!({"satisfaction": 5, "solved": true}),
        "cancel" => json!({"reason": "r"}),
        "merge" => json!({"into": 1}),
        _ => json!({}),
    }
}

#[tokio::test]
async fn every_step_is_in_the_table_and_each_role_is_refused_exactly_the_others() {
    let mut store = Store::in_memory().expect("store");
    let fleet = support::aurora_heat_pumps(
        &[("yanqing", "延庆镇", "yanqing-dongguan", "东关村")],
        2,
        |_| false,
    );
    store
        .import_registry(&gateway::registry::demo::generate(&fleet, 7))
        .expect("registry");
    let api = support::api(store, T0).await;

    // The step routes the OpenAPI document offers.
    let (status, openapi) = api.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    let offered: BTreeSet<String> = openapi["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(_, item)| item.get("post").is_some())
        .filter_map(|(path, _)| path.strip_prefix("/api/v1/orders/{id}/"))
        .map(str::to_owned)
        .collect();
    let policy: BTreeMap<&str, &[&str]> = POLICY.iter().copied().collect();
    assert_eq!(
        offered,
        policy
            .keys()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>()
    );

    for (token, role) in [
        (OPERATOR, "operator"),
        (SIHAI, "township"),
        (TEAM_AURORA, "team"),
        (VIEWER, "read_only"),
    ] {
        let (status, me) = api.call("GET", "/api/v1/whoami", Some(token), None).await;
        assert_eq!((status, me["role"].as_str()), (200, Some(role)), "{me}");
        let listed: BTreeSet<&str> = me["steps"]
            .as_array()
            .expect("steps")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut taken = BTreeSet::new();
        for (step, roles) in POLICY {
            // An order that does not exist: a role that may take the step gets as far as the
            // order service (404); one that may not is refused first.
            let (status, answer) = api
                .call(
                    "POST",
                    &format!("/api/v1/orders/999999/{step}"),
                    Some(token),
                    Some(body(step)),
                )
                .await;
            if roles.contains(&role) {
                assert_eq!(status, 404, "{role} {step}: {answer}");
                taken.insert(*step);
            } else {
                assert_eq!(status, 403, "{role} {step}: {answer}");
                let error = answer["error"].as_str().unwrap_or_default();
                assert!(error.contains("may not"), "{role} {step}: {answer}");
            }
        }
        assert_eq!(listed, taken, "whoami of {role}");
    }
}
