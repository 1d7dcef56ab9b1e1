//! Sinks: where the gateway writes history. Today one, [`influxdb`].

pub mod influxdb;
pub mod line;
