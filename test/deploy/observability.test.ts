/**
 * deploy/observability and deploy/prometheus: the Grafana dashboard and the Prometheus
 * rules only query metrics the gateway exposes (metric-names.ts), the rules pass
 * `promtool check rules` and their unit tests, the Prometheus configs pass
 * `promtool check config`, and the compose stack refers to files that exist.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { familyOfSeries, labelsOfSeries, metricFamilies, PROMETHEUS_BUILTIN_SERIES, TARGET_LABELS, type MetricFamily } from './metric-names.js';
import { grafanaQueries, labelNamesInPromQL, metricNamesInGrafanaVariableQuery, metricNamesInPromQL, variableQueryExpr, type GrafanaPanel } from './promql.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const OBS = join(ROOT, 'deploy', 'observability');
const PROM = join(ROOT, 'deploy', 'prometheus');
const DASHBOARD = join(OBS, 'grafana', 'dashboards', 'promptgate.json');
const RULES = join(PROM, 'rules.yaml');

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
const HAS_PROMTOOL = !promtool.error && promtool.status === 0;
if (!HAS_PROMTOOL) console.warn('[deploy] promtool not found: skipping promtool checks (CI installs Debian package "prometheus")');

interface RuleGroup {
  name: string;
  rules: { record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }[];
}
const rules = (parseYaml(readFileSync(RULES, 'utf8')) as { groups: RuleGroup[] }).groups;
const recorded = new Set(rules.flatMap((g) => g.rules.map((r) => r.record).filter((x): x is string => x !== undefined)));

/** Series names in `exprs` that no family (or recording rule, or Prometheus) produces. */
function unknownSeries(exprs: { where: string; names: string[] }[], families: MetricFamily[]): string[] {
  const bad: string[] = [];
  for (const { where, names } of exprs) {
    for (const n of names) {
      if (familyOfSeries(n, families) || recorded.has(n) || PROMETHEUS_BUILTIN_SERIES.includes(n)) continue;
      bad.push(`${where}: ${n}`);
    }
  }
  return bad;
}

/**
 * Label names in `expr` (matchers, by/on/... clauses, legend templates) that none of the
 * series it selects can carry. Recording-rule and Prometheus series allow any label.
 */
function unknownLabels(where: string, expr: string, extraLabels: string[], families: MetricFamily[]): string[] {
  const series = metricNamesInPromQL(expr);
  const allowed = new Set<string>(TARGET_LABELS);
  for (const n of series) {
    const labels = labelsOfSeries(n, families);
    if (!labels) return []; // unknown labels (recorded or built-in series): not checked
    for (const l of labels) allowed.add(l);
  }
  if (series.length === 0) return [];
  return [...labelNamesInPromQL(expr), ...extraLabels].filter((l) => !allowed.has(l)).map((l) => `${where}: label ${l}`);
}

const tmp: string[] = [];
afterAll(() => {
  for (const d of tmp) rmSync(d, { recursive: true, force: true });
});

describe('PromQL metric-name extraction', () => {
  it('finds metric names, not functions, labels, keywords or variables', () => {
    expect(
      metricNamesInPromQL(
        'histogram_quantile(0.95, sum by (le, gen_ai_request_model) (rate(gen_ai_client_operation_duration_seconds_bucket{job=~"$job", x="a b"}[$__rate_interval])))',
      ),
    ).toEqual(['gen_ai_client_operation_duration_seconds_bucket']);
    expect(
      metricNamesInPromQL('sum(rate(a_total[5m] offset 1h)) / on (job) group_left(app) b:rec:rate5m > bool 0 and up == 1 unless vector(1e3)'),
    ).toEqual(['a_total', 'b:rec:rate5m', 'up']);
    expect(metricNamesInGrafanaVariableQuery('label_values(promptgate_requests_total{job=~"$job"}, app)')).toEqual(['promptgate_requests_total']);
    expect(metricNamesInGrafanaVariableQuery('label_values(job)')).toEqual([]);
  });
});

describe('Grafana dashboard', () => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
    uid: string; title: string; panels: GrafanaPanel[]; templating: { list: { name: string; type: string }[] };
  };
  const queries = grafanaQueries(dashboard);
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  const allExpr = queries.map((q) => q.expr).join('\n');

  it('parses, with a uid, unique panel ids and grid positions', () => {
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    const ids = panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of panels) expect(p.gridPos, p.title).toBeDefined();
    for (const p of panels.filter((x) => x.type !== 'row')) expect(p.targets?.length, p.title).toBeGreaterThan(0);
  });

  it('queries only metrics the gateway exposes', async () => {
    const families = await metricFamilies();
    const exprs = queries.map((q) => ({ where: q.where, names: q.variable ? metricNamesInGrafanaVariableQuery(q.expr) : metricNamesInPromQL(q.expr) }));
    expect(exprs.flatMap((e) => e.names).length).toBeGreaterThan(0);
    expect(unknownSeries(exprs, families)).toEqual([]);
  });

  it('uses only labels those metrics have', async () => {
    const families = await metricFamilies();
    const bad = queries.flatMap((q) => {
      if (q.variable) {
        const v = variableQueryExpr(q.expr);
        return unknownLabels(q.where, v.expr, v.label ? [v.label] : [], families);
      }
      const legend = [...(q.legend ?? '').matchAll(/\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g)].map((m) => m[1]);
      return unknownLabels(q.where, q.expr, legend, families);
    });
    expect(bad).toEqual([]);
  });

  it('uses every promptgate and gen_ai metric family', async () => {
    const used = new Set(queries.flatMap((q) => (q.variable ? metricNamesInGrafanaVariableQuery(q.expr) : metricNamesInPromQL(q.expr))));
    const families = (await metricFamilies()).filter((f) => /^(promptgate|gen_ai)_/.test(f.name));
    const unused = families.filter((f) => ![...used].some((n) => familyOfSeries(n, families)?.name === f.name));
    expect(unused.map((f) => f.name)).toEqual([]);
  });

  it('has the required panels', () => {
    const has = (re: RegExp) => expect(allExpr).toMatch(re);
    // request rate by status class; errors by error_type
    has(/sum by \(status_class\) \(rate\(promptgate_requests_total/);
    has(/sum by \(error_type\) \(rate\(promptgate_requests_total/);
    // latency p50/p95/p99 and TTFT from histogram buckets
    for (const q of ['0.5', '0.95', '0.99']) {
      has(new RegExp(`histogram_quantile\\(${q.replace('.', '\\.')}, sum by \\(le\\) \\(rate\\(gen_ai_client_operation_duration_seconds_bucket`));
    }
    has(/histogram_quantile\([^,]+, sum by \(le\) \(rate\(gen_ai_client_operation_time_to_first_chunk_seconds_bucket/);
    // tokens in/out, cost per hour, injection flags
    has(/sum by \(gen_ai_token_type\) \(rate\(gen_ai_client_token_usage_sum/);
    has(/rate\(promptgate_cost_usd_total[^)]*\)\) \* 3600/);
    has(/promptgate_injection_flags_total/);
    // per-variant: requests, latency, cost, success rate from the experiment sums
    has(/sum by \(variant\) \(rate\(promptgate_requests_total\{[^}]*experiment="\$experiment"/);
    for (const m of ['latency_ms', 'cost_usd', 'success']) {
      has(new RegExp(`promptgate_experiment_observations_sum_total\\{[^}]*metric="${m}"[\\s\\S]*?/\\s*sum by \\(variant\\) \\(rate\\(promptgate_experiment_observations_total\\{[^}]*metric="${m}"`));
    }
    has(/promptgate_experiment_observations_sum_squares_total/);
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(expect.arrayContaining(['datasource', 'experiment']));
  });

  it('every query references the datasource variable and known template variables', () => {
    const vars = new Set(['__rate_interval', '__interval', '__range', ...dashboard.templating.list.map((v) => v.name)]);
    for (const q of queries) {
      for (const m of q.expr.matchAll(/\$\{?([A-Za-z_][A-Za-z0-9_]*)/g)) expect(vars.has(m[1]), `${q.where}: $${m[1]}`).toBe(true);
    }
    for (const p of panels.filter((x) => x.type !== 'row')) {
      expect((p.datasource as { uid?: string } | undefined)?.uid, p.title).toBe('${datasource}');
    }
  });
});

describe('Prometheus rules', () => {
  it('query only metrics the gateway exposes (or recorded series)', async () => {
    const families = await metricFamilies();
    const exprs = rules.flatMap((g) => g.rules.map((r) => ({ where: `${g.name}/${r.record ?? r.alert}`, names: metricNamesInPromQL(r.expr) })));
    expect(unknownSeries(exprs, families)).toEqual([]);
    expect(rules.flatMap((g) => g.rules.flatMap((r) => unknownLabels(`${g.name}/${r.record ?? r.alert}`, r.expr, [], families)))).toEqual([]);
  });

  it('cover error rate, p95 latency, injection flags spike and cost burn', () => {
    const alerts = rules.flatMap((g) => g.rules).filter((r) => r.alert);
    const exprOf = (name: string) => {
      const a = alerts.find((r) => r.alert === name);
      expect(a, name).toBeDefined();
      return a!.expr;
    };
    expect(exprOf('PromptgateHighErrorRate')).toMatch(/promptgate:request_errors:ratio_rate5m/);
    expect(exprOf('PromptgateHighLatencyP95')).toMatch(/p95/);
    expect(exprOf('PromptgateInjectionFlagsSpike')).toMatch(/injection_flags/);
    expect(exprOf('PromptgateCostBurn')).toMatch(/cost_usd/);
    for (const a of alerts) {
      expect(a.labels?.severity, a.alert).toMatch(/^(info|warning|critical)$/);
      expect(a.annotations?.summary, a.alert).toBeDefined();
      expect(a.annotations?.description, a.alert).toBeDefined();
    }
  });

  it.skipIf(!HAS_PROMTOOL)('pass promtool check rules', () => {
    const r = spawnSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' });
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  });

  it.skipIf(!HAS_PROMTOOL)('pass their unit tests (promtool test rules)', () => {
    const r = spawnSync('promtool', ['test', 'rules', 'rules.test.yaml'], { cwd: PROM, encoding: 'utf8' });
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  });
});

describe('Prometheus configs', () => {
  // Each config loads rules.yaml from its own directory (compose mounts it there).
  const configs = [join(OBS, 'prometheus.yml'), join(PROM, 'prometheus-kubernetes.yml')];

  it.each(configs)('%s points at rules.yaml and scrapes /metrics', (file) => {
    const cfg = parseYaml(readFileSync(file, 'utf8')) as { rule_files?: string[]; scrape_configs: { job_name: string; metrics_path?: string }[] };
    expect(cfg.rule_files).toEqual(['rules.yaml']);
    const job = cfg.scrape_configs.find((j) => j.job_name === 'promptgate');
    expect(job).toBeDefined();
    expect(job!.metrics_path ?? '/metrics').toBe('/metrics');
  });

  it.skipIf(!HAS_PROMTOOL).each(configs)('%s passes promtool check config', (file) => {
    const dir = mkdtempSync(join(tmpdir(), 'promptgate-prom-'));
    tmp.push(dir);
    copyFileSync(RULES, join(dir, 'rules.yaml'));
    const target = join(dir, 'prometheus.yml');
    copyFileSync(file, target);
    let r = spawnSync('promtool', ['check', 'config', target], { encoding: 'utf8' });
    if (r.status !== 0 && /kubernetes_sd_configs not found/.test(`${r.stdout}${r.stderr}`)) {
      // Debian's promtool is built without Kubernetes discovery: check everything else
      // (relabelling included) with the discovery swapped for a static target.
      console.warn('[deploy] this promtool has no kubernetes_sd; checking the config with static_configs instead');
      const cfg = parseYaml(readFileSync(file, 'utf8')) as { scrape_configs: Record<string, unknown>[] };
      for (const job of cfg.scrape_configs) {
        if (job.kubernetes_sd_configs) {
          delete job.kubernetes_sd_configs;
          job.static_configs = [{ targets: ['127.0.0.1:8080'] }];
        }
      }
      writeFileSync(target, stringifyYaml(cfg));
      r = spawnSync('promtool', ['check', 'config', target], { encoding: 'utf8' });
    }
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
  });
});

describe('compose stack', () => {
  const composeFile = join(OBS, 'compose.yaml');
  const compose = parseYaml(readFileSync(composeFile, 'utf8')) as {
    services: Record<string, {
      image?: string; build?: { context: string; dockerfile?: string }; ports?: string[];
      volumes?: string[]; environment?: Record<string, string>; depends_on?: string[]; profiles?: string[];
    }>;
  };

  it('runs promptgate, Jaeger v2, Prometheus and Grafana', () => {
    const s = compose.services;
    expect(Object.keys(s)).toEqual(expect.arrayContaining(['promptgate', 'jaeger', 'prometheus', 'grafana']));
    expect(s.jaeger.image).toMatch(/^jaegertracing\/jaeger:2\./);
    expect(s.jaeger.ports).toEqual(expect.arrayContaining(['16686:16686', '4317:4317', '4318:4318']));
    expect(s.promptgate.environment?.OTEL_EXPORTER_OTLP_ENDPOINT).toBe('http://jaeger:4318');
    expect(s.promptgate.ports).toContain('8080:8080');
    for (const [name, svc] of Object.entries(s)) {
      if (svc.image && !svc.build) expect(svc.image, `${name} image is pinned`).toMatch(/:[\w.-]+$/);
      for (const d of svc.depends_on ?? []) expect(Object.keys(s), `${name} depends on ${d}`).toContain(d);
    }
  });

  it('builds from the repository Dockerfile and mounts files that exist', () => {
    const base = dirname(composeFile);
    const b = compose.services.promptgate.build!;
    expect(existsSync(join(resolve(base, b.context), b.dockerfile ?? 'Dockerfile'))).toBe(true);
    for (const [name, svc] of Object.entries(compose.services)) {
      for (const v of svc.volumes ?? []) {
        const src = v.split(':')[0];
        if (!src.startsWith('.') && !src.startsWith('/')) continue; // named volume
        expect(existsSync(resolve(base, src)), `${name}: ${src}`).toBe(true);
      }
    }
    // Prometheus gets its config and rules side by side, as prometheus.yml expects.
    const promVolumes = compose.services.prometheus.volumes ?? [];
    expect(promVolumes.some((v) => v.endsWith(':/etc/prometheus/prometheus.yml:ro'))).toBe(true);
    expect(promVolumes.some((v) => v.startsWith('../prometheus/rules.yaml:/etc/prometheus/rules.yaml'))).toBe(true);
  });

  it('provisions Grafana with Prometheus and Jaeger datasources and the dashboard directory', () => {
    const prov = join(OBS, 'grafana', 'provisioning');
    const ds = parseYaml(readFileSync(join(prov, 'datasources', 'datasources.yaml'), 'utf8')) as { datasources: { type: string; url: string }[] };
    expect(ds.datasources.map((d) => d.type).sort()).toEqual(['jaeger', 'prometheus']);
    expect(ds.datasources.find((d) => d.type === 'prometheus')!.url).toBe('http://prometheus:9090');
    expect(ds.datasources.find((d) => d.type === 'jaeger')!.url).toBe('http://jaeger:16686');
    const dash = parseYaml(readFileSync(join(prov, 'dashboards', 'dashboards.yaml'), 'utf8')) as { providers: { options: { path: string } }[] };
    const mounted = (compose.services.grafana.volumes ?? []).find((v) => v.split(':')[1] === dash.providers[0].options.path);
    expect(mounted, 'the provider path is the mounted dashboards directory').toBeDefined();
    expect(statSync(resolve(OBS, mounted!.split(':')[0], 'promptgate.json')).isFile()).toBe(true);
  });

  it('the load generator script parses', async () => {
    const load = compose.services.load as unknown as { command?: string[]; entrypoint?: string[] } | undefined;
    if (!load?.command) return;
    const { Script } = await import('node:vm');
    expect(() => new Script(load.command![0])).not.toThrow();
  });
});
