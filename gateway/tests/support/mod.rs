//! Fixtures shared by the gateway's integration tests (`mod support;` in each test file): the
//! HTTP API served on a free loopback port with a token for each role, the history sink and
//! its stand-in write endpoints, a VictoriaMetrics peer, scratch folders, and the `gateway`
//! binary started from a minimal config that reports its listeners in its ready line.

// Each test binary compiles this module and uses only a part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway::auth::{Authenticator, Role};
use gateway::config::{ApiConfig, AuthMode, TokenConfig};
use gateway::fleet::Fleet;
use gateway::metrics::Metrics;
use gateway::orders::clock::SharedClock;
use gateway::orders::sla::SlaConfig;
use gateway::orders::store::Store;
use gateway::orders::OrderService;
use gateway::sinks::influxdb::{build, InfluxConfig, SinkHandle, SinkStats};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

// ----- the HTTP API with a token for each role -----

pub const OPERATOR: &str = "operator-token-0123456789";
pub const TEAM_AURORA: &str = "team-aurora-yanqing-0123456789";
pub const TEAM_THIRD: &str = "team-third-party-yanqing-0123";
pub const VIEWER: &str = "read-only-token-0123456789";
pub const SIHAI: &str = "township-sihai-0123456789";
pub const YANQING: &str = "township-yanqing-0123456789";

/// A token as `[[api.tokens]]` configures it.
pub fn token(
    name: &str,
    token: &str,
    role: Role,
    township: Option<&str>,
    team: Option<&str>,
) -> TokenConfig {
    TokenConfig {
        name: name.into(),
        token: token.into(),
        role,
        township: township.map(Into::into),
        team: team.map(Into::into),
        technician: None,
    }
}

/// One token for each role: the operator, two teams of 延庆镇 (Aurora's own and a third
/// party), a read-only viewer, and the townships 四海镇 and 延庆镇.
pub fn role_tokens() -> Vec<TokenConfig> {
    vec![
        token("centre", OPERATOR, Role::Operator, None, None),
        token(
            "aurora-yq",
            TEAM_AURORA,
            Role::Team,
            None,
            Some("aurora-yanqing"),
        ),
        token(
            "third-yq",
            TEAM_THIRD,
            Role::Team,
            None,
            Some("third-party-yanqing"),
        ),
        token("viewer", VIEWER, Role::ReadOnly, None, None),
        token("sihai", SIHAI, Role::Township, Some("sihai"), None),
        token("yanqing", YANQING, Role::Township, Some("yanqing"), None),
    ]
}

/// The order service over `store` with the default SLA and a test clock standing at `t0`
/// (returned too, for the test to move).
pub fn order_service(store: Store, metrics: Arc<Metrics>, t0: i64) -> (OrderService, SharedClock) {
    let clock = SharedClock::new(t0);
    let service = OrderService::new(
        store,
        metrics,
        Arc::new(clock.clone()),
        SlaConfig::default(),
    );
    (service, clock)
}

/// The API being served: its base URL (`http://127.0.0.1:<port>`), its stop signal and task.
pub struct Served {
    pub base: String,
    pub stop: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Serves the API over `fleet` and `orders` for `tokens` on a free loopback port.
pub async fn serve_api(
    fleet: Arc<Fleet>,
    orders: OrderService,
    metrics: Arc<Metrics>,
    tokens: Vec<TokenConfig>,
) -> Served {
    let auth = Authenticator::new(&ApiConfig {
        auth: AuthMode::Tokens,
        tokens,
    });
    let state = gateway::api::ApiState {
        fleet,
        orders,
        metrics,
        auth: Arc::new(auth),
        sink: None,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = CancellationToken::new();
    let task = tokio::spawn(gateway::api::serve(listener, state, stop.clone()));
    Served { base, stop, task }
}

/// The device API over `fleet` for the read-only [`VIEWER`] token, with an empty order store
/// whose clock stands at `t0`.
pub async fn viewer_api(fleet: Arc<Fleet>, metrics: Arc<Metrics>, t0: i64) -> Served {
    let (orders, _) = order_service(Store::in_memory().expect("store"), Arc::clone(&metrics), t0);
    let tokens = vec![token("viewer", VIEWER, Role::ReadOnly, None, None)];
    serve_api(fleet, orders, metrics, tokens).await
}

/// The order API over a store, served with [`role_tokens`]; the service and its clock are
/// kept for the test to act and to move time.
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub service: OrderService,
    /// The service's clock: "server now" for event times.
    pub clock: SharedClock,
}

/// A technician's own token: role `team`, the technician's team and the technician.
pub fn technician_token(name: &str, token: &str, team: &str, technician: &str) -> TokenConfig {
    TokenConfig {
        technician: Some(technician.into()),
        ..self::token(name, token, Role::Team, None, Some(team))
    }
}

/// Serves the order API over `store` (its registry already imported), the clock at `t0`.
pub async fn api(store: Store, t0: i64) -> Api {
    api_with_tokens(store, t0, Vec::new()).await
}

/// [`api`] with `extra` tokens beside [`role_tokens`].
pub async fn api_with_tokens(store: Store, t0: i64, extra: Vec<TokenConfig>) -> Api {
    let (service, clock) = order_service(store, Arc::new(Metrics::default()), t0);
    let mut tokens = role_tokens();
    tokens.extend(extra);
    let served = serve_api(
        Arc::new(Fleet::default()),
        service.clone(),
        Arc::new(Metrics::default()),
        tokens,
    )
    .await;
    Api {
        base: served.base,
        client: reqwest::Client::new(),
        service,
        clock,
    }
}

impl Api {
    /// Sends `method` (`POST`, else `GET`) to `path` with `token` and a JSON `body`: the
    /// status and the answer as JSON (a string where it is not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut request = match method {
            "POST" => self.client.post(url),
            _ => self.client.get(url),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// POSTs `body` to `path` with `token` and the `Idempotency-Key` header `key`: the
    /// status, the answer as JSON, and whether the gateway said it replayed a stored answer.
    pub async fn post_once(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: Value,
    ) -> (u16, Value, bool) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let replayed = response
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|v| v == "true");
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            replayed,
        )
    }
}

// ----- the history sink and stand-in write endpoints -----

/// A running sink: its producers' handle, its counters, its stop signal and its task.
pub struct Running {
    pub sink: SinkHandle,
    pub stats: Arc<SinkStats>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Builds the sink from `config` and runs it, flushing for up to `drain` at shutdown.
pub fn start_sink(config: &InfluxConfig, drain: Duration) -> Running {
    let (task, sink) = build(config).expect("valid").expect("enabled");
    let stats = sink.stats();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(task.run(shutdown.clone(), drain));
    Running {
        sink,
        stats,
        shutdown,
        task,
    }
}

/// Serves `app` (a stand-in write endpoint) on a free loopback port.
pub async fn serve_on_a_free_port(
    app: axum::Router,
) -> (u16, tokio::task::JoinHandle<std::io::Result<()>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    (
        port,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    )
}

// ----- VictoriaMetrics -----

/// A VictoriaMetrics process, stopped with SIGTERM when dropped.
pub struct Vm {
    child: Child,
}

impl Vm {
    /// Starts VictoriaMetrics on `port` with its data in `storage` and `extra` arguments.
    pub fn start(port: u16, storage: &Path, extra: &[&str]) -> Vm {
        let child = Command::new("victoria-metrics")
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!("-storageDataPath={}", storage.display()))
            .arg("-loggerLevel=ERROR")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("victoria-metrics must be installed (apt-get install victoria-metrics; scripts/test does it)");
        Vm { child }
    }

    /// Stops the server the way an operator or systemd does (SIGTERM), so that it keeps what it
    /// acknowledged; a SIGKILL would lose VictoriaMetrics' own unflushed second of data.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port, for a peer that must be told its port before it starts (it cannot
/// report one it chose itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `check` every 100 ms until it holds; fails the test after `deadline`.
pub async fn wait_for<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    loop {
        ticks.tick().await;
        if check().await {
            return;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
    }
}

/// Whether VictoriaMetrics at `base` answers its health check.
pub async fn healthy(client: &reqwest::Client, base: &str) -> bool {
    client
        .get(format!("{base}/health"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// A VictoriaMetrics peer on a free port with a fresh storage folder named after `tag` and
/// `extra` arguments, once it answers: the peer, its storage, its port, its base URL and a
/// client.
pub async fn started_vm(tag: &str, extra: &[&str]) -> (Vm, PathBuf, u16, String, reqwest::Client) {
    let storage = std::env::temp_dir().join(format!("gateway-vm-{tag}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&storage);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let vm = Vm::start(port, &storage, extra);
    wait_for("VictoriaMetrics to start", Duration::from_secs(30), || {
        healthy(&client, &base)
    })
    .await;
    (vm, storage, port, base, client)
}

// ----- the gateway binary -----

/// An empty folder `gateway-<name>-<pid>` in the system's temporary folder.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gateway-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A minimal `gateway.toml`: the embedded broker and HTTP on port 0 (the ready line reports
/// the ports taken), the store `g.sqlite`, no API tokens, and `rules` lines (none if empty)
/// as its `[rules]` table.
pub fn minimal_config(rules: &str) -> String {
    let mut config = "[broker]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"g.sqlite\"\n[api]\nauth = \"disabled\"\n".to_owned();
    if !rules.is_empty() {
        config.push_str("[rules]\n");
        config.push_str(rules);
    }
    config
}

/// Starts `gateway run` in `dir` (its `gateway.toml`) and reads its ready line: the process
/// and the ready line as JSON.
pub fn run_gateway(dir: &Path) -> (Child, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["run", "--config", "gateway.toml"])
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gateway");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("ready line");
    let ready: Value = serde_json::from_str(&line).expect("ready line is JSON");
    (child, ready)
}

/// `per_village` Aurora heat pumps in each of `villages` (township id, township name, village
/// id, village name), with ids `{township}-{village}-{n:04}`; `vulnerable(n)` marks the
/// vulnerable households.
pub fn aurora_heat_pumps(
    villages: &[(&str, &str, &str, &str)],
    per_village: usize,
    vulnerable: fn(usize) -> bool,
) -> Vec<gateway::registry::demo::FleetHousehold> {
    let mut fleet = Vec::new();
    for (township, township_name, village, village_name) in villages {
        for n in 0..per_village {
            fleet.push(gateway::registry::demo::FleetHousehold {
                device_id: format!("{township}-{village}-{n:04}"),
                township: (*township).into(),
                township_name: (*township_name).into(),
                village: (*village).into(),
                village_name: (*village_name).into(),
                kind: "heat_pump".into(),
                brand: "Aurora".into(),
                model: "X".into(),
                vulnerable: vulnerable(n),
            });
        }
    }
    fleet
}
