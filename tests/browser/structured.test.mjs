// Structured output and log-probabilities through the JS API in headless Chromium (software WebGPU):
// JSON schemas (a nested object with an enum, an array with minItems/maxItems, required and
// optional fields; strings of at most 16 characters so that outputs stay short),
// greedy and sampled, n = 3, streamed and not: every choice parses with JSON.parse and follows its
// schema; sampled candidates equal the CLI's with the same seed; a regex grammar; a schema the
// library refuses is an InvalidRequestError; logprobs in OpenAI's chat and completions shapes.
// Kept to ~130 decode steps (SwiftShader decodes a few tokens a second).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { modelsDir, startServer, launch, openPage, CLI, MODEL_PATH } from './harness.mjs';
import { violations } from './schema.mjs';

const str = { type: 'string', maxLength: 16 };
const SCHEMAS = {
  nested: {
    type: 'object', additionalProperties: false, required: ['person'],
    properties: { person: { type: 'object', additionalProperties: false, required: ['name', 'mood'], properties: { name: str, mood: { enum: ['happy', 'sad', 'angry'] } } } },
  },
  array: {
    type: 'object', additionalProperties: false, required: ['colors'],
    properties: { colors: { type: 'array', items: str, minItems: 2, maxItems: 3 } },
  },
  optional: {
    type: 'object', additionalProperties: false, required: ['title'],
    properties: { title: str, year: { type: 'integer', minimum: 0, maximum: 3000 }, subtitle: str },
  },
};
const ASK = 'Answer in JSON.';

// Every choice finished, parses and follows `schema`.
function assertValid(name, choices, schema) {
  for (const c of choices) {
    const what = `${name}, choice ${c.index}: ${JSON.stringify(c.text)}`;
    assert.equal(c.finish_reason, 'stop', what);
    let v;
    assert.doesNotThrow(() => { v = JSON.parse(c.text); }, what);
    assert.deepEqual(violations(v, schema), [], what);
  }
}

// The CLI's candidates for the same chat message, schema, temperature, top_k (40), seed and n.
function nativeSchema(schema, temperature, n, seed) {
  const file = join(mkdtempSync(join(tmpdir(), 'webllama-schema-')), 'schema.json');
  writeFileSync(file, JSON.stringify(schema));
  const args = ['generate', '--model', MODEL_PATH, '--chat', ASK, '--json-schema', file, '--temperature', String(temperature), '--top-k', '40', '--seed', String(seed), '--n', String(n), '--max-tokens', '80', '--json'];
  const out = JSON.parse(execFileSync(CLI, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }));
  return (out.choices ?? [out]).map((c) => c.text);
}

let server;
let context;
let page;

before(async () => {
  server = await startServer(modelsDir());
  context = await launch();
  page = await openPage(context, server.url);
  await page.click('#load');
  await page.waitForFunction(() => document.querySelector('#model-status').dataset.state === 'ready', null, { timeout: 120000 });
});

after(async () => {
  await context?.close();
  server?.stop();
});

// One chat request in the page: {choices: [{index, text, finish_reason}], usage} whether streamed or not.
async function chat(req) {
  return page.evaluate(async ({ req, ask }) => {
    const engine = window.webllamaApp.engine;
    const full = { messages: [{ role: 'user', content: ask }], max_tokens: 80, ...req };
    if (!full.stream) {
      const r = await engine.chat.completions.create(full);
      return { choices: r.choices.map((c) => ({ index: c.index, text: c.message.content, finish_reason: c.finish_reason })), usage: r.usage, chunks: 0 };
    }
    const texts = [];
    const finish = [];
    let chunks = 0;
    let usage = null;
    for await (const chunk of engine.chat.completions.create(full)) {
      chunks += 1;
      for (const c of chunk.choices) {
        texts[c.index] = (texts[c.index] ?? '') + (c.delta.content ?? '');
        if (c.finish_reason) finish[c.index] = c.finish_reason;
      }
      if (chunk.usage) usage = chunk.usage;
    }
    return { choices: texts.map((text, index) => ({ index, text, finish_reason: finish[index] })), usage, chunks };
  }, { req, ask: ASK });
}

const schemaFormat = (name) => ({ type: 'json_schema', json_schema: { name, schema: SCHEMAS[name], strict: true } });

test('JSON schemas, greedy and sampled, n = 1 and 3, streamed and not: every choice parses and validates', { timeout: 240000 }, async () => {
  const cases = [
    // Three requests cover greedy and sampled, n = 1 and 3, streamed and not (SwiftShader takes
    // ~15 s a request); tests/structured.rs runs every schema natively, bounded numbers included.
    { name: 'nested', temperature: 0, n: 1, stream: true },
    { name: 'array', temperature: 0.7, n: 3, stream: false },
    { name: 'optional', temperature: 0.7, n: 3, stream: true },
  ];
  for (const { name, temperature, n, stream } of cases) {
    const t0 = Date.now();
    const r = await chat({ response_format: schemaFormat(name), temperature, n, seed: 3, top_k: 40, stream });
    console.log(`${name} t=${temperature} n=${n}${stream ? ` streamed in ${r.chunks} chunks` : ''}: ${r.usage.completion_tokens} tokens in ${((Date.now() - t0) / 1000).toFixed(1)} s\n  ${r.choices.map((c) => JSON.stringify(c.text)).join('\n  ')}`);
    assert.equal(r.choices.length, n);
    assertValid(name, r.choices, SCHEMAS[name]);
    if (stream) assert.ok(r.chunks > n, 'the JSON streamed in pieces');
    if (n === 3) {
      // The same seed gives the same candidates natively (CLI --json-schema) and in the page. top_k
      // keeps the draws off the tail, where the adapters' logits (SwiftShader's and lavapipe's differ
      // by ~1e-3) move the boundaries between many small probabilities.
      assert.deepEqual(r.choices.map((c) => c.text), nativeSchema(SCHEMAS[name], temperature, n, 3), `${name}: the CLI's candidates`);
    }
  }
});

test('a regex grammar; a refused schema or grammar is an InvalidRequestError', { timeout: 120000 }, async () => {
  const r = await chat({ grammar: { type: 'regex', definition: '[0-9]{4}-[0-9]{2}-[0-9]{2}' }, temperature: 0.7, seed: 1, max_tokens: 16 });
  console.log(`regex: ${JSON.stringify(r.choices[0].text)}`);
  assert.match(r.choices[0].text, /^[0-9]{4}-[0-9]{2}-[0-9]{2}$/);
  assert.equal(r.choices[0].finish_reason, 'stop');
  const errors = await page.evaluate(async () => {
    const engine = window.webllamaApp.engine;
    const messages = [{ role: 'user', content: 'hi' }];
    const tries = [
      { response_format: { type: 'json_schema', json_schema: { name: 'bad', schema: { type: 'nonsense' } } } },
      { grammar: { type: 'lark', definition: 'start: undefined_rule' } },
      { response_format: { type: 'json_object' }, grammar: { type: 'regex', definition: 'a' } },
    ];
    const out = [];
    for (const t of tries) {
      try {
        await engine.chat.completions.create({ messages, max_tokens: 4, ...t });
        out.push('no error');
      } catch (e) {
        out.push(`${e.name}: ${e.message}`);
      }
    }
    return out;
  });
  console.log(errors.join('\n'));
  for (const e of errors) assert.match(e, /^InvalidRequestError: /);
  assert.match(errors[0], /grammar or schema/);
  assert.match(errors[2], /not both/);
});

test('logprobs in OpenAI shapes: chat (top_logprobs) and completions (streamed per chunk)', { timeout: 120000 }, async () => {
  const r = await page.evaluate(async () => {
    const engine = window.webllamaApp.engine;
    const messages = [{ role: 'user', content: 'What is the capital of France?' }];
    const chatR = await engine.chat.completions.create({ messages, max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 3 });
    const plain = await engine.chat.completions.create({ messages, max_tokens: 1, temperature: 0 });
    const chunks = [];
    for await (const c of engine.completions.create({ prompt: 'The capital of France is', max_tokens: 3, temperature: 0, logprobs: 2, stream: true })) chunks.push(c);
    const refused = [];
    for (const bad of [{ logprobs: true, top_logprobs: 21 }, { top_logprobs: 2 }, { logprobs: 3 }]) {
      try {
        await engine.chat.completions.create({ messages, max_tokens: 1, ...bad });
        refused.push('no error');
      } catch (e) {
        refused.push(e.name);
      }
    }
    return { chatR, plain, chunks, refused };
  });
  const choice = r.chatR.choices[0];
  console.log(`chat: ${JSON.stringify(choice.message.content)}, ${JSON.stringify(choice.logprobs.content[0])}`);
  const content = choice.logprobs.content;
  assert.equal(content.length, r.chatR.usage.completion_tokens);
  assert.equal(content.map((e) => e.token).join(''), choice.message.content);
  for (const e of content) {
    assert.deepEqual(Object.keys(e).sort(), ['bytes', 'logprob', 'token', 'top_logprobs']);
    assert.ok(e.logprob <= 0 && Number.isFinite(e.logprob));
    assert.deepEqual(e.bytes, [...new TextEncoder().encode(e.token)]);
    assert.equal(e.top_logprobs.length, 3);
    assert.deepEqual(Object.keys(e.top_logprobs[0]).sort(), ['bytes', 'logprob', 'token']);
    assert.equal(e.top_logprobs[0].token, e.token, 'greedy: the chosen token is the most likely');
    assert.ok(e.top_logprobs.every((t, i, a) => i === 0 || a[i - 1].logprob >= t.logprob), 'sorted');
    assert.ok(e.top_logprobs.reduce((s, t) => s + Math.exp(t.logprob), 0) <= 1 + 1e-4);
  }
  assert.equal(r.plain.choices[0].logprobs, null, 'null when not asked for');
  // Completions: every chunk carries its tokens' logprobs; together they are the whole text's.
  const last = r.chunks.at(-1);
  assert.ok(last.usage && last.choices[0].finish_reason);
  const all = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let text = '';
  for (const c of r.chunks) {
    const lp = c.choices[0].logprobs;
    assert.deepEqual(Object.keys(lp).sort(), ['text_offset', 'token_logprobs', 'tokens', 'top_logprobs']);
    for (const k of Object.keys(all)) all[k].push(...lp[k]);
    text += c.choices[0].text;
  }
  console.log(`completion: ${JSON.stringify(text)}, ${JSON.stringify(all)}`);
  assert.equal(all.tokens.length, last.usage.completion_tokens);
  assert.equal(all.tokens.join(''), text);
  all.text_offset.forEach((o, i) => assert.equal(text.slice(o, o + all.tokens[i].length), all.tokens[i]));
  for (const [i, top] of all.top_logprobs.entries()) {
    assert.equal(Object.keys(top).length, 2);
    assert.equal(Math.max(...Object.values(top)), all.token_logprobs[i], 'greedy: the chosen token is the most likely');
  }
  assert.deepEqual(r.refused, ['InvalidRequestError', 'InvalidRequestError', 'InvalidRequestError']);
});
