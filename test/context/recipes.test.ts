/** Adaptive context: recipe experiments (hash assignment) and the Thompson-sampling bandit. */
import { afterEach, describe, expect, it } from 'vitest';
import { BetaBandit, sampleBeta } from '../../src/context/bandit.js';
import { buildContext } from '../../src/context/build.js';
import { selectRecipe } from '../../src/context/recipes.js';
import { ContextRuntime, type RecipeObservation } from '../../src/context/runtime.js';
import { bucketOf } from '../../src/experiments/hash.js';
import type { RequestRecord } from '../../src/telemetry/types.js';
import { makeContext, seededRandom } from './helpers.js';

let rt: ContextRuntime | undefined;
afterEach(async () => {
  await rt?.close();
  rt = undefined;
});

const builders = {
  builders: [
    { name: 'knowledge', kind: 'knowledge', dir: 'config/knowledge', top_k: 3 },
    { name: 'history', kind: 'history', max_turns: 10 },
  ],
};
const recipes = [
  { name: 'k3', knowledge_top_k: 3, use: ['knowledge'] },
  { name: 'k5', knowledge_top_k: 5, history_max_turns: 2 },
];
const messages = [
  { role: 'user', content: 'one' },
  { role: 'assistant', content: 'two' },
  { role: 'user', content: 'three' },
  { role: 'assistant', content: 'four' },
  { role: 'user', content: 'how do refunds work for a lost parcel?' },
];

describe('recipe experiment', () => {
  it('assigns by the experiment rule with salt <template>@<version>:context and applies the recipe', async () => {
    rt = new ContextRuntime();
    const { plan } = makeContext(builders, { use: ['knowledge', 'history'], recipes, recipe_selection: { mode: 'experiment' } });
    expect(plan.experiment).toBe('t@1.0.0:context');
    for (const user of ['user-1', 'user-2', 'user-3', 'alice@example.com']) {
      const expected = bucketOf('t@1.0.0:context', user) < 5000 ? 'k3' : 'k5';
      const r = await buildContext(rt, plan, { messages, userId: user, variables: {} });
      expect(r.report).toMatchObject({ recipe: expected, recipeAssignment: 'hash', recipeExperiment: 't@1.0.0:context' });
      if (expected === 'k3') {
        expect(r.variables.knowledge).toHaveLength(3);
        expect(r.variables.history).toBeUndefined(); // not in this recipe's use
      } else {
        expect(r.variables.knowledge).toHaveLength(5);
        expect(r.variables.history).toEqual([
          { role: 'user', content: 'three' },
          { role: 'assistant', content: 'four' },
        ]);
      }
    }
  });

  it('weights recipes like experiment variants, and serves the first recipe without a user id', () => {
    rt = new ContextRuntime();
    const { plan } = makeContext(builders, { use: ['knowledge'], recipes: [{ name: 'a', weight: 1 }, { name: 'b', weight: 3 }] });
    expect(plan.recipes.map((r) => [r.name, r.from, r.to])).toEqual([
      ['a', 0, 2500],
      ['b', 2500, 10000],
    ]);
    expect(selectRecipe(plan, undefined, rt)).toMatchObject({ recipe: { name: 'a' }, assignment: 'default' });
    let b = 0;
    for (let i = 0; i < 2000; i++) if (selectRecipe(plan, `u${i}`, rt).recipe.name === 'b') b++;
    expect(b / 2000).toBeGreaterThan(0.7);
    expect(b / 2000).toBeLessThan(0.8);
  });
});

describe('bandit', () => {
  // Variants with a weight too small for one bucket are a config error; recipes were not
  // checked, and such a recipe was never served.
  it('rejects a recipe weight that gives it no buckets, as for experiment variants', () => {
    const recipes = [{ name: 'tiny', weight: 1 }, { name: 'big', weight: 100_000 }];
    expect(() => makeContext(builders, { use: ['knowledge'], recipes, recipe_selection: { mode: 'experiment' } })).toThrow(/recipes\[0\]\.weight.*gives recipe \\"tiny\\" no buckets/);
    // A bandit does not use the weights.
    expect(() => makeContext(builders, { use: ['knowledge'], recipes, recipe_selection: { mode: 'bandit' } })).not.toThrow();
  });

  it('samples Beta(a, b) with the right mean', () => {
    const rng = seededRandom(7);
    let sum = 0;
    for (let i = 0; i < 20_000; i++) sum += sampleBeta(3, 7, rng);
    expect(sum / 20_000).toBeCloseTo(0.3, 2);
  });

  it('converges to the better recipe on a synthetic reward and keeps exploring at the floor', () => {
    const rng = seededRandom(42);
    const bandit = new BetaBandit(rng);
    const rate: Record<string, number> = { lean: 0.55, rich: 0.75 };
    const chosen: Record<string, number> = { lean: 0, rich: 0 };
    const late: Record<string, number> = { lean: 0, rich: 0 };
    const N = 5000;
    for (let i = 0; i < N; i++) {
      const arm = bandit.choose(['lean', 'rich'], 0.1);
      chosen[arm]++;
      if (i >= N - 2000) late[arm]++;
      bandit.observe(arm, rng() < rate[arm] ? 1 : 0);
    }
    expect(late.rich / 2000).toBeGreaterThan(0.85); // exploits the better recipe
    // ...but the worse one keeps at least about min_exploration / arms = 5% of late traffic.
    expect(late.lean / 2000).toBeGreaterThan(0.035);
    const s = bandit.snapshot();
    expect(s.rich.mean).toBeCloseTo(0.75, 1);
    expect(s.rich.n + s.lean.n).toBe(N);
  });

  it('learns from request outcomes through the runtime (success metric) and records recipe statistics', async () => {
    const observed: RecipeObservation[] = [];
    rt = new ContextRuntime({ rng: seededRandom(1), observeExperiment: (o) => observed.push(o) });
    const { plan } = makeContext(builders, { use: ['knowledge'], recipes: [{ name: 'bad' }, { name: 'good' }], recipe_selection: { mode: 'bandit', min_exploration: 0.1 } });
    const rng = seededRandom(2);
    let lateGood = 0;
    for (let i = 0; i < 600; i++) {
      const r = await buildContext(rt, plan, { messages, userId: `u${i}`, variables: {} });
      expect(r.report.recipeAssignment).toBe('bandit');
      const ok = rng() < (r.report.recipe === 'good' ? 0.9 : 0.3);
      if (i >= 400 && r.report.recipe === 'good') lateGood++;
      rt.finish(record({ contextExperiment: r.report.recipeExperiment, contextRecipe: r.report.recipe, contextRecipeAssignment: 'bandit', outcome: ok ? 'ok' : 'error' }));
    }
    expect(lateGood / 200).toBeGreaterThan(0.8);
    const snap = rt.banditSnapshot('t@1.0.0:context')!;
    expect(snap.good.n + snap.bad.n).toBe(600);
    const successes = observed.filter((o) => o.metric === 'success');
    expect(successes).toHaveLength(600);
    expect(successes[0]).toMatchObject({ experiment: 't@1.0.0:context', variant: expect.stringMatching(/^(good|bad)$/) });
  });

  it('a feedback-metric bandit learns from observeFeedback, not from the outcome', async () => {
    rt = new ContextRuntime({ rng: seededRandom(3) });
    const { plan } = makeContext(builders, { use: ['knowledge'], recipes: [{ name: 'a' }, { name: 'b' }], recipe_selection: { mode: 'bandit', metric: 'feedback.thumbs_up' } });
    const r = await buildContext(rt, plan, { messages, userId: 'u', variables: {}, requestId: 'req-1' });
    rt.finish(record({ requestId: 'req-1', contextExperiment: plan.experiment, contextRecipe: r.report.recipe, contextRecipeAssignment: 'bandit' }));
    expect(rt.banditSnapshot(plan.experiment)![r.report.recipe!].n).toBe(0);
    expect(rt.observeFeedback('req-1', 'feedback.other', 1)).toBe(false);
    expect(rt.observeFeedback('req-1', 'feedback.thumbs_up', 1)).toBe(true);
    expect(rt.banditSnapshot(plan.experiment)![r.report.recipe!]).toMatchObject({ n: 1, alpha: 2, beta: 1 });
    expect(rt.observeFeedback('req-1', 'feedback.thumbs_up', 1)).toBe(false); // once per request
  });

  // The bandit was keyed by experiment only: after `recipe_selection.metric` changed, the
  // posteriors learned from the old metric went on, mixed with the new one's rewards.
  it('starts afresh when its metric changes', async () => {
    rt = new ContextRuntime({ rng: seededRandom(4) });
    const planFor = (metric: string) => makeContext(builders, { use: ['knowledge'], recipes: [{ name: 'a' }, { name: 'b' }], recipe_selection: { mode: 'bandit', metric } }).plan;
    const first = planFor('success');
    for (let i = 0; i < 20; i++) {
      const r = await buildContext(rt, first, { messages, userId: `u${i}`, variables: {} });
      rt.finish(record({ contextExperiment: r.report.recipeExperiment, contextRecipe: r.report.recipe, contextRecipeAssignment: 'bandit' }));
    }
    const learned = rt.banditSnapshot(first.experiment)!;
    expect(learned.a.n + learned.b.n).toBe(20);
    const second = planFor('feedback.thumbs_up');
    const r = await buildContext(rt, second, { messages, userId: 'v', variables: {}, requestId: 'req-new' });
    const fresh = rt.banditSnapshot(second.experiment)!;
    expect(Object.values(fresh).reduce((n, arm) => n + arm.n, 0)).toBe(0);
    expect(rt.observeFeedback('req-new', 'feedback.thumbs_up', 1)).toBe(true);
    expect(rt.banditSnapshot(second.experiment)![r.report.recipe!]).toMatchObject({ n: 1, alpha: 2, beta: 1 });
  });

  it('remembers a feedback-metric request for feedback as long as the feedback route does (100,000 requests)', async () => {
    rt = new ContextRuntime();
    for (let i = 0; i < 100_000; i++) rt.awaitFeedback(`req-${i}`, 'e', 'a', 'feedback.thumbs_up');
    expect(rt.observeFeedback('req-0', 'feedback.thumbs_up', 1)).toBe(true);
  });
});

function record(patch: Partial<RequestRecord>): RequestRecord {
  return { requestId: 'r', route: '/v1/chat/completions', method: 'POST', status: 200, outcome: 'ok', stream: false, attempts: 1, latencyMs: 10, ...patch };
}
