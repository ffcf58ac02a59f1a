/**
 * A gate against a noisy shared machine: before each measurement, wait (within a bounded
 * budget) until the CPUs are mostly idle, read from /proc/stat. The benchmark's own
 * processes are idle at that point, so busy time is someone else's.
 */
import { readFile } from 'node:fs/promises';

async function cpuTimes(): Promise<{ busy: number; total: number } | undefined> {
  try {
    const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0];
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = v[3] + (v[4] ?? 0); // idle + iowait (proc(5))
    const total = v.slice(0, 8).reduce((a, b) => a + b, 0); // without guest time, already in user
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** Fraction (0..1) of all CPUs busy over `ms`, or 0 where /proc/stat is unavailable. */
export async function cpuBusy(ms: number): Promise<number> {
  const a = await cpuTimes();
  await new Promise((r) => setTimeout(r, ms));
  const b = await cpuTimes();
  if (!a || !b || b.total === a.total) return 0;
  return (b.busy - a.busy) / (b.total - a.total);
}

/**
 * Waits until less than `threshold` of the machine is busy, spending at most what is left
 * of the shared budget (ms). Returns the last busy fraction seen.
 */
export class QuietGate {
  #budgetMs: number;
  waitedMs = 0;
  readonly seen: number[] = [];

  constructor(budgetMs: number, private readonly threshold = 0.25) {
    this.#budgetMs = budgetMs;
  }

  async wait(maxMs = 10_000): Promise<number> {
    let busy = await cpuBusy(250);
    const start = Date.now(); // the first look is free; only waiting counts against the budget
    while (busy >= this.threshold && Date.now() - start < Math.min(maxMs, this.#budgetMs)) busy = await cpuBusy(500);
    const spent = Date.now() - start;
    this.#budgetMs = Math.max(0, this.#budgetMs - spent);
    this.waitedMs += spent;
    this.seen.push(busy);
    return busy;
  }
}
