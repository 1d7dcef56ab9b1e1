//! The edge agent's integration tests (one binary): the real binary's start-up and `check`, and
//! the agent against real peers (pymodbus over TCP and RTU, mbpoll, rumqttd, mosquitto).

mod cli;
mod commands_and_health;
mod modbus_peers;
mod store_and_forward;
mod support;
mod tls_and_check;
