/**
 * Just enough PromQL reading to list the metric (series) names a query selects, for the
 * dashboard and rules checks. Not a parser: it removes strings, label matchers, range
 * and offset durations, grouping clauses and Grafana variables, then every identifier
 * that is not a function call or a keyword is a metric name.
 */

const KEYWORDS = new Set([
  'and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right',
  'bool', 'offset', 'start', 'end', 'inf', 'nan', 'atan2',
]);

export function metricNamesInPromQL(expr: string): string[] {
  let s = expr;
  // Grafana variables: ${var}, ${var:fmt}, $__rate_interval, $var.
  s = s.replace(/\$\{[^}]*\}/g, ' 1 ').replace(/\$[A-Za-z_][A-Za-z0-9_]*/g, ' 1 ');
  // Comments (# to end of line).
  s = s.replace(/#[^\n]*/g, ' ');
  // String literals.
  s = s.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' "" ');
  // Label matchers and range/subquery selectors.
  s = s.replace(/\{[^}]*\}/g, ' ').replace(/\[[^\]]*\]/g, ' ');
  // Grouping / matching clauses hold label names, not metrics.
  s = s.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  // `offset 5m`, `@ 123`.
  s = s.replace(/\boffset\s+-?[0-9a-z.]+/g, ' ').replace(/@\s*[0-9.]+/g, ' ');
  const names = new Set<string>();
  const re = /(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)(?=(\s*)(\(?))/g;
  for (let m = re.exec(s); m !== null; m = re.exec(s)) {
    const id = m[1];
    if (m[3] === '(') continue; // function or aggregation call
    if (KEYWORDS.has(id.toLowerCase())) continue;
    names.add(id);
  }
  return [...names];
}

/**
 * Label names an expression uses: in label matchers and in by/without/on/ignoring/
 * group_left/group_right clauses.
 */
export function labelNamesInPromQL(expr: string): string[] {
  let s = expr;
  s = s.replace(/\$\{[^}]*\}/g, ' 1 ').replace(/\$[A-Za-z_][A-Za-z0-9_]*/g, ' 1 ');
  s = s.replace(/#[^\n]*/g, ' ');
  s = s.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' "" ');
  const names = new Set<string>();
  for (const m of s.matchAll(/\{([^}]*)\}/g)) {
    for (const l of m[1].matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)/g)) names.add(l[1]);
  }
  for (const m of s.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    for (const l of m[1].split(',').map((x) => x.trim()).filter(Boolean)) names.add(l);
  }
  return [...names];
}

/**
 * Metric names in a Grafana Prometheus variable query: `label_values(expr, label)`,
 * `label_values(label)`, `query_result(expr)`, `metrics(regex)`, or a plain expression.
 */
export function metricNamesInGrafanaVariableQuery(query: string): string[] {
  return variableQueryExpr(query).names;
}

/** The PromQL part of a variable query, its metric names, and the label it lists. */
export function variableQueryExpr(query: string): { expr: string; label?: string; names: string[] } {
  const q = query.trim();
  let m = /^label_values\(\s*(.*)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$/s.exec(q);
  if (m) return { expr: m[1], label: m[2], names: metricNamesInPromQL(m[1]) };
  m = /^label_values\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$/.exec(q);
  if (m) return { expr: '', label: m[1], names: [] };
  if (/^(label_names|metrics)\(/.test(q)) return { expr: '', names: [] };
  m = /^query_result\((.*)\)$/s.exec(q);
  if (m) return { expr: m[1], names: metricNamesInPromQL(m[1]) };
  return { expr: q, names: metricNamesInPromQL(q) };
}

/** Every PromQL expression in a Grafana dashboard, with where it was found. */
export interface GrafanaQuery {
  where: string;
  /** PromQL, or a variable query (`label_values(...)`...) when `variable`. */
  expr: string;
  variable: boolean;
  /** A target's legendFormat (`{{label}}` templates). */
  legend?: string;
}

export function grafanaQueries(dashboard: unknown): GrafanaQuery[] {
  const out: GrafanaQuery[] = [];
  const d = dashboard as {
    panels?: GrafanaPanel[];
    templating?: { list?: { name: string; type: string; query?: unknown; definition?: string }[] };
  };
  const walk = (panels: GrafanaPanel[] | undefined) => {
    for (const p of panels ?? []) {
      for (const t of p.targets ?? []) {
        if (typeof t.expr === 'string') {
          out.push({ where: `panel "${p.title}" ${t.refId ?? ''}`.trim(), expr: t.expr, variable: false, legend: t.legendFormat });
        }
      }
      walk(p.panels);
    }
  };
  walk(d.panels);
  for (const v of d.templating?.list ?? []) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query as { query?: string } | undefined)?.query;
    if (q) out.push({ where: `variable $${v.name}`, expr: q, variable: true });
  }
  return out;
}

export interface GrafanaPanel {
  id?: number;
  type: string;
  title: string;
  panels?: GrafanaPanel[];
  targets?: { expr?: string; refId?: string; legendFormat?: string }[];
  gridPos?: { h: number; w: number; x: number; y: number };
  datasource?: unknown;
}
