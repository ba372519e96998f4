# Makefile of github.com/cqrs-ddd/watermill-observability.
#
#   make test        start/check Redis and PostgreSQL, install Prometheus and promtool if
#                    missing (for deploy/), go vet, go test -race, then the allocation pins
#                    (TestAllocs*) without -race, which they need
#   make test-integration  the full-size scenarios (WMOBS_FULL=1: Watermill's whole
#                    Pub/Sub suite, ...), with -race; CI runs it after make test
#   make chaos       the chaos run of examples/orderflow (TestChaos): 3 workers and an api
#                    on its own Redis and on PostgreSQL while a seeded driver injects
#                    CHAOS_FAULTS faults; CHAOS_SEED replays a schedule (needs redis-server)
#   make chaos-cluster the same run on a Redis Cluster of 3 masters with a replica each
#                    (TestChaosCluster), a master SIGKILLed among the faults
#   make soak        the soak run of examples/orderflow (TestSoak): 2 workers and an api run
#                    every 30 s placing 10 orders/s for SOAK_DURATION (30m) on its own Redis
#                    and on PostgreSQL, every process sampled every 10 s; RSS and goroutines
#                    must stay flat; the samples go to SOAK_OUT (needs redis-server)
#   make services    only start/check the test services (scripts/test-services.sh)
#   make demo        run examples/orderflow: the order system in one process (needs no server)
#   make demo-hooks  run examples/quickstart: the hook pipeline at work (needs no server)
#   make demo-redis  run examples/orderflow as 1 api + 2 workers on Redis (REDIS_ADDR)
#   make demo-cqrs   run examples/cqrs: one order through the CQRS layer (needs no server)
#   make bench       benchmarks:  make bench BENCH=Hook PKG=./hooks
#   make bench-redis the Redis Streams harness of BENCHMARKS.md: every variant in
#                    its own process, BENCH_REDIS_ROUNDS interleaved rounds
#   make lint        gofmt check, go vet, staticcheck
#   make fuzz-short  each fuzz target of FUZZ_TARGETS for FUZZTIME (FUZZFLAGS: extra go test flags)
#
# The services script and internal/testsvc read REDIS_ADDR and POSTGRES_DSN.

GO ?= go
# Extra flags for go test in `make test`, e.g. GOTESTFLAGS=-v or GOTESTFLAGS="-run TestX".
GOTESTFLAGS ?=
# Per test binary; keeps `make test` well under 15 minutes even if a test hangs.
TEST_TIMEOUT ?= 10m
BENCH ?= .
PKG ?= ./...
STATICCHECK_VERSION ?= v0.8.2
FUZZTIME ?= 20s
# Extra flags for go test in `make fuzz-short`, e.g. FUZZFLAGS="-parallel 1".
FUZZFLAGS ?=
# package:FuzzName pairs, separated by spaces. The decoders of stored data:
# projections (stream entries, their msgpack metadata), sagas (the instance
# hash), outbox (rows and their envelopes).
FUZZ_TARGETS ?= ./hooks:FuzzMatch ./internal/bound:FuzzString ./internal/bound:FuzzIsID ./watermillobs/payloadtrace:FuzzPayloadSanitize ./contract:FuzzMetadata \
	./projections:FuzzDecodeMetadata ./projections:FuzzDecodeEntry ./sagas:FuzzDecodeFields ./outbox:FuzzDecodeEnvelope

.PHONY: test test-integration chaos chaos-cluster soak services demo demo-hooks demo-redis demo-cqrs bench bench-redis lint fuzz-short

# The allocation pins skip under -race (the detector allocates), so they run
# once more without it.
ALLOC_TESTS ?= ^TestAllocs

test:
	bash scripts/test-services.sh
	bash scripts/install-prometheus.sh
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(GOTESTFLAGS) ./...
	@out="$$($(GO) test -count=1 -v -run '$(ALLOC_TESTS)' $(GOTESTFLAGS) ./... 2>&1)"; status=$$?; \
	printf '%s\n' "$$out" | grep -E '^(--- |ok|FAIL)' ; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	if printf '%s\n' "$$out" | grep -q -- '--- SKIP'; then echo "an allocation pin was skipped" >&2; exit 1; fi; \
	if ! printf '%s\n' "$$out" | grep -q -- '--- PASS: TestAllocs'; then echo "no allocation pin ran" >&2; exit 1; fi

test-integration:
	bash scripts/test-services.sh
	bash scripts/install-prometheus.sh
	WMOBS_FULL=1 $(GO) test -race -count=1 -timeout 30m $(GOTESTFLAGS) ./...

# The chaos runs (RELIABILITY.md, "Chaos"): WMOBS_CHAOS=1 runs the long
# form; make test-integration runs a shortened one of each (6 faults).
CHAOS_FAULTS ?= 24
CHAOS_SEED ?=
chaos:
	bash scripts/test-services.sh
	WMOBS_CHAOS=1 WMOBS_CHAOS_FAULTS=$(CHAOS_FAULTS) WMOBS_CHAOS_SEED=$(CHAOS_SEED) \
		$(GO) test -count=1 -timeout 20m -v -run '^TestChaos$$' ./examples/orderflow

# On a Redis Cluster the test starts itself (6 redis-servers on loopback).
chaos-cluster:
	bash scripts/test-services.sh
	WMOBS_CHAOS=1 WMOBS_CHAOS_FAULTS=$(CHAOS_FAULTS) WMOBS_CHAOS_SEED=$(CHAOS_SEED) \
		$(GO) test -count=1 -timeout 20m -v -run '^TestChaosCluster$$' ./examples/orderflow

# The soak run (RELIABILITY.md, "Soak"): WMOBS_SOAK=1 runs the long form;
# make test-integration runs a 60-second one that checks goroutines and
# connections come back to their baseline after the load.
SOAK_DURATION ?= 30m
SOAK_OUT ?= $(CURDIR)/soak.csv
soak:
	bash scripts/test-services.sh
	WMOBS_SOAK=1 WMOBS_SOAK_DURATION=$(SOAK_DURATION) WMOBS_SOAK_OUT=$(SOAK_OUT) \
		$(GO) test -count=1 -timeout 0 -v -run '^TestSoak$$' ./examples/orderflow

services:
	bash scripts/test-services.sh

demo:
	$(GO) run ./examples/orderflow

demo-hooks:
	$(GO) run ./examples/quickstart

demo-redis:
	GO=$(GO) bash examples/orderflow/demo-redis.sh

demo-cqrs:
	$(GO) run ./examples/cqrs

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem $(PKG)

# The Redis Streams harness (BENCHMARKS.md, "on Redis Streams"): rounds, and
# messages per variant and round; the machine's two cores (CPU=2). One run
# interleaves every variant: BenchmarkRedisStream's (REDIS_VARIANTS), with
# consumers in the benchmark's process (*_consumers_N) or each in a process
# of its own (*_processes_N), and the cqrsbus command path
# (CQRS_REDIS_VARIANTS, reported as cqrsbus.NAME; THROUGHPUT's "all"
# compares them with cqrsbus.plain).
BENCH_REDIS_ROUNDS ?= 15
BENCH_REDIS_N ?= 3000x
REDIS_VARIANTS ?= bare bare_contract_by_hand correlation tracing logging promobs consume_hooks publisher \
	readme readme_default_hooks readme_payload readme_floor readme_every_exemplar \
	bare_consumers_2 readme_consumers_2 bare_consumers_4 readme_consumers_4 \
	bare_processes_1 readme_processes_1 bare_processes_2 readme_processes_2 bare_processes_4 readme_processes_4
CQRS_REDIS_VARIANTS ?= ./cqrsbus:BenchmarkRedisCommand/plain ./cqrsbus:BenchmarkRedisCommand/plain_making_contract \
	./cqrsbus:BenchmarkRedisCommand/full
REDIS_PAIRS ?= all readme/readme_floor readme/readme_every_exemplar readme_consumers_2/bare_consumers_2 readme_consumers_4/bare_consumers_4 \
	readme_processes_1/bare_processes_1 readme_processes_2/bare_processes_2 readme_processes_4/bare_processes_4 \
	bare_processes_2/bare_processes_1 bare_processes_4/bare_processes_1 \
	readme_processes_2/readme_processes_1 readme_processes_4/readme_processes_1

bench-redis:
	bash scripts/test-services.sh
	THROUGHPUT="$(REDIS_PAIRS)" CPU=2 bash scripts/bench-isolated.sh ./watermillobs BenchmarkRedisStream \
		$(BENCH_REDIS_ROUNDS) $(BENCH_REDIS_N) $(REDIS_VARIANTS) $(CQRS_REDIS_VARIANTS)

lint:
	@unformatted="$$(gofmt -l .)" || { echo "gofmt failed" >&2; exit 1; }; \
	if [ -n "$$unformatted" ]; then \
		echo "gofmt: these files are not formatted (run gofmt -w on them):"; \
		echo "$$unformatted"; \
		exit 1; \
	fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

fuzz-short:
	@set -e; for target in $(FUZZ_TARGETS); do \
		pkg=$${target%%:*}; name=$${target#*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test "$$pkg" -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS); \
	done
