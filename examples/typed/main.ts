// Uses every part of webllama's public API with its types; `tsc --noEmit -p examples/typed` checks it
// (tests/browser/package.test.mjs runs it, and again against the packed package's own types).
import {
  createEngine, resolveModelUrl, listCachedModels, deleteCachedModel, clearCache, storageEstimate, HF_BASE_URL,
  type Engine, type CreateEngineOptions, type ProgressEvent, type ChatMessage, type ChatCompletion, type ChatCompletionChunk,
  type Completion, type CompletionChunk, type CachedModel, type StorageEstimateResult, type WebllamaError, type WebllamaErrorName,
  type EngineStats, type FinishReason, type LoadPhase, type Usage, type Timings, type TokenLogprob, type CompletionLogprobs,
  type FunctionTool, type ToolChoice, type ToolCall, type ToolCallDelta, type AssistantMessage,
} from 'webllama';

const phases: Record<LoadPhase, string> = { download: 'Downloading', upload: 'Uploading to the GPU', compile: 'Compiling shaders' };

function describe(p: ProgressEvent): string {
  const pct = p.total ? ` ${Math.round((100 * p.loaded) / p.total)}%` : '';
  const rate = p.phase === 'compile' ? '' : ` ${p.mbPerS.toFixed(1)} MB/s`;
  const eta = p.etaS === null ? '' : `, ${Math.ceil(p.etaS)} s left`;
  return `${phases[p.phase]} (${p.source})${pct}${rate}${eta} after ${p.elapsedMs.toFixed(0)} ms`;
}

const errorNames: WebllamaErrorName[] = [
  'InvalidRequestError', 'NetworkError', 'IntegrityError', 'AbortError', 'GgufError', 'UnsupportedModelError', 'TokenizerError',
  'TemplateError', 'ContextLengthError', 'GpuError', 'GpuOutOfMemoryError', 'DeviceLostError', 'IoError', 'EngineCrashedError', 'WorkerError',
];

function explain(e: unknown): string {
  const err = e as WebllamaError;
  if (!errorNames.includes(err.name)) return String(e);
  switch (err.name) {
    case 'NetworkError': return `download failed: ${err.message}`;
    case 'DeviceLostError': return 'the GPU was reset: load the model again';
    case 'GpuOutOfMemoryError': return `the model does not fit this GPU (${err.wasmMemoryBytes ?? '?'} bytes of wasm memory)`;
    default: return `${err.name}: ${err.message}`;
  }
}

export async function run(log: (line: string) => void): Promise<void> {
  const options: CreateEngineOptions = {
    // The default model beside the page; an hf: source works the same way (hf:owner/repo/file.gguf@rev).
    model: './models/SmolLM2-135M-Instruct.Q4_1.gguf',
    hfBaseUrl: HF_BASE_URL,
    onProgress: (p) => log(describe(p)),
    ctx: 2048,
    integrity: 'b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53',
    layout: 'gpu',
    signal: AbortSignal.timeout(600_000),
    stallTimeoutMs: 30_000,
    persist: true,
  };
  log(`fetching ${resolveModelUrl(options.model as string, { hfBaseUrl: options.hfBaseUrl })}`);
  let engine: Engine;
  try {
    engine = await createEngine(options);
  } catch (e) {
    log(explain(e));
    return;
  }
  const stats: EngineStats = engine.stats;
  log(`${stats.model} on ${stats.adapter} (${stats.layout}), from ${stats.source}, stored in ${stats.storage}, persisted: ${stats.persisted}`);
  log(`compile took ${stats.phases?.compile?.ms ?? '?'} ms; ${stats.info?.n_layers} layers`);

  const messages: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hello!' }];
  let text = '';
  for await (const chunk of engine.chat.completions.create({ messages, stream: true, temperature: 0, max_tokens: 32, stop: ['\n\n'] })) {
    const c: ChatCompletionChunk = chunk;
    text += c.choices[0]?.delta.content ?? '';
    if (c.usage) log(`usage: ${c.usage.total_tokens} tokens`);
  }
  log(text);

  const reply: ChatCompletion = await engine.chat.completions.create({ messages, temperature: 0.7, top_p: 0.9, seed: 1, n: 2, truncate: 'oldest' });
  const reasons: FinishReason[] = reply.choices.map((c) => c.finish_reason);
  const usage: Usage = reply.usage;
  const timings: Timings = reply.timings;
  log(`${reply.choices[0].message.content} (${reasons.join(', ')}; ${usage.completion_tokens} tokens at ${timings.decode_tok_s.toFixed(1)} tok/s)`);

  const completion: Completion = await engine.completions.create({
    prompt: 'Once upon a time,', max_tokens: 8, top_k: 40, min_p: 0.05, repetition_penalty: 1.1, penalty_last_n: 64,
    frequency_penalty: 0.1, presence_penalty: 0.1, logit_bias: { '42': -100 }, ignore_eos: true,
  });
  log(completion.choices[0].text);
  for await (const chunk of engine.completions.create({ prompt: 'The sky is', max_tokens: 4, stream: true })) {
    const c: CompletionChunk = chunk;
    log(c.choices[0]?.text ?? '');
    engine.abort();
  }

  // Structured output and log-probabilities.
  const person: ChatCompletion = await engine.chat.completions.create({
    messages: [{ role: 'user', content: 'A person as JSON.' }], max_tokens: 64, logprobs: true, top_logprobs: 2,
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema: { type: 'object', properties: { name: { type: 'string', maxLength: 16 } } } } },
  });
  const first: TokenLogprob | undefined = person.choices[0].logprobs?.content[0];
  log(`${JSON.parse(person.choices[0].message.content ?? '{}').name}: ${first?.token} ${first?.logprob} (${first?.top_logprobs.map((t) => t.token).join(', ')})`);
  const date: Completion = await engine.completions.create({ prompt: 'Today is', grammar: { type: 'regex', definition: '[0-9]{4}-[0-9]{2}-[0-9]{2}' }, logprobs: 1 });
  const lp: CompletionLogprobs | null = date.choices[0].logprobs;
  log(`${date.choices[0].text}: ${lp?.tokens.join('|')} at ${lp?.text_offset.join(',')}`);

  // Tool calls: a forced call's arguments follow its schema; the result goes back as a tool message.
  const tools: FunctionTool[] = [
    { type: 'function', function: { name: 'get_weather', description: 'The weather in a city.', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } },
    { type: 'function', function: { name: 'get_time', parameters: { type: 'object', properties: { timezone: { type: 'string' } } } } },
  ];
  const choice: ToolChoice = 'required';
  const chat: ChatMessage[] = [{ role: 'user', content: 'What is the weather in Paris?' }];
  const asked: ChatCompletion = await engine.chat.completions.create({ messages: chat, tools, tool_choice: choice, temperature: 0 });
  const said: AssistantMessage = asked.choices[0].message;
  const calls: ToolCall[] = said.tool_calls ?? [];
  chat.push(said);
  for (const call of calls) chat.push({ role: 'tool', tool_call_id: call.id, content: JSON.stringify({ called: call.function.name, args: JSON.parse(call.function.arguments) }) });
  for await (const chunk of engine.chat.completions.create({ messages: chat, tools, tool_choice: { type: 'function', function: { name: 'get_time' } }, stream: true })) {
    const deltas: ToolCallDelta[] = chunk.choices[0]?.delta.tool_calls ?? [];
    for (const d of deltas) log(`call ${d.index}: ${d.function.name}(${d.function.arguments}) ${chunk.choices[0].finish_reason ?? ''}`);
  }
  await engine.resetChat();
  await engine.unload();

  const models: CachedModel[] = await listCachedModels();
  for (const m of models) log(`${m.url}: ${m.bytes} bytes, stored ${m.storedAt ? new Date(m.storedAt).toISOString() : '?'}, verified ${m.verified} (${m.sha256 ?? '-'}) in ${m.storage}`);
  const before: StorageEstimateResult = await storageEstimate();
  if (models[0]) await deleteCachedModel(models[0].url);
  const dropped: number = await clearCache();
  const after = await storageEstimate();
  log(`dropped ${dropped}; usage ${before.usage} -> ${after.usage} of ${after.quota} (persisted: ${after.persisted})`);
}
