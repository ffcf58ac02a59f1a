/**
 * Review of the Prometheus metrics against what a production gateway exports: a real
 * gateway (mock upstream) is scraped, the exposition goes through `promtool check metrics`,
 * and its series through the real deploy rules (`promtool test rules`).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { stringify as stringifyYaml } from 'yaml';
import { createMetrics } from '../../src/telemetry/metrics.js';
import type { RequestRecord } from '../../src/telemetry/types.js';
import { startTestGateway, mockConfig, type TestGateway } from '../helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { grafanaQueries } from '../deploy/promql.js';
import { PromText, type PromSample } from '../telemetry-e2e/prom-text.js';

const RULES = fileURLToPath(new URL('../../deploy/prometheus/rules.yaml', import.meta.url));
const DASHBOARD = fileURLToPath(new URL('../../deploy/observability/grafana/dashboards/promptgate.json', import.meta.url));
const HAS_PROMTOOL = spawnSync('promtool', ['--version']).status === 0;

let upstream: MockUpstream;
const gateways: TestGateway[] = [];
const dirs: string[] = [];
beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});
afterAll(async () => {
  await upstream.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function gateway(extra = ''): Promise<TestGateway> {
  const gw = await startTestGateway(mockConfig(upstream.url, extra, '    breaker: {failures: 0}'));
  gateways.push(gw);
  return gw;
}

async function send(gw: TestGateway, method: string, path: string, body?: object, headers: Record<string, string> = {}): Promise<number> {
  const r = await request(`${gw.url}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  await r.body.text();
  return r.statusCode;
}

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

const CHAT = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };

/** Scraped samples as promtool input series of one sidecar, each growing by its scraped value per minute. */
function inputSeries(samples: PromSample[]): Array<{ series: string; values: string }> {
  const escape = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
  return samples.map((s) => ({
    series: `${s.name}{${Object.entries({ ...s.labels, job: 'promptgate', namespace: 'shop', app: 'chat' })
      .filter(([, v]) => v !== '')
      .map(([k, v]) => `${k}="${escape(v)}"`)
      .join(',')}}`,
    values: `0+${s.value}x20`,
  }));
}

/** Runs `promtool test rules` on one test (with the deploy rules loaded); returns its exit status and output. */
function promtoolTest(test: object): { status: number | null; output: string } {
  const dir = mkdtempSync(join(tmpdir(), 'promptgate-rules-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'test.yaml'), stringifyYaml({ rule_files: [RULES], evaluation_interval: '30s', tests: [{ interval: '1m', ...test }] }));
  const r = spawnSync('promtool', ['test', 'rules', 'test.yaml'], { cwd: dir, encoding: 'utf8' });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}

describe('gen_ai_* histograms hold GenAI operations only', () => {
  it('polling a stored response (GET /v1/responses/{id}) is not a `chat` operation in the duration histogram', async () => {
    // Regression: every request on the /v1/responses route counted as a chat operation, so a
    // client polling a background response added a fast GET per poll to the latency histogram
    // (p95 and PromptgateHighLatencyP95 then read far too low), with gen_ai_request_model="".
    const gw = await gateway();
    expect(await send(gw, 'POST', '/v1/chat/completions', CHAT)).toBe(200);
    for (let i = 0; i < 5; i++) await send(gw, 'GET', `/v1/responses/resp_${i}`);
    await send(gw, 'DELETE', '/v1/responses/resp_0');
    // POSTs below the collection are no operation either: cancelling, counting input tokens.
    await send(gw, 'POST', '/v1/responses/resp_1/cancel', {});
    await send(gw, 'POST', '/v1/responses/input_tokens', { model: 'gpt-4o-mini', input: 'hi' });
    const m = await scrape(gw);
    expect(m.select('promptgate_requests_total', { route: '/v1/responses/*' }).reduce((n, s) => n + s.value, 0)).toBe(8);
    const ops = m.select('gen_ai_client_operation_duration_seconds_count');
    expect(ops.map((s) => [s.labels.gen_ai_operation_name, s.labels.gen_ai_request_model, s.value])).toEqual([['chat', 'gpt-4o-mini', 1]]);
  });

  it('an embeddings call records input tokens, not a 0 in the output-token histogram', async () => {
    // Regression: each embeddings call observed output=0 in gen_ai_client_token_usage, so with
    // embeddings traffic the dashboard's mean output tokens per request (and every output
    // quantile) fell towards 0 however long the chat answers were.
    const gw = await gateway();
    expect(await send(gw, 'POST', '/v1/chat/completions', CHAT)).toBe(200);
    for (let i = 0; i < 3; i++) expect(await send(gw, 'POST', '/v1/embeddings', { model: 'text-embedding-3-small', input: 'hello world', encoding_format: 'float' })).toBe(200);
    const m = await scrape(gw);
    const usage = (op: string, type: string) => m.select('gen_ai_client_token_usage_count', { gen_ai_operation_name: op, gen_ai_token_type: type }).map((s) => s.value);
    expect(usage('embeddings', 'input')).toEqual([3]);
    expect(usage('embeddings', 'output')).toEqual([]);
    expect(usage('chat', 'output')).toEqual([1]);
    // tokens_total still has the documented input (and output 0) of embeddings
    expect(m.select('promptgate_tokens_total', { gen_ai_request_model: 'text-embedding-3-small', gen_ai_token_type: 'input' })[0]?.value).toBeGreaterThan(0);
  });

  it('a POST on a GenAI route is an operation; a GET or HEAD there is a request only', async () => {
    const m = createMetrics({ processMetrics: false });
    const base: RequestRecord = { requestId: 'r', route: '/v1/responses', method: 'POST', status: 200, outcome: 'ok', stream: false, attempts: 1, latencyMs: 50 };
    m.recordRequest(base);
    m.recordRequest({ ...base, method: 'GET' });
    m.recordRequest({ ...base, method: 'HEAD' });
    const text = new PromText(await m.render());
    expect(text.select('gen_ai_client_operation_duration_seconds_count').map((s) => s.value)).toEqual([1]);
    expect(text.select('promptgate_requests_total').reduce((n, s) => n + s.value, 0)).toBe(3);
  });
});

describe('gateway-defined label values never collapse into `other`', () => {
  const base: RequestRecord = { requestId: 'r', route: '/v1/files', method: 'POST', status: 404, outcome: 'error', stream: false, upstream: 'mock', provider: 'openai', attempts: 1, latencyMs: 5 };

  it('client_abort, shutdown and the gateway error codes keep their names after many upstream statuses', async () => {
    // Regression: error_type took the first max_label_values values, so upstream statuses
    // (upstream_<status>, which a client provokes on pass-through routes) could turn
    // `client_abort` into `other`, and the error-ratio rule (error_type!="client_abort")
    // then paged on streams users cancelled.
    const m = createMetrics({ processMetrics: false, maxLabelValues: 3 });
    for (const s of [400, 401, 403, 404, 405, 409, 413, 422]) m.recordRequest({ ...base, status: s, errorType: `upstream_${s}` });
    m.recordRequest({ ...base, route: '/v1/chat/completions', status: 200, outcome: 'client_abort', errorType: 'client_abort', stream: true });
    m.recordRequest({ ...base, route: '/v1/chat/completions', status: 200, outcome: 'error', errorType: 'shutdown', stream: true });
    m.recordRequest({ ...base, route: '/v1/chat/completions', status: 503, outcome: 'error', errorType: 'circuit_open' });
    m.recordRequest({ ...base, route: '/v1/chat/completions', status: 0, outcome: 'error' });
    const types = new PromText(await m.render()).select('promptgate_requests_total').map((s) => s.labels.error_type);
    expect(types).toEqual(expect.arrayContaining(['client_abort', 'shutdown', 'circuit_open', '_OTHER', 'other']));
    expect(types.filter((t) => t.startsWith('upstream_'))).toHaveLength(3);
  });

  it('the GenAI routes keep their names however many other routes came first', async () => {
    // The dashboard's flagged share selects route="/v1/chat/completions".
    const m = createMetrics({ processMetrics: false, maxLabelValues: 2 });
    for (const route of ['/v1/models', '/v1/files', '/v1/batches', '/v1/*']) m.recordRequest({ ...base, route, status: 200, outcome: 'ok', errorType: undefined });
    m.recordRequest({ ...base, route: '/v1/chat/completions', status: 200, outcome: 'ok', errorType: undefined, injectionFlagged: true });
    const text = new PromText(await m.render());
    expect(text.select('promptgate_requests_total').map((s) => s.labels.route).sort()).toEqual(['/v1/chat/completions', '/v1/files', '/v1/models', 'other']);
    expect(text.select('promptgate_injection_flags_total').map((s) => s.labels.route)).toEqual(['/v1/chat/completions']);
  });
});

describe('deploy rules on the series a real gateway exports', () => {
  it.skipIf(!HAS_PROMTOOL)('client-cancelled streams stay out of promptgate:request_errors:ratio_rate5m with a small max_label_values', async () => {
    const gw = await gateway('telemetry: {max_label_values: 2}');
    // upstream errors first: they take the error_type slots
    for (const status of ['400', '404', '422']) expect(await send(gw, 'POST', '/v1/chat/completions', CHAT, { 'x-mock-status': status })).toBe(Number(status));
    for (let i = 0; i < 4; i++) expect(await send(gw, 'POST', '/v1/chat/completions', CHAT)).toBe(200);
    // a chat UI's stop button: the client closes a stream after its first chunk
    const ac = new AbortController();
    const stream = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      signal: ac.signal,
      headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': '100' },
      body: JSON.stringify({ ...CHAT, stream: true }),
    });
    for await (const _ of stream.body) break;
    ac.abort();
    const until = Date.now() + 3000;
    let m = await scrape(gw);
    while (m.select('promptgate_requests_total', { stream: 'true' }).length === 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 20));
      m = await scrape(gw);
    }
    const aborted = m.select('promptgate_requests_total', { stream: 'true' });
    expect(aborted.map((s) => [s.labels.status_class, s.labels.error_type])).toEqual([['2xx', 'client_abort']]);

    const r = promtoolTest({
      input_series: inputSeries(m.select('promptgate_requests_total')),
      // 4xx answers and a cancelled stream: nothing failed on the gateway's or upstream's side
      promql_expr_test: [{ expr: 'promptgate:request_errors:ratio_rate5m', eval_time: '15m', exp_samples: [] }],
      alert_rule_test: [{ eval_time: '15m', alertname: 'PromptgateHighErrorRate', exp_alerts: [] }],
    });
    expect(r.status, r.output).toBe(0);
  });
});

describe('dashboard on the series a real gateway exports', () => {
  it.skipIf(!HAS_PROMTOOL)('"Upstream attempts per request" shows a primary that fails every request (+Inf), not nothing', async () => {
    // Regression: requests count under the upstream that answered, so a primary that never
    // answered since the sidecar started has no promptgate_requests_total series and the
    // division dropped it: the panel hid exactly the upstream everything fell back from.
    const gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
upstreams:
  - {name: dead, base_url: "http://127.0.0.1:9/v1", api_key: k, retry: {attempts: 1, backoff_ms: 1, max_backoff_ms: 2}, breaker: {failures: 0}}
  - {name: mock, base_url: "${upstream.url}", api_key: k, breaker: {failures: 0}}
routing: {default: [dead, mock]}
`);
    gateways.push(gw);
    for (let i = 0; i < 3; i++) expect(await send(gw, 'POST', '/v1/chat/completions', CHAT)).toBe(200);
    const m = await scrape(gw);
    expect(m.select('promptgate_upstream_attempts_total').map((s) => [s.labels.upstream, s.value])).toEqual([['dead', 6], ['mock', 3]]);

    const query = grafanaQueries(JSON.parse(readFileSync(DASHBOARD, 'utf8'))).find((q) => q.where === 'panel "Upstream attempts per request" A');
    expect(query).toBeDefined();
    const expr = query!.expr.replaceAll('$job', '.*').replaceAll('$app', '.*').replaceAll('$__rate_interval', '5m');
    const r = promtoolTest({
      input_series: inputSeries([...m.select('promptgate_upstream_attempts_total'), ...m.select('promptgate_requests_total')]),
      promql_expr_test: [{
        expr,
        eval_time: '10m',
        exp_samples: [{ labels: '{upstream="dead"}', value: Infinity }, { labels: '{upstream="mock"}', value: 1 }],
      }],
    });
    expect(r.status, r.output).toBe(0);
  });
});
