// WebGPU in Node through Dawn (the `webgpu` npm package). On a Linux machine without a GPU, Debian's
// chromium package ships SwiftShader (a Vulkan CPU driver): point the Vulkan loader at it when the
// user has not chosen a driver, so the CLI and the tests run anywhere.
import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createGpuContext, requestGpuDevice, type GpuContext, type GpuLimitsMode } from '../gpu/context.ts';
import { setDefaultTuningStore } from '../gpu/autotune.ts';
import { fileTuningStore } from './tuning-file.ts';

const SWIFTSHADER_ICDS = ['/usr/lib/chromium/vk_swiftshader_icd.json', '/usr/lib64/chromium/vk_swiftshader_icd.json'];

function hasGpuDeviceNode(): boolean {
  try {
    if (readdirSync('/dev/dri').some((n) => n.startsWith('renderD'))) return true;
  } catch { /* no /dev/dri */ }
  return existsSync('/dev/nvidia0');
}

/** Sets VK_ICD_FILENAMES to SwiftShader when on Linux with no GPU and nothing chosen. Returns the ICD used. */
export function chooseVulkanDriver(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (process.platform !== 'linux') return undefined;
  if (env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES) return env.VK_ICD_FILENAMES ?? env.VK_DRIVER_FILES;
  if (hasGpuDeviceNode() && !env.QWEN_WEBGPU_SWIFTSHADER) return undefined;
  const icd = SWIFTSHADER_ICDS.find((p) => existsSync(p));
  if (icd) {
    env.VK_ICD_FILENAMES = icd;
    // SwiftShader's WSI probe complains on stderr when this is unset; a compute-only process needs no real one.
    env.XDG_RUNTIME_DIR ??= tmpdir();
  }
  return icd;
}

/** `webgpu` is an optional peer dependency (a browser user of the library needs no Dawn): say how to get it. */
async function importDawn(): Promise<typeof import('webgpu')> {
  try {
    return await import('webgpu');
  } catch (e) {
    if ((e as NodeJS.ErrnoException)?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
    throw new Error('the CLI runs WebGPU through Dawn, from the npm package `webgpu`, which is not installed: ' +
      'run `npm install webgpu` next to qwen-webgpu (it is an optional peer dependency)');
  }
}

/** Dawn is torn down when its GPU object is garbage-collected (webgpu README, "Lifetime"): keep it reachable. */
// A module variable is not enough: a bundler drops a store that nothing reads (the compiled CLI then segfaulted
// once the collector ran), so the instance hangs off globalThis, which no bundler can prove unused.
const DAWN_INSTANCE = Symbol.for('qwen-webgpu.dawn-instance');

const cached = new Map<GpuLimitsMode, Promise<GpuContext>>();
let instance: Promise<GPU> | undefined;

/** The one Dawn instance of the process (every device of every limits mode comes from it). */
function dawnInstance(): Promise<GPU> {
  instance ??= (async () => {
    chooseVulkanDriver();
    const { create, globals } = await importDawn();
    Object.assign(globalThis, globals);
    const gpu: GPU = create([]);
    (globalThis as Record<symbol, unknown>)[DAWN_INSTANCE] = gpu;
    return gpu;
  })();
  return instance;
}

/**
 * One Dawn device per process and limits mode (creating many is slow and leaks on some drivers); 'default' asks
 * for WebGPU's default limits and no optional feature (the conservative-device mode).
 */
export function getNodeGpu(mode: GpuLimitsMode = 'max'): Promise<GpuContext> {
  let ready = cached.get(mode);
  if (ready) return ready;
  ready = (async () => {
    const gpu = await dawnInstance();
    const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
    if (!adapter) {
      throw new Error(
        'No WebGPU adapter found through Dawn. On Linux without a GPU install Debian\'s chromium (it ships ' +
          'SwiftShader) and libvulkan1, or set VK_ICD_FILENAMES to a Vulkan driver manifest.',
      );
    }
    const device = await requestGpuDevice(adapter, mode);
    device.addEventListener('uncapturederror', (e) => {
      console.error('WebGPU error:', (e as GPUUncapturedErrorEvent).error.message);
    });
    // Node engines keep their measured kernel tuning in a file, so only the first process on an adapter pays.
    setDefaultTuningStore(fileTuningStore());
    return createGpuContext(device);
  })();
  cached.set(mode, ready);
  return ready;
}
