/**
 * Review (23): config watching and loading.
 *
 * - After a rejected reload, the watch list was the config still serving's: a `templates.dir`
 *   the rejected config named (missing, or holding a bad template) was never watched, so the
 *   edit that fixed it never reloaded.
 * - A symlink switched (`ln -s v2 tmp && mv -T tmp current`) was seen only when it sat
 *   directly in the config file's directory: `config/templates -> ../rel/v1` or
 *   `--config current/gw.yaml` switched to another release kept the old one serving.
 * - Template files were read with `readFileSync(file, 'utf8')`: bytes that are not UTF-8
 *   became U+FFFD in the prompt, a UTF-16 file read as "expected object, received string".
 * - `${KEY:?required}` and a template id defined twice were reported without the YAML path
 *   or line; `simulate.latency_ms` and `chunk_interval_ms` took fractions.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, parseConfig } from '../src/config/load.js';
import { startGateway, type RunningGateway } from '../src/server.js';
import { scrapeMetrics } from './helpers/metrics.js';
import { until } from './helpers/raw-socket.js';

const template = (prompt: string) => `id: t1
versions:
  - version: "1.0.0"
    messages:
      - role: system
        content: "${prompt}"
`;

const config = (templatesDir: string, extra = '') => `
server: {host: 127.0.0.1, drain_timeout_ms: 500}
logging: {level: silent}
templates: {dir: ${templatesDir}}
upstreams:
  - {name: sim, simulate: {latency_ms: 0}}
routing: {default: [sim]}
bindings:
  - {model: bot, template: t1}
${extra}`;

const roots: string[] = [];
const gateways: RunningGateway[] = [];
afterEach(async () => {
  for (const gw of gateways.splice(0)) await gw.shutdown('test');
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

function tempRoot(): string {
  const root = mkdtempSync(path.join(tmpdir(), 'pg-review-23-'));
  roots.push(root);
  return root;
}

function write(file: string, text: string | Buffer): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, text);
}

async function start(file: string): Promise<RunningGateway & { url: string }> {
  const gw = await startGateway({ file, port: 0, handleSignals: false });
  gateways.push(gw);
  return { ...gw, url: `http://127.0.0.1:${gw.port}` };
}

const systemPrompt = (gw: RunningGateway) => gw.holder.current.config.prompts.registry.resolve('t1@1.0.0')?.messages[0].content;

/** `promptgate_config_reloads_total{result="rejected"}`. */
async function rejections(url: string): Promise<number | undefined> {
  return (await scrapeMetrics(url)).one('promptgate_config_reloads_total', { result: 'rejected' });
}

/** `ln -s target tmp && mv -T tmp link`: the atomic switch of a release symlink. */
function switchLink(link: string, target: string): void {
  const tmp = `${link}.tmp`;
  symlinkSync(target, tmp);
  renameSync(tmp, link);
}

describe('after a rejected reload, the directories it named are watched', () => {
  it('reloads once the missing templates directory the rejected config named is created (was: never)', async () => {
    const root = tempRoot();
    const file = path.join(root, 'run', 'gateway.config.yaml');
    write(path.join(root, 'tA', 't1.yaml'), template('A prompt'));
    write(file, config('../tA'));
    const gw = await start(file);
    expect(systemPrompt(gw)).toBe('A prompt');

    writeFileSync(file, config('../tC'));
    await until(async () => (await rejections(gw.url)) === 1);
    write(path.join(root, 'tC', 't1.yaml'), template('C prompt'));
    await until(() => systemPrompt(gw) === 'C prompt');
    expect(gw.holder.current.config.prompts.templatesDir).toBe(path.join(root, 'tC'));
  });

  it('reloads once the bad template in the directory the rejected config named is fixed (was: never)', async () => {
    const root = tempRoot();
    const file = path.join(root, 'run', 'gateway.config.yaml');
    write(path.join(root, 'tA', 't1.yaml'), template('A prompt'));
    write(path.join(root, 'tB', 't1.yaml'), 'id: t1\nversions: nope\n');
    write(file, config('../tA'));
    const gw = await start(file);

    writeFileSync(file, config('../tB'));
    await until(async () => (await rejections(gw.url)) === 1);
    writeFileSync(path.join(root, 'tB', 't1.yaml'), template('B prompt'));
    await until(() => systemPrompt(gw) === 'B prompt');
  });

  it('reloads once the missing knowledge directory the rejected config named is created (was: never)', async () => {
    const root = tempRoot();
    const file = path.join(root, 'run', 'gateway.config.yaml');
    write(path.join(root, 'tA', 't1.yaml'), template('A prompt'));
    write(path.join(root, 'kA', 'a.md'), 'Returns take 30 days.\n');
    const withKnowledge = (dir: string) => config('../tA', `context:\n  builders:\n    - {name: kb, kind: knowledge, dir: ${dir}}\n`);
    write(file, withKnowledge('../kA'));
    const gw = await start(file);

    writeFileSync(file, withKnowledge('../kC'));
    await until(async () => (await rejections(gw.url)) === 1);
    write(path.join(root, 'kC', 'c.md'), 'Shipping takes 2 days.\n');
    await until(() => gw.holder.current.generation === 2);
    expect(gw.holder.current.config.watchDirs).toContain(path.join(root, 'kC'));
  });
});

describe('a symlink switched anywhere on the way to a watched path', () => {
  it('follows config/templates -> ../rel/v1 switched to v2, and edits inside v2 (was: v1 kept serving)', async () => {
    const root = tempRoot();
    const file = path.join(root, 'run', 'gateway.config.yaml');
    write(path.join(root, 'run', 'rel', 'v1', 't1.yaml'), template('V1 prompt'));
    write(path.join(root, 'run', 'rel', 'v2', 't1.yaml'), template('V2 prompt'));
    mkdirSync(path.join(root, 'run', 'config'));
    symlinkSync('../rel/v1', path.join(root, 'run', 'config', 'templates'));
    write(file, config('config/templates'));
    const gw = await start(file);
    expect(systemPrompt(gw)).toBe('V1 prompt');

    switchLink(path.join(root, 'run', 'config', 'templates'), '../rel/v2');
    await until(() => systemPrompt(gw) === 'V2 prompt');
    writeFileSync(path.join(root, 'run', 'rel', 'v2', 't1.yaml'), template('V2 edited'));
    await until(() => systemPrompt(gw) === 'V2 edited');
  });

  it('follows templates.dir: ../prompts/current switched to another directory', async () => {
    const root = tempRoot();
    const file = path.join(root, 'run', 'gateway.config.yaml');
    write(path.join(root, 'prompts', 'v1', 't1.yaml'), template('V1 prompt'));
    write(path.join(root, 'prompts', 'v2', 't1.yaml'), template('V2 prompt'));
    symlinkSync('v1', path.join(root, 'prompts', 'current'));
    write(file, config('../prompts/current'));
    const gw = await start(file);

    switchLink(path.join(root, 'prompts', 'current'), 'v2');
    await until(() => systemPrompt(gw) === 'V2 prompt');
  });

  it('follows --config current/gw.yaml with current switched to another release, and edits there (Capistrano style)', async () => {
    const root = tempRoot();
    for (const [release, drain] of [['r1', 500], ['r2', 600]] as const) {
      write(path.join(root, 'releases', release, 'templates', 't1.yaml'), template(`${release} prompt`));
      write(path.join(root, 'releases', release, 'gw.yaml'), config('templates').replace('drain_timeout_ms: 500', `drain_timeout_ms: ${drain}`));
    }
    symlinkSync('releases/r1', path.join(root, 'current'));
    const gw = await start(path.join(root, 'current', 'gw.yaml'));
    expect(systemPrompt(gw)).toBe('r1 prompt');

    switchLink(path.join(root, 'current'), 'releases/r2');
    await until(() => gw.holder.current.config.server.drain_timeout_ms === 600);
    expect(systemPrompt(gw)).toBe('r2 prompt');
    writeFileSync(path.join(root, 'releases', 'r2', 'gw.yaml'), config('templates').replace('drain_timeout_ms: 500', 'drain_timeout_ms: 700'));
    await until(() => gw.holder.current.config.server.drain_timeout_ms === 700);
  });
});

/** The issues a config load reports, as `path: message`. */
function issuesOf(load: () => unknown): string[] {
  try {
    load();
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('template files are read as strict UTF-8', () => {
  const setup = (bytes: Buffer) => {
    const root = tempRoot();
    write(path.join(root, 't', 't1.yaml'), bytes);
    write(path.join(root, 'gateway.config.yaml'), config('t'));
    return path.join(root, 'gateway.config.yaml');
  };

  it('rejects a Latin-1 byte with the file and line (was: U+FFFD in the system prompt, check OK)', () => {
    // A Latin-1 é in `content: "café"`, line 6.
    const file = setup(Buffer.concat([Buffer.from(template('caf').replace('caf"\n', 'caf')), Buffer.from([0xe9]), Buffer.from('"\n')]));
    expect(issuesOf(() => loadConfigFile(file, { env: {} }))).toContain('t/t1.yaml (line 6): the file is not UTF-8 (a Latin-1 or Windows-1252 character?); save it as UTF-8');
  });

  it('rejects a UTF-16 template as such (was: "(root) (line 1): expected object, received string")', () => {
    const utf16 = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(template('hi'), 'utf16le')]);
    expect(issuesOf(() => loadConfigFile(setup(utf16), { env: {} }))).toContain('t/t1.yaml: the file is UTF-16; save it as UTF-8');
  });

  it('still reads a UTF-8 template with a byte order mark', () => {
    const file = setup(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(template('café'))]));
    expect(loadConfigFile(file, { env: {} }).prompts.registry.resolve('t1@1.0.0')?.messages[0].content).toBe('café');
  });
});

describe('errors name the YAML path and line', () => {
  const upstream = (apiKey: string) => `
upstreams:
  - name: up
    base_url: https://api.example.com/v1
    api_key: ${apiKey}
routing: {default: [up]}
`;

  it.each([
    ['"${KEY:?required}"', 'KEY'],
    ['"${A-def}"', 'A'],
    ['${KEY:?required}', 'KEY'],
  ])('an unsupported substitution %s names the setting it is in (was: only the line)', (value, variable) => {
    expect(issuesOf(() => parseConfig(upstream(value), { file: '/tmp/x/env2.yaml', env: {} }))).toEqual([
      expect.stringMatching(new RegExp(`^env2\\.yaml: upstreams\\[0\\]\\.api_key \\(line 5\\): \\$\\{${variable}\\.\\.\\.\\} is not a substitution promptgate knows`)),
    ]);
  });

  it('a template id defined in two files names the line of the second one\'s id (was: no line)', () => {
    const root = tempRoot();
    write(path.join(root, 't7', 't1.yaml'), template('one'));
    write(path.join(root, 't7', 't1.yml'), `# the same template, again\n${template('two')}`);
    write(path.join(root, 'gateway.config.yaml'), config('t7'));
    expect(issuesOf(() => loadConfigFile(path.join(root, 'gateway.config.yaml'), { env: {} }))).toEqual([
      't7/t1.yml: id (line 2): template "t1" is also defined in t7/t1.yaml',
    ]);
  });
});

describe('simulate durations are whole milliseconds', () => {
  const sim = (simulate: string) => `
upstreams:
  - {name: sim, simulate: ${simulate}}
routing: {default: [sim]}
`;

  it.each([
    ['{latency_ms: 1.5}', 'upstreams[0].simulate.latency_ms (line 3)'],
    ['{chunk_interval_ms: 0.5}', 'upstreams[0].simulate.chunk_interval_ms (line 3)'],
  ])('%s is an error (was: accepted)', (simulate, at) => {
    expect(issuesOf(() => parseConfig(sim(simulate), { file: '/tmp/x/gateway.config.yaml', env: {} }))).toEqual([`gateway.config.yaml: ${at}: expected int, received number`]);
  });
});
