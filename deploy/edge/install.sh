#!/usr/bin/env bash
# Installs the edge agent on a field box: binary, config, register-map profiles, systemd unit.
#
#   sudo deploy/edge/install.sh --binary PATH [--config FILE] [--profiles DIR] [--force]
#                               [--root DIR] [--no-systemctl]
#
# Idempotent: running it again installs a new binary, profiles and unit, and keeps the box's
# config. It refuses to replace an existing, different /etc/heating/edge-agent.toml unless
# --force is given (the old file is kept as edge-agent.toml.bak). The environment file
# /etc/heating/edge-agent.env (mode 0600, for EDGE_AGENT__MQTT__PASSWORD=...) is created once
# and never overwritten. Without --config a new box gets the annotated example as a template,
# which must be edited before the agent can start. --root installs into another root folder
# (for packaging and tests; systemctl then only enables the unit offline).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

binary=""
config=""
profiles="$repo/profiles"
unit="$repo/deploy/systemd/heating-edge-agent.service"
example="$repo/deploy/edge-agent.toml"
checklist="$here/CHECKLIST.md"
root=""
force=0
use_systemctl=1

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

while (($#)); do
    case "$1" in
        --binary) binary="${2:?--binary needs a path}"; shift 2 ;;
        --config) config="${2:?--config needs a file}"; shift 2 ;;
        --profiles) profiles="${2:?--profiles needs a folder}"; shift 2 ;;
        --root) root="${2:?--root needs a folder}"; shift 2 ;;
        --force) force=1; shift ;;
        --no-systemctl) use_systemctl=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

if [ -z "$binary" ]; then
    for candidate in "$repo/target/edge/edge-agent" "$repo/target/release/edge-agent" "$here/edge-agent"; do
        if [ -x "$candidate" ]; then binary="$candidate"; break; fi
    done
fi
[ -n "$binary" ] || die "no edge-agent binary: pass --binary PATH (cargo build --profile edge for this box's CPU, see CROSS.md)"
[ -x "$binary" ] || die "$binary is not an executable file"
[ -d "$profiles" ] || die "profile folder $profiles does not exist"
compgen -G "$profiles/*.toml" >/dev/null || die "no *.toml profiles in $profiles"
[ -f "$unit" ] || die "unit file $unit does not exist"
[ -z "$config" ] || [ -f "$config" ] || die "config file $config does not exist"
if [ -z "$root" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (or pass --root DIR to install into a folder)"
fi
if [ -n "$root" ]; then
    mkdir -p "$root"
    root="$(cd "$root" && pwd)"
fi

etc="$root/etc/heating"
target_config="$etc/edge-agent.toml"
env_file="$etc/edge-agent.env"

# Decide about the config before changing anything, so a refusal leaves the box as it was.
new_config="$(mktemp)"
trap 'rm -f "$new_config"' EXIT
if [ -n "$config" ]; then
    cp "$config" "$new_config"
else
    # The example points at the repository's profiles; an installed box uses /etc/heating/profiles.
    sed 's|^profiles_dir = .*|profiles_dir = "profiles"|' "$example" >"$new_config"
fi
if [ ! -e "$target_config" ]; then
    config_action=install
elif [ -z "$config" ] || cmp -s "$new_config" "$target_config"; then
    config_action=keep
elif ((force)); then
    config_action=replace
else
    die "$target_config exists and differs from $config; pass --force to replace it (nothing was changed)"
fi

install -d -m 0755 "$root/usr/local/bin" "$etc" "$etc/profiles" "$root/etc/systemd/system" \
    "$root/usr/local/share/doc/heating"

install -m 0755 "$binary" "$root/usr/local/bin/edge-agent"
echo "installed $root/usr/local/bin/edge-agent"

# Shipped profiles replace files of the same name; profiles added on the box stay.
for profile in "$profiles"/*.toml; do
    install -m 0644 "$profile" "$etc/profiles/"
done
names=()
for profile in "$profiles"/*.toml; do names+=("${profile##*/}"); done
echo "installed profiles into $etc/profiles: ${names[*]}"

case "$config_action" in
    install)
        install -m 0644 "$new_config" "$target_config"
        if [ -n "$config" ]; then
            echo "installed $target_config"
        else
            echo "installed $target_config from the example: EDIT IT (agent_id, township, mqtt.host, devices) before starting"
        fi ;;
    keep) echo "kept $target_config" ;;
    replace)
        cp -p "$target_config" "$target_config.bak"
        install -m 0644 "$new_config" "$target_config"
        echo "replaced $target_config (previous one in $target_config.bak)" ;;
esac

if [ ! -e "$env_file" ]; then
    (
        umask 077
        cat >"$env_file" <<'ENV'
# Secrets and overrides of the edge agent, read by heating-edge-agent.service (mode 0600).
# One EDGE_AGENT__SECTION__KEY=value per line; see CONFIGURATION.md. For example:
# EDGE_AGENT__MQTT__USERNAME=box-yanqing-dongguan-0007
# EDGE_AGENT__MQTT__PASSWORD=change-me
ENV
    )
    echo "created $env_file"
else
    echo "kept $env_file"
fi

install -m 0644 "$unit" "$root/etc/systemd/system/heating-edge-agent.service"
echo "installed $root/etc/systemd/system/heating-edge-agent.service"
if [ -f "$checklist" ]; then
    install -m 0644 "$checklist" "$root/usr/local/share/doc/heating/CHECKLIST.md"
fi

if ((use_systemctl)) && command -v systemctl >/dev/null 2>&1; then
    if [ -n "$root" ]; then
        systemctl --root="$root" enable heating-edge-agent.service
    elif [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl enable heating-edge-agent.service
        # An upgrade: restart a running agent on the new binary; a new box is started by the
        # installer after `edge-agent check` (see CHECKLIST.md).
        systemctl try-restart heating-edge-agent.service
    else
        echo "systemd is not running here: enable heating-edge-agent.service on the box"
    fi
fi
echo "done; next: edge-agent check --config /etc/heating/edge-agent.toml"
