# isoexec: `make demo` shows it working, `make test` runs the whole suite.
# Both run as root on a fresh Debian machine and install what they need.

CARGO   ?= cargo
PREFIX  ?= /usr/local
HOST    := $(shell rustc -vV | sed -n 's/^host: //p')
RELEASE := target/$(HOST)/release
DEBUG   := target/debug
# What `make release` leaves: every binary, the shim from its own profile.
DIST    := target/dist
# What the integration tests run: the debug builds, with the command line
# and the shim built for musl as `make release` ships them.
TESTBIN := target/test-bin
MUSL    := $(shell uname -m)-unknown-linux-musl
BINS    := isoexec isoexecd isoexecctl containerd-shim-isoexec-v1 isoexec-bench isoexec-cri-pod

# Release binaries are static (the C library and libseccomp linked in): one
# file to install, and no dynamic loading on every start (~0.5 ms of each
# `run`). `isoexec` and the shim are then rebuilt for musl
# (scripts/musl-bins.sh: glibc's start-up costs ~0.3 ms more in a VM).
# They stay position-independent (ASLR); their relocations are packed
# (DT_RELR: a few KiB read at start instead of 260 KiB, ~0.14 ms of every
# start, twice per `run` with the sealed re-exec, and less resident in the shim).
# The explicit --target keeps these flags off build scripts and proc-macros.
STATIC  := LIBSECCOMP_LINK_TYPE=static \
           LIBSECCOMP_LIB_PATH=/usr/lib/$(shell gcc -print-multiarch 2>/dev/null) \
           RUSTFLAGS="-C target-feature=+crt-static -C link-arg=-Wl,-z,pack-relative-relocs"

.PHONY: all build release deps test test-host test-v2 unit lint demo bench install clean

all: release

## System packages: libseccomp-dev (build), busybox-static (test roots), runc (bench baseline),
## containerd (the shim's tests).
deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --workspace
	mkdir -p $(TESTBIN)
	cd $(DEBUG) && cp -f $(BINS) $(CURDIR)/$(TESTBIN)/
	CARGO=$(CARGO) scripts/musl-bins.sh debug $(TESTBIN)

## The shim is built on its own, with the release-shim profile (everything
## built for size: it stays resident) and only its own dependencies' features.
release: deps
	$(STATIC) $(CARGO) build --workspace --exclude isoexec-shim --release --target $(HOST)
	$(STATIC) $(CARGO) build -p isoexec-shim --bin containerd-shim-isoexec-v1 --profile release-shim --target $(HOST)
	mkdir -p $(DIST)
	cp -f $(RELEASE)/isoexec $(RELEASE)/isoexecd $(RELEASE)/isoexecctl $(RELEASE)/isoexec-bench \
	      $(RELEASE)/isoexec-cri-pod \
	      target/$(HOST)/release-shim/containerd-shim-isoexec-v1 $(DIST)/
	CARGO=$(CARGO) scripts/musl-bins.sh release $(DIST)

## Formatting, lints, unit tests and the integration tests against the real
## kernel: on this machine, then again in a guest kernel with cgroup v2 only.
## Both run even when the first fails; either failing fails the target.
test: deps lint build
	@rc=0; $(MAKE) --no-print-directory test-host || rc=1; \
	  $(MAKE) --no-print-directory test-v2 || rc=1; exit $$rc

## The whole workspace's tests on this machine's kernel and cgroups.
test-host: deps build
	@scripts/top-cgroups.sh > target/cgroups-before
	ISOEXEC_BIN_DIR=$(CURDIR)/$(TESTBIN) $(CARGO) test --workspace; rc=$$?; \
	  scripts/top-cgroups.sh | comm -13 target/cgroups-before - | xargs -r rmdir 2>/dev/null; \
	  exit $$rc

## The integration tests in the cgroup v2 guest (qemu, Debian's kernel; see
## scripts/v2-guest.sh). Arguments for the test binaries: V2_ARGS=filter.
test-v2: deps build
	ISOEXEC_BIN_DIR=$(CURDIR)/$(TESTBIN) CARGO=$(CARGO) scripts/test-v2.sh $(V2_ARGS)

## Unit tests only (no root needed).
unit:
	$(CARGO) test -p isoexec-runtime --lib

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL); then \
	    echo "$(CARGO) clippy --target $(MUSL) -p isoexec-runtime -p isoexec-shim --all-targets"; \
	    $(CARGO) clippy --target $(MUSL) -p isoexec-runtime -p isoexec-shim --all-targets -- -D warnings; \
	fi

demo: deps release
	scripts/demo.sh $(DIST)

bench: deps release
	$(DIST)/isoexec-bench --bin-dir $(DIST) --out target/bench

## The command line is installed immutable (chattr +i): sealed against
## CVE-2019-5736 as it is, it skips the re-exec from a read-only copy of
## itself on every create, run and exec (~1 ms); tasks that may hold
## CAP_LINUX_IMMUTABLE still get the re-exec. Where the filesystem has no
## such flag, it re-executes as before. A later install clears the flag first.
install: release
	for b in isoexec containerd-shim-isoexec-v1 isoexecd isoexecctl; do \
	    chattr -i $(DESTDIR)$(PREFIX)/bin/$$b 2>/dev/null; \
	    install -D -m 0755 $(DIST)/$$b $(DESTDIR)$(PREFIX)/bin/$$b || exit 1; \
	done
	chattr +i $(DESTDIR)$(PREFIX)/bin/isoexec 2>/dev/null || \
	    echo "isoexec: $(DESTDIR)$(PREFIX)/bin/isoexec cannot be made immutable here: it re-executes sealed on each run"

clean:
	$(CARGO) clean
