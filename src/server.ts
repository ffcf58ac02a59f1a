/**
 * Starts the gateway: load config -> telemetry -> runtime -> app -> listen -> watch config,
 * and drains gracefully on SIGTERM/SIGINT:
 *   1. readiness fails at once (`/readyz` 503) and new requests on kept-alive connections
 *      get a 503 with `connection: close`;
 *   2. the listener stops accepting connections; idle keep-alive sockets are closed;
 *   3. in-flight requests and streams get `drain_timeout_ms` to finish;
 *   4. when that time is up, the gateway ends the exchanges still open itself: their upstream
 *      calls are aborted, a stream gets a last `shutting_down` error event, a request with
 *      nothing sent yet a 503 `shutting_down`, and each is accounted as `error`/`shutdown`;
 *      after `FINAL_WRITES_MS` for those last writes, the remaining sockets are destroyed;
 *   5. telemetry is flushed and the process exits 0.
 * A second SIGTERM/SIGINT during the drain is logged and otherwise ignored.
 */
import { createServer, STATUS_CODES, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { errorBody, GatewayError } from './errors.js';
import { getRequestListener, RequestError } from '@hono/node-server';
import { FeedbackLedger } from './admin/feedback.js';
import { createApp } from './app.js';
import { createContextRuntime, RECIPE_METRICS } from './context/runtime.js';
import { AssignmentCounters } from './experiments/counters.js';
import type { Lifecycle } from './app-types.js';
import { unmatchedRecord, type Exchange } from './proxy/exchange.js';
import { loadConfigFile } from './config/load.js';
import { portFromEnv } from './config/port.js';
import { restartOnlyChanges } from './config/restart-only.js';
import { ConfigWatcher } from './config/watch.js';
import { RuntimeHolder } from './runtime.js';
import type { RuntimeConfig } from './config/compile.js';
import { createLogger, logAccountingFault, requestLogLine } from './telemetry/logger.js';
import { EXPERIMENT_METRICS } from './experiments/metric-names.js';
import { createMetrics, type ConfiguredLabelValues } from './telemetry/metrics.js';
import { startTelemetry } from './telemetry/tracing.js';
import type { RequestRecord } from './telemetry/types.js';

/**
 * How long the last writes of the exchanges ended at the drain deadline get before their
 * sockets are destroyed. A shutdown takes at most `drain_timeout_ms` + this +
 * `SHUTDOWN_FLUSH_MS` (tracing.ts): what a stop timeout or grace period must cover
 * (test/deploy checks deploy/ and the docs against it).
 */
export const FINAL_WRITES_MS = 200;

export interface StartOptions {
  file: string;
  /** Overrides `PORT` (then not read) and `server.port`. */
  port?: number;
  /** Install SIGTERM/SIGINT handlers (off in tests that run several gateways in one process). */
  handleSignals?: boolean;
}

export interface RunningGateway {
  server: Server;
  port: number;
  holder: RuntimeHolder;
  /** The `/v1` exchanges and the responses in flight (both empty when the gateway is idle). */
  exchanges: ReadonlySet<Exchange>;
  inflight: ReadonlySet<ServerResponse>;
  /** Drains and closes; resolves when everything is closed. */
  shutdown(reason?: string): Promise<void>;
}

export async function startGateway(options: StartOptions): Promise<RunningGateway> {
  // Read before anything starts: a set but invalid PORT is a startup error, not ignored.
  const envPort = options.port === undefined ? portFromEnv(process.env.PORT) : undefined;
  const config = loadConfigFile(options.file);
  const logger = createLogger(config.logging.level);
  // Tracing starts before the app exists (a no-op unless OTEL_* asks for an exporter).
  const telemetry = startTelemetry({ serviceName: config.telemetry.service_name, logger });
  const metrics = createMetrics({ knownModels: labelModels(config), configured: configuredLabels(config), maxLabelValues: config.telemetry.max_label_values });
  const holder = new RuntimeHolder(config);
  for (const note of config.notes) logger.info(note);
  if (telemetry.tracing) logger.info('tracing on', { endpoint: telemetry.endpoint });

  const exchanges = new Set<Exchange>();
  const lifecycle: Lifecycle = { draining: false, exchanges };
  // Context caches and recipe bandits outlive reloads; recipe statistics go to the experiment metrics.
  const feedback = new FeedbackLedger({ inflight: exchanges });
  const context = createContextRuntime({ registry: metrics.registry, observeExperiment: (o) => metrics.observeExperiment(o) });
  context.prepare(config);
  // The accounting of every finished request, also outside any handler (a request Node
  // refused, one without Host, a stream's end). Each step on its own: a fault in one is
  // logged (`logAccountingFault`) and the others still run; none is thrown, so bookkeeping
  // can end neither a response nor the process.
  const step = (record: RequestRecord, run: () => void) => {
    try {
      run();
    } catch (err) {
      logAccountingFault(logger, record, err);
    }
  };
  const onRequestDone = (record: RequestRecord) => {
    step(record, () => metrics.recordRequest(record));
    step(record, () => context.finish(record));
    step(record, () => feedback.remember(record));
    step(record, () => {
      if (holder.current.config.logging.requests) logger.info('request', requestLogLine(record));
    });
  };
  const counters = new AssignmentCounters();
  const app = createApp(holder, { lifecycle, logger, onRequestDone, metrics, counters, context, feedback });

  const port = options.port ?? envPort ?? config.server.port;
  const inflight = new Set<ServerResponse>();

  const server = await new Promise<Server>((resolve, reject) => {
    // What `serve()` does, plus the envelope for requests the adapter cannot route. Node's
    // own 400 for an HTTP/1.1 request without `Host` (RFC 9112 §3.2) has no body: ours instead.
    const listener = getRequestListener(app.fetch, { hostname: config.server.host, errorHandler: answerUnroutable });
    const s = createServer({ requireHostHeader: false }, (req, res) => {
      // A request that came in over a kept-alive connection during the drain: its answer
      // closes the connection, so the client opens its next one elsewhere.
      if (lifecycle.draining) closeAfter(res);
      if (req.headers.host === undefined && req.httpVersion === '1.1') return answerNoHost(res, onRequestDone);
      void listener(req, res);
    });
    s.once('error', reject);
    s.listen(port, config.server.host, () => resolve(s));
  });
  server.on('request', (_req, res: ServerResponse) => {
    inflight.add(res);
    res.once('close', () => inflight.delete(res));
  });
  server.on('clientError', answerUnparsable(onRequestDone));
  server.keepAliveTimeout = 65_000; // longer than typical client idle timeouts, so clients close first
  const bound = (server.address() as AddressInfo).port;

  const watcher = new ConfigWatcher({
    file: options.file,
    // The config in force reads these; from the first reload on, the watcher follows the
    // newest config it tried to load, rejected or not.
    dirs: config.watchDirs,
    onReload: (next) => {
      // A failure in `apply` comes before the switch: the watcher reports the reload
      // rejected, and the old config keeps serving.
      const runtime = holder.apply(next, next.server.drain_timeout_ms + 5_000);
      // From here the new config serves: a step that fails is logged as such, never as a rejection.
      const afterSwitch = (name: string, run: () => void) => {
        try {
          run();
        } catch (err) {
          logger.error('config reloaded, but a step after the switch failed', { step: name, error: err instanceof Error ? err.name : typeof err });
        }
      };
      afterSwitch('reload_count', () => metrics.countConfigReload('applied'));
      afterSwitch('log_level', () => logger.setLevel(next.logging.level));
      afterSwitch('context', () => context.prepare(next));
      afterSwitch('metrics', () => {
        metrics.allowModels(labelModels(next));
        metrics.allowConfigured(configuredLabels(next));
      });
      logger.info('config reloaded', { generation: runtime.generation });
      for (const note of next.notes) logger.info(note);
      afterSwitch('restart_only_check', () => {
        const pending = restartOnlyChanges(config, next, { portOverridden: options.port !== undefined || envPort !== undefined });
        if (pending.length > 0) logger.warn('config reloaded, but these settings only change on a restart; the old values stay in use', { settings: pending });
      });
    },
    onRejected: (issues) => {
      // Counted as logged: once per distinct set of errors (PromptgateConfigReloadRejected alerts on it).
      metrics.countConfigReload('rejected');
      logger.error('config reload rejected; the previous config keeps serving', { errors: issues.map((i) => `${i.path}: ${i.message}`) });
    },
  });

  /** Waits up to `ms` for the responses in flight to end, closing connections as they go idle. */
  const settle = async (ms: number): Promise<void> => {
    const deadline = Date.now() + ms;
    while (inflight.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      server.closeIdleConnections();
    }
  };

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (reason = 'shutdown'): Promise<void> => {
    shuttingDown ??= (async () => {
      lifecycle.draining = true;
      // The answers still to come say `connection: close`: a client told `keep-alive` would
      // send its next request on a connection the drain closes as soon as it goes idle, and
      // get a reset (or a 503) instead of a connection to a gateway that is not stopping.
      for (const res of inflight) closeAfter(res);
      watcher.close();
      const drainMs = holder.current.config.server.drain_timeout_ms;
      logger.info('draining', { reason, inflight: inflight.size, drain_timeout_ms: drainMs });
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await settle(drainMs);
      if (inflight.size > 0) {
        // The gateway ends what is left itself: a last event or a 503, accounted as `shutdown`.
        logger.warn('drain timeout: ending the requests still open', { inflight: inflight.size, exchanges: exchanges.size });
        for (const exchange of [...exchanges]) exchange.shutDown();
        await settle(FINAL_WRITES_MS);
      }
      server.closeAllConnections();
      await closed;
      await holder.close();
      // A context call still running serves no request now (a late builder filling its
      // cache, or one whose client left): it is cut, not waited for up to its `timeout_ms`.
      await context.dispatcher.destroy().catch(() => undefined);
      await context.close().catch(() => undefined);
      await telemetry.shutdown(); // flushes spans
      logger.info('stopped');
    })();
    return shuttingDown;
  };

  if (options.handleSignals !== false) {
    // `on`, not `once`: a repeated signal must not fall through to Node's default (an
    // immediate kill that cuts every stream). It comes often: Ctrl-C on `npm start` sends
    // SIGINT to node from the terminal and again from npm, which forwards it.
    const onSignal = (signal: NodeJS.Signals) => {
      if (shuttingDown) {
        logger.info('already draining', { signal });
        return;
      }
      void shutdown(signal).then(
        () => process.exit(0),
        () => process.exit(1),
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }

  // Last: a supervisor (or a test) that sends SIGTERM as soon as it reads this line finds
  // the handler installed (stdout to a pipe is written at once on Linux; a signal that came
  // before the handler would kill the process mid-start, exit by signal, no drain).
  logger.info('listening', { host: config.server.host, port: bound, config: options.file, upstreams: config.routing.default });
  return { server, port: bound, holder, exchanges, inflight, shutdown };
}

/** Makes `res` end its connection (RFC 9112 §9.6: `connection: close`) when its headers are not sent yet. */
function closeAfter(res: ServerResponse): void {
  if (!res.headersSent) res.setHeader('connection', 'close');
}

/** Model names that are always kept as metric label values: priced models and configured aliases. */
function labelModels(config: RuntimeConfig): string[] {
  return [...config.priceBook.models, ...config.routing.models.keys(), ...config.prompts.bindings.keys()];
}

/** Template, experiment, variant and metric names of the config: label values that never read `other`. */
function configuredLabels(config: RuntimeConfig): ConfiguredLabelValues {
  const templates = config.prompts.registry.list();
  const experiments = [...config.prompts.experiments.values()];
  const plans = [...config.context.plans.values()];
  return {
    templates: templates.map((t) => t.id),
    templateVersions: templates.flatMap((t) => t.versions.map((v) => v.version)),
    experiments: [...experiments.map((e) => e.id), ...plans.map((p) => p.experiment)],
    variants: [...experiments.flatMap((e) => e.variants.map((v) => v.name)), ...plans.flatMap((p) => p.recipes.map((r) => r.name))],
    // A recipe bandit's metric is the config's too (feedback.<name>): never collapsed into `other`.
    metrics: [...experiments.flatMap((e) => e.metrics), ...plans.map((p) => p.metric)],
    experimentSeries: [
      ...experiments.map((e) => ({ experiment: e.id, variants: e.variants.map((v) => v.name), metrics: [...new Set([...EXPERIMENT_METRICS, ...e.metrics])], baseline: e.baseline.name })),
      // Context recipes chosen per request (a plan with one recipe records no statistics).
      ...plans.filter((p) => p.recipes.length > 1).map((p) => ({ experiment: p.experiment, variants: p.recipes.map((r) => r.name), metrics: [...new Set([...RECIPE_METRICS, p.metric])] })),
    ],
  };
}

/**
 * A request Node's HTTP server rejects (a garbage request line, headers over the limit, a
 * request not received within `headersTimeout` / `requestTimeout`) never reaches the app,
 * or is cut before its body is read: answer it in the OpenAI envelope too, instead of
 * Node's bare 400/408/431, and close the connection (RFC 9112 §2.2: nothing after it can be framed).
 * One the app never saw is accounted here, under `route="unmatched"` with its error code
 * (`invalid_request`, `headers_too_large`, `request_timeout`) and a log line without method
 * or path: nothing the client sent is read back, it may carry a key.
 */
function answerUnparsable(onRequestDone: (record: RequestRecord) => void) {
  return function answerUnparsableRequest(err: NodeJS.ErrnoException, socket: Duplex): void {
    // A reset is the client leaving, not a request (Node's own handler ignores it too).
    if (err.code === 'ECONNRESET') {
      socket.destroy();
      return;
    }
    const error = rejection(err.code);
    // Counted: a request no handler saw, which Node's parser refused or timed out. Not
    // counted: a connection error (EPIPE writing to a client that left: no request), and an
    // error inside a request the app received (its body cut short or timed out) or while the
    // app still answers on this connection (garbage pipelined behind a stream): that
    // request's exchange accounts it, even when its answer has already ended.
    const { _httpMessage: inFlight, parser } = socket as Duplex & { _httpMessage?: ServerResponse | null; parser?: { incoming?: { complete?: boolean } | null } | null };
    const requestRefused = err.code?.startsWith('HPE_') || err.code === 'ERR_HTTP_REQUEST_TIMEOUT';
    const bodyUnfinished = parser?.incoming != null && parser.incoming.complete === false;
    if (requestRefused && !inFlight && !bodyUnfinished) onRequestDone(rejectedRecord(error));
    // A response on this connection already under way (a stream, then a pipelined garbage
    // request) would get the error spliced into its body: close instead, as Node's own handler does.
    if (!socket.writable || inFlight?.headersSent) {
      socket.destroy();
      return;
    }
    const { status, body } = errorBody(error);
    const json = JSON.stringify(body);
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n` +
        `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(json)}\r\nconnection: close\r\n\r\n${json}`,
    );
  };
}

/** The record of a request Node could not parse: no method, no path, no request id were read. */
function rejectedRecord(error: GatewayError): RequestRecord {
  const record = unmatchedRecord({ method: '', path: '', incomingRequestId: undefined, status: error.status, errorType: error.code });
  record.path = undefined;
  return record;
}

/**
 * A request Node parsed but @hono/node-server cannot turn into a URL (`OPTIONS *`, a
 * backslash in the path, a `Host` that names no host) never reaches the app either: the
 * OpenAI envelope too, instead of a bare 400 with an empty body. Anything else thrown
 * before the app answers is a 500.
 */
function answerUnroutable(err: unknown): Response {
  const error = err instanceof RequestError ? new GatewayError('invalid_request', 'The request target or Host header is not valid.') : err;
  const { status, body } = errorBody(error);
  return Response.json(body, { status });
}

/**
 * 400 in the envelope for an HTTP/1.1 request without `Host`, closing the connection as Node
 * does; accounted under `route="unmatched"` like the requests Node rejects itself.
 */
function answerNoHost(res: ServerResponse, onRequestDone: (record: RequestRecord) => void): void {
  const error = new GatewayError('invalid_request', 'The request has no Host header.');
  onRequestDone(unmatchedRecord({ method: res.req.method ?? '', path: pathOf(res.req.url), incomingRequestId: undefined, status: error.status, errorType: error.code }));
  const json = JSON.stringify(errorBody(error).body);
  res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json), connection: 'close' });
  res.end(json);
}

/** The path of a request target without its query (the log line shows no query: it may carry a key). */
function pathOf(target: string | undefined): string {
  const path = target ?? '';
  const query = path.indexOf('?');
  return query === -1 ? path : path.slice(0, query);
}

/** The error a request Node's HTTP server rejected gets, by Node's error code. */
function rejection(code: string | undefined): GatewayError {
  if (code === 'HPE_HEADER_OVERFLOW') return new GatewayError('headers_too_large', 'The request headers are too large.');
  // A slow client (headers or body not complete in time): a timeout, not a parse failure.
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return new GatewayError('request_timeout', 'The request was not received in time.');
  return new GatewayError('invalid_request', 'The request could not be parsed as HTTP/1.1.');
}
