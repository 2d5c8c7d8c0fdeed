// The GPU context every kernel wrapper receives: the device, what it can do, and a pipeline cache.
// Platform neutral: the browser passes navigator.gpu's device, Node passes Dawn's (src/node/dawn.ts).

export interface GpuFeatures {
  subgroups: boolean;
  shaderF16: boolean;
  timestampQuery: boolean;
}

export interface GpuContext {
  device: GPUDevice;
  features: GpuFeatures;
  limits: GPUSupportedLimits;
  /** Compute pipeline for `code` (WGSL text), cached by the text and constants. */
  pipeline(code: string, constants?: Record<string, number>, entryPoint?: string): GPUComputePipeline;
  /** The same pipeline compiled with createComputePipelineAsync (load time), into the same cache. */
  pipelineAsync(code: string, constants?: Record<string, number>, entryPoint?: string): Promise<GPUComputePipeline>;
  /** Pipelines created so far (the bench counts compilations after load). */
  readonly pipelinesCreated: number;
  /** A small uniform buffer holding `data` (u32/i32/f32 words), for one dispatch's parameters. */
  uniform(data: ArrayBufferView): GPUBuffer;
  /** Storage buffer of `bytes` bytes (rounded up to 4), usable as copy source and destination. */
  storage(bytes: number, label?: string): GPUBuffer;
}

/** The pipeline cache's key: one per WGSL text, override constants and entry point. */
export function pipelineKey(code: string, constants: Record<string, number> = {}, entryPoint = 'main'): string {
  return `${entryPoint}\u0000${JSON.stringify(constants)}\u0000${code}`;
}

/** Limits worth raising above the WebGPU defaults when the adapter allows it. */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeWorkgroupStorageSize',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
] as const;

/**
 * 'max' (default): every useful optional feature and the adapter's maximum for the limits we use. 'default': no
 * optional feature and WebGPU's default limits, what the most conservative device offers (the kernels pick their
 * variants from ctx.features and ctx.limits, so everything runs the same either way).
 */
export type GpuLimitsMode = 'max' | 'default';

/** Request a device for `mode` (see GpuLimitsMode). */
export async function requestGpuDevice(adapter: GPUAdapter, mode: GpuLimitsMode = 'max'): Promise<GPUDevice> {
  if (mode === 'default') return adapter.requestDevice();
  if (mode !== 'max') throw new Error(`GPU limits must be 'max' or 'default', got ${String(mode)}`);
  const requiredFeatures: GPUFeatureName[] = [];
  for (const f of ['shader-f16', 'subgroups', 'timestamp-query'] as GPUFeatureName[]) {
    if (adapter.features.has(f)) requiredFeatures.push(f);
  }
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) requiredLimits[k] = adapter.limits[k] as number;
  return adapter.requestDevice({ requiredFeatures, requiredLimits });
}

/** In a browser (page or worker): navigator.gpu's high-performance adapter and a device from requestGpuDevice. */
export async function requestBrowserGpuDevice(mode: GpuLimitsMode = 'max'): Promise<GPUDevice> {
  if (!('gpu' in navigator)) throw new Error('WebGPU is not available in this browser (navigator.gpu is missing)');
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no WebGPU adapter is available');
  return requestGpuDevice(adapter, mode);
}

export function createGpuContext(device: GPUDevice): GpuContext {
  const cache = new Map<string, GPUComputePipeline>();
  const inFlight = new Map<string, Promise<GPUComputePipeline>>();
  const modules = new Map<string, GPUShaderModule>();
  let created = 0;
  const moduleOf = (code: string): GPUShaderModule => {
    let module = modules.get(code);
    if (!module) {
      module = device.createShaderModule({ code });
      modules.set(code, module);
    }
    return module;
  };
  const features: GpuFeatures = {
    subgroups: device.features.has('subgroups'),
    shaderF16: device.features.has('shader-f16'),
    timestampQuery: device.features.has('timestamp-query'),
  };
  return {
    device,
    features,
    limits: device.limits,
    pipeline(code, constants = {}, entryPoint = 'main') {
      const key = pipelineKey(code, constants, entryPoint);
      let p = cache.get(key);
      if (!p) {
        p = device.createComputePipeline({ layout: 'auto', compute: { module: moduleOf(code), entryPoint, constants } });
        created++;
        cache.set(key, p);
      }
      return p;
    },
    async pipelineAsync(code, constants = {}, entryPoint = 'main') {
      const key = pipelineKey(code, constants, entryPoint);
      const have = cache.get(key);
      if (have) return have;
      let p = inFlight.get(key);
      if (!p) {
        p = device.createComputePipelineAsync({ layout: 'auto', compute: { module: moduleOf(code), entryPoint, constants } });
        inFlight.set(key, p);
      }
      try {
        const pipeline = await p;
        if (!cache.has(key)) {
          cache.set(key, pipeline);
          created++;
        }
        return cache.get(key)!;
      } finally {
        inFlight.delete(key);
      }
    },
    get pipelinesCreated() { return created; },
    uniform(data) {
      const size = Math.max(16, Math.ceil(data.byteLength / 16) * 16);
      const buf = device.createBuffer({ size, usage: GPUBufferUsage.UNIFORM, mappedAtCreation: true });
      new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      buf.unmap();
      return buf;
    },
    storage(bytes, label) {
      return device.createBuffer({
        label,
        size: Math.max(4, Math.ceil(bytes / 4) * 4),
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
    },
  };
}

/** Encode one compute pass with a single dispatch; bindings are buffers in binding order (group 0). */
export function dispatch(
  ctx: GpuContext,
  enc: GPUCommandEncoder,
  pipeline: GPUComputePipeline,
  buffers: GPUBuffer[],
  workgroups: [number, number?, number?],
  label?: string,
): void {
  const bindGroup = ctx.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const pass = enc.beginComputePass(label ? { label } : undefined);
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(workgroups[0], workgroups[1] ?? 1, workgroups[2] ?? 1);
  pass.end();
}

/** Split a 1-D workgroup count over x and y so neither exceeds the per-dimension limit. */
export function grid2d(ctx: GpuContext, count: number): [number, number] {
  const max = ctx.limits.maxComputeWorkgroupsPerDimension;
  if (count <= max) return [count, 1];
  const y = Math.ceil(count / max);
  return [Math.ceil(count / y), y];
}

/** Copy a GPU buffer back to the CPU (tests, logits). */
export async function readBuffer(ctx: GpuContext, src: GPUBuffer, bytes = src.size, offset = 0): Promise<ArrayBuffer> {
  const size = Math.ceil(bytes / 4) * 4;
  const staging = ctx.device.createBuffer({ size, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.MAP_READ });
  const enc = ctx.device.createCommandEncoder();
  enc.copyBufferToBuffer(src, offset, staging, 0, size);
  ctx.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const out = staging.getMappedRange().slice(0, bytes);
  staging.unmap();
  staging.destroy();
  return out;
}

export async function readF32(ctx: GpuContext, src: GPUBuffer, count?: number, offsetFloats = 0): Promise<Float32Array> {
  const n = count ?? src.size / 4 - offsetFloats;
  return new Float32Array(await readBuffer(ctx, src, n * 4, offsetFloats * 4));
}

/** Storage buffer initialised with `data` (padded to 4 bytes). */
export function uploadBytes(ctx: GpuContext, data: ArrayBufferView, label?: string): GPUBuffer {
  const buf = ctx.device.createBuffer({
    label,
    size: Math.max(4, Math.ceil(data.byteLength / 4) * 4),
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
    mappedAtCreation: true,
  });
  new Uint8Array(buf.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  buf.unmap();
  return buf;
}
