//! Schemathesis (PyPI) against the gateway's own OpenAPI document, over a real `gateway run`:
//! generated requests for every operation must never get a 5xx, and every response must match
//! the documented status codes, content types and schemas.

use std::process::Command;
use std::time::Duration;

use tests::{eventually, scratch_dir, GatewayConfig, OPERATOR_TOKEN};

fn schemathesis() -> anyhow::Result<std::path::PathBuf> {
    let python = std::env::var("HEATING_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| tests::repo_root().join(".venv/bin/python"));
    let st = python.with_file_name("st");
    if !st.exists() {
        anyhow::bail!(
            "{} does not exist: run scripts/test, which installs schemathesis into the venv",
            st.display()
        );
    }
    Ok(st)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_never_get_a_5xx_and_responses_match_the_openapi_document(
) -> anyhow::Result<()> {
    let st = schemathesis()?;
    let dir = scratch_dir("schemathesis")?;
    let (gateway, ready) = GatewayConfig::with_operator("schemathesis").start("gateway", &dir)?;
    let http = ready["http"].as_str().unwrap_or_default().to_owned();
    let url = format!("http://{http}/api/v1/openapi.json");
    let client = reqwest::Client::new();
    eventually("the OpenAPI document", Duration::from_secs(20), || {
        let client = client.clone();
        let url = url.clone();
        async move {
            Ok(client
                .get(&url)
                .send()
                .await?
                .status()
                .is_success()
                .then_some(()))
        }
    })
    .await?;
    let output = tokio::task::spawn_blocking({
        let dir = dir.clone();
        move || {
            Command::new(st)
                .current_dir(&dir)
                .args([
                    "run",
                    &url,
                    "-H",
                    &format!("Authorization: Bearer {OPERATOR_TOKEN}"),
                    "--checks",
                    "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
                    "--max-examples",
                    "20",
                    "--seed",
                    "1",
                    "--no-color",
                    // On a loaded CI machine, neither slow data generation (a Hypothesis health
                    // check) nor a response slower than the 10 s default is an API defect.
                    "--suppress-health-check",
                    "too_slow",
                    "--request-timeout",
                    "30",
                ])
                .output()
        }
    })
    .await??;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}\ngateway log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        gateway.log()
    );
    assert!(stdout.contains("passed"), "{stdout}");
    Ok(())
}
