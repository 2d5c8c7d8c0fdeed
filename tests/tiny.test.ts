// Tiny checkpoints: every recipe writes, re-opens through openCheckpoint and yields exactly the recipe's plan.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { makeTinyCheckpoint, TINY_RECIPES, type TinyRecipe } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { openCheckpoint, referenceWeights, dequantModule, loadFloat, type Checkpoint } from '../src/format/checkpoint.ts';
import { parseSafetensorsHeader } from '../src/format/safetensors.ts';
import { dirSource } from '../src/node/fs-source.ts';
import { createReferenceModel } from '../src/model/reference.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dec = new TextDecoder();

const leaf = (p: string) => p.slice(p.lastIndexOf('.') + 1);

/** The recipes as published (written out independently of src/format/tiny.ts): module → "bits/group" or "float". */
const EXPECTED: Record<TinyRecipe, (path: string) => string> = {
  bf16: () => 'float',
  propc: (p) => (leaf(p).startsWith('in_proj_') ? '6/64' : p.includes('.mlp.') ? '5/64' : '8/64'),
  unsloth3: (p) => ({
    embed_tokens: '5/64', lm_head: '6/64', q_proj: '5/64', k_proj: '5/64', v_proj: '5/64', in_proj_qkv: '5/64', in_proj_z: '5/64',
    down_proj: '4/64', gate_proj: '3/64', up_proj: '3/64',
  } as Record<string, string>)[leaf(p)] ?? 'float',
  udq2: (p) => ({
    gate_proj: '2/64', up_proj: '2/64', down_proj: '3/64', lm_head: '5/64', out_proj: 'float',
  } as Record<string, string>)[leaf(p)] ?? '4/64',
  q4g32: () => '4/32',
  q8g128: () => '8/128',
  udmxfp4: (p) => ({
    down_proj: 'mxfp8', lm_head: '6/64', in_proj_a: '8/64', in_proj_b: '8/64', o_proj: 'float', out_proj: 'float',
  } as Record<string, string>)[leaf(p)] ?? 'mxfp4',
  udnvfp4: (p) => ({ lm_head: 'mxfp8', o_proj: '8/64', out_proj: 'float' } as Record<string, string>)[leaf(p)] ?? 'nvfp4',
  udmxfp8: (p) => (/(o_proj|out_proj)$/.test(p) ? 'float' : 'mxfp8'),
  ctfp8: (p) => (['embed_tokens', 'lm_head', 'layers.3.self_attn.o_proj'].includes(p) || /in_proj_[ab]$/.test(p) ? 'float' : 'fp8'),
  qwenfp8: (p) => (['embed_tokens', 'lm_head'].includes(p) || p.endsWith('out_proj') ? 'float' : 'fp8'),
};
const TIED: Record<TinyRecipe, boolean> = {
  bf16: true, propc: false, unsloth3: false, udq2: false, q4g32: true, q8g128: false, udmxfp4: false, udnvfp4: false, udmxfp8: true,
  ctfp8: false, qwenfp8: false,
};
/** MLX's scale storage per mode (spec §5.4): affine in the model dtype, E8M0 for mx*, E4M3 for nvfp4. */
const SCALES: Record<string, string> = { affine: 'bf16', mxfp4: 'e8m0', mxfp8: 'e8m0', nvfp4: 'e4m3' };

function rawConfig(files: Map<string, Uint8Array>): Record<string, any> {
  return JSON.parse(dec.decode(files.get('config.json')!));
}

function checkPlan(ckpt: Checkpoint, recipe: TinyRecipe): void {
  let linears = 0;
  for (const [p, plan] of ckpt.modules) {
    if (plan.role === 'linear' || plan.role === 'embedding') {
      linears++;
      const got = plan.kind === 'float' ? 'float' : plan.mode === 'affine' ? `${plan.bits}/${plan.groupSize}` : plan.mode;
      assert.equal(got, EXPECTED[recipe](p), `${recipe}: ${p}`);
      if (plan.kind === 'float') assert.equal(plan.dtype, 'BF16');
      if (plan.kind === 'quant') assert.equal(plan.scaleDtype, plan.mode === 'fp8' ? (recipe === 'qwenfp8' ? 'f32' : 'bf16') : SCALES[plan.mode]);
    } else {
      assert.equal(plan.kind, 'float', p);
    }
  }
  // embed + 6 linear layers × 9 modules... counted from the config rather than hard-coded:
  const c = ckpt.config;
  const nLin = c.layerTypes.filter((t) => t === 'linear_attention').length;
  const nFull = c.numLayers - nLin;
  assert.equal(linears, 1 + nLin * 5 + nFull * 4 + c.numLayers * 3 + (ckpt.tied ? 0 : 1));
}

describe('tiny recipes', () => {
  for (const recipe of TINY_RECIPES) {
    // FP8 checkpoints come from transformers tools: HF names only.
    const fp8 = recipe === 'ctfp8' || recipe === 'qwenfp8';
    for (const hf of fp8 ? [true] : [false, true]) {
      test(`${recipe}${hf ? ' (HF naming)' : ''}: writes, re-opens, plan equals the recipe`, async () => {
        const files = makeTinyCheckpoint(recipe, { seed: 11, hf });
        const ckpt = await openCheckpoint(memorySource(files, recipe));
        assert.equal(ckpt.isMlx, !hf);
        assert.equal(ckpt.normShift, hf);
        assert.equal(ckpt.tied, TIED[recipe]);
        checkPlan(ckpt, recipe);
        const c = ckpt.config;
        assert.equal(c.modelType, 'qwen3_5');
        assert.deepEqual([c.hiddenSize, c.numLayers, c.numHeads, c.numKvHeads, c.headDim, c.rotaryDim], [256, 8, 4, 2, 64, 16]);
        assert.deepEqual([c.linearNumKeyHeads, c.linearNumValueHeads, c.linearKeyHeadDim, c.linearValueHeadDim], [2, 4, 32, 32]);
        assert.deepEqual([c.intermediateSize, c.vocabSize, c.rmsNormEps, c.ropeTheta], [512, 1024, 1e-6, 1e7]);
        assert.equal(c.layerTypes.filter((t) => t === 'full_attention').length, 2);
        // The vision tower and MTP tensors are in the files and skipped.
        assert.ok(ckpt.ignored.includes('mtp.fc.weight'), ckpt.ignored.join());
        assert.ok(ckpt.ignored.some((n) => n.startsWith(hf ? 'model.visual.' : 'vision_tower.')), ckpt.ignored.join());
        assert.equal(ckpt.ignored.length, 2);
        const raw = rawConfig(files);
        if (fp8) assert.equal(raw.quantization, undefined, 'transformers writes quantization_config only');
        else assert.deepEqual(raw.quantization, raw.quantization_config);
        assert.ok(raw.text_config.layer_types && raw.text_config.rope_parameters.rope_type === 'default');
      });
    }
  }

  test('config blocks look like the published ones', () => {
    const q = (r: TinyRecipe) => rawConfig(makeTinyCheckpoint(r)).quantization;
    assert.equal(q('bf16'), undefined);
    const propc = q('propc');
    assert.deepEqual([propc.bits, propc.group_size, propc.mode], [8, 64, 'affine']);
    // 8-bit modules equal the default and get no entry; the others get dicts with "mode".
    for (const k of ['language_model.model.embed_tokens', 'language_model.lm_head', 'language_model.model.layers.3.self_attn.q_proj', 'language_model.model.layers.0.linear_attn.out_proj']) {
      assert.equal(propc[k], undefined, k);
    }
    assert.deepEqual(propc['language_model.model.layers.0.linear_attn.in_proj_b'], { group_size: 64, bits: 6, mode: 'affine' });
    assert.deepEqual(propc['language_model.model.layers.7.mlp.down_proj'], { group_size: 64, bits: 5, mode: 'affine' });
    const uns = q('unsloth3');
    assert.equal('mode' in uns, false);
    assert.deepEqual([uns.bits, uns.group_size], [3, 64]);
    assert.equal(uns['language_model.model.layers.3.self_attn.o_proj'], false);
    assert.equal(uns['language_model.model.layers.0.linear_attn.in_proj_a'], false);
    assert.equal(uns['language_model.model.layers.0.mlp.gate_proj'], undefined);
    assert.deepEqual(uns['language_model.lm_head'], { group_size: 64, bits: 6 });
    for (const v of Object.values(uns)) if (v && typeof v === 'object') assert.equal('mode' in v, false);
    const hf = rawConfig(makeTinyCheckpoint('unsloth3', { hf: true })).quantization;
    assert.deepEqual(hf['lm_head'], { group_size: 64, bits: 6 });
    assert.equal(hf['model.language_model.layers.3.self_attn.o_proj'], false);
  });

  test('bf16 is tied with no lm_head tensor; untied recipes store language_model.lm_head', async () => {
    const names = async (r: TinyRecipe) => [...(await parseSafetensorsHeader('model.safetensors', memorySource(makeTinyCheckpoint(r)))).tensors.keys()];
    assert.equal((await names('bf16')).some((n) => n.includes('lm_head')), false);
    assert.equal((await names('q4g32')).some((n) => n.includes('lm_head')), false);
    assert.ok((await names('propc')).includes('language_model.lm_head.weight'));
    assert.ok((await names('propc')).includes('language_model.model.layers.0.linear_attn.conv1d.weight'));
  });

  test('udq2 is sharded in 3 files with a module split across shards', async () => {
    const files = makeTinyCheckpoint('udq2', { seed: 5 });
    const shards = [...files.keys()].filter((f) => f.endsWith('.safetensors')).sort();
    assert.deepEqual(shards, ['model-00001-of-00003.safetensors', 'model-00002-of-00003.safetensors', 'model-00003-of-00003.safetensors']);
    const idx = JSON.parse(dec.decode(files.get('model.safetensors.index.json')!));
    const ckpt = await openCheckpoint(memorySource(files));
    assert.deepEqual(ckpt.files, shards);
    const split = [...ckpt.modules.values()].filter((p) => p.kind === 'quant' && new Set([p.weight.file, p.scales.file, p.biases!.file]).size > 1);
    assert.ok(split.length >= 1, 'some module has weight/scales/biases in different shards');
    // Every shard holds text-model tensors and the index total matches the tensors' bytes.
    let total = 0;
    for (const f of shards) {
      const h = await parseSafetensorsHeader(f, memorySource(files));
      assert.ok(h.tensors.size > 0, f);
      for (const [name, e] of h.tensors) {
        assert.equal(idx.weight_map[name], f, name);
        total += e.end - e.begin;
      }
    }
    assert.equal(idx.metadata.total_size, total);
    // The split module still dequantises to the same values as an unsharded copy.
    const single = await openCheckpoint(memorySource(makeTinyCheckpoint('udq2', { seed: 5, shards: 1 })));
    assert.deepEqual(await dequantModule(ckpt, split[0].path), await dequantModule(single, split[0].path));
  });

  test('HF variant is detected, norms shifted, and stores the same model as the MLX one', async () => {
    const mlx = await openCheckpoint(memorySource(makeTinyCheckpoint('bf16', { seed: 9 })));
    const hf = await openCheckpoint(memorySource(makeTinyCheckpoint('bf16', { seed: 9, hf: true })));
    assert.equal(hf.isMlx, false);
    assert.equal(hf.normShift, true);
    assert.deepEqual(hf.modules.get('layers.0.linear_attn.conv1d')!.weight.shape, [256, 1, 4]);
    assert.deepEqual(mlx.modules.get('layers.0.linear_attn.conv1d')!.weight.shape, [256, 4, 1]);
    assert.ok(hf.modules.get('embed_tokens')!.weight.rawName.startsWith('model.language_model.'));
    // Stored zero-centred in HF, with the +1 in MLX.
    const storedHf = await loadFloat(hf, 'layers.0.input_layernorm.weight');
    const storedMlx = await loadFloat(mlx, 'layers.0.input_layernorm.weight');
    const mean = (a: Float32Array) => a.reduce((x, y) => x + y, 0) / a.length;
    assert.ok(Math.abs(mean(storedHf)) < 0.05 && Math.abs(mean(storedMlx) - 1) < 0.05);
    const wm = await referenceWeights(mlx);
    const wh = await referenceWeights(hf);
    assert.deepEqual([...wm.keys()], [...wh.keys()]);
    for (const [k, a] of wm) {
      const b = wh.get(k)!;
      let worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
      // Norm gains differ only by where bf16 rounding happens (bf16(1+w) vs 1+bf16(w)); all else is identical.
      const role = mlx.modules.get(k)!.role;
      assert.ok(role === 'norm' ? worst <= 2 ** -8 : worst === 0, `${k}: max |Δ| ${worst}`);
    }
    // linear_attn.norm is never shifted: both layouts store the gain itself.
    assert.deepEqual(wm.get('layers.0.linear_attn.norm'), wh.get('layers.0.linear_attn.norm'));
  });

  test('quantized recipes store the same model as bf16 up to quantization error', async () => {
    const base = await referenceWeights(await openCheckpoint(memorySource(makeTinyCheckpoint('bf16', { seed: 3 }))));
    for (const recipe of ['propc', 'udq2', 'q8g128', 'udmxfp4', 'udnvfp4', 'udmxfp8', 'ctfp8', 'qwenfp8'] as const) {
      const ck = await openCheckpoint(memorySource(makeTinyCheckpoint(recipe, { seed: 3 })));
      const w = await referenceWeights(ck);
      for (const p of ['layers.0.mlp.gate_proj', 'layers.3.self_attn.q_proj', 'embed_tokens']) {
        const plan = ck.modules.get(p)!;
        if (plan.kind !== 'quant') continue;
        const a = w.get(p)!;
        const b = base.get(p)!;
        let se = 0;
        let ss = 0;
        for (let i = 0; i < a.length; i++) { se += (a[i] - b[i]) ** 2; ss += b[i] ** 2; }
        const rel = Math.sqrt(se / ss);
        // Affine: a uniform grid over ~±3σ per group, relative RMS error ≈ 6 / (2^bits · √12), allow 2×. Float
        // elements round relative to their own size (m mantissa bits: at most 2^-(m+1)), but MLX rounds the E8M0 scale
        // to the NEAREST power of two, so a group's largest values can saturate at ±448 / ±6 (spec §5.4): measured
        // E4M3 0.06-0.075, E2M1 0.095-0.12.
        const bound = plan.mode === 'affine' ? (2 * 6) / (2 ** plan.bits * Math.sqrt(12)) : plan.bits === 8 ? 0.1 : 0.3;
        console.log(`${recipe} ${p} ${plan.mode} ${plan.bits}-bit: relative RMS error ${rel.toFixed(4)} (bound ${bound.toFixed(3)})`);
        assert.ok(rel < bound, `${recipe} ${p} ${plan.mode} ${plan.bits}-bit: relative RMS error ${rel}`);
      }
    }
  });

  test('deterministic in the seed', () => {
    const a = makeTinyCheckpoint('propc', { seed: 1 });
    const b = makeTinyCheckpoint('propc', { seed: 1 });
    const c = makeTinyCheckpoint('propc', { seed: 2 });
    assert.deepEqual(a.get('model.safetensors'), b.get('model.safetensors'));
    assert.notDeepEqual(a.get('model.safetensors'), c.get('model.safetensors'));
  });

  test('logits spread over a few units with clear top-1 margins (CPU reference model)', async () => {
    for (const recipe of ['bf16', 'unsloth3'] as const) {
      const ck = await openCheckpoint(memorySource(makeTinyCheckpoint(recipe, { seed: 7 })));
      const model = createReferenceModel(ck.config, await referenceWeights(ck), { tied: ck.tied });
      const ids = Array.from({ length: 24 }, (_, i) => (i * 389 + 17) % ck.config.vocabSize);
      const logits = model.prefill(ids);
      let clear = 0;
      for (const l of logits) {
        const sorted = [...l].sort((x, y) => y - x);
        const mean = l.reduce((x, y) => x + y, 0) / l.length;
        const std = Math.sqrt(l.reduce((x, y) => x + (y - mean) ** 2, 0) / l.length);
        assert.ok(std > 0.5 && std < 12, `${recipe}: logit std ${std}`);
        if (sorted[0] - sorted[1] >= 4e-3) clear++;
      }
      assert.ok(clear >= 0.9 * logits.length, `${recipe}: only ${clear}/${logits.length} positions have a margin ≥ 4e-3`);
    }
  });

  test('make-tiny CLI writes every recipe to disk and they open through dirSource', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'qwen-tiny-'));
    try {
      await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/node/make-tiny.ts', '--all', '--out', dir, '--seed', '4'], { cwd: repoRoot });
      for (const recipe of TINY_RECIPES) {
        const ckpt = await openCheckpoint(dirSource(path.join(dir, recipe)));
        checkPlan(ckpt, recipe);
      }
      const single = path.join(dir, 'one');
      await promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/node/make-tiny.ts', '--recipe', 'q4g32', '--out', single, '--hf'], { cwd: repoRoot });
      assert.equal((await openCheckpoint(dirSource(single))).normShift, true);
      await assert.rejects(promisify(execFile)(process.execPath, ['--import', 'tsx', 'src/node/make-tiny.ts', '--recipe', 'nope', '--out', single], { cwd: repoRoot }),
        /unknown recipe "nope"/);
    } finally {
      await rm(dir, { recursive: true });
    }
  });
});
