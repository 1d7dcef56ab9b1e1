//! The gateway under test: its configuration for a bench run (event-time rules, ports chosen
//! by the system, the registry of the simulated fleet), the spawned `gateway run` process with
//! its ready line, and a small client of the HTTP API the bench reads and writes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::BenchError;
use crate::score::{AlertView, ComplaintReply, OrderView};

/// How to run the gateway for a bench.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// The `gateway` executable.
    pub binary: PathBuf,
    /// Folder for its config, database and log.
    pub dir: PathBuf,
    /// Rule file; `None` uses the gateway's built-in pack.
    pub rules: Option<PathBuf>,
    /// Registry CSV folder imported at start-up.
    pub registry: Option<PathBuf>,
    /// How far the event-time watermark trails the newest reading.
    pub lateness: Duration,
    /// How often ingest advances the watermark (wall time).
    pub tick: Duration,
    /// Broker connection limit.
    pub max_connections: usize,
    /// `RUST_LOG` of the gateway process.
    pub log_filter: String,
    /// Base URL of the InfluxDB v2 API the history sink writes to (`None`: no sink).
    pub influx_url: Option<String>,
    /// The broker's in-memory log: segment size in bytes and segments kept (`None`: the
    /// gateway's defaults).
    pub broker_log: Option<(usize, usize)>,
    /// The broker's pause after each accepted connection (`None`: the gateway's default).
    pub next_connection_delay: Option<Duration>,
}

fn humantime(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

fn toml_path(path: &Path) -> String {
    // TOML basic strings escape backslashes and quotes.
    path.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

impl GatewaySettings {
    /// The configuration file text.
    pub fn config_text(&self) -> String {
        let mut broker = format!(
            "[broker]\nlisten = \"127.0.0.1:0\"\nmax_connections = {}\n",
            self.max_connections
        );
        if let Some((size, segments)) = self.broker_log {
            broker.push_str(&format!(
                "log_segment_size = {size}\nlog_segments = {segments}\n"
            ));
        }
        if let Some(delay) = self.next_connection_delay {
            broker.push_str(&format!(
                "next_connection_delay = \"{}\"\n",
                humantime(delay)
            ));
        }
        let mut text = format!(
            "# Written by `simulator bench`: rules in event time, so the simulated clock in the \
             readings drives them.\n\
             {broker}\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\n\
             [store]\npath = \"{}\"\n\n\
             [api]\nauth = \"disabled\"\n\n\
             [rules]\nclock = \"event\"\nlateness = \"{}\"\ntick = \"{}\"\n",
            toml_path(&self.dir.join("gateway.sqlite")),
            humantime(self.lateness),
            humantime(self.tick),
        );
        if let Some(rules) = &self.rules {
            text.push_str(&format!("path = \"{}\"\n", toml_path(rules)));
        }
        if let Some(registry) = &self.registry {
            text.push_str(&format!(
                "\n[registry]\nimport = \"{}\"\n",
                toml_path(registry)
            ));
        }
        if let Some(url) = &self.influx_url {
            // VictoriaMetrics ignores the organisation, bucket and token.
            text.push_str(&format!(
                "\n[influxdb]\nurl = \"{}\"\norg = \"bench\"\nbucket = \"bench\"\ntoken = \"bench\"\n",
                url.replace('\\', "\\\\").replace('"', "\\\"")
            ));
        }
        text
    }
}

/// A running gateway process. Killed if dropped without [`GatewayProcess::stop`].
pub struct GatewayProcess {
    child: Child,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    log_path: PathBuf,
}

#[derive(Deserialize)]
struct ReadyLine {
    event: String,
    mqtt: String,
    http: String,
}

impl GatewayProcess {
    /// Writes the config, starts `gateway run` and waits for its ready line.
    pub async fn start(settings: &GatewaySettings) -> Result<GatewayProcess, BenchError> {
        let io = |what: String| move |source| BenchError::Io { what, source };
        if !settings.binary.is_file() {
            return Err(BenchError::GatewayMissing(settings.binary.clone()));
        }
        let config_path = settings.dir.join("gateway.toml");
        std::fs::write(&config_path, settings.config_text())
            .map_err(io(format!("write {}", config_path.display())))?;
        let log_path = settings.dir.join("gateway.log");
        let log = std::fs::File::create(&log_path)
            .map_err(io(format!("create {}", log_path.display())))?;
        let mut child = Command::new(&settings.binary)
            .arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(&settings.dir)
            .env("RUST_LOG", &settings.log_filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .map_err(io(format!("start {}", settings.binary.display())))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Gateway("the gateway has no stdout".into()))?;
        let mut lines = BufReader::new(stdout).lines();
        let ready = async {
            while let Some(line) = lines.next_line().await.ok().flatten() {
                if let Ok(ready) = serde_json::from_str::<ReadyLine>(&line) {
                    if ready.event == "ready" {
                        return Some(ready);
                    }
                }
            }
            None
        };
        let ready = tokio::time::timeout(Duration::from_secs(60), ready).await;
        let tail = || tail_of(&log_path, 30);
        let ready = match ready {
            Ok(Some(ready)) => ready,
            Ok(None) => {
                return Err(BenchError::Gateway(format!(
                    "the gateway exited before it was ready; its log ends:\n{}",
                    tail()
                )))
            }
            Err(_) => {
                return Err(BenchError::Gateway(format!(
                    "the gateway printed no ready line within 60 s; its log ends:\n{}",
                    tail()
                )))
            }
        };
        // Keep draining stdout so the gateway never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let parse = |text: &str| {
            text.parse::<SocketAddr>().map_err(|e| {
                BenchError::Gateway(format!("the ready line has a bad address {text:?}: {e}"))
            })
        };
        Ok(GatewayProcess {
            mqtt: parse(&ready.mqtt)?,
            http: parse(&ready.http)?,
            child,
            log_path,
        })
    }

    /// The process id, while the process runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last lines of the gateway's log.
    pub fn log_tail(&self, lines: usize) -> String {
        tail_of(&self.log_path, lines)
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then up to 15 s for a clean exit, then SIGKILL.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if sent.is_ok_and(|s| s.success()) {
                if let Ok(Ok(status)) =
                    tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await
                {
                    tracing::info!(%status, "gateway stopped");
                    return;
                }
            }
        }
        tracing::warn!("the gateway did not stop on SIGTERM; killing it");
        let _ = self.child.kill().await;
    }
}

pub(crate) fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The gateway's counters the bench waits on.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub readings_accepted: u64,
    #[serde(default)]
    pub messages_in: u64,
    #[serde(default)]
    pub rejected: BTreeMap<String, u64>,
    /// The watermark ingest last advanced the rules to (published after that advance's orders
    /// were stored); `None` before the first reading.
    #[serde(default)]
    pub rules_watermark_ms: Option<i64>,
    /// Messages ingest had fully processed when it published `rules_watermark_ms` (`None`: a
    /// gateway older than this bench, which publishes no watermark).
    #[serde(default)]
    pub messages_done_at_watermark: Option<u64>,
}

impl Summary {
    /// Readings the gateway is done with: accepted, or rejected for any reason.
    pub fn readings_handled(&self) -> u64 {
        self.readings_accepted + self.rejected.values().sum::<u64>()
    }
}

/// A client of the gateway's HTTP API.
#[derive(Debug, Clone)]
pub struct GatewayApi {
    client: reqwest::Client,
    base: String,
}

/// The largest page the order and alert lists return.
pub const MAX_PAGE: usize = 10_000;

impl GatewayApi {
    pub fn new(http: SocketAddr) -> Result<GatewayApi, BenchError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| BenchError::Gateway(format!("cannot build the HTTP client: {e}")))?;
        Ok(GatewayApi {
            client,
            base: format!("http://{http}"),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, BenchError> {
        let url = format!("{}{path}", self.base);
        let response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| BenchError::Api(format!("GET {path}: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| BenchError::Api(format!("GET {path}: {e}")))?;
        if !status.is_success() {
            return Err(BenchError::Api(format!(
                "GET {path}: {status}: {}",
                String::from_utf8_lossy(&body)
            )));
        }
        serde_json::from_slice(&body)
            .map_err(|e| BenchError::Api(format!("GET {path}: unexpected answer: {e}")))
    }

    pub async fn summary(&self) -> Result<Summary, BenchError> {
        self.get("/api/v1/summary").await
    }

    /// The newest `limit` orders, optionally of one township.
    pub async fn orders(
        &self,
        limit: usize,
        township: Option<&str>,
    ) -> Result<Vec<OrderView>, BenchError> {
        let mut path = format!("/api/v1/orders?limit={}", limit.min(MAX_PAGE));
        if let Some(township) = township {
            path.push_str(&format!("&township={township}"));
        }
        self.get(&path).await
    }

    /// The newest `limit` alerts.
    pub async fn alerts(&self, limit: usize) -> Result<Vec<AlertView>, BenchError> {
        self.get(&format!("/api/v1/alerts?limit={}", limit.min(MAX_PAGE)))
            .await
    }

    /// Posts a complaint; an error answer is returned as text (it goes on the score card).
    /// Posts an order action (`dispatch`, `accept`, `arrive`, `resolve`) with `body`; the
    /// HTTP status on failure (409: the order is not in a state for it).
    pub async fn order_action(
        &self,
        id: i64,
        action: &str,
        body: serde_json::Value,
    ) -> Result<(), (Option<u16>, String)> {
        let path = format!("/api/v1/orders/{id}/{action}");
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| (None, format!("POST {path}: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err((
            Some(status.as_u16()),
            format!("POST {path}: {status}: {text}"),
        ))
    }

    pub async fn post_complaint(
        &self,
        channel: &str,
        device_id: &str,
        received_at_ms: i64,
        text: &str,
    ) -> Result<ComplaintReply, String> {
        let body = serde_json::json!({
            "channel": channel,
            "device_id": device_id,
            "received_at_ms": received_at_ms,
            "text": text,
        });
        let response = self
            .client
            .post(format!("{}/api/v1/complaints", self.base))
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("POST /api/v1/complaints: {e}"))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| format!("POST /api/v1/complaints: {e}"))?;
        if !status.is_success() {
            return Err(format!("POST /api/v1/complaints: {status}: {text}"));
        }
        serde_json::from_str(&text)
            .map_err(|e| format!("POST /api/v1/complaints: unexpected answer {text:?}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_runs_rules_in_event_time_on_free_ports() {
        let settings = GatewaySettings {
            binary: PathBuf::from("gateway"),
            dir: PathBuf::from("/tmp/bench"),
            rules: Some(PathBuf::from("/tmp/rules.toml")),
            registry: Some(PathBuf::from("/tmp/bench/registry")),
            lateness: Duration::from_secs(120),
            tick: Duration::from_millis(50),
            max_connections: 1100,
            log_filter: "warn".into(),
            influx_url: None,
            broker_log: None,
            next_connection_delay: None,
        };
        let text = settings.config_text();
        let parsed: toml::Value = toml::from_str(&text).expect("valid TOML");
        assert_eq!(parsed["rules"]["clock"].as_str(), Some("event"));
        assert_eq!(parsed["rules"]["lateness"].as_str(), Some("120000ms"));
        assert_eq!(parsed["rules"]["path"].as_str(), Some("/tmp/rules.toml"));
        assert_eq!(parsed["broker"]["listen"].as_str(), Some("127.0.0.1:0"));
        assert_eq!(parsed["api"]["auth"].as_str(), Some("disabled"));
        assert_eq!(
            parsed["registry"]["import"].as_str(),
            Some("/tmp/bench/registry")
        );
        assert!(parsed.get("influxdb").is_none());
        assert!(parsed["broker"].get("log_segments").is_none());
    }

    #[test]
    fn the_config_can_add_a_sink_a_larger_broker_log_and_no_connection_delay() {
        let settings = GatewaySettings {
            binary: PathBuf::from("gateway"),
            dir: PathBuf::from("/tmp/bench"),
            rules: None,
            registry: None,
            lateness: Duration::ZERO,
            tick: Duration::from_millis(50),
            max_connections: 5100,
            log_filter: "warn".into(),
            influx_url: Some("http://127.0.0.1:8428".into()),
            broker_log: Some((33_554_432, 12)),
            next_connection_delay: Some(Duration::ZERO),
        };
        let parsed: toml::Value = toml::from_str(&settings.config_text()).expect("valid TOML");
        assert_eq!(parsed["rules"]["lateness"].as_str(), Some("0ms"));
        assert_eq!(parsed["broker"]["max_connections"].as_integer(), Some(5100));
        assert_eq!(parsed["broker"]["log_segments"].as_integer(), Some(12));
        assert_eq!(
            parsed["broker"]["next_connection_delay"].as_str(),
            Some("0ms")
        );
        assert_eq!(
            parsed["influxdb"]["url"].as_str(),
            Some("http://127.0.0.1:8428")
        );
    }
}
