//! The operator console in a real browser: starts the `demo` binary on a free port and runs the
//! Playwright script in `tests/console/` (headless Debian Chromium) against it. This test installs
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
    // The browser script walks an order through its steps itself; the demo's simulated field
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
    let started = Instant::now();
    let mut node = Command::new("node")
        .arg("console.test.mjs")
        .arg(&demo.base_url)
        .current_dir(&console_dir)
        .env("CONSOLE_ARTIFACTS", &artifacts)
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
        if started.elapsed() > BROWSER_DEADLINE {
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
        "{output}\nbrowser test took {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => bail!(
            "the console browser test failed ({status}):\n{output}\n----- demo log (tail) -----\n{}",
            demo.log()
        ),
        None => bail!(
            "the console browser test did not finish within {BROWSER_DEADLINE:?}:\n{output}\n----- demo log (tail) -----\n{}",
            demo.log()
        ),
    }
}
