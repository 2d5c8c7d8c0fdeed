// The npm package as a user gets it: `npm pack`, installed into a scratch project, its types checked against a
// consumer file, its CLI run from node_modules/.bin without and then with the optional `webgpu` peer, against the
// independent float64 logits of ../shared/reference.
import { before, after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildForTests } from './browser.ts';
import { compareLogits } from './logit-compare.ts';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const refDir = resolve(root, '../shared/reference');
const tsc = join(root, 'node_modules/typescript/bin/tsc');
let scratch: string;
let tarball: string;
let files: string[];

const npm = (args: string[], cwd: string) => execFileSync('npm', [...args, '--no-audit', '--no-fund', '--loglevel=error'],
  { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

function run(cmd: string, args: string[], cwd: string): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 1 << 28 });
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

before(() => {
  buildForTests(root, 'all');
  scratch = mkdtempSync(join(tmpdir(), 'qwen-webgpu-consumer-'));
  const packed = JSON.parse(npm(['pack', '--json', '--ignore-scripts', '--pack-destination', scratch], root)) as { filename: string; files: { path: string }[] }[];
  tarball = join(scratch, packed[0].filename);
  files = packed[0].files.map((f) => f.path);
});

after(() => { if (scratch) rmSync(scratch, { recursive: true, force: true }); });

test('the tarball holds every file its entry points import, the types and the compiled CLI, and nothing else', () => {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const entries = [manifest.exports['.'].import, manifest.exports['./qwen-chat'].import, manifest.exports['.'].types,
    manifest.exports['./qwen-chat'].types, manifest.bin['qwen-webgpu'], 'dist/node/cli.js'].map((p: string) => normalize(p));
  for (const e of entries) assert.ok(files.includes(e), `${e} is in the tarball`);
  // Follow every relative import and worker URL from the entry modules: each must be packed.
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    assert.ok(files.includes(file), `${file} (imported by the package) is in the tarball`);
    if (!file.endsWith('.js')) return;
    const code = readFileSync(join(root, file), 'utf8');
    for (const m of code.matchAll(/(?:from\s*|import\s*\(\s*|import\s+)["'`](\.{1,2}\/[^"'`]+)["'`]/g)) visit(normalize(join(dirname(file), m[1])));
    for (const m of code.matchAll(/new URL\(\s*["'`]([^"'`:]+\.js)["'`]\s*,\s*import\.meta\.url/g)) visit(normalize(join(dirname(file), m[1])));
  };
  for (const e of entries.filter((p) => p.endsWith('.js') && p.startsWith('dist/'))) visit(e);
  assert.ok([...seen].some((f) => /^dist\/assets\/worker-[\w-]+\.js$/.test(f)), 'the worker is reached from the entry');
  for (const f of files) {
    assert.ok(!/^(src|tests|demo|shaders|public)\//.test(f) && !f.startsWith('dist/demo/'), `${f} should not be packed`);
  }
  for (const dep of ['webgpu', 'tsx', 'typescript', 'vite']) {
    assert.equal(manifest.dependencies?.[dep], undefined, `${dep} is not a runtime dependency`);
  }
  assert.equal(manifest.peerDependenciesMeta?.webgpu?.optional, true, 'webgpu is an optional peer');
});

test('installed into a scratch project: a consumer type-checks against the types, and a wrong call does not', () => {
  writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  npm(['install', '--prefer-offline', tarball], scratch);
  assert.ok(!existsSync(join(scratch, 'node_modules/webgpu')), 'Dawn is not pulled in');
  assert.ok(!existsSync(join(scratch, 'node_modules/tsx')), 'tsx is not pulled in');
  writeFileSync(join(scratch, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'ESNext', moduleResolution: 'Bundler', lib: ['ES2022', 'DOM', 'DOM.Iterable'],
      strict: true, noEmit: true, skipLibCheck: false, types: [],
    },
    files: ['consumer.ts'],
  }));
  const good = `
import { createEngine, WorkerStartError, type ChatCompletionChunk, type LoadProgress, type QwenEngine } from 'qwen-webgpu';
import { QwenChatElement } from 'qwen-webgpu/qwen-chat';

export async function main(): Promise<string> {
  let engine: QwenEngine;
  try {
    engine = await createEngine({ startTimeoutMs: 10_000 });
  } catch (e) {
    if (e instanceof WorkerStartError) return e.message;
    throw e;
  }
  const info = await engine.load('mlx-community/Qwen3.5-0.8B-4bit', {
    contextLength: 4096, onProgress: (p: LoadProgress) => console.log(p.phase, p.bytesDone / p.bytesTotal),
  });
  const layers: number = info.config.numLayers;
  const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], stream: true, temperature: 0.7 });
  let text = '';
  for await (const chunk of stream) {
    const c: ChatCompletionChunk = chunk;
    text += c.choices[0].delta.content ?? '';
  }
  const reply = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8 });
  const el: QwenChatElement = document.createElement('qwen-chat');
  el.setAttribute('model', 'org/name');
  return text + reply.choices[0].message.content + layers + (await engine.cache.list()).length;
}
`;
  writeFileSync(join(scratch, 'consumer.ts'), good);
  const ok = run(process.execPath, [tsc, '-p', '.'], scratch);
  assert.equal(ok.code, 0, `consumer type-check failed:\n${ok.stdout}${ok.stderr}`);
  // The types are real, not \`any\`: a wrong option and a wrong field are errors.
  writeFileSync(join(scratch, 'consumer.ts'), good.replace('temperature: 0.7', "temperature: 'hot'").replace('info.config.numLayers', 'info.config.layerCount'));
  const bad = run(process.execPath, [tsc, '-p', '.'], scratch);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stdout, /consumer\.ts\(17,\d+\): error TS2769[^]*Type 'string' is not assignable to type 'number'/);
  assert.match(bad.stdout, /Property 'layerCount' does not exist/);
});

test('the installed CLI: help and inspect without Dawn, a clear message for GPU commands, then logits with webgpu installed', { timeout: 600_000 }, () => {
  const bin = join(scratch, 'node_modules/.bin/qwen-webgpu');
  const propc = join(refDir, 'pub-propc');
  const help = run(bin, ['--help'], scratch);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /qwen-webgpu logits/);
  const inspect = run(bin, ['inspect', '--model', propc, '--json'], scratch);
  assert.equal(inspect.code, 0, inspect.stderr);
  assert.ok(JSON.parse(inspect.stdout).modules.length > 0);

  const noDawn = run(bin, ['logits', '--model', propc, '--ids', '1,2,3'], scratch);
  assert.equal(noDawn.code, 1);
  assert.match(noDawn.stderr, /^qwen-webgpu: .*`webgpu`.*not installed.*npm install webgpu/);
  assert.doesNotMatch(noDawn.stderr, /\n\s+at /, 'no stack trace');

  const wanted = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).peerDependencies.webgpu;
  npm(['install', '--prefer-offline', `webgpu@${wanted}`], scratch);
  const golden = JSON.parse(readFileSync(join(propc, 'golden.json'), 'utf8')) as { prompts: { ids: number[]; steps: { logits: number[] }[] }[] };
  const p = golden.prompts[0];
  const r = run(bin, ['logits', '--model', propc, '--ids', p.ids.join(','), '--json'], scratch);
  assert.equal(r.code, 0, r.stderr);
  const d = compareLogits(JSON.parse(r.stdout).logits[0], p.steps[0].logits);
  console.log(`packed CLI vs float64 reference (pub-propc, prompt 0): max |Δlogit| ${d.maxAbs.toExponential(2)}`);
  assert.ok(d.maxAbs < 2e-3, `max |Δlogit| ${d.maxAbs}`);
});
