//! Tests of the store: idempotent alerts and orders, links, events, reopening, kv.

use super::*;

fn alert(episode: &str) -> AlertRow {
    AlertRow {
        episode_id: episode.into(),
        device_id: "yanqing-dongguan-0001".into(),
        township: "yanqing".into(),
        rule_id: "device_fault".into(),
        severity: "major".into(),
        summary: "fault 1 (water_flow)".into(),
        fired_at_ms: 1_000,
        resolved_at_ms: None,
    }
}

fn order(episode: &str) -> NewOrder {
    NewOrder {
        episode_id: Some(episode.into()),
        device_id: "yanqing-dongguan-0001".into(),
        township: "yanqing".into(),
        category: "repair".into(),
        priority: "high".into(),
        source: "rule".into(),
        summary: "fault 1 (water_flow)".into(),
        created_at_ms: 1_000,
        actor: "rules".into(),
        pre_emptive: true,
        ..NewOrder::default()
    }
}

#[test]
fn one_order_per_episode() {
    let mut store = Store::in_memory().expect("store");
    assert!(store.alert_fired(&alert("e1")).expect("insert"));
    assert!(!store.alert_fired(&alert("e1")).expect("insert again"));
    let first = store.create_order(&order("e1")).expect("create");
    assert!(first.is_some());
    assert_eq!(
        store.create_order(&order("e1")).expect("create again"),
        None
    );
    let orders = store.orders(&OrderFilter::default()).expect("list");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].state, OrderState::Created);
    assert!(orders[0].pre_emptive);
}

#[test]
fn a_linked_episode_counts_as_having_its_order() {
    let mut store = Store::in_memory().expect("store");
    store.alert_fired(&alert("e1")).expect("insert");
    let id = store
        .create_order(&order("e1"))
        .expect("create")
        .expect("new");
    store.alert_fired(&alert("e2")).expect("insert");
    assert!(store.link_episode("e2", id, 2_000, "cold").expect("link"));
    assert!(!store
        .link_episode("e2", id, 2_000, "cold")
        .expect("link twice"));
    assert!(store.episode_has_order("e2").expect("query"));
    assert!(store.alert_resolved("e2", 3_000).expect("resolve"));
    let (_, events) = store.order(id).expect("read").expect("exists");
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "alert_linked", "alert_cleared"]);
}

#[test]
fn resolving_an_alert_notes_it_on_the_order() {
    let mut store = Store::in_memory().expect("store");
    store.alert_fired(&alert("e1")).expect("insert");
    let id = store
        .create_order(&order("e1"))
        .expect("create")
        .expect("new");
    assert!(store.alert_resolved("e1", 2_000).expect("resolve"));
    assert!(!store.alert_resolved("e1", 3_000).expect("resolve twice"));
    let (row, events) = store.order(id).expect("read").expect("exists");
    assert_eq!(row.state, OrderState::Created);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "alert_cleared"]);
    assert!(store.alerts(true, 10).expect("active").is_empty());
    assert_eq!(
        store.alerts(false, 10).expect("all")[0].resolved_at_ms,
        Some(2_000)
    );
}

#[test]
fn data_survives_reopening() {
    let dir = std::env::temp_dir().join(format!("gateway-store-{}", std::process::id()));
    let path = dir.join("orders.sqlite");
    let _ = std::fs::remove_file(&path);
    {
        let mut store = Store::open(&path).expect("open");
        store.alert_fired(&alert("e1")).expect("insert");
        let id = store
            .create_order(&order("e1"))
            .expect("create")
            .expect("new");
        store
            .append_event(
                id,
                2_000,
                "op",
                "dispatched",
                "",
                &OrderUpdate {
                    state: Some(OrderState::Dispatched),
                    team_id: Some("t1".into()),
                    dispatched_at_ms: Some(2_000),
                    ..OrderUpdate::default()
                },
            )
            .expect("event");
        store.put("snapshot", "{}").expect("put");
    }
    let store = Store::open(&path).expect("reopen");
    let orders = store.orders(&OrderFilter::default()).expect("list");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].state, OrderState::Dispatched);
    assert_eq!(orders[0].team_id.as_deref(), Some("t1"));
    assert_eq!(
        store
            .order(orders[0].id)
            .expect("read")
            .expect("exists")
            .1
            .len(),
        2
    );
    assert_eq!(store.get("snapshot").expect("get").as_deref(), Some("{}"));
}

#[test]
fn the_last_event_time_is_the_latest_by_time_not_by_insertion() {
    let mut store = Store::in_memory().expect("store");
    assert_eq!(store.last_event_ms(1).expect("query"), None);
    store.alert_fired(&alert("e1")).expect("insert");
    let id = store
        .create_order(&order("e1"))
        .expect("create")
        .expect("new");
    assert_eq!(store.last_event_ms(id).expect("query"), Some(1_000));
    for at_ms in [3_000, 2_000] {
        store
            .append_event(id, at_ms, "op", "note", "", &OrderUpdate::default())
            .expect("event");
    }
    assert_eq!(store.last_event_ms(id).expect("query"), Some(3_000));
    assert_eq!(
        store.event_kinds(id).expect("kinds"),
        ["created", "note", "note"]
    );
    assert_eq!(store.township_of_household("nobody").expect("query"), None);
}

#[test]
fn kv_entries_are_found_and_deleted_by_key() {
    let mut store = Store::in_memory().expect("store");
    store.put("a", "1").expect("put");
    store.put("b", "2").expect("put");
    assert!(store.contains("a").expect("contains"));
    assert!(!store.contains("c").expect("contains"));
    assert!(store.delete("a").expect("delete"));
    assert!(!store.delete("a").expect("delete again"));
    assert!(!store.contains("a").expect("contains"));
    assert_eq!(store.get("b").expect("get").as_deref(), Some("2"));
}
