// Writes the bundled demo model to public/models/qwen-webgpu-tiny: a tiny RANDOM-weight Qwen3.5 checkpoint in the
// exact MLX layout (4-bit g64, tied), sized for the real Qwen3 tokenizer (151,669 tokens; Qwen3.5's tokenizer.json
// is not available offline, see ../shared/assets/SOURCES.md) and carrying the official Qwen3.5 small-model chat
// template. It exists so the demo and the e2e tests work offline; its replies are gibberish by design.
//   npm run make-demo-model [-- --assets ../shared/assets --out public/models/qwen-webgpu-tiny]
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { makeTinyCheckpoint } from '../format/tiny.ts';

const { values } = parseArgs({ options: { assets: { type: 'string' }, out: { type: 'string' } } });
const root = path.resolve(import.meta.dirname, '../..');
const assets = path.resolve(values.assets ?? path.join(root, '../shared/assets'));
const out = path.resolve(values.out ?? path.join(root, 'public/models/qwen-webgpu-tiny'));

const tokenizerJson = await readFile(path.join(assets, 'qwen3/tokenizer.json'));
const tokenizer = JSON.parse(tokenizerJson.toString('utf8')) as { added_tokens: { id: number; content: string }[] };
const idOf = (t: string) => tokenizer.added_tokens.find((a) => a.content === t)!.id;
const imEnd = idOf('<|im_end|>');
const endOfText = idOf('<|endoftext|>');
// Embedding rows rounded up to a multiple of 128 past the tokenizer, as the real checkpoints do (248,320 > 248,070).
const vocabSize = Math.ceil((Math.max(...tokenizer.added_tokens.map((a) => a.id)) + 1) / 128) * 128;

const files = makeTinyCheckpoint('q4g32', {
  seed: 2026,
  shape: {
    hiddenSize: 64, numLayers: 4, numHeads: 2, numKvHeads: 1, headDim: 32, linearKeyHeads: 1, linearValueHeads: 2,
    linearHeadDim: 16, intermediateSize: 128, vocabSize,
  },
  eosTokenIds: [imEnd, endOfText],
});

const template = await readFile(path.join(assets, 'qwen35/chat_template.small-models.jinja'), 'utf8');
const qwen3Config = JSON.parse(await readFile(path.join(assets, 'qwen3/tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
const tokenizerConfig = { ...qwen3Config, chat_template: template, eos_token: '<|im_end|>' };

await mkdir(out, { recursive: true });
for (const [name, data] of files) await writeFile(path.join(out, name), data);
await writeFile(path.join(out, 'tokenizer.json'), tokenizerJson);
await writeFile(path.join(out, 'tokenizer_config.json'), JSON.stringify(tokenizerConfig, null, 2));
await writeFile(path.join(out, 'chat_template.jinja'), template);
await writeFile(path.join(out, 'generation_config.json'), JSON.stringify({
  bos_token_id: endOfText, eos_token_id: [imEnd, endOfText], pad_token_id: endOfText,
  do_sample: true, temperature: 0.7, top_k: 20, top_p: 0.8,
}, null, 2));
await writeFile(path.join(out, 'README.md'), `# qwen-webgpu-tiny (TEST MODEL)

Random weights, Qwen3.5 architecture (4 layers: 3 Gated DeltaNet + 1 gated attention, hidden 64), MLX affine 4-bit
group 32, tied embeddings, ${vocabSize} embedding rows. Tokenizer: the official Qwen3 tokenizer.json (Apache-2.0);
chat template: the official Qwen3.5 small-model template. Written by \`npm run make-demo-model\`. Its output is
meaningless: it exists so the demo and the browser tests run offline.
`);
console.log(`demo model → ${out}`);
