// The public types of the library: what createEngine() takes and gives, in one file that imports nothing of the
// engine, so that the package's type declarations need no WebGPU types and show no internals. The modules that
// implement these shapes (engine/chat.ts, worker/protocol.ts, store/shard-cache.ts) import them from here.
import type { ModelConfig } from './format/config.ts';
import type { ChatMessage, ToolDef } from './text/template.ts';
import type { ParsedToolCall } from './text/parse.ts';

export type { ModelConfig, ChatMessage, ToolDef, ParsedToolCall };

export interface ChatCompletionRequest {
  messages: ChatMessage[];
  stream?: boolean;
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  presence_penalty?: number;
  repetition_penalty?: number;
  seed?: number;
  max_tokens?: number;
  stop?: string | string[];
  tools?: ToolDef[];
  enable_thinking?: boolean;
}

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'abort';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  extra: {
    /** Prompt tokens whose state came from the previous turn instead of a new prefill. */
    reused_prompt_tokens: number;
    time_to_first_token_s: number;
    prefill_tokens_per_s: number;
    decode_tokens_per_s: number;
  };
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: {
    index: 0;
    delta: { role?: 'assistant'; content?: string; reasoning_content?: string; tool_calls?: (ParsedToolCall & { index: number })[] };
    finish_reason: FinishReason | null;
  }[];
  usage?: Usage;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: {
    index: 0;
    message: { role: 'assistant'; content: string | null; reasoning_content?: string; tool_calls?: ParsedToolCall[] };
    finish_reason: FinishReason;
  }[];
  usage: Usage;
}

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
  /**
   * 'max' (default): the adapter's largest limits and every useful optional feature. 'default': WebGPU's default
   * limits and no optional feature (no subgroups, shader-f16, timestamp-query), as the most conservative device
   * offers; same replies. Switching modes replaces the worker's GPU device (the loaded model goes with it).
   */
  gpuLimits?: 'max' | 'default';
}

export interface LoadProgress {
  /**
   * 'download', then 'tune' (only the first load on an adapter: the linear kernels' shape is measured, a few
   * seconds, then kept in IndexedDB), then 'upload' (weights to the GPU), then 'compile': the kernels are compiled
   * at load so the first message is as fast as the next; during 'tune' and 'compile' file is "kernels" and
   * bytesDone / bytesTotal count steps (tune: 0 of 1, then 1 of 1) or pipelines.
   */
  phase: 'download' | 'upload' | 'tune' | 'compile';
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

export interface CachedModel {
  modelId: string;
  baseUrl: string;
  files: string[];
  /** Bytes stored so far. */
  bytes: number;
  /** Bytes of the whole model. */
  totalBytes: number;
  complete: boolean;
}
