//! The local alarm's IO: the coil write through the coil device's own task (between its polls,
//! on its link, like a remote command) and the hook program, for the decisions of
//! [`crate::guard::Guard`].
//!
//! The coil follows the guard's level ([`Alarm::follow`] after every reading): a write that
//! failed (the device did not answer) is tried again at the next reading, and one write at a
//! time. The hook runs once per raised episode, without a shell, with the alert in its
//! environment, killed after its timeout; at most [`MAX_HOOKS_RUNNING`] at once (an outage
//! that stops every heater of the box raises one episode per device, not a flood).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wire::{DeviceId, EdgeAlert};

use super::commands::{CommandJob, JobResult};
use super::now_ms;
use crate::command::CommandPlan;
use crate::guard::{CoilConfig, HookConfig};
use crate::profile::{ByteOrder, Register, RegisterKind, ValueType, WordOrder};

/// Hooks that may run at once.
pub const MAX_HOOKS_RUNNING: u64 = 4;

/// How long a coil write may wait for the device's task.
const COIL_WRITE_EXPIRY_MS: i64 = 60_000;

/// The coil's known state.
const COIL_UNKNOWN: u8 = 0;
const COIL_OFF: u8 = 1;
const COIL_ON: u8 = 2;

/// Counters of the local alarm, for the health report.
#[derive(Debug, Default)]
pub struct AlarmCounters {
    pub coil_writes: AtomicU64,
    pub coil_failures: AtomicU64,
    pub hooks_run: AtomicU64,
    pub hook_failures: AtomicU64,
    /// Hooks not run because [`MAX_HOOKS_RUNNING`] were running.
    pub hooks_skipped: AtomicU64,
    pub hooks_running: AtomicU64,
}

/// The coil and the hook of one box.
pub(super) struct Alarm {
    coil: Option<Coil>,
    hook: Option<HookConfig>,
    agent_id: String,
    counters: Arc<AlarmCounters>,
}

struct Coil {
    device: DeviceId,
    register: Register,
    jobs: mpsc::Sender<Box<CommandJob>>,
    /// What the device last confirmed ([`COIL_ON`], [`COIL_OFF`], or unknown).
    state: Arc<AtomicU8>,
    writing: Arc<AtomicBool>,
    /// An `on` write was sent at least once: an unknown state may then be on.
    switched_on: AtomicBool,
}

impl Alarm {
    /// The alarm of a box; `jobs` is the coil device's command channel (when a coil is set).
    pub(super) fn new(
        coil: Option<&CoilConfig>,
        jobs: Option<mpsc::Sender<Box<CommandJob>>>,
        hook: Option<HookConfig>,
        agent_id: &str,
        counters: Arc<AlarmCounters>,
    ) -> Alarm {
        let coil = match (coil, jobs) {
            (Some(coil), Some(jobs)) => DeviceId::parse(&coil.device).ok().map(|device| Coil {
                device,
                register: Register {
                    name: "guard_alarm".into(),
                    kind: RegisterKind::Coil,
                    address: coil.address,
                    value_type: ValueType::Bool,
                    bit: 0,
                    word_order: WordOrder::Big,
                    byte_order: ByteOrder::Big,
                    scale: 1.0,
                    offset: 0.0,
                    unit: String::new(),
                    writable: None,
                },
                jobs,
                state: Arc::new(AtomicU8::new(COIL_UNKNOWN)),
                writing: Arc::new(AtomicBool::new(false)),
                switched_on: AtomicBool::new(false),
            }),
            _ => None,
        };
        Alarm {
            coil,
            hook,
            agent_id: agent_id.to_owned(),
            counters,
        }
    }

    /// Brings the coil to `on` unless it is there or a write is on its way. A coil the box
    /// never switched on stays untouched while the alarm is off (nothing to switch off); once
    /// it did, a state it does not know (a write that failed or read back otherwise) is
    /// switched off too.
    pub(super) fn follow(&self, on: bool) {
        let Some(coil) = &self.coil else {
            return;
        };
        let want = if on { COIL_ON } else { COIL_OFF };
        let state = coil.state.load(Ordering::Relaxed);
        let never_on = !coil.switched_on.load(Ordering::Relaxed);
        if state == want || (!on && state == COIL_UNKNOWN && never_on) {
            return;
        }
        if coil.writing.swap(true, Ordering::AcqRel) {
            return;
        }
        if on {
            coil.switched_on.store(true, Ordering::Relaxed);
        }
        let (reply, answer) = oneshot::channel();
        let job = Box::new(CommandJob {
            device: coil.device.clone(),
            plan: CommandPlan::Write {
                register: coil.register.clone(),
                value: if on { 1.0 } else { 0.0 },
            },
            expires_ms: now_ms() + COIL_WRITE_EXPIRY_MS,
            reply,
        });
        self.counters.coil_writes.fetch_add(1, Ordering::Relaxed);
        if let Err(error) = coil.jobs.try_send(job) {
            coil.writing.store(false, Ordering::Release);
            self.counters.coil_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(device = %coil.device, on, %error, "alarm coil write not queued; tried again at the next reading");
            return;
        }
        let (state, writing, counters) = (
            Arc::clone(&coil.state),
            Arc::clone(&coil.writing),
            Arc::clone(&self.counters),
        );
        let (device, address) = (coil.device.clone(), coil.register.address);
        tokio::spawn(async move {
            match answer.await {
                Ok(JobResult::Written(read_back)) if (read_back != 0.0) == on => {
                    state.store(want, Ordering::Relaxed);
                    tracing::info!(%device, address, on, "alarm coil switched");
                }
                Ok(JobResult::Written(read_back)) => {
                    state.store(COIL_UNKNOWN, Ordering::Relaxed);
                    counters.coil_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%device, address, on, read_back, "alarm coil reads back otherwise; tried again at the next reading");
                }
                Ok(JobResult::Device(error)) => {
                    state.store(COIL_UNKNOWN, Ordering::Relaxed);
                    counters.coil_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%device, address, on, %error, "alarm coil write failed; tried again at the next reading");
                }
                Ok(JobResult::Expired | JobResult::Reset(_)) | Err(_) => {
                    state.store(COIL_UNKNOWN, Ordering::Relaxed);
                    counters.coil_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%device, address, on, "alarm coil write not done; tried again at the next reading");
                }
            }
            writing.store(false, Ordering::Release);
        });
    }

    /// Runs the hook for a raised alert of `device` (in the background).
    pub(super) fn run_hook(&self, device: &DeviceId, alert: &EdgeAlert) {
        let Some(hook) = &self.hook else {
            return;
        };
        let running = self.counters.hooks_running.fetch_add(1, Ordering::AcqRel);
        if running >= MAX_HOOKS_RUNNING {
            self.counters.hooks_running.fetch_sub(1, Ordering::AcqRel);
            self.counters.hooks_skipped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%device, rule = %alert.rule_id, "alarm hook not run: {MAX_HOOKS_RUNNING} are running");
            return;
        }
        self.counters.hooks_run.fetch_add(1, Ordering::Relaxed);
        let mut command = tokio::process::Command::new(&hook.program);
        command
            .args(&hook.args)
            .env("HEATING_AGENT_ID", &self.agent_id)
            .env("HEATING_ALERT_DEVICE", device.as_str())
            .env("HEATING_ALERT_RULE", &alert.rule_id)
            .env("HEATING_ALERT_EPISODE", &alert.episode_id)
            .env("HEATING_ALERT_SUMMARY", &alert.summary)
            .env(
                "HEATING_ALERT_DOWN_MINUTES",
                (alert.uplink_down_ms / 60_000).to_string(),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let (timeout, counters) = (hook.timeout, Arc::clone(&self.counters));
        let (program, device, rule) = (
            hook.program.display().to_string(),
            device.clone(),
            alert.rule_id.clone(),
        );
        tokio::spawn(async move {
            let outcome = match command.spawn() {
                Ok(mut child) => match tokio::time::timeout(timeout, child.wait()).await {
                    Ok(Ok(status)) if status.success() => Ok(()),
                    Ok(Ok(status)) => Err(format!("exited with {status}")),
                    Ok(Err(error)) => Err(error.to_string()),
                    Err(_) => {
                        let _ = child.kill().await;
                        Err(format!("killed after {timeout:?}"))
                    }
                },
                Err(error) => Err(format!("cannot start: {error}")),
            };
            match outcome {
                Ok(()) => tracing::info!(%program, %device, %rule, "alarm hook ran"),
                Err(error) => {
                    counters.hook_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%program, %device, %rule, %error, "alarm hook failed");
                }
            }
            counters.hooks_running.fetch_sub(1, Ordering::AcqRel);
        });
    }
}
