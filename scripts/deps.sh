#!/usr/bin/env bash
# Installs the Debian packages isoexec's build, tests, demo and benchmarks
# use, when they are missing. Needs root and apt-get.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
# Build: the seccomp filter compiler's library.
have_pkg libseccomp-dev || need+=(libseccomp-dev)
# Tests and demo: a static busybox for root filesystems; bench: runc, crun.
command -v busybox >/dev/null 2>&1 || [ -x /bin/busybox ] || need+=(busybox-static)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v crun >/dev/null 2>&1 || need+=(crun)
# The shim's tests: containerd and ctr; script(1) for terminal sessions.
command -v containerd >/dev/null 2>&1 && command -v ctr >/dev/null 2>&1 || need+=(containerd)
command -v script >/dev/null 2>&1 || need+=(bsdutils)
# OCI clients the tests run isoexec under: podman (with conmon), Docker.
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
# The CRI tests: the CRI API's protos are compiled with protoc (the k8s-cri
# crate), pods get networks from the CNI plugins.
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
[ -x /usr/lib/cni/static ] || need+=(containernetworking-plugins)
# keyctl: the tests' keyring attack.
command -v keyctl >/dev/null 2>&1 || need+=(keyutils)
# The tests read the eBPF device programs attached to cgroups (v2).
command -v bpftool >/dev/null 2>&1 || need+=(bpftool)

# isoexecd's tests run a Python client as its users write one (grpcio's
# defaults, stubs from proto/ by grpcio-tools, grpcio-reflection): PyPI's.
pip_need() { python3 -c 'import grpc, grpc_tools, grpc_reflection' >/dev/null 2>&1 && return 1; return 0; }
if command -v python3 >/dev/null 2>&1 && pip_need; then
    echo "deps: installing grpcio grpcio-tools grpcio-reflection (pip)" >&2
    pkgs=(grpcio grpcio-tools grpcio-reflection)
    python3 -m pip install -q --root-user-action=ignore "${pkgs[@]}" 2>/dev/null ||
        python3 -m pip install -q --break-system-packages "${pkgs[@]}" ||
        { echo "deps: pip could not install ${pkgs[*]}" >&2; exit 1; }
fi

# The command line and the shim are built for musl (scripts/musl-bins.sh):
# Rust's musl target, from rustup. Without it they stay glibc builds.
musl=$(uname -m)-unknown-linux-musl
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
    echo "deps: adding the Rust target $musl (rustup)" >&2
    rustup target add "$musl" >/dev/null 2>&1 ||
        echo "deps: rustup could not add $musl: isoexec and the shim will be glibc builds" >&2
fi

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: missing ${need[*]}: install them (as root: apt-get install -y ${need[*]})" >&2
    exit 1
fi
echo "deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
