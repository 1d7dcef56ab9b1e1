//! The gateway with mutual-TLS listeners, a registry of two households (A with box A, B with
//! box B) and the certificates issued by `gateway certs`, shared by the test binaries that
//! attack or use the TLS listeners (`broker_security`, `trust_boundary`). Each binary uses part
//! of it, hence `dead_code` is allowed here.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context as _};
use serde_json::Value;
use tests::{binary, eventually, now_ms, scratch_dir, GatewayConfig, Proc, OPERATOR_TOKEN};

pub const TOWNSHIP: &str = "yanqing";

/// Runs `gateway certs ...` in `dir`.
pub fn certs(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(binary("gateway")?)
        .arg("certs")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run gateway certs")?;
    ensure!(
        output.status.success(),
        "gateway certs {args:?}: {}",
        describe(&output)
    );
    Ok(())
}

pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn reading(device: &str, seq: u64) -> String {
    format!(
        r#"{{"v":1,"device_id":"{device}","ts_ms":{},"seq":{seq},"profile":"aurora-ashp","kind":"heat_pump","values":{{"indoor_temp_c":19.5}}}}"#,
        now_ms()
    )
}

pub fn status(agent: &str, devices: &[&str]) -> String {
    let devices: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"{{"v":1,"agent_id":"{agent}","state":"offline","devices":[{}]}}"#,
        devices.join(",")
    )
}

pub fn telemetry_topic(device: &str) -> String {
    format!("heating/v1/{TOWNSHIP}/{device}/telemetry")
}

pub fn status_topic(agent: &str) -> String {
    format!("heating/v1/{TOWNSHIP}/{agent}/status")
}

/// A client certificate for `mosquitto_pub`, or none.
#[derive(Clone, Copy)]
pub enum Identity<'a> {
    /// The box certificate folder written by `gateway certs box`.
    Box(&'a Path),
    /// A user name and password (the password listener), no client certificate.
    Login(&'a str, &'a str),
    /// No client certificate at all.
    None,
}

/// The gateway with TLS listeners, a registry of two households with their boxes, and the
/// certificates: the district CA, the broker's, box A's and box B's, and a box certificate
/// from another CA.
pub struct Fixture {
    pub dir: PathBuf,
    pub gateway: Proc,
    pub http: String,
    pub tls_v4: u16,
    pub tls_v5: u16,
    /// The plain listener (loopback), `host:port`.
    pub mqtt: String,
    /// The password listener's port, when the test enabled it (`[broker.passwords]`).
    pub passwords: Option<u16>,
    /// Box A's password in `box-passwords` (tenant `boxXa`).
    pub box_a_password: String,
    pub client: reqwest::Client,
}

impl Fixture {
    /// `extra_devices` are registered to household A too.
    pub fn start(test: &str, extra_devices: &[&str]) -> anyhow::Result<Fixture> {
        Fixture::start_with(test, extra_devices, "", "")
    }

    /// As [`Fixture::start`], with `broker` lines added to the `[broker]` table and `http`
    /// lines to the `[http]` table of the gateway's config.
    pub fn start_with(
        test: &str,
        extra_devices: &[&str],
        broker: &str,
        http: &str,
    ) -> anyhow::Result<Fixture> {
        let dir = scratch_dir(test)?;
        certs(&dir, &["init-ca", "--out", "ca"])?;
        certs(
            &dir,
            &[
                "server",
                "--ca",
                "ca",
                "--host",
                "127.0.0.1",
                "--host",
                "localhost",
                "--out",
                "server",
            ],
        )?;
        certs(
            &dir,
            &["box", "--ca", "ca", "--box", "box-a", "--out", "box-a"],
        )?;
        certs(
            &dir,
            &["box", "--ca", "ca", "--box", "box-b", "--out", "box-b"],
        )?;
        // Box A also has a password for the password listener (used when a test enables it).
        let added = Command::new(binary("gateway")?)
            .args([
                "certs",
                "password",
                "--box",
                "box-a",
                "--file",
                "box-passwords",
            ])
            .current_dir(&dir)
            .output()
            .context("cannot run gateway certs password")?;
        ensure!(
            added.status.success(),
            "certs password: {}",
            describe(&added)
        );
        let box_a_password = String::from_utf8_lossy(&added.stdout)
            .split("password = \"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no password printed: {}", describe(&added)))?;
        certs(&dir, &["init-ca", "--out", "other-ca"])?;
        certs(
            &dir,
            &[
                "box", "--ca", "other-ca", "--box", "box-a", "--out", "rogue",
            ],
        )?;
        let registry = dir.join("registry");
        std::fs::create_dir_all(&registry)?;
        for (file, text) in [
            ("townships.csv", format!("id,name\n{TOWNSHIP},延庆镇\n")),
            (
                "villages.csv",
                format!("id,township_id,name\n{TOWNSHIP}-dongguan,{TOWNSHIP},东关村\n"),
            ),
            ("vendors.csv", "id,name\naurora,Aurora\n".to_owned()),
            (
                "households.csv",
                format!(
                    "id,village_id,address,resident,phone,vulnerable,edge_box\n\
                     hh-a,{TOWNSHIP}-dongguan,东关村1号,王秀英,13800000001,false,box-a\n\
                     hh-b,{TOWNSHIP}-dongguan,东关村2号,李建国,13800000002,false,box-b\n"
                ),
            ),
            (
                "devices.csv",
                "id,household_id,kind,brand,model,vendor_id,installed_on\n\
                 dev-a,hh-a,heat_pump,Aurora,KF,aurora,2022-03-01\n\
                 dev-b,hh-b,heat_pump,Aurora,KF,aurora,2022-03-01\n"
                    .to_owned(),
            ),
        ] {
            let mut text = text;
            if file == "devices.csv" {
                for device in extra_devices {
                    text.push_str(&format!(
                        "{device},hh-a,heat_pump,Aurora,KF,aurora,2022-03-01\n"
                    ));
                }
            }
            std::fs::write(registry.join(file), text)?;
        }
        let (gateway, ready) = GatewayConfig {
            broker: format!(
                "[broker]\nlisten = \"127.0.0.1:0\"\nnext_connection_delay = \"1ms\"\n{broker}\n\
                 [broker.tls]\nenabled = true\nlisten = \"127.0.0.1:0\"\nlisten_v5 = \"127.0.0.1:0\"\n\
                 ca_file = \"ca/ca.pem\"\ncert_file = \"server/server.pem\"\nkey_file = \"server/server.key\"\n"
            ),
            http: http.into(),
            registry: true,
            ..GatewayConfig::with_operator("security")
        }
        .start("gateway", &dir)?;
        let port = |key: &str| -> anyhow::Result<u16> {
            ready[key]
                .as_str()
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok())
                .ok_or_else(|| anyhow!("no {key} address in the ready line {ready}"))
        };
        Ok(Fixture {
            tls_v4: port("mqtt_tls")?,
            tls_v5: port("mqtt_tls_v5")?,
            http: ready["http"].as_str().unwrap_or_default().to_owned(),
            mqtt: ready["mqtt"].as_str().unwrap_or_default().to_owned(),
            passwords: port("mqtt_passwords").ok(),
            box_a_password,
            dir,
            gateway,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    /// `mosquitto_pub` at QoS 1 to the TLS listener (`port`), verifying the broker against
    /// the district CA; `version` is `"311"` or `"5"`.
    pub fn publish(
        &self,
        identity: Identity<'_>,
        port: u16,
        version: &str,
        topic: &str,
        payload: &str,
    ) -> anyhow::Result<Output> {
        let mut command = Command::new("mosquitto_pub");
        command
            // By name: OpenSSL sends an IP address as SNI, which rumqttd's rustls refuses.
            .args(["-h", "localhost", "-p", &port.to_string(), "-V", version])
            .args(["-q", "1", "-i", "security-test", "-t", topic, "-m", payload])
            .arg("--cafile")
            .arg(self.dir.join("ca").join("ca.pem"));
        match identity {
            Identity::Box(folder) => {
                command
                    .arg("--cert")
                    .arg(folder.join("box.pem"))
                    .arg("--key")
                    .arg(folder.join("box.key"));
            }
            Identity::Login(user, password) => {
                command.args(["-u", user, "-P", password]);
            }
            Identity::None => {}
        }
        command
            .output()
            .context("cannot run mosquitto_pub (Debian package mosquitto-clients)")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The device as the gateway knows it, `None` when it knows nothing of it.
    pub async fn device(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let response = self
            .client
            .get(self.url(&format!("/api/v1/devices/{id}")))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = response.text().await?;
        Ok(Some(serde_json::from_str(&body)?))
    }

    pub async fn readings(&self, id: &str) -> anyhow::Result<u64> {
        Ok(self
            .device(id)
            .await?
            .and_then(|d| d["readings"].as_u64())
            .unwrap_or(0))
    }

    /// `gateway_messages_rejected_total{reason="..."}` from `/metrics`.
    pub async fn rejected(&self, reason: &str) -> anyhow::Result<u64> {
        let text = self
            .client
            .get(self.url("/metrics"))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
            .await?
            .text()
            .await?;
        let needle = format!("gateway_messages_rejected_total{{reason=\"{reason}\"}} ");
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(&needle))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0))
    }

    pub async fn wait_for_readings(&self, device: &str, count: u64) -> anyhow::Result<()> {
        eventually(
            &format!("{count} readings of {device}"),
            Duration::from_secs(15),
            || async { Ok((self.readings(device).await? >= count).then_some(())) },
        )
        .await
        .map_err(|e| anyhow!("{e}\n{}", self.gateway.log()))
    }
}

pub fn prefixed(tenant: &str, topic: &str) -> String {
    format!("/tenants/{tenant}/{topic}")
}
