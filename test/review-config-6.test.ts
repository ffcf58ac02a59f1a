/**
 * Review round 6 of configuration, the CLI and the process lifecycle: the drain's answers
 * close their connections, the config file is read as strict UTF-8, and an unset variable
 * is named with the setting it is in.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, parseConfig } from '../src/config/load.js';
import { substituteEnv } from '../src/config/env.js';
import type { BuildInput } from '../src/context/types.js';
import { startTestGateway, type TestGateway } from './helpers/gateway.js';
import { rawPost, received, until } from './helpers/raw-socket.js';

const MINIMAL = `upstreams:
  - {name: sim, simulate: {latency_ms: 0}}
routing: {default: [sim]}
`;

function issuesOf(run: () => unknown): string[] {
  try {
    run();
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

describe('a response that finishes during the drain', () => {
  let gw: TestGateway | undefined;
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
  });

  it('says connection: close (was: "keep-alive", then the socket closed under the client 25 ms later)', async () => {
    gw = await startTestGateway(`
server: {host: 127.0.0.1, drain_timeout_ms: 5000}
logging: {level: silent}
upstreams:
  - {name: sim, simulate: {latency_ms: 300}}
routing: {default: [sim]}
`);
    const body = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
    const socket = rawPost(gw.port, '/v1/chat/completions', body);
    const got = received(socket);
    let closed = false;
    socket.on('close', () => (closed = true));
    socket.on('error', () => undefined);
    await until(() => gw!.inflight.size === 1);
    const stopping = gw.shutdown('test');
    await until(() => closed);
    await stopping;
    const [head, json] = got.text().split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 200 /);
    expect(head.toLowerCase()).toContain('\r\nconnection: close');
    expect(head.toLowerCase()).not.toContain('keep-alive');
    expect(JSON.parse(json).object).toBe('chat.completion'); // the whole answer, not cut
  });
});

describe('a config file that is not UTF-8', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pg-utf8-'));

  it('is an error naming the line of a Latin-1 byte (was: read as U+FFFD, a model "caf\\ufffd" sent upstream)', () => {
    const file = path.join(dir, 'latin1.yaml');
    writeFileSync(file, Buffer.concat([Buffer.from('upstreams:\n  - {name: sim, simulate: {latency_ms: 0, model: "caf'), Buffer.from([0xe9]), Buffer.from('"}}\nrouting: {default: [sim]}\n')]));
    expect(issuesOf(() => loadConfigFile(file))).toEqual(['latin1.yaml (line 2): the file is not UTF-8 (a Latin-1 or Windows-1252 character?); save it as UTF-8']);
  });

  it('is an error saying UTF-16 (was: "(root): expected object, received string")', () => {
    const file = path.join(dir, 'utf16.yaml');
    writeFileSync(file, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(MINIMAL, 'utf16le')]));
    expect(issuesOf(() => loadConfigFile(file))).toEqual(['utf16.yaml: the file is UTF-16; save it as UTF-8']);
  });

  it('with a UTF-8 byte order mark, and UTF-8 text beyond ASCII, loads as before', () => {
    const file = path.join(dir, 'bom.yaml');
    writeFileSync(file, `\ufeff${MINIMAL.replace('latency_ms: 0}', 'latency_ms: 0, model: "café-ü-模型"}')}`);
    expect(loadConfigFile(file).upstreams.get('sim')!.config.simulate!.model).toBe('café-ü-模型');
  });

  it('makes `promptgate check` print the line and exit 1', () => {
    const file = path.join(dir, 'check.yaml');
    writeFileSync(file, Buffer.concat([Buffer.from(`${MINIMAL}admin: {token: "abc`), Buffer.from([0xa3]), Buffer.from('"}\n')]));
    const run = spawnSync(path.resolve('node_modules/.bin/tsx'), ['src/main.ts', 'check', '--config', file], { encoding: 'utf8', timeout: 15_000 });
    expect(run.status).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toBe(`check.yaml (line 4): the file is not UTF-8 (a Latin-1 or Windows-1252 character?); save it as UTF-8\n1 error in ${file}\n`);
  });
});

describe('an unset ${VAR}', () => {
  const parse = (text: string, env: Record<string, string> = {}) => issuesOf(() => parseConfig(text, { file: '/etc/promptgate/gateway.config.yaml', env }));

  it('is named with the setting it is in, once (was: only its line, then "expected string, received null ... is empty here")', () => {
    const text = `upstreams:
  - name: openai
    base_url: \${OPENAI_BASE_URL:-https://api.openai.com/v1}
    api_key: \${OPENAI_API_KEY}
routing: {default: [openai]}
`;
    expect(parse(text)).toEqual(['gateway.config.yaml: upstreams[0].api_key (line 4): environment variable OPENAI_API_KEY is not set (use ${OPENAI_API_KEY:-default} for an optional value)']);
  });

  it('in a flow mapping, quoted, nested in a default, or after another substitution on its line, names its own setting', () => {
    const text = `upstreams:
  - {name: a, base_url: "\${BASE:-http://127.0.0.1:1}/v1", api_key: "\${KEY}", headers: {x-org: "\${ORG:-\${ORG_ID}}"}}
routing: {default: [a]}
admin: {token: \${TOKEN}}
`;
    expect(parse(text, { BASE: 'http://127.0.0.1:2' })).toEqual([
      'gateway.config.yaml: upstreams[0].api_key (line 2): environment variable KEY is not set (use ${KEY:-default} for an optional value)',
      'gateway.config.yaml: upstreams[0].headers.x-org (line 2): environment variable ORG_ID is not set (use ${ORG_ID:-default} for an optional value)',
      'gateway.config.yaml: admin.token (line 4): environment variable TOKEN is not set (use ${TOKEN:-default} for an optional value)',
    ]);
  });

  it('in a file YAML cannot parse keeps its line, and other errors of the file are still reported', () => {
    const issues = parse(`${MINIMAL}admin: {token: \${TOKEN}\n`);
    expect(issues[0]).toBe('gateway.config.yaml (line 4): environment variable TOKEN is not set (use ${TOKEN:-default} for an optional value)');
    expect(issues.length).toBeGreaterThan(1);
  });
});

describe('a ${VAR} in a block scalar (`text: |`)', () => {
  const config = `upstreams:
  - {name: sim, simulate: {latency_ms: 0}}
routing: {default: [sim]}
context:
  builders:
    - name: policy
      kind: rules
      defaults:
        text: |
          Refunds go through #billing, escalate to \${ESCALATION_EMAIL}.
          Ticket prefix: \${TICKET_PREFIX}
      rules: []   # \${NOT_SUBSTITUTED} in a comment
`;

  it('is substituted after a "#" in the text (was: left as the literal "${ESCALATION_EMAIL}", reaching the prompt)', () => {
    const loaded = parseConfig(config, { file: '/x/gateway.config.yaml', env: { ESCALATION_EMAIL: 'esc@example.com', TICKET_PREFIX: 'T-1' } });
    const plan = loaded.context.builders.get('policy')!.plan({ messages: [], userId: undefined, scope: {}, query: '' } satisfies BuildInput);
    const output = 'compute' in plan ? plan.compute() : undefined;
    expect(output?.shape === 'object' && output.value.text).toBe('Refunds go through #billing, escalate to esc@example.com.\nTicket prefix: T-1\n');
  });

  it('is reported when unset after a "#" in the text (was: no error, the text kept "${ESCALATION_EMAIL}")', () => {
    expect(issuesOf(() => parseConfig(config, { file: '/x/gateway.config.yaml', env: { TICKET_PREFIX: 'T-1' } }))).toEqual([
      'gateway.config.yaml: context.builders[0].defaults.text (line 10): environment variable ESCALATION_EMAIL is not set (use ${ESCALATION_EMAIL:-default} for an optional value)',
    ]);
  });

  it('may hold " #" (was: rejected as a value YAML would cut at a comment, which it does not in a block scalar)', () => {
    const loaded = parseConfig(config, { file: '/x/gateway.config.yaml', env: { ESCALATION_EMAIL: 'esc@example.com', TICKET_PREFIX: 'ticket #' } });
    const plan = loaded.context.builders.get('policy')!.plan({ messages: [], userId: undefined, scope: {}, query: '' } satisfies BuildInput);
    const output = 'compute' in plan ? plan.compute() : undefined;
    expect(output?.shape === 'object' && output.value.text).toBe('Refunds go through #billing, escalate to esc@example.com.\nTicket prefix: ticket #\n');
  });

  it('ends where the indentation does: comments after the block, in lists and with indicators, stay comments', () => {
    const text = '- |\n  #chan ${A}\n- x # ${UNSET}\nk: >-\n  ${A}\n\n  again ${A}\nq: 1 # ${UNSET}\nr: "a |"  # ${UNSET}\n';
    expect(substituteEnv(text, { A: 'v' })).toEqual({ text: '- |\n  #chan v\n- x # ${UNSET}\nk: >-\n  v\n\n  again v\nq: 1 # ${UNSET}\nr: "a |"  # ${UNSET}\n', missing: [], lineBreaks: [], unsupported: [] });
  });
});

describe('a ${VAR} in a quoted scalar', () => {
  const config = `upstreams:
  - {name: a, base_url: "http://127.0.0.1:1/v1", headers: {x-pass: "\${PASS}"}}
routing: {default: [a]}
admin: {token: "\${ADMIN_TOKEN}"}
telemetry: {service_name: '\${SERVICE}'}
`;
  const load = (env: Record<string, string>) => parseConfig(config, { file: '/x/gateway.config.yaml', env });

  it('keeps a backslash of the value (was: "ab\\\\cd" read as the escape, a token "ab\\cd", so the real one got 401)', () => {
    const loaded = load({ PASS: 'p', ADMIN_TOKEN: 'ab\\\\cd\\/x', SERVICE: 's' });
    expect(loaded.admin.token).toBe('ab\\\\cd\\/x');
  });

  it('keeps a quote of the value, and a backslash YAML has no escape for (was: "Unexpected scalar at node end", "Invalid escape sequence \\w")', () => {
    const loaded = load({ PASS: 'say "hi" p@ss\\word', ADMIN_TOKEN: 't', SERVICE: "O'Brien's" });
    expect(loaded.upstreams.get('a')!.config.headers).toEqual({ 'x-pass': 'say "hi" p@ss\\word' });
    expect(loaded.telemetry.service_name).toBe("O'Brien's");
  });

  it('leaves the file\'s own escapes and a default\'s text as YAML reads them', () => {
    expect(substituteEnv('a: "\\t${A}\\"${U:-x\\ty}"\nb: \'it\'\'s ${A}\'\nc: ${A}', { A: 'v"\\' }).text).toBe('a: "\\tv\\"\\\\\\"x\\ty"\nb: \'it\'\'s v"\\\'\nc: v"\\');
  });
});
