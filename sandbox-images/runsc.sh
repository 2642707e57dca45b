#!/usr/bin/env bash
# Installs gVisor's runsc from the Debian packages and registers it with the running Docker
# engine as the runtime "runsc", idempotently: daemon.json gains a `runtimes` entry (the rest
# of the file is kept), then the daemon reloads its configuration (SIGHUP: running
# containers are not touched). Needs root, a local engine and its daemon.json.
#   runsc.sh            install and register
#   runsc.sh --check    exit 0 when the engine lists runsc, 1 otherwise
set -euo pipefail

daemon_json=${DOCKER_DAEMON_JSON:-/etc/docker/daemon.json}
say() { printf 'runsc: %s\n' "$*" >&2; }

registered() {
  docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q '"runsc"'
}

# Registered by this script, with the flags below (an older registration lacks them).
current() {
  docker info --format '{{json .Runtimes}}' 2>/dev/null | grep -q -- '"runsc":{[^}]*--network=none'
}

if [ "${1:-}" = "--check" ]; then
  current
  exit
fi

if ! docker version >/dev/null 2>&1; then
  say "the Docker engine does not answer (docker version failed): start it first"
  exit 2
fi
if current; then
  say "the engine already offers runsc"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  say "registering a runtime edits $daemon_json and reloads the daemon: run as root (sudo make runsc)"
  exit 2
fi

if ! command -v runsc >/dev/null 2>&1; then
  say "installing runsc (apt)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq runsc >/dev/null
fi
runsc_path=$(command -v runsc)

mkdir -p "$(dirname "$daemon_json")"
python3 - "$daemon_json" "$runsc_path" <<'PY'
import json, os, sys
path, runsc = sys.argv[1], sys.argv[2]
config = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        config = json.load(f)
# --network=none: planbox's containers have no network, and gVisor's own network stack
# refuses to start when the engine itself runs in its host's root network namespace (an
# engine inside a container). Not --oci-seccomp: gVisor's kernel is the boundary and runs
# under its own host seccomp filter; loaded inside the sandbox, the container's profile
# (Docker's default as well as planbox's) answers clone3 with EPERM where the profile asks
# for ENOSYS, so glibc never falls back to clone and no thread can start.
config.setdefault("runtimes", {})["runsc"] = {
    "path": runsc,
    "runtimeArgs": ["--network=none"],
}
tmp = path + ".planbox-tmp"
with open(tmp, "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
PY

pid=$(pidof dockerd 2>/dev/null || pgrep -x dockerd 2>/dev/null || true)
if [ -z "$pid" ]; then
  say "no dockerd process to reload; $daemon_json now lists runsc: restart the engine"
  exit 1
fi
say "registered $runsc_path in $daemon_json; reloading dockerd ($pid)"
kill -HUP $pid
for _ in $(seq 1 30); do
  if current; then
    say "the engine offers runsc"
    exit 0
  fi
  sleep 1
done
say "dockerd did not list runsc after the reload; see its log"
exit 1
