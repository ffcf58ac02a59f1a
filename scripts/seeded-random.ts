/**
 * mulberry32: a small, fast, deterministic uniform generator in [0, 1). The fixture
 * generators, the guard's evaluation folds and the seeded tests share it, so a seed means
 * the same sequence everywhere. Not for anything secret.
 *
 * @example
 * const rand = seededRandom(20250611);
 * rand(); // 0.…, the same on every run
 */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
