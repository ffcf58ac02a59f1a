/**
 * Numbers found wrong in review 23: an estimate of a stream with several choices counts each
 * choice's text on its own (the choices' pieces interleave; glued together they made fewer
 * tokens than the choices have).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { mockConfig, postJson, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startCannedUpstream, type CannedUpstream } from './helpers/canned-upstream.js';
import { sseStream } from './helpers/sse.js';
import { estimateUsage } from '../src/telemetry/usage.js';

const PIECES = ['Hello', ' there', ' my', ' good', ' friend', ',', ' how', ' are', ' you', '?'];

/** Two choices streamed piece by piece, interleaved (as OpenAI sends n=2), without usage. */
function interleavedStream(): string {
  const chunks: unknown[] = [];
  for (const piece of PIECES) {
    for (const index of [0, 1]) chunks.push({ id: 'c1', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index, delta: { content: piece }, finish_reason: null }] });
  }
  for (const index of [0, 1]) chunks.push({ id: 'c1', object: 'chat.completion.chunk', model: 'gpt-4o-mini', choices: [{ index, delta: {}, finish_reason: 'stop' }] });
  return sseStream(chunks);
}

let upstream: CannedUpstream;
let gw: TestGateway;
let log: GatewayLogCapture;

beforeAll(async () => {
  log = captureGatewayLog();
  upstream = await startCannedUpstream({ contentType: 'text/event-stream', body: interleavedStream() });
  gw = await startTestGateway(mockConfig(upstream.url).replace('logging: {level: silent}', 'logging: {level: info, requests: true}'));
});
afterAll(async () => {
  await gw.close();
  await upstream.close();
  log.restore();
});

describe('an estimated stream with n > 1', () => {
  it("counts each choice's text on its own", async () => {
    const messages = [{ role: 'user', content: 'hi' }];
    const res = await postJson(gw.url, '/v1/chat/completions', { model: 'gpt-4o-mini', stream: true, n: 2, messages }, { 'x-request-id': 'n2-estimate' });
    expect(res.status).toBe(200);
    const { line } = await log.requestLine('n2-estimate');
    const perChoice = estimateUsage([], PIECES.join(''), 'gpt-4o-mini').outputTokens;
    expect(line.tokens_estimated).toBe(true);
    expect(line.output_tokens).toBe(2 * perChoice);
  });
});
