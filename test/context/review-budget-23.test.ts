/**
 * The token budget counts what the template renders per item of a list output: a section
 * that repeats text for each passage (`{{#knowledge}}Passage ... {{score}} ...{{/knowledge}}`)
 * took several times the budget while the budget counted only each passage's title, text
 * and source. Regression: the rendered context went 33% over `budget_tokens`, the reported
 * context tokens were the lower figure, and under `max_input_tokens` a request with one short
 * line was refused 400 `context_length_exceeded`.
 */
import { cpSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildContext } from '../../src/context/build.js';
import { ContextRuntime } from '../../src/context/runtime.js';
import { countTokens, messagesTokens } from '../../src/context/tokens.js';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { makeContext, ROOT } from './helpers.js';

const HEAD = 'Answer from these passages.\n';
const SYSTEM = `${HEAD}{{#knowledge}}
Passage number from the help centre, identified by source {{source}} with relevance score {{score}}, titled "{{title}}", reads as follows:
{{text}}
{{/knowledge}}
`;
const QUESTION = 'refund shipping return warranty order account password';
const knowledgeDir = path.join(mkdtempSync(path.join(tmpdir(), 'pg-budget-23-')), 'knowledge');
cpSync(path.join(ROOT, 'config/knowledge'), knowledgeDir, { recursive: true });

const builders = { builders: [{ name: 'knowledge', kind: 'knowledge', dir: knowledgeDir, top_k: 12, chunk_tokens: 60 }] };

/** Tokens of the context as rendered: the system message without its head. */
const renderedContextTokens = (system: string) => countTokens(system.slice(HEAD.length));

describe('the budget counts what the section renders per passage', () => {
  let rt: ContextRuntime;
  afterEach(() => rt?.close());

  it('keeps the rendered context within budget_tokens, and reports what was rendered', async () => {
    rt = new ContextRuntime();
    const { plan, version } = makeContext(builders, { use: ['knowledge'], budget_tokens: 600 }, { messages: [{ role: 'system', content: SYSTEM }] });
    const { variables, report } = await buildContext(rt, plan, { messages: [{ role: 'user', content: QUESTION }], userId: 'u1', variables: {} });
    expect(report.dropped).toBeGreaterThan(0); // the budget had to trim: the test measures something
    const rendered = renderedContextTokens(version.render(variables)[0].content);
    expect(rendered).toBeLessThanOrEqual(600); // was about 799
    expect(Math.abs(report.tokens - rendered)).toBeLessThanOrEqual(3); // was 561
  });

  it('keeps the whole prompt within max_input_tokens (the budget takes the template text outside the section once)', async () => {
    rt = new ContextRuntime();
    const { plan, version } = makeContext(builders, { use: ['knowledge'], budget_tokens: 5000 }, { messages: [{ role: 'system', content: SYSTEM }], constraints: { max_input_tokens: 700 } });
    const question = { role: 'user', content: QUESTION };
    const { variables, report } = await buildContext(rt, plan, { messages: [question], userId: 'u1', variables: {} });
    const prompt = [...version.render(variables), question];
    expect(messagesTokens(prompt)).toBeLessThanOrEqual(700); // was 900
    expect(report.dropped).toBeGreaterThan(0);
    expect(messagesTokens(prompt)).toBeGreaterThan(550); // and the room is used
  });

  it('counts a list rendered by two sections (in two messages) once per section', async () => {
    rt = new ContextRuntime();
    const twice = [
      { role: 'system', content: SYSTEM },
      { role: 'developer', content: 'Sources: {{#knowledge}}{{source}} ({{title}}); {{/knowledge}}' },
    ];
    const one = makeContext(builders, { use: ['knowledge'], budget_tokens: 100_000 }, { messages: [{ role: 'system', content: SYSTEM }] });
    const two = makeContext(builders, { use: ['knowledge'], budget_tokens: 100_000 }, { messages: twice });
    const messages = [{ role: 'user', content: QUESTION }];
    const a = await buildContext(rt, one.plan, { messages, userId: 'u1', variables: {} });
    const b = await buildContext(rt, two.plan, { messages, userId: 'u1', variables: {} });
    const sources = two.version.render(b.variables)[1].content.slice('Sources: '.length);
    expect(b.report.tokens - a.report.tokens).toBeGreaterThan(countTokens(sources) * 0.9);
    expect(b.report.tokens - a.report.tokens).toBeLessThan(countTokens(sources) * 1.1);
  });

  it("counts a client variable that the section repeats for each passage", async () => {
    rt = new ContextRuntime();
    const withNote = `{{#knowledge}}[{{source}}] {{title}}\n{{text}}\n(Checked by {{company}} support: quote it as written.)\n{{/knowledge}}`;
    const company = 'Acme Incorporated Worldwide Holdings of the Northern Hemisphere';
    const { plan, version } = makeContext(
      builders,
      { use: ['knowledge'], budget_tokens: 400 },
      { messages: [{ role: 'system', content: withNote }], variables: { company: { type: 'string', default: company } } },
    );
    const { variables, report } = await buildContext(rt, plan, { messages: [{ role: 'user', content: QUESTION }], userId: 'u1', variables: { company } });
    const rendered = countTokens(version.render({ company, ...variables })[0].content);
    expect(rendered).toBeLessThanOrEqual(400);
    expect(report.dropped).toBeGreaterThan(0);
    expect(Math.abs(report.tokens - rendered)).toBeLessThanOrEqual(3);
  });

  it('counts a list nested in the section once per element (was: {{.}} counted each whole passage again)', async () => {
    rt = new ContextRuntime();
    const withRegions = `{{#knowledge}}[{{source}}] {{text}}\nApplies in: {{#regions}}{{.}}, {{/regions}}\n{{/knowledge}}`;
    const regions = ['European Union', 'United Kingdom', 'United States', 'Canada'];
    const { plan, version } = makeContext(
      builders,
      { use: ['knowledge'], budget_tokens: 500 },
      { messages: [{ role: 'system', content: withRegions }], variables: { regions: { type: 'array', default: regions } } },
    );
    const { variables, report } = await buildContext(rt, plan, { messages: [{ role: 'user', content: QUESTION }], userId: 'u1', variables: { regions } });
    const rendered = countTokens(version.render({ regions, ...variables })[0].content);
    expect(report.dropped).toBeGreaterThan(0);
    expect(rendered).toBeLessThanOrEqual(500);
    expect(rendered).toBeGreaterThan(400); // the room is used
    expect(Math.abs(report.tokens - rendered)).toBeLessThanOrEqual(5);
  });
});

describe('through the gateway', () => {
  let upstream: MockUpstream;
  let gw: TestGateway | undefined;
  beforeAll(async () => {
    upstream = await startMockUpstream();
  });
  afterAll(() => upstream.close());
  afterEach(async () => {
    await gw?.close();
    gw = undefined;
    upstream.requests.length = 0;
  });

  /** The repro's template; `context` and `constraints` are YAML flow maps. */
  const template = (context: string, constraints = '{}') => `id: kb2
versions:
  - version: "1.0.0"
    constraints: ${constraints}
    context: ${context}
    messages:
      - role: system
        content: |
${SYSTEM.split('\n').map((l) => `          ${l}`).join('\n')}
`;
  const config = `
bindings: [{model: kb2, template: kb2}]
context:
  builders:
    - {name: knowledge, kind: knowledge, dir: ${knowledgeDir}, top_k: 12, chunk_tokens: 60}
`;
  const ask = () =>
    request(`${gw!.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'kb2', user: 'u1', messages: [{ role: 'user', content: QUESTION }] }),
    });
  const sentMessages = () => (upstream.requests.at(-1)!.body as { messages: { role: string; content: string }[] }).messages;

  it('serves a short question under max_input_tokens with as many passages as fit (was: 400 context_length_exceeded)', async () => {
    gw = await startTestGateway(mockConfig(upstream.url, config), {
      templateFiles: { 'kb2.yaml': template('{use: [knowledge], budget_tokens: 5000}', '{max_input_tokens: 700}') },
    });
    const res = await ask();
    const text = await res.body.text();
    expect(res.statusCode, text).toBe(200);
    const sent = sentMessages();
    expect(sent[0].content).toContain('Passage number from the help centre');
    expect(messagesTokens(sent)).toBeLessThanOrEqual(700);
  });

  it('keeps the rendered context within budget_tokens and records that figure as the context tokens', async () => {
    // Two recipes assigned by the user-id hash: the recipe statistics record `context_tokens`.
    const context = '{use: [knowledge], budget_tokens: 600, recipes: [{name: a, weight: 1}, {name: b, weight: 1}]}';
    gw = await startTestGateway(mockConfig(upstream.url, config), { templateFiles: { 'kb2.yaml': template(context) } });
    const res = await ask();
    expect(res.statusCode).toBe(200);
    await res.body.text();
    const rendered = renderedContextTokens(sentMessages()[0].content);
    expect(rendered).toBeLessThanOrEqual(600); // was about 799
    const metrics = await scrapeMetricsText(gw.url);
    const recorded = [...metrics.matchAll(/promptgate_experiment_observations_sum_total\{experiment="kb2@1\.0\.0:context",variant="[ab]",metric="context_tokens"\} (\d+)/g)].map((m) => Number(m[1]));
    const total = recorded.reduce((n, v) => n + v, 0);
    expect(Math.abs(total - rendered)).toBeLessThanOrEqual(3); // was 561
  });
});
