import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from './config/load.js';
import { RuntimeHolder } from './runtime.js';

const configWith = (upstreams: string) =>
  parseConfig(`upstreams:\n${upstreams}\nrouting: {default: [a]}\ntemplates: {dir: templates-that-do-not-exist}\n`, { file: '/tmp/x/gateway.config.yaml', env: {} });

const A = (url: string, breaker = '{failures: 1, cooldown_ms: 60000}') => `  - {name: a, base_url: "${url}", breaker: ${breaker}}`;

describe('circuit breakers across reloads', () => {
  let holder: RuntimeHolder | undefined;
  afterEach(async () => {
    await holder?.close();
    holder = undefined;
  });

  it('keeps an open breaker while the upstream address stays the same, with new settings applied', () => {
    holder = new RuntimeHolder(configWith(A('http://127.0.0.1:9/v1')));
    holder.current.breakers.get('a')!.onFailure();
    expect(holder.current.breakers.get('a')!.state).toBe('open');
    holder.apply(configWith(A('http://127.0.0.1:9/v1', '{failures: 1, cooldown_ms: 30000}')));
    expect(holder.current.breakers.get('a')!.state).toBe('open');
  });

  it('starts closed for a new address: a reload that fixes a wrong base_url is not refused for the cooldown (was: kept open by name)', () => {
    holder = new RuntimeHolder(configWith(A('http://127.0.0.1:9/v1')));
    const first = holder.current;
    first.breakers.get('a')!.onFailure();
    holder.apply(configWith(A('http://127.0.0.1:10/v1')));
    expect(holder.current.breakers.get('a')!.state).toBe('closed');
    // Requests of the old config keep the breaker they started with.
    expect(first.breakers.get('a')!.state).toBe('open');
  });

  it('forgets a removed upstream: added again later, it starts closed', () => {
    const withB = `${A('http://127.0.0.1:9/v1')}\n  - {name: b, base_url: "http://127.0.0.1:11/v1", breaker: {failures: 1}}`;
    holder = new RuntimeHolder(configWith(withB));
    holder.current.breakers.get('b')!.onFailure();
    expect(holder.current.breakers.get('b')!.state).toBe('open');
    holder.apply(configWith(A('http://127.0.0.1:9/v1')));
    expect(holder.current.breakers.has('b')).toBe(false);
    holder.apply(configWith(withB));
    expect(holder.current.breakers.get('b')!.state).toBe('closed');
  });
});
