/**
 * The measurements: autocannon load runs, a sequential hrtime client (sub-ms latency and
 * streaming time to first byte) and the open-streams memory probe. All requests go to
 * 127.0.0.1 and every loop is bounded.
 */
import autocannon from 'autocannon';
import { Pool, request } from 'undici';
import { readCpuMs, readRss } from './processes.js';
import { CHAT_PATH, HEADERS, bodyFor, type Mode } from './workload.js';

export interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  /** 2xx answers. */
  answered: number;
  /** Transport errors, timeouts and non-2xx answers. */
  failures: number;
  /**
   * CPU time (user + system) the server process spent per answered request, in µs: less
   * sensitive to a noisy machine than RPS, and what bounds RPS once the server is saturated.
   */
  cpuUsPerReq?: number;
}

/** One autocannon run against `origin` (its latency resolution is 1 ms); `pid` is the server's process. */
export async function load(options: { origin: string; pid?: number; mode: Mode; connections: number; seconds: number }): Promise<LoadResult> {
  const { origin, mode, connections, seconds, pid } = options;
  const cpuBefore = pid === undefined ? undefined : await readCpuMs(pid);
  const r = await autocannon({
    url: origin + CHAT_PATH,
    method: 'POST',
    headers: HEADERS,
    body: bodyFor(mode),
    connections,
    pipelining: 1,
    duration: seconds,
    timeout: 10,
  });
  const cpuAfter = pid === undefined ? undefined : await readCpuMs(pid);
  const ok = r['2xx'];
  const cpuUsPerReq = cpuBefore !== undefined && cpuAfter !== undefined && ok > 0 ? ((cpuAfter - cpuBefore) * 1000) / ok : undefined;
  return { rps: ok / r.duration, answered: ok, p50: r.latency.p50, p99: r.latency.p99, failures: r.errors + r.timeouts + r.non2xx, cpuUsPerReq };
}

/**
 * Sequential requests over one kept-alive connection, timed with process.hrtime: `total`
 * is until the body ended, `ttfb` until its first chunk arrived. One client per target.
 */
export class SequentialClient {
  readonly #pool: Pool;
  constructor(origin: string) {
    this.#pool = new Pool(origin, { connections: 1, pipelining: 1, keepAliveTimeout: 60_000 });
  }

  /** Milliseconds for `n` requests; throws on a non-200. */
  async run(mode: Mode, n: number): Promise<{ total: number[]; ttfb: number[] }> {
    const total: number[] = [];
    const ttfb: number[] = [];
    const body = bodyFor(mode);
    for (let i = 0; i < n; i++) {
      const start = process.hrtime.bigint();
      const res = await this.#pool.request({ method: 'POST', path: CHAT_PATH, headers: HEADERS, body });
      let first: bigint | undefined;
      for await (const _chunk of res.body) first ??= process.hrtime.bigint();
      const end = process.hrtime.bigint();
      if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
      total.push(Number(end - start) / 1e6);
      ttfb.push(Number((first ?? end) - start) / 1e6);
    }
    return { total, ttfb };
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}

export interface OpenStreamsResult {
  requested: number;
  /** Streams that had their first chunk at the same time (should equal `requested`). */
  maxOpen: number;
  completed: number;
  failed: number;
  baselineKb: number;
  /** Highest VmRSS sampled every 25 ms while the streams were open. */
  peakKb: number;
}

/**
 * Opens `count` streaming requests through `origin` that the mock upstream holds open after
 * their first chunk; once all are open (or `openTimeoutMs` passed) keeps sampling for
 * `dwellMs`, then has the mock finish them all (`POST /_bench/release`) and reads every
 * stream to its end. The target process's VmRSS is sampled every 25 ms throughout.
 */
export async function openStreams(options: { origin: string; pid: number; mockOrigin: string; count: number; dwellMs: number; openTimeoutMs?: number }): Promise<OpenStreamsResult> {
  const { origin, pid, count, dwellMs } = options;
  const openTimeoutMs = options.openTimeoutMs ?? 30_000;
  const maxHoldMs = openTimeoutMs + dwellMs + 10_000; // the mock lets go by itself after this
  const pool = new Pool(origin, { connections: count, pipelining: 1, keepAliveTimeout: 5_000, headersTimeout: maxHoldMs + 10_000, bodyTimeout: maxHoldMs + 10_000 });
  const baseline = await readRss(pid);
  let peak = baseline?.rssKb ?? 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const now = await readRss(pid);
      if (now) peak = Math.max(peak, now.rssKb);
      await new Promise((r) => setTimeout(r, 25));
    }
  })();

  let open = 0;
  let maxOpen = 0;
  let completed = 0;
  let failed = 0;
  const headers = { ...HEADERS, 'x-bench-hold-ms': String(maxHoldMs) };
  const one = async () => {
    let counted = false;
    try {
      const res = await pool.request({ method: 'POST', path: CHAT_PATH, headers, body: bodyFor('stream') });
      for await (const _chunk of res.body) {
        if (!counted) {
          counted = true;
          open++;
          maxOpen = Math.max(maxOpen, open);
        }
      }
      if (res.statusCode === 200) completed++;
      else failed++;
    } catch {
      failed++;
    } finally {
      if (counted) open--;
    }
  };
  const all = Promise.all(Array.from({ length: count }, one));
  const until = Date.now() + openTimeoutMs;
  while (open + failed < count && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, dwellMs));
  const release = await request(`${options.mockOrigin}/_bench/release`, { method: 'POST' });
  await release.body.dump();
  await all;
  sampling = false;
  await sampler;
  await pool.close();
  return { requested: count, maxOpen, completed, failed, baselineKb: baseline?.rssKb ?? 0, peakKb: peak };
}
