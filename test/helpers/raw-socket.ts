/**
 * A client at the socket level, for tests that need what an HTTP client hides: a request
 * whose body never finishes, a reader that stops reading, the exact bytes that came back.
 */
import { connect, type Socket } from 'node:net';

/**
 * Writes a POST with a JSON body to 127.0.0.1:`port` and returns the socket. A
 * `content-length` in `headers` replaces the body's own (to send less than it announces).
 */
export function rawPost(port: number, path: string, body: string, headers: Record<string, string> = {}): Socket {
  const socket = connect(port, '127.0.0.1');
  const lines = [`POST ${path} HTTP/1.1`, 'host: 127.0.0.1', 'content-type: application/json', `content-length: ${headers['content-length'] ?? Buffer.byteLength(body)}`];
  for (const [name, value] of Object.entries(headers)) if (name !== 'content-length') lines.push(`${name}: ${value}`);
  socket.write(`${lines.join('\r\n')}\r\n\r\n${body}`);
  return socket;
}

/** Collects what a socket receives: the first 64 KB as text, and the byte count. */
export function received(socket: Socket): { text: () => string; bytes: () => number } {
  let text = '';
  let bytes = 0;
  socket.on('data', (d: Buffer) => {
    bytes += d.length;
    if (text.length < 64 * 1024) text += d.toString('latin1');
  });
  return { text: () => text, bytes: () => bytes };
}

/** Resolves once `check` is true, polling every 25 ms; throws after `ms`. */
export async function until(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
