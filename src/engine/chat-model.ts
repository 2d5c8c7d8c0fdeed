// Everything a chat needs from one checkpoint: the engine, the tokenizer, the chat template and the generation
// defaults, read through the same ByteSource (folder, URL, shard cache or files the user picked).
import { isNotFound, type ByteSource } from '../format/safetensors.ts';
import type { GpuContext } from '../gpu/context.ts';
import { loadTokenizer, type Tokenizer } from '../text/index.ts';
import { createChatSession, generationDefaults, type ChatSession } from './chat.ts';
import { loadEngine, type Engine, type EngineOptions } from './engine.ts';

export interface ChatModel { engine: Engine; tokenizer: Tokenizer; session: ChatSession; template: string }

async function readText(src: ByteSource, file: string): Promise<string | undefined> {
  try {
    const size = await src.size(file);
    return new TextDecoder().decode(await src.read(file, 0, size));
  } catch (e) {
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

export async function openChatModel(
  ctx: GpuContext, src: ByteSource, modelId: string, opts: EngineOptions = {},
): Promise<ChatModel> {
  const tokenizerJson = await readText(src, 'tokenizer.json');
  if (tokenizerJson === undefined) throw new Error(`${src.describe()}: no tokenizer.json; a chat needs the model's tokenizer`);
  const tokenizerConfig = await readText(src, 'tokenizer_config.json');
  const tokenizer = loadTokenizer(tokenizerJson, tokenizerConfig);
  const template = (await readText(src, 'chat_template.jinja')) ?? tokenizer.chatTemplate;
  if (!template) throw new Error(`${src.describe()}: no chat template (chat_template.jinja or tokenizer_config.json's chat_template)`);
  const generationText = await readText(src, 'generation_config.json');
  let generationConfig: Record<string, unknown> | undefined;
  try {
    generationConfig = generationText ? JSON.parse(generationText) : undefined;
  } catch (e) {
    throw new Error(`generation_config.json: not valid JSON (${(e as Error).message})`);
  }
  const engine = await loadEngine(ctx, src, opts);
  try {
    const generation = generationDefaults(generationConfig, engine.config.eosTokenIds);
    if (generation.eosTokenIds.length === 0 && tokenizer.eosTokenId !== undefined) generation.eosTokenIds.push(tokenizer.eosTokenId);
    const session = createChatSession(engine, tokenizer, { modelId, template, generation });
    return { engine, tokenizer, session, template };
  } catch (e) {
    engine.dispose();
    throw e;
  }
}
