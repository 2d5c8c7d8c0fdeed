// What the worker exposes over Comlink; shared by src/worker/worker.ts and src/worker/client.ts.
import type {
  CachedModel, Capabilities, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, LoadedModel, LoadOptions, LoadProgress,
  PreflightOptions, PreflightReport,
} from '../api.ts';

export type { Capabilities, LoadedModel, LoadOptions, LoadProgress } from '../api.ts';

export interface WorkerApi {
  /** Start-up handshake: answers once the worker's module has loaded. */
  hello(): string;
  capabilities(): Promise<Capabilities>;
  load(source: string | File[], opts: LoadOptions, onProgress?: (p: LoadProgress) => void): Promise<LoadedModel>;
  /** What the model needs against this device's limits and a memory budget, from config.json and the index only. */
  preflight(source: string | File[], opts: PreflightOptions): Promise<PreflightReport>;
  chatCompletion(req: ChatCompletionRequest, onChunk?: (c: ChatCompletionChunk) => void): Promise<ChatCompletion>;
  interrupt(): void;
  resetChat(): void;
  unload(): void;
  setDeviceLostHandler(handler: (message: string) => void): void;
  cacheList(): Promise<CachedModel[]>;
  cacheDelete(modelId: string): Promise<void>;
}
