import { describe, expect, it } from 'vitest';
import { COMPACT_AT, MAX_TEXT, StreamText } from './stream-text.js';

const chunk = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: null }], ...extra });

describe('StreamText', () => {
  it('joins content, refusal and tool call text of every choice', () => {
    const t = new StreamText();
    t.add(chunk({ role: 'assistant', content: '' }));
    t.add(chunk({ content: 'Hel' }));
    t.add(chunk({ content: 'lo' }));
    t.add(chunk({ refusal: ' no' }));
    t.add(chunk({ tool_calls: [{ index: 0, function: { name: 'lookup', arguments: '{"q":' } }] }));
    t.add(chunk({ tool_calls: [{ index: 0, function: { arguments: '1}' } }] }));
    t.add(JSON.stringify({ choices: [{ delta: { content: 'A' } }, { delta: { content: 'B' } }] }));
    t.add('not json');
    t.add('null');
    t.add(JSON.stringify({ choices: 'odd' }));
    expect(t.text()).toEqual({ content: 'HelloAB', reply: 'Hello nolookup{"q":1}AB' });
  });

  // Regression: every chunk's whole JSON was kept to the end of the stream for a token
  // estimate that is rarely needed: up to 1 MiB per stream, ~1 GB for 1,000 open long
  // streams; and past that 1 MiB of chunks (~4,000 tokens) the estimate stopped counting.
  // Past COMPACT_AT the chunks are now reduced to their text.
  it('keeps a long stream as text, not as its chunks, and counts all of it', () => {
    const t = new StreamText();
    const one = chunk({ content: 'word ' });
    const count = Math.ceil((1.5 * 1024 * 1024) / one.length);
    let maxPending = 0;
    for (let i = 0; i < count; i++) {
      t.add(one);
      maxPending = Math.max(maxPending, t.pending);
    }
    expect(maxPending).toBeLessThanOrEqual(Math.ceil(COMPACT_AT / one.length));
    expect(t.pending).toBeLessThan(maxPending);
    const { content, reply } = t.text();
    expect(content).toBe('word '.repeat(count));
    expect(reply).toBe(content);
    expect(t.pending).toBe(0);
  });

  it('stops at MAX_TEXT characters of text', () => {
    const t = new StreamText();
    const piece = 'x'.repeat(COMPACT_AT);
    for (let i = 0; i < MAX_TEXT / COMPACT_AT + 5; i++) t.add(chunk({ content: piece }));
    expect(t.pending).toBe(0);
    expect(t.text().reply.length).toBe(MAX_TEXT);
  });
});
