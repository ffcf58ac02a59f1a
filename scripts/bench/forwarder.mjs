// @ts-check
/**
 * The floor for any Node gateway: a bare `node:http` server that reads the body from the
 * Node request, JSON.parse + JSON.stringify, forwards it through one undici Pool and
 * returns status + body; streams pass through chunk by chunk. Plain JavaScript run by
 * plain `node` in its own process. Prints `READY <port>` once listening.
 *
 *   BENCH_UPSTREAM_ORIGIN=http://127.0.0.1:PORT node scripts/bench/forwarder.mjs
 */
import { createServer } from 'node:http';
import { Pool } from 'undici';

const origin = process.env.BENCH_UPSTREAM_ORIGIN;
if (!origin) throw new Error('BENCH_UPSTREAM_ORIGIN is required');
// Same limits as the gateway's bench config (`connections: 1024`), so 1,000 streams all open.
const pool = new Pool(origin, { connections: 1024, pipelining: 1, keepAliveTimeout: 30_000 });

// RFC 9110 §7.6.1: hop-by-hop fields are not forwarded; host and length are redone.
const SKIP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'upgrade', 'host', 'content-length', 'proxy-connection']);

const server = createServer((req, res) => {
  /** @type {Buffer[]} */
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', async () => {
    let out;
    try {
      out = JSON.stringify(JSON.parse((parts.length === 1 ? parts[0] : Buffer.concat(parts)).toString('utf8')));
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"invalid JSON","type":"invalid_request_error","param":null,"code":null}}');
      return;
    }
    /** @type {Record<string, string>} */
    const headers = {};
    for (const name in req.headers) {
      const v = req.headers[name];
      if (v !== undefined && !SKIP.has(name)) headers[name] = Array.isArray(v) ? v.join(', ') : v;
    }
    headers['content-length'] = String(Buffer.byteLength(out));
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    try {
      const up = await pool.request({ method: 'POST', path: req.url ?? '/', headers, body: out, signal: abort.signal });
      const ct = up.headers['content-type'];
      if (typeof ct === 'string' && ct.startsWith('text/event-stream')) {
        res.writeHead(up.statusCode, { 'content-type': ct, 'cache-control': 'no-cache' });
        for await (const chunk of up.body) {
          if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
        }
        res.end();
        return;
      }
      /** @type {Buffer[]} */
      const body = [];
      for await (const chunk of up.body) body.push(chunk);
      res.writeHead(up.statusCode, { 'content-type': typeof ct === 'string' ? ct : 'application/json' });
      res.end(body.length === 1 ? body[0] : Buffer.concat(body));
    } catch {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' });
      res.end();
    }
  });
});
server.keepAliveTimeout = 65_000;
server.headersTimeout = 66_000;
server.listen(Number(process.env.BENCH_PORT ?? 0), '127.0.0.1', () => {
  const addr = server.address();
  process.stdout.write(`READY ${typeof addr === 'object' && addr ? addr.port : 0}\n`);
});
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
