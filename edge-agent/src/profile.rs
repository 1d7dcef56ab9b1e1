//! Register-map profiles: a brand's Modbus registers described as data (TOML), mapped onto the
//! shared canonical values and fault categories, with decoding (for the agent) and encoding
//! (for the simulator) of every supported type, word order and scale.
//!
//! A register's `name` is a canonical value name (`wire::values::CANONICAL`; its `unit`, if
//! written, must be the canonical unit) or a vendor value name: `x_` and 1 to 40 of `a-z`, `0-9`,
//! `_` (`wire::values::is_vendor_name`), for a brand's own register that no canonical name
//! covers (`x_cop`, `x_pump_on`). Vendor values go to history and the device page but never to
//! the rules; their `unit` is free text for people, and a profile maps at most 32 of them
//! (`wire::values::MAX_VENDOR_VALUES`, what a reading may carry). A decoded vendor value whose
//! magnitude exceeds 1e9 (`wire::values::MAX_VENDOR_MAGNITUDE`) is left out of the reading,
//! which the gateway would refuse whole. Every name is mapped at most once.
//!
//! A profile file looks like this:
//! ```toml
//! id = "aurora-ashp"
//! brand = "Aurora"
//! model = "KFXRS-12II"
//! kind = "heat_pump"
//! word_order = "big"           # default for 32-bit values: high word first
//!
//! [[register]]
//! name = "indoor_temp_c"
//! kind = "input"               # coil | discrete | input | holding
//! address = 0
//! type = "i16"                 # u16 | i16 | u32 | i32 | f32 | bit | bool
//! scale = 0.1                  # value = raw * scale + offset
//! unit = "°C"
//!
//! [[register]]
//! name = "x_cop"               # a vendor value: not read by rules
//! kind = "input"
//! address = 20
//! type = "u16"
//! scale = 0.01
//!
//! [[fault]]
//! code = 3
//! category = "water_flow"
//! text = "water flow switch open"
//!
//! [fault_reset]                # optional: what a remote `fault_reset` command writes
//! kind = "coil"                # coil | holding
//! address = 50
//! value = 1
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use wire::diagnostics::line_col;
use wire::{DeviceKind, Fault, FaultCategory};

/// The four Modbus data tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegisterKind {
    Coil,
    Discrete,
    Input,
    Holding,
}

impl RegisterKind {
    /// True for the bit tables (coils, discrete inputs).
    pub fn is_bit(self) -> bool {
        matches!(self, RegisterKind::Coil | RegisterKind::Discrete)
    }

    /// Most items one read request may cover (Modbus application protocol v1.1b3, 6.1-6.4).
    pub fn max_per_read(self) -> u16 {
        if self.is_bit() {
            2000
        } else {
            125
        }
    }
}

/// How the raw register bits are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    U16,
    I16,
    U32,
    I32,
    F32,
    /// One bit of a 16-bit register (`bit = 0..15`).
    Bit,
    /// A coil or discrete input.
    Bool,
}

impl ValueType {
    /// Number of 16-bit registers (or bits, for `Bool`) the value occupies.
    pub fn width(self) -> u16 {
        match self {
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 2,
            _ => 1,
        }
    }
}

/// Order of the two 16-bit words of a 32-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordOrder {
    /// High word at the lower address (Modbus convention, "ABCD").
    #[default]
    Big,
    /// Low word at the lower address ("CDAB").
    Little,
}

/// Order of the two bytes inside each 16-bit word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ByteOrder {
    /// High byte first (Modbus convention).
    #[default]
    Big,
    /// Bytes swapped inside each word ("BADC" / "DCBA" with the word order).
    Little,
}

/// Bounds for a register that remote commands may write.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Writable {
    /// Smallest value a command may write, in engineering units.
    pub min: f64,
    /// Largest value a command may write, in engineering units.
    pub max: f64,
}

/// One register (or bit) mapped onto a canonical value or a vendor value (`x_...`).
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub name: String,
    pub kind: RegisterKind,
    pub address: u16,
    pub value_type: ValueType,
    pub bit: u8,
    pub word_order: WordOrder,
    pub byte_order: ByteOrder,
    pub scale: f64,
    pub offset: f64,
    /// The canonical unit; for a vendor value, the profile's text (empty if not written).
    pub unit: String,
    pub writable: Option<Writable>,
}

impl Register {
    /// The addresses this register occupies in its table.
    pub fn span(&self) -> Range<u32> {
        let start = u32::from(self.address);
        start..start + u32::from(self.value_type.width())
    }
}

/// What a remote `fault_reset` command writes: a value into a coil or holding register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultReset {
    /// `coil` or `holding`.
    pub kind: RegisterKind,
    /// Address of the reset coil or register.
    pub address: u16,
    /// Raw value written (for a coil, non-zero switches it on).
    #[serde(default = "one_u16")]
    pub value: u16,
}

fn one_u16() -> u16 {
    1
}

/// A validated register-map profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub id: String,
    pub brand: String,
    pub model: String,
    pub kind: DeviceKind,
    pub registers: Vec<Register>,
    /// The fault-reset write, if the brand has one.
    pub fault_reset: Option<FaultReset>,
    faults: BTreeMap<u32, (FaultCategory, String)>,
}

/// Why a profile was refused; the message names the file, line, column and field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}:{line}:{column}: {field}: {message}")]
pub struct ProfileError {
    pub origin: String,
    pub line: usize,
    pub column: usize,
    pub field: String,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    id: Spanned<String>,
    brand: String,
    model: String,
    kind: DeviceKind,
    #[serde(default)]
    description: String,
    #[serde(default)]
    word_order: WordOrder,
    #[serde(default)]
    byte_order: ByteOrder,
    #[serde(default, rename = "register")]
    registers: Vec<Spanned<RawRegister>>,
    #[serde(default, rename = "fault")]
    faults: Vec<Spanned<RawFault>>,
    #[serde(default)]
    fault_reset: Option<Spanned<FaultReset>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegister {
    name: Spanned<String>,
    kind: RegisterKind,
    address: Spanned<u32>,
    #[serde(rename = "type")]
    value_type: Spanned<ValueType>,
    bit: Option<Spanned<u8>>,
    word_order: Option<WordOrder>,
    byte_order: Option<ByteOrder>,
    #[serde(default = "one")]
    scale: Spanned<f64>,
    #[serde(default)]
    offset: f64,
    unit: Option<Spanned<String>>,
    writable: Option<Spanned<Writable>>,
}

fn one() -> Spanned<f64> {
    Spanned::new(0..0, 1.0)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    code: Spanned<u32>,
    category: FaultCategory,
    #[serde(default)]
    text: String,
}

/// Where a profile's text came from, to place its errors at a file, line and column.
struct Source<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Source<'_> {
    fn error(&self, span: Range<usize>, field: String, message: String) -> ProfileError {
        let (line, column) = line_col(self.text, span.start);
        ProfileError {
            origin: self.origin.to_owned(),
            line,
            column,
            field,
            message,
        }
    }
}

/// One `[[register]]` entry as written, with its position for error messages.
struct RegisterEntry<'a> {
    source: &'a Source<'a>,
    index: usize,
    raw: &'a RawRegister,
}

impl RegisterEntry<'_> {
    /// An error at `span`, placed at the entry's field `name` (`register[3].scale`).
    fn error(&self, span: Range<usize>, name: &str, message: String) -> ProfileError {
        let field = format!("register[{}].{name}", self.index);
        self.source.error(span, field, message)
    }

    /// The value type, which must suit the table: `bool` for bits, any other for registers.
    fn value_type(&self) -> Result<ValueType, ProfileError> {
        let r = self.raw;
        let value_type = *r.value_type.get_ref();
        match (r.kind.is_bit(), value_type) {
            (true, ValueType::Bool) | (false, ValueType::Bit) => {}
            (true, _) => {
                return Err(self.error(
                    r.value_type.span(),
                    "type",
                    "coils and discrete inputs hold type \"bool\"".into(),
                ))
            }
            (false, ValueType::Bool) => {
                return Err(self.error(
                    r.value_type.span(),
                    "type",
                    "\"bool\" is for coils and discrete inputs; use \"bit\" with `bit` for a bit of a register".into(),
                ))
            }
            (false, _) => {}
        }
        Ok(value_type)
    }

    /// The bit of a `bit` value (0 for every other type, which must not name one).
    fn bit(&self, value_type: ValueType) -> Result<u8, ProfileError> {
        let r = self.raw;
        match (&r.bit, value_type) {
            (Some(bit), ValueType::Bit) if *bit.get_ref() <= 15 => Ok(*bit.get_ref()),
            (Some(bit), ValueType::Bit) => Err(self.error(
                bit.span(),
                "bit",
                format!(
                    "{} is not a bit of a 16-bit register (0..=15)",
                    bit.get_ref()
                ),
            )),
            (None, ValueType::Bit) => Err(self.error(
                r.value_type.span(),
                "bit",
                "type \"bit\" needs `bit = 0..15`".into(),
            )),
            (Some(bit), _) => {
                Err(self.error(bit.span(), "bit", "only type \"bit\" takes `bit`".into()))
            }
            (None, _) => Ok(0),
        }
    }

    /// The address, whose value must end inside the table.
    fn address(&self, value_type: ValueType) -> Result<u16, ProfileError> {
        let address = *self.raw.address.get_ref();
        // Saturating: an address near u32::MAX must be refused, not wrap (or panic).
        let end = address.saturating_add(u32::from(value_type.width()));
        if end > 65536 {
            return Err(self.error(
                self.raw.address.span(),
                "address",
                format!(
                    "{address} (+{} registers) is past 65535",
                    value_type.width()
                ),
            ));
        }
        Ok(address as u16)
    }

    /// The scale: non-zero and finite.
    fn scale(&self) -> Result<f64, ProfileError> {
        let scale = *self.raw.scale.get_ref();
        if scale == 0.0 || !scale.is_finite() {
            return Err(self.error(
                self.raw.scale.span(),
                "scale",
                "must be a non-zero finite number".into(),
            ));
        }
        Ok(scale)
    }

    /// The bounds of a register commands may write (holding registers and coils only).
    fn writable(&self) -> Result<Option<Writable>, ProfileError> {
        let Some(w) = &self.raw.writable else {
            return Ok(None);
        };
        let bounds = *w.get_ref();
        if !matches!(self.raw.kind, RegisterKind::Holding | RegisterKind::Coil) {
            return Err(self.error(
                w.span(),
                "writable",
                "only holding registers and coils can be written".into(),
            ));
        }
        if bounds.min.is_nan() || bounds.max.is_nan() || bounds.min > bounds.max {
            return Err(self.error(
                w.span(),
                "writable",
                format!("min {} is above max {}", bounds.min, bounds.max),
            ));
        }
        Ok(Some(bounds))
    }
}

/// The registers of a profile as its entries are checked, in file order.
struct RegisterTable {
    registers: Vec<Register>,
    /// Every name mapped so far, with the index of the entry that maps it.
    names: HashMap<String, usize>,
    vendor_registers: usize,
    /// The profile's default orders for 32-bit values.
    word_order: WordOrder,
    byte_order: ByteOrder,
}

impl RegisterTable {
    fn new(raw: &RawProfile) -> RegisterTable {
        RegisterTable {
            registers: Vec::with_capacity(raw.registers.len()),
            names: HashMap::new(),
            vendor_registers: 0,
            word_order: raw.word_order,
            byte_order: raw.byte_order,
        }
    }

    /// Checks one entry against itself and the registers before it, and adds it.
    fn add(&mut self, entry: &RegisterEntry<'_>) -> Result<(), ProfileError> {
        let r = entry.raw;
        let (name, unit) = self.name_and_unit(entry)?;
        let value_type = entry.value_type()?;
        let bit = entry.bit(value_type)?;
        let address = entry.address(value_type)?;
        let scale = entry.scale()?;
        let writable = entry.writable()?;
        let register = Register {
            name,
            kind: r.kind,
            address,
            value_type,
            bit,
            word_order: r.word_order.unwrap_or(self.word_order),
            byte_order: r.byte_order.unwrap_or(self.byte_order),
            scale,
            offset: r.offset,
            unit,
            writable,
        };
        if let Some((other, _)) = self
            .registers
            .iter()
            .enumerate()
            .find(|(_, other)| overlaps(other, &register))
        {
            return Err(entry.error(
                r.address.span(),
                "address",
                format!(
                    "{:?} {address} overlaps register[{other}] ({})",
                    register.kind, self.registers[other].name
                ),
            ));
        }
        self.registers.push(register);
        Ok(())
    }

    /// The entry's name (canonical or vendor, mapped once, at most so many vendor names) and
    /// its unit (the canonical unit, or a vendor value's free text).
    fn name_and_unit(
        &mut self,
        entry: &RegisterEntry<'_>,
    ) -> Result<(String, String), ProfileError> {
        let r = entry.raw;
        let name = r.name.get_ref().clone();
        let canonical = wire::values::lookup(&name);
        if canonical.is_none() && !wire::values::is_vendor_name(&name) {
            return Err(entry.error(
                r.name.span(),
                "name",
                format!(
                    "{name:?} is neither a canonical value name nor a vendor value name \
                     (`x_` and 1 to {} of a-z, 0-9, _)",
                    wire::values::MAX_VENDOR_NAME_LEN
                ),
            ));
        }
        if let Some(first) = self.names.insert(name.clone(), entry.index) {
            return Err(entry.error(
                r.name.span(),
                "name",
                format!("{name:?} is already mapped by register[{first}]"),
            ));
        }
        let unit = match canonical {
            Some(canonical) => {
                if let Some(unit) = r.unit.as_ref().filter(|u| u.get_ref() != canonical.unit) {
                    return Err(entry.error(
                        unit.span(),
                        "unit",
                        format!(
                            "{name} is in {:?}; convert with scale and offset and write that unit",
                            canonical.unit
                        ),
                    ));
                }
                canonical.unit.to_owned()
            }
            None => {
                self.vendor_registers += 1;
                if self.vendor_registers > wire::values::MAX_VENDOR_VALUES {
                    return Err(entry.error(
                        r.name.span(),
                        "name",
                        format!(
                            "{name:?} is one vendor value too many: a reading carries at most {}",
                            wire::values::MAX_VENDOR_VALUES
                        ),
                    ));
                }
                r.unit
                    .as_ref()
                    .map(|u| u.get_ref().clone())
                    .unwrap_or_default()
            }
        };
        Ok((name, unit))
    }
}

/// The fault table: codes other than 0, each listed once.
fn parse_faults(
    source: &Source<'_>,
    raw: Vec<Spanned<RawFault>>,
) -> Result<BTreeMap<u32, (FaultCategory, String)>, ProfileError> {
    let mut faults = BTreeMap::new();
    for (index, spanned) in raw.into_iter().enumerate() {
        let f = spanned.into_inner();
        let code = *f.code.get_ref();
        if code == 0 {
            return Err(source.error(
                f.code.span(),
                format!("fault[{index}].code"),
                "code 0 means healthy and cannot be a fault".into(),
            ));
        }
        if faults.insert(code, (f.category, f.text)).is_some() {
            return Err(source.error(
                f.code.span(),
                format!("fault[{index}].code"),
                format!("code {code} is listed twice"),
            ));
        }
    }
    Ok(faults)
}

/// The fault-reset write, which goes to a coil or a holding register.
fn parse_fault_reset(
    source: &Source<'_>,
    raw: Option<Spanned<FaultReset>>,
) -> Result<Option<FaultReset>, ProfileError> {
    let Some(reset) = raw else {
        return Ok(None);
    };
    let span = reset.span();
    let reset = reset.into_inner();
    if !matches!(reset.kind, RegisterKind::Coil | RegisterKind::Holding) {
        return Err(source.error(
            span,
            "fault_reset.kind".into(),
            "a fault reset writes a coil or a holding register".into(),
        ));
    }
    Ok(Some(reset))
}

impl Profile {
    /// Parses and validates a profile. `origin` names the file in error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let source = Source { text, origin };
        let raw: RawProfile = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            source.error(span, "profile".into(), e.message().to_owned())
        })?;
        let _ = raw.description;
        if raw.id.get_ref().is_empty() {
            return Err(source.error(raw.id.span(), "id".into(), "is empty".into()));
        }

        let mut table = RegisterTable::new(&raw);
        for (index, spanned) in raw.registers.iter().enumerate() {
            let entry = RegisterEntry {
                source: &source,
                index,
                raw: spanned.get_ref(),
            };
            table.add(&entry)?;
        }
        if table.registers.is_empty() {
            return Err(source.error(
                0..0,
                "register".into(),
                "a profile needs at least one [[register]]".into(),
            ));
        }

        let faults = parse_faults(&source, raw.faults)?;
        if !faults.is_empty() && !table.names.contains_key(wire::values::FAULT_CODE) {
            return Err(source.error(
                0..0,
                "fault".into(),
                "fault codes are listed but no register is named \"fault_code\"".into(),
            ));
        }
        let fault_reset = parse_fault_reset(&source, raw.fault_reset)?;

        Ok(Profile {
            id: raw.id.into_inner(),
            brand: raw.brand,
            model: raw.model,
            kind: raw.kind,
            registers: table.registers,
            fault_reset,
            faults,
        })
    }

    /// Reads and parses a profile file.
    pub fn load(path: &std::path::Path) -> Result<Profile, ProfileError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ProfileError {
            origin: origin.clone(),
            line: 0,
            column: 0,
            field: "file".into(),
            message: format!("cannot be read: {e}"),
        })?;
        Profile::parse(&text, &origin)
    }

    /// The register mapped onto a canonical (or vendor) name.
    pub fn register(&self, name: &str) -> Option<&Register> {
        self.registers.iter().find(|r| r.name == name)
    }

    /// The shared fault for a brand code (`None` for 0). Unknown non-zero codes map to `Other`
    /// so that a fault never goes unreported because the profile's table is incomplete.
    pub fn fault(&self, code: u32) -> Option<Fault> {
        if code == 0 {
            return None;
        }
        let (category, text) = self
            .faults
            .get(&code)
            .cloned()
            .unwrap_or((FaultCategory::Other, format!("code {code} not in profile")));
        Some(Fault {
            code,
            category,
            text,
        })
    }

    /// The first brand code of a category (the simulator uses it to raise that fault).
    pub fn code_for(&self, category: FaultCategory) -> Option<u32> {
        self.faults
            .iter()
            .find(|(_, (c, _))| *c == category)
            .map(|(code, _)| *code)
    }

    /// All fault codes with their category and text.
    pub fn faults(&self) -> impl Iterator<Item = (u32, FaultCategory, &str)> {
        self.faults
            .iter()
            .map(|(code, (category, text))| (*code, *category, text.as_str()))
    }
}

fn overlaps(a: &Register, b: &Register) -> bool {
    if a.kind != b.kind {
        return false;
    }
    let (sa, sb) = (a.span(), b.span());
    let shared = sa.start < sb.end && sb.start < sa.end;
    // Two different bits of the same register may share it.
    let both_bits = a.value_type == ValueType::Bit && b.value_type == ValueType::Bit;
    shared && !(both_bits && a.bit != b.bit)
}

/// Decodes one register from the words (or bits) read at its address. `words` must hold at
/// least `value_type.width()` items; returns `None` if it does not.
pub fn decode(register: &Register, words: &[u16]) -> Option<f64> {
    let swap = |w: u16| match register.byte_order {
        ByteOrder::Big => w,
        ByteOrder::Little => w.swap_bytes(),
    };
    let raw32 = |words: &[u16]| -> Option<u32> {
        let (a, b) = (swap(*words.first()?), swap(*words.get(1)?));
        Some(match register.word_order {
            WordOrder::Big => (u32::from(a) << 16) | u32::from(b),
            WordOrder::Little => (u32::from(b) << 16) | u32::from(a),
        })
    };
    let raw = match register.value_type {
        ValueType::U16 => f64::from(swap(*words.first()?)),
        ValueType::I16 => f64::from(swap(*words.first()?) as i16),
        ValueType::U32 => f64::from(raw32(words)?),
        ValueType::I32 => f64::from(raw32(words)? as i32),
        ValueType::F32 => f64::from(f32::from_bits(raw32(words)?)),
        ValueType::Bit => f64::from((swap(*words.first()?) >> register.bit) & 1),
        ValueType::Bool => f64::from(u8::from(*words.first()? != 0)),
    };
    let value = raw * register.scale + register.offset;
    value.is_finite().then_some(value)
}

/// What a poll publishes for a register: [`decode`], except that a vendor value beyond
/// [`wire::values::MAX_VENDOR_MAGNITUDE`] is left out (`None`), since the gateway would refuse
/// the whole reading for it. Canonical values go as decoded; the gateway checks their ranges.
pub fn reading_value(register: &Register, words: &[u16]) -> Option<f64> {
    let value = decode(register, words)?;
    let vendor = wire::values::is_vendor_name(&register.name);
    (!vendor || wire::values::is_vendor_value(value)).then_some(value)
}

/// Encodes an engineering value into the words the register holds (the inverse of
/// [`decode`]), rounding to the register's resolution and saturating at its type's range.
/// For `Bit`, the returned word has only that bit set or clear: merge it into the register.
pub fn encode(register: &Register, value: f64) -> Vec<u16> {
    let raw = (value - register.offset) / register.scale;
    let swap = |w: u16| match register.byte_order {
        ByteOrder::Big => w,
        ByteOrder::Little => w.swap_bytes(),
    };
    let split = |bits: u32| {
        let (hi, lo) = (swap((bits >> 16) as u16), swap(bits as u16));
        match register.word_order {
            WordOrder::Big => vec![hi, lo],
            WordOrder::Little => vec![lo, hi],
        }
    };
    // `as` casts from f64 saturate at the integer type's bounds (and map NaN to 0).
    match register.value_type {
        ValueType::U16 => vec![swap(raw.round() as u16)],
        ValueType::I16 => vec![swap(raw.round() as i16 as u16)],
        ValueType::U32 => split(raw.round() as u32),
        ValueType::I32 => split(raw.round() as i32 as u32),
        ValueType::F32 => split((raw as f32).to_bits()),
        ValueType::Bit => vec![swap(u16::from(raw.round() != 0.0) << register.bit)],
        ValueType::Bool => vec![u16::from(raw.round() != 0.0)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"
id = "test-hp"
brand = "Test"
model = "T-1"
kind = "heat_pump"
word_order = "little"

[[register]]
name = "indoor_temp_c"
kind = "input"
address = 10
type = "i16"
scale = 0.1
unit = "°C"

[[register]]
name = "energy_kwh"
kind = "input"
address = 11
type = "u32"
scale = 0.01

[[register]]
name = "electric_power_w"
kind = "holding"
address = 0
type = "f32"
word_order = "big"
byte_order = "little"

[[register]]
name = "running"
kind = "holding"
address = 5
type = "bit"
bit = 3

[[register]]
name = "defrost_active"
kind = "holding"
address = 5
type = "bit"
bit = 4

[[register]]
name = "setpoint_c"
kind = "holding"
address = 6
type = "u16"
scale = 0.5
writable = { min = 10.0, max = 28.0 }

[[register]]
name = "fault_code"
kind = "holding"
address = 7
type = "u16"

[[fault]]
code = 3
category = "water_flow"
text = "flow switch open"
"#;

    fn profile() -> Profile {
        Profile::parse(PROFILE, "test.toml").expect("test profile is valid")
    }

    #[test]
    fn every_type_and_order_round_trips() {
        let p = profile();
        for (name, value) in [
            ("indoor_temp_c", -12.3),
            ("energy_kwh", 123456.78),
            ("electric_power_w", 1234.5),
            ("running", 1.0),
            ("setpoint_c", 21.5),
        ] {
            let r = p.register(name).expect("mapped");
            let words = encode(r, value);
            let back = decode(r, &words).expect("decodes");
            assert!(
                (back - value).abs() < 1e-6,
                "{name}: {value} -> {words:?} -> {back}"
            );
        }
    }

    #[test]
    fn little_word_order_puts_the_low_word_first() {
        let p = profile();
        let r = p.register("energy_kwh").expect("mapped");
        // 70000 * 0.01 = 700.00 kWh; 70000 = 0x0001_1170.
        assert_eq!(encode(r, 700.0), vec![0x1170, 0x0001]);
        assert_eq!(decode(r, &[0x1170, 0x0001]), Some(700.0));
    }

    #[test]
    fn negative_i16_and_bits_decode() {
        let p = profile();
        assert_eq!(
            decode(p.register("indoor_temp_c").expect("mapped"), &[0xFF85]),
            Some(-12.3)
        );
        let running = p.register("running").expect("mapped");
        assert_eq!(decode(running, &[0b1000]), Some(1.0));
        assert_eq!(decode(running, &[0b1_0000]), Some(0.0));
    }

    #[test]
    fn faults_map_to_categories_and_unknown_codes_to_other() {
        let p = profile();
        assert_eq!(p.fault(0), None);
        assert_eq!(
            p.fault(3).map(|f| f.category),
            Some(FaultCategory::WaterFlow)
        );
        assert_eq!(p.fault(99).map(|f| f.category), Some(FaultCategory::Other));
        assert_eq!(p.code_for(FaultCategory::WaterFlow), Some(3));
    }

    fn error_of(edit: (&str, &str)) -> ProfileError {
        let text = PROFILE.replacen(edit.0, edit.1, 1);
        Profile::parse(&text, "bad.toml").expect_err("profile must be refused")
    }

    #[test]
    fn unknown_type_names_line_and_field() {
        let e = error_of(("type = \"i16\"", "type = \"i24\""));
        assert_eq!((e.origin.as_str(), e.line), ("bad.toml", 12));
        assert!(e.message.contains("i24"), "{e}");
    }

    #[test]
    fn overlapping_registers_are_refused() {
        let e = error_of(("address = 11", "address = 10"));
        assert_eq!((e.line, e.field.as_str()), (19, "register[1].address"));
        assert!(e.message.contains("overlaps register[0]"), "{e}");
    }

    #[test]
    fn duplicate_canonical_names_are_refused() {
        let e = error_of(("name = \"energy_kwh\"", "name = \"indoor_temp_c\""));
        assert_eq!(e.field, "register[1].name");
        assert!(
            e.to_string().starts_with("bad.toml:17:8: register[1].name"),
            "{e}"
        );
    }

    #[test]
    fn out_of_range_address_and_bad_names_are_refused() {
        let e = error_of(("address = 11", "address = 65535"));
        assert!(e.message.contains("past 65535"), "{e}");
        // Found by the fuzz bench: an address near u32::MAX overflowed the end computation.
        let e = error_of(("address = 11", "address = 4294967295"));
        assert!(e.message.contains("past 65535"), "{e}");
        let e = error_of(("name = \"energy_kwh\"", "name = \"energy\""));
        assert!(
            e.message
                .contains("neither a canonical value name nor a vendor value name"),
            "{e}"
        );
        let e = error_of(("unit = \"°C\"", "unit = \"°F\""));
        assert_eq!(e.field, "register[0].unit");
    }
}

#[cfg(test)]
mod vendor_values {
    use super::*;

    /// A canonical register, and two vendor values: a bit beside `running`'s and a scaled
    /// 32-bit register with a free-text unit.
    const PROFILE: &str = r#"
id = "vendor-hp"
brand = "Test"
model = "V-1"
kind = "heat_pump"

[[register]]
name = "running"
kind = "input"
address = 0
type = "bit"
bit = 0

[[register]]
name = "x_pump_on"
kind = "input"
address = 0
type = "bit"
bit = 1

[[register]]
name = "x_cop"
kind = "input"
address = 1
type = "i32"
scale = 0.001
unit = "W/W"
"#;

    fn error_of(edit: (&str, &str)) -> ProfileError {
        let text = PROFILE.replacen(edit.0, edit.1, 1);
        Profile::parse(&text, "vendor.toml").expect_err("profile must be refused")
    }

    #[test]
    fn a_register_maps_onto_a_vendor_value_and_decodes_like_the_others() {
        let p = Profile::parse(PROFILE, "vendor.toml").expect("vendor values are accepted");
        let cop = p.register("x_cop").expect("mapped");
        assert_eq!(cop.unit, "W/W", "a vendor value keeps the profile's unit");
        assert_eq!(p.register("running").map(|r| r.unit.as_str()), Some(""));
        // 3.412 = raw 3412 = 0x0000_0D54, high word first.
        assert_eq!(encode(cop, 3.412), vec![0x0000, 0x0D54]);
        assert_eq!(decode(cop, &[0x0000, 0x0D54]), Some(3.412));
        assert_eq!(decode(cop, &[0xFFFF, 0xFFFF]), Some(-0.001));
        let pump = p.register("x_pump_on").expect("mapped");
        assert_eq!(decode(pump, &[0b10]), Some(1.0));
        assert_eq!(decode(pump, &[0b01]), Some(0.0));
        assert_eq!(
            decode(p.register("running").expect("mapped"), &[0b01]),
            Some(1.0)
        );
        assert_eq!(reading_value(cop, &[0x0000, 0x0D54]), Some(3.412));
        // One poll merges them with the canonical register into one read.
        let plan = crate::plan::PollPlan::new(&p, 8);
        assert_eq!(plan.blocks.len(), 1, "{plan:?}");
    }

    #[test]
    fn a_vendor_value_past_its_bound_is_left_out_of_the_reading() {
        // A u32 scaled by 1000 reaches 4.3e12: past 1e9 it is not published (the gateway would
        // refuse the whole reading), below it it is.
        let text = PROFILE.replacen(
            "type = \"i32\"\nscale = 0.001",
            "type = \"u32\"\nscale = 1000.0",
            1,
        );
        let p = Profile::parse(&text, "vendor.toml").expect("valid");
        let cop = p.register("x_cop").expect("mapped");
        assert_eq!(reading_value(cop, &[0x0000, 0x03E8]), Some(1.0e6));
        assert_eq!(reading_value(cop, &[0x000F, 0x4240]), Some(1.0e9));
        assert_eq!(decode(cop, &[0xFFFF, 0xFFFF]), Some(4_294_967_295_000.0));
        assert_eq!(reading_value(cop, &[0xFFFF, 0xFFFF]), None);
        // A canonical value goes as decoded: its range is the gateway's to check.
        let running = p.register("running").expect("mapped");
        assert_eq!(reading_value(running, &[0b1]), Some(1.0));
    }

    #[test]
    fn a_vendor_name_is_x_and_lowercase_letters_digits_or_underscores() {
        for bad in ["x_", "x_COP", "x-cop", "cop", "x_co p", "vendor_cop"] {
            let e = error_of(("name = \"x_cop\"", &format!("name = {bad:?}")));
            assert_eq!(e.field, "register[2].name", "{bad:?}: {e}");
            assert!(
                e.to_string()
                    .starts_with("vendor.toml:22:8: register[2].name: "),
                "{e}"
            );
            assert!(e.message.contains("nor a vendor value name"), "{e}");
        }
        let long = format!("x_{}", "c".repeat(wire::values::MAX_VENDOR_NAME_LEN + 1));
        let e = error_of(("name = \"x_cop\"", &format!("name = {long:?}")));
        assert_eq!(e.field, "register[2].name");
    }

    #[test]
    fn a_vendor_name_mapped_twice_is_refused_with_its_line() {
        let e = error_of(("name = \"x_cop\"", "name = \"x_pump_on\""));
        assert_eq!(e.field, "register[2].name");
        assert_eq!(
            e.to_string(),
            "vendor.toml:22:8: register[2].name: \"x_pump_on\" is already mapped by register[1]"
        );
    }

    #[test]
    fn a_profile_maps_at_most_as_many_vendor_values_as_a_reading_carries() {
        let register = |i: usize| {
            format!(
                "\n[[register]]\nname = \"x_r{i:02}\"\nkind = \"holding\"\naddress = {i}\ntype = \"u16\"\n"
            )
        };
        // x_cop and x_pump_on are two: 30 more make the most a reading carries.
        let mut text = PROFILE.to_owned();
        for i in 0..wire::values::MAX_VENDOR_VALUES - 2 {
            text.push_str(&register(i));
        }
        let p = Profile::parse(&text, "vendor.toml").expect("32 vendor values");
        let vendor = p
            .registers
            .iter()
            .filter(|r| wire::values::is_vendor_name(&r.name))
            .count();
        assert_eq!(vendor, wire::values::MAX_VENDOR_VALUES);
        text.push_str(&register(99));
        let e = Profile::parse(&text, "vendor.toml").expect_err("33 vendor values");
        assert_eq!(e.field, format!("register[{}].name", 3 + 30));
        assert!(
            e.message.contains("\"x_r99\" is one vendor value too many"),
            "{e}"
        );
        assert!(e.message.contains("at most 32"), "{e}");
    }
}

#[cfg(test)]
mod shipped_profiles {
    use super::*;

    #[test]
    fn every_shipped_profile_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("profiles folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                let p = Profile::load(&path).unwrap_or_else(|e| panic!("{e}"));
                assert!(p.code_for(FaultCategory::SensorFault).is_some(), "{}", p.id);
                count += 1;
            }
        }
        assert!(
            count >= 4,
            "expected at least four shipped profiles, found {count}"
        );
    }
}
