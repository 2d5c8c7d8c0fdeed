// Chat template rendering with @huggingface/jinja, fed the same variables transformers' apply_chat_template passes.

import { Template } from '@huggingface/jinja';

export interface TextPart {
  type: 'text';
  text: string;
}

export type MessageContent = string | TextPart[];

export interface ToolCall {
  id?: string;
  type: 'function';
  function: {
    name: string;
    /** OpenAI sends a JSON string; an already-parsed object is accepted too. */
    arguments: string | Record<string, unknown>;
  };
}

export interface SystemMessage {
  role: 'system';
  content: MessageContent;
}

export interface UserMessage {
  role: 'user';
  content: MessageContent;
}

export interface AssistantMessage {
  role: 'assistant';
  content?: MessageContent | null;
  reasoning_content?: string | null;
  tool_calls?: ToolCall[];
}

export interface ToolMessage {
  role: 'tool';
  content: MessageContent;
  tool_call_id?: string;
  name?: string;
}

export type ChatMessage = SystemMessage | UserMessage | AssistantMessage | ToolMessage;

/** OpenAI function tool: `parameters` is a JSON Schema object. */
export interface ToolDef {
  type: 'function';
  function: {
    name: string;
    description?: string;
    parameters?: Record<string, unknown>;
  };
}

export interface RenderOptions {
  tools?: ToolDef[];
  /** Left undefined, the template's own default applies (≥4B: thinking on; 0.8B/2B: off). */
  enableThinking?: boolean;
  /** Default true: the prompt ends with the opened assistant turn, ready for generation. */
  addGenerationPrompt?: boolean;
  bosToken?: string;
  eosToken?: string;
  /** More template variables, e.g. `preserve_thinking` (Qwen3.6) or `add_vision_id`. */
  extra?: Record<string, unknown>;
}

/** Thrown for anything the template rejects (its raise_exception message) or cannot render. */
export class ChatTemplateError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ChatTemplateError';
  }
}

interface Compiled {
  template: Template;
  /** Prints each argument with `arguments|items` + `|string` (Qwen3.5) rather than `arguments|tojson` (Qwen3). */
  iteratesArguments: boolean;
}

// Parsing a 7 kB template costs milliseconds; a conversation re-renders it every turn.
const compiled = new Map<string, Compiled>();

function compile(source: string): Compiled {
  let entry = compiled.get(source);
  if (!entry) {
    try {
      entry = { template: new Template(source), iteratesArguments: /\.arguments\s*\|\s*items\b/.test(source) };
    } catch (e) {
      throw new ChatTemplateError(`chat template does not parse: ${(e as Error).message}`, { cause: e });
    }
    if (compiled.size >= 8) compiled.delete(compiled.keys().next().value as string);
    compiled.set(source, entry);
  }
  return entry;
}

export function renderChat(template: string, messages: ChatMessage[], opts: RenderOptions = {}): string {
  const { template: compiledTemplate, iteratesArguments } = compile(template);
  const vars: Record<string, unknown> = {
    ...opts.extra,
    messages: iteratesArguments ? messages.map(prepareMessage) : messages,
    add_generation_prompt: opts.addGenerationPrompt ?? true,
  };
  // Absent (not false) lets the template's `enable_thinking is defined` pick its own default.
  if (opts.enableThinking !== undefined) vars.enable_thinking = opts.enableThinking;
  if (opts.tools !== undefined) vars.tools = opts.tools;
  if (opts.bosToken !== undefined) vars.bos_token = opts.bosToken;
  if (opts.eosToken !== undefined) vars.eos_token = opts.eosToken;
  try {
    return compiledTemplate.render(vars);
  } catch (e) {
    // The library's built-in raise_exception throws Error(message) with the template's own text, and it cannot be
    // overridden (a second `raise_exception` is rejected as already declared), so its message is passed on as is.
    throw new ChatTemplateError((e as Error).message, { cause: e });
  }
}

/** True when a rendered prompt ends inside an opened `<think>` block, i.e. the model's first tokens are reasoning. */
export function promptOpensThinking(prompt: string): boolean {
  const open = prompt.lastIndexOf('<think>');
  return open >= 0 && prompt.indexOf('</think>', open) < 0 && prompt.slice(open + 7).trim() === '';
}

function prepareMessage(message: ChatMessage): ChatMessage {
  if (message.role !== 'assistant' || !Array.isArray(message.tool_calls)) return message;
  return { ...message, tool_calls: message.tool_calls.map(prepareToolCall) };
}

// Qwen3.5's templates iterate `arguments|items`, which needs a mapping, while OpenAI clients send a JSON string.
// Templates that print `arguments|tojson` get the caller's value untouched, as transformers would pass it.
function prepareToolCall(call: ToolCall): ToolCall {
  const fn = call.function;
  let args: unknown = fn.arguments;
  if (typeof args === 'string') {
    try {
      args = args.trim() === '' ? {} : JSON.parse(args);
    } catch (e) {
      throw new ChatTemplateError(`tool call "${fn.name}": arguments are not valid JSON (${(e as Error).message})`);
    }
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args)) {
    throw new ChatTemplateError(`tool call "${fn.name}": arguments must be a JSON object`);
  }
  // Top-level values go through `|string`; transformers (Python) prints booleans as True/False and null as None,
  // and @huggingface/jinja prints true/false and refuses null, so the Python spelling is supplied up front.
  const values = Object.entries(args as Record<string, unknown>).map(([k, v]) => [k, pythonScalar(v)]);
  return { ...call, function: { ...fn, arguments: Object.fromEntries(values) } };
}

function pythonScalar(value: unknown): unknown {
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (value === null) return 'None';
  return value;
}
