// The pre-flight memory check (src/engine/preflight.ts) on a Qwen3.6-27B-shaped checkpoint given only its
// config.json and shard index. Every expected number is worked out here by hand from the model's dimensions, per
// module kind, without the code's byte helpers (formatBytes, stateBytes); the name-only per-module rule is also
// checked against the shards' own headers on the two reference checkpoints. Then `qwen-webgpu inspect` on a
// folder holding only the two JSON files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  defaultMemoryBudget, formatPreflight, indexTensorNames, preflight, preflightSource, readPreflightInputs,
} from '../src/engine/preflight.ts';
import { openCheckpoint, summarizeCheckpoint } from '../src/format/checkpoint.ts';
import { dirSource } from '../src/node/fs-source.ts';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const bin = join(root, 'bin/qwen-webgpu.mjs');
const refDir = resolve(root, '../shared/reference');
const GiB = 2 ** 30;
const MiB = 2 ** 20;

// ---------------------------------------------------------------------------------------------------------------
// The 27B shape (spec §1.3) and its hand-computed sizes.

const d = 5120, L = 64, I = 17408, V = 248320, H = 24, Hkv = 4, D = 256, Hk = 16, Hv = 48, Dk = 128, Dv = 128, Kc = 4;
const nFull = L / 4; // full_attention_interval 4: layers 3, 7, ..., 63
const nLinear = L - nFull;
const keyDim = Hk * Dk; // 2048
const valueDim = Hv * Dv; // 6144
const convDim = 2 * keyDim + valueDim; // 10240

const BIG_LIMITS = { maxBufferSize: 4 * GiB, maxStorageBufferBindingSize: 4 * GiB, maxStorageBuffersPerShaderStage: 10 };

function config27B(quantization?: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: ['Qwen3_5ForConditionalGeneration'], model_type: 'qwen3_5', torch_dtype: 'bfloat16', tie_word_embeddings: false,
    text_config: {
      model_type: 'qwen3_5_text', hidden_size: d, num_hidden_layers: L, full_attention_interval: 4, intermediate_size: I,
      vocab_size: V, num_attention_heads: H, num_key_value_heads: Hkv, head_dim: D, linear_num_key_heads: Hk,
      linear_num_value_heads: Hv, linear_key_head_dim: Dk, linear_value_head_dim: Dv, linear_conv_kernel_dim: Kc,
      max_position_embeddings: 262144, rms_norm_eps: 1e-6, tie_word_embeddings: false, eos_token_id: 248044,
      rope_parameters: { rope_type: 'default', rope_theta: 10000000, partial_rotary_factor: 0.25, mrope_section: [11, 11, 10], mrope_interleaved: true },
    },
    vision_config: { depth: 27 },
    ...(quantization ? { quantization, quantization_config: quantization } : {}),
    ...extra,
  };
}

/**
 * Tensor names of an MLX conversion (spec §2.2): `companions(path)` says which of .scales / .biases a linear or the
 * embedding has. Plus a few vision tower and MTP tensors, which the text model never loads.
 */
function mlxNames(companions: (path: string) => string[]): string[] {
  const names = ['vision_tower.blocks.0.attn.qkv.weight', 'vision_tower.merger.mlp.0.weight', 'mtp.fc.weight', 'mtp.layers.0.mlp.up_proj.scales'];
  const M = 'language_model.model';
  const lin = (p: string) => names.push(`${p}.weight`, ...companions(p).map((c) => `${p}.${c}`));
  lin(`${M}.embed_tokens`);
  for (let i = 0; i < L; i++) {
    const p = `${M}.layers.${i}`;
    names.push(`${p}.input_layernorm.weight`, `${p}.post_attention_layernorm.weight`);
    if ((i + 1) % 4 !== 0) {
      for (const m of ['in_proj_qkv', 'in_proj_z', 'in_proj_b', 'in_proj_a', 'out_proj']) lin(`${p}.linear_attn.${m}`);
      names.push(`${p}.linear_attn.conv1d.weight`, `${p}.linear_attn.A_log`, `${p}.linear_attn.dt_bias`, `${p}.linear_attn.norm.weight`);
    } else {
      for (const m of ['q_proj', 'k_proj', 'v_proj', 'o_proj']) lin(`${p}.self_attn.${m}`);
      names.push(`${p}.self_attn.q_norm.weight`, `${p}.self_attn.k_norm.weight`);
    }
    for (const m of ['gate_proj', 'up_proj', 'down_proj']) lin(`${p}.mlp.${m}`);
  }
  names.push(`${M}.norm.weight`);
  lin('language_model.lm_head');
  return names;
}

const asIndex = (names: string[]) => ({
  metadata: { total_size: 0 },
  weight_map: Object.fromEntries(names.map((n, i) => [n, `model-${String(1 + (i % 12)).padStart(5, '0')}-of-00012.safetensors`])),
});

// Element counts of the [out, in] weights (spec §2.1), by module.
const E = {
  inProjQkv: convDim * d, inProjZ: valueDim * d, inProjB: Hv * d, inProjA: Hv * d, outProj: d * valueDim,
  qProj: 2 * H * D * d, kProj: Hkv * D * d, vProj: Hkv * D * d, oProj: d * H * D,
  mlp: I * d, // each of gate_proj, up_proj; down_proj is d × I, the same count
  embed: V * d,
};
const linearLayerElements = E.inProjQkv + E.inProjZ + E.inProjB + E.inProjA + E.outProj;
const fullLayerElements = E.qProj + E.kProj + E.vProj + E.oProj;
const allMatrixElements = nLinear * linearLayerElements + nFull * fullLayerElements + L * 3 * E.mlp + 2 * E.embed;

/** MLX affine (spec §5.2): packed codes bits/8 bytes per element, bf16 scales and biases per group of g. */
const affine = (elements: number, rows: number, bits: number, g: number) => (elements * bits) / 8 + 2 * (rows * (elements / rows / g)) * 2;
const bf16 = (elements: number) => 2 * elements;
/** MLX mxfp4 / mxfp8 (spec §5.4): codes bits/8 bytes per element, one E8M0 byte per group of 32, no biases. */
const mx = (elements: number, bits: number) => (elements * bits) / 8 + elements / 32;

// Vectors, f32 on the GPU: conv taps [conv_dim, Kc], dt_bias and A_log [Hv], the gated norm [Dv] per linear layer;
// q_norm and k_norm [D] per full layer; two [d] norms per layer; the final norm.
const vectorBytes = 4 * (nLinear * (convDim * Kc + 2 * Hv + Dv) + nFull * 2 * D + L * 2 * d + d);

// State (f32, as src/model/state.ts allocates): K and V of Hkv heads × D per full layer and token; the GDN state
// Hv × Dk × Dv per linear layer; the conv ring (Kc − 1) × conv_dim per linear layer.
const kvPerToken = nFull * 2 * Hkv * D * 4;
const recurrent = nLinear * Hv * Dk * Dv * 4;
const conv = nLinear * (Kc - 1) * convDim * 4;
// Activations at a 256-token chunk: 3d + 8·H·D + 3·I + 2·conv_dim + 3·value_dim floats per token, plus the logits.
const activations = 256 * 4 * (3 * d + 8 * H * D + 3 * I + 2 * convDim + 3 * valueDim) + 4 * V;

// ---------------------------------------------------------------------------------------------------------------
// Recipe 1: affine 4-bit g64, a few per-layer overrides, one module bf16 by `false`, one bf16 for want of .scales.

const AFFINE_OVERRIDES = {
  'language_model.model.layers.0.mlp.down_proj': { group_size: 64, bits: 8 },
  'language_model.model.layers.3.self_attn.v_proj': { group_size: 64, bits: 6 },
  'language_model.lm_head': { group_size: 64, bits: 6 },
  'language_model.model.layers.0.linear_attn.out_proj': false,
};
const affineConfig = () => config27B({ group_size: 64, bits: 4, mode: 'affine', ...AFFINE_OVERRIDES });
const affineNames = () => mlxNames((p) =>
  p.endsWith('layers.0.linear_attn.out_proj') || p.endsWith('layers.2.linear_attn.in_proj_a') ? [] : ['scales', 'biases']);

const affineExpected = (() => {
  const e8 = E.mlp; // layers.0.mlp.down_proj [d, I]: d rows
  const e6 = E.vProj + E.embed; // layers.3 v_proj [Hkv·D, d], lm_head [V, d]
  const eBf16 = E.outProj + E.inProjA; // layers.0 out_proj [d, value_dim], layers.2 in_proj_a [Hv, d]
  const e4 = allMatrixElements - e8 - e6 - eBf16;
  // Every 4-bit module has an input dimension divisible by 64; bytes per element 0.5 + 4/64.
  const byKind = {
    'affine 4-bit g64': e4 * (0.5 + 4 / 64),
    'affine 6-bit g64': affine(E.vProj, Hkv * D, 6, 64) + affine(E.embed, V, 6, 64),
    'affine 8-bit g64': affine(e8, d, 8, 64),
    'float BF16': bf16(eBf16),
    'vectors F32': vectorBytes,
  };
  return { byKind, weights: Object.values(byKind).reduce((a, b) => a + b, 0) };
})();

test('27B affine recipe: weights by kind, state, KV per token and activations equal the hand computation', () => {
  // The hand numbers written out once (4-bit g64: 0.5 B of codes + 2 × 2 B per 64 elements).
  assert.equal(allMatrixElements, 26_893_352_960);
  assert.equal(affineExpected.weights, 15_547_390_976);
  assert.equal(kvPerToken, 131_072); // 128 KiB: 16 layers × K and V × 4 heads × 256 × f32
  assert.equal(recurrent, 150_994_944); // 144 MiB
  assert.equal(conv, 5_898_240);

  const r4k = preflight(affineConfig(), asIndex(affineNames()).weight_map, { contextLength: 4096, memoryBudgetBytes: 64 * GiB, limits: BIG_LIMITS });
  assert.deepEqual(r4k.weightBytesByKind, affineExpected.byKind);
  assert.equal(r4k.weightBytes, affineExpected.weights);
  assert.equal(r4k.kvBytesPerToken, kvPerToken);
  assert.equal(r4k.recurrentBytes, recurrent);
  assert.equal(r4k.convBytes, conv);
  assert.equal(r4k.kvBytes, kvPerToken * 4096);
  assert.equal(r4k.stateBytes, 693_764_096); // 144 MiB + 5.625 MiB + 512 MiB
  assert.equal(r4k.stateBytes, recurrent + conv + kvPerToken * 4096);
  assert.equal(r4k.snapshotBytes, recurrent + conv);
  assert.equal(r4k.activationBytes, activations);
  assert.equal(r4k.activationBytes, 160_376_832);
  assert.equal(r4k.totalBytes, affineExpected.weights + recurrent + conv + kvPerToken * 4096 + recurrent + conv + activations);
  assert.deepEqual(r4k.layers, { linear: 48, full: 16 });
  assert.equal(r4k.tied, false);
  assert.equal(r4k.fits, true);
  assert.equal(r4k.reason, undefined);
  // With a 4 GiB buffer limit the context is bounded by the budget: (64 GiB − everything but the KV) / 128 KiB,
  // which is more than the model's 262144 positions.
  assert.equal(r4k.maxContextThatFits, 262144);

  const rMax = preflight(affineConfig(), affineNames(), { contextLength: 262144, memoryBudgetBytes: 64 * GiB, limits: BIG_LIMITS });
  assert.equal(rMax.stateBytes, 34_516_631_552); // 144 MiB + 5.625 MiB + 32 GiB
  assert.equal(rMax.stateBytes, recurrent + conv + kvPerToken * 262144);
  assert.equal(rMax.weightBytes, affineExpected.weights, 'a list of names reads like the weight_map');
  // One layer's K (or V) cache at 262144 tokens is the largest single buffer: 4 heads × 262144 × 256 × 4 B = 1 GiB.
  assert.deepEqual(rMax.largestBuffer, { name: 'KV cache of one full-attention layer (K or V)', bytes: GiB, count: 32 });
});

test('27B mxfp4 recipe (lm_head mxfp8): E8M0 scales, no biases', () => {
  const cfg = config27B({ group_size: 32, bits: 4, mode: 'mxfp4', 'language_model.lm_head': { mode: 'mxfp8', group_size: 32, bits: 8 } });
  const r = preflight(cfg, asIndex(mlxNames(() => ['scales'])).weight_map, { memoryBudgetBytes: 64 * GiB, limits: BIG_LIMITS });
  const byKind = { mxfp4: mx(allMatrixElements - E.embed, 4), mxfp8: mx(E.embed, 8), 'vectors F32': vectorBytes };
  assert.equal(byKind.mxfp4, 13_611_663_360); // 25,621,954,560 elements × (0.5 + 1/32) B
  assert.equal(byKind.mxfp8, 1_311_129_600); // 1,271,398,400 × (1 + 1/32) B
  assert.deepEqual(r.weightBytesByKind, byKind);
  assert.equal(r.weightBytes, 13_611_663_360 + 1_311_129_600 + vectorBytes);
  assert.equal(r.contextLength, 4096, 'default context min(4096, max_position_embeddings)');
  assert.equal(r.kvBytesPerToken, kvPerToken);
});

test('27B compressed-tensors FP8 (HF names, lm_head ignored): E4M3 bytes plus one bf16 scale per output row', () => {
  const ct = {
    quant_method: 'compressed-tensors', format: 'float-quantized', quantization_status: 'compressed',
    config_groups: { group_0: { targets: ['Linear'], weights: { num_bits: 8, type: 'float', strategy: 'channel', symmetric: true } } },
    ignore: ['lm_head'],
  };
  const cfg = config27B(undefined, { quantization_config: ct });
  // HF names (spec §2.1): linears but lm_head carry .weight_scale; the embedding is no Linear, so stays bf16.
  const hf = mlxNames(() => []).map((n) => n.replace(/^language_model\.model\./, 'model.language_model.').replace(/^language_model\.lm_head/, 'lm_head'));
  const names = hf.flatMap((n) => (/\.(layers\.\d+\.(linear_attn\.(in_proj_\w+|out_proj)|self_attn\.[qkvo]_proj|mlp\.\w+_proj))\.weight$/.test(n) ? [n, n.replace(/\.weight$/, '.weight_scale')] : [n]));
  const r = preflight(cfg, names, { memoryBudgetBytes: 64 * GiB, limits: BIG_LIMITS });
  const rows = nLinear * (convDim + valueDim + Hv + Hv + d) + nFull * (2 * H * D + 2 * Hkv * D + d) + L * (2 * I + d);
  assert.equal(rows, 3_904_000);
  const fp8 = allMatrixElements - 2 * E.embed + 2 * rows;
  assert.deepEqual(r.weightBytesByKind, { 'fp8 per-channel': fp8, 'float BF16': bf16(2 * E.embed), 'vectors F32': vectorBytes });
  assert.equal(r.weightBytes, fp8 + bf16(2 * E.embed) + vectorBytes);
});

test('does not fit the budget: the reason gives the numbers and the largest context, solved by hand', () => {
  const budget = 16 * GiB;
  const r = preflight(affineConfig(), affineNames(), { contextLength: 262144, memoryBudgetBytes: budget, limits: BIG_LIMITS });
  assert.equal(r.fits, false);
  assert.equal(r.budgetBytes, budget);
  assert.equal(r.budgetSource, 'the memoryBudgetBytes option');
  // Everything but the KV cache, then as many 128 KiB tokens as the rest of the budget holds.
  const fixed = affineExpected.weights + recurrent + conv + (recurrent + conv) + activations;
  const byHand = Math.floor((budget - fixed) / kvPerToken);
  assert.equal(byHand, 8837);
  assert.equal(r.maxContextThatFits, byHand);
  assert.match(r.reason!, /^it needs 46\.92 GiB \(weights 14\.48 GiB \+ state 32\.15 GiB \+ chat snapshot 149\.63 MiB \+ activations 152\.95 MiB\), more than the memory budget of 16\.00 GiB \(the memoryBudgetBytes option\); the largest context that fits is 8837 tokens$/);
  // At that context it fits; one token more does not.
  assert.equal(preflight(affineConfig(), affineNames(), { contextLength: byHand, memoryBudgetBytes: budget, limits: BIG_LIMITS }).fits, true);
  assert.equal(preflight(affineConfig(), affineNames(), { contextLength: byHand + 1, memoryBudgetBytes: budget, limits: BIG_LIMITS }).fits, false);

  // A budget below the weights: no context helps, and the reason says so.
  const tiny = preflight(affineConfig(), affineNames(), { memoryBudgetBytes: 8 * GiB, limits: BIG_LIMITS });
  assert.equal(tiny.maxContextThatFits, 0);
  assert.match(tiny.reason!, /more than the memory budget of 8\.00 GiB .*; no context length fits: without any KV cache it needs 14\.92 GiB$/);
});

test('does not fit the limits: the per-layer KV cache is one buffer, bounded by maxStorageBufferBindingSize', () => {
  // WebGPU's default limits (the default of the options): 128 MiB per binding, 256 MiB per buffer.
  const r = preflight(affineConfig(), affineNames(), { contextLength: 65536, memoryBudgetBytes: 1024 * GiB });
  assert.equal(r.fits, false);
  assert.equal(r.limits.maxStorageBufferBindingSize, 128 * MiB);
  assert.match(r.limits.source, /WebGPU default limits/);
  // One layer's K cache at 65536 tokens: 4 × 65536 × 256 × 4 B = 256 MiB; the limit allows 128 MiB / 4 KiB per token.
  assert.equal(Math.floor((128 * MiB) / (Hkv * D * 4)), 32768);
  assert.equal(r.maxContextThatFits, 32768);
  assert.equal(r.reason, 'the KV cache of one full-attention layer (K or V) at 65536 tokens is one 256.00 MiB buffer, above ' +
    'maxStorageBufferBindingSize 128.00 MiB; the largest context that fits is 32768 tokens');
  // Fewer storage buffers per stage than the kernels bind: nothing fixes that.
  const few = preflight(affineConfig(), affineNames(), { memoryBudgetBytes: 1024 * GiB, limits: { ...BIG_LIMITS, maxStorageBuffersPerShaderStage: 4 } });
  assert.equal(few.maxContextThatFits, 0);
  assert.match(few.reason!, /bind up to 8 storage buffers in one shader stage; this device allows 4 .*; no context length fixes that$/);
});

test('memory budget: navigator.deviceMemory × 0.75, a stated guess without it, os.totalmem() in Node, always overridable', () => {
  assert.deepEqual(defaultMemoryBudget({ deviceMemoryGiB: 4 }), { bytes: 3 * GiB, source: 'navigator.deviceMemory 4 GiB × 0.75' });
  const capped = defaultMemoryBudget({ deviceMemoryGiB: 8 });
  assert.equal(capped.bytes, 6 * GiB);
  assert.match(capped.source, /browsers round this figure down and cap it, Chrome at 8 GiB: on a larger machine pass memoryBudgetBytes/);
  const guess = defaultMemoryBudget({});
  assert.equal(guess.bytes, 6 * GiB);
  assert.match(guess.source, /^a guess of 8 GiB × 0\.75 \(this platform has no navigator\.deviceMemory/);
  assert.deepEqual(defaultMemoryBudget({ totalMemoryBytes: 32 * GiB }), { bytes: 24 * GiB, source: 'os.totalmem() 32.00 GiB × 0.75' });
  // Node has no navigator.deviceMemory: without the option the report says it guessed.
  const r = preflight(affineConfig(), affineNames());
  assert.equal(r.budgetBytes, 6 * GiB);
  assert.match(r.budgetSource, /guess/);
  const given = preflight(affineConfig(), affineNames(), { memoryBudgetBytes: 20 * GiB + 0.5, budgetSource: '--memory-budget 20GiB' });
  assert.equal(given.budgetBytes, 20 * GiB);
  assert.equal(given.budgetSource, '--memory-budget 20GiB');
  assert.throws(() => preflight(affineConfig(), affineNames(), { memoryBudgetBytes: 0 }), /memoryBudgetBytes 0 must be a positive number of bytes/);
  assert.throws(() => preflight(affineConfig(), affineNames(), { contextLength: 262145 }), /contextLength 262145 exceeds max_position_embeddings 262144/);
});

test('bad indexes and configs: clear errors naming the tensor, the module and what was expected', () => {
  const without = (drop: string) => affineNames().filter((n) => n !== drop);
  assert.throws(() => preflight(affineConfig(), without('language_model.model.layers.5.mlp.up_proj.weight')),
    /^FormatError: model\.safetensors\.index\.json: no tensor "layers\.5\.mlp\.up_proj\.weight" \(MLX name "language_model\.model\.layers\.5\.mlp\.up_proj\.weight"\), expected for the \[17408, 5120\] linear "layers\.5\.mlp\.up_proj" that config\.json implies$/);
  // Several problems are listed together.
  assert.throws(() => preflight(affineConfig(), without('language_model.model.norm.weight').filter((n) => !n.includes('layers.63.'))),
    (e: Error) => /model\.safetensors\.index\.json: 12 problems:\n {2}- no tensor "layers\.63\.input_layernorm\.weight"/.test(e.message) && /"norm" that config\.json implies/.test(e.message));
  assert.throws(() => preflight(affineConfig(), ['vision_tower.blocks.0.attn.qkv.weight', 'mtp.fc.weight']),
    /model\.safetensors\.index\.json: lists only vision tower \/ MTP tensors, no text model/);
  assert.throws(() => preflight(affineConfig(), [...affineNames(), 'language_model.model.layers.0.linear_attn.out_proj.scales']),
    /"language_model\.model\.layers\.0\.linear_attn\.out_proj\.scales": config\.json's quantization marks "layers\.0\.linear_attn\.out_proj" as not quantized \(false\), but the index lists its \.scales/);
  assert.throws(() => preflight(affineConfig(), [...affineNames(), 'language_model.model.norm.scales']),
    /"language_model\.model\.norm\.scales": "norm" \(norm\) is never quantized, found a quantization tensor for it/);
  assert.throws(() => preflight(config27B(), affineNames()),
    /"language_model\.model\.embed_tokens\.scales": quantized module "embed_tokens" but config\.json has no "quantization" block/);
  assert.throws(() => preflight(affineConfig(), [...affineNames(), 'model.language_model.norm.weight']),
    /tensors "language_model\.model\.norm\.weight" and "model\.language_model\.norm\.weight" both normalise to "norm\.weight"/);
  assert.throws(() => indexTensorNames({ metadata: {} }), /model\.safetensors\.index\.json: expected an object with a "weight_map" object, found \{"metadata":\{\}\}/);
  assert.throws(() => indexTensorNames({ weight_map: { 'a.weight': 3 } }), /weight_map\["a\.weight"\] must be a shard file name, found 3/);
  assert.throws(() => indexTensorNames({ weight_map: {} }), /weight_map lists no tensors/);
  assert.throws(() => preflight({ ...affineConfig(), model_type: 'llama' }, affineNames()), /config\.json: unsupported architecture: model_type is "llama"/);
});

test('tied embeddings: no lm_head in the index, or the config says so', () => {
  const untied = preflight(affineConfig(), affineNames(), { memoryBudgetBytes: 64 * GiB, limits: BIG_LIMITS });
  const noHead = affineNames().filter((n) => !n.startsWith('language_model.lm_head.'));
  const tied = preflight(affineConfig(), noHead, { memoryBudgetBytes: 64 * GiB, limits: BIG_LIMITS });
  assert.equal(tied.tied, true);
  assert.equal(untied.weightBytes - tied.weightBytes, affine(E.embed, V, 6, 64), 'the 6-bit lm_head is gone');
});

test('the name-only rule agrees with the shards\' headers: per-module bytes on the two reference checkpoints', async () => {
  for (const name of ['pub-propc', 'pub-unsloth3']) {
    const src = dirSource(join(refDir, name));
    const inputs = await readPreflightInputs(src);
    assert.equal(inputs.from, 'model.safetensors header');
    const r = preflight(inputs.config, inputs.names, { from: inputs.from, memoryBudgetBytes: GiB });
    const stored = new Map(summarizeCheckpoint(await openCheckpoint(src)).modules.map((m) => [m.path, m]));
    let matrices = 0;
    for (const m of r.modules) {
      const s = stored.get(m.path);
      assert.ok(s, `${name}: ${m.path} in the checkpoint`);
      if (!m.matrix) continue;
      matrices++;
      assert.equal(m.bytes, s.bytes, `${name}: ${m.path} bytes (${s.kind} ${s.bits ?? ''})`);
      assert.equal(m.format.kind === 'float' ? 'float' : m.format.kind, s.kind, `${name}: ${m.path} kind`);
    }
    assert.ok(matrices > 10);
    assert.equal((await preflightSource(src, { memoryBudgetBytes: GiB })).weightBytes, r.weightBytes);
  }
});

// ---------------------------------------------------------------------------------------------------------------
// The CLI.

interface Run { code: number; stdout: string; stderr: string }
function cli(args: string[]): Promise<Run> {
  return new Promise((res) => {
    execFile(process.execPath, [bin, ...args], { maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

test('qwen-webgpu inspect on a folder of only config.json and model.safetensors.index.json (27B): table, --json, not fitting, bad index', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'qwen-preflight-'));
  const dir = join(tmp, '27b');
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(affineConfig()));
  writeFileSync(join(dir, 'model.safetensors.index.json'), JSON.stringify(asIndex(affineNames())));
  const bad = join(tmp, 'bad');
  mkdirSync(bad);
  writeFileSync(join(bad, 'config.json'), JSON.stringify(affineConfig()));
  writeFileSync(join(bad, 'model.safetensors.index.json'), JSON.stringify({ metadata: {} }));

  const [text, json, tight, badIndex, badBudget] = await Promise.all([
    cli(['inspect', '--model', dir, '--memory-budget', '64GiB']),
    cli(['inspect', '--model', dir, '--json', '--memory-budget', String(64 * GiB)]),
    cli(['inspect', '--model', dir, '--json', '--context', '262144', '--memory-budget', '16GiB']),
    cli(['inspect', '--model', bad]),
    cli(['inspect', '--model', dir, '--memory-budget', '16G']),
  ]);

  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /config\.json and model\.safetensors\.index\.json only \(none of its 12 shards here\)/);
  assert.match(text.stdout, /GPU memory estimate \(pre-flight\) at context 4096/);
  assert.match(text.stdout, /^ {2}weights +14\.48 GiB +15547390976$/m);
  assert.match(text.stdout, /^ {4}affine 4-bit g64 +13\.36 GiB +14341432320$/m);
  assert.match(text.stdout, /^ {2}KV cache \(16 layers × 128\.0 KiB\/token × 4096\) +512\.00 MiB +536870912$/m);
  assert.match(text.stdout, /^ {2}memory budget +64\.00 GiB +68719476736$/m);
  assert.match(text.stdout, /^ {2}\(budget: --memory-budget 64GiB\)$/m);
  // inspect starts no GPU: WebGPU's default limits bound one layer's KV buffer at 32768 tokens.
  assert.match(text.stdout, /^verdict: fits \(15\.42 GiB of 64\.00 GiB\); largest context that fits: 32768/m);

  assert.equal(json.code, 0, json.stderr);
  const o = JSON.parse(json.stdout);
  assert.equal(o.weightBytes, affineExpected.weights);
  assert.equal(o.stateBytes, recurrent + conv + kvPerToken * 4096);
  assert.equal(o.kvBytesPerToken, kvPerToken);
  assert.equal(o.fits, true);
  assert.equal(o.reason, undefined);
  assert.equal(o.config.numLayers, 64);
  assert.equal(o.modules.find((m: { path: string }) => m.path === 'lm_head').bits, 6);

  assert.equal(tight.code, 0, 'a report, not an error, when the model does not fit');
  const t = JSON.parse(tight.stdout);
  assert.equal(t.fits, false);
  assert.equal(t.stateBytes, 34_516_631_552);
  assert.equal(t.budgetBytes, 16 * GiB);
  // Both the budget and the default per-binding limit refuse; the budget bounds the context to 8837 tokens.
  assert.match(t.reason, /^the KV cache of one full-attention layer \(K or V\) at 262144 tokens is one 1\.00 GiB buffer, above maxStorageBufferBindingSize 128\.00 MiB; it needs 46\.92 GiB .* more than the memory budget of 16\.00 GiB \(--memory-budget 16GiB\); the largest context that fits is 8837 tokens$/);
  assert.equal(t.maxContextThatFits, 8837);

  assert.equal(badIndex.code, 1);
  assert.equal(badIndex.stderr, 'qwen-webgpu: model.safetensors.index.json: expected an object with a "weight_map" object, found {"metadata":{}}\n');
  assert.equal(badBudget.code, 2);
  assert.match(badBudget.stderr, /^qwen-webgpu: --memory-budget: "16G" is not a byte count \(a decimal integer, or a number with KiB, MiB, GiB or TiB, e\.g\. 24GiB\)/);
});

test('qwen-webgpu inspect on a whole checkpoint: the pre-flight fields beside the per-tensor plan', async () => {
  const r = await cli(['inspect', '--model', join(refDir, 'pub-unsloth3'), '--json', '--memory-budget', '1GiB']);
  assert.equal(r.code, 0, r.stderr);
  const o = JSON.parse(r.stdout);
  assert.ok(o.modules.length > 0 && o.memory.weights > 0, 'the checkpoint summary as before');
  // Vectors are f32 on the GPU and bf16 in this file: the pre-flight weights exceed the stored bytes by their size.
  assert.equal(o.weightBytes - o.storedBytes, o.weightBytesByKind['vectors F32'] / 2);
  for (const k of ['stateBytes', 'kvBytesPerToken', 'totalBytes', 'budgetBytes']) assert.equal(typeof o[k], 'number', k);
  assert.equal(o.fits, true);
  assert.equal(o.from, 'model.safetensors header');
  const text = formatPreflight(o);
  assert.match(text, /^verdict: fits/m);
});
