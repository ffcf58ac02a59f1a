/**
 * Which upstream gets the client's credentials, on real sockets. The client's
 * `authorization`, `api-key` and `x-api-key` go only to an upstream without a credential of
 * its own; an upstream with an `api_key` or one of those headers configured gets its own
 * credential alone, so a key the client meant for one provider never reaches another
 * (a fallback from a keyless OpenAI upstream to an Azure one with its own `api-key`).
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

const CLIENT = { authorization: 'Bearer sk-client-openai-key-0001', 'api-key': 'client-azure-key-0002', 'x-api-key': 'client-x-key-0003' };
const CHAT = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });

let upstream: MockUpstream;
let gw: TestGateway | undefined;
/** Nothing listens on port 1: connecting there is refused, so the route falls back. */
const refusedUrl = 'http://127.0.0.1:1/v1';

beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  upstream.requests.length = 0;
});
afterAll(() => upstream.close());

/** One mock upstream named `target` with `settings`, behind `first` when given (a route's earlier, unreachable upstream). */
async function gateway(settings: string, first?: string): Promise<TestGateway> {
  const before = first
    ? `  - name: first
    base_url: ${refusedUrl}
    timeout: {connect_ms: 1000}
    retry: {attempts: 0}
${first}
`
    : '';
  gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 1000}
logging: {level: silent}
upstreams:
${before}  - name: target
    base_url: ${upstream.url}
    retry: {attempts: 0}
${settings}
routing: {default: [${first ? 'first, ' : ''}target]}
`);
  return gw;
}

async function send(path: string, init: { method?: string; body?: string } = {}): Promise<number> {
  const res = await fetch(`${gw!.url}${path}`, {
    method: init.method ?? 'POST',
    headers: { ...CLIENT, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: init.body,
  });
  await res.arrayBuffer();
  return res.status;
}

function credentialsSeen(): Record<string, string | string[] | undefined> {
  const h = upstream.requests.at(-1)!.headers;
  return { authorization: h.authorization, 'api-key': h['api-key'], 'x-api-key': h['x-api-key'] };
}

describe("the client's credentials", () => {
  it('all go to a keyless upstream without credential headers of its own (pass-through, as before)', async () => {
    await gateway("    api_key: ''\n    headers: {OpenAI-Organization: org-1}");
    expect(await send('/v1/chat/completions', { body: CHAT })).toBe(200);
    expect(credentialsSeen()).toEqual(CLIENT);
  });

  it('none go to an upstream with an api_key: its own Authorization alone (chat and pass-through)', async () => {
    await gateway('    api_key: sk-gateway-key-0004');
    expect(await send('/v1/chat/completions', { body: CHAT })).toBe(200);
    expect(credentialsSeen()).toEqual({ authorization: 'Bearer sk-gateway-key-0004', 'api-key': undefined, 'x-api-key': undefined });
    expect(await send('/v1/models', { method: 'GET' })).toBe(200);
    expect(credentialsSeen()).toEqual({ authorization: 'Bearer sk-gateway-key-0004', 'api-key': undefined, 'x-api-key': undefined });
  });

  it("an OpenAI key does not follow a fallback to an Azure-style upstream with its own api-key header", async () => {
    await gateway("    api_key: ''\n    headers: {api-key: azure-config-key-0005}", "    api_key: ''");
    expect(await send('/v1/chat/completions', { body: CHAT })).toBe(200);
    expect(upstream.requests).toHaveLength(1);
    expect(credentialsSeen()).toEqual({ authorization: undefined, 'api-key': 'azure-config-key-0005', 'x-api-key': undefined });
  });

  it('none go to an upstream with an x-api-key or authorization header configured', async () => {
    await gateway("    api_key: ''\n    headers: {X-Api-Key: x-config-key-0006}");
    expect(await send('/v1/chat/completions', { body: CHAT })).toBe(200);
    expect(credentialsSeen()).toEqual({ authorization: undefined, 'api-key': undefined, 'x-api-key': 'x-config-key-0006' });
    await gw!.close();
    await gateway("    api_key: ''\n    headers: {Authorization: Bearer config-bearer-0007}");
    expect(await send('/v1/embeddings', { body: JSON.stringify({ model: 'text-embedding-3-small', input: 'hi' }) })).toBe(200);
    expect(credentialsSeen()).toEqual({ authorization: 'Bearer config-bearer-0007', 'api-key': undefined, 'x-api-key': undefined });
  });

  // Only authorization, api-key and x-api-key counted as an upstream's own credential: the
  // client's OpenAI key went along to an Azure API Management or Functions upstream.
  it('none go to an upstream with an Ocp-Apim-Subscription-Key or x-functions-key header, or a key in its base_url query', async () => {
    await gateway("    api_key: ''\n    headers: {Ocp-Apim-Subscription-Key: apim-config-key-0009}");
    expect(await send('/v1/chat/completions', { body: CHAT })).toBe(200);
    expect(credentialsSeen()).toEqual({ authorization: undefined, 'api-key': undefined, 'x-api-key': undefined });
    expect(upstream.requests.at(-1)!.headers['ocp-apim-subscription-key']).toBe('apim-config-key-0009');
    await gw!.close();
    await gateway("    api_key: ''\n    headers: {x-functions-key: functions-config-key-0010}");
    expect(await send('/v1/chat/completions', { body: CHAT })).toBe(200);
    expect(credentialsSeen()).toEqual({ authorization: undefined, 'api-key': undefined, 'x-api-key': undefined });
    await gw!.close();
    gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 1000}
logging: {level: silent}
upstreams:
  - {name: target, base_url: "${upstream.url}?code=functions-query-key-0011", api_key: '', retry: {attempts: 0}}
routing: {default: [target]}
`);
    expect(await send('/v1/chat/completions', { body: CHAT })).toBe(200);
    expect(credentialsSeen()).toEqual({ authorization: undefined, 'api-key': undefined, 'x-api-key': undefined });
  });

  it("still go with another gateway's own key header (Helicone-Auth style): that is not the provider's credential", async () => {
    await gateway("    api_key: ''\n    headers: {Helicone-Auth: Bearer helicone-key-0008}");
    expect(await send('/v1/chat/completions', { body: CHAT })).toBe(200);
    expect(credentialsSeen()).toEqual(CLIENT);
    expect(upstream.requests.at(-1)!.headers['helicone-auth']).toBe('Bearer helicone-key-0008');
  });
});
