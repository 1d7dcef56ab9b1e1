//! Clock trust through the path ingest takes for a reading (`ingest::decode`, then
//! `ingest::settle`, then `ingest::record_reading` and the rule engine): a box that booted in
//! 1970 sends unsynced readings (its wall clock 1970, its boot id and monotonic time beside
//! it), then a synced reading of the same boot; the held readings are released stamped from
//! that reading's offset, so the fleet picture and the rules see the right event times and
//! an alert fires at the true time, not in 1970. A reading of a boot that never synced is
//! counted and kept out. No broker, no sleeps: the gateway's arrival clock is a parameter.

use std::sync::Arc;

use gateway::fleet::Fleet;
use gateway::ingest::clock::{BootClocks, Outcome};
use gateway::ingest::vendor::VendorNames;
use gateway::ingest::{decode, record_reading, settle, unestimated, Decoded};
use gateway::metrics::Metrics;
use rules::{Engine, RuleSet, TransitionKind};

const DEVICE: &str = "yanqing-dongguan-0001";
const TOPIC: &str = "heating/v1/yanqing/yanqing-dongguan-0001/telemetry";
const BOOT: &str = "2f0c8a4e-61b1-4d0e-9a57-0c3d2e1f4b6a";
/// 2026-12-01T00:00:00Z: the true time when NTP answers.
const TRUE_NOW: i64 = 1_796_083_200_000;
const MIN: i64 = 60_000;

const RULES: &str = r#"
[[rule]]
id = "room_cold"
description = "Room below 10 °C for 2 minutes"
kind = "threshold"
value = "indoor_temp_c"
below = 10.0
clear_above = 12.0
applies_to = ["heat_pump"]
for = "2m"
severity = "major"
action = "alert"
"#;

struct Pipeline {
    clocks: BootClocks,
    metrics: Arc<Metrics>,
    fleet: Arc<Fleet>,
    vendor_names: VendorNames,
    engine: Engine,
    /// Event times of the readings the rules were given, in order.
    evaluated: Vec<i64>,
    /// Firing transitions' event times.
    fired_at: Vec<i64>,
}

impl Pipeline {
    fn new() -> Self {
        Self {
            clocks: BootClocks::default(),
            metrics: Arc::new(Metrics::default()),
            fleet: Arc::new(Fleet::default()),
            vendor_names: VendorNames::default(),
            engine: Engine::new(RuleSet::parse(RULES, "test.toml").expect("rules")),
            evaluated: Vec::new(),
            fired_at: Vec::new(),
        }
    }

    /// One payload arriving at `arrival_ms` on the gateway's clock.
    fn ingest(&mut self, payload: serde_json::Value, arrival_ms: i64) {
        let bytes = serde_json::to_vec(&payload).expect("json");
        let decoded = decode(TOPIC.as_bytes(), &bytes, arrival_ms, 5 * MIN).expect("accepted");
        let Decoded::Reading(reading, township) = decoded else {
            panic!("not a reading")
        };
        for placed in settle(
            &mut self.clocks,
            &self.metrics,
            reading,
            township,
            arrival_ms,
            5 * MIN,
        ) {
            let mut reading = placed.reading;
            record_reading(
                &mut reading,
                &placed.township,
                &mut self.vendor_names,
                &self.metrics,
                &self.fleet,
                None,
            );
            self.evaluated.push(reading.ts_ms);
            let outcome = self.engine.process(&reading);
            self.fired_at.extend(
                outcome
                    .transitions
                    .iter()
                    .filter(|t| t.kind == TransitionKind::Firing)
                    .map(|t| t.at_ms),
            );
        }
    }

    fn advance(&mut self, watermark_ms: i64) {
        let outcome = self.engine.advance_watermark(watermark_ms);
        self.fired_at.extend(
            outcome
                .transitions
                .iter()
                .filter(|t| t.kind == TransitionKind::Firing)
                .map(|t| t.at_ms),
        );
    }
}

fn payload(seq: u64, ts_ms: i64, indoor: f64, clock: serde_json::Value) -> serde_json::Value {
    let mut payload = serde_json::json!({
        "v": 1,
        "device_id": DEVICE,
        "ts_ms": ts_ms,
        "seq": seq,
        "profile": "aurora-ashp",
        "kind": "heat_pump",
        "values": { "indoor_temp_c": indoor },
    });
    if let (Some(object), Some(clock)) = (payload.as_object_mut(), clock.as_object()) {
        object.extend(clock.clone());
    }
    payload
}

#[test]
fn unsynced_1970_readings_are_placed_from_a_later_synced_reading_of_the_same_boot() {
    let mut pipeline = Pipeline::new();
    // The box booted in 1970: its wall clock reads the monotonic time. A reading a minute,
    // from mono 0 to 3 min, room at 8 °C; they reach the gateway late (a backlog of an
    // earlier boot carries no send time), at TRUE_NOW + 30 s.
    let arrival = TRUE_NOW + 30_000;
    for minute in 0..4_i64 {
        let mono = minute * MIN;
        pipeline.ingest(
            payload(
                minute as u64 + 1,
                mono,
                8.0,
                serde_json::json!({ "boot_id": BOOT, "mono_ms": mono, "synced": false }),
            ),
            arrival,
        );
    }
    assert!(pipeline.evaluated.is_empty(), "held: no time for them yet");
    assert!(
        pipeline.fleet.get(DEVICE).is_none(),
        "not in the picture yet"
    );
    assert_eq!(pipeline.metrics.clock.count(Outcome::Held), 4);

    // NTP answered: the reading at mono 4 min is stamped TRUE_NOW by the box's trusted clock.
    pipeline.ingest(
        payload(
            5,
            TRUE_NOW,
            8.0,
            serde_json::json!({ "boot_id": BOOT, "mono_ms": 4 * MIN, "synced": true }),
        ),
        arrival + 1_000,
    );
    // The held readings went first, oldest first, each at TRUE_NOW - (4 min - its mono).
    assert_eq!(
        pipeline.evaluated,
        vec![
            TRUE_NOW - 4 * MIN,
            TRUE_NOW - 3 * MIN,
            TRUE_NOW - 2 * MIN,
            TRUE_NOW - MIN,
            TRUE_NOW,
        ]
    );
    assert_eq!(pipeline.metrics.clock.count(Outcome::FromBoot), 4);
    let state = pipeline.fleet.get(DEVICE).expect("in the picture");
    assert_eq!(state.last_ts_ms, Some(TRUE_NOW));
    assert_eq!(state.last_seq, Some(5));
    // The room was cold from TRUE_NOW - 4 min: two minutes later the rule fires, in 2026.
    pipeline.advance(TRUE_NOW);
    assert_eq!(pipeline.fired_at, vec![TRUE_NOW - 2 * MIN]);

    // A later unsynced reading of the same boot is placed at once from the same offset.
    pipeline.ingest(
        payload(
            6,
            5 * MIN,
            8.0,
            serde_json::json!({ "boot_id": BOOT, "mono_ms": 5 * MIN, "synced": false }),
        ),
        TRUE_NOW + 2 * MIN,
    );
    assert_eq!(pipeline.evaluated.last(), Some(&(TRUE_NOW + MIN)));

    let metrics = pipeline.metrics.render(&[]);
    assert!(
        metrics.contains("gateway_clock_readings_total{outcome=\"estimated_from_boot\"} 5\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_clock_readings_total{outcome=\"held\"} 4\n"),
        "{metrics}"
    );
    // Every box clock was off by about 56 years.
    assert!(
        metrics.contains("gateway_clock_skew_seconds_bucket{le=\"31536000\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gateway_clock_skew_seconds_count 5\n"),
        "{metrics}"
    );
}

#[test]
fn an_unsynced_reading_of_the_current_boot_is_placed_by_its_send_time_at_once() {
    let mut pipeline = Pipeline::new();
    // Read at mono 10 s, handed to MQTT at mono 70 s (a minute in the queue), arriving at
    // TRUE_NOW: it was read at TRUE_NOW - 60 s.
    pipeline.ingest(
        payload(
            1,
            10_000,
            19.0,
            serde_json::json!({ "boot_id": BOOT, "mono_ms": 10_000, "synced": false, "sent_mono_ms": 70_000 }),
        ),
        TRUE_NOW,
    );
    assert_eq!(pipeline.evaluated, vec![TRUE_NOW - MIN]);
    assert_eq!(pipeline.metrics.clock.count(Outcome::FromArrival), 1);
    let state = pipeline.fleet.get(DEVICE).expect("in the picture");
    assert_eq!(state.last_ts_ms, Some(TRUE_NOW - MIN));
}

#[test]
fn a_boot_that_never_synced_is_counted_and_kept_out_of_the_rules() {
    let mut pipeline = Pipeline::new();
    pipeline.ingest(
        payload(
            1,
            1_000,
            8.0,
            serde_json::json!({ "boot_id": BOOT, "mono_ms": 1_000, "synced": false }),
        ),
        TRUE_NOW,
    );
    // The hold passes without a synced reading of that boot.
    for placed in pipeline
        .clocks
        .expire(TRUE_NOW + gateway::ingest::clock::HOLD_MS)
    {
        unestimated(&pipeline.metrics, &placed);
    }
    assert!(pipeline.evaluated.is_empty());
    assert!(pipeline.fleet.get(DEVICE).is_none());
    assert_eq!(pipeline.metrics.clock.count(Outcome::Unestimated), 1);
    assert_eq!(pipeline.clocks.pending(), 0);
    // A synced 1970 reading is still refused as ancient, as before.
    let bytes = serde_json::to_vec(&payload(
        2,
        1_000,
        8.0,
        serde_json::json!({ "boot_id": BOOT, "mono_ms": 1_000, "synced": true }),
    ))
    .expect("json");
    let error = decode(TOPIC.as_bytes(), &bytes, TRUE_NOW, 5 * MIN).expect_err("ancient");
    assert_eq!(error.reason(), "ancient_timestamp");
}
