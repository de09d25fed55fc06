# house: `make run` serves the chat on 127.0.0.1:4242, `make test` runs every
# test, `make bench` measures and writes BENCHMARKS.md. Each installs what it
# needs (the wasm32 target, Chromium and the browser driver, wrk) if missing.

CARGO ?= cargo
WASM_TARGET := wasm32-unknown-unknown
GUEST_CRATES := chat hello todo typed
# Guests the tests use and `make run` does not serve: built with the others,
# copied to target/test-guests/.
TEST_GUEST_CRATES := txcheck board order_typed order_serde
# Guests in C, one folder each with one .c file (built against
# guest-sdk/include/house.h with clang and lld; see docs/ABI.md).
C_GUESTS := c-greet
CLANG ?= clang
C_GUEST_FLAGS := --target=wasm32-unknown-unknown -O2 -nostdlib -mbulk-memory -Wall -Wextra -Werror \
	-Iguest-sdk/include -Wl,--no-entry -Wl,-z,stack-size=65536
PORT ?= 4242

.PHONY: fuzz-tool fuzz-replay torture test-tools all build host guests c-guests c-toolchain wasm-target run test test-deps unit-test browser-test browser-deps bench fuzz lint clean

all: build

build: host guests

host:
	$(CARGO) build --release -p house

wasm-target:
	@rustup target list --installed | grep -qx $(WASM_TARGET) || rustup target add $(WASM_TARGET)

# Each .wasm is copied next to its final name and renamed into place, so a
# running house (which watches guests/) never sees a half-written file.
c-toolchain:
	@command -v $(CLANG) >/dev/null && command -v wasm-ld >/dev/null || \
		(apt-get update -q && apt-get install -y -q clang lld)

c-guests: c-toolchain
	@for g in $(C_GUESTS); do \
		$(CLANG) $(C_GUEST_FLAGS) -o guests/.$$g.wasm.tmp guests/$$g/*.c && \
		mv guests/.$$g.wasm.tmp guests/$$g.wasm && \
		printf '  guests/%-12s %7d bytes\n' $$g.wasm $$(stat -c %s guests/$$g.wasm) || exit 1; \
	done

guests: wasm-target c-guests
	cd guests && $(CARGO) build --release --target $(WASM_TARGET)
	@for g in $(GUEST_CRATES); do \
		cp guests/target/$(WASM_TARGET)/release/$$g.wasm guests/.$$g.wasm.tmp && \
		mv guests/.$$g.wasm.tmp guests/$$g.wasm && \
		printf '  guests/%-12s %7d bytes\n' $$g.wasm $$(stat -c %s guests/$$g.wasm); \
	done
	@mkdir -p target/test-guests
	@for g in $(TEST_GUEST_CRATES); do \
		cp guests/target/$(WASM_TARGET)/release/$$g.wasm target/test-guests/.$$g.wasm.tmp && \
		mv target/test-guests/.$$g.wasm.tmp target/test-guests/$$g.wasm; \
	done

# The key the examples' signed cookies (the to-do list's sid) are signed
# with: made once, 0600, kept beside their data so sessions outlive a restart.
run: build
	@mkdir -p data && [ -f data/cookie.key ] || (umask 077 && printf '# cookie key (house --cookie-key-file)\n%s\n' "$$(head -c 32 /dev/urandom | base64)" > data/cookie.key)
	./target/release/house --port $(PORT) --guests guests --cookie-key-file data/cookie.key

test: build unit-test browser-test

# The engine tests run a real redis-server, the deployment test a real nginx
# (both started by the tests on free ports, and stopped by them).
test-deps:
	@command -v redis-server >/dev/null && (command -v nginx || test -x /usr/sbin/nginx) >/dev/null || \
		(apt-get update -q && apt-get install -y -q redis-server nginx-light)

# Test-only tools from PyPI, in a venv of their own: a real Prometheus
# text-format parser for the metrics test, an OpenAPI validator for the
# OpenAPI test.
TEST_VENV := tests/.venv
test-tools:
	@test -x $(TEST_VENV)/bin/python && $(TEST_VENV)/bin/python -c 'import prometheus_client, openapi_spec_validator' 2>/dev/null || \
		( (python3 -m venv $(TEST_VENV) 2>/dev/null || (apt-get update -q && apt-get install -y -q python3-venv && python3 -m venv $(TEST_VENV))) && \
		$(TEST_VENV)/bin/pip install -q prometheus-client==0.21.1 openapi-spec-validator==0.7.1 )

# The consistency checker's runs print what they did (operations, faults,
# anomalies): run on their own, with their output.
unit-test: build test-deps test-tools
	$(CARGO) test --release --workspace
	$(CARGO) test --release -p house-tests --test consistency -- --ignored --nocapture --test-threads 1

browser-deps:
	@command -v chromium >/dev/null || (apt-get update -q && apt-get install -y -q chromium)
	@test -d tests/browser/node_modules/playwright-core || (cd tests/browser && npm ci --no-audit --no-fund)

browser-test: build browser-deps test-deps
	cd tests/browser && node --test

# The consistency checker (tests/consistency.rs) for SECONDS per run: list
# appends, counters and ids, then channels, on one host with the embedded
# engine and on two hosts on Redis, each under its faults; every run prints
# its operations, faults, anomalies and acknowledged-but-lost, and fails on
# any. Four runs in turn: about 4 x SECONDS.
SECONDS ?= 600
torture: build test-deps
	HOUSE_TORTURE_SECONDS=$(SECONDS) $(CARGO) test --release -p house-tests --test consistency -- --ignored --nocapture --test-threads 1

bench: build test-deps
	@command -v wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	$(CARGO) build --release -p house-bench
	@# The chat with its page in the memory image, as before static files:
	@# scenario 3 measures what the static file saves each call.
	cd guests && $(CARGO) build --release --target $(WASM_TARGET) -p chat --features page-in-memory \
		--target-dir ../target/page-in-memory
	cp target/page-in-memory/$(WASM_TARGET)/release/chat.wasm target/chat-page-in-memory.wasm
	./target/release/house-bench --out BENCHMARKS.md

# Fuzzing (fuzz/): request framing, WebSocket frames, and what a guest controls: manifest
# entries, response blocks, the arguments of every import, static-file
# sections, the scan and rewrite that decide instance reuse. Each target
# runs FUZZ_SECONDS on its corpus (fuzz/corpus/TARGET, kept in the repo);
# `fuzz-replay` runs every corpus once (-runs=0), as CI does. cargo-fuzz is
# installed if missing; RUSTC_BOOTSTRAP lets the stable toolchain take the
# sanitizer flags.
FUZZ_SECONDS ?= 300
FUZZ_TARGETS := parse_request manifest response_block imports static_sections reuse_scan body ws_frames
FUZZ_LIMITS := -rss_limit_mb=2048 -malloc_limit_mb=512
fuzz-tool:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked --version 0.13.2

fuzz: fuzz-tool
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t && \
		(cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_LIMITS)) || exit 1; \
	done

fuzz-replay: fuzz-tool
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz build -O
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t && \
		(cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t corpus/$$t -- -runs=0 $(FUZZ_LIMITS)) || exit 1; \
	done

# No import cycle among the host's modules, and no source file of the
# host, the ABI crate or the SDK over 500 lines (.ci/*.py say why scripts).
lint: wasm-target
	python3 .ci/import_cycles.py host/src
	python3 .ci/file_lengths.py --max 500 host/src abi guest-sdk
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	cd guests && $(CARGO) clippy --target $(WASM_TARGET) -- -D warnings
	cd fuzz && $(CARGO) check --locked

clean:
	$(CARGO) clean
	cd guests && $(CARGO) clean
	rm -f guests/*.wasm
