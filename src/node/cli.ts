// `qwen-webgpu` command line: inspect a checkpoint, print logits, generate greedily, run the kernel benchmarks — on
// Dawn (WebGPU in Node).
// Arguments are checked before anything is loaded, and against the model's config.json before any weight is read.
import { statSync } from 'node:fs';
import { totalmem } from 'node:os';
import './shaders-node.ts';
import { getNodeGpu } from './dawn.ts';
import type { GpuLimitsMode } from '../gpu/context.ts';
import { dirSource } from './fs-source.ts';
import { httpSource } from '../store/http-source.ts';
import { describeError } from '../store/fetch-range.ts';
import { isNotFound, type ByteSource } from '../format/safetensors.ts';
import { parseConfig, type ModelConfig } from '../format/config.ts';
import { openCheckpoint, summarizeCheckpoint, type Checkpoint } from '../format/checkpoint.ts';
import {
  defaultMemoryBudget, formatPreflight, preflight, readIndex, readPreflightInputs, type PreflightModule,
} from '../engine/preflight.ts';
import { estimateMemory, loadEngine } from '../engine/engine.ts';
import type { Preset } from '../bench/shapes.ts';
import { runNodeBench } from './bench.ts';

/** Exit statuses, also listed in --help. */
export const EXIT = { ok: 0, runtime: 1, usage: 2 } as const;

const USAGE = `usage:
  qwen-webgpu inspect  --model DIR|URL [--context N] [--memory-budget BYTES|NGiB] [--json]
  qwen-webgpu logits   --model DIR|URL --ids 1,2,3 [--then 4,5,6] [--context N] [--gpu-limits max|default] [--json]
  qwen-webgpu generate --model DIR|URL --ids 1,2,3 [--max-tokens N] [--context N] [--gpu-limits max|default] [--json]
  qwen-webgpu bench    [--quick | --full | --tiny] [--no-model] [--out FILE] [--json]

  --model DIR|URL  a checkpoint folder (a Hugging Face cache snapshot folder works) or an http(s) base URL,
                   e.g. https://huggingface.co/ORG/NAME/resolve/main
  --ids a,b,c      prompt token ids: decimal integers below the model's vocab_size. Several prompts, run one
                   after another on one loaded model: separate them with ";" (quote it), e.g. --ids "1,2;3,4,5"
  --then a,b,c     logits: ids fed one decode step each after the prompt (teacher forcing), one row of logits each;
                   with several prompts, one list per prompt, separated by ";" the same way
  --max-tokens N   generate: greedy tokens to produce, at most (default 32)
  --context N      KV-cache capacity in tokens, 1 to max_position_embeddings (inspect: default
                   min(4096, max_position_embeddings); logits, generate: default what the run needs, at least 16).
                   The prompt plus --then or --max-tokens must fit in it.
  --memory-budget X  inspect: memory the model may use, in bytes or with KiB, MiB, GiB, TiB (e.g. 24GiB), for
                   the pre-flight verdict; default os.totalmem() × 0.75
  --gpu-limits M   logits, generate: "max" (default) asks the adapter for its largest limits and every useful
                   feature; "default" for WebGPU's default limits and no optional feature (a conservative device)
  --json           machine-readable output, one line per prompt: logits prints {"logits": [[...], ...]} (full
                   vocabulary, f32), generate {"ids": [...]};
                   bench prints the report as JSON instead of the table
  --quick, --full  bench: a smaller suite (a few minutes on SwiftShader) or every shape and format (slow);
                   --tiny is the tests' suite of toy shapes. Default: every bit width at the 27B MLP shape,
                   4-bit at every 0.8B / 9B / 27B shape, the other kernel families, the whole synthetic model
  --no-model       bench: kernel rows only, no whole-model figures
  --out FILE       bench: also write the JSON report to FILE
  --progress       weight-loading progress on stderr even when stderr is not a terminal
  --quiet          no progress
  --debug          stack traces with errors (also QWEN_WEBGPU_DEBUG=1)
  -h, --help       this text

inspect: the pre-flight table (GPU bytes of weights by kind, GDN/conv state, KV cache per token and at --context,
activations; the buffers against WebGPU's default limits; the verdict and the largest context that fits) works
from config.json and model.safetensors.index.json alone, before any shard is downloaded. It exits 0 whether or not
the model fits: it is a report.

bench: on a CPU adapter (SwiftShader) every time is a CPU time; only the ratios to the stream-read ceiling measured
in the same run mean anything.

logits: the first row is at the last prompt position after prefilling --ids; each further row follows a decode
step feeding the next --then id.

exit status: ${EXIT.ok} success; ${EXIT.runtime} runtime error (checkpoint, network, GPU); ${EXIT.usage} usage error (a bad or missing argument).`;

const HINT = 'see qwen-webgpu --help';

class UsageError extends Error {}

// ---------------------------------------------------------------------------------------------------------------
// Arguments.

const COMMANDS = ['inspect', 'logits', 'generate', 'bench'] as const;
type Command = (typeof COMMANDS)[number];

const FLAG_KINDS = {
  model: 'string', ids: 'string', then: 'string', 'max-tokens': 'string', context: 'string',
  json: 'boolean', progress: 'boolean', quiet: 'boolean', debug: 'boolean', help: 'boolean',
  out: 'string', quick: 'boolean', full: 'boolean', tiny: 'boolean', 'no-model': 'boolean', 'gpu-limits': 'string',
  'memory-budget': 'string',
} as const;
type Flag = keyof typeof FLAG_KINDS;

const COMMON_FLAGS: Flag[] = ['json', 'progress', 'quiet', 'debug', 'help'];
const MODEL_FLAGS: Flag[] = ['model', 'context'];
const COMMAND_FLAGS: Record<Command, Flag[]> = {
  inspect: [...MODEL_FLAGS, 'memory-budget'],
  logits: [...MODEL_FLAGS, 'ids', 'then', 'gpu-limits'],
  generate: [...MODEL_FLAGS, 'ids', 'max-tokens', 'gpu-limits'],
  bench: ['out', 'quick', 'full', 'tiny', 'no-model'],
};

/** Counts and ids beyond this are certainly typos; the model's own limits are checked later. */
const MAX_COUNT = 2 ** 31 - 1;

function parseFlags(command: Command, args: string[]): Map<Flag, string | true> {
  const allowed = new Set([...COMMON_FLAGS, ...COMMAND_FLAGS[command]]);
  const values = new Map<Flag, string | true>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    const m = arg === '-h' ? ['', 'help', undefined] : /^--([^=]+)(?:=([\s\S]*))?$/.exec(arg);
    if (!m) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
    const name = m[1] as Flag;
    const inline = m[2];
    if (!Object.hasOwn(FLAG_KINDS, name)) throw new UsageError(`unknown flag --${name}`);
    if (!allowed.has(name)) throw new UsageError(`--${name} does not apply to ${command}`);
    if (values.has(name)) throw new UsageError(`--${name} is given twice`);
    if (FLAG_KINDS[name] === 'boolean') {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
      values.set(name, true);
    } else {
      const v = inline ?? args[++i];
      if (v === undefined || (inline === undefined && v.startsWith('--'))) throw new UsageError(`--${name} needs a value`);
      values.set(name, v);
    }
  }
  return values;
}

/** A decimal integer in [min, max]; "1e3", "0x10", "1.0", "-1", " " are refused, not reinterpreted. */
function parseCount(flag: Flag, s: string, min: number, max = MAX_COUNT): number {
  if (!/^\d+$/.test(s)) throw new UsageError(`--${flag}: ${JSON.stringify(s)} is not a decimal integer`);
  const v = Number(s);
  if (v < min || v > max) throw new UsageError(`--${flag}: ${s} is out of range (${min} to ${max})`);
  return v;
}

const UNITS: Record<string, number> = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 };

/** A byte count: a decimal integer, or a decimal number with a binary unit ("24GiB", "1.5 TiB"). */
function parseBytes(flag: Flag, s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(KiB|MiB|GiB|TiB)?$/.exec(s.trim());
  if (!m || (!m[2] && m[1].includes('.'))) {
    throw new UsageError(`--${flag}: ${JSON.stringify(s)} is not a byte count (a decimal integer, or a number with KiB, MiB, GiB or TiB, e.g. 24GiB)`);
  }
  const v = Math.floor(Number(m[1]) * (m[2] ? UNITS[m[2]] : 1));
  if (v < 1 || v > Number.MAX_SAFE_INTEGER) throw new UsageError(`--${flag}: ${s} is out of range (1 byte to 8 PiB)`);
  return v;
}

function parseIds(flag: Flag, s: string): number[] {
  if (s.trim() === '') throw new UsageError(`--${flag} needs at least one token id`);
  return s.split(',').map((raw, i) => {
    const t = raw.trim();
    if (t === '') throw new UsageError(`--${flag}: empty entry at position ${i + 1} of ${JSON.stringify(s)}`);
    if (!/^\d+$/.test(t)) throw new UsageError(`--${flag}: ${JSON.stringify(t)} is not a token id: decimal integers only`);
    const v = Number(t);
    if (v > MAX_COUNT) throw new UsageError(`--${flag}: token id ${t} is out of range`);
    return v;
  });
}

interface Plan {
  command: Exclude<Command, 'bench'>;
  model: string;
  context?: number;
  /** One entry per ";"-separated prompt of --ids, each with its --then list (empty without --then). */
  prompts: { ids: number[]; then: number[] }[];
  maxTokens: number;
  json: boolean;
  progress: boolean;
  gpuLimits: GpuLimitsMode;
  /** inspect --memory-budget, in bytes, and as given. */
  memoryBudget?: { bytes: number; given: string };
}

function plan(command: Plan['command'], flags: Map<Flag, string | true>): Plan {
  const str = (f: Flag) => flags.get(f) as string | undefined;
  const model = str('model');
  if (model === undefined) throw new UsageError('--model is required');
  if (model.trim() === '') throw new UsageError('--model is empty');
  const p: Plan = {
    command, model, prompts: [], maxTokens: 0, json: flags.has('json'),
    progress: !flags.has('quiet') && (flags.has('progress') || !!process.stderr.isTTY),
    context: str('context') === undefined ? undefined : parseCount('context', str('context')!, 1),
    gpuLimits: 'max',
  };
  const limits = str('gpu-limits');
  if (limits !== undefined) {
    if (limits !== 'max' && limits !== 'default') throw new UsageError(`--gpu-limits: ${JSON.stringify(limits)} is not "max" or "default"`);
    p.gpuLimits = limits;
  }
  const budget = str('memory-budget');
  if (budget !== undefined) p.memoryBudget = { bytes: parseBytes('memory-budget', budget), given: budget };
  if (command === 'inspect') return p;
  if (str('ids') === undefined) throw new UsageError('--ids is required');
  const prompts = str('ids')!.split(';').map((s) => parseIds('ids', s));
  const thens = str('then')?.split(';').map((s) => parseIds('then', s));
  if (thens && thens.length !== prompts.length) {
    throw new UsageError(`--then has ${thens.length} ";"-separated lists for ${prompts.length} --ids prompts: give one per prompt`);
  }
  p.prompts = prompts.map((ids, i) => ({ ids, then: thens?.[i] ?? [] }));
  if (command === 'generate') p.maxTokens = str('max-tokens') === undefined ? 32 : parseCount('max-tokens', str('max-tokens')!, 1);
  if (p.context !== undefined) checkFits(p, p.context, `--context ${p.context}`);
  return p;
}

/** Positions a prompt needs: its ids, then each --then id or generated token. */
const neededBy = (p: Plan, q: Plan['prompts'][number]) => q.ids.length + q.then.length + p.maxTokens;
/** Positions the run needs: the longest prompt (each starts from an empty sequence). */
const needed = (p: Plan) => Math.max(...p.prompts.map((q) => neededBy(p, q)));

function checkFits(p: Plan, capacity: number, what: string): void {
  for (const [i, q] of p.prompts.entries()) {
    if (neededBy(p, q) <= capacity) continue;
    const which = p.prompts.length > 1 ? `prompt ${i + 1}: ` : '';
    const extra = p.command === 'generate' ? ` + --max-tokens ${p.maxTokens}` : ` + ${q.then.length} --then ids`;
    throw new UsageError(`${which}${q.ids.length} --ids${extra} = ${neededBy(p, q)} tokens, more than ${what}`);
  }
}

/** The checks that need config.json; they run before any weight is read. */
function checkAgainstModel(p: Plan, cfg: ModelConfig): void {
  const maxPos = cfg.maxPositionEmbeddings;
  if (p.context !== undefined && p.context > maxPos) {
    throw new UsageError(`--context ${p.context} exceeds max_position_embeddings ${maxPos} in config.json`);
  }
  checkFits(p, maxPos, `max_position_embeddings ${maxPos} in config.json`);
  for (const [flag, ids] of p.prompts.flatMap((q) => [['ids', q.ids], ['then', q.then]] as const)) {
    const bad = ids.find((id) => id >= cfg.vocabSize);
    if (bad !== undefined) {
      throw new UsageError(`--${flag}: token id ${bad} is outside the vocabulary (vocab_size ${cfg.vocabSize} in config.json)`);
    }
  }
}

interface BenchPlan { preset: Preset; model: boolean; json: boolean; out?: string; progress: boolean }

function benchPlan(flags: Map<Flag, string | true>): BenchPlan {
  const presets = (['quick', 'full', 'tiny'] as const).filter((f) => flags.has(f));
  if (presets.length > 1) throw new UsageError(`${presets.map((f) => `--${f}`).join(' and ')} exclude each other`);
  const out = flags.get('out') as string | undefined;
  if (out !== undefined && out.trim() === '') throw new UsageError('--out is empty');
  return {
    preset: presets[0] ?? 'default',
    model: !flags.has('no-model'),
    json: flags.has('json'),
    out,
    progress: !flags.has('quiet') && (flags.has('progress') || !!process.stderr.isTTY),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Progress on stderr.

interface Progress {
  /** Network bytes as they arrive (HTTP sources). */
  onBytes(n: number): void;
  /** Weights uploaded to the GPU so far, of the total. */
  onUpload(done: number, total: number): void;
  end(ok: boolean): void;
}

const PROGRESS_INTERVAL_MS = 500;
const RATE_WINDOW_MS = 5000;

function size(bytes: number): string {
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(2)} GiB` : bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function progressReporter(enabled: boolean): Progress {
  if (!enabled) return { onBytes() {}, onUpload() {}, end() {} };
  const out = process.stderr;
  const tty = !!out.isTTY;
  const start = performance.now();
  let uploaded = 0;
  let total = 0;
  let inFlight = 0; // network bytes of the tensor being read, not yet uploaded
  let moved = 0; // bytes for the rate: network bytes where there is a network, else uploaded bytes
  let network = false;
  let last = '';
  let printed = false;
  const samples: { t: number; n: number }[] = [{ t: start, n: 0 }];
  const line = (now: number): string => {
    samples.push({ t: now, n: moved });
    while (samples.length > 2 && now - samples[1].t > RATE_WINDOW_MS) samples.shift();
    const dt = (now - samples[0].t) / 1000;
    const rate = dt > 0 ? `${size((moved - samples[0].n) / dt)}/s` : '';
    if (total === 0) return `reading checkpoint: ${size(moved)}${rate ? `, ${rate}` : ''}`;
    const done = Math.min(total, uploaded + inFlight);
    return `loading weights: ${size(done)} / ${size(total)} (${Math.floor((100 * done) / total)}%), ${rate}`;
  };
  const print = (text: string, final: boolean) => {
    if (text === last && !final) return;
    last = text;
    printed = true;
    out.write(tty ? `\r${text}\x1b[K${final ? '\n' : ''}` : `${text}\n`);
  };
  const timer = setInterval(() => print(line(performance.now()), false), PROGRESS_INTERVAL_MS);
  timer.unref();
  return {
    onBytes(n) {
      network = true;
      inFlight += n;
      moved += n;
    },
    onUpload(done, t) {
      if (!network) moved += done - uploaded;
      uploaded = done;
      total = t;
      inFlight = 0;
    },
    end(ok) {
      clearInterval(timer);
      if (!ok) {
        if (tty && printed) out.write('\n');
        return;
      }
      const secs = (performance.now() - start) / 1000;
      print(`loaded weights: ${size(total)} (${total} bytes) in ${secs.toFixed(1)} s, ${size(moved / Math.max(secs, 1e-3))}/s`, true);
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Commands.

function sourceFor(model: string, progress: Progress): ByteSource {
  if (!/^https?:\/\//i.test(model)) {
    const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(model)?.[1];
    if (scheme) throw new UsageError(`--model: "${model}" is a ${scheme}: URL; give a checkpoint folder or an http(s) base URL`);
    // Follows symlinks (a Hugging Face cache snapshot is a folder of them).
    // A path that is well formed but does not lead to a folder is a runtime error (exit 1), like a bad checkpoint:
    // the argument is fine, the file system disagrees.
    let kind;
    try {
      kind = statSync(model);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new Error(code === 'ENOENT'
        ? `--model: "${model}" does not exist; give a checkpoint folder or an http(s) base URL`
        : `--model: "${model}" cannot be opened (${(e as Error).message})`);
    }
    if (!kind.isDirectory()) throw new Error(`--model: "${model}" is a file; give the checkpoint folder that holds config.json and the .safetensors files`);
    return dirSource(model);
  }
  try {
    return httpSource(model, { onBytes: (n) => progress.onBytes(n) });
  } catch (e) {
    throw new UsageError(`--model: ${(e as Error).message}`);
  }
}

function write(text: string): Promise<void> {
  return new Promise((resolve) => process.stdout.write(text, () => resolve()));
}

/** What the loader accepted but a user should know (unused tensors, overrides for absent modules, tying). */
function warn(ckpt: Checkpoint): void {
  for (const w of ckpt.warnings) process.stderr.write(`qwen-webgpu: warning: ${w}\n`);
}

/** The pre-flight options of an inspect run: --context, --memory-budget or os.totalmem() × 0.75, default limits. */
function preflightOptions(p: Plan, cfg: ModelConfig, from: string) {
  const budget = p.memoryBudget !== undefined
    ? { bytes: p.memoryBudget.bytes, source: `--memory-budget ${p.memoryBudget.given}` }
    : defaultMemoryBudget({ totalMemoryBytes: totalmem() });
  return {
    contextLength: p.context ?? Math.min(4096, cfg.maxPositionEmbeddings), prefillChunk: 256,
    memoryBudgetBytes: budget.bytes, budgetSource: budget.source, from,
    // inspect starts no GPU (it works without Dawn), so the buffers are checked against the limits every WebGPU
    // device has; a real adapter usually allows larger buffers, hence longer contexts.
    limits: undefined,
  };
}

function modelLines(p: Plan, cfg: ModelConfig): string[] {
  return [
    `model: ${p.model}`,
    `hidden ${cfg.hiddenSize}, layers ${cfg.numLayers}, heads ${cfg.numHeads}/${cfg.numKvHeads}×${cfg.headDim}, ` +
      `GDN ${cfg.linearNumKeyHeads}k/${cfg.linearNumValueHeads}v heads ×${cfg.linearKeyHeadDim}/${cfg.linearValueHeadDim}, ` +
      `intermediate ${cfg.intermediateSize}, vocab ${cfg.vocabSize}`,
    `layer types: ${cfg.layerTypes.map((t) => (t === 'full_attention' ? 'F' : 'L')).join('')}  (L = Gated DeltaNet, F = full attention)`,
  ];
}

const json = (v: unknown) => JSON.stringify(v, (_, x) => (x instanceof Map ? Object.fromEntries(x) : x), 1) + '\n';

/** A pre-flight module as a row of the same shape as the checkpoint summary's. */
function moduleRow(m: PreflightModule) {
  const f = m.format;
  return f.kind === 'float'
    ? { path: m.path, kind: 'float', bits: null, groupSize: null, dtype: f.dtype.toUpperCase(), shape: m.shape, bytes: m.bytes }
    : { path: m.path, kind: f.kind, bits: f.bits, groupSize: f.groupSize, dtype: f.scaleDtype.toUpperCase(), shape: m.shape, bytes: m.bytes };
}

/**
 * A checkpoint before its download: config.json and the index are here, none of the shards the index names. The
 * pre-flight report, from the tensor names alone.
 */
async function inspectIndexOnly(p: Plan, src: ByteSource, shards: number): Promise<void> {
  const inputs = await readPreflightInputs(src);
  const cfg = parseConfig(inputs.config);
  checkAgainstModel(p, cfg);
  const { modules, config: _, ...report } = preflight(inputs.config, inputs.names, preflightOptions(p, cfg, inputs.from));
  if (p.json) {
    await write(json({ ...report, config: cfg, shardsPresent: 0, shards, modules: modules.map(moduleRow) }));
    return;
  }
  const lines = modelLines(p, cfg);
  lines.push(`config.json and ${inputs.from} only (none of its ${shards} shard${shards === 1 ? '' : 's'} here): every number below ` +
    'follows from the config and the tensor names; no weight was read', '');
  lines.push(formatPreflight(report));
  await write(lines.join('\n') + '\n');
}

/** Whether any of `files` exists in `src` (a missing one is not an error here: that is what is asked). */
async function anyPresent(src: ByteSource, files: string[]): Promise<boolean> {
  const found = await Promise.all(files.map((f) => src.size(f).then(() => true, (e) => {
    if (isNotFound(e)) return false;
    throw e;
  })));
  return found.some(Boolean);
}

async function inspect(p: Plan, src: ByteSource): Promise<void> {
  const index = await readIndex(src);
  if (index && !(await anyPresent(src, index.shards))) {
    await inspectIndexOnly(p, src, index.shards.length);
    return;
  }
  const ckpt = await openCheckpoint(src);
  warn(ckpt);
  checkAgainstModel(p, ckpt.config);
  const summary = summarizeCheckpoint(ckpt);
  const cfg = ckpt.config;
  const ctxLen = p.context ?? Math.min(4096, cfg.maxPositionEmbeddings);
  const mem = estimateMemory(ckpt, ctxLen, 256);
  const inputs = await readPreflightInputs(src);
  const { modules: _m, config: _c, ...report } = preflight(inputs.config, inputs.names, preflightOptions(p, cfg, inputs.from));
  if (p.json) {
    // The summary's totalBytes (bytes in the files) is storedBytes here: totalBytes is the pre-flight's GPU total.
    const { totalBytes: storedBytes, ...stored } = summary;
    await write(json({ config: cfg, ...stored, storedBytes, memory: { contextLength: ctxLen, ...mem }, ...report }));
    return;
  }
  const lines = modelLines(p, cfg);
  lines.splice(1, 0, `layout: ${ckpt.isMlx ? 'MLX (norm gains stored with +1)' : 'HF (norm gains = 1 + stored)'}; tied embeddings: ${ckpt.tied}`);
  lines.push('');
  lines.push(['tensor', 'kind', 'bits', 'group', 'dtype', 'shape', 'bytes'].join('\t'));
  for (const r of summary.modules) {
    lines.push([r.path, r.kind, r.bits ?? '-', r.groupSize ?? '-', r.dtype ?? '-', `[${r.shape.join(',')}]`, r.bytes].join('\t'));
  }
  lines.push('');
  lines.push('bytes by kind (in the files):');
  for (const [k, v] of Object.entries(summary.bytesByKind)) lines.push(`  ${k}\t${size(v as number)}`);
  lines.push('');
  lines.push(formatPreflight(report));
  await write(lines.join('\n') + '\n');
}

async function run(p: Plan, src: ByteSource, progress: Progress): Promise<void> {
  // Headers and config first: a bad argument is refused before the GPU starts or a weight is read.
  const ckpt = await openCheckpoint(src);
  warn(ckpt);
  checkAgainstModel(p, ckpt.config);
  const contextLength = p.context ?? Math.min(Math.max(needed(p), 16), ckpt.config.maxPositionEmbeddings);
  const ctx = await getNodeGpu(p.gpuLimits);
  let engine;
  try {
    engine = await loadEngine(ctx, src, { contextLength, onProgress: (done, total) => progress.onUpload(done, total) });
  } catch (e) {
    progress.end(false);
    throw e;
  }
  progress.end(true);
  try {
    // One load serves every prompt (the pipelines and weights are the costly part); each starts from position 0.
    for (const [n, q] of p.prompts.entries()) {
      engine.reset();
      const heading = p.prompts.length > 1 && !p.json ? `prompt ${n + 1}:\n` : '';
      if (p.command === 'logits') {
        const rows = [await engine.prefill(q.ids)];
        for (const id of q.then) rows.push(await engine.decode(id));
        if (p.json) {
          await write('{"logits": [' + rows.map((r) => '[' + Array.from(r).join(',') + ']').join(',') + ']}\n');
        } else {
          await write(heading + rows.map((r, i) => {
            const top = Array.from(r.keys()).sort((a, b) => r[b] - r[a]).slice(0, 5);
            return `step ${i}: ` + top.map((t) => `${t} (${r[t].toFixed(4)})`).join('  ') + '\n';
          }).join(''));
        }
      } else {
        const out = await engine.generate(q.ids, p.maxTokens);
        await write(p.json ? JSON.stringify({ ids: out }) + '\n' : heading + out.join(',') + '\n');
      }
    }
  } finally {
    engine.dispose();
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    process.stderr.write(USAGE + '\n');
    return EXIT.usage;
  }
  if (command === '--help' || command === '-h' || command === 'help') {
    await write(USAGE + '\n');
    return EXIT.ok;
  }
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw new UsageError(`unknown command ${JSON.stringify(command)} (expected ${COMMANDS.join(', ')})`);
  }
  const flags = parseFlags(command as Command, rest);
  if (flags.has('help')) {
    await write(USAGE + '\n');
    return EXIT.ok;
  }
  if (command === 'bench') {
    await runNodeBench(benchPlan(flags), write);
    return EXIT.ok;
  }
  const p = plan(command as Plan['command'], flags);
  const progress = progressReporter(p.progress && p.command !== 'inspect');
  const src = sourceFor(p.model, progress);
  if (p.command === 'inspect') await inspect(p, src);
  else await run(p, src, progress);
  return EXIT.ok;
}

/** The error and its causes, with stacks: for --debug. */
function debugText(e: unknown): string {
  const parts: string[] = [];
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 6; depth++) {
    parts.push(cur instanceof Error ? cur.stack ?? cur.message : String(cur));
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join('\ncaused by: ');
}

export async function runCli(argv: string[]): Promise<void> {
  const debug = argv.includes('--debug') || process.env.QWEN_WEBGPU_DEBUG === '1';
  let code: number;
  try {
    code = await main(argv);
  } catch (e) {
    const usage = e instanceof UsageError;
    // describeError adds what undici keeps in `cause` (ECONNREFUSED, ENOTFOUND...) when the message lacks it.
    const msg = usage ? (e as Error).message : describeError(e);
    process.stderr.write(`qwen-webgpu: ${msg}${usage ? ` (${HINT})` : ''}\n${debug ? debugText(e) + '\n' : ''}`);
    code = usage ? EXIT.usage : EXIT.runtime;
  }
  // Dawn keeps handles alive; leave explicitly once output is flushed.
  process.exit(code);
}
