# Raftmail developer targets. See DESIGN.md and STYLE.md ("Tooling").

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

# Use the toolchain in /usr/local/go when go is not on PATH. ($(shell)
# does not see an exported PATH in every make version, hence the full paths.)
ifeq ($(shell command -v go 2>/dev/null),)
export PATH := /usr/local/go/bin:$(PATH)
GO ?= /usr/local/go/bin/go
GOFMT ?= /usr/local/go/bin/gofmt
endif

GO ?= go
GOFMT ?= gofmt
# Where `go install` puts binaries: GOBIN, else GOPATH/bin.
GOBIN_DIR = $(or $(shell $(GO) env GOBIN),$(shell $(GO) env GOPATH)/bin)
STATICCHECK_VERSION ?= v0.8.2
STATICCHECK ?= $(GOBIN_DIR)/staticcheck
FUZZTIME ?= 30s

.PHONY: build test check tools bench bench-peers bench-memory bench-big conn-flood fuzz run clean chaos chaos-smoke chaos-docker chaos-partitions chaos-disk chaos-failover

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/raftmail ./cmd/raftmail

test:
	$(GO) test -race -shuffle=on -count=1 -timeout 20m ./...

# The chaos smoke test, also run by `make test` (go test ./chaos/): every
# scenario the process backend supports, with a short stretch of traffic
# each, must pass every invariant (liveness is reported, not held); and the
# four negative controls (a build that answers 250 before the commit, one
# that reuses expunged UIDs, one that acknowledges a body stored on one
# node only, a sink that forgets a message it took) must make their
# invariant fail, so the checker is proven able
# to fail. About four minutes on two cores (make test runs it beside the
# other packages' tests); one more as root, where the partition and link
# scenarios run in network namespaces.
chaos-smoke:
	$(GO) test -count=1 -v -run '^(TestScenarioSmoke|TestNegativeControlAckEarly|TestNegativeControlReuseUID|TestNegativeControlBlobOne|TestNegativeControlSinkDrops)$$' ./chaos/

# The Docker backend: three containers on two networks, the leader
# partitioned into a minority. .ci/run runs it when `docker info` answers.
chaos-docker: build
	bin/raftmail chaos run --backend docker --scenarios partition-leader --duration 20s --report $(CHAOS_REPORT)/docker

# Partitions and link faults on the process backend, each node in a network
# namespace of its own (needs root and `ip netns`; .ci/run runs it when it
# can): the leader or a follower cut off, the leader's link to one follower
# cut (bridge), one direction of it dropped (asymmetric), the leader cut and
# healed every second (flapping); latency and loss where the kernel has
# netem (else reported SKIP). The liveness bounds are held.
CHAOS_PARTITIONS = partition-leader,partition-follower,partition-bridge,partition-asymmetric,partition-flapping,link-latency,link-loss
chaos-partitions: build
	bin/raftmail chaos run --backend process --netns on --scenarios $(CHAOS_PARTITIONS) --duration 20s --report $(CHAOS_REPORT)/partitions

# Disk faults on the process backend, each node's data on a fault-injecting
# FUSE file system (needs root and /dev/fuse; .ci/run runs it when it can):
# the leader's disk hung (it must lose its leadership, not hold the
# cluster), full, or powered off with its unsynced writes lost, and a
# follower's fsyncs failing. The liveness bounds are held.
CHAOS_DISK = disk-stall-leader,disk-full-leader,power-loss-leader,fsync-error
chaos-disk: build
	bin/raftmail chaos run --backend process --scenarios $(CHAOS_DISK) --duration 20s --report $(CHAOS_REPORT)/disk

# The chaos soak: every scenario the process backend supports (as root,
# the partitions and link faults too, in network namespaces), with
# CHAOS_DURATION of traffic each, CHAOS_ROUNDS times with a new seed each
# (CHAOS_SEED fixes the first), plus CHAOS_PAIRS random pairs of them, two
# faults at once. Reports in CHAOS_REPORT/round-N. The nodes run
# bin/raftmail-chaos (below).
CHAOS_DURATION ?= 2m
CHAOS_ROUNDS ?= 1
CHAOS_SEED ?= 0
CHAOS_PAIRS ?= 4
CHAOS_REPORT ?= chaos-report
chaos: build bin/raftmail-chaos
	@seed=$(CHAOS_SEED); for round in $$(seq 1 $(CHAOS_ROUNDS)); do \
		if [ "$$seed" = 0 ]; then seed=$$(( (RANDOM << 15 | RANDOM) + 1 )); fi; \
		echo ">> chaos round $$round, seed $$seed"; \
		bin/raftmail chaos run --backend process --binary bin/raftmail-chaos --duration $(CHAOS_DURATION) --seed $$seed --pairs $(CHAOS_PAIRS) \
			--report $(CHAOS_REPORT)/round-$$round || exit 1; \
		seed=0; \
	done

# The nodes' binary for the soak: the release build plus the chaos_clock
# tag, which lets the clock-skew scenario move a node's wall clock
# (internal/wallclock); nothing else differs.
.PHONY: bin/raftmail-chaos
bin/raftmail-chaos:
	CGO_ENABLED=0 $(GO) build -trimpath -tags chaos_clock -o bin/raftmail-chaos ./cmd/raftmail

# Failover under kill -9 with SMTP load: the kill-leader-in-data scenario
# FAILOVER_KILLS times, each on a fresh cluster with a new seed; prints
# every run's failover (the slowest surviving node's first 250 to a send
# started after the kill) and their median and maximum. A figure, not a
# test: the other invariants must hold in every run.
FAILOVER_KILLS ?= 10
chaos-failover: build
	@rm -rf $(CHAOS_REPORT)/failover; for i in $$(seq 1 $(FAILOVER_KILLS)); do \
		bin/raftmail chaos run -q --backend process --scenarios kill-leader-in-data --duration 12s \
			--seed $$(( (RANDOM << 15 | RANDOM) + 1 )) --report $(CHAOS_REPORT)/failover/kill-$$i | grep -E '^(PASS|FAIL)' || exit 1; \
	done | tee /dev/stderr | sed -n 's/.* failover=\([0-9.]*\)\(ms\|s\) .*/\1 \2/p' | \
		awk '{ v = ($$2 == "s") ? $$1 * 1000 : $$1; print v }' | sort -n | \
		awk '{ a[NR] = $$1 } END { if (NR == 0) { print "no failover measured"; exit 1 } \
			printf "failover over %d kills: median %d ms, max %d ms\n", NR, (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2, a[NR] }'

# check changes no file: `go mod tidy -diff` only prints what tidy would do.
check:
	@echo '>> gofmt'
	@out="$$($(GOFMT) -l .)"; if [ -n "$$out" ]; then \
		echo "gofmt: these files need formatting (run gofmt -w):"; echo "$$out"; exit 1; fi
	@echo '>> go vet'
	$(GO) vet ./...
	@echo '>> staticcheck'
	@if [ ! -x "$(STATICCHECK)" ]; then echo "staticcheck not found at $(STATICCHECK): run make tools"; exit 1; fi
	$(STATICCHECK) ./...
	@echo '>> import direction'
	GO="$(GO)" scripts/check-imports.sh
	@echo '>> go mod tidy'
	@if ! $(GO) mod tidy -diff; then \
		echo "go.mod/go.sum are not tidy: run go mod tidy (the diff above is what it would change)"; exit 1; fi

tools:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Figures go in docs/benchmarks.md; nothing here asserts a speed. Failover
# is timed over ten kill-the-leader runs; the rest over a fixed count.
bench:
	@: > bench.out
	$(GO) test -run '^$$' -bench . -benchtime 3s ./storage/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'Propose|StoreBlob/size=10KiB' -benchtime 5000x ./cluster/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'StoreBlob/size=1024' -benchtime 200x ./cluster/ | tee -a bench.out
	$(GO) test -run '^$$' -bench 'Failover' -benchtime 10x ./cluster/ | tee -a bench.out

# Runs every Fuzz target in every package for FUZZTIME each
# (make fuzz FUZZTIME=5m). go test -fuzz takes one target at a time.
fuzz:
	@for pkg in $$($(GO) list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' ./...); do \
		for target in $$($(GO) test -list 'Fuzz.*' "$$pkg" | grep '^Fuzz' || true); do \
			echo ">> $$pkg $$target ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done

run: build
	bash scripts/run-local.sh

# Raftmail side by side with Postfix + Dovecot (needs root and
# ../shared/peers/postfix-dovecot.sh; not part of test or CI). Writes the
# side-by-side section of docs/benchmarks.md and docs/bench-peers.svg
# (BENCH_DOC, BENCH_SVG; empty: none). BENCH_SCALE=0.25 scales every message
# count; BENCH_ROUNDS=3; BENCH_SCALE=0.1 BENCH_ROUNDS=1 takes about a minute.
bench-peers:
	bash scripts/bench-peers.sh

# Memory of each node of a three-node cluster holding 100,000 messages
# (MEM_MESSAGES), after the load and after a restart.
bench-memory:
	bash scripts/bench-memory.sh

# Each node's peak memory while a three-node cluster accepts 8 messages of
# 45 MiB at once on one node's MX port (BIG_SIZE, BIG_COUNT,
# BIG_CONCURRENCY, BIG_NODES); prints a table, writes no doc.
bench-big:
	bash scripts/big-messages.sh

# One node of a three-node cluster under 20,000 IMAP connections from one
# address, then from 200 (FLOOD_CONNS, FLOOD_SOURCES): the connection caps
# hold and the node keeps serving. Figures in docs/benchmarks.md.
conn-flood:
	bash scripts/conn-flood.sh

clean:
	rm -rf bin bench.out $(CHAOS_REPORT)
	find . -name '*.test' -type f -not -path './.git/*' -delete
