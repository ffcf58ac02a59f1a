/**
 * Review 22, secrets that still leaked: Azure credential names not taken for secrets, a
 * `${VAR}` value shown in a config error's path, a key echoed in the upstream's
 * `x-request-id` and cleaned past the redactor, and OTLP endpoint credentials without a scheme.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { redact, redactEndpoint } from '../src/telemetry/redact.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { closeServers, listenOnLoopback } from './helpers/http-server.js';
import { startOtlpReceiver, type OtlpReceiver } from './telemetry-e2e/otlp-receiver.js';

let log: GatewayLogCapture;
let gateway: TestGateway | undefined;
const servers: Server[] = [];

beforeAll(() => {
  log = captureGatewayLog();
});
afterAll(() => log.restore());
afterEach(async () => {
  await gateway?.close();
  gateway = undefined;
  await closeServers(servers);
});

const chat = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

/** Waits until one of the gateway's non-request log lines, from the `since`th on, holds `text`. */
async function logLineWith(text: string, since = 0, ms = 5000): Promise<string> {
  const until = Date.now() + ms;
  for (;;) {
    const line = log.others.slice(since).find((l) => l.includes(text));
    if (line !== undefined) return line;
    if (Date.now() > until) throw new Error(`no log line with ${text} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('Azure credential names are secrets', () => {
  const APIM_KEY = 'apimSubscriptionKey0123456789';
  const FUNCTIONS_KEY = 'functionsHostKey0123456789ab';
  const APIM_QUERY_KEY = 'apimQueryKey0123456789abcd';
  const FUNCTIONS_CODE = 'functionsCode0123456789abcd';

  /** An upstream that answers 401 quoting the request's headers and URL, in the body and in a header. */
  async function quotingUpstream(): Promise<string> {
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const message = `Access denied for ${req.url}: ${JSON.stringify(req.headers)}`;
        res.writeHead(401, { 'content-type': 'application/json', 'x-echo-url': req.url ?? '' });
        res.end(JSON.stringify({ error: { message, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } }));
      });
    });
    servers.push(server);
    return listenOnLoopback(server);
  }

  it('subscription-key, x-functions-key and code values are masked in an answer quoting the request', async () => {
    const origin = await quotingUpstream();
    gateway = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: apim
    base_url: "${origin}/v1?subscription-key=${APIM_QUERY_KEY}&code=${FUNCTIONS_CODE}"
    headers: {Ocp-Apim-Subscription-Key: ${APIM_KEY}, x-functions-key: ${FUNCTIONS_KEY}}
    retry: {attempts: 0}
routing: {default: [apim]}
`);
    const res = await fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chat });
    const text = await res.text();
    expect(res.status).toBe(401);
    expect(text).toContain('Access denied for /v1/chat/completions?subscription-key=*'); // it went upstream, and came back masked
    const echoed = `${text}\n${res.headers.get('x-echo-url')}`;
    for (const secret of [APIM_KEY, FUNCTIONS_KEY, APIM_QUERY_KEY, FUNCTIONS_CODE]) expect(echoed).not.toContain(secret);
  });

  it('the log redactor masks the same names in headers and URLs', () => {
    expect(redact('"ocp-apim-subscription-key":"apimSubscriptionKey0123456789"')).toBe('"ocp-apim-subscription-key":"***"');
    expect(redact('x-functions-key: functionsHostKey0123456789ab')).toBe('x-functions-key: ***');
    expect(redact('GET /api/run?subscription-key=apimQuery0123&code=fnCode0123==&limit=2')).toBe('GET /api/run?subscription-key=***&code=***&limit=2');
    // `code` is a credential only as a query parameter.
    expect(redact('upstream error code=rate_limit_exceeded')).toBe('upstream error code=rate_limit_exceeded');
  });
});

describe('config error paths never show a substituted value', () => {
  const ENV = { KK: 'abc123,SECRETTAILzz9' };
  const CONFIG = `
upstreams: [{name: v, base_url: "https://api.example.com/v1", api_key: \${KK}}]
routing: {default: [v]}
`;

  it('an unknown key made of a substituted value is masked, the rest of the path kept', () => {
    let issues: ConfigError['issues'] = [];
    try {
      parseConfig(CONFIG, { file: 'gateway.config.yaml', env: ENV });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      issues = err.issues;
    }
    expect(issues).toEqual([{ path: 'gateway.config.yaml: upstreams[0].*** (line 2)', message: 'unknown key' }]);
  });

  // Masking every key a value contained hid real key names: `server.prot` read `***.prot`
  // when ${LLM_URL} held "server" (and `routing.models` with a GitHub Models URL).
  it('a key written in the file is shown as it is, though a substituted value contains it', () => {
    const config = `
server: {host: 127.0.0.1, prot: 8080}
upstreams: [{name: v, base_url: "\${LLM_URL}", api_key: sk-plain-key-0123456789}]
routing: {default: [v]}
`;
    let issues: ConfigError['issues'] = [];
    try {
      parseConfig(config, { file: 'gateway.config.yaml', env: { LLM_URL: 'http://llm-server-prot:8000/v1' } });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      issues = err.issues;
    }
    expect(issues.map((i) => i.path)).toEqual(['gateway.config.yaml: server.prot (line 2)']);
  });

  // A value starting with `*` is an alias to YAML: the error had no line and did not name
  // the variable, and its masking garbled the message.
  it('a substituted value YAML reads as an alias is reported at its line, naming the variable', () => {
    const config = `
server: {host: 127.0.0.1}
upstreams:
  - name: v
    base_url: "https://api.example.com/v1"
    api_key: \${BV}
routing: {default: [v]}
`;
    let issues: ConfigError['issues'] = [];
    try {
      parseConfig(config, { file: 'gateway.config.yaml', env: { BV: '*sk-secretvalue123' } });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      issues = err.issues;
    }
    expect(issues).toHaveLength(1);
    expect(issues[0].path).toBe('gateway.config.yaml (line 6)');
    expect(issues[0].message).toContain('${BV}');
    expect(issues[0].message).toMatch(/alias/);
    expect(JSON.stringify(issues)).not.toContain('sk-secretvalue123');
  });

  it('a compile issue path holding a substituted value (a route model name) is masked', () => {
    const config = `
upstreams: [{name: v, base_url: "https://api.example.com/v1", api_key: sk-plain-key-0123456789}]
routing: {default: [v], models: {"\${MODEL_SECRET}": [nope]}}
`;
    let issues: ConfigError['issues'] = [];
    try {
      parseConfig(config, { file: 'gateway.config.yaml', env: { MODEL_SECRET: 'modelNamedSecret42' } });
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      issues = err.issues;
    }
    expect(issues.map((i) => i.path)).toEqual(['gateway.config.yaml: routing.models.***[0] (line 3)']);
  });

  it('promptgate check prints the path masked', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-secrets-22-'));
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(file, CONFIG);
    let stderr = '';
    try {
      execFileSync(path.resolve('node_modules/.bin/tsx'), ['src/main.ts', 'check', '--config', file], { encoding: 'utf8', stdio: 'pipe', env: { ...process.env, ...ENV } });
    } catch (err) {
      ({ stderr } = err as { stderr: string });
    }
    expect(stderr).toContain('upstreams[0].*** (line 2): unknown key');
    expect(stderr).not.toContain('SECRETTAIL');
  });

  it('a rejected hot reload logs the path masked', async () => {
    const server = createServer((_req, res) => res.end());
    servers.push(server);
    const origin = await listenOnLoopback(server);
    process.env.KK = ENV.KK;
    try {
      const good = `
server: {host: 127.0.0.1, drain_timeout_ms: 500}
templates: {dir: templates}
upstreams: [{name: v, base_url: "${origin}/v1", api_key: "\${KK}"}]
routing: {default: [v]}
`;
      gateway = await startTestGateway(good);
      writeFileSync(gateway.configFile, good.replace('"${KK}"', '${KK}'));
      const line = await logLineWith('config reload rejected');
      expect(line).toContain('upstreams[0].*** (line 4): unknown key');
      expect(line).not.toContain('SECRETTAIL');
    } finally {
      delete process.env.KK;
    }
  });
});

describe('tracing', () => {
  const OTEL_NAMES = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_TRACES_EXPORTER', 'OTEL_SDK_DISABLED', 'OTEL_EXPORTER_OTLP_PROTOCOL', 'OTEL_BSP_SCHEDULE_DELAY'];
  const saved = Object.fromEntries(OTEL_NAMES.map((n) => [n, process.env[n]]));
  let receiver: OtlpReceiver | undefined;
  beforeAll(() => {
    for (const name of OTEL_NAMES) delete process.env[name];
  });
  afterEach(async () => {
    await gateway?.close(); // stops tracing, so the next gateway starts it with its own endpoint
    gateway = undefined;
    await receiver?.close();
    receiver = undefined;
  });
  afterAll(() => {
    for (const name of OTEL_NAMES) {
      if (saved[name] === undefined) delete process.env[name];
      else process.env[name] = saved[name];
    }
  });

  it("a client key echoed in the upstream's x-request-id is masked in the log line and the CLIENT span", async () => {
    const CLIENT_KEY = 'sk-proj-clientKeyEchoed0123456789';
    receiver = await startOtlpReceiver();
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.url;
    process.env.OTEL_BSP_SCHEDULE_DELAY = '50';
    // A keyless pass-through upstream that names the request by its Authorization.
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const body = JSON.stringify({ id: 'chatcmpl-22', object: 'chat.completion', model: 'gpt-4o-mini', choices: [{ index: 0, message: { role: 'assistant', content: 'hello' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } });
        res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': req.headers.authorization ?? '' });
        res.end(body);
      });
    });
    servers.push(server);
    gateway = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: info}
templates: {dir: templates}
upstreams:
  - {name: keyless, base_url: "${await listenOnLoopback(server)}/v1", retry: {attempts: 0}}
routing: {default: [keyless]}
`);
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`, 'x-request-id': 'req-review-22-echo' },
      body: chat,
    });
    expect(res.status).toBe(200);
    await res.text();
    const { line, raw } = await log.requestLine('req-review-22-echo');
    expect(line.upstream_request_id).toBe('Bearer_***');
    expect(raw).not.toContain(CLIENT_KEY.slice(3));
    const { client } = await receiver.waitForRequest('req-review-22-echo');
    expect(client?.attributes['http.response.header.x-request-id']).toEqual(['Bearer_***']);
  });

  it('OTLP endpoint credentials without a scheme are masked in the warning and the tracing on line', async () => {
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = 'otel:Hunter2Secretpw@collector:4318';
    const since = log.others.length;
    gateway = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: info}
templates: {dir: templates}
upstreams: [{name: sim, simulate: {}}]
routing: {default: [sim]}
`);
    const warning = await logLineWith('OTLP traces endpoint is not an http(s) URL', since);
    const on = await logLineWith('"msg":"tracing on"', since);
    expect(warning).toContain('"endpoint":"***@collector:4318"');
    expect(on).toContain('"endpoint":"***@collector:4318"');
    expect(log.others.join('\n')).not.toContain('Hunter2');
  });

  it('redactEndpoint masks user info with or without a scheme, and nothing else', () => {
    expect(redactEndpoint('otel:Hunter2Secretpw@collector:4318')).toBe('***@collector:4318');
    expect(redactEndpoint('https://user:pw0123456@collector.example:4318/v1/traces')).toBe('https://***@collector.example:4318/v1/traces');
    expect(redactEndpoint('token0123456@[::1]:4318')).toBe('***@[::1]:4318');
    expect(redactEndpoint('http://collector:4318')).toBe('http://collector:4318');
    expect(redactEndpoint('collector:4318')).toBe('collector:4318');
    // An `@` in the path, query or fragment is no user info: the host stays readable.
    expect(redactEndpoint('http://collector:4318/v1/traces?x=a@b')).toBe('http://collector:4318/v1/traces?x=a@b');
    expect(redactEndpoint('http://a:b0123456@c:4318/v1/traces#x@y')).toBe('http://***@c:4318/v1/traces#x@y');
  });
});

// Only answers with an error status were looked into on the chat route: an upstream (or a
// proxy before it) answering 200 with an error body, or an error event in a 200 stream,
// that quoted the request's Authorization handed the gateway's key to the client.
describe('an error in a 200 chat answer', () => {
  const KEY = 'sk-upstream-key-in-a-200-error-0123';

  async function quotingErrorUpstream(): Promise<string> {
    const server = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        const error = { error: { message: `Invalid header value: ${req.headers.authorization}`, type: 'invalid_request_error', param: null, code: 'invalid_header' } };
        if (JSON.parse(body).stream === true) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n');
          res.end(`data: ${JSON.stringify(error)}\n\n`);
        } else {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify(error));
        }
      });
    });
    servers.push(server);
    return listenOnLoopback(server);
  }

  it('has the upstream key masked, non-stream and stream', async () => {
    const origin = await quotingErrorUpstream();
    gateway = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 1000}
logging: {level: silent}
upstreams:
  - {name: u, base_url: "${origin}/v1", api_key: ${KEY}, retry: {attempts: 0}}
routing: {default: [u]}
`);
    for (const stream of [false, true]) {
      const res = await fetch(`${gateway.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...JSON.parse(chat), stream }) });
      const text = await res.text();
      expect([stream, text.includes(KEY)]).toEqual([stream, false]);
      expect([stream, text.includes(`Bearer ${'*'.repeat(KEY.length)}`)]).toEqual([stream, true]);
    }
  });
});
