/**
 * Upstream timeouts by default are no tighter than the OpenAI SDKs' own (openai-node: 10
 * minutes to the headers; Python: 5 s to connect, 10 minutes per read; neither limits a
 * whole stream): a reasoning model may think for minutes before its first byte, and a
 * gateway that gave up at 60 s answered 504 where the provider would have answered.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../src/config/load.js';

const SDK_HEADERS_MS = 600_000;

describe('upstream timeout defaults', () => {
  it('a config that sets none: connect 5 s, first byte and idle 10 min, total 1 h', () => {
    const c = parseConfig('upstreams:\n  - {name: a, base_url: "https://api.openai.com/v1"}\nrouting: {default: [a]}\n', { file: '/tmp/x/gateway.config.yaml', env: {} });
    expect(c.upstreams.get('a')!.config.timeout).toEqual({ connect_ms: 5_000, first_byte_ms: 600_000, idle_ms: 600_000, total_ms: 3_600_000 });
  });

  it.each(['gateway.config.yaml', 'deploy/kubernetes/base/promptgate/gateway.config.yaml'])('%s gives the OpenAI upstream no limit below the SDKs\' 10 minutes', (file) => {
    const c = parseConfig(readFileSync(file, 'utf8'), { file: path.resolve(file), env: { OPENAI_API_KEY: 'sk-test' } });
    const t = c.upstreams.get('openai')!.config.timeout;
    expect(t.first_byte_ms).toBeGreaterThanOrEqual(SDK_HEADERS_MS);
    expect(t.idle_ms).toBeGreaterThanOrEqual(SDK_HEADERS_MS);
    expect(t.total_ms).toBeGreaterThanOrEqual(SDK_HEADERS_MS);
  });
});
