/**
 * The trained part of the scanner: a logistic regression over hashed n-grams plus one
 * weight per phrase family. The weights file (injection-model.json) is produced by
 * `npm run train:guard` (scripts/train-guard.ts) and loaded once per scanner into typed
 * arrays.
 *
 * logit = bias + sum(family weight for each family that fired)
 *              + sum(weight of each distinct bucket the n-grams hash to) * ngramScale(distinct buckets)
 *
 * ngramScale(d) = sqrt(64 * ln(1 + d/64)) / d: the mean weight of the distinct buckets times
 * a length factor that grows like sqrt(d) for short texts and only logarithmically beyond.
 * A bucket counts once however often its n-grams occur (presence, not counts), so repeating
 * a text adds no evidence: 'Thanks! ' 1000 times scores what 'Thanks! ' twice does.
 * Format /3; format /2 summed every occurrence and took the factor of the occurrence count,
 * so a repeated benign sentence crossed 0.5; format /1 divided by sqrt(n), so a long text's
 * score kept growing with its length.
 */
import { FAMILY_NAMES, type FeatureSpec } from './features.js';

/** Format string of the weights file; bumped whenever the features or the scoring change. */
export const INJECTION_MODEL_FORMAT = 'promptgate-injection-lr/3' as const;

/** The JSON weights file. */
export interface InjectionModelFile {
  format: typeof INJECTION_MODEL_FORMAT;
  /** Where the training data came from, with its licence. */
  data: string;
  spec: FeatureSpec;
  training: Record<string, number | string>;
  bias: number;
  /** Trained logit weight per family (FAMILY_NAMES). */
  families: Record<string, number>;
  /** Bucket weights as little-endian int16, base64; weight = value * scale. */
  scale: number;
  weights: string;
}

/** Loaded, typed form of the weights; immutable after load. */
export interface InjectionModel {
  readonly spec: FeatureSpec;
  readonly bias: number;
  /** In FAMILY_NAMES order; 0 for a family the file does not know. */
  readonly familyWeights: Float64Array;
  readonly weights: Float32Array;
}

/** Decodes a weights file. Throws when the file does not match the feature layout. */
export function loadModel(file: InjectionModelFile): InjectionModel {
  if (file.format !== INJECTION_MODEL_FORMAT) {
    throw new Error(`unknown injection model format ${String(file.format)} (expected ${INJECTION_MODEL_FORMAT}; retrain with npm run train:guard)`);
  }
  const bytes = Buffer.from(file.weights, 'base64');
  const size = 1 << file.spec.bits;
  if (bytes.length !== size * 2) throw new Error(`injection model has ${bytes.length / 2} weights, expected ${size}`);
  const weights = new Float32Array(size);
  for (let i = 0; i < size; i++) weights[i] = bytes.readInt16LE(i * 2) * file.scale;
  const familyWeights = new Float64Array(FAMILY_NAMES.length);
  FAMILY_NAMES.forEach((name, i) => {
    familyWeights[i] = file.families[name] ?? 0;
  });
  return { spec: file.spec, bias: file.bias, familyWeights, weights };
}

/** Packs trained float weights as int16 with one scale (deterministic rounding). */
export function quantizeWeights(w: ArrayLike<number>): { scale: number; weights: string } {
  let max = 0;
  for (let i = 0; i < w.length; i++) max = Math.max(max, Math.abs(w[i]));
  const scale = max === 0 ? 1 : max / 32767;
  const bytes = Buffer.alloc(w.length * 2);
  for (let i = 0; i < w.length; i++) bytes.writeInt16LE(Math.round(w[i] / scale), i * 2);
  return { scale, weights: bytes.toString('base64') };
}

/**
 * Distinct-bucket count at which the length factor of the model term bends from sqrt(d) to
 * logarithmic growth. Chosen with scripts/eval-guard.ts and the long-message and tool-result
 * fixtures (README "Injection guard"); changing it requires retraining.
 */
export const NGRAM_LENGTH_KNEE = 64;

/**
 * Factor applied to the sum of the weights of the `d` distinct buckets a text's n-grams hash
 * to (d > 0): sqrt(K * ln(1 + d/K)) / d with K = NGRAM_LENGTH_KNEE. For d << K it is about
 * 1/sqrt(d); a 2 KB message of prose (about 4,000 distinct buckets) gets a length factor of
 * 16 instead of 64.
 * Shared by the scanner and the trainer, so training optimises what is scored.
 */
export const ngramScale = (d: number): number => Math.sqrt(NGRAM_LENGTH_KNEE * Math.log1p(d / NGRAM_LENGTH_KNEE)) / d;

export const sigmoid = (z: number): number => 1 / (1 + Math.exp(-z));
