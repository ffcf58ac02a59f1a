/** Types for murmurhash3js-revisited (ships none): only what promptgate uses. */
declare module 'murmurhash3js-revisited' {
  interface MurmurHash3 {
    x86: {
      /** MurmurHash3 x86 32-bit of a byte array; unsigned 32-bit result. */
      hash32(bytes: Uint8Array | number[], seed?: number): number;
    };
  }
  const murmurHash3: MurmurHash3;
  export default murmurHash3;
}
