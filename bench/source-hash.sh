#!/bin/bash
# bench/source-hash.sh: a short hash of what the device kit's binaries are built from (the files
# under src and shaders, the tests' Rust, Cargo.toml, Cargo.lock). make device-kit writes it to
# .dev/VERSION; bench/device.sh checks the tree it runs in against it. In a git checkout, the files
# git would copy (tracked, and untracked ones it does not ignore: what the device tool sends); in
# the copy on the device (no .git), every file there.
set -euo pipefail
cd "$(dirname "$0")/.."
files() {
  if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files --cached --others --exclude-standard -- src shaders 'tests/*.rs' 'tests/**/*.rs'
  else
    find src shaders -type f; find tests -type f -name '*.rs'
  fi
  echo Cargo.toml; echo Cargo.lock
}
files | LC_ALL=C sort -u | while IFS= read -r f; do [ -f "$f" ] && echo "$f"; done | xargs sha256sum | sha256sum | cut -c1-16
