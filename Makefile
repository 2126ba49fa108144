# Mamba MQ — the two commands are `make run` and `make test`; everything else is optional.
SHELL := /bin/bash
NODE  ?= node
SEEDS ?= 1000
RUNS ?= 4
DURATION ?= 30
FAULTS ?= kill,pause,partition,torn,lose-tail,corrupt,powerloss

.PHONY: all build native native-build lint test run stop demo-log bench bench-log sim chaos certs clean

all: build

# Install dependencies when node_modules is missing or older than the lock file.
node_modules/.installed: package-lock.json package.json
	npm ci --no-audit --no-fund
	@touch $@

native: node_modules/.installed
	@$(MAKE) --no-print-directory -s native-build

# The native addon (mmap + CRC32C), rebuilt only when its sources change. node-gyp is told where
# Node's headers are (npm's nodedir when set, else the prefix Node runs from) so it never downloads.
NODE_HEADERS_DIR ?= $(shell d="$$(npm config get nodedir 2>/dev/null)"; if [ -n "$$d" ] && [ "$$d" != "undefined" ] && [ "$$d" != "null" ]; then echo "$$d"; else $(NODE) -p "require('path').resolve(process.execPath, '../..')"; fi)

native-build: build/Release/mamba_native.node

build/Release/mamba_native.node: binding.gyp native/mamba_native.cc
	npx node-gyp rebuild --nodedir="$(NODE_HEADERS_DIR)" --silent

build: node_modules/.installed native
	npx tsc -p tsconfig.json
	@chmod +x dist/src/cli/main.js
	@ln -sf ../../dist/src/cli/main.js node_modules/.bin/mambamq
	@# `node dist/cli/main.js …` is the documented entry point; the build keeps tests beside src.
	@mkdir -p dist/cli && printf "import '../src/cli/main.js';\n" > dist/cli/main.js

# Types, lint and format (Biome), and the layering rules of src/ (dependency-cruiser).
lint: node_modules/.installed
	npx tsc -p tsconfig.json --noEmit
	npx biome check --error-on-warnings
	npx depcruise src --config .dependency-cruiser.cjs --output-type err

# Every test file under dist/test, run by node's own test runner; it prints the pass/fail summary.
test: build lint
	$(NODE) --test --test-reporter=spec --test-concurrency=2 $$(find dist/test -name '*.test.js' | sort)

# Starts cluster/local-3.yaml in the background and prints how to produce and consume.
# A local CA and a certificate per broker of the local clusters (b1..b6) under ./data/certs.
certs:
	@scripts/make-certs.sh data/certs b1 b2 b3 b4 b5 b6

run: build
	@scripts/run-local.sh

# Stops exactly the brokers `make run` started (their pid files are under ./data/pids).
stop:
	@if [ -f dist/src/cli/main.js ]; then $(NODE) dist/src/cli/main.js cluster down --cluster cluster/local-3.yaml; fi

demo-log: build
	$(NODE) dist/scripts/demo-log.js

# Three brokers against a three-node NATS JetStream cluster (nats-server from Debian, installed
# when missing) on the same machine: the same workloads (scripts/bench/workloads.ts) in rounds
# that alternate ours/peer three times; the last stdout line is the JSON summary. About 6-10
# minutes on 2 cores. Sizes: BENCH_ROUNDS, BENCH_SEQUENTIAL_MESSAGES, BENCH_LOAD_MESSAGES,
# BENCH_KILLS; BENCH_OUR_RAW=stream sends our raw workloads on ProduceStream; BENCH_SYNC=off|ours.
bench: build
	$(NODE) dist/scripts/bench/broker-bench.js

# The segment log against raw pwrite/fdatasync of the same I/O shape, sides alternating first;
# the last stdout line is the JSON summary. About 30 s.
bench-log: build
	$(NODE) dist/scripts/bench/log-bench.js

sim: build
	$(NODE) dist/test/sim/main.js $(if $(SEED),--seed $(SEED),--seeds $(SEEDS))

# Fault injection under a quorum-acked workload, then a checker; the last line sums the runs
# (`chaos: N runs, acked=A lost=L duplicated=D reordered=R short=S max_gap_ms=G skipped=[...]`);
# faults: kill, pause, partition (needs root: otherwise named in skipped), torn, lose-tail, corrupt, powerloss.
chaos: build
	$(NODE) dist/scripts/chaos/main.js --runs $(RUNS) --duration-s $(DURATION) --faults $(FAULTS) $(if $(SEED),--seed $(SEED))

clean:
	rm -rf dist build
