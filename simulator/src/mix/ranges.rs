//! The value types a mix is written in: duration and number ranges drawn uniformly, a time of
//! day, the start date (its day number from `wire::calendar`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration range `["10m", "2h"]`, drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationRange {
    pub min: Duration,
    pub max: Duration,
}

impl DurationRange {
    pub const fn new(min: Duration, max: Duration) -> DurationRange {
        DurationRange { min, max }
    }

    pub(super) const fn minutes(min: u64, max: u64) -> DurationRange {
        DurationRange::new(Duration::from_secs(min * 60), Duration::from_secs(max * 60))
    }

    pub(super) const fn hours(min: u64, max: u64) -> DurationRange {
        DurationRange::minutes(min * 60, max * 60)
    }

    /// Seconds drawn uniformly in the range with `unit` (a uniform number in `[0, 1)`).
    pub fn pick_s(&self, unit: f64) -> f64 {
        let (min, max) = (self.min.as_secs_f64(), self.max.as_secs_f64());
        min + (max - min) * unit.clamp(0.0, 1.0)
    }
}

impl<'de> Deserialize<'de> for DurationRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [min, max] = <[String; 2]>::deserialize(deserializer)?;
        let parse = |text: &str| {
            humantime_serde::re::humantime::parse_duration(text)
                .map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
        };
        let (min, max) = (parse(&min)?, parse(&max)?);
        if min > max {
            return Err(serde::de::Error::custom(
                "the first duration must not be longer than the second",
            ));
        }
        Ok(DurationRange { min, max })
    }
}

impl Serialize for DurationRange {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let show = |d: Duration| humantime_serde::re::humantime::format_duration(d).to_string();
        [show(self.min), show(self.max)].serialize(serializer)
    }
}

/// A number range `[0.1, 0.3]`, drawn uniformly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ValueRange {
    pub min: f64,
    pub max: f64,
}

impl ValueRange {
    pub const fn new(min: f64, max: f64) -> ValueRange {
        ValueRange { min, max }
    }

    /// A value drawn uniformly in the range with `unit` (a uniform number in `[0, 1)`).
    pub fn pick(&self, unit: f64) -> f64 {
        self.min + (self.max - self.min) * unit.clamp(0.0, 1.0)
    }
}

impl<'de> Deserialize<'de> for ValueRange {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let [min, max] = <[f64; 2]>::deserialize(deserializer)?;
        if !(min.is_finite() && max.is_finite()) || min > max {
            return Err(serde::de::Error::custom(
                "expected [low, high] with finite numbers and low <= high",
            ));
        }
        Ok(ValueRange { min, max })
    }
}

/// A local time of day `"06:30"` (Beijing time), in hours.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(into = "String")]
pub struct TimeOfDay(pub f64);

impl From<TimeOfDay> for String {
    fn from(time: TimeOfDay) -> String {
        let minutes = (time.0 * 60.0).round() as u32;
        format!("{:02}:{:02}", minutes / 60, minutes % 60)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = text.split_once(':').and_then(|(h, m)| {
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then(|| f64::from(h) + f64::from(m) / 60.0)
        });
        parsed
            .map(TimeOfDay)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a time like 06:30")))
    }
}

/// A calendar date `"2026-01-05"`: the bench starts at 00:00 Beijing time that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct StartDate {
    pub year: i32,
    pub month: u32,
    pub day: u32,
}

impl StartDate {
    /// 00:00 Beijing time (UTC+8) of the date, in Unix seconds.
    pub fn unix_s(&self) -> i64 {
        wire::calendar::days_from_civil(self.year, self.month, self.day) * 86_400 - 8 * 3600
    }
}

impl From<StartDate> for String {
    fn from(date: StartDate) -> String {
        format!("{:04}-{:02}-{:02}", date.year, date.month, date.day)
    }
}

impl<'de> Deserialize<'de> for StartDate {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut parts = text.splitn(3, '-');
        let parsed = (|| {
            let year: i32 = parts.next()?.parse().ok()?;
            let month: u32 = parts.next()?.parse().ok()?;
            let day: u32 = parts.next()?.parse().ok()?;
            let days_in_month = match month {
                1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
                4 | 6 | 9 | 11 => 30,
                2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
                2 => 28,
                _ => return None,
            };
            ((2020..=2100).contains(&year) && (1..=days_in_month).contains(&day))
                .then_some(StartDate { year, month, day })
        })();
        parsed.ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a date like 2026-01-05 between 2020 and 2100"
            ))
        })
    }
}
