/**
 * The OTLP/HTTP transport under the SDK's export delegate (tracing.ts), with the timeout it
 * is given as a deadline for the whole export, retries included: at the deadline the request
 * is aborted. The SDK's own transport uses that timeout as a socket idle timeout, so a
 * collector that trickled a byte every few seconds, or read the request and answered late,
 * kept the request open past it, and the batch processor had no way to end it.
 *
 * Otherwise as the SDK's (@opentelemetry/otlp-exporter-base 0.223 `sendWithHttp` and
 * `RetryingTransport`): a POST through the agent its configuration makes (keep-alive, and
 * the certificates of `OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`, `_CLIENT_KEY`,
 * `_CLIENT_CERTIFICATE`), gzip when `_COMPRESSION` says so, and up to five retries of a
 * 429, 502, 503 or 504 (OTLP/HTTP spec "Retryable Response Codes") or a network error,
 * after `retry-after` (read as for upstreams: proxy/retry.ts `retryAfterMs`) or a backoff
 * of 1 s growing 1.5 times to 5 s (±20 %), while the retry would start before the deadline. One per exporter; one request at a time in practice
 * (the batch processor waits for each), though nothing here relies on it.
 */
import { request as httpRequest, type Agent, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { ExportResponse, IExporterTransport } from '@opentelemetry/otlp-exporter-base';
import type * as OtlpExporterHttp from '@opentelemetry/otlp-exporter-base/node-http';
import { retryAfterMs } from '../proxy/retry.js';

/** What the SDK reads from `OTEL_EXPORTER_OTLP_*` (`convertLegacyHttpOptions`). */
export type OtlpHttpOptions = ReturnType<typeof OtlpExporterHttp.convertLegacyHttpOptions>;

/** The most of a response read, as the SDK's transport: a larger one fails the export. */
const MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
const MAX_RETRIES = 5;
const INITIAL_BACKOFF_MS = 1000;
const MAX_BACKOFF_MS = 5000;
const BACKOFF_MULTIPLIER = 1.5;
const JITTER = 0.2;
/** Network errors worth a retry (the SDK's list). */
const RETRYABLE_NETWORK_ERRORS = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND', 'ENETUNREACH', 'EHOSTUNREACH']);
const USER_AGENT = 'OTel-OTLP-Exporter-JavaScript (promptgate)';
const gzipped = promisify(gzip);

/**
 * A transport whose `send(data, timeoutMillis)` is over, answered or aborted, within
 * `timeoutMillis`.
 *
 * @example
 * const delegate = base.createOtlpNetworkExportDelegate(options, serializer, metrics, deadlineHttpTransport(options));
 */
export function deadlineHttpTransport(options: OtlpHttpOptions): IExporterTransport {
  let agent: Promise<Agent> | undefined;
  const post = async (data: Uint8Array, deadline: number): Promise<ExportResponse> => {
    const url = new URL(options.url); // a bad URL fails the export, as with the SDK's transport, not the start
    agent ??= Promise.resolve(options.agentFactory(url.protocol) as Agent | Promise<Agent>);
    const headers: Record<string, string> = { ...(await options.headers()), 'User-Agent': options.userAgent ? `${options.userAgent} ${USER_AGENT}` : USER_AGENT };
    let body = data;
    if (options.compression === 'gzip') {
      body = await gzipped(data);
      headers['Content-Encoding'] = 'gzip';
    }
    headers['Content-Length'] = String(body.byteLength);
    return postBefore(url, { headers, agent: await agent, body }, deadline);
  };
  return {
    async send(data, timeoutMillis) {
      const deadline = Date.now() + timeoutMillis;
      let backoff = INITIAL_BACKOFF_MS;
      let result = await post(data, deadline).catch(failure);
      for (let retries = MAX_RETRIES; result.status === 'retryable' && retries > 0; retries--) {
        const wait = result.retryInMillis ?? Math.min(backoff * (1 + (Math.random() * 2 - 1) * JITTER), MAX_BACKOFF_MS);
        backoff *= BACKOFF_MULTIPLIER;
        if (wait > deadline - Date.now()) break; // the retry could not finish in time
        await new Promise((resolve) => setTimeout(resolve, wait));
        result = await post(data, deadline).catch(failure);
      }
      return result;
    },
    shutdown() {
      void agent?.then((a) => a.destroy(), () => undefined);
    },
  };
}

function failure(error: unknown): ExportResponse {
  return { status: 'failure', error: error instanceof Error ? error : new Error(String(error)) };
}

/** One POST, aborted at `deadline` (ms since the epoch) if not answered by then. */
function postBefore(url: URL, init: { headers: Record<string, string>; agent: Agent; body: Uint8Array }, deadline: number): Promise<ExportResponse> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (response: ExportResponse) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(response);
    };
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const req = send(url, { method: 'POST', headers: init.headers, agent: init.agent }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size <= MAX_RESPONSE_BYTES) return void chunks.push(chunk);
        finish({ status: 'failure', error: new Error(`OTLP export response body exceeded size limit of ${MAX_RESPONSE_BYTES} bytes`) });
        req.destroy();
      });
      res.on('end', () => finish(answer(res, Buffer.concat(chunks))));
      // An answer cut off: the status says whether the collector took the batch.
      res.on('error', (error) => finish(res.statusCode !== undefined && res.statusCode < 300 ? { status: 'success' } : answer(res, undefined, error)));
    });
    const timer = setTimeout(() => {
      finish({ status: 'retryable', error: new Error('Request timed out') });
      req.destroy();
    }, Math.max(0, deadline - Date.now()));
    req.on('error', (error: NodeJS.ErrnoException) => finish({ status: RETRYABLE_NETWORK_ERRORS.has(error.code ?? '') ? 'retryable' : 'failure', error }));
    req.end(init.body);
  });
}

/** The export's outcome from the collector's status (OTLP/HTTP spec "Failures"). */
function answer(res: IncomingMessage, body: Buffer | undefined, error?: Error): ExportResponse {
  const status = res.statusCode ?? 0;
  if (status >= 200 && status < 300) return { status: 'success', data: body };
  if (status === 429 || status === 502 || status === 503 || status === 504) return { status: 'retryable', error, retryInMillis: retryAfterMs(res.headers) };
  return { status: 'failure', error: Object.assign(new Error(res.statusMessage || `HTTP ${status}`), { code: status, data: body?.toString('utf8') }) };
}
