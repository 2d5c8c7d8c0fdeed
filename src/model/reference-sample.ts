// CPU reference of GPU sampling (src/gpu/sample.ts, shaders/sample.wgsl): the definition the kernels reproduce.
//
// Order, following Hugging Face transformers' `_get_logits_processor` (generation/utils.py): logits processors
// (penalties) first, then the warpers temperature → top-k → top-p → min-p, each warper seeing the distribution
// renormalised over what the previous ones kept. mlx-lm's `make_sampler` differs: it applies top-p, min-p, then
// top-k to the untempered log-probs and divides by the temperature only when drawing.
//
//  0. Only ids < validVocab whose logit is not NaN are candidates. ±∞ logits are clamped to ±FLT_MAX and −0 is +0,
//     so every candidate has a finite f32 value and equal values compare equal.
//  1. Penalties, on candidates whose count > 0, in f32 arithmetic exactly as the GPU does it (each step rounded to
//     f32, then clamped again): repetition ℓ > 0 ? ℓ·f32(1/r) : ℓ·f32(r) (HF RepetitionPenaltyLogitsProcessor and
//     llama.cpp: divide positive logits, multiply negative ones; 1/r is rounded to f32 once on the CPU so the GPU
//     does a correctly rounded multiply, not WGSL's 2.5-ULP division), then presence ℓ − f32(presencePenalty)
//     (OpenAI / vLLM / mlx-lm presence penalty, applied after the repetition penalty as vLLM and mlx-lm do).
//     The result ℓ is an f32 value; everything after orders tokens by ℓ (descending), ties by id (ascending).
//  2. temperature < 1e-5 (or ≤ 0): greedy, the candidate with the largest ℓ, lowest id on ties. Nothing else applies.
//  3. Otherwise weights e = exp((ℓ − ℓmax) / T) in f64; p = e / Σe.
//  4. top-k (0 < k < #candidates): keep every token with ℓ ≥ the k-th largest ℓ, ties at the boundary included
//     (as HF's TopKLogitsWarper: `scores < topk(scores, k)[..., -1]` are removed).
//  5. top-p (topP < 1): over the top-k set, renormalised, keep the smallest set of the form {ℓ ≥ v} whose
//     probability is ≥ topP. Tie groups are kept or dropped whole. This is HF's TopPLogitsWarper rule (a token
//     survives while the mass strictly before it is < topP) with ties resolved by keeping the whole group.
//  6. min-p (minP > 0): drop tokens with p < minP · p_max, i.e. e < minP (HF MinPLogitsWarper; renormalising
//     after top-k/top-p does not change p / p_max). The top tie group always survives (min_tokens_to_keep = 1).
//  7. Draw: walk the kept tokens in (ℓ descending, id ascending) order accumulating p renormalised over the kept
//     set; return the first token whose cumulative probability is > u. If rounding leaves none, the last one.
//  With no candidate at all the result is 0.
//
// Steps 4-7 keep sets of the form {ℓ ≥ τ}, which is what lets the GPU find them by searching on ℓ instead of
// sorting the vocabulary.
import type { SamplingParams } from '../gpu/sample.ts';

export const GREEDY_TEMPERATURE = 1e-5;
const FLT_MAX = 3.4028234663852886e38;

/** ±∞ → ±FLT_MAX, −0 → +0; NaN stays NaN (excluded). */
function clampF32(x: number): number {
  if (x === Infinity) return FLT_MAX;
  if (x === -Infinity) return -FLT_MAX;
  return x === 0 ? 0 : x;
}

/** Step 0-1 for one token: the penalised f32 logit, NaN when the token is no candidate. */
export function penalisedLogit(logit: number, count: number, params: SamplingParams): number {
  let l = clampF32(Math.fround(logit));
  if (Number.isNaN(l) || count <= 0) return l;
  const r = Math.fround(params.repetitionPenalty);
  const invR = Math.fround(1 / params.repetitionPenalty);
  l = clampF32(Math.fround(l > 0 ? l * invR : l * r));
  return clampF32(Math.fround(l - Math.fround(params.presencePenalty)));
}

export interface SampleTrace {
  id: number;
  greedy: boolean;
  /** Kept ids in draw order (ℓ descending, id ascending), and their renormalised probabilities. */
  kept: number[];
  probs: number[];
  /**
   * How far the decisions are from flipping, for tests that compare an f32 implementation against this one:
   * draw: min |cumulative − u| over the kept tokens' cumulative probabilities (the last one is 1);
   * topP: min |cumulative/total − topP| over the tie-group boundaries of the top-k set (Infinity when off);
   * minP: min |(ℓ − ℓmax)/T − ln minP| over candidates (Infinity when off).
   */
  margins: { draw: number; topP: number; minP: number };
}

export function sampleReferenceTrace(
  logits: ArrayLike<number>, counts: ArrayLike<number>, params: SamplingParams, u: number, validVocab: number,
): SampleTrace {
  const n = Math.min(validVocab, logits.length);
  const ids: number[] = [];
  const l = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    l[i] = penalisedLogit(logits[i], counts[i] ?? 0, params);
    if (!Number.isNaN(l[i])) ids.push(i);
  }
  const margins = { draw: Infinity, topP: Infinity, minP: Infinity };
  if (ids.length === 0) return { id: 0, greedy: true, kept: [], probs: [], margins };

  ids.sort((a, b) => l[b] - l[a] || a - b);
  const lmax = l[ids[0]];
  if (!(params.temperature >= GREEDY_TEMPERATURE)) {
    return { id: ids[0], greedy: true, kept: [ids[0]], probs: [1], margins };
  }

  const T = params.temperature;
  const e = ids.map((i) => Math.exp((l[i] - lmax) / T));
  // The kept set is always a prefix ids[0 .. K) of the sorted order, ending on a tie-group boundary.
  let K = ids.length;
  const groupEnd = (j: number): boolean => j === ids.length - 1 || l[ids[j + 1]] !== l[ids[j]];

  if (params.topK > 0 && params.topK < K) {
    const kth = l[ids[params.topK - 1]];
    while (K > params.topK && l[ids[K - 1]] < kth) K--;
  }

  if (params.topP < 1) {
    let total = 0;
    for (let j = 0; j < K; j++) total += e[j];
    let acc = 0;
    let cut = K;
    for (let j = 0; j < K; j++) {
      acc += e[j];
      if (!groupEnd(j)) continue;
      margins.topP = Math.min(margins.topP, Math.abs(acc / total - params.topP));
      if (acc >= params.topP * total && cut === K) cut = j + 1;
    }
    K = cut;
  }

  if (params.minP > 0) {
    const lnMinP = Math.log(params.minP);
    for (const i of ids) margins.minP = Math.min(margins.minP, Math.abs((l[i] - lmax) / T - lnMinP));
    while (K > 1 && l[ids[K - 1]] < lmax && e[K - 1] < params.minP) K--;
  }

  let mass = 0;
  for (let j = 0; j < K; j++) mass += e[j];
  const kept = ids.slice(0, K);
  const probs = e.slice(0, K).map((x) => x / mass);
  let acc = 0;
  let id = -1;
  for (let j = 0; j < K; j++) {
    acc += probs[j];
    margins.draw = Math.min(margins.draw, Math.abs(acc - u));
    if (id < 0 && acc > u) id = kept[j];
  }
  if (id < 0) id = kept[K - 1];
  return { id, greedy: false, kept, probs, margins };
}

/** The sampled id for logits, penalty counts per id, params and u ∈ [0, 1) (see the rules at the top). */
export function sampleReference(
  logits: ArrayLike<number>, counts: ArrayLike<number>, params: SamplingParams, u: number, validVocab: number,
): number {
  return sampleReferenceTrace(logits, counts, params, u, validVocab).id;
}
