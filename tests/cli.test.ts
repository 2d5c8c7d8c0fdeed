// The `qwen-webgpu` CLI end to end, against the logits of an independent float64 implementation
// (../shared/reference/*/golden.json), from a folder and from an HTTP base URL.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { createReadStream, existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareLogits } from './logit-compare.ts';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const refDir = resolve(root, '../shared/reference');
const bin = join(root, 'bin/qwen-webgpu.mjs');

interface Golden { prompts: { ids: number[]; greedy_tokens: number[]; steps: { logits: number[]; margin: number }[] }[] }

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(process.execPath, [bin, ...args], { maxBuffer: 1 << 28 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** A static file server on loopback that honours Range requests, like the hub's resolve/main URLs. */
function serve(dir: string): Promise<{ server: Server; url: string; requests: string[] }> {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const file = join(dir, decodeURIComponent(new URL(req.url!, 'http://x').pathname));
    requests.push(`${req.method} ${req.url} ${req.headers.range ?? ''}`);
    if (!file.startsWith(dir) || !existsSync(file)) { res.writeHead(404).end('not found'); return; }
    const size = statSync(file).size;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m) {
      const start = Number(m[1]);
      const end = m[2] ? Math.min(Number(m[2]), size - 1) : size - 1;
      res.writeHead(206, { 'Content-Range': `bytes ${start}-${end}/${size}`, 'Content-Length': end - start + 1, 'Accept-Ranges': 'bytes' });
      if (req.method === 'HEAD') res.end(); else createReadStream(file, { start, end }).pipe(res);
    } else {
      res.writeHead(200, { 'Content-Length': size, 'Accept-Ranges': 'bytes' });
      if (req.method === 'HEAD') res.end(); else createReadStream(file).pipe(res);
    }
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => {
    const port = (server.address() as { port: number }).port;
    ok({ server, url: `http://127.0.0.1:${port}`, requests });
  }));
}

async function checkGolden(model: string, name: string, extra: string[] = []): Promise<number> {
  const golden: Golden = JSON.parse(readFileSync(join(refDir, name, 'golden.json'), 'utf8'));
  // Every prompt in one run (";"-separated): one load, one pipeline compile, each prompt from position 0.
  const ids = golden.prompts.map((p) => p.ids.join(',')).join(';');
  const then = golden.prompts.map((p) => p.greedy_tokens.slice(0, p.steps.length - 1).join(',')).join(';');
  const r = await cli(['logits', '--model', model, '--ids', ids, '--then', then, '--json', ...extra]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, golden.prompts.length, 'one JSON line per prompt');
  let worst = 0;
  for (const [pi, p] of golden.prompts.entries()) {
    const out = JSON.parse(lines[pi]) as { logits: number[][] };
    assert.equal(out.logits.length, p.steps.length);
    for (const [s, step] of p.steps.entries()) {
      const d = compareLogits(out.logits[s], step.logits);
      worst = Math.max(worst, d.maxAbs);
      assert.ok(d.maxAbs <= 2e-3, `${name} prompt ${pi} step ${s}: max |Δlogit| ${d.maxAbs}`);
      if (step.margin >= 4e-3) assert.ok(!d.argmaxMismatch, `${name} prompt ${pi} step ${s}: argmax differs`);
    }
  }
  return worst;
}

for (const name of ['pub-propc', 'pub-unsloth3']) {
  test(`CLI logits match the independent reference: ${name}`, async () => {
    const worst = await checkGolden(join(refDir, name), name);
    console.log(`${name}: CLI logits vs independent float64 reference, max |Δ| = ${worst.toExponential(3)}`);
  });
}

test('CLI logits over HTTP (Range requests) equal the folder run', async () => {
  const { server, url, requests } = await serve(join(refDir, 'pub-unsloth3'));
  try {
    const worst = await checkGolden(url, 'pub-unsloth3');
    console.log(`pub-unsloth3 over http: max |Δ| = ${worst.toExponential(3)}; ${requests.length} requests`);
    assert.ok(requests.some((r) => r.includes('bytes=')), 'expected ranged reads of the safetensors file');
  } finally {
    server.close();
  }
});

test('CLI logits with --gpu-limits default (no optional feature, WebGPU default limits) match the reference', async () => {
  const worst = await checkGolden(join(refDir, 'pub-unsloth3'), 'pub-unsloth3', ['--gpu-limits', 'default']);
  console.log(`pub-unsloth3 --gpu-limits default: max |Δ| = ${worst.toExponential(3)}`);
});

test('CLI generate prints the greedy continuation of the reference', async () => {
  const golden: Golden = JSON.parse(readFileSync(join(refDir, 'pub-propc', 'golden.json'), 'utf8'));
  const p = golden.prompts[1];
  const r = await cli(['generate', '--model', join(refDir, 'pub-propc'), '--ids', p.ids.join(','), '--max-tokens', '8', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const ids = (JSON.parse(r.stdout) as { ids: number[] }).ids;
  // Compare up to the first step whose reference margin is too small to call.
  const clear = p.steps.findIndex((s) => s.margin < 4e-3);
  const n = clear < 0 ? p.greedy_tokens.length : clear + 1;
  assert.deepEqual(ids.slice(0, n), p.greedy_tokens.slice(0, n));
});

test('CLI inspect reports the per-tensor plan of a mixed-precision checkpoint', async () => {
  const r = await cli(['inspect', '--model', join(refDir, 'pub-unsloth3'), '--json']);
  assert.equal(r.code, 0, r.stderr);
  const info = JSON.parse(r.stdout) as { modules: { path: string; kind: string; bits?: number }[]; memory: { total: number } };
  const byPath = new Map(info.modules.map((m) => [m.path, m]));
  // From ../shared/reference/README.md: embed 5, lm_head 6, gate/up 3, down 4, o_proj/out_proj bf16.
  assert.equal(byPath.get('embed_tokens')?.bits, 5);
  assert.equal(byPath.get('lm_head')?.bits, 6);
  assert.equal(byPath.get('layers.0.mlp.gate_proj')?.bits, 3);
  assert.equal(byPath.get('layers.0.mlp.down_proj')?.bits, 4);
  assert.equal(byPath.get('layers.3.self_attn.o_proj')?.kind, 'float');
  assert.equal(byPath.get('layers.0.linear_attn.out_proj')?.kind, 'float');
  assert.ok(info.memory.total > 0);
  const text = await cli(['inspect', '--model', join(refDir, 'pub-unsloth3')]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /GPU memory estimate/);
});

test('CLI errors name the cause', async () => {
  const missing = await cli(['logits', '--model', join(root, 'no-such-dir'), '--ids', '1']);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^qwen-webgpu: --model: ".*no-such-dir" does not exist/);
  const bad = await cli(['logits', '--model', join(refDir, 'pub-propc'), '--ids', '1,x']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /"x" is not a token id/);
  const oov = await cli(['logits', '--model', join(refDir, 'pub-propc'), '--ids', '1,99999']);
  assert.equal(oov.code, 2, 'an id beyond vocab_size is a usage error, refused before the weights load');
  assert.match(oov.stderr, /99999.*vocabulary/);
});
