/**
 * `npm run bench`: promptgate against a bare node:http + undici forwarder and against the
 * upstream called directly, each server in its own process (see BENCHMARKS.md for what
 * runs and the targets).
 *
 *   npm run bench                          full run (~4–5 min), writes BENCHMARKS.md
 *   npm run bench -- --quick               smoke run (short durations; does not write BENCHMARKS.md)
 *   npm run bench -- --only gateway,forwarder
 *   npm run bench -- --rounds 5 --duration 8 --memory-rounds 5
 *   npm run bench -- --profile             CPU-profile forwarder and gateway under load, compare per request
 *   npm run bench -- --profile --connections 1   the same at c=1 (default 10)
 *   npm run bench -- --write | --no-write  force writing BENCHMARKS.md, or not
 *   npm run bench -- --no-tracing          gateway without OTLP trace export (on by default: the
 *                                          mock upstream is also the trace sink)
 *   npm run bench -- --no-features        skip the feature-by-feature runs (gateway with each pipeline
 *                                          feature added in turn; on by default with the bench config)
 *   npm run bench -- --node-flags=--max-semi-space-size=8
 *                                          the gateway process started with these Node/V8 flags (the
 *                                          forwarder keeps the defaults); never writes BENCHMARKS.md
 *   npm run bench -- --config FILE         gateway with another config (e.g. scripts/bench/core.bench.yaml:
 *                                          the core pipeline without features); never writes BENCHMARKS.md
 *
 * The harness is built for a shared, noisy machine: a warm-up per target, then several
 * rounds whose order rotates between targets, and the median per scenario.
 */
import { execSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { compareByModule, formatProfile, summariseProfile } from './bench/cpu-profile.js';
import { SequentialClient, load, openStreams, type LoadResult } from './bench/probes.js';
import { freePort, startServer, type ServerProcess } from './bench/processes.js';
import { featureSteps } from './bench/feature-steps.js';
import { TARGETS, checks, checksTable, loadKey, markdown, tables, type FeatureCost, type LatencyStat, type LoadCell, type Results, type Scenario, type Target } from './bench/report.js';
import { QuietGate } from './bench/quiet.js';
import { median, percentile } from './bench/stats.js';
import { CHAT_PATH, HEADERS, bodyFor, type Mode } from './bench/workload.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BENCH_CONFIG = 'scripts/bench/gateway.bench.yaml';

interface Settings {
  rounds: number;
  seconds: number;
  warmSeconds: number;
  sequential: number;
  ttfb: number;
  blocks: number;
  streams: number;
  /** Memory rounds, each on a fresh forwarder and gateway. */
  memoryRounds: number;
  dwellMs: number;
  /** ms the harness may spend in total waiting for other work on the machine to calm down. */
  quietBudgetMs: number;
}

const FULL: Settings = { rounds: 3, seconds: 5, warmSeconds: 2, sequential: 2000, ttfb: 500, blocks: 5, streams: 1000, memoryRounds: 3, dwellMs: 2000, quietBudgetMs: 20_000 };
const QUICK: Settings = { rounds: 1, seconds: 1, warmSeconds: 0.5, sequential: 200, ttfb: 100, blocks: 2, streams: 1000, memoryRounds: 1, dwellMs: 1000, quietBudgetMs: 5_000 };

const SCENARIOS: Scenario[] = [
  { mode: 'non-stream', connections: 1 },
  { mode: 'non-stream', connections: 10 },
  { mode: 'stream', connections: 1 },
  { mode: 'stream', connections: 10 },
];

const log = (line: string) => process.stdout.write(`${line}\n`);

function parseOptions() {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      rounds: { type: 'string' },
      'memory-rounds': { type: 'string' },
      'node-flags': { type: 'string' },
      duration: { type: 'string' },
      profile: { type: 'boolean', default: false },
      connections: { type: 'string' },
      write: { type: 'boolean' },
      'no-write': { type: 'boolean' },
      'no-tracing': { type: 'boolean', default: false },
      'no-features': { type: 'boolean', default: false },
      config: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    log(readFileSync(fileURLToPath(import.meta.url), 'utf8').split('*/')[0].replace(/^\/\*\*|^ \* ?/gm, ''));
    process.exit(0);
  }
  const settings = { ...(values.quick ? QUICK : FULL) };
  const bounded = (v: string | undefined, name: string, min: number, max: number) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max) throw new Error(`--${name} must be between ${min} and ${max}`);
    return n;
  };
  settings.rounds = Math.round(bounded(values.rounds, 'rounds', 1, 20) ?? settings.rounds);
  settings.memoryRounds = Math.round(bounded(values['memory-rounds'], 'memory-rounds', 1, 10) ?? settings.memoryRounds);
  settings.seconds = bounded(values.duration, 'duration', 1, 60) ?? settings.seconds;
  const targets = values.only ? values.only.split(',').map((s) => s.trim()) : [...TARGETS];
  for (const t of targets) if (!TARGETS.includes(t as Target)) throw new Error(`--only: unknown target "${t}" (known: ${TARGETS.join(', ')})`);
  const config = values.config ?? BENCH_CONFIG;
  const write = values['no-write'] ? false : (values.write ?? (!values.quick && !values.only && values.rounds === undefined && values['memory-rounds'] === undefined && values['node-flags'] === undefined && values.duration === undefined && config === BENCH_CONFIG));
  const nodeFlags = values['node-flags']?.split(/\s+/).filter(Boolean) ?? [];
  const gateway: GatewayLaunch = { tracing: !values['no-tracing'], config, nodeFlags };
  // The feature steps end with the bench config as shipped: only then are they comparable.
  const features = !values['no-features'] && config === BENCH_CONFIG && gateway.tracing && targets.includes('gateway');
  return { settings, targets: TARGETS.filter((t) => targets.includes(t)), quick: values.quick, profile: values.profile, profileConnections: Number(values.connections ?? 10), write, gateway, features };
}

function machine() {
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown';
  let nproc = os.availableParallelism();
  try {
    nproc = Number(execSync('nproc', { encoding: 'utf8' }).trim()) || nproc;
  } catch {
    // keep os.availableParallelism()
  }
  return { date: new Date().toISOString(), nproc, node: process.version, cpu, loadBefore: os.loadavg().map((l) => l.toFixed(2)).join(' '), loadAfter: '', noise: '' };
}

async function startMock(): Promise<ServerProcess> {
  return startServer({ name: 'mock upstream', args: ['scripts/bench/mock-upstream.mjs'], cwd: root, ready: { kind: 'line' } });
}

async function startForwarder(mock: ServerProcess, nodeFlags: string[] = []): Promise<ServerProcess> {
  return startServer({ name: 'forwarder', args: [...nodeFlags, 'scripts/bench/forwarder.mjs'], cwd: root, env: { BENCH_UPSTREAM_ORIGIN: mock.origin }, ready: { kind: 'line' } });
}

/**
 * The built gateway. With `tracing`, spans are exported over OTLP/HTTP to the mock upstream
 * (a production sidecar exports its traces; the cost belongs in the numbers).
 */
/** How the gateway process is started: its config, and whether it exports traces to the mock. */
interface GatewayLaunch {
  tracing: boolean;
  config: string;
  /** `--node-flags`: Node/V8 flags for the gateway process only (e.g. a young-generation size to try). */
  nodeFlags: string[];
}

async function startGatewayProcess(mock: ServerProcess, launch: GatewayLaunch, nodeFlags: string[] = []): Promise<ServerProcess> {
  const { tracing, config } = launch;
  if (!existsSync(path.join(root, 'dist/main.js'))) throw new Error('dist/main.js is missing: run `npm run build` (npm run bench does)');
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort(); // the CLI cannot report a port 0 at log level warn
    try {
      return await startServer({
        name: 'gateway',
        args: [...nodeFlags, ...launch.nodeFlags, 'dist/main.js', '--config', config, '--port', String(port)],
        cwd: root,
        env: {
          BENCH_UPSTREAM_URL: `${mock.origin}/v1`,
          PORT: '',
          ...(tracing
            ? { OTEL_EXPORTER_OTLP_ENDPOINT: mock.origin, OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf', OTEL_SDK_DISABLED: 'false' }
            : { OTEL_EXPORTER_OTLP_ENDPOINT: '', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: '', OTEL_TRACES_EXPORTER: 'none' }),
        },
        ready: { kind: 'http', port, path: '/readyz' },
      });
    } catch (err) {
      lastError = err; // most likely the port was taken in between: try another
    }
  }
  throw lastError;
}

function stat(values: number[]): LatencyStat {
  return { n: values.length, p50: percentile(values, 50), p99: percentile(values, 99) };
}

function medianLoad(rounds: LoadResult[]): LoadResult {
  return {
    rps: median(rounds.map((r) => r.rps)),
    p50: median(rounds.map((r) => r.p50)),
    p99: median(rounds.map((r) => r.p99)),
    cpuUsPerReq: rounds.every((r) => r.cpuUsPerReq !== undefined) ? median(rounds.map((r) => r.cpuUsPerReq!)) : undefined,
    answered: rounds.reduce((n, r) => n + r.answered, 0),
    failures: rounds.reduce((n, r) => n + r.failures, 0),
  };
}

/** Sequential requests in interleaved blocks (drift on a shared machine hits every target alike). */
async function sequential(servers: Map<Target, ServerProcess>, mode: Mode, total: number, blocks: number, gate: QuietGate): Promise<Map<Target, { total: number[]; ttfb: number[] }>> {
  const clients = new Map([...servers].map(([t, s]) => [t, new SequentialClient(s.origin)]));
  const out = new Map<Target, { total: number[]; ttfb: number[] }>();
  try {
    for (const [t, c] of clients) {
      await c.run(mode, Math.min(200, total)); // warm the connection and the JIT
      out.set(t, { total: [], ttfb: [] });
    }
    const per = Math.ceil(total / blocks);
    for (let b = 0; b < blocks; b++) {
      const order = rotate([...clients.keys()], b);
      for (const t of order) {
        await gate.wait(3000);
        const r = await clients.get(t)!.run(mode, per);
        out.get(t)!.total.push(...r.total);
        out.get(t)!.ttfb.push(...r.ttfb);
      }
    }
  } finally {
    await Promise.all([...clients.values()].map((c) => c.close()));
  }
  return out;
}

function rotate<T>(list: T[], by: number): T[] {
  const k = by % list.length;
  return [...list.slice(k), ...list.slice(0, k)];
}

async function run(): Promise<void> {
  const opts = parseOptions();
  if (opts.profile) return profile(opts.settings, opts.targets, opts.gateway, opts.profileConnections);
  const s = opts.settings;
  const m = machine();
  const loadRuns = SCENARIOS.length * opts.targets.length * s.rounds;
  const estimate = loadRuns * (s.seconds + 0.5) + opts.targets.length * 2 * s.warmSeconds + 2 * s.memoryRounds * (s.dwellMs / 1000 + 6) + s.quietBudgetMs / 1000 + 20 + (opts.features ? 3 * (s.rounds * (s.seconds + 0.5) + s.warmSeconds + 3) : 0);
  log(`promptgate bench — ${m.nproc} cores, ${m.cpu}, Node ${m.node}, load ${m.loadBefore}`);
  log(`targets: ${opts.targets.join(', ')}; ${s.rounds} round(s) × ${s.seconds}s per scenario; about ${Math.ceil(estimate / 60)} min`);

  const gate = new QuietGate(s.quietBudgetMs);
  const mock = await startMock();
  const servers = new Map<Target, ServerProcess>();
  const children: ServerProcess[] = [mock];
  try {
    if (opts.targets.includes('direct')) servers.set('direct', mock);
    if (opts.targets.includes('forwarder')) {
      const fw = await startForwarder(mock);
      children.push(fw);
      servers.set('forwarder', fw);
    }
    if (opts.targets.includes('gateway')) {
      const gw = await startGatewayProcess(mock, opts.gateway);
      children.push(gw);
      servers.set('gateway', gw);
    }
    log(`started: ${children.map((c) => `${c.name} pid ${c.pid} :${c.port}`).join(', ')}`);

    // Memory first, on fresh processes that have served only a few sequential requests: the
    // peak then reflects the footprint plus what 1,000 streams need, not heap slack left
    // by earlier high-RPS runs. One peak depends on when V8 happened to collect, so each
    // round starts a fresh pair (the first round uses the processes the later phases use),
    // the order alternating; the median ratio decides.
    const streams: Results['streams'] = {};
    for (let round = 0; round < s.memoryRounds; round++) {
      const fresh: ServerProcess[] = [];
      try {
        const order = (['forwarder', 'gateway'] as const).filter((t) => servers.has(t));
        if (round % 2 === 1) order.reverse();
        for (const t of order) {
          let srv = servers.get(t)!;
          if (round > 0) {
            srv = t === 'gateway' ? await startGatewayProcess(mock, opts.gateway) : await startForwarder(mock);
            fresh.push(srv);
          }
          const client = new SequentialClient(srv.origin);
          for (const mode of ['non-stream', 'stream'] as const) await client.run(mode, 100);
          await client.close();
          log(`\n${s.streams} open streams through ${t} (memory round ${round + 1}/${s.memoryRounds})…`);
          await gate.wait();
          const r = await openStreams({ origin: srv.origin, pid: srv.pid, mockOrigin: mock.origin, count: s.streams, dwellMs: s.dwellMs });
          (streams[t] ??= []).push(r);
          log(`  max open ${r.maxOpen}/${r.requested}, completed ${r.completed}, failed ${r.failed}; RSS ${(r.baselineKb / 1024).toFixed(1)} -> peak ${(r.peakKb / 1024).toFixed(1)} MB`);
          await new Promise((res) => setTimeout(res, 500));
        }
      } finally {
        for (const p of fresh) await p.stop();
      }
    }

    log('\nwarm-up');
    for (const [t, srv] of servers) {
      for (const mode of ['non-stream', 'stream'] as const) {
        const r = await load({ origin: srv.origin, mode, connections: 10, seconds: s.warmSeconds });
        if (r.rps === 0 || r.failures > 0) throw new Error(`${t} failed the warm-up (${mode}: ${r.failures} failures, ${r.rps.toFixed(0)} RPS)`);
      }
      log(`  ${t} ok`);
    }

    let pipeline = 'n/a';
    const gwSrv = servers.get('gateway');
    if (gwSrv) {
      // What the gateway did to a bench request, from its own response headers.
      const res = await request(`${gwSrv.origin}${CHAT_PATH}`, { method: 'POST', headers: HEADERS, body: bodyFor('non-stream') });
      await res.body.dump();
      const h = (n: string) => res.headers[n] as string | undefined;
      pipeline = h('x-promptgate-template')
        ? `template ${h('x-promptgate-template')}@${h('x-promptgate-template-version')}${h('x-promptgate-experiment') ? `, experiment ${h('x-promptgate-experiment')} variant ${h('x-promptgate-variant')}` : ''}`
        : 'no template selected';
      log(`gateway pipeline for the bench request: ${pipeline}`);
    }

    const results: Results = {
      machine: m,
      command: 'npm run bench' + (process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''),
      settings: `gateway${opts.gateway.config === BENCH_CONFIG ? '' : ` (--config ${opts.gateway.config})`}${opts.gateway.nodeFlags.length ? ` (node ${opts.gateway.nodeFlags.join(' ')})` : ''}: ${pipeline}, trace export ${opts.gateway.tracing ? 'ON (OTLP/HTTP protobuf to the mock)' : 'OFF (--no-tracing)'}; ${s.rounds} round(s) × ${s.seconds} s per throughput scenario after a ${s.warmSeconds} s warm-up per target and mode; ${s.sequential} sequential requests (c=1 latency) and ${s.ttfb} (TTFB) per target in ${s.blocks} interleaved blocks; ${s.streams} streams open together for ${s.dwellMs} ms, ${s.memoryRounds} memory round(s)`,
      targets: opts.targets,
      scenarios: SCENARIOS,
      load: new Map(),
      sequential: {},
      ttfb: {},
      streams,
    };

    log(`\nc=1 latency: ${s.sequential} sequential non-stream requests per target…`);
    for (const [t, v] of await sequential(servers, 'non-stream', s.sequential, s.blocks, gate)) {
      results.sequential[t] = stat(v.total);
      log(`  ${t}: p50 ${results.sequential[t]!.p50.toFixed(3)} ms, p99 ${results.sequential[t]!.p99.toFixed(3)} ms`);
    }
    log(`\nstreaming TTFB: ${s.ttfb} sequential stream requests per target…`);
    for (const [t, v] of await sequential(servers, 'stream', s.ttfb, s.blocks, gate)) {
      results.ttfb[t] = stat(v.ttfb);
      log(`  ${t}: p50 ${results.ttfb[t]!.p50.toFixed(3)} ms, p99 ${results.ttfb[t]!.p99.toFixed(3)} ms`);
    }

    log('\nthroughput (autocannon)');
    const rounds = new Map<string, LoadResult[]>();
    for (let round = 0; round < s.rounds; round++) {
      for (const sc of SCENARIOS) {
        for (const t of rotate([...servers.keys()], round)) {
          await gate.wait();
          const srv = servers.get(t)!;
          const r = await load({ origin: srv.origin, pid: srv.pid, mode: sc.mode, connections: sc.connections, seconds: s.seconds });
          const key = loadKey(t, sc);
          rounds.set(key, [...(rounds.get(key) ?? []), r]);
          log(`  round ${round + 1}/${s.rounds} ${sc.mode.padEnd(10)} c=${String(sc.connections).padEnd(2)} ${t.padEnd(9)} ${r.rps.toFixed(0).padStart(6)} RPS  p50 ${r.p50} ms  p99 ${r.p99} ms  cpu ${r.cpuUsPerReq?.toFixed(0) ?? '?'} µs/req${r.failures ? `  ${r.failures} FAILED` : ''}`);
        }
      }
    }
    for (const [key, list] of rounds) results.load.set(key, { rounds: list, median: medianLoad(list) });
    if (opts.features) results.features = await featureCosts(mock, s, gate, results.load.get(loadKey('gateway', { mode: 'non-stream', connections: 10 }))!, opts.gateway.nodeFlags);

    if (servers.has('gateway') && opts.gateway.tracing) {
      const stats = await request(`${mock.origin}/_bench/stats`).then((r) => r.body.json() as Promise<{ traceExports: number }>);
      log(`gateway trace exports received by the mock: ${stats.traceExports}`);
      if (stats.traceExports === 0) log('WARNING: tracing was requested but the gateway exported no spans');
    }
    m.loadAfter = os.loadavg().map((l) => l.toFixed(2)).join(' ');
    m.noise = `before each measurement the harness waited for other work to use < 25% of the CPUs (${(gate.waitedMs / 1000).toFixed(0)} s waited in all, budget ${s.quietBudgetMs / 1000} s); CPU busy just before the measurements: median ${(100 * median(gate.seen)).toFixed(0)}%, max ${(100 * Math.max(...gate.seen)).toFixed(0)}%`;
    log(`noise: ${m.noise}`);
    log(`\n${tables(results)}\n\n### Targets\n\n${checksTable(checks(results))}\n`);
    if (opts.write) {
      writeFileSync(path.join(root, 'BENCHMARKS.md'), markdown(results));
      log('wrote BENCHMARKS.md');
    } else {
      log('BENCHMARKS.md not written (quick/partial run; pass --write to force)');
    }
  } finally {
    for (const c of children.reverse()) await c.stop();
  }
}

/**
 * The gateway once per feature step (scripts/bench/feature-steps.ts), non-stream at c=10,
 * each in a fresh process after its own warm-up. The last step is the gateway already
 * measured (`full`).
 */
async function featureCosts(mock: ServerProcess, s: Settings, gate: QuietGate, full: LoadCell, nodeFlags: string[]): Promise<FeatureCost[]> {
  log('\nwhat each feature costs (non-stream, c=10)');
  const steps = featureSteps(root, BENCH_CONFIG);
  const out: FeatureCost[] = [];
  for (const step of steps.slice(0, -1)) {
    const gw = await startGatewayProcess(mock, { tracing: step.tracing, config: step.config, nodeFlags });
    try {
      // A fresh process: warm its JIT at least as long as a full run does.
      await load({ origin: gw.origin, mode: 'non-stream', connections: 10, seconds: Math.max(2, s.warmSeconds) });
      const list: LoadResult[] = [];
      for (let round = 0; round < s.rounds; round++) {
        await gate.wait();
        const r = await load({ origin: gw.origin, pid: gw.pid, mode: 'non-stream', connections: 10, seconds: s.seconds });
        if (r.failures > 0) throw new Error(`feature step "${step.name}": ${r.failures} requests failed`);
        list.push(r);
        log(`  ${step.name.padEnd(26)} ${r.rps.toFixed(0).padStart(6)} RPS  cpu ${r.cpuUsPerReq?.toFixed(0) ?? '?'} µs/req`);
      }
      out.push({ name: step.name, adds: step.adds, cell: { rounds: list, median: medianLoad(list) } });
    } finally {
      await gw.stop();
    }
  }
  const last = steps[steps.length - 1];
  out.push({ name: last.name, adds: last.adds, cell: full });
  return out;
}

/**
 * `--profile`: the forwarder and the gateway (those in --only) under `--cpu-prof` at c=10 (or `--connections`),
 * one process per mode, then the summaries in µs of CPU per request, side by side.
 */
async function profile(s: Settings, targets: readonly Target[], gateway: GatewayLaunch, connections: number): Promise<void> {
  if (!Number.isInteger(connections) || connections < 1) throw new Error('--connections must be a positive integer');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'promptgate-bench-prof-'));
  const mock = await startMock();
  const seconds = Math.max(4, s.seconds + 3);
  try {
    for (const mode of ['non-stream', 'stream'] as const) {
      const done: Array<{ label: string; summary: ReturnType<typeof summariseProfile>; requests: number }> = [];
      for (const t of targets.filter((x) => x !== 'direct')) {
        const out = path.join(dir, `${t}-${mode}`);
        const flags = ['--cpu-prof', '--cpu-prof-dir', out];
        const srv = t === 'gateway' ? await startGatewayProcess(mock, gateway, flags) : await startForwarder(mock, flags);
        let requests = 0;
        let window: [number, number] = [0, 0];
        try {
          await load({ origin: srv.origin, mode, connections, seconds: s.warmSeconds });
          const from = Number(process.hrtime.bigint() / 1000n);
          const r = await load({ origin: srv.origin, pid: srv.pid, mode, connections, seconds });
          window = [from, Number(process.hrtime.bigint() / 1000n)]; // only the measured run counts
          requests = r.answered;
          log(`profiled ${t} ${mode} c=${connections} for ${seconds}s: ${r.rps.toFixed(0)} RPS, p50 ${r.p50} ms, ${r.cpuUsPerReq?.toFixed(0) ?? '?'} µs CPU/req${r.failures ? `, ${r.failures} failed` : ''}`);
        } finally {
          await srv.stop(10_000); // SIGTERM: the process exits and V8 writes the profile
        }
        const file = existsSync(out) ? readdirSync(out).find((f) => f.endsWith('.cpuprofile')) : undefined;
        if (!file) throw new Error(`no .cpuprofile written in ${out}`);
        const summary = summariseProfile(path.join(out, file), { window });
        done.push({ label: t, summary, requests });
        log(`\n== ${t}, ${mode}: ${path.join(out, file)}\n\n${formatProfile(summary, requests)}\n`);
      }
      if (done.length === 2) log(`== ${mode}: ${compareByModule(done[0], done[1])}\n`);
    }
  } finally {
    await mock.stop();
  }
}

run().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
