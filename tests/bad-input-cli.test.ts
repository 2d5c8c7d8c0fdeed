// The `qwen-webgpu` CLI under bad input: every malformed or out-of-range argument is a usage error (exit 2, one
// line naming the flag, a pointer to --help); runtime failures exit 1 with "qwen-webgpu: <message>" and no stack
// (--debug adds it); checks against config.json run before any weight is read. Also: a Hugging Face cache folder,
// whose files are symlinks into ../../blobs, loads; file names that climb out of the folder do not; progress shows
// on stderr only when asked for.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync, truncateSync, existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeTinyCheckpoint } from '../src/format/tiny.ts';
import { dirSource } from '../src/node/fs-source.ts';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const bin = join(root, 'bin/qwen-webgpu.mjs');

interface Run { code: number; stdout: string; stderr: string }

function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((res) => {
    execFile(process.execPath, [bin, ...args], { maxBuffer: 1 << 26, env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** Runs the CLIs a few at a time: each spends most of its second starting tsx, and the machine has few cores. */
async function cliAll(runs: string[][], width = 3): Promise<Run[]> {
  const out: Run[] = new Array(runs.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < runs.length) {
      const i = next++;
      out[i] = await cli(runs[i]);
    }
  }));
  return out;
}

let tmp: string;
let tiny: string; // a q4g32 tiny checkpoint: vocab_size 1024, max_position_embeddings 4096
let files: Map<string, Uint8Array>;

before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'qwen-cli-bad-'));
  tiny = join(tmp, 'tiny');
  mkdirSync(tiny);
  files = makeTinyCheckpoint('q4g32');
  for (const [name, bytes] of files) writeFileSync(join(tiny, name), bytes);
  const cfg = JSON.parse(readFileSync(join(tiny, 'config.json'), 'utf8'));
  assert.equal(cfg.text_config.vocab_size, 1024);
  assert.equal(cfg.text_config.max_position_embeddings, 4096);
});

after(() => rmSync(tmp, { recursive: true, force: true }));

function assertUsage(r: Run, message: RegExp, what: string): void {
  assert.equal(r.code, 2, `${what}: exit ${r.code}, stderr ${r.stderr}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `${what}: one line, got\n${r.stderr}`);
  assert.match(lines[0], /^qwen-webgpu: .* \(see qwen-webgpu --help\)$/, what);
  assert.match(lines[0], message, what);
  assert.equal(r.stdout, '', `${what}: nothing on stdout`);
}

test('malformed arguments: exit 2 with a one-line message naming the flag', async () => {
  const m = () => ['--model', tiny];
  const cases: [string[], RegExp][] = [
    [['inspect', '--model', 'ftp://127.0.0.1/x'], /--model: "ftp:\/\/127\.0\.0\.1\/x" is a ftp: URL; give a checkpoint folder or an http\(s\) base URL/],
    [['logits', ...m(), '--ids', '1,,2'], /--ids: empty entry at position 2 of "1,,2"/],
    [['logits', ...m(), '--ids', '1,2,'], /--ids: empty entry at position 3 of "1,2,"/],
    [['logits', ...m(), '--ids', '1e3'], /--ids: "1e3" is not a token id: decimal integers only/],
    [['logits', ...m(), '--ids', '0x10'], /--ids: "0x10" is not a token id/],
    [['logits', ...m(), '--ids', '1.0'], /--ids: "1.0" is not a token id/],
    [['logits', ...m(), '--ids', '-1'], /--ids: "-1" is not a token id/],
    [['logits', ...m(), '--ids', ''], /--ids needs at least one token id/],
    [['logits', ...m(), '--ids', '1', '--then', '2,x'], /--then: "x" is not a token id/],
    [['logits', ...m(), '--ids', '1;2', '--then', '3'], /--then has 1 ";"-separated lists for 2 --ids prompts/],
    [['logits', ...m(), '--ids', '1;;2'], /--ids needs at least one token id/],
    [['logits', ...m(), '--ids', '1;2', '--context', '2', '--then', '3;4,5'], /prompt 2: 1 --ids \+ 2 --then ids = 3 tokens, more than --context 2/],
    [['logits', ...m(), '--ids', '1', '--context', 'abc'], /--context: "abc" is not a decimal integer/],
    [['inspect', ...m(), '--context', '0'], /--context: 0 is out of range \(1 to \d+\)/],
    [['inspect', ...m(), '--context', '-4'], /--context: "-4" is not a decimal integer/],
    [['inspect', ...m(), '--context', '1e3'], /--context: "1e3" is not a decimal integer/],
    [['generate', ...m(), '--ids', '1', '--max-tokens', '0'], /--max-tokens: 0 is out of range/],
    [['generate', ...m(), '--ids', '1', '--max-tokens', '0x10'], /--max-tokens: "0x10" is not a decimal integer/],
    [['generate', ...m(), '--ids', '1', '--max-tokens', '99999999999999999999'], /--max-tokens: 99999999999999999999 is out of range/],
    [['logits', ...m(), '--ids', '1', '--bogus'], /unknown flag --bogus/],
    [['logits', ...m(), '--ids', '1', '--gpu-limits', 'low'], /--gpu-limits: "low" is not "max" or "default"/],
    [['inspect', ...m(), '--gpu-limits', 'default'], /--gpu-limits does not apply to inspect/],
    [['generate', ...m(), '--ids', '1', '--then', '2'], /--then does not apply to generate/],
    [['inspect', ...m(), '--ids', '1'], /--ids does not apply to inspect/],
    [['logits', '--ids', '1'], /--model is required/],
    [['logits', ...m()], /--ids is required/],
    [['logits', '--ids', '1', '--model'], /--model needs a value/],
    [['logits', '--model', '--ids', '1'], /--model needs a value/],
    [['inspect', ...m(), '--json=yes'], /--json takes no value/],
    [['inspect', ...m(), '--context', '8', '--context', '9'], /--context is given twice/],
    [['inspect', ...m(), 'extra'], /unexpected argument "extra"/],
    [['frob', ...m()], /unknown command "frob" \(expected inspect, logits, generate, bench\)/],
    [['logits', '--model', 'http://', '--ids', '1'], /--model: "http:\/\/" is not a valid URL/],
    // Prompt + continuation against an explicit context: refused before anything is read.
    [['generate', ...m(), '--ids', '1,2,3', '--max-tokens', '6', '--context', '8'], /3 --ids \+ --max-tokens 6 = 9 tokens, more than --context 8/],
    [['logits', ...m(), '--ids', '1,2', '--then', '3,4,5', '--context', '4'], /2 --ids \+ 3 --then ids = 5 tokens, more than --context 4/],
    // Checks against config.json (vocab_size 1024, max_position_embeddings 4096), before any weight is read.
    [['logits', ...m(), '--ids', '1,1024'], /--ids: token id 1024 is outside the vocabulary \(vocab_size 1024 in config\.json\)/],
    [['logits', ...m(), '--ids', '1', '--then', '5,99999'], /--then: token id 99999 is outside the vocabulary \(vocab_size 1024/],
    [['inspect', ...m(), '--context', '5000'], /--context 5000 exceeds max_position_embeddings 4096 in config\.json/],
    [['logits', ...m(), '--ids', '1', '--context', '4097'], /--context 4097 exceeds max_position_embeddings 4096/],
    [['generate', ...m(), '--ids', '1', '--max-tokens', '4096'], /1 --ids \+ --max-tokens 4096 = 4097 tokens, more than max_position_embeddings 4096 in config\.json/],
  ];
  const runs = await cliAll(cases.map(([args]) => args));
  for (const [i, [args, re]] of cases.entries()) assertUsage(runs[i], re, args.join(' '));
});

test('no command: the usage on stderr, exit 2; --help: the usage on stdout with the exit codes, exit 0', async () => {
  const [none, help, sub] = await cliAll([[], ['--help'], ['logits', '--help']]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /^usage:/);
  for (const r of [help, sub]) {
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /exit status: 0 success; 1 runtime error .*; 2 usage error/);
    assert.match(r.stdout, /--max-tokens N/);
  }
});

/** A static server honouring Range; `deny` answers 403 to everything. */
function serve(dir: string, deny = false): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (deny) return void res.writeHead(403, 'Forbidden').end();
    const file = join(dir, decodeURIComponent(new URL(req.url!, 'http://x').pathname));
    if (!file.startsWith(dir) || !existsSync(file)) return void res.writeHead(404).end();
    const data = readFileSync(file);
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (!m) return void res.writeHead(200, { 'Content-Length': data.length }).end(req.method === 'HEAD' ? undefined : data);
    const a = Number(m[1]);
    const b = Math.min(Number(m[2]), data.length - 1);
    res.writeHead(206, { 'Content-Range': `bytes ${a}-${b}/${data.length}`, 'Content-Length': b - a + 1 }).end(data.subarray(a, b + 1));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => {
    ok({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}` });
  }));
}

test('runtime errors: exit 1, "qwen-webgpu: <message>" naming the file or URL, no stack unless --debug', async () => {
  const { server, url } = await serve(tiny, true);
  const broken = join(tmp, 'broken');
  mkdirSync(broken);
  writeFileSync(join(broken, 'config.json'), readFileSync(join(tiny, 'config.json')));
  writeFileSync(join(broken, 'model.safetensors'), readFileSync(join(tiny, 'model.safetensors')));
  truncateSync(join(broken, 'model.safetensors'), 1000);
  try {
    const [missing, denied, cut, debug] = await cliAll([
      ['inspect', '--model', join(tmp, 'no-such-dir')],
      ['logits', '--model', url, '--ids', '1'],
      ['inspect', '--model', broken],
      ['inspect', '--model', url, '--debug'],
    ]);
    assert.equal(missing.stderr, `qwen-webgpu: --model: "${join(tmp, 'no-such-dir')}" does not exist; give a checkpoint folder or an http(s) base URL\n`);
    for (const r of [missing, denied, cut]) {
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr.trimEnd().split('\n').length, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack trace');
    }
    assert.equal(denied.stderr, `qwen-webgpu: ${url}/config.json (bytes 0-0): HTTP 403 Forbidden\n`);
    assert.match(cut.stderr, /^qwen-webgpu: .*model\.safetensors/);
    assert.equal(debug.code, 1);
    assert.match(debug.stderr, /^qwen-webgpu: .*HTTP 403 Forbidden\n/);
    assert.match(debug.stderr, /^\s+at /m, '--debug shows the stack');
  } finally {
    server.close();
  }
});

/** The Hugging Face hub cache: blobs named by sha256, snapshots/<rev>/<file> -> ../../blobs/<sha256>. */
function hfCache(): { snapshot: string; blob: (name: string) => string } {
  const repo = join(tmp, 'hub', 'models--org--tiny');
  const rev = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
  mkdirSync(join(repo, 'blobs'), { recursive: true });
  mkdirSync(join(repo, 'snapshots', rev), { recursive: true });
  mkdirSync(join(repo, 'refs'), { recursive: true });
  writeFileSync(join(repo, 'refs', 'main'), rev);
  const shas = new Map<string, string>();
  for (const [name, bytes] of files) {
    const sha = createHash('sha256').update(bytes).digest('hex');
    shas.set(name, sha);
    writeFileSync(join(repo, 'blobs', sha), bytes);
    symlinkSync(join('..', '..', 'blobs', sha), join(repo, 'snapshots', rev, name));
  }
  return { snapshot: join(repo, 'snapshots', rev), blob: (name) => join(repo, 'blobs', shas.get(name)!) };
}

test('a Hugging Face cache snapshot (files are symlinks into ../../blobs) loads through inspect', async () => {
  const { snapshot, blob } = hfCache();
  const [viaLinks, plain] = await cliAll([['inspect', '--model', snapshot, '--json'], ['inspect', '--model', tiny, '--json']]);
  assert.equal(viaLinks.code, 0, viaLinks.stderr);
  assert.equal(plain.code, 0, plain.stderr);
  const a = JSON.parse(viaLinks.stdout);
  assert.deepEqual(a, JSON.parse(plain.stdout), 'same report as the plain folder');
  // q4g32: every linear and the embedding 4-bit, group 32.
  const byPath = new Map((a.modules as { path: string; bits?: number; groupSize?: number }[]).map((x) => [x.path, x]));
  assert.equal(byPath.get('embed_tokens')?.bits, 4);
  assert.equal(byPath.get('layers.0.mlp.down_proj')?.bits, 4);
  assert.equal(byPath.get('layers.0.mlp.down_proj')?.groupSize, 32);

  // A blob deleted from under its link: the error names the link and where it pointed.
  unlinkSync(blob('model.safetensors'));
  const dangling = await cli(['inspect', '--model', snapshot]);
  assert.equal(dangling.code, 1);
  assert.match(dangling.stderr, /model\.safetensors: symlink to \.\.\/\.\.\/blobs\/[0-9a-f]{64}, which does not exist/);
});

test('dirSource: names that climb out of the folder are refused; names that merely start with ".." are not', async () => {
  const dir = join(tmp, 'names');
  mkdirSync(dir);
  writeFileSync(join(dir, '..data.json'), '{"x":1}');
  writeFileSync(join(tmp, 'outside.json'), 'secret');
  const src = dirSource(dir);
  assert.equal(await src.size('..data.json'), 7);
  for (const bad of ['../outside.json', 'sub/../../outside.json', join(tmp, 'outside.json'), '..\\outside.json']) {
    await assert.rejects(src.size(bad), new RegExp(`refusing a file name outside ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`), bad);
    await assert.rejects(src.read(bad, 0, 1), /refusing a file name outside/, bad);
  }
  // A link to a file outside the folder is the folder owner's choice: followed, its target's size reported.
  symlinkSync(join(tmp, 'outside.json'), join(dir, 'linked.json'));
  assert.equal(await src.size('linked.json'), statSync(join(tmp, 'outside.json')).size);
  assert.equal(new TextDecoder().decode(await src.read('linked.json', 0, 6)), 'secret');
});

test('progress: on stderr with --progress (over HTTP), absent when piped, absent with --quiet', async () => {
  const { server, url } = await serve(tiny);
  try {
    const weights = JSON.parse((await cli(['inspect', '--model', tiny, '--json'])).stdout).memory.weights as number;
    const shown = await cli(['logits', '--model', url, '--ids', '1,2', '--json', '--progress']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal((JSON.parse(shown.stdout).logits as number[][])[0].length, 1024);
    const m = /^loaded weights: [\d.]+ MiB \((\d+) bytes\) in [\d.]+ s, [\d.]+ [KMG]iB\/s$/m.exec(shown.stderr);
    assert.ok(m, `final progress line in\n${shown.stderr}`);
    assert.equal(Number(m[1]), weights);
    const [piped, quiet] = await cliAll([
      ['logits', '--model', tiny, '--ids', '1,2', '--json'],
      ['logits', '--model', tiny, '--ids', '1,2', '--json', '--progress', '--quiet'],
    ], 2);
    for (const r of [piped, quiet]) {
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stderr, /weights|reading checkpoint/);
      assert.deepEqual(JSON.parse(r.stdout), JSON.parse(shown.stdout), 'same logits from the folder as over HTTP');
    }
  } finally {
    server.close();
  }
});

test('what the loader accepts but ignores is said on stderr as a warning; the run still succeeds', async () => {
  const dir = join(tmp, 'warned');
  mkdirSync(dir);
  for (const [name, bytes] of files) writeFileSync(join(dir, name), bytes);
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  cfg.quantization['language_model.model.layers.99.mlp.up_proj'] = { group_size: 32, bits: 4 };
  if (cfg.quantization_config) cfg.quantization_config['language_model.model.layers.99.mlp.up_proj'] = { group_size: 32, bits: 4 };
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  const r = await cli(['inspect', '--model', dir, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, 'qwen-webgpu: warning: ignoring a quantization override for language_model.model.layers.99.mlp.up_proj: no such module\n');
  assert.ok(JSON.parse(r.stdout).modules.length > 0, 'stdout stays clean JSON');
  const file = await cli(['inspect', '--model', join(tiny, 'config.json')]);
  assert.equal(file.code, 1);
  assert.match(file.stderr, /^qwen-webgpu: --model: ".*config\.json" is a file; give the checkpoint folder that holds config\.json/);
  const clean = await cli(['inspect', '--model', tiny, '--json']);
  assert.equal(clean.stderr, '', 'a clean checkpoint warns of nothing');
});
