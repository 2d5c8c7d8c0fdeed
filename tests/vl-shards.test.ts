// VL and MTP releases (issue 8, scope 4): a shard that holds only vision tower / MTP tensors is neither downloaded
// (modelFiles leaves it out) nor opened (openCheckpoint never reads it), and the text model is the same as without it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { writeSafetensors } from '../src/format/writer.ts';
import { encodeFloats } from '../src/format/dtype.ts';
import { openCheckpoint, referenceWeights } from '../src/format/checkpoint.ts';
import { createReferenceModel } from '../src/model/reference.ts';
import { modelFiles } from '../src/store/hub.ts';
import type { ByteSource } from '../src/format/safetensors.ts';

const INDEX = 'model.safetensors.index.json';
const VISION = 'model-vision.safetensors';

/** udq2 (three shards, already holding a few vision / MTP tensors among the text ones) plus a fourth shard of vision tower and MTP tensors, listed in the index like a VL release. */
function withVisionShard(hf: boolean): Map<string, Uint8Array> {
  const files = makeTinyCheckpoint('udq2', { seed: 4, hf });
  const blob = (name: string) => ({ name, dtype: 'BF16' as const, shape: [4, 8], data: encodeFloats(new Float32Array(32).fill(0.5), 'BF16') });
  const extras = hf
    ? ['model.visual.blocks.7.attn.qkv.weight', 'model.visual.merger.mlp.0.weight', 'mtp.layers.0.mlp.up_proj.weight']
    : ['vision_tower.blocks.7.attn.qkv.weight', 'vision_tower.merger.mlp.0.weight', 'mtp.layers.0.mlp.gate_proj.weight'];
  files.set(VISION, writeSafetensors(extras.map(blob)));
  const index = JSON.parse(new TextDecoder().decode(files.get(INDEX)!));
  for (const name of extras) index.weight_map[name] = VISION;
  files.set('tokenizer.json', new TextEncoder().encode('{}'));
  files.set(INDEX, new TextEncoder().encode(JSON.stringify(index)));
  return files;
}

/** A source that records which files were asked for, and can pretend some are absent. */
function watched(files: Map<string, Uint8Array>, absent: string[] = []): { src: ByteSource; touched: Set<string> } {
  const inner = memorySource(new Map([...files].filter(([f]) => !absent.includes(f))), 'vl');
  const touched = new Set<string>();
  return {
    touched,
    src: {
      describe: () => inner.describe(),
      size: (f) => { touched.add(f); return inner.size(f); },
      read: (f, o, n) => { touched.add(f); return inner.read(f, o, n); },
    },
  };
}

for (const hf of [false, true]) {
  test(`a shard of only vision tower / MTP tensors is not downloaded or opened (${hf ? 'HF' : 'MLX'} names)`, async () => {
    const files = withVisionShard(hf);
    // The download list: every file but the vision shard.
    const listed = (await modelFiles(watched(files).src)).map((f) => f.name);
    assert.ok(!listed.includes(VISION), `modelFiles lists ${listed.join(', ')}`);
    assert.ok(listed.includes(INDEX) && listed.filter((f) => f.startsWith('model-0')).length === 3, listed.join(', '));

    // Opening: the shard is absent (as after such a download) and never asked for; the text model is complete.
    const { src, touched } = watched(files, [VISION]);
    const ckpt = await openCheckpoint(src);
    assert.ok(!touched.has(VISION), 'the vision shard was read');
    assert.ok(!ckpt.files.includes(VISION) && ckpt.files.length === 3, ckpt.files.join(', '));

    // Same logits as the checkpoint without any extra shard (CPU reference on both).
    const plain = await openCheckpoint(memorySource(makeTinyCheckpoint('udq2', { seed: 4, hf }), 'plain'));
    const ids = [5, 9, 2, 30, 7];
    const a = createReferenceModel(ckpt.config, await referenceWeights(ckpt), { tied: ckpt.tied }).prefill(ids).at(-1)!;
    const b = createReferenceModel(plain.config, await referenceWeights(plain), { tied: plain.tied }).prefill(ids).at(-1)!;
    assert.deepEqual(Array.from(a), Array.from(b));
  });
}

test('an index of nothing but vision tower / MTP tensors is refused, naming what it lacks', async () => {
  const files = withVisionShard(false);
  const index = JSON.parse(new TextDecoder().decode(files.get(INDEX)!));
  index.weight_map = Object.fromEntries(Object.entries(index.weight_map).filter(([, f]) => f === VISION));
  files.set(INDEX, new TextEncoder().encode(JSON.stringify(index)));
  await assert.rejects(modelFiles(memorySource(files, 'vl')), /only vision tower \/ MTP tensors, no text model/);
});
