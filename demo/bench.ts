// The kernel microbenchmarks page: the suite of src/bench/ on this browser's WebGPU device, on the main thread
// (the suite awaits the GPU between steps and yields to the page, so progress repaints). Shows the adapter and its
// limits, the table as rows finish, a canvas chart of % of the stream-read ceiling per kernel, the peer (ONNX Runtime
// Web's MatMulNBits on the same shapes, src/bench/peer-ort.ts) and the JSON.
// Query parameters (the e2e test uses them): ?preset=tiny|quick|default|full, ?model=0, ?peer=0, ?autorun=1.
import '../src/gpu/shaders-vite.ts';
import { createGpuContext, requestBrowserGpuDevice, type GpuContext } from '../src/gpu/context.ts';
import type { CeilingResult } from '../src/bench/ceiling.ts';
import { caseLabel } from '../src/bench/kernels.ts';
import { peerCases, runOrtPeer } from '../src/bench/peer-ort.ts';
import { setDefaultTuningStore } from '../src/gpu/autotune.ts';
import { idbTuningStore } from '../src/store/tuning-idb.ts';
import {
  bitsText, comparisonText, formatStructure, num, errText, peerComparisons, tuningText, type BenchReport, type KernelRow, type PeerReport,
} from '../src/bench/report.ts';
import { kernelCases, PRESETS, type KernelCase, type Preset } from '../src/bench/shapes.ts';
import { adapterName, isCpuAdapter, runBench, type BenchProgress } from '../src/bench/suite.ts';
// ORT's WebGPU build (its own WebGPU EP, plus the wasm CPU EP) loads this binary. Imported as a URL so Vite serves
// it in `npm run demo` and copies it into the built site; the ORT module itself is imported only when the peer runs.
import ortWasmUrl from 'onnxruntime-web/ort-wasm-simd-threaded.asyncify.wasm?url';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);

let ctx: GpuContext | undefined;
let ceiling: CeilingResult | undefined;
let running = false;
const rows: KernelRow[] = [];

function showError(e: unknown): void {
  $('error').textContent = e instanceof Error ? e.message : String(e);
}

async function gpu(): Promise<GpuContext> {
  if (ctx) return ctx;
  const device = await requestBrowserGpuDevice();
  device.lost.then((info) => {
    ctx = undefined;
    ceiling = undefined;
    if (info.reason !== 'destroyed') showError(`GPU device lost: ${info.message || info.reason}`);
  });
  ctx = createGpuContext(device);
  // The same per-adapter store as the engine's worker: the page measures the tuning once per browser profile.
  setDefaultTuningStore(idbTuningStore());
  return ctx;
}

function showAdapter(c: GpuContext): void {
  const f = c.features;
  $('caps').textContent = `${adapterName(c)}${isCpuAdapter(c) ? ' (a CPU adapter: compare only ratios)' : ''} · ` +
    `shader-f16 ${f.shaderF16 ? 'yes' : 'no'} · subgroups ${f.subgroups ? 'yes' : 'no'} · timestamp-query ${f.timestampQuery ? 'yes' : 'no'}`;
  const info = c.device.adapterInfo;
  const entries: [string, string][] = [
    ['vendor', info?.vendor ?? ''], ['architecture', info?.architecture ?? ''], ['device', info?.device ?? ''],
    ['description', info?.description ?? ''],
    ['subgroup sizes', info && 'subgroupMinSize' in info ? `${(info as { subgroupMinSize?: number }).subgroupMinSize}–${(info as { subgroupMaxSize?: number }).subgroupMaxSize}` : '-'],
    ['features', [...c.device.features].sort().join(', ')],
  ];
  const limits = c.limits as unknown as Record<string, number>;
  // GPUSupportedLimits' members live on its prototype: walk it for the names.
  for (const k of Object.keys(Object.getPrototypeOf(limits)).concat(Object.keys(limits)).sort()) {
    if (typeof limits[k] === 'number') entries.push([k, limits[k].toLocaleString('en')]);
  }
  $('limits-body').replaceChildren(...entries.map(([k, v]) => {
    const tr = document.createElement('tr');
    for (const t of [k, v]) tr.appendChild(document.createElement('td')).textContent = t;
    return tr;
  }));
}

// ---------------------------------------------------------------------------------------------------------------
// table and chart

const COLUMNS: { head: string; cell: (r: KernelRow) => string; num?: boolean }[] = [
  { head: 'kernel', cell: (r) => r.kernel },
  { head: 'dims', cell: (r) => r.dims },
  { head: 'shape', cell: (r) => r.shape },
  { head: 'bits', cell: bitsText, num: true },
  { head: 'group', cell: (r) => (r.groupSize === null ? '-' : String(r.groupSize)), num: true },
  { head: 'median ms', cell: (r) => num(r.medianMs), num: true },
  { head: 'GB/s', cell: (r) => num(r.gbps), num: true },
  { head: '% ceiling', cell: (r) => r.pctCeiling.toFixed(1), num: true },
  { head: 'max err', cell: (r) => errText(r.maxErr), num: true },
  { head: 'copies', cell: (r) => String(r.copies), num: true },
  { head: 'timing', cell: (r) => r.timing },
];

for (const id of ['results-head', 'peer-head']) {
  $(id).replaceChildren(...COLUMNS.map((c) => {
    const th = document.createElement('th');
    th.textContent = c.head;
    return th;
  }));
}

function addRow(r: KernelRow, body = 'results-body'): void {
  const tr = document.createElement('tr');
  // A kernel that disagrees with its reference is flagged rather than hidden.
  if (!(r.maxErr <= 1e-4)) tr.className = 'bad';
  for (const c of COLUMNS) {
    const td = tr.appendChild(document.createElement('td'));
    td.textContent = c.cell(r);
    if (c.num) td.className = 'num';
  }
  $(body).appendChild(tr);
}

const KERNEL_COLORS: Record<string, string> = {
  matvec: '#3a6df0', 'matvec-mt': '#5aa0f0', gemm: '#7a4ee0', gatedDelta: '#0a7d5a', attention: '#d07a00', rmsNorm: '#777',
};

/** Horizontal bars of % of the ceiling, one per row, scaled to max(100 %, the largest). */
function drawChart(): void {
  const canvas = $<HTMLCanvasElement>('chart');
  const bar = 16;
  const gap = 4;
  const top = 22;
  const labelWidth = Math.min(420, Math.max(200, canvas.clientWidth * 0.45));
  const cssWidth = canvas.clientWidth || 800;
  const cssHeight = top + rows.length * (bar + gap) + 8;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(cssWidth * dpr);
  canvas.height = Math.round(cssHeight * dpr);
  canvas.style.height = `${cssHeight}px`;
  const g = canvas.getContext('2d')!;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, cssWidth, cssHeight);
  g.font = '12px system-ui, sans-serif';
  const plotWidth = cssWidth - labelWidth - 60;
  const scale = Math.max(100, ...rows.map((r) => (Number.isFinite(r.pctCeiling) ? r.pctCeiling : 0)));
  const x = (pct: number) => labelWidth + (plotWidth * pct) / scale;
  // Gridlines at every 25 % and the ceiling itself.
  g.textBaseline = 'top';
  for (let p = 0; p <= scale; p += 25) {
    g.strokeStyle = p === 100 ? '#b00020' : '#e4e4ea';
    g.beginPath();
    g.moveTo(x(p), top - 4);
    g.lineTo(x(p), cssHeight - 4);
    g.stroke();
    g.fillStyle = '#666';
    g.fillText(`${p}%`, x(p) - 10, 4);
  }
  g.textBaseline = 'middle';
  rows.forEach((r, i) => {
    const y = top + i * (bar + gap);
    g.fillStyle = '#1d1d1f';
    const format = bitsText(r) === '-' ? '' : ` ${bitsText(r)}${r.groupSize ? `/g${r.groupSize}` : ''}`;
    const label = `${r.kernel}${format} · ${r.dims} · ${r.shape}`;
    g.fillText(label.length > 64 ? `${label.slice(0, 63)}…` : label, 4, y + bar / 2, labelWidth - 8);
    g.fillStyle = KERNEL_COLORS[r.kernel] ?? '#3a6df0';
    g.fillRect(labelWidth, y, Math.max(1, x(r.pctCeiling) - labelWidth), bar);
    g.fillStyle = '#1d1d1f';
    g.fillText(`${r.pctCeiling.toFixed(1)}%`, x(r.pctCeiling) + 4, y + bar / 2);
  });
  canvas.dataset.bars = String(rows.length);
}

function showModel(report: BenchReport): void {
  const m = report.model;
  if (!m) return;
  const prefill = Object.entries(m.prefillTokPerS).map(([n, v]) => `${n} tokens ${num(v)} tok/s`).join(', ');
  $('model-figures').textContent = [
    `Synthetic ${m.recipe} checkpoint, ${m.dims}`,
    `decode ${num(m.decodeTokPerS)} tok/s · ${(m.bytesPerToken / 1e6).toFixed(1)} MB of weights per token · ${m.decodePctCeiling.toFixed(1)}% of the ceiling`,
    `prefill: ${prefill}`,
    `one by one ${num(m.oneByOneTokPerS)} tok/s (over ${m.oneByOneTokens} tokens): a ${m.speedupTokens}-token prefill is ${m.prefillSpeedup512.toFixed(1)}× faster`,
    `short prompt: ${m.shortPrompt.tokens} tokens cost ${m.shortPrompt.overDecode.toFixed(2)}× one decode step (${m.shortPrompt.ms.toFixed(1)} vs ${m.shortPrompt.decodeMs.toFixed(1)} ms)`,
    ...(m.decodeAtModelDims ? [`per token at ${formatStructure(m.decodeAtModelDims)}`] : []),
    `per token at ${formatStructure(m.decode)}`,
  ].join('\n');
}

/** ONNX Runtime Web's MatMulNBits on the preset's shapes (src/bench/peer-ort.ts); a failure becomes its note. */
async function ortPeer(preset: Preset, ceilingGBps: number, progress: (label: string) => Promise<void>): Promise<PeerReport> {
  try {
    const ort = await import('onnxruntime-web/webgpu');
    ort.env.wasm.wasmPaths = { wasm: ortWasmUrl };
    // Cross-origin isolated (the dev server and the bench test send COOP/COEP for this page): every core, as our
    // kernels get through the GPU; ORT's own default is half of them, at most 4.
    if (self.crossOriginIsolated) ort.env.wasm.numThreads = navigator.hardwareConcurrency || 1;
    return await runOrtPeer(ort, ceilingGBps, { cases: peerCases(preset), onProgress: progress });
  } catch (e) {
    return { name: 'ONNX Runtime Web MatMulNBits', rows: [], note: `did not load: ${e instanceof Error ? e.message : e}` };
  }
}

function showPeer(report: BenchReport): void {
  const p = report.peer;
  $('peer-box').hidden = !p;
  if (!p) return;
  $('peer-name').textContent = p.name;
  $('peer-note').textContent = p.note ?? '';
  $('peer-body').replaceChildren();
  for (const r of p.rows) addRow(r, 'peer-body');
  $('peer-compare').textContent = peerComparisons(report).map(comparisonText).join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// running

const repaint = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

async function onProgress(p: BenchProgress): Promise<void> {
  $('progress-box').hidden = false;
  const bar = $<HTMLProgressElement>('progress');
  bar.max = p.total;
  bar.value = p.done;
  $('progress-label').textContent = `${p.done}/${p.total} · ${p.label}`;
  if (p.row) {
    rows.push(p.row);
    addRow(p.row);
    drawChart();
  }
  await repaint();
}

function selectedPreset(): Preset {
  return $<HTMLSelectElement>('preset').value as Preset;
}

let cases: KernelCase[] = [];
function listKernels(): void {
  cases = kernelCases(selectedPreset(), { cpuAdapter: ctx ? isCpuAdapter(ctx) : false });
  $('kernel').replaceChildren(...cases.map((c, i) => {
    const o = document.createElement('option');
    o.value = String(i);
    o.textContent = caseLabel(c);
    return o;
  }));
}

async function run(only?: KernelCase): Promise<void> {
  if (running) return;
  running = true;
  showError('');
  for (const id of ['run', 'run-one']) $<HTMLButtonElement>(id).disabled = true;
  try {
    const c = await gpu();
    if (!only) {
      rows.length = 0;
      $('results-body').replaceChildren();
    }
    const preset = selectedPreset();
    const withPeer = !only && $<HTMLInputElement>('with-peer').checked;
    const report = await runBench(c, {
      preset,
      cases: only ? [only] : undefined,
      model: !only && $<HTMLInputElement>('with-model').checked,
      peer: withPeer ? (_ctx, ceilingGBps, progress) => ortPeer(preset, ceilingGBps, progress) : undefined,
      ceiling: only ? ceiling : undefined,
      onCeiling: (x) => { ceiling = x; },
      onProgress,
    });
    $('summary').textContent = `${report.adapter}: stream-read ceiling ${num(report.ceilingGBps)} GB/s, copy ${num(report.copyGBps)} GB/s ` +
      `(read + write), timing by ${report.meta.timing}, ${report.meta.seconds.toFixed(0)} s.` +
      (report.meta.cpuAdapter ? ' A CPU adapter: every time is a CPU time, compare only the ratios.' : '') +
      (report.tuning ? `\n${tuningText(report.tuning)}` : '');
    showModel(report);
    if (!only) showPeer(report);
    const link = $<HTMLAnchorElement>('download');
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([JSON.stringify(report, null, 1)], { type: 'application/json' }));
    link.hidden = false;
    $('progress-label').textContent = `done in ${report.meta.seconds.toFixed(0)} s`;
    document.body.dataset.state = 'done';
  } catch (e) {
    showError(e);
    document.body.dataset.state = 'error';
  } finally {
    running = false;
    for (const id of ['run', 'run-one']) $<HTMLButtonElement>(id).disabled = false;
  }
}

$('run').addEventListener('click', () => void run());
$('run-one').addEventListener('click', () => void run(cases[Number($<HTMLSelectElement>('kernel').value)]));
$('preset').addEventListener('change', listKernels);
window.addEventListener('resize', () => { if (rows.length) drawChart(); });

const preset = params.get('preset');
if (preset && (PRESETS as readonly string[]).includes(preset)) $<HTMLSelectElement>('preset').value = preset;
if (params.get('model') === '0') $<HTMLInputElement>('with-model').checked = false;
if (params.get('peer') === '0') $<HTMLInputElement>('with-peer').checked = false;

gpu().then((c) => {
  showAdapter(c);
  listKernels();
  if (params.get('autorun') === '1') void run();
}, (e) => {
  $('caps').textContent = `WebGPU unavailable: ${e instanceof Error ? e.message : e}`;
  showError(e);
});
