#!/bin/sh
# Writes a Debian bookworm rootfs tarball holding python3 and the data stack, from Debian
# packages only (no container registry). Needs root and mmdebstrap (falls back to debootstrap).
#   build-rootfs.sh OUT.tar
# The mirror comes from the host's apt sources; set PLANBOX_APT_MIRROR to override it.
set -eu
out=${1:?usage: build-rootfs.sh OUT.tar}
here=$(cd "$(dirname "$0")" && pwd)
suite=${PLANBOX_SUITE:-bookworm}

mirror=${PLANBOX_APT_MIRROR:-}
if [ -z "$mirror" ]; then
  # deb822 sources first (URIs: ...), then one-line sources (deb URL suite ...).
  for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    mirror=$(awk '
      /^URIs:/ && $2 !~ /security/ { print $2; exit }
      /^deb[ \t]/ && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }
    ' "$f")
    [ -n "$mirror" ] && break
  done
fi
if [ -z "$mirror" ]; then
  echo "no apt mirror found in /etc/apt/sources*; set PLANBOX_APT_MIRROR=http://your.mirror/debian" >&2
  exit 2
fi
if [ "$(id -u)" != 0 ]; then
  echo "building the rootfs needs root (mmdebstrap --mode=root): run 'sudo make image'" >&2
  exit 2
fi

pkgs=$(grep -v '^#' "$here/packages.txt" | tr '\n' ' ' | tr -s ' ')
echo "rootfs: $suite from $mirror with: $pkgs" >&2

if command -v mmdebstrap >/dev/null 2>&1; then
  # Essential variant plus our list; apt keeps Recommends out, dpkg keeps docs out.
  mmdebstrap --mode=root --variant=essential --format=tar --quiet \
    --include="$(echo "$pkgs" | tr ' ' ',' | sed 's/,$//')" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook="'$here/strip-rootfs.sh' \"\$1\"" \
    --customize-hook="'$here/add-wheels.sh' \"\$1\"" \
    "$suite" "$out" "$mirror"
elif command -v debootstrap >/dev/null 2>&1; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  debootstrap --variant=minbase --include="$(echo "$pkgs" | tr ' ' ',' | sed 's/,$//')" \
    "$suite" "$dir" "$mirror"
  "$here/strip-rootfs.sh" "$dir"
  "$here/add-wheels.sh" "$dir"
  rm -rf "$dir"/usr/share/man/* "$dir"/usr/share/info/*
  tar -C "$dir" -cf "$out" .
else
  echo "neither mmdebstrap nor debootstrap is installed: apt-get install mmdebstrap" >&2
  exit 2
fi
