// Chat completions on the engine (Node/Dawn), with the bundled demo model: real Qwen3 tokenizer, official Qwen3.5
// template, random weights. Greedy decoding makes runs comparable token for token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import '../src/node/shaders-node.ts';
import { getNodeGpu } from '../src/node/dawn.ts';
import { dirSource } from '../src/node/fs-source.ts';
import { openChatModel, type ChatModel } from '../src/engine/chat-model.ts';
import { createChatSession, generationDefaults, type ChatCompletionChunk, type ChatSession } from '../src/engine/chat.ts';
import type { Engine, ForwardOptions } from '../src/engine/engine.ts';
import { uploadBytes } from '../src/gpu/context.ts';
import type { ChatMessage } from '../src/text/index.ts';

const dir = fileURLToPath(new URL('../public/models/qwen-webgpu-tiny', import.meta.url));
let m: ChatModel;

before(async () => {
  // Prefill chunks of 64: long prompts run in several, so an abort can land between them.
  m = await openChatModel(await getNodeGpu(), dirSource(dir), 'tiny', { contextLength: 256, prefillChunk: 64 });
});
after(() => m?.session.dispose());

const turn1: ChatMessage[] = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Name a colour.' }];

test('stream chunks add up to the response; usage and timings are reported', async () => {
  m.session.resetChat();
  const chunks: ChatCompletionChunk[] = [];
  const r = await m.session.complete({ messages: turn1, max_tokens: 6, temperature: 0 }, (c) => chunks.push(c));
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const streamed = chunks.map((c) => c.choices[0].delta.content ?? '').join('');
  assert.equal(streamed.trim(), r.choices[0].message.content);
  const last = chunks.at(-1)!;
  assert.equal(last.choices[0].finish_reason, 'length');
  assert.deepEqual(last.usage, r.usage);
  assert.equal(r.usage.completion_tokens, 6);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 6);
  assert.ok(r.usage.extra.time_to_first_token_s > 0 && r.usage.extra.decode_tokens_per_s > 0);
});

test('turn 2 reuses turn 1\'s state and equals a fresh full prefill (greedy)', async () => {
  m.session.resetChat();
  const r1 = await m.session.complete({ messages: turn1, max_tokens: 5, temperature: 0 });
  const turn2: ChatMessage[] = [...turn1, { role: 'assistant', content: r1.choices[0].message.content ?? '' }, { role: 'user', content: 'Another one?' }];
  const reused = await m.session.complete({ messages: turn2, max_tokens: 8, temperature: 0 });
  assert.ok(reused.usage.extra.reused_prompt_tokens > 0, 'turn 2 should start from turn 1\'s state');
  m.session.resetChat();
  const fresh = await m.session.complete({ messages: turn2, max_tokens: 8, temperature: 0 });
  assert.equal(fresh.usage.extra.reused_prompt_tokens, 0);
  assert.equal(reused.choices[0].message.content, fresh.choices[0].message.content);
  console.log(`turn 2: ${reused.usage.extra.reused_prompt_tokens}/${reused.usage.prompt_tokens} prompt tokens reused; same greedy reply as a fresh prefill`);
});

test('a seed reproduces a sampled reply', async () => {
  const req = { messages: turn1, max_tokens: 6, temperature: 0.9, top_k: 40, top_p: 0.95, seed: 1234 };
  m.session.resetChat();
  const a = await m.session.complete(req);
  m.session.resetChat();
  const b = await m.session.complete(req);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test('abort stops generation with finish_reason "abort" and leaves the session usable', async () => {
  m.session.resetChat();
  const ac = new AbortController();
  let n = 0;
  const r = await m.session.complete({ messages: turn1, max_tokens: 50, temperature: 0 }, (c) => {
    if (c.choices[0].delta.content && ++n === 2) ac.abort();
  }, ac.signal);
  assert.equal(r.choices[0].finish_reason, 'abort');
  assert.ok(r.usage.completion_tokens < 50);
  const next = await m.session.complete({ messages: turn1, max_tokens: 3, temperature: 0 });
  assert.equal(next.usage.completion_tokens, 3);
});

test('stop strings end the reply before the stop text', async () => {
  m.session.resetChat();
  const full = await m.session.complete({ messages: turn1, max_tokens: 8, temperature: 0 });
  const text = full.choices[0].message.content!;
  const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 2);
  assert.ok(stop.length === 2, `reply too short to test stop strings: ${JSON.stringify(text)}`);
  m.session.resetChat();
  const cut = await m.session.complete({ messages: turn1, max_tokens: 8, temperature: 0, stop: [stop] });
  assert.equal(cut.choices[0].finish_reason, 'stop');
  assert.equal(cut.choices[0].message.content, text.slice(0, text.indexOf(stop)).trim());
});

test('context overflow and template errors are clear and leave the session usable', async () => {
  const long: ChatMessage[] = [{ role: 'user', content: 'word '.repeat(400) }];
  await assert.rejects(m.session.complete({ messages: long, max_tokens: 4 }), /context overflow: the prompt has \d+ tokens, the context length is 256/);
  await assert.rejects(m.session.complete({ messages: [], max_tokens: 4 }), /No (user query|messages)/i);
  const ok = await m.session.complete({ messages: turn1, max_tokens: 2, temperature: 0 });
  assert.equal(ok.usage.completion_tokens, 2);
});

/**
 * A second session on the same engine whose forward calls (engine.forward and engine.sample, n counts them from 1)
 * run with the options `wrap` returns.
 */
function spySession(wrap: (n: number, ids: number[] | 'sampled', opts: ForwardOptions) => ForwardOptions): ChatSession {
  let n = 0;
  const forward: Engine['forward'] = (ids, finish, read, opts = {}) => m.engine.forward(ids, finish, read, wrap(++n, ids, opts));
  const sample: Engine['sample'] = (ids, s, p, u, opts = {}) => m.engine.sample(ids, s, p, u, wrap(++n, ids, opts));
  const engine: Engine = Object.create(m.engine, { forward: { value: forward }, sample: { value: sample } });
  return createChatSession(engine, m.tokenizer, {
    modelId: 'tiny-spy', template: m.template, generation: generationDefaults(undefined, m.engine.config.eosTokenIds),
  });
}

const longChat: ChatMessage[] = [{ role: 'user', content: 'Tell me about colours, one by one. '.repeat(16) }];

test('abort during prefill: takes effect between chunks, emits no token, and the next completion equals a fresh one', async () => {
  m.session.resetChat();
  const ac = new AbortController();
  const progress: number[][] = [];
  // Aborted as soon as the first prefill chunk has run.
  const session = spySession((_, ids, opts) => ({
    ...opts, onProgress: (done: number, total: number) => { progress.push([done, total]); ac.abort(); },
  }));
  try {
    const chunks: ChatCompletionChunk[] = [];
    const r = await session.complete({ messages: longChat, max_tokens: 6, temperature: 0 }, (c) => chunks.push(c), ac.signal);
    assert.ok(r.usage.prompt_tokens > 128, `prompt of ${r.usage.prompt_tokens} tokens should need 3+ chunks`);
    assert.equal(progress.length, 1, `one chunk should run before the abort, ran ${JSON.stringify(progress)}`);
    assert.equal(progress[0][0], 64);
    assert.equal(m.engine.position, 64);
    assert.equal(r.choices[0].finish_reason, 'abort');
    assert.equal(r.usage.completion_tokens, 0);
    assert.equal(r.choices[0].message.content, '');
    assert.ok(chunks.every((c) => !c.choices[0].delta.content && !c.choices[0].delta.reasoning_content), 'no token text streamed');
    assert.equal(chunks.at(-1)!.choices[0].finish_reason, 'abort');

    // Aborted once the generation prompt's forward (call 2, after the history) has sampled the first token: still
    // no token.
    const lateAc = new AbortController();
    const late = spySession((n, ids, opts) => ({
      ...opts, onProgress: (done: number, total: number) => { if (n === 2 && done === total) lateAc.abort(); },
    }));
    const r2 = await late.complete({ messages: turn1, max_tokens: 6, temperature: 0 }, undefined, lateAc.signal);
    assert.equal(r2.choices[0].finish_reason, 'abort');
    assert.equal(r2.usage.completion_tokens, 0);
    late.dispose();

    // The aborted session continues from the 64 tokens that ran; its reply equals a fresh session's.
    const next = await session.complete({ messages: longChat, max_tokens: 6, temperature: 0 });
    assert.equal(next.usage.extra.reused_prompt_tokens, 64);
    session.resetChat();
    const fresh = await session.complete({ messages: longChat, max_tokens: 6, temperature: 0 });
    assert.equal(fresh.usage.extra.reused_prompt_tokens, 0);
    assert.equal(next.choices[0].message.content, fresh.choices[0].message.content);
    assert.equal(next.usage.completion_tokens, fresh.usage.completion_tokens);
  } finally {
    session.dispose();
    m.session.resetChat();
  }
});

test('NaN logits on the sampling path: the completion fails naming the step and the index, never token 0', async () => {
  m.session.resetChat();
  const ctx = m.engine.gpu;
  const nan = uploadBytes(ctx, new Float32Array([NaN]));
  const ok = await m.session.complete({ messages: turn1, max_tokens: 3, temperature: 0 });
  const L = ok.usage.prompt_tokens;
  // Forward calls of a fresh turn-1 completion: 1 the history, 2 the generation prompt (samples the first token),
  // 3 and 4 the decode steps at positions L and L + 1. The NaN is copied into logit 3 between the forward and
  // the sampling kernels, where no load-time check could see it.
  for (const [call, step] of [[2, `prefill of positions \\d+\\.\\.${L - 1}`], [4, `decode at position ${L + 1}`]] as const) {
    const session = spySession((n, ids, opts) => (n !== call ? opts : {
      ...opts, tapLogits: (enc: GPUCommandEncoder, logits: GPUBuffer) => enc.copyBufferToBuffer(nan, 0, logits, 12, 4),
    }));
    await assert.rejects(session.complete({ messages: turn1, max_tokens: 6, temperature: 0.7, seed: 1 }), new RegExp(`non-finite logits after ${step} \\(NaN at vocab index 3\\)`));
    session.dispose();
  }
  nan.destroy();
  // The model's own session is unharmed.
  m.session.resetChat();
  const again = await m.session.complete({ messages: turn1, max_tokens: 3, temperature: 0 });
  assert.equal(again.choices[0].message.content, ok.choices[0].message.content);
});

test('pipelined decode (token t+1 queued before t is read) gives the same replies, stops and turn 2 as waiting for each id', async () => {
  // The ids the engine draws, to pick a token of the greedy reply as an end-of-sequence id: the pipeline then
  // has the step after it queued already, and must drop that step's draw.
  const drawn: number[] = [];
  const engine: Engine = Object.create(m.engine, {
    sample: { value: (...a: Parameters<Engine['sample']>) => m.engine.sample(...a).then((s) => { drawn.push(s.id); return s; }) },
  });
  const session = (pipeline: boolean, eos: number[]) => createChatSession(engine, m.tokenizer, {
    modelId: 'tiny', template: m.template, pipeline,
    generation: { ...generationDefaults(undefined, m.engine.config.eosTokenIds), eosTokenIds: eos },
  });
  const probe = session(false, m.engine.config.eosTokenIds);
  await probe.complete({ messages: turn1, max_tokens: 8, temperature: 0 });
  probe.dispose();
  const stopId = drawn[3];

  type Run = { text: string[]; finish: string[]; reused: number; turn2Fresh: string };
  const conversation = async (pipeline: boolean): Promise<Run> => {
    const s = session(pipeline, [stopId]);
    const out: Run = { text: [], finish: [], reused: 0, turn2Fresh: '' };
    try {
      const cases = [
        { messages: turn1, max_tokens: 12, temperature: 0 }, // ends at stopId, an "eos" drawn mid-pipeline
        { messages: turn1, max_tokens: 3, temperature: 0 }, // ends by max_tokens
        { messages: turn1, max_tokens: 10, temperature: 0.9, top_k: 50, seed: 7 }, // sampled
      ];
      for (const req of cases) {
        s.resetChat();
        const r = await s.complete(req);
        out.text.push(r.choices[0].message.content ?? '');
        out.finish.push(r.choices[0].finish_reason);
      }
      // Turn 2 after a reply that ended at the end-of-sequence id: the state it continues from is the kept history.
      s.resetChat();
      const r1 = await s.complete({ messages: turn1, max_tokens: 12, temperature: 0 });
      const turn2: ChatMessage[] = [...turn1, { role: 'assistant', content: r1.choices[0].message.content ?? '' }, { role: 'user', content: 'And another?' }];
      const r2 = await s.complete({ messages: turn2, max_tokens: 6, temperature: 0 });
      out.text.push(r2.choices[0].message.content ?? '');
      out.reused = r2.usage.extra.reused_prompt_tokens;
      s.resetChat();
      out.turn2Fresh = (await s.complete({ messages: turn2, max_tokens: 6, temperature: 0 })).choices[0].message.content ?? '';
    } finally {
      s.dispose();
    }
    return out;
  };
  const waited = await conversation(false);
  const pipelined = await conversation(true);
  assert.equal(waited.finish[0], 'stop', 'the chosen id ends the first reply');
  assert.deepEqual(pipelined.text, waited.text);
  assert.deepEqual(pipelined.finish, waited.finish);
  assert.ok(pipelined.reused > 0 && waited.reused > 0, 'turn 2 continues from turn 1 in both');
  assert.equal(pipelined.text.at(-1), pipelined.turn2Fresh, 'pipelined turn 2 equals a fresh prefill');
  assert.equal(waited.text.at(-1), waited.turn2Fresh);
  m.session.resetChat();
});
