#!/usr/bin/env bash
# Regenerates include/mecom.h with the pinned cbindgen and fails if the
# checked-in header differs (the header is part of the ABI and is reviewed
# like code).  --update writes the new header instead.
set -euo pipefail
cd "$(dirname "$0")/.."

CBINDGEN_VERSION=0.29.4
if ! cbindgen --version 2>/dev/null | grep -qx "cbindgen $CBINDGEN_VERSION"; then
    echo "check-header: installing cbindgen $CBINDGEN_VERSION (pinned: point releases change output)" >&2
    cargo install --quiet --locked cbindgen --version "$CBINDGEN_VERSION"
fi

tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
cbindgen --quiet --config cbindgen.toml --crate mecom --output "$tmp" .
if [ "${1:-}" = --update ]; then
    cp "$tmp" include/mecom.h
    echo "check-header: include/mecom.h updated"
    exit 0
fi
if ! diff -u include/mecom.h "$tmp"; then
    echo "check-header: include/mecom.h is stale; run scripts/check-header.sh --update" >&2
    exit 1
fi
echo "check-header: include/mecom.h matches src/ffi"
