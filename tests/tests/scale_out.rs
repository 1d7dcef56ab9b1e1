//! Scale-out mode across real processes: Debian's mosquitto as the external broker, two gateway
//! instances each owning half of the townships, faulty telemetry published by mosquitto_pub
//! for devices in both halves: each gateway opens orders only for its own townships. Both
//! instances import the same registry of every device the test publishes (the gateway refuses
//! telemetry of unregistered devices), so what keeps a township's readings off the other
//! instance is the subscription, not the registry.

mod tls_fixture;

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::{
    eventually, free_port, get_json, now_ms, scratch_dir, write_registry, GatewayConfig, Proc,
    RegistryHousehold,
};
use tls_fixture::certs;

struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mosquitto(dir: &Path, port: u16) -> anyhow::Result<Mosquitto> {
    mosquitto_with(dir, port, "")
}

/// mosquitto on `port` with `listener_options` added to its listener (TLS files, say).
fn mosquitto_with(dir: &Path, port: u16, listener_options: &str) -> anyhow::Result<Mosquitto> {
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\n{listener_options}allow_anonymous true\npersistence false\n"
        ),
    )?;
    let program = ["/usr/sbin/mosquitto", "mosquitto"]
        .into_iter()
        .find(|p| Path::new(p).exists() || *p == "mosquitto")
        .unwrap_or("mosquitto");
    let child = Command::new(program)
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start mosquitto (apt-get install mosquitto): {e}"))?;
    Ok(Mosquitto(child))
}

/// Waits until mosquitto accepts connections on `port`.
async fn listening(port: u16) -> anyhow::Result<()> {
    eventually(
        "mosquitto to listen",
        Duration::from_secs(10),
        || async move {
            Ok(tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(drop))
        },
    )
    .await
}

fn publish(port: u16, topic: &str, payload: &str) -> anyhow::Result<bool> {
    let mut child = Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-q",
            "1",
            "-t",
            topic,
            "-l",
        ])
        .stdin(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?
        .write_all(format!("{payload}\n").as_bytes())?;
    Ok(child.wait()?.success())
}

fn telemetry(device: &str, seq: u64, fault: bool) -> String {
    let fault = if fault {
        r#","fault":{"code":1,"category":"sensor_fault","text":"E1"}"#
    } else {
        ""
    };
    format!(
        r#"{{"v":1,"device_id":"{device}","ts_ms":{},"seq":{seq},"profile":"aurora-ashp","kind":"heat_pump","values":{{"indoor_temp_c":19.0,"fault_code":{}}}{fault}}}"#,
        now_ms(),
        if fault.is_empty() { 0 } else { 1 }
    )
}

fn start_gateway(
    dir: &Path,
    name: &str,
    port: u16,
    townships: &[&str],
    registry: &[RegistryHousehold],
) -> anyhow::Result<(Proc, String)> {
    start_gateway_with(dir, name, "127.0.0.1", port, townships, registry, "")
}

/// A gateway in external mode on `host:port`, with `external` lines added to its
/// `[broker.external]` table (a `[broker.external.tls]` table, say).
fn start_gateway_with(
    dir: &Path,
    name: &str,
    host: &str,
    port: u16,
    townships: &[&str],
    registry: &[RegistryHousehold],
    external: &str,
) -> anyhow::Result<(Proc, String)> {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder)?;
    write_registry(&folder.join("registry"), registry)?;
    let list: Vec<String> = townships.iter().map(|t| format!("\"{t}\"")).collect();
    let (proc, ready) = GatewayConfig {
        broker: format!(
            "[broker]\nmode = \"external\"\n\n[broker.external]\nhost = \"{host}\"\nport = {port}\nclient_id = \"{name}\"\nkeep_alive = \"5s\"\ntownships = [{}]\n{external}",
            list.join(", ")
        ),
        registry: true,
        ..GatewayConfig::with_operator("e2e")
    }
    .start(name, &folder)?;
    let http = ready["http"].as_str().unwrap_or_default().to_owned();
    Ok((proc, http))
}

/// Publishes readings of `device` through `publish` (given a new `seq` each try) until the
/// gateway at `http` lists the device: a QoS 1 message published before the gateway's
/// subscription is in place is lost, so one reading is not enough.
async fn until_listed(
    what: &str,
    http: &str,
    device: &str,
    mut publish: impl FnMut(u64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{http}/api/v1/devices");
    let mut seq = 0;
    eventually(what, Duration::from_secs(30), || {
        seq += 1;
        let published = publish(seq);
        let client = client.clone();
        let url = url.clone();
        let device = device.to_owned();
        async move {
            published?;
            let devices = get_json(&client, &url).await?;
            Ok(devices
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["device_id"] == device))
                .then_some(()))
        }
    })
    .await
}

fn order_devices(orders: &Value) -> Vec<String> {
    let mut devices: Vec<String> = orders
        .as_array()
        .map(|o| {
            o.iter()
                .filter_map(|o| o["device_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    devices.sort();
    devices
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_mosquitto_each_open_orders_only_for_their_own_townships(
) -> anyhow::Result<()> {
    let dir = scratch_dir("scale-out")?;
    let port = free_port()?;
    let _broker = mosquitto(&dir, port)?;
    listening(port).await?;
    // (township, village, device): a probe per owned township, then the faulty devices.
    let probes = [
        ("yanqing", "dongguan", "yanqing-probe-0000"),
        ("badaling", "chadao", "badaling-probe-0000"),
        ("sihai", "sihai", "sihai-probe-0000"),
        ("yongning", "fumin", "yongning-probe-0000"),
    ];
    let faulty = [
        ("yanqing", "dongguan", "yanqing-dongguan-0001"),
        ("badaling", "chadao", "badaling-chadao-0002"),
        ("sihai", "sihai", "sihai-sihai-0003"),
        ("yongning", "fumin", "yongning-fumin-0004"),
        // Nobody owns kangzhuang: neither gateway may open an order for it.
        ("kangzhuang", "kangzhuang", "kangzhuang-kangzhuang-0005"),
    ];
    // Every device published, registered on both instances.
    let registry: Vec<RegistryHousehold> = probes
        .iter()
        .chain(&faulty)
        .map(|(township, village, device)| RegistryHousehold::new(device, township, village))
        .collect();
    let (west, west_http) = start_gateway(
        &dir,
        "gateway-west",
        port,
        &["yanqing", "badaling"],
        &registry,
    )?;
    let (east, east_http) = start_gateway(
        &dir,
        "gateway-east",
        port,
        &["sihai", "yongning"],
        &registry,
    )?;
    let client = reqwest::Client::new();

    // Both instances must have subscribed to every township they own before the test publishes
    // (one SUBSCRIBE per township, and a QoS 1 message published before its filter is in place
    // is lost): wait until a probe reading of each owned township shows up as a device on its
    // owner.
    let owners = [&west_http, &west_http, &east_http, &east_http];
    for ((township, _, device), http) in probes.into_iter().zip(owners) {
        let topic = format!("heating/v1/{township}/{device}/telemetry");
        until_listed(
            &format!("{device} to reach its gateway"),
            http,
            device,
            |seq| publish(port, &topic, &telemetry(device, seq, false)).map(drop),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", west.log(), east.log()))?;
    }

    for (township, _, device) in faulty {
        assert!(publish(
            port,
            &format!("heating/v1/{township}/{device}/telemetry"),
            &telemetry(device, 1, true)
        )?);
    }
    let wait_orders = |http: String, expected: usize| {
        let client = client.clone();
        async move {
            let url = format!("http://{http}/api/v1/orders");
            eventually("the owned orders", Duration::from_secs(30), || {
                let client = client.clone();
                let url = url.clone();
                async move {
                    let orders = get_json(&client, &url).await?;
                    Ok((order_devices(&orders).len() >= expected).then_some(orders))
                }
            })
            .await
        }
    };
    let west_orders = wait_orders(west_http.clone(), 2).await?;
    let east_orders = wait_orders(east_http.clone(), 2).await?;
    assert_eq!(
        order_devices(&west_orders),
        ["badaling-chadao-0002", "yanqing-dongguan-0001"]
    );
    assert_eq!(
        order_devices(&east_orders),
        ["sihai-sihai-0003", "yongning-fumin-0004"]
    );
    // Neither saw the other's (or the unowned) devices at all, though both registered them.
    for (http, owned) in [
        (&west_http, ["yanqing", "badaling"]),
        (&east_http, ["sihai", "yongning"]),
    ] {
        let devices = get_json(&client, &format!("http://{http}/api/v1/devices")).await?;
        assert!(
            devices.as_array().is_some_and(|d| d
                .iter()
                .all(|d| owned.contains(&d["township"].as_str().unwrap_or_default()))),
            "{devices}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_reads_an_external_broker_over_mutual_tls() -> anyhow::Result<()> {
    let dir = scratch_dir("scale-out-tls")?;
    certs(&dir, &["init-ca", "--out", "ca"])?;
    certs(
        &dir,
        &[
            "server",
            "--ca",
            "ca",
            "--host",
            "localhost",
            "--host",
            "127.0.0.1",
            "--out",
            "server",
        ],
    )?;
    // The gateway's own client certificate, and one for the publishing box.
    certs(
        &dir,
        &["box", "--ca", "ca", "--box", "gateway-1", "--out", "client"],
    )?;
    certs(
        &dir,
        &["box", "--ca", "ca", "--box", "box-1", "--out", "box"],
    )?;
    let port = free_port()?;
    let path = |p: &str| dir.join(p).display().to_string();
    let _broker = mosquitto_with(
        &dir,
        port,
        &format!(
            // Started as root (CI), mosquitto would switch to its own user, which cannot read
            // the key `gateway certs` wrote with mode 0600; `user root` keeps it (ignored when
            // the tests do not run as root).
            "user root\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
            path("ca/ca.pem"),
            path("server/server.pem"),
            path("server/server.key")
        ),
    )?;
    listening(port).await?;
    let device = "yanqing-dongguan-0001";
    let registry = [RegistryHousehold::new(device, "yanqing", "dongguan")];
    let (gateway, http) = start_gateway_with(
        &dir,
        "gateway-tls",
        "localhost",
        port,
        &["yanqing"],
        &registry,
        &format!(
            "\n[broker.external.tls]\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n",
            path("ca/ca.pem"),
            path("client/box.pem"),
            path("client/box.key")
        ),
    )?;
    let topic = format!("heating/v1/yanqing/{device}/telemetry");
    until_listed(
        "a reading over TLS through mosquitto",
        &http,
        device,
        |seq| {
            let output = Command::new("mosquitto_pub")
                .args(["-h", "localhost", "-p", &port.to_string(), "-q", "1"])
                .args(["-t", &topic, "-m", &telemetry(device, seq, false)])
                .args(["--cafile", &path("ca/ca.pem")])
                .args([
                    "--cert",
                    &path("box/box.pem"),
                    "--key",
                    &path("box/box.key"),
                ])
                .output()?;
            anyhow::ensure!(
                output.status.success(),
                "mosquitto_pub: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            Ok(())
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", gateway.log()))?;
    Ok(())
}

/// A TCP proxy to `upstream` that holds back the broker's first answer (the CONNACK) for
/// `delay`: a broker slower to answer than the gateway's rules tick.
async fn slow_proxy(upstream: u16, delay: Duration) -> anyhow::Result<u16> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut broker) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                else {
                    return;
                };
                let (mut client_read, mut client_write) = client.split();
                let (mut broker_read, mut broker_write) = broker.split();
                let up = tokio::io::copy(&mut client_read, &mut broker_write);
                let down = async {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut first = [0u8; 4096];
                    let n = broker_read.read(&mut first).await?;
                    // The slowness under test (a broker's late CONNACK), not synchronisation.
                    tokio::time::sleep(delay).await;
                    client_write.write_all(&first[..n]).await?;
                    tokio::io::copy(&mut broker_read, &mut client_write).await
                };
                let _ = tokio::join!(up, down);
            });
        }
    });
    Ok(port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_slower_to_answer_than_the_rules_tick_is_still_reached() -> anyhow::Result<()> {
    let dir = scratch_dir("scale-out-slow")?;
    let port = free_port()?;
    let _broker = mosquitto(&dir, port)?;
    listening(port).await?;
    // The CONNACK comes 800 ms after CONNECT; ingest's tick fires every 200 ms.
    let proxy = slow_proxy(port, Duration::from_millis(800)).await?;
    let device = "yanqing-dongguan-0001";
    let registry = [RegistryHousehold::new(device, "yanqing", "dongguan")];
    let (gateway, http) = start_gateway_with(
        &dir,
        "gateway-slow",
        "127.0.0.1",
        proxy,
        &["yanqing"],
        &registry,
        "\n[rules]\ntick = \"200ms\"\n",
    )?;
    let topic = format!("heating/v1/yanqing/{device}/telemetry");
    until_listed("a reading through the slow broker", &http, device, |seq| {
        publish(port, &topic, &telemetry(device, seq, false)).map(drop)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", gateway.log()))?;
    Ok(())
}
