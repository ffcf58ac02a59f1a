/**
 * Evaluates PromQL offline with `promtool test rules`, for checks of the dashboard's and the
 * rules' numbers against series shaped like the gateway's. Callers skip when promtool is absent.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { stringify as stringifyYaml } from 'yaml';

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
export const HAS_PROMTOOL = !promtool.error && promtool.status === 0;

/**
 * Evaluates `expr` at `evalTime` over `series` (promtool input-series notation, one sample a
 * minute from 0) with `promtool test rules`, and returns the result as label text -> value.
 * promtool has no offline query command, so the test expects no samples and its failure
 * report ("got: {labels} value, ...") is the result.
 */
export function evaluate(expr: string, series: Record<string, string>, evalTime = '60m'): Map<string, number> {
  const dir = mkdtempSync(join(tmpdir(), 'promptgate-promql-'));
  try {
    writeFileSync(join(dir, 'rules.yaml'), 'groups: []\n');
    const test = {
      rule_files: ['rules.yaml'],
      evaluation_interval: '1m',
      tests: [{
        interval: '1m',
        input_series: Object.entries(series).map(([s, values]) => ({ series: s, values })),
        promql_expr_test: [{ expr, eval_time: evalTime, exp_samples: [] }],
      }],
    };
    writeFileSync(join(dir, 'test.yaml'), stringifyYaml(test));
    const r = spawnSync('promtool', ['test', 'rules', 'test.yaml'], { cwd: dir, encoding: 'utf8' });
    const out = `${r.stdout}${r.stderr}`;
    const result = new Map<string, number>();
    if (r.status === 0) return result; // no samples
    const got = /^\s*got: (.*)$/m.exec(out);
    expect(got, out).not.toBeNull();
    if (got![1].trim() === 'nil') return result;
    for (const m of got![1].matchAll(/(\{[^}]*\}) (\S+?)(?:,|$)/g)) {
      const v = m[2];
      result.set(m[1], v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v));
    }
    expect(result.size, out).toBeGreaterThan(0);
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Grafana's variables as a dashboard user would set them: every job and app, one experiment, a 1 h range. */
export function withVariables(expr: string, experiment = ''): string {
  return expr
    .replaceAll('$__range', '1h')
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$experiment', experiment)
    .replaceAll('$job', '.*')
    .replaceAll('$app', '.*');
}
