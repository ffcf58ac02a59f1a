/**
 * Settings read once, when the process starts: the listener's address, the tracer's
 * resource (`telemetry.service_name`) and the metric label caps. A reload cannot apply a
 * change to them, so it names each one that differs from what the process runs with, and
 * the operator knows the edit waits for a restart instead of finding out later.
 */
import type { RuntimeConfig } from './compile.js';

const RESTART_ONLY: readonly { key: string; read: (c: RuntimeConfig) => unknown }[] = [
  { key: 'server.host', read: (c) => c.server.host },
  { key: 'server.port', read: (c) => c.server.port },
  { key: 'telemetry.service_name', read: (c) => c.telemetry.service_name },
  { key: 'telemetry.max_label_values', read: (c) => c.telemetry.max_label_values },
];

/**
 * `"<key>: <running> -> <next>"` for each restart-only setting of `next` that differs from
 * the config the process started with (`started`, not the previous reload: an edit that is
 * undone is no longer pending). `server.port` is skipped when `--port` or `PORT` chose the port.
 */
export function restartOnlyChanges(started: RuntimeConfig, next: RuntimeConfig, options: { portOverridden: boolean }): string[] {
  const changes: string[] = [];
  for (const { key, read } of RESTART_ONLY) {
    if (key === 'server.port' && options.portOverridden) continue;
    const was = read(started);
    const now = read(next);
    if (was !== now) changes.push(`${key}: ${JSON.stringify(was)} -> ${JSON.stringify(now)}`);
  }
  return changes;
}
