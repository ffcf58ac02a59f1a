import { describe, expect, it } from 'vitest';
import { inputMessages, outputMessages } from '../../src/telemetry/genai-messages.js';

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
});
