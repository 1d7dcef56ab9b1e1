//! The command lifecycle inside the running agent: a message on a device's `cmd` topic is
//! parsed and checked ([`crate::command`]), refused as a duplicate if its id is in the command
//! log, logged (fsynced) before it runs, handed to the device's task as a [`CommandJob`], and
//! its outcome recorded in the log and answered as a [`CommandAck`]. This module does no MQTT:
//! it returns [`Reply`]s, which the uplink publishes.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wire::{DeviceId, Topic, TopicKind};

use super::now_ms;
use crate::command::{self, AckStatus, CommandAck, CommandLog, CommandPlan, Seen};
use crate::config::{AgentConfig, Device};
use crate::modbus::DeviceError;

/// A command for a device task. Boxed on its way (`mpsc::Sender<Box<CommandJob>>`): each
/// device task's channel allocates its first block of slots when it is made, and commands are
/// rare, so a slot is a pointer rather than a whole job.
pub(super) struct CommandJob {
    pub(super) device: DeviceId,
    pub(super) plan: CommandPlan,
    pub(super) expires_ms: i64,
    pub(super) reply: oneshot::Sender<JobResult>,
}

/// What a device task did with a [`CommandJob`].
pub(super) enum JobResult {
    /// Written; the value read back.
    Written(f64),
    /// The fault reset was written; the fault code read after it.
    Reset(Option<f64>),
    /// The command expired while it waited for the device.
    Expired,
    Device(DeviceError),
}

/// An answered command on its way back to the uplink, to be recorded and acknowledged (boxed
/// on its way, as [`CommandJob`]).
pub(super) struct Answered {
    ack: CommandAck,
    expires_ms: i64,
}

/// An ack ready to publish: its topic (without the tenant prefix) and the ack.
pub(super) struct Reply {
    pub(super) topic: String,
    pub(super) ack: CommandAck,
}

/// A device commands may address.
struct Target {
    device: Device,
    /// `.../cmd/ack` of the device.
    ack_topic: String,
    /// The task that polls the device (its own, or its bus's).
    jobs: mpsc::Sender<Box<CommandJob>>,
}

/// The commands of one agent: the log of ids, the devices' tasks, and the channel on which
/// outcomes come back.
pub(super) struct Commands {
    log: CommandLog,
    /// By device id.
    targets: HashMap<String, Target>,
    max_expiry: Duration,
    answered: mpsc::Sender<Box<Answered>>,
}

impl Commands {
    /// `jobs`: the task of each polled device; outcomes come back on `answered`.
    pub(super) fn new(
        config: &AgentConfig,
        log: CommandLog,
        mut jobs: HashMap<DeviceId, mpsc::Sender<Box<CommandJob>>>,
        answered: mpsc::Sender<Box<Answered>>,
    ) -> Commands {
        let mut targets = HashMap::new();
        for device in &config.devices {
            let Some(jobs) = jobs.remove(&device.id) else {
                continue;
            };
            let ack_topic = Topic::new(
                device.township.clone(),
                device.id.to_string(),
                TopicKind::CommandAck,
            )
            .to_string();
            let target = Target {
                device: device.clone(),
                ack_topic,
                jobs,
            };
            targets.insert(device.id.to_string(), target);
        }
        Commands {
            log,
            targets,
            max_expiry: config.commands.max_expiry,
            answered,
        }
    }

    /// A message on a command topic. Returns the ack to publish now (a refusal, a duplicate, a
    /// device with too many commands waiting); an accepted command is answered later, through
    /// the `answered` channel and [`Commands::finish`].
    pub(super) fn receive(&mut self, topic: &str, payload: &[u8]) -> Option<Reply> {
        let now = now_ms();
        let Ok(parsed) = Topic::parse(topic) else {
            tracing::warn!(%topic, "message on an unexpected topic ignored");
            return None;
        };
        let target = match self.targets.get(parsed.id.as_str()) {
            Some(target) if parsed.kind == TopicKind::Command => target,
            _ => {
                tracing::warn!(%topic, "command for a device this box does not poll ignored");
                return None;
            }
        };
        let (command, plan) =
            match admit(&mut self.log, &target.device, payload, now, self.max_expiry) {
                Ok(admitted) => admitted,
                Err(refusal) => return self.reply(*refusal),
            };
        let device = target.device.id.as_str();
        let (reply, answer) = oneshot::channel();
        let mut ack = CommandAck::new(&command.id, device, AckStatus::Done, now);
        if let command::Action::Write { name, value } = &command.action {
            ack.name = Some(name.clone());
            ack.requested = Some(*value);
        }
        let job = Box::new(CommandJob {
            device: target.device.id.clone(),
            plan: plan.clone(),
            expires_ms: command.expires_ms,
            reply,
        });
        let expires_ms = command.expires_ms;
        if target.jobs.try_send(job).is_err() {
            ack.status = AckStatus::Failed;
            ack.error = Some(command::AckError {
                reason: "agent_busy".into(),
                message: "the device has too many commands waiting".into(),
            });
            return self.finish(Answered { ack, expires_ms });
        }
        let answered = self.answered.clone();
        tokio::spawn(async move {
            let result = answer.await;
            ack.ts_ms = now_ms();
            complete(&mut ack, &plan, result);
            let _ = answered.send(Box::new(Answered { ack, expires_ms })).await;
        });
        None
    }

    /// Records an answered command's outcome in the log; returns its ack to publish.
    pub(super) fn finish(&mut self, answered: Answered) -> Option<Reply> {
        if let Err(error) = self.log.finish(&answered.ack, answered.expires_ms) {
            tracing::error!(%error, id = %answered.ack.id, "command outcome could not be recorded");
        }
        self.reply(answered.ack)
    }

    /// The ack with its device's ack topic (none for a device this box does not poll).
    fn reply(&self, ack: CommandAck) -> Option<Reply> {
        let target = self.targets.get(&ack.device_id)?;
        Some(Reply {
            topic: target.ack_topic.clone(),
            ack,
        })
    }
}

/// Parses and checks a command for `device`, refuses an id seen before, and logs the id
/// (fsynced) before anything runs. Returns the command and what the device task must do, or
/// the refusal to send.
fn admit(
    log: &mut CommandLog,
    device: &Device,
    payload: &[u8],
    now: i64,
    max_expiry: Duration,
) -> Result<(command::Command, CommandPlan), Box<CommandAck>> {
    let id = device.id.as_str();
    let command = command::parse(payload, id, now)?;
    match log.seen(&command.id) {
        Some(Seen::Finished(first)) => {
            let mut ack = first;
            ack.status = AckStatus::Duplicate;
            ack.ts_ms = now;
            return Err(ack);
        }
        Some(Seen::Interrupted) => {
            let mut ack = CommandAck::new(&command.id, id, AckStatus::Duplicate, now);
            ack.error = Some(command::AckError {
                reason: "interrupted".into(),
                message: "the agent stopped while running this command; it is not run again".into(),
            });
            return Err(Box::new(ack));
        }
        None => {}
    }
    let plan = command::check(&command, id, &device.profile, now, max_expiry)?;
    if let Err(error) = log.begin(&command.id, &device.id, command.expires_ms) {
        tracing::error!(%error, "command log unwritable; command refused");
        return Err(Box::new(CommandAck::refused(
            &command.id,
            id,
            now,
            "agent_busy",
            format!("the agent cannot record the command: {error}"),
        )));
    }
    Ok((command, plan))
}

/// Completes an accepted command's ack from what the device task answered (or the task's
/// end without an answer).
fn complete(
    ack: &mut CommandAck,
    plan: &CommandPlan,
    result: Result<JobResult, oneshot::error::RecvError>,
) {
    match result {
        Ok(JobResult::Written(read_back)) => {
            ack.read_back = Some(read_back);
            if let CommandPlan::Write { register, value } = plan {
                if !command::confirms(register, *value, read_back) {
                    ack.status = AckStatus::Failed;
                    ack.error = Some(command::AckError {
                        reason: "readback_mismatch".into(),
                        message: format!("wrote {value} but read back {read_back}"),
                    });
                }
            }
        }
        Ok(JobResult::Reset(code)) => ack.fault_code_after = code,
        Ok(JobResult::Expired) => {
            ack.status = AckStatus::Refused;
            ack.error = Some(command::AckError {
                reason: "expired".into(),
                message: "the command expired while waiting for the device".into(),
            });
        }
        Ok(JobResult::Device(error)) => {
            ack.status = AckStatus::Failed;
            ack.error = Some(command::AckError {
                reason: "device_error".into(),
                message: format!("{} ({})", error, error.kind()),
            });
        }
        Err(_) => {
            ack.status = AckStatus::Failed;
            ack.error = Some(command::AckError {
                reason: "agent_busy".into(),
                message: "the device task stopped before answering".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::profile::Profile;

    const NOW: i64 = 1_796_000_000_000;

    fn write_plan(value: f64) -> CommandPlan {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles/aurora-ashp.toml");
        let profile = Profile::load(&path).expect("shipped profile");
        let register = profile
            .registers
            .iter()
            .find(|r| r.name == "setpoint_c")
            .cloned()
            .expect("setpoint register");
        CommandPlan::Write { register, value }
    }

    fn answered(
        plan: &CommandPlan,
        result: Result<JobResult, oneshot::error::RecvError>,
    ) -> CommandAck {
        let mut ack = CommandAck::new("c-1", "d-1", AckStatus::Done, NOW);
        complete(&mut ack, plan, result);
        ack
    }

    fn reason(ack: &CommandAck) -> Option<&str> {
        ack.error.as_ref().map(|e| e.reason.as_str())
    }

    #[test]
    fn a_write_read_back_as_written_is_done_and_a_different_read_back_failed() {
        let plan = write_plan(21.5);
        let done = answered(&plan, Ok(JobResult::Written(21.5)));
        assert_eq!(
            (done.status, done.read_back, reason(&done)),
            (AckStatus::Done, Some(21.5), None)
        );
        let mismatch = answered(&plan, Ok(JobResult::Written(19.0)));
        assert_eq!(mismatch.status, AckStatus::Failed);
        assert_eq!(reason(&mismatch), Some("readback_mismatch"));
        assert_eq!(mismatch.read_back, Some(19.0));
    }

    #[test]
    fn an_expired_job_is_refused_a_device_error_failed_and_a_lost_task_busy() {
        let plan = write_plan(21.5);
        let expired = answered(&plan, Ok(JobResult::Expired));
        assert_eq!(
            (expired.status, reason(&expired)),
            (AckStatus::Refused, Some("expired"))
        );
        let error = DeviceError::Timeout(Duration::from_millis(500));
        let failed = answered(&plan, Ok(JobResult::Device(error)));
        assert_eq!(
            (failed.status, reason(&failed)),
            (AckStatus::Failed, Some("device_error"))
        );
        let (reply, answer) = oneshot::channel::<JobResult>();
        drop(reply);
        let lost = answer.blocking_recv();
        let lost = answered(&plan, lost);
        assert_eq!(
            (lost.status, reason(&lost)),
            (AckStatus::Failed, Some("agent_busy"))
        );
    }

    #[test]
    fn a_fault_reset_reports_the_fault_code_read_after_it() {
        let plan = CommandPlan::FaultReset(crate::profile::FaultReset {
            kind: crate::profile::RegisterKind::Coil,
            address: 10,
            value: 1,
        });
        let reset = answered(&plan, Ok(JobResult::Reset(Some(0.0))));
        assert_eq!(
            (reset.status, reset.fault_code_after),
            (AckStatus::Done, Some(0.0))
        );
    }
}
