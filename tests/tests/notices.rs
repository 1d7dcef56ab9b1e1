//! Notices on MQTT across processes: the gateway binary with its embedded broker, a client
//! subscribed to `heating/v1/{township}/+/notices` (as a township's own tool would be), an
//! order escalated (督办) over the HTTP API; the notice arrives on
//! `heating/v1/{township}/escalated/notices` with the order and the note, and without the
//! household's or the officer's phone numbers, names or address.

use std::time::Duration;

use anyhow::{anyhow, ensure, Context as _};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{json, Value};
use tests::{scratch_dir, write_registry, GatewayConfig, RegistryHousehold, OPERATOR_TOKEN};

/// Longest wait for a message the test expects (a bound on failure, not a synchronisation).
const PATIENCE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escalation_reaches_the_townships_mqtt_subscribers_without_peoples_details(
) -> anyhow::Result<()> {
    let dir = scratch_dir("notices")?;
    let households = [RegistryHousehold::new(
        "yanqing-xiguan-0001",
        "yanqing",
        "xiguan",
    )];
    write_registry(&dir.join("registry"), &households)?;
    let (gateway, ready) = GatewayConfig {
        registry: true,
        extra: "[notify]\n[[notify.township_officers]]\ntownship = \"yanqing\"\nname = \"延庆镇派单员\"\nphone = \"13811112222\"\n".into(),
        ..GatewayConfig::with_operator("centre")
    }
    .start("gateway", &dir)?;
    let http = format!("http://{}", ready["http"].as_str().unwrap_or_default());
    let mqtt = ready["mqtt"].as_str().unwrap_or_default().to_owned();
    let (host, port) = mqtt
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("bad mqtt address {mqtt:?}"))?;

    // The township's tool subscribes first.
    let mut options = MqttOptions::new("township-tool", host, port.parse()?);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .subscribe("heating/v1/yanqing/+/notices", QoS::AtLeastOnce)
        .await?;
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Event::Incoming(Packet::SubAck(_)) = events.poll().await? {
                return Ok::<_, anyhow::Error>(());
            }
        }
    })
    .await
    .context("no SUBACK")??;

    // A repair request, and the centre escalates its order.
    let http_client = reqwest::Client::new();
    let post = |path: String, body: Value| {
        let request = http_client
            .post(format!("{http}{path}"))
            .bearer_auth(OPERATOR_TOKEN)
            .json(&body);
        async move {
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            ensure!(status.is_success(), "{status}: {body}");
            Ok::<_, anyhow::Error>(body)
        }
    };
    let outcome = post(
        "/api/v1/requests".into(),
        json!({"kind": "repair", "channel": "centre_hotline",
               "household_id": households[0].household_id(), "text": "暖气不热"}),
    )
    .await?;
    let order = outcome["order_id"]
        .as_i64()
        .ok_or_else(|| anyhow!("no order: {outcome}"))?;
    post(
        format!("/api/v1/orders/{order}/escalate"),
        json!({"note": "老人独居，督办"}),
    )
    .await?;

    let (topic, payload) = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Event::Incoming(Packet::Publish(publish)) = events.poll().await? {
                return Ok::<_, anyhow::Error>((publish.topic.clone(), publish.payload.to_vec()));
            }
        }
    })
    .await
    .with_context(|| format!("no notice on MQTT\n{}", gateway.log()))??;
    assert_eq!(topic, "heating/v1/yanqing/escalated/notices");
    let notice: Value = serde_json::from_slice(&payload)?;
    assert_eq!(notice["kind"], "escalated");
    assert_eq!(notice["order_id"], order);
    assert!(
        notice["note"]
            .as_str()
            .is_some_and(|n| n.ends_with("老人独居，督办")),
        "{notice}"
    );
    assert_eq!(notice["for_roles"], json!(["township_officer"]));
    let text = String::from_utf8_lossy(&payload);
    for private in ["13811112222", "延庆镇派单员", "住户1", "13800000001"] {
        assert!(!text.contains(private), "{private} published: {text}");
    }
    Ok(())
}
