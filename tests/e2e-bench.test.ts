// Browser end to end for the kernel benchmarks page: the built demo in Debian Chromium (SwiftShader WebGPU), the
// tests' toy suite (?preset=tiny&model=0&autorun=1). The page must show the adapter and its limits, render one table
// row and one chart bar per kernel with every kernel agreeing with its CPU reference, a peer row (ONNX Runtime Web's
// MatMulNBits, its wasm binary served from the built site) agreeing with its float64 reference, and run a kernel alone.
// Screenshot: test-output/screenshots/bench.png.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdirSync, readFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { buildForTests, CONTENT_TYPES, launchChromium, siteFile } from './browser.ts';
import { kernelCases } from '../src/bench/shapes.ts';
import { isBenchRequest, ISOLATION_HEADERS } from '../vite.config.ts';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const site = join(root, 'dist/demo');
const shots = join(root, 'test-output/screenshots');

let server: Server;
let origin: string;
let browser: Browser;

before(async () => {
  buildForTests(root, 'demo');
  mkdirSync(shots, { recursive: true });
  server = createServer((req, res) => {
    const file = siteFile(site, decodeURIComponent(new URL(req.url!, 'http://x').pathname));
    if (file === 403) { res.writeHead(403).end(); return; }
    if (file === 404) { res.writeHead(404).end('not found'); return; }
    // application/wasm: ORT's binary compiles while streaming only under that type.
    const type = extname(file) === '.wasm' ? 'application/wasm' : CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
    // The bench page cross-origin isolated, as the dev server serves it (vite.config.ts): ORT's wasm EP threads.
    const isolation = isBenchRequest(req.url!, req.headers.referer) ? ISOLATION_HEADERS : {};
    res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store', ...isolation });
    res.end(readFileSync(file));
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.close();
});

test('bench page: adapter and limits, the table and the chart of the toy suite, the ORT peer, then one kernel alone', { timeout: 300_000 }, async () => {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') console.log(`page ${m.type()}: ${m.text()}`); });
  try {
    const expected = kernelCases('tiny').length;
    await page.goto(`${origin}/bench.html?preset=tiny&model=0&autorun=1`);
    await page.waitForFunction(() => document.body.dataset.state, null, { timeout: 240_000 });
    assert.equal(await page.textContent('#error'), '', 'the page shows an error');
    assert.equal(await page.evaluate(() => document.body.dataset.state), 'done');

    assert.match((await page.textContent('#caps'))!, /subgroups (yes|no) · timestamp-query (yes|no)/);
    const limits = await page.$$eval('#limits-body tr', (trs) => trs.map((tr) => tr.textContent ?? ''));
    assert.ok(limits.some((t) => t.startsWith('maxStorageBufferBindingSize')), `limits listed: ${limits.length} rows`);

    // The table: one row per kernel, every cell filled, the max error column small (kernel vs CPU reference).
    const table = await page.$$eval('#results-body tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent ?? '')));
    assert.equal(table.length, expected);
    const head = await page.$$eval('#results-head th', (ths) => ths.map((th) => th.textContent));
    const col = (name: string) => head.indexOf(name);
    for (const r of table) {
      assert.ok(Number(r[col('max err')]) <= 1e-4, `max err of ${r.join(' | ')}`);
      assert.ok(Number(r[col('GB/s')]) > 0 && Number(r[col('% ceiling')]) >= 0, `GB/s and % ceiling of ${r.join(' | ')}`);
    }
    assert.deepEqual(table.map((r) => r[col('kernel')]), ['matvec', 'matvec', 'matvec', 'matvec-mt', 'gemm', 'gatedDelta', 'attention', 'rmsNorm']);

    // The chart: one bar per row, and something actually drawn in the bar colours.
    assert.equal(await page.getAttribute('#chart', 'data-bars'), String(expected));
    const colouredPixels = await page.$eval('#chart', (c) => {
      const canvas = c as HTMLCanvasElement;
      const d = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height).data;
      let n = 0;
      // #3a6df0, the matvec bars.
      for (let i = 0; i < d.length; i += 4) if (d[i] === 0x3a && d[i + 1] === 0x6d && d[i + 2] === 0xf0) n++;
      return n;
    });
    assert.ok(colouredPixels > 100, `matvec bars drawn (${colouredPixels} pixels)`);
    assert.equal(await page.isHidden('#download'), false, 'JSON report link');

    // The peer: ONNX Runtime Web's MatMulNBits at the toy shape, on the EP that was faster, checked against the
    // float64 dot product of the dequantised weights; in the table and in the JSON report.
    assert.equal(await page.isHidden('#peer-box'), false, 'peer section shown');
    const peerName = (await page.textContent('#peer-name'))!;
    const peerNote = (await page.textContent('#peer-note'))!;
    console.log(`peer: ${peerName}; ${peerNote}`);
    assert.match(peerName, /^ONNX Runtime Web \S+ MatMulNBits \((webgpu|wasm) EP\)$/);
    assert.equal(await page.evaluate(() => self.crossOriginIsolated), true, 'the bench page is cross-origin isolated');
    const cores = await page.evaluate(() => navigator.hardwareConcurrency);
    assert.match(peerNote, new RegExp(`wasm threads ${cores}(;| )`), 'ORT wasm runs on every core');
    assert.doesNotMatch(peerNote, /not cross-origin isolated/);
    const peerTable = await page.$$eval('#peer-body tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent ?? '')));
    assert.equal(peerTable.length, 1, `peer rows (note: ${peerNote})`);
    const p = peerTable[0];
    assert.deepEqual([p[col('kernel')], p[col('shape')], p[col('bits')], p[col('group')]], ['MatMulNBits', 'M1 K256 N96', '4', '32']);
    assert.ok(Number(p[col('max err')]) <= 1e-4, `peer max err: ${p.join(' | ')}`);
    assert.ok(Number(p[col('median ms')]) > 0 && Number(p[col('GB/s')]) > 0, `peer timing: ${p.join(' | ')}`);
    assert.match((await page.textContent('#peer-compare'))!, /^M1 K256 N96 4-bit: ours \(g64\) \S+ ms, peer \(g32\) \S+ ms: ours \S+× (faster|slower)$/);
    const json = await page.evaluate(async () => (await fetch((document.getElementById('download') as HTMLAnchorElement).href)).json());
    assert.equal(json.peer.name, peerName);
    const pr = json.peer.rows[0];
    assert.deepEqual([pr.kernel, pr.shape, pr.bits, pr.groupSize, pr.copies, pr.checked], ['MatMulNBits', 'M1 K256 N96', 4, 32, 1, 48]);
    for (const k of ['medianMs', 'gbps', 'pctCeiling', 'maxErr']) assert.ok(Number.isFinite(pr[k]), `peer ${k} ${pr[k]}`);
    assert.ok(pr.maxErr <= 1e-4, `peer maxErr ${pr.maxErr}`);
    await page.screenshot({ path: join(shots, 'bench.png'), fullPage: true });

    // One kernel alone: the rmsNorm row, appended with the ceiling measured before.
    await page.evaluate(() => { delete document.body.dataset.state; });
    await page.selectOption('#kernel', String(expected - 1));
    await page.click('#run-one');
    await page.waitForFunction(() => document.body.dataset.state, null, { timeout: 120_000 });
    assert.equal(await page.textContent('#error'), '');
    const after = await page.$$eval('#results-body tr td:first-child', (tds) => tds.map((td) => td.textContent));
    assert.equal(after.length, expected + 1);
    assert.equal(after[expected], 'rmsNorm');
    assert.equal(await page.getAttribute('#chart', 'data-bars'), String(expected + 1));
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
  }
});
