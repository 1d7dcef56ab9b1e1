//! The Modbus side of the agent: one [`DevicePoller`] per device reads the planned blocks and
//! decodes them with the profile. Keeps tokio-modbus's two error layers apart: a device's Modbus
//! exception is not a broken link, and only a broken link drops the connection.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_modbus::client::{Context, Reader};
use tokio_modbus::{ExceptionCode, Slave};
use wire::Fault;

use crate::config::{Device, TransportConfig};
use crate::plan::{Block, PollPlan};
use crate::profile::{decode, RegisterKind};

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
    #[error("response has {got} items, expected {expected}")]
    ShortResponse { expected: usize, got: usize },
}

impl DeviceError {
    /// Stable label for metrics and health reports.
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceError::Connect(_) => "connect",
            DeviceError::Timeout(_) => "timeout",
            DeviceError::Exception(_) => "exception",
            DeviceError::Transport(_) => "transport",
            DeviceError::ShortResponse { .. } => "short_response",
        }
    }

    /// True when the link itself is suspect and the connection should be rebuilt.
    fn breaks_link(&self) -> bool {
        matches!(
            self,
            DeviceError::Connect(_) | DeviceError::Timeout(_) | DeviceError::Transport(_)
        )
    }
}

/// One poll's result: the decoded values, the active fault, and per-block errors.
#[derive(Debug, Clone, PartialEq)]
pub struct PollResult {
    pub values: BTreeMap<String, f64>,
    pub fault: Option<Fault>,
    /// Errors of blocks that failed; the other blocks' values are still in `values`.
    pub errors: Vec<(Block, DeviceError)>,
}

/// Polls one device: keeps its connection and its plan.
pub struct DevicePoller {
    device: Device,
    plan: PollPlan,
    timeout: Duration,
    context: Option<Context>,
}

impl DevicePoller {
    pub fn new(device: Device, max_gap: u16, timeout: Duration) -> Self {
        let plan = PollPlan::new(&device.profile, max_gap);
        Self {
            device,
            plan,
            timeout,
            context: None,
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn plan(&self) -> &PollPlan {
        &self.plan
    }

    async fn connect(&mut self) -> Result<&mut Context, DeviceError> {
        if self.context.is_none() {
            let TransportConfig::Tcp { address } = &self.device.transport;
            let slave = Slave(self.device.unit_id);
            let context = tokio::time::timeout(
                self.timeout,
                tokio_modbus::client::tcp::connect_slave(*address, slave),
            )
            .await
            .map_err(|_| DeviceError::Timeout(self.timeout))?
            .map_err(|e| DeviceError::Connect(e.to_string()))?;
            self.context = Some(context);
        }
        self.context
            .as_mut()
            .ok_or_else(|| DeviceError::Connect("no connection".into()))
    }

    async fn read_block(&mut self, block: Block) -> Result<Vec<u16>, DeviceError> {
        let timeout = self.timeout;
        let context = self.connect().await?;
        let (start, count) = (block.start, block.count);
        let call = async {
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
        };
        let words = match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(DeviceError::Timeout(timeout)),
            Ok(Err(transport)) => Err(DeviceError::Transport(transport.to_string())),
            Ok(Ok(Err(exception))) => Err(DeviceError::Exception(exception)),
            Ok(Ok(Ok(words))) if words.len() < usize::from(count) => {
                Err(DeviceError::ShortResponse {
                    expected: usize::from(count),
                    got: words.len(),
                })
            }
            Ok(Ok(Ok(words))) => Ok(words),
        };
        if let Err(error) = &words {
            if error.breaks_link() {
                self.context = None;
            }
        }
        words
    }

    /// Reads every block once. A failed block does not discard the others. Returns `Err` only
    /// when no block could be read.
    pub async fn poll(&mut self) -> Result<PollResult, DeviceError> {
        let mut data: Vec<Option<Vec<u16>>> = Vec::with_capacity(self.plan.blocks.len());
        let mut errors = Vec::new();
        for block in self.plan.blocks.clone() {
            match self.read_block(block).await {
                Ok(words) => data.push(Some(words)),
                Err(error) => {
                    let fatal = matches!(error, DeviceError::Connect(_));
                    errors.push((block, error));
                    data.push(None);
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
        let mut values = BTreeMap::new();
        for (register, (block, offset)) in profile.registers.iter().zip(&self.plan.slots) {
            let Some(Some(words)) = data.get(*block) else {
                continue;
            };
            if let Some(value) = words.get(*offset..).and_then(|w| decode(register, w)) {
                values.insert(register.name.clone(), value);
            }
        }
        let fault = values
            .get(wire::values::FAULT_CODE)
            .and_then(|code| profile.fault(*code as u32));
        Ok(PollResult {
            values,
            fault,
            errors,
        })
    }
}

fn bits_to_words(bits: Vec<bool>) -> Vec<u16> {
    bits.into_iter().map(u16::from).collect()
}
