#!/usr/bin/env bash
# The integration suite in the cgroup v2 guest (scripts/v2-guest.sh): the
# test binaries cargo built on this machine, run there one after another.
# Arguments are passed to each test binary (a filter, --test-threads=1, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo=${CARGO:-cargo}
# Test harnesses only (the crate's own binaries, e.g. isoexec-cri-pod, are
# artifacts too).
mapfile -t bins < <($cargo test -p isoexec-tests --no-run --message-format=json 2>/dev/null |
    grep '"profile":{[^}]*"test":true' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
[ ${#bins[@]} -gt 0 ] || { echo "test-v2: no integration test binaries were built" >&2; exit 1; }
export ISOEXEC_BIN_DIR=${ISOEXEC_BIN_DIR:-$PWD/target/test-bin}
script='rc=0; n=$1; shift; bins=("${@:1:n}"); shift "$n"
for t in "${bins[@]}"; do echo "v2-guest: running ${t##*/}"; "$t" --color never "$@" || rc=1; done
exit $rc'
exec scripts/v2-guest.sh bash -c "$script" test-v2 "${#bins[@]}" "${bins[@]}" "$@"
