// HTTP plumbing shared by the byte source that reads checkpoints over the network (http-source.ts: the CLI, the
// worker) and the browser's cache downloader (download.ts): a deadline for the response headers and a watchdog on
// the body, bounded retries with backoff (Retry-After honoured up to a cap), a 206 believed only when its
// Content-Range is the range asked for, and errors that name the URL, the byte range and the underlying cause.
// Runs unchanged in Node 20 and browsers.

import { isNotFound } from '../format/safetensors.ts';

export interface FetchPolicy {
  fetch?: typeof fetch;
  /** Extra request headers, e.g. Authorization for gated repos. */
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Further attempts after a network error, a timeout, 5xx, 408 or 429 (default 4). */
  retries?: number;
  /** First backoff delay, doubled per attempt (default 500 ms). */
  backoffMs?: number;
  /** Longest wait between attempts, a Retry-After included (default 60 s). */
  maxBackoffMs?: number;
  /** A request whose response headers have not arrived after this long is dropped (default 15 s). */
  headersTimeoutMs?: number;
  /** A response body that delivers no byte for this long is dropped (default 20 s). */
  stallMs?: number;
}

export const FETCH_DEFAULTS = {
  // huggingface_hub waits 10 s for a response (HF_HUB_DOWNLOAD_TIMEOUT, HF_HUB_ETAG_TIMEOUT); a little more here, and
  // with one retry of a timeout (TIMEOUT_RETRIES) a silent server is reported within about 45 s.
  retries: 4, backoffMs: 500, maxBackoffMs: 60_000, headersTimeoutMs: 15_000, stallMs: 20_000,
} as const;

export class HttpError extends Error {
  constructor(readonly url: string, readonly status: number, statusText: string, readonly retryAfterMs: number | null) {
    super(`${url}: HTTP ${status} ${statusText}`.trim());
    this.name = 'HttpError';
  }
  get retryable(): boolean {
    return this.status >= 500 || this.status === 429 || this.status === 408;
  }
}

/** Downloaded bytes that do not match what the server or the format promised. */
export class IntegrityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IntegrityError';
  }
}

/** Trouble worth another attempt: a refused or cut connection, a timeout, a stall, a file that changed under a resume. */
export class TransientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TransientError';
  }
}

/** A server that sent no headers, or stopped sending bytes, for the allotted time. */
export class TimeoutError extends TransientError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'TimeoutError';
  }
}

/**
 * Timeouts get fewer attempts than quick failures: each one already cost a whole deadline, and a server that is
 * silent twice in a row rarely answers the third time (5 × 30 s kept a user waiting 2.5 minutes for an error).
 */
export const TIMEOUT_RETRIES = 1;

export function isTransient(e: unknown): boolean {
  return e instanceof TransientError || (e instanceof HttpError && e.retryable);
}

/**
 * A readable account of an error and its causes. undici reports every network failure as "fetch failed" or
 * "terminated" and hides what happened (ECONNREFUSED, ENOTFOUND, ECONNRESET, "other side closed") in `cause`.
 */
export function describeError(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur !== undefined && cur !== null && depth < 6; depth++) {
    let msg = cur instanceof Error ? cur.message : String(cur);
    // A connection to a name with several addresses fails with an AggregateError whose own message is empty.
    if (!msg && cur instanceof AggregateError) msg = cur.errors.map((x) => describeError(x)).join('; ');
    const code = (cur as { code?: unknown }).code;
    if (typeof code === 'string' && !msg.includes(code)) msg = msg ? `${msg} (${code})` : code;
    if (msg && !parts.some((p) => p.includes(msg))) parts.push(msg);
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join(': ') || 'unknown error';
}

export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The download was aborted', 'AbortError');
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw abortReason(signal);
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    throwIfAborted(signal);
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

const seconds = (ms: number): string => `${ms / 1000} s`;

export interface ContentRange { start: number; end: number; total: number | null }

export function parseContentRange(v: string | null): ContentRange | null {
  const m = v ? /^bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(v) : null;
  return m ? { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) } : null;
}

export function retryAfterMs(headers: Headers): number | null {
  const v = headers.get('retry-after');
  if (!v) return null;
  const secs = Number(v);
  if (Number.isFinite(secs)) return Math.max(0, secs * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now());
}

export interface RetryOptions extends FetchPolicy {
  /** Which failures get another attempt (default: isTransient). */
  isRetryable?: (e: unknown) => boolean;
  /** Asked after a failure: did that attempt make progress? A transfer that keeps moving is never given up on. */
  progressed?: () => Promise<boolean>;
}

/**
 * Runs `attempt` until it succeeds, retrying transient failures with exponential backoff. The final error says how
 * many attempts were made; `what` (when given) leads its message.
 */
export async function withRetries<T>(what: string | null, attempt: () => Promise<T>, opts: RetryOptions = {}): Promise<T> {
  const retries = opts.retries ?? FETCH_DEFAULTS.retries;
  const backoffMs = opts.backoffMs ?? FETCH_DEFAULTS.backoffMs;
  const maxBackoffMs = opts.maxBackoffMs ?? FETCH_DEFAULTS.maxBackoffMs;
  const retryable = opts.isRetryable ?? isTransient;
  let timeouts = 0;
  for (let failures = 0; ; failures++) {
    throwIfAborted(opts.signal);
    try {
      return await attempt();
    } catch (e) {
      if (opts.signal?.aborted) throw abortReason(opts.signal);
      if (!retryable(e)) throw e;
      if (opts.progressed && (await opts.progressed())) { failures = 0; timeouts = 0; }
      if (e instanceof TimeoutError) timeouts++;
      if (failures >= retries || timeouts > Math.min(retries, TIMEOUT_RETRIES)) {
        if (failures === 0) throw e;
        const msg = (e as Error).message;
        const n = failures + 1;
        throw new Error(what ? `${what}: gave up after ${n} attempts: ${msg}` : `${msg} (gave up after ${n} attempts)`, { cause: e });
      }
      const wait = Math.min(maxBackoffMs, Math.max(backoffMs * 2 ** failures, (e as HttpError).retryAfterMs ?? 0));
      await sleep(wait, opts.signal);
    }
  }
}

export interface Watched {
  response: Promise<Response>;
  /** Data arrived: restart the stall watchdog. */
  touch(): void;
  /** Local work (an IndexedDB write) is not the network stalling: stop the watchdog until the next touch. */
  pause(): void;
  /** The request is over: timers off, the caller's signal released. */
  done(): void;
  /** The error a failed fetch or body read should surface as: timeouts and network failures named and transient. */
  wrap(e: unknown): unknown;
}

/**
 * A fetch under a headers deadline and a body stall watchdog. `label` (default the URL) leads every error, so a
 * caller can add the byte range.
 */
export function watchedFetch(url: string, init: RequestInit, policy: FetchPolicy, label = url): Watched {
  const doFetch = policy.fetch ?? globalThis.fetch.bind(globalThis);
  const headersMs = policy.headersTimeoutMs ?? FETCH_DEFAULTS.headersTimeoutMs;
  const stallMs = policy.stallMs ?? FETCH_DEFAULTS.stallMs;
  const signal = policy.signal;
  const ac = new AbortController();
  let timedOut: string | null = null;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const arm = (ms: number, why: string) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timedOut = why;
      ac.abort(new TimeoutError(`${label}: ${why}`));
    }, ms);
  };
  const touch = () => arm(stallMs, `no data for ${seconds(stallMs)}`);
  const onAbort = () => ac.abort(abortReason(signal!));
  const done = () => {
    clearTimeout(timer);
    signal?.removeEventListener('abort', onAbort);
  };
  const wrap = (e: unknown): unknown => {
    if (timedOut) return new TimeoutError(`${label}: ${timedOut}`, { cause: e });
    if (signal?.aborted) return abortReason(signal);
    if (e instanceof HttpError || e instanceof IntegrityError || e instanceof TransientError || isNotFound(e)) return e;
    // What is left is the platform's network failure (a TypeError in every runtime).
    return new TransientError(`${label}: ${describeError(e)}`, { cause: e });
  };
  if (signal?.aborted) ac.abort(abortReason(signal));
  else signal?.addEventListener('abort', onAbort, { once: true });
  arm(headersMs, `no response within ${seconds(headersMs)}`);
  const headers = { ...policy.headers, ...(init.headers as Record<string, string> | undefined) };
  const response = doFetch(url, { ...init, headers, signal: ac.signal }).then(
    (res) => {
      touch();
      return res;
    },
    (e) => {
      done();
      throw wrap(e);
    },
  );
  return { response, touch, pause: () => clearTimeout(timer), done, wrap };
}

/** Throws for an unsuccessful status: `notFound()` for 404/410, else an HttpError (retryable for 5xx, 408, 429). */
export async function checkStatus(res: Response, label: string, notFound: () => Error): Promise<void> {
  if (res.ok) {
    // No checkpoint file is HTML: this is a login page, a proxy's error page or a site's catch-all route answering
    // 200 for a path it does not have. Say so, rather than report its bytes as a corrupt file.
    const type = res.headers.get('content-type') ?? '';
    if (/^\s*text\/html\b/i.test(type)) {
      await res.body?.cancel().catch(() => undefined);
      throw new IntegrityError(`${label}: the server answered with an HTML page (Content-Type ${type.trim()}), not the file ` +
        '(a wrong URL, a login page, or a site that answers every path with its index page)');
    }
    return;
  }
  await res.body?.cancel().catch(() => undefined);
  if (res.status === 404 || res.status === 410) throw notFound();
  throw new HttpError(label, res.status, res.statusText, retryAfterMs(res.headers));
}

/**
 * A 206 must answer exactly bytes [from, to); and, when the caller knows the file's size, of a file of that size.
 * Anything else would put another offset's bytes where the caller expects these.
 */
export async function checkContentRange(res: Response, url: string, from: number, to: number, total?: number): Promise<ContentRange> {
  const raw = res.headers.get('content-range');
  const cr = parseContentRange(raw);
  let problem: string | null = null;
  if (!cr || cr.start !== from || cr.end !== to - 1) problem = `server answered Content-Range ${JSON.stringify(raw)}`;
  else if (total !== undefined && cr.total !== null && cr.total !== total) {
    problem = `server answered Content-Range ${JSON.stringify(raw)}, but the file had ${total} bytes (it changed on the server?)`;
  }
  if (problem) {
    await res.body?.cancel().catch(() => undefined);
    throw new IntegrityError(`${url}: asked for bytes ${from}-${to - 1}, ${problem}`);
  }
  return cr!;
}

/**
 * Reads bytes [from, to) out of a response body whose first byte is at file offset `at` (a 206: from; a 200 that
 * ignored Range: 0), then cancels the rest. Each body chunk restarts the watchdog and is counted by onBytes.
 */
export async function readSpan(
  res: Response, w: Watched, label: string, at: number, from: number, to: number, onBytes?: (n: number) => void,
): Promise<Uint8Array> {
  const out = new Uint8Array(to - from);
  if (!res.body) throw new TransientError(`${label}: response has no body`);
  let got = 0;
  const reader = res.body.getReader();
  try {
    while (got < out.byteLength) {
      const { done, value } = await reader.read().catch((e) => { throw w.wrap(e); });
      if (done) break;
      w.touch();
      onBytes?.(value.byteLength);
      const a = Math.max(at, from + got);
      const b = Math.min(at + value.byteLength, to);
      if (b > a) {
        out.set(value.subarray(a - at, b - at), a - from);
        got = b - from;
      }
      at += value.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  if (got < out.byteLength) throw new TransientError(`${label}: connection closed after ${got} of ${out.byteLength} bytes`);
  return out;
}

/**
 * A whole response body, under the same watchdog; for servers that ignore Range. A body cut short of its
 * Content-Length already fails the read in every runtime; comparing lengths here would misfire on a compressed
 * response whose Content-Encoding a cross-origin page cannot see.
 */
export async function readAll(res: Response, w: Watched, label: string, onBytes?: (n: number) => void): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  if (res.body) {
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read().catch((e) => { throw w.wrap(e); });
        if (done) break;
        w.touch();
        onBytes?.(value.byteLength);
        parts.push(value);
        n += value.byteLength;
      }
    } finally {
      reader.releaseLock();
    }
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.byteLength;
  }
  return out;
}

export interface RangeRequest extends FetchPolicy {
  /** The error for a 404/410. */
  notFound: () => Error;
  /** The file's size, when known: a 206 from a file of another size is refused. */
  total?: number;
  onBytes?: (n: number) => void;
}

/** Bytes [from, to) of `url` in one request (no retries); a server that ignores Range is read up to `to`. */
export async function fetchRange(url: string, from: number, to: number, req: RangeRequest): Promise<Uint8Array> {
  const label = `${url} (bytes ${from}-${to - 1})`;
  const w = watchedFetch(url, { headers: { Range: `bytes=${from}-${to - 1}` }, cache: 'no-store' }, req, label);
  try {
    const res = await w.response;
    await checkStatus(res, label, req.notFound);
    if (res.status === 206) await checkContentRange(res, url, from, to, req.total);
    return await readSpan(res, w, label, res.status === 206 ? from : 0, from, to, req.onBytes);
  } finally {
    w.done();
  }
}
