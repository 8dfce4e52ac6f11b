#!/bin/bash
# bench/source-hash.sh: a short hash of what the device kit's binaries are built from (every file
# under src and shaders, the tests' Rust, Cargo.toml, Cargo.lock). make device-kit writes it to
# .dev/VERSION; bench/device.sh checks the tree it runs in against it.
set -euo pipefail
cd "$(dirname "$0")/.."
{ find src shaders -type f; find tests -type f -name '*.rs'; echo Cargo.toml; echo Cargo.lock; } \
  | LC_ALL=C sort | xargs sha256sum | sha256sum | cut -c1-16
