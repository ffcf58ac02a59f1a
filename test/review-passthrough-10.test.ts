/**
 * Review: the pass-through routes, read as a newcomer would.
 *
 * - `/v1/chat%2Fcompletions` (an encoded slash) reached the upstream, which decodes it
 *   (uvicorn, nginx) and served a chat completion past templates, guard and accounting.
 * - `/v1?x` went upstream as a path without its leading `/` when `base_url` has no path:
 *   undici refused it, the gateway counted that as an upstream failure, and a client could
 *   open the breaker (taking chat traffic down) by repeating it.
 * - An upstream's 205 (Reset Content) with content went to the client with it: RFC 9110
 *   §15.3.6 says a 205 has none (as 204 and 304, which were already relayed without).
 */
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockConfig, postJson, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

let upstream: MockUpstream;
beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterAll(async () => {
  await upstream.close();
});

const CHAT = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}';

describe('the chat path in another spelling', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(mockConfig(upstream.url));
  });
  afterAll(() => gw.close());

  it('is a 404 and never goes upstream', async () => {
    const before = upstream.requests.length;
    for (const path of ['/v1/chat%2Fcompletions', '/v1/chat%2fcompletions', '/v1/chat/completions%2F', '/v1/chat%5Ccompletions', '/v1/%63hat%2F%63ompletions']) {
      const res = await request(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: CHAT });
      expect([path, res.statusCode]).toEqual([path, 404]);
      expect(((await res.body.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
    expect(upstream.requests.length).toBe(before);
  });

  it('the feedback path with a trailing or doubled slash is a 404 too, not relayed with the upstream key', async () => {
    const before = upstream.requests.length;
    for (const path of ['/v1/feedback/', '/v1//feedback', '/v1/feedback%2F']) {
      const res = await request(`${gw.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"request_id":"x","metric":"thumbs_up","value":1}' });
      expect([path, res.statusCode]).toEqual([path, 404]);
      await res.body.dump();
    }
    expect(upstream.requests.length).toBe(before);
  });
});

describe('a query right after /v1', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    // base_url without a path, as for a LiteLLM or vLLM server at its root.
    gw = await startTestGateway(mockConfig(upstream.url.replace(/\/v1$/, ''), '', '    breaker: {failures: 2, cooldown_ms: 60000}'));
  });
  afterAll(() => gw.close());

  it('goes upstream as /?query, and repeating it cannot open the breaker', async () => {
    for (let i = 0; i < 4; i++) {
      const res = await request(`${gw.url}/v1?x=${i}`);
      await res.body.dump();
      expect(res.statusCode).not.toBe(503);
    }
    expect(upstream.requests.at(-1)!.url).toBe('/?x=3');
    const chat = await postJson(gw.url, '/v1/chat/completions', JSON.parse(CHAT));
    expect(chat.status).toBe(200);
  });
});

describe('a 205 answer', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway(mockConfig(upstream.url));
  });
  afterAll(() => gw.close());

  it('goes to the client as a 205 without a body', async () => {
    const res = await request(`${gw.url}/v1/threads/t1/reset`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-mock-status': '205' }, body: '{}' });
    expect(res.statusCode).toBe(205);
    expect(await res.body.text()).toBe('');
  });
});
