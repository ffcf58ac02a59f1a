/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): the functions with the most self
 * time, self time grouped by package/module, and inclusive time of the gateway's own
 * functions (dist/).
 *
 *   node --import tsx scripts/bench/cpu-profile.ts FILE.cpuprofile [TOP]
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  /** µs on the monotonic clock (CLOCK_MONOTONIC on Linux, as process.hrtime). */
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  /** Percent of the busy (non-idle) samples. */
  percent: number;
  ms: number;
}

export interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  selfTop: ProfileRow[];
  byModule: ProfileRow[];
  gatewayInclusive: ProfileRow[];
}

const IDLE = new Set(['(idle)']);

function shortUrl(url: string): string {
  if (!url) return '';
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const dist = url.lastIndexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return url.replace(/^file:\/\//, '');
}

function keyOf(f: CallFrame): string {
  const name = f.functionName || '(anonymous)';
  const where = shortUrl(f.url);
  return where ? `${name} ${where}:${f.lineNumber + 1}` : name;
}

/** Package (`undici`, `hono`, `@hono/node-server`), `node:<internal>`, `dist/<dir>` or a V8 pseudo-frame. */
function moduleOf(f: CallFrame): string {
  const url = f.url;
  if (!url) return f.functionName.startsWith('(') ? f.functionName : '(native)';
  if (url.startsWith('node:')) return url.split('/').slice(0, 2).join('/');
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const parts = url.slice(nm + '/node_modules/'.length).split('/');
    return parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0];
  }
  const dist = url.lastIndexOf('/dist/');
  if (dist >= 0) return url.slice(dist + 1);
  return shortUrl(url);
}

export interface SummaryOptions {
  top?: number;
  /**
   * Only samples taken in [from, to], µs on the monotonic clock (`process.hrtime.bigint() / 1000n`
   * in any process on the same Linux machine): leaves start-up and warm-up out.
   */
  window?: [number, number];
}

export function summariseProfile(file: string, options: SummaryOptions = {}): ProfileSummary {
  const top = options.top ?? 25;
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // timeDeltas[i] is the time since sample i-1: it belongs to sample i-1.
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    if (options.window && (at < options.window[0] || at > options.window[1])) continue;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(profile.samples[i], (selfUs.get(profile.samples[i]) ?? 0) + Math.max(0, dt));
  }
  let busy = 0;
  let idle = 0;
  const selfByKey = new Map<string, number>();
  const selfByModule = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame;
    if (IDLE.has(f.functionName)) {
      idle += us;
      continue;
    }
    busy += us;
    selfByKey.set(keyOf(f), (selfByKey.get(keyOf(f)) ?? 0) + us);
    selfByModule.set(moduleOf(f), (selfByModule.get(moduleOf(f)) ?? 0) + us);
  }

  // Inclusive time of dist/ functions, counted once per stack even under recursion.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    if (IDLE.has(byId.get(id)!.callFrame.functionName)) continue;
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const f = byId.get(at)!.callFrame;
      if (!f.url.includes('/dist/')) continue;
      const k = keyOf(f);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }

  const rows = (m: Map<string, number>, n: number): ProfileRow[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, ms: us / 1000, percent: busy > 0 ? (100 * us) / busy : 0 }));
  return { busyMs: busy / 1000, idleMs: idle / 1000, selfTop: rows(selfByKey, top), byModule: rows(selfByModule, 20), gatewayInclusive: rows(inclusive, 20) };
}

/** The summary as text; with `requests`, each row also shows µs of CPU per request. */
export function formatProfile(s: ProfileSummary, requests?: number): string {
  const per = (ms: number) => (requests ? `${((ms * 1000) / requests).toFixed(1).padStart(7)} µs/req  ` : '');
  const fmt = (title: string, rows: ProfileRow[]) =>
    [`${title}`, ...rows.map((r) => `  ${r.percent.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(7)} ms  ${per(r.ms)}${r.name}`)].join('\n');
  return [
    `busy ${s.busyMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms${requests ? `, ${requests} requests: ${((s.busyMs * 1000) / requests).toFixed(1)} µs busy per request` : ''} (percentages are of busy time)`,
    fmt('self time, top functions:', s.selfTop),
    fmt('self time by module:', s.byModule),
    fmt('inclusive time, gateway functions (dist/):', s.gatewayInclusive),
  ].join('\n\n');
}

/** Self time by module of two profiles side by side, in µs of CPU per request. */
export function compareByModule(a: { label: string; summary: ProfileSummary; requests: number }, b: { label: string; summary: ProfileSummary; requests: number }): string {
  const us = (rows: ProfileRow[], n: number) => new Map(rows.map((r) => [r.name, (r.ms * 1000) / n]));
  const ma = us(a.summary.byModule, a.requests);
  const mb = us(b.summary.byModule, b.requests);
  const names = [...new Set([...ma.keys(), ...mb.keys()])].sort((x, y) => (mb.get(y) ?? 0) - (ma.get(y) ?? 0) - ((mb.get(x) ?? 0) - (ma.get(x) ?? 0)));
  const cell = (v: number | undefined) => (v === undefined ? '      —' : v.toFixed(1).padStart(7));
  return [
    `µs of CPU per request by module (top-20 modules of each; sorted by ${b.label} − ${a.label})`,
    `  ${a.label.padStart(9)} ${b.label.padStart(9)}   module`,
    `  ${cell((a.summary.busyMs * 1000) / a.requests)}   ${cell((b.summary.busyMs * 1000) / b.requests)}   (all busy time)`,
    ...names.map((n) => `  ${cell(ma.get(n))}   ${cell(mb.get(n))}   ${n}`),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node --import tsx scripts/bench/cpu-profile.ts FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  process.stdout.write(`${formatProfile(summariseProfile(file, { top: Number(process.argv[3] ?? 25) }))}\n`);
}
