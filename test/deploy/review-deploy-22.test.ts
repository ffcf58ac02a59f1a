/**
 * Review of deploy/ (22): what the latency alert and the dashboard's red p95 measure (the
 * wait for an answer to start, not a long stream's whole run), which pods the Kubernetes
 * scrape job keeps (a pod stuck Pending behind its sidecar's startup probe must stay a
 * target, or PromptgateSidecarDown has no `up` series), and the compose load generator.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { evaluate, HAS_PROMTOOL, withVariables } from './promql-eval.js';
import type { GrafanaPanel } from './promql.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DASHBOARD = join(ROOT, 'deploy', 'observability', 'grafana', 'dashboards', 'promptgate.json');
const K8S_PROMETHEUS = join(ROOT, 'deploy', 'prometheus', 'prometheus-kubernetes.yml');
const COMPOSE = join(ROOT, 'deploy', 'observability', 'compose.yaml');

/** Bucket series (one minute apart, growing by `perMinute[le]` each minute) of one histogram of app "chatty". */
function histogram(name: string, extra: string, perMinute: Record<string, number>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(perMinute).map(([le, n]) => [`${name}_bucket{job="promptgate",namespace="shop",app="chatty",${extra}le="${le}"}`, `0+${n}x60`]),
  );
}

describe('the overview p95 stat (red at 5 s, as the latency alert)', () => {
  interface StatPanel extends GrafanaPanel {
    fieldConfig?: { defaults?: { unit?: string; thresholds?: { steps: { color: string; value: number | null }[] } } };
  }
  const panels = (JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: StatPanel[] }).panels;
  const redAtFive = panels.filter((p) => p.type === 'stat' && p.fieldConfig?.defaults?.unit === 's' && p.fieldConfig.defaults.thresholds?.steps.some((s) => s.color === 'red' && s.value === 5));

  it.skipIf(!HAS_PROMTOOL)('stays under 5 s for long streams whose first chunk comes at once (was: the p95 of whole durations, red for every long healthy stream)', () => {
    expect(redAtFive.map((p) => p.title)).toHaveLength(1);
    // Streams of 30 chunks at 200 ms (about 6 s) whose first chunk comes within 1 s, and quick non-streamed answers.
    const series = {
      ...histogram('gen_ai_client_operation_duration_seconds', 'stream="true",', { '1': 0, '5.12': 0, '10.24': 10, '+Inf': 10 }),
      ...histogram('gen_ai_client_operation_duration_seconds', 'stream="false",', { '1': 5, '5.12': 5, '10.24': 5, '+Inf': 5 }),
      ...histogram('gen_ai_client_operation_time_to_first_chunk_seconds', '', { '1': 10, '5.12': 10, '10.24': 10, '+Inf': 10 }),
    };
    const values = (redAtFive[0].targets ?? []).flatMap((t) => [...evaluate(withVariables(t.expr!.replaceAll('$__rate_interval', '5m')), series).values()]);
    expect(values.length).toBeGreaterThan(0);
    for (const v of values) expect(v).toBeLessThan(1);
  });

  it.skipIf(!HAS_PROMTOOL)('turns red when first chunks take more than 5 s', () => {
    const series = histogram('gen_ai_client_operation_time_to_first_chunk_seconds', '', { '1': 0, '5.12': 0, '10.24': 10, '+Inf': 10 });
    const values = (redAtFive[0].targets ?? []).flatMap((t) => [...evaluate(withVariables(t.expr!.replaceAll('$__rate_interval', '5m')), series).values()]);
    expect(Math.max(...values)).toBeGreaterThan(5);
  });
});

interface RelabelRule {
  source_labels?: string[];
  separator?: string;
  regex?: string;
  target_label?: string;
  replacement?: string;
  action?: 'keep' | 'drop' | 'replace';
}

/**
 * Prometheus relabelling (keep, drop, replace) of one discovered target: the labels it is
 * scraped with, or undefined when dropped. Regexes are anchored at both ends, as Prometheus
 * anchors them; a missing label reads as "".
 */
function relabel(labels: Record<string, string>, rules: RelabelRule[]): Record<string, string> | undefined {
  const out = { ...labels };
  for (const rule of rules) {
    const value = (rule.source_labels ?? []).map((l) => out[l] ?? '').join(rule.separator ?? ';');
    const match = new RegExp(`^(?:${rule.regex ?? '(.*)'})$`).exec(value);
    const action = rule.action ?? 'replace';
    if (action === 'keep' && !match) return undefined;
    if (action === 'drop' && match) return undefined;
    if (action === 'replace' && match) {
      out[rule.target_label!] = (rule.replacement ?? '$1').replace(/\$\{?(\d+)\}?/g, (_, i: string) => match[Number(i)] ?? '');
    }
  }
  return out;
}

describe('the Kubernetes scrape job (prometheus-kubernetes.yml)', () => {
  const config = parseYaml(readFileSync(K8S_PROMETHEUS, 'utf8')) as { scrape_configs: { job_name: string; relabel_configs: RelabelRule[] }[] };
  const job = config.scrape_configs.find((j) => j.job_name === 'promptgate')!;
  /** A pod of the example deployment as Kubernetes discovery labels it. */
  const pod = (phase: string, ip: string) => ({
    __address__: ip === '' ? '' : `${ip}:8080`,
    __meta_kubernetes_namespace: 'shop',
    __meta_kubernetes_pod_name: 'support-1',
    __meta_kubernetes_pod_phase: phase,
    __meta_kubernetes_pod_ip: ip,
    __meta_kubernetes_pod_annotation_prometheus_io_scrape: 'true',
    __meta_kubernetes_pod_annotation_prometheus_io_port: '8080',
    __meta_kubernetes_pod_annotation_prometheus_io_path: '/metrics',
    __meta_kubernetes_pod_label_promptgate_dev_sidecar: 'true',
    __meta_kubernetes_pod_label_app_kubernetes_io_name: 'support',
  });

  it('keeps a Pending pod that has an IP: a native sidecar failing its startup probe holds the pod Pending (was: dropped, so PromptgateSidecarDown had no up series)', () => {
    expect(relabel(pod('Pending', '10.0.0.7'), job.relabel_configs)).toMatchObject({ __address__: '10.0.0.7:8080', namespace: 'shop', pod: 'support-1', app: 'support' });
    expect(relabel(pod('Running', '10.0.0.7'), job.relabel_configs)).toMatchObject({ __address__: '10.0.0.7:8080' });
    expect(relabel(pod('Running', 'fd00::7'), job.relabel_configs)).toMatchObject({ __address__: '[fd00::7]:8080' });
  });

  it('drops pods that ended, and pods without an IP (not scheduled yet: nothing to scrape)', () => {
    expect(relabel(pod('Succeeded', '10.0.0.7'), job.relabel_configs)).toBeUndefined();
    expect(relabel(pod('Failed', '10.0.0.7'), job.relabel_configs)).toBeUndefined();
    expect(relabel(pod('Pending', ''), job.relabel_configs)).toBeUndefined();
  });

  it('keeps only pods that ask for it', () => {
    expect(relabel({ ...pod('Running', '10.0.0.7'), __meta_kubernetes_pod_label_promptgate_dev_sidecar: '' }, job.relabel_configs)).toBeUndefined();
  });

  it('README says which failures the down alert covers', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toMatch(/PromptgateSidecarDown`[^\n]*\n?[^\n]*startup probe/);
  });
});

describe('the compose load generator', () => {
  const load = (parseYaml(readFileSync(COMPOSE, 'utf8')) as { services: Record<string, { image?: string; healthcheck?: { disable?: boolean }; init?: boolean }> }).services.load;

  it('has no health check (was: the gateway image\'s, probing a port nothing listens on: always unhealthy)', () => {
    expect(load.image).toBe('promptgate:dev');
    expect(load.healthcheck).toEqual({ disable: true });
  });

  it('runs under an init process (was: `node -e` as PID 1 without a signal handler: compose down waited 10 s to kill it)', () => {
    expect(load.init).toBe(true);
  });
});
