#!/usr/bin/env bash
# Build QEMU 10.0.x with the mecom 'cbc' multifd compression method.
#
# Usage: scripts/build-qemu.sh [--qemu-src DIR] [--jobs N] [--print-build-dir]
#
#   --qemu-src DIR     use this QEMU 10.0.x source tree (also: QEMU_SRC=DIR).
#                      It is copied into the cache and the series in
#                      qemu-patches/ is applied to the copy (git am for a git
#                      tree, patch -p1 otherwise); DIR itself is not modified.
#                      Without it, Debian's qemu 10.0.2 source tarball is
#                      downloaded with apt-get source and its sha256 checked.
#   --jobs N           ninja parallelism (default: number of CPUs).
#   --print-build-dir  only print the build directory this invocation would
#                      use, and exit 0 if it holds a finished build, 1 if not.
#
# Everything lives under ${MECOM_CACHE:-$HOME/.cache/mecom}: the mecom
# library installed with 'make install', the patched QEMU tree and its build
# directory, keyed by a hash of the patch series (and of the source tree when
# --qemu-src is used).  A second run with nothing changed takes seconds; when
# only the library changed it is reinstalled and QEMU relinked.
#
# Progress goes to stderr.  The last line of stdout is QEMU_BUILD=<build dir>,
# which contains qemu-system-x86_64 and tests/qtest/migration-test.
set -euo pipefail

QEMU_VERSION=10.0.2
QEMU_TARBALL=qemu_${QEMU_VERSION}+ds.orig.tar.xz
QEMU_SHA256=0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1
FIRMWARE_PATH=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${MECOM_CACHE:-$HOME/.cache/mecom}
qemu_src=${QEMU_SRC:-}
jobs=$(nproc 2>/dev/null || echo 2)
print_only=0

log() { printf 'build-qemu: %s\n' "$*" >&2; }
die() { printf 'build-qemu: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
    --qemu-src) [ $# -ge 2 ] || die "--qemu-src needs a directory"
                qemu_src=$2; shift 2 ;;
    --qemu-src=*) qemu_src=${1#*=}; shift ;;
    --jobs|-j) [ $# -ge 2 ] || die "--jobs needs a number"
               jobs=$2; shift 2 ;;
    --jobs=*) jobs=${1#*=}; shift ;;
    --print-build-dir) print_only=1; shift ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done

shopt -s nullglob
patches=("$repo"/qemu-patches/*.patch)
shopt -u nullglob
[ ${#patches[@]} -gt 0 ] || die "no patches in $repo/qemu-patches"

# --- cache keys ------------------------------------------------------------

# Key of the patched tree: the series plus where the source comes from.
if [ -n "$qemu_src" ]; then
    [ -d "$qemu_src" ] || die "--qemu-src: '$qemu_src' is not a directory"
    qemu_src=$(cd "$qemu_src" && pwd)
    [ -f "$qemu_src/VERSION" ] || die "'$qemu_src' does not look like a QEMU tree (no VERSION file)"
    src_version=$(cat "$qemu_src/VERSION")
    case "$src_version" in
    10.0.*) ;;
    *) die "the patches are for QEMU 10.0.x, but '$qemu_src' is QEMU $src_version; please use a 10.0.x tree (or omit --qemu-src to fetch $QEMU_VERSION)" ;;
    esac
    if [ -d "$qemu_src/.git" ]; then
        src_id="git:$qemu_src:$(git -C "$qemu_src" rev-parse HEAD)"
    else
        src_id="dir:$qemu_src:$src_version"
    fi
else
    src_version=$QEMU_VERSION
    src_id="debian:$QEMU_SHA256"
fi
tree_key=$( { echo "$src_id"; cat "${patches[@]}"; } | sha256sum | cut -c1-16)

# Key of the library: its sources and build description.
lib_key() {
    local paths=() f
    for f in src include Cargo.toml Cargo.lock Makefile mecom.pc.in build.rs cbindgen.toml; do
        [ -e "$repo/$f" ] && paths+=("$f")
    done
    (cd "$repo" && find "${paths[@]}" -type f -print0 | LC_ALL=C sort -z |
        xargs -0 -r sha256sum) | sha256sum | cut -c1-16
}

work=$cache/qemu-$src_version-$tree_key
src=$work/src
build=$work/build
prefix=$cache/mecom-prefix

if [ "$print_only" = 1 ]; then
    echo "$build"
    [ -x "$build/qemu-system-x86_64" ] && [ -x "$build/tests/qtest/migration-test" ]
    exit
fi

mkdir -p "$cache" "$work"

# --- packages --------------------------------------------------------------

pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

ensure_packages() {
    local base=(ninja-build libglib2.0-dev libpixman-1-dev libzstd-dev libgnutls28-dev flex bison
                bzip2 xz-utils pkg-config gcc make git python3-venv)
    local bpo=(meson python3-pycotap seabios ipxe-qemu qemu-system-data)
    local missing=() missing_bpo=() p meson_ver

    for p in "${base[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    for p in "${bpo[@]}"; do pkg_installed "$p" || missing_bpo+=("$p"); done
    # QEMU 10.0 needs meson >= 1.5; bookworm's own is 1.0.
    meson_ver=$(dpkg-query -W -f='${Version}' meson 2>/dev/null || true)
    if [ -n "$meson_ver" ] && dpkg --compare-versions "$meson_ver" lt 1.5; then
        missing_bpo+=(meson)
    fi
    [ ${#missing[@]} -eq 0 ] && [ ${#missing_bpo[@]} -eq 0 ] && return 0

    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} ${missing_bpo[*]} (run as root, or install them)"
    log "installing packages: ${missing[*]} ${missing_bpo[*]}"
    bash "$repo/scripts/apt-backports.sh"
    export DEBIAN_FRONTEND=noninteractive
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends "${missing[@]}" >&2
    fi
    if [ ${#missing_bpo[@]} -gt 0 ]; then
        apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends \
            -t bookworm-backports "${missing_bpo[@]}" >&2
    fi
}

ensure_packages
command -v cargo >/dev/null || die "cargo is needed to build the mecom library"

# --- the mecom library -----------------------------------------------------

key=$(lib_key)
if [ "$(cat "$prefix/.mecom-key" 2>/dev/null || true)" != "$key" ] ||
   [ ! -f "$prefix/lib/pkgconfig/mecom.pc" ]; then
    [ -f "$repo/Makefile" ] || die "$repo/Makefile is missing; cannot install the library"
    log "building and installing the mecom library into $prefix"
    make -C "$repo" install PREFIX="$prefix" >&2
    [ -f "$prefix/lib/pkgconfig/mecom.pc" ] || die "make install did not install lib/pkgconfig/mecom.pc"
    echo "$key" > "$prefix/.mecom-key"
    lib_changed=1
else
    lib_changed=0
fi
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

# --- the patched QEMU tree -------------------------------------------------

git_q() {
    git -C "$src" -c user.name="mecom build" -c user.email=mecom@localhost \
        -c safe.directory="$src" "$@"
}

prepare_tree() {
    local tmp
    rm -rf "$src" "$build"
    if [ -z "$qemu_src" ]; then
        local dl=$cache/downloads
        mkdir -p "$dl"
        if [ ! -f "$dl/$QEMU_TARBALL" ] ||
           ! echo "$QEMU_SHA256  $dl/$QEMU_TARBALL" | sha256sum -c --status; then
            log "downloading Debian's qemu $QEMU_VERSION source"
            [ "$(id -u)" = 0 ] && bash "$repo/scripts/apt-backports.sh"
            tmp=$(mktemp -d "$dl/apt.XXXXXX")
            # The .dsc may be missing on the mirror; only the tarball matters.
            (cd "$tmp" && apt-get source --download-only "qemu/bookworm-backports" >&2) || true
            [ -f "$tmp/$QEMU_TARBALL" ] || die "apt-get source did not fetch $QEMU_TARBALL"
            mv "$tmp/$QEMU_TARBALL" "$dl/"
            rm -rf "$tmp"
        fi
        echo "$QEMU_SHA256  $dl/$QEMU_TARBALL" | sha256sum -c --status ||
            die "sha256 mismatch for $dl/$QEMU_TARBALL"
        log "unpacking $QEMU_TARBALL"
        mkdir -p "$src"
        tar -xJf "$dl/$QEMU_TARBALL" -C "$src" --strip-components=1 --no-same-owner
        git -C "$src" init -q
        git_q add -A
        git_q commit -q -m "QEMU $QEMU_VERSION ($QEMU_TARBALL)"
        log "applying ${#patches[@]} patches with git am"
        git_q am -q "${patches[@]}" || die "git am failed in $src"
    elif [ -d "$qemu_src/.git" ]; then
        log "cloning $qemu_src (HEAD; uncommitted changes are not used)"
        git clone -q "$qemu_src" "$src"
        log "applying ${#patches[@]} patches with git am"
        git_q am -q "${patches[@]}" || die "git am failed in $src"
    else
        log "copying $qemu_src"
        cp -a "$qemu_src" "$src"
        log "applying ${#patches[@]} patches with patch -p1"
        for p in "${patches[@]}"; do
            patch -d "$src" -p1 -s --forward < "$p" || die "patch $(basename "$p") failed"
        done
    fi

    # Debian's +ds tarball has no firmware blobs, but pc-bios/meson.build
    # wants the edk2 *.fd.bz2 files whenever bzip2 is found: add empty ones.
    local f
    for f in $(sed -n "/fds = \[/,/\]/p" "$src/pc-bios/meson.build" | grep -o "edk2-[a-z0-9_-]*\.fd"); do
        [ -e "$src/pc-bios/$f.bz2" ] || bzip2 -c </dev/null > "$src/pc-bios/$f.bz2"
    done
    touch "$work/.tree-ready"
}

if [ ! -f "$work/.tree-ready" ]; then
    prepare_tree
fi

# --- configure and build ---------------------------------------------------

# gnutls: migration over TLS (tls-creds-x509), which operators use and
# scripts/qemu-tests.sh tests with cbc.  malloc-trim: on in distribution
# builds (auto), off under --without-default-features; cbc gives its page
# cache's memory back with it after each migration.
configure_args=(--python=/usr/bin/python3 --target-list=x86_64-softmmu
    --without-default-features --enable-tcg --enable-kvm --enable-zstd
    --enable-gnutls --enable-malloc-trim --enable-pixman --enable-cbc --disable-docs --disable-werror
    --disable-download --disable-install-blobs --firmwarepath=$FIRMWARE_PATH)
conf_key=$(printf '%s\n' "${configure_args[@]}" "$prefix" | sha256sum | cut -c1-16)

if [ ! -f "$build/build.ninja" ] ||
   [ "$(cat "$build/.configure-key" 2>/dev/null || true)" != "$conf_key" ]; then
    log "configuring in $build"
    mkdir -p "$build"
    (cd "$build" && "$src/configure" "${configure_args[@]}" >&2) ||
        die "configure failed (see above)"
    echo "$conf_key" > "$build/.configure-key"
fi

# The build is relocatable: --firmwarepath is looked up under qemu-bundle.
for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe/qemu; do
    link=$build/qemu-bundle$d
    if [ -d "$d" ] && [ ! -e "$link" ]; then
        mkdir -p "$(dirname "$link")"
        ln -sfn "$d" "$link"
    fi
done

# ninja does not track the static library pulled in through pkg-config:
# force the relink when a new one was installed.
if [ "$lib_changed" = 1 ]; then
    rm -f "$build/qemu-system-x86_64" "$build/qemu-system-x86_64-unsigned"
fi

log "building (ninja -j$jobs)"
ninja -C "$build" -j"$jobs" qemu-system-x86_64 tests/qtest/migration-test >&2 ||
    die "build failed (see above)"

echo "QEMU_BUILD=$build"
