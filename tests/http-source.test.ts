// httpSource (and the shared fetch-range.ts under it) against a local node:http server that misbehaves: wrong
// Content-Range, stalls, silence, 503s, Retry-After, refused connections, cut bodies, servers that ignore Range.
// Each case checks the bytes against the file served, or that the error names the URL, the range and the cause.
// Timeouts and backoff are cut to milliseconds so every case finishes in well under a second or two.

import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { httpSource } from '../src/store/http-source.ts';
import { HttpError, IntegrityError, describeError } from '../src/store/fetch-range.ts';

const FILE = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7 + 3) & 255);
const FAST = { retries: 0, backoffMs: 5, headersTimeoutMs: 300, stallMs: 300 };

interface Req { method: string; range: string | null }
type Handler = (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void;

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A server whose n-th request (0-based) goes to `handler`; the log has every request. */
async function serve(handler: Handler): Promise<{ url: string; base: string; log: Req[] }> {
  const log: Req[] = [];
  const server = http.createServer((req, res) => {
    log.push({ method: req.method!, range: req.headers.range ?? null });
    handler(req, res, log.length - 1);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/repo`;
  return { base, url: `${base}/f.bin`, log };
}

/** What a correct server sends for a GET with this Range header. */
function honour(req: http.IncomingMessage, res: http.ServerResponse): void {
  const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
  if (!m) {
    res.writeHead(200, { 'Content-Length': FILE.length }).end(req.method === 'HEAD' ? undefined : FILE);
    return;
  }
  const a = Number(m[1]);
  const b = Math.min(Number(m[2]), FILE.length - 1);
  res.writeHead(206, { 'Content-Range': `bytes ${a}-${b}/${FILE.length}`, 'Content-Length': b - a + 1 });
  res.end(FILE.subarray(a, b + 1));
}

test('206 with the wrong Content-Range: refused, naming URL, asked range and answered header; not retried', async () => {
  const s = await serve((req, res) => {
    // Bytes from offset 0, whatever was asked: exactly what would silently become the wrong weights.
    res.writeHead(206, { 'Content-Range': `bytes 0-9/${FILE.length}`, 'Content-Length': 10 }).end(FILE.subarray(0, 10));
  });
  await assert.rejects(httpSource(s.base, { ...FAST, retries: 3 }).read('f.bin', 100, 10), (e: Error) => {
    assert.ok(e instanceof IntegrityError, String(e));
    assert.equal(e.message, `${s.url}: asked for bytes 100-109, server answered Content-Range "bytes 0-9/${FILE.length}"`);
    return true;
  });
  assert.equal(s.log.length, 1, 'a server bug is not retried');
});

test('206 from a file of another size than the one measured: refused as changed', async () => {
  const s = await serve((req, res, n) => {
    if (req.method === 'HEAD') return void res.writeHead(200, { 'Content-Length': FILE.length }).end();
    res.writeHead(206, { 'Content-Range': `bytes 8-15/9999`, 'Content-Length': 8 }).end(FILE.subarray(8, 16));
  });
  const src = httpSource(s.base, FAST);
  assert.equal(await src.size('f.bin'), FILE.length);
  await assert.rejects(src.read('f.bin', 8, 8), /asked for bytes 8-15, server answered Content-Range "bytes 8-15\/9999", but the file had 4096 bytes/);
});

test('body stalls mid-way: aborted after stallMs, the error names URL, range and seconds', async () => {
  const s = await serve((req, res) => {
    res.writeHead(206, { 'Content-Range': `bytes 0-1023/${FILE.length}`, 'Content-Length': 1024 });
    res.write(FILE.subarray(0, 300)); // then nothing, connection left open
  });
  const t0 = performance.now();
  await assert.rejects(httpSource(s.base, { ...FAST, stallMs: 200 }).read('f.bin', 0, 1024), (e: Error) => {
    assert.equal(e.message, `${s.url} (bytes 0-1023): no data for 0.2 s`);
    return true;
  });
  const ms = performance.now() - t0;
  assert.ok(ms >= 190 && ms < 2000, `gave up after ${ms.toFixed(0)} ms`);
});

test('a stall the first time only: retried, right bytes', async () => {
  const s = await serve((req, res, n) => {
    if (n > 0) return honour(req, res);
    res.writeHead(206, { 'Content-Range': `bytes 512-1535/${FILE.length}`, 'Content-Length': 1024 });
    res.write(FILE.subarray(512, 700));
  });
  const got = await httpSource(s.base, { ...FAST, retries: 2, stallMs: 150 }).read('f.bin', 512, 1024);
  assert.deepEqual(got, FILE.subarray(512, 1536));
  assert.deepEqual(s.log.map((r) => r.range), ['bytes=512-1535', 'bytes=512-1535']);
});

test('connection accepted, never answered: headers timeout names URL and seconds', async () => {
  const s = await serve(() => { /* never respond */ });
  const t0 = performance.now();
  await assert.rejects(httpSource(s.base, { ...FAST, headersTimeoutMs: 200, retries: 1 }).read('f.bin', 0, 16), (e: Error) => {
    assert.equal(e.message, `${s.url} (bytes 0-15): no response within 0.2 s (gave up after 2 attempts)`);
    return true;
  });
  const ms = performance.now() - t0;
  assert.ok(ms >= 390 && ms < 3000, `gave up after ${ms.toFixed(0)} ms`);
  assert.equal(s.log.length, 2);
});

test('a silent server gets one retry however many are allowed: a timeout already cost a whole deadline', async () => {
  const s = await serve(() => { /* never respond */ });
  await assert.rejects(httpSource(s.base, { ...FAST, headersTimeoutMs: 150, retries: 4 }).read('f.bin', 0, 16),
    /no response within 0\.15 s \(gave up after 2 attempts\)/);
  assert.equal(s.log.length, 2, 'two requests, not five');
});

test('an HTML page answering 200 for a checkpoint file: refused naming the URL and the content type, not retried', async () => {
  const s = await serve((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end('<!doctype html><title>Sign in</title>');
  });
  await assert.rejects(httpSource(s.base, { ...FAST, retries: 3 }).read('model.safetensors', 0, 8),
    (e: Error) => e.message.startsWith(`${s.url.replace('f.bin', 'model.safetensors')}`) &&
      /answered with an HTML page \(Content-Type text\/html; charset=utf-8\), not the file/.test(e.message));
  assert.equal(s.log.length, 1, 'not retried');
});

test('503 twice, then success: retried with backoff, right bytes', async () => {
  const s = await serve((req, res, n) => {
    if (n < 2) return void res.writeHead(503, 'Service Unavailable').end('busy');
    honour(req, res);
  });
  const got = await httpSource(s.base, { ...FAST, retries: 3 }).read('f.bin', 1000, 200);
  assert.deepEqual(got, FILE.subarray(1000, 1200));
  assert.equal(s.log.length, 3);
});

test('persistent 503: gives up after the retries, naming URL, range and status', async () => {
  const s = await serve((req, res) => void res.writeHead(503, 'Service Unavailable').end());
  await assert.rejects(httpSource(s.base, { ...FAST, retries: 2 }).read('f.bin', 0, 4),
    (e: Error) => e.message === `${s.url} (bytes 0-3): HTTP 503 Service Unavailable (gave up after 3 attempts)`);
  assert.equal(s.log.length, 3);
});

test('429 with Retry-After: waits what the server asks, capped by maxBackoffMs', async () => {
  const stamps: number[] = [];
  const s = await serve((req, res, n) => {
    stamps.push(performance.now());
    if (n === 0) return void res.writeHead(429, { 'Retry-After': '1' }).end();
    honour(req, res);
  });
  const src = httpSource(s.base, { ...FAST, retries: 1 });
  assert.deepEqual(await src.read('f.bin', 0, 8), FILE.subarray(0, 8));
  const wait = stamps[1] - stamps[0];
  assert.ok(wait >= 950 && wait < 1500, `Retry-After: 1 → waited ${wait.toFixed(0)} ms (backoff alone: 5 ms)`);
  // An hour is not "within reason": the wait is capped.
  stamps.length = 0;
  const s2 = await serve((req, res, n) => (stamps.push(performance.now()), n === 0 ? void res.writeHead(429, { 'Retry-After': '3600' }).end() : honour(req, res)));
  assert.deepEqual(await httpSource(s2.base, { ...FAST, retries: 1, maxBackoffMs: 100 }).read('f.bin', 8, 8), FILE.subarray(8, 16));
  const capped = stamps[1] - stamps[0];
  assert.ok(capped >= 95 && capped < 600, `Retry-After: 3600 capped at 100 ms → waited ${capped.toFixed(0)} ms`);
});

test('4xx is not retried: one request, HttpError naming URL and status', async () => {
  const s = await serve((req, res) => void res.writeHead(403, 'Forbidden').end());
  await assert.rejects(httpSource(s.base, { ...FAST, retries: 3 }).read('f.bin', 0, 4), (e: Error) => {
    assert.ok(e instanceof HttpError);
    assert.equal(e.message, `${s.url} (bytes 0-3): HTTP 403 Forbidden`);
    return true;
  });
  assert.equal(s.log.length, 1);
});

test('404 is "not found" naming the file and the base URL, not retried', async () => {
  const s = await serve((req, res) => void res.writeHead(404).end());
  await assert.rejects(httpSource(s.base, { ...FAST, retries: 3 }).size('f.bin'),
    (e: any) => e.notFound === true && e.message === `f.bin: not found in ${s.base}`);
  assert.equal(s.log.length, 1);
});

test('ECONNREFUSED on a closed port: retried, then the error names URL, range and the refused address', async () => {
  const probe = http.createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  const base = `http://127.0.0.1:${port}/repo`;
  await assert.rejects(httpSource(base, { ...FAST, retries: 1 }).read('f.bin', 5, 5), (e: Error) => {
    assert.equal(e.message, `${base}/f.bin (bytes 5-9): fetch failed: connect ECONNREFUSED 127.0.0.1:${port} (gave up after 2 attempts)`);
    return true;
  });
});

test('body cut mid-way: "terminated" comes with URL, range and the socket cause; a retry gets the bytes', async () => {
  const cut: Handler = (req, res) => {
    res.writeHead(206, { 'Content-Range': `bytes 0-2047/${FILE.length}`, 'Content-Length': 2048 });
    res.write(FILE.subarray(0, 500), () => setTimeout(() => res.socket?.destroy(), 20));
  };
  const s = await serve(cut);
  await assert.rejects(httpSource(s.base, FAST).read('f.bin', 0, 2048), (e: Error) => {
    assert.match(e.message, new RegExp(`^${s.url.replace(/[.]/g, '\\.')} \\(bytes 0-2047\\): terminated: other side closed`));
    return true;
  });
  const s2 = await serve((req, res, n) => (n === 0 ? cut(req, res, n) : honour(req, res)));
  assert.deepEqual(await httpSource(s2.base, { ...FAST, retries: 1 }).read('f.bin', 0, 2048), FILE.subarray(0, 2048));
});

test('200 that ignores Range: the file is read once, kept, and sliced right', async () => {
  const s = await serve((req, res) => {
    res.writeHead(200, { 'Content-Length': FILE.length }).end(req.method === 'HEAD' ? undefined : FILE);
  });
  let counted = 0;
  const src = httpSource(s.base, { ...FAST, onBytes: (n) => { counted += n; } });
  assert.deepEqual(await src.read('f.bin', 100, 50), FILE.subarray(100, 150));
  assert.deepEqual(await src.read('f.bin', 4000, 96), FILE.subarray(4000, 4096));
  assert.equal(await src.size('f.bin'), FILE.length);
  assert.equal(s.log.length, 1, 'one whole download, then slices from memory');
  assert.equal(counted, FILE.length, 'onBytes counted every body byte');
  await assert.rejects(src.read('f.bin', 4090, 10), /wanted 10 bytes at offset 4090, the file has 4096/);
});

test('a server that honours Range: reads and size are exact', async () => {
  const s = await serve(honour);
  const src = httpSource(s.base, FAST);
  assert.equal(await src.size('f.bin'), FILE.length);
  assert.deepEqual(await src.read('f.bin', 4095, 1), FILE.subarray(4095));
  assert.deepEqual(s.log, [{ method: 'HEAD', range: null }, { method: 'GET', range: 'bytes=4095-4095' }]);
});

test('describeError unwraps undici causes (ENOTFOUND, AggregateError of ECONNREFUSED)', () => {
  const dns = new TypeError('fetch failed', { cause: Object.assign(new Error('getaddrinfo ENOTFOUND hub.invalid'), { code: 'ENOTFOUND' }) });
  assert.equal(describeError(dns), 'fetch failed: getaddrinfo ENOTFOUND hub.invalid');
  const both = Object.assign(new AggregateError([
    Object.assign(new Error('connect ECONNREFUSED ::1:9'), { code: 'ECONNREFUSED' }),
    Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }),
  ], ''), { code: 'ECONNREFUSED' });
  assert.equal(describeError(new TypeError('fetch failed', { cause: both })),
    'fetch failed: connect ECONNREFUSED ::1:9; connect ECONNREFUSED 127.0.0.1:9');
  assert.equal(describeError(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })), 'socket hang up (ECONNRESET)');
});

test('a malformed base URL is refused up front, not retried as a network error', () => {
  assert.throws(() => httpSource('http://'), /"http:\/\/" is not a valid URL/);
});
