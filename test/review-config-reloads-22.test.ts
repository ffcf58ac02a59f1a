/**
 * Review (22): a config reload leaves a trace on `/metrics`. A broken ConfigMap made every
 * running sidecar log `config reload rejected` and keep its old config, with nothing an
 * alert could select; `promptgate_config_reloads_total{result}` counts both outcomes.
 */
import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { scrapeMetricsText } from './helpers/metrics.js';
import { until } from './helpers/raw-socket.js';
import { PromText } from './telemetry-e2e/prom-text.js';

const HAS_PROMTOOL = spawnSync('promtool', ['--version']).status === 0;
if (!HAS_PROMTOOL) console.warn('SKIP promtool checks: `promtool` is not installed (apt-get install -y prometheus); CI installs it.');

const CONFIG = `
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - {name: sim, simulate: {latency_ms: 0}}
routing: {default: [sim]}
`;

const gateways: TestGateway[] = [];
afterEach(async () => {
  for (const gw of gateways.splice(0)) {
    await gw.close();
    rmSync(gw.dir, { recursive: true, force: true });
  }
});

/** `promptgate_config_reloads_total` by result, from a scrape that passes `promtool check metrics`. */
async function reloads(gw: TestGateway): Promise<{ applied: number | undefined; rejected: number | undefined; lastOk: number | undefined }> {
  const text = await scrapeMetricsText(gw.url);
  if (HAS_PROMTOOL) {
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${r.stdout}${r.stderr}`.trim(), 'promtool check metrics').toBe('');
  }
  const prom = new PromText(text);
  return {
    applied: prom.one('promptgate_config_reloads_total', { result: 'applied' }),
    rejected: prom.one('promptgate_config_reloads_total', { result: 'rejected' }),
    lastOk: prom.one('promptgate_config_last_reload_successful', {}),
  };
}

describe('promptgate_config_reloads_total', () => {
  it('counts a rejected reload, and a later applied one (was: only a log line, nothing to alert on)', async () => {
    const gw = await startTestGateway(CONFIG);
    gateways.push(gw);
    // Both results from the start, at 0: increase() then sees a sidecar's first rejection.
    // The gauge holds the latest reload's result (1 at start: the config loaded).
    expect(await reloads(gw)).toEqual({ applied: 0, rejected: 0, lastOk: 1 });

    writeFileSync(gw.configFile, CONFIG.replace('default: [sim]', 'default: [missing]'));
    await until(async () => (await reloads(gw)).rejected === 1);
    expect(await reloads(gw)).toEqual({ applied: 0, rejected: 1, lastOk: 0 });

    writeFileSync(gw.configFile, CONFIG.replace('drain_timeout_ms: 500', 'drain_timeout_ms: 600'));
    await until(async () => (await reloads(gw)).applied === 1);
    expect(await reloads(gw)).toEqual({ applied: 1, rejected: 1, lastOk: 1 });
    expect(gw.holder.current.config.server.drain_timeout_ms).toBe(600);
  });
});
