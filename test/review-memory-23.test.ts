/**
 * Caches bounded by the length of their keys must not keep more than their keys (review 23).
 * V8 makes a slice or a trim of a string share its parent's characters: a short key cut
 * from a 1 MB message kept the whole message alive, so a cache within its size limit held
 * hundreds of MB (the gateway ran out of heap at its documented 384 MB).
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { describe, expect, it } from 'vitest';
import { countTokensRemembered } from '../src/context/tokens.js';
import { ContextCache } from '../src/context/cache.js';
import { createPriceBook } from '../src/telemetry/pricing.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** Heap (MB) still used after `run` (whose own locals are gone). */
async function retainedMb(run: () => void | Promise<void>): Promise<number> {
  gc();
  const before = process.memoryUsage().heapUsed;
  await run();
  gc();
  return (process.memoryUsage().heapUsed - before) / 1e6;
}

const PARAGRAPH = 'The refund policy covers orders returned within thirty days of delivery. ';

describe('caches keep their keys, not the requests the keys were cut from', () => {
  it('token counts of a long message remember its lines without the message', async () => {
    // Over 32 Ki characters: counted line by line, each line remembered (the first one short).
    const mb = await retainedMb(() => {
      for (let i = 0; i < 40; i++) countTokensRemembered(`Header line ${i} of a pasted document\nA${PARAGRAPH.repeat(6_000)}`);
    });
    // 40 messages of ~440 KB (one byte a character in V8): 17 MB if their lines kept them.
    expect(mb).toBeLessThan(6);
  });

  it('a context cache keeps a key cut from a long message without the message', async () => {
    const cache = new ContextCache<{ n: number }>({ ttl_ms: 60_000, max_entries: 1_000, max_bytes: 64 * 1024 * 1024 } as never);
    const mb = await retainedMb(async () => {
      for (let i = 0; i < 40; i++) {
        const message = `what is the refund policy for order ${i}?${' '.repeat(1_000_000)}`;
        await cache.get(message.trim(), async () => ({ n: i }));
      }
    });
    expect(cache.size).toBe(40);
    expect(mb).toBeLessThan(6);
  });

  it('the price book does not keep model names longer than a model name', async () => {
    const book = createPriceBook();
    const mb = await retainedMb(() => {
      for (let i = 0; i < 40; i++) book.price(`m${i}-${'x'.repeat(1_000_000)}`);
    });
    expect(mb).toBeLessThan(6);
  });
});
