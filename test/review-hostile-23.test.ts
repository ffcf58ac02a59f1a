/**
 * Review 23, what a hostile client can make the gateway relay:
 * - spellings of the chat path that some servers read as it (case folded by ASP.NET/IIS,
 *   `;params` cut by Tomcat/Spring/Jetty, a trailing dot or space trimmed by IIS) were relayed
 *   upstream: a chat completion served past templates, the guard and accounting;
 * - a Tomcat `..;` segment went upstream as it is, where Tomcat reads it as `..`: outside
 *   the `base_url` path, with the upstream's key.
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

let upstream: MockUpstream;
let gw: TestGateway;
beforeAll(async () => {
  upstream = await startMockUpstream();
  gw = await startTestGateway(mockConfig(upstream.url));
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
});

const CHAT = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}';

describe('the chat path in a spelling another server reads as it', () => {
  it('is a 404 and never goes upstream', async () => {
    const before = upstream.requests.length;
    const spellings = ['/v1/Chat/Completions', '/v1/CHAT/COMPLETIONS', '/v1/chat/completions;x', '/v1/chat;/completions', '/v1/chat;a=b/completions', '/v1/chat/completions.', '/v1/chat/completions%20', '/v1/chat/completions%09', '/v1/chat./completions', '/v1/Feedback'];
    for (const path of spellings) {
      const res = await request(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: CHAT });
      expect([path, res.statusCode]).toEqual([path, 404]);
      expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
    expect(upstream.requests.length).toBe(before);
  });

  it('other paths with such characters still go upstream', async () => {
    const res = await request(`${gw.url}/v1/files/file-abc;x`);
    await res.body.dump();
    expect(upstream.requests.at(-1)!.url).toBe('/v1/files/file-abc;x');
  });
});

describe("a Tomcat `..;` segment", () => {
  it('is refused (400), never relayed', async () => {
    const before = upstream.requests.length;
    for (const path of ['/v1/..;/x', '/v1/files/..;jsessionid=1/admin', '/v1/.;/models']) {
      const res = await request(`${gw.url}${path}`);
      expect([path, res.statusCode]).toEqual([path, 400]);
      expect(((await res.body.json()) as { error: { type: string } }).error.type).toBe('invalid_request_error');
    }
    expect(upstream.requests.length).toBe(before);
  });
});
