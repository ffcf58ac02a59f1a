/**
 * "A platform engineer's first hour": README.md followed from the top, its commands and
 * examples checked against the shipped config and the CLI. The shipped gateway.config.yaml
 * runs in-process on 127.0.0.1, port 0 (a copy next to a link to config/, so templates.dir
 * and the knowledge dir resolve as in the checkout); CLI runs are real processes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync as mkdtempFs, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type RunningGateway } from '../src/server.js';

const README = readFileSync('README.md', 'utf8');

/** Temp dirs of this file, removed when it ends (the links in them point into the repo: not followed). */
const made: string[] = [];
function mkdtempSync(prefix: string): string {
  const dir = mkdtempFs(prefix);
  made.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of made) rmSync(dir, { recursive: true, force: true });
});
/** `node --import tsx src/main.ts`, by absolute paths, so it runs from any directory. */
const CLI = ['--import', pathToFileURL(path.resolve('node_modules/tsx/dist/loader.mjs')).href, path.resolve('src/main.ts')];

function cli(args: string[], env: Record<string, string | undefined> = {}, cwd?: string) {
  return spawnSync(process.execPath, [...CLI, ...args], {
    encoding: 'utf8',
    timeout: 20_000,
    cwd: cwd ?? process.cwd(),
    env: { ...process.env, OPENAI_API_KEY: '', PROMPTGATE_CONFIG: '', ...env },
  });
}

/** The README's text from `start` (exact) to the next `end` after it. */
function between(start: string, end: string, from = 0): string {
  const i = README.indexOf(start, from);
  expect(i, `README: "${start}"`).toBeGreaterThanOrEqual(0);
  const j = README.indexOf(end, i + start.length);
  expect(j, `README: "${end}" after "${start}"`).toBeGreaterThan(i);
  return README.slice(i + start.length, j);
}

/** The first fenced block of `lang` after `anchor`. */
function blockAfter(anchor: string, lang: string): string {
  const i = README.indexOf(anchor);
  expect(i, `README: "${anchor}"`).toBeGreaterThanOrEqual(0);
  return between('```' + lang + '\n', '```', i);
}

/** The shipped config in a temp dir (host 127.0.0.1), with config/ linked beside it. */
function shippedConfigDir(): { dir: string; file: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'pg-newcomer-'));
  symlinkSync(path.resolve('config'), path.join(dir, 'config'));
  const file = path.join(dir, 'gateway.config.yaml');
  const shipped = readFileSync('gateway.config.yaml', 'utf8');
  expect(shipped).toContain('  host: 0.0.0.0\n');
  writeFileSync(file, shipped.replace('  host: 0.0.0.0\n', '  host: 127.0.0.1\n'));
  return { dir, file };
}

/** The body of a README `curl ... -d '<json>'`. */
function curlBodies(text: string): unknown[] {
  return [...text.matchAll(/-d '(\{.*?\})'/g)].map((m) => JSON.parse(m[1]));
}

describe('the shipped config, as the README runs it (no key, no network)', () => {
  const saved = { ...process.env };
  let gw: RunningGateway;
  let url: string;
  let file: string;
  beforeAll(async () => {
    process.env.OPENAI_API_KEY = '';
    delete process.env.OPENAI_BASE_URL;
    process.env.PROMPTGATE_ADMIN_TOKEN = 's3cret'; // the README's admin example
    process.env.SUPPORT_API_URL = 'http://127.0.0.1:9'; // nothing of another test's demo
    ({ file } = shippedConfigDir());
    gw = await startGateway({ file, port: 0, handleSignals: false });
    url = `http://127.0.0.1:${gw.port}`;
  });
  afterAll(async () => {
    await gw?.shutdown('test');
    process.env = saved;
  });

  const post = (p: string, body: unknown) => fetch(url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('/healthz and /readyz answer the bodies the README shows at the top', async () => {
    const top = between('`upstreams` lists where the routes', '\n\n');
    expect(top).toContain('`{"status":"ok"}`');
    expect(top).toContain('`{"status":"ready","config_generation":1}`');
    expect(await (await fetch(`${url}/healthz`)).json()).toEqual({ status: 'ok' });
    expect(await (await fetch(`${url}/readyz`)).json()).toEqual({ status: 'ready', config_generation: 1 });
  });

  it('both curl examples at the top are accepted; the A/B one gets the x-promptgate-* headers; its request id takes the README feedback example', async () => {
    const bodies = curlBodies(between('The shipped config also shows the two main features', '## Contents'));
    expect(bodies).toHaveLength(2);
    const ab = await post('/v1/chat/completions', bodies[0]);
    expect(ab.status).toBe(200);
    await ab.text();
    for (const h of ['x-promptgate-request-id', 'x-promptgate-template', 'x-promptgate-template-version', 'x-promptgate-experiment', 'x-promptgate-variant', 'x-promptgate-injection']) {
      expect(ab.headers.get(h), h).toBeTruthy();
    }
    expect(ab.headers.get('x-promptgate-template')).toBe('support-reply');
    const ctx = await post('/v1/chat/completions', bodies[1]);
    expect(ctx.status).toBe(200);
    expect(ctx.headers.get('x-promptgate-template')).toBe('support-context');
    expect((await ctx.json()).object).toBe('chat.completion');

    // Feedback: the README's body with the A/B answer's id; the answer has the shape shown.
    const feedback = between('### Feedback', '## Context injection');
    const [example] = curlBodies(feedback) as { request_id: string; metric: string; value: number }[];
    const requestId = ab.headers.get('x-promptgate-request-id')!;
    const fb = await post('/v1/feedback', { ...example, request_id: requestId });
    expect(fb.status).toBe(200);
    const shown = JSON.parse(/# (\{"status":"recorded".*\})/.exec(feedback)![1].replace('5ad326d7-…', requestId));
    const got = await fb.json();
    expect(Object.keys(got)).toEqual(Object.keys(shown));
    expect(got).toMatchObject({ status: 'recorded', request_id: requestId, metric: 'feedback.thumbs_up', experiment: 'support-tone' });
    expect(got.variant).toBe(ab.headers.get('x-promptgate-variant'));
    // The placeholder as written: 404 not_found, as the README says.
    const placeholder = await post('/v1/feedback', example);
    expect(placeholder.status).toBe(404);
    expect((await placeholder.json()).error.code).toBe('not_found');
  });

  it('the admin example: /admin/assign with the README token answers the README line; without it 401 with www-authenticate', async () => {
    const admin = between('### Admin API', '### Feedback');
    const query = /curl -s '(localhost:8080\/admin\/assign\?[^']+)' -H 'authorization: Bearer (\w+)'/.exec(admin)!;
    expect(query[2]).toBe(process.env.PROMPTGATE_ADMIN_TOKEN);
    const shown = JSON.parse(/# (\{"experiment".*\})/.exec(admin)![1]);
    const target = query[1].replace('localhost:8080', url);
    const res = await fetch(target, { headers: { authorization: `Bearer ${query[2]}` } });
    expect(res.status).toBe(200);
    const got = await res.json();
    expect(got.bucket).toBe(shown.bucket);
    expect(got.rollout_bucket).toBe(shown.rollout_bucket);
    if (got.reason === 'assigned') expect(got).toEqual(shown);
    else expect(got).toMatchObject({ reason: 'outside_schedule', variant: 'control' }); // the shipped experiment's dates, as the README says
    const anonymous = await fetch(target);
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get('www-authenticate')).toBe('Bearer realm="promptgate-admin"');
    expect((await anonymous.json()).error.code).toBe('unauthorized');
    const wrong = await fetch(target, { headers: { authorization: 'Bearer nope' } });
    expect(wrong.status).toBe(401);
    await wrong.text();
  });

  // Was: `apiKey: process.env.OPENAI_API_KEY ?? 'unused'`, which passes an empty OPENAI_API_KEY
  // (the shipped config's "no key" case) to the SDK: "Missing credentials", exit 1.
  it('the openai-node snippet of "Point your client at it" runs as an .mjs file against the gateway, also with OPENAI_API_KEY set but empty', async () => {
    const snippet = blockAfter('## Point your client at it', 'ts');
    expect(snippet).toContain("baseURL: 'http://127.0.0.1:8080/v1'");
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-newcomer-snippet-'));
    symlinkSync(path.resolve('node_modules'), path.join(dir, 'node_modules'));
    writeFileSync(path.join(dir, 'snippet.mjs'), snippet.replace('http://127.0.0.1:8080/v1', `${url}/v1`));
    const child = spawn(process.execPath, ['snippet.mjs'], { cwd: dir, env: { ...process.env, OPENAI_API_KEY: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    clearTimeout(killer);
    expect(err).toBe('');
    expect(code).toBe(0);
    expect(out).toMatch(/prompt_tokens: \d+/); // reply.usage
    expect(out).toMatch(/req_\w+/); // reply._request_id
  }, 30_000);

  it('editing the config file reloads it: /readyz shows the next config_generation', async () => {
    const before = (await (await fetch(`${url}/readyz`)).json()).config_generation;
    writeFileSync(file, readFileSync(file, 'utf8').replace('drain_timeout_ms: 25000', 'drain_timeout_ms: 20000'));
    const deadline = Date.now() + 10_000;
    let generation = before;
    while (generation === before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      generation = (await (await fetch(`${url}/readyz`)).json()).config_generation;
    }
    expect(generation).toBe(before + 1);
  });
});

describe('README config snippets pass `promptgate check`', () => {
  it('the template file of "Template files", alone in templates.dir', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-newcomer-tpl-'));
    const template = blockAfter('### Template files', 'yaml');
    expect(template).toMatch(/^id: support-reply\b/);
    mkdirSync(path.join(dir, 'templates'));
    writeFileSync(path.join(dir, 'templates', 'support-reply.yaml'), template);
    writeFileSync(path.join(dir, 'gateway.config.yaml'), 'upstreams:\n  - {name: sim, simulate: {}}\nrouting: {default: [sim]}\ntemplates: {dir: templates}\n');
    const run = cli(['check', '--config', 'gateway.config.yaml'], {}, dir);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it('the "Experiments" block, over the shipped templates', () => {
    const { dir } = shippedConfigDir();
    const block = blockAfter('### Experiments', 'yaml');
    writeFileSync(path.join(dir, 'x.yaml'), `upstreams:\n  - {name: sim, simulate: {}}\nrouting: {default: [sim]}\n${block}`);
    const run = cli(['check', '--config', 'x.yaml'], {}, dir);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^x\.yaml: OK \(1 upstream, routes to sim\)\n/);
    expect(run.status).toBe(0);
  });

  it('the context "Configuration" block, with its two variables set', () => {
    const { dir } = shippedConfigDir();
    const block = blockAfter('### Configuration (`gateway.config.yaml`)', 'yaml');
    writeFileSync(path.join(dir, 'x.yaml'), `upstreams:\n  - {name: sim, simulate: {}}\nrouting: {default: [sim]}\n${block}`);
    const run = cli(['check', '--config', 'x.yaml'], { CUSTOMERS_URL: 'http://127.0.0.1:9', CUSTOMERS_TOKEN: 't' }, dir);
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });
});

describe('README "CLI"', () => {
  const section = between('\n## CLI\n', '\n## Errors\n');

  it('the bad.yaml shown gives exactly the errors shown, exit 1 (was: a bad.yaml not shown)', () => {
    expect(section).not.toMatch(/\$ npx promptgate/);
    const dir = mkdtempSync(path.join(tmpdir(), 'pg-newcomer-bad-'));
    writeFileSync(path.join(dir, 'bad.yaml'), between('With this `bad.yaml`:\n\n```yaml\n', '```'));
    const transcript = between('```\n$ node dist/main.js check --config bad.yaml\n', '$ echo $?', README.indexOf('With this `bad.yaml`:'));
    const run = cli(['check', '--config', 'bad.yaml'], {}, dir);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(transcript);
    expect(run.status).toBe(1);
  });

  it('`check` with --port is a usage error, exit 2 (was: `check -p my.yaml` checked ./gateway.config.yaml and said OK)', () => {
    expect(section).toContain('`--port` with `check` is a usage error');
    for (const args of [['check', '-p', 'my.yaml'], ['check', '--port', '9000', '--config', 'gateway.config.yaml']]) {
      const run = cli(args);
      expect(run.status).toBe(2);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(/^option --port does not apply to check \(the config file goes after --config\)\nusage:\n {2}promptgate \[serve\]/);
    }
  });

  it('an unknown option is one short line, without parseArgs advice about positionals after `--` (which the CLI rejects)', () => {
    for (const [args, option] of [[['--bogus'], '--bogus'], [['serve', '--bogus=1'], '--bogus'], [['check', '-x'], '-x']] as const) {
      const run = cli([...args]);
      expect(run.status).toBe(2);
      expect(run.stderr.split('\n')[0]).toBe(`unknown option '${option}'`);
      expect(run.stderr).not.toContain('positional');
    }
  });

  it('the shipped config passes `check`, with the note the README quotes at the top', () => {
    const run = cli(['check']);
    expect(run.status).toBe(0);
    expect(run.stdout).toBe('gateway.config.yaml: OK (2 upstreams, routes to simulator)\nnote: upstream "openai" has no API key: its traffic goes to "simulator"\n');
    expect(README).toContain('{"time":"...","level":"info","msg":"upstream \\"openai\\" has no API key: its traffic goes to \\"simulator\\""}');
  });
});

describe('README "Hot reload and shutdown": the log lines of a start and a SIGTERM', () => {
  it('listening (as shown at the top), then draining and stopped, exit 0', async () => {
    const { dir, file } = shippedConfigDir();
    const child = spawn(process.execPath, [...CLI, '--port', '0'], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, OPENAI_API_KEY: '', OPENAI_BASE_URL: '', PROMPTGATE_CONFIG: file, SUPPORT_API_URL: 'http://127.0.0.1:9' },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.once('exit', r));
    try {
      const deadline = Date.now() + 15_000;
      while (!out.includes('"msg":"listening"')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the gateway did not start: ${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      const listening = JSON.parse(out.split('\n').find((l) => l.includes('"msg":"listening"'))!);
      const shown = JSON.parse(between('upstream answers, and the log says so in one line', '```\n\n').split('\n').find((l) => l.includes('"msg":"listening"'))!);
      expect(Object.keys(listening)).toEqual(Object.keys(shown));
      expect(listening.upstreams).toEqual(shown.upstreams);
      expect(listening.host).toBe('127.0.0.1');
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    const msgs = out.trim().split('\n').map((l) => JSON.parse(l).msg as string);
    expect(msgs.slice(-2)).toEqual(['draining', 'stopped']);
    const draining = JSON.parse(out.split('\n').find((l) => l.includes('"msg":"draining"'))!);
    expect(draining).toMatchObject({ reason: 'SIGTERM', inflight: 0, drain_timeout_ms: 25000 });
    const shutdown = between('logged and ignored; the drain goes on.', '### Logs');
    expect(shutdown).toContain('`{"msg":"draining","reason":"SIGTERM","inflight":N,"drain_timeout_ms":25000}`');
    expect(shutdown).toContain('`stopped`');
  }, 30_000);
});
