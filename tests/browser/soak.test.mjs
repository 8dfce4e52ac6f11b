// Soak: 50 chat turns and 100 completions (n = 1 and n = 3 candidates) on one engine in headless
// Chromium, checking that GPU buffers (every buffer webllama creates is counted) and wasm memory stay
// flat after the first requests. The tiny LLaMA-2 model in Q8_0 keeps it quick; the default model
// when ../shared/fixtures is absent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { modelsDir, startServer, launch, openPage, MODEL_NAME, TINY, TINY_FAST } from './harness.mjs';

const FILE = existsSync(join(TINY, TINY_FAST)) ? TINY_FAST : MODEL_NAME;
let server;
let context;
let page;

before(async () => {
  server = await startServer(modelsDir());
  context = await launch();
  page = await openPage(context, server.url);
});

after(async () => {
  await context?.close();
  server?.stop();
});

test('50 chat turns and 100 completions without GPU-buffer or wasm-memory growth', { timeout: 900000 }, async () => {
  const r = await page.evaluate(async (file) => {
    const { createEngine } = await import('./webllama.js');
    const engine = await createEngine({ model: `models/${file}`, ctx: 256 });
    const samples = [];
    const note = (label) => samples.push({ label, buffers: engine.stats.gpu_buffers_created, wasm: engine.stats.wasm_memory_bytes });
    let messages = [];
    for (let turn = 0; turn < 50; turn++) {
      messages.push({ role: 'user', content: `Turn ${turn}: tell me one word about the sea.` });
      const c = await engine.chat.completions.create({ messages, max_tokens: 2, temperature: 0.7, seed: turn, truncate: 'oldest' });
      messages.push({ role: 'assistant', content: c.choices[0].message.content });
      if (messages.length > 16) messages = messages.slice(-8);
      if (turn === 4 || turn === 49) note(`chat turn ${turn + 1}`);
    }
    for (let i = 0; i < 100; i++) {
      const n = i % 2 ? 3 : 1;
      await engine.completions.create({ prompt: `Completion ${i}: the weather is`, max_tokens: 2, n, temperature: 0.8, seed: i });
      if (i === 4 || i === 99) note(`completion ${i + 1}`);
    }
    await engine.unload();
    return samples;
  }, FILE);
  console.log(r.map((s) => `${s.label}: ${s.buffers} GPU buffers created, wasm memory ${(s.wasm / 1e6).toFixed(2)} MB`).join('\n'));
  const [chat5, chat50, comp5, comp100] = r;
  assert.equal(chat50.buffers, chat5.buffers, 'no GPU buffers made during chat turns 6..50');
  assert.equal(comp100.buffers, comp5.buffers, 'no GPU buffers made during completions 6..100');
  assert.equal(chat50.wasm, chat5.wasm, 'wasm memory flat over chat turns 6..50');
  assert.equal(comp100.wasm, comp5.wasm, 'wasm memory flat over completions 6..100');
});
