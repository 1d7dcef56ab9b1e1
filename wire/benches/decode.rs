//! Decoding one telemetry payload (a heat pump's 18 values, about 560 bytes of JSON), the
//! first step of ingest for every reading: `cargo bench -p wire --bench decode`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use wire::Telemetry;

const PAYLOAD: &str = r#"{"v":1,"device_id":"yq-shenjiaying-hedong-0042-hp","ts_ms":1796083200000,"seq":18231,"profile":"gree-versati-iii","kind":"heat_pump","values":{"compressor_current_a":7.4,"compressor_freq_hz":58.0,"coil_temp_c":-9.5,"defrost_active":0.0,"discharge_pressure_bar":24.1,"discharge_temp_c":71.3,"dhw_temp_c":46.0,"electric_power_w":2310.0,"energy_kwh":18234.5,"fault_code":0.0,"flow_temp_c":41.2,"heat_output_w":5850.0,"indoor_temp_c":19.6,"outdoor_temp_c":-14.8,"return_temp_c":36.9,"running":1.0,"runtime_h":5123.0,"setpoint_c":20.0,"suction_pressure_bar":4.2}}"#;

fn decode(c: &mut Criterion) {
    let bytes = PAYLOAD.as_bytes();
    assert!(
        Telemetry::from_json(bytes).is_ok(),
        "the sample payload parses"
    );
    c.bench_function("telemetry_from_json", |b| {
        b.iter(|| Telemetry::from_json(black_box(bytes)))
    });
}

criterion_group!(benches, decode);
criterion_main!(benches);
