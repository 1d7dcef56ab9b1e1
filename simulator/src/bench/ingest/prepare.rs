//! The load, built before anything is timed: the fleet (load devices, then the probes'),
//! every round's reading payloads, and the edge boxes that publish them ([`prepare`]).

use std::sync::Arc;

use super::options::{IngestError, IngestOptions};
use super::probe::{probe_spec, ProbeSpec};
use crate::bench::world::World;
use crate::bench::BenchError;
use crate::climate::Climate;
use crate::fleet::{self, HouseholdSpec};
use crate::load::{group_households, BoxGroup, BoxIdentity};
use crate::mix::Mix;
use crate::scenario;

/// The pre-built load: every device's readings of every round, and the boxes publishing them.
pub(super) struct Load {
    /// `[household]`: the telemetry topic of the household's device.
    pub(super) topics: Vec<String>,
    /// `[box]`: the households whose devices the box serves (with one device per box, box `i`
    /// serves household `i`).
    pub(super) boxes: Vec<Vec<usize>>,
    /// `[round][household]`: the household's readings of that round (normally one); the
    /// first `warmup` rounds are sent before the clock starts.
    pub(super) rounds: Vec<Vec<Vec<Vec<u8>>>>,
    pub(super) round_ts: Vec<i64>,
    /// Untimed rounds at the start of `rounds`.
    pub(super) warmup: usize,
    /// Readings and payload bytes of the timed rounds.
    pub(super) messages: u64,
    pub(super) payload_bytes: u64,
    /// ... of the warm-up rounds.
    pub(super) warmup_messages: u64,
    pub(super) warmup_payload_bytes: u64,
}

impl Load {
    /// The rounds the clock runs over.
    pub(super) fn timed_rounds(&self) -> std::ops::Range<usize> {
        self.warmup..self.rounds.len()
    }
}

/// Everything built before the runs, shared by every run of both targets.
pub(super) struct Prepared {
    /// Load households first, then the probes.
    pub(super) fleet: Vec<HouseholdSpec>,
    /// The load's boxes first (as [`Load::boxes`]), then one box per probe; households are
    /// positions in `fleet`.
    pub(super) boxes: Vec<BoxGroup>,
    pub(super) load: Arc<Load>,
    pub(super) probes: Vec<ProbeSpec>,
    pub(super) start_ms: i64,
    pub(super) interval_ms: i64,
    pub(super) households_per_technician: usize,
}

impl Prepared {
    /// Every box's identity: the load's, then the probes'.
    pub(super) fn identities(&self) -> Vec<BoxIdentity> {
        self.boxes
            .iter()
            .map(|group| group.identity.clone())
            .collect()
    }
}

/// Readings and payload bytes of a set of rounds.
#[derive(Default)]
struct Tally {
    messages: u64,
    bytes: u64,
}

/// The rounds' payloads per household, their event times and tallies (warm-up, timed).
struct Rounds {
    rounds: Vec<Vec<Vec<Vec<u8>>>>,
    round_ts: Vec<i64>,
    warmup: Tally,
    timed: Tally,
}

/// Advances the world round by round and keeps each household's readings.
fn build_rounds(
    world: &mut World,
    options: &IngestOptions,
    start_ms: i64,
    interval_ms: i64,
) -> Rounds {
    let all_rounds = options.warmup_rounds + options.rounds;
    let mut built = Rounds {
        rounds: Vec::with_capacity(all_rounds),
        round_ts: Vec::with_capacity(all_rounds),
        warmup: Tally::default(),
        timed: Tally::default(),
    };
    for round in 1..=all_rounds {
        let ts = start_ms + round as i64 * interval_ms;
        world.advance_to(ts);
        let mut per_household = vec![Vec::new(); options.devices];
        let tally = if round <= options.warmup_rounds {
            &mut built.warmup
        } else {
            &mut built.timed
        };
        for box_round in world.poll_round() {
            tally.messages += box_round.readings.len() as u64;
            tally.bytes += box_round
                .readings
                .iter()
                .map(|r| r.len() as u64)
                .sum::<u64>();
            if let Some(slot) = per_household.get_mut(box_round.household) {
                *slot = box_round.readings;
            }
        }
        built.rounds.push(per_household);
        built.round_ts.push(ts);
    }
    built
}

/// Each box must publish its devices' readings on their own topics, under its prefix.
fn check_box_topics(boxes: &[BoxGroup], topics: &[String]) -> Result<(), IngestError> {
    for group in boxes {
        for (&household, device) in group.households.iter().zip(&group.identity.devices) {
            let topic = topics.get(household).map(String::as_str);
            if group.identity.telemetry_topic(device.as_str()).as_deref() != topic {
                return Err(IngestError::Config(format!(
                    "device {device} publishes on {topic:?}, not under its box {} ({})",
                    group.identity.box_id,
                    group.identity.topic_prefix()
                )));
            }
        }
    }
    Ok(())
}

/// Generates the fleet and builds every round's payloads (nothing is timed yet).
pub(super) fn prepare(options: &IngestOptions) -> Result<Prepared, IngestError> {
    let total = options.devices + options.probes;
    let fleet =
        fleet::generate(total, options.seed, &options.profiles).map_err(BenchError::from)?;
    let mix = Mix::default_mix().map_err(BenchError::from)?;
    let interval_ms = mix.telemetry.interval.as_millis() as i64;
    // One spare interval, so the scenario's end (rounded down to its grid) covers every round.
    let all_rounds = options.warmup_rounds + options.rounds;
    let days = (all_rounds as f64 + 1.0) * interval_ms as f64 / 86_400_000.0;
    let load_fleet = &fleet[..options.devices];
    let plan = scenario::build(load_fleet, &mix, days, options.seed).map_err(BenchError::from)?;
    let mut world = World::new(load_fleet, &mix, &plan, options.seed);
    let built = build_rounds(&mut world, options, plan.start_ms, interval_ms);
    let topics: Vec<String> = (0..options.devices)
        .map(|h| world.telemetry_topic(h).unwrap_or_default().to_owned())
        .collect();
    let mut boxes = group_households(load_fleet, options.devices_per_box);
    check_box_topics(&boxes, &topics)?;
    let load_boxes = boxes.iter().map(|g| g.households.clone()).collect();
    boxes.extend(
        fleet[options.devices..]
            .iter()
            .enumerate()
            .map(|(offset, spec)| BoxGroup {
                identity: BoxIdentity::of_household(spec),
                households: vec![options.devices + offset],
            }),
    );
    let climate = Climate::yanqing_winter(options.seed);
    let probes = fleet[options.devices..]
        .iter()
        .map(|spec| probe_spec(spec, &climate, plan.start_ms))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        fleet,
        boxes,
        load: Arc::new(Load {
            topics,
            boxes: load_boxes,
            rounds: built.rounds,
            round_ts: built.round_ts,
            warmup: options.warmup_rounds,
            messages: built.timed.messages,
            payload_bytes: built.timed.bytes,
            warmup_messages: built.warmup.messages,
            warmup_payload_bytes: built.warmup.bytes,
        }),
        probes,
        start_ms: plan.start_ms,
        interval_ms,
        households_per_technician: mix.technicians.households_per_technician,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn grouping_devices_into_boxes_keeps_every_reading_and_topic() {
        let prepare_with = |per_box: usize| {
            let mut options = IngestOptions::new(90, PathBuf::from("gateway")).expect("options");
            options.devices_per_box = per_box;
            options.rounds = 3;
            options.probes = 4;
            prepare(&options).expect("prepared")
        };
        let single = prepare_with(1);
        let grouped = prepare_with(4);
        let (a, b) = (&single.load, &grouped.load);
        assert_eq!(a.boxes, (0..90).map(|h| vec![h]).collect::<Vec<_>>());
        assert_eq!(a.messages, b.messages, "the same readings");
        assert_eq!(a.rounds, b.rounds);
        assert_eq!(a.topics, b.topics, "each device on its own topic");
        assert!(
            b.boxes.len() < 90 && b.boxes.len() >= 23,
            "{}",
            b.boxes.len()
        );
        let mut served: Vec<usize> = b.boxes.iter().flatten().copied().collect();
        served.sort_unstable();
        assert_eq!(served, (0..90).collect::<Vec<_>>(), "every device once");
        // The load's boxes, then one box per probe device.
        assert_eq!(grouped.boxes.len(), b.boxes.len() + 4);
        for (group, households) in grouped.boxes.iter().zip(&b.boxes) {
            assert_eq!(&group.households, households);
            for &h in households {
                assert!(b.topics[h].starts_with(&group.identity.topic_prefix()));
            }
        }
        for (offset, group) in grouped.boxes[b.boxes.len()..].iter().enumerate() {
            assert_eq!(group.households, vec![90 + offset]);
            assert_eq!(group.identity.devices.len(), 1);
        }
        // What the publishers send: every reading of a round once, box by box.
        let sent: usize = b
            .boxes
            .iter()
            .flatten()
            .map(|&h| {
                b.rounds[b.timed_rounds()]
                    .iter()
                    .map(|round| round[h].len())
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(sent as u64, b.messages, "timed readings");
        assert_eq!(b.rounds.len(), b.warmup + 3, "warm-up rounds come first");
        let warm: usize = b.rounds[..b.warmup].iter().flatten().map(Vec::len).sum();
        assert_eq!(warm as u64, b.warmup_messages);
        assert!(b.warmup_messages > 0);
    }
}
