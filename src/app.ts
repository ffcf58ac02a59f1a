/**
 * Builds the Hono app. It never listens: `server.ts` (`startGateway`) serves it, tests call `app.request()`.
 *
 * The one error boundary is `onError`: handlers throw `GatewayError`s (or anything else),
 * and it renders the OpenAI error envelope, finishes the request's accounting and logs.
 */
import { Hono, type Context } from 'hono';
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response';
import type { AppEnv, GatewayDeps } from './app-types.js';
import { ClientGoneError, errorBody, GatewayError, isUnmatchedRoute, unknownRouteError } from './errors.js';
import type { RuntimeHolder } from './runtime.js';
import { createFeedbackRoutes } from './admin/feedback.js';
import { createAdminRoutes } from './admin/routes.js';
import { chatCompletions } from './proxy/chat.js';
import { viaEntry } from './proxy/headers.js';
import { RoutedObjects } from './proxy/model-route.js';
import { passThrough } from './proxy/passthrough.js';
import type { RequestRecord } from './telemetry/types.js';
import { unmatchedRecord } from './proxy/exchange.js';

export function createApp(holder: RuntimeHolder, deps: Omit<GatewayDeps, 'holder' | 'via' | 'routedObjects'>): Hono<AppEnv> {
  const routedObjects = new RoutedObjects();
  const onRequestDone = (record: RequestRecord): void => {
    routedObjects.note(record, holder.current.config);
    deps.onRequestDone(record);
  };
  const all: GatewayDeps = { ...deps, holder, via: viaEntry(), routedObjects, onRequestDone };
  const app = new Hono<AppEnv>();

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) =>
    all.lifecycle.draining ? c.json({ status: 'draining' }, 503) : c.json({ status: 'ready', config_generation: holder.current.generation }),
  );
  app.get('/metrics', async (c) => {
    if (!all.metrics) throw new GatewayError('not_found', 'Metrics are not enabled.');
    return c.body(await all.metrics.render(), 200, { 'content-type': all.metrics.contentType });
  });

  app.route(
    '/',
    createAdminRoutes(() => {
      const config = holder.current.config;
      return { token: config.admin.token, registry: config.prompts.registry, experiments: config.prompts.experiments, counters: all.counters };
    }),
  );

  if (all.feedback) {
    app.route(
      '/',
      createFeedbackRoutes({
        ledger: all.feedback,
        maxBodyBytes: () => holder.current.config.server.max_body_bytes,
        observeExperiment: all.metrics?.observeExperiment,
        observeContextFeedback: all.context ? (id, metric, value) => all.context!.observeFeedback(id, metric, value) : undefined,
      }),
    );
  }

  // A draining server answers requests on kept-alive connections with a clean 503
  // (checked in each /v1 handler: a middleware would cost every request a dispatch).
  app.post('/v1/chat/completions', chatCompletions(all));
  // GET lists the stored completions (`store: true`; openai-node's `chat.completions.list()`),
  // and OPTIONS is a browser's CORS preflight: the upstream's answer, passed through as on
  // the other /v1 routes.
  const relay = passThrough(all);
  app.on(['GET', 'HEAD', 'OPTIONS'], '/v1/chat/completions', relay);
  app.all('/v1/chat/completions', () => {
    throw new GatewayError('method_not_allowed', 'Use POST (or GET, to list stored completions) for /v1/chat/completions.', { headers: { allow: 'GET, HEAD, OPTIONS, POST' } }); // RFC 9110 §15.5.6
  });
  app.all('/v1/*', relay);
  app.all('/v1', relay);

  /**
   * Answers a request no route serves (an unknown path, a method the path does not take) and
   * records it: one count under `route="unmatched"` and one log line, so a client pointed at
   * the wrong base URL (one without `/v1`) shows in the metrics. The requests a route serves
   * never pass here.
   */
  const turnAway = (c: Context<AppEnv>, err: GatewayError): Response => {
    const { status, body, headers } = errorBody(err);
    const record = unmatchedRecord({ method: c.req.method, path: new URL(c.req.url).pathname, incomingRequestId: c.req.header('x-request-id'), status, errorType: err.code });
    all.onRequestDone(record);
    // No request id header: the answer belongs to no proxied request (README "Errors").
    return c.json(body, status as 404, headers);
  };

  // A path can be as long as the header limit (16 KB): the message quotes its start.
  app.notFound((c) => turnAway(c, unknownRouteError(c.req.method, c.req.url)));

  app.onError((err, c) => {
    const exchange = c.get('exchange');
    // Thrown before any route took the request (a 405, an admin API switched off).
    if (!exchange && isUnmatchedRoute(err)) return turnAway(c, err);
    // The client left before anything was answered: recorded as a 499, written to no one.
    if (err instanceof ClientGoneError) {
      exchange?.finish({ status: 499, outcome: 'client_abort', errorType: 'client_abort' });
      return new Response(null, { status: 499 });
    }
    const { status, body, headers } = errorBody(err);
    if (exchange) {
      exchange.finish({ status, outcome: 'error', errorType: body.error.code ?? 'internal_error' });
    }
    if (!(err instanceof GatewayError)) {
      // Log the class and code, never the message (it may carry a URL or a header value).
      all.logger.error('unhandled error', { request_id: exchange?.requestId, error: (err as Error)?.name, code: (err as { code?: string })?.code });
    }
    // The answer already went out (written straight to the Node response): the accounting
    // above is all that is left; another response would only throw.
    if (c.env?.outgoing?.headersSent) return RESPONSE_ALREADY_SENT;
    const out: Record<string, string> = { ...headers };
    // Both ids, as on a relayed answer: clients and the feedback route read x-promptgate-request-id.
    if (exchange) Object.assign(out, exchange.gatewayHeaders, { 'x-request-id': exchange.requestId, 'x-promptgate-request-id': exchange.requestId });
    return c.json(body, status as 500, out);
  });

  return app;
}
