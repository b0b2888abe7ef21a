# isoexec: `make demo` shows it working, `make test` runs the whole suite.
# Both run as root on a fresh Debian machine and install what they need.

CARGO   ?= cargo
PREFIX  ?= /usr/local
RELEASE := target/release
DEBUG   := target/debug

.PHONY: all build release deps test unit lint demo bench install clean

all: release

## System packages: libseccomp-dev (build), busybox-static (test roots), runc (bench baseline).
deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --workspace

release: deps
	$(CARGO) build --workspace --release

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

clean:
	$(CARGO) clean
