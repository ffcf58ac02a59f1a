import type { ServerResponse } from 'node:http';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { SseEventTooLargeError, lastBoundary } from './sse-framing.js';
import { relaySse, writeSse, type StreamEnd } from './sse-relay.js';
import { SseScanner } from './sse-scanner.js';

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

const chunk = (obj: object) => `data: ${JSON.stringify(obj)}\n\n`;
const first = chunk({ id: 'c1', model: 'm-2024', choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }], usage: null });
const mid = chunk({ id: 'c1', model: 'm-2024', choices: [{ index: 0, delta: { content: 'Hi "usage":null' }, finish_reason: null }], usage: null });
const last = chunk({ id: 'c1', model: 'm-2024', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], usage: null });
const usage = chunk({ id: 'c1', model: 'm-2024', choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } });
const done = 'data: [DONE]\n\n';

describe('lastBoundary', () => {
  it('finds LF LF, CRLF CRLF and CR CR boundaries', () => {
    expect(lastBoundary(enc('data: a\n\ndata: b'))).toBe(9);
    expect(lastBoundary(enc('data: a\r\n\r\n'))).toBe(11);
    expect(lastBoundary(enc('data: a\r\rdata'))).toBe(9);
    expect(lastBoundary(enc('data: a\n'))).toBe(-1);
  });
});

describe('SseScanner', () => {
  it('passes bytes unchanged and reads id, model, finish reason and usage', () => {
    const s = new SseScanner(false);
    const all = first + mid + last + usage + done;
    let out = '';
    // Feed in awkward pieces: events split across chunks.
    for (let i = 0; i < all.length; i += 7) out += dec(s.push(enc(all.slice(i, i + 7))));
    out += dec(s.flush());
    expect(out).toBe(all);
    expect(s.summary).toMatchObject({ id: 'c1', model: 'm-2024', finishReasons: ['stop'], sawDone: true });
    expect(s.summary.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
  });

  it('drops the usage chunk and "usage":null fields the gateway asked for, nothing else', () => {
    const s = new SseScanner(true);
    const out = dec(s.push(enc(first + mid + last + usage + done)));
    const strip = (e: string) => e.replace(',"usage":null', '');
    expect(out).toBe(strip(first) + strip(mid) + strip(last) + done);
    expect(out).toContain('Hi \\"usage\\":null'); // text inside content is untouched
    expect(s.summary.usage).toBeDefined();
  });

  it('holds a partial event until it is complete', () => {
    const s = new SseScanner(false);
    expect(s.push(enc('data: {"id":"x"'))).toHaveLength(0);
    expect(dec(s.push(enc('}\n\n')))).toBe('data: {"id":"x"}\n\n');
  });

  it('gives the same bytes and summary for every split point, with LF, CRLF and CR line ends', () => {
    const words = chunk({ id: 'c1', model: 'm-2024', choices: [{ index: 0, delta: { content: 'héllo €😀' }, finish_reason: null }], usage: null });
    for (const nl of ['\n', '\r\n', '\r']) {
      const lines = (e: string) => e.replace(/\n/g, nl);
      const head = lines(': keep-alive\n\nevent: message\nid: 7\nretry: 10\n' + first + words + last);
      const all = enc(head + lines(usage + done));
      for (let at = 0; at <= all.length; at++) {
        const s = new SseScanner(false);
        const out = Buffer.concat([s.push(all.subarray(0, at)), s.push(all.subarray(at)), s.flush()]);
        expect(out.equals(all)).toBe(true);
        expect(s.summary).toMatchObject({ id: 'c1', finishReasons: ['stop'], sawDone: true, usage: { prompt_tokens: 3 } });
        const stripped = new SseScanner(true);
        const kept = dec(Buffer.concat([stripped.push(all.subarray(0, at)), stripped.push(all.subarray(at)), stripped.flush()]));
        expect(kept).toBe(head.replaceAll(',"usage":null', '') + lines(done));
      }
    }
  });

  // Regression: the scanner looked for `"usage":{` and `"finish_reason":"` literally, so an
  // upstream writing JSON with spaces (Python's json.dumps) had its usage chunk sent to a
  // client that never asked for it, and its usage and finish reason went unread.
  it('reads usage and finish reason from JSON with spaces, and drops that usage chunk', () => {
    const spaced = (e: string) => e.replace(',"usage":null', '').replace(/":/g, '": ').replace(/,"/g, ', "');
    const s = new SseScanner(true);
    const out = dec(s.push(enc(spaced(first) + spaced(last) + spaced(usage) + done)));
    expect(out).toBe(spaced(first) + spaced(last) + done);
    expect(s.summary.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
    expect(s.summary.finishReasons).toEqual(['stop']);
  });

  // Regression: a byte order mark before the first event (WHATWG SSE: the decoder drops it)
  // hid that event's `data:` line from the scanner.
  it('reads the first event after a byte order mark', () => {
    const s = new SseScanner(true);
    const out = Buffer.from(s.push(enc('\uFEFF' + first + mid))).toString('utf8'); // TextDecoder would drop the BOM
    expect(out).toBe('\uFEFF' + first.replace(',"usage":null', '') + mid.replace(',"usage":null', ''));
    expect(s.summary.text.text()).toEqual({ content: 'Hi "usage":null', replies: ['Hi "usage":null'], scale: 1 });
  });

  // Regression: Azure OpenAI opens a stream with its prompt filter results under `"id":""`
  // and `"model":""`; the empty model was taken as the answer's, so the stream's cost was
  // unknown (no price for "") and the span carried no response model or id.
  it('takes id and model from the first event that has them (Azure prompt filter chunk)', () => {
    const filter = chunk({ choices: [], created: 0, id: '', model: '', object: '', prompt_filter_results: [{ prompt_index: 0, content_filter_results: {} }] });
    const s = new SseScanner(true);
    s.push(enc(filter + first + mid + last + usage + done));
    expect(s.summary).toMatchObject({ id: 'c1', model: 'm-2024', finishReasons: ['stop'] });
  });

  it('records an error event sent by the upstream mid-stream', () => {
    const s = new SseScanner(false);
    s.push(enc(first + chunk({ error: { message: 'overloaded', type: 'server_error' } })));
    expect(s.summary.upstreamError).toMatchObject({ message: 'overloaded' });
  });
});

describe('relaySse', () => {
  it('reports client_abort and aborts the upstream when the client cancels', async () => {
    let aborted = false;
    let ended: string | undefined;
    async function* source() {
      yield enc(first);
      await new Promise((r) => setTimeout(r, 1000));
      yield enc(done);
    }
    const stream = relaySse(source(), { stripUsageChunk: false, abortUpstream: () => (aborted = true), clientGone: () => false, onEnd: (_s, e) => (ended = e.outcome) });
    const reader = stream.getReader();
    await reader.read();
    await reader.cancel();
    expect(aborted).toBe(true);
    expect(ended).toBe('client_abort');
  });

  it('ends a stream the gateway cut for shutdown with a shutting_down event on an event boundary', async () => {
    async function* source() {
      yield enc(first + mid.slice(0, 20)); // a whole event, then part of the next
      throw Object.assign(new Error('This operation was aborted'), { name: 'AbortError' });
    }
    const ends: StreamEnd[] = [];
    const stream = relaySse(source(), {
      stripUsageChunk: false,
      abortUpstream: () => undefined,
      clientGone: () => false,
      timedOut: () => true, // the exchange's signal is aborted: shutdown takes precedence
      shuttingDown: () => true,
      onEnd: (_s, e) => ends.push(e),
    });
    let text = '';
    for await (const bytes of stream) text += dec(bytes);
    expect(text).toBe(`${first}data: {"error":{"message":"The gateway is shutting down.","type":"server_error","param":null,"code":"shutting_down"}}\n\n`);
    expect(ends).toEqual([{ outcome: 'error', errorType: 'shutdown' }]);
  });
});

describe('writeSse', () => {
  // Regression: a chunk written after the client's socket had closed waited for a 'drain'
  // or 'close' that had already happened, so the stream was never ended or accounted.
  it('ends as a client abort when the response closed while a chunk was on its way', async () => {
    const out = Object.assign(new Writable({ write: (_c, _e, cb) => cb() }), { writeHead: () => out }) as unknown as ServerResponse;
    out.destroy();
    await once(out, 'close');
    async function* upstream() {
      yield enc(first);
      yield enc(last);
    }
    const ends: StreamEnd[] = [];
    writeSse(upstream(), out, { status: 200, headers: {} }, { stripUsageChunk: false, abortUpstream: () => undefined, clientGone: () => false, onEnd: (_s, e) => ends.push(e) });
    await vi.waitFor(() => expect(ends).toEqual([{ outcome: 'client_abort' }]), { timeout: 1000 });
  });
});

describe('SseScanner event limit', () => {
  // Regression: a partial event was held without limit (one endless upstream line filled memory).
  it('throws SseEventTooLargeError once a partial event passes the limit, and not before', () => {
    const s = new SseScanner(false, 64);
    expect(dec(s.push(enc('data: a\n\ndata: ')))).toBe('data: a\n\n');
    for (let i = 0; i < 7; i++) expect(s.push(enc('xxxxxxxx'))).toHaveLength(0); // 6 + 56 bytes held
    expect(() => s.push(enc('xxxxxxxx'))).toThrow(SseEventTooLargeError);
  });
});
