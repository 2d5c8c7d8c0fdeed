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

/** The GPU limits the pre-flight check compares buffers with (an adapter's, or WebGPU's defaults). */
export interface GpuLimitsInfo {
  maxBufferSize: number;
  maxStorageBufferBindingSize: number;
  maxStorageBuffersPerShaderStage: number;
}

export interface PreflightOptions {
  /** KV-cache capacity to check, in tokens (default min(4096, max_position_embeddings), as load() does). */
  contextLength?: number;
  /** Tokens per prefill chunk (default 256, as load() does): the activations scale with it. */
  prefillChunk?: number;
  /**
   * Memory the model may use, in bytes. Default: navigator.deviceMemory GiB × 0.75 where the browser has it (it is
   * rounded down and capped, at 8 in Chrome, so a large machine reads as less), else a guess of 8 GiB × 0.75; the
   * report's budgetSource says which. Pass a number to override.
   */
  memoryBudgetBytes?: number;
  /**
   * Which limits to check against: 'max' (default: the adapter's, as load() asks for), 'default' (WebGPU's default
   * limits, as load({ gpuLimits: 'default' }) gets), or given numbers.
   */
  gpuLimits?: 'max' | 'default' | GpuLimitsInfo;
  /** Hub host / revision for repo ids, as in load(). */
  host?: string;
  revision?: string;
}

/** A GPU buffer the runtime makes as one piece (a kernel binds it whole), checked against the limits. */
export interface PreflightBuffer {
  /** What it is, e.g. "KV cache of one full-attention layer (K or V)". */
  name: string;
  bytes: number;
  /** How many of them the model makes. */
  count: number;
}

/**
 * engine.preflight(): what a model needs on the GPU, from config.json and the shard index alone (no weights
 * read), against the limits and a memory budget. Byte counts are as the GPU holds them: linears and embeddings
 * packed as stored, norm / conv / A_log / dt_bias vectors as f32, state and activations f32.
 */
export interface PreflightReport {
  /** Where the tensor names came from: "model.safetensors.index.json", or "model.safetensors header". */
  from: string;
  contextLength: number;
  prefillChunk: number;
  maxPositionEmbeddings: number;
  tied: boolean;
  layers: { linear: number; full: number };
  /** GPU bytes of every weight as stored (packed linears and embeddings; vectors as f32). */
  weightBytes: number;
  /** The same by format: "affine 4-bit g64", "mxfp4", "float BF16", "vectors F32" → bytes. */
  weightBytesByKind: Record<string, number>;
  /** Gated DeltaNet recurrent state, all linear-attention layers (f32). */
  recurrentBytes: number;
  /** Conv rings, all linear-attention layers (f32). */
  convBytes: number;
  /** K + V of one token, all full-attention layers (f32). */
  kvBytesPerToken: number;
  /** kvBytesPerToken × contextLength. */
  kvBytes: number;
  /** recurrentBytes + convBytes + kvBytes. */
  stateBytes: number;
  /** The copy of the recurrent and conv state a chat keeps to reuse the previous turn's prompt. */
  snapshotBytes: number;
  /** Scratch buffers of one prefill chunk, and the logits. */
  activationBytes: number;
  /** weightBytes + stateBytes + snapshotBytes + activationBytes. */
  totalBytes: number;
  budgetBytes: number;
  /** How the budget was chosen (an option, navigator.deviceMemory, os.totalmem(), or a stated guess). */
  budgetSource: string;
  limits: GpuLimitsInfo & { source: string };
  /** The largest single buffer: the bound that buffers must stay within is min(maxBufferSize, maxStorageBufferBindingSize). */
  largestBuffer: PreflightBuffer;
  /** Every single buffer checked (weights are split by rows across buffers: for them one row must fit). */
  buffers: PreflightBuffer[];
  fits: boolean;
  /** Why it does not fit, with the numbers and the largest context that would (only when fits is false). */
  reason?: string;
  /** The largest context length (≤ max_position_embeddings) that fits the budget and the limits; 0 when none does. */
  maxContextThatFits: number;
}
