// config.json → ModelConfig (spec §1). Handles text_config nesting, layer_types vs full_attention_interval,
// rope settings in rope_parameters or at the top level, and the quantization block (spec §5.1).

export type LayerType = 'linear_attention' | 'full_attention';

export interface QuantParams {
  mode: 'affine' | 'mxfp4' | 'nvfp4' | 'mxfp8';
  bits: number;
  groupSize: number;
}

export interface QuantizationConfig {
  defaults: QuantParams;
  /** Normalised module path (see normaliseName) → override params, or false = not quantized. */
  overrides: Map<string, QuantParams | false>;
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
  /** From config only; the checkpoint can still force tying when lm_head is absent (spec §1.1). */
  tieWordEmbeddings: boolean;
  eosTokenIds: number[];
  quantization: QuantizationConfig | null;
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

function num(src: Json, key: string, where: string, fallback?: number): number {
  const v = src[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new ConfigError(`missing required key "${key}" in ${where}`);
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new ConfigError(`"${key}" in ${where} must be a number, found ${JSON.stringify(v)}`);
  }
  return v;
}

function positiveInt(src: Json, key: string, where: string, fallback?: number): number {
  const v = num(src, key, where, fallback);
  if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`"${key}" in ${where} must be a positive integer, found ${v}`);
  return v;
}

// MLX's per-mode defaults (mlx.nn `_defaults_for_mode`). A per-module override dict is passed to
// `to_quantized(**dict)` on its own, so a key missing from it falls back to THESE, not to the global values.
const MODE_DEFAULTS: Record<string, { bits: number; groupSize: number }> = {
  affine: { bits: 4, groupSize: 64 },
  mxfp4: { bits: 4, groupSize: 32 },
  nvfp4: { bits: 4, groupSize: 16 },
  mxfp8: { bits: 8, groupSize: 32 },
};

function parseQuantParams(v: Json, where: string): QuantParams {
  const mode = (v.mode ?? 'affine') as QuantParams['mode'];
  const bits = (v.bits ?? MODE_DEFAULTS[mode]?.bits) as number;
  const groupSize = (v.group_size ?? MODE_DEFAULTS[mode]?.groupSize) as number;
  const allowed: Record<string, { bits: number[]; groups: number[] }> = {
    affine: { bits: [2, 3, 4, 5, 6, 8], groups: [32, 64, 128] },
    mxfp4: { bits: [4], groups: [32] },
    nvfp4: { bits: [4], groups: [16] },
    mxfp8: { bits: [8], groups: [32] },
  };
  const rule = allowed[mode];
  if (!rule) throw new ConfigError(`${where}: unsupported quantization mode "${mode}" (supported: affine, mxfp4, nvfp4, mxfp8)`);
  if (!rule.bits.includes(bits)) {
    throw new ConfigError(`${where}: unsupported bits ${JSON.stringify(bits)} for mode ${mode} (expected one of ${rule.bits.join(', ')})`);
  }
  if (!rule.groups.includes(groupSize)) {
    throw new ConfigError(`${where}: unsupported group_size ${JSON.stringify(groupSize)} for mode ${mode} (expected one of ${rule.groups.join(', ')})`);
  }
  return { mode, bits, groupSize };
}

export function parseQuantization(raw: Json): QuantizationConfig | null {
  const q = (raw.quantization ?? raw.quantization_config ??
    (raw.text_config as Json | undefined)?.quantization ??
    (raw.text_config as Json | undefined)?.quantization_config) as Json | undefined;
  if (!q) return null;
  if (raw.quantization && raw.quantization_config &&
    JSON.stringify(raw.quantization) !== JSON.stringify(raw.quantization_config)) {
    throw new ConfigError('"quantization" and "quantization_config" differ; refusing to guess which one the weights follow');
  }
  if (typeof q.quant_method === 'string' && q.quant_method !== 'mlx') {
    throw new ConfigError(`quantization method "${q.quant_method}" is not supported yet (MLX affine/mx formats only)`);
  }
  const defaults = parseQuantParams(q, 'quantization defaults');
  const overrides = new Map<string, QuantParams | false>();
  for (const [k, v] of Object.entries(q)) {
    if (k === 'group_size' || k === 'bits' || k === 'mode') continue;
    if (v === false) overrides.set(normaliseName(k), false);
    else if (v === true) overrides.set(normaliseName(k), defaults); // mlx: a bare `true` predicate means "use the defaults"
    else if (v && typeof v === 'object') overrides.set(normaliseName(k), parseQuantParams(v as Json, `quantization["${k}"]`));
    // other scalar keys (e.g. quant_method: "mlx") carry no per-module meaning
  }
  return { defaults, overrides };
}

export function parseConfig(raw: unknown): ModelConfig {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('expected a JSON object');
  const top = raw as Json;
  const text = (top.text_config && typeof top.text_config === 'object' ? top.text_config : top) as Json;
  const where = top.text_config ? 'text_config' : 'config';

  const modelType = String(top.model_type ?? text.model_type ?? '');
  if (modelType && !/^qwen3_5/.test(modelType) && !/^qwen3_next/.test(modelType)) {
    throw new ConfigError(`model_type "${modelType}" is not a Qwen3.5/3.6 model (expected qwen3_5 or qwen3_5_text)`);
  }
  if (text.num_experts && num(text, 'num_experts', where) > 0) {
    throw new ConfigError('Mixture-of-experts Qwen3.5 checkpoints (num_experts > 0) are not supported yet');
  }

  const hiddenSize = positiveInt(text, 'hidden_size', where);
  const numLayers = positiveInt(text, 'num_hidden_layers', where);
  const numHeads = positiveInt(text, 'num_attention_heads', where);
  const numKvHeads = positiveInt(text, 'num_key_value_heads', where);
  const headDim = positiveInt(text, 'head_dim', where, Math.floor(hiddenSize / numHeads));
  if (numHeads % numKvHeads !== 0) {
    throw new ConfigError(`num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`);
  }
  const linearNumKeyHeads = positiveInt(text, 'linear_num_key_heads', where);
  const linearNumValueHeads = positiveInt(text, 'linear_num_value_heads', where);
  if (linearNumValueHeads % linearNumKeyHeads !== 0) {
    throw new ConfigError(`linear_num_value_heads (${linearNumValueHeads}) must be a multiple of linear_num_key_heads (${linearNumKeyHeads})`);
  }

  let layerTypes: LayerType[];
  if (Array.isArray(text.layer_types)) {
    layerTypes = text.layer_types.map((t, i) => {
      if (t !== 'linear_attention' && t !== 'full_attention') {
        throw new ConfigError(`layer_types[${i}] is "${t}", expected "linear_attention" or "full_attention"`);
      }
      return t;
    });
    if (layerTypes.length !== numLayers) {
      throw new ConfigError(`layer_types has ${layerTypes.length} entries but num_hidden_layers is ${numLayers}`);
    }
  } else {
    const interval = positiveInt(text, 'full_attention_interval', where, 4);
    layerTypes = Array.from({ length: numLayers }, (_, i) => ((i + 1) % interval === 0 ? 'full_attention' : 'linear_attention'));
  }

  // Some nested configs carry rope_parameters next to text_config instead of inside it.
  const rope = (text.rope_parameters ?? text.rope_scaling ?? top.rope_parameters ?? {}) as Json;
  const ropeTheta = num(rope, 'rope_theta', 'rope_parameters', num(text, 'rope_theta', where, num(top, 'rope_theta', 'config', 100000)));
  const partialRotaryFactor = num(rope, 'partial_rotary_factor', 'rope_parameters', num(text, 'partial_rotary_factor', where, num(top, 'partial_rotary_factor', 'config', 0.25)));
  const ropeType = rope.rope_type ?? rope.type ?? 'default';
  if (ropeType !== 'default' && ropeType !== 'mrope') {
    throw new ConfigError(`rope type "${String(ropeType)}" is not supported (expected "default")`);
  }
  const rotaryDim = Math.floor(headDim * partialRotaryFactor);
  if (rotaryDim % 2 !== 0 || rotaryDim > headDim) throw new ConfigError(`rotary dimension ${rotaryDim} must be even and ≤ head_dim ${headDim}`);

  const tie = (text.tie_word_embeddings ?? top.tie_word_embeddings ?? false) as boolean;
  const eosRaw = top.eos_token_id ?? text.eos_token_id;
  const eosTokenIds = eosRaw === undefined || eosRaw === null ? [] : Array.isArray(eosRaw) ? eosRaw.map(Number) : [Number(eosRaw)];

  return {
    modelType,
    hiddenSize,
    numLayers,
    intermediateSize: positiveInt(text, 'intermediate_size', where),
    numHeads,
    numKvHeads,
    headDim,
    linearNumKeyHeads,
    linearNumValueHeads,
    linearKeyHeadDim: positiveInt(text, 'linear_key_head_dim', where),
    linearValueHeadDim: positiveInt(text, 'linear_value_head_dim', where),
    convKernel: positiveInt(text, 'linear_conv_kernel_dim', where, 4),
    layerTypes,
    rmsNormEps: num(text, 'rms_norm_eps', where, 1e-6),
    ropeTheta,
    partialRotaryFactor,
    rotaryDim,
    vocabSize: positiveInt(text, 'vocab_size', where),
    maxPositionEmbeddings: positiveInt(text, 'max_position_embeddings', where, 262144),
    tieWordEmbeddings: Boolean(tie),
    eosTokenIds,
    quantization: parseQuantization(top),
  };
}

/** Derived sizes used everywhere (spec §1.2). */
export function dims(c: ModelConfig) {
  const keyDim = c.linearNumKeyHeads * c.linearKeyHeadDim;
  const valueDim = c.linearNumValueHeads * c.linearValueHeadDim;
  return { keyDim, valueDim, convDim: 2 * keyDim + valueDim };
}
