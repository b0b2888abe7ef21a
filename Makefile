# isoexec: `make demo` shows it working, `make test` runs the whole suite.
# Both run as root on a fresh Debian machine and install what they need.

CARGO   ?= cargo
PREFIX  ?= /usr/local
HOST    := $(shell rustc -vV | sed -n 's/^host: //p')
RELEASE := target/$(HOST)/release
DEBUG   := target/debug

# Release binaries are static (glibc and libseccomp linked in): one file to
# install, and no dynamic loading on every start (~0.5 ms of each `run`).
# The explicit --target keeps these flags off build scripts and proc-macros.
STATIC  := LIBSECCOMP_LINK_TYPE=static \
           LIBSECCOMP_LIB_PATH=/usr/lib/$(shell gcc -print-multiarch 2>/dev/null) \
           RUSTFLAGS="-C target-feature=+crt-static"

.PHONY: all build release deps test unit lint demo bench install clean

all: release

## System packages: libseccomp-dev (build), busybox-static (test roots), runc (bench baseline),
## containerd (the shim's tests).
deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --workspace

release: deps
	$(STATIC) $(CARGO) build --workspace --release --target $(HOST)

## Formatting, lints, unit tests and the integration tests against the real kernel.
test: deps lint build
	ISOEXEC_BIN_DIR=$(CURDIR)/$(DEBUG) $(CARGO) test --workspace

## Unit tests only (no root needed).
unit:
	$(CARGO) test -p isoexec-runtime --lib

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

demo: deps release
	scripts/demo.sh $(RELEASE)

bench: deps release
	$(RELEASE)/isoexec-bench --bin-dir $(RELEASE) --out target/bench

install: release
	install -D -m 0755 $(RELEASE)/isoexec $(DESTDIR)$(PREFIX)/bin/isoexec
	install -D -m 0755 $(RELEASE)/containerd-shim-isoexec-v1 $(DESTDIR)$(PREFIX)/bin/containerd-shim-isoexec-v1
	install -D -m 0755 $(RELEASE)/isoexecd $(DESTDIR)$(PREFIX)/bin/isoexecd
	install -D -m 0755 $(RELEASE)/isoexecctl $(DESTDIR)$(PREFIX)/bin/isoexecctl

clean:
	$(CARGO) clean
