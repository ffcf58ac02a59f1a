/**
 * A fault in a stream's accounting must not end the gateway. The accounting of a stream
 * runs when the stream ends, outside any request handler: an exception there was uncaught
 * and ended the process, with every other stream in flight (a tool schema too deep to
 * serialise did it, see review-today-8). Here `finishStream` is made to throw: the client
 * still gets its whole stream, the request is still counted and logged, one error line
 * names the request, and the gateway keeps serving.
 */
import { request } from 'undici';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { scrapeMetricsText } from './helpers/metrics.js';

vi.mock('../src/proxy/accounting.js', async (original) => {
  const actual = await original<typeof import('../src/proxy/accounting.js')>();
  return {
    ...actual,
    finishStream: () => {
      throw new TypeError('accounting fault injected by the test');
    },
  };
});

let upstream: MockUpstream;
let gw: TestGateway;
let log: GatewayLogCapture;

beforeAll(async () => {
  log = captureGatewayLog();
  upstream = await startMockUpstream();
  gw = await startTestGateway(mockConfig(upstream.url, 'logging: {level: info, requests: true}').replace('logging: {level: silent}\n', ''));
});

afterAll(async () => {
  await gw?.close();
  await upstream?.close();
  log?.restore();
});

it('a stream whose accounting throws is relayed whole, recorded, logged once, and the gateway stays up', async () => {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': 'fault-1' },
    body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  });
  const text = await res.body.text();
  expect(res.statusCode).toBe(200);
  expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);

  await vi.waitFor(() => expect(log.requests.find((l) => l.request_id === 'fault-1')).toBeDefined());
  expect(log.requests.find((l) => l.request_id === 'fault-1')).toMatchObject({ route: '/v1/chat/completions', status: 200, outcome: 'ok' });
  const errors = log.others.filter((l) => l.includes('"msg":"stream accounting failed"'));
  expect(errors).toHaveLength(1);
  expect(JSON.parse(errors[0])).toMatchObject({ level: 'error', request_id: 'fault-1', error: 'TypeError' });
  expect(errors[0]).not.toContain('injected'); // the class, never the message

  expect(await scrapeMetricsText(gw.url)).toMatch(/promptgate_requests_total\{[^}]*route="\/v1\/chat\/completions"[^}]*stream="true"[^}]*\} 1/);
  expect((await request(`${gw.url}/healthz`)).statusCode).toBe(200);
});
