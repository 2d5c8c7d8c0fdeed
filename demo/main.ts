// Capability line: adapter, features and the limits the engine depends on.
const out = document.getElementById('caps')!;

async function probe(): Promise<string> {
  if (!('gpu' in navigator)) return 'WebGPU is not available in this browser.';
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return 'No WebGPU adapter.';
  const info = adapter.info;
  const f = (name: string) => (adapter.features.has(name as GPUFeatureName) ? 'yes' : 'no');
  return [
    `adapter: ${info.vendor} ${info.architecture} ${info.description}`.trim(),
    `shader-f16: ${f('shader-f16')}, subgroups: ${f('subgroups')}, timestamp-query: ${f('timestamp-query')}`,
    `maxStorageBufferBindingSize: ${adapter.limits.maxStorageBufferBindingSize}`,
    `maxBufferSize: ${adapter.limits.maxBufferSize}`,
    `maxComputeWorkgroupStorageSize: ${adapter.limits.maxComputeWorkgroupStorageSize}`,
  ].join('\n');
}

probe().then((t) => (out.textContent = t), (e) => (out.textContent = `error: ${e}`));
