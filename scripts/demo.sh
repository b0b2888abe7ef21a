#!/usr/bin/env bash
# `make demo`: the example bundles run with isoexec (host binaries in empty
# roots, as Nomad's exec driver runs them), the runc-style lifecycle on a
# busybox image, isoexecd, then containerd with the shim and a Kubernetes
# pod through containerd's CRI plugin. Needs root.
set -euo pipefail

bin_dir=${1:-target/dist}
iso_bin="$(cd "$bin_dir" && pwd)/isoexec"
repo=$(pwd)
work=$(mktemp -d /tmp/isoexec-demo.XXXXXX)
root="$work/state"
iso() { "$iso_bin" --root "$root" "$@"; }
containerd_pid=
cleanup() {
    for id in $(iso list -q 2>/dev/null); do iso delete --force "$id" >/dev/null 2>&1 || true; done
    [ -z "$containerd_pid" ] || kill "$containerd_pid" 2>/dev/null || true
    grep -o " $work[^ ]*" /proc/self/mounts | sort -r | xargs -r umount -l 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '\033[2m$ %s\033[0m\n' "$*"; }

step "isoexec $("$iso_bin" --version | head -1 | cut -d' ' -f2) on this host"
show "isoexec fingerprint"
iso fingerprint

step "hello: a host shell in an empty task directory"
show "isoexec run --bundle bundles/hello hello"
iso run --bundle "$repo/bundles/hello" hello

step "web: a host HTTP server inside a task, on the host's network"
show "isoexec create --bundle bundles/web web && isoexec start web"
iso create --bundle "$repo/bundles/web" web </dev/null >"$work/web.log" 2>&1
iso start web
for _ in $(seq 50); do busybox wget -qO- http://127.0.0.1:18080/ >/dev/null 2>&1 && break; sleep 0.1; done
show "wget -qO- http://127.0.0.1:18080/"
busybox wget -qO- http://127.0.0.1:18080/
show "isoexec exec web ps"
iso exec web ps
iso delete --force web

step "limits: a task over its memory limit is killed"
show "isoexec run --bundle bundles/limits limits"
iso run --bundle "$repo/bundles/limits" limits

step "sandbox: two tasks of one allocation share /alloc"
show "isoexec run --detach --bundle bundles/sandbox/producer producer"
iso run --detach --bundle "$repo/bundles/sandbox/producer" producer </dev/null >"$work/producer.log" 2>&1
for _ in $(seq 50); do [ -s "$root/.sandboxes/demo-alloc/alloc/message" ] && break; sleep 0.1; done
show "isoexec run --bundle bundles/sandbox/consumer consumer"
iso run --bundle "$repo/bundles/sandbox/consumer" consumer
iso delete --force producer

step "Policy: the driver's allow_caps and denied_host_uids"
cat > "$work/config.toml" <<'TOML'
denied_host_uids = "0"
TOML
show "isoexec --config config.toml run --bundle bundles/hello denied   # denied_host_uids = \"0\""
iso --config "$work/config.toml" run --bundle "$repo/bundles/hello" denied 2>&1 || true

step "runc-style lifecycle on a busybox image (io.isoexec.chroot_env = none)"
bundle="$work/busybox"
mkdir -p "$bundle/rootfs/bin"
cp "$(command -v busybox || echo /bin/busybox)" "$bundle/rootfs/bin/busybox"
for applet in $("$bundle/rootfs/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -s busybox "$bundle/rootfs/bin/$applet"
done
iso spec --bundle "$bundle"
python3 - "$bundle/config.json" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
c["process"]["args"] = ["sleep", "1000"]
c["annotations"] = {"io.isoexec.chroot_env": "none"}
json.dump(c, open(sys.argv[1], "w"), indent=2)
PY
show "isoexec create --bundle … box"; iso create --bundle "$bundle" box </dev/null >/dev/null 2>&1
show "isoexec state box";  iso state box | grep -E '"(status|pid)"'
show "isoexec start box";  iso start box
show "isoexec exec box ps"; iso exec box ps
show "isoexec pause box";  iso pause box; iso state box | grep '"status"'
show "isoexec resume box"; iso resume box
show "isoexec list";       iso list
show "isoexec kill box KILL"; iso kill box KILL; sleep 0.2; iso state box | grep '"status"'
show "isoexec delete box"; iso delete box

step "isoexecd: the gRPC API, driven with isoexecctl"
ctl() { "$bin_dir/isoexecctl" --socket "$work/isoexecd.sock" "$@"; }
"$bin_dir/isoexecd" --listen "$work/isoexecd.sock" --state-dir "$work/isoexecd" 2>"$work/isoexecd.log" &
daemon=$!
for _ in $(seq 50); do [ -S "$work/isoexecd.sock" ] && break; sleep 0.1; done
show "isoexecctl sandbox run web --network group"; ctl sandbox run web --network group
show "isoexecctl run web server -- python3 -m http.server 18081"
ctl run web server -- /usr/bin/python3 -m http.server 18081 --bind 127.0.0.1
show "isoexecctl run web probe -- sh -c 'wget … > /alloc/index.html; sleep 600'"
ctl run web probe -- /bin/sh -c 'for i in $(seq 50); do busybox wget -qO /alloc/index.html http://127.0.0.1:18081/ && break; sleep 0.1; done; sleep 600'
show "isoexecctl task ls"; ctl task ls
for _ in $(seq 50); do ctl exec web.probe -- test -s /alloc/index.html 2>/dev/null && break; sleep 0.1; done
show "isoexecctl exec web.probe -- head -c 120 /alloc/index.html   # fetched over the sandbox's own loopback"
ctl exec web.probe -- head -c 120 /alloc/index.html; echo
show "connect to 127.0.0.1:18081 from the host (another network namespace)"
if timeout 2 bash -c '</dev/tcp/127.0.0.1/18081' 2>/dev/null; then echo "reachable (unexpected)"; else echo "refused: the group's network is its own"; fi
show "isoexecctl stats web.server --count 1"; ctl stats web.server --count 1 --interval-ms 200
show "isoexecctl sandbox rm web --grace 2"; ctl sandbox rm web --grace 2
kill "$daemon"; wait "$daemon" 2>/dev/null || true

step "containerd: the shim, and a Kubernetes pod through containerd's CRI plugin"
# A containerd of the demo's own (config, root, state, sockets under $work)
# with the CRI plugin and the handlers of contrib/kubernetes; pods get
# 127.0.0.1 from the CNI plugins. No registry is reached: the pod's image
# is a pause program built here.
ctd="$work/containerd"
mkdir -p "$ctd/cni" "$ctd/empty" "$ctd/pause"
cat > "$ctd/cni/10-demo.conflist" <<'JSON'
{"cniVersion": "0.4.0", "name": "isoexec-demo", "plugins": [
  {"type": "static", "ipam": {"type": "static", "addresses": [{"address": "127.0.0.1/8"}]}},
  {"type": "loopback"}]}
JSON
: > "$ctd/driver.toml"
cp "$repo/contrib/kubernetes/image.toml" "$ctd/image.toml"
cri='plugins."io.containerd.grpc.v1.cri"'
cat > "$ctd/config.toml" <<TOML
version = 2
root = "$ctd/root"
state = "$ctd/state"
[grpc]
  address = "$ctd/c.sock"
[ttrpc]
  address = "$ctd/c.sock.ttrpc"
[$cri]
  sandbox_image = "localhost/isoexec-demo/pause:1"
  restrict_oom_score_adj = true
[$cri.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "$ctd/cni"
[$cri.containerd]
  snapshotter = "native"
  default_runtime_name = "isoexec"
$(sed -e "s|/etc/isoexec/config.toml|$ctd/driver.toml|" -e "s|/etc/isoexec/image.toml|$ctd/image.toml|" "$repo/contrib/kubernetes/containerd-cri.toml")
TOML
bin_abs=$(cd "$bin_dir" && pwd)
PATH="$bin_abs:$PATH" containerd --config "$ctd/config.toml" >"$ctd/containerd.log" 2>&1 &
containerd_pid=$!
c() { ctr -a "$ctd/c.sock" "$@"; }
for _ in $(seq 100); do c version >/dev/null 2>&1 && break; sleep 0.1; done
show "ctr run --rm --runtime io.containerd.isoexec.v1 --rootfs empty/ hello sh -c '…'   # an empty directory as the root"
c run --rm --runtime io.containerd.isoexec.v1 --rootfs "$ctd/empty" hello \
    /bin/sh -c 'echo "hello from the host'"'"'s $(command -v sh), pid $$, as $(id -un)"; echo / holds: $(ls /)'
cc -static -O2 -o "$ctd/pause/pause" "$repo/tests/fakes/pause.c"
tar -C "$ctd/pause" -cf "$ctd/pause.tar" .
pm() { podman --root "$ctd/podman/root" --runroot "$ctd/podman/run" --tmpdir "$ctd/podman/tmp" \
    --storage-driver vfs --events-backend none "$@"; }
pm import --change 'CMD ["/pause"]' "$ctd/pause.tar" localhost/isoexec-demo/pause:1 >/dev/null 2>>"$ctd/podman.log"
pm save --format oci-archive -o "$ctd/pause.oci.tar" localhost/isoexec-demo/pause:1 2>>"$ctd/podman.log"
c -n k8s.io images import --base-name localhost/isoexec-demo/pause "$ctd/pause.oci.tar" >/dev/null
show "isoexec-cri-pod   # as a kubelet: a pod on the isoexec handler, two containers of the pause image running host binaries"
"$bin_dir/isoexec-cri-pod" "$ctd/c.sock" isoexec localhost/isoexec-demo/pause:1 "$ctd/logs"
kill "$containerd_pid"; wait "$containerd_pid" 2>/dev/null || true
echo "shims left: $(pgrep -fc "containerd-shim-isoexec-v1.*$ctd" || true)"
echo "tasks left in containerd's state: $(find "$ctd/state/isoexec" -mindepth 2 -maxdepth 2 2>/dev/null | wc -l)"

step "Nothing left behind"
show "isoexec list"; iso list
echo "cgroups under /isoexec and /isoexecd: $(find /sys/fs/cgroup \( -path '*/isoexec/*' -o -path '*/isoexecd/*' \) -type d 2>/dev/null | wc -l)"
echo "mounts under $work: $(grep -c "$work" /proc/self/mountinfo || true)"
echo "task directories left in bundles/: $(find "$repo/bundles" -name rootfs | wc -l)"
