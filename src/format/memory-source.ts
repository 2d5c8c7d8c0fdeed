// A ByteSource over files held in memory (tests, checkpoints generated on the fly, files the user picked).
import { FileNotFoundError, type ByteSource } from './safetensors.ts';

export function memorySource(files: Map<string, Uint8Array>, name = 'memory'): ByteSource {
  const get = (file: string): Uint8Array => {
    const f = files.get(file);
    if (!f) throw new FileNotFoundError(file, name);
    return f;
  };
  return {
    describe: () => name,
    size: async (file) => get(file).byteLength,
    read: async (file, offset, length) => {
      const f = get(file);
      if (offset < 0 || offset + length > f.byteLength) {
        throw new Error(`${name}/${file}: read of ${length} bytes at ${offset} is beyond the file's ${f.byteLength} bytes`);
      }
      return f.subarray(offset, offset + length);
    },
  };
}
