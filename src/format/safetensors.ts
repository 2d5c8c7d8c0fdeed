// Safetensors container (spec §2.3): u64 LE header length N, N bytes of JSON, then the raw data.
// Only the header is read here; tensor bytes are fetched later through the same ByteSource, so nothing forces a
// whole shard into memory.

import { DTYPE_BYTES, isDType, type DType } from './dtype.ts';

/**
 * Random access to the files of one checkpoint (a local folder, an HTTP base URL, a browser cache, ...).
 * `file` is a name relative to the checkpoint root. Implementations reject a missing file with an error whose
 * `notFound` property is true, so callers can tell "absent" from "broken".
 */
export interface ByteSource {
  describe(): string;
  size(file: string): Promise<number>;
  read(file: string, offset: number, length: number): Promise<Uint8Array>;
}

export class FormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FormatError';
  }
}

/** The error a ByteSource throws for a file that does not exist. */
export class FileNotFoundError extends Error {
  readonly notFound = true;
  constructor(readonly file: string, where: string) {
    super(`${file}: not found in ${where}`);
    this.name = 'FileNotFoundError';
  }
}

export function isNotFound(e: unknown): boolean {
  return !!e && typeof e === 'object' && (e as { notFound?: unknown }).notFound === true;
}

export interface SafetensorsEntry {
  dtype: DType;
  shape: number[];
  /** Absolute byte offsets in the file (header included), end exclusive. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** Absolute offset of the first data byte (8 + N). */
  dataStart: number;
  tensors: Map<string, SafetensorsEntry>;
  metadata: Record<string, string>;
}

/** Headers beyond this are certainly corrupt; real shards have headers of a few hundred KB at most. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Nesting shown by showValue; deeper arrays and objects print as "[…]" / "{…}". */
const MAX_SHOWN_DEPTH = 3;

/**
 * A value found in a JSON file, written for an error message: JSON-like, at most `maxLen` characters and
 * MAX_SHOWN_DEPTH levels deep. JSON.stringify is no good here: a hostile value nested 200,000 arrays deep overflows
 * its stack (the error about the value would itself crash), a megabyte string floods the message, and a literal
 * beyond the float64 range such as 1e400 (which JSON.parse reads as Infinity) comes out as "null".
 */
export function showValue(v: unknown, maxLen = 80): string {
  if (v === undefined) return 'nothing';
  const s = renderValue(v, 0, maxLen + 1);
  return s.length > maxLen ? `${s.slice(0, maxLen)}…` : s;
}

/** `budget`: past this many characters the rest is cut anyway, so stop building it (bounded work on huge values). */
function renderValue(v: unknown, depth: number, budget: number): string {
  if (typeof v === 'string') return JSON.stringify(v.length > budget ? v.slice(0, budget) : v);
  if (typeof v === 'number') return Number.isFinite(v) ? JSON.stringify(v) : String(v);
  if (v === null || typeof v !== 'object') return String(v);
  const isArray = Array.isArray(v);
  const [open, close] = isArray ? ['[', ']'] : ['{', '}'];
  if (depth >= MAX_SHOWN_DEPTH) return `${open}…${close}`;
  let out = open;
  let first = true;
  for (const key of isArray ? v.keys() : Object.keys(v)) {
    if (out.length > budget) break;
    const item = (v as Record<string | number, unknown>)[key];
    const shown = renderValue(item, depth + 1, budget - out.length);
    out += `${first ? '' : ','}${isArray ? '' : `${renderValue(key, depth + 1, budget - out.length)}:`}${shown}`;
    first = false;
  }
  return out + close;
}

/**
 * The first key that occurs twice in one object of a JSON text, with the path of that object, or null.
 * JSON.parse silently keeps the last of two equal keys, so a header naming a tensor twice would otherwise read one
 * of them and drop the other without a word. `text` must already be valid JSON (JSON.parse it first): the scan only
 * tracks strings and nesting. Iterative, so a deeply nested hostile header cannot overflow the stack.
 */
export function findDuplicateKey(text: string): { key: string; path: string[] } | null {
  interface Frame { keys: Set<string> | null; name: string }
  const stack: Frame[] = [];
  let pendingKey: string | null = null; // the key whose value comes next, inside the innermost object
  let i = 0;
  const n = text.length;
  const readString = (): string => {
    const start = i; // at the opening quote
    let escaped = false;
    for (i++; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x5c) { escaped = true; i++; continue; } // backslash: skip the escaped character
      if (c === 0x22) break;
    }
    i++;
    const raw = text.slice(start, i);
    return escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
  };
  while (i < n) {
    const c = text[i];
    if (c === '{' || c === '[') {
      stack.push({ keys: c === '{' ? new Set() : null, name: pendingKey ?? (stack.length ? '[]' : '') });
      pendingKey = null;
      i++;
    } else if (c === '}' || c === ']') {
      stack.pop();
      i++;
    } else if (c === '"') {
      const str = readString();
      const top = stack[stack.length - 1];
      let j = i;
      while (j < n && (text[j] === ' ' || text[j] === '\t' || text[j] === '\n' || text[j] === '\r')) j++;
      if (top?.keys && text[j] === ':') {
        if (top.keys.has(str)) return { key: str, path: stack.slice(1).map((f) => f.name) };
        top.keys.add(str);
        pendingKey = str;
      } else {
        pendingKey = null;
      }
    } else {
      if (c === ',') pendingKey = null;
      i++;
    }
  }
  return null;
}

/** Parses and checks the header of one safetensors file; every error names the file (and tensor). */
export async function parseSafetensorsHeader(file: string, src: ByteSource): Promise<SafetensorsHeader> {
  const fileSize = await src.size(file);
  if (fileSize < 8) {
    throw new FormatError(`${file}: file is ${fileSize} bytes, shorter than the 8-byte safetensors header length field`);
  }
  const lenBytes = await src.read(file, 0, 8);
  const dv = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
  // Two 32-bit halves rather than BigInt: any length that does not fit 53 bits is absurd anyway.
  const headerLen = dv.getUint32(0, true) + dv.getUint32(4, true) * 2 ** 32;
  if (headerLen > MAX_HEADER_BYTES) {
    throw new FormatError(`${file}: header length field says ${headerLen} bytes, expected at most ${MAX_HEADER_BYTES} (not a safetensors file, or corrupt)`);
  }
  if (8 + headerLen > fileSize) {
    throw new FormatError(`${file}: header length field says ${headerLen} bytes but the file has only ${fileSize - 8} bytes after it (truncated file?)`);
  }
  const headerBytes = await src.read(file, 8, headerLen);
  let text: string;
  let json: unknown;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
    json = JSON.parse(text);
  } catch (e) {
    throw new FormatError(`${file}: header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) {
    throw new FormatError(`${file}: header must be a JSON object, found ${json === null ? 'null' : Array.isArray(json) ? 'an array' : typeof json}`);
  }
  const dup = findDuplicateKey(text);
  if (dup) {
    const where = dup.path.length === 0 ? 'the header' : dup.path[0] === '__metadata__' ? '"__metadata__"' : `tensor "${dup.path[0]}"`;
    throw new FormatError(`${file}: key "${dup.key}" appears twice in ${where} (expected each ${dup.path.length === 0 ? 'tensor name' : 'key'} once; a JSON reader would silently keep only the last)`);
  }
  const dataStart = 8 + headerLen;
  const dataLen = fileSize - dataStart;
  const tensors = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      metadata = parseMetadata(file, raw);
      continue;
    }
    tensors.set(name, parseEntry(file, name, raw, dataStart, dataLen));
  }
  checkTiling(file, tensors, dataStart, fileSize);
  return { file, fileSize, dataStart, tensors, metadata };
}

function parseMetadata(file: string, raw: unknown): Record<string, string> {
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new FormatError(`${file}: "__metadata__" must be an object of strings, found ${showValue(raw)}`);
  }
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') {
      throw new FormatError(`${file}: "__metadata__" must be an object of strings, found ${showValue(v)} for ${showValue(k)}`);
    }
  }
  return raw as Record<string, string>;
}

function parseEntry(file: string, name: string, raw: unknown, dataStart: number, dataLen: number): SafetensorsEntry {
  const where = `${file}: tensor "${name}"`;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new FormatError(`${where}: expected {dtype, shape, data_offsets}, found ${showValue(raw)}`);
  }
  const { dtype, shape, data_offsets: offs } = raw as Record<string, unknown>;
  if (!isDType(dtype)) {
    throw new FormatError(`${where}: unknown dtype ${showValue(dtype)} (expected one of ${Object.keys(DTYPE_BYTES).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new FormatError(`${where}: shape must be an array of non-negative integers, found ${showValue(shape)}`);
  }
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new FormatError(`${where}: data_offsets must be [begin, end] with non-negative integers, found ${showValue(offs)}`);
  }
  const [b, e] = offs as number[];
  if (b > e) throw new FormatError(`${where}: data_offsets [${b}, ${e}] has begin after end`);
  if (e > dataLen) {
    throw new FormatError(`${where}: data_offsets [${b}, ${e}] run past the end of the data section (${dataLen} bytes; truncated file?)`);
  }
  const need = shapeSize(shape) * DTYPE_BYTES[dtype];
  // Beyond 2^53 the product is no longer exact; it is then also far beyond any file, so say so rather than compare.
  if (!Number.isSafeInteger(need)) {
    throw new FormatError(`${where}: ${dtype} ${fmtShape(shape)} would need ${need} bytes, more than any file can hold (data_offsets [${b}, ${e}])`);
  }
  if (e - b !== need) {
    throw new FormatError(`${where}: data_offsets [${b}, ${e}] cover ${e - b} bytes but ${dtype} ${fmtShape(shape)} needs ${need}`);
  }
  return { dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + e };
}

/**
 * The tensors, in offset order, must tile the data section exactly: the first starts at 0, each starts where the
 * previous one ends, the last ends at the end of the file (the reference Rust reader's rule). Otherwise two tensors
 * could share bytes, or bytes could hide between them.
 */
function checkTiling(file: string, tensors: Map<string, SafetensorsEntry>, dataStart: number, fileSize: number): void {
  // Zero-size tensors sort before a tensor starting at the same offset, so they never count as an overlap.
  const ordered = [...tensors].sort(([, a], [, b]) => a.begin - b.begin || a.end - b.end);
  const rel = (x: number) => x - dataStart;
  const span = (t: SafetensorsEntry) => `[${rel(t.begin)}, ${rel(t.end)}]`;
  let prev: [string, SafetensorsEntry] | null = null;
  for (const [name, t] of ordered) {
    const expected = prev ? prev[1].end : dataStart;
    const after = prev ? `where tensor "${prev[0]}" ${span(prev[1])} ends` : 'the start of the data section';
    if (t.begin < expected) {
      throw new FormatError(`${file}: tensor "${name}": data_offsets ${span(t)} overlap tensor "${prev![0]}" ${span(prev![1])} (expected it to start at ${rel(expected)}, ${after})`);
    }
    if (t.begin > expected) {
      throw new FormatError(`${file}: tensor "${name}": data_offsets ${span(t)} leave ${t.begin - expected} unused bytes before it (expected it to start at ${rel(expected)}, ${after})`);
    }
    prev = [name, t];
  }
  const end = prev ? prev[1].end : dataStart;
  if (end !== fileSize) {
    throw new FormatError(`${file}: safetensors header says the data ends at byte ${end} but the file has ${fileSize} bytes (${fileSize - end} bytes after ${prev ? `the last tensor "${prev[0]}"` : 'the header'} belong to no tensor)`);
  }
}
