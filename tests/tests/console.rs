//! The operator console in a real browser: starts the `demo` binary on a free port and runs the
//! Playwright scripts in `tests/console/` (headless Debian Chromium) against it, the stock page's
//! (`stock.test.mjs`) and then every other page's (`console.test.mjs`); and a gateway
//! with role tokens and a webhook receiver written here, against which `roles.test.mjs` signs
//! in as a township officer who dispatches and escalates in its own township (the 督办 reaches
//! the receiver) and is refused another township's order. This test installs
//! nothing: `scripts/test` runs `npm ci` in `tests/console` and installs the `chromium` package.
//! Screenshots land in `$CONSOLE_ARTIFACTS` (default `target/console-artifacts`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use tests::Demo;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The whole browser script: a fault every 3 s, five pages on two screens.
const BROWSER_DEADLINE: Duration = Duration::from_secs(300);
/// The stock page's script: two waits for dispatches, the page on two screens.
const STOCK_DEADLINE: Duration = Duration::from_secs(240);

/// What the browser test needs and this test does not install; a clear error for each.
fn prerequisites(console_dir: &Path) -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!(
            "{CHROMIUM} is missing: install Debian's browser with `apt-get install chromium` (scripts/test does)"
        ));
    }
    if Command::new("node")
        .arg("--version")
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        missing.push(
            "`node` is not on PATH: install Node.js 20 or newer (`apt-get install nodejs npm`)"
                .to_owned(),
        );
    }
    if !console_dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        missing.push(format!(
            "{} has no node_modules: run `npm ci --prefix {}` (scripts/test does)",
            console_dir.display(),
            console_dir.display()
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        bail!(
            "the console browser test cannot run:\n  {}",
            missing.join("\n  ")
        )
    }
}

fn read_all(mut from: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = from.read_to_string(&mut text);
        text
    })
}

/// How one browser script ended: its exit status (`None`: killed at its deadline) and its
/// output (stdout, then stderr).
struct ScriptRun {
    status: Option<std::process::ExitStatus>,
    output: String,
}

/// Runs `node {script} {args...}` in `console_dir` with the screenshot folder and Chromium in its
/// environment, and kills it at `deadline`.
fn run_script(
    console_dir: &Path,
    artifacts: &Path,
    script: &str,
    args: &[&str],
    deadline: Duration,
) -> anyhow::Result<ScriptRun> {
    let started = Instant::now();
    let mut node = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(console_dir)
        .env("CONSOLE_ARTIFACTS", artifacts)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start node")?;
    let stdout = read_all(node.stdout.take().ok_or_else(|| anyhow!("no stdout"))?);
    let stderr = read_all(node.stderr.take().ok_or_else(|| anyhow!("no stderr"))?);
    let status = loop {
        if let Some(status) = node.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > deadline {
            let _ = node.kill();
            let _ = node.wait();
            break None;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    };
    let output = format!(
        "{}{}",
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default()
    );
    println!(
        "{output}\n{script} took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
    Ok(ScriptRun { status, output })
}

#[test]
fn the_operator_console_passes_its_browser_test_against_the_demo() -> anyhow::Result<()> {
    let console_dir = tests::repo_root().join("tests").join("console");
    prerequisites(&console_dir)?;
    let artifacts = std::env::var_os("CONSOLE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tests::repo_root().join("target").join("console-artifacts"));
    std::fs::create_dir_all(&artifacts)
        .with_context(|| format!("cannot create {}", artifacts.display()))?;

    let dir = tests::scratch_dir("console")?;
    // The console script walks an order through its steps itself; the demo's simulated field
    // crew would take every dispatched order first.
    let demo = Demo::start(
        &dir,
        &[
            "--households",
            "30",
            "--fault-every",
            "3s",
            "--poll-every",
            "1s",
            "--crew",
            "off",
        ],
    )?;
    // The stock page's script first: it waits for dispatches into a district without stock
    // (a stock-out), then after the first deliveries (parts held), which a fresh demo makes.
    let scripts = [
        ("stock.test.mjs", STOCK_DEADLINE),
        ("console.test.mjs", BROWSER_DEADLINE),
    ];
    let mut failures = Vec::new();
    for (script, deadline) in scripts {
        let run = run_script(
            &console_dir,
            &artifacts,
            script,
            &[&demo.base_url],
            deadline,
        )?;
        match run.status {
            Some(status) if status.success() => {}
            Some(status) => failures.push(format!("{script} failed ({status}):\n{}", run.output)),
            None => failures.push(format!(
                "{script} did not finish within {deadline:?}:\n{}",
                run.output
            )),
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    bail!(
        "the console browser tests failed:\n{}\n----- demo log (tail) -----\n{}",
        failures.join("\n"),
        demo.log()
    )
}

/// The token of the Yanqing township officer in the roles test.
const OFFICER_TOKEN: &str = "yanqing-officer-token-0123456789";

/// An HTTP receiver on a free loopback port (a thread per connection, `Connection: close`):
/// answers every request 200 and keeps its body.
fn webhook_receiver() -> anyhow::Result<(u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>)> {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&bodies);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let kept = std::sync::Arc::clone(&kept);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length.min(1 << 20)];
                if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
                    return;
                }
                if let Ok(mut bodies) = kept.lock() {
                    bodies.push(String::from_utf8_lossy(&body).into_owned());
                }
                let _ = (&stream).write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            });
        }
    });
    Ok((port, bodies))
}

#[test]
fn the_console_serves_a_township_officer_in_its_own_township_only() -> anyhow::Result<()> {
    use serde_json::{json, Value};
    let console_dir = tests::repo_root().join("tests").join("console");
    prerequisites(&console_dir)?;
    let artifacts = std::env::var_os("CONSOLE_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tests::repo_root().join("target").join("console-artifacts"));
    std::fs::create_dir_all(&artifacts)?;
    let dir = tests::scratch_dir("console-roles")?;
    let (hook_port, notices) = webhook_receiver()?;

    // Two households, one in 延庆镇 and one in 四海镇; no teams yet, so their repairs wait.
    let households = [
        tests::RegistryHousehold::new("yanqing-xiguan-0001", "yanqing", "xiguan"),
        tests::RegistryHousehold::new("sihai-sihai-0001", "sihai", "sihai"),
    ];
    tests::write_registry(&dir.join("registry"), &households)?;
    let (gateway, ready) = tests::GatewayConfig {
        registry: true,
        extra: format!(
            "[[api.tokens]]\nname = \"yanqing-officer\"\ntoken = \"{OFFICER_TOKEN}\"\nrole = \"township\"\ntownship = \"yanqing\"\n\n\
             [notify]\n[[notify.township_officers]]\ntownship = \"yanqing\"\nname = \"延庆镇 officer\"\nphone = \"13800000001\"\n\n\
             [notify.webhook]\nurl = \"http://127.0.0.1:{hook_port}/hook\"\nbackoff = \"100ms\"\n"
        ),
        ..tests::GatewayConfig::with_operator("centre")
    }
    .start("gateway", &dir)?;
    let base = format!("http://{}", ready["http"].as_str().unwrap_or_default());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let request = client
            .post(format!("{base}{path}"))
            .bearer_auth(tests::OPERATOR_TOKEN)
            .json(&body);
        runtime.block_on(async move {
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            anyhow::ensure!(status.is_success(), "{status}: {body}");
            Ok::<_, anyhow::Error>(body)
        })
    };
    let mut orders = Vec::new();
    for household in &households {
        let outcome = post(
            "/api/v1/requests",
            json!({"kind": "repair", "channel": "centre_hotline",
                   "household_id": household.household_id(), "text": "暖气不热"}),
        )?;
        orders.push(
            outcome["order_id"]
                .as_i64()
                .ok_or_else(|| anyhow!("no order: {outcome}"))?,
        );
    }
    // Now the teams: each township's third-party team with one technician.
    let mut files = serde_json::Map::new();
    for entry in std::fs::read_dir(dir.join("registry"))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        files.insert(name, Value::String(std::fs::read_to_string(&path)?));
    }
    files.insert(
        "teams.csv".into(),
        "id,name,kind,phone,townships\nthird-yanqing,第三方延庆,third_party,01069100001,yanqing\nthird-sihai,第三方四海,third_party,01069100002,sihai\n".into(),
    );
    files.insert(
        "technicians.csv".into(),
        "id,team_id,name,phone\ntech-yq,third-yanqing,李师傅,13900000001\ntech-sh,third-sihai,王师傅,13900000002\n".into(),
    );
    post("/api/v1/registry/import", json!({ "files": files }))?;

    let started = Instant::now();
    let output = Command::new("node")
        .arg("roles.test.mjs")
        .arg(&base)
        .arg(OFFICER_TOKEN)
        .arg(orders[0].to_string())
        .arg(orders[1].to_string())
        .current_dir(&console_dir)
        .env("CONSOLE_ARTIFACTS", &artifacts)
        .env("CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .output()
        .context("cannot start node")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!(
        "{text}\nroles browser test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !output.status.success() {
        bail!(
            "the roles browser test failed ({}):\n{text}\n----- gateway log -----\n{}",
            output.status,
            gateway.log()
        );
    }
    // The officer's 督办 reached the webhook receiver written here.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let escalated = notices
            .lock()
            .map_err(|_| anyhow!("lock"))?
            .iter()
            .any(|body| {
                serde_json::from_str::<Value>(body).is_ok_and(|n| {
                    n["kind"] == "escalated"
                        && n["order_id"] == orders[0]
                        && n["note"]
                            .as_str()
                            .is_some_and(|note| note.contains("督办 by the township"))
                })
            });
        if escalated {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "no escalation notice for order {} at the webhook: {:?}\n----- gateway log -----\n{}",
                orders[0],
                notices.lock().map(|n| n.clone()).unwrap_or_default(),
                gateway.log()
            );
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}
