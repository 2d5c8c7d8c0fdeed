// Thin wrapper over @huggingface/tokenizers with the few things the runtime needs: ids without BOS, special-token
// bookkeeping for sampling/stop logic, and the chat template + eos/bos strings from tokenizer_config.json.

import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
}

export interface Tokenizer {
  /** Token ids for `text`; nothing is prepended or appended, special tokens written in the text map to their ids. */
  encode(text: string): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  tokenToId(token: string): number | undefined;
  idToToken(id: number): string | undefined;
  /** Highest id + 1, added tokens included (ids at or past this must never be sampled). */
  readonly vocabSize: number;
  /** Ids of added tokens flagged special (`<|im_end|>` etc.; `<think>` and `<tool_call>` are not special). */
  readonly specialIds: ReadonlySet<number>;
  readonly chatTemplate?: string;
  readonly eosToken?: string;
  readonly eosTokenId?: number;
  readonly bosToken?: string;
}

interface AddedTokenJson {
  id: number;
  content: string;
  single_word?: boolean;
  lstrip?: boolean;
  rstrip?: boolean;
  normalized?: boolean;
  special?: boolean;
}

type Json = Record<string, unknown>;

export function loadTokenizer(tokenizerJson: object | string, tokenizerConfig?: object | string): Tokenizer {
  const json = asObject(tokenizerJson, 'tokenizer.json');
  const config = tokenizerConfig === undefined ? {} : asObject(tokenizerConfig, 'tokenizer_config.json');
  if (typeof json.model !== 'object' || json.model === null) {
    throw new Error('tokenizer.json: no "model" object (is this a tokenizer.json file?)');
  }
  const added = mergeAddedTokens(json, config);
  const hf = new HFTokenizer(
    { ...json, added_tokens: added },
    // Byte-level BPE decodes exactly; the library's default clean-up (" ." → ".") would break that and is not
    // prefix-stable, which the incremental detokenizer relies on. Qwen's configs say false as well.
    { ...config, clean_up_tokenization_spaces: config.clean_up_tokenization_spaces === true },
  );

  let vocabSize = 0;
  for (const id of hf.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);
  const specialIds = new Set(added.filter((t) => t.special).map((t) => t.id));
  const eosToken = tokenString(config.eos_token);
  const bosToken = tokenString(config.bos_token);

  function decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    if (ids.length === 0) return '';
    for (const id of ids) {
      if (!Number.isInteger(id) || hf.id_to_token(id) === undefined) {
        throw new RangeError(`decode: token id ${id} is not in the vocabulary (size ${vocabSize})`);
      }
    }
    return hf.decode(ids as number[], { skip_special_tokens: opts.skipSpecialTokens ?? false });
  }

  return {
    encode: (text) => (text === '' ? [] : hf.encode(text, { add_special_tokens: false }).ids),
    decode,
    tokenToId: (token) => hf.token_to_id(token),
    idToToken: (id) => hf.id_to_token(id),
    vocabSize,
    specialIds,
    chatTemplate: pickChatTemplate(config.chat_template),
    eosToken,
    eosTokenId: eosToken === undefined ? undefined : hf.token_to_id(eosToken),
    bosToken,
  };
}

function asObject(value: object | string, what: string): Json {
  if (typeof value !== 'string') return value as Json;
  try {
    return JSON.parse(value) as Json;
  } catch (e) {
    throw new Error(`${what}: not valid JSON (${(e as Error).message})`);
  }
}

// transformers also registers tokenizer_config's added_tokens_decoder entries that tokenizer.json lacks (Qwen3.5's
// audio/TTS ids 248070–248076 live only there), so the vocabulary size agrees with transformers' len(tokenizer).
function mergeAddedTokens(json: Json, config: Json): AddedTokenJson[] {
  const own = Array.isArray(json.added_tokens) ? (json.added_tokens as AddedTokenJson[]) : [];
  const byId = new Map(own.map((t) => [t.id, t]));
  const decoder = config.added_tokens_decoder;
  if (decoder && typeof decoder === 'object') {
    for (const [key, value] of Object.entries(decoder as Record<string, Partial<AddedTokenJson>>)) {
      const id = Number(key);
      if (!Number.isInteger(id) || byId.has(id) || typeof value?.content !== 'string') continue;
      byId.set(id, {
        id,
        content: value.content,
        single_word: value.single_word ?? false,
        lstrip: value.lstrip ?? false,
        rstrip: value.rstrip ?? false,
        normalized: value.normalized ?? false,
        special: value.special ?? false,
      });
    }
  }
  return [...byId.values()].sort((a, b) => a.id - b.id);
}

// Older configs serialise tokens as AddedToken objects ({content, ...}) instead of plain strings.
function tokenString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return undefined;
}

// Some configs ship several named templates ([{name, template}]); the chat one is called "default".
function pickChatTemplate(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value as Array<{ name?: unknown; template?: unknown }>;
    const hit = named.find((t) => t.name === 'default') ?? named[0];
    return typeof hit?.template === 'string' ? hit.template : undefined;
  }
  return undefined;
}
