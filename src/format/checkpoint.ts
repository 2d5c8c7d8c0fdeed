// Opens a Qwen3.5 checkpoint (MLX or HF naming, one file or sharded), decides per module how it is stored
// (spec §5.1) and checks every tensor of the text model against the shapes the config implies (spec §2).
// Only headers are read here; weights are fetched on demand through the ByteSource.

import { dims, normaliseName, parseConfig, tieWordEmbeddingsKey, type Fp8Scheme, type ModelConfig, type QuantParams } from './config.ts';
import { decodeFloats, decodeU32, isFloatDType, type DType, type FloatDType } from './dtype.ts';
import { toScaleDtype } from './quant.ts';
import { dequantizeWeight, type StoredWeight } from './weight-codec.ts';
import { formatBytes, formatLabel, formatProblem, QUANT_MODES, type QuantFormat, type ScaleStorage } from './weight-format.ts';
import {
  FormatError, findDuplicateKey, fmtShape, isNotFound, parseSafetensorsHeader, shapeSize, showValue,
  type ByteSource, type SafetensorsHeader,
} from './safetensors.ts';

export interface TensorEntry {
  file: string;
  rawName: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * What a module is, which decides how its weights are used: `norm` gains are zero-centred in HF checkpoints,
 * `gated_norm` (linear_attn.norm) never is.
 */
export type ModuleRole = 'embedding' | 'linear' | 'norm' | 'gated_norm' | 'conv1d' | 'vector';

/** A quantized linear or embedding: MLX affine or microscaling (§5.2-5.4), or FP8 (§6); `format` is its table entry. */
export interface QuantPlan {
  kind: 'quant';
  path: string;
  role: ModuleRole;
  mode: QuantFormat['kind'];
  bits: number;
  groupSize: number;
  /** Logical (unpacked) matrix [rows, cols] = [out, in]. */
  rows: number;
  cols: number;
  scaleDtype: ScaleStorage;
  format: QuantFormat;
  weight: TensorEntry;
  scales: TensorEntry;
  /** Affine only. */
  biases?: TensorEntry;
  /**
   * FP8 scales stored coarser than per group of a row (spec §6): one for the whole tensor, or one per block of
   * `rows` × groupSize. expandScales brings them to [rows, cols / groupSize], the layout the kernels read.
   */
  scaleLayout?: { kind: 'tensor' } | { kind: 'block'; rows: number };
}

export interface FloatPlan {
  kind: 'float';
  path: string;
  role: ModuleRole;
  dtype: FloatDType;
  shape: number[];
  weight: TensorEntry;
}

export type ModulePlan = QuantPlan | FloatPlan;

export interface Checkpoint {
  config: ModelConfig;
  /** lm_head reuses embed_tokens: config.json's tie_word_embeddings, or no lm_head tensor (spec §1.1; warned when the config says false). */
  tied: boolean;
  /** HF layout: RMSNorm gain = 1 + stored (never for linear_attn.norm). */
  normShift: boolean;
  isMlx: boolean;
  /** The safetensors files that hold the weights. */
  files: string[];
  /** Normalised module path → how it is stored, in layout order. */
  modules: Map<string, ModulePlan>;
  /** Normalised tensor name → where its bytes are. Only tensors of the text model. */
  tensors: Map<string, TensorEntry>;
  /** Raw names present in the files but not used (vision tower, MTP head, tied lm_head, unknown extras). */
  ignored: string[];
  /**
   * What was accepted but left unused and deserves a word to the user, one line per kind: tensors the model has no
   * place for, an lm_head dropped because config.json ties it, quantization overrides for modules that do not exist.
   * The vision tower and MTP head are expected in VL checkpoints and are not mentioned.
   */
  warnings: string[];
  readTensor(name: string): Promise<Uint8Array>;
  source: ByteSource;
}

export interface LayoutModule {
  path: string;
  role: ModuleRole;
  /** Whether MLX converters may store it quantized (Linear / Embedding modules, spec §5.6). */
  quantizable: boolean;
  /** Normalised name of the weight tensor (the bare path for A_log and dt_bias). */
  tensor: string;
  /** Logical shape: [out, in] for linears and embeddings, the stored shape for everything else. */
  shape: number[];
}

const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';
const MAX_LISTED_PROBLEMS = 25;
/** Names listed in one warning line before "(and N more)". */
const MAX_WARNING_NAMES = 5;

/** Every module of the Qwen3.5 text model as the config describes it (spec §2.1), in forward order. */
export function layoutModules(c: ModelConfig, opts: { tied: boolean; isMlx?: boolean }): LayoutModule[] {
  const d = c.hiddenSize;
  const { valueDim, convDim } = dims(c);
  const Hv = c.linearNumValueHeads;
  const Kc = c.convKernel;
  const out: LayoutModule[] = [];
  const add = (path: string, role: ModuleRole, shape: number[], bare = false) =>
    out.push({ path, role, quantizable: role === 'linear' || role === 'embedding', tensor: bare ? path : `${path}.weight`, shape });

  add('embed_tokens', 'embedding', [c.vocabSize, d]);
  c.layerTypes.forEach((t, i) => {
    const p = `layers.${i}`;
    add(`${p}.input_layernorm`, 'norm', [d]);
    if (t === 'linear_attention') {
      const a = `${p}.linear_attn`;
      add(`${a}.in_proj_qkv`, 'linear', [convDim, d]);
      add(`${a}.in_proj_z`, 'linear', [valueDim, d]);
      add(`${a}.in_proj_b`, 'linear', [Hv, d]);
      add(`${a}.in_proj_a`, 'linear', [Hv, d]);
      add(`${a}.conv1d`, 'conv1d', opts.isMlx === false ? [convDim, 1, Kc] : [convDim, Kc, 1]);
      add(`${a}.dt_bias`, 'vector', [Hv], true);
      add(`${a}.A_log`, 'vector', [Hv], true);
      add(`${a}.norm`, 'gated_norm', [c.linearValueHeadDim]);
      add(`${a}.out_proj`, 'linear', [d, valueDim]);
    } else {
      const a = `${p}.self_attn`;
      const D = c.headDim;
      add(`${a}.q_proj`, 'linear', [2 * c.numHeads * D, d]);
      add(`${a}.k_proj`, 'linear', [c.numKvHeads * D, d]);
      add(`${a}.v_proj`, 'linear', [c.numKvHeads * D, d]);
      add(`${a}.o_proj`, 'linear', [d, c.numHeads * D]);
      add(`${a}.q_norm`, 'norm', [D]);
      add(`${a}.k_norm`, 'norm', [D]);
    }
    add(`${p}.post_attention_layernorm`, 'norm', [d]);
    add(`${p}.mlp.gate_proj`, 'linear', [c.intermediateSize, d]);
    add(`${p}.mlp.up_proj`, 'linear', [c.intermediateSize, d]);
    add(`${p}.mlp.down_proj`, 'linear', [d, c.intermediateSize]);
  });
  add('norm', 'norm', [d]);
  if (!opts.tied) add('lm_head', 'linear', [c.vocabSize, d]);
  return out;
}

/** Vision tower and MTP head tensors (and their quantization entries): present in many checkpoints, never used by the text model. */
function isSkipped(rawName: string, normalised: string): boolean {
  return /^(vision_tower|visual|mtp)\./.test(normalised) || /^(vision_tower|mtp)\./.test(rawName) ||
    rawName.startsWith('model.visual.');
}

/** A tensor the text model never reads (vision tower, MTP head), by its name in the files or the shard index. */
export function isSkippedTensor(rawName: string): boolean {
  return isSkipped(rawName, normaliseName(rawName));
}

/**
 * The shards of a weight_map that hold at least one tensor the text model reads, sorted: a shard of only vision
 * tower or MTP tensors is neither downloaded nor opened.
 */
export function neededShards(weightMap: Map<string, string>): string[] {
  const needed = new Set<string>();
  for (const [name, file] of weightMap) if (!isSkippedTensor(name)) needed.add(file);
  return [...needed].sort();
}

/**
 * config.json and the shard index are a few KB to a few hundred KB; anything this large is not one of them, and
 * reading it whole (it is read in one piece) could exhaust memory.
 */
export const MAX_JSON_BYTES = 64 * 1024 * 1024;

/** A JSON file of the checkpoint, size-capped and refused when a key repeats. */
export async function readJson(src: ByteSource, file: string): Promise<unknown> {
  const size = await src.size(file);
  if (size > MAX_JSON_BYTES) throw new FormatError(`${file}: ${size} bytes, expected at most ${MAX_JSON_BYTES} for a JSON file of a checkpoint`);
  const bytes = await src.read(file, 0, size);
  let text: string;
  let json: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${file}: not valid UTF-8 JSON (${(e as Error).message})`);
  }
  const dup = findDuplicateKey(text);
  if (dup) {
    const where = dup.path.length ? `"${dup.path.join('.')}"` : 'the top level';
    throw new FormatError(`${file}: key "${dup.key}" appears twice in ${where} (expected once; which one counts would be a guess)`);
  }
  return json;
}

/** The safetensors files of the checkpoint and, when sharded, the index's name → file map. */
async function listWeightFiles(src: ByteSource): Promise<{ files: string[]; weightMap: Map<string, string> | null }> {
  let index: unknown;
  try {
    index = await readJson(src, INDEX_FILE);
  } catch (e) {
    if (!isNotFound(e)) throw e;
    try {
      await src.size(SINGLE_FILE);
    } catch (e2) {
      if (isNotFound(e2)) throw new FormatError(`neither ${INDEX_FILE} nor ${SINGLE_FILE} found in ${src.describe()}`);
      throw e2;
    }
    return { files: [SINGLE_FILE], weightMap: null };
  }
  const wm = (index as { weight_map?: unknown } | null)?.weight_map;
  if (!wm || typeof wm !== 'object' || Array.isArray(wm)) {
    throw new FormatError(`${INDEX_FILE}: expected an object with a "weight_map" object, found ${showValue(index)}`);
  }
  const weightMap = new Map<string, string>();
  for (const [name, file] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof file !== 'string' || file.includes('..') || file.startsWith('/')) {
      throw new FormatError(`${INDEX_FILE}: weight_map[${showValue(name)}] must be a shard file name, found ${showValue(file)}`);
    }
    weightMap.set(name, file);
  }
  return { files: neededShards(weightMap), weightMap };
}

/** Collects problems so one run reports all of them, not just the first. */
function problems() {
  const list: string[] = [];
  return {
    list,
    add: (msg: string) => { list.push(msg); },
    throwIfAny(where: string) {
      if (list.length === 0) return;
      if (list.length === 1) throw new FormatError(list[0]);
      const shown = list.slice(0, MAX_LISTED_PROBLEMS).map((m) => `  - ${m}`).join('\n');
      const more = list.length > MAX_LISTED_PROBLEMS ? `\n  ... and ${list.length - MAX_LISTED_PROBLEMS} more` : '';
      throw new FormatError(`${where}: ${list.length} problems:\n${shown}${more}`);
    },
  };
}

function tensorDesc(t: TensorEntry): string {
  return `${t.file}: tensor "${t.rawName}"`;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** MLX stores conv1d as [C, Kc, 1], HF as [C, 1, Kc] (spec §2.2); the naming decides only when no conv exists. */
function detectLayout(c: ModelConfig, tensors: Map<string, TensorEntry>, report: (m: string) => void): boolean {
  let verdict: boolean | null = null;
  c.layerTypes.forEach((t, i) => {
    if (t !== 'linear_attention') return;
    const conv = tensors.get(`layers.${i}.linear_attn.conv1d.weight`);
    if (!conv || conv.shape.length !== 3 || c.convKernel === 1) return;
    const [, a, b] = conv.shape;
    const mlx = a === c.convKernel && b === 1 ? true : a === 1 && b === c.convKernel ? false : null;
    if (mlx === null) return; // the per-tensor shape check reports it
    if (verdict === null) verdict = mlx;
    else if (verdict !== mlx) report(`${tensorDesc(conv)}: conv1d layout ${fmtShape(conv.shape)} differs from earlier layers (mixed MLX [C, Kc, 1] and HF [C, 1, Kc] layouts)`);
  });
  if (verdict !== null) return verdict;
  for (const t of tensors.values()) if (t.rawName.startsWith('language_model.')) return true;
  return ![...tensors.values()].some((t) => t.rawName.startsWith('model.'));
}

export async function openCheckpoint(src: ByteSource): Promise<Checkpoint> {
  const rawConfig = await readJson(src, 'config.json').catch((e) => {
    if (isNotFound(e)) throw new FormatError(`config.json: not found in ${src.describe()}`);
    throw e;
  });
  const config = parseConfig(rawConfig);
  const { files, weightMap } = await listWeightFiles(src);
  const headers = await Promise.all(files.map((f) => parseSafetensorsHeader(f, src).catch((e) => {
    if (isNotFound(e)) throw new FormatError(`${f}: listed in ${INDEX_FILE} but not found in ${src.describe()}`);
    throw e;
  })));

  const p = problems();
  if (weightMap) checkWeightMap(weightMap, headers, p.add);
  const { tensors, ignored } = collectTensors(headers, p.add);
  p.throwIfAny(src.describe());

  const isMlx = detectLayout(config, tensors, p.add);
  const warnings: string[] = [];
  const lmHead = tensors.get('lm_head.weight');
  // Spec §1.1: tied when config.json says so OR when there is no lm_head (checkpoints written without the key and
  // without a head exist; the spec's reference implementations tie them). An explicit `false` with no head is a
  // contradiction we cannot resolve silently: tie as the spec does, and say so.
  const tied = config.tieWordEmbeddings || !lmHead;
  if (!config.tieWordEmbeddings && !lmHead) {
    const key = tieWordEmbeddingsKey(rawConfig);
    if (key) {
      warnings.push(`config.json says ${key} is false, but the checkpoint in ${src.describe()} has no lm_head.weight ` +
        `(MLX "language_model.lm_head.weight", HF "lm_head.weight"): the output layer reuses embed_tokens (tied), as ` +
        'when tie_word_embeddings is true; if the model has its own output layer, the checkpoint is incomplete');
    }
  }
  const droppedHead: string[] = [];
  if (tied && lmHead) {
    // The config wins, as in mlx-lm, whose sanitize deletes lm_head when tie_word_embeddings is true: logits use
    // embed_tokens. Said aloud, since the stored head is then unused.
    for (const suffix of ['weight', 'scales', 'biases']) {
      const t = tensors.get(`lm_head.${suffix}`);
      if (t) { ignored.push(t.rawName); droppedHead.push(t.rawName); tensors.delete(`lm_head.${suffix}`); }
    }
    warnings.push(`ignoring ${droppedHead.join(', ')}: ${tieWordEmbeddingsKey(rawConfig)} is true, so the output layer reuses embed_tokens (as mlx-lm does)`);
  }

  const layout = layoutModules(config, { tied, isMlx });
  const modules = new Map<string, ModulePlan>();
  const used = new Set<string>();
  const where = files.length === 1 ? files[0] : `${INDEX_FILE} (${files.length} shards)`;
  for (const m of layout) {
    const plan = planModule(m, config, tensors, where, p.add);
    for (const name of [m.tensor, `${m.path}.scales`, `${m.path}.biases`]) used.add(name);
    // FP8 scales; static activation scales are not used by a weight-only runtime (activations stay f32).
    if (config.fp8) for (const suffix of [config.fp8.scaleSuffix, 'input_scale']) used.add(`${m.path}.${suffix}`);
    if (plan) modules.set(m.path, plan);
  }
  const unused: string[] = [];
  for (const [name, t] of [...tensors]) {
    if (used.has(name)) continue;
    ignored.push(t.rawName);
    unused.push(t.rawName);
    tensors.delete(name);
  }
  p.throwIfAny(src.describe());
  if (unused.length) {
    warnings.push(`ignoring ${unused.length === 1 ? '1 tensor' : `${unused.length} tensors`} the model does not use: ${listNames(unused)}`);
  }
  warnings.push(...overrideWarnings(config, layout, droppedHead.length > 0));

  return {
    config, tied, normShift: !isMlx, isMlx, files, modules, tensors, ignored, warnings, source: src,
    readTensor: (name: string) => readEntry(src, lookup(tensors, name)),
  };
}

function listNames(names: string[]): string {
  const more = names.length - MAX_WARNING_NAMES;
  return names.slice(0, MAX_WARNING_NAMES).join(', ') + (more > 0 ? ` (and ${more} more)` : '');
}

/**
 * Quantization overrides that apply to nothing: a module beyond num_hidden_layers, a typo, a module MLX never
 * quantizes. Accepted (the weights decide the layout), but said, since the file then promises something it does
 * not do. Vision tower / MTP entries are expected and not mentioned; so is lm_head when tying dropped it (already
 * said).
 */
function overrideWarnings(c: ModelConfig, layout: LayoutModule[], headDropped: boolean): string[] {
  const q = c.quantization;
  if (!q) return [];
  const byPath = new Map(layout.map((m) => [m.path, m]));
  const missing: string[] = [];
  const notQuantizable: string[] = [];
  for (const path of q.overrides.keys()) {
    const key = q.overrideKeys.get(path) ?? path;
    if (isSkipped(key, path) || (headDropped && path === 'lm_head')) continue;
    const m = byPath.get(path);
    if (!m) missing.push(key);
    else if (!m.quantizable) notQuantizable.push(`${key} (${m.role})`);
  }
  const out: string[] = [];
  if (missing.length === 1) out.push(`ignoring a quantization override for ${missing[0]}: no such module`);
  else if (missing.length) out.push(`ignoring ${missing.length} quantization overrides for modules that do not exist: ${listNames(missing)}`);
  if (notQuantizable.length) {
    out.push(`ignoring ${notQuantizable.length === 1 ? 'a quantization override' : `${notQuantizable.length} quantization overrides`} for modules MLX never quantizes: ${listNames(notQuantizable)}`);
  }
  return out;
}

/** The index and the shards' own headers must agree on where every tensor is, both ways. */
function checkWeightMap(weightMap: Map<string, string>, headers: SafetensorsHeader[], report: (m: string) => void): void {
  const byFile = new Map(headers.map((h) => [h.file, h]));
  for (const [name, file] of weightMap) {
    // A shard left unopened holds only skipped tensors (neededShards): there is nothing of it to check.
    if (!byFile.has(file) && isSkippedTensor(name)) continue;
    if (!byFile.get(file)?.tensors.has(name)) {
      report(`${INDEX_FILE}: weight_map puts "${name}" in ${file}, but ${file} has no tensor of that name`);
    }
  }
  for (const h of headers) {
    for (const name of h.tensors.keys()) {
      const listed = weightMap.get(name);
      if (listed === h.file) continue;
      report(listed === undefined
        ? `${h.file}: tensor "${name}" is not listed in ${INDEX_FILE}'s weight_map (expected every tensor of every shard there)`
        : `${h.file}: tensor "${name}" is here but ${INDEX_FILE}'s weight_map puts it in ${listed}`);
    }
  }
}

function collectTensors(headers: SafetensorsHeader[], report: (m: string) => void) {
  const tensors = new Map<string, TensorEntry>();
  const ignored: string[] = [];
  for (const h of headers) {
    for (const [rawName, e] of h.tensors) {
      const name = normaliseName(rawName);
      if (isSkipped(rawName, name)) { ignored.push(rawName); continue; }
      const prev = tensors.get(name);
      if (prev) {
        report(`${h.file}: tensor "${rawName}" and ${tensorDesc(prev)} both normalise to "${name}"`);
        continue;
      }
      tensors.set(name, { file: h.file, rawName, ...e });
    }
  }
  return { tensors, ignored };
}

function lookup(tensors: Map<string, TensorEntry>, name: string): TensorEntry {
  const t = tensors.get(name) ?? tensors.get(normaliseName(name));
  if (!t) throw new FormatError(`no tensor "${name}" in this checkpoint`);
  return t;
}

/** The bytes of one stored tensor, checked to be exactly as long as its header says. */
export async function readEntry(src: ByteSource, t: TensorEntry): Promise<Uint8Array> {
  const bytes = await src.read(t.file, t.begin, t.end - t.begin);
  if (bytes.byteLength !== t.end - t.begin) {
    throw new FormatError(`${tensorDesc(t)}: read ${bytes.byteLength} bytes, expected ${t.end - t.begin}`);
  }
  return bytes;
}

/** Which quantization, if any, applies to a quantizable module (spec §5.1: override > false > scales → defaults). */
function quantFor(m: LayoutModule, c: ModelConfig, scales: TensorEntry | undefined, report: (s: string) => void): QuantParams | null {
  const q = c.quantization;
  const ov = q?.overrides.get(m.path);
  if (ov === false) {
    if (scales) report(`${tensorDesc(scales)}: config.json quantization marks "${m.path}" as not quantized (false), but the checkpoint has its .scales`);
    return null;
  }
  if (ov) return ov;
  if (!scales) return null;
  if (!q) {
    report(`${tensorDesc(scales)}: quantized module "${m.path}" but config.json has no "quantization" block (cannot tell bits and group size)`);
    return null;
  }
  return q.defaults;
}

function planModule(
  m: LayoutModule, c: ModelConfig, tensors: Map<string, TensorEntry>, where: string, report: (s: string) => void,
): ModulePlan | null {
  const weight = tensors.get(m.tensor);
  const scales = tensors.get(`${m.path}.scales`);
  const biases = tensors.get(`${m.path}.biases`);
  if (!weight) {
    report(`${where}: missing tensor "${m.tensor}" (MLX key "language_model.${m.path === 'lm_head' ? '' : 'model.'}${m.tensor}"), expected ${m.quantizable ? 'a' : 'float'} ${fmtShape(m.shape)}${m.quantizable ? ' weight (float, or U32 packed with .scales/.biases)' : ''}`);
    return null;
  }
  if (!m.quantizable) {
    if (scales || biases) {
      report(`${tensorDesc((scales ?? biases)!)}: "${m.path}" is never quantized by MLX (${m.role}), found a quantization companion tensor`);
    }
    return floatPlan(m, weight, m.shape, report);
  }
  if (c.fp8) return fp8Module(m, c.fp8, weight, tensors.get(`${m.path}.${c.fp8.scaleSuffix}`), report);
  const params = quantFor(m, c, scales, report);
  if (!params) {
    if (weight.dtype === 'U32') {
      report(`${tensorDesc(weight)}: U32 (packed) weight but no quantization applies to "${m.path}" (${scales ? 'marked false in config.json' : 'no .scales tensor'}); expected a float ${fmtShape(m.shape)}`);
      return null;
    }
    if (biases && !scales) report(`${tensorDesc(biases)}: .biases without .scales for "${m.path}"`);
    return floatPlan(m, weight, m.shape, report);
  }
  return quantPlan(m, params, weight, scales, biases, where, report);
}

/**
 * A linear of a compressed-tensors or Qwen FP8 checkpoint (spec §6): FP8 iff a config group targets it and the
 * ignore list does not name it (compressed-tensors; the tensors must agree), or, for Qwen's FP8, iff its weight is
 * F8_E4M3 (its config lists no reliable exclusions). Matching uses the module's name as the file spells it.
 */
function fp8Module(
  m: LayoutModule, scheme: Fp8Scheme, weight: TensorEntry, scale: TensorEntry | undefined, report: (s: string) => void,
): ModulePlan | null {
  const rawModule = weight.rawName.replace(/\.weight$/, '');
  const ignoredBy = scheme.ignore.find((x) => x.test(rawModule));
  const rule = m.role === 'linear' ? scheme.rules.find((r) => r.targets.some((t) => t.test(rawModule))) : undefined;
  const isFp8 = weight.dtype === 'F8_E4M3';
  if (scheme.method === 'compressed-tensors') {
    if (isFp8 && !rule) {
      report(`${tensorDesc(weight)}: F8_E4M3 weight, but ${m.role === 'linear' ? 'no config group targets' : `quantization_config does not quantize ${m.role}s like`} "${rawModule}"`);
      return null;
    }
    if (isFp8 && ignoredBy) {
      report(`${tensorDesc(weight)}: F8_E4M3 weight, but quantization_config.ignore lists "${rawModule}" (${JSON.stringify(ignoredBy.text)}), so it should be unquantized`);
      return null;
    }
    if (!isFp8 && rule && !ignoredBy) {
      report(`${tensorDesc(weight)}: quantization_config quantizes "${rawModule}" to FP8 (not in ignore), but its weight is ${weight.dtype}`);
      return null;
    }
  }
  if (!isFp8) {
    if (scale) report(`${tensorDesc(scale)}: a ${scheme.scaleSuffix} for "${m.path}", whose weight is ${weight.dtype}, not F8_E4M3`);
    return floatPlan(m, weight, m.shape, report);
  }
  const [rows, cols] = m.shape;
  const strategy = rule ?? scheme.rules[0];
  let ok = true;
  const bad = (msg: string) => { report(msg); ok = false; };
  if (!sameShape(weight.shape, m.shape)) bad(`${tensorDesc(weight)}: expected F8_E4M3 ${fmtShape(m.shape)} from config.json, found ${fmtShape(weight.shape)}`);
  if (!scale) {
    bad(`${tensorDesc(weight)}: F8_E4M3 weight without its "${rawModule}.${scheme.scaleSuffix}"`);
    return null;
  }
  if (!isFloatDType(scale.dtype)) bad(`${tensorDesc(scale)}: expected a float dtype (BF16, F16 or F32), found ${scale.dtype}`);
  let groupSize = cols;
  let scaleLayout: QuantPlan['scaleLayout'];
  let want: number[][];
  switch (strategy.strategy) {
    case 'channel': want = [[rows, 1], [rows]]; break;
    case 'tensor': want = [[], [1], [1, 1]]; scaleLayout = { kind: 'tensor' }; break;
    case 'group': groupSize = strategy.groupSize!; want = [[rows, cols / groupSize]]; break;
    case 'block': {
      const [br, bc] = strategy.block!;
      groupSize = bc;
      want = [[Math.ceil(rows / br), Math.ceil(cols / bc)]];
      scaleLayout = { kind: 'block', rows: br };
      break;
    }
  }
  if (!want.some((w) => sameShape(scale.shape, w))) {
    bad(`${tensorDesc(scale)}: expected shape ${fmtShape(want[0])} for ${strategy.strategy} FP8 scales of [${rows}, ${cols}], found ${fmtShape(scale.shape)}`);
  }
  if (!ok || !isFloatDType(scale.dtype)) return null;
  const format: QuantFormat = { kind: 'fp8', bits: 8, groupSize, scaleDtype: toScaleDtype(scale.dtype) };
  const problem = formatProblem(format, cols);
  if (problem) {
    report(`${tensorDesc(weight)}: ${strategy.strategy} FP8 scales of [${rows}, ${cols}] cannot run here: ${problem}`);
    return null;
  }
  return {
    kind: 'quant', path: m.path, role: m.role, mode: 'fp8', bits: 8, groupSize, rows, cols, scaleDtype: format.scaleDtype, format,
    weight, scales: scale, scaleLayout,
  };
}

/** FP8 scales as the kernels read them, [rows, cols / groupSize]: a tensor scale repeated per row, block rows repeated. */
export function expandScales(plan: QuantPlan, scales: Uint8Array): Uint8Array {
  const layout = plan.scaleLayout;
  if (!layout) return scales;
  const size = scales.byteLength / Math.max(1, shapeSize(plan.scales.shape));
  const perRow = (plan.cols / plan.groupSize) * size;
  const out = new Uint8Array(plan.rows * perRow);
  for (let r = 0; r < plan.rows; r++) {
    if (layout.kind === 'tensor') {
      for (let g = 0; g < perRow; g += size) out.set(scales.subarray(0, size), r * perRow + g);
    } else {
      const b = Math.floor(r / layout.rows);
      out.set(scales.subarray(b * perRow, (b + 1) * perRow), r * perRow);
    }
  }
  return out;
}

/** The stored tensors of a quantized module, scales in the kernels' layout (see expandScales). */
export async function readQuantTensors(src: ByteSource, plan: QuantPlan): Promise<StoredWeight & { rawScales: Uint8Array }> {
  const [weight, scales, biases] = await Promise.all([plan.weight, plan.scales, plan.biases].map((t) => t && readEntry(src, t)));
  return { weight: weight!, scales: expandScales(plan, scales!), biases, rawScales: scales! };
}

function floatPlan(m: LayoutModule, weight: TensorEntry, shape: number[], report: (s: string) => void): FloatPlan | null {
  let ok = true;
  if (!isFloatDType(weight.dtype)) {
    report(`${tensorDesc(weight)}: expected a float dtype (BF16, F16 or F32) for "${m.path}", found ${weight.dtype}`);
    ok = false;
  }
  if (!sameShape(weight.shape, shape)) {
    report(`${tensorDesc(weight)}: expected shape ${fmtShape(shape)} from config.json, found ${fmtShape(weight.shape)}`);
    ok = false;
  }
  return ok ? { kind: 'float', path: m.path, role: m.role, dtype: weight.dtype as FloatDType, shape, weight } : null;
}

function quantPlan(
  m: LayoutModule, q: QuantParams, weight: TensorEntry, scales: TensorEntry | undefined, biases: TensorEntry | undefined,
  where: string, report: (s: string) => void,
): QuantPlan | null {
  const [rows, cols] = m.shape;
  const { mode, bits, groupSize } = q;
  const info = QUANT_MODES[mode];
  const qdesc = mode === 'affine' ? `${bits}-bit group ${groupSize}` : `${mode} (${bits}-bit group ${groupSize})`;
  let ok = true;
  const bad = (msg: string) => { report(msg); ok = false; };
  if (!scales) bad(`${where}: missing tensor "${m.path}.scales": config.json says "${m.path}" is ${qdesc}`);
  if (info.biases && !biases) bad(`${where}: missing tensor "${m.path}.biases": config.json says "${m.path}" is ${qdesc} (affine needs biases)`);
  if (!info.biases && biases) bad(`${tensorDesc(biases)}: config.json says "${m.path}" is ${qdesc}, which has no biases`);
  if (cols % groupSize !== 0) bad(`${tensorDesc(weight)}: input dimension ${cols} is not a multiple of group size ${groupSize}`);
  const packed = [rows, (cols * bits) / 32];
  if (weight.dtype !== 'U32') {
    bad(`${tensorDesc(weight)}: expected U32 packed ${qdesc} weight ${fmtShape(packed)}, found ${weight.dtype} ${fmtShape(weight.shape)}`);
  } else if (!sameShape(weight.shape, packed)) {
    const implied = weight.shape.length === 2 && weight.shape[0] === rows ? (weight.shape[1] * 32) / cols : NaN;
    const hint = Number.isInteger(implied) ? ` (that is ${implied}-bit packing)` : '';
    bad(`${tensorDesc(weight)}: expected U32 ${fmtShape(packed)} for ${qdesc} [${rows}, ${cols}], found ${fmtShape(weight.shape)}${hint}`);
  }
  const sShape = [rows, cols / groupSize];
  // Affine scales and biases are floats of the model's dtype; the microscaling formats store one byte per group.
  const byteScales = !info.biases;
  for (const t of [scales, biases]) {
    if (!t) continue;
    if (byteScales ? t.dtype !== 'U8' : !isFloatDType(t.dtype)) {
      bad(`${tensorDesc(t)}: expected ${byteScales ? `U8 (${info.scales[0].toUpperCase()} codes)` : 'a float dtype (BF16, F16 or F32)'} for ${qdesc}, found ${t.dtype}`);
    }
    if (!sameShape(t.shape, sShape)) bad(`${tensorDesc(t)}: expected shape ${fmtShape(sShape)} for ${qdesc} [${rows}, ${cols}], found ${fmtShape(t.shape)}`);
  }
  if (scales && biases && scales.dtype !== biases.dtype) {
    bad(`${tensorDesc(biases)}: dtype ${biases.dtype} differs from the scales' ${scales.dtype}`);
  }
  if (!ok || !scales) return null;
  const scaleDtype: ScaleStorage = byteScales ? info.scales[0] : toScaleDtype(scales.dtype);
  const format: QuantFormat = { kind: mode, bits, groupSize, scaleDtype };
  return { kind: 'quant', path: m.path, role: m.role, mode, bits, groupSize, rows, cols, scaleDtype, format, weight, scales, biases };
}

function planOf(ckpt: Checkpoint, path: string): ModulePlan {
  const plan = ckpt.modules.get(path);
  if (!plan) throw new FormatError(`no module "${path}" in this checkpoint`);
  return plan;
}

/** A float tensor decoded to f32 (BF16 / F16 / F32 on disk). */
export async function loadFloat(ckpt: Checkpoint, tensorName: string): Promise<Float32Array> {
  const t = lookup(ckpt.tensors, tensorName);
  if (!isFloatDType(t.dtype)) throw new FormatError(`${tensorDesc(t)}: expected a float dtype, found ${t.dtype}`);
  return decodeFloats(await readEntry(ckpt.source, t), t.dtype);
}

/** A module's weight as f32: [rows, cols] for affine modules, the stored shape for float ones. */
export async function dequantModule(ckpt: Checkpoint, path: string): Promise<Float32Array> {
  const plan = planOf(ckpt, path);
  if (plan.kind === 'float') return loadFloat(ckpt, plan.weight.rawName);
  return dequantizeWeight(plan.format, plan.rows, plan.cols, await readQuantTensors(ckpt.source, plan));
}

/**
 * The weights a CPU reference forward needs, keyed by module path, all f32: linears and embeddings dequantised
 * [out·in]; norms as their EFFECTIVE gain; conv1d as [C, Kc] with j = Kc−1 the current token; A_log, dt_bias.
 */
export async function referenceWeights(ckpt: Checkpoint): Promise<Map<string, Float32Array>> {
  const out = new Map<string, Float32Array>();
  for (const [path, plan] of ckpt.modules) {
    const w = await dequantModule(ckpt, path);
    // [C, Kc, 1] and [C, 1, Kc] have the same memory order, c·Kc + j, so conv1d needs no reshuffle.
    if (plan.role === 'norm' && ckpt.normShift) {
      for (let i = 0; i < w.length; i++) w[i] = Math.fround(1 + w[i]);
    }
    out.set(path, w);
  }
  return out;
}

export interface ModuleSummary {
  path: string;
  /** The quantization mode (affine, mxfp4, ...) or float. */
  kind: QuantFormat['kind'] | 'float';
  bits: number | null;
  groupSize: number | null;
  /** Float modules: the weight dtype; quantized: the scale dtype. */
  dtype: string;
  /** Logical shape ([out, in] for affine modules). */
  shape: number[];
  bytes: number;
}

export interface CheckpointSummary {
  modules: ModuleSummary[];
  /** formatLabel ("affine 4-bit g64", "mxfp4", "float BF16") → total bytes on disk. */
  bytesByKind: Record<string, number>;
  totalBytes: number;
  tied: boolean;
  layout: 'mlx' | 'hf';
  files: string[];
}

/** Bytes a module occupies as stored (packed weight + scales (+ biases), or the float weight). */
export function moduleBytes(plan: ModulePlan): number {
  if (plan.kind === 'quant') return formatBytes(plan.format, plan.rows, plan.cols);
  return plan.weight.end - plan.weight.begin;
}

export function summarizeCheckpoint(ckpt: Checkpoint): CheckpointSummary {
  const modules: ModuleSummary[] = [];
  const bytesByKind: Record<string, number> = {};
  let totalBytes = 0;
  for (const plan of ckpt.modules.values()) {
    const row: ModuleSummary = plan.kind === 'quant'
      ? {
        path: plan.path, kind: plan.mode, bits: plan.bits, groupSize: plan.groupSize, dtype: plan.scales.dtype,
        shape: [plan.rows, plan.cols], bytes: moduleBytes(plan),
      }
      : { path: plan.path, kind: 'float', bits: null, groupSize: null, dtype: plan.dtype, shape: plan.shape, bytes: moduleBytes(plan) };
    modules.push(row);
    const label = plan.kind === 'quant' ? formatLabel(plan.format) : `float ${row.dtype}`;
    bytesByKind[label] = (bytesByKind[label] ?? 0) + row.bytes;
    totalBytes += row.bytes;
  }
  return { modules, bytesByKind, totalBytes, tied: ckpt.tied, layout: ckpt.isMlx ? 'mlx' : 'hf', files: ckpt.files };
}

/** Element count of a module's logical weight (for size estimates before any bytes are read). */
export function moduleElements(plan: ModulePlan): number {
  return plan.kind === 'quant' ? plan.rows * plan.cols : shapeSize(plan.shape);
}
