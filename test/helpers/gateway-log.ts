/**
 * Captures the gateway's log (one JSON object a line on stdout, `{"time",...}`) while a test
 * file runs, so tests can assert on the request log line (tokens, cost, outcome) of a request.
 * The gateway's lines are kept and not printed; anything else written on stdout passes through.
 * One capture at a time: start it in beforeAll, `restore()` it in afterAll.
 */

/** A request log line, parsed. */
export type RequestLogLine = Record<string, any>;

export interface GatewayLogCapture {
  /** The request log lines (`"msg":"request"`), parsed, in the order written. */
  requests: RequestLogLine[];
  /** The same lines as written (the exact JSON text, without the newline). */
  rawRequests: string[];
  /** The gateway's other log lines, as written. */
  others: string[];
  /** Puts the real `process.stdout.write` back. */
  restore(): void;
}

/**
 * Replaces `process.stdout.write` with one that keeps the gateway's log lines.
 *
 * @example
 * let log: GatewayLogCapture;
 * beforeAll(() => { log = captureGatewayLog(); });
 * afterAll(() => log.restore());
 * // ... expect(log.requests.find((l) => l.request_id === id)?.outcome).toBe('ok');
 */
export function captureGatewayLog(): GatewayLogCapture {
  const realWrite = process.stdout.write;
  const capture: GatewayLogCapture = {
    requests: [],
    rawRequests: [],
    others: [],
    restore: () => {
      process.stdout.write = realWrite;
    },
  };
  process.stdout.write = function (this: NodeJS.WriteStream, chunk: any, ...rest: any[]) {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    // The gateway's logger writes whole lines, each starting with its timestamp.
    if (!text.startsWith('{"time":')) return (realWrite as any).call(this, chunk, ...rest);
    for (const line of text.split('\n')) {
      if (!line) continue;
      if (line.includes('"msg":"request"')) {
        capture.rawRequests.push(line);
        capture.requests.push(JSON.parse(line));
      } else {
        capture.others.push(line);
      }
    }
    return true;
  } as typeof process.stdout.write;
  return capture;
}
