/**
 * Review of what clients put into /metrics: label values a client chooses (the model) go
 * through a real gateway and come back out of `GET /metrics`, checked by `promtool check
 * metrics` (when installed) and by the exposition parser.
 */
import { spawnSync } from 'node:child_process';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createMetrics } from '../../src/telemetry/metrics.js';
import type { RequestRecord } from '../../src/telemetry/types.js';
import { startTestGateway, mockConfig, type TestGateway } from '../helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { PromText } from '../telemetry-e2e/prom-text.js';

const HAS_PROMTOOL = spawnSync('promtool', ['--version']).status === 0;
if (!HAS_PROMTOOL) console.warn('SKIP promtool checks: `promtool` is not installed (apt-get install -y prometheus); CI installs it.');

let upstream: MockUpstream;
const gateways: TestGateway[] = [];
beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});
afterAll(async () => {
  await upstream.close();
});

async function gateway(extra = ''): Promise<TestGateway> {
  const gw = await startTestGateway(mockConfig(upstream.url, extra, '    breaker: {failures: 0}'));
  gateways.push(gw);
  return gw;
}

/** POSTs a chat request whose body is `raw` (bytes as given, so JSON escapes and invalid UTF-8 reach the gateway as sent). */
async function chat(gw: TestGateway, raw: string | Buffer): Promise<number> {
  const r = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw });
  await r.body.text();
  return r.statusCode;
}

/** A chat body with `model` spliced in as JSON string content (already escaped). */
const chatBody = (jsonModel: string) => `{"model":"${jsonModel}","messages":[{"role":"user","content":"hi"}]}`;

/** The scrape, checked by `promtool check metrics` (no error, no lint warning). */
async function scrape(gw: TestGateway): Promise<PromText> {
  const text = await scrapeMetricsText(gw.url);
  if (HAS_PROMTOOL) {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`.trim(), 'promtool check metrics').toBe('');
    expect(r.status).toBe(0);
  }
  return new PromText(text);
}

const requestsByModel = (prom: PromText, model: string) => prom.sum('promptgate_requests_total', { route: '/v1/chat/completions', gen_ai_request_model: model });

describe('a model a client names `other`', () => {
  it('reads as the overflow series without taking one of the max_label_values slots (was: it took a slot, so a real model read `other`)', async () => {
    const gw = await gateway('telemetry: {max_label_values: 2}');
    for (const model of ['other', 'other', 'model-a', 'model-b', 'model-c']) expect(await chat(gw, chatBody(model))).toBe(200);
    const prom = await scrape(gw);
    expect(requestsByModel(prom, 'model-a')).toBe(1);
    expect(requestsByModel(prom, 'model-b')).toBe(1);
    // the two `other`s and model-c, past the cap of 2
    expect(requestsByModel(prom, 'other')).toBe(3);
    expect(requestsByModel(prom, 'model-c')).toBeUndefined();
  });

  it('takes no slot in any bounded label (unit level: a cap of 1 still admits the first real value)', async () => {
    const m = createMetrics({ processMetrics: false, maxLabelValues: 1 });
    const record = (requestModel: string): RequestRecord => ({
      requestId: 'r1',
      route: '/v1/chat/completions',
      method: 'POST',
      status: 200,
      outcome: 'ok',
      stream: false,
      upstream: 'mock',
      provider: 'openai',
      requestModel,
      attempts: 1,
      latencyMs: 10,
    });
    m.recordRequest(record('other'));
    m.recordRequest(record('gpt-x'));
    m.recordRequest(record('gpt-y'));
    const prom = new PromText(await m.render());
    expect(requestsByModel(prom, 'gpt-x')).toBe(1);
    expect(requestsByModel(prom, 'other')).toBe(2);
  });
});

describe('a model named like a credential', () => {
  // Regression: a client that sent its key as the model (an SDK call with the arguments
  // swapped) had it published as a label on the unauthenticated /metrics; the log line masked it.
  it('reads as `other` on /metrics and takes no slot', async () => {
    const gw = await gateway('telemetry: {max_label_values: 1}');
    const key = 'sk-proj-Review9Label0123456789abcdefghij';
    for (const model of [key, `Bearer ${key}`, 'model-a']) expect(await chat(gw, chatBody(model))).toBe(200);
    const prom = await scrape(gw);
    expect(prom.text).not.toContain('Review9Label');
    expect(requestsByModel(prom, 'other')).toBe(2);
    expect(requestsByModel(prom, 'model-a')).toBe(1);
  });
});

describe('hostile model names through a real gateway', () => {
  it('are escaped, stay apart, and keep the exposition valid (quotes, backslashes, newlines, NUL, long, lone surrogates; invalid UTF-8 refused)', async () => {
    const gw = await gateway();
    // JSON-escaped model names, and the label value each must come back as
    const cases: Array<[json: string, label: string]> = [
      ['q\\"uote', 'q"uote'],
      ['back\\\\slash', 'back\\slash'],
      ['new\\nline', 'new\nline'],
      ['nul\\u0000byte', 'nul\u0000byte'],
      ['\\\\n', '\\n'], // a backslash and an n: not the newline above
      ['x'.repeat(200), 'other'],
      ['lone\\ud800', 'other'],
    ];
    for (const [json] of cases) expect(await chat(gw, chatBody(json))).toBe(200);
    // bytes that are no UTF-8: refused (400 invalid_json) before the model is read, so no label of them
    const invalid = Buffer.concat([Buffer.from('{"model":"bad'), Buffer.from([0xff, 0xc3]), Buffer.from('","messages":[{"role":"user","content":"hi"}]}')]);
    expect(await chat(gw, invalid)).toBe(400);

    const prom = await scrape(gw);
    expect(requestsByModel(prom, 'q"uote')).toBe(1);
    expect(requestsByModel(prom, 'back\\slash')).toBe(1);
    expect(requestsByModel(prom, 'new\nline')).toBe(1);
    expect(requestsByModel(prom, 'nul\u0000byte')).toBe(1);
    expect(requestsByModel(prom, '\\n')).toBe(1);
    expect(requestsByModel(prom, 'bad\ufffd\ufffd')).toBeUndefined();
    expect(requestsByModel(prom, 'other')).toBe(2);
    // one series per label set: no two samples of a family print the same
    const lines = prom.text.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
    expect(new Set(lines.map((l) => l.slice(0, l.lastIndexOf(' ')))).size).toBe(lines.length);
  });
});

describe('upstream and provider names (config only) never collapse into `other`', () => {
  it('a fallback under a small max_label_values counts each upstream under its own name (was: the second upstream read `other`)', async () => {
    const gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
telemetry: {max_label_values: 1}
upstreams:
  - {name: dead, provider: dead-provider, base_url: "http://127.0.0.1:1/v1", retry: {attempts: 0}, breaker: {failures: 0}}
  - {name: mock, base_url: ${upstream.url}, retry: {attempts: 0}, breaker: {failures: 0}}
routing: {default: [dead, mock]}
`);
    gateways.push(gw);
    expect(await chat(gw, chatBody('gpt-4o-mini'))).toBe(200);
    const prom = await scrape(gw);
    expect(prom.one('promptgate_upstream_attempts_total', { upstream: 'dead', gen_ai_provider_name: 'dead-provider' })).toBe(1);
    expect(prom.one('promptgate_upstream_attempts_total', { upstream: 'mock', gen_ai_provider_name: 'openai' })).toBe(1);
    expect(prom.one('promptgate_requests_total', { upstream: 'mock', gen_ai_provider_name: 'openai' })).toBe(1);
    expect(prom.select('promptgate_upstream_attempts_total', { upstream: 'other' })).toEqual([]);
    expect(prom.select('promptgate_requests_total', { gen_ai_provider_name: 'other' })).toEqual([]);
  });
});
