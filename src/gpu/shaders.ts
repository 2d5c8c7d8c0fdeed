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
