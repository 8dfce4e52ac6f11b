#!/bin/bash
# One device-machine run (see BENCH.md): the kernel tests and the bench on a real GPU, for the default
# model's shape and a Llama-3.2-1B-shaped Q4_K_M model, both written there with random weights
# (`webllama random-model`; speed does not depend on the values). Expects .dev/ (stripped webllama
# and kernels- and attention-test binaries, the two GGUF headers: make device-kit) and .gl/ (the Vulkan loader and
# GL dispatch .debs the NVIDIA ICD needs). QUICK=1: the kernel tests, one bench per model and a profile.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f $icd ] && export VK_DRIVER_FILES=$icd
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,memory.total --format=csv
W=.dev/webllama
$W random-model --like .dev/smollm2.hdr --out /tmp/smol.gguf
$W random-model --like .dev/llama3.hdr --shape llama-3.2-1b --out /tmp/l1b.gguf
echo "== kernel tests (every kernel x type x layout vs reference.rs)"
timeout 150 .dev/kernels --test-threads 4 2>&1 | tail -4
timeout 150 .dev/attention --test-threads 4 2>&1 | tail -4
for m in smol l1b; do
  echo "== $m"
  timeout 120 $W bench --model /tmp/$m.gguf -p 512 -n 256 --json > "$OUT/$m.json"; cat "$OUT/$m.json"; echo
  if [ "${QUICK:-0}" = 1 ]; then
    echo "-- $m profile"; timeout 60 $W bench --model /tmp/$m.gguf -p 16 -n 16 --profile 2>&1 | tail -9
    continue
  fi
  timeout 120 $W bench --model /tmp/$m.gguf -p 2048 -n 128 | tee "$OUT/$m.txt"
  echo "-- $m token by token"; timeout 120 $W bench --model /tmp/$m.gguf -p 512 -n 16 --token-by-token | grep prefill
  echo "-- $m unfused"; WEBLLAMA_NO_FUSE=1 timeout 120 $W bench --model /tmp/$m.gguf -p 512 -n 256 | grep -E "decode|per token"
  echo "-- $m profile"; timeout 120 $W bench --model /tmp/$m.gguf -p 16 -n 16 --profile 2>&1 | tail -9
done
