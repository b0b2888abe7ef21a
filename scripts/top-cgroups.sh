#!/bin/sh
# Prints the cgroups right under each hierarchy's root (cgroup v1: under
# each controller's mount; v2: under /sys/fs/cgroup), one per line.
# `make test` lists them before the tests and removes, after, the empty ones
# that were not there: the runtimes remove each task's cgroup but leave the
# parents they made for it (containerd's namespace, isoexec/, isoexecd/).
set -eu
if [ -e /sys/fs/cgroup/cgroup.procs ]; then
    find /sys/fs/cgroup -mindepth 1 -maxdepth 1 -type d
else
    find /sys/fs/cgroup -mindepth 2 -maxdepth 2 -type d
fi | sort
