//! The processes around the bench: helper services (mosquitto, victoria-metrics) started with
//! their output in a log file, free ports, the open-file limit, and what `/proc` says about a
//! process (memory, CPU time) and the machine (load average).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};

use super::options::{io, IngestError};
use super::poll::{poll_until, Patience};
use crate::bench::gateway::tail_of;

/// How often a starting service is tried for a connection.
const LISTEN_POLL: Duration = Duration::from_millis(20);
/// Longest a service may take to listen.
const LISTEN_DEADLINE: Duration = Duration::from_secs(20);

/// Raises this process's open-file limit to at least `needed` (children inherit it).
pub(super) fn raise_open_files(needed: u64) -> Result<(), IngestError> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| IngestError::Load(format!("cannot read the open-file limit: {e}")))?;
    if soft >= needed {
        return Ok(());
    }
    let new_hard = hard.max(needed);
    if setrlimit(Resource::RLIMIT_NOFILE, needed, new_hard).is_err() {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| {
            IngestError::Load(format!("cannot raise the open-file limit to {hard}: {e}"))
        })?;
        return Err(IngestError::Config(format!(
            "{needed} open files are needed (one per connection and a margin) but the limit is {hard} and cannot be raised (run as root or raise `ulimit -Hn`)"
        )));
    }
    tracing::info!(from = soft, to = needed, "open-file limit raised");
    Ok(())
}

/// A port free right now on loopback (bound, read, closed; handed to a child process).
pub(super) fn free_port() -> Result<u16, IngestError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(io("bind a free port on 127.0.0.1"))
}

/// `name` itself if it has a folder; else the first match on `PATH` or in the sbin folders
/// (Debian installs mosquitto in /usr/sbin, which a user's `PATH` may lack).
fn resolve_program(name: &Path) -> PathBuf {
    if name.components().count() > 1 {
        return name.to_path_buf();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| name.to_path_buf())
}

/// A helper process (mosquitto, victoria-metrics) with its output in a log file. Killed if
/// dropped without [`Service::stop`].
pub(super) struct Service {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Service {
    pub(super) fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        dir: &Path,
        hint: &str,
    ) -> Result<Service, IngestError> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).map_err(io(format!("create {}", log.display())))?;
        let stdout = file
            .try_clone()
            .map_err(io(format!("reopen {}", log.display())))?;
        let program = resolve_program(program);
        let child = Command::new(&program)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(file))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                IngestError::Service(format!(
                    "cannot start {name} ({}): {e} ({hint})",
                    program.display()
                ))
            })?;
        Ok(Service { name, child, log })
    }

    /// The process id as `/proc` names it, while the process runs.
    pub(super) fn pid(&self) -> Option<String> {
        self.child.id().map(|pid| pid.to_string())
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    pub(super) fn tail(&self) -> String {
        tail_of(&self.log, 20)
    }

    /// An error saying the service exited `during` something, with its log, if it did.
    pub(super) fn died(&mut self, during: &str) -> Option<IngestError> {
        self.exited().map(|status| {
            IngestError::Service(format!(
                "{} exited ({status}) {during}; its log ({}) ends:\n{}",
                self.name,
                self.log.display(),
                self.tail()
            ))
        })
    }

    /// SIGTERM, up to 10 s for a clean exit, then SIGKILL.
    pub(super) async fn stop(mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Some(pid) = self.child.id().and_then(|p| i32::try_from(p).ok()) {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).is_ok()
                && tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                    .await
                    .is_ok()
            {
                return;
            }
        }
        tracing::warn!(service = self.name, "no clean exit on SIGTERM; killing it");
        let _ = self.child.kill().await;
    }
}

/// Waits until something accepts TCP connections on `addr`; fails if the process dies first or
/// 20 s pass.
pub(super) async fn wait_listening(
    service: &mut Service,
    addr: SocketAddr,
) -> Result<(), IngestError> {
    let what = format!("{} to accept connections on {addr}", service.name);
    let during = format!("before it listened on {addr}");
    let listening = poll_until(
        &what,
        LISTEN_POLL,
        Patience::Total(LISTEN_DEADLINE),
        async |_| {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(Some(()));
            }
            service.died(&during).map_or(Ok(None), Err)
        },
    )
    .await;
    listening.map_err(|error| match error {
        IngestError::TimedOut(text) => {
            IngestError::Service(format!("{text}; its log ends:\n{}", service.tail()))
        }
        other => other,
    })
}

/// `VmRSS`, `VmHWM`... of a process, in KiB.
pub(super) fn proc_status_kib(pid: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// CPU time (user + system) a process has used so far, from `/proc/{pid}/stat`.
pub(super) fn proc_cpu_seconds(pid: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: the command may hold spaces, so fields count from the last `)`;
    // utime and stime are fields 14 and 15, the 12th and 13th after it.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)?;
    Some((utime + stime) as f64 / ticks as f64)
}

/// CPU seconds a process used between two readings of [`proc_cpu_seconds`].
pub(super) fn cpu_between(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some((after? - before?).max(0.0))
}

/// `/proc/loadavg`'s three averages (other work on the machine).
pub(super) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_proc_and_only_grows() {
        let before = proc_cpu_seconds("self").expect("this process's CPU time");
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = proc_cpu_seconds("self").expect("this process's CPU time");
        assert!(before >= 0.0 && after >= before, "{before} then {after}");
        assert_eq!(cpu_between(Some(2.0), Some(1.5)), Some(0.0));
        assert_eq!(cpu_between(None, Some(1.5)), None);
        assert_eq!(proc_cpu_seconds("no-such-process"), None);
    }
}
