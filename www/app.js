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
  // After these the engine cannot go on (its wasm trapped, its GPU device is gone, its worker
  // failed): the page lets it go, and Load makes a new one.
  const gone = ['EngineCrashedError', 'DeviceLostError', 'WorkerError'].includes(e?.name) || (e?.name === 'GpuError' && /lost/i.test(e?.message ?? ''));
  if (engine && gone) {
    engine.unload().catch(() => {});
    engine = null;
    $('model-status').textContent = 'The model stopped (see the error): load it again.';
    $('model-status').dataset.state = 'error';
    setBusy(busy);
  }
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
  $('summarize').disabled = b || !engine;
  $('summarize-stop').disabled = !b;
  $('headlines').disabled = b || !engine;
}

// The sampling settings panel, as request fields (chat requests: the panel's thinking is a chat
// template variable).
function settings() {
  const num = (id) => Number($(`s-${id}`).value);
  const s = {};
  for (const k of ['temperature', 'top_p', 'top_k', 'min_p', 'repetition_penalty', 'presence_penalty', 'frequency_penalty', 'seed', 'max_tokens']) {
    // An empty seed: each request draws its own.
    if (k === 'seed' && $('s-seed').value.trim() === '') continue;
    const v = num(k);
    if (!Number.isFinite(v)) throw Object.assign(new Error(`the setting ${k} is not a number`), { name: 'InvalidRequestError' });
    s[k] = v;
  }
  // The template's enable_thinking, where the panel sets it.
  const thinking = $('s-thinking').value;
  if (thinking !== '') s.chat_template_kwargs = { enable_thinking: thinking === 'true' };
  return s;
}

function showMode(mode) {
  for (const b of document.querySelectorAll('#modes button')) b.setAttribute('aria-pressed', String(b.dataset.mode === mode));
  for (const p of document.querySelectorAll('.mode-panel')) p.hidden = p.dataset.mode !== mode;
}

function chosenModel() {
  const source = document.querySelector('input[name="source"]:checked').value;
  if (source === 'url') {
    const url = $('model-url').value.trim();
    if (!url) throw Object.assign(new Error('type the URL of a .gguf file'), { name: 'InvalidRequestError' });
    return url;
  }
  if (source === 'file') {
    // One file, or a split model's parts (all of them).
    const files = [...$('model-file').files];
    if (files.length === 0) throw Object.assign(new Error('choose a .gguf file'), { name: 'InvalidRequestError' });
    return files.length === 1 ? files[0] : files;
  }
  return DEFAULT_MODEL;
}

function mb(n) {
  return (n / 1e6).toFixed(1);
}

async function load(model) {
  // One load at a time, and none while a reply streams (a drop reaches here past the disabled button).
  if (busy) return;
  clearError();
  setBusy(true);
  const old = engine;
  engine = null;
  if (old) await old.unload().catch(() => {});
  $('progress').hidden = false;
  $('progress-bar').value = 0;
  $('progress-text').textContent = '';
  $('model-status').textContent = `Loading ${typeof model === 'string' ? model : Array.isArray(model) ? model[0].name.replace(/-\d{5}-of-\d{5}\.gguf$/, ' (split)') : model.name}…`;
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

// A folded "Thinking" block before a reply's text; returns where its text goes (as text, never HTML).
function thoughtBlock(body) {
  const details = document.createElement('details');
  details.className = 'thinking';
  const summary = document.createElement('summary');
  summary.textContent = 'Thinking';
  const text = document.createElement('span');
  text.className = 'thought';
  details.append(summary, text);
  body.before(details);
  return text;
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
  let thinking = null;
  try {
    // A reasoning model's thinking comes apart (reasoning_format "parsed"), shown folded above the
    // answer and left out of the history (its templates drop it from earlier turns anyway).
    for await (const chunk of engine.chat.completions.create({ ...settings(), messages, stream: true, reasoning_format: 'parsed' })) {
      const thought = chunk.choices[0].delta.reasoning_content ?? '';
      if (thought) {
        thinking ??= thoughtBlock(out);
        thinking.textContent += thought;
      }
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

// Summarize: the document as one user message; the summary streams in as text.
async function summarize() {
  const doc = $('doc-text').value.trim();
  if (!doc || !engine || busy) return;
  clearError();
  setBusy(true);
  const out = $('summary');
  out.textContent = '';
  out.dataset.done = 'false';
  try {
    await engine.resetChat();
    const messages = [{ role: 'user', content: `Summarize the following text in a few sentences.\n\n${doc}` }];
    let summary = '';
    // A reasoning model's thinking is not part of the summary (reasoning_format "parsed").
    const req = { ...settings(), max_tokens: Math.min(settings().max_tokens, 256), messages, stream: true, reasoning_format: 'parsed' };
    for await (const chunk of engine.chat.completions.create(req)) {
      const c = chunk.choices[0];
      if (c.delta.content) {
        summary += c.delta.content;
        out.textContent = summary;
      }
      if (chunk.usage) {
        const s = engine.stats;
        $('summary-stats').textContent = `${chunk.usage.prompt_tokens} tokens read at ${s.prefill_tok_s.toFixed(1)} tok/s · ${chunk.usage.completion_tokens} written at ${s.decode_tok_s.toFixed(1)} tok/s`;
        out.dataset.promptTokens = String(chunk.usage.prompt_tokens);
      }
    }
  } catch (e) {
    showError(e);
  } finally {
    out.dataset.done = 'true';
    setBusy(false);
  }
}

// A text file (picked or dropped) into the document box; one over 4 MB is refused before it is read.
async function readDoc(f) {
  if (!f) return;
  if (f.size > 4e6) return showError(Object.assign(new Error(`${f.name} is ${mb(f.size)} MB; a text of at most 4 MB is expected`), { name: 'InvalidRequestError' }));
  $('doc-text').value = await f.text();
  $('doc-count').textContent = `${f.name}: ${$('doc-text').value.length} characters`;
}

// Headlines: five candidates, each in its own row; click to pick. Either n = 5 candidates decoded side
// by side (each streams into its row), or, with "as one JSON array", one request whose output must be
// a JSON array of five short strings (structured output: response_format json_schema), streamed as
// raw JSON and split into the rows once complete. Model text always goes in as text, never as HTML.
async function headlines() {
  const news = $('news-text').value.trim();
  if (!news || !engine || busy) return;
  clearError();
  setBusy(true);
  const list = $('candidates');
  list.replaceChildren();
  $('chosen').hidden = true;
  const asJson = $('h-json').checked;
  $('headlines-json').hidden = !asJson;
  $('headlines-json').textContent = '';
  const rows = [];
  const texts = ['', '', '', '', ''];
  for (let i = 0; i < 5; i++) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.disabled = true;
    b.addEventListener('click', () => {
      for (const x of list.children) x.classList.remove('picked');
      li.classList.add('picked');
      $('chosen').hidden = false;
      $('chosen').textContent = `Chosen: ${texts[i].trim()}`;
    });
    li.append(b);
    list.append(li);
    rows.push(b);
  }
  list.dataset.done = 'false';
  try {
    await engine.resetChat();
    const temperature = Number($('h-temperature').value);
    const maxTokens = Number($('h-max-tokens').value) || 20;
    if (asJson) {
      await headlinesAsJson(news, { temperature, maxTokens }, rows, texts);
    } else {
      const messages = [{ role: 'user', content: `Write a headline for this news: ${news}` }];
      const req = { ...settings(), temperature, max_tokens: maxTokens, n: 5, messages, stream: true };
      for await (const chunk of engine.chat.completions.create(req)) {
        for (const c of chunk.choices) {
          if (c.delta.content) {
            texts[c.index] += c.delta.content;
            rows[c.index].textContent = texts[c.index].trim();
          }
        }
        if (chunk.usage) {
          const s = engine.stats;
          $('headlines-stats').textContent = `5 candidates, ${chunk.usage.completion_tokens} tokens at ${s.decode_tok_s.toFixed(1)} tok/s together`;
        }
      }
    }
    rows.forEach((b) => { b.disabled = false; });
  } catch (e) {
    showError(e);
  } finally {
    list.dataset.done = 'true';
    setBusy(false);
  }
}

// The five headlines as one JSON array through a schema: each string at most ~4 characters per
// token of "max tokens" (80 at most), so that the array fits the request's max_tokens.
async function headlinesAsJson(news, { temperature, maxTokens }, rows, texts) {
  const maxLength = Math.min(80, 4 * maxTokens);
  const schema = { type: 'array', items: { type: 'string', maxLength }, minItems: 5, maxItems: 5 };
  const messages = [{ role: 'user', content: `Write five different headlines for this news, as a JSON array of strings: ${news}` }];
  // Room for each headline and its quotes, comma and the whitespace around them (a small model
  // writes newlines there), and the brackets.
  const max_tokens = 5 * (maxTokens + 6) + 16;
  const req = { ...settings(), temperature, max_tokens, messages, stream: true, response_format: { type: 'json_schema', json_schema: { name: 'headlines', schema, strict: true } } };
  let json = '';
  let finish = null;
  for await (const chunk of engine.chat.completions.create(req)) {
    const c = chunk.choices[0];
    if (c.delta.content) {
      json += c.delta.content;
      $('headlines-json').textContent = json;
    }
    if (c.finish_reason) finish = c.finish_reason;
    if (chunk.usage) {
      const s = engine.stats;
      $('headlines-stats').textContent = `5 headlines as one JSON array, ${chunk.usage.completion_tokens} tokens at ${s.decode_tok_s.toFixed(1)} tok/s`;
    }
  }
  if (finish !== 'stop') {
    throw Object.assign(new Error(`the JSON array was cut at ${max_tokens} tokens (finish_reason ${finish}); raise max tokens`), { name: 'InvalidRequestError' });
  }
  const headlines = JSON.parse(json);
  headlines.forEach((h, i) => {
    texts[i] = h;
    rows[i].textContent = h.trim();
  });
}

// The structured-output row's schema (bench/people.schema.json, as `webllama bench --json-schema` uses).
const BENCH_SCHEMA = {
  type: 'object',
  properties: {
    people: {
      type: 'array', minItems: 3, maxItems: 3,
      items: {
        type: 'object',
        properties: {
          name: { type: 'string', maxLength: 24 },
          age: { type: 'integer', minimum: 0, maximum: 120 },
          city: { type: 'string', maxLength: 24 },
          hobbies: { type: 'array', items: { type: 'string', maxLength: 16 }, maxItems: 3 },
        },
        required: ['name', 'age', 'city', 'hobbies'],
        additionalProperties: false,
      },
    },
  },
  required: ['people'],
  additionalProperties: false,
};

const BENCH_PROMPT = 'The history of the printing press begins in the fifteenth century, when movable type changed how books were made, how ideas spread, and how people learned to read. In the decades that followed,';

// Tokens the benchmark decodes: 32, and up to 128 under the schema (the whole JSON object); with
// `?bench=short` in the page's address 8 and 24 (a slow software adapter, the page's tests).
function benchTokens() {
  return new URLSearchParams(location.search).get('bench') === 'short' ? { decode: 8, structured: 24 } : { decode: 32, structured: 128 };
}

async function benchmark() {
  if (!engine || busy) return;
  clearError();
  setBusy(true);
  $('bench-status').textContent = 'Running…';
  const tokens = benchTokens();
  try {
    await engine.resetChat();
    const r = await engine.completions.create({ prompt: BENCH_PROMPT, max_tokens: tokens.decode, temperature: 0, ignore_eos: true });
    const s = engine.stats;
    const t = r.timings;
    $('b-adapter').textContent = s.adapter;
    $('b-prefill').textContent = `${t.prefill_tok_s.toFixed(2)} tok/s (${r.usage.prompt_tokens} tokens)`;
    $('b-decode').textContent = `${t.decode_tok_s.toFixed(2)} tok/s (${r.usage.completion_tokens} tokens)`;
    $('b-ttft').textContent = `${t.prefill_ms.toFixed(0)} ms`;
    $('b-cost').textContent = `${s.dispatches_per_token} dispatches (${s.n_layers} layers), ${s.submits_per_token} submit, ${s.readback_bytes_per_token} bytes read back`;
    $('b-bw').textContent = `${(s.weight_bytes_per_token / 1e6).toFixed(1)} MB per token, ${(s.weight_bytes_per_token * t.decode_tok_s / 1e9).toFixed(2)} GB/s`;
    // Greedy decoding under a JSON schema, against unconstrained greedy decoding of as many tokens
    // from the same prompt (the same context lengths: only the constraint differs).
    const content = `Reply with one JSON object that follows this JSON schema:\n${JSON.stringify(BENCH_SCHEMA)}`;
    const messages = [{ role: 'user', content }];
    const j = await engine.chat.completions.create({
      messages, max_tokens: tokens.structured, temperature: 0,
      response_format: { type: 'json_schema', json_schema: { name: 'people', schema: BENCH_SCHEMA } },
    });
    const free = await engine.chat.completions.create({ messages, max_tokens: j.usage.completion_tokens, temperature: 0, ignore_eos: true });
    const js = j.timings.decode_tok_s;
    const ratio = js / free.timings.decode_tok_s;
    $('b-structured').textContent = `${js.toFixed(2)} tok/s (${j.usage.completion_tokens} tokens under a JSON schema; ${(100 * ratio).toFixed(0)}% of ${free.timings.decode_tok_s.toFixed(2)} tok/s unconstrained from the same prompt)`;
    $('bench-table').hidden = false;
    $('bench-table').dataset.decode = String(t.decode_tok_s);
    $('bench-table').dataset.structured = String(js);
    $('bench-table').dataset.structuredRatio = String(ratio);
    $('bench-status').textContent = 'Done.';
  } catch (e) {
    $('bench-status').textContent = '';
    showError(e);
  } finally {
    setBusy(false);
  }
}

$('bench').addEventListener('click', benchmark);
for (const b of document.querySelectorAll('#modes button')) b.addEventListener('click', () => showMode(b.dataset.mode));
$('summarize').addEventListener('click', summarize);
$('summarize-stop').addEventListener('click', () => engine?.abort());
$('doc-file').addEventListener('change', () => readDoc($('doc-file').files[0]).catch(showError));
$('headlines').addEventListener('click', headlines);
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
  const files = [...e.dataTransfer.files];
  if (files.length) load(files.length === 1 ? files[0] : files);
});
$('doc-text').addEventListener('dragover', (e) => e.preventDefault());
$('doc-text').addEventListener('drop', (e) => {
  const f = e.dataTransfer.files[0];
  if (!f) return;
  e.preventDefault();
  readDoc(f).catch(showError);
});
// A file dropped anywhere else is not opened by the tab (that would leave the page and its model);
// dragged text still drops into the text boxes.
const dropsFiles = (e) => e.dataTransfer?.types.includes('Files');
window.addEventListener('dragover', (e) => { if (dropsFiles(e)) e.preventDefault(); });
window.addEventListener('drop', (e) => { if (dropsFiles(e)) e.preventDefault(); });
