//! Scale-out mode across real processes: Debian's mosquitto as the external broker, two gateway
//! instances each owning half of the townships, faulty telemetry published by mosquitto_pub
//! for devices in both halves: each gateway opens orders only for its own townships.

use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tests::{binary, eventually, get_json, scratch_dir, Proc, OPERATOR_TOKEN};

struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn mosquitto(dir: &Path, port: u16) -> anyhow::Result<Mosquitto> {
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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
        r#","fault":{"code":1,"category":"water_flow","text":"E1"}"#
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
) -> anyhow::Result<(Proc, String)> {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder)?;
    let list: Vec<String> = townships.iter().map(|t| format!("\"{t}\"")).collect();
    std::fs::write(
        folder.join("gateway.toml"),
        format!(
            "[broker]\nmode = \"external\"\n\n[broker.external]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"{name}\"\nkeep_alive = \"5s\"\ntownships = [{}]\n\n\
             [http]\nlisten = \"127.0.0.1:0\"\n\n[store]\npath = \"gateway.sqlite\"\n\n\
             [[api.tokens]]\nname = \"e2e\"\ntoken = \"{OPERATOR_TOKEN}\"\nrole = \"operator\"\n",
            list.join(", ")
        ),
    )?;
    let (proc, ready) = Proc::start(
        name,
        &binary("gateway")?,
        &["run", "--config", "gateway.toml"],
        &folder,
        true,
    )?;
    let http = ready.unwrap_or_default()["http"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Ok((proc, http))
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
    .await?;
    let (west, west_http) = start_gateway(&dir, "gateway-west", port, &["yanqing", "badaling"])?;
    let (east, east_http) = start_gateway(&dir, "gateway-east", port, &["sihai", "yongning"])?;
    let client = reqwest::Client::new();

    // Both instances must have subscribed to every township they own before the test publishes
    // (one SUBSCRIBE per township, and a QoS 1 message published before its filter is in place
    // is lost): wait until a probe reading of each owned township shows up as a device on its
    // owner.
    let probes = [
        ("yanqing", "yanqing-probe-0000", &west_http),
        ("badaling", "badaling-probe-0000", &west_http),
        ("sihai", "sihai-probe-0000", &east_http),
        ("yongning", "yongning-probe-0000", &east_http),
    ];
    let mut seq = 0;
    for (township, device, http) in probes {
        let url = format!("http://{http}/api/v1/devices");
        eventually(
            &format!("{device} to reach its gateway"),
            Duration::from_secs(30),
            || {
                seq += 1;
                let published = publish(
                    port,
                    &format!("heating/v1/{township}/{device}/telemetry"),
                    &telemetry(device, seq, false),
                );
                let client = client.clone();
                let url = url.clone();
                async move {
                    published?;
                    let devices = get_json(&client, &url).await?;
                    Ok(devices
                        .as_array()
                        .is_some_and(|d| d.iter().any(|d| d["device_id"] == device))
                        .then_some(()))
                }
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}\n{}", west.log(), east.log()))?;
    }

    let faulty = [
        ("yanqing", "yanqing-dongguan-0001"),
        ("badaling", "badaling-chadao-0002"),
        ("sihai", "sihai-sihai-0003"),
        ("yongning", "yongning-beiguan-0004"),
        // Nobody owns kangzhuang: neither gateway may open an order for it.
        ("kangzhuang", "kangzhuang-kangzhuang-0005"),
    ];
    for (township, device) in faulty {
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
        ["sihai-sihai-0003", "yongning-beiguan-0004"]
    );
    // Neither saw the other's (or the unowned) devices at all.
    let west_devices = get_json(&client, &format!("http://{west_http}/api/v1/devices")).await?;
    assert!(
        west_devices.as_array().is_some_and(|d| d.iter().all(|d| {
            let township = d["township"].as_str().unwrap_or_default();
            township == "yanqing" || township == "badaling"
        })),
        "{west_devices}"
    );
    Ok(())
}
