/**
 * Review: feedback posted the moment an answer ends. Automated evaluators post
 * `POST /v1/feedback` as soon as they have read the answer: the instant a non-stream body
 * arrives, or right after the stream's `[DONE]` (openai-python stops reading there and
 * closes the response). The request must be known to the feedback ledger by then, on
 * another connection and on the same kept-alive one, with and without `capture_content`,
 * in an experiment and with a context recipe whose bandit learns from the feedback.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { Client, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { until } from './helpers/raw-socket.js';
import { scrapeMetricsText } from './helpers/metrics.js';

let upstream: MockUpstream;
beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterAll(async () => {
  await upstream.close();
});

/** `support-bot` in the support-tone experiment; `recipe-bot` with two recipes chosen by a bandit learning from feedback.thumbs_up. */
async function gateway(captureContent: boolean): Promise<TestGateway> {
  const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-review-race7-'));
  const file = path.join(dir, 'recipe-t.yaml');
  writeFileSync(
    file,
    `id: recipe-t
versions:
  - version: "1.0.0"
    context:
      use: [tier_rules]
      recipes: [{name: small}, {name: large}]
      recipe_selection: {mode: bandit, metric: feedback.thumbs_up}
    messages: [{role: system, content: "Limit {{tier_rules.limit}}."}]
`,
  );
  const extra = `
telemetry: {capture_content: ${captureContent}}
bindings: [{model: support-bot, experiment: support-tone}, {model: recipe-bot, template: recipe-t}]
experiments:
  - id: support-tone
    template: support-reply
    variants: [{name: control, version: 1.0.0, weight: 50}, {name: warm, version: 1.1.0, weight: 50}]
context:
  builders:
    - {name: tier_rules, kind: rules, defaults: {limit: 50}}
`;
  return startTestGateway(mockConfig(upstream.url, extra, '    breaker: {failures: 0}'), { templates: ['config/templates/support-reply.yaml', file] });
}

const MODELS = ['support-bot', 'recipe-bot'] as const;

function chatBody(model: string, i: number, stream: boolean): string {
  return JSON.stringify({ model, messages: [{ role: 'user', content: `question ${i}` }], user: `user-${i}`, stream });
}

/** Headers steering the mock: a stream whose body ends a little after its `[DONE]` (a proxy, a server slow to close). */
const SLOW_END = { 'x-mock-chunk-delay-ms': '3' };

async function postFeedback(via: Client | undefined, url: string, requestId: string): Promise<{ status: number; body: any }> {
  const options = { method: 'POST' as const, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ request_id: requestId, metric: 'thumbs_up', value: 1 }) };
  const res = via ? await via.request({ ...options, path: '/v1/feedback' }) : await request(`${url}/v1/feedback`, options);
  return { status: res.statusCode, body: await res.body.json() };
}

/** Sum of the feedback.thumbs_up observations in /metrics. */
async function feedbackCount(gw: TestGateway): Promise<number> {
  const text = await scrapeMetricsText(gw.url);
  return text
    .split('\n')
    .filter((l) => l.startsWith('promptgate_experiment_observations_total{') && l.includes('metric="feedback.thumbs_up"'))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

/** Runs `n` requests, `parallel` at a time. */
async function times(n: number, parallel: number, run: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (next < n) await run(next++);
    }),
  );
}

describe.each([false, true])('feedback at once after the answer (capture_content %s)', (captureContent) => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await gateway(captureContent);
  });
  afterAll(async () => {
    await gw.close();
  });

  it('non-stream, official openai client: feedback on another connection and on the same kept-alive one', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
    const before = await feedbackCount(gw);
    const failures: string[] = [];
    const same = new Client(gw.url, { pipelining: 1 });
    try {
      await times(300, 6, async (i) => {
        const model = MODELS[i % 2];
        const { response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: `q ${i}` }], user: `user-${i}` }).withResponse();
        const fb = await postFeedback(undefined, gw.url, response.headers.get('x-promptgate-request-id')!);
        if (fb.status !== 200) failures.push(`${model} ${fb.status} ${fb.body.error?.message}`);
      });
      // Plain undici on one kept-alive connection: the answer, then the feedback on it.
      for (let i = 0; i < 300; i++) {
        const model = MODELS[i % 2];
        const res = await same.request({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, body: chatBody(model, i, false) });
        await res.body.arrayBuffer();
        const fb = await postFeedback(same, gw.url, res.headers['x-promptgate-request-id'] as string);
        if (fb.status !== 200) failures.push(`${model} same-connection ${fb.status} ${fb.body.error?.message}`);
      }
    } finally {
      await same.close();
    }
    expect(failures).toEqual([]);
    expect((await feedbackCount(gw)) - before).toBe(600);
  }, 60_000);

  it('stream, official openai client read to its end: feedback counts', async () => {
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
    const before = await feedbackCount(gw);
    const failures: string[] = [];
    await times(300, 6, async (i) => {
      const model = MODELS[i % 2];
      const { data, response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: `q ${i}` }], user: `user-${i}`, stream: true }, { headers: i % 3 === 0 ? SLOW_END : {} }).withResponse();
      for await (const _ of data);
      const fb = await postFeedback(undefined, gw.url, response.headers.get('x-promptgate-request-id')!);
      if (fb.status !== 200) failures.push(`${model} ${fb.status} ${fb.body.error?.message}`);
    });
    expect(failures).toEqual([]);
    expect((await feedbackCount(gw)) - before).toBe(300);
  }, 60_000);

  // The race: the client has the whole answer (its `[DONE]`) while the gateway still waits
  // for the upstream to end its body (or notices only later that the client closed it).
  it.each([
    ['keeps reading (a plain SSE reader)', false],
    ['closes the response at [DONE] (what openai-python does)', true],
  ])('stream, client that %s: feedback right after [DONE] counts', async (_name, closeAtDone) => {
    const before = await feedbackCount(gw);
    const failures: string[] = [];
    const ids: string[] = [];
    await times(300, 6, async (i) => {
      const model = MODELS[i % 2];
      const streamer = new Client(gw.url, { pipelining: 1 });
      try {
        const res = await streamer.request({ method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json', ...SLOW_END }, body: chatBody(model, i, true) });
        const id = res.headers['x-promptgate-request-id'] as string;
        ids.push(id);
        let text = '';
        let fb: { status: number; body: any } | undefined;
        for await (const chunk of res.body) {
          text += Buffer.from(chunk).toString();
          if (fb || !text.includes('data: [DONE]')) continue;
          if (closeAtDone) break; // leaving the loop destroys the body: the connection closes
          fb = await postFeedback(undefined, gw.url, id); // the rest of the body is read after
        }
        fb ??= await postFeedback(undefined, gw.url, id);
        if (fb.status !== 200) failures.push(`${model} ${fb.status} ${fb.body.error?.message}`);
      } finally {
        await streamer.destroy();
      }
    });
    expect(failures).toEqual([]);
    expect((await feedbackCount(gw)) - before).toBe(300);
    // Once the requests have finished, the feedback taken in flight stays counted: once.
    await until(() => gw.exchanges.size === 0);
    const again = await Promise.all(ids.slice(0, 20).map((id) => postFeedback(undefined, gw.url, id)));
    expect(again.map((r) => r.status)).toEqual(ids.slice(0, 20).map(() => 409));
    expect((await feedbackCount(gw)) - before).toBe(300);
  }, 60_000);
});

describe('feedback for requests that failed, were cut, or are in no experiment', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await gateway(false);
  });
  afterAll(async () => {
    await gw.close();
  });

  async function chat(body: string, headers: Record<string, string> = {}) {
    return request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });
  }

  // README "Errors": every answer, errors included, carries the id POST /v1/feedback takes.
  it('an upstream error answer takes feedback for its variant', async () => {
    const res = await chat(chatBody('support-bot', 1, false), { 'x-mock-status': '400' });
    await res.body.dump();
    expect(res.statusCode).toBe(400);
    const fb = await postFeedback(undefined, gw.url, res.headers['x-promptgate-request-id'] as string);
    expect(fb.status).toBe(200);
    expect(fb.body).toMatchObject({ status: 'recorded', experiment: 'support-tone', variant: res.headers['x-promptgate-variant'] });
  });

  it('a stream the client cancelled takes feedback at once, counted once', async () => {
    const before = await feedbackCount(gw);
    const res = await chat(chatBody('support-bot', 2, true), { 'x-mock-chunk-delay-ms': '50' });
    const id = res.headers['x-promptgate-request-id'] as string;
    for await (const _ of res.body) break; // the first event, then the client leaves
    const fb = await postFeedback(undefined, gw.url, id);
    expect(fb.status).toBe(200);
    await until(() => gw.exchanges.size === 0);
    expect((await postFeedback(undefined, gw.url, id)).status).toBe(409);
    expect((await feedbackCount(gw)) - before).toBe(1);
  });

  it('a request in flight that no experiment hashed (no user id), or an id never seen, is 404 at once', async () => {
    const res = await chat(JSON.stringify({ model: 'support-bot', messages: [{ role: 'user', content: 'hi' }], stream: true }), { 'x-mock-chunk-delay-ms': '50' });
    const id = res.headers['x-promptgate-request-id'] as string;
    expect(gw.exchanges.size).toBe(1);
    const started = Date.now();
    const [inFlight, unknown] = await Promise.all([postFeedback(undefined, gw.url, id), postFeedback(undefined, gw.url, 'no-such-request')]);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(inFlight.status).toBe(404);
    expect(inFlight.body.error).toMatchObject({ type: 'not_found_error', code: 'not_found', param: 'request_id' });
    expect(unknown.status).toBe(404);
    await res.body.dump();
    await until(() => gw.exchanges.size === 0);
    expect((await postFeedback(undefined, gw.url, id)).status).toBe(404);
  });
});
