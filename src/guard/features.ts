/**
 * Feature extraction shared by the scanner (inference) and the trainer, so both read
 * text the same way: normalise, hash character 3-5-grams (of " " + text + " ", from a
 * rolling register of byte codes) and word 1-2-grams (FNV-1a) into `2^bits` buckets
 * (multiplicative hashing), and find the trigger words of the phrase families, all in one
 * pass; then try the phrase patterns at those words.
 *
 * One extractor per scanner; it owns reusable buffers and is not safe to share across
 * interleaved async work (extraction is synchronous, so it never interleaves in Node).
 */
import { TextNormalizer } from './normalize.js';
import { OBFUSCATION_FAMILY, PHRASE_FAMILIES, type PhraseFamily } from './phrase-families.js';

/** Hashing layout; stored in the weights file and checked when it is loaded. */
export interface FeatureSpec {
  bits: number;
  char_ngrams: readonly [number, number];
  word_ngrams: readonly [number, number];
}

export const DEFAULT_FEATURE_SPEC: FeatureSpec = { bits: 14, char_ngrams: [3, 5], word_ngrams: [1, 2] };

/** Family names in feature order: the phrase families, then obfuscation. */
export const FAMILY_NAMES: readonly string[] = [...PHRASE_FAMILIES.map((f) => f.name), OBFUSCATION_FAMILY.name];
/** Prior logit weight of each family, in `FAMILY_NAMES` order. */
export const FAMILY_PRIORS: readonly number[] = [...PHRASE_FAMILIES.map((f: PhraseFamily) => f.prior), OBFUSCATION_FAMILY.prior];

const SPACE = 0x20;

/** FNV-1a over UTF-16 code units: the word hash, also used to look up trigger words. */
export function wordHash(word: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < word.length; i++) h = Math.imul(h ^ word.charCodeAt(i), 0x01000193);
  return h;
}

const isWordChar = (c: number): boolean =>
  (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x27 || c >= 0x80;

export interface ExtractorOptions {
  spec?: FeatureSpec;
  /** Input characters scanned at most; see normalize.ts. */
  maxChars?: number;
  /** Bucket weights: `extract` then sums them into `weightSum` instead of filling `indices`. */
  weights?: Float32Array;
}

/** Phrase patterns compiled once, each with the family it belongs to. */
interface CompiledPatterns {
  /** Sticky expressions, tried at trigger-word positions. */
  regexes: RegExp[];
  family: Int32Array;
  /** Open-addressing table: word hash -> 1 + index into `lists` (0 = empty slot). */
  keys: Int32Array;
  slots: Int32Array;
  slotShift: number;
  /** Pattern ids armed by each trigger word. */
  lists: Int32Array[];
}

function compilePatterns(families: readonly PhraseFamily[]): CompiledPatterns {
  const regexes: RegExp[] = [];
  const family: number[] = [];
  const byWord = new Map<number, number[]>();
  families.forEach((f, fi) => {
    for (const pattern of f.patterns) {
      const id = regexes.length;
      regexes.push(new RegExp(pattern.source, 'y'));
      family.push(fi);
      for (const word of pattern.triggers) {
        const h = wordHash(word);
        const ids = byWord.get(h) ?? [];
        if (!ids.includes(id)) ids.push(id);
        byWord.set(h, ids);
      }
    }
  });
  // A typed open-addressing table (load factor <= 1/4): a lookup per word is a multiply
  // and one or two array reads, much cheaper than a Map on the hot path.
  let bits = 4;
  while (1 << bits < byWord.size * 4) bits++;
  const slotShift = 32 - bits;
  const keys = new Int32Array(1 << bits);
  const slots = new Int32Array(1 << bits);
  const lists: Int32Array[] = [];
  for (const [h, ids] of byWord) {
    let i = Math.imul(h, 0x9e3779b1) >>> slotShift;
    while (slots[i] !== 0) i = (i + 1) & (keys.length - 1);
    keys[i] = h;
    slots[i] = lists.length + 1;
    lists.push(Int32Array.from(ids));
  }
  return { regexes, family: Int32Array.from(family), keys, slots, slotShift, lists };
}

/**
 * Hashes the normalised text into n-gram buckets and finds which phrase families match.
 * One per scanner (it owns reusable buffers); extraction is synchronous.
 */
export class FeatureExtractor {
  readonly spec: FeatureSpec;
  readonly normalizer: TextNormalizer;
  private readonly patterns: CompiledPatterns;
  private readonly shift: number;
  /** Trigger-word occurrences of the current text: position and trigger list index. */
  private readonly occPos: Int32Array;
  private readonly occList: Int32Array;
  private occCount = 0;
  /** Hashed feature indices of the last `extract` (one entry per occurrence). */
  readonly indices: Int32Array;
  /** N-gram occurrences of the last `extract` (entries of `indices` unless `weights` is set). */
  count = 0;
  /** 1 where family i fired in the last `extract` (FAMILY_NAMES order). */
  readonly families: Uint8Array;
  /** With `weights`: the sum of the weights of all n-gram occurrences (indices are not kept). */
  weightSum = 0;
  private readonly weights: Float32Array | undefined;

  constructor(opts: ExtractorOptions = {}) {
    this.spec = opts.spec ?? DEFAULT_FEATURE_SPEC;
    const { bits, char_ngrams, word_ngrams } = this.spec;
    if (char_ngrams[0] !== 3 || char_ngrams[1] !== 5 || word_ngrams[0] !== 1 || word_ngrams[1] !== 2 || bits < 8 || bits > 24) {
      throw new Error('unsupported feature spec: expected char 3-5-grams, word 1-2-grams, 8-24 bits');
    }
    this.normalizer = new TextNormalizer({ maxChars: opts.maxChars });
    this.patterns = compilePatterns(PHRASE_FAMILIES);
    this.shift = 32 - bits;
    const words = (this.normalizer.buf.length >> 1) + 2;
    this.occPos = new Int32Array(words);
    this.occList = new Int32Array(words);
    this.indices = new Int32Array((this.normalizer.buf.length + 1) * 3 + words * 2 + 8);
    this.families = new Uint8Array(FAMILY_NAMES.length);
    this.weights = opts.weights;
    if (this.weights && this.weights.length !== 1 << bits) throw new Error('weights do not match the feature spec');
  }

  /** Normalises `text`, sets `families`, fills `indices`/`count`. */
  extract(text: string): void {
    const n = this.normalizer.normalizeToBuffer(text);
    this.occCount = 0;
    this.count = this.hash(n);
    const fam = this.families;
    fam.fill(0);
    if (this.occCount > 0) {
      // Try each pattern only where one of its trigger words starts (sticky regex).
      const normalized = this.normalizer.toString(n);
      const { regexes, family, lists } = this.patterns;
      for (let o = 0; o < this.occCount; o++) {
        const ids = lists[this.occList[o]];
        const pos = this.occPos[o];
        for (let j = 0; j < ids.length; j++) {
          const id = ids[j];
          if (fam[family[id]] !== 0) continue;
          const re = regexes[id];
          re.lastIndex = pos;
          if (re.test(normalized)) fam[family[id]] = 1;
        }
      }
    }
    fam[fam.length - 1] = this.normalizer.obfuscations > 0 ? 1 : 0;
  }

  /**
   * Hashes character 3-5-grams and word 1-2-grams into `indices` (or sums their weights
   * into `weightSum`), and records trigger-word positions. Returns the n-gram count.
   */
  private hash(n: number): number {
    const buf = this.normalizer.buf;
    const out = this.indices;
    const shift = this.shift;
    const { keys, slots, slotShift } = this.patterns;
    const slotMask = keys.length - 1;
    const w = this.weights;
    let sum = 0;
    const PRIME = 0x01000193;
    const MIX = 0x9e3779b1;
    let k = 0;
    let prev = 0; // hash of the previous word, 0 before the first
    let wh = 0x811c9dc5; // hash of the word being read
    let wordStart = -1;
    // Character n-grams: `r` holds the last four characters as bytes (ASCII as is, other
    // characters hashed into 128..255), newest in the low byte; `top` the one before.
    // The text is read as " " + text + " ". Words are read in the same pass.
    let r = SPACE;
    for (let i = 0; i <= n; i++) {
      const c = i < n ? buf[i] : SPACE;
      const top = r >>> 24;
      r = (r << 8) | (c < 128 ? c : 128 | (Math.imul(c, MIX) >>> 25));
      const g3 = Math.imul((r & 0xffffff) ^ 0x3000000, MIX) >>> shift;
      const g4 = Math.imul(r ^ 0x4a3b2c1d, 0x85ebca6b) >>> shift;
      const g5 = Math.imul(Math.imul(top + 1, 0x27d4eb2d) ^ r, 0xc2b2ae35) >>> shift;
      if (w !== undefined) sum += w[g3] + w[g4] + w[g5];
      else {
        out[k] = g3;
        out[k + 1] = g4;
        out[k + 2] = g5;
      }
      k += 3;
      if (i < n && isWordChar(c)) {
        if (wordStart < 0) wordStart = i;
        wh = Math.imul(wh ^ c, PRIME);
      } else if (wordStart >= 0) {
        for (let t = Math.imul(wh, 0x9e3779b1) >>> slotShift; slots[t] !== 0; t = (t + 1) & slotMask) {
          if (keys[t] === wh) {
            this.occPos[this.occCount] = wordStart;
            this.occList[this.occCount++] = slots[t] - 1;
            break;
          }
        }
        const unigram = Math.imul(wh ^ 0x5bd1e995, MIX) >>> shift;
        if (w !== undefined) sum += w[unigram];
        else out[k] = unigram;
        k++;
        if (prev !== 0) {
          const bigram = Math.imul(Math.imul(prev, 31) ^ wh ^ 0x1b873593, MIX) >>> shift;
          if (w !== undefined) sum += w[bigram];
          else out[k] = bigram;
          k++;
        }
        prev = wh | 1;
        wh = 0x811c9dc5;
        wordStart = -1;
      }
    }
    this.weightSum = sum;
    return k;
  }
}
