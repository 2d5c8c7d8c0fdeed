// The model store against a local HTTP server with fault injection (cut connections, stalls, 5xx, 404, servers
// that ignore Range, announced sha256) and fake-indexeddb standing in for the browser's IndexedDB.

import 'fake-indexeddb/auto';
import { test, describe, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';
import { createStore, keys, set, type UseStore } from 'idb-keyval';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { openCheckpoint } from '../src/format/checkpoint.ts';
import { isNotFound } from '../src/format/safetensors.ts';
import {
  QuotaError, IntegrityError, HttpError, ModelDeletedError, Sha256, announcedSha256, cachedOrRemoteSource,
  cachedSource, deleteCachedModel, downloadModel, isModelCached, listCachedModels, modelFiles, resolveModel,
  verifyModel, httpSource, type DownloadProgress, type ModelFile,
} from '../src/store/index.ts';
import { getFileRecord } from '../src/store/shard-cache.ts';

const CHUNK = 64 * 1024;
const SHARD2 = 'model-00002-of-00003.safetensors';
const FAST = { chunkBytes: CHUNK, backoffMs: 5, retries: 3 };

function tinyRepo(recipe: 'udq2' | 'q4g32' = 'udq2'): Map<string, Uint8Array> {
  const files = makeTinyCheckpoint(recipe);
  const enc = new TextEncoder();
  files.set('tokenizer.json', enc.encode(JSON.stringify({ model: { type: 'BPE', vocab: { a: 0 } } })));
  files.set('tokenizer_config.json', enc.encode('{"eos_token":"<|im_end|>"}'));
  return files;
}
const REPO = tinyRepo();
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------------------------
// Test server.

interface Logged { method: string; file: string; range: string | null; status: number }

interface Faults {
  /** Close the connection once, after this many body bytes of the file's first GET. */
  cutOnce?: { file: string; afterBytes: number };
  /** Stop sending (connection left open) once, after this many body bytes. */
  stallOnce?: { file: string; afterBytes: number };
  /** Answer the file's first GET with this status. */
  failOnce?: { file: string; status: number; headers?: Record<string, string> };
  /** Always 200 with the whole file, like a server without Range support. */
  ignoreRange?: boolean;
  /** X-Linked-Etag per file (any string, so tests can announce a wrong one). */
  linkedEtag?: Map<string, string>;
}

interface Server { url: string; log: Logged[]; gets(file: string): Logged[]; close(): Promise<void> }

const openServers = new Set<Server>();
afterEach(async () => {
  await Promise.all([...openServers].map((s) => s.close()));
});

async function serve(files: Map<string, Uint8Array>, faults: Faults = {}): Promise<Server> {
  const log: Logged[] = [];
  const used = new Set<string>();
  const once = (key: string) => !used.has(key) && !!used.add(key);
  const server = http.createServer((req, res) => {
    const file = decodeURIComponent(new URL(req.url!, 'http://x').pathname.slice(1));
    const range = req.headers.range ?? null;
    const data = files.get(file);
    const entry: Logged = { method: req.method!, file, range, status: 0 };
    log.push(entry);
    const reply = (status: number, headers: Record<string, string | number> = {}) => {
      entry.status = status;
      res.writeHead(status, headers);
    };
    if (!data) {
      reply(404);
      return res.end('not found');
    }
    if (req.method === 'GET' && faults.failOnce?.file === file && once('fail')) {
      reply(faults.failOnce.status, faults.failOnce.headers);
      return res.end('nope');
    }
    const headers: Record<string, string | number> = { ETag: `"${sha256(data).slice(0, 16)}"` };
    if (!faults.ignoreRange) headers['Accept-Ranges'] = 'bytes';
    const linked = faults.linkedEtag?.get(file);
    if (linked) headers['X-Linked-Etag'] = linked;
    let body = data;
    const m = /^bytes=(\d+)-(\d*)$/.exec(range ?? '');
    if (m && !faults.ignoreRange) {
      const a = Number(m[1]);
      const b = m[2] ? Math.min(Number(m[2]), data.byteLength - 1) : data.byteLength - 1;
      body = data.subarray(a, b + 1);
      reply(206, { ...headers, 'Content-Range': `bytes ${a}-${b}/${data.byteLength}`, 'Content-Length': body.byteLength });
    } else {
      reply(200, { ...headers, 'Content-Length': data.byteLength });
    }
    if (req.method === 'HEAD') return res.end();
    for (const [fault, act] of [[faults.cutOnce, 'cut'], [faults.stallOnce, 'stall']] as const) {
      if (fault?.file === file && req.method === 'GET' && once(act)) {
        // Wait until the partial body is flushed so the client really receives it before the fault.
        res.write(body.subarray(0, fault.afterBytes), () => {
          if (act === 'cut') setTimeout(() => res.socket?.destroy(), 20);
        });
        return;
      }
    }
    res.end(body);
  });
  server.requestTimeout = 10_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  const s: Server = {
    url: `http://127.0.0.1:${port}/`,
    log,
    gets: (file) => log.filter((l) => l.method === 'GET' && l.file === file),
    close: async () => {
      openServers.delete(s);
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
  openServers.add(s);
  return s;
}

let storeCount = 0;
const freshStore = (): UseStore => createStore(`store-test-${++storeCount}`, 'entries');

function listing(files: Map<string, Uint8Array>, withSha = false): ModelFile[] {
  return [...files].map(([name, b]) => ({ name, size: b.byteLength, ...(withSha ? { sha256: sha256(b) } : {}) }));
}

async function assertCachedEqual(modelId: string, store: UseStore, files: Map<string, Uint8Array>): Promise<void> {
  const src = cachedSource(modelId, { store });
  for (const [name, bytes] of files) {
    assert.equal(await src.size(name), bytes.byteLength, name);
    assert.deepEqual(await src.read(name, 0, bytes.byteLength), bytes, name);
  }
}

function withNavigator<T>(nav: object, fn: () => Promise<T>): Promise<T> {
  Object.defineProperty(globalThis, 'navigator', { value: nav, configurable: true, writable: true });
  return fn().finally(() => {
    delete (globalThis as { navigator?: unknown }).navigator;
  });
}

// ---------------------------------------------------------------------------------------------------------------

describe('Sha256 (incremental)', () => {
  test('matches crypto.subtle on random inputs, split anywhere, with save/restore', async () => {
    const lengths = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 1000, 4097, 100_003];
    for (const n of lengths) {
      const data = new Uint8Array(randomBytes(n));
      const want = Buffer.from(await crypto.subtle.digest('SHA-256', data)).toString('hex');
      assert.equal(new Sha256().update(data).hex(), want, `one update, ${n} bytes`);
      let h = new Sha256();
      for (let i = 0; i < n;) {
        const step = 1 + Math.floor(Math.random() * 150);
        h.update(data.subarray(i, i + step));
        i += step;
        if (Math.random() < 0.3) h = Sha256.restore(structuredClone(h.save()));
      }
      assert.equal(h.hex(), want, `pieces, ${n} bytes`);
    }
  });

  test('announcedSha256 reads X-Linked-Etag and X-Linked-Sha256, ignores other etags', () => {
    const hex = 'ab'.repeat(32);
    assert.equal(announcedSha256(new Headers({ 'X-Linked-Etag': `"${hex.toUpperCase()}"` })), hex);
    assert.equal(announcedSha256(new Headers({ 'X-Linked-Sha256': hex })), hex);
    assert.equal(announcedSha256(new Headers({ 'X-Linked-Etag': '"0123abcd"', ETag: `"${hex}"` })), undefined);
  });
});

describe('hub', () => {
  test('resolveModel: repo ids, URLs, errors', () => {
    assert.deepEqual(resolveModel('mlx-community/Qwen3.5-0.8B-4bit'), {
      id: 'mlx-community/Qwen3.5-0.8B-4bit',
      baseUrl: 'https://huggingface.co/mlx-community/Qwen3.5-0.8B-4bit/resolve/main',
    });
    assert.deepEqual(resolveModel('org/name', { host: 'https://hf-mirror.example/', revision: 'refs/pr/1' }), {
      id: 'org/name@refs/pr/1',
      baseUrl: 'https://hf-mirror.example/org/name/resolve/refs%2Fpr%2F1',
    });
    assert.deepEqual(resolveModel('http://127.0.0.1:8000/models/tiny///'), {
      id: 'http://127.0.0.1:8000/models/tiny', baseUrl: 'http://127.0.0.1:8000/models/tiny',
    });
    for (const bad of ['qwen', 'a/b/c', '../x', 'org/..', 'org/-x', '', 'ftp://x/y']) {
      assert.throws(() => resolveModel(bad), /neither a Hugging Face repo id/, bad);
    }
  });

  test('modelFiles: sharded, single file, optional files, no weights', async () => {
    const sharded = await modelFiles(memorySource(REPO));
    assert.deepEqual(sharded.map((f) => f.name), [
      'config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors.index.json',
      'model-00001-of-00003.safetensors', SHARD2, 'model-00003-of-00003.safetensors',
    ]);
    for (const f of sharded) assert.equal(f.size, REPO.get(f.name)!.byteLength, f.name);

    const single = tinyRepo('q4g32');
    single.set('chat_template.jinja', new TextEncoder().encode('{{ messages }}'));
    single.set('generation_config.json', new TextEncoder().encode('{}'));
    single.delete('tokenizer_config.json');
    assert.deepEqual((await modelFiles(memorySource(single))).map((f) => f.name),
      ['config.json', 'tokenizer.json', 'chat_template.jinja', 'generation_config.json', 'model.safetensors']);

    const none = new Map([...REPO].filter(([n]) => !n.startsWith('model')));
    await assert.rejects(modelFiles(memorySource(none, 'repo-x')), /repo-x has no MLX safetensors weights/);
    const noShard = new Map([...REPO].filter(([n]) => n !== SHARD2));
    await assert.rejects(modelFiles(memorySource(noShard)), new RegExp(`no ${SHARD2}`));
  });
});

describe('download', () => {
  test('cachedOrRemoteSource: lists, downloads with progress, reads back; openCheckpoint works on the cache', async () => {
    const srv = await serve(REPO);
    const store = freshStore();
    const events: DownloadProgress[] = [];
    const src = await cachedOrRemoteSource('tiny', srv.url, { ...FAST, store, onProgress: (p) => events.push({ ...p }) });
    const total = [...REPO.values()].reduce((n, b) => n + b.byteLength, 0);
    assert.ok(events.length >= 3);
    for (let i = 1; i < events.length; i++) assert.ok(events[i].bytesDone >= events[i - 1].bytesDone, 'bytesDone never decreases');
    const last = events.at(-1)!;
    assert.equal(last.bytesDone, total);
    assert.equal(last.bytesTotal, total);
    assert.equal(last.etaSeconds, 0);
    assert.ok(events.some((e) => e.file === SHARD2 && e.fileBytesTotal === REPO.get(SHARD2)!.byteLength));

    await assertCachedEqual('tiny', store, REPO);
    // Odd ranges across chunk borders.
    const shard = REPO.get(SHARD2)!;
    for (const [off, len] of [[CHUNK - 3, 7], [1, 3 * CHUNK + 5], [shard.byteLength - 10, 10], [5, 0]]) {
      assert.deepEqual(await src.read(SHARD2, off, len), shard.subarray(off, off + len));
    }
    await assert.rejects(src.read(SHARD2, shard.byteLength - 2, 4), /beyond/);
    await assert.rejects(src.size('nope.json'), (e) => isNotFound(e));

    const ck = await openCheckpoint(src);
    const ref = await openCheckpoint(memorySource(REPO));
    assert.equal(ck.tensors.size, ref.tensors.size);
    for (const name of [...ref.tensors.keys()].slice(0, 40)) {
      assert.deepEqual(await ck.readTensor(name), await ref.readTensor(name), name);
    }

    assert.equal(await isModelCached('tiny', store), true);
    const [info] = await listCachedModels(store);
    assert.deepEqual({ ...info, files: info.files.length }, {
      modelId: 'tiny', baseUrl: srv.url, files: REPO.size, bytes: total, totalBytes: total, complete: true,
    });
    const before = srv.log.length;
    await cachedOrRemoteSource('tiny', srv.url, { ...FAST, store });
    await downloadModel('tiny', srv.url, listing(REPO), { ...FAST, store });
    assert.equal(srv.log.length, before, 'a cached model costs no request');
  });

  test('cachedSource loads only the chunks a read touches, and keeps the last few', async () => {
    const srv = await serve(REPO);
    const store = freshStore();
    await downloadModel('lazy', srv.url, listing(REPO), { ...FAST, store });
    const loaded: number[] = [];
    // Records which chunk keys are read from the object store.
    const spy: UseStore = (mode, cb) => store(mode, (s) => cb(new Proxy(s, {
      get(target, prop) {
        if (prop === 'get') {
          return (key: IDBValidKey) => {
            if (Array.isArray(key) && key[0] === 'chunk') loaded.push(key[3] as number);
            return target.get(key);
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    })));
    const src = cachedSource('lazy', { store: spy, cacheChunks: 2 });
    const shard = REPO.get(SHARD2)!;
    assert.deepEqual(await src.read(SHARD2, 5 * CHUNK - 4, 8), shard.subarray(5 * CHUNK - 4, 5 * CHUNK + 4));
    assert.deepEqual(loaded, [4, 5]);
    await src.read(SHARD2, 5 * CHUNK + 100, 50);
    await src.read(SHARD2, 4 * CHUNK, 10);
    assert.deepEqual(loaded, [4, 5], 'recent chunks are served from memory');
    await src.read(SHARD2, 9 * CHUNK, 10);
    await src.read(SHARD2, 4 * CHUNK + 1, 10);
    await src.read(SHARD2, 5 * CHUNK + 1, 10);
    assert.deepEqual(loaded, [4, 5, 9, 5], 'the least recently used chunk (5, not 4) was evicted');
  });

  test('connection cut mid-file: resumes with Range from the end of the last stored chunk', async () => {
    const srv = await serve(REPO, { cutOnce: { file: SHARD2, afterBytes: 3 * CHUNK + CHUNK / 2 } });
    const store = freshStore();
    await downloadModel('cut', srv.url, listing(REPO), { ...FAST, store });
    assert.deepEqual(srv.gets(SHARD2).map((l) => [l.range, l.status]), [[null, 200], [`bytes=${3 * CHUNK}-`, 206]]);
    await assertCachedEqual('cut', store, REPO);
  });

  test('stalled connection: dropped after stallMs and resumed', async () => {
    const srv = await serve(REPO, { stallOnce: { file: SHARD2, afterBytes: 2 * CHUNK + 100 } });
    const store = freshStore();
    await downloadModel('stall', srv.url, listing(REPO), { ...FAST, store, stallMs: 300 });
    assert.deepEqual(srv.gets(SHARD2).map((l) => l.range), [null, `bytes=${2 * CHUNK}-`]);
    await assertCachedEqual('stall', store, REPO);
  });

  test('abort, then download again (a reload): resumes, stored chunks are not fetched again', async () => {
    const srv = await serve(REPO);
    const store = freshStore();
    const ac = new AbortController();
    await assert.rejects(downloadModel('abort', srv.url, listing(REPO), {
      ...FAST, store, signal: ac.signal,
      onProgress: (p) => { if (p.file === SHARD2 && p.fileBytesDone > 4 * CHUNK) ac.abort(); },
    }), { name: 'AbortError' });
    const rec = (await getFileRecord('abort', SHARD2, store))!;
    assert.ok(rec.chunks >= 4 && !rec.complete, `stored ${rec.chunks} chunks`);
    assert.equal(await isModelCached('abort', store), false);
    const [partial] = await listCachedModels(store);
    assert.equal(partial.complete, false);
    assert.ok(partial.bytes > 0 && partial.bytes < partial.totalBytes);

    const firstDone = srv.gets('model-00001-of-00003.safetensors').length;
    await downloadModel('abort', srv.url, listing(REPO), { ...FAST, store });
    assert.equal(srv.gets('model-00001-of-00003.safetensors').length, firstDone, 'finished files are not fetched again');
    assert.equal(srv.gets(SHARD2).at(-1)!.range, `bytes=${rec.chunks * CHUNK}-`);
    await assertCachedEqual('abort', store, REPO);
  });

  test('500 then OK: retried', async () => {
    const srv = await serve(REPO, { failOnce: { file: SHARD2, status: 500 } });
    const store = freshStore();
    await downloadModel('retry', srv.url, listing(REPO), { ...FAST, store });
    assert.deepEqual(srv.gets(SHARD2).map((l) => l.status), [500, 200]);
    await assertCachedEqual('retry', store, REPO);
  });

  test('persistent 503: gives up after the retries, naming the file', async () => {
    const files = new Map([['config.json', REPO.get('config.json')!]]);
    const srv = await serve(files);
    const store = freshStore();
    const failing: typeof fetch = async (url, init) => (String(url).endsWith('config.json')
      ? new Response('busy', { status: 503, statusText: 'Service Unavailable' }) : fetch(url, init));
    await assert.rejects(downloadModel('busy', srv.url, listing(files), { ...FAST, store, retries: 2, fetch: failing }),
      /busy\/config\.json: gave up after 3 attempts: .*HTTP 503/);
  });

  test('404 names the missing file; other 4xx fail at once', async () => {
    const missing = new Map([...REPO].filter(([n]) => n !== SHARD2));
    const srv = await serve(missing);
    const store = freshStore();
    await assert.rejects(downloadModel('gone', srv.url, listing(REPO), { ...FAST, store }), (e: Error) => {
      assert.ok(isNotFound(e));
      assert.match(e.message, new RegExp(`${SHARD2}: not found`));
      return true;
    });
    assert.equal(srv.gets(SHARD2).length, 1, 'no retries for a 404');
    // Without a size the file is probed with HEAD, which also names it.
    await assert.rejects(downloadModel('gone2', srv.url, [SHARD2], { ...FAST, store }), new RegExp(`${SHARD2}: not found`));

    const srv2 = await serve(REPO, { failOnce: { file: 'config.json', status: 403 } });
    await assert.rejects(downloadModel('forbidden', srv2.url, listing(REPO), { ...FAST, store }),
      (e) => e instanceof HttpError && e.status === 403);
    assert.equal(srv2.gets('config.json').length, 1);
  });

  test('server that ignores Range: the interrupted file restarts cleanly', async () => {
    const srv = await serve(REPO, { ignoreRange: true, cutOnce: { file: SHARD2, afterBytes: 5 * CHUNK + 1 } });
    const store = freshStore();
    await downloadModel('norange', srv.url, listing(REPO), { ...FAST, store });
    assert.deepEqual(srv.gets(SHARD2).map((l) => [l.range, l.status]), [[null, 200], [`bytes=${5 * CHUNK}-`, 200]]);
    const rec = (await getFileRecord('norange', SHARD2, store))!;
    assert.equal(rec.chunks, Math.ceil(REPO.get(SHARD2)!.byteLength / CHUNK));
    await assertCachedEqual('norange', store, REPO);
  });

  test('sha256 via X-Linked-Etag: verified across a resume; a wrong one is a clear integrity error', async () => {
    const good = new Map([...REPO].map(([n, b]) => [n, `"${sha256(b)}"`]));
    const srv = await serve(REPO, { linkedEtag: good, cutOnce: { file: SHARD2, afterBytes: 2 * CHUNK + 10 } });
    const store = freshStore();
    await downloadModel('sha', srv.url, listing(REPO), { ...FAST, store });
    assert.equal((await getFileRecord('sha', SHARD2, store))!.sha256, sha256(REPO.get(SHARD2)!));
    assert.equal(srv.gets(SHARD2).length, 2);
    const v = await verifyModel('sha', { store, fullHash: true });
    assert.equal(v.refetched.length, 0);
    assert.ok(v.checkedChunks > 30);

    const wrong = new Map([[SHARD2, `"${'0'.repeat(64)}"`]]);
    const srv2 = await serve(REPO, { linkedEtag: wrong });
    const store2 = freshStore();
    await assert.rejects(downloadModel('badsha', srv2.url, listing(REPO), { ...FAST, store: store2 }), (e: Error) => {
      assert.ok(e instanceof IntegrityError);
      assert.match(e.message, new RegExp(`badsha/${SHARD2}: sha256 mismatch: the server announced 0{64} but the downloaded bytes hash to ${sha256(REPO.get(SHARD2)!)}`));
      return true;
    });
    assert.equal((await getFileRecord('badsha', SHARD2, store2))!.chunks, 0, 'the bad file was dropped');
    assert.equal(await isModelCached('badsha', store2), false);
  });

  test('safetensors whose header does not match the file size: integrity error', async () => {
    const padded = new Map(REPO);
    const shard = REPO.get(SHARD2)!;
    const longer = new Uint8Array(shard.byteLength + 16);
    longer.set(shard);
    padded.set(SHARD2, longer);
    const srv = await serve(padded);
    await assert.rejects(downloadModel('pad', srv.url, listing(padded), { ...FAST, store: freshStore() }),
      new RegExp(`${SHARD2}: safetensors header says the data ends at byte ${shard.byteLength} but the file has ${longer.byteLength} bytes`));

    const cut = new Map(REPO);
    cut.set(SHARD2, shard.subarray(0, shard.byteLength - 100));
    const srv2 = await serve(cut);
    await assert.rejects(downloadModel('trunc', srv2.url, listing(cut), { ...FAST, store: freshStore() }),
      new RegExp(`${SHARD2}: downloaded file is not valid safetensors: .*truncated`));
  });

  test('a corrupt stored chunk: re-verify re-fetches only that chunk', async () => {
    const srv = await serve(REPO);
    const store = freshStore();
    await downloadModel('rot', srv.url, listing(REPO), { ...FAST, store });
    const bad = new Uint8Array(CHUNK).fill(7);
    await set(['chunk', 'rot', SHARD2, 2], bad, store);
    const before = srv.log.length;
    const res = await verifyModel('rot', { store });
    assert.deepEqual(res.refetched, [{ file: SHARD2, chunk: 2 }]);
    assert.deepEqual(srv.log.slice(before).map((l) => [l.file, l.range]), [[SHARD2, `bytes=${2 * CHUNK}-${3 * CHUNK - 1}`]]);
    await assertCachedEqual('rot', store, REPO);
    assert.deepEqual((await verifyModel('rot', { store })).refetched, []);
  });

  test('quota too small: QuotaError with numbers, nothing downloaded', async () => {
    const srv = await serve(REPO);
    let persisted = 0;
    const storage = {
      estimate: async () => ({ quota: 3_000_000, usage: 2_000_000 }),
      persist: async () => { persisted++; return true; },
    };
    const need = [...REPO.values()].reduce((n, b) => n + b.byteLength, 0);
    await withNavigator({ storage }, async () => {
      await assert.rejects(downloadModel('big', srv.url, listing(REPO), { ...FAST, store: freshStore() }), (e: Error) => {
        assert.ok(e instanceof QuotaError);
        assert.equal(e.neededBytes, need);
        assert.equal(e.freeBytes, 1_000_000);
        assert.match(e.message, new RegExp(`needs ${(need / 1e9).toPrecision(3)} GB, 0\\.00100 GB free`));
        return true;
      });
    });
    assert.equal(persisted, 1);
    assert.equal(srv.log.filter((l) => l.method === 'GET').length, 0);
  });

  test('QuotaExceededError from IndexedDB: QuotaError, stored chunks kept, resumable', async () => {
    const srv = await serve(REPO);
    const store = freshStore();
    let writes = 0;
    // IndexedDB raises QuotaExceededError on the transaction; simulate it after 20 writes.
    const full: UseStore = (mode, cb) => store(mode, (s) => {
      if (mode === 'readwrite' && ++writes > 20) throw new DOMException('disk full', 'QuotaExceededError');
      return cb(s);
    });
    await assert.rejects(downloadModel('full', srv.url, listing(REPO), { ...FAST, store: full }), (e: Error) => {
      assert.ok(e instanceof QuotaError, String(e));
      assert.match(e.message, /needs [\d.]+ GB, the browser refused to store more \(QuotaExceededError; it reports storage is full\)/);
      return true;
    });
    const [partial] = await listCachedModels(store);
    assert.ok(partial.bytes > 10 * CHUNK);
    const gets = srv.log.length;
    await downloadModel('full', srv.url, listing(REPO), { ...FAST, store });
    const resumed = srv.log.slice(gets).filter((l) => l.method === 'GET');
    assert.ok(resumed[0].range?.startsWith('bytes='), 'the interrupted file resumes with Range');
    await assertCachedEqual('full', store, REPO);
  });

  test('list and delete', async () => {
    const srv = await serve(REPO);
    const store = freshStore();
    const small = new Map([...REPO].filter(([n]) => !n.includes('safetensors')));
    await downloadModel('a', srv.url, listing(REPO), { ...FAST, store });
    await downloadModel('b', srv.url, listing(small), { ...FAST, store });
    assert.deepEqual((await listCachedModels(store)).map((m) => [m.modelId, m.complete]), [['a', true], ['b', true]]);
    await deleteCachedModel('a', store);
    assert.deepEqual((await listCachedModels(store)).map((m) => m.modelId), ['b']);
    assert.equal(await isModelCached('a', store), false);
    const left = (await keys(store)) as IDBValidKey[][];
    assert.ok(left.every((k) => k[1] === 'b'), 'no entry of the deleted model is left');
    await assert.rejects(cachedSource('a', { store }).size('config.json'), (e) => isNotFound(e));
  });

  test('deleted while downloading: the download stops and leaves nothing behind', async () => {
    const srv = await serve(REPO);
    const store = freshStore();
    let deleting: Promise<void> | undefined;
    await assert.rejects(downloadModel('del', srv.url, listing(REPO), {
      ...FAST, store,
      onProgress: (p) => { if (p.bytesDone > 4 * CHUNK) deleting ??= deleteCachedModel('del', store); },
    }), (e) => e instanceof ModelDeletedError);
    await deleting;
    assert.deepEqual(await keys(store), []);
  });

  test('two downloads of one model: one fetches, the other finds it cached (Web Lock and in-process)', async () => {
    const srv = await serve(REPO);
    const store = freshStore();
    const [a, b] = await Promise.all([
      downloadModel('twice', srv.url, listing(REPO), { ...FAST, store }),
      downloadModel('twice', srv.url, listing(REPO), { ...FAST, store }),
    ]);
    assert.ok(a.complete && b.complete);
    for (const name of REPO.keys()) assert.equal(srv.gets(name).length, 1, name);

    // A minimal LockManager: exclusive locks by name, queued in order.
    const held = new Map<string, Promise<unknown>>();
    const names: string[] = [];
    const locks = {
      request: (name: string, _opts: object, fn: () => Promise<unknown>) => {
        names.push(name);
        const run = (held.get(name) ?? Promise.resolve()).then(fn);
        held.set(name, run.catch(() => undefined));
        return run;
      },
    };
    const srv2 = await serve(REPO);
    const store2 = freshStore();
    await withNavigator({ locks }, () => Promise.all([
      downloadModel('locked', srv2.url, listing(REPO), { ...FAST, store: store2 }),
      downloadModel('locked', srv2.url, listing(REPO), { ...FAST, store: store2 }),
    ]));
    assert.deepEqual(names, ['qwen-webgpu:model:locked', 'qwen-webgpu:model:locked']);
    for (const name of REPO.keys()) assert.equal(srv2.gets(name).length, 1, name);
  });

  test('files given by name only: sizes from HEAD; httpSource still reads the server', async () => {
    const srv = await serve(REPO);
    const store = freshStore();
    await downloadModel('named', srv.url, [...REPO.keys()], { ...FAST, store });
    assert.equal(srv.log.filter((l) => l.method === 'HEAD').length, REPO.size);
    await assertCachedEqual('named', store, REPO);
    assert.equal(await httpSource(srv.url).size(SHARD2), REPO.get(SHARD2)!.byteLength);
  });
});
