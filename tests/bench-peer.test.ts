// The bench's peer (src/bench/peer-ort.ts) without a browser: the MatMulNBits reference against hand-worked sums,
// the hand-written ONNX encoder read back by ONNX Runtime Web itself (its wasm EP runs in Node) and agreeing with
// the reference for both zero-point forms and the many-node model, and the peer lines of the text report.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-web';
import { encodeMatMulNBitsModel, matMulNBitsRows, peerCases, randomNBits, runOrtPeer, type NBitsWeights } from '../src/bench/peer-ort.ts';
import { formatReport, NO_PEER_NOTE, peerComparisons, type BenchReport, type KernelRow } from '../src/bench/report.ts';
import { randomFloats, relativeMaxError } from '../src/bench/data.ts';

/** K 32 (one block), N 2: row 0 codes 1, 2, 1, 2, ... (bytes 0x21), row 1 codes 0, 15, ... (bytes 0xf0). */
function handWeights(zeroPoints: boolean): NBitsWeights {
  const B = new Uint8Array(32);
  B.fill(0x21, 0, 16);
  B.fill(0xf0, 16, 32);
  return { K: 32, N: 2, bits: 4, blockSize: 32, B, scales: Float32Array.of(0.5, 0.25), ...(zeroPoints ? { zeroPoints: Uint8Array.of(3, 10) } : {}) };
}

test('MatMulNBits reference: hand-worked sums, low nibble first, zero points packed or the default 8', () => {
  const ones = new Float32Array(32).fill(1);
  // Row 0: 16 · (1 − 3) · 0.5 + 16 · (2 − 3) · 0.5 = −24; row 1: 16 · (0 − 10) · 0.25 + 16 · (15 − 10) · 0.25 = −20.
  assert.deepEqual([...matMulNBitsRows(ones, handWeights(true), [0, 1])], [-24, -20]);
  // Zero point 8: 16 · (1 − 8) · 0.5 + 16 · (2 − 8) · 0.5 = −104; 16 · (0 − 8) · 0.25 + 16 · (15 − 8) · 0.25 = −4.
  assert.deepEqual([...matMulNBitsRows(ones, handWeights(false), [1, 0])], [-4, -104]);
  // x picks one k: k = 1 (odd: the high nibble) of row 0, block 0.
  const e1 = new Float32Array(32);
  e1[1] = 1;
  assert.deepEqual([...matMulNBitsRows(e1, handWeights(true), [0])], [(2 - 3) * 0.5]);
  // Two blocks per row, two zero points in one byte: block 1's is the high nibble.
  const w2: NBitsWeights = { K: 64, N: 1, bits: 4, blockSize: 32, B: new Uint8Array(32).fill(0x55), scales: Float32Array.of(1, 2), zeroPoints: Uint8Array.of(0x74) };
  assert.deepEqual([...matMulNBitsRows(new Float32Array(64).fill(1), w2, [0])], [32 * (5 - 4) * 1 + 32 * (5 - 7) * 2]);
});

async function runModel(w: NBitsWeights, x: Float32Array, nodes: number): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(encodeMatMulNBitsModel(w, { nodes }), { executionProviders: ['wasm'] });
  try {
    const a = new ort.Tensor('float32', x, [1, w.K]);
    const feeds = Object.fromEntries(Array.from({ length: nodes }, (_, i) => [nodes === 1 ? 'A' : `A${i}`, a]));
    assert.deepEqual(session.inputNames, Object.keys(feeds));
    assert.deepEqual(session.outputNames, ['Y']);
    const out = await session.run(feeds);
    assert.deepEqual(out.Y.dims, [1, w.N]);
    return out.Y.data as Float32Array;
  } finally {
    await session.release();
  }
}

test('the encoded model runs in ONNX Runtime (wasm EP) and matches the reference', { timeout: 120_000 }, async () => {
  const ones = new Float32Array(32).fill(1);
  assert.deepEqual([...await runModel(handWeights(true), ones, 1)], [-24, -20]);
  assert.deepEqual([...await runModel(handWeights(false), ones, 1)], [-104, -4]);
  const rows = Array.from({ length: 96 }, (_, i) => i);
  for (const [zeroPoints, nodes] of [[true, 1], [false, 1], [true, 3]] as const) {
    const w = randomNBits(256, 96, 32, zeroPoints, 7);
    const x = randomFloats(256, 8);
    const want = matMulNBitsRows(x, w, rows).map((v) => v * nodes);
    const err = relativeMaxError(await runModel(w, x, nodes), want);
    assert.ok(err < 1e-5, `zero points ${zeroPoints}, ${nodes} nodes: max err ${err}`);
  }
});

test('runOrtPeer: a checked, timed row on the wasm EP; a failing EP is named in the note', { timeout: 120_000 }, async () => {
  const r = await runOrtPeer(ort, 100, { cases: peerCases('tiny'), executionProviders: ['no-such-ep', 'wasm'], runs: 3 });
  assert.match(r.name, /^ONNX Runtime Web \S+ MatMulNBits \(wasm EP\)$/);
  assert.equal(r.rows.length, 1);
  const row = r.rows[0];
  assert.deepEqual([row.kernel, row.shape, row.bits, row.groupSize, row.copies, row.checked], ['MatMulNBits', 'M1 K256 N96', 4, 32, 1, 48]);
  assert.ok(row.maxErr < 1e-5 && row.medianMs > 0 && row.gbps > 0, JSON.stringify(row));
  assert.equal(row.bytes, (256 * 96) / 2 + 96 * 8 * 4 + 96 * 4);
  assert.match(r.note!, /no-such-ep EP failed: /);
  assert.match(r.note!, /wasm EP: M1 K256 N96 \d+ nodes?\/run/);
});

test('runOrtPeer: an EP that never answers is given up after timeoutMs and named; the next EP still runs', { timeout: 120_000 }, async () => {
  // An InferenceSession.create that never settles for the "stuck" EP, as ORT does when a wasm thread cannot start.
  const create = ort.InferenceSession.create.bind(ort.InferenceSession) as (...a: unknown[]) => Promise<unknown>;
  const stuck = {
    ...ort,
    InferenceSession: {
      create: (model: unknown, o: { executionProviders?: string[] }) =>
        (o?.executionProviders?.includes('stuck') ? new Promise(() => {}) : create(model, o)),
    },
  } as unknown as typeof ort;
  const t0 = Date.now();
  const r = await runOrtPeer(stuck, 100, { cases: peerCases('tiny'), executionProviders: ['stuck', 'wasm'], runs: 3, timeoutMs: 1500 });
  assert.ok(Date.now() - t0 < 60_000);
  assert.match(r.note!, /stuck EP failed: stuck EP K256 N96: no result after 2 s/);
  assert.match(r.name, /\(wasm EP\)$/);
  assert.equal(r.rows.length, 1);
});

test('report: the peer table and the comparison with our row of the same shape and group size', () => {
  const row = (kernel: string, groupSize: number, medianMs: number): KernelRow => ({
    kernel, shape: 'M1 K5120 N17408', bits: 4, groupSize, medianMs, gbps: 1, pctCeiling: 1, maxErr: 1e-7,
    dims: '27B mlp', bytes: 1, copies: 1, checked: 48, timing: 'wall',
  });
  const report: BenchReport = {
    adapter: 'a', ceilingGBps: 1, copyGBps: 1, rows: [row('matvec', 64, 2), row('matvec', 32, 3)],
    peer: { name: 'ONNX Runtime Web 1.31.1 MatMulNBits (wasm EP)', rows: [row('MatMulNBits', 32, 6)], note: 'n' }, model: null,
    meta: { preset: 'quick', timing: 'wall', cpuAdapter: true, features: [], ceilingWorkingSetBytes: 0, ceilingVerified: true, ceilingWordsPerInvocation: 4, date: '', seconds: 1 },
  };
  const [c] = peerComparisons(report);
  assert.equal(c.ours.groupSize, 32, 'the g32 row, not the first');
  assert.equal(c.speedup, 2);
  const text = formatReport(report);
  assert.match(text, /\npeer: ONNX Runtime Web 1\.31\.1 MatMulNBits \(wasm EP\) \(n\)\n/);
  assert.match(text, /\nMatMulNBits\s+27B mlp\s+M1 K5120 N17408\s+4\s+32\s+6\.00/);
  assert.match(text, /\n {2}M1 K5120 N17408 4-bit: ours \(g32\) 3\.00 ms, peer \(g32\) 6\.00 ms: ours 2\.00× faster$/);
  assert.ok(formatReport({ ...report, peer: null }).endsWith(`peer: ${NO_PEER_NOTE}`));
});
