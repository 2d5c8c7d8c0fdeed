// Tiny random Qwen3.5 checkpoints in the exact on-disk layout of the published MLX recipes, for tests of the
// loader, the kernels and the whole model. Weights are a function of (seed, tensor name) only, so every recipe
// (and the HF-named variant) stores the same underlying model, just quantized differently.

import { layoutModules } from './checkpoint.ts';
import { normaliseName, parseConfig } from './config.ts';
import { encodeFloats } from './dtype.ts';
import { quantizeFp8Blocks } from './fp-quant.ts';
import { quantizeWeight } from './weight-codec.ts';
import { QUANT_MODES, type QuantFormat } from './weight-format.ts';
import { writeCheckpointFiles, type TensorData } from './writer.ts';

export const TINY_RECIPES = ['bf16', 'propc', 'unsloth3', 'udq2', 'q4g32', 'q8g128', 'udmxfp4', 'udnvfp4', 'udmxfp8', 'ctfp8', 'qwenfp8'] as const;
export type TinyRecipe = (typeof TINY_RECIPES)[number];

export interface TinyOptions {
  seed?: number;
  /** HF naming (model.language_model.*), conv1d [C, 1, Kc], zero-centred norm gains (no +1). */
  hf?: boolean;
  /** Override the recipe's shard count (udq2 defaults to 3, everything else to 1). */
  shards?: number;
  /** Override parts of TINY_SHAPE (e.g. a real tokenizer's vocabulary for the demo model). */
  shape?: Partial<TinyShape>;
  /** eos_token_id of config.json (default: the last vocabulary id). */
  eosTokenIds?: number[];
}

export const TINY_SHAPE = {
  hiddenSize: 256,
  numLayers: 8,
  numHeads: 4,
  numKvHeads: 2,
  headDim: 64,
  linearKeyHeads: 2,
  linearValueHeads: 4,
  linearHeadDim: 32,
  convKernel: 4,
  intermediateSize: 512,
  vocabSize: 1024,
};

export type TinyShape = { [K in keyof typeof TINY_SHAPE]: number };

/**
 * A module's quantization; mode defaults to affine. fp8 is E4M3 with one bf16 scale per output row (compressed-
 * tensors "channel", groupSize = the row) or, with `block`, one f32 scale per block (Qwen FP8 weight_scale_inv).
 */
interface Quant { bits: number; groupSize: number; mode?: 'affine' | 'mxfp4' | 'nvfp4' | 'mxfp8' | 'fp8'; block?: [number, number] }

interface Recipe {
  /** Global quantization block; null = unquantized checkpoint. */
  defaults: Quant | null;
  /** Whether the block and its per-module dicts carry "mode": "affine" (older files omit it). */
  writeMode: boolean;
  tied: boolean;
  /** Quantization of each Linear/Embedding, by module path (normalised); null = left in bf16. */
  quant(path: string): Quant | null;
  shards: number;
  /** FP8 checkpoints (spec §6): HF names, and a transformers-style quantization_config instead of MLX's block. */
  fp8?: 'compressed-tensors' | 'fp8';
}

/** The module type a path ends with: "q_proj", "in_proj_qkv", "embed_tokens", ... */
function leaf(path: string): string {
  return path.slice(path.lastIndexOf('.') + 1);
}

const g64 = (bits: number): Quant => ({ bits, groupSize: 64 });
const MXFP4: Quant = { mode: 'mxfp4', bits: 4, groupSize: 32 };
const NVFP4: Quant = { mode: 'nvfp4', bits: 4, groupSize: 16 };
const MXFP8: Quant = { mode: 'mxfp8', bits: 8, groupSize: 32 };
const FP8_CHANNEL: Quant = { mode: 'fp8', bits: 8, groupSize: 0 };
const FP8_BLOCK: Quant = { mode: 'fp8', bits: 8, groupSize: 128, block: [128, 128] };

/** The table entry of a recipe's quantization: MLX stores affine scales in the model dtype (bf16 here). */
function formatOf(q: Quant, cols: number): QuantFormat {
  const mode = q.mode ?? 'affine';
  if (mode === 'fp8') return { kind: 'fp8', bits: 8, groupSize: q.groupSize || cols, scaleDtype: 'bf16' };
  return { kind: mode, bits: q.bits, groupSize: q.groupSize, scaleDtype: mode === 'affine' ? 'bf16' : QUANT_MODES[mode].scales[0] };
}

const RECIPES: Record<TinyRecipe, Recipe> = {
  bf16: { defaults: null, writeMode: false, tied: true, shards: 1, quant: () => null },
  // Proposal C: everything 8-bit by default; only the GDN input projections and the MLP get per-layer dicts.
  propc: {
    defaults: g64(8), writeMode: true, tied: false, shards: 1,
    quant: (p) => {
      const l = leaf(p);
      if (l.startsWith('in_proj_')) return g64(6);
      if (l.endsWith('_proj') && p.includes('.mlp.')) return g64(5);
      return g64(8);
    },
  },
  unsloth3: {
    defaults: g64(3), writeMode: false, tied: false, shards: 1,
    quant: (p) => {
      switch (leaf(p)) {
        case 'embed_tokens': return g64(5);
        case 'lm_head': return g64(6);
        case 'q_proj': case 'k_proj': case 'v_proj': case 'in_proj_qkv': case 'in_proj_z': return g64(5);
        case 'down_proj': return g64(4);
        case 'gate_proj': case 'up_proj': return g64(3);
        default: return null; // o_proj, out_proj, in_proj_a, in_proj_b
      }
    },
  },
  udq2: {
    defaults: g64(2), writeMode: true, tied: false, shards: 3,
    quant: (p) => {
      switch (leaf(p)) {
        case 'gate_proj': case 'up_proj': return g64(2);
        case 'down_proj': return g64(3);
        case 'lm_head': return g64(5);
        case 'out_proj': return null;
        default: return g64(4); // embed, q/k/v/o, in_proj_*
      }
    },
  },
  q4g32: { defaults: { bits: 4, groupSize: 32 }, writeMode: true, tied: true, shards: 1, quant: () => ({ bits: 4, groupSize: 32 }) },
  q8g128: { defaults: { bits: 8, groupSize: 128 }, writeMode: true, tied: false, shards: 1, quant: () => ({ bits: 8, groupSize: 128 }) },
  // The microscaling siblings of the UD series (seed 002), each mixing modes per module as mixed recipes do: a base
  // mode for the bulk, other modes and affine bits in per-module dicts, and bf16 projections.
  udmxfp4: {
    defaults: MXFP4, writeMode: true, tied: false, shards: 2,
    quant: (p) => {
      switch (leaf(p)) {
        case 'down_proj': return MXFP8;
        case 'lm_head': return g64(6);
        case 'in_proj_a': case 'in_proj_b': return g64(8);
        case 'o_proj': case 'out_proj': return null;
        default: return MXFP4; // embed, gate/up, q/k/v, in_proj_qkv/z
      }
    },
  },
  udnvfp4: {
    defaults: NVFP4, writeMode: true, tied: false, shards: 1,
    quant: (p) => {
      switch (leaf(p)) {
        case 'lm_head': return MXFP8;
        case 'o_proj': return g64(8);
        case 'out_proj': return null;
        default: return NVFP4;
      }
    },
  },
  udmxfp8: {
    defaults: MXFP8, writeMode: true, tied: true, shards: 1,
    quant: (p) => (/(o_proj|out_proj)$/.test(p) ? null : MXFP8),
  },
  // compressed-tensors FP8-Dynamic (seed 003): every Linear FP8 per channel except the ignore list (lm_head, the
  // GDN's small in_proj_a/b, one o_proj by exact name); embed_tokens is not a Linear and stays bf16.
  ctfp8: {
    defaults: null, writeMode: false, tied: false, shards: 2, fp8: 'compressed-tensors',
    quant: (p) => (p === 'embed_tokens' || CT_IGNORED(p) ? null : FP8_CHANNEL),
  },
  // Qwen's own block FP8 (spec §6.2): 128 × 128 blocks; out_proj left in bf16, as only the tensors say.
  qwenfp8: {
    defaults: null, writeMode: false, tied: false, shards: 1, fp8: 'fp8',
    quant: (p) => (p === 'embed_tokens' || p === 'lm_head' || p.endsWith('out_proj') ? null : FP8_BLOCK),
  },
};

const CT_IGNORE = ['lm_head', 're:.*linear_attn\\.in_proj_[ab]$', 'model.language_model.layers.3.self_attn.o_proj', 're:model\\.visual\\..*'];
function CT_IGNORED(p: string): boolean {
  return p === 'lm_head' || /linear_attn\.in_proj_[ab]$/.test(p) || p === 'layers.3.self_attn.o_proj';
}

/** The bits and group size a recipe gives a Linear/Embedding module (normalised path); null = float. */
export function tinyRecipeQuant(recipe: TinyRecipe, path: string): Quant | null {
  return RECIPES[recipe].quant(path);
}

export function tinyRecipeTied(recipe: TinyRecipe): boolean {
  return RECIPES[recipe].tied;
}

// ---- deterministic randomness -------------------------------------------------------------------------

function hash32(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b9)) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** mulberry32-style generator: small, fast and good enough for test weights. */
function uniformGen(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Tensors at least this large (only real-vocabulary embeddings) take the cheaper generator below. */
const LARGE = 1 << 24;

function normals(n: number, std: number, seed: number, name: string): Float32Array {
  const u = uniformGen(hash32(name, seed));
  const out = new Float32Array(n);
  if (n >= LARGE) {
    // Uniform with the same standard deviation (±std·√3): an embedding needs no normal tails, and this is one
    // generator call per value instead of Box-Muller's log and trig (a 248320 × 1024 embedding took 18 s).
    const k = 2 * std * Math.sqrt(3);
    for (let i = 0; i < n; i++) out[i] = (u() - 0.5) * k;
    return out;
  }
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(1 - u())) * std;
    const th = 2 * Math.PI * u();
    out[i] = r * Math.cos(th);
    if (i + 1 < n) out[i + 1] = r * Math.sin(th);
  }
  return out;
}

function uniforms(n: number, lo: number, hi: number, seed: number, name: string): Float32Array {
  const u = uniformGen(hash32(name, seed));
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * u());
}

// ---- the model -------------------------------------------------------------------------------------------

type Role = 'embedding' | 'linear' | 'norm' | 'gated_norm' | 'conv1d' | 'A_log' | 'dt_bias';

interface TinyModule { path: string; role: Role; shape: number[] }

/** The modules of a Qwen3.5 checkpoint with this shape: the loader's own layout (spec §2.1), so the two never drift. */
function tinyModules(tied: boolean, s: TinyShape): TinyModule[] {
  return layoutModules(parseConfig(tinyConfig(tied, s)), { tied, isMlx: true }).map((m) => ({
    path: m.path,
    role: m.role === 'vector' ? (m.path.endsWith('.A_log') ? 'A_log' : 'dt_bias') : m.role,
    // conv1d is generated as [C, Kc] and laid out per naming scheme when written.
    shape: m.role === 'conv1d' ? m.shape.slice(0, 2) : m.shape,
  }));
}

function tinyLayerTypes(s: TinyShape): ('linear_attention' | 'full_attention')[] {
  return Array.from({ length: s.numLayers }, (_, i) => ((i + 1) % 4 === 0 ? 'full_attention' : 'linear_attention'));
}

/**
 * Scales chosen so the logits spread over a few units (top-1 margins mostly ≫ 4e-3), the model is well
 * conditioned (see linearGain) and nothing saturates: 1/sqrt(in) linears keep activations near unit RMS, and
 * A in [1, 16] gives decays from slow to fast.
 */
const EMBED_STD = 0.3;
/** Final norm gain: brings logits to the scale of real models (max |logit| of a few units, like ../shared/reference). */
const FINAL_GAIN = 0.25;
/**
 * Output projections write into the residual stream at 0.3× so each block perturbs it rather than replacing it.
 * A random net with unit-gain blocks is chaotic: a 1e-6 relative weight change moved its logits by up to 5e-3,
 * i.e. f32 rounding alone would approach the 2e-3 test tolerance. With these gains the same change moves them by
 * at most 3e-4, so the GPU-vs-CPU test measures kernel error, not the model's conditioning.
 */
function linearGain(path: string): number {
  if (path === 'lm_head') return 4;
  if (/(o_proj|out_proj|down_proj)$/.test(path)) return 0.3;
  return 1;
}

function values(m: TinyModule, seed: number): Float32Array {
  const n = m.shape.reduce((a, b) => a * b, 1);
  switch (m.role) {
    case 'embedding': return normals(n, EMBED_STD, seed, m.path);
    case 'linear': return normals(n, linearGain(m.path) / Math.sqrt(m.shape[1]), seed, m.path);
    case 'norm':
      if (m.path === 'norm') return normals(n, 0.02, seed, m.path).map((x) => x + FINAL_GAIN - 1);
      return normals(n, 0.1, seed, m.path); // deviation from a gain of 1
    case 'gated_norm': return normals(n, 0.1, seed, m.path);
    case 'conv1d': return normals(n, 0.5, seed, m.path);
    case 'A_log': return uniforms(n, 1, 16, seed, m.path).map(Math.log);
    case 'dt_bias': return normals(n, 0.25, seed, m.path);
  }
}

function rawName(path: string, suffix: string, hf: boolean): string {
  const name = suffix ? `${path}.${suffix}` : path;
  if (path === 'lm_head') return hf ? name : `language_model.${name}`;
  return hf ? `model.language_model.${name}` : `language_model.model.${name}`;
}

function tensorsFor(m: TinyModule, q: Quant | null, seed: number, hf: boolean): TensorData[] {
  const v = values(m, seed);
  const [rows, cols] = m.shape;
  switch (m.role) {
    case 'embedding': case 'linear': {
      if (!q) return [{ name: rawName(m.path, 'weight', hf), dtype: 'BF16', shape: m.shape, data: encodeFloats(v, 'BF16') }];
      if (q.mode === 'fp8') {
        const scale = q.block ? 'weight_scale_inv' : 'weight_scale';
        const r = q.block ? quantizeFp8Blocks(v, rows, cols, q.block[0], q.block[1], 'F32') : quantizeWeight(v, rows, cols, formatOf(q, cols));
        const sShape = q.block ? [Math.ceil(rows / q.block[0]), Math.ceil(cols / q.block[1])] : [rows, 1];
        return [
          { name: rawName(m.path, 'weight', hf), dtype: 'F8_E4M3', shape: [rows, cols], data: r.weight },
          { name: rawName(m.path, scale, hf), dtype: q.block ? 'F32' : 'BF16', shape: sShape, data: r.scales! },
        ];
      }
      const f = formatOf(q, cols);
      const r = quantizeWeight(v, rows, cols, f);
      const sShape = [rows, cols / q.groupSize];
      const out: TensorData[] = [
        { name: rawName(m.path, 'weight', hf), dtype: 'U32', shape: [rows, (cols * q.bits) / 32], data: r.weight },
        // Affine scales are bf16; the microscaling formats store one E8M0 / E4M3 byte per group (U8 in the file).
        { name: rawName(m.path, 'scales', hf), dtype: f.kind === 'affine' ? 'BF16' : 'U8', shape: sShape, data: r.scales! },
      ];
      if (r.biases) out.push({ name: rawName(m.path, 'biases', hf), dtype: 'BF16', shape: sShape, data: r.biases });
      return out;
    }
    case 'norm': {
      // MLX sanitize adds the 1 in bf16, so the stored gain is bf16(1 + w); HF keeps the zero-centred w.
      const stored = hf ? v : v.map((x) => 1 + x);
      return [{ name: rawName(m.path, 'weight', hf), dtype: 'BF16', shape: m.shape, data: encodeFloats(stored, 'BF16') }];
    }
    case 'gated_norm':
      return [{ name: rawName(m.path, 'weight', hf), dtype: 'BF16', shape: m.shape, data: encodeFloats(v.map((x) => 1 + x), 'BF16') }];
    case 'conv1d': {
      // [C, Kc, 1] and [C, 1, Kc] share the memory order c·Kc + j; only the recorded shape differs.
      const shape = hf ? [rows, 1, cols] : [rows, cols, 1];
      return [{ name: rawName(m.path, 'weight', hf), dtype: 'BF16', shape, data: encodeFloats(v, 'BF16') }];
    }
    case 'A_log':
      return [{ name: rawName(m.path, '', hf), dtype: 'F32', shape: m.shape, data: encodeFloats(v, 'F32') }];
    case 'dt_bias':
      return [{ name: rawName(m.path, '', hf), dtype: 'BF16', shape: m.shape, data: encodeFloats(v, 'BF16') }];
  }
}

/** Tensors a real VL checkpoint carries besides the text model; loaders must skip them. */
function extras(seed: number, hf: boolean): TensorData[] {
  const blob = (name: string) => ({ name, dtype: 'BF16' as const, shape: [8, 16], data: encodeFloats(normals(128, 0.1, seed, name), 'BF16') });
  return [blob(hf ? 'model.visual.blocks.0.attn.qkv.weight' : 'vision_tower.blocks.0.attn.qkv.weight'), blob('mtp.fc.weight')];
}

function tinyConfig(tied: boolean, s: TinyShape, eos?: number[]): Record<string, unknown> {
  return {
    architectures: ['Qwen3_5ForConditionalGeneration'],
    model_type: 'qwen3_5',
    eos_token_id: eos ? (eos.length === 1 ? eos[0] : eos) : s.vocabSize - 1,
    tie_word_embeddings: tied,
    text_config: {
      model_type: 'qwen3_5_text',
      hidden_size: s.hiddenSize,
      intermediate_size: s.intermediateSize,
      num_hidden_layers: s.numLayers,
      num_attention_heads: s.numHeads,
      num_key_value_heads: s.numKvHeads,
      head_dim: s.headDim,
      hidden_act: 'silu',
      attention_bias: false,
      attn_output_gate: true,
      linear_num_key_heads: s.linearKeyHeads,
      linear_num_value_heads: s.linearValueHeads,
      linear_key_head_dim: s.linearHeadDim,
      linear_value_head_dim: s.linearHeadDim,
      linear_conv_kernel_dim: s.convKernel,
      full_attention_interval: 4,
      layer_types: tinyLayerTypes(s),
      max_position_embeddings: 4096,
      rms_norm_eps: 1e-6,
      vocab_size: s.vocabSize,
      tie_word_embeddings: tied,
      dtype: 'bfloat16',
      rope_parameters: {
        rope_type: 'default', rope_theta: 10000000, partial_rotary_factor: 0.25,
        mrope_section: [3, 3, 2], mrope_interleaved: true,
      },
      eos_token_id: eos ? (eos.length === 1 ? eos[0] : eos) : s.vocabSize - 1,
    },
  };
}

function quantizationBlock(r: Recipe, mods: TinyModule[], hf: boolean): Record<string, unknown> | null {
  if (r.fp8 === 'fp8') return { quant_method: 'fp8', fmt: 'e4m3', activation_scheme: 'dynamic', weight_block_size: [128, 128] };
  if (r.fp8 === 'compressed-tensors') {
    // The shape of llm-compressor's FP8_DYNAMIC preset (spec §6.1).
    return {
      quant_method: 'compressed-tensors', format: 'float-quantized', quantization_status: 'compressed',
      config_groups: {
        group_0: {
          targets: ['Linear'],
          weights: { num_bits: 8, type: 'float', strategy: 'channel', symmetric: true, dynamic: false, observer: 'minmax' },
          input_activations: { num_bits: 8, type: 'float', strategy: 'token', symmetric: true, dynamic: true },
        },
      },
      ignore: CT_IGNORE, kv_cache_scheme: null,
    };
  }
  if (!r.defaults) return null;
  const entry = (q: Quant) => (r.writeMode ? { group_size: q.groupSize, bits: q.bits, mode: q.mode ?? 'affine' } : { group_size: q.groupSize, bits: q.bits });
  const block: Record<string, unknown> = { group_size: r.defaults.groupSize, bits: r.defaults.bits };
  if (r.writeMode) block.mode = r.defaults.mode ?? 'affine';
  for (const m of mods) {
    if (m.role !== 'linear' && m.role !== 'embedding') continue;
    const q = r.quant(m.path);
    const key = rawName(m.path, '', hf);
    if (!q) block[key] = false;
    else if (q.bits !== r.defaults.bits || q.groupSize !== r.defaults.groupSize || (q.mode ?? 'affine') !== (r.defaults.mode ?? 'affine')) block[key] = entry(q);
  }
  return block;
}

/** A complete checkpoint (file name → bytes) for one of the TINY_RECIPES. */
export function makeTinyCheckpoint(recipe: TinyRecipe, opts: TinyOptions = {}): Map<string, Uint8Array> {
  const r = RECIPES[recipe];
  if (!r) throw new Error(`unknown tiny recipe "${recipe}" (expected one of ${TINY_RECIPES.join(', ')})`);
  const seed = opts.seed ?? 0;
  const hf = opts.hf ?? r.fp8 !== undefined;
  const shape: TinyShape = { ...TINY_SHAPE, ...opts.shape };
  const mods = tinyModules(r.tied, shape);
  const tensors: TensorData[] = [];
  for (const m of mods) {
    const quantizable = m.role === 'linear' || m.role === 'embedding';
    tensors.push(...tensorsFor(m, quantizable ? r.quant(m.path) : null, seed, hf));
  }
  tensors.push(...extras(seed, hf));
  const shards = opts.shards ?? r.shards;
  // A module whose triplet spans shards catches loaders that assume one file per module.
  const split = shards >= 3 ? splitCandidate(r, mods, hf) : [];
  return writeCheckpointFiles(tinyConfig(r.tied, shape, opts.eosTokenIds), quantizationBlock(r, mods, hf), tensors, {
    shards, splitModules: split, quantizationKeys: r.fp8 ? ['quantization_config'] : undefined,
  });
}

function splitCandidate(r: Recipe, mods: TinyModule[], hf: boolean): string[] {
  const m = mods.find((x) => x.path === 'layers.0.mlp.down_proj' && r.quant(x.path)) ??
    mods.find((x) => (x.role === 'linear' || x.role === 'embedding') && r.quant(x.path));
  return m ? [rawName(m.path, '', hf)] : [];
}

/** Normalised module path of a raw tensor name of a tiny checkpoint (helper for tests). */
export function tinyModulePath(raw: string): string {
  return normaliseName(raw).replace(/\.(weight|scales|biases)$/, '');
}
