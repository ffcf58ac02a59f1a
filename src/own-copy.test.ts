import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { ownCopy } from './own-copy.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Heap still used after `keep` made 100 keys, each from a 1 MB text (MB). */
function retainedMb(keep: (key: string) => string): number {
  gc();
  const before = process.memoryUsage().heapUsed;
  const kept: string[] = [];
  for (let i = 0; i < 100; i++) {
    const message = `question ${i} about refunds?\n${'x'.repeat(1_000_000)}`;
    kept.push(keep(message.slice(0, message.indexOf('\n') + 1)));
  }
  gc();
  const mb = (process.memoryUsage().heapUsed - before) / 1e6;
  expect(kept).toHaveLength(100);
  return mb;
}

describe('ownCopy', () => {
  it('is the same text', () => {
    for (const text of ['', 'a', 'short', 'längere Zeile mit Umlauten ✓', '😀'.repeat(40)]) expect(ownCopy(text)).toBe(text);
  });

  it('keeps only the key, not the text it was sliced from', () => {
    // The premise: a slice alone keeps its 1 MB parent (100 MB for 100 keys).
    expect(retainedMb((key) => key)).toBeGreaterThan(50);
    expect(retainedMb(ownCopy)).toBeLessThan(5);
  });
});
