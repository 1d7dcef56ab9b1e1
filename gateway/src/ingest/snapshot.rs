//! The rule engine's snapshot in its own file (`rules.snapshot_path`): streamed as JSON into a
//! temporary file beside it, synced, then renamed over the previous one, on a blocking thread
//! while ingest goes on; read back at start-up, with the migration from the store's `kv` entry
//! that earlier versions wrote.
//!
//! A crash or a failed write leaves the previous snapshot in place. An unreadable snapshot is
//! renamed aside (`<file>.unreadable`) before the rules start with empty state, so the next
//! save does not overwrite it unnoticed.

use std::ffi::OsString;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rules::Snapshot;
use serde::Serialize;
use tokio::task::JoinHandle;

use crate::events::{
    InternalEvent, RuleSnapshotFailed, RuleSnapshotSkipped, RuleSnapshotWritten, StoreFailed,
};
use crate::metrics::Metrics;
use crate::orders::store::{Store, StoreError};
use crate::orders::OrderService;

/// Key under which versions before the snapshot file kept the rule state in the store's `kv`
/// table. Read once for the migration; deleted after the first snapshot file is written.
pub const LEGACY_STORE_KEY: &str = "rules.snapshot";

/// File name of the snapshot when `rules.snapshot_path` is unset (beside the store).
pub const DEFAULT_FILE_NAME: &str = "rules-snapshot.json";

/// Buffer between the JSON serialiser and the file.
const WRITE_BUFFER: usize = 1 << 20;

/// Where the snapshot goes when `rules.snapshot_path` is unset: beside the store's file.
pub fn default_path(store_path: &Path) -> PathBuf {
    store_path
        .parent()
        .unwrap_or(Path::new(""))
        .join(DEFAULT_FILE_NAME)
}

/// `path` with `suffix` appended to its file name (`a/b.json` + `.tmp` = `a/b.json.tmp`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// The temporary file a write goes to before it is renamed over `path`.
pub fn temporary_path(path: &Path) -> PathBuf {
    with_suffix(path, ".tmp")
}

/// Writes `value` as JSON to `path` without ever holding the whole text in memory: streamed
/// into `<path>.tmp`, synced to disk, then renamed over `path` (and, on unix, the folder
/// synced). Returns the file's size in bytes. On any error the previous file at `path` is left
/// as it was and the temporary file is removed.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> std::io::Result<u64> {
    let temporary = temporary_path(path);
    let written = write_file(&temporary, value).and_then(|bytes| {
        std::fs::rename(&temporary, path)?;
        Ok(bytes)
    });
    match written {
        Ok(bytes) => {
            if let Err(error) = sync_folder(path) {
                tracing::warn!(path = %path.display(), %error, "the snapshot is in place but its folder could not be synced: a power cut now may bring back the previous one");
            }
            Ok(bytes)
        }
        Err(error) => {
            // Best effort: it may not exist (creating it failed) or not be a file.
            let _ = std::fs::remove_file(&temporary);
            Err(error)
        }
    }
}

fn write_file<T: Serialize + ?Sized>(path: &Path, value: &T) -> std::io::Result<u64> {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER, File::create(path)?);
    serde_json::to_writer(&mut writer, value)?;
    let file = writer
        .into_inner()
        .map_err(std::io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}

/// Makes the rename durable: the folder's entry is synced too (unix; elsewhere nothing to do).
fn sync_folder(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let folder = match path.parent() {
            Some(folder) if !folder.as_os_str().is_empty() => folder,
            _ => Path::new("."),
        };
        File::open(folder)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// What start-up found at the snapshot path.
#[derive(Debug)]
pub enum Found {
    /// A readable snapshot.
    Snapshot(Box<Snapshot>),
    /// No file.
    Missing,
    /// A file that could not be read or is not a snapshot; `set_aside` is where it was moved
    /// (or why it could not be).
    Unreadable {
        error: String,
        set_aside: std::io::Result<PathBuf>,
    },
}

/// Reads the snapshot at `path` (the whole file, then parsed); an unreadable one is renamed
/// aside with [`set_aside`].
pub fn read(path: &Path) -> Found {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(error) => {
            return Found::Unreadable {
                error: format!("cannot be read: {error}"),
                set_aside: set_aside(path),
            }
        }
    };
    let parsed = serde_json::from_slice::<Snapshot>(&bytes);
    drop(bytes);
    match parsed {
        Ok(snapshot) => Found::Snapshot(Box::new(snapshot)),
        Err(error) => Found::Unreadable {
            error: format!("is not a rule snapshot: {error}"),
            set_aside: set_aside(path),
        },
    }
}

/// Renames `path` to `<path>.unreadable`, or `<path>.unreadable.1`, `.2`... when that exists,
/// so earlier unreadable files are kept too. Returns the new name.
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    for n in 0..1000 {
        let suffix = match n {
            0 => ".unreadable".to_owned(),
            n => format!(".unreadable.{n}"),
        };
        let target = with_suffix(path, &suffix);
        if std::fs::symlink_metadata(&target).is_err() {
            std::fs::rename(path, &target)?;
            return Ok(target);
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!(
            "{} already has 1000 unreadable copies beside it",
            path.display()
        ),
    ))
}

/// The rule state found at start-up.
#[derive(Debug)]
pub struct Loaded {
    /// The snapshot to restore, if a readable one was found.
    pub snapshot: Option<Snapshot>,
    /// The store still holds an earlier version's snapshot entry, to be deleted once the file
    /// has been written (see [`SnapshotWriter::delete_store_entry_after_first_write`]).
    pub delete_store_entry: bool,
}

/// Brings the rule state to restore in line with the store, which may be newer: an alert
/// stored after the last snapshot, before the process was killed, is unresolved in the store
/// while the snapshot has its rule idle or pending. Where the snapshot knows the device, the
/// alert is set firing again with its own fired time (the episode keeps its id, and its
/// resolution later reaches the store); otherwise, and for an older episode of a rule that has
/// a newer one or of a rule no longer in the rule set, the store closes it (`alert_state_lost`
/// on its order). Returns how many were set
/// firing and how many were closed.
pub fn reconcile(
    snapshot: Option<&mut Snapshot>,
    rules: &rules::RuleSet,
    store: &mut Store,
    now_ms: i64,
) -> Result<(usize, usize), StoreError> {
    use std::collections::HashMap;
    let active = store.alerts(true, usize::MAX >> 1)?;
    // The newest unresolved episode of each (device, rule); the others are stale.
    let mut newest: HashMap<(&str, &str), &crate::orders::store::AlertRow> = HashMap::new();
    let mut stale = Vec::new();
    for alert in &active {
        let key = (alert.device_id.as_str(), alert.rule_id.as_str());
        match newest.get(&key) {
            Some(kept) if kept.fired_at_ms >= alert.fired_at_ms => stale.push(alert),
            Some(kept) => {
                stale.push(kept);
                newest.insert(key, alert);
            }
            None => {
                newest.insert(key, alert);
            }
        }
    }
    let mut restored = 0;
    let at_ms = snapshot
        .as_ref()
        .and_then(|s| s.watermark_ms)
        .unwrap_or(now_ms);
    let mut devices = snapshot.map(|s| &mut s.devices);
    for alert in newest.values() {
        let device = devices.as_mut().and_then(|devices| {
            devices
                .iter_mut()
                .find(|d| d.device_id.as_str() == alert.device_id)
        });
        let (Some(device), Some(_)) = (device, rules.get(&alert.rule_id)) else {
            // No saved state for the device, or a rule no longer in the rule file.
            stale.push(alert);
            continue;
        };
        let state = device.alerts.entry(alert.rule_id.clone()).or_default();
        match state {
            rules::snapshot::AlertState::Firing { fired_at_ms, .. }
                if *fired_at_ms == alert.fired_at_ms => {}
            rules::snapshot::AlertState::Firing { fired_at_ms, .. }
                if *fired_at_ms > alert.fired_at_ms =>
            {
                // The engine holds a newer episode than the store's: the store's is over.
                stale.push(alert);
            }
            _ => {
                *state = rules::snapshot::AlertState::Firing {
                    fired_at_ms: alert.fired_at_ms,
                    clear_since_ms: None,
                    level: 0,
                };
                restored += 1;
            }
        }
    }
    let mut closed = 0;
    for alert in stale {
        if store.alert_lost_at_restart(&alert.episode_id, at_ms.max(alert.fired_at_ms))? {
            closed += 1;
        }
    }
    if restored + closed > 0 {
        tracing::warn!(
            restored,
            closed,
            "alerts stored after the last rule snapshot: set firing again where the device's rule state was saved, closed otherwise"
        );
    }
    Ok((restored, closed))
}

/// Finds the rule state to restore: the file at `path`; when there is none, the store entry of
/// an earlier version (migration). An unreadable file is set aside and logged, and the rules
/// start with empty state (the store entry is not used then: it is older than the file).
pub fn load(path: &Path, store: &Store) -> Result<Loaded, StoreError> {
    let in_store = store.contains(LEGACY_STORE_KEY)?;
    let shown = path.display();
    let mut delete_store_entry = in_store;
    let snapshot = match read(path) {
        Found::Snapshot(snapshot) => {
            tracing::info!(path = %shown, devices = snapshot.devices.len(), "rule state restored from the snapshot file");
            Some(*snapshot)
        }
        Found::Unreadable { error, set_aside } => {
            match set_aside {
                Ok(aside) => tracing::warn!(
                    path = %shown, set_aside = %aside.display(), %error,
                    "the rule snapshot is unreadable: it was renamed aside and the rules start with empty state"
                ),
                Err(rename_error) => tracing::error!(
                    path = %shown, %error, %rename_error,
                    "the rule snapshot is unreadable and could not be renamed aside: the rules start with empty state and the next snapshot replaces it"
                ),
            }
            None
        }
        Found::Missing if in_store => match store.get(LEGACY_STORE_KEY)? {
            Some(json) => match serde_json::from_str::<Snapshot>(&json) {
                Ok(snapshot) => {
                    tracing::info!(path = %shown, key = LEGACY_STORE_KEY, devices = snapshot.devices.len(), "rule state restored from the store entry of an earlier version; it moves to the snapshot file with the first save");
                    Some(snapshot)
                }
                Err(error) => {
                    // Keep the text: the entry is deleted after the first save.
                    let aside = with_suffix(path, ".from-store.unreadable");
                    match std::fs::write(&aside, json.as_bytes()) {
                        Ok(()) => tracing::warn!(
                            key = LEGACY_STORE_KEY, set_aside = %aside.display(), %error,
                            "the rule state in the store is unreadable: it was copied aside and the rules start with empty state"
                        ),
                        Err(write_error) => {
                            delete_store_entry = false;
                            tracing::error!(
                                key = LEGACY_STORE_KEY, %error, %write_error,
                                "the rule state in the store is unreadable and could not be copied aside: the rules start with empty state and the entry stays in the store"
                            );
                        }
                    }
                    None
                }
            },
            None => None,
        },
        Found::Missing => {
            tracing::info!(path = %shown, "no rule snapshot yet: the rules start with empty state");
            None
        }
    };
    Ok(Loaded {
        snapshot,
        delete_store_entry,
    })
}

/// What a finished write hands back.
struct Done {
    written: bool,
    /// The store entry is still to be deleted.
    delete_store_entry: Option<OrderService>,
}

/// Writes the engine's snapshots to the file on a blocking thread, one at a time.
pub struct SnapshotWriter {
    path: PathBuf,
    metrics: Arc<Metrics>,
    /// Set while the store still holds an earlier version's snapshot entry.
    delete_store_entry: Option<OrderService>,
    in_flight: Option<JoinHandle<Done>>,
}

impl SnapshotWriter {
    /// A writer of the snapshot file at `path`.
    pub fn new(path: PathBuf, metrics: Arc<Metrics>) -> Self {
        Self {
            path,
            metrics,
            delete_store_entry: None,
            in_flight: None,
        }
    }

    /// After the first successful write, deletes the snapshot entry an earlier version kept in
    /// the store of `orders` (retried after the next write if that fails).
    pub fn delete_store_entry_after_first_write(mut self, orders: OrderService) -> Self {
        self.delete_store_entry = Some(orders);
        self
    }

    /// A periodic save. When the previous write is still running, this one is skipped (logged
    /// and counted) and `take` is not called; otherwise the snapshot `take` returns is written on
    /// a blocking thread and this returns at once. Returns whether a write was started.
    pub async fn save_in_background(&mut self, take: impl FnOnce() -> Snapshot) -> bool {
        if self.in_flight.as_ref().is_some_and(|h| !h.is_finished()) {
            RuleSnapshotSkipped { path: &self.path }.emit(&self.metrics);
            return false;
        }
        self.finish_in_flight().await;
        self.in_flight = Some(self.spawn(take()));
        true
    }

    /// The save at shutdown: waits for a write in progress, then writes `snapshot` and waits for
    /// it too. Returns whether `snapshot` was written.
    pub async fn save_and_wait(&mut self, snapshot: Snapshot) -> bool {
        self.finish_in_flight().await;
        self.in_flight = Some(self.spawn(snapshot));
        self.finish_in_flight().await.unwrap_or(false)
    }

    /// Waits for the write in progress, if any; whether it succeeded.
    async fn finish_in_flight(&mut self) -> Option<bool> {
        let handle = self.in_flight.take()?;
        match handle.await {
            Ok(done) => {
                if done.delete_store_entry.is_some() {
                    self.delete_store_entry = done.delete_store_entry;
                }
                Some(done.written)
            }
            Err(error) => {
                RuleSnapshotFailed {
                    path: &self.path,
                    devices: None,
                    error: &error,
                }
                .emit(&self.metrics);
                Some(false)
            }
        }
    }

    fn spawn(&mut self, snapshot: Snapshot) -> JoinHandle<Done> {
        let path = self.path.clone();
        let metrics = Arc::clone(&self.metrics);
        let delete_store_entry = self.delete_store_entry.take();
        tokio::task::spawn_blocking(move || {
            write_and_count(&path, snapshot, &metrics, delete_store_entry)
        })
    }
}

/// Writes `snapshot`, counts the outcome, and deletes the store's old entry after a success.
fn write_and_count(
    path: &Path,
    snapshot: Snapshot,
    metrics: &Metrics,
    delete_store_entry: Option<OrderService>,
) -> Done {
    let started = Instant::now();
    let devices = snapshot.devices.len();
    let result = write_json(path, &snapshot);
    drop(snapshot);
    match result {
        Ok(bytes) => {
            RuleSnapshotWritten {
                path,
                bytes,
                devices,
                took: started.elapsed(),
            }
            .emit(metrics);
            let delete_store_entry = delete_store_entry.and_then(|orders| {
                match orders.with_store_blocking(|store| store.delete(LEGACY_STORE_KEY)) {
                    Ok(_) => {
                        tracing::info!(path = %path.display(), key = LEGACY_STORE_KEY, "the rule state now lives in its file: the store's old entry is deleted");
                        None
                    }
                    Err(error) => {
                        StoreFailed {
                            what: "the store's old rule state entry could not be deleted; tried again after the next snapshot",
                            error: &error,
                        }
                        .emit(metrics);
                        Some(orders)
                    }
                }
            });
            Done {
                written: true,
                delete_store_entry,
            }
        }
        Err(error) => {
            RuleSnapshotFailed {
                path,
                devices: Some(devices),
                error: &error,
            }
            .emit(metrics);
            Done {
                written: false,
                delete_store_entry,
            }
        }
    }
}
