// Hostile GGUF files in the page (headless Chromium), as the CLI gets them in tests/gguf.rs: a
// SentencePiece vocabulary whose merges would explode, chat templates that loop, indent or pad
// without end (and one that doubles a string until the wasm traps: an EngineCrashedError, the
// same for the next request), millions of tokens for a 32-row embedding, a header over the cap,
// overlapping tensors, and a header that declares a 4 GB model served chunked (no Content-Length)
// with only 8 MB of data: each gets a named error in under 30 s with the worker's wasm memory
// under 2 GB. 48 MiB of U8 metadata loads in well under 400 MB of wasm memory (the old parse kept
// a 32-byte value per byte). The page loads a good model afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { modelsDir, startServer, launch, openPage } from './harness.mjs';
import { startFaultServer } from './fault_server.mjs';
import { gguf, tinyLlama } from './gguf_writer.mjs';

let server;
let faults;
let context;
let page;

function spoil(edit, options) {
  const { metadata, tensors } = tinyLlama();
  edit(metadata, tensors);
  return gguf(metadata, tensors, options);
}

function hostileFiles(dir) {
  const set = (metadata, key, type, value) => {
    const i = metadata.findIndex(([k]) => k === key);
    if (i >= 0) metadata.splice(i, 1);
    metadata.push([key, type, value]);
  };
  const files = {
    'spm-bomb': spoil((m, t) => {
      const tokens = ['<unk>', '<s>', '</s>', ...Array.from({ length: 3000 }, (_, k) => 'a'.repeat(k + 1))];
      set(m, 'tokenizer.ggml.model', 'str', 'llama');
      set(m, 'tokenizer.ggml.tokens', 'arr_str', tokens);
      set(m, 'tokenizer.ggml.scores', 'arr_f32', tokens.map(() => 0));
      set(m, 'tokenizer.ggml.token_type', 'arr_i32', tokens.map(() => 1));
      t[0] = ['token_embd.weight', [64, tokens.length], 8, (tokens.length * 64 / 32) * 34];
    }),
    'template-loops': spoil((m) => set(m, 'tokenizer.chat_template', 'str', '{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}')),
    'template-indent': spoil((m) => set(m, 'tokenizer.chat_template', 'str', '{{ messages | tojson(indent=1000000000) }}')),
    'template-width': spoil((m) => set(m, 'tokenizer.chat_template', 'str', '{{ "{:>3000000000}".format("a") }}')),
    // A string doubled 40 times: no limit of minijinja's stops it, so the wasm traps.
    'template-doubling': spoil((m) => set(m, 'tokenizer.chat_template', 'str', '{% set ns = namespace(s="ab") %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}')),
    // A sequence of four billion items: a filter that walks it is refused; `in` cannot be, and runs
    // for minutes: in a render, unload() ends that worker after its grace; with constants only,
    // minijinja folds it while it compiles the template, at load, which the load's signal cancels.
    'template-walk': spoil((m) => set(m, 'tokenizer.chat_template', 'str', '{{ ([0] * 4000000000) | list | length }}')),
    'template-stuck': spoil((m) => set(m, 'tokenizer.chat_template', 'str', '{% if messages[0].content in [0] * 4000000000 %}x{% endif %}')),
    'template-fold': spoil((m) => set(m, 'tokenizer.chat_template', 'str', '{% if 1 in [0] * 4000000000 %}x{% endif %}')),
    'u8-blob': spoil((m) => { for (const k of ['a', 'b', 'c']) m.push([`general.blob.${k}`, 'arr_u8', Buffer.alloc(16 << 20, 7)]); }),
    'many-tokens': spoil((m) => set(m, 'tokenizer.ggml.tokens', 'arr_str', new Array(3_000_000).fill(''))),
    'huge-header': spoil((m) => { const big = 'x'.repeat(12 << 20); for (let i = 0; i < 6; i++) m.push([`general.big${i}`, 'str', big]); }),
    // output_norm's data declared on top of token_embd's.
    'overlap': spoil((m, t) => { t[1] = ['output_norm.weight', [64], 0, 256, 0]; }),
    'giant': spoil((m, t) => {
      // Declares width 4096 and a 1M-token vocabulary and embedding (4.3 GB of Q8_0), and every
      // other tensor at that width; the file ends 32 MiB in (the header is ~19 MB of it).
      const [d, f, v, kv] = [4096, 14336, 1_000_000, 1024];
      const q8 = (rows, cols) => (rows * cols / 32) * 34;
      set(m, 'llama.embedding_length', 'u32', d);
      set(m, 'llama.feed_forward_length', 'u32', f);
      set(m, 'llama.attention.head_count', 'u32', 32);
      set(m, 'llama.attention.head_count_kv', 'u32', 8);
      const tokens = Array.from({ length: v }, (_, i) => `t${i}`);
      set(m, 'tokenizer.ggml.tokens', 'arr_str', tokens);
      set(m, 'tokenizer.ggml.token_type', 'arr_i32', tokens.map(() => 1));
      t.splice(0, t.length,
        ['token_embd.weight', [d, v], 8, q8(v, d)],
        ['output_norm.weight', [d], 0, 4 * d],
        ['blk.0.attn_norm.weight', [d], 0, 4 * d],
        ['blk.0.attn_q.weight', [d, d], 8, q8(d, d)],
        ['blk.0.attn_k.weight', [d, kv], 8, q8(kv, d)],
        ['blk.0.attn_v.weight', [d, kv], 8, q8(kv, d)],
        ['blk.0.attn_output.weight', [d, d], 8, q8(d, d)],
        ['blk.0.ffn_norm.weight', [d], 0, 4 * d],
        ['blk.0.ffn_gate.weight', [d, f], 8, q8(f, d)],
        ['blk.0.ffn_up.weight', [d, f], 8, q8(f, d)],
        ['blk.0.ffn_down.weight', [f, d], 8, q8(d, f)]);
    }, { cut: 32 << 20 }),
  };
  for (const [name, bytes] of Object.entries(files)) writeFileSync(join(dir, `${name}.gguf`), bytes);
  return Object.keys(files);
}

let names;
before(async () => {
  const dir = modelsDir();
  names = hostileFiles(dir);
  server = await startServer(dir);
  faults = await startFaultServer(server.url, dir);
  context = await launch();
  page = await openPage(context, faults.url);
});

after(async () => {
  await context?.close();
  faults?.stop();
  server?.stop();
});

test('hostile GGUF files get a named error in the page, fast and in bounded memory', { timeout: 600000 }, async () => {
  const r = await page.evaluate(async (names) => {
    const { createEngine } = await import('./webllama.js');
    const out = {};
    for (const name of names) {
      const t0 = performance.now();
      try {
        // The giant one comes chunked, without a Content-Length.
        const model = name === 'giant' ? `fault/chunked/${name}.gguf` : `models/${name}.gguf`;
        const e = await createEngine({ model, ctx: 64, signal: name === 'template-fold' ? AbortSignal.timeout(2000) : undefined });
        const chat = () => e.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 1 });
        if (name === 'template-stuck') {
          const stuck = chat().then(() => 'none', (err) => `${err.name}: ${err.message}`);
          await new Promise((ok) => setTimeout(ok, 500));
          const t1 = performance.now();
          await e.unload();
          out[name] = { error: await stuck, unloadMs: performance.now() - t1, wasm: null };
          out[name].ms = performance.now() - t0;
          continue;
        }
        try {
          await chat();
          out[name] = { error: 'none', wasm: e.stats.wasm_memory_bytes };
        } catch (err) {
          // The engine answers the next request too: with the same error where it crashed.
          const again = await chat().then(() => 'none', (e2) => `${e2.name}: ${e2.message}`);
          out[name] = { error: `${err.name}: ${err.message}`, again, wasm: err.name === 'EngineCrashedError' ? null : err.wasmMemoryBytes ?? null };
        } finally {
          await e.unload();
        }
      } catch (err) {
        out[name] = { error: `${err.name}: ${err.message}`, wasm: err.wasmMemoryBytes ?? null };
      }
      out[name].ms = performance.now() - t0;
    }
    return out;
  }, names);
  console.log(JSON.stringify(r, null, 1));
  const want = {
    'spm-bomb': /^TokenizerError: .*bytes long/,
    'template-loops': /^TemplateError: .*fuel/,
    'template-indent': /^TemplateError: .*indent/,
    'template-width': /^TemplateError: .*str\.format width 3000000000/,
    'template-walk': /^TemplateError: .*list would walk over 16777216 items and bytes/,
    'template-stuck': /^InvalidRequestError: the engine was unloaded/,
    'template-fold': /^AbortError: the model load was cancelled/,
    'template-doubling': /^EngineCrashedError: the engine crashed \(.*\); its model and state are gone: create a new engine/s,
    // Loads: its metadata is harmless once it costs what it takes in the file.
    'u8-blob': /^none$/,
    'many-tokens': /^UnsupportedModelError: .*3000000 tokens/,
    'huge-header': /^GgufError: .*header size/,
    'overlap': /^GgufError: .*overlaps/,
    'giant': /^GgufError: .*truncated.*token_embd/,
  };
  assert.equal(r['template-doubling'].again, r['template-doubling'].error, 'a crashed engine says so again, not "a generation is already running"');
  assert.match(r['template-width'].again, want['template-width'], 'a template error leaves the engine working');
  for (const name of names) {
    assert.match(r[name].error, want[name], name);
    assert.ok(r[name].ms < 30000, `${name}: ${r[name].ms} ms`);
    if (r[name].wasm !== null) assert.ok(r[name].wasm < 2 ** 31, `${name}: ${r[name].wasm} bytes of wasm memory`);
  }
  // unload() ended the stuck worker after its 10 s of grace, not minutes later.
  assert.ok(r['template-stuck'].unloadMs < 15000, `template-stuck: unload took ${r['template-stuck'].unloadMs} ms`);
  // The U8 metadata costs about its bytes (48 MiB), not a value each.
  assert.ok(r['u8-blob'].wasm < 400e6, `u8-blob: ${r['u8-blob'].wasm} bytes of wasm memory`);
  // And a good model loads afterwards.
  const ok = await page.evaluate(async () => {
    const { createEngine } = await import('./webllama.js');
    const e = await createEngine({ model: 'models/tiny-llama2-Q3_K_M.gguf' });
    const c = await e.completions.create({ prompt: 'Once upon a time,', max_tokens: 3, temperature: 0 });
    await e.unload();
    return c.choices[0].text.length > 0;
  });
  assert.ok(ok);
});
