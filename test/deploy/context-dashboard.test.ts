/**
 * The dashboard's "Context" row and the context alert: the deploy checks know the context
 * families (metric-names.ts reads them from the registry as `startGateway` builds it, and a
 * real gateway with context builders serves the same list), the row has the panels an
 * operator needs, and its PromQL gives the right numbers on series shaped like the
 * gateway's, evaluated by `promtool test rules` (skipped without promtool).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { metricFamilies, parseExposition } from './metric-names.js';
import { grafanaQueries, metricNamesInPromQL, type GrafanaPanel } from './promql.js';
import { evaluate, HAS_PROMTOOL, withVariables } from './promql-eval.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DASHBOARD = join(ROOT, 'deploy', 'observability', 'grafana', 'dashboards', 'promptgate.json');
const RULES = join(ROOT, 'deploy', 'prometheus', 'rules.yaml');

const CONTEXT_FAMILIES = [
  'promptgate_context_build_duration_seconds',
  'promptgate_context_cache_total',
  'promptgate_context_failures_total',
  'promptgate_context_source_errors_total',
  'promptgate_context_cache_entries',
  'promptgate_context_cache_bytes',
];

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: (GrafanaPanel & { fieldConfig?: { defaults?: { unit?: string } } })[] };
const queries = grafanaQueries(dashboard);

/** The panels of the row titled `title`: those after it, up to the next row. */
function rowPanels(title: string): typeof dashboard.panels {
  const start = dashboard.panels.findIndex((p) => p.type === 'row' && p.title === title);
  expect(start, `row "${title}"`).toBeGreaterThanOrEqual(0);
  const end = dashboard.panels.findIndex((p, i) => i > start && p.type === 'row');
  return dashboard.panels.slice(start + 1, end < 0 ? undefined : end);
}

function panelExpr(title: string): string {
  const q = queries.filter((x) => x.where.startsWith(`panel "${title}" `));
  expect(q, title).toHaveLength(1);
  return withVariables(q[0].expr);
}

describe('the metric list the deploy checks use', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    // Nothing is called: the families are registered at startup, the cache gauges read the config.
    gw = await startTestGateway(mockConfig('http://127.0.0.1:9/v1') + `
context:
  builders:
    - {name: customer, kind: http, url: "http://127.0.0.1:9/customers/{{user_id}}", cache: {ttl_ms: 60000}}
    - {name: plan, kind: rules, defaults: {limit: 50}}
`);
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('includes the context families, as a gateway with context builders serves them on /metrics', async () => {
    const res = await request(`${gw.url}/metrics`);
    expect(res.statusCode).toBe(200);
    const served = parseExposition(await res.body.text());
    const known = await metricFamilies();
    const pick = (fs: { name: string; type: string }[]) => fs.filter((f) => /^(promptgate|gen_ai)_/.test(f.name)).map((f) => `${f.name} ${f.type}`).sort();
    expect(pick(known)).toEqual(pick(served));
    for (const name of CONTEXT_FAMILIES) expect(known.map((f) => f.name)).toContain(name);
    expect(known.find((f) => f.name === 'promptgate_context_build_duration_seconds')).toMatchObject({ type: 'histogram', labels: ['builder', 'kind', 'outcome'] });
    expect(known.find((f) => f.name === 'promptgate_context_cache_bytes')).toMatchObject({ type: 'gauge', labels: ['builder'] });
  });
});

describe('dashboard: Context row', () => {
  const panels = rowPanels('Context');
  const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? ''));

  it('has the panels an operator needs, in the dashboard\'s units', () => {
    const has = (re: RegExp) => expect(exprs.some((e) => re.test(e)), String(re)).toBe(true);
    has(/^histogram_quantile\(0\.95, sum by \(le, builder\) \(rate\(promptgate_context_build_duration_seconds_bucket\{job=~"\$job", app=~"\$app"\}/);
    has(/^sum by \(builder, outcome\) \(rate\(promptgate_context_build_duration_seconds_count/);
    has(/promptgate_context_cache_total\{[^}]*result="hit"/);
    has(/^sum by \(builder, reason\) \(rate\(promptgate_context_failures_total/);
    has(/^sum by \(builder, reason\) \(rate\(promptgate_context_source_errors_total/);
    has(/^max by \(builder\) \(promptgate_context_cache_bytes/);
    const used = new Set(exprs.flatMap((e) => metricNamesInPromQL(e)).map((n) => n.replace(/_(bucket|count|sum)$/, '')));
    expect(CONTEXT_FAMILIES.filter((f) => !used.has(f))).toEqual([]);
    const unit = (title: string) => panels.find((p) => p.title === title)?.fieldConfig?.defaults?.unit;
    expect(unit('Builder p95 duration by builder')).toBe('s');
    expect(unit('Builder outcomes / s')).toBe('reqps');
    expect(unit('Cache hit ratio by builder')).toBe('percentunit');
    expect(unit('Builder failures by reason')).toBe('reqps');
    expect(unit('Cache bytes by builder (largest sidecar)')).toBe('bytes');
    // Every context query filters on the dashboard's job and app variables.
    for (const e of exprs) expect(e).toContain('{job=~"$job", app=~"$app"');
  });

  const sel = 'job="promptgate", app="support"';

  it.skipIf(!HAS_PROMTOOL)('cache hit ratio: hits over all lookups per builder, summed over sidecars, and 0 (not missing) for a cache that never hits', () => {
    const got = evaluate(panelExpr('Cache hit ratio by builder'), {
      // customer: 30 hits, 6 misses and 4 stale entries a minute on one pod, 10 hits and 10 misses on another.
      [`promptgate_context_cache_total{${sel}, pod="p1", builder="customer", result="hit"}`]: '0+30x60',
      [`promptgate_context_cache_total{${sel}, pod="p1", builder="customer", result="miss"}`]: '0+6x60',
      [`promptgate_context_cache_total{${sel}, pod="p1", builder="customer", result="stale"}`]: '0+4x60',
      [`promptgate_context_cache_total{${sel}, pod="p2", builder="customer", result="hit"}`]: '0+10x60',
      [`promptgate_context_cache_total{${sel}, pod="p2", builder="customer", result="miss"}`]: '0+10x60',
      // search: every lookup a miss (its keys never repeat).
      [`promptgate_context_cache_total{${sel}, pod="p1", builder="search", result="miss"}`]: '0+12x60',
    });
    expect(got.get('{builder="customer"}')).toBeCloseTo(40 / 60, 12);
    expect(got.get('{builder="search"}')).toBe(0);
    expect(got.size).toBe(2);
  });

  it.skipIf(!HAS_PROMTOOL)('p95 duration and outcomes are per builder, over every sidecar', () => {
    const h = (pod: string, builder: string, outcome: string, le: string, v: string) =>
      [`promptgate_context_build_duration_seconds_bucket{${sel}, pod="${pod}", builder="${builder}", kind="http", outcome="${outcome}", le="${le}"}`, v];
    const got = evaluate(panelExpr('Builder p95 duration by builder'), Object.fromEntries([
      // customer: 10 runs a minute of 0.1-0.15 s on one pod, and 10 cut at the deadline (0.15-0.25 s) on another.
      h('p1', 'customer', 'ok', '0.1', '0x60'), h('p1', 'customer', 'ok', '0.15', '0+10x60'),
      h('p1', 'customer', 'ok', '0.25', '0+10x60'), h('p1', 'customer', 'ok', '+Inf', '0+10x60'),
      h('p2', 'customer', 'skipped', '0.1', '0x60'), h('p2', 'customer', 'skipped', '0.15', '0x60'),
      h('p2', 'customer', 'skipped', '0.25', '0+10x60'), h('p2', 'customer', 'skipped', '+Inf', '0+10x60'),
      // orders: every run under 1 ms.
      h('p1', 'orders', 'cached', '0.001', '0+10x60'), h('p1', 'orders', 'cached', '+Inf', '0+10x60'),
    ]));
    // The 19th of 20 runs a minute, 9/10 of the way through the 0.15-0.25 s bucket.
    expect(got.get('{builder="customer"}')).toBeCloseTo(0.24, 9);
    expect(got.get('{builder="orders"}')).toBeCloseTo(0.00095, 9);

    const outcomes = evaluate(panelExpr('Builder outcomes / s'), {
      [`promptgate_context_build_duration_seconds_count{${sel}, pod="p1", builder="customer", kind="http", outcome="ok"}`]: '0+60x60',
      [`promptgate_context_build_duration_seconds_count{${sel}, pod="p2", builder="customer", kind="http", outcome="ok"}`]: '0+60x60',
      [`promptgate_context_build_duration_seconds_count{${sel}, pod="p2", builder="customer", kind="http", outcome="failed"}`]: '0+6x60',
    });
    expect(Object.fromEntries(outcomes)).toEqual({ '{builder="customer", outcome="ok"}': 2, '{builder="customer", outcome="failed"}': 0.1 });
  });

  it.skipIf(!HAS_PROMTOOL)('cache bytes: the fullest sidecar per builder (what its max_bytes bounds), and each sidecar\'s total', () => {
    const series = {
      [`promptgate_context_cache_bytes{${sel}, instance="10.0.0.1:8080", builder="customer"}`]: '1000x60',
      [`promptgate_context_cache_bytes{${sel}, instance="10.0.0.2:8080", builder="customer"}`]: '5000x60',
      [`promptgate_context_cache_bytes{${sel}, instance="10.0.0.1:8080", builder="knowledge"}`]: '70000x60',
    };
    expect(Object.fromEntries(evaluate(panelExpr('Cache bytes by builder (largest sidecar)'), series))).toEqual({
      '{builder="customer"}': 5000,
      '{builder="knowledge"}': 70000,
    });
    expect(Object.fromEntries(evaluate(panelExpr('Context cache memory per sidecar'), series))).toEqual({
      '{instance="10.0.0.1:8080"}': 71000,
      '{instance="10.0.0.2:8080"}': 5000,
    });
  });
});

describe('rules: context builder failing', () => {
  it('alerts on a builder failing for most of its runs, per builder (promtool test rules checks the numbers)', () => {
    const groups = (parseYaml(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert?: string; record?: string; expr: string; for?: string; labels?: Record<string, string> }[] }[] }).groups;
    const all = groups.flatMap((g) => g.rules);
    const alert = all.find((r) => r.alert === 'PromptgateContextBuilderFailing');
    expect(alert).toBeDefined();
    expect(alert!.expr).toMatch(/promptgate:context_failures:ratio_rate5m > 0\.5/);
    expect(alert!.for).toBe('10m');
    expect(alert!.labels?.severity).toBe('warning');
    const ratio = all.find((r) => r.record === 'promptgate:context_failures:ratio_rate5m');
    expect(ratio?.expr).toMatch(/sum by \(job, namespace, app, builder\) \(rate\(promptgate_context_failures_total\[5m\]\)\)/);
    expect(ratio?.expr).toMatch(/sum by \(job, namespace, app, builder\) \(rate\(promptgate_context_build_duration_seconds_count\[5m\]\)\)/);
  });
});

/**
 * The promptgate series of a real /metrics page as promtool input series, with the target
 * labels Prometheus adds: 0 for 5 minutes, then the scraped value (at 7m a 5m rate holds the
 * step, so ratios of rates are ratios of the scraped counts).
 */
function asInputSeries(exposition: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of exposition.split('\n')) {
    const m = /^(promptgate_[a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/.exec(line);
    if (!m) continue;
    out[`${m[1]}{job="promptgate",namespace="shop",app="live"${m[2] ? `,${m[2].slice(1)}` : '}'}`] = `0x4 ${Number(m[3])}x10`;
  }
  return out;
}

describe('rules: a required builder whose source is down, on a real gateway\'s /metrics', () => {
  let upstream: MockUpstream;
  let gw: TestGateway;
  let dir: string;
  let exposition = '';
  const SENT = 4;

  beforeAll(async () => {
    upstream = await startMockUpstream();
    dir = mkdtempSync(join(tmpdir(), 'promptgate-context-rule-'));
    writeFileSync(join(dir, 'profile.yaml'), `id: profile
name: Profile
versions:
  - version: "1.0.0"
    labels: [production]
    model: gpt-4o-mini
    context:
      use: [customer, plan]
    messages:
      - role: system
        content: "{{#customer}}Customer {{name}}.{{/customer}} Refunds up to {{plan.limit}} USD."
`);
    // Port 9 (discard) refuses the connection: the customer service is down.
    gw = await startTestGateway(mockConfig(upstream.url) + `
bindings: [{model: profile-bot, template: profile}]
context:
  deadline_ms: 2000
  builders:
    - {name: customer, kind: http, required: true, url: "http://127.0.0.1:9/customers/{{user_id}}"}
    - {name: plan, kind: rules, defaults: {limit: 50}}
`, { templates: [join(dir, 'profile.yaml')] });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    for (let i = 0; i < SENT; i++) {
      const err = await client.chat.completions.create({ model: 'profile-bot', user: `u${i}`, messages: [{ role: 'user', content: 'refund?' }] }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(OpenAI.APIError);
      expect((err as InstanceType<typeof OpenAI.APIError>).status).toBe(424);
      expect((err as InstanceType<typeof OpenAI.APIError>).code).toBe('context_unavailable');
    }
    exposition = await scrapeMetricsText(gw.url);
  }, 30_000);
  afterAll(async () => {
    await gw?.close();
    await upstream?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const rules = (parseYaml(readFileSync(RULES, 'utf8')) as { groups: { rules: { alert?: string; record?: string; expr: string }[] }[] }).groups.flatMap((g) => g.rules);
  const ruleExpr = (name: string) => rules.find((r) => r.record === name || r.alert === name)!.expr;

  it.skipIf(!HAS_PROMTOOL)('the context failure ratio is 1 for the failing builder and absent for the one that works, while the error ratio counts none of these 424s', () => {
    expect(upstream.requests).toHaveLength(0);
    const series = asInputSeries(exposition);
    const ratio = evaluate(ruleExpr('promptgate:context_failures:ratio_rate5m'), series, '7m');
    expect(Object.fromEntries(ratio)).toEqual({ '{app="live", builder="customer", job="promptgate", namespace="shop"}': 1 });
    // The 424s are 4xx: the error-rate alert cannot see a required builder that is down.
    const errors = evaluate(ruleExpr('promptgate:request_errors:ratio_rate5m'), series, '7m');
    expect([...errors.values()]).toEqual([]);
    // The alert, its recorded ratio inlined, and its traffic guard (> 0.1 runs/s) lowered: SENT runs in 5 minutes are fewer.
    const alert = ruleExpr('PromptgateContextBuilderFailing')
      .replace('promptgate:context_failures:ratio_rate5m', `(${ruleExpr('promptgate:context_failures:ratio_rate5m')})`)
      .replace(/ > 0\.1\s*$/, ' > 0');
    expect([...evaluate(alert, series, '7m').keys()]).toEqual(['{app="live", builder="customer", job="promptgate", namespace="shop"}']);
  });
});
