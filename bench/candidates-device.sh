for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
W=.dev/webllama
$W random-model --like .dev/smollm2.hdr --out /tmp/smol.gguf 2>/dev/null
$W random-model --like .dev/llama3.hdr --shape llama-3.2-1b --out /tmp/l1b.gguf 2>/dev/null
for m in smol l1b; do for n in 1 5 8; do
  echo "== $m n=$n"; timeout 60 $W generate --model /tmp/$m.gguf --prompt "The stock market saw a significant increase today as major tech companies reported higher than expected earnings." --max-tokens 64 --ignore-eos --n $n --json 2>&1 | python3 -c "import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print({k: d[k] for k in d if k in ('decode_tok_s','prefill_tok_s','weight_passes','adapter')})"
done; done
