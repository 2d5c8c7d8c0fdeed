// Where a model lives and which of its files the runtime needs. A model is named either by a Hugging Face repo
// id ("org/name", fetched through the hub's resolve endpoint) or by any http(s) base URL that serves the same
// file layout (a local static server, a mirror).

import { FormatError, isNotFound, type ByteSource } from '../format/safetensors.ts';
import { neededShards } from '../format/checkpoint.ts';

export interface ResolveOptions {
  /** Hub host for repo ids; default https://huggingface.co. */
  host?: string;
  /** Branch, tag or commit for repo ids; default main. */
  revision?: string;
}

export interface ResolvedModel {
  /** Cache key: the repo id (with "@revision" unless main), or the base URL. */
  id: string;
  baseUrl: string;
}

/** A file to download; sha256 (hex) when known from a listing, else it may come from response headers. */
export interface ModelFile {
  name: string;
  size: number;
  sha256?: string;
}

const INDEX_FILE = 'model.safetensors.index.json';
const SINGLE_FILE = 'model.safetensors';
// Hub repo names: letters, digits, '-', '_', '.'; no leading or trailing separator.
const REPO_PART = /^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$/;

function trimSlashes(url: string): string {
  return url.replace(/\/+$/, '');
}

export function resolveModel(model: string, opts: ResolveOptions = {}): ResolvedModel {
  const m = model.trim();
  if (/^https?:\/\//i.test(m)) {
    try {
      new URL(m);
    } catch {
      throw new Error(`"${model}" looks like a URL but does not parse as one`);
    }
    const base = trimSlashes(m);
    return { id: base, baseUrl: base };
  }
  const parts = m.split('/');
  if (parts.length !== 2 || !parts.every((p) => REPO_PART.test(p) && !p.includes('..'))) {
    throw new Error(`"${model}" is neither a Hugging Face repo id ("org/name", e.g. "mlx-community/Qwen3.5-0.8B-4bit") ` +
      'nor an http(s) base URL of a checkpoint folder');
  }
  const host = trimSlashes(opts.host ?? 'https://huggingface.co');
  const revision = opts.revision ?? 'main';
  if (!revision || revision.includes('..')) throw new Error(`"${revision}" is not a usable revision`);
  return {
    id: revision === 'main' ? m : `${m}@${revision}`,
    // The hub wants a revision with slashes (refs/pr/1) as one encoded path segment.
    baseUrl: `${host}/${parts[0]}/${parts[1]}/resolve/${encodeURIComponent(revision)}`,
  };
}

/** Size of a file, or null when the source says it does not exist (any other failure propagates). */
async function sizeIfPresent(src: ByteSource, file: string): Promise<number | null> {
  try {
    return await src.size(file);
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
}

async function required(src: ByteSource, file: string, why: string): Promise<ModelFile> {
  const size = await sizeIfPresent(src, file);
  if (size === null) throw new FormatError(`${src.describe()} has no ${file} (${why})`);
  return { name: file, size };
}

async function shardNames(src: ByteSource, indexSize: number): Promise<string[]> {
  const bytes = await src.read(INDEX_FILE, 0, indexSize);
  let index: unknown;
  try {
    index = JSON.parse(new TextDecoder().decode(bytes));
  } catch (e) {
    throw new FormatError(`${INDEX_FILE}: not valid JSON (${(e as Error).message})`);
  }
  const wm = (index as { weight_map?: unknown } | null)?.weight_map;
  if (!wm || typeof wm !== 'object' || Array.isArray(wm)) {
    throw new FormatError(`${INDEX_FILE}: expected an object with a "weight_map" object`);
  }
  const map = new Map<string, string>();
  for (const [tensor, file] of Object.entries(wm as Record<string, unknown>)) {
    if (typeof file !== 'string' || !file || file.includes('..') || file.startsWith('/')) {
      throw new FormatError(`${INDEX_FILE}: weight_map["${tensor}"] must be a shard file name, found ${JSON.stringify(file)}`);
    }
    map.set(tensor, file);
  }
  if (map.size === 0) throw new FormatError(`${INDEX_FILE}: weight_map lists no shards`);
  // Shards of only vision tower / MTP tensors (VL and MTP releases) are not downloaded: the text model never reads them.
  const names = neededShards(map);
  if (names.length === 0) throw new FormatError(`${INDEX_FILE}: weight_map lists only vision tower / MTP tensors, no text model`);
  return names;
}

async function weightFiles(src: ByteSource): Promise<ModelFile[]> {
  const indexSize = await sizeIfPresent(src, INDEX_FILE);
  if (indexSize === null) {
    const single = await sizeIfPresent(src, SINGLE_FILE);
    if (single === null) {
      throw new FormatError(`${src.describe()} has no MLX safetensors weights (neither ${INDEX_FILE} nor ${SINGLE_FILE}); ` +
        'point it at an MLX conversion of the model (e.g. an mlx-community repo)');
    }
    return [{ name: SINGLE_FILE, size: single }];
  }
  const shards = await shardNames(src, indexSize);
  const sized = await Promise.all(shards.map((s) => required(src, s, `a shard named by ${INDEX_FILE}`)));
  return [{ name: INDEX_FILE, size: indexSize }, ...sized];
}

/**
 * The files a browser session needs, with sizes, small ones first: config.json, tokenizer files, generation
 * config, then the weights (the index and its shards, or the single file). Optional files that are absent are
 * left out.
 */
export async function modelFiles(src: ByteSource): Promise<ModelFile[]> {
  const optional = async (file: string): Promise<ModelFile[]> => {
    const size = await sizeIfPresent(src, file);
    return size === null ? [] : [{ name: file, size }];
  };
  // Probed in parallel, but failures reported in a fixed order: missing weights say most about a wrong repo.
  const settled = await Promise.allSettled([
    weightFiles(src),
    required(src, 'config.json', 'every checkpoint needs its config').then((f) => [f]),
    required(src, 'tokenizer.json', 'needed to turn text into token ids').then((f) => [f]),
    optional('tokenizer_config.json'),
    optional('chat_template.jinja'),
    optional('generation_config.json'),
  ]);
  const failed = settled.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  const [weights, ...small] = settled.map((r) => (r as PromiseFulfilledResult<ModelFile[]>).value);
  return [...small.flat(), ...weights];
}
