//! The rule snapshot file: a snapshot written and read back restores the same engine state, an
//! unreadable file is set aside and the rules start empty, the rule state moves from the store
//! entry of earlier versions to the file, a failed write leaves the previous snapshot, and a
//! save while the previous one is still running is skipped.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

mod support;

use gateway::ingest::snapshot::{self, SnapshotWriter, LEGACY_STORE_KEY};
use gateway::metrics::Metrics;
use gateway::orders::clock::SharedClock;
use gateway::orders::sla::SlaConfig;
use gateway::orders::store::Store;
use gateway::orders::OrderService;
use rules::{AlertState, Engine, RuleSet, Snapshot};
use serde::ser::{Error as _, SerializeStruct as _};
use wire::{DeviceId, DeviceKind, Fault, FaultCategory, Telemetry};

const MIN: i64 = 60_000;
/// 2026-12-01T00:00:00Z.
const T0: i64 = 1_796_083_200_000;
const FAULTY: &str = "yanqing-dongguan-0001";
const COLD: &str = "yanqing-dongguan-0002";

fn default_rules() -> RuleSet {
    RuleSet::parse(rules::DEFAULT_RULES, "default").expect("rules")
}

fn reading(device: &str, ts_ms: i64, seq: u64, indoor: f64, fault: bool) -> Telemetry {
    Telemetry {
        v: 1,
        device_id: DeviceId::parse(device).expect("id"),
        ts_ms,
        seq,
        profile: "aurora-ashp".into(),
        kind: DeviceKind::HeatPump,
        values: wire::Values::from([
            (wire::values::INDOOR_TEMP_C, indoor),
            (wire::values::SETPOINT_C, 20.0),
        ]),
        fault: fault.then(|| Fault {
            code: 1,
            category: FaultCategory::SensorFault,
            text: "test fault".into(),
        }),
        extra: BTreeMap::new(),
    }
}

/// An engine with state worth keeping: an active fault alert on one device and a pending
/// cold-room timer on another.
fn busy_engine() -> Engine {
    let mut engine = Engine::new(default_rules());
    let fired = engine.process(&reading(FAULTY, T0, 1, 19.0, true));
    assert_eq!(fired.transitions.len(), 1, "{fired:?}");
    engine.process(&reading(COLD, T0, 1, 12.0, false));
    engine.advance_watermark(T0 + MIN);
    let state = engine.snapshot();
    assert!(
        matches!(
            alert(&state, FAULTY, "device_fault"),
            Some(AlertState::Firing { .. })
        ),
        "{state:?}"
    );
    assert!(
        matches!(
            alert(&state, COLD, "indoor_cold"),
            Some(AlertState::Pending { .. })
        ),
        "{state:?}"
    );
    engine
}

fn alert(snapshot: &Snapshot, device: &str, rule: &str) -> Option<AlertState> {
    snapshot
        .devices
        .iter()
        .find(|d| d.device_id.as_str() == device)
        .and_then(|d| d.alerts.get(rule).copied())
}

fn service(store: Store) -> OrderService {
    OrderService::new(
        store,
        Arc::new(Metrics::default()),
        Arc::new(SharedClock::new(T0)),
        SlaConfig::default(),
    )
}

fn read_back(path: &Path) -> Snapshot {
    serde_json::from_slice(&std::fs::read(path).expect("snapshot file")).expect("a snapshot")
}

#[tokio::test]
async fn a_written_snapshot_restores_the_same_engine_state() {
    let dir = support::scratch("snapshot-round-trip");
    let path = dir.join("rules-snapshot.json");
    let metrics = Arc::new(Metrics::default());
    let mut writer = SnapshotWriter::new(path.clone(), Arc::clone(&metrics));
    let mut engine = busy_engine();
    assert!(writer.save_and_wait(engine.snapshot()).await);
    assert!(!snapshot::temporary_path(&path).exists());
    assert_eq!(metrics.rule_snapshot_writes_total(), 1);
    assert_eq!(
        metrics.rule_snapshot_bytes(),
        std::fs::metadata(&path).expect("file").len()
    );

    let loaded = snapshot::load(&path, &Store::in_memory().expect("store")).expect("load");
    assert!(!loaded.delete_store_entry);
    let mut restored = Engine::restore(default_rules(), loaded.snapshot.expect("restored"));
    assert_eq!(restored.snapshot(), engine.snapshot());
    // The pending timer survived: both fire the cold room on the same later reading.
    let later = reading(COLD, T0 + 31 * MIN, 2, 12.0, false);
    let original = engine.process(&later);
    let after_restart = restored.process(&later);
    assert!(
        original
            .transitions
            .iter()
            .any(|t| t.rule_id == "indoor_cold"),
        "{original:?}"
    );
    assert_eq!(after_restart, original);

    // The next save replaces the file with the newer state.
    assert!(writer.save_and_wait(engine.snapshot()).await);
    assert_eq!(read_back(&path), engine.snapshot());
    assert!(matches!(
        alert(&read_back(&path), COLD, "indoor_cold"),
        Some(AlertState::Firing { .. })
    ));
    assert_eq!(metrics.rule_snapshot_writes_total(), 2);
    assert_eq!(metrics.rule_snapshot_write_failures_total(), 0);
}

#[test]
fn an_unreadable_snapshot_is_set_aside_and_the_rules_start_empty() {
    let dir = support::scratch("snapshot-unreadable");
    let path = dir.join("rules-snapshot.json");
    let store = Store::in_memory().expect("store");

    std::fs::write(&path, b"not json at all").expect("write garbage");
    let loaded = snapshot::load(&path, &store).expect("load");
    assert!(loaded.snapshot.is_none());
    assert!(
        !path.exists(),
        "the bad file must not stay where the next save goes"
    );
    let first_aside = dir.join("rules-snapshot.json.unreadable");
    assert_eq!(
        std::fs::read(&first_aside).expect("set aside"),
        b"not json at all"
    );

    // A snapshot cut short (a full disk, a copy gone wrong) is set aside too, beside the first.
    snapshot::write_json(&path, &busy_engine().snapshot()).expect("write");
    let whole = std::fs::read(&path).expect("read");
    std::fs::write(&path, &whole[..whole.len() / 2]).expect("truncate");
    let loaded = snapshot::load(&path, &store).expect("load");
    assert!(loaded.snapshot.is_none());
    assert!(!path.exists());
    assert_eq!(
        std::fs::read(dir.join("rules-snapshot.json.unreadable.1")).expect("second aside"),
        &whole[..whole.len() / 2]
    );
    assert_eq!(
        std::fs::read(&first_aside).expect("first aside kept"),
        b"not json at all"
    );

    // A file that cannot be read as a file at all (a folder) is reported the same way.
    std::fs::create_dir(&path).expect("folder in the way");
    assert!(snapshot::load(&path, &store)
        .expect("load")
        .snapshot
        .is_none());
    assert!(dir.join("rules-snapshot.json.unreadable.2").is_dir());
}

#[tokio::test]
async fn the_rule_state_moves_from_the_store_entry_of_an_earlier_version_to_the_file() {
    let dir = support::scratch("snapshot-migration");
    let path = dir.join("rules-snapshot.json");
    let engine = busy_engine();
    let mut store = Store::open(&dir.join("gateway.sqlite")).expect("store");
    let json = serde_json::to_string(&engine.snapshot()).expect("json");
    store.put(LEGACY_STORE_KEY, &json).expect("put");

    let loaded = snapshot::load(&path, &store).expect("load");
    assert!(loaded.delete_store_entry);
    let restored = Engine::restore(default_rules(), loaded.snapshot.expect("from the store"));
    assert_eq!(restored.snapshot(), engine.snapshot());

    let orders = service(store);
    let metrics = Arc::new(Metrics::default());
    let mut writer = SnapshotWriter::new(path.clone(), Arc::clone(&metrics))
        .delete_store_entry_after_first_write(orders.clone());
    let contains = || {
        orders
            .with_store_blocking(|s| s.contains(LEGACY_STORE_KEY))
            .expect("contains")
    };
    // A failed write keeps the entry: it is the only copy of the state.
    let in_the_way = snapshot::temporary_path(&path);
    std::fs::create_dir(&in_the_way).expect("folder in the way");
    assert!(!writer.save_and_wait(restored.snapshot()).await);
    assert!(contains());
    assert_eq!(metrics.rule_snapshot_write_failures_total(), 1);
    // The first successful write deletes it.
    std::fs::remove_dir(&in_the_way).expect("clear the way");
    assert!(writer.save_and_wait(restored.snapshot()).await);
    assert!(!contains());
    assert_eq!(read_back(&path), engine.snapshot());
    let reopened = Store::open(&dir.join("gateway.sqlite")).expect("reopen");
    assert_eq!(reopened.get(LEGACY_STORE_KEY).expect("get"), None);
    // Next start: from the file, nothing left to migrate.
    let loaded = snapshot::load(&path, &reopened).expect("load");
    assert!(!loaded.delete_store_entry);
    assert_eq!(loaded.snapshot, Some(engine.snapshot()));
}

#[test]
fn with_both_a_file_and_a_store_entry_the_file_wins_and_an_unreadable_entry_is_copied_aside() {
    let dir = support::scratch("snapshot-migration-both");
    let path = dir.join("rules-snapshot.json");
    let mut store = Store::in_memory().expect("store");
    store
        .put(
            LEGACY_STORE_KEY,
            &serde_json::to_string(&Engine::new(default_rules()).snapshot()).expect("json"),
        )
        .expect("put");
    let engine = busy_engine();
    snapshot::write_json(&path, &engine.snapshot()).expect("write");
    let loaded = snapshot::load(&path, &store).expect("load");
    assert_eq!(loaded.snapshot, Some(engine.snapshot()));
    assert!(
        loaded.delete_store_entry,
        "the stale entry goes after the next save"
    );

    // No file and an unreadable entry: empty state, the entry's text kept in a file.
    std::fs::remove_file(&path).expect("remove");
    store.put(LEGACY_STORE_KEY, "{\"format\":").expect("put");
    let loaded = snapshot::load(&path, &store).expect("load");
    assert!(loaded.snapshot.is_none());
    assert!(loaded.delete_store_entry);
    assert_eq!(
        std::fs::read_to_string(dir.join("rules-snapshot.json.from-store.unreadable"))
            .expect("copied aside"),
        "{\"format\":"
    );
}

/// Serialises a large first field, then fails: a write that breaks off half-way.
struct FailsHalfway;

impl serde::Serialize for FailsHalfway {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut state = serializer.serialize_struct("FailsHalfway", 2)?;
        state.serialize_field("padding", &"x".repeat(3 << 20))?;
        state.end()?;
        Err(S::Error::custom("the disk is gone"))
    }
}

#[test]
fn a_failed_write_leaves_the_previous_snapshot_in_place() {
    let dir = support::scratch("snapshot-failed-write");
    let path = dir.join("rules-snapshot.json");
    let previous = busy_engine().snapshot();
    let bytes = snapshot::write_json(&path, &previous).expect("first write");
    assert_eq!(bytes, std::fs::metadata(&path).expect("file").len());
    let before = std::fs::read(&path).expect("read");
    let newer = Engine::new(default_rules()).snapshot();
    assert_ne!(newer, previous);

    // Broken off after megabytes were written to the temporary file.
    let error = snapshot::write_json(&path, &FailsHalfway).expect_err("must fail");
    assert!(error.to_string().contains("the disk is gone"), "{error}");
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert!(
        !snapshot::temporary_path(&path).exists(),
        "the partial temporary file is removed"
    );

    // The temporary file cannot be created.
    std::fs::create_dir(snapshot::temporary_path(&path)).expect("folder in the way");
    snapshot::write_json(&path, &newer).expect_err("must fail");
    assert_eq!(std::fs::read(&path).expect("read"), before);
    assert_eq!(read_back(&path), previous);
    std::fs::remove_dir(snapshot::temporary_path(&path)).expect("clear");

    // The folder is gone.
    snapshot::write_json(&dir.join("missing").join("rules.json"), &newer).expect_err("no folder");

    // And once writing works again, the new snapshot replaces the old one.
    snapshot::write_json(&path, &newer).expect("write");
    assert_eq!(read_back(&path), newer);
}

#[test]
fn a_save_while_the_previous_one_is_still_running_is_skipped_and_counted() {
    let dir = support::scratch("snapshot-skip");
    let path = dir.join("rules-snapshot.json");
    // One blocking thread, held by the test: the first write waits in the queue behind it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let blocker = tokio::task::spawn_blocking(move || {
            let _ = held.recv();
        });
        let metrics = Arc::new(Metrics::default());
        let mut writer = SnapshotWriter::new(path.clone(), Arc::clone(&metrics));
        let mut engine = busy_engine();
        assert!(writer.save_in_background(|| engine.snapshot()).await);
        let mut taken = false;
        // Bounded: a save that waited for the one in flight would wait for the test forever.
        let started = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            writer.save_in_background(|| {
                taken = true;
                engine.snapshot()
            }),
        )
        .await
        .expect("the periodic save must not wait for the previous one");
        assert!(!started);
        assert!(!taken, "a skipped save does not even take the snapshot");
        assert_eq!(metrics.rule_snapshots_skipped_total(), 1);
        assert!(!path.exists());

        release.send(()).expect("release");
        blocker.await.expect("blocker");
        // Shutdown: the write in flight finishes, then the current state is written.
        engine.process(&reading(COLD, T0 + 31 * MIN, 2, 12.0, false));
        assert!(writer.save_and_wait(engine.snapshot()).await);
        assert_eq!(metrics.rule_snapshot_writes_total(), 2);
        assert_eq!(read_back(&path), engine.snapshot());
        assert!(matches!(
            alert(&read_back(&path), COLD, "indoor_cold"),
            Some(AlertState::Firing { .. })
        ));
        // With nothing in flight, the next periodic save starts.
        assert!(writer.save_in_background(|| engine.snapshot()).await);
        assert_eq!(metrics.rule_snapshots_skipped_total(), 1);
    });
}
