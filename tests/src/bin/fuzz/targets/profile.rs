//! Target `profile`: `edge_agent::profile::Profile::parse` on register-map TOML, then, for
//! every register of a profile it accepts, `decode` on the register words of part `words` and
//! `encode` on edge values.
//!
//! Checks what `edge_agent::profile` documents: `decode` returns `None` for fewer words than
//! the type's width; `encode` gives the words the register holds (its width); `decode` and
//! `encode` are inverses within the register's resolution (scale), for any value `decode`
//! returns and for any value of the register's writable range that its type can hold
//! (`encode` saturates outside it).

use edge_agent::profile::{decode, encode, ByteOrder, Profile, Register, ValueType, WordOrder};
use wire::values::CANONICAL;
use wire::FaultCategory;

use super::{files_in, normalise, raw_strings, read, split_tables, Target};
use crate::input::Input;
use crate::mutate::Dictionary;

pub struct Profiles;

/// The register words of an input: part `words`, two bytes (big-endian) each.
fn words(input: &Input) -> Vec<u16> {
    input
        .get("words")
        .unwrap_or_default()
        .chunks(2)
        .map(|pair| u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]))
        .collect()
}

/// The raw values a register's type holds.
fn raw_range(value_type: ValueType) -> (f64, f64) {
    match value_type {
        ValueType::U16 => (0.0, f64::from(u16::MAX)),
        ValueType::I16 => (f64::from(i16::MIN), f64::from(i16::MAX)),
        ValueType::U32 => (0.0, f64::from(u32::MAX)),
        ValueType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        ValueType::F32 => (-f64::from(f32::MAX), f64::from(f32::MAX)),
        ValueType::Bit | ValueType::Bool => (0.0, 1.0),
    }
}

/// How far `decode(encode(value))` may be from `value`: half a step of the register's
/// resolution (an f32's relative precision for `f32`), plus floating-point rounding of the
/// scale and offset arithmetic.
fn tolerance(register: &Register, value: f64) -> f64 {
    let raw = (value - register.offset) / register.scale;
    let step = if register.value_type == ValueType::F32 {
        (raw.abs() * f64::from(f32::EPSILON) + f64::from(f32::from_bits(1))) * register.scale.abs()
    } else {
        register.scale.abs() * 0.5
    };
    step * (1.0 + 1e-9) + 1e-12 * (value.abs() + register.offset.abs()) + 1e-300
}

fn check_round_trip(register: &Register, value: f64, origin: &str) {
    let words = encode(register, value);
    let back = decode(register, &words);
    let Some(back) = back else {
        panic!(
            "check failed: register {:?} ({:?}, scale {}, offset {}): {origin} value {value:e} encodes to {words:?}, which does not decode",
            register.name, register.value_type, register.scale, register.offset
        );
    };
    assert!(
        (back - value).abs() <= tolerance(register, value),
        "check failed: register {:?} ({:?}, scale {}, offset {}): {origin} value {value:e} -> {words:?} -> {back:e}, off by {:e}",
        register.name,
        register.value_type,
        register.scale,
        register.offset,
        (back - value).abs()
    );
}

fn check_register(register: &Register, words: &[u16]) {
    let width = usize::from(register.value_type.width());
    // Too few words: `None`, not a panic.
    for length in 0..width.min(words.len() + 1) {
        let short = &words[..length.min(words.len())];
        assert!(
            decode(register, short).is_none(),
            "check failed: register {:?} ({:?}) decoded {} words",
            register.name,
            register.value_type,
            short.len()
        );
    }
    // Whatever the device sends decodes, and what decodes encodes back to it.
    for start in 0..words.len().min(4) {
        if let Some(value) = decode(register, &words[start..]) {
            check_round_trip(register, value, "decoded");
        }
    }
    // Edge values encode to the register's width without a panic.
    let from_words = |i: usize| -> f64 {
        let bits = (0..4).fold(0u64, |bits, k| {
            (bits << 16) | u64::from(words.get(i + k).copied().unwrap_or(0))
        });
        f64::from_bits(bits)
    };
    for value in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        0.0,
        -0.0,
        register.offset,
        register.offset + register.scale,
        from_words(0),
        from_words(2),
    ] {
        let encoded = encode(register, value);
        assert!(
            encoded.len() == width,
            "check failed: register {:?} ({:?}) encodes {value} into {} words",
            register.name,
            register.value_type,
            encoded.len()
        );
        let _ = decode(register, &encoded);
    }
    // The writable range, where the type can hold it.
    if let Some(writable) = register.writable {
        let (low, high) = raw_range(register.value_type);
        let mut candidates = vec![
            writable.min,
            writable.max,
            writable.min / 2.0 + writable.max / 2.0,
        ];
        for word in words.iter().take(4) {
            let fraction = f64::from(*word) / f64::from(u16::MAX);
            candidates.push(writable.min + (writable.max - writable.min) * fraction);
        }
        for value in candidates {
            let raw = (value - register.offset) / register.scale;
            let holds = value.is_finite() && raw >= low && raw <= high;
            if holds && value >= writable.min && value <= writable.max {
                check_round_trip(register, value, "writable");
            }
        }
    }
}

/// The profiles of the repository: `profiles/*.toml` and the raw strings of the agent's and the
/// simulator's tests.
fn repository_profiles() -> Vec<String> {
    let mut texts: Vec<String> = files_in("profiles", "toml")
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect();
    for file in [
        "edge-agent/src/profile.rs",
        "edge-agent/src/plan.rs",
        "edge-agent/src/command.rs",
        "edge-agent/src/modbus.rs",
    ] {
        if let Some(source) = read(file) {
            texts.extend(
                raw_strings(&source)
                    .into_iter()
                    .filter(|t| t.contains("[[register]]")),
            );
        }
    }
    texts
}

impl Target for Profiles {
    fn name(&self) -> &'static str {
        "profile"
    }

    fn main_part(&self) -> &'static str {
        "profile"
    }

    fn seeds(&self) -> Vec<Input> {
        const WORDS: &[&[u8]] = &[
            &[0x00, 0xC3, 0xFF, 0x85, 0x00, 0x01, 0x11, 0x70],
            &[0xFF, 0xFF, 0xFF, 0xFF, 0x80, 0x00, 0x00, 0x00],
            &[0x7F, 0x80, 0x00, 0x00, 0x7F, 0xFF, 0xFF, 0xFF],
            &[0x44, 0x9A, 0x50, 0x00, 0x00, 0x08, 0x00, 0x10],
        ];
        let mut texts = repository_profiles();
        // Each register alone under its profile's header, too: small inputs parse fast.
        let mut single = Vec::new();
        for text in &texts {
            let (header, chunks) =
                split_tables(text, &["[[register]]", "[[fault]]", "[fault_reset]"]);
            single.extend(
                chunks
                    .iter()
                    .filter(|c| c.starts_with("[[register]]"))
                    .map(|c| format!("{header}{c}")),
            );
        }
        texts.extend(single);
        texts.sort();
        texts.dedup();
        texts
            .into_iter()
            .enumerate()
            .map(|(i, text)| {
                Input::new([
                    ("profile", text.into_bytes()),
                    ("words", WORDS[i % WORDS.len()].to_vec()),
                ])
            })
            .collect()
    }

    fn dictionary(&self, _seeds: &[Input]) -> Dictionary {
        let mut dictionary = Dictionary::new(
            &[
                "[[register]]\n",
                "[[fault]]\n",
                "[fault_reset]\n",
                "id = ",
                "brand = ",
                "model = ",
                "kind = ",
                "description = ",
                "word_order = ",
                "byte_order = ",
                "name = ",
                "address = ",
                "type = ",
                "bit = ",
                "scale = ",
                "offset = ",
                "unit = ",
                "writable = { min = 10.0, max = 28.0 }\n",
                "writable = { min = -inf, max = inf }\n",
                "writable = { min = nan, max = 1 }\n",
                "code = ",
                "category = ",
                "text = ",
                "value = ",
                "\"coil\"",
                "\"discrete\"",
                "\"input\"",
                "\"holding\"",
                "\"u16\"",
                "\"i16\"",
                "\"u32\"",
                "\"i32\"",
                "\"f32\"",
                "\"bit\"",
                "\"bool\"",
                "\"big\"",
                "\"little\"",
                "\"heat_pump\"",
                "\"gas_boiler\"",
                "\"°C\"",
                "\"bar\"",
                "\"W\"",
                "\"%\"",
                "\"\"",
                "inf",
                "-inf",
                "nan",
                "1e-320",
                "-0.1",
                "0.001",
                "1e300",
                "'''",
                "\"\"\"",
                "=",
                "[",
                "]",
                "{",
                "}",
                "\n",
            ],
            &[("[", "]"), ("{a=", "}"), ("a.", "=1"), ("[[a", "]]")],
        );
        dictionary.extend(CANONICAL.iter().map(|c| c.name));
        dictionary.extend(FaultCategory::ALL.iter().map(|c| c.as_str()));
        dictionary
    }

    fn weight(&self, part: &str) -> usize {
        if part == "words" {
            2
        } else {
            6
        }
    }

    fn binary(&self, part: &str) -> bool {
        part == "words"
    }

    fn run(&self, input: &Input) -> String {
        let text = input.text("profile");
        match Profile::parse(&text, "fuzz.toml") {
            Ok(profile) => {
                let words = words(input);
                for register in &profile.registers {
                    check_register(register, &words);
                }
                for word in words.iter().take(4) {
                    let _ = profile.fault(u32::from(*word));
                }
                // What the profile holds: types and orders of its registers, bounds, faults.
                let mut features: Vec<String> = profile
                    .registers
                    .iter()
                    .flat_map(|r| {
                        [
                            Some(format!("{:?}", r.value_type)),
                            (r.word_order == WordOrder::Little).then(|| "little-words".to_owned()),
                            (r.byte_order == ByteOrder::Little).then(|| "little-bytes".to_owned()),
                            r.writable.is_some().then(|| "writable".to_owned()),
                            (r.scale < 0.0).then(|| "negative-scale".to_owned()),
                        ]
                    })
                    .flatten()
                    .collect();
                if profile.faults().next().is_some() {
                    features.push("faults".to_owned());
                }
                if profile.fault_reset.is_some() {
                    features.push("reset".to_owned());
                }
                features.sort();
                features.dedup();
                format!("ok:{}", features.join(","))
            }
            Err(error) => format!(
                "err:{} {}",
                normalise(&error.field),
                normalise(&error.message)
            ),
        }
    }
}
