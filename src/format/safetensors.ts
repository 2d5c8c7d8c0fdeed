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
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new FormatError(`${file}: header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) {
    throw new FormatError(`${file}: header must be a JSON object, found ${Array.isArray(json) ? 'an array' : typeof json}`);
  }
  const dataStart = 8 + headerLen;
  const dataLen = fileSize - dataStart;
  const tensors = new Map<string, SafetensorsEntry>();
  let metadata: Record<string, string> = {};
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
        throw new FormatError(`${file}: "__metadata__" must be an object of strings, found ${JSON.stringify(raw)}`);
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    tensors.set(name, parseEntry(file, name, raw, dataStart, dataLen));
  }
  return { file, fileSize, dataStart, tensors, metadata };
}

function parseEntry(file: string, name: string, raw: unknown, dataStart: number, dataLen: number): SafetensorsEntry {
  const where = `${file}: tensor "${name}"`;
  if (!raw || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new FormatError(`${where}: expected {dtype, shape, data_offsets}, found ${JSON.stringify(raw)}`);
  }
  const { dtype, shape, data_offsets: offs } = raw as Record<string, unknown>;
  if (!isDType(dtype)) {
    throw new FormatError(`${where}: unknown dtype ${JSON.stringify(dtype)} (expected one of ${Object.keys(DTYPE_BYTES).join(', ')})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new FormatError(`${where}: shape must be an array of non-negative integers, found ${JSON.stringify(shape)}`);
  }
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((o) => Number.isSafeInteger(o) && o >= 0)) {
    throw new FormatError(`${where}: data_offsets must be [begin, end] with non-negative integers, found ${JSON.stringify(offs)}`);
  }
  const [b, e] = offs as number[];
  if (b > e) throw new FormatError(`${where}: data_offsets [${b}, ${e}] has begin after end`);
  if (e > dataLen) {
    throw new FormatError(`${where}: data_offsets [${b}, ${e}] run past the end of the data section (${dataLen} bytes; truncated file?)`);
  }
  const need = shapeSize(shape) * DTYPE_BYTES[dtype];
  if (e - b !== need) {
    throw new FormatError(`${where}: data_offsets [${b}, ${e}] cover ${e - b} bytes but ${dtype} ${fmtShape(shape)} needs ${need}`);
  }
  return { dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + e };
}

