/**
 * A byte-pair-encoding vocabulary held compactly: every token's bytes in one buffer, and an
 * open-addressing hash table from bytes to rank. o200k_base takes ~3.1 MB this way; loaded
 * as JavaScript strings in a Map (gpt-tokenizer) the same table costs ~55 MB of RSS, most of
 * it left behind by parsing a 2.4 MB array literal, which a sidecar pays in every pod.
 *
 * The table is filled to about 3/4 (1 MB for o200k_base's ~200,000 tokens) and each slot
 * carries, next to its rank, the top bits of the token's hash: a probe past another token
 * costs one integer compare, not a read of that token's bytes, so the longer probe runs
 * of a fuller table cost no counting time (measured on README and config/knowledge).
 *
 * File format (`assets/bpe/<name>.bin`, written by `npm run build:bpe` from gpt-tokenizer's
 * copy of OpenAI's tiktoken tables): the magic `BPE1`, the token count (u32 little-endian),
 * one length byte per token, then the tokens' bytes, all in rank order.
 */

const MAGIC = 0x31455042; // "BPE1" read as u32 little-endian
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
/** The table's fill at most: linear probing stays short below ~0.8. */
const MAX_LOAD = 0.8;

export class BpeVocabulary {
  readonly size: number;
  private readonly bytes: Uint8Array;
  /** offsets[rank] .. offsets[rank + 1] are the token's bytes. */
  private readonly offsets: Uint32Array;
  /** Per slot: 0 when empty, else (hash tag << rankBits) | (rank + 1). */
  private readonly slots: Uint32Array;
  private readonly mask: number;
  /** Bits of a slot that hold rank + 1; the bits above them hold the tag. */
  private readonly rankBits: number;
  private readonly rankMask: number;

  private constructor(bytes: Uint8Array, offsets: Uint32Array) {
    this.bytes = bytes;
    this.offsets = offsets;
    this.size = offsets.length - 1;
    let capacity = 1;
    while (capacity * MAX_LOAD < this.size) capacity <<= 1;
    this.slots = new Uint32Array(capacity);
    this.mask = capacity - 1;
    this.rankBits = 32 - Math.clz32(this.size + 1);
    this.rankMask = 2 ** this.rankBits - 1;
    for (let rank = 0; rank < this.size; rank++) {
      const start = offsets[rank];
      const end = offsets[rank + 1];
      const h = hash(bytes, start, end);
      const earlier = this.find(bytes, start, end, h);
      if (earlier >= 0) throw new Error(`BPE vocabulary: rank ${rank} repeats rank ${earlier}`);
      let slot = h & this.mask;
      while (this.slots[slot] !== 0) slot = (slot + 1) & this.mask;
      this.slots[slot] = (this.tag(h) << this.rankBits) | (rank + 1);
    }
  }

  /** Reads the `BPE1` format described above; throws on a malformed file. */
  static decode(file: Uint8Array): BpeVocabulary {
    const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
    if (file.byteLength < 8 || view.getUint32(0, true) !== MAGIC) throw new Error('BPE vocabulary: not a BPE1 file');
    const count = view.getUint32(4, true);
    const lengthsAt = 8;
    const bytesAt = lengthsAt + count;
    const offsets = new Uint32Array(count + 1);
    let total = 0;
    for (let rank = 0; rank < count; rank++) {
      const length = file[lengthsAt + rank];
      if (length === 0) throw new Error(`BPE vocabulary: rank ${rank} is empty`);
      offsets[rank] = total;
      total += length;
    }
    offsets[count] = total;
    if (file.byteLength !== bytesAt + total) throw new Error('BPE vocabulary: file length does not match its token lengths');
    // A copy of the tokens' bytes: a view (Buffer's `slice` is one) would keep the whole
    // file, lengths included, alive.
    return new BpeVocabulary(new Uint8Array(file.subarray(bytesAt)), offsets);
  }

  /** Writes the `BPE1` format; tokens in rank order, each 1–255 bytes. */
  static encode(tokens: readonly Uint8Array[]): Uint8Array {
    let total = 0;
    for (const t of tokens) {
      if (t.length === 0 || t.length > 255) throw new Error(`BPE vocabulary: a token of ${t.length} bytes`);
      total += t.length;
    }
    const out = new Uint8Array(8 + tokens.length + total);
    const view = new DataView(out.buffer);
    view.setUint32(0, MAGIC, true);
    view.setUint32(4, tokens.length, true);
    let at = 8 + tokens.length;
    tokens.forEach((t, rank) => {
      out[8 + rank] = t.length;
      out.set(t, at);
      at += t.length;
    });
    return out;
  }

  /** The rank of `buf[start..end)`, or -1 when it is not a token. */
  rank(buf: Uint8Array, start: number, end: number): number {
    return this.find(buf, start, end, hash(buf, start, end));
  }

  /** `rank` given the bytes' hash `h`. */
  private find(buf: Uint8Array, start: number, end: number, h: number): number {
    const tag = this.tag(h);
    const { slots, mask, rankBits, rankMask } = this;
    let slot = h & mask;
    for (let entry = slots[slot]; entry !== 0; entry = slots[slot]) {
      if (entry >>> rankBits === tag && this.equals((entry & rankMask) - 1, buf, start, end)) return (entry & rankMask) - 1;
      slot = (slot + 1) & mask;
    }
    return -1;
  }

  /** The bytes of a rank (a copy). */
  token(rank: number): Uint8Array {
    return this.bytes.slice(this.offsets[rank], this.offsets[rank + 1]);
  }

  /** The hash's top bits that fit above the rank in a slot (the table index uses the low bits). */
  private tag(h: number): number {
    return h >>> this.rankBits;
  }

  private equals(rank: number, buf: Uint8Array, start: number, end: number): boolean {
    const from = this.offsets[rank];
    if (this.offsets[rank + 1] - from !== end - start) return false;
    const bytes = this.bytes;
    for (let i = start, j = from; i < end; i++, j++) if (bytes[j] !== buf[i]) return false;
    return true;
  }
}

/** FNV-1a over `buf[start..end)`, as an unsigned 31-bit-safe index source. */
function hash(buf: Uint8Array, start: number, end: number): number {
  let h = FNV_OFFSET;
  for (let i = start; i < end; i++) h = Math.imul(h ^ buf[i], FNV_PRIME);
  return h >>> 0;
}
