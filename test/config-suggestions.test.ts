/**
 * An unknown config key names the key that was probably meant ("did you mean routing?"),
 * found at the same place in the schema; a key close to none gets no suggestion.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile } from '../src/config/load.js';
import { closestKey } from '../src/config/suggest.js';

const root = mkdtempSync(path.join(tmpdir(), 'pg-suggest-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let files = 0;
/** Every issue of loading `text` as a config file (with `templates` as files of its template dir). */
function issuesOf(text: string, templates: Record<string, string> = {}): string[] {
  const dir = path.join(root, String(files++));
  mkdirSync(path.join(dir, 'templates'), { recursive: true });
  for (const [name, body] of Object.entries(templates)) writeFileSync(path.join(dir, 'templates', name), body);
  const file = path.join(dir, 'gateway.config.yaml');
  writeFileSync(file, text);
  try {
    loadConfigFile(file, { env: {} });
  } catch (err) {
    if (err instanceof ConfigError) return err.issues.map((i) => `${i.path}: ${i.message}`);
    throw err;
  }
  return [];
}

const MINIMAL = `upstreams:
  - {name: sim, simulate: {latency_ms: 0}}
routing: {default: [sim]}
templates: {dir: templates}
`;

describe('config: an unknown key names the key it is close to', () => {
  it('a top-level typo of a required key: the suggestion on the unknown key, the required error kept', () => {
    const issues = issuesOf(`routng: {default: [sim]}
upstreams:
  - {name: sim, simulate: {latency_ms: 0}}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: routing (line 1): required (expected object, received undefined)',
      'gateway.config.yaml: routng (line 1): unknown key; did you mean routing?',
    ]);
  });

  it('a typo in an upstream and in its nested sections', () => {
    const issues = issuesOf(`upstreams:
  - name: sim
    simulate: {latency_ms: 0}
    api_kye: x
    timeout: {conect_ms: 5}
    retry: {atempts: 1}
routing: {default: [sim]}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: upstreams[0].timeout.conect_ms (line 5): unknown key; did you mean connect_ms?',
      'gateway.config.yaml: upstreams[0].retry.atempts (line 6): unknown key; did you mean attempts?',
      'gateway.config.yaml: upstreams[0].api_kye (line 4): unknown key; did you mean api_key?',
    ]);
  });

  it('each unknown key of one object is its own error, on its own line, with its own suggestion', () => {
    expect(issuesOf(`${MINIMAL}server:\n  prot: 1\n  extra: 2\n`)).toEqual([
      'gateway.config.yaml: server.prot (line 6): unknown key; did you mean port?',
      'gateway.config.yaml: server.extra (line 7): unknown key',
    ]);
  });

  it('a context builder of each kind suggests the keys of its own kind (and an operator of a rule condition)', () => {
    const issues = issuesOf(`${MINIMAL}context:
  builders:
    - {name: r, kind: rules, mtch: first, rules: [{when: {tier: {gte: 1, ltee: 9}}, set: {x: 1}}]}
    - {name: h, kind: history, max_turn: 3}
    - {name: w, kind: http, url: "http://127.0.0.1:9/{{user_id}}", tiemout_ms: 5, cache: {ttl_ms: 1000, maxEntries: 5}}
    - {name: k, kind: knowledge, topk: 2, http: {url: "http://127.0.0.1:9/?q={{query}}", reslts: hits}}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: context.builders[0].rules[0].when.tier.ltee (line 7): unknown key; did you mean lte?',
      'gateway.config.yaml: context.builders[0].mtch (line 7): unknown key; did you mean match?',
      'gateway.config.yaml: context.builders[1].max_turn (line 8): unknown key; did you mean max_turns?',
      'gateway.config.yaml: context.builders[2].cache.maxEntries (line 9): unknown key; did you mean max_entries?',
      'gateway.config.yaml: context.builders[2].tiemout_ms (line 9): unknown key; did you mean timeout_ms?',
      'gateway.config.yaml: context.builders[3].http.reslts (line 10): unknown key; did you mean results?',
      'gateway.config.yaml: context.builders[3].topk (line 10): unknown key; did you mean top_k?',
    ]);
  });

  it('a key of another builder kind is not suggested (max_turns is a history key, not an http one)', () => {
    const issues = issuesOf(`${MINIMAL}context:\n  builders:\n    - {name: w, kind: http, url: "http://127.0.0.1:9/", max_turn: 3}\n`);
    expect(issues).toEqual(['gateway.config.yaml: context.builders[0].max_turn (line 7): unknown key']);
  });

  it('camelCase, hyphen and case variants of a key', () => {
    const issues = issuesOf(`${MINIMAL}server: {maxBodyBytes: 10, drain-timeout-ms: 5}
guard: {injection: {Max_Scan_Chars: 300}}
pricing: {my-model: {input: 1, output: 2, cachedInput: 0.5}}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: server.maxBodyBytes (line 5): unknown key; did you mean max_body_bytes?',
      'gateway.config.yaml: server.drain-timeout-ms (line 5): unknown key; did you mean drain_timeout_ms?',
      'gateway.config.yaml: guard.injection.Max_Scan_Chars (line 6): unknown key; did you mean max_scan_chars?',
      'gateway.config.yaml: pricing.my-model.cachedInput (line 7): unknown key; did you mean cached_input?',
    ]);
  });

  it('no suggestion when no key is close, nor a key the object already has', () => {
    expect(issuesOf(`${MINIMAL}server: {colour: blue}\n`)).toEqual(['gateway.config.yaml: server.colour (line 5): unknown key']);
    // `port` is set: "did you mean port?" would send the user to the wrong line.
    expect(issuesOf(`${MINIMAL}server: {port: 1, prot: 2}\n`)).toEqual(['gateway.config.yaml: server.prot (line 5): unknown key']);
  });

  it('in a template file: a version key, a params key and a context key', () => {
    const issues = issuesOf(MINIMAL, {
      'support.yaml': `id: support
versions:
  - version: "1.0.0"
    mesages: [{role: system, content: "a"}]
  - version: "1.1.0"
    params: {temprature: 0.2, max-tokens: 5}
    messages: [{role: system, content: "a"}]
    context: {use: [x], budget_token: 5}
`,
    });
    expect(issues).toEqual([
      'templates/support.yaml: versions[0].messages (line 3): required (expected array, received undefined)',
      'templates/support.yaml: versions[0].mesages (line 4): unknown key "mesages"; did you mean messages?',
      'templates/support.yaml: versions[1].params.temprature (line 6): unknown key "temprature"; did you mean temperature?',
      'templates/support.yaml: versions[1].params.max-tokens (line 6): unknown key "max-tokens"; did you mean max_tokens?',
      'templates/support.yaml: versions[1].context.budget_token (line 8): unknown key "budget_token"; did you mean budget_tokens?',
    ]);
  });
});

describe('a key written one level too high names where it belongs', () => {
  it('an upstream\'s retry and timeout keys directly under the upstream', () => {
    const issues = issuesOf(`upstreams:
  - name: sim
    simulate: {latency_ms: 0}
    attempts: 1
    Connect_MS: 500
routing: {default: [sim]}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: upstreams[0].attempts (line 4): unknown key; did you mean retry.attempts?',
      'gateway.config.yaml: upstreams[0].Connect_MS (line 5): unknown key; did you mean timeout.connect_ms?',
    ]);
  });

  it('a context builder\'s cache keys directly under the builder (http and knowledge)', () => {
    const issues = issuesOf(`${MINIMAL}context:
  builders:
    - {name: w, kind: http, url: "http://127.0.0.1:9/{{user_id}}", ttl_ms: 1000}
    - {name: k, kind: knowledge, http: {url: "http://127.0.0.1:9/?q={{query}}"}, max_entries: 5}
`);
    expect(issues).toEqual([
      'gateway.config.yaml: context.builders[0].ttl_ms (line 7): unknown key; did you mean cache.ttl_ms?',
      'gateway.config.yaml: context.builders[1].max_entries (line 8): unknown key; did you mean cache.max_entries?',
    ]);
  });

  it('a top-level key of a section (port belongs in server)', () => {
    expect(issuesOf(`${MINIMAL}port: 8080
`)).toEqual(['gateway.config.yaml: port (line 5): unknown key; did you mean server.port?']);
  });

  it('a template version\'s params directly under the version, with params set or not', () => {
    const issues = issuesOf(MINIMAL, {
      'support.yaml': `id: support
versions:
  - version: "1.0.0"
    temperature: 0.2
    messages: [{role: system, content: "a"}]
  - version: "1.1.0"
    params: {max_tokens: 5}
    Top_P: 0.5
    messages: [{role: system, content: "a"}]
`,
    });
    expect(issues).toEqual([
      'templates/support.yaml: versions[0].temperature (line 4): unknown key "temperature"; did you mean params.temperature?',
      'templates/support.yaml: versions[1].Top_P (line 8): unknown key "Top_P"; did you mean params.top_p?',
    ]);
  });

  it('a typo at this place wins over a key one level down; a nested key already set, a typo of one, or one of two places is not suggested', () => {
    // `retry.attempts` is set: moving `attempts` there would set it twice.
    const set = issuesOf(`upstreams:
  - {name: sim, simulate: {latency_ms: 0}, retry: {attempts: 1}, attempts: 2}
routing: {default: [sim]}
`);
    expect(set).toEqual(['gateway.config.yaml: upstreams[0].attempts (line 2): unknown key']);
    // Only exact (case, _ and - aside) names one level down: a typo of one is too far a guess.
    expect(issuesOf(`${MINIMAL}prot: 8080
`)).toEqual(['gateway.config.yaml: prot (line 5): unknown key']);
    // A knowledge builder allows `max_bytes` in `cache` and in `http`: naming one could be wrong.
    expect(issuesOf(`${MINIMAL}context:\n  builders:\n    - {name: k, kind: knowledge, http: {url: "http://127.0.0.1:9/?q={{query}}"}, max_bytes: 5}\n`)).toEqual([
      'gateway.config.yaml: context.builders[0].max_bytes (line 7): unknown key',
    ]);
    // `api_kye` is a typo of the upstream's own `api_key`, not looked for below.
    expect(issuesOf(`upstreams:\n  - {name: sim, simulate: {latency_ms: 0}, api_kye: x}\nrouting: {default: [sim]}\n`)).toEqual([
      'gateway.config.yaml: upstreams[0].api_kye (line 2): unknown key; did you mean api_key?',
    ]);
  });
});

describe('closestKey', () => {
  it('allows max(1, floor(length / 4)) edits, a transposition counting as one', () => {
    expect(closestKey('prot', ['port', 'host'])).toBe('port');
    expect(closestKey('routng', ['routing', 'server'])).toBe('routing');
    expect(closestKey('rotng', ['routing'])).toBeUndefined(); // 2 edits for 5 characters
    expect(closestKey('enpoint_url', ['endpoint'])).toBeUndefined(); // 4 edits
    expect(closestKey('x', ['n'])).toBeUndefined(); // nothing in common
  });
});
