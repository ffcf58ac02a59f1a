/**
 * Regressions found reviewing context injection (third pass): each test is named after
 * what broke. Real services on 127.0.0.1 (port 0), closed by the test file.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildContext } from '../../src/context/build.js';
import { ContextRuntime } from '../../src/context/runtime.js';
import { createInjectionScanner } from '../../src/guard/scanner.js';
import { makeContext, startJsonService, type JsonService } from './helpers.js';

let svc: JsonService;
let rt: ContextRuntime | undefined;
beforeAll(async () => {
  svc = await startJsonService();
});
afterAll(() => svc.close());
afterEach(async () => {
  await rt?.close();
  rt = undefined;
  svc.requests.length = 0;
});

describe('a knowledge search endpoint that fails behind a cache', () => {
  // README "Cache": failures are not cached. The local-only answer given while the search
  // endpoint was down was stored as a full answer: for ttl_ms every question asked during a
  // blip kept getting no remote passages, and no metric said the endpoint had failed.
  it('serves the local passages now, but neither caches them nor hides the failure', async () => {
    let down = true;
    svc.route('/kb-search', (_req, res) => {
      res.writeHead(down ? 503 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(down ? { error: 'x' } : { results: [{ title: 'Remote', text: 'Remote refund passage', score: 9, source: 'https://kb/r' }] }));
    });
    const registry = new Registry();
    rt = new ContextRuntime({ registry });
    const { plan } = makeContext(
      { builders: [{ name: 'knowledge', kind: 'knowledge', dir: 'config/knowledge', top_k: 3, http: { url: `${svc.url}/kb-search?q={{query}}` }, cache: { ttl_ms: 60_000 } }] },
      { use: ['knowledge'] },
    );
    const build = () => buildContext(rt!, plan, { messages: [{ role: 'user', content: 'how long does a refund take?' }], userId: 'u', variables: {} });
    const sources = (r: Awaited<ReturnType<typeof build>>) => (r.variables.knowledge as Array<{ source: string }>).map((h) => h.source);

    const first = await build();
    expect(first.report.builders[0]).toMatchObject({ status: 'ok' });
    expect(sources(first).length).toBeGreaterThan(0);
    expect(sources(first)).not.toContain('https://kb/r');
    expect(await registry.getSingleMetricAsString('promptgate_context_source_errors_total')).toContain('{builder="knowledge",reason="http_5xx"} 1');

    down = false;
    const second = await build();
    expect(sources(second)).toContain('https://kb/r');
    expect(svc.count('/kb-search')).toBe(2);
    const third = await build(); // a full answer is cached as usual
    expect(third.report.builders[0]).toMatchObject({ status: 'cached', cache: 'hit' });
    expect(svc.count('/kb-search')).toBe(2);
  });
});

describe('the memo of injection scans', () => {
  // It held 5,000 texts whatever their size: an uncached http builder whose answer carries a
  // long per-user string (notes, an order log; max_bytes allows 1 MiB) kept a copy of every
  // one, gigabytes in a sidecar. It is bounded by characters now.
  it('does not keep megabytes of untrusted text per distinct answer', () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    rt = new ContextRuntime();
    const scanner = createInjectionScanner({ threshold: 0.5 });
    const base = 'Customer notes: delivered on time, polite, asked about invoices. '.repeat(8192); // ~520 KB
    gc();
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < 200; i++) expect(rt.scan(`${i} ${base}`, scanner).flagged).toBe(false);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    expect(grown).toBeLessThan(40 * 1024 * 1024); // 200 copies would be ~100 MB
    // Short texts (passages, profile fields) are still scanned once.
    const text = 'Refunds reach the card within five days.';
    expect(rt.scan(text, scanner)).toBe(rt.scan(text, scanner));
  });
});

describe('an http answer rebuilt after a blocked field', () => {
  it('keeps a "__proto__" key of the JSON as a plain field, not as the object\'s prototype', async () => {
    const { screenOutput } = await import('../../src/context/untrusted.js');
    const value = JSON.parse('{"__proto__": {"tier": "platinum"}, "note": "BLOCK ME", "name": "Ada"}') as Record<string, unknown>;
    const { output, blocked } = screenOutput({ shape: 'object', value, tokens: 10 }, (text) => ({ score: text === 'BLOCK ME' ? 1 : 0, flagged: text === 'BLOCK ME' }) as never, true);
    expect(blocked).toBe(1);
    const rebuilt = (output as { value: Record<string, unknown> }).value;
    expect(Object.getPrototypeOf(rebuilt)).toBe(Object.prototype);
    expect((rebuilt as { tier?: unknown }).tier).toBeUndefined();
    expect(Object.keys(rebuilt)).toEqual(['__proto__', 'name']);
  });
});
