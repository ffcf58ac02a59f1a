/**
 * Trains the injection model: L2-regularised logistic regression, full-batch Adam for a
 * fixed number of iterations from zero weights. There is no randomness, so the same rows
 * in the same order always give the same weights (the test in train.test.ts checks the
 * shipped file against an in-process run). Family weights are regularised towards their
 * curated prior instead of towards zero, so a family the data never shows keeps its prior.
 *
 * Used by scripts/train-guard.ts (writes src/guard/injection-model.json) and by
 * scripts/eval-guard.ts (cross-validation: one model per fold).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_FEATURE_SPEC, FAMILY_NAMES, FAMILY_PRIORS, FeatureExtractor, type FeatureSpec } from './features.js';
import { INJECTION_MODEL_FORMAT, NGRAM_LENGTH_KNEE, ngramScale, quantizeWeights, sigmoid, type InjectionModelFile } from './model.js';

export interface TrainingRow {
  text: string;
  /** 1 = prompt injection, 0 = benign. */
  label: number;
}

export interface TrainOptions {
  spec?: FeatureSpec;
  iterations?: number;
  learningRate?: number;
  /** L2 penalty on bucket weights (per row, i.e. the loss is averaged). */
  l2?: number;
  /** L2 penalty pulling family weights to their priors. */
  familyL2?: number;
  /** Loss weight of a benign row relative to an injection row (precision over recall). */
  benignWeight?: number;
  /** Description of the data, stored in the file. */
  data?: string;
}

/**
 * Chosen with scripts/eval-guard.ts on a small grid (l2 1e-5..1e-3, benign weight 1..4,
 * 2^14..2^18 buckets); see README "Injection guard".
 */
export const DEFAULT_TRAIN_OPTIONS = {
  iterations: 400,
  learningRate: 0.05,
  l2: 1e-4,
  familyL2: 0.005,
  benignWeight: 0.75,
} as const;

interface SparseRow {
  idx: Int32Array;
  val: Float64Array;
  fam: Uint8Array;
  y: number;
  weight: number;
}

/**
 * Feature rows of `rows` as the scanner scores them: normalised, hashed, each distinct
 * bucket once (presence, however often it occurs) with the value ngramScale(distinct buckets).
 */
export function featurize(rows: readonly TrainingRow[], spec: FeatureSpec, benignWeight = 1): SparseRow[] {
  const fx = new FeatureExtractor({ spec });
  return rows.map((row) => {
    fx.extract(row.text);
    const sorted = fx.indices.slice(0, fx.count).sort();
    const idx = sorted.filter((b, i) => i === 0 || b !== sorted[i - 1]);
    const value = idx.length > 0 ? ngramScale(idx.length) : 0;
    return {
      idx,
      val: new Float64Array(idx.length).fill(value),
      fam: fx.families.slice(),
      y: row.label === 1 ? 1 : 0,
      weight: row.label === 1 ? 1 : benignWeight,
    };
  });
}

/** Trains on `rows` and returns the weights file content. */
export function trainInjectionModel(rows: readonly TrainingRow[], opts: TrainOptions = {}): InjectionModelFile {
  const spec = opts.spec ?? DEFAULT_FEATURE_SPEC;
  const o = { ...DEFAULT_TRAIN_OPTIONS, ...opts };
  const data = featurize(rows, spec, o.benignWeight);
  const size = 1 << spec.bits;
  const F = FAMILY_NAMES.length;
  // Parameters: [bucket weights..., family weights..., bias]
  const P = size + F + 1;
  const theta = new Float64Array(P);
  for (let f = 0; f < F; f++) theta[size + f] = FAMILY_PRIORS[f];
  const grad = new Float64Array(P);
  const m = new Float64Array(P);
  const v = new Float64Array(P);
  const beta1 = 0.9;
  const beta2 = 0.999;
  let totalWeight = 0;
  for (const r of data) totalWeight += r.weight;

  for (let t = 1; t <= o.iterations; t++) {
    grad.fill(0);
    for (const r of data) {
      let z = theta[P - 1];
      for (let f = 0; f < F; f++) if (r.fam[f]) z += theta[size + f];
      for (let k = 0; k < r.idx.length; k++) z += theta[r.idx[k]] * r.val[k];
      const g = ((sigmoid(z) - r.y) * r.weight) / totalWeight;
      for (let f = 0; f < F; f++) if (r.fam[f]) grad[size + f] += g;
      for (let k = 0; k < r.idx.length; k++) grad[r.idx[k]] += g * r.val[k];
      grad[P - 1] += g;
    }
    for (let j = 0; j < size; j++) grad[j] += o.l2 * theta[j];
    for (let f = 0; f < F; f++) grad[size + f] += o.familyL2 * (theta[size + f] - FAMILY_PRIORS[f]);
    const lr = (o.learningRate * Math.sqrt(1 - beta2 ** t)) / (1 - beta1 ** t);
    for (let j = 0; j < P; j++) {
      const gj = grad[j];
      if (gj === 0 && m[j] === 0) continue;
      m[j] = beta1 * m[j] + (1 - beta1) * gj;
      v[j] = beta2 * v[j] + (1 - beta2) * gj * gj;
      theta[j] -= (lr * m[j]) / (Math.sqrt(v[j]) + 1e-8);
    }
  }

  const families: Record<string, number> = {};
  FAMILY_NAMES.forEach((name, f) => {
    families[name] = theta[size + f];
  });
  return {
    format: INJECTION_MODEL_FORMAT,
    data: opts.data ?? `${rows.length} rows`,
    spec,
    training: {
      rows: rows.length,
      iterations: o.iterations,
      learning_rate: o.learningRate,
      l2: o.l2,
      family_l2: o.familyL2,
      benign_weight: o.benignWeight,
      features: 'distinct hashed buckets (presence), not occurrence counts',
      length_factor: `sqrt(${NGRAM_LENGTH_KNEE} * ln(1 + d/${NGRAM_LENGTH_KNEE})), d = distinct buckets`,
      optimizer: 'full-batch Adam from zero weights (deterministic, no random state)',
    },
    bias: theta[P - 1],
    families,
    ...quantizeWeights(theta.subarray(0, size)),
  };
}

/** Attribution of the training data; keep wherever the data or the weights are shipped. */
export const DEEPSET_ATTRIBUTION =
  'The train split (546 rows: 203 injection, 343 benign) of the public dataset `deepset/prompt-injections` by deepset, licensed Apache-2.0 (Hugging Face dataset card).';

/** Where the training data lives, relative to the repository root (outside the repo). */
export function deepsetTrainPath(repoRoot: string): string {
  return path.resolve(repoRoot, '../shared/data/injection/deepset-prompt-injections-train.jsonl');
}

/** Reads `{"text", "label"}` JSON lines. */
export function readJsonlRows(file: string): TrainingRow[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line, i) => {
      const row = JSON.parse(line) as { text?: unknown; label?: unknown };
      if (typeof row.text !== 'string' || (row.label !== 0 && row.label !== 1)) {
        throw new Error(`${file}:${i + 1}: expected {"text": string, "label": 0 | 1}`);
      }
      return { text: row.text, label: row.label };
    });
}
