// Peak memory while loading a checkpoint at real Qwen3.5-0.8B widths (spec §1.3: d 1024, I 3584, H 8, Hkv 2,
// D 256, Hk = Hv = 16, Dk = Dv = 128, V 248320, tied) but few layers, so it stays quick. Random weights from the
// tiny writer, written once to a folder and read back through dirSource like a real load (every read allocates).
//   node --import tsx scripts/measure-load-memory.ts [--recipe q4g32|bf16|q8g128] [--layers 4] [--dir DIR]
// Prints one JSON line: the source's largest read, the peak bytes read but not yet uploaded (bytes asked of the
// source minus the upload progress), and process.memoryUsage() (rss, arrayBuffers) sampled during the load,
// each as a peak above the value measured just before it. The measurement runs in a child process started with
// --expose-gc, so its baseline holds neither the generator's garbage nor an earlier load.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import '../src/node/shaders-node.ts';
import { getNodeGpu } from '../src/node/dawn.ts';
import { dirSource } from '../src/node/fs-source.ts';
import { makeTinyCheckpoint, type TinyRecipe } from '../src/format/tiny.ts';
import { openCheckpoint } from '../src/format/checkpoint.ts';
import type { ByteSource } from '../src/format/safetensors.ts';
import { destroyModelWeights, loadModelWeights, weightBytes } from '../src/engine/load.ts';

const { values } = parseArgs({
  options: {
    recipe: { type: 'string', default: 'q4g32' },
    layers: { type: 'string', default: '4' },
    dir: { type: 'string' },
    measure: { type: 'boolean', default: false },
  },
});
const recipe = values.recipe as TinyRecipe;
const layers = Number(values.layers);
const dir = path.resolve(values.dir ?? path.join(tmpdir(), `qwen-webgpu-0.8b-${recipe}-L${layers}`));
const MiB = 2 ** 20;

const SHAPE_08B = {
  hiddenSize: 1024, numLayers: layers, intermediateSize: 3584, vocabSize: 248320, numHeads: 8, numKvHeads: 2,
  headDim: 256, linearKeyHeads: 16, linearValueHeads: 16, linearHeadDim: 128, convKernel: 4,
};

async function generate(): Promise<void> {
  const t0 = performance.now();
  const files = makeTinyCheckpoint(recipe, { seed: 1, shape: SHAPE_08B });
  await mkdir(dir, { recursive: true });
  for (const [name, data] of files) await writeFile(path.join(dir, name), data);
  console.error(`wrote ${dir} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** The source with every read's length recorded; onRead runs as each read starts. */
function tracked(src: ByteSource, onRead: () => void) {
  const stats = { reads: 0, maxRead: 0, requested: 0 };
  const source: ByteSource = {
    describe: () => src.describe(),
    size: (f) => src.size(f),
    read: (f, offset, length) => {
      stats.reads++;
      stats.maxRead = Math.max(stats.maxRead, length);
      stats.requested += length;
      onRead();
      return src.read(f, offset, length);
    },
  };
  return { source, stats };
}

async function measure(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc!;
  const ctx = await getNodeGpu();
  let loading = false;
  const { source, stats } = tracked(dirSource(dir), () => { if (loading) sample(); });
  const ckpt = await openCheckpoint(source);
  const headerBytes = stats.requested;
  gc();
  const before = process.memoryUsage();
  const peak = { rss: before.rss, arrayBuffers: before.arrayBuffers, inFlight: 0 };
  let landed = 0;
  function sample() {
    const m = process.memoryUsage();
    peak.rss = Math.max(peak.rss, m.rss);
    peak.arrayBuffers = Math.max(peak.arrayBuffers, m.arrayBuffers);
    peak.inFlight = Math.max(peak.inFlight, stats.requested - headerBytes - landed);
  }
  loading = true;
  const timer = setInterval(sample, 2);
  const t0 = performance.now();
  const weights = await loadModelWeights(ctx, ckpt, {
    onProgress: (done) => { sample(); landed = done; },
  });
  const seconds = (performance.now() - t0) / 1000;
  clearInterval(timer);
  sample();
  gc();
  const after = process.memoryUsage();
  destroyModelWeights(weights);
  let largest = 0;
  for (const t of ckpt.tensors.values()) largest = Math.max(largest, t.end - t.begin);
  console.log(JSON.stringify({
    recipe, layers, weightMiB: +(weightBytes(ckpt) / MiB).toFixed(1), largestTensorMiB: +(largest / MiB).toFixed(1),
    seconds: +seconds.toFixed(2), reads: stats.reads, maxReadMiB: +(stats.maxRead / MiB).toFixed(2),
    peakInFlightMiB: +(peak.inFlight / MiB).toFixed(2),
    peakRssAboveBeforeMiB: +((peak.rss - before.rss) / MiB).toFixed(1),
    peakArrayBuffersAboveBeforeMiB: +((peak.arrayBuffers - before.arrayBuffers) / MiB).toFixed(1),
    rssAfterAboveBeforeMiB: +((after.rss - before.rss) / MiB).toFixed(1),
    arrayBuffersAfterAboveBeforeMiB: +((after.arrayBuffers - before.arrayBuffers) / MiB).toFixed(1),
  }));
  process.exit(0); // Dawn keeps handles alive
}

if (values.measure) {
  await measure();
} else {
  if (!existsSync(path.join(dir, 'config.json'))) await generate();
  const self = import.meta.filename;
  const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', self, '--measure', '--recipe', recipe, '--layers', String(layers), '--dir', dir], { stdio: 'inherit' });
  process.exit(child.status ?? 1);
}
