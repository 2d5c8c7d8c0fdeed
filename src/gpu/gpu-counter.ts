// Counts what code does to a GPUDevice, from outside: a Proxy device that forwards every call and tallies object
// creation, compute passes, dispatches, queue writes and submits. The bench and the tests give it to
// createGpuContext to measure the per-token structure of a decode step without trusting the engine's own numbers.

export interface GpuCounts {
  buffers: number;
  bindGroups: number;
  pipelines: number;
  commandEncoders: number;
  computePasses: number;
  dispatches: number;
  writeBuffers: number;
  submits: number;
  /** Wall-clock ms spent from each encoder's creation to its queue.submit returning (CPU encode time). */
  encodeMs: number;
}

export interface CountingDevice {
  device: GPUDevice;
  counts: GpuCounts;
  /** Zeroes the counts (e.g. between a warm-up and the measured steps). */
  reset(): void;
}

const zero = (): GpuCounts => ({
  buffers: 0, bindGroups: 0, pipelines: 0, commandEncoders: 0, computePasses: 0, dispatches: 0, writeBuffers: 0,
  submits: 0, encodeMs: 0,
});

const now = () => performance.now();

/** Forwards method calls to `target` (bound, so native objects see themselves as `this`), with overrides. */
function forward<T extends object>(target: T, overrides: Record<string, unknown>): T {
  return new Proxy(target, {
    get(t, key) {
      if (typeof key === 'string' && key in overrides) return overrides[key];
      const v = Reflect.get(t, key, t);
      return typeof v === 'function' ? v.bind(t) : v;
    },
  });
}

export function countingDevice(device: GPUDevice): CountingDevice {
  const counts = zero();
  let encodeStart: number | undefined;
  const pass = (p: GPUComputePassEncoder) => forward(p, {
    dispatchWorkgroups: (x: number, y?: number, z?: number) => {
      counts.dispatches++;
      p.dispatchWorkgroups(x, y, z);
    },
  });
  const encoder = (e: GPUCommandEncoder) => forward(e, {
    beginComputePass: (d?: GPUComputePassDescriptor) => {
      counts.computePasses++;
      return pass(e.beginComputePass(d));
    },
  });
  const queue = forward(device.queue, {
    writeBuffer: (...a: Parameters<GPUQueue['writeBuffer']>) => {
      counts.writeBuffers++;
      device.queue.writeBuffer(...a);
    },
    submit: (cbs: GPUCommandBuffer[]) => {
      counts.submits++;
      device.queue.submit(cbs);
      if (encodeStart !== undefined) counts.encodeMs += now() - encodeStart;
      encodeStart = undefined;
    },
  });
  const proxy = forward(device, {
    queue,
    createBuffer: (d: GPUBufferDescriptor) => {
      counts.buffers++;
      return device.createBuffer(d);
    },
    createBindGroup: (d: GPUBindGroupDescriptor) => {
      counts.bindGroups++;
      return device.createBindGroup(d);
    },
    createComputePipeline: (d: GPUComputePipelineDescriptor) => {
      counts.pipelines++;
      return device.createComputePipeline(d);
    },
    createComputePipelineAsync: (d: GPUComputePipelineDescriptor) => {
      counts.pipelines++;
      return device.createComputePipelineAsync(d);
    },
    createCommandEncoder: (d?: GPUCommandEncoderDescriptor) => {
      counts.commandEncoders++;
      encodeStart ??= now();
      return encoder(device.createCommandEncoder(d));
    },
  });
  return { device: proxy, counts, reset: () => Object.assign(counts, zero()) };
}
