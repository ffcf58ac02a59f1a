/**
 * Admin API, feedback route and request log, from the outside (real sockets): what a client
 * sees, and what a log line holds.
 */
import { request } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/telemetry/logger.js';
import { redact } from '../src/telemetry/redact.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';

const ADMIN_TOKEN = 'admin-t\u00f6ken-0123456789';
const UPSTREAM_KEY = 'sk-upstream-secret-0123456789';

function config(token: string): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 500, max_body_bytes: 2000}
logging: {level: silent}
admin: {token: "${token}"}
templates: {dir: templates}
upstreams: [{name: sim, simulate: {latency_ms: 1}, api_key: ${UPSTREAM_KEY}}]
routing: {default: [sim]}
bindings:
  - {model: support-bot, experiment: support-tone}
experiments:
  - id: support-tone
    template: support-reply
    variants:
      - {name: control, version: 1.0.0, weight: 50}
      - {name: warm, version: 1.1.0, weight: 50}
`;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** A request with the path and headers exactly as given (Node writes header values as Latin-1). */
function send(gw: TestGateway, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: gw.port, method, path, headers }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (b += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = { 'content-type': 'application/json' };
const errorOf = (a: Answer) => (JSON.parse(a.body) as { error: { message: string; type: string; param: string | null; code: string } }).error;

describe('admin API with a Latin-1 token', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(config(ADMIN_TOKEN), { templates: ['config/templates/support-reply.yaml'] });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('takes the token as a Latin-1 header carries it (README: anything up to Latin-1 is a valid token)', async () => {
    expect((await send(gw, 'GET', '/admin/templates', { authorization: `Bearer ${ADMIN_TOKEN}` })).status).toBe(200);
    // The same token sent as UTF-8 bytes reads as other characters: not the token.
    const utf8AsLatin1 = Buffer.from(ADMIN_TOKEN, 'utf8').toString('latin1');
    const wrong = await send(gw, 'GET', '/admin/templates', { authorization: `Bearer ${utf8AsLatin1}` });
    expect(wrong.status).toBe(401);
    expect(wrong.headers['www-authenticate']).toBe('Bearer realm="promptgate-admin"');
  });

  it('no admin answer holds the upstream key, a stack or a file path', async () => {
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    for (const path of ['/admin/templates', '/admin/templates/support-reply', '/admin/experiments', '/admin/experiments/support-tone', '/admin/assign?experiment=support-tone&user=u1', '/admin/assign?experiment=support-tone&user=%ZZ', '/admin/templates/%E0%A4%A']) {
      const res = await send(gw, 'GET', path, auth);
      expect(res.status, path).toBeLessThan(500);
      expect(res.body, path).not.toContain(UPSTREAM_KEY);
      expect(res.body, path).not.toContain(ADMIN_TOKEN);
      expect(res.body, path).not.toMatch(/\n\s+at |\/(?:tmp|work|home)\//);
    }
  });
});

describe('POST /v1/feedback', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(config(''), { templates: ['config/templates/support-reply.yaml'] });
  });
  afterAll(async () => {
    await gw?.close();
  });

  // Regression: `null`, `[]` and `5` parse as JSON, and answered "'request_id' is required."
  // (param request_id), where the README's errors table says a body that is not a JSON object
  // is 400 invalid_json.
  it('a body that is JSON but not an object is 400 invalid_json, like one that does not parse', async () => {
    for (const body of ['null', '[]', '[{"request_id":"x"}]', '5', '"x"', 'true', '{bad', '']) {
      const res = await send(gw, 'POST', '/v1/feedback', json, body);
      expect(res.status, body).toBe(400);
      expect(errorOf(res), body).toMatchObject({ type: 'invalid_request_error', code: 'invalid_json', param: null });
    }
  });

  // Regression: only POST was the gateway's; GET /v1/feedback (or PUT, DELETE) fell through
  // to the /v1/* pass-through and went to the upstream, with the upstream's API key.
  it('another method is 405 with allow: POST, answered by the gateway, not the upstream', async () => {
    for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
      const res = await send(gw, method, '/v1/feedback', json, method === 'GET' || method === 'DELETE' ? undefined : '{}');
      expect(res.status, method).toBe(405);
      expect(res.headers.allow, method).toBe('POST');
      expect(errorOf(res), method).toMatchObject({ code: 'method_not_allowed', type: 'invalid_request_error' });
      expect(res.headers['x-promptgate-request-id'], method).toBeUndefined(); // no proxied request
    }
  });

  it('still records feedback for a request the experiment served, once per metric', async () => {
    const chat = await send(gw, 'POST', '/v1/chat/completions', json, JSON.stringify({ model: 'support-bot', user: 'u1', messages: [{ role: 'user', content: 'hi' }] }));
    expect(chat.status).toBe(200);
    const id = chat.headers['x-promptgate-request-id'] as string;
    const first = await send(gw, 'POST', '/v1/feedback', json, JSON.stringify({ request_id: id, value: true }));
    expect(first.status).toBe(200);
    expect(JSON.parse(first.body)).toEqual({ status: 'recorded', request_id: id, metric: 'feedback.thumbs_up', experiment: 'support-tone', variant: chat.headers['x-promptgate-variant'] });
    expect((await send(gw, 'POST', '/v1/feedback', json, JSON.stringify({ request_id: id, value: 0 }))).status).toBe(409);
  });
});

describe('log redaction', () => {
  function logged(fields: Record<string, unknown>): { line: string; parsed: Record<string, unknown> } {
    const lines: string[] = [];
    createLogger({ write: (l) => lines.push(l) }).warn('x', fields);
    expect(lines).toHaveLength(1);
    return { line: lines[0], parsed: JSON.parse(lines[0]) as Record<string, unknown> };
  }

  // Regression: a string value of a secret-named field was masked only up to its first space:
  // `"authorization":"Token abc"` was logged as `"*** abc"`, a passphrase kept all but its first word.
  it('masks the whole value of a secret-named field, also with spaces in it, at any depth', () => {
    const { line, parsed } = logged({
      authorization: 'Token tok-4f9a8b7c',
      headers: { Authorization: 'Digest username="u", response="resp-6d5c"', 'x-api-key': 'k 9z8y7x', cookie: 'a=1; session=sess-1a2b3c' },
      upstream: [{ password: 'correct horse battery staple' }],
      empty_password: '',
    });
    expect(line).not.toMatch(/tok-4f9a8b7c|resp-6d5c|9z8y7x|sess-1a2b3c|horse|battery|staple/);
    expect(parsed).toMatchObject({
      authorization: '***',
      headers: { Authorization: '***', 'x-api-key': '***', cookie: '***' },
      upstream: [{ password: '***' }],
      empty_password: '',
    });
  });

  it('masks a field named token, without touching the token counts of a request line', () => {
    const { parsed } = logged({ token: 'abc123secret', admin_token: 'def456secret', input_tokens: 12, output_tokens: 3, tokens_estimated: true });
    expect(parsed).toMatchObject({ token: '***', admin_token: '***', input_tokens: 12, output_tokens: 3, tokens_estimated: true });
  });

  // Regression: `?key=` (Gemini and other providers), `&token=` and an Azure SAS `&sig=` in a
  // logged URL were written as is; only `api_key=` and the like were masked.
  it('masks credentials in URL query strings under short names', () => {
    const { line, parsed } = logged({
      endpoint: 'https://collector.example.com/v1/traces?key=abcSECRET1&tenant=t1',
      err: { message: 'fetch failed https://x.blob.core.windows.net/c?sv=2024&sig=SIGsecret%2B2&token=TOKsecret3' },
    });
    expect(line).not.toMatch(/SECRET1|SIGsecret|TOKsecret3/);
    expect(parsed.endpoint).toBe('https://collector.example.com/v1/traces?key=***&tenant=t1');
    expect((parsed.err as { message: string }).message).toBe('fetch failed https://x.blob.core.windows.net/c?sv=2024&sig=***&token=***');
    for (const s of ['keys=3 tokens=4', 'the key=value form', 'a monkey=1', 'route /v1/models?limit=10&order=asc']) expect(redact(s)).toBe(s);
  });
});
