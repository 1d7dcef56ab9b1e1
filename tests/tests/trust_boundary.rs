//! The trust boundary under attack, against the real gateway binary: clients that try to take
//! over the gateway's own broker links, idle and piled-up sockets on the TLS listener, floods
//! of invented devices, distinct topics, retained messages and subscriptions, tokens in URLs,
//! a scrape of `/metrics` without a token and a client that never finishes its headers. Each
//! attack is refused and counted, and a legitimate box (box A, mutual TLS) and an operator
//! keep working meanwhile.

mod tls_fixture;

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context as _};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tests::{eventually, get_json, OPERATOR_TOKEN};
use tls_fixture::{
    describe, prefixed, reading, status, status_topic, telemetry_topic, Fixture, Identity,
};

/// Box A's tenant id (`box-a` with `-` written `X`).
const TENANT_A: &str = "boxXa";

/// A metric's value from `/metrics` (0 when absent).
async fn metric(fx: &Fixture, name: &str) -> anyhow::Result<f64> {
    let text = fx
        .client
        .get(fx.url("/metrics"))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// Box A publishes its device's reading number `seq` over mutual TLS, and the gateway counts it.
async fn box_a_gets_through(fx: &Fixture, seq: u64) -> anyhow::Result<()> {
    let box_a = fx.dir.join("box-a");
    let output = fx.publish(
        Identity::Box(&box_a),
        fx.tls_v4,
        "311",
        &prefixed(TENANT_A, &telemetry_topic("dev-a")),
        &reading("dev-a", seq),
    )?;
    ensure!(output.status.success(), "box A: {}", describe(&output));
    eventually(
        &format!("box A's reading {seq}"),
        Duration::from_secs(15),
        || async {
            let device = fx.device("dev-a").await?.unwrap_or_default();
            Ok((device["last_seq"].as_u64() == Some(seq)).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", fx.gateway.log()))
}

/// An MQTT client of the plain (loopback) listener, its event loop driven in a task that
/// reports whether the broker closed the connection.
fn plain_client(
    fx: &Fixture,
    id: &str,
) -> anyhow::Result<(AsyncClient, tokio::task::JoinHandle<Option<String>>)> {
    let (host, port) = fx
        .mqtt
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("no plain listener in {}", fx.mqtt))?;
    let mut options = MqttOptions::new(id, host, port.parse()?);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_max_packet_size(64 * 1024, 64 * 1024);
    let (client, mut events) = AsyncClient::new(options, 1_000);
    let task = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Disconnect)) => return Some("disconnect".to_owned()),
                Ok(_) => {}
                Err(error) => return Some(error.to_string()),
            }
        }
    });
    Ok((client, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_taking_the_gateways_link_names_do_not_stop_ingest() -> anyhow::Result<()> {
    let fx = Fixture::start("trust-link-names", &[])?;
    box_a_gets_through(&fx, 1).await?;
    // The names the gateway's in-process links had before they were made unguessable; a
    // CONNECT with one of them used to displace ingest's link and stop the process.
    for id in [
        "gateway-ingest",
        "gateway-ingest-publisher",
        "gateway-publisher",
        "gateway-ingest-00000000000000000000000000000000",
    ] {
        let output = Command::new("mosquitto_pub")
            .args(["-L", &format!("mqtt://{}/junk/x", fx.mqtt)])
            .args(["-i", id, "-q", "1", "-m", "hello"])
            .output()
            .context("cannot run mosquitto_pub (Debian package mosquitto-clients)")?;
        ensure!(output.status.success(), "{id}: {}", describe(&output));
    }
    box_a_gets_through(&fx, 2).await?;
    ensure!(
        metric(&fx, "gateway_broker_links_reopened_total{link=\"ingest\"}").await? == 0.0,
        "no link was displaced"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_on_the_tls_listener_do_not_block_admission_and_are_closed(
) -> anyhow::Result<()> {
    let fx = Fixture::start_with(
        "trust-idle-tls",
        &[],
        "connection_timeout = \"2s\"\nmax_pending_handshakes_per_address = 5\n",
        "",
    )?;
    // Four sockets that never send a ClientHello: before the handshake moved out of rumqttd's
    // accept loop, the first of them blocked every admission until it closed.
    let mut idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(("127.0.0.1", fx.tls_v4)))
        .collect::<Result<_, _>>()?;
    let started = Instant::now();
    box_a_gets_through(&fx, 1).await?;
    ensure!(
        started.elapsed() < Duration::from_secs(2),
        "box A waited {:?} behind the idle sockets",
        started.elapsed()
    );
    // Box A took the fifth slot for its handshake (all come from 127.0.0.1). A fifth idle
    // socket fills the cap and a sixth is over it: closed at once.
    idle.push(TcpStream::connect(("127.0.0.1", fx.tls_v4))?);
    let mut over = TcpStream::connect(("127.0.0.1", fx.tls_v4))?;
    over.set_read_timeout(Some(Duration::from_secs(1)))?;
    let mut byte = [0u8; 1];
    ensure!(
        matches!(over.read(&mut byte), Ok(0) | Err(_)),
        "the socket over the cap was kept"
    );
    // The idle ones are closed once the connection timeout (2 s) has passed.
    for socket in &mut idle {
        socket.set_read_timeout(Some(Duration::from_secs(10)))?;
        let closed_at = Instant::now();
        let read = socket.read(&mut byte);
        ensure!(
            matches!(read, Ok(0)) || read.is_err(),
            "an idle socket got data: {read:?}"
        );
        ensure!(
            closed_at.elapsed() < Duration::from_secs(9),
            "an idle socket stayed open"
        );
    }
    eventually("the counts", Duration::from_secs(10), || async {
        let timeouts = metric(&fx, "gateway_broker_handshake_timeouts_total").await?;
        let refused = metric(&fx, "gateway_broker_admissions_refused_total").await?;
        Ok((timeouts >= 5.0 && refused >= 1.0).then_some(()))
    })
    .await?;
    box_a_gets_through(&fx, 2).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_invented_devices_and_topics_stays_out_of_the_fleet_and_bounded(
) -> anyhow::Result<()> {
    const INVENTED: usize = 10_000;
    const TOPICS: usize = 100_000;
    let fx = Fixture::start("trust-flood", &[])?;
    box_a_gets_through(&fx, 1).await?;
    let rss_before = metric(&fx, "process_resident_memory_bytes").await?;
    let (client, events) = plain_client(&fx, "flooder")?;
    for n in 0..INVENTED {
        let device = format!("fake-{n:05}");
        client
            .publish(
                telemetry_topic(&device),
                QoS::AtLeastOnce,
                false,
                reading(&device, 1),
            )
            .await?;
    }
    for n in 0..TOPICS {
        // Distinct topics under the tree ingest subscribes to, and outside it.
        let topic = if n % 2 == 0 {
            format!("heating/v1/yanqing/x{n}/health")
        } else {
            format!("junk/{n}/x")
        };
        client
            .publish(topic, QoS::AtMostOnce, false, "x".repeat(32))
            .await?;
    }
    // A registered device's reading last on the same connection: once ingest has it, the
    // broker has routed everything the flooder sent before it.
    client
        .publish(
            telemetry_topic("dev-a"),
            QoS::AtLeastOnce,
            false,
            reading("dev-a", 99),
        )
        .await?;
    eventually("the flood routed", Duration::from_secs(120), || async {
        let device = fx.device("dev-a").await?.unwrap_or_default();
        Ok((device["last_seq"].as_u64() == Some(99)).then_some(()))
    })
    .await
    .map_err(|e| anyhow!("{e}\n{}", fx.gateway.log()))?;
    eventually(
        "every invented reading refused",
        Duration::from_secs(90),
        || async {
            let refused = metric(
                &fx,
                "gateway_messages_rejected_total{reason=\"unregistered_device\"}",
            )
            .await?;
            Ok((refused >= INVENTED as f64).then_some(()))
        },
    )
    .await
    .map_err(|e| anyhow!("{e}\n{}", fx.gateway.log()))?;
    ensure!(!events.is_finished(), "the flooder was disconnected");
    box_a_gets_through(&fx, 100).await?;
    let devices = get_json(&fx.client, &fx.url("/api/v1/devices")).await?;
    let count = devices.as_array().map_or(0, Vec::len);
    ensure!(count <= 2, "the fleet grew to {count} devices");
    let alerts = get_json(&fx.client, &fx.url("/api/v1/alerts")).await?;
    ensure!(
        alerts.as_array().is_some_and(Vec::is_empty),
        "alerts: {alerts}"
    );
    let listed = get_json(&fx.client, &fx.url("/api/v1/registry/unregistered")).await?;
    let listed = listed.as_array().cloned().unwrap_or_default();
    ensure!(
        (1..=1_000).contains(&listed.len()),
        "{} unregistered listed",
        listed.len()
    );
    ensure!(
        listed[0]["device_id"]
            .as_str()
            .is_some_and(|d| d.starts_with("fake-")),
        "{}",
        listed[0]
    );
    let rss_after = metric(&fx, "process_resident_memory_bytes").await?;
    let grown_mib = (rss_after - rss_before) / (1024.0 * 1024.0);
    eprintln!(
        "flood: {INVENTED} invented devices and {TOPICS} distinct topics; fleet {count} devices, {} listed as unregistered; RSS {:.0} -> {:.0} MiB",
        listed.len(),
        rss_before / 1048576.0,
        rss_after / 1048576.0
    );
    ensure!(
        grown_mib < 200.0,
        "the gateway grew by {grown_mib:.0} MiB ({rss_before} -> {rss_after} bytes)"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_messages_are_kept_only_for_status_and_up_to_the_cap() -> anyhow::Result<()> {
    let fx = Fixture::start_with("trust-retained", &[], "max_retained = 3\n", "")?;
    let (client, _events) = plain_client(&fx, "retainer")?;
    for n in 0..2_000 {
        client
            .publish(format!("junk/{n}"), QoS::AtLeastOnce, true, "kept?")
            .await?;
    }
    for agent in ["box-1", "box-2", "box-3", "box-4"] {
        client
            .publish(
                status_topic(agent),
                QoS::AtLeastOnce,
                true,
                status(agent, &[]),
            )
            .await?;
    }
    eventually("the refusals counted", Duration::from_secs(20), || async {
        let refused = metric(&fx, "gateway_broker_retained_refused_total").await?;
        Ok((refused >= 2_001.0).then_some(()))
    })
    .await?;
    // A new subscriber gets the three retained statuses the cap allowed and no junk.
    let retained = Command::new("mosquitto_sub")
        .args(["-L", &format!("mqtt://{}/#", fx.mqtt)])
        .args(["--retained-only", "-W", "2", "-v"])
        .output()
        .context("cannot run mosquitto_sub (Debian package mosquitto-clients)")?;
    let text = String::from_utf8_lossy(&retained.stdout);
    ensure!(!text.contains("junk/"), "junk was retained: {text}");
    let statuses = text.lines().filter(|l| l.contains("/status ")).count();
    ensure!(statuses == 3, "{statuses} statuses retained: {text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_piling_up_subscriptions_is_disconnected() -> anyhow::Result<()> {
    let fx = Fixture::start_with(
        "trust-subscriptions",
        &[],
        "max_subscriptions_per_connection = 8\n",
        "",
    )?;
    let (client, events) = plain_client(&fx, "subscriber")?;
    for n in 0..50 {
        client
            .subscribe(format!("heating/v1/yanqing/d{n}/cmd"), QoS::AtLeastOnce)
            .await?;
    }
    let ended = tokio::time::timeout(Duration::from_secs(10), events)
        .await
        .context("the client was never disconnected")??;
    ensure!(ended.is_some(), "the event loop ended without a reason");
    ensure!(metric(&fx, "gateway_broker_subscriptions_refused_total").await? >= 1.0);
    box_a_gets_through(&fx, 1).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_stay_out_of_urls_metrics_need_one_and_slow_headers_are_cut() -> anyhow::Result<()> {
    let fx = Fixture::start_with("trust-http", &[], "", "header_read_timeout = \"1s\"\n")?;
    // A token in the URL is refused anywhere but the event stream.
    let response = fx
        .client
        .get(fx.url(&format!("/api/v1/orders?access_token={OPERATOR_TOKEN}")))
        .send()
        .await?;
    ensure!(response.status() == 400, "{}", response.status());
    let body = response.text().await?;
    ensure!(body.contains("/api/v1/stream"), "{body}");
    // /metrics without a token: 401; with one: the counters.
    let response = fx.client.get(fx.url("/metrics")).send().await?;
    ensure!(response.status() == 401, "{}", response.status());
    ensure!(metric(&fx, "gateway_http_connections_refused_total").await? == 0.0);
    // A client that sends half a request line and stops is disconnected.
    let mut slow = TcpStream::connect(fx.http.as_str())?;
    std::io::Write::write_all(&mut slow, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")?;
    slow.set_read_timeout(Some(Duration::from_secs(10)))?;
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = slow.read_to_end(&mut rest);
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "the slow client was kept {:?}",
        started.elapsed()
    );
    // The operator's API works meanwhile.
    let summary = get_json(&fx.client, &fx.url("/api/v1/summary")).await?;
    ensure!(summary.is_object(), "{summary}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_without_a_certificate_logs_in_with_its_password_and_is_held_to_its_tenant(
) -> anyhow::Result<()> {
    let fx = Fixture::start_with(
        "trust-passwords",
        &[],
        "\n[broker.passwords]\nenabled = true\nlisten = \"127.0.0.1:0\"\nfile = \"box-passwords\"\n",
        "",
    )?;
    let port = fx
        .passwords
        .ok_or_else(|| anyhow!("no password listener in the ready line"))?;
    let own = prefixed(TENANT_A, &telemetry_topic("dev-a"));
    let good = Identity::Login(TENANT_A, &fx.box_a_password);
    // Its own device under its own prefix: accepted.
    let output = fx.publish(good, port, "311", &own, &reading("dev-a", 1))?;
    ensure!(output.status.success(), "box A: {}", describe(&output));
    fx.wait_for_readings("dev-a", 1).await?;
    // A wrong password, another box's name with A's password, no login at all: refused.
    for (what, identity) in [
        (
            "wrong password",
            Identity::Login(TENANT_A, "0123456789abcdef0123456789abcdef"),
        ),
        ("box B's name", Identity::Login("boxXb", &fx.box_a_password)),
        ("no login", Identity::None),
    ] {
        let output = fx.publish(identity, port, "311", &own, &reading("dev-a", 2))?;
        ensure!(!output.status.success(), "{what} was let in");
    }
    ensure!(metric(&fx, "gateway_broker_password_failures_total").await? >= 2.0);
    // Logged in as A, publishing under B's prefix or outside any prefix: rumqttd closes the
    // connection and nothing reaches ingest.
    for topic in [
        prefixed("boxXb", &telemetry_topic("dev-b")),
        telemetry_topic("dev-b"),
    ] {
        let _ = fx.publish(good, port, "311", &topic, &reading("dev-b", 1))?;
    }
    let output = fx.publish(good, port, "311", &own, &reading("dev-a", 3))?;
    ensure!(
        output.status.success(),
        "box A again: {}",
        describe(&output)
    );
    fx.wait_for_readings("dev-a", 2).await?;
    ensure!(
        fx.device("dev-b").await?.is_none(),
        "box A's login spoke for box B's device"
    );
    // Revoked: its line deleted, the file is read again and the login fails.
    std::fs::write(fx.dir.join("box-passwords"), "# revoked\n")?;
    eventually(
        "box A refused after revocation",
        Duration::from_secs(15),
        || async {
            let output = fx.publish(good, port, "311", &own, &reading("dev-a", 4))?;
            Ok((!output.status.success()).then_some(()))
        },
    )
    .await?;
    Ok(())
}
