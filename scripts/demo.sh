#!/usr/bin/env bash
# `make demo`: runs a busybox bundle with isoexec and shows its isolation,
# its lifecycle, and its limits at work. Needs root.
set -euo pipefail

bin_dir=${1:-target/release}
iso_bin="$(cd "$bin_dir" && pwd)/isoexec"
work=$(mktemp -d /tmp/isoexec-demo.XXXXXX)
root="$work/state"
iso() { "$iso_bin" --root "$root" "$@"; }
cleanup() {
    for id in $(iso list -q 2>/dev/null); do iso delete --force "$id" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; }

# A bundle whose root is a static busybox: no image, no registry.
bundle="$work/bundle"
mkdir -p "$bundle/rootfs/bin"
cp "$(command -v busybox || echo /bin/busybox)" "$bundle/rootfs/bin/busybox"
for applet in $("$bundle/rootfs/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done
iso spec --bundle "$bundle"
set_args() { # set_args JSON-ARRAY [jq-like python patch]
    python3 - "$bundle/config.json" "$1" "${2:-}" <<'PY'
import json, sys
path, args, patch = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
c = json.load(open(path))
c["process"]["args"] = args
c["hostname"] = "demo-box"
c.get("linux", {}).pop("resources", None)
if patch:
    exec(patch)
json.dump(c, open(path, "w"), indent=2)
PY
}

step "isoexec $("$iso_bin" --version | head -1 | cut -d' ' -f2): a runc-compatible runtime"
show "isoexec run --bundle $bundle demo"
set_args '["sh", "-c", "echo \"my pid:        $$\"; echo \"my hostname:   $(hostname)\"; printf \"write to /:    \"; touch /x 2>&1 || true; printf \"capabilities:  \"; grep CapEff /proc/self/status | cut -f2; echo \"/dev:          $(ls /dev | tr \"\\n\" \" \")\"; echo \"processes:     $(ps -o pid,comm | tail -n +2 | tr -s \" \" | tr \"\\n\" \";\")\""]'
iso run --bundle "$bundle" demo
echo "(capabilities a80405fb = docker's default set without NET_RAW, as Nomad's exec driver allows)"

step "Lifecycle: create, start, exec, pause, kill, delete"
set_args '["sleep", "1000"]'
show "isoexec create --bundle … box"; iso create --bundle "$bundle" box </dev/null >/dev/null 2>&1
show "isoexec state box";  iso state box | grep -E '"(status|pid)"'
show "isoexec start box";  iso start box
show "isoexec state box";  iso state box | grep '"status"'
show "isoexec exec box ps"; iso exec box ps
show "isoexec pause box";  iso pause box; iso state box | grep '"status"'
show "isoexec resume box"; iso resume box
show "isoexec list";       iso list
show "isoexec kill box KILL"; iso kill box KILL; sleep 0.2; iso state box | grep '"status"'
show "isoexec delete box"; iso delete box
show "isoexec state box";  iso state box 2>&1 || true

step "Limits are enforced: 32 MiB of memory, 10 processes"
set_args '["sh", "-c", "echo allocating 64 MiB...; dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd exited with $?"]' \
    'c["linux"]["resources"] = {"memory": {"limit": 32 << 20}, "pids": {"limit": 10}}'
iso run --bundle "$bundle" oom
echo "(137 = killed by SIGKILL: the kernel's OOM killer at the cgroup's limit)"
set_args '["sh", "-c", "for i in $(seq 20); do sleep 1 & done 2>&1 | sort | uniq -c; wait"]' \
    'c["linux"]["resources"] = {"pids": {"limit": 10}}'
iso run --bundle "$bundle" forks || true

step "Nothing left behind"
show "isoexec list"; iso list
echo "cgroups under /isoexec: $(find /sys/fs/cgroup -path '*isoexec/*' -type d 2>/dev/null | wc -l)"
echo "mounts under $work: $(grep -c "$work" /proc/self/mountinfo || true)"
