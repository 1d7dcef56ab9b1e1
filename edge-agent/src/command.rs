//! Remote commands: the messages on `heating/v1/{township}/{device}/cmd` and
//! `.../cmd/ack`, their checks, and the durable log of executed command ids.
//!
//! A command (JSON, `v: 1`):
//! ```json
//! {"v":1,"id":"c-7f3a","expires_ms":1796000060000,"action":"write","name":"setpoint_c","value":21.5}
//! {"v":1,"id":"c-7f3b","expires_ms":1796000060000,"action":"fault_reset"}
//! ```
//! The agent answers every command on the ack topic with a [`CommandAck`]: `status` is `done`
//! (written and read back), `refused` (not executed: malformed, expired, not allowed, out of
//! bounds), `failed` (the device did not take it) or `duplicate` (the id was seen before; the
//! first outcome is repeated and nothing is executed again).
//!
//! Guarantees: a command runs at most once (its id is fsynced to the log *before* it runs, so
//! even a crash mid-write does not run it twice) and never after `expires_ms`.
//!
//! The log stays small while the agent runs. An id is needed only while its command could still
//! run, that is until its expiry (at most `commands.max_expiry` ahead when it was accepted), so
//! it is forgotten once its expiry has passed by [`EXPIRY_MARGIN_MS`] (the margin covers a clock
//! stepped back by up to that much: the command is still refused as a duplicate rather than
//! judged again). Ids are pruned from memory as they expire, and the file is compacted (the
//! remembered ids written to a temporary file, fsynced, renamed over the log, the folder
//! fsynced) whenever it holds more than twice as many lines as remembered ids plus
//! [`COMPACT_SLACK_LINES`], and at every start.
//!
//! Hard cap: at most [`MAX_IDS`] ids. At the cap, ids whose expiry has passed but which are
//! still inside the margin are forgotten first, oldest expiry first; if every remembered id is
//! still unexpired, the new command is refused (`agent_busy`, nothing runs) instead of
//! forgetting an id whose command could still run: the at-most-once guarantee wins over
//! availability, and the refusal ends as soon as the oldest ids expire.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use wire::DeviceId;

use crate::profile::{FaultReset, Profile, Register, ValueType};

/// Schema version of commands and acks.
pub const COMMAND_VERSION: u32 = 1;

/// Longest accepted command id.
pub const MAX_ID_LEN: usize = 128;

/// How long past its expiry an executed id is still remembered (1 h), for a clock stepped back.
pub const EXPIRY_MARGIN_MS: i64 = 3_600_000;

/// Most ids the log remembers: one command every 4.5 s for the whole default `max_expiry`
/// (24 h), a few MB on disk at most.
pub const MAX_IDS: usize = 20_000;

/// Lines the log file may hold beyond twice the ids remembered before it is compacted.
pub const COMPACT_SLACK_LINES: usize = 256;

/// A command as sent by the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub v: u32,
    /// Unique id chosen by the sender; a command is executed at most once per id.
    pub id: String,
    /// Unix milliseconds after which the command must not run.
    pub expires_ms: i64,
    #[serde(flatten)]
    pub action: Action,
}

/// What a command asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Write a canonical value (e.g. `setpoint_c`) that the profile marks writable.
    Write { name: String, value: f64 },
    /// Write the profile's fault-reset register.
    FaultReset,
}

/// Outcome class of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Done,
    Refused,
    Failed,
    Duplicate,
}

/// Why a command was refused or failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckError {
    /// Stable label: `malformed`, `unsupported_version`, `expired`, `expiry_too_far`,
    /// `unknown_device`, `unknown_name`, `not_writable`, `out_of_range`, `no_fault_reset`,
    /// `device_error`, `readback_mismatch`, `interrupted`, `agent_busy`.
    pub reason: String,
    /// A sentence for the operator.
    pub message: String,
}

/// The answer on `.../cmd/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandAck {
    pub v: u32,
    /// The command's id (empty if the command was too malformed to carry one).
    pub id: String,
    pub device_id: String,
    pub status: AckStatus,
    /// When the agent answered, Unix milliseconds.
    pub ts_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested: Option<f64>,
    /// The value read back from the device after writing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_back: Option<f64>,
    /// The fault code read after a fault reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_code_after: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<AckError>,
}

impl CommandAck {
    pub fn new(id: &str, device: &str, status: AckStatus, ts_ms: i64) -> CommandAck {
        CommandAck {
            v: COMMAND_VERSION,
            id: id.to_owned(),
            device_id: device.to_owned(),
            status,
            ts_ms,
            name: None,
            requested: None,
            read_back: None,
            fault_code_after: None,
            error: None,
        }
    }

    /// A refusal with its reason.
    pub fn refused(
        id: &str,
        device: &str,
        ts_ms: i64,
        reason: &str,
        message: impl Into<String>,
    ) -> CommandAck {
        let mut ack = CommandAck::new(id, device, AckStatus::Refused, ts_ms);
        ack.error = Some(AckError {
            reason: reason.to_owned(),
            message: message.into(),
        });
        ack
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What the device task must do for an accepted command.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandPlan {
    Write { register: Register, value: f64 },
    FaultReset(FaultReset),
}

/// Parses a command payload; on failure returns the refusal ack.
pub fn parse(payload: &[u8], device: &str, now_ms: i64) -> Result<Command, Box<CommandAck>> {
    let command: Command = serde_json::from_slice(payload).map_err(|e| {
        // Try to recover the id so the sender can correlate the refusal.
        let id = serde_json::from_slice::<serde_json::Value>(payload)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
            .filter(|id| id.len() <= MAX_ID_LEN)
            .unwrap_or_default();
        Box::new(CommandAck::refused(
            &id,
            device,
            now_ms,
            "malformed",
            format!("command is not valid JSON for schema v{COMMAND_VERSION}: {e}"),
        ))
    })?;
    if command.v != COMMAND_VERSION {
        return Err(Box::new(CommandAck::refused(
            &command.id,
            device,
            now_ms,
            "unsupported_version",
            format!(
                "command schema v{} is not supported (this agent reads v{COMMAND_VERSION})",
                command.v
            ),
        )));
    }
    if command.id.is_empty() || command.id.len() > MAX_ID_LEN {
        return Err(Box::new(CommandAck::refused(
            "",
            device,
            now_ms,
            "malformed",
            format!("command id must be 1..={MAX_ID_LEN} bytes"),
        )));
    }
    Ok(command)
}

/// Checks a command against the clock and the device's profile; returns what to execute or
/// the refusal.
pub fn check(
    command: &Command,
    device: &str,
    profile: &Profile,
    now_ms: i64,
    max_expiry: Duration,
) -> Result<CommandPlan, Box<CommandAck>> {
    let refuse = |reason: &str, message: String| {
        let mut ack = CommandAck::refused(&command.id, device, now_ms, reason, message);
        if let Action::Write { name, value } = &command.action {
            ack.name = Some(name.clone());
            ack.requested = Some(*value);
        }
        Box::new(ack)
    };
    if now_ms > command.expires_ms {
        return Err(refuse(
            "expired",
            format!(
                "command expired {} ms ago (expires_ms {})",
                now_ms.saturating_sub(command.expires_ms),
                command.expires_ms
            ),
        ));
    }
    let horizon = i64::try_from(max_expiry.as_millis()).unwrap_or(i64::MAX);
    if command.expires_ms.saturating_sub(now_ms) > horizon {
        return Err(refuse(
            "expiry_too_far",
            format!("expires_ms is more than {max_expiry:?} ahead; send a nearer expiry"),
        ));
    }
    match &command.action {
        Action::Write { name, value } => {
            let register = profile.register(name).ok_or_else(|| {
                refuse(
                    "unknown_name",
                    format!("profile {} maps no register named {name:?}", profile.id),
                )
            })?;
            let bounds = register.writable.ok_or_else(|| {
                refuse(
                    "not_writable",
                    format!("{name} is not writable in profile {}", profile.id),
                )
            })?;
            if !value.is_finite() || *value < bounds.min || *value > bounds.max {
                return Err(refuse(
                    "out_of_range",
                    format!(
                        "{name} = {value} is outside the allowed {}..={} {}",
                        bounds.min, bounds.max, register.unit
                    ),
                ));
            }
            Ok(CommandPlan::Write {
                register: register.clone(),
                value: *value,
            })
        }
        Action::FaultReset => profile
            .fault_reset
            .map(CommandPlan::FaultReset)
            .ok_or_else(|| {
                refuse(
                    "no_fault_reset",
                    format!("profile {} defines no [fault_reset]", profile.id),
                )
            }),
    }
}

/// True when `read_back` confirms `requested` within the register's resolution.
pub fn confirms(register: &Register, requested: f64, read_back: f64) -> bool {
    let tolerance = match register.value_type {
        ValueType::F32 => requested.abs().max(1.0) * 1e-6,
        _ => register.scale.abs() / 2.0 + 1e-9,
    };
    (read_back - requested).abs() <= tolerance
}

/// One line of the executed-commands log.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LogLine {
    id: String,
    device: String,
    expires_ms: i64,
    /// `None` while running; the ack once finished.
    #[serde(default)]
    outcome: Option<CommandAck>,
}

/// What the log knows of an id.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Started and finished with this ack.
    Finished(Box<CommandAck>),
    /// Started, but the agent stopped before it finished.
    Interrupted,
}

/// Why the command log failed.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct CommandLogError {
    pub path: String,
    pub source: std::io::Error,
}

/// What the log remembers of one id.
#[derive(Debug, Clone)]
struct Entry {
    device: String,
    expires_ms: i64,
    outcome: Option<CommandAck>,
}

/// Durable record of command ids: appended (and fsynced) when a command starts and when it ends;
/// ids are forgotten once their expiry has passed by [`EXPIRY_MARGIN_MS`], and the file is
/// compacted as it grows (see the module documentation for the cap).
#[derive(Debug)]
pub struct CommandLog {
    path: PathBuf,
    file: File,
    seen: HashMap<String, Entry>,
    /// Lines in the file (each `begin` and `finish` appends one).
    lines: usize,
    /// The earliest expiry remembered (`i64::MAX` when none): nothing can be pruned before it
    /// has passed by the margin, so most calls skip the scan.
    earliest_expiry: i64,
    /// False between a compaction's rename and the fsync of the folder that makes it durable;
    /// no line is appended (no command starts) before that fsync has succeeded.
    folder_synced: bool,
    /// The hard cap on ids remembered ([`MAX_IDS`] unless set with
    /// [`CommandLog::with_max_ids`]).
    max_ids: usize,
}

/// The wall clock in Unix milliseconds (0 before 1970).
fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// True while `expires_ms` must still be remembered at `now_ms`.
fn still_needed(expires_ms: i64, now_ms: i64) -> bool {
    expires_ms.saturating_add(EXPIRY_MARGIN_MS) >= now_ms
}

fn line_bytes(line: &LogLine) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(line).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// The earliest expiry in `seen` (`i64::MAX` when empty).
fn earliest_expiry(seen: &HashMap<String, Entry>) -> i64 {
    seen.values()
        .map(|entry| entry.expires_ms)
        .min()
        .unwrap_or(i64::MAX)
}

/// Forgets the ids of `seen` whose expiry has passed by more than the margin at `now_ms`.
fn retain_needed(seen: &mut HashMap<String, Entry>, now_ms: i64) {
    seen.retain(|_, entry| still_needed(entry.expires_ms, now_ms));
}

/// Forgets ids of `seen` whose expiry has passed at `now_ms` (still inside the margin), oldest
/// expiry first, until at most `keep` are left or none such is.
fn forget_expired(seen: &mut HashMap<String, Entry>, now_ms: i64, keep: usize) {
    let excess = seen.len().saturating_sub(keep);
    if excess == 0 {
        return;
    }
    let mut expired: Vec<(i64, String)> = seen
        .iter()
        .filter(|(_, entry)| entry.expires_ms < now_ms)
        .map(|(id, entry)| (entry.expires_ms, id.clone()))
        .collect();
    expired.sort_unstable();
    for (_, id) in expired.into_iter().take(excess) {
        seen.remove(&id);
    }
}

/// Fsyncs the folder holding `path`, so a rename in it survives a power cut.
fn sync_folder(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => File::open(parent)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

/// Writes `seen` to `<path>.tmp`, fsyncs it and renames it over `path`; returns the new file,
/// open for appending, and its line count. On an error before or at the rename, `path` is as it
/// was. The caller fsyncs the folder.
fn rewrite(path: &Path, seen: &HashMap<String, Entry>) -> std::io::Result<(File, usize)> {
    let tmp = path.with_extension("jsonl.tmp");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let written = (|| {
        let mut out = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&tmp)?;
        let mut bytes = Vec::new();
        for (id, entry) in seen {
            bytes.extend(line_bytes(&LogLine {
                id: id.clone(),
                device: entry.device.clone(),
                expires_ms: entry.expires_ms,
                outcome: entry.outcome.clone(),
            }));
        }
        out.write_all(&bytes)?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(out)
    })();
    match written {
        // The handle follows the file through the rename: it now appends to `path`.
        Ok(out) => Ok((out, seen.len())),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

impl CommandLog {
    /// Opens (or creates) the log, forgets the ids no longer needed at `now_ms` and compacts
    /// the file; a torn last line is ignored.
    pub fn open(path: &Path, now_ms: i64) -> Result<CommandLog, CommandLogError> {
        let error = |source| CommandLogError {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        let mut seen: HashMap<String, Entry> = HashMap::new();
        match File::open(path) {
            Ok(file) => {
                for (number, line) in BufReader::new(file).lines().enumerate() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<LogLine>(&line) {
                        Ok(line) => {
                            let entry = seen.entry(line.id).or_insert(Entry {
                                device: line.device.clone(),
                                expires_ms: line.expires_ms,
                                outcome: None,
                            });
                            if entry.device.is_empty() {
                                entry.device = line.device;
                            }
                            if line.outcome.is_some() {
                                entry.outcome = line.outcome;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), line = number.saturating_add(1), error = %e, "unreadable line in the command log skipped")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(e)),
        }
        retain_needed(&mut seen, now_ms);
        forget_expired(&mut seen, now_ms, MAX_IDS);
        // Compact: rewrite what is still needed, then append from there.
        let (file, lines) = rewrite(path, &seen).map_err(error)?;
        sync_folder(path).map_err(error)?;
        Ok(CommandLog {
            path: path.to_owned(),
            file,
            earliest_expiry: earliest_expiry(&seen),
            seen,
            lines,
            folder_synced: true,
            max_ids: MAX_IDS,
        })
    }

    /// Sets the hard cap on ids remembered (at least 1); applies from the next command.
    pub fn with_max_ids(mut self, max_ids: usize) -> CommandLog {
        self.max_ids = max_ids.max(1);
        self
    }

    /// What is known of `id`, if it was seen.
    pub fn seen(&self, id: &str) -> Option<Seen> {
        self.seen.get(id).map(|entry| match &entry.outcome {
            Some(ack) => Seen::Finished(Box::new(ack.clone())),
            None => Seen::Interrupted,
        })
    }

    /// Ids remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Lines in the log file.
    pub fn file_lines(&self) -> usize {
        self.lines
    }

    /// Forgets the ids whose expiry has passed by more than [`EXPIRY_MARGIN_MS`] at `now_ms`;
    /// returns how many. The file keeps them until the next compaction, and a restart forgets
    /// them again.
    pub fn prune(&mut self, now_ms: i64) -> usize {
        if still_needed(self.earliest_expiry, now_ms) {
            return 0;
        }
        let before = self.seen.len();
        retain_needed(&mut self.seen, now_ms);
        self.earliest_expiry = earliest_expiry(&self.seen);
        before.saturating_sub(self.seen.len())
    }

    /// Prunes, and compacts the file when it holds more than twice the remembered ids plus
    /// [`COMPACT_SLACK_LINES`]. A failed compaction leaves the old file in use (logged).
    fn maintain(&mut self, now_ms: i64) {
        self.prune(now_ms);
        let limit = self
            .seen
            .len()
            .saturating_mul(2)
            .saturating_add(COMPACT_SLACK_LINES);
        if self.lines <= limit {
            return;
        }
        match rewrite(&self.path, &self.seen) {
            Ok((file, lines)) => {
                self.file = file;
                self.lines = lines;
                self.folder_synced = false;
                if let Err(e) = sync_folder(&self.path) {
                    tracing::warn!(path = %self.path.display(), error = %e, "command log compacted but its folder not synced; retried before the next command");
                } else {
                    self.folder_synced = true;
                }
            }
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "command log not compacted; appending to it as before");
            }
        }
    }

    fn append(&mut self, line: &LogLine) -> Result<(), CommandLogError> {
        let error = |source| CommandLogError {
            path: self.path.display().to_string(),
            source,
        };
        if !self.folder_synced {
            sync_folder(&self.path).map_err(error)?;
            self.folder_synced = true;
        }
        self.file
            .write_all(&line_bytes(line))
            .and_then(|()| self.file.sync_data())
            .map_err(error)?;
        self.lines = self.lines.saturating_add(1);
        Ok(())
    }

    /// Records that `id` starts now. Must succeed before the command runs.
    pub fn begin(
        &mut self,
        id: &str,
        device: &DeviceId,
        expires_ms: i64,
    ) -> Result<(), CommandLogError> {
        self.begin_at(id, device, expires_ms, wall_ms())
    }

    /// [`CommandLog::begin`] with the clock given. Refused when the cap ([`MAX_IDS`]) is
    /// reached and no remembered id has expired.
    pub fn begin_at(
        &mut self,
        id: &str,
        device: &DeviceId,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), CommandLogError> {
        self.maintain(now_ms);
        if self.seen.len() >= self.max_ids && !self.seen.contains_key(id) {
            forget_expired(&mut self.seen, now_ms, self.max_ids.saturating_sub(1));
            self.earliest_expiry = earliest_expiry(&self.seen);
            if self.seen.len() >= self.max_ids {
                return Err(CommandLogError {
                    path: self.path.display().to_string(),
                    source: std::io::Error::other(format!(
                        "{} command ids remembered, none expired yet (the cap is {})",
                        self.seen.len(),
                        self.max_ids
                    )),
                });
            }
        }
        self.append(&LogLine {
            id: id.to_owned(),
            device: device.to_string(),
            expires_ms,
            outcome: None,
        })?;
        self.seen.insert(
            id.to_owned(),
            Entry {
                device: device.to_string(),
                expires_ms,
                outcome: None,
            },
        );
        self.earliest_expiry = self.earliest_expiry.min(expires_ms);
        Ok(())
    }

    /// Records how `id` ended.
    pub fn finish(&mut self, ack: &CommandAck, expires_ms: i64) -> Result<(), CommandLogError> {
        self.finish_at(ack, expires_ms, wall_ms())
    }

    /// [`CommandLog::finish`] with the clock given. An id already forgotten because its expiry
    /// passed by the margin while it ran is not remembered again.
    pub fn finish_at(
        &mut self,
        ack: &CommandAck,
        expires_ms: i64,
        now_ms: i64,
    ) -> Result<(), CommandLogError> {
        self.maintain(now_ms);
        if !self.seen.contains_key(&ack.id) && !still_needed(expires_ms, now_ms) {
            return Ok(());
        }
        self.append(&LogLine {
            id: ack.id.clone(),
            device: ack.device_id.clone(),
            expires_ms,
            outcome: Some(ack.clone()),
        })?;
        let entry = self.seen.entry(ack.id.clone()).or_insert(Entry {
            device: ack.device_id.clone(),
            expires_ms,
            outcome: None,
        });
        entry.outcome = Some(ack.clone());
        self.earliest_expiry = self.earliest_expiry.min(expires_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_000_000_000;

    fn profile() -> Profile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/aurora-ashp.toml");
        Profile::load(&path).expect("shipped profile")
    }

    fn command(json: &str) -> Command {
        parse(json.as_bytes(), "d-1", NOW).expect("parses")
    }

    fn reason(result: Result<CommandPlan, Box<CommandAck>>) -> String {
        result
            .expect_err("refused")
            .error
            .map(|e| e.reason)
            .unwrap_or_default()
    }

    #[test]
    fn a_write_within_bounds_is_planned() {
        let c = command(&format!(
            r#"{{"v":1,"id":"a","expires_ms":{},"action":"write","name":"setpoint_c","value":21.5}}"#,
            NOW + 60_000
        ));
        let plan = check(&c, "d-1", &profile(), NOW, Duration::from_secs(3600)).expect("ok");
        assert!(matches!(plan, CommandPlan::Write { value, .. } if value == 21.5));
    }

    #[test]
    fn out_of_bounds_expired_and_unwritable_commands_are_refused_with_their_reason() {
        let p = profile();
        let day = Duration::from_secs(86_400);
        let write = |name: &str, value: f64, expires: i64| {
            command(&format!(
                r#"{{"v":1,"id":"x","expires_ms":{expires},"action":"write","name":"{name}","value":{value}}}"#
            ))
        };
        let refusal = check(&write("setpoint_c", 35.0, NOW + 1000), "d-1", &p, NOW, day)
            .expect_err("out of range");
        assert_eq!(refusal.status, AckStatus::Refused);
        let error = refusal.error.expect("error");
        assert_eq!(error.reason, "out_of_range");
        assert!(error.message.contains("10..=28"), "{}", error.message);
        assert_eq!(
            reason(check(
                &write("setpoint_c", 20.0, NOW - 1),
                "d-1",
                &p,
                NOW,
                day
            )),
            "expired"
        );
        assert_eq!(
            reason(check(
                &write("indoor_temp_c", 20.0, NOW + 1000),
                "d-1",
                &p,
                NOW,
                day
            )),
            "not_writable"
        );
        assert_eq!(
            reason(check(
                &write("flame_on", 1.0, NOW + 1000),
                "d-1",
                &p,
                NOW,
                day
            )),
            "unknown_name"
        );
        assert_eq!(
            reason(check(
                &write("setpoint_c", 20.0, NOW + 2 * 86_400_000),
                "d-1",
                &p,
                NOW,
                day
            )),
            "expiry_too_far"
        );
    }

    #[test]
    fn malformed_commands_keep_their_id_when_they_have_one() {
        let ack =
            parse(br#"{"v":1,"id":"c-9","action":"explode"}"#, "d-1", NOW).expect_err("malformed");
        assert_eq!(ack.id, "c-9");
        assert_eq!(ack.error.map(|e| e.reason), Some("malformed".into()));
        let ack = parse(b"\xff", "d-1", NOW).expect_err("garbage");
        assert_eq!(ack.id, "");
    }

    #[test]
    fn the_log_remembers_ids_across_reopen_and_forgets_expired_ones() {
        let dir = std::env::temp_dir().join(format!("edge-agent-cmdlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("commands.jsonl");
        let device = DeviceId::parse("d-1").expect("id");
        {
            let mut log = CommandLog::open(&path, NOW).expect("open");
            log.begin_at("done", &device, NOW + 10_000, NOW)
                .expect("begin");
            let ack = CommandAck::new("done", "d-1", AckStatus::Done, NOW);
            log.finish_at(&ack, NOW + 10_000, NOW).expect("finish");
            log.begin_at("crashed", &device, NOW + 10_000, NOW)
                .expect("begin");
            log.begin_at("old", &device, NOW + 100, NOW).expect("begin");
        }
        // A torn last line (power cut mid-append) is skipped.
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"id\":\"tor").expect("write");
        // "old" expired 1 s ago: still inside the margin for a clock stepped back.
        let log = CommandLog::open(&path, NOW + 1100).expect("reopen");
        assert!(log.seen("old").is_some());
        drop(log);
        // Past the margin it is forgotten; the others, unexpired, are kept.
        let log = CommandLog::open(&path, NOW + 101 + EXPIRY_MARGIN_MS).expect("reopen");
        assert!(matches!(log.seen("done"), Some(Seen::Finished(a)) if a.status == AckStatus::Done));
        assert_eq!(log.seen("crashed"), Some(Seen::Interrupted));
        assert_eq!(log.seen("old"), None, "expired ids are forgotten");
        assert_eq!(log.len(), 2);
        assert_eq!(file_ids(&path), ["crashed", "done"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edge-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// The distinct ids in the log file, sorted.
    fn file_ids(path: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(path).expect("log");
        let mut ids: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<LogLine>(l).ok())
            .map(|l| l.id)
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    fn write_command(id: &str, expires_ms: i64) -> Command {
        command(&format!(
            r#"{{"v":1,"id":"{id}","expires_ms":{expires_ms},"action":"write","name":"setpoint_c","value":21.5}}"#
        ))
    }

    /// Runs a command through the log as the agent does: refused if seen, else checked, begun
    /// and finished. Returns the ack status and, for a refusal, its reason.
    fn run(log: &mut CommandLog, command: &Command, now_ms: i64) -> (AckStatus, String) {
        let device = DeviceId::parse("d-1").expect("id");
        if log.seen(&command.id).is_some() {
            return (AckStatus::Duplicate, String::new());
        }
        let day = Duration::from_secs(86_400);
        static PROFILE: std::sync::OnceLock<Profile> = std::sync::OnceLock::new();
        let profile = PROFILE.get_or_init(profile);
        if let Err(refusal) = check(command, "d-1", profile, now_ms, day) {
            let reason = refusal.error.map(|e| e.reason).unwrap_or_default();
            return (refusal.status, reason);
        }
        if let Err(e) = log.begin_at(&command.id, &device, command.expires_ms, now_ms) {
            return (AckStatus::Refused, format!("agent_busy: {e}"));
        }
        let ack = CommandAck::new(&command.id, "d-1", AckStatus::Done, now_ms);
        log.finish_at(&ack, command.expires_ms, now_ms)
            .expect("finish");
        (AckStatus::Done, String::new())
    }

    #[test]
    fn expired_ids_are_pruned_while_running_and_a_replayed_unexpired_id_stays_refused() {
        let dir = scratch("cmdlog-prune");
        let path = dir.join("commands.jsonl");
        let mut log = CommandLog::open(&path, NOW).expect("open");
        let short = write_command("short", NOW + 60_000);
        let long = write_command("long", NOW + 23 * 3_600_000);
        assert_eq!(run(&mut log, &short, NOW).0, AckStatus::Done);
        assert_eq!(run(&mut log, &long, NOW).0, AckStatus::Done);
        assert_eq!(log.len(), 2);

        // Just expired: still remembered (the margin), a replay is a duplicate.
        let later = NOW + 61_000;
        assert_eq!(log.prune(later), 0);
        assert_eq!(run(&mut log, &short, later).0, AckStatus::Duplicate);

        // Expired past the margin: the next command prunes it, in memory at once.
        let much_later = NOW + 60_001 + EXPIRY_MARGIN_MS;
        let next = write_command("next", much_later + 60_000);
        assert_eq!(run(&mut log, &next, much_later).0, AckStatus::Done);
        assert_eq!(log.seen("short"), None);
        assert_eq!(log.len(), 2);
        // A replay of the forgotten command is still refused: it has expired.
        assert_eq!(
            run(&mut log, &short, much_later),
            (AckStatus::Refused, "expired".to_owned())
        );
        // The unexpired one is still refused as a duplicate, after pruning and after a restart.
        assert_eq!(run(&mut log, &long, much_later).0, AckStatus::Duplicate);
        drop(log);
        let mut log = CommandLog::open(&path, much_later).expect("reopen");
        assert!(matches!(log.seen("long"), Some(Seen::Finished(_))));
        assert_eq!(run(&mut log, &long, much_later).0, AckStatus::Duplicate);
        assert_eq!(run(&mut log, &next, much_later).0, AckStatus::Duplicate);
        assert_eq!(file_ids(&path), ["long", "next"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_file_stays_bounded_under_a_stream_of_commands() {
        let dir = scratch("cmdlog-stream");
        let path = dir.join("commands.jsonl");
        let mut log = CommandLog::open(&path, NOW).expect("open");
        // One command a minute, each valid for ten minutes: at most 10 + 60 minutes of ids
        // are needed at any time (expiry plus margin).
        let needed = (600_000 + EXPIRY_MARGIN_MS) / 60_000 + 1;
        let mut largest = 0;
        let mut compactions = 0;
        let mut lines = log.file_lines();
        for n in 0..400_i64 {
            let now = NOW + n * 60_000;
            let command = write_command(&format!("c-{n}"), now + 600_000);
            assert_eq!(run(&mut log, &command, now).0, AckStatus::Done, "{n}");
            assert!(log.len() as i64 <= needed, "{} ids at {n}", log.len());
            let limit = log.len() * 2 + COMPACT_SLACK_LINES + 2;
            assert!(
                log.file_lines() <= limit,
                "{} lines at {n}",
                log.file_lines()
            );
            if log.file_lines() < lines {
                compactions += 1;
            }
            lines = log.file_lines();
            largest = largest.max(std::fs::metadata(&path).expect("size").len());
        }
        // 800 lines were appended; compaction kept the file to what is needed plus the slack,
        // and the file on disk is what the log counts.
        assert!(compactions >= 2, "{compactions} compactions");
        let text = std::fs::read_to_string(&path).expect("log");
        assert_eq!(text.lines().count(), log.file_lines());
        let most_lines = 2 * needed as u64 + COMPACT_SLACK_LINES as u64 + 2;
        assert!(largest < most_lines * 400, "{largest} bytes at most");
        assert!(!path.with_extension("jsonl.tmp").exists());
        // Everything still needed survived the compactions.
        let last = NOW + 399 * 60_000;
        let reopened = CommandLog::open(&path, last).expect("reopen");
        assert_eq!(reopened.len(), log.len());
        assert!(reopened.seen("c-399").is_some() && reopened.seen("c-330").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn at_the_cap_expired_ids_go_first_and_unexpired_ones_are_never_forgotten() {
        let dir = scratch("cmdlog-cap");
        let path = dir.join("commands.jsonl");
        let mut log = CommandLog::open(&path, NOW).expect("open").with_max_ids(4);
        // Four ids: two expire soon, two in an hour.
        for (id, expires) in [
            ("a", NOW + 1_000),
            ("b", NOW + 2_000),
            ("c", NOW + 3_600_000),
            ("d", NOW + 3_600_000),
        ] {
            assert_eq!(
                run(&mut log, &write_command(id, expires), NOW).0,
                AckStatus::Done
            );
        }
        // At the cap, past a's and b's expiry (inside the margin): the oldest expired goes.
        let now = NOW + 5_000;
        assert_eq!(
            run(&mut log, &write_command("e", now + 60_000), now).0,
            AckStatus::Done
        );
        assert_eq!(log.seen("a"), None);
        assert!(log.seen("b").is_some());
        assert_eq!(
            run(&mut log, &write_command("f", now + 60_000), now).0,
            AckStatus::Done
        );
        assert_eq!(log.seen("b"), None);
        // Now every id is unexpired: a new command is refused, none is forgotten.
        let (status, reason) = run(&mut log, &write_command("g", now + 60_000), now);
        assert_eq!(status, AckStatus::Refused);
        assert!(reason.starts_with("agent_busy"), "{reason}");
        assert_eq!(log.len(), 4);
        for id in ["c", "d", "e", "f"] {
            assert!(log.seen(id).is_some(), "{id}");
        }
        // Once e and f have expired, the next command is taken again.
        let later = now + 61_000;
        assert_eq!(
            run(&mut log, &write_command("g", later + 60_000), later).0,
            AckStatus::Done
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn far_expiries_and_clocks_do_not_overflow() {
        let p = profile();
        let day = Duration::from_secs(86_400);
        let far = write_command("far", i64::MAX);
        assert_eq!(
            reason(check(&far, "d-1", &p, i64::MIN, day)),
            "expiry_too_far"
        );
        let past = write_command("past", i64::MIN);
        assert_eq!(reason(check(&past, "d-1", &p, i64::MAX, day)), "expired");
        assert!(still_needed(i64::MAX, i64::MAX));
        assert!(!still_needed(i64::MIN, 0));
    }

    #[test]
    fn read_back_confirms_within_resolution() {
        let p = profile();
        let r = p.register("setpoint_c").expect("mapped");
        assert!(confirms(r, 21.5, 21.5));
        assert!(confirms(r, 21.53, 21.5));
        assert!(!confirms(r, 21.5, 20.0));
    }
}
