// OpenAI-style chat completions on top of the engine: template → tokens → prefill (reusing the previous turn's
// state) → GPU-sampled decode loop → detokenize → reasoning / content / tool-call split → chunks.
// Platform neutral: the Web Worker and the Node tests drive the same code.
import { createRng, createSampler, destroySampler, recordTokens, resetSampler, type Sampled, type Sampler, type SamplingParams } from '../gpu/sample.ts';
import { directRecorder } from '../gpu/plan.ts';
import { destroySnapshot, type StateSnapshot } from '../model/state.ts';
import { createDetokenizer, createOutputParser, promptOpensThinking, renderChat } from '../text/index.ts';
import type { ChatMessage, ParsedToolCall, Tokenizer, ToolDef } from '../text/index.ts';
import { describeStep, isAbortError, nonFiniteLogitsError, type Engine } from './engine.ts';
import type { ChatCompletion, ChatCompletionChunk, ChatCompletionRequest, FinishReason, Usage } from '../api.ts';

export type { ChatCompletionRequest, FinishReason, Usage, ChatCompletionChunk, ChatCompletion } from '../api.ts';

/** Sampling defaults and stop ids from generation_config.json / config.json (spec §7). */
export interface GenerationDefaults {
  eosTokenIds: number[];
  temperature: number;
  top_p: number;
  top_k: number;
  min_p: number;
  presence_penalty: number;
  repetition_penalty: number;
}

export function generationDefaults(generationConfig: Record<string, unknown> | undefined, configEos: number[]): GenerationDefaults {
  const g = generationConfig ?? {};
  const num = (k: string, d: number) => (typeof g[k] === 'number' ? (g[k] as number) : d);
  const eos = g.eos_token_id;
  const genEos = Array.isArray(eos) ? eos.map(Number) : typeof eos === 'number' ? [eos] : [];
  return {
    eosTokenIds: [...new Set([...genEos, ...configEos])],
    temperature: g.do_sample === false ? 0 : num('temperature', 1),
    top_p: num('top_p', 1),
    top_k: num('top_k', 0),
    min_p: num('min_p', 0),
    presence_penalty: num('presence_penalty', 0),
    repetition_penalty: num('repetition_penalty', 1),
  };
}

export interface ChatSessionOptions {
  modelId: string;
  template: string;
  generation: GenerationDefaults;
  /**
   * Queue token t+1 on the GPU before token t is read back (default true): the drawn id feeds the next step on the
   * GPU, so the CPU's work per token overlaps the GPU's. false waits for each id first (same replies).
   */
  pipeline?: boolean;
}

export interface ChatSession {
  /**
   * Runs one completion; `onChunk` receives the stream. Resolves with the whole response. An abort of `signal`
   * takes effect between prefill chunks and between tokens: the reply ends with finish_reason "abort".
   */
  complete(req: ChatCompletionRequest, onChunk?: (chunk: ChatCompletionChunk) => void, signal?: AbortSignal): Promise<ChatCompletion>;
  /** Forgets the conversation: the next request prefills from scratch. */
  resetChat(): void;
  dispose(): void;
}

const startsWith = (a: readonly number[], prefix: readonly number[]) =>
  prefix.length <= a.length && prefix.every((v, i) => a[i] === v);

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

/** Holds back text that could be the start of a stop string, so a matched stop never reaches the stream. */
function createStopMatcher(stops: string[]) {
  let pending = '';
  const hold = Math.max(0, ...stops.map((s) => s.length - 1));
  return {
    /** Returns the text safe to emit and whether a stop string was hit. */
    push(text: string): { out: string; stopped: boolean } {
      pending += text;
      for (const s of stops) {
        const i = pending.indexOf(s);
        if (i >= 0) {
          const out = pending.slice(0, i);
          pending = '';
          return { out, stopped: true };
        }
      }
      const cut = Math.max(0, pending.length - hold);
      const out = pending.slice(0, cut);
      pending = pending.slice(cut);
      return { out, stopped: false };
    },
    flush(): string {
      const out = pending;
      pending = '';
      return out;
    },
  };
}

export function createChatSession(engine: Engine, tokenizer: Tokenizer, opts: ChatSessionOptions): ChatSession {
  const ctx = engine.gpu;
  const sampler: Sampler = createSampler(ctx, engine.config.vocabSize, Math.min(engine.config.vocabSize, tokenizer.vocabSize));
  /** Token ids currently in the engine's sequence. */
  let fed: number[] = [];
  /** The end of the last prompt's history (before the generation prompt): what the next turn shares. */
  let promptPoint: { tokens: number[]; snap: StateSnapshot } | undefined;
  let busy = false;

  async function complete(
    req: ChatCompletionRequest, onChunk?: (chunk: ChatCompletionChunk) => void, signal?: AbortSignal,
  ): Promise<ChatCompletion> {
    if (busy) throw new Error('a completion is already running on this engine; interrupt it or wait');
    busy = true;
    try {
      return await run(req, onChunk, signal);
    } catch (e) {
      // Where the sequence stands after a failure is unknown: start the next turn from scratch.
      forget();
      throw e;
    } finally {
      busy = false;
    }
  }

  function forget(): void {
    fed = [];
    if (promptPoint) destroySnapshot(promptPoint.snap);
    promptPoint = undefined;
  }

  async function run(
    req: ChatCompletionRequest, onChunk: ((chunk: ChatCompletionChunk) => void) | undefined, signal: AbortSignal | undefined,
  ): Promise<ChatCompletion> {
    const g = opts.generation;
    const params: SamplingParams = {
      temperature: req.temperature ?? g.temperature,
      topK: req.top_k ?? g.top_k,
      topP: req.top_p ?? g.top_p,
      minP: req.min_p ?? g.min_p,
      presencePenalty: req.presence_penalty ?? g.presence_penalty,
      repetitionPenalty: req.repetition_penalty ?? g.repetition_penalty,
    };
    const rng = createRng(req.seed ?? Math.floor(Math.random() * 2 ** 32));
    const stops = req.stop === undefined ? [] : Array.isArray(req.stop) ? req.stop : [req.stop];
    const eos = new Set(g.eosTokenIds);
    const id = `chatcmpl-${Math.random().toString(36).slice(2, 14)}`;
    const created = Math.floor(Date.now() / 1000);
    const chunk = (delta: ChatCompletionChunk['choices'][0]['delta'], finish: FinishReason | null = null): ChatCompletionChunk => ({
      id, object: 'chat.completion.chunk', created, model: opts.modelId, choices: [{ index: 0, delta, finish_reason: finish }],
    });

    const render = (addGenerationPrompt: boolean) => renderChat(opts.template, req.messages, {
      tools: req.tools, enableThinking: req.enable_thinking, addGenerationPrompt,
      bosToken: tokenizer.bosToken, eosToken: tokenizer.eosToken,
    });
    const prompt = render(true);
    const ids = tokenizer.encode(prompt);
    // The history without the generation prompt is what the next turn's prompt starts with (the generation prompt
    // itself, e.g. an empty think block, is re-rendered differently once the reply is part of the history).
    let shared = tokenizer.encode(render(false));
    if (shared.length >= ids.length || !startsWith(ids, shared)) shared = [];
    const room = engine.contextLength - ids.length;
    if (room < 1) {
      throw new Error(
        `context overflow: the prompt has ${ids.length} tokens, the context length is ${engine.contextLength} ` +
        '(the reply needs at least one more)',
      );
    }
    const maxTokens = Math.min(req.max_tokens ?? room, room);

    // Reuse: continue the current sequence if the prompt extends it, else go back to the last prompt's end.
    let reused = 0;
    if (fed.length > 0 && ids.length > fed.length && startsWith(ids, fed)) {
      reused = fed.length;
    } else if (promptPoint && ids.length > promptPoint.tokens.length && startsWith(ids, promptPoint.tokens)) {
      engine.restore(promptPoint.snap);
      fed = promptPoint.tokens.slice();
      reused = fed.length;
    } else {
      engine.reset();
      fed = [];
    }
    resetSampler(ctx, sampler);
    const enc = ctx.device.createCommandEncoder();
    recordTokens(directRecorder(ctx, enc), sampler, ids);
    ctx.device.queue.submit([enc.finish()]);

    /**
     * Runs `tokens` through the engine with `forward`, keeping `fed` equal to what the sequence holds: on an abort
     * (undefined) that is the chunks that ran, so a later prompt that extends them continues from there.
     */
    const feed = async <R>(tokens: number[], forward: () => Promise<R>): Promise<{ r: R } | undefined> => {
      const start = engine.position;
      try {
        const r = await forward();
        fed.push(...tokens);
        return { r };
      } catch (e) {
        if (!isAbortError(e)) throw e;
        fed.push(...tokens.slice(0, engine.position - start));
        return undefined;
      }
    };
    /** The id drawn after `sampled`; non-finite logits are an error, never token 0. */
    const checked = (kind: 'prefill' | 'decode', start: number, count: number, s: Sampled): number => {
      if (s.nonFinite) throw nonFiniteLogitsError(describeStep(kind, start, count), s.nonFinite.index, s.nonFinite.value);
      return s.id;
    };
    /** The first id, after the rest of the prompt; undefined when aborted. */
    const prefillAndDraw = async (tokens: number[]): Promise<number | undefined> => {
      const start = engine.position;
      const done = await feed(tokens, () => engine.sample(tokens, sampler, params, rng(), { signal }));
      return done && checked('prefill', start, tokens.length, done.r);
    };
    /**
     * Queues the decode step that feeds the last queued draw (it stays on the GPU) and draws the next one. The
     * caller adds the fed token to `fed` once it knows it.
     */
    const queueDecode = (): Promise<number> => {
      const start = engine.position;
      return engine.sample('sampled', sampler, params, rng()).then((s) => checked('decode', start, 1, s));
    };

    const t0 = now();
    let aborted = false;
    if (shared.length > reused) {
      const history = ids.slice(reused, shared.length);
      aborted = !(await feed(history, () => engine.forward(history, () => {}, async () => undefined, { signal })));
    }
    // The snapshot moves only once the whole shared history is in: an abort before leaves the previous one intact.
    if (!aborted && shared.length >= reused) promptPoint = { tokens: shared, snap: engine.snapshot(promptPoint?.snap) };
    let next = aborted ? undefined : await prefillAndDraw(ids.slice(Math.max(reused, shared.length)));
    // A stop that arrives while the prompt's last chunk runs still means no token.
    if (next === undefined || signal?.aborted) aborted = true;
    const tFirst = now();

    onChunk?.(chunk({ role: 'assistant' }));
    const detok = createDetokenizer(tokenizer, { skipSpecialTokens: true });
    const parser = createOutputParser({ thinking: promptOpensThinking(prompt), tools: req.tools });
    const stopper = createStopMatcher(stops);
    let finish: FinishReason = aborted ? 'abort' : 'length';
    let stoppedByString = false;
    let generated = 0;
    const emit = (text: string) => {
      for (const d of parser.push(text)) {
        onChunk?.(chunk(d.kind === 'content' ? { content: d.text } : { reasoning_content: d.text }));
      }
    };

    // With the pipeline, `ahead` is the step feeding `next`, queued before `next` was read back: the GPU works on
    // it while this loop detokenizes. When `next` turns out to end the reply, that step's draw is dropped; the
    // sequence keeps `next` (it is in `fed`), and the next turn reuses it only if its prompt continues with it.
    let ahead: Promise<number> | undefined;
    const pipelined = opts.pipeline !== false;
    try {
      while (next !== undefined && !aborted && generated < maxTokens) {
        if (eos.has(next)) { finish = 'stop'; break; }
        generated++;
        const { out, stopped } = stopper.push(detok.push(next));
        if (out) emit(out);
        if (stopped) { finish = 'stop'; stoppedByString = true; break; }
        if (signal?.aborted) { finish = 'abort'; break; }
        if (generated >= maxTokens) break;
        const current = ahead ?? queueDecode(); // feeds `next`
        ahead = undefined;
        fed.push(next);
        // The token `current` draws is number generated + 1; a step feeding it is needed only if one may follow.
        if (pipelined && generated + 1 < maxTokens && !signal?.aborted) ahead = queueDecode();
        next = await current;
      }
    } finally {
      // The step queued ahead fed `next` and still runs on the GPU: wait for it, so the sequence is settled.
      if (ahead) {
        await ahead.catch(() => {});
        if (next !== undefined) fed.push(next);
      }
    }
    // Release what the detokenizer and the stop matcher held back, unless a stop string already ended the text.
    if (!stoppedByString) {
      const tail = stopper.push(detok.flush());
      emit(tail.out + (tail.stopped ? '' : stopper.flush()));
    }
    const parsed = parser.end();
    for (const d of parsed.deltas) onChunk?.(chunk(d.kind === 'content' ? { content: d.text } : { reasoning_content: d.text }));
    if (parsed.tool_calls.length > 0) {
      if (finish === 'stop') finish = 'tool_calls';
      onChunk?.(chunk({ tool_calls: parsed.tool_calls.map((c, index) => ({ index, ...c })) }));
    }
    const tEnd = now();
    const prefilled = ids.length - reused;
    const usage: Usage = {
      prompt_tokens: ids.length,
      completion_tokens: generated,
      total_tokens: ids.length + generated,
      extra: {
        reused_prompt_tokens: reused,
        time_to_first_token_s: (tFirst - t0) / 1000,
        prefill_tokens_per_s: prefilled / Math.max(1e-9, (tFirst - t0) / 1000),
        decode_tokens_per_s: generated > 1 ? (generated - 1) / Math.max(1e-9, (tEnd - tFirst) / 1000) : 0,
      },
    };
    onChunk?.({ ...chunk({}, finish), usage });
    return {
      id, object: 'chat.completion', created, model: opts.modelId,
      choices: [{
        index: 0,
        message: {
          role: 'assistant',
          content: parsed.content || (parsed.tool_calls.length ? null : ''),
          ...(parsed.reasoning_content ? { reasoning_content: parsed.reasoning_content } : {}),
          ...(parsed.tool_calls.length ? { tool_calls: parsed.tool_calls } : {}),
        },
        finish_reason: finish,
      }],
      usage,
    };
  }

  return {
    complete,
    resetChat() {
      forget();
      engine.reset();
    },
    dispose() {
      forget();
      destroySampler(sampler);
    },
  };
}
