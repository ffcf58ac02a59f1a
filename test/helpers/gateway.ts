/**
 * Starts a real gateway (real socket, 127.0.0.1, port 0) from a YAML config written to a
 * fresh temp directory. Close it in afterEach/afterAll.
 */
import { mkdtempSync, writeFileSync, mkdirSync, cpSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { startGateway, type RunningGateway } from '../../src/server.js';

export interface TestGateway extends RunningGateway {
  url: string;
  dir: string;
  configFile: string;
  close(): Promise<void>;
}

export interface TestGatewayOptions {
  /** Copy these template files into `<dir>/templates` (paths relative to the repo). */
  templates?: string[];
  /** Write these template files into `<dir>/templates`: file name -> YAML text. */
  templateFiles?: Record<string, string>;
}

export async function startTestGateway(yaml: string, options: TestGatewayOptions = {}): Promise<TestGateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-test-'));
  const configFile = path.join(dir, 'gateway.config.yaml');
  mkdirSync(path.join(dir, 'templates'), { recursive: true });
  for (const t of options.templates ?? []) cpSync(t, path.join(dir, 'templates', path.basename(t)));
  for (const [name, yaml] of Object.entries(options.templateFiles ?? {})) writeFileSync(path.join(dir, 'templates', name), yaml);
  writeFileSync(configFile, yaml);
  const gw = await startGateway({ file: configFile, port: 0, handleSignals: false });
  return {
    ...gw,
    url: `http://127.0.0.1:${gw.port}`,
    dir,
    configFile,
    close: () => gw.shutdown('test'),
  };
}

/** The API key `mockConfig` gives the mock upstream (tests check it reaches the upstream). */
export const MOCK_API_KEY = 'sk-test-secret-key-123456';

/** Upstream settings for client end-to-end tests: fast retries, no breaker between tests. */
export const E2E_UPSTREAM = `    timeout: {connect_ms: 1000, first_byte_ms: 5000, idle_ms: 5000, total_ms: 20000}
    breaker: {failures: 0}`;

/** A config with one mock upstream and quiet logs. `extra` is appended as is. */
export function mockConfig(upstreamUrl: string, extra = '', upstreamExtra = ''): string {
  return `
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: silent}
templates: {dir: templates}
upstreams:
  - name: mock
    base_url: ${upstreamUrl}
    api_key: ${MOCK_API_KEY}
    retry: {attempts: 2, backoff_ms: 5, max_backoff_ms: 20}
${upstreamExtra}
routing: {default: [mock]}
${extra}
`;
}

/** POSTs `body` as JSON to `route` of the gateway at `gatewayUrl`: the answer's status, headers and text. */
export async function postJson(gatewayUrl: string, route: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await request(`${gatewayUrl}${route}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() };
}
