/**
 * The built-in simulated upstream against OpenAI's chat completion shapes: the pure
 * `simulate()` function, no sockets.
 */
import { describe, expect, it } from 'vitest';
import { simulate, type SimulatorOptions } from '../src/simulator/simulator.js';

const OPTIONS: SimulatorOptions = { latency_ms: 0, chunks: 4, model: 'promptgate-simulator' };
const MESSAGES = [{ role: 'user', content: 'Where is my order?' }];

async function call(body: Record<string, unknown>, options: SimulatorOptions = OPTIONS) {
  const res = await simulate(options, { method: 'POST', path: '/chat/completions', body: { model: 'gpt-4o-mini', messages: MESSAGES, ...body }, signal: new AbortController().signal });
  let text = '';
  for await (const chunk of res.body) text += Buffer.from(chunk).toString('utf8');
  return { status: res.status, headers: res.headers, text };
}

async function completion(body: Record<string, unknown>) {
  const { status, text } = await call(body);
  expect(status).toBe(200);
  return JSON.parse(text);
}

/** The `data:` payloads of a stream, without `[DONE]` (which must be last). */
async function chunks(body: Record<string, unknown>) {
  const { status, text } = await call({ ...body, stream: true });
  expect(status).toBe(200);
  const events = text.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
  expect(events.at(-1)).toBe('[DONE]');
  return events.slice(0, -1).map((e) => JSON.parse(e));
}

/** Per choice index: the streamed content, the tool call arguments and the finish reason. */
function assemble(list: any[]) {
  const out = new Map<number, { content: string; args: string; finish?: string }>();
  for (const c of list) {
    for (const ch of c.choices) {
      const o = out.get(ch.index) ?? { content: '', args: '' };
      o.content += ch.delta.content ?? '';
      for (const t of ch.delta.tool_calls ?? []) o.args += t.function?.arguments ?? '';
      if (ch.finish_reason) o.finish = ch.finish_reason;
      out.set(ch.index, o);
    }
  }
  return out;
}

describe('simulator', () => {
  it('answers a deterministic OpenAI-shaped completion', async () => {
    const a = await completion({});
    const b = await completion({});
    expect(a).toMatchObject({
      id: expect.stringMatching(/^chatcmpl-/),
      object: 'chat.completion',
      created: expect.any(Number),
      model: 'gpt-4o-mini',
      system_fingerprint: expect.any(String),
      choices: [{ index: 0, message: { role: 'assistant', content: expect.any(String), refusal: null }, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } },
    });
    expect(b.choices).toEqual(a.choices);
    expect(b.id).toBe(a.id);
  });

  it('sends the usage chunk (choices: []) only when include_usage is asked for', async () => {
    const without = await chunks({});
    expect(without.every((c) => !('usage' in c) && c.choices.length === 1)).toBe(true);
    const withUsage = await chunks({ stream_options: { include_usage: true } });
    expect(withUsage.at(-1)).toMatchObject({ object: 'chat.completion.chunk', choices: [], usage: { total_tokens: expect.any(Number) } });
    expect(withUsage.slice(0, -1).every((c) => c.usage === null)).toBe(true);
  });

  it('finishes with "length" when max_tokens cuts the answer (was: "stop")', async () => {
    const full = await completion({});
    expect(full.usage.completion_tokens).toBeGreaterThan(3);
    for (const limit of [{ max_tokens: 3 }, { max_completion_tokens: 3 }]) {
      const cut = await completion(limit);
      expect(cut.choices[0].finish_reason).toBe('length');
      expect(cut.usage.completion_tokens).toBe(3);
      expect(full.choices[0].message.content.startsWith(cut.choices[0].message.content)).toBe(true);
      expect(assemble(await chunks(limit)).get(0)).toEqual({ content: cut.choices[0].message.content, args: '', finish: 'length' });
    }
    // A limit the answer stays within is no truncation.
    expect((await completion({ max_tokens: 1000 })).choices[0].finish_reason).toBe('stop');
  });

  it('answers n choices, streamed by index, with usage over all of them (was: one choice)', async () => {
    const res = await completion({ n: 3 });
    expect(res.choices.map((c: any) => c.index)).toEqual([0, 1, 2]);
    expect(res.choices[0]).toEqual((await completion({})).choices[0]);
    const words = res.choices.reduce((n: number, c: any) => n + c.message.content.split(' ').length, 0);
    expect(res.usage.completion_tokens).toBe(words);
    const streamed = assemble(await chunks({ n: 3 }));
    expect([...streamed.keys()].sort()).toEqual([0, 1, 2]);
    for (const c of res.choices) expect(streamed.get(c.index)).toEqual({ content: c.message.content, args: '', finish: 'stop' });
  });

  it('stops before a stop sequence, which is not part of the answer (was: ignored)', async () => {
    const full = (await completion({})).choices[0].message.content as string;
    const word = full.split(' ')[2];
    const at = full.indexOf(word);
    for (const stop of [word, [word, 'zzz-never']]) {
      const res = await completion({ stop });
      expect(res.choices[0].message.content).toBe(full.slice(0, at));
      expect(res.choices[0].finish_reason).toBe('stop');
      expect(assemble(await chunks({ stop })).get(0)!.content).toBe(full.slice(0, at));
    }
  });

  it('answers 400 to a schema nested too deeply, not a throw the gateway reports as upstream_unavailable', async () => {
    const anyOf = JSON.parse('{"anyOf":['.repeat(20_000) + '{}' + ']}'.repeat(20_000));
    const tools = [{ type: 'function', function: { name: 'f', parameters: anyOf } }];
    const forced = await call({ tools, tool_choice: 'required' });
    expect(forced.status).toBe(200); // anyOf past the sampling depth is cut short
    const deepEnum = { enum: [JSON.parse('['.repeat(100_000) + ']'.repeat(100_000))] };
    const res = await call({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: deepEnum } } });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text).error).toMatchObject({ type: 'invalid_request_error', code: 'invalid_value' });
  });

  it('answers JSON for response_format json_object and json_schema (was: plain text)', async () => {
    const obj = await completion({ response_format: { type: 'json_object' } });
    expect(typeof JSON.parse(obj.choices[0].message.content)).toBe('object');
    const schema = {
      type: 'object',
      properties: { answer: { type: 'string' }, confidence: { type: 'number' }, tags: { type: 'array', items: { type: 'string' } }, tone: { enum: ['warm', 'neutral'] }, done: { type: 'boolean' } },
      required: ['answer', 'confidence', 'tags', 'tone', 'done'],
      additionalProperties: false,
    };
    const res = await completion({ response_format: { type: 'json_schema', json_schema: { name: 'reply', strict: true, schema } } });
    const value = JSON.parse(res.choices[0].message.content);
    expect(value).toEqual({ answer: expect.any(String), confidence: expect.any(Number), tags: [expect.any(String)], tone: 'warm', done: expect.any(Boolean) });
    expect(JSON.parse(assemble(await chunks({ response_format: { type: 'json_object' } })).get(0)!.content)).toEqual(JSON.parse(obj.choices[0].message.content));
  });

  // The sample ignored $ref: a recursive schema (zod and the AI SDK emit $defs/$ref) got a
  // string where an object was required, and generateObject failed against the simulator.
  it('follows local $refs, ends recursion with what the schema allows, and honours minItems', async () => {
    const schema = {
      type: 'object',
      properties: { root: { $ref: '#/$defs/Node' }, pair: { type: 'array', items: { type: 'integer', minimum: 2 }, minItems: 2 }, other: { $ref: '#/definitions/Tag' } },
      required: ['root', 'pair', 'other'],
      additionalProperties: false,
      $defs: {
        Node: {
          type: 'object',
          properties: { name: { type: 'string' }, children: { type: 'array', items: { $ref: '#/$defs/Node' } }, parent: { anyOf: [{ $ref: '#/$defs/Node' }, { type: 'null' }] } },
          required: ['name', 'children', 'parent'],
          additionalProperties: false,
        },
      },
      definitions: { Tag: { type: 'string', enum: ['a', 'b'] } },
    };
    const res = await completion({ response_format: { type: 'json_schema', json_schema: { name: 'tree', strict: true, schema } } });
    const value = JSON.parse(res.choices[0].message.content);
    expect(value.other).toBe('a');
    expect(value.pair).toEqual([2, 2]);
    // Every node is an object with a name, a list of nodes and a node or null as parent, down to the end.
    const check = (node: { name: unknown; children: unknown[]; parent: unknown }, depth: number): number => {
      expect(typeof node.name).toBe('string');
      expect(Array.isArray(node.children)).toBe(true);
      let deepest = depth;
      for (const child of node.children) deepest = Math.max(deepest, check(child as typeof node, depth + 1));
      if (node.parent !== null) deepest = Math.max(deepest, check(node.parent as typeof node, depth + 1));
      return deepest;
    };
    expect(check(value.root, 0)).toBeLessThan(20);
  });

  it('calls a tool when tool_choice forces one, with OpenAI\'s finish reasons (was: text)', async () => {
    const tools = [
      { type: 'function', function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' }, days: { type: 'integer' } }, required: ['city', 'days'] } } },
      { type: 'function', function: { name: 'lookup_order', parameters: { type: 'object', properties: { order_id: { type: 'string' } } } } },
    ];
    const named = await completion({ tools, tool_choice: { type: 'function', function: { name: 'lookup_order' } } });
    const msg = named.choices[0].message;
    expect(msg.content).toBeNull();
    expect(msg.tool_calls).toEqual([{ id: expect.stringMatching(/^call_/), type: 'function', function: { name: 'lookup_order', arguments: expect.any(String) } }]);
    expect(JSON.parse(msg.tool_calls[0].function.arguments)).toEqual({ order_id: expect.any(String) });
    expect(named.choices[0].finish_reason).toBe('stop'); // OpenAI: a named tool_choice ends with "stop"
    const required = await completion({ tools, tool_choice: 'required' });
    expect(required.choices[0].message.tool_calls[0].function.name).toBe('get_weather');
    expect(JSON.parse(required.choices[0].message.tool_calls[0].function.arguments)).toEqual({ city: expect.any(String), days: expect.any(Number) });
    expect(required.choices[0].finish_reason).toBe('tool_calls');
    const streamed = await chunks({ tools, tool_choice: 'required' });
    expect(streamed[0].choices[0].delta.tool_calls[0]).toMatchObject({ index: 0, id: required.choices[0].message.tool_calls[0].id, type: 'function', function: { name: 'get_weather' } });
    expect(assemble(streamed).get(0)).toEqual({ content: '', args: required.choices[0].message.tool_calls[0].function.arguments, finish: 'tool_calls' });
    // auto (the default) and none answer with text.
    expect((await completion({ tools })).choices[0].message.content).toEqual(expect.any(String));
    expect((await completion({ tools, tool_choice: 'none' })).choices[0].finish_reason).toBe('stop');
  });

  it.each([
    [{ n: 0 }, 'n'],
    [{ n: 'two' }, 'n'],
    [{ max_tokens: -1 }, 'max_tokens'],
    [{ max_completion_tokens: 1.5 }, 'max_completion_tokens'],
    [{ stop: 42 }, 'stop'],
    [{ stream: 'yes' }, 'stream'],
    [{ response_format: { type: 'xml' } }, 'response_format.type'],
    [{ tool_choice: 'required' }, 'tool_choice'],
    [{ tools: [{ type: 'function', function: { name: 'a' } }], tool_choice: { type: 'function', function: { name: 'b' } } }, 'tool_choice'],
    [{ messages: [{ role: 'wizard', content: 'hi' }] }, 'messages[0].role'],
  ])('answers %j with an OpenAI-shaped 400 naming %s (was: ignored)', async (body, param) => {
    const { status, text } = await call(body);
    expect(status).toBe(400);
    expect(JSON.parse(text)).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param, code: expect.any(String) } });
  });
});
