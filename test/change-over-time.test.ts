/**
 * Change over time on the real gateway: hot reload of the config file and the templates
 * directory (rename-saves, in-place edits, truncation, delete/recreate, ConfigMap symlink
 * swaps, rapid edits), reloads under in-flight streams, experiments across time, and the
 * admin API after reloads.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync, cpSync } from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { request } from 'undici';
import { bucketOf } from '../src/experiments/hash.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';

let upstream: MockUpstream;
let upstream2: MockUpstream;
const gateways: TestGateway[] = [];

beforeAll(async () => {
  upstream = await startMockUpstream();
  upstream2 = await startMockUpstream();
});
afterAll(async () => {
  await upstream.close();
  await upstream2.close();
});
afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  await Promise.all(gateways.splice(0).map((g) => g.close()));
  upstream.requests.length = 0;
  upstream2.requests.length = 0;
});

const TEMPLATE = 'config/templates/support-reply.yaml';

const config = (opts: { url?: string; extra?: string; experiment?: string; logging?: string } = {}) => `
server: {host: 127.0.0.1, drain_timeout_ms: 2000}
logging: {level: ${opts.logging ?? 'silent'}, requests: false}
admin: {token: admin-secret}
templates: {dir: templates}
upstreams: [{name: mock, base_url: "${opts.url ?? upstream.url}", breaker: {failures: 0}}]
routing: {default: [mock]}
bindings:
  - {model: support-bot, experiment: support-tone}
experiments:
  - id: support-tone
    template: support-reply
${opts.experiment ?? `    variants: [{name: control, version: 1.0.0, weight: 50}, {name: warm, version: 1.1.0, weight: 50}]
    start: 2020-01-01T00:00:00Z
    end: 2099-01-01T00:00:00Z`}
${opts.extra ?? ''}`;

async function gateway(yaml = config()): Promise<TestGateway> {
  const gw = await startTestGateway(yaml, { templates: [TEMPLATE] });
  gateways.push(gw);
  return gw;
}

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not met in time');
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function chat(gw: TestGateway, body: object, headers: Record<string, string> = {}) {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], ...body }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, headers: res.headers, text };
}

async function admin(gw: TestGateway, p: string) {
  const res = await request(`${gw.url}${p}`, { headers: { authorization: 'Bearer admin-secret' } });
  const text = await res.body.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, json, text };
}

/** Captures the gateway's JSON log lines (stdout). */
function captureLogs(): any[] {
  const lines: any[] = [];
  const write = process.stdout.write.bind(process.stdout);
  vi.spyOn(process.stdout, 'write').mockImplementation(((chunk: any, ...rest: any[]) => {
    const s = String(chunk);
    if (s.startsWith('{')) {
      try {
        lines.push(JSON.parse(s));
        return true;
      } catch {
        // not ours
      }
    }
    return write(chunk, ...rest);
  }) as any);
  return lines;
}

describe('config file changes', () => {
  it('follows an atomic rename-save', async () => {
    const gw = await gateway();
    const tmp = `${gw.configFile}.tmp`;
    writeFileSync(tmp, config({ extra: 'pricing: {support-x: {input: 1, output: 1}}' }).replace('weight: 50}, {name: warm, version: 1.1.0, weight: 50}', 'weight: 1}, {name: warm, version: 1.1.0, weight: 99}'));
    renameSync(tmp, gw.configFile);
    await waitFor(() => gw.holder.current.generation === 2);
    expect(gw.holder.current.config.prompts.experiments.get('support-tone')!.variants[0].to).toBe(100);
  });

  it('rejects a truncated file with a clear log line and keeps the old config; the full write then applies', async () => {
    const gw = await gateway(config({ logging: 'info' }));
    const logs = captureLogs();
    const full = readFileSync(gw.configFile, 'utf8');
    writeFileSync(gw.configFile, '');
    await waitFor(() => logs.some((l) => l.msg?.includes('rejected')));
    expect(gw.holder.current.generation).toBe(1);
    const rejected = logs.find((l) => l.msg?.includes('rejected'));
    expect(rejected.level).toBe('error');
    // Says what happened (a truncated file reads as empty), not "upstreams: required".
    expect(rejected.errors).toEqual(['gateway.config.yaml: the file is empty']);
    expect((await chat(gw, { model: 'support-bot', user: 'u1' })).status).toBe(200);

    // Half-written: cut mid-way.
    writeFileSync(gw.configFile, full.slice(0, full.indexOf('routing')));
    await sleep(600);
    expect(gw.holder.current.generation).toBe(1);

    writeFileSync(gw.configFile, full);
    await waitFor(() => gw.holder.current.generation === 2);
  });

  it('survives the file being deleted, then recreated', async () => {
    const gw = await gateway();
    const full = readFileSync(gw.configFile, 'utf8');
    unlinkSync(gw.configFile);
    await sleep(500);
    expect(gw.holder.current.generation).toBe(1);
    expect((await chat(gw, { model: 'support-bot', user: 'u1' })).status).toBe(200);
    writeFileSync(gw.configFile, full.replace('drain_timeout_ms: 2000', 'drain_timeout_ms: 1999'));
    await waitFor(() => gw.holder.current.generation === 2);
    expect(gw.holder.current.config.server.drain_timeout_ms).toBe(1999);
  });

  it('debounces rapid successive edits: the last one wins', async () => {
    const gw = await gateway();
    const full = readFileSync(gw.configFile, 'utf8');
    for (let i = 1; i <= 8; i++) {
      writeFileSync(gw.configFile, full.replace('drain_timeout_ms: 2000', `drain_timeout_ms: ${2000 + i}`));
      await sleep(20);
    }
    await waitFor(() => gw.holder.current.config.server.drain_timeout_ms === 2008);
    await sleep(400);
    expect(gw.holder.current.config.server.drain_timeout_ms).toBe(2008);
    expect(gw.holder.current.generation).toBeLessThanOrEqual(3);
  });

  it('follows ConfigMap-style ..data symlink flips of the config and the templates volumes', async () => {
    // kubelet layout per volume: vol/..v1/<files>, vol/..data -> ..v1, vol/<file> -> ..data/<file>;
    // an update writes vol/..v2 and renames a new ..data symlink over the old one.
    const root = (await gateway()).dir;
    const volume = (name: string, files: Record<string, string>) => {
      const vol = path.join(root, name);
      mkdirSync(path.join(vol, '..v1'), { recursive: true });
      for (const [f, text] of Object.entries(files)) {
        writeFileSync(path.join(vol, '..v1', f), text);
        symlinkSync(`..data/${f}`, path.join(vol, f));
      }
      symlinkSync('..v1', path.join(vol, '..data'));
      return (v: string, next: Record<string, string>) => {
        mkdirSync(path.join(vol, v));
        for (const [f, text] of Object.entries(next)) writeFileSync(path.join(vol, v, f), text);
        symlinkSync(v, path.join(vol, '..data_tmp'));
        renameSync(path.join(vol, '..data_tmp'), path.join(vol, '..data'));
      };
    };
    const cfg = config().replace('templates: {dir: templates}', 'templates: {dir: ../cm-templates}');
    const flipConfig = volume('cm-config', { 'gateway.config.yaml': cfg });
    const original = readFileSync(TEMPLATE, 'utf8');
    const flipTemplates = volume('cm-templates', { 'support-reply.yaml': original });
    const { startGateway } = await import('../src/server.js');
    const gw = await startGateway({ file: path.join(root, 'cm-config', 'gateway.config.yaml'), port: 0, handleSignals: false });
    gateways.push({ ...gw, url: `http://127.0.0.1:${gw.port}`, dir: root, configFile: '', close: () => gw.shutdown('test') });
    const systemPrompt = () => gw.holder.current.config.prompts.registry.resolve('support-reply@1.0.0')!.messages[0].content;

    flipTemplates('..v2', { 'support-reply.yaml': original.replace('You are the customer support assistant of', 'FLIPPED assistant of') });
    await waitFor(() => systemPrompt().includes('FLIPPED'));
    flipConfig('..v2', { 'gateway.config.yaml': cfg.replace('drain_timeout_ms: 2000', 'drain_timeout_ms: 1500') });
    await waitFor(() => gw.holder.current.config.server.drain_timeout_ms === 1500);
    flipTemplates('..v3', { 'support-reply.yaml': original.replace('You are the customer support assistant of', 'AGAIN assistant of') });
    await waitFor(() => systemPrompt().includes('AGAIN'));
  });
});

describe('templates directory changes', () => {
  it('sees a template file added, edited and removed', async () => {
    const gw = await gateway();
    const extra = path.join(gw.dir, 'templates', 'other.yaml');
    writeFileSync(extra, readFileSync(TEMPLATE, 'utf8').replace('id: support-reply', 'id: other'));
    await waitFor(async () => (await admin(gw, '/admin/templates/other')).status === 200);
    writeFileSync(extra, readFileSync(TEMPLATE, 'utf8').replace('id: support-reply', 'id: other').replace('name: Support reply', 'name: Other one'));
    await waitFor(async () => (await admin(gw, '/admin/templates/other')).json?.name === 'Other one');
    unlinkSync(extra);
    await waitFor(async () => (await admin(gw, '/admin/templates/other')).status === 404);
  });

  it('rejects a template file caught empty (mid-write) with a clear message, then applies it once written', async () => {
    const gw = await gateway(config({ logging: 'info' }));
    const logs = captureLogs();
    const file = path.join(gw.dir, 'templates', 'other.yaml');
    writeFileSync(file, '');
    await waitFor(() => logs.some((l) => l.msg?.includes('rejected')));
    expect(logs.find((l) => l.msg?.includes('rejected')).errors).toEqual(['templates/other.yaml: the file is empty']);
    expect(gw.holder.current.generation).toBe(1);
    writeFileSync(file, readFileSync(TEMPLATE, 'utf8').replace('id: support-reply', 'id: other'));
    await waitFor(() => gw.holder.current.generation === 2);
  });

  it('rejects removing a template an experiment uses, and keeps serving it', async () => {
    const gw = await gateway();
    unlinkSync(path.join(gw.dir, 'templates', 'support-reply.yaml'));
    await sleep(600);
    expect(gw.holder.current.generation).toBe(1);
    expect((await chat(gw, { model: 'support-bot', user: 'u1' })).status).toBe(200);
  });

  it('keeps watching the templates directory after it is deleted and recreated', async () => {
    const gw = await gateway();
    const tdir = path.join(gw.dir, 'templates');
    rmSync(tdir, { recursive: true });
    await sleep(500);
    expect(gw.holder.current.generation).toBe(1);
    mkdirSync(tdir);
    cpSync(TEMPLATE, path.join(tdir, 'support-reply.yaml'));
    await waitFor(() => gw.holder.current.generation === 2);
    // A later edit inside the recreated directory is still seen.
    writeFileSync(path.join(tdir, 'support-reply.yaml'), readFileSync(TEMPLATE, 'utf8').replace('You are the customer support assistant of', 'RECREATED assistant of'));
    await waitFor(() => gw.holder.current.config.prompts.registry.resolve('support-reply@1.0.0')!.messages[0].content.includes('RECREATED'));
  });
  it('follows a templates directory that is a symlink switched to another release', async () => {
    const gw = await gateway();
    const original = readFileSync(TEMPLATE, 'utf8');
    for (const r of ['r1', 'r2']) {
      mkdirSync(path.join(gw.dir, 'releases', r), { recursive: true });
      writeFileSync(path.join(gw.dir, 'releases', r, 'support-reply.yaml'), original.replace('You are the customer support assistant of', `${r.toUpperCase()} assistant of`));
    }
    const systemPrompt = () => gw.holder.current.config.prompts.registry.resolve('support-reply@1.0.0')!.messages[0].content;
    const switchTo = (r: string) => {
      symlinkSync(`releases/${r}`, path.join(gw.dir, 'templates.tmp'));
      rmSync(path.join(gw.dir, 'templates'), { recursive: true, force: true });
      renameSync(path.join(gw.dir, 'templates.tmp'), path.join(gw.dir, 'templates'));
    };
    switchTo('r1');
    await waitFor(() => systemPrompt().includes('R1'));
    switchTo('r2');
    await waitFor(() => systemPrompt().includes('R2'));
    // An edit inside the release now in use is seen.
    writeFileSync(path.join(gw.dir, 'releases', 'r2', 'support-reply.yaml'), original.replace('You are the customer support assistant of', 'R2-EDITED assistant of'));
    await waitFor(() => systemPrompt().includes('R2-EDITED'));
  });
});

describe('reload under in-flight requests', () => {
  it('an in-flight stream keeps its template version and upstream; new requests get the new ones', async () => {
    const gw = await gateway();
    const body = JSON.stringify({ model: 'x', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    const headers = { 'content-type': 'application/json', 'x-promptgate-template': 'support-reply@1.0.0', 'x-mock-chunk-delay-ms': '150' };
    const inflight = request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body });
    await waitFor(() => upstream.requests.length === 1);

    // New upstream and a new template text, swapped in while the stream runs.
    const original = readFileSync(TEMPLATE, 'utf8');
    writeFileSync(path.join(gw.dir, 'templates', 'support-reply.yaml'), original.replace('You are the customer support assistant of', 'NEW assistant of'));
    writeFileSync(gw.configFile, config({ url: upstream2.url }));
    await waitFor(() => gw.holder.current.generation >= 2 && gw.holder.current.config.upstreams.get('mock')!.config.base_url === upstream2.url);

    const fresh = await chat(gw, { model: 'x' }, { 'x-promptgate-template': 'support-reply@1.0.0' });
    expect(fresh.status).toBe(200);
    expect(upstream2.requests).toHaveLength(1);
    expect(upstream2.requests[0].body.messages[0].content).toContain('NEW assistant of');

    const res = await inflight;
    const text = await res.body.text();
    expect(res.statusCode).toBe(200);
    expect(text).toContain('[DONE]');
    expect(text).not.toContain('"error"');
    expect(upstream.requests).toHaveLength(1);
    expect(upstream.requests[0].body.messages[0].content).toContain('customer support assistant of');
    expect(upstream.closed).toBe(0);
  });

  it('a retired upstream pool is closed only after its in-flight requests finish', async () => {
    const { RuntimeHolder } = await import('../src/runtime.js');
    const { parseConfig } = await import('../src/config/load.js');
    const file = path.join(process.cwd(), 'x.yaml');
    const cfg = (url: string, connections: number) =>
      parseConfig(`upstreams: [{name: mock, base_url: "${url}", connections: ${connections}}]\nrouting: {default: [mock]}\ntemplates: {dir: test/fixtures/templates}\n`, { file });
    const holder = new RuntimeHolder(cfg(upstream.url, 4));
    const old = holder.current.upstreams.get('mock')!;
    const pending = old.request({
      method: 'POST',
      path: '/chat/completions',
      headers: { 'content-type': 'application/json', 'x-mock-chunk-delay-ms': '100' },
      body: Buffer.from(JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] })),
      signal: new AbortController().signal,
    });
    const res = await pending;
    // Pool size changes: a new client; the old one retires with a grace of 10 ms.
    holder.apply(cfg(upstream.url, 8), 10);
    expect(holder.current.upstreams.get('mock')).not.toBe(old);
    let text = '';
    for await (const chunk of res.body) text += Buffer.from(chunk).toString();
    expect(text).toContain('[DONE]');
    expect(upstream.closed).toBe(0);
    await holder.close();
  });
});

describe('retiring replaced upstream pools', () => {
  const file = path.join(process.cwd(), 'x.yaml');
  const cfg = async (key: string) => {
    const { parseConfig } = await import('../src/config/load.js');
    return parseConfig(
      `upstreams: [{name: mock, base_url: "${upstream.url}", api_key: ${key}, timeout: {total_ms: 600}}]\nrouting: {default: [mock]}\ntemplates: {dir: test/fixtures/templates}\n`,
      { file, env: {} },
    );
  };
  const call = (up: { request: (r: any) => Promise<any> }) =>
    up.request({
      method: 'POST',
      path: '/chat/completions',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] })),
      signal: new AbortController().signal,
    });

  it('keeps a replaced pool open for the old total_ms, so an in-flight request can still retry on it', async () => {
    const { RuntimeHolder } = await import('../src/runtime.js');
    const holder = new RuntimeHolder(await cfg('sk-old'));
    const old = holder.current.upstreams.get('mock')!;
    holder.apply(await cfg('sk-new'), 10); // a key rotation: a new client
    expect(holder.current.upstreams.get('mock')).not.toBe(old);
    await sleep(150);
    // A request of the old runtime retrying now, well within its total_ms.
    const res = await call(old);
    expect(res.status).toBe(200);
    await res.dump();
    // Once every request of the old config is past its deadline, the pool is closed.
    await sleep(700);
    await expect(call(old)).rejects.toThrow();
    await holder.close();
  });
});

describe('experiments across time', () => {
  const START = Date.parse('2026-11-20T00:00:00Z');
  const END = Date.parse('2026-11-25T00:00:00Z');
  const HOUR = 3_600_000;
  const scheduled = (rollout = '') =>
    config({
      experiment: `    variants: [{name: control, version: 1.0.0, weight: 34}, {name: warm, version: 1.1.0, weight: 33}, {name: warm2, version: 1.1.0, weight: 33}]
    start: 2026-11-20T00:00:00Z
    end: 2026-11-25T00:00:00Z
${rollout}`,
    });
  const at = (ms: number) => vi.setSystemTime(new Date(ms));
  const assignOf = async (gw: TestGateway, user: string) => (await admin(gw, `/admin/assign?experiment=support-tone&user=${encodeURIComponent(user)}`)).json;
  const served = async (gw: TestGateway, user: string) => String((await chat(gw, { model: 'support-bot', user })).headers['x-promptgate-variant']);

  it('start is inclusive and end exclusive, through the gateway and /admin/assign', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const gw = await gateway(scheduled());
    // A user outside the baseline range.
    const user = Array.from({ length: 100 }, (_, i) => `u${i}`).find((u) => bucketOf('support-tone', u) >= 3400)!;
    const expected = bucketOf('support-tone', user) < 6700 ? 'warm' : 'warm2';
    const cases: [number, string, string][] = [
      [START - 1, 'control', 'outside_schedule'],
      [START, expected, 'assigned'],
      [END - 1, expected, 'assigned'],
      [END, 'control', 'outside_schedule'],
    ];
    for (const [t, variant, reason] of cases) {
      at(t);
      expect(await served(gw, user), new Date(t).toISOString()).toBe(variant);
      expect(await assignOf(gw, user)).toMatchObject({ variant, reason });
    }
    const summary = (await admin(gw, '/admin/experiments')).json.data[0];
    expect(summary.active).toBe(false);
  });

  it('rollout stages advance with time; a user only ever goes from baseline to their one variant', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const gw = await gateway(scheduled('    rollout: {stages: [10, 50, 100], every: 1h}'));
    const users = Array.from({ length: 60 }, (_, i) => `user-${i}`);
    const history = new Map<string, string[]>(users.map((u) => [u, []]));
    const times = [START, START + HOUR - 1, START + HOUR, START + 2 * HOUR - 1, START + 2 * HOUR, START + 50 * HOUR];
    const stages: number[] = [];
    for (const t of times) {
      at(t);
      stages.push((await admin(gw, '/admin/experiments/support-tone')).json.rollout_stage.percent);
      for (const u of users) history.get(u)!.push(await served(gw, u));
    }
    expect(stages).toEqual([10, 10, 50, 50, 100, 100]);
    for (const [u, h] of history) {
      const first = h.findIndex((v) => v !== 'control');
      if (first < 0) continue;
      expect(new Set(h.slice(first)).size, `${u}: ${h.join(' ')}`).toBe(1);
    }
    // At the last stage everyone has their full assignment.
    for (const u of users) {
      const b = bucketOf('support-tone', u);
      expect(history.get(u)!.at(-1)).toBe(b < 3400 ? 'control' : b < 6700 ? 'warm' : 'warm2');
    }
  });
});

describe('admin API edge cases (real gateway)', () => {
  it('answers bad, missing and odd parameters with OpenAI-shaped 4xx, never a 500', async () => {
    const gw = await gateway();
    const paths = [
      '/admin/assign',
      '/admin/assign?experiment=',
      '/admin/assign?user=u1',
      '/admin/assign?experiment=support-tone',
      '/admin/assign?experiment=nope&user=u1',
      '/admin/assign?experiment=support%2Dtone&user=%E0%A4%A',
      '/admin/assign?experiment=%E0%A4%A&user=u1',
      '/admin/assign?experiment=support-tone&experiment=x&user=u1',
      '/admin/assign?experiment[]=support-tone&user=u1',
      '/admin/assign?experiment=__proto__&user=u1',
      '/admin/assign?experiment=constructor&user=u1',
      '/admin/templates/nope',
      '/admin/templates/__proto__',
      '/admin/templates/%E0%A4%A',
      '/admin/templates/%',
      '/admin/templates/a%2Fb',
      '/admin/templates/support-reply/extra',
      '/admin/templates/',
      '/admin/experiments/nope',
      '/admin/experiments/%ZZ',
      '/admin/experiments/hasOwnProperty',
      '/admin/nope',
      '/admin',
    ];
    for (const p of paths) {
      const res = await admin(gw, p);
      expect(res.status, `${p}: ${res.text}`).toBeGreaterThanOrEqual(200);
      expect(res.status, `${p}: ${res.text}`).toBeLessThan(500);
      if (res.status >= 400) {
        expect(res.json?.error, `${p}: ${res.text}`).toMatchObject({ message: expect.any(String), type: expect.any(String) });
        expect(Object.keys(res.json.error).sort(), p).toEqual(['code', 'message', 'param', 'type']);
      }
    }
  });

  it('decodes URL-encoded ids', async () => {
    const gw = await gateway();
    expect((await admin(gw, '/admin/templates/support%2Dreply')).status).toBe(200);
    expect((await admin(gw, '/admin/experiments/support%2Dtone')).status).toBe(200);
    const a = await admin(gw, '/admin/assign?experiment=support%2Dtone&user=%20al%C3%AFce%40example.com%20');
    expect(a.json).toMatchObject({ bucket: bucketOf('support-tone', 'alïce@example.com') });
  });

  it('assignment counts after a reload: kept by experiment and variant name', async () => {
    const gw = await gateway();
    const users = ['a', 'b', 'c', 'd'];
    const servedBefore = new Map<string, string>();
    for (const u of users) servedBefore.set(u, (await chat(gw, { model: 'support-bot', user: u })).headers['x-promptgate-variant'] as string);
    await chat(gw, { model: 'support-bot' });
    const before = (await admin(gw, '/admin/experiments/support-tone')).json.counts;
    expect(before.totals).toMatchObject({ assigned: 4, no_user: 1 });
    const warm = [...servedBefore.values()].filter((v) => v === 'warm').length;
    expect(before.variants.warm.assigned).toBe(warm);

    // A variant renamed on reload: its counts stay under the old name; the new name starts at zero.
    writeFileSync(gw.configFile, readFileSync(gw.configFile, 'utf8').replace('name: warm,', 'name: friendly,'));
    await waitFor(() => gw.holder.current.generation === 2);
    await chat(gw, { model: 'support-bot', user: 'a' });
    const after = (await admin(gw, '/admin/experiments/support-tone')).json;
    expect(after.variants.map((v: any) => v.name)).toEqual(['control', 'friendly']);
    expect(Object.keys(after.counts.variants)).toEqual(['control', 'friendly', 'warm']);
    expect(after.counts.variants.warm.assigned).toBe(warm);
    expect(after.counts.totals.assigned).toBe(5);
  });
});

describe('experiment weights changed on reload', () => {
  const variantOf = async (gw: TestGateway, user: string) => (await chat(gw, { model: 'support-bot', user })).headers['x-promptgate-variant'];
  const users = Array.from({ length: 200 }, (_, i) => `user-${i}`);
  const expectedVariant = (user: string, bounds: [string, number][]) => bounds.find(([, to]) => bucketOf('support-tone', user) < to)![0];

  it('re-evaluates every user against the new ranges: between two variants, users only cross the moved boundary', async () => {
    const gw = await gateway();
    // 50/50 -> 30/70: the boundary moves from 5000 to 3000; only control users in [3000, 5000) move, to warm.
    writeFileSync(gw.configFile, readFileSync(gw.configFile, 'utf8').replace('weight: 50}, {name: warm, version: 1.1.0, weight: 50}', 'weight: 30}, {name: warm, version: 1.1.0, weight: 70}'));
    await waitFor(() => gw.holder.current.generation === 2);
    for (const u of users.slice(0, 40)) expect(await variantOf(gw, u)).toBe(expectedVariant(u, [['control', 3000], ['warm', 10000]]));
    const a = (await admin(gw, '/admin/experiments/support-tone')).json;
    expect(a.variants.map((v: any) => v.buckets)).toEqual([[0, 3000], [3000, 10000]]);
  });

  it('with three or more variants a reweighting can move users from one non-baseline variant to another', async () => {
    const three = (w: [number, number, number]) =>
      config({
        experiment: `    variants: [{name: control, version: 1.0.0, weight: ${w[0]}}, {name: warm, version: 1.1.0, weight: ${w[1]}}, {name: warm2, version: 1.1.0, weight: ${w[2]}}]`,
      });
    const gw = await gateway(three([40, 30, 30]));
    // Ranges [0,4000) [4000,7000) [7000,10000) -> [0,4000) [4000,5000) [5000,10000): warm users in [5000,7000) become warm2.
    const mover = users.find((u) => bucketOf('support-tone', u) >= 5000 && bucketOf('support-tone', u) < 7000)!;
    expect(await variantOf(gw, mover)).toBe('warm');
    writeFileSync(gw.configFile, three([40, 10, 50]));
    await waitFor(() => gw.holder.current.generation === 2);
    expect(await variantOf(gw, mover)).toBe('warm2');
  });
});
