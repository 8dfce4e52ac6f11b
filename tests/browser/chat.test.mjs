// The chat page end to end in headless Chromium (software WebGPU): streamed load with progress and
// cache, a greedy chat answer equal to the native CLI's, the JS API (streaming, abort, reset), and
// clear errors for bad models. Screenshots go to target/browser/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { modelsDir, startServer, launch, openPage, nativeChat, nativeComplete, screenshotPath, MODEL_NAME, MODEL_PATH, TINY, TINY_MODELS, TINY_FAST } from './harness.mjs';

const HEADLINE = 'Write a headline for this news: The stock market saw a significant increase today as major tech companies reported higher than expected earnings.';
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

const modelRequests = () => server.log.filter((l) => l.startsWith(`GET /models/${MODEL_NAME}`)).length;

async function loadFromPage(kind, value) {
  await page.check(`input[name="source"][value="${kind}"]`);
  if (kind === 'url') await page.fill('#model-url', value);
  await page.click('#load');
  await page.waitForFunction(() => ['ready', 'error'].includes(document.querySelector('#model-status').dataset.state) && !document.querySelector('#load').disabled, null, { timeout: 120000 });
  return page.evaluate(() => document.querySelector('#model-status').dataset.state);
}

test('loads the default model with visible progress, streaming it onto the GPU', { timeout: 180000 }, async () => {
  const sawProgress = page.waitForFunction(() => /MB\/s/.test(document.querySelector('#progress-text').textContent), null, { timeout: 120000 });
  assert.equal(await loadFromPage('default'), 'ready', await page.textContent('#error'));
  await sawProgress;
  assert.equal(modelRequests(), 1);
  assert.match(await page.textContent('#progress-text'), /98\.4 \/ 98\.4 MB/);
  const stats = await page.evaluate(() => window.webllamaApp.engine.stats);
  const size = statSync(MODEL_PATH).size;
  console.log(`wasm memory after loading a ${(size / 1e6).toFixed(1)} MB model: ${(stats.wasm_memory_bytes / 1e6).toFixed(1)} MB; adapter: ${stats.adapter}; layout: ${stats.layout}`);
  assert.match(stats.layout, /^cpu /, "SwiftShader is a CPU adapter: the CPU kernel family");
  assert.ok(stats.wasm_memory_bytes < size / 2, `wasm memory ${stats.wasm_memory_bytes} should stay far below the model's ${size} bytes`);
});

test('a greedy chat answer streams into the page and equals the native CLI', { timeout: 400000 }, async () => {
  // Count the distinct texts the answer bubble shows while it streams.
  await page.evaluate(() => {
    window.__texts = new Set();
    new MutationObserver(() => {
      const t = document.querySelector('li.assistant .text');
      if (t) window.__texts.add(t.textContent);
    }).observe(document.querySelector('#conversation'), { subtree: true, childList: true, characterData: true });
  });
  await page.fill('#prompt', HEADLINE);
  await page.click('#send');
  await page.waitForSelector('li.assistant[data-done="true"]', { timeout: 380000 });
  const answer = await page.textContent('li.assistant .text');
  assert.equal(await page.textContent('#error'), '');
  const native = nativeChat(HEADLINE);
  console.log(`page: ${JSON.stringify(answer)}; native: ${JSON.stringify(native)}; ${await page.textContent('#stats')}`);
  assert.equal(answer, native);
  assert.equal(await page.getAttribute('li.assistant', 'data-finish'), 'stop');
  const steps = await page.evaluate(() => window.__texts.size);
  assert.ok(steps >= 5, `the answer arrived in ${steps} updates, not token by token`);
  await page.screenshot({ path: screenshotPath('chat.png'), fullPage: true });
});

test('files dropped on the page: none opens in the tab, none loads while a reply streams, a big text is refused unread', { timeout: 200000 }, async () => {
  const r = await page.evaluate(async () => {
    const $ = (id) => document.getElementById(id);
    const dropOn = (el, file) => {
      const dataTransfer = new DataTransfer();
      dataTransfer.items.add(file);
      const e = new DragEvent('drop', { dataTransfer, bubbles: true, cancelable: true });
      el.dispatchEvent(e);
      return e.defaultPrevented;
    };
    const out = { elsewhere: dropOn($('conversation'), new File(['x'], 'notes.txt')) };
    // A model dropped while a reply streams: not loaded (the engine stays; the reply goes on).
    const engine = window.webllamaApp.engine;
    $('prompt').value = 'Tell me a long story.';
    $('send').click();
    const status = $('model-status').textContent;
    out.busyDrop = dropOn($('drop-zone'), new File(['GGUF'], 'other.gguf'));
    out.statusKept = $('model-status').textContent === status;
    $('stop').click();
    while (document.querySelector('li.assistant:last-child')?.dataset.done !== 'true') await new Promise((r) => setTimeout(r, 50));
    out.sameEngine = window.webllamaApp.engine === engine;
    out.chatError = $('error').textContent;
    // A 5 MB text dropped on the document box: refused before it is read.
    const before = $('doc-text').value;
    dropOn($('doc-text'), new File([new Uint8Array(5e6).fill(97)], 'big.txt'));
    await new Promise((r) => setTimeout(r, 100));
    out.bigError = $('error').textContent;
    out.docKept = $('doc-text').value === before;
    return out;
  });
  assert.equal(r.elsewhere, true, 'a file dropped outside the drop zones is not opened by the tab');
  assert.equal(r.busyDrop, true);
  assert.ok(r.statusKept && r.sameEngine, 'no load while the reply streamed');
  assert.equal(r.chatError, '');
  assert.match(r.bigError, /big\.txt is 5\.0 MB; a text of at most 4 MB is expected/);
  assert.ok(r.docKept);
});

test('JS API: streamed chunks equal the answer; abort stops within a token; resetChat clears the cache', { timeout: 400000 }, async () => {
  const r = await page.evaluate(async () => {
    const engine = window.webllamaApp.engine;
    const req = { messages: [{ role: 'user', content: 'Name a color.' }], temperature: 0, max_tokens: 8 };
    const whole = await engine.chat.completions.create(req);
    let streamed = '';
    let last = null;
    for await (const chunk of engine.chat.completions.create({ ...req, stream: true })) {
      streamed += chunk.choices[0].delta.content ?? '';
      last = chunk;
    }
    // Abort after the second piece: at most one more arrives.
    let pieces = 0;
    let afterAbort = 0;
    let aborted = null;
    for await (const chunk of engine.completions.create({ prompt: 'Once upon a time,', temperature: 0, max_tokens: 40, stream: true })) {
      if (chunk.choices[0].text) pieces += 1;
      if (pieces === 2 && afterAbort === 0) { engine.abort(); afterAbort = 1; } else if (afterAbort && chunk.choices[0].text) afterAbort += 1;
      if (chunk.choices[0].finish_reason) aborted = chunk.choices[0].finish_reason;
    }
    // The next request works, and reuses the cached prompt prefix...
    const next = await engine.completions.create({ prompt: 'Once upon a time,', temperature: 0, max_tokens: 3 });
    // ...until resetChat() forgets it.
    await engine.resetChat();
    const fresh = await engine.completions.create({ prompt: 'Once upon a time,', temperature: 0, max_tokens: 3 });
    const refuse = async (edit) => {
      try { await engine.chat.completions.create({ ...req, ...edit }); return 'accepted'; } catch (e) { return `${e.name}: ${e.message}`; }
    };
    const refused = await refuse({ n: 9 });
    // Numeric options: NaN, a zero max_tokens, a division by zero, an out-of-range penalty.
    const bad = [await refuse({ frequency_penalty: NaN }), await refuse({ max_tokens: 0 }), await refuse({ repetition_penalty: 0 }), await refuse({ presence_penalty: 5 }), await refuse({ logit_bias: { 49152: 1 } })];
    return { whole, streamed, last, pieces, afterAbort, aborted, next, fresh, refused, bad };
  });
  assert.equal(r.streamed, r.whole.choices[0].message.content);
  assert.equal(r.whole.object, 'chat.completion');
  assert.equal(r.whole.usage.completion_tokens, 8);
  assert.equal(r.last.choices[0].finish_reason, r.whole.choices[0].finish_reason);
  assert.equal(r.aborted, 'abort');
  assert.ok(r.afterAbort <= 2, `${r.afterAbort - 1} pieces arrived after abort()`);
  assert.equal(r.next.choices[0].finish_reason, 'length');
  assert.equal(r.next.timings.prefilled_tokens, 1, 'the repeated prompt comes from the KV cache');
  assert.equal(r.fresh.timings.prefilled_tokens, r.fresh.usage.prompt_tokens, 'after resetChat the whole prompt is prefilled');
  assert.equal(r.fresh.choices[0].text, r.next.choices[0].text);
  assert.match(r.refused, /^InvalidRequestError: n \(candidates\) must be an integer from 1 to 8/);
  assert.match(r.bad[0], /^InvalidRequestError: frequency_penalty must be a finite number/);
  assert.match(r.bad[1], /^InvalidRequestError: max_tokens must be at least 1/);
  assert.match(r.bad[2], /^InvalidRequestError: .*repetition_penalty is 0/);
  assert.match(r.bad[3], /^InvalidRequestError: .*presence_penalty is 5/);
  assert.match(r.bad[4], /^InvalidRequestError: .*logit_bias names token 49152, past the vocabulary \(ids 0 to 49151\)/);
});

test('JS API: requests run one at a time; a stream left early frees the engine; unload ends it; bad requests and options reject by name', { timeout: 300000 }, async () => {
  const r = await page.evaluate(async (model) => {
    const { createEngine } = await import('./webllama.js');
    const e = await createEngine({ model });
    const long = { prompt: 'Once upon a time,', temperature: 0, max_tokens: 200, ignore_eos: true };
    const why = (err) => `${err.name}: ${err.message}`;
    const out = {};
    // Two at once: the second waits its turn.
    const both = await Promise.all([1, 2].map(() => e.completions.create({ ...long, max_tokens: 4 })));
    out.both = both.map((c) => c.choices[0].finish_reason);
    // A stream left after two chunks: the next request runs at once.
    let k = 0;
    for await (const c of e.completions.create({ ...long, stream: true })) if (c.choices[0].text && ++k === 2) break;
    out.afterBreak = await e.completions.create({ ...long, max_tokens: 3 }).then((c) => c.choices[0].finish_reason, why);
    // Leaving a stream stops that one alone: a request made while it ran still runs after it.
    let behind = null;
    k = 0;
    for await (const c of e.completions.create({ ...long, stream: true })) {
      behind ??= e.completions.create({ ...long, max_tokens: 3 }).then((x) => x.choices[0].finish_reason, why);
      if (c.choices[0].text && ++k === 2) break;
    }
    out.behindBreak = await behind;
    // A stream closed before its first read (return()) stops its generation too: the next request
    // does not wait for its 1000 tokens.
    const unreadLong = e.completions.create({ ...long, max_tokens: 1000, stream: true });
    await unreadLong.return();
    const t1 = performance.now();
    const next = await e.completions.create({ ...long, max_tokens: 2 });
    out.afterUnread = { ms: performance.now() - t1, tokS: next.timings.decode_tok_s };
    // A stream waiting its turn, closed while its first next() waits: its request stops at once
    // (not when the generation ahead of it ends), and the pending next() ends with an AbortError.
    const ahead = e.completions.create({ ...long, max_tokens: 1000 });
    const it = e.completions.create({ ...long, stream: true })[Symbol.asyncIterator]();
    const pending = it.next().then(() => 'a chunk', (err) => err.name);
    await new Promise((ok) => setTimeout(ok, 200));
    const t2 = performance.now();
    await it.return();
    out.closedWaiting = { ms: performance.now() - t2, next: await pending };
    e.abort();
    await ahead.catch(() => {});
    // abort() stops the running generation and those waiting their turn (an AbortError each).
    const queued = [e.completions.create(long), e.completions.create(long)];
    await new Promise((ok) => setTimeout(ok, 300));
    e.abort();
    out.abortedQueue = await Promise.all(queued.map((p) => p.then((c) => c.choices[0].finish_reason, (err) => err.name)));
    // A stream is made by create(), not by its first read: abort() right after stops it too.
    const unread = e.completions.create({ ...long, stream: true });
    e.abort();
    out.unreadAborted = 'none';
    try {
      for await (const c of unread) out.unreadAborted = c.choices[0].finish_reason ?? out.unreadAborted;
    } catch (err) { out.unreadAborted = err.name; }
    // abort() then resetChat() (as the README shows) while a generation runs.
    const running = e.completions.create(long);
    await new Promise((ok) => setTimeout(ok, 300));
    e.abort();
    out.reset = await e.resetChat().then(() => 'ok', why);
    out.aborted = await running.then((c) => c.choices[0].finish_reason, why);
    // A bad request is a rejection, streamed or not, never a throw from create().
    const refusal = async (req) => {
      let made;
      try { made = e.completions.create(req); } catch (err) { return `thrown: ${err.name}`; }
      try {
        if (req.stream) for await (const c of made) void c; else await made;
        return 'accepted';
      } catch (err) { return err.name; }
    };
    out.bad = [await refusal({ prompt: '' }), await refusal({ prompt: '', stream: true }), await refusal({ prompt: 'a', logit_bias: { 5: NaN } }), await refusal({ prompt: 'a', truncate: 'oldest' })];
    // A message cut mid-emoji (a lone surrogate) is taken, the half character as U+FFFD.
    out.surrogate = await e.chat.completions.create({ messages: [{ role: 'user', content: 'Hi \ud83d' }], max_tokens: 1 }).then(() => 'accepted', (err) => `${err.name}: ${err.message}`);
    // Counts past 2^32 (safe integers; wasm's usize is 32 bits): a top_k that large means all, a
    // max_tokens that large does not fit the context.
    out.huge = [await refusal({ prompt: 'a', max_tokens: 2, top_k: 1e10 }), await e.completions.create({ prompt: 'a', max_tokens: 1e10 }).then(() => 'accepted', (err) => `${err.name}: ${err.message}`)];
    // unload() while a stream runs: the stream ends, later requests reject by name at once, and a
    // second unload() does nothing.
    let n = 0;
    out.streamEnd = 'none';
    try {
      for await (const c of e.completions.create({ ...long, stream: true })) {
        if (c.choices[0].text && ++n === 2) e.unload();
        if (c.choices[0].finish_reason) out.streamEnd = c.choices[0].finish_reason;
      }
    } catch (err) { out.streamEnd = why(err); }
    out.afterUnload = await e.completions.create({ ...long, max_tokens: 2 }).then(() => 'accepted', why);
    out.unloadAgain = await e.unload().then(() => 'ok', why);
    // createEngine's options are checked by name before a worker starts.
    const opt = (o) => createEngine({ model, ...o }).then((x) => x.unload().then(() => 'loaded'), why);
    const ac = new AbortController();
    ac.abort('the user left');
    // A panic in an async wasm call (a bug, a trap in a future): an EngineCrashedError for that
    // request and every later one, and unload() still resolves.
    const crasher = await createEngine({ model });
    out.crash = [await crasher._crash().then(() => 'ok', (err) => err.name), await crasher.completions.create({ ...long, max_tokens: 2 }).then(() => 'accepted', why), await crasher.unload().then(() => 'ok', why)];
    out.options = [await opt({ ctx: 0 }), await opt({ layout: 5 }), await opt({ model: '' }), await opt({ signal: ac.signal }), await opt({ model: 'hf:a/b/c.gguf', hfBaseUrl: 'http://' })];
    return out;
  }, `models/${TINY_FAST}`);
  console.log('JS API misuse:', JSON.stringify(r, null, 1));
  assert.deepEqual(r.both, ['length', 'length']);
  assert.equal(r.afterBreak, 'length');
  assert.equal(r.behindBreak, 'length');
  assert.ok(r.closedWaiting.ms < 2000, `a stream closed while it waited its turn stopped after ${r.closedWaiting.ms} ms`);
  assert.equal(r.closedWaiting.next, 'AbortError');
  assert.deepEqual(r.abortedQueue, ['abort', 'AbortError']);
  assert.match(r.unreadAborted, /^(abort|AbortError)$/);
  assert.ok(r.afterUnread.ms < 1000 / r.afterUnread.tokS * 1000 / 2, `a closed unread stream ran on: ${JSON.stringify(r.afterUnread)}`);
  assert.equal(r.crash[0], 'EngineCrashedError');
  assert.match(r.crash[1], /^EngineCrashedError: the engine crashed \(.*a panic the crash test asked for/s);
  assert.equal(r.crash[2], 'ok');
  assert.equal(r.reset, 'ok');
  assert.equal(r.aborted, 'abort');
  assert.deepEqual(r.bad, ['InvalidRequestError', 'InvalidRequestError', 'InvalidRequestError', 'InvalidRequestError']);
  assert.equal(r.huge[0], 'accepted');
  assert.equal(r.surrogate, 'accepted');
  assert.match(r.huge[1], /^ContextLengthError: the prompt and generation need \d{10,} positions but the context holds/);
  assert.match(r.streamEnd, /^abort$/);
  assert.match(r.afterUnload, /^InvalidRequestError: (the engine was unloaded|no model is loaded)/);
  assert.equal(r.unloadAgain, 'ok');
  assert.match(r.options[0], /^InvalidRequestError: ctx must be/);
  assert.match(r.options[1], /^InvalidRequestError: layout must be/);
  assert.match(r.options[2], /^InvalidRequestError: no model/);
  assert.match(r.options[3], /^AbortError: /);
  assert.match(r.options[4], /^InvalidRequestError: hfBaseUrl/);
});

test('model output is shown as text, never as HTML; the page\'s Content-Security-Policy holds', { timeout: 200000 }, async () => {
  const requests = [];
  const onRequest = (r) => requests.push(r.url());
  page.on('request', onRequest);
  // A reply that is markup, from an engine whose stream is replaced for this one request.
  const hostile = '<img src="/pwned.png" onerror="window.__pwned = 1"><script>window.__pwned = 2</script> done';
  await page.evaluate((text) => {
    const engine = window.webllamaApp.engine;
    const real = engine.chat.completions.create;
    engine.chat.completions.create = async function* () {
      engine.chat.completions.create = real;
      yield { choices: [{ index: 0, delta: { content: text }, finish_reason: null }] };
      yield { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1 }, timings: { prefill_tok_s: 1, decode_tok_s: 1 } };
    };
  }, hostile);
  await page.fill('#prompt', 'Say something.');
  await page.click('#send');
  await page.waitForFunction(() => [...document.querySelectorAll('li.assistant .text')].some((t) => t.textContent.includes('done')), null, { timeout: 30000 });
  const shown = await page.evaluate(() => {
    const texts = [...document.querySelectorAll('li.assistant .text')];
    return { text: texts[texts.length - 1].textContent, imgs: document.querySelectorAll('#conversation img, #conversation script').length, pwned: window.__pwned ?? null };
  });
  assert.equal(shown.text, hostile, 'the markup is shown as its text');
  assert.equal(shown.imgs, 0, 'no element was made from it');
  assert.equal(shown.pwned, null);
  // The page's policy (its <meta> Content-Security-Policy): no inline handler runs even where markup
  // gets in, and no connection leaves the origin.
  const csp = await page.evaluate(async () => {
    document.body.insertAdjacentHTML('beforeend', '<img id="csp-probe" src="data:," onload="window.__inline = 1">');
    await new Promise((r) => setTimeout(r, 300));
    let fetched = 'allowed';
    try { await fetch('http://127.0.0.2:9/'); } catch (e) { fetched = e.name; }
    document.getElementById('csp-probe').remove();
    return { inline: window.__inline ?? null, fetched };
  });
  page.off('request', onRequest);
  assert.equal(csp.inline, null, 'an inline event handler did not run');
  assert.equal(csp.fetched, 'TypeError', 'a connection to another origin was refused');
  assert.ok(!requests.some((u) => u.includes('pwned')), `no request for the markup's image: ${requests.join(', ')}`);
});

test('sampling with a seed gives the same text as the native CLI, without one another each time; stop strings cut the text', { timeout: 200000 }, async () => {
  const prompt = 'Once upon a time,';
  const r = await page.evaluate(async (prompt) => {
    const engine = window.webllamaApp.engine;
    const sampled = await engine.completions.create({ prompt, temperature: 0.9, top_p: 0.95, top_k: 40, seed: 7, max_tokens: 12 });
    const stopped = await engine.completions.create({ prompt: 'The capital of France is', temperature: 0, max_tokens: 16, stop: ['\n\nThe'] });
    // No seed: each request draws its own (asked again, another reply).
    const unseeded = [];
    for (let i = 0; i < 3; i++) unseeded.push((await engine.completions.create({ prompt, temperature: 1, max_tokens: 12 })).choices[0].text);
    return { sampled: sampled.choices[0].text, stopped: stopped.choices[0].text, reason: stopped.choices[0].finish_reason, unseeded };
  }, prompt);
  // top_k keeps the draws off the tail, where the adapters' logits (SwiftShader's and lavapipe's
  // differ by ~1e-3) can move a draw across a boundary.
  const native = nativeComplete(prompt, ['--temperature', '0.9', '--top-p', '0.95', '--top-k', '40', '--seed', '7', '--max-tokens', '12']);
  console.log(`seeded sample: page ${JSON.stringify(r.sampled)}; native ${JSON.stringify(native)}`);
  assert.equal(r.sampled, native);
  assert.deepEqual([r.stopped, r.reason], [' Paris.', 'stop']);
  assert.ok(new Set(r.unseeded).size > 1, `three unseeded replies: ${JSON.stringify(r.unseeded)}`);
});

test('K-quant models with LLaMA-2 (SentencePiece) and LLaMA-3 (llama-bpe) vocabularies generate in the page as natively', { timeout: 200000 }, async (t) => {
  for (const file of TINY_MODELS) {
    if (!existsSync(join(TINY, file))) {
      t.diagnostic(`SKIPPED ${file}: ${TINY} is absent (../shared/fixtures is not checked out beside the repo)`);
      continue;
    }
    const prompt = 'The capital of France is';
    const text = await page.evaluate(async ({ url, prompt }) => {
      const { createEngine } = await import('/webllama.js');
      const engine = await createEngine({ model: url });
      try {
        const r = await engine.completions.create({ prompt, temperature: 0, max_tokens: 8, ignore_eos: true });
        return r.choices[0].text;
      } finally {
        await engine.unload();
      }
    }, { url: `models/${file}`, prompt });
    const native = nativeComplete(prompt, ['--max-tokens', '8', '--ignore-eos'], join(TINY, file));
    console.log(`${file}: page ${JSON.stringify(text)}; native ${JSON.stringify(native)}`);
    assert.equal(text, native, file);
  }
});

test('a chat longer than the context is refused by name, or loses its oldest turns (whole) with truncate: "oldest"', { timeout: 200000 }, async () => {
  const r = await page.evaluate(async () => {
    const { createEngine } = await import('/webllama.js');
    const engine = await createEngine({ model: 'models/SmolLM2-135M-Instruct.Q4_1.gguf', ctx: 96 });
    try {
      const long = 'Tell me about the history of printing in Europe and the people who built the first presses. '.repeat(2);
      const messages = [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: long },
        { role: 'assistant', content: long },
        { role: 'user', content: 'Name a color.' },
      ];
      let refused = null;
      try { await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 4 }); } catch (e) { refused = `${e.name}: ${e.message}`; }
      const kept = await engine.chat.completions.create({ messages, temperature: 0, max_tokens: 4, truncate: 'oldest' });
      // A turn goes whole: the long question takes its short answer with it, though the chat would
      // fit without the question alone.
      const turn = [messages[0], { role: 'user', content: long + long }, { role: 'assistant', content: 'Gutenberg.' }, messages[3]];
      const whole = await engine.chat.completions.create({ messages: turn, temperature: 0, max_tokens: 4, truncate: 'oldest' });
      const last = await engine.chat.completions.create({ messages: [messages[0], messages[3]], temperature: 0, max_tokens: 4 });
      return { refused, prompt_tokens: kept.usage.prompt_tokens, finish: kept.choices[0].finish_reason, whole: whole.usage.prompt_tokens, last: last.usage.prompt_tokens };
    } finally {
      await engine.unload();
    }
  });
  assert.match(r.refused, /^ContextLengthError: .*96/);
  assert.ok(r.prompt_tokens + 4 <= 96, `${r.prompt_tokens} prompt tokens`);
  assert.equal(r.finish, 'length');
  assert.equal(r.whole, r.last, 'the oldest turn went whole: question and answer');
});

test('the benchmark view reports prefill, decode and structured-output speed and the cost of a token', { timeout: 400000 }, async () => {
  // The short benchmark (8 tokens, 24 under the schema): SwiftShader decodes the default model at
  // ~1.5 tok/s, and the full one (32, and a 108-token JSON object twice) took 3.5 minutes.
  await page.evaluate(() => history.replaceState(null, '', '?bench=short'));
  await page.click('#bench');
  await page.waitForSelector('#bench-table:not([hidden])', { timeout: 380000 });
  const decode = Number(await page.getAttribute('#bench-table', 'data-decode'));
  const structured = Number(await page.getAttribute('#bench-table', 'data-structured'));
  const cells = await page.evaluate(() => [...document.querySelectorAll('#bench-table td')].map((td) => td.textContent));
  console.log(`benchmark view: ${cells.join(' | ')}`);
  assert.ok(decode > 0, `decode ${decode} tok/s`);
  assert.ok(structured > 0, `structured ${structured} tok/s`);
  assert.match(cells[3], /tokens under a JSON schema; \d+% of [\d.]+ tok\/s unconstrained from the same prompt/);
  assert.match(cells[2], /tok\/s \(8 tokens\)/);
  assert.match(cells[5], /\d+ dispatches \(30 layers\), 1 submit, 4 bytes read back/);
  await page.screenshot({ path: screenshotPath('bench.png'), fullPage: true });
});

test('a reload takes the model from storage (OPFS) without a network request', { timeout: 180000 }, async () => {
  const before = modelRequests();
  await page.reload();
  assert.equal(await loadFromPage('default'), 'ready', await page.textContent('#error'));
  assert.equal(modelRequests(), before, 'no request for the model after the reload');
  assert.match(await page.textContent('#model-status'), /from cache/);
});

test('a 404, a file that is not GGUF, a truncated GGUF and a lost GPU device each show a clear message; the page stays usable', { timeout: 240000 }, async () => {
  const cases = [
    ['models/missing.gguf', /NetworkError: HTTP 404/],
    ['models/not-a-model.gguf', /GgufError: not a GGUF file/],
    ['models/truncated.gguf', /GgufError: GGUF file is truncated/],
  ];
  for (const [url, want] of cases) {
    assert.equal(await loadFromPage('url', url), 'error', url);
    assert.match(await page.textContent('#error'), want, url);
    assert.equal(await page.isEnabled('#load'), true);
  }
  await page.screenshot({ path: screenshotPath('error.png'), fullPage: true });
  assert.equal(await loadFromPage('default'), 'ready', await page.textContent('#error'));
  assert.equal(await page.isEnabled('#prompt'), true);
  // A lost GPU device: the message names it, the page lets the engine go (nothing to send to) and
  // says to load again; a load works.
  await page.evaluate(() => window.webllamaApp.engine._loseDevice());
  await page.fill('#prompt', 'Hi');
  await page.click('#send');
  await page.waitForFunction(() => document.querySelector('#model-status').dataset.state === 'error', null, { timeout: 60000 });
  assert.match(await page.textContent('#error'), /^(DeviceLostError|GpuError): .*lost/i);
  assert.match(await page.textContent('#model-status'), /load it again/);
  assert.equal(await page.isEnabled('#send'), false);
  assert.equal(await page.evaluate(() => window.webllamaApp.engine), null);
  assert.equal(await loadFromPage('default'), 'ready', await page.textContent('#error'));
});
