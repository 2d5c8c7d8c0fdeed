// Pre-flight memory check: before any weight is downloaded, what a model will need on the GPU, worked out from
// config.json and the tensor NAMES of the shard index alone. Shapes follow from the config (spec §1-2), and which
// modules are quantized, and how, from the config's quantization block plus which companion tensors (`.scales`,
// `.weight_scale`) the index lists (spec §5.1, §6.1). The numbers are compared with the GPU's buffer limits and a
// memory budget; when it does not fit, the report says why, with the numbers, and the largest context that would
// (the CLI prints it, the demo refuses the download until the user overrides).
//
// `preflight()` is pure (no GPU, no IO); `preflightSource()` reads the two JSON files (or, for a single-file
// checkpoint without an index, the safetensors header, a few KB by range request) from a ByteSource.

import type { GpuLimitsInfo, PreflightBuffer, PreflightReport } from '../api.ts';
import { dims, normaliseName, parseConfig, type ModelConfig, type QuantParams } from '../format/config.ts';
import { isSkippedTensor, layoutModules, neededShards, readJson, type LayoutModule } from '../format/checkpoint.ts';
import {
  FormatError, fmtShape, isNotFound, parseSafetensorsHeader, shapeSize, showValue, type ByteSource,
} from '../format/safetensors.ts';
import { formatBytes, formatLabel, formatProblem, type FloatStorage, type LinearFormat } from '../format/weight-format.ts';
import { stateBufferBytes, stateBytes } from '../model/state.ts';
import { fmtBytes } from './preflight-table.ts';

export type { PreflightReport } from '../api.ts';
export { fmtBytes, formatPreflight } from './preflight-table.ts';

/** WebGPU's default limits: what every adapter offers, and all a device gets without asking for more. */
export const WEBGPU_DEFAULT_LIMITS: Readonly<GpuLimitsInfo> = {
  maxBufferSize: 256 * 2 ** 20,
  maxStorageBufferBindingSize: 128 * 2 ** 20,
  maxStorageBuffersPerShaderStage: 8,
};

/**
 * Storage buffers the kernels bind at most in one stage on the paths every device can run. The chunked gated delta
 * rule and the norm folded into a split linear bind 9, but fall back to other kernels below that (see
 * src/gpu/gated-delta-chunk.ts canRunChunked and src/gpu/linear.ts canFoldNorm), so 8 is the requirement.
 */
export const MIN_STORAGE_BUFFERS_PER_STAGE = 8;

/**
 * Share of the machine's memory a model may take by default. The rest is the OS's, the browser's and other
 * programs'; on unified-memory machines (Apple silicon, integrated GPUs) the GPU draws on the same memory.
 */
export const BUDGET_FRACTION = 0.75;
/** What a browser without navigator.deviceMemory (Firefox, Safari) is assumed to have: a guess, said as one. */
export const GUESSED_DEVICE_MEMORY_GIB = 8;
/**
 * Browsers round navigator.deviceMemory down to a power of two and cap it (Chrome at 8), so a figure this large may
 * stand for much more memory: the budget's source then says so.
 */
const DEVICE_MEMORY_CAP_GIB = 8;

const GIB = 2 ** 30;
const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';
const MAX_LISTED_PROBLEMS = 25;
/** load()'s prefill chunk when none is given (src/engine/engine.ts loadEngine). */
export const DEFAULT_PREFILL_CHUNK = 256;

export interface PreflightCoreOptions {
  /** Default min(4096, max_position_embeddings), as loadEngine and `inspect` use. */
  contextLength?: number;
  prefillChunk?: number;
  /** Default: defaultMemoryBudget() (navigator.deviceMemory or a stated guess). */
  memoryBudgetBytes?: number;
  /** Says where memoryBudgetBytes came from (default "the memoryBudgetBytes option"). */
  budgetSource?: string;
  /** Default WebGPU's default limits. */
  limits?: GpuLimitsInfo & { source?: string };
  /** Where the names came from, for the report (default the index). */
  from?: string;
}

// ---------------------------------------------------------------------------------------------------------------
// Memory budget.

/**
 * The default budget: `totalMemoryBytes` (Node: os.totalmem()) or navigator.deviceMemory (GiB) × BUDGET_FRACTION,
 * else a guess of GUESSED_DEVICE_MEMORY_GIB × BUDGET_FRACTION; `source` says which, so a user can tell a measured
 * budget from a guessed one. Without arguments it reads navigator.deviceMemory where the platform has it.
 */
export function defaultMemoryBudget(env?: { deviceMemoryGiB?: number; totalMemoryBytes?: number }): { bytes: number; source: string } {
  const e = env ?? { deviceMemoryGiB: (globalThis.navigator as { deviceMemory?: number } | undefined)?.deviceMemory };
  const pct = `× ${BUDGET_FRACTION}`;
  if (e.totalMemoryBytes !== undefined && e.totalMemoryBytes > 0) {
    return { bytes: Math.floor(e.totalMemoryBytes * BUDGET_FRACTION), source: `os.totalmem() ${fmtBytes(e.totalMemoryBytes)} ${pct}` };
  }
  const dm = e.deviceMemoryGiB;
  if (typeof dm === 'number' && Number.isFinite(dm) && dm > 0) {
    const capped = dm >= DEVICE_MEMORY_CAP_GIB
      ? ' (browsers round this figure down and cap it, Chrome at 8 GiB: on a larger machine pass memoryBudgetBytes)' : '';
    return { bytes: Math.floor(dm * GIB * BUDGET_FRACTION), source: `navigator.deviceMemory ${dm} GiB ${pct}${capped}` };
  }
  return {
    bytes: Math.floor(GUESSED_DEVICE_MEMORY_GIB * GIB * BUDGET_FRACTION),
    source: `a guess of ${GUESSED_DEVICE_MEMORY_GIB} GiB ${pct} (this platform has no navigator.deviceMemory; pass memoryBudgetBytes to set it)`,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Activations.

/**
 * Scratch bytes of one forward of `prefillChunk` tokens plus the logits, all f32: the residual and normed copies
 * (3·d), attention query/gate, keys, values and outputs with room for the prefill kernels' tiles (8·H·D), the MLP's
 * gate, up and product (3·I), the GDN projections before and after the conv (2·conv_dim) and its z, output and
 * normed output (3·value_dim). An upper bound of src/model/qwen35.ts createScratch plus the prefill kernels' own
 * scratch; estimateMemory (engine.ts) uses the same function.
 */
export function activationBytes(cfg: ModelConfig, prefillChunk: number): number {
  const perToken = 4 * (3 * cfg.hiddenSize + 8 * cfg.numHeads * cfg.headDim + 3 * cfg.intermediateSize +
    2 * (2 * cfg.linearNumKeyHeads * cfg.linearKeyHeadDim + cfg.linearNumValueHeads * cfg.linearValueHeadDim) +
    3 * cfg.linearNumValueHeads * cfg.linearValueHeadDim);
  return prefillChunk * perToken + 4 * cfg.vocabSize;
}

// ---------------------------------------------------------------------------------------------------------------
// Per-module formats from names.

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => !!v && typeof v === 'object' && !Array.isArray(v);

const DTYPES: Record<string, FloatStorage> = { bfloat16: 'bf16', float16: 'f16', float32: 'f32', bf16: 'bf16', f16: 'f16', f32: 'f32' };

/**
 * The model's float dtype (torch_dtype or dtype, text_config first): what float linears and affine scales/biases
 * are stored in, since the index gives names, not dtypes. bf16 when unset or unrecognised, as for every published
 * Qwen3.5 conversion.
 */
function modelDtype(raw: Json): FloatStorage {
  const text = isObject(raw.text_config) ? raw.text_config : {};
  for (const v of [text.torch_dtype, text.dtype, raw.torch_dtype, raw.dtype]) {
    if (typeof v === 'string' && Object.hasOwn(DTYPES, v)) return DTYPES[v];
  }
  return 'bf16';
}

interface FormatContext {
  config: ModelConfig;
  dtype: FloatStorage;
  /** Normalised tensor name → the name as the index spells it. */
  names: Map<string, string>;
  report(problem: string): void;
}

/** The GPU format of an MLX per-module quantization (spec §5.1-5.4): affine scales in the model dtype, mx/nv one byte. */
function mlxFormat(q: QuantParams, dtype: FloatStorage): LinearFormat {
  if (q.mode === 'affine') return { kind: 'affine', bits: q.bits, groupSize: q.groupSize, scaleDtype: dtype };
  return { kind: q.mode, bits: q.bits, groupSize: q.groupSize, scaleDtype: q.mode === 'nvfp4' ? 'e4m3' : 'e8m0' };
}

const F32: LinearFormat = { kind: 'float', dtype: 'f32' };

/**
 * How one module is held on the GPU: the one place a new checkpoint format adds its rule. Vectors (norms, conv
 * taps, A_log, dt_bias) become f32 at load (src/engine/load.ts `vector`). Linears and embeddings stay as stored:
 * MLX per spec §5.1 (override dict > override false > `.scales` listed → the defaults > float, the rule
 * checkpoint.ts's quantFor applies to the shards' headers), compressed-tensors and Qwen FP8 per spec §6 (the scale
 * tensor listed → FP8 with scales per the config's strategy, brought to per-row groups as the loader does; their
 * dtype is not in the index: the model dtype is assumed), else float.
 */
function moduleFormat(m: LayoutModule, f: FormatContext): LinearFormat {
  const has = (suffix: string) => f.names.has(`${m.path}.${suffix}`);
  const float: LinearFormat = { kind: 'float', dtype: f.dtype };
  if (!m.quantizable) {
    const companion = ['scales', 'biases', 'weight_scale'].find(has);
    if (companion) f.report(`"${f.names.get(`${m.path}.${companion}`)}": "${m.path}" (${m.role}) is never quantized, found a quantization tensor for it`);
    return F32;
  }
  const fp8 = f.config.fp8;
  if (fp8) {
    if (!has(fp8.scaleSuffix)) return float;
    // The rule the loader would pick for this module (fp8Module in checkpoint.ts), by the name as the index spells it.
    const rawModule = f.names.get(m.tensor)!.replace(/\.weight$/, '');
    const rule = fp8.rules.find((r) => r.targets.some((t) => t.test(rawModule))) ?? fp8.rules[0];
    const groupSize = rule.strategy === 'group' ? rule.groupSize! : rule.strategy === 'block' ? rule.block![1] : m.shape[1];
    return { kind: 'fp8', bits: 8, groupSize, scaleDtype: f.dtype };
  }
  const q = f.config.quantization;
  const override = q?.overrides.get(m.path);
  if (override === false) {
    if (has('scales')) f.report(`"${f.names.get(`${m.path}.scales`)}": config.json's quantization marks "${m.path}" as not quantized (false), but the index lists its .scales`);
    return float;
  }
  if (override) return mlxFormat(override, f.dtype);
  if (!has('scales')) return float;
  if (!q) {
    f.report(`"${f.names.get(`${m.path}.scales`)}": quantized module "${m.path}" but config.json has no "quantization" block (cannot tell bits and group size)`);
    return float;
  }
  return mlxFormat(q.defaults, f.dtype);
}

/** A list of problems reported together, as openCheckpoint does, so one run names all of them. */
function problemList() {
  const list: string[] = [];
  return {
    add: (m: string) => { list.push(m); },
    throwIfAny(where: string) {
      if (list.length === 0) return;
      if (list.length === 1) throw new FormatError(`${where}: ${list[0]}`);
      const shown = list.slice(0, MAX_LISTED_PROBLEMS).map((m) => `  - ${m}`).join('\n');
      const more = list.length > MAX_LISTED_PROBLEMS ? `\n  ... and ${list.length - MAX_LISTED_PROBLEMS} more` : '';
      throw new FormatError(`${where}: ${list.length} problems:\n${shown}${more}`);
    },
  };
}

/** The tensor names of a parsed model.safetensors.index.json, checked to be a weight_map of shard file names. */
export function indexTensorNames(index: unknown, file = INDEX_FILE): string[] {
  const wm = isObject(index) ? index.weight_map : undefined;
  if (!isObject(wm)) throw new FormatError(`${file}: expected an object with a "weight_map" object, found ${showValue(index)}`);
  const names = Object.keys(wm);
  for (const name of names) {
    const shard = wm[name];
    if (typeof shard !== 'string' || !shard || shard.includes('..') || shard.startsWith('/')) {
      throw new FormatError(`${file}: weight_map[${showValue(name)}] must be a shard file name, found ${showValue(shard)}`);
    }
  }
  if (names.length === 0) throw new FormatError(`${file}: weight_map lists no tensors`);
  return names;
}

// ---------------------------------------------------------------------------------------------------------------
// The report.

/** One module as the GPU holds it; `matrix`: a linear or embedding (kept as stored), else an f32 vector. */
export interface PreflightModule { path: string; matrix: boolean; format: LinearFormat; shape: number[]; bytes: number }

/**
 * The pre-flight report of a model from its config.json (parsed JSON) and the names of its tensors (the index's
 * weight_map, or a list). Throws ConfigError for a bad config and FormatError naming every tensor that is missing
 * or inconsistent with the config. Pure: no GPU, no IO.
 */
export function preflight(
  rawConfig: unknown, tensors: Iterable<string> | Map<string, unknown> | Record<string, unknown>, opts: PreflightCoreOptions = {},
): PreflightReport & { modules: PreflightModule[]; config: ModelConfig } {
  const raw = isObject(rawConfig) ? rawConfig : {};
  const cfg = parseConfig(rawConfig);
  const from = opts.from ?? INDEX_FILE;
  const p = problemList();

  // A weight_map object or Map (its keys), or the names themselves.
  const all = tensors instanceof Map ? [...tensors.keys()] as string[]
    : Symbol.iterator in Object(tensors) ? [...(tensors as Iterable<string>)] : Object.keys(tensors);
  const names = new Map<string, string>();
  for (const rawName of all) {
    if (isSkippedTensor(rawName)) continue; // vision tower, MTP head: never on the GPU
    const name = normaliseName(rawName);
    const prev = names.get(name);
    if (prev !== undefined) p.add(`tensors "${prev}" and "${rawName}" both normalise to "${name}"`);
    else names.set(name, rawName);
  }
  if (names.size === 0) {
    p.add(all.length ? 'lists only vision tower / MTP tensors, no text model' : 'lists no tensors');
    p.throwIfAny(from);
  }

  // Spec §1.1: tied when config.json says so or when there is no lm_head (as openCheckpoint decides).
  const tied = cfg.tieWordEmbeddings || !names.has('lm_head.weight');
  const raws = [...names.values()];
  const isMlx = raws.some((n) => n.startsWith('language_model.')) || !raws.some((n) => n.startsWith('model.'));
  const f: FormatContext = { config: cfg, dtype: modelDtype(raw), names, report: p.add };

  const modules: PreflightModule[] = [];
  for (const m of layoutModules(cfg, { tied, isMlx })) {
    if (!names.has(m.tensor)) {
      const mlx = `language_model.${m.path === 'lm_head' ? '' : 'model.'}${m.tensor}`;
      p.add(`no tensor "${m.tensor}" (MLX name "${mlx}"), expected for the ${fmtShape(m.shape)} ${m.role} "${m.path}" that config.json implies`);
      continue;
    }
    const format = moduleFormat(m, f);
    // Vectors: one row of all their elements; linears and embeddings: [out, in].
    const [rows, cols] = m.quantizable ? m.shape : [1, shapeSize(m.shape)];
    const problem = formatProblem(format, cols);
    if (problem && m.quantizable) p.add(`"${m.path}" as ${formatLabel(format)}: ${problem}`);
    modules.push({ path: m.path, matrix: m.quantizable, format, shape: m.shape, bytes: formatBytes(format, rows, cols) });
  }
  p.throwIfAny(from);

  const kinds = new Map<string, number>();
  let weightBytes = 0;
  for (const m of modules) {
    // The f32 vectors get a label of their own (a checkpoint's f32 linears are another matter), and FP8 with one
    // scale per output row one label, whatever the row length.
    const f = m.format;
    const label = !m.matrix ? 'vectors F32' : f.kind === 'fp8' && f.groupSize === m.shape[1] ? 'fp8 per-channel' : formatLabel(f);
    kinds.set(label, (kinds.get(label) ?? 0) + m.bytes);
    weightBytes += m.bytes;
  }
  // Largest first: the table then reads as where the memory goes.
  const byKind = Object.fromEntries([...kinds].sort((a, b) => b[1] - a[1]));

  return { ...assess(cfg, { weightBytes, byKind, tied, from, modules }, opts), modules, config: cfg };
}

interface Weights { weightBytes: number; byKind: Record<string, number>; tied: boolean; from: string; modules: PreflightModule[] }

/** State, activations, totals, buffer and budget checks, and the largest context that fits. */
function assess(cfg: ModelConfig, w: Weights, opts: PreflightCoreOptions): PreflightReport {
  const maxPos = cfg.maxPositionEmbeddings;
  const contextLength = opts.contextLength ?? Math.min(4096, maxPos);
  if (!Number.isInteger(contextLength) || contextLength < 1) throw new RangeError(`contextLength ${showValue(contextLength)} must be a positive integer (tokens)`);
  if (contextLength > maxPos) throw new RangeError(`contextLength ${contextLength} exceeds max_position_embeddings ${maxPos} in config.json`);
  const chunk = opts.prefillChunk ?? DEFAULT_PREFILL_CHUNK;
  if (!Number.isInteger(chunk) || chunk < 1) throw new RangeError(`prefillChunk ${showValue(chunk)} must be a positive integer (tokens)`);
  // loadEngine clips the chunk to the context.
  const prefillChunk = Math.min(chunk, contextLength);

  let budgetBytes: number;
  let budgetSource: string;
  if (opts.memoryBudgetBytes !== undefined) {
    const b = opts.memoryBudgetBytes;
    if (typeof b !== 'number' || !Number.isFinite(b) || b <= 0) throw new RangeError(`memoryBudgetBytes ${showValue(b)} must be a positive number of bytes`);
    budgetBytes = Math.floor(b);
    budgetSource = opts.budgetSource ?? 'the memoryBudgetBytes option';
  } else {
    ({ bytes: budgetBytes, source: budgetSource } = defaultMemoryBudget());
  }
  const given: GpuLimitsInfo & { source?: string } = opts.limits ?? WEBGPU_DEFAULT_LIMITS;
  const limitsSource = given.source ?? (opts.limits ? 'given limits' : 'WebGPU default limits, no adapter queried');
  for (const k of ['maxBufferSize', 'maxStorageBufferBindingSize', 'maxStorageBuffersPerShaderStage'] as const) {
    const v = given[k];
    if (typeof v !== 'number' || !(v > 0)) throw new RangeError(`limits.${k} ${showValue(v)} must be a positive number`);
  }
  const limits: GpuLimitsInfo = {
    maxBufferSize: given.maxBufferSize, maxStorageBufferBindingSize: given.maxStorageBufferBindingSize,
    maxStorageBuffersPerShaderStage: given.maxStorageBuffersPerShaderStage,
  };

  const nLinear = cfg.layerTypes.filter((t) => t === 'linear_attention').length;
  const nFull = cfg.numLayers - nLinear;
  const st = stateBytes(cfg, contextLength);
  const kvBytesPerToken = stateBytes(cfg, 1).kv;
  const stateTotal = st.recurrent + st.conv + st.kv;
  // A chat keeps one copy of every conv and recurrent buffer (src/engine/chat.ts: the state after the shared
  // history, so the next turn prefills only its new tokens).
  const snapshotBytes = st.recurrent + st.conv;
  const act = activationBytes(cfg, prefillChunk);
  const totalBytes = w.weightBytes + stateTotal + snapshotBytes + act;

  // Single buffers. Weights are split by rows across buffers (src/gpu/linear.ts createGpuLinear), so for them only
  // a row must fit; state buffers, the logits and the scratch are each one buffer.
  const perBuffer = stateBufferBytes(cfg, contextLength);
  const { convDim, valueDim } = dims(cfg);
  const buffers: (PreflightBuffer & { perToken?: number })[] = [];
  if (nFull) buffers.push({ name: 'KV cache of one full-attention layer (K or V)', bytes: perBuffer.kv, count: 2 * nFull, perToken: stateBufferBytes(cfg, 1).kv });
  if (nLinear) {
    buffers.push({ name: 'GDN recurrent state of one linear-attention layer', bytes: perBuffer.recurrent, count: 2 * nLinear });
    buffers.push({ name: 'conv state of one linear-attention layer', bytes: perBuffer.conv, count: 2 * nLinear });
  }
  buffers.push({ name: 'logits (and the sampler\'s two vocabulary-sized buffers)', bytes: 4 * cfg.vocabSize, count: 3 });
  const widest = Math.max(cfg.hiddenSize, convDim, valueDim, 2 * cfg.numHeads * cfg.headDim, cfg.intermediateSize);
  buffers.push({ name: `widest scratch buffer (${prefillChunk} tokens × ${widest} f32)`, bytes: 4 * prefillChunk * widest, count: 1 });
  let row = { path: '', bytes: 0 };
  for (const m of w.modules) {
    if (!m.matrix) continue;
    const bytes = formatBytes(m.format, 1, m.shape[1]);
    if (bytes > row.bytes) row = { path: m.path, bytes };
  }
  if (row.path) buffers.push({ name: `one row of ${row.path} (weights are split by rows across buffers)`, bytes: row.bytes, count: 1 });

  const bufferLimit = Math.min(limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  const limitName = limits.maxStorageBufferBindingSize <= limits.maxBufferSize
    ? `maxStorageBufferBindingSize ${fmtBytes(limits.maxStorageBufferBindingSize)}` : `maxBufferSize ${fmtBytes(limits.maxBufferSize)}`;

  const problems: string[] = [];
  let fixedProblem = false; // a problem no context length cures
  if (limits.maxStorageBuffersPerShaderStage < MIN_STORAGE_BUFFERS_PER_STAGE) {
    problems.push(`the kernels bind up to ${MIN_STORAGE_BUFFERS_PER_STAGE} storage buffers in one shader stage; this device allows ${limits.maxStorageBuffersPerShaderStage} (maxStorageBuffersPerShaderStage)`);
    fixedProblem = true;
  }
  for (const b of buffers) {
    if (b.bytes <= bufferLimit) continue;
    const at = b.perToken ? ` at ${contextLength} tokens` : '';
    problems.push(`the ${b.name}${at} is one ${fmtBytes(b.bytes)} buffer, above ${limitName}`);
    if (!b.perToken) fixedProblem = true;
  }
  if (totalBytes > budgetBytes) {
    problems.push(`it needs ${fmtBytes(totalBytes)} (weights ${fmtBytes(w.weightBytes)} + state ${fmtBytes(stateTotal)} + chat snapshot ` +
      `${fmtBytes(snapshotBytes)} + activations ${fmtBytes(act)}), more than the memory budget of ${fmtBytes(budgetBytes)} (${budgetSource})`);
  }

  // The largest context that fits: only the KV cache grows with it, linearly, in the total and in each layer's
  // buffer. The activations are taken at the full prefill chunk (a shorter context clips the chunk, needing less).
  let maxContextThatFits = 0;
  if (!fixedProblem) {
    const fixedBytes = w.weightBytes + st.recurrent + st.conv + snapshotBytes + activationBytes(cfg, chunk);
    const byBudget = kvBytesPerToken > 0 ? Math.floor((budgetBytes - fixedBytes) / kvBytesPerToken) : (fixedBytes <= budgetBytes ? maxPos : 0);
    const kvPerLayerToken = stateBufferBytes(cfg, 1).kv;
    const byBuffer = nFull > 0 ? Math.floor(bufferLimit / kvPerLayerToken) : maxPos;
    maxContextThatFits = Math.max(0, Math.min(maxPos, byBudget, byBuffer));
  }
  const fits = problems.length === 0;
  // A context shorter than the chunk clips it: what fits as asked is a context that fits, whatever the bound says.
  if (fits) maxContextThatFits = Math.max(maxContextThatFits, contextLength);
  let reason: string | undefined;
  if (!fits) {
    const suggestion = maxContextThatFits > 0
      ? `the largest context that fits is ${maxContextThatFits} tokens`
      : fixedProblem ? 'no context length fixes that'
      : `no context length fits: without any KV cache it needs ${fmtBytes(w.weightBytes + st.recurrent + st.conv + snapshotBytes + activationBytes(cfg, chunk))}`;
    reason = `${problems.join('; ')}; ${suggestion}`;
  }
  const plain = buffers.map(({ name, bytes, count }) => ({ name, bytes, count }));
  const largestBuffer = plain.reduce((a, b) => (b.bytes > a.bytes ? b : a));
  return {
    from: w.from, contextLength, prefillChunk, maxPositionEmbeddings: maxPos, tied: w.tied, layers: { linear: nLinear, full: nFull },
    weightBytes: w.weightBytes, weightBytesByKind: w.byKind,
    recurrentBytes: st.recurrent, convBytes: st.conv, kvBytesPerToken, kvBytes: st.kv, stateBytes: stateTotal,
    snapshotBytes, activationBytes: act, totalBytes, budgetBytes, budgetSource,
    limits: { ...limits, source: limitsSource }, largestBuffer, buffers: plain,
    fits, ...(reason === undefined ? {} : { reason }), maxContextThatFits,
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Reading the inputs.

/**
 * The index's tensor names and the shards that hold the text model (vision / MTP-only shards left out, as the
 * loader leaves them), or null when the checkpoint has no index.
 */
export async function readIndex(src: ByteSource): Promise<{ names: string[]; shards: string[] } | null> {
  let index: unknown;
  try {
    index = await readJson(src, INDEX_FILE);
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
  const names = indexTensorNames(index);
  const wm = (index as { weight_map: Record<string, string> }).weight_map;
  return { names, shards: neededShards(new Map(Object.entries(wm))) };
}

/**
 * config.json and the tensor names, read without touching any weight: the index when there is one, else the
 * header of the single model.safetensors (two small range reads; a single-file checkpoint has no other list).
 */
export async function readPreflightInputs(src: ByteSource): Promise<{ config: unknown; names: string[]; from: string; shards: string[] }> {
  const config = await readJson(src, 'config.json').catch((e) => {
    if (isNotFound(e)) throw new FormatError(`config.json: not found in ${src.describe()}`);
    throw e;
  });
  const index = await readIndex(src);
  if (index) return { config, ...index, from: INDEX_FILE };
  try {
    const header = await parseSafetensorsHeader(SINGLE_FILE, src);
    return { config, names: [...header.tensors.keys()], from: `${SINGLE_FILE} header`, shards: [SINGLE_FILE] };
  } catch (e) {
    if (isNotFound(e)) throw new FormatError(`neither ${INDEX_FILE} nor ${SINGLE_FILE} found in ${src.describe()}`);
    throw e;
  }
}

/** preflight() on a checkpoint's config.json and index (or single-file header), read from `src`. */
export async function preflightSource(src: ByteSource, opts: Omit<PreflightCoreOptions, 'from'> = {}): Promise<PreflightReport> {
  const { config, names, from } = await readPreflightInputs(src);
  const { modules: _m, config: _c, ...report } = preflight(config, names, { ...opts, from });
  return report;
}
