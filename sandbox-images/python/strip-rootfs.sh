#!/bin/sh
# strip-rootfs.sh ROOT: purge the build-time packages listed in strip-packages.txt from a
# finished rootfs, then drop apt caches and changelogs.
set -eu
root=${1:?usage: strip-rootfs.sh ROOT}
here=$(cd "$(dirname "$0")" && pwd)
installed=$(chroot "$root" dpkg-query -W -f='${Package}\n' $(grep -v '^#' "$here/strip-packages.txt") 2>/dev/null || true)
if [ -n "$installed" ]; then
  # --force-depends: python3-scipy names python3-pythran as a dependency but never imports it.
  chroot "$root" dpkg --purge --force-depends $installed >/dev/null 2>&1
fi
rm -rf "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/*/changelog*
# Test suites shipped inside the Python packages are never imported by analysis code.
find "$root"/usr/lib/python3/dist-packages -depth -type d -name tests -path '*/dist-packages/*/*' -exec rm -rf {} +
