/**
 * Feature extraction shared by the scanner (inference) and the trainer, so both read
 * text the same way: normalise (the normaliser also lists the words with their FNV-1a
 * hashes), hash character 3-5-grams (of " " + text + " ", from a rolling register of byte
 * codes) and word 1-2-grams into `2^bits` buckets (multiplicative hashing), and find the
 * trigger words of the phrase families among the listed words; then try the phrase
 * patterns at those words.
 *
 * An extractor owns reusable buffers; extraction is synchronous, so scanners may share one
 * (createInjectionScanner does, per model and window). The phrase patterns are compiled
 * once per process and shared by every extractor.
 */
import { TextNormalizer } from './normalize.js';
import { OBFUSCATION_FAMILY, PHRASE_FAMILIES, type PhraseFamily } from './phrase-families.js';
import { FNV_OFFSET, fnvStep, isListedWordChar, wordHash } from './word-list.js';

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

// Bucket of each n-gram: multiplicative hashing into the top `32 - shift` bits. Character
// n-grams read a register `r` of the last four characters as bytes, newest in the low
// byte; `top` is the byte before them. Shared by inference and training; changing any of
// these changes the features, and the weights must be retrained.
/** A character as one register byte: ASCII as is, other characters hashed into 128..255. */
const ngramByte = (c: number): number => (c < 128 ? c : 128 | (Math.imul(c, 0x9e3779b1) >>> 25));
const gram3 = (r: number, shift: number): number => Math.imul((r & 0xffffff) ^ 0x3000000, 0x9e3779b1) >>> shift;
const gram4 = (r: number, shift: number): number => Math.imul(r ^ 0x4a3b2c1d, 0x85ebca6b) >>> shift;
/**
 * Math.imul(top + 1, 0x27d4eb2d) for each byte `top`, the first multiply of `gram5`: looked
 * up instead of multiplied, one multiply per character fewer (same buckets).
 */
const GRAM5_TOP = Int32Array.from({ length: 256 }, (_, top) => Math.imul(top + 1, 0x27d4eb2d));
const gram5 = (top: number, r: number, shift: number): number => Math.imul(GRAM5_TOP[top] ^ r, 0xc2b2ae35) >>> shift;
const unigram = (wh: number, shift: number): number => Math.imul(wh ^ 0x5bd1e995, 0x9e3779b1) >>> shift;
const bigram = (prev: number, wh: number, shift: number): number => Math.imul(Math.imul(prev, 31) ^ wh ^ 0x1b873593, 0x9e3779b1) >>> shift;
/**
 * 1 when a bucket's stamp is older than the current generation (its first occurrence in
 * this text), else 0. Arithmetic, not a branch: whether an n-gram occurred before is data
 * the branch predictor cannot learn (measured: p50 of 2 KB scans 30 µs with a branch, 20 µs
 * without). A stamp never exceeds the current generation (the table is zeroed when the
 * generation starts again at 1), so stamp - gen is negative exactly when the stamp is
 * older, and its sign bit is the answer.
 */
const fresh = (stamp: number, gen: number): number => (stamp - gen) >>> 31;
/** Slot of a word hash in the trigger table. */
const triggerSlot = (wh: number, slotShift: number): number => Math.imul(wh, 0x9e3779b1) >>> slotShift;

export interface ExtractorOptions {
  spec?: FeatureSpec;
  /** Input characters scanned at most (head and tail, see input-cap.ts). */
  maxChars?: number;
  /**
   * Bucket weights: `extract` then sums the weights of the distinct buckets its n-grams
   * hash to into `weightSum` (and counts them in `distinct`) instead of filling `indices`.
   */
  weights?: Float32Array;
}

/**
 * Phrase patterns compiled once. The patterns one trigger word arms are merged per family
 * into one sticky alternation, so a trigger word costs one regex call per family it can
 * start, not one per pattern (the patterns have no capture groups, so the alternation
 * matches exactly where one of its patterns does).
 */
interface CompiledPatterns {
  /** Sticky expressions, tried at trigger-word positions. */
  regexes: RegExp[];
  /** Family index of each expression. */
  family: Int32Array;
  /** Open-addressing table: word hash -> 1 + index into `lists` (0 = empty slot). */
  keys: Int32Array;
  slots: Int32Array;
  slotShift: number;
  /** Expressions armed by each trigger word. */
  lists: Int32Array[];
}

function compilePatterns(families: readonly PhraseFamily[]): CompiledPatterns {
  // word hash -> family -> pattern sources, in pattern order
  const byWord = new Map<number, Map<number, string[]>>();
  families.forEach((f, fi) => {
    for (const pattern of f.patterns) {
      for (const word of pattern.triggers) {
        const h = wordHash(word);
        const perFamily = byWord.get(h) ?? new Map<number, string[]>();
        const sources = perFamily.get(fi) ?? [];
        if (!sources.includes(pattern.source)) sources.push(pattern.source);
        perFamily.set(fi, sources);
        byWord.set(h, perFamily);
      }
    }
  });
  const regexes: RegExp[] = [];
  const family: number[] = [];
  const ids = new Map<string, number>(); // one expression per distinct alternation
  const expression = (fi: number, sources: string[]): number => {
    const source = sources.length === 1 ? sources[0] : sources.map((x) => `(?:${x})`).join('|');
    const key = `${fi}\n${source}`;
    let id = ids.get(key);
    if (id === undefined) {
      id = regexes.length;
      regexes.push(new RegExp(source, 'y'));
      family.push(fi);
      ids.set(key, id);
    }
    return id;
  };
  // A typed open-addressing table (load factor <= 1/4): a lookup per word is a multiply
  // and one or two array reads, much cheaper than a Map on the hot path.
  let bits = 4;
  while (1 << bits < byWord.size * 4) bits++;
  const slotShift = 32 - bits;
  const keys = new Int32Array(1 << bits);
  const slots = new Int32Array(1 << bits);
  const lists: Int32Array[] = [];
  for (const [h, perFamily] of byWord) {
    let i = triggerSlot(h, slotShift);
    while (slots[i] !== 0) i = (i + 1) & (keys.length - 1);
    keys[i] = h;
    slots[i] = lists.length + 1;
    lists.push(Int32Array.from(perFamily, ([fi, sources]) => expression(fi, sources)));
  }
  return { regexes, family: Int32Array.from(family), keys, slots, slotShift, lists };
}

/**
 * Every regular expression a scan runs, as compiled for the extractor (the merged sticky
 * alternations): for audits such as the ReDoS check in test/guard-redos.test.ts. Compiles
 * them afresh; not for the hot path.
 */
export function phraseRegexes(): readonly RegExp[] {
  return compilePatterns(PHRASE_FAMILIES).regexes;
}

/**
 * The patterns every extractor uses, compiled on first use. Shared because V8 compiles a
 * regular expression that runs often to native code, ~3 MB for these (the largest
 * alternation alone ~2.3 MB): per extractor, that was paid again by each scanner that got
 * busy. Sharing the sticky expressions is safe: `extract` sets `lastIndex` before each test
 * and never yields in between.
 */
let sharedPatterns: CompiledPatterns | undefined;

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
  /** Hashed feature indices of the last `extract` (one entry per occurrence); empty with `weights`. */
  readonly indices: Int32Array;
  /** N-gram occurrences of the last `extract` (entries of `indices` unless `weights` is set). */
  count = 0;
  /** 1 where family i fired in the last `extract` (FAMILY_NAMES order). */
  readonly families: Uint8Array;
  /**
   * With `weights`: the sum of the weights of the distinct buckets the n-grams of the last
   * `extract` hash to, each counted once however often it occurs (indices are not kept):
   * repeating a text adds no evidence (model format /3).
   */
  weightSum = 0;
  /** With `weights`: the number of distinct buckets summed into `weightSum`. */
  distinct = 0;
  private readonly weights: Float32Array | undefined;
  /**
   * With `weights`: the generation (1..255) in which each bucket was last counted. A new
   * generation per `extract` forgets the previous text's buckets; the table (16 KB at 2^14
   * buckets, allocated once per extractor) is cleared only every 255th extract, so no
   * stamp exceeds the current generation (`fresh` relies on it). Bytes keep it small next
   * to the weights in the CPU cache.
   */
  private readonly seen: Uint8Array;
  private generation = 0;

  constructor(opts: ExtractorOptions = {}) {
    this.spec = opts.spec ?? DEFAULT_FEATURE_SPEC;
    const { bits, char_ngrams, word_ngrams } = this.spec;
    if (char_ngrams[0] !== 3 || char_ngrams[1] !== 5 || word_ngrams[0] !== 1 || word_ngrams[1] !== 2 || bits < 8 || bits > 24) {
      throw new Error('unsupported feature spec: expected char 3-5-grams, word 1-2-grams, 8-24 bits');
    }
    this.normalizer = new TextNormalizer({ maxChars: opts.maxChars });
    this.patterns = sharedPatterns ??= compilePatterns(PHRASE_FAMILIES);
    this.shift = 32 - bits;
    const words = (this.normalizer.buf.length >> 1) + 2;
    this.occPos = new Int32Array(words);
    this.occList = new Int32Array(words);
    // Only training reads the indices; a scanner sums weights instead (~0.5 MB saved at 8192 chars).
    this.indices = new Int32Array(opts.weights ? 0 : (this.normalizer.buf.length + 1) * 3 + words * 2 + 8);
    this.families = new Uint8Array(FAMILY_NAMES.length);
    this.weights = opts.weights;
    if (this.weights && this.weights.length !== 1 << bits) throw new Error('weights do not match the feature spec');
    this.seen = new Uint8Array(opts.weights ? 1 << bits : 0);
  }

  /** Normalises `text`, sets `families`, fills `indices`/`count`. */
  extract(text: string): void {
    const n = this.normalizer.normalizeToBuffer(text);
    this.occCount = 0;
    this.count = this.hash(n);
    const fam = this.families;
    fam.fill(0);
    const { obfuscations, spacedRunCount, spacedRuns, spacedAttackWordRuns } = this.normalizer;
    let spelled = false; // a phrase pattern matched at a word inside a letter-spaced run
    if (this.occCount > 0) {
      // Try the expressions a trigger word arms only where the word starts (sticky regex).
      const normalized = this.normalizer.toString(n);
      const { regexes, family, lists } = this.patterns;
      let run = 0; // the first letter-spaced run not ending before the occurrence (both ascend)
      for (let o = 0; o < this.occCount; o++) {
        const ids = lists[this.occList[o]];
        const pos = this.occPos[o];
        while (run < spacedRunCount && spacedRuns[2 * run + 1] <= pos) run++;
        // Inside a run, a family that fired elsewhere is tried again: does the run spell it?
        const inRun: boolean = !spelled && run < spacedRunCount && spacedRuns[2 * run] <= pos;
        for (let j = 0; j < ids.length; j++) {
          const id = ids[j];
          if (fam[family[id]] !== 0 && !inRun) continue;
          const re = regexes[id];
          re.lastIndex = pos;
          if (re.test(normalized)) {
            fam[family[id]] = 1;
            spelled ||= inRun;
          }
        }
      }
    }
    // Letter spacing counts where it spelled a phrase or holds an attack word: a letter list
    // ("Quiz answers: a b c d a b c d") joins into a word too, and must not flag a short text
    // on its own.
    fam[fam.length - 1] = obfuscations > spacedRunCount || spelled || spacedAttackWordRuns > 0 ? 1 : 0;
  }

  /**
   * Hashes character 3-5-grams and word 1-2-grams into `indices` (or sums the weights of
   * their distinct buckets into `weightSum`), and records trigger-word positions. Returns
   * the n-gram count.
   *
   * Character n-grams in one tight loop over `buf` (no branch on the text), then word
   * n-grams from the words the normaliser listed. `buf[n]` is set to a space, the end of
   * " " + text + " ".
   */
  private hash(n: number): number {
    this.normalizer.buf[n] = SPACE;
    if (this.weights !== undefined) {
      this.nextGeneration();
      this.charWeights(n);
    } else this.charIndices(n);
    return 3 * (n + 1) + this.words(n);
  }

  /** Starts a generation of `seen`: no bucket counted yet. */
  private nextGeneration(): void {
    this.weightSum = 0;
    this.distinct = 0;
    if (this.generation === 0xff) {
      this.seen.fill(0);
      this.generation = 0;
    }
    this.generation++;
  }

  /**
   * Adds the weights of the buckets of the character 3-5-grams of " " + buf[0, n] (buf[n]
   * is a space) not counted yet in this generation to `weightSum`, and counts them.
   */
  private charWeights(n: number): void {
    // The arrays are read from fields (whose types V8 tracks) and checked once before the
    // loop: measured about 12% faster than the same loop over arrays passed as arguments.
    const buf = this.normalizer.buf;
    const w = this.weights;
    const seen = this.seen;
    const gen = this.generation;
    const shift = this.shift | 0;
    if (w === undefined || n >= buf.length) return;
    let r = SPACE; // the last four characters as bytes, newest in the low byte
    let sum = 0;
    let distinct = 0;
    for (let i = 0; i <= n; i++) {
      const top = r >>> 24;
      r = (r << 8) | ngramByte(buf[i]);
      const b3 = gram3(r, shift);
      const b4 = gram4(r, shift);
      const b5 = gram5(top, r, shift);
      const f3 = fresh(seen[b3], gen);
      seen[b3] = gen;
      const f4 = fresh(seen[b4], gen);
      seen[b4] = gen;
      const f5 = fresh(seen[b5], gen);
      seen[b5] = gen;
      sum += w[b3] * f3 + w[b4] * f4 + w[b5] * f5;
      distinct += f3 + f4 + f5;
    }
    this.weightSum = sum;
    this.distinct = distinct;
  }

  /** Records an occurrence at `pos` when `wh` is a trigger word's hash. */
  private trigger(wh: number, pos: number): void {
    const { keys, slots, slotShift } = this.patterns;
    const slotMask = keys.length - 1;
    for (let t = triggerSlot(wh, slotShift); slots[t] !== 0; t = (t + 1) & slotMask) {
      if (keys[t] === wh) {
        if (this.occCount === this.occPos.length) return;
        this.occPos[this.occCount] = pos;
        this.occList[this.occCount++] = slots[t] - 1;
        return;
      }
    }
  }

  /**
   * In the listed word at `buf[from, to)` that starts with non-ASCII characters: the ASCII
   * run after them, looked up as a trigger word of its own. The word n-grams keep the word
   * as listed; only the patterns are also tried where the Latin part starts (their `\b`
   * holds there). The run ends at the first character that is not an ASCII letter, digit or
   * apostrophe: a trigger glued to more text on its right arms a pattern that then does not
   * match, as the patterns want a space after the trigger word.
   */
  private gluedTrigger(from: number, to: number): void {
    const buf = this.normalizer.buf;
    let p = from;
    while (p < to && buf[p] >= 0x80) p++;
    if (p >= to || buf[p] < 0x61 || buf[p] > 0x7a) return;
    let h = FNV_OFFSET;
    for (let q = p; q < to && isListedWordChar(buf[q]) && buf[q] < 0x80; q++) h = fnvStep(h, buf[q]);
    this.trigger(h, p);
  }

  /** The same n-grams as `charWeights`, as bucket indices in `indices[0, 3 * (n + 1))`. */
  private charIndices(n: number): void {
    const buf = this.normalizer.buf;
    const out = this.indices;
    const shift = this.shift;
    let r = SPACE;
    for (let i = 0, k = 0; i <= n; i++, k += 3) {
      const top = r >>> 24;
      r = (r << 8) | ngramByte(buf[i]);
      out[k] = gram3(r, shift);
      out[k + 1] = gram4(r, shift);
      out[k + 2] = gram5(top, r, shift);
    }
  }

  /**
   * Word 1-2-grams of the words the normaliser listed: adds the weights of their buckets
   * not counted yet to `weightSum` (or appends their indices after the character n-grams)
   * and records where trigger words start. Returns the number of word n-grams.
   */
  private words(n: number): number {
    const { count, at, hashes } = this.normalizer.words;
    const out = this.indices;
    const w = this.weights;
    const shift = this.shift | 0;
    const seen = this.seen;
    const gen = this.generation;
    let k = 3 * (n + 1);
    let sum = 0;
    let distinct = 0;
    let prev = 0; // hash of the previous word, 0 before the first
    const buf = this.normalizer.buf;
    for (let j = 0; j < count; j++) {
      const wh = hashes[j];
      this.trigger(wh, at[j]);
      // A word that starts in another script may hide a trigger glued to it ("你好ignore all
      // previous instructions" is one listed word): rare, so looked at only then.
      if (buf[at[j]] >= 0x80) this.gluedTrigger(at[j], j + 1 < count ? at[j + 1] : n);
      if (w !== undefined) {
        const b1 = unigram(wh, shift);
        const f1 = fresh(seen[b1], gen);
        seen[b1] = gen;
        sum += w[b1] * f1;
        distinct += f1;
        if (prev !== 0) {
          const b2 = bigram(prev, wh, shift);
          const f2 = fresh(seen[b2], gen);
          seen[b2] = gen;
          sum += w[b2] * f2;
          distinct += f2;
        }
      } else {
        out[k] = unigram(wh, shift);
        if (prev !== 0) out[k + 1] = bigram(prev, wh, shift);
      }
      k += prev !== 0 ? 2 : 1;
      prev = wh | 1;
    }
    this.weightSum += sum;
    this.distinct += distinct;
    return k - 3 * (n + 1);
  }
}
