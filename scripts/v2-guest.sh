#!/usr/bin/env bash
# Runs a command as root in a guest kernel whose only cgroup hierarchy is
# cgroup v2, and exits with the command's status.
#
#   scripts/v2-guest.sh [--timeout SECONDS] COMMAND [ARG...]
#
# The guest is Debian's own kernel (the package linux-image-amd64 depends
# on) under qemu, with this machine's / shared read-only over 9p and a RAM
# overlay on top as the guest's root: the guest runs this machine's own
# binaries (containerd, ctr, the tests) in the working directory it was
# called from. Kernel and initramfs are cached under target/v2-guest.
# The guest's console (the command's output) is streamed to stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache="$here/target/v2-guest"
timeout=3000
if [ "${1:-}" = "--timeout" ]; then
    timeout=$2
    shift 2
fi
[ $# -gt 0 ] || { echo "usage: $0 [--timeout SECONDS] COMMAND [ARG...]" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "v2-guest: run as root" >&2; exit 2; }

need=()
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
[ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx switch_root || need+=(busybox-static)
command -v cpio >/dev/null 2>&1 || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
    echo "v2-guest: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The modules the initramfs loads, in dependency order: virtio over PCI,
# 9p over virtio (the host's /), overlay (the RAM layer on top), and veth
# for the tests' network namespaces, loop and ext4 for their filesystem
# images (which idmapped mounts support on this kernel; its overlayfs and
# 9p do not).
MODULES="drivers/virtio/virtio_ring.ko drivers/virtio/virtio.ko
 drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci_legacy_dev.ko
 drivers/virtio/virtio_pci.ko fs/netfs/netfs.ko fs/fscache/fscache.ko
 net/9p/9pnet.ko net/9p/9pnet_virtio.ko fs/9p/9p.ko fs/overlayfs/overlay.ko
 drivers/net/veth.ko drivers/block/loop.ko lib/crc16.ko fs/mbcache.ko
 crypto/crc32c_generic.ko fs/jbd2/jbd2.ko fs/ext4/ext4.ko"

build_guest() {
    local pkg work kver
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
    if [ -z "$pkg" ]; then
        apt-get update -qq
        pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)
    fi
    [ -n "$pkg" ] || { echo "v2-guest: cannot find the kernel package linux-image-amd64 depends on" >&2; exit 1; }
    echo "v2-guest: building the guest from $pkg" >&2
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    (cd "$work" && apt-get download -qq "$pkg" 2>/dev/null && dpkg-deb -x ./*.deb k)
    kver=$(ls "$work/k/lib/modules")
    mkdir -p "$work/i"/{bin,dev,proc,sys,host,rw,newroot,lib/modules}
    cp /bin/busybox "$work/i/bin/busybox"
    for m in $MODULES; do
        cp "$work/k/lib/modules/$kver/kernel/$m" "$work/i/lib/modules/"
        basename "$m" >>"$work/i/lib/modules/order"
    done
    cat >"$work/i/init" <<'EOF'
#!/bin/busybox sh
# Stage 1: the host's / over 9p, a RAM overlay on it, then stage 2 there
# (named on the kernel command line).
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t devtmpfs dev /dev
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m || echo "guest: insmod $m failed"; done
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose host /host || { echo "guest: cannot mount the host's /"; poweroff -f; }
mount -t tmpfs -o size=80% rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work root /newroot || { echo "guest: overlay failed"; poweroff -f; }
stage2=$(sed -n 's/.*v2guest.stage2=\([^ ]*\).*/\1/p' /proc/cmdline)
umount /proc /dev
exec switch_root /newroot /bin/sh "$stage2"
EOF
    chmod 0755 "$work/i/init"
    mkdir -p "$cache"
    (cd "$work/i" && find . | cpio -o -H newc --quiet | gzip -1) >"$cache/initramfs.tmp"
    cp "$work/k/boot/vmlinuz-$kver" "$cache/vmlinuz.tmp"
    mv "$cache/initramfs.tmp" "$cache/initramfs.gz"
    mv "$cache/vmlinuz.tmp" "$cache/vmlinuz"
    echo "$pkg" >"$cache/kernel"
    echo "$MODULES" >"$cache/modules"
}

# Rebuilt when the module list changed since the cache was made.
[ -s "$cache/vmlinuz" ] && [ -s "$cache/initramfs.gz" ] &&
    [ "$(cat "$cache/modules" 2>/dev/null)" = "$MODULES" ] || build_guest

# What stage 2 runs: a script in the guest's RAM (the host's view is
# read-only), written here and read there through the shared /.
run="$cache/run.$$"
mkdir -p "$run"
trap 'rm -rf "$run"' EXIT
{
    printf 'cd %q\n' "$PWD"
    printf 'export PATH=%q\n' "$PATH"
    for v in CARGO_TARGET_DIR ISOEXEC_BIN_DIR RUST_BACKTRACE RUST_TEST_THREADS; do
        [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf '%q ' "$@"
    printf '\n'
} >"$run/cmd"
cp "$here/scripts/v2-guest-stage2.sh" "$run/stage2"

# Software emulation: KVM is not usable on the machines this runs on (it
# opens, then fails to set the guest's MSRs). V2_GUEST_ACCEL=kvm where it is.
accel=${V2_GUEST_ACCEL:-tcg}
cpu=max
[ "$accel" = kvm ] && cpu=host
status=""
marker="v2-guest: exit status "
set +e
exec 3< <(timeout --foreground -k 10 "$timeout" qemu-system-x86_64 \
    -accel "$accel" -cpu "$cpu" -smp "$(nproc)" -m 6G \
    -kernel "$cache/vmlinuz" -initrd "$cache/initramfs.gz" \
    -append "console=ttyS0 quiet loglevel=3 panic=-1 systemd.unified_cgroup_hierarchy=1 v2guest.stage2=$run/stage2" \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -nic none -display none -monitor none -serial stdio -no-reboot </dev/null 2>&1)
while IFS= read -r line <&3; do
    line=${line%$'\r'}
    case "$line" in
        "$marker"*) status=${line#"$marker"} ;;
        *) printf '%s\n' "$line" ;;
    esac
done
set -e
if [ -z "$status" ]; then
    echo "v2-guest: the guest ended without an exit status (crashed, or over ${timeout}s)" >&2
    exit 1
fi
exit "$status"
