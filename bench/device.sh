#!/bin/bash
# bench/device.sh: one device-machine run (BENCH.md, "Real GPU"), under 5 minutes on an H200, in the
# order that saves the most if time runs out: both llama-bench builds of ../shared/peers (pp512,
# tg128; carried in .dev); then `webllama bench --json` (prefill -p 512, the median of 3 in each run;
# decode -p 8 -n 128 greedy and --sampled, with and without a repetition penalty, the first run with
# --profile) on the same random-weight files (SmolLM2-135M Q4_1 shape, Llama-3.2-1B Q4_K_M shape,
# written here by `webllama random-model`); the variants that settle Layout defaults; n = 8
# candidates (`generate --n 8`); the kernel tests (and the GPU sampler's) last. bench/ratios.py
# prints the table after each phase, into $OUT (table.txt, results.tar.gz, device.log), so a run cut
# short still brings back what it measured. Every step has its own timeout, and none starts past
# DEADLINE seconds (default 400: the device call's timeout_s is 480).
# Needs the kit `make device-kit` puts in .dev/ (carried: name .dev in the run's carry); fails when a
# piece is missing or the kit was built from other sources than this tree's (.dev/VERSION). Off the
# device machine (no nvidia-smi) the .debs and nvidia-smi are skipped and llama-bench is let onto
# CPU adapters (lavapipe).
# QUICK=1: small sizes (-p 32, -n 8, one run each, the SmolLM2 shape) for a check on lavapipe.
# TESTS=0 skips the kernel tests; MODELS="smol l1b" picks the shapes.
set -u -o pipefail
cd "$(dirname "$0")/.."
KIT=${KIT:-.dev}
OUT=${OUT:-/tmp/webllama-device-out}
WORK=${WORK:-/tmp/webllama-device}
DEADLINE=${DEADLINE:-400}
if [ "${QUICK:-0}" = 1 ]; then
  P=32; N=8; R=1; REPS=1; MODELS=${MODELS:-smol}; TEST_S=300 # lavapipe runs the attention tests for ~2 minutes
  DEADLINE=${QUICK_DEADLINE:-900}
else
  P=512; N=128; R=5; REPS=3; MODELS=${MODELS:-smol l1b}
fi
mkdir -p "$OUT" "$WORK" "$WORK/lib"
# A rerun on the same machine starts clean (ratios.py globs the JSON files).
rm -f "$WORK"/*.json "$WORK"/*.err "$WORK"/*.log "$WORK"/*.txt
exec > >(tee "$OUT/device.log") 2>&1
tee_pid=$!
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
failed=()
# Ends the run: the failures, then the log's last line flushed (tee is waited for).
finish() {
  [ ${#failed[@]} -gt 0 ] && printf 'FAILED: %s\n' "${failed[@]}"
  echo "== [$SECONDS s] done"
  exec >&- 2>&-
  wait $tee_pid
  exit $(( ${#failed[@]} > 0 || $1 ))
}
fail() { echo "device.sh: FAILED: $*"; finish 1; }
step() { echo "== [$SECONDS s] $*"; }
# `within SECONDS LABEL CMD...`: CMD under a timeout of SECONDS, cut to what is left before
# DEADLINE; not started when under 10 s are left (counted as failed; status 125).
within() {
  local s=$1 label=$2 left=$(( DEADLINE - SECONDS ))
  shift 2
  if [ $left -lt 10 ]; then
    echo "  skipped: $label (the ${DEADLINE} s deadline)" >&2; failed+=("$label (skipped: deadline)"); return 125
  fi
  [ $left -lt "$s" ] && s=$left
  timeout -k 5 "$s" "$@"
}

on_device=0
[ -d /usr/local/nvidia/bin ] && export PATH=$PATH:/usr/local/nvidia/bin
if command -v nvidia-smi >/dev/null 2>&1 || [ -d /usr/local/nvidia ]; then on_device=1; fi
for f in VERSION webllama.xz kernels.xz attention.xz sampler.xz smollm2.hdr.xz llama3.hdr.xz llama2.hdr.xz llama-bench-vulkan.xz \
  llama-bench-vulkan-2026-10.xz lib/libgomp.so.1; do
  [ -s "$KIT/$f" ] || fail "$KIT/$f is missing: run make device-kit here and carry .dev"
done
# The kit's binaries were built from this tree's sources (bench/source-hash.sh, as make device-kit).
want=$(cat "$KIT/VERSION"); have=$(bash bench/source-hash.sh)
[ "$want" = "$have" ] || fail "the kit was built from other sources ($want) than this tree's ($have): make device-kit again"
echo "sources $have"
command -v python3 >/dev/null || fail "no python3 (ratios.py and the unpacking need it)"
unxz_to() { python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }

step "unpacking the kit"
for f in webllama kernels attention sampler arch llama-bench-vulkan llama-bench-vulkan-2026-10; do
  unxz_to "$KIT/$f.xz" "$WORK/$f" && chmod +x "$WORK/$f" || fail "unpacking $KIT/$f.xz"
done
for f in smollm2.hdr llama3.hdr llama2.hdr; do unxz_to "$KIT/$f.xz" "$WORK/$f" || fail "unpacking $KIT/$f.xz"; done
cp "$KIT"/lib/*.so* "$WORK/lib/"
if [ $on_device = 1 ]; then
  ls "$KIT"/gl/*.deb >/dev/null 2>&1 || fail "$KIT/gl has no .debs (the Vulkan loader the NVIDIA ICD needs): make device-kit"
  for f in "$KIT"/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  icd=$(ls /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json 2>/dev/null | head -1)
  [ -n "$icd" ] || { ls -l /usr/local/nvidia/share/vulkan/icd.d /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1; fail "no nvidia_icd.json"; }
  echo "ICD $icd"
  export VK_DRIVER_FILES=$icd
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
else
  echo "not on the device machine (no nvidia-smi): skipping the .debs and nvidia-smi; llama-bench may use CPU adapters"
  export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0}
  gpu=""
fi
# The newer llama-bench needs libssl.so.3 / libcrypto.so.3: the carried ones where the system lacks them.
ldconfig -p > "$WORK/ldconfig.txt"
if ! grep -q 'libssl.so.3 ' "$WORK/ldconfig.txt"; then
  [ -s "$KIT/lib/ssl/libssl.so.3" ] || fail "no libssl.so.3 here and none in $KIT/lib/ssl"
  cp "$KIT"/lib/ssl/* "$WORK/lib/"
fi
W=$WORK/webllama
LIBS="LD_LIBRARY_PATH=$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
peers_ok=1
for b in llama-bench-vulkan llama-bench-vulkan-2026-10; do
  if env "$LIBS" ldd "$WORK/$b" | grep 'not found'; then peers_ok=0; failed+=("$b: libraries not found"); fi
done

# The table so far into $OUT, and every result file beside it.
table() {
  step "the table ($1)"
  python3 bench/ratios.py --dir "$WORK" --models "$MODELS" --prompt $P --gen $N --gpu "$gpu" > "$WORK/table.txt" 2>&1 \
    || failed+=("ratios.py ($1)")
  cp "$WORK/table.txt" "$OUT/table.txt"
  tar -czf "$OUT/results.tar.gz" -C "$WORK" $(cd "$WORK" && ls *.json *.err *.log *.txt 2>/dev/null)
}

step "random-weight models"
for m in $MODELS; do
  case $m in
    smol) $W random-model --like "$WORK/smollm2.hdr" --out "$WORK/smol.gguf" ;;
    l1b) $W random-model --like "$WORK/llama3.hdr" --shape llama-3.2-1b --out "$WORK/l1b.gguf" ;;
    *) fail "unknown model $m (smol or l1b)" ;;
  esac || fail "random-model $m"
done

# webllama on the GPU, not a software adapter (the numbers would be the CPU's).
step "webllama's adapter"
first=${MODELS%% *}
within 60 "adapter check" $W bench --model "$WORK/$first.gguf" -p 8 -n 8 --json > "$WORK/adapter.json" 2> "$WORK/adapter.err" \
  || { tail -5 "$WORK/adapter.err"; fail "webllama bench did not run"; }
adapter=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["adapter"])' "$WORK/adapter.json")
echo "  webllama's adapter: $adapter"
if [ $on_device = 1 ] && ! [[ "$adapter" == *NVIDIA* ]]; then fail "webllama runs on \"$adapter\", not the NVIDIA GPU"; fi

if [ $peers_ok = 1 ]; then
  for m in $MODELS; do
    for b in 2026-10 b4747; do
      bin=$WORK/llama-bench-vulkan$([ $b = 2026-10 ] && echo -2026-10)
      step "$m: llama.cpp $b llama-bench -p $P -n $N -r $R"
      if within 90 "llama-bench $b on $m" env "$LIBS" "$bin" -m "$WORK/$m.gguf" -ngl 99 -p $P -n $N -r $R -o json \
        > "$WORK/$m.llama-$b.json" 2> "$WORK/$m.llama-$b.err"; then
        python3 -c 'import json, sys; [print("  n_prompt %d n_gen %d: %.1f ± %.1f tok/s on %s (%s, %s layers)" % (r["n_prompt"], r["n_gen"], r["avg_ts"], r["stddev_ts"], r.get("gpu_info"), r.get("backends"), r.get("n_gpu_layers"))) for r in json.load(open(sys.argv[1]))]' "$WORK/$m.llama-$b.json"
        grep -iE "vulkan|ggml_vk|device" "$WORK/$m.llama-$b.err" | head -4
      else
        rc=$?; tail -5 "$WORK/$m.llama-$b.err"; [ $rc = 125 ] || failed+=("llama-bench $b on $m (rc $rc)")
      fi
    done
  done
fi

# Two webllama timeouts in a row stop its runs (a steady fault would eat the deadline).
stuck=0
bench_run() {
  local label=$1 s=$2 rc
  shift 2
  if [ $stuck -ge 2 ]; then failed+=("$label (skipped: webllama timed out twice)"); return 1; fi
  within "$s" "$label" "$@"
  rc=$?
  if [ $rc = 124 ] || [ $rc = 137 ]; then stuck=$((stuck + 1)); else stuck=0; fi
  [ $rc = 0 ] || [ $rc = 125 ] || failed+=("$label (rc $rc)")
  return $rc
}
limit() { [ "$1" = l1b ] && echo 90 || echo 45; }

for m in $MODELS; do
  for i in $(seq 1 $REPS); do
    step "$m: webllama bench -p $P (prefill), -p 8 -n $N (decode$([ $i = 1 ] && echo ', with --profile')), run $i"
    bench_run "webllama $m prefill $i" "$(limit $m)" $W bench --model "$WORK/$m.gguf" -p $P -n 4 --json > "$WORK/$m.prefill.$i.json"
    prof=$([ $i = 1 ] && echo --profile)
    bench_run "webllama $m decode $i" "$(limit $m)" $W bench --model "$WORK/$m.gguf" -p 8 -n $N --json --sampled $prof \
      > "$WORK/$m.decode.$i.json"
    python3 -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); print("  prefill %.1f tok/s, decode %.1f tok/s on %s, layout %s" % (a["prefill_tok_s"], b["decode_tok_s"], b["adapter"], b["layout"]))' \
      "$WORK/$m.prefill.$i.json" "$WORK/$m.decode.$i.json" 2>/dev/null
  done
done
table "webllama and llama.cpp"

for m in $MODELS; do
  # Variants whose speed here decides a Layout default (ratios.py prints each against the default):
  # prefill with f32 tiles in workgroup memory (the default stages f16 where the device has
  # shader-f16: Layout::f16_tiles; its tiles also step 32 columns, f32 tiles 16 in the large one);
  # prefill with f16 tiles stepping as f32 tiles do (Layout::f16_k32); prefill with the products
  # in f16 within each K step, as llama.cpp's f16 accumulators (off by default: an NMSE of 1.5e-6
  # against reference.rs, over the kernel tests' 1e-6; Layout::f16_products); prefill with the
  # largest tile no wider than the batch, as llama.cpp chooses (the default takes the largest that
  # gives 128 workgroups: Layout::matmul_min_workgroups); decode with the 8-value row walk for every
  # type (the default walks both runs of Q4_K's and the like's quant words, 16 values a lane:
  # Layout::paired_walk); decode with attention's splits merged by its combine dispatch (the default
  # merges them in Wo's activation loader, one dispatch a layer fewer, up to
  # kernels::gpu::combine_in_wo_splits x 64 positions: 256 for SmolLM2, 128 for the 1B shape:
  # Layout::combine_in_wo); prefill with the tiles staged a vector component a thread, as before
  # each thread wrote whole vec4s (a race on Metal and D3D12, sound on Vulkan: what whole-vec4
  # staging costs here; Layout::component_staging).
  for v in "prefill-f32-tiles|WEBLLAMA_F16=0" "prefill-16-column-steps|WEBLLAMA_F16_K32=0" \
    "prefill-f16-products|WEBLLAMA_F16_PRODUCTS=1" \
    "prefill-largest-tiles|WEBLLAMA_MATMUL_MIN_WORKGROUPS=0" \
    "prefill-component-staging|WEBLLAMA_COMPONENT_STAGING=1" \
    "decode-8-value-walk|WEBLLAMA_PAIRS=0" "decode-combine-dispatch|WEBLLAMA_COMBINE_IN_WO=0"; do
    name=${v%%|*}; env=${v#*|}
    case $name in prefill-*) args="-p $P -n 4" ;; *) args="-p 8 -n $N" ;; esac
    step "$m: webllama bench $args with $env"
    bench_run "webllama $m $name" "$(limit $m)" env $env $W bench --model "$WORK/$m.gguf" $args --json > "$WORK/$m.$name.json"
  done
  # n = 8 candidates sampled side by side (chained from their second step): tok/s together.
  step "$m: webllama generate --n 8, 64 tokens each"
  bench_run "webllama $m candidates" "$(limit $m)" $W generate --model "$WORK/$m.gguf" --prompt "Once upon a time," --n 8 \
    --max-tokens 64 --temperature 1 --ignore-eos > "$WORK/$m.candidates.log" 2>&1
  tail -1 "$WORK/$m.candidates.log" | tee "$WORK/$m.candidates.txt"
done
table "with the variants"

if [ "${TESTS:-1}" = 1 ]; then
  # The tests that read a model (the decode graphs' edge, the GPU sampler against the host's) get
  # random-weight stand-ins of the same shapes: they compare two paths on one model, not goldens.
  # A test that still finds no model says SKIPPED (on stderr, shown for passing tests by
  # --show-output): listed below the table, not taken as a pass.
  step "stand-in models for the tests"
  mkdir -p "$WORK/fixtures/tiny" "$WORK/cache/models"
  $W random-model --like "$WORK/llama2.hdr" --out "$WORK/fixtures/tiny/tiny-llama2-Q8_0.gguf" || failed+=("random-model tiny-llama2")
  [ -s "$WORK/smol.gguf" ] || $W random-model --like "$WORK/smollm2.hdr" --out "$WORK/smol.gguf" || failed+=("random-model smol")
  ln -sf "$WORK/smol.gguf" "$WORK/cache/models/SmolLM2-135M-Instruct.Q4_1.gguf"
  for t in kernels attention sampler arch; do
    step "kernel tests: $t (every kernel x type x layout vs reference.rs; arch: every architecture vs llama.cpp)"
    within ${TEST_S:-90} "$t tests" env WEBLLAMA_CACHE="$WORK/cache" WEBLLAMA_SHARED_FIXTURES="$WORK/fixtures" \
      "$WORK/$t" --test-threads 8 --show-output > "$WORK/$t.log" 2>&1
    rc=$?; tail -3 "$WORK/$t.log"
    [ $rc = 0 ] || [ $rc = 125 ] || { grep -E "^test .* FAILED|panicked" "$WORK/$t.log" | head -20; failed+=("$t tests (rc $rc)"); }
    grep -h "^SKIPPED" "$WORK/$t.log" | sort -u | sed "s/^/$t: /" >> "$WORK/skipped.txt"
  done
  table "with the kernel tests"
  if [ -s "$WORK/skipped.txt" ]; then
    { echo; echo "tests that found no model here and passed without running:"; cat "$WORK/skipped.txt"; } | tee -a "$OUT/table.txt"
    failed+=("$(wc -l < "$WORK/skipped.txt") test(s) skipped")
  fi
fi

# The whole table last (the reply keeps the log's end).
cat "$OUT/table.txt"
finish 0
