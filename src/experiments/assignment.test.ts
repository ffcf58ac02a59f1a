import { describe, expect, it } from 'vitest';
import { assign, currentStage, isActive, variantForBucket } from './assignment.js';
import { compileExperiments, variantWidths } from './compile.js';
import { bucketOf, rolloutBucketOf } from './hash.js';
import { experimentSchema } from './config-schema.js';
import { compileIdentity } from '../prompts/identity.js';
import { parseExact } from '../proxy/exact-json.js';
import { testExperiment, testRegistry } from './test-helpers.js';

const DAY = 86_400_000;
const START = new Date('2026-11-20T00:00:00Z');
const END = new Date('2026-12-20T00:00:00Z');
const at = (ms: number) => new Date(START.getTime() + ms);

describe('variant bucket ranges', () => {
  it.each([
    [[50, 50], [5000, 5000]],
    [[1, 1, 1], [3333, 3333, 3334]],
    [[1, 2], [3333, 6667]],
    [[90, 10], [9000, 1000]],
    [[1, 1, 1, 1, 1, 1], [1667, 1667, 1667, 1667, 1667, 1665]],
    [[0.3, 0.3, 0.4], [3000, 3000, 4000]],
  ])('weights %j -> widths %j', (weights, widths) => {
    expect(variantWidths(weights)).toEqual(widths);
  });

  it('lays variants out as consecutive ranges in listed order', () => {
    const exp = testExperiment({ id: 'e', variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'b', version: '1.1.0', weight: 1 }, { name: 'c', version: '1.2.0', weight: 1 }] });
    expect(exp.variants.map((v) => [v.name, v.from, v.to])).toEqual([
      ['a', 0, 3333],
      ['b', 3333, 6666],
      ['c', 6666, 10000],
    ]);
    expect([0, 3332, 3333, 6665, 6666, 9999].map((b) => variantForBucket(exp, b).name)).toEqual(['a', 'a', 'b', 'b', 'c', 'c']);
  });
});

describe('compileExperiments validation', () => {
  const compile = (input: Record<string, unknown>) =>
    compileExperiments([experimentSchema.parse({ id: 'e', template: 't', ...input })], testRegistry()).issues;

  it('reports an unknown template and unknown versions with their paths', () => {
    expect(compile({ template: 'nope', variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'b', version: '1.1.0', weight: 1 }] })).toEqual([
      { path: 'experiments[0].template', message: 'unknown template "nope" (known: t)' },
    ]);
    expect(compile({ variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'b', version: '3.0.0', weight: 1 }] })).toEqual([
      { path: 'experiments[0].variants[1].version', message: 'template "t" has no version "3.0.0" (versions: 1.2.0, 1.1.0, 1.0.0)' },
    ]);
  });

  it('requires an exact version, not a label', () => {
    expect(compile({ variants: [{ name: 'a', version: 'production', weight: 1 }, { name: 'b', version: '1.1.0', weight: 1 }] })[0].path).toBe(
      'experiments[0].variants[0].version',
    );
  });

  it('rejects a weight too small for one bucket', () => {
    expect(compile({ variants: [{ name: 'a', version: '1.0.0', weight: 100000 }, { name: 'b', version: '1.1.0', weight: 0.01 }] })[0]).toMatchObject({
      path: 'experiments[0].variants[1].weight',
    });
  });

  it('rejects duplicate ids', () => {
    const cfg = experimentSchema.parse({ id: 'e', template: 't', variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'b', version: '1.1.0', weight: 1 }] });
    expect(compileExperiments([cfg, cfg], testRegistry()).issues).toEqual([{ path: 'experiments[1].id', message: 'duplicate experiment id "e"' }]);
  });

  it('schema: rejects non-positive weights, one variant, duplicate names, rollout without start, end before start, decreasing stages', () => {
    const base = { id: 'e', template: 't', variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'b', version: '1.1.0', weight: 1 }] };
    const paths = (input: Record<string, unknown>) => experimentSchema.safeParse({ ...base, ...input }).error?.issues.map((i) => i.path.join('.'));
    expect(paths({ variants: [{ name: 'a', version: '1.0.0', weight: 0 }, { name: 'b', version: '1.1.0', weight: 1 }] })).toEqual(['variants.0.weight']);
    expect(paths({ variants: [{ name: 'a', version: '1.0.0', weight: 1 }] })).toEqual(['variants']);
    expect(paths({ variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'a', version: '1.1.0', weight: 1 }] })).toEqual(['variants.1.name']);
    expect(paths({ rollout: { stages: [5, 100], every: '24h' } })).toEqual(['rollout']);
    expect(paths({ start: '2026-12-01T00:00:00Z', end: '2026-11-01T00:00:00Z' })).toEqual(['end']);
    expect(paths({ start: '2026-12-01T00:00:00Z', rollout: { stages: [50, 25], every: '24h' } })).toEqual(['rollout.stages.1']);
    expect(paths({ start: '2026-12-01T00:00:00Z', rollout: { stages: [50], every: '0h' } })).toEqual(['rollout.every']);
    expect(paths({ start: '2026-12-01 00:00' })).toEqual(['start']);
    expect(paths({ start: '2026-12-01T00:00:00Z', end: '2026-12-02' })).toBeUndefined();
  });

  it('schema: rejects a day the month does not have instead of rolling over into the next month', () => {
    const base = { id: 'e', template: 't', variants: [{ name: 'a', version: '1.0.0', weight: 1 }, { name: 'b', version: '1.1.0', weight: 1 }] };
    const paths = (input: Record<string, unknown>) => experimentSchema.safeParse({ ...base, ...input }).error?.issues.map((i) => i.path.join('.'));
    expect(paths({ end: '2026-11-31' })).toEqual(['end']);
    expect(paths({ start: '2026-02-29T00:00:00+01:00' })).toEqual(['start']);
    expect(paths({ start: '2028-02-29T00:00:00Z', end: '2028-12-31T23:59:59.5-05:00' })).toBeUndefined();
  });
});

describe('assign: schedule and identity', () => {
  const exp = testExperiment({
    id: 'support-tone-v1',
    variants: [{ name: 'control', version: '1.0.0', weight: 50 }, { name: 'warm', version: '1.1.0', weight: 50 }],
    start: START.toISOString(),
    end: END.toISOString(),
  });

  it('uses the DESIGN.md bucket: user-123 -> 7686 -> warm, alice -> 188 -> control', () => {
    expect(assign(exp, 'user-123', at(DAY))).toMatchObject({ bucket: 7686, reason: 'assigned', variant: { name: 'warm', version: '1.1.0' } });
    expect(assign(exp, 'alice@example.com', at(DAY))).toMatchObject({ bucket: 188, reason: 'assigned', variant: { name: 'control' } });
  });

  it('gives the baseline outside start..end (start inclusive, end exclusive)', () => {
    expect(assign(exp, 'user-123', at(-1))).toMatchObject({ variant: { name: 'control' }, reason: 'outside_schedule', bucket: 7686 });
    expect(assign(exp, 'user-123', START).reason).toBe('assigned');
    expect(assign(exp, 'user-123', END)).toMatchObject({ variant: { name: 'control' }, reason: 'outside_schedule' });
    expect([isActive(exp, at(-1)), isActive(exp, START), isActive(exp, at(END.getTime() - START.getTime() - 1)), isActive(exp, END)]).toEqual([
      false,
      true,
      true,
      false,
    ]);
  });

  it('gives the baseline to a request without a user id, reason no_user', () => {
    expect(assign(exp, undefined, at(DAY))).toEqual({ variant: exp.baseline, reason: 'no_user' });
    expect(assign(exp, '', at(DAY)).reason).toBe('no_user');
  });

  it('takes a long user id whole (no cut before hashing): ids sharing a 256-character prefix are different users', () => {
    const userIdOf = compileIdentity(['body.user', 'header.x-user-id']);
    const prefix = `tenant-${'x'.repeat(300)}`;
    const ids = Array.from({ length: 20 }, (_, i) => `${prefix}:user-${i}`);
    expect(ids.map((id) => userIdOf({ user: id }, () => undefined))).toEqual(ids);
    expect(userIdOf({}, () => ids[3])).toBe(ids[3]);
    const buckets = new Set(ids.map((id) => assign(exp, userIdOf({ user: id }, () => undefined), at(DAY)).bucket));
    expect(buckets.size).toBeGreaterThan(1);
  });

  // Regression: a numeric id past 2^53 was read as a double: 12345678901234567890 and
  // 12345678901234567891 were one user ("12345678901234567000"), in a bucket no other system computes.
  it('takes a numeric user id past 2^53 as the client wrote it (body parsed exactly)', () => {
    const userIdOf = compileIdentity(['body.user', 'body.metadata.user_id']);
    const a = parseExact('{"user": 12345678901234567890}') as Record<string, unknown>;
    const b = parseExact('{"user": 12345678901234567891}') as Record<string, unknown>;
    expect(userIdOf(a, () => undefined)).toBe('12345678901234567890');
    expect(userIdOf(b, () => undefined)).toBe('12345678901234567891');
    expect(userIdOf(parseExact('{"metadata": {"user_id": 98765432109876543210}}') as Record<string, unknown>, () => undefined)).toBe('98765432109876543210');
    expect(userIdOf({ user: 42 }, () => undefined)).toBe('42');
  });

  // Regression: Node reads header bytes as Latin-1, so a UTF-8 id in x-user-id hashed other
  // bytes (another bucket) than the same id in body.user.
  it('reads a UTF-8 user id from a header as the same id the body would give', () => {
    const userIdOf = compileIdentity(['body.user', 'header.x-user-id']);
    const asNodeReadsIt = Buffer.from('zoë-渡辺', 'utf8').toString('latin1');
    expect(userIdOf({}, () => asNodeReadsIt)).toBe('zoë-渡辺');
    expect(userIdOf({}, () => 'caf\xe9')).toBe('caf\xe9'); // not UTF-8: kept as read
    expect(userIdOf({}, () => '  user-1 ')).toBe('user-1');
  });

  it('uses the salt when set, the id otherwise', () => {
    const salted = testExperiment({ id: 'other', salt: 'support-tone-v1', variants: [{ name: 'c', version: '1.0.0', weight: 1 }, { name: 'w', version: '1.1.0', weight: 1 }] });
    expect(assign(salted, 'user-124', new Date()).bucket).toBe(5833);
    expect(assign(testExperiment({ id: 'other', variants: [{ name: 'c', version: '1.0.0', weight: 1 }, { name: 'w', version: '1.1.0', weight: 1 }] }), 'user-124', new Date()).bucket).toBe(
      bucketOf('other', 'user-124'),
    );
  });
});

describe('rollout', () => {
  const exp = testExperiment({
    id: 'roll',
    variants: [
      { name: 'control', version: '1.0.0', weight: 34 },
      { name: 'a', version: '1.1.0', weight: 33 },
      { name: 'b', version: '1.2.0', weight: 33 },
    ],
    start: START.toISOString(),
    rollout: { stages: [5, 25, 50, 100], every: '24h' },
  });

  it('advances one stage per period and stays at the last', () => {
    expect(currentStage(exp, at(-1))).toBeNull();
    expect(currentStage(exp, START)).toEqual({ index: 0, percent: 5, startedAt: START, nextAt: at(DAY) });
    expect(currentStage(exp, at(DAY - 1))?.percent).toBe(5);
    expect(currentStage(exp, at(DAY))?.percent).toBe(25);
    expect(currentStage(exp, at(2 * DAY + 5))).toMatchObject({ index: 2, percent: 50 });
    expect(currentStage(exp, at(30 * DAY))).toEqual({ index: 3, percent: 100, startedAt: at(3 * DAY), nextAt: null });
  });

  it('is null without a rollout', () => {
    expect(currentStage(testExperiment({ id: 'x', variants: [{ name: 'c', version: '1.0.0', weight: 1 }, { name: 'w', version: '1.1.0', weight: 1 }] }), START)).toBeNull();
  });

  it('over 20k users: exposure only grows, nobody moves between non-baseline variants, shares match the stage', () => {
    const users = Array.from({ length: 20_000 }, (_, i) => `u${i}`);
    const seen = new Map<string, string>(); // user -> non-baseline variant once exposed
    const violations: string[] = [];
    const exposedPerStage: number[] = [];
    for (const [k, percent] of [5, 25, 50, 100].entries()) {
      const now = at(k * DAY + 3_600_000);
      let exposed = 0;
      for (const user of users) {
        const a = assign(exp, user, now);
        const prior = seen.get(user);
        if (a.variant.name === 'control') {
          if (prior !== undefined) violations.push(`${user} was exposed to ${prior}, withdrawn at stage ${k}`);
          continue;
        }
        exposed++;
        if (prior !== undefined && prior !== a.variant.name) violations.push(`${user} moved ${prior} -> ${a.variant.name}`);
        seen.set(user, a.variant.name);
      }
      // 66% of users have a non-baseline variant; the stage exposes `percent` of them.
      expect(Math.abs(exposed - users.length * 0.66 * (percent / 100))).toBeLessThan(0.02 * users.length);
      exposedPerStage.push(exposed);
    }
    expect(violations).toEqual([]);
    expect([...exposedPerStage].sort((a, b) => a - b)).toEqual(exposedPerStage);
    // At 100% everyone is in their plain (no rollout) variant.
    const plain = testExperiment({ id: 'roll', variants: exp.config.variants });
    const differs = users.filter((u) => assign(exp, u, at(10 * DAY)).variant.name !== assign(plain, u, at(10 * DAY)).variant.name);
    expect(differs).toEqual([]);
  });

  it('exposes exactly rollout_bucket < stage_percent * 100 at fractional stages (0.17% -> buckets 0..16)', () => {
    // In doubles 0.17 * 100 is 17 but 0.17 * 10000 / 100 is 17.000000000000004: bucket 17 is the edge.
    const fine = testExperiment({ id: 'fine', variants: exp.config.variants, start: START.toISOString(), rollout: { stages: [0.17], every: '24h' } });
    const userAt = (rb: number) => {
      for (let i = 0; ; i++) if (rolloutBucketOf('fine', `r${i}`) === rb && variantForBucket(fine, bucketOf('fine', `r${i}`)) !== fine.baseline) return `r${i}`;
    };
    expect(assign(fine, userAt(16), START)).toMatchObject({ rolloutBucket: 16, reason: 'assigned' });
    expect(assign(fine, userAt(17), START)).toMatchObject({ rolloutBucket: 17, reason: 'rollout_holdback', variant: { name: 'control' } });
  });

  // Only non-baseline users were held back: at a 5% stage all of the baseline's users were
  // `assigned` and 5% of the others, a 30:1 split in the analysis that changed with every
  // stage, so pooled results mixed periods (a time effect read as a variant effect).
  it('holds back every variant alike: the assigned split matches the weights at every stage (chi-square, p > 0.001)', () => {
    const users = Array.from({ length: 20_000 }, (_, i) => `s${i}`);
    for (const k of [0, 1, 2, 3]) {
      const counts = new Map<string, number>([['control', 0], ['a', 0], ['b', 0]]);
      for (const u of users) {
        const r = assign(exp, u, at(k * DAY + 60_000));
        if (r.reason === 'assigned') counts.set(r.variant.name, counts.get(r.variant.name)! + 1);
      }
      const n = [...counts.values()].reduce((x, y) => x + y, 0);
      expect(Math.abs(n - users.length * [0.05, 0.25, 0.5, 1][k])).toBeLessThan(0.02 * users.length);
      const expected = [0.34, 0.33, 0.33].map((w) => w * n);
      const chi = [...counts.values()].reduce((sum, c, i) => sum + (c - expected[i]) ** 2 / expected[i], 0);
      expect(chiSquareUpperTail(chi, 2)).toBeGreaterThan(0.001);
    }
  });

  it('holds back users by the independent rollout bucket, reason rollout_holdback', () => {
    const results = Array.from({ length: 2000 }, (_, i) => assign(exp, `h${i}`, START));
    const held = results.filter((r) => r.reason === 'rollout_holdback');
    expect(held.length).toBeGreaterThan(0);
    for (const r of held) {
      expect(r.variant.name).toBe('control');
      expect(r.rolloutBucket).toBeGreaterThanOrEqual(500);
    }
    for (const r of results.filter((x) => x.variant.name !== 'control')) expect(r.rolloutBucket).toBeLessThan(500);
  });
});

describe('uniformity', () => {
  it('buckets of 100k synthetic ids are uniform (chi-square over 100 bins, p > 0.001)', () => {
    const bins = new Array<number>(100).fill(0);
    for (let i = 0; i < 100_000; i++) bins[Math.floor(bucketOf('support-tone', `user-${i}`) / 100)]++;
    expect(chiSquarePValue(bins)).toBeGreaterThan(0.001);
  });

  it('a 50/50 split over 100k ids is balanced (chi-square, p > 0.001)', () => {
    const exp = testExperiment({ id: 'split', variants: [{ name: 'c', version: '1.0.0', weight: 50 }, { name: 'w', version: '1.1.0', weight: 50 }] });
    const counts = [0, 0];
    for (let i = 0; i < 100_000; i++) counts[assign(exp, `id-${i}`, new Date()).variant.name === 'c' ? 0 : 1]++;
    expect(chiSquarePValue(counts)).toBeGreaterThan(0.001);
  });

  it('the p-value matches chi-square tables (df 99: 123.225 -> 0.05, 148.230 -> 0.001)', () => {
    expect(chiSquareUpperTail(123.225, 99)).toBeCloseTo(0.05, 3);
    expect(chiSquareUpperTail(148.23, 99)).toBeCloseTo(0.001, 4);
    expect(chiSquareUpperTail(10.828, 1)).toBeCloseTo(0.001, 3);
  });

  it('the test itself rejects a skewed histogram (so it can fail)', () => {
    const skewed = Array.from({ length: 100 }, (_, i) => (i < 20 ? 1100 : i < 40 ? 900 : 1000));
    expect(chiSquarePValue(skewed)).toBeLessThan(0.001);
  });
});

/**
 * Upper-tail p-value of Pearson's chi-square test against equal expected counts.
 * Wilson–Hilferty: (X/k)^(1/3) is approximately normal with mean 1 - 2/(9k) and variance
 * 2/(9k); close to table values for k >= 1 at these tails (checked above).
 */
function chiSquarePValue(observed: readonly number[]): number {
  const total = observed.reduce((a, b) => a + b, 0);
  const expected = total / observed.length;
  const x = observed.reduce((acc, o) => acc + (o - expected) ** 2 / expected, 0);
  return chiSquareUpperTail(x, observed.length - 1);
}

/** P(X >= x) for X ~ chi-square with k degrees of freedom (Wilson–Hilferty). */
function chiSquareUpperTail(x: number, k: number): number {
  const z = (Math.cbrt(x / k) - (1 - 2 / (9 * k))) / Math.sqrt(2 / (9 * k));
  return 0.5 * erfc(z / Math.SQRT2);
}

/** Complementary error function (Numerical Recipes `erfcc`, |error| < 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}
