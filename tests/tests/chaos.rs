//! Chaos suite ("Hold the trust boundary"): fault tolerance shown, not claimed. Under a steady
//! load of simulated households reporting through a real edge agent, each test breaks one
//! peer and checks what ARCHITECTURE.md ("Invariants") promises afterwards:
//!
//! 1. The gateway is SIGKILLed (power cut, OOM killer) and started again on the same ports,
//!    config, store and rule snapshot: every order is still there with its id and state, no
//!    device or episode has two orders, a rule timer that was pending in the snapshot fires at
//!    its original deadline (not one `for` after the restart), a fault whose order was stored
//!    after the last snapshot does not open a second order, the edge agent's readings resume
//!    on the same port, and once the faults are repaired no alert stays active (an alert stored
//!    after the last snapshot is set firing again from the store at start-up, or closed).
//! 2. The InfluxDB peer (Debian's VictoriaMetrics, which takes InfluxDB v2 writes) is stopped
//!    for a while: a fault raised during the outage still opens its order at once, and once the
//!    server is back the history of the outage is back-filled from the sink's buffer, every
//!    reading of every device (the agent's per-device `seq` has no hole), nothing dropped.
//! 3. In scale-out mode (`broker.mode = "external"`) Debian's mosquitto is SIGKILLed and
//!    started again under load: the same gateway process reconnects, resubscribes (mosquitto
//!    runs without persistence, so its sessions are gone), keeps taking readings and opens
//!    orders for faults raised after the restart.
//!
//! What a SIGKILL between two rule snapshots may lose, by design: readings the embedded broker
//! acknowledged (PUBACK) that ingest had not read yet (the agent's queue let them go on the
//! PUBACK), and rule-state changes after the last snapshot (`rules.snapshot_every`, 1 s here).
//! Neither can double an order: the episode id is a UNIQUE key and a device with an open order
//! links any later episode to it. A pending timer the snapshot holds survives; the fault is
//! still on the device, so its readings keep coming and the rule fires once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context as _};
use serde_json::{json, Value};
use tests::{
    binary, eventually, free_port, get_json, now_ms, repo_root, scratch_dir, start_gateway,
    write_registry, GatewayConfig, Proc, RegistryHousehold, OPERATOR_TOKEN,
};

/// Fault rule that fires at the first faulty reading.
const QUICK_RULE: &str = "quick_fault";
/// The fault category of [`QUICK_RULE`]: every profile (heat pumps and boilers) has a code.
const QUICK_CATEGORY: &str = "sensor_fault";
/// Fault rule that fires after the fault has been shown for [`SLOW_FOR_MS`]: its timer is
/// pending long enough to be in a snapshot when the gateway is killed.
const SLOW_RULE: &str = "slow_fault";
/// The fault category of [`SLOW_RULE`]: every profile has a code.
const SLOW_CATEGORY: &str = "freeze_protection";
const SLOW_FOR_MS: i64 = 15_000;

/// The rule file of every gateway here: only the two fault rules (no fleet rules, so no
/// village incident can suppress a device's order; no temperature rules the simulated weather
/// could trip).
fn rules_toml() -> String {
    format!(
        r#"[[rule]]
id = "{QUICK_RULE}"
description = "chaos: a sensor fault opens an order at once"
kind = "fault"
categories = ["{QUICK_CATEGORY}"]
for = "0s"
severity = "major"
action = {{ order = {{ category = "repair", priority = "high" }} }}

[[rule]]
id = "{SLOW_RULE}"
description = "chaos: freeze protection opens an order after it has been shown for a while"
kind = "fault"
categories = ["{SLOW_CATEGORY}"]
for = "{}s"
severity = "major"
action = {{ order = {{ category = "repair", priority = "high" }} }}
"#,
        SLOW_FOR_MS / 1000
    )
}

async fn listening(port: u16) -> anyhow::Result<Option<()>> {
    Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()
        .map(drop))
}

/// Sends SIGTERM with Debian's `kill` (no libc in this crate) and waits for the exit.
fn terminate(child: &mut Child, deadline: Duration) -> anyhow::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .context("cannot run kill")?;
    ensure!(status.success(), "kill -TERM failed: {status}");
    let start = Instant::now();
    while start.elapsed() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    bail!("process {} ignored SIGTERM for {deadline:?}", child.id())
}

/// The simulated households: the simulator process, its control API and its manifest.
struct Households {
    proc: Proc,
    http: String,
    manifest: Vec<Value>,
}

impl Households {
    fn start(dir: &Path, count: usize, seed: u64) -> anyhow::Result<Households> {
        let profiles = repo_root().join("profiles").display().to_string();
        let (proc, ready) = Proc::start(
            "simulator",
            &binary("simulator")?,
            &[
                "serve",
                "--households",
                &count.to_string(),
                "--seed",
                &seed.to_string(),
                "--profiles",
                &profiles,
                "--http",
                "127.0.0.1:0",
                "--manifest",
                "manifest.json",
            ],
            dir,
            true,
        )?;
        let http = ready.unwrap_or_default()["http"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json"))?)?;
        let manifest = manifest
            .as_array()
            .cloned()
            .ok_or_else(|| anyhow!("the manifest is not a list"))?;
        ensure!(manifest.len() == count, "{} households", manifest.len());
        Ok(Households {
            proc,
            http,
            manifest,
        })
    }

    fn device(&self, n: usize) -> String {
        self.manifest[n]["device_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn devices(&self) -> Vec<String> {
        (0..self.manifest.len()).map(|n| self.device(n)).collect()
    }

    /// Writes the gateway's registry (folder `registry`): exactly these households.
    fn write_registry(&self, dir: &Path) -> anyhow::Result<()> {
        let registered = self
            .manifest
            .iter()
            .map(RegistryHousehold::from_manifest)
            .collect::<anyhow::Result<Vec<_>>>()?;
        write_registry(&dir.join("registry"), &registered)
    }

    /// Raises a fault on a household through the simulator's control API.
    async fn inject(
        &self,
        client: &reqwest::Client,
        device: &str,
        category: &str,
    ) -> anyhow::Result<()> {
        let response = client
            .post(format!("http://{}/households/{device}/fault", self.http))
            .json(&json!({ "category": category }))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "fault injection on {device}: {}",
            response.status()
        );
        Ok(())
    }

    /// Repairs a household's fault through the simulator's control API.
    async fn repair(&self, client: &reqwest::Client, device: &str) -> anyhow::Result<()> {
        let response = client
            .delete(format!("http://{}/households/{device}/fault", self.http))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "repair of {device}: {}",
            response.status()
        );
        Ok(())
    }

    /// Starts one edge agent polling every household every 500 ms and publishing to the broker
    /// at `port`; it reconnects within about a second.
    fn start_agent(&self, dir: &Path, port: u16) -> anyhow::Result<Proc> {
        let profiles = repo_root().join("profiles").display().to_string();
        let mut config = format!(
            "agent_id = \"box-chaos\"\ntownship = \"yanqing\"\nprofiles_dir = \"{profiles}\"\n\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nkeep_alive = \"5s\"\nmax_reconnect_backoff = \"1s\"\n\n\
             [polling]\ninterval = \"500ms\"\n"
        );
        config.push_str(&tests::agent_devices(&self.manifest));
        std::fs::write(dir.join("agent.toml"), config)?;
        let (agent, _) = Proc::start(
            "edge-agent",
            &binary("edge-agent")?,
            &["run", "--config", "agent.toml"],
            dir,
            false,
        )?;
        Ok(agent)
    }
}

/// Writes `gateway.toml` into `dir`: the given `[broker]` section, HTTP on `http_port`, the
/// store, the chaos rules (snapshot every second), the registry, the operator token, and
/// `extra` sections.
fn write_gateway_config(
    dir: &Path,
    broker: &str,
    http_port: u16,
    extra: &str,
) -> anyhow::Result<()> {
    std::fs::write(dir.join("chaos-rules.toml"), rules_toml())?;
    GatewayConfig {
        broker: format!("{broker}\n"),
        http_listen: format!("127.0.0.1:{http_port}"),
        rules: "path = \"chaos-rules.toml\"\ntick = \"200ms\"\nlateness = \"1s\"\nsnapshot_every = \"1s\"\nsnapshot_path = \"rules-snapshot.json\"\n".into(),
        registry: true,
        extra: extra.into(),
        ..GatewayConfig::with_operator("chaos")
    }
    .write(dir)
}

/// One work order as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Order {
    id: i64,
    device: String,
    episode: Option<String>,
    state: String,
    created_at_ms: i64,
}

impl Order {
    fn is_open(&self) -> bool {
        !matches!(self.state.as_str(), "closed" | "cancelled" | "merged")
    }
}

/// A gateway's HTTP API, with the operator token.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    http: String,
}

impl Api {
    fn new(http: &str) -> anyhow::Result<Api> {
        Ok(Api {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
            http: http.to_owned(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// Every order, any state.
    async fn orders(&self) -> anyhow::Result<Vec<Order>> {
        let list = get_json(&self.client, &self.url("/api/v1/orders?limit=10000")).await?;
        let list = list
            .as_array()
            .ok_or_else(|| anyhow!("orders: not a list: {list}"))?;
        list.iter()
            .map(|o| {
                Ok(Order {
                    id: o["id"].as_i64().ok_or_else(|| anyhow!("order id: {o}"))?,
                    device: o["device_id"].as_str().unwrap_or_default().to_owned(),
                    episode: o["episode_id"].as_str().map(str::to_owned),
                    state: o["state"].as_str().unwrap_or_default().to_owned(),
                    created_at_ms: o["created_at_ms"].as_i64().unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Each device's orders.
    async fn orders_by_device(&self) -> anyhow::Result<BTreeMap<String, Vec<Order>>> {
        let mut by_device: BTreeMap<String, Vec<Order>> = BTreeMap::new();
        for order in self.orders().await? {
            by_device
                .entry(order.device.clone())
                .or_default()
                .push(order);
        }
        Ok(by_device)
    }

    /// Readings each device has reported since this gateway process started.
    async fn readings(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let devices = get_json(&self.client, &self.url("/api/v1/devices")).await?;
        Ok(devices
            .as_array()
            .ok_or_else(|| anyhow!("devices: not a list: {devices}"))?
            .iter()
            .map(|d| {
                (
                    d["device_id"].as_str().unwrap_or_default().to_owned(),
                    d["readings"].as_u64().unwrap_or(0),
                )
            })
            .collect())
    }

    /// `/metrics` (it needs the token).
    async fn metrics(&self) -> anyhow::Result<String> {
        let response = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "/metrics: {}",
            response.status()
        );
        Ok(response.text().await?)
    }

    /// Waits until each of `devices` has reported at least `more` readings beyond `since`
    /// (a device missing from `since` counts from 0).
    async fn readings_grow(
        &self,
        what: &str,
        devices: &[String],
        since: &BTreeMap<String, u64>,
        more: u64,
        deadline: Duration,
    ) -> anyhow::Result<BTreeMap<String, u64>> {
        eventually(what, deadline, || async {
            let now = self.readings().await?;
            let behind: Vec<&String> = devices
                .iter()
                .filter(|d| {
                    now.get(*d).copied().unwrap_or(0) < since.get(*d).copied().unwrap_or(0) + more
                })
                .collect();
            ensure!(
                behind.is_empty(),
                "{} devices behind, e.g. {:?}",
                behind.len(),
                behind.first()
            );
            Ok(Some(now))
        })
        .await
    }

    /// Waits until each of `devices` has at least one order.
    async fn orders_for(
        &self,
        what: &str,
        devices: &[String],
        deadline: Duration,
    ) -> anyhow::Result<BTreeMap<String, Vec<Order>>> {
        eventually(what, deadline, || async {
            let by_device = self.orders_by_device().await?;
            let missing: Vec<&String> = devices
                .iter()
                .filter(|d| !by_device.contains_key(*d))
                .collect();
            ensure!(missing.is_empty(), "no order yet for {missing:?}");
            Ok(Some(by_device))
        })
        .await
    }
}

/// The value of the metric line that starts with `name ` (name including any labels).
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Checks the orders invariants over a whole order list: one order per episode, at most one
/// open order per device.
fn assert_no_doubles(orders: &[Order]) {
    let mut episodes: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    let mut open: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for order in orders {
        if let Some(episode) = &order.episode {
            episodes.entry(episode).or_default().push(order.id);
        }
        if order.is_open() {
            open.entry(&order.device).or_default().push(order.id);
        }
    }
    let doubled: Vec<_> = episodes.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(doubled.is_empty(), "episodes with two orders: {doubled:?}");
    let doubled: Vec<_> = open.iter().filter(|(_, ids)| ids.len() > 1).collect();
    assert!(
        doubled.is_empty(),
        "devices with two open orders: {doubled:?}"
    );
}

/// The rule state of `rule` for each device in the snapshot file (missing: idle), with the
/// device's last evaluated reading time.
fn snapshot_states(path: &Path, rule: &str) -> anyhow::Result<BTreeMap<String, (Value, i64)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let snapshot: Value = serde_json::from_str(&text)?;
    Ok(snapshot["devices"]
        .as_array()
        .ok_or_else(|| anyhow!("snapshot without devices"))?
        .iter()
        .map(|d| {
            (
                d["device_id"].as_str().unwrap_or_default().to_owned(),
                (
                    d["alerts"][rule].clone(),
                    d["last_ts_ms"].as_i64().unwrap_or_default(),
                ),
            )
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_gateway_comes_back_with_every_order_once_and_its_pending_timers(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = scratch_dir("chaos-sigkill")?;
    let households = Households::start(&dir, 30, 41)?;
    households.write_registry(&dir)?;
    let mqtt_port = free_port()?;
    let http_port = free_port()?;
    // Fixed (free) ports in the config file, so the restarted gateway listens where the agent
    // reconnects and where this test's client looks.
    write_gateway_config(
        &dir,
        &format!("[broker]\nlisten = \"127.0.0.1:{mqtt_port}\""),
        http_port,
        "",
    )?;
    let (mut gateway, ready) = start_gateway("gateway", &dir)?;
    assert_eq!(ready["mqtt"], format!("127.0.0.1:{mqtt_port}"), "{ready}");
    let _agent = households.start_agent(&dir, mqtt_port)?;
    let api = Api::new(&format!("127.0.0.1:{http_port}"))?;
    let devices = households.devices();
    let logs = |gateway: &Proc| format!("{}\n{}", gateway.log(), households.proc.log());
    api.readings_grow(
        "every household to report",
        &devices,
        &BTreeMap::new(),
        1,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;

    // Group A: faults whose orders are open well before the kill; one of them is cancelled by
    // the operator, so the store holds more than one state.
    let group_a = &devices[0..5];
    let group_b = &devices[5..10];
    let group_c = &devices[10..15];
    for device in group_a {
        households
            .inject(&api.client, device, QUICK_CATEGORY)
            .await?;
    }
    let by_device = api
        .orders_for("the orders of group A", group_a, Duration::from_secs(20))
        .await
        .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    let cancelled = by_device[&group_a[0]][0].id;
    let response = api
        .client
        .post(api.url(&format!("/api/v1/orders/{cancelled}/cancel")))
        .bearer_auth(OPERATOR_TOKEN)
        .json(&json!({ "reason": "chaos: the resident reset the unit" }))
        .send()
        .await?;
    ensure!(
        response.status().is_success(),
        "cancel: {}",
        response.status()
    );

    // Group B: faults of the slow rule, pending in the snapshot file (with 6 s of readings
    // evaluated since the timer started) when the gateway dies.
    for device in group_b {
        households
            .inject(&api.client, device, SLOW_CATEGORY)
            .await?;
    }
    let snapshot_path = dir.join("rules-snapshot.json");
    let pending_since: BTreeMap<String, i64> = eventually(
        "the slow rule's timers of group B pending in the snapshot file",
        Duration::from_secs(20),
        || async {
            let states = snapshot_states(&snapshot_path, SLOW_RULE)?;
            let mut since = BTreeMap::new();
            for device in group_b {
                let (state, last_ts_ms) = states
                    .get(device)
                    .ok_or_else(|| anyhow!("{device} is not in the snapshot"))?;
                ensure!(state["state"] == "pending", "{device}: {state}");
                let since_ms = state["since_ms"].as_i64().unwrap_or_default();
                ensure!(
                    *last_ts_ms >= since_ms + 6_000,
                    "{device}: pending for {} ms of readings",
                    last_ts_ms - since_ms
                );
                since.insert(device.clone(), since_ms);
            }
            Ok(Some(since))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;

    // Group C: faults raised just before the kill; the kill comes as soon as the first of
    // their orders is stored, so it is likely newer than the last snapshot (the crash window).
    for device in group_c {
        households
            .inject(&api.client, device, QUICK_CATEGORY)
            .await?;
    }
    eventually(
        "a first order of group C",
        Duration::from_secs(20),
        || async {
            let by_device = api.orders_by_device().await?;
            Ok(group_c
                .iter()
                .any(|d| by_device.contains_key(d))
                .then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    let before = api.orders().await?;
    gateway.kill()?;
    let killed_ms = now_ms();
    let killed_at = Instant::now();
    assert_no_doubles(&before);
    for order in &before {
        assert!(
            !group_b.contains(&order.device),
            "the slow rule fired before the kill: {order:?}"
        );
    }
    // What the last snapshot knew about group C (for the failure message).
    let c_in_snapshot: Vec<(String, Value)> = {
        let states = snapshot_states(&snapshot_path, QUICK_RULE)?;
        group_c
            .iter()
            .map(|d| {
                (
                    d.clone(),
                    states.get(d).map(|s| s.0.clone()).unwrap_or_default(),
                )
            })
            .collect()
    };

    // The same config, store, snapshot and ports.
    let (gateway, ready) = start_gateway("gateway-restarted", &dir)?;
    assert_eq!(ready["mqtt"], format!("127.0.0.1:{mqtt_port}"), "{ready}");
    let restart_took = killed_at.elapsed();
    assert!(
        gateway
            .log()
            .contains("rule state restored from the snapshot file"),
        "{}",
        gateway.log()
    );

    // The agent is back: every device reports to the new process, and keeps reporting.
    let first = api
        .readings_grow(
            "every household to report after the restart",
            &devices,
            &BTreeMap::new(),
            1,
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    let faulty: Vec<String> = group_a
        .iter()
        .chain(group_b)
        .chain(group_c)
        .cloned()
        .collect();
    api.orders_for(
        "an order for every faulty device after the restart",
        &faulty,
        Duration::from_millis(SLOW_FOR_MS as u64 + 20_000),
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    // A few more polls of every (still faulty) device: nothing else may open.
    api.readings_grow(
        "more readings after the restart",
        &devices,
        &first,
        4,
        Duration::from_secs(20),
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    let after = api.orders().await?;

    // Nothing lost: every order of before, same id, device, episode and state.
    let after_by_id: BTreeMap<i64, &Order> = after.iter().map(|o| (o.id, o)).collect();
    for order in &before {
        assert_eq!(
            after_by_id.get(&order.id),
            Some(&order),
            "order {} changed",
            order.id
        );
    }
    assert_eq!(after_by_id[&cancelled].state, "cancelled");
    // Nothing doubled: exactly one order per faulty device, none for the healthy ones.
    assert_no_doubles(&after);
    let mut per_device: BTreeMap<&str, Vec<&Order>> = BTreeMap::new();
    for order in &after {
        per_device.entry(&order.device).or_default().push(order);
    }
    let expected: BTreeSet<&str> = faulty.iter().map(String::as_str).collect();
    assert_eq!(
        per_device.keys().copied().collect::<BTreeSet<_>>(),
        expected,
        "devices with orders: {after:?}"
    );
    for (device, orders) in &per_device {
        assert_eq!(
            orders.len(),
            1,
            "{device} has {} orders: {orders:?}; group C in the last snapshot: {c_in_snapshot:?}",
            orders.len()
        );
    }
    // The pending timers were restored, not started again: each group-B order fired `for`
    // after the timer's start in the snapshot, give or take a poll. A timer started again by
    // the restarted gateway could only start at a reading it took in: one the agent sent
    // again (unacknowledged at the kill, a second or two older than the kill at most) or a
    // newer one; the snapshot had evaluated 6 s past the start, so that firing would come
    // more than `for` + 5 s after the start.
    for device in group_b {
        let order = per_device[device.as_str()][0];
        let since = pending_since[device];
        let waited = order.created_at_ms - since;
        assert!(
            (SLOW_FOR_MS..SLOW_FOR_MS + 3_000).contains(&waited),
            "{device}: fired {waited} ms after its timer started at {since} (killed at {killed_ms}): {order:?}"
        );
        assert_eq!(
            order.episode.as_deref(),
            Some(format!("{SLOW_RULE}:{device}:{}", order.created_at_ms).as_str())
        );
    }
    // Every alert ends once its fault is repaired, those stored after the last snapshot too (the
    // restart set them firing again from the store, or closed them): none stays active for ever.
    for device in group_a.iter().chain(group_b).chain(group_c) {
        households.repair(&api.client, device).await?;
    }
    eventually(
        "every alert resolved after the repairs",
        Duration::from_secs(30),
        || async {
            let active = get_json(&api.client, &api.url("/api/v1/alerts?active=true")).await?;
            let active = active.as_array().cloned().unwrap_or_default();
            ensure!(active.is_empty(), "still active: {active:?}");
            Ok(Some(()))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    eprintln!(
        "sigkill: restart took {restart_took:?}; {} orders before the kill, {} after; group C in the last snapshot: {c_in_snapshot:?}; {:?} in all",
        before.len(),
        after.len(),
        started.elapsed()
    );
    Ok(())
}

/// Debian's VictoriaMetrics on `port`, storing into `storage`.
struct Vm {
    child: Child,
}

impl Vm {
    fn start(port: u16, storage: &Path) -> anyhow::Result<Vm> {
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", storage.display()))
            .arg("-loggerLevel=ERROR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow!("cannot start victoria-metrics (apt-get install victoria-metrics): {e}")
            })?;
        Ok(Vm { child })
    }

    /// SIGTERM, as an operator or systemd stops it: it keeps what it acknowledged.
    fn stop(&mut self) -> anyhow::Result<()> {
        terminate(&mut self.child, Duration::from_secs(20))
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn vm_healthy(client: &reqwest::Client, base: &str) -> anyhow::Result<Option<()>> {
    Ok(client
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
        .then_some(()))
}

/// Every sample of `metric` stored in VictoriaMetrics: (labels, timestamp ms, value), after
/// making it flush what it holds in memory.
async fn vm_samples(
    client: &reqwest::Client,
    base: &str,
    metric: &str,
) -> anyhow::Result<Vec<(Value, i64, f64)>> {
    client
        .get(format!("{base}/internal/force_flush"))
        .send()
        .await?;
    let text = client
        .get(format!("{base}/api/v1/export"))
        .query(&[("match[]", metric)])
        .send()
        .await?
        .text()
        .await?;
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let series: Value = serde_json::from_str(line)?;
        let timestamps = series["timestamps"].as_array().cloned().unwrap_or_default();
        let values = series["values"].as_array().cloned().unwrap_or_default();
        for (ts, value) in timestamps.iter().zip(&values) {
            samples.push((
                series["metric"].clone(),
                ts.as_i64().unwrap_or_default(),
                value.as_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    Ok(samples)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_written_while_influxdb_is_down_is_back_filled_and_orders_do_not_wait(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = scratch_dir("chaos-influx")?;
    let storage = dir.join("victoria-metrics");
    let vm_port = free_port()?;
    let vm_base = format!("http://127.0.0.1:{vm_port}");
    let vm_client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut vm = Vm::start(vm_port, &storage)?;
    eventually("VictoriaMetrics to start", Duration::from_secs(30), || {
        vm_healthy(&vm_client, &vm_base)
    })
    .await?;

    let households = Households::start(&dir, 20, 43)?;
    households.write_registry(&dir)?;
    let http_port = free_port()?;
    write_gateway_config(
        &dir,
        "[broker]\nlisten = \"127.0.0.1:0\"",
        http_port,
        &format!(
            "[influxdb]\nurl = \"{vm_base}\"\nflush_every = \"200ms\"\nmax_backoff = \"1s\"\ntimeout = \"2s\"\nmax_buffer = 100000\n"
        ),
    )?;
    let (gateway, ready) = start_gateway("gateway", &dir)?;
    let mqtt = ready["mqtt"].as_str().unwrap_or_default();
    let mqtt_port: u16 = mqtt
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| anyhow!("bad mqtt address {ready}"))?;
    let _agent = households.start_agent(&dir, mqtt_port)?;
    let api = Api::new(&format!("127.0.0.1:{http_port}"))?;
    let devices = households.devices();
    let logs = || format!("{}\n{}", gateway.log(), households.proc.log());
    api.readings_grow(
        "every household to report",
        &devices,
        &BTreeMap::new(),
        1,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs()))?;
    eventually("history to be written", Duration::from_secs(20), || async {
        let text = api.metrics().await?;
        Ok(
            (metric(&text, "gateway_influx_points_written_total").unwrap_or(0.0) > 0.0)
                .then_some(()),
        )
    })
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs()))?;

    // The outage.
    let before_outage = api.readings().await?;
    let failures_before =
        metric(&api.metrics().await?, "gateway_influx_write_failures_total").unwrap_or(0.0);
    vm.stop()?;
    let down_ms = now_ms();
    let down_at = Instant::now();

    // Rules and orders do not wait for history: a fault raised now opens its order as fast as
    // ever (the quick rule fires at the reading, a second or two with lateness and polling).
    let faulty = households.device(3);
    households
        .inject(&api.client, &faulty, QUICK_CATEGORY)
        .await?;
    let order = api
        .orders_for(
            "the order of a fault raised while InfluxDB is down",
            std::slice::from_ref(&faulty),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| anyhow!("{e}\n{}", logs()))?;
    let order = order[&faulty][0].clone();
    // Let the outage span a few seconds of every device's readings, and the sink notice it.
    api.readings_grow(
        "readings during the outage",
        &devices,
        &before_outage,
        8,
        Duration::from_secs(30),
    )
    .await?;
    eventually(
        "the sink to fail writing",
        Duration::from_secs(20),
        || async {
            let text = api.metrics().await?;
            let failures = metric(&text, "gateway_influx_write_failures_total").unwrap_or(0.0);
            let buffered = metric(&text, "gateway_influx_buffered_points").unwrap_or(0.0);
            Ok((failures > failures_before && buffered > 0.0).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs()))?;
    let orders_during_outage = api.orders().await?;
    assert_eq!(orders_during_outage, vec![order.clone()]);

    // Back on the same port and storage.
    let up_ms = now_ms();
    let outage = down_at.elapsed();
    let mut vm = Vm::start(vm_port, &storage)?;
    eventually(
        "VictoriaMetrics to restart",
        Duration::from_secs(30),
        || vm_healthy(&vm_client, &vm_base),
    )
    .await?;

    // Back-filled: every device has history from before the outage to after it, and its
    // readings' sequence numbers (the agent's, +1 per reading) have no hole in between.
    let window = (down_ms - 2_000, up_ms + 2_000);
    let per_device = eventually(
        "the outage's history in VictoriaMetrics",
        Duration::from_secs(30),
        || async {
            let samples = vm_samples(&vm_client, &vm_base, "telemetry_seq").await?;
            let mut per_device: BTreeMap<String, BTreeMap<i64, i64>> = BTreeMap::new();
            for (labels, ts, seq) in samples {
                if (window.0..=window.1).contains(&ts) {
                    per_device
                        .entry(labels["device_id"].as_str().unwrap_or_default().to_owned())
                        .or_default()
                        .insert(seq as i64, ts);
                }
            }
            for device in &devices {
                let seqs = per_device
                    .get(device)
                    .ok_or_else(|| anyhow!("no history of {device} in the window"))?;
                let first_ts = seqs.values().min().copied().unwrap_or_default();
                let last_ts = seqs.values().max().copied().unwrap_or_default();
                ensure!(
                    first_ts <= down_ms && last_ts >= up_ms,
                    "{device}: history from {first_ts} to {last_ts}, outage {down_ms}..{up_ms}"
                );
            }
            Ok(Some(per_device))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs()))?;
    let mut back_filled = 0;
    for (device, seqs) in &per_device {
        let (first, last) = (
            seqs.keys().next().copied().unwrap_or_default(),
            seqs.keys().last().copied().unwrap_or_default(),
        );
        let holes: Vec<i64> = (first..=last).filter(|s| !seqs.contains_key(s)).collect();
        assert!(
            holes.is_empty(),
            "{device}: readings {first}..={last} have holes at {holes:?}"
        );
        back_filled += seqs
            .values()
            .filter(|ts| (down_ms..up_ms).contains(*ts))
            .count();
    }
    // The alert of the fault raised during the outage is in the history too.
    let alerts = vm_samples(&vm_client, &vm_base, "alerts_active").await?;
    assert!(
        alerts.iter().any(
            |(labels, ts, active)| labels["device_id"] == faulty.as_str()
                && labels["rule"] == QUICK_RULE
                && *active == 1.0
                && (down_ms..up_ms).contains(ts)
        ),
        "no alert point of {faulty} in the outage: {alerts:?}"
    );
    // Nothing dropped, and the sink did see the outage.
    let text = api.metrics().await?;
    for reason in [
        "channel_full",
        "buffer_full",
        "invalid",
        "rejected",
        "misconfigured",
    ] {
        assert_eq!(
            metric(
                &text,
                &format!("gateway_influx_points_dropped_total{{reason=\"{reason}\"}}")
            ),
            Some(0.0),
            "dropped as {reason}"
        );
    }
    assert!(
        metric(&text, "gateway_influx_write_failures_total").unwrap_or(0.0) > failures_before,
        "{text}"
    );
    // The order opened during the outage is untouched, and there is no other.
    assert_eq!(api.orders().await?, vec![order]);
    vm.stop()?;
    eprintln!(
        "influx: outage {outage:?}, {back_filled} readings back-filled, {:?} in all",
        started.elapsed()
    );
    Ok(())
}

/// Debian's mosquitto on `port`, without persistence: a restart forgets every session.
struct Mosquitto {
    child: Child,
}

impl Mosquitto {
    fn start(dir: &Path, port: u16) -> anyhow::Result<Mosquitto> {
        let config: PathBuf = dir.join("mosquitto.conf");
        std::fs::write(
            &config,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )?;
        let program = if Path::new("/usr/sbin/mosquitto").exists() {
            "/usr/sbin/mosquitto"
        } else {
            "mosquitto"
        };
        let child = Command::new(program)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| anyhow!("cannot start mosquitto (apt-get install mosquitto): {e}"))?;
        Ok(Mosquitto { child })
    }

    fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_out_gateway_rides_out_a_mosquitto_restart_without_restarting(
) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = scratch_dir("chaos-mosquitto")?;
    let port = free_port()?;
    let mut broker = Mosquitto::start(&dir, port)?;
    eventually("mosquitto to listen", Duration::from_secs(10), || {
        listening(port)
    })
    .await?;
    let households = Households::start(&dir, 20, 47)?;
    households.write_registry(&dir)?;
    let http_port = free_port()?;
    write_gateway_config(
        &dir,
        &format!(
            "[broker]\nmode = \"external\"\n\n[broker.external]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"chaos-gateway\"\nkeep_alive = \"5s\""
        ),
        http_port,
        "",
    )?;
    let (mut gateway, _) = start_gateway("gateway", &dir)?;
    let _agent = households.start_agent(&dir, port)?;
    let api = Api::new(&format!("127.0.0.1:{http_port}"))?;
    let devices = households.devices();
    let logs = |gateway: &Proc| format!("{}\n{}", gateway.log(), households.proc.log());
    api.readings_grow(
        "every household to report through mosquitto",
        &devices,
        &BTreeMap::new(),
        1,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    let connected = |gateway: &Proc| {
        gateway
            .log()
            .matches("connected to the external MQTT broker")
            .count()
    };
    let connections_before = connected(&gateway);
    let first = households.device(1);
    households
        .inject(&api.client, &first, QUICK_CATEGORY)
        .await?;
    api.orders_for(
        "the order of a fault before the broker restart",
        std::slice::from_ref(&first),
        Duration::from_secs(20),
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;

    // mosquitto dies under load; the gateway notices and stays up.
    broker.kill()?;
    let killed_at = Instant::now();
    eventually(
        "the gateway to notice the broker is gone",
        Duration::from_secs(20),
        || async {
            Ok(gateway
                .log()
                .contains("external MQTT broker connection failed")
                .then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    let health = api.client.get(api.url("/healthz")).send().await?;
    assert!(health.status().is_success(), "healthz: {}", health.status());
    let before_restart = api.readings().await?;

    // Back on the same port, with no session of anyone.
    let _broker = Mosquitto::start(&dir, port)?;
    eventually("mosquitto to listen again", Duration::from_secs(10), || {
        listening(port)
    })
    .await?;
    eventually(
        "the gateway to reconnect",
        Duration::from_secs(30),
        || async { Ok((connected(&gateway) > connections_before).then_some(())) },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    let reconnect_took = killed_at.elapsed();
    // It resubscribed: readings of every device flow again.
    api.readings_grow(
        "readings of every device after the broker restart",
        &devices,
        &before_restart,
        4,
        Duration::from_secs(30),
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    // And rules and orders work: a fault raised now opens its order.
    let second = households.device(2);
    households
        .inject(&api.client, &second, QUICK_CATEGORY)
        .await?;
    api.orders_for(
        "the order of a fault after the broker restart",
        std::slice::from_ref(&second),
        Duration::from_secs(20),
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs(&gateway)))?;
    let orders = api.orders().await?;
    assert_no_doubles(&orders);
    let mut with_orders: Vec<&str> = orders.iter().map(|o| o.device.as_str()).collect();
    with_orders.sort_unstable();
    let mut expected = vec![first.as_str(), second.as_str()];
    expected.sort_unstable();
    assert_eq!(with_orders, expected, "{orders:?}");
    // The same process all along.
    assert!(
        gateway.wait_exit(Duration::ZERO).is_err(),
        "the gateway exited:\n{}",
        gateway.log()
    );
    let ready = api.client.get(api.url("/readyz")).send().await?;
    assert!(ready.status().is_success(), "readyz: {}", ready.status());
    eprintln!(
        "mosquitto: reconnected {reconnect_took:?} after the kill; {:?} in all",
        started.elapsed()
    );
    Ok(())
}
