/**
 * Content capture (`telemetry.capture_content`) keeps every kind of call a model writes:
 * `tool_calls` functions, `custom` tool calls (their input) and the legacy `function_call`,
 * in the prompt and in the answer, streamed or not. Only functions were kept: a legacy or
 * custom call read as an answer with no parts.
 */
import { describe, expect, it } from 'vitest';
import { StreamText } from '../src/proxy/stream-text.js';
import { inputMessages } from '../src/telemetry/genai-messages.js';
import { readCompletion } from '../src/proxy/accounting.js';
import type { Exchange } from '../src/proxy/exchange.js';

const chunk = (delta: Record<string, unknown>, finish: string | null = null) => JSON.stringify({ choices: [{ index: 0, delta, finish_reason: finish }] });

describe('captured calls', () => {
  it('a stream: the legacy function_call first, then function and custom tool calls, pieces joined', () => {
    const t = new StreamText(true);
    t.add(chunk({ role: 'assistant', function_call: { name: 'get_weather', arguments: '{"city":' } }));
    t.add(chunk({ function_call: { arguments: '"Oslo"}' } }));
    t.add(chunk({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'lookup', arguments: '{"q":1}' } }] }));
    t.add(chunk({ tool_calls: [{ index: 1, id: 'call_2', type: 'custom', custom: { name: 'run_sql', input: 'SELECT ' } }] }));
    t.add(chunk({ tool_calls: [{ index: 1, custom: { input: '1' } }] }, 'tool_calls'));
    expect(t.choices()).toEqual([
      {
        content: '',
        toolCalls: [
          { id: undefined, name: 'get_weather', arguments: '{"city":"Oslo"}' },
          { id: 'call_1', name: 'lookup', arguments: '{"q":1}' },
          { id: 'call_2', name: 'run_sql', arguments: 'SELECT 1' },
        ],
        finishReason: 'tool_calls',
      },
    ]);
  });

  it('a non-stream answer: the legacy function_call and a custom tool call', () => {
    const exchange = { record: { requestModel: 'gpt-4o-mini' }, content: { captureContent: true } } as unknown as Exchange;
    const body = {
      id: 'chatcmpl-1',
      object: 'chat.completion',
      model: 'gpt-4o-mini',
      choices: [
        {
          index: 0,
          finish_reason: 'tool_calls',
          message: { role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: '{"city":"Oslo"}' }, tool_calls: [{ id: 'call_2', type: 'custom', custom: { name: 'run_sql', input: 'SELECT 1' } }] },
        },
      ],
      usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
    };
    readCompletion(exchange, Buffer.from(JSON.stringify(body)), []);
    expect((exchange.content as { completion?: unknown }).completion).toEqual([
      {
        content: '',
        toolCalls: [
          { id: undefined, name: 'get_weather', arguments: '{"city":"Oslo"}' },
          { id: 'call_2', name: 'run_sql', arguments: 'SELECT 1' },
        ],
        finishReason: 'tool_calls',
      },
    ]);
  });

  it('the prompt: an assistant turn with a legacy function_call and a custom tool call', () => {
    const parts = inputMessages([
      { role: 'assistant', content: null, function_call: { name: 'get_weather', arguments: '{"city":"Oslo"}' } },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_2', type: 'custom', custom: { name: 'run_sql', input: 'SELECT 1' } }] },
    ]).map((m) => m.parts);
    expect(parts).toEqual([[{ type: 'tool_call', name: 'get_weather', arguments: { city: 'Oslo' } }], [{ type: 'tool_call', id: 'call_2', name: 'run_sql', arguments: 'SELECT 1' }]]);
  });
});
