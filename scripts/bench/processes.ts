/**
 * Child processes of the benchmark: each server runs in its own `node` process, so none
 * shares an event loop with the load generator (this process) or with another server.
 * Every child is registered and killed on exit, Ctrl-C or a crash of the harness.
 */
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { request } from 'undici';

export interface ServerProcess {
  name: string;
  pid: number;
  port: number;
  origin: string;
  child: ChildProcess;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
  stop(graceMs?: number): Promise<void>;
}

const children = new Set<ChildProcess>();
let hooksInstalled = false;

function installCleanup(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.once('exit', () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping child processes\n`);
      process.exit(130); // the exit hook kills the children
    });
  }
}

export interface SpawnOptions {
  name: string;
  args: string[];
  env?: Record<string, string>;
  cwd: string;
  /** How the child says it is ready: a `READY <port>` stdout line, or 200 from GET `path` on `port`. */
  ready: { kind: 'line' } | { kind: 'http'; port: number; path: string };
  timeoutMs?: number;
}

/** Starts `node <args>` and waits until it is ready. */
export async function startServer(options: SpawnOptions): Promise<ServerProcess> {
  installCleanup();
  const child = spawn(process.execPath, options.args, {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let output = '';
  const keep = (b: Buffer) => {
    output = (output + b.toString('utf8')).slice(-4000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);

  const timeoutMs = options.timeoutMs ?? 20_000;
  const failed = (why: string) => new Error(`${options.name} did not start (${why}); its output:\n${output}`);
  let port: number;
  try {
    port = await Promise.race([
      options.ready.kind === 'line' ? readyLine(child) : readyHttp(options.ready.port, options.ready.path, timeoutMs),
      new Promise<never>((_, reject) => child.once('exit', (code, sig) => reject(new Error(`exited with ${code ?? sig}`)))),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`not ready after ${timeoutMs} ms`)), timeoutMs).unref()),
    ]);
  } catch (err) {
    child.kill('SIGKILL');
    throw failed((err as Error).message);
  }
  const stop = async (graceMs = 3000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  return { name: options.name, pid: child.pid!, port, origin: `http://127.0.0.1:${port}`, child, stop };
}

function readyLine(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => {
    let buf = '';
    const onData = (b: Buffer) => {
      buf += b.toString('utf8');
      const m = /READY (\d+)/.exec(buf);
      if (m) {
        child.stdout!.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    child.stdout!.on('data', onData);
  });
}

async function readyHttp(port: number, path: string, timeoutMs: number): Promise<number> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    try {
      const res = await request(`http://127.0.0.1:${port}${path}`, { headersTimeout: 1000, bodyTimeout: 1000 });
      await res.body.dump();
      if (res.statusCode === 200) return port;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`GET ${path} never answered 200`);
}

/** A port that was free a moment ago on 127.0.0.1 (for servers that cannot report theirs). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resident set size of a process, from /proc (kB): current and lifetime peak. */
export async function readRss(pid: number): Promise<{ rssKb: number; hwmKb: number } | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const rss = /VmRSS:\s+(\d+)/.exec(status);
    const hwm = /VmHWM:\s+(\d+)/.exec(status);
    return rss && hwm ? { rssKb: Number(rss[1]), hwmKb: Number(hwm[1]) } : undefined;
  } catch {
    return undefined;
  }
}

let ticksPerSecond: number | undefined;

/** CPU time (user + system) a process has used so far, in ms, from /proc/PID/stat. */
export async function readCpuMs(pid: number): Promise<number | undefined> {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execSync('getconf CLK_TCK', { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // proc(5): fields after "(comm)"; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / ticksPerSecond;
  } catch {
    return undefined;
  }
}
