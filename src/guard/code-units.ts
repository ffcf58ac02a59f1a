/**
 * A reusable buffer of UTF-16 code units that strings are copied into and out of with one
 * native copy each (Buffer.write / Buffer.toString with 'utf16le', which keep the units as
 * they are, lone surrogates included), so hot loops read a typed array instead of calling
 * charCodeAt per character. Falls back to copying unit by unit on big-endian platforms,
 * where a Uint16Array does not lay units out as 'utf16le'.
 */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export class CodeUnits {
  readonly units: Uint16Array;
  /** The same memory as bytes. */
  private readonly bytes: Buffer;

  constructor(length: number) {
    this.units = new Uint16Array(length);
    this.bytes = Buffer.from(this.units.buffer, this.units.byteOffset, this.units.byteLength);
  }

  /** Copies the first `count` code units of `text` to the start of `units`. */
  write(text: string, count: number): void {
    if (LITTLE_ENDIAN) this.bytes.write(text, 0, 2 * count, 'utf16le');
    else for (let i = 0; i < count; i++) this.units[i] = text.charCodeAt(i);
  }

  /** `units[from, to)` as a string (one allocation). */
  toString(from: number, to: number): string {
    if (LITTLE_ENDIAN) return this.bytes.toString('utf16le', 2 * from, 2 * to);
    let s = '';
    for (let i = from; i < to; i += 4096) s += String.fromCharCode(...this.units.subarray(i, Math.min(to, i + 4096)));
    return s;
  }
}
