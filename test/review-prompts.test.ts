/**
 * Regression tests from a review of the prompt registry, selection, experiments and admin
 * API. Each test is named after what broke.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Hono } from 'hono';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAdminRoutes, type AdminState } from '../src/admin/routes.js';
import { compileExperiments } from '../src/experiments/compile.js';
import { AssignmentCounters } from '../src/experiments/counters.js';
import { testExperiment, testRegistry } from '../src/experiments/test-helpers.js';
import { errorBody } from '../src/errors.js';
import { compileTemplate } from '../src/prompts/compile-template.js';
import { experimentSchema } from '../src/experiments/config-schema.js';
import { loadTemplateRegistry } from '../src/prompts/loader.js';
import { TemplateRegistry } from '../src/prompts/registry.js';
import { applySelection, selectTemplate } from '../src/prompts/selection.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';

const TWO_VARIANTS = [
  { name: 'control', version: '1.0.0', weight: 50 },
  { name: 'warm', version: '1.1.0', weight: 50 },
];

describe('header variables through the gateway', () => {
  let upstream: MockUpstream;
  let gw: TestGateway | undefined;
  beforeAll(async () => {
    upstream = await startMockUpstream();
  });
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    upstream.requests.length = 0;
  });
  afterAll(async () => {
    await upstream.close();
  });

  it('x-promptgate-var-* with UTF-8 text renders the text, not its Latin-1 mojibake', async () => {
    gw = await startTestGateway(
      `
server: {host: 127.0.0.1}
logging: {level: silent}
templates: {dir: templates}
upstreams: [{name: mock, base_url: "${upstream.url}", breaker: {failures: 0}}]
routing: {default: [mock]}
`,
      { templates: ['config/templates/support-reply.yaml'] },
    );
    // What curl or httpx put on the wire for `x-promptgate-var-customer-name: Zoë`: the UTF-8 bytes.
    const utf8OnTheWire = Buffer.from('Zoë Ø', 'utf8').toString('latin1');
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-promptgate-template': 'support-reply@1.0.0', 'x-promptgate-var-customer-name': utf8OnTheWire },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    await res.body.text();
    expect(res.statusCode).toBe(200);
    const system = upstream.requests[0].body.messages[0].content as string;
    expect(system).toContain('Start your reply with "Hello Zoë Ø,"');
  });
});

describe('template params and a client null', () => {
  function version() {
    const { template, problems } = compileTemplate({
      id: 'p',
      versions: [{ version: '1.0.0', model: 'gpt-4o-mini', params: { temperature: 0.3, max_tokens: 512, stop: ['END'] }, messages: [{ role: 'system', content: 'Be brief.' }] }],
    });
    if (!template) throw new Error(JSON.stringify(problems));
    return new TemplateRegistry([template]);
  }

  it('a client field sent as null (OpenAI: not set) gets the version param instead of staying null', () => {
    const registry = version();
    const body = { model: 'x', prompt_id: 'p', temperature: null, max_tokens: null, stop: null, messages: [{ role: 'user', content: 'hi' }] };
    const sel = selectTemplate({ body, header: () => undefined, registry, bindings: new Map(), userId: undefined, now: new Date() })!;
    const out = applySelection(body, sel, {});
    expect(out.temperature).toBe(0.3);
    expect(out.max_tokens).toBe(512);
    expect(out.stop).toEqual(['END']);
    // A value the client did set still wins.
    const set = applySelection({ ...body, temperature: 0 }, sel, {});
    expect(set.temperature).toBe(0);
  });
});

describe('experiment config limits', () => {
  it('weights whose sum overflows a double are a load error, not NaN bucket ranges that serve one variant to everyone', () => {
    const cfg = experimentSchema.parse({
      id: 'e',
      template: 't',
      variants: [
        { name: 'a', version: '1.0.0', weight: 1e308 },
        { name: 'b', version: '1.1.0', weight: 1e308 },
      ],
    });
    const { experiments, issues } = compileExperiments([cfg], testRegistry());
    expect(experiments.size).toBe(0);
    expect(issues).toEqual([{ path: 'experiments[0].variants', message: expect.stringContaining('weights add up to more than') }]);
  });

  it('a rollout `every` too long for a date is a load error, not a 500 from the admin API', () => {
    const parse = (every: string) =>
      experimentSchema.safeParse({ id: 'e', template: 't', variants: TWO_VARIANTS, start: '2026-01-01T00:00:00Z', rollout: { stages: [50, 100], every } });
    for (const every of ['100000000d', '99999999999999999999d', `${'9'.repeat(400)}d`]) {
      const r = parse(every);
      expect(r.success, every).toBe(false);
      expect(r.error?.issues[0].path).toEqual(['rollout', 'every']);
    }
    expect(parse('3650d').success).toBe(true);
    expect(parse('24h').success).toBe(true);
  });

  it('the longest accepted rollout `every` still renders in /admin/experiments', async () => {
    const registry = testRegistry();
    const exp = testExperiment({ id: 'slow', variants: TWO_VARIANTS, start: '2026-01-01T00:00:00Z', rollout: { stages: [5, 25, 50, 100], every: '3650d' } }, registry);
    const app = adminApp({ token: 't0k', registry, experiments: new Map([[exp.id, exp]]), counters: new AssignmentCounters(), now: () => new Date('2026-06-01T00:00:00Z') });
    const res = await app.request('/admin/experiments/slow', { headers: { authorization: 'Bearer t0k' } });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { rollout_stage: { index: number; next_at: string } };
    expect(body.rollout_stage.index).toBe(0);
    expect(body.rollout_stage.next_at).toBe('2035-12-30T00:00:00.000Z');
  });
});

function adminApp(state: AdminState): Hono {
  const app = new Hono();
  app.route('/', createAdminRoutes(() => state));
  app.onError((err, c) => {
    const { status, body, headers } = errorBody(err);
    return c.json(body, status as 500, headers);
  });
  return app;
}

describe('admin token from a secret file', () => {
  const state = (token: string): AdminState => ({ token, registry: testRegistry(), experiments: new Map(), counters: new AssignmentCounters() });

  it('a configured token with a trailing newline still accepts its bearer token (was 401 for everyone)', async () => {
    const app = adminApp(state('s3cret\n'));
    expect((await app.request('/admin/templates', { headers: { authorization: 'Bearer s3cret' } })).status).toBe(200);
    const wrong = await app.request('/admin/templates', { headers: { authorization: 'Bearer s3cre' } });
    expect(wrong.status).toBe(401);
    expect(((await wrong.json()) as { error: { code: string } }).error.code).toBe('unauthorized');
  });

  it('a whitespace-only token turns the admin API off, like an empty one', async () => {
    const res = await adminApp(state(' \n')).request('/admin/templates', { headers: { authorization: 'Bearer x' } });
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { type: string } }).error.type).toBe('not_found_error');
  });
});

describe('templates directory', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = undefined;
  });

  it('hidden files (macOS ._ copies, editor locks) are skipped instead of failing the load', () => {
    dir = mkdtempSync(path.join(tmpdir(), 'promptgate-review-'));
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'greet.yaml'), 'id: greet\nversions:\n  - version: "1.0.0"\n    messages: [{role: system, content: Hello.}]\n');
    // AppleDouble resource fork: binary, not YAML.
    writeFileSync(path.join(dir, '._greet.yaml'), Buffer.from([0x00, 0x05, 0x16, 0x07, 0x00, 0x02, 0x00, 0x00, 0x4d, 0x61, 0x63, 0x20, 0x4f, 0x53, 0x20, 0x58]));
    writeFileSync(path.join(dir, '.#greet.yaml'), 'id: other\n');
    const { registry, issues } = loadTemplateRegistry(dir);
    expect(issues).toEqual([]);
    expect(registry.list().map((t) => t.id)).toEqual(['greet']);
  });
});
