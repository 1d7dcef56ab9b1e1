//! Helpers for the end-to-end tests: start the real `gateway`, `simulator` and `edge-agent`
//! binaries as separate processes on free ports, wait for their readiness lines, talk to their
//! HTTP APIs, and poll for conditions with a deadline.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;

/// Folder of the workspace's built binaries: `HEATING_BIN_DIR`, or the `target/<profile>`
/// folder this test binary was built into (`cargo test --workspace` builds every binary).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("HEATING_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe()?;
    // target/debug/deps/e2e-<hash> -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .ok_or_else(|| anyhow!("cannot find the target folder from {}", exe.display()))
}

/// Path of one of the workspace's binaries; a clear error if it was not built.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.exists() {
        bail!(
            "{} does not exist: build the workspace binaries first (`cargo build --workspace`)",
            path.display()
        );
    }
    Ok(path)
}

/// The repository root (for `profiles/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A fresh folder for one test's files, under the system temp dir.
pub fn scratch_dir(test: &str) -> anyhow::Result<PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("heating-e2e-{test}-{}-{n}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A child process that is killed when dropped. Its stderr goes to a log file in the scratch
/// folder, printed when a test fails through [`Proc::log`].
pub struct Proc {
    pub name: String,
    child: Child,
    log_path: PathBuf,
}

impl Proc {
    /// Starts `program` with `args`; stdout is read for one JSON line with `"event":"ready"`
    /// when `wait_ready` is set, which is returned.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[&str],
        dir: &Path,
        wait_ready: bool,
    ) -> anyhow::Result<(Proc, Option<Value>)> {
        let log_path = dir.join(format!("{name}.log"));
        let log = std::fs::File::create(&log_path)?;
        let mut child = Command::new(program)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout for {name}"))?;
        let mut proc = Proc {
            name: name.to_owned(),
            child,
            log_path,
        };
        if !wait_ready {
            // Drain stdout, so that the process never fails writing to a closed pipe.
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stdout).lines();
                while let Some(Ok(_)) = lines.next() {}
            });
            return Ok((proc, None));
        }
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            while let Some(Ok(line)) = lines.next() {
                if !sent {
                    if let Ok(value) = serde_json::from_str::<Value>(&line) {
                        if value["event"] == "ready" {
                            let _ = tx.send(value);
                            sent = true;
                        }
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(ready) => Ok((proc, Some(ready))),
            Err(_) => {
                let status = proc.child.try_wait().ok().flatten();
                bail!(
                    "{name} did not print its ready line (exit status {status:?}); log:\n{}",
                    proc.log()
                )
            }
        }
    }

    /// The process's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, as a power cut or the OOM killer would.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Waits for the process to exit by itself, up to `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > deadline {
                bail!("{} did not exit within {deadline:?}", self.name);
            }
            std::thread::park_timeout(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or fails after `deadline` with `what`.
pub async fn eventually<T, F, Fut>(
    what: &str,
    deadline: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let mut last_error = None;
    loop {
        ticks.tick().await;
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if start.elapsed() > deadline {
            bail!("timed out after {deadline:?} waiting for {what} (last error: {last_error:?})");
        }
    }
}

/// The operator token the test gateways accept.
pub const OPERATOR_TOKEN: &str = "e2e-operator-token-0123456789";

/// GET a JSON document with the operator token.
pub async fn get_json(client: &reqwest::Client, url: &str) -> anyhow::Result<Value> {
    let response = client.get(url).bearer_auth(OPERATOR_TOKEN).send().await?;
    let status = response.status();
    let body = response.text().await?;
    if !status.is_success() {
        bail!("GET {url}: {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET {url}: not JSON: {body}"))
}

/// The whole system: gateway, simulator and one edge agent polling every household.
pub struct System {
    pub dir: PathBuf,
    pub gateway: Proc,
    pub simulator: Proc,
    pub agent: Proc,
    pub gateway_http: String,
    pub gateway_mqtt: String,
    pub simulator_http: String,
    /// The simulator's manifest: one object per household.
    pub households: Vec<Value>,
    pub client: reqwest::Client,
}

impl System {
    /// Starts the three processes with `households` simulated households and waits until
    /// every household's device has reported through the gateway.
    pub async fn start(test: &str, households: usize, seed: u64) -> anyhow::Result<System> {
        let dir = scratch_dir(test)?;
        std::fs::write(
            dir.join("gateway.toml"),
            format!(
                "[broker]\nlisten = \"127.0.0.1:0\"\n\n[http]\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"gateway.sqlite\"\n\n[rules]\ntick = \"200ms\"\n\n\
                 [[api.tokens]]\nname = \"e2e\"\ntoken = \"{OPERATOR_TOKEN}\"\nrole = \"operator\"\n"
            ),
        )?;
        let (gateway, ready) = Proc::start(
            "gateway",
            &binary("gateway")?,
            &["run", "--config", "gateway.toml"],
            &dir,
            true,
        )?;
        let ready = ready.unwrap_or_default();
        let gateway_http = ready["http"].as_str().unwrap_or_default().to_owned();
        let gateway_mqtt = ready["mqtt"].as_str().unwrap_or_default().to_owned();

        let profiles = repo_root().join("profiles");
        let households_arg = households.to_string();
        let seed_arg = seed.to_string();
        let profiles_arg = profiles.display().to_string();
        let (simulator, ready) = Proc::start(
            "simulator",
            &binary("simulator")?,
            &[
                "serve",
                "--households",
                &households_arg,
                "--seed",
                &seed_arg,
                "--profiles",
                &profiles_arg,
                "--http",
                "127.0.0.1:0",
                "--manifest",
                "manifest.json",
            ],
            &dir,
            true,
        )?;
        let simulator_http = ready.unwrap_or_default()["http"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
        let households: Vec<Value> = manifest
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("manifest is not a list"))?;

        let (mqtt_host, mqtt_port) = gateway_mqtt
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("bad mqtt address {gateway_mqtt:?}"))?;
        let mut agent_config = format!(
            "agent_id = \"box-e2e\"\ntownship = \"yanqing\"\nprofiles_dir = \"{profiles_arg}\"\n\n[mqtt]\nhost = \"{mqtt_host}\"\nport = {mqtt_port}\nkeep_alive = \"5s\"\n\n[polling]\ninterval = \"500ms\"\n"
        );
        for household in &households {
            agent_config.push_str(&format!(
                "\n[[devices]]\nid = \"{}\"\ntownship = \"{}\"\nprofile = \"{}\"\nunit_id = {}\ntransport = {{ type = \"tcp\", address = \"{}\" }}\n",
                household["device_id"].as_str().unwrap_or_default(),
                household["township"].as_str().unwrap_or_default(),
                household["profile_id"].as_str().unwrap_or_default(),
                household["unit_id"].as_u64().unwrap_or(1),
                household["modbus_addr"].as_str().unwrap_or_default(),
            ));
        }
        std::fs::write(dir.join("agent.toml"), agent_config)?;
        let (agent, _) = Proc::start(
            "edge-agent",
            &binary("edge-agent")?,
            &["run", "--config", "agent.toml"],
            &dir,
            false,
        )?;

        let system = System {
            dir,
            gateway,
            simulator,
            agent,
            gateway_http,
            gateway_mqtt,
            simulator_http,
            households,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        };
        let expected = system.households.len();
        let devices_url = system.gateway_url("/api/v1/devices");
        eventually(
            "every household to report through the gateway",
            Duration::from_secs(30),
            || async {
                let devices = get_json(&system.client, &devices_url).await?;
                let reporting = devices
                    .as_array()
                    .map(|d| {
                        d.iter()
                            .filter(|d| d["readings"].as_u64() > Some(0))
                            .count()
                    })
                    .unwrap_or(0);
                Ok((reporting == expected).then_some(()))
            },
        )
        .await
        .map_err(|e| anyhow!("{e}\n{}", system.logs()))?;
        Ok(system)
    }

    pub fn gateway_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gateway_http)
    }

    pub fn simulator_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.simulator_http)
    }

    /// Every process's log, for failure messages.
    pub fn logs(&self) -> String {
        [&self.gateway, &self.simulator, &self.agent]
            .iter()
            .map(|p| format!("----- {} -----\n{}", p.name, p.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }
}
