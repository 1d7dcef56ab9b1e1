//! TLS (rustls, mutual) to Debian's mosquitto, and `edge-agent check` over an RTU pty pair.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use edge_agent::agent::Agent;
use edge_agent::config::AgentConfig;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files in `dir`.
fn certificates(dir: &std::path::Path) {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "heating test CA");
    let ca = ca_params.self_signed(&ca_key).expect("ca");
    let issue = |name: &str, sans: Vec<String>| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(sans).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write cert");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("write key");
    };
    issue("server", vec!["localhost".into()]);
    issue("box-tls", Vec::new());
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write ca");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_publishes_over_mutual_tls_to_mosquitto() {
    let dir = scratch("tls");
    certificates(&dir);
    let (plain, tls) = (free_port(), free_port());
    let _broker = mosquitto(
        &dir,
        plain,
        &format!(
            "listener {tls} 127.0.0.1\ncafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\n",
            d = dir.display()
        ),
    );
    let plain_addr: SocketAddr = format!("127.0.0.1:{plain}").parse().expect("addr");
    let recorder = Recorder::start(plain_addr, "tls-watch", "heating/v1/#", false).await;
    let port = free_port();
    let _device = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    let profiles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/profiles");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "agent_id = \"box-tls\"\ntownship = \"yanqing\"\nprofiles_dir = \"{}\"\n\n[mqtt]\nhost = \"localhost\"\nport = {tls}\n\n[mqtt.tls]\nca_file = \"ca.pem\"\nclient_cert = \"box-tls.pem\"\nclient_key = \"box-tls.key\"\n\n[polling]\ninterval = \"200ms\"\n\n[[devices]]\nid = \"yq-tls-0001\"\nprofile = \"peer-all-types\"\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:{port}\" }}\n",
            profiles.display()
        ),
    )
    .expect("write config");
    let config = AgentConfig::load(&config).unwrap_or_else(|e| panic!("{e}"));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Agent::new(config).run(shutdown.clone()));
    let reading = eventually("telemetry over TLS", Duration::from_secs(20), || {
        recorder.telemetry("yq-tls-0001").into_iter().next()
    })
    .await;
    assert_eq!(reading["values"]["setpoint_c"], 21.5, "{reading}");
    assert!(recorder
        .on("/box-tls/status")
        .iter()
        .any(|s| s["state"] == "online"));
    shutdown.cancel();
    task.await.expect("join").expect("agent ran");
}

#[test]
fn a_tls_config_without_its_key_is_refused_with_the_field() {
    let dir = scratch("tls-bad");
    certificates(&dir);
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "agent_id = \"b\"\ntownship = \"yanqing\"\nprofiles_dir = \"{}/../profiles\"\n\n[mqtt]\nhost = \"localhost\"\n\n[mqtt.tls]\nca_file = \"ca.pem\"\nclient_cert = \"box-tls.pem\"\n\n[[devices]]\nid = \"d\"\nprofile = \"aurora-ashp\"\ntransport = {{ type = \"tcp\", address = \"127.0.0.1:1\" }}\n",
            env!("CARGO_MANIFEST_DIR")
        ),
    )
    .expect("write");
    let error = AgentConfig::load(&config).expect_err("refused").to_string();
    assert!(error.contains("agent.toml:8:1 field `mqtt.tls`"), "{error}");
    assert!(error.contains("client_key"), "{error}");
}

#[test]
fn check_polls_rtu_devices_on_a_bus_and_prints_their_values() {
    let dir = scratch("check-rtu");
    let (_socat, agent_end, device_end) = pty_pair(&dir);
    let _device = pymodbus(&[
        "--rtu".into(),
        device_end.display().to_string(),
        "--device".into(),
        device_arg(&dir, 4, &all_types_profile(), &all_types_values()),
    ]);
    let profiles = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/profiles");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "agent_id = \"box-check\"\ntownship = \"yanqing\"\nprofiles_dir = \"{}\"\n\n[mqtt]\nhost = \"127.0.0.1\"\n\n[[buses]]\nname = \"rs485-1\"\nport = \"{}\"\ntimeout = \"1s\"\n\n[[devices]]\nid = \"yq-rtu-0004\"\nprofile = \"peer-all-types\"\nunit_id = 4\ntransport = {{ type = \"rtu\", bus = \"rs485-1\" }}\n",
            profiles.display(),
            agent_end.display()
        ),
    )
    .expect("write config");
    // pymodbus opens its end shortly after saying ready: the installer would run check again.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let stdout = loop {
        let output = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(["check", "--config"])
            .arg(&config)
            .output()
            .expect("run check");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            break stdout;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "check kept failing:\n{stdout}"
        );
    };
    assert!(stdout.contains("rtu rs485-1 on"), "{stdout}");
    assert!(stdout.contains("unit 4"), "{stdout}");
    assert!(
        stdout.contains("indoor_temp_c") && stdout.contains("-12.300"),
        "{stdout}"
    );
    assert!(stdout.contains("FAULT 6 (sensor_fault)"), "{stdout}");
    assert!(stdout.contains("all 1 device(s) answered"), "{stdout}");
}
