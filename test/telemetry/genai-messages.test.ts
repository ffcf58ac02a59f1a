import { describe, expect, it } from 'vitest';
import { inputMessages, messagesJson, outputMessages } from '../../src/telemetry/genai-messages.js';

describe('GenAI message format (gen_ai.input.messages / gen_ai.output.messages)', () => {
  it('maps text, text parts, names, tool calls and tool results; leaves out images', () => {
    const messages = [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', name: 'ada', content: [{ type: 'text', text: 'What is on' }, { type: 'image_url', image_url: { url: 'https://x/y.png' } }, { type: 'text', text: 'this picture?' }] },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"sku":"A1"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'in stock' },
      { role: 'assistant', tool_calls: [{ id: 'call_2', function: { name: 'broken', arguments: '{not json' } }] },
      'not a message',
    ];
    expect(inputMessages(messages)).toEqual([
      { role: 'system', parts: [{ type: 'text', content: 'Be brief.' }] },
      { role: 'user', name: 'ada', parts: [{ type: 'text', content: 'What is on\nthis picture?' }] },
      { role: 'assistant', parts: [{ type: 'tool_call', id: 'call_1', name: 'lookup', arguments: { sku: 'A1' } }] },
      { role: 'tool', parts: [{ type: 'tool_call_response', id: 'call_1', response: 'in stock' }] },
      { role: 'assistant', parts: [{ type: 'tool_call', id: 'call_2', name: 'broken', arguments: '{not json' }] },
    ]);
    expect(inputMessages('nope')).toEqual([]);
  });

  it('puts a tool result in `response`, the field the semconv ToolCallResponsePart requires', () => {
    const [message] = inputMessages([{ role: 'tool', tool_call_id: 'call_9', content: [{ type: 'text', text: '21 °C' }] }]);
    expect(message!.parts).toEqual([{ type: 'tool_call_response', id: 'call_9', response: '21 °C' }]);
  });

  it('wraps the completion as one assistant message with its finish reason', () => {
    expect(outputMessages('Hi!', 'length')).toEqual([{ role: 'assistant', parts: [{ type: 'text', content: 'Hi!' }], finish_reason: 'length' }]);
    expect(outputMessages('Hi!', undefined)[0].finish_reason).toBe('stop');
  });

  // Regression: only texts were cut, so a long tool call's parsed arguments kept the JSON
  // over OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT and the SDK cut it into invalid JSON.
  it('keeps the JSON within the limit when a tool call carries long arguments', () => {
    const big = { path: 'notes.md', content: 'x'.repeat(10_000) };
    const messages = inputMessages([
      { role: 'user', content: 'Write my notes.' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'write_file', arguments: JSON.stringify(big) } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'ok' },
    ]);
    const before = JSON.stringify(messages);
    const json = messagesJson(messages, 2000);
    expect(json.length).toBeLessThanOrEqual(2000);
    const parsed = JSON.parse(json) as Array<{ parts: Array<Record<string, unknown>> }>;
    expect(parsed[0].parts[0]).toEqual({ type: 'text', content: 'Write my notes.' });
    expect(parsed[1].parts[0]).toMatchObject({ type: 'tool_call', name: 'write_file' });
    expect(String(parsed[1].parts[0].arguments)).toMatch(/^\{"path":"notes.md","content":"x+…$/);
    expect(JSON.stringify(messages)).toBe(before); // the caller's objects are left as they were
  });
});

describe('messagesJson with more messages than the limit holds (review 23)', () => {
  // Cutting texts cannot shorten `{"role":"user","parts":[...]}` itself: 120 short turns
  // were over a 4096-character limit whatever the texts, and the SDK then cut the JSON
  // mid-structure (invalid JSON on the span).
  it('leaves out turns from the middle and stays valid JSON within the limit', () => {
    const turns = Array.from({ length: 120 }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: `msg ${i}` }));
    const messages = inputMessages([{ role: 'system', content: 'Be brief.' }, ...turns]);
    const json = messagesJson(messages, 4096);
    expect(json.length).toBeLessThanOrEqual(4096);
    const parsed = JSON.parse(json) as Array<{ role: string; parts: Array<{ content: string }> }>;
    expect(parsed[0]).toEqual({ role: 'system', parts: [{ type: 'text', content: 'Be brief.' }] });
    expect(parsed.at(-1)!.parts[0]!.content).toBe('msg 119');
    expect(parsed.length).toBeGreaterThan(10);
    expect(parsed.length).toBeLessThan(121);
  });

  it('is an empty list when not even one turn fits', () => {
    expect(messagesJson(inputMessages([{ role: 'user', content: 'hello' }]), 10)).toBe('[]');
  });
});
