//! InfluxDB line protocol, encoded straight into one `String` per point.
//!
//! The sink used to build an `influxdb2::models::DataPoint` per reading (a `BTreeMap` of owned
//! tag and field names, about 25 allocations for a heat-pump reading), clone the batch for the
//! request and stream it point by point; that was about an eighth of the gateway's CPU under the
//! ingest benchmark, and the buffer that rides out an InfluxDB outage held those maps. Here a
//! point is one line, written once, and a batch is the lines joined into one request body,
//! still sent with the influxdb2 client (`write_line_protocol_with_precision`).
//!
//! Escaping follows the line-protocol reference: measurement `,` and space; tag keys, tag
//! values and field keys `,` `=` and space; string field values `"` and `\`. Line breaks, which
//! no escape can carry, become spaces. Tags must be added in key order (InfluxDB's preferred
//! order; callers add them sorted), empty tag values are left out (the protocol has none), and
//! non-finite floats are left out (the protocol cannot carry them; ingest refuses them anyway).
//! A tag or field with an empty key is left out too, and a timestamp the protocol cannot carry
//! (in nanoseconds it must fit in an `i64`: years 1677 to 2262) makes the point an error, so a
//! line that InfluxDB would refuse is not built in the first place.

use std::fmt::Write as _;

/// Characters escaped with a backslash in a measurement name.
const MEASUREMENT: Special = Special::of(b", ");
/// ... in tag keys, tag values and field keys.
const KEY: Special = Special::of(b",= ");
/// ... inside a string field value (between its double quotes).
const STRING_VALUE: Special = Special::of(b"\"\\");

/// The bytes that need attention in one position: the escaped characters (all ASCII) and the
/// line breaks, as a table indexed by byte (one load per byte of every name and id written).
struct Special([bool; 256]);

impl Special {
    const fn of(escaped: &[u8]) -> Special {
        let mut table = [false; 256];
        table[b'\n' as usize] = true;
        table[b'\r' as usize] = true;
        let mut i = 0;
        while i < escaped.len() {
            table[escaped[i] as usize] = true;
            i += 1;
        }
        Special(table)
    }
}

/// A point being written: measurement, then tags, then fields, then [`Line::finish`].
#[derive(Debug)]
pub struct Line {
    text: String,
    fields: usize,
}

/// A point the protocol cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    /// No field (of this measurement).
    #[error("point of measurement {0:?} has no field")]
    NoField(String),
    /// The timestamp (ms) is outside what InfluxDB stores.
    #[error("timestamp {0} ms is outside the line protocol's range (years 1677 to 2262)")]
    TimeOutOfRange(i64),
}

/// InfluxDB's earliest and latest timestamps, in nanoseconds (`i64::MIN` and `i64::MAX` are
/// reserved).
const MIN_NANOS: i64 = i64::MIN + 2;
const MAX_NANOS: i64 = i64::MAX - 1;

/// True when a millisecond timestamp, in nanoseconds, is one InfluxDB stores.
fn time_in_range(ts_ms: i64) -> bool {
    ts_ms
        .checked_mul(1_000_000)
        .is_some_and(|nanos| (MIN_NANOS..=MAX_NANOS).contains(&nanos))
}

/// Appends `value` with the `special` characters escaped and line breaks as spaces. Names and
/// ids rarely need either, so the text goes over in runs between the characters that do.
fn escaped(out: &mut String, value: &str, special: &Special) {
    let mut rest = value;
    // Only ASCII bytes are marked, and an ASCII byte in UTF-8 is always a whole character, so
    // `at` and `at + 1` are char boundaries.
    while let Some(at) = rest.bytes().position(|b| special.0[usize::from(b)]) {
        let (run, tail) = rest.split_at(at);
        let (c, after) = tail.split_at(1);
        out.push_str(run);
        if c == "\n" || c == "\r" {
            out.push(' ');
        } else {
            out.push('\\');
            out.push_str(c);
        }
        rest = after;
    }
    out.push_str(rest);
}

impl Line {
    /// Starts a point; `capacity` is a hint for the line's length.
    pub fn new(measurement: &str, capacity: usize) -> Line {
        let mut text = String::with_capacity(capacity);
        escaped(&mut text, measurement, &MEASUREMENT);
        Line { text, fields: 0 }
    }

    /// Adds a tag (before any field). An empty key or value is left out.
    pub fn tag(mut self, key: &str, value: &str) -> Line {
        debug_assert_eq!(self.fields, 0, "tags come before fields");
        if !key.is_empty() && !value.is_empty() {
            self.text.push(',');
            escaped(&mut self.text, key, &KEY);
            self.text.push('=');
            escaped(&mut self.text, value, &KEY);
        }
        self
    }

    fn field_key(&mut self, key: &str) {
        self.text.push(if self.fields == 0 { ' ' } else { ',' });
        escaped(&mut self.text, key, &KEY);
        self.text.push('=');
        self.fields += 1;
    }

    /// A float field; NaN and infinities (and an empty key) are left out.
    pub fn float(mut self, key: &str, value: f64) -> Line {
        if value.is_finite() && !key.is_empty() {
            self.field_key(key);
            // Both write the shortest text that reads back as the same number. Ryu is the
            // faster (formatting floats was 3-4 % of the gateway's CPU under the ingest bench)
            // and writes plain decimals between 1e-5 and 1e16; outside that range it would use
            // an exponent, so those (no heating value) go through `Display`, which never does.
            let magnitude = value.abs();
            if magnitude == 0.0 || (1e-5..1e15).contains(&magnitude) {
                self.text.push_str(ryu::Buffer::new().format_finite(value));
            } else {
                let _ = write!(self.text, "{value}");
            }
        }
        self
    }

    /// An integer field (`…i`); an empty key is left out.
    pub fn int(mut self, key: &str, value: i64) -> Line {
        if key.is_empty() {
            return self;
        }
        self.field_key(key);
        let _ = write!(self.text, "{value}i");
        self
    }

    /// A string field; an empty key is left out.
    pub fn string(mut self, key: &str, value: &str) -> Line {
        if key.is_empty() {
            return self;
        }
        self.field_key(key);
        self.text.push('"');
        escaped(&mut self.text, value, &STRING_VALUE);
        self.text.push('"');
        self
    }

    /// The finished line (with its `\n`), timestamped in milliseconds.
    pub fn finish(mut self, ts_ms: i64) -> Result<String, PointError> {
        if self.fields == 0 {
            let measurement = self.text.split([',', ' ']).next().unwrap_or("").to_owned();
            return Err(PointError::NoField(measurement));
        }
        if !time_in_range(ts_ms) {
            return Err(PointError::TimeOutOfRange(ts_ms));
        }
        let _ = writeln!(self.text, " {ts_ms}");
        Ok(self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_is_measurement_tags_fields_and_time() {
        let line = Line::new("telemetry", 64)
            .tag("device_id", "d-1")
            .tag("township", "yanqing")
            .int("seq", 7)
            .float("indoor_temp_c", 19.5)
            .float("fault_code", 0.0)
            .string("fault_category", "sensor_fault")
            .finish(1_700_000_000_123)
            .expect("has fields");
        assert_eq!(
            line,
            "telemetry,device_id=d-1,township=yanqing seq=7i,indoor_temp_c=19.5,fault_code=0.0,fault_category=\"sensor_fault\" 1700000000123\n"
        );
    }

    #[test]
    fn special_characters_are_escaped_where_the_protocol_says() {
        let line = Line::new("my measurement,x", 64)
            .tag("a key", "v=1,2 3")
            .tag("empty", "")
            .string("s", "say \"hi\" \\ bye\nnow")
            .finish(1)
            .expect("has fields");
        assert_eq!(
            line,
            "my\\ measurement\\,x,a\\ key=v\\=1\\,2\\ 3 s=\"say \\\"hi\\\" \\\\ bye now\" 1\n"
        );
    }

    #[test]
    fn non_finite_floats_are_left_out_and_a_point_needs_a_field() {
        let line = Line::new("m", 16)
            .float("nan", f64::NAN)
            .float("inf", f64::INFINITY)
            .float("ok", -0.25)
            .finish(5)
            .expect("one field");
        assert_eq!(line, "m ok=-0.25 5\n");
        assert_eq!(
            Line::new("m", 16).float("nan", f64::NAN).finish(5),
            Err(PointError::NoField("m".to_owned()))
        );
    }

    #[test]
    fn empty_keys_are_left_out() {
        let line = Line::new("m", 16)
            .tag("", "v")
            .tag("t", "x")
            .float("", 1.0)
            .int("", 2)
            .string("", "s")
            .int("n", 3)
            .finish(5)
            .expect("one field");
        assert_eq!(line, "m,t=x n=3i 5\n");
        assert_eq!(
            Line::new("m", 16).int("", 1).finish(5),
            Err(PointError::NoField("m".to_owned()))
        );
    }

    #[test]
    fn a_timestamp_beyond_the_protocol_is_an_error_not_a_wrapped_number() {
        // 2262-04-11, the last millisecond whose nanoseconds fit in an i64.
        let last = 9_223_372_036_854;
        assert!(Line::new("m", 16).int("v", 1).finish(last).is_ok());
        assert!(Line::new("m", 16).int("v", 1).finish(-last).is_ok());
        for ts in [last + 1, -last - 1, i64::MAX, i64::MIN] {
            assert_eq!(
                Line::new("m", 16).int("v", 1).finish(ts),
                Err(PointError::TimeOutOfRange(ts))
            );
        }
    }

    #[test]
    fn floats_read_back_as_the_same_number() {
        let mut values = vec![0.1, 1e-7, 123_456_789.125, -3.0e15, f64::MIN_POSITIVE, -0.0];
        // Every decade either side of the switch between the two formatters, and values with
        // long shortest forms.
        for exponent in -8..=17 {
            let decade = 10f64.powi(exponent);
            values.extend([decade, -decade, decade * 1.000_000_000_000_1, decade / 3.0]);
        }
        values.extend([21.5, -18.25, 1.9999999999999998, 0.30000000000000004]);
        for value in values {
            let line = Line::new("m", 16)
                .float("v", value)
                .finish(0)
                .expect("field");
            let text = line
                .strip_prefix("m v=")
                .and_then(|rest| rest.strip_suffix(" 0\n"))
                .expect("shape");
            assert!(!text.contains('e'), "{text}");
            assert_eq!(text.parse::<f64>().expect("number"), value);
        }
    }

    #[test]
    fn escaping_keeps_multibyte_text_around_the_escaped_characters() {
        let mut out = String::new();
        escaped(&mut out, "延庆 村,东=1\r\n井", &KEY);
        assert_eq!(out, "延庆\\ 村\\,东\\=1  井");
        let mut out = String::new();
        escaped(&mut out, "say \"hi\" \\ 好", &STRING_VALUE);
        assert_eq!(out, "say \\\"hi\\\" \\\\ 好");
        let mut out = String::new();
        escaped(&mut out, "plain-id_01", &KEY);
        assert_eq!(out, "plain-id_01");
    }
}
