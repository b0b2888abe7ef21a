#!/bin/sh
# Stage 2 of the cgroup v2 guest (scripts/v2-guest.sh), as PID 1 on the RAM
# overlay over the host's /: fresh kernel filesystems, cgroup v2 alone with
# every controller enabled for children, loopback up; then the command
# written beside this script, its status printed for the host to read.
run=$(dirname "$0")
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx 2>/dev/null
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t mqueue mqueue /dev/mqueue
# An overlayfs upper dir cannot live on overlayfs: the tests' own overlays
# (chroot_mode = "overlay") and containerd's snapshots need real tmpfs.
# The project (where this script is, target/v2-guest/run.N/) may itself be
# under /tmp or /run: keep it visible there through a view of the root.
project=$(cd "$run/../../.." && pwd)
mkdir -p /.v2-host
mount --bind / /.v2-host
mount -t tmpfs -o mode=1777 tmp /tmp
mount -t tmpfs -o mode=0755 run /run
case "$project" in
/tmp/* | /run/*)
    mkdir -p "$project"
    mount --bind "/.v2-host$project" "$project"
    ;;
esac
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
    echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || echo "v2-guest: cannot enable $c"
done
ip link set lo up
hostname v2-guest
echo "v2-guest: $(uname -r), cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
cp "$run/cmd" /tmp/v2-guest-cmd
bash /tmp/v2-guest-cmd </dev/null
status=$?
echo "v2-guest: exit status $status"
sync
exec /bin/busybox poweroff -f
