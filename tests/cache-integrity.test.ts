// Cache integrity on load: a cached chunk that rots (same length), vanishes or shrinks after the model was stored
// complete must be noticed while the model is read, fetched again alone from the server and checked against the
// hash recorded at download, or fail with an error that names it. fake-indexeddb stands in for IndexedDB; a local
// HTTP server logs every request so the tests can count re-fetches.

import 'fake-indexeddb/auto';
import { test, describe, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createStore, del, get, set, type UseStore } from 'idb-keyval';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { openCheckpoint } from '../src/format/checkpoint.ts';
import { isNotFound, type ByteSource } from '../src/format/safetensors.ts';
import {
  CachedChunkError, IntegrityError, cachedOrRemoteSource, cachedSource, isModelCached, type ChunkRefetch,
} from '../src/store/index.ts';
import type { FileRecord } from '../src/store/shard-cache.ts';

const CHUNK = 64 * 1024;
const SHARD2 = 'model-00002-of-00003.safetensors';
const SHARD3 = 'model-00003-of-00003.safetensors';
const FAST = { chunkBytes: CHUNK, backoffMs: 5, retries: 1 };
const REPO = (() => {
  const files = makeTinyCheckpoint('udq2');
  const enc = new TextEncoder();
  files.set('tokenizer.json', enc.encode(JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 } } })));
  files.set('tokenizer_config.json', enc.encode('{"eos_token":"<|im_end|>"}'));
  return files;
})();
const SHARD2_BYTES = REPO.get(SHARD2)!;

// ---------------------------------------------------------------------------------------------------------------

interface Logged { method: string; file: string; range: string | null }
interface Server { url: string; log: Logged[]; gets(): Logged[]; close(): Promise<void> }

const open = new Set<Server>();
afterEach(async () => {
  await Promise.all([...open].map((s) => s.close()));
});

/** A static server with Range support that logs every request. */
async function serve(files: Map<string, Uint8Array>): Promise<Server> {
  const log: Logged[] = [];
  const server = http.createServer((req, res) => {
    const file = decodeURIComponent(new URL(req.url!, 'http://x').pathname.slice(1));
    const range = req.headers.range ?? null;
    log.push({ method: req.method!, file, range });
    const data = files.get(file);
    if (!data) {
      res.writeHead(404);
      return res.end('not found');
    }
    const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
    let body = data;
    if (m) {
      const a = Number(m[1]);
      const b = m[2] ? Math.min(Number(m[2]), data.byteLength - 1) : data.byteLength - 1;
      body = data.subarray(a, b + 1);
      res.writeHead(206, { 'Accept-Ranges': 'bytes', 'Content-Range': `bytes ${a}-${b}/${data.byteLength}`, 'Content-Length': body.byteLength });
    } else {
      res.writeHead(200, { 'Accept-Ranges': 'bytes', 'Content-Length': data.byteLength });
    }
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  let closed = false;
  const s: Server = {
    url: `http://127.0.0.1:${port}/`,
    log,
    gets: () => log.filter((l) => l.method === 'GET'),
    close: async () => {
      open.delete(s);
      if (closed) return;
      closed = true;
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  open.add(s);
  return s;
}

let storeCount = 0;
const freshStore = (): UseStore => createStore(`cache-integrity-${++storeCount}`, 'entries');
const chunkKey = (id: string, file: string, k: number) => ['chunk', id, file, k];
const range = (from: number, to: number) => `bytes=${from}-${to - 1}`;

/** A model downloaded into a fresh store through the same path a load takes. */
async function cachedModel(id: string): Promise<{ srv: Server; store: UseStore }> {
  const srv = await serve(REPO);
  const store = freshStore();
  await cachedOrRemoteSource(id, srv.url, { ...FAST, store });
  assert.equal(await isModelCached(id, store), true);
  return { srv, store };
}

/** Flips one byte of a stored chunk, keeping its length (bit rot the length check cannot see). */
async function rot(store: UseStore, id: string, file: string, k: number, at = 123): Promise<Uint8Array> {
  const stored = (await get(chunkKey(id, file, k), store)) as Uint8Array;
  const bad = stored.slice();
  bad[at] ^= 0x5a;
  await set(chunkKey(id, file, k), bad, store);
  return bad;
}

async function assertReadsEqual(src: ByteSource, files: Map<string, Uint8Array>): Promise<void> {
  for (const [name, bytes] of files) assert.deepEqual(await src.read(name, 0, bytes.byteLength), bytes, name);
}

// ---------------------------------------------------------------------------------------------------------------

describe('cache integrity on load', () => {
  test('a healthy cache: every byte as downloaded, no request, each chunk hashed once while in memory', async () => {
    const { srv, store } = await cachedModel('healthy');
    const before = srv.log.length;
    const src = await cachedOrRemoteSource('healthy', srv.url, { ...FAST, store });
    await assertReadsEqual(src, REPO);
    assert.equal(srv.log.length, before, 'a healthy cached model costs no request');

    const digest = mock.method(crypto.subtle, 'digest');
    try {
      const again = await cachedOrRemoteSource('healthy', srv.url, { ...FAST, store, cacheChunks: 2 });
      for (let i = 0; i < 5; i++) await again.read(SHARD2, 3 * CHUNK + 10 * i, 100);
      assert.equal(digest.mock.callCount(), 1, 'one chunk read five times is hashed once');
      await again.read(SHARD2, 4 * CHUNK - 5, 10);
      assert.equal(digest.mock.callCount(), 2, 'a read across into the next chunk hashes only that one');
    } finally {
      digest.mock.restore();
    }
    assert.equal(srv.log.length, before);
  });

  test('a rotten chunk (same length): only that chunk is fetched again, checked, stored; reads are the file', async () => {
    const { srv, store } = await cachedModel('rot');
    const k = 2;
    await rot(store, 'rot', SHARD2, k);
    const before = srv.log.length;
    const repaired: ChunkRefetch[] = [];
    const src = await cachedOrRemoteSource('rot', srv.url, { ...FAST, store, onRefetch: (r) => repaired.push(r) });
    // Two reads of the bad chunk at once share one re-fetch.
    const [a, b] = await Promise.all([src.read(SHARD2, k * CHUNK, 200), src.read(SHARD2, k * CHUNK + 100, 50)]);
    assert.deepEqual(a, SHARD2_BYTES.subarray(k * CHUNK, k * CHUNK + 200));
    assert.deepEqual(b, SHARD2_BYTES.subarray(k * CHUNK + 100, k * CHUNK + 150));
    await assertReadsEqual(src, REPO);
    assert.deepEqual(srv.log.slice(before), [{ method: 'GET', file: SHARD2, range: range(k * CHUNK, (k + 1) * CHUNK) }]);
    assert.equal(repaired.length, 1);
    assert.deepEqual({ ...repaired[0], reason: '' }, { file: SHARD2, chunk: k, from: k * CHUNK, to: (k + 1) * CHUNK, reason: '' });
    assert.match(repaired[0].reason, /does not match the sha256 recorded at download \(found [0-9a-f]{64}, expected [0-9a-f]{64}\)/);

    assert.deepEqual(await get(chunkKey('rot', SHARD2, k), store), SHARD2_BYTES.slice(k * CHUNK, (k + 1) * CHUNK), 'the store is repaired');
    const next = await cachedOrRemoteSource('rot', srv.url, { ...FAST, store });
    await assertReadsEqual(next, REPO);
    assert.equal(srv.log.length, before + 1, 'the next load finds the repaired chunk');
  });

  test('a rotten chunk with the server gone: a clear error naming the file, chunk and bytes; no rotten byte used', async () => {
    const { srv, store } = await cachedModel('offline');
    const k = 4;
    const bad = await rot(store, 'offline', SHARD2, k);
    const src = await cachedOrRemoteSource('offline', srv.url, { ...FAST, store });
    await srv.close();
    await assert.rejects(src.read(SHARD2, k * CHUNK + 1000, 8), (e: Error) => {
      assert.ok(e instanceof CachedChunkError && e instanceof IntegrityError, String(e));
      assert.ok(!isNotFound(e));
      assert.deepEqual([e.modelId, e.file, e.chunk, e.from, e.to], ['offline', SHARD2, k, k * CHUNK, (k + 1) * CHUNK]);
      assert.match(e.message, new RegExp(`^offline/${SHARD2}: cached chunk ${k} \\(bytes ${k * CHUNK}-${(k + 1) * CHUNK - 1}\\) ` +
        'does not match the sha256 recorded at download .*; fetching it again from ' +
        `${srv.url.replace(/\./g, '\\.')}${SHARD2} failed \\(.*ECONNREFUSED.*\\): check the connection and load again, ` +
        'or delete the cached model and load it again$'));
      return true;
    });
    assert.deepEqual(await src.read(SHARD2, (k + 1) * CHUNK, 16), SHARD2_BYTES.subarray((k + 1) * CHUNK, (k + 1) * CHUNK + 16),
      'sound chunks still read');
    assert.deepEqual(await get(chunkKey('offline', SHARD2, k), store), bad, 'nothing was stored over the bad chunk');
  });

  test('a chunk record evicted after the model was complete: fetched again (the short last chunk, exact range)', async () => {
    const { srv, store } = await cachedModel('evicted');
    const last = Math.ceil(SHARD2_BYTES.byteLength / CHUNK) - 1;
    assert.ok(SHARD2_BYTES.byteLength % CHUNK !== 0, 'the test wants a short last chunk');
    await del(chunkKey('evicted', SHARD2, last), store);
    await del(chunkKey('evicted', SHARD3, 0), store);
    const before = srv.log.length;
    const warn = mock.method(console, 'warn', () => undefined);
    let src: ByteSource;
    try {
      src = await cachedOrRemoteSource('evicted', srv.url, { ...FAST, store });
      const ck = await openCheckpoint(src);
      const ref = await openCheckpoint(memorySource(REPO));
      for (const name of ref.tensors.keys()) assert.deepEqual(await ck.readTensor(name), await ref.readTensor(name), name);
      assert.equal(warn.mock.callCount(), 2, 'each repair is reported by default');
      assert.match(String(warn.mock.calls[0].arguments[0]), /evicted\/model-0000[23]-of-00003\.safetensors: cached chunk \d+ \(bytes \d+-\d+\) is missing; fetched it again/);
    } finally {
      warn.mock.restore();
    }
    assert.deepEqual(srv.log.slice(before).map((l) => [l.file, l.range]).sort(), [
      [SHARD2, range(last * CHUNK, SHARD2_BYTES.byteLength)],
      [SHARD3, range(0, CHUNK)],
    ]);
    await assertReadsEqual(src, REPO);
  });

  test('a truncated chunk: fetched again', async () => {
    const { srv, store } = await cachedModel('short');
    const stored = (await get(chunkKey('short', SHARD2, 1), store)) as Uint8Array;
    await set(chunkKey('short', SHARD2, 1), stored.slice(0, 1000), store);
    const before = srv.log.length;
    const reasons: string[] = [];
    const src = await cachedOrRemoteSource('short', srv.url, { ...FAST, store, onRefetch: (r) => reasons.push(r.reason) });
    await assertReadsEqual(src, REPO);
    assert.deepEqual(reasons, [`has 1000 bytes, expected ${CHUNK}`]);
    assert.deepEqual(srv.log.slice(before).map((l) => l.range), [range(CHUNK, 2 * CHUNK)]);
  });

  test('the server sends other bytes than were cached: an integrity error says so, the store keeps its chunk', async () => {
    const { store } = await cachedModel('changed');
    const k = 3;
    const bad = await rot(store, 'changed', SHARD2, k);
    const newer = new Map(REPO);
    const other = SHARD2_BYTES.slice();
    other[k * CHUNK + 7] ^= 1;
    newer.set(SHARD2, other);
    const srv2 = await serve(newer);
    const src = await cachedOrRemoteSource('changed', srv2.url, { ...FAST, store, onRefetch: () => assert.fail('no repair') });
    await assert.rejects(src.read(SHARD2, k * CHUNK, CHUNK), (e: Error) => {
      assert.ok(e instanceof CachedChunkError, String(e));
      assert.match(e.message, new RegExp(`^changed/${SHARD2}: cached chunk ${k} \\(bytes ${k * CHUNK}-${(k + 1) * CHUNK - 1}\\) ` +
        'does not match the sha256 recorded at download .*, and the bytes the server sends now \\(.*\\) do not match ' +
        'that hash either \\(found [0-9a-f]{64}\\): the file changed on the server since it was cached; ' +
        'delete the cached model and load it again$'));
      return true;
    });
    assert.deepEqual(srv2.gets().map((l) => [l.file, l.range]), [[SHARD2, range(k * CHUNK, (k + 1) * CHUNK)]]);
    assert.deepEqual(await get(chunkKey('changed', SHARD2, k), store), bad, 'unverified bytes are never stored');
  });

  test('cachedSource without a base URL: a bad chunk is an error naming model, file, chunk, bytes and the fix', async () => {
    const { srv, store } = await cachedModel('nourl');
    await rot(store, 'nourl', SHARD2, 0);
    const before = srv.log.length;
    const src = cachedSource('nourl', { store });
    await assert.rejects(src.read(SHARD2, 0, 8), (e: Error) => {
      assert.ok(e instanceof CachedChunkError, String(e));
      assert.match(e.message, new RegExp(`^nourl/${SHARD2}: cached chunk 0 \\(bytes 0-${CHUNK - 1}\\) does not match the sha256 ` +
        'recorded at download .*, and there is no base URL to fetch it again from: delete the cached model and load it again$'));
      return true;
    });
    assert.equal(srv.log.length, before);
  });

  test('a file record lost while the model record says complete: the load downloads that file again', async () => {
    const { srv, store } = await cachedModel('lostfile');
    await del(['file', 'lostfile', SHARD3], store);
    await assert.rejects(cachedSource('lostfile', { store }).read(SHARD3, 0, 8), (e: Error) => {
      assert.ok(!isNotFound(e), 'a file the model lists is not reported as absent (the loader would skip it)');
      assert.match(e.message, new RegExp(`cache:lostfile: the record of ${SHARD3} is gone from the cache although the model lists it`));
      return true;
    });
    const before = srv.log.length;
    const src = await cachedOrRemoteSource('lostfile', srv.url, { ...FAST, store });
    assert.deepEqual(srv.log.slice(before).map((l) => [l.method, l.file, l.range]), [['GET', SHARD3, null]]);
    assert.equal(await isModelCached('lostfile', store), true);
    await assertReadsEqual(src, REPO);
  });

  test('a record without chunk hashes (older data): a missing chunk is fetched again, checked by length', async () => {
    const { srv, store } = await cachedModel('old');
    const rec = (await get(['file', 'old', SHARD2], store)) as FileRecord;
    await set(['file', 'old', SHARD2], { ...rec, chunkSha256: undefined }, store);
    await del(chunkKey('old', SHARD2, 5), store);
    const before = srv.log.length;
    const src = await cachedOrRemoteSource('old', srv.url, { ...FAST, store, onRefetch: () => undefined });
    await assertReadsEqual(src, REPO);
    assert.deepEqual(srv.log.slice(before).map((l) => l.range), [range(5 * CHUNK, 6 * CHUNK)]);
  });
});
