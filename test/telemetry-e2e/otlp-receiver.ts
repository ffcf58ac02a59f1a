/**
 * An in-test OTLP/HTTP trace receiver (node:http, 127.0.0.1, port 0) for both encodings
 * (`application/x-protobuf`, the default, and `http/json`): it flattens every exported span,
 * with its attributes as a plain object, and lets a test wait for the spans of one request.
 * `answer` makes it misbehave like a broken collector: hang, or answer an error status.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeTraceExportRequest } from './otlp-proto-decode.js';

interface OtlpValue {
  stringValue?: string;
  intValue?: string | number;
  doubleValue?: number;
  boolValue?: boolean;
  arrayValue?: { values?: OtlpValue[] };
}
type OtlpAttributes = Array<{ key: string; value: OtlpValue }>;
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  startTimeUnixNano?: string;
  endTimeUnixNano?: string;
  attributes?: OtlpAttributes;
  status?: { code?: number; message?: string };
}

export interface ReceivedSpan extends Omit<OtlpSpan, 'attributes'> {
  attributes: Record<string, unknown>;
  resource: Record<string, unknown>;
  scope: string;
}

export const SPAN_KIND_SERVER = 2;
export const SPAN_KIND_CLIENT = 3;
export const STATUS_ERROR = 2;

/**
 * How the receiver answers an export: `ok` (decode, keep the spans, 200), `hang` (read the
 * request, never answer), or this status and headers (spans not kept), e.g. 503 with retry-after.
 */
export type ReceiverAnswer = 'ok' | 'hang' | { status: number; headers?: Record<string, string> };

export interface OtlpReceiver {
  /** `http://127.0.0.1:<port>` (the SDK appends `/v1/traces`). */
  url: string;
  spans: ReceivedSpan[];
  /** Export requests seen (answered or not): path, content type, arrival time (ms, `performance.now()`). */
  exports: Array<{ url: string; contentType: string; at: number }>;
  /** Changed at any time; `ok` at start. */
  answer: ReceiverAnswer;
  /**
   * The SERVER span whose `promptgate.request.id` is `requestId` and its CLIENT child; waits
   * for both (a missing CLIENT span is undefined after the timeout).
   */
  waitForRequest(requestId: string, timeoutMs?: number): Promise<{ server: ReceivedSpan; client: ReceivedSpan | undefined }>;
  close(): Promise<void>;
}

function value(v: OtlpValue): unknown {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.doubleValue !== undefined) return v.doubleValue;
  if (v.boolValue !== undefined) return v.boolValue;
  if (v.arrayValue) return (v.arrayValue.values ?? []).map(value);
  return undefined;
}
const attrs = (list: OtlpAttributes = []) => Object.fromEntries(list.map((a) => [a.key, value(a.value)]));

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const exports: Array<{ url: string; contentType: string; at: number }> = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const contentType = String(req.headers['content-type']);
      exports.push({ url: req.url ?? '', contentType, at: performance.now() });
      const answer = receiver.answer;
      if (answer === 'hang') return; // closeAllConnections in close() ends it
      if (answer !== 'ok') {
        res.writeHead(answer.status, { 'content-type': 'application/json', ...answer.headers });
        res.end('{}');
        return;
      }
      try {
        const raw = Buffer.concat(chunks);
        const body = (contentType === 'application/x-protobuf' ? decodeTraceExportRequest(raw) : JSON.parse(raw.toString('utf8'))) as {
          resourceSpans?: Array<{ resource?: { attributes?: OtlpAttributes }; scopeSpans?: Array<{ scope?: { name?: string }; spans?: OtlpSpan[] }> }>;
        };
        for (const rs of body.resourceSpans ?? []) {
          for (const ss of rs.scopeSpans ?? []) {
            for (const span of ss.spans ?? []) {
              spans.push({ ...span, attributes: attrs(span.attributes), resource: attrs(rs.resource?.attributes), scope: ss.scope?.name ?? '' });
            }
          }
        }
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end('{}');
      } catch {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end('{}');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  const find = (requestId: string) => {
    const srv = spans.find((s) => s.kind === SPAN_KIND_SERVER && s.attributes['promptgate.request.id'] === requestId);
    const client = srv && spans.find((s) => s.kind === SPAN_KIND_CLIENT && s.parentSpanId === srv.spanId && s.traceId === srv.traceId);
    return { server: srv, client };
  };

  const receiver: OtlpReceiver = {
    url: `http://127.0.0.1:${port}`,
    spans,
    exports,
    answer: 'ok',
    async waitForRequest(requestId, timeoutMs = 5000) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        const found = find(requestId);
        if (found.server && found.client) return { server: found.server, client: found.client };
        if (Date.now() > until) {
          if (found.server) return { server: found.server, client: undefined };
          throw new Error(`no SERVER span with promptgate.request.id=${requestId} arrived (${spans.length} spans received)`);
        }
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return receiver;
}
