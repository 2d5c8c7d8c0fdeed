// Incremental detokenization with the prefix-offset technique: decode a short window of recent ids twice (without
// and with the unread tail) and emit only what the tail added. Decoding windows, not single ids, is what keeps byte-level
// tokens that each hold part of one UTF-8 character from coming out as U+FFFD.

import type { DecodeOptions, Tokenizer } from './tokenizer.ts';

export interface Detokenizer {
  /** Text completed by `id`; '' while a character is still incomplete. */
  push(id: number): string;
  /** Whatever is still held back (at the end of a stream an incomplete character is real and comes out as U+FFFD). */
  flush(): string;
}

const REPLACEMENT = '\uFFFD';

export function createDetokenizer(
  tok: Pick<Tokenizer, 'decode'>,
  opts: { skipSpecialTokens?: boolean } = {},
): Detokenizer {
  const decodeOpts: DecodeOptions = { skipSpecialTokens: opts.skipSpecialTokens ?? false };
  // The window: ids[0, readOffset) were already emitted and are kept only as decoding context for the ids after them;
  // prefixText is their decoding, kept so each push decodes once.
  let ids: number[] = [];
  let readOffset = 0;
  let prefixText = '';

  function take(final: boolean): string {
    const text = tok.decode(ids, decodeOpts);
    if (text.length <= prefixText.length || (!final && text.endsWith(REPLACEMENT))) return '';
    const piece = text.slice(prefixText.length);
    ids = ids.slice(readOffset);
    readOffset = ids.length;
    prefixText = tok.decode(ids, decodeOpts);
    return piece;
  }

  return {
    push(id) {
      ids.push(id);
      return take(false);
    },
    flush() {
      const piece = readOffset < ids.length ? take(true) : '';
      // A character cut off by the end of the stream must not swallow bytes of whatever is pushed next.
      ids = [];
      readOffset = 0;
      prefixText = '';
      return piece;
    },
  };
}
