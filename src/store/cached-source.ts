// ByteSource over a model in the shard cache: a read loads only the chunks its range touches, and keeps the last
// few in memory because the loader reads neighbouring tensors one after another.

import { FileNotFoundError, type ByteSource } from '../format/safetensors.ts';
import { downloadModel, type DownloadOptions, type FileSpec } from './download.ts';
import { modelFiles } from './hub.ts';
import { httpSource } from './http-source.ts';
import {
  cacheStore, getFileRecord, getModelRecord, isModelCached, loadChunk, readStoredRange, type FileRecord, type UseStore,
} from './shard-cache.ts';

export interface CachedSourceOptions {
  store?: UseStore;
  /** Chunks kept in memory between reads (default 2: at most 128 MiB with the default chunk size). */
  cacheChunks?: number;
}

export function cachedSource(modelId: string, opts: CachedSourceOptions = {}): ByteSource {
  const store = opts.store ?? cacheStore();
  const keep = Math.max(1, opts.cacheChunks ?? 2);
  const where = `cache:${modelId}`;
  const records = new Map<string, Promise<FileRecord>>();
  // Insertion order is recency order: a hit is moved to the end, the oldest entry is evicted.
  const recent = new Map<string, Promise<Uint8Array>>();

  const record = (file: string): Promise<FileRecord> => {
    let p = records.get(file);
    if (!p) {
      p = getFileRecord(modelId, file, store).then((rec) => {
        if (!rec) throw new FileNotFoundError(file, where);
        if (!rec.complete) throw new Error(`${where}: ${file} is only partly downloaded (${rec.chunks} chunks); finish the download first`);
        return rec;
      });
      records.set(file, p);
      p.catch(() => records.delete(file));
    }
    return p;
  };

  const chunk = (rec: FileRecord, k: number): Promise<Uint8Array> => {
    const key = `${rec.file}\u0000${k}`;
    let p = recent.get(key);
    if (p) {
      recent.delete(key);
    } else {
      p = loadChunk(rec, k, store);
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

/** The cached model, after downloading whatever is missing (with progress, resumable). */
export async function cachedOrRemoteSource(modelId: string, baseUrl: string, opts: CachedOrRemoteOptions = {}): Promise<ByteSource> {
  const store = opts.store ?? cacheStore();
  if (!(await isModelCached(modelId, store))) {
    const files = opts.files ?? (await getModelRecord(modelId, store))?.files ??
      (await modelFiles(httpSource(baseUrl, { fetch: opts.fetch, headers: opts.headers })));
    await downloadModel(modelId, baseUrl, files, { ...opts, store });
  }
  return cachedSource(modelId, { store, cacheChunks: opts.cacheChunks });
}
