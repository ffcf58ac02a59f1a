/**
 * A hostile client on the sidecar's network: can it get the upstream key, a context-source
 * token or the admin token, make the gateway call a host or path of its choosing, or read
 * another user's data? Real requests through a gateway on 127.0.0.1, with local servers as
 * upstream, context source and "attacker" host.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';

const KEY = 'sk-upstream-SECRET-0123456789';
const CTX_TOKEN = 'ctx-SECRET-token-987654';
const ADMIN = 'admin-SECRET-token-42';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

interface Recorder {
  url: string;
  port: number;
  seen: Seen[];
  answer: (req: Seen, res: ServerResponse) => void;
  close(): Promise<void>;
}

async function recorder(answer: Recorder['answer'] = (_q, res) => res.end('{}')): Promise<Recorder> {
  const r = { seen: [] as Seen[], answer } as Recorder;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const seen = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() };
      r.seen.push(seen);
      r.answer(seen, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.port = (server.address() as AddressInfo).port;
  r.url = `http://127.0.0.1:${r.port}`;
  r.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return r;
}

/** One raw request on its own connection; resolves with the whole answer text. */
function raw(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')));
    socket.on('end', () => resolve(out));
    socket.on('error', reject);
    socket.write(text);
  });
}

const TEMPLATE = `
id: ctx
versions:
  - version: "1.0.0"
    labels: [production]
    model: gpt-4o-mini
    context: {use: [customer]}
    messages:
      - role: system
        content: "Customer: {{#customer}}{{name}} ({{tier}}){{/customer}}"
`;

let upstream: Recorder;
let ctx: Recorder;
let evil: Recorder;
let gw: TestGateway;

const echoAuth: Recorder['answer'] = (q, res) => {
  res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': `Bearer error="invalid_token", token="${q.headers.authorization}"`, 'x-request-id': `req ${q.headers.authorization}`, 'x-debug-auth': String(q.headers.authorization) });
  res.end(JSON.stringify({ error: { message: `Incorrect API key provided: ${q.headers.authorization}`, type: 'invalid_request_error' } }));
};

beforeAll(async () => {
  upstream = await recorder();
  ctx = await recorder((_q, res) => res.end(JSON.stringify({ name: 'Ann', tier: 'gold' })));
  evil = await recorder();
  process.env.HC_CTX_TOKEN = CTX_TOKEN;
  const dir = mkdtempSync(path.join(tmpdir(), 'hostile-'));
  writeFileSync(path.join(dir, 'ctx.yaml'), TEMPLATE);
  gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: silent}
templates: {dir: templates}
admin: {token: ${ADMIN}}
upstreams:
  - name: main
    base_url: ${upstream.url}/base
    api_key: ${KEY}
    retry: {attempts: 0}
    breaker: {failures: 0}
routing: {default: [main]}
bindings: [{model: bot, template: ctx}]
context:
  deadline_ms: 1000
  builders:
    - name: customer
      kind: http
      url: "${ctx.url}/customers/{{user_id}}"
      headers: {authorization: "Bearer \${HC_CTX_TOKEN}"}
      pick: {name: name, tier: tier}
      cache: {ttl_ms: 60000}
`, { templates: [path.join(dir, 'ctx.yaml')] });
});
afterAll(async () => {
  await gw?.close();
  await Promise.all([upstream.close(), ctx.close(), evil.close()]);
});
afterEach(() => {
  upstream.answer = (_q, res) => res.end('{}');
  upstream.seen.length = 0;
  ctx.seen.length = 0;
  evil.seen.length = 0;
});

const chat = (body: object, headers: Record<string, string> = {}) =>
  fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

/** Status line, headers and body of a raw request, as one text. */
const rawGet = (target: string, headers = '') => raw(gw.port, `GET ${target} HTTP/1.1\r\nhost: 127.0.0.1\r\n${headers}connection: close\r\n\r\n`);

describe('the upstream key never comes back to the client', () => {
  // Regression: an upstream (or a misconfigured proxy before it) that echoes the request's
  // authorization had the gateway relay the key in the body, www-authenticate, x-request-id.
  it('an upstream echoing authorization in its error body and headers: masked on pass-through and chat (it was relayed)', async () => {
    upstream.answer = echoAuth;
    const answers = [await fetch(`${gw.url}/v1/models`), await chat({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] })];
    for (const res of answers) {
      const text = `${JSON.stringify([...res.headers])}\n${await res.text()}`;
      expect(res.status).toBe(401);
      expect(text).not.toContain(KEY);
      expect(text).toContain('*'.repeat(KEY.length));
      expect(res.headers.get('www-authenticate')).toBe(`Bearer error="invalid_token", token="Bearer ${'*'.repeat(KEY.length)}"`);
    }
    // The upstream did get the key: only the answer is masked.
    expect(upstream.seen.every((q) => q.headers.authorization === `Bearer ${KEY}`)).toBe(true);
  });

  it('a key split across body chunks is masked too, and the length stays right', async () => {
    upstream.answer = (q, res) => {
      const echoed = `{"echo":"${q.headers.authorization}"}`;
      const cut = echoed.indexOf(KEY) + 7;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(echoed)) });
      res.write(echoed.slice(0, cut));
      setTimeout(() => res.end(echoed.slice(cut)), 30);
    };
    const res = await fetch(`${gw.url}/v1/anything`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const body = await res.text();
    expect(body).toBe(`{"echo":"Bearer ${'*'.repeat(KEY.length)}"}`);
    expect(res.headers.get('content-length')).toBe(String(Buffer.byteLength(body)));
  });

  it('a streamed chat answer passes unchanged and at once (nothing that could start the key is held)', async () => {
    upstream.answer = (_q, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n');
      setTimeout(() => res.end('data: [DONE]\n\n'), 800);
    };
    const res = await chat({ model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    const reader = res.body!.getReader();
    const started = Date.now();
    const first = new TextDecoder().decode((await reader.read()).value);
    expect(Date.now() - started).toBeLessThan(600);
    expect(first).toContain('"content":"Hi"');
    while (!(await reader.read()).done);
  });

  it('an upstream 302 to another host is relayed, not followed: the other host never gets the key', async () => {
    upstream.answer = (_q, res) => {
      res.writeHead(302, { location: `${evil.url}/steal` });
      res.end();
    };
    const res = await fetch(`${gw.url}/v1/models`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(`${evil.url}/steal`);
    const c = await chat({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] });
    expect(c.status).toBe(302);
    await c.text();
    expect(evil.seen).toEqual([]);
  });
});

describe('pass-through paths stay under the base_url path of the configured upstream', () => {
  // Regression: `#` went upstream as a path character; an upstream that resolves the dot
  // segments after it (Go's ServeMux, path-normalising proxies) served /admin.
  it('a fragment is dropped, not sent upstream (it went as /base/models#/../../admin)', async () => {
    for (const target of ['/v1/models#/../../admin', '/v1/models?x=1#/../../admin']) {
      expect((await rawGet(target)).split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
      expect(upstream.seen.at(-1)!.url).toMatch(/^\/base\/models(\?x=1)?$/);
    }
  });

  it('checked, held: POST /v1/chat/completions#x goes through the chat pipeline, not past it', async () => {
    const body = JSON.stringify({ model: 'bot', user: 'u1', messages: [{ role: 'user', content: 'hi' }] });
    const res = await raw(gw.port, `POST /v1/chat/completions#x HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`);
    expect(res.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(upstream.seen.map((q) => q.url)).toEqual(['/base/chat/completions']);
    expect(JSON.parse(upstream.seen[0].body).model).toBe('gpt-4o-mini'); // the binding's template was applied
  });

  // Regression: `..%2F` went upstream as is; nginx decodes %2F before resolving dot segments.
  it('an encoded dot segment (..%2F, ..%5C, %2e%2e%2F) is refused 400, the upstream not called (it was relayed)', async () => {
    for (const target of ['/v1/..%2fadmin', '/v1/models%2F..%2F..%2Fadmin', '/v1/..%5Cadmin', '/v1/%2e%2e%2fadmin', '/v1/x/.%2F..%2Fy']) {
      const res = await rawGet(target);
      expect(res.split('\r\n')[0], target).toBe('HTTP/1.1 400 Bad Request');
      expect(res).toContain('"code":"invalid_request"');
    }
    expect(upstream.seen).toEqual([]);
    // An encoded slash without a dot segment still goes as written (file ids, README).
    await rawGet('/v1/files/a%2Fb..c/x');
    expect(upstream.seen.at(-1)!.url).toBe('/base/files/a%2Fb..c/x');
  });

  it('checked, held: dot segments, //host paths, absolute-form and Host header name no other upstream or path', async () => {
    const cases: [string, string, string | null][] = [
      ['/v1/%2e%2e/v1/models', '', '/base/models'],
      ['/v1/./models', '', '/base/models'],
      ['/v1//evil.example/x', '', '/base//evil.example/x'],
      ['//evil.example/v1/models', '', null],
      [`http://evil.example:${evil.port}/v1/models`, '', '/base/models'],
      ['/v1/models', `x-forwarded-host: evil.example\r\n`, '/base/models'],
    ];
    for (const [target, headers, seen] of cases) {
      upstream.seen.length = 0;
      await rawGet(target, headers);
      expect(upstream.seen.at(-1)?.url ?? null, target).toBe(seen);
    }
    // A Host naming another host: refused or served by the configured upstream, never another.
    await raw(gw.port, `GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1:${evil.port}\r\nconnection: close\r\n\r\n`);
    await raw(gw.port, `GET /v1/models HTTP/1.1\r\nhost: evil.example/admin?\r\nconnection: close\r\n\r\n`);
    expect(evil.seen).toEqual([]);
  });
});

describe('admin API', () => {
  it('checked, held: no path spelling reaches it without the token, none reaches the upstream', async () => {
    const targets = ['/admin/templates', '/admin/../admin/templates', '/ADMIN/templates', '//admin/templates', '/admin%2ftemplates', '/admin/templates.', '/v1/../admin/templates', '/v1/%2e%2e/admin/templates', '/%61dmin/templates', '/admin/templates/', '/admin;/templates', 'http://x/admin/templates', '/admin/assign?experiment=e&user=u', '/Admin'];
    for (const t of targets) {
      const status = (await rawGet(t)).split('\r\n')[0];
      expect(['HTTP/1.1 401 Unauthorized', 'HTTP/1.1 404 Not Found'], t).toContain(status);
    }
    for (const t of targets.slice(0, 3)) expect((await rawGet(t, `authorization: Bearer ${ADMIN.slice(0, -1)}\r\n`)).split('\r\n')[0]).not.toBe('HTTP/1.1 200 OK');
    expect(upstream.seen).toEqual([]);
    expect((await rawGet('/admin/templates', `authorization: Bearer ${ADMIN}\r\n`)).split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
  });
});

describe('context sources', () => {
  const ask = (user: unknown) => chat({ model: 'bot', user, messages: [{ role: 'user', content: 'hi' }] });

  // Regression: `../admin` went as `/customers/..%2Fadmin`, which a source behind nginx
  // reads as /admin: another endpoint of the service, called with the builder's token.
  it('a user id holding a dot segment (../x, ..\\x, ..;/x) is not put in the URL path: the builder is skipped (it was sent)', async () => {
    for (const user of ['../admin', '..\\admin', 'a/../../admin', '..;/admin', './x']) {
      const res = await ask(user);
      expect(res.status, user).toBe(200);
      await res.text();
    }
    expect(ctx.seen.map((q) => q.url)).toEqual([]);
  });

  it('checked, held: other tricks stay one encoded path segment of the configured host', async () => {
    const users = ['%2e%2e', 'a@evil.example', 'a#b', 'a?b=1', 'a%2fb', '\u2025', '\uff0e\uff0e', 'a\r\nx-injected: y', `http://127.0.0.1:${evil.port}/x`, '//evil/x', 'a/b'];
    for (const user of users) await (await ask(user)).text();
    expect(ctx.seen.map((q) => q.url)).toEqual(users.map((u) => `/customers/${encodeURIComponent(u)}`));
    expect(ctx.seen.every((q) => q.headers['x-injected'] === undefined && q.headers.authorization === `Bearer ${CTX_TOKEN}`)).toBe(true);
    expect(evil.seen).toEqual([]);
  });

  it('checked, held: a source that redirects elsewhere or reflects its token is not followed and leaks nothing', async () => {
    const answers: Recorder['answer'][] = [
      (_q, res) => res.writeHead(302, { location: `${evil.url}/steal` }).end(),
      (_q, res) => res.writeHead(307, { location: `${evil.url}/steal` }).end(),
      (q, res) => res.writeHead(403, { 'content-type': 'application/json', 'x-token': String(q.headers.authorization) }).end(JSON.stringify({ error: `bad token ${q.headers.authorization}` })),
    ];
    try {
      for (const [i, answer] of answers.entries()) {
        ctx.answer = answer;
        const res = await ask(`redirect-${i}`);
        const text = `${JSON.stringify([...res.headers])}${await res.text()}`;
        expect(res.status).toBe(200);
        expect(text).not.toContain(CTX_TOKEN);
      }
      expect(evil.seen).toEqual([]);
      // Nor does the prompt sent upstream carry it.
      expect(upstream.seen.some((q) => q.body.includes(CTX_TOKEN))).toBe(false);
    } finally {
      ctx.answer = (_q, res) => res.end(JSON.stringify({ name: 'Ann', tier: 'gold' }));
    }
  });

  it("checked, held: one user's cached profile is not served to another", async () => {
    await (await ask('alice')).text();
    await (await ask('bob')).text();
    await (await ask('alice')).text();
    expect(ctx.seen.map((q) => q.url)).toEqual(['/customers/alice', '/customers/bob']);
  });
});

describe('object pollution', () => {
  it('checked, held: __proto__ and constructor.prototype in prompt_variables, metadata and tools change nothing later', async () => {
    const poison = JSON.parse('{"__proto__": {"polluted": "yes", "user_id": "victim"}, "constructor": {"prototype": {"polluted": "yes"}}}');
    const bodies = [
      { model: 'bot', messages: [{ role: 'user', content: 'hi' }], prompt_variables: poison },
      { model: 'bot', messages: [{ role: 'user', content: 'hi' }], metadata: poison },
      { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], tools: [{ type: 'function', function: { name: 'f', parameters: poison } }] },
    ];
    for (const body of bodies) await (await chat(body)).text();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('user_id');
    ctx.seen.length = 0;
    await (await chat({ model: 'bot', messages: [{ role: 'user', content: 'hi' }] })).text();
    expect(ctx.seen).toEqual([]); // no user id: the builder is skipped, not called for "victim"
  });
});
