// ByteSource over a model in the shard cache: a read loads only the chunks its range touches, checks each chunk
// against the sha256 recorded when it was downloaded, and keeps the last few in memory because the loader reads
// neighbouring tensors one after another. Storage can lose or rot a chunk while the records still say complete
// (eviction, a cleared entry, a bad disk); such a chunk is fetched again alone with a Range request, checked
// against the same hash and stored in place of the bad one, so a load never goes on with bytes it cannot vouch for.

import { FileNotFoundError, type ByteSource } from '../format/safetensors.ts';
import { IntegrityError, Sha256, downloadModel, toHex, type DownloadOptions, type FileSpec } from './download.ts';
import { modelFiles } from './hub.ts';
import { httpSource, joinUrl } from './http-source.ts';
import {
  cacheStore, getChunk, getFileRecord, getFileRecords, getModelRecord, isModelCached, putModelRecord, readStoredRange,
  replaceChunk, storedBytes, storedChunkBytes, type FileRecord, type ModelRecord, type UseStore,
} from './shard-cache.ts';

/** A stored chunk that failed its check and was fetched again (the cache is repaired). */
export interface ChunkRefetch {
  file: string;
  chunk: number;
  /** Byte range [from, to) of the file. */
  from: number;
  to: number;
  /** What was wrong with the stored chunk. */
  reason: string;
}

export interface CachedSourceOptions {
  store?: UseStore;
  /** Chunks kept in memory between reads (default 2: at most 128 MiB with the default chunk size). */
  cacheChunks?: number;
  /** Where a chunk that fails its check is fetched again; without it, such a chunk is an error that names it. */
  baseUrl?: string;
  fetch?: typeof fetch;
  /** Extra request headers for re-fetches, e.g. Authorization for gated repos. */
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /**
   * Called once per repaired chunk. Default: console.warn, because a repair means the browser's storage lost or
   * damaged data, which someone debugging slow loads or a flaky disk wants to see.
   */
  onRefetch?: (r: ChunkRefetch) => void;
}

/** A cached chunk that is bad and could not be replaced by verified bytes. */
export class CachedChunkError extends IntegrityError {
  constructor(
    readonly modelId: string, readonly file: string, readonly chunk: number,
    /** Byte range [from, to) of the file. */
    readonly from: number, readonly to: number,
    message: string, options?: { cause?: unknown },
  ) {
    super(message);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
    this.name = 'CachedChunkError';
  }
}

/** crypto.subtle where present (native, and off the JS thread in browsers); insecure contexts lack it. */
async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) return new Sha256().update(bytes).hex();
  return toHex(new Uint8Array(await subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>)));
}

/** What is wrong with stored chunk k, or null when it is sound. */
async function chunkFault(rec: FileRecord, k: number, stored: unknown): Promise<string | null> {
  const want = storedChunkBytes(rec, k);
  if (stored === undefined) return 'is missing';
  if (!(stored instanceof Uint8Array)) return 'is not a byte array';
  if (stored.byteLength !== want) return `has ${stored.byteLength} bytes, expected ${want}`;
  // Every record download.ts writes has a hash per chunk; a record without one (older or foreign data) can only be
  // checked for length, and a missing chunk re-fetched for it is accepted on length alone as well.
  const sha = rec.chunkSha256?.[k];
  if (sha === undefined) return null;
  const found = await sha256Hex(stored);
  return found === sha ? null : `does not match the sha256 recorded at download (found ${found}, expected ${sha})`;
}

function describeError(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  // Node's fetch says only "fetch failed"; the reason (ECONNREFUSED, a DNS failure) is in its cause.
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause.message : '';
  return cause && !msg.includes(cause) ? `${msg}: ${cause}` : msg;
}

export function cachedSource(modelId: string, opts: CachedSourceOptions = {}): ByteSource {
  const store = opts.store ?? cacheStore();
  const keep = Math.max(1, opts.cacheChunks ?? 2);
  const where = `cache:${modelId}`;
  const records = new Map<string, Promise<FileRecord>>();
  // Insertion order is recency order: a hit is moved to the end, the oldest entry is evicted. An entry is a
  // checked chunk, so a chunk is hashed once per trip from storage, not once per read.
  const recent = new Map<string, Promise<Uint8Array>>();
  const onRefetch = opts.onRefetch ?? ((r: ChunkRefetch) => {
    console.warn(`${modelId}/${r.file}: cached chunk ${r.chunk} (bytes ${r.from}-${r.to - 1}) ${r.reason}; ` +
      'fetched it again and repaired the cache');
  });

  const record = (file: string): Promise<FileRecord> => {
    let p = records.get(file);
    if (!p) {
      p = getFileRecord(modelId, file, store).then(async (rec) => {
        if (!rec) {
          // Not found would be wrong for a file the model has: the loader treats absent files as optional.
          const model = await getModelRecord(modelId, store);
          if (model?.files.some((f) => f.name === file)) {
            throw new Error(`${where}: the record of ${file} is gone from the cache although the model lists it ` +
              '(browser storage was partly cleared); load the model again to download it again, or delete the cached model');
          }
          throw new FileNotFoundError(file, where);
        }
        if (!rec.complete) throw new Error(`${where}: ${file} is only partly downloaded (${rec.chunks} chunks); finish the download first`);
        return rec;
      });
      records.set(file, p);
      p.catch(() => records.delete(file));
    }
    return p;
  };

  const refetch = async (rec: FileRecord, k: number, fault: string): Promise<Uint8Array> => {
    const from = k * rec.chunkBytes;
    const length = storedChunkBytes(rec, k);
    const to = from + length;
    const bad = `${modelId}/${rec.file}: cached chunk ${k} (bytes ${from}-${to - 1}) ${fault}`;
    const fail = (msg: string, cause?: unknown) => new CachedChunkError(modelId, rec.file, k, from, to, msg, { cause });
    if (!opts.baseUrl) {
      throw fail(`${bad}, and there is no base URL to fetch it again from: delete the cached model and load it again`);
    }
    const url = joinUrl(opts.baseUrl, rec.file);
    const base = opts.fetch ?? globalThis.fetch.bind(globalThis);
    const signal = opts.signal;
    const doFetch: typeof fetch = signal ? (input, init) => base(input, { ...init, signal }) : base;
    let fresh: Uint8Array;
    try {
      // A source of its own per re-fetch: against a server that ignores Range it holds the whole file, which
      // must not outlive this chunk.
      fresh = await httpSource(opts.baseUrl, { fetch: doFetch, headers: opts.headers }).read(rec.file, from, length);
    } catch (e) {
      if (signal?.aborted) throw signal.reason ?? e;
      // Wrapped whatever it was: a 404 passed on as "not found" would make the loader treat the file as optional.
      throw fail(`${bad}; fetching it again from ${url} failed (${describeError(e)}): check the connection and load ` +
        'again, or delete the cached model and load it again', e);
    }
    if (fresh.byteLength !== fresh.buffer.byteLength) fresh = fresh.slice();
    const sha = rec.chunkSha256?.[k];
    if (sha !== undefined) {
      const found = await sha256Hex(fresh);
      if (found !== sha) {
        throw fail(`${bad}, and the bytes the server sends now (${url}) do not match that hash either (found ${found}): ` +
          'the file changed on the server since it was cached; delete the cached model and load it again');
      }
    }
    await replaceChunk(modelId, rec.file, k, fresh, store);
    onRefetch({ file: rec.file, chunk: k, from, to, reason: fault });
    return fresh;
  };

  const checkedChunk = async (rec: FileRecord, k: number): Promise<Uint8Array> => {
    const stored = await getChunk(modelId, rec.file, k, store);
    const fault = await chunkFault(rec, k, stored);
    return fault === null ? (stored as Uint8Array) : refetch(rec, k, fault);
  };

  const chunk = (rec: FileRecord, k: number): Promise<Uint8Array> => {
    const key = `${rec.file}\u0000${k}`;
    let p = recent.get(key);
    if (p) {
      recent.delete(key);
    } else {
      p = checkedChunk(rec, k);
      p.catch(() => recent.delete(key));
    }
    recent.set(key, p);
    while (recent.size > keep) recent.delete(recent.keys().next().value!);
    return p;
  };

  return {
    describe: () => where,
    size: async (file) => (await record(file)).size,
    read: async (file, offset, length) => {
      const rec = await record(file);
      return readStoredRange(rec, offset, length, (k) => chunk(rec, k));
    },
  };
}

export interface CachedOrRemoteOptions extends DownloadOptions, CachedSourceOptions {
  /** Files to fetch; default the list of an earlier, unfinished download, else modelFiles() of the server. */
  files?: FileSpec[];
}

/** Every file of the model still has a complete record covering its size (eviction can drop an entry). */
async function everyFileStored(model: ModelRecord, store: UseStore): Promise<boolean> {
  const recs = new Map((await getFileRecords(model.modelId, store)).map((r) => [r.file, r]));
  return model.files.every((f) => {
    const r = recs.get(f.name);
    return !!r && r.complete && r.size === f.size && storedBytes(r) === r.size;
  });
}

/**
 * The cached model, after downloading whatever is missing (with progress, resumable). Chunks that turn out bad
 * while the model is read are fetched again from `baseUrl`.
 */
export async function cachedOrRemoteSource(modelId: string, baseUrl: string, opts: CachedOrRemoteOptions = {}): Promise<ByteSource> {
  const store = opts.store ?? cacheStore();
  const model = await getModelRecord(modelId, store);
  if (model?.complete && !(await everyFileStored(model, store))) {
    // Reopened so that downloadModel, which trusts a complete model, fetches the files whose records are gone.
    await putModelRecord({ ...model, complete: false, updatedAt: Date.now() }, store);
  }
  if (!(await isModelCached(modelId, store))) {
    const files = opts.files ?? (await getModelRecord(modelId, store))?.files ??
      (await modelFiles(httpSource(baseUrl, { fetch: opts.fetch, headers: opts.headers })));
    await downloadModel(modelId, baseUrl, files, { ...opts, store });
  }
  return cachedSource(modelId, {
    store, cacheChunks: opts.cacheChunks, baseUrl, fetch: opts.fetch, headers: opts.headers, signal: opts.signal,
    onRefetch: opts.onRefetch,
  });
}
