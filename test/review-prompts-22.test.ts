/**
 * Review 22: template variables as context builders see them.
 *
 * - Builders read the client's variables only: a declared `default` reached the rendered
 *   prompt but not the builders, so a rule on `plan` saw it unset while the prompt said
 *   "pro", and an http builder whose URL needed a defaulted variable was skipped.
 * - A template variable at odds with the builder that fills it, or a recipe weight too small
 *   for a bucket, was reported as `version 1.0.0, variables.cust`: no YAML path, no line.
 * - Variables were checked after context was built: a request the template refuses (a
 *   mistyped or missing variable) still called the customer service, and when a required
 *   builder failed meanwhile the client got a 424 instead of the 400 it can fix.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile } from '../src/config/load.js';
import { json, startJsonService, type JsonService } from './context/helpers.js';
import { mockConfig, postJson, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';

let upstream: MockUpstream;
let svc: JsonService;
let gw: TestGateway | undefined;
beforeAll(async () => {
  upstream = await startMockUpstream();
  svc = await startJsonService();
  svc.route(/^\/orders\//, json({ status: 'shipped' }));
  svc.route(/^\/failing\//, (_req, res) => {
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
afterAll(async () => {
  await upstream.close();
  await svc.close();
});
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

const TEMPLATE = `id: plans
name: Plans
versions:
  - version: "1.0.0"
    variables:
      plan: {type: string, default: pro}
      order_id: {type: string, default: o-1}
      name: {type: string}
    context:
      use: [plan_rules, order]
    messages:
      - role: system
        content: "plan={{plan}} tier={{plan_rules.tier}} order={{order.status}} name={{name}}"
`;

function config(orderPath: string, required = false): string {
  return (
    mockConfig(upstream.url) +
    `
bindings: [{model: plans-bot, template: plans}]
context:
  deadline_ms: 2000
  builders:
    - {name: plan_rules, kind: rules, defaults: {tier: basic}, rules: [{when: {plan: pro}, set: {tier: PRO}}]}
    - {name: order, kind: http, url: "${svc.url}${orderPath}/{{order_id}}", required: ${required}}
`
  );
}

const chat = (vars?: Record<string, unknown>) => ({ model: 'plans-bot', messages: [{ role: 'user', content: 'hi' }], ...(vars ? { prompt_variables: vars } : {}) });

describe('declared defaults', () => {
  it('are what the builders see too: the rules and the URL read the value the prompt shows', async () => {
    gw = await startTestGateway(config('/orders'), { templateFiles: { 'plans.yaml': TEMPLATE } });
    const res = await postJson(gw.url, '/v1/chat/completions', chat());
    expect(res.status).toBe(200);
    expect(upstream.requests.at(-1)!.body.messages[0].content).toBe('plan=pro tier=PRO order=shipped name=');
    expect(svc.requests.at(-1)!.url).toBe('/orders/o-1');
  });
});

describe("a request the template refuses", () => {
  it('is refused before any builder calls a service (400, not a 424 from a required builder that failed meanwhile)', async () => {
    gw = await startTestGateway(config('/failing', true), { templateFiles: { 'plans.yaml': TEMPLATE } });
    const before = svc.requests.length;
    const typed = await postJson(gw.url, '/v1/chat/completions', chat({ order_id: 12345 }));
    expect(typed.status).toBe(400);
    expect(JSON.parse(typed.text).error).toMatchObject({ code: 'invalid_variable', param: 'prompt_variables.order_id' });
    expect(svc.requests.length).toBe(before);
  });
});

describe('a request that fails while its prompt is built', () => {
  // The request's model was noted only once the prompt step returned: a 424 (or a client
  // leaving during context) was counted under gen_ai_request_model="" and logged without model.
  it('keeps its model in the metrics', async () => {
    gw = await startTestGateway(config('/failing', true), { templateFiles: { 'plans.yaml': TEMPLATE } });
    const res = await postJson(gw.url, '/v1/chat/completions', chat({ name: 'Ada' }));
    expect(res.status).toBe(424);
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    const line = metrics.split('\n').find((l) => l.startsWith('promptgate_requests_total{') && l.includes('error_type="context_unavailable"'));
    expect(line).toContain('gen_ai_request_model="plans-bot"');
  });
});

describe('template problems found against the context builders', () => {
  it('name the YAML path and line in the template file, as every other template error', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-locate-'));
    mkdirSync(path.join(dir, 'templates'));
    writeFileSync(
      path.join(dir, 'templates', 'w.yaml'),
      `id: w
versions:
  - version: "1.0.0"
    variables:
      cust: {type: array}
    context:
      use: [cust]
      recipes: [{name: tiny, weight: 1}, {name: big, weight: 100000}]
    messages:
      - {role: system, content: "{{#cust}}{{name}}{{/cust}}"}
`,
    );
    const file = path.join(dir, 'gateway.config.yaml');
    writeFileSync(file, mockConfig(upstream.url) + `context:\n  builders:\n    - {name: cust, kind: http, url: "${svc.url}/orders/{{user_id}}"}\n`);
    let issues: ConfigError['issues'] = [];
    try {
      loadConfigFile(file);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      issues = err.issues;
    }
    const shown = issues.map((i) => i.path.replace(/^.*templates[\\/]/, ''));
    expect(shown).toContain('w.yaml: versions[0].variables.cust (line 5)');
    expect(shown).toContain('w.yaml: versions[0].context.recipes[0].weight (line 8)');
  });
});
