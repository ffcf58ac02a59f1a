/**
 * Regressions found reviewing context injection (fifth pass): each test is named after
 * what broke. Real services on 127.0.0.1 (port 0), closed by the test file.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildContext } from '../../src/context/build.js';
import { ContextRuntime } from '../../src/context/runtime.js';
import { mockConfig, startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { scrapeMetricsText } from '../helpers/metrics.js';
import { makeContext, sleep, startJsonService, type JsonService } from './helpers.js';

let svc: JsonService;
let upstream: MockUpstream;
let rt: ContextRuntime | undefined;
let gw: TestGateway | undefined;
beforeAll(async () => {
  svc = await startJsonService();
  upstream = await startMockUpstream();
});
afterAll(async () => {
  await svc.close();
  await upstream.close();
});
afterEach(async () => {
  await rt?.close();
  rt = undefined;
  await gw?.close();
  gw = undefined;
  svc.requests.length = 0;
  upstream.requests.length = 0;
});

const http = (name: string, p: string, extra: Record<string, unknown> = {}) => ({ name, kind: 'http', url: `${svc.url}${p}`, ...extra });

describe('a recipe whose required builder fails the request (424 context_unavailable)', () => {
  // README "Adaptive context": recipe statistics count `success` for every request (an error
  // counts 0) and a `success` bandit is rewarded 0 for an error. A request that a recipe's
  // required builder failed with 424 was recorded without its recipe: it counted nowhere,
  // so the recipe that fails showed a 100% success rate and its bandit arm was never
  // penalised (it kept its share of traffic however often it failed).
  it('counts as an error of the recipe that served it in the recipe statistics (the record a success bandit is rewarded from)', async () => {
    svc.route(/^\/down-profile\//, (_req, res) => {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end('{"error":"down"}');
    });
    const dir = mkdtempSync(path.join(tmpdir(), 'promptgate-tpl5-'));
    const file = path.join(dir, 'recipe-check.yaml');
    writeFileSync(
      file,
      `id: recipe-check
name: Recipe check
versions:
  - version: "1.0.0"
    labels: [production]
    model: gpt-4o-mini
    context:
      use: [customer, tier_rules]
      recipes:
        - {name: with_profile, use: [customer, tier_rules]}
        - {name: rules_only, use: [tier_rules]}
      recipe_selection: {mode: bandit, metric: success, min_exploration: 1}
    messages:
      - role: system
        content: "Tier: {{customer.tier}}. Limit {{tier_rules.limit}}."
`,
    );
    const extra = `
bindings: [{model: recipe-bot, template: recipe-check}]
context:
  deadline_ms: 500
  builders:
    - {name: customer, kind: http, url: "${svc.url}/down-profile/{{user_id}}", required: true}
    - {name: tier_rules, kind: rules, defaults: {limit: 50}}
`;
    gw = await startTestGateway(mockConfig(upstream.url, extra), { templates: [file] });
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) {
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'recipe-bot', user: `u${i}`, messages: [{ role: 'user', content: 'hi' }] }),
      });
      const body = (await res.body.json()) as { error?: { code?: string; message?: string } };
      statuses.push(res.statusCode);
      if (res.statusCode === 424) expect(body.error).toMatchObject({ code: 'context_unavailable', message: 'Required context "customer" is unavailable (http_5xx).' });
    }
    const failed = statuses.filter((s) => s === 424).length;
    const ok = statuses.filter((s) => s === 200).length;
    expect(failed).toBeGreaterThan(0);
    expect(ok).toBeGreaterThan(0);
    expect(failed + ok).toBe(30);
    await sleep(50); // onRequestDone runs when the response is done

    const text = await scrapeMetricsText(gw.url);
    const count = (variant: string) => {
      const line = text.split('\n').find((l) => l.startsWith('promptgate_experiment_observations_total{') && l.includes(`variant="${variant}"`) && l.includes('metric="success"'));
      return line === undefined ? 0 : Number(line.split(' ').at(-1));
    };
    const sum = (variant: string) => {
      const line = text.split('\n').find((l) => l.startsWith('promptgate_experiment_observations_sum_total{') && l.includes(`variant="${variant}"`) && l.includes('metric="success"'));
      return line === undefined ? 0 : Number(line.split(' ').at(-1));
    };
    // Every request served by with_profile failed: it is counted, with success 0.
    expect(count('with_profile')).toBe(failed);
    expect(sum('with_profile')).toBe(0);
    expect(count('rules_only')).toBe(ok);
    expect(sum('rules_only')).toBe(ok);
  });
});

describe('a knowledge passage larger than the whole budget', () => {
  // README "Token budget": passages are dropped from the lowest score up, and what fits is
  // given back so that one oversized section does not leave the request without context.
  // One long best passage (a whole article from a search endpoint) over the budget emptied
  // the knowledge section: the shorter passages after it, which fit, were dropped with it.
  it('is dropped, and the passages that fit are kept in score order', async () => {
    const long = 'Refund policy details. '.repeat(200);
    svc.route('/kb-long', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          results: [
            { title: 'Article', text: long, score: 9, source: 'a' },
            { title: 'Short one', text: 'Refunds take 5 days.', score: 5, source: 'b' },
            { title: 'Short two', text: 'Refunds go to the card used.', score: 4, source: 'c' },
          ],
        }),
      );
    });
    rt = new ContextRuntime();
    const { plan } = makeContext(
      { builders: [{ name: 'knowledge', kind: 'knowledge', top_k: 3, http: { url: `${svc.url}/kb-long?q={{query}}` } }] },
      { use: ['knowledge'], budget_tokens: 100 },
    );
    const r = await buildContext(rt, plan, { messages: [{ role: 'user', content: 'how long does a refund take?' }], userId: 'u', variables: {} });
    expect((r.variables.knowledge as Array<{ source: string }>).map((p) => p.source)).toEqual(['b', 'c']);
    expect(r.report.builders[0]).toMatchObject({ items: 2, trimmed: 1 });
    expect(r.report.tokens).toBeLessThanOrEqual(100);
    expect(r.report.tokens).toBe(r.report.builders[0].tokens);
    expect(r.report.dropped).toBe(1);
  });

  it('history keeps its newest turns contiguous: an oversized newest turn is not skipped over', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'history', kind: 'history', max_turns: 10 }] }, { use: ['history'], budget_tokens: 50 });
    const messages = [
      { role: 'user', content: 'first question' },
      { role: 'assistant', content: 'first answer' },
      { role: 'user', content: 'pasted: ' + 'log line '.repeat(200) },
      { role: 'assistant', content: 'second answer' },
      { role: 'user', content: 'now?' },
    ];
    const r = await buildContext(rt, plan, { messages, userId: 'u', variables: {} });
    expect((r.variables.history as Array<{ content: string }>).map((t) => t.content)).toEqual(['second answer']);
  });
});

describe('knowledge files saved on Windows (UTF-16 with a byte order mark, Latin-1)', () => {
  // Files were read as UTF-8 whatever they held: a UTF-16 file ("Unicode" in Notepad)
  // became text with a NUL between every letter and a Latin-1 one lost every accented letter
  // to U+FFFD, so their words never matched a question (and a retrieved passage was garbage).
  it('are decoded, indexed and retrieved with their text intact; an empty file is skipped', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kb-enc-'));
    const utf16 = '# Garantie\r\nLa garantie couvre les défauts de fabrication pendant deux ans.\r\n';
    writeFileSync(path.join(dir, 'garantie.md'), Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(utf16, 'utf16le')]));
    writeFileSync(path.join(dir, 'livraison.txt'), Buffer.from('Livraison: le café est expédié sous 48 heures.', 'latin1'));
    writeFileSync(path.join(dir, 'empty.md'), '');
    writeFileSync(path.join(dir, 'plain.md'), '# Retours\nLes retours sont gratuits – sous 30 jours.');
    rt = new ContextRuntime();
    const { plan } = makeContext({ builders: [{ name: 'knowledge', kind: 'knowledge', dir, top_k: 1 }] }, { use: ['knowledge'] });
    const ask = async (q: string) => {
      const r = await buildContext(rt!, plan, { messages: [{ role: 'user', content: q }], userId: 'u', variables: {} });
      return (r.variables.knowledge as Array<{ title: string; text: string; source: string }> | undefined) ?? [];
    };
    expect(await ask('garantie fabrication')).toEqual([
      expect.objectContaining({ title: 'Garantie', text: 'La garantie couvre les défauts de fabrication pendant deux ans.', source: 'garantie.md' }),
    ]);
    expect(await ask('café expédié')).toEqual([expect.objectContaining({ text: 'Livraison: le café est expédié sous 48 heures.', source: 'livraison.txt' })]);
    expect(await ask('retours gratuits')).toEqual([expect.objectContaining({ text: 'Les retours sont gratuits – sous 30 jours.', source: 'plain.md' })]);
  });
});
