/**
 * Feature extraction shared by the scanner (inference) and the trainer, so both read
 * text the same way: normalise, test the phrase families, and hash character 3-5-grams
 * plus word 1-2-grams into `2^bits` buckets (FNV-1a + murmur3 finaliser).
 *
 * One extractor per scanner; it owns reusable buffers and is not safe to share across
 * interleaved async work (extraction is synchronous, so it never interleaves in Node).
 */
import { TextNormalizer } from './normalize.js';
import { compileFamilies, OBFUSCATION_FAMILY, PHRASE_FAMILIES, type PhraseFamily } from './phrase-families.js';

/** Hashing layout; stored in the weights file and checked when it is loaded. */
export interface FeatureSpec {
  bits: number;
  char_ngrams: readonly [number, number];
  word_ngrams: readonly [number, number];
}

export const DEFAULT_FEATURE_SPEC: FeatureSpec = { bits: 16, char_ngrams: [3, 5], word_ngrams: [1, 2] };

/** Family names in feature order: the phrase families, then obfuscation. */
export const FAMILY_NAMES: readonly string[] = [...PHRASE_FAMILIES.map((f) => f.name), OBFUSCATION_FAMILY.name];
/** Prior logit weight of each family, in `FAMILY_NAMES` order. */
export const FAMILY_PRIORS: readonly number[] = [...PHRASE_FAMILIES.map((f: PhraseFamily) => f.prior), OBFUSCATION_FAMILY.prior];

const SPACE = 0x20;

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

const isWordChar = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x27 || c >= 0x80;

export interface ExtractorOptions {
  spec?: FeatureSpec;
  /** Input characters scanned at most; see normalize.ts. */
  maxChars?: number;
}

export class FeatureExtractor {
  readonly spec: FeatureSpec;
  readonly normalizer: TextNormalizer;
  private readonly regexes: RegExp[];
  private readonly mask: number;
  /** Hashed feature indices of the last `extract` (one entry per occurrence). */
  readonly indices: Int32Array;
  /** Entries of `indices` written by the last `extract`. */
  count = 0;
  /** 1 where family i fired in the last `extract` (FAMILY_NAMES order). */
  readonly families: Uint8Array;

  constructor(opts: ExtractorOptions = {}) {
    this.spec = opts.spec ?? DEFAULT_FEATURE_SPEC;
    this.normalizer = new TextNormalizer({ maxChars: opts.maxChars });
    this.regexes = compileFamilies();
    this.mask = (1 << this.spec.bits) - 1;
    const perChar = this.spec.char_ngrams[1] - this.spec.char_ngrams[0] + 1 + 2;
    this.indices = new Int32Array((this.normalizer.buf.length + 2) * perChar);
    this.families = new Uint8Array(FAMILY_NAMES.length);
  }

  /** Normalises `text`, sets `families`, fills `indices`/`count`. */
  extract(text: string): void {
    const n = this.normalizer.normalizeToBuffer(text);
    const normalized = this.normalizer.toString(n);
    for (let f = 0; f < this.regexes.length; f++) this.families[f] = this.regexes[f].test(normalized) ? 1 : 0;
    this.families[this.regexes.length] = this.normalizer.obfuscations > 0 ? 1 : 0;
    this.count = this.hash(n);
  }

  private hash(n: number): number {
    const buf = this.normalizer.buf;
    const out = this.indices;
    const mask = this.mask;
    const [cMin, cMax] = this.spec.char_ngrams;
    const [wMin, wMax] = this.spec.word_ngrams;
    let k = 0;
    // Character n-grams over " " + text + " ".
    for (let i = -1; i < n; i++) {
      let h = 0x811c9dc5;
      for (let len = 1; len <= cMax; len++) {
        const j = i + len - 1;
        if (j > n) break;
        const c = j < 0 || j >= n ? SPACE : buf[j];
        h = Math.imul(h ^ c, 0x01000193);
        if (len >= cMin) out[k++] = fmix(h ^ len) & mask;
      }
    }
    // Word unigrams and bigrams.
    let prev = 0;
    let i = 0;
    while (i < n) {
      if (!isWordChar(buf[i])) {
        i++;
        continue;
      }
      let h = 0x811c9dc5;
      while (i < n && isWordChar(buf[i])) h = Math.imul(h ^ buf[i++], 0x01000193);
      if (wMin <= 1) out[k++] = fmix(h ^ 0x5bd1e995) & mask;
      if (wMax >= 2 && prev !== 0) out[k++] = fmix(Math.imul(prev, 31) ^ h ^ 0x1b873593) & mask;
      prev = h | 1;
    }
    return k;
  }
}
