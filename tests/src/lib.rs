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

/// The prefix of every scratch folder: `heating-e2e-{test}-{pid}-{n}`.
const SCRATCH_PREFIX: &str = "heating-e2e-";

/// A fresh folder for one test's files, under the system temp dir. A folder outlives its test
/// (a failing test's logs stay there to read) until the next test process starts: the folders
/// of test processes that have ended are removed then, so repeated runs do not fill the disk
/// (a full run leaves a few hundred MB; thirty runs once filled a CI machine's disk).
pub fn scratch_dir(test: &str) -> anyhow::Result<PathBuf> {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    SWEEP.call_once(remove_scratch_of_ended_processes);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{test}-{}-{n}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Removes the scratch folders whose test process (the pid in the name) no longer runs; the
/// folders of tests running beside this one are left alone.
fn remove_scratch_of_ended_processes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(SCRATCH_PREFIX) {
            continue;
        }
        // `…-{pid}-{n}`: the pid is the second field from the end.
        let Some(pid) = name.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            // Best effort: a folder another sweep removes first is no error.
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
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

/// Milliseconds since the Unix epoch by this machine's clock.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// A free loopback port, for a peer that must be told its port before it starts (mosquitto,
/// VictoriaMetrics) or a gateway that must come back on the same address after a restart;
/// everything else listens on port 0 and reports the port it took.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A test gateway's settings, written as `gateway.toml` into its folder. The default is the
/// embedded broker and HTTP on port 0 (the ready line reports the addresses taken), the store
/// `gateway.sqlite`, no `[rules]` or `[registry]` table and the API without tokens; a test sets
/// the fields its gateway needs otherwise.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The `[broker]` table with any sub-tables, as TOML.
    pub broker: String,
    /// The HTTP listener's address.
    pub http_listen: String,
    /// Lines added to the `[http]` table.
    pub http: String,
    /// The lines of the `[rules]` table; empty: no such table.
    pub rules: String,
    /// Imports the registry of the folder `registry` beside the config.
    pub registry: bool,
    /// The name of the one `[[api.tokens]]` entry, an operator with [`OPERATOR_TOKEN`]; `None`:
    /// `[api] auth = "disabled"`.
    pub operator: Option<String>,
    /// Further tables, appended as they are.
    pub extra: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            broker: "[broker]\nlisten = \"127.0.0.1:0\"\n".into(),
            http_listen: "127.0.0.1:0".into(),
            http: String::new(),
            rules: String::new(),
            registry: false,
            operator: None,
            extra: String::new(),
        }
    }
}

impl GatewayConfig {
    /// The default settings with an operator token named `name`.
    pub fn with_operator(name: &str) -> Self {
        GatewayConfig {
            operator: Some(name.into()),
            ..GatewayConfig::default()
        }
    }

    /// The settings as the text of `gateway.toml`.
    pub fn toml(&self) -> String {
        let mut text = format!(
            "{}\n[http]\nlisten = \"{}\"\n{}\n[store]\npath = \"gateway.sqlite\"\n\n",
            self.broker, self.http_listen, self.http
        );
        if !self.rules.is_empty() {
            text.push_str(&format!("[rules]\n{}\n", self.rules));
        }
        if self.registry {
            text.push_str("[registry]\nimport = \"registry\"\n\n");
        }
        match &self.operator {
            Some(name) => text.push_str(&format!(
                "[[api.tokens]]\nname = \"{name}\"\ntoken = \"{OPERATOR_TOKEN}\"\nrole = \"operator\"\n\n"
            )),
            None => text.push_str("[api]\nauth = \"disabled\"\n\n"),
        }
        text.push_str(&self.extra);
        text
    }

    /// Writes `gateway.toml` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::write(dir.join("gateway.toml"), self.toml())?;
        Ok(())
    }

    /// Writes `gateway.toml` into `dir` and starts the gateway there ([`start_gateway`]).
    pub fn start(&self, name: &str, dir: &Path) -> anyhow::Result<(Proc, Value)> {
        self.write(dir)?;
        start_gateway(name, dir)
    }
}

/// Starts the gateway of `dir/gateway.toml` (`name` names its log file) and waits for its
/// ready line, which is returned (`null` if it never came).
pub fn start_gateway(name: &str, dir: &Path) -> anyhow::Result<(Proc, Value)> {
    let (proc, ready) = Proc::start(
        name,
        &binary("gateway")?,
        &["run", "--config", "gateway.toml"],
        dir,
        true,
    )?;
    Ok((proc, ready.unwrap_or_default()))
}

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

/// One household of a test registry, with its one device. [`write_registry`] turns a list of
/// them into the CSV files a gateway imports (`[registry] import`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryHousehold {
    /// The device id, e.g. `yanqing-dongguan-0001`; its household is `hh-{device_id}`.
    pub device_id: String,
    /// A Yanqing township id, e.g. `yanqing`: the township the gateway takes the device's
    /// readings from.
    pub township: String,
    /// The township's name, e.g. 延庆镇 (the id when empty).
    pub township_name: String,
    /// The village id within its township, e.g. `dongguan`; the registry's village id is
    /// `{township}-{village}`, so a village always belongs to its township.
    pub village: String,
    /// The village's name, e.g. 东关村 (the id when empty).
    pub village_name: String,
    /// `heat_pump` or `gas_boiler`.
    pub kind: String,
    /// The register-map profile, e.g. `aurora-ashp`: its first word is the vendor (`aurora`)
    /// and, capitalised, the brand; the profile id is the model.
    pub profile: String,
    /// An elderly resident living alone.
    pub vulnerable: bool,
}

impl RegistryHousehold {
    /// A heat pump (`aurora-ashp`) in `village` of `township`, names left to the ids.
    pub fn new(device_id: &str, township: &str, village: &str) -> RegistryHousehold {
        RegistryHousehold {
            device_id: device_id.to_owned(),
            township: township.to_owned(),
            township_name: String::new(),
            village: village.to_owned(),
            village_name: String::new(),
            kind: "heat_pump".to_owned(),
            profile: "aurora-ashp".to_owned(),
            vulnerable: false,
        }
    }

    /// One entry of the simulator's manifest (`device_id`, `township`, `township_name`,
    /// `village`, `village_name`, `kind`, `profile_id`, `vulnerable`).
    pub fn from_manifest(household: &Value) -> anyhow::Result<RegistryHousehold> {
        let text = |key: &str| -> anyhow::Result<String> {
            household[key]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("manifest entry without {key}: {household}"))
        };
        Ok(RegistryHousehold {
            device_id: text("device_id")?,
            township: text("township")?,
            township_name: household["township_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            village: text("village")?,
            village_name: household["village_name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            kind: text("kind")?,
            profile: text("profile_id")?,
            vulnerable: household["vulnerable"].as_bool().unwrap_or(false),
        })
    }

    /// The registry's household id.
    pub fn household_id(&self) -> String {
        format!("hh-{}", self.device_id)
    }

    /// The registry's village id: `{township}-{village}`.
    pub fn village_id(&self) -> String {
        format!("{}-{}", self.township, self.village)
    }

    /// The vendor id: the profile's first word.
    pub fn vendor_id(&self) -> String {
        self.profile
            .split('-')
            .next()
            .filter(|v| !v.is_empty())
            .unwrap_or("vendor")
            .to_owned()
    }
}

/// One CSV field, quoted when it must be.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

fn csv_row(out: &mut String, fields: &[&str]) {
    let fields: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
    out.push_str(&fields.join(","));
    out.push('\n');
}

/// Writes a gateway registry holding exactly `households` into the folder `dir` (created if
/// missing): `townships.csv`, `villages.csv`, `vendors.csv`, `households.csv` and
/// `devices.csv`, one household per device, for a gateway.toml with `[registry]` `import`
/// pointing at `dir`. Townships, villages and vendors are the ones the households use.
///
/// Every household's `edge_box` column is empty (its box id is its household id, see
/// ARCHITECTURE.md "Broker security"): the registry is for publishers on the plain listener,
/// not under a tenant prefix. No teams are written, so orders stay unassigned. Devices are
/// installed on 2023-10-15 (in warranty). A device id listed twice is an error.
pub fn write_registry(dir: &Path, households: &[RegistryHousehold]) -> anyhow::Result<()> {
    use std::collections::{BTreeMap, BTreeSet};

    let mut seen = BTreeSet::new();
    let mut townships: BTreeMap<&str, &str> = BTreeMap::new();
    let mut villages: BTreeMap<String, (&str, &str)> = BTreeMap::new();
    let mut vendors: BTreeSet<String> = BTreeSet::new();
    for h in households {
        if !seen.insert(h.device_id.as_str()) {
            bail!("device {:?} is listed twice for the registry", h.device_id);
        }
        townships
            .entry(&h.township)
            .or_insert(name_or_id(&h.township_name, &h.township));
        villages
            .entry(h.village_id())
            .or_insert((&h.township, name_or_id(&h.village_name, &h.village)));
        vendors.insert(h.vendor_id());
    }

    let mut townships_csv = String::from("id,name\n");
    for (id, name) in &townships {
        csv_row(&mut townships_csv, &[id, name]);
    }
    let mut villages_csv = String::from("id,township_id,name\n");
    for (id, (township, name)) in &villages {
        csv_row(&mut villages_csv, &[id, township, name]);
    }
    let mut vendors_csv = String::from("id,name\n");
    for id in &vendors {
        csv_row(&mut vendors_csv, &[id, &capitalised(id)]);
    }
    let mut households_csv =
        String::from("id,village_id,address,resident,phone,vulnerable,edge_box\n");
    let mut devices_csv = String::from("id,household_id,kind,brand,model,vendor_id,installed_on\n");
    for (n, h) in households.iter().enumerate() {
        let household = h.household_id();
        let village_name = villages
            .get(&h.village_id())
            .map_or(h.village.as_str(), |(_, name)| name);
        csv_row(
            &mut households_csv,
            &[
                &household,
                &h.village_id(),
                &format!("{village_name}{}号", n + 1),
                &format!("住户{}", n + 1),
                &format!("138{:08}", n + 1),
                if h.vulnerable { "true" } else { "false" },
                "",
            ],
        );
        let vendor = h.vendor_id();
        csv_row(
            &mut devices_csv,
            &[
                &h.device_id,
                &household,
                &h.kind,
                &capitalised(&vendor),
                &h.profile,
                &vendor,
                "2023-10-15",
            ],
        );
    }

    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, text) in [
        ("townships.csv", townships_csv),
        ("villages.csv", villages_csv),
        ("vendors.csv", vendors_csv),
        ("households.csv", households_csv),
        ("devices.csv", devices_csv),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `name`, or `id` when the name is empty.
fn name_or_id<'a>(name: &'a str, id: &'a str) -> &'a str {
    if name.is_empty() {
        id
    } else {
        name
    }
}

/// `aurora` -> `Aurora`.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The `[[devices]]` tables of an edge agent config for the households of a simulator
/// manifest (each served over Modbus TCP at its `modbus_addr`).
pub fn agent_devices(households: &[Value]) -> String {
    let mut text = String::new();
    for household in households {
        text.push_str(&format!(
            "\n[[devices]]\nid = \"{}\"\ntownship = \"{}\"\nprofile = \"{}\"\nunit_id = {}\ntransport = {{ type = \"tcp\", address = \"{}\" }}\n",
            household["device_id"].as_str().unwrap_or_default(),
            household["township"].as_str().unwrap_or_default(),
            household["profile_id"].as_str().unwrap_or_default(),
            household["unit_id"].as_u64().unwrap_or(1),
            household["modbus_addr"].as_str().unwrap_or_default(),
        ));
    }
    text
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
    /// every household's device has reported through the gateway. The simulator starts first;
    /// its manifest becomes the gateway's registry ([`write_registry`], folder `registry`), so
    /// the gateway knows every simulated device and its township.
    pub async fn start(test: &str, households: usize, seed: u64) -> anyhow::Result<System> {
        let dir = scratch_dir(test)?;

        // The simulator first: its manifest says which devices the gateway's registry holds.
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

        // The gateway refuses telemetry of devices it does not know: its registry holds exactly
        // the simulated households.
        let registered = households
            .iter()
            .map(RegistryHousehold::from_manifest)
            .collect::<anyhow::Result<Vec<_>>>()?;
        write_registry(&dir.join("registry"), &registered)?;
        let (gateway, ready) = GatewayConfig {
            rules: "tick = \"200ms\"\n".into(),
            registry: true,
            ..GatewayConfig::with_operator("e2e")
        }
        .start("gateway", &dir)?;
        let gateway_http = ready["http"].as_str().unwrap_or_default().to_owned();
        let gateway_mqtt = ready["mqtt"].as_str().unwrap_or_default().to_owned();

        let (mqtt_host, mqtt_port) = gateway_mqtt
            .rsplit_once(':')
            .ok_or_else(|| anyhow!("bad mqtt address {gateway_mqtt:?}"))?;
        let mut agent_config = format!(
            "agent_id = \"box-e2e\"\ntownship = \"yanqing\"\nprofiles_dir = \"{profiles_arg}\"\n\n[mqtt]\nhost = \"{mqtt_host}\"\nport = {mqtt_port}\nkeep_alive = \"5s\"\n\n[polling]\ninterval = \"500ms\"\n"
        );
        agent_config.push_str(&agent_devices(&households));
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

/// The `demo` binary on a free port, killed when dropped; its stdout is drained so it never
/// blocks on a full pipe, its stderr (the log) written to `demo.log` in the test's folder.
pub struct Demo {
    child: Child,
    /// `http://127.0.0.1:PORT`, from the banner.
    pub base_url: String,
    log_path: PathBuf,
}

impl Demo {
    /// Starts the demo with `args` (households, fault and poll periods, crew...), its HTTP API
    /// on a free loopback port and its data in `dir/data`, and waits for its banner.
    pub fn start(dir: &Path, args: &[&str]) -> anyhow::Result<Demo> {
        let log_path = dir.join("demo.log");
        let mut child = Command::new(binary("demo")?)
            .args(args)
            .args(["--http", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .current_dir(dir)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log_path)?)
            .spawn()
            .context("cannot start the demo")?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("no stdout for the demo"))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // The banner line: `  HTTP API        http://127.0.0.1:PORT/api/v1/summary`.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line
                    .trim()
                    .strip_prefix("HTTP API")
                    .and_then(|rest| rest.trim().strip_suffix("/api/v1/summary"))
                {
                    let _ = tx.send(url.to_owned());
                }
            }
        });
        let mut demo = Demo {
            child,
            base_url: String::new(),
            log_path,
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => demo.base_url = url,
            Err(_) => bail!(
                "the demo printed no `HTTP API` banner line within 60 s (exit status {:?}); log:\n{}",
                demo.child.try_wait().ok().flatten(),
                demo.log()
            ),
        }
        Ok(demo)
    }

    /// The last 60 lines of the demo's log.
    pub fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod scratch_tests {
    use super::*;

    #[test]
    fn the_sweep_removes_folders_of_ended_processes_only() -> anyhow::Result<()> {
        // No process has this pid: Linux caps pids at 2^22.
        let ended = std::env::temp_dir().join(format!("{SCRATCH_PREFIX}sweep-test-4294967290-0"));
        std::fs::create_dir_all(ended.join("work"))?;
        let mine = scratch_dir("sweep-test")?;
        remove_scratch_of_ended_processes();
        assert!(!ended.exists(), "{} outlived its process", ended.display());
        assert!(mine.exists(), "this process's own folder was removed");
        Ok(())
    }
}
