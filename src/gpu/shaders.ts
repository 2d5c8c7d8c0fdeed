// WGSL texts by name (file stem under shaders/). Registered once per platform: src/node/shaders-node.ts reads the
// folder, src/gpu/shaders-vite.ts bundles it. Kept as a registry so kernels stay plain .wgsl files.
const texts = new Map<string, string>();

export function registerShaders(files: Record<string, string>): void {
  for (const [name, code] of Object.entries(files)) texts.set(name, code);
}

export function shader(name: string): string {
  const code = texts.get(name);
  if (code === undefined) {
    throw new Error(`WGSL shader "${name}" is not registered (import src/node/shaders-node.ts or src/gpu/shaders-vite.ts first)`);
  }
  return code;
}

const joined = new Map<string, string>();
/**
 * WGSL has no includes: a kernel is the concatenation of shader files (a shared part first, e.g. step.wgsl),
 * joined once so the pipeline cache, keyed by the text, sees one stable string.
 */
export function shaderText(...names: string[]): string {
  const key = names.join('+');
  let text = joined.get(key);
  if (text === undefined) {
    text = names.map((n) => shader(n)).join('\n');
    joined.set(key, text);
  }
  return text;
}
