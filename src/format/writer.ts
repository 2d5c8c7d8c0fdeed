// Writes safetensors files and whole checkpoints (config.json + one file or shards + index), for tests and
// tools. Output is byte-compatible with what mlx-lm's save_model produces.

import { DTYPE_BYTES, type DType } from './dtype.ts';
import { fmtShape, shapeSize } from './safetensors.ts';

export interface TensorData {
  name: string;
  dtype: DType;
  shape: number[];
  data: Uint8Array;
}

/**
 * One safetensors file. Tensors are laid out largest element size first, then by name (as the reference Rust
 * implementation orders them), so every tensor starts aligned to its element size; the header is padded with
 * spaces to a multiple of 8 bytes for the same reason.
 */
export function writeSafetensors(tensors: TensorData[], metadata: Record<string, string> | null = { format: 'mlx' }): Uint8Array {
  const seen = new Set<string>();
  for (const t of tensors) {
    if (t.name === '__metadata__' || seen.has(t.name)) throw new Error(`writeSafetensors: duplicate or reserved tensor name "${t.name}"`);
    seen.add(t.name);
    const need = shapeSize(t.shape) * DTYPE_BYTES[t.dtype];
    if (t.data.byteLength !== need) {
      throw new Error(`writeSafetensors: tensor "${t.name}" ${t.dtype} ${fmtShape(t.shape)} needs ${need} bytes, got ${t.data.byteLength}`);
    }
  }
  const ordered = [...tensors].sort((a, b) => DTYPE_BYTES[b.dtype] - DTYPE_BYTES[a.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of ordered) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (json.byteLength % 8)) % 8;
  if (pad) {
    const padded = new Uint8Array(json.byteLength + pad).fill(0x20);
    padded.set(json);
    json = padded;
  }
  const out = new Uint8Array(8 + json.byteLength + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, json.byteLength, true);
  dv.setUint32(4, 0, true);
  out.set(json, 8);
  let pos = 8 + json.byteLength;
  for (const t of ordered) {
    out.set(t.data, pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** The module a tensor belongs to: its name without .weight / .scales / .biases. */
export function moduleOf(name: string): string {
  return name.replace(/\.(weight|scales|biases)$/, '');
}

export interface CheckpointWriteOptions {
  /** 1 (default) writes model.safetensors; N > 1 writes model-0000k-of-0000N.safetensors + index. */
  shards?: number;
  /**
   * Modules (raw name prefixes, e.g. "language_model.model.layers.0.mlp.down_proj") whose weight, scales and
   * biases go into different, consecutive shards. Exercises loaders that assume a module lives in one file.
   */
  splitModules?: string[];
  metadata?: Record<string, string>;
  /** Where config.json keeps the quantization block: both names (mlx-lm) by default; transformers writes quantization_config only. */
  quantizationKeys?: readonly ('quantization' | 'quantization_config')[];
}

/**
 * config.json text with the quantization block stored under both names, like mlx-lm's save_config; keys are
 * sorted at the top level as save_config does.
 */
export function configJson(
  config: Record<string, unknown>, quantization: Record<string, unknown> | null,
  keys: readonly ('quantization' | 'quantization_config')[] = ['quantization', 'quantization_config'],
): string {
  const c: Record<string, unknown> = { ...config };
  delete c.quantization;
  delete c.quantization_config;
  if (quantization) for (const k of keys) c[k] = quantization;
  const sorted = Object.fromEntries(Object.keys(c).sort().map((k) => [k, c[k]]));
  return JSON.stringify(sorted, null, 4);
}

function shardName(k: number, n: number): string {
  return `model-${String(k + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
}

/** Assigns each tensor a shard: whole modules fill shards in name order by size, split modules are spread. */
function assignShards(tensors: TensorData[], n: number, split: Set<string>): Map<string, number> {
  const byModule = new Map<string, TensorData[]>();
  for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const m = moduleOf(t.name);
    byModule.set(m, [...(byModule.get(m) ?? []), t]);
  }
  const target = tensors.reduce((s, t) => s + t.data.byteLength, 0) / n;
  const shardOf = new Map<string, number>();
  const used = new Array<number>(n).fill(0);
  let shard = 0;
  let filled = 0;
  let remaining = byModule.size;
  for (const [m, ts] of byModule) {
    const bytes = ts.reduce((s, t) => s + t.data.byteLength, 0);
    const wanted = Math.min(n - 1, Math.floor((filled + bytes / 2) / target));
    // One shard at a time, and never so late that the remaining modules cannot fill the remaining shards.
    if (used[shard] > 0 && shard < n - 1 && (wanted > shard || remaining <= n - 1 - shard)) shard++;
    ts.forEach((t, i) => {
      const k = split.has(m) ? (shard + i) % n : shard;
      shardOf.set(t.name, k);
      used[k]++;
    });
    filled += bytes;
    remaining--;
  }
  return shardOf;
}

/**
 * A checkpoint as files: config.json plus model.safetensors, or N shards plus model.safetensors.index.json
 * ({metadata: {total_size}, weight_map}).
 */
export function writeCheckpointFiles(
  config: Record<string, unknown>, quantization: Record<string, unknown> | null, tensors: TensorData[],
  opts: CheckpointWriteOptions = {},
): Map<string, Uint8Array> {
  const n = opts.shards ?? 1;
  const files = new Map<string, Uint8Array>();
  const enc = new TextEncoder();
  files.set('config.json', enc.encode(configJson(config, quantization, opts.quantizationKeys)));
  if (n <= 1) {
    files.set('model.safetensors', writeSafetensors(tensors, opts.metadata));
    return files;
  }
  const split = new Set(opts.splitModules ?? []);
  for (const m of split) {
    const parts = tensors.filter((t) => moduleOf(t.name) === m).length;
    if (parts < 2) throw new Error(`writeCheckpointFiles: cannot split module "${m}" across shards: it has ${parts} tensor(s)`);
    if (parts > n) throw new Error(`writeCheckpointFiles: module "${m}" has ${parts} tensors, more than the ${n} shards`);
  }
  const shardOf = assignShards(tensors, n, split);
  const perShard: TensorData[][] = Array.from({ length: n }, () => []);
  for (const t of tensors) perShard[shardOf.get(t.name)!].push(t);
  perShard.forEach((ts, k) => {
    if (ts.length === 0) throw new Error(`writeCheckpointFiles: shard ${k + 1} of ${n} would be empty (too few tensors)`);
  });
  const weightMap: Record<string, string> = {};
  for (const t of [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1))) weightMap[t.name] = shardName(shardOf.get(t.name)!, n);
  perShard.forEach((ts, k) => files.set(shardName(k, n), writeSafetensors(ts, opts.metadata)));
  const totalSize = tensors.reduce((s, t) => s + t.data.byteLength, 0);
  files.set('model.safetensors.index.json', enc.encode(JSON.stringify({ metadata: { total_size: totalSize }, weight_map: weightMap }, null, 4)));
  return files;
}
