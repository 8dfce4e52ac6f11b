// The npm package (scripts/package.mjs, `make package`): its package.json, `npm pack` installed into
// a fresh folder, the TypeScript declarations checked by tsc on examples/typed (against www/ and
// against the installed package), and in headless Chromium, each served by Python's plain static
// file server (no Range, no CSP, no server feature): examples/static-site importing the package
// from a relative path, examples/vite-app built by Vite from the tarball; both load the default
// model and stream a reply, a relative model URL meaning what it means in the page. Then the
// storage API: list, verify (integrity), delete, clear, with the storage estimate shrinking.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, cpSync, symlinkSync, readFileSync, writeFileSync, existsSync, statSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, MODEL_PATH, MODEL_NAME, TINY, TINY_MODELS, launch, openPage, screenshotPath } from './harness.mjs';

const NODE_BIN = join(ROOT, 'node_modules', '.bin');
let work;
let pkgDir;
let tarball;
let context;
const servers = [];

// `python3 -m http.server` on a free port serving `dir`; `log` has its request lines.
async function staticServer(dir) {
  const proc = spawn('python3', ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => log.push(...d.split('\n').filter(Boolean)));
  const url = await new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /port (\d+)/.exec(out);
      if (m) resolve(`http://127.0.0.1:${m[1]}/`);
    });
    proc.on('exit', (code) => reject(new Error(`python3 -m http.server exited with ${code}: ${out}`)));
    setTimeout(() => reject(new Error('python3 -m http.server did not start')), 10000);
  });
  const server = { url, log, stop: () => proc.kill() };
  servers.push(server);
  return server;
}

// The paths (with status) of the GET requests a Python server logged.
const gets = (log) => log.map((l) => /"GET ([^ ]+) HTTP\/1\.[01]" (\d+)/.exec(l)).filter(Boolean).map((m) => `${m[2]} ${m[1]}`);

function run(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

// A model folder for a static site: the default model (and the tiny ones when there) as symlinks.
function linkModels(siteDir) {
  const models = join(siteDir, 'models');
  mkdirSync(models, { recursive: true });
  symlinkSync(MODEL_PATH, join(models, MODEL_NAME));
  for (const t of TINY_MODELS) if (existsSync(join(TINY, t))) symlinkSync(join(TINY, t), join(models, t));
}

// Loads a static example's page, waits for the model, asks, and returns the streamed reply.
async function askExample(url, name) {
  const page = await openPage(context, url);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.querySelector('#status').dataset.state), null, { timeout: 300000 });
  const status = await page.textContent('#status');
  assert.equal(await page.getAttribute('#status', 'data-state'), 'ready', `${name}: ${status}`);
  await page.click('#send');
  await page.waitForSelector('#reply[data-state="done"]', { timeout: 300000 });
  await page.screenshot({ path: screenshotPath(`package-${name}.png`) });
  const reply = { text: await page.textContent('#reply'), chunks: Number(await page.getAttribute('#reply', 'data-chunks')), status };
  return { page, reply };
}

before(() => {
  if (!existsSync(MODEL_PATH)) throw new Error(`the default model is missing at ${MODEL_PATH}: run make model`);
  work = mkdtempSync(join(tmpdir(), 'webllama-package-'));
  pkgDir = join(work, 'pkg');
  run('node', [join(ROOT, 'scripts', 'package.mjs'), pkgDir]);
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', work, pkgDir]));
  tarball = join(work, packed[0].filename);
});

after(async () => {
  await context?.close();
  for (const s of servers) s.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('make package: package.json, the files it names, and npm pack of it', () => {
  const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8'));
  const cargoVersion = /^version = "([^"]+)"/m.exec(readFileSync(join(ROOT, 'Cargo.toml'), 'utf8'))[1];
  assert.equal(pkg.name, 'webllama');
  assert.equal(pkg.version, cargoVersion, 'the version is Cargo.toml\'s');
  assert.equal(pkg.type, 'module');
  assert.equal(pkg.types, './webllama.d.ts');
  assert.deepEqual(pkg.exports['.'], { types: './webllama.d.ts', default: './webllama.js' });
  assert.equal(pkg.exports['./worker.js'], './worker.js');
  for (const f of pkg.files) assert.ok(existsSync(join(pkgDir, f)), `${f} is in the package`);
  for (const f of ['README.md', 'LICENSE-MIT', 'LICENSE-APACHE', 'pkg/webllama_bg.wasm', 'pkg/webllama.js', 'worker.js', 'protocol.js', 'download.js', 'model_store.js']) {
    assert.ok(pkg.files.includes(f), `files names ${f}`);
  }
  const listed = run('tar', ['tzf', tarball]).split('\n').filter(Boolean).map((f) => f.replace(/^package\//, '')).sort();
  assert.deepEqual(listed, [...pkg.files, 'package.json'].sort(), 'the tarball holds exactly package.json and its files');
  // The worker, the modules it imports and the wasm sit where import.meta.url-relative URLs look.
  const worker = readFileSync(join(pkgDir, 'worker.js'), 'utf8');
  for (const m of worker.matchAll(/from '(\.[^']+)'/g)) assert.ok(existsSync(join(pkgDir, m[1])), `worker.js imports ${m[1]}`);
  assert.match(readFileSync(join(pkgDir, 'webllama.js'), 'utf8'), /new Worker\(new URL\('\.\/worker\.js', import\.meta\.url\), \{ type: 'module' \}\)/, 'the literal form bundlers recognize');
  assert.match(readFileSync(join(pkgDir, 'pkg', 'webllama.js'), 'utf8'), /new URL\('webllama_bg\.wasm', import\.meta\.url\)/);
  // The packaged wasm is www/pkg's without its name section (a valid module: the page tests below
  // load it), and no larger.
  const wasm = readFileSync(join(pkgDir, 'pkg', 'webllama_bg.wasm'));
  const built = readFileSync(join(ROOT, 'www', 'pkg', 'webllama_bg.wasm'));
  assert.ok(WebAssembly.validate(wasm), 'the packaged wasm is a valid module');
  assert.deepEqual(WebAssembly.Module.customSections(new WebAssembly.Module(wasm), 'name'), [], 'no name section');
  assert.ok(wasm.length < built.length, `${wasm.length} bytes, www/pkg's ${built.length}`);
});

test('TypeScript: tsc --noEmit on examples/typed, against www/ and against the installed package', { timeout: 120000 }, () => {
  run(join(NODE_BIN, 'tsc'), ['--noEmit', '-p', join(ROOT, 'examples', 'typed')]);
  // The package installed from its tarball into a fresh folder; its types found through exports.
  const app = join(work, 'typed');
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'typed-check', private: true, type: 'module' }));
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', tarball], { cwd: app });
  cpSync(join(ROOT, 'examples', 'typed', 'main.ts'), join(app, 'main.ts'));
  const tsconfig = JSON.parse(readFileSync(join(ROOT, 'examples', 'typed', 'tsconfig.json'), 'utf8'));
  delete tsconfig.compilerOptions.paths;
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify(tsconfig));
  run(join(NODE_BIN, 'tsc'), ['--noEmit', '-p', app]);
  // And the types do reject what the API refuses: a layout that does not exist, a wrong field type.
  writeFileSync(join(app, 'bad.ts'), "import { createEngine } from 'webllama';\ncreateEngine({ model: 'x', layout: 'npu' });\ncreateEngine({ model: 1 });\n");
  writeFileSync(join(app, 'tsconfig.bad.json'), JSON.stringify({ ...tsconfig, files: ['bad.ts'] }));
  let failed = '';
  try {
    run(join(NODE_BIN, 'tsc'), ['--noEmit', '-p', join(app, 'tsconfig.bad.json')]);
  } catch (e) {
    failed = e.stdout;
  }
  assert.match(failed, /bad\.ts\(2,.*'"npu"' is not assignable/);
  assert.match(failed, /bad\.ts\(3,.*'number' is not assignable/);
});

test('examples/static-site: the package from a relative path on a plain static server; the default model streams a reply', { timeout: 600000 }, async () => {
  const site = join(work, 'static-site');
  mkdirSync(site);
  cpSync(join(ROOT, 'examples', 'static-site', 'index.html'), join(site, 'index.html'));
  cpSync(pkgDir, join(site, 'webllama'), { recursive: true });
  linkModels(site);
  const server = await staticServer(site);
  context = await launch();
  const { page, reply } = await askExample(server.url, 'static-site');
  console.log('static-site:', JSON.stringify(reply));
  assert.ok(reply.text.trim().length > 0, 'a reply');
  assert.ok(reply.chunks > 2, `streamed in chunks (${reply.chunks})`);
  const requests = gets(server.log);
  // './models/…' in the page means /models/…, not /webllama/models/… (beside the worker).
  assert.ok(requests.includes(`200 /models/${MODEL_NAME}`), requests.join('\n'));
  assert.deepEqual(requests.filter((r) => !/^(200|304) /.test(r)).filter((r) => !r.endsWith('/favicon.ico')), [], 'no request failed');
  assert.ok(requests.includes('200 /webllama/pkg/webllama_bg.wasm'), 'the wasm beside the module');
  await page.close();
});

test('storage: list (bytes, when, verified), delete one, clear all; the estimate shrinks; persist', { timeout: 600000 }, async (t) => {
  const server = servers[0];
  assert.ok(server && context, 'runs after the static-site test (its origin holds the default model)');
  const second = TINY_MODELS[0];
  if (!existsSync(join(TINY, second))) {
    if (process.env.CI) throw new Error(`${second} is missing from ${TINY} on CI`);
    console.log(`SKIPPED: the storage test needs ${join(TINY, second)} (../shared/fixtures)`);
    return t.skip(`${second} is missing`);
  }
  const sha = createHash('sha256').update(readFileSync(join(TINY, second))).digest('hex');
  // A page of the same origin (the models folder's listing) to call the API from.
  const page = await openPage(context, `${server.url}models/`);
  const r = await page.evaluate(async ({ model, second, sha }) => {
    const api = await import('/webllama/webllama.js');
    const out = { before: await api.listCachedModels(), est0: await api.storageEstimate() };
    // A second model with integrity and persist: stored, and noted as verified.
    const e = await api.createEngine({ model: `/models/${second}`, integrity: sha, persist: true });
    out.stats = { storage: e.stats.storage, persisted: e.stats.persisted, source: e.stats.source, phases: e.stats.phases };
    await e.unload();
    out.listed = await api.listCachedModels();
    out.est1 = await api.storageEstimate();
    out.deleted = await api.deleteCachedModel(`/models/${model}`);
    out.deletedAgain = await api.deleteCachedModel(`/models/${model}`);
    out.afterDelete = await api.listCachedModels();
    out.est2 = await api.storageEstimate();
    out.cleared = await api.clearCache();
    out.afterClear = await api.listCachedModels();
    out.est3 = await api.storageEstimate();
    out.hf = api.resolveModelUrl('hf:owner/repo/dir/file.gguf@v1.0', { hfBaseUrl: 'http://127.0.0.1:1/hub/' });
    out.hfDefault = api.resolveModelUrl('hf:owner/repo@main/file.gguf');
    try { api.resolveModelUrl('hf:owner/file.gguf'); } catch (err) { out.hfBad = `${err.name}: ${err.message}`; }
    return out;
  }, { model: MODEL_NAME, second, sha });
  console.log('storage:', JSON.stringify(r, null, 1));
  const url = (f) => `${server.url}models/${f}`;
  assert.deepEqual(r.before.map((m) => m.url), [url(MODEL_NAME)], 'the static-site test stored the default model');
  const first = r.before[0];
  assert.equal(first.bytes, statSync(MODEL_PATH).size);
  assert.ok(first.storedAt > Date.now() - 3600e3 && first.storedAt <= Date.now(), `stored just now (${first.storedAt})`);
  assert.equal(first.verified, false, 'loaded without integrity');
  assert.equal(first.storage, 'opfs', 'stored in the Origin Private File System');
  assert.equal(first.complete, true);
  assert.equal(r.stats.storage, 'opfs');
  assert.equal(r.stats.source, 'network');
  assert.equal(typeof r.stats.persisted, 'boolean', 'persist was asked');
  assert.ok(r.stats.phases.download.ms > 0 && r.stats.phases.compile.ms > 0, 'each phase timed');
  const listed = Object.fromEntries(r.listed.map((m) => [m.url, m]));
  assert.equal(r.listed.length, 2);
  assert.equal(listed[url(second)].verified, true, 'verified with integrity');
  assert.equal(listed[url(second)].sha256, sha);
  assert.ok(r.est1.usage > 0 && r.est1.quota > r.est1.usage, `an estimate (${r.est1.usage} of ${r.est1.quota})`);
  assert.equal(r.deleted, true);
  assert.equal(r.deletedAgain, false);
  assert.deepEqual(r.afterDelete.map((m) => m.url), [url(second)]);
  assert.ok(r.est2.usage < r.est1.usage - statSync(MODEL_PATH).size / 2, `deleting the default model shrinks usage (${r.est1.usage} -> ${r.est2.usage})`);
  assert.equal(r.cleared, 1);
  assert.deepEqual(r.afterClear, []);
  assert.ok(r.est3.usage < r.est2.usage - statSync(join(TINY, second)).size / 2, `clearing the second model shrinks usage (${r.est2.usage} -> ${r.est3.usage})`);
  assert.equal(r.hf, 'http://127.0.0.1:1/hub/owner/repo/resolve/v1.0/dir/file.gguf');
  assert.equal(r.hfDefault, 'https://huggingface.co/owner/repo/resolve/main/file.gguf');
  assert.match(r.hfBad, /^InvalidRequestError: model "hf:owner\/file.gguf": an hf: source is/);
  await page.close();
});

test('examples/vite-app: built by Vite from the npm pack tarball, served statically; the default model streams a reply', { timeout: 600000 }, async () => {
  const app = join(work, 'vite-app');
  cpSync(join(ROOT, 'examples', 'vite-app'), app, { recursive: true, filter: (src) => !/node_modules|[/\\]dist$/.test(src) });
  // Only the tarball goes into this fresh folder (Vite runs from the repo's node_modules: no registry).
  const pkg = JSON.parse(readFileSync(join(app, 'package.json'), 'utf8'));
  delete pkg.dependencies;
  delete pkg.devDependencies;
  writeFileSync(join(app, 'package.json'), JSON.stringify(pkg, null, 2));
  run('npm', ['install', '--no-audit', '--no-fund', '--offline', tarball], { cwd: app });
  assert.ok(existsSync(join(app, 'node_modules', 'webllama', 'pkg', 'webllama_bg.wasm')), 'installed from the tarball');
  const built = run('node', [join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build'], { cwd: app });
  console.log(built.trim().split('\n').slice(-6).join('\n'));
  const dist = join(app, 'dist');
  const assets = readdirSync(join(dist, 'assets'));
  assert.ok(assets.some((f) => /^worker-.*\.js$/.test(f)), `the worker bundled: ${assets}`);
  assert.ok(assets.some((f) => /\.wasm$/.test(f)), `the wasm emitted: ${assets}`);
  linkModels(dist);
  const server = await staticServer(dist);
  const { page, reply } = await askExample(server.url, 'vite-app');
  console.log('vite-app:', JSON.stringify(reply));
  assert.ok(reply.text.trim().length > 0, 'a reply');
  assert.ok(reply.chunks > 2, `streamed in chunks (${reply.chunks})`);
  assert.match(reply.status, /Ready: .*1 model\(s\) stored in opfs/);
  const requests = gets(server.log);
  assert.ok(requests.includes(`200 /models/${MODEL_NAME}`), requests.join('\n'));
  assert.deepEqual(requests.filter((r) => !/^(200|304) /.test(r)).filter((r) => !r.endsWith('/favicon.ico')), [], 'no request failed');
  await page.close();
});
