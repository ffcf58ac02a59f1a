/**
 * Review: numbers in a rewritten chat request reach the upstream as the client sent them.
 *
 * JSON.parse + JSON.stringify rounded every integer past 2^53 of a body the gateway rewrote
 * (a template applied, `stream_options.include_usage` added, `prompt_*` fields stripped):
 * `"seed": 12345678901234567891` reached the upstream as `12345678901234567000`, and big
 * integers in tool schemas, `metadata` etc. changed as well. The upstream here records the
 * raw bytes it receives.
 */
import http from 'node:http';
import { request } from 'undici';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { mockConfig, startTestGateway, type TestGateway } from './helpers/gateway.js';
import { listenOnLoopback } from './helpers/http-server.js';
import { sseStream } from './helpers/sse.js';
import { keepExactNumbers, mayLoseNumbers, needsVerbatim, parseExact, setAsideNumbers, stringifyExact } from '../src/proxy/exact-json.js';
import { parseJsonObject, serializeJson } from '../src/proxy/request-shape.js';

describe('exact-json helper', () => {
  it('sends a body without long digit runs or long exponents down the plain path', () => {
    expect(mayLoseNumbers('{"model":"m","seed":123456789012345,"t":1e2,"u":1e-10}')).toBe(false);
    expect(mayLoseNumbers('{"seed":1234567890123456}')).toBe(true);
    expect(mayLoseNumbers('{"t":1e400}')).toBe(true);
    expect(mayLoseNumbers('{"t":1E-400}')).toBe(true);
    // A false positive only costs time: the digits are inside a string.
    expect(mayLoseNumbers('{"s":"12345678901234567"}')).toBe(true);
  });

  it('names the literals a double cannot carry', () => {
    for (const lit of ['12345678901234567891', '-12345678901234567891', '9007199254740993', '1e400', '-1E+309', '1e-400', '0.12345678901234567891', '1234567890123456e5']) {
      expect(needsVerbatim(lit), lit).toBe(true);
    }
    for (const lit of ['0', '-0', '1', '1.0', '1e2', '-1.5E-3', '123456789012345', '0e0', '0.0', '1e308', '5e-324']) {
      expect(needsVerbatim(lit), lit).toBe(false);
    }
  });

  it('sets aside numbers outside strings only: escapes, negatives, exponents', () => {
    const text = String.raw`{"a":"x 12345678901234567891 \" 12345678901234567891","b\\":-12345678901234567891,"c":[1.5e400,"\\",9007199254740993],"d":"\\\"12345678901234567891\\\"","e":12345678901234567891e-3}`;
    const { text: marked, literals } = setAsideNumbers(text, 'P:');
    expect(literals).toEqual(['-12345678901234567891', '1.5e400', '9007199254740993', '12345678901234567891e-3']);
    expect(marked).toBe(String.raw`{"a":"x 12345678901234567891 \" 12345678901234567891","b\\":"P:0","c":["P:1","\\","P:2"],"d":"\\\"12345678901234567891\\\"","e":"P:3"}`);
  });

  it('leaves text that is not JSON not JSON', () => {
    for (const bad of [
      '{"a":00000000000000000001}',
      '{"a":12345678901234567891 2}',
      '{"a":12345678901234567891.}',
      '{"a":"unterminated 12345678901234567891}',
      '{"a":-}',
      '{"a":12345678901234567891"x"}',
      '[12345678901234567891,]',
      '{"a":x12345678901234567891}',
    ]) {
      expect(() => JSON.parse(bad), bad).toThrow(SyntaxError);
      expect(() => parseExact(bad), bad).toThrow(SyntaxError);
    }
  });

  it('reads the numbers as numbers (nearest double) and writes them back as sent', () => {
    const text = '{"seed":12345678901234567891,"neg":-12345678901234567891,"nested":[[1,[9007199254740993,{"x":18446744073709551615}]]],"inf":1e400,"tiny":1e-400,"s":"12345678901234567891"}';
    const value = parseExact(text) as Record<string, any>;
    expect(value.seed).toBe(12345678901234567891);
    expect(typeof value.seed).toBe('number');
    expect(value.neg).toBe(-12345678901234567891);
    expect(value.nested[0][1][0]).toBe(9007199254740992);
    expect(value.inf).toBe(Infinity);
    expect(value.tiny).toBe(0);
    expect(value.s).toBe('12345678901234567891');
    expect(stringifyExact(value)).toBe(text);
    expect(JSON.stringify(value)).not.toBe(text); // what the gateway sent before
  });

  it('keeps the plain path for ordinary bodies (same result as JSON.parse/stringify)', () => {
    const text = '{"model":"m","messages":[{"role":"user","content":"hi 123"}],"temperature":1.0,"n":1e0,"max_tokens":512}';
    const value = parseExact(text);
    expect(value).toEqual(JSON.parse(text));
    expect(stringifyExact(value)).toBe(JSON.stringify(JSON.parse(text)));
  });

  it('writes a value the gateway replaced as the new value, copies keep the rest', () => {
    const value = parseExact('{"seed":12345678901234567891,"max_tokens":99999999999999999999,"o":{"id":12345678901234567891}}') as Record<string, any>;
    const copy: Record<string, any> = keepExactNumbers({ ...value, max_tokens: 1024, extra: 12345678901234567891 }, value);
    expect(stringifyExact(copy)).toBe('{"seed":12345678901234567891,"max_tokens":1024,"o":{"id":12345678901234567891},"extra":12345678901234567000}');
    // A copy of a copy, and a nested copy.
    const again = keepExactNumbers({ ...copy, o: keepExactNumbers({ ...copy.o, more: true }, copy.o) }, copy);
    expect(stringifyExact(again)).toBe('{"seed":12345678901234567891,"max_tokens":1024,"o":{"id":12345678901234567891,"more":true},"extra":12345678901234567000}');
    // A copy not declared as one is written as JSON.stringify writes it.
    expect(stringifyExact({ ...value })).toBe(JSON.stringify({ ...value }));
  });

  it('takes the placeholder text a client might send as text', () => {
    const text = '{"a":"pg-exact-0:0","b":12345678901234567891,"c":"pg-exact-","d":["P:0"]}';
    expect(stringifyExact(parseExact(text))).toBe(text);
  });

  it('reads a body nested thousands deep as JSON.parse does', () => {
    const text = '['.repeat(20000) + '12345678901234567891' + ']'.repeat(20000);
    expect(() => parseExact(text)).not.toThrow();
    expect(() => serializeJson(parseJsonObject(Buffer.from(`{"a":${text}}`)))).toThrow(/nested too deeply/);
  });

  it('round-trips random compact JSON with big numbers and tricky strings exactly', () => {
    let seed = 42;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    const number = () => pick([
      () => String(Math.floor(rand() * 1000)),
      () => (rand() < 0.5 ? '-' : '') + '1' + Array.from({ length: 15 + Math.floor(rand() * 10) }, () => Math.floor(rand() * 10)).join(''),
      () => pick(['1e400', '-1e400', '1e-400', '0.12345678901234567891', '2.5', '-7']),
    ])();
    const string = () => JSON.stringify(pick(['', '\\', '"', '12345678901234567891', 'a\\"b 99999999999999999999', '\\\\"', '\u2028 1e400', 'x\ny']));
    const value = (depth: number): string => {
      const r = rand();
      if (depth > 4 || r < 0.4) return rand() < 0.5 ? number() : string();
      if (r < 0.7) return `[${Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1)).join(',')}]`;
      return `{${Array.from({ length: Math.floor(rand() * 4) }, (_, i) => `${string().slice(0, -1)}k${i}":${value(depth + 1)}`).join(',')}}`;
    };
    for (let i = 0; i < 500; i++) {
      const text = `{"k":${value(0)}}`;
      expect(stringifyExact(parseExact(text)), text).toBe(text);
    }
  });
});

// --- through a real gateway ---

let received: string[] = [];
let server: http.Server;
let gw: TestGateway;

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-1', object: 'chat.completion', created: 1, model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
});
const CHUNK = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'gpt-4o-mini' };
const STREAM = sseStream([
  { ...CHUNK, choices: [{ index: 0, delta: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }] },
  { ...CHUNK, choices: [], usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } },
]);

beforeAll(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      received.push(raw);
      if (/"stream":\s*true/.test(raw)) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(STREAM);
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(COMPLETION);
      }
    });
  });
  const url = `${await listenOnLoopback(server)}/v1`;
  gw = await startTestGateway(
    mockConfig(url, 'bindings:\n  - {model: support-fixed, template: support-reply@1.0.0, mode: prepend}', '    breaker: {failures: 0}'),
    { templates: ['config/templates/support-reply.yaml'] },
  );
});
afterAll(async () => {
  await gw?.close();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});
beforeEach(() => {
  received = [];
});

async function send(body: string): Promise<string> {
  const res = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  const text = await res.body.text();
  expect(res.statusCode, text).toBe(200);
  expect(received).toHaveLength(1);
  return received[0];
}

/** The client's fields with numbers a double cannot carry (each `"name":value` must arrive as written). */
const EXACT_FIELDS = [
  String.raw`"tools":[{"type":"function","function":{"name":"lookup","parameters":{"type":"object","properties":{"id":{"type":"integer","minimum":-9223372036854775808,"maximum":9223372036854775807},"n":{"type":"integer","maximum":9007199254740993,"enum":[18446744073709551615,1,2.5]}}}}}]`,
  '"metadata":{"trace":"12345678901234567891","note":"a \\"quoted\\" 9007199254740993\\\\"}',
  '"logit_bias":{"12345678901234567891":100}',
  '"x_nested":[[1,[12345678901234567891,-12345678901234567891]],{"deep":[{"v":-9007199254740993}]}]',
  '"x_exponents":[1e400,-1E+400,12345678901234567891e-3,0.12345678901234567891]',
];
/** Messages with digit runs in strings, quotes escaped next to digits, a backslash just before a closing quote. */
const MESSAGES = String.raw`[{"role":"user","content":"Order \"12345678901234567891\" and C:\\12345678901234567891\\"},{"role":"user","content":"9007199254740993"}]`;

function bodyOf(model: string, seed: string, extra: string): string {
  return `{"model":"${model}","messages":${MESSAGES},"seed":${seed},${EXACT_FIELDS.join(',')}${extra}}`;
}

function expectExact(upstreamRaw: string, seed: string): void {
  expect(upstreamRaw).toContain(`"seed":${seed}`);
  expect(upstreamRaw).not.toContain('12345678901234567000');
  for (const field of EXACT_FIELDS) expect(upstreamRaw).toContain(field);
  expect(upstreamRaw).toContain(String.raw`"content":"Order \"12345678901234567891\" and C:\\12345678901234567891\\"`);
  expect(upstreamRaw).toContain('"content":"9007199254740993"');
}

describe('exact numbers through the gateway', () => {
  it('forwards a body it does not rewrite byte for byte (non-stream; stream without stream_options)', async () => {
    const plain = bodyOf('gpt-4o-mini', '12345678901234567891', ',"temperature":1.0,"top_p":1e0,"max_tokens":99999999999999999999');
    expect(await send(plain)).toBe(plain);
    received = [];
    const stream = bodyOf('gpt-4o-mini', '-12345678901234567891', ',"stream":true,"temperature":1.0');
    expect(await send(stream)).toBe(`{"stream_options":{"include_usage":true},${stream.slice(1)}`);
  });

  it('keeps every number when it only adds include_usage to a stream (positive and negative seed)', async () => {
    for (const seed of ['12345678901234567891', '-12345678901234567891']) {
      received = [];
      const body = bodyOf('gpt-4o-mini', seed, ',"stream":true,"stream_options":{"include_obfuscation":false},"temperature":1.0,"top_p":1e0,"n":1E0,"presence_penalty":1.5e-1');
      const out = await send(body);
      expect(out).toContain('"stream_options":{"include_obfuscation":false,"include_usage":true}');
      expectExact(out, seed);
      // Safe numbers keep their value; their form is JSON.stringify's (1.0 -> 1, 1e0 -> 1).
      expect(out).toContain('"temperature":1,"top_p":1,"n":1,"presence_penalty":0.15');
    }
  });

  it('keeps every number when a template is applied, and still reads max_tokens as a number (capped)', async () => {
    const body = bodyOf('support-fixed', '12345678901234567891', ',"max_tokens":99999999999999999999,"temperature":1.0');
    const out = await send(body);
    expectExact(out, '12345678901234567891');
    expect(out).toContain('"model":"gpt-4o-mini"');
    expect(out).toContain('You are the customer support assistant of Acme.');
    // The gateway read the client's max_tokens as a number: over the version's cap (1024).
    expect(out).toContain('"max_tokens":1024');
    expect(out).not.toContain('99999999999999999999');
    expect(JSON.parse(out).temperature).toBe(1);
  });

  it('keeps every number when it strips prompt fields (non-stream and stream)', async () => {
    const out = await send(bodyOf('gpt-4o-mini', '-12345678901234567891', ',"prompt_id":null'));
    expect(out).not.toContain('prompt_id');
    expectExact(out, '-12345678901234567891');
    received = [];
    const streamed = await send(bodyOf('gpt-4o-mini', '12345678901234567891', ',"prompt_id":null,"stream":true'));
    expect(streamed).not.toContain('prompt_id');
    expect(streamed).toContain('"stream_options":{"include_usage":true}');
    expectExact(streamed, '12345678901234567891');
  });
});
