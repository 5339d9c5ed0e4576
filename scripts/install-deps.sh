#!/usr/bin/env bash
# Installs what building and testing the library needs on Debian 12, and
# nothing if it is already there.  Everything CI needs is installed here (or
# by scripts/build-qemu.sh for the QEMU part), never by hand.
set -euo pipefail

# gdb: when a QEMU stops answering QMP, the harness records its threads'
# stacks (harness/qemu.py), so a hang in CI says where it hangs.
need=()
for pkg in pkg-config libzstd-dev gcc make valgrind gdb; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "install-deps: apt-get install ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi
