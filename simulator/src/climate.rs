//! The Yanqing winter outside every house: outdoor temperature with a daily cycle, day-to-day
//! spread and seeded cold waves to about -20 °C, the wind that comes with them, and a daily
//! relative humidity (dry most days, with humid, misty or snowy days that frost heat-pump coils
//! fast).
//!
//! Everything is a pure function of `(seed, time)`, so two runs of the same seed see the same
//! weather whatever their speed, and a house can be stepped to any moment without history.

use crate::rng::Rng;

/// Mean outdoor temperature of a Yanqing winter day outside cold waves, °C (the January mean
/// of -8.8 °C includes the cold waves).
pub const WINTER_MEAN_C: f64 = -7.0;
/// Half the day-night swing, K (Yanqing's basin has a wide winter diurnal range).
pub const WINTER_AMPLITUDE_C: f64 = 5.5;
/// Largest day-to-day deviation of the daily mean, K (mild and cold spells).
pub const WINTER_DAY_SPREAD_C: f64 = 3.0;
/// Local hour of the coldest moment of the day.
pub const COLDEST_LOCAL_HOUR: f64 = 5.0;
/// Beijing time is UTC+8.
pub const LOCAL_UTC_OFFSET_S: f64 = 8.0 * 3600.0;
/// Cold waves are drawn per window of this many days: at most one wave starts in a window.
pub const COLD_WAVE_WINDOW_DAYS: f64 = 8.0;
/// Chance that a window has a cold wave.
pub const COLD_WAVE_CHANCE: f64 = 0.6;
/// Depth of a cold wave (drop of the daily mean), K: drawn in this range.
pub const COLD_WAVE_DEPTH_C: (f64, f64) = (6.0, 11.0);
/// A cold front arrives over this many hours.
const COLD_WAVE_ONSET_H: f64 = 12.0;
/// It holds for a time drawn in this range, hours.
const COLD_WAVE_HOLD_H: (f64, f64) = (12.0, 48.0);
/// And the air warms back over this many hours.
const COLD_WAVE_RECOVERY_H: f64 = 36.0;
/// Mean wind speed outside cold waves, m/s (light north-westerly winds).
const WIND_BASE_M_S: f64 = 2.0;
/// Extra wind on a cold front at its strongest, m/s.
const COLD_WAVE_WIND_M_S: f64 = 7.0;
/// Local hour of sunrise in deep winter.
const SUNRISE_LOCAL_HOUR: f64 = 7.5;
/// Local hour of sunset in deep winter.
const SUNSET_LOCAL_HOUR: f64 = 17.0;
/// Nothing in this winter is colder than this, °C (Yanqing's record low is -27.3 °C).
const COLDEST_POSSIBLE_C: f64 = -30.0;
/// Relative humidity of an ordinary dry winter day, drawn per day in this range (Yanqing's
/// January mean is about 45 %).
const DRY_DAY_HUMIDITY: (f64, f64) = (0.30, 0.60);
/// Chance that a day is humid (mist, light snow, a thaw under cloud)...
const HUMID_DAY_CHANCE: f64 = 0.2;
/// ...with a relative humidity drawn in this range.
const HUMID_DAY_HUMIDITY: (f64, f64) = (0.70, 0.92);
/// Half the day-night swing of relative humidity (highest at the coldest hour).
const HUMIDITY_AMPLITUDE: f64 = 0.08;
/// Relative humidity of a constant climate unless told otherwise.
pub const CONSTANT_HUMIDITY: f64 = 0.55;

/// The weather at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weather {
    /// District outdoor air temperature, °C (a house adds its own site offset).
    pub outdoor_c: f64,
    /// Wind speed, m/s; it raises a house's heat loss through draughts.
    pub wind_m_s: f64,
    /// Sunshine on south windows, 0 (night, overcast) to 1 (clear winter noon).
    pub sun: f64,
    /// Relative humidity of the outdoor air, 0 to 1: with the temperature it sets how fast a
    /// heat pump's outdoor coil frosts.
    pub humidity: f64,
}

/// One cold wave of a seeded winter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ColdWave {
    /// When the front starts to arrive, Unix seconds.
    pub start_unix_s: f64,
    /// When the air is back to normal, Unix seconds.
    pub end_unix_s: f64,
    /// Drop of the daily mean at the wave's depth, K.
    pub depth_c: f64,
}

impl ColdWave {
    /// 0 outside the wave, 1 at its full depth, smooth in between.
    fn shape(&self, unix_s: f64) -> f64 {
        let onset_end = self.start_unix_s + COLD_WAVE_ONSET_H * 3600.0;
        let recovery_start = self.end_unix_s - COLD_WAVE_RECOVERY_H * 3600.0;
        let smooth = |x: f64| {
            let x = x.clamp(0.0, 1.0);
            x * x * (3.0 - 2.0 * x)
        };
        if unix_s <= self.start_unix_s || unix_s >= self.end_unix_s {
            0.0
        } else if unix_s < onset_end {
            smooth((unix_s - self.start_unix_s) / (onset_end - self.start_unix_s))
        } else if unix_s <= recovery_start {
            1.0
        } else {
            smooth((self.end_unix_s - unix_s) / (self.end_unix_s - recovery_start))
        }
    }

    /// The front brings the strongest wind while the temperature falls and at the depth.
    fn wind_shape(&self, unix_s: f64) -> f64 {
        let recovery_start = self.end_unix_s - COLD_WAVE_RECOVERY_H * 3600.0;
        if unix_s <= self.start_unix_s || unix_s >= recovery_start {
            0.0
        } else {
            self.shape(unix_s)
        }
    }
}

/// Outdoor weather over time, shared by the whole district.
#[derive(Debug, Clone, PartialEq)]
pub struct Climate {
    mode: ClimateMode,
}

#[derive(Debug, Clone, PartialEq)]
enum ClimateMode {
    Constant {
        outdoor_c: f64,
        wind_m_s: f64,
        humidity: f64,
    },
    YanqingWinter {
        seed: u64,
    },
}

impl Climate {
    /// A Yanqing winter: a daily sinusoid around [`WINTER_MEAN_C`] with amplitude
    /// [`WINTER_AMPLITUDE_C`], coldest at 05:00 Beijing time, a seeded daily-mean deviation of
    /// up to [`WINTER_DAY_SPREAD_C`] that changes smoothly from day to day, and seeded cold
    /// waves (one per [`COLD_WAVE_WINDOW_DAYS`] with chance [`COLD_WAVE_CHANCE`]) that drop
    /// the daily mean by 6-11 K for one to three days, with strong wind on the front.
    pub fn yanqing_winter(seed: u64) -> Climate {
        Climate {
            mode: ClimateMode::YanqingWinter { seed },
        }
    }

    /// The same outdoor temperature and no wind at every moment (for experiments and tests).
    pub fn constant(outdoor_c: f64) -> Climate {
        Climate::constant_with_wind(outdoor_c, 0.0)
    }

    /// The same outdoor temperature and wind at every moment (humidity
    /// [`CONSTANT_HUMIDITY`]).
    pub fn constant_with_wind(outdoor_c: f64, wind_m_s: f64) -> Climate {
        Climate::constant_with(outdoor_c, wind_m_s, CONSTANT_HUMIDITY)
    }

    /// The same outdoor temperature, wind and relative humidity (0 to 1) at every moment.
    pub fn constant_with(outdoor_c: f64, wind_m_s: f64, humidity: f64) -> Climate {
        Climate {
            mode: ClimateMode::Constant {
                outdoor_c,
                wind_m_s: wind_m_s.max(0.0),
                humidity: if humidity.is_finite() {
                    humidity.clamp(0.0, 1.0)
                } else {
                    CONSTANT_HUMIDITY
                },
            },
        }
    }

    /// The district outdoor temperature at `unix_s` (seconds since 1970, UTC).
    pub fn outdoor_temp_c(&self, unix_s: f64) -> f64 {
        self.weather(unix_s).outdoor_c
    }

    /// The weather at `unix_s`.
    pub fn weather(&self, unix_s: f64) -> Weather {
        match self.mode {
            ClimateMode::Constant {
                outdoor_c,
                wind_m_s,
                humidity,
            } => Weather {
                outdoor_c,
                wind_m_s,
                sun: 0.0,
                humidity,
            },
            ClimateMode::YanqingWinter { seed } => {
                let local_s = unix_s + LOCAL_UTC_OFFSET_S;
                let hour = (local_s / 3600.0).rem_euclid(24.0);
                let diurnal = -WINTER_AMPLITUDE_C
                    * (std::f64::consts::TAU * (hour - COLDEST_LOCAL_HOUR) / 24.0).cos();
                // Day deviations are anchored at local noon and blended smoothly in between.
                let days = local_s / 86_400.0 - 0.5;
                let day = days.floor();
                let fraction = days - day;
                let blend = fraction * fraction * (3.0 - 2.0 * fraction);
                let day_draw = |day: f64| {
                    let mut rng = Rng::derive(seed, day as i64 as u64);
                    let offset = rng.uniform(-WINTER_DAY_SPREAD_C, WINTER_DAY_SPREAD_C);
                    let wind = rng.uniform(0.0, 2.0);
                    // Beijing winters are mostly clear: overcast days are the exception.
                    let clear = rng.uniform(0.3, 1.0);
                    // Mostly dry air; now and then a humid day.
                    let humidity = if rng.chance(HUMID_DAY_CHANCE) {
                        rng.uniform(HUMID_DAY_HUMIDITY.0, HUMID_DAY_HUMIDITY.1)
                    } else {
                        rng.uniform(DRY_DAY_HUMIDITY.0, DRY_DAY_HUMIDITY.1)
                    };
                    (offset, wind, clear, humidity)
                };
                let (today, today_wind, today_clear, today_humidity) = day_draw(day);
                let (tomorrow, tomorrow_wind, _, tomorrow_humidity) = day_draw(day + 1.0);
                let offset = today * (1.0 - blend) + tomorrow * blend;
                let day_wind = today_wind * (1.0 - blend) + tomorrow_wind * blend;
                let day_humidity = today_humidity * (1.0 - blend) + tomorrow_humidity * blend;
                // Relative humidity peaks in the cold before dawn.
                let humidity = (day_humidity
                    + HUMIDITY_AMPLITUDE
                        * (std::f64::consts::TAU * (hour - COLDEST_LOCAL_HOUR) / 24.0).cos())
                .clamp(0.1, 0.98);
                // Afternoon gusts: strongest around 14:00.
                let gusts = 1.0 + 0.5 * (std::f64::consts::TAU * (hour - 14.0) / 24.0).cos();
                let (mut wave_drop, mut wave_wind) = (0.0, 0.0);
                for wave in self.waves_near(seed, unix_s) {
                    wave_drop += wave.depth_c * wave.shape(unix_s);
                    wave_wind += COLD_WAVE_WIND_M_S * wave.wind_shape(unix_s);
                }
                // The sun is up from about 07:30 to 17:00 local in January, strongest at noon.
                // The day's clearness is the one drawn for the day the noon belongs to.
                let local_hour = (local_s / 3600.0).rem_euclid(24.0);
                let clear = if fraction >= 0.5 {
                    day_draw(day + 1.0).2
                } else {
                    today_clear
                };
                let sun = if (SUNRISE_LOCAL_HOUR..SUNSET_LOCAL_HOUR).contains(&local_hour) {
                    let phase = (local_hour - SUNRISE_LOCAL_HOUR)
                        / (SUNSET_LOCAL_HOUR - SUNRISE_LOCAL_HOUR);
                    (std::f64::consts::PI * phase).sin() * clear
                } else {
                    0.0
                };
                Weather {
                    outdoor_c: (WINTER_MEAN_C + diurnal + offset - wave_drop)
                        .max(COLDEST_POSSIBLE_C),
                    wind_m_s: WIND_BASE_M_S * gusts + day_wind + wave_wind,
                    sun,
                    humidity,
                }
            }
        }
    }

    /// The cold waves that touch `[from_unix_s, to_unix_s]`, in time order (none for a
    /// constant climate).
    pub fn cold_waves(&self, from_unix_s: f64, to_unix_s: f64) -> Vec<ColdWave> {
        let ClimateMode::YanqingWinter { seed } = self.mode else {
            return Vec::new();
        };
        let window_s = COLD_WAVE_WINDOW_DAYS * 86_400.0;
        let first = (from_unix_s / window_s).floor() as i64 - 1;
        let last = (to_unix_s / window_s).floor() as i64;
        (first..=last)
            .filter_map(|window| cold_wave(seed, window))
            .filter(|w| w.end_unix_s >= from_unix_s && w.start_unix_s <= to_unix_s)
            .collect()
    }

    fn waves_near(&self, seed: u64, unix_s: f64) -> impl Iterator<Item = ColdWave> {
        let window = (unix_s / (COLD_WAVE_WINDOW_DAYS * 86_400.0)).floor() as i64;
        // A wave lasts at most 4 days, less than a window: only this window's and the
        // previous window's waves can touch `unix_s`.
        [window - 1, window]
            .into_iter()
            .filter_map(move |w| cold_wave(seed, w))
    }
}

/// The cold wave of one window, if it has one.
fn cold_wave(seed: u64, window: i64) -> Option<ColdWave> {
    let mut rng = Rng::derive(seed ^ 0xC01D_0A7E, window as u64);
    if !rng.chance(COLD_WAVE_CHANCE) {
        return None;
    }
    let window_s = COLD_WAVE_WINDOW_DAYS * 86_400.0;
    let start_unix_s = window as f64 * window_s + rng.uniform(0.0, window_s);
    let hold_h = rng.uniform(COLD_WAVE_HOLD_H.0, COLD_WAVE_HOLD_H.1);
    let depth_c = rng.uniform(COLD_WAVE_DEPTH_C.0, COLD_WAVE_DEPTH_C.1);
    Some(ColdWave {
        start_unix_s,
        end_unix_s: start_unix_s + (COLD_WAVE_ONSET_H + hold_h + COLD_WAVE_RECOVERY_H) * 3600.0,
        depth_c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-01-15 00:00 Beijing time.
    const MIDNIGHT_LOCAL: f64 = 1_768_406_400.0;

    #[test]
    fn winter_is_coldest_before_dawn_and_averages_about_minus_nine() {
        let climate = Climate::yanqing_winter(5);
        let mut total = 0.0;
        let samples = 60 * 24;
        for hour in 0..samples {
            total += climate.outdoor_temp_c(MIDNIGHT_LOCAL + f64::from(hour) * 3600.0);
        }
        let mean = total / f64::from(samples);
        assert!((-12.0..=-6.0).contains(&mean), "mean {mean:.2}");
        let at = |h: f64| Climate::yanqing_winter(0).outdoor_temp_c(MIDNIGHT_LOCAL + h * 3600.0);
        assert!(at(5.0) < at(11.0) && at(5.0) < at(17.0) && at(5.0) < at(23.0));
        assert_eq!(
            climate.weather(MIDNIGHT_LOCAL),
            climate.weather(MIDNIGHT_LOCAL)
        );
    }

    #[test]
    fn cold_waves_bring_nights_of_about_minus_twenty_and_wind() {
        let mut coldest_nights = Vec::new();
        for seed in 0..10 {
            let climate = Climate::yanqing_winter(seed);
            let waves = climate.cold_waves(MIDNIGHT_LOCAL, MIDNIGHT_LOCAL + 60.0 * 86_400.0);
            assert!(
                !waves.is_empty(),
                "seed {seed}: two months without a cold wave"
            );
            for wave in waves {
                let middle = (wave.start_unix_s + wave.end_unix_s) / 2.0;
                let inside = climate.weather(middle);
                let before = climate.weather(wave.start_unix_s - 86_400.0);
                assert!(inside.wind_m_s >= 0.0 && before.wind_m_s >= 0.0);
                let mut coldest = f64::MAX;
                let mut t = wave.start_unix_s;
                while t < wave.end_unix_s {
                    coldest = coldest.min(climate.outdoor_temp_c(t));
                    t += 600.0;
                }
                coldest_nights.push(coldest);
            }
        }
        let deepest = coldest_nights.iter().copied().fold(f64::MAX, f64::min);
        let shallowest = coldest_nights.iter().copied().fold(f64::MIN, f64::max);
        assert!(deepest <= -20.0, "deepest cold-wave night {deepest:.1} °C");
        assert!(deepest >= -30.0, "deepest cold-wave night {deepest:.1} °C");
        assert!(
            shallowest <= -12.0,
            "every cold wave has a cold night: {shallowest:.1}"
        );
    }

    #[test]
    fn the_sun_shines_by_day_only() {
        let climate = Climate::yanqing_winter(8);
        for day in 0..10 {
            let at =
                |h: f64| climate.weather(MIDNIGHT_LOCAL + f64::from(day) * 86_400.0 + h * 3600.0);
            assert_eq!(at(3.0).sun, 0.0);
            assert_eq!(at(20.0).sun, 0.0);
            let noon = at(12.25).sun;
            assert!((0.29..=1.0).contains(&noon), "day {day}: noon sun {noon}");
            assert!(at(9.0).sun < noon);
        }
    }

    #[test]
    fn cold_waves_are_windier_than_calm_days() {
        let climate = Climate::yanqing_winter(3);
        let waves = climate.cold_waves(MIDNIGHT_LOCAL, MIDNIGHT_LOCAL + 60.0 * 86_400.0);
        let wave = waves.first().copied().expect("a cold wave in two months");
        let front = wave.start_unix_s + COLD_WAVE_ONSET_H * 3600.0;
        let calm = climate.weather(front).wind_m_s - COLD_WAVE_WIND_M_S;
        assert!(climate.weather(front).wind_m_s > 6.0);
        assert!(calm < climate.weather(front).wind_m_s);
    }

    #[test]
    fn humidity_is_mostly_dry_with_some_humid_days_and_stays_a_share() {
        let climate = Climate::yanqing_winter(12);
        let mut humid_days = 0;
        let mut sum = 0.0;
        for day in 0..60 {
            let noon = climate.weather(MIDNIGHT_LOCAL + f64::from(day) * 86_400.0 + 12.5 * 3600.0);
            assert!((0.1..=0.98).contains(&noon.humidity), "{}", noon.humidity);
            sum += noon.humidity;
            if noon.humidity > 0.65 {
                humid_days += 1;
            }
        }
        let mean = sum / 60.0;
        assert!((0.35..0.65).contains(&mean), "mean humidity {mean:.2}");
        assert!((3..=25).contains(&humid_days), "{humid_days} humid days");
        let dawn = climate.weather(MIDNIGHT_LOCAL + 5.0 * 3600.0).humidity;
        let afternoon = climate.weather(MIDNIGHT_LOCAL + 17.0 * 3600.0).humidity;
        assert_ne!(dawn, afternoon);
    }

    #[test]
    fn a_constant_climate_is_constant() {
        let climate = Climate::constant_with_wind(-3.0, 4.0);
        assert_eq!(
            climate.weather(0.0),
            Weather {
                outdoor_c: -3.0,
                wind_m_s: 4.0,
                sun: 0.0,
                humidity: CONSTANT_HUMIDITY,
            }
        );
        assert!(climate.cold_waves(0.0, 1e9).is_empty());
    }
}
