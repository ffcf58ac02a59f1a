/**
 * Review of experiments (schedule x rollout) and the admin API, through a real gateway:
 * the rollout stage the admin API shows must be the one the gateway serves, and
 * `/admin/assign` must hash the user id the gateway would hash.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { bucketOf } from '../src/experiments/hash.js';
import { startTestGateway, mockConfig, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { scrapeMetricsText } from './helpers/metrics.js';

const TOKEN = 'admin-token-6';
let upstream: MockUpstream;
const gateways: TestGateway[] = [];
beforeAll(async () => {
  upstream = await startMockUpstream();
});
afterAll(async () => {
  await upstream.close();
});
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});

async function gateway(schedule: string): Promise<TestGateway> {
  const extra = `
admin: {token: ${TOKEN}}
bindings: [{model: support-bot, experiment: support-tone}]
experiments:
  - id: support-tone
    template: support-reply
    variants: [{name: control, version: 1.0.0, weight: 50}, {name: warm, version: 1.1.0, weight: 50}]
${schedule}
`;
  const gw = await startTestGateway(mockConfig(upstream.url, extra, '    breaker: {failures: 0}'), { templates: ['config/templates/support-reply.yaml'] });
  gateways.push(gw);
  return gw;
}

async function admin(gw: TestGateway, path: string): Promise<any> {
  const res = await request(`${gw.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(res.statusCode, path).toBe(200);
  return res.body.json();
}

/** The variant the gateway serves for a chat request (headers given as raw Latin-1 strings). */
function served(gw: TestGateway, headers: Record<string, string>, body: object = {}): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify({ model: 'support-bot', messages: [{ role: 'user', content: 'hi' }], ...body });
    const req = httpRequest({ host: '127.0.0.1', port: gw.port, method: 'POST', path: '/v1/chat/completions', headers: { 'content-type': 'application/json', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.headers['x-promptgate-variant'] as string | undefined));
    });
    req.on('error', reject);
    req.end(payload);
  });
}

describe('rollout stage shown by the admin API', () => {
  const DAY = 86_400_000;
  const START = Date.parse('2026-11-20T00:00:00Z');
  const END = START + 2 * DAY + 12 * 3_600_000; // mid-way through stage 2
  const SCHEDULE = `    start: 2026-11-20T00:00:00Z
    end: ${new Date(END).toISOString()}
    rollout: {stages: [10, 50, 100], every: 1d}`;

  // Regression: after `end` the admin API still showed a stage in effect (100%, or whatever
  // stage the clock had reached) while the gateway and /admin/assign served everyone the
  // baseline (outside_schedule); and the stage before `end` announced a next stage that
  // `end` cut off.
  it('after end there is no stage in effect, and no next stage is announced past end', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const gw = await gateway(SCHEDULE);
    const user = Array.from({ length: 200 }, (_, i) => `user-${i}`).find((u) => bucketOf('support-tone', u) >= 5000)!;

    vi.setSystemTime(new Date(START + DAY + 1));
    expect((await admin(gw, '/admin/experiments/support-tone')).rollout_stage).toEqual({
      index: 1,
      percent: 50,
      started_at: '2026-11-21T00:00:00.000Z',
      next_at: '2026-11-22T00:00:00.000Z',
    });

    // Stage 2 starts, and `end` comes before any later one: the last stage this experiment has.
    vi.setSystemTime(new Date(START + 2 * DAY));
    expect((await admin(gw, '/admin/experiments/support-tone')).rollout_stage).toEqual({
      index: 2,
      percent: 100,
      started_at: '2026-11-22T00:00:00.000Z',
      next_at: null,
    });

    for (const t of [END, END + 30 * DAY]) {
      vi.setSystemTime(new Date(t));
      const [list, detail, assigned] = await Promise.all([
        admin(gw, '/admin/experiments'),
        admin(gw, '/admin/experiments/support-tone'),
        admin(gw, `/admin/assign?experiment=support-tone&user=${user}`),
      ]);
      expect(assigned).toMatchObject({ variant: 'control', reason: 'outside_schedule' });
      expect(await served(gw, { 'x-user-id': user })).toBe('control');
      expect(list.data[0]).toMatchObject({ active: false, rollout_stage: null });
      expect(detail).toMatchObject({ active: false, rollout_stage: null, rollout: { stages: [10, 50, 100], every: '1d' } });
    }
  });

  it('a stage whose successor would begin exactly at end is the last (end is exclusive)', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const gw = await gateway(`    start: 2026-11-20T00:00:00Z
    end: 2026-11-21T00:00:00Z
    rollout: {stages: [10, 100], every: 1d}`);
    vi.setSystemTime(new Date(START + 1000));
    expect((await admin(gw, '/admin/experiments/support-tone')).rollout_stage).toMatchObject({ index: 0, percent: 10, next_at: null });
  });
});

describe('/admin/assign user id encodings', () => {
  // Regression: a percent-encoded id that is no UTF-8 (`Zo%EB`, how Latin-1 tools encode
  // "Zoë") was hashed as the literal text `Zo%EB`, a user the gateway never serves: the
  // answer named a bucket and variant unrelated to the one `x-user-id: Zoë` gets.
  it('reads bytes that are no UTF-8 as the gateway reads the same bytes in x-user-id (Latin-1)', async () => {
    const gw = await gateway('    start: 2020-01-01T00:00:00Z');
    const cases: [query: string, id: string][] = [
      ['Zo%EB', 'Zoë'],
      ['%FCser-%DF', 'üser-ß'],
      ['J%F6rg+M%FCller', 'Jörg Müller'],
    ];
    for (const [query, id] of cases) {
      const a = await admin(gw, `/admin/assign?experiment=support-tone&user=${query}`);
      expect(a.bucket, query).toBe(bucketOf('support-tone', id));
      // The gateway, given the same bytes in the header (Node reads them as Latin-1).
      expect(await served(gw, { 'x-user-id': Buffer.from(id, 'latin1').toString('latin1') }), query).toBe(a.variant);
      expect(await served(gw, {}, { user: id }), query).toBe(a.variant);
    }
    // Valid UTF-8 escapes, a `%` that starts no escape, and `%25` are read as before.
    expect((await admin(gw, '/admin/assign?experiment=support-tone&user=Zo%C3%AB')).bucket).toBe(bucketOf('support-tone', 'Zoë'));
    expect((await admin(gw, '/admin/assign?experiment=support-tone&user=100%')).bucket).toBe(bucketOf('support-tone', '100%'));
    expect((await admin(gw, '/admin/assign?experiment=support-tone&user=a%25EB')).bucket).toBe(bucketOf('support-tone', 'a%EB'));
  });
});

describe('POST /v1/feedback that would count nowhere', () => {
  /** A template whose two recipes are chosen by `mode` (no experiment binds it). */
  async function recipeGateway(selection: string): Promise<TestGateway> {
    const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-review-exp6-'));
    const file = path.join(dir, 'recipe-t.yaml');
    writeFileSync(
      file,
      `id: recipe-t
versions:
  - version: "1.0.0"
    context:
      use: [tier_rules]
      recipes: [{name: small}, {name: large}]
      recipe_selection: ${selection}
    messages: [{role: system, content: "Limit {{tier_rules.limit}}."}]
`,
    );
    const extra = `
bindings: [{model: recipe-bot, template: recipe-t}]
context:
  builders:
    - {name: tier_rules, kind: rules, defaults: {limit: 50}}
`;
    const gw = await startTestGateway(mockConfig(upstream.url, extra, '    breaker: {failures: 0}'), { templates: [file] });
    gateways.push(gw);
    return gw;
  }

  async function chatId(gw: TestGateway, user: string): Promise<string> {
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'recipe-bot', messages: [{ role: 'user', content: 'hi' }], user }),
    });
    await res.body.dump();
    expect(res.statusCode).toBe(200);
    return res.headers['x-promptgate-request-id'] as string;
  }

  async function feedback(gw: TestGateway, body: object): Promise<{ status: number; body: any }> {
    const res = await request(`${gw.url}/v1/feedback`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.statusCode, body: await res.body.json() };
  }

  /** Feedback observation counts above zero (a bandit's reward metric is listed at 0 from the start). */
  async function feedbackSeries(gw: TestGateway): Promise<string[]> {
    const text = await scrapeMetricsText(gw.url);
    return text.split('\n').filter((l) => l.startsWith('promptgate_experiment_observations_total{') && l.includes('metric="feedback.') && !l.endsWith(' 0'));
  }

  // Regression: feedback for a request that used a context recipe but was in no experiment
  // answered 200 "recorded" (experiment and variant null) when nothing took the value: a
  // recipe chosen by the hash, or a bandit that learns from another metric (the shipped
  // support-context bandit learns from `success`). The client was told its feedback counted.
  it('answers 404 when neither an experiment nor a recipe bandit takes the metric, and counts nothing', async () => {
    for (const selection of ['{mode: experiment}', '{mode: bandit, metric: success}', '{mode: bandit, metric: feedback.rating}']) {
      const gw = await recipeGateway(selection);
      const id = await chatId(gw, 'user-1');
      const res = await feedback(gw, { request_id: id, metric: 'thumbs_up', value: 1 });
      expect(res.status, selection).toBe(404);
      expect(res.body.error, selection).toMatchObject({ type: 'not_found_error', code: 'not_found', param: 'request_id' });
      expect(res.body.error.message, selection).toContain('feedback.thumbs_up');
      expect(await feedbackSeries(gw), selection).toEqual([]);
    }
  });

  it('a recipe bandit learning from the metric still takes it, once; a refused metric does not use up a slot', async () => {
    const gw = await recipeGateway('{mode: bandit, metric: feedback.thumbs_up}');
    const id = await chatId(gw, 'user-1');
    expect((await feedback(gw, { request_id: id, metric: 'rating', value: 1 })).status).toBe(404);
    const ok = await feedback(gw, { request_id: id, metric: 'thumbs_up', value: 1 });
    expect(ok).toMatchObject({ status: 200, body: { status: 'recorded', metric: 'feedback.thumbs_up', experiment: null, variant: null } });
    expect((await feedbackSeries(gw)).length).toBe(1);
    expect((await feedback(gw, { request_id: id, metric: 'thumbs_up', value: 1 })).status).toBe(409);
  });
});
