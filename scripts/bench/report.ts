/**
 * Turns the measurements into the console/markdown tables, the target checks and
 * BENCHMARKS.md.
 */
import type { LoadResult, OpenStreamsResult } from './probes.js';
import type { Mode } from './workload.js';
import { median } from './stats.js';

export type Target = 'direct' | 'forwarder' | 'gateway';
export const TARGETS: readonly Target[] = ['direct', 'forwarder', 'gateway'];

export interface Scenario {
  mode: Mode;
  connections: number;
}

export interface LoadCell {
  rounds: LoadResult[];
  median: LoadResult;
}

export interface LatencyStat {
  n: number;
  p50: number;
  p99: number;
}

export interface Machine {
  date: string;
  nproc: number;
  node: string;
  cpu: string;
  loadBefore: string;
  loadAfter: string;
  /** How quiet the machine was around the measurements. */
  noise: string;
}

export interface Results {
  machine: Machine;
  command: string;
  settings: string;
  targets: readonly Target[];
  scenarios: readonly Scenario[];
  load: Map<string, LoadCell>;
  /** Sequential non-stream requests, one connection, until the body ended. */
  sequential: Partial<Record<Target, LatencyStat>>;
  /** Sequential stream requests, time to the first body chunk. */
  ttfb: Partial<Record<Target, LatencyStat>>;
  /** One result per memory round (fresh processes each round). */
  streams: Partial<Record<Target, OpenStreamsResult[]>>;
  /** The gateway step by step (scripts/bench/feature-steps.ts), non-stream at c=10; the last step is the full gateway. */
  features?: FeatureCost[];
}

export interface FeatureCost {
  name: string;
  adds: string;
  cell: LoadCell;
}

export function loadKey(target: Target, s: Scenario): string {
  return `${target}|${s.mode}|${s.connections}`;
}

export interface Check {
  name: string;
  measured: string;
  pass: boolean | undefined;
}

const f1 = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(1));
const f2 = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(2));
const f3 = (n: number | undefined) => (n === undefined || Number.isNaN(n) ? 'n/a' : n.toFixed(3));
const mb = (kb: number) => (kb / 1024).toFixed(1);
const signed = (n: number) => `${n >= 0 ? '+' : '−'}${Math.abs(n).toFixed(3)}`;

export function checks(r: Results): Check[] {
  const out: Check[] = [];
  const rps = (t: Target, mode: Mode) => r.load.get(loadKey(t, { mode, connections: 10 }))?.median.rps;

  const cpuRatio = (mode: Mode) => {
    const g = r.load.get(loadKey('gateway', { mode, connections: 10 }))?.median.cpuUsPerReq;
    const f = r.load.get(loadKey('forwarder', { mode, connections: 10 }))?.median.cpuUsPerReq;
    return g && f ? `${f2(f / g)}×` : 'n/a';
  };
  const gwNs = rps('gateway', 'non-stream');
  const fwNs = rps('forwarder', 'non-stream');
  const ratio = gwNs !== undefined && fwNs ? gwNs / fwNs : undefined;
  const gwS = rps('gateway', 'stream');
  const fwS = rps('forwarder', 'stream');
  const ratioS = gwS !== undefined && fwS ? gwS / fwS : undefined;
  out.push({
    name: 'gateway ≥ 0.75× forwarder RPS at c=10 (non-stream)',
    measured:
      ratio === undefined
        ? 'n/a'
        : `${f2(ratio)}× (${f1(gwNs)} / ${f1(fwNs)} RPS); stream: ${ratioS === undefined ? 'n/a' : `${f2(ratioS)}×`}; CPU per request, forwarder/gateway: ${cpuRatio('non-stream')} non-stream, ${cpuRatio('stream')} stream`,
    pass: ratio === undefined ? undefined : ratio >= 0.75,
  });

  const d = r.sequential.direct?.p50;
  const g = r.sequential.gateway?.p50;
  const fw = r.sequential.forwarder?.p50;
  const added = d !== undefined && g !== undefined ? g - d : undefined;
  const addedFw = d !== undefined && fw !== undefined ? fw - d : undefined;
  out.push({
    name: 'added p50 over direct ≤ 0.25 ms at c=1',
    measured: `gateway ${added === undefined ? 'n/a' : `${signed(added)} ms`}; forwarder (reference) ${addedFw === undefined ? 'n/a' : `${signed(addedFw)} ms`}`,
    pass: added === undefined ? undefined : added <= 0.25,
  });

  const tg = r.ttfb.gateway?.p50;
  const tf = r.ttfb.forwarder?.p50;
  const dt = tg !== undefined && tf !== undefined ? tg - tf : undefined;
  out.push({
    name: 'streaming TTFB within +0.15 ms of forwarder',
    measured: dt === undefined ? 'n/a' : `${signed(dt)} ms (${f3(tg)} vs ${f3(tf)} ms p50)`,
    pass: dt === undefined ? undefined : dt <= 0.15,
  });

  const sg = r.streams.gateway ?? [];
  const sf = r.streams.forwarder ?? [];
  const complete = (s: OpenStreamsResult) => s.maxOpen === s.requested && s.failed === 0;
  // A ratio per round (the two processes of a round ran back to back); the median decides.
  const ratios = sg.flatMap((g, i) => (sf[i] && sf[i].peakKb > 0 ? [g.peakKb / sf[i].peakKb] : []));
  const memRatio = ratios.length ? median(ratios) : undefined;
  const allComplete = [...sg, ...sf].every(complete);
  out.push({
    name: 'peak RSS with 1,000 open streams ≤ 1.35× forwarder',
    measured:
      memRatio === undefined
        ? 'n/a'
        : `${f2(memRatio)}× (median of ${ratios.length} round${ratios.length === 1 ? '' : 's'}: ${ratios.map((x) => `${f2(x)}×`).join(', ')}; peaks ${mb(median(sg.map((x) => x.peakKb)))} / ${mb(median(sf.map((x) => x.peakKb)))} MB)${allComplete ? '' : ' — NOT all streams were open at once, see the table'}`,
    pass: memRatio === undefined ? undefined : memRatio <= 1.35 && allComplete,
  });
  return out;
}

function table(head: string[], rows: string[][]): string {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

/** The tables (markdown, also readable on a terminal). */
export function tables(r: Results): string {
  const parts: string[] = [];
  const has = (t: Target) => r.targets.includes(t);

  const both = has('gateway') && has('forwarder');
  const cells = (sc: Scenario) => r.targets.map((t) => r.load.get(loadKey(t, sc)));
  const ratio = (sc: Scenario, pick: (x: LoadResult) => number | undefined) => {
    const g = r.load.get(loadKey('gateway', sc))?.median;
    const f = r.load.get(loadKey('forwarder', sc))?.median;
    const gv = g && pick(g);
    const fv = f && pick(f);
    return gv !== undefined && fv ? `${(gv / fv).toFixed(2)}×` : 'n/a';
  };
  const rpsCell = (c: LoadCell | undefined) => {
    if (!c) return 'n/a';
    const all = c.rounds.map((x) => x.rps);
    const fail = c.rounds.reduce((n, x) => n + x.failures, 0);
    const spread = all.length > 1 ? ` (${Math.min(...all).toFixed(0)}–${Math.max(...all).toFixed(0)})` : '';
    return `${c.median.rps.toFixed(0)}${spread}${fail ? ` ⚠${fail} failed` : ''}`;
  };
  const rpsHead = ['scenario', ...r.targets.map((t) => `${t} RPS`), ...(both ? ['gw/fwd RPS'] : []), ...r.targets.map((t) => `${t} CPU µs/req`), ...(both ? ['gw/fwd CPU'] : [])];
  const rpsRows = r.scenarios.map((sc) => [
    `${sc.mode}, c=${sc.connections}`,
    ...cells(sc).map(rpsCell),
    ...(both ? [ratio(sc, (x) => x.rps)] : []),
    ...cells(sc).map((c) => (c?.median.cpuUsPerReq === undefined ? 'n/a' : c.median.cpuUsPerReq.toFixed(0))),
    ...(both ? [ratio(sc, (x) => x.cpuUsPerReq)] : []),
  ]);
  parts.push(
    '### Throughput (autocannon; RPS: median of rounds (min–max); CPU: user+system time of the server process per answered request, median of rounds)\n\n' +
      table(rpsHead, rpsRows),
  );
  const latRows = r.scenarios.map((sc) => [`${sc.mode}, c=${sc.connections}`, ...cells(sc).map((c) => (c ? `${c.median.p50} / ${c.median.p99}` : 'n/a'))]);
  parts.push('### Latency under load (autocannon, ms, 1 ms resolution; median of rounds)\n\n' + table(['scenario', ...r.targets.map((t) => `${t} p50 / p99`)], latRows));

  const seqRows = r.targets
    .filter((t) => r.sequential[t])
    .map((t) => {
      const s = r.sequential[t]!;
      const d = r.sequential.direct?.p50;
      return [t, String(s.n), f3(s.p50), f3(s.p99), t === 'direct' || d === undefined ? '—' : `${signed(s.p50 - d)}`];
    });
  if (seqRows.length) {
    parts.push('### Latency at c=1 (sequential, one kept-alive connection, hrtime; non-stream)\n\n' + table(['target', 'requests', 'p50 ms', 'p99 ms', 'added p50 over direct, ms'], seqRows));
  }

  const ttfbRows = r.targets
    .filter((t) => r.ttfb[t])
    .map((t) => {
      const s = r.ttfb[t]!;
      const fw = r.ttfb.forwarder?.p50;
      return [t, String(s.n), f3(s.p50), f3(s.p99), t === 'gateway' && fw !== undefined ? signed(s.p50 - fw) : '—'];
    });
  if (ttfbRows.length) {
    parts.push('### Streaming time to first byte (sequential, until the first body chunk)\n\n' + table(['target', 'requests', 'p50 ms', 'p99 ms', 'p50 vs forwarder, ms'], ttfbRows));
  }

  const memRows = r.targets.flatMap((t) =>
    (r.streams[t] ?? []).map((s, i) => [String(i + 1), t, String(s.requested), String(s.maxOpen), `${s.completed}${s.failed ? ` (${s.failed} failed)` : ''}`, mb(s.baselineKb), mb(s.peakKb)]),
  );
  memRows.sort((a, b) => Number(a[0]) - Number(b[0]));
  if (memRows.length) {
    parts.push('### Memory with concurrent open streams (fresh processes each round, after 200 sequential requests; VmRSS sampled every 25 ms)\n\n' + table(['round', 'target', 'streams', 'max open at once', 'completed', 'RSS before, MB', 'peak RSS, MB'], memRows));
  }
  if (r.features?.length) parts.push(featureTable(r.features, r.load.get(loadKey('forwarder', { mode: 'non-stream', connections: 10 }))));
  return parts.join('\n\n');
}

function featureTable(steps: readonly FeatureCost[], forwarder: LoadCell | undefined): string {
  const fwdCpu = forwarder?.median.cpuUsPerReq;
  const rows = steps.map((s, i) => {
    const cpu = s.cell.median.cpuUsPerReq;
    const before = i === 0 ? fwdCpu : steps[i - 1].cell.median.cpuUsPerReq;
    return [
      s.name,
      s.adds,
      s.cell.median.rps.toFixed(0),
      cpu === undefined ? 'n/a' : cpu.toFixed(0),
      cpu === undefined || before === undefined ? 'n/a' : `${cpu >= before ? '+' : '−'}${Math.abs(cpu - before).toFixed(0)}`,
      forwarder ? `${(s.cell.median.rps / forwarder.median.rps).toFixed(2)}×` : 'n/a',
    ];
  });
  return (
    '### What each feature costs (non-stream, c=10; each step adds to the one before, medians of rounds)\n\n' +
    `The first step's added CPU is over the forwarder${fwdCpu === undefined ? '' : ` (${fwdCpu.toFixed(0)} µs/req)`}. ` +
    'The steps run in their own time windows, so compare their CPU per request (steadier on a shared machine) rather than their RPS. ' +
    'The last step is the gateway of the tables above.\n\n' +
    table(['step', 'switches on', 'RPS', 'CPU µs/req', 'added CPU µs/req', 'RPS vs forwarder'], rows)
  );
}

export function checksTable(list: Check[]): string {
  return table(
    ['target', 'measured', 'result'],
    list.map((c) => [c.name, c.measured, c.pass === undefined ? 'not measured' : c.pass ? 'PASS' : 'FAIL']),
  );
}

export function markdown(r: Results, extra = ''): string {
  const m = r.machine;
  return `# Benchmarks

Generated by \`${r.command}\` (scripts/bench.ts). Do not edit by hand: run it again.

- Date: ${m.date}
- Machine: ${m.nproc} CPU cores (\`nproc\`), ${m.cpu}, Node ${m.node}
- Load average before / after: ${m.loadBefore} / ${m.loadAfter} (a shared machine: other work may have run during the bench)
- Noise: ${m.noise}
- Settings: ${r.settings}

## What runs

Each server is its own \`node\` process on 127.0.0.1; the load generator (autocannon and the
sequential clients) is a third:

- **direct**: the bench mock upstream (scripts/bench/mock-upstream.mjs) called directly. Non-stream: one JSON
  completion with usage; stream: 8 content chunks, a usage chunk when \`include_usage\`, \`[DONE]\`; no delay.
- **forwarder**: a bare \`node:http\` + undici Pool forwarder (scripts/bench/forwarder.mjs): reads the body from
  the Node request, \`JSON.parse\` + \`JSON.stringify\`, forwards, returns status + body; streams chunk by chunk.
  The floor for any Node gateway.
- **gateway**: \`node dist/main.js --config scripts/bench/gateway.bench.yaml\` (the built gateway, every pipeline
  feature in that config on, request logs off), exporting its spans over OTLP/HTTP to the mock (unless the
  settings below say \`--no-tracing\`).

The request is a small chat completion (system + user message) for the model alias \`support-bot\`, which the
bench config binds to an experiment: the gateway assigns a variant and renders its template (the mock ignores
the model). The streaming request does not set \`stream_options.include_usage\` (the openai SDK default), so
the gateway adds it upstream and strips the usage chunk again: its full accounting path.

CPU µs/req is the user + system CPU time of the server process (from /proc/PID/stat) over a run, divided by
the requests it answered: on a shared machine it moves less than RPS, and once a server is saturated it is
what bounds its RPS.

## Results

${tables(r)}

## Targets

${checksTable(checks(r))}

Where the gateway's time goes: \`npm run bench -- --profile\` runs forwarder and gateway under \`--cpu-prof\`
and prints their CPU per request side by side, by module and by function.
${extra}`;
}
