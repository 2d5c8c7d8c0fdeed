// What a bench run reports (the JSON shape of issue 7, fields beyond it marked "extra") and its text table.
// Timings on a CPU adapter (SwiftShader) are CPU timings: only the ratios (pctCeiling, speedups) mean anything
// there, which the table's header says.

import type { TuningReport } from '../gpu/autotune.ts';

export interface KernelRow {
  kernel: string;
  /** "M1 K5120 N17408" (linear), "T1 Hk16 Hv48 Dk128 Dv128", "ctx4096 H24 Hkv4 D256", "rows1 n5120". */
  shape: string;
  bits: number | null;
  groupSize: number | null;
  medianMs: number;
  /** Bytes counted (see `bytes`) per second, in GB/s (1e9). */
  gbps: number;
  /** gbps as a percentage of the stream-read ceiling of the same run. */
  pctCeiling: number;
  /** max |gpu − reference| / max(1, max |reference|) over the checked outputs. */
  maxErr: number;
  /** extra: which model and modules the shape belongs to ("27B mlp gate_proj/up_proj"). */
  dims: string;
  /** extra: bytes one iteration reads (weights + scales + biases; state read + written; K + V). */
  bytes: number;
  /** extra: weight (state, cache) copies rotated through so the working set exceeds the last-level cache. */
  copies: number;
  /** extra: outputs compared with the CPU reference (a subsample of rows for large linears). */
  checked: number;
  /** extra: 'timestamp' (timestamp queries around one pass) or 'wall' (submit to done). */
  timing: 'timestamp' | 'wall';
  /** extra: arithmetic rate for the GEMM rows. */
  gflops?: number;
}

export interface DecodeStructure {
  layers: number;
  dispatchesPerToken: number;
  passesPerToken: number;
  bindGroupsPerToken: number;
  buffersPerToken: number;
  encodeMsPerToken: number;
  /** extra */
  writeBuffersPerToken: number;
  /** extra */
  submitsPerToken: number;
  /** extra: command encoders created per token */
  encodersPerToken: number;
  /** extra: pipelines compiled during the measured tokens (0 once warm) */
  pipelinesPerToken: number;
  /** extra: the dims this structure was measured at */
  dims: string;
}

export interface ModelReport {
  /** Which dims the throughput figures are for ("hidden 256, 4 layers, ..., vocab 248320"). */
  dims: string;
  decodeTokPerS: number;
  /** extra: weight bytes one decode token reads (all linears, lm_head included; one embedding row). */
  bytesPerToken: number;
  decodePctCeiling: number;
  decode: DecodeStructure;
  /** extra: the same structure at the model's own dims (decode above is at 64 layers where measured). */
  decodeAtModelDims?: DecodeStructure;
  /** By prompt length: 128, 512, 2048 (other lengths only where a caller asked for them, e.g. the tests). */
  prefillTokPerS: Record<string, number>;
  /** prefill tok/s at 512 over feeding tokens one by one (decode steps) */
  prefillSpeedup512: number;
  /** extra: the prompt length of that speedup (512 unless the lengths were overridden) */
  speedupTokens: number;
  /** extra: one-by-one tok/s and over how many of the 512 tokens it was measured */
  oneByOneTokPerS: number;
  oneByOneTokens: number;
  /** extra: checkpoint recipe of the synthetic model */
  recipe: string;
  /**
   * extra: the small-prompt cliff: a prefill of `tokens` (8) from an empty sequence over one decode step, both the
   * median of a few runs (target ≤ 3).
   */
  shortPrompt: { tokens: number; ms: number; decodeMs: number; overDecode: number };
}

export interface PeerReport { name: string; rows: KernelRow[]; note?: string }

/** Why a report has no peer where it is made without a browser (the Node CLI). */
export const NO_PEER_NOTE = 'none: the ONNX Runtime Web peer runs only in the bench page (demo/bench.html), ' +
  'where its WebGPU EP has a browser GPU';

/** A peer row beside our row of the same shape and bits (the same group size where we measured one). */
export interface PeerComparison {
  peer: KernelRow;
  ours: KernelRow;
  /** peer median time over ours: above 1, ours is faster. */
  speedup: number;
}

export function peerComparisons(r: Pick<BenchReport, 'rows' | 'peer'>): PeerComparison[] {
  const out: PeerComparison[] = [];
  for (const p of r.peer?.rows ?? []) {
    const same = r.rows.filter((o) => o.shape === p.shape && o.bits === p.bits && o.kernel !== p.kernel);
    const ours = same.find((o) => o.groupSize === p.groupSize) ?? same[0];
    if (ours) out.push({ peer: p, ours, speedup: p.medianMs / ours.medianMs });
  }
  return out;
}

export function comparisonText(c: PeerComparison): string {
  return `${c.peer.shape} ${c.peer.bits}-bit: ours (g${c.ours.groupSize}) ${num(c.ours.medianMs)} ms, ` +
    `peer (g${c.peer.groupSize}) ${num(c.peer.medianMs)} ms: ours ${c.speedup >= 1 ? `${num(c.speedup)}× faster` : `${num(1 / c.speedup)}× slower`}`;
}

export interface BenchReport {
  adapter: string;
  ceilingGBps: number;
  rows: KernelRow[];
  peer: PeerReport | null;
  model: ModelReport | null;
  /** extra */
  copyGBps: number;
  /** extra: the linear kernels' tuning for this adapter (measured now or stored) that the rows and the model use */
  tuning?: TuningReport;
  /** extra: preset, timing method, features, limits, date */
  meta: {
    preset: string;
    timing: 'timestamp' | 'wall';
    cpuAdapter: boolean;
    features: string[];
    ceilingWorkingSetBytes: number;
    ceilingVerified: boolean;
    /** vec4 words per invocation of the fastest stream-read grid */
    ceilingWordsPerInvocation: number;
    date: string;
    seconds: number;
  };
}

// ---------------------------------------------------------------------------------------------------------------
// text table

const fmt = (x: number, digits: number): string => (Number.isFinite(x) ? x.toFixed(digits) : String(x));

/** Significant-figure formatting for times and rates that span 1e-3 .. 1e4. */
export function num(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  if (a >= 1) return x.toFixed(2);
  return x.toPrecision(3);
}

export function errText(e: number): string {
  return Number.isFinite(e) ? e.toExponential(1) : String(e);
}

/** Left-aligned first columns, right-aligned numbers, columns separated by two spaces. */
export function formatColumns(header: string[], rows: string[][], leftColumns: number): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < leftColumns ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ').trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

export const ROW_COLUMNS = ['kernel', 'dims', 'shape', 'bits', 'gs', 'ms', 'GB/s', '% ceil', 'max err', 'copies'];

/** The weight format column: bits, "bf16" for float weights of a linear, "-" for kernels without weights. */
export function bitsText(r: KernelRow): string {
  if (r.bits !== null) return String(r.bits);
  return r.kernel === 'matvec' || r.kernel === 'matvec-mt' || r.kernel === 'gemm' ? 'bf16' : '-';
}

export function rowCells(r: KernelRow): string[] {
  return [
    r.kernel, r.dims, r.shape, bitsText(r), r.groupSize === null ? '-' : String(r.groupSize),
    num(r.medianMs), num(r.gbps), fmt(r.pctCeiling, 1), errText(r.maxErr), String(r.copies),
  ];
}

export function formatStructure(s: DecodeStructure): string {
  return `${s.dims}: ${s.dispatchesPerToken} dispatches, ${s.passesPerToken} compute passes, ${s.bindGroupsPerToken} bind groups, ` +
    `${s.buffersPerToken} buffers created, ${s.writeBuffersPerToken} writeBuffer, ${s.submitsPerToken} submit, ` +
    `${fmt(s.encodeMsPerToken, 2)} ms CPU encode per token`;
}

/** The whole report as text: a header, the kernel table, the peer rows and the model figures. */
/** One line on the linear kernels' tuning (the table header and the page). */
export function tuningText(r: TuningReport): string {
  const t = r.tuning;
  const x = r.crossover;
  return `tuning (${r.cached ? 'stored' : 'measured'}): matvec ${t.reduce} reduction, at most ${t.maxLanes} lanes per row; ` +
    `multi-token matvec up to ${t.matvecMaxM >= 1 << 16 ? 'every M' : `M ${t.matvecMaxM}`}, then the 64-token GEMM` +
    (x ? ` (K${x.K} N${x.N}: matvec M32 ${num(x.matvec32Ms)} ms, GEMM M64 ${num(x.gemm64Ms)} ms)` : '');
}

export function formatReport(r: BenchReport): string {
  const out: string[] = [];
  out.push(`adapter: ${r.adapter}${r.meta.cpuAdapter ? ' (a CPU: times are CPU times, compare only the ratios)' : ''}`);
  out.push(`ceiling: stream read ${num(r.ceilingGBps)} GB/s, copy ${num(r.copyGBps)} GB/s (read + write), ` +
    `working set ${(r.meta.ceilingWorkingSetBytes / 2 ** 20).toFixed(0)} MiB, timing ${r.meta.timing}` +
    `${r.meta.ceilingVerified ? '' : ' (WARNING: the stream kernel did not read every word)'}`);
  if (r.tuning) out.push(tuningText(r.tuning));
  out.push(`preset ${r.meta.preset}, ${r.meta.seconds.toFixed(0)} s; % ceil = GB/s over the stream-read ceiling; ` +
    'max err = max |gpu − ref| / max(1, max |ref|)');
  out.push('');
  out.push(formatColumns(ROW_COLUMNS, r.rows.map(rowCells), 3));
  out.push('');
  if (r.peer) {
    out.push(`peer: ${r.peer.name}${r.peer.note ? ` (${r.peer.note})` : ''}`);
    if (r.peer.rows.length > 0) out.push(formatColumns(ROW_COLUMNS, r.peer.rows.map(rowCells), 3));
    for (const c of peerComparisons(r)) out.push(`  ${comparisonText(c)}`);
  } else {
    out.push(`peer: ${NO_PEER_NOTE}`);
  }
  const m = r.model;
  if (m) {
    out.push('');
    out.push(`model (${m.recipe}, ${m.dims}):`);
    out.push(`  decode ${num(m.decodeTokPerS)} tok/s, ${(m.bytesPerToken / 1e6).toFixed(1)} MB of weights per token, ` +
      `${fmt(m.decodePctCeiling, 1)}% of the ceiling`);
    const prefill = Object.entries(m.prefillTokPerS).map(([n, v]) => `${n} → ${num(v)}`).join(', ');
    out.push(`  prefill tok/s: ${prefill}; one by one ${num(m.oneByOneTokPerS)} (over ${m.oneByOneTokens} tokens); ` +
      `${m.speedupTokens}-token prefill ${fmt(m.prefillSpeedup512, 1)}× one by one`);
    out.push(`  short prompt: ${m.shortPrompt.tokens} tokens in ${fmt(m.shortPrompt.ms, 1)} ms = ` +
      `${fmt(m.shortPrompt.overDecode, 2)}× one decode step (${fmt(m.shortPrompt.decodeMs, 1)} ms)`);
    if (m.decodeAtModelDims) out.push(`  per token at ${formatStructure(m.decodeAtModelDims)}`);
    out.push(`  per token at ${formatStructure(m.decode)}`);
  }
  return out.join('\n');
}
