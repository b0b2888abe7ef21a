#!/usr/bin/env bash
# Builds the two binaries that start on every container operation, the
# command line `isoexec` and the shim, for musl, and puts them in OUTDIR in
# place of the glibc builds:
#   scripts/musl-bins.sh debug|release OUTDIR
#
# Why: glibc's start-up in every process (static or not) probes the CPU's
# caches and features with ~40 cpuid instructions, and in a virtual machine
# each one traps to the hypervisor: ~0.3 ms of every `isoexec` start there,
# against ~0.05 ms for musl's. The shim is smaller and stays smaller
# resident with musl (2.8 against 3.2 MiB with one task running). isoexecd
# and the other tools stay glibc builds.
#
# Without the Rust target (rustup target add x86_64-unknown-linux-musl),
# this says so and leaves the glibc builds in place.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=$1
out=$2
cargo=${CARGO:-cargo}
target=$(uname -m)-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    echo "musl-bins: the Rust target $target is not installed (rustup target add $target):" \
        "isoexec and the shim stay glibc builds" >&2
    exit 0
fi
# libseccomp linked in statically, from Debian's archive: in a directory of
# its own, since the linker must find musl's libc.a, not the glibc one
# beside Debian's libseccomp.a.
multiarch=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")
lib=target/musl-libseccomp
mkdir -p "$lib"
cp -u "/usr/lib/$multiarch/libseccomp.a" "$lib/"
export LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$PWD/$lib
export RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs"
case $profile in
debug)
    $cargo build --target "$target" -p isoexec-runtime -p isoexec-shim \
        --bin isoexec --bin containerd-shim-isoexec-v1
    dir=target/$target/debug
    cli=$dir/isoexec shim=$dir/containerd-shim-isoexec-v1
    ;;
release)
    $cargo build --target "$target" -p isoexec-runtime --bin isoexec --release
    $cargo build --target "$target" -p isoexec-shim --bin containerd-shim-isoexec-v1 \
        --profile release-shim
    cli=target/$target/release/isoexec
    shim=target/$target/release-shim/containerd-shim-isoexec-v1
    ;;
*)
    echo "musl-bins: debug or release, not $profile" >&2
    exit 2
    ;;
esac
mkdir -p "$out"
cp -f "$cli" "$shim" "$out/"
