import { describe, expect, it } from 'vitest';
import { SseScanner, lastBoundary, relaySse } from './sse-relay.js';

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
});
