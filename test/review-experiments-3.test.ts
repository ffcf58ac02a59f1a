/**
 * Review of prompt selection and experiments (third pass): how a body `prompt_id` and
 * `prompt_version` resolve together, and malformed references. Black-box, over a real socket.
 */
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, mockConfig, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

let upstream: MockUpstream;
const gateways: TestGateway[] = [];
beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterAll(async () => {
  await upstream.close();
});
afterEach(async () => {
  await Promise.all(gateways.splice(0).map((g) => g.close()));
  upstream.requests.length = 0;
});

async function gateway(): Promise<TestGateway> {
  // config/templates/support-reply.yaml: 1.0.0 carries `production`, 1.1.0 carries `staging`.
  const gw = await startTestGateway(mockConfig(upstream.url, '', '    breaker: {failures: 0}'), { templates: ['config/templates/support-reply.yaml'] });
  gateways.push(gw);
  return gw;
}

function chat(gw: TestGateway, body: object, headers: Record<string, string> = {}) {
  return request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
}

describe('prompt_id and prompt_version together', () => {
  it('a label in prompt_id and the version it names in prompt_version agree (was 400 "give one")', async () => {
    const gw = await gateway();
    for (const body of [
      { prompt_id: 'support-reply@production', prompt_version: '1.0.0' },
      { prompt_id: 'support-reply@1.1.0', prompt_version: 'staging' },
    ]) {
      const res = await chat(gw, body);
      expect(res.statusCode, JSON.stringify(body)).toBe(200);
      await res.body.text();
      expect(res.headers['x-promptgate-template-version']).toBe(body.prompt_version === 'staging' ? '1.1.0' : '1.0.0');
      const sent = upstream.requests.at(-1)!.body;
      expect(Object.keys(sent).filter((k) => k.startsWith('prompt_'))).toEqual([]);
    }
  });

  it('a label and a version that name different versions are still a 400 contradiction', async () => {
    const gw = await gateway();
    const res = await chat(gw, { prompt_id: 'support-reply@production', prompt_version: '1.1.0' });
    expect(res.statusCode).toBe(400);
    expect(((await res.body.json()) as { error: object }).error).toMatchObject({ code: 'invalid_request', param: 'prompt_version' });
    expect(upstream.requests).toHaveLength(0);
  });
});

describe('a reference without a template id', () => {
  it('`@1.0.0` in prompt_id or the header is a 400 invalid_request like `id@` (was 404 for a template named "")', async () => {
    const gw = await gateway();
    for (const [body, headers] of [
      [{ prompt_id: '@1.0.0' }, {}],
      [{}, { 'x-promptgate-template': '@production' }],
    ] as const) {
      const res = await chat(gw, body, headers);
      expect(res.statusCode).toBe(400);
      const { error } = (await res.body.json()) as { error: { code: string; type: string; message: string } };
      expect(error).toMatchObject({ code: 'invalid_request', type: 'invalid_request_error' });
      expect(error.message).not.toContain('""');
    }
    expect(upstream.requests).toHaveLength(0);
  });
});

describe('names that are built-in object properties', () => {
  it('a label named "constructor" resolves, and a removed variant named "toString" keeps its counts', async () => {
    const { makeTemplate } = await import('../src/prompts/registry.js');
    const { AssignmentCounters } = await import('../src/experiments/counters.js');
    const version = (v: string, labels: string[]) => ({ version: v, labels }) as never;
    const t = makeTemplate({ id: 't', versions: [version('1.0.0', ['constructor']), version('1.1.0', ['toString'])] });
    expect(t.labels.constructor).toBe('1.0.0');
    expect(t.labels.toString).toBe('1.1.0');
    const counters = new AssignmentCounters();
    counters.record('exp', 'toString', 'assigned');
    expect(counters.snapshot('exp', ['control']).toString).toMatchObject({ assigned: 1 });
  });
});

describe('prompt_* fields on a request that selects no template', () => {
  it('are removed before forwarding, as null too (was: sent upstream, which rejects unknown fields)', async () => {
    const gw = await gateway();
    const res = await chat(gw, { prompt_id: null, prompt_version: null, prompt_variables: null, seed: 12345678901234567 });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    expect(res.headers['x-promptgate-template']).toBeUndefined();
    const sent = upstream.requests.at(-1)!;
    expect(Object.keys(sent.body).filter((k) => k.startsWith('prompt_'))).toEqual([]);
    expect(sent.body).toMatchObject({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  });

  it('a body without them goes upstream byte for byte', async () => {
    const gw = await gateway();
    const raw = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"seed":12345678901234567}';
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: raw });
    expect(res.statusCode).toBe(200);
    await res.body.text();
    expect(upstream.requests.at(-1)!.raw).toBe(raw);
  });
});
