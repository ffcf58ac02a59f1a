/**
 * A local knowledge base: the `.md`, `.markdown` and `.txt` files of a directory (and its
 * subdirectories), chunked at load and indexed for BM25+ retrieval (minisearch).
 *
 * Chunking: a Markdown file is cut at its headings; a section longer than `chunkTokens`
 * (estimated at 4 characters a token) is cut between paragraphs, a paragraph longer than
 * that between sentences, then words, and a word (text without spaces) at the limit. Each
 * chunk carries the document title (first `# ` heading, front-matter `title:` or the file
 * name), its section heading, and a source (`refunds.md#refund-window`).
 *
 * Load time: one pass over the text plus minisearch's indexing, about linear in the size of
 * the knowledge base. A reload that finds the same files (path, size, mtime) and options
 * reuses the loaded index instead of building it again.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, realpathSync, statSync, type Stats } from 'node:fs';
import path from 'node:path';
import MiniSearch from 'minisearch';
import { countTokens } from './tokens.js';

export interface Chunk {
  readonly id: number;
  /** `Refunds — Refund window` (document title, then the section heading when there is one). */
  readonly title: string;
  readonly text: string;
  /** `refunds.md#refund-window`, relative to the knowledge directory. */
  readonly source: string;
}

export interface KnowledgeHit {
  readonly chunk: Chunk;
  /** BM25+ score (minisearch), higher is better. */
  readonly score: number;
  /** Tokens of title + text. */
  readonly tokens: number;
}

export interface KnowledgeBaseOptions {
  /** Target chunk size in tokens (estimated). */
  chunkTokens: number;
}

export interface SearchOptions {
  topK: number;
  minScore?: number;
  fuzzy?: number;
  prefix?: boolean;
}

const EXTENSIONS = new Set(['.md', '.markdown', '.txt']);
const CHARS_PER_TOKEN = 4;
/** Common English words that would otherwise match everything ("how do I get a refund"). */
const STOP_WORDS = new Set(
  'a an and are as at be but by can could do does for from get has have how i if in is it its me my of on or our should so that the their them then there these they this to was we were what when where which who why will with would you your'.split(' '),
);

function processTerm(term: string): string | null {
  const t = term.toLowerCase();
  return t.length < 2 || STOP_WORDS.has(t) ? null : t;
}

export class KnowledgeBase {
  readonly dir: string;
  readonly chunks: readonly Chunk[];
  readonly files: number;
  /** Changes when a file or the chunking changes (caches of retrieval results key on it). */
  readonly stamp: string;
  readonly #index: MiniSearch<{ id: number; title: string; text: string }>;
  /** Token counts by chunk id, filled on first retrieval (-1 = not counted yet). */
  readonly #tokens: Int32Array;

  constructor(dir: string, chunks: readonly Chunk[], files: number, stamp = '') {
    this.dir = dir;
    this.chunks = chunks;
    this.files = files;
    this.stamp = stamp;
    this.#tokens = new Int32Array(chunks.length).fill(-1);
    this.#index = new MiniSearch({ fields: ['title', 'text'], storeFields: [], processTerm });
    this.#index.addAll(chunks);
  }

  /**
   * The best `topK` chunks for `query`, best first.
   *
   * @example
   * kb.search('how long do refunds take', { topK: 3 })
   * // [{ chunk: { title: 'Refunds — Refund timing', source: 'refunds.md#refund-timing', ... }, score: 7.1, tokens: 96 }, ...]
   */
  search(query: string, o: SearchOptions): KnowledgeHit[] {
    const results = this.#index.search(query, {
      boost: { title: 2 },
      combineWith: 'OR',
      prefix: o.prefix ?? false,
      fuzzy: o.fuzzy ? o.fuzzy : false,
    });
    const hits: KnowledgeHit[] = [];
    for (const r of results) {
      if (hits.length >= o.topK) break;
      if (r.score < (o.minScore ?? 0)) continue;
      const chunk = this.chunks[r.id as number];
      hits.push({ chunk, score: r.score, tokens: this.#tokensOf(chunk) });
    }
    return hits;
  }

  #tokensOf(chunk: Chunk): number {
    let n = this.#tokens[chunk.id];
    if (n < 0) n = this.#tokens[chunk.id] = countTokens(chunk.title) + countTokens(chunk.text);
    return n;
  }
}

/**
 * Loaded bases by directory and chunk size, with the file stamp they were built from: two
 * builders may read one directory with different `chunk_tokens`, and a reload reuses both.
 */
const loaded = new Map<string, { stamp: string; kb: KnowledgeBase }>();

/**
 * Loads (or reuses) the knowledge base of `dir`. Throws when the directory cannot be read.
 * Load-time only.
 */
export function loadKnowledgeBase(dir: string, options: KnowledgeBaseOptions): KnowledgeBase {
  const files = listFiles(dir);
  const stamp = JSON.stringify([options, files.map((f) => [f.rel, f.size, f.mtimeMs])]);
  const key = `${options.chunkTokens}:${path.resolve(dir)}`;
  const known = loaded.get(key);
  if (known && known.stamp === stamp) return known.kb;
  const chunks: Chunk[] = [];
  for (const f of files) {
    const text = decodeFile(readFileSync(path.join(dir, f.rel)));
    for (const c of chunkDocument(f.rel, text, options.chunkTokens)) chunks.push(Object.freeze({ id: chunks.length, ...c }));
  }
  const kb = new KnowledgeBase(path.resolve(dir), Object.freeze(chunks), files.length, createHash('sha256').update(stamp).digest('hex').slice(0, 16));
  loaded.set(key, { stamp, kb });
  return kb;
}

/**
 * Forgets the loaded bases that `used` (a config just compiled) does not hold: a directory
 * or `chunk_tokens` a reload left behind would keep its index for the life of the process.
 */
export function keepOnlyKnowledgeBases(used: Iterable<KnowledgeBase>): void {
  const keep = new Set(used);
  for (const [key, { kb }] of loaded) if (!keep.has(kb)) loaded.delete(key);
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A knowledge file's text. UTF-8 as a rule, but files saved on Windows are often UTF-16
 * ("Unicode" in Notepad, with a byte order mark) or Windows-1252/Latin-1: read as UTF-8,
 * the first became text with a NUL between every letter and the second lost every "é" to
 * U+FFFD, so their words never matched a question. A UTF-16 BOM selects UTF-16; bytes that
 * are not valid UTF-8 are read as Windows-1252 (a superset of Latin-1's printable range).
 */
export function decodeFile(bytes: Buffer): string {
  if (bytes[0] === 0xff && bytes[1] === 0xfe) return new TextDecoder('utf-16le').decode(bytes);
  if (bytes[0] === 0xfe && bytes[1] === 0xff) return new TextDecoder('utf-16be').decode(bytes);
  try {
    return UTF8.decode(bytes);
  } catch {
    return new TextDecoder('windows-1252').decode(bytes);
  }
}

interface FileStat {
  rel: string;
  size: number;
  mtimeMs: number;
}

/**
 * The knowledge files under `dir`, sorted. Symlinks are followed: a Kubernetes ConfigMap
 * volume holds `name -> ..data/name` links (the `..data` entries themselves are hidden). A
 * directory reached twice (a link back up the tree) is listed once; dangling links are skipped.
 */
function listFiles(dir: string, rel = '', seen = new Set([realpathSync(dir)])): FileStat[] {
  const out: FileStat[] = [];
  const entries = readdirSync(path.join(dir, rel), { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    if (e.name.startsWith('.')) continue;
    const r = rel === '' ? e.name : `${rel}/${e.name}`;
    const isText = EXTENSIONS.has(path.extname(e.name).toLowerCase());
    if (!e.isDirectory() && !e.isSymbolicLink() && !(e.isFile() && isText)) continue;
    const st = statOrUndefined(path.join(dir, r));
    if (st?.isDirectory()) {
      const real = realpathSync(path.join(dir, r));
      if (seen.has(real)) continue;
      seen.add(real);
      out.push(...listFiles(dir, r, seen));
    } else if (st?.isFile() && isText) {
      out.push({ rel: r, size: st.size, mtimeMs: st.mtimeMs });
    }
  }
  return out;
}

/** The target's stats, or undefined for a dangling or looping symlink. */
function statOrUndefined(file: string): Stats | undefined {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}

/**
 * Cuts one document into chunks (without ids).
 *
 * @param rel path relative to the knowledge directory (the source)
 */
export function chunkDocument(rel: string, text: string, chunkTokens: number): Omit<Chunk, 'id'>[] {
  const isMarkdown = !rel.toLowerCase().endsWith('.txt');
  // A UTF-8 byte order mark (editors on Windows) would hide the front matter and first heading.
  let body = text.replace(/^\uFEFF/, '').replace(/\r\n?/g, '\n');
  let docTitle = titleFromFileName(rel);
  const front = /^---\n([\s\S]*?)\n---\n/.exec(body);
  if (isMarkdown && front) {
    const t = /^title:\s*["']?(.+?)["']?\s*$/m.exec(front[1]);
    if (t) docTitle = t[1];
    body = body.slice(front[0].length);
  }
  const sections: { heading?: string; text: string }[] = [];
  if (isMarkdown) {
    let current: { heading?: string; lines: string[] } = { lines: [] };
    const flush = () => sections.push({ heading: current.heading, text: current.lines.join('\n').trim() });
    let inFence = false;
    let titled = front !== null && /^title:/m.test(front[1]);
    for (const line of body.split('\n')) {
      if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
      // CommonMark §4.2: a closing run of `#` counts only after a space, so `C#` keeps its `#`.
      const h = inFence ? null : /^(#{1,6})\s+(.+?)(?:\s+#+)?\s*$/.exec(line);
      if (!h) {
        current.lines.push(line);
        continue;
      }
      if (h[1].length === 1 && !titled) {
        docTitle = h[2];
        titled = true;
        continue;
      }
      flush();
      current = { heading: h[2], lines: [] };
    }
    flush();
  } else {
    sections.push({ text: body.trim() });
  }

  const limit = chunkTokens * CHARS_PER_TOKEN;
  const out: Omit<Chunk, 'id'>[] = [];
  for (const s of sections) {
    if (s.text === '') continue;
    const title = s.heading && s.heading !== docTitle ? `${docTitle} — ${s.heading}` : docTitle;
    const source = s.heading ? `${rel}#${slug(s.heading)}` : rel;
    for (const piece of pack(s.text, limit)) out.push({ title, text: piece, source });
  }
  return out;
}

/** Packs paragraphs (then sentences, then words, then pieces of words) into pieces of at most `limit` characters. */
function pack(text: string, limit: number): string[] {
  const units = text
    .split(/\n\s*\n/)
    .map((p) => p.trim())
    .filter((p) => p !== '')
    .flatMap((p) => (p.length <= limit ? [p] : splitLong(p, limit)));
  const out: string[] = [];
  let current = '';
  for (const u of units) {
    if (current !== '' && current.length + 2 + u.length > limit) {
      out.push(current);
      current = '';
    }
    current = current === '' ? u : `${current}\n\n${u}`;
  }
  if (current !== '') out.push(current);
  return out;
}

function splitLong(paragraph: string, limit: number): string[] {
  // Every character belongs to a sentence: a paragraph may start with punctuation ("...", "¿").
  const sentences = (paragraph.match(/[^.!?。！？]*(?:[.!?。！？]+|$)\s*/g) ?? [paragraph]).filter((s) => s !== '');
  const out: string[] = [];
  let current = '';
  const push = (s: string) => {
    if (current !== '' && current.length + s.length > limit) {
      out.push(current.trim());
      current = '';
    }
    current += s;
  };
  for (const s of sentences) {
    if (s.length <= limit) push(s);
    else for (const w of s.split(/(?<=\s)/)) for (const piece of cut(w, limit)) push(piece);
  }
  if (current.trim() !== '') out.push(current.trim());
  return out;
}

/** A word longer than `limit` (a URL, text without spaces) in pieces of at most `limit`, never inside a surrogate pair. */
function cut(word: string, limit: number): string[] {
  const out: string[] = [];
  let from = 0;
  while (word.length - from > limit) {
    let to = from + limit;
    const next = word.charCodeAt(to);
    if (next >= 0xdc00 && next <= 0xdfff) to--; // keep a surrogate pair together
    out.push(word.slice(from, to));
    from = to;
  }
  out.push(word.slice(from));
  return out;
}

function titleFromFileName(rel: string): string {
  const base = path.basename(rel, path.extname(rel)).replace(/[-_]+/g, ' ').trim();
  return base.charAt(0).toUpperCase() + base.slice(1);
}

/** GitHub-style heading anchor: `Refund window` -> `refund-window`. */
export function slug(heading: string): string {
  return heading
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s-]/gu, '')
    .trim()
    .replace(/\s+/g, '-');
}
