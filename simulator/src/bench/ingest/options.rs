//! What an ingest bench run is asked to do ([`IngestOptions`], [`Qos`]) and how it fails
//! ([`IngestError`]).

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use edge_agent::profile::Profile;

use crate::bench::{shipped_profiles, BenchError};

/// MQTT quality of service of the load's publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    AtMostOnce,
    AtLeastOnce,
}

impl Qos {
    pub fn level(self) -> u8 {
        match self {
            Qos::AtMostOnce => 0,
            Qos::AtLeastOnce => 1,
        }
    }
}

impl FromStr for Qos {
    type Err = String;

    fn from_str(text: &str) -> Result<Qos, String> {
        match text {
            "0" => Ok(Qos::AtMostOnce),
            "1" => Ok(Qos::AtLeastOnce),
            _ => Err(format!("the QoS must be 0 or 1, not {text:?}")),
        }
    }
}

/// Why an ingest bench failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("invalid ingest bench options: {0}")]
    Config(String),
    #[error(transparent)]
    Bench(#[from] BenchError),
    #[error("cannot {what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Service(String),
    #[error("load generator: {0}")]
    Load(String),
    #[error("gateway: {0}")]
    Gateway(String),
    /// A wait ran out (see `poll::poll_until`); the text names what was awaited and where it
    /// stood.
    #[error("{0}")]
    TimedOut(String),
}

pub(super) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> IngestError {
    let what = what.into();
    move |source| IngestError::Io { what, source }
}

/// Everything an ingest bench needs.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Load devices.
    pub devices: usize,
    /// Load devices per edge box (one MQTT connection per box); at least 1.
    pub devices_per_box: usize,
    /// Poll rounds: readings per device, timed.
    pub rounds: usize,
    /// Rounds sent before the clock starts (each device's first reading, paid once).
    pub warmup_rounds: usize,
    pub qos: Qos,
    /// Latency probe boxes (gateway phase); 0 measures no latency.
    pub probes: usize,
    /// Pause between one probe's fault readings (the probes are staggered over it).
    pub probe_interval: Duration,
    /// Publisher tasks sharing the boxes.
    pub publishers: usize,
    /// How many rounds a publisher may run ahead of the slowest one (see `publish::RoundGate`).
    pub round_lead: usize,
    /// Runs of both targets; the order alternates (run 1 mosquitto first, run 2 the gateway
    /// first, ...) and the report gives each run and the median ratio. At least 1.
    pub repeat: usize,
    pub seed: u64,
    pub profiles: Vec<Arc<Profile>>,
    pub gateway_bin: PathBuf,
    pub mosquitto_bin: PathBuf,
    pub victoria_metrics_bin: PathBuf,
    /// Run the gateway with its InfluxDB sink writing to VictoriaMetrics (without it the
    /// comparison is marked "without history").
    pub sink: bool,
    /// Folder for configs, logs and databases; a fresh temporary folder when `None`.
    pub work_dir: Option<PathBuf>,
    /// Keep the work folder after a successful run.
    pub keep_work_dir: bool,
    /// `RUST_LOG` of the gateway.
    pub gateway_log: String,
    /// A target that takes in nothing for this long is given up on (what is missing is
    /// reported).
    pub stall_timeout: Duration,
}

impl IngestOptions {
    /// Defaults for everything but the size and the gateway.
    pub fn new(devices: usize, gateway_bin: PathBuf) -> Result<IngestOptions, IngestError> {
        Ok(IngestOptions {
            devices,
            devices_per_box: 1,
            rounds: 5,
            warmup_rounds: 1,
            qos: Qos::AtLeastOnce,
            probes: 50,
            probe_interval: Duration::from_secs(1),
            publishers: 8,
            round_lead: 3,
            repeat: 3,
            seed: 1,
            profiles: shipped_profiles()?,
            gateway_bin,
            mosquitto_bin: PathBuf::from("mosquitto"),
            victoria_metrics_bin: PathBuf::from("victoria-metrics"),
            sink: true,
            work_dir: None,
            keep_work_dir: false,
            gateway_log: "warn".to_owned(),
            stall_timeout: Duration::from_secs(60),
        })
    }

    /// Refuses options no run can be made of.
    pub(super) fn validate(&self) -> Result<(), IngestError> {
        let config = |text: &str| Err(IngestError::Config(text.to_owned()));
        if self.devices == 0 {
            return config("devices must be at least 1");
        }
        if self.rounds == 0 {
            return config("rounds must be at least 1");
        }
        if self.devices_per_box == 0 {
            return config("devices per box must be at least 1");
        }
        if self.publishers == 0 {
            return config("publishers must be at least 1");
        }
        if self.repeat == 0 {
            return config("repeat must be at least 1");
        }
        if self.probes > 0 && self.probe_interval.is_zero() {
            return config("the probe interval must be above 0");
        }
        if self.stall_timeout.is_zero() {
            return config("the stall timeout must be above 0");
        }
        if !self.gateway_bin.is_file() {
            return Err(BenchError::GatewayMissing(self.gateway_bin.clone()).into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_parses() {
        assert_eq!("0".parse::<Qos>(), Ok(Qos::AtMostOnce));
        assert_eq!("1".parse::<Qos>(), Ok(Qos::AtLeastOnce));
        assert!("2".parse::<Qos>().is_err());
    }

    #[test]
    fn options_no_run_can_be_made_of_are_refused() {
        let base = IngestOptions::new(10, PathBuf::from("gateway")).expect("options");
        let refused = |change: fn(&mut IngestOptions), needle: &str| {
            let mut options = base.clone();
            change(&mut options);
            let error = options.validate().expect_err("refused");
            assert!(
                matches!(error, IngestError::Config(ref text) if text.contains(needle)),
                "{needle}: {error}"
            );
        };
        refused(|o| o.devices_per_box = 0, "per box");
        refused(|o| o.repeat = 0, "repeat");
        refused(|o| o.rounds = 0, "rounds");
        refused(|o| o.publishers = 0, "publishers");
    }
}
