// Chat completions on the engine (Node/Dawn), with the bundled demo model: real Qwen3 tokenizer, official Qwen3.5
// template, random weights. Greedy decoding makes runs comparable token for token.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import '../src/node/shaders-node.ts';
import { getNodeGpu } from '../src/node/dawn.ts';
import { dirSource } from '../src/node/fs-source.ts';
import { openChatModel, type ChatModel } from '../src/engine/chat-model.ts';
import type { ChatCompletionChunk } from '../src/engine/chat.ts';
import type { ChatMessage } from '../src/text/index.ts';

const dir = fileURLToPath(new URL('../public/models/qwen-webgpu-tiny', import.meta.url));
let m: ChatModel;

before(async () => {
  m = await openChatModel(await getNodeGpu(), dirSource(dir), 'tiny', { contextLength: 256 });
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
