// What the worker exposes over Comlink; shared by src/worker/worker.ts and src/worker/client.ts.
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../engine/chat.ts';
import type { ModelConfig } from '../format/config.ts';
import type { CachedModel } from '../store/shard-cache.ts';

export interface LoadOptions {
  contextLength?: number;
  /** Hub host for repo ids (default https://huggingface.co). */
  host?: string;
  /** Hub revision (default main). */
  revision?: string;
  /** Display name for local files. */
  name?: string;
  /** Bytes per IndexedDB chunk of a download (default 64 MiB). */
  chunkBytes?: number;
}

export interface LoadProgress {
  phase: 'download' | 'upload';
  file: string;
  bytesDone: number;
  bytesTotal: number;
  fileBytesDone?: number;
  fileBytesTotal?: number;
  bytesPerSecond?: number;
  etaSeconds?: number;
}

export interface Capabilities {
  adapter: string;
  shaderF16: boolean;
  subgroups: boolean;
  timestampQuery: boolean;
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

export interface LoadedModel { modelId: string; contextLength: number; config: ModelConfig }

export interface WorkerApi {
  /** Start-up handshake: answers once the worker's module has loaded. */
  hello(): string;
  capabilities(): Promise<Capabilities>;
  load(source: string | File[], opts: LoadOptions, onProgress?: (p: LoadProgress) => void): Promise<LoadedModel>;
  chatCompletion(req: ChatCompletionRequest, onChunk?: (c: ChatCompletionChunk) => void): Promise<ChatCompletion>;
  interrupt(): void;
  resetChat(): void;
  unload(): void;
  setDeviceLostHandler(handler: (message: string) => void): void;
  cacheList(): Promise<CachedModel[]>;
  cacheDelete(modelId: string): Promise<void>;
}
