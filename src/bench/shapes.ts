// The real shapes the kernels run at in the published Qwen3.5 sizes (spec §1.3: 0.8B, 9B, 27B; V = 248320 for all),
// and the three suites (quick, default, full) as lists of what to measure. Derived per spec §1.2:
// q_proj d → 2·H·D (query and gate), k/v_proj d → Hkv·D, o_proj H·D → d; in_proj_qkv d → 2·Hk·Dk + Hv·Dv,
// in_proj_z d → Hv·Dv, out_proj Hv·Dv → d; gate/up d → I, down I → d; lm_head d → V.

export interface ModelDims {
  name: string;
  hidden: number;
  layers: number;
  intermediate: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  linearKeyHeads: number;
  linearValueHeads: number;
  linearHeadDim: number;
  vocab: number;
}

export const VOCAB = 248320;

export const MODELS: Record<'0.8B' | '9B' | '27B', ModelDims> = {
  '0.8B': { name: '0.8B', hidden: 1024, layers: 24, intermediate: 3584, heads: 8, kvHeads: 2, headDim: 256, linearKeyHeads: 16, linearValueHeads: 16, linearHeadDim: 128, vocab: VOCAB },
  '9B': { name: '9B', hidden: 4096, layers: 32, intermediate: 12288, heads: 16, kvHeads: 4, headDim: 256, linearKeyHeads: 16, linearValueHeads: 32, linearHeadDim: 128, vocab: VOCAB },
  '27B': { name: '27B', hidden: 5120, layers: 64, intermediate: 17408, heads: 24, kvHeads: 4, headDim: 256, linearKeyHeads: 16, linearValueHeads: 48, linearHeadDim: 128, vocab: VOCAB },
};

export type ModelName = keyof typeof MODELS;
/** The toy shapes of the tests' suite belong to no model. */
export type ShapeOwner = ModelName | 'toy';

/** A linear layer shape: y[N] = W[N, K] · x[K], and the modules of a model that have it. */
export interface LinearShape { model: ShapeOwner; modules: string; K: number; N: number }

/** The distinct matvec shapes of one model (the tiny in_proj_a / in_proj_b, d → Hv, are left out). */
export function linearShapes(model: ModelName): LinearShape[] {
  const m = MODELS[model];
  const d = m.hidden;
  const attn = m.heads * m.headDim;
  const kv = m.kvHeads * m.headDim;
  const value = m.linearValueHeads * m.linearHeadDim;
  const conv = 2 * m.linearKeyHeads * m.linearHeadDim + value;
  const list: [string, number, number][] = [
    // The checkpoint's module names (mlp.*, linear_attn.*, self_attn.*), without the block prefix.
    ['gate_proj/up_proj', d, m.intermediate],
    ['down_proj', m.intermediate, d],
    ['in_proj_qkv', d, conv],
    ['in_proj_z', d, value],
    ['out_proj', value, d],
    ['q_proj', d, 2 * attn],
    ['k_proj/v_proj', d, kv],
    ['o_proj', attn, d],
    ['lm_head', d, m.vocab],
  ];
  // Shapes that coincide (9B: in_proj_z and o_proj are both 4096 → 4096) are measured once.
  const seen = new Map<string, LinearShape>();
  for (const [modules, K, N] of list) {
    const key = `${K}x${N}`;
    const had = seen.get(key);
    if (had) had.modules += `, ${modules}`;
    else seen.set(key, { model, modules, K, N });
  }
  return [...seen.values()];
}

export const AFFINE_BITS = [2, 3, 4, 5, 6, 8] as const;
export type Bits = (typeof AFFINE_BITS)[number];

/** What one kernel row measures. */
export type KernelCase =
  | {
    kind: 'matvec'; shape: LinearShape; format: { bits: Bits; groupSize: 32 | 64 } | 'bf16'; M: number;
    /** For M > 1: which of the two prefill kernels the row times (the suite has a row of each; see withBothPrefillKernels). */
    prefill?: 'gemm' | 'matvec-mt';
  }
  | { kind: 'gatedDelta'; model: ShapeOwner; Hk: number; Hv: number; Dk: number; Dv: number }
  | { kind: 'attention'; model: ShapeOwner; H: number; Hkv: number; D: number; context: number }
  | { kind: 'rmsNorm'; model: ShapeOwner; rows: number; n: number };

export type Preset = 'tiny' | 'quick' | 'default' | 'full';
export const PRESETS: readonly Preset[] = ['tiny', 'quick', 'default', 'full'];

function shapeOf(model: ModelName, modules: string): LinearShape {
  const s = linearShapes(model).find((x) => x.modules.includes(modules));
  if (!s) throw new Error(`no ${modules} in ${model}`);
  return s;
}

const q4 = { bits: 4 as const, groupSize: 64 as const };

function gdn(model: ModelName): KernelCase {
  const m = MODELS[model];
  return { kind: 'gatedDelta', model, Hk: m.linearKeyHeads, Hv: m.linearValueHeads, Dk: m.linearHeadDim, Dv: m.linearHeadDim };
}

function attn(model: ModelName, context: number): KernelCase {
  const m = MODELS[model];
  return { kind: 'attention', model, H: m.heads, Hkv: m.kvHeads, D: m.headDim, context };
}

function norm(model: ModelName, rows: number): KernelCase {
  return { kind: 'rmsNorm', model, rows, n: MODELS[model].hidden };
}

/** Every affine width at group 64, 4-bit also at 32, and bf16: the formats of the published recipes. */
function everyFormat(shape: LinearShape, M = 1): KernelCase[] {
  return [
    ...AFFINE_BITS.map((bits): KernelCase => ({ kind: 'matvec', shape, format: { bits, groupSize: 64 }, M })),
    { kind: 'matvec', shape, format: { bits: 4, groupSize: 32 }, M },
    { kind: 'matvec', shape, format: 'bf16', M },
  ];
}

/** Tiny shapes that exercise every row kind in a second (the unit and e2e tests). */
export const TINY_SHAPE: LinearShape = { model: 'toy', modules: 'linear', K: 256, N: 96 };

/** GEMM rows above this many flops are left out of the default suite on a CPU adapter (SwiftShader: ~0.3 GFLOP/s). */
const CPU_GEMM_MAX_FLOPS = 2e9;

/**
 * The rows of a suite. quick: nine rows (about 40 s on SwiftShader, two cores; the whole run with the model part
 * about 2.5 min); default: every bit width at the 27B MLP shape, 4-bit at every shape of the three models, GEMM at
 * M = 64 and 128, the other families (about 4 min in all); full: every shape × every format, more contexts (slow).
 * `cpuAdapter` drops the default suite's large GEMMs, which take SwiftShader a minute each.
 */
export function kernelCases(preset: Preset, opts: { cpuAdapter?: boolean } = {}): KernelCase[] {
  return withBothPrefillKernels(suiteCases(preset, opts));
}

/**
 * Each M > 1 linear row becomes two: the 64-token GEMM tile and the multi-token matvec, whichever the tuning would
 * pick, so the table shows the crossover the autotune found (src/gpu/autotune.ts).
 */
function withBothPrefillKernels(cases: KernelCase[]): KernelCase[] {
  return cases.flatMap((c): KernelCase[] => (c.kind === 'matvec' && c.M > 1
    ? [{ ...c, prefill: 'matvec-mt' }, { ...c, prefill: 'gemm' }] : [c]));
}

function suiteCases(preset: Preset, opts: { cpuAdapter?: boolean }): KernelCase[] {
  const gate27 = shapeOf('27B', 'gate_proj');
  const gate08 = shapeOf('0.8B', 'gate_proj');
  if (preset === 'tiny') {
    return [
      { kind: 'matvec', shape: TINY_SHAPE, format: q4, M: 1 },
      { kind: 'matvec', shape: TINY_SHAPE, format: { bits: 3, groupSize: 64 }, M: 1 },
      { kind: 'matvec', shape: TINY_SHAPE, format: 'bf16', M: 1 },
      { kind: 'matvec', shape: TINY_SHAPE, format: q4, M: 64 },
      { kind: 'gatedDelta', model: 'toy', Hk: 2, Hv: 4, Dk: 32, Dv: 32 },
      { kind: 'attention', model: 'toy', H: 4, Hkv: 2, D: 64, context: 100 },
      { kind: 'rmsNorm', model: 'toy', rows: 1, n: 256 },
    ];
  }
  if (preset === 'quick') {
    return [
      { kind: 'matvec', shape: gate27, format: q4, M: 1 },
      { kind: 'matvec', shape: gate27, format: { bits: 3, groupSize: 64 }, M: 1 },
      { kind: 'matvec', shape: gate08, format: q4, M: 1 },
      { kind: 'matvec', shape: gate08, format: 'bf16', M: 1 },
      { kind: 'matvec', shape: shapeOf('0.8B', 'lm_head'), format: q4, M: 1 },
      { kind: 'matvec', shape: gate08, format: q4, M: 64 },
      gdn('27B'),
      attn('27B', 4096),
      norm('27B', 1),
    ];
  }
  const models: ModelName[] = ['0.8B', '9B', '27B'];
  const cases: KernelCase[] = [];
  if (preset === 'default') {
    cases.push(...everyFormat(gate27));
    for (const model of models) {
      for (const shape of linearShapes(model)) {
        if (!(model === '27B' && shape.modules === gate27.modules)) cases.push({ kind: 'matvec', shape, format: q4, M: 1 });
      }
    }
    for (const M of [64, 128]) cases.push({ kind: 'matvec', shape: gate08, format: q4, M });
    if (!opts.cpuAdapter || 2 * 64 * gate27.K * gate27.N <= CPU_GEMM_MAX_FLOPS) {
      cases.push({ kind: 'matvec', shape: gate27, format: q4, M: 64 });
    }
    for (const model of models) cases.push(gdn(model));
    for (const context of [1024, 4096, 16384]) cases.push(attn('27B', context));
    cases.push(attn('0.8B', 4096), norm('27B', 1), norm('27B', 128));
    return cases;
  }
  for (const model of models) {
    for (const shape of linearShapes(model)) {
      const formats = everyFormat(shape);
      // bf16 lm_heads (2 to 2.5 GB) exceed what one JS array and most adapters take: quantised only.
      cases.push(...(shape.modules === 'lm_head' ? formats.filter((c) => c.kind === 'matvec' && c.format !== 'bf16') : formats));
    }
    for (const shape of [shapeOf(model, 'gate_proj'), shapeOf(model, 'down_proj')]) {
      for (const M of [64, 128]) cases.push({ kind: 'matvec', shape, format: q4, M });
    }
    cases.push(gdn(model));
    for (const context of [1024, 4096, 16384, 65536]) cases.push(attn(model, context));
    cases.push(norm(model, 1), norm(model, 128));
  }
  return cases;
}
