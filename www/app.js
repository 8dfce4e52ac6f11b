// The chat page: UI only. The engine lives in a worker behind webllama.js.
import { createEngine } from './webllama.js';

const DEFAULT_MODEL = 'models/SmolLM2-135M-Instruct.Q4_1.gguf';
const $ = (id) => document.getElementById(id);

let engine = null;
let history = [];
let busy = false;

// For tests and the console: the page's engine.
window.webllamaApp = { get engine() { return engine; } };

function showError(e) {
  const box = $('error');
  box.hidden = false;
  box.textContent = `${e?.name ?? 'Error'}: ${e?.message ?? e}`;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

function setBusy(b) {
  busy = b;
  $('send').disabled = b || !engine;
  $('prompt').disabled = !engine;
  $('stop').disabled = !b;
  $('new-chat').disabled = b || !engine;
  $('load').disabled = b;
  $('bench').disabled = b || !engine;
}

function chosenModel() {
  const source = document.querySelector('input[name="source"]:checked').value;
  if (source === 'url') {
    const url = $('model-url').value.trim();
    if (!url) throw Object.assign(new Error('type the URL of a .gguf file'), { name: 'InvalidRequestError' });
    return url;
  }
  if (source === 'file') {
    const f = $('model-file').files[0];
    if (!f) throw Object.assign(new Error('choose a .gguf file'), { name: 'InvalidRequestError' });
    return f;
  }
  return DEFAULT_MODEL;
}

function mb(n) {
  return (n / 1e6).toFixed(1);
}

async function load(model) {
  clearError();
  setBusy(true);
  const old = engine;
  engine = null;
  if (old) await old.unload().catch(() => {});
  $('progress').hidden = false;
  $('progress-bar').value = 0;
  $('progress-text').textContent = '';
  $('model-status').textContent = `Loading ${typeof model === 'string' ? model : model.name}…`;
  try {
    engine = await createEngine({
      model,
      onProgress: (p) => {
        if (p.total) $('progress-bar').value = p.loaded / p.total;
        const eta = p.etaS != null && p.total ? ` · ${Math.ceil(p.etaS)} s left` : '';
        const of = p.total ? ` / ${mb(p.total)}` : '';
        $('progress-text').textContent = `${mb(p.loaded)}${of} MB · ${p.mbPerS.toFixed(1)} MB/s${eta} · from ${p.source}`;
      },
    });
    const s = engine.stats;
    $('progress-bar').value = 1;
    $('model-status').textContent = `Ready: ${s.info.name || 'model'} (${s.info.n_layers} layers) on ${s.adapter}, loaded from ${s.source} in ${(s.load_ms / 1000).toFixed(1)} s.`;
    $('model-status').dataset.state = 'ready';
    history = [];
    $('conversation').replaceChildren();
  } catch (e) {
    $('model-status').textContent = 'No model loaded.';
    $('model-status').dataset.state = 'error';
    $('progress').hidden = true;
    showError(e);
  } finally {
    setBusy(false);
  }
}

function bubble(role, text) {
  const li = document.createElement('li');
  li.className = role;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : 'Model';
  const body = document.createElement('span');
  body.className = 'text';
  body.textContent = text; // model and user text always go in as text, never as HTML
  li.append(who, body);
  $('conversation').append(li);
  li.scrollIntoView({ block: 'end' });
  return body;
}

async function send() {
  const text = $('prompt').value.trim();
  if (!text || !engine || busy) return;
  clearError();
  $('prompt').value = '';
  history.push({ role: 'user', content: text });
  bubble('user', text);
  const out = bubble('assistant', '');
  out.parentElement.classList.add('streaming');
  setBusy(true);
  const system = $('system-prompt').value.trim();
  const messages = system ? [{ role: 'system', content: system }, ...history] : [...history];
  let answer = '';
  try {
    for await (const chunk of engine.chat.completions.create({ messages, stream: true, temperature: 0, max_tokens: 512 })) {
      const piece = chunk.choices[0].delta.content ?? '';
      if (piece) {
        answer += piece;
        out.textContent = answer;
        out.parentElement.scrollIntoView({ block: 'end' });
      }
      if (chunk.choices[0].finish_reason) out.parentElement.dataset.finish = chunk.choices[0].finish_reason;
    }
    history.push({ role: 'assistant', content: answer });
    const s = engine.stats;
    $('stats').textContent = `prefill ${s.prefill_tok_s.toFixed(1)} tok/s · decode ${s.decode_tok_s.toFixed(1)} tok/s · ${s.adapter}`;
  } catch (e) {
    history.pop();
    showError(e);
  } finally {
    out.parentElement.classList.remove('streaming');
    out.parentElement.dataset.done = 'true';
    setBusy(false);
  }
}

const BENCH_PROMPT = 'The history of the printing press begins in the fifteenth century, when movable type changed how books were made, how ideas spread, and how people learned to read. In the decades that followed,';

async function benchmark() {
  if (!engine || busy) return;
  clearError();
  setBusy(true);
  $('bench-status').textContent = 'Running…';
  try {
    await engine.resetChat();
    const r = await engine.completions.create({ prompt: BENCH_PROMPT, max_tokens: 32, temperature: 0, ignore_eos: true });
    const s = engine.stats;
    const t = r.timings;
    $('b-adapter').textContent = s.adapter;
    $('b-prefill').textContent = `${t.prefill_tok_s.toFixed(2)} tok/s (${r.usage.prompt_tokens} tokens)`;
    $('b-decode').textContent = `${t.decode_tok_s.toFixed(2)} tok/s (${r.usage.completion_tokens} tokens)`;
    $('b-ttft').textContent = `${t.prefill_ms.toFixed(0)} ms`;
    $('b-cost').textContent = `${s.dispatches_per_token} dispatches (${s.n_layers} layers), ${s.submits_per_token} submit, ${s.readback_bytes_per_token} bytes read back`;
    $('b-bw').textContent = `${(s.weight_bytes_per_token / 1e6).toFixed(1)} MB per token, ${(s.weight_bytes_per_token * t.decode_tok_s / 1e9).toFixed(2)} GB/s`;
    $('bench-table').hidden = false;
    $('bench-table').dataset.decode = String(t.decode_tok_s);
    $('bench-status').textContent = 'Done.';
  } catch (e) {
    $('bench-status').textContent = '';
    showError(e);
  } finally {
    setBusy(false);
  }
}

$('bench').addEventListener('click', benchmark);
$('load').addEventListener('click', () => {
  try { load(chosenModel()); } catch (e) { showError(e); }
});
$('composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });
$('prompt').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); send(); }
});
$('stop').addEventListener('click', () => engine?.abort());
$('new-chat').addEventListener('click', async () => {
  history = [];
  $('conversation').replaceChildren();
  await engine?.resetChat().catch(showError);
});
$('model-url').addEventListener('focus', () => { document.querySelector('input[value="url"]').checked = true; });
$('model-file').addEventListener('change', () => { document.querySelector('input[value="file"]').checked = true; });
const drop = $('drop-zone');
drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer.files[0];
  if (f) load(f);
});
