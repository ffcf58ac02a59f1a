/**
 * Protobuf wire-format writing (protobuf.dev "Encoding"): varints, fixed-width numbers,
 * length-prefixed strings and bytes, and nested messages whose length is written after
 * their content. Used by the OTLP span encoder (otlp-protobuf.ts). One Writer per message
 * being encoded, not shared.
 *
 * Length-delimited fields reserve the number of length bytes their message usually needs;
 * `close` moves the content when the length turns out to need more or fewer, so every
 * length is the minimal varint, as protobuf's own encoders write it.
 */

/** [seconds, nanoseconds], as OpenTelemetry's HrTime. */
export type HrTime = readonly [number, number];

/** Wire types. */
export const VARINT = 0;
export const FIXED64 = 1;
export const LEN = 2;
export const FIXED32 = 5;

export const tag = (field: number, wire: number): number => (field << 3) | wire;

/** A growable output buffer with protobuf primitives. */
export class Writer {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  /** Room for `n` more bytes. */
  room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** A varint of a non-negative integer below 2^32 (tags, lengths, counts, enums). */
  uint32(v: number): void {
    this.room(5);
    const b = this.buf;
    let at = this.pos;
    while (v > 0x7f) {
      b[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    b[at] = v;
    this.pos = at + 1;
  }

  /**
   * The bytes written since `start`, copied into a buffer of exactly their size. The growable
   * buffer may be up to twice what it holds; whatever keeps bytes for long (a batch waiting
   * for the collector) keeps such a copy, so the memory held is what its byte count says.
   *
   * A copy under 4 KiB comes from Node's shared 8 KiB pool slabs (`Buffer.allocUnsafe`),
   * which it keeps alive with it: a buffer of its own costs ~0.5 µs more per span. Larger
   * copies, the ones that make up megabytes, always get their own.
   */
  copyFrom(start: number): Buffer {
    const out = Buffer.allocUnsafe(this.pos - start);
    this.buf.copy(out, 0, start, this.pos);
    return out;
  }

  /** An int64 varint of an integer (negative: two's complement, ten bytes). */
  int64(v: number): void {
    if (v >= 0 && v <= 0xffffffff) return this.uint32(v);
    let lo: number;
    let hi: number;
    if (v >= 0) {
      lo = v >>> 0;
      hi = (v / 0x100000000) >>> 0;
    } else {
      const abs = -v;
      lo = ~(abs >>> 0) >>> 0;
      hi = ~((abs / 0x100000000) >>> 0) >>> 0;
      lo = (lo + 1) >>> 0;
      if (lo === 0) hi = (hi + 1) >>> 0;
    }
    this.room(10);
    const b = this.buf;
    while (hi > 0 || lo > 0x7f) {
      b[this.pos++] = (lo & 0x7f) | 0x80;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    b[this.pos++] = lo;
  }

  fixed32(v: number): void {
    this.room(4);
    this.pos = this.buf.writeUInt32LE(v >>> 0, this.pos);
  }

  double(v: number): void {
    this.room(8);
    this.pos = this.buf.writeDoubleLE(v, this.pos);
  }

  /** Nanoseconds since the epoch of an HrTime, as fixed64 (exact: no product above 2^53). */
  time(t: HrTime): void {
    // seconds * 1e9 + nanos = (hi * 2^16 + lo) * 1e9 + nanos, each product below 2^53.
    const seconds = t[0];
    const lo = (seconds & 0xffff) * 1e9 + t[1];
    const hi = Math.floor(seconds / 0x10000) * 1e9;
    // hi * 2^16 split into 32-bit words, then lo added with its carry.
    const hiLow = (hi % 0x10000) * 0x10000;
    const hiHigh = Math.floor(hi / 0x10000);
    const low = hiLow + (lo % 0x100000000);
    this.room(8);
    this.pos = this.buf.writeUInt32LE(low >>> 0, this.pos);
    this.pos = this.buf.writeUInt32LE((hiHigh + Math.floor(lo / 0x100000000) + Math.floor(low / 0x100000000)) >>> 0, this.pos);
  }

  /** A length-prefixed UTF-8 string. */
  string(s: string): void {
    const n = s.length;
    if (n < 43) {
      // At most 126 bytes: the length is one byte, and ASCII (the usual case) is copied as is.
      this.room(1 + 3 * n);
      const b = this.buf;
      const at = this.pos + 1;
      let i = 0;
      while (i < n) {
        const c = s.charCodeAt(i);
        if (c > 0x7f) break;
        b[at + i++] = c;
      }
      const bytes = i === n ? n : i + b.write(s.slice(i), at + i, 'utf8');
      b[this.pos] = bytes;
      this.pos = at + bytes;
      return;
    }
    const bytes = Buffer.byteLength(s, 'utf8');
    this.uint32(bytes);
    this.room(bytes);
    this.pos += this.buf.write(s, this.pos, 'utf8');
  }

  /** The bytes of a hex id (trace and span ids), length-prefixed. */
  hexBytes(hex: string): void {
    const n = hex.length >>> 1;
    this.room(1 + n);
    const b = this.buf;
    const at = this.pos + 1;
    b[at - 1] = n;
    for (let i = 0; i < n; i++) b[at + i] = (nibble(hex.charCodeAt(2 * i)) << 4) | nibble(hex.charCodeAt(2 * i + 1));
    this.pos = at + n;
  }

  raw(bytes: Uint8Array): void {
    const n = bytes.length;
    this.room(n);
    if (n > 64) {
      this.buf.set(bytes, this.pos);
      this.pos += n;
      return;
    }
    const b = this.buf;
    const at = this.pos;
    for (let i = 0; i < n; i++) b[at + i] = bytes[i]!;
    this.pos = at + n;
  }

  /** Starts a length-delimited field's content, reserving `reserve` bytes for its length. */
  open(reserve: number): number {
    this.room(reserve);
    const start = this.pos;
    this.pos += reserve;
    return start;
  }

  /** Writes the length of the content started by `open` as a minimal varint. */
  close(start: number, reserve: number): void {
    const length = this.pos - start - reserve;
    const size = length < 0x80 ? 1 : length < 0x4000 ? 2 : length < 0x200000 ? 3 : length < 0x10000000 ? 4 : 5;
    if (size !== reserve) {
      this.room(size - reserve);
      this.buf.copyWithin(start + size, start + reserve, this.pos);
      this.pos += size - reserve;
    }
    const b = this.buf;
    let at = start;
    let v = length;
    while (v > 0x7f) {
      b[at++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    b[at] = v;
  }
}

/** The value of a hex digit (either case). */
function nibble(c: number): number {
  return c <= 57 ? c - 48 : (c | 0x20) - 87;
}
