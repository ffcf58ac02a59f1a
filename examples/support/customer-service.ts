/**
 * A tiny customer service for the support demo: `GET /customers/:id` answers a profile as
 * JSON (404 for unknown ids). Stands in for the user's own backend that the `customer`
 * http builder calls. Requires `authorization: Bearer <token>` when a token is given.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Customer {
  id: string;
  name: string;
  tier: 'standard' | 'silver' | 'gold';
  customer_since: string;
  open_tickets: number;
  email: string;
}

export const CUSTOMERS: Readonly<Record<string, Customer>> = {
  'user-alice': { id: 'user-alice', name: 'Alice Martin', tier: 'gold', customer_since: '2019-03-14', open_tickets: 0, email: 'alice@example.com' },
  'user-bob': { id: 'user-bob', name: 'Bob Chen', tier: 'silver', customer_since: '2022-07-01', open_tickets: 1, email: 'bob@example.com' },
  'user-carol': { id: 'user-carol', name: 'Carol Diaz', tier: 'standard', customer_since: '2025-01-20', open_tickets: 3, email: 'carol@example.com' },
};

export interface CustomerService {
  url: string;
  port: number;
  /** Requests served, by path (to show the gateway's cache at work). */
  hits: Map<string, number>;
  close(): Promise<void>;
}

export async function startCustomerService(options: { port?: number; host?: string; token?: string } = {}): Promise<CustomerService> {
  const hits = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (options.token && req.headers.authorization !== `Bearer ${options.token}`) return send(401, { error: 'unauthorized' });
    const m = /^\/customers\/([^/]+)$/.exec(path);
    if (req.method !== 'GET' || !m) return send(404, { error: 'not found' });
    const customer = CUSTOMERS[decodeURIComponent(m[1])];
    return customer ? send(200, customer) : send(404, { error: 'unknown customer' });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, resolve);
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${port}`,
    port,
    hits,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
