export { loadTokenizer } from './tokenizer.ts';
export type { Tokenizer, DecodeOptions } from './tokenizer.ts';
export { renderChat, promptOpensThinking, ChatTemplateError } from './template.ts';
export type {
  ChatMessage,
  SystemMessage,
  UserMessage,
  AssistantMessage,
  ToolMessage,
  MessageContent,
  TextPart,
  ToolCall,
  ToolDef,
  RenderOptions,
} from './template.ts';
export { createDetokenizer } from './detokenizer.ts';
export type { Detokenizer } from './detokenizer.ts';
export { createOutputParser } from './parse.ts';
export type { Delta, OutputParser, OutputParserOptions, ParsedOutput, ParsedToolCall } from './parse.ts';
