// Browser end to end, as a site that embeds the library would use it: the built dist/ served from sub-paths (never
// the site root), a worker file that is missing, <qwen-chat> errors, a lost GPU device, and two tabs on one model.
// Debian Chromium (SwiftShader WebGPU) through playwright-core; a local static server with mounts and fault hooks.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse, type Server } from 'node:http';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { buildForTests, CONTENT_TYPES as TYPES, launchChromium, requestedRange, siteFile } from './browser.ts';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const shots = join(root, 'test-output/screenshots');

// Where each part of the build lives on the test site: nothing at the root.
const LIB = '/vendor/qwen-webgpu/';       // dist/ as a site would vendor it (or a CDN folder)
const APP = '/apps/chat/';                // dist/demo/
const MODEL = `${APP}models/qwen-webgpu-tiny`;
const MOUNTS: [string, string][] = [[LIB, join(root, 'dist')], [APP, join(root, 'dist/demo')]];
const PAGES: Record<string, [type: string, body: string]> = {
  '/site/blank.html': ['text/html', '<!doctype html><meta charset="utf-8"><title>host page</title><body></body>'],
  // Loads fine and never answers: stands in for a worker stuck at start-up.
  '/site/silent-worker.js': ['text/javascript', 'self.onmessage = () => {};'],
};

interface Hooks {
  log: { path: string; method: string; status: number; bytes: number }[];
  /** Paths matching this answer 404, as if the file had not been deployed. */
  missing?: RegExp;
}
const hooks: Hooks = { log: [] };

function serve(req: IncomingMessage, res: ServerResponse): void {
  const path = decodeURIComponent(new URL(req.url!, 'http://x').pathname);
  const reply = (status: number, headers: Record<string, string | number> = {}, body?: Buffer | string) => {
    const sent = req.method === 'HEAD' || body === undefined ? 0 : Buffer.byteLength(body);
    hooks.log.push({ path, method: req.method!, status, bytes: sent });
    res.writeHead(status, headers).end(req.method === 'HEAD' ? undefined : body);
  };
  if (PAGES[path]) return reply(200, { 'Content-Type': PAGES[path][0] }, PAGES[path][1]);
  const mount = MOUNTS.find(([prefix]) => path.startsWith(prefix));
  if (!mount || hooks.missing?.test(path)) return reply(404, {}, 'not found');
  const file = siteFile(mount[1], path.slice(mount[0].length));
  if (file === 403) return reply(403);
  if (file === 404) return reply(404, {}, 'not found');
  const data = readFileSync(file);
  const headers = { 'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream', 'Accept-Ranges': 'bytes', 'Cache-Control': 'no-store' };
  const r = requestedRange(req.headers.range, data.length);
  if (r) {
    const { start, end } = r;
    return reply(206, { ...headers, 'Content-Range': `bytes ${start}-${end}/${data.length}`, 'Content-Length': end - start + 1 }, data.subarray(start, end + 1));
  }
  reply(200, { ...headers, 'Content-Length': data.length }, data);
}

let server: Server;
let origin: string;
// A second origin that serves the same files with CORS headers: the library as a CDN would host it.
let cdnServer: Server;
let cdn: string;
let browser: Browser;
let context: BrowserContext;

before(async () => {
  buildForTests(root, 'all');
  mkdirSync(shots, { recursive: true });
  server = createServer(serve);
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  origin = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  cdnServer = createServer((req, res) => { res.setHeader('Access-Control-Allow-Origin', '*'); serve(req, res); });
  await new Promise<void>((ok) => cdnServer.listen(0, '127.0.0.1', ok));
  cdn = `http://localhost:${(cdnServer.address() as { port: number }).port}`;
  browser = await launchChromium();
  context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
});

after(async () => {
  await browser?.close();
  server?.close();
  cdnServer?.close();
});

async function hostPage(ctx: BrowserContext = context): Promise<Page> {
  const page = await ctx.newPage();
  page.on('pageerror', (e) => console.log('pageerror:', e.message));
  await page.goto(`${origin}/site/blank.html`);
  return page;
}

/** Runs in the page: imports the library from its sub-path, creates an engine, keeps it on window. */
async function startEngine(page: Page, opts: Record<string, unknown> = {}, lib = LIB): Promise<{ ok: boolean; message?: string; ms: number }> {
  return page.evaluate(async ({ lib, opts }) => {
    const t0 = performance.now();
    try {
      const { createEngine } = await import(`${lib}qwen-webgpu.js`);
      (window as any).engine = await createEngine(opts);
      return { ok: true, ms: performance.now() - t0 };
    } catch (e) {
      return { ok: false, message: `${(e as Error).name}: ${(e as Error).message}`, ms: performance.now() - t0 };
    }
  }, { lib, opts });
}

/** Loads the tiny model and answers one short greedy completion; returns what the engine said. */
async function loadAndReply(page: Page, maxTokens = 3, load: Record<string, unknown> = {}): Promise<{ tokens: number; text: string; finish: string }> {
  return page.evaluate(async ({ model, maxTokens, load }) => {
    const engine = (window as any).engine;
    await engine.load(`${location.origin}${model}`, { contextLength: 256, ...load });
    const r = await engine.chat.completions.create({
      messages: [{ role: 'user', content: 'Hi' }], max_tokens: maxTokens, temperature: 0, enable_thinking: false,
    });
    return { tokens: r.usage.completion_tokens, text: r.choices[0].message.content ?? '', finish: r.choices[0].finish_reason };
  }, { model: MODEL, maxTokens, load });
}

const clearCache = (page: Page) => page.evaluate((id) => (window as any).engine.cache.delete(id), `${origin}${MODEL}`);

test('library served from a sub-path: createEngine(), load() and a reply; the worker comes from the same folder', { timeout: 600_000 }, async () => {
  const page = await hostPage();
  try {
    hooks.log = [];
    const started = await startEngine(page);
    assert.ok(started.ok, started.message);
    await clearCache(page);
    const r = await loadAndReply(page, 3);
    assert.equal(r.tokens, 3);
    assert.equal(r.finish, 'length');
    const worker = hooks.log.find((l) => /worker-[\w-]+\.js$/.test(l.path));
    assert.ok(worker?.path.startsWith(`${LIB}assets/`), `worker fetched from ${worker?.path}`);
    assert.deepEqual(hooks.log.filter((l) => l.status === 404 && (l.path.startsWith(LIB) || l.path.startsWith(APP)) && !/\.(json|jinja)$/.test(l.path)), [],
      'no library or weight request missed (optional model files may 404)');
  } finally {
    await page.close();
  }
});

test('library served from another origin (a CDN): the worker starts through a same-origin shim and replies', { timeout: 600_000 }, async () => {
  const page = await hostPage();
  try {
    hooks.log = [];
    const started = await startEngine(page, {}, `${cdn}${LIB}`);
    assert.ok(started.ok, started.message);
    const r = await loadAndReply(page, 2);
    assert.equal(r.tokens, 2);
    assert.ok(hooks.log.some((l) => /\/assets\/worker-[\w-]+\.js$/.test(l.path) && l.status === 200), 'the worker came from the CDN');
  } finally {
    await page.close();
  }
});

test('the built demo and embed pages work from a sub-path', { timeout: 600_000 }, async () => {
  const page = await context.newPage();
  try {
    hooks.log = [];
    await page.goto(`${origin}${APP}embed.html`);
    await page.waitForFunction(() => {
      const el = document.querySelector('qwen-chat')!;
      const status = el.shadowRoot!.querySelector('.status')!.textContent;
      return (el.shadowRoot!.querySelector('progress')!.hidden && !status) || /Error/.test(status ?? '');
    }, null, { timeout: 300_000 });
    assert.equal(await page.evaluate(() => document.querySelector('qwen-chat')!.shadowRoot!.querySelector('.status')!.textContent), '');
    await page.goto(`${origin}${APP}index.html`);
    await page.waitForFunction(() => !document.getElementById('caps')!.textContent!.includes('probing'));
    assert.match((await page.textContent('#caps'))!, /subgroups (yes|no)/);
    assert.ok(hooks.log.some((l) => l.path.startsWith(`${APP}assets/`) && l.path.endsWith('.css') && l.status === 200), 'the stylesheet loads');
    assert.deepEqual(hooks.log.filter((l) => l.status === 404 && l.path.startsWith(APP) && !/\.(json|jinja)$/.test(l.path)), []);
  } finally {
    await page.close();
  }
});

test('a missing worker file: createEngine() rejects fast with an error naming the URL and the 404', { timeout: 120_000 }, async () => {
  const page = await hostPage();
  try {
    hooks.missing = /\/assets\/worker-[\w-]+\.js$/;
    const r = await startEngine(page);
    assert.equal(r.ok, false);
    assert.match(r.message!, /^WorkerStartError: the engine's worker failed to load from http:\/\/127\.0\.0\.1:\d+\/vendor\/qwen-webgpu\/assets\/worker-[\w-]+\.js \(the server answered HTTP 404 for it\)/);
    assert.ok(r.ms < 10_000, `took ${r.ms} ms`);
    // A worker that never answers the handshake (here: a script that is not the engine) times out with a clear error.
    hooks.missing = undefined;
    const silent = await startEngine(page, { workerUrl: `${origin}/site/silent-worker.js`, startTimeoutMs: 1500 });
    assert.equal(silent.ok, false);
    assert.match(silent.message!, /^WorkerStartError: the engine's worker at http:\S+\/site\/silent-worker\.js did not answer within 1\.5 s/);
    assert.ok(silent.ms < 10_000, `took ${silent.ms} ms`);
  } finally {
    hooks.missing = undefined;
    await page.close();
  }
});

test('<qwen-chat>: a missing worker and a missing model show the error and fire qwen-error; a good model then works', { timeout: 600_000 }, async () => {
  const page = await hostPage();
  try {
    hooks.missing = /\/assets\/worker-[\w-]+\.js$/;
    const first = await page.evaluate(async (lib) => {
      await import(`${lib}qwen-chat.js`);
      const el = document.createElement('qwen-chat');
      const error = new Promise<string>((ok) => el.addEventListener('qwen-error', (e) => ok((e as CustomEvent).detail.message)));
      el.setAttribute('model', './no-such-model');
      document.body.append(el);
      const message = await error;
      return { message, shown: el.shadowRoot!.querySelector('.status')!.textContent };
    }, LIB);
    assert.match(first.message, /worker failed to load from .*HTTP 404/);
    assert.equal(first.shown, `Error: ${first.message}`);

    hooks.missing = undefined;
    const second = await page.evaluate(async () => {
      const el = document.querySelector('qwen-chat')!;
      const error = new Promise<string>((ok) => el.addEventListener('qwen-error', (e) => ok((e as CustomEvent).detail.message), { once: true }));
      el.setAttribute('model', './no-such-model');
      el.removeAttribute('model');
      el.setAttribute('model', '/apps/chat/models/does-not-exist');
      return { message: await error, shown: el.shadowRoot!.querySelector('.status')!.textContent };
    });
    assert.match(second.message, /model\.safetensors/);
    assert.match(second.message, /does-not-exist/);
    assert.equal(second.shown, `Error: ${second.message}`);
    await page.screenshot({ path: join(shots, 'embed-error.png') });

    const third = await page.evaluate(async (model) => {
      const el = document.querySelector('qwen-chat')! as HTMLElement & { send(t: string): Promise<void> };
      el.setAttribute('model', model);
      el.setAttribute('max-tokens', '3');
      el.setAttribute('temperature', '0');
      const done = new Promise<string>((ok, no) => {
        el.addEventListener('qwen-done', (e) => ok((e as CustomEvent).detail.finish_reason));
        el.addEventListener('qwen-error', (e) => no(new Error((e as CustomEvent).detail.message)));
      });
      await el.send('Hi');
      return done;
    }, MODEL);
    assert.equal(third, 'length');
  } finally {
    hooks.missing = undefined;
    await page.close();
  }
});

test('two tabs load one model into an empty cache at once; both reply, and the weights are fetched once', { timeout: 900_000 }, async () => {
  const a = await hostPage();
  const b = await hostPage();
  try {
    for (const p of [a, b]) assert.ok((await startEngine(p)).ok);
    await clearCache(a);
    hooks.log = [];
    const [ra, rb] = await Promise.all([loadAndReply(a, 2), loadAndReply(b, 2)]);
    assert.equal(ra.tokens, 2);
    assert.equal(rb.tokens, 2);
    assert.equal(ra.text, rb.text, 'greedy replies agree');
    // The second tab waits for the first one's download (a Web Lock) and then reads the cache: beyond the few
    // header bytes each tab probes, the weights cross the network once.
    const size = statSync(join(root, 'dist/demo/models/qwen-webgpu-tiny/model.safetensors')).size;
    const served = hooks.log.filter((l) => l.path.endsWith('model.safetensors')).reduce((n, l) => n + l.bytes, 0);
    assert.ok(served < 1.1 * size, `served ${served} bytes of a ${size}-byte file: ${JSON.stringify(hooks.log.filter((l) => l.path.endsWith('model.safetensors')))}`);
  } finally {
    await a.close();
    await b.close();
  }
});

test('load({ gpuLimits: "default" }): a device with no optional feature gives the same reply; a bad mode is refused', { timeout: 600_000 }, async () => {
  const page = await hostPage();
  try {
    assert.ok((await startEngine(page)).ok);
    const full = await loadAndReply(page, 3);
    const caps = () => page.evaluate(() => (window as any).engine.capabilities());
    const before = await caps();
    const conservative = await loadAndReply(page, 3, { gpuLimits: 'default' });
    const after = await caps();
    assert.equal(after.subgroups, false);
    assert.equal(after.timestampQuery, false);
    assert.equal(after.maxStorageBufferBindingSize, 128 * 2 ** 20, 'WebGPU default limit');
    assert.ok(before.maxStorageBufferBindingSize >= after.maxStorageBufferBindingSize);
    assert.equal(conservative.text, full.text, 'same greedy reply on the conservative device');
    const bad = await page.evaluate(() => (window as any).engine.load('x', { gpuLimits: 'huge' }).then(() => 'loaded', (e: Error) => e.message));
    assert.match(bad, /gpuLimits must be 'max' or 'default', got "huge"/);
    const still = await page.evaluate(() => (window as any).engine.chat.completions.create({
      messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, temperature: 0, enable_thinking: false,
    }).then((r: any) => r.choices[0].message.content, (e: Error) => `error: ${e.message}`));
    assert.equal(still, full.text, 'the refused load left the loaded model in place');
    // And back: a max-limits load after the conservative one works too.
    assert.equal((await loadAndReply(page, 3, { gpuLimits: 'max' })).text, full.text);
  } finally {
    await page.close();
  }
});

test('GPU device lost (GPU process crash): onError reports it, load() again and the engine replies', { timeout: 600_000 }, async () => {
  const page = await hostPage();
  try {
    assert.ok((await startEngine(page)).ok);
    await page.evaluate(() => {
      (window as any).lost = new Promise<string>((ok) => (window as any).engine.onError(ok));
    });
    const before = await loadAndReply(page, 2);
    // A real loss: the browser's GPU process dies, as after a driver reset; Chromium starts a new one.
    const cdp = await browser.newBrowserCDPSession();
    await cdp.send('Browser.crashGpuProcess' as never);
    const message = await page.evaluate(() => Promise.race([
      (window as any).lost, new Promise((_, no) => setTimeout(() => no(new Error('no device-lost report in 60 s')), 60_000)),
    ]));
    assert.match(String(message), /GPU device lost/);
    const unloaded = await page.evaluate(() => (window as any).engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 1 })
      .then(() => 'answered', (e: Error) => e.message));
    assert.match(unloaded, /no model is loaded/);
    const afterLoss = await loadAndReply(page, 2);
    assert.equal(afterLoss.tokens, 2);
    assert.equal(afterLoss.text, before.text, 'the reloaded model gives the same greedy reply');
  } finally {
    await page.close();
  }
});
