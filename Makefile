# oomwatch — build, test, demo.
#   make build   static binary in bin/oomwatch
#   make test    every test tier: pure, fake trees, host kernel (root), VM kernels (qemu)
#   make test-quick  pure and fake-tree tiers only (no root, qemu or kernels)
#   make demo    boot a VM and watch oomwatch break the original OOM loop
#   make bench   every benchmark, ending with one table of all results (log in bin/bench.log)
#   make bench-peers  the same OOM loop under each peer (kernel, earlyoom, systemd-oomd, oomwatch) in the systemd VM
#   make fuzz    run every fuzz target briefly
#   make lint    go vet + staticcheck
#   make help    this list, with the packaging targets

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
TESTFLAGS ?=
FUZZTIME ?= 10s
# CI passes an iteration count (e.g. 20000x): a short -fuzztime in seconds can
# end mid-minimization with "context deadline exceeded".

export CGO_ENABLED ?= 0

.PHONY: all build deps alert-deps test test-quick vm-deps demo bench bench-peers fuzz lint clean help

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/oomwatch ./cmd/oomwatch

# The VM tier needs qemu, busybox-static and two Debian kernels: vm-deps
# installs and fetches them (idempotent; needs root on Debian 12). The
# alerting tier runs a real Alertmanager: alert-deps installs it.
vm-deps:
	bash test/vmtest/fetch.sh >/dev/null

alert-deps:
	bash alert/testdata/install-alertmanager.sh

deps: vm-deps alert-deps sdvm-deps image-deps
	bash test/sdvm/ensure-image.sh lxc >/dev/null
	bash test/sdvm/ensure-image.sh containers >/dev/null

test: deps
	$(GO) vet ./...
	$(GO) vet -tags vmguest ./test/vmtest/guest
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 40m $(TESTFLAGS) ./...

# Without root, qemu or the kernels: pure and fake-tree tiers only.
test-quick:
	$(GO) test -short -count=1 $(TESTFLAGS) ./...

demo: vm-deps
	$(GO) run ./test/demo

# Every benchmark: micro, host (root, cgroup v1) and VM (boots every kernel).
# -p 1: one package at a time, so that the host scale and churn benchmarks
# never share the 2 CPUs with a VM benchmark and distort each other.
# Each prints its own table into the log and emits OOMWATCH-BENCH rows;
# benchtable passes the output through (stderr and $(BENCHLOG)) and ends with
# one table of every row, machine facts, targets met/missed, skips and
# failures. Re-table a saved log: go run ./test/benchrow/benchtable FILE.
# bash + pipefail: the exit status is go test's.
BENCHLOG ?= bin/bench.log
bench: SHELL := /bin/bash
bench: .SHELLFLAGS := -o pipefail -c
bench: vm-deps
	@mkdir -p bin $(dir $(BENCHLOG))
	$(GO) build -o bin/benchtable ./test/benchrow/benchtable
	$(GO) test -p 1 -run '^$$' -bench . -benchmem -timeout 60m ./... 2>&1 | bin/benchtable -log $(BENCHLOG)

# One boot of the systemd VM's peers image per peer, the same loop in each
# (a transient unit and an LXC container, init and hog at -1000), one table
# at the end (guest output in bin/bench-peers.log). Root, qemu; about 70
# minutes at the defaults (every "never" run costs the 90 s cap). Knobs:
# OOMWATCH_PEERS, OOMWATCH_PEERS_RUNS, OOMWATCH_PEERS_LXC_RUNS,
# OOMWATCH_PEERS_CAP, OOMWATCH_SDVM_KPKG (see test/peerbench/benchpeers).
# Re-table saved logs: go run ./test/peerbench/benchpeers LOG...
bench-peers:
	@mkdir -p bin
	$(GO) run ./test/peerbench/benchpeers

# Every fuzz target of every package, FUZZTIME each (CI runs a short pass).
# A package whose tests do not build fails the run: its targets would
# otherwise be skipped without a word.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  list=$$($(GO) test -list '^Fuzz' $$pkg 2>&1) || { echo "$$list"; echo "fuzz: cannot list the fuzz targets of $$pkg"; exit 1; }; \
	  for f in $$(echo "$$list" | grep '^Fuzz'); do \
	    echo "fuzz $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s $$pkg >/tmp/oomwatch-fuzz.log 2>&1 \
	      || { cat /tmp/oomwatch-fuzz.log; exit 1; }; \
	    grep -E '^(ok|PASS)' /tmp/oomwatch-fuzz.log | head -1; \
	  done; \
	done

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

clean:
	rm -rf bin dist

# The "#   make TARGET  what" lines at the top of each makefile.
help:
	@sed -n -e 's/^#   make /make /p' -e 's/^#   \( \{5,\}\)/\1/p' $(MAKEFILE_LIST)

include packaging/deb.mk
include packaging/container/image.mk
