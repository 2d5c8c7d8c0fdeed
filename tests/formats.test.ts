// The floating weight formats on the CPU: the decoders against the values of spec §5.4, MLX's packing of fp4 / fp8
// codes, and how compressed-tensors and Qwen FP8 checkpoints are planned (spec §6), errors included.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeE2M1, decodeE4M3, decodeE8M0, encodeE2M1, encodeE4M3, quantizeMx, dequantizeMx,
} from '../src/format/fp-quant.ts';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { dequantModule, openCheckpoint, readEntry } from '../src/format/checkpoint.ts';
import { parseSafetensorsHeader, type ByteSource } from '../src/format/safetensors.ts';
import { decodeFloats, encodeFloats, type FloatDType } from '../src/format/dtype.ts';
import { writeCheckpointFiles, type TensorData } from '../src/format/writer.ts';
import { parseConfig } from '../src/format/config.ts';
import { formatBytes, formatProblem, storedTensors } from '../src/format/weight-format.ts';

const dec = new TextDecoder();

describe('element and scale codes (spec §5.4)', () => {
  test('FP4 E2M1: the 16 codes, and the encoder\'s thresholds', () => {
    assert.deepEqual(Array.from({ length: 16 }, (_, c) => decodeE2M1(c)), [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6]);
    // >5→6, ≥3.5→4, >2.5→3, ≥1.75→2, >1.25→1.5, ≥0.75→1, >0.25→0.5
    const cases: [number, number][] = [[5.01, 6], [5, 4], [3.5, 4], [3.49, 3], [2.51, 3], [2.5, 2], [1.75, 2], [1.74, 1.5], [1.26, 1.5], [1.25, 1], [0.75, 1], [0.74, 0.5], [0.26, 0.5], [0.25, 0], [100, 6], [-2.6, -3]];
    for (const [x, v] of cases) assert.equal(decodeE2M1(encodeE2M1(x)), v, `E2M1(${x})`);
  });

  test('FP8 E4M3: hand-decoded codes, every finite code round-trips, ties to even, saturation at 448', () => {
    const hand: [number, number][] = [
      [0x00, 0], [0x01, 2 ** -9], [0x07, 7 * 2 ** -9], [0x08, 2 ** -6], [0x38, 1], [0x39, 1.125], [0x40, 2], [0x7e, 448],
      [0xb8, -1], [0xfe, -448], [0x7f, 480], // 0x7f: NaN in OCP, 480 as MLX's decoder reads it
    ];
    for (const [c, v] of hand) assert.equal(decodeE4M3(c), v, `E4M3 0x${c.toString(16)}`);
    for (let c = 0; c < 256; c++) if ((c & 0x7f) !== 0x7f) assert.equal(encodeE4M3(decodeE4M3(c)), c === 0x80 ? 0x80 : c, `code 0x${c.toString(16)}`);
    assert.equal(encodeE4M3(1.0625), 0x38, '1 + 1/16 is half way between 1 and 1.125: to the even code');
    assert.equal(encodeE4M3(1.1875), 0x3a, '1.1875 between 1.125 (odd) and 1.25 (even)');
    assert.equal(encodeE4M3(1e6), 0x7e);
    assert.equal(encodeE4M3(-1e6), 0xfe);
  });

  test('E8M0: 2^(code − 127); 255 is NaN', () => {
    assert.deepEqual([decodeE8M0(127), decodeE8M0(130), decodeE8M0(0), decodeE8M0(254)], [1, 8, 2 ** -127, 2 ** 127]);
    assert.ok(Number.isNaN(decodeE8M0(255)));
  });
});

describe('MLX microscaling packing', () => {
  test('mxfp4: code i of a word in nibble i, one E8M0 scale per 32 values (round to the nearest power of two)', () => {
    // Values 2·E2M1(j mod 8): amax 12, 12/6 = 2 → scale 2^1 → code 128; codes j mod 8.
    const row = Float32Array.from({ length: 32 }, (_, j) => 2 * decodeE2M1(j % 8));
    const q = quantizeMx(row, 1, 32, 'mxfp4');
    assert.deepEqual([...q.scales], [128]);
    assert.deepEqual([...q.weight], [0x76543210, 0x76543210, 0x76543210, 0x76543210]);
    assert.deepEqual([...dequantizeMx(q.weight, q.scales, 1, 32, 'mxfp4')], [...row]);
  });

  test('nvfp4: 16 values per E4M3 scale; mxfp8: one code per byte', () => {
    const row = Float32Array.from({ length: 32 }, (_, j) => (j < 16 ? 0.75 : -3) * decodeE2M1(j % 8));
    const q = quantizeMx(row, 1, 32, 'nvfp4');
    // amax 4.5 → 4.5/6 = 0.75 = 1.5·2^-1 (E4M3 e = 6, m = 4: 0x34); amax 18 → 3 = 1.5·2^1 (e = 8, m = 4: 0x44)
    assert.deepEqual([...q.scales], [0x34, 0x44]);
    assert.deepEqual([...dequantizeMx(q.weight, q.scales, 1, 32, 'nvfp4')], [...row].map((v) => v + 0)); // −0 is stored as code 0
    const r8 = Float32Array.from({ length: 32 }, (_, j) => j - 16);
    const q8 = quantizeMx(r8, 1, 32, 'mxfp8');
    // amax 16 → 16/448 → nearest power of two 2^-5 (code 122): codes are E4M3(v · 32)
    assert.deepEqual([...q8.scales], [122]);
    assert.equal(q8.weight[0], (encodeE4M3(-16 * 32) | (encodeE4M3(-15 * 32) << 8) | (encodeE4M3(-14 * 32) << 16) | (encodeE4M3(-13 * 32) << 24)) >>> 0);
  });

  test('the format table: stored bytes per row, and what a format cannot hold', () => {
    assert.deepEqual(storedTensors({ kind: 'mxfp4', bits: 4, groupSize: 32, scaleDtype: 'e8m0' }, 5120).map((t) => t.rowBytes), [2560, 160]);
    assert.deepEqual(storedTensors({ kind: 'nvfp4', bits: 4, groupSize: 16, scaleDtype: 'e4m3' }, 5120).map((t) => t.rowBytes), [2560, 320]);
    assert.deepEqual(storedTensors({ kind: 'affine', bits: 3, groupSize: 64, scaleDtype: 'bf16' }, 5120).map((t) => t.rowBytes), [1920, 160, 160]);
    assert.equal(formatBytes({ kind: 'fp8', bits: 8, groupSize: 5120, scaleDtype: 'bf16' }, 17408, 5120), 17408 * (5120 + 2));
    assert.match(formatProblem({ kind: 'fp8', bits: 8, groupSize: 100, scaleDtype: 'bf16' }, 5120) ?? '', /multiple of 32/);
    assert.match(formatProblem({ kind: 'mxfp4', bits: 4, groupSize: 16, scaleDtype: 'e8m0' }, 5120) ?? '', /unsupported group size 16 for mxfp4/);
    assert.match(formatProblem({ kind: 'nvfp4', bits: 4, groupSize: 16, scaleDtype: 'e8m0' }, 5120) ?? '', /nvfp4 scales are e4m3/);
    assert.equal(formatProblem({ kind: 'mxfp8', bits: 8, groupSize: 32, scaleDtype: 'e8m0' }, 5120), null);
  });
});

async function explode(files: Map<string, Uint8Array>) {
  const src = memorySource(files);
  const h = await parseSafetensorsHeader('model.safetensors', src);
  const file = files.get('model.safetensors')!;
  const tensors: TensorData[] = [...h.tensors].map(([name, e]) => ({ name, dtype: e.dtype, shape: e.shape, data: file.slice(e.begin, e.end) }));
  return { config: JSON.parse(dec.decode(files.get('config.json')!)), tensors };
}

/** A one-file FP8 tiny checkpoint with its tensors and quantization_config edited. */
async function editedFp8(recipe: 'ctfp8' | 'qwenfp8', edit: (t: TensorData[], q: Record<string, any>) => TensorData[] | void): Promise<ByteSource> {
  const { config, tensors } = await explode(makeTinyCheckpoint(recipe, { seed: 3, shards: 1 }));
  const q = config.quantization_config;
  const out = edit(tensors, q) ?? tensors;
  return memorySource(writeCheckpointFiles(config, q, out, { quantizationKeys: ['quantization_config'] }), `tiny-${recipe}-edited`);
}

const M = 'model.language_model.layers';

describe('compressed-tensors and Qwen FP8 checkpoints (spec §6)', () => {
  test('channel scales: a module decodes to E4M3(code) · scale[row], computed by hand from the file', async () => {
    const files = makeTinyCheckpoint('ctfp8', { seed: 3, shards: 1 });
    const ckpt = await openCheckpoint(memorySource(files));
    assert.equal(ckpt.normShift, true, 'HF names: zero-centred norms');
    const plan = ckpt.modules.get('layers.0.mlp.down_proj')!;
    assert.equal(plan.kind, 'quant');
    const w = await readEntry(ckpt.source, ckpt.tensors.get('layers.0.mlp.down_proj.weight')!);
    const s = decodeFloats(await readEntry(ckpt.source, ckpt.tensors.get('layers.0.mlp.down_proj.weight_scale')!), 'BF16');
    const got = await dequantModule(ckpt, 'layers.0.mlp.down_proj');
    const cols = 512;
    for (const i of [0, 1, 777, 256 * cols - 1]) assert.equal(got[i], Math.fround(decodeE4M3(w[i]) * s[Math.floor(i / cols)]), `element ${i}`);
    assert.equal(ckpt.modules.get('layers.0.linear_attn.in_proj_a')!.kind, 'float', 'ignored by "re:.*linear_attn\\.in_proj_[ab]$"');
    assert.equal(ckpt.modules.get('layers.3.self_attn.o_proj')!.kind, 'float', 'ignored by its exact name');
  });

  test('tensor and block strategies: scales repeated to per-row groups, equal to a hand decode', async () => {
    // One scale for the whole of every FP8 tensor.
    const src = await editedFp8('ctfp8', (t, q) => {
      q.config_groups.group_0.weights.strategy = 'tensor';
      return t.map((x) => (x.name.endsWith('.weight_scale') ? { ...x, shape: [1], data: encodeFloats([0.001 * (x.name.length % 7 + 1)], 'BF16') } : x));
    });
    const ckpt = await openCheckpoint(src);
    const w = await readEntry(ckpt.source, ckpt.tensors.get('layers.1.mlp.up_proj.weight')!);
    const s = decodeFloats(await readEntry(ckpt.source, ckpt.tensors.get('layers.1.mlp.up_proj.weight_scale')!), 'BF16')[0];
    const got = await dequantModule(ckpt, 'layers.1.mlp.up_proj');
    for (const i of [0, 5, 512 * 256 - 1]) assert.equal(got[i], Math.fround(decodeE4M3(w[i]) * s));

    // Qwen FP8: 128 × 128 blocks of weight_scale_inv, multiplied (spec §6.2).
    const q = await openCheckpoint(memorySource(makeTinyCheckpoint('qwenfp8', { seed: 3 })));
    const plan = q.modules.get('layers.0.mlp.gate_proj')!; // [512, 256]: 4 × 2 blocks
    assert.deepEqual(plan.kind === 'quant' && [plan.mode, plan.groupSize, plan.scales.shape], ['fp8', 128, [4, 2]]);
    const qw = await readEntry(q.source, q.tensors.get('layers.0.mlp.gate_proj.weight')!);
    const qs = decodeFloats(await readEntry(q.source, q.tensors.get('layers.0.mlp.gate_proj.weight_scale_inv')!), 'F32');
    const qd = await dequantModule(q, 'layers.0.mlp.gate_proj');
    for (const [r, c] of [[0, 0], [127, 255], [128, 127], [300, 200], [511, 255]]) {
      assert.equal(qd[r * 256 + c], Math.fround(decodeE4M3(qw[r * 256 + c]) * qs[Math.floor(r / 128) * 2 + Math.floor(c / 128)]), `[${r}, ${c}]`);
    }
    assert.equal(q.modules.get('layers.0.linear_attn.out_proj')!.kind, 'float', 'bf16 in the file: float, whatever the config');
  });

  test('config errors name the key: int4 pack-quantized, nvfp4-pack-quantized, asymmetric, unknown strategy, bad regex', () => {
    const base = JSON.parse(dec.decode(makeTinyCheckpoint('ctfp8').get('config.json')!));
    const withQ = (edit: (q: any) => void) => {
      const c = structuredClone(base);
      edit(c.quantization_config);
      return () => parseConfig(c);
    };
    assert.throws(withQ((q) => { q.format = 'pack-quantized'; }), /quantization_config\.format "pack-quantized" is not supported: only FP8 weights/);
    assert.throws(withQ((q) => { q.format = 'nvfp4-pack-quantized'; }), /"nvfp4-pack-quantized" is not supported/);
    assert.throws(withQ((q) => { q.config_groups.group_0.weights.num_bits = 4; q.config_groups.group_0.weights.type = 'int'; }), /config_groups\.group_0\.weights: 4-bit "int" weights are not supported \(only 8-bit float/);
    assert.throws(withQ((q) => { q.config_groups.group_0.weights.symmetric = false; }), /asymmetric FP8/);
    assert.throws(withQ((q) => { q.config_groups.group_0.weights.strategy = 'tensor_group'; }), /strategy "tensor_group" is not supported/);
    assert.throws(withQ((q) => { q.ignore = ['re:(unclosed']; }), /quantization_config\.ignore\[0\]: "re:\(unclosed" is not a regular expression/);
    assert.throws(withQ((q) => { q.config_groups.group_0.weights.strategy = 'block'; q.config_groups.group_0.weights.block_structure = [128]; }), /block_structure must be \[rows, cols\]/);
    const qwen = JSON.parse(dec.decode(makeTinyCheckpoint('qwenfp8').get('config.json')!));
    qwen.quantization_config.fmt = 'e5m2';
    assert.throws(() => parseConfig(qwen), /quantization_config\.fmt "e5m2" is not supported/);
  });

  test('config and tensors must agree: ignored but FP8, targeted but bf16, a missing or misshapen weight_scale', async () => {
    const notIgnored = await editedFp8('ctfp8', (_t, q) => { q.ignore = q.ignore.filter((x: string) => !x.includes('o_proj')); });
    await assert.rejects(openCheckpoint(notIgnored), new RegExp(`tensor "${M}\\.3\\.self_attn\\.o_proj\\.weight": quantization_config quantizes "${M}\\.3\\.self_attn\\.o_proj" to FP8 \\(not in ignore\\), but its weight is BF16`));
    const ignored = await editedFp8('ctfp8', (_t, q) => { q.ignore.push('re:.*mlp\\.down_proj$'); });
    const e = await openCheckpoint(ignored).then(() => '', (x: Error) => x.message);
    assert.match(e, new RegExp(`tensor "${M}\\.0\\.mlp\\.down_proj\\.weight": F8_E4M3 weight, but quantization_config\\.ignore lists "${M}\\.0\\.mlp\\.down_proj" \\("re:\\.\\*mlp\\\\\\\\\\.down_proj\\$"\\)`));
    const noScale = await editedFp8('ctfp8', (t) => t.filter((x) => x.name !== `${M}.1.mlp.gate_proj.weight_scale`));
    await assert.rejects(openCheckpoint(noScale), new RegExp(`F8_E4M3 weight without its "${M}\\.1\\.mlp\\.gate_proj\\.weight_scale"`));
    const badShape = await editedFp8('ctfp8', (t) => t.map((x) => (x.name === `${M}.1.mlp.gate_proj.weight_scale` ? { ...x, shape: [256, 2], data: new Uint8Array(1024) } : x)));
    await assert.rejects(openCheckpoint(badShape), /weight_scale": expected shape \[512, 1\] for channel FP8 scales of \[512, 256\], found \[256, 2\]/);
    // Static activation scales (W8A8 static) are read by nobody here, and said nowhere: weight-only.
    const withInput = await editedFp8('ctfp8', (t) => [...t, { name: `${M}.0.mlp.up_proj.input_scale`, dtype: 'BF16' as FloatDType as never, shape: [1], data: encodeFloats([0.5], 'BF16') }]);
    assert.deepEqual((await openCheckpoint(withInput)).warnings, []);
  });
});
