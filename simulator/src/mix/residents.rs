//! The `[residents]` table: how residents feel the cold, when they call and through which
//! intake channel.

use serde::{Deserialize, Serialize};

use super::ranges::{DurationRange, TimeOfDay, ValueRange};

/// Weights of the intake channels a resident calls through.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelWeights {
    #[serde(default)]
    pub hotline_12345: f64,
    #[serde(default)]
    pub centre_hotline: f64,
    #[serde(default)]
    pub app: f64,
    #[serde(default)]
    pub sms_wechat: f64,
    #[serde(default)]
    pub walk_in: f64,
}

impl ChannelWeights {
    /// `(channel name, weight)` in a fixed order.
    pub fn entries(&self) -> [(&'static str, f64); 5] {
        [
            ("hotline_12345", self.hotline_12345),
            ("centre_hotline", self.centre_hotline),
            ("app", self.app),
            ("sms_wechat", self.sms_wechat),
            ("walk_in", self.walk_in),
        ]
    }
}

impl Default for ChannelWeights {
    fn default() -> ChannelWeights {
        ChannelWeights {
            hotline_12345: 0.45,
            centre_hotline: 0.25,
            app: 0.15,
            sms_wechat: 0.10,
            walk_in: 0.05,
        }
    }
}

/// How residents feel the cold and complain.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResidentMix {
    /// A resident notices discomfort when the room falls below this, °C.
    #[serde(default = "ResidentMix::comfort_c")]
    pub comfort_c: f64,
    /// The same for an elderly person living alone, °C.
    #[serde(default = "ResidentMix::vulnerable_comfort_c")]
    pub vulnerable_comfort_c: f64,
    /// How long discomfort lasts before the resident calls.
    #[serde(default = "ResidentMix::patience")]
    pub patience: DurationRange,
    /// The same for a vulnerable household (family and caretakers call sooner).
    #[serde(default = "ResidentMix::vulnerable_patience")]
    pub vulnerable_patience: DurationRange,
    /// Chance that a resident never calls about a fault.
    #[serde(default = "ResidentMix::never_calls")]
    pub never_calls: f64,
    /// The same for a vulnerable household.
    #[serde(default = "ResidentMix::vulnerable_never_calls")]
    pub vulnerable_never_calls: f64,
    /// Residents sleep from this local time...
    #[serde(default = "ResidentMix::sleep_from")]
    pub sleep_from: TimeOfDay,
    /// ...to this one, and call after waking if the cold persists.
    #[serde(default = "ResidentMix::sleep_to")]
    pub sleep_to: TimeOfDay,
    /// Delay after waking before the call.
    #[serde(default = "ResidentMix::wake_up_delay")]
    pub wake_up_delay: DurationRange,
    /// Share of homes that call fast (an elderly person at home all day, family present),
    /// whatever their other patience.
    #[serde(default = "ResidentMix::fast_caller_share")]
    pub fast_caller_share: f64,
    /// How long a fast caller waits before calling.
    #[serde(default = "ResidentMix::fast_patience")]
    pub fast_patience: DurationRange,
    /// Share of homes that call in the night once the room is really cold rather than wait for
    /// the morning.
    #[serde(default = "ResidentMix::night_call_share")]
    pub night_call_share: f64,
    /// The room temperature below which those homes call at night, °C (drawn per home).
    #[serde(default = "ResidentMix::night_call_below_c")]
    pub night_call_below_c: ValueRange,
    /// Family or caretakers of vulnerable households call at night too, once the room is below
    /// the resident's comfort and their patience is over.
    #[serde(default = "ResidentMix::vulnerable_night_calls")]
    pub vulnerable_night_calls: bool,
    #[serde(default)]
    pub channels: ChannelWeights,
}

impl ResidentMix {
    fn comfort_c() -> f64 {
        16.0
    }
    fn vulnerable_comfort_c() -> f64 {
        17.0
    }
    fn patience() -> DurationRange {
        DurationRange::minutes(60, 180)
    }
    fn vulnerable_patience() -> DurationRange {
        DurationRange::minutes(20, 60)
    }
    fn never_calls() -> f64 {
        0.10
    }
    fn vulnerable_never_calls() -> f64 {
        0.05
    }
    fn sleep_from() -> TimeOfDay {
        TimeOfDay(23.0)
    }
    fn sleep_to() -> TimeOfDay {
        TimeOfDay(6.5)
    }
    fn wake_up_delay() -> DurationRange {
        DurationRange::minutes(0, 60)
    }
    fn fast_caller_share() -> f64 {
        0.33
    }
    fn fast_patience() -> DurationRange {
        DurationRange::minutes(10, 40)
    }
    fn night_call_share() -> f64 {
        0.3
    }
    fn night_call_below_c() -> ValueRange {
        ValueRange::new(12.0, 13.0)
    }
    fn vulnerable_night_calls() -> bool {
        true
    }
}

impl Default for ResidentMix {
    fn default() -> ResidentMix {
        ResidentMix {
            comfort_c: ResidentMix::comfort_c(),
            vulnerable_comfort_c: ResidentMix::vulnerable_comfort_c(),
            patience: ResidentMix::patience(),
            vulnerable_patience: ResidentMix::vulnerable_patience(),
            never_calls: ResidentMix::never_calls(),
            vulnerable_never_calls: ResidentMix::vulnerable_never_calls(),
            sleep_from: ResidentMix::sleep_from(),
            sleep_to: ResidentMix::sleep_to(),
            wake_up_delay: ResidentMix::wake_up_delay(),
            fast_caller_share: ResidentMix::fast_caller_share(),
            fast_patience: ResidentMix::fast_patience(),
            night_call_share: ResidentMix::night_call_share(),
            night_call_below_c: ResidentMix::night_call_below_c(),
            vulnerable_night_calls: ResidentMix::vulnerable_night_calls(),
            channels: ChannelWeights::default(),
        }
    }
}
