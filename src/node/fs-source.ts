// ByteSource over a checkpoint folder on the local file system.

import { open, stat } from 'node:fs/promises';
import path from 'node:path';
import { FileNotFoundError, type ByteSource } from '../format/safetensors.ts';

function resolveInside(dir: string, file: string): string {
  const full = path.resolve(dir, file);
  const rel = path.relative(dir, full);
  // Names come from index files we do not control; never let one reach outside the checkpoint folder.
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw new Error(`${file}: refusing a path outside ${dir}`);
  return full;
}

function rethrow(e: unknown, file: string, dir: string): never {
  if ((e as NodeJS.ErrnoException)?.code === 'ENOENT') throw new FileNotFoundError(file, dir);
  throw e;
}

export function dirSource(dir: string): ByteSource {
  const root = path.resolve(dir);
  return {
    describe: () => root,
    async size(file) {
      const s = await stat(resolveInside(root, file)).catch((e) => rethrow(e, file, root));
      if (!s.isFile()) throw new Error(`${file}: not a regular file in ${root}`);
      return s.size;
    },
    async read(file, offset, length) {
      const fh = await open(resolveInside(root, file), 'r').catch((e) => rethrow(e, file, root));
      try {
        const out = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await fh.read(out, done, length - done, offset + done);
          if (bytesRead === 0) {
            throw new Error(`${root}/${file}: wanted ${length} bytes at offset ${offset}, the file ends after ${done}`);
          }
          done += bytesRead;
        }
        return out;
      } finally {
        await fh.close();
      }
    },
  };
}
