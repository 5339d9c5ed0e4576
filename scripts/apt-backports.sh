#!/usr/bin/env bash
# Make Debian bookworm-backports reachable for apt (binary and source), derived
# from the Debian entry the system already has, then run apt-get update once.
#
# Why derive: the project must not hard-code a mirror; whatever mirror the
# machine's own debian.sources (or sources.list) names is the one we reuse.
set -euo pipefail

list=/etc/apt/sources.list.d/mecom-backports.sources
if [ -f "$list" ] && [ "${MECOM_APT_REFRESH:-0}" != 1 ]; then
    if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*bookworm-backports*' -print -quit 2>/dev/null)" ]; then
        apt-get update -qq
    fi
    exit 0
fi

uri=""
if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # deb822: take the URIs line of the stanza whose Suites name bookworm.
    uri=$(awk '
        /^$/ { if (suite && u) { print u; exit } suite=0; u="" }
        /^URIs:/ { u=$2 }
        /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") suite=1 }
        END { if (suite && u) print u }' /etc/apt/sources.list.d/debian.sources | head -n1)
fi
if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list)
fi
if [ -z "$uri" ]; then
    echo "apt-backports: no Debian bookworm entry found in the apt sources" >&2
    exit 1
fi

keyring=/usr/share/keyrings/debian-archive-keyring.gpg
{
    echo "Types: deb deb-src"
    echo "URIs: $uri"
    echo "Suites: bookworm-backports"
    echo "Components: main"
    [ -f "$keyring" ] && echo "Signed-By: $keyring"
} > "$list"
# Source entries for bookworm itself too (apt-get source needs them for deps).
apt-get update -qq
