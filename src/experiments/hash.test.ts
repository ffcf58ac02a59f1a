import { describe, expect, it } from 'vitest';
import { bucketOf, murmur3 } from './hash.js';

// DESIGN.md "Assignment rule": key -> unsigned hash -> bucket.
const VECTORS: [salt: string, user: string, hash: number, bucket: number][] = [
  ['support-tone-v1', 'user-123', 891477686, 7686],
  ['support-tone-v1', 'user-124', 1110265833, 5833],
  ['support-tone-v1', 'alice@example.com', 1843540188, 188],
  ['exp', 'üser-ß', 1527021996, 1996],
  ['salt', '42', 2258050451, 451],
];

describe('assignment hash (DESIGN.md test vectors)', () => {
  it.each(VECTORS)('%s:%s', (salt, user, hash, bucket) => {
    expect(murmur3(`${salt}:${user}`)).toBe(hash);
    expect(bucketOf(salt, user)).toBe(bucket);
  });

  it('hashes UTF-8 bytes, not UTF-16 code units', () => {
    // "ü" and "ß" are two UTF-8 bytes each; hashing char codes would give another value.
    expect(murmur3('exp:üser-ß')).not.toBe(murmur3('exp:user-s'));
    expect(Buffer.byteLength('exp:üser-ß')).toBe(12);
  });
});
