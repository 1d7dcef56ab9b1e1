//! Broker security against real peers: certificates issued by `gateway certs`, the gateway's
//! mutual-TLS listeners, and Debian's `mosquitto_pub` as the edge boxes. Box A's certificate
//! may publish its own household's device and status and nothing else: not box B's status, not
//! a device of box B's household, not under B's tenant prefix, not outside any prefix; a client
//! without a certificate, or with one from another CA, does not get past the TLS handshake.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, ensure, Context as _};
use serde_json::Value;
use tests::{binary, eventually, get_json, repo_root, scratch_dir, Proc, OPERATOR_TOKEN};

const TOWNSHIP: &str = "yanqing";

/// Runs `gateway certs ...` in `dir`.
fn certs(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
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

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn reading(device: &str, seq: u64) -> String {
    format!(
        r#"{{"v":1,"device_id":"{device}","ts_ms":{},"seq":{seq},"profile":"aurora-ashp","kind":"heat_pump","values":{{"indoor_temp_c":19.5}}}}"#,
        now_ms()
    )
}

fn status(agent: &str, devices: &[&str]) -> String {
    let devices: Vec<String> = devices.iter().map(|d| format!("\"{d}\"")).collect();
    format!(
        r#"{{"v":1,"agent_id":"{agent}","state":"offline","devices":[{}]}}"#,
        devices.join(",")
    )
}

fn telemetry_topic(device: &str) -> String {
    format!("heating/v1/{TOWNSHIP}/{device}/telemetry")
}

fn status_topic(agent: &str) -> String {
    format!("heating/v1/{TOWNSHIP}/{agent}/status")
}

/// A client certificate for `mosquitto_pub`, or none.
#[derive(Clone, Copy)]
enum Identity<'a> {
    /// The box certificate folder written by `gateway certs box`.
    Box(&'a Path),
    /// No client certificate at all.
    None,
}

/// The gateway with TLS listeners, a registry of two households with their boxes, and the
/// certificates: the district CA, the broker's, box A's and box B's, and a box certificate
/// from another CA.
struct Fixture {
    dir: PathBuf,
    gateway: Proc,
    http: String,
    tls_v4: u16,
    tls_v5: u16,
    client: reqwest::Client,
}

impl Fixture {
    /// `extra_devices` are registered to household A too.
    fn start(test: &str, extra_devices: &[&str]) -> anyhow::Result<Fixture> {
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
        std::fs::write(
            dir.join("gateway.toml"),
            format!(
                "[broker]\nlisten = \"127.0.0.1:0\"\nnext_connection_delay = \"1ms\"\n\n\
                 [broker.tls]\nenabled = true\nlisten = \"127.0.0.1:0\"\nlisten_v5 = \"127.0.0.1:0\"\n\
                 ca_file = \"ca/ca.pem\"\ncert_file = \"server/server.pem\"\nkey_file = \"server/server.key\"\n\n\
                 [http]\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"gateway.sqlite\"\n\n\
                 [registry]\nimport = \"registry\"\n\n\
                 [[api.tokens]]\nname = \"security\"\ntoken = \"{OPERATOR_TOKEN}\"\nrole = \"operator\"\n"
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
            dir,
            gateway,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()?,
        })
    }

    /// `mosquitto_pub` at QoS 1 to the TLS listener (`port`), verifying the broker against
    /// the district CA; `version` is `"311"` or `"5"`.
    fn publish(
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
        if let Identity::Box(folder) = identity {
            command
                .arg("--cert")
                .arg(folder.join("box.pem"))
                .arg("--key")
                .arg(folder.join("box.key"));
        }
        command
            .output()
            .context("cannot run mosquitto_pub (Debian package mosquitto-clients)")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// The device as the gateway knows it, `None` when it knows nothing of it.
    async fn device(&self, id: &str) -> anyhow::Result<Option<Value>> {
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

    async fn readings(&self, id: &str) -> anyhow::Result<u64> {
        Ok(self
            .device(id)
            .await?
            .and_then(|d| d["readings"].as_u64())
            .unwrap_or(0))
    }

    /// `gateway_messages_rejected_total{reason="..."}` from `/metrics`.
    async fn rejected(&self, reason: &str) -> anyhow::Result<u64> {
        let text = self
            .client
            .get(self.url("/metrics"))
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

    async fn wait_for_readings(&self, device: &str, count: u64) -> anyhow::Result<()> {
        eventually(
            &format!("{count} readings of {device}"),
            Duration::from_secs(15),
            || async { Ok((self.readings(device).await? >= count).then_some(())) },
        )
        .await
        .map_err(|e| anyhow!("{e}\n{}", self.gateway.log()))
    }
}

fn prefixed(tenant: &str, topic: &str) -> String {
    format!("/tenants/{tenant}/{topic}")
}

#[tokio::test]
async fn a_box_certificate_publishes_only_its_own_households_devices_and_status(
) -> anyhow::Result<()> {
    let fx = Fixture::start("broker-security-tenants", &[])?;
    let box_a = fx.dir.join("box-a");
    let a = Identity::Box(&box_a);
    // box-a's tenant id, as `gateway certs box` printed it: `-` is written `X`.
    let tenant_a = "boxXa";
    let tenant_b = "boxXb";

    // The correct publishes of box A, over MQTT 3.1.1 and MQTT 5: accepted.
    let output = fx.publish(
        a,
        fx.tls_v4,
        "311",
        &prefixed(tenant_a, &telemetry_topic("dev-a")),
        &reading("dev-a", 1),
    )?;
    ensure!(
        output.status.success(),
        "box A's own reading: {}",
        describe(&output)
    );
    fx.wait_for_readings("dev-a", 1).await?;
    let output = fx.publish(
        a,
        fx.tls_v5,
        "5",
        &prefixed(tenant_a, &telemetry_topic("dev-a")),
        &reading("dev-a", 2),
    )?;
    ensure!(
        output.status.success(),
        "box A over MQTT 5: {}",
        describe(&output)
    );
    fx.wait_for_readings("dev-a", 2).await?;
    let output = fx.publish(
        a,
        fx.tls_v4,
        "311",
        &prefixed(tenant_a, &status_topic("box-a")),
        &status("box-a", &["dev-a"]),
    )?;
    ensure!(
        output.status.success(),
        "box A's own status: {}",
        describe(&output)
    );
    eventually("box A's status", Duration::from_secs(15), || async {
        Ok(fx
            .device("dev-a")
            .await?
            .filter(|d| d["agent_id"] == "box-a" && d["status"] == "offline")
            .map(|_| ()))
    })
    .await?;
    ensure!(fx.rejected("tenant_mismatch").await? == 0);

    // Under its own prefix, as box B and as B's device: delivered by the broker, refused by
    // the gateway's registry check.
    fx.publish(
        a,
        fx.tls_v4,
        "311",
        &prefixed(tenant_a, &status_topic("box-b")),
        &status("box-b", &["dev-b"]),
    )?;
    fx.publish(
        a,
        fx.tls_v4,
        "311",
        &prefixed(tenant_a, &telemetry_topic("dev-b")),
        &reading("dev-b", 1),
    )?;
    // Its own status listing B's device, over MQTT 5.
    fx.publish(
        a,
        fx.tls_v5,
        "5",
        &prefixed(tenant_a, &status_topic("box-a")),
        &status("box-a", &["dev-a", "dev-b"]),
    )?;
    eventually(
        "three tenant_mismatch rejects",
        Duration::from_secs(15),
        || async { Ok((fx.rejected("tenant_mismatch").await? >= 3).then_some(())) },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", fx.gateway.log()))?;

    // Outside its prefix (B's prefix, or none): rumqttd refuses the publish and drops the
    // connection, so the gateway never sees it.
    for topic in [
        prefixed(tenant_b, &status_topic("box-b")),
        prefixed(tenant_b, &telemetry_topic("dev-b")),
        status_topic("box-b"),
        telemetry_topic("dev-b"),
    ] {
        let payload = if topic.ends_with("status") {
            status("box-b", &["dev-b"])
        } else {
            reading("dev-b", 2)
        };
        let output = fx.publish(a, fx.tls_v4, "311", &topic, &payload)?;
        ensure!(
            !output.status.success(),
            "box A publishing on {topic} was acknowledged: {}",
            describe(&output)
        );
    }

    // A last good publish of box A orders everything before it: then nothing of B arrived.
    fx.publish(
        a,
        fx.tls_v4,
        "311",
        &prefixed(tenant_a, &telemetry_topic("dev-a")),
        &reading("dev-a", 3),
    )?;
    fx.wait_for_readings("dev-a", 3).await?;
    ensure!(
        fx.device("dev-b").await?.is_none(),
        "box B's device is known to the gateway: {:?}",
        fx.device("dev-b").await?
    );
    ensure!(fx.rejected("tenant_mismatch").await? == 3);
    let samples = get_json(&fx.client, &fx.url("/api/v1/rejects")).await?;
    let tenant_samples: Vec<&Value> = samples
        .as_array()
        .map(|s| {
            s.iter()
                .filter(|s| s["reason"] == "tenant_mismatch")
                .collect()
        })
        .unwrap_or_default();
    ensure!(tenant_samples.len() == 3, "{samples}");
    ensure!(
        tenant_samples.iter().any(|s| s["error"]
            .as_str()
            .is_some_and(|e| e.contains("status of edge box \"box-b\""))),
        "{samples}"
    );
    // Box B's own certificate still works for box B.
    let box_b = fx.dir.join("box-b");
    let output = fx.publish(
        Identity::Box(&box_b),
        fx.tls_v4,
        "311",
        &prefixed(tenant_b, &telemetry_topic("dev-b")),
        &reading("dev-b", 3),
    )?;
    ensure!(
        output.status.success(),
        "box B's own reading: {}",
        describe(&output)
    );
    fx.wait_for_readings("dev-b", 1).await?;
    Ok(())
}

#[tokio::test]
async fn clients_without_a_certificate_of_the_district_ca_fail_the_tls_handshake(
) -> anyhow::Result<()> {
    let fx = Fixture::start("broker-security-handshake", &[])?;
    let rogue = fx.dir.join("rogue");
    let topic = prefixed("boxXa", &telemetry_topic("dev-a"));
    for (what, identity, port, version) in [
        ("no certificate", Identity::None, fx.tls_v4, "311"),
        ("no certificate, MQTT 5", Identity::None, fx.tls_v5, "5"),
        (
            "another CA's certificate",
            Identity::Box(&rogue),
            fx.tls_v4,
            "311",
        ),
        (
            "another CA's certificate, MQTT 5",
            Identity::Box(&rogue),
            fx.tls_v5,
            "5",
        ),
    ] {
        let output = fx.publish(identity, port, version, &topic, &reading("dev-a", 1))?;
        if output.status.success() {
            bail!(
                "{what}: the broker accepted the publish: {}",
                describe(&output)
            );
        }
    }
    // The listener is not stuck after the refused handshakes: the real box A gets through.
    let box_a = fx.dir.join("box-a");
    let output = fx.publish(
        Identity::Box(&box_a),
        fx.tls_v4,
        "311",
        &topic,
        &reading("dev-a", 2),
    )?;
    ensure!(output.status.success(), "box A: {}", describe(&output));
    fx.wait_for_readings("dev-a", 1).await?;
    let device = fx.device("dev-a").await?.unwrap_or_default();
    ensure!(
        device["last_seq"] == 2,
        "only box A's reading arrived: {device}"
    );
    Ok(())
}

#[tokio::test]
async fn the_edge_agent_delivers_readings_over_mutual_tls_under_its_tenant_prefix(
) -> anyhow::Result<()> {
    // One simulated household served over Modbus TCP; its heater is registered to household A.
    let sim_dir = scratch_dir("broker-security-simulator")?;
    let profiles = repo_root().join("profiles").display().to_string();
    let (simulator, _) = Proc::start(
        "simulator",
        &binary("simulator")?,
        &[
            "serve",
            "--households",
            "1",
            "--seed",
            "5",
            "--profiles",
            &profiles,
            "--http",
            "127.0.0.1:0",
            "--manifest",
            "manifest.json",
        ],
        &sim_dir,
        true,
    )?;
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(sim_dir.join("manifest.json"))?)?;
    let household = &manifest[0];
    let field = |name: &str| household[name].as_str().unwrap_or_default().to_owned();
    let device = field("device_id");
    ensure!(!device.is_empty(), "no household in {manifest}");
    let fx = Fixture::start("broker-security-agent", &[&device])?;
    let certs = fx.dir.join("box-a");
    std::fs::write(
        fx.dir.join("agent.toml"),
        format!(
            "agent_id = \"box-a\"\ntownship = \"{township}\"\nprofiles_dir = \"{profiles}\"\n\n\
             [mqtt]\nhost = \"127.0.0.1\"\nport = {port}\ntenant = \"boxXa\"\nkeep_alive = \"5s\"\n\n\
             [mqtt.tls]\nca_file = \"{ca}\"\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n\n\
             [polling]\ninterval = \"300ms\"\n\n\
             [[devices]]\nid = \"{device}\"\nprofile = \"{profile}\"\nunit_id = {unit}\n\
             transport = {{ type = \"tcp\", address = \"{address}\" }}\n",
            township = field("township"),
            port = fx.tls_v4,
            ca = certs.join("ca.pem").display(),
            cert = certs.join("box.pem").display(),
            key = certs.join("box.key").display(),
            profile = field("profile_id"),
            unit = household["unit_id"].as_u64().unwrap_or(1),
            address = field("modbus_addr"),
        ),
    )?;
    let (agent, _) = Proc::start(
        "edge-agent",
        &binary("edge-agent")?,
        &["run", "--config", "agent.toml"],
        &fx.dir,
        false,
    )?;
    let logs = || {
        format!(
            "----- gateway -----\n{}\n----- edge-agent -----\n{}\n----- simulator -----\n{}",
            fx.gateway.log(),
            agent.log(),
            simulator.log()
        )
    };
    eventually(
        "readings and the online status of the agent's device",
        Duration::from_secs(30),
        || async {
            Ok(fx
                .device(&device)
                .await?
                .filter(|d| {
                    d["readings"].as_u64() >= Some(3)
                        && d["agent_id"] == "box-a"
                        && d["status"] == "online"
                })
                .map(|_| ()))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", logs()))?;
    ensure!(fx.rejected("tenant_mismatch").await? == 0, "{}", logs());
    Ok(())
}
