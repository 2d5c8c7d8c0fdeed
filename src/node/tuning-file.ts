// The Node TuningStore: one JSON file of tunings keyed by adapter, in the user's cache folder
// ($QWEN_WEBGPU_CACHE_DIR, else $XDG_CACHE_HOME/qwen-webgpu, else ~/.cache/qwen-webgpu). Written whole through a
// temporary file and a rename, so two processes tuning at once leave one complete file, never half of each.
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TuningStore } from '../gpu/autotune.ts';

export function tuningFilePath(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.QWEN_WEBGPU_CACHE_DIR || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'qwen-webgpu');
  return join(dir, 'tuning.json');
}

export function fileTuningStore(path = tuningFilePath()): TuningStore {
  const readAll = async (): Promise<Record<string, unknown>> => {
    try {
      const v = JSON.parse(await readFile(path, 'utf8'));
      return v && typeof v === 'object' ? v : {};
    } catch {
      return {};
    }
  };
  return {
    get: async (key) => (await readAll())[key],
    async set(key, value) {
      const all = { ...(await readAll()), [key]: value };
      await mkdir(dirname(path), { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, JSON.stringify(all, null, 1) + '\n');
      await rename(tmp, path);
    },
  };
}
