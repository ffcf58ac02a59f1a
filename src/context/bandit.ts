/**
 * Thompson sampling over recipes with Beta posteriors (Beta(1, 1) prior). A reward in
 * [0, 1] adds `reward` to successes and `1 - reward` to failures. A share
 * `minExploration` of choices is uniform over the arms, so every recipe keeps getting at
 * least `minExploration / arms` of the traffic and a posterior can recover when the world
 * changes. State is in memory, per process, kept across config reloads by arm name.
 */

export interface ArmState {
  /** Successes + 1 (the prior). */
  alpha: number;
  /** Failures + 1. */
  beta: number;
  /** Rewards observed. */
  n: number;
  /** Times chosen. */
  chosen: number;
}

export class BetaBandit {
  readonly #arms = new Map<string, ArmState>();
  readonly #rng: () => number;

  /** @param rng uniform in [0, 1) (tests pass a seeded one) */
  constructor(rng: () => number = Math.random) {
    this.#rng = rng;
  }

  /**
   * Picks one of `arms` (arms never seen start at the prior).
   *
   * @example
   * const recipe = bandit.choose(['k3', 'k5'], 0.1);
   * // ...later, when the request's outcome is known:
   * bandit.observe(recipe, outcome === 'ok' ? 1 : 0);
   */
  choose(arms: readonly string[], minExploration: number): string {
    let pick: string;
    if (arms.length === 1) pick = arms[0];
    else if (this.#rng() < minExploration) pick = arms[Math.min(arms.length - 1, Math.floor(this.#rng() * arms.length))];
    else {
      let best = -1;
      pick = arms[0];
      for (const arm of arms) {
        const s = this.#state(arm);
        const draw = sampleBeta(s.alpha, s.beta, this.#rng);
        if (draw > best) {
          best = draw;
          pick = arm;
        }
      }
    }
    this.#state(pick).chosen++;
    return pick;
  }

  observe(arm: string, reward: number): void {
    if (!Number.isFinite(reward)) return;
    const r = Math.min(1, Math.max(0, reward));
    const s = this.#state(arm);
    s.alpha += r;
    s.beta += 1 - r;
    s.n++;
  }

  /** Copies of the arm states (admin views, tests). */
  snapshot(): Record<string, ArmState & { mean: number }> {
    const out: Record<string, ArmState & { mean: number }> = {};
    for (const [arm, s] of this.#arms) out[arm] = { ...s, mean: s.alpha / (s.alpha + s.beta) };
    return out;
  }

  #state(arm: string): ArmState {
    let s = this.#arms.get(arm);
    if (!s) this.#arms.set(arm, (s = { alpha: 1, beta: 1, n: 0, chosen: 0 }));
    return s;
  }
}

/** Beta(a, b) as X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b). */
export function sampleBeta(a: number, b: number, rng: () => number): number {
  const x = sampleGamma(a, rng);
  const y = sampleGamma(b, rng);
  return x / (x + y);
}

/**
 * Gamma(shape, 1) by Marsaglia & Tsang (2000), "A simple method for generating gamma
 * variables"; shape < 1 via the boost Gamma(shape) = Gamma(shape + 1) * U^(1/shape).
 */
export function sampleGamma(shape: number, rng: () => number): number {
  if (shape < 1) return sampleGamma(shape + 1, rng) * Math.pow(rng() || Number.MIN_VALUE, 1 / shape);
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      x = normal(rng);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = rng();
    if (u < 1 - 0.0331 * x ** 4) return d * v;
    if (Math.log(u || Number.MIN_VALUE) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
  }
}

/** Standard normal by Box–Muller. */
function normal(rng: () => number): number {
  const u = rng() || Number.MIN_VALUE;
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}
