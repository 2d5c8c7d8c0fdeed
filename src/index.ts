// Public entry of the library build (dist/qwen-webgpu.js).
export { createEngine, WorkerStartError } from './worker/client.ts';
export type {
  QwenEngine, CreateEngineOptions, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, Capabilities, LoadedModel, LoadOptions,
  LoadProgress, CachedModel,
} from './worker/client.ts';
export type { ChatMessage, ToolDef } from './text/index.ts';
