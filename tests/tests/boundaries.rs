//! The crate layering, checked on `cargo metadata`: which workspace crate may depend on which
//! (normal and build dependencies; dev-dependencies are free), and which crates must not be
//! reachable through normal dependencies from some of them: the gateway reaches no Modbus or
//! serial crate; `wire` and `rules` no runtime, network, store or device crate; the edge agent
//! no broker, SQL store or HTTP server; and the TLS clients (`mqtt-tls`, edge agent, gateway) no
//! second crypto provider beside ring. ARCHITECTURE.md ("Code map") states the same rules beside
//! each crate; change both together.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

/// Each workspace crate and the workspace crates it may depend on (`None`: any). A workspace
/// crate missing here is itself a failure, so a new crate gets its place in the layering.
const LAYERS: &[(&str, Option<&[&str]>)] = &[
    ("wire", Some(&[])),
    ("mqtt-tls", Some(&[])),
    ("rules", Some(&["wire"])),
    ("layered-config", Some(&["wire"])),
    (
        "edge-agent",
        Some(&["wire", "rules", "mqtt-tls", "layered-config"]),
    ),
    (
        "gateway",
        Some(&["wire", "rules", "mqtt-tls", "layered-config"]),
    ),
    (
        "simulator",
        Some(&["wire", "mqtt-tls", "rules", "edge-agent", "gateway"]),
    ),
    ("demo", None),
    ("tests", None),
];

/// Crates that do IO: an async runtime or sockets, HTTP, MQTT, SQL, Modbus, serial ports.
const IO_CRATES: &[&str] = &[
    "tokio",
    "mio",
    "socket2",
    "hyper",
    "reqwest",
    "axum",
    "rumqttc",
    "rumqttd",
    "rusqlite",
    "tokio-modbus",
    "tokio-serial",
    "serialport",
];

/// A workspace crate, the crates it must not reach through normal dependencies, and why.
const UNREACHABLE: &[(&str, &[&str], &str)] = &[
    (
        "gateway",
        &["tokio-modbus", "tokio-serial", "serialport"],
        "only the edge agent speaks Modbus; the gateway never polls a device",
    ),
    ("wire", IO_CRATES, "the wire format does no IO"),
    (
        "layered-config",
        IO_CRATES,
        "the config loader reads no file and no socket: its caller reads the file",
    ),
    (
        "rules",
        IO_CRATES,
        "the rule engine is a pure library that does no IO",
    ),
    (
        "edge-agent",
        &["rumqttd", "rusqlite", "axum", "hyper"],
        "a field box runs no MQTT broker, no SQL store and no HTTP server",
    ),
    ("mqtt-tls", &["aws-lc-rs"], ONE_PROVIDER),
    ("edge-agent", &["aws-lc-rs"], ONE_PROVIDER),
    ("gateway", &["aws-lc-rs"], ONE_PROVIDER),
];

const ONE_PROVIDER: &str =
    "one TLS crypto provider, ring (rumqttc's default features would add aws-lc-rs)";

/// `cargo metadata` of this workspace (`--no-deps`: the workspace's packages only; otherwise
/// with the resolved graph for the host platform). `--locked`: a test never rewrites Cargo.lock.
fn cargo_metadata(no_deps: bool) -> Value {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the workspace")
        .join("Cargo.toml");
    let mut command = Command::new(&cargo);
    command
        .args(["metadata", "--format-version", "1", "--locked"])
        .arg("--manifest-path")
        .arg(&manifest);
    if no_deps {
        command.arg("--no-deps");
    } else {
        // What is built on this machine (and nothing cargo would have to download for another).
        let version = Command::new(&cargo)
            .arg("-vV")
            .output()
            .expect("run cargo -vV");
        let version = String::from_utf8_lossy(&version.stdout);
        let host = version
            .lines()
            .find_map(|line| line.strip_prefix("host: "))
            .expect("cargo -vV names the host platform");
        command.args(["--filter-platform", host.trim()]);
    }
    let output = command.output().expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn str_field<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

/// Every dependency of a workspace crate on another that its row of `layers` does not allow
/// (and every workspace crate without a row), as one message each.
fn layering_violations(metadata: &Value, layers: &[(&str, Option<&[&str]>)]) -> Vec<String> {
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let packages: Vec<&Value> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| members.contains(str_field(p, "id")))
        .collect();
    let names: BTreeSet<&str> = packages.iter().map(|p| str_field(p, "name")).collect();
    let mut violations = Vec::new();
    for package in &packages {
        let name = str_field(package, "name");
        let Some((_, allowed)) = layers.iter().find(|(crate_name, _)| *crate_name == name) else {
            violations.push(format!(
                "{name} is a workspace crate without a place in the layering: add it to LAYERS \
                 in tests/tests/boundaries.rs and its invariants to ARCHITECTURE.md"
            ));
            continue;
        };
        let Some(allowed) = allowed else { continue };
        for dependency in package["dependencies"].as_array().into_iter().flatten() {
            let target = str_field(dependency, "name");
            let kind = dependency["kind"].as_str().unwrap_or("normal");
            if kind == "dev" || !names.contains(target) || allowed.contains(&target) {
                continue;
            }
            violations.push(format!(
                "{name} depends on {target} ({kind} dependency in {}): {name} may depend only on [{}]",
                str_field(package, "manifest_path"),
                allowed.join(", ")
            ));
        }
    }
    violations
}

/// The crates reachable from package `from` through normal dependencies of the resolved graph,
/// each with the chain of package names that reaches it.
fn reachable(metadata: &Value, from: &str) -> BTreeMap<String, Vec<String>> {
    let names: BTreeMap<&str, &str> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (str_field(p, "id"), str_field(p, "name")))
        .collect();
    let nodes: BTreeMap<&str, &Value> = metadata["resolve"]["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|node| (str_field(node, "id"), node))
        .collect();
    let members: BTreeSet<&str> = metadata["workspace_members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<(&str, Vec<String>)> = names
        .iter()
        .filter(|(id, name)| **name == from && members.contains(**id))
        .map(|(id, name)| (*id, vec![name.to_string()]))
        .collect();
    while let Some((id, chain)) = queue.pop_front() {
        if !seen.insert(id) {
            continue;
        }
        let Some(node) = nodes.get(id) else { continue };
        for dependency in node["deps"].as_array().into_iter().flatten() {
            let normal = dependency["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|kind| kind["kind"].is_null());
            let id = str_field(dependency, "pkg");
            if !normal || seen.contains(id) {
                continue;
            }
            let name = names.get(id).copied().unwrap_or(id);
            let mut next = chain.clone();
            next.push(name.to_owned());
            chains
                .entry(name.to_owned())
                .or_insert_with(|| next.clone());
            queue.push_back((id, next));
        }
    }
    chains
}

/// Every crate of `unreachable` that its workspace crate reaches, as one message each.
fn reachability_violations(metadata: &Value, unreachable: &[(&str, &[&str], &str)]) -> Vec<String> {
    let mut violations = Vec::new();
    for (from, forbidden, why) in unreachable {
        let reached = reachable(metadata, from);
        for crate_name in *forbidden {
            if let Some(chain) = reached.get(*crate_name) {
                violations.push(format!(
                    "{from} reaches {crate_name} through normal dependencies ({}): {why}",
                    chain.join(" -> ")
                ));
            }
        }
    }
    violations
}

#[test]
fn every_workspace_crate_depends_only_on_the_layers_below_it() {
    let metadata = cargo_metadata(true);
    let violations = layering_violations(&metadata, LAYERS);
    assert!(
        violations.is_empty(),
        "crate layering broken:\n  {}",
        violations.join("\n  ")
    );
    // A crate renamed or removed would make its row silently vacuous.
    let names: BTreeSet<&str> = metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| str_field(p, "name"))
        .collect();
    for (name, _) in LAYERS {
        assert!(
            names.contains(name),
            "LAYERS names {name}, which is not a workspace crate"
        );
    }
}

#[test]
fn no_crate_reaches_what_its_invariants_forbid() {
    let metadata = cargo_metadata(false);
    let violations = reachability_violations(&metadata, UNREACHABLE);
    assert!(
        violations.is_empty(),
        "forbidden dependencies reached:\n  {}",
        violations.join("\n  ")
    );
    // The walk must see the real graph, or the absences above prove nothing.
    let agent = reachable(&metadata, "edge-agent");
    assert!(
        agent.contains_key("tokio-modbus") && agent.contains_key("tokio"),
        "the walk does not find tokio-modbus and tokio under edge-agent: {:?}",
        agent.keys().collect::<Vec<_>>()
    );
    let gateway = reachable(&metadata, "gateway");
    assert!(
        gateway.contains_key("rumqttd") && gateway.contains_key("rules"),
        "the walk does not find rumqttd and rules under gateway: {:?}",
        gateway.keys().collect::<Vec<_>>()
    );
}

/// A workspace of `(name, [(dependency, kind)])` in `cargo metadata`'s shape, with the resolved
/// graph built from the same edges (kind `normal`, `dev` or `build`; non-members are registry
/// crates).
fn synthetic(members: &[&str], edges: &[(&str, &[(&str, &str)])]) -> Value {
    let id = |name: &str| format!("id-of-{name}");
    let mut names: BTreeSet<&str> = members.iter().copied().collect();
    for (from, deps) in edges {
        names.insert(from);
        names.extend(deps.iter().map(|(to, _)| *to));
    }
    let kind = |kind: &str| {
        if kind == "normal" {
            Value::Null
        } else {
            json!(kind)
        }
    };
    let packages: Vec<Value> = names
        .iter()
        .map(|name| {
            let deps = edges
                .iter()
                .filter(|(from, _)| from == name)
                .flat_map(|(_, deps)| deps.iter())
                .map(|(to, k)| json!({ "name": to, "kind": kind(k) }))
                .collect::<Vec<_>>();
            json!({
                "id": id(name),
                "name": name,
                "manifest_path": format!("/ws/{name}/Cargo.toml"),
                "dependencies": deps,
            })
        })
        .collect();
    let nodes: Vec<Value> = names
        .iter()
        .map(|name| {
            let deps = edges
                .iter()
                .filter(|(from, _)| from == name)
                .flat_map(|(_, deps)| deps.iter())
                .map(|(to, k)| json!({ "pkg": id(to), "dep_kinds": [{ "kind": kind(k) }] }))
                .collect::<Vec<_>>();
            json!({ "id": id(name), "deps": deps })
        })
        .collect();
    json!({
        "packages": packages,
        "workspace_members": members.iter().map(|m| id(m)).collect::<Vec<_>>(),
        "resolve": { "nodes": nodes },
    })
}

#[test]
fn the_checker_reports_a_forbidden_workspace_edge_and_an_unplaced_crate() {
    let metadata = synthetic(
        &[
            "wire",
            "rules",
            "edge-agent",
            "gateway",
            "simulator",
            "newcomer",
        ],
        &[
            ("rules", &[("wire", "normal")]),
            ("edge-agent", &[("wire", "normal")]),
            (
                "gateway",
                &[
                    ("wire", "normal"),
                    ("edge-agent", "normal"),
                    ("simulator", "dev"),
                    ("serde", "normal"),
                ],
            ),
        ],
    );
    let violations = layering_violations(&metadata, LAYERS);
    assert_eq!(violations.len(), 2, "{violations:#?}");
    assert!(
        violations[0].starts_with(
            "gateway depends on edge-agent (normal dependency in /ws/gateway/Cargo.toml)"
        ),
        "{violations:#?}"
    );
    assert!(
        violations[1].starts_with("newcomer is a workspace crate without a place"),
        "{violations:#?}"
    );
    // Without that edge and that crate nothing is left: a dev-dependency may go anywhere.
    let fixed = synthetic(
        &["wire", "gateway"],
        &[("gateway", &[("wire", "normal"), ("simulator", "dev")])],
    );
    assert_eq!(layering_violations(&fixed, LAYERS), Vec::<String>::new());
}

#[test]
fn the_checker_reports_a_forbidden_crate_reached_through_another() {
    let metadata = synthetic(
        &["rules", "edge-agent", "gateway"],
        &[
            ("gateway", &[("edge-agent", "normal"), ("criterion", "dev")]),
            ("edge-agent", &[("tokio-modbus", "normal")]),
            ("tokio-modbus", &[("tokio", "normal")]),
            ("rules", &[("proptest", "dev"), ("criterion", "dev")]),
            ("criterion", &[("tokio", "normal")]),
        ],
    );
    let violations = reachability_violations(&metadata, UNREACHABLE);
    assert_eq!(
        violations,
        vec!["gateway reaches tokio-modbus through normal dependencies \
             (gateway -> edge-agent -> tokio-modbus): only the edge agent speaks Modbus; the \
             gateway never polls a device"
            .to_owned()],
        "rules' dev-dependency reaching tokio is not a violation; the gateway's chain is"
    );
}
