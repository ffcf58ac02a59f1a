/**
 * The admin API and the log redactor, from the outside: what a client sees in an admin error
 * (with the API off and on), and that a log line stays one JSON object with its secrets masked.
 */
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../src/telemetry/logger.js';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';

const ADMIN_TOKEN = 'admin-token-0123456789';

function config(token: string): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: silent}
admin: {token: "${token}"}
templates: {dir: templates}
upstreams: [{name: mock, base_url: "http://127.0.0.1:1/v1"}]
routing: {default: [mock]}
`;
}

/** GET with the path exactly as given (fetch would normalize it). */
function get(gw: TestGateway, path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: gw.port, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const message = (body: string) => (JSON.parse(body) as { error: { message: string } }).error.message;

describe('admin API off (empty token)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(config(''));
  });
  afterAll(async () => {
    await gw?.close();
  });

  // Regression: the 404 quoted the whole decoded path (16 KB of it, control characters
  // decoded), unlike every other unknown route: unbounded, and it told a switched-off admin
  // API apart from a route that does not exist.
  it('answers /admin/* like any unknown route: the path as sent, shortened', async () => {
    const tail = `${'a'.repeat(5000)}/%0a%1b`;
    const off = await get(gw, `/admin/${tail}`);
    const unknown = await get(gw, `/nope1/${tail}`);
    expect([off.status, unknown.status]).toEqual([404, 404]);
    expect(off.body.length).toBeLessThan(300);
    expect(message(off.body)).toBe(`Unknown route: GET ${`/admin/${tail}`.slice(0, 100)}...`);
    expect(message(off.body).replace('/admin/', '/nope1/')).toBe(message(unknown.body));

    for (const path of ['/admin/%0a%1b', '/%61dmin/templates']) {
      const res = await get(gw, path);
      expect(res.status, path).toBe(404);
      expect(message(res.body), path).toBe(`Unknown route: GET ${path}`);
    }
  });
});

describe('admin API on', () => {
  let gw: TestGateway;
  const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
  beforeAll(async () => {
    gw = await startTestGateway(config(ADMIN_TOKEN));
  });
  afterAll(async () => {
    await gw?.close();
  });

  // Regression: an unknown id was quoted whole into the 404 message, however long.
  it('quotes an unknown template or experiment id shortened', async () => {
    const id = 'x'.repeat(5000);
    for (const path of [`/admin/templates/${id}`, `/admin/experiments/${id}`, `/admin/assign?experiment=${id}&user=u`]) {
      const res = await get(gw, path, auth);
      expect(res.status, path).toBe(404);
      expect(res.body.length, path).toBeLessThan(300);
      expect(message(res.body), path).toContain(`"${'x'.repeat(100)}..."`);
    }
  });

  it('still demands the exact token on every admin path', async () => {
    for (const authorization of [undefined, `Bearer ${ADMIN_TOKEN.slice(0, -1)}`, `Bearer ${ADMIN_TOKEN}x`, `Bearer ${ADMIN_TOKEN.toUpperCase()}`, `Bearer\t${ADMIN_TOKEN}`]) {
      for (const path of ['/admin', '/admin/templates', '/%61dmin/templates', '/v1/../admin/templates', '/admin/nope']) {
        const res = await get(gw, path, authorization === undefined ? {} : { authorization });
        expect(res.status, `${path} ${authorization}`).toBe(401);
      }
    }
    expect((await get(gw, '/admin/templates', auth)).status).toBe(200);
  });
});

describe('log lines', () => {
  function capture() {
    const lines: string[] = [];
    const logger = createLogger({ write: (l) => lines.push(l) });
    return { logger, lines };
  }

  // Regression: redaction masked `"password":5` to `"password":***`, and an object value to
  // `"client_secret":***"a":1}`: the line was no longer JSON.
  it('stay JSON when a secret-named field holds a number, boolean, null, object or array', () => {
    const { logger, lines } = capture();
    logger.warn('x', { password: 123456, secret: true, authorization: null, client_secret: { value: 'hunter2' }, api_key: ['k-1', 'k-2'], has_api_key: false, n: 1 });
    const parsed = JSON.parse(lines[0]) as Record<string, unknown>;
    expect(parsed).toMatchObject({ password: '***', secret: '***', authorization: '***', client_secret: '***', api_key: '***', has_api_key: '***', n: 1 });
    expect(lines[0]).not.toMatch(/123456|hunter2|k-1/);
  });

  // Regression: `"password":"..."` was masked as a field of the line but not inside JSON
  // text held by a string (an upstream or collector answer): its quotes are escaped there.
  it('mask secrets inside JSON text held by a string value', () => {
    const { logger, lines } = capture();
    const body = JSON.stringify({ password: 'hunter2', api_key: 'k-abc123', note: 'ok' });
    logger.warn('x', { body, config: `{'client_secret': 'hunter3'}` });
    const parsed = JSON.parse(lines[0]) as Record<string, string>;
    expect(lines[0]).not.toMatch(/hunter2|k-abc123|hunter3/);
    expect(JSON.parse(parsed.body)).toEqual({ password: '***', api_key: '***', note: 'ok' });
    expect(parsed.config).toBe(`{'client_secret': '***'}`);
  });
});

describe('admin.token at load', () => {
  const load = (token: string) => () =>
    parseConfig(`admin: {token: ${JSON.stringify(token)}}\nupstreams: [{name: sim, simulate: {latency_ms: 0}}]\nrouting: {default: [sim]}\n`, { file: '/tmp/promptgate-admin-token/gateway.config.yaml', env: {} });

  it('takes a token a bearer header can carry, surrounding whitespace ignored', () => {
    for (const token of ['', 's3cr3t-Tok_en.~+/=', '  padded\n', 'caf\u00e9']) expect(load(token)).not.toThrow();
  });

  it('rejects one no authorization header could carry (it switched the API on with no way in), never quoting it', () => {
    for (const token of ['two words', 'tab\tinside', 'ctl\u0001x', 'euro\u20acsign']) {
      let error: unknown;
      try {
        load(token)();
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(ConfigError);
      const text = (error as ConfigError).message;
      expect(text).toContain('admin.token');
      expect(text).not.toContain(token);
    }
  });
});
