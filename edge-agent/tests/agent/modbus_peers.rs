//! The agent against Modbus peers nobody here wrote: pymodbus over TCP and over RTU (a socat
//! pty pair), and Debian's mbpoll reading the same registers; the warm-up after connecting.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use edge_agent::config::{BusConfig, Device, Parity, TransportConfig};
use edge_agent::modbus::DevicePoller;
use edge_agent::plan::PollPlan;
use edge_agent::profile::{decode, Profile, RegisterKind};

use crate::support::*;

fn device(transport: TransportConfig, unit_id: u8) -> Device {
    let profile = Profile::load(&all_types_profile()).expect("test profile");
    Device {
        id: wire::DeviceId::parse(&format!("peer-{unit_id}")).expect("id"),
        township: wire::TownshipId::parse("yanqing").expect("township"),
        profile: Arc::new(profile),
        unit_id,
        transport,
        interval: Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_order_decodes_from_pymodbus_over_tcp_in_the_fewest_requests() {
    let dir = scratch("tcp-types");
    let port = free_port();
    let _server = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    let proxy = Proxy::start(format!("127.0.0.1:{port}").parse().expect("addr")).await;
    let mut poller = DevicePoller::new(
        device(
            TransportConfig::Tcp {
                address: proxy.address,
            },
            1,
        ),
        8,
        Duration::from_secs(2),
    );
    let result = poller.poll().await.expect("poll");
    assert!(result.errors.is_empty(), "{:?}", result.errors);
    assert_values("tcp", &result.values, &all_types_values());
    assert_eq!(
        result.fault.map(|f| f.category),
        Some(wire::FaultCategory::SensorFault)
    );
    // One request per table is the minimum for this profile (coil, discrete, input, holding),
    // and that is what reached the server.
    let minimum = 4;
    assert_eq!(poller.plan().blocks.len(), minimum);
    assert_eq!(result.requests, minimum);
    assert_eq!(proxy.frames.load(Ordering::SeqCst), minimum as u64);
    // With no gap bridging the input table needs one request per run of registers.
    let split = PollPlan::new(&poller.device().profile, 0);
    assert_eq!(
        split.blocks.len(),
        4,
        "input registers 0..=19 are contiguous"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_decodes_over_rtu_through_a_pty_pair_for_two_units_on_one_bus() {
    let dir = scratch("rtu-types");
    let (_socat, agent_end, device_end) = pty_pair(&dir);
    let mut second = all_types_values();
    second.insert("indoor_temp_c", 19.5);
    second.insert("fault_code", 0.0);
    let _server = pymodbus(&[
        "--rtu".into(),
        device_end.display().to_string(),
        "--baud".into(),
        "19200".into(),
        // A pty has no parity to configure (pyserial refuses it): 8N1.
        "--parity".into(),
        "N".into(),
        "--device".into(),
        device_arg(&dir, 3, &all_types_profile(), &all_types_values()),
        "--device".into(),
        device_arg(&dir, 7, &all_types_profile(), &second),
    ]);
    let bus = BusConfig {
        name: "rs485-1".into(),
        port: agent_end.display().to_string(),
        baud: 19200,
        parity: Parity::None,
        data_bits: 8,
        stop_bits: 1,
        timeout: Duration::from_millis(1000),
        pause: None,
        warm_up: Duration::from_millis(100),
    };
    let transport = TransportConfig::Rtu {
        bus: "rs485-1".into(),
    };
    let mut first =
        DevicePoller::new(device(transport.clone(), 3), 8, Duration::from_secs(1)).on_bus(&bus);
    let mut other = DevicePoller::new(device(transport, 7), 8, Duration::from_secs(1)).on_bus(&bus);
    // One serial link, lent to each unit in turn, as the bus task does.
    let mut link = None;
    // pymodbus says "ready" before its serial port is open: retry the first poll until it
    // answers, as the agent's own schedule would.
    let start = std::time::Instant::now();
    let a = loop {
        match first.poll_on(&mut link).await {
            Ok(result) => break result,
            Err(error) => assert!(start.elapsed() < Duration::from_secs(15), "unit 3: {error}"),
        }
    };
    let b = other.poll_on(&mut link).await.expect("unit 7");
    assert!(
        a.errors.is_empty() && b.errors.is_empty(),
        "{:?} {:?}",
        a.errors,
        b.errors
    );
    assert_values("rtu unit 3", &a.values, &all_types_values());
    assert_values("rtu unit 7", &b.values, &second);
    assert_eq!(b.fault, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mbpoll_reads_the_same_registers_the_agent_decodes() {
    let mbpoll = require("mbpoll", "mbpoll");
    let dir = scratch("mbpoll");
    let port = free_port();
    let _server = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    let address = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut poller = DevicePoller::new(
        device(TransportConfig::Tcp { address }, 1),
        8,
        Duration::from_secs(2),
    );
    let agent = poller.poll().await.expect("poll").values;

    // mbpoll: input registers 0..20 and holding registers 0..4, PDU addressing, one shot.
    let read = |table: &str, count: u16| -> BTreeMap<u16, u16> {
        mbpoll_read(&mbpoll, port, table, 0, count).expect("mbpoll reads the peer")
    };
    let input = read("3", 20);
    let holding = read("4", 4);
    assert_eq!(input.len(), 20, "{input:?}");
    let mut compared = 0;
    for register in &poller.device().profile.registers {
        let table = match register.kind {
            RegisterKind::Input => &input,
            RegisterKind::Holding => &holding,
            _ => continue,
        };
        let words: Vec<u16> = (0..register.value_type.width())
            .filter_map(|i| table.get(&(register.address + i)).copied())
            .collect();
        let from_mbpoll = decode(register, &words).expect("decodes");
        let from_agent = agent.get(&register.name).expect("agent has it");
        assert!(
            (from_mbpoll - from_agent).abs() < 1e-9,
            "{}: mbpoll {from_mbpoll} agent {from_agent}",
            register.name
        );
        compared += 1;
    }
    // Two of them vendor values (`x_pump_on`, `x_cop`), decoded like the others.
    assert_eq!(compared, 17);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_waits_its_warm_up_before_the_first_request_and_a_kept_one_does_not() {
    let dir = scratch("warm-up");
    let port = free_port();
    let _server = pymodbus(&[
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--device".into(),
        device_arg(&dir, 1, &all_types_profile(), &all_types_values()),
    ]);
    let address = format!("127.0.0.1:{port}").parse().expect("addr");
    let warm_up = Duration::from_secs(1);
    let mut poller = DevicePoller::new(
        device(TransportConfig::Tcp { address }, 1),
        8,
        Duration::from_secs(2),
    )
    .with_warm_up(warm_up);
    let started = std::time::Instant::now();
    let first = poller.poll().await.expect("first poll");
    let first_took = started.elapsed();
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert!(first_took >= warm_up, "the first poll took {first_took:?}");
    // The connection is kept: no second warm-up.
    let started = std::time::Instant::now();
    let second = poller.poll().await.expect("second poll");
    let second_took = started.elapsed();
    assert_values("after warm-up", &second.values, &all_types_values());
    assert!(
        second_took < warm_up,
        "the second poll on the same connection took {second_took:?}"
    );
}
