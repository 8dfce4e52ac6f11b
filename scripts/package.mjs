#!/usr/bin/env node
// Builds the npm package into a folder (default dist/): package.json (version from Cargo.toml), the
// API module, the worker and the modules it imports, the wasm and its wasm-bindgen glue (from
// www/pkg, which `make wasm` builds), the TypeScript declarations, README and licences.
// `npm pack ./dist` then makes the tarball.
//
//   node scripts/package.mjs [OUT_DIR]
//
// The files keep www/'s layout (worker.js beside webllama.js, the wasm in pkg/), so that every
// new URL(..., import.meta.url) in them finds its neighbour wherever the folder is served from.
import { readFileSync, writeFileSync, mkdirSync, rmSync, copyFileSync, existsSync, statSync } from 'node:fs';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = resolve(process.argv[2] ?? join(ROOT, 'dist'));

const cargo = readFileSync(join(ROOT, 'Cargo.toml'), 'utf8');
const field = (name) => new RegExp(`^${name}\\s*=\\s*"([^"]*)"`, 'm').exec(cargo.slice(cargo.indexOf('[package]')))?.[1];
const version = field('version');
if (!version) throw new Error('no version in Cargo.toml [package]');

// [from (relative to the repo), to (relative to the package)]
const FILES = [
  ['www/webllama.js', 'webllama.js'],
  ['www/webllama.d.ts', 'webllama.d.ts'],
  ['www/worker.js', 'worker.js'],
  ['www/protocol.js', 'protocol.js'],
  ['www/download.js', 'download.js'],
  ['www/model_store.js', 'model_store.js'],
  ['www/pkg/webllama.js', 'pkg/webllama.js'],
  ['www/pkg/webllama_bg.wasm', 'pkg/webllama_bg.wasm'],
  ['package/README.md', 'README.md'],
  ['package/LICENSE-MIT', 'LICENSE-MIT'],
  ['package/LICENSE-APACHE', 'LICENSE-APACHE'],
];
const missing = FILES.filter(([from]) => !existsSync(join(ROOT, from))).map(([from]) => from);
if (missing.length) {
  console.error(`package: missing ${missing.join(', ')}${missing.some((f) => f.startsWith('www/pkg/')) ? ' (run make wasm)' : ''}`);
  process.exit(1);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'pkg'), { recursive: true });
for (const [from, to] of FILES) copyFileSync(join(ROOT, from), join(out, to));
// The wasm without its name section (function names for stack traces: 0.75 MB, ~190 KB gzipped,
// of what every page downloads; a crash's message keeps its text and source location).
const wasmPath = join(out, 'pkg', 'webllama_bg.wasm');
writeFileSync(wasmPath, withoutNameSection(readFileSync(wasmPath)));

// `wasm` (a module's bytes) without its custom section "name".
function withoutNameSection(wasm) {
  const leb = (at) => {
    let value = 0;
    let shift = 0;
    for (;;) {
      const b = wasm[at++];
      value += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (b < 0x80) return [value, at];
    }
  };
  const kept = [wasm.subarray(0, 8)];
  for (let at = 8; at < wasm.length;) {
    const start = at;
    const id = wasm[at];
    const [size, body] = leb(at + 1);
    at = body + size;
    if (id === 0) {
      const [len, name] = leb(body);
      if (wasm.subarray(name, name + len).toString('utf8') === 'name') continue;
    }
    kept.push(wasm.subarray(start, at));
  }
  return Buffer.concat(kept);
}

const pkg = {
  name: 'webllama',
  version,
  description: field('description') ?? 'A LLaMA-family language model in the browser tab, on WebGPU',
  license: field('license') ?? 'MIT OR Apache-2.0',
  type: 'module',
  main: './webllama.js',
  module: './webllama.js',
  types: './webllama.d.ts',
  exports: {
    '.': { types: './webllama.d.ts', default: './webllama.js' },
    './webllama.js': { types: './webllama.d.ts', default: './webllama.js' },
    './worker': './worker.js',
    './worker.js': './worker.js',
    './wasm': './pkg/webllama_bg.wasm',
    './pkg/webllama_bg.wasm': './pkg/webllama_bg.wasm',
    './package.json': './package.json',
  },
  files: FILES.map(([, to]) => to),
  // The worker and the wasm are loaded at run time, not imported: keep bundlers from tree-shaking
  // or pre-bundling them away.
  sideEffects: ['./worker.js'],
  keywords: ['llm', 'llama', 'webgpu', 'wasm', 'gguf', 'openai', 'browser'],
};
writeFileSync(join(out, 'package.json'), `${JSON.stringify(pkg, null, 2)}\n`);

const size = (f) => statSync(join(out, f)).size;
const js = ['webllama.js', 'worker.js', 'protocol.js', 'download.js', 'model_store.js', 'pkg/webllama.js'].reduce((a, f) => a + size(f), 0);
console.log(`package webllama@${version} in ${out}: wasm ${size('pkg/webllama_bg.wasm')} bytes, JS ${js} bytes, types ${size('webllama.d.ts')} bytes`);
