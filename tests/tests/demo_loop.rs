//! The demo closes the loop: started as a newcomer starts it (its simulated crew and desk on,
//! the default time scale), on a free port, it closes at least one work order, after the
//! callback (回访), within three minutes of starting; the closed order went through every step
//! in order, the technician's travel and repair took the time the demo's clock says, and the
//! daily report counts it.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use serde_json::Value;
use tests::Demo;

/// The bound: at least one order closed within three minutes of starting the demo.
const LOOP_DEADLINE: Duration = Duration::from_secs(180);
/// The demo's default time scale: a minute of field work takes a second.
const SECONDS_PER_DEMO_MINUTE: f64 = 1.0;

fn ms(value: &Value, field: &str) -> anyhow::Result<i64> {
    value[field]
        .as_i64()
        .ok_or_else(|| anyhow!("{field} missing in {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_closes_an_order_after_its_callback_within_three_minutes() -> anyhow::Result<()> {
    let dir = tests::scratch_dir("demo-loop")?;
    let started = Instant::now();
    let demo = Demo::start(
        &dir,
        &[
            "--households",
            "30",
            "--fault-every",
            "2s",
            "--poll-every",
            "1s",
        ],
    )?;
    let client = reqwest::Client::new();
    let base = demo.base_url.clone();

    let left = LOOP_DEADLINE.saturating_sub(started.elapsed());
    let closed = tests::eventually("an order closed by the demo's crew and desk", left, || {
        let client = client.clone();
        let url = format!("{base}/api/v1/orders?state=closed&limit=10");
        async move {
            let orders = tests::get_json(&client, &url).await?;
            Ok(orders.as_array().and_then(|o| o.first()).cloned())
        }
    })
    .await
    .with_context(|| format!("demo log:\n{}", demo.log()))?;
    let elapsed = started.elapsed();
    eprintln!(
        "order {} closed {:.1} s after the demo started",
        closed["id"],
        elapsed.as_secs_f64()
    );

    let id = ms(&closed, "id")?;
    let detail = tests::get_json(&client, &format!("{base}/api/v1/orders/{id}")).await?;
    let events = detail["events"]
        .as_array()
        .ok_or_else(|| anyhow!("order {id} has no events: {detail}"))?;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    // Every step, in order: a reopened order goes through accept..resolve again.
    let mut expected = [
        "dispatched",
        "accepted",
        "arrived",
        "resolved",
        "callback",
        "closed",
    ]
    .into_iter()
    .peekable();
    for kind in &kinds {
        if expected.peek() == Some(kind) {
            expected.next();
        }
    }
    if let Some(missing) = expected.next() {
        bail!("order {id} closed without a `{missing}` step in order: {kinds:?}");
    }
    let mut last = 0;
    for event in events {
        let at = ms(event, "at_ms")?;
        if at < last {
            bail!("order {id}'s events go back in time: {events:?}");
        }
        last = at;
    }
    if detail["satisfaction"]
        .as_i64()
        .is_none_or(|s| !(1..=5).contains(&s))
    {
        bail!("order {id} closed without the callback's satisfaction: {detail}");
    }

    // No shortcut: the drive took at least 20 and the repair at least 30 minutes of the
    // demo's clock (the last visit's, a reopened order counts its second visit).
    let last_of = |kind: &str| {
        events
            .iter()
            .rev()
            .find(|e| e["kind"] == kind)
            .and_then(|e| e["at_ms"].as_i64())
            .ok_or_else(|| anyhow!("order {id} has no {kind} event: {kinds:?}"))
    };
    let (accepted, arrived, resolved) = (
        last_of("accepted")?,
        last_of("arrived")?,
        last_of("resolved")?,
    );
    let minutes = |from: i64, to: i64| (to - from) as f64 / 1000.0 / SECONDS_PER_DEMO_MINUTE;
    // A little under the drawn minimum: the step's HTTP round trip is not part of the wait.
    if minutes(accepted, arrived) < 19.5 {
        bail!(
            "order {id}: the technician arrived {:.1} demo minutes after accepting (travel is at least 20)",
            minutes(accepted, arrived)
        );
    }
    if minutes(arrived, resolved) < 29.5 {
        bail!(
            "order {id}: resolved {:.1} demo minutes after arriving (a repair is at least 30)",
            minutes(arrived, resolved)
        );
    }

    // The daily report of the order's day counts what the crew closed.
    let day = wire::calendar::cst_date_string(ms(&detail, "created_at_ms")?);
    let report =
        tests::get_json(&client, &format!("{base}/api/v1/reports/daily?date={day}")).await?;
    let total = &report["total"];
    if total["resolved"].as_u64().unwrap_or(0) < 1
        || total["callbacks"].as_u64().unwrap_or(0) < 1
        || total["satisfaction_mean"].as_f64().is_none()
    {
        bail!("the daily report counts no resolved order with a callback: {total}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
