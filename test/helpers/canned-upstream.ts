/**
 * An upstream that answers every request with what the test set last (status 200), on
 * 127.0.0.1 port 0: for answers the steered mock (mock-upstream.ts) has no switch for.
 * Close it in afterAll.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface CannedAnswer {
  contentType: string;
  body: string;
}

export interface CannedUpstream {
  /** Base URL for an upstream's `base_url` (`http://127.0.0.1:PORT/v1`). */
  url: string;
  /** The answer to every request from now on. */
  answer: CannedAnswer;
  close(): Promise<void>;
}

export async function startCannedUpstream(answer: CannedAnswer = { contentType: 'application/json', body: '{}' }): Promise<CannedUpstream> {
  const upstream = { answer } as CannedUpstream;
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': upstream.answer.contentType });
      res.end(upstream.answer.body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  upstream.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return upstream;
}

/** A JSON answer. */
export const json = (value: unknown): CannedAnswer => ({ contentType: 'application/json', body: JSON.stringify(value) });
