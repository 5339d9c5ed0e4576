#!/usr/bin/env bash
# Build libvirt 11.3.0 with the cbc patch series in libvirt-patches/, and
# install the packages the libvirt end-to-end test needs.
#
# Usage: scripts/build-libvirt.sh [--libvirt-src DIR] [--jobs N]
#                                 [--print-build-dir] [--no-stock]
#
#   --libvirt-src DIR  use this libvirt 11.3.x source tree (also:
#                      LIBVIRT_SRC=DIR).  It is copied into the cache and the
#                      series is applied to the copy with git am; DIR itself
#                      is not modified.  Without it, Debian's
#                      libvirt_11.3.0.orig.tar.xz (bookworm-backports) is
#                      downloaded with apt-get source and its sha256 checked.
#   --jobs N           ninja parallelism (default: number of CPUs).
#   --print-build-dir  only print the build directory this invocation would
#                      use; exit 0 if it holds a finished build, 1 if not.
#   --no-stock         do not install the stock libvirt 11.3.0 packages
#                      (they are only needed for the stock-libvirt checks of
#                      scripts/libvirt-tests.sh).
#
# The build is minimal: libvirtd with the QEMU and remote drivers, and virsh;
# no docs, no tests, no other drivers.  It is configured with the system
# paths (/etc, /var, /run), so the build-tree libvirtd reads
# /etc/libvirt/*.conf like the packaged one; run it from the build tree
# (<dir>/src/libvirtd), it then loads its driver modules from the build tree.
#
# Everything lives under ${MECOM_CACHE:-$HOME/.cache/mecom}/libvirt-11.3.0-<key>
# where <key> hashes the patch series, the source and the configure options.
# A second run with nothing changed takes seconds.
#
# Progress goes to stderr.  The last line of stdout is LIBVIRT_BUILD=<build
# dir>, which contains src/libvirtd and tools/virsh.
set -euo pipefail

LIBVIRT_VERSION=11.3.0
LIBVIRT_TARBALL=libvirt_${LIBVIRT_VERSION}.orig.tar.xz
LIBVIRT_SHA256=6bcb0c42c4580436fea262ced56f68a6afe20f7390b1bea2116718cc034a0283

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${MECOM_CACHE:-$HOME/.cache/mecom}
lv_src=${LIBVIRT_SRC:-}
jobs=$(nproc 2>/dev/null || echo 2)
print_only=0
stock=1

log() { printf 'build-libvirt: %s\n' "$*" >&2; }
die() { printf 'build-libvirt: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
    --libvirt-src) [ $# -ge 2 ] || die "--libvirt-src needs a directory"
                   lv_src=$2; shift 2 ;;
    --libvirt-src=*) lv_src=${1#*=}; shift ;;
    --jobs|-j) [ $# -ge 2 ] || die "--jobs needs a number"
               jobs=$2; shift 2 ;;
    --jobs=*) jobs=${1#*=}; shift ;;
    --print-build-dir) print_only=1; shift ;;
    --no-stock) stock=0; shift ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
    esac
done

shopt -s nullglob
patches=("$repo"/libvirt-patches/*.patch)
shopt -u nullglob
[ ${#patches[@]} -gt 0 ] || die "no patches in $repo/libvirt-patches"

# --- cache key -------------------------------------------------------------

if [ -n "$lv_src" ]; then
    [ -d "$lv_src" ] || die "--libvirt-src: '$lv_src' is not a directory"
    lv_src=$(cd "$lv_src" && pwd)
    [ -f "$lv_src/meson.build" ] || die "'$lv_src' does not look like a libvirt tree (no meson.build)"
    src_version=$(sed -n "s/^ *version: '\([0-9.]*\)'.*/\1/p" "$lv_src/meson.build" | head -n1)
    case "$src_version" in
    11.3.*) ;;
    *) die "the patches are for libvirt 11.3.x, but '$lv_src' is libvirt '${src_version:-unknown}'" ;;
    esac
    if [ -d "$lv_src/.git" ]; then
        src_id="git:$lv_src:$(git -C "$lv_src" rev-parse HEAD)"
    else
        src_id="dir:$lv_src:$src_version"
    fi
else
    src_version=$LIBVIRT_VERSION
    src_id="debian:$LIBVIRT_SHA256"
fi

# Minimal build: libvirtd + QEMU driver + remote driver + virsh.
meson_args=(--prefix=/usr --sysconfdir=/etc --localstatedir=/var
    -Drunstatedir=/run -Dinit_script=none -Dsystem=true
    -Ddriver_qemu=enabled -Ddriver_libvirtd=enabled -Ddriver_remote=enabled
    -Djson_c=enabled -Dlibnl=enabled
    -Ddocs=disabled -Dtests=disabled -Dexpensive_tests=disabled -Dnls=disabled
    -Ddriver_bhyve=disabled -Ddriver_esx=disabled -Ddriver_hyperv=disabled
    -Ddriver_interface=disabled -Ddriver_libxl=disabled -Ddriver_lxc=disabled
    -Ddriver_ch=disabled -Ddriver_network=disabled -Ddriver_openvz=disabled
    -Ddriver_secrets=disabled -Ddriver_test=disabled -Ddriver_vbox=disabled
    -Ddriver_vmware=disabled -Ddriver_vz=disabled
    -Dstorage_dir=disabled -Dstorage_disk=disabled -Dstorage_fs=disabled
    -Dstorage_gluster=disabled -Dstorage_iscsi=disabled
    -Dstorage_iscsi_direct=disabled -Dstorage_lvm=disabled
    -Dstorage_mpath=disabled -Dstorage_rbd=disabled -Dstorage_scsi=disabled
    -Dstorage_vstorage=disabled -Dstorage_zfs=disabled
    -Dapparmor=disabled -Dsecdriver_apparmor=disabled -Dapparmor_profiles=disabled
    -Dselinux=disabled -Dsecdriver_selinux=disabled -Daudit=disabled
    -Dattr=disabled -Dcapng=disabled -Dcurl=disabled -Dfuse=disabled
    -Dglusterfs=disabled -Dlibiscsi=disabled -Dlibpcap=disabled
    -Dlibssh=disabled -Dlibssh2=disabled -Dnetcf=disabled -Dnumactl=disabled
    -Dnumad=disabled -Dopenwsman=disabled -Dpciaccess=disabled -Dpolkit=disabled
    -Dsanlock=disabled -Dsasl=disabled -Dudev=disabled -Dblkid=disabled
    -Dwireshark_dissector=disabled -Dbash_completion=disabled
    -Dfirewalld=disabled -Dfirewalld_zone=disabled -Dhost_validate=disabled
    -Dlogin_shell=disabled -Dnss=disabled -Dnbdkit=disabled
    -Dnbdkit_config_default=disabled -Dssh_proxy=disabled
    -Dsysctl_config=disabled -Duserfaultfd_sysctl=disabled -Ddtrace=disabled
    -Dpm_utils=disabled -Dreadline=disabled -Dgit_werror=disabled)

key=$( { echo "$src_id"; printf '%s\n' "${meson_args[@]}"; cat "${patches[@]}"; } |
       sha256sum | cut -c1-16)
work=$cache/libvirt-$src_version-$key
src=$work/src
build=$work/build

if [ "$print_only" = 1 ]; then
    echo "$build"
    [ -f "$work/.build-done" ] && [ -x "$build/src/libvirtd" ] && [ -x "$build/tools/virsh" ]
    exit
fi

mkdir -p "$cache" "$work"

# --- packages --------------------------------------------------------------

pkg_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Version of an installed package, empty if not installed.
pkg_version() {
    pkg_installed "$1" && dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true
}

ensure_packages() {
    # Build dependencies (bookworm).
    local base=(gcc ninja-build pkg-config git xz-utils perl python3
                libglib2.0-dev libgnutls28-dev libxml2-dev libxml2-utils xsltproc
                libjson-c-dev libtirpc-dev libnl-3-dev libnl-route-3-dev
                util-linux)
    # Stock libvirt 11.3.0 (bookworm-backports).  Every libvirt package is
    # pinned with /bookworm-backports: '-t bookworm-backports' would also
    # pull systemd from backports.
    local stock_pkgs=(libvirt-daemon-system libvirt-clients
        libvirt-daemon-driver-qemu libvirt-daemon libvirt0 libvirt-common
        libvirt-daemon-common libvirt-daemon-log libvirt-daemon-config-network
        libvirt-daemon-config-nwfilter libvirt-daemon-driver-network
        libvirt-daemon-driver-nodedev libvirt-daemon-driver-nwfilter
        libvirt-daemon-driver-secret libvirt-daemon-driver-storage)
    # libvirt-daemon-driver-qemu depends on some qemu-system.  Bookworm's
    # (7.2) cannot sit next to the backports qemu-system-data (10.0.2) that
    # scripts/build-qemu.sh installs for the firmware, so apt finds no
    # provider unless the backports one is named.  The tests never run it:
    # every domain's <emulator> is the patched QEMU.
    local stock_qemu=(qemu-system-x86 qemu-system-common)
    local missing=() missing_bpo=() p v

    for p in "${base[@]}"; do pkg_installed "$p" || missing+=("$p"); done
    # meson: libvirt needs >= 0.56, but reuse the backports one (>= 1.5)
    # that scripts/build-qemu.sh installs, instead of downgrading it.
    v=$(pkg_version meson)
    if [ -z "$v" ] || dpkg --compare-versions "$v" lt 1.5; then
        missing_bpo+=(meson/bookworm-backports)
    fi
    if [ "$stock" = 1 ]; then
        for p in "${stock_pkgs[@]}"; do
            v=$(pkg_version "$p")
            case "$v" in
            "$LIBVIRT_VERSION"-*) ;;
            *) missing_bpo+=("$p/bookworm-backports") ;;
            esac
        done
        for p in "${stock_qemu[@]}"; do
            pkg_installed "$p" || missing_bpo+=("$p/bookworm-backports")
        done
    fi
    [ ${#missing[@]} -eq 0 ] && [ ${#missing_bpo[@]} -eq 0 ] && return 0

    [ "$(id -u)" = 0 ] || die "missing packages: ${missing[*]} ${missing_bpo[*]} (run as root, or install them)"
    log "installing packages: ${missing[*]} ${missing_bpo[*]}"
    bash "$repo/scripts/apt-backports.sh"
    export DEBIAN_FRONTEND=noninteractive
    # The stock daemons must not start at installation time (a container has
    # no init that could run them anyway; on a real host they would grab
    # /run/libvirt).  policy-rc.d is the Debian way to say so.
    local prc=/usr/sbin/policy-rc.d prc_made=0
    if [ ! -e "$prc" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$prc"; chmod 755 "$prc"; prc_made=1
    fi
    local rc=0
    apt-get -o DPkg::Lock::Timeout=900 install -y --no-install-recommends \
        "${missing[@]}" "${missing_bpo[@]}" >&2 || rc=$?
    [ "$prc_made" = 1 ] && rm -f "$prc"
    [ "$rc" = 0 ] || die "apt-get install failed"
}

t_start=$(date +%s)
ensure_packages

# --- source tree -----------------------------------------------------------

git_q() {
    git -C "$src" -c user.name="mecom build" -c user.email=mecom@localhost \
        -c safe.directory="$src" "$@"
}

prepare_tree() {
    local tmp dl=$cache/downloads
    rm -rf "$src" "$build" "$work/.build-done"
    if [ -z "$lv_src" ]; then
        mkdir -p "$dl"
        if [ ! -f "$dl/$LIBVIRT_TARBALL" ] ||
           ! echo "$LIBVIRT_SHA256  $dl/$LIBVIRT_TARBALL" | sha256sum -c --status; then
            log "downloading Debian's libvirt $LIBVIRT_VERSION source"
            if [ "$(id -u)" = 0 ]; then bash "$repo/scripts/apt-backports.sh"; fi
            tmp=$(mktemp -d "$dl/apt.XXXXXX")
            # The .dsc and .debian.tar.xz may be missing on the mirror (404);
            # only the orig tarball matters.
            (cd "$tmp" && apt-get source --download-only "libvirt/bookworm-backports" >&2) || true
            [ -f "$tmp/$LIBVIRT_TARBALL" ] || { rm -rf "$tmp"; die "apt-get source did not fetch $LIBVIRT_TARBALL"; }
            mv "$tmp/$LIBVIRT_TARBALL" "$dl/"
            rm -rf "$tmp"
        fi
        echo "$LIBVIRT_SHA256  $dl/$LIBVIRT_TARBALL" | sha256sum -c --status ||
            die "sha256 mismatch for $dl/$LIBVIRT_TARBALL (expected $LIBVIRT_SHA256)"
        log "sha256 OK: $LIBVIRT_TARBALL $LIBVIRT_SHA256"
        log "unpacking $LIBVIRT_TARBALL"
        mkdir -p "$src"
        tar -xJf "$dl/$LIBVIRT_TARBALL" -C "$src" --strip-components=1 --no-same-owner
        git -C "$src" init -q
        git_q add -A
        git_q commit -q -m "libvirt $LIBVIRT_VERSION ($LIBVIRT_TARBALL)"
    elif [ -d "$lv_src/.git" ]; then
        log "cloning $lv_src (HEAD; uncommitted changes are not used)"
        git clone -q "$lv_src" "$src"
    else
        log "copying $lv_src"
        cp -a "$lv_src" "$src"
        git -C "$src" init -q
        git_q add -A
        git_q commit -q -m "libvirt from $lv_src"
    fi
    log "applying ${#patches[@]} patches with git am"
    git_q am -q "${patches[@]}" || die "git am failed in $src"
    touch "$work/.tree-ready"
}

if [ ! -f "$work/.tree-ready" ]; then
    prepare_tree
fi

# --- configure and build ---------------------------------------------------

if [ ! -f "$build/build.ninja" ]; then
    log "configuring in $build"
    meson setup "${meson_args[@]}" "$build" "$src" >"$work/meson-setup.log" 2>&1 || {
        tail -n 30 "$work/meson-setup.log" >&2
        rm -rf "$build"
        die "meson setup failed (log: $work/meson-setup.log)"
    }
fi

if [ ! -f "$work/.build-done" ]; then
    log "building (ninja -j$jobs)"
    t_build=$(date +%s)
    ninja -C "$build" -j"$jobs" >&2 || die "build failed (see above)"
    log "build took $(( $(date +%s) - t_build )) s"
    touch "$work/.build-done"
fi

[ -x "$build/src/libvirtd" ] || die "no $build/src/libvirtd after the build"
[ -x "$build/tools/virsh" ] || die "no $build/tools/virsh after the build"
log "done in $(( $(date +%s) - t_start )) s"
echo "LIBVIRT_BUILD=$build"
