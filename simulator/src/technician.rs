//! The technician model behind the SLA figures: each township has a team of technicians (one
//! per `households_per_technician` households, at least one). A request (a rule order or a
//! complaint) is dispatched after the operator's delay to the technician free first, who
//! drives there (longer in the mountain townships) and repairs or checks.
//!
//! Requests must be handed in the order of their time; each request's random draws come from
//! its own key (time, device, source), so the visits do not depend on how many other requests
//! were drawn before: the same run gives the same visits at any speed.

use std::collections::BTreeMap;

use crate::fleet::TOWNSHIPS;
use crate::mix::{DurationRange, TechnicianMix};
use crate::rng::Rng;

/// Townships at least this much colder than the basin are mountain townships (longer drives).
const MOUNTAIN_OFFSET_C: f64 = -1.0;

/// What a request asks of a technician.
#[derive(Debug, Clone)]
pub struct Request {
    pub at_ms: i64,
    pub device_id: String,
    pub township: String,
    /// `rule` or the complaint's channel.
    pub source: String,
    /// How long the work on site takes: a repair range, or `None` for a check visit.
    pub repair: Option<DurationRange>,
}

/// When the visit happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub dispatched_ms: i64,
    pub on_site_ms: i64,
    pub done_ms: i64,
}

/// The district's technicians.
#[derive(Debug, Clone)]
pub struct Dispatcher {
    mix: TechnicianMix,
    seed: u64,
    /// Per township: when each technician is free next.
    teams: BTreeMap<String, Vec<i64>>,
}

/// FNV-1a, a stable hash for request keys.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xCBF2_9CE4_8422_2325u64;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01B3);
    }
    hash
}

impl Dispatcher {
    /// Teams sized from the households per township.
    pub fn new(
        mix: TechnicianMix,
        households_per_township: &BTreeMap<String, usize>,
        seed: u64,
    ) -> Dispatcher {
        let per = mix.households_per_technician.max(1);
        let teams = households_per_township
            .iter()
            .map(|(township, &households)| {
                let technicians = households.div_ceil(per).max(1);
                (township.clone(), vec![i64::MIN; technicians])
            })
            .collect();
        Dispatcher { mix, seed, teams }
    }

    /// Technicians per township.
    pub fn team_sizes(&self) -> BTreeMap<String, usize> {
        self.teams
            .iter()
            .map(|(township, team)| (township.clone(), team.len()))
            .collect()
    }

    /// Schedules a visit for `request`.
    pub fn assign(&mut self, request: &Request) -> Schedule {
        let key = format!("{}|{}|{}", request.at_ms, request.device_id, request.source);
        let mut rng = Rng::derive(self.seed ^ 0x7EC4_0000, fnv1a(key.as_bytes()));
        let ms = |range: DurationRange, rng: &mut Rng| (range.pick_s(rng.unit()) * 1000.0) as i64;
        let operator = ms(self.mix.operator_delay, &mut rng);
        let mountain = TOWNSHIPS
            .iter()
            .find(|t| t.id == request.township)
            .is_some_and(|t| t.climate_offset_c <= MOUNTAIN_OFFSET_C);
        let mut travel = ms(self.mix.travel, &mut rng);
        let extra = ms(self.mix.mountain_extra_travel, &mut rng);
        if mountain {
            travel += extra;
        }
        let work = match request.repair {
            Some(range) => ms(range, &mut rng),
            None => self.mix.check_visit.as_millis() as i64,
        };
        let team = self
            .teams
            .entry(request.township.clone())
            .or_insert_with(|| vec![i64::MIN]);
        let (slot, free_at) = team
            .iter()
            .copied()
            .enumerate()
            .min_by_key(|&(index, free)| (free, index))
            .unwrap_or((0, i64::MIN));
        let dispatched_ms = (request.at_ms + operator).max(free_at);
        let on_site_ms = dispatched_ms + travel;
        let done_ms = on_site_ms + work;
        if let Some(free) = team.get_mut(slot) {
            // The technician drives back to the service point before the next job.
            *free = done_ms + travel;
        }
        Schedule {
            dispatched_ms,
            on_site_ms,
            done_ms,
        }
    }

    /// The shortest time from a request to a visit's end, ms: how far ahead of simulated time
    /// the requests must be known.
    pub fn min_response_ms(&self, shortest_repair: std::time::Duration) -> i64 {
        let work = shortest_repair.min(self.mix.check_visit);
        (self.mix.operator_delay.min + self.mix.travel.min + work).as_millis() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatcher(households: usize) -> Dispatcher {
        let townships = BTreeMap::from([
            ("yanqing".to_owned(), households),
            ("sihai".to_owned(), households),
        ]);
        Dispatcher::new(TechnicianMix::default(), &townships, 3)
    }

    fn request(at_ms: i64, device: &str, township: &str) -> Request {
        Request {
            at_ms,
            device_id: device.to_owned(),
            township: township.to_owned(),
            source: "rule".to_owned(),
            repair: Some(DurationRange::new(
                std::time::Duration::from_secs(1800),
                std::time::Duration::from_secs(3600),
            )),
        }
    }

    #[test]
    fn teams_have_one_technician_per_500_households_and_at_least_one() {
        assert_eq!(dispatcher(67).team_sizes()["yanqing"], 1);
        assert_eq!(dispatcher(1001).team_sizes()["yanqing"], 3);
    }

    #[test]
    fn a_free_technician_meets_the_sla_and_a_busy_team_queues() {
        let mut d = dispatcher(100);
        let first = d.assign(&request(0, "yanqing-dongguan-0001", "yanqing"));
        assert!(first.dispatched_ms <= 8 * 60_000);
        assert!(first.on_site_ms - first.dispatched_ms >= 20 * 60_000);
        assert!(first.done_ms - first.on_site_ms >= 30 * 60_000);
        // A second order a minute later waits for the only technician.
        let second = d.assign(&request(60_000, "yanqing-dongguan-0002", "yanqing"));
        assert!(second.dispatched_ms >= first.done_ms);
        // Mountain townships are further.
        let mut d = dispatcher(100);
        let basin = d.assign(&request(0, "yanqing-a-0001", "yanqing"));
        let mut d2 = dispatcher(100);
        let mountain = d2.assign(&request(0, "yanqing-a-0001", "sihai"));
        assert!(
            mountain.on_site_ms - mountain.dispatched_ms > basin.on_site_ms - basin.dispatched_ms
        );
    }

    #[test]
    fn the_same_request_gets_the_same_visit() {
        let a = dispatcher(100).assign(&request(5, "x", "yanqing"));
        let b = dispatcher(100).assign(&request(5, "x", "yanqing"));
        assert_eq!(a, b);
    }
}
