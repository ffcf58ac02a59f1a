/**
 * The spans of one proxied request, made by hand (no auto-instrumentation):
 *
 * ```
 * POST /v1/chat/completions   SERVER  continues the client's traceparent
 * └─ chat gpt-4o-mini         CLIENT  the upstream call (all retries/fallbacks), GenAI semconv
 * ```
 *
 * Exactly one traceparent goes upstream: the CLIENT span's (`UpstreamSpan.headers()`); the
 * proxy drops the client's own `traceparent`/`tracestate`/`baggage` before forwarding, and
 * the configured propagators (`OTEL_PROPAGATORS`) decide what goes instead. When tracing is
 * off (no SDK started) nothing is allocated beyond one small object and the client's trace
 * headers pass through unchanged, so the trace still joins up downstream.
 *
 * Attributes (OTel GenAI semconv, DESIGN.md "Telemetry names"): on the CLIENT span
 * `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
 * `gen_ai.request.stream`, `server.address`, `server.port` and the request's sampling
 * parameters (`gen_ai.request.temperature`, `.max_tokens`, `.seed`, ...) at start (samplers see them);
 * `gen_ai.response.model`, `.id`, `.finish_reasons`, `gen_ai.usage.*`, `error.type`, the
 * upstream's request id (`http.response.header.x-request-id`) and `promptgate.*` at the
 * end. Content (`gen_ai.input.messages`/`gen_ai.output.messages`) only with `captureContent`.
 * span-attributes.ts builds them.
 */
import {
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type Tracer,
  type TracerProvider,
} from '@opentelemetry/api';
import { redactPath } from './redact.js';
import type { CompletionChoice } from './genai-messages.js';
import { clientEndAttributes, failureType, serverEndAttributes, spanModel, upstreamAttributes } from './span-attributes.js';
import type { RequestRecord } from './types.js';

const TRACER_NAME = 'promptgate';
/** The API's no-op provider: what a ProxyTracerProvider delegates to until an SDK registers. */
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();
/**
 * A W3C `traceparent` (Trace Context §3.2): version `ff` is invalid; version `00` has exactly
 * four fields; a later version may add fields after a `-`, read by its first four.
 */
const TRACEPARENT = /^(?!ff)([0-9a-f]{2})-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$/;
/** HTTP semconv: the methods `http.request.method` names; any other is `_OTHER` (span name `HTTP {route}`). */
const KNOWN_METHODS = new Set(['CONNECT', 'DELETE', 'GET', 'HEAD', 'OPTIONS', 'PATCH', 'POST', 'PUT', 'QUERY', 'TRACE']);
/** Upstream trace headers when there are none to send (shared, never written). */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

export interface ServerSpanOptions {
  method: string;
  /** Route pattern (`/v1/chat/completions`), not the raw path. */
  route: string;
  /** The request's path without its query (`url.path`); default the route. */
  path?: string;
  /** Incoming header lookup (lower-case names). */
  headers: (name: string) => string | undefined;
  /** When the request arrived (epoch ms); default now. */
  startTime?: number;
}

export interface UpstreamSpanOptions {
  /** `gen_ai.operation.name`: `chat` (default), `embeddings`, `text_completion`. */
  operation?: string;
  /** `gen_ai.provider.name`, e.g. `openai`. */
  provider: string;
  requestModel?: string;
  serverAddress?: string;
  serverPort?: number;
  stream: boolean;
  /** The request body sent (chat): its sampling parameters become `gen_ai.request.*` attributes. */
  body?: Readonly<Record<string, unknown>>;
}

export interface EndSpanOptions {
  /** telemetry.capture_content: record prompt and completion on the CLIENT span. */
  captureContent?: boolean;
  /** The `messages` sent upstream (OpenAI chat format). */
  prompt?: unknown;
  /** The answer received: its choices (text, tool calls, finish reason), or its text. */
  completion?: string | readonly CompletionChoice[];
}

/** The upstream side: what to send as trace context. */
export interface UpstreamSpan {
  /** The one `traceparent` for the upstream request; undefined when there is none to send. */
  traceparent(): string | undefined;
  /** All propagation headers for the upstream request (`traceparent`, `tracestate`, `baggage`). */
  headers(): Readonly<Record<string, string>>;
  /**
   * Puts `headers()` into an upstream request's headers. With tracing on, the client's trace
   * headers of other formats (B3, Jaeger) go first: an upstream that reads them would join
   * the client's span instead of the gateway's.
   */
  applyTo(requestHeaders: Record<string, string>): void;
}

/** Trace context headers of other formats than W3C's, as clients send them (lower-case). */
const FOREIGN_TRACE_HEADERS = ['b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags', 'uber-trace-id'];

/** One request's spans. One per request, not shared. */
export interface ServerSpan {
  /** For the request log; the incoming trace id when tracing is off. */
  readonly traceId: string | undefined;
  /** Context with the SERVER span, the parent of in-gateway child spans (context builders); undefined when tracing is off. */
  readonly otelContext: Context | undefined;
  /** Whether the SERVER span records (tracing on and the request sampled): attributes only a span reads need not be computed otherwise. */
  readonly recording: boolean;
  /**
   * Starts the CLIENT span (once; a later call, e.g. on fallback, updates provider and
   * server attributes of the same span and returns it).
   */
  startUpstream(options: UpstreamSpanOptions): UpstreamSpan;
  /**
   * Points the CLIENT span (once started) at the upstream whose answer the client gets: an
   * answer passed over for a fallback that then failed is sent after the fallback was tried,
   * and the span must not name the upstream that never answered.
   */
  answeredBy(upstream: Pick<UpstreamSpanOptions, 'provider' | 'serverAddress' | 'serverPort'>): void;
  /** Sets the final attributes and status from the record and ends both spans. Idempotent. */
  end(record: RequestRecord, options?: EndSpanOptions): void;
}

/**
 * Starts the SERVER span of a request, continuing an incoming W3C `traceparent`.
 *
 * @example
 * const spans = startServerSpan({ method: 'POST', route: '/v1/chat/completions', headers: (n) => c.req.header(n) });
 * const upstream = spans.startUpstream({ provider: 'openai', requestModel: 'gpt-4o-mini', serverAddress: 'api.openai.com', serverPort: 443, stream: true });
 * upstream.applyTo(outgoingHeaders);
 * // ... forward, relay, account ...
 * spans.end(record, { captureContent: config.telemetry.capture_content, prompt: body.messages, completion: text });
 */
export function startServerSpan(options: ServerSpanOptions): ServerSpan {
  const tracer = activeTracer();
  if (!tracer) return new PassThroughSpans(options.headers);
  return new RequestSpans(tracer, options);
}

/** True when an SDK tracer provider is registered (startTelemetry started one). */
export function tracingActive(): boolean {
  return activeTracer() !== undefined;
}

let cachedProvider: TracerProvider | undefined;
let cachedTracer: Tracer | undefined;

function activeTracer(): Tracer | undefined {
  const provider = trace.getTracerProvider();
  const delegate = provider instanceof ProxyTracerProvider ? provider.getDelegate() : provider;
  if (delegate === NOOP_PROVIDER) return undefined;
  if (delegate !== cachedProvider) {
    cachedProvider = delegate;
    cachedTracer = delegate.getTracer(TRACER_NAME);
  }
  return cachedTracer;
}

const headerGetter: TextMapGetter<(name: string) => string | undefined> = {
  keys: () => [],
  get: (carrier, key) => carrier(key),
};

class RequestSpans implements ServerSpan {
  readonly #tracer: Tracer;
  readonly #server: Span;
  readonly #parent: Context;
  #context: Context | undefined;
  #client: Span | undefined;
  #upstream: UpstreamHeaders | undefined;
  #ended = false;

  constructor(tracer: Tracer, options: ServerSpanOptions) {
    this.#tracer = tracer;
    const parent = propagation.extract(ROOT_CONTEXT, options.headers, headerGetter);
    this.#parent = parent;
    const known = KNOWN_METHODS.has(options.method);
    // HTTP server semconv: method, url.path and url.scheme are required (the query is not
    // recorded: it may carry what the client did not mean for traces). A path other than the
    // route's (pass-through: /v1/files/<id>) is masked if it holds a key, as logs are.
    const path = options.path === undefined || options.path === options.route ? options.route : redactPath(options.path);
    const attributes: Attributes = known
      ? { 'http.request.method': options.method, 'http.route': options.route, 'url.path': path, 'url.scheme': 'http' }
      : { 'http.request.method': '_OTHER', 'http.request.method_original': options.method, 'http.route': options.route, 'url.path': path, 'url.scheme': 'http' };
    this.#server = tracer.startSpan(serverSpanName(known ? options.method : 'HTTP', options.route), { kind: SpanKind.SERVER, startTime: options.startTime, attributes }, parent);
  }

  get traceId(): string {
    return this.#server.spanContext().traceId;
  }

  get recording(): boolean {
    return this.#server.isRecording();
  }

  get otelContext(): Context {
    return (this.#context ??= trace.setSpan(this.#parent, this.#server));
  }

  startUpstream(options: UpstreamSpanOptions): UpstreamSpan {
    const attributes = upstreamAttributes(options);
    if (this.#client) {
      this.#client.setAttributes(attributes);
      return this.#upstream as UpstreamSpan;
    }
    const operation = options.operation ?? 'chat';
    const parent = this.otelContext;
    this.#client = this.#tracer.startSpan(options.requestModel ? `${operation} ${spanModel(options.requestModel)}` : operation, { kind: SpanKind.CLIENT, attributes }, parent);
    this.#upstream = new UpstreamHeaders(parent, this.#client);
    // The in-gateway work that parents spans on it is done: not kept (a Map and three
    // closures) for as long as the answer streams. `otelContext` makes it again if asked.
    this.#context = undefined;
    return this.#upstream;
  }

  answeredBy(upstream: Pick<UpstreamSpanOptions, 'provider' | 'serverAddress' | 'serverPort'>): void {
    if (!this.#client?.isRecording()) return;
    const a: Attributes = { 'gen_ai.provider.name': upstream.provider };
    if (upstream.serverAddress) a['server.address'] = upstream.serverAddress;
    if (upstream.serverPort !== undefined) a['server.port'] = upstream.serverPort;
    this.#client.setAttributes(a);
  }

  end(record: RequestRecord, options?: EndSpanOptions): void {
    if (this.#ended) return;
    this.#ended = true;
    const errorType = failureType(record);
    // Both spans end whatever their attributes do: a fault there (reported by the caller,
    // Exchange.finish) costs those attributes, not the request's trace.
    let fault: unknown;
    const client = this.#client;
    if (client !== undefined) {
      try {
        if (client.isRecording()) {
          client.setAttributes(clientEndAttributes(record, errorType, options));
          // OTel "recording errors": an operation that ended with error.type has status ERROR;
          // a stream the client cancelled did not complete either.
          if (errorType !== undefined && (record.outcome !== 'ok' || record.status >= 400)) client.setStatus({ code: SpanStatusCode.ERROR, message: errorType });
        }
      } catch (err) {
        fault = err;
      }
      client.end();
    }
    const server = this.#server;
    try {
      if (server.isRecording()) {
        server.setAttributes(serverEndAttributes(record, errorType));
        // HTTP semconv: a SERVER span is an error for 5xx, not for the client's 4xx; a
        // failure after a 2xx was sent (broken stream) is an error too.
        if (record.status >= 500 || (record.outcome === 'error' && record.status < 400)) {
          server.setStatus({ code: SpanStatusCode.ERROR, message: errorType });
        }
      }
    } catch (err) {
      fault ??= err;
    }
    server.end();
    if (fault !== undefined) throw fault;
  }
}

/**
 * The CLIENT span's propagation headers, injected at once: every caller sends them with the
 * request it is building, and the context they come from is then not held for the stream.
 */
class UpstreamHeaders implements UpstreamSpan {
  readonly #headers: Record<string, string> = {};

  constructor(parent: Context, client: Span) {
    propagation.inject(trace.setSpan(parent, client), this.#headers);
  }

  traceparent(): string | undefined {
    return this.#headers.traceparent;
  }

  headers(): Readonly<Record<string, string>> {
    return this.#headers;
  }

  applyTo(requestHeaders: Record<string, string>): void {
    for (const name of FOREIGN_TRACE_HEADERS) delete requestHeaders[name];
    Object.assign(requestHeaders, this.#headers);
  }
}

/** `${method} ${route}`, one string per distinct pair (routes are patterns, a handful). */
const serverSpanNames = new Map<string, Map<string, string>>();
function serverSpanName(method: string, route: string): string {
  let byRoute = serverSpanNames.get(method);
  if (byRoute === undefined) {
    if (serverSpanNames.size >= 64) serverSpanNames.clear();
    serverSpanNames.set(method, (byRoute = new Map()));
  }
  let name = byRoute.get(route);
  if (name === undefined) {
    if (byRoute.size >= 256) byRoute.clear();
    byRoute.set(route, (name = `${method} ${route}`));
  }
  return name;
}

/** Tracing off: no spans; the client's trace context passes through to the upstream. */
class PassThroughSpans implements ServerSpan, UpstreamSpan {
  readonly #headers: Readonly<Record<string, string>>;

  constructor(header: (name: string) => string | undefined) {
    const traceparent = header('traceparent')?.trim();
    const baggage = header('baggage');
    const match = traceparent === undefined ? null : TRACEPARENT.exec(traceparent);
    if (traceparent === undefined || match === null || (match[1] === '00' && match[2] !== undefined)) {
      // W3C Baggage stands on its own; tracestate only means something with its traceparent.
      this.#headers = baggage ? { baggage } : NO_HEADERS;
      return;
    }
    const headers: Record<string, string> = { traceparent };
    const tracestate = header('tracestate');
    if (tracestate) headers.tracestate = tracestate;
    if (baggage) headers.baggage = baggage;
    this.#headers = headers;
  }

  get traceId(): string | undefined {
    return this.#headers.traceparent?.slice(3, 35);
  }

  get otelContext(): undefined {
    return undefined;
  }

  get recording(): false {
    return false;
  }

  startUpstream(): UpstreamSpan {
    return this;
  }

  answeredBy(): void {}

  traceparent(): string | undefined {
    return this.#headers.traceparent;
  }

  headers(): Readonly<Record<string, string>> {
    return this.#headers;
  }

  /** Tracing off: the client's own trace headers of any format go on as they came. */
  applyTo(requestHeaders: Record<string, string>): void {
    Object.assign(requestHeaders, this.#headers);
  }

  end(): void {}
}
