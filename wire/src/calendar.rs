//! The district's civil calendar: China Standard Time (UTC+8, no daylight saving), proleptic
//! Gregorian dates and day numbers. One implementation for the gateway (warranty ends, report
//! periods) and the simulator (a mix's start date).

/// Milliseconds in one day.
pub const DAY_MS: i64 = 86_400_000;
/// UTC+8.
const CST_OFFSET_MS: i64 = 8 * 3_600_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// The CST date of a Unix time in milliseconds.
pub fn cst_date(ms: i64) -> (i32, u32, u32) {
    civil_from_days((ms + CST_OFFSET_MS).div_euclid(DAY_MS))
}

/// `YYYY-MM-DD` of a Unix time in milliseconds, in CST.
pub fn cst_date_string(ms: i64) -> String {
    let (y, m, d) = cst_date(ms);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Unix milliseconds of 00:00 CST on a date.
pub fn cst_midnight_ms(year: i32, month: u32, day: u32) -> i64 {
    days_from_civil(year, month, day) * DAY_MS - CST_OFFSET_MS
}

/// ISO weekday of a date: Monday = 0 ... Sunday = 6.
pub fn weekday(year: i32, month: u32, day: u32) -> i64 {
    // 1970-01-01 was a Thursday (3).
    (days_from_civil(year, month, day) + 3).rem_euclid(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dates() {
        for days in [-800_000, -1, 0, 1, 19_000, 20_454, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn cst_days_start_at_16_00_utc_the_day_before() {
        // 2026-11-29T16:00:00Z is 2026-11-30 00:00 in Beijing.
        let ms = cst_midnight_ms(2026, 11, 30);
        assert_eq!(cst_date_string(ms), "2026-11-30");
        assert_eq!(cst_date_string(ms - 1), "2026-11-29");
        assert_eq!(ms % DAY_MS, 16 * 3_600_000);
    }

    #[test]
    fn weekdays() {
        assert_eq!(weekday(2026, 11, 30), 0, "2026-11-30 is a Monday");
        assert_eq!(weekday(2026, 11, 29), 6);
    }
}
