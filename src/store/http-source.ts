// ByteSource over HTTP(S) with Range requests; runs unchanged in Node 20 and browsers. Servers that ignore
// Range get one full download per file, kept in memory and sliced for later reads. Requests go through
// fetch-range.ts: timeouts, a stall watchdog, retries, Content-Range checked, errors naming URL, range and cause.

import { FileNotFoundError, type ByteSource } from '../format/safetensors.ts';
import {
  HttpError, IntegrityError, checkContentRange, checkStatus, parseContentRange, readAll, readSpan, watchedFetch, withRetries,
  type FetchPolicy, type Watched,
} from './fetch-range.ts';

export interface HttpSourceOptions extends FetchPolicy {
  /** Called with the length of each body chunk as it arrives (download progress). */
  onBytes?: (n: number) => void;
}

/** URL of a checkpoint file under a base URL; each path segment is percent-encoded. */
export function joinUrl(base: string, file: string): string {
  return (base.endsWith('/') ? base : `${base}/`) + file.split('/').map(encodeURIComponent).join('/');
}

const isLength = (v: string | null | undefined): v is string => typeof v === 'string' && /^\d+$/.test(v.trim());

export function httpSource(baseUrl: string, opts: HttpSourceOptions = {}): ByteSource {
  // A malformed base URL would otherwise fail every request as a "network error" and be retried.
  try {
    new URL(baseUrl);
  } catch {
    throw new Error(`${JSON.stringify(baseUrl)} is not a valid URL`);
  }
  const whole = new Map<string, Promise<Uint8Array>>();
  const sizes = new Map<string, Promise<number>>();
  /** Sizes already learnt; a later 206 from a file of another size means the file changed under us. */
  const known = new Map<string, number>();
  const notFound = (file: string) => () => new FileNotFoundError(file, baseUrl);

  function keepWhole(file: string, res: Response, w: Watched, label: string): Promise<Uint8Array> {
    const p = readAll(res, w, label, opts.onBytes);
    whole.set(file, p);
    p.then((b) => known.set(file, b.byteLength), () => whole.delete(file));
    return p;
  }

  /** Response headers of a HEAD, or null where the server refuses HEAD (the ranged GET still works). */
  function head(file: string): Promise<Headers | null> {
    const url = joinUrl(baseUrl, file);
    const label = `${url} (HEAD)`;
    return withRetries(null, async () => {
      const w = watchedFetch(url, { method: 'HEAD' }, opts, label);
      try {
        const res = await w.response;
        await res.body?.cancel().catch(() => undefined);
        if (res.ok) return res.headers;
        if (res.status === 404 || res.status === 410) throw notFound(file)();
        const err = new HttpError(label, res.status, res.statusText, null);
        if (err.retryable) throw err;
        return null;
      } finally {
        w.done();
      }
    }, opts);
  }

  async function fetchSize(file: string): Promise<number> {
    const h = await head(file);
    const len = h?.get('content-length');
    // A compressed response's Content-Length is not the file size.
    if (h && isLength(len) && !h.get('content-encoding')) return Number(len);
    const url = joinUrl(baseUrl, file);
    const label = `${url} (bytes 0-0)`;
    return withRetries(null, async () => {
      const w = watchedFetch(url, { headers: { Range: 'bytes=0-0' } }, opts, label);
      try {
        const res = await w.response;
        await checkStatus(res, label, notFound(file));
        if (res.status !== 206) return (await (whole.get(file) ?? keepWhole(file, res, w, label))).byteLength;
        const raw = res.headers.get('content-range');
        const cr = parseContentRange(raw);
        await res.body?.cancel().catch(() => undefined);
        if (cr && cr.start === 0 && cr.total !== null) return cr.total;
        throw new IntegrityError(`${label}: 206 response without a usable Content-Range header (${JSON.stringify(raw)})`);
      } finally {
        w.done();
      }
    }, opts);
  }

  function slice(bytes: Uint8Array, label: string, offset: number, length: number): Uint8Array {
    if (offset + length > bytes.byteLength) {
      throw new Error(`${label}: wanted ${length} bytes at offset ${offset}, the file has ${bytes.byteLength}`);
    }
    return bytes.subarray(offset, offset + length);
  }

  return {
    describe: () => baseUrl,
    size(file) {
      let p = sizes.get(file);
      if (!p) {
        p = whole.has(file) ? whole.get(file)!.then((b) => b.byteLength) : fetchSize(file);
        sizes.set(file, p);
        p.then((n) => known.set(file, n), () => sizes.delete(file));
      }
      return p;
    },
    async read(file, offset, length) {
      if (length === 0) return new Uint8Array(0);
      const url = joinUrl(baseUrl, file);
      const label = `${url} (bytes ${offset}-${offset + length - 1})`;
      return withRetries(null, async () => {
        const cached = whole.get(file);
        if (cached) return slice(await cached, label, offset, length);
        const w = watchedFetch(url, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } }, opts, label);
        try {
          const res = await w.response;
          await checkStatus(res, label, notFound(file));
          if (res.status === 206) {
            await checkContentRange(res, url, offset, offset + length, known.get(file));
            return await readSpan(res, w, label, offset, offset, offset + length, opts.onBytes);
          }
          // A concurrent read may already be holding the whole file; do not keep two copies.
          const other = whole.get(file);
          if (other) await res.body?.cancel().catch(() => undefined);
          return slice(await (other ?? keepWhole(file, res, w, label)), label, offset, length);
        } finally {
          w.done();
        }
      }, opts);
    },
  };
}
