#!/usr/bin/env python3
"""Structural checks of deploy/ files that no installed tool checks, run by deploy/check.

  check_files.py dockerfile   the gateway Dockerfile: stages, copies, user, ports, health check
  check_files.py compose      compose.yaml beyond its schema: health checks, mounts, build paths
  check_files.py security     the container ships secure: only the TLS listener and the loopback
                              HTTP port published, TLS on, plain listener on loopback, nothing
                              `insecure`; each problem names its file and line. Options
                              --dockerfile, --compose, --config, --env-file check other copies.
  check_files.py grafana      provisioning and dashboards against the InfluxDB schema contract
  check_files.py gateway-env  prints the GATEWAY__ variables that the Dockerfile and compose set
                              (compose's ${VAR} resolved from env.example); --tls-dir DIR points
                              the broker's TLS files at DIR instead of the container's mount

Each command prints what it checked and exits 1 with every problem found. Needs PyYAML
(Debian: python3-yaml).
"""

import argparse
import ipaddress
import json
import re
import sys
import tomllib
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


def patched_paths():
    """Paths of the patched dependencies in the workspace's `[patch.*]` tables."""
    text = (REPO / "Cargo.toml").read_text()
    paths = []
    for section in re.finditer(r"^\[patch\.[^\]]+\]\s*\n(.*?)(?=^\[|\Z)", text, re.S | re.M):
        paths += re.findall(r'path\s*=\s*"([^"]+)"', section.group(1))
    return [p.rstrip("/") for p in paths]


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
    for member in workspace_members() + ["Cargo.toml", "Cargo.lock"]:
        if member not in build_copies:
            problem(f"{path}: the build stage does not COPY workspace member or file `{member}`")
    for patched in patched_paths():
        if not any(patched == c or patched.startswith(c + "/") for c in build_copies):
            problem(f"{path}: the build stage does not COPY `{patched}` ([patch] in Cargo.toml)")
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
    # Which ports may and must be exposed is a security question: `check_files.py security`.
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


def final_stage(path):
    """The instructions after the last FROM (what the image runs with)."""
    instructions = dockerfile_instructions(path)
    starts = [i for i, (instruction, _, _) in enumerate(instructions) if instruction == "FROM"]
    return instructions[starts[-1] + 1:] if starts else instructions


def dockerfile_env_lines(path):
    """{NAME: (value, line)} of the final stage's ENV, each with the line that sets it."""
    lines = path.read_text().splitlines()
    env = {}
    for instruction, args, start in final_stage(path):
        if instruction != "ENV":
            continue
        pairs = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", args)
        if not pairs:  # the legacy form `ENV NAME value`
            name, _, value = args.partition(" ")
            pairs = [(name, value.strip())]
        for name, value in pairs:
            line = next((n for n in range(start, len(lines) + 1) if re.search(rf"\b{name}[= ]", lines[n - 1])), start)
            env[name] = (value.strip("\"'"), line)
    return env


def dockerfile_env(path=None):
    path = path or DEPLOY / "container" / "Dockerfile"
    return {name: value for name, (value, _) in dockerfile_env_lines(path).items()}


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
    example = env_file_values(DEPLOY / "container" / "env.example")
    for name, value in env.items():
        # Security keys must be literal (`check_files.py security`); others may come from .env,
        # as long as env.example gives every variable they read (or the reference a default).
        for variable, default in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?", str(value)):
            if variable not in example and not default:
                problem(f"{path}: {name} reads ${{{variable}}}, which env.example does not set")
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


def print_gateway_env(tls_dir=None):
    env = {k: v for k, v in dockerfile_env().items() if k.startswith("GATEWAY__")}
    compose_env = load_compose()["services"]["gateway"].get("environment", {})
    if isinstance(compose_env, list):
        compose_env = dict(item.split("=", 1) for item in compose_env)
    example = env_file_values(DEPLOY / "container" / "env.example")
    env.update({k: interpolate(yaml_text(v), example) for k, v in compose_env.items() if k.startswith("GATEWAY__")})
    if tls_dir:
        for name in TLS_FILE_VARIABLES:
            if name in env:
                env[name] = str(Path(tls_dir) / Path(env[name]).name)
    for name, value in sorted(env.items()):
        print(f"{name}={value}")


# ---------------------------------------------------------------------------- container security
TRUE_WORDS = {"true", "1", "yes", "on"}
# Sections whose keys decide who can reach what: compose and the Dockerfile must give them
# literally, so that this check sees what runs (a `${VAR}` would be decided by .env).
SECURITY_SECTIONS = ("broker", "http", "api")
TLS_FILE_VARIABLES = ("GATEWAY__BROKER__TLS__CA_FILE", "GATEWAY__BROKER__TLS__CERT_FILE",
                      "GATEWAY__BROKER__TLS__KEY_FILE")
# The config file the image's CMD runs with.
IMAGE_CONFIG = "/etc/heating/gateway.toml"


def shown(path):
    """A path as problems name it: relative to the repository when inside it."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def yaml_text(value):
    """A compose scalar as compose passes it to the container (YAML true -> "true")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def env_file_values(path):
    """NAME=value lines of an env file (comments and blank lines skipped)."""
    values = {}
    if path.exists():
        for raw in path.read_text().splitlines():
            line = raw.strip()
            if line and not line.startswith("#") and "=" in line:
                name, _, value = line.partition("=")
                values[name.strip()] = value.strip()
    return values


def interpolate(text, env):
    """compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, $VAR and $$ with `env`."""
    def one(match):
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        operator, word = match.group(2) or "", match.group(3) or ""
        value = env.get(name)
        if operator in (":-", "-") and (value is None or (operator == ":-" and value == "")):
            return word
        return value or ""
    return re.sub(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)", one, text)


def truthy(value):
    if isinstance(value, bool):
        return value
    return str(value).strip().strip('"\'').lower() in TRUE_WORDS


def toml_settings(path):
    """{dotted key: (value, line)} of the uncommented `key = value` lines of a TOML file."""
    settings, section = {}, ""
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = re.match(r"^\[\[?\s*([A-Za-z0-9_.\-]+)\s*\]\]?", line)
        if header:
            section = header.group(1)
            continue
        pair = re.match(r"^([A-Za-z0-9_\-]+)\s*=\s*(.+)$", line)
        if pair:
            try:
                value = tomllib.loads(f"v = {pair.group(2)}")["v"]
            except tomllib.TOMLDecodeError:
                value = pair.group(2)
            settings.setdefault(f"{section}.{pair.group(1)}" if section else pair.group(1), (value, number))
    return settings


def documented_defaults():
    """{key: default} of the gateway's keys from deploy/CONFIGURATION.md (None when unset)."""
    defaults, in_gateway = {}, False
    for line in (DEPLOY / "CONFIGURATION.md").read_text().splitlines():
        if line.startswith("## "):
            in_gateway = line.startswith("## Gateway")
            continue
        row = re.match(r"^\| `([a-z0-9_.\[\]]+)` \| ([^|]*) \|", line)
        if in_gateway and row:
            cell = row.group(2).strip()
            value = None
            if cell.startswith("`") and cell.endswith("`"):
                try:
                    value = tomllib.loads(f"v = {cell.strip('`')}")["v"]
                except tomllib.TOMLDecodeError:
                    value = None
            defaults[row.group(1)] = value
    return defaults


def env_key(name):
    """GATEWAY__BROKER__TLS__ENABLED -> broker.tls.enabled"""
    return name[len("GATEWAY__"):].lower().replace("__", ".")


def security_variable(name):
    return name.startswith("GATEWAY__") and env_key(name).split(".")[0] in SECURITY_SECTIONS


def shown_value(value):
    """A setting as the problem quotes it (TOML booleans as written)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def socket_address(value):
    """(ip, port) of "IP:port" / "[v6]:port", or None."""
    match = re.match(r"^\[?([0-9A-Fa-f.:]+?)\]?:(\d+)$", str(value).strip())
    if not match:
        return None
    try:
        return ipaddress.ip_address(match.group(1)), int(match.group(2))
    except ValueError:
        return None


def yaml_child(node, key):
    """(key node, value node) of `key` in a YAML mapping node, or (None, None)."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == key:
                return key_node, value_node
    return None, None


def line_of(node):
    return node.start_mark.line + 1


def compose_environment(service):
    """[(name, value, line)] of a service node's `environment` (mapping or list)."""
    _, env = yaml_child(service, "environment")
    out = []
    if isinstance(env, yaml.MappingNode):
        for key_node, value_node in env.value:
            value = value_node.value if isinstance(value_node, yaml.ScalarNode) else ""
            out.append((key_node.value, value, line_of(key_node)))
    elif isinstance(env, yaml.SequenceNode):
        for item in env.value:
            name, _, value = str(item.value).partition("=")
            out.append((name, value, line_of(item)))
    return out


def port_range(text):
    text = text.strip()
    if not text:
        return []
    low, _, high = text.partition("-")
    return list(range(int(low), int(high or low) + 1))


def compose_ports(service):
    """[(spec as written, host ip or "", published ports, container ports, line)]."""
    _, ports = yaml_child(service, "ports")
    out = []
    if not isinstance(ports, yaml.SequenceNode):
        return out
    for item in ports.value:
        if isinstance(item, yaml.MappingNode):
            fields = {k.value: v.value for k, v in item.value if isinstance(v, yaml.ScalarNode)}
            spec = ", ".join(f"{k}: {v}" for k, v in fields.items())
            host_ip, published, target = fields.get("host_ip", ""), str(fields.get("published", "")), str(fields.get("target", ""))
        else:
            spec = str(item.value)
            rest = spec.split("/")[0]
            host_ip = ""
            bracketed = re.match(r"^\[([^\]]+)\]:(.*)$", rest)
            if bracketed:
                host_ip, rest = bracketed.group(1), bracketed.group(2)
            else:
                parts = rest.split(":")
                if len(parts) >= 3:
                    host_ip, rest = ":".join(parts[:-2]), ":".join(parts[-2:])
            pieces = rest.split(":")
            published, target = (pieces[0], pieces[1]) if len(pieces) == 2 else ("", pieces[0])
        try:
            out.append((spec, host_ip, port_range(published), port_range(target), line_of(item)))
        except ValueError:
            out.append((spec, host_ip, [], [], line_of(item)))
    return out


def is_loopback(host_ip):
    try:
        return ipaddress.ip_address(host_ip.strip("[]")).is_loopback
    except ValueError:
        return False


def check_security(dockerfile, compose_path, config=None, env_file=None):
    """The container configuration is secure; every problem names its file and line."""
    dockerfile, compose_path = Path(dockerfile), Path(compose_path)
    env_file = Path(env_file) if env_file else compose_path.parent / "env.example"
    docker_name, compose_name = shown(dockerfile), shown(compose_path)

    # The image's config file: compose may mount one over it, else the Dockerfile copies it.
    root = yaml.compose(compose_path.read_text())
    _, services = yaml_child(root, "services")
    _, gateway = yaml_child(services, "gateway")
    if gateway is None:
        problem(f"{compose_name}: no service gateway")
        done("container security")
        return
    _, volumes = yaml_child(gateway, "volumes")
    mounts = []  # (source, target, read_only, line)
    for item in volumes.value if isinstance(volumes, yaml.SequenceNode) else []:
        if isinstance(item, yaml.MappingNode):
            fields = {k.value: v.value for k, v in item.value if isinstance(v, yaml.ScalarNode)}
            mounts.append((fields.get("source", ""), fields.get("target", ""),
                           truthy(fields.get("read_only", "false")), line_of(item)))
        else:
            # source:target[:options], where the source may be ${VAR:?message with spaces}
            text = re.sub(r"\$\{[^}]*\}", "VAR", str(item.value))
            parts = text.split(":")
            source, target = (parts[0], parts[1]) if len(parts) >= 2 else ("", parts[0])
            options = parts[2].split(",") if len(parts) >= 3 else []
            mounts.append((source, target, "ro" in options, line_of(item)))
    if config is None:
        mounted = [m for m in mounts if m[1] == IMAGE_CONFIG and m[0].startswith((".", "/"))]
        if mounted:
            config = (compose_path.parent / mounted[0][0]).resolve()
        else:
            copies = [args.split() for instruction, args, _ in final_stage(dockerfile) if instruction == "COPY"]
            sources = [words[-2] for words in copies if len(words) >= 2 and words[-1] == IMAGE_CONFIG
                       and not any(w.startswith("--from") for w in words)]
            config = REPO / sources[-1] if sources else None
    config = Path(config) if config else None
    config_name = shown(config) if config else "(no config file)"

    # Every setting with the place that makes it: the reference's default, the config file,
    # the image's ENV, compose's environment.
    defaults = documented_defaults()
    layers = {"image": {}, "compose": {}}
    base = {key: (value, f"deploy/CONFIGURATION.md default of {key} (set nowhere in {docker_name}, {compose_name} or {config_name})")
            for key, value in defaults.items()}
    settings = toml_settings(config) if config and config.exists() else {}
    for key, (value, line) in settings.items():
        base[key] = (value, f"{config_name}:{line}")
    image_env = dockerfile_env_lines(dockerfile)
    image = dict(base)
    for name, (value, line) in image_env.items():
        if name.startswith("GATEWAY__"):
            image[env_key(name)] = (value, f"{docker_name}:{line}")
    composed = dict(image)
    gateway_env = compose_environment(gateway)
    for name, value, line in gateway_env:
        if name.startswith("GATEWAY__"):
            composed[env_key(name)] = (value, f"{compose_name}:{line}")
    layers["image"], layers["compose"] = image, composed

    # Values that this check must be able to read.
    for name, (value, line) in image_env.items():
        if security_variable(name) and "$" in value:
            problem(f"{docker_name}:{line}: {name} is interpolated ({value}); give broker, http and api keys literal values so this check sees what runs")
    for name, value, line in gateway_env:
        if security_variable(name) and "$" in value:
            problem(f"{compose_name}:{line}: {name} is interpolated ({value}) from .env; give broker, http and api keys literal values so this check sees what runs")

    # Nothing called `insecure` is switched on, anywhere in the container's configuration.
    found = [(f"{config_name}:{line}", key, value) for key, (value, line) in settings.items()]
    found += [(f"{docker_name}:{line}", name, value) for name, (value, line) in image_env.items()]
    for service_key, service in (services.value if isinstance(services, yaml.MappingNode) else []):
        found += [(f"{compose_name}:{line}", name, value) for name, value, line in compose_environment(service)]
    if env_file.exists():
        for number, raw in enumerate(env_file.read_text().splitlines(), 1):
            name, equals, value = raw.strip().partition("=")
            if equals and not name.startswith("#"):
                found.append((f"{shown(env_file)}:{number}", name.strip(), value))
    for where, name, value in found:
        if "insecure" in name.lower() and truthy(value):
            problem(f"{where}: {name} = {shown_value(value)}: an `insecure` key is switched on; the container must not run with it")

    for layer, setting in layers.items():
        what = "the image alone (docker run)" if layer == "image" else "compose"
        enabled, where = setting.get("broker.tls.enabled", (False, "?"))
        if not truthy(enabled):
            problem(f"{where}: broker.tls.enabled is {shown_value(enabled).lower()} for {what}: the mutual-TLS listener for the boxes is off; set GATEWAY__BROKER__TLS__ENABLED=true")
        listen, where = setting.get("broker.listen", ("", "?"))
        address = socket_address(listen)
        if address is None or not address[0].is_loopback:
            problem(f"{where}: broker.listen {listen} is not a loopback address for {what}: the plain MQTT listener (no TLS, no authentication) would be reachable from outside the container; keep it on 127.0.0.1")
        auth, where = setting.get("api.auth", ("tokens", "?"))
        if str(auth) == "disabled":
            problem(f"{where}: api.auth is \"disabled\" for {what}: the published HTTP API would make everyone an operator")

    # Ports: the image exposes only the TLS listener; compose publishes the TLS listener and
    # the HTTP API on loopback, nothing else.
    plain = socket_address(composed.get("broker.listen", ("", ""))[0])
    plain_ports = {1883} | ({plain[1]} if plain else set())
    tls_keys = ["broker.tls.listen", "broker.tls.listen_v5"]
    if truthy(composed.get("broker.passwords.enabled", (False, ""))[0]):
        tls_keys.append("broker.passwords.listen")  # TLS too, boxes log in with a password
    tls_ports = {a[1] for a in (socket_address(composed.get(k, ("", ""))[0]) for k in tls_keys) if a}
    http = socket_address(composed.get("http.listen", ("", ""))[0])
    http_port = http[1] if http else 8080
    metrics = socket_address(composed.get("http.metrics_listen", ("", ""))[0] or "")
    exposed = []
    for instruction, args, line in final_stage(dockerfile):
        if instruction == "EXPOSE":
            for word in args.split():
                try:
                    exposed += [(port, line) for port in port_range(word.split("/")[0])]
                except ValueError:
                    problem(f"{docker_name}:{line}: EXPOSE {word} is not a port number (literal ports only)")
    for port, line in exposed:
        if port in plain_ports:
            problem(f"{docker_name}:{line}: EXPOSE {port}: the plain MQTT port (no TLS, no authentication) must not be exposed; `docker run -P` would publish it")
        elif port == http_port:
            problem(f"{docker_name}:{line}: EXPOSE {port}: the HTTP API must not be exposed, or `docker run -P` publishes it on every interface; publish it by hand on 127.0.0.1")
        elif port not in tls_ports:
            problem(f"{docker_name}:{line}: EXPOSE {port} is neither the mutual-TLS listener ({', '.join(map(str, sorted(tls_ports)))}) nor needed")
    if not tls_ports & {port for port, _ in exposed}:
        problem(f"{docker_name}: the final stage does not EXPOSE the mutual-TLS listener {', '.join(map(str, sorted(tls_ports)))}")

    network_key, network = yaml_child(gateway, "network_mode")
    if network is not None and str(network.value) == "host":
        problem(f"{compose_name}:{line_of(network_key)}: service gateway has network_mode: host: every listener would be on the host's interfaces, bypassing the port rules")
    ports = compose_ports(gateway)
    published_tls = False
    for spec, host_ip, published, targets, line in ports:
        if "$" in spec:
            problem(f"{compose_name}:{line}: port \"{spec}\" is interpolated from .env; publish literal ports so this check sees what runs")
            continue
        if not targets:
            problem(f"{compose_name}:{line}: port \"{spec}\" cannot be read")
            continue
        for target in targets:
            if target in plain_ports or (set(published) & plain_ports):
                problem(f"{compose_name}:{line}: service gateway publishes \"{spec}\": {target if target in plain_ports else sorted(set(published) & plain_ports)[0]} is the plain MQTT port (no TLS, no authentication); publish only the mutual-TLS listener {', '.join(map(str, sorted(tls_ports)))} for the boxes")
            elif target == http_port:
                if not is_loopback(host_ip):
                    problem(f"{compose_name}:{line}: service gateway publishes the HTTP API \"{spec}\" on {'every interface' if not host_ip else host_ip}; publish it on the host's loopback only: \"127.0.0.1:{published[0] if published else target}:{target}\"")
            elif metrics and target == metrics[1]:
                problem(f"{compose_name}:{line}: service gateway publishes \"{spec}\", the token-free /metrics listener (http.metrics_listen); scrape /metrics on the HTTP port with a token instead")
            elif target in tls_ports:
                published_tls = True
            else:
                problem(f"{compose_name}:{line}: service gateway publishes \"{spec}\", which is neither the mutual-TLS listener ({', '.join(map(str, sorted(tls_ports)))}) nor the HTTP API ({http_port})")
    if not published_tls:
        ports_key, _ = yaml_child(gateway, "ports")
        line = line_of(ports_key) if ports_key is not None else line_of(gateway)
        problem(f"{compose_name}:{line}: service gateway does not publish the mutual-TLS listener {', '.join(map(str, sorted(tls_ports))) or 8883}: the boxes could not connect")

    # The broker's certificate files come from a read-only mount of the host folder.
    read_only = [(target.rstrip("/"), line) for source, target, ro, line in mounts if ro]
    for key in ("broker.tls.ca_file", "broker.tls.cert_file", "broker.tls.key_file"):
        value, where = composed.get(key, ("", "?"))
        path = str(value)
        if not path.startswith("/"):
            problem(f"{where}: {key} {path} is not an absolute path: the container's files must come from the read-only mount of the certificate folder")
        elif not any(path.startswith(target + "/") for target, _ in read_only):
            volumes_key, _ = yaml_child(gateway, "volumes")
            line = line_of(volumes_key) if volumes_key is not None else line_of(gateway)
            problem(f"{where}: {key} {path} is not inside a read-only mount of service gateway ({compose_name}:{line}: mount the folder of `gateway certs` with :ro)")

    done(f"container security: {compose_name} publishes only the mutual-TLS listener "
         f"{', '.join(map(str, sorted(tls_ports)))} and the HTTP API {http_port} on loopback; TLS on, plain listener "
         f"{composed.get('broker.listen', ('?',))[0]} in both the image and compose; certificates from a read-only mount; "
         f"nothing `insecure` in {docker_name}, {compose_name}, {config_name} or {shown(env_file)}")


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
    elif command == "security":
        parser = argparse.ArgumentParser(prog="check_files.py security")
        parser.add_argument("--dockerfile", default=DEPLOY / "container" / "Dockerfile")
        parser.add_argument("--compose", default=DEPLOY / "container" / "compose.yaml")
        parser.add_argument("--config", help="the gateway config of the image (default: what the Dockerfile copies)")
        parser.add_argument("--env-file", help="compose's env file (default: env.example beside compose.yaml)")
        options = parser.parse_args(sys.argv[2:])
        check_security(options.dockerfile, options.compose, options.config, options.env_file)
    elif command == "grafana":
        check_grafana()
    elif command == "gateway-env":
        parser = argparse.ArgumentParser(prog="check_files.py gateway-env")
        parser.add_argument("--tls-dir")
        print_gateway_env(parser.parse_args(sys.argv[2:]).tls_dir)
    else:
        print(__doc__)
        sys.exit(2)
