/**
 * One client exchange: the request id, the deadline/abort signal shared by every upstream
 * attempt, and the accounting record that is finished exactly once. One per request, not
 * shared.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { startServerSpan, type EndSpanOptions, type ServerSpan } from '../telemetry/spans.js';
import type { RequestRecord } from '../telemetry/types.js';
import { UNMATCHED_ROUTE } from '../telemetry/metrics.js';
import { ClientGoneError, GatewayError, shown, shuttingDownError } from '../errors.js';
import { logAccountingFault } from '../telemetry/logger.js';
import { decodedPath, holdsCredential } from '../telemetry/redact.js';
import type { ForwardOptions } from './forward.js';
import type { Logger } from '../app-types.js';

const REQUEST_ID = /^[\x21-\x7e]{1,200}$/;

/**
 * The request id: the client's `x-request-id` when it is 1 to 200 printable ASCII characters
 * and not shaped like a credential (the id goes to spans and response headers as it is),
 * else a new UUID.
 */
export function requestIdOf(incoming: string | undefined): string {
  return incoming && REQUEST_ID.test(incoming) && !holdsCredential(incoming) ? incoming : randomUUID();
}

/**
 * The record of a request no route serves (`isUnmatchedRoute`: an unknown path, a method the
 * path does not take), finished as it is turned away: no exchange, no upstream, no span. Its
 * `route` is `unmatched` (the path would make a label without bounds); the path, decoded
 * (`decodedPath`) and cut to 100 characters, goes to the log line only, where it shows what
 * the client asked for (a base URL without `/v1` sends `/chat/completions`).
 */
export function unmatchedRecord(options: { method: string; path: string; incomingRequestId: string | undefined; status: number; errorType: string }): RequestRecord {
  return {
    requestId: requestIdOf(options.incomingRequestId),
    route: UNMATCHED_ROUTE,
    path: shown(decodedPath(options.path)),
    method: options.method,
    status: options.status,
    outcome: 'error',
    errorType: options.errorType,
    stream: false,
    attempts: 0,
    latencyMs: 0,
  };
}

export interface ExchangeOptions {
  route: string;
  /** The request's path without its query, for the SERVER span's `url.path`. */
  path?: string;
  method: string;
  incomingRequestId: string | undefined;
  totalTimeoutMs: number;
  /** Node objects when served by @hono/node-server; absent under `app.request()`. */
  incoming?: IncomingMessage;
  outgoing?: ServerResponse;
  webSignal?: AbortSignal;
  /** Incoming header lookup (lower-case names), for trace context. */
  header: (name: string) => string | undefined;
  /** telemetry.capture_content (kept only when the request's spans record). */
  captureContent: boolean;
  onFinish: (record: RequestRecord) => void;
  /** Where a fault in this request's accounting is reported (`accountingFailed`). */
  logger?: Logger;
  /**
   * The process's exchanges in flight: this one is in it from construction to `finish`, so
   * the shutdown can end what is still open when the drain time is up.
   */
  inflight?: Set<Exchange>;
}

/** The total timeout's timer callback: a module function, not a closure per exchange. */
function abortForTotalTimeout(controller: AbortController): void {
  controller.abort(new Error('total timeout'));
}

export class Exchange {
  readonly requestId: string;
  readonly startedAt = performance.now();
  readonly record: RequestRecord;
  readonly #controller = new AbortController();
  #clientGone = false;
  #timer: NodeJS.Timeout | undefined;
  #deadline: number;
  #finished = false;
  #shuttingDown = false;
  readonly #onFinish: (record: RequestRecord) => void;
  readonly #logger: Logger | undefined;
  readonly #inflight: Set<Exchange> | undefined;
  /** The SERVER span (and, once forwarding starts, the CLIENT span) of this request. */
  readonly spans: ServerSpan;
  /** `x-promptgate-*` response headers gathered along the pipeline (also on errors). */
  readonly gatewayHeaders: Record<string, string> = {};
  /** Prompt and completion for the span, only kept when content capture is on. */
  readonly content: EndSpanOptions;

  constructor(options: ExchangeOptions) {
    this.requestId = requestIdOf(options.incomingRequestId);
    this.record = {
      requestId: this.requestId,
      route: options.route,
      method: options.method,
      status: 0,
      outcome: 'ok',
      stream: false,
      attempts: 0,
      latencyMs: 0,
    };
    this.#onFinish = options.onFinish;
    this.#logger = options.logger;
    this.#inflight = options.inflight;
    this.#inflight?.add(this);
    this.spans = startServerSpan({ method: options.method, route: options.route, path: options.path, headers: options.header });
    this.record.traceId = this.spans.traceId;
    // Content is kept only for spans that record it (not with tracing off, nor unsampled).
    this.content = { captureContent: options.captureContent && this.spans.recording };
    // One listener closure per exchange (it lives as long as the request, a stream's included).
    if (options.outgoing) {
      const out = options.outgoing;
      out.once('close', () => {
        if (!out.writableFinished) this.#clientLeft();
      });
    } else {
      options.webSignal?.addEventListener('abort', () => this.#clientLeft(), { once: true });
    }
    this.#deadline = this.startedAt + options.totalTimeoutMs;
    this.#timer = setTimeout(abortForTotalTimeout, options.totalTimeoutMs, this.#controller);
    this.#timer.unref();
  }

  /** The client closed its connection (or its request's signal aborted) before the exchange finished. */
  #clientLeft(): void {
    if (this.#finished) return;
    this.#clientGone = true;
    this.#controller.abort(new Error('client closed the connection'));
  }

  /** Aborted when the client leaves, the total timeout passes or the gateway shuts down. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /**
   * Sets the total timeout to `ms` from the start of the exchange: the route is known only
   * once the body is read, and a model routed to an upstream of its own has that
   * upstream's `total_ms`.
   */
  setTotalTimeout(ms: number): void {
    if (this.#finished || this.#controller.signal.aborted) return;
    clearTimeout(this.#timer);
    this.#deadline = this.startedAt + ms;
    this.#timer = setTimeout(abortForTotalTimeout, Math.max(0, this.#deadline - performance.now()), this.#controller);
    this.#timer.unref();
  }

  get clientGone(): boolean {
    return this.#clientGone;
  }

  /** True once `shutDown` aborted the exchange (and nothing had aborted it before). */
  get shuttingDown(): boolean {
    return this.#shuttingDown;
  }

  /**
   * Ends the exchange for the gateway's shutdown (the drain time is up): aborts the upstream
   * call, and the code that owns the response answers `shutting_down` (a 503, or a last
   * error event on a stream). No-op once the exchange is finished or already aborted.
   */
  shutDown(): void {
    if (this.#finished || this.#controller.signal.aborted) return;
    this.#shuttingDown = true;
    this.#controller.abort(new Error('the gateway is shutting down'));
  }

  /**
   * Why `signal` aborted, as the error to answer with: the client left (a 499 written to no
   * one), the drain ended (503 `shutting_down`) or the total timeout passed (504, said with
   * `timeoutMessage`).
   */
  abortError(timeoutMessage = 'The request did not finish within the total timeout.'): Error {
    if (this.#clientGone) return new ClientGoneError();
    if (this.#shuttingDown) return shuttingDownError();
    return new GatewayError('upstream_timeout', timeoutMessage);
  }

  /**
   * Aborts the upstream call now (the client cancelled its stream). Unlike the client's
   * close (`#clientLeft`), also once the exchange has finished: a cancelled stream ends its
   * accounting first, and its upstream body must still be let go.
   */
  abort(): void {
    this.#clientGone = true;
    this.#controller.abort(new Error('client closed the connection'));
  }

  /** What `forward()` needs from the exchange: when to stop, why it stopped, and where attempts are noted. */
  forwarding(): Pick<ForwardOptions, 'signal' | 'deadline' | 'abortError' | 'onAttempt'> {
    return {
      signal: this.#controller.signal,
      deadline: this.#deadline,
      abortError: (timeoutMessage) => this.abortError(timeoutMessage),
      onAttempt: (upstream, attempts) => {
        // Another upstream than the last one tried: a fallback (its request then updates the
        // CLIENT span too) or the answer passed over before it, which the client gets.
        if (this.record.upstream !== undefined && this.record.upstream !== upstream.spec.name) this.spans.answeredBy(upstream.spec);
        this.noteAttempt(upstream.spec.name, upstream.spec.provider, attempts);
      },
    };
  }

  /**
   * Records an upstream attempt (the last one tried is the one that answered); attempts on
   * the upstreams tried before it are kept apart, so each upstream's attempts count as its own.
   */
  noteAttempt(upstream: string, provider: string, attempts: number): void {
    const r = this.record;
    if (r.upstream !== undefined && r.upstream !== upstream) {
      const before = r.earlierAttempts?.reduce((n, e) => n + e.attempts, 0) ?? 0;
      (r.earlierAttempts ??= []).push({ upstream: r.upstream, provider: r.provider ?? '', attempts: r.attempts - before });
    }
    r.upstream = upstream;
    r.provider = provider;
    r.attempts = attempts;
  }

  /**
   * Ends the exchange: records latency and hands the record to accounting. Idempotent.
   * An exchange that `shutDown` cut and that did not end well is accounted as
   * `error`/`shutdown`, whatever the path that ended it saw (a 503 `shutting_down`, or a
   * socket closed at the end of the drain): the gateway ended it, not the client.
   */
  finish(patch: Partial<RequestRecord> = {}): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#timer);
    this.#inflight?.delete(this);
    Object.assign(this.record, patch);
    if (this.#shuttingDown && this.record.outcome !== 'ok') {
      this.record.outcome = 'error';
      this.record.errorType = 'shutdown';
    }
    this.record.latencyMs = performance.now() - this.startedAt;
    // Each step on its own: a span that cannot end still leaves the metrics and the log line.
    try {
      this.spans.end(this.record, this.content);
    } catch (err) {
      this.accountingFailed(err);
    }
    try {
      this.#onFinish(this.record);
    } catch (err) {
      this.accountingFailed(err);
    }
  }

  /** Reports a fault in this request's accounting (`logAccountingFault`): the answer still goes to the client. */
  accountingFailed(err: unknown): void {
    if (this.#logger) logAccountingFault(this.#logger, this.record, err);
  }
}
