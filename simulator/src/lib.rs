//! The simulator: virtual Yanqing households whose heat pumps and gas boilers follow a physical
//! model through a seeded winter, served over real Modbus TCP (`simulator serve`), or published
//! straight to the gateway by virtual edge boxes for the 未诉先办 benchmark
//! (`simulator bench winter`).
//!
//! Main types:
//! - [`fleet::HouseholdSpec`] and [`fleet::generate`]: a deterministic fleet over the 15
//!   townships and their villages, from `(households, seed)`.
//! - [`climate::Climate`]: the Yanqing winter (daily cycle, cold waves to about -20 °C, wind).
//! - [`model::House`]: one house's thermal model and heater (capacity and COP against outdoor
//!   temperature, defrost, boiler modulation and circuit pressure, night set-back, sensors),
//!   with faults: [`model::House::inject`] latches a code, [`model::Degradation`] grows one.
//!   No IO and no clock inside.
//! - [`modbus::RegisterMap`] and [`modbus::HouseholdService`]: the register image encoded from
//!   the model through the profile, answered on one Modbus TCP listener per household.
//! - [`Simulation`] with [`SimConfig`]: loads profiles, builds the fleet, binds the listeners,
//!   steps the models; [`HouseholdInfo`] is one manifest entry. [`api::router`]: its HTTP
//!   control API (manifest, live values, fault injection).
//! - The benchmark: [`mix::Mix`] (fault, trap, resident and technician parameters, TOML),
//!   [`scenario::build`] (the ground-truth schedule), [`bench::world::World`] (households,
//!   residents and repairs in lockstep simulated time), [`load::BoxPool`] (one MQTT connection
//!   per virtual edge box), [`technician::Dispatcher`] (the SLA model),
//!   [`bench::run_winter`] (the run against a spawned gateway) and [`score::score`] (the card).
//! - [`SimError`]: everything that can stop a simulation from starting or a call from working;
//!   [`bench::BenchError`] for the benchmark.

pub mod api;
pub mod bench;
pub mod climate;
pub mod fleet;
pub mod load;
pub mod mix;
pub mod modbus;
pub mod model;
pub mod rng;
pub mod scenario;
pub mod score;
pub mod sim;
pub mod technician;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use modbus::RequestCounts;
pub use sim::{load_profiles, HouseholdInfo, HouseholdSnapshot, SimConfig, Simulation};

/// Why a simulation could not start, or a call on it failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid simulation config: {0}")]
    Config(String),
    #[error("profiles folder {path} cannot be read")]
    ProfilesDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Transparent: the profile error names its file, line and field, and a message that also
    /// wrote it would print it twice in an error chain (`{:#}`, `Caused by:`).
    #[error(transparent)]
    Profile(#[from] edge_agent::profile::ProfileError),
    #[error("profile id {id:?} in {path} is already used by another profile")]
    DuplicateProfile { id: String, path: PathBuf },
    #[error("no profile (*.toml) found in {0}")]
    NoProfiles(PathBuf),
    #[error("fleet cannot be generated: {0}")]
    Fleet(#[from] fleet::FleetError),
    #[error("cannot bind the Modbus listener of {device} on {addr} (too many households for the open-file limit?)")]
    Bind {
        device: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no household with device id {0:?}")]
    UnknownDevice(String),
}

/// Parses a duration such as `250ms`, `1s`, `1.5s`, `2m` or `1h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 1s, 2m or 1h"))?;
    let seconds = match unit.trim() {
        "ms" => number / 1000.0,
        "" | "s" => number,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ))
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1d").is_err());
    }

    #[test]
    fn a_refused_profile_is_printed_once_in_an_error_chain() {
        let dir = std::env::temp_dir().join(format!("sim-bad-profile-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("bad.toml"),
            "id = \"bad\"\nbrand = \"B\"\nmodel = \"M\"\nkind = \"heat_pump\"\n\n[[register]]\nname = \"runnin\"\nkind = \"input\"\naddress = 0\ntype = \"u16\"\n",
        )
        .expect("write");
        let error = sim::load_profiles(&dir).expect_err("a bad register name");
        let chain = format!("{:#}", anyhow::Error::from(error));
        assert_eq!(chain.matches("\"runnin\"").count(), 1, "{chain}");
        assert!(chain.contains("bad.toml:7:8"), "{chain}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
