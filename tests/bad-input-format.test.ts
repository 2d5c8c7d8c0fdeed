// Hostile safetensors files, shard indexes and config.json files, each built from a valid tiny checkpoint with one
// thing broken: every one must be refused with a message naming the file, the tensor or key, expected and found.
// The valid inputs (both ../shared/reference checkpoints, every tiny recipe, the config variants real Qwen3.5
// files use) must keep opening exactly as before.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { parseSafetensorsHeader, type ByteSource } from '../src/format/safetensors.ts';
import { writeSafetensors, type TensorData } from '../src/format/writer.ts';
import { CONFIG_LIMITS, parseConfig } from '../src/format/config.ts';
import { layoutModules, openCheckpoint } from '../src/format/checkpoint.ts';
import { makeTinyCheckpoint, TINY_RECIPES } from '../src/format/tiny.ts';
import { memorySource } from '../src/format/memory-source.ts';
import { dirSource } from '../src/node/fs-source.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const enc = new TextEncoder();
const dec = new TextDecoder();

function tensor(name: string, dtype: 'BF16' | 'F32' | 'U32', shape: number[]): TensorData {
  const n = shape.reduce((a, b) => a * b, 1);
  return { name, dtype, shape, data: new Uint8Array(n * (dtype === 'BF16' ? 2 : 4)).map((_, i) => (i * 7) & 0xff) };
}

// Writer order is element size first, then name: b.A_log F32 [3] = [0, 12], c.weight U32 [2, 2] = [12, 28],
// a.weight BF16 [4, 8] = [28, 92]; 92 data bytes in all.
const good = () => writeSafetensors([tensor('a.weight', 'BF16', [4, 8]), tensor('b.A_log', 'F32', [3]), tensor('c.weight', 'U32', [2, 2])]);
const DATA_BYTES = 92;

function src(bytes: Uint8Array, name = 'x.safetensors'): ByteSource {
  return memorySource(new Map([[name, bytes]]), 'mem');
}

function headerLen(file: Uint8Array): number {
  return new DataView(file.buffer, file.byteOffset).getUint32(0, true);
}

/** The same data behind a new header text (re-padded to 8 bytes), optionally followed by `extra` bytes. */
function withHeaderText(file: Uint8Array, edit: (header: string) => string, extra = 0): Uint8Array {
  const len = headerLen(file);
  const text = edit(dec.decode(file.subarray(8, 8 + len)).trimEnd());
  const raw = enc.encode(text);
  const h = new Uint8Array(raw.length + ((8 - (raw.length % 8)) % 8)).fill(0x20);
  h.set(raw);
  const data = file.subarray(8 + len);
  const out = new Uint8Array(8 + h.length + data.length + extra);
  new DataView(out.buffer).setUint32(0, h.length, true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

/** Same data, header edited as an object. */
function withHeader(file: Uint8Array, edit: (h: Record<string, any>) => void, extra = 0): Uint8Array {
  return withHeaderText(file, (t) => {
    const json = JSON.parse(t);
    edit(json);
    return JSON.stringify(json);
  }, extra);
}

const refuses = (bytes: Uint8Array, pattern: RegExp) => assert.rejects(parseSafetensorsHeader('x.safetensors', src(bytes)), pattern);

// ------------------------------------------------------------------------------------------------------------
describe('safetensors: tensors must tile the data section exactly', () => {
  test('the writer\'s layout is the one the comment above assumes', async () => {
    const h = await parseSafetensorsHeader('x.safetensors', src(good()));
    const rel = (n: string) => [h.tensors.get(n)!.begin - h.dataStart, h.tensors.get(n)!.end - h.dataStart];
    assert.deepEqual([rel('b.A_log'), rel('c.weight'), rel('a.weight')], [[0, 12], [12, 28], [28, DATA_BYTES]]);
    assert.equal(h.fileSize - h.dataStart, DATA_BYTES);
  });

  test('overlapping data_offsets (one tensor would read another\'s bytes)', async () => {
    // c.weight moved onto the end of b.A_log; its size still matches its shape.
    await refuses(withHeader(good(), (h) => { h['c.weight'].data_offsets = [8, 24]; }),
      /x\.safetensors: tensor "c\.weight": data_offsets \[8, 24\] overlap tensor "b\.A_log" \[0, 12\] \(expected it to start at 12/);
    // Two tensors on exactly the same bytes.
    await refuses(withHeader(good(), (h) => { h['c.weight'].data_offsets = [0, 16]; h['b.A_log'].shape = [4]; h['b.A_log'].data_offsets = [0, 16]; }),
      /tensor "(b\.A_log|c\.weight)": data_offsets \[0, 16\] overlap tensor "(b\.A_log|c\.weight)" \[0, 16\]/);
  });

  test('a gap between tensors', async () => {
    await refuses(withHeader(good(), (h) => { h['a.weight'].data_offsets = [32, 96]; }, 4),
      /x\.safetensors: tensor "a\.weight": data_offsets \[32, 96\] leave 4 unused bytes before it \(expected it to start at 28, where tensor "c\.weight" \[12, 28\] ends\)/);
  });

  test('the first tensor not at offset 0', async () => {
    await refuses(withHeader(good(), (h) => {
      for (const k of ['a.weight', 'b.A_log', 'c.weight']) h[k].data_offsets = h[k].data_offsets.map((o: number) => o + 4);
    }, 4), /tensor "b\.A_log": data_offsets \[4, 16\] leave 4 unused bytes before it \(expected it to start at 0, the start of the data section\)/);
  });

  test('bytes after the last tensor', async () => {
    const f = good();
    const padded = new Uint8Array(f.length + 8);
    padded.set(f);
    await refuses(padded, new RegExp(`x\\.safetensors: safetensors header says the data ends at byte ${f.length} but the file has ${f.length + 8} bytes \\(8 bytes after the last tensor "a\\.weight" belong to no tensor\\)`));
  });

  test('an empty header with data after it', async () => {
    await refuses(withHeaderText(good(), () => '{}'), /safetensors header says the data ends at byte \d+ but the file has \d+ bytes \(92 bytes after the header belong to no tensor\)/);
  });

  test('zero-size tensors are valid anywhere in the tiling', async () => {
    const f = writeSafetensors([tensor('a.weight', 'BF16', [4, 8]), tensor('e.empty', 'F32', [0, 5]), tensor('z.empty', 'BF16', [3, 0])]);
    const h = await parseSafetensorsHeader('x.safetensors', src(f));
    assert.equal(h.tensors.get('e.empty')!.end - h.tensors.get('e.empty')!.begin, 0);
    assert.equal(h.tensors.get('a.weight')!.end, f.length);
  });
});

describe('safetensors: duplicate keys (JSON.parse would keep only the last)', () => {
  test('a tensor named twice', async () => {
    // Rename c.weight to a.weight in the text: two "a.weight" keys with different offsets.
    const f = withHeaderText(good(), (t) => t.replace('"c.weight":', '"a.weight":'));
    assert.equal(Object.keys(JSON.parse(dec.decode(f.subarray(8, 8 + headerLen(f))))).length, 3, 'JSON.parse alone would see 3 keys, not 4');
    await refuses(f, /x\.safetensors: key "a\.weight" appears twice in the header/);
  });

  test('a duplicate spelled with a JSON escape is still a duplicate', async () => {
    await refuses(withHeaderText(good(), (t) => t.replace('"c.weight":', '"a\\u002eweight":')), /key "a\.weight" appears twice in the header/);
  });

  test('a key twice inside one tensor entry', async () => {
    await refuses(withHeaderText(good(), (t) => t.replace('"b.A_log":{"dtype":"F32"', '"b.A_log":{"dtype":"BF16","dtype":"F32"')),
      /x\.safetensors: key "dtype" appears twice in tensor "b\.A_log"/);
  });

  test('strings that look like keys are not keys', async () => {
    const f = withHeader(good(), (h) => { h.__metadata__ = { format: 'mlx', note: 'x":{"a.weight": [1, 2], "b.A_log":' }; });
    const h = await parseSafetensorsHeader('x.safetensors', src(f));
    assert.equal(h.metadata.note, 'x":{"a.weight": [1, 2], "b.A_log":');
    assert.equal(h.tensors.size, 3);
  });
});

describe('safetensors: malformed header fields', () => {
  test('__metadata__ must map strings to strings', async () => {
    await refuses(withHeader(good(), (h) => { h.__metadata__ = { format: 'mlx', total: 1 }; }),
      /x\.safetensors: "__metadata__" must be an object of strings, found 1 for "total"/);
    await refuses(withHeader(good(), (h) => { h.__metadata__ = ['mlx']; }), /"__metadata__" must be an object of strings, found \["mlx"\]/);
  });

  test('unknown dtype', async () => {
    await refuses(withHeader(good(), (h) => { h['c.weight'].dtype = 'F4'; }), /x\.safetensors: tensor "c\.weight": unknown dtype "F4" \(expected one of BOOL/);
    await refuses(withHeader(good(), (h) => { h['c.weight'].dtype = 4; }), /tensor "c\.weight": unknown dtype 4/);
  });

  test('negative and non-integer offsets and shape dims', async () => {
    await refuses(withHeader(good(), (h) => { h['b.A_log'].data_offsets = [-4, 8]; }),
      /tensor "b\.A_log": data_offsets must be \[begin, end\] with non-negative integers, found \[-4,8\]/);
    await refuses(withHeader(good(), (h) => { h['b.A_log'].data_offsets = [0, 12.5]; }), /tensor "b\.A_log": data_offsets must be .* found \[0,12\.5\]/);
    await refuses(withHeader(good(), (h) => { h['b.A_log'].data_offsets = [0, 12, 12]; }), /tensor "b\.A_log": data_offsets must be .* found \[0,12,12\]/);
    await refuses(withHeader(good(), (h) => { h['a.weight'].shape = [4, 8.5]; }), /tensor "a\.weight": shape must be an array of non-negative integers, found \[4,8\.5\]/);
    await refuses(withHeader(good(), (h) => { h['a.weight'].shape = [-4, -8]; }), /tensor "a\.weight": shape must be .* found \[-4,-8\]/);
    await refuses(withHeader(good(), (h) => { h['a.weight'].shape = '4x8'; }), /tensor "a\.weight": shape must be .* found "4x8"/);
  });

  test('a shape whose byte count overflows exact integers', async () => {
    await refuses(withHeader(good(), (h) => { h['b.A_log'].shape = [2 ** 40, 2 ** 40]; }),
      /tensor "b\.A_log": F32 \[1099511627776, 1099511627776\] would need \S+ bytes, more than any file can hold/);
  });

  test('header length beyond the file', async () => {
    const f = good();
    new DataView(f.buffer).setUint32(0, f.length - 8 + 1, true);
    await refuses(f, new RegExp(`x\\.safetensors: header length field says ${f.length - 7} bytes but the file has only ${f.length - 8} bytes after it`));
  });

  test('header that is not UTF-8, not JSON, or not an object', async () => {
    const bad = good();
    bad[8 + 3] = 0xff; // inside the first key
    await refuses(bad, /x\.safetensors: header is not valid UTF-8 JSON/);
    await refuses(withHeaderText(good(), (t) => t.slice(0, -1)), /x\.safetensors: header is not valid UTF-8 JSON/);
    await refuses(withHeaderText(good(), () => '[1, 2]', 0), /x\.safetensors: header must be a JSON object, found an array/);
    await refuses(withHeaderText(good(), () => 'null'), /x\.safetensors: header must be a JSON object, found null/);
  });
});

// ------------------------------------------------------------------------------------------------------------
const SHARD = (k: number) => `model-0000${k}-of-00003.safetensors`;
const INDEX = 'model.safetensors.index.json';

function sharded() {
  const files = makeTinyCheckpoint('udq2', { seed: 5 });
  const index = JSON.parse(dec.decode(files.get(INDEX)!)) as { weight_map: Record<string, string> };
  return { files, index };
}

/** A tensor of shard 1 that the index maps there, and its bytes and header entry. */
async function firstShardTensor(files: Map<string, Uint8Array>): Promise<TensorData> {
  const h = await parseSafetensorsHeader(SHARD(1), memorySource(files));
  const [name, e] = [...h.tensors].find(([n]) => n.endsWith('.norm.weight'))!;
  return { name, dtype: e.dtype, shape: e.shape, data: files.get(SHARD(1))!.slice(e.begin, e.end) };
}

async function shardTensors(files: Map<string, Uint8Array>, shard: string): Promise<TensorData[]> {
  const h = await parseSafetensorsHeader(shard, memorySource(files));
  return [...h.tensors].map(([name, e]) => ({ name, dtype: e.dtype, shape: e.shape, data: files.get(shard)!.slice(e.begin, e.end) }));
}

describe('shard index and shard headers must agree', () => {
  test('a shard holds a tensor the index puts in another shard', async () => {
    const { files, index } = sharded();
    const t = await firstShardTensor(files);
    assert.equal(index.weight_map[t.name], SHARD(1));
    // Shard 2 gets a copy, and the index points there: the index's own claim holds, shard 1's copy is unaccounted for.
    files.set(SHARD(2), writeSafetensors([...(await shardTensors(files, SHARD(2))), t]));
    index.weight_map[t.name] = SHARD(2);
    files.set(INDEX, enc.encode(JSON.stringify(index)));
    const esc = t.name.replace(/\./g, '\\.');
    await assert.rejects(openCheckpoint(memorySource(files, 'here')),
      new RegExp(`${SHARD(1).replace(/\./g, '\\.')}: tensor "${esc}" is here but model\\.safetensors\\.index\\.json's weight_map puts it in ${SHARD(2).replace(/\./g, '\\.')}`));
  });

  test('a shard holds a tensor the index does not list', async () => {
    const { files, index } = sharded();
    const t = await firstShardTensor(files);
    delete index.weight_map[t.name];
    files.set(INDEX, enc.encode(JSON.stringify(index)));
    await assert.rejects(openCheckpoint(memorySource(files, 'here')),
      new RegExp(`${SHARD(1).replace(/\./g, '\\.')}: tensor "${t.name.replace(/\./g, '\\.')}" is not listed in model\\.safetensors\\.index\\.json's weight_map`));
  });

  test('a tensor listed twice in the index', async () => {
    const { files } = sharded();
    const t = await firstShardTensor(files);
    const text = dec.decode(files.get(INDEX)!).replace(`"${t.name}": "${SHARD(1)}"`, `"${t.name}": "${SHARD(2)}",\n        "${t.name}": "${SHARD(1)}"`);
    assert.notEqual(text, dec.decode(files.get(INDEX)!), 'the index text was edited');
    files.set(INDEX, enc.encode(text));
    await assert.rejects(openCheckpoint(memorySource(files, 'here')),
      new RegExp(`model\\.safetensors\\.index\\.json: key "${t.name.replace(/\./g, '\\.')}" appears twice in "weight_map"`));
  });
});

// ------------------------------------------------------------------------------------------------------------
/** The tiny propc config.json as an object, for editing. */
function tinyConfig(): Record<string, any> {
  return JSON.parse(dec.decode(makeTinyCheckpoint('propc', { seed: 1 }).get('config.json')!));
}

function edit(f: (c: Record<string, any>) => void): Record<string, any> {
  const c = tinyConfig();
  f(c);
  return c;
}

const configRefused = (f: (c: Record<string, any>) => void, pattern: RegExp) => assert.throws(() => parseConfig(edit(f)), pattern);

describe('config.json: values of the wrong type are refused, not coerced', () => {
  test('tie_word_embeddings "false" (a string, truthy) in either place', () => {
    configRefused((c) => { c.text_config.tie_word_embeddings = 'false'; }, /config\.json: text_config\.tie_word_embeddings must be true or false, found "false"/);
    configRefused((c) => { c.tie_word_embeddings = 0; }, /config\.json: tie_word_embeddings must be true or false, found 0/);
  });

  test('tie_word_embeddings "false" is refused by openCheckpoint too, rather than dropping lm_head', async () => {
    const files = makeTinyCheckpoint('propc', { seed: 1 });
    const c = JSON.parse(dec.decode(files.get('config.json')!));
    c.text_config.tie_word_embeddings = 'false';
    c.tie_word_embeddings = 'false';
    files.set('config.json', enc.encode(JSON.stringify(c)));
    await assert.rejects(openCheckpoint(memorySource(files)), /config\.json: text_config\.tie_word_embeddings must be true or false, found "false"/);
  });

  test('eos_token_id: null in a list, a string, or beyond the vocabulary', () => {
    configRefused((c) => { c.eos_token_id = [1023, null]; }, /config\.json: eos_token_id\[1\] must be a token id from 0 to 1023 \(vocab_size 1024\), found null/);
    configRefused((c) => { c.eos_token_id = '1023'; }, /config\.json: eos_token_id must be a token id from 0 to 1023 .*found "1023"/);
    configRefused((c) => { c.text_config.eos_token_id = 1024; }, /config\.json: text_config\.eos_token_id must be a token id from 0 to 1023 .*found 1024/);
    configRefused((c) => { c.eos_token_id = -1; }, /eos_token_id must be a token id .*found -1/);
    configRefused((c) => { c.eos_token_id = 7.5; }, /eos_token_id must be a token id .*found 7\.5/);
  });

  test('sizes given as strings or fractions', () => {
    configRefused((c) => { c.text_config.hidden_size = '256'; }, /config\.json: text_config\.hidden_size must be a number, found "256"/);
    configRefused((c) => { c.text_config.num_attention_heads = 4.5; }, /text_config\.num_attention_heads must be an integer from 1 to 1024, found 4\.5/);
    configRefused((c) => { c.text_config.vocab_size = 0; }, /text_config\.vocab_size must be an integer from 1 to 4194304, found 0/);
    configRefused((c) => { delete c.text_config.intermediate_size; }, /text_config\.intermediate_size is missing \(expected a positive integer\)/);
  });

  test('containers of the wrong kind', () => {
    configRefused((c) => { c.text_config.layer_types = 'linear_attention'; }, /text_config\.layer_types must be a list, found "linear_attention"/);
    configRefused((c) => { c.text_config.layer_types[2] = 'sliding_attention'; }, /text_config\.layer_types\[2\] is "sliding_attention", expected "linear_attention" or "full_attention"/);
    configRefused((c) => { c.text_config.rope_parameters = 'default'; }, /text_config\.rope_parameters must be an object, found "default"/);
    configRefused((c) => { c.text_config = 'qwen3_5_text'; }, /config\.json: text_config must be an object, found "qwen3_5_text"/);
    configRefused((c) => { c.quantization = 4; c.quantization_config = 4; }, /config\.json: quantization must be an object, found 4/);
    configRefused((c) => { c.quantization['language_model.model.layers.0.mlp.up_proj'] = 'false'; c.quantization_config = c.quantization; },
      /quantization\["language_model\.model\.layers\.0\.mlp\.up_proj"\] must be true, false or an object \{bits, group_size, mode\}, found "false"/);
    configRefused((c) => { c.quantization.mode = 1; c.quantization_config = c.quantization; }, /quantization defaults: mode must be a string, found 1/);
  });
});

describe('config.json: values out of range', () => {
  test('rms_norm_eps negative, zero or ≥ 1', () => {
    for (const v of [-1e-6, 0, 1]) {
      configRefused((c) => { c.text_config.rms_norm_eps = v; }, new RegExp(`config\\.json: text_config\\.rms_norm_eps must be a number in \\(0, 1\\), found ${v}`));
    }
  });

  test('rope_theta 0 or negative, partial_rotary_factor outside (0, 1]', () => {
    configRefused((c) => { c.text_config.rope_parameters.rope_theta = 0; }, /config\.json: text_config\.rope_parameters\.rope_theta must be a positive number, found 0/);
    configRefused((c) => { delete c.text_config.rope_parameters; c.text_config.rope_theta = -5; }, /text_config\.rope_theta must be a positive number, found -5/);
    configRefused((c) => { c.text_config.rope_parameters.partial_rotary_factor = 2; }, /text_config\.rope_parameters\.partial_rotary_factor must be a number in \(0, 1\], found 2/);
    configRefused((c) => { c.text_config.rope_parameters.partial_rotary_factor = 0.01; }, /rotary dimension int\(head_dim 64 × partial_rotary_factor 0\.01\) = 0 must be even and at least 2/);
  });

  test('a broken copy of a setting is not hidden by the copy that wins', () => {
    // rope_parameters wins over text_config.rope_theta, but the latter is still checked.
    configRefused((c) => { c.text_config.rope_theta = 'big'; }, /text_config\.rope_theta must be a number, found "big"/);
    configRefused((c) => { c.text_config.eos_token_id = [null]; }, /text_config\.eos_token_id\[0\] must be a token id/);
  });

  test('head_dim absent and hidden_size not a multiple of num_attention_heads', () => {
    configRefused((c) => { delete c.text_config.head_dim; c.text_config.num_attention_heads = 3; c.text_config.num_key_value_heads = 1; },
      /text_config\.head_dim is not set and text_config\.hidden_size \(256\) is not a multiple of text_config\.num_attention_heads \(3\)/);
  });

  test('head and group counts that do not divide', () => {
    configRefused((c) => { c.text_config.num_key_value_heads = 3; }, /text_config\.num_attention_heads \(4\) must be a multiple of text_config\.num_key_value_heads \(3\)/);
    configRefused((c) => { c.text_config.linear_num_value_heads = 3; }, /text_config\.linear_num_value_heads \(3\) must be a multiple of text_config\.linear_num_key_heads \(2\)/);
  });

  test('sizes that would exhaust memory are refused before the layout is built', async () => {
    // A config of under 2 KB asking for a million layers: this used to run Node out of heap in layoutModules.
    const files = makeTinyCheckpoint('bf16', { seed: 1 });
    const c = JSON.parse(dec.decode(files.get('config.json')!));
    c.text_config.num_hidden_layers = 1_000_000;
    delete c.text_config.layer_types;
    const text = JSON.stringify(c);
    assert.ok(text.length < 2048, `config is ${text.length} bytes`);
    files.set('config.json', enc.encode(text));
    const t0 = Date.now();
    await assert.rejects(openCheckpoint(memorySource(files)),
      /config\.json: text_config\.num_hidden_layers must be an integer from 1 to 1024, found 1000000; larger values are refused before anything is allocated/);
    assert.ok(Date.now() - t0 < 1000, 'refused at once');
    const limits: [string, number][] = [
      ['hidden_size', 1e9], ['vocab_size', 2 ** 23], ['max_position_embeddings', 2 ** 30], ['intermediate_size', 2 ** 21],
      ['head_dim', 8192], ['linear_conv_kernel_dim', 1000], ['linear_num_value_heads', 4096],
    ];
    for (const [key, v] of limits) {
      const max = CONFIG_LIMITS[key as keyof typeof CONFIG_LIMITS];
      assert.ok(v > max);
      configRefused((x) => { x.text_config[key] = v; }, new RegExp(`text_config\\.${key} must be an integer from 1 to ${max}, found ${v}`));
    }
    configRefused((x) => { delete x.text_config.layer_types; x.text_config.full_attention_interval = 1e6; }, /text_config\.full_attention_interval must be an integer from 1 to 1024/);
  });
});

describe('config.json: other architectures are named as unsupported', () => {
  test('model_type of another family, at either level', () => {
    configRefused((c) => { c.model_type = 'llama'; }, /config\.json: unsupported architecture: model_type is "llama", expected "qwen3_5" or "qwen3_5_text"/);
    configRefused((c) => { c.text_config.model_type = 'qwen3_moe'; },
      /unsupported architecture: text_config\.model_type is "qwen3_moe", expected "qwen3_5" or "qwen3_5_text" .*Mixture-of-experts variants are not supported yet/);
    configRefused((c) => { c.model_type = 'qwen3_5_moe'; c.text_config.model_type = 'qwen3_5_moe_text'; }, /unsupported architecture: model_type is "qwen3_5_moe"/);
    configRefused((c) => { c.model_type = 'qwen3_next'; }, /unsupported architecture: model_type is "qwen3_next"/);
    configRefused((c) => { c.model_type = 35; }, /unsupported architecture: model_type is 35/);
  });

  test('architectures of another family', () => {
    configRefused((c) => { c.architectures = ['Qwen3_5MoeForConditionalGeneration']; },
      /unsupported architecture: architectures\[0\] is "Qwen3_5MoeForConditionalGeneration", expected "Qwen3_5ForConditionalGeneration" or "Qwen3_5ForCausalLM" .*Mixture-of-experts/);
    configRefused((c) => { c.architectures = 'Qwen3_5ForConditionalGeneration'; }, /architectures must be a list of class names, found "Qwen3_5ForConditionalGeneration"/);
  });

  test('a Llama config is refused for its architecture, not for a missing Qwen3.5 key', () => {
    const llama = {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', hidden_size: 4096, num_hidden_layers: 32, num_attention_heads: 32,
      num_key_value_heads: 8, intermediate_size: 14336, vocab_size: 128256, rms_norm_eps: 1e-5, rope_theta: 500000,
    };
    assert.throws(() => parseConfig(llama), /config\.json: unsupported architecture: model_type is "llama"/);
    assert.throws(() => parseConfig({ ...llama, model_type: undefined }), /config\.json: unsupported architecture: architectures\[0\] is "LlamaForCausalLM"/);
  });

  test('num_experts > 0 under a qwen3_5 model_type', () => {
    configRefused((c) => { c.text_config.num_experts = 256; }, /unsupported architecture: text_config\.num_experts is 256; Mixture-of-experts/);
    configRefused((c) => { c.text_config.num_experts = '8'; }, /text_config\.num_experts must be a number, found "8"/);
  });
});

// ------------------------------------------------------------------------------------------------------------
describe('valid inputs keep opening exactly as before', () => {
  test('the real config shapes: flat text-only, rope_scaling, HF nulls, eos lists, text_config quantization', () => {
    const base = parseConfig(tinyConfig());
    // Text-only (Qwen3_5ForCausalLM): the text keys at the top level.
    const t = tinyConfig();
    const flat = parseConfig({ ...t.text_config, architectures: ['Qwen3_5ForCausalLM'], eos_token_id: t.eos_token_id, quantization: t.quantization });
    assert.deepEqual({ ...flat, modelType: '' }, { ...base, modelType: '' });
    assert.equal(flat.modelType, 'qwen3_5_text');
    // Older transformers: rope_scaling with mrope and rope_theta next to it; Python's None written as null.
    const older = parseConfig(edit((c) => {
      const { rope_theta, partial_rotary_factor, ...rest } = c.text_config.rope_parameters;
      delete c.text_config.rope_parameters;
      c.text_config.rope_scaling = { ...rest, rope_type: undefined, type: 'mrope' };
      c.text_config.rope_theta = rope_theta;
      c.text_config.partial_rotary_factor = partial_rotary_factor;
      c.text_config.head_dim = null;
      c.text_config.bos_token_id = null;
      c.text_config.num_experts = 0;
      c.rope_scaling = null;
    }));
    assert.deepEqual(older, base);
    // eos as a list at the top level, a different scalar in text_config (top level wins, spec §7).
    assert.deepEqual(parseConfig(edit((c) => { c.eos_token_id = [1023, 1022]; c.text_config.eos_token_id = 5; })).eosTokenIds, [1023, 1022]);
    assert.deepEqual(parseConfig(edit((c) => { c.eos_token_id = null; c.text_config.eos_token_id = 5; })).eosTokenIds, [5]);
    // Quantization only under text_config (mlx-lm's fallback), quant_method "mlx", layer_types absent.
    const q = parseConfig(edit((c) => {
      c.text_config.quantization_config = { ...c.quantization, quant_method: 'mlx' };
      delete c.quantization;
      delete c.quantization_config;
      delete c.text_config.layer_types;
    }));
    assert.deepEqual(q, base);
    assert.equal(base.quantization!.overrides.size > 0, true);
  });

  test('every tiny recipe (MLX and HF naming, sharded) opens with its full layout', async () => {
    for (const recipe of TINY_RECIPES) {
      for (const opts of [{ seed: 2 }, { seed: 2, hf: true }, { seed: 2, shards: 2 }]) {
        const ckpt = await openCheckpoint(memorySource(makeTinyCheckpoint(recipe, opts), `${recipe}`));
        const layout = layoutModules(ckpt.config, { tied: ckpt.tied, isMlx: ckpt.isMlx });
        assert.deepEqual([...ckpt.modules.keys()], layout.map((m) => m.path), `${recipe} ${JSON.stringify(opts)}`);
        assert.deepEqual(ckpt.ignored.filter((n) => !/vision_tower|visual|mtp|lm_head/.test(n)), [], `${recipe}: nothing unexpected ignored`);
        assert.deepEqual(ckpt.warnings, [], `${recipe} ${JSON.stringify(opts)}: the VL and MTP extras are skipped without a word`);
      }
    }
  });

  test('both ../shared/reference checkpoints open with their README shapes', async () => {
    for (const name of ['pub-propc', 'pub-unsloth3']) {
      const dir = path.resolve(repoRoot, '../shared/reference', name);
      const ckpt = await openCheckpoint(dirSource(dir));
      const c = ckpt.config;
      assert.deepEqual([c.hiddenSize, c.numLayers, c.vocabSize, c.headDim, c.rotaryDim, c.eosTokenIds], [192, 8, 512, 64, 16, [511]], name);
      assert.equal(ckpt.modules.size, layoutModules(c, { tied: ckpt.tied, isMlx: ckpt.isMlx }).length, name);
      assert.deepEqual([ckpt.tied, c.ropeTheta, ckpt.warnings], [false, 1e7, []], name);
      const h = await parseSafetensorsHeader('model.safetensors', dirSource(dir));
      const used = [...h.tensors.values()].reduce((s, t) => s + (t.end - t.begin), 0);
      assert.equal(h.dataStart + used, h.fileSize, `${name}: the tensors tile the data section`);
    }
  });
});

// ------------------------------------------------------------------------------------------------------------
/** A tiny checkpoint with config.json edited (as an object, or as text for what JSON.stringify cannot write). */
function withConfig(recipe: 'bf16' | 'propc' | 'unsloth3', f: (c: Record<string, any>) => void, text?: (t: string) => string) {
  const files = makeTinyCheckpoint(recipe, { seed: 1 });
  const c = JSON.parse(dec.decode(files.get('config.json')!));
  f(c);
  const t = JSON.stringify(c);
  files.set('config.json', enc.encode(text ? text(t) : t));
  return files;
}

/** propc (untied, single file) with its lm_head tensors removed and config.json edited. */
async function propcWithoutLmHead(f: (c: Record<string, any>) => void) {
  const files = withConfig('propc', (c) => {
    for (const q of [c.quantization, c.quantization_config]) delete q['language_model.lm_head'];
    f(c);
  });
  const kept = (await shardTensors(files, 'model.safetensors')).filter((t) => !t.name.includes('lm_head'));
  files.set('model.safetensors', writeSafetensors(kept));
  return files;
}

describe('tie_word_embeddings and lm_head: no head means tied (spec §1.1), a contradiction is said', () => {
  test('untied in config.json but no lm_head: tied, with a warning naming the key that says false', async () => {
    const files = await propcWithoutLmHead(() => {});
    const ck = await openCheckpoint(memorySource(files, 'here'));
    assert.equal(ck.tied, true);
    assert.equal(ck.warnings.length, 1);
    assert.match(ck.warnings[0], /^config\.json says text_config\.tie_word_embeddings is false, but the checkpoint in here has no lm_head\.weight \(MLX "language_model\.lm_head\.weight", HF "lm_head\.weight"\): the output layer reuses embed_tokens \(tied\)/);
    // Only the top-level key set: that one is named.
    const top = await propcWithoutLmHead((c) => { delete c.text_config.tie_word_embeddings; });
    assert.match((await openCheckpoint(memorySource(top))).warnings[0], /^config\.json says tie_word_embeddings is false, but/);
  });

  test('tie_word_embeddings absent everywhere and no lm_head: tied without a word (the spec\'s rule, nothing contradicts it)', async () => {
    const files = await propcWithoutLmHead((c) => { delete c.tie_word_embeddings; delete c.text_config.tie_word_embeddings; });
    const ck = await openCheckpoint(memorySource(files));
    assert.deepEqual([ck.tied, ck.warnings], [true, []]);
    assert.equal(parseConfig(JSON.parse(dec.decode(files.get('config.json')!))).tieWordEmbeddings, false);
  });

  test('tied without lm_head opens; the same weights with tie true run tied and say nothing', async () => {
    const bf16 = await openCheckpoint(memorySource(makeTinyCheckpoint('bf16', { seed: 1 })));
    assert.deepEqual([bf16.tied, bf16.modules.has('lm_head'), bf16.warnings], [true, false, []]);
    const files = await propcWithoutLmHead((c) => { c.tie_word_embeddings = true; c.text_config.tie_word_embeddings = true; });
    const ck = await openCheckpoint(memorySource(files));
    assert.deepEqual([ck.tied, ck.modules.has('lm_head'), ck.warnings], [true, false, []]);
  });
});

describe('config.json: rope_theta has no safe default', () => {
  test('rope_parameters null and no rope_theta anywhere: refused, naming the keys looked for', () => {
    configRefused((c) => { c.text_config.rope_parameters = null; },
      /config\.json: rope_theta is not set \(looked for text_config\.rope_parameters\.rope_theta, text_config\.rope_theta, rope_theta; text_config\.rope_parameters is null\); expected the RoPE base, 10000000/);
    configRefused((c) => { delete c.text_config.rope_parameters.rope_theta; }, /rope_theta is not set \(looked for text_config\.rope_parameters\.rope_theta, text_config\.rope_theta, rope_theta\)/);
    // Flat text-only config: the names carry no prefix and are not repeated.
    const t = tinyConfig().text_config;
    delete t.rope_parameters;
    assert.throws(() => parseConfig(t), /rope_theta is not set \(looked for rope_parameters\.rope_theta, rope_theta; rope_parameters is not set\)/);
  });

  test('rope_parameters null but rope_theta next to it, or at the top level: that value, not a default', () => {
    assert.equal(parseConfig(edit((c) => { c.text_config.rope_parameters = null; c.text_config.rope_theta = 1e7; })).ropeTheta, 1e7);
    assert.equal(parseConfig(edit((c) => { c.text_config.rope_parameters = null; c.rope_theta = 5e6; })).ropeTheta, 5e6);
    // partial_rotary_factor keeps its agreed default of 0.25: rotary dim 64 · 0.25.
    assert.equal(parseConfig(edit((c) => { c.text_config.rope_parameters = null; c.text_config.rope_theta = 1e7; })).rotaryDim, 16);
  });
});

describe('config.json: architecture switches the engine does not implement', () => {
  test('hidden_act other than silu', () => {
    configRefused((c) => { c.text_config.hidden_act = 'gelu'; },
      /config\.json: unsupported setting: text_config\.hidden_act is "gelu"; this runtime supports "silu" only \(the MLP is SwiGLU/);
    configRefused((c) => { c.text_config.hidden_act = 5; }, /config\.json: text_config\.hidden_act must be a string, found 5/);
  });

  test('attn_output_gate false, attention_bias true', () => {
    configRefused((c) => { c.text_config.attn_output_gate = false; },
      /config\.json: unsupported setting: text_config\.attn_output_gate is false; this runtime supports true only \(full-attention layers always gate/);
    configRefused((c) => { c.text_config.attention_bias = true; },
      /config\.json: unsupported setting: text_config\.attention_bias is true; this runtime supports false only \(no q\/k\/v\/o bias tensors are read\)/);
  });

  test('the switches given as strings are refused like tie_word_embeddings', () => {
    configRefused((c) => { c.text_config.attn_output_gate = 'false'; }, /config\.json: text_config\.attn_output_gate must be true or false, found "false"/);
    configRefused((c) => { c.text_config.attention_bias = 0; }, /config\.json: text_config\.attention_bias must be true or false, found 0/);
  });

  test('the supported values, null or absent keys, and the real configs still parse', async () => {
    const base = parseConfig(tinyConfig());
    assert.deepEqual(parseConfig(edit((c) => { delete c.text_config.hidden_act; delete c.text_config.attn_output_gate; delete c.text_config.attention_bias; })), base);
    assert.deepEqual(parseConfig(edit((c) => { c.text_config.hidden_act = null; c.text_config.attention_bias = null; })), base);
    for (const name of ['pub-propc', 'pub-unsloth3']) {
      const raw = JSON.parse(await readFile(path.resolve(repoRoot, '../shared/reference', name, 'config.json'), 'utf8'));
      assert.deepEqual([raw.text_config.hidden_act, raw.text_config.attn_output_gate, raw.text_config.attention_bias], ['silu', true, false], name);
      assert.equal(parseConfig(raw).numLayers, 8, name);
    }
  });
});

describe('values nested 200,000 deep are reported, not a stack overflow', () => {
  const DEEP = '['.repeat(200_000) + ']'.repeat(200_000);
  const SHOWN = /found \[\[\[\[…\]\]\]\]/;
  /** The good file with the JSON value "@DEEP@" replaced by DEEP in the header text. */
  const deepHeader = (f: (h: Record<string, any>) => void) => withHeaderText(good(), (t) => {
    const h = JSON.parse(t);
    f(h);
    return JSON.stringify(h).replace('"@DEEP@"', DEEP);
  });

  test('JSON.stringify of such a value would itself overflow (what the messages used to do)', () => {
    assert.throws(() => JSON.stringify(JSON.parse(DEEP)), RangeError);
  });

  test('in a safetensors tensor entry and in __metadata__', async () => {
    await refuses(deepHeader((h) => { h['b.A_log'] = '@DEEP@'; }), /x\.safetensors: tensor "b\.A_log": expected \{dtype, shape, data_offsets\}, found \[\[\[\[…\]\]\]\]$/);
    await refuses(deepHeader((h) => { h['b.A_log'].shape = '@DEEP@'; }), /x\.safetensors: tensor "b\.A_log": shape must be an array of non-negative integers, found \[\[\[\[…\]\]\]\]$/);
    await refuses(deepHeader((h) => { h['c.weight'].dtype = '@DEEP@'; }), /x\.safetensors: tensor "c\.weight": unknown dtype \[\[\[\[…\]\]\]\] \(expected one of/);
    await refuses(deepHeader((h) => { h.__metadata__ = '@DEEP@'; }), /x\.safetensors: "__metadata__" must be an object of strings, found \[\[\[\[…\]\]\]\]$/);
    await refuses(deepHeader((h) => { h.__metadata__ = { format: 'mlx', note: '@DEEP@' }; }), /x\.safetensors: "__metadata__" must be an object of strings, found \[\[\[\[…\]\]\]\] for "note"/);
  });

  test('in text_config.hidden_size and in both copies of the quantization block', async () => {
    const files = withConfig('bf16', (c) => { c.text_config.hidden_size = '@DEEP@'; }, (t) => t.replace('"@DEEP@"', DEEP));
    await assert.rejects(openCheckpoint(memorySource(files)), /config\.json: text_config\.hidden_size must be a number, found \[\[\[\[…\]\]\]\]$/);
    const q = withConfig('propc', (c) => {
      for (const x of [c.quantization, c.quantization_config]) x['language_model.model.layers.0.mlp.up_proj'] = '@DEEP@';
    }, (t) => t.replaceAll('"@DEEP@"', DEEP));
    await assert.rejects(openCheckpoint(memorySource(q)),
      /config\.json: quantization\["language_model\.model\.layers\.0\.mlp\.up_proj"\] must be true, false or an object \{bits, group_size, mode\}, found \[\[\[\[…\]\]\]\]$/);
  });

  test('in a weight_map value of the shard index', async () => {
    const { files, index } = sharded();
    const name = Object.keys(index.weight_map)[0];
    index.weight_map[name] = '@DEEP@';
    files.set(INDEX, enc.encode(JSON.stringify(index).replace('"@DEEP@"', DEEP)));
    await assert.rejects(openCheckpoint(memorySource(files)),
      new RegExp(`model\\.safetensors\\.index\\.json: weight_map\\["${name.replace(/\./g, '\\.')}"\\] must be a shard file name, ${SHOWN.source}$`));
  });

  test('long and wide values are cut to about 80 characters', () => {
    const long = (v: unknown) => assert.throws(() => parseConfig(edit((c) => { c.text_config.hidden_size = v; })), (e: Error) => {
      const found = e.message.slice(e.message.indexOf('found ') + 6);
      assert.ok(found.length <= 81 && found.endsWith('…'), `shown as ${found.length} chars: ${found.slice(0, 100)}`);
      return true;
    });
    long('x'.repeat(5_000_000));
    long(Array.from({ length: 100_000 }, (_, i) => i));
    long(Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`k${i}`, [[[[i]]]]])));
    configRefused((c) => { c.text_config.hidden_size = { a: [1, { b: [2] }] }; }, /found \{"a":\[1,\{"b":\[…\]\}\]\}$/);
  });
});

describe('accepted but unused: said in Checkpoint.warnings, one line per kind', () => {
  test('unknown tensors, and a whole layer beyond num_hidden_layers', async () => {
    const files = makeTinyCheckpoint('bf16', { seed: 1 });
    const extra = [
      'language_model.model.layers.0.mlp.foo.weight',
      ...['input_layernorm', 'post_attention_layernorm', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj', 'linear_attn.A_log']
        .map((m) => `language_model.model.layers.8.${m}${m.endsWith('A_log') ? '' : '.weight'}`),
    ];
    const tensors = await shardTensors(files, 'model.safetensors');
    files.set('model.safetensors', writeSafetensors([...tensors, ...extra.map((n) => tensor(n, 'BF16', [4]))]));
    const ck = await openCheckpoint(memorySource(files));
    assert.equal(ck.warnings.length, 1, ck.warnings.join('\n'));
    const m = /^ignoring 7 tensors the model does not use: (.+) \(and 2 more\)$/.exec(ck.warnings[0]);
    assert.ok(m, ck.warnings[0]);
    const listed = m[1].split(', ');
    assert.equal(new Set(listed).size, 5);
    for (const n of listed) assert.ok(extra.includes(n), `${n} is one of the added tensors`);
    // The VL/MTP extras of the tiny checkpoint are still ignored without a word.
    assert.ok(ck.ignored.includes('mtp.fc.weight') && ck.ignored.includes('vision_tower.blocks.0.attn.qkv.weight'));
    assert.ok(!ck.warnings[0].includes('mtp') && !ck.warnings[0].includes('vision'));
    assert.equal(ck.modules.size, layoutModules(ck.config, { tied: true }).length);
  });

  test('one unknown tensor is named in the singular', async () => {
    const files = makeTinyCheckpoint('bf16', { seed: 1 });
    files.set('model.safetensors', writeSafetensors([...(await shardTensors(files, 'model.safetensors')), tensor('language_model.model.layers.0.mlp.foo.weight', 'BF16', [4])]));
    assert.deepEqual((await openCheckpoint(memorySource(files))).warnings, ['ignoring 1 tensor the model does not use: language_model.model.layers.0.mlp.foo.weight']);
  });

  test('quantization overrides for modules that do not exist or are never quantized', async () => {
    const one = withConfig('propc', (c) => {
      for (const q of [c.quantization, c.quantization_config]) {
        q['language_model.model.layers.99.mlp.up_proj'] = { group_size: 64, bits: 4, mode: 'affine' };
        q['vision_tower.blocks.0.attn.qkv'] = false; // mlx-vlm quantizes the vision tower too: expected, not mentioned
        q['mtp.fc'] = { group_size: 64, bits: 4 };
      }
    });
    assert.deepEqual((await openCheckpoint(memorySource(one))).warnings,
      ['ignoring a quantization override for language_model.model.layers.99.mlp.up_proj: no such module']);
    const many = withConfig('propc', (c) => {
      for (const q of [c.quantization, c.quantization_config]) {
        for (let i = 8; i < 15; i++) q[`language_model.model.layers.${i}.mlp.down_proj`] = false;
        q['language_model.model.layers.0.input_layernorm'] = false;
      }
    });
    assert.deepEqual((await openCheckpoint(memorySource(many))).warnings, [
      'ignoring 7 quantization overrides for modules that do not exist: language_model.model.layers.8.mlp.down_proj, language_model.model.layers.9.mlp.down_proj, ' +
      'language_model.model.layers.10.mlp.down_proj, language_model.model.layers.11.mlp.down_proj, language_model.model.layers.12.mlp.down_proj (and 2 more)',
      'ignoring a quantization override for modules MLX never quantizes: language_model.model.layers.0.input_layernorm (norm)',
    ]);
  });

  test('an lm_head that tie_word_embeddings true makes unused is dropped and said (its override is not repeated)', async () => {
    // unsloth3 stores lm_head at 6 bits through an override entry, which tying makes moot as well.
    const files = withConfig('unsloth3', (c) => { c.tie_word_embeddings = true; c.text_config.tie_word_embeddings = true; });
    assert.deepEqual(JSON.parse(dec.decode(files.get('config.json')!)).quantization['language_model.lm_head'], { group_size: 64, bits: 6 });
    const ck = await openCheckpoint(memorySource(files));
    assert.equal(ck.tied, true);
    assert.deepEqual(ck.warnings, ['ignoring language_model.lm_head.weight, language_model.lm_head.scales, language_model.lm_head.biases: text_config.tie_word_embeddings is true, so the output layer reuses embed_tokens (as mlx-lm does)']);
  });
});

describe('wording of found values and of quantization modes', () => {
  test('mode "zzz" lists the recognised modes', () => {
    configRefused((c) => { c.quantization.mode = 'zzz'; c.quantization_config = c.quantization; },
      /config\.json: quantization defaults: unsupported quantization mode "zzz" \(recognised: affine, mxfp4, nvfp4, mxfp8\)/);
  });

  test('a literal 1e400 (JSON.parse reads Infinity) is reported as Infinity, not as null', async () => {
    const files = withConfig('bf16', () => {}, (t) => t.replace('"hidden_size":256', '"hidden_size":1e400'));
    assert.notEqual(dec.decode(files.get('config.json')!).indexOf('1e400'), -1, 'the config text was edited');
    await assert.rejects(openCheckpoint(memorySource(files)),
      /config\.json: text_config\.hidden_size must be a finite number, found Infinity \(a literal beyond the range of a 64-bit float\)/);
    const eps = withConfig('bf16', () => {}, (t) => t.replace('"rms_norm_eps":0.000001', '"rms_norm_eps":-1e400'));
    assert.notEqual(dec.decode(eps.get('config.json')!).indexOf('-1e400'), -1, 'the config text was edited');
    await assert.rejects(openCheckpoint(memorySource(eps)), /text_config\.rms_norm_eps must be a finite number, found -Infinity/);
  });
});
