// The browser TuningStore: kernel tunings by adapter in their own IndexedDB database (idb-keyval), apart from the
// shard cache so clearing models keeps the tuning and the reverse.
import { createStore, get, set } from 'idb-keyval';
import type { TuningStore } from '../gpu/autotune.ts';

export function idbTuningStore(): TuningStore {
  const store = createStore('qwen-webgpu-tuning', 'tuning');
  return { get: (key) => get(key, store), set: (key, value) => set(key, value, store) };
}
