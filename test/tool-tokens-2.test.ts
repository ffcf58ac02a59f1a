/**
 * Follow-ups to counting tool definitions as prompt tokens (test/tool-definition-tokens.test.ts):
 * - a tool list is counted once per process (remembered by digest and encoding, bounded);
 * - `max_input_tokens` counts the whole prompt in the model's encoding, the usage estimate's;
 * - the span's prompt-token count (`countPromptTokens`) includes the tool definitions;
 * - requests Node's HTTP parser turns away (400, 431, 408) count under `route="unmatched"`
 *   with a log line that shows nothing the client sent.
 * The counting tests call the pure functions; the rest runs a real gateway on 127.0.0.1
 * port 0 with the recording mock upstream. Servers are closed by this file.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { countByLines, countPromptTokens, messagesTokens } from '../src/context/tokens.js';
import { TokenCounter } from '../src/tokenizer/counter.js';
import { countTokens } from '../src/tokenizer/index.js';
import { toolDefinitionTokens, toolDefinitionTokensRemembered } from '../src/tokenizer/tool-definitions.js';
import { toolTokensOnce } from '../src/telemetry/usage.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { scrapeMetrics } from './helpers/metrics.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { until } from './helpers/raw-socket.js';

/** A tool with a schema of some size, made distinct by `tag` (each call a new object). */
function searchTool(tag: string) {
  return {
    type: 'function',
    function: {
      name: `search_orders_${tag}`,
      description: 'Search the customer orders by status, date range, carrier and destination, newest first.',
      parameters: {
        type: 'object',
        properties: Object.fromEntries(['status', 'carrier', 'destination_country', 'sku'].map((field) => [field, { type: 'string', description: `Only orders whose ${field} matches.` }])),
        required: ['status'],
      },
    },
  };
}

/** Counts the tokenizer's `count` calls made by `run`. */
function tokenizerCalls(run: () => void): number {
  const spy = vi.spyOn(TokenCounter.prototype, 'count');
  try {
    run();
    return spy.mock.calls.length;
  } finally {
    spy.mockRestore();
  }
}

describe('a tool list is counted once per process', () => {
  it('counts an unchanged tool list (sent again as a new object) once, and gives the same count', () => {
    const tag = `once-${Math.random()}`;
    let first = 0;
    let again = 0;
    expect(tokenizerCalls(() => (first = toolDefinitionTokensRemembered({ tools: [searchTool(tag)] })))).toBeGreaterThan(0);
    expect(tokenizerCalls(() => (again = toolDefinitionTokensRemembered({ tools: [searchTool(tag)] })))).toBe(0);
    expect(again).toBe(first);
    expect(first).toBe(toolDefinitionTokens({ tools: [searchTool(tag)] }));
  });

  it('counts the same list again in another encoding, and a changed list anew', () => {
    const tag = `encoding-${Math.random()}`;
    toolDefinitionTokensRemembered({ tools: [searchTool(tag)] }, 'o200k_base');
    let cl100k = 0;
    expect(tokenizerCalls(() => (cl100k = toolDefinitionTokensRemembered({ tools: [searchTool(tag)] }, 'cl100k_base')))).toBeGreaterThan(0);
    expect(cl100k).toBe(toolDefinitionTokens({ tools: [searchTool(tag)] }, 'cl100k_base'));
    const changed = { tools: [searchTool(tag)], functions: [{ name: 'extra', parameters: { type: 'object' } }] };
    expect(tokenizerCalls(() => toolDefinitionTokensRemembered(changed))).toBeGreaterThan(0);
  });

  it('is bounded: a client that varies its tools evicts the oldest list', () => {
    const tag = `evicted-${Math.random()}`;
    toolDefinitionTokensRemembered({ tools: [searchTool(tag)] });
    for (let i = 0; i < 1024; i++) toolDefinitionTokensRemembered({ functions: [{ name: `f${i}-${tag}` }] });
    expect(tokenizerCalls(() => toolDefinitionTokensRemembered({ tools: [searchTool(tag)] }))).toBeGreaterThan(0);
  });

  it('toolTokensOnce of a later request with the same tools does not count them', () => {
    const tag = `requests-${Math.random()}`;
    const turn = () => ({ model: 'gpt-4o', tools: [searchTool(tag)] });
    const first = toolTokensOnce(turn())();
    let second = 0;
    expect(tokenizerCalls(() => (second = toolTokensOnce(turn())()))).toBe(0);
    expect(second).toBe(first);
  });
});

describe('counting in the model encoding', () => {
  it('counts a text line by line exactly as a whole in cl100k_base too (random text)', () => {
    const alphabet = ['a', 'Z', 'q', 'é', 'Ж', '世', '😀', '7', '42', ' ', '  ', '\t', '\n', '\n\n', '\r\n', '\r', '.', ',', '/', "'s", "'", '-', '"', '<|endoftext|>', ':', '\u200b', 'The', ' refund', 'Help-centre'];
    let seed = 11;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 3000; i++) {
      let text = '';
      const length = Math.floor(random() * 60);
      for (let j = 0; j < length; j++) text += alphabet[Math.floor(random() * alphabet.length)];
      expect(countByLines(text, 'cl100k_base'), JSON.stringify(text)).toBe(countTokens(text, 'cl100k_base'));
    }
  });

  it('messagesTokens counts in the encoding asked for, and o200k_base by default', () => {
    const messages = [{ role: 'user', content: 'こんにちは、注文の配送状況を教えてください。\nThanks' }];
    const text = messages[0].content;
    expect(messagesTokens(messages, 'cl100k_base')).toBe(3 + countTokens(text, 'cl100k_base'));
    expect(messagesTokens(messages)).toBe(3 + countTokens(text, 'o200k_base'));
  });

  it('countPromptTokens includes the tool definitions, counted in the encoding asked for', () => {
    const messages = [{ role: 'user', content: 'Which of my orders are late?' }];
    const tools = { tools: [searchTool('prompt')] };
    const withoutTools = countPromptTokens(messages);
    expect(countPromptTokens(messages, { toolTokens: toolDefinitionTokens(tools) })).toBe(withoutTools + toolDefinitionTokens(tools));
    const cl100k = countPromptTokens(messages, { encoding: 'cl100k_base', toolTokens: toolDefinitionTokens(tools, 'cl100k_base') });
    expect(cl100k).toBe(3 + 3 + countTokens('user', 'cl100k_base') + countTokens(messages[0].content, 'cl100k_base') + toolDefinitionTokens(tools, 'cl100k_base'));
  });
});

// Japanese takes more cl100k_base tokens than o200k_base ones: a cap between the two counts
// tells which encoding the check used.
const SYSTEM = 'Answer briefly.';
const JAPANESE = '注文の配送状況を教えてください。荷物はいつ届きますか。追跡番号も知りたいです。'.repeat(4);
const PROMPT = [
  { role: 'system', content: SYSTEM },
  { role: 'user', content: JAPANESE },
];
const O200K = messagesTokens(PROMPT, 'o200k_base');
const CL100K = messagesTokens(PROMPT, 'cl100k_base');
const CAP = Math.floor((O200K + CL100K) / 2);

let upstream: MockUpstream;
let gw: TestGateway;
let dir: string;
let log: GatewayLogCapture;

beforeAll(async () => {
  log = captureGatewayLog();
  upstream = await startMockUpstream();
  dir = mkdtempSync(path.join(tmpdir(), 'promptgate-tool-tokens-2-'));
  const template = path.join(dir, 'intl.yaml');
  writeFileSync(
    template,
    `id: intl
versions:
  - version: "1.0.0"
    constraints: {max_input_tokens: ${CAP}}
    messages:
      - {role: system, content: "${SYSTEM}"}
`,
  );
  const yaml = mockConfig(upstream.url).replace('logging: {level: silent}', 'logging: {level: info, requests: true}');
  gw = await startTestGateway(yaml, { templates: [template] });
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  log?.restore();
  rmSync(dir, { recursive: true, force: true });
});

describe('max_input_tokens counts the whole prompt in the model encoding', () => {
  const chat = (model: string) =>
    request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-promptgate-template': 'intl' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: JAPANESE }] }),
    });

  it('the test prompt is over the cap in cl100k_base only', () => {
    expect(O200K).toBeLessThanOrEqual(CAP);
    expect(CL100K).toBeGreaterThan(CAP);
  });

  it('refuses a gpt-4 prompt that is over the cap in cl100k_base tokens (was: counted in o200k_base, let through)', async () => {
    const res = await chat('gpt-4');
    const body = (await res.body.json()) as { error: { code: string; message: string } };
    expect(res.statusCode).toBe(400);
    expect(body.error.code).toBe('context_length_exceeded');
    expect(body.error.message).toContain(`This prompt is ${CL100K} tokens`);
  });

  it('lets the same prompt to gpt-4o through: o200k_base counts it under the cap', async () => {
    const res = await chat('gpt-4o');
    await res.body.dump();
    expect(res.statusCode).toBe(200);
  });
});

describe('requests Node turns away are counted under route="unmatched"', () => {
  const sockets: Socket[] = [];
  afterEach(() => {
    for (const s of sockets.splice(0)) s.destroy();
  });

  /** Sends `raw`, ends the writing side, and resolves with everything the gateway answered. */
  function exchangeRaw(raw: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(gw.port, '127.0.0.1', () => socket.end(raw));
      sockets.push(socket);
      let out = '';
      socket.on('data', (d) => (out += d));
      socket.on('end', () => resolve(out));
      socket.on('error', reject);
    });
  }

  const unmatched = async (errorType: string, status: string) =>
    (await scrapeMetrics(gw.url)).sum('promptgate_requests_total', { route: 'unmatched', status_class: status, error_type: errorType }) ?? 0;

  /** The request log lines of route `unmatched` with this error type, written after `since` lines. */
  const unmatchedLines = (errorType: string, since: number) => log.requests.slice(since).filter((l) => l.route === 'unmatched' && l.error_type === errorType);

  function envelopeOf(text: string) {
    return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)).error;
  }

  it.each([
    ['a garbage request line', 'NOT HTTP sk-live-secret-key-123456\r\n\r\n', 400, 'invalid_request'],
    ['headers over the limit', `GET /v1/models HTTP/1.1\r\nhost: x\r\nauthorization: Bearer sk-live-secret-key-123456\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`, 431, 'headers_too_large'],
  ])('%s: still answered in the envelope, counted once, logged without what the client sent', async (_name, raw, status, code) => {
    const before = await unmatched(code, '4xx');
    const lines = log.requests.length;
    const text = await exchangeRaw(raw);
    expect(text.startsWith(`HTTP/1.1 ${status} `)).toBe(true);
    expect(text).toMatch(/connection: close/i);
    expect(envelopeOf(text)).toMatchObject({ type: 'invalid_request_error', code, param: null });
    await until(async () => (await unmatched(code, '4xx')) === before + 1);
    const logged = unmatchedLines(code, lines);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ route: 'unmatched', status, outcome: 'error', error_type: code });
    expect(logged[0].path).toBeUndefined();
    expect(log.rawRequests.slice(lines).join('\n')).not.toContain('secret-key');
    expect(log.others.join('\n')).not.toContain('secret-key');
  });

  it('a request not received in time (Node: ERR_HTTP_REQUEST_TIMEOUT): 408 in the envelope, counted as request_timeout', async () => {
    const before = await unmatched('request_timeout', '4xx');
    const lines = log.requests.length;
    // Node checks its timeouts every 30 s: the test raises the error it would raise, on the
    // server's side of a connection whose headers have not all come.
    const serverSide = new Promise<Socket>((resolve) => gw.server.once('connection', resolve));
    const client = connect(gw.port, '127.0.0.1', () => client.write('POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n'));
    sockets.push(client);
    let text = '';
    client.on('data', (d) => (text += d));
    const ended = new Promise<void>((resolve) => client.on('end', resolve));
    const socket = await serverSide;
    await until(() => socket.bytesRead > 0);
    gw.server.emit('clientError', Object.assign(new Error('Request timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }), socket);
    await ended;
    expect(text.startsWith('HTTP/1.1 408 ')).toBe(true);
    expect(envelopeOf(text)).toMatchObject({ type: 'invalid_request_error', code: 'request_timeout' });
    await until(async () => (await unmatched('request_timeout', '4xx')) === before + 1);
    expect(unmatchedLines('request_timeout', lines)).toHaveLength(1);
  });

  it('an HTTP/1.1 request without Host: 400 invalid_request, counted, its path (without the query) logged', async () => {
    const before = await unmatched('invalid_request', '4xx');
    const lines = log.requests.length;
    const text = await exchangeRaw('GET /v1/models?key=sk-live-secret-key-123456 HTTP/1.1\r\n\r\n');
    expect(text.startsWith('HTTP/1.1 400 ')).toBe(true);
    expect(envelopeOf(text)).toMatchObject({ code: 'invalid_request' });
    await until(async () => (await unmatched('invalid_request', '4xx')) === before + 1);
    const logged = unmatchedLines('invalid_request', lines);
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ method: 'GET', path: '/v1/models', status: 400 });
    expect(log.rawRequests.slice(lines).join('\n')).not.toContain('secret-key');
  });

  it('a connection reset is not a request: nothing counted', async () => {
    const before = (await scrapeMetrics(gw.url)).sum('promptgate_requests_total', { route: 'unmatched' }) ?? 0;
    const serverSide = new Promise<Socket>((resolve) => gw.server.once('connection', resolve));
    const client = connect(gw.port, '127.0.0.1');
    sockets.push(client);
    const socket = await serverSide;
    gw.server.emit('clientError', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), socket);
    await until(() => socket.destroyed);
    expect((await scrapeMetrics(gw.url)).sum('promptgate_requests_total', { route: 'unmatched' }) ?? 0).toBe(before);
  });

  // Regression (soak: 12,001 requests accounted of 12,000): a write to a client that had left
  // (EPIPE) reached the clientError handler and was counted as a refused request.
  it('a connection error other than a reset (EPIPE) is not a request: nothing counted', async () => {
    const before = (await scrapeMetrics(gw.url)).sum('promptgate_requests_total', { route: 'unmatched' }) ?? 0;
    const serverSide = new Promise<Socket>((resolve) => gw.server.once('connection', resolve));
    const client = connect(gw.port, '127.0.0.1');
    sockets.push(client);
    const socket = await serverSide;
    gw.server.emit('clientError', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }), socket);
    await new Promise((r) => setTimeout(r, 50));
    expect((await scrapeMetrics(gw.url)).sum('promptgate_requests_total', { route: 'unmatched' }) ?? 0).toBe(before);
  });

  it('a body cut short is counted once, by the route that took the request, not again as unmatched', async () => {
    const routeBefore = (await scrapeMetrics(gw.url)).sum('promptgate_requests_total', { route: '/v1/embeddings' }) ?? 0;
    const unmatchedBefore = (await scrapeMetrics(gw.url)).sum('promptgate_requests_total', { route: 'unmatched' }) ?? 0;
    const client = connect(gw.port, '127.0.0.1', () =>
      client.write('POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{"model":"text-embedding-3-small","inp'),
    );
    sockets.push(client);
    client.on('error', () => undefined);
    await new Promise((r) => setTimeout(r, 100));
    client.end(); // the request ends before its body: Node's parser sees an unexpected end of input
    await until(async () => ((await scrapeMetrics(gw.url)).sum('promptgate_requests_total', { route: '/v1/embeddings' }) ?? 0) === routeBefore + 1);
    await new Promise((r) => setTimeout(r, 100));
    expect((await scrapeMetrics(gw.url)).sum('promptgate_requests_total', { route: 'unmatched' }) ?? 0).toBe(unmatchedBefore);
  });
});
