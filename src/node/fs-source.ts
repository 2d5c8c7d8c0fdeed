// ByteSource over a checkpoint folder on the local file system. Files may be symlinks that point anywhere: the
// Hugging Face cache is built of them (snapshots/<rev>/model.safetensors -> ../../blobs/<sha256>), and stat/open
// follow them.

import { lstat, open, readlink, stat } from 'node:fs/promises';
import path from 'node:path';
import { FileNotFoundError, type ByteSource } from '../format/safetensors.ts';

/**
 * Names come from index files we do not control, so the *name* must stay inside the folder: relative, no `..`
 * segment, no NUL. Where a symlink in the folder leads is the folder owner's choice, not the index file's.
 */
function resolveInside(dir: string, file: string): string {
  const segments = file.split(/[\\/]/);
  if (file === '' || file.includes('\0') || path.isAbsolute(file) || /^[a-zA-Z]:/.test(file) || segments.includes('..')) {
    throw new Error(`${JSON.stringify(file)}: refusing a file name outside ${dir} (absolute, or with a ".." segment)`);
  }
  return path.join(dir, file);
}

async function rethrow(e: unknown, file: string, full: string, dir: string): Promise<never> {
  if ((e as NodeJS.ErrnoException)?.code !== 'ENOENT') throw e;
  // A dangling link (a blob deleted from the HF cache) says where it pointed, not just "not found".
  const link = await lstat(full).then((s) => (s.isSymbolicLink() ? readlink(full) : null), () => null);
  if (link !== null) throw new Error(`${full}: symlink to ${link}, which does not exist`);
  throw new FileNotFoundError(file, dir);
}

export function dirSource(dir: string): ByteSource {
  const root = path.resolve(dir);
  return {
    describe: () => root,
    async size(file) {
      const full = resolveInside(root, file);
      const s = await stat(full).catch((e) => rethrow(e, file, full, root));
      if (!s.isFile()) throw new Error(`${full}: not a regular file`);
      return s.size;
    },
    async read(file, offset, length) {
      const full = resolveInside(root, file);
      const fh = await open(full, 'r').catch((e) => rethrow(e, file, full, root));
      try {
        const out = new Uint8Array(length);
        let done = 0;
        while (done < length) {
          const { bytesRead } = await fh.read(out, done, length - done, offset + done);
          if (bytesRead === 0) {
            throw new Error(`${full}: wanted ${length} bytes at offset ${offset}, the file ends after ${done}`);
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
