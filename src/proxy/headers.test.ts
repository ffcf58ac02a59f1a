import { describe, expect, it } from 'vitest';
import { upstreamRequestHeaders } from './headers.js';

describe('upstreamRequestHeaders', () => {
  it('drops hop-by-hop headers, the ones the gateway redoes, and the client trace context', () => {
    const out = upstreamRequestHeaders({
      host: 'gw:8080',
      connection: 'keep-alive, x-drop-me',
      'keep-alive': 'timeout=5',
      'x-drop-me': '1',
      'content-length': '10',
      'accept-encoding': 'gzip',
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      tracestate: 'v=1',
      // Regression: the client's baggage went upstream as is, whatever OTEL_PROPAGATORS said.
      baggage: 'tenant=acme',
      'x-promptgate-template': 'support-reply',
      authorization: 'Bearer client',
      'openai-organization': 'org-1',
      'x-list': ['a', 'b'] as unknown as string,
    }, '1.1 promptgate-0a1b2c3d');
    expect(out).toEqual({ authorization: 'Bearer client', 'openai-organization': 'org-1', 'x-list': 'a, b', 'accept-encoding': 'identity', via: '1.1 promptgate-0a1b2c3d' });
  });

  it('adds the gateway to the via of a request that went through other proxies', () => {
    expect(upstreamRequestHeaders({ via: '1.1 edge' }, '1.1 promptgate-0a1b2c3d').via).toBe('1.1 edge, 1.1 promptgate-0a1b2c3d');
  });
});
