/**
 * Review of today's request accounting (unmatched routes, refusals, pass-through error codes)
 * and tool-definition counting, as a hostile client would try it.
 *
 * - The request log line of a request no route serves names its path. A key the client put
 *   in that path percent-escaped (`key%3Dsk-...`, `%3Fkey%3DAIza...`) must be masked like one
 *   written plainly: the path is logged with its escapes decoded, so the redactor sees it.
 * - Tool definitions nested deeper than the tool count can serialise: the count threw a
 *   RangeError (a 500, and on a stream's end an uncaught exception that ended the process);
 *   they now count 0 and the request goes on as any other that deep.
 *
 * Two real gateways on 127.0.0.1 port 0 (one with `logging.requests: true`, lines caught on
 * stdout; one with a capped template) in front of the steered mock upstream; all closed here.
 */
import { randomUUID } from 'node:crypto';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

const KEY = 'sk-proj-Review8Key0123456789abcdefghijklmnop';
const GOOGLE_KEY = 'AIzaSyReview8Key0123456789abcdefghijk';

let upstream: MockUpstream;
let logged: TestGateway;
let capped: TestGateway;
let log: GatewayLogCapture;

beforeAll(async () => {
  log = captureGatewayLog();
  upstream = await startMockUpstream();
  const template = `id: capped\nversions:\n  - version: "1.0.0"\n    constraints: {max_input_tokens: 100000}\n    messages:\n      - {role: system, content: "Be brief."}\n`;
  logged = await startTestGateway(mockConfig(upstream.url).replace('logging: {level: silent}', 'logging: {level: info, requests: true}'));
  capped = await startTestGateway(mockConfig(upstream.url, 'bindings:\n  - {model: capped-bot, template: capped@1.0.0}\n'), { templateFiles: { 'capped.yaml': template } });
});

afterAll(async () => {
  await logged?.close();
  await capped?.close();
  await upstream?.close();
  log?.restore();
});


describe('the path on the log line of a request no route serves', () => {
  it.each([
    ['an escaped = before an OpenAI key', `/files/key%3D${KEY}`, '/files/key=sk-***', KEY.slice(3)],
    ['a Gemini URL with its query escaped into the path', `/v1beta/models/gemini-pro%3AgenerateContent%3Fkey%3D${GOOGLE_KEY}`, '/v1beta/models/gemini-pro:generateContent?key=***', GOOGLE_KEY.slice(4)],
    ['an escaped key after an escape that is no UTF-8', `/x%E2%80/%73k-proj-${KEY.slice(8)}`, '/x%E2%80/sk-***', KEY.slice(8)],
    // Regression: one run of escapes, invalid as UTF-8, was kept whole, the key in it too.
    ['an escaped key in the same run as an escape that is no UTF-8', `/x%FF%2F%73k-proj-${KEY.slice(8)}`, '/x%FF/sk-***', KEY.slice(8)],
    ['an escaped key after a cut-off character in the same run', `/x%E2%80%3Fkey%3D${GOOGLE_KEY}`, '/x%E2%80?key=***', GOOGLE_KEY.slice(4)],
  ])('masks a key written percent-escaped: %s', async (_, target, shownPath, secret) => {
    const id = `review8-${randomUUID()}`;
    const res = await request(`${logged.url}${target}`, { headers: { 'x-request-id': id } });
    await res.body.dump();
    expect(res.statusCode).toBe(404);
    const { line, raw } = await log.requestLine(id);
    expect(raw).not.toContain(secret);
    expect(line).toMatchObject({ route: 'unmatched', status: 404, path: shownPath });
  });

  it('decoded control characters and quotes stay inside the one JSON line', async () => {
    const id = `review8-${randomUUID()}`;
    const res = await request(`${logged.url}/a%0A%22b%5C%00c%E2%80%A8`, { headers: { 'x-request-id': id } });
    await res.body.dump();
    const { line, raw } = await log.requestLine(id);
    expect(raw).not.toMatch(/[\n\r\0]/);
    expect(line.path).toBe('/a\n"b\\\0c\u2028');
  });
});

/** A JSON value nested `depth` levels deep: `{"a":{"a":...{}}}`. */
const nested = (depth: number) => '{"a":'.repeat(depth) + '{}' + '}'.repeat(depth);

/** A chat body with one tool whose parameters schema is nested 20,000 levels deep (a few hundred KB). */
const deepToolBody = (model: string, stream = false) =>
  `{"model":"${model}","stream":${stream},"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":${nested(20_000)}}}]}`;

describe('tool definitions nested too deeply to count', () => {
  // Regression: the tool count serialises the tools with JSON.stringify, which throws a
  // RangeError on a schema this deep: a 500. The same nesting in `messages` is a 400
  // `invalid_request` ("nested too deeply"), and so is this now.
  it('under max_input_tokens, a tool schema nested 20,000 deep is a 400 invalid_request, not a 500', async () => {
    const res = await request(`${capped.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: deepToolBody('capped-bot') });
    const body = (await res.body.json()) as { error?: { code?: string } };
    expect([res.statusCode, body.error?.code]).toEqual([400, 'invalid_request']);
  });

  // Regression, after the upstream answered (and billed): the answer has no usage, so the
  // estimate counted the tools and threw: a 500 instead of the upstream's 200.
  it('a non-stream answer without usage to a request with such a tool reaches the client', async () => {
    const res = await request(`${capped.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-no-usage': '1' },
      body: deepToolBody('gpt-4o-mini'),
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
  });

  // Regression on a stream without usage (an upstream that omits it, or a client that
  // disconnects before the usage chunk): the RangeError was thrown in the relay's end
  // callback, outside any handler, an uncaught exception that ended the process.
  it('a stream without usage to a request with such a tool is accounted, and the gateway stays up', async () => {
    const res = await request(`${capped.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-mock-no-usage': '1' },
      body: deepToolBody('gpt-4o-mini', true),
    });
    await res.body.dump();
    const health = await request(`${capped.url}/healthz`);
    expect(health.statusCode).toBe(200);
  });
});
