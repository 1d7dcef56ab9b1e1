//! Canonical value names shared by every brand, with their units and plausible ranges.
//!
//! A register-map profile maps a brand's registers onto these names; rules are written against
//! them once for all brands. The plausible range is what ingest accepts: a reading outside it is
//! physically impossible for a domestic heater (a broken sensor or a corrupted message), not
//! merely unusual. Names end in their unit (`_c`, `_bar`, `_w`...), as the design asks.
//!
//! Beside them a reading may carry a few vendor values ([`is_vendor_name`]: `x_cop`,
//! `x_pump_on`), a brand's own registers, bounded in number and magnitude, never read by rules.

/// One canonical value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Canonical {
    pub name: &'static str,
    /// Unit symbol, for display and for profile cross-checks.
    pub unit: &'static str,
    /// Smallest plausible value (inclusive).
    pub min: f64,
    /// Largest plausible value (inclusive).
    pub max: f64,
    pub description: &'static str,
}

const fn c(
    name: &'static str,
    unit: &'static str,
    min: f64,
    max: f64,
    description: &'static str,
) -> Canonical {
    Canonical {
        name,
        unit,
        min,
        max,
        description,
    }
}

pub const INDOOR_TEMP_C: &str = "indoor_temp_c";
pub const OUTDOOR_TEMP_C: &str = "outdoor_temp_c";
pub const FLOW_TEMP_C: &str = "flow_temp_c";
pub const RETURN_TEMP_C: &str = "return_temp_c";
pub const SETPOINT_C: &str = "setpoint_c";
pub const FAULT_CODE: &str = "fault_code";
pub const RUNNING: &str = "running";
pub const WATER_PRESSURE_BAR: &str = "water_pressure_bar";
pub const ELECTRIC_POWER_W: &str = "electric_power_w";
pub const HEAT_OUTPUT_W: &str = "heat_output_w";

/// Every canonical value. Sensor-open readings (e.g. -50 °C) are inside the range on purpose:
/// rules detect them as sensor faults; ingest must not hide them.
pub const CANONICAL: &[Canonical] = &[
    c(
        INDOOR_TEMP_C,
        "°C",
        -50.0,
        80.0,
        "room temperature at the thermostat",
    ),
    c(
        OUTDOOR_TEMP_C,
        "°C",
        -60.0,
        70.0,
        "outdoor air temperature at the unit",
    ),
    c(
        FLOW_TEMP_C,
        "°C",
        -50.0,
        130.0,
        "leaving (flow) water temperature",
    ),
    c(
        RETURN_TEMP_C,
        "°C",
        -50.0,
        130.0,
        "entering (return) water temperature",
    ),
    c(SETPOINT_C, "°C", 0.0, 90.0, "thermostat or flow set point"),
    c(
        DHW_TEMP_C,
        "°C",
        -50.0,
        130.0,
        "domestic hot water temperature",
    ),
    c(
        FAULT_CODE,
        "",
        0.0,
        65535.0,
        "brand fault code, 0 when healthy",
    ),
    c(
        RUNNING,
        "",
        0.0,
        1.0,
        "1 while the heater is producing heat",
    ),
    c(
        DEFROST_ACTIVE,
        "",
        0.0,
        1.0,
        "1 while a heat pump defrosts its coil",
    ),
    c(
        COMPRESSOR_FREQ_HZ,
        "Hz",
        0.0,
        250.0,
        "inverter compressor frequency",
    ),
    c(COMPRESSOR_CURRENT_A, "A", 0.0, 100.0, "compressor current"),
    c(
        DISCHARGE_TEMP_C,
        "°C",
        -50.0,
        180.0,
        "compressor discharge temperature",
    ),
    c(
        SUCTION_PRESSURE_BAR,
        "bar",
        0.0,
        60.0,
        "refrigerant suction pressure",
    ),
    c(
        DISCHARGE_PRESSURE_BAR,
        "bar",
        0.0,
        60.0,
        "refrigerant discharge pressure",
    ),
    c(COIL_TEMP_C, "°C", -60.0, 80.0, "outdoor coil temperature"),
    c(ELECTRIC_POWER_W, "W", 0.0, 30000.0, "electric power drawn"),
    c(
        HEAT_OUTPUT_W,
        "W",
        0.0,
        60000.0,
        "heat delivered to the water circuit",
    ),
    c(ENERGY_KWH, "kWh", 0.0, 1.0e9, "electric energy meter"),
    c(
        RUNTIME_H,
        "h",
        0.0,
        1.0e7,
        "compressor or burner running hours",
    ),
    c(
        WATER_PRESSURE_BAR,
        "bar",
        0.0,
        10.0,
        "heating circuit water pressure",
    ),
    c(
        FLAME_ON,
        "",
        0.0,
        1.0,
        "1 while the burner flame is detected",
    ),
    c(FAN_SPEED_RPM, "rpm", 0.0, 10000.0, "combustion fan speed"),
    c(MODULATION_PCT, "%", 0.0, 100.0, "burner modulation"),
    c(
        IGNITION_ATTEMPTS,
        "",
        0.0,
        1.0e9,
        "ignition attempts counter",
    ),
    c(FLUE_TEMP_C, "°C", -50.0, 300.0, "flue gas temperature"),
    c(GAS_PRESSURE_MBAR, "mbar", 0.0, 100.0, "gas supply pressure"),
];

pub const DHW_TEMP_C: &str = "dhw_temp_c";
pub const DEFROST_ACTIVE: &str = "defrost_active";
pub const COMPRESSOR_FREQ_HZ: &str = "compressor_freq_hz";
pub const COMPRESSOR_CURRENT_A: &str = "compressor_current_a";
pub const DISCHARGE_TEMP_C: &str = "discharge_temp_c";
pub const SUCTION_PRESSURE_BAR: &str = "suction_pressure_bar";
pub const DISCHARGE_PRESSURE_BAR: &str = "discharge_pressure_bar";
pub const COIL_TEMP_C: &str = "coil_temp_c";
pub const ENERGY_KWH: &str = "energy_kwh";
pub const RUNTIME_H: &str = "runtime_h";
pub const FLAME_ON: &str = "flame_on";
pub const FAN_SPEED_RPM: &str = "fan_speed_rpm";
pub const MODULATION_PCT: &str = "modulation_pct";
pub const IGNITION_ATTEMPTS: &str = "ignition_attempts";
pub const FLUE_TEMP_C: &str = "flue_temp_c";
pub const GAS_PRESSURE_MBAR: &str = "gas_pressure_mbar";

/// Vendor value names: a brand's own registers that no canonical name covers (`x_cop`,
/// `x_pump_on`), carried to history and shown on the device page but never read by the rules.
/// A name is [`VENDOR_PREFIX`] and 1 to [`MAX_VENDOR_NAME_LEN`] characters of `a-z`, `0-9`, `_`,
/// so it can never be a canonical name, and needs no escaping as a history field.
pub const VENDOR_PREFIX: &str = "x_";
/// Most characters after [`VENDOR_PREFIX`] in a vendor value name.
pub const MAX_VENDOR_NAME_LEN: usize = 40;
/// Most vendor values one reading may carry (and one profile may map).
pub const MAX_VENDOR_VALUES: usize = 32;
/// Largest magnitude of a vendor value: a vendor value has no plausible range of its own, so
/// it is held to a finite number no register of a domestic heater exceeds.
pub const MAX_VENDOR_MAGNITUDE: f64 = 1.0e9;

/// True when `name` is a vendor value name: `x_` then 1 to 40 of `a-z`, `0-9`, `_`.
pub fn is_vendor_name(name: &str) -> bool {
    name.strip_prefix(VENDOR_PREFIX).is_some_and(|rest| {
        (1..=MAX_VENDOR_NAME_LEN).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

/// True when `value` may be carried as a vendor value: finite, magnitude at most
/// [`MAX_VENDOR_MAGNITUDE`].
pub fn is_vendor_value(value: f64) -> bool {
    value.is_finite() && value.abs() <= MAX_VENDOR_MAGNITUDE
}

/// Looks a canonical value up by name.
pub fn lookup(name: &str) -> Option<&'static Canonical> {
    CANONICAL.get(position(name)?)
}

/// Buckets of the canonical name table (a power of two).
const NAME_BUCKETS: usize = 256;

/// The canonical names of one bucket, with their index in [`CANONICAL`].
type Bucket = Vec<(&'static [u8], usize)>;

/// Canonical names by a cheap bucket of their length and a few bytes: per bucket, the names
/// (with their index in [`CANONICAL`]) that fall in it. A name is found by comparing it with the
/// few names of its bucket, byte for byte.
fn name_table() -> &'static [Bucket] {
    static TABLE: std::sync::OnceLock<Vec<Bucket>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = vec![Vec::new(); NAME_BUCKETS];
        for (index, canonical) in CANONICAL.iter().enumerate() {
            let name = canonical.name.as_bytes();
            if let Some(bucket) = table.get_mut(name_bucket(name)) {
                bucket.push((name, index));
            }
        }
        table
    })
}

/// The bucket of a name: its length, first, middle and last bytes, mixed.
fn name_bucket(name: &[u8]) -> usize {
    let byte = |i: usize| name.get(i).copied().map_or(0, usize::from);
    let len = name.len();
    let mixed = len
        .wrapping_mul(0x9e)
        .wrapping_add(byte(0).wrapping_mul(0x3b))
        .wrapping_add(byte(len / 2).wrapping_mul(0x61))
        .wrapping_add(byte(len.wrapping_sub(1)).wrapping_mul(0x1d))
        .wrapping_add(byte(len / 4).wrapping_mul(0x07));
    (mixed ^ (mixed >> 8)) & (NAME_BUCKETS - 1)
}

/// The index in [`CANONICAL`] of a name, if it is canonical: a hash-free bucket and an exact
/// byte comparison with the one or two names in it (called for every value of every reading).
pub fn position(name: &str) -> Option<usize> {
    let name = name.as_bytes();
    name_table()
        .get(name_bucket(name))?
        .iter()
        .find(|(candidate, _)| crate::bytes::same_bytes(candidate, name))
        .map(|(_, index)| *index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_canonical_name_has_its_position_and_others_have_none() {
        for (i, c) in CANONICAL.iter().enumerate() {
            assert_eq!(position(c.name), Some(i));
            assert_eq!(lookup(c.name), Some(c));
            assert_eq!(position(&format!("{}x", c.name)), None);
            assert_eq!(position(&c.name[..c.name.len() - 1]), None);
        }
        for other in ["", "a", "indoor_temp_c\0", "zzz", "\u{ff}", "running\0"] {
            assert_eq!(position(other), None, "{other:?}");
        }
    }

    #[test]
    fn names_are_unique_and_ranges_ordered() {
        for (i, a) in CANONICAL.iter().enumerate() {
            assert!(a.min < a.max, "{} has an empty range", a.name);
            for b in &CANONICAL[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }

    #[test]
    fn vendor_names_are_x_and_1_to_40_lowercase_digits_or_underscores() {
        let longest = format!("x_{}", "a".repeat(MAX_VENDOR_NAME_LEN));
        for good in [
            "x_cop",
            "x_pump_on",
            "x_0",
            "x__",
            "x_a1_b2",
            longest.as_str(),
        ] {
            assert!(is_vendor_name(good), "{good:?}");
        }
        let too_long = format!("x_{}", "a".repeat(MAX_VENDOR_NAME_LEN + 1));
        for bad in [
            "",
            "x",
            "x_",
            "X_cop",
            "x_Cop",
            "x-cop",
            "x_co p",
            "x_cop\0",
            "x_é",
            "y_cop",
            "_x_cop",
            "cop",
            too_long.as_str(),
        ] {
            assert!(!is_vendor_name(bad), "{bad:?}");
        }
        // The two namespaces never meet.
        for canonical in CANONICAL {
            assert!(!is_vendor_name(canonical.name), "{}", canonical.name);
        }
    }

    #[test]
    fn vendor_values_are_finite_and_bounded() {
        for good in [0.0, -0.0, 3.5, -MAX_VENDOR_MAGNITUDE, MAX_VENDOR_MAGNITUDE] {
            assert!(is_vendor_value(good), "{good}");
        }
        for bad in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            MAX_VENDOR_MAGNITUDE * 1.000_001,
            -MAX_VENDOR_MAGNITUDE * 1.000_001,
            f64::MAX,
        ] {
            assert!(!is_vendor_value(bad), "{bad}");
        }
    }

    #[test]
    fn lookup_finds_known_and_rejects_unknown_names() {
        assert_eq!(lookup(INDOOR_TEMP_C).map(|c| c.unit), Some("°C"));
        assert!(lookup("indoor_temp").is_none());
    }
}
