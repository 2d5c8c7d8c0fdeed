// The pre-flight report (src/engine/preflight.ts) as text: one file that needs only the report's type, so the
// demo page can show the table without bundling the checkpoint code the worker runs.
import type { PreflightReport } from '../api.ts';

const GIB = 2 ** 30;

export function fmtBytes(n: number): string {
  if (n >= GIB) return `${(n / GIB).toFixed(2)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toFixed(2)} MiB`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}

/** The report as a text table: one row per item with the human size and the exact bytes, then limits and verdict. */
export function formatPreflight(r: PreflightReport, title = 'GPU memory estimate (pre-flight)'): string {
  const rows: [string, number][] = [
    ['weights', r.weightBytes],
    ...Object.entries(r.weightBytesByKind).map(([k, v]): [string, number] => [`  ${k}`, v]),
    [`GDN recurrent state (${r.layers.linear} layers)`, r.recurrentBytes],
    [`conv state (${r.layers.linear} layers)`, r.convBytes],
    [`KV cache (${r.layers.full} layers × ${fmtBytes(r.kvBytesPerToken)}/token × ${r.contextLength})`, r.kvBytes],
    ['chat snapshot (copy of GDN + conv state)', r.snapshotBytes],
    [`activations (prefill chunk ${r.prefillChunk}, logits)`, r.activationBytes],
    ['total', r.totalBytes],
    ['memory budget', r.budgetBytes],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const lines = [`${title} at context ${r.contextLength}, from config.json and ${r.from}:`];
  for (const [k, v] of rows) lines.push(`  ${k.padEnd(w)}  ${fmtBytes(v).padStart(10)}  ${String(v).padStart(14)}`);
  lines.push(`  (budget: ${r.budgetSource})`);
  const l = r.limits;
  lines.push(`GPU limits: maxBufferSize ${fmtBytes(l.maxBufferSize)}, maxStorageBufferBindingSize ${fmtBytes(l.maxStorageBufferBindingSize)}, ` +
    `maxStorageBuffersPerShaderStage ${l.maxStorageBuffersPerShaderStage} (${l.source})`);
  lines.push(`  largest single buffer: ${r.largestBuffer.name}, ${fmtBytes(r.largestBuffer.bytes)}`);
  const ctx = r.maxContextThatFits > 0 ? `largest context that fits: ${r.maxContextThatFits}` : 'no context length fits';
  lines.push(r.fits
    ? `verdict: fits (${fmtBytes(r.totalBytes)} of ${fmtBytes(r.budgetBytes)}); ${ctx} (max_position_embeddings ${r.maxPositionEmbeddings})`
    : `verdict: DOES NOT FIT: ${r.reason}`);
  return lines.join('\n');
}
