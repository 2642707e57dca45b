#!/bin/sh
# add-wheels.sh ROOT: installs the hash-pinned wheels of wheels.txt into ROOT's Python
# (bookworm: CPython 3.11), unpacked into /usr/local/lib/python3.11/dist-packages, then
# byte-compiles them (the sandbox root is read-only, so nothing could cache them later).
# Downloads with the host's pip; set PLANBOX_PIP to another pip command if needed.
set -eu
root=${1:?usage: add-wheels.sh ROOT}
here=$(cd "$(dirname "$0")" && pwd)
pip=${PLANBOX_PIP:-python3 -m pip}
if ! $pip --version >/dev/null 2>&1; then
  echo "add-wheels.sh needs pip on the host to fetch wheels.txt ('$pip' failed): install python3-pip or set PLANBOX_PIP" >&2
  exit 2
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
$pip download --quiet --no-deps --only-binary=:all: --require-hashes \
  --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
  -d "$dir" -r "$here/wheels.txt"
site="$root/usr/local/lib/python3.11/dist-packages"
mkdir -p "$site"
for wheel in "$dir"/*.whl; do
  python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$wheel" "$site"
done
chroot "$root" python3 -m compileall -q /usr/local/lib/python3.11/dist-packages >/dev/null
