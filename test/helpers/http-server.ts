/**
 * Listening and closing for the hand-written `node:http` servers of tests (upstreams with a
 * behaviour the steered mock in mock-upstream.ts has no switch for).
 */
import type { Server } from 'node:http';
import type { AddressInfo, Server as NetServer } from 'node:net';

/**
 * Listens on 127.0.0.1 port 0 (a free port the OS picks) and resolves with its origin,
 * `http://127.0.0.1:PORT` (append `/v1` for an upstream's `base_url`). Takes a `node:net`
 * server too (an upstream that writes raw HTTP).
 */
export async function listenOnLoopback(server: NetServer): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * Closes each server, dropping its open connections first (a kept-alive or stalled one would
 * hold `close()` open), and empties the list: for an `afterEach` over the servers a test started.
 */
export async function closeServers(servers: Server[]): Promise<void> {
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
}
