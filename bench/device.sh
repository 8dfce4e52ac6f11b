#!/bin/bash
# bench/device.sh: one device-machine run (BENCH.md, "Real GPU"), under 5 minutes on an H200: the
# kernel tests (and the GPU sampler's), `webllama bench --json` (prefill -p 512; decode -p 8 -n 128
# greedy and --sampled, with and without a repetition penalty, the first with --profile), n = 8
# candidates (`generate --n 8`) and both llama-bench builds of ../shared/peers (pp512, tg128) on
# the same random-weight files (SmolLM2-135M Q4_1 shape, Llama-3.2-1B Q4_K_M shape, written here by `webllama
# random-model`), then one table of ratios and the profile (bench/ratios.py).
# Needs the kit `make device-kit` puts in .dev/ (carried: name .dev in the run's carry); fails when
# a piece is missing. Off the device machine (no nvidia-smi) the .debs and nvidia-smi are skipped and
# llama-bench is let onto CPU adapters (lavapipe).
# QUICK=1: small sizes (-p 32, -n 8, one run each, the SmolLM2 shape) for a check on lavapipe.
# TESTS=0 skips the kernel tests; MODELS="smol l1b" picks the shapes. Logs and JSON go to $OUT.
set -u -o pipefail
cd "$(dirname "$0")/.."
KIT=${KIT:-.dev}
OUT=${OUT:-/tmp/webllama-device-out}
WORK=${WORK:-/tmp/webllama-device}
if [ "${QUICK:-0}" = 1 ]; then
  P=32; N=8; R=1; REPS=1; MODELS=${MODELS:-smol}; TEST_S=300 # lavapipe runs the attention tests for ~2 minutes
else
  P=512; N=128; R=5; REPS=3; MODELS=${MODELS:-smol l1b}
fi
mkdir -p "$OUT" "$WORK" "$WORK/lib"
exec > >(tee "$OUT/device.log") 2>&1
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
fail() { echo "device.sh: FAILED: $*"; exit 1; }
step() { echo "== [$SECONDS s] $*"; }
failed=()

on_device=0
[ -d /usr/local/nvidia/bin ] && export PATH=$PATH:/usr/local/nvidia/bin
if command -v nvidia-smi >/dev/null 2>&1 || [ -d /usr/local/nvidia ]; then on_device=1; fi
for f in webllama.xz kernels.xz attention.xz sampler.xz smollm2.hdr.xz llama3.hdr.xz llama-bench-vulkan.xz \
  llama-bench-vulkan-2026-10.xz lib/libgomp.so.1; do
  [ -s "$KIT/$f" ] || fail "$KIT/$f is missing: run make device-kit here and carry .dev"
done
command -v python3 >/dev/null || fail "no python3 (ratios.py and the unpacking need it)"
unxz_to() { python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }

step "unpacking the kit"
for f in webllama kernels attention sampler llama-bench-vulkan llama-bench-vulkan-2026-10; do
  unxz_to "$KIT/$f.xz" "$WORK/$f" && chmod +x "$WORK/$f" || fail "unpacking $KIT/$f.xz"
done
for f in smollm2.hdr llama3.hdr; do unxz_to "$KIT/$f.xz" "$WORK/$f" || fail "unpacking $KIT/$f.xz"; done
cp "$KIT"/lib/*.so* "$WORK/lib/"
if [ $on_device = 1 ]; then
  ls "$KIT"/gl/*.deb >/dev/null 2>&1 || fail "$KIT/gl has no .debs (the Vulkan loader the NVIDIA ICD needs): make device-kit"
  for f in "$KIT"/gl/*.deb; do dpkg -x "$f" /; done; ldconfig
  icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f $icd ] && export VK_DRIVER_FILES=$icd
  nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv
  gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
else
  echo "not on the device machine (no nvidia-smi): skipping the .debs and nvidia-smi; llama-bench may use CPU adapters"
  export GGML_VK_VISIBLE_DEVICES=${GGML_VK_VISIBLE_DEVICES:-0}
  gpu=""
fi
# The newer llama-bench needs libssl.so.3 / libcrypto.so.3: the carried ones where the system lacks them.
if ! ldconfig -p | grep -q 'libssl.so.3 '; then
  [ -s "$KIT/lib/ssl/libssl.so.3" ] || fail "no libssl.so.3 here and none in $KIT/lib/ssl"
  cp "$KIT"/lib/ssl/* "$WORK/lib/"
fi
W=$WORK/webllama
LIBS="LD_LIBRARY_PATH=$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

step "random-weight models"
for m in $MODELS; do
  case $m in
    smol) $W random-model --like "$WORK/smollm2.hdr" --out "$WORK/smol.gguf" ;;
    l1b) $W random-model --like "$WORK/llama3.hdr" --shape llama-3.2-1b --out "$WORK/l1b.gguf" ;;
    *) fail "unknown model $m (smol or l1b)" ;;
  esac || fail "random-model $m"
done

if [ "${TESTS:-1}" = 1 ]; then
  for t in kernels attention sampler; do
    step "kernel tests: $t (every kernel x type x layout vs reference.rs)"
    timeout ${TEST_S:-120} "$WORK/$t" --test-threads 4 > "$WORK/$t.log" 2>&1
    rc=$?; tail -3 "$WORK/$t.log"
    [ $rc = 0 ] || { grep -E "^test .* FAILED|panicked" "$WORK/$t.log" | head -20; failed+=("$t tests (rc $rc)"); }
  done
fi

for m in $MODELS; do
  for i in $(seq 1 $REPS); do
    step "$m: webllama bench -p $P (prefill), -p 8 -n $N (decode$([ $i = 1 ] && echo ', with --profile')), run $i"
    timeout 120 $W bench --model "$WORK/$m.gguf" -p $P -n 4 --json > "$WORK/$m.prefill.$i.json" || failed+=("webllama $m prefill $i")
    prof=$([ $i = 1 ] && echo --profile)
    timeout 120 $W bench --model "$WORK/$m.gguf" -p 8 -n $N --json --sampled $prof > "$WORK/$m.decode.$i.json" || failed+=("webllama $m decode $i")
    python3 -c 'import json, sys; a, b = (json.load(open(f)) for f in sys.argv[1:]); print("  prefill %.1f tok/s, decode %.1f tok/s on %s, layout %s" % (a["prefill_tok_s"], b["decode_tok_s"], b["adapter"], b["layout"]))' \
      "$WORK/$m.prefill.$i.json" "$WORK/$m.decode.$i.json"
  done
  # Variants whose speed here decides a Layout default (ratios.py prints each against the default):
  # prefill with f32 tiles in workgroup memory (the default stages f16 where the device has
  # shader-f16: Layout::f16_tiles; its tiles also step 32 columns, f32 tiles 16 in the large one);
  # prefill with f16 tiles stepping as f32 tiles do (Layout::f16_k32); prefill with the products
  # in f16 within each K step, as llama.cpp's f16 accumulators (off by default: an NMSE of 1.5e-6
  # against reference.rs, over the kernel tests' 1e-6; Layout::f16_products); prefill with the
  # largest tile no wider than the batch, as llama.cpp chooses (the default takes the largest that
  # gives 128 workgroups: Layout::matmul_min_workgroups); decode with the 8-value row walk for every type (the default
  # walks both runs of Q4_K's and the like's quant words, 16 values a lane: Layout::paired_walk);
  # decode with attention's splits merged by its combine dispatch (the default merges them in Wo's
  # activation loader, one dispatch a layer fewer, up to kernels::gpu::combine_in_wo_splits x 64
  # positions: 256 for SmolLM2, 128 for the 1B shape: Layout::combine_in_wo).
  for v in "prefill-f32-tiles|WEBLLAMA_F16=0" "prefill-16-column-steps|WEBLLAMA_F16_K32=0" \
    "prefill-f16-products|WEBLLAMA_F16_PRODUCTS=1" \
    "prefill-largest-tiles|WEBLLAMA_MATMUL_MIN_WORKGROUPS=0" \
    "decode-8-value-walk|WEBLLAMA_PAIRS=0" "decode-combine-dispatch|WEBLLAMA_COMBINE_IN_WO=0"; do
    name=${v%%|*}; env=${v#*|}
    case $name in prefill-*) args="-p $P -n 4" ;; *) args="-p 8 -n $N" ;; esac
    step "$m: webllama bench $args with $env"
    timeout 120 env $env $W bench --model "$WORK/$m.gguf" $args --json > "$WORK/$m.$name.json" \
      || failed+=("webllama $m $name")
  done
  # n = 8 candidates sampled side by side (chained from their second step): tok/s together.
  step "$m: webllama generate --n 8, 64 tokens each"
  timeout 60 $W generate --model "$WORK/$m.gguf" --prompt "Once upon a time," --n 8 --max-tokens 64 \
    --temperature 1 --ignore-eos 2>&1 | tail -1 | tee "$WORK/$m.candidates.txt" || failed+=("webllama $m candidates")
  for b in 2026-10 b4747; do
    bin=$WORK/llama-bench-vulkan$([ $b = 2026-10 ] && echo -2026-10)
    step "$m: llama.cpp $b llama-bench -p $P -n $N -r $R"
    if timeout 150 env "$LIBS" "$bin" -m "$WORK/$m.gguf" -ngl 99 -p $P -n $N -r $R -o json > "$WORK/$m.llama-$b.json" 2> "$WORK/$m.llama-$b.err"; then
      python3 -c 'import json, sys; [print("  n_prompt %d n_gen %d: %.1f ± %.1f tok/s" % (r["n_prompt"], r["n_gen"], r["avg_ts"], r["stddev_ts"])) for r in json.load(open(sys.argv[1]))]' "$WORK/$m.llama-$b.json"
    else
      tail -5 "$WORK/$m.llama-$b.err"; failed+=("llama-bench $b on $m")
    fi
  done
done

step "the table"
python3 bench/ratios.py --dir "$WORK" --models "$MODELS" --prompt $P --gen $N --gpu "$gpu" | tee "$OUT/table.txt"
tar -czf "$OUT/results.tar.gz" -C "$WORK" $(cd "$WORK" && ls *.json *.err *.log 2>/dev/null)
step "done"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}"
  exit 1
fi
