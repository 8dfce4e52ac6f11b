// Shared by the browser tests: the `webllama serve` process and Debian's headless Chromium with its
// software WebGPU adapter (SwiftShader).
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, symlinkSync, writeFileSync, openSync, readSync, closeSync, mkdirSync, existsSync, rmSync } from 'node:fs';
import { tmpdir, homedir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'target', 'release', 'webllama');
export const MODEL_NAME = 'SmolLM2-135M-Instruct.Q4_1.gguf';
export const MODEL_PATH = join(process.env.WEBLLAMA_CACHE ?? join(homedir(), '.cache', 'webllama'), 'models', MODEL_NAME);
export const SHOTS = join(ROOT, 'target', 'browser');
// The tiny K-quant models of ../shared/fixtures (absent outside the project's checkout: tests skip loudly).
export const TINY = join(ROOT, '..', 'shared', 'fixtures', 'tiny');
export const TINY_MODELS = ['tiny-llama2-Q3_K_M.gguf', 'tiny-llama3-Q4_K_M.gguf'];
// The tiny LLaMA-2 in Q8_0: the quickest real model on SwiftShader (K-quant blocks cost it 2-3x),
// for tests that need many requests rather than a given quant type.
export const TINY_FAST = 'tiny-llama2-Q8_0.gguf';
// The fixtures modelsDir links (each one required on CI).
const TINY_LINKED = [...TINY_MODELS, TINY_FAST];

// A models folder with the default model, a truncated copy of it, and a file that is not a model.
// On CI (CI set) the tiny models of ../shared/fixtures must be there too: no test may skip quietly.
export function modelsDir() {
  if (!existsSync(MODEL_PATH)) throw new Error(`the default model is missing at ${MODEL_PATH}: run make model`);
  const missing = TINY_LINKED.filter((t) => !existsSync(join(TINY, t)));
  if (process.env.CI && missing.length) throw new Error(`${missing.join(', ')} missing from ${TINY} on CI`);
  const dir = mkdtempSync(join(tmpdir(), 'webllama-models-'));
  // Gone when the test file's process ends (its truncated copy and the tests' own files with it).
  process.on('exit', () => removeQuietly(dir));
  symlinkSync(MODEL_PATH, join(dir, MODEL_NAME));
  const head = Buffer.alloc(5 << 20);
  const fd = openSync(MODEL_PATH, 'r');
  readSync(fd, head, 0, head.length, 0);
  closeSync(fd);
  writeFileSync(join(dir, 'truncated.gguf'), head);
  writeFileSync(join(dir, 'not-a-model.gguf'), '<html>this is a web page, not a model</html>\n'.repeat(100));
  for (const t of TINY_LINKED) if (existsSync(join(TINY, t))) symlinkSync(join(TINY, t), join(dir, t));
  return dir;
}

// Starts `webllama serve` on a free port; `log` collects the request lines it prints.
export async function startServer(models) {
  const proc = spawn(CLI, ['serve', '--port', '0', '--www', join(ROOT, 'www'), '--models', models], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  let partial = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    // Chunks may end mid-line: keep the unfinished line for the next one.
    const lines = (partial + d).split('\n');
    partial = lines.pop();
    log.push(...lines.filter(Boolean));
  });
  const url = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (m) resolve(m[0]);
    });
    proc.on('exit', (code) => reject(new Error(`webllama serve exited with ${code}: ${out}`)));
    setTimeout(() => reject(new Error('webllama serve did not start')), 10000);
  });
  return { url, log, stop: () => proc.kill() };
}

// Chromium with a fresh profile, removed when the browser closes (it holds the models the page
// stored: hundreds of MB a run), or the one in `userDataDir`, the caller's to remove (a browser
// closed and opened again on the same profile keeps its storage).
export async function launch(userDataDir) {
  const fresh = userDataDir === undefined;
  userDataDir ??= mkdtempSync(join(tmpdir(), 'webllama-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
    viewport: { width: 1100, height: 900 },
  });
  if (fresh) {
    context.on('close', () => removeQuietly(userDataDir));
    process.on('exit', () => removeQuietly(userDataDir));
  }
  return context;
}

// Removes a folder of the tests' own, best effort: a closing browser may still be writing its
// profile (retried), and a cleanup must never fail a test.
function removeQuietly(dir) {
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  } catch (e) {
    console.error(`left ${dir}: ${e.message}`);
  }
}

// A new page of `context` at `url`, with the page's uncaught errors printed.
export async function openPage(context, url) {
  const page = await context.newPage();
  page.on('pageerror', (e) => console.log('page error:', e.message));
  await page.goto(url);
  return page;
}

// The native CLI's greedy answer for one chat message.
export function nativeChat(text, maxTokens = 64) {
  const out = execFileSync(CLI, ['generate', '--model', MODEL_PATH, '--chat', text, '--max-tokens', String(maxTokens), '--json'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return JSON.parse(out).text;
}

// The native CLI's answer for a raw prompt with sampling options (extra CLI args).
export function nativeComplete(prompt, args, model = MODEL_PATH) {
  const out = execFileSync(CLI, ['generate', '--model', model, '--prompt', prompt, '--json', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return JSON.parse(out).text;
}

export function screenshotPath(name) {
  mkdirSync(SHOTS, { recursive: true });
  return join(SHOTS, name);
}
