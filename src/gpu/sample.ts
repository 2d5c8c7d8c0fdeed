// Sampling for the decode loop, on the GPU: logits in, one token id out (8 bytes to read back, never the logits:
// the id and a fault word that reports a NaN or ±inf logit, found in the same pass).
// Semantics and their order (penalties → temperature → top-k → top-p → min-p → draw) are defined by
// sampleReference in src/model/reference-sample.ts; shaders/sample.wgsl explains how the kernels realise them
// without sorting the vocabulary.
//
// Per call: `prep` (one pass over the vocabulary, several workgroups) and `select` (one workgroup). Greedy is a
// short reduction; sampling is a gather and an in-workgroup sort when the candidates or the top-k set fit the
// workgroup, else 8-round searches (one pass over the keys per round) for top-k, top-p and the draw. The uniform
// draw u comes from the caller (createRng below), so a seed reproduces a run.
//
// For the decode loop the dispatches are recorded once (encodeSample binds the sampler's own parameter uniform,
// which writeSampleParams fills per token) and the id comes back through a ring of staging buffers, so a token
// creates no GPU object. sampleToken is the one-off form with its own parameters.
import { readBuffer, type GpuContext } from './context.ts';
import type { Binding, Recorder } from './plan.ts';
import { shader } from './shaders.ts';

export interface SamplingParams {
  /** < 1e-5 (or ≤ 0): greedy. */
  temperature: number;
  /** 0 = off. Ties with the k-th logit are kept. */
  topK: number;
  /** 1 = off. */
  topP: number;
  /** 0 = off. */
  minP: number;
  /** 0 = off. Subtracted from the logit of every token with a count > 0. */
  presencePenalty: number;
  /** 1 = off. Positive logits are divided by it, negative ones multiplied, for tokens with a count > 0. */
  repetitionPenalty: number;
}

/** GPU state of one sequence. */
export interface Sampler {
  /**
   * u32 [2]: the id written by the last sampleToken, then its fault word (0, or which logit was NaN or ±inf;
   * readSampled decodes it).
   */
  readonly ids: GPUBuffer;
  /** u32 [vocabSize]: how often each id was recorded or sampled; the penalties apply where it is > 0. */
  readonly counts: GPUBuffer;
  readonly vocabSize: number;
  /** Ids ≥ validVocab (embedding rows beyond the tokenizer) are never sampled. */
  readonly validVocab: number;
  /** Scratch: order-preserving keys of the penalised logits [vocabSize], prep partials [4 · nparts]. */
  readonly keys: GPUBuffer;
  readonly parts: GPUBuffer;
  readonly nparts: number;
  /** The Params uniform that encodeSample binds and writeSampleParams fills (64 bytes). */
  readonly params: GPUBuffer;
  /** Staging ring for the 8-byte result (copySampled / readStaged); a slot is free again once read. */
  staging: GPUBuffer[];
  /** The ring's next slot. */
  nextStaging: number;
  readonly device: GPUDevice;
}

/** Sampled ids in flight at once, at most (the decode loop keeps two). */
export const STAGING_SLOTS = 4;

// Prep workgroups. Enough for a pass this small on a GPU; SwiftShader pays per workgroup (barrier fibers).
const MAX_PARTS = 64;
const RECORD_WG = 64;
const RED_BYTES = 2048 * 4; // RED in sample.wgsl
const GREEDY_TEMPERATURE = 1e-5; // same constant as reference-sample.ts
// Fault word (sample.wgsl): 0x80000000 | kind << 29 | index; kind 1 NaN, 2 +inf, 3 −inf.
const FAULT_INDEX_MASK = 0x1fffffff;
const MAX_VOCAB = 2 ** 29;

export function createSampler(ctx: GpuContext, vocabSize: number, validVocab: number): Sampler {
  if (!Number.isInteger(vocabSize) || vocabSize < 1 || vocabSize > MAX_VOCAB) {
    throw new Error(`createSampler: vocabSize ${vocabSize} must be an integer in [1, 2^29]`);
  }
  if (!Number.isInteger(validVocab) || validVocab < 1 || validVocab > vocabSize) {
    throw new Error(`createSampler: validVocab ${validVocab} must be an integer in [1, vocabSize ${vocabSize}]`);
  }
  const nparts = Math.min(MAX_PARTS, Math.ceil(vocabSize / prepWorkgroup(vocabSize)));
  return {
    ids: ctx.storage(8, 'sampler-id'),
    // New buffers are zero-filled, so a fresh sampler starts with no counts.
    counts: ctx.storage(vocabSize * 4, 'sampler-counts'),
    vocabSize,
    validVocab,
    keys: ctx.storage(vocabSize * 4, 'sampler-keys'),
    parts: ctx.storage(nparts * 16, 'sampler-parts'),
    nparts,
    params: ctx.device.createBuffer({ label: 'sampler-params', size: 64, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST }),
    staging: Array.from({ length: STAGING_SLOTS }, (_, i) => ctx.device.createBuffer({
      label: `sampler-staging-${i}`, size: 8, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
    })),
    nextStaging: 0,
    device: ctx.device,
  };
}

/** Frees the sampler's buffers; it must not be used afterwards. */
export function destroySampler(sampler: Sampler): void {
  for (const b of [sampler.ids, sampler.counts, sampler.keys, sampler.parts, sampler.params, ...sampler.staging]) b.destroy();
}

/** Forgets every recorded token (a new conversation). Ordered before any work submitted after it. */
export function resetSampler(ctx: GpuContext, sampler: Sampler): void {
  const enc = ctx.device.createCommandEncoder();
  enc.clearBuffer(sampler.counts);
  ctx.device.queue.submit([enc.finish()]);
}

/**
 * Adds ids to the penalty counts: the prompt, or tokens not produced by sampleToken (which counts its own).
 * `ids` is a list or a GPU buffer of u32 (its first `n` elements; all of it by default). Ids ≥ vocabSize are ignored.
 */
export function recordTokens(rec: Recorder, sampler: Sampler, ids: number[] | GPUBuffer, n?: number): void {
  const { ctx } = rec;
  let buf: GPUBuffer;
  let count: number;
  if (Array.isArray(ids)) {
    count = n ?? ids.length;
    if (count > ids.length) throw new Error(`recordTokens: n ${count} exceeds the ${ids.length} ids given`);
    if (count === 0) return;
    const data = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0) throw new Error(`recordTokens: id ${id} at ${i} is not a non-negative integer`);
      data[i] = Math.min(id, 0xffffffff);
    }
    buf = ctx.storage(data.byteLength, 'sampler-record-ids');
    ctx.device.queue.writeBuffer(buf, 0, data);
  } else {
    buf = ids;
    count = n ?? Math.floor(ids.size / 4);
    if (count * 4 > ids.size) throw new Error(`recordTokens: n ${count} exceeds the buffer (${ids.size} bytes)`);
    if (count === 0) return;
  }
  const p = rec.params(paramWords({ V: sampler.vocabSize, n: count }));
  rec.dispatch({ code: shader('sample'), entry: 'record' }, { 0: p, 9: buf, 10: sampler.counts }, Math.ceil(count / RECORD_WG), 'sample-record');
}

/**
 * Samples one token from `logits` (f32 [vocabSize], at offset 0) with the sampler's counts, writes it to
 * sampler.ids and counts it. u ∈ [0, 1) is the caller's uniform draw (f32-representable values reproduce
 * sampleReference exactly; createRng yields such values). The parameters go into a uniform of their own.
 */
export function sampleToken(rec: Recorder, sampler: Sampler, logits: GPUBuffer, params: SamplingParams, uniform01: number): void {
  encodeSample(rec, sampler, logits, rec.params(sampleWords(sampler, params, uniform01)));
}

/** Queues the parameters the next replay of encodeSample's dispatches uses (ordered with submits). */
export function writeSampleParams(ctx: GpuContext, sampler: Sampler, params: SamplingParams, uniform01: number): void {
  ctx.device.queue.writeBuffer(sampler.params, 0, sampleWords(sampler, params, uniform01));
}

/** The sampling dispatches over `logits`, reading their parameters from `p` (default: sampler.params). */
export function encodeSample(rec: Recorder, sampler: Sampler, logits: GPUBuffer, p: Binding = sampler.params): void {
  if (logits.size < sampler.vocabSize * 4) {
    throw new Error(`sampleToken: logits buffer (${logits.size} bytes) is smaller than vocabSize ${sampler.vocabSize} f32`);
  }
  const code = shader('sample');
  rec.dispatch({ code, entry: 'prep', constants: { WG_PREP: prepWorkgroup(sampler.vocabSize) } },
    { 0: p, 1: logits, 2: sampler.counts, 3: sampler.keys, 4: sampler.parts }, [sampler.nparts, 1], 'sample-prep');
  rec.dispatch({ code, entry: 'select_token', constants: { WG: selectWorkgroup(rec.ctx, sampler.vocabSize) } },
    { 0: p, 5: sampler.keys, 6: sampler.parts, 7: sampler.counts, 8: sampler.ids }, [1, 1], 'sample-select');
}

function sampleWords(sampler: Sampler, params: SamplingParams, uniform01: number): Uint32Array<ArrayBuffer> {
  checkParams(params, uniform01);
  const greedy = !(params.temperature >= GREEDY_TEMPERATURE);
  return paramWords({
    V: sampler.vocabSize,
    valid: sampler.validVocab,
    nparts: sampler.nparts,
    greedy: greedy ? 1 : 0,
    topK: !greedy && params.topK > 0 && params.topK < sampler.validVocab ? params.topK : 0,
    useTopP: !greedy && params.topP < 1 ? 1 : 0,
    useMinP: !greedy && params.minP > 0 ? 1 : 0,
    topP: params.topP,
    minP: params.minP,
    invT: greedy ? 1 : 1 / params.temperature,
    u: uniform01,
    rep: params.repetitionPenalty,
    invRep: 1 / params.repetitionPenalty,
    presence: params.presencePenalty,
  });
}

/**
 * Copies the sampled id and fault word into a free staging slot (after the sampling dispatches, outside a pass)
 * and returns the slot for readStaged. The ring holds STAGING_SLOTS buffers made with the sampler; only a caller
 * with more ids in flight than that makes it grow.
 */
export function copySampled(enc: GPUCommandEncoder, sampler: Sampler): number {
  let slot = sampler.nextStaging;
  if (busySlots.has(sampler.staging[slot])) {
    slot = sampler.staging.findIndex((b) => !busySlots.has(b));
    if (slot < 0) {
      slot = sampler.staging.length;
      sampler.staging.push(sampler.device.createBuffer({
        label: `sampler-staging-${slot}`, size: 8, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ,
      }));
    }
  }
  const buf = sampler.staging[slot];
  busySlots.add(buf);
  enc.copyBufferToBuffer(sampler.ids, 0, buf, 0, 8);
  sampler.nextStaging = (slot + 1) % sampler.staging.length;
  return slot;
}

const busySlots = new WeakSet<GPUBuffer>();

/** Reads a slot filled by copySampled (after its command buffer was submitted) and frees it. */
export async function readStaged(sampler: Sampler, slot: number): Promise<Sampled> {
  const buf = sampler.staging[slot];
  try {
    await buf.mapAsync(GPUMapMode.READ);
    const [id, fault] = new Uint32Array(buf.getMappedRange().slice(0));
    buf.unmap();
    return decodeSampled(id, fault);
  } finally {
    busySlots.delete(buf);
  }
}

/** What the last sampleToken produced: the id, and the first logit that was NaN or ±inf if any was. */
export interface Sampled {
  id: number;
  nonFinite?: { index: number; value: number };
}

/** Decodes the two words of sampler.ids. */
export function decodeSampled(id: number, fault: number): Sampled {
  if (fault === 0) return { id };
  const kind = (fault >>> 29) & 3;
  return { id, nonFinite: { index: fault & FAULT_INDEX_MASK, value: kind === 2 ? Infinity : kind === 3 ? -Infinity : NaN } };
}

/** Reads back the last sampled id with its fault word (one 8-byte readback). */
export async function readSampled(ctx: GpuContext, sampler: Sampler): Promise<Sampled> {
  const [id, fault] = new Uint32Array(await readBuffer(ctx, sampler.ids, 8));
  return decodeSampled(id, fault);
}

/**
 * Seeded uniform generator for the draws: xoshiro128** (Blackman & Vigna) seeded through splitmix32. Returns
 * multiples of 2^-24 in [0, 1), exactly representable in f32, so the GPU sees the same u as the CPU reference.
 */
export function createRng(seed: number): () => number {
  let x = seed >>> 0;
  const splitmix = (): number => {
    x = (x + 0x9e3779b9) >>> 0;
    let z = x;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  let s0 = splitmix();
  let s1 = splitmix();
  let s2 = splitmix();
  let s3 = splitmix();
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1; // the all-zero state is a fixed point
  const rotl = (v: number, k: number): number => ((v << k) | (v >>> (32 - k))) >>> 0;
  return () => {
    const result = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    s2 = (s2 ^ s0) >>> 0;
    s3 = (s3 ^ s1) >>> 0;
    s1 = (s1 ^ s2) >>> 0;
    s0 = (s0 ^ s3) >>> 0;
    s2 = (s2 ^ t) >>> 0;
    s3 = rotl(s3, 11);
    return (result >>> 8) / 16777216;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// plumbing

function checkParams(p: SamplingParams, u: number): void {
  const finite = (name: keyof SamplingParams): void => {
    if (!Number.isFinite(p[name])) throw new Error(`sampleToken: ${name} must be a finite number, found ${p[name]}`);
  };
  for (const k of ['temperature', 'topK', 'topP', 'minP', 'presencePenalty', 'repetitionPenalty'] as const) finite(k);
  if (!Number.isInteger(p.topK) || p.topK < 0) throw new Error(`sampleToken: topK must be a non-negative integer, found ${p.topK}`);
  if (!(p.repetitionPenalty > 0)) throw new Error(`sampleToken: repetitionPenalty must be > 0, found ${p.repetitionPenalty}`);
  if (!(u >= 0 && u < 1)) throw new Error(`sampleToken: uniform01 must be in [0, 1), found ${u}`);
}

interface SampleUniform {
  V: number; valid?: number; nparts?: number; greedy?: number; topK?: number; useTopP?: number; useMinP?: number;
  n?: number; topP?: number; minP?: number; invT?: number; u?: number; rep?: number; invRep?: number; presence?: number;
}

/** The Params struct of sample.wgsl. */
function paramWords(f: SampleUniform): Uint32Array<ArrayBuffer> {
  const buf = new ArrayBuffer(64);
  const u = new Uint32Array(buf);
  const x = new Float32Array(buf);
  u.set([f.V, f.valid ?? 0, f.nparts ?? 0, f.greedy ?? 0, f.topK ?? 0, f.useTopP ?? 0, f.useMinP ?? 0, f.n ?? 0]);
  x.set([f.topP ?? 1, f.minP ?? 0, f.invT ?? 1, f.u ?? 0, f.rep ?? 1, f.invRep ?? 1, f.presence ?? 0], 8);
  return u;
}

// Workgroup sizes grow with the vocabulary: a small one gains nothing from more invocations, and SwiftShader's
// cost per barrier grows with them.
function prepWorkgroup(vocabSize: number): number {
  return vocabSize >= 16384 ? 256 : 64;
}

/**
 * select's invocations: a power of two in [128, 1024], about vocabSize / 32, within what the device runs as one
 * workgroup with select's workgroup memory. It is also the small path's capacity (see sample.wgsl).
 */
function selectWorkgroup(ctx: GpuContext, vocabSize: number): number {
  const { maxComputeInvocationsPerWorkgroup: inv, maxComputeWorkgroupSizeX: sx, maxComputeWorkgroupStorageSize: mem } = ctx.limits;
  let wg = 1024;
  // red, rk and ri, res, four broadcast words and the gather counter
  while (wg > 128 && (wg > vocabSize / 32 || wg > inv || wg > sx || RED_BYTES + 8 * wg + 16 * 4 + 20 > mem)) wg /= 2;
  return wg;
}
