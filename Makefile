# fresco: `make run` starts a local cluster, `make test` runs every test.
CARGO ?= cargo
STATE ?= state

.PHONY: run build test conformance lint fuzz eval eval-docs bench bench-tls bench-purge bench-live bench-feed bench-store bench-scale bench-trace bench-control-plane clean setup

setup:
	@scripts/setup.sh

build: setup
	@echo "==> building fresco (release; the first build takes a few minutes)"
	$(CARGO) build --release --bins

run: build
	@echo "==> starting a local cluster in $(STATE) (Ctrl-C stops it)"
	target/release/devcluster --state-dir $(STATE)

test: build
	@scripts/setup.sh test
	@echo "==> running the tests (unit, store, end-to-end on real processes, live.js in Chromium)"
	$(CARGO) test --release --workspace
	@echo "==> the freshness suite again, with purge-api as replicas over etcd"
	FRESCO_CONTROL_PLANE=etcd $(CARGO) test --release -p fresco-e2e --test freshness --test history
	@conformance/run.sh

# The HTTP caching test suite (cache-tests.fyi) against an edge, and an edge behind a shield,
# beside the peers' published results; fails below conformance/floor.json.
conformance: build
	@conformance/run.sh

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings

# Coverage-guided fuzzing (nightly, cargo-fuzz), FUZZ_SECONDS per target (default 60).
fuzz:
	@scripts/fuzz.sh

# The evaluation: k6 scenarios (loadtest/k6/) against a devcluster, Varnish and Traffic Server,
# and one report with plots: target/eval/evaluation.md (about 12 minutes; QUICK=1 about 3).
# `make eval-docs` replaces the committed docs/evaluation.md and docs/eval/.
EVAL_OUT ?= target/eval

eval: build
	@scripts/setup.sh bench
	target/release/eval $(if $(QUICK),--quick) --out $(EVAL_OUT)

eval-docs: build
	@scripts/setup.sh bench
	target/release/eval $(if $(QUICK),--quick) --out $(EVAL_OUT) --report docs/evaluation.md

# Benchmarks write their results under BENCH_OUT; BENCH_OUT=docs/bench replaces the committed ones.
BENCH_OUT ?= target/bench

bench: build
	BENCH_OUT=$(BENCH_OUT) loadtest/peers.sh

bench-tls: build
	@scripts/setup.sh bench
	loadtest/tls_cost.sh

bench-purge: build
	@scripts/setup.sh bench
	target/release/purge-bench --csv $(BENCH_OUT)/purge-latency.csv
	python3 loadtest/plot_purge.py $(BENCH_OUT)/purge-latency.csv $(BENCH_OUT)/purge-latency.png

bench-feed: build
	@scripts/setup.sh bench
	target/release/feed-bench --csv $(BENCH_OUT)/feed-fanout.csv
	python3 loadtest/plot_feed.py $(BENCH_OUT)/feed-fanout.csv $(BENCH_OUT)/feed-fanout.png

bench-live: build
	@scripts/setup.sh bench
	target/release/swap-bench --csv $(BENCH_OUT)/swap-latency.csv
	python3 loadtest/plot_swap.py $(BENCH_OUT)/swap-latency.csv $(BENCH_OUT)/swap-latency.png

bench-store: build
	@scripts/setup.sh bench
	target/release/store-bench --out $(BENCH_OUT)/store
	python3 loadtest/plot_store.py $(BENCH_OUT)/store $(BENCH_OUT)/store.png

# Hit ratio of real edges on generated image-CDN traces next to libCacheSim's policies.
bench-trace: build
	@scripts/setup.sh bench
	target/release/trace-bench --caches memory,hybrid $(TRACE_ARGS)
	python3 loadtest/plot_trace.py target/trace-bench/results.csv target/trace-bench/hit-ratio.png

# One purge-api in front of 100, 300 and 1,000 simulated nodes (the real node protocol).
bench-control-plane: build
	@scripts/setup.sh bench
	target/release/control-plane-bench --out $(BENCH_OUT)
	python3 loadtest/plot_control_plane.py $(BENCH_OUT)/control-plane.csv

bench-scale: build
	@scripts/setup.sh bench
	target/release/scale-bench --out $(BENCH_OUT)/scaling
	python3 loadtest/plot_scaling.py $(BENCH_OUT)/scaling.csv $(BENCH_OUT)/scaling.png

clean:
	rm -rf $(STATE)
