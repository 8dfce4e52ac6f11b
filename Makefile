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

.PHONY: demo test test-build lint wasm-target model build deps wasm browser-deps test-native test-browser test-fuzz fuzz fuzz-deps bench bench-peers device-kit package test-package
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
	CARGO_PROFILE_RELEASE_DEBUG=false cargo build --lib --release --target wasm32-unknown-unknown --no-default-features
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
## model, check the code (lint), build, then run every test: the native ones (cargo) and the browser
## ones (node's test runner) side by side, each line of their output marked with its side (either
## alone leaves much of a 2-core machine idle: on one like CI's, ~1,200 s one after the other, ~930 s
## side by side), then the fuzz targets' smoke run.
test: lint test-build
	@{ $(MAKE) --no-print-directory test-native 2>&1 | sed -u 's/^/native  | /'; } & native=$$!; \
	{ $(MAKE) --no-print-directory test-browser 2>&1 | sed -u 's/^/browser | /'; } & browser=$$!; \
	wait $$native; n=$$?; wait $$browser; b=$$?; \
	[ $$n = 0 ] || echo "FAILED: the native tests (make test-native)"; \
	[ $$b = 0 ] || echo "FAILED: the browser tests (make test-browser)"; \
	[ $$n = 0 ] && [ $$b = 0 ]
	@$(MAKE) --no-print-directory test-fuzz

## test-build: everything the tests run, built (the test binaries, the CLI, the page's wasm).
test-build: deps browser-deps model wasm build
	cargo test --release --all-targets --no-run

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

## test-fuzz: each fuzz target for 5 s from its seed corpus, two at a time (a smoke run on the machine's stable
## toolchain: no nightly, no cargo-fuzz, no AddressSanitizer). The targets build as plain cargo
## binaries in target/release beside the test build, whose dependencies they share (fuzz/Cargo.lock
## starts from Cargo.lock); scripts/fuzz-rustc.sh adds libFuzzer's coverage instrumentation to
## webllama and the targets alone. `make fuzz` is the real run: cargo-fuzz, nightly, ASAN.
test-fuzz:
	@# The fuzz build writes target/release/deps/libwebllama.rlib (instrumented) where the test build
	@# keeps its own (the same file name, as for every crate that is also a cdylib); each build
	@# trusts its own fingerprint. Touching lib.rs before and after makes each rebuild what the other
	@# overwrote, rather than link it: uninstrumented targets, or a later `cargo test` failing to link.
	touch src/lib.rs
	FUZZ_INSTRUMENT="webllama webllama_fuzz $(FUZZ_TARGETS)" RUSTC_WRAPPER=$(CURDIR)/scripts/fuzz-rustc.sh \
		CARGO_TARGET_DIR=$(CURDIR)/target cargo build --release --manifest-path fuzz/Cargo.toml 2>&1 | tail -n 1
	touch src/lib.rs
	@printf '%s\n' $(FUZZ_TARGETS) | xargs -P 2 -I{} bash -c \
		'work=$$(mktemp -d); target/release/{} $$work fuzz/corpus/{} -max_total_time=5 -timeout=10 \
			-rss_limit_mb=4096 -malloc_limit_mb=2048 > $$work.log 2>&1; rc=$$?; \
		tail -n 3 $$work.log | sed "s/^/{}: /"; rm -rf $$work $$work.log; exit $$rc'

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

## device-kit: what bench/device.sh needs on a GPU machine (x86-64), in .dev/ (carry .dev): the
## sources' hash (VERSION: bench/source-hash.sh), webllama and the kernel-test binaries (stripped,
## xz), the two models' GGUF headers and tiny-llama2's (xz), ../shared/peers' llama-bench builds (xz) and libgomp,
## libssl/libcrypto (used there only where the system lacks them), the Vulkan loader and GL
## dispatch .debs the NVIDIA ICD needs (amd64, apt-get download).
## Prints what travels (the working tree and the kit) and fails over DEVICE_MAX_MIB (the transfer's
## limit is 64 MiB; 62 keeps 2 for what the count leaves out).
DEVICE_MAX_MIB ?= 62
PEERS ?= ../shared/peers
device-kit: build
	rm -rf .dev && mkdir -p .dev/lib/ssl .dev/gl
	bash bench/source-hash.sh > .dev/VERSION
	tgt=$${CARGO_TARGET_DIR:-target}; strip -o .dev/webllama $$tgt/release/webllama
	for t in kernels attention sampler arch; do \
		bin=$$(cargo test --release --test $$t --no-run 2>&1 | sed -n "s|.*(\(.*/$$t-[0-9a-f]*\))$$|\1|p" | tail -1); \
		[ -x "$$bin" ] || { echo "no test binary for $$t"; exit 1; }; strip -o .dev/$$t $$bin; done
	m=$$(./scripts/fetch-model.sh); head -c $$(python3 bench/gguf_header.py $$m) $$m > .dev/smollm2.hdr
	f=../shared/fixtures/tiny/tiny-llama3-Q4_K_M.gguf; head -c $$(python3 bench/gguf_header.py $$f) $$f > .dev/llama3.hdr
	f=../shared/fixtures/tiny/tiny-llama2-Q8_0.gguf; head -c $$(python3 bench/gguf_header.py $$f) $$f > .dev/llama2.hdr
	cp $(PEERS)/llama-bench-vulkan .dev/
	xz -T0 -6 .dev/webllama .dev/kernels .dev/attention .dev/sampler .dev/arch .dev/smollm2.hdr .dev/llama3.hdr .dev/llama2.hdr .dev/llama-bench-vulkan
	cp $(PEERS)/llama-bench-vulkan-2026-10.xz .dev/ && cp $(PEERS)/libgomp.so.1 .dev/lib/
	cp -L /lib/x86_64-linux-gnu/libssl.so.3 /lib/x86_64-linux-gnu/libcrypto.so.3 .dev/lib/ssl/
	o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64"; mkdir -p /tmp/amd64/partial; \
		apt-get $$o update -qq && cd .dev/gl && apt-get $$o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2
	@kit=$$(du -sb .dev | cut -f1); \
		tree=$$( (git ls-files -z; git ls-files -z --others --exclude-standard) | xargs -0 du -cb 2>/dev/null | awk '$$2 == "total" {s += $$1} END {print s}'); \
		total=$$((kit + tree)); ls -l .dev .dev/lib .dev/lib/ssl .dev/gl | grep -v '^total'; \
		echo "device kit: .dev $$((kit >> 20)) MiB + the working tree $$((tree >> 20)) MiB = $$((total >> 20)) MiB to travel (the transfer's limit: 64 MiB; this check: $(DEVICE_MAX_MIB))"; \
		[ $$total -le $$(( $(DEVICE_MAX_MIB) << 20 )) ] || { echo "FAILED: the device kit and the tree are over $(DEVICE_MAX_MIB) MiB"; exit 1; }
