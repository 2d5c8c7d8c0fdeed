// The engine's Web Worker: owns the GPU device, the model and the conversation; the main thread talks to it
// through Comlink (src/worker/client.ts). One model and one running completion at a time.
import * as Comlink from 'comlink';
import '../gpu/shaders-vite.ts';
import { createGpuContext, requestBrowserGpuDevice, type GpuContext, type GpuLimitsMode } from '../gpu/context.ts';
import type { ByteSource } from '../format/safetensors.ts';
import { openChatModel, type ChatModel } from '../engine/chat-model.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest } from '../engine/chat.ts';
import { cachedOrRemoteSource, cachedSource, httpSource, resolveModel } from '../store/index.ts';
import { deleteCachedModel, isModelCached, listCachedModels } from '../store/shard-cache.ts';
import { preflightSource, WEBGPU_DEFAULT_LIMITS } from '../engine/preflight.ts';
import type { GpuLimitsInfo, PreflightOptions } from '../api.ts';
import { filesSource } from '../store/file-source.ts';
import { idbTuningStore } from '../store/tuning-idb.ts';
import { setDefaultTuningStore } from '../gpu/autotune.ts';
import type { LoadOptions, LoadProgress, WorkerApi } from './protocol.ts';

let gpu: GpuContext | undefined;
let gpuMode: GpuLimitsMode = 'max';
let model: ChatModel | undefined;
let abort: AbortController | undefined;
let onDeviceLost: ((message: string) => void) | undefined;

/** The worker's device for `mode`; a device of the other mode is destroyed first (its model is unloaded). */
async function getGpu(mode: GpuLimitsMode = gpuMode): Promise<GpuContext> {
  if (gpu && gpuMode === mode) return gpu;
  if (gpu) {
    unload();
    const old = gpu;
    gpu = undefined;
    old.device.destroy();
  }
  gpuMode = mode;
  const device = await requestBrowserGpuDevice(mode);
  const ctx = createGpuContext(device);
  // Measured kernel tunings are kept per adapter in IndexedDB: only the first load on this adapter measures.
  setDefaultTuningStore(idbTuningStore());
  device.lost.then((info) => {
    // A lost device takes every buffer with it: forget the model so the next load starts clean.
    if (gpu === ctx) gpu = undefined;
    model = undefined;
    if (info.reason !== 'destroyed') onDeviceLost?.(`GPU device lost: ${info.message || info.reason}`);
  });
  gpu = ctx;
  return ctx;
}

/**
 * The limits a load with `mode` would get, without making a device (which would replace the one in use): the
 * current device's when it is of that mode, else the adapter's for 'max', WebGPU's defaults for 'default'.
 */
async function limitsFor(mode: PreflightOptions['gpuLimits'] = 'max'): Promise<GpuLimitsInfo & { source: string }> {
  const pick = (l: GpuLimitsInfo, source: string) => ({
    maxBufferSize: l.maxBufferSize, maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage, source,
  });
  if (typeof mode === 'object' && mode) return pick(mode, 'given limits');
  if (mode === 'default') return pick(WEBGPU_DEFAULT_LIMITS, "WebGPU default limits, as load({ gpuLimits: 'default' }) gets");
  if (mode !== 'max') throw new Error(`gpuLimits must be 'max', 'default' or an object of limits, got ${JSON.stringify(mode)}`);
  if (gpu && gpuMode === 'max') return pick(gpu.limits, "this adapter's limits");
  const adapter = 'gpu' in navigator ? await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }) : null;
  return adapter ? pick(adapter.limits, "this adapter's limits") : pick(WEBGPU_DEFAULT_LIMITS, 'WebGPU default limits: no WebGPU adapter');
}

function unload(): void {
  abort?.abort();
  model?.session.dispose();
  model?.engine.dispose();
  model = undefined;
}

const api: WorkerApi = {
  hello: () => 'qwen-webgpu',

  async capabilities() {
    const ctx = await getGpu();
    const info = ctx.device.adapterInfo;
    return {
      adapter: [info?.vendor, info?.architecture, info?.description].filter(Boolean).join(' ') || 'unknown adapter',
      shaderF16: ctx.features.shaderF16,
      subgroups: ctx.features.subgroups,
      timestampQuery: ctx.features.timestampQuery,
      maxStorageBufferBindingSize: ctx.limits.maxStorageBufferBindingSize,
      maxBufferSize: ctx.limits.maxBufferSize,
    };
  },

  async load(source: string | File[], opts: LoadOptions, progressCallback?: (p: LoadProgress) => void) {
    // Refused before anything is unloaded: a bad option leaves the loaded model as it was.
    const mode = opts.gpuLimits ?? 'max';
    if (mode !== 'max' && mode !== 'default') throw new Error(`gpuLimits must be 'max' or 'default', got ${JSON.stringify(mode)}`);
    unload();
    // Like stream chunks: progress reports travel on their own port, so the reply waits until the main thread has
    // taken the last one (the port keeps them in order); else a late "uploading" report lands after "ready".
    let lastReport: Promise<unknown> = Promise.resolve();
    const onProgress = progressCallback && ((p: LoadProgress) => {
      lastReport = Promise.resolve(progressCallback(p)).catch(() => {});
    });
    const ctx = await getGpu(mode);
    let src: ByteSource;
    let modelId: string;
    if (typeof source === 'string') {
      const resolved = resolveModel(source, { host: opts.host, revision: opts.revision });
      modelId = resolved.id;
      src = await cachedOrRemoteSource(resolved.id, resolved.baseUrl, {
        chunkBytes: opts.chunkBytes,
        onProgress: (p) => onProgress?.({ phase: 'download', ...p }),
      });
    } else {
      src = filesSource(source);
      modelId = opts.name ?? 'local model';
    }
    model = await openChatModel(ctx, src, modelId, {
      contextLength: opts.contextLength,
      onProgress: (done, total, tensor) => onProgress?.({ phase: 'upload', bytesDone: done, bytesTotal: total, file: tensor }),
      onCompileProgress: (done, total) => onProgress?.({ phase: 'compile', bytesDone: done, bytesTotal: total, file: 'kernels' }),
      onTuneProgress: (done, total) => onProgress?.({ phase: 'tune', bytesDone: done, bytesTotal: total, file: 'kernels' }),
    });
    await lastReport;
    return { modelId, contextLength: model.engine.contextLength, config: model.engine.config };
  },

  async preflight(source: string | File[], opts: PreflightOptions = {}) {
    let src: ByteSource;
    if (typeof source === 'string') {
      const resolved = resolveModel(source, { host: opts.host, revision: opts.revision });
      // A cached model is read from IndexedDB; else only config.json and the index (or the header) cross the network.
      src = (await isModelCached(resolved.id)) ? cachedSource(resolved.id, { baseUrl: resolved.baseUrl }) : httpSource(resolved.baseUrl);
    } else {
      src = filesSource(source);
    }
    return preflightSource(src, {
      contextLength: opts.contextLength, prefillChunk: opts.prefillChunk, memoryBudgetBytes: opts.memoryBudgetBytes,
      limits: await limitsFor(opts.gpuLimits),
    });
  },

  async chatCompletion(req: ChatCompletionRequest, onChunk?: (c: ChatCompletionChunk) => void): Promise<ChatCompletion> {
    if (!model) throw new Error('no model is loaded: call load() first');
    abort = new AbortController();
    // Chunks travel over the callback's own MessagePort, which is not ordered with the reply to this call:
    // wait until the main thread has taken every chunk before answering, so the stream never ends early.
    const delivered: Promise<unknown>[] = [];
    const forward = onChunk && ((c: ChatCompletionChunk) => { delivered.push(Promise.resolve(onChunk(c))); });
    try {
      const result = await model.session.complete(req, forward, abort.signal);
      await Promise.all(delivered);
      return result;
    } finally {
      abort = undefined;
    }
  },

  interrupt() {
    abort?.abort();
  },

  resetChat() {
    model?.session.resetChat();
  },

  unload,

  setDeviceLostHandler(handler: (message: string) => void) {
    onDeviceLost = handler;
  },

  cacheList: () => listCachedModels(),
  cacheDelete: (modelId: string) => deleteCachedModel(modelId),
};

Comlink.expose(api);
