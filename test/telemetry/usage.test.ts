import { describe, expect, it } from 'vitest';
import { countTokens as countO200k, encodeChat as encodeChatO200k } from 'gpt-tokenizer/encoding/o200k_base';
import { encodeChat as encodeChatCl100k } from 'gpt-tokenizer/encoding/cl100k_base';
import { encodingFor, estimateUsage, usageFromOpenAI } from '../../src/telemetry/usage.js';

describe('usageFromOpenAI', () => {
  it('reads chat completion usage with cached and reasoning details', () => {
    expect(
      usageFromOpenAI({
        prompt_tokens: 1200,
        completion_tokens: 300,
        total_tokens: 1500,
        prompt_tokens_details: { cached_tokens: 1024, audio_tokens: 0 },
        completion_tokens_details: { reasoning_tokens: 256, accepted_prediction_tokens: 0 },
      }),
    ).toEqual({ inputTokens: 1200, outputTokens: 300, cachedInputTokens: 1024, reasoningTokens: 256, estimated: false });
  });

  it('tolerates missing and null details', () => {
    const expected = { inputTokens: 12, outputTokens: 5, cachedInputTokens: 0, reasoningTokens: 0, estimated: false };
    expect(usageFromOpenAI({ prompt_tokens: 12, completion_tokens: 5 })).toEqual(expected);
    expect(usageFromOpenAI({ prompt_tokens: 12, completion_tokens: 5, prompt_tokens_details: null, completion_tokens_details: null })).toEqual(expected);
    expect(usageFromOpenAI({ prompt_tokens: 12, completion_tokens: 5, prompt_tokens_details: { cached_tokens: null } })).toEqual(expected);
  });

  it('reads embeddings usage (no completion tokens) and the Responses API shape', () => {
    expect(usageFromOpenAI({ prompt_tokens: 8, total_tokens: 8 })).toMatchObject({ inputTokens: 8, outputTokens: 0 });
    expect(
      usageFromOpenAI({ input_tokens: 40, output_tokens: 9, input_tokens_details: { cached_tokens: 32 }, output_tokens_details: { reasoning_tokens: 4 } }),
    ).toEqual({ inputTokens: 40, outputTokens: 9, cachedInputTokens: 32, reasoningTokens: 4, estimated: false });
  });

  it('returns undefined when there is no usage', () => {
    for (const u of [undefined, null, 'usage', 42, [], {}, { total_tokens: 3 }, { prompt_tokens: 'ten' }, { prompt_tokens: -1 }]) {
      expect(usageFromOpenAI(u)).toBeUndefined();
    }
  });

  // Regression: any finite number was a count. An upstream's 1.7e308 priced as a 300-digit
  // cost header and took the token counters to +Inf; a billion tokens is no request's count.
  it('takes a number over a billion tokens (or not finite) as no count', () => {
    expect(usageFromOpenAI({ prompt_tokens: 1.7e308, completion_tokens: 1e10 })).toBeUndefined();
    expect(usageFromOpenAI({ prompt_tokens: Infinity, completion_tokens: 5 })).toMatchObject({ inputTokens: 0, outputTokens: 5 });
    expect(usageFromOpenAI({ prompt_tokens: 1_000_000_000, completion_tokens: 5, prompt_tokens_details: { cached_tokens: 1e300 } })).toMatchObject({ inputTokens: 1_000_000_000, cachedInputTokens: 0 });
  });

  it('clamps details that exceed their totals', () => {
    expect(usageFromOpenAI({ prompt_tokens: 10, completion_tokens: 2, prompt_tokens_details: { cached_tokens: 50 }, completion_tokens_details: { reasoning_tokens: 9 } })).toMatchObject({
      cachedInputTokens: 10,
      reasoningTokens: 2,
    });
  });
});

describe('estimateUsage', () => {
  const messages = [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'What is the capital of France?' },
    { role: 'assistant', content: 'Paris.' },
    { role: 'user', content: 'And of Germany?' },
  ];

  it('matches the OpenAI cookbook count (3 per message + 3 reply priming) with o200k_base', () => {
    const usage = estimateUsage(messages, 'Berlin is the capital of Germany.', 'gpt-4o-mini');
    expect(usage.inputTokens).toBe(encodeChatO200k(messages as never, 'gpt-4o').length);
    expect(usage.outputTokens).toBe(countO200k('Berlin is the capital of Germany.'));
    expect(usage.outputTokens).toBe(7);
    expect(usage).toMatchObject({ cachedInputTokens: 0, reasoningTokens: 0, estimated: true });
  });

  it('hand-counted example: system + user, 17 input tokens', () => {
    // (3 + "system" 1 + "You are helpful." 4) + (3 + "user" 1 + "Hello world" 2) + 3
    expect(estimateUsage([{ role: 'system', content: 'You are helpful.' }, { role: 'user', content: 'Hello world' }], 'Hello world', 'gpt-4o').inputTokens).toBe(17);
  });

  it('uses cl100k_base for gpt-4 and gpt-3.5', () => {
    const usage = estimateUsage(messages, '', 'gpt-3.5-turbo');
    expect(usage.inputTokens).toBe(encodeChatCl100k(messages as never, 'gpt-4').length);
    expect(usage.outputTokens).toBe(0);
  });

  it('counts names, text parts and tool calls; ignores what is not a message', () => {
    const plain = estimateUsage([{ role: 'user', content: 'hi' }], '', 'gpt-4o').inputTokens;
    expect(estimateUsage([{ role: 'user', content: 'hi', name: 'bob' }], '', 'gpt-4o').inputTokens).toBe(plain + 2);
    expect(estimateUsage([{ role: 'user', content: [{ type: 'text', text: 'hi' }, { type: 'image_url', image_url: { url: 'x' } }] }], '', 'gpt-4o').inputTokens).toBe(plain);
    const withCall = estimateUsage(
      [{ role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] }],
      '',
      'gpt-4o',
    ).inputTokens;
    expect(withCall).toBeGreaterThan(7);
    expect(estimateUsage([null, 'x', 42, { role: 'user', content: 'hi' }], '', 'gpt-4o').inputTokens).toBe(plain);
    expect(estimateUsage(undefined, 'abc', 'gpt-4o').inputTokens).toBe(0);
  });

  // Regression: a 64 MB answer without usage was counted whole, blocking the gateway for seconds.
  it('counts a text over 1 Mi characters on its first 1 Mi, scaled by length (within 1% of exact)', { timeout: 30_000 }, () => {
    const sentence = 'The parcel left our warehouse on Monday and should arrive within three working days. ';
    const text = sentence.repeat(Math.ceil((2 << 20) / sentence.length)); // ~2 Mi characters
    const exact = countO200k(text);
    const estimated = estimateUsage([], text, 'gpt-4o').outputTokens;
    expect(Math.abs(estimated - exact) / exact).toBeLessThan(0.01);
    // Only the sample is read: text after it with another density does not move the count.
    const sample = text.slice(0, 1 << 20);
    const mixed = sample + '\n'.repeat(1 << 20);
    expect(estimateUsage([], mixed, 'gpt-4o').outputTokens).toBe(2 * countO200k(sample));
  });

  it('counts special-token text as text instead of throwing', () => {
    expect(() => estimateUsage([{ role: 'user', content: 'say <|endoftext|> now' }], '<|im_end|>', 'gpt-4o')).not.toThrow();
    expect(estimateUsage([], '<|endoftext|>', 'gpt-4o').outputTokens).toBeGreaterThan(1);
  });
});

describe('encodingFor', () => {
  it('maps model families to encodings', () => {
    for (const m of ['gpt-4o', 'gpt-4o-mini-2024-07-18', 'gpt-4.1-nano', 'gpt-5', 'gpt-5-mini', 'o1', 'o3-mini', 'o4-mini', 'chatgpt-4o-latest', 'openai/gpt-4o', 'unknown-model', '']) {
      expect(encodingFor(m), m).toBe('o200k_base');
    }
    for (const m of ['gpt-4', 'gpt-4-turbo', 'gpt-4-0613', 'gpt-3.5-turbo-0125', 'text-embedding-3-small']) {
      expect(encodingFor(m), m).toBe('cl100k_base');
    }
  });
});
