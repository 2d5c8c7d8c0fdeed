// config.json → ModelConfig (spec §1). Handles text_config nesting, layer_types vs full_attention_interval,
// rope settings in rope_parameters or at the top level, and the quantization block (spec §5.1).

import { showValue } from './safetensors.ts';
import { MLX_MODES, QUANT_MODES } from './weight-format.ts';

export type LayerType = 'linear_attention' | 'full_attention';

export interface QuantParams {
  mode: (typeof MLX_MODES)[number];
  bits: number;
  groupSize: number;
}

export interface QuantizationConfig {
  defaults: QuantParams;
  /** Normalised module path (see normaliseName) → override params, or false = not quantized. */
  overrides: Map<string, QuantParams | false>;
  /** Normalised module path → the key as config.json spells it (for messages). */
  overrideKeys: Map<string, string>;
}

/** Which modules a compressed-tensors rule names: "Linear" (every linear), "re:<regex>", or an exact module name. */
export interface ModuleMatcher { text: string; test(rawModule: string): boolean }

/** One compressed-tensors config group's weight quantization (spec §6.1), or Qwen's block FP8 (spec §6.2). */
export interface Fp8Rule {
  targets: ModuleMatcher[];
  /** How weight_scale covers the weight: one per output row, one per tensor, per G values of a row, per block. */
  strategy: 'channel' | 'tensor' | 'group' | 'block';
  groupSize?: number;
  /** [rows, cols] of a block. */
  block?: [number, number];
}

/**
 * FP8 E4M3 weights with float scales (weight-only here: activations stay f32, so input_activations are ignored).
 * A module is FP8 iff a rule targets it and `ignore` does not name it; the tensors must agree.
 */
export interface Fp8Scheme {
  method: 'compressed-tensors' | 'fp8';
  /** The scale tensor's suffix: weight_scale, or Qwen's weight_scale_inv (multiplied despite the name, spec §6.2). */
  scaleSuffix: 'weight_scale' | 'weight_scale_inv';
  rules: Fp8Rule[];
  ignore: ModuleMatcher[];
}

export interface ModelConfig {
  modelType: string;
  hiddenSize: number;
  numLayers: number;
  intermediateSize: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  linearNumKeyHeads: number;
  linearNumValueHeads: number;
  linearKeyHeadDim: number;
  linearValueHeadDim: number;
  convKernel: number;
  layerTypes: LayerType[];
  rmsNormEps: number;
  ropeTheta: number;
  partialRotaryFactor: number;
  /** int(headDim · partialRotaryFactor): the rotated prefix of each head. */
  rotaryDim: number;
  vocabSize: number;
  maxPositionEmbeddings: number;
  /** text_config first, then the top level, default false (spec §1.1); see tieWordEmbeddingsKey. */
  tieWordEmbeddings: boolean;
  eosTokenIds: number[];
  quantization: QuantizationConfig | null;
  /** compressed-tensors / Qwen FP8 checkpoints (spec §6); null for MLX and float ones. */
  fp8: Fp8Scheme | null;
}

export class ConfigError extends Error {
  constructor(message: string) {
    super(`config.json: ${message}`);
    this.name = 'ConfigError';
  }
}

/** Strip the MLX / HF prefixes (longest first) so both naming schemes map to `layers.3.mlp.down_proj` etc. */
export function normaliseName(name: string): string {
  for (const p of ['language_model.model.', 'model.language_model.', 'language_model.', 'model.']) {
    if (name.startsWith(p)) return name.slice(p.length);
  }
  return name;
}

type Json = Record<string, unknown>;

/**
 * Upper bounds for every size config.json sets, checked before anything sized by them is built (the layout holds
 * one object per module per layer; a 1.7 KB config asking for 1e6 layers used to exhaust Node's heap). They are
 * generous: the largest dense Qwen3.5/3.6 has d = 5120, L = 64, I = 17408, V = 248320 and 262144 positions (spec
 * §1.3), so any value above them is a corrupt or hostile file, not a model.
 */
export const CONFIG_LIMITS = {
  num_hidden_layers: 1024,
  hidden_size: 65536,
  intermediate_size: 1 << 20,
  num_attention_heads: 1024,
  num_key_value_heads: 1024,
  head_dim: 4096,
  linear_num_key_heads: 1024,
  linear_num_value_heads: 1024,
  linear_key_head_dim: 4096,
  linear_value_head_dim: 4096,
  linear_conv_kernel_dim: 64,
  full_attention_interval: 1024,
  vocab_size: 1 << 22,
  max_position_embeddings: 1 << 24,
} as const;

type SizeKey = keyof typeof CONFIG_LIMITS;

/** model_type values of the architecture this runtime implements (Qwen3.6 reuses qwen3_5, spec §1.1). */
export const SUPPORTED_MODEL_TYPES = ['qwen3_5', 'qwen3_5_text'] as const;
export const SUPPORTED_ARCHITECTURES = ['Qwen3_5ForConditionalGeneration', 'Qwen3_5ForCausalLM'] as const;

/** An object of config.json and its key path prefix ("" at the top, "text_config." inside the nested one). */
interface Scope { obj: Json; prefix: string }

const isObject = (v: unknown): v is Json => !!v && typeof v === 'object' && !Array.isArray(v);
/** Python writes None as null; an optional key set to null means "not set", as it does for transformers. */
const isSet = (v: unknown) => v !== undefined && v !== null;

const show = (v: unknown) => showValue(v);

function optionalNumber(s: Scope, key: string): number | undefined {
  const v = s.obj[key];
  if (!isSet(v)) return undefined;
  if (typeof v !== 'number') throw new ConfigError(`${s.prefix}${key} must be a number, found ${show(v)}`);
  if (!Number.isFinite(v)) {
    // JSON has no Infinity; JSON.parse gives it for a literal beyond the float64 range such as 1e400.
    throw new ConfigError(`${s.prefix}${key} must be a finite number, found ${show(v)} (a literal beyond the range of a 64-bit float)`);
  }
  return v;
}

/** A size key: an integer in [1, CONFIG_LIMITS[key]]; `fallback` when absent, else required. */
function sizeKey(s: Scope, key: SizeKey, fallback?: number): number {
  const v = optionalNumber(s, key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new ConfigError(`${s.prefix}${key} is missing (expected a positive integer), found ${show(s.obj[key])}`);
  }
  const max = CONFIG_LIMITS[key];
  if (!Number.isInteger(v) || v < 1 || v > max) {
    const why = v > max ? '; larger values are refused before anything is allocated' : '';
    throw new ConfigError(`${s.prefix}${key} must be an integer from 1 to ${max}, found ${v}${why}`);
  }
  return v;
}

/**
 * A real number looked up in several places, first set one wins (rope settings move between rope_parameters,
 * text_config and the top level). Every place that is set must be valid, so a broken copy is never silently shadowed.
 */
function realKey(places: [Scope, string][], fallback: number | undefined, ok: (v: number) => boolean, expected: string): number | undefined {
  let found: number | undefined;
  for (const [s, key] of places) {
    const v = optionalNumber(s, key);
    if (v === undefined) continue;
    if (!ok(v)) throw new ConfigError(`${s.prefix}${key} must be ${expected}, found ${v}`);
    found ??= v;
  }
  return found ?? fallback;
}

function optionalBool(s: Scope, key: string): boolean | undefined {
  const v = s.obj[key];
  if (!isSet(v)) return undefined;
  if (typeof v !== 'boolean') throw new ConfigError(`${s.prefix}${key} must be true or false, found ${show(v)}`);
  return v;
}

/** Refuses other architectures by name before their missing or different keys produce a confusing error. */
function checkArchitecture(top: Scope, text: Scope): string {
  const unsupported = (what: string, found: unknown, supported: readonly string[]) => new ConfigError(
    `unsupported architecture: ${what} is ${show(found)}, expected ${supported.map((x) => `"${x}"`).join(' or ')}` +
    ` (this runtime implements the dense Qwen3.5/3.6 hybrid only${typeof found === 'string' && /moe/i.test(found) ? '; Mixture-of-experts variants are not supported yet' : ''})`);
  const scopes = text === top ? [top] : [top, text];
  for (const s of scopes) {
    const t = s.obj.model_type;
    if (!isSet(t)) continue;
    if (typeof t !== 'string' || !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(t)) {
      throw unsupported(`${s.prefix}model_type`, t, SUPPORTED_MODEL_TYPES);
    }
  }
  for (const s of scopes) {
    const a = s.obj.architectures;
    if (!isSet(a)) continue;
    if (!Array.isArray(a)) throw new ConfigError(`${s.prefix}architectures must be a list of class names, found ${show(a)}`);
    a.forEach((name, i) => {
      if (typeof name !== 'string' || !(SUPPORTED_ARCHITECTURES as readonly string[]).includes(name)) {
        throw unsupported(`${s.prefix}architectures[${i}]`, name, SUPPORTED_ARCHITECTURES);
      }
    });
  }
  const t = top.obj.model_type ?? text.obj.model_type;
  return typeof t === 'string' ? t : '';
}

// A per-module override dict is passed to MLX's `to_quantized(**dict)` on its own, so a key missing from it falls back
// to the MODE's defaults (mlx.nn `_defaults_for_mode`, in the format table), not to the global values.
function parseQuantParams(v: Json, where: string): QuantParams {
  const rawMode = v.mode ?? 'affine';
  if (typeof rawMode !== 'string') throw new ConfigError(`${where}: mode must be a string, found ${show(rawMode)}`);
  if (!(MLX_MODES as readonly string[]).includes(rawMode)) {
    throw new ConfigError(`${where}: unsupported quantization mode ${show(rawMode)} (recognised: ${MLX_MODES.join(', ')})`);
  }
  const mode = rawMode as QuantParams['mode'];
  const rule = QUANT_MODES[mode];
  const bits = (v.bits ?? rule.defaults?.bits) as number;
  const groupSize = (v.group_size ?? rule.defaults?.groupSize) as number;
  if (!rule.bits.includes(bits)) {
    throw new ConfigError(`${where}: unsupported bits ${show(bits)} for mode ${mode} (expected one of ${rule.bits.join(', ')})`);
  }
  if (rule.groups !== 'row' && !rule.groups.includes(groupSize)) {
    throw new ConfigError(`${where}: unsupported group_size ${show(groupSize)} for mode ${mode} (expected one of ${rule.groups.join(', ')})`);
  }
  return { mode, bits, groupSize };
}

export function parseQuantization(raw: Json): QuantizationConfig | null {
  const text = isObject(raw.text_config) ? raw.text_config : {};
  const places: [string, unknown][] = [
    ['quantization', raw.quantization], ['quantization_config', raw.quantization_config],
    ['text_config.quantization', text.quantization], ['text_config.quantization_config', text.quantization_config],
  ];
  for (const [name, v] of places) {
    if (isSet(v) && !isObject(v)) throw new ConfigError(`${name} must be an object, found ${show(v)}`);
  }
  const q = places.map(([, v]) => v).find(isSet) as Json | undefined;
  if (!q) return null;
  if (raw.quantization && raw.quantization_config && !sameJson(raw.quantization, raw.quantization_config)) {
    throw new ConfigError('"quantization" and "quantization_config" differ; refusing to guess which one the weights follow');
  }
  if (q.quant_method === 'compressed-tensors' || q.quant_method === 'fp8') return null; // parseFp8Scheme
  if (isSet(q.quant_method) && q.quant_method !== 'mlx') {
    throw new ConfigError(`quantization method ${show(q.quant_method)} is not supported (supported: MLX affine / mxfp4 / nvfp4 / mxfp8, compressed-tensors FP8, Qwen FP8)`);
  }
  const defaults = parseQuantParams(q, 'quantization defaults');
  const overrides = new Map<string, QuantParams | false>();
  const overrideKeys = new Map<string, string>();
  for (const [k, v] of Object.entries(q)) {
    if (k === 'group_size' || k === 'bits' || k === 'mode') continue;
    let params: QuantParams | false;
    if (v === false) params = false;
    else if (v === true) params = defaults; // mlx: a bare `true` predicate means "use the defaults"
    else if (isObject(v)) params = parseQuantParams(v, `quantization[${show(k)}]`);
    else if (k.includes('.')) {
      // A module path: "false" or 4 here would otherwise be ignored and the module planned from its tensors alone.
      throw new ConfigError(`quantization[${show(k)}] must be true, false or an object {bits, group_size, mode}, found ${show(v)}`);
    } else continue; // other scalar keys (e.g. quant_method: "mlx") carry no per-module meaning
    overrides.set(normaliseName(k), params);
    overrideKeys.set(normaliseName(k), k);
  }
  return { defaults, overrides, overrideKeys };
}

function matcher(v: unknown, where: string): ModuleMatcher {
  if (typeof v !== 'string' || v === '') throw new ConfigError(`${where} must be a module name, "Linear" or "re:<pattern>", found ${show(v)}`);
  if (v.startsWith('re:')) {
    let re: RegExp;
    try {
      // compressed-tensors applies re.match: anchored at the start of the module name only.
      re = new RegExp(`^(?:${v.slice(3)})`);
    } catch (e) {
      throw new ConfigError(`${where}: ${show(v)} is not a regular expression this runtime can read (${(e as Error).message})`);
    }
    return { text: v, test: (m) => re.test(m) };
  }
  // "Linear" is the class name the recipes target; every module this model quantizes is one.
  if (v === 'Linear') return { text: v, test: () => true };
  return { text: v, test: (m) => m === v || normaliseName(m) === normaliseName(v) };
}

function matchers(v: unknown, where: string): ModuleMatcher[] {
  if (!isSet(v)) return [];
  if (!Array.isArray(v)) throw new ConfigError(`${where} must be a list, found ${show(v)}`);
  return v.map((x, i) => matcher(x, `${where}[${i}]`));
}

function positiveInts(v: unknown, n: number): number[] | null {
  // block_structure is [rows, cols], or "RxC" in older compressed-tensors versions.
  const list = typeof v === 'string' ? v.split('x').map(Number) : v;
  return Array.isArray(list) && list.length === n && list.every((x) => Number.isInteger(x) && x > 0) ? (list as number[]) : null;
}

/**
 * compressed-tensors (`quant_method: compressed-tensors`, float-quantized FP8 weights) and Qwen's FP8 releases
 * (`quant_method: fp8`, 128 × 128 blocks), spec §6. Other compressed-tensors formats (int4 pack-quantized, nvfp4)
 * are refused by name: their tensors are not laid out as MLX files.
 */
export function parseFp8Scheme(raw: Json): Fp8Scheme | null {
  const text = isObject(raw.text_config) ? raw.text_config : {};
  const q = [raw.quantization_config, text.quantization_config, raw.quantization, text.quantization].find(isObject);
  if (!q || (q.quant_method !== 'compressed-tensors' && q.quant_method !== 'fp8')) return null;
  const where = 'quantization_config';
  if (q.quant_method === 'fp8') {
    if (isSet(q.fmt) && q.fmt !== 'e4m3') throw new ConfigError(`${where}.fmt ${show(q.fmt)} is not supported (expected "e4m3")`);
    const block = positiveInts(q.weight_block_size, 2);
    if (!block) throw new ConfigError(`${where}.weight_block_size must be [rows, cols] of positive integers, found ${show(q.weight_block_size)}`);
    return {
      method: 'fp8', scaleSuffix: 'weight_scale_inv',
      rules: [{ targets: [matcher('Linear', where)], strategy: 'block', block: block as [number, number] }],
      ignore: matchers(q.modules_to_not_convert ?? q.ignored_layers, `${where}.modules_to_not_convert`),
    };
  }
  const format = q.format;
  if (isSet(format) && format !== 'float-quantized' && format !== 'naive-quantized') {
    throw new ConfigError(`${where}.format ${show(format)} is not supported: only FP8 weights ("float-quantized" or "naive-quantized") load from compressed-tensors checkpoints`);
  }
  if (!isObject(q.config_groups) || Object.keys(q.config_groups).length === 0) {
    throw new ConfigError(`${where}.config_groups must be an object of quantization groups, found ${show(q.config_groups)}`);
  }
  const rules: Fp8Rule[] = [];
  for (const [name, g] of Object.entries(q.config_groups)) {
    const at = `${where}.config_groups.${name}`;
    if (!isObject(g)) throw new ConfigError(`${at} must be an object, found ${show(g)}`);
    if (isSet(g.format) && g.format !== 'float-quantized' && g.format !== 'naive-quantized') {
      throw new ConfigError(`${at}.format ${show(g.format)} is not supported: only FP8 weights ("float-quantized" or "naive-quantized")`);
    }
    const w = g.weights;
    if (!isObject(w)) throw new ConfigError(`${at}.weights must be an object (weight-only runtime: the weights' quantization is what matters), found ${show(w)}`);
    if (w.num_bits !== 8 || w.type !== 'float') {
      throw new ConfigError(`${at}.weights: ${show(w.num_bits)}-bit ${show(w.type)} weights are not supported (only 8-bit float, FP8 E4M3)`);
    }
    if (w.symmetric === false) throw new ConfigError(`${at}.weights: asymmetric FP8 (a zero point) is not supported`);
    const strategy = w.strategy;
    const rule: Fp8Rule = { targets: matchers(g.targets, `${at}.targets`), strategy: 'channel' };
    if (rule.targets.length === 0) throw new ConfigError(`${at}.targets is empty: the group quantizes nothing`);
    if (strategy === 'channel' || strategy === 'tensor') rule.strategy = strategy;
    else if (strategy === 'group') {
      if (!Number.isInteger(w.group_size) || (w.group_size as number) <= 0) throw new ConfigError(`${at}.weights.group_size must be a positive integer for strategy "group", found ${show(w.group_size)}`);
      Object.assign(rule, { strategy, groupSize: w.group_size as number });
    } else if (strategy === 'block') {
      const block = positiveInts(w.block_structure, 2);
      if (!block) throw new ConfigError(`${at}.weights.block_structure must be [rows, cols], found ${show(w.block_structure)}`);
      Object.assign(rule, { strategy, block });
    } else {
      throw new ConfigError(`${at}.weights.strategy ${show(strategy)} is not supported (expected channel, tensor, group or block)`);
    }
    rules.push(rule);
  }
  return { method: 'compressed-tensors', scaleSuffix: 'weight_scale', rules, ignore: matchers(q.ignore, `${where}.ignore`) };
}

/** Deep equality of two JSON values, key order aside; iterative, so hostile nesting cannot overflow the stack. */
function sameJson(a: unknown, b: unknown): boolean {
  const pending: [unknown, unknown][] = [[a, b]];
  while (pending.length) {
    const [x, y] = pending.pop()!;
    if (x === y) continue;
    if (!x || !y || typeof x !== 'object' || typeof y !== 'object' || Array.isArray(x) !== Array.isArray(y)) return false;
    const keys = Object.keys(x);
    if (keys.length !== Object.keys(y).length) return false;
    for (const k of keys) {
      if (!Object.hasOwn(y, k)) return false;
      pending.push([(x as Json)[k], (y as Json)[k]]);
    }
  }
  return true;
}

/**
 * Architecture switches the engine implements in one setting only (spec §1.2 gives the Qwen3.5 values). A config
 * asking for another one describes a different network, which would otherwise load and produce wrong text.
 * Other keys real configs carry (attention_dropout, use_cache, dtype, mamba_ssm_dtype, mtp_*, vision_config,
 * rope_parameters.mrope_*) do not change plain text decoding and are ignored, as mlx-lm ignores them.
 */
function checkFixedSwitches(text: Scope): void {
  const unsupported = (key: string, found: unknown, supported: string, why: string) =>
    new ConfigError(`unsupported setting: ${text.prefix}${key} is ${show(found)}; this runtime supports ${supported} only (${why})`);
  const act = text.obj.hidden_act;
  if (isSet(act)) {
    if (typeof act !== 'string') throw new ConfigError(`${text.prefix}hidden_act must be a string, found ${show(act)}`);
    if (act !== 'silu') throw unsupported('hidden_act', act, '"silu"', 'the MLP is SwiGLU: silu(gate_proj x) · up_proj x');
  }
  const fixed: [string, boolean, string][] = [
    ['attn_output_gate', true, 'full-attention layers always gate their output with the second half of q_proj'],
    ['attention_bias', false, 'no q/k/v/o bias tensors are read'],
  ];
  for (const [key, want, why] of fixed) {
    const v = optionalBool(text, key);
    if (v !== undefined && v !== want) throw unsupported(key, v, String(want), why);
  }
}

/**
 * The config key that decides tie_word_embeddings (text_config first, then the top level, spec §1.1), or null when
 * neither is set and the default, false, applies (transformers' Qwen3_5Config and Qwen3_5TextConfig both default
 * it to False, as does mlx-lm's TextModelArgs).
 */
export function tieWordEmbeddingsKey(raw: unknown): string | null {
  if (!isObject(raw)) return null;
  if (isObject(raw.text_config) && isSet(raw.text_config.tie_word_embeddings)) return 'text_config.tie_word_embeddings';
  return isSet(raw.tie_word_embeddings) ? 'tie_word_embeddings' : null;
}

export function parseConfig(raw: unknown): ModelConfig {
  if (!isObject(raw)) throw new ConfigError(`expected a JSON object, found ${Array.isArray(raw) ? 'an array' : show(raw)}`);
  const top: Scope = { obj: raw, prefix: '' };
  if (isSet(raw.text_config) && !isObject(raw.text_config)) {
    throw new ConfigError(`text_config must be an object, found ${show(raw.text_config)}`);
  }
  const text: Scope = isObject(raw.text_config) ? { obj: raw.text_config, prefix: 'text_config.' } : top;
  const at = (key: string) => `${text.prefix}${key}`;

  const modelType = checkArchitecture(top, text);
  checkFixedSwitches(text);
  const experts = optionalNumber(text, 'num_experts');
  if (experts !== undefined && experts !== 0) {
    throw new ConfigError(`unsupported architecture: ${at('num_experts')} is ${experts}; Mixture-of-experts Qwen3.5 checkpoints (num_experts > 0) are not supported yet`);
  }

  // Every size is bounded here, before the layer list or the layout is built from them.
  const hiddenSize = sizeKey(text, 'hidden_size');
  const numLayers = sizeKey(text, 'num_hidden_layers');
  const numHeads = sizeKey(text, 'num_attention_heads');
  const numKvHeads = sizeKey(text, 'num_key_value_heads');
  if (!isSet(text.obj.head_dim) && hiddenSize % numHeads !== 0) {
    throw new ConfigError(`${at('head_dim')} is not set and ${at('hidden_size')} (${hiddenSize}) is not a multiple of ${at('num_attention_heads')} (${numHeads}), so the head size is undefined`);
  }
  const headDim = sizeKey(text, 'head_dim', hiddenSize / numHeads);
  if (numHeads % numKvHeads !== 0) {
    throw new ConfigError(`${at('num_attention_heads')} (${numHeads}) must be a multiple of ${at('num_key_value_heads')} (${numKvHeads})`);
  }
  const linearNumKeyHeads = sizeKey(text, 'linear_num_key_heads');
  const linearNumValueHeads = sizeKey(text, 'linear_num_value_heads');
  if (linearNumValueHeads % linearNumKeyHeads !== 0) {
    throw new ConfigError(`${at('linear_num_value_heads')} (${linearNumValueHeads}) must be a multiple of ${at('linear_num_key_heads')} (${linearNumKeyHeads})`);
  }
  const intermediateSize = sizeKey(text, 'intermediate_size');
  const linearKeyHeadDim = sizeKey(text, 'linear_key_head_dim');
  const linearValueHeadDim = sizeKey(text, 'linear_value_head_dim');
  const convKernel = sizeKey(text, 'linear_conv_kernel_dim', 4);
  const vocabSize = sizeKey(text, 'vocab_size');
  const maxPositionEmbeddings = sizeKey(text, 'max_position_embeddings', 262144);

  let layerTypes: LayerType[];
  const lt = text.obj.layer_types;
  if (isSet(lt)) {
    if (!Array.isArray(lt)) throw new ConfigError(`${at('layer_types')} must be a list, found ${show(lt)}`);
    if (lt.length !== numLayers) {
      throw new ConfigError(`${at('layer_types')} has ${lt.length} entries but num_hidden_layers is ${numLayers}`);
    }
    layerTypes = lt.map((t, i) => {
      if (t !== 'linear_attention' && t !== 'full_attention') {
        throw new ConfigError(`${at('layer_types')}[${i}] is ${show(t)}, expected "linear_attention" or "full_attention"`);
      }
      return t;
    });
  } else {
    const interval = sizeKey(text, 'full_attention_interval', 4);
    layerTypes = Array.from({ length: numLayers }, (_, i) => ((i + 1) % interval === 0 ? 'full_attention' : 'linear_attention'));
  }

  // Some nested configs carry rope_parameters next to text_config instead of inside it.
  const ropePlaces: [Scope, string][] = [[text, 'rope_parameters'], [text, 'rope_scaling'], [top, 'rope_parameters']];
  let rope: Scope = { obj: {}, prefix: `${text.prefix}rope_parameters.` };
  for (const [s, key] of [...ropePlaces].reverse()) {
    const v = s.obj[key];
    if (!isSet(v)) continue;
    if (!isObject(v)) throw new ConfigError(`${s.prefix}${key} must be an object, found ${show(v)}`);
    rope = { obj: v, prefix: `${s.prefix}${key}.` };
  }
  const thetaPlaces: [Scope, string][] = [[rope, 'rope_theta'], [text, 'rope_theta'], [top, 'rope_theta']];
  const ropeTheta = realKey(thetaPlaces, undefined, (v) => v > 0, 'a positive number');
  if (ropeTheta === undefined) {
    // No default is safe: real Qwen3.5 checkpoints use 1e7 (spec §1.3), mlx-lm's TextModelArgs falls back to 1e5
    // (spec §1.2) and transformers to its generic RoPE default, so any guess disagrees with some reader.
    const looked = [...new Set(thetaPlaces.map(([s, k]) => `${s.prefix}${k}`))].join(', ');
    const params = isSet(text.obj.rope_parameters) ? '' : `; ${at('rope_parameters')} is ${text.obj.rope_parameters === null ? 'null' : 'not set'}`;
    throw new ConfigError(`rope_theta is not set (looked for ${looked}${params}); expected the RoPE base, 10000000 for every published Qwen3.5 model. Refusing to guess: the library defaults disagree (mlx-lm uses 100000)`);
  }
  // 0.25 when unset: both readers agree on it (transformers' Qwen3_5TextConfig sets it "for BC", mlx-lm's
  // TextModelArgs defaults to it, spec §1.2), and every published model uses it (spec §1.3).
  const partialRotaryFactor = realKey([[rope, 'partial_rotary_factor'], [text, 'partial_rotary_factor'], [top, 'partial_rotary_factor']], 0.25,
    (v) => v > 0 && v <= 1, 'a number in (0, 1]')!;
  const ropeType = rope.obj.rope_type ?? rope.obj.type ?? 'default';
  if (ropeType !== 'default' && ropeType !== 'mrope') {
    throw new ConfigError(`${rope.prefix}rope_type: rope type ${show(ropeType)} is not supported (expected "default" or "mrope")`);
  }
  const rotaryDim = Math.floor(headDim * partialRotaryFactor);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    throw new ConfigError(`rotary dimension int(head_dim ${headDim} × partial_rotary_factor ${partialRotaryFactor}) = ${rotaryDim} must be even and at least 2`);
  }
  const rmsNormEps = realKey([[text, 'rms_norm_eps']], 1e-6, (v) => v > 0 && v < 1, 'a number in (0, 1)')!;

  // text_config first, then the top level (spec §1.1).
  const tieText = optionalBool(text, 'tie_word_embeddings');
  const tieTop = optionalBool(top, 'tie_word_embeddings');
  const tie = tieText ?? tieTop ?? false;
  const eosTokenIds = eosIds(top, text, vocabSize);

  return {
    modelType,
    hiddenSize,
    numLayers,
    intermediateSize,
    numHeads,
    numKvHeads,
    headDim,
    linearNumKeyHeads,
    linearNumValueHeads,
    linearKeyHeadDim,
    linearValueHeadDim,
    convKernel,
    layerTypes,
    rmsNormEps,
    ropeTheta,
    partialRotaryFactor,
    rotaryDim,
    vocabSize,
    maxPositionEmbeddings,
    tieWordEmbeddings: tie,
    eosTokenIds,
    quantization: parseQuantization(raw),
    fp8: parseFp8Scheme(raw),
  };
}

/** eos_token_id: one id or a list, top level first (spec §7); every id must be a token of the vocabulary. */
function eosIds(top: Scope, text: Scope, vocabSize: number): number[] {
  const read = (s: Scope): number[] | undefined => {
    const v = s.obj.eos_token_id;
    if (!isSet(v)) return undefined;
    const ids = Array.isArray(v) ? v : [v];
    ids.forEach((id, i) => {
      if (typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= vocabSize) {
        const key = Array.isArray(v) ? `${s.prefix}eos_token_id[${i}]` : `${s.prefix}eos_token_id`;
        throw new ConfigError(`${key} must be a token id from 0 to ${vocabSize - 1} (vocab_size ${vocabSize}), found ${show(id)}`);
      }
    });
    return ids as number[];
  };
  const fromText = read(text); // checked even when the top level wins: a broken copy is never silently shadowed
  return read(top) ?? fromText ?? [];
}

/** Derived sizes used everywhere (spec §1.2). */
export function dims(c: ModelConfig) {
  const keyDim = c.linearNumKeyHeads * c.linearKeyHeadDim;
  const valueDim = c.linearNumValueHeads * c.linearValueHeadDim;
  return { keyDim, valueDim, convDim: 2 * keyDim + valueDim };
}
