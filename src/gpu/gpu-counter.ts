// Counts what code does to a GPUDevice, from outside: wraps the device's, the queue's and new encoders' and passes'
// methods in place (own properties over the prototype's), tallies object creation, compute passes, dispatches,
// queue writes and submits, and restore() puts everything back. The bench and the tests measure the per-token
// structure of a decode step with it, without trusting the engine's own numbers.

export interface Counts {
  buffers: number; bindGroups: number; pipelines: number; encoders: number; passes: number; dispatches: number;
  writeBuffers: number; submits: number;
}

const zero = (): Counts => ({
  buffers: 0, bindGroups: 0, pipelines: 0, encoders: 0, passes: 0, dispatches: 0, writeBuffers: 0, submits: 0,
});

export interface Probe {
  counts: Counts;
  /** performance.now() when the last queue.submit returned. */
  lastSubmitEnd: number;
  restore(): void;
}

type Method = (...a: unknown[]) => unknown;

/** Replaces `obj[key]` by an own property wrapping it; the undo puts back what was there. */
function patch<T extends object>(obj: T, key: string, wrap: (orig: Method) => Method, undo: (() => void)[]): void {
  const o = obj as Record<string, unknown>;
  const own = Object.prototype.hasOwnProperty.call(o, key);
  const prev = o[key];
  const orig = prev as Method;
  o[key] = wrap((...a) => orig.apply(obj, a));
  undo.push(() => { if (own) o[key] = prev; else delete o[key]; });
}

/** Wraps `obj[key]` so each call adds one to `counts[field]`. */
function tally<T extends object>(obj: T, key: string, counts: Counts, field: keyof Counts, undo: (() => void)[]): void {
  patch(obj, key, (orig) => (...a) => { counts[field]++; return orig(...a); }, undo);
}

/** Wraps the device: `full` counts every creation and encoding call, else only submit is wrapped (timing runs). */
export function probeDevice(device: GPUDevice, full: boolean): Probe {
  const undo: (() => void)[] = [];
  const probe: Probe = { counts: zero(), lastSubmitEnd: 0, restore: () => { for (const u of undo.reverse()) u(); } };
  const c = probe.counts;
  const queue = device.queue;
  patch(queue, 'submit', (orig) => (...a) => {
    c.submits++;
    const r = orig(...a);
    probe.lastSubmitEnd = performance.now();
    return r;
  }, undo);
  if (!full) return probe;
  tally(queue, 'writeBuffer', c, 'writeBuffers', undo);
  tally(device, 'createBuffer', c, 'buffers', undo);
  tally(device, 'createBindGroup', c, 'bindGroups', undo);
  tally(device, 'createComputePipeline', c, 'pipelines', undo);
  tally(device, 'createComputePipelineAsync', c, 'pipelines', undo);
  patch(device, 'createCommandEncoder', (orig) => (...a) => {
    c.encoders++;
    const enc = orig(...a) as GPUCommandEncoder;
    // Encoders and passes are new objects that die with their command buffer: nothing to undo on them.
    const dropped: (() => void)[] = [];
    patch(enc, 'beginComputePass', (begin) => (...b) => {
      c.passes++;
      const pass = begin(...b) as GPUComputePassEncoder;
      tally(pass, 'dispatchWorkgroups', c, 'dispatches', dropped);
      tally(pass, 'dispatchWorkgroupsIndirect', c, 'dispatches', dropped);
      return pass;
    }, dropped);
    return enc;
  }, undo);
  return probe;
}
