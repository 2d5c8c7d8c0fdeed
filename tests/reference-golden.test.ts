// The CPU reference against the logits of an independent float64 implementation (../shared/reference): every
// prompt, prefill then teacher-forced decode, with both delta-rule forms. pub-propc also carries per-layer
// summaries of the hidden states, which localise a mismatch to the first layer and sub-step that goes wrong.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { openCheckpoint, referenceWeights } from '../src/format/checkpoint.ts';
import { dirSource } from '../src/node/fs-source.ts';
import { createReferenceModel } from '../src/model/reference.ts';
import type { TraceFn } from '../src/model/reference.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sharedRef = path.resolve(repoRoot, '../shared/reference');

const LOGIT_TOL = 2e-3;
const ARGMAX_MARGIN = 4e-3;

interface GoldenStep { step: number; argmax: number; margin: number; logits: number[] }
interface GoldenPrompt { name: string; ids: number[]; greedy_tokens: number[]; steps: GoldenStep[] }
interface Golden { prompts: GoldenPrompt[] }

const argmax = (x: ArrayLike<number>): number => {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
};

async function load(name: string) {
  const dir = path.join(sharedRef, name);
  const ckpt = await openCheckpoint(dirSource(dir));
  const weights = await referenceWeights(ckpt);
  return { ckpt, weights, dir };
}

for (const name of ['pub-propc', 'pub-unsloth3']) {
  const dir = path.join(sharedRef, name);
  test(`reference logits match golden.json: ${name}`, { skip: !existsSync(dir) && `${dir} not present` }, async () => {
    const { ckpt, weights } = await load(name);
    const golden = JSON.parse(readFileSync(path.join(dir, 'golden.json'), 'utf8')) as Golden;
    for (const gdn of ['recurrent', 'chunked'] as const) {
      const model = createReferenceModel(ckpt.config, weights, { tied: ckpt.tied, gdn });
      let worst = 0;
      for (const p of golden.prompts) {
        model.reset();
        let promptWorst = 0;
        for (const s of p.steps) {
          const logits = s.step === 0 ? model.prefill(p.ids).at(-1)! : model.decode(p.greedy_tokens[s.step - 1]);
          let err = 0;
          for (let v = 0; v < logits.length; v++) err = Math.max(err, Math.abs(logits[v] - s.logits[v]));
          promptWorst = Math.max(promptWorst, err);
          assert.ok(err <= LOGIT_TOL, `${name} ${gdn} ${p.name} step ${s.step}: max |Δlogit| ${err} > ${LOGIT_TOL}`);
          if (s.margin >= ARGMAX_MARGIN) {
            assert.equal(argmax(logits), s.argmax, `${name} ${gdn} ${p.name} step ${s.step}: argmax (margin ${s.margin})`);
          }
        }
        assert.equal(model.position, p.ids.length + p.steps.length - 1);
        console.log(`${name} [${gdn}] ${p.name} (${p.ids.length} prompt + ${p.steps.length - 1} decode): max |Δlogit| ${promptWorst.toExponential(2)}`);
        worst = Math.max(worst, promptWorst);
      }
      console.log(`${name} [${gdn}] all prompts: max |Δlogit| ${worst.toExponential(2)}`);
    }
  });
}

// diagnostics.json summaries: mean/std over [positions, features] and the first 8 features of the last position.
interface Summary { mean: number; std: number; first8?: number[] }
interface Block { all_positions: Summary; last_position: Summary }

function summarise(x: Float64Array, T: number): Block {
  const n = x.length / T;
  const stats = (v: Float64Array): Summary => {
    let mean = 0;
    for (const e of v) mean += e;
    mean /= v.length;
    let varSum = 0;
    for (const e of v) varSum += (e - mean) ** 2;
    return { mean, std: Math.sqrt(varSum / v.length) };
  };
  const last = x.subarray((T - 1) * n, T * n);
  return { all_positions: stats(x), last_position: { ...stats(last), first8: Array.from(last.subarray(0, 8)) } };
}

const propcDiag = path.join(sharedRef, 'pub-propc', 'diagnostics.json');
test('reference hidden states match pub-propc diagnostics.json layer by layer', { skip: !existsSync(propcDiag) && 'no diagnostics' }, async () => {
  const diag = JSON.parse(readFileSync(propcDiag, 'utf8'));
  const { ckpt, weights } = await load('pub-propc');
  const seen = new Map<string, Block>();
  const trace: TraceFn = (layer, what, x, T) => seen.set(`${layer}.${what}`, summarise(x, T));
  const model = createReferenceModel(ckpt.config, weights, { tied: ckpt.tied, trace });
  model.prefill(diag.prompt_ids);

  // Relative to the size of the quantity: the summaries were printed in f32.
  const tol = (ref: number, scale: number) => 1e-5 * Math.max(1, Math.abs(ref), scale);
  let worst = 0;
  const check = (key: string, ref: Block) => {
    const got = seen.get(key);
    assert.ok(got, `no trace for ${key}`);
    const scale = ref.all_positions.std;
    const pairs: [string, number, number][] = [
      ['all.mean', got.all_positions.mean, ref.all_positions.mean],
      ['all.std', got.all_positions.std, ref.all_positions.std],
      ['last.mean', got.last_position.mean, ref.last_position.mean],
      ['last.std', got.last_position.std, ref.last_position.std],
      ...(ref.last_position.first8 ?? []).map((r, j): [string, number, number] => [`last[${j}]`, got.last_position.first8![j], r]),
    ];
    for (const [what, g, r] of pairs) {
      const err = Math.abs(g - r);
      worst = Math.max(worst, err / Math.max(1, scale));
      assert.ok(err <= tol(r, scale), `${key} ${what}: ${g} vs ${r} (|Δ| ${err})`);
    }
  };
  check('-1.embed', diag.embed);
  for (const L of diag.layers) {
    const names = ['input_norm', 'mixer_out', 'resid_mid', 'post_norm', 'mlp_out', 'layer_out'];
    if (L.type === 'linear_attention') names.push('conv_out', 'core_out');
    for (const what of names) if (L[what]) check(`${L.index}.${what}`, L[what]);
  }
  check('-1.final_norm', diag.final_norm);

  // The first decode step after that prefill: one position, so its summary is the last-position one.
  const step = diag.decode_step1;
  seen.clear();
  model.decode(step.fed_token);
  assert.equal(model.position, step.position + 1);
  const one = (x: Summary): Block => ({ all_positions: x, last_position: x });
  for (const L of step.layers) for (const what of ['mixer_out', 'layer_out']) check(`${L.index}.${what}`, one(L[what]));
  check('-1.final_norm', one(step.final_norm));
  console.log(`pub-propc diagnostics: worst |Δ| / max(1, std) over all summaries ${worst.toExponential(2)}`);
});
