#!/usr/bin/env python3
"""Structural checks of deploy/ files that no installed tool checks, run by deploy/check.

  check_files.py dockerfile   the gateway Dockerfile: stages, copies, user, ports, health check
  check_files.py compose      compose.yaml beyond its schema: health checks, mounts, build paths
  check_files.py grafana      provisioning and dashboards against the InfluxDB schema contract
  check_files.py gateway-env  prints the GATEWAY__ variables that the Dockerfile and compose set

Each command prints what it checked and exits 1 with every problem found. Needs PyYAML
(Debian: python3-yaml).
"""

import json
import re
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
REPO = DEPLOY.parent
problems = []


def problem(message):
    problems.append(message)


def done(what):
    if problems:
        for message in problems:
            print(f"  FAIL {message}")
        sys.exit(1)
    print(f"  ok   {what}")


# ---------------------------------------------------------------------------- Dockerfile
def dockerfile_instructions(path):
    """(instruction, arguments, line) with continuation lines joined and comments dropped."""
    out, pending, start = [], "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip(), start))
        pending = ""
    return out


def workspace_members():
    text = (REPO / "Cargo.toml").read_text()
    match = re.search(r"members\s*=\s*\[(.*?)\]", text, re.S)
    return re.findall(r'"([^"]+)"', match.group(1)) if match else []


def check_dockerfile():
    path = DEPLOY / "container" / "Dockerfile"
    lines = path.read_text().splitlines()
    if not lines or not lines[0].startswith("# "):
        problem(f"{path}: the first line must be a comment saying what the file is for")
    stages = []  # (name, [(instruction, args, line)])
    for instruction, args, line in dockerfile_instructions(path):
        if instruction == "FROM":
            parts = args.split()
            image = parts[0]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            if ":" not in image or image.endswith(":latest"):
                problem(f"{path}:{line}: base image {image} must be pinned to a tag other than latest")
            stages.append((name, image, []))
        elif not stages:
            problem(f"{path}:{line}: {instruction} before the first FROM")
        else:
            stages[-1][2].append((instruction, args, line))
    if len(stages) < 2:
        problem(f"{path}: expected a multi-stage build (build stage + small final stage)")
        done("Dockerfile")
        return
    names = [s[0] for s in stages]
    build_copies = set()
    for instruction, args, line in stages[0][2]:
        if instruction == "COPY":
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            build_copies.update(s.rstrip("/") for s in sources)
    for member in workspace_members() + ["Cargo.toml", "Cargo.lock", "profiles"]:
        if member not in build_copies:
            problem(f"{path}: the build stage does not COPY workspace member or file `{member}`")
    final_name, final_image, final = stages[-1]
    if not (final_image.startswith("debian:") and "slim" in final_image) and "distroless" not in final_image:
        problem(f"{path}: final image {final_image} is neither debian slim nor distroless")
    copied = {}
    for instruction, args, line in final:
        if instruction == "COPY":
            words = args.split()
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
            if source_stage is not None and source_stage not in names[:-1]:
                problem(f"{path}:{line}: COPY --from={source_stage} names no earlier stage ({', '.join(names[:-1])})")
            plain = [w for w in words if not w.startswith("--")]
            if source_stage is None:
                for source in plain[:-1]:
                    if not (REPO / source).exists():
                        problem(f"{path}:{line}: COPY source {source} does not exist in the repository")
            copied[plain[-1]] = source_stage
    users = [args for instruction, args, _ in final if instruction == "USER"]
    if not users:
        problem(f"{path}: the final stage sets no USER (it would run as root)")
    elif users[-1].split(":")[0] in ("0", "root"):
        problem(f"{path}: the final stage runs as root ({users[-1]})")
    exposed = set()
    for instruction, args, _ in final:
        if instruction == "EXPOSE":
            exposed.update(p.split("/")[0] for p in args.split())
    for port in ("1883", "8080"):
        if port not in exposed:
            problem(f"{path}: the final stage does not EXPOSE {port}")
    health = [args for instruction, args, _ in final if instruction == "HEALTHCHECK"]
    if not health:
        problem(f"{path}: no HEALTHCHECK in the final stage")
    else:
        match = re.search(r"CMD\s+(\[.*\])", health[-1])
        if not match:
            problem(f"{path}: HEALTHCHECK must use the exec form CMD [\"...\"]")
        else:
            command = json.loads(match.group(1))
            if command[0] not in copied:
                problem(f"{path}: HEALTHCHECK runs {command[0]}, which the final stage does not COPY")
            if "8080" not in " ".join(command):
                problem(f"{path}: HEALTHCHECK does not probe the HTTP port 8080")
    entry = [args for instruction, args, _ in final if instruction == "ENTRYPOINT"]
    if not entry or json.loads(entry[-1])[0] not in copied:
        problem(f"{path}: ENTRYPOINT must run a binary the final stage copies")
    elif copied[json.loads(entry[-1])[0]] is None:
        problem(f"{path}: ENTRYPOINT's binary must come from the build stage")
    done(f"Dockerfile: {len(stages)} stages, members {', '.join(workspace_members())} copied, "
         f"final {final_image} as user {users[-1] if users else '?'}, EXPOSE {' '.join(sorted(exposed))}, HEALTHCHECK {health[-1].split('CMD')[-1].strip() if health else '-'}")


def dockerfile_env():
    env = {}
    path = DEPLOY / "container" / "Dockerfile"
    for instruction, args, _ in dockerfile_instructions(path):
        if instruction == "ENV":
            for name, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", args):
                env[name] = value
    return env


# ---------------------------------------------------------------------------- compose
def load_compose():
    return yaml.safe_load((DEPLOY / "container" / "compose.yaml").read_text())


def check_compose():
    path = DEPLOY / "container" / "compose.yaml"
    compose = load_compose()
    services = compose.get("services", {})
    for required in ("gateway", "influxdb", "grafana"):
        if required not in services:
            problem(f"{path}: no service {required}")
    for name, service in services.items():
        if "healthcheck" not in service:
            problem(f"{path}: service {name} has no healthcheck")
        image = service.get("image", "")
        if "build" not in service and (":" not in image or image.endswith(":latest")):
            problem(f"{path}: service {name} image {image!r} must be pinned to a tag")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")) and not (path.parent / source).resolve().exists():
                problem(f"{path}: service {name} mounts {source}, which does not exist")
        build = service.get("build")
        if build:
            context = (path.parent / build["context"]).resolve()
            if not (context / build["dockerfile"]).exists():
                problem(f"{path}: service {name} builds from {build['dockerfile']}, not found in {context}")
    gateway = services.get("gateway", {})
    env = gateway.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    for name in env:
        if name.startswith("GATEWAY__") and "${" in str(env[name]):
            problem(f"{path}: {name} is interpolated; give gateway keys literal values so they can be checked")
    healthz = gateway.get("healthcheck", {}).get("test", [])
    if healthz[1:2] != ["/usr/local/bin/healthz"]:
        problem(f"{path}: the gateway's healthcheck must run /usr/local/bin/healthz (the image's probe)")
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/influxdb.yaml").read_text())
    bucket = datasource["datasources"][0]["jsonData"]["defaultBucket"]
    influx_env = services.get("influxdb", {}).get("environment", {})
    if influx_env.get("DOCKER_INFLUXDB_INIT_BUCKET") != bucket:
        problem(f"{path}: InfluxDB's initial bucket is not the data source's bucket {bucket!r}")
    grafana_env = services.get("grafana", {}).get("environment", {})
    for variable in re.findall(r"\$\{([A-Z_]+)\}", (DEPLOY / "grafana/provisioning/datasources/influxdb.yaml").read_text()):
        if variable not in grafana_env:
            problem(f"{path}: the data source reads ${{{variable}}} but the grafana service does not set it")
    done(f"compose.yaml: services {', '.join(services)} with health checks, mounts present, "
         f"bucket {bucket!r} shared by InfluxDB and the data source")


def print_gateway_env():
    env = {k: v for k, v in dockerfile_env().items() if k.startswith("GATEWAY__")}
    compose_env = load_compose()["services"]["gateway"].get("environment", {})
    if isinstance(compose_env, list):
        compose_env = dict(item.split("=", 1) for item in compose_env)
    env.update({k: str(v) for k, v in compose_env.items() if k.startswith("GATEWAY__")})
    for name, value in sorted(env.items()):
        print(f"{name}={value}")


# ---------------------------------------------------------------------------- Grafana
def contract():
    """{measurement: {"tags": set, "fields": set}} from deploy/grafana/README.md."""
    measurements, current = {}, None
    for line in (DEPLOY / "grafana" / "README.md").read_text().splitlines():
        heading = re.match(r"^### Measurement `([a-z_]+)`", line)
        if heading:
            current = measurements.setdefault(heading.group(1), {"tags": set(), "fields": set()})
            continue
        if line.startswith("## "):
            current = None
        row = re.match(r"^\| (tag|field) \| `([^`]+)` \|", line)
        if row and current is not None:
            current["tags" if row.group(1) == "tag" else "fields"].add(row.group(2))
    return measurements


def canonical_names():
    text = (REPO / "wire" / "src" / "values.rs").read_text()
    return set(re.findall(r'pub const [A-Z0-9_]+: &str = "([a-z0-9_]+)";', text))


def order_event_kinds():
    text = (REPO / "gateway" / "src" / "orders" / "model.rs").read_text()
    return set(re.findall(r'"([a-z_]+)"', text))


INFLUX_COLUMNS = {"_time", "_value", "_field", "_measurement", "_start", "_stop"}


def check_query(where, query, schema, canonical, events, variable=False):
    if variable:
        if 'schema.tagValues(bucket: "heating"' not in query:
            problem(f"{where}: a variable must list tag values of bucket \"heating\" (schema.tagValues)")
        for tag in re.findall(r'tag: "([a-z_]+)"', query):
            columns_of = set().union(*(m["tags"] for m in schema.values())) if schema else set()
            if tag not in columns_of:
                problem(f"{where}: tag {tag!r} is not a tag in the contract")
    else:
        if 'from(bucket: "heating")' not in query:
            problem(f"{where}: the query does not read from(bucket: \"heating\")")
        if "range(" not in query:
            problem(f"{where}: the query has no range()")
    measurements = set(re.findall(r'r\._measurement == "([a-z_]+)"', query))
    if not measurements:
        problem(f"{where}: the query selects no _measurement")
    for measurement in measurements - set(schema):
        problem(f"{where}: measurement {measurement!r} is not in the contract")
    known = [schema[m] for m in measurements if m in schema]
    tags = set().union(*(m["tags"] for m in known)) if known else set()
    fields = set().union(*(m["fields"] for m in known)) if known else set()
    if "telemetry" in measurements:
        fields.discard("<canonical value>")
        fields |= canonical
    for field in re.findall(r'r\._field == "([a-z0-9_]+)"', query):
        if field not in fields:
            problem(f"{where}: field {field!r} is not a field of {sorted(measurements)} in the contract"
                    + (" nor a canonical value in wire/src/values.rs" if "telemetry" in measurements else ""))
    columns = set(re.findall(r"\br\.([a-z_][a-z0-9_]*)", query))
    columns |= set(re.findall(r'r\["([a-z_][a-z0-9_]*)"\]', query))
    for listed in re.findall(r"(?:columns|rowKey|columnKey):\s*\[([^\]]*)\]", query):
        columns |= set(re.findall(r'"([^"]+)"', listed))
    for column in re.findall(r'valueColumn:\s*"([^"]+)"', query):
        columns.add(column)
    for column in columns - INFLUX_COLUMNS - tags:
        problem(f"{where}: column {column!r} is neither a tag of {sorted(measurements)} nor an InfluxDB column")
    for event in re.findall(r'r\.event == "([a-z_]+)"', query):
        if event not in events:
            problem(f"{where}: order event {event!r} is not an event kind in gateway/src/orders/model.rs")


def check_grafana():
    grafana = DEPLOY / "grafana"
    datasources = yaml.safe_load((grafana / "provisioning/datasources/influxdb.yaml").read_text())
    source = datasources["datasources"][0]
    uid = source["uid"]
    if source["type"] != "influxdb" or source["jsonData"].get("version") != "Flux":
        problem("the provisioned data source must be InfluxDB with Flux")
    providers = yaml.safe_load((grafana / "provisioning/dashboards/heating.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    compose = load_compose()
    mounts = compose["services"]["grafana"]["volumes"]
    if not any(m.split(":")[1] == path for m in mounts if m.startswith("../grafana/dashboards")):
        problem(f"the dashboard provider reads {path}, which compose does not mount from ../grafana/dashboards")
    schema = contract()
    for required in ("telemetry", "alerts", "orders"):
        if required not in schema:
            problem(f"deploy/grafana/README.md: the contract has no measurement {required!r}")
    canonical = canonical_names()
    if len(canonical) < 10:
        problem(f"found only {len(canonical)} canonical value names in wire/src/values.rs")
    events = order_event_kinds()
    dashboards = sorted((grafana / "dashboards").glob("*.json"))
    if len(dashboards) < 4:
        problem(f"expected at least 4 dashboards, found {len(dashboards)}")
    uids, panel_count, query_count = set(), 0, 0
    for file in dashboards:
        name = file.relative_to(REPO)
        try:
            dashboard = json.loads(file.read_text())
        except json.JSONDecodeError as error:
            problem(f"{name}: invalid JSON: {error}")
            continue
        for key in ("uid", "title", "description", "schemaVersion", "panels"):
            if key not in dashboard:
                problem(f"{name}: no {key!r}")
        if not isinstance(dashboard.get("schemaVersion"), int) or dashboard.get("schemaVersion", 0) < 36:
            problem(f"{name}: schemaVersion must be an integer >= 36 (Grafana 9+)")
        if dashboard.get("uid") in uids:
            problem(f"{name}: uid {dashboard.get('uid')!r} is used twice")
        uids.add(dashboard.get("uid"))
        ids = [p.get("id") for p in dashboard.get("panels", [])]
        if len(ids) != len(set(ids)) or None in ids:
            problem(f"{name}: panel ids must be present and unique: {ids}")
        for variable in dashboard.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                if variable.get("datasource", {}).get("uid") != uid:
                    problem(f"{name}: variable {variable.get('name')} does not use data source {uid}")
                check_query(f"{name} variable {variable.get('name')}", variable.get("query", ""),
                            schema, canonical, events, variable=True)
        for panel in dashboard.get("panels", []):
            panel_count += 1
            where = f"{name} panel {panel.get('id')} {panel.get('title')!r}"
            if panel.get("datasource", {}).get("uid") != uid:
                problem(f"{where}: datasource must be {{uid: {uid}}}")
            for key in ("title", "type", "gridPos"):
                if key not in panel:
                    problem(f"{where}: no {key!r}")
            targets = panel.get("targets", [])
            if not targets:
                problem(f"{where}: no query")
            for target in targets:
                query_count += 1
                if target.get("datasource", {}).get("uid") != uid:
                    problem(f"{where} target {target.get('refId')}: datasource must be {uid}")
                if not target.get("query", "").strip():
                    problem(f"{where} target {target.get('refId')}: empty query")
                    continue
                check_query(f"{where} target {target.get('refId')}", target["query"], schema, canonical, events)
    done(f"Grafana: data source {uid} (InfluxDB, Flux), {len(dashboards)} dashboards, {panel_count} panels, "
         f"{query_count} Flux queries against the contract ({', '.join(sorted(schema))}; "
         f"{len(canonical)} canonical values, {len(events)} order event literals)")


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "dockerfile":
        check_dockerfile()
    elif command == "compose":
        check_compose()
    elif command == "grafana":
        check_grafana()
    elif command == "gateway-env":
        print_gateway_env()
    else:
        print(__doc__)
        sys.exit(2)
