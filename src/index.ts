// Public entry of the library build (dist/qwen-webgpu.js).
export { createEngine, WorkerStartError } from './worker/client.ts';
export type { QwenEngine, CreateEngineOptions } from './worker/client.ts';
export type * from './api.ts';
