/**
 * Prompt selection and A/B assignment through the real gateway, with the official openai
 * client, against the mock upstream (which records what it receives).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import OpenAI from 'openai';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { bucketOf } from '../src/experiments/hash.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
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
  upstream.requests.length = 0;
});

const config = (extra = '') => `
server: {host: 127.0.0.1}
logging: {level: silent}
admin: {token: admin-secret}
templates: {dir: templates}
upstreams: [{name: mock, base_url: "${upstream.url}", breaker: {failures: 0}}]
routing: {default: [mock]}
bindings:
  - {model: support-bot, experiment: support-tone}
  - {model: support-fixed, template: support-reply@1.0.0, mode: prepend}
experiments:
  - id: support-tone
    template: support-reply
    variants: [{name: control, version: 1.0.0, weight: 50}, {name: warm, version: 1.1.0, weight: 50}]
    start: 2020-01-01T00:00:00Z
    end: 2099-01-01T00:00:00Z
${extra}`;

async function gateway(extra = ''): Promise<TestGateway> {
  const gw = await startTestGateway(config(extra), { templates: ['config/templates/support-reply.yaml'] });
  gateways.push(gw);
  return gw;
}

const clientFor = (gw: TestGateway) => new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });

describe('prompt selection through the gateway', () => {
  it('swaps in the assigned variant: rendered system prompt, client turns kept, headers name it', async () => {
    const gw = await gateway();
    const { data, response } = await clientFor(gw)
      .chat.completions.create({
        model: 'support-bot',
        user: 'user-123',
        messages: [
          { role: 'system', content: 'client system prompt' },
          { role: 'user', content: 'Where is my order?' },
          { role: 'assistant', content: 'Which order?' },
          { role: 'user', content: 'Number 42' },
        ],
      })
      .withResponse();
    expect(data.choices[0].message.content).toBe('Hello from the mock upstream!');

    // DESIGN.md test vector: support-tone-v1:user-123 -> 7686; here the salt is the id.
    const bucket = bucketOf('support-tone', 'user-123');
    const variant = bucket < 5000 ? 'control' : 'warm';
    expect(response.headers.get('x-promptgate-template')).toBe('support-reply');
    expect(response.headers.get('x-promptgate-template-version')).toBe(variant === 'control' ? '1.0.0' : '1.1.0');
    expect(response.headers.get('x-promptgate-experiment')).toBe('support-tone');
    expect(response.headers.get('x-promptgate-variant')).toBe(variant);

    const sent = upstream.requests[0].body;
    expect(sent.model).toBe('gpt-4o-mini'); // the alias is not forwarded
    expect(sent.messages[0].role).toBe('system');
    expect(sent.messages[0].content).toContain('customer support assistant of Acme');
    expect(sent.messages.slice(1)).toEqual([
      { role: 'user', content: 'Where is my order?' },
      { role: 'assistant', content: 'Which order?' },
      { role: 'user', content: 'Number 42' },
    ]);
    expect(JSON.stringify(sent.messages)).not.toContain('client system prompt');
  });

  it('gives every user the same variant on two gateway instances', async () => {
    const a = clientFor(await gateway());
    const b = clientFor(await gateway());
    for (let i = 0; i < 20; i++) {
      const user = `user-${i}`;
      const msg = { model: 'support-bot', user, messages: [{ role: 'user' as const, content: 'hi' }] };
      const ra = await a.chat.completions.create(msg).withResponse();
      const rb = await b.chat.completions.create(msg).withResponse();
      const va = ra.response.headers.get('x-promptgate-variant');
      expect(va).toBe(rb.response.headers.get('x-promptgate-variant'));
      expect(va).toBe(bucketOf('support-tone', user) < 5000 ? 'control' : 'warm');
    }
  });

  it('gives a request without a user id the baseline', async () => {
    const gw = await gateway();
    const { response } = await clientFor(gw).chat.completions.create({ model: 'support-bot', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    expect(response.headers.get('x-promptgate-variant')).toBe('control');
  });

  it('takes the user id from a header too', async () => {
    const gw = await gateway();
    const user = 'user-124'; // bucket 5833 with salt support-tone-v1; here with support-tone
    const { response } = await clientFor(gw)
      .chat.completions.create({ model: 'support-bot', messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-user-id': user } })
      .withResponse();
    expect(response.headers.get('x-promptgate-variant')).toBe(bucketOf('support-tone', user) < 5000 ? 'control' : 'warm');
  });

  it('honours explicit body fields and strips prompt_* before forwarding', async () => {
    const gw = await gateway();
    const body = {
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'hi' }],
      prompt_id: 'support-reply',
      prompt_version: '1.1.0',
      prompt_variables: { company: 'Globex', customer_name: 'Ada' },
    };
    const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-promptgate-template-version']).toBe('1.1.0');
    expect(res.headers['x-promptgate-experiment']).toBeUndefined();
    await res.body.dump();
    const sent = upstream.requests[0].body;
    expect(Object.keys(sent).filter((k) => k.startsWith('prompt_'))).toEqual([]);
    expect(sent.messages[0].content).toContain('Globex');
    expect(sent.messages[0].content).toContain('Ada');
  });

  it('honours the template header with variables from headers (replace mode), and prepend mode keeps the client system prompt', async () => {
    const gw = await gateway();
    await clientFor(gw).chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'client system' }, { role: 'user', content: 'hi' }] },
      { headers: { 'x-promptgate-template': 'support-reply@production', 'x-promptgate-var-customer-name': 'Grace' } },
    );
    expect(upstream.requests[0].body.messages[0].content).toContain('Hello Grace,');
    expect(upstream.requests[0].body.messages.slice(1)).toEqual([{ role: 'user', content: 'hi' }]);
    expect(upstream.requests[0].headers['x-promptgate-template']).toBeUndefined();

    await clientFor(gw).chat.completions.create({ model: 'support-fixed', messages: [{ role: 'system', content: 'kept' }, { role: 'user', content: 'hi' }] });
    const prepended = upstream.requests[1].body.messages;
    expect(prepended.map((m: { role: string }) => m.role)).toEqual(['system', 'system', 'user']);
    expect(prepended[1].content).toBe('kept');
  });

  it('answers 404 for an unknown template and 400 for a variable of the wrong type', async () => {
    const gw = await gateway();
    const client = clientFor(gw);
    await expect(
      client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-promptgate-template': 'nope' } }),
    ).rejects.toMatchObject({ status: 404 });
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'x', messages: [{ role: 'user', content: 'hi' }], prompt_id: 'support-reply', prompt_variables: { company: 42 } }),
    });
    expect(res.statusCode).toBe(400);
    const err = ((await res.body.json()) as any).error;
    expect(err.code).toBe('invalid_variable');
    expect(err.message).toContain('company');
    expect(upstream.requests).toHaveLength(0);
  });

  it('serves the admin API with assignment counts and the assign lookup', async () => {
    const gw = await gateway();
    const client = clientFor(gw);
    for (const user of ['u1', 'u2', 'u3']) await client.chat.completions.create({ model: 'support-bot', user, messages: [{ role: 'user', content: 'hi' }] });
    const unauthorized = await request(`${gw.url}/admin/experiments/support-tone`);
    expect(unauthorized.statusCode).toBe(401);
    await unauthorized.body.dump();
    const res = await request(`${gw.url}/admin/experiments/support-tone`, { headers: { authorization: 'Bearer admin-secret' } });
    expect(res.statusCode).toBe(200);
    const detail = JSON.stringify(await res.body.json());
    expect(detail).toContain('control');
    expect(detail).toContain('warm');
    const assign = await request(`${gw.url}/admin/assign?experiment=support-tone&user=user-123`, { headers: { authorization: 'Bearer admin-secret' } });
    const a = (await assign.body.json()) as any;
    expect(a.bucket).toBe(bucketOf('support-tone', 'user-123'));
  });
});

describe('GET /v1/models', () => {
  it('lists the binding aliases next to the upstream models', async () => {
    const gw = await gateway();
    const models = await clientFor(gw).models.list();
    const ids = models.data.map((m) => m.id);
    expect(ids).toContain('gpt-4o-mini');
    expect(ids).toContain('support-bot');
    expect(ids).toContain('support-fixed');
  });
});

describe('hot reload of templates and experiments', () => {
  it('serves an edited template file to new requests, and keeps serving when an edit is invalid', async () => {
    const gw = await gateway();
    const client = clientFor(gw);
    const file = `${gw.dir}/templates/support-reply.yaml`;
    const original = readFileSync(file, 'utf8');
    const ask = async () => {
      upstream.requests.length = 0;
      await client.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'hi' }] }, { headers: { 'x-promptgate-template': 'support-reply@1.0.0' } });
      return upstream.requests[0].body.messages[0].content as string;
    };
    expect(await ask()).toContain('customer support assistant of');

    writeFileSync(file, original.replace('You are the customer support assistant of', 'You are the RELOADED assistant of'));
    await waitFor(async () => (await ask()).includes('RELOADED'));

    writeFileSync(file, original.replace('version: "1.0.0"', 'version: "not-semver"'));
    await new Promise((r) => setTimeout(r, 600));
    expect(await ask()).toContain('RELOADED'); // the invalid edit was rejected
    expect(gw.holder.current.generation).toBe(2);
  });

  it('applies a new experiment weight split from an edited config', async () => {
    const gw = await gateway();
    const client = clientFor(gw);
    const variantOf = async (user: string) =>
      (await client.chat.completions.create({ model: 'support-bot', user, messages: [{ role: 'user', content: 'hi' }] }).withResponse()).response.headers.get('x-promptgate-variant');
    // 50/50 -> 90/10: control takes buckets [0, 9000).
    writeFileSync(gw.configFile, readFileSync(gw.configFile, 'utf8').replace('weight: 50}, {name: warm, version: 1.1.0, weight: 50}', 'weight: 90}, {name: warm, version: 1.1.0, weight: 10}'));
    await waitFor(async () => gw.holder.current.generation === 2);
    for (let i = 0; i < 30; i++) {
      const user = `user-${i}`;
      expect(await variantOf(user)).toBe(bucketOf('support-tone', user) < 9000 ? 'control' : 'warm');
    }
  });
});

async function waitFor(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('condition not met in time');
}

describe('POST /v1/feedback', () => {
  it('adds feedback to the statistics of the variant that served the request, once', async () => {
    const gw = await gateway();
    const { response } = await clientFor(gw).chat.completions.create({ model: 'support-bot', user: 'user-123', messages: [{ role: 'user', content: 'hi' }] }).withResponse();
    const requestId = response.headers.get('x-promptgate-request-id')!;
    const variant = response.headers.get('x-promptgate-variant')!;
    const send = (body: object) => request(`${gw.url}/v1/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

    const ok = await send({ request_id: requestId, metric: 'thumbs_up', value: 1 });
    expect(ok.statusCode).toBe(200);
    expect(await ok.body.json()).toMatchObject({ status: 'recorded', experiment: 'support-tone', variant, metric: 'feedback.thumbs_up' });
    const again = await send({ request_id: requestId, metric: 'thumbs_up', value: 1 });
    expect(again.statusCode).toBe(409);
    await again.body.dump();
    const unknown = await send({ request_id: 'nope', value: 1 });
    expect(unknown.statusCode).toBe(404);
    expect(((await unknown.body.json()) as any).error.code).toBe('not_found');
    const bad = await send({ request_id: requestId, value: -1 });
    expect(bad.statusCode).toBe(400);
    await bad.body.dump();
    // Regression: answered "recorded" for a value the statistics cannot count (its square overflows).
    const huge = await send({ request_id: requestId, metric: 'score', value: 1e200 });
    expect(huge.statusCode).toBe(400);
    expect(((await huge.body.json()) as any).error).toMatchObject({ code: 'invalid_request', param: 'value' });

    const metrics = await scrapeMetricsText(gw.url);
    const line = metrics.split('\n').find((l) => l.startsWith('promptgate_experiment_observations_total{') && l.includes('metric="feedback.thumbs_up"'));
    expect(line).toContain(`variant="${variant}"`);
    expect(line?.trim().endsWith(' 1')).toBe(true);
  });
});
