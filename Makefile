# webllama: the commands the README gives.
SHELL := /bin/bash
# A failing command on the left of a pipe fails the recipe.
.SHELLFLAGS := -o pipefail -c
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Mesa's software Vulkan warns without it; harmless, but noisy.
export XDG_RUNTIME_DIR ?= /tmp

# wasm-bindgen-cli must match the wasm-bindgen version Cargo.lock pins.
WASM_BINDGEN_VERSION := $(shell sed -n '/^name = "wasm-bindgen"$$/{n;s/^version = "\(.*\)"/\1/p;}' Cargo.lock)
PORT ?= 8080

.PHONY: demo test lint wasm-target model build deps wasm browser-deps test-native test-browser test-fuzz fuzz fuzz-deps bench bench-peers device-kit package test-package
FUZZ_TARGETS := gguf_header gguf_stream load_model builder_feed options_json tokenizer serve_request
FUZZ_SECONDS ?= 600
# AddressSanitizer's options per target: builder_feed runs the Vulkan driver (lavapipe), whose own
# allocations at exit LeakSanitizer would report as leaks.
FUZZ_ASAN := fuzz_asan() { [ "$$1" = builder_feed ] && echo detect_leaks=0 || echo; }

## demo: fetch the default model, build the page and the CLI, serve the page; prints the URL.
demo: model wasm build
	./target/release/webllama serve --port $(PORT)

## wasm: the browser build into www/pkg (installs the wasm32 target and wasm-bindgen-cli when missing).
wasm: wasm-target
	@wasm-bindgen --version 2>/dev/null | grep -q ' $(WASM_BINDGEN_VERSION)$$' || cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION)
	cargo build --lib --release --target wasm32-unknown-unknown --no-default-features
	wasm-bindgen --target web --no-typescript --out-dir www/pkg target/wasm32-unknown-unknown/release/webllama.wasm

## package: the npm package in dist/ (package.json with Cargo.toml's version, the API module, the
## worker, the wasm and its glue, the TypeScript declarations, README, licences; scripts/package.mjs)
## and its tarball, `npm pack` of it, in target/.
package: wasm
	node scripts/package.mjs dist
	@mkdir -p target && npm pack ./dist --pack-destination target --silent | sed 's|^|target/|'

## test-package: the package's own tests alone (tests/browser/package.test.mjs, also in test-browser):
## package.json and npm pack, tsc --noEmit on examples/typed, examples/static-site and
## examples/vite-app in headless Chromium, the storage API.
test-package: browser-deps model wasm
	node --test tests/browser/package.test.mjs

## test: install what the tests need (Mesa lavapipe, Chromium, playwright-core), fetch the default
## model, build, check the code (lint), run every test: native (cargo) and in the browser (node's
## test runner).
test: lint test-native test-browser test-fuzz

## lint: rustfmt and clippy with warnings as errors, natively and for wasm32 (the page's build).
lint: wasm-target
	cargo fmt --check
	cargo clippy --release --all-targets -- -D warnings
	cargo clippy --release --lib --target wasm32-unknown-unknown --no-default-features -- -D warnings

wasm-target:
	@rustup target list --installed | grep -q '^wasm32-unknown-unknown$$' || rustup target add wasm32-unknown-unknown
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy rustfmt

test-native: deps model
	cargo test --release --all-targets

test-browser: browser-deps model wasm build
	npm test

## bench: prefill and decode speed on the default model (webllama bench; add ARGS="--profile" for the kernel split).
bench: model build
	./target/release/webllama bench $(ARGS)

## bench-peers: llama.cpp (node-llama-cpp 3.22.1: Vulkan, e.g. on lavapipe, and CPU) beside webllama on the same file. Not in CI.
bench-peers: model build
	@[ -d bench/node_modules/node-llama-cpp ] || npm install --prefix bench --no-audit --no-fund
	node bench/peers.mjs $$(./scripts/fetch-model.sh) $(or $(P),128) $(or $(N),32)

## test-fuzz: each fuzz target for 20 s from its seed corpus (nightly + cargo-fuzz, installed when
## missing; where no nightly toolchain can be installed it says so loudly and skips, and fails on CI).
test-fuzz:
	@if ! rustup toolchain list | grep -q '^nightly' && ! rustup toolchain install nightly --profile minimal; then \
		if [ -n "$$CI" ]; then echo "FAILED: no nightly toolchain for the fuzz smoke run on CI"; exit 1; fi; \
		echo "SKIPPED the fuzz smoke run: no nightly toolchain could be installed on this machine"; exit 0; fi; \
	command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz || exit 1; \
	$(FUZZ_ASAN); for t in $(FUZZ_TARGETS); do \
		work=$$(mktemp -d); \
		ASAN_OPTIONS=$$(fuzz_asan $$t) cargo +nightly fuzz run -O $$t $$work fuzz/corpus/$$t -- -max_total_time=20 -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 2>&1 | tail -n 3 || exit 1; \
		rm -rf $$work; \
	done

## fuzz: each fuzz target for FUZZ_SECONDS (default 600) from its seed corpus. An input that runs
## over 10 s or allocates over 2 GiB at once is reported (libFuzzer's own limits are 1,200 s, 4 GB).
fuzz: fuzz-deps
	@mkdir -p target/fuzz-logs; $(FUZZ_ASAN); for t in $(FUZZ_TARGETS); do \
		work=$$(mktemp -d); log=target/fuzz-logs/$$t.log; \
		if ! ASAN_OPTIONS=$$(fuzz_asan $$t) cargo +nightly fuzz run -O $$t $$work fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 > $$log 2>&1; then \
			tail -n 40 $$log; echo "FAILED: fuzz target $$t (whole log: $$log)"; exit 1; fi; \
		echo "$$t: $$(grep -E '^#[0-9]+ +DONE' $$log | tail -n 1); $$(grep -E '^Done ' $$log | tail -n 1); $$(ls $$work | wc -l) new corpus entries"; \
		rm -rf $$work; \
	done

fuzz-deps:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz

## model: the default model (SmolLM2-135M-Instruct Q4_1) into ~/.cache/webllama/models; prints its path.
model:
	@./scripts/fetch-model.sh

build:
	cargo build --release

## browser-deps: Debian's Chromium and playwright-core (no browser download of its own); typescript
## and vite for the package's tests.
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { echo "installing Debian's chromium"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
	@[ -d node_modules/playwright-core ] && [ -d node_modules/typescript ] && [ -d node_modules/vite ] || npm ci --no-audit --no-fund

## deps: Mesa's lavapipe (software Vulkan) so the GPU tests run on a machine without a GPU.
deps:
	@if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then \
		echo "installing Mesa lavapipe (mesa-vulkan-drivers)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null; \
	fi

## device-kit: what bench/device.sh needs on a GPU machine (x86-64): stripped binaries and the two GGUF headers.
device-kit: build
	mkdir -p .dev
	strip -o .dev/webllama target/release/webllama
	cp $$(cargo test --release --test kernels --no-run 2>&1 | grep -o 'target/[^)]*kernels-[0-9a-f]*') .dev/kernels && strip .dev/kernels
	cp $$(cargo test --release --test attention --no-run 2>&1 | grep -o 'target/[^)]*attention-[0-9a-f]*') .dev/attention && strip .dev/attention
	head -c 12000000 ../shared/fixtures/tiny/tiny-llama3-Q4_K_M.gguf > .dev/llama3.hdr
	head -c 8000000 $$(./scripts/fetch-model.sh) > .dev/smollm2.hdr
