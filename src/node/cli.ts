// `qwen-webgpu` command line: inspect a checkpoint, print logits, generate greedily — on Dawn (WebGPU in Node).
import { parseArgs } from 'node:util';
import './shaders-node.ts';
import { getNodeGpu } from './dawn.ts';
import { dirSource } from './fs-source.ts';
import { httpSource } from '../store/http-source.ts';
import type { ByteSource } from '../format/safetensors.ts';
import { openCheckpoint, summarizeCheckpoint } from '../format/checkpoint.ts';
import { estimateMemory, loadEngine } from '../engine/engine.ts';

const USAGE = `usage:
  qwen-webgpu inspect  --model DIR|URL [--context N] [--json]
  qwen-webgpu logits   --model DIR|URL --ids 1,2,3 [--then 4,5,6] [--json]
  qwen-webgpu generate --model DIR|URL --ids 1,2,3 --max-tokens N [--json]

--model takes a checkpoint folder or an http(s) base URL (e.g. https://huggingface.co/ORG/NAME/resolve/main).
logits: the first row is at the last prompt position after prefilling --ids; each further row follows a decode
step feeding the next --then id (teacher forcing). --json prints {"logits": [[...], ...]} (full vocabulary, f32).`;

function sourceFor(model: string): ByteSource {
  return /^https?:\/\//.test(model) ? httpSource(model) : dirSource(model);
}

function parseIds(s: string | undefined, flag: string): number[] {
  if (s === undefined || s.trim() === '') return [];
  return s.split(',').map((t) => {
    const v = Number(t.trim());
    if (!Number.isInteger(v) || v < 0) throw new UsageError(`${flag}: "${t}" is not a token id`);
    return v;
  });
}

class UsageError extends Error {}

function gb(bytes: number): string {
  return bytes >= 1 << 30 ? `${(bytes / (1 << 30)).toFixed(2)} GiB` : bytes >= 1 << 20 ? `${(bytes / (1 << 20)).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}

function write(text: string): Promise<void> {
  return new Promise((resolve) => process.stdout.write(text, () => resolve()));
}

async function inspect(model: string, context: number | undefined, json: boolean): Promise<void> {
  const ckpt = await openCheckpoint(sourceFor(model));
  const summary = summarizeCheckpoint(ckpt);
  const cfg = ckpt.config;
  const ctxLen = context ?? Math.min(4096, cfg.maxPositionEmbeddings);
  const mem = estimateMemory(ckpt, ctxLen, 256);
  if (json) {
    await write(JSON.stringify({ config: cfg, ...summary, memory: { contextLength: ctxLen, ...mem } }, (_, v) => (v instanceof Map ? Object.fromEntries(v) : v), 1) + '\n');
    return;
  }
  const lines: string[] = [];
  lines.push(`model: ${model}`);
  lines.push(`layout: ${ckpt.isMlx ? 'MLX (norm gains stored with +1)' : 'HF (norm gains = 1 + stored)'}; tied embeddings: ${ckpt.tied}`);
  lines.push(`hidden ${cfg.hiddenSize}, layers ${cfg.numLayers}, heads ${cfg.numHeads}/${cfg.numKvHeads}×${cfg.headDim}, ` +
    `GDN ${cfg.linearNumKeyHeads}k/${cfg.linearNumValueHeads}v heads ×${cfg.linearKeyHeadDim}/${cfg.linearValueHeadDim}, ` +
    `intermediate ${cfg.intermediateSize}, vocab ${cfg.vocabSize}`);
  lines.push(`layer types: ${cfg.layerTypes.map((t) => (t === 'full_attention' ? 'F' : 'L')).join('')}  (L = Gated DeltaNet, F = full attention)`);
  lines.push('');
  lines.push(['tensor', 'kind', 'bits', 'group', 'dtype', 'shape', 'bytes'].join('\t'));
  for (const r of summary.modules) {
    lines.push([r.path, r.kind, r.bits ?? '-', r.groupSize ?? '-', r.dtype ?? '-', `[${r.shape.join(',')}]`, r.bytes].join('\t'));
  }
  lines.push('');
  lines.push('bytes by kind:');
  for (const [k, v] of Object.entries(summary.bytesByKind)) lines.push(`  ${k}\t${gb(v as number)}`);
  lines.push('');
  lines.push(`GPU memory estimate at context ${ctxLen}: weights ${gb(mem.weights)} + GDN state ${gb(mem.recurrent)} + conv state ${gb(mem.conv)} + KV cache ${gb(mem.kv)} + activations ${gb(mem.activations)} = ${gb(mem.total)}`);
  await write(lines.join('\n') + '\n');
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === '--help' || command === '-h' || command === 'help') {
    await write(USAGE + '\n');
    return command ? 0 : 2;
  }
  const { values } = parseArgs({
    args: rest,
    options: {
      model: { type: 'string' },
      ids: { type: 'string' },
      then: { type: 'string' },
      'max-tokens': { type: 'string' },
      context: { type: 'string' },
      json: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (!values.model) throw new UsageError('--model is required');
  const context = values.context ? Number(values.context) : undefined;
  if (command === 'inspect') {
    await inspect(values.model, context, values.json!);
    return 0;
  }
  if (command !== 'logits' && command !== 'generate') throw new UsageError(`unknown command "${command}"`);
  const ids = parseIds(values.ids, '--ids');
  if (ids.length === 0) throw new UsageError('--ids needs at least one token id');
  const then = parseIds(values.then, '--then');
  const maxTokens = command === 'generate' ? Number(values['max-tokens'] ?? 32) : 0;
  if (command === 'generate' && (!Number.isInteger(maxTokens) || maxTokens < 1)) throw new UsageError('--max-tokens must be a positive integer');
  const need = ids.length + then.length + maxTokens;
  const ctx = await getNodeGpu();
  const engine = await loadEngine(ctx, sourceFor(values.model), { contextLength: context ?? Math.max(need, 16) });
  try {
    if (command === 'logits') {
      const rows = [await engine.prefill(ids)];
      for (const id of then) rows.push(await engine.decode(id));
      if (values.json) {
        await write('{"logits": [' + rows.map((r) => '[' + Array.from(r).join(',') + ']').join(',\n') + ']}\n');
      } else {
        for (const [i, r] of rows.entries()) {
          const top = Array.from(r.keys()).sort((a, b) => r[b] - r[a]).slice(0, 5);
          await write(`step ${i}: ` + top.map((t) => `${t} (${r[t].toFixed(4)})`).join('  ') + '\n');
        }
      }
    } else {
      const out = await engine.generate(ids, maxTokens);
      await write(values.json ? JSON.stringify({ ids: out }) + '\n' : out.join(',') + '\n');
    }
  } finally {
    engine.dispose();
  }
  return 0;
}

export async function runCli(argv: string[]): Promise<void> {
  let code: number;
  try {
    code = await main(argv);
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    process.stderr.write(`qwen-webgpu: ${msg}\n${e instanceof UsageError ? '\n' + USAGE + '\n' : ''}`);
    code = e instanceof UsageError ? 2 : 1;
  }
  // Dawn keeps handles alive; leave explicitly once output is flushed.
  process.exit(code);
}
