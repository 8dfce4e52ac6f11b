// Tool calls through the JS API in headless Chromium (software WebGPU), with the default model's
// template (ChatML, no tools of its own: they go into the system prompt, Hermes-style): two tools
// and tool_choice "required" give a tool_calls entry whose arguments follow that tool's schema, with
// finish_reason "tool_calls", streamed (delta.tool_calls, no markup in delta.content) and not; a
// named function is the one called; the tool's result sent back as a role "tool" message continues
// the chat with a plain assistant message; bad tools are an InvalidRequestError.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { loadedPage } from './loaded.mjs';
import { violations } from './schema.mjs';

const TOOLS = [
  { type: 'function', function: { name: 'get_weather', description: 'The current weather in a city.', parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } }, required: ['city'] } } },
  { type: 'function', function: { name: 'get_time', description: 'The local time in a timezone.', parameters: { type: 'object', properties: { timezone: { type: 'string' } }, required: ['timezone'] } } },
];
// The tools with strings of at most 24 characters, for sampled calls (a sampled string may otherwise
// run to max_tokens).
const BOUNDED = TOOLS.map((t) => ({ ...t, function: { ...t.function, parameters: { ...t.function.parameters,
  properties: Object.fromEntries(Object.entries(t.function.parameters.properties).map(([k, p]) => [k, { ...p, maxLength: 24 }])) } } }));
// The tools and question of tests/tools.rs (the same prompt, so the same greedy replies as natively).
const QUESTION = { role: 'user', content: 'What is the weather in Paris?' };

let loaded;
let page;

before(async () => {
  loaded = await loadedPage();
  page = loaded.page;
});

after(async () => {
  await loaded?.close();
});

// A call in OpenAI's shape whose arguments follow its tool's schema.
function assertCall(call, what, tools = TOOLS) {
  assert.match(call.id, /^call_[0-9a-f]{24}$/, what);
  assert.equal(call.type, 'function', what);
  const tool = tools.find((t) => t.function.name === call.function.name);
  assert.ok(tool, `${what}: a call to one of the tools`);
  assert.equal(typeof call.function.arguments, 'string', what);
  let args;
  assert.doesNotThrow(() => { args = JSON.parse(call.function.arguments); }, what);
  assert.deepEqual(violations(args, tool.function.parameters), [], what);
}

test('tool_choice "required": a call whose arguments follow the schema; the result continues the chat', { timeout: 300000 }, async () => {
  const r = await page.evaluate(async ({ tools, question }) => {
    const engine = window.webllamaApp.engine;
    const t0 = Date.now();
    const asked = await engine.chat.completions.create({ messages: [question], tools, tool_choice: 'required', temperature: 0, max_tokens: 80 });
    const askMs = Date.now() - t0;
    const call = asked.choices[0].message.tool_calls?.[0];
    const result = { role: 'tool', tool_call_id: call?.id, content: '{"temperature": 18, "sky": "sunny"}' };
    const messages = [question, asked.choices[0].message, result];
    const answer = await engine.chat.completions.create({ messages, tools, temperature: 0, max_tokens: 40 });
    return { asked, answer, askMs, totalMs: Date.now() - t0 };
  }, { tools: TOOLS, question: QUESTION });
  const c = r.asked.choices[0];
  console.log(`required (${r.askMs} ms): ${JSON.stringify(c.message)} ${c.finish_reason}`);
  assert.equal(c.finish_reason, 'tool_calls');
  assert.equal(c.message.role, 'assistant');
  assert.equal(c.message.content, null);
  assert.equal(c.message.tool_calls.length, 1);
  assertCall(c.message.tool_calls[0], 'required');
  const a = r.answer.choices[0];
  console.log(`follow-up (${r.totalMs - r.askMs} ms): ${JSON.stringify(a.message)} ${a.finish_reason}`);
  assert.equal(a.message.role, 'assistant');
  assert.equal(a.message.tool_calls, undefined);
  assert.ok(typeof a.message.content === 'string' && a.message.content.trim().length > 0, 'a text answer');
  assert.ok(!a.message.content.includes('<tool_call>'), a.message.content);
  assert.ok(['stop', 'length'].includes(a.finish_reason), a.finish_reason);
});

test('streamed, n = 2 sampled, and a named function: delta.tool_calls, no markup in the content', { timeout: 300000 }, async () => {
  const r = await page.evaluate(async ({ tools, question }) => {
    const engine = window.webllamaApp.engine;
    const chunks = [];
    const req = { messages: [question], tools, tool_choice: 'required', temperature: 0.8, seed: 5, n: 2, max_tokens: 80, stream: true };
    for await (const chunk of engine.chat.completions.create(req)) chunks.push(chunk);
    const named = await engine.chat.completions.create({ messages: [question], tools, tool_choice: { type: 'function', function: { name: 'get_time' } }, temperature: 0, max_tokens: 80 });
    return { chunks, named };
  }, { tools: BOUNDED, question: QUESTION });
  for (const index of [0, 1]) {
    const mine = r.chunks.flatMap((ch) => ch.choices.filter((c) => c.index === index));
    const content = mine.map((c) => c.delta.content ?? '').join('');
    const calls = mine.flatMap((c) => c.delta.tool_calls ?? []);
    const finish = mine.map((c) => c.finish_reason).filter(Boolean);
    console.log(`stream choice ${index}: content ${JSON.stringify(content)}, calls ${JSON.stringify(calls)}, ${finish}`);
    assert.equal(content, '', 'the call markup is not streamed as content');
    assert.equal(calls.length, 1);
    assert.equal(calls[0].index, 0);
    assertCall(calls[0], `stream choice ${index}`, BOUNDED);
    assert.deepEqual(finish, ['tool_calls']);
  }
  assert.ok(r.chunks.at(-1).usage, 'usage on the last chunk');
  const n = r.named.choices[0];
  console.log(`named: ${JSON.stringify(n.message)}`);
  assert.equal(n.finish_reason, 'tool_calls');
  assert.equal(n.message.tool_calls[0].function.name, 'get_time');
  assertCall(n.message.tool_calls[0], 'named', BOUNDED);
});

test('tools or chat_template_kwargs that are not valid, and either on a completion, are an InvalidRequestError', { timeout: 60000 }, async () => {
  const errors = await page.evaluate(async ({ tools, question }) => {
    const engine = window.webllamaApp.engine;
    const tries = [
      { messages: [question], tools: { a: 1 } },
      { messages: [question], tools: [{ type: 'function', function: { name: 'bad name' } }] },
      { messages: [question], tools, tool_choice: { type: 'function', function: { name: 'nope' } } },
      { messages: [question], tools, tool_choice: 'required', response_format: { type: 'json_object' } },
      { prompt: 'hi', tools },
      { messages: [question], chat_template_kwargs: ['enable_thinking'] },
      { messages: [question], chat_template_kwargs: { messages: [] } },
      { prompt: 'hi', chat_template_kwargs: { enable_thinking: false } },
    ];
    const out = [];
    for (const t of tries) {
      try {
        await (t.prompt ? engine.completions : engine.chat.completions).create({ max_tokens: 4, ...t });
        out.push('no error');
      } catch (e) {
        out.push(`${e.name}: ${e.message}`);
      }
    }
    return out;
  }, { tools: TOOLS, question: QUESTION });
  console.log(errors.join('\n'));
  for (const e of errors) assert.match(e, /^InvalidRequestError: /);
  assert.match(errors[2], /not among the tools/);
  assert.match(errors[3], /no response_format or grammar/);
  assert.match(errors[5], /chat_template_kwargs must be an object/);
  // The engine's check (text::chat::template_kwargs).
  assert.match(errors[6], /chat_template_kwargs names "messages"/);
  assert.match(errors[7], /chat options/);
});

// (tests/chat.rs shows the kwargs changing Qwen3's and SmolLM3's prompts; the engine's refusal of
// "messages" above shows the page's kwargs reaching the prompt's render.)
test('chat_template_kwargs that the template does not read leave the prompt as it was', { timeout: 120000 }, async () => {
  const r = await page.evaluate(async ({ question }) => {
    const engine = window.webllamaApp.engine;
    const create = (extra) => engine.chat.completions.create({ messages: [question], max_tokens: 2, temperature: 0, ...extra });
    const plain = await create({});
    // SmolLM2's template reads no variable of its own: the same prompt.
    const unread = await create({ chat_template_kwargs: { enable_thinking: false } });
    return { plain: plain.usage.prompt_tokens, unread: unread.usage.prompt_tokens };
  }, { question: QUESTION });
  assert.equal(r.unread, r.plain);
});

test("the settings panel's thinking goes out as the template's enable_thinking", { timeout: 60000 }, async () => {
  // The request the chat panel makes, caught before it runs (its error shown, the turn dropped).
  const capture = () => page.evaluate(() => {
    const completions = window.webllamaApp.engine.chat.completions;
    const create = completions.create;
    window.caught = null;
    completions.create = (req) => { window.caught = req; completions.create = create; throw new Error('caught'); };
  });
  const sent = async () => {
    await page.fill('#prompt', 'Hi');
    await page.click('#send');
    await page.waitForFunction(() => window.caught !== null);
    return page.evaluate(() => window.caught.chat_template_kwargs ?? null);
  };
  await page.$eval('#settings', (d) => { d.open = true; });
  for (const [value, want] of [['false', { enable_thinking: false }], ['true', { enable_thinking: true }], ['', null]]) {
    await capture();
    await page.selectOption('#s-thinking', value);
    assert.deepEqual(await sent(), want, `thinking "${value}"`);
  }
});

test('reasoning_format "parsed": a leading think block goes to reasoning_content, whole and streamed', { timeout: 300000 }, async () => {
  const r = await page.evaluate(async ({ question }) => {
    const engine = window.webllamaApp.engine;
    // The default model does not think: a regex makes it write a think block, then an answer.
    const grammar = { type: 'regex', definition: '<think>\nwarm\n</think>\n\nSunny\\.' };
    const req = { messages: [question], max_tokens: 40, temperature: 0, grammar, reasoning_format: 'parsed' };
    const whole = await engine.chat.completions.create(req);
    let thought = '';
    let said = '';
    for await (const c of engine.chat.completions.create({ ...req, stream: true })) {
      thought += c.choices[0]?.delta.reasoning_content ?? '';
      said += c.choices[0]?.delta.content ?? '';
    }
    const { reasoning_format: _, ...asWritten } = req;
    const plain = await engine.chat.completions.create(asWritten);
    return { message: whole.choices[0].message, thought, said, plain: plain.choices[0].message };
  }, { question: QUESTION });
  assert.deepEqual(r.message, { role: 'assistant', content: 'Sunny.', reasoning_content: 'warm' });
  assert.equal(r.thought.trim(), 'warm');
  assert.equal(r.said, 'Sunny.');
  assert.deepEqual(r.plain, { role: 'assistant', content: '<think>\nwarm\n</think>\n\nSunny.' });
});

test("the chat panel shows a reply's thinking folded above its answer, as text", { timeout: 60000 }, async () => {
  // A reply as a reasoning model streams it, in place of the engine's (the panel's request caught).
  await page.evaluate(() => {
    const completions = window.webllamaApp.engine.chat.completions;
    const create = completions.create;
    completions.create = (req) => {
      completions.create = create;
      window.caughtFormat = req.reasoning_format;
      return (async function* () {
        const deltas = [{ role: 'assistant', reasoning_content: '<b>step</b> one' }, { reasoning_content: ', two' }, { content: 'The answer.' }];
        for (const delta of deltas) yield { choices: [{ index: 0, delta, finish_reason: null }] };
        yield { choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] };
      })();
    };
  });
  await page.fill('#prompt', 'Why?');
  await page.click('#send');
  await page.waitForFunction(() => document.querySelector('#conversation li.assistant:last-child')?.dataset.done === 'true');
  const shown = await page.$eval('#conversation li.assistant:last-child', (li) => ({
    thought: li.querySelector('.thinking .thought')?.textContent,
    bold: li.querySelector('.thinking b') !== null,
    folded: !li.querySelector('.thinking').open,
    answer: li.querySelector('.text').textContent,
  }));
  assert.equal(await page.evaluate(() => window.caughtFormat), 'parsed');
  assert.deepEqual(shown, { thought: '<b>step</b> one, two', bold: false, folded: true, answer: 'The answer.' });
});
