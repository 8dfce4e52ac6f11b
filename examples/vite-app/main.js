// The package from node_modules: Vite bundles webllama.js into the app, and the worker (with the
// wasm glue and the .wasm as an asset) from webllama's new Worker(new URL('./worker.js', import.meta.url)).
import { createEngine, listCachedModels } from 'webllama';

const $ = (id) => document.getElementById(id);
// Relative to the page (served beside the built app: models/), or ?model=<URL or hf:owner/repo/file.gguf>.
const model = new URLSearchParams(location.search).get('model') ?? './models/SmolLM2-135M-Instruct.Q4_1.gguf';
const words = { download: 'Downloading', upload: 'Uploading to the GPU', compile: 'Compiling shaders' };

try {
  const engine = await createEngine({
    model,
    onProgress: (p) => {
      const pct = p.total ? ` ${Math.floor((100 * p.loaded) / p.total)}%` : '';
      const eta = p.etaS != null ? `, ${Math.ceil(p.etaS)} s left` : '';
      $('status').textContent = `${words[p.phase] ?? p.phase}${pct}${eta}`;
    },
  });
  const stored = await listCachedModels();
  $('status').textContent = `Ready: ${engine.stats.model} (${stored.length} model(s) stored in ${engine.stats.storage})`;
  $('status').dataset.state = 'ready';
  $('send').disabled = false;
  $('ask').addEventListener('submit', async (e) => {
    e.preventDefault();
    $('send').disabled = true;
    $('reply').textContent = '';
    $('reply').dataset.state = 'streaming';
    let chunks = 0;
    const messages = [{ role: 'user', content: $('prompt').value }];
    for await (const chunk of engine.chat.completions.create({ messages, stream: true, temperature: 0, max_tokens: 48 })) {
      $('reply').textContent += chunk.choices[0]?.delta.content ?? '';
      chunks += 1;
    }
    $('reply').dataset.chunks = String(chunks);
    $('reply').dataset.state = 'done';
    $('send').disabled = false;
  });
} catch (e) {
  $('status').textContent = `${e.name}: ${e.message}`;
  $('status').dataset.state = 'error';
}
