import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { AssignmentCounters } from '../experiments/counters.js';
import { testExperiment, testRegistry } from '../experiments/test-helpers.js';
import { errorBody } from '../errors.js';
import { createAdminRoutes, type AdminState } from './routes.js';
import { bearerMatches } from './bearer-auth.js';

const NOW = new Date('2026-11-21T12:00:00Z');

function setup(token = 's3cret') {
  const registry = testRegistry();
  const exp = testExperiment(
    {
      id: 'support-tone-v1',
      variants: [{ name: 'control', version: '1.0.0', weight: 50 }, { name: 'warm', version: '1.1.0', weight: 50 }],
      start: '2026-11-20T00:00:00Z',
      end: '2026-12-20T00:00:00Z',
      rollout: { stages: [10, 50, 100], every: '24h' },
    },
    registry,
  );
  const counters = new AssignmentCounters();
  counters.record('support-tone-v1', 'warm', 'assigned');
  counters.record('support-tone-v1', 'warm', 'assigned');
  counters.record('support-tone-v1', 'control', 'no_user');
  const state: AdminState = { token, registry, experiments: new Map([[exp.id, exp]]), counters, now: () => NOW };
  // Mounted like the gateway does: the parent app owns the single error boundary.
  const app = new Hono();
  app.route('/', createAdminRoutes(() => state));
  app.notFound((c) => c.json(errorBody(new Error('x')).body, 404));
  app.onError((err, c) => {
    const { status, body, headers } = errorBody(err);
    return c.json(body, status as 500, headers);
  });
  return { app, state };
}

const auth = { authorization: 'Bearer s3cret' };

describe('admin auth', () => {
  const { app } = setup();

  it('401 without a token, with a wrong token, or another scheme', async () => {
    for (const headers of [{} as Record<string, string>, { authorization: 'Bearer nope' }, { authorization: 'Basic czNjcmV0' }, { authorization: 'Bearer s3cret2' }]) {
      const res = await app.request('/admin/templates', { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect((await res.json()).error).toMatchObject({ code: 'unauthorized', type: 'authentication_error' });
    }
  });

  it('accepts the token with any case of the scheme', async () => {
    expect((await app.request('/admin/templates', { headers: { authorization: 'bearer s3cret' } })).status).toBe(200);
  });

  it('404 for everything under /admin when the token is empty', async () => {
    const off = setup('').app;
    for (const p of ['/admin', '/admin/templates', '/admin/experiments/support-tone-v1', '/admin/assign?experiment=x&user=y']) {
      const res = await off.request(p, { headers: { authorization: 'Bearer ' } });
      expect(res.status, p).toBe(404);
      expect((await res.json()).error.code).toBe('not_found');
    }
  });

  it('bearerMatches compares exactly', () => {
    expect(bearerMatches('Bearer abc', 'abc')).toBe(true);
    expect(bearerMatches('Bearer abc', 'ab')).toBe(false);
    expect(bearerMatches(undefined, '')).toBe(false);
    expect(bearerMatches('Bearer', '')).toBe(false);
  });
});

describe('admin payloads', () => {
  const { app } = setup();
  const get = async (p: string) => {
    const res = await app.request(p, { headers: auth });
    return { status: res.status, body: await res.json(), headers: res.headers };
  };

  it('GET /admin/templates lists templates with versions and labels', async () => {
    const { status, body, headers } = await get('/admin/templates');
    expect(status).toBe(200);
    expect(headers.get('cache-control')).toBe('no-store');
    expect(body).toEqual({
      object: 'list',
      data: [{ id: 't', name: 't', description: '', tags: [], default_version: '1.0.0', labels: { production: '1.0.0', staging: '1.1.0' }, versions: ['1.2.0', '1.1.0', '1.0.0'] }],
    });
  });

  it('GET /admin/templates/:id has the full history; unknown -> 404', async () => {
    const { body } = await get('/admin/templates/t');
    expect(body.versions.map((v: { version: string; labels: string[] }) => [v.version, v.labels])).toEqual([
      ['1.2.0', []],
      ['1.1.0', ['staging']],
      ['1.0.0', ['production']],
    ]);
    expect(body.versions[1]).toMatchObject({ role: 'primary', model: null, messages: [{ role: 'system', content: 'v1.1 {{who}}' }], variables: { who: { type: 'string' } } });
    const missing = await get('/admin/templates/nope');
    expect(missing.status).toBe(404);
    expect(missing.body.error).toMatchObject({ code: 'not_found', message: 'Unknown template "nope".' });
  });

  it('GET /admin/experiments lists experiments with ranges and stage', async () => {
    const { body } = await get('/admin/experiments');
    expect(body.data).toEqual([
      {
        id: 'support-tone-v1',
        template: 't',
        active: true,
        variants: [
          { name: 'control', version: '1.0.0', weight: 50, buckets: [0, 5000] },
          { name: 'warm', version: '1.1.0', weight: 50, buckets: [5000, 10000] },
        ],
        rollout_stage: { index: 1, percent: 50, started_at: '2026-11-21T00:00:00.000Z', next_at: '2026-11-22T00:00:00.000Z' },
      },
    ]);
  });

  it('GET /admin/experiments/:id has schedule, rollout and counts per variant; unknown -> 404', async () => {
    const { body } = await get('/admin/experiments/support-tone-v1');
    expect(body).toMatchObject({
      salt: 'support-tone-v1',
      baseline: 'control',
      schedule: { start: '2026-11-20T00:00:00.000Z', end: '2026-12-20T00:00:00.000Z' },
      rollout: { stages: [10, 50, 100], every: '24h' },
      rollout_stage: { index: 1, percent: 50 },
      counts: {
        variants: {
          control: { assigned: 0, no_user: 1, outside_schedule: 0, rollout_holdback: 0 },
          warm: { assigned: 2, no_user: 0, outside_schedule: 0, rollout_holdback: 0 },
        },
        totals: { assigned: 2, no_user: 1, outside_schedule: 0, rollout_holdback: 0 },
      },
    });
    expect((await get('/admin/experiments/nope')).status).toBe(404);
  });

  it('GET /admin/assign returns the variant and buckets (DESIGN.md vectors, rollout at 50%)', async () => {
    // user-123: bucket 7686 -> warm; rollout bucket 3882 < 5000 -> exposed.
    expect((await get('/admin/assign?experiment=support-tone-v1&user=user-123')).body).toEqual({
      experiment: 'support-tone-v1',
      user: 'user-123',
      variant: 'warm',
      version: '1.1.0',
      bucket: 7686,
      rollout_bucket: 3882,
      reason: 'assigned',
    });
    // user-124: bucket 5833 -> warm; rollout bucket 9578 >= 5000 -> held back on the baseline.
    expect((await get('/admin/assign?experiment=support-tone-v1&user=user-124')).body).toMatchObject({
      variant: 'control',
      bucket: 5833,
      rollout_bucket: 9578,
      reason: 'rollout_holdback',
    });
  });

  // Regression: the gateway trims user ids before hashing, /admin/assign did not, so an id
  // pasted with a trailing space or newline showed another bucket than the one served.
  it('GET /admin/assign hashes the id as the gateway does (surrounding whitespace dropped)', async () => {
    expect((await get('/admin/assign?experiment=support-tone-v1&user=%20user-123%0A')).body).toMatchObject({ bucket: 7686, reason: 'assigned' });
    expect((await get('/admin/assign?experiment=support-tone-v1&user=%20%20')).body).toMatchObject({ variant: 'control', bucket: null, reason: 'no_user' });
  });

  it('guards /admin itself too', async () => {
    expect((await app.request('/admin')).status).toBe(401);
  });

  it('GET /admin/assign validates its query', async () => {
    expect((await get('/admin/assign?user=u')).body.error).toMatchObject({ code: 'invalid_request', param: 'experiment' });
    expect((await get('/admin/assign?experiment=support-tone-v1')).body.error).toMatchObject({ code: 'invalid_request', param: 'user' });
    expect((await get('/admin/assign?experiment=nope&user=u')).status).toBe(404);
  });

  it('reads state per request (a reload is seen at once)', async () => {
    const { app: live, state } = setup();
    state.token = 'rotated';
    expect((await live.request('/admin/templates', { headers: auth })).status).toBe(401);
    expect((await live.request('/admin/templates', { headers: { authorization: 'Bearer rotated' } })).status).toBe(200);
  });
});
