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
  /**
   * The request log line of the request with x-request-id `id`, parsed and as written, once
   * it is there (accounting may end just after the client's answer); throws after `ms`.
   */
  requestLine(id: string, ms?: number): Promise<{ line: RequestLogLine; raw: string }>;
  /** The `"msg":"accounting failed"` lines naming request `id`, as written. */
  accountingFaults(id: string): string[];
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
    requestLine: async (id, ms = 3000) => {
      const until = Date.now() + ms;
      let index = -1;
      while ((index = capture.requests.findIndex((l) => l.request_id === id)) < 0) {
        if (Date.now() > until) throw new Error(`no request log line for ${id} within ${ms} ms`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return { line: capture.requests[index], raw: capture.rawRequests[index] };
    },
    accountingFaults: (id) => capture.others.filter((l) => l.includes('"msg":"accounting failed"') && l.includes(`"request_id":${JSON.stringify(id)}`)),
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
