// Side by side on this machine, same file: llama.cpp through node-llama-cpp 3.22.1 (prebuilt; its
// Vulkan backend on whatever Vulkan device there is, e.g. lavapipe, and its CPU backend with 2
// threads) and `webllama bench`. Prints a markdown table. Run: make bench-peers (not in CI).
// Usage: node bench/peers.mjs MODEL.gguf [prompt_tokens=128] [decode_tokens=32]
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

const [model, pArg, nArg] = process.argv.slice(2);
const P = Number(pArg ?? 128);
const N = Number(nArg ?? 32);
if (!model) throw new Error('usage: node bench/peers.mjs MODEL.gguf [prompt_tokens] [decode_tokens]');
// ggml-vulkan skips CPU-type Vulkan devices (lavapipe) unless they are named.
process.env.GGML_VK_VISIBLE_DEVICES ??= '0';
// lavapipe's compute threads: webllama's CLI sets two per core unless told otherwise (measured
// faster for both engines); the same setting for llama.cpp here, and for the webllama run below.
process.env.LP_NUM_THREADS ??= String(2 * availableParallelism());
const { getLlama } = await import('node-llama-cpp');

async function llamaCpp(gpu) {
  const llama = await getLlama({ gpu, build: 'never', skipDownload: true });
  const m = await llama.loadModel({ modelPath: model, gpuLayers: gpu ? 'max' : 0 });
  const ctx = await m.createContext({ contextSize: P + N + 16, batchSize: 512, threads: 2 });
  const seq = ctx.getSequence();
  // The same kind of prompt webllama bench uses: ordinary ids cycling through the vocabulary.
  const prompt = Array.from({ length: P }, (_, i) => 100 + ((i * 37) % 19900));
  // Warm up (pipelines compiled, buffers made), as webllama bench does before it times anything;
  // a cold first prompt measured 5.2 tok/s on lavapipe where a warm one gives 13.
  await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 16));
  await seq.clearHistory();
  let t = performance.now();
  await seq.evaluateWithoutGeneratingNewTokens(prompt.slice(0, P - 1));
  let n = 0;
  let prefillS = 0;
  let t1 = 0;
  for await (const _tok of seq.evaluate([prompt[P - 1]], { temperature: 0 })) {
    if (n === 0) {
      prefillS = (performance.now() - t) / 1000;
      t1 = performance.now();
    }
    if (++n > N) break;
  }
  const decodeS = (performance.now() - t1) / 1000;
  const name = gpu ? `llama.cpp Vulkan (${llama.getGpuDeviceNames ? (await llama.getGpuDeviceNames()).join(', ') : 'vulkan'})` : 'llama.cpp CPU, 2 threads';
  await ctx.dispose();
  await m.dispose();
  return { name, prefill: P / prefillS, decode: N / decodeS };
}

const ours = JSON.parse(execFileSync('target/release/webllama', ['bench', '--model', model, '-p', String(P), '-n', String(N), '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
const rows = [{ name: `webllama (${ours.adapter})`, prefill: ours.prefill_tok_s, decode: ours.decode_tok_s }];
for (const gpu of ['vulkan', false]) {
  try {
    rows.push(await llamaCpp(gpu));
  } catch (e) {
    rows.push({ name: `llama.cpp ${gpu || 'CPU'}: ${e.message}`, prefill: NaN, decode: NaN });
  }
}
console.log(`\n${model}, prompt ${P} tokens, decode ${N} tokens\n`);
console.log('| engine | prefill tok/s | decode tok/s |\n|---|---:|---:|');
for (const r of rows) console.log(`| ${r.name} | ${r.prefill.toFixed(2)} | ${r.decode.toFixed(2)} |`);
