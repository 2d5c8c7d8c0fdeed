// Registers every shaders/*.wgsl for the browser build (Vite inlines them as strings).
import { registerShaders } from './shaders.ts';

const modules = import.meta.glob('../../shaders/*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;
registerShaders(Object.fromEntries(Object.entries(modules).map(([path, code]) => [path.replace(/^.*\/|\.wgsl$/g, ''), code])));
