// Streaming split of Qwen3.5 assistant output into reasoning, content and tool calls. Text arrives in arbitrary pieces
// (detokenizer output), so a tag may be cut anywhere: a tail that could still become a tag is held back until it
// either completes or cannot.

import type { ToolDef } from './template.ts';

export interface Delta {
  kind: 'reasoning' | 'content';
  text: string;
}

export interface ParsedToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface ParsedOutput {
  /** Trimmed; '' when there is none. Equals the concatenation of every content delta. */
  content: string;
  /** Trimmed; '' when there is none. Equals the concatenation of every reasoning delta. */
  reasoning_content: string;
  tool_calls: ParsedToolCall[];
  /** Deltas released by end() itself (text held back as a possible tag, or an unfinished tool call). */
  deltas: Delta[];
}

export interface OutputParserOptions {
  /** The generation prompt opened `<think>`: output starts as reasoning until `</think>`. */
  thinking: boolean;
  /** The request's tools: parameters declared `"type": "string"` stay strings even when they look like JSON, and
   *  `"boolean"` ones accept Python's True/False. */
  tools?: ToolDef[];
  /** Tool call ids; default `call_` + 24 random alphanumerics. */
  makeId?: () => string;
}

export interface OutputParser {
  push(text: string): Delta[];
  end(): ParsedOutput;
}

type Mode = 'reasoning' | 'content' | 'tool';

const THINK_OPEN = '<think>';
const THINK_CLOSE = '</think>';
const TOOL_OPEN = '<tool_call>';
const TOOL_CLOSE = '</tool_call>';

// In reasoning a stray `<think>` (the model re-opening the block the prompt opened) is dropped; tool calls are only
// recognised in content.
const TAGS: Record<Mode, readonly string[]> = {
  reasoning: [THINK_CLOSE, THINK_OPEN],
  content: [THINK_OPEN, TOOL_OPEN],
  tool: [TOOL_CLOSE],
};

export function createOutputParser(opts: OutputParserOptions): OutputParser {
  const makeId = opts.makeId ?? randomCallId;
  let mode: Mode = opts.thinking ? 'reasoning' : 'content';
  let pending = ''; // not yet classified: a tool call body, or a tail that may be the start of a tag
  let scanFrom = 0; // in tool mode, where TOOL_CLOSE can first start in `pending`
  const toolCalls: ParsedToolCall[] = [];
  const sinks = { reasoning: createSink(), content: createSink() };
  let ended: ParsedOutput | undefined;

  function emit(kind: Delta['kind'], text: string, out: Delta[]): void {
    const piece = sinks[kind].add(text);
    if (piece === '') return;
    const last = out[out.length - 1];
    if (last?.kind === kind) last.text += piece;
    else out.push({ kind, text: piece });
  }

  function closeToolCall(body: string, complete: boolean, out: Delta[]): void {
    const call = parseToolCall(body, complete, opts.tools);
    if (call) {
      toolCalls.push({ id: makeId(), type: 'function', function: call });
    } else {
      // Not a call we can read: keep the model's words rather than lose them.
      emit('content', TOOL_OPEN + body + (complete ? TOOL_CLOSE : ''), out);
    }
  }

  function consume(final: boolean, out: Delta[]): void {
    for (;;) {
      if (mode === 'tool') {
        const at = pending.indexOf(TOOL_CLOSE, scanFrom);
        if (at < 0) {
          if (final) {
            closeToolCall(pending, false, out);
            pending = '';
          } else {
            scanFrom = Math.max(0, pending.length - TOOL_CLOSE.length + 1);
          }
          return;
        }
        closeToolCall(pending.slice(0, at), true, out);
        pending = pending.slice(at + TOOL_CLOSE.length);
        mode = 'content';
        continue;
      }
      const hit = firstTag(pending, TAGS[mode]);
      if (!hit) {
        const keep = final ? 0 : partialTagLength(pending, TAGS[mode]);
        emit(mode, pending.slice(0, pending.length - keep), out);
        pending = pending.slice(pending.length - keep);
        return;
      }
      emit(mode, pending.slice(0, hit.at), out);
      pending = pending.slice(hit.at + hit.tag.length);
      if (hit.tag === THINK_CLOSE) mode = 'content';
      else if (hit.tag === THINK_OPEN) mode = 'reasoning';
      else {
        mode = 'tool';
        scanFrom = 0;
      }
    }
  }

  return {
    push(text) {
      if (ended) throw new Error('output parser: push() after end()');
      const out: Delta[] = [];
      pending += text;
      consume(false, out);
      return out;
    },
    end() {
      if (ended) return ended;
      const out: Delta[] = [];
      consume(true, out);
      ended = {
        content: sinks.content.text(),
        reasoning_content: sinks.reasoning.text(),
        tool_calls: toolCalls,
        deltas: out,
      };
      return ended;
    },
  };
}

// Whitespace at the edges of reasoning and content is dropped (as the chat template's `|trim` does when the turn is
// replayed): leading whitespace never comes out, trailing whitespace is held until more text of the same kind follows.
function createSink() {
  let emitted = '';
  let heldSpace = '';
  return {
    add(text: string): string {
      const body = emitted === '' ? text.trimStart() : text;
      if (body === '') return '';
      const trimmed = body.trimEnd();
      if (trimmed === '') {
        heldSpace += body;
        return '';
      }
      const piece = heldSpace + trimmed;
      heldSpace = body.slice(trimmed.length);
      emitted += piece;
      return piece;
    },
    text: () => emitted,
  };
}

function firstTag(text: string, tags: readonly string[]): { at: number; tag: string } | undefined {
  let best: { at: number; tag: string } | undefined;
  for (const tag of tags) {
    const at = text.indexOf(tag);
    if (at >= 0 && (!best || at < best.at)) best = { at, tag };
  }
  return best;
}

/** Length of the longest tail of `text` that is a proper prefix of one of `tags`. */
function partialTagLength(text: string, tags: readonly string[]): number {
  let best = 0;
  for (const tag of tags) {
    for (let n = Math.min(tag.length - 1, text.length); n > best; n--) {
      if (text.endsWith(tag.slice(0, n))) {
        best = n;
        break;
      }
    }
  }
  return best;
}

const FUNCTION_RE = /<function=([^>\n]*)>/;
const PARAM_OPEN = '<parameter=';
const PARAM_CLOSE = '</parameter>';
const FUNCTION_CLOSE = '</function>';

/**
 * `<function=NAME>` then `<parameter=ARG>\nVALUE\n</parameter>` blocks, then `</function>`. Lenient like the
 * reference parsers: a parameter may be closed by the next `<parameter=` or by `</function>` instead of its own tag.
 * A block cut off by the end of the stream counts only if its `</function>` arrived, so a half-written call is never
 * returned as if complete.
 */
function parseToolCall(
  body: string,
  complete: boolean,
  tools: ToolDef[] | undefined,
): ParsedToolCall['function'] | undefined {
  const fn = FUNCTION_RE.exec(body);
  const name = fn?.[1].trim();
  if (!fn || !name) return undefined;
  let rest = body.slice(fn.index + fn[0].length);
  const end = rest.indexOf(FUNCTION_CLOSE);
  if (end >= 0) rest = rest.slice(0, end);
  else if (!complete) return undefined;

  const schema = parameterSchemas(tools, name);
  const args: Record<string, unknown> = {};
  for (let at = rest.indexOf(PARAM_OPEN); at >= 0; ) {
    const nameEnd = rest.indexOf('>', at);
    if (nameEnd < 0) break;
    const arg = rest.slice(at + PARAM_OPEN.length, nameEnd).trim();
    const valueStart = nameEnd + 1;
    const next = rest.indexOf(PARAM_OPEN, valueStart);
    const close = rest.indexOf(PARAM_CLOSE, valueStart);
    const valueEnd = close >= 0 && (next < 0 || close < next) ? close : next >= 0 ? next : rest.length;
    args[arg] = convertValue(stripOneNewline(rest.slice(valueStart, valueEnd)), schema[arg]);
    at = next;
  }
  return { name, arguments: JSON.stringify(args) };
}

// The template writes `<parameter=ARG>\n` + value + `\n</parameter>`: exactly one newline on each side is framing.
function stripOneNewline(raw: string): string {
  let value = raw;
  if (value.startsWith('\r\n')) value = value.slice(2);
  else if (value.startsWith('\n')) value = value.slice(1);
  if (value.endsWith('\r\n')) value = value.slice(0, -2);
  else if (value.endsWith('\n')) value = value.slice(0, -1);
  return value;
}

function convertValue(raw: string, schema: unknown): unknown {
  if (declaresType(schema, 'string')) return raw;
  // History rendered the transformers way shows booleans as Python's True/False, so the model may write them so too.
  if (declaresType(schema, 'boolean') && /^\s*(true|false)\s*$/i.test(raw)) return /true/i.test(raw);
  try {
    return JSON.parse(raw);
  } catch {
    return raw;
  }
}

function declaresType(schema: unknown, name: string): boolean {
  if (!schema || typeof schema !== 'object') return false;
  const type = (schema as { type?: unknown }).type;
  return type === name || (Array.isArray(type) && type.length > 0 && type.every((t) => t === name));
}

function parameterSchemas(tools: ToolDef[] | undefined, name: string): Record<string, unknown> {
  const tool = tools?.find((t) => t.function?.name === name);
  const props = (tool?.function.parameters as { properties?: unknown } | undefined)?.properties;
  return props && typeof props === 'object' ? (props as Record<string, unknown>) : {};
}

const ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomCallId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  let id = 'call_';
  for (const b of bytes) id += ID_ALPHABET[b % ID_ALPHABET.length];
  return id;
}
