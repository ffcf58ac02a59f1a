/**
 * Review: what happens after a request, read end to end (exchange -> onRequestDone ->
 * metrics, recipe statistics, feedback ledger; and config reloads).
 *
 * - A context recipe's metric named in the config is a config label value: it keeps its
 *   `metric` label when clients' feedback names have filled the `max_label_values` slots.
 * - The feedback ledger remembers a request even when the recipe accounting before it fails.
 * - A reload the gateway has switched to is not reported as rejected when a step after the
 *   switch fails.
 * - A feedback metric no `POST /v1/feedback` can send (`feedback.Helpful`), or an experiment
 *   metric that is never recorded (`latenc_ms`), is refused at load.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ContextRuntime } from '../src/context/runtime.js';
import { mockConfig, postJson, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { captureGatewayLog, type GatewayLogCapture } from './helpers/gateway-log.js';
import { scrapeMetricsText } from './helpers/metrics.js';
import { startMockUpstream, type MockUpstream } from './helpers/mock-upstream.js';
import { until } from './helpers/raw-socket.js';

let upstream: MockUpstream;
let log: GatewayLogCapture;
const gateways: TestGateway[] = [];
beforeAll(async () => {
  upstream = await startMockUpstream();
  log = captureGatewayLog();
});
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(gateways.splice(0).map((g) => g.close()));
});
afterAll(async () => {
  log.restore();
  await upstream.close();
});

const EXPERIMENT = `
bindings: [{model: support-bot, experiment: support-tone}]
experiments:
  - id: support-tone
    template: support-reply
    variants: [{name: control, version: 1.0.0, weight: 50}, {name: warm, version: 1.1.0, weight: 50}]
    metrics: [success]
`;

function recipeTemplate(metric: string): string {
  return `id: recipe-t
versions:
  - version: "1.0.0"
    context:
      use: [tier_rules]
      recipes: [{name: small}, {name: large}]
      recipe_selection: {mode: bandit, metric: ${metric}}
    messages: [{role: system, content: "Limit {{tier_rules.limit}}."}]
`;
}

const RECIPES = `
context:
  builders:
    - {name: tier_rules, kind: rules, defaults: {limit: 50}}
`;

/** A gateway that logs (mockConfig's are silent): the tests read its error lines. */
async function start(yaml: string, templateFiles?: Record<string, string>): Promise<TestGateway> {
  const gw = await startTestGateway(yaml.replace('logging: {level: silent}\n', ''), { templates: ['config/templates/support-reply.yaml'], templateFiles });
  gateways.push(gw);
  return gw;
}

const chat = (gw: TestGateway, model: string, user: string) => postJson(gw.url, '/v1/chat/completions', { model, user, messages: [{ role: 'user', content: 'hi' }] });

async function feedback(gw: TestGateway, requestId: string, metric: string): Promise<number> {
  const res = await postJson(gw.url, '/v1/feedback', { request_id: requestId, metric, value: 1 });
  return res.status;
}

describe('after the request', () => {
  it("a recipe's configured metric keeps its label once clients' feedback names filled the slots", async () => {
    const base = mockConfig(upstream.url, `telemetry: {max_label_values: 2}\n${EXPERIMENT}`);
    const gw = await start(base);
    // Clients name feedback metrics freely: each new name takes a metric label slot.
    for (const name of ['one', 'two', 'three']) {
      const res = await chat(gw, 'support-bot', `user-${name}`);
      expect(res.status).toBe(200);
      expect(await feedback(gw, res.headers['x-promptgate-request-id'] as string, name)).toBe(200);
    }
    // A reload adds a recipe plan learning from feedback.rating: a name the config gives.
    writeFileSync(path.join(gw.dir, 'templates', 'recipe-t.yaml'), recipeTemplate('feedback.rating'));
    writeFileSync(gw.configFile, base.replace('bindings: [{model: support-bot, experiment: support-tone}]', 'bindings: [{model: support-bot, experiment: support-tone}, {model: recipe-bot, template: recipe-t}]') + RECIPES);
    await until(async () => (await scrapeMetricsText(gw.url)).includes('experiment="recipe-t@1.0.0:context"'), 5000);
    const lines = (await scrapeMetricsText(gw.url)).split('\n').filter((l) => l.startsWith('promptgate_experiment_observations_total{') && l.includes('experiment="recipe-t@1.0.0:context"'));
    expect(lines.some((l) => l.includes('metric="feedback.rating"'))).toBe(true);
    expect(lines.filter((l) => l.includes('metric="other"'))).toEqual([]);
  });

  it('the feedback ledger remembers a request whose recipe accounting failed', async () => {
    const gw = await start(mockConfig(upstream.url, EXPERIMENT));
    vi.spyOn(ContextRuntime.prototype, 'finish').mockImplementation(() => {
      throw new Error('recipe accounting failed');
    });
    const res = await chat(gw, 'support-bot', 'user-ledger');
    expect(res.status).toBe(200);
    const id = res.headers['x-promptgate-request-id'] as string;
    await until(() => log.accountingFaults(id).length > 0, 5000);
    expect(await feedback(gw, id, 'thumbs_up')).toBe(200);
  });

  it('a reload the gateway switched to is not reported as rejected when a later step fails', async () => {
    const base = mockConfig(upstream.url, EXPERIMENT).replace('logging: {level: silent}\n', '');
    const gw = await start(base);
    const generation = async () => ((await (await request(`${gw.url}/readyz`)).body.json()) as { config_generation: number }).config_generation;
    expect(await generation()).toBe(1);
    const before = log.others.length;
    vi.spyOn(ContextRuntime.prototype, 'prepare').mockImplementation(() => {
      throw new Error('prepare failed');
    });
    writeFileSync(gw.configFile, base.replace('metrics: [success]', 'metrics: [success, latency_ms]'));
    await until(async () => (await generation()) === 2, 5000);
    await until(() => log.others.slice(before).some((l) => l.includes('config reloaded')), 5000);
    const lines = log.others.slice(before);
    expect(lines.filter((l) => l.includes('config reload rejected'))).toEqual([]);
    const fault = lines.find((l) => l.includes('a step after the switch failed'));
    expect(fault).toBeDefined();
    expect(JSON.parse(fault!)).toMatchObject({ level: 'error', step: 'context', error: 'Error' });
  });
});

describe('feedback for a request id sent again', () => {
  // Regression: the ledger's entry for the finished request was used while a newer request
  // with the same id was still in flight: feedback went to the older request's variant.
  it('goes to the latest request with the id, also while that one is in flight', async () => {
    const gw = await start(mockConfig(upstream.url, EXPERIMENT));
    const id = `again-${Date.now()}`;
    const first = await postJson(gw.url, '/v1/chat/completions', { model: 'support-bot', user: 'user-again', messages: [{ role: 'user', content: 'hi' }] }, { 'x-request-id': id });
    expect(first.headers['x-promptgate-experiment']).toBe('support-tone');
    // The same id again, without a user: the baseline without the hash, out of the analysis.
    const second = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': id, 'x-mock-chunk-delay-ms': '150' },
      body: JSON.stringify({ model: 'support-bot', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(second.statusCode).toBe(200);
    expect(await feedback(gw, id, 'thumbs_up')).toBe(404);
    await second.body.text();
  });
});

describe('feedback metric names', () => {
  it('a recipe metric no POST /v1/feedback can send is refused at load, naming the field', async () => {
    await expect(start(mockConfig(upstream.url, `bindings: [{model: recipe-bot, template: recipe-t}]\n${RECIPES}`), { 'recipe-t.yaml': recipeTemplate('feedback.Helpful') })).rejects.toThrow(/recipe_selection\.metric/);
    await expect(start(mockConfig(upstream.url, `bindings: [{model: recipe-bot, template: recipe-t}]\n${RECIPES}`), { 'recipe-t.yaml': recipeTemplate('feedback.csat.v2') })).rejects.toThrow(/recipe_selection\.metric/);
  });

  it("an experiment's feedback metric no POST /v1/feedback can send is refused at load", async () => {
    await expect(start(mockConfig(upstream.url, EXPERIMENT.replace('metrics: [success]', 'metrics: [success, feedback.Helpful]')))).rejects.toThrow(/experiments\.0\.metrics\.1|experiments\[0\]\.metrics\[1\]/);
  });

  it("an experiment's metric that is never recorded (a typo) is refused at load", async () => {
    await expect(start(mockConfig(upstream.url, EXPERIMENT.replace('metrics: [success]', 'metrics: [success, latenc_ms]')))).rejects.toThrow(/experiments\.0\.metrics\.1|experiments\[0\]\.metrics\[1\]/);
  });

  it('the names the route takes load', async () => {
    const gw = await start(mockConfig(upstream.url, `bindings: [{model: support-bot, experiment: support-tone}, {model: recipe-bot, template: recipe-t}]\n${EXPERIMENT.replace(/^bindings.*$/m, '').replace('metrics: [success]', 'metrics: [success, feedback.thumbs_up]')}${RECIPES}`), { 'recipe-t.yaml': recipeTemplate('feedback.csat_2') });
    expect((await chat(gw, 'recipe-bot', 'user-a')).status).toBe(200);
  });
});
