/**
 * Seeded differential fuzz of what the client gets (fixed seed, deterministic): an in-test
 * upstream (real socket) sends generated answers, and each one is fetched directly from it
 * and through the gateway, and compared.
 *
 * - Chat streams: realistic `chat.completion.chunk` events (multi-byte UTF-8 content, tool
 *   call deltas, finish reasons, the usage chunk when asked for, `[DONE]`) written with the
 *   legal SSE variations (CRLF / CR / LF line ends, mixed; comment lines; `event:`, `id:`,
 *   `retry:` fields; multi-line `data:`; a BOM; `data:` without a space; JSON with spaces,
 *   Python's ASCII escapes, pretty-printed), cut into chunks anywhere (inside a UTF-8
 *   character, between CR and LF, 1-byte chunks, one chunk), sometimes gzip-coded.
 *   A client that asked for `include_usage` gets the upstream's bytes; one that did not
 *   gets them without the usage chunk and the `"usage": null` fields (README "Streaming"),
 *   computed here from the direct stream by that rule alone (`withoutGatewayUsage`), and
 *   checked against the upstream's own answer to a request without `include_usage`. The
 *   same streams also go through `SseScanner` with the exact chunking, and a subset through
 *   the official `openai` client (parsed chunks equal).
 * - Responses API streams on `POST /v1/responses`: the upstream's bytes, always (gzip too).
 * - Non-stream JSON bodies (unicode, big numbers, escapes) on chat, Responses and
 *   embeddings: byte-identical (a gzip chat answer: its decoded bytes).
 *
 * A failure prints the case (`FUZZ_SEED=<n>` replays another seed). Fix the bug and keep
 * the case as a regression test at the end of this file.
 */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { constants as zlibConstants, createGzip, gunzipSync } from 'node:zlib';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SseScanner } from '../src/proxy/sse-scanner.js';
import { E2E_UPSTREAM, mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { seededRandom } from '../scripts/seeded-random.js';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5eed_5e5e);
const CHAT_STREAMS = 240;
const OPENAI_CLIENT_STREAMS = 40;
const RESPONSES_STREAMS = 120;
const JSON_BODIES = 300;
const PARALLEL = 6;

// ---------------------------------------------------------------------------------------
// PRNG

/** mulberry32, seeded from several numbers (seed, case kind, case index...). */
class Rand {
  readonly next: () => number;
  constructor(...seeds: number[]) {
    let h = 0x811c9dc5;
    for (const s of seeds) h = Math.imul(h ^ (s >>> 0), 0x01000193) >>> 0;
    this.next = seededRandom(h);
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

const KIND = { chat: 1, chunks: 2, responses: 3, json: 4 } as const;

// ---------------------------------------------------------------------------------------
// Text and JSON

const PIECES = [
  'Hello', ' world', ' ', '.', '\n', '\n\n', '\t', 'é', 'e\u0301', 'a\u0308\u0323', 'ñ', '€', '£', '😀', '👩‍👩‍👧', '🇫🇷', '🏳️‍🌈',
  '漢字', '日本語の', 'テキスト', '한국어', 'Ω', 'ß', 'ﬁ', '\u200b', '\u2028', '\u2029', '\u00a0', '\u0000', '\u001f', '"', '\\', '/',
  '"usage":null', ',"usage": null}', 'data: [DONE]', '\n\ndata: {"x":1}\n\n', ': keep-alive', '\r\n\r\n', '\r', '{"a":[1,2]}', '\uFEFF',
];

function text(r: Rand, max = 6): string {
  let s = '';
  for (let n = 1 + r.int(max); n > 0; n--) s += r.pick(PIECES);
  return s;
}

/** How a JSON value is written: compact, Python's `json.dumps` (spaces, ASCII escapes), or indented. */
type JsonStyle = 'compact' | 'spaced' | 'python' | 'pretty';

function toJson(value: unknown, style: JsonStyle): string {
  if (style === 'compact') return JSON.stringify(value);
  if (style === 'pretty') return JSON.stringify(value, null, 2);
  const s = spaced(value);
  return style === 'python' ? s.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`) : s;
}

/** `{"a": 1, "b": [1, 2]}`, as Python's json.dumps writes it. */
function spaced(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(spaced).join(', ')}]`;
  if (value !== null && typeof value === 'object') {
    return `{${Object.entries(value)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${JSON.stringify(k)}: ${spaced(v)}`)
      .join(', ')}}`;
  }
  return JSON.stringify(value);
}

// ---------------------------------------------------------------------------------------
// SSE writing

/** How a stream writes its events: line ends and field variations. */
interface SseStyle {
  /** Line ends to pick from (one for the usual upstream; several: mixed). */
  eols: string[];
  noSpace: number;
  comments: number;
  fields: number;
  json: JsonStyle[];
}

function sseStyle(r: Rand): SseStyle {
  const eols = r.pick([['\n'], ['\n'], ['\r\n'], ['\r'], ['\n', '\r\n'], ['\n', '\r', '\r\n']]);
  return {
    eols,
    noSpace: r.pick([0, 0, 0.5, 1]),
    comments: r.pick([0, 0, 0.2]),
    fields: r.pick([0, 0, 0.3]),
    json: r.pick<JsonStyle[]>([['compact'], ['compact'], ['spaced'], ['python'], ['pretty'], ['compact', 'spaced', 'pretty', 'python']]),
  };
}

/**
 * One event block: optional field/comment lines, the data line(s), optional trailing lines,
 * each ended by a line end, then the blank line. A CR is never followed by an LF line end
 * (CR LF is one line end).
 */
function block(r: Rand, style: SseStyle, data: string | undefined, before: string[] = []): string {
  const seed = r.int(2 ** 31);
  // A line's own choices (prefix, line end) come from its text without `"usage": null` and
  // commas, so the stream with and without include_usage differ only where the rule says.
  const lineRand = (line: string) => new Rand(seed, ...Buffer.from(line.replace(/"usage": ?null/g, '').replace(/[\s,]/g, '')));
  const lines: Array<[string, string]> = before.map((line) => [line, r.pick(style.eols)]);
  // (A block without data but with fields trips openai-node's parser, direct or not.)
  if (data !== undefined && r.chance(style.fields)) lines.push([r.pick(['event: message', 'id: ' + r.int(1000), 'retry: 3000', 'id:', 'event:message']), r.pick(style.eols)]);
  if (r.chance(style.comments)) lines.push([r.pick([': keep-alive', ':', ':ping', ': 😀 comment']), r.pick(style.eols)]);
  if (data !== undefined) {
    for (const line of data.split('\n')) {
      const lr = lineRand(line);
      lines.push([(lr.chance(style.noSpace) ? 'data:' : 'data: ') + line, lr.pick(style.eols)]);
    }
  }
  if (r.chance(style.fields / 2)) lines.push([r.pick(['id: 7', ': trailing comment']), r.pick(style.eols)]);
  let blank = r.pick(style.eols);
  // "x\r" + "\n" would read as one CR LF line end: the blank line would be lost.
  if (lines.at(-1)?.[1] === '\r' && blank === '\n') blank = '\r\n';
  return lines.map(([line, eol]) => line + eol).join('') + blank;
}

// ---------------------------------------------------------------------------------------
// Chat streams

interface ChatCase {
  /** The stream's text with and without include_usage (the upstream honours the flag). */
  text(includeUsage: boolean): string;
  gzip: boolean;
  chunking: Chunking;
  clientAsksUsage: boolean;
}

type Chunking = 'one' | 'bytes' | 'random' | 'tricky';

function chatCase(index: number, seed = SEED): ChatCase {
  const r = new Rand(seed, KIND.chat, index);
  const style = sseStyle(r);
  const id = `chatcmpl-${index.toString(36)}${r.int(1e9).toString(36)}`;
  const created = 1_700_000_000 + r.int(1e6);
  const model = r.pick(['gpt-4o-mini', 'gpt-4.1-2025-04-14', 'm-ü']);
  const usagePlace = r.pick(['after-choices', 'after-choices', 'first', 'last']);
  const extras = { service_tier: r.chance(0.5) ? 'default' : undefined, system_fingerprint: r.chance(0.5) ? 'fp_' + r.int(1e6).toString(16) : null };
  const obfuscation = r.chance(0.3);
  const n = r.chance(0.2) ? 2 : 1;
  const jsonStyles = style.json.map((s) => s);
  // Each event's JSON style is fixed before rendering, so both renderings match.
  type Ev = { kind: 'chunk' | 'usage' | 'done' | 'comment'; choices?: unknown[]; usage?: unknown; json: JsonStyle; blockSeed: number };
  const events: Ev[] = [];
  const push = (kind: Ev['kind'], more: Partial<Ev> = {}) => events.push({ kind, json: r.pick(jsonStyles), blockSeed: r.int(2 ** 31), ...more });
  if (r.chance(0.2)) push('comment');
  for (let c = 0; c < n; c++) push('chunk', { choices: [{ index: c, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null, finish_reason: null }] });
  const tools = r.chance(0.3);
  for (let k = 0, count = r.int(12); k < count; k++) {
    const c = r.int(n);
    if (r.chance(0.1)) push('comment');
    if (tools && k === 0) {
      push('chunk', { choices: [{ index: c, delta: { tool_calls: [{ index: 0, id: 'call_' + r.int(1e9).toString(36), type: 'function', function: { name: 'get_weather', arguments: '' } }] }, logprobs: null, finish_reason: null }] });
    } else if (tools) {
      push('chunk', { choices: [{ index: c, delta: { tool_calls: [{ index: 0, function: { arguments: JSON.stringify(text(r, 3)).slice(0, 1 + r.int(12)) } }] }, logprobs: null, finish_reason: null }] });
    } else {
      let content = text(r);
      // A surrogate pair cut between two deltas (lone surrogates: JSON writes \ud83d).
      if (r.chance(0.05)) content = '😀'.slice(r.int(2), 1 + r.int(2)) || content;
      push('chunk', { choices: [{ index: c, delta: { content }, logprobs: null, finish_reason: null }] });
    }
  }
  for (let c = 0; c < n; c++) push('chunk', { choices: [{ index: c, delta: {}, logprobs: null, finish_reason: tools ? 'tool_calls' : r.pick(['stop', 'length', 'content_filter']) }] });
  const usage = { prompt_tokens: r.int(5000), completion_tokens: r.int(5000), total_tokens: r.int(10000), prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } };
  push('usage', { usage });
  push('done');
  const bom = r.chance(0.1);
  const unterminated = r.chance(0.05);
  const gzip = r.chance(0.15);
  const chunking = r.pick<Chunking>(['one', 'bytes', 'random', 'random', 'tricky', 'tricky']);
  const clientAsksUsage = r.chance(0.35);

  const chunkJson = (ev: Ev, includeUsage: boolean) => {
    const obj: Record<string, unknown> = {};
    if (includeUsage && usagePlace === 'first') obj.usage = ev.usage ?? null;
    Object.assign(obj, { id, object: 'chat.completion.chunk', created, model }, extras, { choices: ev.choices ?? [] });
    if (includeUsage && usagePlace !== 'first') obj.usage = ev.usage ?? null;
    if (obfuscation) obj.obfuscation = 'x' + ev.blockSeed.toString(36);
    if (includeUsage && usagePlace === 'last') {
      const u = obj.usage;
      delete obj.usage;
      obj.usage = u;
    }
    return toJson(obj, ev.json);
  };
  return {
    gzip,
    chunking,
    clientAsksUsage,
    text(includeUsage) {
      let out = bom ? '\uFEFF' : '';
      for (const ev of events) {
        const br = new Rand(ev.blockSeed);
        if (ev.kind === 'comment') out += block(br, style, undefined, [br.pick([': keep-alive', ': ping'])]);
        else if (ev.kind === 'done') {
          const b = block(br, style, '[DONE]');
          // An upstream that ends without the final blank line.
          out += unterminated ? b.replace(/(\r\n|\r|\n)$/, '') : b;
        } else if (ev.kind === 'usage') {
          if (includeUsage) out += block(br, style, chunkJson(ev, true));
        } else out += block(br, style, chunkJson(ev, includeUsage));
      }
      return out;
    },
  };
}

/** Cuts `bytes` into the pieces an upstream writes. */
function cut(bytes: Buffer, how: Chunking, r: Rand): Buffer[] {
  if (how === 'one' || bytes.length === 0) return [bytes];
  const cuts = new Set<number>();
  if (how === 'bytes') for (let i = 1; i < bytes.length; i++) cuts.add(i);
  else {
    for (let at = 1 + r.int(40); at < bytes.length; at += 1 + r.int(how === 'random' ? 64 : 16)) cuts.add(at);
    if (how === 'tricky') {
      for (let i = 1; i < bytes.length; i++) {
        const b = bytes[i];
        // Inside a UTF-8 character, between CR and LF, right after any line end.
        if (((b & 0xc0) === 0x80 || (bytes[i - 1] === 0x0d && b === 0x0a) || bytes[i - 1] === 0x0a || bytes[i - 1] === 0x0d) && r.chance(0.5)) cuts.add(i);
      }
    }
  }
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let from = 0;
  for (const at of sorted) {
    out.push(bytes.subarray(from, at));
    from = at;
  }
  out.push(bytes.subarray(from));
  return out;
}

/** gzip, flushed after each piece (as a streaming server does): the coded pieces. */
async function gzipPieces(pieces: Buffer[]): Promise<Buffer[]> {
  const gz = createGzip();
  const out: Buffer[] = [];
  let current: Buffer[] = [];
  gz.on('data', (d: Buffer) => current.push(d));
  for (const piece of pieces) {
    gz.write(piece);
    await new Promise<void>((resolve) => gz.flush(zlibConstants.Z_SYNC_FLUSH, () => resolve()));
    out.push(Buffer.concat(current));
    current = [];
  }
  gz.end();
  await once(gz, 'end');
  out.push(Buffer.concat(current));
  return out.filter((b) => b.length > 0);
}

// ---------------------------------------------------------------------------------------
// The rule the README states, applied to the direct stream

/**
 * The client's stream when it did not ask for usage, from the upstream's stream with it,
 * by the README's rule alone: the event (SSE block: its lines up to the blank line) whose
 * data is the usage-only chunk (`choices: []` + a `usage` object) is dropped, and from every
 * other event's JSON the top-level `"usage": null` member is removed with one comma next to
 * it (and the whitespace between them). Written from the SSE and JSON grammars, not from the
 * gateway's code.
 */
function withoutGatewayUsage(stream: string): string {
  let out = '';
  for (const b of sseBlocks(stream)) {
    const raw = stream.slice(b.start, b.end);
    const data = b.data.length ? b.data.map((d) => stream.slice(d.start, d.end)).join('\n') : undefined;
    let obj: any;
    try {
      obj = data === undefined ? undefined : JSON.parse(data);
    } catch {
      obj = undefined;
    }
    if (obj && Array.isArray(obj.choices) && obj.choices.length === 0 && obj.usage && typeof obj.usage === 'object') continue;
    const range = obj && Object.hasOwn(obj, 'usage') && obj.usage === null ? usageNullRange(data!) : undefined;
    if (!range) {
      out += raw;
      continue;
    }
    // Data offsets -> stream offsets (data lines joined by LF).
    const toStream = (p: number) => {
      let off = 0;
      for (const d of b.data) {
        if (p <= off + (d.end - d.start)) return d.start + (p - off);
        off += d.end - d.start + 1;
      }
      throw new Error('offset past the data');
    };
    out += stream.slice(b.start, toStream(range[0])) + stream.slice(toStream(range[1]), b.end);
  }
  return out;
}

/** SSE blocks (WHATWG: CR LF, CR or LF end a line; a blank line ends a block), with their data line values. */
function sseBlocks(s: string): Array<{ start: number; end: number; data: Array<{ start: number; end: number }> }> {
  const blocks: Array<{ start: number; end: number; data: Array<{ start: number; end: number }> }> = [];
  let start = 0;
  let data: Array<{ start: number; end: number }> = [];
  let at = s.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (at < s.length) {
    let eol = at;
    while (eol < s.length && s[eol] !== '\r' && s[eol] !== '\n') eol++;
    const next = eol >= s.length ? eol : s[eol] === '\r' && s[eol + 1] === '\n' ? eol + 2 : eol + 1;
    const line = s.slice(at, eol);
    if (line === '' && eol < s.length) {
      blocks.push({ start, end: next, data });
      start = next;
      data = [];
    } else if (line.startsWith('data:')) {
      const from = at + (line[5] === ' ' ? 6 : 5);
      data.push({ start: from, end: eol });
    }
    at = next;
  }
  if (start < s.length) blocks.push({ start, end: s.length, data });
  return blocks;
}

/** The range to remove for the top-level `"usage": null` member of a JSON object text, or undefined. */
function usageNullRange(json: string): [number, number] | undefined {
  const ws = (i: number) => {
    while (i < json.length && ' \t\r\n'.includes(json[i])) i++;
    return i;
  };
  let depth = 0;
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '"') {
      let end = i + 1;
      while (json[end] !== '"') end += json[end] === '\\' ? 2 : 1;
      end++;
      if (depth === 1 && expectKey && JSON.parse(json.slice(i, end)) === 'usage') {
        const value = ws(ws(end) + 1);
        if (json.startsWith('null', value)) {
          const valueEnd = value + 4;
          let before = i - 1;
          while (' \t\r\n'.includes(json[before])) before--;
          if (json[before] === ',') return [before, valueEnd];
          const after = ws(valueEnd);
          return json[after] === ',' ? [i, ws(after + 1)] : [i, valueEnd];
        }
      }
      expectKey = false;
      i = end - 1;
    } else if (c === '{' || c === '[') {
      depth++;
      expectKey = c === '{' && depth === 1;
    } else if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------
// Responses streams and JSON bodies

function responsesCase(index: number): { text: string; gzip: boolean; chunking: Chunking } {
  const r = new Rand(SEED, KIND.responses, index);
  const style = sseStyle(r);
  const json = r.pick(style.json);
  const id = 'resp_' + r.int(1e9).toString(36);
  const words = Array.from({ length: r.int(8) }, () => text(r, 3));
  const item = { id: 'msg_' + index, type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: words.join(''), annotations: [] }] };
  const response = (status: string, output: unknown[]) => ({
    id,
    object: 'response',
    created_at: 1_700_000_000,
    status,
    model: 'gpt-4o-mini',
    output,
    usage: status === 'in_progress' ? null : { input_tokens: r.int(900), input_tokens_details: { cached_tokens: 0 }, output_tokens: r.int(900), output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 1800 },
  });
  let seq = 0;
  let out = r.chance(0.1) ? '\uFEFF' : '';
  const send = (type: string, data: object) => {
    const eventLine = r.chance(0.9) ? [(r.chance(style.noSpace) ? 'event:' : 'event: ') + type] : [];
    out += block(r, style, toJson({ type, sequence_number: seq++, ...data }, json), eventLine);
    if (r.chance(style.comments)) out += block(r, style, undefined, [': keep-alive']);
  };
  send('response.created', { response: response('in_progress', []) });
  send('response.output_item.added', { output_index: 0, item: { ...item, status: 'in_progress', content: [] } });
  send('response.content_part.added', { item_id: item.id, output_index: 0, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } });
  for (const delta of words) send('response.output_text.delta', { item_id: item.id, output_index: 0, content_index: 0, delta, logprobs: [] });
  send('response.output_text.done', { item_id: item.id, output_index: 0, content_index: 0, text: words.join(''), logprobs: [] });
  send('response.output_item.done', { output_index: 0, item });
  send(r.pick(['response.completed', 'response.completed', 'response.incomplete']), { response: response('completed', [item]) });
  return { text: out, gzip: r.chance(0.15), chunking: r.pick<Chunking>(['one', 'bytes', 'random', 'tricky']) };
}

const NUMBERS = ['0', '-0', '1', '-1', '12345678901234567890123456789', '9007199254740993', '1.0', '1e400', '-1E-400', '0.1000000000000000055511151231257827', '6.02214076e+23', '1.5E3'];
const ESCAPES = ['\\"', '\\\\', '\\/', '\\b', '\\f', '\\n', '\\r', '\\t', '\\u0000', '\\u001F', '\\ud83d\\ude00', '\\uD800', '\\udfff', '\\u00e9', '\\u2028'];

/** A JSON text written by hand (not JSON.stringify): odd number forms, escapes, whitespace. */
function jsonValue(r: Rand, depth: number): string {
  const sp = () => r.pick(['', '', ' ', '\n  ', '\t', '\r\n']);
  const str = () => {
    let s = '';
    for (let n = r.int(5); n > 0; n--) s += r.chance(0.3) ? r.pick(ESCAPES) : JSON.stringify(text(r, 2)).slice(1, -1);
    return `"${s}"`;
  };
  const kind = depth > 3 ? r.int(4) : r.int(6);
  if (kind === 0) return r.pick(NUMBERS);
  if (kind === 1) return r.pick(['true', 'false', 'null']);
  if (kind <= 3) return str();
  if (kind === 4) return `[${sp()}${Array.from({ length: r.int(4) }, () => jsonValue(r, depth + 1)).join(`${sp()},${sp()}`)}${sp()}]`;
  return `{${sp()}${Array.from({ length: r.int(4) }, () => `${str()}${sp()}:${sp()}${jsonValue(r, depth + 1)}`).join(`${sp()},${sp()}`)}${sp()}}`;
}

type JsonRoute = 'chat' | 'responses' | 'embeddings';

function jsonCase(index: number): { route: JsonRoute; text: string; gzip: boolean; chunking: Chunking; contentType: string } {
  const r = new Rand(SEED, KIND.json, index);
  const route = r.pick<JsonRoute>(['chat', 'chat', 'responses', 'embeddings']);
  const extra = jsonValue(r, 0);
  const usage = r.chance(0.8) ? `{"prompt_tokens": ${r.pick(['12', '1e2', '12345678901234567890'])}, "completion_tokens": 3, "total_tokens": 15, "input_tokens": 5, "output_tokens": 7}` : 'null';
  const bodies: Record<JsonRoute, string> = {
    chat: `{"id":"chatcmpl-${index}","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":${jsonValue(r, 3)},"refusal":null},"finish_reason":"stop"}],"usage":${usage},"x_extra":${extra}}`,
    responses: `{ "id": "resp_${index}", "object": "response", "model": "gpt-4o-mini", "output": [${extra}], "usage": ${usage} }`,
    embeddings: `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[${Array.from({ length: r.int(6) }, () => r.pick(NUMBERS)).join(',')}]}],"model":"text-embedding-3-small","usage":${usage},"x":${extra}}`,
  };
  const body = r.chance(0.05) ? '\uFEFF' + bodies[route] : bodies[route];
  return { route, text: body, gzip: r.chance(0.15), chunking: r.pick<Chunking>(['one', 'random', 'tricky']), contentType: r.pick(['application/json', 'application/json; charset=utf-8']) };
}

// ---------------------------------------------------------------------------------------
// The upstream

/** Builds the answer for a request: `<kind> <index>` in the last user message or `input`. */
async function answer(path: string, body: any): Promise<{ contentType: string; gzip: boolean; pieces: Buffer[]; paced: boolean }> {
  const key: string = path === '/v1/chat/completions' ? body.messages.at(-1).content : body.input;
  const [kind, n] = key.split(' ');
  const index = Number(n);
  let made: { text: string; gzip: boolean; chunking: Chunking; contentType: string };
  let r: Rand;
  if (kind === 'chat') {
    const c = chatCase(index);
    const includeUsage = body.stream_options?.include_usage === true;
    made = { text: c.text(includeUsage), gzip: c.gzip, chunking: c.chunking, contentType: 'text/event-stream; charset=utf-8' };
    r = new Rand(SEED, KIND.chunks, index, includeUsage ? 1 : 0);
  } else if (kind === 'responses') {
    made = { ...responsesCase(index), contentType: 'text/event-stream' };
    r = new Rand(SEED, KIND.chunks, index, 2);
  } else {
    made = jsonCase(index);
    r = new Rand(SEED, KIND.chunks, index, 3);
  }
  let pieces = cut(Buffer.from(made.text, 'utf8'), made.chunking, r);
  if (made.gzip) pieces = await gzipPieces(made.chunking === 'bytes' ? cut(Buffer.concat(pieces), 'random', r) : pieces);
  return { contentType: made.contentType, gzip: made.gzip, pieces, paced: r.chance(0.3) };
}

function startUpstream(): Promise<{ server: Server; url: string }> {
  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    try {
      const a = await answer(req.url!, JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(200, { 'content-type': a.contentType, ...(a.gzip ? { 'content-encoding': 'gzip' } : {}) });
      for (const piece of a.pieces) {
        if (!res.write(piece)) await once(res, 'drain');
        // Some answers yield between writes, so the gateway reads them as separate chunks.
        if (a.paced) await new Promise((resolve) => setImmediate(resolve));
      }
      res.end();
    } catch (err) {
      res.writeHead(500).end(String(err));
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1` })));
}

// ---------------------------------------------------------------------------------------
// Comparing

let upstream: { server: Server; url: string };
let gw: TestGateway;

async function post(url: string, body: unknown): Promise<{ status: number; headers: Record<string, unknown>; bytes: Buffer }> {
  const res = await request(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer sk-fuzz' }, body: JSON.stringify(body) });
  return { status: res.statusCode, headers: res.headers, bytes: Buffer.from(await res.body.arrayBuffer()) };
}

/** Where two byte strings first differ, readably. */
function difference(want: Buffer, got: Buffer): string | undefined {
  if (want.equals(got)) return undefined;
  let i = 0;
  while (i < want.length && i < got.length && want[i] === got[i]) i++;
  const show = (b: Buffer) => JSON.stringify(b.subarray(Math.max(0, i - 40), i + 40).toString('latin1'));
  return `first difference at byte ${i} (lengths ${want.length} / ${got.length}): want ${show(want)} got ${show(got)}`;
}

async function inParallel(count: number, run: (i: number) => Promise<string | undefined>): Promise<string[]> {
  const failures: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < count) {
        const i = next++;
        const failure = await run(i);
        if (failure) failures.push(`case ${i} (FUZZ_SEED=${SEED}): ${failure}`);
      }
    }),
  );
  return failures.sort();
}

const chatRequest = (index: number, includeUsage: boolean) => ({
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: `chat ${index}` }],
  stream: true,
  ...(includeUsage ? { stream_options: { include_usage: true } } : {}),
});

const decoded = (r: { headers: Record<string, unknown>; bytes: Buffer }) => (r.headers['content-encoding'] === 'gzip' ? gunzipSync(r.bytes) : r.bytes);

/** One chat stream: direct and through the gateway, raw bytes. */
async function checkChatStream(index: number): Promise<string | undefined> {
  const c = chatCase(index);
  const direct = await post(`${upstream.url}/chat/completions`, chatRequest(index, true));
  const through = await post(`${gw.url}/v1/chat/completions`, chatRequest(index, c.clientAsksUsage));
  if (through.status !== 200) return `gateway status ${through.status}: ${through.bytes.toString()}`;
  if (through.headers['content-encoding'] !== undefined) return `content-encoding ${through.headers['content-encoding']} reached the client`;
  const directText = decoded(direct).toString('utf8');
  if (c.clientAsksUsage) return difference(decoded(direct), through.bytes);
  const want = withoutGatewayUsage(directText);
  // The rule applied to the direct stream is what the upstream answers a request without
  // include_usage (up to which line end and `data:` prefix a line that lost its neighbour keeps).
  const plain = decoded(await post(`${upstream.url}/chat/completions`, chatRequest(index, false))).toString('utf8');
  const loose = (s: string) => Buffer.from(s.replace(/\r\n|\r/g, '\n').replace(/data: */g, 'data:'));
  const oracle = difference(loose(plain), loose(want));
  if (oracle) throw new Error(`test oracle disagrees on case ${index}: ${oracle}`);
  return difference(Buffer.from(want, 'utf8'), through.bytes);
}

/** The same stream through `SseScanner` with the exact chunking the upstream writes. */
async function checkScanner(index: number, seed = SEED): Promise<string | undefined> {
  const c = chatCase(index, seed);
  for (const strip of [false, true]) {
    const textIn = c.text(true);
    const pieces = cut(Buffer.from(textIn, 'utf8'), c.chunking === 'one' ? 'tricky' : c.chunking, new Rand(seed, KIND.chunks, index, 9));
    const scanner = new SseScanner(strip);
    const out = [...pieces.map((p) => scanner.push(p)), scanner.flush()].map((b) => Buffer.from(b));
    const want = strip ? withoutGatewayUsage(textIn) : textIn;
    const failure = difference(Buffer.from(want, 'utf8'), Buffer.concat(out));
    if (failure) return `scanner (strip ${strip}): ${failure}`;
    if (strip && scanner.summary.usage === undefined) return 'scanner did not read the usage';
  }
  return undefined;
}

beforeAll(async () => {
  upstream = await startUpstream();
  gw = await startTestGateway(mockConfig(upstream.url, '', E2E_UPSTREAM));
});

afterAll(async () => {
  await gw?.close();
  upstream?.server.closeAllConnections();
  await new Promise((resolve) => upstream?.server.close(resolve));
});

describe('stream fidelity fuzz', () => {
  it('the rule oracle matches the README examples', () => {
    const u = '{"id":"c","choices":[],"usage":{"prompt_tokens":1}}';
    expect(withoutGatewayUsage(`data: {"id":"c","choices":[{"delta":{}}],"usage":null}\n\ndata: ${u}\n\ndata: [DONE]\n\n`)).toBe('data: {"id":"c","choices":[{"delta":{}}]}\n\ndata: [DONE]\n\n');
    expect(withoutGatewayUsage('data: {"usage": null, "id": "c"}\r\n\r\n')).toBe('data: {"id": "c"}\r\n\r\n');
    expect(withoutGatewayUsage('data: {\ndata:   "id": "c",\ndata:   "usage": null\ndata: }\n\n')).toBe('data: {\ndata:   "id": "c"\ndata: }\n\n');
  });

  it(`chat streams: ${CHAT_STREAMS} through SseScanner with their exact chunking`, async () => {
    expect(await inParallel(CHAT_STREAMS, checkScanner)).toEqual([]);
  });

  it(`chat streams: ${CHAT_STREAMS} direct and through the gateway, raw bytes`, async () => {
    expect(await inParallel(CHAT_STREAMS, checkChatStream)).toEqual([]);
  });

  it(`chat streams: ${OPENAI_CLIENT_STREAMS} with the openai client, the same chunks`, async () => {
    const direct = new OpenAI({ baseURL: upstream.url, apiKey: 'sk-fuzz', maxRetries: 0 });
    const through = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-fuzz', maxRetries: 0 });
    const chunks = async (client: OpenAI, index: number, includeUsage: boolean) => {
      try {
        const out: unknown[] = [];
        for await (const chunk of await client.chat.completions.create(chatRequest(index, includeUsage) as OpenAI.ChatCompletionCreateParamsStreaming)) out.push(chunk);
        return out;
      } catch (err) {
        return { error: String(err) };
      }
    };
    const failures = await inParallel(OPENAI_CLIENT_STREAMS, async (i) => {
      const index = i * 5; // spread over the chat cases
      const asks = chatCase(index).clientAsksUsage;
      // Direct without include_usage is what the client gets from the upstream itself.
      const want = await chunks(direct, index, asks);
      const got = await chunks(through, index, asks);
      return JSON.stringify(got) === JSON.stringify(want) ? undefined : `want ${JSON.stringify(want).slice(0, 400)} got ${JSON.stringify(got).slice(0, 400)}`;
    });
    expect(failures).toEqual([]);
  });

  it(`Responses streams: ${RESPONSES_STREAMS} byte-identical, a subset parsed by the openai client`, async () => {
    const direct = new OpenAI({ baseURL: upstream.url, apiKey: 'sk-fuzz', maxRetries: 0 });
    const through = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-fuzz', maxRetries: 0 });
    const events = async (client: OpenAI, index: number) => {
      try {
        const out: unknown[] = [];
        for await (const e of await client.responses.create({ model: 'gpt-4o-mini', input: `responses ${index}`, stream: true })) out.push(e);
        return out;
      } catch (err) {
        return { error: String(err) };
      }
    };
    const failures = await inParallel(RESPONSES_STREAMS, async (index) => {
      const req = { model: 'gpt-4o-mini', input: `responses ${index}`, stream: true };
      const d = await post(`${upstream.url}/responses`, req);
      const g = await post(`${gw.url}/v1/responses`, req);
      if (g.status !== 200) return `gateway status ${g.status}`;
      if (g.headers['content-encoding'] !== d.headers['content-encoding']) return `content-encoding ${g.headers['content-encoding']} != ${d.headers['content-encoding']}`;
      const raw = difference(d.bytes, g.bytes);
      if (raw || index % 4 !== 0) return raw;
      const [want, got] = [await events(direct, index), await events(through, index)];
      return JSON.stringify(got) === JSON.stringify(want) ? undefined : `openai client: want ${JSON.stringify(want).slice(0, 300)} got ${JSON.stringify(got).slice(0, 300)}`;
    });
    expect(failures).toEqual([]);
  });

  it(`non-stream JSON: ${JSON_BODIES} bodies byte-identical on chat, Responses and embeddings`, async () => {
    const failures = await inParallel(JSON_BODIES, async (index) => {
      const c = jsonCase(index);
      const input = `json ${index}`;
      const [path, req] =
        c.route === 'chat'
          ? ['/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: input }] }]
          : [`/${c.route}`, { model: c.route === 'embeddings' ? 'text-embedding-3-small' : 'gpt-4o-mini', input }];
      const d = await post(`${upstream.url}${path}`, req);
      const g = await post(`${gw.url}/v1${path}`, req);
      if (g.status !== 200) return `${c.route}: gateway status ${g.status}: ${g.bytes.toString()}`;
      // The chat route decodes a compressed answer; pass-through routes relay it as it came.
      return c.route === 'chat' ? difference(decoded(d), g.bytes) : difference(d.bytes, g.bytes);
    });
    expect(failures).toEqual([]);
  });
});

/** The client's bytes from `SseScanner` fed `pieces` (strings, one chunk each). */
function scanned(strip: boolean, ...pieces: string[]): { out: string; scanner: SseScanner } {
  const scanner = new SseScanner(strip);
  const out = [...pieces.map((p) => scanner.push(Buffer.from(p))), scanner.flush()].map((b) => Buffer.from(b).toString('utf8')).join('');
  return { out, scanner };
}

describe('regressions found by this fuzz', () => {
  const chunkData = '{"id":"c1","choices":[{"index":0,"delta":{"content":"é😀"}}],"usage":null}';
  const usageData = '{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}';
  const plain = chunkData.replace(',"usage":null', '');

  // Were: events were cut by /\r\n\r\n|\n\n|\r\r/, so a blank line written LF CR LF, CR LF CR,
  // LF CR or CR CR LF did not end its event (the framer missed some of them too): the next
  // event was read as part of it, and the usage chunk behind it reached a client that had not
  // asked for it, with "usage":null left in the chunks (seed 0x5eed5e5e: 107 of 240 streams).
  it.each([
    ['LF CR LF', '\n\r\n'],
    ['CR LF CR', '\r\n\r'],
    ['LF CR', '\n\r'],
    ['CR CR LF', '\r\r\n'],
    ['CR LF LF', '\r\n\n'],
  ])('a blank line written %s ends the event', (_name, end) => {
    const stream = `data: ${chunkData}${end}data: ${chunkData}${end}data: ${usageData}${end}data: [DONE]${end}`;
    const { out, scanner } = scanned(true, stream);
    expect(out).toBe(`data: ${plain}${end}data: ${plain}${end}data: [DONE]${end}`);
    expect(scanner.summary.usage).toMatchObject({ prompt_tokens: 3 });
    expect(withoutGatewayUsage(stream)).toBe(out);
  });

  // Were: a CR CR LF blank line was cut after CR CR, and its LF went on with the next event:
  // a stray LF when the usage chunk it ended was dropped.
  it('the LF of a CR LF that ends a dropped usage chunk in the next chunk goes with it', () => {
    expect(scanned(true, `data: ${chunkData}\n\ndata: ${usageData}\r\r`, `\ndata: [DONE]\n\n`).out).toBe(`data: ${plain}\n\ndata: [DONE]\n\n`);
    // Kept when the event it ends is kept.
    expect(scanned(false, `data: ${chunkData}\r\r`, `\ndata: [DONE]\r\r`).out).toBe(`data: ${chunkData}\r\r\ndata: [DONE]\r\r`);
  });

  // Were: `\s*` around "usage": null crossed the line end of a multi-line data, so
  // `"usage": null,` first in pretty-printed JSON was removed with the line end after it,
  // gluing two `data:` prefixes (`data:  data:  "id"`: openai-node threw a SyntaxError),
  // and last in it was not removed at all.
  it('"usage": null on its own line of a multi-line data is removed, the JSON still whole', () => {
    const pretty = (first: boolean) => {
      const obj = first ? { usage: null, id: 'c1', choices: [] as unknown[] } : { id: 'c1', choices: [{ index: 0, delta: { content: '😀' } }], usage: null };
      return JSON.stringify(obj, null, 2)
        .split('\n')
        .map((line) => `data: ${line}\r`)
        .join('');
    };
    for (const first of [true, false]) {
      const stream = `${pretty(first)}\r`;
      const { out } = scanned(true, stream);
      const data = out.split('\r').filter((l) => l.startsWith('data:')).map((l) => l.slice(6)).join('\n');
      expect(JSON.parse(data)).not.toHaveProperty('usage');
      expect(out).toBe(withoutGatewayUsage(stream));
    }
  });

  it.each([11, 100, 111, 120, 142, 152])('seed 0x5eed5e5e, chat case %i', async (index) => {
    expect(await checkScanner(index, 0x5eed_5e5e)).toBeUndefined();
  });
});

