//! The edge agent's integration tests (one binary): the real binary's start-up and `check`, and
//! the agent against real peers (pymodbus over TCP and RTU, a shared RS-485 bus on a socat pty
//! pair, mbpoll, rumqttd, mosquitto).

mod cli;
mod commands_and_health;
mod guard;
mod modbus_peers;
mod rs485_bus;
mod store_and_forward;
mod support;
mod tls_and_check;
