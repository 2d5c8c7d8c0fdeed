// Main-thread client, shaped like WebLLM's engine so its users can switch with little change:
//   const engine = await createEngine();
//   await engine.load('org/name', { contextLength, onProgress });
//   for await (const chunk of await engine.chat.completions.create({ messages, stream: true })) { ... }
import * as Comlink from 'comlink';
import bundledWorkerUrl from './worker.ts?worker&url';
import type {
  CachedModel, Capabilities, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, LoadedModel, LoadOptions, LoadProgress,
  PreflightOptions, PreflightReport,
} from '../api.ts';
import type { WorkerApi } from './protocol.ts';

export type {
  ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Capabilities, LoadedModel, LoadOptions, LoadProgress, CachedModel,
  PreflightOptions, PreflightReport,
};

export interface QwenEngine {
  load(model: string | File[], opts?: LoadOptions & { onProgress?: (p: LoadProgress) => void }): Promise<LoadedModel>;
  /**
   * Whether the model fits, before anything is downloaded: fetches config.json and model.safetensors.index.json
   * (a single-file checkpoint: its safetensors header, by range request; a cached model: nothing) and compares the
   * GPU bytes of weights, state, KV cache and activations with this adapter's limits and a memory budget. Refuses
   * nothing itself: `fits`, `reason` and `maxContextThatFits` say what to do.
   */
  preflight(model: string | File[], opts?: PreflightOptions): Promise<PreflightReport>;
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

export interface CreateEngineOptions {
  /** A worker you made yourself (it must run src/worker/worker.ts, i.e. dist/assets/worker-*.js). */
  worker?: Worker;
  /** Where the worker script is, when it is not next to this module (dist/assets/worker-*.js). */
  workerUrl?: string | URL;
  /** How long the worker may take to load and answer the start-up handshake (default 30 s). */
  startTimeoutMs?: number;
}

/** The worker did not load, did not start in time, or died; the message names the URL and the cause. */
export class WorkerStartError extends Error {
  override name = 'WorkerStartError';
}

function spawnWorker(opts: CreateEngineOptions): { worker: Worker; url: string; shim?: string } {
  if (opts.worker) return { worker: opts.worker, url: 'the worker passed to createEngine()' };
  // Vite bundles the worker as its own file and gives its URL, relative to this module in the built library.
  const url = new URL(opts.workerUrl ?? bundledWorkerUrl, location.href);
  // Browsers refuse a worker script from another origin (a CDN); a same-origin blob that imports it works as long
  // as the CDN sends CORS headers, which module scripts need anyway.
  const shim = url.origin === location.origin
    ? undefined
    : URL.createObjectURL(new Blob([`import ${JSON.stringify(url.href)};`], { type: 'text/javascript' }));
  return { worker: new Worker(shim ?? url.href, { type: 'module', name: 'qwen-webgpu' }), url: url.href, shim };
}

/** Why a worker script did not load: a HEAD request tells a 404 from a script error (best effort, 3 s). */
async function diagnose(url: string): Promise<string> {
  if (!/^https?:/.test(url)) return '';
  try {
    const res = await fetch(url, { method: 'HEAD', cache: 'no-store', signal: AbortSignal.timeout(3000) });
    if (!res.ok) return ` (the server answered HTTP ${res.status} for it)`;
    const type = res.headers.get('content-type') ?? '';
    if (!/javascript|ecmascript/.test(type)) return ` (the server sent it as "${type || 'no content type'}", not JavaScript)`;
    return ' (the file is there: the script failed while starting; see the browser console)';
  } catch (e) {
    return ` (it could not be fetched: ${e instanceof Error ? e.message : String(e)})`;
  }
}

const HINT = 'When you serve the library yourself, keep dist/assets/ beside dist/qwen-webgpu.js and dist/qwen-chat.js, ' +
  'or pass createEngine({ workerUrl }).';

export async function createEngine(opts: CreateEngineOptions = {}): Promise<QwenEngine> {
  const { worker, url, shim } = spawnWorker(opts);
  const remote = Comlink.wrap<WorkerApi>(worker);
  const errorHandlers: ((m: string) => void)[] = [];
  let started = false;
  // Settles (rejects) when the worker fails or ends; every call races against it, so none waits forever.
  let fail!: (e: Error) => void;
  const ended = new Promise<never>((_, reject) => { fail = reject; });
  ended.catch(() => {});
  let endedWith: Error | undefined;
  const end = (e: Error) => {
    if (endedWith) return;
    endedWith = e;
    fail(e);
  };
  worker.addEventListener('error', (ev: Event) => {
    const detail = (ev as ErrorEvent).message ? `: ${(ev as ErrorEvent).message}` : '';
    // After start-up an uncaught error does not end a worker: report it, keep going.
    if (started) { errorHandlers.forEach((h) => h(`error in the engine's worker${detail}`)); return; }
    void diagnose(url).then((why) => end(new WorkerStartError(`the engine's worker failed to load from ${url}${why}${detail}. ${HINT}`)));
  });
  worker.addEventListener('messageerror', () => end(new WorkerStartError('a message from the engine\'s worker could not be read')));
  const call = <T>(p: Promise<T>): Promise<T> => (endedWith ? Promise.reject(endedWith) : Promise.race([p, ended]));

  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new WorkerStartError(
      `the engine's worker at ${url} did not answer within ${(timeoutMs / 1000).toFixed(1)} s of starting. ${HINT}`)), timeoutMs);
  });
  try {
    await Promise.race([remote.hello(), ended, timeout]);
    await call(remote.setDeviceLostHandler(Comlink.proxy((m: string) => errorHandlers.forEach((h) => h(m)))));
  } catch (e) {
    worker.terminate();
    throw e;
  } finally {
    clearTimeout(timer);
    // The shim has been fetched once the worker answered or failed.
    if (shim) URL.revokeObjectURL(shim);
  }
  started = true;

  function create(req: ChatCompletionRequest): Promise<ChatCompletion | AsyncIterable<ChatCompletionChunk>> {
    if (req.stream) {
      return Promise.resolve(chunkStream((push) => call(remote.chatCompletion(req, Comlink.proxy(push)))));
    }
    return call(remote.chatCompletion(req) as Promise<ChatCompletion>);
  }

  return {
    load: (model, o = {}) => {
      const { onProgress, ...rest } = o;
      return call(remote.load(model, rest, onProgress ? Comlink.proxy(onProgress) : undefined));
    },
    preflight: (model, o = {}) => call(remote.preflight(model, o)),
    chat: { completions: { create: create as QwenEngine['chat']['completions']['create'] } },
    interrupt: () => call(remote.interrupt()),
    resetChat: () => call(remote.resetChat()),
    unload: () => call(remote.unload()),
    capabilities: () => call(remote.capabilities()),
    onError: (h) => { errorHandlers.push(h); },
    cache: { list: () => call(remote.cacheList()), delete: (id) => call(remote.cacheDelete(id)) },
    terminate: () => {
      worker.terminate();
      end(new WorkerStartError('the engine was terminated'));
    },
  };
}
