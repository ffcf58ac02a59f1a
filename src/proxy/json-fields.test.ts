import { describe, expect, it } from 'vitest';
import { TopLevelFields } from './json-fields.js';

/** Feeds `text` in pieces cut at `cuts` (byte offsets) and returns `end()`. */
function read(text: string | Uint8Array, names: string[], cuts: number[] = [], maxFieldBytes?: number): Record<string, unknown> | undefined {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  const fields = new TopLevelFields(names, { maxFieldBytes });
  let from = 0;
  for (const cut of [...cuts, bytes.length]) {
    fields.push(bytes.subarray(from, cut));
    from = cut;
  }
  return fields.end();
}

const EMBEDDINGS = JSON.stringify({
  object: 'list',
  data: [
    { object: 'embedding', index: 0, embedding: [0.25, -0.5, 1e-7] },
    { object: 'embedding', index: 1, embedding: 'AACAPgAAAL8AAAA+' },
  ],
  model: 'text-embedding-3-small',
  usage: { prompt_tokens: 8, total_tokens: 8 },
});

/** A Responses API body whose output text holds look-alikes of the fields read. */
const RESPONSE = JSON.stringify({
  id: 'resp_1',
  object: 'response',
  model: 'gpt-4o-mini-2024-07-18',
  output: [{ type: 'message', content: [{ type: 'output_text', text: 'say "usage": {"input_tokens": 999}, \\ "model":"x" }, { ünïcödé 😀' }] }],
  metadata: { model: 'nested-not-top-level', usage: { input_tokens: 1 } },
  usage: { input_tokens: 12, input_tokens_details: { cached_tokens: 4 }, output_tokens: 7, output_tokens_details: { reasoning_tokens: 2 }, total_tokens: 19 },
});

describe('TopLevelFields', () => {
  it('reads the top-level fields as JSON.parse does, whatever the pieces', () => {
    for (const [text, names] of [
      [EMBEDDINGS, ['model', 'usage']],
      [RESPONSE, ['id', 'model', 'usage']],
    ] as const) {
      const parsed = JSON.parse(text) as Record<string, unknown>;
      const expected = Object.fromEntries(names.map((n) => [n, parsed[n]]));
      const length = Buffer.byteLength(text);
      for (let cut = 0; cut <= length; cut++) expect(read(text, [...names], [cut]), `cut at ${cut}`).toEqual(expected);
      const everyByte = Array.from({ length }, (_, i) => i);
      expect(read(text, [...names], everyByte)).toEqual(expected);
    }
  });

  it('reads JSON spaced as Python writes it, and keeps the last of repeated keys', () => {
    const spaced = '{\n  "model" : "text-embedding-3-large" ,\r\n\t"usage":\n{ "prompt_tokens" : 3, "total_tokens": 3 } ,"model": "again" }\n';
    expect(read(spaced, ['model', 'usage'], [9, 40])).toEqual({ model: 'again', usage: { prompt_tokens: 3, total_tokens: 3 } });
  });

  it('gives undefined for a body that is not one complete JSON object', () => {
    const names = ['model', 'usage'];
    expect(read('not json', names)).toBeUndefined();
    expect(read('[{"model":"x"}]', names)).toBeUndefined();
    expect(read('', names)).toBeUndefined();
    expect(read(EMBEDDINGS.slice(0, -1), names)).toBeUndefined(); // cut before its last brace
    expect(read(`${EMBEDDINGS} trailing`, names)).toBeUndefined();
    expect(read(Buffer.from([0x1f, 0x8b, 0x08, 0x00]), names)).toBeUndefined(); // gzip bytes
  });

  it('leaves out a field bigger than maxFieldBytes and a field whose text does not parse', () => {
    expect(read('{"model":"m","usage":{"prompt_tokens":123456789}}', ['model', 'usage'], [15], 20)).toEqual({ model: 'm' });
    expect(read('{"model":tru,"usage":{"prompt_tokens":1}}', ['model', 'usage'])).toEqual({ usage: { prompt_tokens: 1 } });
  });

  it('found() gives what was read before the end, and complete says when all is there', () => {
    const fields = new TopLevelFields(['model']);
    fields.push(Buffer.from('{"model":"text-embedding-3-small","input":["a very long'));
    expect(fields.complete).toBe(true);
    expect(fields.found()).toEqual({ model: 'text-embedding-3-small' });
    expect(fields.end()).toBeUndefined();
  });

  it('reads a large body in one pass without keeping it', () => {
    const data = Array.from({ length: 20_000 }, (_, index) => ({ object: 'embedding', index, embedding: 'AACAPgAAAL8AAAA+'.repeat(64) }));
    const text = JSON.stringify({ object: 'list', data, model: 'text-embedding-3-small', usage: { prompt_tokens: 40_000, total_tokens: 40_000 } });
    const bytes = Buffer.from(text);
    const cuts = Array.from({ length: Math.floor(bytes.length / 65_536) }, (_, i) => (i + 1) * 65_536);
    expect(read(bytes, ['model', 'usage'], cuts)).toEqual({ model: 'text-embedding-3-small', usage: { prompt_tokens: 40_000, total_tokens: 40_000 } });
  });
});
