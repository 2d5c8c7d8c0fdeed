// Checkpoint → GPU buffers. Linears and the embedding stay packed exactly as on disk; the small float vectors
// (norm gains, conv taps, A_log, dt_bias) become f32, with the HF +1 norm shift applied here, once.
// Every float tensor and every scales/biases tensor is checked for NaN / ±inf on its way through: one such value
// turns every logit into NaN, which nothing downstream could trace back to the tensor.
// Linears stream (src/gpu/upload.ts): each is read in pieces of whole rows (uploadOptions.pieceBytes, 16 MiB),
// every piece checked and staged for the GPU while the next one is read, so no tensor is ever whole in memory.
import type { GpuContext } from '../gpu/context.ts';
import { uploadBytes } from '../gpu/context.ts';
import {
  canFuse, destroyGpuLinear, uploadFusedLinear, uploadGpuLinear, type Fusion, type GpuLinear, type LinearSpec, type RowReader,
} from '../gpu/linear.ts';
import { createStagingRing } from '../gpu/upload.ts';
import { expandScales, moduleBytes, type Checkpoint, type ModulePlan, type QuantPlan, type TensorEntry } from '../format/checkpoint.ts';
import { DTYPE_BYTES, decodeFloats, type FloatDType } from '../format/dtype.ts';
import { decodeE4M3, decodeE8M0 } from '../format/fp-quant.ts';
import { FormatError, type ByteSource } from '../format/safetensors.ts';
import { QUANT_MODES, storedTensors, type FloatStorage } from '../format/weight-format.ts';
import type { FullAttnWeights, LinearAttnWeights, Mlp, ModelWeights } from '../model/qwen35.ts';

const SCALE_DTYPE: Record<FloatDType, FloatStorage> = { BF16: 'bf16', F16: 'f16', F32: 'f32' };

const FLT_MAX = 3.4028234663852886e38;

/**
 * Index of the first NaN or ±inf (exponent bits all ones) in little-endian float data, or -1. Cheap next to the
 * upload even for a bf16 embedding: whole 32-bit words where the data is 4-byte aligned, bytes otherwise.
 */
export function firstNonFinite(bytes: Uint8Array, dtype: FloatDType): number {
  const size = dtype === 'F32' ? 4 : 2;
  let from = 0; // first element not yet scanned
  if (bytes.byteOffset % 4 === 0) {
    const w = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
    if (size === 4) {
      for (let i = 0; i < w.length; i++) if ((w[i] & 0x7f800000) === 0x7f800000) return i;
    } else {
      // Two values per word, the lower index in the low half. Exponent masks: bf16 0x7f80, f16 0x7c00.
      const lo = dtype === 'BF16' ? 0x7f80 : 0x7c00;
      const hi = lo << 16;
      for (let i = 0; i < w.length; i++) {
        const v = w[i];
        if ((v & lo) === lo) return 2 * i;
        if ((v & hi) === hi) return 2 * i + 1;
      }
    }
    from = (w.length * 4) / size;
  }
  const n = bytes.byteLength;
  if (dtype === 'BF16') {
    for (let i = from * 2 + 1; i < n; i += 2) if ((bytes[i] & 0x7f) === 0x7f && (bytes[i - 1] & 0x80) !== 0) return (i - 1) >> 1;
  } else if (dtype === 'F16') {
    for (let i = from * 2 + 1; i < n; i += 2) if ((bytes[i] & 0x7c) === 0x7c) return (i - 1) >> 1;
  } else {
    for (let i = from * 4 + 3; i < n; i += 4) if ((bytes[i] & 0x7f) === 0x7f && (bytes[i - 1] & 0x80) !== 0) return (i - 3) >> 2;
  }
  return -1;
}

function elementAt(flat: number, shape: readonly number[]): string {
  if (shape.length < 2) return `index ${flat}`;
  const at: number[] = [];
  for (let d = shape.length - 1, r = flat; d >= 0; d--) {
    at.unshift(r % shape[d]);
    r = Math.floor(r / shape[d]);
  }
  return `index ${flat} (element [${at.join(', ')}])`;
}

const describeTensor = (t: TensorEntry) => `${t.file}: tensor "${t.rawName}" (${t.dtype} [${t.shape.join(', ')}])`;

/** NaN / ±inf in float data holding elements [first, first + n) of tensor t (a piece of it, or all of it). */
function checkFinite(t: TensorEntry, bytes: Uint8Array, first = 0): void {
  if (t.dtype !== 'BF16' && t.dtype !== 'F16' && t.dtype !== 'F32') return;
  const i = firstNonFinite(bytes, t.dtype);
  if (i < 0) return;
  const size = t.dtype === 'F32' ? 4 : 2;
  const value = decodeFloats(bytes.subarray(i * size, (i + 1) * size), t.dtype)[0];
  throw new Error(`${describeTensor(t)} holds ${value} at ${elementAt(first + i, t.shape)}; the weights must be finite (one NaN or infinity makes every logit NaN)`);
}

/** The largest |element| a code of each element type decodes to (E2M1 6, E4M3 448; affine codes 2^bits − 1). */
const ELEMENT_MAX = [0, 6, 448];

/**
 * Scales (and biases) finite, and every dequantized weight finite in f32, where the kernels compute: a scale that
 * overflows there gives infinite weights and NaN logits though each stored value is finite. One-byte scales have
 * NaN codes of their own (E8M0 255, E4M3 0x7f / 0xff). `first` is the scales tensor's element at scaleBytes[0]:
 * pieces of scales and biases come in pairs of the same rows, so each bias meets its scale.
 */
function checkScales(p: QuantPlan, scaleBytes: Uint8Array, biasBytes: Uint8Array | undefined, first: number): void {
  const info = QUANT_MODES[p.mode];
  let s: ArrayLike<number>;
  if (p.scaleDtype === 'e8m0' || p.scaleDtype === 'e4m3') {
    s = Float64Array.from(scaleBytes, p.scaleDtype === 'e8m0' ? decodeE8M0 : decodeE4M3);
    const bad = p.scaleDtype === 'e8m0' ? scaleBytes.indexOf(255) : scaleBytes.findIndex((c) => (c & 0x7f) === 0x7f);
    if (bad >= 0) {
      throw new Error(`${describeTensor(p.scales)} holds the NaN code 0x${scaleBytes[bad].toString(16)} (${p.scaleDtype}) at ${elementAt(first + bad, p.scales.shape)}; the scales must be finite`);
    }
  } else {
    checkFinite(p.scales, scaleBytes, first);
    s = decodeFloats(scaleBytes, p.scales.dtype as FloatDType);
  }
  let b: Float32Array | undefined;
  if (biasBytes && p.biases) {
    checkFinite(p.biases, biasBytes, first);
    b = decodeFloats(biasBytes, p.biases.dtype as FloatDType);
  }
  const qmax = info.element === 0 ? 2 ** p.bits - 1 : ELEMENT_MAX[info.element];
  for (let g = 0; g < s.length; g++) {
    const bound = Math.abs(s[g]) * qmax + Math.abs(b ? b[g] : 0);
    if (bound > FLT_MAX) {
      throw new Error(
        `${describeTensor(p.scales)}: scale ${s[g]} at ${elementAt(first + g, p.scales.shape)}${b ? ` with bias ${b[g]}` : ''} overflows f32 ` +
        `when dequantized: |scale|·${qmax}${b ? ' + |bias|' : ''} = ${bound.toExponential(4)} > ${FLT_MAX.toExponential(4)} (${p.mode === 'affine' ? '' : `${p.mode} `}${p.bits}-bit)`,
      );
    }
  }
}

/** E4M3 elements have NaN codes (0x7f / 0xff); `first` is the byte of the weight tensor at weight[0]. */
function checkCodes(p: QuantPlan, weight: Uint8Array, first: number): void {
  if (QUANT_MODES[p.mode].element !== 2) return;
  const bad = weight.findIndex((c) => (c & 0x7f) === 0x7f);
  if (bad >= 0) {
    throw new Error(`${describeTensor(p.weight)} holds the E4M3 NaN code 0x${weight[bad].toString(16)} at byte ${first + bad}; the weights must be finite`);
  }
}

/** Bytes [offset, offset + length) of a tensor; a failed or short read names the tensor. */
async function readRange(src: ByteSource, t: TensorEntry, offset: number, length: number): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await src.read(t.file, t.begin + offset, length);
  } catch (e) {
    const what = length === t.end - t.begin ? 'reading it' : `reading its bytes ${offset}-${offset + length - 1}`;
    throw new Error(`${describeTensor(t)}: ${what} failed: ${(e as Error)?.message ?? e}`, { cause: e });
  }
  if (bytes.byteLength !== length) {
    throw new FormatError(`${describeTensor(t)}: read ${bytes.byteLength} bytes at ${offset}, expected ${length}`);
  }
  return bytes;
}

/**
 * Rows of a linear as the uploader asks for them: the weight alone, or scales with biases (see tensorGroups in
 * src/gpu/linear.ts), each piece checked on its way through. FP8 scales stored per tensor or per block are a few
 * bytes to a few KB: read and checked whole at their first piece, brought to the kernels' per-row layout
 * (expandScales) and cut from there.
 */
function rowReader(src: ByteSource, p: ModulePlan): RowReader {
  if (p.kind === 'float') {
    const perRow = p.shape[1] * DTYPE_BYTES[p.dtype];
    return async (_, from, to) => {
      const w = await readRange(src, p.weight, from * perRow, (to - from) * perRow);
      checkFinite(p.weight, w, from * p.shape[1]);
      return [w];
    };
  }
  const [wRow, sRow] = storedTensors(p.format, p.cols).map((t) => t.rowBytes);
  let expanded: Promise<Uint8Array> | undefined;
  const expandedScales = () => (expanded ??= readRange(src, p.scales, 0, p.scales.end - p.scales.begin).then((raw) => {
    checkScales(p, raw, undefined, 0);
    return expandScales(p, raw);
  }));
  const read = (i: number, from: number, to: number): Promise<Uint8Array> => {
    if (i === 0) return readRange(src, p.weight, from * wRow, (to - from) * wRow);
    if (i === 1 && p.scaleLayout) return expandedScales().then((all) => all.subarray(from * sRow, to * sRow));
    const t = i === 1 ? p.scales : p.biases!;
    return readRange(src, t, from * sRow, (to - from) * sRow);
  };
  return async (tensors, from, to) => {
    // The overflow check needs each bias with its scale.
    if (p.biases && tensors.includes(1) !== tensors.includes(2)) throw new Error(`${p.path}: scales and biases must be read together`);
    const got = await Promise.all(tensors.map((i) => read(i, from, to)));
    const of = (i: number) => got[tensors.indexOf(i)] as Uint8Array | undefined;
    const w = of(0);
    if (w) checkCodes(p, w, from * wRow);
    const s = of(1);
    if (s && !p.scaleLayout) checkScales(p, s, of(2), from * (p.cols / p.groupSize));
    return got;
  };
}

/** Bytes the weights occupy on the GPU (as stored; the f32 conversion of vectors is negligible). */
export function weightBytes(ckpt: Checkpoint): number {
  let total = 0;
  for (const p of ckpt.modules.values()) total += moduleBytes(p);
  return total;
}

export interface LoadWeightsOptions {
  /** Called as the weights reach the GPU, a piece at a time: bytes so far, weightBytes(ckpt), the module. */
  onProgress?: (done: number, total: number, tensor: string) => void;
  /**
   * Concatenate linears that share their input and format (in_proj_qkv/z/b/a, q/k/v, gate/up) into one weight
   * each, run as one dispatch (default true). False keeps every linear separate: the unfused reference path.
   */
  fuse?: boolean;
}

export async function loadModelWeights(ctx: GpuContext, ckpt: Checkpoint, opts: LoadWeightsOptions = {}): Promise<ModelWeights> {
  const { onProgress, fuse = true } = opts;
  const total = weightBytes(ckpt);
  let done = 0;
  const created: (GpuLinear | GPUBuffer)[] = [];
  // One ring for the whole load: small tensors share staging buffers, and its copies are submitted at the end.
  const ring = createStagingRing(ctx);
  const plan = (path: string): ModulePlan => {
    const p = ckpt.modules.get(path);
    if (!p) throw new Error(`checkpoint has no module "${path}"`);
    return p;
  };
  const advance = (path: string, bytes: number) => {
    done += bytes;
    onProgress?.(done, total, path);
  };

  /** The shape and format of a linear, from the checkpoint's plan alone. */
  function linearSpec(path: string): LinearSpec {
    const p = plan(path);
    if (p.kind === 'quant') return { name: path, rows: p.rows, cols: p.cols, format: p.format };
    if (p.shape.length !== 2) throw new Error(`${path}: expected a 2-D weight, found shape [${p.shape.join(', ')}]`);
    return { name: path, rows: p.shape[0], cols: p.shape[1], format: { kind: 'float', dtype: SCALE_DTYPE[p.dtype] } };
  }

  async function matrix(path: string): Promise<GpuLinear> {
    const spec = linearSpec(path);
    const lin = await uploadGpuLinear(ctx, ring, spec, rowReader(ckpt.source, plan(path)), {
      onPiece: (_, bytes) => advance(path, bytes),
    });
    created.push(lin);
    return lin;
  }

  /**
   * Linears that share their input: one fused GpuLinear when their formats agree (src/gpu/linear.ts), else each
   * on its own. Per-layer quantization overrides can give members different bits; those stay separate.
   */
  async function matrices(paths: string[], kind: Fusion['kind']): Promise<GpuLinear | GpuLinear[]> {
    const specs = paths.map(linearSpec);
    if (!fuse || !canFuse(ctx, specs, kind)) {
      const each: GpuLinear[] = [];
      for (const path of paths) each.push(await matrix(path));
      return each;
    }
    const members = paths.map((path, i) => ({ spec: specs[i], read: rowReader(ckpt.source, plan(path)) }));
    const name = `${paths[0]}+${paths.slice(1).map((p) => p.slice(p.lastIndexOf('.') + 1)).join('+')}`;
    const lin = await uploadFusedLinear(ctx, ring, name, kind, members, {
      onPiece: (member, bytes) => advance(paths[member], bytes),
    });
    created.push(lin);
    return lin;
  }

  /** A float vector as f32; `shift` adds the HF zero-centred +1 (spec §2.2: never for linear_attn.norm). */
  async function vector(path: string): Promise<GPUBuffer> {
    const p = plan(path);
    if (p.kind !== 'float') throw new Error(`${path}: expected a float tensor, found ${p.mode} ${p.bits}-bit`);
    const bytes = await readRange(ckpt.source, p.weight, 0, p.weight.end - p.weight.begin);
    checkFinite(p.weight, bytes);
    const v = decodeFloats(bytes, p.dtype);
    if (p.role === 'norm' && ckpt.normShift) for (let i = 0; i < v.length; i++) v[i] += 1;
    const buf = uploadBytes(ctx, v, path);
    created.push(buf);
    advance(path, moduleBytes(p));
    return buf;
  }

  const mlp = async (i: number): Promise<Mlp> => ({
    gateUp: await matrices([`layers.${i}.mlp.gate_proj`, `layers.${i}.mlp.up_proj`], 'swiglu'),
    down: await matrix(`layers.${i}.mlp.down_proj`),
  });

  try {
    const embed = await matrix('embed_tokens');
    const layers: (LinearAttnWeights | FullAttnWeights)[] = [];
    for (const [i, type] of ckpt.config.layerTypes.entries()) {
      const pre = `layers.${i}`;
      if (type === 'linear_attention') {
        const la = `${pre}.linear_attn`;
        layers.push({
          kind: 'linear',
          inputNorm: await vector(`${pre}.input_layernorm`),
          inProj: await matrices([`${la}.in_proj_qkv`, `${la}.in_proj_z`, `${la}.in_proj_b`, `${la}.in_proj_a`], 'split'),
          // [C, Kc, 1] (MLX) and [C, 1, Kc] (HF) share the memory order c·Kc + j.
          conv: await vector(`${la}.conv1d`),
          aLog: await vector(`${la}.A_log`),
          dtBias: await vector(`${la}.dt_bias`),
          norm: await vector(`${la}.norm`),
          outProj: await matrix(`${la}.out_proj`),
          postNorm: await vector(`${pre}.post_attention_layernorm`),
          mlp: await mlp(i),
        });
      } else {
        const sa = `${pre}.self_attn`;
        layers.push({
          kind: 'full',
          inputNorm: await vector(`${pre}.input_layernorm`),
          qkv: await matrices([`${sa}.q_proj`, `${sa}.k_proj`, `${sa}.v_proj`], 'split'),
          o: await matrix(`${sa}.o_proj`),
          qNorm: await vector(`${sa}.q_norm`),
          kNorm: await vector(`${sa}.k_norm`),
          postNorm: await vector(`${pre}.post_attention_layernorm`),
          mlp: await mlp(i),
        });
      }
    }
    const finalNorm = await vector('norm');
    const lmHead = ckpt.tied ? embed : await matrix('lm_head');
    ring.submit();
    return { embed, lmHead, finalNorm, layers, foldNorms: fuse };
  } catch (e) {
    for (const c of created) ('parts' in c ? destroyGpuLinear(c) : c.destroy());
    throw e;
  } finally {
    // Submitted copies finish without it (the GPU keeps what they use alive); unsubmitted ones are dropped.
    ring.destroy();
  }
}

export function destroyModelWeights(w: ModelWeights): void {
  const seen = new Set<GpuLinear>();
  const lin = (l: GpuLinear) => { if (!seen.has(l)) { seen.add(l); destroyGpuLinear(l); } };
  lin(w.embed); lin(w.lmHead); w.finalNorm.destroy();
  for (const l of w.layers) {
    l.inputNorm.destroy(); l.postNorm.destroy();
    for (const m of [l.mlp.gateUp, l.mlp.down].flat()) lin(m);
    if (l.kind === 'linear') {
      for (const m of [l.inProj, l.outProj].flat()) lin(m);
      for (const b of [l.conv, l.aLog, l.dtBias, l.norm]) b.destroy();
    } else {
      for (const m of [l.qkv, l.o].flat()) lin(m);
      l.qNorm.destroy(); l.kNorm.destroy();
    }
  }
}
