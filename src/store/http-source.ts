// ByteSource over HTTP(S) with Range requests; runs unchanged in Node 20 and browsers. Servers that ignore
// Range get one full download per file, kept in memory and sliced for later reads.

import { FileNotFoundError, type ByteSource } from '../format/safetensors.ts';

export interface HttpSourceOptions {
  fetch?: typeof fetch;
  headers?: Record<string, string>;
}

/** URL of a checkpoint file under a base URL; each path segment is percent-encoded. */
export function joinUrl(base: string, file: string): string {
  return (base.endsWith('/') ? base : `${base}/`) + file.split('/').map(encodeURIComponent).join('/');
}

/** Total length from a "bytes a-b/total" Content-Range header, or null. */
function totalFromContentRange(v: string | null): number | null {
  const m = v ? /\/(\d+)\s*$/.exec(v) : null;
  return m ? Number(m[1]) : null;
}

export function httpSource(baseUrl: string, opts: HttpSourceOptions = {}): ByteSource {
  const doFetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
  const whole = new Map<string, Promise<Uint8Array>>();
  const sizes = new Map<string, Promise<number>>();

  async function request(file: string, init: RequestInit): Promise<Response> {
    const url = joinUrl(baseUrl, file);
    const res = await doFetch(url, { ...init, headers: { ...opts.headers, ...(init.headers as Record<string, string>) } });
    if (res.status === 404 || res.status === 410) {
      await res.body?.cancel();
      throw new FileNotFoundError(file, baseUrl);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new Error(`${url}: HTTP ${res.status} ${res.statusText}`);
    }
    return res;
  }

  function keepWhole(file: string, res: Response): Promise<Uint8Array> {
    const p = res.arrayBuffer().then((b) => new Uint8Array(b));
    whole.set(file, p);
    p.catch(() => whole.delete(file));
    return p;
  }

  async function fetchSize(file: string): Promise<number> {
    const head = await request(file, { method: 'HEAD' }).catch((e) => {
      if ((e as { notFound?: boolean }).notFound) throw e;
      return null; // some servers refuse HEAD; the ranged GET below still works
    });
    const len = head?.headers.get('content-length');
    // A compressed response's Content-Length is not the file size.
    if (head && len !== null && len !== undefined && !head.headers.get('content-encoding')) return Number(len);
    const res = await request(file, { headers: { Range: 'bytes=0-0' } });
    if (res.status === 206) {
      const total = totalFromContentRange(res.headers.get('content-range'));
      await res.body?.cancel();
      if (total !== null) return total;
      throw new Error(`${joinUrl(baseUrl, file)}: 206 response without a usable Content-Range header`);
    }
    return (await keepWhole(file, res)).byteLength;
  }

  return {
    describe: () => baseUrl,
    size(file) {
      let p = sizes.get(file);
      if (!p) {
        p = whole.has(file) ? whole.get(file)!.then((b) => b.byteLength) : fetchSize(file);
        sizes.set(file, p);
        p.catch(() => sizes.delete(file));
      }
      return p;
    },
    async read(file, offset, length) {
      if (length === 0) return new Uint8Array(0);
      const cached = whole.get(file);
      let bytes: Uint8Array;
      if (cached) {
        bytes = (await cached).subarray(offset, offset + length);
      } else {
        const res = await request(file, { headers: { Range: `bytes=${offset}-${offset + length - 1}` } });
        if (res.status === 206) {
          bytes = new Uint8Array(await res.arrayBuffer());
        } else {
          // A concurrent read may already be holding the whole file; do not keep two copies.
          const other = whole.get(file);
          if (other) await res.body?.cancel();
          bytes = (await (other ?? keepWhole(file, res))).subarray(offset, offset + length);
        }
      }
      if (bytes.byteLength !== length) {
        throw new Error(`${joinUrl(baseUrl, file)}: wanted ${length} bytes at offset ${offset}, got ${bytes.byteLength}`);
      }
      return bytes;
    },
  };
}
