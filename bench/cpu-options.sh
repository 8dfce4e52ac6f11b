#!/usr/bin/env bash
# What each CPU-family option is worth on this adapter: `webllama bench` with each one turned off
# (through its WEBLLAMA_* variable), against all on, interleaved round by round so that drift hits
# every configuration alike. Optionally a second binary (BASE=path) runs first in each round, to
# compare two builds. Prints one line per run and a median per configuration.
# Usage: bench/cpu-options.sh [ROUNDS] [PROMPT] [DECODE]   (model: the default one)
#        BASE=/path/to/older/webllama bench/cpu-options.sh ...   (that build first in every round)
# Noise on a 2-core machine is large (+-10% between identical runs): decode differences under ~5%
# want a decode-focused run (PROMPT 32, DECODE 128) and 6+ rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
p=${2:-128}
n=${3:-64}
bin=./target/release/webllama
model=$(./scripts/fetch-model.sh)
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
configs=("all on|" "sampled texture loads|WEBLLAMA_TEXTURE_LOADS=sampled" "weights in buffers|WEBLLAMA_TEXTURES=0"
  "no prompt lanes|WEBLLAMA_PROMPT_LANES=0" "no folds|WEBLLAMA_FOLDS=0" "no subgroups|WEBLLAMA_SUBGROUPS=0")
out=$(mktemp)
# One run's line: configuration, prefill and decode tok/s.
show() { python3 -c 'import json, sys; d = json.loads(sys.argv[2]); print("%-24s prefill %7.1f  decode %6.2f" % (sys.argv[1], d["prefill_tok_s"], d["decode_tok_s"]))' "$1" "$2"; }
for r in $(seq "$rounds"); do
  if [ -n "${BASE:-}" ]; then
    line=$("$BASE" bench --model "$model" -p "$p" -n "$n" --json)
    echo "base|$line" >> "$out"
    show base "$line"
  fi
  for c in "${configs[@]}"; do
    name=${c%%|*}
    vars=${c#*|}
    line=$(env $vars "$bin" bench --model "$model" -p "$p" -n "$n" --json)
    echo "$name|$line" >> "$out"
    show "$name" "$line"
  done
done
echo "median over $rounds rounds, prompt $p, decode $n:"
python3 - "$out" <<'EOF'
import json, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    name, js = line.rstrip("\n").split("|", 1)
    runs.setdefault(name, []).append(json.loads(js))
for name, rs in runs.items():
    pre = statistics.median(r["prefill_tok_s"] for r in rs)
    dec = statistics.median(r["decode_tok_s"] for r in rs)
    print(f"  {name:<24} prefill {pre:7.1f} tok/s  decode {dec:6.2f} tok/s  {rs[0]['dispatches_per_token']} dispatches  {rs[0].get('layout', '')}")
EOF
rm -f "$out"
