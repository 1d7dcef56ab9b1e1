//! The deployment files against the real binaries: the configuration reference
//! (`deploy/CONFIGURATION.md`) against the example configs, the config structs' source (keys,
//! doc comments and default values) and the binaries' environment overrides; the edge installer
//! (`deploy/edge/install.sh`) into a scratch root; the container: its security check
//! (`deploy/check_files.py security`) on the real files and on insecure copies, its environment
//! running a gateway, and its health probe; and the runbook's online backup and restore of the
//! work-order database.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context as _};
use serde_json::{json, Value};
use tests::{binary, eventually, get_json, repo_root, scratch_dir, GatewayConfig, Proc, System};

fn deploy_dir() -> PathBuf {
    repo_root().join("deploy")
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Which program a config belongs to.
#[derive(Clone, Copy, Debug)]
enum Program {
    Gateway,
    EdgeAgent,
}

impl Program {
    fn example(self) -> PathBuf {
        deploy_dir().join(match self {
            Program::Gateway => "gateway.toml",
            Program::EdgeAgent => "edge-agent.toml",
        })
    }
    /// The heading of its section in CONFIGURATION.md starts with this.
    fn heading(self) -> &'static str {
        match self {
            Program::Gateway => "## Gateway",
            Program::EdgeAgent => "## Edge agent",
        }
    }
    fn env_prefix(self) -> &'static str {
        match self {
            Program::Gateway => "GATEWAY",
            Program::EdgeAgent => "EDGE_AGENT",
        }
    }
    fn source(self) -> PathBuf {
        repo_root().join(match self {
            Program::Gateway => "gateway/src/config.rs",
            Program::EdgeAgent => "edge-agent/src/config.rs",
        })
    }
    /// The struct the file deserialises into.
    fn root_struct(self) -> &'static str {
        match self {
            Program::Gateway => "GatewayConfig",
            Program::EdgeAgent => "RawConfig",
        }
    }
}

// ------------------------------------------------------------------ example files

/// The example with every `# key = value` line uncommented, so documented-but-optional keys
/// are parsed (and later run through the binaries) like the others.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if is_key_line(rest.trim_start()) || is_header_line(rest.trim_start()) => {
                rest.trim_start().to_owned()
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `[section]`, `[a.b]` or `[[array]]` alone on the line.
fn is_header_line(line: &str) -> bool {
    let name = line
        .trim_end()
        .trim_start_matches('[')
        .trim_end_matches(']');
    line.starts_with('[')
        && line.trim_end().ends_with(']')
        && !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
}

fn is_key_line(line: &str) -> bool {
    let Some((key, _)) = line.split_once(" = ") else {
        return false;
    };
    !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && key.starts_with(|c: char| c.is_ascii_lowercase())
}

/// Every key path of a table: section and key names joined by `.`, arrays of tables as `name[]`.
fn key_paths(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (key, value) in table {
        let path = format!("{prefix}{key}");
        out.insert(path.clone());
        match value {
            toml::Value::Table(inner) => key_paths(inner, &format!("{path}."), out),
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                for item in items {
                    if let toml::Value::Table(inner) = item {
                        key_paths(inner, &format!("{path}[]."), out);
                    }
                }
            }
            _ => {}
        }
    }
}

fn example_table(program: Program) -> anyhow::Result<toml::Table> {
    let path = program.example();
    let text = uncomment(&read(&path)?);
    toml::from_str(&text).with_context(|| {
        format!(
            "{} with its `# key = value` lines uncommented is not valid TOML",
            path.display()
        )
    })
}

fn example_keys(program: Program) -> anyhow::Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    key_paths(&example_table(program)?, "", &mut keys);
    Ok(keys)
}

/// The value at a key path of a table (`devices[]` reads the first element).
fn value_at<'a>(table: &'a toml::Table, path: &str) -> Option<&'a toml::Value> {
    let mut parts = path.split('.');
    let mut current = table.get(strip_array(parts.next()?))?;
    for part in parts {
        if let toml::Value::Array(items) = current {
            current = items.first()?;
        }
        current = current.as_table()?.get(strip_array(part))?;
    }
    Some(current)
}

fn strip_array(part: &str) -> &str {
    part.strip_suffix("[]").unwrap_or(part)
}

/// How a value is written in an environment variable.
fn env_value(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

// ------------------------------------------------------------------ CONFIGURATION.md

#[derive(Debug)]
struct DocRow {
    key: String,
    default: String,
    env: String,
}

fn configuration_md() -> anyhow::Result<String> {
    read(&deploy_dir().join("CONFIGURATION.md"))
}

/// The rows of the key tables in the program's section: `| `key` | default | env | meaning |`.
fn doc_rows(program: Program) -> anyhow::Result<Vec<DocRow>> {
    let text = configuration_md()?;
    let mut in_section = false;
    let mut rows = Vec::new();
    for line in text.lines() {
        if line.starts_with("## ") {
            in_section = line.starts_with(program.heading());
            continue;
        }
        if !in_section || !line.starts_with("| `") {
            continue;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        ensure!(
            cells.len() == 4,
            "CONFIGURATION.md: a key row needs 4 cells: {line}"
        );
        rows.push(DocRow {
            key: cells[0].trim_matches('`').to_owned(),
            default: cells[1].to_owned(),
            env: cells[2].trim_matches('`').to_owned(),
        });
    }
    ensure!(
        !rows.is_empty(),
        "CONFIGURATION.md has no key rows under a heading starting with {:?}",
        program.heading()
    );
    Ok(rows)
}

fn doc_keys(program: Program) -> anyhow::Result<BTreeSet<String>> {
    Ok(doc_rows(program)?.into_iter().map(|r| r.key).collect())
}

/// Every environment variable the reference documents for `program`.
fn documented_env(program: Program) -> anyhow::Result<BTreeMap<String, String>> {
    Ok(doc_rows(program)?
        .into_iter()
        .filter(|r| r.env != "—")
        .map(|r| (r.env, r.key))
        .collect())
}

// ------------------------------------------------------------------ config structs

/// A field of a config struct (or of a struct-like enum variant), as written in the source.
#[derive(Debug, Clone)]
struct Field {
    name: String,
    ty: String,
    documented: bool,
    default: FieldDefault,
}

/// How serde fills a field that the file leaves out.
#[derive(Debug, Clone, PartialEq)]
enum FieldDefault {
    /// No `default`: the key is required (or the whole struct has a default).
    None,
    /// `#[serde(default)]`: the type's `Default` (false, 0, empty, unset).
    Plain,
    /// `#[serde(default = "function")]`.
    Function(String),
}

#[derive(Debug, Default)]
struct Item {
    fields: Vec<Field>,
    /// `#[serde(tag = "...")]` of an enum.
    tag: Option<String>,
}

/// Structs and enums of a config source file with their fields, found textually.
fn parse_items(source: &str) -> BTreeMap<String, Item> {
    let mut items = BTreeMap::new();
    let mut attributes = String::new();
    let mut current: Option<(String, Item)> = None;
    let mut documented = false;
    let mut rename: Option<String> = None;
    let mut default = FieldDefault::None;
    for line in source.lines() {
        if let Some((name, item)) = current.as_mut() {
            if line == "}" {
                let (name, item) = (std::mem::take(name), std::mem::take(item));
                items.insert(name, item);
                current = None;
                continue;
            }
            let trimmed = line.trim();
            if trimmed.starts_with("///") {
                documented = true;
                continue;
            }
            if trimmed.starts_with("#[") {
                if let Some(start) = trimmed.find("rename = \"") {
                    let rest = &trimmed[start + 10..];
                    rename = rest.split('"').next().map(str::to_owned);
                }
                if let Some(start) = trimmed.find("default = \"") {
                    let rest = &trimmed[start + 11..];
                    default = FieldDefault::Function(
                        rest.split('"').next().unwrap_or_default().to_owned(),
                    );
                } else if trimmed.starts_with("#[serde(")
                    && trimmed
                        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                        .any(|word| word == "default")
                {
                    default = FieldDefault::Plain;
                }
                continue;
            }
            let declaration = trimmed.strip_prefix("pub ").unwrap_or(trimmed);
            if let Some((field, ty)) = declaration.split_once(": ") {
                if field.starts_with(|c: char| c.is_ascii_lowercase())
                    && field
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    item.fields.push(Field {
                        name: rename.take().unwrap_or_else(|| field.to_owned()),
                        ty: ty.trim_end_matches(',').to_owned(),
                        documented,
                        default: std::mem::replace(&mut default, FieldDefault::None),
                    });
                }
            }
            if !trimmed.starts_with("//") {
                documented = false;
                rename = None;
                default = FieldDefault::None;
            }
            continue;
        }
        if line.starts_with("#[") {
            attributes.push_str(line);
            continue;
        }
        for keyword in ["pub struct ", "pub enum "] {
            if let Some(rest) = line.strip_prefix(keyword) {
                if line.ends_with('{') {
                    let name = rest.trim_end_matches('{').trim().to_owned();
                    let tag = attributes
                        .find("tag = \"")
                        .and_then(|start| attributes[start + 7..].split('"').next())
                        .map(str::to_owned);
                    current = Some((
                        name,
                        Item {
                            fields: Vec::new(),
                            tag,
                        },
                    ));
                    documented = false;
                }
            }
        }
        if !line.starts_with("#[") && !line.starts_with("///") {
            attributes.clear();
        }
    }
    items
}

/// The type name inside `Option<...>` / `Vec<...>` without its module path, and whether it
/// was a `Vec`.
fn inner_type(ty: &str) -> (&str, bool) {
    let mut ty = ty.trim();
    let mut array = false;
    loop {
        if let Some(inner) = ty.strip_prefix("Option<").and_then(|t| t.strip_suffix('>')) {
            ty = inner;
        } else if let Some(inner) = ty.strip_prefix("Vec<").and_then(|t| t.strip_suffix('>')) {
            ty = inner;
            array = true;
        } else {
            return (ty.rsplit("::").next().unwrap_or(ty), array);
        }
    }
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every key path reachable from `root` with its field (doc comment, type, default). Types are
/// looked up in the config file first, then in the rest of the crate's `src/` (config structs
/// of components, e.g. `crate::orders::sla::SlaConfig`), then in the config types both programs
/// share from another crate ([`SHARED_CONFIG_SOURCES`]: `mqtt.tls`, `broker.external.tls`).
fn struct_keys(program: Program) -> anyhow::Result<BTreeMap<String, Field>> {
    let source_path = program.source();
    let mut files = Vec::new();
    if let Some(src) = source_path.parent() {
        rust_files(src, &mut files)?;
    }
    files.sort();
    let mut items = BTreeMap::new();
    for file in files.iter().filter(|f| **f != source_path) {
        items.extend(parse_items(&read(file)?));
    }
    items.extend(parse_items(&read(&source_path)?));
    for shared in SHARED_CONFIG_SOURCES {
        for (name, item) in parse_items(&read(&repo_root().join(shared))?) {
            items.entry(name).or_insert(item);
        }
    }
    let mut keys = BTreeMap::new();
    let root = program.root_struct();
    ensure!(
        items.contains_key(root),
        "no `pub struct {root}` found in {}",
        program.source().display()
    );
    walk(&items, root, "", &mut keys, 0)?;
    Ok(keys)
}

/// Sources of config types that the gateway and the edge agent take from a crate of their own
/// (`mqtt_tls::TlsConfig`).
const SHARED_CONFIG_SOURCES: &[&str] = &["mqtt-tls/src/lib.rs"];

fn walk(
    items: &BTreeMap<String, Item>,
    name: &str,
    prefix: &str,
    keys: &mut BTreeMap<String, Field>,
    depth: usize,
) -> anyhow::Result<()> {
    ensure!(depth < 8, "config types nest too deep at {name}");
    let item = &items[name];
    if let Some(tag) = &item.tag {
        keys.insert(
            format!("{prefix}{tag}"),
            Field {
                name: tag.clone(),
                ty: "String".into(),
                documented: true,
                default: FieldDefault::None,
            },
        );
    }
    for field in &item.fields {
        let path = format!("{prefix}{}", field.name);
        let (ty, array) = inner_type(&field.ty);
        keys.insert(path.clone(), field.clone());
        if items.contains_key(ty) {
            let children = if array {
                format!("{path}[].")
            } else {
                format!("{path}.")
            };
            walk(items, ty, &children, keys, depth + 1)?;
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ running the binaries

fn run(program: &Path, args: &[&str], env: &[(String, String)]) -> anyhow::Result<Output> {
    let mut command = Command::new(program);
    command.args(args);
    for (name, _) in std::env::vars() {
        if name.starts_with("GATEWAY") || name.starts_with("EDGE_AGENT") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    command
        .output()
        .with_context(|| format!("cannot run {}", program.display()))
}

fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The variables that the example's `token = "env:NAME"` entries read, with a test secret.
fn token_env() -> anyhow::Result<Vec<(String, String)>> {
    let examples = example_table(Program::Gateway)?;
    let tokens = value_at(&examples, "api.tokens")
        .and_then(toml::Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(tokens
        .iter()
        .filter_map(|t| t.get("token").and_then(toml::Value::as_str))
        .filter_map(|t| t.strip_prefix("env:"))
        .map(|name| (name.to_owned(), format!("test-secret-for-{name}")))
        .collect())
}

/// `gateway check-config` on `config` with `env` (and the example's token variables).
fn gateway_check(config: &Path, env: &[(String, String)]) -> anyhow::Result<Output> {
    let config = config.display().to_string();
    let mut env_all = token_env()?;
    env_all.extend_from_slice(env);
    run(
        &binary("gateway")?,
        &["check-config", "--config", &config],
        &env_all,
    )
}

/// A scratch folder with the gateway example and a rule file where its commented `rules.path`
/// points, so the uncommented variant can be checked too.
fn gateway_scratch(test: &str) -> anyhow::Result<PathBuf> {
    let dir = scratch_dir(test)?;
    std::fs::copy(Program::Gateway.example(), dir.join("gateway.toml"))?;
    std::fs::write(
        dir.join("gateway-uncommented.toml"),
        uncomment(&read(&Program::Gateway.example())?),
    )?;
    let rules_path = value_at(&example_table(Program::Gateway)?, "rules.path")
        .and_then(toml::Value::as_str)
        .unwrap_or("rules.toml")
        .to_owned();
    std::fs::copy(repo_root().join("rules/default.toml"), dir.join(rules_path))?;
    Ok(dir)
}

/// One simulated household and an edge-agent config (from the example, commented keys
/// uncommented) whose device is that household.
struct AgentFixture {
    _simulator: Proc,
    dir: PathBuf,
    household: Value,
}

impl AgentFixture {
    fn start(test: &str) -> anyhow::Result<AgentFixture> {
        let dir = scratch_dir(test)?;
        let profiles = repo_root().join("profiles").display().to_string();
        let (simulator, _) = Proc::start(
            "simulator",
            &binary("simulator")?,
            &[
                "serve",
                "--households",
                "1",
                "--seed",
                "3",
                "--profiles",
                &profiles,
                "--http",
                "127.0.0.1:0",
                "--manifest",
                "manifest.json",
            ],
            &dir,
            true,
        )?;
        let manifest: Value = serde_json::from_str(&read(&dir.join("manifest.json"))?)?;
        let household = manifest[0].clone();
        ensure!(household.is_object(), "no household in {manifest}");
        Ok(AgentFixture {
            _simulator: simulator,
            dir,
            household,
        })
    }

    /// The example (commented keys uncommented) with its first device pointed at the simulated
    /// household. Further devices and the RS-485 buses are dropped (no serial port here); the
    /// TLS files it names are created empty beside the config (the agent checks they exist).
    fn config(&self, profiles_dir: &str) -> anyhow::Result<String> {
        let mut table = example_table(Program::EdgeAgent)?;
        table.insert("profiles_dir".into(), profiles_dir.into());
        table.remove("buses");
        if let Some(tls) = value_at(&table, "mqtt.tls").and_then(toml::Value::as_table) {
            for path in tls.values().filter_map(toml::Value::as_str) {
                let path = self.dir.join(path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(path, "")?;
            }
        }
        let devices = table
            .get_mut("devices")
            .and_then(toml::Value::as_array_mut)
            .ok_or_else(|| anyhow!("the edge-agent example has no [[devices]]"))?;
        devices.truncate(1);
        let device = devices
            .first_mut()
            .and_then(toml::Value::as_table_mut)
            .ok_or_else(|| anyhow!("the edge-agent example's first device is not a table"))?;
        let field = |name: &str| self.household[name].as_str().unwrap_or_default().to_owned();
        device.insert("id".into(), field("device_id").into());
        device.insert("profile".into(), field("profile_id").into());
        device.insert(
            "unit_id".into(),
            toml::Value::Integer(self.household["unit_id"].as_i64().unwrap_or(1)),
        );
        let mut transport = toml::Table::new();
        transport.insert("type".into(), "tcp".into());
        transport.insert("address".into(), field("modbus_addr").into());
        device.insert("transport".into(), toml::Value::Table(transport));
        // The guard's coil is on the box's device, its hook a program this machine has, and
        // its rules the built-in pack (the example's `rules_file` names a file of a box's own).
        if let Some(guard) = table.get_mut("guard").and_then(toml::Value::as_table_mut) {
            guard.remove("rules_file");
            if let Some(coil) = guard.get_mut("coil").and_then(toml::Value::as_table_mut) {
                coil.insert("device".into(), field("device_id").into());
            }
            if let Some(hook) = guard.get_mut("hook").and_then(toml::Value::as_table_mut) {
                hook.insert("program".into(), "/bin/sh".into());
            }
        }
        Ok(toml::to_string(&table)?)
    }
}

/// `edge-agent check` on `config` with `env`.
fn agent_check(agent: &Path, config: &Path, env: &[(String, String)]) -> anyhow::Result<Output> {
    let config = config.display().to_string();
    run(agent, &["check", "--config", &config], env)
}

// ------------------------------------------------------------------ the tests

#[test]
fn every_key_of_the_example_configs_is_in_the_reference_and_every_documented_key_is_in_an_example(
) -> anyhow::Result<()> {
    for program in [Program::Gateway, Program::EdgeAgent] {
        let examples = example_keys(program)?;
        let documented = doc_keys(program)?;
        let undocumented: Vec<_> = examples.difference(&documented).collect();
        let missing: Vec<_> = documented.difference(&examples).collect();
        assert!(
            undocumented.is_empty(),
            "{program:?}: keys in {} but not in deploy/CONFIGURATION.md: {undocumented:?}",
            program.example().display()
        );
        assert!(
            missing.is_empty(),
            "{program:?}: keys in deploy/CONFIGURATION.md but in no line (commented or not) of {}: {missing:?}",
            program.example().display()
        );
    }
    Ok(())
}

#[test]
fn every_field_of_the_config_structs_is_documented_in_the_reference() -> anyhow::Result<()> {
    for program in [Program::Gateway, Program::EdgeAgent] {
        let fields = struct_keys(program)?;
        assert!(
            fields.len() >= 10,
            "{program:?}: only {} fields found in {}; is the source parser still right? {fields:?}",
            fields.len(),
            program.source().display()
        );
        let documented = doc_keys(program)?;
        let missing: Vec<_> = fields.keys().filter(|k| !documented.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "{program:?}: fields of {} missing from deploy/CONFIGURATION.md: {missing:?}",
            program.source().display()
        );
        let without_doc_comment: Vec<_> = fields
            .iter()
            .filter(|(_, field)| !field.documented)
            .map(|(k, _)| k)
            .collect();
        assert!(
            without_doc_comment.is_empty(),
            "{program:?}: config fields without a /// doc comment in {}: {without_doc_comment:?}",
            program.source().display()
        );
        // And nothing documented that the structs no longer have.
        let stale: Vec<_> = documented
            .iter()
            .filter(|k| !fields.contains_key(*k))
            .collect();
        assert!(
            stale.is_empty(),
            "{program:?}: deploy/CONFIGURATION.md documents keys that {} does not have: {stale:?}",
            program.source().display()
        );
    }
    Ok(())
}

#[test]
fn the_environment_variable_column_follows_the_prefix_and_key_path() -> anyhow::Result<()> {
    for program in [Program::Gateway, Program::EdgeAgent] {
        let examples = example_table(program)?;
        for row in doc_rows(program)? {
            // Sections and arrays (of tables or of values) have no variable of their own.
            let section = matches!(
                value_at(&examples, &row.key),
                Some(toml::Value::Table(_) | toml::Value::Array(_))
            );
            let expected = if row.key.contains("[]") || section {
                "—".to_owned()
            } else {
                format!(
                    "{}__{}",
                    program.env_prefix(),
                    row.key.replace('.', "__").to_uppercase()
                )
            };
            assert_eq!(row.env, expected, "{program:?} key {}", row.key);
        }
    }
    Ok(())
}

#[test]
fn the_gateway_example_states_every_default_the_reference_states() -> anyhow::Result<()> {
    // The gateway example sets every key to its default; the reference must say the same.
    let original: toml::Table = toml::from_str(&read(&Program::Gateway.example())?)?;
    let mut compared = 0;
    for row in doc_rows(Program::Gateway)? {
        let Some(literal) = row
            .default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
        else {
            continue;
        };
        let documented: toml::Table = toml::from_str(&format!("v = {literal}"))
            .with_context(|| format!("default of {} is not a TOML value: {literal}", row.key))?;
        let in_example = value_at(&original, &row.key).ok_or_else(|| {
            anyhow!(
                "{} has a default but is commented out in the example",
                row.key
            )
        })?;
        assert_eq!(
            Some(in_example),
            documented.get("v"),
            "default of {} in CONFIGURATION.md vs deploy/gateway.toml",
            row.key
        );
        compared += 1;
    }
    assert!(compared >= 8, "only {compared} defaults compared");
    Ok(())
}

#[test]
fn the_gateway_accepts_its_example_with_and_without_the_commented_keys() -> anyhow::Result<()> {
    let dir = gateway_scratch("deploy-gateway-example")?;
    for file in ["gateway.toml", "gateway-uncommented.toml"] {
        let output = gateway_check(&dir.join(file), &[])?;
        assert!(output.status.success(), "{file}: {}", describe(&output));
        assert!(
            String::from_utf8_lossy(&output.stdout).contains("configuration is valid"),
            "{}",
            describe(&output)
        );
    }
    Ok(())
}

#[test]
fn every_documented_gateway_environment_variable_is_accepted_and_read() -> anyhow::Result<()> {
    let dir = gateway_scratch("deploy-gateway-env")?;
    let config = dir.join("gateway.toml");
    let examples = example_table(Program::Gateway)?;
    let variables = documented_env(Program::Gateway)?;
    assert!(variables.len() >= 10, "{variables:?}");
    for (variable, key) in &variables {
        // The gateway refuses unknown keys, so success proves the variable names a real key.
        let value = value_at(&examples, key)
            .map(env_value)
            .ok_or_else(|| anyhow!("no example value for {key}"))?;
        let output = gateway_check(&config, &[(variable.clone(), value.clone())])?;
        assert!(
            output.status.success(),
            "{variable}={value}: {}",
            describe(&output)
        );
    }
    // The controls: an unknown variable and a bad value are refused, so the successes mean something.
    let output = gateway_check(
        &config,
        &[("GATEWAY__BROKER__NO_SUCH_KEY".into(), "1".into())],
    )?;
    assert!(!output.status.success(), "{}", describe(&output));
    let output = gateway_check(
        &config,
        &[("GATEWAY__HTTP__LISTEN".into(), "not-an-address".into())],
    )?;
    assert!(!output.status.success(), "{}", describe(&output));
    Ok(())
}

/// `NAME=value` assignments of `prefix` variables in a deploy file (units, Dockerfile, compose,
/// env files, docs), and every variable name it mentions.
fn env_mentions(text: &str, prefix: &str) -> (BTreeSet<String>, Vec<(String, String)>) {
    let mut names = BTreeSet::new();
    let mut assignments = Vec::new();
    let needle = format!("{prefix}__");
    let mut rest = text;
    while let Some(start) = rest.find(&needle) {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        let name = tail[..end].trim_end_matches('_').to_owned();
        let after = &tail[end..];
        // Both `NAME=value` (units, Dockerfile, env files) and `NAME: value` (compose).
        let value = after
            .strip_prefix('=')
            .or_else(|| after.strip_prefix(": "))
            .map(|v| {
                v.split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == '`')
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            });
        let preceded_ok = start == 0
            || !rest[..start]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if preceded_ok && !name.ends_with("SECTION__KEY") && name.len() > needle.len() {
            if let Some(value) = value.filter(|v| !v.is_empty() && !v.contains("...")) {
                assignments.push((name.clone(), value));
            }
            names.insert(name);
        }
        rest = &tail[end..];
    }
    (names, assignments)
}

fn deploy_files() -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut stack = vec![deploy_dir()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[test]
fn every_environment_variable_named_in_deploy_files_is_documented_and_the_gateway_accepts_the_assignments(
) -> anyhow::Result<()> {
    let dir = gateway_scratch("deploy-env-mentions")?;
    let mut tls: Option<PathBuf> = None;
    let mut checked = 0;
    for program in [Program::Gateway, Program::EdgeAgent] {
        let documented = documented_env(program)?;
        for file in deploy_files()? {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            let (names, assignments) = env_mentions(&text, program.env_prefix());
            for name in &names {
                assert!(
                    documented.contains_key(name),
                    "{} names {name}, which deploy/CONFIGURATION.md does not document",
                    file.display()
                );
            }
            if matches!(program, Program::Gateway) && !assignments.is_empty() {
                // %S in systemd units is the state directory; check-config does not open the store.
                let assignments: Vec<(String, String)> = assignments
                    .into_iter()
                    .map(|(k, v)| (k, v.replace("%S", "/var/lib")))
                    .collect();
                // TLS switched on (the Dockerfile, the runbook) reads the broker's files: the
                // ones `gateway certs` makes stand in for the mount, under the same names.
                let tls_on = assignments
                    .iter()
                    .any(|(k, v)| k == "GATEWAY__BROKER__TLS__ENABLED" && v == "true");
                let assignments = if tls_on {
                    if tls.is_none() {
                        tls = Some(container_tls_files(&dir)?);
                    }
                    with_tls_files(assignments, tls.as_deref().unwrap_or(&dir))
                } else {
                    assignments
                };
                let output = gateway_check(&dir.join("gateway.toml"), &assignments)?;
                assert!(
                    output.status.success(),
                    "{} sets {assignments:?}, which the gateway refuses: {}",
                    file.display(),
                    describe(&output)
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 3,
        "expected GATEWAY__ assignments in the unit, the Dockerfile and compose; found {checked} files"
    );
    Ok(())
}

#[test]
fn the_edge_agent_example_with_every_commented_key_polls_a_device_and_reads_every_documented_variable(
) -> anyhow::Result<()> {
    let fixture = AgentFixture::start("deploy-agent-example")?;
    let agent = binary("edge-agent")?;
    let profiles = repo_root().join("profiles").display().to_string();
    let config = fixture.dir.join("agent.toml");
    std::fs::write(&config, fixture.config(&profiles)?)?;
    let output = agent_check(&agent, &config, &[])?;
    let device = fixture.household["device_id"].as_str().unwrap_or_default();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(device),
        "{}",
        describe(&output)
    );

    let examples = example_table(Program::EdgeAgent)?;
    let variables = documented_env(Program::EdgeAgent)?;
    assert!(variables.len() >= 10, "{variables:?}");
    // The guard's rule file as the example names it, beside the config: the built-in pack.
    std::fs::copy(
        repo_root().join("rules/default.toml"),
        fixture.dir.join("rules.toml"),
    )?;
    for (variable, key) in &variables {
        let value = if key == "profiles_dir" {
            profiles.clone()
        } else if key == "guard.coil.device" {
            device.to_owned()
        } else if key == "guard.hook.program" {
            "/bin/sh".to_owned()
        } else {
            value_at(&examples, key)
                .map(env_value)
                .ok_or_else(|| anyhow!("no example value for {key}"))?
        };
        let output = agent_check(&agent, &config, &[(variable.clone(), value.clone())])?;
        assert!(
            output.status.success(),
            "{variable}={value}: {}",
            describe(&output)
        );
    }
    let output = agent_check(
        &agent,
        &config,
        &[("EDGE_AGENT__MQTT__NO_SUCH_KEY".into(), "1".into())],
    )?;
    assert!(!output.status.success(), "{}", describe(&output));
    let output = agent_check(
        &agent,
        &config,
        &[("EDGE_AGENT__POLLING__INTERVAL".into(), "1ms".into())],
    )?;
    assert!(!output.status.success(), "{}", describe(&output));
    Ok(())
}

fn install(root: &Path, extra: &[&str]) -> anyhow::Result<Output> {
    let binary = binary("edge-agent")?.display().to_string();
    let root = root.display().to_string();
    let mut args = vec![
        "--binary",
        binary.as_str(),
        "--root",
        root.as_str(),
        "--no-systemctl",
    ];
    args.extend_from_slice(extra);
    Command::new("bash")
        .arg(deploy_dir().join("edge/install.sh"))
        .args(&args)
        .output()
        .context("cannot run deploy/edge/install.sh")
}

#[test]
fn the_edge_installer_lays_out_a_box_that_passes_the_installers_check_and_keeps_its_config(
) -> anyhow::Result<()> {
    let fixture = AgentFixture::start("deploy-install")?;
    let root = fixture.dir.join("root");
    let box_config = fixture.dir.join("box.toml");
    // The box gets no TLS files here: drop [mqtt.tls] from its config.
    let mut box_table: toml::Table = toml::from_str(&fixture.config("profiles")?)?;
    if let Some(mqtt) = box_table
        .get_mut("mqtt")
        .and_then(toml::Value::as_table_mut)
    {
        mqtt.remove("tls");
    }
    std::fs::write(&box_config, toml::to_string(&box_table)?)?;
    let box_config_arg = box_config.display().to_string();

    let output = install(&root, &["--config", &box_config_arg])?;
    assert!(
        output.status.success(),
        "first install: {}",
        describe(&output)
    );
    let installed = root.join("etc/heating/edge-agent.toml");
    let agent = root.join("usr/local/bin/edge-agent");
    for path in [
        &agent,
        &installed,
        &root.join("etc/heating/edge-agent.env"),
        &root.join("etc/systemd/system/heating-edge-agent.service"),
    ] {
        assert!(path.exists(), "{} was not installed", path.display());
    }
    for profile in std::fs::read_dir(repo_root().join("profiles"))? {
        let name = profile?.file_name();
        assert!(
            root.join("etc/heating/profiles").join(&name).exists(),
            "profile {name:?} was not installed"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(root.join("etc/heating/edge-agent.env"))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the env file holds secrets: mode {mode:o}");
    }

    // The checklist's last step, on the installed layout (profiles from /etc/heating/profiles).
    let output = agent_check(&agent, &installed, &[])?;
    assert!(output.status.success(), "{}", describe(&output));

    // Again with the same config: nothing changes, no error.
    let output = install(&root, &["--config", &box_config_arg])?;
    assert!(
        output.status.success(),
        "second install: {}",
        describe(&output)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("kept"));
    assert_eq!(read(&installed)?, read(&box_config)?);

    // A different config is refused without --force, and the box is left as it was.
    let changed = fixture.dir.join("changed.toml");
    std::fs::write(
        &changed,
        read(&box_config)?.replace("interval = \"10s\"", "interval = \"20s\""),
    )?;
    ensure!(
        read(&changed)? != read(&box_config)?,
        "the changed config should differ"
    );
    let changed_arg = changed.display().to_string();
    let output = install(&root, &["--config", &changed_arg])?;
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--force"),
        "{}",
        describe(&output)
    );
    assert_eq!(read(&installed)?, read(&box_config)?);

    // With --force it is replaced and the old one kept beside it.
    let output = install(&root, &["--config", &changed_arg, "--force"])?;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(read(&installed)?, read(&changed)?);
    assert_eq!(
        read(&root.join("etc/heating/edge-agent.toml.bak"))?,
        read(&box_config)?
    );
    Ok(())
}

#[test]
fn the_edge_installer_without_a_config_installs_the_example_pointed_at_the_installed_profiles(
) -> anyhow::Result<()> {
    let dir = scratch_dir("deploy-install-template")?;
    let root = dir.join("root");
    let output = install(&root, &[])?;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("EDIT IT"));
    let mut installed: toml::Table =
        toml::from_str(&read(&root.join("etc/heating/edge-agent.toml"))?)?;
    assert_eq!(
        installed.remove("profiles_dir"),
        Some(toml::Value::String("profiles".into()))
    );
    let mut example: toml::Table = toml::from_str(&read(&Program::EdgeAgent.example())?)?;
    example.remove("profiles_dir");
    assert_eq!(installed, example);
    Ok(())
}

#[test]
fn the_container_health_probe_passes_on_a_serving_gateway_and_fails_otherwise() -> anyhow::Result<()>
{
    let dir = scratch_dir("deploy-healthz")?;
    let (mut gateway, ready) = GatewayConfig::default().start("gateway", &dir)?;
    let http = ready["http"].as_str().unwrap_or_default().to_owned();
    let mqtt = ready["mqtt"].as_str().unwrap_or_default().to_owned();
    let probe = deploy_dir().join("container/healthz");
    let status = |address: &str| -> anyhow::Result<Output> {
        Command::new("bash")
            .arg(&probe)
            .arg(address)
            .output()
            .context("cannot run deploy/container/healthz")
    };
    let output = status(&http)?;
    assert!(output.status.success(), "{}", describe(&output));
    let output = status(&mqtt)?;
    assert!(
        !output.status.success(),
        "the MQTT port is not a healthy HTTP API: {}",
        describe(&output)
    );
    gateway.kill()?;
    gateway.wait_exit(Duration::from_secs(10))?;
    let output = status(&http)?;
    assert!(
        !output.status.success(),
        "a dead gateway is not healthy: {}",
        describe(&output)
    );
    Ok(())
}

// ------------------------------------------------------------------ defaults in the source

/// The body of every `fn name() -> T { body }` in the program's `src/`, as one trimmed line.
fn default_functions(program: Program) -> anyhow::Result<BTreeMap<String, String>> {
    let mut files = Vec::new();
    if let Some(src) = program.source().parent() {
        rust_files(src, &mut files)?;
    }
    let mut functions = BTreeMap::new();
    for file in files {
        let text = read(&file)?;
        let mut lines = text.lines();
        while let Some(line) = lines.next() {
            let Some(rest) = line.strip_prefix("fn ") else {
                continue;
            };
            let Some((name, _)) = rest.split_once("() -> ") else {
                continue;
            };
            if !line.ends_with('{') {
                continue;
            }
            let body: Vec<&str> = lines
                .by_ref()
                .take_while(|l| *l != "}")
                .map(str::trim)
                .collect();
            functions.insert(name.to_owned(), body.join(" "));
        }
    }
    Ok(functions)
}

/// A default as it can be compared: durations in milliseconds, everything else as TOML
/// writes it.
#[derive(Debug, PartialEq)]
enum DefaultValue {
    Millis(u128),
    Integer(i128),
    Float(f64),
    Bool(bool),
    Text(String),
}

/// `10 * 60`, `16 * 1024`, `50_000`.
fn integer_expression(text: &str) -> Option<i128> {
    text.split('*')
        .map(|factor| factor.trim().replace('_', "").parse::<i128>().ok())
        .try_fold(1i128, |product, factor| {
            factor.and_then(|f| product.checked_mul(f))
        })
}

/// `ReadOnly` -> `read_only`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (index, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if index > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The value of a default function's body, for the forms the config sources use.
fn evaluate_default(body: &str) -> Option<DefaultValue> {
    let body = body.trim();
    let inside = |prefix: &str| {
        body.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(seconds) = inside("Duration::from_secs(") {
        return integer_expression(seconds).map(|s| DefaultValue::Millis(s.unsigned_abs() * 1000));
    }
    if let Some(millis) = inside("Duration::from_millis(") {
        return integer_expression(millis).map(|m| DefaultValue::Millis(m.unsigned_abs()));
    }
    if let Some(address) = inside("SocketAddr::from(([") {
        // `127, 0, 0, 1], 8080)`
        let (ip, port) = address.split_once("],")?;
        let ip: Vec<&str> = ip.split(',').map(str::trim).collect();
        let port = port.trim().trim_end_matches(')').trim();
        return Some(DefaultValue::Text(format!("{}:{port}", ip.join("."))));
    }
    for (prefix, suffix) in [
        ("PathBuf::from(\"", "\")"),
        ("String::from(\"", "\")"),
        ("\"", "\".into()"),
        ("\"", "\".to_owned()"),
        ("\"", "\".to_string()"),
    ] {
        if let Some(text) = body
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
        {
            return Some(DefaultValue::Text(text.to_owned()));
        }
    }
    if body == "true" || body == "false" {
        return Some(DefaultValue::Bool(body == "true"));
    }
    if let Some(integer) = integer_expression(body) {
        return Some(DefaultValue::Integer(integer));
    }
    if let Ok(float) = body.parse::<f64>() {
        return Some(DefaultValue::Float(float));
    }
    // An enum variant: `AuthMode::Tokens` is written "tokens" (serde rename_all = snake_case).
    let (enum_name, variant) = body.rsplit_once("::")?;
    (enum_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == ':')
        && variant.chars().all(|c| c.is_ascii_alphanumeric()))
    .then(|| DefaultValue::Text(snake_case(variant)))
}

/// `"1h 30m"`, `"500ms"`, `"10s"` in milliseconds.
fn humantime_millis(text: &str) -> Option<u128> {
    let mut total = 0u128;
    for part in text.split_whitespace() {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        let number: u128 = digits.parse().ok()?;
        let unit = match &part[digits.len()..] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total += number * unit;
    }
    Some(total)
}

/// A documented default (the TOML literal in the reference) as a comparable value.
fn documented_default(literal: &toml::Value, duration: bool) -> Option<DefaultValue> {
    Some(match literal {
        toml::Value::String(s) if duration => DefaultValue::Millis(humantime_millis(s)?),
        toml::Value::String(s) => DefaultValue::Text(s.clone()),
        toml::Value::Integer(i) => DefaultValue::Integer(i128::from(*i)),
        toml::Value::Float(f) => DefaultValue::Float(*f),
        toml::Value::Boolean(b) => DefaultValue::Bool(*b),
        _ => return None,
    })
}

#[test]
fn every_default_in_the_reference_is_the_default_in_the_gateway_source() -> anyhow::Result<()> {
    let fields = struct_keys(Program::Gateway)?;
    let functions = default_functions(Program::Gateway)?;
    let mut compared = 0;
    let mut wrong = Vec::new();
    for row in doc_rows(Program::Gateway)? {
        let Some(field) = fields.get(&row.key) else {
            continue; // stale rows: every_field_of_the_config_structs_is_documented_in_the_reference
        };
        let literal = row
            .default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'));
        let source = match &field.default {
            FieldDefault::Function(function) => {
                let body = functions.get(function).ok_or_else(|| {
                    anyhow!("{}: no `fn {function}()` in the gateway's src/", row.key)
                })?;
                evaluate_default(body).ok_or_else(|| {
                    anyhow!(
                        "{}: cannot evaluate `{body}` (fn {function}); extend evaluate_default",
                        row.key
                    )
                })?
            }
            FieldDefault::Plain if inner_type(&field.ty).0 == "bool" => DefaultValue::Bool(false),
            _ => continue,
        };
        let Some(literal) = literal else {
            wrong.push(format!(
                "{}: the source has a default ({source:?}) but the reference says {:?}",
                row.key, row.default
            ));
            continue;
        };
        let parsed: toml::Table = toml::from_str(&format!("v = {literal}"))
            .with_context(|| format!("default of {} is not a TOML value: {literal}", row.key))?;
        let duration = field.ty.contains("Duration");
        let documented = parsed
            .get("v")
            .and_then(|v| documented_default(v, duration));
        if documented.as_ref() != Some(&source) {
            wrong.push(format!(
                "{}: deploy/CONFIGURATION.md says {literal}, the source {source:?}",
                row.key
            ));
        }
        compared += 1;
    }
    assert!(
        wrong.is_empty(),
        "defaults in deploy/CONFIGURATION.md that are not the gateway's: {wrong:#?}"
    );
    assert!(
        compared >= 40,
        "only {compared} defaults compared with the source"
    );
    Ok(())
}

#[test]
fn the_default_evaluator_reads_the_forms_the_config_sources_use() {
    for (body, expected) in [
        (
            "Duration::from_secs(10 * 60)",
            DefaultValue::Millis(600_000),
        ),
        ("Duration::from_millis(2)", DefaultValue::Millis(2)),
        (
            "SocketAddr::from(([127, 0, 0, 1], 1883))",
            DefaultValue::Text("127.0.0.1:1883".into()),
        ),
        (
            "PathBuf::from(\"tls/ca.pem\")",
            DefaultValue::Text("tls/ca.pem".into()),
        ),
        ("\"heating\".into()", DefaultValue::Text("heating".into())),
        ("32 * 1024 * 1024", DefaultValue::Integer(33_554_432)),
        ("50_000", DefaultValue::Integer(50_000)),
        ("0.75", DefaultValue::Float(0.75)),
        ("AuthMode::Tokens", DefaultValue::Text("tokens".into())),
        ("Role::ReadOnly", DefaultValue::Text("read_only".into())),
    ] {
        assert_eq!(evaluate_default(body), Some(expected), "{body}");
    }
    assert_eq!(evaluate_default("compute(1)"), None);
    assert_eq!(humantime_millis("1h 30m"), Some(5_400_000));
    assert_eq!(humantime_millis("500ms"), Some(500));
    assert_eq!(humantime_millis("ten"), None);
}

// ------------------------------------------------------------------ the container

/// The TLS file variables of the container and the file `gateway certs` makes for each.
const TLS_FILES: [(&str, &str); 3] = [
    ("GATEWAY__BROKER__TLS__CA_FILE", "ca.pem"),
    ("GATEWAY__BROKER__TLS__CERT_FILE", "server.pem"),
    ("GATEWAY__BROKER__TLS__KEY_FILE", "server.key"),
];

/// The container's certificate folder made as RUNBOOK.md "The container" says: `gateway
/// certs init-ca`, `gateway certs server` and `ca.pem` copied beside the server's files.
fn container_tls_files(dir: &Path) -> anyhow::Result<PathBuf> {
    let gateway = binary("gateway")?;
    let ca = dir.join("ca").display().to_string();
    let tls = dir.join("tls");
    let tls_arg = tls.display().to_string();
    for args in [
        vec!["certs", "init-ca", "--out", &ca],
        vec![
            "certs",
            "server",
            "--ca",
            &ca,
            "--host",
            "localhost",
            "--out",
            &tls_arg,
        ],
    ] {
        let output = run(&gateway, &args, &[])?;
        ensure!(
            output.status.success(),
            "gateway {args:?}: {}",
            describe(&output)
        );
    }
    std::fs::copy(dir.join("ca/ca.pem"), tls.join("ca.pem"))?;
    Ok(tls)
}

/// `assignments` with the broker's TLS files in `tls`: an assigned path keeps its file name
/// (so a name `gateway certs` does not make fails), an unassigned one gets the certs' name.
fn with_tls_files(assignments: Vec<(String, String)>, tls: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (name, value) in assignments {
        if TLS_FILES.iter().any(|(variable, _)| *variable == name) {
            let file = Path::new(&value)
                .file_name()
                .map(|f| tls.join(f))
                .unwrap_or_else(|| tls.to_path_buf());
            out.push((name, file.display().to_string()));
        } else {
            out.push((name, value));
        }
    }
    for (variable, file) in TLS_FILES {
        if !out.iter().any(|(name, _)| name == variable) {
            out.push((variable.to_owned(), tls.join(file).display().to_string()));
        }
    }
    out
}

/// Debian's python3 (with python3-yaml, which deploy/check installs), else the one on PATH.
fn python() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.exists() {
        debian
    } else {
        PathBuf::from("python3")
    }
}

/// `deploy/check_files.py ARGS`.
fn check_files(args: &[&str]) -> anyhow::Result<Output> {
    Command::new(python())
        .arg(deploy_dir().join("check_files.py"))
        .args(args)
        .output()
        .context("cannot run deploy/check_files.py (python3 with python3-yaml; deploy/check installs it)")
}

/// The 1-based number of the first line of `text` that contains `needle`.
fn line_number(text: &str, needle: &str) -> anyhow::Result<usize> {
    text.lines()
        .position(|line| line.contains(needle))
        .map(|index| index + 1)
        .ok_or_else(|| anyhow!("no line contains {needle:?}"))
}

/// The container's files copied into `dir`, for the security check to read.
struct ContainerCopy {
    dockerfile: String,
    compose: String,
    config: String,
    env: String,
}

impl ContainerCopy {
    fn real() -> anyhow::Result<ContainerCopy> {
        Ok(ContainerCopy {
            dockerfile: read(&deploy_dir().join("container/Dockerfile"))?,
            compose: read(&deploy_dir().join("container/compose.yaml"))?,
            config: read(&deploy_dir().join("gateway.toml"))?,
            env: read(&deploy_dir().join("container/env.example"))?,
        })
    }

    /// Writes the four files into `dir` and runs the security check on them.
    fn check(&self, dir: &Path) -> anyhow::Result<Output> {
        std::fs::create_dir_all(dir)?;
        let files = [
            ("Dockerfile", &self.dockerfile),
            ("compose.yaml", &self.compose),
            ("gateway.toml", &self.config),
            ("env.example", &self.env),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text)?;
        }
        let path = |name: &str| dir.join(name).display().to_string();
        check_files(&[
            "security",
            "--dockerfile",
            &path("Dockerfile"),
            "--compose",
            &path("compose.yaml"),
            "--config",
            &path("gateway.toml"),
            "--env-file",
            &path("env.example"),
        ])
    }
}

/// `text` with `old` replaced by `new`, which must change it.
fn replaced(text: &str, old: &str, new: &str) -> anyhow::Result<String> {
    ensure!(text.contains(old), "the file no longer contains {old:?}");
    Ok(text.replacen(old, new, 1))
}

#[test]
fn the_container_security_check_passes_the_real_files_and_refuses_insecure_copies_by_file_and_line(
) -> anyhow::Result<()> {
    // The real files, as deploy/check runs it.
    let output = check_files(&["security"])?;
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("ok   container security"),
        "{}",
        describe(&output)
    );
    let dir = scratch_dir("deploy-container-security")?;
    let real = ContainerCopy::real()?;
    // The copies are checked the same way: unchanged, they pass.
    let output = real.check(&dir.join("unchanged"))?;
    assert!(output.status.success(), "{}", describe(&output));

    // Each insecure change alone: (what, the changed copy, file, text of the offending line,
    // what the message must say).
    type Case = (
        &'static str,
        ContainerCopy,
        &'static str,
        &'static str,
        &'static str,
    );
    let with = |change: &dyn Fn(&mut ContainerCopy) -> anyhow::Result<()>| {
        let mut copy = ContainerCopy::real()?;
        change(&mut copy)?;
        anyhow::Ok(copy)
    };
    let cases: Vec<Case> = vec![
        (
            "compose publishes the plain MQTT port",
            with(&|c| {
                c.compose = replaced(
                    &c.compose,
                    "      - \"8883:8883\"\n",
                    "      - \"8883:8883\"\n      - \"1883:1883\"\n",
                )?;
                Ok(())
            })?,
            "compose.yaml",
            "\"1883:1883\"",
            "service gateway publishes \"1883:1883\": 1883 is the plain MQTT port",
        ),
        (
            "compose publishes the HTTP API on every interface",
            with(&|c| {
                c.compose = replaced(&c.compose, "\"127.0.0.1:8080:8080\"", "\"8080:8080\"")?;
                Ok(())
            })?,
            "compose.yaml",
            "\"8080:8080\"",
            "publishes the HTTP API \"8080:8080\" on every interface",
        ),
        (
            "compose does not publish the TLS listener",
            with(&|c| {
                c.compose = replaced(&c.compose, "      - \"8883:8883\"\n", "")?;
                Ok(())
            })?,
            "compose.yaml",
            "    ports:",
            "does not publish the mutual-TLS listener 8883",
        ),
        (
            "compose switches TLS off",
            with(&|c| {
                c.compose = replaced(
                    &c.compose,
                    "GATEWAY__BROKER__TLS__ENABLED: \"true\"",
                    "GATEWAY__BROKER__TLS__ENABLED: \"false\"",
                )?;
                Ok(())
            })?,
            "compose.yaml",
            "GATEWAY__BROKER__TLS__ENABLED",
            "broker.tls.enabled is false for compose",
        ),
        (
            "the image switches TLS off",
            with(&|c| {
                c.dockerfile = replaced(
                    &c.dockerfile,
                    "GATEWAY__BROKER__TLS__ENABLED=true",
                    "GATEWAY__BROKER__TLS__ENABLED=false",
                )?;
                Ok(())
            })?,
            "Dockerfile",
            "GATEWAY__BROKER__TLS__ENABLED=false",
            "broker.tls.enabled is false for the image alone",
        ),
        (
            "the image puts the plain listener on every interface",
            with(&|c| {
                c.dockerfile = replaced(
                    &c.dockerfile,
                    "GATEWAY__BROKER__LISTEN=127.0.0.1:1883",
                    "GATEWAY__BROKER__LISTEN=0.0.0.0:1883",
                )?;
                Ok(())
            })?,
            "Dockerfile",
            "GATEWAY__BROKER__LISTEN=0.0.0.0:1883",
            "broker.listen 0.0.0.0:1883 is not a loopback address",
        ),
        (
            "the image exposes the plain MQTT port",
            with(&|c| {
                c.dockerfile = replaced(&c.dockerfile, "EXPOSE 8883", "EXPOSE 1883 8883")?;
                Ok(())
            })?,
            "Dockerfile",
            "EXPOSE 1883 8883",
            "EXPOSE 1883: the plain MQTT port",
        ),
        (
            "compose sets an insecure key",
            with(&|c| {
                c.compose = replaced(
                    &c.compose,
                    "      GATEWAY__BROKER__TLS__ENABLED: \"true\"\n",
                    "      GATEWAY__BROKER__TLS__ENABLED: \"true\"\n      GATEWAY__BROKER__INSECURE_PLAIN_LISTENER: \"true\"\n",
                )?;
                Ok(())
            })?,
            "compose.yaml",
            "GATEWAY__BROKER__INSECURE_PLAIN_LISTENER",
            "GATEWAY__BROKER__INSECURE_PLAIN_LISTENER = true: an `insecure` key is switched on",
        ),
        (
            "the config file sets an insecure key",
            with(&|c| {
                c.config = replaced(
                    &c.config,
                    "insecure_plain_listener = false",
                    "insecure_plain_listener = true",
                )?;
                Ok(())
            })?,
            "gateway.toml",
            "insecure_plain_listener = true",
            "broker.insecure_plain_listener = true: an `insecure` key is switched on",
        ),
        (
            "the certificates are mounted writable",
            with(&|c| {
                c.compose = replaced(&c.compose, ":/etc/heating/tls:ro", ":/etc/heating/tls")?;
                Ok(())
            })?,
            "Dockerfile",
            "GATEWAY__BROKER__TLS__KEY_FILE=",
            "broker.tls.key_file /etc/heating/tls/server.key is not inside a read-only mount",
        ),
    ];
    for (index, (what, copy, file, offending, message)) in cases.into_iter().enumerate() {
        let output = copy.check(&dir.join(format!("case-{index}")))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !output.status.success(),
            "{what}: the insecure copy passed: {}",
            describe(&output)
        );
        let text = match file {
            "compose.yaml" => &copy.compose,
            "Dockerfile" => &copy.dockerfile,
            "gateway.toml" => &copy.config,
            _ => &copy.env,
        };
        let place = format!("{file}:{}: ", line_number(text, offending)?);
        assert!(
            stdout
                .lines()
                .any(|line| line.contains(&place) && line.contains(message)),
            "{what}: expected a FAIL line naming {place:?} and saying {message:?}; got:\n{stdout}"
        );
    }
    Ok(())
}

/// A plain HTTP/1.0 GET: the status line and the body.
fn http_get(address: &str, path: &str, token: Option<&str>) -> anyhow::Result<(String, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address)
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    Ok((
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    ))
}

/// `IP:port` with the port set to 0 (a free one), the address kept.
fn any_port(address: &str) -> anyhow::Result<String> {
    let address: std::net::SocketAddr = address
        .parse()
        .with_context(|| format!("{address} is not a socket address"))?;
    Ok(std::net::SocketAddr::new(address.ip(), 0).to_string())
}

#[test]
fn the_containers_environment_runs_a_gateway_with_tls_on_the_plain_listener_on_loopback_and_a_passing_health_probe(
) -> anyhow::Result<()> {
    let dir = scratch_dir("deploy-container-run")?;
    let tls = container_tls_files(&dir)?;
    std::fs::copy(Program::Gateway.example(), dir.join("gateway.toml"))?;
    // The image's and compose's variables as deploy/check gets them, the TLS files from the
    // folder above; only the ports (free ones, same addresses) and the store differ.
    let tls_arg = tls.display().to_string();
    let output = check_files(&["gateway-env", "--tls-dir", &tls_arg])?;
    ensure!(output.status.success(), "{}", describe(&output));
    let mut env: BTreeMap<String, String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_eq!(
        env.get("GATEWAY__BROKER__TLS__ENABLED").map(String::as_str),
        Some("true"),
        "{env:?}"
    );
    for variable in [
        "GATEWAY__BROKER__LISTEN",
        "GATEWAY__BROKER__TLS__LISTEN",
        "GATEWAY__HTTP__LISTEN",
    ] {
        let address = env
            .get(variable)
            .ok_or_else(|| anyhow!("the container sets no {variable}: {env:?}"))?;
        let free = any_port(address)?;
        env.insert(variable.to_owned(), free);
    }
    env.insert(
        "GATEWAY__STORE__PATH".into(),
        dir.join("gateway.sqlite").display().to_string(),
    );
    // The secrets compose passes from .env.
    let mut secrets = token_env()?;
    secrets.push((
        "INFLUXDB_GATEWAY_TOKEN".into(),
        "test-secret-for-influxdb".into(),
    ));
    let operator_token = secrets[0].1.clone();
    let gateway = binary("gateway")?.display().to_string();
    let mut args: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .chain(secrets.iter().map(|(k, v)| format!("{k}={v}")))
        .collect();
    args.extend([
        gateway,
        "run".into(),
        "--config".into(),
        "gateway.toml".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // `env NAME=value ... gateway run`: the variables reach this gateway only.
    let (gateway, ready) = Proc::start("gateway", Path::new("env"), &args, &dir, true)?;
    let ready = ready.unwrap_or_default();
    let mqtt: std::net::SocketAddr = ready["mqtt"].as_str().unwrap_or_default().parse()?;
    assert!(
        mqtt.ip().is_loopback(),
        "the plain listener must be on loopback: {ready}"
    );
    let tls_listen: std::net::SocketAddr = ready["mqtt_tls"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .with_context(|| {
        format!(
            "the TLS listener is not running: {ready}\n{}",
            gateway.log()
        )
    })?;
    std::net::TcpStream::connect(("127.0.0.1", tls_listen.port()))
        .with_context(|| format!("the TLS listener {tls_listen} does not accept"))?;
    let http: std::net::SocketAddr = ready["http"].as_str().unwrap_or_default().parse()?;
    let http = format!("127.0.0.1:{}", http.port());

    // The image's health check, as compose runs it.
    let probe = Command::new("bash")
        .arg(deploy_dir().join("container/healthz"))
        .arg(&http)
        .output()
        .context("cannot run deploy/container/healthz")?;
    assert!(
        probe.status.success(),
        "{}\n{}",
        describe(&probe),
        gateway.log()
    );
    // /metrics needs the token (RUNBOOK.md, "How to scrape").
    let (status, _) = http_get(&http, "/metrics", None)?;
    assert!(
        status.contains(" 401"),
        "/metrics without a token: {status}"
    );
    let (status, body) = http_get(&http, "/metrics", Some(&operator_token))?;
    assert!(status.contains(" 200"), "/metrics with a token: {status}");
    assert!(
        body.contains("gateway_broker_handshake_timeouts_total"),
        "{body}"
    );
    Ok(())
}

fn sqlite3(args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("sqlite3")
        .args(args)
        .output()
        .context("cannot run sqlite3 (Debian package sqlite3)")?;
    if !output.status.success() {
        bail!("sqlite3 {args:?}: {}", describe(&output));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbooks_online_backup_restores_into_a_gateway_that_serves_the_same_orders(
) -> anyhow::Result<()> {
    let system = System::start("deploy-backup", 2, 5).await?;
    let target = system.households[0]["device_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let category = if system.households[0]["kind"] == "gas_boiler" {
        "ignition_failure"
    } else {
        "sensor_fault"
    };
    let response = system
        .client
        .post(system.simulator_url(&format!("/households/{target}/fault")))
        .json(&json!({ "category": category }))
        .send()
        .await?;
    assert!(response.status().is_success(), "{}", response.status());
    let orders_url = system.gateway_url("/api/v1/orders");
    let orders = eventually("an order to back up", Duration::from_secs(20), || async {
        let orders = get_json(&system.client, &orders_url).await?;
        Ok((orders.as_array().is_some_and(|o| !o.is_empty())).then_some(orders))
    })
    .await
    .map_err(|e| anyhow!("{e}\n{}", system.logs()))?;
    let id = orders[0]["id"].as_i64().unwrap_or_default();

    // RUNBOOK.md "Back up": the backup script (sqlite3's online backup) while the gateway
    // writes (WAL mode); it prints the file it wrote.
    let database = system.dir.join("gateway.sqlite").display().to_string();
    let backups = system.dir.join("backups").display().to_string();
    let output = Command::new("bash")
        .arg(deploy_dir().join("systemd/heating-gateway-backup"))
        .args([&database, &backups, "30"])
        .output()
        .context("cannot run deploy/systemd/heating-gateway-backup")?;
    assert!(output.status.success(), "{}", describe(&output));
    let backup = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        backup.starts_with(&backups) && backup.ends_with(".sqlite"),
        "{backup}"
    );
    assert_eq!(sqlite3(&[&backup, "PRAGMA integrity_check;"])?.trim(), "ok");
    // A missing database is an error, not an empty backup.
    let output = Command::new("bash")
        .arg(deploy_dir().join("systemd/heating-gateway-backup"))
        .args([&format!("{database}.missing"), &backups, "30"])
        .output()?;
    assert!(!output.status.success(), "{}", describe(&output));

    // RUNBOOK.md "Restore": the copy becomes the store of a (new) gateway.
    let restore = scratch_dir("deploy-restore")?;
    std::fs::copy(&backup, restore.join("gateway.sqlite"))?;
    let (restored, ready) = GatewayConfig::default().start("gateway-restored", &restore)?;
    let http = ready["http"].as_str().unwrap_or_default().to_owned();
    let order = get_json(&system.client, &format!("http://{http}/api/v1/orders/{id}"))
        .await
        .map_err(|e| anyhow!("{e}\n{}", restored.log()))?;
    assert_eq!(order["device_id"], target.as_str(), "{order}");
    assert_eq!(order["events"][0]["kind"], "created", "{order}");
    Ok(())
}

#[test]
fn the_env_scanner_finds_names_and_assignments_in_each_syntax() {
    let (names, assignments) = env_mentions(
        "Environment=GATEWAY__STORE__PATH=%S/x\nENV GATEWAY__HTTP__LISTEN=0.0.0.0:8080 \\\n      GATEWAY__RULES__TICK: 2s\nsee GATEWAY__SECTION__KEY and `GATEWAY__BROKER__LISTEN`\nMY_GATEWAY__X=1\n",
        "GATEWAY",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        vec![
            "GATEWAY__BROKER__LISTEN",
            "GATEWAY__HTTP__LISTEN",
            "GATEWAY__RULES__TICK",
            "GATEWAY__STORE__PATH"
        ]
    );
    assert_eq!(
        assignments,
        vec![
            ("GATEWAY__STORE__PATH".to_owned(), "%S/x".to_owned()),
            (
                "GATEWAY__HTTP__LISTEN".to_owned(),
                "0.0.0.0:8080".to_owned()
            ),
            ("GATEWAY__RULES__TICK".to_owned(), "2s".to_owned()),
        ]
    );
}

#[test]
fn the_struct_parser_finds_nested_arrays_tags_and_missing_doc_comments() -> anyhow::Result<()> {
    let source = r#"
/// Root.
#[derive(Deserialize)]
pub struct Root {
    /// A.
    #[serde(default)]
    pub a: u16,
    pub b: Option<String>,
    /// C.
    #[serde(default = "default_c", with = "humantime_serde")]
    pub c: Duration,
    /// Items.
    pub items: Vec<Item>,
}

pub struct Item {
    /// How.
    pub how: How,
}

#[serde(deny_unknown_fields, tag = "type")]
pub enum How {
    /// Tcp.
    Tcp {
        /// Address.
        address: SocketAddr,
    },
}
"#;
    let items = parse_items(source);
    let mut fields = BTreeMap::new();
    walk(&items, "Root", "", &mut fields, 0)?;
    let keys: BTreeMap<String, bool> = fields
        .iter()
        .map(|(k, f)| (k.clone(), f.documented))
        .collect();
    assert_eq!(fields["a"].default, FieldDefault::Plain);
    assert_eq!(fields["b"].default, FieldDefault::None);
    assert_eq!(
        fields["c"].default,
        FieldDefault::Function("default_c".into())
    );
    let expected: BTreeMap<String, bool> = [
        ("a", true),
        ("b", false),
        ("c", true),
        ("items", true),
        ("items[].how", true),
        ("items[].how.type", true),
        ("items[].how.address", true),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(keys, expected);
    Ok(())
}

/// `gateway_...` metric names in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("gateway_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let preceded = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '/');
        if !preceded && end > "gateway_".len() {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

#[test]
fn the_runbook_explains_exactly_the_metrics_the_gateway_exports() -> anyhow::Result<()> {
    let mut exported = BTreeSet::new();
    let mut files = vec![repo_root().join("gateway/src/metrics.rs")];
    rust_files(&repo_root().join("gateway/src/api"), &mut files)?;
    rust_files(&repo_root().join("gateway/src/sinks"), &mut files)?;
    for file in &files {
        exported.extend(metric_names(&read(file)?));
    }
    assert!(exported.len() >= 10, "{exported:?}");
    let runbook = metric_names(&read(&deploy_dir().join("RUNBOOK.md"))?);
    let unexplained: Vec<_> = exported.difference(&runbook).collect();
    let unknown: Vec<_> = runbook.difference(&exported).collect();
    assert!(
        unexplained.is_empty(),
        "metrics exported by the gateway but not explained in deploy/RUNBOOK.md: {unexplained:?}"
    );
    assert!(
        unknown.is_empty(),
        "deploy/RUNBOOK.md names metrics the gateway does not export: {unknown:?}"
    );
    Ok(())
}
