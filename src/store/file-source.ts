// ByteSource over files the user picked (directory picker or <input webkitdirectory>): reads slice the File
// objects, so nothing is copied into memory beyond the ranges asked for.
import { FileNotFoundError, type ByteSource } from '../format/safetensors.ts';

/** Name of a picked file relative to the checkpoint folder (the picked folder itself is dropped). */
function relativeName(f: File): string {
  const rel = (f as File & { webkitRelativePath?: string }).webkitRelativePath;
  if (!rel) return f.name;
  const i = rel.indexOf('/');
  return i >= 0 ? rel.slice(i + 1) : rel;
}

export function filesSource(files: Iterable<File>, name = 'picked files'): ByteSource {
  const byName = new Map<string, File>();
  for (const f of files) byName.set(relativeName(f), f);
  const get = (file: string) => {
    const f = byName.get(file);
    if (!f) throw new FileNotFoundError(file, name);
    return f;
  };
  return {
    describe: () => name,
    size: async (file) => get(file).size,
    read: async (file, offset, length) => {
      const f = get(file);
      if (offset + length > f.size) throw new Error(`${name}/${file}: read of ${length} bytes at ${offset} is beyond its ${f.size} bytes`);
      return new Uint8Array(await f.slice(offset, offset + length).arrayBuffer());
    },
  };
}
