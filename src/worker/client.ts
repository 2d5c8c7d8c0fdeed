// Main-thread client, shaped like WebLLM's engine so its users can switch with little change:
//   const engine = await createEngine();
//   await engine.load('org/name', { contextLength, onProgress });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) { ... }
import * as Comlink from 'comlink';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../engine/chat.ts';
import type { CachedModel } from '../store/shard-cache.ts';
import type { Capabilities, LoadedModel, LoadOptions, LoadProgress, WorkerApi } from './protocol.ts';

export type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Capabilities, LoadedModel, LoadOptions, LoadProgress, CachedModel };

export interface QwenEngine {
  load(model: string | File[], opts?: LoadOptions & { onProgress?: (p: LoadProgress) => void }): Promise<LoadedModel>;
  chat: {
    completions: {
      create(req: ChatCompletionRequest & { stream: true }): Promise<AsyncIterable<ChatCompletionChunk>>;
      create(req: ChatCompletionRequest & { stream?: false }): Promise<ChatCompletion>;
      create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>>;
    };
  };
  /** Stops the running completion; it finishes with finish_reason "abort" and the engine stays usable. */
  interrupt(): Promise<void>;
  resetChat(): Promise<void>;
  unload(): Promise<void>;
  capabilities(): Promise<Capabilities>;
  /** Called when the GPU device is lost; load() again to continue. */
  onError(handler: (message: string) => void): void;
  cache: { list(): Promise<CachedModel[]>; delete(modelId: string): Promise<void> };
  /** Ends the worker. */
  terminate(): void;
}

/** An async iterable fed by callbacks: chunks pushed by the worker, ended by the completion's promise. */
function chunkStream(run: (push: (c: ChatCompletionChunk) => void) => Promise<unknown>): AsyncIterable<ChatCompletionChunk> {
  const queue: ChatCompletionChunk[] = [];
  let done = false;
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => { wake?.(); wake = undefined; };
  run((c) => { queue.push(c); notify(); }).then(
    () => { done = true; notify(); },
    (e) => { failure = e; done = true; notify(); },
  );
  return {
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (queue.length) { yield queue.shift()!; continue; }
        if (done) { if (failure) throw failure; return; }
        await new Promise<void>((r) => (wake = r));
      }
    },
  };
}

export async function createEngine(opts: { worker?: Worker } = {}): Promise<QwenEngine> {
  const worker = opts.worker ?? new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'qwen-webgpu' });
  const remote = Comlink.wrap<WorkerApi>(worker);
  const errorHandlers: ((m: string) => void)[] = [];
  await remote.setDeviceLostHandler(Comlink.proxy((m: string) => errorHandlers.forEach((h) => h(m))));

  function create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    if (req.stream) {
      return Promise.resolve(chunkStream((push) => remote.chatCompletion(req, Comlink.proxy(push))));
    }
    return remote.chatCompletion(req) as Promise<ChatCompletion>;
  }

  return {
    load: (model, o = {}) => {
      const { onProgress, ...rest } = o;
      return remote.load(model, rest, onProgress ? Comlink.proxy(onProgress) : undefined);
    },
    chat: { completions: { create: create as QwenEngine['chat']['completions']['create'] } },
    interrupt: () => remote.interrupt(),
    resetChat: () => remote.resetChat(),
    unload: () => remote.unload(),
    capabilities: () => remote.capabilities(),
    onError: (h) => { errorHandlers.push(h); },
    cache: { list: () => remote.cacheList(), delete: (id) => remote.cacheDelete(id) },
    terminate: () => worker.terminate(),
  };
}
