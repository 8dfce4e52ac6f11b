# webllama: the commands the README gives.
SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Mesa's software Vulkan warns without it; harmless, but noisy.
export XDG_RUNTIME_DIR ?= /tmp

.PHONY: demo test model build deps

## demo: fetch the default model, build, and chat with it natively (the browser page comes with the web build).
demo: model build
	./target/release/webllama generate --chat "Write a headline for this news: The stock market saw a significant increase today as major tech companies reported higher than expected earnings."

## test: install what the tests need (Mesa lavapipe), fetch the default model, run every test.
test: deps model
	cargo test --release --all-targets

## model: the default model (SmolLM2-135M-Instruct Q4_1) into ~/.cache/webllama/models; prints its path.
model:
	@./scripts/fetch-model.sh

build:
	cargo build --release

## deps: Mesa's lavapipe (software Vulkan) so the GPU tests run on a machine without a GPU.
deps:
	@if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then \
		echo "installing Mesa lavapipe (mesa-vulkan-drivers)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null; \
	fi
