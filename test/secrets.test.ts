/**
 * What crosses the gateway, on real sockets: which headers go upstream and come back, and
 * that no error path shows the upstream API key, the client's bearer token, a stack trace
 * or a file path, in a response, a log line, a span or a metric label.
 *
 * A raw TCP upstream and raw client requests are used where Node's HTTP stacks would
 * refuse or rewrite what is being tested (hop-by-hop headers, absolute-form targets).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { MOCK_API_KEY, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { startOtlpReceiver, type OtlpReceiver } from './telemetry-e2e/otlp-receiver.js';

const CLIENT_TOKEN = 'client-bearer-token-0123456789';
const ADMIN_TOKEN = 'admin-secret-token-0123456789';
/** A key typed where the model goes (swapped arguments): the client gets its own answer, nothing else shows the key. */
const MODEL_KEY = 'sk-proj-keytypedasmodel0123456789';
const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

/** A stack frame (`    at fn (/path/file.ts:1:2)`) or a source/file path. */
const STACK_OR_PATH = /\n\s+at |\bat .*:\d+:\d+|\/(?:tmp|work|home|srv|usr|app)\/|\.[cm]?[jt]s:\d+/;

function expectNoSecrets(text: string): void {
  expect(text).not.toContain(MOCK_API_KEY);
  expect(text).not.toContain(CLIENT_TOKEN);
  expect(text).not.toContain(ADMIN_TOKEN);
  expect(text).not.toMatch(STACK_OR_PATH);
}

/** An upstream that answers every request with `respond` as raw bytes and records each request head. */
interface RawUpstream {
  url: string;
  heads: string[];
  bodies: string[];
  respond: string;
  close(): Promise<void>;
}

async function startRawUpstream(): Promise<RawUpstream> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    socket.on('data', (data) => {
      buf = Buffer.concat([buf, data]);
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const length = Number(/^content-length: *(\d+)/im.exec(head)?.[1] ?? 0);
        if (buf.length < end + 4 + length) return;
        state.heads.push(head);
        state.bodies.push(buf.subarray(end + 4, end + 4 + length).toString('utf8'));
        buf = buf.subarray(end + 4 + length);
        socket.write(state.respond);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const state: RawUpstream = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    heads: [],
    bodies: [],
    respond: '',
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  return state;
}

interface RawResponse {
  status: number;
  /** Header lines as sent (`name: value`), names lower-cased. */
  headers: string[];
  body: string;
  raw: string;
}

/** Sends `request` as is and reads one response (content-length or chunked), then closes. */
function rawRequest(port: number, request: string): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    let raw = '';
    const done = () => {
      socket.destroy();
      const end = raw.indexOf('\r\n\r\n');
      const [statusLine, ...lines] = raw.slice(0, end).split('\r\n');
      const headers = lines.map((l) => l.replace(/^[^:]+/, (n) => n.toLowerCase()));
      resolve({ status: Number(statusLine.split(' ')[1]), headers, body: raw.slice(end + 4), raw });
    };
    socket.on('data', (d) => {
      raw += d.toString('latin1');
      const end = raw.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = /^content-length: *(\d+)/im.exec(raw.slice(0, end));
      if (length ? raw.length - end - 4 >= Number(length[1]) : raw.endsWith('\r\n0\r\n\r\n')) done();
    });
    socket.on('end', done);
    socket.on('error', reject);
  });
}

function request(method: string, target: string, headers: string[], body = ''): string {
  const lines = [`${method} ${target} HTTP/1.1`, 'host: gateway.local', ...headers];
  if (body !== '' || method === 'POST') lines.push(`content-length: ${Buffer.byteLength(body)}`);
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

const headerValues = (lines: string[], name: string) => lines.filter((l) => l.startsWith(`${name}:`)).map((l) => l.slice(name.length + 1).trim());

/** Captures what the gateway writes on stdout and stderr while it runs. */
function captureOutput(): { text: () => string; restore: () => void } {
  const chunks: string[] = [];
  const originals = [process.stdout.write, process.stderr.write];
  for (const stream of [process.stdout, process.stderr]) {
    const original = stream.write.bind(stream);
    stream.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
      chunks.push(String(chunk));
      return original(chunk, ...rest);
    }) as typeof stream.write;
  }
  return {
    text: () => chunks.join(''),
    restore: () => {
      process.stdout.write = originals[0];
      process.stderr.write = originals[1];
    },
  };
}

describe('header forwarding', () => {
  let upstream: RawUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    upstream = await startRawUpstream();
    gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - {name: keyed, base_url: "${upstream.url}", api_key: ${MOCK_API_KEY}, retry: {attempts: 0}}
  - {name: keyless, base_url: "${upstream.url}", retry: {attempts: 0}}
routing: {default: [keyed], models: {keyless-model: [keyless]}}
`);
  });
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
  });

  const clientHeaders = [
    'content-type: application/json',
    'connection: keep-alive, x-hop-listed',
    'keep-alive: timeout=5',
    'x-hop-listed: 1',
    'te: trailers',
    'trailer: x-checksum',
    'upgrade: websocket',
    'proxy-authorization: Basic Zm9vOmJhcg==',
    'proxy-connection: keep-alive',
    `authorization: Bearer ${CLIENT_TOKEN}`,
    'cookie: sid=abc',
    'x-forwarded-for: 203.0.113.7',
    'openai-organization: org-1',
  ];
  const json = '{"object":"list","data":[]}';
  const upstreamAnswer = [
    'HTTP/1.1 200 OK',
    'content-type: application/json',
    'connection: keep-alive, x-internal',
    'keep-alive: timeout=5',
    'x-internal: upstream-only',
    'proxy-authenticate: Basic realm="corp"',
    'upgrade: h2c',
    'set-cookie: a=1; Path=/',
    'set-cookie: b=2; Path=/',
    'x-request-id: req_upstream_1',
    'openai-processing-ms: 7',
    'x-ratelimit-remaining-requests: 99',
    'x-ratelimit-reset-tokens: 6m0s',
    'retry-after: 3',
    `content-length: ${json.length}`,
    '',
    json,
  ].join('\r\n');

  for (const [route, body] of [
    ['/v1/chat/completions', CHAT],
    ['/v1/embeddings', JSON.stringify({ model: 'text-embedding-3-small', input: 'hi' })],
  ] as const) {
    it(`${route}: hop-by-hop headers go neither way, the rest does`, async () => {
      upstream.respond = upstreamAnswer;
      const res = await rawRequest(gw.port, request('POST', route, clientHeaders, body));
      expect(res.status).toBe(200);

      const sent = upstream.heads.at(-1)!.split('\r\n');
      const names = sent.slice(1).map((l) => l.split(':')[0].toLowerCase());
      for (const name of ['keep-alive', 'x-hop-listed', 'te', 'trailer', 'upgrade', 'proxy-authorization', 'proxy-connection', 'transfer-encoding']) expect(names).not.toContain(name);
      expect(headerValues(sent, 'connection')).toEqual(['keep-alive']); // undici's own
      expect(headerValues(sent, 'host')).toEqual([new URL(upstream.url).host]);
      expect(headerValues(sent, 'authorization')).toEqual([`Bearer ${MOCK_API_KEY}`]);
      expect(headerValues(sent, 'content-length')).toEqual([String(Buffer.byteLength(body))]);
      expect(headerValues(sent, 'cookie')).toEqual(['sid=abc']);
      expect(headerValues(sent, 'x-forwarded-for')).toEqual(['203.0.113.7']);
      expect(headerValues(sent, 'openai-organization')).toEqual(['org-1']);

      for (const name of ['x-internal', 'proxy-authenticate', 'upgrade']) expect(headerValues(res.headers, name)).toEqual([]);
      expect(headerValues(res.headers, 'keep-alive')).not.toContain('timeout=5'); // the gateway's own connection
      expect(headerValues(res.headers, 'set-cookie')).toEqual(['a=1; Path=/', 'b=2; Path=/']);
      expect(headerValues(res.headers, 'x-request-id')).toEqual(['req_upstream_1']);
      expect(headerValues(res.headers, 'openai-processing-ms')).toEqual(['7']);
      expect(headerValues(res.headers, 'x-ratelimit-remaining-requests')).toEqual(['99']);
      expect(headerValues(res.headers, 'x-ratelimit-reset-tokens')).toEqual(['6m0s']);
      expect(headerValues(res.headers, 'retry-after')).toEqual(['3']);
    });
  }

  it('content-length is the length of the body the gateway rewrote', async () => {
    upstream.respond = upstreamAnswer;
    const body = JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'héllo' }] });
    await rawRequest(gw.port, request('POST', '/v1/chat/completions', ['content-type: application/json'], body));
    const sent = upstream.bodies.at(-1)!;
    expect(headerValues(upstream.heads.at(-1)!.split('\r\n'), 'content-length')).toEqual([String(Buffer.byteLength(sent))]);
    expect(JSON.parse(sent).stream_options).toEqual({ include_usage: true }); // added by the gateway, body whole
  });

  it('keyless: pass_through sends the client Authorization (and only it)', async () => {
    upstream.respond = upstreamAnswer;
    const body = JSON.stringify({ model: 'keyless-model', messages: [{ role: 'user', content: 'hi' }] });
    await rawRequest(gw.port, request('POST', '/v1/chat/completions', ['content-type: application/json', `authorization: Bearer ${CLIENT_TOKEN}`], body));
    expect(headerValues(upstream.heads.at(-1)!.split('\r\n'), 'authorization')).toEqual([`Bearer ${CLIENT_TOKEN}`]);
  });

  // Regression: an absolute-form target (`GET http://host/v1/models`, RFC 9112 §3.2.2) went
  // upstream glued to the base path, `GET /v1http://evil.example/v1/models`, and with a
  // base_url without a path as an absolute-form target naming the client's authority.
  it('an absolute-form request target goes upstream as its path and query only', async () => {
    upstream.respond = upstreamAnswer;
    for (const target of ['http://evil.example/v1/models?limit=1', 'https://evil.example:8443/v1/models?limit=1']) {
      const res = await rawRequest(gw.port, request('GET', target, []));
      expect(res.status).toBe(200);
      expect(upstream.heads.at(-1)!.split('\r\n')[0]).toBe('GET /v1/models?limit=1 HTTP/1.1');
    }
  });
});

describe('error paths leak nothing', () => {
  let upstream: MockUpstream;
  let receiver: OtlpReceiver;
  let gw: TestGateway;
  let output: ReturnType<typeof captureOutput>;
  const responses: RawResponse[] = [];

  beforeAll(async () => {
    upstream = await startMockUpstream();
    receiver = await startOtlpReceiver();
    for (const name of ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_TRACES_EXPORTER', 'OTEL_SDK_DISABLED', 'OTEL_EXPORTER_OTLP_PROTOCOL']) delete process.env[name];
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
    output = captureOutput();
    const port = new URL(upstream.url).port;
    gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: debug}
admin: {token: ${ADMIN_TOKEN}}
templates: {dir: templates}
upstreams:
  - {name: mock, base_url: "${upstream.url}", api_key: ${MOCK_API_KEY}, retry: {attempts: 0}, timeout: {first_byte_ms: 500}}
  - {name: refused, base_url: "http://127.0.0.1:1/v1", api_key: ${MOCK_API_KEY}, retry: {attempts: 0}}
  - {name: dns, base_url: "http://no-such-host.invalid/v1", api_key: ${MOCK_API_KEY}, retry: {attempts: 0}}
  - {name: tls, base_url: "https://127.0.0.1:${port}/v1", api_key: ${MOCK_API_KEY}, retry: {attempts: 0}}
routing: {default: [mock], models: {m-refused: [refused], m-dns: [dns], m-tls: [tls]}}
`);
    const chat = (model: string, extra: string[] = []) =>
      request('POST', '/v1/chat/completions', ['content-type: application/json', `authorization: Bearer ${CLIENT_TOKEN}`, ...extra], JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }));
    const cases: Array<[string, number]> = [
      [chat('m-refused'), 503],
      [chat('m-dns'), 503],
      [chat('m-tls'), 503],
      [chat('gpt-4o-mini', ['x-mock-delay-ms: 3000']), 504],
      [chat('gpt-4o-mini', ['x-mock-status: 401']), 401],
      [chat(MODEL_KEY, [`x-mock-model: ${MODEL_KEY}`]), 200],
      [request('POST', '/v1/chat/completions', ['content-type: application/json', `authorization: Bearer ${CLIENT_TOKEN}`], '{"model":'), 400],
      [request('POST', '/v1/chat/completions', ['content-type: text/plain', `authorization: Bearer ${CLIENT_TOKEN}`], 'hi'), 415],
      [request('GET', '/v2/unknown', [`authorization: Bearer ${CLIENT_TOKEN}`]), 404],
      [request('GET', '/admin/templates', []), 401],
      [request('GET', '/admin/templates', [`authorization: Bearer ${CLIENT_TOKEN}`]), 401],
      [request('GET', '/admin/templates', [`authorization: Basic ${Buffer.from(`x:${ADMIN_TOKEN}`).toString('base64')}`]), 401],
    ];
    for (const [req, status] of cases) {
      const res = await rawRequest(gw.port, req);
      expect(res.status, req.split('\r\n')[0]).toBe(status);
      responses.push(res);
    }
    await new Promise((r) => setTimeout(r, 300)); // spans export every 50 ms
  });
  afterAll(async () => {
    await gw?.close();
    output?.restore();
    await upstream?.close();
    await receiver?.close();
  });

  it('responses: OpenAI error envelopes without keys, tokens, stacks or paths', () => {
    for (const res of responses) {
      expectNoSecrets(res.raw);
      if (res.status === 200) continue; // the answer to the model typed as a key
      const error = JSON.parse(res.body).error;
      expect(Object.keys(error).sort()).toEqual(['code', 'message', 'param', 'type']);
    }
    const admin = responses.slice(-3);
    expect(new Set(admin.map((r) => r.body)).size).toBe(1); // no hint which part of the credentials was wrong
    expect(headerValues(admin[0].headers, 'www-authenticate')).toEqual(['Bearer realm="promptgate-admin"']);
  });

  it('log lines, spans and metrics: no keys, tokens, stacks or paths', async () => {
    const requestLines = output
      .text()
      .split('\n')
      .filter((l) => l.includes('"msg":"request"'));
    expect(requestLines.length).toBeGreaterThanOrEqual(7);
    expectNoSecrets(requestLines.join('\n'));

    // The resource (OTel's process detector: executable path, command line) describes the
    // process, not a request; names, attributes and status are what requests fill in.
    expect(receiver.spans.length).toBeGreaterThanOrEqual(7);
    const spans = JSON.stringify(receiver.spans.map(({ name, attributes, status }) => ({ name, attributes, status })));
    expectNoSecrets(spans);
    // The key typed as the model: masked in the span name and in gen_ai.request/response.model.
    expect(spans).not.toContain(MODEL_KEY);
    expect(receiver.spans.some((s) => s.name === 'chat sk-***' && s.attributes['gen_ai.request.model'] === 'sk-***' && s.attributes['gen_ai.response.model'] === 'sk-***')).toBe(true);
    expect(requestLines.join('\n')).not.toContain(MODEL_KEY);

    const metrics = await rawRequest(gw.port, request('GET', '/metrics', []));
    expect(metrics.status).toBe(200);
    expectNoSecrets(metrics.body);
    expect(metrics.body).not.toContain(MODEL_KEY);
  });
});

describe('config errors never show a substituted secret', () => {
  const issuesOf = (text: string, env: Record<string, string>): string => {
    try {
      parseConfig(text, { file: 'gateway.config.yaml', env });
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    return 'OK';
  };
  const config = (apiKey: string) => `
upstreams:
  - name: a
    base_url: http://127.0.0.1:9/v1
    api_key: ${apiKey}
routing: {default: [a]}
`;
  const KEY = 'sk-proj-0123456789abcdef';

  // Regression: `api_key: ${KEY}` with a key starting with `*` read as a YAML alias; the
  // error ("Unresolved alias ...: sk-...") was not a ConfigError and printed the key.
  it('a value read as a YAML alias is a config error, key masked', () => {
    const message = issuesOf(config('${KEY}'), { KEY: `*${KEY}` });
    expect(message).toMatch(/gateway\.config\.yaml \(line \d+\): the value of \$\{KEY\} starts with "\*", which YAML reads as an alias/);
    expect(message).not.toContain(KEY.slice(0, 10));
  });

  // Regression: YAML syntax errors quote the source, which holds substituted values.
  it.each([`|${KEY}`, `${KEY},x]`, `${KEY}]`])('a YAML syntax error does not quote the substituted value %s', (value) => {
    const message = issuesOf(`${config('${KEY}')}admin: {token: \${KEY}}\n`, { KEY: value });
    expect(message).toMatch(/^invalid config: gateway\.config\.yaml \(line \d+\)/);
    expect(message).not.toContain(KEY.slice(0, 10));
  });

  it('promptgate check prints neither the key nor a stack', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-secrets-'));
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(file, config('${PG_SECRET_KEY}'));
    let stderr = '';
    let status = 0;
    try {
      execFileSync(path.resolve('node_modules/.bin/tsx'), ['src/main.ts', 'check', '--config', file], { encoding: 'utf8', stdio: 'pipe', env: { ...process.env, PG_SECRET_KEY: `*${KEY}` } });
    } catch (err) {
      ({ stderr, status } = err as { stderr: string; status: number });
    }
    expect(status).toBe(1);
    expect(stderr).toContain('1 error in');
    expect(stderr).not.toContain(KEY.slice(0, 10));
    expect(stderr).not.toMatch(/\n\s+at /);
  });
});

describe('hot reload with a bad file', () => {
  // Not an `sk-` key: the log redactor would mask that one anyway.
  const AZURE_KEY = '0123456789abcdef0123456789abcdef';
  it('logs the rejection without the substituted key', async () => {
    const upstream = await startMockUpstream();
    const output = captureOutput();
    process.env.PG_RELOAD_KEY = AZURE_KEY;
    const good = `
server: {host: 127.0.0.1, drain_timeout_ms: 500}
templates: {dir: templates}
upstreams:
  - {name: mock, base_url: "${upstream.url}", api_key: "\${PG_RELOAD_KEY}"}
routing: {default: [mock]}
`;
    const gw = await startTestGateway(good);
    try {
      // The key breaks out of its quotes: YAML quotes the source in its message.
      writeFileSync(gw.configFile, good.replace('"${PG_RELOAD_KEY}"', '${PG_RELOAD_KEY}}, x: |${PG_RELOAD_KEY}'));
      const until = Date.now() + 5000;
      while (!output.text().includes('config reload rejected') && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      const line = output.text().split('\n').find((l) => l.includes('config reload rejected'));
      expect(line).toBeDefined();
      expect(line).toContain('Block scalar header includes extra characters: ***');
      expect(line).not.toContain(AZURE_KEY.slice(0, 12));
    } finally {
      await gw.close();
      output.restore();
      await upstream.close();
      delete process.env.PG_RELOAD_KEY;
    }
  });
});

describe('spanModel', () => {
  it('masks a credential in a model name, short or long, and leaves others as they are', async () => {
    const { spanModel } = await import('../src/telemetry/span-attributes.js');
    expect(spanModel('gpt-4o-mini-2024-07-18')).toBe('gpt-4o-mini-2024-07-18');
    expect(spanModel('sk-proj-keytypedasmodel0123456789')).toBe('sk-***');
    const long = `${'x'.repeat(300)} sk-proj-keytypedasmodel0123456789`;
    expect(spanModel(long)).toBe(`${'x'.repeat(300)} sk-***`);
  });
});

describe('requestIdOf', () => {
  it("takes the client's x-request-id unless it is malformed or shaped like a credential", async () => {
    const { requestIdOf } = await import('../src/proxy/exchange.js');
    const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
    expect(requestIdOf('req-client-42')).toBe('req-client-42');
    expect(requestIdOf('sk-proj-keytypedasrequestid0123')).toMatch(uuid);
    expect(requestIdOf('Bearer abc123def456')).toMatch(uuid);
    expect(requestIdOf('has space')).toMatch(uuid);
  });
});
