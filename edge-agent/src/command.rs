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
//! even a crash mid-write does not run it twice) and never after `expires_ms`. Ids are kept until
//! their expiry has passed, which is bounded by `commands.max_expiry`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wire::DeviceId;

use crate::profile::{FaultReset, Profile, Register, ValueType};

/// Schema version of commands and acks.
pub const COMMAND_VERSION: u32 = 1;

/// Longest accepted command id.
pub const MAX_ID_LEN: usize = 128;

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
                now_ms - command.expires_ms,
                command.expires_ms
            ),
        ));
    }
    let horizon = i64::try_from(max_expiry.as_millis()).unwrap_or(i64::MAX);
    if command.expires_ms - now_ms > horizon {
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

/// Durable record of command ids: appended (and fsynced) when a command starts and when it ends;
/// compacted on open to the ids whose expiry has not passed.
#[derive(Debug)]
pub struct CommandLog {
    path: PathBuf,
    file: File,
    seen: HashMap<String, (i64, Option<CommandAck>)>,
}

impl CommandLog {
    /// Opens (or creates) the log; a torn last line is ignored.
    pub fn open(path: &Path, now_ms: i64) -> Result<CommandLog, CommandLogError> {
        let error = |source| CommandLogError {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        let mut seen: HashMap<String, (i64, Option<CommandAck>)> = HashMap::new();
        match File::open(path) {
            Ok(file) => {
                for (number, line) in BufReader::new(file).lines().enumerate() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<LogLine>(&line) {
                        Ok(entry) => {
                            let slot = seen.entry(entry.id).or_insert((entry.expires_ms, None));
                            if entry.outcome.is_some() {
                                slot.1 = entry.outcome;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), line = number + 1, error = %e, "unreadable line in the command log skipped")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(e)),
        }
        seen.retain(|_, (expires_ms, _)| *expires_ms >= now_ms);
        // Compact: rewrite what is still needed, then append from there.
        let tmp = path.with_extension("jsonl.tmp");
        {
            let mut out = File::create(&tmp).map_err(error)?;
            for (id, (expires_ms, outcome)) in &seen {
                let line = LogLine {
                    id: id.clone(),
                    device: outcome
                        .as_ref()
                        .map(|a| a.device_id.clone())
                        .unwrap_or_default(),
                    expires_ms: *expires_ms,
                    outcome: outcome.clone(),
                };
                let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
                bytes.push(b'\n');
                out.write_all(&bytes).map_err(error)?;
            }
            out.sync_all().map_err(error)?;
        }
        std::fs::rename(&tmp, path).map_err(error)?;
        let file = OpenOptions::new().append(true).open(path).map_err(error)?;
        Ok(CommandLog {
            path: path.to_owned(),
            file,
            seen,
        })
    }

    /// What is known of `id`, if it was seen.
    pub fn seen(&self, id: &str) -> Option<Seen> {
        self.seen.get(id).map(|(_, outcome)| match outcome {
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

    fn append(&mut self, line: &LogLine) -> Result<(), CommandLogError> {
        let mut bytes = serde_json::to_vec(line).unwrap_or_default();
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| CommandLogError {
                path: self.path.display().to_string(),
                source,
            })
    }

    /// Records that `id` starts now. Must succeed before the command runs.
    pub fn begin(
        &mut self,
        id: &str,
        device: &DeviceId,
        expires_ms: i64,
    ) -> Result<(), CommandLogError> {
        self.append(&LogLine {
            id: id.to_owned(),
            device: device.to_string(),
            expires_ms,
            outcome: None,
        })?;
        self.seen.insert(id.to_owned(), (expires_ms, None));
        Ok(())
    }

    /// Records how `id` ended.
    pub fn finish(&mut self, ack: &CommandAck, expires_ms: i64) -> Result<(), CommandLogError> {
        self.append(&LogLine {
            id: ack.id.clone(),
            device: ack.device_id.clone(),
            expires_ms,
            outcome: Some(ack.clone()),
        })?;
        self.seen
            .insert(ack.id.clone(), (expires_ms, Some(ack.clone())));
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
            log.begin("done", &device, NOW + 10_000).expect("begin");
            let ack = CommandAck::new("done", "d-1", AckStatus::Done, NOW);
            log.finish(&ack, NOW + 10_000).expect("finish");
            log.begin("crashed", &device, NOW + 10_000).expect("begin");
            log.begin("old", &device, NOW + 100).expect("begin");
        }
        // A torn last line (power cut mid-append) is skipped.
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"id\":\"tor").expect("write");
        let log = CommandLog::open(&path, NOW + 1000).expect("reopen");
        assert!(matches!(log.seen("done"), Some(Seen::Finished(a)) if a.status == AckStatus::Done));
        assert_eq!(log.seen("crashed"), Some(Seen::Interrupted));
        assert_eq!(log.seen("old"), None, "expired ids are forgotten");
        assert_eq!(log.len(), 2);
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
