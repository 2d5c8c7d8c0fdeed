// src/text: tokenizer wrapper (real Qwen3 tokenizer.json; Qwen3.5 added-token table from its tokenizer_config), chat
// rendering with both official Qwen3.5 templates (expected strings written out by reading the template text and
// spec §7), the incremental detokenizer, and the streaming reasoning / tool-call parser.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  ChatTemplateError, createDetokenizer, createOutputParser, loadTokenizer, promptOpensThinking, renderChat,
  type ChatMessage, type Delta, type OutputParserOptions, type ParsedOutput, type ToolDef,
} from '../src/text/index.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const asset = (rel: string) => readFileSync(path.resolve(repoRoot, '../shared/assets', rel), 'utf8');

const qwen3Json = asset('qwen3/tokenizer.json');
const qwen3Config = JSON.parse(asset('qwen3/tokenizer_config.json'));
const tok = loadTokenizer(qwen3Json, qwen3Config);

const TEMPLATE = asset('qwen35/chat_template.jinja'); // Qwen3.5 ≥4B: thinking on by default
const SMALL = asset('qwen35/chat_template.small-models.jinja'); // Qwen3.5 0.8B/2B: thinking off by default

describe('tokenizer (Qwen3 tokenizer.json)', () => {
  test('special tokens in text are single ids, no BOS', () => {
    // <|im_start|>/<|im_end|> ids from added_tokens; "user"=872, "\n"=198 are the byte-level vocab entries.
    assert.equal(tok.tokenToId('user'), 872);
    assert.equal(tok.tokenToId('Ċ'), 198); // byte-level spelling of "\n"
    assert.deepEqual(tok.encode('<|im_start|>user\nhi<|im_end|>\n'), [151644, 872, 198, tok.tokenToId('hi'), 151645, 198]);
    assert.deepEqual(tok.encode('Hello world'), [9707, 1879]);
    // The Qwen3 "thinking off" suffix: <think>, "\n\n" (271), </think>, "\n\n".
    assert.deepEqual(tok.encode('<think>\n\n</think>\n\n'), [151667, 271, 151668, 271]);
    assert.deepEqual(tok.encode(''), []);
    assert.equal(tok.encode('a').length, 1);
  });

  test('decode round-trips, skipSpecialTokens drops only special tokens', () => {
    for (const s of ['Hello world', 'emoji 😀 ok', '日本語のテキスト', 'x=12345; y = 3.14159', '  two  spaces \n\n tabs\t.', ' .,?!']) {
      assert.equal(tok.decode(tok.encode(s)), s);
    }
    const ids = tok.encode('<|im_start|>assistant\n<think>\nr\n</think>\n\n<tool_call>x</tool_call><|im_end|>');
    assert.equal(tok.decode(ids, { skipSpecialTokens: true }), 'assistant\n<think>\nr\n</think>\n\n<tool_call>x</tool_call>');
    assert.equal(tok.decode(ids), '<|im_start|>assistant\n<think>\nr\n</think>\n\n<tool_call>x</tool_call><|im_end|>');
    assert.equal(tok.decode([]), '');
    // The NFC normalizer composes e + U+0301 before BPE.
    assert.equal(tok.decode(tok.encode('e\u0301')), '\u00e9');
  });

  test('vocabulary, special ids, eos/bos and chat template from tokenizer_config', () => {
    assert.equal(tok.vocabSize, 151669); // 151,643 BPE + 26 added
    assert.equal(tok.specialIds.size, 14);
    for (let id = 151643; id <= 151656; id++) assert.ok(tok.specialIds.has(id), `special ${id}`);
    assert.ok(!tok.specialIds.has(151667), '<think> is not special');
    assert.ok(!tok.specialIds.has(151657), '<tool_call> is not special');
    assert.equal(tok.eosToken, '<|im_end|>');
    assert.equal(tok.eosTokenId, 151645);
    assert.equal(tok.bosToken, undefined);
    assert.equal(tok.chatTemplate, asset('qwen3/chat_template.jinja'));
    assert.equal(tok.idToToken(151667), '<think>');
    assert.equal(tok.tokenToId('<|endoftext|>'), 151643);
  });

  test('bad input names the problem', () => {
    assert.throws(() => tok.decode([151669]), /151669 is not in the vocabulary/);
    assert.throws(() => tok.decode([1.5]), RangeError);
    assert.throws(() => loadTokenizer('{not json'), /tokenizer\.json: not valid JSON/);
    assert.throws(() => loadTokenizer({}), /no "model"/);
  });

  test('Qwen3.5 added-token table and pre-tokenizer regex', () => {
    // No Qwen3.5 tokenizer.json offline: take the Qwen3 BPE, drop its added tokens and let tokenizer_config's
    // added_tokens_decoder (248044–248076) and the Qwen3.5 pre-tokenization regex (\p{M}) stand in.
    const json = JSON.parse(qwen3Json);
    const config = JSON.parse(asset('qwen35/tokenizer_config.json'));
    json.added_tokens = [];
    json.pre_tokenizer.pretokenizers[0].pattern.Regex = config.pretokenize_regex;
    const t35 = loadTokenizer(json, config);
    assert.equal(t35.vocabSize, 248077); // like transformers' len(tokenizer): audio/TTS ids exist only in the config
    assert.equal(t35.eosTokenId, 248046);
    assert.equal(t35.specialIds.size, 21);
    assert.ok(!t35.specialIds.has(248068));
    assert.equal(t35.chatTemplate, TEMPLATE);
    const ids = t35.encode('<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n<tool_call>');
    assert.deepEqual(ids.filter((id) => id >= 248044), [248045, 248046, 248045, 248068, 248069, 248058]);
    for (const s of ['नमस्ते दुनिया', 'naïve café', 'x=12345']) assert.equal(t35.decode(t35.encode(s)), s);
    const small = loadTokenizer(json, JSON.parse(asset('qwen35/tokenizer_config.small-models.json')));
    assert.equal(small.chatTemplate, SMALL);
  });
});

const TOOLS_PREAMBLE =
  '<|im_start|>system\n# Tools\n\nYou have access to the following functions:\n\n<tools>';
const TOOLS_INSTRUCTIONS =
  '\n</tools>\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n' +
  '<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n' +
  '<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n' +
  '</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n' +
  '- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested within ' +
  '<tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n' +
  '- You may provide optional reasoning for your function call in natural language BEFORE the function call, but NOT ' +
  'after\n- If there is no function call available, answer the question like normal with your current knowledge and ' +
  'do not tell the user about function calls\n</IMPORTANT>';

const weatherTool: ToolDef = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather — météo',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer' } },
      required: ['city'],
    },
  },
};

describe('renderChat (official Qwen3.5 templates)', () => {
  const sysUser: ChatMessage[] = [
    { role: 'system', content: 'You are helpful.' },
    { role: 'user', content: 'Hi there' },
  ];
  const base = '<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n';

  test('generation prompt: ≥4B template opens <think> unless enableThinking is false', () => {
    assert.equal(renderChat(TEMPLATE, sysUser), base + '<think>\n');
    assert.equal(renderChat(TEMPLATE, sysUser, { enableThinking: true }), base + '<think>\n');
    assert.equal(renderChat(TEMPLATE, sysUser, { enableThinking: false }), base + '<think>\n\n</think>\n\n');
  });

  test('generation prompt: small-models template closes <think> unless enableThinking is true', () => {
    assert.equal(renderChat(SMALL, sysUser), base + '<think>\n\n</think>\n\n');
    assert.equal(renderChat(SMALL, sysUser, { enableThinking: false }), base + '<think>\n\n</think>\n\n');
    assert.equal(renderChat(SMALL, sysUser, { enableThinking: true }), base + '<think>\n');
  });

  test('no generation prompt; content trimmed; text parts joined', () => {
    assert.equal(
      renderChat(TEMPLATE, [{ role: 'user', content: '  padded \n' }], { addGenerationPrompt: false }),
      '<|im_start|>user\npadded<|im_end|>\n',
    );
    const parts: ChatMessage[] = [{ role: 'user', content: [{ type: 'text', text: 'one ' }, { type: 'text', text: 'two' }] }];
    assert.equal(renderChat(TEMPLATE, parts), '<|im_start|>user\none two<|im_end|>\n<|im_start|>assistant\n<think>\n');
  });

  test('raise_exception messages come through as ChatTemplateError', () => {
    const cases: Array<[ChatMessage[], string]> = [
      [[], 'No messages provided.'],
      [[{ role: 'system', content: 'only a system message' }], 'No user query found in messages.'],
      [[{ role: 'user', content: 'Q' }, { role: 'system', content: 'late' }], 'System message must be at the beginning.'],
      [[{ role: 'user', content: 'Q' }, { role: 'critic', content: 'x' } as unknown as ChatMessage], 'Unexpected message role.'],
      // A user turn that is only a tool response is not a query.
      [[{ role: 'user', content: '<tool_response>\nx\n</tool_response>' }], 'No user query found in messages.'],
    ];
    for (const template of [TEMPLATE, SMALL]) {
      for (const [messages, message] of cases) {
        assert.throws(() => renderChat(template, messages), (e: unknown) => {
          assert.ok(e instanceof ChatTemplateError);
          assert.equal(e.message, message);
          return true;
        });
      }
    }
  });

  test('tools: # Tools section with the JSON schemas, system prompt appended after', () => {
    const toolJson =
      '{"type": "function", "function": {"name": "get_weather", "description": "Current weather — météo", ' +
      '"parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, ' +
      '"required": ["city"]}}}';
    const tail = '<|im_start|>user\nWeather in Paris?<|im_end|>\n<|im_start|>assistant\n<think>\n';
    assert.equal(
      renderChat(TEMPLATE, [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Weather in Paris?' }], {
        tools: [weatherTool],
      }),
      TOOLS_PREAMBLE + '\n' + toolJson + TOOLS_INSTRUCTIONS + '\n\nBe brief.<|im_end|>\n' + tail,
    );
    // Without a system message the tools turn still opens the prompt; two tools go one per line.
    const second: ToolDef = { type: 'function', function: { name: 'now', parameters: { type: 'object', properties: {} } } };
    assert.equal(
      renderChat(TEMPLATE, [{ role: 'user', content: 'Weather in Paris?' }], { tools: [weatherTool, second] }),
      TOOLS_PREAMBLE + '\n' + toolJson +
        '\n{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}' +
        TOOLS_INSTRUCTIONS + '<|im_end|>\n' + tail,
    );
  });

  test('assistant tool calls (OpenAI string arguments) and tool responses', () => {
    const messages: ChatMessage[] = [
      { role: 'user', content: 'Weather?' },
      {
        role: 'assistant',
        content: 'Let me check.',
        reasoning_content: 'Need the tool.',
        tool_calls: [
          {
            id: 'call_1',
            type: 'function',
            function: {
              name: 'get_weather',
              arguments: '{"city": "Paris", "days": 2, "opts": {"unit": "C", "hours": [6, 12]}, "flag": true, "x": null}',
            },
          },
          { id: 'call_2', type: 'function', function: { name: 'now', arguments: {} } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: '{"temp": 21}' },
      { role: 'tool', tool_call_id: 'call_2', content: '12:00' },
    ];
    const expected =
      '<|im_start|>user\nWeather?<|im_end|>\n' +
      // After the last user query, so its reasoning is kept.
      '<|im_start|>assistant\n<think>\nNeed the tool.\n</think>\n\nLet me check.' +
      '\n\n<tool_call>\n<function=get_weather>\n' +
      '<parameter=city>\nParis\n</parameter>\n<parameter=days>\n2\n</parameter>\n' +
      '<parameter=opts>\n{"unit": "C", "hours": [6, 12]}\n</parameter>\n' +
      // transformers prints Python's str(True) / str(None) for scalar arguments.
      '<parameter=flag>\nTrue\n</parameter>\n<parameter=x>\nNone\n</parameter>\n' +
      '</function>\n</tool_call>' +
      '\n<tool_call>\n<function=now>\n</function>\n</tool_call><|im_end|>\n' +
      // Consecutive tool messages share one user turn.
      '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response>\n<tool_response>\n12:00\n</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\n<think>\n';
    assert.equal(renderChat(TEMPLATE, messages), expected);
    // Empty content: the first call follows the think block directly.
    const bare: ChatMessage[] = [
      { role: 'user', content: 'Q' },
      { role: 'assistant', content: null, tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{"a": "x\\ny"}' } }] },
    ];
    assert.equal(
      renderChat(SMALL, bare, { addGenerationPrompt: false }),
      '<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n' +
        '<tool_call>\n<function=f>\n<parameter=a>\nx\ny\n</parameter>\n</function>\n</tool_call><|im_end|>\n',
    );
    const bad: ChatMessage[] = [
      { role: 'user', content: 'Q' },
      { role: 'assistant', content: '', tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{oops' } }] },
    ];
    assert.throws(() => renderChat(TEMPLATE, bad), /tool call "f": arguments are not valid JSON/);
  });

  test('historical reasoning: kept only after the last user query', () => {
    const messages: ChatMessage[] = [
      { role: 'user', content: 'Q1' },
      { role: 'assistant', content: 'A1', reasoning_content: 'R1' },
      { role: 'user', content: 'Q2' },
      { role: 'assistant', content: '<think>\nR2\n</think>\n\nA2' }, // reasoning inline in content is split off too
      { role: 'user', content: 'Q3' },
    ];
    assert.equal(
      renderChat(TEMPLATE, messages),
      '<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n' +
        '<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\nA2<|im_end|>\n' +
        '<|im_start|>user\nQ3<|im_end|>\n<|im_start|>assistant\n<think>\n',
    );
    // The final turn (after Q3) keeps its reasoning; one without any gets an empty think block.
    assert.equal(
      renderChat(TEMPLATE, [...messages, { role: 'assistant', content: '<think>\nR3\n</think>\n\nA3' }], { addGenerationPrompt: false }),
      renderChat(TEMPLATE, messages, { addGenerationPrompt: false }) + '<|im_start|>assistant\n<think>\nR3\n</think>\n\nA3<|im_end|>\n',
    );
    assert.equal(
      renderChat(SMALL, [{ role: 'user', content: 'Q' }, { role: 'assistant', content: 'A' }], { addGenerationPrompt: false }),
      '<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA<|im_end|>\n',
    );
    // Tool round trips do not count as user queries: both assistant turns of one agent step keep their reasoning.
    const agent: ChatMessage[] = [
      { role: 'user', content: 'Q' },
      { role: 'assistant', content: '', reasoning_content: 'Ra', tool_calls: [{ type: 'function', function: { name: 'f', arguments: '{}' } }] },
      { role: 'tool', content: 'r' },
      { role: 'assistant', content: 'done', reasoning_content: 'Rb' },
    ];
    assert.equal(
      renderChat(TEMPLATE, agent, { addGenerationPrompt: false }),
      '<|im_start|>user\nQ<|im_end|>\n' +
        '<|im_start|>assistant\n<think>\nRa\n</think>\n\n<tool_call>\n<function=f>\n</function>\n</tool_call><|im_end|>\n' +
        '<|im_start|>user\n<tool_response>\nr\n</tool_response><|im_end|>\n' +
        '<|im_start|>assistant\n<think>\nRb\n</think>\n\ndone<|im_end|>\n',
    );
  });

  test('extra variables, bos/eos, promptOpensThinking', () => {
    assert.equal(renderChat('{{ bos_token }}{{ greeting }}{{ eos_token }}', [], { extra: { greeting: 'hi' }, bosToken: '<s>', eosToken: '</s>' }), '<s>hi</s>');
    assert.throws(() => renderChat('{% if %}', []), ChatTemplateError);
    assert.equal(promptOpensThinking(base + '<think>\n'), true);
    assert.equal(promptOpensThinking(base + '<think>\n\n</think>\n\n'), false);
    assert.equal(promptOpensThinking(base), false);
    assert.equal(promptOpensThinking(renderChat(SMALL, sysUser)), false);
    assert.equal(promptOpensThinking(renderChat(TEMPLATE, sysUser)), true);
  });
});

describe('incremental detokenizer', () => {
  // Each of these has characters spread over several byte-level tokens (each alone decodes to U+FFFD).
  const texts = [
    '👩‍👩‍👧‍👦 family',
    '🦩 flamingo 🫠',
    '龘靐齉',
    'naïve café — 日本語のテキスト 😀 ok',
    'नमस्ते दुनिया',
    '𝔘𝔫𝔦𝔠𝔬𝔡𝔢 🇯🇵 end',
  ];

  test('the test strings really split characters across tokens', () => {
    const split = texts.filter((s) => tok.encode(s).some((id) => tok.decode([id]).includes('\uFFFD')));
    assert.ok(split.length >= 5, `${split.length} of ${texts.length} strings split a character`);
  });

  for (const skipSpecialTokens of [false, true]) {
    test(`pieces concatenate to decode(all) and never hold U+FFFD (skipSpecialTokens=${skipSpecialTokens})`, () => {
      for (const text of [...texts, texts.join('<|im_end|>\n<|im_start|>assistant\n<think>\n')]) {
        const ids = tok.encode(text);
        const detok = createDetokenizer(tok, { skipSpecialTokens });
        const pieces = ids.map((id) => detok.push(id));
        pieces.push(detok.flush());
        for (const p of pieces) assert.ok(!p.includes('\uFFFD'), `${JSON.stringify(p)} in ${JSON.stringify(text)}`);
        assert.equal(pieces.join(''), tok.decode(ids, { skipSpecialTokens }));
        if (!skipSpecialTokens) assert.equal(pieces.join(''), text);
      }
    });
  }

  test('text appears as soon as a character completes; flush releases a truncated one', () => {
    const ids = tok.encode('🦩 flamingo');
    const detok = createDetokenizer(tok);
    assert.equal(detok.push(ids[0]), ''); // first bytes of 🦩
    assert.equal(detok.push(ids[1]), '🦩');
    assert.equal(detok.push(ids[2]), ' flaming');
    assert.equal(detok.flush(), '');
    const cut = createDetokenizer(tok);
    assert.equal(cut.push(ids[0]), '');
    assert.match(cut.flush(), /\uFFFD/); // the stream really ended mid-character
    assert.equal(cut.push(tok.encode('ok')[0]), 'ok');
  });
});

// Feeds `text` in the given pieces, checks the deltas agree with end(), returns end().
function feed(pieces: string[], opts: OutputParserOptions): ParsedOutput {
  const parser = createOutputParser({ makeId: counterIds(), ...opts });
  const deltas: Delta[] = [];
  for (const piece of pieces) deltas.push(...parser.push(piece));
  const result = parser.end();
  deltas.push(...result.deltas);
  for (const kind of ['reasoning', 'content'] as const) {
    const joined = deltas.filter((d) => d.kind === kind).map((d) => d.text).join('');
    assert.equal(joined, kind === 'content' ? result.content : result.reasoning_content, `${kind} deltas vs end()`);
  }
  return result;
}

function counterIds(): () => string {
  let n = 0;
  return () => `call_${n++}`;
}

interface Expected {
  content: string;
  reasoning: string;
  calls?: Array<[string, Record<string, unknown>]>;
}

// Whole, every split into two pieces, every split into three (short texts), and one character at a time.
function checkAllSplits(text: string, opts: OutputParserOptions, want: Expected): void {
  const splits: string[][] = [[text], [...text]];
  for (let i = 0; i <= text.length; i++) splits.push([text.slice(0, i), text.slice(i)]);
  if (text.length <= 90) {
    for (let i = 1; i < text.length; i++) {
      for (let j = i + 1; j < text.length; j++) splits.push([text.slice(0, i), text.slice(i, j), text.slice(j)]);
    }
  }
  for (const pieces of splits) {
    const got = feed(pieces, opts);
    const where = `split ${JSON.stringify(pieces.map((p) => p.length))}`;
    assert.equal(got.content, want.content, where);
    assert.equal(got.reasoning_content, want.reasoning, where);
    const calls = got.tool_calls.map((c) => {
      assert.equal(c.type, 'function');
      return [c.function.name, JSON.parse(c.function.arguments)];
    });
    assert.deepEqual(calls, want.calls ?? [], where);
    assert.deepEqual(got.tool_calls.map((c) => c.id), calls.map((_, i) => `call_${i}`), where);
  }
}

describe('output parser', () => {
  test('reasoning then content after </think> (prompt opened <think>)', () => {
    checkAllSplits('Let me think.\nStep 2 < 3.\n</think>\n\nThe answer is 4.', { thinking: true }, {
      reasoning: 'Let me think.\nStep 2 < 3.',
      content: 'The answer is 4.',
    });
  });

  test('plain content keeps angle brackets that are not tags', () => {
    checkAllSplits('a < b, x<y, <thinking> is not a tag, <tool_calls> neither </think> <tool', { thinking: false }, {
      reasoning: '',
      content: 'a < b, x<y, <thinking> is not a tag, <tool_calls> neither </think> <tool',
    });
  });

  test('a <think> block the model opens itself', () => {
    checkAllSplits('<think>\nhmm, 2+2\n</think>\n\nHi!', { thinking: false }, { reasoning: 'hmm, 2+2', content: 'Hi!' });
    // With the prompt already inside <think>, a repeated <think> is dropped.
    checkAllSplits('<think>\nhmm\n</think>\n\nHi!', { thinking: true }, { reasoning: 'hmm', content: 'Hi!' });
  });

  test('reasoning cut off by the token limit stays reasoning; tool tags inside reasoning are text', () => {
    checkAllSplits('I could use <tool_call> here\nbut', { thinking: true }, { reasoning: 'I could use <tool_call> here\nbut', content: '' });
  });

  test('tool call after reasoning and content', () => {
    const output =
      'The user wants weather.\n</think>\n\nChecking.\n\n<tool_call>\n<function=get_weather>\n' +
      '<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n' +
      '<parameter=opts>\n{"unit": "C", "hours": [6, 12]}\n</parameter>\n' +
      '<parameter=note>\nline one\nline two\n</parameter>\n</function>\n</tool_call>';
    checkAllSplits(output, { thinking: true }, {
      reasoning: 'The user wants weather.',
      content: 'Checking.',
      calls: [['get_weather', { city: 'Paris', days: 3, opts: { unit: 'C', hours: [6, 12] }, note: 'line one\nline two' }]],
    });
  });

  test('several tool calls, value conversion, no content', () => {
    const output =
      '<tool_call>\n<function=f>\n<parameter=flag>\ntrue\n</parameter>\n<parameter=none>\nnull\n</parameter>\n' +
      '<parameter=neg>\n-1.5e3\n</parameter>\n<parameter=word>\nTrue\n</parameter>\n<parameter=spaced>\n  x \n</parameter>\n' +
      '<parameter=blank>\n\n\nmid\n\n\n</parameter>\n<parameter=quoted>\n"q"\n</parameter>\n</function>\n</tool_call>\n' +
      '<tool_call>\n<function=g>\n</function>\n</tool_call>';
    checkAllSplits(output, { thinking: false }, {
      reasoning: '',
      content: '',
      calls: [
        ['f', { flag: true, none: null, neg: -1500, word: 'True', spaced: '  x ', blank: '\n\nmid\n\n', quoted: 'q' }],
        ['g', {}],
      ],
    });
  });

  test('declared parameter types: strings stay strings, booleans accept True/False', () => {
    const tools: ToolDef[] = [{
      type: 'function',
      function: {
        name: 'lookup',
        parameters: { type: 'object', properties: { zip: { type: 'string' }, n: { type: 'integer' }, exact: { type: 'boolean' } } },
      },
    }];
    const output =
      '<tool_call>\n<function=lookup>\n<parameter=zip>\n12345\n</parameter>\n<parameter=n>\n7\n</parameter>\n' +
      '<parameter=exact>\nFalse\n</parameter>\n</function>\n</tool_call>';
    const args = (tools?: ToolDef[]) => JSON.parse(feed([output], { thinking: false, tools }).tool_calls[0].function.arguments);
    assert.deepEqual(args(tools), { zip: '12345', n: 7, exact: false });
    assert.deepEqual(args(), { zip: 12345, n: 7, exact: 'False' });
  });

  test('lenient: a parameter closed by the next one or by </function>', () => {
    checkAllSplits('<tool_call>\n<function=f>\n<parameter=a>\n1\n<parameter=b>\ntwo\n</function>\n</tool_call>', { thinking: false }, {
      reasoning: '',
      content: '',
      calls: [['f', { a: 1, b: 'two' }]],
    });
  });

  test('unreadable or unfinished tool calls come back as content', () => {
    checkAllSplits('Hi <tool_call>garbage</tool_call> end', { thinking: false }, {
      reasoning: '',
      content: 'Hi <tool_call>garbage</tool_call> end',
    });
    // Cut off before </function>: never returned as a call.
    checkAllSplits('<tool_call>\n<function=f>\n<parameter=a>\n1', { thinking: false }, {
      reasoning: '',
      content: '<tool_call>\n<function=f>\n<parameter=a>\n1',
    });
    // </function> arrived, only </tool_call> is missing: the call is complete.
    checkAllSplits('<tool_call>\n<function=f>\n<parameter=a>\n1\n</parameter>\n</function>\n', { thinking: false }, {
      reasoning: '',
      content: '',
      calls: [['f', { a: 1 }]],
    });
  });

  test('default ids, push after end', () => {
    const parser = createOutputParser({ thinking: false });
    parser.push('<tool_call>\n<function=f>\n</function>\n</tool_call>');
    const { tool_calls } = parser.end();
    assert.match(tool_calls[0].id, /^call_[A-Za-z0-9]{24}$/);
    assert.throws(() => parser.push('x'), /after end/);
  });

  test('parsed output re-renders to the text the model wrote', () => {
    const output =
      'Need weather.\n</think>\n\nChecking.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n' +
      '<parameter=opts>\n{"unit": "C"}\n</parameter>\n</function>\n</tool_call>';
    const parsed = feed([output], { thinking: true });
    const user: ChatMessage = { role: 'user', content: 'Weather?' };
    const rendered = renderChat(TEMPLATE, [
      user,
      { role: 'assistant', content: parsed.content, reasoning_content: parsed.reasoning_content, tool_calls: parsed.tool_calls },
    ], { addGenerationPrompt: false });
    assert.equal(rendered, renderChat(TEMPLATE, [user]) + output + '<|im_end|>\n');
  });
});
