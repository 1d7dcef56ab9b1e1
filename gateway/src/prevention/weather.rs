//! The weather input of the cold-wave sweep: a forecast of minimum temperatures per township or
//! village, read from a CSV file or fetched from an HTTP endpoint (bounded in size and time),
//! and the pure test of whether it forecasts a cold wave ([`cold_waves`]).
//!
//! # The forecast format
//!
//! UTF-8 CSV (a byte-order mark is skipped). Lines starting with `#` and blank lines are
//! ignored. The first other line is the header naming three columns, in any order:
//!
//! ```text
//! # Yanqing district forecast, issued 2026-12-09 06:00
//! time,township_or_village,min_temp_c
//! 2026-12-10T00:00+08:00,yongning,-12.5
//! 2026-12-10T12:00+08:00,yongning,-6
//! 2026-12-11 00:00,yanqing-dongguan,-19.0
//! ```
//!
//! - `time`: the start of the forecast period, `YYYY-MM-DDTHH:MM[:SS]` (a space may stand for
//!   the `T`) followed by `Z` or an offset `+HH:MM`; without one it is China Standard Time.
//! - `township_or_village`: a township id (`yongning`) or a village id (`yanqing-dongguan`) of
//!   the registry, 1 to 64 of `a-z 0-9 - _`. A village's own rows override its township's.
//! - `min_temp_c`: the forecast minimum air temperature of the period, °C, -60 to 50.
//!
//! A period lasts until the next row of the same area. At most [`MAX_ROWS`] rows; the same time
//! and area twice is an error. Every error names the file (or URL), the line and the field.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

/// Most rows a forecast may have (15 townships and a few hundred villages, hourly for a week
/// is about 60,000; a district feed is township-level and 3-hourly).
pub const MAX_ROWS: usize = 100_000;
/// The columns of the header.
pub const COLUMNS: [&str; 3] = ["time", "township_or_village", "min_temp_c"];
/// The range of a plausible forecast minimum, °C.
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f64> = -60.0..=50.0;
/// Longest area id.
pub const MAX_AREA_CHARS: usize = 64;

/// One row: the minimum temperature of an area from `time_ms` on.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ForecastPoint {
    /// Start of the period, Unix ms.
    pub time_ms: i64,
    /// A township or village id.
    pub area: String,
    pub min_temp_c: f64,
}

/// Why a forecast could not be read. `outcome` is its metric label.
#[derive(Debug, thiserror::Error)]
pub enum ForecastError {
    /// A bad value, with its place.
    #[error("{origin}:{line}: field `{field}`: {message}")]
    Field {
        origin: String,
        line: u64,
        field: String,
        message: String,
    },
    /// The file as a whole (header, size, rows).
    #[error("{origin}: {message}")]
    Format { origin: String, message: String },
    #[error("{origin}: cannot be read: {message}")]
    Read { origin: String, message: String },
    #[error("{origin}: larger than the limit of {limit} bytes (prevention.max_forecast_bytes)")]
    TooLarge { origin: String, limit: usize },
    #[error("{origin}: {message}")]
    Http {
        origin: String,
        message: String,
        timeout: bool,
    },
}

impl ForecastError {
    /// The label of `gateway_prevention_forecast_loads_total{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ForecastError::Field { .. } | ForecastError::Format { .. } => "invalid",
            ForecastError::Read { .. } => "unreadable",
            ForecastError::TooLarge { .. } => "too_large",
            ForecastError::Http { timeout: true, .. } => "timeout",
            ForecastError::Http { .. } => "http_error",
        }
    }
}

/// Parses a forecast (see the module's documentation for the format). `origin` names the file
/// or URL in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<ForecastPoint>, ForecastError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .has_headers(true)
        .flexible(false)
        .from_reader(text.as_bytes());
    let format = |message: String| ForecastError::Format {
        origin: origin.to_owned(),
        message,
    };
    let headers = reader.headers().map_err(|e| csv_error(origin, &e))?.clone();
    let index = header_columns(&headers, origin)?;
    let mut points = Vec::new();
    let mut seen: HashMap<(i64, String), u64> = HashMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(origin, &e))?;
        let line = record.position().map_or(0, |p| p.line());
        if points.len() >= MAX_ROWS {
            return Err(format(format!(
                "more than {MAX_ROWS} rows (line {line}); send a shorter horizon or fewer areas"
            )));
        }
        let row = Row {
            record: &record,
            index: &index,
            origin,
            line,
        };
        let point = row.point()?;
        if let Some(first) = seen.insert((point.time_ms, point.area.clone()), line) {
            return Err(row.error(
                0,
                format!(
                    "{} at {} is forecast twice (first on line {first})",
                    point.area,
                    row.value(0)
                ),
            ));
        }
        points.push(point);
    }
    points.sort_by(|a, b| a.area.cmp(&b.area).then(a.time_ms.cmp(&b.time_ms)));
    Ok(points)
}

/// Where each of [`COLUMNS`] is in the header: every column named once, no other.
fn header_columns(headers: &csv::StringRecord, origin: &str) -> Result<[usize; 3], ForecastError> {
    let format = |message: String| ForecastError::Format {
        origin: origin.to_owned(),
        message,
    };
    if headers.iter().all(str::is_empty) {
        return Err(format(format!(
            "no header line; the first line that is not a comment must be `{}`",
            COLUMNS.join(",")
        )));
    }
    let header_line = headers.position().map_or(1, |p| p.line());
    let mut index = [usize::MAX; 3];
    for (position, name) in headers.iter().enumerate() {
        let message = match COLUMNS.iter().position(|c| *c == name) {
            Some(column) if index[column] == usize::MAX => {
                index[column] = position;
                continue;
            }
            Some(_) => "column named twice".into(),
            None => format!("unknown column; the columns are {}", COLUMNS.join(",")),
        };
        return Err(ForecastError::Field {
            origin: origin.to_owned(),
            line: header_line,
            field: name.to_owned(),
            message,
        });
    }
    if let Some(missing) = COLUMNS
        .iter()
        .zip(index)
        .find(|(_, i)| *i == usize::MAX)
        .map(|(c, _)| c)
    {
        return Err(format(format!(
            "line {header_line}: the header has no column `{missing}` (columns: {})",
            COLUMNS.join(",")
        )));
    }
    Ok(index)
}

/// One row of a forecast, with where it is.
struct Row<'a> {
    record: &'a csv::StringRecord,
    /// Where each of [`COLUMNS`] is in the row.
    index: &'a [usize; 3],
    origin: &'a str,
    line: u64,
}

impl Row<'_> {
    /// The value of [`COLUMNS`]`[column]`.
    fn value(&self, column: usize) -> &str {
        self.record.get(self.index[column]).unwrap_or_default()
    }

    /// An error in [`COLUMNS`]`[column]` of this row.
    fn error(&self, column: usize, message: String) -> ForecastError {
        ForecastError::Field {
            origin: self.origin.to_owned(),
            line: self.line,
            field: COLUMNS[column].to_owned(),
            message,
        }
    }

    /// The row's forecast point: its time, its area id and its temperature, each checked.
    fn point(&self) -> Result<ForecastPoint, ForecastError> {
        let time_ms = parse_time(self.value(0)).map_err(|m| self.error(0, m))?;
        let area = self.value(1);
        if area.is_empty() || area.chars().count() > MAX_AREA_CHARS {
            return Err(self.error(
                1,
                format!("must be a township or village id of 1 to {MAX_AREA_CHARS} characters"),
            ));
        }
        if let Some(bad) = area
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
        {
            return Err(self.error(1, format!("{area:?}: {bad:?} is not allowed (a-z 0-9 - _)")));
        }
        let raw = self.value(2);
        let min_temp_c: f64 = raw
            .parse()
            .map_err(|_| self.error(2, format!("{raw:?} is not a number")))?;
        if !min_temp_c.is_finite() || !TEMPERATURE_RANGE.contains(&min_temp_c) {
            return Err(self.error(
                2,
                format!(
                    "{raw} is outside {} to {} °C",
                    TEMPERATURE_RANGE.start(),
                    TEMPERATURE_RANGE.end()
                ),
            ));
        }
        Ok(ForecastPoint {
            time_ms,
            area: area.to_owned(),
            min_temp_c,
        })
    }
}

fn csv_error(origin: &str, error: &csv::Error) -> ForecastError {
    let line = error.position().map_or(0, |p| p.line());
    let message = match error.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".to_owned(),
        _ => error.to_string(),
    };
    ForecastError::Format {
        origin: origin.to_owned(),
        message: format!("line {line}: {message}"),
    }
}

/// A time of the format: `YYYY-MM-DDTHH:MM[:SS]` then `Z`, `+HH:MM`, `-HH:MM` or nothing
/// (China Standard Time); a space may stand for the `T`.
pub fn parse_time(text: &str) -> Result<i64, String> {
    let bad =
        || format!("{text:?} is not a time YYYY-MM-DDTHH:MM[:SS] with Z, +HH:MM or nothing (CST)");
    if !text.is_ascii() || text.len() < 16 {
        return Err(bad());
    }
    let (date, rest) = text.split_at(10);
    let Some(rest) = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' ')) else {
        return Err(bad());
    };
    let (year, month, day) = crate::registry::parse_date(date).ok_or_else(bad)?;
    let number = |s: &str, max: u32| -> Result<u32, String> {
        if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(bad)
    };
    let hour = number(rest.get(0..2).ok_or_else(bad)?, 23)?;
    if rest.get(2..3) != Some(":") {
        return Err(bad());
    }
    let minute = number(rest.get(3..5).ok_or_else(bad)?, 59)?;
    let mut rest = &rest[5..];
    let mut second = 0;
    if let Some(after) = rest.strip_prefix(':') {
        second = number(after.get(0..2).ok_or_else(bad)?, 59)?;
        rest = &after[2..];
    }
    let offset_minutes: i64 = match rest {
        "" => 8 * 60,
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad()),
            };
            if rest.len() != 6 || rest.get(3..4) != Some(":") {
                return Err(bad());
            }
            let hours = number(&rest[1..3], 14)?;
            let minutes = number(&rest[4..6], 59)?;
            sign * i64::from(hours * 60 + minutes)
        }
    };
    let days = wire::calendar::days_from_civil(year, month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    Ok((seconds - offset_minutes * 60) * 1000)
}

/// When a forecast is a cold wave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaveRule {
    /// A forecast minimum at or below this is a cold wave.
    pub threshold_c: f64,
    /// A fall of at least this many kelvin ...
    pub drop_k: f64,
    /// ... within this long is a cold wave too, whatever the level.
    pub drop_within_ms: i64,
    /// How far ahead to look.
    pub horizon_ms: i64,
}

/// A cold wave forecast for one area.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ColdWave {
    /// The area's id and the CST date of its coldest period, e.g. `yongning@2026-12-11`.
    pub id: String,
    /// A township or village id.
    pub area: String,
    /// The first period that meets the rule, Unix ms.
    pub starts_at_ms: i64,
    /// The coldest period within the horizon, Unix ms.
    pub coldest_at_ms: i64,
    /// Its forecast minimum, °C.
    pub min_temp_c: f64,
    /// Why it is a cold wave, for people.
    pub why: String,
}

/// The cold waves `points` forecast from `now_ms` on: per area, the first period within the
/// horizon whose minimum is at or below the threshold, or which is `drop_k` colder than a
/// period at most `drop_within` before it (the earlier one may lie in the past). Pure.
pub fn cold_waves(points: &[ForecastPoint], now_ms: i64, rule: &WaveRule) -> Vec<ColdWave> {
    let mut by_area: BTreeMap<&str, Vec<&ForecastPoint>> = BTreeMap::new();
    for point in points {
        by_area.entry(point.area.as_str()).or_default().push(point);
    }
    let end_ms = now_ms.saturating_add(rule.horizon_ms);
    let mut waves = Vec::new();
    for (area, mut series) in by_area {
        series.sort_by_key(|p| p.time_ms);
        let ahead: Vec<&&ForecastPoint> = series
            .iter()
            .filter(|p| p.time_ms >= now_ms && p.time_ms <= end_ms)
            .collect();
        let mut start: Option<(i64, String)> = None;
        for point in &ahead {
            if point.min_temp_c <= rule.threshold_c {
                start = Some((
                    point.time_ms,
                    format!(
                        "minimum {:.1} °C at or below {:.1} °C",
                        point.min_temp_c, rule.threshold_c
                    ),
                ));
                break;
            }
            let earlier = series.iter().filter(|q| {
                q.time_ms < point.time_ms && point.time_ms - q.time_ms <= rule.drop_within_ms
            });
            if let Some(warmest) = earlier.max_by(|a, b| a.min_temp_c.total_cmp(&b.min_temp_c)) {
                let drop = warmest.min_temp_c - point.min_temp_c;
                if drop >= rule.drop_k {
                    start = Some((
                        point.time_ms,
                        format!(
                            "a drop of {drop:.1} K (from {:.1} to {:.1} °C) within {} h",
                            warmest.min_temp_c,
                            point.min_temp_c,
                            (point.time_ms - warmest.time_ms) / 3_600_000
                        ),
                    ));
                    break;
                }
            }
        }
        let Some((starts_at_ms, why)) = start else {
            continue;
        };
        let Some(coldest) = ahead.iter().min_by(|a, b| {
            a.min_temp_c
                .total_cmp(&b.min_temp_c)
                .then(a.time_ms.cmp(&b.time_ms))
        }) else {
            continue;
        };
        waves.push(ColdWave {
            id: format!(
                "{area}@{}",
                wire::calendar::cst_date_string(coldest.time_ms)
            ),
            area: area.to_owned(),
            starts_at_ms,
            coldest_at_ms: coldest.time_ms,
            min_temp_c: coldest.min_temp_c,
            why,
        });
    }
    waves
}

/// Reads and parses a forecast file of at most `max_bytes`.
pub fn load_file(
    path: &std::path::Path,
    max_bytes: usize,
) -> Result<Vec<ForecastPoint>, ForecastError> {
    use std::io::Read;
    let origin = path.display().to_string();
    let read = |e: std::io::Error| ForecastError::Read {
        origin: origin.clone(),
        message: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut bytes = Vec::new();
    file.take(max_bytes as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(read)?;
    if bytes.len() > max_bytes {
        return Err(ForecastError::TooLarge {
            origin,
            limit: max_bytes,
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| ForecastError::Format {
        origin: origin.clone(),
        message: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
    })?;
    parse(&text, &origin)
}

/// Fetches and parses a forecast from `url`: a GET within `timeout` (connection, headers and
/// body together), a 2xx answer of at most `max_bytes`, read in chunks so a larger one is cut
/// off at the limit. Redirects are not followed.
pub async fn fetch_url(
    client: &reqwest::Client,
    url: &reqwest::Url,
    timeout: Duration,
    max_bytes: usize,
) -> Result<Vec<ForecastPoint>, ForecastError> {
    let origin = url.to_string();
    let http = |message: String, timeout: bool| ForecastError::Http {
        origin: origin.clone(),
        message,
        timeout,
    };
    let fetch = async {
        let mut response = client
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "text/csv, text/plain")
            .send()
            .await
            .map_err(|e| http(format!("request failed: {e}"), e.is_timeout()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(http(format!("answered {status}"), false));
        }
        if response
            .content_length()
            .is_some_and(|length| length > max_bytes as u64)
        {
            return Err(ForecastError::TooLarge {
                origin: origin.clone(),
                limit: max_bytes,
            });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| http(format!("body could not be read: {e}"), e.is_timeout()))?
        {
            if bytes.len() + chunk.len() > max_bytes {
                return Err(ForecastError::TooLarge {
                    origin: origin.clone(),
                    limit: max_bytes,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
    };
    let bytes = tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| http(format!("no complete answer within {timeout:?}"), true))??;
    let text = String::from_utf8(bytes).map_err(|e| ForecastError::Format {
        origin: origin.clone(),
        message: format!("not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
    })?;
    parse(&text, &origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    /// 2026-12-10T00:00+08:00.
    const DEC_10: i64 = 1_796_832_000_000;

    #[test]
    fn times_take_an_offset_or_are_china_standard_time() {
        assert_eq!(parse_time("2026-12-10T00:00+08:00"), Ok(DEC_10));
        assert_eq!(parse_time("2026-12-10 00:00"), Ok(DEC_10));
        assert_eq!(parse_time("2026-12-09T16:00Z"), Ok(DEC_10));
        assert_eq!(parse_time("2026-12-09T16:00:30Z"), Ok(DEC_10 + 30_000));
        assert_eq!(parse_time("2026-12-09T11:00-05:00"), Ok(DEC_10));
        for bad in [
            "2026-12-10",
            "2026-13-10T00:00",
            "2026-12-10T24:00",
            "2026-12-10T00:60",
            "2026-12-10T00:00+8",
            "2026-12-10T00:00 CST",
            "2026-12-10X00:00",
            "十二月十日 00:00:00",
            "",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_forecast_parses_with_comments_a_bom_and_columns_in_any_order() {
        let text = "\u{feff}# issued 2026-12-09\n\nmin_temp_c,time,township_or_village\n-12.5,2026-12-10T00:00+08:00,yongning\n# a comment between rows\n-19,2026-12-10 12:00,yanqing-dongguan\n";
        let points = parse(text, "f.csv").expect("valid");
        assert_eq!(points.len(), 2);
        assert_eq!(points[0].area, "yanqing-dongguan");
        assert_eq!(points[0].time_ms, DEC_10 + 12 * H);
        assert_eq!(points[1].min_temp_c, -12.5);
    }

    #[test]
    fn the_shipped_example_forecast_is_valid() {
        let points = parse(
            include_str!("../../forecast.example.csv"),
            "forecast.example.csv",
        )
        .expect("the example parses");
        assert!(points.len() >= 10);
    }

    fn error(text: &str) -> String {
        parse(text, "f.csv").expect_err("invalid").to_string()
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_field() {
        let header = "# comment\ntime,township_or_village,min_temp_c\n";
        assert_eq!(
            error(&format!(
                "{header}2026-12-10T00:00,yongning,-3\n2026-12-10T03:00,yongning,cold\n"
            )),
            "f.csv:4: field `min_temp_c`: \"cold\" is not a number"
        );
        assert_eq!(
            error(&format!("{header}2026-12-10T00:00,yongning,-70\n")),
            "f.csv:3: field `min_temp_c`: -70 is outside -60 to 50 °C"
        );
        assert!(error(&format!("{header}2026-12-10,yongning,-3\n"))
            .starts_with("f.csv:3: field `time`: "));
        assert!(error(&format!("{header}2026-12-10T00:00,Yongning,-3\n"))
            .starts_with("f.csv:3: field `township_or_village`: "));
        assert!(error(&format!("{header}2026-12-10T00:00,,-3\n"))
            .starts_with("f.csv:3: field `township_or_village`: "));
        assert_eq!(
            error(&format!("{header}2026-12-10T00:00,yongning,-3\n2026-12-10 00:00,yongning,-4\n")),
            "f.csv:4: field `time`: yongning at 2026-12-10 00:00 is forecast twice (first on line 3)"
        );
        assert_eq!(
            error(&format!("{header}2026-12-10T00:00,yongning\n")),
            "f.csv: line 3: 2 fields where the header has 3"
        );
        assert_eq!(
            error("time,area,min_temp_c\n"),
            "f.csv:1: field `area`: unknown column; the columns are time,township_or_village,min_temp_c"
        );
        assert!(error("time,min_temp_c\n").contains("no column `township_or_village`"));
        assert!(error("# only a comment\n").contains("no header line"));
        assert_eq!(
            parse(&format!("{header}2026-12-10T00:00,yongning,NaN\n"), "f.csv")
                .expect_err("NaN")
                .outcome(),
            "invalid"
        );
    }

    #[test]
    fn too_many_rows_and_too_large_files_are_refused() {
        let mut text = String::from("time,township_or_village,min_temp_c\n");
        for n in 0..=MAX_ROWS {
            text.push_str(&format!("2026-12-10T00:00,a{n},-3\n"));
        }
        assert!(error(&text).contains("more than"));
        let dir = std::env::temp_dir().join(format!("gateway-forecast-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("big.csv");
        std::fs::write(&path, &text).expect("write");
        let refused = load_file(&path, 1024).expect_err("too large");
        assert_eq!(refused.outcome(), "too_large");
        let missing = load_file(&dir.join("missing.csv"), 1024).expect_err("missing");
        assert_eq!(missing.outcome(), "unreadable");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn point(hours: i64, area: &str, min: f64) -> ForecastPoint {
        ForecastPoint {
            time_ms: DEC_10 + hours * H,
            area: area.into(),
            min_temp_c: min,
        }
    }

    const RULE: WaveRule = WaveRule {
        threshold_c: -15.0,
        drop_k: 8.0,
        drop_within_ms: 48 * H,
        horizon_ms: 72 * H,
    };

    #[test]
    fn a_cold_wave_is_a_minimum_below_the_threshold_or_a_steep_drop() {
        let points = vec![
            // Below the threshold on day 2.
            point(0, "yongning", -8.0),
            point(24, "yongning", -12.0),
            point(36, "yongning", -17.0),
            point(48, "yongning", -19.5),
            // A drop of 9 K within 24 h, never below -15.
            point(0, "sihai", 2.0),
            point(24, "sihai", -7.0),
            // Cold but steady and above the threshold: no wave.
            point(0, "kangzhuang", -10.0),
            point(12, "kangzhuang", -12.0),
            point(24, "kangzhuang", -14.0),
            // Below the threshold only beyond the horizon.
            point(0, "dayushu", -5.0),
            point(96, "dayushu", -22.0),
        ];
        let waves = cold_waves(&points, DEC_10, &RULE);
        let areas: Vec<&str> = waves.iter().map(|w| w.area.as_str()).collect();
        assert_eq!(areas, vec!["sihai", "yongning"]);
        let yongning = &waves[1];
        assert_eq!(yongning.starts_at_ms, DEC_10 + 36 * H);
        assert_eq!(yongning.coldest_at_ms, DEC_10 + 48 * H);
        assert_eq!(yongning.min_temp_c, -19.5);
        assert_eq!(yongning.id, "yongning@2026-12-12");
        assert!(yongning.why.contains("-17.0"), "{}", yongning.why);
        assert!(waves[0].why.contains("drop of 9.0 K"), "{}", waves[0].why);
    }

    #[test]
    fn past_periods_count_only_as_the_warm_side_of_a_drop() {
        let points = vec![
            point(-12, "sihai", 1.0),
            point(-6, "sihai", -25.0),
            point(6, "sihai", -7.5),
        ];
        let waves = cold_waves(&points, DEC_10, &RULE);
        assert_eq!(waves.len(), 1);
        assert_eq!(waves[0].starts_at_ms, DEC_10 + 6 * H);
        assert_eq!(waves[0].min_temp_c, -7.5);
        // The same forecast a day later: its periods are past.
        assert!(cold_waves(&points, DEC_10 + 24 * H, &RULE).is_empty());
    }
}
