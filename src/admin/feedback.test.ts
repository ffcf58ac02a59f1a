import { describe, expect, it } from 'vitest';
import type { RequestRecord } from '../telemetry/types.js';
import { FeedbackLedger } from './feedback.js';

const served = (requestId: string, extra: Partial<RequestRecord> = {}) =>
  ({ requestId, experiment: 'tone', variant: 'warm', experimentAssignment: 'hash', ...extra }) as RequestRecord;

describe('FeedbackLedger', () => {
  it('counts each metric of a request once', () => {
    const ledger = new FeedbackLedger();
    ledger.remember(served('r1'));
    expect(ledger.take('r1', 'thumbs_up')).toMatchObject({ experiment: 'tone', variant: 'warm' });
    expect(ledger.take('r1', 'thumbs_up')).toBe('duplicate');
    expect(ledger.take('r1', 'resolved')).toMatchObject({ variant: 'warm' });
    expect(ledger.take('unknown', 'thumbs_up')).toBeUndefined();
  });

  it('remembers only requests in an experiment (by hash) or with a context recipe', () => {
    const ledger = new FeedbackLedger();
    ledger.remember(served('default', { experimentAssignment: 'default' }));
    ledger.remember(served('none', { experiment: undefined, variant: undefined, experimentAssignment: undefined }));
    ledger.remember(served('recipe', { experiment: undefined, variant: undefined, experimentAssignment: undefined, contextRecipe: 'short' }));
    expect(ledger.take('default', 'm')).toBeUndefined();
    expect(ledger.take('none', 'm')).toBeUndefined();
    expect(ledger.take('recipe', 'm')).toEqual({ experiment: undefined, variant: undefined, seen: ['m'] });
  });

  it('keeps at most maxEntries requests, forgetting the least recently used', () => {
    const ledger = new FeedbackLedger({ maxEntries: 3 });
    for (const id of ['a', 'b', 'c', 'd']) ledger.remember(served(id));
    expect(ledger.take('a', 'm')).toBeUndefined();
    for (const id of ['b', 'c', 'd']) expect(ledger.take(id, 'm')).toMatchObject({ variant: 'warm' });
  });
});
