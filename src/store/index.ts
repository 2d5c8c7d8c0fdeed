// Public API of the model store: where models live, downloading them into the browser's IndexedDB cache, and
// reading them back as a ByteSource.

export { resolveModel, modelFiles, type ModelFile, type ResolvedModel, type ResolveOptions } from './hub.ts';
export { httpSource, type HttpSourceOptions } from './http-source.ts';
export {
  downloadModel, verifyModel, hashStoredFile, announcedSha256, Sha256, HttpError, IntegrityError,
  type DownloadOptions, type DownloadProgress, type FileSpec, type VerifyOptions, type VerifyResult,
} from './download.ts';
export {
  listCachedModels, deleteCachedModel, isModelCached, cacheStore, QuotaError, ModelDeletedError,
  type CachedModel, type UseStore,
} from './shard-cache.ts';
export {
  cachedSource, cachedOrRemoteSource, CachedChunkError,
  type CachedSourceOptions, type CachedOrRemoteOptions, type ChunkRefetch,
} from './cached-source.ts';
