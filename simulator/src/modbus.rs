//! Modbus TCP serving: each household answers on its own listener with a register image
//! encoded, on every request, from the model's current values through the household's
//! register-map profile.
//!
//! Behaviour a client can rely on:
//! - Any unit id is answered (a Modbus TCP device is addressed by its IP and port; the unit id
//!   matters only behind a serial gateway). The manifest advertises [`UNIT_ID`] = 1.
//! - A read is legal when its first and its last address each fall inside a mapped register of
//!   that table; unmapped gaps in between read as 0, so a poller may merge nearby registers
//!   into one request. Anything else is `IllegalDataAddress`; a zero or over-long quantity is
//!   `IllegalDataValue`.
//! - Writes (single/multiple registers and coils) must cover whole registers that the profile
//!   marks `writable`, with values inside the profile's bounds; they update the model (the set
//!   point). Other addresses are `IllegalDataAddress`, out-of-bounds values `IllegalDataValue`.
//! - Every other function is `IllegalFunction`. Requests are counted per function.

use std::collections::BTreeMap;
use std::future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use edge_agent::profile::{decode, encode, Profile, RegisterKind, ValueType};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::tcp::Server;
use tokio_modbus::server::Service;
use tokio_util::sync::CancellationToken;

use crate::sim::Household;

/// The unit id the manifest advertises. Every unit id is answered.
pub const UNIT_ID: u8 = 1;

/// Most registers one write request may carry (Modbus application protocol 6.12).
const MAX_WRITE_REGISTERS: usize = 123;
/// Most coils one write request may carry (Modbus application protocol 6.11).
const MAX_WRITE_COILS: usize = 1968;

/// Where each register of a profile sits, table by table, for serving requests.
#[derive(Debug, Clone)]
pub struct RegisterMap {
    profile: Arc<Profile>,
    /// Per table (coil, discrete, input, holding): (first address, end address, register index).
    tables: [Vec<(u32, u32, usize)>; 4],
}

fn table_index(kind: RegisterKind) -> usize {
    match kind {
        RegisterKind::Coil => 0,
        RegisterKind::Discrete => 1,
        RegisterKind::Input => 2,
        RegisterKind::Holding => 3,
    }
}

/// A change a write request asks of the model: a canonical name and its new value.
pub type Write = (String, f64);

impl RegisterMap {
    /// Indexes a profile's registers.
    pub fn new(profile: Arc<Profile>) -> RegisterMap {
        let mut tables: [Vec<(u32, u32, usize)>; 4] = Default::default();
        for (index, register) in profile.registers.iter().enumerate() {
            let span = register.span();
            tables[table_index(register.kind)].push((span.start, span.end, index));
        }
        for table in &mut tables {
            table.sort_unstable();
        }
        RegisterMap { profile, tables }
    }

    /// The profile this map serves.
    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    fn slots(&self, kind: RegisterKind) -> &[(u32, u32, usize)] {
        &self.tables[table_index(kind)]
    }

    fn covered(&self, kind: RegisterKind, address: u32) -> bool {
        self.slots(kind)
            .iter()
            .any(|&(start, end, _)| (start..end).contains(&address))
    }

    /// Checks a read's quantity and addresses, returning its end address.
    fn check_read(&self, kind: RegisterKind, start: u16, count: u16) -> Result<u32, ExceptionCode> {
        if count == 0 || count > kind.max_per_read() {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let (first, end) = (u32::from(start), u32::from(start) + u32::from(count));
        if end > 65_536 || !self.covered(kind, first) || !self.covered(kind, end - 1) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(end)
    }

    /// The words of an input or holding register range, encoded from `values`.
    pub fn read_words(
        &self,
        kind: RegisterKind,
        start: u16,
        count: u16,
        values: &BTreeMap<&'static str, f64>,
    ) -> Result<Vec<u16>, ExceptionCode> {
        if kind.is_bit() {
            return Err(ExceptionCode::IllegalFunction);
        }
        let end = self.check_read(kind, start, count)?;
        let first = u32::from(start);
        let mut words = vec![0u16; usize::from(count)];
        for &(reg_start, reg_end, index) in self.slots(kind) {
            if reg_end <= first || reg_start >= end {
                continue;
            }
            let register = &self.profile.registers[index];
            let encoded = match values.get(register.name.as_str()) {
                Some(value) => encode(register, *value),
                None => vec![0; usize::from(register.value_type.width())],
            };
            for (offset, word) in encoded.into_iter().enumerate() {
                let address = reg_start + offset as u32;
                if !(first..end).contains(&address) {
                    continue;
                }
                let slot = &mut words[(address - first) as usize];
                if register.value_type == ValueType::Bit {
                    *slot |= word;
                } else {
                    *slot = word;
                }
            }
        }
        Ok(words)
    }

    /// The bits of a coil or discrete-input range, encoded from `values`.
    pub fn read_bits(
        &self,
        kind: RegisterKind,
        start: u16,
        count: u16,
        values: &BTreeMap<&'static str, f64>,
    ) -> Result<Vec<bool>, ExceptionCode> {
        if !kind.is_bit() {
            return Err(ExceptionCode::IllegalFunction);
        }
        let end = self.check_read(kind, start, count)?;
        let first = u32::from(start);
        let mut bits = vec![false; usize::from(count)];
        for &(reg_start, _, index) in self.slots(kind) {
            if !(first..end).contains(&reg_start) {
                continue;
            }
            let register = &self.profile.registers[index];
            let value = values.get(register.name.as_str()).copied().unwrap_or(0.0);
            let word = encode(register, value).first().copied().unwrap_or(0);
            bits[(reg_start - first) as usize] = word != 0;
        }
        Ok(bits)
    }

    /// The registers a write touches, checked: every address must belong to a writable
    /// register of `kind` that lies wholly inside the write.
    fn writable_targets(
        &self,
        kind: RegisterKind,
        start: u16,
        count: usize,
    ) -> Result<Vec<(u32, usize)>, ExceptionCode> {
        let (first, end) = (u32::from(start), u32::from(start) + count as u32);
        if end > 65_536 {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        let mut targets = Vec::new();
        for &(reg_start, reg_end, index) in self.slots(kind) {
            if reg_end <= first || reg_start >= end {
                continue;
            }
            let register = &self.profile.registers[index];
            if register.writable.is_none() || reg_start < first || reg_end > end {
                return Err(ExceptionCode::IllegalDataAddress);
            }
            targets.push((reg_start, index));
        }
        if !(first..end).all(|address| self.covered(kind, address)) {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(targets)
    }

    fn bounded(&self, index: usize, value: Option<f64>) -> Result<Write, ExceptionCode> {
        let register = &self.profile.registers[index];
        let value = value.ok_or(ExceptionCode::IllegalDataValue)?;
        match register.writable {
            Some(bounds) if (bounds.min..=bounds.max).contains(&value) => {
                Ok((register.name.clone(), value))
            }
            Some(_) => Err(ExceptionCode::IllegalDataValue),
            None => Err(ExceptionCode::IllegalDataAddress),
        }
    }

    /// Decodes a holding-register write into canonical values, checked against the profile.
    pub fn decode_register_write(
        &self,
        start: u16,
        words: &[u16],
    ) -> Result<Vec<Write>, ExceptionCode> {
        if words.is_empty() || words.len() > MAX_WRITE_REGISTERS {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let targets = self.writable_targets(RegisterKind::Holding, start, words.len())?;
        targets
            .into_iter()
            .map(|(reg_start, index)| {
                let offset = (reg_start - u32::from(start)) as usize;
                let register = &self.profile.registers[index];
                self.bounded(index, decode(register, &words[offset..]))
            })
            .collect()
    }

    /// Decodes a coil write into canonical values, checked against the profile.
    pub fn decode_coil_write(
        &self,
        start: u16,
        bits: &[bool],
    ) -> Result<Vec<Write>, ExceptionCode> {
        if bits.is_empty() || bits.len() > MAX_WRITE_COILS {
            return Err(ExceptionCode::IllegalDataValue);
        }
        let targets = self.writable_targets(RegisterKind::Coil, start, bits.len())?;
        targets
            .into_iter()
            .map(|(reg_start, index)| {
                let offset = (reg_start - u32::from(start)) as usize;
                let register = &self.profile.registers[index];
                let word = u16::from(bits[offset]);
                self.bounded(index, decode(register, &[word]))
            })
            .collect()
    }
}

/// How many requests of each function a household has received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub read_coils: u64,
    pub read_discrete_inputs: u64,
    pub read_holding_registers: u64,
    pub read_input_registers: u64,
    pub write_single_coil: u64,
    pub write_multiple_coils: u64,
    pub write_single_register: u64,
    pub write_multiple_registers: u64,
    /// Requests of any other function (all answered with `IllegalFunction`).
    pub other: u64,
    /// Requests answered with a Modbus exception, whatever their function.
    pub exceptions: u64,
}

impl RequestCounts {
    /// All read requests (the four read functions).
    pub fn reads(&self) -> u64 {
        self.read_coils
            + self.read_discrete_inputs
            + self.read_holding_registers
            + self.read_input_registers
    }

    /// All requests.
    pub fn total(&self) -> u64 {
        self.reads()
            + self.write_single_coil
            + self.write_multiple_coils
            + self.write_single_register
            + self.write_multiple_registers
            + self.other
    }
}

/// Lock-free request counters of one household.
#[derive(Debug, Default)]
pub struct RequestCounters {
    by_function: [AtomicU64; 9],
    exceptions: AtomicU64,
}

fn function_slot(request: &Request<'_>) -> usize {
    match request {
        Request::ReadCoils(..) => 0,
        Request::ReadDiscreteInputs(..) => 1,
        Request::ReadHoldingRegisters(..) => 2,
        Request::ReadInputRegisters(..) => 3,
        Request::WriteSingleCoil(..) => 4,
        Request::WriteMultipleCoils(..) => 5,
        Request::WriteSingleRegister(..) => 6,
        Request::WriteMultipleRegisters(..) => 7,
        _ => 8,
    }
}

impl RequestCounters {
    fn record(&self, request: &Request<'_>) {
        self.by_function[function_slot(request)].fetch_add(1, Ordering::Relaxed);
    }

    fn record_exception(&self) {
        self.exceptions.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> RequestCounts {
        let n = |i: usize| self.by_function[i].load(Ordering::Relaxed);
        RequestCounts {
            read_coils: n(0),
            read_discrete_inputs: n(1),
            read_holding_registers: n(2),
            read_input_registers: n(3),
            write_single_coil: n(4),
            write_multiple_coils: n(5),
            write_single_register: n(6),
            write_multiple_registers: n(7),
            other: n(8),
            exceptions: self.exceptions.load(Ordering::Relaxed),
        }
    }
}

/// The Modbus service of one household (one per connection, all sharing the household).
#[derive(Debug, Clone)]
pub struct HouseholdService {
    household: Arc<Household>,
}

impl HouseholdService {
    pub(crate) fn new(household: Arc<Household>) -> HouseholdService {
        HouseholdService { household }
    }

    fn handle(&self, request: &Request<'_>) -> Result<Response, ExceptionCode> {
        let map = &self.household.registers;
        match request {
            Request::ReadCoils(start, count) => {
                let values = self.household.values();
                map.read_bits(RegisterKind::Coil, *start, *count, &values)
                    .map(Response::ReadCoils)
            }
            Request::ReadDiscreteInputs(start, count) => {
                let values = self.household.values();
                map.read_bits(RegisterKind::Discrete, *start, *count, &values)
                    .map(Response::ReadDiscreteInputs)
            }
            Request::ReadInputRegisters(start, count) => {
                let values = self.household.values();
                map.read_words(RegisterKind::Input, *start, *count, &values)
                    .map(Response::ReadInputRegisters)
            }
            Request::ReadHoldingRegisters(start, count) => {
                let values = self.household.values();
                map.read_words(RegisterKind::Holding, *start, *count, &values)
                    .map(Response::ReadHoldingRegisters)
            }
            Request::WriteSingleRegister(address, word) => {
                let writes = map.decode_register_write(*address, &[*word])?;
                self.household.apply_writes(&writes)?;
                Ok(Response::WriteSingleRegister(*address, *word))
            }
            Request::WriteMultipleRegisters(address, words) => {
                let writes = map.decode_register_write(*address, words)?;
                self.household.apply_writes(&writes)?;
                Ok(Response::WriteMultipleRegisters(
                    *address,
                    words.len() as u16,
                ))
            }
            Request::WriteSingleCoil(address, bit) => {
                let writes = map.decode_coil_write(*address, &[*bit])?;
                self.household.apply_writes(&writes)?;
                Ok(Response::WriteSingleCoil(*address, *bit))
            }
            Request::WriteMultipleCoils(address, bits) => {
                let writes = map.decode_coil_write(*address, bits)?;
                self.household.apply_writes(&writes)?;
                Ok(Response::WriteMultipleCoils(*address, bits.len() as u16))
            }
            _ => Err(ExceptionCode::IllegalFunction),
        }
    }
}

impl Service for HouseholdService {
    type Request = SlaveRequest<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = future::Ready<Result<Response, ExceptionCode>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let SlaveRequest { slave, request } = request;
        self.household.requests.record(&request);
        let result = self.handle(&request);
        if let Err(exception) = &result {
            self.household.requests.record_exception();
            tracing::debug!(
                device_id = %self.household.info.device_id,
                unit_id = slave,
                function = %request.function_code(),
                ?exception,
                "Modbus request answered with an exception"
            );
        }
        future::ready(result)
    }
}

/// Serves one household on `listener` until `shutdown`. Accept errors (e.g. out of file
/// descriptors) are logged and the listener is served again after a short pause.
pub(crate) async fn serve(
    listener: TcpListener,
    household: Arc<Household>,
    shutdown: CancellationToken,
) {
    let device_id = household.info.device_id.clone();
    let service = Arc::new(HouseholdService::new(household));
    let server = Server::new(listener);
    let on_connected = |stream: tokio::net::TcpStream, peer: std::net::SocketAddr| {
        let service = Arc::clone(&service);
        let device_id = device_id.clone();
        async move {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%device_id, %peer, %error, "could not disable Nagle's algorithm");
            }
            tracing::debug!(%device_id, %peer, "Modbus client connected");
            Ok(Some((service, stream)))
        }
    };
    let on_process_error = {
        let device_id = device_id.clone();
        move |error: io::Error| {
            tracing::debug!(%device_id, %error, "Modbus connection closed with an error");
        }
    };
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            result = server.serve(&on_connected, on_process_error.clone()) => {
                if let Err(error) = result {
                    tracing::warn!(%device_id, %error, "Modbus listener failed to accept; retrying");
                }
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    }
    tracing::debug!(%device_id, "Modbus listener stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"
id = "map-test"
brand = "T"
model = "T"
kind = "heat_pump"

[[register]]
name = "running"
kind = "input"
address = 10
type = "bit"
bit = 0

[[register]]
name = "defrost_active"
kind = "input"
address = 10
type = "bit"
bit = 3

[[register]]
name = "energy_kwh"
kind = "input"
address = 12
type = "u32"
scale = 0.1

[[register]]
name = "setpoint_c"
kind = "holding"
address = 0
type = "i16"
scale = 0.1
writable = { min = 10.0, max = 28.0 }

[[register]]
name = "fault_code"
kind = "holding"
address = 1
type = "u16"

[[register]]
name = "flame_on"
kind = "discrete"
address = 3
type = "bool"
"#;

    fn map() -> RegisterMap {
        RegisterMap::new(Arc::new(
            Profile::parse(PROFILE, "test").expect("valid profile"),
        ))
    }

    fn values() -> BTreeMap<&'static str, f64> {
        BTreeMap::from([
            ("running", 1.0),
            ("defrost_active", 1.0),
            ("energy_kwh", 7000.0),
            ("setpoint_c", 20.5),
            ("fault_code", 3.0),
            ("flame_on", 1.0),
        ])
    }

    #[test]
    fn bits_merge_into_one_word_and_gaps_read_as_zero() {
        let words = map()
            .read_words(RegisterKind::Input, 10, 4, &values())
            .expect("legal read");
        assert_eq!(words, vec![0b1001, 0, 1, 0x1170]);
    }

    #[test]
    fn reads_must_start_and_end_on_mapped_registers() {
        let map = map();
        let read = |start, count| map.read_words(RegisterKind::Input, start, count, &values());
        assert_eq!(read(11, 1), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(read(10, 5), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(read(65_535, 2), Err(ExceptionCode::IllegalDataAddress));
        assert_eq!(read(10, 0), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(read(10, 126), Err(ExceptionCode::IllegalDataValue));
        assert_eq!(
            read(13, 1).map(|w| w.len()),
            Ok(1),
            "the low word of a u32 alone"
        );
    }

    #[test]
    fn discrete_inputs_read_as_bits() {
        let bits = map()
            .read_bits(RegisterKind::Discrete, 3, 1, &values())
            .expect("legal read");
        assert_eq!(bits, vec![true]);
        assert_eq!(
            map().read_bits(RegisterKind::Coil, 3, 1, &values()),
            Err(ExceptionCode::IllegalDataAddress)
        );
    }

    #[test]
    fn writes_must_hit_writable_registers_within_bounds() {
        let map = map();
        let writes = map.decode_register_write(0, &[215]).expect("legal write");
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].0, "setpoint_c");
        assert!((writes[0].1 - 21.5).abs() < 1e-9);
        assert_eq!(
            map.decode_register_write(0, &[500]),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(
            map.decode_register_write(1, &[0]),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            map.decode_register_write(0, &[215, 0]),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            map.decode_register_write(9, &[1]),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            map.decode_coil_write(0, &[true]),
            Err(ExceptionCode::IllegalDataAddress)
        );
    }
}
