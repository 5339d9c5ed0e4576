#!/usr/bin/env bash
# Build the mecom test guest: a Debian bookworm cloud kernel plus an
# initramfs with busybox-static, harness/guest/init and static workload
# programs compiled from harness/guest/*.c.
#
# Output: ${MECOM_CACHE:-$HOME/.cache/mecom}/guest-<hash>/{vmlinuz,initrd.img,manifest}
# where <hash> covers harness/guest/* and this script. A second run with the
# same sources reuses the directory. The directory path is the only thing
# printed on stdout (progress goes to stderr), so callers can do
#     guest=$(harness/build-guest.sh)
#
# Options:
#   --force       rebuild even if the cache directory exists
#   --print-dir   print the cache directory path for the current sources and
#                 exit (0 if already built, 1 if not); builds nothing
# Environment:
#   MECOM_CACHE               cache root (default $HOME/.cache/mecom)
#   MECOM_GUEST_KERNEL_PKG    kernel package to use instead of the current
#                             bookworm linux-image-*-cloud-amd64
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/guest"
force=0
print_only=0
for a in "$@"; do
    case "$a" in
        --force) force=1 ;;
        --print-dir) print_only=1 ;;
        -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-guest: unknown option $a" >&2; exit 2 ;;
    esac
done

log() { echo "build-guest: $*" >&2; }

# Hash of the guest sources (names and contents) and of this script.
hash=$(
    cd "$here"
    { find guest -maxdepth 1 -type f | LC_ALL=C sort | while read -r f; do
          echo "== $f"; cat "$f"; done
      echo "== build-guest.sh"; cat build-guest.sh; } | sha256sum | cut -c1-16
)
cache="${MECOM_CACHE:-$HOME/.cache/mecom}"
out="$cache/guest-$hash"

if [ "$print_only" = 1 ]; then
    echo "$out"
    [ -f "$out/manifest" ]
    exit $?
fi

if [ "$force" = 0 ] && [ -f "$out/vmlinuz" ] && [ -f "$out/initrd.img" ] && [ -f "$out/manifest" ]; then
    log "reusing $out"
    echo "$out"
    exit 0
fi

# ---- build dependencies (idempotent) -------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_update_once() {
    if [ "$apt_updated" = 0 ]; then
        as_root apt-get update -qq
        apt_updated=1
    fi
}
need_pkgs=()
for p in gcc libc6-dev cpio gzip dpkg apt; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        need_pkgs+=("$p")
    fi
done
if [ "${#need_pkgs[@]}" -gt 0 ]; then
    log "installing build dependencies: ${need_pkgs[*]}"
    apt_update_once
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 \
        install -y --no-install-recommends "${need_pkgs[@]}" >&2
fi

# ---- pick the kernel package ---------------------------------------------
pick_kernel() {
    # The bookworm cloud meta-package's candidate depends on the current
    # versioned image (bookworm/bookworm-security; backports has a lower pin).
    apt-cache depends linux-image-cloud-amd64 2>/dev/null |
        awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-cloud-amd64$/ { print $2; exit }'
}
kpkg="${MECOM_GUEST_KERNEL_PKG:-}"
if [ -z "$kpkg" ]; then
    kpkg=$(pick_kernel || true)
    if [ -z "$kpkg" ]; then
        apt_update_once
        kpkg=$(pick_kernel || true)
    fi
    if [ -z "$kpkg" ]; then
        # Fallback: highest-numbered bookworm 6.1 cloud image by name.
        kpkg=$(apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-cloud-amd64$' |
               awk '{print $1}' | sort -V | tail -n1)
    fi
fi
if [ -z "$kpkg" ]; then
    log "no linux-image-*-cloud-amd64 package found (run apt-get update?)"
    exit 1
fi
log "kernel package: $kpkg"

# ---- download and extract ------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/mecom-guest-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
chmod 755 "$work"
cd "$work"
if ! apt-get download "$kpkg" busybox-static >&2 2>"$work/download.err"; then
    apt_update_once
    apt-get download "$kpkg" busybox-static >&2
fi
mkdir -p ext rootfs
for deb in ./*.deb; do
    dpkg-deb -x "$deb" ext
done
kver_deb=$(dpkg-deb -f ./linux-image-*.deb Version)
bb_deb=$(dpkg-deb -f ./busybox-static*.deb Version)
vmlinuz=$(ls ext/boot/vmlinuz-* | head -n1)
[ -f "$vmlinuz" ] || { log "no vmlinuz in $kpkg"; exit 1; }

# ---- initramfs -----------------------------------------------------------
mkdir -p rootfs/bin rootfs/sbin rootfs/usr/bin rootfs/usr/sbin rootfs/dev \
         rootfs/proc rootfs/sys rootfs/tmp rootfs/etc
cp ext/bin/busybox rootfs/bin/busybox
install -m 0755 "$src/init" rootfs/init
for c in "$src"/*.c; do
    name=$(basename "$c" .c)
    log "compiling $name"
    gcc -static -O2 -Wall -o "rootfs/usr/bin/$name" "$c" -I"$src"
    strip "rootfs/usr/bin/$name" 2>/dev/null || true
done
# The replay workload's read-only image disk needs virtio-pci + virtio-blk,
# which the cloud kernel builds as (uncompressed) modules.
mkdir -p rootfs/lib/modules
for m in virtio/virtio virtio/virtio_ring virtio/virtio_pci_modern_dev \
         virtio/virtio_pci_legacy_dev virtio/virtio_pci block/virtio_blk; do
    ko=$(ls ext/lib/modules/*/kernel/drivers/$m.ko 2>/dev/null | head -n1)
    [ -n "$ko" ] || { log "no $m.ko in $kpkg"; exit 1; }
    cp "$ko" rootfs/lib/modules/
done
# /dev/console must exist before devtmpfs is mounted, or init has no stdout.
if [ "$(id -u)" = 0 ]; then
    mknod -m 600 rootfs/dev/console c 5 1
    mknod -m 666 rootfs/dev/null c 1 3
fi
echo "mecom-guest" > rootfs/etc/hostname
(cd rootfs && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet --reproducible) |
    gzip -9n > initrd.img

# ---- publish atomically --------------------------------------------------
mkdir -p "$cache"
tmpout=$(mktemp -d "$cache/.guest-$hash.XXXXXX")
cp "$vmlinuz" "$tmpout/vmlinuz"
cp initrd.img "$tmpout/initrd.img"
{
    echo "hash=$hash"
    echo "kernel_pkg=$kpkg"
    echo "kernel_pkg_version=$kver_deb"
    echo "kernel_file=$(basename "$vmlinuz")"
    echo "busybox_static_version=$bb_deb"
    echo "programs=$(cd rootfs/usr/bin && ls | tr '\n' ' ')"
    echo "initrd_bytes=$(stat -c %s initrd.img)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$tmpout/manifest"
chmod 755 "$tmpout"
rm -rf "$out"
mv "$tmpout" "$out"
log "built $out ($(stat -c %s "$out/vmlinuz") byte kernel, $(stat -c %s "$out/initrd.img") byte initrd)"
echo "$out"
