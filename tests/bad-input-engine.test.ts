// The engine under bad numbers and bad options: a NaN / ±inf (or an overflowing quantization scale) planted in a
// tiny checkpoint is refused at load naming the tensor; logits that overflow in the forward are refused naming the
// step, on the readback path and the GPU sampling path alike; an abort between prefill chunks; context options.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import '../src/node/shaders-node.ts';
import { getNodeGpu } from '../src/node/dawn.ts';
import { readF32 } from '../src/gpu/context.ts';
import { createSampler, destroySampler, readSampled, sampleToken, type SamplingParams } from '../src/gpu/sample.ts';
import { makeTinyCheckpoint, type TinyRecipe } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { parseSafetensorsHeader } from '../src/format/safetensors.ts';
import { encodeFloats, type FloatDType } from '../src/format/dtype.ts';
import { argmax, isAbortError, loadEngine } from '../src/engine/engine.ts';
import { firstNonFinite } from '../src/engine/load.ts';

const FILE = 'model.safetensors';
const raw = (path: string) => `language_model.model.${path}`;

/** Overwrites elements of one stored tensor in place (the tiny recipes used here are single-file). */
async function plant(files: Map<string, Uint8Array>, name: string, values: (n: number) => Map<number, number>): Promise<void> {
  const header = await parseSafetensorsHeader(FILE, memorySource(files));
  const e = header.tensors.get(name);
  assert.ok(e, `test setup: no tensor ${name}`);
  const size = e.dtype === 'F32' ? 4 : 2;
  const bytes = files.get(FILE)!;
  for (const [i, v] of values((e.end - e.begin) / size)) bytes.set(encodeFloats([v], e.dtype as FloatDType), e.begin + i * size);
}
const one = (i: number, v: number) => () => new Map([[i, v]]);

async function tinyWith(recipe: TinyRecipe, name: string, values: (n: number) => Map<number, number>) {
  const files = makeTinyCheckpoint(recipe, { seed: 7 });
  await plant(files, name, values);
  return memorySource(files, `tiny-${recipe}`);
}

const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('firstNonFinite: NaN and ±inf of each dtype by their bits, the largest finite values pass, any byte offset', () => {
  const at = (words: number[], bytesPer: 2 | 4, offset: number) => {
    const b = new Uint8Array(offset + words.length * bytesPer);
    words.forEach((w, i) => { for (let k = 0; k < bytesPer; k++) b[offset + i * bytesPer + k] = (w >>> (8 * k)) & 0xff; });
    return b.subarray(offset);
  };
  for (const offset of [0, 1, 2, 3, 4]) { // 0 and 4: the word path (and its tail); else bytes
    // bf16: 0x7f7f = 3.39e38 (max finite), 0xff80 = −inf, 0x7fc1 = NaN
    assert.equal(firstNonFinite(at([0x3f80, 0x7f7f, 0xff7f, 0xff80], 2, offset), 'BF16'), 3);
    assert.equal(firstNonFinite(at([0x7fc1, 0], 2, offset), 'BF16'), 0);
    assert.equal(firstNonFinite(at([0x3f80, 0x7f7f, 0x0080], 2, offset), 'BF16'), -1);
    // f16: 0x7bff = 65504 (max finite), 0x7c00 = +inf, 0xfe00 = NaN
    assert.equal(firstNonFinite(at([0x7bff, 0xfbff, 0x7c00], 2, offset), 'F16'), 2);
    assert.equal(firstNonFinite(at([0x3c00, 0xfe00], 2, offset), 'F16'), 1);
    assert.equal(firstNonFinite(at([0x7bff, 0x03ff], 2, offset), 'F16'), -1);
    // f32: 0x7f7fffff = FLT_MAX, 0x7f800001 = NaN
    assert.equal(firstNonFinite(at([0x7f7fffff, 0xff7fffff, 0x7f800001], 4, offset), 'F32'), 2);
    assert.equal(firstNonFinite(at([0x7f7fffff, 0x00800000], 4, offset), 'F32'), -1);
  }
});

test('argmax: lowest index on ties; a NaN is an error, not index 0', () => {
  assert.equal(argmax(new Float32Array([1, 3, 3, -Infinity])), 1);
  assert.throws(() => argmax(new Float32Array([1, NaN, 3])), /argmax: NaN at index 1 of 3/);
});

test('load refuses a NaN / ±inf in any float tensor or scales/biases, naming the tensor, the index and the value', async () => {
  const ctx = await getNodeGpu();
  const cases: [TinyRecipe, string, number, number, string][] = [
    ['bf16', raw('layers.2.post_attention_layernorm.weight'), 7, NaN, '(BF16 [256]) holds NaN at index 7;'],
    ['bf16', raw('layers.1.linear_attn.A_log'), 3, Infinity, '(F32 [4]) holds Infinity at index 3;'],
    ['bf16', raw('layers.0.linear_attn.dt_bias'), 0, -Infinity, '(BF16 [4]) holds -Infinity at index 0;'],
    ['bf16', raw('layers.0.linear_attn.conv1d.weight'), 9, NaN, '(BF16 [256, 4, 1]) holds NaN at index 9 (element [2, 1, 0]);'],
    ['bf16', raw('embed_tokens.weight'), 1000, Infinity, '(BF16 [1024, 256]) holds Infinity at index 1000 (element [3, 232]);'],
    ['q4g32', raw('layers.1.mlp.down_proj.scales'), 37, NaN, '(BF16 [256, 16]) holds NaN at index 37 (element [2, 5]);'],
    ['q4g32', raw('layers.3.self_attn.q_proj.biases'), 0, -Infinity, '(BF16 [512, 8]) holds -Infinity at index 0 (element [0, 0]);'],
  ];
  for (const [recipe, name, index, value, what] of cases) {
    const src = await tinyWith(recipe, name, one(index, value));
    await assert.rejects(loadEngine(ctx, src, { contextLength: 8 }), (e: Error) => {
      assert.match(e.message, new RegExp(`${esc(`${FILE}: tensor "${name}" ${what}`)} the weights must be finite`));
      return true;
    });
  }
});

test('load refuses an affine scale whose dequantized weights overflow f32, and accepts one just below', async () => {
  const ctx = await getNodeGpu();
  const name = raw('layers.0.mlp.up_proj.scales'); // q8g128: 8-bit, [512, 256 / 128]
  // |s|·255 + |b| against FLT_MAX = 3.40e38: bf16(1.4e36)·255 ≈ 3.57e38 overflows, bf16(1.3e36)·255 ≈ 3.32e38 does not.
  for (const s of [3e38, 1.4e36]) {
    const src = await tinyWith('q8g128', name, one(1, s));
    await assert.rejects(loadEngine(ctx, src, { contextLength: 8 }),
      new RegExp(`${esc(`tensor "${name}" (BF16 [512, 2]): scale `)}\\S+ at index 1 \\(element \\[0, 1\\]\\) with bias \\S+ ` +
        `overflows f32 when dequantized: \\|scale\\|·255 \\+ \\|bias\\| = \\S+ > 3\\.4028e\\+38 \\(8-bit\\)`));
  }
  const engine = await loadEngine(ctx, await tinyWith('q8g128', name, one(1, 1.3e36)), { contextLength: 8 });
  engine.dispose();
});

test('load refuses the NaN codes of one-byte formats (E8M0 255, E4M3 0x7f / 0xff) and an E8M0 scale that overflows', async () => {
  const ctx = await getNodeGpu();
  const hf = (path: string) => `model.language_model.${path}`;
  const cases: [TinyRecipe, string, number, number, RegExp][] = [
    ['udmxfp8', raw('layers.0.mlp.up_proj.scales'), 5, 255, /\(U8 \[512, 8\]\) holds the NaN code 0xff \(e8m0\) at index 5 \(element \[0, 5\]\); the scales must be finite/],
    ['udnvfp4', raw('layers.2.linear_attn.in_proj_z.scales'), 16, 0x7f, /\(U8 \[128, 16\]\) holds the NaN code 0x7f \(e4m3\) at index 16 \(element \[1, 0\]\)/],
    ['qwenfp8', hf('layers.1.mlp.down_proj.weight'), 300, 0xff, /\(F8_E4M3 \[256, 512\]\) holds the E4M3 NaN code 0xff at byte 300; the weights must be finite/],
    // 2^127 · 448 > FLT_MAX: finite codes whose product is not.
    ['udmxfp8', raw('layers.0.mlp.gate_proj.scales'), 2, 254, /scale 1\.7\d+e\+38 at index 2 \(element \[0, 2\]\) overflows f32 when dequantized: \|scale\|·448 = \S+ > 3\.4028e\+38 \(mxfp8 8-bit\)/],
  ];
  for (const [recipe, name, index, code, want] of cases) {
    const files = makeTinyCheckpoint(recipe, { seed: 7 });
    const e = (await parseSafetensorsHeader(FILE, memorySource(files))).tensors.get(name);
    assert.ok(e, `test setup: no tensor ${name}`);
    files.get(FILE)![e.begin + index] = code;
    await assert.rejects(loadEngine(ctx, memorySource(files, `tiny-${recipe}`), { contextLength: 8, tuning: 'default' }), (err: Error) => {
      assert.match(err.message, new RegExp(esc(`${FILE}: tensor "${name}"`)));
      assert.match(err.message, want);
      return true;
    });
  }
});

test('logits that overflow in the forward: readback, generate and GPU sampling all name the step and the first bad logit', async () => {
  const ctx = await getNodeGpu();
  // A final norm gain of 3e38 on channel 5 and weight 100 at channel 5 of lm_head rows 700 and 900 (tied: the
  // embedding) are all finite, so load accepts them, but 3e38·100·n₅ overflows f32 in those two logits only: a
  // fault only the logits can show. The final norm feeds no state and the prompt avoids ids 700 and 900, so the
  // sequence itself stays sound.
  const files = makeTinyCheckpoint('bf16', { seed: 7 });
  await plant(files, raw('norm.weight'), one(5, 3e38));
  await plant(files, raw('embed_tokens.weight'), () => new Map([[700 * 256 + 5, 100], [900 * 256 + 5, 100]]));
  const engine = await loadEngine(ctx, memorySource(files, 'tiny-bf16-overflowing'), { contextLength: 16 });
  const V = engine.config.vocabSize;
  const sampler = createSampler(ctx, V, V);
  try {
    // Oracle: the unchecked logits, read through forward's finish hook.
    let logitsBuf: GPUBuffer | undefined;
    const rawLogits = await engine.forward([1, 2, 3], (_, l) => { logitsBuf = l; }, () => readF32(ctx, logitsBuf!, V));
    const nonFinite = [...rawLogits.keys()].filter((i) => !Number.isFinite(rawLogits[i]));
    assert.deepEqual(nonFinite, [700, 900], 'the planted weights overflow exactly their two logits');
    const bad = 700;

    engine.reset();
    await assert.rejects(engine.prefill([1, 2, 3]),
      new RegExp(`non-finite logits after prefill of positions 0\\.\\.2 \\(${rawLogits[bad]} at vocab index ${bad}\\)`));
    assert.equal(engine.position, 3);
    await assert.rejects(engine.decode(4), /non-finite logits after decode at position 3 \((NaN|-?Infinity) at vocab index \d+\)/);
    engine.reset();
    await assert.rejects(engine.generate([1, 2, 3], 4), /non-finite logits after prefill of positions 0\.\.2 /);

    const greedy: SamplingParams = { temperature: 0, topK: 0, topP: 1, minP: 0, presencePenalty: 0, repetitionPenalty: 1 };
    for (const params of [greedy, { ...greedy, temperature: 0.7, topK: 20, topP: 0.8 }, { ...greedy, temperature: 1 }]) {
      engine.reset();
      const s = await engine.forward([1, 2, 3], (rec, l) => sampleToken(rec, sampler, l, params, 0.5), () => readSampled(ctx, sampler));
      assert.deepEqual(s.nonFinite, { index: bad, value: rawLogits[bad] }, `T=${params.temperature} k=${params.topK}`);
    }
  } finally {
    destroySampler(sampler);
    engine.dispose();
  }
});

test('abort between prefill chunks: no further chunk runs, the engine keeps what ran and continues exactly', async () => {
  const ctx = await getNodeGpu();
  const engine = await loadEngine(ctx, memorySource(makeTinyCheckpoint('q4g32', { seed: 3 }), 'tiny-q4g32'), { contextLength: 16, prefillChunk: 4 });
  try {
    const ids = [5, 9, 17, 33, 65, 129, 257, 513, 7, 11];
    const ac = new AbortController();
    const seen: number[] = [];
    await assert.rejects(engine.prefill(ids, { signal: ac.signal, onProgress: (done) => { seen.push(done); ac.abort(); } }),
      (e) => isAbortError(e) && /forward aborted after 4 of 10 tokens/.test((e as Error).message));
    assert.deepEqual(seen, [4], 'exactly one chunk ran');
    assert.equal(engine.position, 4);
    // Continuing from the abort point splits the prompt at the same chunk boundaries (4, 4, 2) as one fresh prefill.
    const continued = await engine.prefill(ids.slice(4));
    engine.reset();
    const fresh = await engine.prefill(ids);
    assert.deepEqual(continued, fresh);
    // Aborted before it starts: nothing runs.
    await assert.rejects(engine.prefill([1, 2], { signal: AbortSignal.abort() }), (e) => isAbortError(e));
    assert.equal(engine.position, 10);
  } finally {
    engine.dispose();
  }
});

test('context options: a non-integer or non-positive length, or one beyond max_position_embeddings, is refused', async () => {
  const ctx = await getNodeGpu();
  const src = memorySource(makeTinyCheckpoint('q4g32', { seed: 3 }), 'tiny-q4g32');
  for (const bad of [0, -8, 2.5, NaN, Infinity, '4096' as unknown as number]) {
    await assert.rejects(loadEngine(ctx, src, { contextLength: bad }),
      new RegExp(`contextLength ${esc(typeof bad === 'string' ? JSON.stringify(bad) : String(bad))} must be a positive integer`));
  }
  await assert.rejects(loadEngine(ctx, src, { contextLength: 4097 }),
    /contextLength 4097 is beyond the model's max_position_embeddings 4096 \(tiny-q4g32\/config\.json\)/);
  await assert.rejects(loadEngine(ctx, src, { contextLength: 8, prefillChunk: 0 }), /prefillChunk 0 must be a positive integer/);
});
