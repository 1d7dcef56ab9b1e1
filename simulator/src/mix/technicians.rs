//! The `[technicians]` table: teams per township, dispatch, travel and visit times.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ranges::DurationRange;

/// The technician model: teams per township, dispatch, travel and visit times.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TechnicianMix {
    /// One technician per this many households of a township, at least one per township
    /// (the scheme asks for at least 1 per 500).
    #[serde(default = "TechnicianMix::households_per_technician")]
    pub households_per_technician: usize,
    /// From order to dispatch when a technician is free.
    #[serde(default = "TechnicianMix::operator_delay")]
    pub operator_delay: DurationRange,
    /// Drive to the house.
    #[serde(default = "TechnicianMix::travel")]
    pub travel: DurationRange,
    /// Extra drive in the mountain townships (colder ones, far from the service points).
    #[serde(default = "TechnicianMix::mountain_extra_travel")]
    pub mountain_extra_travel: DurationRange,
    /// A visit that finds nothing to repair (false order, supply fault) takes this long.
    #[serde(default = "TechnicianMix::check_visit", with = "humantime_serde")]
    pub check_visit: Duration,
}

impl TechnicianMix {
    fn households_per_technician() -> usize {
        500
    }
    fn operator_delay() -> DurationRange {
        DurationRange::minutes(2, 8)
    }
    fn travel() -> DurationRange {
        DurationRange::minutes(20, 70)
    }
    fn mountain_extra_travel() -> DurationRange {
        DurationRange::minutes(10, 50)
    }
    fn check_visit() -> Duration {
        Duration::from_secs(20 * 60)
    }
}

impl Default for TechnicianMix {
    fn default() -> TechnicianMix {
        TechnicianMix {
            households_per_technician: TechnicianMix::households_per_technician(),
            operator_delay: TechnicianMix::operator_delay(),
            travel: TechnicianMix::travel(),
            mountain_extra_travel: TechnicianMix::mountain_extra_travel(),
            check_visit: TechnicianMix::check_visit(),
        }
    }
}
