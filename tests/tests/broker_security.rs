//! Broker security against real peers: certificates issued by `gateway certs`, the gateway's
//! mutual-TLS listeners, and Debian's `mosquitto_pub` as the edge boxes. Box A's certificate
//! may publish its own household's device and status and nothing else: not box B's status, not
//! a device of box B's household, not under B's tenant prefix, not outside any prefix; a client
//! without a certificate, or with one from another CA, does not get past the TLS handshake.

mod tls_fixture;

use std::time::Duration;

use anyhow::{anyhow, bail, ensure};
use serde_json::Value;
use tests::{binary, eventually, get_json, repo_root, scratch_dir, Proc};
use tls_fixture::{
    describe, prefixed, reading, status, status_topic, telemetry_topic, Fixture, Identity, TOWNSHIP,
};

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
            // The device is registered to household A, in the fixture's township.
            township = TOWNSHIP,
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
