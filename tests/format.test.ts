// src/format and the byte sources: dtypes, MLX affine quantization and packing (spec §5), safetensors parsing,
// config variants (spec §1), checkpoint plans and validation (spec §2, §5.1), the two published reference
// checkpoints, and the file-system / HTTP sources.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mkdtemp, writeFile, rm } from 'node:fs/promises';
import os from 'node:os';
import {
  bf16BitsToF32, decodeFloats, encodeFloats, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, bitsToF32,
} from '../src/format/dtype.ts';
import { affineGroupParams, dequantizeAffine, packBits, quantizeAffine, rint, unpackBits } from '../src/format/quant.ts';
import { parseSafetensorsHeader, type ByteSource } from '../src/format/safetensors.ts';
import { writeSafetensors, writeCheckpointFiles, configJson, type TensorData } from '../src/format/writer.ts';
import { normaliseName, parseConfig } from '../src/format/config.ts';
import {
  openCheckpoint, referenceWeights, summarizeCheckpoint, dequantModule, loadFloat, type Checkpoint, type ModulePlan,
} from '../src/format/checkpoint.ts';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { dirSource } from '../src/node/fs-source.ts';
import { httpSource } from '../src/store/http-source.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const refDir = (name: string) => path.resolve(repoRoot, '../shared/reference', name);

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

function gaussians(n: number, seed: number, std = 1): Float32Array {
  const u = rng(seed);
  return Float32Array.from({ length: n }, () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u()) * std);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

// ------------------------------------------------------------------------------------------------------------
describe('dtype', () => {
  test('f32 → bf16 rounds to nearest, ties to even', () => {
    const cases: [number, number][] = [
      [0x3f800000, 0x3f80], // 1.0 exact
      [0x3f808000, 0x3f80], // exactly half way, 0x3f80 is even → down
      [0x3f818000, 0x3f82], // exactly half way, 0x3f81 is odd → up
      [0x3f808001, 0x3f81], // just above half → up
      [0x3f807fff, 0x3f80], // just below half → down
      [0xbfc00000, 0xbfc0], // −1.5
      [0x7f7fffff, 0x7f80], // f32 max rounds to +inf
      [0xff7fffff, 0xff80], // and −max to −inf
      [0x00008000, 0x0000], // subnormal tie → even (zero)
      [0x00018000, 0x0002], // subnormal tie → even (up)
      [0x80000000, 0x8000], // −0 keeps its sign
      [0x7f800000, 0x7f80], // +inf
    ];
    for (const [f, b] of cases) assert.equal(f32ToBf16Bits(bitsToF32(f)), b, `f32 0x${f.toString(16)}`);
  });

  test('NaN stays NaN in bf16, even with a payload only in the low bits', () => {
    for (const bits of [0x7fc00000, 0x7f800001, 0xff800001, 0x7fffffff]) {
      const b = f32ToBf16Bits(bitsToF32(bits));
      assert.ok(Number.isNaN(bf16BitsToF32(b)), `0x${bits.toString(16)} → 0x${b.toString(16)}`);
    }
  });

  test('every bf16 and f16 bit pattern survives decode → encode', () => {
    for (let h = 0; h < 65536; h++) {
      const bf = bf16BitsToF32(h);
      if (!Number.isNaN(bf)) assert.equal(f32ToBf16Bits(bf), h);
      const hf = f16BitsToF32(h);
      if (!Number.isNaN(hf)) assert.equal(f32ToF16Bits(hf), h, `f16 0x${h.toString(16)}`);
    }
  });

  test('f32 → f16 rounding, subnormals and overflow', () => {
    assert.equal(f32ToF16Bits(1), 0x3c00);
    assert.equal(f32ToF16Bits(65504), 0x7bff);
    assert.equal(f32ToF16Bits(65519), 0x7bff); // below the half-way point to 65536
    assert.equal(f32ToF16Bits(65520), 0x7c00); // tie with an odd mantissa rounds up to infinity
    assert.equal(f32ToF16Bits(2 ** -24), 0x0001);
    assert.equal(f32ToF16Bits(2 ** -25), 0x0000); // tie → even (zero)
    assert.equal(f32ToF16Bits(3 * 2 ** -25), 0x0002); // 1.5 units → even (2)
    assert.equal(f32ToF16Bits(0.1), 0x2e66);
    assert.equal(f32ToF16Bits(-0), 0x8000);
    assert.ok(Number.isNaN(f16BitsToF32(f32ToF16Bits(NaN))));
  });

  test('decodeFloats handles unaligned views and all three float types', () => {
    const vals = [1, -2.5, 0.15625, 3e-5];
    for (const dt of ['BF16', 'F16', 'F32'] as const) {
      const raw = encodeFloats(vals, dt);
      const buf = new Uint8Array(raw.byteLength + 1);
      buf.set(raw, 1);
      const out = decodeFloats(buf.subarray(1), dt);
      vals.forEach((v, i) => assert.ok(Math.abs(out[i] - v) <= Math.abs(v) * 2 ** -8, `${dt} ${v} → ${out[i]}`));
    }
    assert.throws(() => decodeFloats(new Uint8Array(3), 'F16'), /not a whole number of F16/);
    assert.throws(() => decodeFloats(new Uint8Array(4), 'U32'), /not a float type/);
  });
});

// ------------------------------------------------------------------------------------------------------------
/** Bit-by-bit reading of spec §5.3: stream bit p is bit p%32 of word p/32 of the row. */
function packOracle(codes: Uint8Array, rows: number, cols: number, bits: number): Uint32Array {
  const wpr = (cols * bits) / 32;
  const out = new Uint32Array(rows * wpr);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      for (let k = 0; k < bits; k++) {
        if ((codes[r * cols + j] >> k) & 1) {
          const p = j * bits + k;
          out[r * wpr + Math.floor(p / 32)] |= 1 << (p % 32);
        }
      }
    }
  }
  return out;
}

describe('bit packing (spec §5.3)', () => {
  for (const bits of [2, 3, 4, 5, 6, 8]) {
    for (const group of [32, 64, 128]) {
      test(`pack/unpack round trip, ${bits}-bit, ${group} columns × 3 rows`, () => {
        const rows = 3;
        const cols = group * 2;
        const u = rng(bits * 1000 + group);
        const codes = Uint8Array.from({ length: rows * cols }, () => Math.floor(u() * (1 << bits)));
        const words = packBits(codes, rows, cols, bits);
        assert.equal(words.length, (rows * cols * bits) / 32);
        assert.deepEqual(words, packOracle(codes, rows, cols, bits));
        assert.deepEqual(unpackBits(words, rows, cols, bits), codes);
        // Every group starts on a word boundary: group g of a row is words [g·G·bits/32, (g+1)·G·bits/32).
        const wpg = (group * bits) / 32;
        const sub = codes.slice(group, 2 * group); // row 0, group 1
        assert.deepEqual(words.slice(wpg, 2 * wpg), packBits(sub, 1, group, bits));
      });
    }
  }

  test('straddling elements land where the spec says', () => {
    const one = (bits: number, j: number, q: number) => {
      const codes = new Uint8Array(32);
      codes[j] = q;
      return packBits(codes, 1, 32, bits);
    };
    // 3-bit element 10 = stream bits 30..32: bits 30–31 of word 0 and bit 0 of word 1.
    assert.deepEqual([...one(3, 10, 0b101)], [0b01 << 30 >>> 0, 1, 0]);
    // 5-bit element 6 = stream bits 30..34.
    assert.deepEqual([...one(5, 6, 0b10111)], [(0b11 << 30) >>> 0, 0b101, 0, 0, 0]);
    // 6-bit element 5 = stream bits 30..35.
    assert.deepEqual([...one(6, 5, 0b110110)], [(0b10 << 30) >>> 0, 0b1101, 0, 0, 0, 0]);
    // 8-bit: value i in byte i; 2-bit: value i at bits [2i, 2i+2).
    assert.equal(one(8, 2, 0xab)[0], 0x00ab0000);
    assert.equal(one(2, 15, 3)[0], 0xc0000000);
  });

  test('packing rejects bad input with clear errors', () => {
    assert.throws(() => packBits(new Uint8Array(32), 1, 32, 7), /unsupported bits 7/);
    assert.throws(() => packBits(new Uint8Array(31), 1, 32, 4), /expected 1·32 = 32 codes, found 31/);
    assert.throws(() => packBits(Uint8Array.of(16, ...new Array(31).fill(0)), 1, 32, 4), /code 16 .* does not fit in 4 bits/);
    assert.throws(() => unpackBits(new Uint32Array(3), 1, 32, 4), /expected 1·4 = 4 words .* found 3/);
    assert.throws(() => packBits(new Uint8Array(10), 1, 10, 3), /not a whole number of 32-bit words/);
  });
});

// ------------------------------------------------------------------------------------------------------------
describe('affine quantization (spec §5.2)', () => {
  const example = Float32Array.from({ length: 32 }, (_, j) => (j - 10) * 0.01);
  const u16 = (b: Uint8Array) => [...new Uint16Array(b.slice().buffer)];

  test('spec §5.3 worked example, 4-bit', () => {
    const r = quantizeAffine(example, 1, 32, 4, 32);
    assert.deepEqual([...r.codes], [15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 10, 9, 9, 8, 8, 7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0]);
    assert.deepEqual(u16(r.scales), [0xbcac]);
    assert.deepEqual(u16(r.biases), [0x3e57]);
    assert.ok(Math.abs(bf16BitsToF32(0xbcac) - -0.020996094) < 1e-9);
    assert.ok(Math.abs(bf16BitsToF32(0x3e57) - 0.20996094) < 1e-8);
    assert.deepEqual([...r.weight], [0xbccddeef, 0x8899aaab, 0x44556677, 0x00112233]);
    const w = dequantizeAffine(r.weight, r.scales, r.biases, 1, 32, 4, 32, 'bf16');
    assert.ok(Math.abs(w[0] - -0.10498) < 1e-5, `element 0 decodes to ${w[0]}`);
  });

  test('spec §5.3 worked example, 3-bit', () => {
    const r = quantizeAffine(example, 1, 32, 3, 32);
    assert.deepEqual([...r.codes], [7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 5, 4, 4, 4, 4, 3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0]);
    assert.deepEqual(u16(r.scales), [0xbd2c]);
    assert.deepEqual(u16(r.biases), [0x3e57]);
    assert.ok(Math.abs(bf16BitsToF32(0xbd2c) - -0.041992188) < 1e-9);
    assert.deepEqual([...r.weight], [0x6ddb6fff, 0x36dc925b, 0x00124a49]);
    assert.equal(r.weight[0] & 0xffffff, 0xdb6fff);
    assert.equal(r.weight[0] >>> 24, 0x6d);
  });

  test('rint rounds half to even', () => {
    assert.deepEqual([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4999, -2.5001].map(rint), [-2, -2, -0, 0, 2, 2, 2, -3]);
  });

  for (const bits of [2, 3, 4, 5, 6, 8]) {
    for (const group of [32, 64, 128]) {
      test(`error bound ${bits}-bit group ${group}`, () => {
        const rows = 16;
        const cols = 2 * group;
        const n = (1 << bits) - 1;
        const u = rng(bits * 7 + group);
        const w = gaussians(rows * cols, bits * 31 + group);
        // Some groups entirely one-signed or skewed so both anchors (and negative scales) occur.
        for (let i = 0; i < group; i++) w[i] = Math.abs(w[i]) + 0.5;
        for (let i = group; i < 2 * group; i++) w[i] = -Math.abs(w[i]) - 0.1;
        for (let i = 2 * group; i < 3 * group; i++) w[i] = u() ** 3;
        const r = quantizeAffine(w, rows, cols, bits, group);
        const d = dequantizeAffine(r.weight, r.scales, r.biases, rows, cols, bits, group, 'bf16');
        for (let g = 0; g < (rows * cols) / group; g++) {
          const { scale, bias } = affineGroupParams(w.subarray(g * group, (g + 1) * group), bits);
          for (let j = 0; j < group; j++) {
            const i = g * group + j;
            const unclamped = rint(Math.fround(Math.fround(w[i] - bias) / scale));
            // The refit scale is up to one step narrower than the range, so the far extreme may clamp at n:
            // there the error is up to |s| instead of |s|/2. The low end never clamps (q = 0 is the anchor).
            assert.ok(unclamped >= 0, `group ${g}: code below 0 (${unclamped})`);
            const grid = unclamped > n ? Math.abs(scale) : Math.abs(scale) / 2;
            const bf16 = 2 ** -8 * (Math.abs(scale) * r.codes[i] + Math.abs(bias));
            const err = Math.abs(w[i] - d[i]);
            assert.ok(err <= grid + bf16 + 1e-6, `row ${Math.floor(i / cols)} col ${i % cols}: |${w[i]} − ${d[i]}| = ${err} > ${grid} + ${bf16}`);
          }
        }
      });
    }
  }

  test('anchor, negative scale, constant and zero groups', () => {
    const pos = Float32Array.from({ length: 32 }, (_, j) => j / 31); // |max| > |min| → negative scale, q=0 ↔ max
    const rp = quantizeAffine(pos, 1, 32, 4, 32);
    const sp = decodeFloats(rp.scales, 'BF16')[0];
    assert.ok(sp < 0, `scale ${sp} should be negative`);
    assert.equal(rp.codes[31], 0);
    const neg = Float32Array.from({ length: 32 }, (_, j) => -j / 31); // |min| > |max| → positive scale
    assert.ok(decodeFloats(quantizeAffine(neg, 1, 32, 4, 32).scales, 'BF16')[0] > 0);
    const c = new Float32Array(32).fill(0.3);
    const rc = quantizeAffine(c, 1, 32, 4, 32);
    assert.ok(rc.codes.every((q) => q === 0));
    const dc = dequantizeAffine(rc.weight, rc.scales, rc.biases, 1, 32, 4, 32, 'bf16');
    assert.ok(dc.every((v) => Math.abs(v - 0.3) < 2e-3));
    const z = quantizeAffine(new Float32Array(64), 1, 64, 3, 64);
    assert.deepEqual(decodeFloats(z.biases, 'BF16')[0], 0);
    assert.ok(dequantizeAffine(z.weight, z.scales, z.biases, 1, 64, 3, 64).every((v) => v === 0));
  });

  test('scale dtype option f16 / f32', () => {
    const w = gaussians(2 * 64, 5);
    for (const dt of ['f16', 'f32'] as const) {
      const r = quantizeAffine(w, 2, 64, 4, 64, dt);
      assert.equal(r.scales.byteLength, 2 * (dt === 'f16' ? 2 : 4));
      const d = dequantizeAffine(r.weight, r.scales, r.biases, 2, 64, 4, 64, dt);
      const maxErr = maxAbsDiff(w, d);
      assert.ok(maxErr < 0.5, `${dt}: max error ${maxErr}`);
    }
  });

  test('validation errors', () => {
    const w = new Float32Array(96);
    assert.throws(() => quantizeAffine(w, 1, 96, 4, 64), /cols 96 is not a multiple of the group size 64/);
    assert.throws(() => quantizeAffine(new Float32Array(48), 1, 48, 4, 48), /unsupported group size 48/);
    assert.throws(() => quantizeAffine(new Float32Array(64), 1, 64, 7, 64), /unsupported bits 7/);
    assert.throws(() => quantizeAffine(new Float32Array(60), 1, 64, 4, 64), /expected 1·64 = 64 weights, found 60/);
    assert.throws(() => quantizeAffine(Float32Array.of(NaN, ...new Array(63).fill(0)), 1, 64, 4, 64), /non-finite weight NaN/);
    const r = quantizeAffine(new Float32Array(128), 1, 128, 4, 64);
    assert.throws(() => dequantizeAffine(r.weight, r.scales, r.biases.subarray(2), 1, 128, 4, 64), /expected 2 scales and biases .* found 2 scales and 1 biases/);
  });
});

// ------------------------------------------------------------------------------------------------------------
function tensorData(name: string, dtype: 'BF16' | 'F32' | 'U32', shape: number[]): TensorData {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: new Uint8Array(n * (dtype === 'BF16' ? 2 : 4)).map((_, i) => i & 0xff) };
}

function oneFile(bytes: Uint8Array, name = 'x.safetensors'): ByteSource {
  return memorySource(new Map([[name, bytes]]), 'mem');
}

function headerOf(file: Uint8Array): { len: number; json: Record<string, any> } {
  const len = new DataView(file.buffer, file.byteOffset).getUint32(0, true);
  return { len, json: JSON.parse(dec.decode(file.subarray(8, 8 + len))) };
}

/** Same data, new header JSON (re-padded). */
function withHeader(file: Uint8Array, edit: (h: Record<string, any>) => void): Uint8Array {
  const { len, json } = headerOf(file);
  edit(json);
  let h = enc.encode(JSON.stringify(json));
  const pad = (8 - (h.length % 8)) % 8;
  h = Uint8Array.from([...h, ...new Array(pad).fill(0x20)]);
  const out = new Uint8Array(8 + h.length + file.length - 8 - len);
  new DataView(out.buffer).setUint32(0, h.length, true);
  out.set(h, 8);
  out.set(file.subarray(8 + len), 8 + h.length);
  return out;
}

describe('safetensors', () => {
  const good = () => writeSafetensors([tensorData('a.weight', 'BF16', [4, 8]), tensorData('b.A_log', 'F32', [3]), tensorData('c.weight', 'U32', [2, 2])]);

  test('writer: header padded with spaces to 8, data aligned, metadata {format: mlx}, round trip', async () => {
    const f = good();
    const { len, json } = headerOf(f);
    assert.equal(len % 8, 0);
    assert.match(dec.decode(f.subarray(8, 8 + len)), /} *$/);
    assert.deepEqual(json.__metadata__, { format: 'mlx' });
    const h = await parseSafetensorsHeader('x.safetensors', oneFile(f));
    assert.deepEqual([...h.tensors.keys()].sort(), ['a.weight', 'b.A_log', 'c.weight']);
    for (const e of h.tensors.values()) assert.equal(e.begin % (e.dtype === 'BF16' ? 2 : 4), 0);
    const a = h.tensors.get('a.weight')!;
    assert.deepEqual(a.shape, [4, 8]);
    assert.deepEqual(f.subarray(a.begin, a.end), tensorData('a.weight', 'BF16', [4, 8]).data);
    assert.throws(() => writeSafetensors([{ ...tensorData('a', 'BF16', [2]), shape: [3] }]), /"a" BF16 \[3\] needs 6 bytes, got 4/);
  });

  test('file shorter than 8 bytes', async () => {
    await assert.rejects(parseSafetensorsHeader('tiny.safetensors', oneFile(new Uint8Array(5), 'tiny.safetensors')),
      /tiny\.safetensors: file is 5 bytes, shorter than the 8-byte/);
  });

  test('header length beyond the file, and absurd', async () => {
    const f = good();
    new DataView(f.buffer).setUint32(0, f.length, true);
    await assert.rejects(parseSafetensorsHeader('x.safetensors', oneFile(f)), /x\.safetensors: header length field says \d+ bytes but the file has only \d+ bytes/);
    new DataView(f.buffer).setUint32(4, 7, true);
    await assert.rejects(parseSafetensorsHeader('x.safetensors', oneFile(f)), /x\.safetensors: header length field says \d+ bytes, expected at most 104857600/);
  });

  test('broken JSON', async () => {
    const f = good();
    f[8 + 5] = 0x7b; // '{' inside a key
    f[8] = 0x5b; // '[' instead of '{'
    await assert.rejects(parseSafetensorsHeader('x.safetensors', oneFile(f)), /x\.safetensors: header is not valid UTF-8 JSON/);
  });

  test('unknown dtype', async () => {
    const f = withHeader(good(), (h) => { h['a.weight'].dtype = 'Q4'; });
    await assert.rejects(parseSafetensorsHeader('x.safetensors', oneFile(f)), /x\.safetensors: tensor "a\.weight": unknown dtype "Q4" \(expected one of BOOL, U8/);
  });

  test('data_offsets out of range (truncated data)', async () => {
    const f = good();
    await assert.rejects(parseSafetensorsHeader('x.safetensors', oneFile(f.subarray(0, f.length - 10))),
      /x\.safetensors: tensor "[a-c][.\w]+": data_offsets \[\d+, \d+\] run past the end of the data section \(\d+ bytes; truncated file\?\)/);
  });

  test('data_offsets inconsistent with dtype × shape', async () => {
    const f = withHeader(good(), (h) => { h['a.weight'].shape = [4, 9]; });
    await assert.rejects(parseSafetensorsHeader('x.safetensors', oneFile(f)), /x\.safetensors: tensor "a\.weight": data_offsets \[\d+, \d+\] cover 64 bytes but BF16 \[4, 9\] needs 72/);
    const g = withHeader(good(), (h) => { h['a.weight'].data_offsets = [8, 4]; });
    await assert.rejects(parseSafetensorsHeader('x.safetensors', oneFile(g)), /tensor "a\.weight": data_offsets \[8, 4\] has begin after end/);
    const k = withHeader(good(), (h) => { h['a.weight'].shape = [4, -8]; });
    await assert.rejects(parseSafetensorsHeader('x.safetensors', oneFile(k)), /tensor "a\.weight": shape must be an array of non-negative integers, found \[4,-8\]/);
  });
});

// ------------------------------------------------------------------------------------------------------------
const TEXT = {
  model_type: 'qwen3_5_text', hidden_size: 256, intermediate_size: 512, num_hidden_layers: 8, num_attention_heads: 4,
  num_key_value_heads: 2, head_dim: 64, linear_num_key_heads: 2, linear_num_value_heads: 4, linear_key_head_dim: 32,
  linear_value_head_dim: 32, linear_conv_kernel_dim: 4, rms_norm_eps: 1e-6, vocab_size: 1024,
};
const LT = ['linear_attention', 'linear_attention', 'linear_attention', 'full_attention'];
const ROPE = { rope_type: 'default', rope_theta: 1e7, partial_rotary_factor: 0.25 };

describe('config.json variants (spec §1)', () => {
  test('text_config nested vs flat give the same model', () => {
    const nested = parseConfig({ model_type: 'qwen3_5', text_config: { ...TEXT, layer_types: [...LT, ...LT], rope_parameters: ROPE } });
    const flat = parseConfig({ ...TEXT, model_type: 'qwen3_5_text', layer_types: [...LT, ...LT], rope_parameters: ROPE });
    assert.deepEqual({ ...flat, modelType: '' }, { ...nested, modelType: '' });
    assert.equal(nested.hiddenSize, 256);
    assert.equal(nested.rotaryDim, 16);
  });

  test('layer_types vs full_attention_interval', () => {
    const a = parseConfig({ text_config: { ...TEXT, layer_types: [...LT, ...LT], rope_parameters: ROPE } });
    const b = parseConfig({ text_config: { ...TEXT, full_attention_interval: 4, rope_parameters: ROPE } });
    const c = parseConfig({ text_config: { ...TEXT, rope_parameters: ROPE } }); // interval defaults to 4
    assert.deepEqual(a.layerTypes, b.layerTypes);
    assert.deepEqual(a.layerTypes, c.layerTypes);
    assert.deepEqual(a.layerTypes.map((t, i) => (t === 'full_attention' ? i : -1)).filter((i) => i >= 0), [3, 7]);
    assert.throws(() => parseConfig({ text_config: { ...TEXT, layer_types: LT } }), /layer_types has 4 entries but num_hidden_layers is 8/);
  });

  test('rope settings in rope_parameters, directly in text_config, or next to text_config', () => {
    const inParams = parseConfig({ text_config: { ...TEXT, rope_parameters: ROPE } });
    const direct = parseConfig({ text_config: { ...TEXT, rope_theta: 1e7, partial_rotary_factor: 0.25 } });
    const top = parseConfig({ rope_parameters: ROPE, text_config: { ...TEXT } });
    for (const c of [direct, top]) {
      assert.equal(c.ropeTheta, inParams.ropeTheta);
      assert.equal(c.rotaryDim, inParams.rotaryDim);
    }
    assert.equal(inParams.ropeTheta, 1e7);
    assert.throws(() => parseConfig({ text_config: { ...TEXT, rope_parameters: { ...ROPE, rope_type: 'yarn' } } }), /rope type "yarn" is not supported/);
  });

  test('tie rule: text_config first, then top level, default false', () => {
    const tie = (top: unknown, text: unknown) => parseConfig({
      ...(top === undefined ? {} : { tie_word_embeddings: top }),
      text_config: { ...TEXT, rope_parameters: ROPE, ...(text === undefined ? {} : { tie_word_embeddings: text }) },
    }).tieWordEmbeddings;
    assert.equal(tie(true, false), false);
    assert.equal(tie(false, true), true);
    assert.equal(tie(true, undefined), true);
    assert.equal(tie(undefined, undefined), false);
  });

  test('quantization block: either alias, text_config fallback, divergent copies rejected', () => {
    const q = { group_size: 64, bits: 4, 'language_model.model.layers.0.mlp.down_proj': { bits: 6, group_size: 32 } };
    const base = { text_config: { ...TEXT, rope_parameters: ROPE } };
    const a = parseConfig({ ...base, quantization: q }).quantization!;
    const b = parseConfig({ ...base, quantization_config: q }).quantization!;
    const c = parseConfig({ text_config: { ...base.text_config, quantization_config: q } }).quantization!;
    for (const x of [a, b, c]) {
      assert.deepEqual(x.defaults, { mode: 'affine', bits: 4, groupSize: 64 });
      assert.deepEqual(x.overrides.get('layers.0.mlp.down_proj'), { mode: 'affine', bits: 6, groupSize: 32 });
    }
    assert.throws(() => parseConfig({ ...base, quantization: q, quantization_config: { ...q, bits: 8 } }), /"quantization" and "quantization_config" differ/);
  });

  test('an override dict without group_size takes MLX\'s mode default (64), not the global value', () => {
    const c = parseConfig({ text_config: { ...TEXT, rope_parameters: ROPE }, quantization: { group_size: 32, bits: 4, 'model.language_model.lm_head': { bits: 6 } } });
    assert.deepEqual(c.quantization!.overrides.get('lm_head'), { mode: 'affine', bits: 6, groupSize: 64 });
  });

  test('unsupported bits / group / mode in the quantization block', () => {
    const base = { text_config: { ...TEXT, rope_parameters: ROPE } };
    assert.throws(() => parseConfig({ ...base, quantization: { group_size: 64, bits: 7 } }), /quantization defaults: unsupported bits 7 for mode affine \(expected one of 2, 3, 4, 5, 6, 8\)/);
    assert.throws(() => parseConfig({ ...base, quantization: { group_size: 48, bits: 4 } }), /unsupported group_size 48 for mode affine \(expected one of 32, 64, 128\)/);
    assert.throws(() => parseConfig({ ...base, quantization: { group_size: 64, bits: 4, mode: 'q4k' } }), /unsupported quantization mode "q4k"/);
    assert.throws(() => parseConfig({ ...base, quantization: { group_size: 64, bits: 4, 'language_model.model.layers.0.mlp.up_proj': { bits: 4, group_size: 16 } } }),
      /quantization\["language_model\.model\.layers\.0\.mlp\.up_proj"\]: unsupported group_size 16/);
  });

  test('key normalisation strips MLX and HF prefixes, longest first', () => {
    assert.equal(normaliseName('language_model.model.layers.3.mlp.down_proj.weight'), 'layers.3.mlp.down_proj.weight');
    assert.equal(normaliseName('model.language_model.layers.3.mlp.down_proj.weight'), 'layers.3.mlp.down_proj.weight');
    assert.equal(normaliseName('language_model.lm_head.weight'), 'lm_head.weight');
    assert.equal(normaliseName('model.layers.0.input_layernorm.weight'), 'layers.0.input_layernorm.weight');
    assert.equal(normaliseName('model.embed_tokens.weight'), 'embed_tokens.weight');
    assert.equal(normaliseName('lm_head.weight'), 'lm_head.weight');
  });
});

// ------------------------------------------------------------------------------------------------------------
/** Reads every tensor of a single-file checkpoint so a test can edit them and write the checkpoint back. */
async function explode(files: Map<string, Uint8Array>): Promise<{ config: Record<string, any>; tensors: TensorData[] }> {
  const src = memorySource(files);
  const h = await parseSafetensorsHeader('model.safetensors', src);
  const file = files.get('model.safetensors')!;
  const tensors = [...h.tensors].map(([name, e]) => ({ name, dtype: e.dtype, shape: e.shape, data: file.slice(e.begin, e.end) }));
  return { config: JSON.parse(dec.decode(files.get('config.json')!)), tensors };
}

async function edited(
  recipe: Parameters<typeof makeTinyCheckpoint>[0],
  edit: (t: TensorData[], config: Record<string, any>) => TensorData[] | void,
): Promise<ByteSource> {
  const { config, tensors } = await explode(makeTinyCheckpoint(recipe, { seed: 3 }));
  const out = edit(tensors, config) ?? tensors;
  const q = config.quantization ?? null;
  return memorySource(writeCheckpointFiles(config, q, out), `tiny-${recipe}-edited`);
}

const drop = (names: string[]) => (t: TensorData[]) => t.filter((x) => !names.includes(x.name));
const L = 'language_model.model.layers';

describe('checkpoint validation errors name file, tensor, expected and found', () => {
  test('missing tensor', async () => {
    const src = await edited('propc', drop([`${L}.3.self_attn.q_norm.weight`]));
    await assert.rejects(openCheckpoint(src), /model\.safetensors: missing tensor "layers\.3\.self_attn\.q_norm\.weight" \(MLX key "language_model\.model\.layers\.3\.self_attn\.q_norm\.weight"\), expected float \[64\]/);
  });

  test('float shape contradicting config', async () => {
    const src = await edited('bf16', (t) => {
      const i = t.findIndex((x) => x.name === `${L}.0.linear_attn.norm.weight`);
      t[i] = tensorData(t[i].name, 'BF16', [64]);
    });
    await assert.rejects(openCheckpoint(src), /model\.safetensors: tensor "language_model\.model\.layers\.0\.linear_attn\.norm\.weight": expected shape \[32\] from config\.json, found \[64\]/);
  });

  test('config contradicting the stored shapes (intermediate_size)', async () => {
    const src = await edited('propc', (_t, c) => { c.text_config.intermediate_size = 1024; });
    await assert.rejects(openCheckpoint(src), /tensor "language_model\.model\.layers\.0\.mlp\.gate_proj\.weight": expected U32 \[1024, 40\] for 5-bit group 64 \[1024, 256\], found \[512, 40\]/);
  });

  test('wrong dtype of a float tensor', async () => {
    const src = await edited('propc', (t) => {
      const i = t.findIndex((x) => x.name === `${L}.0.linear_attn.A_log`);
      t[i] = tensorData(t[i].name, 'U32', [4]);
    });
    await assert.rejects(openCheckpoint(src), /model\.safetensors: tensor "language_model\.model\.layers\.0\.linear_attn\.A_log": expected a float dtype \(BF16, F16 or F32\) for "layers\.0\.linear_attn\.A_log", found U32/);
  });

  test('bits in config contradicting the packed width', async () => {
    const src = await edited('propc', (_t, c) => { c.quantization[`${L}.0.mlp.down_proj`].bits = 4; });
    await assert.rejects(openCheckpoint(src), /tensor "language_model\.model\.layers\.0\.mlp\.down_proj\.weight": expected U32 \[256, 64\] for 4-bit group 64 \[256, 512\], found \[256, 80\] \(that is 5-bit packing\)/);
  });

  test('.scales present although config marks the module false', async () => {
    const src = await edited('unsloth3', (_t, c) => { c.quantization[`${L}.0.mlp.down_proj`] = false; });
    await assert.rejects(openCheckpoint(src), /tensor "language_model\.model\.layers\.0\.mlp\.down_proj\.scales": config\.json quantization marks "layers\.0\.mlp\.down_proj" as not quantized \(false\), but the checkpoint has its \.scales/);
  });

  test('U32 weight without scales', async () => {
    const src = await edited('propc', drop([`${L}.3.self_attn.o_proj.scales`, `${L}.3.self_attn.o_proj.biases`]));
    await assert.rejects(openCheckpoint(src), /tensor "language_model\.model\.layers\.3\.self_attn\.o_proj\.weight": U32 \(packed\) weight but no quantization applies to "layers\.3\.self_attn\.o_proj" \(no \.scales tensor\); expected a float \[256, 256\]/);
  });

  test('override dict but no .scales', async () => {
    const src = await edited('propc', drop([`${L}.0.mlp.up_proj.scales`]));
    await assert.rejects(openCheckpoint(src), /missing tensor "layers\.0\.mlp\.up_proj\.scales": config\.json says "layers\.0\.mlp\.up_proj" is 5-bit group 64/);
  });

  test('scales without a quantization block', async () => {
    const src = await edited('propc', (_t, c) => { delete c.quantization; delete c.quantization_config; });
    await assert.rejects(openCheckpoint(src), /tensor "language_model\.model\.embed_tokens\.scales": quantized module "embed_tokens" but config\.json has no "quantization" block/);
  });

  test('a config that says mxfp4 / nvfp4 over affine tensors: the mismatch is named, tensor by tensor', async () => {
    const src = await edited('propc', (_t, c) => { c.quantization.mode = 'mxfp4'; c.quantization.bits = 4; c.quantization.group_size = 32; });
    const err = await openCheckpoint(src).then(() => null, (e: Error) => e.message);
    assert.match(err ?? '', /tensor "language_model\.model\.embed_tokens\.weight": expected U32 \[1024, 32\] for mxfp4 \(4-bit group 32\) \[1024, 256\], found \[1024, 64\] \(that is 8-bit packing\)/);
    assert.match(err ?? '', /tensor "language_model\.model\.embed_tokens\.biases": config\.json says "embed_tokens" is mxfp4 \(4-bit group 32\), which has no biases/);
    assert.match(err ?? '', /tensor "language_model\.model\.embed_tokens\.scales": expected U8 \(E8M0 codes\) for mxfp4/);
    const src2 = await edited('propc', (_t, c) => { c.quantization[`${L}.0.mlp.up_proj`] = { mode: 'nvfp4', bits: 4, group_size: 16 }; });
    await assert.rejects(openCheckpoint(src2), /"layers\.0\.mlp\.up_proj" is nvfp4 \(4-bit group 16\), which has no biases/);
  });

  test('unsupported bits in config surface through openCheckpoint', async () => {
    const src = await edited('propc', (_t, c) => { c.quantization[`${L}.0.mlp.up_proj`].bits = 7; });
    await assert.rejects(openCheckpoint(src), /config\.json: quantization\["language_model\.model\.layers\.0\.mlp\.up_proj"\]: unsupported bits 7/);
  });

  test('missing files and broken index', async () => {
    const files = makeTinyCheckpoint('bf16', { seed: 1 });
    const noConfig = new Map(files);
    noConfig.delete('config.json');
    await assert.rejects(openCheckpoint(memorySource(noConfig, 'here')), /config\.json: not found in here/);
    const noWeights = new Map([['config.json', files.get('config.json')!]]);
    await assert.rejects(openCheckpoint(memorySource(noWeights, 'here')), /neither model\.safetensors\.index\.json nor model\.safetensors found in here/);
    const sharded = makeTinyCheckpoint('udq2', { seed: 1 });
    const lost = new Map(sharded);
    lost.delete('model-00002-of-00003.safetensors');
    await assert.rejects(openCheckpoint(memorySource(lost, 'here')), /model-00002-of-00003\.safetensors: listed in model\.safetensors\.index\.json but not found in here/);
    const idx = JSON.parse(dec.decode(sharded.get('model.safetensors.index.json')!));
    const [moved, home] = Object.entries(idx.weight_map as Record<string, string>).find(([, f]) => f !== 'model-00003-of-00003.safetensors')!;
    assert.ok(home);
    idx.weight_map[moved] = 'model-00003-of-00003.safetensors';
    const wrongMap = new Map(sharded);
    wrongMap.set('model.safetensors.index.json', enc.encode(JSON.stringify(idx)));
    const esc = moved.replace(/\./g, '\\.');
    await assert.rejects(openCheckpoint(memorySource(wrongMap, 'here')),
      new RegExp(`weight_map puts "${esc}" in model-00003-of-00003\\.safetensors, but model-00003-of-00003\\.safetensors has no tensor of that name`));
  });

  test('several problems are reported together', async () => {
    const src = await edited('propc', drop([`${L}.3.self_attn.q_norm.weight`, `${L}.3.self_attn.k_norm.weight`]));
    await assert.rejects(openCheckpoint(src), (e: Error) => /2 problems/.test(e.message) && /q_norm/.test(e.message) && /k_norm/.test(e.message));
  });
});

// ------------------------------------------------------------------------------------------------------------
function planBits(ckpt: Checkpoint): Map<string, string> {
  const m = new Map<string, string>();
  for (const [p, plan] of ckpt.modules) m.set(p, plan.kind === 'quant' ? `${plan.bits}/${plan.groupSize}` : `float ${plan.dtype}`);
  return m;
}

describe('quantization plan precedence (spec §5.1)', () => {
  test('override dict > false > presence of .scales → defaults > float, with MLX and HF key prefixes', async () => {
    // Start from an all-float checkpoint and quantize a few modules by hand with different config entries.
    const { tensors } = await explode(makeTinyCheckpoint('bf16', { seed: 2 }));
    const cfg = JSON.parse(dec.decode(makeTinyCheckpoint('bf16', { seed: 2 }).get('config.json')!));
    const quantize = (name: string, bits: number, gs: number) => {
      const i = tensors.findIndex((t) => t.name === `${name}.weight`);
      const [rows, cols] = tensors[i].shape;
      const w = decodeFloats(tensors[i].data, 'BF16');
      const r = quantizeAffine(w, rows, cols, bits, gs);
      tensors.splice(i, 1,
        { name: `${name}.weight`, dtype: 'U32', shape: [rows, (cols * bits) / 32], data: new Uint8Array(r.weight.buffer) },
        { name: `${name}.scales`, dtype: 'BF16', shape: [rows, cols / gs], data: r.scales },
        { name: `${name}.biases`, dtype: 'BF16', shape: [rows, cols / gs], data: r.biases });
    };
    quantize(`${L}.0.mlp.gate_proj`, 6, 32); // override dict (MLX key)
    quantize(`${L}.0.mlp.up_proj`, 4, 64); // no entry, .scales present → defaults
    quantize(`${L}.1.mlp.up_proj`, 5, 128); // override dict (HF key)
    quantize('language_model.model.embed_tokens', 4, 64); // `true` entry → defaults
    const quant = {
      group_size: 64, bits: 4,
      [`${L}.0.mlp.gate_proj`]: { group_size: 32, bits: 6 },
      'model.language_model.layers.1.mlp.up_proj': { group_size: 128, bits: 5 },
      [`${L}.0.mlp.down_proj`]: false, // float weight, marked false
      'language_model.model.embed_tokens': true,
    };
    const ckpt = await openCheckpoint(memorySource(writeCheckpointFiles(cfg, quant, tensors)));
    const bits = planBits(ckpt);
    assert.equal(bits.get('layers.0.mlp.gate_proj'), '6/32');
    assert.equal(bits.get('layers.0.mlp.up_proj'), '4/64');
    assert.equal(bits.get('layers.1.mlp.up_proj'), '5/128');
    assert.equal(bits.get('embed_tokens'), '4/64');
    assert.equal(bits.get('layers.0.mlp.down_proj'), 'float BF16');
    assert.equal(bits.get('layers.1.mlp.gate_proj'), 'float BF16'); // no entry, no scales → float
    // Dequantised values match the float originals within the quantization step.
    const orig = decodeFloats((await explode(makeTinyCheckpoint('bf16', { seed: 2 }))).tensors.find((t) => t.name === `${L}.1.mlp.up_proj.weight`)!.data, 'BF16');
    const deq = await dequantModule(ckpt, 'layers.1.mlp.up_proj');
    const maxErr = maxAbsDiff(deq, orig);
    assert.ok(maxErr < 0.02, `max dequantisation error ${maxErr}`);
  });

  test('tie rule at the checkpoint level', async () => {
    // Config says untied but there is no lm_head → tied (spec §1.1), and the contradiction is reported.
    const untiedCfg = await edited('bf16', (_t, c) => { c.tie_word_embeddings = false; c.text_config.tie_word_embeddings = false; });
    const untied = await openCheckpoint(untiedCfg);
    assert.equal(untied.tied, true);
    assert.match(untied.warnings.join('\n'), /says text_config\.tie_word_embeddings is false, but the checkpoint .* has no lm_head\.weight/);
    // Config says tied but an lm_head exists → tied, lm_head ignored (mlx-lm drops it), and said.
    const extraHead = await edited('propc', (_t, c) => { c.tie_word_embeddings = true; c.text_config.tie_word_embeddings = true; });
    const ck = await openCheckpoint(extraHead);
    assert.equal(ck.tied, true);
    assert.equal(ck.modules.has('lm_head'), false);
    assert.ok(ck.ignored.includes('language_model.lm_head.weight'));
    assert.deepEqual(ck.warnings, ['ignoring language_model.lm_head.weight, language_model.lm_head.scales, language_model.lm_head.biases: text_config.tie_word_embeddings is true, so the output layer reuses embed_tokens (as mlx-lm does)']);
  });
});

// ------------------------------------------------------------------------------------------------------------
describe('published reference checkpoints', () => {
  const expectPlan = (ckpt: Checkpoint, want: (path: string) => string) => {
    for (const [p, plan] of ckpt.modules) {
      if (plan.role !== 'linear' && plan.role !== 'embedding') continue;
      const got = plan.kind === 'quant' ? `${plan.bits}/${plan.groupSize}` : `float ${plan.dtype}`;
      assert.equal(got, want(p), p);
    }
  };
  const leaf = (p: string) => p.slice(p.lastIndexOf('.') + 1);

  /** Plan must also agree with the raw quantization block read directly from config.json. */
  const expectConfigAgrees = async (dir: string, ckpt: Checkpoint) => {
    const raw = JSON.parse(dec.decode(await dirSource(dir).read('config.json', 0, await dirSource(dir).size('config.json'))));
    assert.deepEqual(raw.quantization, raw.quantization_config);
    for (const [p, plan] of ckpt.modules) {
      if (plan.role !== 'linear' && plan.role !== 'embedding') continue;
      const key = p === 'lm_head' ? 'language_model.lm_head' : `language_model.model.${p}`;
      const entry = raw.quantization[key];
      if (entry === false) assert.equal(plan.kind, 'float', p);
      else if (entry) assert.deepEqual([plan.kind, (plan as any).bits, (plan as any).groupSize], ['quant', entry.bits, entry.group_size], p);
      else assert.deepEqual([plan.kind, (plan as any).bits, (plan as any).groupSize], ['quant', raw.quantization.bits, raw.quantization.group_size], p);
    }
  };

  test('pub-propc: embed/lm_head/attention/out_proj 8, in_proj_* 6, MLP 5, group 64, untied', async () => {
    const dir = refDir('pub-propc');
    const ckpt = await openCheckpoint(dirSource(dir));
    assert.equal(ckpt.isMlx, true);
    assert.equal(ckpt.normShift, false);
    assert.equal(ckpt.tied, false);
    assert.equal(ckpt.config.hiddenSize, 192);
    assert.deepEqual(ckpt.config.layerTypes.map((t) => t[0]), ['l', 'l', 'l', 'f', 'l', 'l', 'l', 'f']);
    expectPlan(ckpt, (p) => (leaf(p).startsWith('in_proj_') ? '6/64' : p.includes('.mlp.') ? '5/64' : '8/64'));
    await expectConfigAgrees(dir, ckpt);
    assert.equal((ckpt.modules.get('layers.0.linear_attn.A_log') as ModulePlan & { dtype: string }).dtype, 'F32');
    assert.equal(ckpt.modules.get('layers.0.input_layernorm')!.kind, 'float');
  });

  test('pub-unsloth3: embed 5, lm_head 6, q/k/v 5, in_proj_qkv/z 5, down 4, gate/up 3, rest bf16', async () => {
    const dir = refDir('pub-unsloth3');
    const ckpt = await openCheckpoint(dirSource(dir));
    assert.equal(ckpt.isMlx, true);
    assert.equal(ckpt.tied, false);
    assert.equal(ckpt.config.quantization!.defaults.mode, 'affine'); // no "mode" key → affine
    const want: Record<string, string> = {
      embed_tokens: '5/64', lm_head: '6/64', q_proj: '5/64', k_proj: '5/64', v_proj: '5/64', in_proj_qkv: '5/64', in_proj_z: '5/64',
      down_proj: '4/64', gate_proj: '3/64', up_proj: '3/64', o_proj: 'float BF16', out_proj: 'float BF16', in_proj_a: 'float BF16', in_proj_b: 'float BF16',
    };
    expectPlan(ckpt, (p) => want[leaf(p)]);
    await expectConfigAgrees(dir, ckpt);
    assert.equal((ckpt.modules.get('layers.0.linear_attn.A_log') as ModulePlan & { dtype: string }).dtype, 'BF16');
    assert.equal((ckpt.modules.get('layers.0.linear_attn.conv1d') as ModulePlan & { dtype: string }).dtype, 'BF16');
  });

  test('reference weights have the documented shapes and sane values', async () => {
    const ckpt = await openCheckpoint(dirSource(refDir('pub-propc')));
    const w = await referenceWeights(ckpt);
    const c = ckpt.config;
    assert.equal(w.get('embed_tokens')!.length, c.vocabSize * c.hiddenSize);
    assert.equal(w.get('lm_head')!.length, c.vocabSize * c.hiddenSize);
    assert.equal(w.get('layers.0.linear_attn.conv1d')!.length, 128 * 4);
    assert.equal(w.get('layers.0.linear_attn.A_log')!.length, 2);
    assert.equal(w.get('layers.3.self_attn.q_proj')!.length, 384 * 192);
    const gain = w.get('layers.0.input_layernorm')!;
    const mean = gain.reduce((a, b) => a + b, 0) / gain.length;
    assert.ok(mean > 0.5 && mean < 1.5, `MLX norm gains are stored with the +1 (mean ${mean})`);
    for (const [k, v] of w) assert.ok(v.every(Number.isFinite), k);
    const a = await loadFloat(ckpt, 'language_model.model.layers.0.linear_attn.A_log');
    assert.deepEqual(a, w.get('layers.0.linear_attn.A_log'));
    const s = summarizeCheckpoint(ckpt);
    assert.equal(s.totalBytes, Object.values(s.bytesByKind).reduce((x, y) => x + y, 0));
    assert.ok(s.bytesByKind['affine 5-bit g64'] > 0);
    assert.equal(s.modules.find((m) => m.path === 'layers.0.mlp.down_proj')!.bits, 5);
  });
});

// ------------------------------------------------------------------------------------------------------------
describe('byte sources', () => {
  test('dirSource reads ranges and names a missing file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'qwen-fs-'));
    try {
      await writeFile(path.join(dir, 'a.bin'), Uint8Array.from({ length: 100 }, (_, i) => i));
      const src = dirSource(dir);
      assert.equal(await src.size('a.bin'), 100);
      assert.deepEqual([...(await src.read('a.bin', 10, 5))], [10, 11, 12, 13, 14]);
      await assert.rejects(src.size('nope.json'), (e: any) => e.notFound === true && /nope\.json: not found in /.test(e.message));
      await assert.rejects(src.read('a.bin', 98, 5), /wanted 5 bytes at offset 98, the file ends after 2/);
      await assert.rejects(src.read('../x', 0, 1), /refusing a file name outside/);
    } finally {
      await rm(dir, { recursive: true });
    }
  });

  /** A tiny static server; `ranges: false` imitates servers that ignore Range and always send the whole file. */
  async function serve(files: Map<string, Uint8Array>, ranges: boolean) {
    const log: string[] = [];
    const server = http.createServer((req, res) => {
      const name = decodeURIComponent(req.url!.replace(/^\/m\//, ''));
      log.push(`${req.method} ${name} ${req.headers.range ?? ''}`);
      const f = files.get(name);
      if (!f) { res.statusCode = 404; res.end('no'); return; }
      const m = ranges ? /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '') : null;
      if (m) {
        const a = Number(m[1]);
        const b = Math.min(Number(m[2]), f.length - 1);
        res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${f.length}`, 'content-length': b - a + 1 });
        res.end(req.method === 'HEAD' ? undefined : f.subarray(a, b + 1));
      } else {
        res.writeHead(200, { 'content-length': f.length });
        res.end(req.method === 'HEAD' ? undefined : f);
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    return { url: `http://127.0.0.1:${port}/m`, log, close: () => new Promise<void>((r) => server.close(() => r())) };
  }

  for (const ranges of [true, false]) {
    test(`httpSource opens a sharded checkpoint (server ${ranges ? 'honours' : 'ignores'} Range)`, async () => {
      const files = makeTinyCheckpoint('udq2', { seed: 4 });
      const s = await serve(files, ranges);
      try {
        const ckpt = await openCheckpoint(httpSource(s.url));
        const ref = await openCheckpoint(memorySource(files));
        const a = await dequantModule(ckpt, 'layers.0.mlp.down_proj');
        assert.deepEqual(a, await dequantModule(ref, 'layers.0.mlp.down_proj'));
        const fullGets = s.log.filter((l) => l.startsWith('GET') && l.endsWith(' ')).map((l) => l.split(' ')[1]);
        if (ranges) {
          assert.equal(fullGets.filter((f) => f.endsWith('.safetensors')).length, 0, 'no whole-shard downloads');
        } else {
          // Each file downloaded at most once, then sliced from memory.
          assert.equal(new Set(fullGets).size, fullGets.length, s.log.join('\n'));
        }
        const src = httpSource(s.url);
        await assert.rejects(src.size('missing.json'), (e: any) => e.notFound === true && /missing\.json: not found in http:/.test(e.message));
      } finally {
        await s.close();
      }
    });
  }

  test('httpSource size falls back to Range bytes=0-0 when HEAD has no length', async () => {
    const body = Uint8Array.from({ length: 50 }, (_, i) => i);
    const fakeFetch = async (url: string | URL | Request, init?: RequestInit): Promise<Response> => {
      if (init?.method === 'HEAD') return new Response(null, { status: 405 });
      const range = (init?.headers as Record<string, string>)?.Range;
      const m = /bytes=(\d+)-(\d+)/.exec(range ?? '')!;
      const a = Number(m[1]);
      const b = Number(m[2]);
      return new Response(body.slice(a, b + 1), { status: 206, headers: { 'content-range': `bytes ${a}-${b}/${body.length}` } });
    };
    const src = httpSource('https://example.invalid/repo', { fetch: fakeFetch as typeof fetch });
    assert.equal(await src.size('f.bin'), 50);
    assert.deepEqual([...(await src.read('f.bin', 48, 2))], [48, 49]);
  });
});

test('configJson writes both quantization aliases', () => {
  const j = JSON.parse(configJson({ model_type: 'qwen3_5' }, { bits: 4, group_size: 64 }));
  assert.deepEqual(j.quantization, { bits: 4, group_size: 64 });
  assert.deepEqual(j.quantization_config, j.quantization);
  assert.equal('quantization' in JSON.parse(configJson({ model_type: 'qwen3_5', quantization: { bits: 4 } }, null)), false);
});
