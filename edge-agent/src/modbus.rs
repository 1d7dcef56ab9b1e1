//! The Modbus side of the agent: one [`DevicePoller`] per device reads the planned blocks and
//! decodes them with the profile, over Modbus TCP or Modbus RTU (a serial RS-485 bus shared by
//! several unit ids; the bus task lends its one connection to each device in turn through
//! [`DevicePoller::poll_on`], and every request on it keeps the bus's inter-frame gap and
//! counts towards its utilisation through the shared [`BusLine`]). Keeps tokio-modbus's two
//! error layers apart: a device's Modbus exception is not a broken link, and only a broken link
//! drops the connection (on a shared bus a silent slave is not a broken port: its timeout keeps
//! the port open for the others). A freshly opened port or connection gets a warm-up pause.

use std::sync::Arc;
use std::time::Duration;

use tokio_modbus::client::{Context, Reader, Writer};
use tokio_modbus::slave::SlaveContext;
use tokio_modbus::{ExceptionCode, Slave};
use wire::Fault;

use crate::bus::BusLine;
use crate::config::{BusConfig, Device, Parity, TransportConfig};
use crate::plan::{Block, PollPlan};
use crate::profile::{
    decode, encode, reading_value, FaultReset, Register, RegisterKind, ValueType,
};

/// What went wrong talking to a device, by kind (the `kind` label of the error counters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("connection refused or lost: {0}")]
    Connect(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("Modbus exception {0:?}")]
    Exception(ExceptionCode),
    #[error("transport error: {0}")]
    Transport(String),
    /// A response that arrived damaged: bad CRC, bad framing, or a reply to another request.
    #[error("damaged response (CRC or framing): {0}")]
    Framing(String),
    #[error("response has {got} items, expected {expected}")]
    ShortResponse { expected: usize, got: usize },
}

impl DeviceError {
    /// Every kind, for metrics and health reports.
    pub const KINDS: [&'static str; 6] = [
        "connect",
        "timeout",
        "exception",
        "transport",
        "framing",
        "short_response",
    ];

    /// Stable label for metrics and health reports.
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceError::Connect(_) => "connect",
            DeviceError::Timeout(_) => "timeout",
            DeviceError::Exception(_) => "exception",
            DeviceError::Transport(_) => "transport",
            DeviceError::Framing(_) => "framing",
            DeviceError::ShortResponse { .. } => "short_response",
        }
    }

    /// True when the device did not answer properly, so the rest of its cycle is skipped.
    fn ends_cycle(&self) -> bool {
        matches!(
            self,
            DeviceError::Connect(_)
                | DeviceError::Timeout(_)
                | DeviceError::Transport(_)
                | DeviceError::Framing(_)
        )
    }

    /// True when the connection should be rebuilt. On a shared serial line (`shared`) a
    /// timeout is one slave's silence, not a broken port.
    fn drops_connection(&self, shared: bool) -> bool {
        match self {
            DeviceError::Timeout(_) => !shared,
            other => other.ends_cycle(),
        }
    }

    fn from_transport(error: tokio_modbus::Error) -> DeviceError {
        match error {
            tokio_modbus::Error::Protocol(protocol) => DeviceError::Framing(protocol.to_string()),
            tokio_modbus::Error::Transport(io) if io.kind() == std::io::ErrorKind::InvalidData => {
                DeviceError::Framing(io.to_string())
            }
            tokio_modbus::Error::Transport(io) => DeviceError::Transport(io.to_string()),
        }
    }
}

/// One poll's result: the decoded values, the active fault, and per-block errors.
#[derive(Debug, Clone, PartialEq)]
pub struct PollResult {
    pub values: wire::Values,
    pub fault: Option<Fault>,
    /// Errors of blocks that failed; the other blocks' values are still in `values`.
    pub errors: Vec<(Block, DeviceError)>,
    /// Read requests sent in this cycle.
    pub requests: usize,
}

/// Polls one device: keeps its plan, and for Modbus TCP its connection.
pub struct DevicePoller {
    device: Device,
    plan: PollPlan,
    timeout: Duration,
    /// Pause after opening the connection or port, before the first request.
    warm_up: Duration,
    /// The RS-485 line's gap and counters (shared by the bus's devices); none for TCP.
    line: Option<Arc<BusLine>>,
    bus: Option<BusConfig>,
    context: Option<Context>,
}

impl DevicePoller {
    pub fn new(device: Device, max_gap: u16, timeout: Duration) -> Self {
        let plan = PollPlan::new(&device.profile, max_gap);
        Self {
            device,
            plan,
            timeout,
            warm_up: Duration::ZERO,
            line: None,
            bus: None,
            context: None,
        }
    }

    /// Sets the pause after opening a connection (`polling.warm_up` for Modbus TCP).
    pub fn with_warm_up(mut self, warm_up: Duration) -> Self {
        self.warm_up = warm_up;
        self
    }

    /// Puts an RTU device on its bus: the bus's response timeout, inter-frame gap and warm-up
    /// apply, and [`DevicePoller::poll`] opens the serial port itself (for `check`). The line's
    /// timing is this poller's own until [`DevicePoller::on_line`] shares one.
    pub fn on_bus(mut self, bus: &BusConfig) -> Self {
        self.timeout = bus.timeout;
        self.warm_up = bus.warm_up;
        self.line = Some(Arc::new(BusLine::new(
            &bus.name,
            bus.silence(),
            bus.warm_up,
        )));
        self.bus = Some(bus.clone());
        self
    }

    /// Shares `line` (the gap since the last frame of any device on the bus, the counters).
    pub fn on_line(mut self, line: Arc<BusLine>) -> Self {
        self.line = Some(line);
        self
    }

    /// The bus line this poller uses, if it is on one.
    pub fn line(&self) -> Option<&Arc<BusLine>> {
        self.line.as_ref()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn plan(&self) -> &PollPlan {
        &self.plan
    }

    /// Opens the device's link: a TCP connection, or the serial port of its bus.
    pub async fn connect(&mut self) -> Result<Context, DeviceError> {
        let slave = Slave(self.device.unit_id);
        match &self.device.transport {
            TransportConfig::Tcp { address } => {
                let stream =
                    tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(*address))
                        .await
                        .map_err(|_| DeviceError::Timeout(self.timeout))?
                        .map_err(|e| DeviceError::Connect(e.to_string()))?;
                // One small request, one small response: no Nagle delay.
                let _ = stream.set_nodelay(true);
                Ok(tokio_modbus::client::tcp::attach_slave(stream, slave))
            }
            TransportConfig::Rtu { bus: name } => {
                let bus = self.bus.as_ref().ok_or_else(|| {
                    DeviceError::Connect(format!("bus {name:?} is not configured"))
                })?;
                open_serial(bus).map(|port| tokio_modbus::client::rtu::attach_slave(port, slave))
            }
        }
    }

    async fn link<'a>(
        &mut self,
        link: &'a mut Option<Context>,
    ) -> Result<&'a mut Context, DeviceError> {
        if link.is_none() {
            let context = self.connect().await?;
            if let Some(line) = &self.line {
                line.opened();
            }
            if !self.warm_up.is_zero() {
                tracing::debug!(device = %self.device.id, warm_up_ms = self.warm_up.as_millis() as u64, "link opened; warming up");
                tokio::time::sleep(self.warm_up).await;
            }
            *link = Some(context);
        }
        let context = link
            .as_mut()
            .ok_or_else(|| DeviceError::Connect("no connection".into()))?;
        context.set_slave(Slave(self.device.unit_id));
        Ok(context)
    }

    /// Runs one request with the timeout, after the bus's inter-frame gap; drops the link when
    /// it is suspect.
    async fn request<T, F>(&mut self, link: &mut Option<Context>, call: F) -> Result<T, DeviceError>
    where
        F: for<'c> FnOnce(
            &'c mut Context,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<Result<T, ExceptionCode>, tokio_modbus::Error>,
                    > + Send
                    + 'c,
            >,
        >,
    {
        let line = self.line.clone();
        let context = self.link(link).await?;
        if let Some(line) = &line {
            line.wait_clear().await;
        }
        let started = tokio::time::Instant::now();
        let result = match tokio::time::timeout(self.timeout, call(context)).await {
            Err(_) => Err(DeviceError::Timeout(self.timeout)),
            Ok(Err(transport)) => Err(DeviceError::from_transport(transport)),
            Ok(Ok(Err(exception))) => Err(DeviceError::Exception(exception)),
            Ok(Ok(Ok(value))) => Ok(value),
        };
        if let Some(line) = &line {
            let timed_out = matches!(result, Err(DeviceError::Timeout(_)));
            line.transaction(started, tokio::time::Instant::now(), timed_out);
        }
        if let Err(error) = &result {
            if error.drops_connection(line.is_some()) {
                *link = None;
            }
        }
        result
    }

    async fn read_block(
        &mut self,
        link: &mut Option<Context>,
        block: Block,
    ) -> Result<Vec<u16>, DeviceError> {
        let (start, count) = (block.start, block.count);
        let words = self
            .request(link, move |context| {
                Box::pin(async move {
                    match block.kind {
                        RegisterKind::Holding => context.read_holding_registers(start, count).await,
                        RegisterKind::Input => context.read_input_registers(start, count).await,
                        RegisterKind::Coil => context
                            .read_coils(start, count)
                            .await
                            .map(|r| r.map(bits_to_words)),
                        RegisterKind::Discrete => context
                            .read_discrete_inputs(start, count)
                            .await
                            .map(|r| r.map(bits_to_words)),
                    }
                })
            })
            .await?;
        if words.len() < usize::from(count) {
            return Err(DeviceError::ShortResponse {
                expected: usize::from(count),
                got: words.len(),
            });
        }
        Ok(words)
    }

    /// Reads every block once over the poller's own connection (Modbus TCP, or the serial port
    /// opened for this device alone).
    pub async fn poll(&mut self) -> Result<PollResult, DeviceError> {
        let mut link = self.context.take();
        let result = self.poll_on(&mut link).await;
        self.context = link;
        result
    }

    /// Reads every block once over `link` (opened if `None`). A block that fails with a Modbus
    /// exception does not discard the others; a broken link or an unanswered request ends the
    /// cycle (so a dead slave costs its bus one timeout a cycle). Returns `Err` only when no
    /// block could be read.
    pub async fn poll_on(&mut self, link: &mut Option<Context>) -> Result<PollResult, DeviceError> {
        let mut data: Vec<Option<Vec<u16>>> = vec![None; self.plan.blocks.len()];
        let mut errors = Vec::new();
        let mut requests = 0;
        for (index, block) in self.plan.blocks.clone().into_iter().enumerate() {
            requests += 1;
            match self.read_block(link, block).await {
                Ok(words) => data[index] = Some(words),
                Err(error) => {
                    let fatal = error.ends_cycle();
                    errors.push((block, error));
                    if fatal {
                        break;
                    }
                }
            }
        }
        if data.iter().all(Option::is_none) {
            let first = errors
                .into_iter()
                .next()
                .map(|(_, e)| e)
                .unwrap_or_else(|| DeviceError::Connect("profile has no registers".into()));
            return Err(first);
        }
        let profile = &self.device.profile;
        let mut values = wire::Values::with_capacity(profile.registers.len());
        for (register, (block, offset)) in profile.registers.iter().zip(&self.plan.slots) {
            let Some(Some(words)) = data.get(*block) else {
                continue;
            };
            if let Some(value) = words
                .get(*offset..)
                .and_then(|w| reading_value(register, w))
            {
                values.insert(&register.name, value);
            }
        }
        let fault = values
            .get(wire::values::FAULT_CODE)
            .and_then(|code| profile.fault(code as u32));
        Ok(PollResult {
            values,
            fault,
            errors,
            requests,
        })
    }

    /// Reads one register and decodes it.
    pub async fn read_register(
        &mut self,
        link: &mut Option<Context>,
        register: &Register,
    ) -> Result<f64, DeviceError> {
        let block = Block {
            kind: register.kind,
            start: register.address,
            count: register.value_type.width(),
        };
        let words = self.read_block(link, block).await?;
        decode(register, &words).ok_or(DeviceError::ShortResponse {
            expected: usize::from(block.count),
            got: words.len(),
        })
    }

    /// Writes `value` (engineering units) into `register` and reads it back; returns the value
    /// read back. The caller checks the register is writable and the value in bounds.
    pub async fn write_on(
        &mut self,
        link: &mut Option<Context>,
        register: &Register,
        value: f64,
    ) -> Result<f64, DeviceError> {
        let address = register.address;
        let words = encode(register, value);
        match (register.kind, register.value_type) {
            (RegisterKind::Coil, _) => {
                let on = words.first().copied().unwrap_or(0) != 0;
                self.request(link, move |c| {
                    Box::pin(async move { c.write_single_coil(address, on).await })
                })
                .await?;
            }
            (RegisterKind::Holding, ValueType::Bit) => {
                // Read-modify-write of the one bit, in the register's wire byte order.
                let block = Block {
                    kind: RegisterKind::Holding,
                    start: address,
                    count: 1,
                };
                let current = self
                    .read_block(link, block)
                    .await?
                    .first()
                    .copied()
                    .unwrap_or(0);
                let mask = encode(register, 1.0).first().copied().unwrap_or(0);
                let word = if words.first().copied().unwrap_or(0) != 0 {
                    current | mask
                } else {
                    current & !mask
                };
                self.request(link, move |c| {
                    Box::pin(async move { c.write_single_register(address, word).await })
                })
                .await?;
            }
            (RegisterKind::Holding, _) if words.len() == 1 => {
                let word = words.first().copied().unwrap_or(0);
                self.request(link, move |c| {
                    Box::pin(async move { c.write_single_register(address, word).await })
                })
                .await?;
            }
            (RegisterKind::Holding, _) => {
                self.request(link, move |c| {
                    Box::pin(async move { c.write_multiple_registers(address, &words).await })
                })
                .await?;
            }
            (RegisterKind::Input | RegisterKind::Discrete, _) => {
                return Err(DeviceError::Exception(ExceptionCode::IllegalFunction));
            }
        }
        self.read_register(link, register).await
    }

    /// Writes the profile's fault-reset value; returns the fault code read afterwards, if the
    /// profile maps one.
    pub async fn reset_fault_on(
        &mut self,
        link: &mut Option<Context>,
        reset: &FaultReset,
    ) -> Result<Option<f64>, DeviceError> {
        let (address, value) = (reset.address, reset.value);
        match reset.kind {
            RegisterKind::Coil => {
                self.request(link, move |c| {
                    Box::pin(async move { c.write_single_coil(address, value != 0).await })
                })
                .await?
            }
            _ => {
                self.request(link, move |c| {
                    Box::pin(async move { c.write_single_register(address, value).await })
                })
                .await?
            }
        }
        match self
            .device
            .profile
            .register(wire::values::FAULT_CODE)
            .cloned()
        {
            Some(register) => Ok(Some(self.read_register(link, &register).await?)),
            None => Ok(None),
        }
    }

    /// [`DevicePoller::write_on`] over the poller's own connection.
    pub async fn write(&mut self, register: &Register, value: f64) -> Result<f64, DeviceError> {
        let mut link = self.context.take();
        let result = self.write_on(&mut link, register, value).await;
        self.context = link;
        result
    }
}

/// Opens a bus's serial port with its line settings.
pub fn open_serial(bus: &BusConfig) -> Result<tokio_serial::SerialStream, DeviceError> {
    let builder = tokio_serial::new(&bus.port, bus.baud)
        .data_bits(match bus.data_bits {
            5 => tokio_serial::DataBits::Five,
            6 => tokio_serial::DataBits::Six,
            7 => tokio_serial::DataBits::Seven,
            _ => tokio_serial::DataBits::Eight,
        })
        .parity(match bus.parity {
            Parity::None => tokio_serial::Parity::None,
            Parity::Even => tokio_serial::Parity::Even,
            Parity::Odd => tokio_serial::Parity::Odd,
        })
        .stop_bits(if bus.stop_bits == 2 {
            tokio_serial::StopBits::Two
        } else {
            tokio_serial::StopBits::One
        })
        .timeout(bus.timeout);
    tokio_serial::SerialStream::open(&builder)
        .map_err(|e| DeviceError::Connect(format!("serial port {}: {e}", bus.port)))
}

fn bits_to_words(bits: Vec<bool>) -> Vec<u16> {
    bits.into_iter().map(u16::from).collect()
}
