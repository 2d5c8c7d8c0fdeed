// Downloads a model's files into the shard cache: streamed, chunk by chunk, resumable with Range requests after a
// network error, an abort or a page reload; checked against the sizes the server declares, the safetensors
// layout and the sha256 the hub announces for LFS files; retried with exponential backoff; refused up front when
// the storage quota cannot hold it. Two tabs asking for one model take turns through a Web Lock.

import { FormatError, FileNotFoundError, isNotFound, parseSafetensorsHeader, type ByteSource } from '../format/safetensors.ts';
import type { ModelFile } from './hub.ts';
import { httpSource, joinUrl } from './http-source.ts';
import {
  HttpError, IntegrityError, TransientError, checkStatus, fetchRange as fetchRangeOnce, parseContentRange, throwIfAborted,
  watchedFetch, withRetries as retrying, type FetchPolicy, type Watched,
} from './fetch-range.ts';
import {
  ModelDeletedError, QuotaError, cacheStore, deleteChunk, freeBytes, getChunk, getFileRecord, getModelRecord, getFileRecords,
  listCachedModels, loadChunk, putChunk, putFileRecord, putModelRecord, readStoredRange, replaceChunk, resetFile,
  storedBytes, type CachedModel, type FileRecord, type HashState, type UseStore,
} from './shard-cache.ts';

export { HttpError, IntegrityError } from './fetch-range.ts';

export interface DownloadProgress {
  file: string;
  fileBytesDone: number;
  fileBytesTotal: number;
  bytesDone: number;
  bytesTotal: number;
  /** Network throughput over the last few seconds (0 until measurable). */
  bytesPerSecond: number;
  /** Seconds left at that rate; Infinity while unknown, 0 when done. */
  etaSeconds: number;
}

export interface DownloadOptions extends FetchPolicy {
  /** Bytes per stored chunk (default 64 MiB). A partly stored file keeps the chunk size it was started with. */
  chunkBytes?: number;
  onProgress?: (p: DownloadProgress) => void;
  /** Further attempts after a network error, 5xx or 429 without progress (default 4). */
  retries?: number;
  /** A request that delivers no byte for this long is dropped and resumed (default 30 s; also the headers deadline unless headersTimeoutMs is set). */
  stallMs?: number;
  store?: UseStore;
}

/** A file to download: a name (size looked up with a HEAD request) or a listing entry. */
export type FileSpec = string | { name: string; size?: number; sha256?: string };

const MiB = 1024 * 1024;
const PROGRESS_INTERVAL_MS = 100;
const RATE_WINDOW_MS = 5_000;

// ---------------------------------------------------------------------------------------------------------------
// Incremental SHA-256 (FIPS 180-4). crypto.subtle only hashes whole buffers, and a shard must never be whole in
// memory, so the file hash is carried across chunks here; its state is small enough to store with each chunk.

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

export class Sha256 {
  private readonly h = new Int32Array(H0);
  private readonly w = new Int32Array(64);
  private readonly pending = new Uint8Array(64);
  private pendingLen = 0;
  private length = 0;

  static restore(state: HashState): Sha256 {
    const s = new Sha256();
    s.h.set(state.h);
    s.length = state.length;
    s.pending.set(state.pending);
    s.pendingLen = state.pending.byteLength;
    return s;
  }

  save(): HashState {
    return { h: Array.from(this.h), length: this.length, pending: this.pending.slice(0, this.pendingLen) };
  }

  update(data: Uint8Array): this {
    let i = 0;
    const n = data.byteLength;
    this.length += n;
    if (this.pendingLen > 0) {
      i = Math.min(64 - this.pendingLen, n);
      this.pending.set(data.subarray(0, i), this.pendingLen);
      this.pendingLen += i;
      if (this.pendingLen < 64) return this;
      this.blocks(this.pending, 0, 64);
      this.pendingLen = 0;
    }
    const whole = i + Math.floor((n - i) / 64) * 64;
    this.blocks(data, i, whole);
    this.pending.set(data.subarray(whole), 0);
    this.pendingLen = n - whole;
    return this;
  }

  /** The hash of everything so far; the object is spent afterwards. */
  digest(): Uint8Array {
    const bits = this.length * 8;
    const tail = new Uint8Array(this.pendingLen < 56 ? 64 : 128);
    tail.set(this.pending.subarray(0, this.pendingLen));
    tail[this.pendingLen] = 0x80;
    const dv = new DataView(tail.buffer);
    dv.setUint32(tail.length - 8, Math.floor(bits / 2 ** 32));
    dv.setUint32(tail.length - 4, bits >>> 0);
    this.blocks(tail, 0, tail.length);
    const out = new Uint8Array(32);
    const odv = new DataView(out.buffer);
    this.h.forEach((v, j) => odv.setInt32(j * 4, v));
    return out;
  }

  hex(): string {
    return toHex(this.digest());
  }

  private blocks(b: Uint8Array, from: number, to: number): void {
    for (let o = from; o < to; o += 64) this.block(b, o);
  }

  /** One 64-byte block; small enough that V8 optimises it after a few calls (a long loop would wait for OSR). */
  private block(b: Uint8Array, o: number): void {
    const w = this.w;
    const h = this.h;
    for (let t = 0, p = o; t < 16; t++, p += 4) w[t] = (b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3];
    for (let t = 16; t < 64; t++) {
      const x = w[t - 15];
      const y = w[t - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
    }
    let a = h[0], bb = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (let t = 0; t < 64; t++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[t] + w[t]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & bb) ^ (a & c) ^ (bb & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = bb; bb = a; a = (t1 + t2) | 0;
    }
    h[0] += a; h[1] += bb; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
}

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

/** crypto.subtle where present (it is native and faster); insecure contexts (plain http pages) lack it. */
async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return new Sha256().update(bytes).hex();
  return toHex(new Uint8Array(await subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)));
}

// ---------------------------------------------------------------------------------------------------------------
// Small helpers: locks, headers.


const localLocks = new Map<string, Promise<unknown>>();

/**
 * Runs fn while holding the model's lock: a Web Lock where the platform has them (shared by every tab and worker
 * of the origin), else a promise chain in this context.
 */
function withModelLock<T>(modelId: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
  const name = `qwen-webgpu:model:${modelId}`;
  const locks = (globalThis as { navigator?: Navigator }).navigator?.locks;
  if (locks?.request) return locks.request(name, signal ? { signal } : {}, fn) as Promise<T>;
  const run = (localLocks.get(name) ?? Promise.resolve()).then(() => {
    throwIfAborted(signal);
    return fn();
  });
  const tail = run.catch(() => undefined);
  localLocks.set(name, tail);
  void tail.then(() => {
    if (localLocks.get(name) === tail) localLocks.delete(name);
  });
  return run;
}


/** The sha256 a hub LFS response announces: X-Linked-Etag (a quoted 64-hex string) or X-Linked-Sha256. */
export function announcedSha256(headers: Headers): string | undefined {
  for (const name of ['x-linked-sha256', 'x-linked-etag']) {
    const m = /^(?:W\/)?"?([0-9a-f]{64})"?$/i.exec(headers.get(name)?.trim() ?? '');
    if (m) return m[1].toLowerCase();
  }
  return undefined;
}

function strongEtag(headers: Headers): string | undefined {
  const e = headers.get('etag');
  return e && !e.startsWith('W/') ? e : undefined;
}


// ---------------------------------------------------------------------------------------------------------------
// Progress: bytes stored or in flight, against the whole model; rate over a sliding window of network bytes.

interface Tracker {
  bytesTotal: number;
  setFile(file: string, total: number, done: number): void;
  advance(n: number): void;
  finishFile(): void;
  emit(force?: boolean): void;
}

function tracker(bytesTotal: number, bytesDone: number, onProgress?: (p: DownloadProgress) => void): Tracker {
  let file = '';
  let fileTotal = 0;
  let fileDone = 0;
  let network = 0;
  let lastEmit = -Infinity;
  const samples: { t: number; n: number }[] = [{ t: performance.now(), n: 0 }];
  const rate = (now: number): number => {
    while (samples.length > 2 && now - samples[1].t > RATE_WINDOW_MS) samples.shift();
    const dt = (now - samples[0].t) / 1000;
    return dt >= 0.2 ? (network - samples[0].n) / dt : 0;
  };
  const t: Tracker = {
    bytesTotal,
    setFile(name, total, done) {
      file = name;
      fileTotal = total;
      fileDone = done;
    },
    advance(n) {
      fileDone += n;
      network += n;
      t.emit();
    },
    finishFile() {
      bytesDone += fileTotal;
      fileDone = fileTotal = 0;
    },
    emit(force = false) {
      const now = performance.now();
      if (!onProgress || (!force && now - lastEmit < PROGRESS_INTERVAL_MS)) return;
      lastEmit = now;
      samples.push({ t: now, n: network });
      const done = Math.min(t.bytesTotal, bytesDone + fileDone);
      const bps = rate(now);
      const left = t.bytesTotal - done;
      onProgress({
        file, fileBytesDone: fileDone, fileBytesTotal: fileTotal, bytesDone: done, bytesTotal: t.bytesTotal,
        bytesPerSecond: bps, etaSeconds: left === 0 ? 0 : bps > 0 ? left / bps : Infinity,
      });
    },
  };
  return t;
}

// ---------------------------------------------------------------------------------------------------------------
// One download session.

interface Ctx {
  modelId: string;
  baseUrl: string;
  store: UseStore;
  /** fetch, headers, signal, retries, backoff and timeouts, as fetch-range.ts takes them. */
  policy: FetchPolicy;
  signal?: AbortSignal;
  chunkBytes: number;
  track: Tracker;
}

function context(modelId: string, baseUrl: string, opts: DownloadOptions, track: Tracker): Ctx {
  const chunkBytes = opts.chunkBytes ?? 64 * MiB;
  if (!Number.isSafeInteger(chunkBytes) || chunkBytes < 64) throw new RangeError(`chunkBytes must be an integer ≥ 64, got ${chunkBytes}`);
  const stallMs = opts.stallMs ?? 30_000;
  const policy: FetchPolicy = {
    fetch: opts.fetch, headers: opts.headers ?? {}, signal: opts.signal,
    retries: opts.retries ?? 4, backoffMs: opts.backoffMs ?? 500, maxBackoffMs: opts.maxBackoffMs,
    stallMs, headersTimeoutMs: opts.headersTimeoutMs ?? stallMs,
  };
  return { modelId, baseUrl, store: opts.store ?? cacheStore(), policy, signal: opts.signal, chunkBytes, track };
}

function isRetryable(e: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return false;
  if (e instanceof HttpError) return e.retryable;
  if (e instanceof TransientError) return true;
  if (e instanceof IntegrityError || e instanceof QuotaError || e instanceof FormatError || isNotFound(e)) return false;
  if (e instanceof ModelDeletedError) return false;
  // fetch and stream reads reject with TypeError (or a DOMException) on network failures.
  return true;
}

/**
 * Runs `attempt` until it succeeds, retrying transient failures with exponential backoff. `progressed` says
 * whether the failed attempt stored something; a download that keeps moving is never given up on.
 */
function withRetries<T>(ctx: Ctx, what: string, attempt: () => Promise<T>, progressed?: () => Promise<boolean>): Promise<T> {
  return retrying(what, attempt, { ...ctx.policy, isRetryable: (e) => isRetryable(e, ctx.signal), progressed });
}

/** A request of this download under the headers deadline and the stall watchdog. */
function watched(ctx: Ctx, url: string, headers: Record<string, string>): Watched {
  return watchedFetch(url, { headers, cache: 'no-store' }, ctx.policy);
}


function freshRecord(ctx: Ctx, file: string, size: number, sha256?: string): FileRecord {
  return {
    modelId: ctx.modelId, file, size, chunkBytes: ctx.chunkBytes, chunks: 0, chunkSha256: [],
    sha256, hashState: sha256 ? new Sha256().save() : undefined, complete: false,
  };
}

/** Bytes chunk k of a file holds (the last one is short; unknown sizes fill whole chunks until the end). */
function chunkLength(rec: FileRecord, k: number): number {
  return rec.size < 0 ? rec.chunkBytes : Math.max(0, Math.min(rec.chunkBytes, rec.size - k * rec.chunkBytes));
}

/** Stores chunk k and returns the record that now counts it (hashes updated). */
async function storeChunk(ctx: Ctx, rec: FileRecord, bytes: Uint8Array, hasher: Sha256 | null): Promise<FileRecord> {
  const k = rec.chunks;
  const sha = await sha256Hex(bytes);
  hasher?.update(bytes);
  const next: FileRecord = { ...rec, chunks: k + 1, chunkSha256: [...rec.chunkSha256, sha], hashState: hasher?.save() };
  try {
    await putChunk(next, k, bytes, ctx.store);
  } catch (e) {
    if (e instanceof QuotaError) {
      const left = ctx.track.bytesTotal - (await listCachedModels(ctx.store).then((ms) => ms.find((m) => m.modelId === ctx.modelId)?.bytes ?? 0));
      throw new QuotaError(ctx.modelId, left, e.freeBytes, e.refused);
    }
    throw e;
  }
  // Chunks are large in practice, so one event per stored chunk is cheap and keeps the bar moving on fast links.
  ctx.track.emit(true);
  return next;
}

interface Opened {
  rec: FileRecord;
  res: Response;
  offset: number;
}

/**
 * Reconciles what the response says with what is stored: a server that ignored Range, or a file that changed on
 * the server since the stored chunks were fetched, restarts the file from byte 0.
 */
async function reconcile(ctx: Ctx, rec: FileRecord, res: Response, url: string, start: number): Promise<Opened> {
  const sha = announcedSha256(res.headers);
  const etag = strongEtag(res.headers);
  let total: number | null;
  if (res.status === 206) {
    const cr = parseContentRange(res.headers.get('content-range'));
    if (!cr || cr.start !== start) {
      await res.body?.cancel().catch(() => undefined);
      throw new IntegrityError(`${url}: asked for bytes from ${start}, server answered Content-Range ${JSON.stringify(res.headers.get('content-range'))}`);
    }
    total = cr.total;
  } else {
    const len = res.headers.get('content-length');
    total = len !== null && !res.headers.get('content-encoding') ? Number(len) : null;
  }
  if (start > 0) {
    const changed = res.status !== 206 ||
      (total !== null && rec.size >= 0 && total !== rec.size) ||
      (sha !== undefined && rec.sha256 !== undefined && sha !== rec.sha256) ||
      (etag !== undefined && rec.etag !== undefined && etag !== rec.etag);
    if (changed) {
      const fresh = freshRecord(ctx, rec.file, total ?? rec.size, sha ?? rec.sha256);
      await resetFile(fresh, ctx.store);
      if (res.status !== 206) return adopt(fresh, res, total, sha, etag);
      // The stored part belongs to an older version of the file; fetch the new one from the start.
      await res.body?.cancel().catch(() => undefined);
      throw new TransientError(`${url}: the file changed on the server during the download; starting it again`);
    }
  }
  return adopt(rec, res, total, sha, etag, start);
}

function adopt(rec: FileRecord, res: Response, total: number | null, sha: string | undefined, etag: string | undefined, offset = 0): Opened {
  const next = { ...rec, etag: rec.etag ?? etag };
  if (total !== null) next.size = total;
  if (next.sha256 === undefined && sha !== undefined) {
    next.sha256 = sha;
    // Hashing can only start at byte 0; a hash first seen on a resume is checked from the stored chunks instead.
    next.hashState = offset === 0 ? new Sha256().save() : undefined;
  }
  return { rec: next, res, offset };
}

/** Streams the rest of one file into chunks; resolves with the record once every byte is stored. */
async function fetchRest(ctx: Ctx, recIn: FileRecord): Promise<FileRecord> {
  const start = recIn.chunks * recIn.chunkBytes;
  if (recIn.size >= 0 && start >= recIn.size) return recIn;
  const url = joinUrl(ctx.baseUrl, recIn.file);
  const w = watched(ctx, url, start > 0 ? { Range: `bytes=${start}-` } : {});
  try {
    const res = await w.response;
    await checkStatus(res, url, () => new FileNotFoundError(recIn.file, ctx.baseUrl));
    const opened = await reconcile(ctx, recIn, res, url, start);
    // The response's length is the truth; the listing's size only planned the totals.
    if (recIn.size >= 0 && opened.rec.size >= 0) ctx.track.bytesTotal += opened.rec.size - recIn.size;
    ctx.track.setFile(recIn.file, Math.max(0, opened.rec.size), storedBytes(opened.rec));
    return await streamChunks(ctx, opened, url, w);
  } finally {
    w.done();
  }
}

async function streamChunks(ctx: Ctx, { rec: recIn, res, offset: start }: Opened, url: string, w: Watched): Promise<FileRecord> {
  let rec = recIn;
  if (!res.body) throw new TransientError(`${url}: response has no body`);
  const reader = res.body.getReader();
  const hasher = rec.hashState ? Sha256.restore(rec.hashState) : null;
  let offset = start;
  let buf = new Uint8Array(chunkLength(rec, rec.chunks));
  let fill = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read().catch((e) => { throw w.wrap(e); });
      if (done) break;
      w.touch();
      let pos = 0;
      while (pos < value.byteLength) {
        if (buf.byteLength === 0) throw new IntegrityError(`${url}: server sent more than the ${rec.size} bytes it announced`);
        const n = Math.min(buf.byteLength - fill, value.byteLength - pos);
        buf.set(value.subarray(pos, pos + n), fill);
        fill += n;
        pos += n;
        offset += n;
        ctx.track.advance(n);
        if (fill === buf.byteLength) {
          w.pause();
          rec = await storeChunk(ctx, rec, buf, hasher);
          w.touch();
          buf = new Uint8Array(chunkLength(rec, rec.chunks));
          fill = 0;
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
  if (rec.size < 0) {
    // No usable length up front (compressed): the end of the stream defines the size.
    if (fill > 0) rec = await storeChunk(ctx, { ...rec, size: offset }, buf.slice(0, fill), hasher);
    return { ...rec, size: offset };
  }
  if (offset < rec.size) throw new TransientError(`${url}: connection closed at byte ${offset} of ${rec.size}`);
  return rec;
}

/** A ByteSource over one file's stored chunks, complete or not (for checks before it is marked complete). */
function storedFileSource(ctx: Ctx, rec: FileRecord): ByteSource {
  return {
    describe: () => `cache:${ctx.modelId}`,
    size: async () => storedBytes(rec),
    read: (_file, offset, length) => readStoredRange(rec, offset, length, (k) => loadChunk(rec, k, ctx.store)),
  };
}

export async function hashStoredFile(rec: FileRecord, store: UseStore = cacheStore()): Promise<string> {
  const h = new Sha256();
  for (let k = 0; k < rec.chunks; k++) h.update(await loadChunk(rec, k, store));
  return h.hex();
}

/** The size the safetensors header implies (end of its last tensor) must be the file's size. */
async function checkSafetensors(ctx: Ctx, rec: FileRecord): Promise<void> {
  let header;
  try {
    header = await parseSafetensorsHeader(rec.file, storedFileSource(ctx, rec));
  } catch (e) {
    if (e instanceof FormatError) throw new IntegrityError(`${ctx.modelId}/${rec.file}: downloaded file is not valid safetensors: ${e.message}`);
    throw e;
  }
  let end = header.dataStart;
  for (const t of header.tensors.values()) end = Math.max(end, t.end);
  if (end !== rec.size) {
    throw new IntegrityError(`${ctx.modelId}/${rec.file}: safetensors header says the data ends at byte ${end} but the file has ${rec.size} bytes (truncated or padded download)`);
  }
}

async function verifyFile(ctx: Ctx, rec: FileRecord): Promise<void> {
  if (rec.file.endsWith('.safetensors')) await checkSafetensors(ctx, rec);
  if (!rec.sha256) return;
  const actual = rec.hashState ? Sha256.restore(rec.hashState).hex() : await hashStoredFile(rec, ctx.store);
  if (actual !== rec.sha256) {
    throw new IntegrityError(`${ctx.modelId}/${rec.file}: sha256 mismatch: the server announced ${rec.sha256} but the ` +
      `downloaded bytes hash to ${actual}; the file's chunks were deleted, download it again`);
  }
}

async function downloadFile(ctx: Ctx, spec: { name: string; size: number; sha256?: string }): Promise<void> {
  const stored = await getFileRecord(ctx.modelId, spec.name, ctx.store);
  let rec = stored && (stored.size < 0 || stored.size === spec.size) && (!spec.sha256 || !stored.sha256 || stored.sha256 === spec.sha256)
    ? stored : freshRecord(ctx, spec.name, spec.size, spec.sha256);
  if (rec !== stored) await resetFile(rec, ctx.store);
  ctx.track.setFile(spec.name, spec.size, storedBytes(rec));
  if (!rec.complete) {
    const what = `${ctx.modelId}/${spec.name}`;
    let last = rec.chunks;
    rec = await withRetries(ctx, what, () => fetchRest(ctx, rec), async () => {
      // The stored record is the truth after a failure; buffered bytes beyond it are lost.
      rec = (await getFileRecord(ctx.modelId, spec.name, ctx.store)) ?? rec;
      ctx.track.setFile(spec.name, Math.max(0, rec.size), storedBytes(rec));
      const moved = rec.chunks > last;
      last = rec.chunks;
      return moved;
    });
    try {
      await verifyFile(ctx, rec);
    } catch (e) {
      if (e instanceof IntegrityError) await resetFile(freshRecord(ctx, spec.name, spec.size, spec.sha256), ctx.store);
      throw e;
    }
    rec = { ...rec, complete: true, hashState: undefined };
    await putFileRecord(rec, ctx.store);
  }
  ctx.track.finishFile();
}

/** Fills in sizes the caller did not give, with HEAD requests (retried like downloads). */
async function sizedFiles(ctx: Ctx, files: readonly FileSpec[]): Promise<ModelFile[]> {
  // Retried here, around the whole probe, like the downloads themselves.
  const head = httpSource(ctx.baseUrl, { ...ctx.policy, retries: 0 });
  return Promise.all(files.map(async (f) => {
    const spec = typeof f === 'string' ? { name: f } : f;
    if (spec.size !== undefined) return { name: spec.name, size: spec.size, sha256: spec.sha256?.toLowerCase() };
    const rec = await getFileRecord(ctx.modelId, spec.name, ctx.store);
    const size = rec && rec.size >= 0 ? rec.size
      : await withRetries(ctx, `${ctx.modelId}/${spec.name}`, () => head.size(spec.name));
    return { name: spec.name, size, sha256: spec.sha256?.toLowerCase() };
  }));
}

/** Refuses, with numbers, a download the storage quota cannot hold; asks for persistent storage on the way. */
async function checkQuota(modelId: string, needed: number): Promise<void> {
  const storage = (globalThis as { navigator?: Navigator }).navigator?.storage;
  // Not awaited: some browsers ask the user, and the answer must not hold up the download.
  if (storage?.persist) void storage.persist().catch(() => undefined);
  if (needed <= 0) return;
  const free = await freeBytes();
  if (free !== null && free < needed) throw new QuotaError(modelId, needed, free);
}

async function remainingBytes(ctx: Ctx, files: ModelFile[]): Promise<number> {
  const recs = new Map((await getFileRecords(ctx.modelId, ctx.store)).map((r) => [r.file, r]));
  return files.reduce((n, f) => {
    const r = recs.get(f.name);
    return n + f.size - (r && r.size === f.size ? storedBytes(r) : 0);
  }, 0);
}

function emitDone(files: { name: string; size: number }[], onProgress?: (p: DownloadProgress) => void): void {
  const total = files.reduce((n, f) => n + f.size, 0);
  const last = files.at(-1) ?? { name: '', size: 0 };
  const t = tracker(total, total - last.size, onProgress);
  t.setFile(last.name, last.size, last.size);
  t.emit(true);
}

/**
 * Downloads `files` of a model into the cache (resuming whatever is stored), checks them and marks the model
 * complete. Safe to call again after any failure; a model already complete costs no request.
 */
export async function downloadModel(modelId: string, baseUrl: string, files: readonly FileSpec[], opts: DownloadOptions = {}): Promise<CachedModel> {
  const ctx = context(modelId, baseUrl, opts, tracker(0, 0));
  return withModelLock(modelId, opts.signal, async () => {
    const model = await getModelRecord(modelId, ctx.store);
    const names = files.map((f) => (typeof f === 'string' ? f : f.name));
    const known = model?.complete && names.every((n) => model.files.some((f) => f.name === n));
    const sized = known ? model.files.filter((f) => names.includes(f.name)) : await sizedFiles(ctx, files);
    const total = sized.reduce((n, f) => n + f.size, 0);
    let final = sized.map(({ name, size }) => ({ name, size }));
    if (!known) {
      await checkQuota(modelId, await remainingBytes(ctx, sized));
      await putModelRecord({ modelId, baseUrl, files: final, complete: false, updatedAt: Date.now() }, ctx.store);
      ctx.track = tracker(total, 0, opts.onProgress);
      for (const f of sized) await downloadFile(ctx, f);
      // Sizes as the downloads found them (a file may have changed since it was listed).
      const recs = new Map((await getFileRecords(modelId, ctx.store)).map((r) => [r.file, r]));
      final = final.map((f) => ({ name: f.name, size: recs.get(f.name)?.size ?? f.size }));
      await putModelRecord({ modelId, baseUrl, files: final, complete: true, updatedAt: Date.now() }, ctx.store);
    }
    emitDone(final, opts.onProgress);
    return (await listCachedModels(ctx.store)).find((m) => m.modelId === modelId)!;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Re-verification of a cached model.

export interface VerifyOptions extends Omit<DownloadOptions, 'chunkBytes' | 'onProgress'> {
  /** Where to re-fetch bad chunks; default the base URL the model was downloaded from. */
  baseUrl?: string;
  /** Also recompute each file's whole sha256 (where the server announced one) from the stored chunks. */
  fullHash?: boolean;
  onProgress?: (p: { file: string; chunk: number; chunks: number }) => void;
}

export interface VerifyResult {
  checkedChunks: number;
  /** Chunks whose stored bytes did not match their hash, deleted and fetched again. */
  refetched: { file: string; chunk: number }[];
}

/** Fetches bytes [from, to) of a file; a server that ignores Range is read up to `to` and cut off. */
function fetchRange(ctx: Ctx, rec: FileRecord, from: number, to: number): Promise<Uint8Array> {
  return fetchRangeOnce(joinUrl(ctx.baseUrl, rec.file), from, to, {
    ...ctx.policy, notFound: () => new FileNotFoundError(rec.file, ctx.baseUrl), total: rec.size >= 0 ? rec.size : undefined,
  });
}

/** A verified-bad chunk that could not be re-fetched: the file is cut back to it so a download resumes there. */
async function truncateAt(ctx: Ctx, rec: FileRecord, k: number): Promise<void> {
  for (let j = k; j < rec.chunks; j++) await deleteChunk(ctx.modelId, rec.file, j, ctx.store);
  await putFileRecord({ ...rec, chunks: k, chunkSha256: rec.chunkSha256.slice(0, k), hashState: undefined, complete: false }, ctx.store);
  const model = await getModelRecord(ctx.modelId, ctx.store);
  if (model) await putModelRecord({ ...model, complete: false, updatedAt: Date.now() }, ctx.store);
}

async function verifyChunk(ctx: Ctx, rec: FileRecord, k: number): Promise<boolean> {
  const bytes = await getChunk(ctx.modelId, rec.file, k, ctx.store);
  if (bytes && bytes.byteLength === chunkLength(rec, k) && (await sha256Hex(bytes)) === rec.chunkSha256[k]) return true;
  await deleteChunk(ctx.modelId, rec.file, k, ctx.store);
  try {
    const from = k * rec.chunkBytes;
    const fresh = await withRetries(ctx, `${ctx.modelId}/${rec.file} chunk ${k}`, () => fetchRange(ctx, rec, from, from + chunkLength(rec, k)));
    if ((await sha256Hex(fresh)) !== rec.chunkSha256[k]) {
      throw new IntegrityError(`${ctx.modelId}/${rec.file}: re-fetched chunk ${k} does not match the hash recorded at download (the file changed on the server?); delete the model and download it again`);
    }
    await replaceChunk(ctx.modelId, rec.file, k, fresh, ctx.store);
  } catch (e) {
    await truncateAt(ctx, rec, k);
    throw e;
  }
  return false;
}

/**
 * Re-reads every stored chunk of a model against the sha256 recorded when it was stored; a chunk that differs is
 * deleted and fetched again alone with a Range request. Memory stays at one chunk.
 */
export async function verifyModel(modelId: string, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const store = opts.store ?? cacheStore();
  const model = await getModelRecord(modelId, store);
  if (!model) throw new Error(`${modelId}: not in the cache`);
  const ctx = context(modelId, opts.baseUrl ?? model.baseUrl, { ...opts, onProgress: undefined, store }, tracker(0, 0));
  return withModelLock(modelId, opts.signal, async () => {
    const result: VerifyResult = { checkedChunks: 0, refetched: [] };
    const recs = new Map((await getFileRecords(modelId, store)).map((r) => [r.file, r]));
    for (const f of model.files) {
      const rec = recs.get(f.name);
      if (!rec) continue;
      for (let k = 0; k < rec.chunks; k++) {
        throwIfAborted(opts.signal);
        opts.onProgress?.({ file: rec.file, chunk: k, chunks: rec.chunks });
        if (!(await verifyChunk(ctx, rec, k))) result.refetched.push({ file: rec.file, chunk: k });
        result.checkedChunks++;
      }
      if (opts.fullHash && rec.complete && rec.sha256) {
        const actual = await hashStoredFile(rec, store);
        if (actual !== rec.sha256) {
          throw new IntegrityError(`${modelId}/${rec.file}: sha256 of the stored file is ${actual}, the server announced ${rec.sha256}`);
        }
      }
    }
    return result;
  });
}
