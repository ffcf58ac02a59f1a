import { describe, expect, it } from 'vitest';
import { KEPT_CHARS, MAX_TEXT, StreamText } from './stream-text.js';

const chunk = (delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini', choices: [{ index: 0, delta, finish_reason: null }], ...extra });

describe('StreamText', () => {
  it('joins content, refusal and tool call text of every choice', () => {
    for (const keepAll of [false, true]) {
      const t = new StreamText(keepAll);
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
      expect(t.text()).toEqual({ content: 'HelloAB', replies: ['Hello nolookup{"q":1}AB'], scale: 1 });
    }
  });

  // Regression: every chunk's whole JSON was kept to the end of the stream for a token
  // estimate that is rarely needed: up to 1 MiB per stream, ~1 GB for 1,000 open long
  // streams; and past that 1 MiB of chunks (~4,000 tokens) the estimate stopped counting.
  it('keeps a sample of a long stream and scales the estimate to its whole length', () => {
    const t = new StreamText();
    const one = chunk({ content: 'word ' });
    const count = Math.ceil((1.5 * 1024 * 1024) / one.length);
    for (let i = 0; i < count; i++) t.add(one);
    const { replies, scale } = t.text();
    const sampled = replies.join('').length / 'word '.length;
    expect(sampled).toBe(Math.ceil(KEPT_CHARS / one.length)); // the first ~16 KB of chunks, not all of them
    expect(sampled * scale).toBeCloseTo(count, 6); // the whole stream, in proportion
  });

  it('with content capture, keeps the whole text of a long stream, up to MAX_TEXT characters', () => {
    const t = new StreamText(true);
    const one = chunk({ content: 'word ' });
    const count = Math.ceil((1.5 * 1024 * 1024) / one.length);
    for (let i = 0; i < count; i++) t.add(one);
    expect(t.text()).toEqual({ content: 'word '.repeat(count), replies: ['word '.repeat(count)], scale: 1 });

    const capped = new StreamText(true);
    const piece = 'x'.repeat(KEPT_CHARS);
    for (let i = 0; i < MAX_TEXT / KEPT_CHARS + 5; i++) capped.add(chunk({ content: piece }));
    expect(capped.text().replies.join('').length).toBe(MAX_TEXT);
    // Regression: past MAX_TEXT the chunks were dropped uncounted (scale 1): an estimate
    // without usage stopped growing with the stream. The text now stands for all of it.
    const pieces = MAX_TEXT / KEPT_CHARS + 5;
    const { replies, scale } = capped.text();
    expect(replies.join('').length * scale).toBeCloseTo(pieces * KEPT_CHARS, -2);
  });
});
