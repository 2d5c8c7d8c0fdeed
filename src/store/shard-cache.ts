// IndexedDB shard cache: every file of a model is kept as fixed-size chunks, each its own entry, so a download can
// stop anywhere and resume, a corrupt chunk can be replaced alone, and readers load only the chunks they touch.
// One object store holds three kinds of entries, told apart by the first key element (array keys sort by element,
// so each kind and each model is a contiguous key range):
//   ['model', modelId]            → ModelRecord (file list and sizes; complete once every file is verified)
//   ['file',  modelId, file]      → FileRecord  (how many chunks are stored, their hashes, resume state)
//   ['chunk', modelId, file, k]   → Uint8Array  (bytes [k·chunkBytes, (k+1)·chunkBytes) of the file)

import { createStore, promisifyRequest, type UseStore } from 'idb-keyval';

export type { UseStore };

export interface ModelRecord {
  modelId: string;
  baseUrl: string;
  files: { name: string; size: number }[];
  complete: boolean;
  updatedAt: number;
}

/** Incremental SHA-256 state between chunks, so a resumed download need not re-read what it stored. */
export interface HashState {
  h: number[];
  length: number;
  pending: Uint8Array;
}

export interface FileRecord {
  modelId: string;
  file: string;
  /** Total bytes; -1 while unknown (a compressed response without a usable length). */
  size: number;
  chunkBytes: number;
  /** Chunks 0 .. chunks-1 are stored; all are full except the last chunk of a complete file. */
  chunks: number;
  /** Hex sha256 of each stored chunk, for re-verification. */
  chunkSha256: string[];
  /** Whole-file sha256 the server announced (hub LFS files), hex. */
  sha256?: string;
  etag?: string;
  /** Whole-file hash state after the stored chunks; absent when no sha256 is known. */
  hashState?: HashState;
  /** Every chunk stored and the file checked (size, safetensors layout, sha256 when known). */
  complete: boolean;
}

export type { CachedModel } from '../api.ts';
import type { CachedModel } from '../api.ts';

/** Not enough storage for the model; what is already stored stays, so a later call resumes. */
export class QuotaError extends Error {
  /** `refused`: IndexedDB threw QuotaExceededError (the estimate may still claim space: browsers keep reserves). */
  constructor(readonly modelId: string, readonly neededBytes: number, readonly freeBytes: number | null, readonly refused = false) {
    const free = freeBytes === null ? 'storage is full' : `${fmtGB(freeBytes)} free`;
    const why = refused ? `the browser refused to store more (QuotaExceededError; it reports ${free})` : free;
    super(`${modelId}: not enough browser storage: needs ${fmtGB(neededBytes)}, ${why}` +
      ' (free some space or delete other cached models; what is stored so far is kept)');
    this.name = 'QuotaError';
  }
}

/** Gigabytes with enough digits that tiny test sizes do not print as 0.00. */
export function fmtGB(bytes: number): string {
  const gb = bytes / 1e9;
  return `${gb >= 0.1 ? gb.toFixed(2) : gb.toPrecision(3)} GB`;
}

let defaultStore: UseStore | undefined;

/** The cache's store; created on first use so importing this module never touches indexedDB. */
export function cacheStore(): UseStore {
  defaultStore ??= createStore('qwen-webgpu-cache', 'entries');
  return defaultStore;
}

const modelKey = (modelId: string): IDBValidKey => ['model', modelId];
const fileKey = (modelId: string, file: string): IDBValidKey => ['file', modelId, file];
const chunkKey = (modelId: string, file: string, k: number): IDBValidKey => ['chunk', modelId, file, k];

/** Every key starting with `prefix` (an empty array sorts after every string and number). */
function prefixRange(...prefix: IDBValidKey[]): IDBKeyRange {
  return IDBKeyRange.bound(prefix, [...prefix, []]);
}

function isQuotaExceeded(e: unknown): boolean {
  return !!e && typeof e === 'object' && (e as { name?: unknown }).name === 'QuotaExceededError';
}

/** Resolves when the transaction commits; an explicit abort has no error, so it gets one. */
function committed(tx: IDBTransaction, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = tx.onabort = () => reject(tx.error ?? new Error(`${what}: transaction aborted`));
  });
}

export function getModelRecord(modelId: string, store = cacheStore()): Promise<ModelRecord | undefined> {
  return store('readonly', (s) => promisifyRequest(s.get(modelKey(modelId))));
}

export function putModelRecord(rec: ModelRecord, store = cacheStore()): Promise<void> {
  return store('readwrite', (s) => {
    s.put(rec, modelKey(rec.modelId));
    return committed(s.transaction, rec.modelId);
  });
}

export function getFileRecord(modelId: string, file: string, store = cacheStore()): Promise<FileRecord | undefined> {
  return store('readonly', (s) => promisifyRequest(s.get(fileKey(modelId, file))));
}

export function getFileRecords(modelId: string, store = cacheStore()): Promise<FileRecord[]> {
  return store('readonly', (s) => promisifyRequest(s.getAll(prefixRange('file', modelId))));
}

export function putFileRecord(rec: FileRecord, store = cacheStore()): Promise<void> {
  return store('readwrite', (s) => {
    s.put(rec, fileKey(rec.modelId, rec.file));
    return committed(s.transaction, `${rec.modelId}/${rec.file}`);
  });
}

export class ModelDeletedError extends Error {
  constructor(modelId: string) {
    super(`${modelId}: the model was deleted from the cache while it was downloading`);
    this.name = 'ModelDeletedError';
  }
}

/**
 * Stores chunk `k` together with the file record that counts it, in one transaction, so the record never claims a
 * chunk that is not there. Fails with ModelDeletedError when the model record vanished meanwhile (deleted from
 * another tab), and with QuotaError when storage is full; earlier chunks stay either way.
 */
export async function putChunk(rec: FileRecord, k: number, bytes: Uint8Array, store = cacheStore()): Promise<void> {
  // Structured clone copies a view's whole buffer; store exactly the chunk's bytes.
  const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
  let deleted = false;
  try {
    await store('readwrite', (s) => {
      const done = committed(s.transaction, `${rec.modelId}/${rec.file} chunk ${k}`);
      const probe = s.count(modelKey(rec.modelId));
      probe.onsuccess = () => {
        if (probe.result > 0) return;
        deleted = true;
        s.transaction.abort();
      };
      s.put(own, chunkKey(rec.modelId, rec.file, k));
      s.put(rec, fileKey(rec.modelId, rec.file));
      return done;
    });
  } catch (e) {
    if (deleted) throw new ModelDeletedError(rec.modelId);
    if (isQuotaExceeded(e)) throw new QuotaError(rec.modelId, bytes.byteLength, await freeBytes(), true);
    throw e;
  }
}

export function getChunk(modelId: string, file: string, k: number, store = cacheStore()): Promise<Uint8Array | undefined> {
  return store('readonly', (s) => promisifyRequest(s.get(chunkKey(modelId, file, k))));
}

/** Replaces one stored chunk (re-verification); the file record is unchanged. */
export async function replaceChunk(modelId: string, file: string, k: number, bytes: Uint8Array, store = cacheStore()): Promise<void> {
  try {
    await store('readwrite', (s) => {
      s.put(bytes.slice(), chunkKey(modelId, file, k));
      return committed(s.transaction, `${modelId}/${file} chunk ${k}`);
    });
  } catch (e) {
    if (isQuotaExceeded(e)) throw new QuotaError(modelId, bytes.byteLength, await freeBytes(), true);
    throw e;
  }
}

export function deleteChunk(modelId: string, file: string, k: number, store = cacheStore()): Promise<void> {
  return store('readwrite', (s) => {
    s.delete(chunkKey(modelId, file, k));
    return committed(s.transaction, `${modelId}/${file} chunk ${k}`);
  });
}

/** Drops every chunk of one file and stores `rec` (normally a fresh, empty record) in the same transaction. */
export function resetFile(rec: FileRecord, store = cacheStore()): Promise<void> {
  return store('readwrite', (s) => {
    s.delete(prefixRange('chunk', rec.modelId, rec.file));
    s.put(rec, fileKey(rec.modelId, rec.file));
    return committed(s.transaction, `${rec.modelId}/${rec.file}`);
  });
}

/** Stored bytes of a file: full chunks, the last one cut at the file size. */
export function storedBytes(rec: FileRecord): number {
  const upTo = rec.chunks * rec.chunkBytes;
  return rec.size >= 0 ? Math.min(upTo, rec.size) : upTo;
}

/** Every model with at least a model record, complete or not. */
export async function listCachedModels(store = cacheStore()): Promise<CachedModel[]> {
  const models: ModelRecord[] = await store('readonly', (s) => promisifyRequest(s.getAll(prefixRange('model'))));
  return Promise.all(models.map(async (m) => {
    const recs = new Map((await getFileRecords(m.modelId, store)).map((r) => [r.file, r]));
    const bytes = m.files.reduce((n, f) => n + (recs.has(f.name) ? storedBytes(recs.get(f.name)!) : 0), 0);
    const totalBytes = m.files.reduce((n, f) => n + f.size, 0);
    return { modelId: m.modelId, baseUrl: m.baseUrl, files: m.files.map((f) => f.name), bytes, totalBytes, complete: m.complete };
  }));
}

/** Removes the model record, every file record and every chunk of the model, in one transaction. */
export function deleteCachedModel(modelId: string, store = cacheStore()): Promise<void> {
  return store('readwrite', (s) => {
    s.delete(prefixRange('chunk', modelId));
    s.delete(prefixRange('file', modelId));
    s.delete(modelKey(modelId));
    return committed(s.transaction, modelId);
  });
}

export async function isModelCached(modelId: string, store = cacheStore()): Promise<boolean> {
  return (await getModelRecord(modelId, store))?.complete === true;
}

/** quota − usage from navigator.storage.estimate(), or null where the API is missing or fails. */
export async function freeBytes(): Promise<number | null> {
  const storage = (globalThis as { navigator?: Navigator }).navigator?.storage;
  if (!storage?.estimate) return null;
  try {
    const { quota, usage } = await storage.estimate();
    return quota === undefined ? null : Math.max(0, quota - (usage ?? 0));
  } catch {
    return null;
  }
}

/**
 * Bytes [offset, offset+length) of a stored file, loading only the chunks the range touches. A range inside one
 * chunk comes back as a view of it, without a copy.
 */
export async function readStoredRange(
  rec: FileRecord, offset: number, length: number, load: (k: number) => Promise<Uint8Array>,
): Promise<Uint8Array> {
  const where = `${rec.modelId}/${rec.file}`;
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
    throw new RangeError(`${where}: bad read of ${length} bytes at ${offset}`);
  }
  if (offset + length > storedBytes(rec)) {
    throw new RangeError(`${where}: read of ${length} bytes at ${offset} is beyond the ${storedBytes(rec)} bytes stored`);
  }
  if (length === 0) return new Uint8Array(0);
  const cb = rec.chunkBytes;
  const first = Math.floor(offset / cb);
  const last = Math.floor((offset + length - 1) / cb);
  const chunks = await Promise.all(Array.from({ length: last - first + 1 }, (_, i) => load(first + i)));
  if (chunks.length === 1) return chunks[0].subarray(offset - first * cb, offset - first * cb + length);
  const out = new Uint8Array(length);
  let pos = 0;
  chunks.forEach((c, i) => {
    const from = i === 0 ? offset - first * cb : 0;
    const to = Math.min(c.byteLength, offset + length - (first + i) * cb);
    out.set(c.subarray(from, to), pos);
    pos += to - from;
  });
  return out;
}

/** Bytes stored chunk k of a file must have: chunkBytes, except the last one, cut at the stored end. */
export function storedChunkBytes(rec: FileRecord, k: number): number {
  return Math.max(0, Math.min(rec.chunkBytes, storedBytes(rec) - k * rec.chunkBytes));
}

/**
 * Chunk k of a stored file, checked for presence and length only (a cleared or damaged store fails here, by
 * name). Model loads go through cachedSource, which also checks each chunk's sha256 and repairs bad chunks.
 */
export async function loadChunk(rec: FileRecord, k: number, store = cacheStore()): Promise<Uint8Array> {
  const c = await getChunk(rec.modelId, rec.file, k, store);
  const want = storedChunkBytes(rec, k);
  if (!c || c.byteLength !== want) {
    const found = c ? `${c.byteLength} bytes, expected ${want}` : 'missing';
    throw new Error(`${rec.modelId}/${rec.file}: cached chunk ${k} is ${found} (run verifyModel or download the model again)`);
  }
  return c;
}
