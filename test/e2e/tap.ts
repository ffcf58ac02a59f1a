/**
 * A transparent HTTP tap for the e2e tests: sits between the gateway and the mock upstream,
 * pipes every request and response through unchanged and records the `x-request-id` the
 * upstream sent for each request, so a test can check that the `_request_id` a client sees
 * through the gateway is the upstream's id for *that very request* (the mock's ids are random).
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface TapExchange {
  method: string;
  url: string;
  status: number;
  requestId: string | undefined;
}

export interface Tap {
  /** Base URL to use as the gateway's upstream `base_url` (same `/v1` root as the target). */
  url: string;
  exchanges: TapExchange[];
  close(): Promise<void>;
}

/** `target` is an upstream base URL such as `http://127.0.0.1:1234/v1`. */
export async function startTap(target: string): Promise<Tap> {
  const to = new URL(target);
  const exchanges: TapExchange[] = [];
  const server: Server = createServer((req, res) => {
    const out = httpRequest(
      { host: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } },
      (up) => {
        const id = up.headers['x-request-id'];
        exchanges.push({ method: req.method!, url: req.url!, status: up.statusCode!, requestId: Array.isArray(id) ? id[0] : id });
        res.writeHead(up.statusCode!, up.headers);
        up.pipe(res);
        up.on('error', () => res.destroy());
        up.on('aborted', () => res.destroy());
      },
    );
    out.on('error', () => res.destroy());
    // The gateway went away before the response ended: go away upstream too.
    res.on('close', () => {
      if (!res.writableFinished) out.destroy();
    });
    req.pipe(out);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${to.pathname}`,
    exchanges,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
