/**
 * Review: does the gateway keep the provider's prompt cache warm? Providers cache the longest
 * identical prefix of a prompt (OpenAI: from 1024 tokens, in 128-token steps), so what the
 * gateway renders must be byte-identical from request to request up to the first
 * request-specific text, and the gateway must not put request-specific text before the
 * template's static part, nor touch `prompt_cache_key` / `user`. Real sockets on 127.0.0.1
 * port 0: a gateway, the recording mock upstream and a customer service; all closed here.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { countTokens } from '../src/tokenizer/index.js';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { ROOT, startJsonService, type JsonService } from './context/helpers.js';

interface Message {
  role: string;
  content: string;
}

/** OpenAI cookbook "How to count tokens": a message costs ~3 tokens besides its text. */
const TOKENS_PER_MESSAGE = 3;

/**
 * Tokens (o200k_base) two prompts share from their start, as the provider's prefix cache
 * sees them: whole identical messages, then the identical start of the first message that
 * differs, cut right after a line break that an ASCII letter follows (o200k_base never lets
 * a token run across such a cut, see `countByLines`, so the count is exact up to there).
 */
function sharedPrefixTokens(a: readonly Message[], b: readonly Message[]): number {
  let n = 0;
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i].role !== b[i].role) return n;
    const x = a[i].content;
    const y = b[i].content;
    if (x === y) {
      n += TOKENS_PER_MESSAGE + countTokens(x);
      continue;
    }
    let k = 0;
    while (k < x.length && x[k] === y[k]) k++;
    let cut = 0;
    for (let j = k - 2; j >= 0; j--) {
      if (x[j] === '\n' && /[A-Za-z]/.test(x[j + 1])) {
        cut = j + 1;
        break;
      }
    }
    return n + TOKENS_PER_MESSAGE + countTokens(x.slice(0, cut));
  }
  return n;
}

/** Bytes two serialised message lists share from their start. */
function sharedPrefixBytes(a: unknown, b: unknown): number {
  const x = Buffer.from(JSON.stringify(a));
  const y = Buffer.from(JSON.stringify(b));
  let k = 0;
  while (k < x.length && k < y.length && x[k] === y[k]) k++;
  return k;
}

/** Static instructions long enough for OpenAI's cache (over 1024 tokens), no placeholders. */
const POLICY = Array.from(
  { length: 60 },
  (_, i) => `Rule ${i + 1}: when a customer asks about topic number ${i + 1}, check the help-centre article on it first, quote its exact wording, and never promise what it does not state.`,
).join('\n');

const indent = (text: string, by: string) => text.split('\n').map((l) => by + l).join('\n');

/**
 * Two templates with the same text and context: `cache-early` interpolates the customer's
 * name in its first line (as the shipped support templates do), `cache-friendly` keeps the
 * static instructions in a message of their own and the per-request context in a later one.
 */
function writeTemplates(): string[] {
  const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-cache-'));
  const early = `id: cache-early
versions:
  - version: "1.0.0"
    model: gpt-4o-mini
    context: {use: [customer, tier_rules, knowledge]}
    messages:
      - role: system
        content: |-
          You are the support assistant of Acme.{{#customer}} You are talking to {{name}} ({{tier}} plan).{{/customer}}
${indent(POLICY, '          ')}
          {{#tier_rules}}
          Refund limit: {{refund_limit_usd}} USD.
          {{/tier_rules}}
          {{#knowledge}}
          [{{source}}] {{title}}
          {{text}}
          {{/knowledge}}
`;
  const friendly = `id: cache-friendly
versions:
  - version: "1.0.0"
    model: gpt-4o-mini
    context: {use: [customer, tier_rules, knowledge]}
    params:
      extra_body: {prompt_cache_key: cache-friendly@1.0.0}
    messages:
      - role: system
        content: |-
          You are the support assistant of Acme.
${indent(POLICY, '          ')}
      - role: system
        content: |-
          {{#customer}}You are talking to {{name}} ({{tier}} plan).{{/customer}}
          {{#tier_rules}}
          Refund limit: {{refund_limit_usd}} USD.
          {{/tier_rules}}
          {{#knowledge}}
          [{{source}}] {{title}}
          {{text}}
          {{/knowledge}}
`;
  const files = [path.join(dir, 'cache-early.yaml'), path.join(dir, 'cache-friendly.yaml')];
  writeFileSync(files[0], early);
  writeFileSync(files[1], friendly);
  return files;
}

let upstream: MockUpstream;
let customers: JsonService;
let gw: TestGateway | undefined;
let templateFiles: string[];

/** Per user, a profile whose keys come in a different order on every call (a hash map's JSON). */
const PROFILES: Record<string, Record<string, unknown>> = {
  'user-alice': { name: 'Alice', tier: 'gold', since: '2019-03-01', lifetime_value_usd: 5200.5 },
  'user-bob': { name: 'Bob', tier: 'standard', since: '2024-07-15', lifetime_value_usd: 12 },
};
let calls = 0;

beforeAll(async () => {
  upstream = await startMockUpstream();
  customers = await startJsonService();
  customers.route(/^\/customers\//, (req, res) => {
    const profile = PROFILES[decodeURIComponent(req.url.split('/').pop()!)];
    if (!profile) {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{}');
      return;
    }
    const entries = Object.entries(profile);
    if (calls++ % 2 === 1) entries.reverse();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(Object.fromEntries(entries)));
  });
  templateFiles = writeTemplates();
});
afterAll(async () => {
  await upstream.close();
  await customers.close();
  rmSync(path.dirname(templateFiles[0]), { recursive: true, force: true });
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
  upstream.requests.length = 0;
});

function config(extra = ''): string {
  return mockConfig(
    upstream.url,
    `
bindings:
  - {model: support-early, template: cache-early}
  - {model: support-cached, template: cache-friendly}
  - {model: support-prepend, template: cache-friendly, mode: prepend}
context:
  deadline_ms: 2000
  builders:
    - name: customer
      kind: http
      url: "${customers.url}/customers/{{user_id}}"
      pick: {name: name, tier: tier}
    - name: tier_rules
      kind: rules
      defaults: {refund_limit_usd: 50}
      rules:
        - when: {customer.tier: gold}
          set: {refund_limit_usd: 500}
    - name: knowledge
      kind: knowledge
      dir: ${ROOT}/config/knowledge
      top_k: 2
${extra}`,
  );
}

async function chat(body: object): Promise<{ status: number; sent: { raw: string; body: any } }> {
  const before = upstream.requests.length;
  const res = await request(`${gw!.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await res.body.text();
  const sent = upstream.requests[before];
  return { status: res.statusCode, sent: { raw: sent?.raw, body: sent?.body } };
}

const ask = (model: string, user: string, question: string, extra: object = {}) =>
  chat({ model, user, messages: [{ role: 'user', content: question }], ...extra });

const staticTokens = countTokens(`You are the support assistant of Acme.\n${POLICY}`);

describe('shared prompt prefix between two users of one template', () => {
  it('static instructions in a message before the context: two users share the whole static part (over 1024 tokens)', async () => {
    gw = await startTestGateway(config(), { templates: templateFiles });
    const a = await ask('support-cached', 'user-alice', 'How long does a refund take to reach my card?');
    const b = await ask('support-cached', 'user-bob', 'Can I change the delivery address of my order?');
    expect([a.status, b.status]).toEqual([200, 200]);
    const ma = a.sent.body.messages as Message[];
    const mb = b.sent.body.messages as Message[];
    // The template's messages come first, the client's question last.
    expect(ma.map((m) => m.role)).toEqual(['system', 'system', 'user']);
    expect(ma[0]).toEqual(mb[0]);
    expect(ma[1].content).toContain('Alice (gold plan)');
    expect(mb[1].content).toContain('Bob (standard plan)');
    const shared = sharedPrefixTokens(ma, mb);
    expect(staticTokens).toBeGreaterThan(1024);
    expect(shared).toBeGreaterThanOrEqual(staticTokens);
    expect(sharedPrefixBytes(ma, mb)).toBeGreaterThan(Buffer.byteLength(JSON.stringify(ma[0])));
  });

  it("the customer's name in the first line: the prefix two users share ends there (measured, for the README)", async () => {
    gw = await startTestGateway(config(), { templates: templateFiles });
    const a = await ask('support-early', 'user-alice', 'How long does a refund take to reach my card?');
    const b = await ask('support-early', 'user-bob', 'Can I change the delivery address of my order?');
    const shared = sharedPrefixTokens(a.sent.body.messages, b.sent.body.messages);
    // Nothing of the 2,300-token policy is shared: under OpenAI's 1024-token minimum, no cache hit.
    expect(shared).toBeLessThan(20);
    expect(sharedPrefixBytes(a.sent.body.messages, b.sent.body.messages)).toBeLessThan(100);
  });
});

describe('shared prompt prefix between two turns of one conversation', () => {
  it('the next turn of the same user shares at least the static part, though the passages changed with the question', async () => {
    gw = await startTestGateway(config(), { templates: templateFiles });
    const turn1 = [{ role: 'user', content: 'How long does a refund take to reach my card?' }];
    const turn2 = [...turn1, { role: 'assistant', content: 'Five to ten business days.' }, { role: 'user', content: 'Can I change the delivery address of my order?' }];
    const a = await chat({ model: 'support-cached', user: 'user-alice', messages: turn1 });
    const b = await chat({ model: 'support-cached', user: 'user-alice', messages: turn2 });
    const ma = a.sent.body.messages as Message[];
    const mb = b.sent.body.messages as Message[];
    expect(ma[0]).toEqual(mb[0]);
    // Other passages: the context message differs, and the conversation after it is not shared.
    expect(ma[1].content).not.toBe(mb[1].content);
    expect(sharedPrefixTokens(ma, mb)).toBeGreaterThanOrEqual(staticTokens);
  });
});

describe('deterministic rendering', () => {
  it('the same request twice goes upstream as the same bytes, though the service sends the profile keys in another order', async () => {
    gw = await startTestGateway(config(), { templates: templateFiles });
    const body = { model: 'support-cached', user: 'user-alice', messages: [{ role: 'user', content: 'How long does a refund take?' }] };
    const first = await chat(body);
    const second = await chat(body);
    expect(first.status).toBe(200);
    expect(second.sent.raw).toBe(first.sent.raw);
  });
});

describe('cache routing fields', () => {
  it('prompt_cache_key, user and safety_identifier reach the upstream untouched, with a template and without', async () => {
    gw = await startTestGateway(config(), { templates: templateFiles });
    const fields = { prompt_cache_key: 'tenant-7:support', safety_identifier: 'sid-42' };
    const withTemplate = await ask('support-cached', 'user-alice', 'Refund?', fields);
    expect(withTemplate.sent.body).toMatchObject({ user: 'user-alice', ...fields });
    const plain = await chat({ model: 'gpt-4o-mini', user: 'user-alice', messages: [{ role: 'user', content: 'hi' }], ...fields });
    expect(plain.sent.body).toMatchObject({ user: 'user-alice', ...fields });
  });

  it("a template's extra_body prompt_cache_key is sent when the client sets none, and the client's wins", async () => {
    gw = await startTestGateway(config(), { templates: templateFiles });
    const unset = await ask('support-cached', 'user-alice', 'Refund?');
    expect(unset.sent.body.prompt_cache_key).toBe('cache-friendly@1.0.0');
    const own = await ask('support-cached', 'user-alice', 'Refund?', { prompt_cache_key: 'mine' });
    expect(own.sent.body.prompt_cache_key).toBe('mine');
  });
});

describe('where the gateway puts the client text', () => {
  it("mode prepend: the client's own (request-specific) system message goes after the template's static one, never before it", async () => {
    gw = await startTestGateway(config(), { templates: templateFiles });
    const r = await chat({
      model: 'support-prepend',
      user: 'user-alice',
      messages: [
        { role: 'system', content: 'Request 8f3a at 2026-11-24T15:00:00Z' },
        { role: 'user', content: 'Refund?' },
      ],
    });
    const sent = r.sent.body.messages as Message[];
    expect(sent.map((m) => m.role)).toEqual(['system', 'system', 'system', 'user']);
    expect(sent[0].content.startsWith('You are the support assistant of Acme.\nRule 1:')).toBe(true);
    expect(r.sent.body.messages[2]).toEqual({ role: 'system', content: 'Request 8f3a at 2026-11-24T15:00:00Z' });
  });

  it('a stream request sends the same messages as a non-stream one (include_usage is added outside them)', async () => {
    gw = await startTestGateway(config(), { templates: templateFiles });
    const a = await ask('support-cached', 'user-bob', 'Where is my parcel?');
    const b = await ask('support-cached', 'user-bob', 'Where is my parcel?', { stream: true });
    expect(JSON.stringify(b.sent.body.messages)).toBe(JSON.stringify(a.sent.body.messages));
    expect(b.sent.body.stream_options).toEqual({ include_usage: true });
  });
});
