/**
 * Token counts the way tiktoken encodes: split the text with the encoding's pre-tokenizer
 * pattern, then byte-pair-merge each piece that is not itself a token (lowest rank first,
 * leftmost on ties). Special tokens such as `<|endoftext|>` are counted as ordinary text:
 * the gateway counts what users wrote, and never throws on it.
 */
import type { BpeVocabulary } from './vocabulary.js';

const NO_RANK = 0x7fffffff;
const utf8 = new TextEncoder();
/**
 * Pieces up to this many bytes merge by scanning for the lowest rank (tiktoken's loop,
 * quadratic in the piece but fastest for the short pieces text is made of); longer ones
 * (a 100 KB run of one letter is one piece) merge through a heap, O(n log n), with the
 * same result: lowest rank first, leftmost on ties.
 */
const LONG_PIECE = 128;
/** Heap keys are rank * 2^24 + start: ranks < 2^21, starts < 2^24 bytes (16 MB pieces). */
const START_BITS = 2 ** 24;

export class TokenCounter {
  private readonly vocabulary: BpeVocabulary;
  private readonly pattern: RegExp;
  // Scratch space, grown on demand and reused: counting is synchronous.
  private piece = new Uint8Array(256);
  private starts = new Int32Array(257);
  private ranks = new Int32Array(257);
  // For long pieces: parts as a linked list keyed by start byte, and a heap of candidate merges.
  private next = new Int32Array(0);
  private prev = new Int32Array(0);
  private partRanks = new Int32Array(0);
  private heap = new Float64Array(0);

  constructor(vocabulary: BpeVocabulary, pattern: RegExp) {
    if (!pattern.global) throw new Error('TokenCounter: the pre-tokenizer pattern must have the g flag');
    this.vocabulary = vocabulary;
    this.pattern = new RegExp(pattern.source, pattern.flags);
  }

  /** Tokens of `text` (0 for the empty string). */
  count(text: string): number {
    const pattern = this.pattern;
    pattern.lastIndex = 0;
    let n = 0;
    for (let m = pattern.exec(text); m !== null; m = pattern.exec(text)) {
      const piece = m[0];
      if (piece.length === 0) {
        pattern.lastIndex++; // the patterns never match empty; guard against a loop anyway
        continue;
      }
      n += this.countPiece(piece);
    }
    return n;
  }

  private countPiece(piece: string): number {
    const length = this.toUtf8(piece);
    if (length === 1 || this.vocabulary.rank(this.piece, 0, length) >= 0) return 1;
    return length <= LONG_PIECE ? this.merge(length) : this.mergeLong(length);
  }

  /** Writes `piece` as UTF-8 into the scratch buffer; returns its byte length. */
  private toUtf8(piece: string): number {
    if (this.piece.length < piece.length * 3) this.piece = new Uint8Array(piece.length * 3);
    const buf = this.piece;
    for (let i = 0; i < piece.length; i++) {
      const c = piece.charCodeAt(i);
      if (c >= 0x80) return utf8.encodeInto(piece, buf).written;
      buf[i] = c;
    }
    return piece.length;
  }

  /** tiktoken's byte-pair merge over the scratch buffer's first `length` bytes; returns the part count. */
  private merge(length: number): number {
    if (this.starts.length < length + 1) {
      this.starts = new Int32Array(length + 1);
      this.ranks = new Int32Array(length + 1);
    }
    const { starts, ranks, piece } = this;
    const vocabulary = this.vocabulary;
    // Part i spans starts[i]..starts[i+1]; ranks[i] is the rank of parts i and i+1 merged.
    let parts = length; // starts has parts + 1 entries
    for (let i = 0; i <= length; i++) starts[i] = i;
    for (let i = 0; i < length - 1; i++) ranks[i] = rankOr(vocabulary, piece, i, i + 2);
    ranks[length - 1] = NO_RANK;
    while (parts > 1) {
      let lowest = NO_RANK;
      let at = -1;
      for (let i = 0; i < parts - 1; i++) {
        if (ranks[i] < lowest) {
          lowest = ranks[i];
          at = i;
        }
      }
      if (at === -1) break;
      // Merge parts at and at+1: drop starts[at+1] and ranks[at+1].
      starts.copyWithin(at + 1, at + 2, parts + 1);
      ranks.copyWithin(at + 1, at + 2, parts);
      parts--;
      ranks[at] = at + 1 < parts ? rankOr(vocabulary, piece, starts[at], starts[at + 2]) : NO_RANK;
      if (at > 0) ranks[at - 1] = rankOr(vocabulary, piece, starts[at - 1], starts[at + 1]);
    }
    return parts;
  }

  /**
   * `merge` for long pieces. Part `i` (its start byte) spans i..next[i]; `ranks[i]` is the
   * rank of part i merged with the part after it. Every rank set is pushed as
   * rank * 2^24 + i, so the heap's minimum is the lowest rank, leftmost on ties; an entry
   * whose rank is no longer its part's (or whose part was merged away) is skipped.
   */
  private mergeLong(length: number): number {
    if (this.next.length < length + 1) {
      this.next = new Int32Array(length + 1);
      this.prev = new Int32Array(length + 1);
      this.partRanks = new Int32Array(length + 1);
      this.heap = new Float64Array(3 * length);
    }
    const { next, prev, heap, piece } = this;
    const ranks = this.partRanks;
    const vocabulary = this.vocabulary;
    let size = 0;
    const push = (key: number) => {
      let at = size++;
      while (at > 0) {
        const parent = (at - 1) >> 1;
        if (heap[parent] <= key) break;
        heap[at] = heap[parent];
        at = parent;
      }
      heap[at] = key;
    };
    const pop = (): number => {
      const top = heap[0];
      const last = heap[--size];
      let at = 0;
      for (;;) {
        let child = 2 * at + 1;
        if (child >= size) break;
        if (child + 1 < size && heap[child + 1] < heap[child]) child++;
        if (heap[child] >= last) break;
        heap[at] = heap[child];
        at = child;
      }
      heap[at] = last;
      return top;
    };
    const setRank = (i: number, end: number) => {
      const rank = end <= length ? rankOr(vocabulary, piece, i, end) : NO_RANK;
      ranks[i] = rank;
      if (rank !== NO_RANK) push(rank * START_BITS + i);
    };

    for (let i = 0; i < length; i++) {
      next[i] = i + 1;
      prev[i] = i - 1;
    }
    for (let i = 0; i < length; i++) setRank(i, i + 2);
    let parts = length;
    while (size > 0) {
      const key = pop();
      const rank = Math.floor(key / START_BITS);
      const i = key - rank * START_BITS;
      if (next[i] < 0 || ranks[i] !== rank) continue; // merged away, or re-ranked since
      // Merge part i with the part after it (j); the merged part keeps i's start.
      const j = next[i];
      const k = next[j];
      next[i] = k;
      if (k < length) prev[k] = i;
      next[j] = -1;
      parts--;
      setRank(i, k < length ? next[k] : length + 1);
      const p = prev[i];
      if (p >= 0) setRank(p, k);
    }
    return parts;
  }
}

function rankOr(vocabulary: BpeVocabulary, piece: Uint8Array, start: number, end: number): number {
  const rank = vocabulary.rank(piece, start, end);
  return rank < 0 ? NO_RANK : rank;
}
