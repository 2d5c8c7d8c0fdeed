// The bench's peer: ONNX Runtime Web's MatMulNBits (4-bit, block 32) on the shapes of our 4-bit matvec rows, in
// the same page. The model is one com.microsoft MatMulNBits node (or several sharing the weights, where one run
// would be too short to time), written here as ONNX protobuf bytes by a small encoder (no onnx or protobufjs
// dependency); weights and scales are initializers, A is fed every run, and the output is checked against a
// float64 dot product on sampled rows, as our rows are.
//
// MatMulNBits (onnxruntime docs/ContribOperators.md, com.microsoft.MatMulNBits, since version 1):
//   Y[M, N] = A[M, K] · dequant(B)ᵀ, dequant(B)[n, k] = (q[n, k] − zp[n, k / block_size]) · scales[n, k / block_size]
//   B           uint8 [N, k_blocks, block_size · bits / 8], codes packed along K low nibble first
//   scales      T1 (f32 here) [N · k_blocks], flat (the doc also allows [N, k_blocks]; ORT-web 1.31.1 took the flat form)
//   zero_points uint8 [N · ceil(k_blocks · bits / 8)], packed like B; absent means 2^(bits−1) (8 at 4 bits)
// Attributes K, N, bits, block_size (ints); accuracy_level is left unset (0: A stays f32, no int8 quantisation).
//
// This module imports onnxruntime-web for types only: the page passes the loaded module in (a dynamic import in
// demo/bench.ts), so neither the library bundle nor the Node CLI ever pulls it in.

import type * as Ort from 'onnxruntime-web';
import { randomBytes, randomFloats, relativeMaxError, sampleIndices } from './data.ts';
import { median } from './timing.ts';
import type { KernelRow, PeerReport } from './report.ts';
import { linearShapes, TINY_SHAPE, type LinearShape, type Preset } from './shapes.ts';

// ---------------------------------------------------------------------------------------------------------------
// protobuf, the few wire forms ONNX needs: varint (wire type 0) and length-delimited (wire type 2). A message is
// kept as a list of byte chunks so the 40 MB weight blob is copied once, when the model is joined.

type Chunks = Uint8Array[];

function varint(v: number): Uint8Array {
  if (!(Number.isSafeInteger(v) && v >= 0)) throw new Error(`protobuf varint: ${v} is not a non-negative safe integer`);
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

const size = (c: Chunks): number => c.reduce((n, b) => n + b.length, 0);
const tag = (field: number, wireType: 0 | 2): Uint8Array => varint(field * 8 + wireType);
const intField = (field: number, v: number): Chunks => [tag(field, 0), varint(v)];
const bytesField = (field: number, bytes: Uint8Array): Chunks => [tag(field, 2), varint(bytes.length), bytes];
const stringField = (field: number, s: string): Chunks => bytesField(field, new TextEncoder().encode(s));
const messageField = (field: number, body: Chunks): Chunks => [tag(field, 2), varint(size(body)), ...body];

function join(c: Chunks): Uint8Array {
  const out = new Uint8Array(size(c));
  let at = 0;
  for (const b of c) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

// onnx.proto TensorProto.DataType
const FLOAT = 1;
const UINT8 = 2;
// onnx.proto AttributeProto.AttributeType
const ATTR_INT = 2;

/** AttributeProto: name = 1, i = 3, type = 20. */
function intAttribute(name: string, v: number): Chunks {
  return [...stringField(1, name), ...intField(20, ATTR_INT), ...intField(3, v)];
}

/** TensorProto: dims = 1 (repeated int64), data_type = 2, name = 8, raw_data = 9 (little-endian). */
function tensor(name: string, dataType: number, dims: number[], raw: Uint8Array): Chunks {
  return [...dims.flatMap((d) => intField(1, d)), ...intField(2, dataType), ...stringField(8, name), ...bytesField(9, raw)];
}

/**
 * ValueInfoProto: name = 1, type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor: elem_type = 1, shape = 2;
 * TensorShapeProto.dim = 1; Dimension.dim_value = 1.
 */
function valueInfo(name: string, elemType: number, dims: number[]): Chunks {
  const shape = dims.flatMap((d) => messageField(1, intField(1, d)));
  return [...stringField(1, name), ...messageField(2, messageField(1, [...intField(1, elemType), ...messageField(2, shape)]))];
}

// ---------------------------------------------------------------------------------------------------------------
// the model and its reference

export interface NBitsWeights {
  K: number;
  N: number;
  bits: 4;
  blockSize: number;
  /** [N, K / blockSize, blockSize / 2] codes, low nibble first. */
  B: Uint8Array;
  /** [N · K / blockSize] */
  scales: Float32Array;
  /** [N · ceil(kBlocks / 2)], packed like B; undefined: every zero point is 8. */
  zeroPoints?: Uint8Array;
}

export const kBlocks = (w: Pick<NBitsWeights, 'K' | 'blockSize'>): number => Math.ceil(w.K / w.blockSize);
const zpBytesPerRow = (w: Pick<NBitsWeights, 'K' | 'blockSize'>): number => Math.ceil(kBlocks(w) / 2);

/** Bytes one MatMulNBits call reads from its weights: codes, f32 scales, packed zero points. */
export function nbitsBytes(w: NBitsWeights): number {
  return w.B.length + w.scales.byteLength + (w.zeroPoints?.length ?? 0);
}

/**
 * Random weights: any code, any zero point (0..15), positive scales in [2^-8, 2^-7), so |w| < 0.12 and
 * |y| = O(sqrt(K) · 0.05) for |x| < 1, the same order as our rows' outputs.
 */
export function randomNBits(K: number, N: number, blockSize: number, zeroPoints: boolean, seed = 51): NBitsWeights {
  if (K % blockSize !== 0) throw new Error(`MatMulNBits weights: K ${K} is not a multiple of block ${blockSize}`);
  const w: NBitsWeights = { K, N, bits: 4, blockSize, B: randomBytes((N * K) / 2, seed), scales: new Float32Array(0) };
  w.scales = randomFloats(N * kBlocks(w), seed + 1).map((u) => (1.5 + 0.5 * u) / 256);
  if (zeroPoints) w.zeroPoints = randomBytes(N * zpBytesPerRow(w), seed + 2);
  return w;
}

/**
 * The ONNX model: initializers B, scales (and zero_points); `nodes` graph inputs A0.. [M, K] f32, one MatMulNBits
 * node each, all reading the same initializers, and for nodes > 1 the sum of their outputs into Y [M, N]. One
 * session.run then performs `nodes` matvecs over one weight copy: on a fast GPU the per-run costs (A upload, Y
 * readback, the submit) would otherwise outweigh a 57 MB matvec. The inputs are distinct graph values, so ORT's
 * common-subexpression elimination cannot merge the nodes; the Adds read 2 · nodes · N floats, under 1 % of the weights.
 */
export function encodeMatMulNBitsModel(w: NBitsWeights, opts: { M?: number; nodes?: number } = {}): Uint8Array {
  const M = opts.M ?? 1;
  const nodes = opts.nodes ?? 1;
  const weights = ['B', 'scales', ...(w.zeroPoints ? ['zero_points'] : [])];
  const aName = (i: number) => (nodes === 1 ? 'A' : `A${i}`);
  const yName = (i: number) => (nodes === 1 ? 'Y' : `Y${i}`);
  // NodeProto: input = 1, output = 2, name = 3, op_type = 4, attribute = 5, domain = 7.
  const matmul = (i: number): Chunks => [
    ...[aName(i), ...weights].flatMap((n) => stringField(1, n)),
    ...stringField(2, yName(i)),
    ...stringField(3, `matmul_nbits_${i}`),
    ...stringField(4, 'MatMulNBits'),
    ...messageField(5, intAttribute('K', w.K)),
    ...messageField(5, intAttribute('N', w.N)),
    ...messageField(5, intAttribute('bits', w.bits)),
    ...messageField(5, intAttribute('block_size', w.blockSize)),
    ...stringField(7, 'com.microsoft'),
  ];
  // Y = ((Y0 + Y1) + Y2) + ...: a chain of Adds, which every EP has (ORT-web 1.31.1's WebGPU EP left a variadic Sum
  // to the CPU EP here, with a warning that not every node ran on the preferred EP).
  const add = (i: number): Chunks => [
    ...stringField(1, i === 1 ? yName(0) : `S${i - 1}`),
    ...stringField(1, yName(i)),
    ...stringField(2, i === nodes - 1 ? 'Y' : `S${i}`),
    ...stringField(3, `add_${i}`),
    ...stringField(4, 'Add'),
  ];
  const f32 = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  // GraphProto: node = 1, name = 2, initializer = 5, input = 11, output = 12.
  const graph: Chunks = [
    ...Array.from({ length: nodes }, (_, i) => messageField(1, matmul(i))).flat(),
    ...Array.from({ length: nodes - 1 }, (_, i) => messageField(1, add(i + 1))).flat(),
    ...stringField(2, 'qwen_webgpu_bench_peer'),
    ...messageField(5, tensor('B', UINT8, [w.N, kBlocks(w), (w.blockSize * w.bits) / 8], w.B)),
    ...messageField(5, tensor('scales', FLOAT, [w.N * kBlocks(w)], f32(w.scales))),
    ...(w.zeroPoints ? messageField(5, tensor('zero_points', UINT8, [w.N * zpBytesPerRow(w)], w.zeroPoints)) : []),
    ...Array.from({ length: nodes }, (_, i) => messageField(11, valueInfo(aName(i), FLOAT, [M, w.K]))).flat(),
    ...messageField(12, valueInfo('Y', FLOAT, [M, w.N])),
  ];
  // OperatorSetIdProto: domain = 1, version = 2. The default domain is the empty string (field omitted).
  // ModelProto: ir_version = 1, producer_name = 2, graph = 7, opset_import = 8. IR 8 / opset 17: ORT 1.14 and later.
  return join([
    ...intField(1, 8),
    ...stringField(2, 'qwen-webgpu bench'),
    ...messageField(7, graph),
    ...messageField(8, intField(2, 17)),
    ...messageField(8, [...stringField(1, 'com.microsoft'), ...intField(2, 1)]),
  ]);
}

/** Y[m, r] for the listed rows r, accumulated in float64 from the dequantised weights (the oracle of the peer row). */
export function matMulNBitsRows(x: Float32Array, w: NBitsWeights, rows: number[], M = 1): Float64Array {
  const { K, blockSize } = w;
  const kb = kBlocks(w);
  const zpRow = zpBytesPerRow(w);
  const out = new Float64Array(M * rows.length);
  rows.forEach((r, j) => {
    const wr = new Float64Array(K);
    for (let k = 0; k < K; k++) {
      const q = (w.B[(r * K + k) >> 1] >> ((k & 1) * 4)) & 15;
      const b = Math.floor(k / blockSize);
      const zp = w.zeroPoints ? (w.zeroPoints[r * zpRow + (b >> 1)] >> ((b & 1) * 4)) & 15 : 8;
      wr[k] = (q - zp) * w.scales[r * kb + b];
    }
    for (let m = 0; m < M; m++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * wr[k];
      out[m * rows.length + j] = s;
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// running it

export type OrtModule = typeof Ort;

export interface PeerCase { shape: LinearShape; M?: number }

/**
 * The peer's shapes per suite: the toy shape for the tests' suite, the 27B MLP gate/up shape (the target), and in
 * the default and full suites 27B down_proj as well. On SwiftShader (two cores) one 27B shape took about 20 s for
 * both EPs together (a run: webgpu EP 1.5 s, wasm EP 0.55 s; session creation and the warm-up runs on top).
 */
export function peerCases(preset: Preset): PeerCase[] {
  if (preset === 'tiny') return [{ shape: TINY_SHAPE }];
  const s27 = linearShapes('27B');
  const gate = s27.find((s) => s.modules.includes('gate_proj'))!;
  const down = s27.find((s) => s.modules.includes('down_proj'))!;
  return preset === 'quick' ? [{ shape: gate }] : [{ shape: gate }, { shape: down }];
}

export interface OrtPeerOptions {
  cases: PeerCase[];
  /** Execution providers to try, in order (default webgpu, then wasm). */
  executionProviders?: string[];
  /** Timed session.run calls per shape and EP (the median is reported; at most 3 where a run is slow). */
  runs?: number;
  /** Untimed runs first: the first run compiles shaders / prepacks weights. */
  warmup?: number;
  /**
   * One session.run should last about this long: a shape faster than that is rebuilt with enough MatMulNBits
   * nodes per run (at most maxNodes) to reach it, and its time is the run's over the nodes. Default 20 ms.
   */
  targetMs?: number;
  /** Default 64. */
  maxNodes?: number;
  /** Include packed uint8 zero points (asymmetric, like MLX's affine format; default true). */
  zeroPoints?: boolean;
  /** Output rows compared with the reference (default 48, as our rows). */
  checkRows?: number;
  /** Called before each (EP, shape), so a page can repaint. */
  onProgress?: (label: string) => void | Promise<void>;
  /**
   * One (EP, shape) measurement that takes longer than this is given up and named in the note (default 10 min):
   * ORT waits forever when, say, a wasm thread's worker cannot start.
   */
  timeoutMs?: number;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no result after ${Math.round(ms / 1000)} s`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

interface EpResult { ep: string; rows: KernelRow[]; nodes: number[]; error?: string }

const PEER_KERNEL = 'MatMulNBits';

interface Session {
  /** One session.run; returns Y. */
  run(): Promise<Float32Array>;
  release(): Promise<void>;
}

async function createSession(ort: OrtModule, ep: string, w: NBitsWeights, x: Float32Array, M: number, nodes: number): Promise<Session> {
  const session = await ort.InferenceSession.create(encodeMatMulNBitsModel(w, { M, nodes }), {
    executionProviders: [ep], graphOptimizationLevel: 'all',
  });
  const a = new ort.Tensor('float32', x, [M, w.K]);
  const feeds: Record<string, Ort.Tensor> = {};
  for (let i = 0; i < nodes; i++) feeds[nodes === 1 ? 'A' : `A${i}`] = a;
  return {
    async run() {
      const out = await session.run(feeds);
      const y = out.Y.data as Float32Array;
      out.Y.dispose();
      return y;
    },
    release: () => session.release(),
  };
}

/** max relative error of Y against `nodes` × the float64 reference on the sampled rows. */
function checkY(y: Float32Array, want: Float64Array, rows: number[], N: number, M: number, nodes: number): number {
  const got = new Float32Array(M * rows.length);
  for (let m = 0; m < M; m++) rows.forEach((r, j) => { got[m * rows.length + j] = y[m * N + r]; });
  return relativeMaxError(got, want.map((v) => v * nodes));
}

/**
 * One (EP, shape): a one-node session checked against the reference and timed roughly; if a run is shorter than
 * targetMs, a session of more nodes, checked again; then `runs` timed session.run calls.
 */
async function measure(ort: OrtModule, ep: string, c: PeerCase, ceilingGBps: number, opts: OrtPeerOptions): Promise<{ row: KernelRow; nodes: number }> {
  const { K, N } = c.shape;
  const M = c.M ?? 1;
  const w = randomNBits(K, N, 32, opts.zeroPoints ?? true);
  const x = randomFloats(M * K, 15);
  const rows = sampleIndices(N, opts.checkRows ?? 48);
  const want = matMulNBitsRows(x, w, rows, M);
  const timed = async (s: Session, n: number): Promise<number[]> => {
    const ms: number[] = [];
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      await s.run();
      ms.push(performance.now() - t0);
    }
    return ms;
  };

  let nodes = 1;
  let s = await createSession(ort, ep, w, x, M, 1);
  let maxErr: number;
  let times: number[];
  let runs = opts.runs ?? 5;
  try {
    maxErr = checkY(await s.run(), want, rows, N, M, 1);
    const target = opts.targetMs ?? 20;
    let once = (await timed(s, 1))[0];
    // A run far longer than the target (SwiftShader's 27B shapes: seconds) gets one warm-up and at most 3 timed runs.
    const slow = once > 10 * target;
    if (!slow) once = Math.min(once, ...await timed(s, Math.max(0, (opts.warmup ?? 2) - 1)));
    runs = slow ? Math.min(3, runs) : runs;
    if (once < target) {
      nodes = Math.min(opts.maxNodes ?? 64, Math.ceil(target / Math.max(once, 1e-3)));
      if (nodes > 1) {
        await s.release();
        s = await createSession(ort, ep, w, x, M, nodes);
        maxErr = Math.max(maxErr, checkY(await s.run(), want, rows, N, M, nodes));
        await timed(s, Math.max(1, opts.warmup ?? 2));
      }
    }
    times = await timed(s, runs);
  } finally {
    await s.release();
  }
  const medianMs = median(times) / nodes;
  const bytes = nbitsBytes(w);
  const gbps = bytes / (medianMs * 1e6);
  return {
    nodes,
    row: {
      kernel: PEER_KERNEL,
      shape: `M${M} K${K} N${N}`,
      bits: 4,
      groupSize: 32,
      medianMs,
      gbps,
      pctCeiling: (100 * gbps) / ceilingGBps,
      maxErr,
      dims: `${c.shape.model} ${c.shape.modules}`,
      bytes,
      copies: 1,
      checked: M * rows.length,
      timing: 'wall',
    },
  };
}

const errorText = (e: unknown): string => (e instanceof Error ? e.message : String(e)).split('\n')[0].slice(0, 200);

/**
 * Runs every case on every EP that loads and reports the EP that is faster on the first case (the target shape)
 * as the peer; the other EPs' times and any EP that failed are named in the note.
 */
export async function runOrtPeer(ort: OrtModule, ceilingGBps: number, opts: OrtPeerOptions): Promise<PeerReport> {
  const t0 = performance.now();
  const eps = opts.executionProviders ?? ['webgpu', 'wasm'];
  const results: EpResult[] = [];
  for (const ep of eps) {
    const r: EpResult = { ep, rows: [], nodes: [] };
    results.push(r);
    try {
      for (const c of opts.cases) {
        await opts.onProgress?.(`peer: ORT ${ep} MatMulNBits K${c.shape.K} N${c.shape.N}`);
        const m = await withTimeout(measure(ort, ep, c, ceilingGBps, opts), opts.timeoutMs ?? 600_000, `${ep} EP K${c.shape.K} N${c.shape.N}`);
        r.rows.push(m.row);
        r.nodes.push(m.nodes);
      }
    } catch (e) {
      r.error = errorText(e);
    }
  }
  const version = ort.env.versions?.web ?? '';
  const ran = results.filter((r) => r.rows.length > 0);
  const failed = results.filter((r) => r.error).map((r) => `${r.ep} EP failed: ${r.error}`);
  const how = `4-bit block 32${opts.zeroPoints ?? true ? ' with uint8 zero points' : ', no zero points'}, f32 scales, ` +
    'weights as initializers, one copy (not rotated); ms = median wall time of session.run (A uploaded, Y read back) ' +
    `over the MatMulNBits nodes per run; wasm threads ${ort.env.wasm.numThreads ?? '?'}` +
    // ORT falls back to one thread unless the page is cross-origin isolated (COOP/COEP headers), which ours is not.
    `${typeof self !== 'undefined' && !self.crossOriginIsolated ? ' (not cross-origin isolated)' : ''}; ` +
    `${((performance.now() - t0) / 1000).toFixed(0)} s for the peer in all`;
  if (ran.length === 0) return { name: `ONNX Runtime Web ${version} MatMulNBits`, rows: [], note: [how, ...failed].join('; ') };
  const best = ran.reduce((a, b) => (b.rows[0].medianMs < a.rows[0].medianMs ? b : a));
  const describe = (r: EpResult, times: boolean) => `${r.ep} EP: ` + r.rows.map((x, i) =>
    `${x.shape}${times ? ` ${x.medianMs.toPrecision(3)} ms, max err ${x.maxErr.toExponential(1)},` : ''} ${r.nodes[i]} node${r.nodes[i] > 1 ? 's' : ''}/run`).join('; ');
  return {
    name: `ONNX Runtime Web ${version} MatMulNBits (${best.ep} EP)`,
    rows: best.rows,
    note: [how, describe(best, false), ...ran.filter((r) => r !== best).map((r) => describe(r, true)), ...failed].join('; '),
  };
}
