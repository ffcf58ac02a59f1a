/**
 * Review of the numbers an experiment reports: feedback attribution (POST /v1/feedback),
 * the sufficient statistics it feeds (`promptgate_experiment_observations_*`), and the
 * admin view. test/review-experiment-stats.test.ts covers the request-side statistics.
 */
import { Readable } from 'node:stream';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bucketOf } from '../src/experiments/hash.js';
import { startTestGateway, mockConfig, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { scrapeMetricsText } from './helpers/metrics.js';

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
});

const EXPERIMENT = `
bindings: [{model: support-bot, experiment: support-tone}]
experiments:
  - id: support-tone
    template: support-reply
    variants: [{name: control, version: 1.0.0, weight: 50}, {name: warm, version: 1.1.0, weight: 50}]
    start: 2020-01-01T00:00:00Z
`;

async function gateway(extra = ''): Promise<TestGateway> {
  const gw = await startTestGateway(mockConfig(upstream.url, `${extra}\n${EXPERIMENT}`, '    breaker: {failures: 0}'), { templates: ['config/templates/support-reply.yaml'] });
  gateways.push(gw);
  return gw;
}

async function chat(gw: TestGateway, body: object, headers: Record<string, string> = {}): Promise<number> {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'support-bot', messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
  await res.body.dump();
  return res.statusCode;
}

async function feedback(gw: TestGateway, body: string | object): Promise<{ status: number; body: any }> {
  const res = await request(`${gw.url}/v1/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
  return { status: res.statusCode, body: await res.body.json() };
}

/** n, Σx, Σx² of one experiment, variant and metric, as exposed (undefined when absent). */
async function stats(gw: TestGateway, variant: string, metric: string): Promise<{ n: number; sum: number; sumSquares: number } | undefined> {
  const text = await scrapeMetricsText(gw.url);
  const labels = `{experiment="support-tone",variant="${variant}",metric="${metric}"}`;
  const value = (name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  const n = value('promptgate_experiment_observations_total');
  if (n === undefined) return undefined;
  return { n, sum: value('promptgate_experiment_observations_sum_total')!, sumSquares: value('promptgate_experiment_observations_sum_squares_total')! };
}

/** A user id whose bucket falls in `variant`'s half (50/50: control [0, 5000), warm [5000, 10000)). */
function userIn(variant: 'control' | 'warm', from = 0): string {
  for (let i = from; ; i++) {
    const bucket = bucketOf('support-tone', `user-${i}`);
    if ((bucket < 5000) === (variant === 'control')) return `user-${i}`;
  }
}

describe('feedback attribution', () => {
  it('feedback for a reused x-request-id whose latest request was left out of the experiment is not credited to the earlier request\'s variant', async () => {
    const gw = await gateway();
    expect(await chat(gw, { user: userIn('warm') }, { 'x-request-id': 'reused-id' })).toBe(200);
    // The retry lost its user id: it gets the baseline and is left out of the analysis.
    expect(await chat(gw, {}, { 'x-request-id': 'reused-id' })).toBe(200);

    const res = await feedback(gw, { request_id: 'reused-id', value: 1 });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
    expect(await stats(gw, 'warm', 'feedback.thumbs_up')).toBeUndefined();
    expect(await stats(gw, 'control', 'feedback.thumbs_up')).toBeUndefined();
  });

  it('a request in no experiment that shares the id (another model) leaves the feedback with the experiment request', async () => {
    const gw = await gateway();
    expect(await chat(gw, { user: userIn('warm') }, { 'x-request-id': 'shared-id' })).toBe(200);
    expect(await chat(gw, { model: 'gpt-4o-mini', user: userIn('warm') }, { 'x-request-id': 'shared-id' })).toBe(200);
    const res = await feedback(gw, { request_id: 'shared-id', value: 1 });
    expect(res).toMatchObject({ status: 200, body: { status: 'recorded', variant: 'warm' } });
    expect(await stats(gw, 'warm', 'feedback.thumbs_up')).toEqual({ n: 1, sum: 1, sumSquares: 1 });
  });

  it('feedback counted before such a retry stays counted once when the id comes back into the experiment', async () => {
    const gw = await gateway();
    const user = userIn('control');
    await chat(gw, { user }, { 'x-request-id': 'back-again' });
    expect((await feedback(gw, { request_id: 'back-again', value: 1 })).status).toBe(200);
    await chat(gw, {}, { 'x-request-id': 'back-again' });
    await chat(gw, { user }, { 'x-request-id': 'back-again' });
    expect((await feedback(gw, { request_id: 'back-again', value: 1 })).status).toBe(409);
    expect(await stats(gw, 'control', 'feedback.thumbs_up')).toEqual({ n: 1, sum: 1, sumSquares: 1 });
  });
});

describe('feedback body', () => {
  it('a feedback body over server.max_body_bytes (default 4 MiB) answers 413 instead of being read whole (the route needs no token)', async () => {
    const gw = await gateway();
    const big = JSON.stringify({ request_id: 'x', value: 1, pad: 'a'.repeat(5 * 1024 * 1024) });
    const res = await feedback(gw, big);
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('body_too_large');

    // Chunked (no content-length): cut off as it streams in.
    const chunked = await request(`${gw.url}/v1/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Readable.from(
        (function* () {
          for (let i = 0; i < 80; i++) yield Buffer.alloc(64 * 1024, 0x20);
        })(),
      ),
    });
    expect(chunked.statusCode).toBe(413);
    expect(chunked.headers.connection).toBe('close'); // the unread rest is not drained: no next request on this connection
    await chunked.body.dump();

    // A small chunked body is still read and answered as usual.
    await chat(gw, { user: userIn('warm') }, { 'x-request-id': 'chunked-ok' });
    const small = await request(`${gw.url}/v1/feedback`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Readable.from([Buffer.from('{"request_id": "chunked-ok", '), Buffer.from('"value": 0.5}')]),
    });
    expect(small.statusCode).toBe(200);
    expect(await small.body.json()).toMatchObject({ status: 'recorded', variant: 'warm' });
  });

  it('follows a configured server.max_body_bytes', async () => {
    const yaml = mockConfig(upstream.url, EXPERIMENT).replace('server: {host: 127.0.0.1,', 'server: {host: 127.0.0.1, max_body_bytes: 2048,');
    const gw = await startTestGateway(yaml, { templates: ['config/templates/support-reply.yaml'] });
    gateways.push(gw);
    const res = await feedback(gw, JSON.stringify({ request_id: 'x', value: 1, pad: 'a'.repeat(4096) }));
    expect(res.status).toBe(413);
    expect(res.body.error.message).toContain('2048');
  });
});
